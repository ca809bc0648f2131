//! Seeded simulation (TigerBeetle's VOPR manner) of partition replication's data layer: three
//! replicas of one partition, each a real `PartitionLog` on its own in-memory disk, driven by
//! the pure replica state of `spate_cluster::replica` (leader: ISR progress, high watermark, ISR
//! changes, acks=all waiters; follower: diverging epoch and truncation) and the storage
//! engine's replica operations (`set_leader_epoch`, `append_replica`, `truncate_to`,
//! `read_replica`, the committed offset), the way `shard::replication` drives them.
//!
//! Around them, all seeded and with time passed in (10 ms ticks):
//! - a model controller (the metadata quorum is tested by its own simulation): it fences a
//!   broker not heard from for a session timeout (out of the ISR, never emptying it), elects
//!   the first live ISR member on a leader's loss (never unclean), bumps leader and partition
//!   epochs, applies a leader's ISR change only at the epochs it names, and hands each broker
//!   the partition's role after a random delay when it can reach it;
//! - a network between the brokers and to the controller that loses, delays (reorders) and
//!   duplicates messages, and partitions: one link, or a broker (often the leader) cut from
//!   every other broker and the controller while producers still reach it;
//! - crashes of a broker, half of them with power loss (its disk keeps only what was synced),
//!   and restarts that recover the log from the disk;
//! - producers sending one batch at a time, acks=all (most) and acks=leader, to the broker they
//!   believe leads (or any), with a produce timeout.
//!
//! Checked against a model of one ordered log:
//! - every batch acknowledged under acks=all stays at the offset it was acknowledged at, byte
//!   for byte, on every leader elected after, and in every replica at the end;
//! - no two different batches at one committed offset on any replicas, ever (each replica's
//!   committed prefix is compared, as it grows, with one map of offset → batch);
//! - a replica never truncates below what is committed;
//! - a leader cut off from every other replica never acknowledges an acks=all write appended
//!   since it was cut off;
//! - at the end (network healed, every broker up, no faults for a while) every replica is in
//!   the ISR and the replicas' logs are equal.
//!
//! A failure prints its seed; rerun one case with `SPATE_REPLICATION_SIM_SEED=<seed>`
//! (`SPATE_REPLICATION_SIM_TRACE=1` prints every event). `SPATE_REPLICATION_SIM_CASES` sets the
//! number of cases (default below, a few seconds), `SPATE_REPLICATION_SIM_BASE_SEED` where they
//! start.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spate_cluster::replica::follower::{
    diverging_epoch, follower_committed_offset, truncation_for, DivergingEpoch, FollowerRole,
};
use spate_cluster::replica::leader::{LeaderRole, LeaderState};
use spate_cluster::replica::waiters::AckWaiters;
use spate_cluster::replica::{NodeId, ReplicaLimits, NO_EPOCH};
use spate_protocol::batch::header::{
    compute_crc, stamp_producer, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{
    AppendWait, Clock, Durability, FaultPlan, LogConfig, ManualClock, MemoryFileSystem,
    PartitionLog, StorageError,
};

const CASES_DEFAULT: u64 = 100;
const BASE_SEED: u64 = 0x4e91_0000;

const NODES: [NodeId; 3] = [1, 2, 3];
/// The controller's end of a network link.
const CONTROLLER: NodeId = 0;
const MIN_INSYNC: u16 = 2;

const TICK_MS: u64 = 10;
/// Ticks of faults and traffic per case (drawn between these), then a quiet end.
const TICKS_MIN: u64 = 150;
const TICKS_MAX: u64 = 500;
/// Ticks with no fault, no new produce, for the cluster to settle before the final checks.
const SETTLE_TICKS: u64 = 400;

/// The controller fences a broker it has not heard from for this long.
const SESSION_TIMEOUT_MS: u64 = 150;
const LIMITS: ReplicaLimits = ReplicaLimits {
    replica_lag_time_max_ms: 300,
    isr_change_retry_ms: 200,
    acks_all_waiters_max: 64,
    txn_marker_commit_wait_ms: 1_000,
};
const PRODUCE_TIMEOUT_MS: u64 = 400;
/// A follower sends its next fetch after the answer, or after this without one (lost).
const FETCH_RETRY_MS: u64 = 60;
const FETCH_BYTES_MAX: u32 = 4 * 1024;
const BATCH_BYTES: usize = BATCH_HEADER_BYTES + 8 + 40;

const START_MS: i64 = 1_700_000_000_000;

/// The idempotent producer's id (one batch in flight, acks=all, retried until acknowledged).
const PRODUCER_ID: i64 = 7_000;
/// Share of the produce requests that are the idempotent producer's.
const IDEMPOTENT_PROBABILITY: f64 = 0.3;

fn directory() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 16 * 1024,
        batch_bytes_max: 8 * 1024,
        write_queue_bytes_max: 64 * 1024,
        write_buffer_bytes: 16 * 1024,
        index_interval_bytes: 512,
        index_persist_interval_bytes: 1024,
        tail_cache_bytes_max: 0,
        read_chunk_bytes: 4096,
        retention_ms: None,
        durability: Durability::EveryAppend,
        ..LogConfig::default()
    }
}

type Log = PartitionLog<MemoryFileSystem>;

