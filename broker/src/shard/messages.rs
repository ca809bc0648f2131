//! What one shard asks of the shard that owns a partition, and what it gets back.
//!
//! These values cross threads through the cross-shard channels, so everything in them is `Send`.
//! Record batches travel as `BytesMut` (produce) and `Bytes` (fetch): moving them moves a pointer
//! and a reference count, never the bytes. Errors are [`PartitionError`], a small value type the
//! handlers map to wire error codes; storage errors are rendered to text at the owner.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};

use crate::catalog::TopicMetadata;

/// Identifies a partition across shards: the topic's unique id (not its name, which can be
/// reused after deletion) and the partition index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic_id: u64,
    pub partition: u32,
}

/// How long a produce waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceAcks {
    /// No response at all; appended like `Leader`.
    None,
    /// Appended (written), not yet fsynced.
    Leader,
    /// Durable under the topic's durability policy.
    All,
}

/// Why a partition operation failed; maps one to one onto wire error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset {offset} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("record batch too large: {0}")]
    BatchTooLarge(String),
    #[error("no space left on the data device: {0}")]
    NoSpace(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("the topic is internal to the broker; clients may not change it")]
    InternalTopic,
    /// An idempotent producer's batch does not continue its sequence.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's batch is an old one whose offsets are no longer known.
    #[error("duplicate sequence: {0}")]
    DuplicateSequence(String),
    /// A newer epoch of the producer id has written to the partition.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// The batch's producer id, epoch and sequence do not form a valid identity.
    #[error("invalid producer id mapping: {0}")]
    InvalidProducerIdMapping(String),
    /// The partition could not be opened, or lost data under the running broker: it is not
    /// served until an operator acts. The text names the file, position and reason.
    #[error("partition offline: {0}")]
    Offline(String),
    /// The partition is still being opened after the broker started (recovery), and the request
    /// could not wait for it any longer. Retriable.
    #[error("partition not available yet: the broker is still opening it")]
    Opening,
}

#[derive(Debug)]
pub struct ProducePartition {
    pub key: PartitionKey,
    pub batches: Vec<BytesMut>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceOutcome {
    pub base_offset: u64,
    pub log_start_offset: u64,
}

#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub key: PartitionKey,
    pub offset: i64,
    pub max_bytes: usize,
}

#[derive(Debug, Clone, Default)]
pub struct FetchOutcome {
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// Whole batches as stored, oldest first.
    pub batches: Vec<Bytes>,
}

impl FetchOutcome {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// ListOffsets target: Kafka's special values, or a timestamp in milliseconds.
pub const LIST_OFFSETS_LATEST: i64 = -1;
pub const LIST_OFFSETS_EARLIEST: i64 = -2;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAnswer {
    /// `-1` when no record has a timestamp at or after the one asked for.
    pub offset: i64,
    /// Timestamp of the record found, `-1` for earliest/latest or when none was found.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub log_start_offset: u64,
    pub high_watermark: u64,
}

/// A request to the shard that owns the partitions named in it.
#[derive(Debug)]
pub enum ShardRequest {
    /// Open (creating if needed) the partitions of `topic` this shard owns.
    OpenTopic {
        topic: Arc<TopicMetadata>,
    },
    /// Close and delete the partitions of `topic` this shard owns, from `first_partition` on
    /// (0: the whole topic; the old count: the partitions of an abandoned addition).
    DeleteTopic {
        topic: Arc<TopicMetadata>,
        first_partition: u32,
    },
    /// Apply a changed topic configuration to the open partitions.
    AlterTopic {
        topic: Arc<TopicMetadata>,
    },
    /// `opening_wait_until`: until when a partition still opening after the start is waited
    /// for (the request's own timeout); past it the partition is answered
    /// [`PartitionError::Opening`].
    Produce {
        acks: ProduceAcks,
        partitions: Vec<ProducePartition>,
        opening_wait_until: Instant,
    },
    Fetch {
        partitions: Vec<FetchPartition>,
        opening_wait_until: Instant,
    },
    /// Resolve when any of the partitions has data at or beyond the given offset, or after
    /// `wait_ms`.
    WaitForData {
        partitions: Vec<(PartitionKey, i64)>,
        wait_ms: u64,
    },
    ListOffsets {
        partitions: Vec<(PartitionKey, i64)>,
    },
    DeleteRecords {
        partitions: Vec<(PartitionKey, i64)>,
        opening_wait_until: Instant,
    },
    States {
        partitions: Vec<PartitionKey>,
    },
    /// A consumer group request for the shard that coordinates the group (`group`).
    Group(Box<crate::group::GroupCall>),
}

/// The owner's answer, in the order of the request's partitions.
#[derive(Debug)]
pub enum ShardResponse {
    Done(Result<(), PartitionError>),
    Produced(Vec<Result<ProduceOutcome, PartitionError>>),
    Fetched(Vec<Result<FetchOutcome, PartitionError>>),
    Offsets(Vec<Result<OffsetAnswer, PartitionError>>),
    RecordsDeleted(Vec<Result<u64, PartitionError>>),
    States(Vec<Result<PartitionState, PartitionError>>),
    Group(Box<crate::group::GroupAnswer>),
}
