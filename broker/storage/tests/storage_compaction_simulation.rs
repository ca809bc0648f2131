//! Seeded simulation of log compaction with power losses at every step of a pass.
//!
//! Each case appends keyed records (overwrites and tombstones, native and Kafka batches, Kafka
//! ones compressed with a random codec; a third in transactions of two producers, ended by
//! commit or abort markers at random) to a compacted log on the in-memory disk, moves the
//! clock, runs compaction passes (forced or not, with a random key map limit), reads the log as
//! a consumer would, and restarts. Some passes are cut by a power loss after a random number of
//! disk operations (`MemoryFileSystem::stop_after_operations`, then `crash`), so over the cases a
//! crash lands at every step of a pass: the cleaned file's writes and sync, the rename to
//! `.swap`, each removal, the rename to `.log`, the index writes, the checkpoint.
//!
//! Checked after every pass and every reopen, against a model of what was acknowledged (every
//! append waits until durable, so the model is exact):
//! - the log end never moves, and batches are contiguous from the log start;
//! - every record read is one that was written at that offset (key, value, timestamp);
//! - no live key is lost: the last record of each key is the last one written, plain or
//!   committed (a key whose last record is a tombstone may be gone, but then wholly: no older
//!   value comes back); records of open or aborted transactions are not counted, and no
//!   aborted record is left below the clean offset;
//! - never an older value of a key than one a reader was already served;
//! - after a pass, below its clean offset each key has one record at most;
//! - after an open, no `.cleaned` or `.swap` file is left (no half-swapped segments).
//!
//! A failure names its seed; rerun one case with `SPATE_COMPACTION_SIM_SEED=<seed>`. The number
//! of cases is `SPATE_COMPACTION_SIM_CASES` (default below); `SPATE_COMPACTION_SIM_BASE_SEED`
//! starts them elsewhere.

mod storage_support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::rc::Rc;

use bytes::BytesMut;
use spate_protocol::batch::kafka::{self, compression, field, Compression};
use spate_protocol::batch::retain::for_each_record;
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_storage::config::CleanupPolicy;
use spate_storage::{
    AppendWait, Clock, CompactionBudget, LogConfig, ManualClock, MemoryFileSystem, PartitionLog,
    SimulationRng, TxnMarker, TxnResult,
};
use storage_support::{directory, read_all, run_to_end, small_config};

const CASES_DEFAULT: u64 = 60;
const BASE_SEED: u64 = 0xc0_3ac7_0000;
const START_MS: i64 = 1_700_000_000_000;
const KEYS: u64 = 12;

/// One record as written (and as it must read back).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Written {
    timestamp: i64,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
    /// The transaction's outcome for a transactional record: `None` while it is open.
    transaction: Option<Option<bool>>,
}

impl Written {
    /// Whether the record counts for its key: plain, or of a committed transaction.
    fn counts(&self) -> bool {
        matches!(self.transaction, None | Some(Some(true)))
    }
}

/// Transactional producers of the simulation (epoch 0).
const PRODUCERS: [i64; 2] = [100, 101];

