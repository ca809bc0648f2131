//! Topic administration: CreateTopics, DeleteTopics, ListTopics, DescribeTopic,
//! AlterTopicConfig.
//!
//! Configs travel as string maps (`api::config`); the broker parses them with `TopicConfig` and
//! answers `InvalidConfig` with a message for bad ones. Results are per topic.

use crate::api::config::ConfigEntry;
use crate::api::metadata::PartitionMetadata;
use crate::api::{decode_error_code, decode_list, decode_strings, encode_list, encode_strings};
use crate::api::{message, put_error_code, ApiKey, Wire};
use crate::codec::{put_optional_string, put_string, Decoder, Sink};
use crate::constants::{CONFIG_ENTRIES_MAX, CONFIG_NAME_BYTES_MAX, PARTITIONS_PER_TOPIC_MAX};
use crate::constants::{STRING_BYTES_MAX, TOPICS_PER_MESSAGE_MAX, TOPIC_NAME_BYTES_MAX};
use crate::error::{ErrorCode, WireError};

/// Outcome for one topic, with a human-readable message on failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicResult {
    pub name: String,
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
}

impl Wire for TopicResult {
    const ENCODED_BYTES_MIN: usize = 2 + 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        put_error_code(sink, self.error_code);
        put_optional_string(
            sink,
            "error_message",
            self.error_message.as_deref(),
            STRING_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            error_code: decode_error_code(decoder)?,
            error_message: decoder.optional_string("error_message", STRING_BYTES_MAX)?,
        })
    }
}

fn encode_configs<S: Sink>(sink: &mut S, configs: &[ConfigEntry]) -> Result<(), WireError> {
    encode_list(sink, "configs", configs, CONFIG_ENTRIES_MAX)
}

fn decode_configs(decoder: &mut Decoder) -> Result<Vec<ConfigEntry>, WireError> {
    decode_list(decoder, "configs", CONFIG_ENTRIES_MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopic {
    pub name: String,
    pub partition_count: u32,
    /// Names from `api::config::name`; missing ones take the broker default.
    pub configs: Vec<ConfigEntry>,
}

impl Wire for CreateTopic {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        sink.put_u32(self.partition_count);
        encode_configs(sink, &self.configs)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            partition_count: decoder.u32("partition_count")?,
            configs: decode_configs(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsRequest {
    pub topics: Vec<CreateTopic>,
    pub timeout_ms: u32,
}

impl Wire for CreateTopicsRequest {
    const ENCODED_BYTES_MIN: usize = 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)?;
        sink.put_u32(self.timeout_ms);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
            timeout_ms: decoder.u32("timeout_ms")?,
        })
    }
}

/// Per-topic results, shared by CreateTopics and DeleteTopics responses.
fn encode_results<S: Sink>(sink: &mut S, results: &[TopicResult]) -> Result<(), WireError> {
    encode_list(sink, "results", results, TOPICS_PER_MESSAGE_MAX)
}

