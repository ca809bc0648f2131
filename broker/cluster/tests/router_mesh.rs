//! Seeded runs of the router and the cross-shard mesh: real glommio executors, one per shard,
//! joined by the mesh, each shard's partitions on its own in-memory disk.
//!
//! Each case draws a shard count (2 to 4), a mesh queue depth (1 to 3, so full queues and
//! shards calling each other at once are the rule) and two topics placed over the shards. Then:
//! - every shard sends many produce requests at once, each naming a random set of partitions in
//!   a random order; the router splits each by owner, runs the pieces (locally or through the
//!   mesh) and joins the answers. Every answer must come back, in the order of the request:
//!   checked by reading every partition back through the router and finding, at each answer's
//!   offset, the very batch its item carried (a join out of order would give an item another
//!   partition's offset, where another batch lies);
//! - then the last shard stops (`Mesh::stop`, as a broker's shard does at its end, and its
//!   executor ends) while the others keep sending requests that name its partitions among
//!   theirs. Every request must still be answered: its partitions with `ShuttingDown`, the
//!   others as usual; none may hang (each has a deadline far above what it needs).
//!
//! A failure names its seed (a panic on one shard can leave the others waiting for it until
//! their deadline): rerun one case with `SPATE_ROUTER_SIM_SEED=<seed>`;
//! `SPATE_ROUTER_SIM_CASES` sets the number of cases.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::{LocalExecutorBuilder, Placement};
use spate_cluster::catalog::{Catalog, TopicConfig, TopicMetadata};
use spate_cluster::shard::compaction::CompactionLimits;
use spate_cluster::shard::mesh::{Envelope, Mesh, ShardServices};
use spate_cluster::shard::messages::{
    FetchPartition, Isolation, PartitionError, PartitionKey, ProduceAcks, ProducePartition,
};
use spate_cluster::shard::opening::Readiness;
use spate_cluster::shard::router::scatter;
use spate_cluster::shard::signal::ShutdownFlag;
use spate_cluster::shard::{Shard, ShardLimits, ShardPosition};
use spate_protocol::batch::header::{compute_crc, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{Clock, ManualClock, MemoryFileSystem, RecoveryScan, SimulationRng};

const CASES_DEFAULT: u64 = 12;
const BASE_SEED: u64 = 0x5a0d_0000;
/// Requests each shard sends at once in the first phase.
const REQUESTS_PER_SHARD: usize = 24;
/// Requests each remaining shard sends while the last one stops.
const REQUESTS_WHILE_STOPPING: usize = 16;
/// Longest any one request may take: far above what a run needs, so only a hang reaches it.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
const BATCH_BYTES: usize = BATCH_HEADER_BYTES + 8;

/// One shard's services in the test: the shard and its end of the mesh.
struct TestServices {
    shard: Rc<Shard<MemoryFileSystem>>,
    mesh: Mesh<TestServices>,
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

/// A valid one-record batch whose payload is `id`.
fn batch(id: u64) -> BytesMut {
    let mut bytes = BytesMut::zeroed(BATCH_BYTES);
    bytes[BATCH_HEADER_BYTES..].copy_from_slice(&id.to_le_bytes());
    let mut header = BatchHeader {
        base_offset: 0,
        leader_epoch: 0,
        crc: 0,
        batch_length: BATCH_BYTES as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        attributes: 0,
        offset_count: 1,
        record_count: 1,
        first_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        reserved: 0,
        base_sequence: NO_SEQUENCE,
    };
    header.encode(&mut bytes);
    header.crc = compute_crc(&bytes);
    header.encode(&mut bytes);
    bytes
}

fn id_of(stored: &[u8]) -> u64 {
    u64::from_le_bytes(
        stored[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + 8]
            .try_into()
            .unwrap(),
    )
}

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
        compaction: CompactionLimits {
            check_interval_ms: 60_000,
            io_bytes_per_second: 0,
            cpu_slice_us: 500,
            cpu_shares: 100,
            key_map_entries_max: 1 << 16,
        },
    }
}

