//! The differential test of issue #19: the same word count and windowed count, written once with
//! Kafka Streams 4.1.1 (Java, `tests/compat/streams-differential/`, through the broker's Kafka
//! listener) and once with spate-streams (through the native listener), read one seeded input
//! topic on one broker and must leave the same final tables in their output topics, equal to a
//! plain model computed here. Both sides write keys and counts as UTF-8 text, so a table is
//! "last value per key" over the raw output records.
//!
//! Needs a JDK 17+, Maven and kafka-streams 4.1.1 in `~/.m2`
//! (`tests/compat/streams-differential/install.sh`); the test fails, never skips, without them.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spate_client::{Client, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig};
use spate_client::{ProducerRecord, StartAt};
use spate_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};
use spate_streams::{StreamsConfig, StreamsRuntime, Windowed};
use spate_tests::{java, Broker, BrokerOptions};

/// The input's size and shape: records, distinct keys, distinct words.
const INPUT_RECORDS: usize = 3_000;
const KEYS: u64 = 7;
const WORDS: u64 = 20;
/// Event time advances this much per record, and each record is moved back by up to
/// `DISORDER_MS`, less than the grace: no record is late, so the final windowed table does not
/// depend on how records interleave across partitions.
const STEP_MS: i64 = 100;
const DISORDER_MS: i64 = 5_000;
/// The windowed count's window and grace (`StreamsApp.WINDOW_SIZE` and `WINDOW_GRACE` in Java).
const WINDOW_SIZE_MS: i64 = 60_000;
const WINDOW_GRACE_MS: i64 = 10_000;
const _: () = assert!(DISORDER_MS < WINDOW_GRACE_MS);
const SEED: u64 = 0x5eed_0019;
/// How long both applications get to converge: a JVM start, a group join and a repartition
/// topic each, on a loaded two-core machine (about 12 s there when it passes).
const DEADLINE: Duration = Duration::from_secs(240);

const INPUT: &str = "differential-input";
const JAVA_WORDS: &str = "java-word-counts";
const JAVA_WINDOWS: &str = "java-window-counts";
const RUST_WORDS: &str = "rust-word-counts";
const RUST_WINDOWS: &str = "rust-window-counts";

/// An input record: key, value (space-separated words), timestamp.
type InputRecord = (String, String, i64);
/// An output topic read as a table: last value per key, both UTF-8.
type Table = BTreeMap<String, String>;

/// splitmix64: a seeded generator, so that a failing input can be made again from `SEED`.
struct Seeded(u64);

