//! The coordinator's transactional offset commits over a real shard: one glommio executor, its
//! partitions (the offsets topic's among them) on the in-memory disk, the coordinator's
//! functions called as the handlers call them. The transactional batches go through the
//! shard's produce with the partition's verification guard, the markers through the shard's
//! marker path, and a reload replays what the partition's storage holds.

use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use spate_protocol::api::{
    OffsetCommitPartition, OffsetCommitRequest, OffsetFetchRequest, TopicPartitionList,
    TopicPartitions, TxnOffsetCommitRequest, GENERATION_NONE,
};
use spate_protocol::ErrorCode;
use spate_storage::{Clock, ManualClock, MemoryFileSystem, RecoveryScan};

use super::coordinator::{
    commit_offsets, commit_transactional_offsets, complete_transaction, fetch_offsets,
    offsets_topic,
};
use super::{GroupCoordinator, GroupLimits, GroupServices};
use crate::catalog::{Catalog, TopicConfig};
use crate::shard::compaction::CompactionLimits;
use crate::shard::mesh::{Envelope, Mesh, ShardServices};
use crate::shard::opening::Readiness;
use crate::shard::signal::ShutdownFlag;
use crate::shard::{Shard, ShardLimits, ShardPosition};

const GROUP: &str = "transactional-group";
const TOPIC: &str = "ledger";

struct TestServices {
    shard: Rc<Shard<MemoryFileSystem>>,
    mesh: Mesh<TestServices>,
    groups: GroupCoordinator,
}

impl Deref for TestServices {
    type Target = Shard<MemoryFileSystem>;

    fn deref(&self) -> &Shard<MemoryFileSystem> {
        &self.shard
    }
}

impl ShardServices for TestServices {
    type Files = MemoryFileSystem;

    fn shard(&self) -> &Rc<Shard<MemoryFileSystem>> {
        &self.shard
    }

    fn mesh(&self) -> &Mesh<TestServices> {
        &self.mesh
    }
}

impl GroupServices for TestServices {
    fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }
}

fn shard_limits() -> ShardLimits {
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
        compaction: CompactionLimits {
            check_interval_ms: 60_000,
            io_bytes_per_second: 0,
            cpu_slice_us: 500,
            cpu_shares: 100,
            key_map_entries_max: 1 << 16,
        },
    }
}

/// Runs `test` on one shard that owns `TOPIC` (2 partitions) and coordinates every group.
fn on_one_shard<F, Fut>(test: F)
where
    F: FnOnce(Rc<TestServices>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let (catalog, _) = Catalog::open(data_dir.path(), 1, 16, 64, 1_000).expect("catalog opens");
    let topic = catalog
        .create_topic(TOPIC, 2, TopicConfig::default())
        .expect("topic created");
    let catalog = Arc::new(catalog);
    let mesh_builder = MeshBuilder::<Envelope<TestServices>, _>::full(1, 4);
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("group-transactions-test")
        .spawn(move || async move {
            let (senders, receivers) = mesh_builder.join().await.expect("joined the mesh");
            let mesh = Mesh::new(senders);
            let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_700_000_000_000));
            let shard = Shard::new(
                ShardPosition {
                    id: 0,
                    shard_count: 1,
                },
                shard_limits(),
                catalog,
                Rc::new(MemoryFileSystem::new(7)),
                clock,
                ShutdownFlag::default(),
                Arc::new(Readiness::new(1, Instant::now())),
            );
            let services = Rc::new(TestServices {
                shard: shard.clone(),
                mesh,
                groups: GroupCoordinator::new(GroupLimits::default()),
            });
            services.mesh().spawn_receivers(receivers, &services);
            shard
                .open_topic_partitions(topic)
                .await
                .expect("the topic's partitions open");
            offsets_topic(&services, true)
                .await
                .expect("the offsets topic is created")
                .expect("it exists");
            test(services.clone()).await;
            services.mesh().stop().await;
        })
        .expect("executor started");
    handle.join().expect("the test's executor ran to its end");
}

fn partition_of_group(services: &TestServices) -> u32 {
    let topic = services
        .snapshot()
        .topic(super::OFFSETS_TOPIC_NAME)
        .cloned()
        .expect("the offsets topic");
    super::offsets_partition_of(GROUP, topic.partition_count())
}

fn offsets(entries: &[(u32, u64)]) -> Vec<TopicPartitions<OffsetCommitPartition>> {
    vec![TopicPartitions {
        name: TOPIC.into(),
        partitions: entries
            .iter()
            .map(|(partition, offset)| OffsetCommitPartition {
                partition: *partition,
                committed_offset: *offset,
                committed_metadata: None,
            })
            .collect(),
    }]
}

