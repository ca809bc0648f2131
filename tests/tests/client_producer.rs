//! End-to-end: the `spate-client` producer against the real broker. Batching and order per
//! partition, key partitioning, acks, backpressure, flush and close, a broker restart in the
//! middle of a stream, use from tokio and from plain threads, and how the idempotent producer's
//! sequence errors reach the application (a broker that lost records, a duplicate it no longer
//! remembers, a newer epoch of the producer's id).

mod client_support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use spate_client::{
    partition_for_key, Acks, BufferFullPolicy, ConsumerConfig, Error, NewTopic, OffsetSpec,
    ProducerConfig, ProducerRecord, StartAt,
};
use spate_protocol::api::{Acks as WireAcks, InitProducerIdRequest};
use spate_protocol::batch::header::{peek_batch_length, stamp_producer};
use spate_protocol::batch::BatchView;
use spate_protocol::error::ErrorCode;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, TestClient};

use client_support::{broker, client, read_records, text};

#[test]
fn producer_batches_records_and_keeps_their_order_per_partition() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("ordered", 4))
        .wait()
        .unwrap();
    let batch_bytes = 4096;
    let producer = client
        .producer(ProducerConfig {
            batch_bytes,
            linger: Duration::from_millis(20),
            ..ProducerConfig::default()
        })
        .unwrap();
    let count = 4000;
    let mut sent = Vec::new();
    for number in 0..count {
        let key = format!("key-{}", number % 50);
        let value = format!("value-{number:05}");
        let delivery = producer
            .send_blocking(ProducerRecord::new("ordered", &value).with_key(&key))
            .unwrap();
        sent.push((key, value, delivery));
    }
    producer.flush().wait().unwrap();

    // Each partition's offsets follow the order of `send`, without gaps.
    let mut next_offset: HashMap<u32, u64> = HashMap::new();
    let mut expected: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (key, value, delivery) in sent {
        let written = delivery.wait().unwrap();
        assert_eq!(written.partition, partition_for_key(key.as_bytes(), 4));
        let next = next_offset.entry(written.partition).or_default();
        assert_eq!(written.offset, Some(*next), "{value}");
        *next += 1;
        expected.entry(written.partition).or_default().push(value);
    }

    let records = read_records(&client, "ordered", None, count);
    assert_eq!(records.len(), count);
    let mut read: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for record in &records {
        let values = read.entry(record.partition).or_default();
        assert_eq!(record.offset, values.len() as u64);
        values.push(text(&record.value));
    }
    assert_eq!(read, expected);

    // Records travelled in batches no larger than batch_bytes, many records per batch.
    let mut raw = TestClient::connect(broker.address());
    for partition in 0..4 {
        let answer = raw.fetch_once("ordered", partition, 0, 16 * 1024 * 1024);
        let bytes = answer.records.to_bytes();
        let mut rest = &bytes[..];
        let mut batches = 0;
        while !rest.is_empty() {
            let length = peek_batch_length(rest).unwrap() as usize;
            assert!(length <= batch_bytes, "a batch of {length} bytes");
            rest = &rest[length..];
            batches += 1;
        }
        let records = expected[&partition].len();
        assert!(
            batches >= 2 && batches * 20 <= records,
            "partition {partition}: {records} records in {batches} batches"
        );
    }
}

#[test]
fn keyed_records_land_on_the_partition_their_key_hashes_to() {
    let broker = broker();
    client(broker.address())
        .admin()
        .create_topic(NewTopic::new("keyed", 6))
        .wait()
        .unwrap();
    // Two independent clients agree, and agree with the documented hash.
    for _ in 0..2 {
        let client = client(broker.address());
        let producer = client.producer(ProducerConfig::default()).unwrap();
        for number in 0..60 {
            let key = format!("customer-{number}");
            let written = producer
                .send_blocking(ProducerRecord::new("keyed", "x").with_key(&key))
                .unwrap()
                .wait()
                .unwrap();
            assert_eq!(written.partition, partition_for_key(key.as_bytes(), 6));
        }
        let explicit = producer
            .send_blocking(
                ProducerRecord::new("keyed", "x")
                    .with_key("customer-0")
                    .with_partition(5),
            )
            .unwrap()
            .wait()
            .unwrap();
        assert_eq!(
            explicit.partition, 5,
            "an explicit partition wins over the key"
        );
    }
    let used: std::collections::BTreeSet<u32> = (0..60)
        .map(|number| partition_for_key(format!("customer-{number}").as_bytes(), 6))
        .collect();
    assert_eq!(used.len(), 6, "sixty keys spread over all six partitions");
}

