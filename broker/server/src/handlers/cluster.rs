//! Cluster handlers of the native protocol: FindCoordinator (which broker coordinates a group or
//! a transactional id), and the operations `spate cluster` runs: ElectLeaders,
//! AlterReassignments, ListReassignments and DecommissionBroker.
//!
//! A coordinator lives on the leader of its internal partition (a group on its
//! `__consumer_offsets` partition, a transactional id on its `__transaction_state` partition),
//! so it moves with that leadership; `coordinator_node` finds it from the catalog snapshot and is
//! shared with the Kafka FindCoordinator. A single broker coordinates everything itself.
//!
//! The operations are metadata changes: in cluster mode they go to the controller as proposals;
//! a single broker has one replica per partition on itself, so there its preferred leaders
//! already lead, nothing is being reassigned, and the only valid replica list is itself.

use std::rc::Rc;

use spate_protocol::api::{AlterReassignmentsRequest, AlterReassignmentsResponse};
use spate_protocol::api::{CoordinatorType, FindCoordinatorRequest, FindCoordinatorResponse};
use spate_protocol::api::{DecommissionBrokerRequest, DecommissionBrokerResponse};
use spate_protocol::api::{ElectLeadersRequest, ElectLeadersResponse};
use spate_protocol::api::{ListReassignmentsRequest, ListReassignmentsResponse};
use spate_protocol::api::{PartitionOutcome, TopicOutcomes, TopicPartitionList};
use spate_protocol::constants::GROUP_ID_BYTES_MAX;
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use super::admin::local_native_endpoint;
use crate::catalog::CatalogSnapshot;
use crate::group::{coordinator, offsets_partition_of, OFFSETS_TOPIC_NAME};
use crate::services::Services;
use crate::txn::{state_partition_of, TRANSACTION_STATE_TOPIC_NAME};

/// The broker that coordinates `key` (a group id or a transactional id): the leader of the
/// internal partition it maps to. A group's offsets topic is created here if it does not exist
/// yet (as Kafka's FindCoordinator does). `Err`: the native code and why (an invalid key, no
/// leader for the partition yet).
pub(crate) async fn coordinator_node(
    services: &Rc<Services>,
    key_type: CoordinatorType,
    key: &str,
) -> Result<NodeId, (ErrorCode, String)> {
    match key_type {
        CoordinatorType::Group if key.is_empty() || key.len() > GROUP_ID_BYTES_MAX => {
            return Err((
                ErrorCode::InvalidGroupId,
                format!("group id {key:?} is empty or longer than {GROUP_ID_BYTES_MAX} bytes"),
            ))
        }
        CoordinatorType::Transaction if key.is_empty() => {
            return Err((
                ErrorCode::InvalidRequest,
                "the transactional id is empty".to_string(),
            ))
        }
        _ => {}
    }
    let snapshot = services.snapshot();
    if !snapshot.cluster_mode {
        // A single broker runs every coordinator itself (on the shard of the partition).
        return Ok(snapshot.local_node);
    }
    let (topic_name, topic) = match key_type {
        CoordinatorType::Group => {
            let topic = coordinator::offsets_topic(services, true)
                .await
                .map_err(|code| (code, "the offsets topic cannot be created yet".to_string()))?;
            (OFFSETS_TOPIC_NAME, topic)
        }
        CoordinatorType::Transaction => (
            TRANSACTION_STATE_TOPIC_NAME,
            snapshot.topic(TRANSACTION_STATE_TOPIC_NAME).cloned(),
        ),
    };
    let Some(topic) = topic else {
        return Err((
            ErrorCode::CoordinatorNotAvailable,
            format!("{topic_name} does not exist yet"),
        ));
    };
    let partition = match key_type {
        CoordinatorType::Group => offsets_partition_of(key, topic.partition_count()),
        CoordinatorType::Transaction => state_partition_of(key, topic.partition_count()),
    };
    // The snapshot may be newer than the one the topic came from; either names a leader.
    let role = topic.role(partition, services.snapshot().local_node);
    role.leader.ok_or_else(|| {
        (
            ErrorCode::CoordinatorNotAvailable,
            format!(
                "{topic_name} partition {partition} has no leader: none of its in-sync replicas {:?} is available",
                role.isr
            ),
        )
    })
}

/// The native endpoint of broker `node`: this broker's own listener, or the one the cluster
/// metadata lists. `None` for a broker the snapshot does not know.
pub(crate) fn native_endpoint(
    services: &Services,
    snapshot: &CatalogSnapshot,
    node: NodeId,
) -> Option<(String, u16)> {
    if node == snapshot.local_node {
        return Some(local_native_endpoint(services));
    }
    snapshot
        .brokers
        .get(&node)
        .map(|broker| broker.native.clone())
}

/// FindCoordinator: the coordinator's node and native endpoint.
pub async fn find_coordinator(
    services: &Rc<Services>,
    request: &FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    let found = coordinator_node(services, request.key_type, &request.key).await;
    let failed = |(error_code, message): (ErrorCode, String)| FindCoordinatorResponse {
        error_code,
        error_message: Some(message),
        ..FindCoordinatorResponse::default()
    };
    let node = match found {
        Ok(node) => node,
        Err(error) => return failed(error),
    };
    match native_endpoint(services, &services.snapshot(), node) {
        Some((host, port)) => FindCoordinatorResponse {
            error_code: ErrorCode::None,
            error_message: None,
            node_id: node,
            host,
            port,
        },
        None => failed((
            ErrorCode::CoordinatorNotAvailable,
            format!("the coordinator, broker {node}, is not in this broker's metadata yet"),
        )),
    }
}

