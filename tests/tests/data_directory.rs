//! End-to-end: the data directory and its catalog. One broker per directory (the lock), and
//! never a record deleted because metadata is missing or disagrees with the directories.
//!
//! Brokers that must refuse to start are run to their exit here, with their stderr kept, so the
//! test can check what the operator is told.

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use spate_protocol::api::Acks;
use spate_protocol::error::ErrorCode;
use spate_tests::broker_process::broker_binary;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

/// How long a broker that should refuse to start may take to exit (debug build, loaded machine).
const EXIT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a broker on `data_dir` until it exits by itself; returns its status and its stderr. A
/// broker still running at the deadline is killed and fails the test: it should have refused.
fn run_to_exit(data_dir: &Path, arguments: &[&str]) -> (ExitStatus, String) {
    let mut child = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--listen", "127.0.0.1:0", "--shards", "1"])
        .args(arguments)
        .env_remove("SPATE_LOG")
        .env_remove("SPATE_DATA_DIR")
        .env_remove("SPATE_LISTEN")
        .env_remove("SPATE_SHARDS")
        .env_remove("SPATE_CORES")
        .env_remove("SPATE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spate-broker");
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        if child.try_wait().expect("wait for broker").is_some() {
            let output = child.wait_with_output().expect("broker output");
            let mut text = String::from_utf8_lossy(&output.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&output.stdout));
            return (output.status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("broker output");
            panic!(
                "broker did not exit within {EXIT_TIMEOUT:?}; its log:\n{}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn produce_numbered(client: &mut TestClient, topic: &str, partition: u32, count: usize) {
    let (code, _) = client.produce(
        topic,
        partition,
        Acks::All,
        vec![build_batch(&numbered_records(0, count, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::None, "produce to {topic}/{partition}");
}

#[test]
fn a_second_broker_on_the_same_directory_refuses_to_start_and_the_first_keeps_its_records() {
    let mut first = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(first.address());
    client.create_topic("kept", 1, &[]);
    produce_numbered(&mut client, "kept", 0, 5);

    let (status, log) = run_to_exit(first.data_dir(), &[]);
    assert!(!status.success(), "the second broker started:\n{log}");
    assert!(log.contains("is in use by another broker"), "{log}");
    assert!(log.contains(&format!("pid={}", first.pid())), "{log}");
    assert!(
        !log.contains("removing topic directory"),
        "the second broker touched the first one's topics:\n{log}"
    );
    assert_eq!(client.fetch_all("kept", 0, 0).len(), 5);

    // kill -9 leaves no stale lock: the kernel released it with the process.
    first.kill();
    first.restart();
    let mut client = TestClient::connect(first.address());
    assert_eq!(client.fetch_all("kept", 0, 0).len(), 5);
}