struct Case {
    seed: u64,
    rng: SimulationRng,
    disk: Rc<MemoryFileSystem>,
    clock: Rc<ManualClock>,
    config: LogConfig,
    log: Option<Rc<PartitionLog<MemoryFileSystem>>>,
    /// Every record written, by offset.
    written: BTreeMap<u64, Written>,
    /// The offset of each key's last record written.
    last_written: HashMap<Vec<u8>, u64>,
    /// The largest offset of each key a read has served.
    served: HashMap<Vec<u8>, u64>,
    log_end: u64,
    /// Offsets of the transaction markers appended.
    markers: BTreeSet<u64>,
    /// Per transactional producer: its next sequence and the offsets of its open transaction.
    producers: HashMap<i64, (i32, Vec<u64>)>,
    passes: u64,
    crashes: u64,
    /// Segments replaced and written by passes that finished.
    segments_replaced: u64,
    segments_written: u64,
    trace: Vec<String>,
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = SimulationRng::new(seed);
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::COMPACT,
            segment_bytes_max: 4096 * (2 + rng.below(4)),
            delete_retention_ms: rng.below(3) * 500,
            min_compaction_lag_ms: if rng.below(4) == 0 { 300 } else { 0 },
            ..small_config()
        };
        let mut case = Self {
            seed,
            disk: Rc::new(MemoryFileSystem::new(rng.next_u64())),
            clock: Rc::new(ManualClock::new(START_MS)),
            rng,
            config,
            log: None,
            written: BTreeMap::new(),
            last_written: HashMap::new(),
            served: HashMap::new(),
            log_end: 0,
            markers: BTreeSet::new(),
            producers: HashMap::new(),
            passes: 0,
            crashes: 0,
            segments_replaced: 0,
            segments_written: 0,
            trace: Vec::new(),
        };
        case.open();
        case
    }

    fn log(&self) -> Rc<PartitionLog<MemoryFileSystem>> {
        self.log.clone().expect("open")
    }

    fn open(&mut self) {
        let disk = self.disk.clone();
        let clock: Rc<dyn Clock> = self.clock.clone();
        let config = self.config.clone();
        let log = run_to_end(self.seed, async move {
            PartitionLog::open(disk, directory(), config, clock).await
        })
        .unwrap_or_else(|error| panic!("open failed: {error}"));
        self.log = Some(Rc::new(log));
        let leftovers: Vec<String> = self
            .disk
            .file_paths()
            .into_iter()
            .map(|path| path.display().to_string())
            .filter(|name| name.ends_with(".swap") || name.ends_with(".cleaned"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "half-swapped files after open: {leftovers:?}"
        );
        assert_eq!(self.log().next_offset(), self.log_end, "the log end moved");
        self.check(None);
    }

    fn append(&mut self) {
        let records = 1 + self.rng.below(4);
        let entries_count = records;
        let timestamp = self.clock.now_ms();
        let mut entries = Vec::new();
        for _ in 0..records {
            let key = format!("key-{}", self.rng.below(KEYS)).into_bytes();
            let value = (self.rng.below(6) != 0)
                .then(|| format!("value-{}-{}", self.written.len(), "v".repeat(40)).into_bytes());
            entries.push((key, value));
        }
        // A third of the batches belong to a transaction of one of the producers.
        let producer = (self.rng.below(3) == 0)
            .then(|| PRODUCERS[self.rng.below(PRODUCERS.len() as u64) as usize]);
        let mut options = BatchOptions::default();
        if let Some(producer_id) = producer {
            let sequence = self.producers.entry(producer_id).or_default().0;
            options = BatchOptions {
                producer_id,
                producer_epoch: 0,
                base_sequence: sequence,
                attributes: spate_protocol::batch::header::attributes::TRANSACTIONAL,
                ..options
            };
        }
        let mut builder = BatchBuilder::new(options);
        for (key, value) in &entries {
            builder
                .append(Some(key), value.as_deref(), NO_HEADERS, timestamp)
                .expect("fits");
        }
        let native = builder.seal().expect("not empty");
        let batch = match self.rng.below(3) {
            _ if producer.is_some() => native,
            0 => native,
            _ => {
                let codec = [
                    Compression::None,
                    Compression::Gzip,
                    Compression::Snappy,
                    Compression::Lz4,
                    Compression::Zstd,
                ][self.rng.below(5) as usize];
                kafka_batch(&native, codec)
            }
        };
        let log = self.log();
        let guard = producer.and_then(|producer_id| log.begin_txn_verification(producer_id, 0));
        let outcome = run_to_end(self.seed, async move {
            log.append_batches_verified(vec![batch], AppendWait::Durable, guard)
                .await
                .map(|outcomes| outcomes[0])
        })
        .unwrap_or_else(|error| panic!("append failed: {error}"));
        self.trace.push(format!(
            "append {} records at {}",
            entries.len(),
            outcome.base_offset
        ));
        for (index, (key, value)) in entries.into_iter().enumerate() {
            let offset = outcome.base_offset + index as u64;
            if producer.is_none() {
                self.note_last_written(&key, offset);
            }
            self.written.insert(
                offset,
                Written {
                    timestamp,
                    key,
                    value,
                    transaction: producer.map(|_| None),
                },
            );
        }
        if let Some(producer_id) = producer {
            let (sequence, open) = self.producers.entry(producer_id).or_default();
            *sequence += entries_count as i32;
            open.extend(outcome.base_offset..outcome.next_offset);
        }
        self.log_end = outcome.next_offset;
    }

    fn note_last_written(&mut self, key: &[u8], offset: u64) {
        let last = self.last_written.entry(key.to_vec()).or_insert(offset);
        *last = (*last).max(offset);
    }

    /// Ends a producer's open transaction with a commit or an abort marker.
    fn end_transaction(&mut self) {
        let producer_id = PRODUCERS[self.rng.below(PRODUCERS.len() as u64) as usize];
        let commit = self.rng.below(2) == 0;
        let log = self.log();
        let timestamp = self.clock.now_ms();
        let outcome = run_to_end(self.seed, async move {
            let result = if commit {
                TxnResult::Commit
            } else {
                TxnResult::Abort
            };
            let marker = TxnMarker {
                producer_id,
                producer_epoch: 0,
                coordinator_epoch: 0,
                result,
            };
            log.append_txn_marker(marker, timestamp).await
        })
        .unwrap_or_else(|error| panic!("marker failed: {error}"));
        self.trace.push(format!(
            "marker {producer_id} commit {commit} at {}",
            outcome.base_offset
        ));
        self.markers.insert(outcome.base_offset);
        self.log_end = outcome.next_offset;
        let open = std::mem::take(&mut self.producers.entry(producer_id).or_default().1);
        for offset in open {
            let written = self.written.get_mut(&offset).expect("written");
            written.transaction = Some(Some(commit));
            if commit {
                let key = written.key.clone();
                self.note_last_written(&key, offset);
            }
        }
    }

    /// Reads the whole log from its start and checks it (see the module doc); records what a
    /// reader was served. `clean_offset`: after a pass, the offset below which keys are unique.
    fn check(&mut self, clean_offset: Option<u64>) {
        let log = self.log();
        let from = log.log_start_offset();
        let batches = run_to_end(
            self.seed,
            async move { read_all(&log, from, 1 << 16).await },
        )
        .unwrap_or_else(|error| panic!("read failed: {error}"));
        let mut previous_end: Option<u64> = None;
        let mut last_seen: HashMap<Vec<u8>, (u64, bool)> = HashMap::new();
        let mut below_clean: HashMap<Vec<u8>, u64> = HashMap::new();
        for batch in &batches {
            let view = BatchView::validate(batch, BATCH_BYTES_MAX).expect("a valid batch");
            if let Some(end) = previous_end {
                assert_eq!(view.base_offset(), end, "batches are not contiguous");
            }
            previous_end = Some(view.next_offset());
            for_each_record(&view, |record| {
                let offset = record.offset();
                if self.markers.contains(&offset) {
                    return;
                }
                let written = self
                    .written
                    .get(&offset)
                    .unwrap_or_else(|| panic!("offset {offset} was never written"));
                assert_eq!(record.key(), Some(written.key.as_slice()), "key at {offset}");
                assert_eq!(record.value(), written.value.as_deref(), "value at {offset}");
                assert_eq!(record.timestamp(), written.timestamp, "timestamp at {offset}");
                if written.transaction == Some(Some(false))
                    && clean_offset.is_some_and(|clean| offset < clean)
                {
                    panic!("aborted record at {offset} below the clean offset {clean_offset:?}");
                }
                if !written.counts() {
                    return;
                }
                last_seen.insert(written.key.clone(), (offset, written.value.is_none()));
                if clean_offset.is_some_and(|clean| offset < clean) {
                    if let Some(other) = below_clean.insert(written.key.clone(), offset) {
                        panic!(
                            "key {:?} twice below the clean offset {clean_offset:?}: {other} and {offset}",
                            String::from_utf8_lossy(&written.key)
                        );
                    }
                }
            })
            .expect("records parse");
        }
        assert_eq!(previous_end.unwrap_or(self.log_end), self.log_end);
        for (key, &last) in &self.last_written {
            let tombstone = self.written[&last].value.is_none();
            match last_seen.get(key) {
                Some(&(offset, _)) => assert_eq!(
                    offset,
                    last,
                    "key {:?}: last record at {offset}, last written at {last}",
                    String::from_utf8_lossy(key)
                ),
                None => assert!(
                    tombstone,
                    "live key {:?} lost (last written at {last})",
                    String::from_utf8_lossy(key)
                ),
            }
            if let Some(&served) = self.served.get(key) {
                let now = last_seen.get(key).map(|(offset, _)| *offset);
                assert!(
                    now.is_none_or(|now| now >= served),
                    "key {:?}: served {served} before, now only {now:?}",
                    String::from_utf8_lossy(key)
                );
            }
        }
        for (key, (offset, _)) in last_seen {
            self.served.insert(key, offset);
        }
    }

    fn compact(&mut self) {
        let crash_after = (self.rng.below(3) == 0).then(|| self.rng.below(150));
        let budget = CompactionBudget {
            key_map_entries_max: if self.rng.below(2) == 0 {
                4 + self.rng.below(12) as usize
            } else {
                1 << 16
            },
            force: self.rng.below(2) == 0,
            pace: None,
        };
        if let Some(operations) = crash_after {
            self.disk.stop_after_operations(operations);
        }
        self.trace
            .push(format!("compact {budget:?}, crash after {crash_after:?}"));
        let log = self.log();
        let result = run_to_end(self.seed, async move { log.compact(&budget).await });
        self.passes += 1;
        match (result, crash_after) {
            (Ok(outcome), _) => {
                self.trace.push(format!("  {outcome:?}"));
                self.segments_replaced += outcome.segments_replaced as u64;
                self.segments_written += outcome.segments_written as u64;
                if crash_after.is_some() {
                    // The pass finished within its operations: crash after it all the same.
                    self.crash();
                } else {
                    self.check(outcome.skipped.is_none().then_some(outcome.clean_offset));
                }
            }
            (Err(error), Some(_)) => {
                self.trace.push(format!("  stopped: {error}"));
                self.crash();
            }
            (Err(error), None) => panic!("compaction failed on a healthy disk: {error}"),
        }
    }

    fn crash(&mut self) {
        self.trace.push("crash".into());
        self.log = None;
        self.disk.crash();
        self.crashes += 1;
        self.open();
    }

    fn restart(&mut self) {
        self.trace.push("restart".into());
        let log = Rc::try_unwrap(self.log.take().expect("open"))
            .ok()
            .expect("one owner");
        run_to_end(self.seed, async move { log.close().await }).expect("close");
        self.open();
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=10 => self.append(),
            11 => self.end_transaction(),
            12..=13 => {
                let advance = 1 + self.rng.below(800) as i64;
                self.clock.set_now_ms(self.clock.now_ms() + advance);
            }
            14..=17 => self.compact(),
            18 => self.check(None),
            _ => self.restart(),
        }
    }
}

