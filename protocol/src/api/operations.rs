//! Cluster operations an administrator runs (`spate cluster ...`), each one a metadata change
//! the broker proposes to the controller and answers once applied:
//!
//! - ElectLeaders: make each named partition's preferred replica (its first) the leader, where
//!   it is in the ISR and alive (Kafka's preferred election; never an unclean one).
//! - AlterReassignments: give partitions a new replica list (the data is copied while the
//!   partition stays writable: new replicas join as followers, and the old ones leave once
//!   every new one is in the ISR), or cancel a reassignment in progress.
//! - ListReassignments: the reassignments in progress.
//! - DecommissionBroker: move every replica off a broker, then remove it.
//!
//! How the controller carries them out is the metadata crate's business, not this file's.

use crate::api::group::TopicPartitionList;
use crate::api::wire::{wire, ErrorText, List, NodeIds, Optional};
use crate::api::TopicPartitions;
use crate::constants::TOPICS_PER_MESSAGE_MAX;
use crate::error::ErrorCode;
use crate::NodeId;

wire! {
    /// The outcome for one partition, with the broker's reason on failure.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct PartitionOutcome {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

/// The per-topic outcomes of an operation on partitions.
pub type TopicOutcomes = TopicPartitions<PartitionOutcome>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ElectLeadersRequest {
        /// `None` elects the preferred leader of every partition of every topic.
        pub topics: Option<Vec<TopicPartitionList>>
            as Optional<List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>>,
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ElectLeadersResponse {
        /// Request-wide failure (`NotController` after retries, `RequestTimedOut`, ...).
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// Per named partition (every partition when all were asked): `None` when the preferred
        /// replica leads now, `UnknownTopicOrPartition`, `LeaderNotAvailable` when it is not in
        /// the ISR or not alive.
        pub topics: Vec<TopicOutcomes> as List<TopicOutcomes, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// One partition's target replicas.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ReassignmentPartition {
        pub partition: u32 as u32,
        /// The replicas the partition should end with, the preferred leader first; `None`
        /// cancels the reassignment in progress (back to the replicas it had before).
        pub target_replicas: Option<Vec<NodeId>> as Optional<NodeIds>,
    }
}

/// The partitions of one topic to reassign.
pub type ReassignmentTopic = TopicPartitions<ReassignmentPartition>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AlterReassignmentsRequest {
        pub topics: Vec<ReassignmentTopic> as List<ReassignmentTopic, TOPICS_PER_MESSAGE_MAX>,
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AlterReassignmentsResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// Per partition: `None` once the reassignment started (it completes later),
        /// `UnknownTopicOrPartition`, `InvalidReplicationFactor` / `BrokerNotAvailable` for a
        /// bad target, `ReassignmentInProgress`, `InvalidRequest` for a cancel of nothing.
        pub topics: Vec<TopicOutcomes> as List<TopicOutcomes, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListReassignmentsRequest {
        /// `None` lists every reassignment in progress.
        pub topics: Option<Vec<TopicPartitionList>>
            as Optional<List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>>,
    }
}

wire! {
    /// A partition being reassigned: its replicas now (old and new together), and which of
    /// them are joining and which leaving.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OngoingReassignment {
        pub partition: u32 as u32,
        pub replicas: Vec<NodeId> as NodeIds,
        pub adding: Vec<NodeId> as NodeIds,
        pub removing: Vec<NodeId> as NodeIds,
    }
}

/// The reassignments in progress of one topic.
pub type ReassignmentListing = TopicPartitions<OngoingReassignment>;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListReassignmentsResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        pub topics: Vec<ReassignmentListing>
            as List<ReassignmentListing, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// Moves every replica off broker `node_id`, then removes it from the cluster.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DecommissionBrokerRequest {
        pub node_id: NodeId as i32,
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    /// `None` once the decommission started (its replicas move later; `spate cluster info`
    /// shows the broker decommissioning until they have); `BrokerNotAvailable` for an unknown
    /// broker, `InvalidReplicationFactor` when the others are too few for some partition.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DecommissionBrokerResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}
