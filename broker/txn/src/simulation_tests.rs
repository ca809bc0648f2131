//! Seeded simulation of transactions end to end: transactional producers (and their zombies),
//! the coordinator's state machines over a state log of encoded records, and the data
//! partitions with Kafka's partition rules for transactional producers, with time passed in.
//!
//! The coordinator is driven exactly as `coordinator` drives it (decide and mark pending, write
//! the record, make it current; markers to each partition, then the `Complete*` record), and it
//! crashes at any of those steps: its memory is dropped and rebuilt by replaying the state log
//! through `records`' decoder, and decided transactions are finished from there. Producers
//! crash and leave zombies that go on writing with their old identity. Partitions go down and
//! refuse markers until they are back (markers are retried). Time moves, so transactions time
//! out and are aborted by the timer.
//!
//! The partitions follow Kafka's rules: a batch with an epoch below the producer's epoch in the
//! partition is refused; a producer's first transactional batch in a partition is appended only
//! if the coordinator verifies the partition is in its open transaction at that epoch (KIP-890,
//! what Spate's produce path does); a marker closes the producer's open transaction and raises
//! its epoch. Transactional offset commits (groups) are not modelled here: they go through the
//! same completion step as one more marker target.
//!
//! Checked: a `read_committed` reader at the end (after every decided transaction completed and
//! every open one timed out) sees every acknowledged record of each transaction whose commit
//! was acknowledged, none of one whose abort was acknowledged, and all or none of each other;
//! no partition is left with an open transaction (no hanging transaction); a marker is never
//! refused (the coordinator never writes a stale epoch); and once a newer producer of the same
//! transactional id got its identity, a fenced one can append nothing, anywhere.
//!
//! A failure names its seed; rerun one case with `SPATE_TXN_SIM_SEED=<seed>`
//! (`SPATE_TXN_SIM_TRACE=1` prints the steps). `SPATE_TXN_SIM_CASES` sets the number of cases.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::limits::TxnLimits;
use crate::records::StateRecord;
use crate::state::{
    EndStep, InitRequest, InitStep, TopicPartition, Txn, TxnError, TxnRecord, NO_PRODUCER_EPOCH,
};

const CASES_DEFAULT: u64 = 300;
const BASE_SEED: u64 = 0x7a11_0c00;
const STEPS: usize = 400;
const IDS: usize = 3;
const PARTITIONS: u32 = 4;
const TIMEOUT_MS: i32 = 8_000;
/// Chance that the coordinator crashes at each of its crash points.
const CRASH_PER_MILLE: u32 = 20;

/// A transaction as the checker names it: (producer instance, its n-th transaction).
type Tag = (usize, u32);

#[derive(Debug, Clone)]
enum Entry {
    Data { producer_id: i64, tag: Tag },
    Marker { producer_id: i64, commit: bool },
}

#[derive(Default)]
struct Partition {
    entries: Vec<Entry>,
    /// Producer id → (its epoch here, whether it has a transaction open here).
    producers: BTreeMap<i64, (i16, bool)>,
    down: bool,
}

/// Why a coordinator call gave no answer: it crashed on the way (the client cannot tell what
/// happened), or it answered an error.
#[derive(Debug, Clone, PartialEq, Eq)]
enum CallError {
    Lost,
    Refused(TxnError),
}

struct Coordinator {
    txns: BTreeMap<String, Txn>,
    /// The state partition: every record written, encoded (durable).
    log: Vec<(Bytes, Option<Bytes>)>,
    /// The producer id allocator (durable: ids are never handed out twice).
    next_producer_id: i64,
}

impl Coordinator {
    fn write(&mut self, transactional_id: &str, value: Option<TxnRecord>) {
        let record = StateRecord {
            transactional_id: transactional_id.to_string(),
            value,
        };
        let key = record.encode_key().expect("ids are short");
        let value = record.encode_value().expect("records fit");
        self.log.push((key, value));
    }

