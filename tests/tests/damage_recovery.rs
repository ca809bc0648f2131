//! End-to-end: what the broker does when a partition's files are damaged or missing. A partition
//! that cannot be opened goes offline with its reason (file, position, what is wrong), its
//! requests fail with `PartitionOffline`, and every other partition serves as before.
//!
//! The damage is done by hand to the files of a stopped broker, as a failing disk or an
//! operator's mistake would; the broker is the real binary, driven with the raw test client and
//! the `spate` tool.

mod cli_support;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use spate_protocol::api::{Acks, DescribeTopicRequest};
use spate_protocol::error::ErrorCode;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

/// The smallest segments a topic may have, so that a few batches make closed segments.
const SEGMENT_BYTES: &str = "65536";

/// The directory of `partition` of `topic` (`<data>/topics/<topic>.<id>/<partition>`).
fn partition_directory(broker: &Broker, topic: &str, partition: u32) -> PathBuf {
    let topics = broker.data_dir().join("topics");
    let prefix = format!("{topic}.");
    let topic_directory = std::fs::read_dir(&topics)
        .expect("list the topics directory")
        .map(|entry| entry.expect("a directory entry").path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(&prefix))
        })
        .unwrap_or_else(|| panic!("no directory for topic {topic} in {}", topics.display()));
    topic_directory.join(partition.to_string())
}

/// The partition's segment logs, oldest first.
fn segment_logs(directory: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(directory)
        .expect("list the partition directory")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .collect();
    logs.sort();
    logs
}

/// Produces `batches` batches of `records` records each to one partition with acks=all.
fn produce_batches(
    client: &mut TestClient,
    topic: &str,
    partition: u32,
    batches: usize,
    records: usize,
) {
    for number in 0..batches {
        let batch = build_batch(&numbered_records(number * records, records, 1_000)).freeze();
        let (code, _) = client.produce(topic, partition, Acks::All, vec![batch]);
        assert_eq!(
            code,
            ErrorCode::None,
            "produce batch {number} to {topic}/{partition}"
        );
    }
}

#[test]
fn a_corrupt_closed_segment_takes_only_its_partition_offline_and_the_rest_serve() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("damaged", 2, &[("segment.bytes", SEGMENT_BYTES)]);
    produce_batches(&mut client, "damaged", 0, 40, 200);
    produce_batches(&mut client, "damaged", 1, 5, 10);
    drop(client);
    assert!(broker.terminate().success());

    let directory = partition_directory(&broker, "damaged", 0);
    let logs = segment_logs(&directory);
    assert!(logs.len() >= 2, "expected closed segments, found {logs:?}");
    // Flip a byte in the payload of the closed segment's last batch: a medium error.
    let closed = &logs[0];
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(closed)
        .expect("open the closed segment");
    let size = file.metadata().expect("segment metadata").len();
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, size - 5)
        .expect("read a byte");
    byte[0] ^= 0xff;
    file.write_all_at(&byte, size - 5).expect("damage a byte");
    drop(file);

    // Before offline partitions, the broker exited here (status 1) and the helper panicked.
    broker.restart();
    let log = broker.drain_log().join("\n");
    let closed_name = closed.file_name().unwrap().to_str().unwrap();
    assert!(
        log.contains("partition offline") && log.contains(closed_name),
        "the log names the offline partition's file:\n{log}"
    );

    let mut client = TestClient::connect(broker.address());
    let batch = build_batch(&numbered_records(0, 1, 2_000)).freeze();
    let (code, _) = client.produce("damaged", 0, Acks::All, vec![batch.clone()]);
    assert_eq!(code, ErrorCode::PartitionOffline);
    let (code, offset) = client.produce("damaged", 1, Acks::All, vec![batch]);
    assert_eq!((code, offset), (ErrorCode::None, 50));
    assert_eq!(client.fetch_all("damaged", 1, 0).len(), 51);
    let fetched = client.call(&spate_tests::client::fetch_request(
        "damaged", 0, 0, 4096, 0, 0,
    ));
    assert_eq!(
        fetched.topics[0].partitions[0].error_code,
        ErrorCode::PartitionOffline
    );

    let described = client.call(&DescribeTopicRequest {
        name: "damaged".into(),
    });
    assert_eq!(described.error_code, ErrorCode::None);
    let damaged = &described.partitions[0];
    assert_eq!(damaged.error_code, ErrorCode::PartitionOffline);
    let reason = damaged.error_message.as_deref().unwrap_or_default();
    assert!(
        reason.contains(closed_name) && reason.contains("no valid batch starts here"),
        "the reason names the file and what is wrong: {reason}"
    );
    assert_eq!(described.partitions[1].error_code, ErrorCode::None);

    let shown = cli_support::spate(broker.address(), &["topic", "describe", "damaged"], b"").ok();
    let offline_line = shown
        .lines()
        .find(|line| line.starts_with("0\t"))
        .unwrap_or_else(|| panic!("no line for partition 0:\n{shown}"));
    assert!(
        offline_line.contains("offline: ") && offline_line.contains(closed_name),
        "{shown}"
    );
    assert!(
        !offline_line.contains("offline: partition offline"),
        "the word offline once: {shown}"
    );
    assert!(
        shown
            .lines()
            .any(|line| line.starts_with("1\t") && line.ends_with("\tonline")),
        "{shown}"
    );

    // Other topics are created and served as usual.
    client.create_topic("healthy", 1, &[]);
    produce_batches(&mut client, "healthy", 0, 2, 10);
    assert_eq!(client.fetch_all("healthy", 0, 0).len(), 20);
}

