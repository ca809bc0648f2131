//! ListOffsets (find an offset by position or time) and DeleteRecords (advance the log start).
//!
//! ListOffsets takes, per partition, the earliest offset (-2 on the wire), the latest (-1, the
//! high watermark) or a timestamp in ms (>= 0): the first offset whose record timestamp is at or
//! after it. DeleteRecords moves a partition's log start offset up to `before_offset`; records
//! below it become unreadable and their segments eligible for deletion.
//!
//! ListOffsets version 1 adds the isolation level: read_committed's latest is the last stable
//! offset, as in Kafka.

use crate::api::wire::{wire, Field, List, Optional, Wire};
use crate::api::{IsolationLevel, TopicPartitions};
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

/// An i64: -2 earliest, -1 latest, a timestamp otherwise; other negative numbers are refused.
impl Wire for OffsetSpec {
    type Value = OffsetSpec;
    const ENCODED_BYTES_MIN: usize = 8;

    fn encode<S: Sink>(value: &OffsetSpec, field: Field, sink: &mut S) -> Result<(), WireError> {
        let Some(spec) = value.to_wire() else {
            return Err(WireError::InvalidValue {
                field: field.name,
                value: match value {
                    OffsetSpec::Timestamp(timestamp) => *timestamp,
                    _ => 0,
                },
            });
        };
        sink.put_i64(spec);
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<OffsetSpec, WireError> {
        let value = decoder.i64(field.name)?;
        OffsetSpec::from_wire(value).ok_or(WireError::InvalidValue {
            field: field.name,
            value,
        })
    }

    #[cfg(test)]
    fn smallest() -> OffsetSpec {
        OffsetSpec::Earliest
    }
}

pub type ListOffsetsTopic = TopicPartitions<ListOffsetsPartition>;
pub type ListOffsetsTopicResponse = TopicPartitions<ListOffsetsPartitionResponse>;
pub type DeleteRecordsTopic = TopicPartitions<DeleteRecordsPartition>;
pub type DeleteRecordsTopicResponse = TopicPartitions<DeleteRecordsPartitionResponse>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListOffsetsRequest {
        pub topics: Vec<ListOffsetsTopic> as List<ListOffsetsTopic, TOPICS_PER_MESSAGE_MAX>,
        /// Under read_committed, latest is the last stable offset, not the high watermark.
        #[since = 1]
        pub isolation_level: IsolationLevel as IsolationLevel,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ListOffsetsPartition {
        pub partition: u32 as u32,
        #[wire = "timestamp"]
        pub spec: OffsetSpec as OffsetSpec,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListOffsetsResponse {
        pub topics: Vec<ListOffsetsTopicResponse>
            as List<ListOffsetsTopicResponse, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ListOffsetsPartitionResponse {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        /// `None` when a timestamp lookup found no record at or after the timestamp.
        pub offset: Option<u64> as Optional<u64>,
        /// Timestamp of the record found by a timestamp lookup; -1 for earliest / latest.
        pub timestamp: i64 as i64,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteRecordsRequest {
        pub timeout_ms: u32 as u32,
        pub topics: Vec<DeleteRecordsTopic> as List<DeleteRecordsTopic, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DeleteRecordsPartition {
        pub partition: u32 as u32,
        /// New log start offset; records below it are deleted.
        pub before_offset: u64 as u64,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteRecordsResponse {
        pub topics: Vec<DeleteRecordsTopicResponse>
            as List<DeleteRecordsTopicResponse, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DeleteRecordsPartitionResponse {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        /// The partition's log start offset after the request.
        pub log_start_offset: u64 as u64,
    }
}