impl Seeded {
    fn next_below(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut mixed = self.0;
        mixed = (mixed ^ (mixed >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        mixed = (mixed ^ (mixed >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (mixed ^ (mixed >> 31)) % bound
    }
}

/// The seeded input. Timestamps start at `base_ms` (a minute boundary, so that window starts are
/// the same in every run relative to it) and go back by up to `DISORDER_MS` at random.
fn input(base_ms: i64) -> Vec<InputRecord> {
    let mut random = Seeded(SEED);
    (0..INPUT_RECORDS)
        .map(|index| {
            let key = format!("k{}", random.next_below(KEYS));
            let words = 1 + random.next_below(4);
            let value = (0..words)
                .map(|_| format!("w{}", random.next_below(WORDS)))
                .collect::<Vec<_>>()
                .join(" ");
            let disorder_ms = random.next_below(DISORDER_MS as u64) as i64;
            (key, value, base_ms + index as i64 * STEP_MS - disorder_ms)
        })
        .collect()
}

/// The word count's final table, by the plain definition.
fn model_word_counts(input: &[InputRecord]) -> Table {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (_, value, _) in input {
        for word in value.split(' ').filter(|word| !word.is_empty()) {
            *counts.entry(word.to_string()).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(word, count)| (word, count.to_string()))
        .collect()
}

/// The windowed count's final table: records per key and tumbling window, keyed
/// `<key>@<window start ms>`, as both applications write it.
fn model_window_counts(input: &[InputRecord]) -> Table {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for (key, _, timestamp_ms) in input {
        let start_ms = timestamp_ms - timestamp_ms.rem_euclid(WINDOW_SIZE_MS);
        *counts.entry(format!("{key}@{start_ms}")).or_default() += 1;
    }
    counts
        .into_iter()
        .map(|(window, count)| (window, count.to_string()))
        .collect()
}

/// What differs between two tables, one line per key (at most 10), empty when they are equal.
fn differences(left_name: &str, left: &Table, right_name: &str, right: &Table) -> Vec<String> {
    let mut keys: Vec<&String> = left.keys().chain(right.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|key| left.get(*key) != right.get(*key))
        .take(10)
        .map(|key| {
            format!(
                "{key}: {left_name} {:?}, {right_name} {:?}",
                left.get(key),
                right.get(key)
            )
        })
        .collect()
}

/// The spate-streams side: both topologies from one input stream, as `StreamsApp.java` does.
fn rust_topology() -> spate_streams::Topology {
    let builder = StreamsBuilder::new();
    let records = builder.stream::<String, String>(INPUT, Consumed::new());
    records
        .flat_map_values(|line: String| {
            line.split(' ')
                .filter(|word| !word.is_empty())
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word.clone(), Grouped::new())
        .count(Materialized::new())
        .to_stream()
        .flat_map(|word: String, count: Option<u64>| count.map(|count| (word, count.to_string())))
        .to(RUST_WORDS, Produced::new());
    records
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_and_grace(
            WINDOW_SIZE_MS,
            WINDOW_GRACE_MS,
        ))
        .count(Materialized::new())
        .to_stream()
        .flat_map(|window: Windowed<String>, count: Option<u64>| {
            count.map(|count| {
                (
                    format!("{}@{}", window.key, window.window.start_ms),
                    count.to_string(),
                )
            })
        })
        .to(RUST_WINDOWS, Produced::new());
    builder.build()
}

/// The Kafka Streams application's process: killed when dropped; its output goes to `log`.
struct JavaApplication {
    child: Child,
    log: PathBuf,
}

impl JavaApplication {
    fn start(kafka_address: &str, work: &std::path::Path) -> JavaApplication {
        let classpath = java::compile(&java::project("streams-differential"));
        let log = work.join("kafka-streams.log");
        let output = File::create(&log).expect("create the Java log");
        let child = Command::new("java")
            .args(["-Xmx384m", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
            .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
            .args(["-cp", &classpath, "spate.compat.streamsdiff.StreamsApp"])
            .args(["differential", kafka_address, "differential-java", INPUT])
            .arg(work.join("state"))
            .args([JAVA_WORDS, JAVA_WINDOWS])
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("clone the log file"))
            .stderr(output)
            .spawn()
            .expect("start java");
        JavaApplication { child, log }
    }

    /// The last lines of the application's log, for a failure message.
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}

impl Drop for JavaApplication {
    fn drop(&mut self) {
        let _already_gone = self.child.kill();
        let _status = self.child.wait();
    }
}

fn client(broker: &Broker) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(broker.address().to_string())
    };
    Client::new(config).expect("client config is valid")
}

fn produce(client: &Client, records: &[InputRecord]) {
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, value, timestamp_ms)| {
            let record = ProducerRecord::new(INPUT, value.as_bytes())
                .with_key(key.as_bytes())
                .with_timestamp(*timestamp_ms);
            producer.send_blocking(record).unwrap()
        })
        .collect();
    producer.flush().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }
}

/// The four output topics, each read as a table as records arrive.
struct Outputs {
    consumers: Vec<(String, spate_client::Consumer)>,
    tables: BTreeMap<String, Table>,
}

impl Outputs {
    fn new(client: &Client) -> Outputs {
        let consumers = [JAVA_WORDS, JAVA_WINDOWS, RUST_WORDS, RUST_WINDOWS]
            .into_iter()
            .map(|topic| {
                let consumer = client.consumer(ConsumerConfig::default()).unwrap();
                consumer
                    .assign(topic, None, StartAt::Earliest)
                    .wait()
                    .unwrap();
                (topic.to_string(), consumer)
            })
            .collect();
        Outputs {
            consumers,
            tables: BTreeMap::new(),
        }
    }

    /// Reads what arrived; each key's records are in one partition, in order, so the last one
    /// read is the key's latest value.
    fn poll(&mut self) {
        for (topic, consumer) in &mut self.consumers {
            let table = self.tables.entry(topic.clone()).or_default();
            for record in consumer.poll_owned(Duration::from_millis(50)).unwrap() {
                let key = String::from_utf8(record.key.expect("keyed output").to_vec()).unwrap();
                let value = String::from_utf8(record.value.expect("no tombstones").to_vec());
                table.insert(key, value.unwrap());
            }
        }
    }

