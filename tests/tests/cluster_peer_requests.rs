//! The brokers' own requests (issue #14) sent by a stranger with bad content, on a formed
//! 3-broker cluster: a ClusterPropose whose command does not decode, a RaftMessage of another
//! cluster and one whose messages are not raft-rs protobuf, WriteTxnMarkers for a topic that
//! does not exist and VerifyTxn for a transactional id nobody has. Each gets an error answer
//! (never a dropped connection), nothing changes, and the cluster goes on: every broker still
//! answers and a topic is still created through the controller afterwards.

use std::time::Duration;

use bytes::Bytes;
use spate_protocol::api::{
    ClusterProposeRequest, RaftMessageRequest, TopicPartitionList, VerifyTxnRequest,
    WriteTxnMarkersRequest,
};
use spate_protocol::error::ErrorCode;
use spate_tests::cluster::{call_once, Cluster, ClusterOptions, FORMATION_TIMEOUT};

const ANSWER_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn bad_inter_broker_requests_are_answered_with_errors_and_change_nothing() {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);
    let controller = cluster
        .metadata_from(1, Some(Vec::new()))
        .expect("broker 1 answers Metadata")
        .controller_id;
    for id in cluster.ids() {
        let address = cluster.address(id);

        let propose = call_once(
            address,
            &ClusterProposeRequest {
                origin: 99,
                sequence: 0,
                command: Bytes::from_static(b"\xff\x00not a metadata command"),
                timeout_ms: 1_000,
            },
            ANSWER_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("broker {id} did not answer a garbage ClusterPropose"));
        assert_eq!(
            propose.error_code,
            ErrorCode::InvalidRequest,
            "broker {id}: {propose:?}"
        );

        let foreign = call_once(
            address,
            &RaftMessageRequest {
                from: 99,
                to: id,
                cluster_id: Some("another-cluster".to_string()),
                messages: vec![Bytes::from_static(b"\x08\x01")],
            },
            ANSWER_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("broker {id} did not answer another cluster's RaftMessage"));
        assert_eq!(
            foreign.error_code,
            ErrorCode::InvalidRequest,
            "broker {id}: {foreign:?}"
        );

        let undecodable = call_once(
            address,
            &RaftMessageRequest {
                from: 99,
                to: id,
                cluster_id: None,
                messages: vec![Bytes::from_static(b"\xff\xff\xff\xff not protobuf")],
            },
            ANSWER_TIMEOUT,
        );
        assert!(
            undecodable.is_some(),
            "broker {id} did not answer a RaftMessage whose messages do not decode"
        );

        let markers = call_once(
            address,
            &WriteTxnMarkersRequest {
                producer_id: 7,
                producer_epoch: 0,
                coordinator_epoch: 0,
                commit: true,
                topics: vec![TopicPartitionList {
                    name: "no-such-topic".to_string(),
                    partitions: vec![0],
                }],
                groups: Vec::new(),
            },
            ANSWER_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("broker {id} did not answer WriteTxnMarkers"));
        let codes: Vec<ErrorCode> = markers
            .topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(|partition| partition.error_code)
            })
            .collect();
        assert_eq!(
            (markers.error_code, codes),
            (ErrorCode::None, vec![ErrorCode::UnknownTopicOrPartition]),
            "broker {id}: {markers:?}"
        );

        let verified = call_once(
            address,
            &VerifyTxnRequest {
                transactional_id: "nobody-has-this-id".to_string(),
                producer_id: 7,
                producer_epoch: 0,
                topics: vec![TopicPartitionList {
                    name: "no-such-topic".to_string(),
                    partitions: vec![0],
                }],
                group_id: None,
            },
            ANSWER_TIMEOUT,
        )
        .unwrap_or_else(|| panic!("broker {id} did not answer VerifyTxn"));
        let confirmed = verified
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .any(|partition| partition.error_code == ErrorCode::None);
        assert!(
            verified.error_code != ErrorCode::None || !confirmed,
            "broker {id} confirmed a transaction nobody opened: {verified:?}"
        );
    }

    // Nothing changed the cluster: the same controller, every broker answering, and the
    // metadata still takes changes.
    for id in cluster.ids() {
        let metadata = cluster
            .metadata_from(id, Some(Vec::new()))
            .unwrap_or_else(|| panic!("broker {id} stopped answering"));
        assert_eq!(metadata.brokers.len(), 3, "broker {id}: {metadata:?}");
        assert_eq!(metadata.controller_id, controller, "broker {id}");
    }
    cluster.create_topic(3, "after-bad-requests", 1, &[]);
}
