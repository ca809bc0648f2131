//! Metadata: which topics exist, their partitions, the shard that owns each, and offsets; from
//! version 1 also the cluster: its id, its controller, every broker's endpoint, and per
//! partition the leader, its epoch, the replicas and the in-sync replicas.
//!
//! A request names topics or asks for all of them. Each partition answers with its owning shard
//! id (partitions are owned by exactly one core on each broker that holds them), log start
//! offset and high watermark as the answering broker knows them, and for a partition with an
//! error (an offline one, one without a leader) the broker's reason. Offsets are meaningful
//! only on the leader; a client routes produce and fetch to `leader_id`.
//!
//! Node ids are i32s as in Kafka; -1 means none (no leader, no known controller). A version 0
//! answer carries no cluster fields, so decoding one leaves them at 0, which is what a single
//! broker (node 0, leading every partition at epoch 0) would have said.

use crate::api::wire::{wire, ErrorText, HostName, List, NodeIds, Optional, OptionalClusterId};
use crate::api::wire::{OptionalRack, TopicName};
use crate::constants::{BROKERS_PER_MESSAGE_MAX, PARTITIONS_PER_TOPIC_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::ErrorCode;
use crate::NodeId;

/// The node id that stands for "none" (no leader, no controller), as in Kafka.
pub const NO_NODE: NodeId = -1;

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
        /// The cluster's id, once its first controller chose one (`None` before, and for a
        /// single broker, which has no cluster metadata).
        #[since = 1]
        pub cluster_id: Option<String> as OptionalClusterId,
        /// The controller (the metadata quorum's leader), or [`NO_NODE`] while none is known.
        #[since = 1]
        pub controller_id: NodeId as i32,
        /// Every broker the answering broker knows, fenced ones included (a client may still
        /// have to reach them to learn that they lead nothing).
        #[since = 1]
        pub brokers: Vec<BrokerMetadata> as List<BrokerMetadata, BROKERS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// One broker's native endpoint, as it advertises it.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct BrokerMetadata {
        pub node_id: NodeId as i32,
        pub host: String as HostName,
        pub port: u16 as u16,
        pub rack: Option<String> as OptionalRack,
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
        /// `LeaderNotAvailable` for a partition without a leader (its in-sync replicas are all
        /// down) or still opening; `PartitionOffline` for one whose data is damaged.
        pub error_code: ErrorCode as ErrorCode,
        /// The shard (core) that owns the partition.
        pub shard_id: u32 as u32,
        pub log_start_offset: u64 as u64,
        pub high_watermark: u64 as u64,
        /// Why the partition has its error code, when the broker says more than the code (an
        /// offline partition's reason: the file, position and what was wrong).
        pub error_message: Option<String> as ErrorText,
        /// The broker that leads the partition, or [`NO_NODE`].
        #[since = 1]
        pub leader_id: NodeId as i32,
        /// The leader's epoch: bumped at every leader change (Kafka's leader epoch).
        #[since = 1]
        pub leader_epoch: i32 as i32,
        /// Every replica, the preferred leader first.
        #[since = 1]
        pub replicas: Vec<NodeId> as NodeIds,
        /// The in-sync replicas.
        #[since = 1]
        pub isr: Vec<NodeId> as NodeIds,
    }
}
