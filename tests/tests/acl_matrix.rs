//! The rest of the negative authorization matrix (issue #17), for the APIs `kafka_acls.rs` and
//! `native_acls.rs` leave out: an authenticated user without the ACL an API needs gets Kafka's
//! code for it, and nothing is written, deleted or revealed. Kafka: DeleteRecords, OffsetDelete,
//! the cluster operations (ElectLeaders, AlterPartitionReassignments, DescribeConfigs,
//! AlterConfigs and IncrementalAlterConfigs of the broker resource), and the transactional APIs
//! (InitProducerId, AddPartitionsToTxn, a transactional Produce, AddOffsetsToTxn,
//! TxnOffsetCommit, EndTxn, DescribeTransactions, ListTransactions), and the rest of Kafka's
//! APIs with a check (CreatePartitions, DescribeLogDirs, OffsetForLeaderEpoch, SyncGroup,
//! Heartbeat, LeaveGroup, ListGroups, DeleteGroups, OffsetFetch of a topic, DeleteAcls). Native:
//! OffsetFetch, OffsetCommit, OffsetDelete, DeleteRecords, CreatePartitions, the cluster
//! operations and a transaction's offsets, through `spate-client`'s typed errors.
//!
//! Each refusal is followed, where it matters, by the same request with the ACL granted, so
//! that a refusal for another reason (a wrong request, a missing topic) cannot pass for an
//! authorization check. The expected codes are Kafka's (`core/src/main/scala/kafka/server/
//! KafkaApis.scala`, each `handle...Request`, cited per case).
//!
//! `admin` (the super user) and `alice` are created offline (`spate-broker user create`); SASL
//! on both listeners turns authorization on (`authorization = auto`). The test grants ACLs and
//! reads back what was (not) written as `admin`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use spate_client::group::{GroupAdmin, GroupConfig, GroupConsumer};
use spate_client::{
    AclBinding, Client, ClientConfig, ConsumerConfig, Error, NewTopic, OffsetSpec, Operation,
    PatternType, Permission, ProducerConfig, ProducerRecord, ReassignmentTarget, ResourceType,
    SaslMechanism, TopicPartition,
};
use spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use spate_kafka_protocol::kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use spate_kafka_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use spate_kafka_protocol::kafka_protocol::messages::incremental_alter_configs_request as incremental;
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    AlterConfigsRequest, AlterPartitionReassignmentsRequest, BrokerId, DeleteRecordsRequest,
    DescribeConfigsRequest, ElectLeadersRequest, GroupId, IncrementalAlterConfigsRequest,
    InitProducerIdRequest, ListOffsetsRequest, ListPartitionReassignmentsRequest,
    OffsetCommitRequest, OffsetDeleteRequest, OffsetFetchRequest, ProduceRequest, ProducerId,
    SaslAuthenticateRequest, SaslHandshakeRequest, TopicName, TransactionalId,
    TxnOffsetCommitRequest,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use spate_security::encode_plain;
use spate_tests::broker_process::broker_binary;
use spate_tests::kafka_client::{kafka_batch, KafkaTestRecord};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient};

const ADMIN: &str = "admin";
const ALICE: &str = "alice";
const PASSWORD: &str = "a-password-of-sorts";

// Kafka's error codes.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const OPERATION_NOT_ATTEMPTED: i16 = 55;

// Kafka's config resource types.
const BROKER_RESOURCE: i8 = 4;
const BROKER_LOGGER_RESOURCE: i8 = 8;

/// A broker with SASL on both listeners (so authorization on), `admin` its super user and
/// `alice` a user without ACLs, both created offline.
fn secured_broker() -> Broker {
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    broker.terminate();
    for user in [ADMIN, ALICE] {
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(broker.data_dir())
            .args(["--name", user, "--password", PASSWORD])
            .args(["--mechanism", "SCRAM-SHA-512"])
            .output()
            .expect("run spate-broker user create");
        assert!(
            created.status.success(),
            "user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    broker.restart_with(BrokerOptions {
        shards: 2,
        arguments: vec![
            "--sasl-mechanisms".into(),
            "SCRAM-SHA-512".into(),
            "--kafka-sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin".into(),
        ],
        ..BrokerOptions::default()
    });
    broker
}

fn native_client(address: SocketAddr, user: &str) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(20),
        ..ClientConfig::new(address.to_string())
            .with_client_id("spate-acl-matrix")
            .with_sasl(SaslMechanism::ScramSha512, user, PASSWORD)
    };
    Client::new(config).expect("client config is valid")
}

/// A Kafka connection authenticated with PLAIN as `user`.
fn kafka_client(broker: &Broker, user: &str) -> KafkaTestClient {
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let handshake = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(text("PLAIN")),
    );
    assert_eq!(handshake.error_code, 0);
    let authenticated = client.call(
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(encode_plain(user, PASSWORD))),
    );
    assert_eq!(authenticated.error_code, 0, "{user} authenticates");
    client
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn topic_name(value: &str) -> TopicName {
    TopicName(text(value))
}

