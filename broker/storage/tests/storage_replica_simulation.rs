//! Seeded randomized runs of a leader log and a follower log on two in-memory disks, driven
//! the way ISR replication drives them (KIP-101, KIP-279, KIP-320), with power losses between
//! steps and in the middle of replica appends, truncations and leader appends, checked against
//! a model of the committed log.
//!
//! Each step is one of: the leader appends batches (plain, or from an idempotent producer at its
//! next sequence; waiting for durability or only for the write) under its epoch; the follower
//! replicates (finds where its log diverges from the leader's by OffsetsForLeaderEpoch on both
//! sides, truncates there, then copies durable batches with `append_replica`; the leader's
//! committed offset becomes the smaller of both durable ends, the follower's the smaller of
//! that and its own end); the roles swap (the follower leads in a new epoch, the old leader's
//! unreplicated tail then diverges); a power loss of either node, maybe after a few disk
//! operations of the step it was in; a clean close and reopen; a forced recovery point.
//! Invariants, after every step:
//! - the leader's log holds every committed batch (offsets below the largest committed offset
//!   ever reached) and both logs hold exactly the model's batches there, as far as they reach:
//!   nothing below a committed offset is ever truncated or lost, no offset holds two batches;
//! - no truncation goes below the truncating replica's committed offset;
//! - each log's epoch cache is what its batches say (an epoch per run of batches stamped with
//!   it, at its first offset; at most one more entry, at the log end, for a leader that has not
//!   appended yet);
//! - the high watermark never passes the durable end nor the committed offset, the last stable
//!   offset never passes the high watermark;
//! - after a full replication the follower's batches are the leader's byte for byte, and both
//!   remember the producer's last batch alike.
//!
//! A failure names its seed; rerun one case with `SPATE_REPLICA_SIM_SEED=<seed>`
//! (`SPATE_SIM_TRACE=1` prints every step). `SPATE_REPLICA_SIM_CASES` sets the number of cases.

mod storage_support;

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spate_storage::leader_epochs::EpochEntry;
use spate_storage::{AppendWait, LogConfig, MemoryFileSystem, PartitionLog, StorageError};
use storage_support::{
    block, directory, header_of, id_of, producer_batch, simple_batch, small_config, Setup,
};

const CASES_DEFAULT: u64 = 24;
const BASE_SEED: u64 = 6_221_076;
const PRODUCER: i64 = 4242;

type Log = Rc<PartitionLog<MemoryFileSystem>>;

/// One stored batch as the checks see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stored {
    base_offset: u64,
    next_offset: u64,
    id: u64,
    epoch: u32,
}

struct Node {
    name: &'static str,
    setup: Setup,
    log: Option<Log>,
}

impl Node {
    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn open(&mut self, config: &LogConfig) {
        let disk = self.setup.disk.clone();
        let clock: Rc<dyn spate_storage::Clock> = self.setup.clock.clone();
        let config = config.clone();
        let log = block(async move { PartitionLog::open(disk, directory(), config, clock).await })
            .unwrap_or_else(|error| panic!("{} does not open: {error}", self.name));
        log.set_replicated(true);
        self.log = Some(Rc::new(log));
    }

    /// Power loss: whatever was not synced may be lost, then the open recovers.
    fn crash(&mut self, config: &LogConfig) {
        self.log = None;
        self.setup.disk.crash();
        self.open(config);
    }

    fn close(&mut self, config: &LogConfig) {
        let log = Rc::try_unwrap(self.log.take().expect("open"))
            .ok()
            .expect("one owner");
        block(async move { log.close().await }).expect("close");
        self.open(config);
    }
}

/// Every durable batch of `log` from its start.
fn stored(log: &Log) -> Vec<(Stored, Bytes)> {
    let log = log.clone();
    block(async move {
        let mut out = Vec::new();
        let mut offset = log.log_start_offset();
        loop {
            let read = log.read_replica(offset, 64 * 1024).await.expect("read");
            let Some(last) = read.batches.last() else {
                return out;
            };
            offset = header_of(last).next_offset();
            for bytes in read.batches {
                let header = header_of(&bytes);
                out.push((
                    Stored {
                        base_offset: header.base_offset,
                        next_offset: header.next_offset(),
                        id: id_of(&bytes),
                        epoch: header.leader_epoch,
                    },
                    bytes,
                ));
            }
        }
    })
}

