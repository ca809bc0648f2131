//! End-to-end: the `spate-client` consumer against the real broker. Start positions, seeking by
//! offset and by timestamp, position and lag, bounded prefetch, offsets outside the log, and
//! records with keys, headers and tombstones read in place.

mod client_support;

use std::time::{Duration, Instant};

use spate_client::{
    Client, Consumer, ConsumerConfig, Error, NewTopic, OffsetReset, ProducerConfig, ProducerRecord,
    StartAt,
};

use client_support::{broker, client, READ_TIMEOUT};

/// Writes `count` records `record-N` to `topic`/`partition` with timestamps `1_000_000 + 10 * N`.
fn produce_numbered(client: &Client, topic: &str, partition: u32, count: usize) {
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = (0..count)
        .map(|number| {
            let value = format!("record-{number}");
            producer
                .send_blocking(
                    ProducerRecord::new(topic, &value)
                        .with_partition(partition)
                        .with_timestamp(1_000_000 + 10 * number as i64),
                )
                .unwrap()
        })
        .collect();
    producer.close().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }
}

/// The next `count` (offset, value) pairs the consumer returns.
fn next_records(consumer: &mut Consumer, count: usize) -> Vec<(u64, String)> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records = Vec::new();
    while records.len() < count {
        assert!(Instant::now() < deadline, "got only {records:?}");
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        records.extend(polled.records().map(|record| {
            (
                record.offset(),
                String::from_utf8(record.value().unwrap().to_vec()).unwrap(),
            )
        }));
    }
    records.truncate(count);
    records
}

fn expected(range: std::ops::Range<u64>) -> Vec<(u64, String)> {
    range
        .map(|offset| (offset, format!("record-{offset}")))
        .collect()
}

#[test]
fn the_consumer_seeks_by_offset_and_by_timestamp() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("seek", 1))
        .wait()
        .unwrap();
    produce_numbered(&client, "seek", 0, 500);
    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();

    consumer
        .assign("seek", None, StartAt::Offset(123))
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut consumer, 5), expected(123..128));

    consumer.seek("seek", 0, 7).unwrap();
    assert_eq!(consumer.position("seek", 0), Some(7));
    assert_eq!(next_records(&mut consumer, 3), expected(7..10));

    // Record N has timestamp 1_000_000 + 10 N: 1_002_005 falls between records 200 and 201.
    consumer
        .seek_to("seek", 0, StartAt::Timestamp(1_002_005))
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut consumer, 2), expected(201..203));
    consumer
        .seek_to("seek", 0, StartAt::Timestamp(1_003_000))
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut consumer, 1), expected(300..301));

    // After the last record's time there is nothing: the position is the end of the log.
    consumer
        .seek_to("seek", 0, StartAt::Timestamp(9_000_000))
        .wait()
        .unwrap();
    assert_eq!(consumer.position("seek", 0), Some(500));
    assert!(consumer
        .poll(Duration::from_millis(300))
        .unwrap()
        .is_empty());

    consumer
        .seek_to("seek", 0, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut consumer, 2), expected(0..2));
}

#[test]
fn start_positions_position_and_lag_follow_the_log() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("lag", 2))
        .wait()
        .unwrap();
    produce_numbered(&client, "lag", 1, 100);

    let mut latest = client.consumer(ConsumerConfig::default()).unwrap();
    latest
        .assign("lag", Some(&[1]), StartAt::Latest)
        .wait()
        .unwrap();
    assert_eq!(latest.position("lag", 1), Some(100));
    assert_eq!(latest.assignment().len(), 1);

    let mut earliest = client.consumer(ConsumerConfig::default()).unwrap();
    earliest
        .assign("lag", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(earliest.position("lag", 0), Some(0));
    assert_eq!(earliest.position("lag", 1), Some(0));
    assert_eq!(next_records(&mut earliest, 100), expected(0..100));
    assert_eq!(earliest.position("lag", 1), Some(100));
    assert_eq!(earliest.lag("lag", 1), Some(0));

    // Lag counts from the position, which only `poll` moves (prefetching does not).
    let middle = client.consumer(ConsumerConfig::default()).unwrap();
    middle
        .assign("lag", Some(&[1]), StartAt::Offset(40))
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    while middle.high_watermark("lag", 1).is_none() {
        assert!(Instant::now() < deadline, "no fetch answer arrived");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(middle.lag("lag", 1), Some(60));

    // The latest consumer sees only what comes after its start.
    let producer = client.producer(ProducerConfig::default()).unwrap();
    producer
        .send_blocking(ProducerRecord::new("lag", "record-100").with_partition(1))
        .unwrap()
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut latest, 1), expected(100..101));

    earliest.unassign("lag", &[1]);
    assert_eq!(earliest.position("lag", 1), None);
    assert!(
        earliest.seek("lag", 1, 0).is_err(),
        "seeking an unassigned partition"
    );
}

