//! Kafka Fetch (v4–17): long poll (`max_wait_ms`, `min_bytes`, woken by an append on any
//! fetched partition), `max_bytes` and `partition_max_bytes`, read by the owning shards as the
//! native fetch reads (`handlers::data::route`, `wait_for_any_append`).
//!
//! As Kafka does:
//! - Whole batches only. A fetch offset inside a batch gets that whole batch (the client skips
//!   the records before its offset). The first batch of the first partition with data is
//!   returned whole even when larger than either limit, so a consumer always progresses; any
//!   later batch that does not fit the limits left is not sent.
//! - A fetch offset before the log start or past the log end is OFFSET_OUT_OF_RANGE with the
//!   partition's log start and high watermark; at the high watermark the answer is empty.
//! - The last stable offset is the high watermark (no transactions yet), so read_committed and
//!   read_uncommitted read the same records; read_committed gets an empty aborted list.
//! - Topics by id from v13 (UNKNOWN_TOPIC_ID for an id this broker does not have).
//! - A leader epoch newer than this broker's (0: a single broker never changes leader) is
//!   UNKNOWN_LEADER_EPOCH.
//! - Fetch sessions (KIP-227): this broker keeps none. Every full fetch is answered with session
//!   id 0, which is how Kafka answers when its session cache is full; clients then keep sending
//!   full fetches. An incremental fetch (epoch > 0) names a session this broker never gave, so
//!   it gets FETCH_SESSION_ID_NOT_FOUND, and the client starts over with a full fetch.
//!
//! Stored batches are served as Kafka bytes by `conversion`: Kafka-written ones as stored,
//! native ones converted (and cached). The records of a partition are copied once into its
//! response field.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, PartitionData,
};
use spate_kafka_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::batch::BATCH_HEADER_BYTES;

use super::conversion::kafka_batch;
use super::data::{named_topic, owned_partition};
use super::errors::kafka_code;
use super::KafkaContext;
use crate::catalog::ShardId;
use crate::handlers::data::{route, wait_for_any_append};
use crate::handlers::partition_error_code;
use crate::shard::messages::{FetchOutcome, FetchPartition, PartitionError};

/// First Fetch version that names topics by id (KIP-516).
const TOPIC_IDS_VERSION: i16 = 13;
/// First Fetch version whose partitions carry their log start offset.
const LOG_START_OFFSET_VERSION: i16 = 5;
/// Kafka's `isolation_level` for read_committed.
const READ_COMMITTED: i8 = 1;
/// This broker's leader epoch for every partition (a single broker; Metadata says the same).
const LEADER_EPOCH: i32 = 0;

/// The bytes a fetch's answer may carry: its `max_bytes` within the broker's cap.
pub(super) fn response_bytes_max(request: &FetchRequest, fetch_response_bytes_max: usize) -> usize {
    usize::try_from(request.max_bytes)
        .unwrap_or(0)
        .min(fetch_response_bytes_max)
}

/// How many stored bytes to read for `kafka_bytes_max` bytes of Kafka batches. Storage counts
/// each batch with Spate's 64-byte header, which a Kafka consumer is not sent (and a native
/// batch changes size when converted); reading a quarter more, and at least one header more,
/// lets a partition's answer fill its limit in the common case. What was read beyond the limit
/// is dropped by `Answer::read`, so the limits hold exactly whatever is read.
fn stored_bytes_max(kafka_bytes_max: usize) -> usize {
    kafka_bytes_max
        .saturating_add(kafka_bytes_max / 4)
        .saturating_add(BATCH_HEADER_BYTES)
}

/// Where a partition's answer comes from: refused here with a Kafka code, or read by its owner.
enum Source {
    Refused(i16),
    Read,
}

