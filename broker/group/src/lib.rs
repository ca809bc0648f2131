//! `spate-group`, the group coordinator: consumer group membership and committed offsets.
//! Above `spate-cluster` (shards, mesh, catalog) and not over `spate-storage`: Cargo keeps the
//! coordinator away from the storage engine.
//!
//! Every group lives in one partition of the broker's own topic [`OFFSETS_TOPIC_NAME`]
//! (`hash(group) % partitions`, see [`offsets_partition_of`]), and the partition's groups are
//! coordinated by one shard ([`coordinator_shard_of`]: `partition % shards`). Any shard takes
//! group requests; `server::handlers::group` runs each on its coordinator with a typed
//! cross-shard call (`shard::mesh::invoke_on`) of the matching `coordinator` function.
//!
//! - `membership` — one group's membership state machine (pure: time is passed in).
//! - `records` — the records of the offsets topic (committed offsets, membership), versioned.
//! - `store` — one offsets partition's live state, rebuilt by replay (last record per key); the
//!   offsets of open transactions, pending until their producer's marker.
//! - `coordinator` — the shard-local coordinator: runs requests against the state machines,
//!   answers parked joins and syncs, runs the timers, creates the offsets topic.
//! - `partition` — one offsets partition as its coordinator holds it: replayed on first use,
//!   written by one writer (acks=all, applied once durable; transactional offsets as the
//!   producer's transactional batches, transaction ends as markers); the storage engine
//!   compacts its log (`cleanup.policy=compact`).
//! - `limits` — every bound, with defaults.
//! - `dialect` — members' subscriptions and assignments in the layout each member reads
//!   (native or Kafka), for groups shared by both protocols.
//!
//! Architecture invariant: the coordinator reaches the offsets topic only through shard
//! requests (`Produce`, `Fetch`, `DeleteRecords`, `States`), like any client of a partition;
//! only `shard::partition` touches the storage engine.
//!
//! Architecture invariant: an offset commit is answered only after its record is durable
//! (acks=all) and applied; offset fetches read only applied records, so an acknowledged commit
//! survives `kill -9` and a fetched offset was durable.

pub mod coordinator;
pub mod dialect;
pub mod limits;
pub mod membership;
mod partition;
pub mod records;
pub mod store;

#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod simulation_tests;
#[cfg(test)]
mod transaction_tests;

// The cluster layer, under the names this crate's modules use (`crate::shard::...`).
use spate_cluster::{catalog, shard};

use crate::catalog::ShardId;
use crate::shard::mesh::ShardServices;

pub use coordinator::GroupCoordinator;
pub use limits::{GroupLimits, OFFSETS_TOPIC_NAME};
pub use membership::{ClientInfo, MemberIdHandshake};

/// The offsets partition that holds `group_id`'s state: CRC-32C of the id, so the placement is
/// stable across builds and restarts.
pub fn offsets_partition_of(group_id: &str, partition_count: u32) -> u32 {
    assert!(partition_count > 0, "the offsets topic has partitions");
    crc32c::crc32c(group_id.as_bytes()) % partition_count
}

/// The shard that coordinates the groups of an offsets partition. Independent of where the
/// catalog placed the partition's data: the coordinator reaches it through the mesh if needed.
pub fn coordinator_shard_of(partition: u32, shard_count: usize) -> ShardId {
    assert!(shard_count > 0, "a broker has at least one shard");
    partition as usize % shard_count
}

/// A shard's services with its group coordinator: what the coordinator's functions run
/// against. The server's services type implements it; the coordinator is registered beside the
/// shard, not inside it.
pub trait GroupServices: ShardServices {
    fn groups(&self) -> &GroupCoordinator;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_always_maps_to_the_same_partition_and_shard() {
        let partition = offsets_partition_of("payments", 16);
        assert!(partition < 16);
        assert_eq!(offsets_partition_of("payments", 16), partition);
        // CRC-32C is fixed: this pins the placement across builds.
        assert_eq!(
            offsets_partition_of("payments", 16),
            crc32c::crc32c(b"payments") % 16
        );
        assert_eq!(coordinator_shard_of(5, 2), 1);
        assert_eq!(coordinator_shard_of(4, 2), 0);
        assert_eq!(coordinator_shard_of(7, 1), 0);
    }

    #[test]
    fn groups_spread_over_every_partition() {
        let mut used = [false; 16];
        for index in 0..1000 {
            used[offsets_partition_of(&format!("group-{index}"), 16) as usize] = true;
        }
        assert!(used.iter().all(|used| *used));
    }
}