fn decode_results(decoder: &mut Decoder) -> Result<Vec<TopicResult>, WireError> {
    decode_list(decoder, "results", TOPICS_PER_MESSAGE_MAX)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreateTopicsResponse {
    pub results: Vec<TopicResult>,
}

impl Wire for CreateTopicsResponse {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_results(sink, &self.results)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            results: decode_results(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsRequest {
    pub names: Vec<String>,
    pub timeout_ms: u32,
}

impl Wire for DeleteTopicsRequest {
    const ENCODED_BYTES_MIN: usize = 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_strings(
            sink,
            "names",
            &self.names,
            TOPICS_PER_MESSAGE_MAX,
            TOPIC_NAME_BYTES_MAX,
        )?;
        sink.put_u32(self.timeout_ms);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            names: decode_strings(
                decoder,
                "names",
                TOPICS_PER_MESSAGE_MAX,
                TOPIC_NAME_BYTES_MAX,
            )?,
            timeout_ms: decoder.u32("timeout_ms")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteTopicsResponse {
    pub results: Vec<TopicResult>,
}

impl Wire for DeleteTopicsResponse {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_results(sink, &self.results)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            results: decode_results(decoder)?,
        })
    }
}

/// Lists every topic; the body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListTopicsRequest {}

impl Wire for ListTopicsRequest {
    const ENCODED_BYTES_MIN: usize = 0;

    fn encode<S: Sink>(&self, _sink: &mut S) -> Result<(), WireError> {
        Ok(())
    }

    fn decode(_decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicListing {
    pub name: String,
    pub partition_count: u32,
}

impl Wire for TopicListing {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        sink.put_u32(self.partition_count);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            partition_count: decoder.u32("partition_count")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListTopicsResponse {
    pub error_code: ErrorCode,
    pub topics: Vec<TopicListing>,
}

impl Wire for ListTopicsResponse {
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
pub struct DescribeTopicRequest {
    pub name: String,
}

impl Wire for DescribeTopicRequest {
    const ENCODED_BYTES_MIN: usize = 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeTopicResponse {
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
    pub name: String,
    /// The topic's effective config, defaults included.
    pub configs: Vec<ConfigEntry>,
    pub partitions: Vec<PartitionMetadata>,
}

impl Wire for DescribeTopicResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 1 + 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_optional_string(
            sink,
            "error_message",
            self.error_message.as_deref(),
            STRING_BYTES_MAX,
        )?;
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        encode_configs(sink, &self.configs)?;
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
            error_message: decoder.optional_string("error_message", STRING_BYTES_MAX)?,
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            configs: decode_configs(decoder)?,
            partitions: decode_list(decoder, "partitions", PARTITIONS_PER_TOPIC_MAX)?,
        })
    }
}

/// Changes some config entries of one topic and returns others to their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterTopicConfigRequest {
    pub name: String,
    pub set: Vec<ConfigEntry>,
    /// Config names to return to the broker default.
    pub reset: Vec<String>,
}

impl Wire for AlterTopicConfigRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        encode_list(sink, "set", &self.set, CONFIG_ENTRIES_MAX)?;
        encode_strings(
            sink,
            "reset",
            &self.reset,
            CONFIG_ENTRIES_MAX,
            CONFIG_NAME_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            set: decode_list(decoder, "set", CONFIG_ENTRIES_MAX)?,
            reset: decode_strings(decoder, "reset", CONFIG_ENTRIES_MAX, CONFIG_NAME_BYTES_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AlterTopicConfigResponse {
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
}

impl Wire for AlterTopicConfigResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_optional_string(
            sink,
            "error_message",
            self.error_message.as_deref(),
            STRING_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            error_message: decoder.optional_string("error_message", STRING_BYTES_MAX)?,
        })
    }
}

message!(
    CreateTopicsRequest,
    ApiKey::CreateTopics,
    "CreateTopicsRequest",
    response = CreateTopicsResponse
);
message!(
    CreateTopicsResponse,
    ApiKey::CreateTopics,
    "CreateTopicsResponse"
);
message!(
    DeleteTopicsRequest,
    ApiKey::DeleteTopics,
    "DeleteTopicsRequest",
    response = DeleteTopicsResponse
);
message!(
    DeleteTopicsResponse,
    ApiKey::DeleteTopics,
    "DeleteTopicsResponse"
);
message!(
    ListTopicsRequest,
    ApiKey::ListTopics,
    "ListTopicsRequest",
    response = ListTopicsResponse
);
message!(ListTopicsResponse, ApiKey::ListTopics, "ListTopicsResponse");
message!(
    DescribeTopicRequest,
    ApiKey::DescribeTopic,
    "DescribeTopicRequest",
    response = DescribeTopicResponse
);
message!(
    DescribeTopicResponse,
    ApiKey::DescribeTopic,
    "DescribeTopicResponse"
);
message!(
    AlterTopicConfigRequest,
    ApiKey::AlterTopicConfig,
    "AlterTopicConfigRequest",
    response = AlterTopicConfigResponse
);
message!(
    AlterTopicConfigResponse,
    ApiKey::AlterTopicConfig,
    "AlterTopicConfigResponse"
);
