//! Kafka ListOffsets (v1–10) and OffsetForLeaderEpoch (v2–4).
//!
//! ListOffsets asks the owning shards as the native one does (`Shard::list_offsets`): earliest
//! (-2) is the log start, latest (-1) the high watermark (read_committed, `isolation_level` 1
//! from v2: the last stable offset), max timestamp (-3, KIP-734, v7+) the first record with the
//! largest timestamp, a timestamp the first record at or after it (read_committed: none at or
//! past the last stable offset, as Kafka's `Partition.fetchOffsetForTimestamp`).
//! Earliest local (-4, v8+) is the log start (all of a log is local); earliest pending upload
//! (-5, v9+) has no answer (offset -1), as in a Kafka without tiered storage.
//!
//! Leader epochs (KIP-320): a request's `current_leader_epoch` (-1: none given) is checked
//! against the partition's epoch in this broker's metadata before anything is read: an older one
//! is FENCED_LEADER_EPOCH (the client's metadata is stale), a newer one UNKNOWN_LEADER_EPOCH
//! (this broker's is); a broker that does not lead the partition answers NOT_LEADER_OR_FOLLOWER
//! (the owning shard checks that). A single broker leads every partition at epoch 0.
//!
//! OffsetForLeaderEpoch answers from the partition's leader-epoch cache
//! (`Shard::end_offset_for_epoch`): the largest epoch at or below the one asked for and where it
//! ends (the start of the next epoch, or the log end for the latest), or UNDEFINED (-1, -1)
//! when the log holds no epoch at or below it, as Kafka's `LeaderEpochFileCache.endOffsetFor`.

use spate_kafka_protocol::kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse,
};
use spate_kafka_protocol::kafka_protocol::ResponseError;

use super::data::{named_topic, owned_partition};
use super::errors::kafka_code;
use super::KafkaContext;
use crate::catalog::{ShardId, TopicMetadata};
use crate::handlers::data::route_or_refuse;
use crate::handlers::partition_error_code;
use crate::shard::messages::{
    Isolation, PartitionError, PartitionKey, LIST_OFFSETS_EARLIEST, LIST_OFFSETS_LATEST,
    LIST_OFFSETS_MAX_TIMESTAMP,
};
use spate_security::Operation;

/// A request's `current_leader_epoch` when the client gives none.
const NO_LEADER_EPOCH: i32 = -1;

/// The partition's leader epoch in this broker's metadata, if a client's
/// `current_leader_epoch` agrees with it (see the module documentation); `Err`: the Kafka code
/// refusing it. A partition the topic does not have passes (its owner lookup refuses it).
pub(crate) fn check_leader_epoch(
    topic: &TopicMetadata,
    partition: i32,
    local: spate_protocol::NodeId,
    requested: i32,
) -> Result<i32, i16> {
    let Ok(partition) = u32::try_from(partition) else {
        return Ok(0);
    };
    let current = topic.role(partition, local).leader_epoch;
    if requested == NO_LEADER_EPOCH || requested == current {
        Ok(current)
    } else if requested < current {
        Err(ResponseError::FencedLeaderEpoch.code())
    } else {
        Err(ResponseError::UnknownLeaderEpoch.code())
    }
}
/// NOT_LEADER_OR_FOLLOWER unless this broker leads the partition in its metadata (a single
/// broker leads every partition). Requests the owning shard answers check this there too.
pub(crate) fn check_leader(
    topic: &TopicMetadata,
    partition: i32,
    local: spate_protocol::NodeId,
) -> Result<(), i16> {
    let Ok(partition) = u32::try_from(partition) else {
        return Ok(());
    };
    if topic.role(partition, local).leader == Some(local) {
        Ok(())
    } else {
        Err(ResponseError::NotLeaderOrFollower.code())
    }
}

/// Kafka's "earliest local" (KIP-405) and "earliest pending upload" (KIP-1023) targets.
const LIST_OFFSETS_EARLIEST_LOCAL: i64 = -4;
const LIST_OFFSETS_EARLIEST_PENDING_UPLOAD: i64 = -5;
/// Kafka's `isolation_level` for read_committed (ListOffsets v2+; v1 reads uncommitted).
const READ_COMMITTED: i8 = 1;
/// First ListOffsets version whose answers carry a leader epoch.
const LIST_OFFSETS_LEADER_EPOCH_VERSION: i16 = 4;

/// The first ListOffsets version that may ask for a special target (`None`: not special).
fn special_target_version(target: i64) -> Option<i16> {
    match target {
        LIST_OFFSETS_LATEST | LIST_OFFSETS_EARLIEST => Some(0),
        LIST_OFFSETS_MAX_TIMESTAMP => Some(7),
        LIST_OFFSETS_EARLIEST_LOCAL => Some(8),
        LIST_OFFSETS_EARLIEST_PENDING_UPLOAD => Some(9),
        _ => None,
    }
}

/// A partition and what offset of it is asked for (a timestamp or a special target).
type OffsetTarget = (PartitionKey, i64);
/// A partition and the leader epoch whose end is asked for.
type EpochTarget = (PartitionKey, i32);

