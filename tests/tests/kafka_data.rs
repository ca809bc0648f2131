//! End-to-end: the Kafka data path (Produce, Fetch, ListOffsets, OffsetForLeaderEpoch,
//! InitProducerId) against the real broker, spoken on the wire with the `kafka-protocol` crate's
//! codecs (`KafkaTestClient`), batches built and read with its RecordBatch encoder and decoder
//! (every codec): round trips at the served versions, acks=0, long polls, mid-batch offsets,
//! response limits, idempotent producers, bad batches, and a restart.

use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::PartitionData;
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_response::ListOffsetsPartitionResponse;
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use spate_kafka_protocol::kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, CreateTopicsRequest, FetchRequest, FetchResponse,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, OffsetForLeaderEpochRequest,
    ProduceRequest, ProducerId, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::Compression;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api::Acks;
use spate_protocol::error::ErrorCode;
use spate_tests::client::numbered_records;
use spate_tests::kafka_client::{kafka_batch, kafka_records, KafkaProducer, KafkaTestRecord};
use spate_tests::{build_batch, Broker, BrokerOptions, KafkaTestClient, TestClient};
use uuid::Uuid;

const PRODUCE_VERSIONS: std::ops::RangeInclusive<i16> = 3..=13;
const FETCH_VERSIONS: std::ops::RangeInclusive<i16> = 4..=18;
const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;

fn broker() -> Broker {
    Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    })
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn create_topic(
    client: &mut KafkaTestClient,
    topic: &str,
    partitions: i32,
    configs: &[(&str, &str)],
) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        CreatableTopicConfig::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                    })
                    .collect(),
            )]);
    let response = client.call(7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

fn topic_id(client: &mut KafkaTestClient, topic: &str) -> Uuid {
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default().with_name(Some(name(topic))),
    ]));
    let response = client.call(12, &request);
    response.topics[0].topic_id
}

fn records(count: usize, prefix: &str, timestamp: i64) -> Vec<KafkaTestRecord> {
    (0..count)
        .map(|index| {
            KafkaTestRecord::new(
                &format!("{prefix}-key-{index}"),
                &format!("{prefix}-value-{index}"),
                timestamp + index as i64,
            )
        })
        .collect()
}

/// A produce request of one partition's records, at `version` (names or, v13+, ids).
fn produce_request(
    version: i16,
    topic: &str,
    id: Uuid,
    partition: i32,
    records: Bytes,
    acks: i16,
) -> ProduceRequest {
    let mut data =
        TopicProduceData::default().with_partition_data(vec![PartitionProduceData::default()
            .with_index(partition)
            .with_records(Some(records))]);
    if version >= 13 {
        data.topic_id = id;
    } else {
        data.name = name(topic);
    }
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![data])
}

fn produce(
    client: &mut KafkaTestClient,
    version: i16,
    topic: &str,
    partition: i32,
    records: Bytes,
) -> PartitionProduceResponse {
    let id = if version >= 13 {
        topic_id(client, topic)
    } else {
        Uuid::nil()
    };
    let response = client.call(
        version,
        &produce_request(version, topic, id, partition, records, -1),
    );
    assert_eq!(response.responses.len(), 1);
    let answer = response.responses[0].partition_responses[0].clone();
    if answer.error_code != 0 {
        eprintln!("produce v{version} to {topic}/{partition} refused: {answer:?}");
    }
    answer
}

struct Fetch {
    version: i16,
    offset: i64,
    max_wait_ms: i32,
    min_bytes: i32,
    max_bytes: i32,
    partition_max_bytes: i32,
}

impl Default for Fetch {
    fn default() -> Self {
        Fetch {
            version: 12,
            offset: 0,
            max_wait_ms: 0,
            min_bytes: 0,
            max_bytes: 50 * 1024 * 1024,
            partition_max_bytes: 10 * 1024 * 1024,
        }
    }
}

fn fetch_topic(version: i16, topic: &str, id: Uuid, partitions: Vec<FetchPartition>) -> FetchTopic {
    let fetched = FetchTopic::default().with_partitions(partitions);
    if version >= 13 {
        fetched.with_topic_id(id)
    } else {
        fetched.with_topic(name(topic))
    }
}

fn fetch_request(topics: Vec<FetchTopic>, fetch: &Fetch) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(fetch.max_wait_ms)
        .with_min_bytes(fetch.min_bytes)
        .with_max_bytes(fetch.max_bytes)
        .with_topics(topics)
}