#[test]
fn every_acks_level_delivers_and_only_acknowledged_sends_report_offsets() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("acks", 2))
        .wait()
        .unwrap();
    let mut reported = Vec::new();
    for (acks, name) in [
        (Acks::None, "none"),
        (Acks::Leader, "leader"),
        (Acks::All, "all"),
    ] {
        let producer = client
            .producer(ProducerConfig {
                acks,
                ..ProducerConfig::default()
            })
            .unwrap();
        let deliveries: Vec<_> = (0..200)
            .map(|number| {
                let value = format!("{name}-{number}");
                let delivery = producer
                    .send_blocking(ProducerRecord::new("acks", &value))
                    .unwrap();
                (value, delivery)
            })
            .collect();
        producer.close().wait().unwrap();
        for (value, delivery) in deliveries {
            let written = delivery.wait().unwrap();
            match acks {
                Acks::None => assert_eq!(written.offset, None),
                _ => reported.push((written.partition, written.offset.unwrap(), value)),
            }
        }
    }
    let records = read_records(&client, "acks", None, 600);
    let stored: HashMap<(u32, u64), String> = records
        .iter()
        .map(|record| ((record.partition, record.offset), text(&record.value)))
        .collect();
    assert_eq!(stored.len(), 600, "every record stored once");
    for name in ["none", "leader", "all"] {
        let found = stored
            .values()
            .filter(|value| value.starts_with(name))
            .count();
        assert_eq!(found, 200, "records sent with acks={name}");
    }
    for (partition, offset, value) in reported {
        assert_eq!(stored[&(partition, offset)], value);
    }
}

#[test]
fn a_broker_restart_mid_stream_loses_no_acknowledged_record_and_the_consumer_carries_on() {
    let mut broker = broker();
    // A restarted broker listens on the same address again.
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("restart", 2))
        .wait()
        .unwrap();
    let producer = client
        .producer(ProducerConfig {
            linger: Duration::from_millis(2),
            batch_bytes: 16 * 1024,
            ..ProducerConfig::default()
        })
        .unwrap();
    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign("restart", None, StartAt::Earliest)
        .wait()
        .unwrap();

    let count = 6000;
    let sent = Arc::new(AtomicUsize::new(0));
    let sender = {
        let producer = producer.clone();
        let sent = sent.clone();
        std::thread::spawn(move || {
            let mut deliveries = Vec::new();
            for number in 0..count {
                let key = format!("key-{}", number % 7);
                let value = format!("event-{number}");
                let delivery = producer
                    .send_blocking(ProducerRecord::new("restart", &value).with_key(&key))
                    .unwrap();
                deliveries.push((value, delivery));
                sent.fetch_add(1, Ordering::Relaxed);
                if number % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            deliveries
        })
    };
    let mut consumed: HashMap<(u32, u64), String> = HashMap::new();
    let mut poll_into = |consumed: &mut HashMap<(u32, u64), String>| {
        for record in consumer.poll_owned(Duration::from_millis(50)).unwrap() {
            consumed.insert((record.partition, record.offset), text(&record.value));
        }
    };
    while sent.load(Ordering::Relaxed) < count / 3 {
        poll_into(&mut consumed);
    }
    broker.kill();
    let killed_at = sent.load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    broker.restart();

    let deliveries = sender.join().unwrap();
    assert!(
        killed_at < count,
        "the broker died while records were still being sent"
    );
    let mut acknowledged = HashMap::new();
    for (value, delivery) in deliveries {
        let written = delivery
            .wait()
            .unwrap_or_else(|error| panic!("{value} was not delivered: {error}"));
        acknowledged.insert((written.partition, written.offset.unwrap()), value);
    }
    // None may be missing, and the idempotent producer (the default) stores none twice.
    let deadline = Instant::now() + client_support::READ_TIMEOUT;
    while !acknowledged.keys().all(|key| consumed.contains_key(key)) {
        assert!(
            Instant::now() < deadline,
            "the consumer stalled after the restart"
        );
        poll_into(&mut consumed);
    }
    for (key, value) in &acknowledged {
        assert_eq!(&consumed[key], value, "record at {key:?}");
    }
    let distinct: std::collections::HashSet<&String> = consumed.values().collect();
    assert_eq!(distinct.len(), count);
    let stored: u64 = client
        .admin()
        .list_offsets("restart", None, OffsetSpec::Latest)
        .wait()
        .unwrap()
        .iter()
        .map(|answer| answer.offset.unwrap())
        .sum();
    assert_eq!(
        stored, count as u64,
        "records stored twice across the restart"
    );
}

