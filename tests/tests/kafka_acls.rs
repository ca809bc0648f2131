//! Authorization on the Kafka listener (issue #17): CreateAcls, DescribeAcls and DeleteAcls
//! round trips and their durability across a restart; the negative matrix (an authenticated
//! user without ACLs gets Kafka's code from every API it tries, nothing is written, created or
//! revealed); deny over allow, a prefixed ACL, the super user, and an ACL removed while the
//! connection stays open; kcat (librdkafka) producing without and with the Write ACL.
//!
//! Each broker requires SASL on its Kafka listener, so authorization is on (`authorization =
//! auto`), with `User:admin` as its super user. The admin user is created offline as an
//! operator would (`spate-broker user create`); admin then creates the other users over Kafka
//! (AlterUserScramCredentials), which only a principal allowed Alter on the cluster may do. The
//! native listener stays without SASL, so the test reads the topics back through it to prove
//! nothing was written.
//!
//! Needs `kcat` on the PATH for its one test (`apt-get install kcat`).

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use spate_kafka_protocol::kafka_protocol::messages::alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use spate_kafka_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_kafka_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use spate_kafka_protocol::kafka_protocol::messages::list_offsets_request::{
    ListOffsetsPartition, ListOffsetsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterConfigsRequest, AlterUserScramCredentialsRequest, CreateAclsRequest, CreateAclsResponse,
    CreateTopicsRequest, DeleteAclsRequest, DeleteAclsResponse, DeleteTopicsRequest,
    DescribeAclsRequest, DescribeAclsResponse, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeGroupsRequest, FetchRequest, FindCoordinatorRequest, GroupId, InitProducerIdRequest,
    JoinGroupRequest, ListOffsetsRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest,
    OffsetFetchRequest, ProduceRequest, ProducerId, SaslAuthenticateRequest, SaslHandshakeRequest,
    TopicName, TransactionalId,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::Compression;
use spate_protocol::api::ListTopicsRequest;
use spate_security::{encode_plain, ScramCredential, ScramMechanism};
use spate_tests::broker_process::broker_binary;
use spate_tests::kafka_client::{kafka_batch, KafkaTestRecord};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-secret";

// Kafka's error codes.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const GROUP_AUTHORIZATION_FAILED: i16 = 30;
const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;
const INVALID_REQUEST: i16 = 42;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const SECURITY_DISABLED: i16 = 54;

// Kafka's ACL codes.
const ANY: i8 = 1;
const MATCH: i8 = 2;
const LITERAL: i8 = 3;
const PREFIXED: i8 = 4;
const TOPIC: i8 = 2;
const GROUP: i8 = 3;
const CLUSTER: i8 = 4;
const READ: i8 = 3;
const WRITE: i8 = 4;
const CREATE: i8 = 5;
const DESCRIBE: i8 = 8;
const DENY: i8 = 2;
const ALLOW: i8 = 3;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn topic_name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn sasl_options() -> BrokerOptions {
    BrokerOptions {
        shards: 2,
        arguments: vec![
            "--kafka-sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-512".into(),
            // The native listener has no SASL here, so its connections are User:ANONYMOUS, and
            // native requests are authorized too: as a super user it stays the test's own view
            // of what was written, created or deleted.
            "--super-users".into(),
            "User:admin,User:ANONYMOUS".into(),
        ],
        ..BrokerOptions::default()
    }
}

/// A broker with SASL (so authorization) on, `admin` its super user and `alice` a plain user.
fn broker_with_users() -> Broker {
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    broker.terminate();
    let created = Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(broker.data_dir())
        .args(["--name", ADMIN, "--password", ADMIN_PASSWORD])
        .args(["--mechanism", "SCRAM-SHA-512"])
        .output()
        .expect("run spate-broker user create");
    assert!(
        created.status.success(),
        "user create failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    broker.restart_with(sasl_options());
    let mut admin = admin_client(&broker);
    let salt = b"alice-salt-bytes".to_vec();
    let salted = ScramCredential::salted_password(
        ScramMechanism::Sha512,
        ALICE_PASSWORD.as_bytes(),
        &salt,
        4096,
    );
    let answer = admin.call(
        0,
        &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(text(ALICE))
                .with_mechanism(ScramMechanism::Sha512.kafka_type())
                .with_iterations(4096)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted)),
        ]),
    );
    assert_eq!(answer.results[0].error_code, 0, "{answer:?}");
    broker
}

