//! Fetch: read record batches from topic partitions, starting at an offset.
//!
//! The response carries each partition's stored batch bytes exactly as stored, in a
//! [`RecordSet`]: on the broker a list of `Bytes` chunks (segment reads) that a chunked encoder
//! (`api::encode_response_chunks`) sends without copying; on the client one `Bytes` slice of the
//! frame body, to be split with `batch::BatchIter` (the set may end in a partial batch when
//! `partition_max_bytes` cut it, as in Kafka).

use bytes::{Bytes, BytesMut};

use crate::api::{decode_error_code, decode_list, encode_list, message, put_error_code};
use crate::api::{ApiKey, TopicPartitions, Wire};
use crate::codec::{Decoder, Sink};
use crate::constants::{FRAME_BYTES_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::{ErrorCode, WireError};

pub type FetchTopic = TopicPartitions<FetchPartition>;
pub type FetchTopicResponse = TopicPartitions<FetchPartitionResponse>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequest {
    /// How long the broker may wait for `min_bytes` to accumulate.
    pub max_wait_ms: u32,
    pub min_bytes: u32,
    /// Bound on the whole response's record bytes (at least one batch is always returned).
    pub max_bytes: u32,
    pub topics: Vec<FetchTopic>,
}

impl Wire for FetchRequest {
    const ENCODED_BYTES_MIN: usize = 4 + 4 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.max_wait_ms);
        sink.put_u32(self.min_bytes);
        sink.put_u32(self.max_bytes);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            max_wait_ms: decoder.u32("max_wait_ms")?,
            min_bytes: decoder.u32("min_bytes")?,
            max_bytes: decoder.u32("max_bytes")?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FetchPartition {
    pub partition: u32,
    pub fetch_offset: u64,
    pub partition_max_bytes: u32,
}

impl Wire for FetchPartition {
    const ENCODED_BYTES_MIN: usize = 4 + 8 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        sink.put_u64(self.fetch_offset);
        sink.put_u32(self.partition_max_bytes);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            fetch_offset: decoder.u64("fetch_offset")?,
            partition_max_bytes: decoder.u32("partition_max_bytes")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// Request-wide failure (e.g. `BrokerBusy`); per-partition codes are in the partitions.
    pub error_code: ErrorCode,
    pub topics: Vec<FetchTopicResponse>,
}

impl Wire for FetchResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchPartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    pub records: RecordSet,
}

impl Wire for FetchPartitionResponse {
    const ENCODED_BYTES_MIN: usize = 4 + 2 + 8 + 8 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        sink.put_u64(self.high_watermark);
        sink.put_u64(self.log_start_offset);
        self.records.encode(sink)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            error_code: decode_error_code(decoder)?,
            high_watermark: decoder.u64("high_watermark")?,
            log_start_offset: decoder.u64("log_start_offset")?,
            records: RecordSet::decode(decoder)?,
        })
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

impl Wire for RecordSet {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        let total_bytes = self.total_bytes();
        if total_bytes > FRAME_BYTES_MAX {
            return Err(WireError::TooLong {
                field: "records",
                length: total_bytes,
                limit: FRAME_BYTES_MAX,
            });
        }
        sink.put_u32(total_bytes as u32);
        self.chunks.iter().for_each(|chunk| sink.put_shared(chunk));
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        decoder
            .byte_string("records", FRAME_BYTES_MAX)
            .map(Self::from_bytes)
    }
}

message!(
    FetchRequest,
    ApiKey::Fetch,
    "FetchRequest",
    response = FetchResponse
);
message!(FetchResponse, ApiKey::Fetch, "FetchResponse");
