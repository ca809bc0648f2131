//! `spate-broker`: reads the configuration (defaults < file < flags < env), sets up logging, and
//! runs the broker until SIGTERM/SIGINT. Exit code 0 after a clean shutdown, 1 on a failure,
//! 2 on a configuration error. Everything else lives in the library (`server`, `shard`, ...).
//! `spate-broker recover-catalog [flags]` rebuilds a lost or wrong catalog from the topic
//! directories instead of running the broker. `spate-broker iotune [flags]` measures the data
//! directory's disk and writes `iotune.toml` (see `iotune`). `spate-broker check [flags]
//! [--apply] [--json]` inspects the host for the broker's data directory and cores (spate-host).
//! `spate-broker user create --data-dir D --name N --password P` writes the first user's
//! credential offline (see `user`).

mod iotune;
mod user;

use std::process::ExitCode;

use spate_cluster::catalog::{self, DataDirectoryLock};
use spate_cluster::shard::signal::ShutdownFlag;
use spate_server::config::{Config, ShardPlacement};

/// The subcommand that rebuilds a lost or wrong catalog from the topic directories.
const RECOVER_CATALOG_COMMAND: &str = "recover-catalog";
/// The subcommand that inspects the host (and with --apply tunes it).
const CHECK_COMMAND: &str = "check";

fn main() -> ExitCode {
    let mut arguments: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if arguments
        .get(1)
        .is_some_and(|first| first == iotune::IOTUNE_COMMAND)
    {
        arguments.remove(1);
        return iotune::run(arguments);
    }
    if arguments
        .get(1)
        .is_some_and(|first| first == user::USER_COMMAND)
    {
        arguments.remove(1);
        return user::run(arguments);
    }
    let recover = arguments
        .get(1)
        .is_some_and(|first| first == RECOVER_CATALOG_COMMAND);
    if recover {
        arguments.remove(1);
    }
    let mut check_flags = None;
    if arguments.get(1).is_some_and(|first| first == CHECK_COMMAND) {
        arguments.remove(1);
        let flags = spate_host::cli::take_check_flags(&mut arguments);
        if flags.help {
            print!("{}", spate_host::cli::CHECK_HELP);
            return ExitCode::SUCCESS;
        }
        check_flags = Some(flags);
    }
    let config = match Config::from_arguments(arguments) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("spate-broker: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    // Resolve the data directory once, so every log line names the real place and no file
    // operation depends on the working directory staying put.
    let mut config = config;
    match std::path::absolute(&config.data_dir) {
        Ok(data_dir) => config.data_dir = data_dir,
        Err(error) => {
            eprintln!(
                "spate-broker: cannot resolve data directory {}: {error}",
                config.data_dir.display()
            );
            return ExitCode::from(2);
        }
    }
    if recover {
        return recover_catalog(&config.data_dir);
    }
    if let Some(flags) = check_flags {
        return check_host(&config, flags);
    }
    // `check` validated the filter; a failure here would be a bug, and the default is safe.
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        data_dir = %config.data_dir.display(),
        listen = %config.listen,
        node_id = config.cluster.node_id,
        seeds = %config
            .cluster
            .seeds
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(","),
        shards = config.placement.shard_count(),
        placement = ?config.placement,
        "starting spate-broker"
    );
    match spate_server::run(config, ShutdownFlag::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "broker failed");
            ExitCode::FAILURE
        }
    }
}

/// `spate-broker check`: the host against this configuration's data directory and shard cores.
fn check_host(config: &Config, flags: spate_host::cli::CheckFlags) -> ExitCode {
    let (shard_cores, shards_pinned) = match &config.placement {
        ShardPlacement::Pinned(cores) => (cores.clone(), true),
        ShardPlacement::Unpinned(_) => (spate_server::config::available_cores(), false),
    };
    let options = spate_host::CheckOptions {
        data_dir: config.data_dir.clone(),
        shard_cores,
        shards_pinned,
        io_memory_bytes: config.limits.io_memory_bytes as u64,
    };
    let code = spate_host::cli::run(
        &spate_host::RealHost,
        &options,
        flags,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    );
    ExitCode::from(code)
}

/// `spate-broker recover-catalog`: under the data directory's lock (so never beside a running
/// broker), rebuilds `catalog.toml` from the topic directories and says what it found.
fn recover_catalog(data_dir: &std::path::Path) -> ExitCode {
    let lock = match DataDirectoryLock::acquire(data_dir, RECOVER_CATALOG_COMMAND) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("spate-broker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = catalog::recover_catalog(data_dir);
    drop(lock);
    match outcome {
        Ok(recovered) => {
            if let Some(previous) = &recovered.previous_catalog {
                println!("previous catalog kept as {}", previous.display());
            }
            for (name, id, partitions, source) in &recovered.topics {
                println!(
                    "recovered topic {name} (id {id}): {partitions} partitions, from {source}"
                );
            }
            println!(
                "catalog rebuilt in {} with {} topics; start the broker to serve them",
                data_dir.display(),
                recovered.topics.len()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spate-broker: recover-catalog failed: {error}");
            ExitCode::FAILURE
        }
    }
}