/// Grants `User:alice` `operation` on the literal resource, as `admin`.
fn grant(admin: &Client, resource_type: ResourceType, name: &str, operation: Operation) {
    let binding = AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern: PatternType::Literal,
        principal: format!("User:{ALICE}"),
        host: "*".to_string(),
        operation,
        permission: Permission::Allow,
    };
    for outcome in admin
        .admin()
        .create_acls(&[binding])
        .wait()
        .expect("create acls")
    {
        outcome.expect("the binding is created");
    }
}

/// Creates a one-partition topic and writes `count` records to it, as `admin`.
fn topic_with_records(admin: &Client, topic: &str, count: usize) {
    admin
        .admin()
        .create_topic(NewTopic::new(topic, 1))
        .wait()
        .expect("the super user creates a topic");
    let producer = admin
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let deliveries: Vec<_> = (0..count)
        .map(|_| {
            producer
                .send_blocking(ProducerRecord::new(topic, b"value").with_partition(0))
                .expect("record accepted")
        })
        .collect();
    for delivery in deliveries {
        delivery.wait().expect("record delivered");
    }
}

/// The (log start, high watermark) of partition 0, asked as `admin` over the native listener.
fn offsets_of(admin: &Client, topic: &str) -> (u64, u64) {
    let offset = |spec| {
        admin
            .admin()
            .list_offsets(topic, Some(&[0]), spec)
            .wait()
            .expect("list offsets as admin")[0]
            .offset
            .expect("an offset")
    };
    (offset(OffsetSpec::Earliest), offset(OffsetSpec::Latest))
}

/// Asserts `error` is the typed authorization error on `resource_type` named `name`.
fn assert_refused(error: &Error, resource_type: ResourceType, name: &str) {
    match error.root() {
        Error::NotAuthorized { resource, .. } => {
            assert_eq!(resource.resource_type, resource_type, "{error}");
            assert_eq!(resource.name, name, "{error}");
        }
        other => panic!("expected an authorization error on {name}, got: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Kafka requests

fn kafka_delete_records(client: &mut KafkaTestClient, topic: &str, before: i64) -> (i16, i64) {
    let response = client.call(
        1,
        &DeleteRecordsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(0)
                    .with_offset(before)])]),
    );
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.low_watermark)
}

/// An OffsetCommit of partition 0 of `topic` outside any generation (a "simple" commit).
fn kafka_commit(client: &mut KafkaTestClient, group: &str, topic: &str, offset: i64) -> i16 {
    let response = client.call(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(offset)])]),
    );
    response.topics[0].partitions[0].error_code
}

/// The group's committed offset of partition 0 of `topic` (-1: none), asked by `client`.
fn kafka_committed(client: &mut KafkaTestClient, group: &str, topic: &str) -> i64 {
    let response = client.call(
        8,
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![0])]))]),
    );
    let group = &response.groups[0];
    assert_eq!(group.error_code, 0, "{group:?}");
    let partition = &group.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    partition.committed_offset
}

/// OffsetDelete of partition 0 of `topic`: (the request's code, the partition's code or `None`
/// when the answer has no partitions).
fn kafka_offset_delete(
    client: &mut KafkaTestClient,
    group: &str,
    topic: &str,
) -> (i16, Option<i16>) {
    let response = client.call(
        0,
        &OffsetDeleteRequest::default()
            .with_group_id(GroupId(text(group)))
            .with_topics(vec![OffsetDeleteRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![
                    OffsetDeleteRequestPartition::default().with_partition_index(0)
                ])]),
    );
    let partition = response
        .topics
        .first()
        .and_then(|topic| topic.partitions.first())
        .map(|partition| partition.error_code);
    (response.error_code, partition)
}

/// A Kafka InitProducerId for `transactional_id`: (code, producer id, epoch).
fn kafka_init(client: &mut KafkaTestClient, transactional_id: &str) -> (i16, i64, i16) {
    let response = client.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(text(transactional_id))))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    (
        response.error_code,
        response.producer_id.0,
        response.producer_epoch,
    )
}

/// AddPartitionsToTxn v3 of partition 0 of each of `topics`: each one's code, in order.
fn kafka_add_partitions(
    client: &mut KafkaTestClient,
    transactional_id: &str,
    identity: (i64, i16),
    topics: &[&str],
) -> Vec<i16> {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(text(transactional_id)))
        .with_v3_and_below_producer_id(ProducerId(identity.0))
        .with_v3_and_below_producer_epoch(identity.1)
        .with_v3_and_below_topics(
            topics
                .iter()
                .map(|topic| {
                    AddPartitionsToTxnTopic::default()
                        .with_name(topic_name(topic))
                        .with_partitions(vec![0])
                })
                .collect(),
        );
    let response: AddPartitionsToTxnResponse = client.call(3, &request);
    topics
        .iter()
        .map(|topic| {
            let result = response
                .results_by_topic_v3_and_below
                .iter()
                .find(|result| result.name.0.as_str() == *topic)
                .expect("an answer per topic");
            result.results_by_partition[0].partition_error_code
        })
        .collect()
}

/// One transactional batch of a record, as a transactional producer sends it.
fn transactional_batch(identity: (i64, i16)) -> Bytes {
    let record = Record {
        transactional: true,
        control: false,
        partition_leader_epoch: -1,
        producer_id: identity.0,
        producer_epoch: identity.1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: 0,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"transactional")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut buffer = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &[record],
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode a Kafka batch");
    buffer.freeze()
}

