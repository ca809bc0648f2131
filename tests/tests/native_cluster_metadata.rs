//! End-to-end: what a single broker (no `--seeds`) says about the cluster on the native
//! protocol, at the versions that carry it: Metadata v1 (brokers, controller, each partition's
//! leader, epoch, replicas and ISR), DescribeCluster v1 (its node id), FindCoordinator, and the
//! cluster operations, which a single broker answers without changing anything.

use spate_protocol::api::{
    AlterReassignmentsRequest, CoordinatorType, CreateTopic, CreateTopicsRequest,
    DecommissionBrokerRequest, DescribeClusterRequest, ElectLeadersRequest, FindCoordinatorRequest,
    ListReassignmentsRequest, MetadataRequest, ReassignmentPartition, TopicPartitionList,
    TopicPartitions,
};
use spate_protocol::error::ErrorCode;
use spate_tests::{Broker, BrokerOptions, TestClient};

fn broker_with_topic(partitions: u32) -> (Broker, TestClient) {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    let created = client.call(&CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: "orders".into(),
            partition_count: partitions,
            configs: Vec::new(),
            replication_factor: 0,
        }],
        timeout_ms: 10_000,
    });
    assert_eq!(created.results[0].error_code, ErrorCode::None);
    (broker, client)
}

#[test]
fn metadata_names_the_single_broker_as_leader_replica_and_controller() {
    let (broker, mut client) = broker_with_topic(3);
    let metadata = client.call(&MetadataRequest {
        topics: Some(vec!["orders".into(), "missing".into()]),
    });
    assert_eq!(metadata.controller_id, 0);
    assert_eq!(
        metadata.cluster_id, None,
        "a single broker has no cluster metadata"
    );
    assert_eq!(metadata.brokers.len(), 1);
    let only = &metadata.brokers[0];
    assert_eq!(only.node_id, 0);
    assert_eq!(only.host, broker.address().ip().to_string());
    assert_eq!(only.port, broker.address().port());
    assert_eq!(only.rack, None);

    let orders = &metadata.topics[0];
    assert_eq!(orders.error_code, ErrorCode::None);
    assert_eq!(orders.partitions.len(), 3);
    for (index, partition) in orders.partitions.iter().enumerate() {
        assert_eq!(partition.partition, index as u32);
        assert_eq!(partition.error_code, ErrorCode::None);
        assert_eq!(partition.leader_id, 0);
        assert_eq!(partition.leader_epoch, 0);
        assert_eq!(partition.replicas, [0]);
        assert_eq!(partition.isr, [0]);
    }
    assert_eq!(
        metadata.topics[1].error_code,
        ErrorCode::UnknownTopicOrPartition
    );
}

#[test]
fn describe_cluster_version_1_says_which_node_answered() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    let described = client.call(&DescribeClusterRequest {});
    assert_eq!(described.error_code, ErrorCode::None);
    assert_eq!(described.node_id, 0);
    assert_eq!(described.controller_id, 0);
    assert_eq!(described.brokers.len(), 1);
    assert_eq!(described.brokers[0].port, broker.address().port());
    assert!(!described.topic_defaults.is_empty());
}

#[test]
fn find_coordinator_names_the_single_broker_for_groups_and_transactions() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    for (key_type, key) in [
        (CoordinatorType::Group, "payments"),
        (CoordinatorType::Transaction, "txn-1"),
    ] {
        let found = client.call(&FindCoordinatorRequest {
            key_type,
            key: key.into(),
        });
        assert_eq!(found.error_code, ErrorCode::None, "{key}: {found:?}");
        assert_eq!(found.node_id, 0);
        assert_eq!(found.host, broker.address().ip().to_string());
        assert_eq!(found.port, broker.address().port());
    }
    let empty_group = client.call(&FindCoordinatorRequest {
        key_type: CoordinatorType::Group,
        key: String::new(),
    });
    assert_eq!(empty_group.error_code, ErrorCode::InvalidGroupId);
    assert_eq!(empty_group.node_id, -1);
    let empty_transaction = client.call(&FindCoordinatorRequest {
        key_type: CoordinatorType::Transaction,
        key: String::new(),
    });
    assert_eq!(empty_transaction.error_code, ErrorCode::InvalidRequest);
}

#[test]
fn cluster_operations_on_a_single_broker_change_nothing_and_say_why() {
    let (_broker, mut client) = broker_with_topic(2);
    let elected = client.call(&ElectLeadersRequest {
        topics: Some(vec![TopicPartitionList {
            name: "orders".into(),
            partitions: vec![0, 1, 7],
        }]),
        timeout_ms: 5_000,
    });
    assert_eq!(elected.error_code, ErrorCode::None);
    let codes: Vec<ErrorCode> = elected.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::None,
            ErrorCode::None,
            ErrorCode::UnknownTopicOrPartition
        ]
    );

    let moved = client.call(&AlterReassignmentsRequest {
        topics: vec![TopicPartitions {
            name: "orders".into(),
            partitions: vec![
                ReassignmentPartition {
                    partition: 0,
                    target_replicas: Some(vec![0]),
                },
                ReassignmentPartition {
                    partition: 1,
                    target_replicas: Some(vec![0, 1]),
                },
                ReassignmentPartition {
                    partition: 1,
                    target_replicas: None,
                },
            ],
        }],
        timeout_ms: 5_000,
    });
    let codes: Vec<ErrorCode> = moved.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            ErrorCode::None,
            ErrorCode::BrokerNotAvailable,
            ErrorCode::InvalidRequest
        ]
    );

    let listed = client.call(&ListReassignmentsRequest { topics: None });
    assert_eq!(listed.error_code, ErrorCode::None);
    assert!(listed.topics.is_empty());

    let decommission = client.call(&DecommissionBrokerRequest {
        node_id: 0,
        timeout_ms: 5_000,
    });
    assert_eq!(decommission.error_code, ErrorCode::InvalidReplicationFactor);
    let unknown = client.call(&DecommissionBrokerRequest {
        node_id: 4,
        timeout_ms: 5_000,
    });
    assert_eq!(unknown.error_code, ErrorCode::BrokerNotAvailable);
}
