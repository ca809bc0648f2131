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

use crate::api::{decode_error_code, decode_list, encode_list, message, put_error_code};
use crate::api::{ApiKey, TopicPartitions, Wire};
use crate::batch::header::{peek_batch_length, BATCH_HEADER_BYTES};
use crate::codec::{put_count, Decoder, Sink};
use crate::constants::{BATCHES_PER_PARTITION_MAX, BATCH_BYTES_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::{ErrorCode, WireError};

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

pub type ProduceTopic = TopicPartitions<ProducePartition>;
pub type ProduceTopicResponse = TopicPartitions<ProducePartitionResponse>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceRequest {
    pub acks: Acks,
    pub timeout_ms: u32,
    pub topics: Vec<ProduceTopic>,
}

impl Wire for ProduceRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_i16(self.acks as i16);
        sink.put_u32(self.timeout_ms);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let acks = decoder.i16("acks")?;
        let acks = Acks::from_i16(acks).ok_or(WireError::InvalidValue {
            field: "acks",
            value: i64::from(acks),
        })?;
        Ok(Self {
            acks,
            timeout_ms: decoder.u32("timeout_ms")?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProducePartition {
    pub partition: u32,
    /// Each element is exactly one sealed batch.
    pub batches: Vec<Bytes>,
}

impl Wire for ProducePartition {
    const ENCODED_BYTES_MIN: usize = 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_count(
            sink,
            "batches",
            self.batches.len(),
            BATCHES_PER_PARTITION_MAX,
        )?;
        for batch in &self.batches {
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

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let partition = decoder.u32("partition")?;
        let count = decoder.count("batches", BATCHES_PER_PARTITION_MAX, BATCH_HEADER_BYTES)?;
        let mut batches = Vec::with_capacity(count);
        for _ in 0..count {
            let length = framing_batch_length(decoder.peek())?;
            batches.push(decoder.slice("batch", length)?);
        }
        Ok(Self { partition, batches })
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceResponse {
    pub topics: Vec<ProduceTopicResponse>,
}

impl Wire for ProduceResponse {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProducePartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    /// Offset given to the first record of the first batch.
    pub base_offset: u64,
    /// Broker time the batches were appended, if the topic uses log-append time; else -1.
    pub log_append_time_ms: i64,
    pub log_start_offset: u64,
}

impl Wire for ProducePartitionResponse {
    const ENCODED_BYTES_MIN: usize = 4 + 2 + 8 + 8 + 8;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        sink.put_u64(self.base_offset);
        sink.put_i64(self.log_append_time_ms);
        sink.put_u64(self.log_start_offset);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            error_code: decode_error_code(decoder)?,
            base_offset: decoder.u64("base_offset")?,
            log_append_time_ms: decoder.i64("log_append_time_ms")?,
            log_start_offset: decoder.u64("log_start_offset")?,
        })
    }
}

message!(
    ProduceRequest,
    ApiKey::Produce,
    "ProduceRequest",
    response = ProduceResponse
);
message!(ProduceResponse, ApiKey::Produce, "ProduceResponse");
