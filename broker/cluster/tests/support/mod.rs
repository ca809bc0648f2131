//! What the one-shard integration tests share (`shard_replication`, `shard_transactions`): the
//! shard limits they run under and one shard on the in-memory disk owning the single partition
//! of topic "orders".

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use spate_cluster::catalog::{Catalog, TopicConfig};
use spate_cluster::shard::compaction::CompactionLimits;
use spate_cluster::shard::messages::PartitionKey;
use spate_cluster::shard::opening::Readiness;
use spate_cluster::shard::signal::ShutdownFlag;
use spate_cluster::shard::{Shard, ShardLimits, ShardPosition};
use spate_storage::{Clock, ManualClock, MemoryFileSystem, RecoveryScan};

/// Limits far from anything one test reaches, with long waits (a test's own deadlines decide).
pub fn limits() -> ShardLimits {
    ShardLimits {
        shard_inflight_bytes_max: 64 << 20,
        shard_arrival_bytes_max: 8 << 20,
        batch_bytes_max: 1 << 20,
        fetch_wait_ms_max: 60_000,
        recovery_point_interval_ms: 60_000,
        retention_check_interval_ms: 60_000,
        recovery_scan: RecoveryScan::default(),
        kafka_decompressed_bytes_max: 1 << 20,
        log_sizing: Default::default(),
        compaction: CompactionLimits {
            check_interval_ms: 60_000,
            io_bytes_per_second: 0,
            cpu_slice_us: 500,
            cpu_shares: 100,
            key_map_entries_max: 1 << 16,
        },
    }
}

/// One shard (of one) owning partition 0 of topic "orders", opened on an in-memory disk seeded
/// with `seed`, with a manual clock. Keep the directory for the life of the shard (the catalog's).
pub async fn one_shard_with_orders(
    seed: u64,
) -> (Rc<Shard<MemoryFileSystem>>, PartitionKey, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let (catalog, _) = Catalog::open(data_dir.path(), 1, 16, 16, 1_000).expect("catalog opens");
    let topic = catalog
        .create_topic("orders", 1, TopicConfig::default())
        .expect("topic created");
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_700_000_000_000));
    let shard = Shard::new(
        ShardPosition {
            id: 0,
            shard_count: 1,
        },
        limits(),
        Arc::new(catalog),
        Rc::new(MemoryFileSystem::new(seed)),
        clock,
        ShutdownFlag::default(),
        Arc::new(Readiness::new(1, Instant::now())),
    );
    shard
        .clone()
        .open_topic_partitions(topic.clone())
        .await
        .expect("a new partition opens on the in-memory disk");
    let key = PartitionKey {
        topic_id: topic.id,
        partition: 0,
    };
    (shard, key, data_dir)
}
