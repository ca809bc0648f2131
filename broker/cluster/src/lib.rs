//! The cluster layer of the Spate broker: the topic catalog shared by all shards (`catalog`) and
//! the shards that own partitions, with their typed cross-shard calls and the request router
//! (`shard`).
//!
//! Above `spate-storage` (each shard opens its partitions' logs through `shard::partition`, the
//! only caller of the storage engine's partition API) and below the per-shard services
//! (`spate-group`) and the server. Nothing here parses frames, holds a socket or reads the
//! broker configuration: shards get their `ShardLimits`, services register beside the shard
//! through `shard::mesh::ShardServices`.
//!
//! Crate invariants: a partition is touched only by the shard the catalog places it on (other
//! shards reach it with `invoke_on`, never by shared memory); a cross-shard call's answer type
//! is its closure's output, so a wrong-shaped answer does not compile; every cross-shard queue
//! is the mesh's bounded channel.

pub mod catalog;
pub mod log_throttle;
pub mod replica;
pub mod shard;

// The storage engine, under the name this crate's modules use (`crate::storage::...`).
use spate_storage as storage;
