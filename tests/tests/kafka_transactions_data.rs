//! End-to-end: the transactional data path of the Kafka listener against the real broker,
//! spoken on the wire with the `kafka-protocol` crate's codecs (`KafkaTestClient`): which
//! transactional produce requests are refused before anything is appended, and what
//! read_committed readers (Fetch, ListOffsets) are answered.
//!
//! Whole transactions run against the broker's own transaction coordinator (InitProducerId,
//! AddPartitionsToTxn, EndTxn): read_committed readers see committed records only, an open
//! transaction holds the last stable offset (Fetch and ListOffsets), an abort is listed, a
//! produce to a partition the transaction never added is refused, and so is a late batch after
//! the abort (the hanging transaction KIP-890 prevents). The shard-level rules (the last stable
//! offset, aborted lists, verification guards, markers) are tested in
//! `broker/cluster/tests/shard_transactions.rs` on the in-memory disk.

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::AbortedTransaction;
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::PartitionData;
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AddPartitionsToTxnRequest, CreateTopicsRequest, EndTxnRequest, FetchRequest, FetchResponse,
    InitProducerIdRequest, ListOffsetsRequest, MetadataRequest, ProduceRequest, ProduceResponse,
    ProducerId, TopicName, TransactionalId,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::kafka_client::{kafka_batch, kafka_records, KafkaProducer, KafkaTestRecord};
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
    fetch_from(client, version, topic, partition, 0, isolation_level)
}

fn fetch_from(
    client: &mut KafkaTestClient,
    version: i16,
    topic: &str,
    partition: i32,
    offset: i64,
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
                .with_fetch_offset(offset)
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

/// A transactional producer as the broker's coordinator knows it.
struct TransactionalProducer {
    transactional_id: &'static str,
    id: i64,
    epoch: i16,
    /// The next sequence, per partition of topic "ledger" (only partition 0 is written).
    sequence: i32,
}

impl TransactionalProducer {
    fn init(client: &mut KafkaTestClient, transactional_id: &'static str) -> Self {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(text(transactional_id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response = client.call(4, &request);
        assert_eq!(response.error_code, 0, "InitProducerId: {response:?}");
        TransactionalProducer {
            transactional_id,
            id: response.producer_id.0,
            epoch: response.producer_epoch,
            sequence: 0,
        }
    }

    /// AddPartitionsToTxn v3 (the non-batched form librdkafka sends) of `topic`'s `partition`.
    fn add(&self, client: &mut KafkaTestClient, topic: &str, partition: i32) {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(TransactionalId(text(self.transactional_id)))
            .with_v3_and_below_producer_id(ProducerId(self.id))
            .with_v3_and_below_producer_epoch(self.epoch)
            .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
                .with_name(name(topic))
                .with_partitions(vec![partition])]);
        let response = client.call(3, &request);
        let code =
            response.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code;
        assert_eq!(code, 0, "AddPartitionsToTxn: {response:?}");
    }

    fn end(&self, client: &mut KafkaTestClient, commit: bool) {
        let request = EndTxnRequest::default()
            .with_transactional_id(TransactionalId(text(self.transactional_id)))
            .with_producer_id(ProducerId(self.id))
            .with_producer_epoch(self.epoch)
            .with_committed(commit);
        let response = client.call(3, &request);
        assert_eq!(response.error_code, 0, "EndTxn: {response:?}");
    }

    /// Produces a transactional batch of `count` records to `topic`/`partition` at `version`;
    /// the sequence moves on only when it was appended.
    fn produce(
        &mut self,
        client: &mut KafkaTestClient,
        version: i16,
        topic: &str,
        partition: i32,
        count: usize,
    ) -> (i16, Option<String>, i64) {
        let batch = transactional_batch(self.id, self.epoch, self.sequence, count, topic);
        let request = produce_request(topic, Some(self.transactional_id), vec![(partition, batch)]);
        let response = client.call(version, &request);
        let answer = &response.responses[0].partition_responses[0];
        if answer.error_code == 0 {
            self.sequence += count as i32;
        }
        (
            answer.error_code,
            answer
                .error_message
                .as_ref()
                .map(|message| message.to_string()),
            answer.base_offset,
        )
    }
}