/// The partitions a request names, or every partition of every topic; each checked against
/// the snapshot (`UnknownTopicOrPartition` for those that do not exist).
fn named_partitions(
    snapshot: &CatalogSnapshot,
    topics: Option<&[TopicPartitionList]>,
) -> Vec<(String, Vec<(u32, bool)>)> {
    match topics {
        None => snapshot
            .topics
            .values()
            .map(|topic| {
                let partitions = (0..topic.partition_count()).map(|p| (p, true)).collect();
                (topic.name.clone(), partitions)
            })
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|wanted| {
                let count = snapshot
                    .topic(&wanted.name)
                    .map_or(0, |topic| topic.partition_count());
                let partitions = wanted
                    .partitions
                    .iter()
                    .map(|partition| (*partition, *partition < count))
                    .collect();
                (wanted.name.clone(), partitions)
            })
            .collect(),
    }
}

fn outcome(partition: u32, error: Option<(ErrorCode, String)>) -> PartitionOutcome {
    match error {
        None => PartitionOutcome {
            partition,
            error_code: ErrorCode::None,
            error_message: None,
        },
        Some((error_code, message)) => PartitionOutcome {
            partition,
            error_code,
            error_message: Some(message),
        },
    }
}

fn unknown_partition(topic: &str, partition: u32) -> Option<(ErrorCode, String)> {
    Some((
        ErrorCode::UnknownTopicOrPartition,
        format!("topic {topic} has no partition {partition}"),
    ))
}

/// The answer of an operation that needs the cluster's controller, which this broker cannot
/// reach through proposals yet.
fn needs_controller(operation: &str) -> (ErrorCode, String) {
    (
        ErrorCode::NotController,
        format!("{operation} needs the cluster controller, which this broker cannot reach yet"),
    )
}

/// ElectLeaders: each named partition's preferred replica (its first) becomes its leader where
/// it is in the ISR. A single broker's only replica already leads.
pub async fn elect_leaders(
    services: &Rc<Services>,
    request: &ElectLeadersRequest,
) -> ElectLeadersResponse {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        let (error_code, message) = needs_controller("electing leaders");
        return ElectLeadersResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        };
    }
    let topics = named_partitions(&snapshot, request.topics.as_deref())
        .into_iter()
        .map(|(name, partitions)| TopicOutcomes {
            partitions: partitions
                .into_iter()
                .map(|(partition, exists)| {
                    let error = (!exists)
                        .then(|| unknown_partition(&name, partition))
                        .flatten();
                    outcome(partition, error)
                })
                .collect(),
            name,
        })
        .collect();
    ElectLeadersResponse {
        error_code: ErrorCode::None,
        error_message: None,
        topics,
    }
}

/// AlterReassignments: gives partitions new replica lists (or cancels a move). A single broker
/// accepts only itself as the replica list (nothing moves) and has nothing to cancel.
pub async fn alter_reassignments(
    services: &Rc<Services>,
    request: &AlterReassignmentsRequest,
) -> AlterReassignmentsResponse {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        let (error_code, message) = needs_controller("reassigning partitions");
        return AlterReassignmentsResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        };
    }
    let local = snapshot.local_node;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let count = snapshot
                .topic(&topic.name)
                .map_or(0, |found| found.partition_count());
            TopicOutcomes {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|wanted| {
                        let error = if wanted.partition >= count {
                            unknown_partition(&topic.name, wanted.partition)
                        } else {
                            match &wanted.target_replicas {
                                None => Some((
                                    ErrorCode::InvalidRequest,
                                    "no reassignment of the partition is in progress".to_string(),
                                )),
                                Some(target) if *target == [local] => None,
                                Some(target) => Some(single_broker_target(local, target)),
                            }
                        };
                        outcome(wanted.partition, error)
                    })
                    .collect(),
            }
        })
        .collect();
    AlterReassignmentsResponse {
        error_code: ErrorCode::None,
        error_message: None,
        topics,
    }
}

/// Why a replica list other than `[local]` cannot be a single broker's.
fn single_broker_target(local: NodeId, target: &[NodeId]) -> (ErrorCode, String) {
    match target.iter().find(|node| **node != local) {
        Some(unknown) => (
            ErrorCode::BrokerNotAvailable,
            format!("broker {unknown} is not in the cluster; the only broker is {local}"),
        ),
        None => (
            ErrorCode::InvalidReplicationFactor,
            format!("replicas {target:?}: the only broker is {local}, so a partition has exactly one replica"),
        ),
    }
}

/// ListReassignments: the moves in progress. A single broker has none.
pub async fn list_reassignments(
    services: &Rc<Services>,
    _request: &ListReassignmentsRequest,
) -> ListReassignmentsResponse {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        let (error_code, message) = needs_controller("listing reassignments");
        return ListReassignmentsResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        };
    }
    ListReassignmentsResponse::default()
}

/// DecommissionBroker: moves every replica off a broker, then removes it. A single broker
/// cannot move its replicas anywhere.
pub async fn decommission_broker(
    services: &Rc<Services>,
    request: &DecommissionBrokerRequest,
) -> DecommissionBrokerResponse {
    let snapshot = services.snapshot();
    let (error_code, message) = if snapshot.cluster_mode {
        needs_controller("decommissioning a broker")
    } else if request.node_id == snapshot.local_node {
        (
            ErrorCode::InvalidReplicationFactor,
            format!(
                "broker {} is the only broker: its replicas have nowhere to go",
                request.node_id
            ),
        )
    } else {
        (
            ErrorCode::BrokerNotAvailable,
            format!(
                "broker {} is not in the cluster; the only broker is {}",
                request.node_id, snapshot.local_node
            ),
        )
    };
    DecommissionBrokerResponse {
        error_code,
        error_message: Some(message),
    }
}
