//! The runtime against the real broker binary: a word count whose final counts are exact, and a
//! stateless topology run by two instances, one joining and the other leaving mid-run, where
//! every input record comes out at least once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ConsumerConfig, NewTopic, OwnedRecord, ProducerConfig};
use spate_client::{ProducerRecord, StartAt};
use spate_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use spate_streams::{StreamsConfig, StreamsRuntime};
use spate_tests::{Broker, BrokerOptions};

const DEADLINE: Duration = Duration::from_secs(90);

fn client(broker: &Broker) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(broker.address().to_string())
    };
    Client::new(config).expect("client config is valid")
}

fn produce(client: &Client, topic: &str, records: &[(String, String)]) {
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = records
        .iter()
        .map(|(key, value)| {
            producer
                .send_blocking(
                    ProducerRecord::new(topic, value.as_bytes()).with_key(key.as_bytes()),
                )
                .unwrap()
        })
        .collect();
    producer.flush().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }
}

/// Reads `topic` from the start until `done` says what was read is enough.
fn read_until(
    client: &Client,
    topic: &str,
    done: impl Fn(&[OwnedRecord]) -> bool,
) -> Vec<OwnedRecord> {
    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign(topic, None, StartAt::Earliest)
        .wait()
        .unwrap();
    let started = Instant::now();
    let mut records = Vec::new();
    while !done(&records) {
        assert!(
            started.elapsed() < DEADLINE,
            "{topic}: only {} records",
            records.len()
        );
        records.extend(consumer.poll_owned(Duration::from_millis(200)).unwrap());
    }
    records
}

/// What an instance processed, and its lag per input partition when it stopped.
type InstanceResult = (u64, BTreeMap<(String, u32), u64>);

/// Runs a runtime on its own thread until `stop` is set, then closes it.
fn run_instance(
    client: Client,
    topology: impl FnOnce() -> spate_streams::Topology + Send + 'static,
    stop: Arc<AtomicBool>,
) -> thread::JoinHandle<InstanceResult> {
    thread::spawn(move || {
        let mut runtime =
            StreamsRuntime::start(&client, topology(), StreamsConfig::new("streams-test")).unwrap();
        let mut processed = 0;
        while !stop.load(Ordering::Relaxed) {
            processed += runtime.poll_once().unwrap() as u64;
        }
        let lag = runtime.lag();
        runtime.close().unwrap();
        (processed, lag)
    })
}

#[test]
fn word_count_against_a_broker_gives_exact_final_counts() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    for topic in ["lines", "counts"] {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 2))
            .wait()
            .unwrap();
    }
    let lines: Vec<(String, String)> = (0..60)
        .map(|line| {
            (
                format!("l{line}"),
                format!("w{} w{} shared", line % 7, line % 3),
            )
        })
        .collect();
    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for (_, line) in &lines {
        for word in line.split_whitespace() {
            *expected.entry(word.to_string()).or_default() += 1;
        }
    }
    produce(&client, "lines", &lines);
    let stop = Arc::new(AtomicBool::new(false));
    let instance = run_instance(
        client.clone(),
        || {
            let builder = StreamsBuilder::new();
            builder
                .stream::<String, String>("lines", Consumed::new())
                .flat_map_values(|line: String| {
                    line.split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .group_by(|_, word| word.clone(), Grouped::new())
                .count(Materialized::new())
                .to_stream()
                .to("counts", Produced::new());
            builder.build()
        },
        Arc::clone(&stop),
    );
    let words: u64 = expected.values().sum();
    let output = read_until(&client, "counts", |records| records.len() as u64 >= words);
    stop.store(true, Ordering::Relaxed);
    let (processed, lag) = instance.join().unwrap();
    assert_eq!(processed, lines.len() as u64 + words);
    // Both partitions of the input and of the repartition topic, all caught up.
    assert_eq!(lag.len(), 4, "{lag:?}");
    assert!(lag.values().all(|records| *records == 0), "{lag:?}");
    // The last count of each word, in partition order (a word's updates are in one partition).
    let mut last: BTreeMap<String, u64> = BTreeMap::new();
    for record in &output {
        let key = String::from_utf8(record.key.clone().unwrap().to_vec()).unwrap();
        let count = u64::from_le_bytes(record.value.as_ref().unwrap()[..].try_into().unwrap());
        last.insert(key, count);
    }
    assert_eq!(last, expected);
    assert_eq!(
        output.len() as u64,
        words,
        "each word occurrence is one update, none repeated"
    );
}

#[test]
fn two_instances_with_one_leaving_mid_run_process_every_record_at_least_once() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    for topic in ["in", "out"] {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 4))
            .wait()
            .unwrap();
    }
    let topology = || {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, String>("in", Consumed::new())
            .filter(|_, value| !value.starts_with("skip"))
            .map_values(|value: String| value.to_uppercase())
            .to("out", Produced::new());
        builder.build()
    };
    let batch = |from: usize, to: usize| -> Vec<(String, String)> {
        (from..to)
            .map(|index| {
                let value = if index % 10 == 0 {
                    format!("skip{index}")
                } else {
                    format!("v{index}")
                };
                (format!("k{}", index % 13), value)
            })
            .collect()
    };
    let stop_first = Arc::new(AtomicBool::new(false));
    let stop_second = Arc::new(AtomicBool::new(false));
    let first = run_instance(client.clone(), topology, Arc::clone(&stop_first));
    produce(&client, "in", &batch(0, 100));
    read_until(&client, "out", |records| records.len() >= 90);
    let second = run_instance(client.clone(), topology, Arc::clone(&stop_second));
    produce(&client, "in", &batch(100, 200));
    read_until(&client, "out", |records| records.len() >= 180);
    // The first instance leaves; the second takes over its partitions from their commits.
    stop_first.store(true, Ordering::Relaxed);
    let (first_processed, _) = first.join().unwrap();
    produce(&client, "in", &batch(200, 300));
    let expected: BTreeSet<String> = batch(0, 300)
        .into_iter()
        .filter(|(_, value)| !value.starts_with("skip"))
        .map(|(_, value)| value.to_uppercase())
        .collect();
    let output = read_until(&client, "out", |records| {
        let seen: BTreeSet<String> = records
            .iter()
            .map(|record| String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())
            .collect();
        seen == expected
    });
    stop_second.store(true, Ordering::Relaxed);
    let (second_processed, _) = second.join().unwrap();
    assert!(
        first_processed > 0 && second_processed > 0,
        "{first_processed} {second_processed}"
    );
    assert!(output.len() >= expected.len());
    // Keys keep their partition through the topology: the sink hashes the same key the same way.
    for record in &output {
        let key = record.key.as_ref().unwrap();
        assert_eq!(record.partition, spate_client::partition_for_key(key, 4));
    }
}