    fn table(&self, topic: &str) -> Table {
        self.tables.get(topic).cloned().unwrap_or_default()
    }
}

#[test]
fn kafka_streams_and_spate_streams_leave_the_same_word_and_window_counts() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    let partitions = [(INPUT, 2), (JAVA_WORDS, 2), (JAVA_WINDOWS, 2)];
    for (topic, count) in partitions
        .into_iter()
        .chain([(RUST_WORDS, 2), (RUST_WINDOWS, 2)])
    {
        client
            .admin()
            .create_topic(NewTopic::new(topic, count))
            .wait()
            .unwrap();
    }
    // Half an hour ago, on a minute boundary: recent enough for any time-based retention.
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let base_ms = now_ms - 30 * 60_000 - now_ms.rem_euclid(60_000);
    let records = input(base_ms);
    let expected_words = model_word_counts(&records);
    let expected_windows = model_window_counts(&records);
    produce(&client, &records);

    let work =
        std::env::temp_dir().join(format!("spate-streams-differential-{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let java = JavaApplication::start(&broker.kafka_address().to_string(), &work);
    let stop = Arc::new(AtomicBool::new(false));
    let rust = {
        let client = client.clone();
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let config = StreamsConfig::new("differential-rust");
            let mut runtime = StreamsRuntime::start(&client, rust_topology(), config).unwrap();
            while !stop.load(Ordering::Relaxed) {
                runtime.poll_once().unwrap();
            }
            let metrics = runtime.metrics();
            runtime.close().unwrap();
            metrics
        })
    };

    let mut outputs = Outputs::new(&client);
    let started = Instant::now();
    let converged = |outputs: &Outputs| {
        outputs.table(JAVA_WORDS) == expected_words
            && outputs.table(RUST_WORDS) == expected_words
            && outputs.table(JAVA_WINDOWS) == expected_windows
            && outputs.table(RUST_WINDOWS) == expected_windows
    };
    while !converged(&outputs) && started.elapsed() < DEADLINE {
        assert!(!rust.is_finished(), "the spate-streams instance stopped");
        outputs.poll();
    }
    stop.store(true, Ordering::Relaxed);
    let metrics = rust.join().expect("the spate-streams instance panicked");
    let mut report = Vec::new();
    for (name, actual, expected) in [
        ("java words", JAVA_WORDS, &expected_words),
        ("rust words", RUST_WORDS, &expected_words),
        ("java windows", JAVA_WINDOWS, &expected_windows),
        ("rust windows", RUST_WINDOWS, &expected_windows),
    ] {
        report.extend(differences(name, &outputs.table(actual), "model", expected));
    }
    report.extend(differences(
        "java words",
        &outputs.table(JAVA_WORDS),
        "rust words",
        &outputs.table(RUST_WORDS),
    ));
    report.extend(differences(
        "java windows",
        &outputs.table(JAVA_WINDOWS),
        "rust windows",
        &outputs.table(RUST_WINDOWS),
    ));
    assert!(
        report.is_empty(),
        "after {:?}:\n{}\n--- Kafka Streams log:\n{}",
        started.elapsed(),
        report.join("\n"),
        java.log_tail()
    );
    // Nothing was late (the disorder is within the grace), on the spate-streams side too.
    let dropped: u64 = metrics.values().map(|task| task.late_records_dropped).sum();
    assert_eq!(dropped, 0, "{metrics:?}");
    drop(java);
    let _ = std::fs::remove_dir_all(&work);
}

#[test]
fn the_comparison_names_a_changed_count_and_a_missing_window() {
    let records = input(1_800_000);
    let model = model_window_counts(&records);
    assert!(differences("a", &model, "b", &model).is_empty());
    let mut changed = model.clone();
    let (first_key, first_count) = model.iter().next().unwrap();
    let bumped = first_count.parse::<u64>().unwrap() + 1;
    changed.insert(first_key.clone(), bumped.to_string());
    changed.remove(model.keys().last().unwrap());
    let found = differences("a", &model, "b", &changed);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found[0].starts_with(first_key.as_str()), "{found:?}");
    assert!(found[1].contains("b None"), "{found:?}");
}

#[test]
fn the_model_counts_every_word_and_every_record_once() {
    let records = input(1_800_000);
    let words: u64 = model_word_counts(&records)
        .values()
        .map(|count| count.parse::<u64>().unwrap())
        .sum();
    let occurrences: usize = records
        .iter()
        .map(|(_, value, _)| value.split(' ').count())
        .sum();
    assert_eq!(words, occurrences as u64);
    let windowed: u64 = model_window_counts(&records)
        .values()
        .map(|count| count.parse::<u64>().unwrap())
        .sum();
    assert_eq!(windowed, INPUT_RECORDS as u64);
    // Several windows per key, so that window boundaries matter.
    assert!(model_window_counts(&records).len() as u64 > KEYS * 3);
}
