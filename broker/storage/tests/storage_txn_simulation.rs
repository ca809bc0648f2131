//! Seeded randomized runs of a partition log with transactional producers on the in-memory
//! disk, with injected I/O errors, power losses (also in the middle of a roll, a recovery
//! point with its producer snapshot and `.txnindex` writes, or a close) and process crashes,
//! checked against a model computed from what the log holds.
//!
//! Each case draws a configuration (small segments, recovery points every few KiB), a fault
//! plan and a few dozen steps: transactional producers open transactions (each through a
//! KIP-890 verification guard), append to them, and end them with commit or abort markers;
//! plain batches interleave; recovery points are written; the log is closed, crashed or
//! stopped mid-operation and reopened. After a failed append a producer aborts its
//! transaction with a bumped epoch (what the coordinator does to a transaction that cannot
//! go on), and after a restart every producer does so too (a timeout abort). Invariants:
//! - the last stable offset, the aborted-transaction list (whole and for random ranges) and
//!   each producer's open transaction equal those recomputed from the batches the log serves
//!   (transactional batches open, markers end, read back from the control records), after
//!   every reopen and between steps;
//! - every batch and marker acknowledged as durable is in the log at its offset after any
//!   crash; acknowledged markers read back with their result;
//! - no error but injected ones (and the refusals of a producer whose batch failed).
//!
//! A failure names its seed; rerun one case with `SPATE_TXN_SIM_SEED=<seed>`
//! (`SPATE_SIM_TRACE=1` prints every step). `SPATE_TXN_SIM_CASES` sets the number of cases.
//! The batch-level durability of every append is the main simulation's (`storage_simulation`);
//! this one is about the transaction state.

mod storage_support;

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spate_protocol::batch::header::{attributes, compute_crc};
use spate_protocol::batch::kafka::control::{read_marker, MarkerType};
use spate_protocol::batch::kafka::kafka_bytes;
use spate_storage::{
    AbortedTxn, AppendWait, Clock, Durability, FaultPlan, LogConfig, ManualClock, MemoryFileSystem,
    PartitionLog, StorageError, TxnMarker, TxnResult,
};
use storage_support::{header_of, id_of, producer_batch, read_all, run_to_end_timed, simple_batch};

const CASES_DEFAULT: u64 = 1000;
const BASE_SEED: u64 = 0x7a_0000;
const START_MS: i64 = 1_700_000_000_000;
const PRODUCERS: usize = 4;

type Log = PartitionLog<MemoryFileSystem>;

/// A transactional producer as the coordinator and the client see it.
#[derive(Debug)]
struct Producer {
    producer_id: i64,
    epoch: i16,
    next_sequence: i32,
    /// The client believes a transaction is open (it appended a batch that may have landed).
    in_transaction: bool,
    /// An append failed: the transaction must be aborted (epoch bumped) before anything else.
    must_abort: bool,
}

/// Something acknowledged as durable, that must be in the log at its offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Durable {
    Batch { id: u64 },
    Marker { producer_id: i64, result: TxnResult },
}

/// The transaction state recomputed from what the log serves.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expected {
    last_stable_offset: u64,
    /// (producer id, first offset, marker offset), in marker order.
    aborted: Vec<(i64, u64, u64)>,
    open: BTreeMap<i64, u64>,
}

struct Case {
    rng: StdRng,
    disk: Rc<MemoryFileSystem>,
    clock: Rc<ManualClock>,
    config: LogConfig,
    faults: FaultPlan,
    log: Option<Rc<Log>>,
    producers: Vec<Producer>,
    durable: BTreeMap<u64, Durable>,
    /// Every batch seen by a scan, by base offset: the model's memory of what delete-records
    /// removed (a transaction opened before the log start is still open in the log).
    history: BTreeMap<u64, Bytes>,
    id_next: u64,
    trace: Vec<String>,
}

fn directory() -> PathBuf {
    PathBuf::from("/data/txn-0")
}