/// The offsets of the data records (control records left out) in a fetch answer.
fn data_offsets(partition: &PartitionData) -> Vec<i64> {
    kafka_records(&partition.records.clone().unwrap_or_default())
        .into_iter()
        .filter(|record| !record.control)
        .map(|record| record.offset)
        .collect()
}

#[test]
fn read_committed_readers_see_committed_transactions_and_skip_aborted_ones() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "ledger", 1);
    create_topic(&mut client, "elsewhere", 1);
    let mut producer = TransactionalProducer::init(&mut client, "ledger-app");

    let plain = produce_request(
        "ledger",
        None,
        vec![(
            0,
            kafka_batch(&records(2, "plain"), Compression::None, None),
        )],
    );
    assert_eq!(produce_codes(&client.call(9, &plain)), vec![(0, 0)]);

    // A transaction opens at offset 2 and holds the last stable offset there.
    producer.add(&mut client, "ledger", 0);
    assert_eq!(
        producer.produce(&mut client, 11, "ledger", 0, 3),
        (0, None, 2)
    );
    let committed = fetch(&mut client, 12, "ledger", 0, READ_COMMITTED);
    assert_eq!(committed.high_watermark, 5);
    assert_eq!(committed.last_stable_offset, 2);
    assert_eq!(
        data_offsets(&committed),
        vec![0, 1],
        "nothing of the open transaction"
    );
    let at_the_boundary = fetch_from(&mut client, 12, "ledger", 0, 2, READ_COMMITTED);
    assert_eq!(data_offsets(&at_the_boundary), Vec::<i64>::new());
    let uncommitted = fetch(&mut client, 12, "ledger", 0, READ_UNCOMMITTED);
    assert_eq!(data_offsets(&uncommitted), vec![0, 1, 2, 3, 4]);
    assert_eq!(uncommitted.last_stable_offset, 2);
    assert_eq!(latest(&mut client, 5, "ledger", READ_COMMITTED), 2);
    assert_eq!(latest(&mut client, 5, "ledger", READ_UNCOMMITTED), 5);

    // A partition the transaction never added is refused, as Kafka 4.1 answers each version.
    assert_eq!(
        producer.produce(&mut client, 11, "elsewhere", 0, 1),
        (ResponseError::TransactionAbortable.code(), None, -1)
    );
    assert_eq!(
        producer.produce(&mut client, 10, "elsewhere", 0, 1),
        (
            ResponseError::InvalidTxnState.code(),
            Some("Partition was not added to the transaction".to_string()),
            -1
        )
    );
    assert_eq!(
        fetch(&mut client, 12, "elsewhere", 0, READ_UNCOMMITTED).high_watermark,
        0
    );

    // The commit marker (offset 5) releases the transaction.
    producer.end(&mut client, true);
    let committed = fetch(&mut client, 12, "ledger", 0, READ_COMMITTED);
    assert_eq!(committed.high_watermark, 6);
    assert_eq!(committed.last_stable_offset, 6);
    assert_eq!(data_offsets(&committed), vec![0, 1, 2, 3, 4]);
    assert_eq!(committed.aborted_transactions, Some(Vec::new()));
    assert_eq!(latest(&mut client, 5, "ledger", READ_COMMITTED), 6);

    // A second transaction (offsets 6 and 7) is aborted (marker at 8): read_committed readers
    // are told to drop it.
    producer.add(&mut client, "ledger", 0);
    assert_eq!(
        producer.produce(&mut client, 11, "ledger", 0, 2),
        (0, None, 6)
    );
    producer.end(&mut client, false);
    let aborted = fetch(&mut client, 12, "ledger", 0, READ_COMMITTED);
    assert_eq!(aborted.high_watermark, 9);
    assert_eq!(aborted.last_stable_offset, 9);
    assert_eq!(
        aborted.aborted_transactions,
        Some(vec![AbortedTransaction::default()
            .with_producer_id(ProducerId(producer.id))
            .with_first_offset(6)])
    );
    let past_the_abort = fetch_from(&mut client, 12, "ledger", 0, 9, READ_COMMITTED);
    assert_eq!(past_the_abort.aborted_transactions, Some(Vec::new()));

    // A late batch of the aborted transaction (its partition was not added again) must not
    // open a transaction nobody would end: refused, and the last stable offset stays.
    assert_eq!(
        producer.produce(&mut client, 11, "ledger", 0, 1),
        (ResponseError::TransactionAbortable.code(), None, -1)
    );
    let after = fetch(&mut client, 12, "ledger", 0, READ_COMMITTED);
    assert_eq!((after.high_watermark, after.last_stable_offset), (9, 9));
}

