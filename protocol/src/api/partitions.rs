//! CreatePartitions: grows a topic's partition count (Kafka's CreatePartitions semantics).
//!
//! Only growth: a count not larger than the topic's current one is refused with
//! `InvalidPartitions` and a message. Existing partitions keep their records and their shard;
//! keyed records may hash to another partition afterwards, as in Kafka.

use crate::api::{decode_error_code, message, put_error_code, ApiKey, Wire};
use crate::codec::{put_optional_string, put_string, Decoder, Sink};
use crate::constants::{STRING_BYTES_MAX, TOPIC_NAME_BYTES_MAX};
use crate::error::{ErrorCode, WireError};

/// Asks the broker to give topic `name` `partition_count` partitions in all.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CreatePartitionsRequest {
    pub name: String,
    /// The new total, not the number to add.
    pub partition_count: u32,
}

impl Wire for CreatePartitionsRequest {
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
pub struct CreatePartitionsResponse {
    pub error_code: ErrorCode,
    pub error_message: Option<String>,
}

impl Wire for CreatePartitionsResponse {
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
    CreatePartitionsRequest,
    ApiKey::CreatePartitions,
    "CreatePartitionsRequest",
    response = CreatePartitionsResponse
);
message!(
    CreatePartitionsResponse,
    ApiKey::CreatePartitions,
    "CreatePartitionsResponse"
);
