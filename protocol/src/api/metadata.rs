//! Metadata: which topics exist, their partitions, the shard that owns each, and offsets.
//!
//! A request names topics or asks for all of them. Each partition answers with its owning shard
//! id (partitions are owned by exactly one core), log start offset and high watermark, and for a
//! partition with an error (an offline one) the broker's reason.

use crate::api::wire::{wire, ErrorText, List, Optional, TopicName};
use crate::constants::{PARTITIONS_PER_TOPIC_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::ErrorCode;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct MetadataRequest {
        /// `None` asks for every topic.
        pub topics: Option<Vec<String>> as Optional<List<TopicName, TOPICS_PER_MESSAGE_MAX>>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct MetadataResponse {
        pub topics: Vec<TopicMetadata> as List<TopicMetadata, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TopicMetadata {
        /// `UnknownTopicOrPartition` for a requested topic that does not exist.
        pub error_code: ErrorCode as ErrorCode,
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub partitions: Vec<PartitionMetadata> as List<PartitionMetadata, PARTITIONS_PER_TOPIC_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct PartitionMetadata {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        /// The shard (core) that owns the partition.
        pub shard_id: u32 as u32,
        pub log_start_offset: u64 as u64,
        pub high_watermark: u64 as u64,
        /// Why the partition has its error code, when the broker says more than the code (an
        /// offline partition's reason: the file, position and what was wrong).
        pub error_message: Option<String> as ErrorText,
    }
}
