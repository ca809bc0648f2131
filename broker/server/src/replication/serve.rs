//! The leader's side of replication: a follower's `ReplicaFetch`.
//!
//! The request names partitions by topic name and id; each goes to its owning shard
//! (`shard::router`), which checks the follower's leader epoch and position (KIP-320's
//! diverging epoch), records its progress (which may move the high watermark and answer
//! acks=all writes) and reads whole batches as stored, up to the leader's durable end. When
//! nothing was read, the handler long-polls: one `Shard::wait_for_replica_data` per owner, ended
//! by the first new durable data, a high-watermark or role change, or `max_wait_ms` (capped by
//! `fetch_wait_ms_max`), then reads once more so the follower learns the new state at once.
//!
//! Byte bounds: each partition reads at most `min(partition_max_bytes, max_bytes)`, and the
//! answer keeps whole batches within `max_bytes` (its first batch always, as a consumer fetch),
//! which the connection already holds from its budgets (`handlers::response_allowance`).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use glommio::channels::local_channel;
use spate_protocol::api::{
    RecordSet, ReplicaFetchPartitionResponse, ReplicaFetchRequest, ReplicaFetchResponse,
    ReplicaFetchTopicResponse, NO_EPOCH, NO_NODE,
};
use spate_protocol::error::ErrorCode;

use crate::catalog::ShardId;
use crate::handlers::partition_error_code;
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{
    PartitionError, PartitionKey, ReplicaFetchAnswer, ReplicaFetchPartition,
};
use crate::shard::router::scatter;

/// Answers a follower's fetch (see the module documentation).
pub async fn replica_fetch(
    services: &Rc<Services>,
    request: &ReplicaFetchRequest,
) -> ReplicaFetchResponse {
    let limits = &services.config.limits;
    let wait = Duration::from_millis(u64::from(request.max_wait_ms).min(limits.fetch_wait_ms_max));
    let deadline = Instant::now() + wait;
    let response_bytes_max = (request.max_bytes as usize).min(limits.fetch_response_bytes_max);
    let follower = request.replica_id;
    let snapshot = services.snapshot();

    let mut targets: Vec<Result<(ShardId, ReplicaFetchPartition), PartitionError>> = Vec::new();
    for topic in &request.topics {
        let found = snapshot
            .topic(&topic.name)
            .filter(|found| found.id == topic.topic_id);
        for partition in &topic.partitions {
            let max_bytes = (partition.partition_max_bytes as usize).min(response_bytes_max);
            targets.push(
                found
                    .and_then(|found| found.owner_of(partition.partition))
                    .map(|owner| {
                        (
                            owner,
                            ReplicaFetchPartition {
                                key: PartitionKey {
                                    topic_id: topic.topic_id,
                                    partition: partition.partition,
                                },
                                current_leader_epoch: partition.current_leader_epoch,
                                fetch_offset: partition.fetch_offset,
                                last_fetched_epoch: partition.last_fetched_epoch,
                                max_bytes: u32::try_from(max_bytes).unwrap_or(u32::MAX),
                            },
                        )
                    })
                    .ok_or(PartitionError::UnknownTopicOrPartition),
            );
        }
    }

    let mut answers = fetch_once(services, follower, &targets).await;
    let nothing_read = answers.iter().all(|answer| {
        answer.error.is_none() && answer.diverging.is_none() && answer.batches.is_empty()
    });
    let now = Instant::now();
    if nothing_read && now < deadline && !services.shutdown.is_requested() {
        wait_for_replica_data(services, &targets, deadline - now).await;
        answers = fetch_once(services, follower, &targets).await;
    }

    let mut budget = response_bytes_max;
    let mut first = true;
    let mut answers = answers.into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| ReplicaFetchTopicResponse {
            name: topic.name.clone(),
            topic_id: topic.topic_id,
            partitions: topic
                .partitions
                .iter()
                .map(|partition| {
                    let answer = answers
                        .next()
                        .unwrap_or_else(|| refused(PartitionError::UnknownTopicOrPartition));
                    partition_answer(partition.partition, answer, &mut budget, &mut first)
                })
                .collect(),
        })
        .collect();
    ReplicaFetchResponse {
        error_code: ErrorCode::None,
        topics,
    }
}

fn refused(error: PartitionError) -> ReplicaFetchAnswer {
    ReplicaFetchAnswer {
        error: Some(error),
        ..ReplicaFetchAnswer::default()
    }
}