/// A one-offset batch whose payload starts with `id`, from no producer.
fn batch(id: u64) -> BytesMut {
    let mut bytes = BytesMut::zeroed(BATCH_BYTES);
    bytes[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + 8].copy_from_slice(&id.to_le_bytes());
    for (index, byte) in bytes[BATCH_HEADER_BYTES + 8..].iter_mut().enumerate() {
        *byte = (id as u8).wrapping_mul(31).wrapping_add(index as u8);
    }
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

fn id_of(batch: &[u8]) -> u64 {
    let mut id = [0u8; 8];
    id.copy_from_slice(&batch[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + 8]);
    u64::from_le_bytes(id)
}

fn header_of(batch: &[u8]) -> BatchHeader {
    BatchHeader::decode(batch).expect("stored batches have a header")
}

struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Runs one storage operation to its end on this thread; when it waits on nothing but the
/// clock, the clock jumps to the next sleeper. Panics if it stalls.
fn run<T>(clock: &ManualClock, future: impl Future<Output = T>) -> T {
    let mut future = std::pin::pin!(future);
    let flag = Arc::new(Flag(AtomicBool::new(false)));
    let waker = Waker::from(flag.clone());
    let mut context = Context::from_waker(&waker);
    for _ in 0..1_000_000 {
        if let Poll::Ready(value) = future.as_mut().poll(&mut context) {
            return value;
        }
        if !flag.0.swap(false, Ordering::SeqCst) {
            assert!(
                clock.advance_to_next_deadline(),
                "a storage operation stalled: nothing left to wake it"
            );
        }
    }
    panic!("a storage operation did not finish");
}

/// The partition as the controller's metadata says.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Metadata {
    version: u64,
    replicas: Vec<NodeId>,
    isr: Vec<NodeId>,
    leader: Option<NodeId>,
    leader_epoch: i32,
    partition_epoch: i32,
}

struct Controller {
    metadata: Metadata,
    fenced: BTreeSet<NodeId>,
    last_heard_ms: BTreeMap<NodeId, u64>,
}

impl Controller {
    fn new() -> Self {
        Self {
            metadata: Metadata {
                version: 1,
                replicas: NODES.to_vec(),
                isr: NODES.to_vec(),
                leader: Some(NODES[0]),
                leader_epoch: 0,
                partition_epoch: 0,
            },
            fenced: BTreeSet::new(),
            last_heard_ms: NODES.iter().map(|&node| (node, 0)).collect(),
        }
    }

    fn changed(&mut self) {
        self.metadata.version += 1;
        self.metadata.partition_epoch += 1;
    }

    /// First live ISR member leads, in a new epoch; none: offline (never unclean).
    fn elect(&mut self) {
        let leader = self
            .metadata
            .isr
            .iter()
            .copied()
            .find(|node| !self.fenced.contains(node));
        self.metadata.leader = leader;
        self.metadata.leader_epoch += 1;
        self.changed();
    }

    fn fence(&mut self, node: NodeId) {
        self.fenced.insert(node);
        let metadata = &mut self.metadata;
        if metadata.isr.len() > 1 && metadata.isr.contains(&node) {
            metadata.isr.retain(|member| *member != node);
            if metadata.leader != Some(node) {
                self.changed();
            }
        }
        if self.metadata.leader == Some(node) {
            self.elect();
        }
    }

    fn unfence(&mut self, node: NodeId) {
        self.fenced.remove(&node);
        if self.metadata.leader.is_none() && self.metadata.isr.contains(&node) {
            self.elect();
        }
    }

    /// A leader's AlterPartition: applied only at its epochs, with only live new members.
    fn alter_partition(
        &mut self,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[NodeId],
    ) -> bool {
        let metadata = &self.metadata;
        let valid = metadata.leader == Some(leader)
            && metadata.leader_epoch == leader_epoch
            && metadata.partition_epoch == partition_epoch
            && new_isr.contains(&leader)
            && new_isr
                .iter()
                .all(|node| metadata.isr.contains(node) || !self.fenced.contains(node));
        if valid {
            self.metadata.isr = new_isr.to_vec();
            self.changed();
        }
        valid
    }
}

#[derive(Debug, Clone)]
enum Message {
    Fetch {
        follower: NodeId,
        leader: NodeId,
        /// Which of the follower's fetches this is: it takes only the answer to its latest, as
        /// the server's fetcher does (one request in flight on its connection, answers matched
        /// by correlation id; a request given up on is never answered on a new connection).
        fetch_id: u64,
        current_leader_epoch: i32,
        fetch_offset: u64,
        last_fetched_epoch: i32,
    },
    FetchAnswer {
        leader: NodeId,
        follower: NodeId,
        fetch_id: u64,
        leader_epoch: i32,
        /// The fetch offset answered: a follower that moved since drops the answer.
        fetch_offset: u64,
        refused: bool,
        diverging: Option<DivergingEpoch>,
        high_watermark: u64,
        batches: Vec<Bytes>,
    },
    AlterPartition {
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: Vec<NodeId>,
    },
}

impl Message {
    fn link(&self) -> (NodeId, NodeId) {
        match self {
            Message::Fetch {
                follower, leader, ..
            } => (*follower, *leader),
            Message::FetchAnswer {
                leader, follower, ..
            } => (*leader, *follower),
            Message::AlterPartition { leader, .. } => (*leader, CONTROLLER),
        }
    }
}

/// The idempotent producer: its batches go to whoever leads, one at a time, each retried with
/// its sequence until acknowledged, so a failover in between must be answered as a duplicate
/// (from the producer state followers rebuild from the batches) and never stored twice.
#[derive(Debug, Default)]
struct Idempotent {
    next_sequence: i32,
    /// The batch being sent until acknowledged: (id, sequence).
    current: Option<(u64, i32)>,
    /// When it was last sent: the next try waits for its answer or its timeout.
    sent_ms: Option<u64>,
    /// Every batch id this producer sent.
    ids: BTreeSet<u64>,
    acknowledged: u64,
}

/// An acks=all produce request waiting at a leader.
#[derive(Debug, Clone, Copy)]
struct Waiting {
    id: u64,
    base_offset: u64,
    deadline_ms: u64,
    appended_ms: u64,
}

enum Role {
    /// Restarted, no metadata applied yet: serves nothing.
    Unknown,
    Leader {
        state: LeaderState,
        waiters: AckWaiters<Waiting>,
    },
    Follower(FollowerRole),
}

struct Node {
    disk: Rc<MemoryFileSystem>,
    log: Option<Log>,
    role: Role,
    metadata_version: u64,
    fetch_sent_ms: Option<u64>,
    /// The id of the latest fetch sent: only its answer is taken.
    fetch_id_latest: u64,
    down_until_ms: u64,
    /// How far this replica's committed prefix was compared with the model.
    checked_to: u64,
}

