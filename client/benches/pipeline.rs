//! Client throughput against a running broker: how fast one producer accepts and delivers
//! small records (each with its own callback, or tagged and reported per batch to one delivery
//! handler), and how fast one consumer reads them back (check, iterate, touch every value).
//!
//! The broker is not started here (the client must not depend on it); point the bench at one:
//!
//! ```sh
//! spate-broker --data-dir /some/disk/dir --listen 127.0.0.1:9192 &
//! SPATE_BENCH_BROKER=127.0.0.1:9192 cargo bench -p spate-client --bench pipeline
//! ```
//!
//! Each run creates a fresh topic, so runs do not read each other's records.

use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spate_client::{Acks, Client, ClientConfig, ConsumerConfig, DeliveredBatch, NewTopic};
use spate_client::{ProducerConfig, ProducerRecord, StartAt};

/// Records per measured iteration.
const RECORDS: u64 = 100_000;
/// Bytes of each record's value: a short line, the CLI's typical input.
const VALUE_BYTES: usize = 16;
const PARTITIONS: u32 = 4;

fn client() -> Client {
    let address = std::env::var("SPATE_BENCH_BROKER")
        .expect("set SPATE_BENCH_BROKER to the address of a running broker (see the file doc)");
    Client::new(ClientConfig::new(address)).expect("client config")
}

fn fresh_topic(client: &Client, purpose: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos();
    let topic = format!("bench-{purpose}-{nanos}");
    client
        .admin()
        .create_topic(NewTopic::new(&topic, PARTITIONS))
        .wait()
        .expect("create the bench topic");
    topic
}

/// Sends `RECORDS` keyless records and waits until all are acknowledged.
fn produce(client: &Client, topic: &str, acks: Acks) {
    let producer = client
        .producer(ProducerConfig {
            acks,
            ..ProducerConfig::default()
        })
        .expect("producer config");
    let acknowledged = Arc::new(AtomicU64::new(0));
    let value = [b'x'; VALUE_BYTES];
    for _ in 0..RECORDS {
        let acknowledged = acknowledged.clone();
        producer
            .send_with_callback_blocking(ProducerRecord::new(topic, &value), move |result| {
                if result.is_ok() {
                    acknowledged.fetch_add(1, Ordering::Relaxed);
                }
            })
            .expect("send");
    }
    producer.close().wait().expect("close");
    assert_eq!(acknowledged.load(Ordering::Relaxed), RECORDS);
}

/// Like `produce`, but every record is tagged with its number and the producer's delivery
/// handler counts the acknowledged ones, once per batch.
fn produce_tagged(client: &Client, topic: &str, acks: Acks) {
    let acknowledged = Arc::new(AtomicU64::new(0));
    let counter = acknowledged.clone();
    let producer = client
        .producer_with_handler(
            ProducerConfig {
                acks,
                ..ProducerConfig::default()
            },
            move |batch: &DeliveredBatch<'_>| {
                if batch.result().is_ok() {
                    counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
                }
            },
        )
        .expect("producer config");
    let value = [b'x'; VALUE_BYTES];
    for number in 0..RECORDS {
        producer
            .send_tagged_blocking(ProducerRecord::new(topic, &value), number)
            .expect("send");
    }
    producer.close().wait().expect("close");
    assert_eq!(acknowledged.load(Ordering::Relaxed), RECORDS);
}

fn bench_produce(criterion: &mut Criterion) {
    let client = client();
    let mut group = criterion.benchmark_group("produce");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    for (acks, name) in [(Acks::Leader, "acks_leader"), (Acks::All, "acks_all")] {
        let topic = fresh_topic(&client, name);
        group.bench_function(format!("{name}_{VALUE_BYTES}_byte_values"), |bench| {
            bench.iter(|| produce(&client, &topic, acks));
        });
        group.bench_function(
            format!("{name}_{VALUE_BYTES}_byte_values_tagged"),
            |bench| {
                bench.iter(|| produce_tagged(&client, &topic, acks));
            },
        );
    }
    group.finish();
}

fn bench_consume(criterion: &mut Criterion) {
    let client = client();
    let topic = fresh_topic(&client, "consume");
    produce(&client, &topic, Acks::Leader);
    let mut group = criterion.benchmark_group("consume");
    group.sample_size(10);
    group.throughput(Throughput::Elements(RECORDS));
    group.bench_function(
        format!("poll_and_read_{VALUE_BYTES}_byte_values"),
        |bench| {
            bench.iter(|| {
                let mut consumer = client
                    .consumer(ConsumerConfig::default())
                    .expect("consumer config");
                consumer
                    .assign(&topic, None, StartAt::Earliest)
                    .wait()
                    .expect("assign");
                let mut records = 0u64;
                let mut value_bytes = 0usize;
                while records < RECORDS {
                    let polled = consumer.poll(Duration::from_secs(10)).expect("poll");
                    assert!(!polled.is_empty(), "records stopped arriving");
                    for record in &polled {
                        value_bytes += record.value().map_or(0, <[u8]>::len);
                        records += 1;
                    }
                }
                black_box(value_bytes)
            });
        },
    );
    group.finish();
}

criterion_group!(benches, bench_produce, bench_consume);
criterion_main!(benches);