/// One read of every partition on its owner; output `i` answers target `i`.
async fn fetch_once(
    services: &Rc<Services>,
    follower: spate_protocol::NodeId,
    targets: &[Result<(ShardId, ReplicaFetchPartition), PartitionError>],
) -> Vec<ReplicaFetchAnswer> {
    let mut answers: Vec<Option<ReplicaFetchAnswer>> = Vec::with_capacity(targets.len());
    let mut routed = Vec::new();
    let mut positions = Vec::new();
    for (index, target) in targets.iter().enumerate() {
        match target {
            Ok((owner, partition)) => {
                positions.push(index);
                routed.push((*owner, partition.clone()));
                answers.push(None);
            }
            Err(error) => answers.push(Some(refused(error.clone()))),
        }
    }
    let results = scatter(services, routed, move |shard, partitions| async move {
        shard
            .replica_fetch(follower, partitions)
            .await
            .into_iter()
            .map(Ok)
            .collect()
    })
    .await;
    for (index, result) in positions.into_iter().zip(results) {
        answers[index] = Some(result.unwrap_or_else(refused));
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every target answered"))
        .collect()
}

/// Waits until any owner reports new durable data, a high-watermark or a role change on one of
/// the partitions, or `wait` passes (as `handlers::data::wait_for_any_append` for consumers).
async fn wait_for_replica_data(
    services: &Rc<Services>,
    targets: &[Result<(ShardId, ReplicaFetchPartition), PartitionError>],
    wait: Duration,
) {
    let mut by_owner: BTreeMap<ShardId, Vec<(PartitionKey, u64)>> = BTreeMap::new();
    for (owner, partition) in targets.iter().flatten() {
        by_owner
            .entry(*owner)
            .or_default()
            .push((partition.key, partition.fetch_offset));
    }
    if by_owner.is_empty() {
        return;
    }
    let (sender, receiver) = local_channel::new_bounded(by_owner.len());
    let sender = Rc::new(sender);
    let wait_ms = wait.as_millis().try_into().unwrap_or(u64::MAX);
    // Dropped (cancelled) once the first owner answers; a remote owner's wait ends by itself.
    let _waits: Vec<glommio::Task<()>> = by_owner
        .into_iter()
        .map(|(owner, partitions)| {
            let services = services.clone();
            let sender = sender.clone();
            glommio::spawn_local(async move {
                let _ = invoke_on(&services, owner, move |on: Rc<Services>| async move {
                    on.shard.wait_for_replica_data(&partitions, wait_ms).await
                })
                .await;
                let _ = sender.try_send(());
            })
        })
        .collect();
    let _ = glommio::timer::timeout(wait, async {
        receiver.recv().await;
        Ok(())
    })
    .await;
}

/// One partition's answer on the wire, keeping whole batches within the answer's budget (the
/// answer's first batch always).
fn partition_answer(
    partition: u32,
    answer: ReplicaFetchAnswer,
    budget: &mut usize,
    first: &mut bool,
) -> ReplicaFetchPartitionResponse {
    let mut response = ReplicaFetchPartitionResponse {
        partition,
        high_watermark: answer.high_watermark,
        log_start_offset: answer.log_start_offset,
        log_end: answer.log_end,
        ..ReplicaFetchPartitionResponse::default()
    };
    if let Some(error) = answer.error {
        response.error_code = partition_error_code(&error);
        response.error_message = Some(error.to_string());
        match error {
            PartitionError::NotLeaderOrFollower {
                leader,
                leader_epoch,
            } => {
                response.leader_id = leader.unwrap_or(NO_NODE);
                response.leader_epoch = leader_epoch;
            }
            PartitionError::FencedLeaderEpoch { current, .. }
            | PartitionError::UnknownLeaderEpoch { current, .. } => {
                response.leader_epoch = current;
            }
            PartitionError::OffsetOutOfRange {
                log_start_offset,
                high_watermark,
                ..
            } => {
                response.log_start_offset = log_start_offset;
                response.high_watermark = high_watermark;
            }
            _ => {}
        }
        return response;
    }
    if let Some((epoch, end_offset)) = answer.diverging {
        response.diverging_epoch = epoch;
        response.diverging_end_offset = end_offset;
        return response;
    }
    debug_assert_eq!(response.diverging_epoch, NO_EPOCH);
    let mut kept: Vec<Bytes> = Vec::with_capacity(answer.batches.len());
    for batch in answer.batches {
        if batch.len() > *budget && !*first {
            break;
        }
        *budget = budget.saturating_sub(batch.len());
        *first = false;
        kept.push(batch);
    }
    response.records = RecordSet::from_chunks(kept);
    response
}
