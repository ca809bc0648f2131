//! End-to-end: `spate-broker iotune` on a small size (seconds, so CI runs it) writes
//! `iotune.toml` with every point of the grid and removes its scratch files, and a broker
//! started on that data directory sizes its partition logs from it; an explicit setting wins
//! over it, and a corrupt file is ignored with a warning instead of failing the start.
//!
//! Figures are not checked (speed is a benchmark's business, and a CI disk is anything): only
//! that every point was measured, and what the broker says it did with them.

use std::path::Path;
use std::process::Command;

use spate_storage::iotune::result::IotuneResult;
use spate_storage::iotune::{
    BLOCK_SIZES_BYTES, QUEUE_DEPTHS, RESULT_FILE_NAME, SCRATCH_FILE_NAME, SYNC_ROUNDS_MIN,
    SYNC_SCRATCH_FILE_NAME,
};
use spate_storage::medium::memory_file_system;
use spate_tests::broker_process::broker_binary;
use spate_tests::{Broker, BrokerOptions};

fn run_iotune(data_dir: &Path) -> String {
    let output = Command::new(broker_binary())
        .arg("iotune")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--size-bytes", "8M", "--duration-ms", "50"])
        .output()
        .expect("run spate-broker iotune");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "iotune failed: {}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The broker's start-up line saying how it sized its logs from `iotune.toml`.
fn sizing_line(broker: &mut Broker) -> String {
    const NEEDLE: &str = "storage sized from iotune.toml";
    broker
        .wait_for_log_line(NEEDLE)
        .into_iter()
        .find(|line| line.contains(NEEDLE))
        .expect("the line was found")
}

#[test]
fn iotune_measures_every_point_and_the_broker_sizes_its_logs_from_it() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let data_dir = broker.data_dir().to_path_buf();
    if let Some(file_system) = memory_file_system(&data_dir) {
        eprintln!("skipped: the test data directory is on {file_system}, which iotune refuses");
        return;
    }
    assert!(broker.terminate().success());

    let stdout = run_iotune(&data_dir);
    assert!(stdout.contains("fdatasync"), "{stdout}");
    let result = IotuneResult::read_from(&data_dir)
        .expect("the result file is valid")
        .expect("iotune wrote its result file");
    for points in [&result.write, &result.read] {
        let mut measured: Vec<(usize, usize)> = points
            .iter()
            .map(|point| (point.block_bytes, point.queue_depth))
            .collect();
        measured.sort_unstable();
        let mut grid: Vec<(usize, usize)> = BLOCK_SIZES_BYTES
            .iter()
            .flat_map(|&block| QUEUE_DEPTHS.iter().map(move |&depth| (block, depth)))
            .collect();
        grid.sort_unstable();
        assert_eq!(measured, grid);
        assert!(
            points.iter().all(|point| point.operations > 0),
            "{points:?}"
        );
    }
    assert!(
        result.sync.rounds >= SYNC_ROUNDS_MIN as u64,
        "{:?}",
        result.sync
    );
    assert_eq!(result.run.size_bytes, 8 << 20);
    for scratch in [SCRATCH_FILE_NAME, SYNC_SCRATCH_FILE_NAME] {
        assert!(!data_dir.join(scratch).exists(), "{scratch} left behind");
    }

    // The broker sizes from it, and says so.
    broker.restart();
    let line = sizing_line(&mut broker);
    let expected = format!(
        "write_buffer_bytes={}",
        result.recommendations.write_buffer_bytes
    );
    assert!(line.contains(&expected), "{line}");
    assert!(line.contains("write_buffer_from=\"iotune.toml\""), "{line}");
    assert!(broker.terminate().success());

    // An explicit setting wins over the file.
    broker.restart_with(BrokerOptions {
        shards: 1,
        arguments: vec!["--storage-write-buffer-bytes".into(), "65536".into()],
        ..BrokerOptions::default()
    });
    let line = sizing_line(&mut broker);
    assert!(line.contains("write_buffer_bytes=65536"), "{line}");
    assert!(line.contains("write_buffer_from=\"setting\""), "{line}");
    assert!(broker.terminate().success());

    // A corrupt file: a warning, the defaults, and a broker that serves.
    std::fs::write(
        data_dir.join(RESULT_FILE_NAME),
        "format_version = 1\n[write",
    )
    .unwrap();
    broker.restart_with(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    broker.wait_for_log_line("iotune.toml ignored");
    assert!(broker.terminate().success());
}

#[test]
fn iotune_refuses_a_memory_file_system_and_says_why() {
    let shm = Path::new("/dev/shm");
    if memory_file_system(shm).is_none() {
        eprintln!("skipped: /dev/shm is not a memory file system here");
        return;
    }
    let data_dir = tempfile::tempdir_in(shm).expect("a directory in /dev/shm");
    let output = Command::new(broker_binary())
        .arg("iotune")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--size-bytes", "8M", "--duration-ms", "10"])
        .output()
        .expect("run spate-broker iotune");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tmpfs") && stderr.contains("--allow-memory-file-system"),
        "{stderr}"
    );
    assert!(!data_dir.path().join(RESULT_FILE_NAME).exists());
}

#[test]
fn an_interrupted_iotune_removes_its_scratch_files_and_writes_no_result() {
    // A stopped broker's data directory: on the test disk, and removed when `broker` drops.
    let mut broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let data_dir = broker.data_dir().to_path_buf();
    if let Some(file_system) = memory_file_system(&data_dir) {
        eprintln!("skipped: the test data directory is on {file_system}, which iotune refuses");
        return;
    }
    assert!(broker.terminate().success());
    let mut child = Command::new(broker_binary())
        .arg("iotune")
        .arg("--data-dir")
        .arg(&data_dir)
        .args(["--size-bytes", "8M", "--duration-ms", "600000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run spate-broker iotune");
    // Once the scratch file is laid out, the first ten-minute point is running.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    assert!(
        lines.any(|line| line.is_ok_and(|line| line.starts_with("laid out"))),
        "iotune never laid out its scratch file"
    );
    assert!(data_dir.join(SCRATCH_FILE_NAME).exists());
    // SAFETY: kill(2) with a pid this test spawned and has not waited for.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
    let status = child.wait().expect("wait for iotune");
    assert!(!status.success(), "an interrupted run is no success");
    assert!(!data_dir.join(SCRATCH_FILE_NAME).exists());
    assert!(!data_dir.join(SYNC_SCRATCH_FILE_NAME).exists());
    assert!(!data_dir.join(RESULT_FILE_NAME).exists());
}
