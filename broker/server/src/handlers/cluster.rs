//! Cluster handlers of the native protocol: FindCoordinator (which broker coordinates a group or
//! a transactional id), and the operations `spate cluster` runs: ElectLeaders,
//! AlterReassignments, ListReassignments and DecommissionBroker.
//!
//! A coordinator lives on the leader of its internal partition (a group on its
//! `__consumer_offsets` partition, a transactional id on its `__transaction_state` partition),
//! so it moves with that leadership; `coordinator_node` finds it from the catalog snapshot and is
//! shared with the Kafka FindCoordinator. A single broker coordinates everything itself.
//!
//! The operations are metadata changes: in cluster mode each goes to the controller as a
//! proposal (`ElectPreferredLeaders`, `ReassignPartition`, `DecommissionBroker`) and is answered
//! once this broker applied it; reassignments in progress are read from the applied image. A
//! single broker has one replica per partition on itself, so there its preferred leaders
//! already lead, nothing is being reassigned, and the only valid replica list is itself.
//! These steps are shared by the native handlers below and the Kafka ones
//! (`kafka::operations`), which only translate the outcomes into each protocol's codes.

use std::rc::Rc;

use spate_metadata::{ApplyError, ApplyOutcome, ElectionResult, MetadataCommand, MetadataImage};
use spate_protocol::api::{AlterReassignmentsRequest, AlterReassignmentsResponse};
use spate_protocol::api::{CoordinatorType, FindCoordinatorRequest, FindCoordinatorResponse};
use spate_protocol::api::{DecommissionBrokerRequest, DecommissionBrokerResponse};
use spate_protocol::api::{ElectLeadersRequest, ElectLeadersResponse};
use spate_protocol::api::{ListReassignmentsRequest, ListReassignmentsResponse};
use spate_protocol::api::{OngoingReassignment, PartitionOutcome, ReassignmentListing};
use spate_protocol::api::{TopicOutcomes, TopicPartitionList};
use spate_protocol::constants::GROUP_ID_BYTES_MAX;
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use super::admin::local_native_endpoint;
use crate::catalog::CatalogSnapshot;
use crate::cluster::{propose, ProposeError};
use crate::group::{coordinator, offsets_partition_of, OFFSETS_TOPIC_NAME};
use crate::services::Services;
use crate::txn::coordinator as txn_coordinator;
use crate::txn::{state_partition_of, TRANSACTION_STATE_TOPIC_NAME};

/// The broker that coordinates `key` (a group id or a transactional id): the leader of the
/// internal partition it maps to. The group's offsets topic and the transactions' state topic
/// are created here if they do not exist yet (as Kafka's FindCoordinator does); until the
/// partition has a leader the answer is COORDINATOR_NOT_AVAILABLE, which clients retry. `Err`: the native code and why (an invalid key, no
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
        CoordinatorType::Transaction => {
            // Created through the controller on first use, as Kafka's FindCoordinator does;
            // a failure is retriable (the client looks again).
            let topic = txn_coordinator::state_topic(services, true)
                .await
                .map_err(|error| {
                    (
                        ErrorCode::CoordinatorNotAvailable,
                        format!("{TRANSACTION_STATE_TOPIC_NAME} cannot be created yet: {error}"),
                    )
                })?;
            (TRANSACTION_STATE_TOPIC_NAME, topic)
        }
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

/// The partitions an operation names: `None` for every partition of every topic.
pub(crate) type Wanted = Option<Vec<(String, Vec<u32>)>>;

/// One partition's outcome of a preferred-leader election.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Election {
    /// The preferred replica leads now.
    Elected,
    /// The preferred replica already led (Kafka's ELECTION_NOT_NEEDED).
    NotNeeded,
    /// The preferred replica is fenced or out of the ISR, so the leader stays (Kafka's
    /// PREFERRED_LEADER_NOT_AVAILABLE).
    PreferredNotAvailable,
    /// No such topic or partition.
    UnknownPartition,
}

