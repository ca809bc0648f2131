//! ReplicaFetch: a follower broker pulls a leader's batches for the partitions it follows
//! (Kafka's replica Fetch, with KIP-320's diverging epoch).
//!
//! One request carries every partition one follower shard follows from one leader. Per
//! partition the follower says where its log ends (`fetch_offset`, durable on the follower),
//! the epoch of its last batch and the leader epoch it believes current. The leader answers
//! its batches from that offset as stored (the [`RecordSet`] is sent without re-encoding, and
//! the follower appends the same bytes), its high watermark, log start and log end; or, when
//! the follower's last epoch and offset are not on the leader's log, the diverging epoch and
//! the offset where it ends, and the follower truncates there before fetching again. The
//! leader records each fetch as the follower's progress (its ISR and high watermark follow
//! from it). Which partitions a broker follows and what it does with the answer is the
//! broker's business, not this file's.

use crate::api::fetch::RecordSet;
use crate::api::metadata::NO_NODE;
use crate::api::wire::{wire, ErrorText, List, TopicName};
use crate::constants::{PARTITIONS_PER_TOPIC_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::ErrorCode;
use crate::NodeId;

/// The epoch that stands for "none" (no diverging epoch, no batch fetched yet), as in Kafka.
pub const NO_EPOCH: i32 = -1;

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ReplicaFetchRequest {
        /// The follower's node id.
        pub replica_id: NodeId as i32,
        /// How long the leader may wait for `min_bytes` of new data (a long poll).
        pub max_wait_ms: u32 as u32,
        pub min_bytes: u32 as u32,
        /// Bound on the whole answer's record bytes (at least one batch is always returned).
        pub max_bytes: u32 as u32,
        pub topics: Vec<ReplicaFetchTopic> as List<ReplicaFetchTopic, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// The partitions of one topic a follower fetches. The topic id tells a topic from a
    /// deleted and recreated one of the same name.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ReplicaFetchTopic {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub topic_id: u64 as u64,
        pub partitions: Vec<ReplicaFetchPartition>
            as List<ReplicaFetchPartition, PARTITIONS_PER_TOPIC_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ReplicaFetchPartition {
        pub partition: u32 as u32,
        /// The leader epoch the follower believes current: an older one than the leader's is
        /// answered `FencedLeaderEpoch`, a newer one `UnknownLeaderEpoch`.
        pub current_leader_epoch: i32 as i32,
        /// The follower's log end: the first offset it does not have.
        pub fetch_offset: u64 as u64,
        /// The epoch of the follower's last batch, or [`NO_EPOCH`] for an empty log.
        pub last_fetched_epoch: i32 as i32,
        pub partition_max_bytes: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ReplicaFetchResponse {
        /// Request-wide failure (e.g. `BrokerBusy`); per-partition codes are in the partitions.
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<ReplicaFetchTopicResponse>
            as List<ReplicaFetchTopicResponse, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ReplicaFetchTopicResponse {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub topic_id: u64 as u64,
        pub partitions: Vec<ReplicaFetchPartitionResponse>
            as List<ReplicaFetchPartitionResponse, PARTITIONS_PER_TOPIC_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ReplicaFetchPartitionResponse {
        pub partition: u32 as u32,
        /// `NotLeaderOrFollower`, `FencedLeaderEpoch`, `UnknownLeaderEpoch`,
        /// `UnknownTopicOrPartition` (also for a topic id that is not the named topic's),
        /// `OffsetOutOfRange`.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// The leader as the answering broker knows it and its epoch: where to go next after
        /// `NotLeaderOrFollower` or `FencedLeaderEpoch` (`metadata::NO_NODE` if unknown).
        pub leader_id: NodeId as i32,
        pub leader_epoch: i32 as i32,
        pub high_watermark: u64 as u64,
        pub log_start_offset: u64 as u64,
        /// The leader's log end (its next offset).
        pub log_end: u64 as u64,
        /// KIP-320: the largest epoch of the leader's log not above the follower's last
        /// fetched epoch, or [`NO_EPOCH`] when the follower's log does not diverge...
        pub diverging_epoch: i32 as i32,
        /// ...and the offset where that epoch ends on the leader's log: the follower truncates
        /// its log to it (or to its own end, if shorter) and fetches again.
        pub diverging_end_offset: u64 as u64,
        /// Batches from `fetch_offset` as stored (none when the log diverges).
        pub records: RecordSet as RecordSet,
    }
}

/// An answer with no error, no known leader ([`NO_NODE`]) and no divergence ([`NO_EPOCH`]).
impl Default for ReplicaFetchPartitionResponse {
    fn default() -> Self {
        Self {
            partition: 0,
            error_code: ErrorCode::None,
            error_message: None,
            leader_id: NO_NODE,
            leader_epoch: NO_EPOCH,
            high_watermark: 0,
            log_start_offset: 0,
            log_end: 0,
            diverging_epoch: NO_EPOCH,
            diverging_end_offset: 0,
            records: RecordSet::default(),
        }
    }
}