fn random_config(rng: &mut StdRng) -> LogConfig {
    LogConfig {
        segment_bytes_max: rng.gen_range(8 * 1024..=32 * 1024),
        batch_bytes_max: 8 * 1024,
        write_buffer_bytes: 16 * 1024,
        write_queue_bytes_max: 64 * 1024,
        index_interval_bytes: rng.gen_range(256..=2048),
        index_persist_interval_bytes: rng.gen_range(512..=8 * 1024),
        tail_cache_bytes_max: 0,
        read_chunk_bytes: 4096,
        retention_ms: None,
        retention_bytes: None,
        recovery_point_interval_bytes: rng.gen_range(1..=16 * 1024),
        durability: if rng.gen_bool(0.5) {
            Durability::EveryAppend
        } else {
            Durability::GroupCommit {
                interval_bytes: rng.gen_range(512..=16 * 1024),
                interval_us: rng.gen_range(100..=5_000),
            }
        },
        ..LogConfig::default()
    }
}

fn random_faults(rng: &mut StdRng) -> FaultPlan {
    let yield_ppm = rng.gen_range(0..=300_000);
    if rng.gen_bool(0.5) {
        FaultPlan {
            yield_ppm,
            ..FaultPlan::default()
        }
    } else {
        FaultPlan {
            error_ppm: rng.gen_range(1_000..=20_000),
            short_write_ppm: rng.gen_range(0..=10_000),
            yield_ppm,
        }
    }
}

