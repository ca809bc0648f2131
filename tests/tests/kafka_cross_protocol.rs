//! End-to-end, across protocols: one topic is one log to both. Records the native client's
//! producer wrote are fetched over Kafka as correct Kafka batches (every batch and record field,
//! CRC included); records a Kafka producer wrote with each codec are read by the native client's
//! consumer exactly (keys, values, null versus empty, headers, timestamps, offsets), and a
//! compressed batch past the consumer's decompression limit is refused, not read.

mod client_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_client::{ConsumerConfig, Error, NewTopic, ProducerConfig, ProducerRecord, StartAt};
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::{FetchRequest, ProduceRequest, TopicName};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use spate_protocol::batch::kafka;
use spate_protocol::BatchError;
use spate_tests::KafkaTestClient;

use client_support::{broker, client, READ_TIMEOUT};

/// One record as both sides see it. A header value of `None` is Kafka's null.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expected {
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Option<Vec<u8>>)>,
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// Fetches `topic`/0 over Kafka from `offset` (v12, by name) and returns the records field.
fn kafka_fetch(client: &mut KafkaTestClient, topic: &str, offset: i64) -> Bytes {
    let request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_max_bytes(50 << 20)
        .with_topics(vec![FetchTopic::default()
            .with_topic(topic_name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(10 << 20)])]);
    let response = client.call(12, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    partition.records.clone().unwrap_or_default()
}

/// Splits a fetch answer's records into whole Kafka batches (a trailing partial one dropped).
fn kafka_batches(mut records: &[u8]) -> Vec<&[u8]> {
    let mut batches = Vec::new();
    while records.len() >= kafka::KAFKA_BATCH_HEADER_BYTES {
        let length_field = &records[kafka::field::BATCH_LENGTH..][..4];
        let length = i32::from_be_bytes(length_field.try_into().unwrap()) as usize
            + kafka::field::LENGTH_OVERHEAD;
        if records.len() < length {
            break;
        }
        batches.push(&records[..length]);
        records = &records[length..];
    }
    batches
}

#[test]
fn records_the_native_producer_wrote_are_fetched_over_kafka_as_correct_batches() {
    let broker = broker();
    let native = client(broker.address());
    native
        .admin()
        .create_topic(NewTopic::new("written-natively", 1))
        .wait()
        .unwrap();
    // Idempotent (the default): batches carry a producer id, epoch and sequences.
    let producer = native.producer(ProducerConfig::default()).unwrap();
    let mut expected = Vec::new();
    let mut deliveries = Vec::new();
    for number in 0..600u64 {
        let key = format!("key-{number}").into_bytes();
        let value = format!("value-{number}-")
            .repeat(1 + (number % 7) as usize)
            .into_bytes();
        let trace = number.to_be_bytes();
        let headers_owned: Vec<(String, Vec<u8>)> = match number % 3 {
            0 => Vec::new(),
            1 => vec![("trace".into(), trace.to_vec())],
            _ => vec![
                ("trace".into(), trace.to_vec()),
                ("empty".into(), Vec::new()),
            ],
        };
        let headers: Vec<(&str, &[u8])> = headers_owned
            .iter()
            .map(|(key, value)| (key.as_str(), value.as_slice()))
            .collect();
        let timestamp = 1_700_000_000_000 + (number as i64 * 37) % 1000;
        let (record_key, record_value) = match number % 5 {
            0 => (None, Some(value.clone())),
            1 => (Some(key.clone()), None),
            2 => (Some(Vec::new()), Some(Vec::new())),
            _ => (Some(key.clone()), Some(value.clone())),
        };
        let record = ProducerRecord {
            topic: "written-natively",
            partition: Some(0),
            key: record_key.as_deref(),
            value: record_value.as_deref(),
            headers: &headers,
            timestamp: Some(timestamp),
        };
        deliveries.push(producer.send_blocking(record).unwrap());
        expected.push(Expected {
            offset: number,
            timestamp,
            key: record_key,
            value: record_value,
            headers: headers_owned
                .into_iter()
                .map(|(key, value)| (key, Some(value)))
                .collect(),
        });
        if number == 300 {
            // Let the first records go out on their own, so the log holds several batches.
            producer.flush().wait().unwrap();
        }
    }
    producer.close().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }

    let mut kafka_client = KafkaTestClient::connect(broker.kafka_address());
    let mut seen = Vec::new();
    let mut producer_ids = BTreeMap::new();
    let deadline = Instant::now() + READ_TIMEOUT;
    while seen.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "only {} records fetched",
            seen.len()
        );
        let records = kafka_fetch(&mut kafka_client, "written-natively", seen.len() as i64);
        for batch in kafka_batches(&records) {
            // Spate's own Kafka check: magic 2, lengths, counts, CRC-32C over the batch.
            let info = kafka::check(batch).expect("a valid Kafka batch");
            assert_eq!(info.compression(), kafka::Compression::None);
            assert_eq!(info.record_count, info.last_offset_delta + 1);
            assert!(info.producer_id >= 0, "an idempotent producer's batch");
            *producer_ids.entry(info.producer_id).or_insert(0) += info.record_count;
            // Sequences count records from 0 per partition, so the base sequence is the
            // batch's first offset here (one producer, one partition, no retries).
            assert_eq!(i64::from(info.base_sequence), info.base_offset);
            let decoded =
                RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(batch)).expect("decodes");
            for record in decoded.records {
                assert_eq!(record.timestamp_type, TimestampType::Creation);
                assert_eq!(record.sequence as i64, record.offset);
                assert!(record.timestamp >= info.base_timestamp.min(record.timestamp));
                assert!(record.timestamp <= info.max_timestamp);
                seen.push(Expected {
                    offset: record.offset as u64,
                    timestamp: record.timestamp,
                    key: record.key.map(|key| key.to_vec()),
                    value: record.value.map(|value| value.to_vec()),
                    headers: record
                        .headers
                        .iter()
                        .map(|(key, value)| (key.to_string(), value.as_ref().map(|v| v.to_vec())))
                        .collect(),
                });
            }
        }
    }
    assert_eq!(seen, expected);
    assert_eq!(producer_ids.len(), 1, "one producer id: {producer_ids:?}");
}

