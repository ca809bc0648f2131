//! Fetch: read record batches from topic partitions, starting at an offset.
//!
//! The response carries each partition's stored batch bytes exactly as stored, in a
//! [`RecordSet`]: on the broker a list of `Bytes` chunks (segment reads) that a chunked encoder
//! (`api::encode_response_chunks`) sends without copying; on the client one `Bytes` slice of the
//! frame body, to be split with `batch::BatchIter` (the set may end in a partial batch when
//! `partition_max_bytes` cut it, as in Kafka).
//!
//! Version 1 adds transactions, as Kafka's Fetch v4 did: the request's isolation level, and
//! per partition the last stable offset (below it every transaction is decided) and the
//! aborted transactions whose records the answer may hold. A read_committed answer stops at the
//! last stable offset; the consumer drops the records of the listed transactions itself (from
//! each one's first offset up to its producer's abort marker), as Kafka's consumer does. Which
//! offsets are stable and which transactions aborted is the broker's business, not this
//! file's.

use bytes::{Bytes, BytesMut};

use crate::api::wire::{wire, Field, List, Wire};
use crate::api::TopicPartitions;
use crate::codec::{Decoder, Sink};
use crate::constants::TOPICS_PER_MESSAGE_MAX;
use crate::constants::{ABORTED_TRANSACTIONS_PER_PARTITION_MAX, FRAME_BYTES_MAX};
use crate::error::{ErrorCode, WireError};
use crate::NodeId;

pub type FetchTopic = TopicPartitions<FetchPartition>;
pub type FetchTopicResponse = TopicPartitions<FetchPartitionResponse>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct FetchRequest {
        /// How long the broker may wait for `min_bytes` to accumulate.
        pub max_wait_ms: u32 as u32,
        pub min_bytes: u32 as u32,
        /// Bound on the whole response's record bytes (at least one batch is always returned).
        pub max_bytes: u32 as u32,
        pub topics: Vec<FetchTopic> as List<FetchTopic, TOPICS_PER_MESSAGE_MAX>,
        /// Which records to answer: everything, or only up to the last stable offset.
        #[since = 1]
        pub isolation_level: IsolationLevel as IsolationLevel,
    }
}

/// Which records a fetch (or ListOffsets latest) sees, as Kafka's `isolation_level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum IsolationLevel {
    /// Every record up to the high watermark, transactions decided or not (the only level a
    /// version 0 fetch knows).
    #[default]
    ReadUncommitted,
    /// Only records below the last stable offset, with the aborted transactions listed.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire byte (Kafka's numbers: 0 read_uncommitted, 1 read_committed).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }

    /// The level of a wire byte; `None` for any other.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::ReadUncommitted),
            1 => Some(Self::ReadCommitted),
            _ => None,
        }
    }
}

