//! End-to-end: Kafka's transaction coordinator APIs (FindCoordinator for a transactional id,
//! InitProducerId with one, AddPartitionsToTxn old and batched, AddOffsetsToTxn, EndTxn,
//! DescribeTransactions, ListTransactions) against the real broker, spoken on the wire with the
//! `kafka-protocol` crate's encoders (`KafkaTestClient`) at old and new versions: identities and
//! epochs, fencing with each version's error code, commit and abort markers in every partition
//! of a transaction, state that survives a `kill -9` (and an open transaction a new producer
//! aborts after it), and the timer that aborts a transaction past its timeout and fences its
//! producer. Transactional data end to end is `kafka_transactions_data.rs`.

use std::time::{Duration, Instant};

use spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest, FetchRequest,
    FetchResponse, FindCoordinatorRequest, GroupId, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ProducerId, TopicName, TransactionalId,
};
use spate_kafka_protocol::kafka_protocol::messages::{ListOffsetsRequest, ProduceRequest};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::kafka_client::kafka_records;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const TIMEOUT_MS: i32 = 60_000;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn txn_id(value: &str) -> TransactionalId {
    TransactionalId(text(value))
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn broker_with(arguments: &[&str]) -> Broker {
    Broker::start(BrokerOptions {
        arguments: arguments
            .iter()
            .map(|argument| argument.to_string())
            .collect(),
        ..BrokerOptions::default()
    })
}

fn init(
    client: &mut KafkaTestClient,
    version: i16,
    id: &str,
    timeout_ms: i32,
    existing: Option<(i64, i16)>,
) -> InitProducerIdResponse {
    let (producer_id, producer_epoch) = existing.unwrap_or((-1, -1));
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(producer_id))
        .with_producer_epoch(producer_epoch);
    client.call(version, &request)
}

/// InitProducerId until it is not CONCURRENT_TRANSACTIONS (a fenced transaction aborting).
fn init_ok(client: &mut KafkaTestClient, id: &str) -> (i64, i16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let response = init(client, 4, id, TIMEOUT_MS, None);
        if response.error_code == 0 {
            return (response.producer_id.0, response.producer_epoch);
        }
        assert_eq!(
            response.error_code,
            code(ResponseError::ConcurrentTransactions)
        );
        assert!(Instant::now() < deadline, "InitProducerId never succeeded");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// AddPartitionsToTxn v0–3: each partition's code, in request order.
fn add_partitions(
    client: &mut KafkaTestClient,
    version: i16,
    id: &str,
    identity: (i64, i16),
    partitions: &[(&str, i32)],
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id(id))
        .with_v3_and_below_producer_id(ProducerId(identity.0))
        .with_v3_and_below_producer_epoch(identity.1)
        .with_v3_and_below_topics(topics(partitions));
    let response: AddPartitionsToTxnResponse = client.call(version, &request);
    codes(&response.results_by_topic_v3_and_below, partitions)
}

fn topics(partitions: &[(&str, i32)]) -> Vec<AddPartitionsToTxnTopic> {
    let mut topics: Vec<AddPartitionsToTxnTopic> = Vec::new();
    for (topic, partition) in partitions {
        match topics
            .iter_mut()
            .find(|entry| entry.name.as_str() == *topic)
        {
            Some(entry) => entry.partitions.push(*partition),
            None => topics.push(
                AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_partitions(vec![*partition]),
            ),
        }
    }
    topics
}

fn codes(
    results: &[spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_response::AddPartitionsToTxnTopicResult],
    partitions: &[(&str, i32)],
) -> Vec<i16> {
    partitions
        .iter()
        .map(|(topic, partition)| {
            results
                .iter()
                .find(|result| result.name.as_str() == *topic)
                .and_then(|result| {
                    result
                        .results_by_partition
                        .iter()
                        .find(|entry| entry.partition_index == *partition)
                })
                .unwrap_or_else(|| panic!("no answer for {topic}/{partition}"))
                .partition_error_code
        })
        .collect()
}

fn describe(client: &mut KafkaTestClient, id: &str) -> DescribeTransactionsResponse {
    client.call(
        0,
        &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(id)]),
    )
}

