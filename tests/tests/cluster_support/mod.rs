//! What the cluster failure tests share: a producer that keeps sending numbered records to every
//! partition and remembers each acknowledgement (record number, offset, when it was sent and
//! when it was told), the checks of what a partition holds against what was acknowledged, each
//! replica's log read from its data directory, a seeded random source, and percentiles.
//!
//! A record's value is `<partition>:<number>:<padding>`, numbers counting up from 0 per
//! partition in send order, so a stored log shows loss, duplication and reordering by itself.

#![allow(dead_code)] // each test binary uses its own part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
use spate_protocol::api::Acks;
use spate_protocol::error::ErrorCode;
use spate_tests::client::records_of;
use spate_tests::cluster::{Cluster, FORMATION_TIMEOUT};
use spate_tests::TestClient;

/// One acknowledged record.
#[derive(Debug, Clone, Copy)]
pub struct Acknowledged {
    pub number: usize,
    pub offset: u64,
    /// When the record was handed to the producer.
    pub sent_at: Instant,
    /// When its acknowledgement was told.
    pub told_at: Instant,
}

/// A producer thread sending to every partition until stopped.
pub struct ProducerRun {
    pub acknowledged: Arc<Mutex<Vec<Vec<Acknowledged>>>>,
    pub failures: Arc<Mutex<Vec<String>>>,
    acknowledged_count: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
}

/// How a [`ProducerRun`] sends.
#[derive(Debug, Clone)]
pub struct ProducerOptions {
    pub acks: Acks,
    pub idempotence: bool,
    /// Pause after each round of one record per partition.
    pub pause: Duration,
    /// How long one record may take, retries included, before it fails.
    pub delivery_timeout: Duration,
    /// How long one produce request waits for the broker (acks=all: for the replicas).
    pub produce_timeout: Duration,
}

impl Default for ProducerOptions {
    fn default() -> Self {
        ProducerOptions {
            acks: Acks::All,
            idempotence: true,
            pause: Duration::from_millis(2),
            delivery_timeout: Duration::from_secs(120),
            produce_timeout: Duration::from_secs(30),
        }
    }
}