/// A u8 with Kafka's numbers; any other is refused.
impl Wire for IsolationLevel {
    type Value = IsolationLevel;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(
        value: &IsolationLevel,
        _field: Field,
        sink: &mut S,
    ) -> Result<(), WireError> {
        sink.put_u8(value.to_u8());
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<IsolationLevel, WireError> {
        let value = decoder.u8(field.name)?;
        IsolationLevel::from_u8(value).ok_or(WireError::InvalidValue {
            field: field.name,
            value: i64::from(value),
        })
    }

    #[cfg(test)]
    fn smallest() -> IsolationLevel {
        IsolationLevel::ReadUncommitted
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct FetchPartition {
        pub partition: u32 as u32,
        pub fetch_offset: u64 as u64,
        pub partition_max_bytes: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct FetchResponse {
        /// Request-wide failure (e.g. `BrokerBusy`); per-partition codes are in the partitions.
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<FetchTopicResponse> as List<FetchTopicResponse, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct FetchPartitionResponse {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        pub high_watermark: u64 as u64,
        pub log_start_offset: u64 as u64,
        pub records: RecordSet as RecordSet,
        /// Below it every transaction is committed or aborted; a read_committed answer holds
        /// no record at or past it. Equal to the high watermark when no transaction is open.
        #[since = 1]
        pub last_stable_offset: u64 as u64,
        /// Under read_committed: the aborted transactions whose records the answer may hold,
        /// oldest first. Empty under read_uncommitted.
        #[since = 1]
        pub aborted_transactions: Vec<AbortedTransaction>
            as List<AbortedTransaction, ABORTED_TRANSACTIONS_PER_PARTITION_MAX>,
        /// With `NotLeaderOrFollower`: the partition's leader as this broker knows it
        /// (`metadata::NO_NODE` if none), so the consumer can go there without asking for
        /// metadata first (Kafka's KIP-951). Meaningless with any other code.
        #[since = 2]
        pub leader_id: NodeId as i32,
        /// With `NotLeaderOrFollower`: that leader's epoch.
        #[since = 2]
        pub leader_epoch: i32 as i32,
    }
}

wire! {
    /// An aborted transaction of a fetched partition, as Kafka lists it: the consumer drops the
    /// producer's transactional records from `first_offset` up to that producer's next abort
    /// marker.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
    pub struct AbortedTransaction {
        pub producer_id: i64 as i64,
        pub first_offset: u64 as u64,
    }
}

/// Back-to-back record batch bytes, held as one or more chunks. Equality compares content, not
/// chunking. On the wire: u32 total length, then the bytes.
#[derive(Debug, Clone, Default)]
pub struct RecordSet {
    chunks: Vec<Bytes>,
}

impl RecordSet {
    /// A set made of these chunks, in order (for example whole batches read from a segment).
    pub fn from_chunks(chunks: Vec<Bytes>) -> Self {
        Self { chunks }
    }

    pub fn from_bytes(bytes: Bytes) -> Self {
        Self {
            chunks: vec![bytes],
        }
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    pub fn total_bytes(&self) -> usize {
        self.chunks.iter().map(Bytes::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.iter().all(Bytes::is_empty)
    }

    /// The set as one `Bytes`: shared if it has at most one non-empty chunk (always the case
    /// after decoding), concatenated otherwise.
    pub fn to_bytes(&self) -> Bytes {
        let mut non_empty = self.chunks.iter().filter(|chunk| !chunk.is_empty());
        match (non_empty.next(), non_empty.next()) {
            (None, _) => Bytes::new(),
            (Some(only), None) => only.clone(),
            _ => {
                let mut joined = BytesMut::with_capacity(self.total_bytes());
                self.chunks
                    .iter()
                    .for_each(|chunk| joined.extend_from_slice(chunk));
                joined.freeze()
            }
        }
    }
}

impl PartialEq for RecordSet {
    fn eq(&self, other: &Self) -> bool {
        self.total_bytes() == other.total_bytes()
            && self
                .chunks
                .iter()
                .flat_map(|chunk| chunk.iter())
                .eq(other.chunks.iter().flat_map(|chunk| chunk.iter()))
    }
}

impl Eq for RecordSet {}

/// A u32 total length, then the bytes; decoded as one zero-copy slice of the body.
impl Wire for RecordSet {
    type Value = RecordSet;
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(value: &RecordSet, field: Field, sink: &mut S) -> Result<(), WireError> {
        let total_bytes = value.total_bytes();
        if total_bytes > FRAME_BYTES_MAX {
            return Err(WireError::TooLong {
                field: field.name,
                length: total_bytes,
                limit: FRAME_BYTES_MAX,
            });
        }
        sink.put_u32(total_bytes as u32);
        value.chunks.iter().for_each(|chunk| sink.put_shared(chunk));
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<RecordSet, WireError> {
        decoder
            .byte_string(field.name, FRAME_BYTES_MAX)
            .map(Self::from_bytes)
    }

    #[cfg(test)]
    fn smallest() -> RecordSet {
        RecordSet::default()
    }
}
