//! `spate-broker user create`: the first user, written offline into the data directory's
//! credentials file (`<data_dir>/security/credentials`), before the broker starts with SASL on.
//!
//! Once a user exists, the others are managed online (`spate user create|delete|list`, Kafka's
//! AlterUserScramCredentials). This command takes the data directory's lock, so it refuses to
//! run beside a broker using the directory (whose snapshot would not see the change, and whose
//! next write would drop it); the broker's own writer and this one share
//! `spate_server::auth::CredentialStore`. The password is salted and hashed here, as SCRAM
//! stores it; it is never written.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use rand::RngCore;
use spate_cluster::catalog::DataDirectoryLock;
use spate_security::{CredentialsFile, ScramCredential, ScramMechanism};
use spate_server::auth::credentials::check_upsertion;
use spate_server::auth::CredentialStore;

/// The subcommand that manages users offline.
pub const USER_COMMAND: &str = "user";

/// Bytes of random salt per credential (RFC 5802 asks only that it be random and unique).
const SALT_BYTES: usize = 32;

#[derive(Debug, Parser)]
#[command(
    name = "spate-broker user",
    about = "Manage users offline, in a data directory no broker is running on"
)]
struct UserCommand {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Create a user (or replace its credential for the mechanism): the first admin user.
    Create {
        /// The broker's data directory.
        #[arg(long)]
        data_dir: PathBuf,
        /// The user name.
        #[arg(long)]
        name: String,
        /// The password (salted and hashed here; never stored).
        #[arg(long, env = "SPATE_USER_PASSWORD", hide_env_values = true)]
        password: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins check either).
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: String,
        /// PBKDF2 iterations, 4096..=16384.
        #[arg(long, default_value_t = 8192)]
        iterations: u32,
    },
}

/// Runs `spate-broker user ...` with `arguments` (the program name first, the subcommand's
/// name removed). Exit 0 done, 1 refused or failed, 2 usage.
pub fn run(arguments: Vec<std::ffi::OsString>) -> ExitCode {
    let command = match UserCommand::try_parse_from(arguments) {
        Ok(command) => command,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let Action::Create {
        data_dir,
        name,
        password,
        mechanism,
        iterations,
    } = command.action;
    let Some(mechanism) = ScramMechanism::from_name(&mechanism) else {
        eprintln!(
            "spate-broker: user create: mechanism {mechanism:?} is not SCRAM-SHA-256 or SCRAM-SHA-512"
        );
        return ExitCode::from(2);
    };
    if iterations > ScramMechanism::ITERATIONS_MAX {
        eprintln!(
            "spate-broker: user create: at most {} iterations",
            ScramMechanism::ITERATIONS_MAX
        );
        return ExitCode::from(2);
    }
    let mut salt = vec![0u8; SALT_BYTES];
    rand::thread_rng().fill_bytes(&mut salt);
    let salted_password =
        ScramCredential::salted_password(mechanism, password.as_bytes(), &salt, iterations);
    if let Err(refusal) = check_upsertion(&name, i64::from(iterations), &salt, &salted_password) {
        eprintln!("spate-broker: user create: {refusal:?}");
        return ExitCode::from(2);
    }
    let lock = match DataDirectoryLock::acquire(&data_dir, "spate-broker user create") {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("spate-broker: user create refused: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = CredentialStore::open(&data_dir).and_then(|store| {
        let credential =
            ScramCredential::from_salted_password(mechanism, &salted_password, salt, iterations);
        store.change_blocking(|credentials| credentials.upsert(&name, credential))
    });
    drop(lock);
    match outcome {
        Ok(()) => {
            println!(
                "user {name} created with {} ({iterations} iterations) in {}",
                mechanism.name(),
                CredentialsFile::path(&data_dir).display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spate-broker: user create failed: {error}");
            ExitCode::FAILURE
        }
    }
}