impl ProducerRun {
    pub fn start(
        bootstrap: Vec<String>,
        topic: &str,
        partitions: u32,
        options: ProducerOptions,
    ) -> ProducerRun {
        let client = Client::new(ClientConfig {
            bootstrap,
            retry_timeout: options.delivery_timeout,
            ..ClientConfig::new("unused:0")
        })
        .expect("client config is valid");
        let producer = client
            .producer(ProducerConfig {
                acks: options.acks,
                idempotence: options.idempotence,
                batch_bytes: 4 * 1024,
                linger: Duration::from_millis(1),
                delivery_timeout: options.delivery_timeout,
                produce_timeout: options.produce_timeout,
                ..ProducerConfig::default()
            })
            .expect("producer config is valid");
        let acknowledged: Arc<Mutex<Vec<Vec<Acknowledged>>>> =
            Arc::new(Mutex::new(vec![Vec::new(); partitions as usize]));
        let failures: Arc<Mutex<Vec<String>>> = Arc::default();
        let acknowledged_count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (acknowledged, failures, count, stop) = (
                acknowledged.clone(),
                failures.clone(),
                acknowledged_count.clone(),
                stop.clone(),
            );
            let topic = topic.to_string();
            std::thread::spawn(move || {
                let _client = client;
                let mut number = 0;
                while !stop.load(Ordering::SeqCst) {
                    for partition in 0..partitions {
                        let (acknowledged, failures, count) =
                            (acknowledged.clone(), failures.clone(), count.clone());
                        let sent_at = Instant::now();
                        producer
                            .send_with_callback_blocking(
                                ProducerRecord::new(&topic, &record_value(partition, number))
                                    .with_partition(partition),
                                move |result| match result {
                                    Ok(written) => {
                                        let Some(offset) = written.offset else {
                                            return;
                                        };
                                        acknowledged.lock().unwrap()[partition as usize].push(
                                            Acknowledged {
                                                number,
                                                offset,
                                                sent_at,
                                                told_at: Instant::now(),
                                            },
                                        );
                                        count.fetch_add(1, Ordering::SeqCst);
                                    }
                                    Err(error) => failures
                                        .lock()
                                        .unwrap()
                                        .push(format!("{partition}/{number}: {error}")),
                                },
                            )
                            .map_err(|error| format!("send refused: {error}"))?;
                    }
                    number += 1;
                    std::thread::sleep(options.pause);
                }
                producer
                    .close()
                    .wait()
                    .map_err(|error| format!("the producer did not close: {error}"))
            })
        };
        ProducerRun {
            acknowledged,
            failures,
            acknowledged_count,
            stop,
            thread: Some(thread),
        }
    }

    pub fn acknowledged_count(&self) -> usize {
        self.acknowledged_count.load(Ordering::SeqCst)
    }

    /// Waits until at least `count` records are acknowledged in all; panics after `timeout`
    /// with `what`.
    pub fn wait_for_acknowledged(&self, count: usize, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while self.acknowledged_count() < count {
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {count} records acknowledged after {timeout:?}; failures: {:?}",
                self.acknowledged_count(),
                self.failures_so_far(5)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn failures_so_far(&self, shown_max: usize) -> Vec<String> {
        let failures = self.failures.lock().unwrap();
        failures[..failures.len().min(shown_max)].to_vec()
    }

    /// Stops sending, waits for every record's outcome and returns the acknowledgements per
    /// partition and the failures.
    pub fn finish(mut self) -> (Vec<Vec<Acknowledged>>, Vec<String>) {
        self.stop.store(true, Ordering::SeqCst);
        let outcome = self.thread.take().unwrap().join().expect("producer thread");
        if let Err(error) = outcome {
            self.failures.lock().unwrap().push(error);
        }
        let acknowledged = std::mem::take(&mut *self.acknowledged.lock().unwrap());
        let failures = std::mem::take(&mut *self.failures.lock().unwrap());
        (acknowledged, failures)
    }
}

impl Drop for ProducerRun {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// A record value padded to 100 bytes.
pub fn record_value(partition: u32, number: usize) -> String {
    format!("{partition}:{number:>8}:{}", "x".repeat(88))
}

/// The (partition, number) a record value names.
pub fn parse_value(value: &[u8]) -> (u32, usize) {
    let text = std::str::from_utf8(value).expect("UTF-8 value");
    let mut fields = text.split(':');
    let parsed = (|| {
        let partition = fields.next()?.parse().ok()?;
        let number = fields.next()?.trim().parse().ok()?;
        Some((partition, number))
    })();
    parsed.unwrap_or_else(|| panic!("a record no producer of this test acknowledged: {text:?}"))
}

/// (offset, number) of every record `partition` of `topic` holds, read from its leader. A read
/// that a leadership change interrupts starts again at the new leader: once every broker is back,
/// the controller's leader balance moves leaders to their preferred replicas at any moment, also
/// while a test reads what is stored.
pub fn stored_numbers(cluster: &Cluster, topic: &str, partition: u32) -> Vec<(u64, usize)> {
    let deadline = Instant::now() + FORMATION_TIMEOUT;
    loop {
        let (leader, _) = cluster.wait_for_agreed_leader(topic, partition, FORMATION_TIMEOUT);
        match read_partition(cluster.address(leader), topic, partition) {
            Ok(records) => return records,
            Err(ErrorCode::NotLeaderOrFollower) if Instant::now() < deadline => {}
            Err(code) => panic!("fetch {topic}/{partition} from broker {leader}: {code:?}"),
        }
    }
}

/// Every record of the partition from `broker`, or the error a fetch got.
fn read_partition(
    broker: SocketAddr,
    topic: &str,
    partition: u32,
) -> Result<Vec<(u64, usize)>, ErrorCode> {
    let mut client = TestClient::connect(broker);
    let mut stored = Vec::new();
    let mut offset = 0;
    loop {
        let answer = client.fetch_once(topic, partition, offset, 1 << 20);
        if answer.error_code != ErrorCode::None {
            return Err(answer.error_code);
        }
        let fetched = records_of(&answer.records.to_bytes());
        let Some(&(last, _)) = fetched.last() else {
            return Ok(stored);
        };
        for (record_offset, record) in fetched {
            let (stored_partition, number) = parse_value(&record.value);
            assert_eq!(stored_partition, partition, "a record of another partition");
            stored.push((record_offset, number));
        }
        offset = last + 1;
        if offset >= answer.high_watermark {
            return Ok(stored);
        }
    }
}

/// Every acknowledged record is stored once at the offset its acknowledgement gave, the
/// partition holds no record twice and none out of send order, and the acknowledgements came in
/// send order.
pub fn assert_acknowledged_stored_once_in_order(
    partition: u32,
    stored: &[(u64, usize)],
    acknowledged: &[Acknowledged],
) {
    if let Some(pair) = stored.windows(2).find(|pair| pair[0].1 >= pair[1].1) {
        panic!("partition {partition} holds a record twice or out of send order: {pair:?}");
    }
    for record in acknowledged {
        let found = stored
            .binary_search_by_key(&record.offset, |(offset, _)| *offset)
            .ok()
            .map(|index| stored[index].1);
        assert_eq!(
            found,
            Some(record.number),
            "acknowledged record {partition}/{} is not at its offset {} (the partition holds \
             {} records, last {:?})",
            record.number,
            record.offset,
            stored.len(),
            stored.last()
        );
    }
    if let Some(pair) = acknowledged
        .windows(2)
        .find(|pair| pair[0].number >= pair[1].number)
    {
        panic!(
            "partition {partition}'s acknowledgements came out of send order: {} then {}",
            pair[0].number, pair[1].number
        );
    }
}

/// The batches of one replica of `topic`/`partition` as its `.log` files hold them, in offset
/// order: (base offset, the batch's bytes). Reads a running broker's files too (the last block
/// may be caught mid-write: a caller compares again until stable).
pub fn replica_batches(data_dir: &Path, topic: &str, partition: u32) -> Vec<(u64, Vec<u8>)> {
    let Some(directory) = partition_directory(data_dir, topic, partition) else {
        return Vec::new();
    };
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&directory)
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
                .collect()
        })
        .unwrap_or_default();
    segments.sort();
    let mut batches = Vec::new();
    for segment in segments {
        let Ok(bytes) = std::fs::read(&segment) else {
            continue;
        };
        let mut rest = &bytes[..];
        while rest.len() >= 64 && rest[..64].iter().any(|&byte| byte != 0) {
            let Some(length) = spate_protocol::batch::header::peek_batch_length(rest) else {
                break;
            };
            let length = length as usize;
            if length < 64 || length > rest.len() {
                break;
            }
            let base_offset = u64::from_le_bytes(rest[..8].try_into().unwrap());
            batches.push((base_offset, rest[..length].to_vec()));
            rest = &rest[length..];
        }
    }
    batches
}

