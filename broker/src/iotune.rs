//! `spate-broker iotune --data-dir DIR`: measures the data directory's disk with the broker's own
//! I/O path (`spate_storage::iotune`), prints a table as it goes, and writes the result to
//! `DIR/iotune.toml`, which the broker reads at start to size its writes and group commit.
//! Takes the data directory's lock, so it never runs beside a broker on the same directory.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use spate_cluster::catalog::DataDirectoryLock;
use spate_cluster::shard::signal::{ShutdownFlag, SignalListener};
use spate_storage::iotune::result::{IotuneResult, TransferPoint};
use spate_storage::iotune::sizing::{duration_text, rate_text, size_text};
use spate_storage::iotune::{self, IotuneOptions, Progress};

/// The subcommand's name, the first argument.
pub const IOTUNE_COMMAND: &str = "iotune";

/// The subcommand's flags.
#[derive(Debug, clap::Parser)]
#[command(
    name = "spate-broker iotune",
    about = "Measures the data directory's disk (O_DIRECT bandwidth and IOPS by block size and \
             queue depth, fdatasync latency) and writes DIR/iotune.toml, which the broker sizes \
             its writes from"
)]
struct IotuneCommandLine {
    /// The broker's data directory; the scratch files and iotune.toml go there.
    #[arg(long, env = "SPATE_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,
    /// Scratch file size for the transfer points, in bytes or with a K, M or G suffix (binary).
    #[arg(long, default_value = "1G", value_parser = parse_size_bytes)]
    size_bytes: u64,
    /// How long each transfer point runs (the sync latency test runs up to 5 times this).
    #[arg(long, default_value_t = iotune::DURATION_MS_DEFAULT)]
    duration_ms: u64,
    /// Measure a data directory on tmpfs or ramfs anyway (its figures describe memory, not a disk).
    #[arg(long)]
    allow_memory_file_system: bool,
    /// Print the result without writing iotune.toml.
    #[arg(long)]
    dry_run: bool,
}

/// `8M`, `1G`, `4096`: binary multiples.
fn parse_size_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, multiplier) = match text.char_indices().last() {
        Some((index, 'k' | 'K')) => (&text[..index], 1 << 10),
        Some((index, 'm' | 'M')) => (&text[..index], 1 << 20),
        Some((index, 'g' | 'G')) => (&text[..index], 1 << 30),
        _ => (text, 1),
    };
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 4096, 8M or 1G"))?;
    value
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// Runs the subcommand; `arguments` start with the program name, the subcommand removed.
pub fn run(arguments: Vec<std::ffi::OsString>) -> ExitCode {
    let command_line = <IotuneCommandLine as clap::Parser>::parse_from(arguments);
    let data_dir = match std::path::absolute(&command_line.data_dir) {
        Ok(data_dir) => data_dir,
        Err(error) => {
            eprintln!(
                "spate-broker: cannot resolve data directory {}: {error}",
                command_line.data_dir.display()
            );
            return ExitCode::from(2);
        }
    };
    let lock = match DataDirectoryLock::acquire(&data_dir, IOTUNE_COMMAND) {
        Ok(lock) => lock,
        Err(error) => {
            eprintln!("spate-broker: {error}");
            return ExitCode::FAILURE;
        }
    };
    let stop = ShutdownFlag::default();
    let _signals = match SignalListener::start(&stop) {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("spate-broker: cannot listen for signals: {error}");
            return ExitCode::FAILURE;
        }
    };
    let options = IotuneOptions {
        data_dir: data_dir.clone(),
        size_bytes: command_line.size_bytes,
        duration_ms: command_line.duration_ms,
        allow_memory_file_system: command_line.allow_memory_file_system,
        stop_requested: Arc::new(move || stop.is_requested()),
    };
    println!(
        "measuring {} with {} of scratch, {} ms per point",
        data_dir.display(),
        size_text(usize::try_from(command_line.size_bytes).unwrap_or(usize::MAX)),
        command_line.duration_ms
    );
    let measured = iotune::measure(&options, &mut print_progress);
    let result = match measured {
        Ok(result) => result,
        Err(error) => {
            eprintln!("spate-broker: iotune failed: {error}");
            return ExitCode::FAILURE;
        }
    };
    print_summary(&result);
    if command_line.dry_run {
        return ExitCode::SUCCESS;
    }
    let written = result.write_to(&data_dir);
    drop(lock);
    match written {
        Ok(path) => {
            println!(
                "written to {}; the broker sizes its writes from it at its next start",
                path.display()
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("spate-broker: cannot write the result: {error}");
            ExitCode::FAILURE
        }
    }
}

fn print_point(direction: &str, point: &TransferPoint) {
    println!(
        "{direction:<6} {:>8} {:>5} {:>12} {:>10.0}",
        size_text(point.block_bytes),
        point.queue_depth,
        rate_text(point.bytes_per_second),
        point.operations_per_second
    );
}

fn print_progress(progress: Progress<'_>) {
    match progress {
        Progress::Layout { size_bytes } => {
            println!(
                "laid out a {} scratch file; sequential O_DIRECT transfers:",
                size_text(usize::try_from(size_bytes).unwrap_or(usize::MAX))
            );
            println!(
                "{:<6} {:>8} {:>5} {:>12} {:>10}",
                "", "block", "depth", "bandwidth", "IOPS"
            );
        }
        Progress::Write(point) => print_point("write", point),
        Progress::Read(point) => print_point("read", point),
        Progress::Sync(sync) => println!(
            "fdatasync after a {} append, {} rounds: p50 {}, p90 {}, p99 {}, p99.9 {}, \
             p99.99 {}, max {}",
            size_text(sync.write_bytes),
            sync.rounds,
            duration_text(sync.p50_ns),
            duration_text(sync.p90_ns),
            duration_text(sync.p99_ns),
            duration_text(sync.p99_9_ns),
            duration_text(sync.p99_99_ns),
            duration_text(sync.max_ns),
        ),
    }
}

fn print_summary(result: &IotuneResult) {
    let device = &result.device;
    println!(
        "device {} ({}{}), file system {}",
        device.name,
        if device.model.is_empty() {
            "no model string"
        } else {
            &device.model
        },
        match device.rotational {
            Some(true) => ", rotational",
            Some(false) => ", not rotational",
            None => "",
        },
        device.file_system
    );
    let chosen = &result.recommendations;
    println!("the broker will use, unless set explicitly:");
    println!(
        "  write_buffer_bytes = {} ({})\n    because {}",
        chosen.write_buffer_bytes,
        size_text(chosen.write_buffer_bytes),
        chosen.write_buffer_reason
    );
    println!(
        "  write_queue_bytes_max = {} ({})\n    because {}",
        chosen.write_queue_bytes_max,
        size_text(chosen.write_queue_bytes_max),
        chosen.write_queue_reason
    );
    println!(
        "  group_commit_us = {}\n    because {}",
        chosen.group_commit_us, chosen.group_commit_reason
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_binary_suffixes() {
        assert_eq!(parse_size_bytes("4096"), Ok(4096));
        assert_eq!(parse_size_bytes("8M"), Ok(8 << 20));
        assert_eq!(parse_size_bytes("1g"), Ok(1 << 30));
        assert_eq!(parse_size_bytes("64K"), Ok(64 << 10));
        assert!(parse_size_bytes("M").is_err());
        assert!(parse_size_bytes("-1").is_err());
        assert!(parse_size_bytes("99999999999G").is_err());
    }
}