impl From<ElectionResult> for Election {
    fn from(result: ElectionResult) -> Self {
        match result {
            ElectionResult::Elected => Election::Elected,
            ElectionResult::NotNeeded => Election::NotNeeded,
            ElectionResult::PreferredNotAvailable => Election::PreferredNotAvailable,
            ElectionResult::UnknownPartition => Election::UnknownPartition,
        }
    }
}

/// Per topic, each named partition with its outcome, in the order asked.
pub(crate) type PerPartition<T> = Vec<(String, Vec<(u32, T)>)>;

/// The partitions named, each with whether it exists in `snapshot`; every partition of every
/// topic when none are named.
fn named_partitions(snapshot: &CatalogSnapshot, wanted: &Wanted) -> PerPartition<bool> {
    match wanted {
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
            .map(|(name, partitions)| {
                let count = snapshot
                    .topic(name)
                    .map_or(0, |topic| topic.partition_count());
                let partitions = partitions
                    .iter()
                    .map(|partition| (*partition, *partition < count))
                    .collect();
                (name.clone(), partitions)
            })
            .collect(),
    }
}

/// A proposal that failed as a whole, as the native code and why.
fn proposal_failed(operation: &str, error: ProposeError) -> (ErrorCode, String) {
    (error.error_code(), format!("{operation}: {error}"))
}

/// Topic `name`'s id and partition count in `image`.
fn topic_in(image: &MetadataImage, name: &str) -> Option<(u64, u32)> {
    image
        .topics
        .get(name)
        .map(|topic| (topic.id, topic.partitions.len() as u32))
}

/// Makes each named partition's preferred replica (its first) its leader where it is in the
/// ISR and alive. A single broker's only replica already leads every partition. `Err`: the
/// request failed as a whole.
pub(crate) async fn elect_preferred_leaders(
    services: &Rc<Services>,
    wanted: &Wanted,
) -> Result<PerPartition<Election>, (ErrorCode, String)> {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        return elect_in_cluster(services, wanted).await;
    }
    Ok(named_partitions(&snapshot, wanted)
        .into_iter()
        .map(|(name, partitions)| {
            let outcomes = partitions
                .into_iter()
                .map(|(partition, exists)| {
                    let outcome = if exists {
                        Election::NotNeeded
                    } else {
                        Election::UnknownPartition
                    };
                    (partition, outcome)
                })
                .collect();
            (name, outcomes)
        })
        .collect())
}

/// The controller's election of the named partitions' preferred leaders. Over every partition
/// (`wanted` is `None`) only the partitions whose leader changed are listed, as Kafka does.
async fn elect_in_cluster(
    services: &Rc<Services>,
    wanted: &Wanted,
) -> Result<PerPartition<Election>, (ErrorCode, String)> {
    let image = services.cluster.image();
    let partitions: Option<Vec<(u64, u32)>> = wanted.as_ref().map(|topics| {
        topics
            .iter()
            .filter_map(|(name, partitions)| {
                let (topic_id, count) = topic_in(&image, name)?;
                let existing = partitions.iter().filter(move |p| **p < count);
                Some(existing.map(move |partition| (topic_id, *partition)))
            })
            .flatten()
            .collect()
    });
    let results = match &partitions {
        Some(partitions) if partitions.is_empty() => Vec::new(),
        _ => {
            let command = MetadataCommand::ElectPreferredLeaders { partitions };
            match propose(services, command).await {
                Ok(ApplyOutcome::LeadersElected { results }) => results,
                Ok(other) => {
                    return Err((
                        ErrorCode::Unknown,
                        format!("the controller answered {other:?} to an election"),
                    ))
                }
                Err(error) => return Err(proposal_failed("electing leaders", error)),
            }
        }
    };
    let Some(topics) = wanted else {
        // Every partition: the ones elected, by topic name as this broker now knows them.
        let applied = services.cluster.image();
        let mut elected: PerPartition<Election> = Vec::new();
        for (topic_id, partition, result) in results {
            let Some(topic) = applied.topic_by_id(topic_id) else {
                continue;
            };
            match elected.iter_mut().find(|(name, _)| *name == topic.name) {
                Some((_, partitions)) => partitions.push((partition, result.into())),
                None => elected.push((topic.name.clone(), vec![(partition, result.into())])),
            }
        }
        return Ok(elected);
    };
    Ok(topics
        .iter()
        .map(|(name, partitions)| {
            let topic_id = topic_in(&image, name).map(|(id, _)| id);
            let outcomes = partitions
                .iter()
                .map(|partition| {
                    let result = results
                        .iter()
                        .find(|(id, number, _)| Some(*id) == topic_id && number == partition)
                        .map_or(Election::UnknownPartition, |(_, _, result)| {
                            (*result).into()
                        });
                    (*partition, result)
                })
                .collect();
            (name.clone(), outcomes)
        })
        .collect())
}

