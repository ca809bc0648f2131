//! DescribeCluster: what a broker is (version, listeners, shards) and the configuration a topic
//! gets for every key it does not set, so tools can show each config's value and source
//! (Kafka's DescribeConfigs `DEFAULT_CONFIG` source) without knowing the broker's defaults.
//! Version 1 adds the cluster: the answering broker's own node id (how a broker learns a seed's
//! id before the cluster forms), the cluster id, the controller and every broker.
//!
//! Topics and partitions are Metadata's job; this message says nothing about them.

use crate::api::config::ConfigEntry;
use crate::api::metadata::BrokerMetadata;
use crate::api::wire::{wire, List, OptionalClusterId, Text};
use crate::constants::{BROKERS_PER_MESSAGE_MAX, CONFIG_ENTRIES_MAX, LISTENERS_MAX};
use crate::error::ErrorCode;
use crate::NodeId;

wire! {
    /// Asks for the broker's description; the body is empty.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct DescribeClusterRequest {}
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeClusterResponse {
        pub error_code: ErrorCode as ErrorCode,
        /// The broker's build version (`0.1.0`).
        pub broker_version: String as Text,
        /// The addresses the broker listens on, `HOST:PORT`.
        pub listeners: Vec<String> as List<Text, LISTENERS_MAX>,
        /// How many shards (cores, one glommio executor each) own partitions.
        pub shard_count: u32 as u32,
        /// The value of every topic config key for a topic that does not set it.
        pub topic_defaults: Vec<ConfigEntry> as List<ConfigEntry, CONFIG_ENTRIES_MAX>,
        /// The answering broker's node id.
        #[since = 1]
        pub node_id: NodeId as i32,
        /// The cluster's id, once its first controller chose one.
        #[since = 1]
        pub cluster_id: Option<String> as OptionalClusterId,
        /// The controller, or `metadata::NO_NODE` while none is known.
        #[since = 1]
        pub controller_id: NodeId as i32,
        /// Every broker the answering broker knows, with its native endpoint.
        #[since = 1]
        pub brokers: Vec<BrokerMetadata> as List<BrokerMetadata, BROKERS_PER_MESSAGE_MAX>,
    }
}