/// What every shard shares in one case.
struct Shared {
    seed: u64,
    shard_count: usize,
    partitions: Vec<(PartitionKey, usize)>,
    /// (partition, offset) → batch id, from every acknowledged answer.
    acknowledged: Mutex<BTreeMap<(PartitionKey, u64), u64>>,
    ready: AtomicUsize,
    produced: AtomicUsize,
    checked: AtomicUsize,
    finished: AtomicUsize,
    /// Set by the test thread once the last shard's executor has ended.
    last_stopped: AtomicBool,
}

/// Waits, polling, until `ready` holds. A blocking wait would stop this shard's executor, and
/// with it the answers its peers wait for; the deadline turns a hang into a failure.
async fn wait_until(ready: impl Fn() -> bool) {
    let deadline = Instant::now() + REQUEST_DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "the shards never met (a hang)");
        glommio::timer::sleep(Duration::from_millis(1)).await;
    }
}

/// Counts this shard in at `meeting` and waits for all `shard_count`.
async fn arrive_and_wait(meeting: &AtomicUsize, shard_count: usize) {
    meeting.fetch_add(1, Ordering::SeqCst);
    wait_until(|| meeting.load(Ordering::SeqCst) >= shard_count).await;
}

/// A random request: distinct partitions in a random order, each with a batch whose id is new.
fn draw_request(
    rng: &mut SimulationRng,
    shared: &Shared,
    next_id: &mut u64,
) -> Vec<(usize, ProducePartition, u64)> {
    let mut order: Vec<usize> = (0..shared.partitions.len()).collect();
    for index in (1..order.len()).rev() {
        order.swap(index, rng.below(index as u64 + 1) as usize);
    }
    let count = 1 + rng.below(order.len() as u64) as usize;
    order[..count]
        .iter()
        .map(|&index| {
            let (key, owner) = shared.partitions[index];
            let id = *next_id;
            *next_id += 1;
            (
                owner,
                ProducePartition {
                    key,
                    batches: vec![batch(id)],
                    verification: None,
                },
                id,
            )
        })
        .collect()
}

/// Sends one produce request through the router; returns each item's (partition, id, answer).
async fn produce(
    services: &Rc<TestServices>,
    request: Vec<(usize, ProducePartition, u64)>,
) -> Vec<(PartitionKey, u64, Result<u64, PartitionError>)> {
    let named: Vec<(PartitionKey, u64)> = request
        .iter()
        .map(|(_, produce, id)| (produce.key, *id))
        .collect();
    let items = request
        .into_iter()
        .map(|(owner, produce, _)| (owner, produce))
        .collect();
    let answers = glommio::timer::timeout(REQUEST_DEADLINE, async {
        Ok::<_, glommio::GlommioError<()>>(
            scatter(services, items, |shard, partitions| async move {
                let deadline = Instant::now() + Duration::from_secs(10);
                shard.produce(ProduceAcks::All, partitions, deadline).await
            })
            .await,
        )
    })
    .await
    .unwrap_or_else(|_| panic!("a request through the router was never answered (a hang)"));
    assert_eq!(answers.len(), named.len(), "one answer per item");
    named
        .into_iter()
        .zip(answers)
        .map(|((key, id), answer)| (key, id, answer.map(|outcome| outcome.base_offset)))
        .collect()
}

