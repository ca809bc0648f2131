//! Metadata: which topics exist, their partitions, the shard that owns each, and offsets.
//!
//! A request names topics or asks for all of them. Each partition answers with its owning shard
//! id (partitions are owned by exactly one core), log start offset and high watermark, and for a
//! partition with an error (an offline one) the broker's reason.

use crate::api::{decode_error_code, decode_list, decode_strings, encode_list, encode_strings};
use crate::api::{message, put_error_code, ApiKey, Wire};
use crate::codec::{put_optional_string, put_string, Decoder, Sink};
use crate::constants::{
    PARTITIONS_PER_TOPIC_MAX, STRING_BYTES_MAX, TOPICS_PER_MESSAGE_MAX, TOPIC_NAME_BYTES_MAX,
};
use crate::error::{ErrorCode, WireError};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataRequest {
    /// `None` asks for every topic.
    pub topics: Option<Vec<String>>,
}

impl Wire for MetadataRequest {
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        match &self.topics {
            None => {
                sink.put_u8(0);
                Ok(())
            }
            Some(topics) => {
                sink.put_u8(1);
                encode_strings(
                    sink,
                    "topics",
                    topics,
                    TOPICS_PER_MESSAGE_MAX,
                    TOPIC_NAME_BYTES_MAX,
                )
            }
        }
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let topics = if decoder.bool("topics_present")? {
            Some(decode_strings(
                decoder,
                "topics",
                TOPICS_PER_MESSAGE_MAX,
                TOPIC_NAME_BYTES_MAX,
            )?)
        } else {
            None
        };
        Ok(Self { topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataResponse {
    pub topics: Vec<TopicMetadata>,
}

impl Wire for MetadataResponse {
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

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicMetadata {
    /// `UnknownTopicOrPartition` for a requested topic that does not exist.
    pub error_code: ErrorCode,
    pub name: String,
    pub partitions: Vec<PartitionMetadata>,
}

impl Wire for TopicMetadata {
    const ENCODED_BYTES_MIN: usize = 2 + 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        encode_list(
            sink,
            "partitions",
            &self.partitions,
            PARTITIONS_PER_TOPIC_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            partitions: decode_list(decoder, "partitions", PARTITIONS_PER_TOPIC_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionMetadata {
    pub partition: u32,
    pub error_code: ErrorCode,
    /// The shard (core) that owns the partition.
    pub shard_id: u32,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// Why the partition has its error code, when the broker says more than the code (an
    /// offline partition's reason: the file, position and what was wrong).
    pub error_message: Option<String>,
}

impl Wire for PartitionMetadata {
    const ENCODED_BYTES_MIN: usize = 4 + 2 + 4 + 8 + 8 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        sink.put_u32(self.shard_id);
        sink.put_u64(self.log_start_offset);
        sink.put_u64(self.high_watermark);
        put_optional_string(
            sink,
            "error_message",
            self.error_message.as_deref(),
            STRING_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            error_code: decode_error_code(decoder)?,
            shard_id: decoder.u32("shard_id")?,
            log_start_offset: decoder.u64("log_start_offset")?,
            high_watermark: decoder.u64("high_watermark")?,
            error_message: decoder.optional_string("error_message", STRING_BYTES_MAX)?,
        })
    }
}

message!(
    MetadataRequest,
    ApiKey::Metadata,
    "MetadataRequest",
    response = MetadataResponse
);
message!(MetadataResponse, ApiKey::Metadata, "MetadataResponse");