/// Asserts that describe shows the partition offline with a reason holding every word.
fn assert_offline_with(client: &mut TestClient, topic: &str, partition: u32, words: &[&str]) {
    let described = client.call(&DescribeTopicRequest { name: topic.into() });
    let answer = &described.partitions[partition as usize];
    assert_eq!(answer.error_code, ErrorCode::PartitionOffline);
    let reason = answer.error_message.as_deref().unwrap_or_default();
    for word in words {
        assert!(
            reason.contains(word),
            "{word:?} not in the reason: {reason}"
        );
    }
}

#[test]
fn a_truncated_active_log_is_refused_and_no_offset_is_reused() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("cut", 2, &[]);
    produce_batches(&mut client, "cut", 0, 10, 10);
    produce_batches(&mut client, "cut", 1, 1, 10);
    drop(client);
    assert!(broker.terminate().success());

    let logs = segment_logs(&partition_directory(&broker, "cut", 0));
    let active = logs.last().expect("an active segment");
    OpenOptions::new()
        .write(true)
        .open(active)
        .expect("open the active segment")
        .set_len(0)
        .expect("truncate it");

    broker.restart();
    let mut client = TestClient::connect(broker.address());
    // Before: the partition came back empty and this produce got offset 0 again.
    let batch = build_batch(&numbered_records(0, 1, 2_000)).freeze();
    let (code, _) = client.produce("cut", 0, Acks::All, vec![batch.clone()]);
    assert_eq!(code, ErrorCode::PartitionOffline);
    assert_offline_with(
        &mut client,
        "cut",
        0,
        &[
            "data lost",
            "recovery point",
            "up to 100",
            "ends at offset 0",
        ],
    );
    let (code, offset) = client.produce("cut", 1, Acks::All, vec![batch]);
    assert_eq!((code, offset), (ErrorCode::None, 10));
}

#[test]
fn a_deleted_partition_directory_is_not_recreated_empty() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("gone", 2, &[]);
    produce_batches(&mut client, "gone", 0, 3, 10);
    drop(client);
    assert!(broker.terminate().success());

    let directory = partition_directory(&broker, "gone", 0);
    std::fs::remove_dir_all(&directory).expect("remove the partition directory");

    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let batch = build_batch(&numbered_records(0, 1, 2_000)).freeze();
    let (code, _) = client.produce("gone", 0, Acks::All, vec![batch.clone()]);
    assert_eq!(code, ErrorCode::PartitionOffline);
    assert_offline_with(&mut client, "gone", 0, &["missing", "not recreated"]);
    assert!(!directory.exists(), "the directory was recreated");
    let (code, _) = client.produce("gone", 1, Acks::All, vec![batch]);
    assert_eq!(code, ErrorCode::None);
}

