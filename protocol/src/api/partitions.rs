//! CreatePartitions: grows a topic's partition count (Kafka's CreatePartitions semantics).
//!
//! Only growth: a count not larger than the topic's current one is refused with
//! `InvalidPartitions` and a message. Existing partitions keep their records and their shard;
//! keyed records may hash to another partition afterwards, as in Kafka.

use crate::api::wire::{wire, OptionalText, TopicName};
use crate::error::ErrorCode;

wire! {
    /// Asks the broker to give topic `name` `partition_count` partitions in all.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreatePartitionsRequest {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        /// The new total, not the number to add.
        pub partition_count: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreatePartitionsResponse {
        pub error_code: ErrorCode as ErrorCode,
        /// Left empty in the answer to an undecodable request, where the code says it all.
        pub error_message: Option<String> as OptionalText,
    }
}