/// A Kafka producer's batch of `records` with `codec` (offsets from 0, no producer id).
fn kafka_batch(records: &[Expected], codec: Compression) -> Bytes {
    let records: Vec<KafkaRecord> = records
        .iter()
        .enumerate()
        .map(|(index, record)| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch where offset minus sequence changes.
            sequence: index as i32 - 1,
            timestamp: record.timestamp,
            key: record.key.clone().map(Bytes::from),
            value: record.value.clone().map(Bytes::from),
            headers: record
                .headers
                .iter()
                .map(|(key, value)| {
                    (
                        StrBytes::from_string(key.clone()),
                        value.clone().map(Bytes::from),
                    )
                })
                .collect(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .expect("encodes");
    buffer.freeze()
}

/// Produces one batch over Kafka (v9, acks=all) and returns its base offset.
fn kafka_produce(client: &mut KafkaTestClient, topic: &str, batch: Bytes) -> i64 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = client.call(9, &request);
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer.base_offset
}

/// Records of every shape for one batch: null and empty keys and values, headers with null,
/// empty and plain values, timestamps out of order.
fn kafka_records(prefix: &str, count: usize, first_offset: u64) -> Vec<Expected> {
    (0..count)
        .map(|index| {
            let text = |what: &str| {
                format!("{prefix}-{what}-{index}-")
                    .repeat(1 + index % 5)
                    .into_bytes()
            };
            Expected {
                offset: first_offset + index as u64,
                timestamp: 1_600_000_000_000 + ((index * 7919) % 500) as i64,
                key: match index % 4 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(text("key")),
                },
                value: match index % 6 {
                    0 => None,
                    1 => Some(Vec::new()),
                    _ => Some(text("value")),
                },
                headers: match index % 3 {
                    0 => Vec::new(),
                    1 => vec![("origin".into(), Some(prefix.as_bytes().to_vec()))],
                    _ => vec![
                        ("origin".into(), Some(prefix.as_bytes().to_vec())),
                        ("null".into(), None),
                        ("empty".into(), Some(Vec::new())),
                    ],
                },
            }
        })
        .collect()
}