/// The bytes of log the broker's shards re-read at start-up, from their "partitions
/// recovered" lines: (scanned batch by batch, replayed for the producer state).
fn recovery_bytes(log: &[String]) -> (u64, u64) {
    let field = |line: &str, name: &str| -> u64 {
        let start = line
            .find(name)
            .map(|at| at + name.len())
            .unwrap_or(line.len());
        line[start..]
            .split(|character: char| !character.is_ascii_digit())
            .next()
            .and_then(|digits| digits.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    log.iter()
        .filter(|line| line.contains("partitions recovered"))
        .fold((0, 0), |(scanned, replayed), line| {
            (
                scanned + field(line, "recovery_bytes_scanned="),
                replayed + field(line, "recovery_bytes_replayed="),
            )
        })
}

#[test]
fn a_restart_after_kill_9_rereads_only_what_follows_the_recovery_point() {
    let options = BrokerOptions {
        shards: 1,
        arguments: vec!["--recovery-point-interval-ms".into(), "100".into()],
        ..BrokerOptions::default()
    };
    let mut broker = Broker::start(options);
    let mut client = TestClient::connect(broker.address());
    client.create_topic("old", 1, &[]);
    // About 8 MB in the active segment: before the recovery point, all of it was replayed.
    produce_batches(&mut client, "old", 0, 200, 2_000);
    let (_, high_watermark) = client.offsets_of("old", 0);
    let recovery_point = partition_directory(&broker, "old", 0).join("recovery-point");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let written = std::fs::read(&recovery_point).ok().and_then(|bytes| {
            bytes
                .get(8..16)
                .map(|offset| u64::from_le_bytes(offset.try_into().unwrap()))
        });
        if written == Some(high_watermark) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no recovery point at {high_watermark} (found {written:?})"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    produce_batches(&mut client, "old", 0, 1, 10);
    drop(client);
    broker.kill();
    broker.drain_log();

    broker.restart();
    let (scanned, replayed) = recovery_bytes(&broker.drain_log());
    let mut client = TestClient::connect(broker.address());
    assert_eq!(client.offsets_of("old", 0).1, high_watermark + 10);
    // One small batch after the recovery point is replayed; the scan starts at the last
    // index entry on disk (at most one index persist interval, 4 MiB, behind).
    assert!(replayed < 4096, "replayed {replayed} bytes");
    assert!(scanned <= 4 * 1024 * 1024 + 4096, "scanned {scanned} bytes");
}

#[test]
fn a_topic_directory_removed_under_a_running_broker_stops_acks_and_goes_offline() {
    let options = BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    };
    let mut broker = Broker::start(options);
    let mut client = TestClient::connect(broker.address());
    client.create_topic("removed", 2, &[]);
    client.create_topic("kept", 1, &[]);
    produce_batches(&mut client, "removed", 0, 3, 10);
    produce_batches(&mut client, "removed", 1, 3, 10);
    let directory = partition_directory(&broker, "removed", 0);
    let topic_directory = directory.parent().expect("topic directory").to_path_buf();
    remove_tree_like_rm_rf(&topic_directory);

    // Before: produces were acknowledged (until the recovery point timer noticed, or forever),
    // and after a restart the partition was empty. Now the sync's link count check refuses the
    // very first acks=all produce after the removal.
    let batch = build_batch(&numbered_records(30, 10, 2_000)).freeze();
    let (code, _) = client.produce("removed", 0, Acks::All, vec![batch]);
    assert_eq!(
        code,
        ErrorCode::PartitionOffline,
        "the produce was answered"
    );
    assert_offline_with(
        &mut client,
        "removed",
        0,
        &[
            "removed under the running broker",
            "00000000000000000000.log",
        ],
    );
    // The idle partition of the same topic is found by the shard's timer (once a second).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let described = client.call(&DescribeTopicRequest {
            name: "removed".into(),
        });
        if described.partitions[1].error_code == ErrorCode::PartitionOffline {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partition 1 still served: {described:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let log = broker.drain_log().join("\n");
    assert!(
        log.contains("its files are gone under the running broker"),
        "{log}"
    );
    produce_batches(&mut client, "kept", 0, 1, 10);
    assert_eq!(client.fetch_all("kept", 0, 0).len(), 10);
    drop(client);

    // After a restart the broker serves the other topic and reports both partitions offline:
    // their directory is missing, and it is not recreated empty.
    assert!(broker.terminate().success());
    broker.restart();
    let log = broker.drain_log().join("\n");
    assert!(log.contains("is missing"), "{log}");
    let mut client = TestClient::connect(broker.address());
    for partition in 0..2 {
        assert_offline_with(
            &mut client,
            "removed",
            partition,
            &["missing", "not recreated"],
        );
    }
    assert!(
        !topic_directory.exists(),
        "the topic directory was recreated"
    );
    assert_eq!(client.fetch_all("kept", 0, 0).len(), 10);
}

/// Where the batches of a segment log end: the position after its last batch (headers walked
/// from byte 0: `batch_length` at 16, zeros after the last batch).
fn end_of_batches(log: &[u8]) -> usize {
    let mut position = 0;
    while position + 64 <= log.len() && log[position..position + 64].iter().any(|byte| *byte != 0) {
        let length = u32::from_le_bytes(log[position + 16..position + 20].try_into().unwrap());
        position += length as usize;
    }
    position
}

#[test]
fn a_torn_tail_is_cut_with_a_warning_naming_its_offsets_and_bytes() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("torn", 1, &[]);
    produce_batches(&mut client, "torn", 0, 3, 10);
    drop(client);
    assert!(broker.terminate().success());

    // A fourth batch written but torn by a crash before its sync: a copy of the last batch,
    // stamped with the next offsets (30 to 39), of which the last 100 bytes never landed.
    let directory = partition_directory(&broker, "torn", 0);
    let active = segment_logs(&directory).pop().expect("an active segment");
    let mut bytes = std::fs::read(&active).expect("read the active segment");
    let end = end_of_batches(&bytes);
    let mut last_start = 0;
    while last_start + {
        u32::from_le_bytes(bytes[last_start + 16..last_start + 20].try_into().unwrap()) as usize
    } < end
    {
        last_start +=
            u32::from_le_bytes(bytes[last_start + 16..last_start + 20].try_into().unwrap())
                as usize;
    }
    let mut torn = bytes[last_start..end].to_vec();
    torn[0..8].copy_from_slice(&30u64.to_le_bytes());
    torn.truncate(torn.len() - 100);
    bytes.truncate(end);
    bytes.extend_from_slice(&torn);
    std::fs::write(&active, &bytes).expect("write the torn tail");

    broker.restart();
    let log = broker.drain_log().join("\n");
    let warning = log
        .lines()
        .find(|line| line.contains("truncating the torn tail"))
        .unwrap_or_else(|| panic!("no torn tail warning in:\n{log}"));
    assert!(
        warning.contains("offsets_removed=\"10 (offsets 30 to 39)\"")
            || warning.contains("offsets_removed=10 (offsets 30 to 39)"),
        "{warning}"
    );
    assert!(
        warning.contains(&format!("bytes_removed={}", torn.len())),
        "{warning}"
    );
    // Those offsets were never acknowledged: the next produce gets them.
    let mut client = TestClient::connect(broker.address());
    let batch = build_batch(&numbered_records(30, 10, 2_000)).freeze();
    assert_eq!(
        client.produce("torn", 0, Acks::All, vec![batch]),
        (ErrorCode::None, 30)
    );
}