/// A Kafka connection authenticated with PLAIN as `user`.
fn plain_client(address: SocketAddr, user: &str, password: &str) -> KafkaTestClient {
    let mut client = KafkaTestClient::connect(address);
    let handshake = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(text("PLAIN")),
    );
    assert_eq!(handshake.error_code, 0);
    let authenticated = client.call(
        2,
        &SaslAuthenticateRequest::default()
            .with_auth_bytes(Bytes::from(encode_plain(user, password))),
    );
    assert_eq!(
        authenticated.error_code, 0,
        "{user} authenticates: {:?}",
        authenticated.error_message
    );
    client
}

fn admin_client(broker: &Broker) -> KafkaTestClient {
    plain_client(broker.kafka_address(), ADMIN, ADMIN_PASSWORD)
}

fn alice_client(broker: &Broker) -> KafkaTestClient {
    plain_client(broker.kafka_address(), ALICE, ALICE_PASSWORD)
}

fn create_topic(client: &mut KafkaTestClient, topic: &str) -> i16 {
    let response = client.call(
        7,
        &CreateTopicsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(1)
                .with_replication_factor(-1)]),
    );
    response.topics[0].error_code
}

fn creation(
    resource_type: i8,
    name: &str,
    pattern: i8,
    principal: &str,
    operation: i8,
    permission: i8,
) -> AclCreation {
    AclCreation::default()
        .with_resource_type(resource_type)
        .with_resource_name(text(name))
        .with_resource_pattern_type(pattern)
        .with_principal(text(principal))
        .with_host(text("*"))
        .with_operation(operation)
        .with_permission_type(permission)
}

fn create_acls(client: &mut KafkaTestClient, creations: Vec<AclCreation>) -> CreateAclsResponse {
    client.call(3, &CreateAclsRequest::default().with_creations(creations))
}

fn describe_all_acls(client: &mut KafkaTestClient) -> DescribeAclsResponse {
    client.call(3, &any_describe_filter())
}

/// The filter that matches every binding (the codec's defaults are empty strings, not the
/// nulls that mean "any").
fn any_describe_filter() -> DescribeAclsRequest {
    DescribeAclsRequest::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

fn delete_acls(client: &mut KafkaTestClient, filters: Vec<DeleteAclsFilter>) -> DeleteAclsResponse {
    client.call(3, &DeleteAclsRequest::default().with_filters(filters))
}

fn any_delete_filter() -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_principal_filter(None)
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// Every binding a DescribeAcls answer lists, flattened and sorted.
fn described(response: &DescribeAclsResponse) -> Vec<(i8, String, i8, String, i8, i8)> {
    let mut bindings: Vec<_> = response
        .resources
        .iter()
        .flat_map(|resource| {
            resource.acls.iter().map(move |acl| {
                (
                    resource.resource_type,
                    resource.resource_name.to_string(),
                    resource.pattern_type,
                    acl.principal.to_string(),
                    acl.operation,
                    acl.permission_type,
                )
            })
        })
        .collect();
    bindings.sort();
    bindings
}

fn produce_request(topic: &str, value: &str) -> ProduceRequest {
    let records = kafka_batch(
        &[KafkaTestRecord::new("key", value, 1_700_000_000_000)],
        Compression::None,
        None,
    );
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(topic_name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])])
}

/// The code of a one-partition produce.
fn produce(client: &mut KafkaTestClient, topic: &str, value: &str) -> i16 {
    let response = client.call(9, &produce_request(topic, value));
    response.responses[0].partition_responses[0].error_code
}

/// The latest offset of partition 0 of `topic`, asked by `client`: (code, offset).
fn latest_offset(client: &mut KafkaTestClient, topic: &str) -> (i16, i64) {
    let response = client.call(
        7,
        &ListOffsetsRequest::default()
            .with_replica_id((-1).into())
            .with_topics(vec![ListOffsetsTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(vec![ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1)])]),
    );
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.offset)
}

fn metadata(client: &mut KafkaTestClient, topics: Option<&[&str]>) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(true)
        .with_include_topic_authorized_operations(true)
        .with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|topic| MetadataRequestTopic::default().with_name(Some(topic_name(topic))))
                .collect()
        }));
    client.call(12, &request)
}