/// A batch as a replica stores it: its id and the leader epoch stamped on it (a producer's
/// retry on a new leader is the same id in another epoch: another batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    id: u64,
    leader_epoch: u32,
}

fn stored(batch: &[u8]) -> Stored {
    Stored {
        id: id_of(batch),
        leader_epoch: header_of(batch).leader_epoch,
    }
}

/// The single ordered log every replica must agree with.
#[derive(Default)]
struct Model {
    /// Base offset → stored batch, for every offset some replica counted as committed.
    committed: BTreeMap<u64, Stored>,
    /// The largest high watermark any leader reached.
    committed_end: u64,
    /// acks=all acknowledgements: batch id → base offset.
    acknowledged: BTreeMap<u64, u64>,
    acknowledged_leader: u64,
    appended: u64,
    refused: u64,
    timed_out: u64,
    elections: u64,
    truncations: u64,
    crashes: u64,
}

struct Simulation {
    rng: StdRng,
    trace: bool,
    clock: ManualClock,
    now_ms: u64,
    nodes: Vec<Node>,
    controller: Controller,
    network: Vec<(u64, Message)>,
    /// Unordered pairs that cannot talk.
    cut: BTreeSet<(NodeId, NodeId)>,
    /// When each broker was cut from every other broker, if it is.
    isolated_since: BTreeMap<NodeId, u64>,
    next_batch_id: u64,
    idempotent: Idempotent,
    model: Model,
    faults: bool,
    /// The disks' faults while `faults` (errors and short writes in some cases).
    disk_faults: FaultPlan,
    loss_ppm: u32,
    duplicate_ppm: u32,
    delay_ticks_max: u64,
    crash_ppm: u32,
    partition_ppm: u32,
    produce_ppm: u32,
}