pub(crate) async fn fetch(
    context: &KafkaContext<'_>,
    version: i16,
    request: FetchRequest,
) -> FetchResponse {
    // This broker gives no session (see the module documentation), so no incremental fetch can
    // name one.
    if request.session_epoch > 0 {
        return FetchResponse::default()
            .with_error_code(ResponseError::FetchSessionIdNotFound.code())
            .with_session_id(0);
    }
    let limits = &context.config().limits;
    let wait_ms = u64::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(limits.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let response_bytes_max = response_bytes_max(&request, limits.fetch_response_bytes_max);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let by_id = version >= TOPIC_IDS_VERSION;
    let snapshot = context.services.snapshot();

    let mut sources = Vec::new();
    let mut targets: Vec<Result<(ShardId, FetchPartition), PartitionError>> = Vec::new();
    for topic in &request.topics {
        let found = named_topic(context, &snapshot, by_id, &topic.topic, topic.topic_id);
        for partition in &topic.partitions {
            let target = found.as_ref().map_err(|code| *code).and_then(|topic| {
                if partition.current_leader_epoch > LEADER_EPOCH {
                    return Err(ResponseError::UnknownLeaderEpoch.code());
                }
                owned_partition(topic, partition.partition)
                    .ok_or(ResponseError::UnknownTopicOrPartition.code())
            });
            match target {
                Ok((owner, key)) => {
                    sources.push(Source::Read);
                    let partition_bytes_max = usize::try_from(partition.partition_max_bytes)
                        .unwrap_or(0)
                        .min(response_bytes_max);
                    targets.push(Ok((
                        owner,
                        FetchPartition {
                            key,
                            offset: partition.fetch_offset,
                            max_bytes: stored_bytes_max(partition_bytes_max),
                        },
                    )));
                }
                Err(code) => sources.push(Source::Refused(code)),
            }
        }
    }
    let refused_any = sources
        .iter()
        .any(|source| matches!(source, Source::Refused(_)));

    let results = loop {
        // A partition still opening after the start is waited for until the fetch's own
        // deadline (max_wait_ms).
        let results = route(
            context.services,
            targets.clone(),
            move |shard, partitions| shard.fetch(partitions, deadline),
        )
        .await;
        let total: usize = results.iter().flatten().map(FetchOutcome::bytes).sum();
        let failed = refused_any || results.iter().any(Result::is_err);
        let now = Instant::now();
        if total >= min_bytes
            || failed
            || now >= deadline
            || context.services.shutdown.is_requested()
        {
            break results;
        }
        wait_for_any_append(context.services, &targets, deadline - now).await;
    };

    let mut answer = Answer {
        version,
        read_committed: request.isolation_level == READ_COMMITTED,
        response_bytes_left: response_bytes_max,
        first_batch_pending: true,
        cache_bytes_max: limits.kafka_conversion_cache_bytes_max,
    };
    let mut results = results.into_iter();
    let mut targets = targets.iter();
    let mut sources = sources.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = FetchableTopicResponse::default();
            if by_id {
                response.topic_id = topic.topic_id;
            } else {
                response.topic = topic.topic.clone();
            }
            response.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let index = partition.partition;
                    match sources.next().expect("a source per partition") {
                        Source::Refused(code) => answer.refused(index, code),
                        Source::Read => {
                            let result = results.next().expect("a result per read");
                            let target = targets.next().expect("a target per read");
                            let (_, target) = target.as_ref().expect("reads are routed");
                            let partition_bytes_max =
                                usize::try_from(partition.partition_max_bytes).unwrap_or(0);
                            answer.read(index, target, partition_bytes_max, result)
                        }
                    }
                })
                .collect();
            response
        })
        .collect();
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(responses)
}

/// Builds partition answers in request order, keeping the response within its limits.
struct Answer {
    version: i16,
    read_committed: bool,
    response_bytes_left: usize,
    /// Whether no batch has been kept yet: the first one is kept whatever its size.
    first_batch_pending: bool,
    cache_bytes_max: usize,
}

impl Answer {
    fn partition(&self, index: i32) -> PartitionData {
        PartitionData::default()
            .with_partition_index(index)
            .with_aborted_transactions(self.read_committed.then(Vec::new))
    }

    fn refused(&self, index: i32, code: i16) -> PartitionData {
        self.partition(index)
            .with_error_code(code)
            .with_high_watermark(-1)
            .with_records(None)
    }

    fn read(
        &mut self,
        index: i32,
        target: &FetchPartition,
        partition_bytes_max: usize,
        result: Result<FetchOutcome, PartitionError>,
    ) -> PartitionData {
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                tracing::debug!(partition = index, %error, "Kafka fetch refused");
                let (high_watermark, log_start_offset) = match error {
                    PartitionError::OffsetOutOfRange {
                        high_watermark,
                        log_start_offset,
                        ..
                    } => (high_watermark as i64, log_start_offset as i64),
                    _ => (-1, -1),
                };
                return self
                    .with_offsets(self.partition(index), high_watermark, log_start_offset)
                    .with_error_code(kafka_code(partition_error_code(&error)))
                    .with_records(None);
            }
        };
        let mut partition_bytes_left = partition_bytes_max;
        let mut kept: Vec<Bytes> = Vec::with_capacity(outcome.batches.len());
        let mut conversion_failed = None;
        for stored in &outcome.batches {
            let batch = match kafka_batch(target.key, stored, self.cache_bytes_max) {
                Ok(batch) => batch,
                Err(error) => {
                    conversion_failed = Some(error);
                    break;
                }
            };
            let fits =
                batch.len() <= self.response_bytes_left && batch.len() <= partition_bytes_left;
            if !fits && !self.first_batch_pending {
                break;
            }
            self.first_batch_pending = false;
            self.response_bytes_left = self.response_bytes_left.saturating_sub(batch.len());
            partition_bytes_left = partition_bytes_left.saturating_sub(batch.len());
            kept.push(batch);
        }
        let high_watermark = outcome.high_watermark as i64;
        let partition = self.with_offsets(
            self.partition(index),
            high_watermark,
            outcome.log_start_offset as i64,
        );
        if let (Some(error), true) = (&conversion_failed, kept.is_empty()) {
            tracing::error!(
                partition = index,
                offset = target.offset,
                %error,
                "a stored batch cannot be served as a Kafka batch"
            );
            return partition
                .with_error_code(ResponseError::KafkaStorageError.code())
                .with_records(None);
        }
        partition.with_records(Some(concatenate(kept)))
    }

    fn with_offsets(
        &self,
        partition: PartitionData,
        high_watermark: i64,
        log_start_offset: i64,
    ) -> PartitionData {
        // No transactions yet: everything below the high watermark is stable.
        let partition = partition
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(high_watermark);
        if self.version >= LOG_START_OFFSET_VERSION {
            partition.with_log_start_offset(log_start_offset)
        } else {
            partition
        }
    }
}

/// One partition's batches as its records field: one buffer, copied once (a single batch is
/// served as it is).
fn concatenate(batches: Vec<Bytes>) -> Bytes {
    if batches.len() == 1 {
        return batches.into_iter().next().expect("one batch");
    }
    let mut records = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
    for batch in batches {
        records.extend_from_slice(&batch);
    }
    records.freeze()
}