fn fetch(client: &mut KafkaTestClient, topic: &str, partition: i32, fetch: Fetch) -> PartitionData {
    let id = if fetch.version >= 13 {
        topic_id(client, topic)
    } else {
        Uuid::nil()
    };
    let partitions = vec![FetchPartition::default()
        .with_partition(partition)
        .with_fetch_offset(fetch.offset)
        .with_partition_max_bytes(fetch.partition_max_bytes)];
    let request = fetch_request(
        vec![fetch_topic(fetch.version, topic, id, partitions)],
        &fetch,
    );
    let response: FetchResponse = client.call(fetch.version, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    response.responses[0].partitions[0].clone()
}

fn fetched_values(partition: &PartitionData) -> Vec<(i64, String)> {
    let records = partition.records.clone().unwrap_or_default();
    kafka_records(&records)
        .into_iter()
        .map(|record| {
            let value = record.value.expect("a value");
            (
                record.offset,
                String::from_utf8(value.to_vec()).expect("utf-8"),
            )
        })
        .collect()
}

fn list_offset(
    client: &mut KafkaTestClient,
    version: i16,
    topic: &str,
    target: i64,
) -> ListOffsetsPartitionResponse {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(target)])]);
    let response = client.call(version, &request);
    response.topics[0].partitions[0].clone()
}

#[test]
fn records_produced_at_every_version_are_fetched_at_every_version() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "round-trip", 2, &[]);
    let mut expected = Vec::new();
    for version in PRODUCE_VERSIONS {
        let batch = kafka_batch(
            &records(3, &format!("v{version}"), 1_000),
            Compression::None,
            None,
        );
        let answer = produce(&mut client, version, "round-trip", 1, batch);
        assert_eq!(answer.error_code, 0, "produce v{version}: {answer:?}");
        assert_eq!(
            answer.base_offset,
            expected.len() as i64,
            "produce v{version}"
        );
        if version >= 5 {
            assert_eq!(answer.log_start_offset, 0);
        }
        for index in 0..3 {
            expected.push((expected.len() as i64, format!("v{version}-value-{index}")));
        }
    }
    for version in FETCH_VERSIONS {
        let partition = fetch(
            &mut client,
            "round-trip",
            1,
            Fetch {
                version,
                ..Fetch::default()
            },
        );
        assert_eq!(partition.error_code, 0, "fetch v{version}");
        assert_eq!(
            partition.high_watermark,
            expected.len() as i64,
            "fetch v{version}"
        );
        assert_eq!(partition.last_stable_offset, expected.len() as i64);
        assert_eq!(fetched_values(&partition), expected, "fetch v{version}");
    }
    // The other partition is empty: an empty answer, not an error.
    let empty = fetch(&mut client, "round-trip", 0, Fetch::default());
    assert_eq!(empty.error_code, 0);
    assert_eq!(empty.high_watermark, 0);
    assert!(fetched_values(&empty).is_empty());
}

#[test]
fn every_codec_is_stored_and_served_as_sent() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "codecs", 1, &[]);
    let codecs = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    let mut sent = Vec::new();
    for (index, codec) in codecs.iter().enumerate() {
        let batch = kafka_batch(&records(20, &format!("{codec:?}"), 5_000), *codec, None);
        let answer = produce(&mut client, 9, "codecs", 0, batch.clone());
        assert_eq!(answer.error_code, 0, "{codec:?}: {answer:?}");
        assert_eq!(answer.base_offset, 20 * index as i64);
        sent.push(batch);
    }
    let partition = fetch(&mut client, "codecs", 0, Fetch::default());
    // The batches come back byte for byte as sent, apart from the stamped base offset and
    // leader epoch (bytes 0..8 and 12..16, outside Kafka's CRC).
    let mut served = partition.records.clone().expect("records");
    for (index, batch) in sent.iter().enumerate() {
        let mut expected = BytesMut::from(&batch[..]);
        expected[0..8].copy_from_slice(&(20 * index as i64).to_be_bytes());
        expected[12..16].copy_from_slice(&0i32.to_be_bytes());
        let got = served.split_to(batch.len());
        assert_eq!(
            &got[..],
            &expected[..],
            "batch {index} ({:?})",
            codecs[index]
        );
    }
    assert!(served.is_empty());
    let values = fetched_values(&partition);
    assert_eq!(values.len(), 100);
    assert_eq!(values[25], (25, "Gzip-value-5".to_string()));
    assert_eq!(values[99], (99, "Zstd-value-19".to_string()));
}