fn listed_topics(response: &MetadataResponse) -> Vec<(String, i16)> {
    response
        .topics
        .iter()
        .map(|topic| {
            (
                topic
                    .name
                    .as_ref()
                    .map_or(String::new(), |name| name.to_string()),
                topic.error_code,
            )
        })
        .collect()
}

fn native_topic_names(broker: &Broker) -> Vec<String> {
    let mut native = TestClient::connect(broker.address());
    native
        .call(&ListTopicsRequest::default())
        .topics
        .into_iter()
        .map(|topic| topic.name)
        .collect()
}

#[test]
fn acls_round_trip_through_create_describe_and_delete_and_survive_a_restart() {
    let mut broker = broker_with_users();
    let mut admin = admin_client(&broker);
    let created = create_acls(
        &mut admin,
        vec![
            creation(TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW),
            creation(TOPIC, "orders-", PREFIXED, "User:alice", WRITE, ALLOW),
            creation(GROUP, "billing", LITERAL, "User:*", READ, ALLOW),
            creation(
                CLUSTER,
                "kafka-cluster",
                LITERAL,
                "User:alice",
                DESCRIBE,
                DENY,
            ),
            // Each refused alone, as Kafka does: a cluster has one name; an empty name; a host
            // that is not an address; ANY is a filter's word.
            creation(
                CLUSTER,
                "my-cluster",
                LITERAL,
                "User:alice",
                DESCRIBE,
                ALLOW,
            ),
            creation(TOPIC, "", LITERAL, "User:alice", READ, ALLOW),
            creation(TOPIC, "orders", LITERAL, "alice", READ, ALLOW),
            creation(TOPIC, "orders", ANY, "User:alice", READ, ALLOW),
        ],
    );
    let codes: Vec<i16> = created
        .results
        .iter()
        .map(|result| result.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            0,
            0,
            0,
            0,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST,
            INVALID_REQUEST
        ]
    );
    let mut bad_host = creation(TOPIC, "orders", LITERAL, "User:alice", READ, ALLOW);
    bad_host.host = text("not-a-host");
    assert_eq!(
        create_acls(&mut admin, vec![bad_host]).results[0].error_code,
        INVALID_REQUEST
    );

    let all = describe_all_acls(&mut admin);
    assert_eq!(all.error_code, 0);
    let expected = vec![
        (
            TOPIC,
            "orders".to_string(),
            LITERAL,
            "User:alice".to_string(),
            READ,
            ALLOW,
        ),
        (
            TOPIC,
            "orders-".to_string(),
            PREFIXED,
            "User:alice".to_string(),
            WRITE,
            ALLOW,
        ),
        (
            GROUP,
            "billing".to_string(),
            LITERAL,
            "User:*".to_string(),
            READ,
            ALLOW,
        ),
        (
            CLUSTER,
            "kafka-cluster".to_string(),
            LITERAL,
            "User:alice".to_string(),
            DESCRIBE,
            DENY,
        ),
    ];
    let mut sorted = expected.clone();
    sorted.sort();
    assert_eq!(described(&all), sorted);
    // One resource per pattern: the four bindings are four resources.
    assert_eq!(all.resources.len(), 4);

    // MATCH: the bindings that apply to the topic "orders-eu" (the prefixed one only).
    let matching = admin.call(
        3,
        &any_describe_filter()
            .with_resource_type_filter(TOPIC)
            .with_resource_name_filter(Some(text("orders-eu")))
            .with_pattern_type_filter(MATCH),
    );
    assert_eq!(described(&matching), vec![expected[1].clone()]);
    // A filter code that is no value is an invalid request.
    let invalid = admin.call(3, &any_describe_filter().with_resource_type_filter(0));
    assert_eq!(invalid.error_code, INVALID_REQUEST);

    // Durable: the same after a restart.
    broker.terminate();
    broker.restart_with(sasl_options());
    let mut admin = admin_client(&broker);
    assert_eq!(described(&describe_all_acls(&mut admin)), sorted);

    // Deletion by filter answers what it removed; an invalid filter is refused alone.
    let deleted = delete_acls(
        &mut admin,
        vec![
            any_delete_filter().with_principal_filter(Some(text("User:alice"))),
            any_delete_filter().with_operation(0),
        ],
    );
    assert_eq!(deleted.filter_results[0].error_code, 0);
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 3);
    assert_eq!(deleted.filter_results[1].error_code, INVALID_REQUEST);
    assert_eq!(
        described(&describe_all_acls(&mut admin)),
        vec![expected[2].clone()]
    );
    broker.terminate();
    broker.restart_with(sasl_options());
    let mut admin = admin_client(&broker);
    assert_eq!(
        described(&describe_all_acls(&mut admin)),
        vec![expected[2].clone()],
        "the deletion is durable too"
    );
}

