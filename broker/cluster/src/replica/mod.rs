//! Partition replication as pure state (Kafka's ISR protocol with leader epochs, KIP-101,
//! KIP-279, KIP-320): what a leader knows of its followers and what a follower decides from the
//! leader's answers. No I/O, no clock reads, no tasks: the shard (`shard::replication`) and the
//! replication simulation pass in the log's positions and the time, and carry out what comes
//! back (move the committed offset, propose an ISR change, truncate).
//!
//! - [`leader::LeaderState`]: one partition as its leader sees it: the in-sync replicas the
//!   metadata applied, each follower's reported log end and when it last caught up, the high
//!   watermark (never moves back within a leadership), and the ISR changes due.
//! - [`follower`]: the follower's rules: the leader's check of a follower's position against its
//!   own epochs (the diverging epoch of KIP-320) and where the follower truncates to.
//! - [`waiters::AckWaiters`]: acks=all produce requests waiting for the high watermark to pass
//!   their end offset.
//!
//! Limits live in [`ReplicaLimits`]. What is not here: the metadata (which ISR and leader the
//! cluster agreed on comes in through `LeaderState::new`/`update_role`, and ISR changes go out as
//! proposals the metadata may refuse), the network, and the log.

pub mod follower;
pub mod leader;
pub mod waiters;

/// A broker's id (Kafka's broker id).
pub use spate_protocol::NodeId;

/// The leader epoch a follower sends when its log holds no batch at all (Kafka's
/// `UNDEFINED_EPOCH`).
pub const NO_EPOCH: i32 = -1;

/// Default of [`ReplicaLimits::replica_lag_time_max_ms`].
pub const REPLICA_LAG_TIME_MAX_MS_DEFAULT: u64 = 5_000;
/// Default of [`ReplicaLimits::isr_change_retry_ms`].
pub const ISR_CHANGE_RETRY_MS_DEFAULT: u64 = 2_000;
/// Default of [`ReplicaLimits::acks_all_waiters_max`].
pub const ACKS_ALL_WAITERS_MAX_DEFAULT: usize = 16_384;
/// Default of [`ReplicaLimits::txn_marker_commit_wait_ms`]: the coordinators' write timeout.
pub const TXN_MARKER_COMMIT_WAIT_MS_DEFAULT: u64 = 5_000;

/// The bounds and timings of partition replication, in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplicaLimits {
    /// A follower in the ISR that has not caught up with the leader's durable end for this long
    /// is proposed out of the ISR (Kafka's `replica.lag.time.max.ms`; shorter by default here,
    /// because an acks=all producer waits for the slowest ISR member until then).
    pub replica_lag_time_max_ms: u64,
    /// How long a proposed ISR change that the metadata has not applied blocks the next one of
    /// the same partition (the proposal may have been lost or refused as stale).
    pub isr_change_retry_ms: u64,
    /// acks=all produce requests waiting on one partition at most; past it a request is refused
    /// at once (`ReplicationTimedOut`) instead of queueing (the shard's byte budget usually
    /// bounds them first).
    pub acks_all_waiters_max: usize,
    /// How long `Shard::write_txn_markers` waits for the in-sync replicas of a replicated
    /// partition to hold a marker before answering `ReplicationTimedOut`.
    pub txn_marker_commit_wait_ms: u64,
}

impl Default for ReplicaLimits {
    fn default() -> Self {
        Self {
            replica_lag_time_max_ms: REPLICA_LAG_TIME_MAX_MS_DEFAULT,
            isr_change_retry_ms: ISR_CHANGE_RETRY_MS_DEFAULT,
            acks_all_waiters_max: ACKS_ALL_WAITERS_MAX_DEFAULT,
            txn_marker_commit_wait_ms: TXN_MARKER_COMMIT_WAIT_MS_DEFAULT,
        }
    }
}

/// A change of one partition's ISR that its leader wants the metadata to apply (Kafka's
/// AlterPartition): valid only at `leader_epoch` and `partition_epoch`, so a stale one is
/// refused at apply. The leader keeps using its old ISR until the metadata says otherwise.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrProposal {
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<NodeId>,
}

/// `min.insync.replicas` when the topic does not set it: a majority of the replicas, so that
/// an acknowledged acks=all write survives the loss of any minority (Kafka's default is 1).
pub fn min_insync_default(replication_factor: usize) -> u16 {
    (replication_factor / 2 + 1).min(usize::from(u16::MAX)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_insync_default_is_a_majority() {
        assert_eq!(min_insync_default(1), 1);
        assert_eq!(min_insync_default(2), 2);
        assert_eq!(min_insync_default(3), 2);
        assert_eq!(min_insync_default(4), 3);
        assert_eq!(min_insync_default(5), 3);
    }
}
