//! The markers of a decided transaction: one control batch per partition it added, appended on
//! the partition's owner, and the completion of each group's transactional offset commits.
//!
//! A partition of a topic deleted since it was added gets no marker (its data is gone with it),
//! as in Kafka. Owners are asked in parallel, one call per owner shard ([`append_on_owner`]);
//! each group through its coordinator ([`complete_group`]).

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::catalog::ShardId;
use crate::partition::coordinator_error;
use crate::shard::join_all;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{PartitionError, PartitionKey, TxnMarker, TxnResult};
use crate::state::{MarkerSpec, TxnError, TxnRecord};
use crate::TxnServices;

/// The coordinator epoch markers carry. Kafka's is the state partition's leader epoch, so that
/// partitions refuse markers of a deposed coordinator; a single broker has one coordinator per
/// state partition for the life of its data directory, so it is always 0.
const COORDINATOR_EPOCH: i32 = 0;

/// Writes `marker` to every partition and group of `decided`; Ok once every one took it.
pub(super) async fn write_markers<S: TxnServices>(
    services: &Rc<S>,
    decided: &TxnRecord,
    marker: MarkerSpec,
) -> Result<(), TxnError> {
    let snapshot = services.snapshot();
    let mut by_owner: BTreeMap<ShardId, Vec<PartitionKey>> = BTreeMap::new();
    for (topic, partition) in &decided.partitions {
        let Some(metadata) = snapshot.topic(topic) else {
            tracing::debug!(
                topic,
                partition,
                "no marker for a partition of a deleted topic"
            );
            continue;
        };
        let Some(owner) = metadata.owner_of(*partition) else {
            continue;
        };
        by_owner.entry(owner).or_default().push(PartitionKey {
            topic_id: metadata.id,
            partition: *partition,
        });
    }
    let appends = by_owner
        .into_iter()
        .map(|(owner, keys)| append_on_owner(services.clone(), owner, keys, marker));
    for outcome in join_all(appends).await {
        outcome?;
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

/// Appends the marker to `keys` on their owner (`Shard::write_txn_markers`: durable when it
/// answers). A partition whose topic was deleted since takes no marker; any other failure
/// (offline, disk full, still opening after a start) fails the round, which is retried.
async fn append_on_owner<S: TxnServices>(
    services: Rc<S>,
    owner: ShardId,
    keys: Vec<PartitionKey>,
    marker: MarkerSpec,
) -> Result<(), TxnError> {
    let result = if marker.commit {
        TxnResult::Commit
    } else {
        TxnResult::Abort
    };
    let markers: Vec<(PartitionKey, TxnMarker)> = keys
        .iter()
        .map(|key| {
            let marker = TxnMarker {
                producer_id: marker.producer_id,
                producer_epoch: marker.producer_epoch,
                coordinator_epoch: COORDINATOR_EPOCH,
                result,
            };
            (*key, marker)
        })
        .collect();
    let answers = invoke_on(&services, owner, move |on: Rc<S>| async move {
        on.shard().clone().write_txn_markers(markers).await
    })
    .await
    .map_err(|_| TxnError::ShuttingDown)?;
    for (key, answer) in keys.iter().zip(answers) {
        match answer {
            Ok(_) => {}
            // Deleted since it was added (its data went with it); Kafka skips it too.
            Err(PartitionError::UnknownTopicOrPartition) => {}
            // A newer epoch of the producer closed the partition's transaction already: the
            // coordinator never writes an epoch below one it handed out, so this marker is
            // stale and has nothing left to close.
            Err(PartitionError::ProducerFenced(reason)) => tracing::warn!(
                topic_id = key.topic_id,
                partition = key.partition,
                producer_id = marker.producer_id,
                %reason,
                "a transaction marker was refused as stale; the partition moved past it"
            ),
            Err(error) => return Err(coordinator_error(&error)),
        }
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