#[test]
fn a_full_buffer_fails_or_waits_as_configured_and_drains_after_the_broker_returns() {
    let mut broker = broker();
    // A restarted broker listens on the same address again.
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("pressure", 1))
        .wait()
        .unwrap();
    let config = ProducerConfig {
        buffer_bytes_max: 64 * 1024,
        batch_bytes: 16 * 1024,
        buffer_full: BufferFullPolicy::Error,
        ..ProducerConfig::default()
    };
    let failing = client.producer(config.clone()).unwrap();
    let waiting = client
        .producer(ProducerConfig {
            buffer_full: BufferFullPolicy::Wait,
            buffer_wait_timeout: Duration::from_millis(300),
            ..config
        })
        .unwrap();
    let value = vec![b'v'; 1000];
    // Both learn the topic's metadata while the broker is up.
    for producer in [&failing, &waiting] {
        producer
            .send_blocking(ProducerRecord::new("pressure", &value))
            .unwrap()
            .wait()
            .unwrap();
    }
    broker.kill();

    let mut accepted = Vec::new();
    let refusal = loop {
        match failing.send_blocking(ProducerRecord::new("pressure", &value)) {
            Ok(delivery) => accepted.push(delivery),
            Err(error) => break error,
        }
        assert!(
            accepted.len() <= 64,
            "the buffer holds about 64 records of 1 KiB"
        );
    };
    assert!(matches!(refusal, Error::BufferFull { .. }), "{refusal}");
    assert!(refusal.is_retriable());
    assert!(accepted.len() >= 32, "only {} records fit", accepted.len());

    while waiting
        .send_blocking(ProducerRecord::new("pressure", &value))
        .map(|delivery| accepted.push(delivery))
        .is_ok()
    {
        assert!(accepted.len() <= 2 * 64);
    }
    let started = Instant::now();
    let waited = waiting.send_blocking(ProducerRecord::new("pressure", &value));
    assert!(matches!(waited, Err(Error::BufferFull { .. })));
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "a full buffer under the Wait policy waits for its timeout first"
    );

    broker.restart();
    failing.flush().wait().unwrap();
    waiting.flush().wait().unwrap();
    for delivery in accepted {
        delivery.wait().unwrap();
    }
    assert_eq!(failing.buffered_bytes(), 0);
    // Memory is free again: sending works at once.
    failing
        .send_blocking(ProducerRecord::new("pressure", &value))
        .unwrap()
        .wait()
        .unwrap();
}

#[test]
fn flush_sends_lingering_records_and_close_refuses_new_ones() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("linger", 1))
        .wait()
        .unwrap();
    let producer = client
        .producer(ProducerConfig {
            linger: Duration::from_secs(3600),
            ..ProducerConfig::default()
        })
        .unwrap();
    let mut delivery = producer
        .send_blocking(ProducerRecord::new("linger", "waiting"))
        .unwrap();
    assert!(
        delivery.wait_timeout(Duration::from_millis(300)).is_none(),
        "nothing is sent before the linger ends or a flush"
    );
    producer.flush().wait().unwrap();
    assert_eq!(delivery.try_take().unwrap().unwrap().offset, Some(0));

    let last = producer
        .send_blocking(ProducerRecord::new("linger", "last"))
        .unwrap();
    producer.close().wait().unwrap();
    assert_eq!(
        last.wait().unwrap().offset,
        Some(1),
        "close delivers what it accepted"
    );
    assert!(matches!(
        producer.send_blocking(ProducerRecord::new("linger", "late")),
        Err(Error::Closed { .. })
    ));
}

#[test]
fn unknown_topics_partitions_and_oversized_records_are_refused_at_send() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("small", 2))
        .wait()
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let unknown = producer
        .send_blocking(ProducerRecord::new("missing", "x"))
        .unwrap_err();
    assert!(matches!(unknown, Error::UnknownTopic { .. }), "{unknown}");
    let partition = producer
        .send_blocking(ProducerRecord::new("small", "x").with_partition(2))
        .unwrap_err();
    assert!(
        matches!(
            partition,
            Error::UnknownPartition {
                partition: 2,
                partition_count: 2,
                ..
            }
        ),
        "{partition}"
    );
    let huge = vec![0u8; spate_protocol::constants::BATCH_BYTES_MAX];
    let too_large = producer
        .send_blocking(ProducerRecord::new("small", &huge))
        .unwrap_err();
    assert!(
        matches!(too_large, Error::RecordTooLarge { .. }),
        "{too_large}"
    );
    assert!(!too_large.is_retriable());
}

