//! End-to-end: the Kafka cluster operations (ElectLeaders, AlterPartitionReassignments,
//! ListPartitionReassignments) and the cluster answers of DescribeCluster against a single
//! broker, at every served version: its only replica already leads, nothing moves, and the
//! codes are the ones Kafka's tools act on.

use spate_kafka_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic;
use spate_kafka_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreateTopicsRequest, DescribeClusterRequest,
    ElectLeadersRequest, ListPartitionReassignmentsRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient};

fn name(value: &str) -> TopicName {
    TopicName(StrBytes::from_string(value.to_string()))
}

fn broker_with_topic(partitions: i32) -> (Broker, KafkaTestClient) {
    let broker = Broker::start(BrokerOptions::default());
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let created = kafka.call(
        7,
        &CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(name("orders"))
                .with_num_partitions(partitions)
                .with_replication_factor(-1)])
            .with_timeout_ms(30_000),
    );
    assert_eq!(created.topics[0].error_code, 0, "{created:?}");
    assert_eq!(created.topics[0].replication_factor, 1);
    (broker, kafka)
}

#[test]
fn a_preferred_election_on_a_single_broker_is_not_needed() {
    let (_broker, mut kafka) = broker_with_topic(2);
    for version in 0..=2 {
        let request = ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(name("orders"))
                .with_partitions(vec![0, 1, 5])]))
            .with_timeout_ms(5_000);
        let answer = kafka.call(version, &request);
        assert_eq!(answer.error_code, 0, "v{version}");
        let codes: Vec<i16> = answer.replica_election_results[0]
            .partition_result
            .iter()
            .map(|partition| partition.error_code)
            .collect();
        assert_eq!(
            codes,
            [
                ResponseError::ElectionNotNeeded.code(),
                ResponseError::ElectionNotNeeded.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ],
            "v{version}"
        );
    }
    // Every partition of every topic, when the list is null.
    let all = kafka.call(
        2,
        &ElectLeadersRequest::default()
            .with_topic_partitions(None)
            .with_timeout_ms(5_000),
    );
    let orders = all
        .replica_election_results
        .iter()
        .find(|topic| topic.topic.0.as_str() == "orders")
        .expect("orders is listed");
    assert_eq!(orders.partition_result.len(), 2);
    // Never an unclean election: a leader outside the ISR could lose acknowledged records.
    let unclean = kafka.call(
        1,
        &ElectLeadersRequest::default()
            .with_election_type(1)
            .with_timeout_ms(5_000),
    );
    assert_eq!(unclean.error_code, ResponseError::InvalidRequest.code());
}

#[test]
fn reassignments_on_a_single_broker_accept_only_itself_and_list_nothing() {
    let (_broker, mut kafka) = broker_with_topic(2);
    let partition = |index: i32, replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(index)
            .with_replicas(replicas.map(|nodes| nodes.into_iter().map(BrokerId).collect()))
    };
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(5_000)
        .with_topics(vec![ReassignableTopic::default()
            .with_name(name("orders"))
            .with_partitions(vec![
                partition(0, Some(vec![0])),
                partition(1, Some(vec![0, 1])),
                partition(1, None),
                partition(9, Some(vec![0])),
            ])]);
    let answer = kafka.call(0, &request);
    assert_eq!(answer.error_code, 0);
    let codes: Vec<i16> = answer.responses[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            0,
            ResponseError::InvalidReplicaAssignment.code(),
            ResponseError::NoReassignmentInProgress.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let listed = kafka.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(5_000),
    );
    assert_eq!(listed.error_code, 0);
    assert!(listed.topics.is_empty());
}

#[test]
fn describe_cluster_names_the_single_broker_and_its_controller() {
    let broker = Broker::start(BrokerOptions::default());
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    for version in 0..=2 {
        let answer = kafka.call(
            version,
            &DescribeClusterRequest::default().with_endpoint_type(1),
        );
        assert_eq!(answer.error_code, 0, "v{version}");
        assert_eq!(answer.controller_id.0, 0);
        assert_eq!(answer.brokers.len(), 1);
        assert_eq!(answer.brokers[0].broker_id.0, 0);
        assert_eq!(
            answer.brokers[0].port,
            i32::from(broker.kafka_address().port())
        );
    }
}
