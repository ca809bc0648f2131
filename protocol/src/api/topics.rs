//! Topic administration: CreateTopics, DeleteTopics, ListTopics, DescribeTopic,
//! AlterTopicConfig.
//!
//! Configs travel as string maps (`api::config`); the broker parses them with `TopicConfig` and
//! answers `InvalidConfig` with a message for bad ones. Results are per topic.

use crate::api::config::ConfigEntry;
use crate::api::metadata::PartitionMetadata;
use crate::api::wire::{wire, ConfigName, ErrorText, List, TopicName};
use crate::constants::{CONFIG_ENTRIES_MAX, PARTITIONS_PER_TOPIC_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::ErrorCode;

wire! {
    /// Outcome for one topic, with a human-readable message on failure.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TopicResult {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateTopic {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub partition_count: u32 as u32,
        /// Names from `api::config::name`; missing ones take the broker default.
        pub configs: Vec<ConfigEntry> as List<ConfigEntry, CONFIG_ENTRIES_MAX>,
        /// Replicas of each partition; 0 (and version 0) takes the cluster's default. A single
        /// broker accepts 0 or 1.
        #[since = 1]
        pub replication_factor: u16 as u16,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateTopicsRequest {
        pub topics: Vec<CreateTopic> as List<CreateTopic, TOPICS_PER_MESSAGE_MAX>,
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateTopicsResponse {
        pub results: Vec<TopicResult> as List<TopicResult, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteTopicsRequest {
        pub names: Vec<String> as List<TopicName, TOPICS_PER_MESSAGE_MAX>,
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteTopicsResponse {
        pub results: Vec<TopicResult> as List<TopicResult, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// Lists every topic; the body is empty.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ListTopicsRequest {}
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TopicListing {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub partition_count: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListTopicsResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicListing> as List<TopicListing, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeTopicRequest {
        #[wire = "topic_name"]
        pub name: String as TopicName,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeTopicResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        #[wire = "topic_name"]
        pub name: String as TopicName,
        /// The topic's effective config, defaults included.
        pub configs: Vec<ConfigEntry> as List<ConfigEntry, CONFIG_ENTRIES_MAX>,
        pub partitions: Vec<PartitionMetadata> as List<PartitionMetadata, PARTITIONS_PER_TOPIC_MAX>,
    }
}

wire! {
    /// Changes some config entries of one topic and returns others to their defaults.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AlterTopicConfigRequest {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub set: Vec<ConfigEntry> as List<ConfigEntry, CONFIG_ENTRIES_MAX>,
        /// Config names to return to the broker default.
        pub reset: Vec<String> as List<ConfigName, CONFIG_ENTRIES_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AlterTopicConfigResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}
