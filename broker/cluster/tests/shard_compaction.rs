//! The shard's compaction task over the in-memory disk: which partitions a round compacts (the
//! compacted topics' due ones, the dirtiest first, each once; never a topic without `compact`),
//! what the pass leaves (the last record of every key), and the budget counted while it ran.
//! One shard on a real glommio executor; rounds are driven by the test, not the timer.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use spate_cluster::catalog::{Catalog, TopicConfig, TopicMetadata};
use spate_cluster::shard::compaction::{CompactionLimits, Compactor};
use spate_cluster::shard::messages::{
    FetchPartition, Isolation, PartitionKey, ProduceAcks, ProducePartition,
};
use spate_cluster::shard::opening::Readiness;
use spate_cluster::shard::signal::ShutdownFlag;
use spate_cluster::shard::{Shard, ShardLimits, ShardPosition};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_storage::{CleanupPolicy, Clock, ManualClock, MemoryFileSystem, RecoveryScan};

fn limits() -> ShardLimits {
    ShardLimits {
        shard_inflight_bytes_max: 64 << 20,
        shard_arrival_bytes_max: 8 << 20,
        batch_bytes_max: 1 << 20,
        fetch_wait_ms_max: 1_000,
        recovery_point_interval_ms: 60_000,
        retention_check_interval_ms: 60_000,
        recovery_scan: RecoveryScan::default(),
        kafka_decompressed_bytes_max: 1 << 20,
        log_sizing: Default::default(),
        compaction: compaction_limits(),
    }
}

fn compaction_limits() -> CompactionLimits {
    CompactionLimits {
        check_interval_ms: 60_000,
        // 64 MiB/s: the budget is drawn from (and counted) without slowing the test much.
        io_bytes_per_second: 64 << 20,
        cpu_slice_us: 500,
        cpu_shares: 100,
        key_map_entries_max: 1 << 16,
    }
}

/// A topic config with 64 KiB segments and the given cleanup policy.
fn config(policy: CleanupPolicy) -> TopicConfig {
    TopicConfig {
        segment_bytes: Some(64 * 1024),
        cleanup_policy: Some(policy),
        ..TopicConfig::default()
    }
}

/// `records` records of about 1 KiB, key `key-{n % keys}`, value `{round}-{n}`.
fn batch(round: usize, records: usize, keys: usize) -> BytesMut {
    let padding = "x".repeat(1000);
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for record in 0..records {
        let key = format!("key-{}", record % keys);
        let value = format!("{round}-{record}-{padding}");
        builder
            .append(
                Some(key.as_bytes()),
                Some(value.as_bytes()),
                NO_HEADERS,
                1_000,
            )
            .expect("fits");
    }
    builder.seal().expect("seals")
}

struct Harness {
    shard: Rc<Shard<MemoryFileSystem>>,
    _data_dir: tempfile::TempDir,
    topics: Vec<Arc<TopicMetadata>>,
}

impl Harness {
    /// One shard with one partition per named topic.
    async fn new(topics: &[(&str, TopicConfig)]) -> Harness {
        let data_dir = tempfile::tempdir().expect("temporary directory");
        let (catalog, _) = Catalog::open(data_dir.path(), 1, 16, 16, 1_000).expect("catalog opens");
        let created: Vec<Arc<TopicMetadata>> = topics
            .iter()
            .map(|(name, config)| {
                catalog
                    .create_topic(name, 1, config.clone())
                    .expect("topic created")
            })
            .collect();
        let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_700_000_000_000));
        let shard = Shard::new(
            ShardPosition {
                id: 0,
                shard_count: 1,
            },
            limits(),
            Arc::new(catalog),
            Rc::new(MemoryFileSystem::new(7)),
            clock,
            ShutdownFlag::default(),
            Arc::new(Readiness::new(created.len(), Instant::now())),
        );
        for topic in &created {
            shard
                .clone()
                .open_topic_partitions(topic.clone())
                .await
                .expect("partition opens");
        }
        Harness {
            shard,
            _data_dir: data_dir,
            topics: created,
        }
    }

    fn key(&self, topic: usize) -> PartitionKey {
        PartitionKey {
            topic_id: self.topics[topic].id,
            partition: 0,
        }
    }

    async fn produce(&self, topic: usize, batch: BytesMut) {
        let answers = self
            .shard
            .clone()
            .produce(
                ProduceAcks::All,
                vec![ProducePartition {
                    key: self.key(topic),
                    batches: vec![batch],
                    verification: None,
                }],
                Instant::now(),
            )
            .await;
        answers
            .into_iter()
            .next()
            .expect("an answer")
            .expect("appended");
    }

    fn size(&self, topic: usize) -> u64 {
        self.shard.sizes(&[self.key(topic)])[0]
            .clone()
            .expect("served")
    }

    /// Every (offset, key, value) of the topic's partition.
    async fn read(&self, topic: usize) -> Vec<(u64, Vec<u8>, Vec<u8>)> {
        let mut records = Vec::new();
        let mut offset = 0;
        loop {
            let fetched = self
                .shard
                .clone()
                .fetch(
                    vec![FetchPartition {
                        key: self.key(topic),
                        offset: offset as i64,
                        max_bytes: 1 << 20,
                        isolation: Isolation::ReadUncommitted,
                    }],
                    Instant::now(),
                )
                .await;
            let outcome = fetched.into_iter().next().unwrap().expect("read");
            if outcome.batches.is_empty() {
                return records;
            }
            for batch in &outcome.batches {
                let view = BatchView::validate(batch, usize::MAX).expect("valid");
                for record in view.records().expect("records") {
                    records.push((
                        record.offset(),
                        record.key().unwrap().to_vec(),
                        record.value().unwrap().to_vec(),
                    ));
                }
                offset = view.next_offset();
            }
        }
    }
}