fn end(
    client: &mut KafkaTestClient,
    version: i16,
    id: &str,
    identity: (i64, i16),
    commit: bool,
) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_committed(commit);
    client.call(version, &request).error_code
}

#[test]
fn find_coordinator_names_this_broker_for_a_transactional_id() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    for version in [1, 3] {
        let response = client.call(
            version,
            &FindCoordinatorRequest::default()
                .with_key(text("payments"))
                .with_key_type(1),
        );
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(response.node_id.0, 0);
        assert_eq!(response.port, i32::from(broker.kafka_address().port()));
    }
    let response = client.call(
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(1)
            .with_coordinator_keys(vec![text("payments"), text("")]),
    );
    assert_eq!(response.coordinators[0].error_code, 0);
    assert_eq!(
        response.coordinators[1].error_code,
        code(ResponseError::InvalidRequest)
    );
}

#[test]
fn init_producer_id_gives_a_transactional_id_one_producer_id_and_bumps_its_epoch() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let first = init(&mut client, 0, "orders-tx", TIMEOUT_MS, None);
    assert_eq!(first.error_code, 0);
    assert!(first.producer_id.0 >= 0);
    assert_eq!(first.producer_epoch, 0);
    for (version, epoch) in [(1, 1), (2, 2), (5, 3)] {
        let next = init(&mut client, version, "orders-tx", TIMEOUT_MS, None);
        assert_eq!(next.error_code, 0, "v{version}");
        assert_eq!(
            (next.producer_id, next.producer_epoch),
            (first.producer_id, epoch)
        );
    }
    // Another id gets another producer id; an idempotent producer (no id) too.
    let other = init(&mut client, 4, "other-tx", TIMEOUT_MS, None);
    assert_ne!(other.producer_id, first.producer_id);
    let idempotent: InitProducerIdResponse = client.call(
        4,
        &InitProducerIdRequest::default().with_transactional_id(None),
    );
    assert_eq!(idempotent.error_code, 0);
    assert_ne!(idempotent.producer_id, first.producer_id);
    // Refusals.
    let too_long = init(&mut client, 4, "orders-tx", 16 * 60 * 1000, None);
    assert_eq!(
        too_long.error_code,
        code(ResponseError::InvalidTransactionTimeout)
    );
    assert_eq!(too_long.producer_id.0, -1);
    let zero = init(&mut client, 4, "orders-tx", 0, None);
    assert_eq!(
        zero.error_code,
        code(ResponseError::InvalidTransactionTimeout)
    );
    let empty = init(&mut client, 4, "", TIMEOUT_MS, None);
    assert_eq!(empty.error_code, code(ResponseError::InvalidRequest));
}

#[test]
fn kip_360_bumps_with_the_producers_identity_and_fences_a_stale_one_by_version() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let (producer_id, epoch) = init_ok(&mut client, "bump-tx");
    let bumped = init(
        &mut client,
        3,
        "bump-tx",
        TIMEOUT_MS,
        Some((producer_id, epoch)),
    );
    assert_eq!(bumped.error_code, 0);
    assert_eq!(
        (bumped.producer_id.0, bumped.producer_epoch),
        (producer_id, epoch + 1)
    );
    // The same request again (its answer lost): the same answer.
    let retried = init(
        &mut client,
        3,
        "bump-tx",
        TIMEOUT_MS,
        Some((producer_id, epoch)),
    );
    assert_eq!(
        (retried.producer_id.0, retried.producer_epoch),
        (producer_id, epoch + 1)
    );
    // A stale identity: INVALID_PRODUCER_EPOCH before v4, PRODUCER_FENCED from v4.
    let stale = Some((producer_id, epoch + 5));
    assert_eq!(
        init(&mut client, 3, "bump-tx", TIMEOUT_MS, stale).error_code,
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        init(&mut client, 4, "bump-tx", TIMEOUT_MS, stale).error_code,
        code(ResponseError::ProducerFenced)
    );
    // Half an identity is not one.
    assert_eq!(
        init(
            &mut client,
            3,
            "bump-tx",
            TIMEOUT_MS,
            Some((producer_id, -1))
        )
        .error_code,
        code(ResponseError::InvalidRequest)
    );
}