#[test]
fn zstd_needs_produce_v7() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "zstd", 1, &[]);
    let batch = kafka_batch(&records(2, "z", 1), Compression::Zstd, None);
    let answer = produce(&mut client, 6, "zstd", 0, batch.clone());
    assert_eq!(
        answer
            .error_message
            .as_ref()
            .map(|m| m.to_string())
            .unwrap_or_default(),
        String::new()
    );
    assert_eq!(
        answer.error_code,
        code(ResponseError::UnsupportedCompressionType)
    );
    let answer = produce(&mut client, 7, "zstd", 0, batch);
    assert_eq!(answer.error_code, 0);
    assert_eq!(answer.base_offset, 0, "the refused batch took no offsets");
}

#[test]
fn acks_zero_gets_no_answer_and_the_records_are_stored() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "fire-and-forget", 1, &[]);
    let batch = kafka_batch(&records(4, "a0", 1), Compression::None, None);
    let (frame, _) = client.encode(
        9,
        &produce_request(9, "fire-and-forget", Uuid::nil(), 0, batch, 0),
    );
    client.send_raw(&frame);
    // The next answer on the connection is the ApiVersions one: the produce got none.
    let (frame, correlation_id) = client.encode(3, &ApiVersionsRequest::default());
    client.send_raw(&frame);
    let versions: ApiVersionsResponse = client.receive(3, correlation_id);
    assert_eq!(versions.error_code, 0);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let partition = fetch(&mut client, "fire-and-forget", 0, Fetch::default());
        if partition.high_watermark == 4 {
            assert_eq!(fetched_values(&partition).len(), 4);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "acks=0 records never became readable"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_failed_acks_zero_produce_closes_the_connection_as_kafka_does() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "fire-at-nothing", 1, &[]);
    // Partition 3 does not exist: with acks=0 the only way to tell the producer is to close.
    let batch = kafka_batch(&records(2, "a0", 1), Compression::None, None);
    let (frame, _) = client.encode(
        9,
        &produce_request(9, "fire-at-nothing", Uuid::nil(), 3, batch, 0),
    );
    client.send_raw(&frame);
    assert!(
        client.is_closed_by_broker(),
        "the connection stayed open after a failed acks=0 produce"
    );
    // Other connections are served as before.
    let mut other = KafkaTestClient::connect(broker.kafka_address());
    let partition = fetch(&mut other, "fire-at-nothing", 0, Fetch::default());
    assert_eq!((partition.error_code, partition.high_watermark), (0, 0));
}

#[test]
fn bad_batches_are_refused_with_kafkas_codes_and_store_nothing() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "strict", 1, &[("max.message.bytes", "2000")]);
    let good = kafka_batch(&records(3, "g", 1), Compression::None, None);

    let mut bad_crc = BytesMut::from(&good[..]);
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0xff;
    let answer = produce(&mut client, 9, "strict", 0, bad_crc.freeze());
    assert_eq!(
        answer.error_code,
        code(ResponseError::CorruptMessage),
        "{answer:?}"
    );
    assert_eq!(answer.base_offset, -1);
    assert!(answer.error_message.is_some());

    // A magic v1 message set (offset, size, crc, magic 1, attributes, timestamp, key, value).
    let mut legacy = BytesMut::new();
    legacy.put_i64(0);
    legacy.put_i32(4 + 1 + 1 + 8 + 4 + 4 + 5);
    legacy.put_u32(0);
    legacy.put_u8(1);
    legacy.put_u8(0);
    legacy.put_i64(1);
    legacy.put_i32(-1);
    legacy.put_i32(5);
    legacy.put_slice(b"hello");
    let answer = produce(&mut client, 9, "strict", 0, legacy.freeze());
    assert_eq!(
        answer.error_code,
        code(ResponseError::InvalidRecord),
        "{answer:?}"
    );

    let mut two = BytesMut::from(&good[..]);
    two.extend_from_slice(&good);
    let answer = produce(&mut client, 9, "strict", 0, two.freeze());
    assert_eq!(
        answer.error_code,
        code(ResponseError::InvalidRecord),
        "{answer:?}"
    );

    let answer = produce(&mut client, 9, "strict", 0, Bytes::new());
    assert_eq!(
        answer.error_code,
        code(ResponseError::InvalidRecord),
        "{answer:?}"
    );

    let big = kafka_batch(
        &[KafkaTestRecord {
            key: None,
            value: Some(vec![7u8; 3000]),
            timestamp: 1,
        }],
        Compression::None,
        None,
    );
    let answer = produce(&mut client, 9, "strict", 0, big);
    assert_eq!(
        answer.error_code,
        code(ResponseError::MessageTooLarge),
        "{answer:?}"
    );

    let request = produce_request(9, "strict", Uuid::nil(), 0, good.clone(), 2);
    let response = client.call(9, &request);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        code(ResponseError::InvalidRequiredAcks)
    );

    assert_eq!(
        list_offset(&mut client, 7, "strict", LATEST).offset,
        0,
        "nothing stored"
    );
    let answer = produce(&mut client, 9, "strict", 0, good);
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
}