struct Case {
    rng: StdRng,
    config: LogConfig,
    nodes: [Node; 2],
    leader: usize,
    epoch: i32,
    /// The model: every batch below the largest committed offset ever reached, in order.
    committed: Vec<Stored>,
    committed_end: u64,
    next_id: u64,
    trace: Vec<String>,
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = LogConfig {
            segment_bytes_max: rng.gen_range(8..=20) * 1024,
            ..small_config()
        };
        let nodes = [
            Node {
                name: "node 0",
                setup: Setup::new(seed ^ 0xa),
                log: None,
            },
            Node {
                name: "node 1",
                setup: Setup::new(seed ^ 0xb),
                log: None,
            },
        ];
        Self {
            rng,
            config,
            nodes,
            leader: 0,
            epoch: 1,
            committed: Vec::new(),
            committed_end: 0,
            next_id: 1,
            trace: Vec::new(),
        }
    }

    fn note(&mut self, text: String) {
        if std::env::var_os("SPATE_SIM_TRACE").is_some() {
            eprintln!("{text}");
        }
        self.trace.push(text);
    }

    fn leader(&self) -> &Log {
        self.nodes[self.leader].log()
    }

    fn follower(&self) -> &Log {
        self.nodes[1 - self.leader].log()
    }

    fn start(&mut self) {
        let config = self.config.clone();
        for node in &mut self.nodes {
            node.open(&config);
        }
        let leader = self.leader().clone();
        let epoch = self.epoch;
        block(async move { leader.set_leader_epoch(epoch).await }).expect("first epoch");
    }

    fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=34 => self.append(),
            35..=69 => {
                let full = self.rng.gen_bool(0.5);
                self.replicate(full);
            }
            70..=76 => self.fail_over(),
            77..=88 => {
                let node = self.rng.gen_range(0..2);
                self.note(format!("power loss of node {node}"));
                let config = self.config.clone();
                self.nodes[node].crash(&config);
            }
            89..=93 => {
                let node = self.rng.gen_range(0..2);
                self.note(format!("close and reopen node {node}"));
                let config = self.config.clone();
                self.nodes[node].close(&config);
            }
            94 => self.trim(),
            95 => self.rebuild_follower(),
            96 => {
                let log = self.nodes[self.rng.gen_range(0..2)].log().clone();
                block(async move { log.checkpoint_recovery_point(true).await })
                    .expect("recovery point");
            }
            _ => {
                let leader = self.leader().clone();
                block(async move { leader.sync().await }).expect("sync");
            }
        }
        self.check();
    }

    /// Maybe arms the disk of `node` to stop after a few operations; returns whether it did.
    fn maybe_stop(&mut self, node: usize) -> bool {
        if !self.rng.gen_bool(0.08) {
            return false;
        }
        let operations = self.rng.gen_range(0..24);
        self.note(format!(
            "node {node} stops after {operations} disk operations"
        ));
        self.nodes[node]
            .setup
            .disk
            .stop_after_operations(operations);
        true
    }

    fn append(&mut self) {
        let count = self.rng.gen_range(1..=3);
        let wait = if self.rng.gen_bool(0.5) {
            AppendWait::Durable
        } else {
            AppendWait::Written
        };
        let leader_node = self.leader;
        let stopped = self.maybe_stop(leader_node);
        for _ in 0..count {
            let id = self.next_id;
            self.next_id += 1;
            let leader = self.leader().clone();
            let batch = if self.rng.gen_bool(0.4) {
                let sequence = leader
                    .producer_entry(PRODUCER)
                    .and_then(|entry| entry.batches.back().map(|last| last.last_sequence + 1))
                    .unwrap_or(0);
                let records = self.rng.gen_range(1..=3);
                producer_batch(id, PRODUCER, 0, sequence, records, 600)
            } else {
                simple_batch(id, self.rng.gen_range(200..1200), 1_000)
            };
            let result = block(async move { leader.append(batch, wait).await });
            self.note(format!("leader appends {id} ({wait:?}): {result:?}"));
            if let Err(error) = result {
                assert!(stopped, "append failed without an injected fault: {error}");
                break;
            }
        }
        if stopped {
            let config = self.config.clone();
            self.nodes[leader_node].crash(&config);
        }
    }

    /// KIP-320 on both sides: where the follower's log stops agreeing with the leader's.
    fn divergence(&self) -> Option<u64> {
        let (leader, follower) = (self.leader(), self.follower());
        let end = follower.log_end();
        if end == follower.log_start_offset() {
            return None;
        }
        let Some(last_epoch) = follower.latest_epoch() else {
            return Some(follower.committed_offset());
        };
        match leader.end_offset_for_epoch(last_epoch) {
            Some((epoch, leader_end)) if epoch == last_epoch && leader_end >= end => None,
            Some((epoch, leader_end)) => {
                let own_end = follower
                    .end_offset_for_epoch(epoch)
                    .map_or(follower.log_start_offset(), |(_, own_end)| own_end);
                Some(leader_end.min(own_end))
            }
            None => Some(follower.committed_offset()),
        }
    }

    fn replicate(&mut self, full: bool) {
        let follower_node = 1 - self.leader;
        let stopped = self.maybe_stop(follower_node);
        let outcome = self.replicate_until_stopped(full);
        if let Err(error) = outcome {
            assert!(
                stopped,
                "replication failed without an injected fault: {error}"
            );
        }
        if stopped {
            let config = self.config.clone();
            self.nodes[follower_node].crash(&config);
        }
    }

    fn replicate_until_stopped(&mut self, full: bool) -> Result<(), StorageError> {
        for _ in 0..8 {
            let Some(target) = self.divergence() else {
                break;
            };
            let follower = self.follower().clone();
            assert!(
                target >= follower.committed_offset(),
                "truncation to {target} below the follower's committed offset {}",
                follower.committed_offset()
            );
            self.note(format!(
                "follower truncates to {target} (log end {})",
                follower.log_end()
            ));
            block(async move { follower.truncate_to(target).await })?;
        }
        assert_eq!(
            self.divergence(),
            None,
            "the follower still diverges after truncating"
        );
        for _ in 0..64 {
            let (leader, follower) = (self.leader().clone(), self.follower().clone());
            let from = follower.log_end();
            let max_bytes = self.rng.gen_range(256..8192);
            let leader_start = leader.log_start_offset();
            let read = match block(async move { leader.read_replica(from, max_bytes).await }) {
                Ok(read) => read,
                Err(StorageError::OffsetOutOfRange { .. }) if from < leader_start => {
                    // The leader deleted what this follower still needs: start over there.
                    self.note(format!("follower at {from} starts over at {leader_start}"));
                    let copy = follower.clone();
                    block(async move { copy.truncate_fully_and_start_at(leader_start).await })?;
                    continue;
                }
                Err(error) => panic!("leader read at {from}: {error}"),
            };
            let count = read.batches.len();
            if count > 0 {
                let batches: Vec<BytesMut> = read
                    .batches
                    .iter()
                    .map(|bytes| BytesMut::from(&bytes[..]))
                    .collect();
                let copy = follower.clone();
                let again = batches.clone();
                let end = match block(async move { copy.append_replica(batches).await }) {
                    Ok(end) => end,
                    // Started over at a log start inside the leader's first batch: at that
                    // batch's start, and the same batches again (Kafka's follower does so on
                    // its UnexpectedAppendOffsetException).
                    Err(StorageError::ReplicaOffsetMismatch {
                        expected, received, ..
                    }) if received < expected && from == follower.log_start_offset() => {
                        self.note(format!("follower starts over at {received}"));
                        let copy = follower.clone();
                        block(async move {
                            copy.truncate_fully_and_start_at(received).await?;
                            copy.append_replica(again).await
                        })?
                    }
                    Err(error) => return Err(error),
                };
                self.note(format!(
                    "follower copies {count} batches from {from}: end {end}"
                ));
            }
            self.advance_committed();
            // Kafka's followers follow the leader's log start, within their own high watermark.
            let (leader_start, follower) =
                (self.leader().log_start_offset(), self.follower().clone());
            let start = leader_start.min(follower.high_watermark());
            if start > follower.log_start_offset() {
                block(async move { follower.delete_records(start).await })?;
            }
            if count == 0 || !full {
                break;
            }
        }
        Ok(())
    }

    /// The leader's committed offset: both durable ends (the follower has just proven its log a
    /// prefix of the leader's); the follower learns it.
    fn advance_committed(&mut self) {
        let (leader, follower) = (self.leader().clone(), self.follower().clone());
        let high_watermark = leader.durable_end().min(follower.durable_end());
        if high_watermark > leader.committed_offset() {
            leader.set_committed_offset(high_watermark);
        }
        follower.set_committed_offset(leader.committed_offset().min(follower.log_end()));
        if high_watermark > self.committed_end {
            // The model only grows: what was committed before is checked against it in `check`.
            let committed_end = self.committed_end;
            self.committed.extend(
                stored(&leader)
                    .into_iter()
                    .map(|(batch, _)| batch)
                    .filter(|batch| batch.base_offset >= committed_end)
                    .take_while(|batch| batch.next_offset <= high_watermark),
            );
            self.committed_end = high_watermark;
            assert_eq!(
                self.committed.last().map(|batch| batch.next_offset),
                Some(high_watermark),
                "the committed offset is not a batch boundary"
            );
        }
    }

    /// DeleteRecords on the leader, below its high watermark.
    fn trim(&mut self) {
        let leader = self.leader().clone();
        let (start, high_watermark) = (leader.log_start_offset(), leader.high_watermark());
        if high_watermark <= start {
            return;
        }
        let offset = self.rng.gen_range(start..=high_watermark);
        self.note(format!("leader deletes records before {offset}"));
        block(async move { leader.delete_records(offset).await }).expect("delete records");
    }

    /// The follower's disk replaced: it starts over at the leader's log start and is out of the
    /// in-sync replicas (no failover to it) until it has caught up.
    fn rebuild_follower(&mut self) {
        let start = self.leader().log_start_offset();
        let follower = self.follower().clone();
        self.note(format!("follower rebuilt from {start}"));
        block(async move { follower.truncate_fully_and_start_at(start).await })
            .expect("truncate fully");
    }

    fn fail_over(&mut self) {
        if self.follower().log_end() < self.committed_end {
            // Not in sync: Kafka never elects it (no unclean election).
            return;
        }
        self.leader = 1 - self.leader;
        self.epoch += 1;
        let (leader, epoch) = (self.leader().clone(), self.epoch);
        self.note(format!("node {} leads in epoch {epoch}", self.leader));
        block(async move { leader.set_leader_epoch(epoch).await }).expect("set leader epoch");
    }

    fn check(&self) {
        let leader = self.leader();
        assert!(
            leader.log_end() >= self.committed_end,
            "the leader lost committed offsets: log end {} < {}",
            leader.log_end(),
            self.committed_end
        );
        for node in &self.nodes {
            let log = node.log();
            let batches = stored(log);
            let below: Vec<Stored> = batches
                .iter()
                .map(|(batch, _)| *batch)
                .take_while(|batch| batch.next_offset <= self.committed_end)
                .collect();
            // Batches before the log start are gone (DeleteRecords, a full truncation).
            let from = below.first().map_or(0, |first| {
                self.committed
                    .iter()
                    .position(|batch| batch.base_offset == first.base_offset)
                    .unwrap_or_else(|| {
                        panic!("{}: no committed batch at {}", node.name, first.base_offset)
                    })
            });
            assert_eq!(
                below[..],
                self.committed[from..from + below.len()],
                "{}: committed batches differ",
                node.name
            );
            assert!(log.high_watermark() <= log.durable_end(), "{}", node.name);
            assert!(
                log.high_watermark() <= log.committed_offset(),
                "{}",
                node.name
            );
            assert!(
                log.last_stable_offset() <= log.high_watermark(),
                "{}",
                node.name
            );
            check_epochs(node.name, log, &batches);
        }
    }

    /// After a full replication with the leader synced: the two logs are equal.
    fn finish(&mut self) {
        let leader = self.leader().clone();
        block(async move { leader.sync().await }).expect("sync");
        self.replicate(true);
        // An injected stop may have cut it short: once more, without faults.
        self.replicate_until_stopped(true).expect("replicate");
        self.check();
        let (leader, follower) = (self.leader(), self.follower());
        // Over the offsets both still hold: a replica's log start may be past the other's (its
        // own DeleteRecords while it led).
        let start = leader.log_start_offset().max(follower.log_start_offset());
        let from_start = |log: &Log| -> Vec<Bytes> {
            stored(log)
                .into_iter()
                .filter(|(batch, _)| batch.next_offset > start)
                .map(|(_, bytes)| bytes)
                .collect()
        };
        let (leader_batches, follower_batches) = (from_start(leader), from_start(follower));
        assert_eq!(leader_batches.len(), follower_batches.len(), "batch counts");
        assert!(
            leader_batches == follower_batches,
            "the follower's bytes differ"
        );
        let last = |log: &Log| {
            log.producer_entry(PRODUCER)
                .map(|entry| (entry.epoch, entry.batches.back().copied()))
        };
        assert_eq!(last(leader), last(follower), "producer state");
        assert_eq!(follower.committed_offset(), leader.committed_offset());
        assert_eq!(leader.committed_offset(), leader.durable_end());
    }
}