/// A TxnOffsetCommit from outside the membership; each partition's code.
async fn txn_commit(
    services: &Rc<TestServices>,
    producer: (i64, i16),
    entries: &[(u32, u64)],
) -> Vec<ErrorCode> {
    let request = TxnOffsetCommitRequest {
        transactional_id: "txn".into(),
        group_id: GROUP.into(),
        producer_id: producer.0,
        producer_epoch: producer.1,
        generation_id: GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: offsets(entries),
    };
    let partition = partition_of_group(services);
    let response = commit_transactional_offsets(services, partition, request).await;
    response.topics[0]
        .partitions
        .iter()
        .map(|result| result.error_code)
        .collect()
}

/// Each of the topic's two partitions: (code, committed offset).
async fn fetch(services: &Rc<TestServices>, require_stable: bool) -> Vec<(ErrorCode, Option<u64>)> {
    let request = OffsetFetchRequest {
        group_id: GROUP.into(),
        topics: Some(vec![TopicPartitionList {
            name: TOPIC.into(),
            partitions: vec![0, 1],
        }]),
        require_stable,
    };
    let partition = partition_of_group(services);
    let response = fetch_offsets(services, partition, request).await;
    assert_eq!(response.error_code, ErrorCode::None);
    response.topics[0]
        .partitions
        .iter()
        .map(|answer| (answer.error_code, answer.committed_offset))
        .collect()
}

/// Forgets the loaded offsets partition, as a coordinator restart does: the next request
/// replays it from the log.
fn unload(services: &TestServices) {
    services.groups.unload_partitions();
}

const OK: ErrorCode = ErrorCode::None;
const UNSTABLE: ErrorCode = ErrorCode::UnstableOffsetCommit;

#[test]
fn transactional_offsets_commit_abort_and_survive_a_reload_through_a_real_shard() {
    on_one_shard(|services| async move {
        let partition = partition_of_group(&services);
        let plain = OffsetCommitRequest {
            group_id: GROUP.into(),
            generation_id: GENERATION_NONE,
            member_id: String::new(),
            group_instance_id: None,
            topics: offsets(&[(0, 5)]),
        };
        let committed = commit_offsets(&services, partition, plain).await;
        assert_eq!(committed.topics[0].partitions[0].error_code, OK);

        // Pending until the marker; require_stable waits for it.
        assert_eq!(
            txn_commit(&services, (7, 0), &[(0, 9), (1, 3)]).await,
            [OK, OK]
        );
        assert_eq!(fetch(&services, false).await, [(OK, Some(5)), (OK, None)]);
        assert_eq!(
            fetch(&services, true).await,
            [(UNSTABLE, None), (UNSTABLE, None)]
        );
        complete_transaction(&services, GROUP, 7, 0, true)
            .await
            .expect("the commit marker is written");
        assert_eq!(fetch(&services, true).await, [(OK, Some(9)), (OK, Some(3))]);

        // An aborted transaction's offsets never show.
        assert_eq!(txn_commit(&services, (7, 0), &[(0, 20)]).await, [OK]);
        complete_transaction(&services, GROUP, 7, 0, false)
            .await
            .expect("the abort marker is written");
        assert_eq!(fetch(&services, true).await, [(OK, Some(9)), (OK, Some(3))]);

        // A pending transaction survives a reload, and commits after it.
        assert_eq!(txn_commit(&services, (8, 0), &[(1, 30)]).await, [OK]);
        unload(&services);
        assert_eq!(
            fetch(&services, true).await,
            [(OK, Some(9)), (UNSTABLE, None)]
        );
        complete_transaction(&services, GROUP, 8, 0, true)
            .await
            .expect("the commit marker is written after the reload");
        assert_eq!(
            fetch(&services, true).await,
            [(OK, Some(9)), (OK, Some(30))]
        );

        // A timed-out transaction aborted under a bumped epoch: its offsets go, and its old
        // epoch is fenced; the new epoch starts its sequence over.
        assert_eq!(txn_commit(&services, (7, 0), &[(0, 40)]).await, [OK]);
        complete_transaction(&services, GROUP, 7, 1, false)
            .await
            .expect("the abort marker of the bumped epoch is written");
        assert_eq!(
            txn_commit(&services, (7, 0), &[(0, 41)]).await,
            [ErrorCode::ProducerFenced]
        );
        assert_eq!(txn_commit(&services, (7, 1), &[(0, 42)]).await, [OK]);
        complete_transaction(&services, GROUP, 7, 1, true)
            .await
            .expect("the commit marker is written");
        assert_eq!(
            fetch(&services, true).await,
            [(OK, Some(42)), (OK, Some(30))]
        );

        // Everything replays to the same state.
        unload(&services);
        assert_eq!(
            fetch(&services, true).await,
            [(OK, Some(42)), (OK, Some(30))]
        );
        // And a second transaction of the same epoch continues the sequence after a reload.
        assert_eq!(txn_commit(&services, (7, 1), &[(1, 50)]).await, [OK]);
        complete_transaction(&services, GROUP, 7, 1, true)
            .await
            .expect("the commit marker is written");
        assert_eq!(
            fetch(&services, true).await,
            [(OK, Some(42)), (OK, Some(50))]
        );
    });
}
