//! DescribeCluster: what a broker is (version, listeners, shards) and the configuration a topic
//! gets for every key it does not set, so tools can show each config's value and source
//! (Kafka's DescribeConfigs `DEFAULT_CONFIG` source) without knowing the broker's defaults.
//!
//! Topics and partitions are Metadata's job; this message says nothing about them.

use crate::api::config::ConfigEntry;
use crate::api::{decode_error_code, decode_list, decode_strings, encode_list, encode_strings};
use crate::api::{message, put_error_code, ApiKey, Wire};
use crate::codec::{put_string, Decoder, Sink};
use crate::constants::{CONFIG_ENTRIES_MAX, LISTENERS_MAX, STRING_BYTES_MAX};
use crate::error::{ErrorCode, WireError};

/// Asks for the broker's description; the body is empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DescribeClusterRequest {}

impl Wire for DescribeClusterRequest {
    const ENCODED_BYTES_MIN: usize = 0;

    fn encode<S: Sink>(&self, _sink: &mut S) -> Result<(), WireError> {
        Ok(())
    }

    fn decode(_decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {})
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeClusterResponse {
    pub error_code: ErrorCode,
    /// The broker's build version (`0.1.0`).
    pub broker_version: String,
    /// The addresses the broker listens on, `HOST:PORT`.
    pub listeners: Vec<String>,
    /// How many shards (cores, one glommio executor each) own partitions.
    pub shard_count: u32,
    /// The value of every topic config key for a topic that does not set it.
    pub topic_defaults: Vec<ConfigEntry>,
}

impl Wire for DescribeClusterResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 2 + 4 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_string(
            sink,
            "broker_version",
            &self.broker_version,
            STRING_BYTES_MAX,
        )?;
        encode_strings(
            sink,
            "listeners",
            &self.listeners,
            LISTENERS_MAX,
            STRING_BYTES_MAX,
        )?;
        sink.put_u32(self.shard_count);
        encode_list(
            sink,
            "topic_defaults",
            &self.topic_defaults,
            CONFIG_ENTRIES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            broker_version: decoder.string("broker_version", STRING_BYTES_MAX)?,
            listeners: decode_strings(decoder, "listeners", LISTENERS_MAX, STRING_BYTES_MAX)?,
            shard_count: decoder.u32("shard_count")?,
            topic_defaults: decode_list(decoder, "topic_defaults", CONFIG_ENTRIES_MAX)?,
        })
    }
}

message!(
    DescribeClusterRequest,
    ApiKey::DescribeCluster,
    "DescribeClusterRequest",
    response = DescribeClusterResponse
);
message!(
    DescribeClusterResponse,
    ApiKey::DescribeCluster,
    "DescribeClusterResponse"
);