/// One partition's outcome of a reassignment request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reassignment {
    /// The move started (or, with the replicas it already has, nothing needed to move), or a
    /// cancel put the replicas back.
    Started,
    /// A cancel, but no reassignment of the partition is in progress (Kafka's
    /// NO_REASSIGNMENT_IN_PROGRESS).
    NothingToCancel,
    /// The target replica list is not a valid one (Kafka's INVALID_REPLICA_ASSIGNMENT): the
    /// native code (an unknown broker is `BrokerNotAvailable`) and why.
    InvalidTarget(ErrorCode, String),
    /// Refused for another reason, with the native code and why.
    Refused(ErrorCode, String),
}

impl Reassignment {
    /// A proposal's failure for one partition.
    fn of_failure(error: ProposeError) -> Self {
        match error {
            ProposeError::Refused(ApplyError::NoReassignmentInProgress { .. }) => {
                Reassignment::NothingToCancel
            }
            ProposeError::Refused(ApplyError::UnknownBroker { id }) => Reassignment::InvalidTarget(
                ErrorCode::BrokerNotAvailable,
                format!("broker {id} is not in the cluster"),
            ),
            ProposeError::Refused(
                refused @ (ApplyError::InvalidReplicaAssignment { .. }
                | ApplyError::InvalidReplicationFactor { .. }),
            ) => Reassignment::InvalidTarget(refused.error_code(), refused.to_string()),
            error => Reassignment::Refused(error.error_code(), error.to_string()),
        }
    }
}

/// Gives each named partition its target replicas (`None` cancels its move in progress). A
/// single broker accepts only itself as the replica list (nothing moves) and has no move to
/// cancel. `Err`: the request failed as a whole.
pub(crate) async fn reassign_partitions(
    services: &Rc<Services>,
    moves: &PerPartition<Option<Vec<NodeId>>>,
) -> Result<PerPartition<Reassignment>, (ErrorCode, String)> {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        return Ok(reassign_in_cluster(services, moves).await);
    }
    let local = snapshot.local_node;
    Ok(moves
        .iter()
        .map(|(name, partitions)| {
            let count = snapshot
                .topic(name)
                .map_or(0, |topic| topic.partition_count());
            let outcomes = partitions
                .iter()
                .map(|(partition, target)| {
                    let outcome = match target {
                        _ if *partition >= count => Reassignment::Refused(
                            ErrorCode::UnknownTopicOrPartition,
                            format!("topic {name} has no partition {partition}"),
                        ),
                        None => Reassignment::NothingToCancel,
                        Some(target) if *target == [local] => Reassignment::Started,
                        Some(target) => {
                            let (code, message) = single_broker_target(local, target);
                            Reassignment::InvalidTarget(code, message)
                        }
                    };
                    (*partition, outcome)
                })
                .collect();
            (name.clone(), outcomes)
        })
        .collect())
}

