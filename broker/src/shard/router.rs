//! Split, forward, join: a request naming partitions on several shards becomes one request per
//! owning shard (run concurrently, locally or through the mesh), and the answers are put back in
//! the order the partitions were named.
//!
//! Routing uses the catalog snapshot the handler resolved names with; if a partition moved or
//! vanished in between, the owner answers `UnknownTopicOrPartition` and the client retries with
//! fresh metadata, as with Kafka.

use std::collections::BTreeMap;
use std::rc::Rc;

use super::messages::{PartitionError, ShardRequest, ShardResponse};
use super::{join_all, Shard};
use crate::catalog::ShardId;

/// Sends each shard its part of `items` (given as `(owner, item)`), built into one request by
/// `build`, and reads each answer with `unpack`. Output `i` answers item `i`.
pub async fn scatter<T, R>(
    shard: &Rc<Shard>,
    items: Vec<(ShardId, T)>,
    build: impl Fn(Vec<T>) -> ShardRequest,
    unpack: impl Fn(ShardResponse) -> Option<Vec<Result<R, PartitionError>>>,
) -> Vec<Result<R, PartitionError>>
where
    R: 'static,
{
    let count = items.len();
    let mut by_owner: BTreeMap<ShardId, (Vec<usize>, Vec<T>)> = BTreeMap::new();
    for (index, (owner, item)) in items.into_iter().enumerate() {
        let entry = by_owner.entry(owner).or_default();
        entry.0.push(index);
        entry.1.push(item);
    }
    let mut positions = Vec::with_capacity(by_owner.len());
    let mut calls = Vec::with_capacity(by_owner.len());
    for (owner, (indexes, owned_items)) in by_owner {
        let request = build(owned_items);
        let shard = shard.clone();
        positions.push(indexes);
        calls.push(async move { shard.call(owner, request).await });
    }
    let responses = join_all(calls).await;

    let mut answers: Vec<Option<Result<R, PartitionError>>> = (0..count).map(|_| None).collect();
    for (indexes, response) in positions.into_iter().zip(responses) {
        let results = match response.map(&unpack) {
            Ok(Some(results)) if results.len() == indexes.len() => results,
            Ok(_) => {
                // A wrong-shaped answer is a bug in the owner; fail those partitions loudly.
                debug_assert!(false, "owner answered with the wrong response shape");
                indexes
                    .iter()
                    .map(|_| {
                        Err(PartitionError::Storage(
                            "internal: mismatched shard response".into(),
                        ))
                    })
                    .collect()
            }
            Err(error) => indexes.iter().map(|_| Err(error.clone())).collect(),
        };
        for (index, result) in indexes.into_iter().zip(results) {
            answers[index] = Some(result);
        }
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every item belongs to exactly one owner"))
        .collect()
}

/// Runs `make(shard)` on every shard (topic creation, deletion, config changes) and returns the
/// first error, if any.
pub async fn broadcast(
    shard: &Rc<Shard>,
    make: impl Fn() -> ShardRequest,
) -> Result<(), PartitionError> {
    let calls: Vec<_> = (0..shard.shard_count)
        .map(|target| {
            let shard = shard.clone();
            let request = make();
            async move { shard.call(target, request).await }
        })
        .collect();
    for response in join_all(calls).await {
        match response? {
            ShardResponse::Done(result) => result?,
            _ => {
                return Err(PartitionError::Storage(
                    "internal: mismatched shard response".into(),
                ))
            }
        }
    }
    Ok(())
}
