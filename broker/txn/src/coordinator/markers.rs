//! The markers of a decided transaction: one control batch per partition it added, appended on
//! the partition's owner, and the completion of each group's transactional offset commits.
//!
//! A partition of a topic deleted since it was added gets no marker (its data is gone with it),
//! as in Kafka. Owners are asked in parallel, one call per owner shard ([`append_on_owner`]);
//! each group through its coordinator ([`complete_group`]). In a cluster, a partition led by
//! another broker gets its marker through that broker (`TxnPeers::write_markers`, one call per
//! leader), and a group coordinated elsewhere is completed there.

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::catalog::ShardId;
use crate::partition::coordinator_error;
use crate::peers::RemoteMarker;
use crate::shard::join_all;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{PartitionError, PartitionKey, TxnMarker, TxnResult};
use crate::state::{MarkerSpec, TxnError, TxnRecord};
use crate::TxnServices;
use spate_protocol::NodeId;

/// Writes `marker` to every partition and group of `decided`; Ok once every one took it.
/// `coordinator_epoch` is the state partition's leader epoch (Kafka's rule), so that partitions
/// refuse the markers of a deposed coordinator; a single broker's is always 0.
pub(crate) async fn write_markers<S: TxnServices>(
    services: &Rc<S>,
    decided: &TxnRecord,
    marker: MarkerSpec,
    coordinator_epoch: i32,
) -> Result<(), TxnError> {
    let snapshot = services.snapshot();
    let local = snapshot.local_node;
    let mut by_owner: BTreeMap<ShardId, Vec<PartitionKey>> = BTreeMap::new();
    let mut by_leader: BTreeMap<NodeId, Vec<RemoteMarker>> = BTreeMap::new();
    let txn_marker = TxnMarker {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        coordinator_epoch,
        result: if marker.commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    for (topic, partition) in &decided.partitions {
        let Some(metadata) = snapshot.topic(topic) else {
            tracing::debug!(
                topic,
                partition,
                "no marker for a partition of a deleted topic"
            );
            continue;
        };
        if *partition >= metadata.partition_count() {
            continue;
        }
        match metadata.role(*partition, local).leader {
            Some(leader) if leader == local => {
                let Some(owner) = metadata.owner_of(*partition) else {
                    continue;
                };
                by_owner.entry(owner).or_default().push(PartitionKey {
                    topic_id: metadata.id,
                    partition: *partition,
                });
            }
            Some(leader) => by_leader.entry(leader).or_default().push(RemoteMarker {
                topic: topic.clone(),
                partition: *partition,
                marker: txn_marker,
            }),
            None => {
                return Err(TxnError::CoordinatorNotAvailable(format!(
                    "partition {topic}-{partition} has no leader for the transaction's marker"
                )))
            }
        }
    }
    let appends = by_owner
        .into_iter()
        .map(|(owner, keys)| append_on_owner(services.clone(), owner, keys, txn_marker));
    for outcome in join_all(appends).await {
        outcome?;
    }
    if !by_leader.is_empty() {
        let peers = services.txn_peers().ok_or_else(|| {
            TxnError::CoordinatorNotAvailable("no connections to the partitions' leaders".into())
        })?;
        let remote = by_leader.into_iter().map(|(leader, markers)| {
            let peers = peers.clone();
            async move {
                let asked = markers.clone();
                let answers = peers.write_markers(leader, markers).await?;
                for (sent, answer) in asked.iter().zip(answers) {
                    accept_marker_answer(&sent.topic, sent.partition, &marker, answer)?;
                }
                Ok::<(), TxnError>(())
            }
        });
        for outcome in join_all(remote).await {
            outcome?;
        }
    }
    let groups = decided
        .groups
        .iter()
        .map(|group| complete_group(services.clone(), group.clone(), marker));
    for outcome in join_all(groups).await {
        outcome?;
    }
    Ok(())
}

/// Whether one partition's answer to its marker lets the round go on: taken, or a partition
/// with nothing left to close; any other failure fails the round, which is retried.
fn accept_marker_answer(
    topic: &str,
    partition: u32,
    marker: &MarkerSpec,
    answer: Result<(), PartitionError>,
) -> Result<(), TxnError> {
    match answer {
        Ok(()) => Ok(()),
        // Deleted since it was added (its data went with it); Kafka skips it too.
        Err(PartitionError::UnknownTopicOrPartition) => Ok(()),
        // A newer epoch of the producer closed the partition's transaction already: the
        // coordinator never writes an epoch below one it handed out, so this marker is stale
        // and has nothing left to close.
        Err(PartitionError::ProducerFenced(reason)) => {
            tracing::warn!(
                topic,
                partition,
                producer_id = marker.producer_id,
                %reason,
                "a transaction marker was refused as stale; the partition moved past it"
            );
            Ok(())
        }
        Err(error) => Err(coordinator_error(&error)),
    }
}

/// Appends the marker to `keys` on their owner (`Shard::write_txn_markers`: durable when it
/// answers). A partition whose topic was deleted since takes no marker; any other failure
/// (offline, disk full, still opening after a start) fails the round, which is retried.
async fn append_on_owner<S: TxnServices>(
    services: Rc<S>,
    owner: ShardId,
    keys: Vec<PartitionKey>,
    marker: TxnMarker,
) -> Result<(), TxnError> {
    let markers: Vec<(PartitionKey, TxnMarker)> = keys.iter().map(|key| (*key, marker)).collect();
    let answers = invoke_on(&services, owner, move |on: Rc<S>| async move {
        on.shard().clone().write_txn_markers(markers).await
    })
    .await
    .map_err(|_| TxnError::ShuttingDown)?;
    let spec = MarkerSpec {
        producer_id: marker.producer_id,
        producer_epoch: marker.producer_epoch,
        commit: marker.result == TxnResult::Commit,
    };
    for (key, answer) in keys.iter().zip(answers) {
        let topic = format!("topic id {}", key.topic_id);
        accept_marker_answer(&topic, key.partition, &spec, answer.map(|_| ()))?;
    }
    Ok(())
}

/// Completes `group`'s transactional offset commits of the producer: materialized on a
/// commit, dropped on an abort (`spate_group::coordinator::complete_transaction`, which runs on
/// the group's coordinator and writes the marker into its offsets partition).
async fn complete_group<S: TxnServices>(
    services: Rc<S>,
    group: String,
    marker: MarkerSpec,
) -> Result<(), TxnError> {
    if let Some(coordinator) = remote_group_coordinator(&services, &group)? {
        let peers = services.txn_peers().ok_or_else(|| {
            TxnError::CoordinatorNotAvailable("no connections to the group's coordinator".into())
        })?;
        return peers
            .complete_group(
                coordinator,
                group.clone(),
                marker.producer_id,
                marker.producer_epoch,
                marker.commit,
            )
            .await
            .map_err(|code| {
                TxnError::CoordinatorNotAvailable(format!(
                    "the transactional offsets of group {group} were not completed: {code:?}"
                ))
            });
    }
    spate_group::coordinator::complete_transaction(
        &services,
        &group,
        marker.producer_id,
        marker.producer_epoch,
        marker.commit,
    )
    .await
    .map_err(|code| {
        TxnError::CoordinatorNotAvailable(format!(
            "the transactional offsets of group {group} were not completed: {code:?}"
        ))
    })
}

/// The broker coordinating `group` when it is not this one: the leader of the group's offsets
/// partition. `None` when it is local (or the offsets topic does not exist: nothing pending).
fn remote_group_coordinator<S: TxnServices>(
    services: &Rc<S>,
    group: &str,
) -> Result<Option<NodeId>, TxnError> {
    let snapshot = services.snapshot();
    let Some(topic) = snapshot.topic(spate_group::OFFSETS_TOPIC_NAME) else {
        return Ok(None);
    };
    let partition = spate_group::offsets_partition_of(group, topic.partition_count());
    match topic.role(partition, snapshot.local_node).leader {
        Some(leader) if leader == snapshot.local_node => Ok(None),
        Some(leader) => Ok(Some(leader)),
        None => Err(TxnError::CoordinatorNotAvailable(format!(
            "the offsets partition of group {group} has no leader"
        ))),
    }
}

/// Another broker's transaction coordinator asks this one to append `markers` to partitions
/// it leads (the native WriteTxnMarkers request). One answer per marker, in order; a partition
/// this broker does not lead answers NOT_LEADER_OR_FOLLOWER, and the coordinator retries with
/// fresh metadata.
pub async fn write_markers_here<S: TxnServices>(
    services: &Rc<S>,
    markers: Vec<RemoteMarker>,
) -> Vec<Result<(), PartitionError>> {
    let snapshot = services.snapshot();
    let local = snapshot.local_node;
    let mut answers: Vec<Option<Result<(), PartitionError>>> = vec![None; markers.len()];
    let mut by_owner: BTreeMap<ShardId, Vec<(usize, PartitionKey, TxnMarker)>> = BTreeMap::new();
    for (index, remote) in markers.iter().enumerate() {
        let Some(topic) = snapshot.topic(&remote.topic) else {
            answers[index] = Some(Err(PartitionError::UnknownTopicOrPartition));
            continue;
        };
        let role = topic.role(remote.partition, local);
        let owner = topic.owner_of(remote.partition);
        match (role.leader, owner) {
            (Some(leader), Some(owner)) if leader == local => {
                let key = PartitionKey {
                    topic_id: topic.id,
                    partition: remote.partition,
                };
                by_owner
                    .entry(owner)
                    .or_default()
                    .push((index, key, remote.marker));
            }
            (_, None) => answers[index] = Some(Err(PartitionError::UnknownTopicOrPartition)),
            (leader, Some(_)) => {
                answers[index] = Some(Err(PartitionError::NotLeaderOrFollower {
                    leader,
                    leader_epoch: role.leader_epoch,
                }))
            }
        }
    }
    let calls = by_owner.into_iter().map(|(owner, entries)| {
        let services = services.clone();
        async move {
            let indexes: Vec<usize> = entries.iter().map(|(index, _, _)| *index).collect();
            let markers: Vec<(PartitionKey, TxnMarker)> = entries
                .into_iter()
                .map(|(_, key, marker)| (key, marker))
                .collect();
            let count = markers.len();
            let written = invoke_on(&services, owner, move |on: Rc<S>| async move {
                on.shard().clone().write_txn_markers(markers).await
            })
            .await
            .unwrap_or_else(|_| vec![Err(PartitionError::ShuttingDown); count]);
            indexes
                .into_iter()
                .zip(written.into_iter().map(|answer| answer.map(|_| ())))
                .collect::<Vec<_>>()
        }
    });
    for (index, answer) in join_all(calls).await.into_iter().flatten() {
        answers[index] = Some(answer);
    }
    answers
        .into_iter()
        .map(|answer| answer.unwrap_or(Err(PartitionError::ShuttingDown)))
        .collect()
}
