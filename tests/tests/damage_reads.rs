//! End-to-end: reads from a partition whose files were damaged while the broker was stopped,
//! with the real broker, the `spate` tool and `spate-client`. A flipped byte in the middle of a
//! closed segment: the batches before it are served, the damaged batch is reported to the client
//! (typed error, CLI message, non-zero exit) and in the broker log (file, byte position, where
//! reading goes on), and deleting the records before that point makes the rest readable. Tampered,
//! stale, missing or truncated index files never change what a read or a time lookup returns.

mod cli_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ConsumerConfig, Error, OffsetReset, StartAt};
use spate_protocol::api::Acks;
use spate_protocol::ErrorCode;
use spate_tests::client::{build_batch, TestClient, TestRecord};
use spate_tests::{Broker, BrokerOptions};

use cli_support::{run, spate_binary, Run};

const TOPIC: &str = "T";
/// Records per produced batch, and batches: about 2.6 MB, so segment 0 (1 MiB) and 1 are closed.
const RECORDS_PER_BATCH: u64 = 200;
const BATCHES: u64 = 100;
const RECORDS: u64 = RECORDS_PER_BATCH * BATCHES;
/// Timestamp of record `n` is `FIRST_TIMESTAMP_MS + n`.
const FIRST_TIMESTAMP_MS: i64 = 1_600_000_000_000;
/// Where the reproduction flips a byte.
const DAMAGE_POSITION: usize = 500_000;
/// How long one `spate` run may take before the test calls it hung.
const RUN_TIMEOUT_S: u32 = 120;

fn record(number: u64) -> TestRecord {
    TestRecord::new(
        &format!("k{number}"),
        &format!("v{number}-{}", "x".repeat(100)),
        FIRST_TIMESTAMP_MS + number as i64,
    )
}

/// A stopped broker whose topic `T` (one partition, 1 MiB segments, no retention) holds [`RECORDS`] records
/// written with acks=all, and the partition's directory.
fn stopped_broker_with_records() -> (Broker, PathBuf) {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    // Retention off: the records' timestamps are years old, and a retention pass on a slow
    // machine would otherwise delete the segments under test.
    client.create_topic(
        TOPIC,
        1,
        &[("segment.bytes", "1048576"), ("retention.ms", "-1")],
    );
    for batch in 0..BATCHES {
        let first = batch * RECORDS_PER_BATCH;
        let records: Vec<TestRecord> = (first..first + RECORDS_PER_BATCH).map(record).collect();
        let (code, base_offset) =
            client.produce(TOPIC, 0, Acks::All, vec![build_batch(&records).freeze()]);
        assert_eq!((code, base_offset), (ErrorCode::None, first));
    }
    drop(client);
    assert!(broker.terminate().success());
    let topics = broker.data_dir().join("topics");
    let topic = std::fs::read_dir(&topics)
        .expect("topics directory")
        .map(|entry| entry.expect("entry").path())
        .find(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("T."))
        })
        .expect("topic directory");
    let partition = topic.join("0");
    assert!(
        segment(&partition, 1, "log").exists() || segment_count(&partition) >= 2,
        "segment 0 is closed"
    );
    (broker, partition)
}

fn segment(partition: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    partition.join(format!("{base_offset:020}.{suffix}"))
}

fn segment_count(partition: &Path) -> usize {
    std::fs::read_dir(partition)
        .expect("partition directory")
        .filter(|entry| {
            entry
                .as_ref()
                .expect("entry")
                .path()
                .extension()
                .is_some_and(|extension| extension == "log")
        })
        .count()
}

/// (position, base offset, next offset) of the batch of `log` that holds byte `position`.
fn batch_holding(log: &[u8], position: usize) -> (usize, u64, u64) {
    let mut start = 0;
    loop {
        let length = u32::from_le_bytes(log[start + 16..start + 20].try_into().unwrap()) as usize;
        let base_offset = u64::from_le_bytes(log[start..start + 8].try_into().unwrap());
        let offset_count = u32::from_le_bytes(log[start + 24..start + 28].try_into().unwrap());
        if position < start + length {
            return (start, base_offset, base_offset + u64::from(offset_count));
        }
        start += length;
    }
}