#[test]
fn add_partitions_and_offsets_open_a_transaction_and_refuse_wrong_identities() {
    let broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("ledger", 3, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "ledger-tx");
    assert_eq!(
        add_partitions(
            &mut client,
            0,
            "ledger-tx",
            identity,
            &[("ledger", 0), ("ledger", 2)]
        ),
        vec![0, 0]
    );
    // Again (a retry): nothing to add.
    assert_eq!(
        add_partitions(&mut client, 3, "ledger-tx", identity, &[("ledger", 0)]),
        vec![0]
    );
    // An unknown topic or partition fails alone; the rest is not attempted.
    let unknown = add_partitions(
        &mut client,
        3,
        "ledger-tx",
        identity,
        &[("ledger", 1), ("ledger", 9), ("missing", 0)],
    );
    let not_attempted = code(ResponseError::OperationNotAttempted);
    let unknown_code = code(ResponseError::UnknownTopicOrPartition);
    assert_eq!(unknown, vec![not_attempted, unknown_code, unknown_code]);
    // The offsets of a group join the transaction.
    let add_offsets = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id("ledger-tx"))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_group_id(GroupId(text("ledger-readers")));
    assert_eq!(client.call(3, &add_offsets).error_code, 0);

    let described = describe(&mut client, "ledger-tx");
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, 0);
    assert_eq!(state.transaction_state.as_str(), "Ongoing");
    assert_eq!((state.producer_id.0, state.producer_epoch), identity);
    assert_eq!(state.transaction_timeout_ms, TIMEOUT_MS);
    assert!(state.transaction_start_time_ms > 0);
    let ledger = state
        .topics
        .iter()
        .find(|topic| topic.topic.as_str() == "ledger")
        .expect("the data partitions are described");
    assert_eq!(ledger.partitions, vec![0, 2]);
    assert!(
        state
            .topics
            .iter()
            .any(|topic| topic.topic.as_str() == "__consumer_offsets")
            || broker_has_no_offsets_topic(&mut client),
        "the group's offsets partition is described once the offsets topic exists"
    );

    // Wrong identities, by version.
    let other_id = (identity.0 + 1000, identity.1);
    assert_eq!(
        add_partitions(&mut client, 3, "ledger-tx", other_id, &[("ledger", 1)]),
        vec![code(ResponseError::InvalidProducerIdMapping)]
    );
    let stale = (identity.0, identity.1 + 1);
    assert_eq!(
        add_partitions(&mut client, 1, "ledger-tx", stale, &[("ledger", 1)]),
        vec![code(ResponseError::InvalidProducerEpoch)]
    );
    assert_eq!(
        add_partitions(&mut client, 2, "ledger-tx", stale, &[("ledger", 1)]),
        vec![code(ResponseError::ProducerFenced)]
    );
    assert_eq!(
        add_partitions(&mut client, 3, "unknown-tx", identity, &[("ledger", 1)]),
        vec![code(ResponseError::InvalidProducerIdMapping)]
    );
    assert_eq!(
        end(&mut client, 1, "ledger-tx", stale, true),
        code(ResponseError::InvalidProducerEpoch)
    );
    assert_eq!(
        end(&mut client, 3, "ledger-tx", stale, true),
        code(ResponseError::ProducerFenced)
    );
}

/// DescribeTransactions lists groups as the offsets topic's partition only once that topic
/// exists (a group's first commit or join creates it).
fn broker_has_no_offsets_topic(client: &mut KafkaTestClient) -> bool {
    use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use spate_kafka_protocol::kafka_protocol::messages::MetadataRequest;
    let response = client.call(
        9,
        &MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(text("__consumer_offsets"))))]))
            .with_allow_auto_topic_creation(false),
    );
    response.topics[0].error_code != 0
}

