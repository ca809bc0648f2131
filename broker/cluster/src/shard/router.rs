//! Split, forward, join: a request naming partitions on several shards becomes one call per
//! owning shard (run concurrently, locally or through the mesh), and the answers are put back in
//! the order the partitions were named.
//!
//! Routing uses the catalog snapshot the handler resolved names with; if a partition moved or
//! vanished in between, the owner answers `UnknownTopicOrPartition` and the client retries with
//! fresh metadata, as with Kafka.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use super::join_all;
use super::mesh::{invoke_on, ShardServices};
use super::messages::PartitionError;
use super::Shard;
use crate::catalog::ShardId;

/// Sends each shard its part of `items` (given as `(owner, item)`) and runs `run` there on
/// them; `run` answers its items one for one, in order. Output `i` answers item `i`.
pub async fn scatter<S, T, R, F, Fut>(
    services: &Rc<S>,
    items: Vec<(ShardId, T)>,
    run: F,
) -> Vec<Result<R, PartitionError>>
where
    S: ShardServices,
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Rc<Shard<S::Files>>, Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<R, PartitionError>>> + 'static,
{
    scatter_on(services, items, move |target: Rc<S>, owned_items| {
        run(target.shard().clone(), owned_items)
    })
    .await
}

/// [`scatter`] for work that needs the owner's services, not only its shard (a transactional
/// produce asks the transaction coordinator from the owner before it appends).
pub async fn scatter_on<S, T, R, F, Fut>(
    services: &Rc<S>,
    items: Vec<(ShardId, T)>,
    run: F,
) -> Vec<Result<R, PartitionError>>
where
    S: ShardServices,
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Rc<S>, Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<Result<R, PartitionError>>> + 'static,
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
        let services = services.clone();
        let run = run.clone();
        positions.push(indexes);
        calls.push(async move {
            invoke_on(&services, owner, move |target: Rc<S>| {
                run(target, owned_items)
            })
            .await
        });
    }
    let answers = join_all(calls).await;

    let mut ordered: Vec<Option<Result<R, PartitionError>>> = (0..count).map(|_| None).collect();
    for (indexes, answer) in positions.into_iter().zip(answers) {
        match answer {
            Ok(results) => {
                assert_eq!(
                    results.len(),
                    indexes.len(),
                    "a shard answers each of its items"
                );
                for (index, result) in indexes.into_iter().zip(results) {
                    ordered[index] = Some(result);
                }
            }
            Err(stopping) => {
                for index in indexes {
                    ordered[index] = Some(Err(stopping.into()));
                }
            }
        }
    }
    ordered
        .into_iter()
        .map(|answer| answer.expect("every item belongs to exactly one owner"))
        .collect()
}

/// Runs `run` on every shard (topic creation, deletion, config changes) and returns the first
/// error, if any.
pub async fn broadcast<S, F, Fut>(services: &Rc<S>, run: F) -> Result<(), PartitionError>
where
    S: ShardServices,
    F: Fn(Rc<Shard<S::Files>>) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Result<(), PartitionError>> + 'static,
{
    let calls: Vec<_> =
        (0..services.shard_count)
            .map(|target| {
                let services = services.clone();
                let run = run.clone();
                async move {
                    invoke_on(&services, target, move |on: Rc<S>| run(on.shard().clone())).await
                }
            })
            .collect();
    for answer in join_all(calls).await {
        answer??;
    }
    Ok(())
}