/// A transactional Produce of `batch` to partition 0 of `topic`; the partition's code.
fn kafka_produce(
    client: &mut KafkaTestClient,
    transactional_id: Option<&str>,
    topic: &str,
    batch: Bytes,
) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(transactional_id.map(|id| TransactionalId(text(id))))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = client.call(9, &request);
    response.responses[0].partition_responses[0].error_code
}

fn kafka_add_offsets(
    client: &mut KafkaTestClient,
    transactional_id: &str,
    identity: (i64, i16),
    group: &str,
) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(text(transactional_id)))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_group_id(GroupId(text(group)));
    client.call(3, &request).error_code
}

fn kafka_txn_offset_commit(
    client: &mut KafkaTestClient,
    transactional_id: &str,
    identity: (i64, i16),
    group: &str,
    topic: &str,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(text(transactional_id)))
        .with_group_id(GroupId(text(group)))
        .with_producer_id(ProducerId(identity.0))
        .with_producer_epoch(identity.1)
        .with_generation_id(-1)
        .with_member_id(text(""))
        .with_topics(vec![TxnOffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![TxnOffsetCommitRequestPartition::default()
                .with_partition_index(0)
                .with_committed_offset(1)
                .with_committed_leader_epoch(-1)])]);
    let response = client.call(3, &request);
    response.topics[0].partitions[0].error_code
}

/// The earliest offset of partition 0 over Kafka (as the super user), to compare with the
/// native figure: both listeners see the same log.
fn kafka_earliest(client: &mut KafkaTestClient, topic: &str) -> i64 {
    let response = client.call(
        7,
        &ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-2)])]),
    );
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "{partition:?}");
    partition.offset
}

// ---------------------------------------------------------------------------------------------
// Kafka

#[test]
fn kafka_delete_records_and_offset_delete_need_delete_and_remove_nothing_without_it() {
    let broker = secured_broker();
    let admin = native_client(broker.address(), ADMIN);
    topic_with_records(&admin, "ledger", 3);
    let mut kafka_admin = kafka_client(&broker, ADMIN);
    let mut alice = kafka_client(&broker, ALICE);

    // DeleteRecords needs Delete on the topic (KafkaApis.handleDeleteRecordsRequest: the others
    // TOPIC_AUTHORIZATION_FAILED with INVALID_LOW_WATERMARK, -1), and Describe is not enough; a
    // topic that does not exist is answered the same, revealing nothing.
    assert_eq!(
        kafka_delete_records(&mut alice, "ledger", 2),
        (TOPIC_AUTHORIZATION_FAILED, -1)
    );
    assert_eq!(
        kafka_delete_records(&mut alice, "never-made", 2),
        (TOPIC_AUTHORIZATION_FAILED, -1)
    );
    grant(&admin, ResourceType::Topic, "ledger", Operation::Describe);
    assert_eq!(
        kafka_delete_records(&mut alice, "ledger", 2),
        (TOPIC_AUTHORIZATION_FAILED, -1)
    );
    assert_eq!(
        offsets_of(&admin, "ledger"),
        (0, 3),
        "the records are there"
    );
    assert_eq!(kafka_earliest(&mut kafka_admin, "ledger"), 0);
    grant(&admin, ResourceType::Topic, "ledger", Operation::Delete);
    assert_eq!(kafka_delete_records(&mut alice, "ledger", 1), (0, 1));
    assert_eq!(offsets_of(&admin, "ledger"), (1, 3));

    // OffsetDelete needs Delete on the group (else GROUP_AUTHORIZATION_FAILED for the request)
    // and Read on each topic (else TOPIC_AUTHORIZATION_FAILED for its partitions):
    // KafkaApis.handleOffsetDeleteRequest.
    assert_eq!(kafka_commit(&mut kafka_admin, "auditors", "ledger", 2), 0);
    assert_eq!(
        kafka_offset_delete(&mut alice, "auditors", "ledger").0,
        GROUP_AUTHORIZATION_FAILED
    );
    grant(&admin, ResourceType::Group, "auditors", Operation::Delete);
    assert_eq!(
        kafka_offset_delete(&mut alice, "auditors", "ledger"),
        (0, Some(TOPIC_AUTHORIZATION_FAILED))
    );
    assert_eq!(
        kafka_committed(&mut kafka_admin, "auditors", "ledger"),
        2,
        "the offset is still committed"
    );
    grant(&admin, ResourceType::Topic, "ledger", Operation::Read);
    assert_eq!(
        kafka_offset_delete(&mut alice, "auditors", "ledger"),
        (0, Some(0))
    );
    assert_eq!(kafka_committed(&mut kafka_admin, "auditors", "ledger"), -1);
}