#[test]
fn batched_add_partitions_verifies_without_adding() {
    let broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("audit", 2, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "audit-tx");
    let transaction = |verify_only: bool, partitions: &[(&str, i32)]| {
        AddPartitionsToTxnTransaction::default()
            .with_transactional_id(txn_id("audit-tx"))
            .with_producer_id(ProducerId(identity.0))
            .with_producer_epoch(identity.1)
            .with_verify_only(verify_only)
            .with_topics(topics(partitions))
    };
    let call = |client: &mut KafkaTestClient,
                version: i16,
                verify_only: bool,
                partitions: &[(&str, i32)]| {
        let response: AddPartitionsToTxnResponse = client.call(
            version,
            &AddPartitionsToTxnRequest::default()
                .with_transactions(vec![transaction(verify_only, partitions)]),
        );
        assert_eq!(response.error_code, 0);
        assert_eq!(response.results_by_transaction.len(), 1);
        codes(
            &response.results_by_transaction[0].topic_results,
            partitions,
        )
    };
    // Nothing added yet: not in the transaction (v4: INVALID_TXN_STATE, v5 TRANSACTION_ABORTABLE).
    assert_eq!(
        call(&mut client, 4, true, &[("audit", 0)]),
        vec![code(ResponseError::InvalidTxnState)]
    );
    assert_eq!(
        call(&mut client, 5, true, &[("audit", 0)]),
        vec![code(ResponseError::TransactionAbortable)]
    );
    assert_eq!(call(&mut client, 5, false, &[("audit", 0)]), vec![0]);
    assert_eq!(
        call(&mut client, 5, true, &[("audit", 0), ("audit", 1)]),
        vec![0, code(ResponseError::TransactionAbortable)]
    );
    let described = describe(&mut client, "audit-tx");
    assert_eq!(
        described.transaction_states[0].topics[0].partitions,
        vec![0]
    );
}