/// One proposal per named partition, in the order asked: each partition's move is its own
/// metadata change, so one refused target does not hold the others back.
async fn reassign_in_cluster(
    services: &Rc<Services>,
    moves: &PerPartition<Option<Vec<NodeId>>>,
) -> PerPartition<Reassignment> {
    let mut outcomes = Vec::with_capacity(moves.len());
    for (name, partitions) in moves {
        let mut topic_outcomes = Vec::with_capacity(partitions.len());
        for (partition, target) in partitions {
            let image = services.cluster.image();
            let outcome = match topic_in(&image, name) {
                Some((topic_id, count)) if *partition < count => {
                    let command = MetadataCommand::ReassignPartition {
                        topic_id,
                        partition: *partition,
                        target: target.clone(),
                    };
                    match propose(services, command).await {
                        Ok(_) => Reassignment::Started,
                        Err(error) => Reassignment::of_failure(error),
                    }
                }
                _ => Reassignment::Refused(
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {name} has no partition {partition}"),
                ),
            };
            topic_outcomes.push((*partition, outcome));
        }
        outcomes.push((name.clone(), topic_outcomes));
    }
    outcomes
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

/// A partition being moved: its replicas now, and which of them join and which leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Move {
    pub partition: u32,
    pub replicas: Vec<NodeId>,
    pub adding: Vec<NodeId>,
    pub removing: Vec<NodeId>,
}

/// The moves in progress among the named partitions (every partition when none are named), as
/// this broker's applied metadata has them; a topic without one is left out. A single broker
/// has none.
pub(crate) async fn ongoing_reassignments(
    services: &Rc<Services>,
    wanted: &Wanted,
) -> Result<Vec<(String, Vec<Move>)>, (ErrorCode, String)> {
    if !services.snapshot().cluster_mode {
        return Ok(Vec::new());
    }
    Ok(moves_in(&services.cluster.image(), wanted))
}

/// The reassignments in progress in `image` among the `wanted` partitions.
fn moves_in(image: &MetadataImage, wanted: &Wanted) -> Vec<(String, Vec<Move>)> {
    let named = |name: &str, partition: u32| match wanted {
        None => true,
        Some(topics) => topics
            .iter()
            .any(|(wanted, partitions)| wanted == name && partitions.contains(&partition)),
    };
    image
        .topics
        .values()
        .filter_map(|topic| {
            let moves: Vec<Move> = topic
                .partitions
                .iter()
                .enumerate()
                .map(|(number, partition)| (number as u32, partition))
                .filter(|(number, partition)| {
                    partition.is_reassigning() && named(&topic.name, *number)
                })
                .map(|(number, partition)| Move {
                    partition: number,
                    replicas: partition.replicas.clone(),
                    adding: partition.adding.clone(),
                    removing: partition.removing.clone(),
                })
                .collect();
            (!moves.is_empty()).then(|| (topic.name.clone(), moves))
        })
        .collect()
}

/// Starts moving every replica off broker `node`; it leaves the cluster once it holds none.
pub(crate) async fn decommission(
    services: &Rc<Services>,
    node: NodeId,
) -> Result<(), (ErrorCode, String)> {
    let snapshot = services.snapshot();
    if snapshot.cluster_mode {
        let command = MetadataCommand::DecommissionBroker { id: node };
        return match propose(services, command).await {
            Ok(_) => Ok(()),
            Err(ProposeError::Refused(ApplyError::UnknownBroker { id })) => Err((
                ErrorCode::BrokerNotAvailable,
                format!("broker {id} is not in the cluster"),
            )),
            Err(ProposeError::Refused(ApplyError::InvalidReplicationFactor {
                requested,
                available,
            })) => Err((
                ErrorCode::InvalidReplicationFactor,
                format!(
                    "broker {node}'s replicas have nowhere to go: a partition needs {requested} \
                     replicas and only {available} other brokers are active"
                ),
            )),
            Err(error) => Err(proposal_failed(
                &format!("decommissioning broker {node}"),
                error,
            )),
        };
    }
    if node == snapshot.local_node {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!("broker {node} is the only broker: its replicas have nowhere to go"),
        ));
    }
    Err((
        ErrorCode::BrokerNotAvailable,
        format!(
            "broker {node} is not in the cluster; the only broker is {}",
            snapshot.local_node
        ),
    ))
}

// ---- the native answers ----------------------------------------------------------------------