#[test]
fn unknown_topics_and_partitions_are_answered_per_partition() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "known", 1, &[]);
    let batch = kafka_batch(&records(1, "u", 1), Compression::None, None);
    let answer = produce(&mut client, 9, "unknown", 0, batch.clone());
    assert_eq!(
        answer.error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let answer = produce(&mut client, 9, "known", 5, batch.clone());
    assert_eq!(
        answer.error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    // Produce does not create topics (Kafka creates them on Metadata).
    assert_eq!(
        list_offset(&mut client, 7, "unknown", LATEST).error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let unknown = fetch(&mut client, "unknown", 0, Fetch::default());
    assert_eq!(
        unknown.error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );
    let unknown = fetch(&mut client, "known", 3, Fetch::default());
    assert_eq!(
        unknown.error_code,
        code(ResponseError::UnknownTopicOrPartition)
    );

    // By id (v13): an id this broker never gave.
    let request = produce_request(13, "", Uuid::from_u128(42), 0, batch, -1);
    let response = client.call(13, &request);
    assert_eq!(
        response.responses[0].partition_responses[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
    let partitions = vec![FetchPartition::default().with_partition(0)];
    let request = fetch_request(
        vec![fetch_topic(13, "", Uuid::from_u128(42), partitions)],
        &Fetch::default(),
    );
    let response: FetchResponse = client.call(13, &request);
    assert_eq!(
        response.responses[0].partitions[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
}

#[test]
fn a_fetch_inside_a_batch_gets_the_whole_batch() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "middle", 1, &[]);
    for round in 0..2 {
        let batch = kafka_batch(
            &records(5, &format!("r{round}"), 1),
            Compression::None,
            None,
        );
        assert_eq!(produce(&mut client, 9, "middle", 0, batch).error_code, 0);
    }
    let partition = fetch(
        &mut client,
        "middle",
        0,
        Fetch {
            offset: 7,
            ..Fetch::default()
        },
    );
    let values = fetched_values(&partition);
    assert_eq!(values.first(), Some(&(5, "r1-value-0".to_string())));
    assert_eq!(values.len(), 5);
}

#[test]
fn offsets_out_of_range_say_where_the_log_is() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "range", 1, &[]);
    let batch = kafka_batch(&records(3, "x", 1), Compression::None, None);
    assert_eq!(produce(&mut client, 9, "range", 0, batch).error_code, 0);
    let past = fetch(
        &mut client,
        "range",
        0,
        Fetch {
            offset: 10,
            ..Fetch::default()
        },
    );
    assert_eq!(past.error_code, code(ResponseError::OffsetOutOfRange));
    assert_eq!(past.high_watermark, 3);
    assert_eq!(past.log_start_offset, 0);
    let at_end = fetch(
        &mut client,
        "range",
        0,
        Fetch {
            offset: 3,
            ..Fetch::default()
        },
    );
    assert_eq!(at_end.error_code, 0);
    assert!(fetched_values(&at_end).is_empty());
}

#[test]
fn response_limits_keep_whole_batches_and_always_the_first() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "limits", 2, &[]);
    let value = "v".repeat(1000);
    let big = |round: i32| {
        kafka_batch(
            &[KafkaTestRecord::new(&format!("k{round}"), &value, 1)],
            Compression::None,
            None,
        )
    };
    for partition in 0..2 {
        for round in 0..3 {
            assert_eq!(
                produce(&mut client, 9, "limits", partition, big(round)).error_code,
                0
            );
        }
    }
    let batch_bytes = big(0).len() as i32;
    // A partition limit below one batch still gets the first batch whole.
    let partition = fetch(
        &mut client,
        "limits",
        0,
        Fetch {
            partition_max_bytes: 10,
            ..Fetch::default()
        },
    );
    assert_eq!(fetched_values(&partition).len(), 1);
    // Two batches fit the partition limit; the third does not.
    let partition = fetch(
        &mut client,
        "limits",
        0,
        Fetch {
            partition_max_bytes: 2 * batch_bytes + 10,
            ..Fetch::default()
        },
    );
    assert_eq!(fetched_values(&partition).len(), 2);

    // max_bytes spans partitions: the first partition takes its first batch beyond the limit,
    // the second gets nothing.
    let partitions = (0..2)
        .map(|index| {
            FetchPartition::default()
                .with_partition(index)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    let request = fetch_request(
        vec![fetch_topic(12, "limits", Uuid::nil(), partitions)],
        &Fetch {
            max_bytes: 10,
            ..Fetch::default()
        },
    );
    let response: FetchResponse = client.call(12, &request);
    let answers = &response.responses[0].partitions;
    assert_eq!(fetched_values(&answers[0]).len(), 1);
    assert_eq!(fetched_values(&answers[1]).len(), 0);
    assert_eq!(
        answers[1].high_watermark, 3,
        "an empty answer still says where the log is"
    );
}

#[test]
fn a_long_poll_wakes_on_produce_and_ends_at_max_wait() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "poll", 1, &[]);

    let started = Instant::now();
    let empty = fetch(
        &mut client,
        "poll",
        0,
        Fetch {
            max_wait_ms: 400,
            min_bytes: 1,
            ..Fetch::default()
        },
    );
    let waited = started.elapsed();
    assert!(fetched_values(&empty).is_empty());
    assert!(
        waited >= Duration::from_millis(350),
        "returned after {waited:?}"
    );

    let address = broker.kafka_address();
    let producer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let mut client = KafkaTestClient::connect(address);
        let batch = kafka_batch(&records(2, "late", 1), Compression::None, None);
        produce(&mut client, 9, "poll", 0, batch)
    });
    let started = Instant::now();
    let woken = fetch(
        &mut client,
        "poll",
        0,
        Fetch {
            max_wait_ms: 20_000,
            min_bytes: 1,
            ..Fetch::default()
        },
    );
    let waited = started.elapsed();
    assert_eq!(producer.join().expect("producer").error_code, 0);
    assert_eq!(fetched_values(&woken).len(), 2);
    assert!(
        waited < Duration::from_secs(10),
        "woke only after {waited:?}"
    );
}