/// Reads every partition of `shared` through the router and checks each acknowledged answer.
async fn check_every_answer(services: &Rc<TestServices>, shared: &Shared) {
    let items: Vec<(usize, FetchPartition)> = shared
        .partitions
        .iter()
        .map(|(key, owner)| {
            (
                *owner,
                FetchPartition {
                    key: *key,
                    offset: 0,
                    max_bytes: 16 << 20,
                    isolation: Isolation::ReadUncommitted,
                },
            )
        })
        .collect();
    let answers = scatter(services, items, |shard, partitions| async move {
        let deadline = Instant::now() + Duration::from_secs(10);
        shard.fetch(partitions, deadline).await
    })
    .await;
    let mut stored = BTreeMap::new();
    for ((key, _), answer) in shared.partitions.iter().zip(answers) {
        let outcome = answer.unwrap_or_else(|error| panic!("fetching {key:?}: {error}"));
        for bytes in outcome.batches {
            let header = BatchHeader::decode(&bytes).expect("a stored batch has a header");
            stored.insert((*key, header.base_offset), id_of(&bytes));
        }
    }
    let acknowledged = shared.acknowledged.lock().unwrap().clone();
    assert_eq!(
        stored.len(),
        acknowledged.len(),
        "every stored batch was acknowledged once"
    );
    for (place, id) in &acknowledged {
        assert_eq!(
            stored.get(place),
            Some(id),
            "the answer for batch {id} named {place:?}, which holds another batch"
        );
    }
}

async fn run_shard(
    shared: Arc<Shared>,
    catalog: Arc<Catalog>,
    topics: Vec<Arc<TopicMetadata>>,
    mesh_builder: MeshBuilder<Envelope<TestServices>, glommio::channels::channel_mesh::Full>,
) {
    let (senders, receivers) = mesh_builder.join().await.expect("joined the mesh");
    let mesh = Mesh::new(senders);
    let id = mesh.shard_id();
    let disk = MemoryFileSystem::new(shared.seed ^ (id as u64 + 1));
    let clock: Rc<dyn Clock> = Rc::new(ManualClock::new(1_700_000_000_000));
    let shard = Shard::new(
        ShardPosition {
            id,
            shard_count: shared.shard_count,
        },
        limits(),
        catalog,
        Rc::new(disk),
        clock,
        ShutdownFlag::default(),
        Arc::new(Readiness::new(shared.shard_count, Instant::now())),
    );
    let services = Rc::new(TestServices {
        shard: shard.clone(),
        mesh,
    });
    services.mesh().spawn_receivers(receivers, &services);
    for topic in topics {
        shard
            .clone()
            .open_topic_partitions(topic)
            .await
            .expect("a new partition opens on the in-memory disk");
    }
    arrive_and_wait(&shared.ready, shared.shard_count).await;

    let mut rng = SimulationRng::new(shared.seed.wrapping_mul(31) + id as u64);
    let mut next_id = (id as u64 + 1) << 32;
    let requests: Vec<_> = (0..REQUESTS_PER_SHARD)
        .map(|_| {
            let request = draw_request(&mut rng, &shared, &mut next_id);
            let services = services.clone();
            glommio::spawn_local(async move { produce(&services, request).await })
        })
        .collect();
    for request in requests {
        for (key, id, answer) in request.await {
            let offset = answer.unwrap_or_else(|error| panic!("producing to {key:?}: {error}"));
            let previous = shared
                .acknowledged
                .lock()
                .unwrap()
                .insert((key, offset), id);
            assert!(
                previous.is_none(),
                "offset {offset} of {key:?} handed out twice"
            );
        }
    }
    arrive_and_wait(&shared.produced, shared.shard_count).await;
    if id == 0 {
        check_every_answer(&services, &shared).await;
    }
    arrive_and_wait(&shared.checked, shared.shard_count).await;

    let last = shared.shard_count - 1;
    if id == last {
        // Stops now, as a broker's shard does when it ends: its end of the mesh goes, whatever
        // the others are sending it.
        services.mesh().stop().await;
        return;
    }
    let requests: Vec<_> = (0..REQUESTS_WHILE_STOPPING)
        .map(|_| {
            let request = draw_request(&mut rng, &shared, &mut next_id);
            let services = services.clone();
            glommio::spawn_local(async move { produce(&services, request).await })
        })
        .collect();
    for request in requests {
        check_stopping_answers(&shared, request.await);
    }

    // Once the last shard is gone for certain, each of its partitions is refused.
    wait_until(|| shared.last_stopped.load(Ordering::SeqCst)).await;
    let request = draw_request(&mut rng, &shared, &mut next_id);
    for (key, _, answer) in produce(&services, request).await {
        let owner = shared.partitions.iter().find(|(k, _)| *k == key).unwrap().1;
        if owner == last {
            assert_eq!(answer, Err(PartitionError::ShuttingDown), "{key:?}");
        } else {
            answer.unwrap_or_else(|error| panic!("producing to {key:?}: {error}"));
        }
    }
    // The others stop together, once none of them sends any more.
    arrive_and_wait(&shared.finished, shared.shard_count - 1).await;
    services.mesh().stop().await;
}