#[test]
fn kafka_cluster_operations_need_the_cluster_acl_and_change_nothing_without_it() {
    let broker = secured_broker();
    let admin = native_client(broker.address(), ADMIN);
    topic_with_records(&admin, "ledger", 1);
    let mut alice = kafka_client(&broker, ALICE);
    // Alice may do anything to the topic: only the cluster ACL is missing.
    grant(&admin, ResourceType::Topic, "ledger", Operation::All);

    // ElectLeaders: Alter on the cluster, else CLUSTER_AUTHORIZATION_FAILED for the request and
    // each partition named (KafkaApis.handleElectLeaders).
    let elected = alice.call(
        1,
        &ElectLeadersRequest::default()
            .with_election_type(0)
            .with_timeout_ms(10_000)
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic_name("ledger"))
                .with_partitions(vec![0])])),
    );
    assert_eq!(elected.error_code, CLUSTER_AUTHORIZATION_FAILED);
    let partition_codes: Vec<i16> = elected
        .replica_election_results
        .iter()
        .flat_map(|topic| topic.partition_result.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(partition_codes, [CLUSTER_AUTHORIZATION_FAILED]);

    // AlterPartitionReassignments: Alter on the cluster, else CLUSTER_AUTHORIZATION_FAILED
    // (authorizeClusterOperation(request, ALTER) in the handler); nothing starts.
    let reassigned = alice.call(
        0,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name("ledger"))
                .with_partitions(vec![ReassignablePartition::default()
                    .with_partition_index(0)
                    .with_replicas(Some(vec![BrokerId(0)]))])]),
    );
    assert_eq!(reassigned.error_code, CLUSTER_AUTHORIZATION_FAILED);
    // Each partition named carries the code too (AlterPartitionReassignmentsRequest
    // .getErrorResponse).
    let partition_codes: Vec<i16> = reassigned
        .responses
        .iter()
        .flat_map(|topic| topic.partitions.iter().map(|p| p.error_code))
        .collect();
    assert_eq!(partition_codes, [CLUSTER_AUTHORIZATION_FAILED]);
    // Listing them needs Describe on the cluster.
    let listed = alice.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(listed.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert!(listed.topics.is_empty());
    let mut kafka_admin = kafka_client(&broker, ADMIN);
    let listed = kafka_admin.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(listed.error_code, 0);
    assert!(listed.topics.is_empty(), "no reassignment started");

    // The broker and broker-logger config resources: DescribeConfigs and (Incremental)
    // AlterConfigs on the cluster, else CLUSTER_AUTHORIZATION_FAILED per resource
    // (KafkaApis.handleDescribeConfigsRequest, ConfigHelper; handleAlterConfigsRequest and
    // handleIncrementalAlterConfigsRequest, authorizedResources by type).
    let describe_broker = |client: &mut KafkaTestClient| {
        let response = client.call(
            4,
            &DescribeConfigsRequest::default().with_resources(vec![
                DescribeConfigsResource::default()
                    .with_resource_type(BROKER_RESOURCE)
                    .with_resource_name(text("0"))
                    .with_configuration_keys(None),
                DescribeConfigsResource::default()
                    .with_resource_type(BROKER_LOGGER_RESOURCE)
                    .with_resource_name(text("0"))
                    .with_configuration_keys(None),
            ]),
        );
        response
            .results
            .into_iter()
            .map(|result| (result.error_code, result.configs.len()))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        describe_broker(&mut alice),
        [
            (CLUSTER_AUTHORIZATION_FAILED, 0),
            (CLUSTER_AUTHORIZATION_FAILED, 0)
        ]
    );
    let altered = alice.call(
        2,
        &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(BROKER_RESOURCE)
            .with_resource_name(text("0"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(text("log.retention.ms"))
                .with_value(Some(text("1000")))])]),
    );
    assert_eq!(
        altered.responses[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let incremental = alice.call(
        1,
        &IncrementalAlterConfigsRequest::default().with_resources(vec![
            incremental::AlterConfigsResource::default()
                .with_resource_type(BROKER_RESOURCE)
                .with_resource_name(text("0"))
                .with_configs(vec![incremental::AlterableConfig::default()
                    .with_name(text("log.retention.ms"))
                    .with_config_operation(0)
                    .with_value(Some(text("1000")))]),
        ]),
    );
    assert_eq!(
        incremental.responses[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );

    // With DescribeConfigs on the cluster the broker resource is described: the refusal above
    // was the missing ACL, not the request.
    grant(
        &admin,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::DescribeConfigs,
    );
    let described = describe_broker(&mut alice);
    assert_eq!(described[0].0, 0, "{described:?}");
    assert!(described[0].1 > 0, "{described:?}");
    let retention = kafka_admin.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(BROKER_RESOURCE)
            .with_resource_name(text("0"))
            .with_configuration_keys(Some(vec![text("log.retention.ms")]))]),
    );
    let values: Vec<Option<String>> = retention.results[0]
        .configs
        .iter()
        .map(|config| config.value.as_ref().map(|value| value.to_string()))
        .collect();
    assert!(
        !values.contains(&Some("1000".to_string())),
        "the broker config is unchanged: {values:?}"
    );
}