#[test]
fn an_incremental_fetch_session_answers_only_what_changed() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "sessions", 2, &[]);
    let partitions = (0..2)
        .map(|index| {
            FetchPartition::default()
                .with_partition(index)
                .with_partition_max_bytes(1 << 20)
        })
        .collect();
    // A full fetch starting a session (epoch 0): every partition, and a session id.
    let mut request = fetch_request(
        vec![fetch_topic(12, "sessions", Uuid::nil(), partitions)],
        &Fetch::default(),
    );
    request.session_epoch = 0;
    let response: FetchResponse = client.call(12, &request);
    assert_eq!(response.error_code, 0);
    assert_ne!(response.session_id, 0);
    assert_eq!(response.responses[0].partitions.len(), 2);
    let session_id = response.session_id;

    // Nothing new: an empty answer without naming any partition.
    let mut incremental = fetch_request(vec![], &Fetch::default());
    incremental.session_id = session_id;
    incremental.session_epoch = 1;
    let response: FetchResponse = client.call(12, &incremental);
    assert_eq!((response.error_code, response.session_id), (0, session_id));
    assert!(response.responses.is_empty(), "{response:?}");

    // Records on partition 1: the next incremental fetch (a long poll) answers only it.
    let batch = kafka_batch(&records(3, "s", 1), Compression::None, None);
    assert_eq!(produce(&mut client, 9, "sessions", 1, batch).error_code, 0);
    incremental.session_epoch = 2;
    incremental.max_wait_ms = 5_000;
    incremental.min_bytes = 1;
    let response: FetchResponse = client.call(12, &incremental);
    let answered = &response.responses[0].partitions;
    assert_eq!(answered.len(), 1);
    assert_eq!(answered[0].partition_index, 1);
    assert_eq!(fetched_values(&answered[0]).len(), 3);

    // The client moves partition 1's offset on; nothing more to say.
    let mut moved = fetch_request(
        vec![fetch_topic(
            12,
            "sessions",
            Uuid::nil(),
            vec![FetchPartition::default()
                .with_partition(1)
                .with_fetch_offset(3)
                .with_partition_max_bytes(1 << 20)],
        )],
        &Fetch::default(),
    );
    moved.session_id = session_id;
    moved.session_epoch = 3;
    let response: FetchResponse = client.call(12, &moved);
    assert!(response.responses.is_empty(), "{response:?}");

    // A repeated epoch, an unknown id, and the end of the session.
    let response: FetchResponse = client.call(12, &moved);
    assert_eq!(
        response.error_code,
        code(ResponseError::InvalidFetchSessionEpoch)
    );
    moved.session_id = session_id ^ 0x55;
    moved.session_epoch = 4;
    let response: FetchResponse = client.call(12, &moved);
    assert_eq!(
        response.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );
    request.session_id = session_id;
    request.session_epoch = -1;
    let response: FetchResponse = client.call(12, &request);
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(response.responses[0].partitions.len(), 2);
    incremental.session_epoch = 4;
    let response: FetchResponse = client.call(12, &incremental);
    assert_eq!(
        response.error_code,
        code(ResponseError::FetchSessionIdNotFound)
    );
}

