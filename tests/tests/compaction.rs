//! End-to-end: compacted topics through the real broker, both protocols. Records without a key
//! are refused in a compacted topic (Kafka: INVALID_RECORD; native: InvalidRequest), compressed
//! Kafka batches included, and stored in any other topic.

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use spate_kafka_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, ProduceRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::Compression;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api::Acks;
use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};
use spate_protocol::error::ErrorCode;
use spate_tests::kafka_client::{kafka_batch, KafkaTestRecord};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const PRODUCE_VERSION: i16 = 9;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn kafka_create_topic(client: &mut KafkaTestClient, topic: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(text(topic)))
            .with_num_partitions(1)
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

fn kafka_produce(
    client: &mut KafkaTestClient,
    topic: &str,
    records: Bytes,
) -> PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.call(PRODUCE_VERSION, &request);
    response.responses[0].partition_responses[0].clone()
}

/// A Kafka record; `key`/`value` `None` are null.
fn kafka_record(key: Option<&str>, value: Option<&str>) -> KafkaTestRecord {
    KafkaTestRecord {
        key: key.map(|key| key.as_bytes().to_vec()),
        value: value.map(|value| value.as_bytes().to_vec()),
        timestamp: 1_000,
    }
}

/// A native batch; `key`/`value` `None` are null (a `None` value is a tombstone).
fn native_batch(records: &[(Option<&str>, Option<&str>)]) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for (key, value) in records {
        builder
            .append(
                key.map(str::as_bytes),
                value.map(str::as_bytes),
                NO_HEADERS,
                1_000,
            )
            .expect("record fits");
    }
    builder.seal().expect("batch seals")
}

#[test]
fn keyless_records_are_refused_in_a_compacted_topic_by_both_protocols() {
    let broker = Broker::start(BrokerOptions::default());
    let mut native = TestClient::connect(broker.address());
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    native.create_topic("compacted", 1, &[("cleanup.policy", "compact")]);
    kafka_create_topic(&mut kafka, "both", &[("cleanup.policy", "compact,delete")]);
    native.create_topic("plain", 1, &[]);

    for topic in ["compacted", "both"] {
        // Native: one keyless record among keyed ones refuses the batch, and nothing is stored.
        let batch = native_batch(&[(Some("a"), Some("1")), (None, Some("2"))]);
        let (code, _) = native.produce(topic, 0, Acks::All, vec![batch.freeze()]);
        assert_eq!(
            code,
            ErrorCode::InvalidRequest,
            "native keyless into {topic}"
        );

        // Kafka, uncompressed and with every codec: INVALID_RECORD with Kafka's reason.
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = [
                kafka_record(Some("k"), Some("v")),
                kafka_record(None, Some("w")),
            ];
            let answer = kafka_produce(&mut kafka, topic, kafka_batch(&records, compression, None));
            assert_eq!(
                answer.error_code,
                ResponseError::InvalidRecord.code(),
                "{compression:?} keyless into {topic}: {answer:?}"
            );
            let message = answer.error_message.map(|message| message.to_string());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|message| message.contains("without a key")),
                "{message:?}"
            );
        }
        assert_eq!(
            native.offsets_of(topic, 0),
            (0, 0),
            "{topic} stored nothing"
        );

        // Keyed records, tombstones among them, are stored by both.
        let batch = native_batch(&[(Some("a"), Some("1")), (Some("a"), None)]);
        let (code, offset) = native.produce(topic, 0, Acks::All, vec![batch.freeze()]);
        assert_eq!((code, offset), (ErrorCode::None, 0));
        let records = [
            kafka_record(Some("k"), Some("v")),
            kafka_record(Some("k"), None),
        ];
        let answer = kafka_produce(
            &mut kafka,
            topic,
            kafka_batch(&records, Compression::Lz4, None),
        );
        assert_eq!(
            (answer.error_code, answer.base_offset),
            (0, 2),
            "{answer:?}"
        );
    }

    // A topic that is not compacted takes keyless records from both.
    let batch = native_batch(&[(None, Some("1"))]);
    assert_eq!(
        native
            .produce("plain", 0, Acks::All, vec![batch.freeze()])
            .0,
        ErrorCode::None
    );
    let records = [kafka_record(None, Some("v"))];
    let answer = kafka_produce(
        &mut kafka,
        "plain",
        kafka_batch(&records, Compression::Gzip, None),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
}

#[test]
fn a_compressed_batch_too_large_to_check_is_refused_in_a_compacted_topic() {
    let broker = Broker::start(BrokerOptions {
        arguments: vec!["--kafka-decompressed-bytes-max".into(), "4096".into()],
        ..BrokerOptions::default()
    });
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    kafka_create_topic(&mut kafka, "compacted", &[("cleanup.policy", "compact")]);
    let value = "x".repeat(1000);
    let records: Vec<KafkaTestRecord> = (0..16)
        .map(|index| kafka_record(Some(&format!("key-{index}")), Some(&value)))
        .collect();
    // About 16 KiB inflated, far less compressed: over the 4 KiB the broker may inflate.
    let answer = kafka_produce(
        &mut kafka,
        "compacted",
        kafka_batch(&records, Compression::Gzip, None),
    );
    assert_eq!(
        answer.error_code,
        ResponseError::InvalidRecord.code(),
        "{answer:?}"
    );
    let message = answer.error_message.map(|message| message.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|message| message.contains("4096")),
        "{message:?}"
    );
    // The same records uncompressed are checked in place, whatever their size.
    let answer = kafka_produce(
        &mut kafka,
        "compacted",
        kafka_batch(&records, Compression::None, None),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
}