#[test]
fn a_read_committed_long_poll_returns_when_the_transaction_commits() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "polled", 1);
    let mut producer = TransactionalProducer::init(&mut client, "polled-app");
    producer.add(&mut client, "polled", 0);
    assert_eq!(
        producer.produce(&mut client, 11, "polled", 0, 2),
        (0, None, 0)
    );

    let address = broker.kafka_address();
    let started = std::time::Instant::now();
    let poll = std::thread::spawn(move || {
        let mut reader = KafkaTestClient::connect(address);
        let request = FetchRequest::default()
            .with_max_wait_ms(20_000)
            .with_min_bytes(1)
            .with_max_bytes(50 << 20)
            .with_isolation_level(READ_COMMITTED)
            .with_topics(vec![FetchTopic::default()
                .with_topic(name("polled"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(10 << 20)])]);
        let response: FetchResponse = reader.call(12, &request);
        (
            started.elapsed(),
            response.responses[0].partitions[0].clone(),
        )
    });
    // Records past the offset exist, none stable: the poll must wait for the commit.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(
        !poll.is_finished(),
        "the long poll ended without a stable record"
    );
    producer.end(&mut client, true);
    let (elapsed, answer) = poll.join().expect("the poll thread");
    assert!(
        elapsed < std::time::Duration::from_secs(15),
        "the commit marker did not wake the poll ({elapsed:?})"
    );
    assert_eq!(data_offsets(&answer), vec![0, 1]);
    assert_eq!(answer.last_stable_offset, 3);
}

#[test]
fn inside_a_transaction_a_plain_batch_is_refused_and_v12_adds_no_partition() {
    let broker = broker();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    create_topic(&mut client, "strict", 1);
    create_topic(&mut client, "unadded", 1);
    let mut producer = TransactionalProducer::init(&mut client, "strict-app");
    producer.add(&mut client, "strict", 0);
    assert_eq!(
        producer.produce(&mut client, 11, "strict", 0, 1),
        (0, None, 0)
    );

    // The same producer's idempotent but non-transactional batch while its transaction is
    // open: Kafka's INVALID_TXN_STATE, nothing appended.
    let plain = kafka_batch(
        &records(1, "plain"),
        Compression::None,
        Some(KafkaProducer {
            id: producer.id,
            epoch: producer.epoch,
            sequence: producer.sequence,
        }),
    );
    let request = produce_request("strict", Some("strict-app"), vec![(0, plain)]);
    let response = client.call(11, &request);
    assert_eq!(
        produce_codes(&response),
        vec![(0, ResponseError::InvalidTxnState.code())],
        "{response:?}"
    );

    // Produce v12 would add the partition implicitly on a broker that finalizes
    // transaction.version 2; Spate does not, so it is refused as at v11.
    for version in [12, 13] {
        let (code, _, _) = if version == 13 {
            // v13 names topics by id: look it up first.
            let metadata = client.call(
                12,
                &MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default(
                )
                .with_name(Some(name("unadded")))])),
            );
            let batch = transactional_batch(producer.id, producer.epoch, 0, 1, "unadded");
            let mut request = produce_request("unadded", Some("strict-app"), vec![(0, batch)]);
            request.topic_data[0].topic_id = metadata.topics[0].topic_id;
            let response = client.call(13, &request);
            let answer = &response.responses[0].partition_responses[0];
            (answer.error_code, None::<String>, answer.base_offset)
        } else {
            producer.produce(&mut client, version, "unadded", 0, 1)
        };
        assert_eq!(
            code,
            ResponseError::TransactionAbortable.code(),
            "v{version}"
        );
    }
    assert_eq!(
        fetch(&mut client, 12, "unadded", 0, READ_UNCOMMITTED).high_watermark,
        0
    );
    producer.end(&mut client, true);
    let committed = fetch(&mut client, 12, "strict", 0, READ_COMMITTED);
    assert_eq!(data_offsets(&committed), vec![0]);
}
