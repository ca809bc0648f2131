//! `spate-txn`, the transaction coordinator: Kafka's transactions for transactional producers.
//! Above `spate-group` (it completes the transactional offset commits of the groups a
//! transaction added) and `spate-cluster` (shards, mesh, catalog); not over `spate-storage`:
//! partitions are reached through shard calls, like any client of a partition.
//!
//! Every transactional id lives in one partition of the broker's own topic
//! [`TRANSACTION_STATE_TOPIC_NAME`] (`crc32c(id) % partitions`, see [`state_partition_of`]),
//! and the partition's ids are coordinated by one shard ([`coordinator_shard_of`]: `partition %
//! shards`, as groups). Any shard takes transaction requests; the `coordinator` functions route
//! each to its coordinator with a typed cross-shard call (`shard::mesh::invoke_on`).
//!
//! - `state` — one transactional id's state machine (pure: time is passed in).
//! - `records` — the records of the state topic (key: the id; value: its state), versioned.
//! - `coordinator` — the shard-local coordinator: the protocol-neutral request functions
//!   (`init_producer_id`, `add_partitions`, `verify_partitions`, `add_offsets`, `end_txn`,
//!   `describe`, `list`), the markers of decided transactions, the timeout timer, and the
//!   loading of the state partitions (replay, then finishing what was decided before a crash).
//! - `limits` — every bound, with defaults.
//! - `peers` — the calls to other brokers in a cluster (markers to remote partition leaders,
//!   remote group completion and verification), implemented by the server.
//!
//! Architecture invariant: a transaction's outcome is durable (its `Prepare*` record written
//! with acks=all) before any marker of it is written, and its `Complete*` record is written only
//! after every marker was; so a coordinator that restarts finishes exactly the transactions it
//! decided, with the outcome it decided, and a partition never holds markers of both outcomes
//! for one transaction.
//!
//! Architecture invariant: every epoch a fence or a timeout moves to is durable before the
//! abort's markers carry it, so a fenced producer's batches are refused by every partition the
//! aborted transaction touched (the marker raised the producer's epoch there), and by every
//! other one through verification (`verify_partitions`) or its own epoch check.

pub mod coordinator;
pub mod limits;
mod partition;
pub mod peers;
pub mod records;
pub mod state;

#[cfg(test)]
mod simulation_tests;
#[cfg(test)]
mod state_tests;

// The cluster layer, under the names this crate's modules use (`crate::shard::...`).
use spate_cluster::{catalog, shard};

use crate::catalog::ShardId;

pub use coordinator::TxnCoordinator;
pub use limits::{TxnLimits, TRANSACTION_STATE_TOPIC_NAME};
pub use state::{TopicPartition, TxnError, TxnState};

/// The state partition that holds `transactional_id`'s state: CRC-32C of the id, so the
/// placement is stable across builds and restarts.
pub fn state_partition_of(transactional_id: &str, partition_count: u32) -> u32 {
    assert!(partition_count > 0, "the state topic has partitions");
    crc32c::crc32c(transactional_id.as_bytes()) % partition_count
}

/// The shard that coordinates the ids of a state partition (as for groups).
pub fn coordinator_shard_of(partition: u32, shard_count: usize) -> ShardId {
    spate_group::coordinator_shard_of(partition, shard_count)
}

/// A shard's services with its group and transaction coordinators: what the coordinator's
/// functions run against. The server's services type implements it; the coordinator is
/// registered beside the shard, not inside it.
pub trait TxnServices: spate_group::GroupServices {
    fn transactions(&self) -> &TxnCoordinator;

    /// Calls to other brokers of the cluster; `None` for a single broker, where every leader
    /// and coordinator is local.
    fn txn_peers(&self) -> Option<std::rc::Rc<dyn peers::TxnPeers>> {
        None
    }
}
