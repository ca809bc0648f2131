//! The markers of a decided transaction: one control batch per partition it added, appended on
//! the partition's owner, and the completion of each group's transactional offset commits.
//!
//! A partition of a topic deleted since it was added gets no marker (its data is gone with it),
//! as in Kafka. Owners are asked in parallel, one call per owner shard. The two calls into the
//! layers below are each behind one private function ([`append_on_owner`],
//! [`complete_group`]).

use std::collections::BTreeMap;
use std::rc::Rc;

use crate::catalog::ShardId;
use crate::shard::join_all;
use crate::shard::messages::PartitionKey;
use crate::state::{MarkerSpec, TxnError, TxnRecord};
use crate::TxnServices;

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

/// Appends the marker to `keys` on their owner (txn-path's `Shard::write_txn_markers`, over
/// txn-log's `PartitionLog::append_txn_marker`; neither is on main yet).
async fn append_on_owner<S: TxnServices>(
    _services: Rc<S>,
    owner: ShardId,
    keys: Vec<PartitionKey>,
    _marker: MarkerSpec,
) -> Result<(), TxnError> {
    Err(TxnError::CoordinatorNotAvailable(format!(
        "markers for {} partitions on shard {owner} cannot be written: this build has no \
         marker append (issue #13, txn-path)",
        keys.len()
    )))
}

/// Completes `group`'s transactional offset commits (txn-groups'
/// `spate_group::coordinator::complete_transaction`; not on main yet).
async fn complete_group<S: TxnServices>(
    _services: Rc<S>,
    group: String,
    _marker: MarkerSpec,
) -> Result<(), TxnError> {
    Err(TxnError::CoordinatorNotAvailable(format!(
        "the offsets of group {group} cannot be completed: this build has no transactional \
         offset commits (issue #13, txn-groups)"
    )))
}