#[test]
fn without_session_room_a_fetch_is_answered_with_session_id_zero() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        arguments: vec!["--kafka-fetch-sessions-max".into(), "0".into()],
        ..BrokerOptions::default()
    });
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "no-sessions", 1, &[]);
    let partitions = vec![FetchPartition::default()
        .with_partition(0)
        .with_partition_max_bytes(1 << 20)];
    let mut request = fetch_request(
        vec![fetch_topic(12, "no-sessions", Uuid::nil(), partitions)],
        &Fetch::default(),
    );
    request.session_epoch = 0;
    let response: FetchResponse = client.call(12, &request);
    assert_eq!((response.error_code, response.session_id), (0, 0));
    assert_eq!(response.responses[0].partitions[0].error_code, 0);
}

#[test]
fn list_offsets_answers_earliest_latest_max_timestamp_and_by_time() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "times", 1, &[]);
    // Timestamps 1000..1004, then a compressed batch 2000..2004, then 1500..1504.
    for (base, codec) in [
        (1_000, Compression::None),
        (2_000, Compression::Gzip),
        (1_500, Compression::None),
    ] {
        let batch = kafka_batch(&records(5, "t", base), codec, None);
        assert_eq!(produce(&mut client, 9, "times", 0, batch).error_code, 0);
    }
    for version in [1, 4, 7, 10] {
        let earliest = list_offset(&mut client, version, "times", EARLIEST);
        assert_eq!((earliest.error_code, earliest.offset), (0, 0), "v{version}");
        let latest = list_offset(&mut client, version, "times", LATEST);
        assert_eq!((latest.error_code, latest.offset), (0, 15), "v{version}");
        let exact = list_offset(&mut client, version, "times", 1_003);
        assert_eq!((exact.offset, exact.timestamp), (3, 1_003), "v{version}");
        let uncompressed = list_offset(&mut client, version, "times", 1_502);
        assert_eq!(uncompressed.error_code, 0);
        // 1502 is first reached by the compressed batch's first record (2000).
        assert_eq!(
            (uncompressed.offset, uncompressed.timestamp),
            (5, 2_000),
            "v{version}"
        );
        // Inside the compressed batch: the broker inflates it and answers the exact record.
        let inside = list_offset(&mut client, version, "times", 2_002);
        assert_eq!((inside.offset, inside.timestamp), (7, 2_002), "v{version}");
        let none = list_offset(&mut client, version, "times", 9_999);
        assert_eq!((none.error_code, none.offset), (0, -1), "v{version}");
    }
    let max = list_offset(&mut client, 7, "times", MAX_TIMESTAMP);
    assert_eq!(max.error_code, 0);
    assert_eq!(
        (max.offset, max.timestamp),
        (9, 2_004),
        "the record holding the largest timestamp, inside a compressed batch"
    );
    let too_old = list_offset(&mut client, 6, "times", MAX_TIMESTAMP);
    assert_eq!(too_old.error_code, code(ResponseError::UnsupportedVersion));
}

#[test]
fn timestamps_inside_compressed_batches_are_found_to_the_record_with_every_codec() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "packed", 1, &[]);
    let codecs = [
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];
    // Batch n holds 10 records with timestamps 10_000 * (n + 1) + 0..10, offsets 10n..10n+10.
    for (index, codec) in codecs.into_iter().enumerate() {
        let base = 10_000 * (index as i64 + 1);
        let batch = kafka_batch(&records(10, "p", base), codec, None);
        assert_eq!(produce(&mut client, 9, "packed", 0, batch).error_code, 0);
    }
    for (index, codec) in codecs.into_iter().enumerate() {
        let base = 10_000 * (index as i64 + 1);
        for within in [0, 1, 6, 9] {
            let answer = list_offset(&mut client, 10, "packed", base + within);
            assert_eq!(
                (answer.error_code, answer.offset, answer.timestamp),
                (0, index as i64 * 10 + within, base + within),
                "{codec:?}: record {within} of its batch"
            );
        }
    }
    let max = list_offset(&mut client, 10, "packed", MAX_TIMESTAMP);
    assert_eq!((max.offset, max.timestamp), (39, 40_009));
}

