//! ListOffsets (find an offset by position or time) and DeleteRecords (advance the log start).
//!
//! ListOffsets takes, per partition, the earliest offset (-2 on the wire), the latest (-1, the
//! high watermark) or a timestamp in ms (>= 0): the first offset whose record timestamp is at or
//! after it. DeleteRecords moves a partition's log start offset up to `before_offset`; records
//! below it become unreadable and their segments eligible for deletion.

use crate::api::{decode_error_code, decode_list, encode_list, message, put_error_code};
use crate::api::{ApiKey, TopicPartitions, Wire};
use crate::codec::{Decoder, Sink};
use crate::constants::TOPICS_PER_MESSAGE_MAX;
use crate::error::{ErrorCode, WireError};

/// Which offset ListOffsets looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OffsetSpec {
    /// The log start offset.
    Earliest,
    /// The high watermark: the offset the next record will get.
    Latest,
    /// The first offset whose timestamp is at or after this many ms since the epoch (>= 0).
    Timestamp(i64),
}

impl OffsetSpec {
    pub const EARLIEST_WIRE: i64 = -2;
    pub const LATEST_WIRE: i64 = -1;

    pub fn to_wire(self) -> Option<i64> {
        match self {
            Self::Earliest => Some(Self::EARLIEST_WIRE),
            Self::Latest => Some(Self::LATEST_WIRE),
            Self::Timestamp(timestamp) if timestamp >= 0 => Some(timestamp),
            Self::Timestamp(_) => None,
        }
    }

    pub fn from_wire(value: i64) -> Option<Self> {
        match value {
            Self::EARLIEST_WIRE => Some(Self::Earliest),
            Self::LATEST_WIRE => Some(Self::Latest),
            timestamp if timestamp >= 0 => Some(Self::Timestamp(timestamp)),
            _ => None,
        }
    }
}

pub type ListOffsetsTopic = TopicPartitions<ListOffsetsPartition>;
pub type ListOffsetsTopicResponse = TopicPartitions<ListOffsetsPartitionResponse>;
pub type DeleteRecordsTopic = TopicPartitions<DeleteRecordsPartition>;
pub type DeleteRecordsTopicResponse = TopicPartitions<DeleteRecordsPartitionResponse>;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsRequest {
    pub topics: Vec<ListOffsetsTopic>,
}

impl Wire for ListOffsetsRequest {
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListOffsetsPartition {
    pub partition: u32,
    pub spec: OffsetSpec,
}

impl Wire for ListOffsetsPartition {
    const ENCODED_BYTES_MIN: usize = 4 + 8;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        let Some(spec) = self.spec.to_wire() else {
            return Err(WireError::InvalidValue {
                field: "timestamp",
                value: match self.spec {
                    OffsetSpec::Timestamp(timestamp) => timestamp,
                    _ => 0,
                },
            });
        };
        sink.put_u32(self.partition);
        sink.put_i64(spec);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let partition = decoder.u32("partition")?;
        let value = decoder.i64("timestamp")?;
        let spec = OffsetSpec::from_wire(value).ok_or(WireError::InvalidValue {
            field: "timestamp",
            value,
        })?;
        Ok(Self { partition, spec })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListOffsetsResponse {
    pub topics: Vec<ListOffsetsTopicResponse>,
}

impl Wire for ListOffsetsResponse {
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
pub struct ListOffsetsPartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    /// `None` when a timestamp lookup found no record at or after the timestamp.
    pub offset: Option<u64>,
    /// Timestamp of the record found by a timestamp lookup; -1 for earliest / latest.
    pub timestamp: i64,
}

impl Wire for ListOffsetsPartitionResponse {
    const ENCODED_BYTES_MIN: usize = 4 + 2 + 1 + 8;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        match self.offset {
            None => sink.put_u8(0),
            Some(offset) => {
                sink.put_u8(1);
                sink.put_u64(offset);
            }
        }
        sink.put_i64(self.timestamp);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let partition = decoder.u32("partition")?;
        let error_code = decode_error_code(decoder)?;
        let offset = if decoder.bool("offset_present")? {
            Some(decoder.u64("offset")?)
        } else {
            None
        };
        Ok(Self {
            partition,
            error_code,
            offset,
            timestamp: decoder.i64("timestamp")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRecordsRequest {
    pub timeout_ms: u32,
    pub topics: Vec<DeleteRecordsTopic>,
}

impl Wire for DeleteRecordsRequest {
    const ENCODED_BYTES_MIN: usize = 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.timeout_ms);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            timeout_ms: decoder.u32("timeout_ms")?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeleteRecordsPartition {
    pub partition: u32,
    /// New log start offset; records below it are deleted.
    pub before_offset: u64,
}

impl Wire for DeleteRecordsPartition {
    const ENCODED_BYTES_MIN: usize = 4 + 8;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        sink.put_u64(self.before_offset);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            before_offset: decoder.u64("before_offset")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteRecordsResponse {
    pub topics: Vec<DeleteRecordsTopicResponse>,
}

impl Wire for DeleteRecordsResponse {
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
pub struct DeleteRecordsPartitionResponse {
    pub partition: u32,
    pub error_code: ErrorCode,
    /// The partition's log start offset after the request.
    pub log_start_offset: u64,
}

impl Wire for DeleteRecordsPartitionResponse {
    const ENCODED_BYTES_MIN: usize = 4 + 2 + 8;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        sink.put_u64(self.log_start_offset);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            error_code: decode_error_code(decoder)?,
            log_start_offset: decoder.u64("log_start_offset")?,
        })
    }
}

message!(
    ListOffsetsRequest,
    ApiKey::ListOffsets,
    "ListOffsetsRequest",
    response = ListOffsetsResponse
);
message!(
    ListOffsetsResponse,
    ApiKey::ListOffsets,
    "ListOffsetsResponse"
);
message!(
    DeleteRecordsRequest,
    ApiKey::DeleteRecords,
    "DeleteRecordsRequest",
    response = DeleteRecordsResponse
);
message!(
    DeleteRecordsResponse,
    ApiKey::DeleteRecords,
    "DeleteRecordsResponse"
);
