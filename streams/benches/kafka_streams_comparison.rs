//! The Rust half of `bench/scripts/streams-vs-kafka-streams.sh` (issue #19, "Performance"):
//! spate-streams against Kafka Streams 4.1.1 on one broker, a stateless map-filter and a
//! tumbling-window count, each processor pinned to one core by the script. Every step is an
//! ignored test, run one at a time by the script with `--ignored --exact NAME` and settings in
//! `BENCH_*` variables, so that this file needs no `harness = false` in the crate's manifest:
//!
//! - `preload`: makes the input topic (one partition: one task, one core) and the output topics,
//!   and writes `BENCH_RECORDS` records, event time 1 ms apart;
//! - `spate_streams_processor`: runs one spate-streams instance until killed (the Kafka Streams
//!   one is `tests/compat/streams-differential/`'s `StreamsApp`, started by the script);
//! - `measure_throughput`: watches the output's end offsets from the first output record to the
//!   last expected one, so neither side's start (a JVM's, a group join) is in the figure;
//! - `measure_latency`: writes records at `BENCH_RATE` per second (open loop: each record is timed
//!   from when it was due, not when it was sent) and times each from then until a consumer reads
//!   its output. The broker has no LogAppendTime, so the output's append time is bounded by the
//!   consumer's receipt; the figure includes one fetch.
//!
//! Topologies (the same in `StreamsApp.java`): `map-filter` drops values ending in "7" and
//! upper-cases the rest; `windowed-count` counts records per key in 1-minute tumbling windows
//! with 10 s grace. Both write every update (no record cache on either side).

use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ConsumerConfig, NewTopic, OffsetSpec, ProducerConfig};
use spate_client::{ProducerRecord, StartAt};
use spate_streams::{Consumed, Grouped, Materialized, Produced, StreamsBuilder, TimeWindows};
use spate_streams::{StreamsConfig, StreamsRuntime, Windowed};

/// Distinct keys of the input: the windowed count's store holds this many keys per window.
const KEYS: u64 = 100;
const WINDOW_SIZE_MS: i64 = 60_000;
const WINDOW_GRACE_MS: i64 = 10_000;
/// How often `measure_throughput` asks for end offsets.
const OFFSETS_POLL_INTERVAL: Duration = Duration::from_millis(5);

fn setting(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("set {name} (see streams-vs-kafka-streams.sh)"))
}

fn number(name: &str) -> u64 {
    setting(name)
        .parse()
        .unwrap_or_else(|_| panic!("{name} is a number"))
}

fn client() -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(setting("BENCH_BROKER"))
    };
    Client::new(config).expect("client config is valid")
}

/// The value of input record `sequence`: its number, so that a latency run can match an output
/// record to its input, and ten percent end in "7" for the filter.
fn value_of(sequence: u64) -> String {
    format!("{sequence:012}")
}

/// How many output records the topology writes for records `0..records` (every windowed update
/// is written; none is late, since event time only grows).
fn expected_outputs(topology: &str, records: u64) -> u64 {
    match topology {
        "map-filter" => (0..records)
            .filter(|sequence| !value_of(*sequence).ends_with('7'))
            .count() as u64,
        "windowed-count" => records,
        other => panic!("unknown topology {other}"),
    }
}

fn topology(name: &str, input: &str, output: &str) -> spate_streams::Topology {
    let builder = StreamsBuilder::new();
    let records = builder.stream::<String, String>(input, Consumed::new());
    match name {
        "map-filter" => records
            .filter(|_, value| !value.ends_with('7'))
            .map_values(|value: String| value.to_uppercase())
            .to(output, Produced::new()),
        "windowed-count" => records
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
            .to(output, Produced::new()),
        other => panic!("unknown topology {other}"),
    }
    builder.build()
}

fn end_offsets_sum(client: &Client, topic: &str) -> u64 {
    client
        .admin()
        .list_offsets(topic, None, OffsetSpec::Latest)
        .wait()
        .expect("list offsets")
        .iter()
        .map(|partition| partition.offset.expect("a latest offset"))
        .sum()
}

#[test]
#[ignore = "a step of bench/scripts/streams-vs-kafka-streams.sh"]
fn preload() {
    let client = client();
    let input = setting("BENCH_INPUT");
    let records = number("BENCH_RECORDS");
    client
        .admin()
        .create_topic(NewTopic::new(&input, 1))
        .wait()
        .expect("create the input topic");
    for output in setting("BENCH_OUTPUTS").split(',') {
        client
            .admin()
            .create_topic(NewTopic::new(output, 1))
            .wait()
            .expect("create an output topic");
    }
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let base_ms = 1_000 * 60 * 60 * 24 * 365 * 56;
    let mut last = None;
    for sequence in 0..records {
        let key = format!("k{}", sequence % KEYS);
        let value = value_of(sequence);
        let record = ProducerRecord::new(&input, value.as_bytes())
            .with_key(key.as_bytes())
            .with_timestamp(base_ms + sequence as i64);
        last = Some(producer.send_blocking(record).expect("send"));
    }
    producer.flush().wait().expect("flush");
    if let Some(delivery) = last {
        delivery.wait().expect("the last record is written");
    }
    assert_eq!(end_offsets_sum(&client, &input), records);
    println!("{{\"input\": \"{input}\", \"records\": {records}}}");
}

