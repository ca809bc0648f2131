//! The transaction coordinator's calls to other brokers, for a cluster: the leader of a data
//! partition takes its markers, the coordinator of a group completes its transactional offsets,
//! and the coordinator of a transactional id answers KIP-890's verification, wherever those
//! brokers are. The server implements [`TxnPeers`] over its peer connections; a single broker
//! has none (every call is local).
//!
//! Which broker: the leader, as the catalog snapshot last said, of the partition concerned (the
//! data partition, the group's `__consumer_offsets` partition, the id's `__transaction_state`
//! partition). A call that reaches a broker that no longer leads it is answered
//! NOT_LEADER_OR_FOLLOWER / NOT_COORDINATOR there and retried by its caller.

use std::future::Future;
use std::pin::Pin;

use spate_protocol::{ErrorCode, NodeId};

use crate::shard::messages::{PartitionError, TxnMarker};
use crate::state::{TopicPartition, TxnError};

/// What a peer call returns: a future local to the calling shard.
pub type PeerFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// One marker for a partition another broker leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteMarker {
    pub topic: String,
    pub partition: u32,
    pub marker: TxnMarker,
}

/// Calls to other brokers. Every answer is the remote broker's own: a marker durable there, a
/// group's transaction completed there, a verification decided by the id's coordinator.
pub trait TxnPeers {
    /// Appends `markers` on `node`, which leads their partitions; one answer per marker, in
    /// order. `Err` when the call itself failed (no connection, timeout): retried by the caller.
    fn write_markers(
        &self,
        node: NodeId,
        markers: Vec<RemoteMarker>,
    ) -> PeerFuture<Result<Vec<Result<(), PartitionError>>, TxnError>>;

    /// Completes `group`'s transactional offset commits of the producer on `node`, the group's
    /// coordinator (`spate_group::coordinator::complete_transaction` there).
    fn complete_group(
        &self,
        node: NodeId,
        group: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> PeerFuture<Result<(), ErrorCode>>;

    /// KIP-890's partition check on `node`, the transactional id's coordinator
    /// (`coordinator::verify_partitions` there); one answer per partition, in order.
    fn verify_partitions(
        &self,
        node: NodeId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TopicPartition>,
    ) -> PeerFuture<Result<Vec<Result<(), TxnError>>, TxnError>>;

    /// KIP-890's group check on `node`, the transactional id's coordinator
    /// (`coordinator::verify_group` there).
    fn verify_group(
        &self,
        node: NodeId,
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        group: String,
    ) -> PeerFuture<Result<(), TxnError>>;
}