#[test]
fn a_user_without_acls_is_refused_everything_and_learns_nothing() {
    let broker = broker_with_users();
    let mut admin = admin_client(&broker);
    assert_eq!(create_topic(&mut admin, "secret"), 0);
    let mut alice = alice_client(&broker);

    // Data: refused per partition, nothing written.
    assert_eq!(
        produce(&mut alice, "secret", "forbidden"),
        TOPIC_AUTHORIZATION_FAILED
    );
    let fetched = alice.call(
        12,
        &FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1024 * 1024)
            .with_topics(vec![FetchTopic::default()
                .with_topic(topic_name("secret"))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_partition_max_bytes(1024 * 1024)])]),
    );
    assert_eq!(
        fetched.responses[0].partitions[0].error_code,
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(
        latest_offset(&mut alice, "secret").0,
        TOPIC_AUTHORIZATION_FAILED
    );

    // Metadata: every topic leaves it out; named, it is refused, and so is a topic that does not
    // exist (not created, not revealed as missing).
    let everything = metadata(&mut alice, None);
    assert!(
        listed_topics(&everything).is_empty(),
        "{:?}",
        listed_topics(&everything)
    );
    let named = metadata(&mut alice, Some(&["secret", "never-made"]));
    assert_eq!(
        listed_topics(&named),
        [
            ("secret".to_string(), TOPIC_AUTHORIZATION_FAILED),
            ("never-made".to_string(), TOPIC_AUTHORIZATION_FAILED)
        ]
    );
    assert!(named.topics[0].partitions.is_empty());

    // Admin APIs.
    assert_eq!(
        create_topic(&mut alice, "alice-topic"),
        TOPIC_AUTHORIZATION_FAILED
    );
    let deleted = alice.call(
        5,
        &DeleteTopicsRequest::default()
            .with_topic_names(vec![topic_name("secret")])
            .with_timeout_ms(10_000),
    );
    assert_eq!(deleted.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);
    let configs = alice.call(
        4,
        &DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(2)
                .with_resource_name(text("secret")),
            DescribeConfigsResource::default()
                .with_resource_type(4)
                .with_resource_name(text("")),
        ]),
    );
    let codes: Vec<i16> = configs
        .results
        .iter()
        .map(|result| result.error_code)
        .collect();
    assert_eq!(
        codes,
        [TOPIC_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED]
    );
    assert!(configs.results[0].configs.is_empty());
    let altered = alice.call(
        2,
        &AlterConfigsRequest::default().with_resources(vec![AlterConfigsResource::default()
            .with_resource_type(2)
            .with_resource_name(text("secret"))
            .with_configs(vec![AlterableConfig::default()
                .with_name(text("retention.ms"))
                .with_value(Some(text("1000")))])]),
    );
    assert_eq!(altered.responses[0].error_code, TOPIC_AUTHORIZATION_FAILED);

    // Groups.
    let joined = alice.call(
        9,
        &JoinGroupRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_protocol_type(text("consumer"))
            .with_protocols(vec![JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(Bytes::new())]),
    );
    assert_eq!(joined.error_code, GROUP_AUTHORIZATION_FAILED);
    let committed = alice.call(
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(text("billing")))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name("secret"))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(5)])]),
    );
    assert_eq!(
        committed.topics[0].partitions[0].error_code,
        GROUP_AUTHORIZATION_FAILED
    );
    let fetched_offsets = alice.call(
        8,
        &OffsetFetchRequest::default().with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(GroupId(text("billing")))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name("secret"))
                .with_partition_indexes(vec![0])]))]),
    );
    assert_eq!(
        fetched_offsets.groups[0].error_code,
        GROUP_AUTHORIZATION_FAILED
    );
    assert!(fetched_offsets.groups[0].topics.is_empty());
    let coordinator = alice.call(
        3,
        &FindCoordinatorRequest::default()
            .with_key(text("billing"))
            .with_key_type(0),
    );
    assert_eq!(coordinator.error_code, GROUP_AUTHORIZATION_FAILED);
    let groups = alice.call(
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![GroupId(text("billing"))])
            .with_include_authorized_operations(true),
    );
    assert_eq!(groups.groups[0].error_code, GROUP_AUTHORIZATION_FAILED);

    // Producers: a transactional id needs Write on it; an idempotent producer IdempotentWrite
    // on the cluster or Write on some topic.
    let transactional = alice.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(text("alice-tx"))))
            .with_transaction_timeout_ms(10_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(
        transactional.error_code,
        TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    );
    let idempotent = alice.call(
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(idempotent.error_code, CLUSTER_AUTHORIZATION_FAILED);

    // The ACL APIs themselves.
    assert_eq!(
        describe_all_acls(&mut alice).error_code,
        CLUSTER_AUTHORIZATION_FAILED
    );
    let grabbed = create_acls(
        &mut alice,
        vec![creation(TOPIC, "*", LITERAL, "User:alice", 2, ALLOW)],
    );
    assert_eq!(grabbed.results[0].error_code, CLUSTER_AUTHORIZATION_FAILED);
    assert!(described(&describe_all_acls(&mut admin)).is_empty());

    // Metadata creates a topic only for a principal allowed Create on it (or the cluster).
    let describe_only = create_acls(
        &mut admin,
        vec![creation(
            TOPIC,
            "made-by-metadata",
            LITERAL,
            "User:alice",
            DESCRIBE,
            ALLOW,
        )],
    );
    assert_eq!(describe_only.results[0].error_code, 0);
    assert_eq!(
        listed_topics(&metadata(&mut alice, Some(&["made-by-metadata"]))),
        [("made-by-metadata".to_string(), TOPIC_AUTHORIZATION_FAILED)]
    );
    assert!(!native_topic_names(&broker).contains(&"made-by-metadata".to_string()));
    let create = create_acls(
        &mut admin,
        vec![creation(
            TOPIC,
            "made-by-metadata",
            LITERAL,
            "User:alice",
            CREATE,
            ALLOW,
        )],
    );
    assert_eq!(create.results[0].error_code, 0);
    assert_eq!(
        listed_topics(&metadata(&mut alice, Some(&["made-by-metadata"]))),
        [("made-by-metadata".to_string(), 0)]
    );
    let removed = delete_acls(&mut admin, vec![any_delete_filter()]);
    assert_eq!(removed.filter_results[0].matching_acls.len(), 2);

    // Nothing else was written, created or deleted.
    assert_eq!(latest_offset(&mut admin, "secret"), (0, 0));
    let topics = native_topic_names(&broker);
    assert!(topics.contains(&"secret".to_string()), "{topics:?}");
    assert!(
        !topics
            .iter()
            .any(|topic| topic == "alice-topic" || topic == "never-made"),
        "{topics:?}"
    );
}

#[test]
fn deny_wins_prefixes_match_and_a_removed_acl_takes_effect_on_the_open_connection() {
    let broker = broker_with_users();
    let mut admin = admin_client(&broker);
    // The super user needs no ACL for anything.
    for topic in ["orders-eu", "orders-us", "payments"] {
        assert_eq!(create_topic(&mut admin, topic), 0);
    }
    assert_eq!(produce(&mut admin, "payments", "by-admin"), 0);
    let cluster = admin.call(
        0,
        &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
    );
    let every_cluster_operation = [5, 7, 8, 9, 10, 11, 12]
        .iter()
        .fold(0, |bits, code| bits | (1 << code));
    assert_eq!(
        cluster.cluster_authorized_operations,
        every_cluster_operation
    );

    let created = create_acls(
        &mut admin,
        vec![
            creation(TOPIC, "orders-", PREFIXED, "User:alice", WRITE, ALLOW),
            creation(TOPIC, "orders-us", LITERAL, "User:alice", WRITE, DENY),
        ],
    );
    assert!(created.results.iter().all(|result| result.error_code == 0));

    let mut alice = alice_client(&broker);
    assert_eq!(
        produce(&mut alice, "orders-eu", "one"),
        0,
        "the prefix allows"
    );
    assert_eq!(
        produce(&mut alice, "orders-us", "two"),
        TOPIC_AUTHORIZATION_FAILED,
        "deny wins over the prefix's allow"
    );
    assert_eq!(
        produce(&mut alice, "payments", "three"),
        TOPIC_AUTHORIZATION_FAILED
    );
    // Write implies Describe (a denied Write leaves Describe to the allow): both orders topics
    // are listed, payments is not; each with the operations alice may do on it.
    let listed = metadata(&mut alice, None);
    let mut names: Vec<(String, i32)> = listed
        .topics
        .iter()
        .map(|topic| {
            (
                topic.name.as_ref().expect("a name").to_string(),
                topic.topic_authorized_operations,
            )
        })
        .collect();
    names.sort();
    let write_describe = (1 << WRITE) | (1 << DESCRIBE);
    assert_eq!(
        names,
        [
            ("orders-eu".to_string(), write_describe),
            ("orders-us".to_string(), 1 << DESCRIBE)
        ]
    );

    // The allow goes while alice's connection stays open: her next request is refused.
    let deleted = delete_acls(
        &mut admin,
        vec![any_delete_filter()
            .with_resource_type_filter(TOPIC)
            .with_pattern_type_filter(PREFIXED)],
    );
    assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
    assert_eq!(
        produce(&mut alice, "orders-eu", "four"),
        TOPIC_AUTHORIZATION_FAILED
    );
    assert_eq!(latest_offset(&mut admin, "orders-eu"), (0, 1));
    assert_eq!(latest_offset(&mut admin, "orders-us"), (0, 0));
    assert_eq!(latest_offset(&mut admin, "payments"), (0, 1));
}

#[test]
fn without_authorization_the_acl_apis_answer_security_disabled() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(describe_all_acls(&mut client).error_code, SECURITY_DISABLED);
    let created = create_acls(
        &mut client,
        vec![creation(
            TOPIC,
            "orders",
            LITERAL,
            "User:alice",
            READ,
            ALLOW,
        )],
    );
    assert_eq!(created.results[0].error_code, SECURITY_DISABLED);
    let deleted = delete_acls(&mut client, vec![any_delete_filter()]);
    assert_eq!(deleted.filter_results[0].error_code, SECURITY_DISABLED);
    // Everything else is allowed, as before ACLs existed.
    assert_eq!(create_topic(&mut client, "open"), 0);
    assert_eq!(produce(&mut client, "open", "value"), 0);
}