/// `spate ARGS...` with a deadline: a hang fails the test instead of stalling it.
fn spate_with_deadline(broker: &Broker, arguments: &[&str]) -> Run {
    let mut command = Command::new("timeout");
    command
        .arg(RUN_TIMEOUT_S.to_string())
        .arg(spate_binary())
        .arg("--broker")
        .arg(broker.address().to_string())
        .args(arguments);
    let finished = run(command, b"");
    assert_ne!(finished.code, 124, "spate hung: {}", finished.stderr);
    finished
}

fn client(broker: &Broker) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(broker.address().to_string()).with_client_id("damage-tests")
    };
    Client::new(config).expect("client config is valid")
}

/// The log lines of `broker` so far, waiting up to a minute for one that has every part.
fn log_line_with(broker: &mut Broker, parts: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    loop {
        seen.extend(broker.drain_log());
        if let Some(line) = seen
            .iter()
            .find(|line| parts.iter().all(|part| line.contains(part)))
        {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {parts:?} in:\n{}",
            seen.join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_flipped_byte_mid_closed_segment_is_reported_and_the_rest_is_served_and_skippable() {
    let (mut broker, partition) = stopped_broker_with_records();
    let log_path = segment(&partition, 0, "log");
    let mut log = std::fs::read(&log_path).expect("segment 0");
    let (position, first_damaged, readable_from) = batch_holding(&log, DAMAGE_POSITION);
    log[DAMAGE_POSITION] = !log[DAMAGE_POSITION];
    std::fs::write(&log_path, &log).expect("damage segment 0");
    broker.restart();

    // The records before the damaged batch are served.
    let two = spate_with_deadline(
        &broker,
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--offset",
            "0",
            "--count",
            "2",
            "--format",
            "%o %k\\n",
        ],
    )
    .ok();
    assert_eq!(two, "0 k0\n1 k1\n");

    // Reading on into the damage prints every record before it, then fails with a readable error.
    let everything = spate_with_deadline(
        &broker,
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--offset",
            "0",
            "--count",
            &RECORDS.to_string(),
            "--format",
            "%o\\n",
        ],
    );
    let printed: Vec<u64> = everything
        .stdout
        .lines()
        .map(|line| line.parse().expect("an offset"))
        .collect();
    assert_eq!(printed, (0..first_damaged).collect::<Vec<_>>());
    let error = everything.fails_with(1);
    assert!(error.contains("corrupt"), "{error}");
    assert!(
        error.contains(&format!("offset {first_damaged}")),
        "{error}"
    );

    // The broker log names the file, the position and where reading goes on.
    let line = log_line_with(
        &mut broker,
        &[
            "corrupt batch",
            "00000000000000000000.log",
            &format!("byte {position}"),
        ],
    );
    assert!(
        line.contains(&format!("reading goes on at offset {readable_from}")),
        "{line}"
    );
    // Consumers retry the damage: the log gets one line per interval (10 s) and partition, not
    // one per read. Five more reads within the interval add none (one if it just ended).
    for _ in 0..5 {
        let offset = first_damaged.to_string();
        spate_with_deadline(
            &broker,
            &[
                "consume",
                TOPIC,
                "--partition",
                "0",
                "--offset",
                &offset,
                "--count",
                "1",
            ],
        )
        .fails_with(1);
    }
    let repeated = broker
        .drain_log()
        .iter()
        .filter(|line| line.contains("corrupt batch"))
        .count();
    assert!(repeated <= 1, "{repeated} more lines for the same damage");

    // The client library reports it as a typed error.
    let client = client(&broker);
    let mut consumer = client
        .consumer(ConsumerConfig {
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        })
        .expect("consumer");
    consumer
        .assign(TOPIC, Some(&[0]), StartAt::Offset(first_damaged))
        .wait()
        .expect("assign");
    let deadline = Instant::now() + Duration::from_secs(60);
    let reported = loop {
        assert!(Instant::now() < deadline, "no error reported");
        match consumer.poll(Duration::from_millis(200)) {
            Ok(polled) => assert!(polled.is_empty(), "the damaged batch was served"),
            Err(error) => break error,
        }
    };
    match reported {
        Error::CorruptStoredData {
            ref topic,
            partition,
            offset,
        } => assert_eq!(
            (topic.as_str(), partition, offset),
            (TOPIC, 0, first_damaged)
        ),
        other => panic!("expected CorruptStoredData, got {other:?}"),
    }
    assert!(!reported.is_retriable());
    drop(consumer);

    // The recipe: delete the records before the offset the log names, then read on.
    let log_start = client
        .admin()
        .delete_records(TOPIC, 0, readable_from)
        .wait()
        .expect("delete records");
    assert_eq!(log_start, readable_from);
    let rest = spate_with_deadline(
        &broker,
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%o\\n",
        ],
    )
    .ok();
    let printed: Vec<u64> = rest
        .lines()
        .map(|line| line.parse().expect("an offset"))
        .collect();
    assert_eq!(printed, (readable_from..RECORDS).collect::<Vec<_>>());
}

