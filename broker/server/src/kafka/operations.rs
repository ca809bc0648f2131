//! The Kafka cluster operations: ElectLeaders (43), AlterPartitionReassignments (45) and
//! ListPartitionReassignments (46), over the native handlers' shared steps
//! (`handlers::cluster`), so `kafka-leader-election.sh`, `kafka-reassign-partitions.sh` and the
//! admin client change the same cluster metadata `spate cluster` does.
//!
//! What is Kafka's here: the shapes and the error codes: ELECTION_NOT_NEEDED for a partition
//! whose preferred replica already leads, PREFERRED_LEADER_NOT_AVAILABLE for one whose
//! preferred replica is fenced or out of sync, NO_REASSIGNMENT_IN_PROGRESS for a cancel of
//! nothing, INVALID_REPLICA_ASSIGNMENT for a target naming unknown brokers (or repeating one,
//! or empty), UNKNOWN_TOPIC_OR_PARTITION for a partition that does not exist.
//! Unclean elections (election type 1) are refused: Spate never elects a replica outside the
//! ISR, which could lose acknowledged records.

use spate_kafka_protocol::kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use spate_kafka_protocol::kafka_protocol::messages::elect_leaders_response::{
    PartitionResult, ReplicaElectionResult,
};
use spate_kafka_protocol::kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse, BrokerId,
    ElectLeadersRequest, ElectLeadersResponse, ListPartitionReassignmentsRequest,
    ListPartitionReassignmentsResponse, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_security::Operation;

use super::errors::kafka_code;
use super::KafkaContext;
use crate::handlers::cluster::{
    elect_preferred_leaders, ongoing_reassignments, reassign_partitions, Election, Reassignment,
    Wanted,
};

/// ElectLeaders' election types.
const ELECTION_PREFERRED: i8 = 0;

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn topic_name(name: String) -> TopicName {
    TopicName(StrBytes::from_string(name))
}

/// A partition index as the native steps take it: a negative one names no partition, so it
/// becomes one past every topic's count.
fn partition_index(index: i32) -> u32 {
    u32::try_from(index).unwrap_or(u32::MAX)
}

fn index_of(partition: u32) -> i32 {
    i32::try_from(partition).unwrap_or(-1)
}