#[test]
fn end_txn_without_an_open_transaction_is_an_invalid_state_and_listing_filters() {
    let broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("events", 1, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let idle = init_ok(&mut client, "idle-tx");
    assert_eq!(
        end(&mut client, 3, "idle-tx", idle, true),
        code(ResponseError::InvalidTxnState)
    );
    let busy = init_ok(&mut client, "busy-tx");
    assert_eq!(
        add_partitions(&mut client, 3, "busy-tx", busy, &[("events", 0)]),
        vec![0]
    );

    let list = |client: &mut KafkaTestClient, version: i16, request: ListTransactionsRequest| {
        let response = client.call(version, &request);
        assert_eq!(response.error_code, 0);
        let mut listed: Vec<(String, String)> = response
            .transaction_states
            .iter()
            .map(|state| {
                (
                    state.transactional_id.as_str().to_string(),
                    state.transaction_state.as_str().to_string(),
                )
            })
            .collect();
        listed.sort();
        (listed, response.unknown_state_filters)
    };
    let (all, _) = list(&mut client, 0, ListTransactionsRequest::default());
    assert_eq!(
        all,
        vec![
            ("busy-tx".to_string(), "Ongoing".to_string()),
            ("idle-tx".to_string(), "Empty".to_string())
        ]
    );
    let (ongoing, unknown) = list(
        &mut client,
        0,
        ListTransactionsRequest::default()
            .with_state_filters(vec![text("Ongoing"), text("Running")]),
    );
    assert_eq!(
        ongoing,
        vec![("busy-tx".to_string(), "Ongoing".to_string())]
    );
    assert_eq!(unknown, vec![text("Running")]);
    let (by_producer, _) = list(
        &mut client,
        1,
        ListTransactionsRequest::default().with_producer_id_filters(vec![ProducerId(idle.0)]),
    );
    assert_eq!(
        by_producer,
        vec![("idle-tx".to_string(), "Empty".to_string())]
    );
    // v1: only transactions started longer ago than the filter.
    let (old, _) = list(
        &mut client,
        1,
        ListTransactionsRequest::default()
            .with_state_filters(vec![text("Ongoing")])
            .with_duration_filter(3_600_000),
    );
    assert!(old.is_empty());
    let unknown_id = describe(&mut client, "never-tx");
    assert_eq!(
        unknown_id.transaction_states[0].error_code,
        code(ResponseError::TransactionalIdNotFound)
    );
}

#[test]
fn transaction_state_survives_a_kill_and_the_next_producer_gets_the_next_epoch() {
    let mut broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("durable", 2, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "durable-tx");
    assert_eq!(
        add_partitions(&mut client, 3, "durable-tx", identity, &[("durable", 1)]),
        vec![0]
    );
    broker.kill();
    broker.restart();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let described = describe(&mut client, "durable-tx");
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, 0);
    assert_eq!(state.transaction_state.as_str(), "Ongoing");
    assert_eq!((state.producer_id.0, state.producer_epoch), identity);
    assert_eq!(state.topics[0].partitions, vec![1]);
    // The restarted coordinator still fences by the stored epoch.
    let stale = (identity.0, identity.1 + 1);
    assert_eq!(
        add_partitions(&mut client, 3, "durable-tx", stale, &[("durable", 0)]),
        vec![code(ResponseError::ProducerFenced)]
    );
    // A new producer of the id: the same producer id, a later epoch.
    // A new producer of the id fences the open transaction: it is aborted at a bumped epoch
    // (its marker written to the partition the restarted broker holds), and the new producer
    // gets the epoch after that.
    let next = init_ok(&mut client, "durable-tx");
    assert_eq!(next, (identity.0, identity.1 + 2));
    assert_eq!(state_of(&mut client, "durable-tx"), "Empty");
    let (records, high_watermark) = read_all(&mut client, "durable", 1);
    assert_eq!(high_watermark, 1);
    assert!(records[0].1);
    assert_eq!(
        marker_type(&records[0].2),
        0,
        "the fenced transaction was aborted"
    );
    // The old producer is fenced.
    assert_eq!(
        add_partitions(&mut client, 3, "durable-tx", identity, &[("durable", 0)]),
        vec![code(ResponseError::ProducerFenced)]
    );
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let broker = broker_with(&["--txn-timer-tick-ms", "50"]);
    TestClient::connect(broker.address()).create_topic("slow", 1, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let response = init(&mut client, 4, "slow-tx", 500, None);
    assert_eq!(response.error_code, 0);
    let identity = (response.producer_id.0, response.producer_epoch);
    assert_eq!(
        add_partitions(&mut client, 3, "slow-tx", identity, &[("slow", 0)]),
        vec![0]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let aborted = loop {
        let described = describe(&mut client, "slow-tx");
        let state = described.transaction_states[0].clone();
        if state.transaction_state.as_str() != "Ongoing" {
            break state;
        }
        assert!(Instant::now() < deadline, "the transaction never timed out");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        matches!(
            aborted.transaction_state.as_str(),
            "PrepareAbort" | "CompleteAbort"
        ),
        "{aborted:?}"
    );
    assert_eq!(
        aborted.producer_epoch,
        identity.1 + 1,
        "the abort bumps the epoch"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while state_of(&mut client, "slow-tx") != "CompleteAbort" {
        assert!(
            Instant::now() < deadline,
            "the timed-out abort never completed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (records, _) = read_all(&mut client, "slow", 0);
    assert_eq!(records.len(), 1);
    assert_eq!(marker_type(&records[0].2), 0, "an abort marker");
    assert_eq!(
        end(&mut client, 3, "slow-tx", identity, true),
        code(ResponseError::ProducerFenced)
    );
    assert_eq!(
        add_partitions(&mut client, 3, "slow-tx", identity, &[("slow", 0)]),
        vec![code(ResponseError::ProducerFenced)]
    );
}

/// Every record of a partition from offset 0 (read_uncommitted): (offset, control, key), and
/// the high watermark.
fn read_all(
    client: &mut KafkaTestClient,
    topic: &str,
    partition: i32,
) -> (Vec<(i64, bool, Option<bytes::Bytes>)>, i64) {
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(0)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(text(topic)))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(partition)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = client.call(11, &request);
    let answer = &response.responses[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    let records = answer.records.clone().unwrap_or_default();
    let records = kafka_records(&records)
        .into_iter()
        .map(|record| (record.offset, record.control, record.key))
        .collect();
    (records, answer.high_watermark)
}

/// A control record's type: Kafka's key is a version (0) and the type (0 abort, 1 commit).
fn marker_type(key: &Option<bytes::Bytes>) -> i16 {
    let key = key.as_ref().expect("a control record has a key");
    assert_eq!(&key[..2], &[0, 0], "control key version 0");
    i16::from_be_bytes([key[2], key[3]])
}

fn state_of(client: &mut KafkaTestClient, id: &str) -> String {
    describe(client, id).transaction_states[0]
        .transaction_state
        .as_str()
        .to_string()
}

#[test]
fn commit_and_abort_write_a_marker_to_every_partition_then_complete() {
    let broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("settled", 2, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "settled-tx");
    assert_eq!(
        add_partitions(
            &mut client,
            1,
            "settled-tx",
            identity,
            &[("settled", 0), ("settled", 1)]
        ),
        vec![0, 0]
    );
    assert_eq!(end(&mut client, 1, "settled-tx", identity, true), 0);
    // EndTxn answers once the markers are written and the transaction is complete.
    assert_eq!(state_of(&mut client, "settled-tx"), "CompleteCommit");
    assert!(describe(&mut client, "settled-tx").transaction_states[0]
        .topics
        .is_empty());
    for partition in [0, 1] {
        let (records, high_watermark) = read_all(&mut client, "settled", partition);
        assert_eq!(high_watermark, 1, "one marker in partition {partition}");
        assert_eq!(records.len(), 1);
        assert!(records[0].1, "the marker is a control record");
        assert_eq!(marker_type(&records[0].2), 1, "a commit marker");
    }
    // A retried commit succeeds without writing; an abort now is wrong.
    assert_eq!(end(&mut client, 3, "settled-tx", identity, true), 0);
    assert_eq!(
        end(&mut client, 3, "settled-tx", identity, false),
        code(ResponseError::InvalidTxnState)
    );
    // The next transaction, aborted, touches only partition 0.
    assert_eq!(
        add_partitions(&mut client, 3, "settled-tx", identity, &[("settled", 0)]),
        vec![0]
    );
    assert_eq!(end(&mut client, 3, "settled-tx", identity, false), 0);
    assert_eq!(state_of(&mut client, "settled-tx"), "CompleteAbort");
    let (records, high_watermark) = read_all(&mut client, "settled", 0);
    assert_eq!(high_watermark, 2);
    assert_eq!(marker_type(&records[1].2), 0, "an abort marker");
    assert_eq!(
        read_all(&mut client, "settled", 1).1,
        1,
        "partition 1 was not in it"
    );
    assert_eq!(
        end(&mut client, 3, "settled-tx", identity, false),
        0,
        "a retried abort"
    );
}

/// A transactional producer's batch of `count` records, as the producer sends it.
fn transactional_batch(identity: (i64, i16), sequence: i32, count: usize) -> bytes::Bytes {
    let records: Vec<Record> = (0..count)
        .map(|index| Record {
            transactional: true,
            control: false,
            partition_leader_epoch: -1,
            producer_id: identity.0,
            producer_epoch: identity.1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: sequence + index as i32,
            timestamp: 1_000 + index as i64,
            key: None,
            value: Some(bytes::Bytes::from(format!("value-{sequence}-{index}"))),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = bytes::BytesMut::new();
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

/// Produces one transactional batch to partition 0 of `topic`; the partition's error code.
fn produce_transactional(
    client: &mut KafkaTestClient,
    topic: &str,
    id: &str,
    batch: bytes::Bytes,
) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(id)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = client.call(9, &request);
    response.responses[0].partition_responses[0].error_code
}

/// ListOffsets latest of partition 0: the high watermark (isolation 0) or the last stable
/// offset (isolation 1).
fn latest(client: &mut KafkaTestClient, topic: &str, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id((-1).into())
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response = client.call(5, &request);
    let answer = &response.topics[0].partitions[0];
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer.offset
}

#[test]
fn an_open_transaction_with_data_survives_a_kill_and_its_successor_aborts_it() {
    let mut broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("crash", 1, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "crash-tx");
    assert_eq!(
        add_partitions(&mut client, 3, "crash-tx", identity, &[("crash", 0)]),
        vec![0]
    );
    let batch = transactional_batch(identity, 0, 3);
    assert_eq!(
        produce_transactional(&mut client, "crash", "crash-tx", batch),
        0
    );
    assert_eq!(latest(&mut client, "crash", 0), 3);
    assert_eq!(
        latest(&mut client, "crash", 1),
        0,
        "the open transaction holds the LSO"
    );

    broker.kill();
    broker.restart();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(
        latest(&mut client, "crash", 1),
        0,
        "still open after the crash"
    );
    assert_eq!(state_of(&mut client, "crash-tx"), "Ongoing");

    // A successor fences the zombie: its transaction is aborted, the LSO moves past it.
    let successor = init_ok(&mut client, "crash-tx");
    assert_eq!(successor, (identity.0, identity.1 + 2));
    assert_eq!(
        latest(&mut client, "crash", 1),
        4,
        "3 records and the abort marker"
    );
    let (records, _) = read_all(&mut client, "crash", 0);
    assert_eq!(marker_type(&records[3].2), 0);

    // The zombie can write nothing: not to the aborted transaction, not a new one.
    let late = transactional_batch(identity, 3, 1);
    assert_ne!(
        produce_transactional(&mut client, "crash", "crash-tx", late),
        0
    );
    assert_eq!(
        add_partitions(&mut client, 3, "crash-tx", identity, &[("crash", 0)]),
        vec![code(ResponseError::ProducerFenced)]
    );
    assert_eq!(latest(&mut client, "crash", 0), 4, "nothing was appended");

    // The successor's transaction commits and is read.
    assert_eq!(
        add_partitions(&mut client, 3, "crash-tx", successor, &[("crash", 0)]),
        vec![0]
    );
    let batch = transactional_batch(successor, 0, 2);
    assert_eq!(
        produce_transactional(&mut client, "crash", "crash-tx", batch),
        0
    );
    assert_eq!(end(&mut client, 3, "crash-tx", successor, true), 0);
    assert_eq!(
        latest(&mut client, "crash", 1),
        7,
        "2 records and the commit marker"
    );
}

/// The committed offset of `group` for partition 0 of `topic` (OffsetFetch v7; `require_stable`
/// as asked): (error code of the partition, offset).
fn fetch_committed(
    client: &mut KafkaTestClient,
    group: &str,
    topic: &str,
    require_stable: bool,
) -> (i16, i64) {
    use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use spate_kafka_protocol::kafka_protocol::messages::OffsetFetchRequest;
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text(group)))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partition_indexes(vec![0])]));
    let response = client.call(7, &request);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.committed_offset)
}

fn txn_offset_commit(
    client: &mut KafkaTestClient,
    id: &str,
    identity: (i64, i16),
    group: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    use spate_kafka_protocol::kafka_protocol::messages::txn_offset_commit_request::{
        TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
    };
    use spate_kafka_protocol::kafka_protocol::messages::TxnOffsetCommitRequest;
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(txn_id(id))
        .with_group_id(GroupId(text(group)))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_generation_id(-1)
        .with_member_id(text(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(TopicName(text(topic)))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(offset)
                .with_committed_leader_epoch(-1)])]);
    let response = client.call(3, &request);
    response.topics[0].partitions[0].error_code
}