/// The Kafka batch a Kafka producer would send for the records of `native`, compressed.
fn kafka_batch(native: &BytesMut, codec: Compression) -> BytesMut {
    let plain = kafka::to_kafka_v2(native).expect("converts");
    let mut batch = plain[..kafka::KAFKA_BATCH_HEADER_BYTES].to_vec();
    let body = compression::compress(codec, &plain[kafka::KAFKA_BATCH_HEADER_BYTES..])
        .expect("compresses");
    batch.extend_from_slice(&body);
    let length = (batch.len() - field::LENGTH_OVERHEAD) as i32;
    batch[field::BATCH_LENGTH..][..4].copy_from_slice(&length.to_be_bytes());
    batch[field::ATTRIBUTES..][..2].copy_from_slice(&(codec as u16).to_be_bytes());
    let crc = crc32c::crc32c(&batch[field::CRC_START..]);
    batch[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    kafka::wrap(&batch).expect("wraps")
}

fn run_case(seed: u64) -> [u64; 4] {
    let mut case = Case::new(seed);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let steps = 150 + case.rng.below(150);
        for _ in 0..steps {
            case.step();
        }
        case.compact();
        case.restart();
    }));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_default();
        let trace: Vec<&String> = case.trace.iter().rev().take(20).collect();
        panic!(
            "compaction simulation failed for seed {seed} (rerun: SPATE_COMPACTION_SIM_SEED={seed}): {message}\nconfig: {:?}\nlast operations (newest first): {trace:#?}",
            case.config
        );
    }
    [
        case.passes,
        case.crashes,
        case.segments_replaced,
        case.segments_written,
    ]
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
}

#[test]
fn compaction_survives_power_loss_at_every_step_of_a_pass() {
    if let Some(seed) = env_u64("SPATE_COMPACTION_SIM_SEED") {
        run_case(seed);
        return;
    }
    let cases = env_u64("SPATE_COMPACTION_SIM_CASES").unwrap_or(CASES_DEFAULT);
    let base = env_u64("SPATE_COMPACTION_SIM_BASE_SEED").unwrap_or(BASE_SEED);
    let mut totals = [0u64; 4];
    for seed in base..base + cases {
        for (total, count) in totals.iter_mut().zip(run_case(seed)) {
            *total += count;
        }
    }
    let [passes, crashes, replaced, written] = totals;
    assert!(
        crashes > cases,
        "crashes happen: {crashes} in {cases} cases"
    );
    assert!(
        replaced > written,
        "passes merge segments: {replaced} replaced by {written}"
    );
    eprintln!(
        "{cases} cases: {passes} compaction passes, {crashes} power losses, \
         {replaced} segments replaced by {written}"
    );
}