#[test]
fn records_a_kafka_producer_wrote_with_each_codec_are_read_exactly_by_the_native_consumer() {
    let broker = broker();
    let native = client(broker.address());
    native
        .admin()
        .create_topic(NewTopic::new("written-over-kafka", 1))
        .wait()
        .unwrap();
    let mut kafka_client = KafkaTestClient::connect(broker.kafka_address());
    let codecs = [
        (Compression::None, "none"),
        (Compression::Gzip, "gzip"),
        (Compression::Snappy, "snappy"),
        (Compression::Lz4, "lz4"),
        (Compression::Zstd, "zstd"),
    ];
    let mut expected = Vec::new();
    for (codec, name) in codecs {
        let records = kafka_records(name, 40, expected.len() as u64);
        let base_offset = kafka_produce(
            &mut kafka_client,
            "written-over-kafka",
            kafka_batch(&records, codec),
        );
        assert_eq!(base_offset as u64, records[0].offset, "{name}");
        expected.extend(records);
    }
    // A native record between and after Kafka batches reads the same way.
    let producer = native.producer(ProducerConfig::default()).unwrap();
    let delivery = producer
        .send_blocking(
            ProducerRecord::new("written-over-kafka", "native")
                .with_partition(0)
                .with_timestamp(5),
        )
        .unwrap();
    producer.close().wait().unwrap();
    assert_eq!(delivery.wait().unwrap().offset, Some(expected.len() as u64));
    expected.push(Expected {
        offset: expected.len() as u64,
        timestamp: 5,
        key: None,
        value: Some(b"native".to_vec()),
        headers: Vec::new(),
    });

    let mut consumer = native.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign("written-over-kafka", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < expected.len() {
        assert!(
            Instant::now() < deadline,
            "only {} records read",
            seen.len()
        );
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        seen.extend(polled.records().map(|record| {
            Expected {
                offset: record.offset(),
                timestamp: record.timestamp(),
                key: record.key().map(<[u8]>::to_vec),
                value: record.value().map(<[u8]>::to_vec),
                headers: record
                    .headers()
                    .map(|(key, value)| (key.to_string(), Some(value.to_vec())))
                    .collect(),
            }
        }));
    }
    // Native headers have no null value: Kafka's null reads as empty.
    for record in &mut expected {
        for (_, value) in &mut record.headers {
            value.get_or_insert_with(Vec::new);
        }
    }
    assert_eq!(seen, expected);
}

#[test]
fn a_compressed_batch_past_the_consumers_decompression_limit_is_refused() {
    let broker = broker();
    let native = client(broker.address());
    native
        .admin()
        .create_topic(NewTopic::new("inflating", 1))
        .wait()
        .unwrap();
    let mut kafka_client = KafkaTestClient::connect(broker.kafka_address());
    let big = Expected {
        offset: 0,
        timestamp: 1,
        key: None,
        value: Some(vec![b'z'; 2 << 20]),
        headers: Vec::new(),
    };
    let batch = kafka_batch(&[big], Compression::Gzip);
    assert!(batch.len() < 64 << 10, "2 MiB of one byte compresses well");
    kafka_produce(&mut kafka_client, "inflating", batch);

    let config = ConsumerConfig {
        decompressed_bytes_max: 1 << 20,
        ..ConsumerConfig::default()
    };
    let mut consumer = native.consumer(config).unwrap();
    consumer
        .assign("inflating", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    let error = loop {
        assert!(Instant::now() < deadline, "the batch was never refused");
        match consumer.poll(Duration::from_millis(200)) {
            Ok(polled) => assert!(polled.is_empty(), "records read past the limit"),
            Err(error) => break error,
        }
    };
    match error {
        Error::CorruptBatch { offset, source, .. } => {
            assert_eq!(offset, 0);
            assert_eq!(source, BatchError::DecompressedTooLarge { limit: 1 << 20 });
        }
        other => panic!("expected a refused batch, got {other:?}"),
    }

    // A consumer allowed enough reads it.
    let mut consumer = native.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign("inflating", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    loop {
        assert!(Instant::now() < deadline, "the batch was never read");
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        if let Some(record) = polled.records().next() {
            assert_eq!(record.value().map(<[u8]>::len), Some(2 << 20));
            break;
        }
    }
}

#[test]
fn compressed_batches_past_one_polls_decompression_budget_arrive_over_several_polls() {
    let broker = broker();
    let native = client(broker.address());
    native
        .admin()
        .create_topic(NewTopic::new("budgeted", 1))
        .wait()
        .unwrap();
    let mut kafka_client = KafkaTestClient::connect(broker.kafka_address());
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Gzip,
        Compression::Zstd,
    ];
    for (offset, codec) in codecs.into_iter().enumerate() {
        let record = Expected {
            offset: offset as u64,
            timestamp: offset as i64,
            key: Some(vec![offset as u8]),
            value: Some(vec![b'a' + offset as u8; 600 << 10]),
            headers: Vec::new(),
        };
        kafka_produce(&mut kafka_client, "budgeted", kafka_batch(&[record], codec));
    }

    // Room for one 600 KiB batch per poll: every fetch answer holding several is cut.
    let config = ConsumerConfig {
        decompressed_bytes_max: 1 << 20,
        ..ConsumerConfig::default()
    };
    let mut consumer = native.consumer(config).unwrap();
    consumer
        .assign("budgeted", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut seen = Vec::new();
    while seen.len() < codecs.len() {
        assert!(Instant::now() < deadline, "only {seen:?} read");
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        let decompressed: usize = polled
            .records()
            .map(|record| record.value().map_or(0, <[u8]>::len))
            .sum();
        assert!(
            decompressed <= 1 << 20,
            "one poll held {decompressed} bytes"
        );
        for record in polled.records() {
            let value = record.value().unwrap();
            assert!(value
                .iter()
                .all(|&byte| byte == b'a' + record.offset() as u8));
            assert_eq!(value.len(), 600 << 10);
            seen.push(record.offset());
        }
    }
    assert_eq!(seen, (0..codecs.len() as u64).collect::<Vec<_>>());
}