pub(crate) async fn list_offsets(
    context: &KafkaContext<'_>,
    version: i16,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let snapshot = context.services.snapshot();
    let local = snapshot.local_node;
    // Per partition in request order: refused (a Kafka code; 0 with no offset for the earliest
    // pending upload, which no shard is asked) or asked of its owner.
    let mut asked: Vec<Result<(ShardId, OffsetTarget), i16>> = Vec::new();
    // Per partition in request order: its leader epoch, for the answer.
    let mut epochs: Vec<i32> = Vec::new();
    for topic in &request.topics {
        let found = named_topic(
            context,
            &snapshot,
            false,
            &topic.name,
            Default::default(),
            Operation::Describe,
        );
        for partition in &topic.partitions {
            let target = match partition.timestamp {
                LIST_OFFSETS_EARLIEST_LOCAL => LIST_OFFSETS_EARLIEST,
                target => target,
            };
            let mut epoch = 0;
            let owner = found.as_ref().map_err(|code| *code).and_then(|topic| {
                epoch = check_leader_epoch(
                    topic,
                    partition.partition_index,
                    local,
                    partition.current_leader_epoch,
                )?;
                if target < 0 {
                    match special_target_version(partition.timestamp) {
                        Some(first) if version >= first => {}
                        Some(_) => return Err(ResponseError::UnsupportedVersion.code()),
                        None => return Err(ResponseError::InvalidRequest.code()),
                    }
                }
                owned_partition(topic, partition.partition_index)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            });
            epochs.push(epoch);
            asked.push(match owner {
                Err(code) => Err(code),
                Ok(_) if target == LIST_OFFSETS_EARLIEST_PENDING_UPLOAD => Err(0),
                Ok((owner, key)) => Ok((owner, (key, target))),
            });
        }
    }
    let isolation = match request.isolation_level {
        READ_COMMITTED => Isolation::ReadCommitted,
        _ => Isolation::ReadUncommitted,
    };
    let mut answers = route_or_refuse(context.services, asked, move |shard, partitions| {
        shard.list_offsets(partitions, isolation)
    })
    .await
    .into_iter();
    let mut epochs = epochs.into_iter();
    let with_epoch = version >= LIST_OFFSETS_LEADER_EPOCH_VERSION;
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let answer = ListOffsetsPartitionResponse::default()
                        .with_partition_index(partition.partition_index);
                    let epoch = epochs.next().expect("an epoch per partition");
                    let (code, offset, timestamp) =
                        match answers.next().expect("an answer per partition") {
                            Err(code) => (code, -1, -1),
                            Ok(Ok(found)) => (0, found.offset, found.timestamp),
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "Kafka ListOffsets refused");
                                (kafka_code(partition_error_code(&error)), -1, -1)
                            }
                        };
                    let answer = answer
                        .with_error_code(code)
                        .with_offset(offset)
                        .with_timestamp(timestamp);
                    if with_epoch && offset >= 0 {
                        answer.with_leader_epoch(epoch)
                    } else {
                        answer
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

pub(crate) async fn offset_for_leader_epoch(
    context: &KafkaContext<'_>,
    _version: i16,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let snapshot = context.services.snapshot();
    let local = snapshot.local_node;
    let mut asked: Vec<Result<(ShardId, EpochTarget), i16>> = Vec::new();
    for topic in &request.topics {
        let found = named_topic(
            context,
            &snapshot,
            false,
            &topic.topic,
            Default::default(),
            Operation::Describe,
        );
        for partition in &topic.partitions {
            let owner = found.as_ref().map_err(|code| *code).and_then(|topic| {
                check_leader_epoch(
                    topic,
                    partition.partition,
                    local,
                    partition.current_leader_epoch,
                )?;
                // A consumer asks the leader only (Kafka's `fetchOnlyFromLeader`).
                check_leader(topic, partition.partition, local)?;
                owned_partition(topic, partition.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            });
            asked.push(owner.map(|(owner, key)| (owner, (key, partition.leader_epoch))));
        }
    }
    let mut ends = route_or_refuse(context.services, asked, |shard, partitions| async move {
        partitions
            .iter()
            .map(|(key, epoch)| shard.end_offset_for_epoch(key, *epoch))
            .collect::<Vec<Result<Option<(i32, u64)>, PartitionError>>>()
    })
    .await
    .into_iter();
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let answer = EpochEndOffset::default().with_partition(partition.partition);
                    match ends.next().expect("an answer per partition") {
                        Err(code) => answer.with_error_code(code),
                        Ok(Err(error)) => {
                            answer.with_error_code(kafka_code(partition_error_code(&error)))
                        }
                        // No epoch at or below the one asked for: Kafka's UNDEFINED_EPOCH and
                        // offset (the defaults).
                        Ok(Ok(None)) => answer,
                        Ok(Ok(Some((epoch, end_offset)))) => answer
                            .with_leader_epoch(epoch)
                            .with_end_offset(i64::try_from(end_offset).unwrap_or(i64::MAX)),
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
