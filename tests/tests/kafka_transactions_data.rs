//! End-to-end: the transactional data path of the Kafka listener against the real broker,
//! spoken on the wire with the `kafka-protocol` crate's codecs (`KafkaTestClient`): which
//! transactional produce requests are refused before anything is appended, and what
//! read_committed readers (Fetch, ListOffsets) are answered.
//!
//! The shard-level rules (the last stable offset, aborted lists, verification guards, markers)
//! are tested in `broker/cluster/tests/shard_transactions.rs` on the in-memory disk.

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::PartitionData;
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, ListOffsetsRequest, ProduceRequest,
    ProduceResponse, TopicName, TransactionalId,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::kafka_client::{kafka_batch, kafka_records, KafkaTestRecord};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient};

const LATEST: i64 = -1;
const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

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

fn create_topic(client: &mut KafkaTestClient, topic: &str, partitions: i32) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)]);
    let response = client.call(7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

fn records(count: usize, prefix: &str) -> Vec<KafkaTestRecord> {
    (0..count)
        .map(|index| {
            KafkaTestRecord::new(
                &format!("{prefix}-key-{index}"),
                &format!("{prefix}-value-{index}"),
                1_000 + index as i64,
            )
        })
        .collect()
}

/// A transactional producer's batch of `count` records (Kafka's transactional attribute set),
/// as its producer sends it: offsets from 0, sequences from `sequence`.
fn transactional_batch(
    producer_id: i64,
    producer_epoch: i16,
    sequence: i32,
    count: usize,
    prefix: &str,
) -> Bytes {
    let records: Vec<Record> = records(count, prefix)
        .into_iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: true,
            control: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: sequence + index as i32,
            timestamp: record.timestamp,
            key: record.key.map(Bytes::from),
            value: record.value.map(Bytes::from),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a Kafka batch");
    buffer.freeze()
}

/// A produce request (by topic name) with one batch for each `(partition, records)`.
fn produce_request(
    topic: &str,
    transactional_id: Option<&str>,
    partitions: Vec<(i32, Bytes)>,
) -> ProduceRequest {
    let data = TopicProduceData::default()
        .with_name(name(topic))
        .with_partition_data(
            partitions
                .into_iter()
                .map(|(index, records)| {
                    PartitionProduceData::default()
                        .with_index(index)
                        .with_records(Some(records))
                })
                .collect(),
        );
    ProduceRequest::default()
        .with_transactional_id(transactional_id.map(|id| TransactionalId(text(id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![data])
}

/// Every partition's (index, error code) of a produce answer.
fn produce_codes(response: &ProduceResponse) -> Vec<(i32, i16)> {
    response
        .responses
        .iter()
        .flat_map(|topic| topic.partition_responses.iter())
        .map(|partition| (partition.index, partition.error_code))
        .collect()
}

fn fetch(
    client: &mut KafkaTestClient,
    version: i16,
    topic: &str,
    partition: i32,
    isolation_level: i8,
) -> PartitionData {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(50 << 20)
        .with_isolation_level(isolation_level)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(10 << 20)])]);
    let response: FetchResponse = client.call(version, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    response.responses[0].partitions[0].clone()
}

fn latest(client: &mut KafkaTestClient, version: i16, topic: &str, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(name(topic))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(LATEST)])]);
    let response = client.call(version, &request);
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer.offset
}

#[test]
fn a_transactional_batch_without_a_transactional_id_refuses_the_whole_request() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "no-id", 2);
    for version in [3, 9, 11, 13] {
        let request = produce_request(
            "no-id",
            None,
            vec![
                (0, transactional_batch(7, 0, 0, 2, "txn")),
                (
                    1,
                    kafka_batch(&records(2, "plain"), Compression::None, None),
                ),
            ],
        );
        let request = if version >= 13 {
            // By topic id from v13: the same refusal, before the topic is looked up.
            let mut request = request;
            request.topic_data[0].topic_id = uuid::Uuid::from_u128(1);
            request
        } else {
            request
        };
        let response = client.call(version, &request);
        let refused = ResponseError::TransactionalIdAuthorizationFailed.code();
        assert_eq!(
            produce_codes(&response),
            vec![(0, refused), (1, refused)],
            "v{version}: {response:?}"
        );
    }
    for partition in [0, 1] {
        let answer = fetch(&mut client, 12, "no-id", partition, READ_UNCOMMITTED);
        assert_eq!(answer.high_watermark, 0, "nothing was appended");
    }
}

#[test]
fn transactional_batches_of_two_producers_refuse_the_whole_request() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "two-producers", 2);
    let request = produce_request(
        "two-producers",
        Some("orders-app"),
        vec![
            (0, transactional_batch(7, 0, 0, 1, "first")),
            (1, transactional_batch(8, 0, 0, 1, "second")),
        ],
    );
    let response = client.call(9, &request);
    let refused = ResponseError::InvalidProducerIdMapping.code();
    assert_eq!(
        produce_codes(&response),
        vec![(0, refused), (1, refused)],
        "{response:?}"
    );
    for partition in [0, 1] {
        let answer = fetch(
            &mut client,
            12,
            "two-producers",
            partition,
            READ_UNCOMMITTED,
        );
        assert_eq!(answer.high_watermark, 0, "nothing was appended");
    }
}

#[test]
fn read_committed_without_open_transactions_reads_to_the_high_watermark() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "settled", 1);
    let request = produce_request(
        "settled",
        None,
        vec![(
            0,
            kafka_batch(&records(3, "plain"), Compression::None, None),
        )],
    );
    let response = client.call(9, &request);
    assert_eq!(produce_codes(&response), vec![(0, 0)], "{response:?}");
    // By topic name: up to v12.
    for version in [4, 7, 11, 12] {
        let committed = fetch(&mut client, version, "settled", 0, READ_COMMITTED);
        assert_eq!(committed.high_watermark, 3, "v{version}");
        assert_eq!(committed.last_stable_offset, 3, "v{version}");
        assert_eq!(
            committed.aborted_transactions,
            Some(Vec::new()),
            "v{version}: read_committed gets a list"
        );
        let records = kafka_records(&committed.records.clone().unwrap_or_default());
        assert_eq!(records.len(), 3, "v{version}");
        let uncommitted = fetch(&mut client, version, "settled", 0, READ_UNCOMMITTED);
        assert_eq!(uncommitted.last_stable_offset, 3, "v{version}");
        assert_eq!(
            uncommitted.aborted_transactions, None,
            "v{version}: read_uncommitted gets none"
        );
    }
    for version in [2, 5, 10] {
        assert_eq!(latest(&mut client, version, "settled", READ_COMMITTED), 3);
        assert_eq!(latest(&mut client, version, "settled", READ_UNCOMMITTED), 3);
    }
}
