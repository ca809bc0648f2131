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