#[test]
#[ignore = "a step of bench/scripts/streams-vs-kafka-streams.sh"]
fn spate_streams_processor() {
    let client = client();
    let name = setting("BENCH_TOPOLOGY");
    let topology = topology(&name, &setting("BENCH_INPUT"), &setting("BENCH_OUTPUT"));
    let config = StreamsConfig::new(&setting("BENCH_APPLICATION"));
    let mut runtime = StreamsRuntime::start(&client, topology, config).expect("start");
    loop {
        runtime.poll_once().expect("process");
    }
}

#[test]
#[ignore = "a step of bench/scripts/streams-vs-kafka-streams.sh"]
fn measure_throughput() {
    let client = client();
    let output = setting("BENCH_OUTPUT");
    let expected = expected_outputs(&setting("BENCH_TOPOLOGY"), number("BENCH_RECORDS"));
    let timeout = Duration::from_secs(number("BENCH_TIMEOUT_S"));
    let started = Instant::now();
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let written = end_offsets_sum(&client, &output);
        let now = Instant::now();
        if written > 0 && first.is_none() {
            first = Some((now, written));
        }
        if written >= expected {
            let (first_seen, first_written) = first.expect("seen above");
            let seconds = now.duration_since(first_seen).as_secs_f64();
            let records = number("BENCH_RECORDS") as f64 * (expected - first_written) as f64
                / expected as f64;
            println!(
                "{{\"output_records\": {written}, \"input_records_timed\": {records:.0}, \
                 \"seconds\": {seconds:.3}, \"input_records_per_second\": {:.0}}}",
                records / seconds
            );
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "{output}: {written} of {expected} records after {timeout:?}"
        );
        std::thread::sleep(OFFSETS_POLL_INTERVAL);
    }
}

#[test]
#[ignore = "a step of bench/scripts/streams-vs-kafka-streams.sh"]
fn measure_latency() {
    let client = client();
    let input = setting("BENCH_INPUT");
    let output = setting("BENCH_OUTPUT");
    let rate_per_second = number("BENCH_RATE");
    let records = rate_per_second * number("BENCH_SECONDS");
    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign(&output, None, StartAt::Latest)
        .wait()
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let interval = Duration::from_secs_f64(1.0 / rate_per_second as f64);
    let start = Instant::now() + Duration::from_millis(100);
    // The consumer runs on its own thread; this one sends on schedule.
    let reader = std::thread::spawn(move || {
        let mut latencies_us = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(number("BENCH_SECONDS") + 30);
        let wanted = expected_outputs("map-filter", records);
        while (latencies_us.len() as u64) < wanted && Instant::now() < deadline {
            for record in consumer.poll_owned(Duration::from_millis(10)).unwrap() {
                let received = Instant::now();
                let value = record.value.expect("a value");
                let sequence: u64 = std::str::from_utf8(&value).unwrap().parse().unwrap();
                let due = start + interval * sequence as u32;
                latencies_us.push(received.duration_since(due).as_micros() as u64);
            }
        }
        latencies_us
    });
    // A lost record shows as a missing output record below; the last delivery is checked.
    let mut last = None;
    for sequence in 0..records {
        let due = start + interval * sequence as u32;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let value = value_of(sequence);
        let record = ProducerRecord::new(&input, value.as_bytes()).with_key(b"k");
        last = Some(producer.send_blocking(record).expect("send"));
    }
    producer.flush().wait().expect("flush");
    if let Some(delivery) = last {
        delivery.wait().expect("the last record is written");
    }
    let mut latencies_us = reader.join().expect("the reader");
    let wanted = expected_outputs("map-filter", records) as usize;
    assert_eq!(
        latencies_us.len(),
        wanted,
        "every output record read in time"
    );
    latencies_us.sort_unstable();
    let at = |quantile: f64| latencies_us[((wanted - 1) as f64 * quantile) as usize];
    println!(
        "{{\"rate_per_second\": {rate_per_second}, \"records\": {wanted}, \"p50_us\": {}, \
         \"p99_us\": {}, \"max_us\": {}}}",
        at(0.5),
        at(0.99),
        at(1.0)
    );
}