#[test]
fn a_tampered_time_index_gives_the_right_offset_and_a_warning() {
    let (mut broker, partition) = stopped_broker_with_records();
    let path = segment(&partition, 0, "timeindex");
    let mut bytes = std::fs::read(&path).expect("time index");
    let mut entries = 0;
    for entry in bytes.chunks_exact_mut(12) {
        let timestamp = i64::from_le_bytes(entry[..8].try_into().unwrap());
        if timestamp == 0 {
            break;
        }
        // Plausible but wrong: still growing, 25 batches too early.
        let shifted = timestamp - 25 * RECORDS_PER_BATCH as i64;
        entry[..8].copy_from_slice(&shifted.to_le_bytes());
        entries += 1;
    }
    assert!(entries > 10, "segment 0 has time index entries");
    std::fs::write(&path, &bytes).expect("tamper with the time index");
    broker.restart();

    let target = 1_234;
    let found = spate_with_deadline(
        &broker,
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--from-timestamp",
            &(FIRST_TIMESTAMP_MS + target).to_string(),
            "--count",
            "1",
            "--format",
            "%o\\n",
        ],
    )
    .ok();
    assert_eq!(found, format!("{target}\n"));
    log_line_with(
        &mut broker,
        &["index entries disagree", "00000000000000000000.log"],
    );
}

#[test]
fn missing_truncated_and_stale_index_files_change_no_read() {
    let (mut broker, partition) = stopped_broker_with_records();
    let mut bases: Vec<u64> = std::fs::read_dir(&partition)
        .expect("partition directory")
        .map(|entry| entry.expect("entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .map(|path| path.file_stem().unwrap().to_str().unwrap().parse().unwrap())
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 3, "three segments: {bases:?}");
    std::fs::remove_file(segment(&partition, 0, "index")).expect("remove the offset index");
    let time_index = segment(&partition, 0, "timeindex");
    let length = std::fs::metadata(&time_index).expect("time index").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&time_index)
        .and_then(|file| file.set_len(length / 3))
        .expect("truncate the time index");
    // The second segment's offset index over the last one's: entries of another segment.
    let stale_offsets = std::fs::read(segment(&partition, bases[1], "index")).expect("index");
    std::fs::write(
        segment(&partition, bases[bases.len() - 1], "index"),
        &stale_offsets,
    )
    .expect("stale offset index");
    broker.restart();

    for offset in [0, 1_999, 5_000, RECORDS / 2, RECORDS - 1] {
        let read = spate_with_deadline(
            &broker,
            &[
                "consume",
                TOPIC,
                "--partition",
                "0",
                "--offset",
                &offset.to_string(),
                "--count",
                "1",
                "--format",
                "%o %k\\n",
            ],
        )
        .ok();
        assert_eq!(read, format!("{offset} k{offset}\n"));
    }
    let everything = spate_with_deadline(
        &broker,
        &[
            "consume",
            TOPIC,
            "--partition",
            "0",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%o\\n",
        ],
    )
    .ok();
    let printed: Vec<u64> = everything
        .lines()
        .map(|line| line.parse().expect("an offset"))
        .collect();
    assert_eq!(printed, (0..RECORDS).collect::<Vec<_>>());
}
