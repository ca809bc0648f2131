//! Broker to broker, for transactions in a cluster: a transaction coordinator's markers to the
//! leaders of a transaction's partitions and groups (Kafka's WriteTxnMarkers, one transaction
//! per request), and a partition leader's or group coordinator's KIP-890 check with the
//! transactional id's coordinator (Kafka's AddPartitionsToTxn v4+ `verify_only` between
//! brokers).
//!
//! Clients never send these. A broker that does not lead a named partition answers it
//! `NotLeaderOrFollower`, one that does not coordinate a named group or id `NotCoordinator`,
//! and the asking broker retries with fresher metadata.

use crate::api::group::{GroupResult, PartitionResult, TopicPartitionList};
use crate::api::wire::{wire, ErrorText, GroupId, List, Optional, TransactionalId};
use crate::api::TopicPartitions;
use crate::constants::{GROUPS_PER_MESSAGE_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::ErrorCode;

wire! {
    /// Appends one transaction's marker to every named partition the receiving broker leads
    /// (durable on its in-sync replicas before the answer), and completes the transactional
    /// offset commits of every named group it coordinates.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct WriteTxnMarkersRequest {
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        /// The coordinator's epoch (its state partition's leader epoch): a partition refuses
        /// the markers of a coordinator older than one it has seen for the producer.
        pub coordinator_epoch: i32 as i32,
        /// `true` commits, `false` aborts.
        pub commit: bool as bool,
        pub topics: Vec<TopicPartitionList> as List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>,
        pub groups: Vec<String> as List<GroupId, GROUPS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct WriteTxnMarkersResponse {
        /// A failure of the whole request; the partitions and groups then repeat it.
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
        pub groups: Vec<GroupResult> as List<GroupResult, GROUPS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// Asks the transactional id's coordinator whether each named partition (or the group) is
    /// in the producer's open transaction at this epoch. Changes nothing.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct VerifyTxnRequest {
        pub transactional_id: String as TransactionalId,
        pub producer_id: i64 as i64,
        pub producer_epoch: i16 as i16,
        pub topics: Vec<TopicPartitionList> as List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>,
        /// Set: the group's offsets are asked about (TxnOffsetCommit), not partitions.
        pub group_id: Option<String> as Optional<GroupId>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct VerifyTxnResponse {
        /// The group's answer, or a failure of the whole request (not the coordinator).
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
    }
}