fn kcat_produce(broker: &Broker, user: &str, password: &str, topic: &str) -> Output {
    use std::io::Write;
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs kcat on the PATH: apt-get install kcat"
    );
    let mut child = Command::new("kcat")
        .args(["-b", &broker.kafka_address().to_string()])
        .args(["-X", "security.protocol=sasl_plaintext"])
        .args(["-X", "sasl.mechanisms=PLAIN"])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")])
        .args(["-P", "-t", topic, "-X", "acks=all"])
        .args(["-X", "message.timeout.ms=10000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut input = child.stdin.take().expect("kcat's input");
    for line in ["first", "second", "third"] {
        writeln!(input, "{line}").expect("write to kcat");
    }
    drop(input);
    child.wait_with_output().expect("kcat ends")
}

#[test]
fn kcat_produces_only_with_the_write_acl() {
    let broker = broker_with_users();
    let mut admin = admin_client(&broker);
    assert_eq!(create_topic(&mut admin, "kcat-topic"), 0);

    let refused = kcat_produce(&broker, ALICE, ALICE_PASSWORD, "kcat-topic");
    let errors = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(!refused.status.success(), "kcat reports the refusal");
    assert!(
        errors.contains("topic authorization failed")
            || errors.contains("topic_authorization_failed"),
        "librdkafka names the refusal: {errors}"
    );
    assert_eq!(latest_offset(&mut admin, "kcat-topic"), (0, 0));

    let created = create_acls(
        &mut admin,
        vec![creation(
            TOPIC,
            "kcat-topic",
            LITERAL,
            "User:alice",
            WRITE,
            ALLOW,
        )],
    );
    assert_eq!(created.results[0].error_code, 0);
    let produced = kcat_produce(&broker, ALICE, ALICE_PASSWORD, "kcat-topic");
    assert!(
        produced.status.success(),
        "kcat with the Write ACL: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    assert_eq!(latest_offset(&mut admin, "kcat-topic"), (0, 3));
}
