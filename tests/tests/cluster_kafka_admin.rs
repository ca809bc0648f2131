//! The Kafka admin APIs on a 3-broker cluster (issue 14), spoken on the wire with the
//! `kafka-protocol` crate's encoders: CreateTopics with an explicit replication factor and with
//! manual replica assignments (through the controller), CreatePartitions with assignments,
//! `min.insync.replicas` as a real topic config (set at creation, by AlterConfigs and
//! IncrementalAlterConfigs, described with its value or its default, a majority of the
//! replication factor; refused above the replication factor), native CreateTopics v1's
//! replication factor, and FindCoordinator for a transactional id creating
//! `__transaction_state` through the controller.

use std::time::Duration;

use spate_kafka_protocol::kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_response::DescribeConfigsResourceResult;
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DescribeConfigsRequest, FindCoordinatorRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, FORMATION_TIMEOUT};
use spate_tests::KafkaTestClient;

const TOPIC: i8 = 2;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const SET: i8 = 0;
const DELETE: i8 = 1;
const KEY_TYPE_TRANSACTION: i8 = 1;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn new_topic(
    topic: &str,
    partitions: i32,
    factor: i16,
    configs: &[(&str, &str)],
) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(factor)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(text(key))
                        .with_value(Some(text(value)))
                })
                .collect(),
        )
}

fn assigned_topic(topic: &str, replicas: &[&[i32]]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(-1)
        .with_replication_factor(-1)
        .with_assignments(
            replicas
                .iter()
                .enumerate()
                .map(|(partition, brokers)| {
                    CreatableReplicaAssignment::default()
                        .with_partition_index(partition as i32)
                        .with_broker_ids(brokers.iter().map(|&id| BrokerId(id)).collect())
                })
                .collect(),
        )
}

fn create(
    kafka: &mut KafkaTestClient,
    topic: CreatableTopic,
    validate_only: bool,
) -> CreatableTopicResult {
    let request = CreateTopicsRequest::default()
        .with_topics(vec![topic])
        .with_timeout_ms(30_000)
        .with_validate_only(validate_only);
    kafka.call(7, &request).topics.remove(0)
}

/// Each partition's replicas as Kafka Metadata lists them (`None`: no such topic).
fn replicas(kafka: &mut KafkaTestClient, topic: &str) -> Option<Vec<Vec<i32>>> {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(name(topic)))
        ]))
        .with_allow_auto_topic_creation(false);
    let answer = kafka.call(12, &request);
    let found = &answer.topics[0];
    if found.error_code != 0 {
        return None;
    }
    let mut partitions: Vec<_> = found.partitions.iter().collect();
    partitions.sort_by_key(|partition| partition.partition_index);
    Some(
        partitions
            .iter()
            .map(|partition| partition.replica_nodes.iter().map(|node| node.0).collect())
            .collect(),
    )
}

fn min_insync(kafka: &mut KafkaTestClient, topic: &str) -> DescribeConfigsResourceResult {
    let request =
        DescribeConfigsRequest::default().with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(text(topic))
            .with_configuration_keys(Some(vec![text("min.insync.replicas")]))]);
    let mut result = kafka.call(4, &request).results.remove(0);
    assert_eq!(result.error_code, 0, "{result:?}");
    assert_eq!(result.configs.len(), 1, "{result:?}");
    result.configs.remove(0)
}

fn described(config: &DescribeConfigsResourceResult) -> (String, i8, bool) {
    (
        config.value.as_deref().unwrap_or_default().to_string(),
        config.config_source,
        config.read_only,
    )
}

fn alter_incrementally(
    kafka: &mut KafkaTestClient,
    topic: &str,
    operation: i8,
    value: &str,
) -> (i16, String) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(text(topic))
            .with_configs(vec![
                incremental_alter_configs_request::AlterableConfig::default()
                    .with_name(text("min.insync.replicas"))
                    .with_config_operation(operation)
                    .with_value(Some(text(value))),
            ]),
    ]);
    let answer = &kafka.call(1, &request).responses[0];
    (
        answer.error_code,
        answer
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string(),
    )
}

