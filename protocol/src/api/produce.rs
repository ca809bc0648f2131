//! Produce: record batches for topic partitions, answered with the offsets they got.
//!
//! A partition entry carries one or more sealed record batches back to back, each delimited by
//! its own header's `batch_length`. Decoding slices each batch out of the frame body as a
//! `Bytes` (no copy) and checks only what framing needs (the length is at least a header and
//! within the body). A batch above `BATCH_BYTES_MAX` still decodes — slicing allocates nothing —
//! so that the broker can refuse it per partition (`MessageTooLarge`) rather than fail the whole
//! request; encoders refuse to build one. The broker validates header and CRC with
//! `batch::BatchView::validate` and answers `CorruptMessage` per partition.

use bytes::Bytes;

use crate::api::wire::{wire, Field, List, OptionalTransactionalId, Wire};
use crate::api::TopicPartitions;
use crate::batch::header::{peek_batch_length, BATCH_HEADER_BYTES};
use crate::codec::{put_count, Decoder, Sink};
use crate::constants::{BATCHES_PER_PARTITION_MAX, BATCH_BYTES_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::{ErrorCode, WireError};
use crate::NodeId;

/// How many acknowledgements the producer waits for (Kafka's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i16)]
pub enum Acks {
    /// No response is sent.
    None = 0,
    /// The owning shard appended the batch (and made it as durable as the topic's durability).
    Leader = 1,
    /// Every replica has it. With one replica, the same as `Leader`.
    #[default]
    All = -1,
}

impl Acks {
    pub fn from_i16(value: i16) -> Option<Self> {
        match value {
            0 => Some(Self::None),
            1 => Some(Self::Leader),
            -1 => Some(Self::All),
            _ => None,
        }
    }
}

/// An i16 with Kafka's numbers; any other is refused.
impl Wire for Acks {
    type Value = Acks;
    const ENCODED_BYTES_MIN: usize = 2;

    fn encode<S: Sink>(value: &Acks, _field: Field, sink: &mut S) -> Result<(), WireError> {
        sink.put_i16(*value as i16);
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Acks, WireError> {
        let acks = decoder.i16(field.name)?;
        Acks::from_i16(acks).ok_or(WireError::InvalidValue {
            field: field.name,
            value: i64::from(acks),
        })
    }

    #[cfg(test)]
    fn smallest() -> Acks {
        Acks::None
    }
}

pub type ProduceTopic = TopicPartitions<ProducePartition>;
pub type ProduceTopicResponse = TopicPartitions<ProducePartitionResponse>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ProduceRequest {
        pub acks: Acks as Acks,
        pub timeout_ms: u32 as u32,
        pub topics: Vec<ProduceTopic> as List<ProduceTopic, TOPICS_PER_MESSAGE_MAX>,
        /// A transactional producer's id (Kafka's Produce `transactional_id`): the broker
        /// checks with the transaction's coordinator that each partition of a transactional
        /// batch was added to the transaction before it appends the batch.
        #[since = 1]
        pub transactional_id: Option<String> as OptionalTransactionalId,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ProducePartition {
        pub partition: u32 as u32,
        /// Each element is exactly one sealed batch.
        pub batches: Vec<Bytes> as Batches,
    }
}

/// Sealed record batches back to back after a u32 count, each delimited by its own header's
/// `batch_length`: the body holds no length of its own for them.
pub(crate) struct Batches;

impl Wire for Batches {
    type Value = Vec<Bytes>;
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(batches: &Vec<Bytes>, field: Field, sink: &mut S) -> Result<(), WireError> {
        put_count(sink, field.name, batches.len(), BATCHES_PER_PARTITION_MAX)?;
        for batch in batches {
            // The decoder finds batch boundaries from each header; refuse what it could not.
            let length = check_batch_length(batch)?;
            if length != batch.len() {
                return Err(WireError::InvalidValue {
                    field: "batch_length",
                    value: length as i64,
                });
            }
            sink.put_shared(batch);
        }
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Vec<Bytes>, WireError> {
        let count = decoder.count(field.name, BATCHES_PER_PARTITION_MAX, BATCH_HEADER_BYTES)?;
        let mut batches = Vec::with_capacity(count);
        for _ in 0..count {
            let length = framing_batch_length(decoder.peek())?;
            batches.push(decoder.slice("batch", length)?);
        }
        Ok(batches)
    }

    #[cfg(test)]
    fn smallest() -> Vec<Bytes> {
        Vec::new()
    }
}

/// Reads and bounds the `batch_length` of the batch at the start of `bytes`, as an encoder must.
fn check_batch_length(bytes: &[u8]) -> Result<usize, WireError> {
    let length = framing_batch_length(bytes)?;
    if length > BATCH_BYTES_MAX {
        return Err(WireError::TooLong {
            field: "batch",
            length,
            limit: BATCH_BYTES_MAX,
        });
    }
    Ok(length)
}

/// Reads the `batch_length` of the batch at the start of `bytes` with only the checks framing
/// needs: a whole header. Whether the length fits the bytes left is the slice's check.
fn framing_batch_length(bytes: &[u8]) -> Result<usize, WireError> {
    let Some(length) = peek_batch_length(bytes) else {
        return Err(WireError::Truncated {
            field: "batch_length",
            needed: BATCH_HEADER_BYTES,
            available: bytes.len(),
        });
    };
    let length = length as usize;
    if length < BATCH_HEADER_BYTES {
        return Err(WireError::InvalidValue {
            field: "batch_length",
            value: length as i64,
        });
    }
    Ok(length)
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ProduceResponse {
        pub topics: Vec<ProduceTopicResponse>
            as List<ProduceTopicResponse, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ProducePartitionResponse {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        /// Offset given to the first record of the first batch.
        pub base_offset: u64 as u64,
        /// Broker time the batches were appended, if the topic uses log-append time; else -1.
        pub log_append_time_ms: i64 as i64,
        pub log_start_offset: u64 as u64,
        /// With `NotLeaderOrFollower`: the partition's leader as this broker knows it
        /// (`metadata::NO_NODE` if none), so the client can go there without asking for
        /// metadata first (Kafka's KIP-951). Meaningless with any other code.
        #[since = 2]
        pub leader_id: NodeId as i32,
        /// With `NotLeaderOrFollower`: that leader's epoch.
        #[since = 2]
        pub leader_epoch: i32 as i32,
    }
}
