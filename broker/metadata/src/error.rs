//! The two kinds of failure of the metadata layer: [`ApplyError`], a command the image refused
//! (the same on every node, so it is data: it travels back to the proposer and maps to a wire
//! error code), and [`MetadataError`], what went wrong on this node (storage, codec, not the
//! controller, Raft refusing a proposal).

use serde::{Deserialize, Serialize};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;
use spate_storage::StorageError;

/// Why `MetadataImage::apply` refused a command. Deterministic: every node refuses the same
/// command at the same index with the same error, and the image is left unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum ApplyError {
    #[error("topic '{name}' already exists")]
    TopicExists { name: String },
    #[error("topic '{name}' does not exist")]
    UnknownTopic { name: String },
    #[error("no topic has id {topic_id}")]
    UnknownTopicId { topic_id: u64 },
    #[error("topic id {topic_id} has no partition {partition}")]
    UnknownPartition { topic_id: u64, partition: u32 },
    #[error("topic '{name}' has id {actual}, not {requested}")]
    InconsistentTopicId {
        name: String,
        requested: u64,
        actual: u64,
    },
    #[error("topic name '{name}' is invalid: {reason}")]
    InvalidTopicName { name: String, reason: String },
    #[error("invalid partition count: {reason}")]
    InvalidPartitions { reason: String },
    #[error("replication factor {requested} is invalid: {available} brokers are available")]
    InvalidReplicationFactor { requested: usize, available: usize },
    #[error("invalid replica assignment: {reason}")]
    InvalidReplicaAssignment { reason: String },
    #[error("invalid topic config: {reason}")]
    InvalidConfig { reason: String },
    #[error("broker {id} is not registered")]
    UnknownBroker { id: NodeId },
    #[error("broker {id} is at incarnation {current}, not {requested}")]
    StaleBrokerEpoch {
        id: NodeId,
        requested: u64,
        current: u64,
    },
    #[error("leader epoch {requested} is stale: the partition is at leader epoch {current}")]
    StaleLeaderEpoch { requested: i32, current: i32 },
    #[error("partition epoch {requested} is stale: the partition is at partition epoch {current}")]
    StalePartitionEpoch { requested: i32, current: i32 },
    #[error("broker {requested} is not the partition's leader (leader: {current:?})")]
    NotPartitionLeader {
        requested: NodeId,
        current: Option<NodeId>,
    },
    #[error("invalid in-sync replica set: {reason}")]
    InvalidIsr { reason: String },
    #[error("a reassignment of topic id {topic_id} partition {partition} is in progress")]
    ReassignmentInProgress { topic_id: u64, partition: u32 },
    #[error("no reassignment of topic id {topic_id} partition {partition} is in progress")]
    NoReassignmentInProgress { topic_id: u64, partition: u32 },
    #[error("the cluster id is already '{existing}'")]
    ClusterIdMismatch { existing: String },
    #[error("broker {id} cannot be removed: {reason}")]
    BrokerInUse { id: NodeId, reason: String },
    #[error("invalid SCRAM credential: {reason}")]
    InvalidCredential { reason: String },
    #[error("user '{user}' has no {mechanism} credential")]
    UnknownScramCredential { user: String, mechanism: String },
    #[error("{what} would exceed its limit of {limit}")]
    LimitExceeded { what: String, limit: u64 },
    #[error("invalid command: {reason}")]
    InvalidCommand { reason: String },
    #[error("the command's encoding cannot be read: {reason}")]
    Undecodable { reason: String },
}

impl ApplyError {
    /// The native error code for this refusal.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ApplyError::TopicExists { .. } => ErrorCode::TopicAlreadyExists,
            ApplyError::UnknownTopic { .. }
            | ApplyError::UnknownTopicId { .. }
            | ApplyError::UnknownPartition { .. } => ErrorCode::UnknownTopicOrPartition,
            ApplyError::InconsistentTopicId { .. } => ErrorCode::InconsistentTopicId,
            ApplyError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
            ApplyError::InvalidPartitions { .. } => ErrorCode::InvalidPartitions,
            ApplyError::InvalidReplicationFactor { .. } => ErrorCode::InvalidReplicationFactor,
            ApplyError::InvalidReplicaAssignment { .. } => ErrorCode::InvalidRequest,
            ApplyError::InvalidConfig { .. } => ErrorCode::InvalidConfig,
            ApplyError::UnknownBroker { .. } => ErrorCode::BrokerNotAvailable,
            ApplyError::StaleBrokerEpoch { .. } => ErrorCode::StaleBrokerEpoch,
            ApplyError::StaleLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            ApplyError::StalePartitionEpoch { .. } => ErrorCode::FencedLeaderEpoch,
            ApplyError::NotPartitionLeader { .. } => ErrorCode::NotLeaderOrFollower,
            ApplyError::InvalidIsr { .. } => ErrorCode::InvalidRequest,
            ApplyError::ReassignmentInProgress { .. } => ErrorCode::ReassignmentInProgress,
            ApplyError::NoReassignmentInProgress { .. } => ErrorCode::InvalidRequest,
            ApplyError::ClusterIdMismatch { .. } => ErrorCode::InvalidRequest,
            ApplyError::BrokerInUse { .. } => ErrorCode::InvalidRequest,
            ApplyError::InvalidCredential { .. } => ErrorCode::UnacceptableCredential,
            ApplyError::UnknownScramCredential { .. } => ErrorCode::ResourceNotFound,
            ApplyError::LimitExceeded { .. } => ErrorCode::InvalidRequest,
            ApplyError::InvalidCommand { .. } => ErrorCode::InvalidRequest,
            ApplyError::Undecodable { .. } => ErrorCode::UnsupportedVersion,
        }
    }
}

/// What went wrong on this node.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// Only the controller (the Raft leader) takes proposals and conf changes.
    #[error("this node is not the controller (controller: {leader:?})")]
    NotController { leader: Option<NodeId> },
    /// Raft refused the proposal for now (a leadership transfer, too many uncommitted bytes):
    /// retriable.
    #[error("the proposal was dropped: {reason}")]
    ProposalDropped { reason: String },
    #[error("an encoded command of {bytes} bytes exceeds the limit of {limit} bytes")]
    EntryTooLarge { bytes: usize, limit: usize },
    #[error("node id {id} is invalid: {reason}")]
    InvalidNodeId { id: NodeId, reason: String },
    #[error("invalid metadata config: {0}")]
    InvalidConfig(String),
    /// Bytes that do not decode: an inbound Raft message, a command, an outcome.
    #[error("cannot decode {what}: {reason}")]
    Codec { what: &'static str, reason: String },
    /// A Raft message or step raft-rs refused (a message from a peer it does not know, ...).
    #[error("raft: {0}")]
    Raft(String),
    /// The Raft files are damaged beyond a torn tail (a hard state or snapshot with a bad CRC).
    #[error("metadata file {path} is damaged: {reason}")]
    Damaged { path: String, reason: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl MetadataError {
    /// The native error code a proposer answers with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            MetadataError::NotController { .. } => ErrorCode::NotController,
            MetadataError::ProposalDropped { .. } => ErrorCode::BrokerBusy,
            MetadataError::EntryTooLarge { .. } => ErrorCode::MessageTooLarge,
            MetadataError::InvalidNodeId { .. }
            | MetadataError::InvalidConfig(_)
            | MetadataError::Codec { .. } => ErrorCode::InvalidRequest,
            MetadataError::Raft(_) => ErrorCode::Unknown,
            MetadataError::Damaged { .. } | MetadataError::Storage(_) => ErrorCode::StorageError,
        }
    }
}
