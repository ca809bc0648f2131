//! Kafka Fetch (v4–18): long poll (`max_wait_ms`, `min_bytes`, woken by an append on any
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
//! - read_committed (`isolation_level` 1) reads whole batches below the last stable offset
//!   only (a batch that reaches it is not sent), and each partition answers the aborted
//!   transactions whose records meet what it sends (the consumer drops those records itself);
//!   a long poll waits for the last stable offset, which a transaction marker moves. Every
//!   answer carries the last stable offset; read_uncommitted answers carry no aborted list
//!   (null), as in Kafka.
//! - Topics by id from v13 (UNKNOWN_TOPIC_ID for an id this broker does not have).
//! - A `current_leader_epoch` older than the partition's is FENCED_LEADER_EPOCH, a newer one
//!   UNKNOWN_LEADER_EPOCH (`offsets::check_leader_epoch`; a single broker's epoch is 0); a
//!   broker that does not lead the partition answers NOT_LEADER_OR_FOLLOWER (consumers fetch
//!   from the leader only; the owning shard refuses others).
//! - Incremental fetch sessions (KIP-227), bounded, in `sessions`; a full cache answers with
//!   session id 0, as Kafka does.
//!
//! Stored batches are served as Kafka bytes by `conversion`: Kafka-written ones as stored,
//! native ones converted (and cached). Records are not copied into the response: each
//! partition's records field is encoded with a 16-byte marker, and the encoded frame is then cut
//! at the markers and the batches spliced in as they are (`FetchAnswer::into_frames`), so the
//! connection writes them with one vectored write, as the native fetch does.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::frame::{encode_response, EncodeError, FRAME_SIZE_BYTES};
use spate_kafka_protocol::kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, LeaderIdAndEpoch, NodeEndpoint, PartitionData,
};
use spate_kafka_protocol::kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse};
use spate_kafka_protocol::kafka_protocol::messages::{BrokerId, ProducerId};
use spate_kafka_protocol::kafka_protocol::protocol::HeaderVersion;
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};

use super::conversion::kafka_batch;
use super::data::{named_topic, owned_partition};
use super::errors::kafka_code;
use super::offsets::check_leader_epoch;
use super::sessions::{self, SessionBounds, SessionStep};
use super::{KafkaAnswer, KafkaContext};
use crate::catalog::ShardId;
use crate::handlers::data::{route, wait_for_any_append};
use crate::handlers::partition_error_code;
use crate::shard::messages::{FetchOutcome, FetchPartition, Isolation, PartitionError};
use spate_security::Operation;