fn alter_replacing(kafka: &mut KafkaTestClient, topic: &str, value: &str) -> i16 {
    let request = AlterConfigsRequest::default().with_resources(vec![
        alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(TOPIC)
            .with_resource_name(text(topic))
            .with_configs(vec![alter_configs_request::AlterableConfig::default()
                .with_name(text("min.insync.replicas"))
                .with_value(Some(text(value)))]),
    ]);
    kafka.call(2, &request).responses[0].error_code
}

#[test]
fn kafka_admin_places_replicas_and_keeps_min_insync_replicas_through_the_controller() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);
    let mut kafka = KafkaTestClient::connect(cluster.kafka_address(2));

    // An explicit factor below the default, with min.insync.replicas at creation.
    let created = create(
        &mut kafka,
        new_topic("two-replicas", 3, 2, &[("min.insync.replicas", "2")]),
        false,
    );
    assert_eq!(created.error_code, 0, "{created:?}");
    assert_eq!((created.num_partitions, created.replication_factor), (3, 2));
    let placed = replicas(&mut kafka, "two-replicas").expect("created");
    assert!(
        placed.iter().all(|replicas| replicas.len() == 2),
        "{placed:?}"
    );
    assert_eq!(
        described(&min_insync(&mut kafka, "two-replicas")),
        ("2".into(), SOURCE_TOPIC, false)
    );

    // The default factor (3 of 3 brokers); min.insync.replicas defaults to its majority.
    let created = create(&mut kafka, new_topic("default-replicas", 1, -1, &[]), false);
    assert_eq!(
        (created.error_code, created.replication_factor),
        (0, 3),
        "{created:?}"
    );
    assert_eq!(
        described(&min_insync(&mut kafka, "default-replicas")),
        ("2".into(), SOURCE_DEFAULT, false)
    );

    // Refused: more replicas than brokers; min.insync.replicas above the factor.
    let refused = create(&mut kafka, new_topic("four", 1, 4, &[]), false);
    assert_eq!(
        refused.error_code,
        code(ResponseError::InvalidReplicationFactor),
        "{refused:?}"
    );
    let refused = create(
        &mut kafka,
        new_topic("unmeetable", 1, 2, &[("min.insync.replicas", "3")]),
        false,
    );
    assert_eq!(
        refused.error_code,
        code(ResponseError::InvalidConfig),
        "{refused:?}"
    );
    assert!(replicas(&mut kafka, "four").is_none() && replicas(&mut kafka, "unmeetable").is_none());

    // validate_only checks without creating.
    let validated = create(&mut kafka, new_topic("only-checked", 2, 3, &[]), true);
    assert_eq!(
        (validated.error_code, validated.replication_factor),
        (0, 3),
        "{validated:?}"
    );
    assert!(replicas(&mut kafka, "only-checked").is_none());
    let exists = create(&mut kafka, new_topic("two-replicas", 1, 2, &[]), true);
    assert_eq!(exists.error_code, code(ResponseError::TopicAlreadyExists));

    // A manual assignment: the replica lists as given, first = preferred leader.
    let assignment: &[&[i32]] = &[&[3, 1], &[2, 3], &[1, 2]];
    let created = create(&mut kafka, assigned_topic("assigned", assignment), false);
    assert_eq!(created.error_code, 0, "{created:?}");
    assert_eq!((created.num_partitions, created.replication_factor), (3, 2));
    let expected: Vec<Vec<i32>> = assignment
        .iter()
        .map(|replicas| replicas.to_vec())
        .collect();
    assert_eq!(replicas(&mut kafka, "assigned"), Some(expected.clone()));
    for partition in 0..3u32 {
        let (leader, _) = cluster.wait_for_agreed_leader("assigned", partition, FORMATION_TIMEOUT);
        assert_eq!(
            leader, expected[partition as usize][0],
            "partition {partition}"
        );
    }
    let refused = create(
        &mut kafka,
        assigned_topic("unknown-broker", &[&[1, 9]]),
        false,
    );
    assert_eq!(
        refused.error_code,
        code(ResponseError::InvalidReplicaAssignment),
        "{refused:?}"
    );

    // CreatePartitions with the new partitions' replicas.
    let grow = CreatePartitionsRequest::default()
        .with_topics(vec![CreatePartitionsTopic::default()
            .with_name(name("assigned"))
            .with_count(4)
            .with_assignments(Some(vec![CreatePartitionsAssignment::default()
                .with_broker_ids(vec![BrokerId(2), BrokerId(1)])]))])
        .with_timeout_ms(30_000);
    let grown = &kafka.call(3, &grow).results[0];
    assert_eq!(grown.error_code, 0, "{grown:?}");
    let grown = replicas(&mut kafka, "assigned").expect("exists");
    assert_eq!(grown.len(), 4);
    assert_eq!(grown[3], vec![2, 1]);

    // min.insync.replicas altered both ways, never above the factor.
    let (refused, message) = alter_incrementally(&mut kafka, "two-replicas", SET, "3");
    assert_eq!(refused, code(ResponseError::InvalidConfig), "{message}");
    assert!(message.contains("replication factor"), "{message}");
    assert_eq!(
        alter_incrementally(&mut kafka, "two-replicas", SET, "1").0,
        0
    );
    assert_eq!(
        described(&min_insync(&mut kafka, "two-replicas")),
        ("1".into(), SOURCE_TOPIC, false)
    );
    assert_eq!(
        alter_incrementally(&mut kafka, "two-replicas", DELETE, "").0,
        0
    );
    assert_eq!(
        described(&min_insync(&mut kafka, "two-replicas")),
        ("2".into(), SOURCE_DEFAULT, false)
    );
    assert_eq!(alter_replacing(&mut kafka, "default-replicas", "3"), 0);
    assert_eq!(
        described(&min_insync(&mut kafka, "default-replicas")),
        ("3".into(), SOURCE_TOPIC, false)
    );
    assert_eq!(
        alter_replacing(&mut kafka, "default-replicas", "4"),
        code(ResponseError::InvalidConfig)
    );
    // Every broker describes what the controller applied.
    for id in cluster.ids() {
        let mut other = KafkaTestClient::connect(cluster.kafka_address(id));
        let seen = wait_for(Duration::from_secs(30), || {
            let value = described(&min_insync(&mut other, "default-replicas")).0;
            (value == "3").then_some(value)
        });
        assert!(
            seen.is_some(),
            "broker {id} does not describe min.insync.replicas=3"
        );
    }

    // Native CreateTopics v1 takes a replication factor too.
    cluster.create_topic_with_replication_factor(3, "native-two", 2, 2, &[]);
    let placed = replicas(&mut kafka, "native-two").expect("created");
    assert!(
        placed.len() == 2 && placed.iter().all(|replicas| replicas.len() == 2),
        "{placed:?}"
    );

    // FindCoordinator for a transactional id creates __transaction_state through the
    // controller (RF 3) and answers COORDINATOR_NOT_AVAILABLE, retriable, until it has a leader.
    let mut answers = Vec::new();
    let found = wait_for(Duration::from_secs(60), || {
        let request = FindCoordinatorRequest::default()
            .with_key_type(KEY_TYPE_TRANSACTION)
            .with_coordinator_keys(vec![text("a-transactional-id")]);
        let coordinator = kafka.call(4, &request).coordinators.remove(0);
        answers.push(coordinator.error_code);
        (coordinator.error_code == 0).then_some(coordinator.node_id.0)
    });
    let node = found.unwrap_or_else(|| panic!("no transaction coordinator: {answers:?}"));
    assert!(
        answers
            .iter()
            .all(|&answer| answer == 0 || answer == code(ResponseError::CoordinatorNotAvailable)),
        "{answers:?}"
    );
    assert!(cluster.ids().contains(&node));
    let state = replicas(&mut kafka, "__transaction_state").expect("created by FindCoordinator");
    assert!(
        state.iter().all(|replicas| replicas.len() == 3),
        "{state:?}"
    );
    eprintln!(
        "FindCoordinator answered broker {node} after {} tries; __transaction_state has {} \
         partitions of 3 replicas",
        answers.len(),
        state.len()
    );
}
