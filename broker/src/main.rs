//! `spate-broker`: reads the configuration (defaults < file < flags < env), sets up logging, and
//! runs the broker until SIGTERM/SIGINT. Exit code 0 after a clean shutdown, 1 on a failure,
//! 2 on a configuration error. Everything else lives in the library (`server`, `shard`, ...).

use std::process::ExitCode;

use spate_broker::config::Config;
use spate_broker::shard::signal::ShutdownFlag;

fn main() -> ExitCode {
    let config = match Config::from_process() {
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
        shards = config.placement.shard_count(),
        placement = ?config.placement,
        "starting spate-broker"
    );
    match spate_broker::server::run(config, ShutdownFlag::default()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "broker failed");
            ExitCode::FAILURE
        }
    }
}