#[test]
fn prefetch_holds_no_more_than_its_limit_while_the_application_is_busy() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("prefetch", 1))
        .wait()
        .unwrap();
    let producer = client
        .producer(ProducerConfig {
            batch_bytes: 8 * 1024,
            ..ProducerConfig::default()
        })
        .unwrap();
    let value = vec![b'p'; 1000];
    let deliveries: Vec<_> = (0..2000)
        .map(|_| {
            producer
                .send_blocking(ProducerRecord::new("prefetch", &value))
                .unwrap()
        })
        .collect();
    producer.close().wait().unwrap();
    deliveries.into_iter().for_each(|delivery| {
        delivery.wait().unwrap();
    });

    let prefetch_bytes_max = 64 * 1024;
    let mut consumer = client
        .consumer(ConsumerConfig {
            prefetch_bytes_max,
            fetch_bytes_max: 32 * 1024,
            partition_fetch_bytes_max: 32 * 1024,
            ..ConsumerConfig::default()
        })
        .unwrap();
    consumer
        .assign("prefetch", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let mut total = 0;
    while total < 2000 {
        // The application is slow: the prefetcher has all the time it wants.
        std::thread::sleep(Duration::from_millis(100));
        let polled = consumer.poll(Duration::from_secs(10)).unwrap();
        assert!(!polled.is_empty());
        // The broker may return one batch beyond a fetch's limit.
        assert!(
            polled.batch_bytes() <= prefetch_bytes_max + 8 * 1024,
            "{} bytes were prefetched",
            polled.batch_bytes()
        );
        total += polled.len();
        if total >= 100 {
            break;
        }
    }
    assert!(total >= 100);
}

#[test]
fn an_offset_outside_the_log_fails_poll_or_resets_as_configured() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("range", 1))
        .wait()
        .unwrap();
    produce_numbered(&client, "range", 0, 10);

    let mut strict = client
        .consumer(ConsumerConfig {
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        })
        .unwrap();
    strict
        .assign("range", None, StartAt::Offset(50))
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    let error = loop {
        assert!(Instant::now() < deadline, "no error reported");
        match strict.poll(Duration::from_millis(200)) {
            Err(error) => break error,
            Ok(polled) => assert!(polled.is_empty()),
        }
    };
    assert!(
        matches!(
            error,
            Error::OffsetOutOfRange {
                offset: 50,
                high_watermark: 10,
                ..
            }
        ),
        "{error}"
    );
    strict.seek("range", 0, 8).unwrap();
    assert_eq!(next_records(&mut strict, 2), expected(8..10));

    let mut forgiving = client
        .consumer(ConsumerConfig {
            offset_reset: OffsetReset::Earliest,
            ..ConsumerConfig::default()
        })
        .unwrap();
    forgiving
        .assign("range", None, StartAt::Offset(50))
        .wait()
        .unwrap();
    assert_eq!(next_records(&mut forgiving, 3), expected(0..3));
}

#[test]
fn keys_headers_and_tombstones_read_in_place_match_their_owned_copies() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("shapes", 1))
        .wait()
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let headers = [
        ("trace", &b"t-1"[..]),
        ("trace", &b"t-2"[..]),
        ("bin", &[0u8, 255][..]),
    ];
    let full = producer
        .send_blocking(
            ProducerRecord::new("shapes", "full")
                .with_key("k1")
                .with_headers(&headers)
                .with_timestamp(42),
        )
        .unwrap();
    let tombstone = producer
        .send_blocking(ProducerRecord::tombstone("shapes", "k1").with_timestamp(43))
        .unwrap();
    producer.close().wait().unwrap();
    assert_eq!(full.wait().unwrap().offset, Some(0));
    assert_eq!(tombstone.wait().unwrap().offset, Some(1));

    let mut consumer = client.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign("shapes", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut polled = consumer.poll(Duration::from_millis(200)).unwrap();
    while polled.len() < 2 {
        assert!(Instant::now() < deadline);
        polled = consumer.poll(Duration::from_millis(200)).unwrap();
    }
    let borrowed: Vec<_> = polled.records().collect();
    assert_eq!(borrowed[0].key(), Some(&b"k1"[..]));
    assert_eq!(borrowed[0].value(), Some(&b"full"[..]));
    assert_eq!(borrowed[0].timestamp(), 42);
    assert_eq!(
        borrowed[0].headers().collect::<Vec<_>>(),
        headers.to_vec(),
        "headers keep order and repeats"
    );
    assert_eq!(borrowed[1].value(), None, "a tombstone has no value");
    assert_eq!(borrowed[1].topic(), "shapes");

    let owned = polled.to_owned_records();
    for (view, copy) in borrowed.iter().zip(&owned) {
        assert_eq!(copy.offset, view.offset());
        assert_eq!(copy.key.as_deref(), view.key());
        assert_eq!(copy.value.as_deref(), view.value());
        assert_eq!(copy.headers.len(), view.headers().len());
    }
}

#[test]
fn a_long_polling_consumer_holds_back_no_other_answer_on_the_same_client() {
    let broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("quiet", 2))
        .wait()
        .unwrap();
    // Partition 0 stays empty: the broker holds each of this consumer's fetches for 20 s.
    let consumer = client
        .consumer(ConsumerConfig {
            fetch_wait: Duration::from_secs(20),
            ..ConsumerConfig::default()
        })
        .unwrap();
    consumer
        .assign("quiet", Some(&[0]), StartAt::Latest)
        .wait()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));

    // The broker answers a connection's requests in order; sharing the consumer's connection
    // would make these wait for the long poll to end.
    let producer = client.producer(ProducerConfig::default()).unwrap();
    for number in 0..5 {
        let value = format!("record-{number}");
        let mut delivery = producer
            .send_blocking(ProducerRecord::new("quiet", &value).with_partition(1))
            .unwrap();
        let written = delivery
            .wait_timeout(Duration::from_secs(10))
            .expect("a produce answer waited behind the consumer's long poll")
            .unwrap();
        assert_eq!(written.offset, Some(number));
    }
    let mut listed = client.admin().list_topics();
    assert!(listed
        .wait_timeout(Duration::from_secs(10))
        .expect("an admin answer waited behind the consumer's long poll")
        .is_ok());
    drop(consumer);
}