#[test]
fn a_deleted_oldest_segment_is_reported_as_lost_and_trimming_the_checkpoint_accepts_it() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("oldest", 2, &[("segment.bytes", SEGMENT_BYTES)]);
    produce_batches(&mut client, "oldest", 0, 40, 200);
    produce_batches(&mut client, "oldest", 1, 1, 10);
    drop(client);
    assert!(broker.terminate().success());

    let directory = partition_directory(&broker, "oldest", 0);
    let logs = segment_logs(&directory);
    assert!(logs.len() >= 2, "expected closed segments, found {logs:?}");
    std::fs::remove_file(&logs[0]).expect("delete the oldest segment");
    let second_base: u64 = logs[1]
        .file_stem()
        .and_then(|stem| stem.to_str())
        .and_then(|stem| stem.parse().ok())
        .expect("a segment name");

    // Before: the log started at the second segment, and consumers at 0 got OffsetOutOfRange
    // with nothing logged.
    broker.restart();
    let log = broker.drain_log().join("\n");
    assert!(log.contains("partition offline"), "{log}");
    let mut client = TestClient::connect(broker.address());
    assert_offline_with(
        &mut client,
        "oldest",
        0,
        &[
            "data lost",
            "log-start-offset",
            "starts at offset 0",
            &format!("oldest segment starts at offset {second_base}"),
        ],
    );
    let batch = build_batch(&numbered_records(0, 1, 2_000)).freeze();
    assert_eq!(
        client
            .produce("oldest", 1, Acks::All, vec![batch.clone()])
            .0,
        ErrorCode::None
    );
    drop(client);

    // The operator accepts the loss as FORMAT.md says: remove the checkpoint and restart.
    assert!(broker.terminate().success());
    std::fs::remove_file(directory.join("log-start-offset")).expect("remove the checkpoint");
    broker.restart();
    let log = broker.drain_log().join("\n");
    assert!(
        log.contains("no log-start-offset checkpoint") && log.contains("WARN"),
        "{log}"
    );
    let mut client = TestClient::connect(broker.address());
    assert_eq!(client.offsets_of("oldest", 0), (second_base, 8_000));
    let (code, offset) = client.produce("oldest", 0, Acks::All, vec![batch]);
    assert_eq!((code, offset), (ErrorCode::None, 8_000));
}

/// Removes a directory tree the way an operator's `rm -rf` does, against a running broker: the
/// broker may create a file in the directory between the walk's removal of its entries and the
/// removal of the directory itself (its recovery-point timer writes a temporary file and renames
/// it), and then `remove_dir_all` fails with "Directory not empty". `rm -rf` run again finishes
/// the job, and so does this.
fn remove_tree_like_rm_rf(directory: &std::path::Path) {
    for _ in 0..100 {
        match std::fs::remove_dir_all(directory) {
            Ok(()) => return,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return,
            Err(error) if error.kind() == std::io::ErrorKind::DirectoryNotEmpty => continue,
            Err(error) => panic!("rm -rf {}: {error}", directory.display()),
        }
    }
    panic!(
        "rm -rf {}: a file kept appearing in it",
        directory.display()
    );
}