/// The epoch cache is what the batches say.
fn check_epochs(name: &str, log: &Log, batches: &[(Stored, Bytes)]) {
    let mut expected: Vec<EpochEntry> = Vec::new();
    for (batch, _) in batches {
        let epoch = batch.epoch as i32;
        if expected.last().is_none_or(|last| epoch > last.epoch) {
            expected.push(EpochEntry {
                epoch,
                start_offset: batch.base_offset.max(log.log_start_offset()),
            });
        }
        assert!(
            expected.last().is_some_and(|last| last.epoch == epoch),
            "{name}: batch at {} has epoch {epoch} after a newer one",
            batch.base_offset
        );
    }
    let mut cache = log.leader_epochs();
    // A leader's epoch may start at the durable end (nothing appended in it yet, or only
    // batches not durable yet): its entry has no durable batch to show.
    let end = log.durable_end();
    if cache.last().is_some_and(|last| last.start_offset >= end) {
        let unused = cache.pop().expect("last");
        assert!(
            expected.last().is_none_or(|last| unused.epoch > last.epoch),
            "{name}: an entry at the log end older than the batches: {unused:?}"
        );
    }
    assert_eq!(cache, expected, "{name}: epoch cache against the batches");
}

fn run_case(seed: u64) {
    let mut case = Case::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        case.start();
        let steps = case.rng.gen_range(40..=100);
        for _ in 0..steps {
            case.step();
        }
        case.finish();
    }));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_default();
        let trace: Vec<&String> = case.trace.iter().rev().take(30).collect();
        panic!(
            "replica simulation failed for seed {seed} (rerun: SPATE_REPLICA_SIM_SEED={seed}): {message}\nlast operations (newest first): {trace:#?}"
        );
    }
}

#[test]
fn seeded_leader_and_follower_logs_never_lose_or_change_a_committed_batch() {
    if let Some(seed) = std::env::var("SPATE_REPLICA_SIM_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        run_case(seed);
        return;
    }
    let cases = std::env::var("SPATE_REPLICA_SIM_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    for case in 0..cases {
        run_case(BASE_SEED + case);
    }
}