fn on_shard(
    test: impl FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
) {
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("shard-compaction-test")
        .spawn(test)
        .expect("executor started")
        .join()
        .expect("the test passed on the shard");
}

#[test]
fn a_round_compacts_each_due_compacted_partition_once_the_dirtiest_first() {
    on_shard(|| {
        Box::pin(async {
            let harness = Harness::new(&[
                ("few-keys", config(CleanupPolicy::COMPACT)),
                ("many-keys", config(CleanupPolicy::COMPACT_DELETE)),
                ("plain", config(CleanupPolicy::DELETE)),
            ])
            .await;
            // 12 batches of 32 records each: "few-keys" overwrites 4 keys eight times a batch,
            // "many-keys" 32 keys once a batch, "plain" 4 keys (and is not compacted).
            for round in 0..12 {
                harness.produce(0, batch(round, 32, 4)).await;
                harness.produce(1, batch(round, 32, 32)).await;
                harness.produce(2, batch(round, 32, 4)).await;
            }
            let sizes_before: Vec<u64> = (0..3).map(|topic| harness.size(topic)).collect();
            let compactor = Compactor::new(compaction_limits(), Instant::now());
            let first = harness
                .shard
                .next_compaction(&compactor)
                .expect("a compacted partition is due");
            // Both are due (nothing is clean yet: every closed byte is dirty); at the same
            // ratio the one with more dirty bytes goes first: both wrote the same bytes, so the
            // tie goes to the lower key, the first topic. What matters: "plain" is never taken.
            assert_ne!(
                first.key,
                harness.key(2),
                "a delete-only topic is not compacted"
            );
            let passes = harness.shard.compaction_round(&compactor).await;
            assert_eq!(passes, 2, "each due compacted partition once");
            let stats = compactor.stats();
            assert_eq!((stats.passes, stats.passes_failed), (2, 0));
            assert!(stats.records_removed > 0);
            assert!(
                harness.size(0) < sizes_before[0] / 2,
                "few keys: most records go"
            );
            assert!(
                harness.size(1) < sizes_before[1],
                "many keys: older overwrites go"
            );
            assert_eq!(harness.size(2), sizes_before[2], "plain: untouched");
            // Clean now: nothing is due until new dirt arrives.
            assert_eq!(harness.shard.next_compaction(&compactor), None);
            assert_eq!(harness.shard.compaction_round(&compactor).await, 0);

            // The compacted partition still holds the last record of every key, at its offset.
            let records = harness.read(0).await;
            let mut last = std::collections::BTreeMap::new();
            for (offset, key, value) in &records {
                last.insert(key.clone(), (*offset, value.clone()));
            }
            assert_eq!(last.len(), 4);
            for (key, (offset, value)) in last {
                let key_number: usize = String::from_utf8(key[4..].to_vec())
                    .unwrap()
                    .parse()
                    .unwrap();
                // Round 11 wrote key n last at record 28 + n, offset 11 * 32 + 28 + n.
                assert_eq!(offset, 11 * 32 + 28 + key_number as u64);
                assert!(value.starts_with(format!("11-{}-", 28 + key_number).as_bytes()));
            }

            // New dirt in "many-keys" only: the next round takes it alone.
            for round in 12..16 {
                harness.produce(1, batch(round, 32, 4)).await;
            }
            let next = harness
                .shard
                .next_compaction(&compactor)
                .expect("due again");
            assert_eq!(next.key, harness.key(1));
        })
    });
}