#[test]
fn a_pattern_source_subscribes_to_the_topics_that_match_at_start() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    for topic in ["metrics-cpu", "metrics-disk", "metrics-out", "other"] {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 2))
            .wait()
            .unwrap();
    }
    produce(&client, "metrics-cpu", &[("h1".into(), "cpu 3".into())]);
    produce(&client, "metrics-disk", &[("h2".into(), "disk 9".into())]);
    produce(&client, "other", &[("h3".into(), "other 1".into())]);
    let stop = Arc::new(AtomicBool::new(false));
    let instance = run_instance(
        client.clone(),
        || {
            let builder = StreamsBuilder::new();
            builder
                .stream_matching::<String, String>("metrics-(cpu|disk)", Consumed::new())
                .to("metrics-out", Produced::new());
            builder.build()
        },
        Arc::clone(&stop),
    );
    let output = read_until(&client, "metrics-out", |records| records.len() >= 2);
    stop.store(true, Ordering::Relaxed);
    let (processed, lag) = instance.join().unwrap();
    assert_eq!(processed, 2);
    let topics: BTreeSet<&str> = lag.keys().map(|(topic, _)| topic.as_str()).collect();
    assert_eq!(topics, BTreeSet::from(["metrics-cpu", "metrics-disk"]));
    let mut values: Vec<String> = output
        .iter()
        .map(|record| String::from_utf8(record.value.clone().unwrap().to_vec()).unwrap())
        .collect();
    values.sort();
    assert_eq!(values, ["cpu 3", "disk 9"]);
}

#[test]
fn a_windowed_count_over_a_broker_emits_each_final_result_once_in_event_time() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    for topic in ["clicks", "clicks-per-second"] {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 1))
            .wait()
            .unwrap();
    }
    // Event times from the records' own timestamps, out of order within the grace period; the
    // last record only moves stream time past every window.
    let clicks: [(&str, i64); 7] = [
        ("a", 1_000),
        ("b", 1_500),
        ("a", 2_100),
        ("a", 1_900),
        ("b", 2_999),
        ("a", 3_400),
        ("z", 10_000),
    ];
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = clicks
        .iter()
        .map(|(user, timestamp_ms)| {
            let record = ProducerRecord::new("clicks", "click")
                .with_key(*user)
                .with_timestamp(*timestamp_ms);
            producer.send_blocking(record).unwrap()
        })
        .collect();
    producer.flush().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let instance = run_instance(
        client.clone(),
        || {
            let builder = StreamsBuilder::new();
            let windowed =
                spate_streams::serdes::WindowedSerde(Arc::new(spate_streams::serdes::Utf8Serde)
                    as spate_streams::SharedSerde<String>);
            builder
                .stream::<String, String>("clicks", Consumed::new())
                .group_by_key(Grouped::new())
                .windowed_by(spate_streams::TimeWindows::of_size_and_grace(1_000, 500))
                .count(Materialized::new())
                .suppress_until_window_closes()
                .to(
                    "clicks-per-second",
                    Produced::with(
                        Arc::new(windowed),
                        Arc::new(spate_streams::serdes::FixedWidthSerde),
                    ),
                );
            builder.build()
        },
        Arc::clone(&stop),
    );
    let output = read_until(&client, "clicks-per-second", |records| records.len() >= 5);
    stop.store(true, Ordering::Relaxed);
    instance.join().unwrap();
    let finals: Vec<(String, i64, u64, i64)> = output
        .iter()
        .map(|record| {
            let key = record.key.as_ref().unwrap();
            let (user, window) = key.split_at(key.len() - 16);
            let start_ms = i64::from_be_bytes(window[..8].try_into().unwrap());
            let count = u64::from_le_bytes(record.value.as_ref().unwrap()[..].try_into().unwrap());
            (
                String::from_utf8(user.to_vec()).unwrap(),
                start_ms,
                count,
                record.timestamp,
            )
        })
        .collect();
    // In order of window end, then key; each with the timestamp of its last update.
    assert_eq!(
        finals,
        vec![
            ("a".to_string(), 1_000, 2, 1_900),
            ("b".to_string(), 1_000, 1, 1_500),
            ("a".to_string(), 2_000, 1, 2_100),
            ("b".to_string(), 2_000, 1, 2_999),
            ("a".to_string(), 3_000, 1, 3_400),
        ]
    );
}