/// While the last shard stops, its partitions may be answered either way; the others never fail.
fn check_stopping_answers(
    shared: &Shared,
    answers: Vec<(PartitionKey, u64, Result<u64, PartitionError>)>,
) {
    let last = shared.shard_count - 1;
    for (key, _, answer) in answers {
        let owner = shared.partitions.iter().find(|(k, _)| *k == key).unwrap().1;
        match answer {
            Ok(_) => {}
            Err(PartitionError::ShuttingDown) if owner == last => {}
            Err(error) => panic!("{key:?} (shard {owner}) answered {error}"),
        }
    }
}

fn run_case(seed: u64) {
    let mut rng = SimulationRng::new(seed);
    let shard_count = 2 + rng.below(3) as usize;
    let queue_depth = 1 + rng.below(3) as usize;
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let (catalog, _) =
        Catalog::open(data_dir.path(), shard_count, 16, 16, 1_000).expect("catalog opens");
    let mut topics = Vec::new();
    for name in ["left", "right"] {
        let partitions = 1 + rng.below(6) as i64;
        topics.push(
            catalog
                .create_topic(name, partitions, TopicConfig::default())
                .expect("topic created"),
        );
    }
    let partitions: Vec<(PartitionKey, usize)> = topics
        .iter()
        .flat_map(|topic| {
            (0..topic.partition_count()).map(|partition| {
                (
                    PartitionKey {
                        topic_id: topic.id,
                        partition,
                    },
                    topic.owner_of(partition).expect("placed"),
                )
            })
        })
        .collect();
    eprintln!(
        "router case {seed}: {shard_count} shards, queue depth {queue_depth}, {} partitions",
        partitions.len()
    );
    let shared = Arc::new(Shared {
        seed,
        shard_count,
        partitions,
        acknowledged: Mutex::new(BTreeMap::new()),
        ready: AtomicUsize::new(0),
        produced: AtomicUsize::new(0),
        checked: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        last_stopped: AtomicBool::new(false),
    });
    let catalog = Arc::new(catalog);
    let mesh_builder = MeshBuilder::<Envelope<TestServices>, _>::full(shard_count, queue_depth);
    let handles: Vec<_> = (0..shard_count)
        .map(|index| {
            let shared = shared.clone();
            let catalog = catalog.clone();
            let topics = topics.clone();
            let mesh_builder = mesh_builder.clone();
            LocalExecutorBuilder::new(Placement::Unbound)
                .name(&format!("router-test-{index}"))
                .spawn(move || run_shard(shared, catalog, topics, mesh_builder))
                .expect("executor started")
        })
        .collect();
    let mut outcomes = Vec::new();
    let mut handles = handles.into_iter().collect::<Vec<_>>();
    let last = handles.pop().expect("at least two shards");
    outcomes.push(last.join());
    shared.last_stopped.store(true, Ordering::SeqCst);
    for handle in handles {
        outcomes.push(handle.join());
    }
    for outcome in outcomes {
        if let Err(error) = outcome {
            panic!("router case failed: rerun with SPATE_ROUTER_SIM_SEED={seed}: {error:?}");
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[test]
fn seeded_requests_split_across_shards_are_joined_in_request_order_and_a_stopped_shard_is_answered_for(
) {
    if let Some(seed) = env_u64("SPATE_ROUTER_SIM_SEED") {
        run_case(seed);
        return;
    }
    let cases = env_u64("SPATE_ROUTER_SIM_CASES").unwrap_or(CASES_DEFAULT);
    for seed in BASE_SEED..BASE_SEED + cases {
        run_case(seed);
    }
}