/// First Fetch version that names topics by id (KIP-516).
const TOPIC_IDS_VERSION: i16 = 13;
/// First Fetch version whose partitions carry their log start offset.
const LOG_START_OFFSET_VERSION: i16 = 5;
/// Kafka's `isolation_level` for read_committed.
const READ_COMMITTED: i8 = 1;

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
    mut request: FetchRequest,
) -> FetchAnswer {
    let limits = &context.config().limits;
    let bounds = SessionBounds {
        sessions_max: limits.kafka_fetch_sessions_max,
        partitions_max: limits.kafka_fetch_session_partitions_max,
    };
    let session = sessions::begin(&mut request, bounds, Instant::now());
    if let SessionStep::Refused(code) = session {
        return FetchAnswer {
            response: FetchResponse::default()
                .with_error_code(code)
                .with_session_id(0),
            splices: Vec::new(),
        };
    }
    let wait_ms = u64::try_from(request.max_wait_ms)
        .unwrap_or(0)
        .min(limits.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let response_bytes_max = response_bytes_max(&request, limits.fetch_response_bytes_max);
    let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
    let isolation = match request.isolation_level {
        READ_COMMITTED => Isolation::ReadCommitted,
        _ => Isolation::ReadUncommitted,
    };
    let by_id = version >= TOPIC_IDS_VERSION;
    let snapshot = context.services.snapshot();

    let mut sources = Vec::new();
    let mut targets: Vec<Result<(ShardId, FetchPartition), PartitionError>> = Vec::new();
    for topic in &request.topics {
        let found = named_topic(
            context,
            &snapshot,
            by_id,
            &topic.topic,
            topic.topic_id,
            Operation::Read,
        );
        for partition in &topic.partitions {
            let target = found.as_ref().map_err(|code| *code).and_then(|topic| {
                check_leader_epoch(
                    topic,
                    partition.partition,
                    snapshot.local_node,
                    partition.current_leader_epoch,
                )?;
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
                            isolation,
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
        read_committed: isolation == Isolation::ReadCommitted,
        response_bytes_left: response_bytes_max,
        first_batch_pending: true,
        cache_bytes_max: limits.kafka_conversion_cache_bytes_max,
        token: response_token(),
        splices: Vec::new(),
        leaders_named: Vec::new(),
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
    let node_endpoints = answer
        .leaders_named
        .iter()
        .filter_map(|node| {
            let broker = snapshot.brokers.get(node)?;
            let (host, port) = broker.kafka.as_ref()?;
            Some(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(*node))
                    .with_host(StrBytes::from_string(host.clone()))
                    .with_port(i32::from(*port))
                    .with_rack(broker.rack.clone().map(StrBytes::from_string)),
            )
        })
        .collect();
    let mut response = FetchResponse::default()
        .with_session_id(0)
        .with_responses(responses)
        .with_node_endpoints(node_endpoints);
    sessions::finish(&session, &mut response);
    FetchAnswer {
        response,
        splices: answer.splices,
    }
}

/// A fetch response whose records are spliced into the encoded frame (see the module
/// documentation) rather than copied into it.
pub(crate) struct FetchAnswer {
    response: FetchResponse,
    /// In the order the partitions appear in `response`.
    splices: Vec<Splice>,
}

/// One partition's records: the marker standing in for them in the response, and the batches.
struct Splice {
    marker: [u8; MARKER_BYTES],
    batches: Vec<Bytes>,
}

/// Bytes of the marker that stands in for a partition's records until they are spliced in: a
/// random token per response (which no client can know, so no name or value a client chose
/// can look like one), then the partition's place in the answer.
const MARKER_BYTES: usize = 16;

/// A fresh unpredictable token for one response's markers.
fn response_token() -> u64 {
    use std::cell::Cell;
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    thread_local! {
        static TOKENS: (RandomState, Cell<u64>) = (RandomState::new(), Cell::new(0));
    }
    TOKENS.with(|(state, counter)| {
        counter.set(counter.get().wrapping_add(1));
        let mut hasher = state.build_hasher();
        hasher.write_u64(counter.get());
        hasher.finish()
    })
}

impl KafkaAnswer for FetchAnswer {
    fn into_frames(
        self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Vec<Bytes>, EncodeError> {
        let frame = encode_response(api_key, version, correlation_id, &self.response)?;
        if self.splices.is_empty() {
            return Ok(vec![frame]);
        }
        let flexible = FetchResponse::header_version(version) >= 1;
        if let Some(frames) = splice(&frame, flexible, &self.splices) {
            return Ok(frames);
        }
        // Every marker is in the frame by construction; should one not be found, the answer is
        // still right, only copied.
        debug_assert!(
            false,
            "a fetch marker was not found in the encoded response"
        );
        tracing::error!("a Kafka fetch answer could not be spliced; copying its records");
        let FetchAnswer {
            mut response,
            splices,
        } = self;
        let mut splices = splices.into_iter();
        for partition in response
            .responses
            .iter_mut()
            .flat_map(|topic| topic.partitions.iter_mut())
        {
            let is_marker = partition
                .records
                .as_ref()
                .is_some_and(|records| records.len() == MARKER_BYTES);
            if is_marker {
                let splice = splices.next().expect("a splice per marker");
                partition.records = Some(concatenate(splice.batches));
            }
        }
        Ok(vec![encode_response(
            api_key,
            version,
            correlation_id,
            &response,
        )?])
    }
}

/// The frame with each marker (and its length prefix) replaced by its partition's batches,
/// as chunks to write in order; `None`: a marker is not where it should be.
fn splice(frame: &Bytes, flexible: bool, splices: &[Splice]) -> Option<Vec<Bytes>> {
    let mut chunks = Vec::with_capacity(2 + splices.len() * 3);
    // The frame's size comes first; it is rewritten once the records' sizes are known.
    let mut frame_bytes = frame.len() - FRAME_SIZE_BYTES;
    let mut position = FRAME_SIZE_BYTES;
    for splice in splices {
        let found = frame[position..]
            .windows(MARKER_BYTES)
            .position(|window| window == splice.marker)?;
        let marker_start = position + found;
        let prefix = records_prefix(flexible, MARKER_BYTES)?;
        let prefix_start = marker_start.checked_sub(prefix.len())?;
        if prefix_start < position || frame[prefix_start..marker_start] != prefix[..] {
            return None;
        }
        let records_bytes: usize = splice.batches.iter().map(Bytes::len).sum();
        let records_prefix = records_prefix(flexible, records_bytes)?;
        chunks.push(frame.slice(position..prefix_start));
        frame_bytes =
            frame_bytes - prefix.len() - MARKER_BYTES + records_prefix.len() + records_bytes;
        chunks.push(Bytes::from(records_prefix));
        chunks.extend(splice.batches.iter().cloned());
        position = marker_start + MARKER_BYTES;
    }
    chunks.push(frame.slice(position..));
    let size = i32::try_from(frame_bytes).ok()?;
    chunks.insert(0, Bytes::copy_from_slice(&size.to_be_bytes()));
    chunks.retain(|chunk| !chunk.is_empty());
    Some(chunks)
}

/// How Kafka prefixes `bytes` bytes of records: an int32 length, or (flexible versions) an
/// unsigned varint of the length plus one.
fn records_prefix(flexible: bool, bytes: usize) -> Option<Vec<u8>> {
    if !flexible {
        return Some(i32::try_from(bytes).ok()?.to_be_bytes().to_vec());
    }
    let mut value = u32::try_from(bytes).ok()?.checked_add(1)?;
    let mut prefix = Vec::with_capacity(5);
    while value >= 0x80 {
        prefix.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    prefix.push(value as u8);
    Some(prefix)
}

/// Builds partition answers in request order, keeping the response within its limits.
struct Answer {
    version: i16,
    read_committed: bool,
    response_bytes_left: usize,
    /// Whether no batch has been kept yet: the first one is kept whatever its size.
    first_batch_pending: bool,
    cache_bytes_max: usize,
    /// This response's marker token, and the records to splice in at its markers.
    token: u64,
    splices: Vec<Splice>,
    /// Leaders named in NOT_LEADER_OR_FOLLOWER answers (KIP-951), for `node_endpoints`.
    leaders_named: Vec<spate_protocol::NodeId>,
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
                // Kafka's INVALID_LAST_STABLE_OFFSET: a refused read knows none.
                let mut refused = self
                    .with_offsets(self.partition(index), high_watermark, -1, log_start_offset)
                    .with_error_code(kafka_code(partition_error_code(&error)))
                    .with_records(None);
                // KIP-951 (sent from v12): the leader this broker knows.
                if let PartitionError::NotLeaderOrFollower {
                    leader: Some(leader),
                    leader_epoch,
                } = error
                {
                    refused.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader))
                        .with_leader_epoch(leader_epoch);
                    if !self.leaders_named.contains(&leader) {
                        self.leaders_named.push(leader);
                    }
                }
                return refused;
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
        let mut partition = self.with_offsets(
            self.partition(index),
            outcome.high_watermark as i64,
            outcome.last_stable_offset as i64,
            outcome.log_start_offset as i64,
        );
        if self.read_committed && !kept.is_empty() {
            partition.aborted_transactions = Some(aborted_transactions(&outcome, kept.len()));
        }
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
        if kept.is_empty() {
            return partition.with_records(Some(Bytes::new()));
        }
        let mut marker = [0u8; MARKER_BYTES];
        marker[..8].copy_from_slice(&self.token.to_le_bytes());
        marker[8..].copy_from_slice(&(self.splices.len() as u64).to_le_bytes());
        self.splices.push(Splice {
            marker,
            batches: kept,
        });
        partition.with_records(Some(Bytes::copy_from_slice(&marker)))
    }

    fn with_offsets(
        &self,
        partition: PartitionData,
        high_watermark: i64,
        last_stable_offset: i64,
        log_start_offset: i64,
    ) -> PartitionData {
        let partition = partition
            .with_high_watermark(high_watermark)
            .with_last_stable_offset(last_stable_offset);
        if self.version >= LOG_START_OFFSET_VERSION {
            partition.with_log_start_offset(log_start_offset)
        } else {
            partition
        }
    }
}

/// The aborted transactions a read_committed answer lists: those the owner found for what it
/// read, less any that begin after the last batch kept (the limits may have cut the answer).
fn aborted_transactions(outcome: &FetchOutcome, kept_batches: usize) -> Vec<AbortedTransaction> {
    let Some(last_kept) = kept_batches
        .checked_sub(1)
        .and_then(|last| outcome.batches.get(last))
    else {
        return Vec::new();
    };
    let next_offset = BatchHeader::decode(last_kept)
        .expect("owners answer whole batches")
        .next_offset();
    outcome
        .aborted
        .iter()
        .filter(|aborted| aborted.first_offset < next_offset)
        .map(|aborted| {
            AbortedTransaction::default()
                .with_producer_id(ProducerId(aborted.producer_id))
                .with_first_offset(aborted.first_offset as i64)
        })
        .collect()
}

/// One partition's batches as one buffer (the fallback when splicing fails).
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

#[cfg(test)]
mod tests {
    use spate_kafka_protocol::kafka_protocol::messages::fetch_response::FetchableTopicResponse;
    use spate_kafka_protocol::kafka_protocol::messages::TopicName;
    use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;

    use super::*;

    /// An answer of three partitions: two batches, none, one large batch.
    fn answer(version: i16, token: u64) -> (FetchAnswer, FetchResponse) {
        let partitions: Vec<Vec<Bytes>> = vec![
            vec![Bytes::from(vec![1u8; 70]), Bytes::from(vec![2u8; 90])],
            vec![],
            vec![Bytes::from(vec![3u8; 300])],
        ];
        let mut answer = Answer {
            version,
            read_committed: false,
            response_bytes_left: usize::MAX,
            first_batch_pending: true,
            cache_bytes_max: 0,
            token,
            splices: Vec::new(),
            leaders_named: Vec::new(),
        };
        let mut spliced = Vec::new();
        let mut copied = Vec::new();
        for (index, batches) in partitions.into_iter().enumerate() {
            let mut partition = answer.partition(index as i32);
            copied.push(
                partition
                    .clone()
                    .with_records(Some(concatenate(batches.clone()))),
            );
            if batches.is_empty() {
                partition.records = Some(Bytes::new());
            } else {
                let mut marker = [0u8; MARKER_BYTES];
                marker[..8].copy_from_slice(&answer.token.to_le_bytes());
                marker[8..].copy_from_slice(&(answer.splices.len() as u64).to_le_bytes());
                answer.splices.push(Splice { marker, batches });
                partition.records = Some(Bytes::copy_from_slice(&marker));
            }
            spliced.push(partition);
        }
        let topic = |partitions| {
            FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(partitions)
        };
        let spliced = FetchAnswer {
            response: FetchResponse::default().with_responses(vec![topic(spliced)]),
            splices: answer.splices,
        };
        (
            spliced,
            FetchResponse::default().with_responses(vec![topic(copied)]),
        )
    }

    #[test]
    fn spliced_frames_are_the_bytes_of_the_copied_encoding() {
        for version in [4, 11, 12, 17, 18] {
            let (spliced, copied) = answer(version, response_token());
            let frames = spliced
                .into_frames(ApiKey::Fetch, version, 7)
                .expect("encode");
            assert!(frames.len() > 3, "v{version}: records were not spliced");
            let joined: Vec<u8> = frames
                .iter()
                .flat_map(|chunk| chunk.iter().copied())
                .collect();
            let expected = encode_response(ApiKey::Fetch, version, 7, &copied).expect("encode");
            assert_eq!(joined, expected.to_vec(), "v{version}");
        }
    }

    #[test]
    fn a_long_records_field_gets_a_longer_compact_prefix() {
        assert_eq!(records_prefix(true, 0), Some(vec![1]));
        assert_eq!(records_prefix(true, 126), Some(vec![127]));
        assert_eq!(records_prefix(true, 127), Some(vec![0x80, 0x01]));
        assert_eq!(records_prefix(false, 300), Some(vec![0, 0, 1, 44]));
    }

    #[test]
    fn tokens_differ_between_responses() {
        assert_ne!(response_token(), response_token());
    }
}