#[test]
fn offset_for_leader_epoch_ends_epoch_zero_at_the_high_watermark() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "epochs", 1, &[]);
    let batch = kafka_batch(&records(6, "e", 1), Compression::None, None);
    assert_eq!(produce(&mut client, 9, "epochs", 0, batch).error_code, 0);
    for version in 2..=4 {
        let request = OffsetForLeaderEpochRequest::default().with_topics(vec![
            OffsetForLeaderTopic::default()
                .with_topic(name("epochs"))
                .with_partitions(vec![
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(0)
                        .with_leader_epoch(0),
                    OffsetForLeaderPartition::default()
                        .with_partition(9)
                        .with_leader_epoch(0),
                    OffsetForLeaderPartition::default()
                        .with_partition(0)
                        .with_current_leader_epoch(3)
                        .with_leader_epoch(0),
                ]),
        ]);
        let response = client.call(version, &request);
        let answers = &response.topics[0].partitions;
        assert_eq!(
            (
                answers[0].error_code,
                answers[0].leader_epoch,
                answers[0].end_offset
            ),
            (0, 0, 6)
        );
        assert_eq!(
            answers[1].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        assert_eq!(
            answers[2].error_code,
            code(ResponseError::UnknownLeaderEpoch)
        );
    }
}

#[test]
fn an_idempotent_producer_is_checked_as_on_the_native_path() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "idempotent", 1, &[]);
    let mut identities = Vec::new();
    for version in 0..=5 {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = client.call(version, &request);
        assert_eq!(response.error_code, 0, "v{version}");
        assert!(response.producer_id.0 >= 0);
        identities.push((response.producer_id.0, response.producer_epoch));
    }
    identities.dedup();
    assert_eq!(identities.len(), 6, "each InitProducerId gets its own id");
    let (id, epoch) = identities[0];
    let batch = |sequence: i32, epoch: i16| {
        kafka_batch(
            &records(3, &format!("s{sequence}"), 1),
            Compression::None,
            Some(KafkaProducer {
                id,
                epoch,
                sequence,
            }),
        )
    };
    let first = produce(&mut client, 9, "idempotent", 0, batch(0, epoch));
    assert_eq!((first.error_code, first.base_offset), (0, 0));
    let second = produce(&mut client, 9, "idempotent", 0, batch(3, epoch));
    assert_eq!((second.error_code, second.base_offset), (0, 3));
    // A retry of the first batch: its original offset, no error, nothing appended.
    let retry = produce(&mut client, 9, "idempotent", 0, batch(0, epoch));
    assert_eq!((retry.error_code, retry.base_offset), (0, 0));
    assert_eq!(list_offset(&mut client, 7, "idempotent", LATEST).offset, 6);
    let gap = produce(&mut client, 9, "idempotent", 0, batch(9, epoch));
    assert_eq!(
        gap.error_code,
        code(ResponseError::OutOfOrderSequenceNumber)
    );
    // A newer epoch starts at sequence 0, and fences the older one.
    let newer = produce(&mut client, 9, "idempotent", 0, batch(0, epoch + 1));
    assert_eq!((newer.error_code, newer.base_offset), (0, 6));
    let fenced = produce(&mut client, 9, "idempotent", 0, batch(6, epoch));
    assert_eq!(fenced.error_code, code(ResponseError::InvalidProducerEpoch));
    // InitProducerId with a transactional id: kafka_transactions.rs.
}