#[test]
fn the_client_serves_a_tokio_program_and_many_plain_threads_at_once() {
    let broker = broker();
    let client = client(broker.address());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    runtime.block_on(async {
        client
            .admin()
            .create_topic(NewTopic::new("mixed", 5))
            .await
            .unwrap();
    });

    // Plain threads send while a tokio task does; each one's records keep their order.
    let threads: Vec<_> = (0..4)
        .map(|thread| {
            let producer = producer.clone();
            std::thread::spawn(move || {
                (0..250)
                    .map(|number| {
                        let value = format!("thread-{thread}-{number:03}");
                        // Each thread writes its own partition.
                        producer
                            .send_blocking(
                                ProducerRecord::new("mixed", &value).with_partition(thread),
                            )
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();

    let async_offsets = runtime.block_on(async {
        let mut offsets = Vec::new();
        for number in 0..100 {
            let value = format!("async-{number:03}");
            let delivery = producer
                .send(ProducerRecord::new("mixed", &value).with_partition(4))
                .await
                .unwrap();
            offsets.push(delivery.await.unwrap().offset.unwrap());
        }
        offsets
    });
    assert_eq!(async_offsets, (0..100).collect::<Vec<u64>>());
    for (thread, handle) in threads.into_iter().enumerate() {
        let offsets: Vec<u64> = handle
            .join()
            .unwrap()
            .into_iter()
            .map(|delivery| delivery.wait().unwrap().offset.unwrap())
            .collect();
        assert_eq!(offsets, (0..250).collect::<Vec<u64>>(), "thread {thread}");
    }

    // And read back from the tokio program.
    let values = runtime.block_on(async {
        let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
        consumer
            .assign("mixed", Some(&[4]), StartAt::Earliest)
            .await
            .unwrap();
        let mut values = Vec::new();
        while values.len() < 100 {
            let polled = consumer.poll_async(Duration::from_secs(30)).await.unwrap();
            assert!(!polled.is_empty(), "records arrive well within the timeout");
            values.extend(
                polled
                    .records()
                    .map(|record| String::from_utf8(record.value().unwrap().to_vec()).unwrap()),
            );
        }
        values
    });
    let expected: Vec<String> = (0..100)
        .map(|number| format!("async-{number:03}"))
        .collect();
    assert_eq!(values, expected);
}

/// The (producer id, epoch, base sequence) of the last batch stored in `partition`.
fn last_batch_producer(client: &mut TestClient, topic: &str, partition: u32) -> (i64, i16, i32) {
    let answer = client.fetch_once(topic, partition, 0, 1 << 20);
    let bytes = answer.records.to_bytes();
    let mut rest = &bytes[..];
    let mut last = None;
    while !rest.is_empty() {
        let length = peek_batch_length(rest).expect("batch header") as usize;
        let view = BatchView::validate(&rest[..length], usize::MAX).expect("valid batch");
        last = Some((
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
        ));
        rest = &rest[length..];
    }
    last.expect("the partition holds a batch")
}

/// Writes one record to `partition` with the raw client, stamped as the given producer's.
fn produce_as(
    client: &mut TestClient,
    topic: &str,
    partition: u32,
    (producer_id, producer_epoch, base_sequence): (i64, i16, i32),
) -> ErrorCode {
    let mut batch = build_batch(&numbered_records(0, 1, 0));
    stamp_producer(&mut batch, producer_id, producer_epoch, base_sequence);
    let (code, _) = client.produce(topic, partition, WireAcks::All, vec![batch.freeze()]);
    code
}

/// A producer (idempotent by default) that has written one record to partition 0 of `topic`,
/// with the raw client's view of its identity (producer id, epoch).
fn idempotent_producer_and_its_identity(
    client: &spate_client::Client,
    raw: &mut TestClient,
    topic: &str,
) -> (spate_client::Producer, (i64, i16)) {
    let producer = client.producer(ProducerConfig::default()).unwrap();
    producer
        .send_blocking(ProducerRecord::new(topic, "first").with_partition(0))
        .unwrap()
        .wait()
        .expect("the first record is delivered");
    let (producer_id, producer_epoch, base_sequence) = last_batch_producer(raw, topic, 0);
    assert!(producer_id >= 0, "the producer stamped its batch");
    assert_eq!(base_sequence, 0, "the partition's first batch starts at 0");
    (producer, (producer_id, producer_epoch))
}

#[test]
fn an_out_of_order_answer_for_the_oldest_batch_reaches_the_application_and_the_epoch_is_bumped() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("gap", 2))
        .wait()
        .unwrap();
    let mut raw = TestClient::connect(broker.address());
    let (producer, (producer_id, producer_epoch)) =
        idempotent_producer_and_its_identity(&client, &mut raw, "gap");
    // The broker believes this producer's partition 1 is far ahead (half the sequence space,
    // so not a duplicate): as if it had lost records it acknowledged.
    let ahead = (producer_id, producer_epoch, 1_500_000_000);
    assert_eq!(produce_as(&mut raw, "gap", 1, ahead), ErrorCode::None);

    let refused = producer
        .send_blocking(ProducerRecord::new("gap", "lost").with_partition(1))
        .unwrap()
        .wait();
    match refused {
        Err(Error::OutOfOrderSequence {
            topic,
            partition,
            producer_id: id,
            producer_epoch: epoch,
            base_sequence,
        }) => {
            assert_eq!((topic.as_str(), partition), ("gap", 1));
            assert_eq!((id, epoch, base_sequence), (producer_id, producer_epoch, 0));
        }
        other => panic!("expected OutOfOrderSequence, got {other:?}"),
    }

    // The producer bumped its epoch and goes on, from sequence 0, on both partitions.
    for partition in [1, 0] {
        producer
            .send_blocking(ProducerRecord::new("gap", "after").with_partition(partition))
            .unwrap()
            .wait()
            .unwrap_or_else(|error| panic!("partition {partition} after the bump: {error}"));
        assert_eq!(
            last_batch_producer(&mut raw, "gap", partition),
            (producer_id, producer_epoch + 1, 0)
        );
    }
}

#[test]
fn a_retried_batch_the_broker_no_longer_remembers_is_reported_as_a_duplicate() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("seen", 2))
        .wait()
        .unwrap();
    let mut raw = TestClient::connect(broker.address());
    let (producer, (producer_id, producer_epoch)) =
        idempotent_producer_and_its_identity(&client, &mut raw, "seen");
    // Partition 1 already holds later sequences of this producer: sequence 0 lies before them.
    let later = (producer_id, producer_epoch, 1_000);
    assert_eq!(produce_as(&mut raw, "seen", 1, later), ErrorCode::None);
    let answer = producer
        .send_blocking(ProducerRecord::new("seen", "again").with_partition(1))
        .unwrap()
        .wait();
    match answer {
        Err(Error::DuplicateSequence { topic, partition }) => {
            assert_eq!((topic.as_str(), partition), ("seen", 1));
        }
        other => panic!("expected DuplicateSequence, got {other:?}"),
    }
}

#[test]
fn a_newer_epoch_of_the_producers_id_fences_it_for_good() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("fence", 1))
        .wait()
        .unwrap();
    let mut raw = TestClient::connect(broker.address());
    let (producer, (producer_id, producer_epoch)) =
        idempotent_producer_and_its_identity(&client, &mut raw, "fence");
    // Another process takes the id over with the next epoch and writes with it.
    let bumped = raw.call(&InitProducerIdRequest {
        producer_id,
        producer_epoch,
        ..InitProducerIdRequest::default()
    });
    assert_eq!(bumped.error_code, ErrorCode::None);
    assert_eq!(
        (bumped.producer_id, bumped.producer_epoch),
        (producer_id, producer_epoch + 1)
    );
    let newer = (producer_id, producer_epoch + 1, 0);
    assert_eq!(produce_as(&mut raw, "fence", 0, newer), ErrorCode::None);

    let fenced = producer
        .send_blocking(ProducerRecord::new("fence", "zombie").with_partition(0))
        .unwrap()
        .wait();
    let expected = |result: &Result<_, Error>| {
        matches!(result, Err(Error::ProducerFenced { producer_id: id, producer_epoch: epoch })
            if (*id, *epoch) == (producer_id, producer_epoch))
    };
    assert!(expected(&fenced), "expected ProducerFenced, got {fenced:?}");
    let later = producer.send_blocking(ProducerRecord::new("fence", "later").with_partition(0));
    assert!(
        matches!(later, Err(Error::ProducerFenced { .. })),
        "a fenced producer refuses new records: {later:?}"
    );
}