    /// A crash: memory is gone; the state is what replaying the log gives.
    fn recover(&mut self) {
        let mut txns = BTreeMap::new();
        for (key, value) in &self.log {
            let record = StateRecord::decode(Some(key), value.as_deref()).expect("own records");
            match record.value {
                Some(value) => {
                    let txn = Txn::restore(&record.transactional_id, value);
                    txns.insert(record.transactional_id, txn);
                }
                None => {
                    txns.remove(&record.transactional_id);
                }
            }
        }
        self.txns = txns;
    }

    fn allocate(&mut self) -> i64 {
        self.next_producer_id += 1;
        self.next_producer_id
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Phase {
    Ready,
    InTxn,
    /// EndTxn sent (commit or not); retried until it has a definite answer.
    Ending(bool),
}

#[derive(Debug, Clone)]
struct Instance {
    serial: usize,
    id: usize,
    producer_id: i64,
    producer_epoch: i16,
    phase: Phase,
    txn_no: u32,
    added: BTreeSet<u32>,
    /// A newer instance of the same id got its identity: nothing may succeed any more.
    fenced: bool,
}

impl Instance {
    fn tag(&self) -> Tag {
        (self.serial, self.txn_no)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Committed,
    Aborted,
}

struct Sim {
    rng: StdRng,
    now_ms: i64,
    coordinator: Coordinator,
    partitions: Vec<Partition>,
    current: Vec<Option<Instance>>,
    zombies: Vec<Instance>,
    next_serial: usize,
    /// What clients were told about each transaction's outcome.
    told: BTreeMap<Tag, Outcome>,
    /// Acknowledged data records per transaction: (partition, index in its entries).
    acknowledged: BTreeMap<Tag, Vec<(u32, usize)>>,
    limits: TxnLimits,
    trace: Vec<String>,
}

fn id_name(id: usize) -> String {
    format!("txn-{id}")
}

fn tp(partition: u32) -> TopicPartition {
    ("data".to_string(), partition)
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim {
            rng: StdRng::seed_from_u64(seed),
            now_ms: 1_000_000,
            coordinator: Coordinator {
                txns: BTreeMap::new(),
                log: Vec::new(),
                next_producer_id: 999,
            },
            partitions: (0..PARTITIONS).map(|_| Partition::default()).collect(),
            current: vec![None; IDS],
            zombies: Vec::new(),
            next_serial: 0,
            told: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            limits: TxnLimits::default(),
            trace: Vec::new(),
        }
    }

    /// A crash point of the coordinator; true when it crashed there.
    fn crash_point(&mut self, allow: bool, at: &str) -> bool {
        if allow && self.rng.gen_range(0..1000) < CRASH_PER_MILLE {
            self.trace.push(format!("  coordinator crashed {at}"));
            self.coordinator.recover();
            return true;
        }
        false
    }

    /// Writes the pending transition of `id` (with crash points before and after the write).
    /// Ok(true): written and current; Ok(false): crashed before the write (nothing happened).
    fn write_pending(
        &mut self,
        id: &str,
        record: TxnRecord,
        crashes: bool,
    ) -> Result<(), CallError> {
        if self.crash_point(crashes, "before a state write") {
            return Err(CallError::Lost);
        }
        self.coordinator.write(id, Some(record));
        self.coordinator
            .txns
            .get_mut(id)
            .expect("pending id")
            .complete_transition();
        if self.crash_point(crashes, "after a state write") {
            return Err(CallError::Lost);
        }
        Ok(())
    }

    // ---- coordinator calls (as `coordinator` makes them) ----

    fn init(&mut self, id: usize, expected: Option<(i64, i16)>) -> Result<(i64, i16), CallError> {
        let name = id_name(id);
        if !self.coordinator.txns.contains_key(&name) {
            let producer_id = self.coordinator.allocate();
            let txn = Txn::new(&name, producer_id, TIMEOUT_MS, self.now_ms);
            self.coordinator.txns.insert(name.clone(), txn);
        }
        let needs_new = self.coordinator.txns[&name].init_needs_new_producer_id(expected);
        let fresh = needs_new.then(|| self.coordinator.allocate());
        let request = InitRequest {
            timeout_ms: TIMEOUT_MS,
            expected,
            now_ms: self.now_ms,
        };
        let step = self
            .coordinator
            .txns
            .get_mut(&name)
            .unwrap()
            .prepare_init(request, fresh)
            .map_err(CallError::Refused)?;
        match step {
            InitStep::Write(record) => {
                let identity = (record.producer_id, record.producer_epoch);
                self.write_pending(&name, record, true)?;
                Ok(identity)
            }
            InitStep::Fence(record) => {
                self.write_pending(&name, record, true)?;
                Err(CallError::Refused(TxnError::ConcurrentTransactions))
            }
        }
    }

    fn add(&mut self, instance: &Instance, partition: u32) -> Result<(), CallError> {
        let name = id_name(instance.id);
        let Some(txn) = self.coordinator.txns.get_mut(&name) else {
            return Err(CallError::Refused(TxnError::InvalidProducerIdMapping));
        };
        let record = txn
            .prepare_add(
                instance.producer_id,
                instance.producer_epoch,
                &[tp(partition)],
                &[],
                &self.limits,
                self.now_ms,
            )
            .map_err(CallError::Refused)?;
        match record {
            Some(record) => self.write_pending(&name, record, true),
            None => Ok(()),
        }
    }

    fn end(&mut self, instance: &Instance, commit: bool) -> Result<(), CallError> {
        let name = id_name(instance.id);
        let Some(txn) = self.coordinator.txns.get_mut(&name) else {
            return Err(CallError::Refused(TxnError::InvalidProducerIdMapping));
        };
        let step = txn
            .prepare_end(
                instance.producer_id,
                instance.producer_epoch,
                commit,
                self.now_ms,
            )
            .map_err(CallError::Refused)?;
        match step {
            EndStep::Write(record) => self.write_pending(&name, record, true),
            EndStep::AlreadyComplete => Ok(()),
        }
    }

    /// One completion attempt of a decided transaction: markers, then `Complete*`.
    fn complete(&mut self, name: &str, crashes: bool) {
        let Some(decided) = self
            .coordinator
            .txns
            .get(name)
            .filter(|txn| txn.current.state.is_prepared())
            .map(|txn| txn.current.clone())
        else {
            return;
        };
        let marker = decided.marker();
        for (_, partition) in &decided.partitions {
            if self.crash_point(crashes, "between markers") {
                return;
            }
            let target = &mut self.partitions[*partition as usize];
            if target.down {
                self.trace.push(format!(
                    "  marker to down partition {partition}: retry later"
                ));
                return;
            }
            let (epoch, _) = target
                .producers
                .get(&marker.producer_id)
                .copied()
                .unwrap_or((NO_PRODUCER_EPOCH, false));
            assert!(
                marker.producer_epoch >= epoch,
                "a marker was refused: epoch {} below the partition's {epoch}",
                marker.producer_epoch
            );
            target
                .producers
                .insert(marker.producer_id, (marker.producer_epoch, false));
            target.entries.push(Entry::Marker {
                producer_id: marker.producer_id,
                commit: marker.commit,
            });
        }
        let now_ms = self.now_ms;
        let record = self
            .coordinator
            .txns
            .get_mut(name)
            .unwrap()
            .prepare_complete(now_ms);
        let _ = self.write_pending(name, record, crashes);
        self.trace
            .push(format!("  {name} completed (commit {})", marker.commit));
    }

    fn timer(&mut self, crashes: bool) {
        let names: Vec<String> = self.coordinator.txns.keys().cloned().collect();
        for name in names {
            let now_ms = self.now_ms;
            let txn = self.coordinator.txns.get_mut(&name).unwrap();
            if txn.timed_out(now_ms) {
                let record = txn.prepare_timeout_abort(now_ms);
                self.trace.push(format!(
                    "  {name} timed out: abort at epoch {}",
                    record.producer_epoch
                ));
                let _ = self.write_pending(&name, record, crashes);
            }
        }
    }

    // ---- partitions ----

    /// A transactional batch of `instance` to `partition`; true when appended. A down
    /// partition refuses it too (the producer retries later).
    fn append(&mut self, instance: &Instance, partition: u32) -> bool {
        let name = id_name(instance.id);
        let target = &self.partitions[partition as usize];
        if target.down {
            return false;
        }
        let (epoch, open) = target
            .producers
            .get(&instance.producer_id)
            .copied()
            .unwrap_or((NO_PRODUCER_EPOCH, false));
        if instance.producer_epoch < epoch {
            return false;
        }
        if !open || instance.producer_epoch > epoch {
            // KIP-890: the coordinator verifies the partition is in the open transaction.
            let verified = self.coordinator.txns.get(&name).is_some_and(|txn| {
                txn.verify(
                    instance.producer_id,
                    instance.producer_epoch,
                    &[tp(partition)],
                ) == Ok(vec![Ok(())])
            });
            if !verified {
                return false;
            }
        }
        let target = &mut self.partitions[partition as usize];
        target
            .producers
            .insert(instance.producer_id, (instance.producer_epoch, true));
        target.entries.push(Entry::Data {
            producer_id: instance.producer_id,
            tag: instance.tag(),
        });
        let index = target.entries.len() - 1;
        self.acknowledged
            .entry(instance.tag())
            .or_default()
            .push((partition, index));
        true
    }

    // ---- steps ----

    fn step(&mut self) {
        self.now_ms += self.rng.gen_range(0..200);
        match self.rng.gen_range(0..100) {
            0..=54 => self.producer_step(),
            55..=64 => self.zombie_step(),
            65..=79 => {
                let decided: Vec<String> = self
                    .coordinator
                    .txns
                    .iter()
                    .filter(|(_, txn)| txn.current.state.is_prepared())
                    .map(|(name, _)| name.clone())
                    .collect();
                if !decided.is_empty() {
                    let name = decided[self.rng.gen_range(0..decided.len())].clone();
                    self.trace.push(format!("complete {name}"));
                    self.complete(&name, true);
                }
            }
            80..=87 => {
                self.trace.push("timer".into());
                self.timer(true);
            }
            88..=89 => {
                // Down partitions come back sooner than up ones go down.
                let down: Vec<usize> = (0..self.partitions.len())
                    .filter(|index| self.partitions[*index].down)
                    .collect();
                let partition = if !down.is_empty() && self.rng.gen_bool(0.7) {
                    down[self.rng.gen_range(0..down.len())]
                } else {
                    self.rng.gen_range(0..PARTITIONS) as usize
                };
                let down = !self.partitions[partition].down;
                self.trace
                    .push(format!("partition {partition} down {down}"));
                self.partitions[partition].down = down;
            }
            90..=96 => {
                let id = self.rng.gen_range(0..IDS);
                if let Some(instance) = self.current[id].take() {
                    self.trace.push(format!(
                        "producer {} crashes, left as a zombie",
                        instance.serial
                    ));
                    self.zombies.push(instance);
                }
            }
            _ => {
                self.trace.push("coordinator crash".into());
                self.coordinator.recover();
            }
        }
    }

    fn producer_step(&mut self) {
        let id = self.rng.gen_range(0..IDS);
        let Some(mut instance) = self.current[id].clone() else {
            // KIP-360 now and then: the producer that gave up comes back with its last
            // identity (as the Java producer does after an abortable error).
            let expected = self
                .zombies
                .iter()
                .rev()
                .find(|zombie| zombie.id == id && !zombie.fenced)
                .filter(|_| self.rng.gen_bool(0.3))
                .map(|zombie| (zombie.producer_id, zombie.producer_epoch));
            match self.init(id, expected) {
                Ok((producer_id, producer_epoch)) => {
                    let serial = self.next_serial;
                    self.next_serial += 1;
                    self.trace.push(format!(
                        "init {id}: producer {serial} is ({producer_id}, {producer_epoch})"
                    ));
                    for zombie in self.zombies.iter_mut().filter(|zombie| zombie.id == id) {
                        zombie.fenced = true;
                    }
                    self.current[id] = Some(Instance {
                        serial,
                        id,
                        producer_id,
                        producer_epoch,
                        phase: Phase::Ready,
                        txn_no: 0,
                        added: BTreeSet::new(),
                        fenced: false,
                    });
                }
                Err(error) => self.trace.push(format!("init {id}: {error:?}")),
            }
            return;
        };
        let outcome = match instance.phase.clone() {
            Phase::Ready | Phase::InTxn if instance.added.is_empty() || self.rng.gen_bool(0.2) => {
                let partition = self.rng.gen_range(0..PARTITIONS);
                let added = self.add(&instance, partition);
                self.trace.push(format!(
                    "producer {} adds {partition}: {added:?}",
                    instance.serial
                ));
                match added {
                    Ok(()) => {
                        instance.added.insert(partition);
                        instance.phase = Phase::InTxn;
                        Ok(())
                    }
                    Err(CallError::Refused(TxnError::ConcurrentTransactions)) => Ok(()),
                    // Unknown: the client aborts what it has (an abortable error).
                    Err(CallError::Lost) => {
                        instance.phase = Phase::Ending(false);
                        Ok(())
                    }
                    Err(error) => Err(error),
                }
            }
            Phase::InTxn if self.rng.gen_bool(0.75) => {
                let added: Vec<u32> = instance.added.iter().copied().collect();
                let partition = added[self.rng.gen_range(0..added.len())];
                let appended = self.append(&instance, partition);
                self.trace.push(format!(
                    "producer {} writes {partition} tag {:?}: {appended}",
                    instance.serial,
                    instance.tag()
                ));
                if !appended && !self.partitions[partition as usize].down {
                    // Refused (fenced, not verified): abort the transaction.
                    instance.phase = Phase::Ending(false);
                }
                Ok(())
            }
            Phase::InTxn => {
                instance.phase = Phase::Ending(self.rng.gen_bool(0.6));
                Ok(())
            }
            Phase::Ending(commit) => {
                let ended = self.end(&instance, commit);
                self.trace.push(format!(
                    "producer {} ends tag {:?} commit {commit}: {ended:?}",
                    instance.serial,
                    instance.tag()
                ));
                match ended {
                    Ok(()) => {
                        let outcome = if commit {
                            Outcome::Committed
                        } else {
                            Outcome::Aborted
                        };
                        self.told.insert(instance.tag(), outcome);
                        instance.txn_no += 1;
                        instance.added.clear();
                        instance.phase = Phase::Ready;
                        Ok(())
                    }
                    Err(CallError::Lost) => Ok(()),
                    Err(CallError::Refused(TxnError::ConcurrentTransactions)) => Ok(()),
                    Err(error) => Err(error),
                }
            }
            Phase::Ready => Ok(()),
        };
        match outcome {
            Ok(()) => self.current[id] = Some(instance),
            Err(error) => {
                // Fenced or lost its transaction: the application starts a new producer.
                self.trace
                    .push(format!("producer {} gives up: {error:?}", instance.serial));
                self.zombies.push(instance);
                self.current[id] = None;
            }
        }
    }

    /// A paused producer wakes up and goes on with its old identity.
    fn zombie_step(&mut self) {
        if self.zombies.is_empty() {
            return;
        }
        let index = self.rng.gen_range(0..self.zombies.len());
        let zombie = self.zombies[index].clone();
        let partition = self.rng.gen_range(0..PARTITIONS);
        let succeeded = match self.rng.gen_range(0..3) {
            0 => self.append(&zombie, partition),
            1 => self.add(&zombie, partition).is_ok(),
            _ => {
                let ended = self.end(&zombie, true);
                if ended.is_ok() {
                    self.told.insert(zombie.tag(), Outcome::Committed);
                    // Its next records belong to its next transaction.
                    self.zombies[index].txn_no += 1;
                }
                ended.is_ok()
            }
        };
        self.trace.push(format!(
            "zombie {} (fenced {}) acts on {partition}: {succeeded}",
            zombie.serial, zombie.fenced
        ));
        assert!(
            !(zombie.fenced && succeeded),
            "a fenced producer ({}, {}) succeeded in writing",
            zombie.producer_id,
            zombie.producer_epoch
        );
    }

    /// Quiet time: partitions come back, producers stop, every decided transaction completes
    /// and every open one times out.
    fn settle(&mut self) {
        for partition in &mut self.partitions {
            partition.down = false;
        }
        for _ in 0..3 {
            self.now_ms += i64::from(TIMEOUT_MS) + 1;
            self.timer(false);
            let names: Vec<String> = self.coordinator.txns.keys().cloned().collect();
            for name in names {
                self.complete(&name, false);
            }
        }
        for (name, txn) in &self.coordinator.txns {
            assert!(
                txn.current.state.is_idle(),
                "{name} is still {:?} after the quiet time",
                txn.current.state
            );
        }
    }

    /// What a read_committed reader sees: the tags of visible data records per position.
    fn check(&self) {
        let mut visible: BTreeSet<(u32, usize)> = BTreeSet::new();
        for (index, partition) in self.partitions.iter().enumerate() {
            for (producer_id, (_, open)) in &partition.producers {
                assert!(
                    !open,
                    "producer {producer_id} left a hanging transaction in partition {index}"
                );
            }
            for (position, entry) in partition.entries.iter().enumerate() {
                let Entry::Data { producer_id, .. } = entry else {
                    continue;
                };
                let closing =
                    partition.entries[position + 1..]
                        .iter()
                        .find_map(|later| match later {
                            Entry::Marker {
                                producer_id: marker_producer,
                                commit,
                            } if marker_producer == producer_id => Some(*commit),
                            _ => None,
                        });
                let closing = closing.expect("every transaction is closed after the quiet time");
                if closing {
                    visible.insert((index as u32, position));
                }
            }
        }
        for (tag, records) in &self.acknowledged {
            for (partition, position) in records {
                let entry = &self.partitions[*partition as usize].entries[*position];
                assert!(matches!(entry, Entry::Data { tag: written, .. } if written == tag));
            }
            let seen = records
                .iter()
                .filter(|record| visible.contains(record))
                .count();
            match self.told.get(tag) {
                Some(Outcome::Committed) => assert_eq!(
                    seen,
                    records.len(),
                    "transaction {tag:?} was acknowledged as committed but a reader misses some of it"
                ),
                Some(Outcome::Aborted) => {
                    assert_eq!(seen, 0, "a reader sees records of aborted transaction {tag:?}")
                }
                None => assert!(
                    seen == 0 || seen == records.len(),
                    "a reader sees part of transaction {tag:?} ({seen} of {})",
                    records.len()
                ),
            }
        }
    }
}

fn run_case(seed: u64) {
    let mut sim = Sim::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..STEPS {
            sim.step();
        }
        sim.settle();
        sim.check();
    }));
    let tracing = std::env::var_os("SPATE_TXN_SIM_TRACE").is_some();
    if outcome.is_ok() && tracing && std::env::var_os("SPATE_TXN_SIM_SEED").is_some() {
        eprintln!("{}", sim.trace.join("\n"));
    }
    if let Err(panic) = outcome {
        if tracing {
            eprintln!("{}", sim.trace.join("\n"));
        }
        eprintln!(
            "transaction simulation failed: rerun with SPATE_TXN_SIM_SEED={seed} \
             (SPATE_TXN_SIM_TRACE=1 prints the steps)"
        );
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn seeded_transaction_simulation_keeps_its_invariants() {
    if let Some(seed) = std::env::var("SPATE_TXN_SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        run_case(seed);
        return;
    }
    let cases = std::env::var("SPATE_TXN_SIM_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    for seed in BASE_SEED..BASE_SEED + cases {
        run_case(seed);
    }
}