pub(crate) async fn elect_leaders(
    context: &KafkaContext<'_>,
    version: i16,
    request: ElectLeadersRequest,
) -> ElectLeadersResponse {
    // v0 has no election type: it is a preferred election.
    let election_type = if version >= 1 {
        request.election_type
    } else {
        ELECTION_PREFERRED
    };
    if !context.cluster_authorized(Operation::Alter) {
        let wanted: Wanted = request.topic_partitions.map(|topics| {
            topics
                .into_iter()
                .map(|topic| {
                    let partitions = topic.partitions.into_iter().map(partition_index).collect();
                    (topic.topic.0.to_string(), partitions)
                })
                .collect()
        });
        return whole_request_failed(
            version,
            wanted,
            ResponseError::ClusterAuthorizationFailed.code(),
        );
    }
    if election_type != ELECTION_PREFERRED {
        return ElectLeadersResponse::default()
            .with_error_code(ResponseError::InvalidRequest.code());
    }
    let wanted: Wanted = request.topic_partitions.map(|topics| {
        topics
            .into_iter()
            .map(|topic| {
                let partitions = topic.partitions.into_iter().map(partition_index).collect();
                (topic.topic.0.to_string(), partitions)
            })
            .collect()
    });
    let elections = match elect_preferred_leaders(context.services, &wanted).await {
        Ok(elections) => elections,
        Err((code, _message)) => {
            // v0 has no request-wide code: each named partition carries it.
            return whole_request_failed(version, wanted, kafka_code(code));
        }
    };
    let results = elections
        .into_iter()
        .map(|(name, partitions)| {
            let partition_result = partitions
                .into_iter()
                .map(|(partition, election)| {
                    let (error, message) = match election {
                        Election::Elected => (None, None),
                        Election::NotNeeded => (
                            Some(ResponseError::ElectionNotNeeded),
                            Some("the preferred replica already leads"),
                        ),
                        Election::PreferredNotAvailable => (
                            Some(ResponseError::PreferredLeaderNotAvailable),
                            Some("the preferred replica is fenced or not in sync"),
                        ),
                        Election::UnknownPartition => {
                            (Some(ResponseError::UnknownTopicOrPartition), None)
                        }
                    };
                    PartitionResult::default()
                        .with_partition_id(index_of(partition))
                        .with_error_code(error.map_or(0, |error| error.code()))
                        .with_error_message(message.map(text))
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic_name(name))
                .with_partition_result(partition_result)
        })
        .collect();
    ElectLeadersResponse::default().with_replica_election_results(results)
}

/// The answer to an election that failed as a whole: the code request-wide (v1+) and on every
/// named partition.
fn whole_request_failed(version: i16, wanted: Wanted, code: i16) -> ElectLeadersResponse {
    let results = wanted
        .unwrap_or_default()
        .into_iter()
        .map(|(name, partitions)| {
            let partition_result = partitions
                .into_iter()
                .map(|partition| {
                    PartitionResult::default()
                        .with_partition_id(index_of(partition))
                        .with_error_code(code)
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(topic_name(name))
                .with_partition_result(partition_result)
        })
        .collect();
    let response = ElectLeadersResponse::default().with_replica_election_results(results);
    if version >= 1 {
        response.with_error_code(code)
    } else {
        response
    }
}

/// A whole AlterPartitionReassignments request refused: the code for the request and for
/// each partition it named, as Kafka's `AlterPartitionReassignmentsRequest.getErrorResponse`
/// answers (a client reading per-partition results finds each one's refusal).
fn reassignments_refused(
    request: &AlterPartitionReassignmentsRequest,
    code: i16,
    message: String,
) -> AlterPartitionReassignmentsResponse {
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    ReassignablePartitionResponse::default()
                        .with_partition_index(partition.partition_index)
                        .with_error_code(code)
                        .with_error_message(Some(text(message.clone())))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(code)
        .with_error_message(Some(text(message)))
        .with_responses(responses)
}

pub(crate) async fn alter_partition_reassignments(
    context: &KafkaContext<'_>,
    _version: i16,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    if !context.cluster_authorized(Operation::Alter) {
        return reassignments_refused(
            &request,
            ResponseError::ClusterAuthorizationFailed.code(),
            "Authorization failed.".to_string(),
        );
    }
    let moves: Vec<_> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let target = partition
                        .replicas
                        .as_ref()
                        .map(|replicas| replicas.iter().map(|node| node.0).collect());
                    (partition_index(partition.partition_index), target)
                })
                .collect();
            (topic.name.0.to_string(), partitions)
        })
        .collect();
    let reassignments = match reassign_partitions(context.services, &moves).await {
        Ok(reassignments) => reassignments,
        Err((code, message)) => return reassignments_refused(&request, kafka_code(code), message),
    };
    let responses = reassignments
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(partition, reassignment)| {
                    let (code, message) = match reassignment {
                        Reassignment::Started => (0, None),
                        Reassignment::NothingToCancel => (
                            ResponseError::NoReassignmentInProgress.code(),
                            Some("no reassignment of the partition is in progress".to_string()),
                        ),
                        Reassignment::InvalidTarget(_, message) => (
                            ResponseError::InvalidReplicaAssignment.code(),
                            Some(message),
                        ),
                        Reassignment::Refused(code, message) => (kafka_code(code), Some(message)),
                    };
                    ReassignablePartitionResponse::default()
                        .with_partition_index(index_of(partition))
                        .with_error_code(code)
                        .with_error_message(message.map(text))
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(topic_name(name))
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_responses(responses)
}

pub(crate) async fn list_partition_reassignments(
    context: &KafkaContext<'_>,
    _version: i16,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    if !context.cluster_authorized(Operation::Describe) {
        return ListPartitionReassignmentsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code())
            .with_error_message(Some(text("Authorization failed.")));
    }
    let wanted: Wanted = request.topics.map(|topics| {
        topics
            .into_iter()
            .map(|topic| {
                let partitions = topic
                    .partition_indexes
                    .into_iter()
                    .map(partition_index)
                    .collect();
                (topic.name.0.to_string(), partitions)
            })
            .collect()
    });
    let moves = match ongoing_reassignments(context.services, &wanted).await {
        Ok(moves) => moves,
        Err((code, message)) => {
            return ListPartitionReassignmentsResponse::default()
                .with_error_code(kafka_code(code))
                .with_error_message(Some(text(message)))
        }
    };
    let nodes = |nodes: Vec<i32>| nodes.into_iter().map(BrokerId).collect();
    let topics = moves
        .into_iter()
        .map(|(name, moves)| {
            let partitions = moves
                .into_iter()
                .map(|moving| {
                    OngoingPartitionReassignment::default()
                        .with_partition_index(index_of(moving.partition))
                        .with_replicas(nodes(moving.replicas))
                        .with_adding_replicas(nodes(moving.adding))
                        .with_removing_replicas(nodes(moving.removing))
                })
                .collect();
            OngoingTopicReassignment::default()
                .with_name(topic_name(name))
                .with_partitions(partitions)
        })
        .collect();
    ListPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_topics(topics)
}