fn pair(a: NodeId, b: NodeId) -> (NodeId, NodeId) {
    (a.min(b), a.max(b))
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let clock = ManualClock::new(START_MS);
        let nodes = NODES
            .iter()
            .map(|&id| {
                let disk = Rc::new(MemoryFileSystem::new(seed ^ (id as u64) << 32));
                let log_clock: Rc<dyn Clock> = Rc::new(clock.clone());
                let log = run(
                    &clock,
                    PartitionLog::open(disk.clone(), directory(), log_config(), log_clock),
                )
                .expect("a fresh log opens");
                Node {
                    disk,
                    log: Some(log),
                    role: Role::Unknown,
                    metadata_version: 0,
                    fetch_sent_ms: None,
                    fetch_id_latest: 0,
                    down_until_ms: 0,
                    checked_to: 0,
                }
            })
            .collect();
        let loss_ppm = rng.gen_range(0..150_000);
        let duplicate_ppm = rng.gen_range(0..50_000);
        let delay_ticks_max = rng.gen_range(0..4);
        let crash_ppm = rng.gen_range(0..8_000);
        let partition_ppm = rng.gen_range(0..15_000);
        let produce_ppm = rng.gen_range(200_000..900_000);
        let disk_faults = if rng.gen_bool(0.4) {
            FaultPlan {
                error_ppm: rng.gen_range(0..4_000),
                short_write_ppm: rng.gen_range(0..4_000),
                yield_ppm: rng.gen_range(0..100_000),
            }
        } else {
            FaultPlan {
                yield_ppm: rng.gen_range(0..100_000),
                ..FaultPlan::default()
            }
        };
        Self {
            rng,
            trace: std::env::var("SPATE_REPLICATION_SIM_TRACE").is_ok(),
            clock,
            now_ms: 0,
            nodes,
            controller: Controller::new(),
            network: Vec::new(),
            cut: BTreeSet::new(),
            isolated_since: BTreeMap::new(),
            next_batch_id: 1,
            idempotent: Idempotent::default(),
            model: Model::default(),
            faults: true,
            disk_faults,
            loss_ppm,
            duplicate_ppm,
            delay_ticks_max,
            crash_ppm,
            partition_ppm,
            produce_ppm,
        }
    }

    /// The checks read the logs on a healthy disk; the brokers' own operations meet the faults.
    fn disk_faults_off(&self) {
        for node in &self.nodes {
            node.disk.set_faults(FaultPlan::default());
        }
    }

    fn current_disk_faults(&self) -> FaultPlan {
        if self.faults {
            self.disk_faults
        } else {
            FaultPlan::default()
        }
    }

    fn disk_faults_on(&self) {
        if self.faults {
            for node in &self.nodes {
                node.disk.set_faults(self.disk_faults);
            }
        }
    }

    fn trace(&self, event: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6} ms] {}", self.now_ms, event());
        }
    }

    fn chance(&mut self, ppm: u32) -> bool {
        self.rng.gen_range(0..1_000_000) < ppm
    }

    fn connected(&self, a: NodeId, b: NodeId) -> bool {
        !self.cut.contains(&pair(a, b))
    }

    fn send(&mut self, message: Message) {
        if self.faults && self.chance(self.loss_ppm) {
            return;
        }
        let copies = if self.faults && self.chance(self.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = self.rng.gen_range(0..=self.delay_ticks_max) * TICK_MS;
            self.network
                .push((self.now_ms + delay + TICK_MS, message.clone()));
        }
    }

    fn run_case(&mut self, ticks: u64) {
        self.disk_faults_on();
        for _ in 0..ticks {
            self.tick();
        }
        self.faults = false;
        self.disk_faults_off();
        self.cut.clear();
        self.isolated_since.clear();
        for id in NODES {
            if self.nodes[(id - 1) as usize].log.is_none() {
                self.nodes[(id - 1) as usize].down_until_ms = 0;
            }
        }
        for _ in 0..SETTLE_TICKS {
            self.tick();
        }
        self.final_check();
    }

    fn tick(&mut self) {
        self.now_ms += TICK_MS;
        self.clock
            .advance(std::time::Duration::from_millis(TICK_MS));
        if self.faults {
            self.inject_faults();
        }
        self.restart_due();
        self.controller_tick();
        self.deliver_metadata();
        self.deliver_messages();
        for id in NODES {
            self.node_tick(id);
        }
        if self.faults && self.chance(self.produce_ppm) {
            self.produce();
        }
        for id in NODES {
            self.check_committed(id);
        }
    }

    fn inject_faults(&mut self) {
        if self.chance(self.crash_ppm) {
            let id = NODES[self.rng.gen_range(0..NODES.len())];
            if self.nodes[(id - 1) as usize].log.is_some() {
                let power_loss = self.rng.gen_bool(0.5);
                self.crash(id, power_loss);
            }
        }
        if self.chance(self.partition_ppm) {
            match self.rng.gen_range(0..4) {
                0 => {
                    self.trace(|| "network healed".into());
                    self.cut.clear();
                }
                1 => {
                    let a = NODES[self.rng.gen_range(0..NODES.len())];
                    let b = [CONTROLLER, 1, 2, 3][self.rng.gen_range(0..4)];
                    if a != b {
                        self.trace(|| format!("link {a}-{b} cut"));
                        self.cut.insert(pair(a, b));
                    }
                }
                _ => {
                    // Isolate a broker, usually the leader, from the others and the controller;
                    // producers still reach it.
                    let leader = self.controller.metadata.leader;
                    let id = match leader {
                        Some(leader) if self.rng.gen_bool(0.7) => leader,
                        _ => NODES[self.rng.gen_range(0..NODES.len())],
                    };
                    self.trace(|| format!("broker {id} isolated"));
                    for other in [CONTROLLER, 1, 2, 3] {
                        if other != id {
                            self.cut.insert(pair(id, other));
                        }
                    }
                }
            }
        }
        // Who is cut from every other broker now, and since when.
        for id in NODES {
            let isolated = NODES
                .iter()
                .all(|&other| other == id || !self.connected(id, other));
            if !isolated {
                self.isolated_since.remove(&id);
            } else if !self.isolated_since.contains_key(&id) {
                self.isolated_since.insert(id, self.now_ms);
            }
        }
    }

    fn crash(&mut self, id: NodeId, power_loss: bool) {
        self.trace(|| format!("broker {id} crashes (power loss: {power_loss})"));
        self.model.crashes += 1;
        let down_ms = self.rng.gen_range(20..400);
        let now_ms = self.now_ms;
        let node = &mut self.nodes[(id - 1) as usize];
        node.log = None;
        node.role = Role::Unknown;
        node.metadata_version = 0;
        node.fetch_sent_ms = None;
        node.down_until_ms = now_ms + down_ms;
        if power_loss {
            node.disk.crash();
        } else {
            node.disk.restart_process();
        }
        // What the replica counted as committed is re-read from its recovered log.
        node.checked_to = 0;
    }

    fn restart_due(&mut self) {
        for id in NODES {
            let now_ms = self.now_ms;
            let clock = self.clock.clone();
            let node = &mut self.nodes[(id - 1) as usize];
            if node.log.is_some() || node.down_until_ms > now_ms {
                continue;
            }
            let log_clock: Rc<dyn Clock> = Rc::new(clock.clone());
            let opened = run(
                &clock,
                PartitionLog::open_existing(
                    node.disk.clone(),
                    directory(),
                    log_config(),
                    log_clock,
                ),
            );
            match opened {
                Ok(log) => {
                    node.log = Some(log);
                    self.trace(|| format!("broker {id} restarted"));
                }
                // A disk error during recovery: the broker tries again later.
                Err(error) if self.faults => {
                    node.down_until_ms = now_ms + 50;
                    self.trace(|| format!("broker {id} cannot reopen its log yet: {error}"));
                }
                Err(error) => panic!("broker {id} cannot reopen its log: {error}"),
            }
        }
    }

    fn controller_tick(&mut self) {
        for id in NODES {
            let up = self.nodes[(id - 1) as usize].log.is_some();
            if up && self.connected(id, CONTROLLER) {
                self.controller.last_heard_ms.insert(id, self.now_ms);
                if self.controller.fenced.contains(&id) {
                    self.trace(|| format!("controller unfences {id}"));
                    self.controller.unfence(id);
                }
            } else if !self.controller.fenced.contains(&id)
                && self.now_ms - self.controller.last_heard_ms[&id] > SESSION_TIMEOUT_MS
            {
                let before = self.controller.metadata.leader_epoch;
                self.controller.fence(id);
                if self.controller.metadata.leader_epoch != before {
                    self.model.elections += 1;
                }
                let metadata = self.controller.metadata.clone();
                self.trace(|| format!("controller fences {id}: {metadata:?}"));
            }
        }
    }

    fn deliver_metadata(&mut self) {
        for id in NODES {
            let version = self.controller.metadata.version;
            let node = &self.nodes[(id - 1) as usize];
            if node.log.is_none()
                || node.metadata_version >= version
                || !self.connected(id, CONTROLLER)
            {
                continue;
            }
            if self.faults && self.rng.gen_bool(0.4) {
                continue; // Later: metadata reaches brokers at different times.
            }
            let metadata = self.controller.metadata.clone();
            self.apply_metadata(id, &metadata);
        }
    }

    /// What `Shard::apply_roles` does, on this broker's log.
    fn apply_metadata(&mut self, id: NodeId, metadata: &Metadata) {
        let now_ms = self.now_ms;
        let clock = self.clock.clone();
        let node = &mut self.nodes[(id - 1) as usize];
        node.metadata_version = metadata.version;
        let held = match &node.role {
            Role::Leader { state, .. } => Some((state.leader_epoch(), true)),
            Role::Follower(role) => Some((role.leader_epoch, false)),
            Role::Unknown => None,
        };
        let leads = metadata.leader == Some(id);
        let log = node.log.as_ref().expect("up");
        if let (Role::Leader { state, waiters }, true) = (&mut node.role, leads) {
            if state.leader_epoch() == metadata.leader_epoch {
                let moved = state.update_role(leader_role(metadata), log.durable_end(), now_ms);
                let mut failed = Vec::new();
                if !state.has_min_insync() {
                    failed = waiters.take_all();
                }
                let _ = failed;
                if let Some(high_watermark) = moved {
                    self.high_watermark_moved(id, high_watermark);
                }
                return;
            }
        }
        if let Some((epoch, _)) = held {
            assert!(
                metadata.leader_epoch >= epoch,
                "metadata goes back in epochs"
            );
        }
        // The old role ends; its waiters fail.
        node.role = Role::Follower(FollowerRole {
            leader: metadata.leader,
            leader_epoch: metadata.leader_epoch,
        });
        node.fetch_sent_ms = None;
        log.set_replicated(true);
        if !leads {
            return;
        }
        let began = run(&clock, log.set_leader_epoch(metadata.leader_epoch));
        if let Err(error) = began {
            // As the shard: the broker refuses writes until a retry succeeds (the shard
            // retries at the next produce or follower fetch; here at the next metadata
            // delivery).
            node.metadata_version = 0;
            self.trace(|| format!("broker {id} cannot begin epoch: {error}"));
            return;
        }
        let log_end = log.log_end();
        let committed = log.committed_offset().min(log_end);
        let state = LeaderState::new(id, leader_role(metadata), log_end, committed, now_ms);
        node.role = Role::Leader {
            state,
            waiters: AckWaiters::new(LIMITS.acks_all_waiters_max),
        };
        self.trace(|| {
            format!(
                "broker {id} leads epoch {} from {log_end} (committed {committed})",
                metadata.leader_epoch
            )
        });
        self.check_new_leader(id);
        self.leader_durable_moved(id);
    }

    /// Every acknowledged acks=all batch is in a new leader's log at its offset.
    fn check_new_leader(&mut self, id: NodeId) {
        let batches = self.read_log(id);
        for (&batch_id, &offset) in &self.model.acknowledged {
            assert_eq!(
                batches.get(&offset).map(|stored| stored.id),
                Some(batch_id),
                "acknowledged batch {batch_id} at {offset} missing on new leader {id}"
            );
        }
    }

    /// Every batch of a broker's log: base offset → id.
    fn read_log(&mut self, id: NodeId) -> BTreeMap<u64, Stored> {
        self.disk_faults_off();
        let log = self.nodes[(id - 1) as usize].log.as_ref().expect("up");
        let batches = read_range(&self.clock, log, 0, u64::MAX);
        self.disk_faults_on();
        batches
    }

    fn deliver_messages(&mut self) {
        let now_ms = self.now_ms;
        let mut due = Vec::new();
        let mut index = 0;
        while index < self.network.len() {
            if self.network[index].0 <= now_ms {
                due.push(self.network.swap_remove(index).1);
            } else {
                index += 1;
            }
        }
        // Reordered: delivered in a random order.
        while !due.is_empty() {
            let message = due.swap_remove(self.rng.gen_range(0..due.len()));
            let (from, to) = message.link();
            if !self.connected(from, to) {
                continue;
            }
            match message {
                Message::Fetch { .. } => self.serve_fetch(message),
                Message::FetchAnswer { .. } => self.take_answer(message),
                Message::AlterPartition {
                    leader,
                    leader_epoch,
                    partition_epoch,
                    new_isr,
                } => {
                    let applied = self.controller.alter_partition(
                        leader,
                        leader_epoch,
                        partition_epoch,
                        &new_isr,
                    );
                    self.trace(|| {
                        format!("AlterPartition from {leader} to {new_isr:?}: applied {applied}")
                    });
                }
            }
        }
    }

    /// The leader side of a fetch, as `Shard::replica_fetch` does it.
    fn serve_fetch(&mut self, message: Message) {
        let Message::Fetch {
            follower,
            leader,
            fetch_id,
            current_leader_epoch,
            fetch_offset,
            last_fetched_epoch,
        } = message
        else {
            unreachable!()
        };
        let now_ms = self.now_ms;
        let clock = self.clock.clone();
        let node = &mut self.nodes[(leader - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        let mut answer = Message::FetchAnswer {
            leader,
            follower,
            fetch_id,
            leader_epoch: current_leader_epoch,
            fetch_offset,
            refused: true,
            diverging: None,
            high_watermark: 0,
            batches: Vec::new(),
        };
        let Role::Leader { state, .. } = &mut node.role else {
            return self.send(answer);
        };
        if state.leader_epoch() != current_leader_epoch || !state.is_follower(follower) {
            return self.send(answer);
        }
        let log_end = log.log_end();
        let leader_end = leader_end_for_epoch(log, last_fetched_epoch);
        let diverging = diverging_epoch(
            fetch_offset,
            last_fetched_epoch,
            leader_end,
            log.log_start_offset(),
            log_end,
        );
        let mut moved = None;
        let mut batches = Vec::new();
        if diverging.is_none() {
            moved = state.record_fetch(follower, fetch_offset, log.durable_end(), log_end, now_ms);
            match run(
                &clock,
                log.read_replica(fetch_offset, FETCH_BYTES_MAX as usize),
            ) {
                Ok(read) => batches = read.batches,
                Err(_) => {
                    if let Some(high_watermark) = moved {
                        self.high_watermark_moved(leader, high_watermark);
                    }
                    return self.send(answer);
                }
            }
        }
        let high_watermark = state.high_watermark();
        if let Message::FetchAnswer {
            refused,
            diverging: answer_diverging,
            high_watermark: answer_high_watermark,
            batches: answer_batches,
            ..
        } = &mut answer
        {
            *refused = false;
            *answer_diverging = diverging;
            *answer_high_watermark = high_watermark;
            *answer_batches = batches;
        }
        if let Some(high_watermark) = moved {
            self.high_watermark_moved(leader, high_watermark);
        }
        self.send(answer);
    }

    /// The follower side of a fetch answer, as the server's fetcher and
    /// `Shard::append_from_leader` / `truncate_replica` do it.
    fn take_answer(&mut self, message: Message) {
        let Message::FetchAnswer {
            leader,
            follower,
            fetch_id,
            leader_epoch,
            fetch_offset,
            refused,
            diverging,
            high_watermark,
            batches,
        } = message
        else {
            unreachable!()
        };
        let clock = self.clock.clone();
        let disk_faults = self.current_disk_faults();
        let committed = &self.model.committed;
        let node = &mut self.nodes[(follower - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        let Role::Follower(role) = &node.role else {
            return;
        };
        if !role.accepts(leader, leader_epoch) || fetch_id != node.fetch_id_latest {
            return;
        }
        node.fetch_sent_ms = None;
        if refused {
            return;
        }
        let log_end = log.durable_end();
        if fetch_offset != log_end {
            return; // Answers an older position (a delayed or repeated answer).
        }
        if let Some(diverging) = diverging {
            let local = log.end_offset_for_epoch(diverging.epoch);
            let truncation = truncation_for(diverging, local, log.log_end());
            // Only batches nobody committed are dropped: where the model knows a committed
            // batch, this replica holds another one (or none).
            node.disk.set_faults(FaultPlan::default());
            let dropped = read_range(&clock, log, truncation.offset, log.log_end());
            node.disk.set_faults(disk_faults);
            for (offset, batch) in dropped {
                assert_ne!(
                    committed.get(&offset),
                    Some(&batch),
                    "broker {follower} truncates committed batch {batch:?} at {offset} \
                     (to {}, diverging {diverging:?}, its epoch end {local:?})",
                    truncation.offset
                );
            }
            node.checked_to = node.checked_to.min(truncation.offset);
            if let Err(error) = run(&clock, log.truncate_to(truncation.offset)) {
                // A disk error: before the truncation's commit point the log is as it was (the
                // next answer says to truncate again); past it, the log is lost and the shard
                // takes the partition offline until a restart completes it: here the broker
                // restarts.
                let lost = log.lost().is_some();
                self.trace(|| {
                    format!("broker {follower} truncation failed: {error} (lost {lost})")
                });
                if lost {
                    self.crash(follower, false);
                }
                return;
            }
            self.model.truncations += 1;
            self.trace(|| {
                format!(
                    "broker {follower} truncates to {} (diverging {diverging:?}, its own {local:?})",
                    truncation.offset
                )
            });
            return;
        }
        let mut end = log_end;
        if let Some(first) = batches.first() {
            if header_of(first).base_offset != log.log_end() {
                return; // A stale or repeated answer: fetch again.
            }
            let batches = batches
                .iter()
                .map(|batch| BytesMut::from(&batch[..]))
                .collect();
            match run(&clock, log.append_replica(batches)) {
                Ok(new_end) => end = new_end,
                // A disk error: the follower fetches again from its (durable) log end.
                Err(_) => return,
            }
        }
        let committed = follower_committed_offset(high_watermark, end);
        if committed > log.committed_offset() {
            log.set_committed_offset(committed);
        }
    }

    fn node_tick(&mut self, id: NodeId) {
        let now_ms = self.now_ms;
        let clock = self.clock.clone();
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        match &mut node.role {
            Role::Unknown => {}
            Role::Follower(role) => {
                let Some(leader) = role.leader.filter(|leader| *leader != id) else {
                    return;
                };
                let due = node
                    .fetch_sent_ms
                    .is_none_or(|sent| now_ms >= sent + FETCH_RETRY_MS);
                if !due {
                    return;
                }
                node.fetch_sent_ms = Some(now_ms);
                node.fetch_id_latest += 1;
                let message = Message::Fetch {
                    follower: id,
                    leader,
                    fetch_id: node.fetch_id_latest,
                    current_leader_epoch: role.leader_epoch,
                    fetch_offset: log.durable_end(),
                    last_fetched_epoch: last_epoch(log),
                };
                self.send(message);
            }
            Role::Leader { state, waiters } => {
                // acks=leader writes become durable (the shard's written-sync task).
                if log.durable_end() < log.log_end() {
                    // A failed sync is tried again on the next tick.
                    let _ = run(&clock, log.sync());
                }
                // Timed-out acks=all requests are answered with an error; their waiter entry
                // is dropped when the high watermark passes it.
                let _ = waiters;
                let proposal = state.isr_change_due(now_ms, &LIMITS);
                if let Some(proposal) = proposal {
                    self.trace(|| format!("broker {id} proposes ISR {:?}", proposal.new_isr));
                    self.send(Message::AlterPartition {
                        leader: id,
                        leader_epoch: proposal.leader_epoch,
                        partition_epoch: proposal.partition_epoch,
                        new_isr: proposal.new_isr,
                    });
                }
                self.leader_durable_moved(id);
            }
        }
    }

    fn leader_durable_moved(&mut self, id: NodeId) {
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        let durable_end = log.durable_end();
        if let Role::Leader { state, .. } = &mut node.role {
            if let Some(high_watermark) = state.advance_high_watermark(durable_end) {
                self.high_watermark_moved(id, high_watermark);
            }
        }
    }

    /// The leader's high watermark moved: committed offset set, acks=all waiters answered.
    fn high_watermark_moved(&mut self, id: NodeId, high_watermark: u64) {
        let now_ms = self.now_ms;
        let isolated_since = self.isolated_since.get(&id).copied();
        let node = &mut self.nodes[(id - 1) as usize];
        let log = node.log.as_ref().expect("up");
        let Role::Leader { state, waiters } = &mut node.role else {
            unreachable!()
        };
        log.set_committed_offset(high_watermark);
        let acknowledge = state.has_min_insync();
        let reached = waiters.take_reached(high_watermark);
        let mut acknowledged = Vec::new();
        for waiting in reached {
            if !acknowledge || now_ms > waiting.deadline_ms {
                continue;
            }
            if let Some(since) = isolated_since {
                assert!(
                    waiting.appended_ms < since,
                    "broker {id}, cut off from every replica since {since} ms, acknowledged \
                     batch {} appended at {} ms under acks=all",
                    waiting.id,
                    waiting.appended_ms
                );
            }
            acknowledged.push(waiting);
        }
        self.model.committed_end = self.model.committed_end.max(high_watermark);
        for waiting in acknowledged {
            self.acknowledge(waiting.id, waiting.base_offset);
        }
    }

    fn acknowledge(&mut self, id: u64, base_offset: u64) {
        self.trace(|| format!("batch {id} acknowledged at {base_offset}"));
        if let Some(&known) = self.model.acknowledged.get(&id) {
            assert_eq!(
                known, base_offset,
                "batch {id} acknowledged at {known} and again at {base_offset}"
            );
        }
        self.model.acknowledged.insert(id, base_offset);
        let producer = &mut self.idempotent;
        if producer.current.map(|(current, _)| current) == Some(id) {
            producer.current = None;
            producer.sent_ms = None;
            producer.next_sequence += 1;
            producer.acknowledged += 1;
        }
    }

    fn produce(&mut self) {
        let idempotent = self.rng.gen_bool(IDEMPOTENT_PROBABILITY);
        let now_ms = self.now_ms;
        let (id, sequence) = if idempotent {
            let producer = &mut self.idempotent;
            if producer
                .sent_ms
                .is_some_and(|sent| now_ms < sent + PRODUCE_TIMEOUT_MS)
            {
                return; // Its request is still out.
            }
            let (id, sequence) = match producer.current {
                Some(current) => current,
                None => {
                    let current = (self.next_batch_id, producer.next_sequence);
                    self.next_batch_id += 1;
                    producer.ids.insert(current.0);
                    producer.current = Some(current);
                    current
                }
            };
            producer.sent_ms = Some(now_ms);
            (id, Some(sequence))
        } else {
            self.next_batch_id += 1;
            (self.next_batch_id - 1, None)
        };
        let acks_all = idempotent || self.rng.gen_bool(0.75);
        let target = match self.controller.metadata.leader {
            Some(leader) if self.rng.gen_bool(0.8) => leader,
            _ => NODES[self.rng.gen_range(0..NODES.len())],
        };
        let clock = self.clock.clone();
        let disk_errors = self.disk_faults.error_ppm > 0 || self.disk_faults.short_write_ppm > 0;
        let current_leadership = (
            self.controller.metadata.leader,
            self.controller.metadata.leader_epoch,
        );
        let node = &mut self.nodes[(target - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        let Role::Leader { state, waiters } = &mut node.role else {
            self.model.refused += 1;
            return;
        };
        if acks_all && !state.has_min_insync() {
            self.model.refused += 1;
            return;
        }
        let wait = if acks_all {
            AppendWait::Durable
        } else {
            AppendWait::Written
        };
        let mut bytes = batch(id);
        if let Some(sequence) = sequence {
            stamp_producer(&mut bytes, PRODUCER_ID, 0, sequence);
        }
        let outcome = match run(&clock, log.append_batches(vec![bytes], wait)) {
            Ok(mut outcomes) => outcomes.pop().expect("one batch"),
            Err(error) => {
                // Every batch before the producer's current one is acknowledged, so committed:
                // the current leader must take its sequence (an old leader cut off may not
                // have the last ones).
                let out_of_order = matches!(error, StorageError::OutOfOrderSequence { .. });
                let current = current_leadership == (Some(target), state.leader_epoch());
                assert!(
                    !(out_of_order && current && !disk_errors),
                    "leader {target} refuses the idempotent producer's batch {id}: {error}"
                );
                // Not acknowledged (it may still be in the log, as in Kafka).
                self.model.refused += 1;
                return;
            }
        };
        self.model.appended += 1;
        if !acks_all {
            self.model.acknowledged_leader += 1;
            return;
        }
        if state.high_watermark() >= outcome.next_offset {
            // A retry of a batch already committed: answered at once with its offsets.
            if state.has_min_insync() {
                self.acknowledge(id, outcome.base_offset);
            }
            return;
        }
        let waiting = Waiting {
            id,
            base_offset: outcome.base_offset,
            deadline_ms: now_ms + PRODUCE_TIMEOUT_MS,
            appended_ms: now_ms,
        };
        if waiters.add(outcome.next_offset, waiting).is_err() {
            self.model.timed_out += 1;
            return;
        }
        self.trace(|| format!("batch {id} appended at {} on {target}", outcome.base_offset));
        self.leader_durable_moved(target);
    }

    /// Compares the growth of a replica's committed prefix with the model.
    fn check_committed(&mut self, id: NodeId) {
        let clock = self.clock.clone();
        let disk_faults = self.current_disk_faults();
        let node = &mut self.nodes[(id - 1) as usize];
        node.disk.set_faults(FaultPlan::default());
        self.check_committed_on_healthy_disk(id, &clock);
        self.nodes[(id - 1) as usize].disk.set_faults(disk_faults);
    }

    fn check_committed_on_healthy_disk(&mut self, id: NodeId, clock: &ManualClock) {
        let clock = clock.clone();
        let node = &mut self.nodes[(id - 1) as usize];
        let Some(log) = node.log.as_ref() else {
            return;
        };
        let committed = match &node.role {
            Role::Leader { state, .. } => state.high_watermark(),
            _ => log.committed_offset(),
        }
        .min(log.durable_end());
        if committed <= node.checked_to {
            return;
        }
        let mut offset = node.checked_to.max(log.log_start_offset());
        while offset < committed {
            let read = run(&clock, log.read_replica(offset, 64 * 1024)).expect("read");
            let Some(last) = read.batches.last() else {
                break;
            };
            for batch in &read.batches {
                let base_offset = header_of(batch).base_offset;
                if base_offset >= committed {
                    break;
                }
                let batch = stored(batch);
                let known = *self.model.committed.entry(base_offset).or_insert(batch);
                assert_eq!(
                    known, batch,
                    "two batches committed at offset {base_offset}: {known:?} and {batch:?} \
                     (on broker {id})"
                );
            }
            offset = header_of(last).next_offset();
        }
        node.checked_to = committed;
    }

    fn final_check(&mut self) {
        let leader = self
            .controller
            .metadata
            .leader
            .expect("a leader once every broker is up");
        assert_eq!(
            self.controller.metadata.isr.len(),
            NODES.len(),
            "every replica back in the ISR after the network healed: {:?}",
            self.controller.metadata
        );
        let leader_log = self.read_log(leader);
        for (&batch_id, &offset) in &self.model.acknowledged {
            assert_eq!(
                leader_log.get(&offset).map(|stored| stored.id),
                Some(batch_id),
                "acknowledged batch {batch_id} at {offset} lost"
            );
        }
        for id in NODES {
            let log = self.read_log(id);
            assert_eq!(
                log, leader_log,
                "broker {id}'s log differs from leader {leader}'s"
            );
        }
        // The idempotent producer's batches are stored once each, retries and failovers
        // notwithstanding.
        let mut seen = BTreeMap::new();
        for (&offset, &Stored { id: batch_id, .. }) in &leader_log {
            if self.idempotent.ids.contains(&batch_id) {
                if let Some(first) = seen.insert(batch_id, offset) {
                    panic!("idempotent batch {batch_id} stored twice, at {first} and {offset}");
                }
            }
        }
    }
}

fn leader_role(metadata: &Metadata) -> LeaderRole {
    LeaderRole {
        replicas: metadata.replicas.clone(),
        isr: metadata.isr.clone(),
        leader_epoch: metadata.leader_epoch,
        partition_epoch: metadata.partition_epoch,
        min_insync: MIN_INSYNC,
    }
}

/// The batches of `log` with base offsets in `[from, to)`, by base offset.
fn read_range(clock: &ManualClock, log: &Log, from: u64, to: u64) -> BTreeMap<u64, Stored> {
    let mut batches = BTreeMap::new();
    let mut offset = from.max(log.log_start_offset());
    while offset < to {
        let read = run(clock, log.read_replica(offset, 64 * 1024)).expect("read");
        let Some(last) = read.batches.last() else {
            break;
        };
        offset = header_of(last).next_offset();
        for batch in &read.batches {
            let base_offset = header_of(batch).base_offset;
            if base_offset < to {
                batches.insert(base_offset, stored(batch));
            }
        }
    }
    batches
}

/// The epoch of a log's last batch as the shard reports it (`follower_positions`): a log whose
/// epoch cache is empty holds only epoch 0 batches.
fn last_epoch(log: &Log) -> i32 {
    match log.latest_epoch() {
        Some(epoch) => epoch,
        None if log.log_end() > log.log_start_offset() => 0,
        None => NO_EPOCH,
    }
}

/// The leader's `end_offset_for_epoch` for a follower's last epoch, as the shard asks it: an
/// epoch newer than any of the leader's ends where the leader's latest ends.
fn leader_end_for_epoch(log: &Log, epoch: i32) -> Option<(i32, u64)> {
    if epoch == NO_EPOCH {
        return None;
    }
    match log.end_offset_for_epoch(epoch) {
        None if log.latest_epoch().is_some_and(|latest| latest < epoch) => {
            log.latest_epoch().map(|latest| (latest, log.log_end()))
        }
        found => found,
    }
}

/// What one case did, for the run's summary.
#[derive(Debug, Default, Clone, Copy)]
struct Summary {
    appended: u64,
    acknowledged_all: u64,
    acknowledged_leader: u64,
    refused: u64,
    waiters_full: u64,
    elections: u64,
    truncations: u64,
    crashes: u64,
    idempotent_acknowledged: u64,
}

impl Summary {
    fn add(&mut self, other: Summary) {
        self.appended += other.appended;
        self.acknowledged_all += other.acknowledged_all;
        self.acknowledged_leader += other.acknowledged_leader;
        self.refused += other.refused;
        self.waiters_full += other.waiters_full;
        self.elections += other.elections;
        self.truncations += other.truncations;
        self.crashes += other.crashes;
        self.idempotent_acknowledged += other.idempotent_acknowledged;
    }
}

fn run_seed(seed: u64) -> Summary {
    let mut simulation = Simulation::new(seed);
    let ticks = simulation.rng.gen_range(TICKS_MIN..=TICKS_MAX);
    simulation.run_case(ticks);
    let model = &simulation.model;
    Summary {
        appended: model.appended,
        acknowledged_all: model.acknowledged.len() as u64,
        acknowledged_leader: model.acknowledged_leader,
        refused: model.refused,
        waiters_full: model.timed_out,
        elections: model.elections,
        truncations: model.truncations,
        crashes: model.crashes,
        idempotent_acknowledged: simulation.idempotent.acknowledged,
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|value| {
        let value = value.trim();
        match value.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => value.parse(),
        }
        .unwrap_or_else(|_| panic!("{name} must be a number"))
    })
}

#[test]
fn replication_keeps_every_acknowledged_write_under_faults() {
    if let Some(seed) = env_u64("SPATE_REPLICATION_SIM_SEED") {
        eprintln!("seed {seed}: {:?}", run_seed(seed));
        return;
    }
    let cases = env_u64("SPATE_REPLICATION_SIM_CASES").unwrap_or(CASES_DEFAULT);
    let base = env_u64("SPATE_REPLICATION_SIM_BASE_SEED").unwrap_or(BASE_SEED);
    let mut total = Summary::default();
    for seed in base..base + cases {
        match catch_unwind(AssertUnwindSafe(|| run_seed(seed))) {
            Ok(summary) => total.add(summary),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                    .unwrap_or_default();
                panic!(
                    "replication simulation failed with seed {seed} ({message}); rerun with \
                     SPATE_REPLICATION_SIM_SEED={seed} SPATE_REPLICATION_SIM_TRACE=1"
                );
            }
        }
    }
    eprintln!("{cases} cases: {total:?}");
    // The faults must not keep the cluster from working: most cases elect and acknowledge.
    assert!(
        total.acknowledged_all > cases,
        "too few acknowledged writes: {total:?}"
    );
    assert!(total.elections > cases / 4, "too few elections: {total:?}");
    assert!(total.truncations > 0, "no replica ever diverged: {total:?}");
}