#[test]
fn records_survive_a_restart() {
    let mut broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "durable", 1, &[]);
    let batch = kafka_batch(&records(10, "d", 1), Compression::Lz4, None);
    assert_eq!(produce(&mut client, 9, "durable", 0, batch).error_code, 0);
    drop(client);
    // Acknowledged with acks=all: durable, so a kill loses none of it.
    broker.kill();
    broker.restart();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let deadline = Instant::now() + Duration::from_secs(20);
    let partition = loop {
        let partition = fetch(&mut client, "durable", 0, Fetch::default());
        if partition.error_code == 0 || Instant::now() > deadline {
            break partition;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(partition.error_code, 0);
    let values = fetched_values(&partition);
    assert_eq!(values.len(), 10);
    assert_eq!(values[9], (9, "d-value-9".to_string()));
}

#[test]
fn records_written_natively_are_served_as_kafka_batches() {
    let broker = broker();
    let mut native = TestClient::connect(broker.address());
    native.create_topic("mixed", 1, &[]);
    let first = build_batch(&numbered_records(0, 4, 10_000)).freeze();
    assert_eq!(
        native.produce("mixed", 0, Acks::All, vec![first]),
        (ErrorCode::None, 0)
    );
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let kafka = kafka_batch(&records(2, "kafka", 20_000), Compression::Snappy, None);
    assert_eq!(produce(&mut client, 9, "mixed", 0, kafka).base_offset, 4);
    let second = build_batch(&numbered_records(6, 3, 30_000)).freeze();
    assert_eq!(
        native.produce("mixed", 0, Acks::All, vec![second]),
        (ErrorCode::None, 6)
    );

    // Twice: the second read of the native batches comes from the conversion cache.
    for _ in 0..2 {
        let partition = fetch(&mut client, "mixed", 0, Fetch::default());
        assert_eq!(partition.error_code, 0);
        let fetched = kafka_records(&partition.records.clone().expect("records"));
        let seen: Vec<(i64, String, String, i64)> = fetched
            .iter()
            .map(|record| {
                let text = |bytes: &Option<Bytes>| {
                    String::from_utf8(bytes.clone().expect("present").to_vec()).expect("utf-8")
                };
                (
                    record.offset,
                    text(&record.key),
                    text(&record.value),
                    record.timestamp,
                )
            })
            .collect();
        let expected: Vec<(i64, String, String, i64)> = (0..4)
            .map(|n| (n, format!("key-{n}"), format!("value-{n}"), 10_000 + n))
            .chain((0..2).map(|n| {
                (
                    4 + n,
                    format!("kafka-key-{n}"),
                    format!("kafka-value-{n}"),
                    20_000 + n,
                )
            }))
            .chain((6..9).map(|n| (n, format!("key-{n}"), format!("value-{n}"), 30_000 + n)))
            .collect();
        assert_eq!(seen, expected);
    }
    // Inside a native batch: its whole batch, converted.
    let partition = fetch(
        &mut client,
        "mixed",
        0,
        Fetch {
            offset: 7,
            ..Fetch::default()
        },
    );
    assert_eq!(fetched_values(&partition)[0], (6, "value-6".to_string()));
    let by_time = list_offset(&mut client, 7, "mixed", 30_007);
    assert_eq!((by_time.offset, by_time.timestamp), (7, 30_007));
}

#[test]
fn an_idempotent_producer_is_remembered_across_a_kill() {
    let mut broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "remembered", 1, &[]);
    let request = InitProducerIdRequest::default()
        .with_transactional_id(None)
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let identity = client.call(4, &request);
    assert_eq!(identity.error_code, 0);
    let producer = |sequence| {
        Some(KafkaProducer {
            id: identity.producer_id.0,
            epoch: identity.producer_epoch,
            sequence,
        })
    };
    let first = kafka_batch(&records(4, "p", 1), Compression::Zstd, producer(0));
    assert_eq!(
        produce(&mut client, 9, "remembered", 0, first.clone()).base_offset,
        0
    );
    let second = kafka_batch(&records(4, "q", 1), Compression::None, producer(4));
    assert_eq!(
        produce(&mut client, 9, "remembered", 0, second.clone()).base_offset,
        4
    );
    drop(client);
    broker.kill();
    broker.restart();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let deadline = Instant::now() + Duration::from_secs(20);
    // The producer retries its last batches after the crash: the same offsets, nothing added.
    let retried = loop {
        let answer = produce(&mut client, 9, "remembered", 0, second.clone());
        if answer.error_code != code(ResponseError::LeaderNotAvailable) || Instant::now() > deadline
        {
            break answer;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!((retried.error_code, retried.base_offset), (0, 4));
    let retried = produce(&mut client, 9, "remembered", 0, first);
    assert_eq!((retried.error_code, retried.base_offset), (0, 0));
    let next = kafka_batch(&records(1, "r", 1), Compression::None, producer(8));
    assert_eq!(
        produce(&mut client, 9, "remembered", 0, next).base_offset,
        8
    );
    let gap = kafka_batch(&records(1, "s", 1), Compression::None, producer(20));
    assert_eq!(
        produce(&mut client, 9, "remembered", 0, gap).error_code,
        code(ResponseError::OutOfOrderSequenceNumber)
    );
    assert_eq!(list_offset(&mut client, 7, "remembered", LATEST).offset, 9);
}