#[test]
fn kafka_transactional_apis_need_the_transactional_id_topic_and_group_acls() {
    let broker = secured_broker();
    let admin = native_client(broker.address(), ADMIN);
    topic_with_records(&admin, "ledger", 1);
    topic_with_records(&admin, "scratch", 0);
    let mut alice = kafka_client(&broker, ALICE);
    let mut kafka_admin = kafka_client(&broker, ADMIN);
    // Alice may write with "alice-tx" and to "scratch"; she may only describe "bob-tx" and
    // "ledger", and nothing on the group.
    grant(
        &admin,
        ResourceType::TransactionalId,
        "alice-tx",
        Operation::Write,
    );
    grant(
        &admin,
        ResourceType::TransactionalId,
        "bob-tx",
        Operation::Describe,
    );
    grant(&admin, ResourceType::Topic, "scratch", Operation::Write);
    grant(&admin, ResourceType::Topic, "ledger", Operation::Describe);

    // InitProducerId: Write on the transactional id (Describe is not enough), else
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED (KafkaApis.handleInitProducerIdRequest).
    assert_eq!(
        kafka_init(&mut alice, "bob-tx").0,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    let (code, producer_id, epoch) = kafka_init(&mut alice, "alice-tx");
    assert_eq!(code, 0);
    let identity = (producer_id, epoch);
    // The super user opens "bob-tx", so that alice's refusals below are not for an unknown id.
    let (code, bob_id, bob_epoch) = kafka_init(&mut kafka_admin, "bob-tx");
    assert_eq!(code, 0);
    let bob = (bob_id, bob_epoch);

    // AddPartitionsToTxn (v3 and below): without Write on the id every partition gets
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED; with it, a topic without Write gets
    // TOPIC_AUTHORIZATION_FAILED and the others OPERATION_NOT_ATTEMPTED, so that nothing of a
    // half-refused request joins the transaction (KafkaApis.handleAddPartitionsToTxnRequest).
    assert_eq!(
        kafka_add_partitions(&mut alice, "bob-tx", bob, &["scratch"]),
        [TRANSACTIONAL_ID_AUTHORIZATION_FAILED]
    );
    assert_eq!(
        kafka_add_partitions(&mut alice, "alice-tx", identity, &["ledger", "scratch"]),
        [TOPIC_AUTHORIZATION_FAILED, OPERATION_NOT_ATTEMPTED]
    );

    // A transactional Produce: Write on the transactional id first (else every partition
    // TRANSACTIONAL_ID_AUTHORIZATION_FAILED), then Write on each topic (else
    // TOPIC_AUTHORIZATION_FAILED): KafkaApis.handleProduceRequest. Nothing is written.
    assert_eq!(
        kafka_produce(
            &mut alice,
            Some("alice-tx"),
            "ledger",
            transactional_batch(identity)
        ),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        kafka_produce(
            &mut alice,
            Some("bob-tx"),
            "scratch",
            transactional_batch(bob)
        ),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(offsets_of(&admin, "ledger"), (0, 1), "nothing was written");
    assert_eq!(offsets_of(&admin, "scratch"), (0, 0), "nothing was written");

    // AddOffsetsToTxn: Write on the id, then Read on the group
    // (KafkaApis.handleAddOffsetsToTxnRequest).
    assert_eq!(
        kafka_add_offsets(&mut alice, "bob-tx", bob, "auditors"),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(
        kafka_add_offsets(&mut alice, "alice-tx", identity, "auditors"),
        GROUP_AUTHORIZATION_FAILED
    );

    // TxnOffsetCommit: Write on the id, Read on the group, Read on each topic; each refusal
    // answers every partition (KafkaApis.handleTxnOffsetCommitRequest). Nothing is committed.
    assert_eq!(
        kafka_txn_offset_commit(&mut alice, "bob-tx", bob, "auditors", "ledger"),
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    assert_eq!(
        kafka_txn_offset_commit(&mut alice, "alice-tx", identity, "auditors", "ledger"),
        GROUP_AUTHORIZATION_FAILED
    );
    grant(&admin, ResourceType::Group, "auditors", Operation::Read);
    assert_eq!(
        kafka_txn_offset_commit(&mut alice, "alice-tx", identity, "auditors", "ledger"),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(kafka_committed(&mut kafka_admin, "auditors", "ledger"), -1);

    // With the ACLs granted, the same requests go through: the refusals were the ACLs.
    grant(&admin, ResourceType::Topic, "ledger", Operation::Write);
    assert_eq!(
        kafka_add_partitions(&mut alice, "alice-tx", identity, &["ledger", "scratch"]),
        [0, 0]
    );
    assert_eq!(
        kafka_produce(
            &mut alice,
            Some("alice-tx"),
            "ledger",
            transactional_batch(identity)
        ),
        0
    );
    assert_eq!(
        kafka_add_offsets(&mut alice, "alice-tx", identity, "auditors"),
        0
    );
    // A plain (non-transactional) produce is unaffected by the transactional ids' ACLs.
    let plain = kafka_batch(
        &[KafkaTestRecord::new("key", "plain", 1_700_000_000_000)],
        Compression::None,
        None,
    );
    assert_eq!(kafka_produce(&mut alice, None, "scratch", plain), 0);
}

#[test]
fn kafka_remaining_apis_refuse_a_user_without_acls_and_reveal_nothing() {
    use spate_kafka_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
    use spate_kafka_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
    use spate_kafka_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
    use spate_kafka_protocol::kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use spate_kafka_protocol::kafka_protocol::messages::{
        CreatePartitionsRequest, DeleteAclsRequest, DeleteGroupsRequest, DescribeLogDirsRequest,
        DescribeTransactionsRequest, EndTxnRequest, HeartbeatRequest, LeaveGroupRequest,
        ListGroupsRequest, ListTransactionsRequest, OffsetForLeaderEpochRequest, SyncGroupRequest,
    };

    let broker = secured_broker();
    let admin = native_client(broker.address(), ADMIN);
    topic_with_records(&admin, "ledger", 1);
    let mut kafka_admin = kafka_client(&broker, ADMIN);
    let mut alice = kafka_client(&broker, ALICE);
    assert_eq!(kafka_commit(&mut kafka_admin, "auditors", "ledger", 1), 0);
    let (code, admin_producer_id, admin_epoch) = kafka_init(&mut kafka_admin, "admin-tx");
    assert_eq!(code, 0);
    // A binding of someone else's, which a refused DeleteAcls must leave.
    grant(&admin, ResourceType::Topic, "elsewhere", Operation::Read);

    // CreatePartitions: Alter on the topic, else TOPIC_AUTHORIZATION_FAILED
    // (KafkaApis.handleCreatePartitionsRequest); the count stays.
    let create_partitions = |client: &mut KafkaTestClient| {
        client
            .call(
                3,
                &CreatePartitionsRequest::default()
                    .with_timeout_ms(10_000)
                    .with_topics(vec![CreatePartitionsTopic::default()
                        .with_name(topic_name("ledger"))
                        .with_count(3)
                        .with_assignments(None)]),
            )
            .results[0]
            .error_code
    };
    assert_eq!(create_partitions(&mut alice), TOPIC_AUTHORIZATION_FAILED);
    let partitions = |admin: &Client| {
        admin
            .admin()
            .describe_topic("ledger")
            .wait()
            .expect("describe")
            .partitions
            .len()
    };
    assert_eq!(partitions(&admin), 1, "no partition was added");

    // DescribeLogDirs: Describe on the cluster, else CLUSTER_AUTHORIZATION_FAILED (v3+) and
    // no directory (KafkaApis.handleDescribeLogDirsRequest).
    let log_dirs = alice.call(4, &DescribeLogDirsRequest::default().with_topics(None));
    assert_eq!(log_dirs.error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert!(log_dirs.results.is_empty(), "{log_dirs:?}");

    // OffsetForLeaderEpoch: Describe on the topic, else TOPIC_AUTHORIZATION_FAILED per
    // partition (KafkaApis.handleOffsetForLeaderEpochRequest).
    let epochs = alice.call(
        4,
        &OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_topics(vec![OffsetForLeaderTopic::default()
                .with_topic(topic_name("ledger"))
                .with_partitions(vec![OffsetForLeaderPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(-1)
                    .with_leader_epoch(0)])]),
    );
    let epoch = &epochs.topics[0].partitions[0];
    assert_eq!(epoch.error_code, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(epoch.end_offset, -1, "{epoch:?}");

    // Transactions: EndTxn needs Write on the id; DescribeTransactions Describe per id
    // (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, nothing of its state); ListTransactions leaves
    // out the ids the principal may not describe (handleEndTxnRequest,
    // handleDescribeTransactionsRequest, handleListTransactionsRequest).
    let ended = alice.call(
        3,
        &EndTxnRequest::default()
            .with_transactional_id(TransactionalId(text("admin-tx")))
            .with_producer_id(ProducerId(admin_producer_id))
            .with_producer_epoch(admin_epoch)
            .with_committed(false),
    );
    assert_eq!(ended.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    let described = alice.call(
        0,
        &DescribeTransactionsRequest::default()
            .with_transactional_ids(vec![TransactionalId(text("admin-tx"))]),
    );
    let state = &described.transaction_states[0];
    assert_eq!(state.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert_ne!(state.producer_id.0, admin_producer_id, "{state:?}");
    let listed_transactions = |client: &mut KafkaTestClient| -> Vec<String> {
        let response = client.call(0, &ListTransactionsRequest::default());
        assert_eq!(response.error_code, 0);
        response
            .transaction_states
            .iter()
            .map(|state| state.transactional_id.0.to_string())
            .collect()
    };
    assert!(listed_transactions(&mut alice).is_empty());
    assert_eq!(listed_transactions(&mut kafka_admin), ["admin-tx"]);

    // Groups: ListGroups leaves out what the principal may not describe; DeleteGroups needs
    // Delete per group; SyncGroup, Heartbeat and LeaveGroup Read on the group; OffsetFetch with
    // the group allowed answers an undescribable topic TOPIC_AUTHORIZATION_FAILED per
    // partition, with no offset (handleListGroupsRequest, handleDeleteGroupsRequest,
    // handleSyncGroupRequest, handleHeartbeatRequest, handleLeaveGroupRequest,
    // handleOffsetFetchRequest).
    let listed_groups = |client: &mut KafkaTestClient| -> Vec<String> {
        let response = client.call(4, &ListGroupsRequest::default());
        assert_eq!(response.error_code, 0);
        response
            .groups
            .iter()
            .map(|group| group.group_id.0.to_string())
            .collect()
    };
    assert!(listed_groups(&mut alice).is_empty());
    assert_eq!(listed_groups(&mut kafka_admin), ["auditors"]);
    let deleted = alice.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![GroupId(text("auditors"))]),
    );
    assert_eq!(deleted.results[0].error_code, GROUP_AUTHORIZATION_FAILED);
    let synced = alice.call(
        5,
        &SyncGroupRequest::default()
            .with_group_id(GroupId(text("auditors")))
            .with_generation_id(1)
            .with_member_id(text("someone"))
            .with_protocol_type(Some(text("consumer")))
            .with_protocol_name(Some(text("range"))),
    );
    assert_eq!(synced.error_code, GROUP_AUTHORIZATION_FAILED);
    let heartbeat = alice.call(
        4,
        &HeartbeatRequest::default()
            .with_group_id(GroupId(text("auditors")))
            .with_generation_id(1)
            .with_member_id(text("someone")),
    );
    assert_eq!(heartbeat.error_code, GROUP_AUTHORIZATION_FAILED);
    let left = alice.call(
        4,
        &LeaveGroupRequest::default()
            .with_group_id(GroupId(text("auditors")))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text("someone"))
            ]),
    );
    assert_eq!(left.error_code, GROUP_AUTHORIZATION_FAILED);
    grant(&admin, ResourceType::Group, "auditors", Operation::Describe);
    let fetched = alice.call(
        8,
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("auditors")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name("ledger"))
                .with_partition_indexes(vec![0])]))]),
    );
    let group = &fetched.groups[0];
    assert_eq!(group.error_code, 0, "{group:?}");
    let partition = &group.topics[0].partitions[0];
    assert_eq!(partition.error_code, TOPIC_AUTHORIZATION_FAILED);
    assert_eq!(partition.committed_offset, -1, "the offset is not revealed");
    assert_eq!(kafka_committed(&mut kafka_admin, "auditors", "ledger"), 1);
    assert_eq!(listed_groups(&mut alice), ["auditors"], "now describable");

    // DeleteAcls: Alter on the cluster, else CLUSTER_AUTHORIZATION_FAILED per filter
    // (AclApis.handleDeleteAcls); nothing is deleted.
    let removed = alice.call(
        1,
        &DeleteAclsRequest::default().with_filters(vec![DeleteAclsFilter::default()
            .with_resource_type_filter(1)
            .with_resource_name_filter(None)
            .with_pattern_type_filter(1)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_operation(1)
            .with_permission_type(1)]),
    );
    assert_eq!(
        removed.filter_results[0].error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    assert!(removed.filter_results[0].matching_acls.is_empty());
    let remaining = admin
        .admin()
        .describe_acls(&spate_client::AclBindingFilter::any())
        .wait()
        .expect("describe acls");
    assert_eq!(remaining.len(), 2, "{remaining:?}");

    // With the ACLs granted the same requests go through.
    grant(&admin, ResourceType::Topic, "ledger", Operation::Alter);
    assert_eq!(create_partitions(&mut alice), 0);
    assert_eq!(partitions(&admin), 3);
    grant(
        &admin,
        ResourceType::Cluster,
        "kafka-cluster",
        Operation::Describe,
    );
    let log_dirs = alice.call(4, &DescribeLogDirsRequest::default().with_topics(None));
    assert_eq!(log_dirs.error_code, 0);
    assert!(!log_dirs.results.is_empty());
    grant(
        &admin,
        ResourceType::TransactionalId,
        "admin-tx",
        Operation::Describe,
    );
    assert_eq!(listed_transactions(&mut alice), ["admin-tx"]);
}