/// `topics/<topic>.<id>/<partition>` under a broker's data directory.
pub fn partition_directory(data_dir: &Path, topic: &str, partition: u32) -> Option<PathBuf> {
    let prefix = format!("{topic}.");
    std::fs::read_dir(data_dir.join("topics"))
        .ok()?
        .flatten()
        .find(|entry| {
            entry
                .file_name()
                .to_str()
                .and_then(|name| name.strip_prefix(&prefix))
                .is_some_and(|id| id.chars().all(|c| c.is_ascii_digit()))
        })
        .map(|entry| entry.path().join(partition.to_string()))
}

/// Where two replicas' batch lists first differ, if they do.
pub fn first_difference(left: &[(u64, Vec<u8>)], right: &[(u64, Vec<u8>)]) -> Option<String> {
    if left == right {
        return None;
    }
    let index = left
        .iter()
        .zip(right)
        .position(|(a, b)| a != b)
        .unwrap_or(left.len().min(right.len()));
    Some(format!(
        "batch #{index}: {:?} vs {:?} ({} and {} batches)",
        left.get(index).map(|(offset, bytes)| (offset, bytes.len())),
        right
            .get(index)
            .map(|(offset, bytes)| (offset, bytes.len())),
        left.len(),
        right.len()
    ))
}

/// xorshift64*: a seeded source for the tests' choices. The seed comes from `variable` when
/// set, else from the clock, and is printed so that a failing run can be repeated.
pub struct Random(u64);

impl Random {
    pub fn from_env(variable: &str) -> Random {
        let seed = std::env::var(variable)
            .ok()
            .and_then(|text| text.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        eprintln!("seed: {variable}={seed}");
        Random(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `low..high`.
    pub fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low)
    }
}

/// The `percent` percentile of `values` (nearest rank); `None` when empty.
pub fn percentile(values: &[Duration], percent: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((percent / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.saturating_sub(1)).copied()
}

/// A count from the environment, or `default`.
pub fn env_count(variable: &str, default: usize) -> usize {
    std::env::var(variable)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// Every replica's log of every partition holds the same batches, byte for byte (read from the
/// data directories until they agree: a follower may still be fetching the last batch).
pub fn assert_replicas_identical(cluster: &Cluster, topic: &str, partitions: u32) {
    for partition in 0..partitions {
        let mut difference = None;
        let agreed = spate_tests::cluster::wait_for(Duration::from_secs(30), || {
            let logs: Vec<_> = cluster
                .ids()
                .into_iter()
                .map(|id| (id, replica_batches(cluster.data_dir(id), topic, partition)))
                .collect();
            difference = logs[1..].iter().find_map(|(id, log)| {
                first_difference(&logs[0].1, log)
                    .map(|text| format!("broker {} vs {id}: {text}", logs[0].0))
            });
            difference.is_none().then(|| logs[0].1.len())
        });
        let batches = agreed
            .unwrap_or_else(|| panic!("replicas of {topic}/{partition} differ: {difference:?}"));
        assert!(batches > 0, "{topic}/{partition} holds no batch at all");
    }
}