fn wanted_of(topics: Option<&[TopicPartitionList]>) -> Wanted {
    topics.map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.name.clone(), topic.partitions.clone()))
            .collect()
    })
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

fn outcomes<T>(
    per_partition: PerPartition<T>,
    error: impl Fn(&str, u32, T) -> Option<(ErrorCode, String)>,
) -> Vec<TopicOutcomes> {
    per_partition
        .into_iter()
        .map(|(name, partitions)| TopicOutcomes {
            partitions: partitions
                .into_iter()
                .map(|(partition, result)| outcome(partition, error(&name, partition, result)))
                .collect(),
            name,
        })
        .collect()
}

/// ElectLeaders: `None` for a partition its preferred replica leads now (elected, or leading
/// already).
pub async fn elect_leaders(
    services: &Rc<Services>,
    request: &ElectLeadersRequest,
) -> ElectLeadersResponse {
    let wanted = wanted_of(request.topics.as_deref());
    match elect_preferred_leaders(services, &wanted).await {
        Ok(elections) => ElectLeadersResponse {
            error_code: ErrorCode::None,
            error_message: None,
            topics: outcomes(elections, |name, partition, election| match election {
                Election::Elected | Election::NotNeeded => None,
                Election::PreferredNotAvailable => Some((
                    ErrorCode::BrokerNotAvailable,
                    format!(
                        "topic {name} partition {partition}: the preferred replica is fenced or \
                         not in sync, so the leader stays"
                    ),
                )),
                Election::UnknownPartition => Some((
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {name} has no partition {partition}"),
                )),
            }),
        },
        Err((error_code, message)) => ElectLeadersResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        },
    }
}

/// AlterReassignments: `None` for a partition whose move started.
pub async fn alter_reassignments(
    services: &Rc<Services>,
    request: &AlterReassignmentsRequest,
) -> AlterReassignmentsResponse {
    let moves: Vec<_> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|wanted| (wanted.partition, wanted.target_replicas.clone()))
                .collect();
            (topic.name.clone(), partitions)
        })
        .collect();
    match reassign_partitions(services, &moves).await {
        Ok(reassignments) => AlterReassignmentsResponse {
            error_code: ErrorCode::None,
            error_message: None,
            topics: outcomes(reassignments, |_, _, reassignment| match reassignment {
                Reassignment::Started => None,
                Reassignment::NothingToCancel => Some((
                    ErrorCode::InvalidRequest,
                    "no reassignment of the partition is in progress".to_string(),
                )),
                Reassignment::InvalidTarget(code, message)
                | Reassignment::Refused(code, message) => Some((code, message)),
            }),
        },
        Err((error_code, message)) => AlterReassignmentsResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        },
    }
}

/// ListReassignments: the moves in progress.
pub async fn list_reassignments(
    services: &Rc<Services>,
    request: &ListReassignmentsRequest,
) -> ListReassignmentsResponse {
    let wanted = wanted_of(request.topics.as_deref());
    match ongoing_reassignments(services, &wanted).await {
        Ok(moves) => ListReassignmentsResponse {
            error_code: ErrorCode::None,
            error_message: None,
            topics: moves
                .into_iter()
                .map(|(name, moves)| ReassignmentListing {
                    name,
                    partitions: moves
                        .into_iter()
                        .map(|moving| OngoingReassignment {
                            partition: moving.partition,
                            replicas: moving.replicas,
                            adding: moving.adding,
                            removing: moving.removing,
                        })
                        .collect(),
                })
                .collect(),
        },
        Err((error_code, message)) => ListReassignmentsResponse {
            error_code,
            error_message: Some(message),
            topics: Vec::new(),
        },
    }
}

/// DecommissionBroker: `None` once the broker's replicas started moving.
pub async fn decommission_broker(
    services: &Rc<Services>,
    request: &DecommissionBrokerRequest,
) -> DecommissionBrokerResponse {
    match decommission(services, request.node_id).await {
        Ok(()) => DecommissionBrokerResponse::default(),
        Err((error_code, message)) => DecommissionBrokerResponse {
            error_code,
            error_message: Some(message),
        },
    }
}
