//! End-to-end: the data directory and its catalog. One broker per directory (the lock), and
//! never a record deleted because metadata is missing or disagrees with the directories.
//!
//! A lost or truncated `producer_ids.toml` never lets a new idempotent producer take an id that
//! a partition remembers (its first batches would be dropped as an old producer's duplicates).
//!
//! Brokers that must refuse to start are run to their exit here, with their stderr kept, so the
//! test can check what the operator is told.

mod cli_support;

use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api::{Acks, InitProducerIdRequest};
use spate_protocol::batch::header::{stamp_producer, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
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
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--shards", "1"])
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

const TOPIC: &str = "orders";
const RECORDS_PER_PARTITION: usize = 1_000;

/// A stopped broker whose `orders` topic holds `RECORDS_PER_PARTITION` acks=all records in each
/// of its `partitions`.
fn stopped_broker_with_records(partitions: u32) -> Broker {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic(TOPIC, partitions, &[]);
    for partition in 0..partitions {
        for first in (0..RECORDS_PER_PARTITION).step_by(100) {
            let (code, _) = client.produce(
                TOPIC,
                partition,
                Acks::All,
                vec![build_batch(&numbered_records(first, 100, 0)).freeze()],
            );
            assert_eq!(code, ErrorCode::None);
        }
    }
    assert!(broker.terminate().success());
    broker
}

fn assert_every_record_readable(broker: &Broker, partitions: u32) {
    let mut client = TestClient::connect(broker.address());
    for partition in 0..partitions {
        assert_eq!(
            client.fetch_all(TOPIC, partition, 0).len(),
            RECORDS_PER_PARTITION,
            "partition {partition}"
        );
    }
}

/// Every `.log` file under the topic directories with its length: what must survive a refusal.
fn segment_logs(data_dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut found = Vec::new();
    let mut pending = vec![data_dir.join("topics")];
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory)
            .into_iter()
            .flatten()
            .flatten()
        {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|extension| extension == "log") {
                let length = entry.metadata().map_or(0, |metadata| metadata.len());
                found.push((path, length));
            }
        }
    }
    found.sort();
    found
}

fn recover_catalog(data_dir: &Path) -> String {
    let output = Command::new(broker_binary())
        .arg("recover-catalog")
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SPATE_DATA_DIR")
        .env_remove("SPATE_CONFIG")
        .output()
        .expect("run spate-broker recover-catalog");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "recover-catalog failed:\n{text}");
    text
}

fn edit_catalog(data_dir: &Path, edit: impl FnOnce(String) -> String) {
    let path = data_dir.join("catalog.toml");
    let text = std::fs::read_to_string(&path).expect("read catalog.toml");
    let edited = edit(text.clone());
    assert_ne!(edited, text, "the edit changed nothing");
    std::fs::write(&path, edited).expect("write catalog.toml");
}

#[test]
fn a_lost_catalog_deletes_nothing_and_recover_catalog_brings_every_record_back() {
    let mut broker = stopped_broker_with_records(2);
    let before = segment_logs(broker.data_dir());
    std::fs::remove_file(broker.data_dir().join("catalog.toml")).unwrap();

    let (status, log) = run_to_exit(broker.data_dir(), &[]);
    assert!(
        !status.success(),
        "the broker started without its catalog:\n{log}"
    );
    assert!(
        log.contains("catalog") && log.contains("is missing"),
        "{log}"
    );
    assert!(log.contains("recover-catalog"), "{log}");
    assert_eq!(segment_logs(broker.data_dir()), before, "data changed");

    let report = recover_catalog(broker.data_dir());
    assert!(report.contains("recovered topic orders"), "{report}");
    broker.restart();
    assert_every_record_readable(&broker, 2);
}

#[test]
fn a_topic_renamed_in_the_catalog_stops_the_broker_and_deletes_nothing() {
    let mut broker = stopped_broker_with_records(1);
    let before = segment_logs(broker.data_dir());
    edit_catalog(broker.data_dir(), |text| {
        text.replace("name = \"orders\"", "name = \"renamed\"")
    });

    let (status, log) = run_to_exit(broker.data_dir(), &[]);
    assert!(!status.success(), "the broker started:\n{log}");
    assert!(log.contains("is not a topic the catalog names"), "{log}");
    assert!(log.contains("renamed"), "{log}");
    assert_eq!(segment_logs(broker.data_dir()), before, "data changed");

    // The directories are right: rebuild the catalog from them.
    recover_catalog(broker.data_dir());
    broker.restart();
    assert_every_record_readable(&broker, 1);
}