// ---------------------------------------------------------------------------------------------
// Native

#[test]
fn native_offsets_delete_records_and_cluster_operations_are_refused_without_their_acls() {
    let broker = secured_broker();
    let address = broker.address();
    let admin = native_client(address, ADMIN);
    let alice = native_client(address, ALICE);
    topic_with_records(&admin, "ledger", 3);
    let auditors = GroupConsumer::new(
        &admin,
        ConsumerConfig::default(),
        GroupConfig::new("auditors"),
    )
    .expect("group consumer");
    let ledger = TopicPartition::new("ledger", 0);
    auditors
        .commit_offsets(vec![(ledger.clone(), 2)])
        .wait()
        .expect("the super user commits");

    // OffsetFetch: Describe on the group, then on each topic.
    let member = GroupConsumer::new(
        &alice,
        ConsumerConfig::default(),
        GroupConfig::new("auditors"),
    )
    .expect("group consumer");
    let error = member
        .committed(std::slice::from_ref(&ledger))
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Group, "auditors");
    grant(&admin, ResourceType::Group, "auditors", Operation::Describe);
    let error = member
        .committed(std::slice::from_ref(&ledger))
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "ledger");
    grant(&admin, ResourceType::Topic, "ledger", Operation::Describe);
    assert_eq!(
        member
            .committed(std::slice::from_ref(&ledger))
            .wait()
            .expect("with both Describe ACLs alice reads the offset"),
        [Some(2)]
    );

    // OffsetCommit: Read on the group (Describe is not enough), nothing committed.
    let error = member
        .commit_offsets(vec![(ledger.clone(), 3)])
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Group, "auditors");
    // OffsetDelete: Delete on the group.
    let error = GroupAdmin::new(&alice)
        .delete_offsets("auditors", "ledger", Some(&[0]))
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Group, "auditors");
    assert_eq!(
        auditors
            .committed(std::slice::from_ref(&ledger))
            .wait()
            .expect("committed"),
        [Some(2)],
        "neither changed nor deleted"
    );

    // DeleteRecords: Delete on the topic; the records stay.
    let error = alice
        .admin()
        .delete_records("ledger", 0, 2)
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "ledger");
    assert_eq!(
        offsets_of(&admin, "ledger"),
        (0, 3),
        "the records are there"
    );
    grant(&admin, ResourceType::Topic, "ledger", Operation::Delete);
    assert_eq!(
        alice
            .admin()
            .delete_records("ledger", 0, 2)
            .wait()
            .expect("with Delete alice deletes records"),
        2
    );

    // The cluster operations: Alter (elect, reassign) or Describe (list) on the cluster.
    let error = alice
        .admin()
        .elect_preferred_leaders(Some(vec![("ledger".to_string(), vec![0])]))
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    let error = alice
        .admin()
        .alter_reassignments(vec![ReassignmentTarget {
            topic: "ledger".to_string(),
            partition: 0,
            replicas: Some(vec![0]),
        }])
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    let error = alice.admin().list_reassignments().wait().unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    assert!(admin
        .admin()
        .list_reassignments()
        .wait()
        .expect("the super user lists")
        .is_empty());
}

