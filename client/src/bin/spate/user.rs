//! `spate user create|delete|list`: the broker's users and their SCRAM credentials, over the
//! client's `Admin`. The password is salted and hashed here; only the salt, the iteration count
//! and the salted password reach the broker. The first user of a broker that already requires
//! authentication is made offline with `spate-broker user create`.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;
use spate_client::{Client, SaslMechanism};

use crate::output::{write_json, OutputArgs};
use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create a user, or replace its credential for the mechanism.
    Create(CreateArgs),
    /// Delete a user's credential for the mechanism.
    Delete {
        /// The user name.
        #[arg(long)]
        name: String,
        /// SCRAM-SHA-256 or SCRAM-SHA-512.
        #[arg(long, default_value = "SCRAM-SHA-512")]
        mechanism: SaslMechanism,
    },
    /// List users with each credential's mechanism and iteration count (never a key).
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The user name.
    #[arg(long)]
    name: String,
    /// The password (salted and hashed here, never sent); also SPATE_USER_PASSWORD.
    #[arg(long, env = "SPATE_USER_PASSWORD", hide_env_values = true)]
    password: String,
    /// SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN logins are checked against either).
    #[arg(long, default_value = "SCRAM-SHA-512")]
    mechanism: SaslMechanism,
    /// PBKDF2 iterations, 4096..=16384.
    #[arg(long, default_value_t = 8192)]
    iterations: u32,
}

pub fn run(client: &Client, command: UserCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        UserCommand::Create(arguments) => {
            client
                .admin()
                .create_user(
                    &arguments.name,
                    &arguments.password,
                    arguments.mechanism,
                    arguments.iterations,
                )
                .wait()
                .with_context(|| format!("creating user {}", arguments.name))?;
            writeln!(
                stdout,
                "user {} created with {} ({} iterations)",
                arguments.name,
                arguments.mechanism.name(),
                arguments.iterations
            )?;
        }
        UserCommand::Delete { name, mechanism } => {
            client
                .admin()
                .delete_user(&name, mechanism)
                .wait()
                .with_context(|| format!("deleting user {name}"))?;
            writeln!(
                stdout,
                "user {name}: {} credential deleted",
                mechanism.name()
            )?;
        }
        UserCommand::List { output } => {
            let users = client
                .admin()
                .list_users()
                .wait()
                .context("listing users")?;
            if output.json {
                let users: Vec<_> = users
                    .iter()
                    .map(|user| {
                        let credentials: Vec<_> = user
                            .credentials
                            .iter()
                            .map(|(mechanism, iterations)| {
                                json!({"mechanism": mechanism, "iterations": iterations})
                            })
                            .collect();
                        json!({"user": user.name, "credentials": credentials})
                    })
                    .collect();
                return write_json(&mut stdout, &json!(users));
            }
            if stdout_colour() {
                writeln!(stdout, "{}", bold("USER\tMECHANISM\tITERATIONS", true))?;
            }
            for user in users {
                for (mechanism, iterations) in &user.credentials {
                    writeln!(stdout, "{}\t{mechanism}\t{iterations}", user.name)?;
                }
            }
        }
    }
    Ok(())
}