#[test]
fn a_catalog_with_a_shortened_partition_list_stops_the_broker_naming_the_partition() {
    let mut broker = stopped_broker_with_records(3);
    let before = segment_logs(broker.data_dir());
    edit_catalog(broker.data_dir(), |text| {
        text.lines()
            .map(|line| match line.strip_prefix("partition_shards = [") {
                // Drop the last shard of the list: the catalog now names partitions 0 and 1.
                Some(_) => {
                    let cut = line.rfind(',').expect("three partitions");
                    format!("{}]", &line[..cut])
                }
                None => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n")
    });

    let (status, log) = run_to_exit(broker.data_dir(), &[]);
    assert!(!status.success(), "the broker started:\n{log}");
    assert!(log.contains("holds partition 2"), "{log}");
    assert_eq!(segment_logs(broker.data_dir()), before, "data changed");

    recover_catalog(broker.data_dir());
    broker.restart();
    assert_every_record_readable(&broker, 3);
}

#[test]
fn a_topic_whose_directory_is_missing_is_offline_the_rest_serve_and_deleting_it_clears_it() {
    let mut broker = stopped_broker_with_records(2);
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("other", 1, &[]);
    produce_numbered(&mut client, "other", 0, 5);
    drop(client);
    assert!(broker.terminate().success());
    let topics = broker.data_dir().join("topics");
    let orders = std::fs::read_dir(&topics)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| path.to_string_lossy().contains("orders."))
        .expect("the orders directory");
    std::fs::remove_dir_all(&orders).unwrap();

    // Before: the start was refused, every topic with it.
    broker.restart();
    let log = broker.drain_log().join("\n");
    assert!(
        log.contains("names this topic but its directory is missing") && log.contains("ERROR"),
        "{log}"
    );
    let described = cli_support::spate(broker.address(), &["topic", "describe", TOPIC], b"").ok();
    assert_eq!(
        described
            .lines()
            .filter(|line| line.contains("\toffline: "))
            .count(),
        2,
        "both partitions offline:\n{described}"
    );
    assert!(described.contains("missing"), "{described}");
    assert!(!orders.exists(), "the directory was recreated empty");
    let mut client = TestClient::connect(broker.address());
    assert_eq!(client.fetch_all("other", 0, 0).len(), 5);
    let (code, _) = client.produce(
        TOPIC,
        0,
        Acks::All,
        vec![build_batch(&numbered_records(0, 1, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::PartitionOffline);

    // The operator clears it: the topic is deleted, and its name can be used again.
    cli_support::spate(broker.address(), &["topic", "delete", TOPIC], b"").ok();
    client.create_topic(TOPIC, 1, &[]);
    produce_numbered(&mut client, TOPIC, 0, 3);
    drop(client);
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    assert_eq!(client.fetch_all(TOPIC, 0, 0).len(), 3);
    assert_eq!(client.fetch_all("other", 0, 0).len(), 5);
}

#[test]
fn a_catalog_with_invalid_utf8_is_reported_as_corrupt_with_its_line() {
    let broker = stopped_broker_with_records(1);
    let path = broker.data_dir().join("catalog.toml");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.splice(0..0, b"# \xff\n".iter().copied());
    std::fs::write(&path, bytes).unwrap();

    let (status, log) = run_to_exit(broker.data_dir(), &[]);
    assert!(!status.success(), "the broker started:\n{log}");
    assert!(log.contains("is corrupt: not UTF-8 text"), "{log}");
    assert!(log.contains("line 1, byte 3"), "{log}");
    assert!(!log.contains("catalog I/O failed"), "{log}");
}

#[test]
fn a_deleted_topic_leaves_no_directory_and_its_name_can_be_used_again_across_a_restart() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic(TOPIC, 1, &[]);
    produce_numbered(&mut client, TOPIC, 0, 5);
    let response = client.call(&spate_protocol::api::DeleteTopicsRequest {
        names: vec![TOPIC.to_string()],
        timeout_ms: 30_000,
    });
    assert_eq!(response.results[0].error_code, ErrorCode::None);
    let topics = broker.data_dir().join("topics");
    let left: Vec<_> = std::fs::read_dir(&topics).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    client.create_topic(TOPIC, 1, &[]);
    produce_numbered(&mut client, TOPIC, 0, 3);
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    assert_eq!(client.fetch_all(TOPIC, 0, 0).len(), 3);
}

#[test]
fn a_data_directory_on_tmpfs_is_reported_at_start_as_not_durable() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("skipped: no /dev/shm on this machine");
        return;
    }
    let data_dir = tempfile::Builder::new()
        .prefix("spate-test-tmpfs-")
        .tempdir_in(shm)
        .expect("a directory in /dev/shm");
    let mut child = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .args(["--shards", "1"])
        .env_remove("SPATE_LOG")
        .env_remove("SPATE_DATA_DIR")
        .env_remove("SPATE_CONFIG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spate-broker");
    let stderr = child.stderr.take().expect("piped stderr");
    // Read until the broker is ready or gone (whether tmpfs takes O_DIRECT depends on the
    // kernel); the warning comes before either.
    let mut lines = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stderr)) {
        let Ok(line) = line else { break };
        let ready = line.contains("broker ready");
        lines.push(line);
        if ready {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let log = lines.join("\n");
    let warning = lines
        .iter()
        .find(|line| line.contains("NOT DURABLE"))
        .unwrap_or_else(|| panic!("no tmpfs warning in:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("tmpfs, in memory, not on a disk"),
        "{warning}"
    );
}

/// InitProducerId for a new producer, retried while the broker answers that it is still
/// recovering producer ids (a retriable code, as the clients treat it).
fn new_producer(client: &mut TestClient) -> (i64, i16) {
    let deadline = Instant::now() + EXIT_TIMEOUT;
    loop {
        let answer = client.call(&InitProducerIdRequest {
            producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            ..InitProducerIdRequest::default()
        });
        if answer.error_code == ErrorCode::CoordinatorLoadInProgress && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        assert_eq!(answer.error_code, ErrorCode::None, "InitProducerId");
        return (answer.producer_id, answer.producer_epoch);
    }
}

/// One batch of `count` records from `first`, stamped with `identity` and `sequence`.
fn stamped_batch(first: usize, count: usize, identity: (i64, i16), sequence: i32) -> Bytes {
    let mut batch = build_batch(&numbered_records(first, count, 0));
    stamp_producer(&mut batch, identity.0, identity.1, sequence);
    batch.freeze()
}

/// A stopped two-shard broker whose `orders` topic holds, in each of its three partitions, a
/// batch of three records from each of several idempotent producers; returns their identities.
fn stopped_broker_with_idempotent_records() -> (Broker, Vec<(i64, i16)>) {
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let mut client = TestClient::connect(broker.address());
    client.create_topic(TOPIC, 3, &[]);
    let producers: Vec<(i64, i16)> = (0..3).map(|_| new_producer(&mut client)).collect();
    for partition in 0..3 {
        for (number, identity) in producers.iter().enumerate() {
            let (code, _) = client.produce(
                TOPIC,
                partition,
                Acks::All,
                vec![stamped_batch(number * 3, 3, *identity, 0)],
            );
            assert_eq!(code, ErrorCode::None, "produce to {TOPIC}/{partition}");
        }
    }
    drop(client);
    assert!(broker.terminate().success());
    (broker, producers)
}

#[test]
fn a_removed_producer_id_file_never_gives_a_new_producer_an_id_the_partitions_remember() {
    let (mut broker, old) = stopped_broker_with_idempotent_records();
    std::fs::remove_file(broker.data_dir().join("producer_ids.toml")).unwrap();

    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let new = new_producer(&mut client);
    let largest_old = old.iter().map(|(id, _)| *id).max().unwrap();
    assert!(
        new.0 > largest_old,
        "new producer id {} is not above the old ones {old:?}",
        new.0
    );
    // Its first batch has the same sequence as each old producer's first batch: it must be
    // stored, not answered as a duplicate of theirs (that would drop it in silence).
    for partition in 0..3 {
        let (code, base_offset) = client.produce(
            TOPIC,
            partition,
            Acks::All,
            vec![stamped_batch(100, 3, new, 0)],
        );
        assert_eq!(
            (code, base_offset),
            (ErrorCode::None, 9),
            "{TOPIC}/{partition}"
        );
        assert_eq!(client.fetch_all(TOPIC, partition, 0).len(), 12);
    }
    // The old producers are still known: an epoch bump keeps their id.
    let bumped = client.call(&InitProducerIdRequest {
        producer_id: old[0].0,
        producer_epoch: old[0].1,
        ..InitProducerIdRequest::default()
    });
    assert_eq!(bumped.error_code, ErrorCode::None);
    assert_eq!(bumped.producer_id, old[0].0);
    // Said loudly, before the first new id was issued.
    let log = broker
        .wait_for_log_line("producer ids recovered")
        .join("\n");
    assert!(log.contains("producer id reservation is missing"), "{log}");

    // The recovered reservation is durable: a plain restart keeps going above it.
    drop(client);
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let after_restart = new_producer(&mut client);
    assert!(after_restart.0 > new.0, "{after_restart:?} after {new:?}");
}

#[test]
fn a_truncated_producer_id_file_stops_the_broker_saying_what_to_do() {
    let (mut broker, old) = stopped_broker_with_idempotent_records();
    let path = broker.data_dir().join("producer_ids.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    // Cut inside the number: what is left still parses, as a smaller reservation.
    std::fs::write(&path, &text[..text.len() - 2]).unwrap();

    let (status, log) = run_to_exit(broker.data_dir(), &[]);
    assert!(!status.success(), "the broker started:\n{log}");
    assert!(
        log.contains("producer_ids.toml") && log.contains("truncated"),
        "{log}"
    );
    assert!(log.contains("move it aside"), "{log}");

    // The step the message names.
    std::fs::remove_file(&path).unwrap();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let new = new_producer(&mut client);
    assert!(
        old.iter().all(|(id, _)| new.0 > *id),
        "{new:?} among {old:?}"
    );
}