fn transactional_batch(id: u64, producer: &Producer, bytes: usize) -> BytesMut {
    let mut batch = producer_batch(
        id,
        producer.producer_id,
        producer.epoch,
        producer.next_sequence,
        1,
        bytes,
    );
    let mut header = header_of(&batch);
    header.attributes |= attributes::TRANSACTIONAL;
    header.encode(&mut batch);
    header.crc = compute_crc(&batch);
    header.encode(&mut batch);
    batch
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = random_config(&mut rng);
        let faults = random_faults(&mut rng);
        let disk = Rc::new(MemoryFileSystem::new(seed ^ 0x51_7e));
        disk.set_faults(faults);
        let producers = (0..PRODUCERS)
            .map(|index| Producer {
                producer_id: 100 + index as i64,
                epoch: rng.gen_range(0..3),
                next_sequence: 0,
                in_transaction: false,
                must_abort: false,
            })
            .collect();
        Self {
            rng,
            disk,
            clock: Rc::new(ManualClock::new(START_MS)),
            config,
            faults,
            log: None,
            producers,
            durable: BTreeMap::new(),
            history: BTreeMap::new(),
            id_next: 1,
            trace: Vec::new(),
        }
    }

    fn note(&mut self, entry: String) {
        if std::env::var_os("SPATE_SIM_TRACE").is_some() {
            eprintln!("{entry}");
        }
        self.trace.push(entry);
    }

    fn log(&self) -> Rc<Log> {
        self.log.clone().expect("open")
    }

    fn run<T: 'static>(&mut self, future: impl std::future::Future<Output = T> + 'static) -> T {
        let seed = self.rng.gen();
        run_to_end_timed(seed, &self.clock, future)
    }

    fn faults_off(&self) {
        self.disk.set_faults(FaultPlan {
            error_ppm: 0,
            short_write_ppm: 0,
            ..self.faults
        });
    }

    /// Only injected errors are acceptable.
    fn allow_error(&self, error: &StorageError, during: &str) {
        match error {
            StorageError::Io { .. } | StorageError::NoSpace { .. }
                if self.faults.error_ppm > 0 || self.faults.short_write_ppm > 0 => {}
            other => panic!("unexpected error during {during}: {other}"),
        }
    }

    fn open(&mut self) {
        for attempt in 0..12 {
            if attempt == 6 {
                self.faults_off();
            }
            let disk = self.disk.clone();
            let clock: Rc<dyn Clock> = self.clock.clone();
            let config = self.config.clone();
            match self
                .run(async move { PartitionLog::open(disk, directory(), config, clock).await })
            {
                Ok(log) => {
                    self.disk.set_faults(self.faults);
                    self.log = Some(Rc::new(log));
                    return;
                }
                Err(error) => {
                    self.note(format!("open failed: {error}"));
                    self.allow_error(&error, "open");
                }
            }
        }
        panic!("the log could not be opened even without faults");
    }

    fn restart(&mut self, power_loss: bool) {
        self.log = None;
        if power_loss {
            self.note("power loss".into());
            self.disk.crash();
        } else {
            self.note("process crash".into());
            self.disk.restart_process();
        }
        self.reopened();
    }

    fn reopened(&mut self) {
        self.open();
        self.check("after reopen");
        // The coordinator times out every transaction of the last run: an abort with a bumped
        // epoch each.
        for index in 0..PRODUCERS {
            self.producers[index].must_abort = true;
        }
    }

    fn close_and_reopen(&mut self) {
        let log = Rc::try_unwrap(self.log.take().expect("open"))
            .ok()
            .expect("no task holds the log");
        let stop = self.rng.gen_bool(0.3).then(|| self.rng.gen_range(0..30));
        if let Some(operations) = stop {
            self.disk.stop_after_operations(operations);
        }
        let closed = self.run(async move { log.close().await });
        match (stop, closed) {
            (Some(operations), _) => {
                self.note(format!("close stopped after {operations} disk operations"));
                self.disk.crash();
            }
            (None, Ok(())) => {
                self.note("close".into());
                if self.rng.gen_bool(0.5) {
                    self.disk.crash();
                }
            }
            (None, Err(error)) => {
                self.note(format!("close failed: {error}"));
                self.allow_error(&error, "close");
                self.disk.crash();
            }
        }
        self.reopened();
    }

    /// Appends one batch; returns its offset if acknowledged.
    fn append(
        &mut self,
        batch: BytesMut,
        guard: Option<spate_storage::VerificationGuard>,
    ) -> Option<u64> {
        let log = self.log();
        let id = id_of(&batch);
        let wait = if self.rng.gen_bool(0.7) {
            AppendWait::Durable
        } else {
            AppendWait::Written
        };
        let result =
            self.run(async move { log.append_batches_verified(vec![batch], wait, guard).await });
        match result {
            Ok(outcomes) => {
                let offset = outcomes[0].base_offset;
                if wait == AppendWait::Durable {
                    self.durable.insert(offset, Durable::Batch { id });
                }
                Some(offset)
            }
            Err(error) => {
                self.note(format!("append of {id} failed: {error}"));
                match error {
                    StorageError::InvalidTxnState { .. }
                    | StorageError::OutOfOrderSequence { .. }
                    | StorageError::DuplicateSequence { .. }
                        if self.faults.error_ppm > 0 => {}
                    error => self.allow_error(&error, "append"),
                }
                None
            }
        }
    }

    fn plain(&mut self) {
        let id = self.id_next;
        self.id_next += 1;
        let bytes = self.rng.gen_range(100..=1500);
        self.append(simple_batch(id, bytes, START_MS), None);
    }

    fn transactional(&mut self, index: usize) {
        let id = self.id_next;
        self.id_next += 1;
        let bytes = self.rng.gen_range(100..=1500);
        let log = self.log();
        let producer = &self.producers[index];
        let guard = log.begin_txn_verification(producer.producer_id, producer.epoch);
        let batch = transactional_batch(id, producer, bytes);
        let producer_id = producer.producer_id;
        self.producers[index].in_transaction = true;
        match self.append(batch, guard) {
            Some(offset) => {
                self.note(format!("producer {producer_id} batch {id} at {offset}"));
                let producer = &mut self.producers[index];
                producer.next_sequence += 1;
            }
            None => self.producers[index].must_abort = true,
        }
    }

    /// Ends producer `index`'s transaction; an abort after a failure bumps the epoch first.
    fn end(&mut self, index: usize, result: TxnResult) -> bool {
        let producer = &mut self.producers[index];
        if producer.must_abort {
            producer.epoch += 1;
            producer.next_sequence = 0;
        }
        let marker = TxnMarker {
            producer_id: producer.producer_id,
            producer_epoch: producer.epoch,
            coordinator_epoch: 0,
            result,
        };
        let log = self.log();
        let appended = self.run(async move { log.append_txn_marker(marker, START_MS).await });
        match appended {
            Ok(outcome) => {
                self.note(format!(
                    "producer {} {result:?} marker at {}",
                    marker.producer_id, outcome.base_offset
                ));
                self.durable.insert(
                    outcome.base_offset,
                    Durable::Marker {
                        producer_id: marker.producer_id,
                        result,
                    },
                );
                let producer = &mut self.producers[index];
                producer.in_transaction = false;
                producer.must_abort = false;
                true
            }
            Err(error) => {
                self.note(format!("marker failed: {error}"));
                self.allow_error(&error, "marker");
                self.producers[index].must_abort = true;
                false
            }
        }
    }

    fn checkpoint(&mut self) {
        let log = self.log();
        let stop = self.rng.gen_bool(0.2).then(|| self.rng.gen_range(0..12));
        if let Some(operations) = stop {
            self.disk.stop_after_operations(operations);
        }
        let result = self.run(async move { log.checkpoint_recovery_point(true).await });
        if let Some(operations) = stop {
            self.note(format!(
                "recovery point stopped after {operations} disk operations"
            ));
            self.restart(true);
            return;
        }
        if let Err(error) = result {
            self.note(format!("recovery point failed: {error}"));
            self.allow_error(&error, "recovery point");
        }
    }

    fn step(&mut self) {
        let index = self.rng.gen_range(0..PRODUCERS);
        match self.rng.gen_range(0..100) {
            0..=24 => self.plain(),
            25..=64 => {
                if self.producers[index].must_abort {
                    self.end(index, TxnResult::Abort);
                } else {
                    self.transactional(index);
                }
            }
            65..=79 => {
                if self.producers[index].in_transaction || self.producers[index].must_abort {
                    let result = if self.producers[index].must_abort || self.rng.gen_bool(0.5) {
                        TxnResult::Abort
                    } else {
                        TxnResult::Commit
                    };
                    self.end(index, result);
                }
            }
            80..=85 => self.checkpoint(),
            86..=88 => self.sync_and_check(),
            // Only on a disk without injected errors: there the newest producer snapshot is
            // always readable, so no replay starts after a gap of deleted segments (where an
            // open transaction is reopened at its first batch after the gap, which the model
            // does not follow; see FORMAT.md, "Aborted transaction index").
            89..=90 if self.faults.error_ppm == 0 => self.delete_records(),
            89..=90 => self.sync_and_check(),
            91..=94 => self.close_and_reopen(),
            95..=97 => self.restart(true),
            _ => self.restart(false),
        }
    }

    /// Syncs (so that the high watermark is the log end) and checks the state in memory.
    fn sync_and_check(&mut self) {
        let log = self.log();
        match self.run(async move { log.sync().await }) {
            Ok(()) => self.check("after sync"),
            Err(error) => {
                self.note(format!("sync failed: {error}"));
                self.allow_error(&error, "sync");
            }
        }
    }

    /// Deletes the records before a random offset up to the high watermark (after a scan,
    /// which the model remembers them by).
    fn delete_records(&mut self) {
        self.sync_and_check();
        let log = self.log();
        let target = self
            .rng
            .gen_range(log.log_start_offset()..=log.high_watermark());
        match self.run(async move { log.delete_records(target).await }) {
            Ok(start) => self.note(format!("delete records before {target}: log start {start}")),
            Err(error) => {
                self.note(format!("delete records failed: {error}"));
                self.allow_error(&error, "delete records");
            }
        }
    }

    /// What the log serves, recomputed into the transaction state; checks the durable
    /// acknowledgements on the way.
    fn expected(&mut self) -> Expected {
        let log = self.log();
        let log_start = log.log_start_offset();
        self.faults_off();
        let read = self
            .run(async move { read_all(&log, log_start, 1 << 20).await })
            .expect("read");
        self.disk.set_faults(self.faults);
        // Below the log start, the batches an earlier scan saw (all durable: delete-records
        // goes no further than the high watermark); from it on, what the log serves now.
        self.history.split_off(&log_start);
        for stored in &read {
            self.history
                .insert(header_of(stored).base_offset, stored.clone());
        }
        let batches: Vec<Bytes> = self.history.values().cloned().collect();
        let mut expected = Expected::default();
        let mut found = HashMap::new();
        let mut end = 0;
        for stored in &batches {
            let header = header_of(stored);
            end = header.next_offset();
            let transactional = header.attributes & attributes::TRANSACTIONAL != 0;
            if header.attributes & attributes::CONTROL != 0 {
                let marker = read_marker(kafka_bytes(stored)).expect("a stored marker reads back");
                let result = match marker.marker_type {
                    MarkerType::Commit => TxnResult::Commit,
                    MarkerType::Abort => TxnResult::Abort,
                };
                found.insert(
                    header.base_offset,
                    Durable::Marker {
                        producer_id: header.producer_id,
                        result,
                    },
                );
                if let Some(first) = expected.open.remove(&header.producer_id) {
                    if result == TxnResult::Abort {
                        expected
                            .aborted
                            .push((header.producer_id, first, header.base_offset));
                    }
                }
                continue;
            }
            found.insert(header.base_offset, Durable::Batch { id: id_of(stored) });
            if transactional {
                expected
                    .open
                    .entry(header.producer_id)
                    .or_insert(header.base_offset);
            }
        }
        for (offset, durable) in &self.durable {
            assert_eq!(
                found.get(offset),
                Some(durable),
                "acknowledged durable at offset {offset}"
            );
        }
        expected.last_stable_offset = expected
            .open
            .values()
            .copied()
            .min()
            .unwrap_or(end)
            .min(end)
            .max(log_start.min(end));
        expected
    }

    fn check(&mut self, when: &str) {
        let expected = self.expected();
        let log = self.log();
        let high_watermark = log.high_watermark();
        assert_eq!(
            log.last_stable_offset(),
            expected.last_stable_offset,
            "{when}: last stable offset (high watermark {high_watermark}, open {:?})",
            expected.open
        );
        for producer in &self.producers {
            assert_eq!(
                log.ongoing_transaction(producer.producer_id),
                expected.open.get(&producer.producer_id).copied(),
                "{when}: open transaction of producer {}",
                producer.producer_id
            );
        }
        // Fetches start at or after the log start (Kafka refuses the others).
        let log_start = log.log_start_offset();
        let mut ranges = vec![(log_start, high_watermark)];
        for _ in 0..4 {
            let from = self.rng.gen_range(log_start..=high_watermark);
            let upper = self.rng.gen_range(from..=high_watermark.max(from) + 1);
            ranges.push((from, upper));
        }
        for (from, upper) in ranges {
            let reader = log.clone();
            self.faults_off();
            let listed = self
                .run(async move { reader.aborted_transactions(from, upper).await })
                .expect("aborted transactions");
            self.disk.set_faults(self.faults);
            let wanted: Vec<AbortedTxn> = expected
                .aborted
                .iter()
                .filter(|(_, first, last)| *last >= from && *first < upper)
                .map(|(producer_id, first_offset, _)| AbortedTxn {
                    producer_id: *producer_id,
                    first_offset: *first_offset,
                })
                .collect();
            assert_eq!(
                listed, wanted,
                "{when}: aborted transactions in [{from}, {upper})"
            );
        }
    }

    /// On a healthy disk, every producer ends its transaction and the state is checked
    /// after a last power loss.
    fn finish(&mut self) {
        self.faults = FaultPlan {
            error_ppm: 0,
            short_write_ppm: 0,
            ..self.faults
        };
        self.disk.set_faults(self.faults);
        for index in 0..PRODUCERS {
            if self.producers[index].in_transaction || self.producers[index].must_abort {
                assert!(self.end(index, TxnResult::Abort), "abort on a healthy disk");
            }
        }
        self.sync_and_check();
        let log = self.log();
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        self.restart(true);
    }
}

fn run_case(seed: u64) {
    let mut case = Case::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        case.open();
        let steps = case.rng.gen_range(30..=90);
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
            "transaction simulation failed for seed {seed} (rerun: SPATE_TXN_SIM_SEED={seed}): {message}\nconfig: {:?}\nfaults: {:?}\nlast operations (newest first): {trace:#?}",
            case.config, case.faults
        );
    }
}

#[test]
fn seeded_runs_keep_the_last_stable_offset_and_aborted_transactions_across_crashes() {
    if let Some(seed) = std::env::var("SPATE_TXN_SIM_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        run_case(seed);
        return;
    }
    let cases = std::env::var("SPATE_TXN_SIM_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    for case in 0..cases {
        run_case(BASE_SEED + case);
    }
}