fn add_offsets(client: &mut KafkaTestClient, id: &str, identity: (i64, i16), group: &str) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(txn_id(id))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_group_id(GroupId(text(group)));
    client.call(3, &request).error_code
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_with_it_and_dropped_with_an_abort() {
    let broker = broker_with(&[]);
    TestClient::connect(broker.address()).create_topic("input", 1, &[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let identity = init_ok(&mut client, "ctp-tx");
    assert_eq!(
        add_offsets(&mut client, "ctp-tx", identity, "processors"),
        0
    );
    assert_eq!(
        txn_offset_commit(&mut client, "ctp-tx", identity, "processors", "input", 42),
        0
    );
    // Pending until the transaction ends: a stable fetch must wait, a plain one sees none.
    assert_eq!(
        fetch_committed(&mut client, "processors", "input", true).0,
        code(ResponseError::UnstableOffsetCommit)
    );
    assert_eq!(end(&mut client, 3, "ctp-tx", identity, true), 0);
    assert_eq!(state_of(&mut client, "ctp-tx"), "CompleteCommit");
    assert_eq!(
        fetch_committed(&mut client, "processors", "input", true),
        (0, 42)
    );

    // An aborted transaction's offsets are dropped.
    assert_eq!(
        add_offsets(&mut client, "ctp-tx", identity, "processors"),
        0
    );
    assert_eq!(
        txn_offset_commit(&mut client, "ctp-tx", identity, "processors", "input", 99),
        0
    );
    assert_eq!(end(&mut client, 3, "ctp-tx", identity, false), 0);
    assert_eq!(state_of(&mut client, "ctp-tx"), "CompleteAbort");
    assert_eq!(
        fetch_committed(&mut client, "processors", "input", true),
        (0, 42)
    );
}