/// The authorization error inside a transaction's abortable error, or the error itself.
fn transaction_cause(error: &Error) -> &Error {
    match error.root() {
        Error::TransactionAbortable { cause } => cause.root(),
        other => other,
    }
}

#[test]
fn native_transactions_and_topic_changes_are_refused_without_their_acls() {
    let broker = secured_broker();
    let address = broker.address();
    let admin = native_client(address, ADMIN);
    let alice = native_client(address, ALICE);
    topic_with_records(&admin, "input", 1);
    topic_with_records(&admin, "output", 0);
    // Alice may run transaction "copier-tx" writing to "output"; the group and "input" are not
    // hers yet.
    grant(
        &admin,
        ResourceType::TransactionalId,
        "copier-tx",
        Operation::Write,
    );
    grant(&admin, ResourceType::Topic, "output", Operation::Write);
    let member = GroupConsumer::new(
        &alice,
        ConsumerConfig::default(),
        GroupConfig::new("copier"),
    )
    .expect("group consumer");
    let input = TopicPartition::new("input", 0);
    let producer = alice
        .producer(ProducerConfig {
            transactional_id: Some("copier-tx".into()),
            ..ProducerConfig::default()
        })
        .expect("producer config is valid");
    producer.init_transactions().wait().expect("init");

    // AddOffsetsToTxn needs Read on the group: the offsets are refused, naming it.
    producer.begin_transaction().expect("begin");
    let error = producer
        .send_offsets_to_transaction(&[(input.clone(), 1)], &member.group_metadata())
        .wait()
        .unwrap_err();
    let cause = transaction_cause(&error);
    match cause {
        Error::NotAuthorized { resource, .. } => {
            assert_eq!(resource.resource_type, ResourceType::Group, "{error}");
            assert_eq!(resource.name, "copier", "{error}");
        }
        other => panic!("expected the group refused, got: {other}"),
    }
    producer.abort_transaction().wait().expect("abort");

    // With Read on the group, TxnOffsetCommit still needs Read on each topic.
    grant(&admin, ResourceType::Group, "copier", Operation::Read);
    producer.begin_transaction().expect("begin");
    let error = producer
        .send_offsets_to_transaction(&[(input.clone(), 1)], &member.group_metadata())
        .wait()
        .unwrap_err();
    match transaction_cause(&error) {
        Error::NotAuthorized { resource, .. } => {
            assert_eq!(resource.resource_type, ResourceType::Topic, "{error}");
            assert_eq!(resource.name, "input", "{error}");
        }
        other => panic!("expected the topic refused, got: {other}"),
    }
    producer.abort_transaction().wait().expect("abort");
    let committed = GroupConsumer::new(
        &admin,
        ConsumerConfig::default(),
        GroupConfig::new("copier"),
    )
    .expect("group consumer")
    .committed(std::slice::from_ref(&input))
    .wait()
    .expect("committed");
    assert_eq!(committed, [None], "nothing was committed");

    // With Read on the topic the same offsets commit with the transaction.
    grant(&admin, ResourceType::Topic, "input", Operation::Read);
    producer.begin_transaction().expect("begin");
    producer
        .send_offsets_to_transaction(&[(input.clone(), 1)], &member.group_metadata())
        .wait()
        .expect("offsets in the transaction");
    producer.commit_transaction().wait().expect("commit");
    assert_eq!(
        member
            .committed(std::slice::from_ref(&input))
            .wait()
            .expect("committed"),
        [Some(1)]
    );

    // Topic changes: CreatePartitions needs Alter on the topic (Write is not enough), and
    // DescribeCluster, DecommissionBroker Describe and Alter on the cluster.
    let error = alice
        .admin()
        .create_partitions("output", 2)
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "output");
    assert_eq!(
        admin
            .admin()
            .describe_topic("output")
            .wait()
            .expect("describe")
            .partitions
            .len(),
        1
    );
    let error = alice.admin().describe_cluster().wait().unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    let error = alice.admin().decommission_broker(0).wait().unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    assert_eq!(
        admin
            .admin()
            .describe_cluster()
            .wait()
            .expect("the super user describes the cluster")
            .brokers
            .len(),
        1,
        "the broker is still there"
    );
}
