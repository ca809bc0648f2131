//! Seeded randomized runs of a partition log on the in-memory disk, checked against a model of
//! what was acknowledged.
//!
//! Each case draws a configuration, a fault plan and a few dozen operations from its seed:
//! rounds of concurrent appends (some crashed mid-flight), reads, timestamp lookups, syncs,
//! delete-records, retention with clock jumps, disk-full periods, clean restarts and crashes.
//! Invariants checked:
//! - every batch acknowledged as durable is readable, byte for byte, at its offset, after any
//!   crash (unless deleted by retention or delete-records);
//! - nothing is served that is not exactly a batch some append handed in, stamped with the
//!   offset it occupies; offsets are contiguous; no batch appears twice;
//! - the log end never goes below the end of durably acknowledged data, the high watermark and
//!   the log start never move backwards;
//! - a corruption error never happens, and without injected faults no error happens at all;
//! - no operation stalls.
//!
//! A share of the batches comes from a few idempotent producers, which behave like real ones:
//! at most five batches in flight, sent as up to three requests at once (each its own task,
//! reaching the log in sequence order, as pipelined requests on one connection), some waiting
//! for durability (acks=all) and some only for the write (acks=leader); resent in sequence
//! order with the same sequences after an error or a crash (written batches too, unless found
//! durable in the log), now and then an acknowledged batch among the last five resent (a lost
//! response), and sometimes an epoch bump once all is acknowledged. A producer pipelines and
//! waits only for the write whether or not the partition knows it yet: a failed batch holds
//! its producer (`ProducerEntry::held_at`), so a later request already on its way is refused
//! rather than stored ahead of it (seed 1592590629, at the commit that limited this, stored
//! one that way after a roll failed on a full disk).
//! Also checked, after every reopen and at the end:
//! - no batch of a producer appears twice, and a producer's batches lie in sequence order
//!   (contiguous within an epoch, epochs never going back); a producer's first batch in the
//!   log follows nothing, or a batch of its sequence that was stored before it and deleted
//!   since: never a batch that was lost (a later batch stored after a gap);
//! - a retry answered as a duplicate gets the offsets its original has in the log, and a batch
//!   already in the log (and still visible) is never appended again;
//! - the only refusals are a duplicate-sequence answer to a resend of an acknowledged batch and,
//!   in a round with a disk error, an out-of-order answer to a request whose predecessor
//!   failed; once the disk is healthy every producer finishes its stream.
//!
//! A third, smaller set of shorter cases ends in operator damage to the cleanly closed
//! partition (FORMAT.md, "What each file's damage does"): a byte flipped in a closed segment's
//! `.log`, a file deleted or truncated (any segment file, a producer snapshot, the recovery
//! point or log start checkpoint), or an index replaced by another segment's (stale). The
//! reopen must then either refuse the partition with a typed error (`Corrupt`, `LostData`), or
//! serve every acknowledged record byte for byte except, for a flipped byte only, those inside
//! a range a read reports as `CorruptBatch`; nothing else is served, no read stalls, the log
//! never ends below acknowledged data, the log start never moves forward, and the next append
//! gets a new offset. Damage to an index, a missing recovery point or log start checkpoint and
//! a missing or truncated producer snapshot must be repaired at open; the oldest of several
//! segment logs deleted must be reported as `LostOldestSegments`.
//!
//! A quarter of the delete-records and retention operations are cut short by a power loss
//! after a random number of disk operations (between or inside the checkpoint write and the
//! segment removals): the reopen must never report lost data for what the broker removed.
//!
//! A failure names its seed; rerun one case with `SPATE_SIM_SEED=<seed>` (a damage case with
//! `SPATE_SIM_DAMAGE_SEED=<seed>`; `SPATE_SIM_TRACE=1` prints every operation). The number of
//! cases is `SPATE_SIM_CASES` (default below, split over two test threads) and
//! `SPATE_SIM_DAMAGE_CASES`; `SPATE_SIM_BASE_SEED` starts them elsewhere to explore new seeds.

mod storage_support;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::{poll_fn, Future};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spate_protocol::batch::header::{last_sequence, sequence_after, stamp_producer};
use spate_protocol::constants::PRODUCER_BATCHES_RETAINED;
use spate_storage::{
    AppendOutcome, AppendWait, CachedFileSystem, Clock, Durability, FaultPlan, FileSystem,
    LogConfig, ManualClock, MemoryFileSystem, PartitionLog, StorageError,
};
use storage_support::{
    batch, header_of, id_of, read_all, run_to_end_timed, same_batch, Simulator,
    TEST_BATCH_BYTES_MIN,
};

/// Cases per run by default (two test functions each run half). Raise with SPATE_SIM_CASES.
const CASES_DEFAULT: u64 = 3000;
const BASE_SEED: u64 = 0x5eed_0000;
/// Operator damage cases per run by default (a shorter case each). Raise with
/// SPATE_SIM_DAMAGE_CASES.
const DAMAGE_CASES_DEFAULT: u64 = 300;
const DAMAGE_BASE_SEED: u64 = 0xda3a_0000;
const START_MS: i64 = 1_700_000_000_000;

/// Idempotent producers writing to the partition in each case.
const PRODUCERS: usize = 3;
/// A producer's unacknowledged and written-not-durable batches at most (Kafka's in-flight limit
/// with idempotence): any of them that landed lies within the partition's retained window, so
/// its retry is recognised.
const PRODUCER_IN_FLIGHT_MAX: usize = PRODUCER_BATCHES_RETAINED;
/// Share of an append round's tasks that are an idempotent producer's requests.
const PRODUCER_TASK_PROBABILITY: f64 = 0.35;
/// A producer's requests in flight at once within an append round.
const PRODUCER_REQUESTS_MAX: usize = 3;
/// Share of a producer's requests that wait only for the write (acks=leader).
const PRODUCER_WRITTEN_PROBABILITY: f64 = 0.3;

/// Through the shard's open-file cache, with room for a few files only (from the seed, without
/// drawing from the case's generator): segment files are closed and reopened all the time.
type Files = CachedFileSystem<MemoryFileSystem>;
type Log = PartitionLog<Files>;

#[derive(Debug, Clone, Copy)]
struct Acknowledged {
    id: u64,
    next_offset: u64,
    durable: bool,
}

#[derive(Debug)]
struct AppendEvent {
    id: u64,
    wait: AppendWait,
    result: Result<AppendOutcome, StorageError>,
    /// For a producer's resend of a batch it had acknowledged: the offsets it was told then.
    acknowledged_at: Option<(u64, u64)>,
}

/// The producer fields a producer batch was built with.
#[derive(Debug, Clone, Copy)]
struct ProducerFields {
    producer: usize,
    epoch: i16,
    first_sequence: i32,
    last_sequence: i32,
}

/// A producer batch acknowledged (durable) at `[base_offset, next_offset)`.
#[derive(Debug, Clone, Copy)]
struct ProducerAcknowledged {
    id: u64,
    base_offset: u64,
    next_offset: u64,
}

/// What one idempotent producer has sent and been told.
#[derive(Debug)]
struct ProducerModel {
    producer_id: i64,
    epoch: i16,
    next_sequence: i32,
    /// Batches built but not acknowledged, in sequence order: resent first, in this order.
    unacknowledged: VecDeque<u64>,
    /// The last acknowledged batches of the current epoch, oldest first.
    acknowledged: VecDeque<ProducerAcknowledged>,
    /// Batches acknowledged as written (acks=leader) and not yet known durable, in sequence
    /// order. An error or a crash may have rolled them back: they are then resent.
    written: VecDeque<ProducerAcknowledged>,
    /// The last batch built in the current epoch: the predecessor of the next one.
    last_built: Option<u64>,
}

/// One request of a producer: one `append` or `append_batches` call.
struct ProducerRequest {
    batches: Vec<BytesMut>,
    wait: AppendWait,
    /// For a resend of an acknowledged batch (as if its response was lost): its known offsets.
    acknowledged_at: Option<(u64, u64)>,
    /// A single batch goes through `append` rather than `append_batches`.
    single_call: bool,
}

/// A producer's requests in flight at once, in sequence order: each is its own task, and
/// request `k + 1` is sent only once request `k` has reached the log (arrival order).
struct ProducerWork {
    requests: Vec<ProducerRequest>,
}

/// The order in which one producer's requests reach the log: the request whose turn it is
/// makes its call's first poll (where the log admits it or queues it in arrival order), then
/// hands the turn on.
#[derive(Default)]
struct ArrivalOrder {
    turn: Cell<usize>,
    waiting: RefCell<Vec<Waker>>,
}

impl ArrivalOrder {
    async fn wait_for(&self, turn: usize) {
        poll_fn(|context| {
            if self.turn.get() == turn {
                Poll::Ready(())
            } else {
                self.waiting.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
        .await;
    }

    fn hand_on(&self) {
        self.turn.set(self.turn.get() + 1);
        for waker in self.waiting.borrow_mut().drain(..) {
            waker.wake();
        }
    }
}

fn is_producer_refusal(error: &StorageError) -> bool {
    matches!(
        error,
        StorageError::OutOfOrderSequence { .. }
            | StorageError::DuplicateSequence { .. }
            | StorageError::ProducerFenced { .. }
            | StorageError::InvalidProducerFields { .. }
    )
}

/// Operator damage planted in a cleanly closed partition (see [`Case::damage_and_check`]).
#[derive(Debug, Clone)]
enum Damage {
    /// One byte of a closed segment's `.log` inverted.
    FlipClosedLog { path: PathBuf, position: usize },
    /// A file removed.
    Delete { path: PathBuf },
    /// A file cut to `length` bytes (shorter than it was).
    Truncate { path: PathBuf, length: u64 },
    /// A segment's `.index` or `.timeindex` replaced by the same file of another segment.
    StaleIndex { path: PathBuf, from: PathBuf },
}

impl Damage {
    fn path(&self) -> &PathBuf {
        match self {
            Damage::FlipClosedLog { path, .. }
            | Damage::Delete { path }
            | Damage::Truncate { path, .. }
            | Damage::StaleIndex { path, .. } => path,
        }
    }

    /// Damage that FORMAT.md says costs nothing but work at open: the partition must open and
    /// serve every record (indexes are rebuilt, a missing recovery point means a longer replay,
    /// an invalid or missing producer snapshot means replay from an older one).
    fn must_be_repaired(&self) -> bool {
        let name = file_name(self.path());
        let index = name.ends_with(".index") || name.ends_with(".timeindex");
        match self {
            Damage::FlipClosedLog { .. } => false,
            Damage::StaleIndex { .. } => true,
            // A missing log start checkpoint: the log starts at its oldest segment (as before
            // the checkpoint was first written), with a warning.
            Damage::Delete { .. } => {
                index
                    || name.ends_with(".producers")
                    || name == "recovery-point"
                    || name == "log-start-offset"
            }
            Damage::Truncate { .. } => index || name.ends_with(".producers"),
        }
    }
}

fn file_name(path: &std::path::Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Errors an open of a damaged partition may fail with: each takes the partition offline with
/// the file and the reason, and none serves anything.
fn is_damage_refusal(error: &StorageError) -> bool {
    matches!(
        error,
        StorageError::Corrupt { .. }
            | StorageError::LostData { .. }
            | StorageError::LostOldestSegments { .. }
            | StorageError::MissingDirectory { .. }
    )
}

/// What a scan of a damaged log found: batches served (base offset to id) and the offset
/// ranges `[first, readable_from)` reads reported as damaged.
#[derive(Default)]
struct DamageScan {
    served: BTreeMap<u64, u64>,
    ranges: Vec<(u64, u64)>,
}

struct Case {
    rng: StdRng,
    disk: Rc<MemoryFileSystem>,
    files: Rc<Files>,
    clock: Rc<ManualClock>,
    config: LogConfig,
    faults: FaultPlan,
    no_space: bool,
    log: Option<Rc<Log>>,
    /// Unstamped bytes of every batch ever handed to `append`, by id (see `storage_support::batch`).
    originals: HashMap<u64, Bytes>,
    /// What the log is known to hold: acknowledged batches by base offset. Entries that are not
    /// durable are dropped when an error may have rolled them back.
    acknowledged: BTreeMap<u64, Acknowledged>,
    /// The end of durably acknowledged data: the log end must never fall below it.
    durable_next_offset: u64,
    log_start_floor: u64,
    high_watermark_seen: u64,
    id_next: u64,
    producers: Vec<ProducerModel>,
    /// Producer fields of every producer batch built, by id.
    producer_batches: HashMap<u64, ProducerFields>,
    /// For each producer batch, the batch before it in its producer's sequence (same epoch).
    predecessors: HashMap<u64, u64>,
    /// Where each batch was last known to lie (base offset): from acknowledgements and scans.
    /// A scan corrects it for everything from the log start on.
    placed: HashMap<u64, u64>,
    trace: Vec<String>,
}

fn directory() -> PathBuf {
    PathBuf::from("/data/sim-0")
}

fn random_config(rng: &mut StdRng) -> LogConfig {
    let batch_bytes_max = 16 * 1024;
    LogConfig {
        segment_bytes_max: rng.gen_range(16 * 1024..=96 * 1024),
        segment_age_max_ms: rng.gen_range(50..=5_000),
        retention_bytes: rng
            .gen_bool(0.4)
            .then(|| rng.gen_range(32 * 1024..=256 * 1024)),
        retention_ms: rng.gen_bool(0.4).then(|| rng.gen_range(1_000..=60_000)),
        durability: if rng.gen_bool(0.5) {
            Durability::EveryAppend
        } else {
            Durability::GroupCommit {
                interval_bytes: rng.gen_range(512..=32 * 1024),
                interval_us: rng.gen_range(100..=5_000),
            }
        },
        index_interval_bytes: rng.gen_range(64..=2048),
        index_persist_interval_bytes: rng.gen_range(128..=16 * 1024),
        tail_cache_bytes_max: if rng.gen_bool(0.5) {
            0
        } else {
            rng.gen_range(0..=32 * 1024)
        },
        batch_bytes_max,
        write_buffer_bytes: [8192, 16384, 65536][rng.gen_range(0..3)],
        write_queue_bytes_max: rng.gen_range(batch_bytes_max..=128 * 1024),
        read_chunk_bytes: [4096, 8192, 16384][rng.gen_range(0..3)],
        recovery_point_interval_bytes: rng.gen_range(1..=64 * 1024),
        // Default producer limits: a few producers never expire (the clock moves by minutes at
        // most) or get evicted, so the partition must remember each of them.
        ..LogConfig::default()
    }
}

fn random_faults(rng: &mut StdRng) -> FaultPlan {
    let yield_ppm = rng.gen_range(0..=500_000);
    if rng.gen_bool(0.4) {
        FaultPlan {
            yield_ppm,
            ..FaultPlan::default()
        }
    } else {
        FaultPlan {
            error_ppm: rng.gen_range(1_000..=30_000),
            short_write_ppm: rng.gen_range(0..=20_000),
            yield_ppm,
        }
    }
}

impl Case {
    fn new(seed: u64) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let config = random_config(&mut rng);
        let faults = random_faults(&mut rng);
        let disk = Rc::new(MemoryFileSystem::new(seed ^ 0x9e37_79b9));
        disk.set_faults(faults);
        let files = Rc::new(CachedFileSystem::new(
            (*disk).clone(),
            1 + (seed % 7) as usize,
        ));
        let producers = (0..PRODUCERS)
            .map(|index| ProducerModel {
                producer_id: index as i64 * 7 + rng.gen_range(0..7),
                epoch: rng.gen_range(0..3),
                // Some producers start just before the wrap from i32::MAX to 0.
                next_sequence: if rng.gen_bool(0.3) {
                    i32::MAX - rng.gen_range(0..40)
                } else {
                    rng.gen_range(0..1_000)
                },
                unacknowledged: VecDeque::new(),
                acknowledged: VecDeque::new(),
                written: VecDeque::new(),
                last_built: None,
            })
            .collect();
        Self {
            rng,
            disk,
            files,
            clock: Rc::new(ManualClock::new(START_MS)),
            config,
            faults,
            no_space: false,
            log: None,
            originals: HashMap::new(),
            acknowledged: BTreeMap::new(),
            durable_next_offset: 0,
            log_start_floor: 0,
            high_watermark_seen: 0,
            id_next: 1,
            producers,
            producer_batches: HashMap::new(),
            predecessors: HashMap::new(),
            placed: HashMap::new(),
            trace: Vec::new(),
        }
    }

    fn note(&mut self, entry: String) {
        if std::env::var_os("SPATE_SIM_TRACE").is_some() {
            eprintln!("{entry}");
        }
        self.trace.push(entry);
    }

    fn errors_allowed(&self) -> bool {
        self.faults.error_ppm > 0 || self.no_space
    }

    /// Checks an error against the fault plan; corruption is never acceptable.
    fn allow_error(&self, error: &StorageError, during: &str) {
        match error {
            StorageError::Io { .. } | StorageError::NoSpace { .. } if self.errors_allowed() => {}
            other => panic!("unexpected error during {during}: {other}"),
        }
    }

    fn log(&self) -> Rc<Log> {
        self.log.clone().expect("the log is open")
    }

    fn run<T: 'static>(&mut self, future: impl std::future::Future<Output = T> + 'static) -> T {
        let seed = self.rng.gen();
        run_to_end_timed(seed, &self.clock, future)
    }

    /// Runs with injected errors and disk-full switched off (verification must not flake).
    fn run_without_faults<T: 'static>(
        &mut self,
        future: impl std::future::Future<Output = T> + 'static,
    ) -> T {
        self.disk.set_faults(FaultPlan {
            error_ppm: 0,
            short_write_ppm: 0,
            ..self.faults
        });
        self.disk.set_no_space(false);
        let result = self.run(future);
        self.disk.set_faults(self.faults);
        self.disk.set_no_space(self.no_space);
        result
    }

    fn open(&mut self) {
        for attempt in 0..12 {
            if attempt == 6 {
                // A persistently failing disk would block the test, not the engine: stop faults.
                self.disk.set_faults(FaultPlan {
                    error_ppm: 0,
                    short_write_ppm: 0,
                    ..self.faults
                });
                self.disk.set_no_space(false);
            }
            let files = self.files.clone();
            let clock: Rc<dyn Clock> = self.clock.clone();
            let config = self.config.clone();
            let opened = self
                .run(async move { PartitionLog::open(files, directory(), config, clock).await });
            match opened {
                Ok(log) => {
                    self.disk.set_faults(self.faults);
                    self.disk.set_no_space(self.no_space);
                    self.high_watermark_seen = log.high_watermark();
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

    fn new_batch(&mut self) -> BytesMut {
        let id = self.id_next;
        self.id_next += 1;
        let size_class = self.rng.gen_range(0..100);
        let total_bytes = match size_class {
            0..=69 => self.rng.gen_range(TEST_BATCH_BYTES_MIN..=512),
            70..=94 => self.rng.gen_range(513..=4096),
            _ => self.rng.gen_range(4097..=12_000),
        };
        let offset_count = self.rng.gen_range(1..=5);
        let max_timestamp = self.clock.now_ms() + self.rng.gen_range(-5_000..=5_000);
        let first_timestamp = max_timestamp - self.rng.gen_range(0..=100);
        let bytes = batch(
            id,
            offset_count,
            total_bytes,
            first_timestamp,
            max_timestamp,
        );
        self.originals.insert(id, bytes.clone().freeze());
        bytes
    }

    /// A new batch of producer `index`, next in its sequence; it joins the unacknowledged.
    fn new_producer_batch(&mut self, index: usize) -> BytesMut {
        let mut bytes = self.new_batch();
        let id = id_of(&bytes);
        let records = header_of(&bytes).record_count;
        let producer = &mut self.producers[index];
        let first_sequence = producer.next_sequence;
        stamp_producer(
            &mut bytes,
            producer.producer_id,
            producer.epoch,
            first_sequence,
        );
        producer.next_sequence = sequence_after(first_sequence, records);
        producer.unacknowledged.push_back(id);
        if let Some(previous) = producer.last_built.replace(id) {
            self.predecessors.insert(id, previous);
        }
        self.producer_batches.insert(
            id,
            ProducerFields {
                producer: index,
                epoch: producer.epoch,
                first_sequence,
                last_sequence: last_sequence(first_sequence, records),
            },
        );
        self.originals.insert(id, bytes.clone().freeze());
        bytes
    }

    /// The requests producer `index` sends now: maybe first a resend of an acknowledged batch,
    /// then its unacknowledged batches in order, maybe new ones (staying within the in-flight
    /// limit), split into up to [`PRODUCER_REQUESTS_MAX`] requests. `None` when it has nothing
    /// to send. With `new_allowed` false only retries go, all waiting for durability.
    fn producer_work(&mut self, index: usize, new_allowed: bool) -> Option<ProducerWork> {
        let log_start = self.log().log_start_offset();
        let producer = &mut self.producers[index];
        if new_allowed
            && producer.unacknowledged.is_empty()
            && producer.written.is_empty()
            && self.rng.gen_bool(0.03)
        {
            producer.epoch += 1;
            producer.next_sequence = 0;
            producer.acknowledged.clear();
            producer.last_built = None;
            let (producer_id, epoch) = (producer.producer_id, producer.epoch);
            self.note(format!("producer {producer_id} bumps its epoch to {epoch}"));
        }
        let producer = &self.producers[index];
        // Only a batch still in the log: past the log start the partition may forget the
        // producer, and then (as in Kafka) it cannot tell a resend from a new batch. And only
        // one known durable: a written one may be rolled back while its resend is in flight.
        let candidates: Vec<ProducerAcknowledged> = producer
            .acknowledged
            .iter()
            .filter(|acknowledged| {
                acknowledged.base_offset >= log_start
                    && !producer
                        .written
                        .iter()
                        .any(|written| written.id == acknowledged.id)
            })
            .copied()
            .collect();
        let resend = (new_allowed && !candidates.is_empty() && self.rng.gen_bool(0.2)).then(|| {
            let chosen = candidates[self.rng.gen_range(0..candidates.len())];
            (
                BytesMut::from(&self.originals[&chosen.id][..]),
                (chosen.base_offset, chosen.next_offset),
            )
        });
        // Written batches count as in flight: they may have to be resent, and a resend must
        // fall within the partition's retained window.
        let room = PRODUCER_IN_FLIGHT_MAX - producer.unacknowledged.len() - producer.written.len();
        let mut new_count = if new_allowed {
            self.rng.gen_range(0..=room.min(3))
        } else {
            0
        };
        if new_allowed && new_count == 0 && producer.unacknowledged.is_empty() && room > 0 {
            new_count = 1;
        }
        let mut batches: Vec<BytesMut> = producer
            .unacknowledged
            .iter()
            .map(|id| BytesMut::from(&self.originals[id][..]))
            .collect();
        for _ in 0..new_count {
            batches.push(self.new_producer_batch(index));
        }
        if batches.is_empty() && resend.is_none() {
            return None;
        }
        let producer = &self.producers[index];
        let sending: Vec<u64> = batches.iter().map(|bytes| id_of(bytes)).collect();
        self.note(format!(
            "producer {} epoch {} sends {sending:?} (unacknowledged {:?}, written {:?}, resend {:?}, log start {log_start}, entry {:?})",
            producer.producer_id,
            producer.epoch,
            producer.unacknowledged,
            producer.written.iter().map(|written| written.id).collect::<Vec<_>>(),
            resend.as_ref().map(|(bytes, offsets)| (id_of(bytes), *offsets)),
            self.log().producer_entry(producer.producer_id)
        ));
        let mut requests = Vec::new();
        if let Some((bytes, offsets)) = resend {
            requests.push(ProducerRequest {
                batches: vec![bytes],
                wait: AppendWait::Durable,
                acknowledged_at: Some(offsets),
                single_call: self.rng.gen_bool(0.5),
            });
        }
        // Cut the batches into consecutive requests, at most PRODUCER_REQUESTS_MAX in all.
        let mut remaining = batches.len();
        let mut batches = batches.into_iter();
        let first_request = requests.len();
        while remaining > 0 {
            let requests_left = PRODUCER_REQUESTS_MAX
                .saturating_sub(requests.len() - first_request)
                .max(1);
            let count = if requests_left == 1 {
                remaining
            } else {
                self.rng.gen_range(1..=remaining)
            };
            remaining -= count;
            let wait = if new_allowed && self.rng.gen_bool(PRODUCER_WRITTEN_PROBABILITY) {
                AppendWait::Written
            } else {
                AppendWait::Durable
            };
            requests.push(ProducerRequest {
                batches: batches.by_ref().take(count).collect(),
                wait,
                acknowledged_at: None,
                single_call: count == 1 && self.rng.gen_bool(0.5),
            });
        }
        Some(ProducerWork { requests })
    }

    fn append_round(&mut self, crash_midway: bool) {
        let log = self.log();
        let events = Rc::new(RefCell::new(Vec::new()));
        let mut simulator = Simulator::new(self.rng.gen());
        let tasks = self.rng.gen_range(1..=4);
        // One request per producer per round: a producer's requests arrive in order.
        let mut producers_sending = HashSet::new();
        for _ in 0..tasks {
            if self.rng.gen_bool(PRODUCER_TASK_PROBABILITY) {
                let index = self.rng.gen_range(0..PRODUCERS);
                if producers_sending.insert(index) {
                    if let Some(work) = self.producer_work(index, true) {
                        spawn_producer_work(&mut simulator, &log, &events, work);
                        continue;
                    }
                }
            }
            let count = self.rng.gen_range(1..=3);
            let mut work = Vec::new();
            for _ in 0..count {
                let wait = if self.rng.gen_bool(0.6) {
                    AppendWait::Durable
                } else {
                    AppendWait::Written
                };
                work.push((self.new_batch(), wait));
            }
            let log = log.clone();
            let events = events.clone();
            if self.rng.gen_bool(0.3) {
                // One call for all: Ok(Durable) must mean every batch of the call is durable.
                let wait = work[0].1;
                simulator.spawn(async move {
                    let ids: Vec<u64> = work.iter().map(|(bytes, _)| id_of(bytes)).collect();
                    let batches = work.into_iter().map(|(bytes, _)| bytes).collect();
                    let result = log.append_batches(batches, wait).await;
                    let mut events = events.borrow_mut();
                    match result {
                        Ok(outcomes) => {
                            for (id, outcome) in ids.into_iter().zip(outcomes) {
                                events.push(AppendEvent {
                                    id,
                                    wait,
                                    result: Ok(outcome),
                                    acknowledged_at: None,
                                });
                            }
                        }
                        Err(error) => {
                            for id in ids {
                                events.push(AppendEvent {
                                    id,
                                    wait,
                                    result: Err(error.clone()),
                                    acknowledged_at: None,
                                });
                            }
                        }
                    }
                });
                continue;
            }
            simulator.spawn(async move {
                for (bytes, wait) in work {
                    let event = append_one(&log, bytes, wait).await;
                    events.borrow_mut().push(event);
                }
            });
        }
        // The shard's timer writes recovery points while appends run; a crash midway interrupts
        // it at any step of the snapshot and checkpoint writes.
        let checkpoint_errors = Rc::new(RefCell::new(Vec::new()));
        if self.rng.gen_bool(0.5) {
            let force = self.rng.gen_bool(0.5);
            let log = log.clone();
            let errors = checkpoint_errors.clone();
            simulator.spawn(async move {
                if let Err(error) = log.checkpoint_recovery_point(force).await {
                    errors.borrow_mut().push(error);
                }
            });
        }
        drop(log);
        if crash_midway {
            let steps = self.rng.gen_range(1..=300);
            simulator.run(steps);
            simulator.abandon_all();
            let events = std::mem::take(&mut *events.borrow_mut());
            self.note(format!(
                "append round of {tasks} tasks, crashed after {steps} polls"
            ));
            self.apply_append_events(events);
            self.crash_and_reopen();
        } else {
            let unfinished = simulator.run_with_clock(&self.clock, 1_000_000);
            assert_eq!(unfinished, 0, "appends stalled: {}", self.log().describe());
            let events = std::mem::take(&mut *events.borrow_mut());
            self.note(format!("append round of {tasks} tasks"));
            self.apply_append_events(events);
        }
        for error in checkpoint_errors.borrow().iter() {
            self.allow_error(error, "recovery point");
        }
    }

    fn apply_append_events(&mut self, events: Vec<AppendEvent>) {
        // A refusal appends nothing and rolls nothing back.
        let any_error = events.iter().any(|event| {
            event
                .result
                .as_ref()
                .is_err_and(|error| !is_producer_refusal(error))
        });
        // Per producer: its batches acknowledged in this round (answers may come out of order).
        let mut producer_acknowledged: Vec<(u64, AppendWait, AppendOutcome)> = Vec::new();
        for event in events {
            let original = self.originals[&event.id].clone();
            if self.producer_batches.contains_key(&event.id) {
                if let Some(outcome) = self.apply_producer_event(&event, any_error) {
                    producer_acknowledged.push((event.id, event.wait, outcome));
                }
            }
            match event.result {
                Ok(outcome) => {
                    let header = header_of(&original);
                    assert_eq!(
                        outcome.next_offset - outcome.base_offset,
                        u64::from(header.offset_count)
                    );
                    if let Some(previous) = self
                        .acknowledged
                        .get(&outcome.base_offset)
                        .filter(|previous| previous.id != event.id)
                    {
                        assert!(
                            !previous.durable,
                            "offset {} reused after batch {} was durable",
                            outcome.base_offset, previous.id
                        );
                        assert!(
                            any_error,
                            "offset {} reused without any error",
                            outcome.base_offset
                        );
                    }
                    let durable = event.wait == AppendWait::Durable;
                    self.placed.insert(event.id, outcome.base_offset);
                    self.note(format!(
                        "ack {} at {}..{} {:?}",
                        event.id, outcome.base_offset, outcome.next_offset, event.wait
                    ));
                    self.acknowledged.insert(
                        outcome.base_offset,
                        Acknowledged {
                            id: event.id,
                            next_offset: outcome.next_offset,
                            durable,
                        },
                    );
                    if durable {
                        self.durable_next_offset =
                            self.durable_next_offset.max(outcome.next_offset);
                        if !any_error {
                            // One fdatasync covers the whole prefix.
                            for (_, entry) in self.acknowledged.range_mut(..outcome.base_offset) {
                                entry.durable = true;
                            }
                        }
                    }
                }
                Err(error) if is_producer_refusal(&error) => {
                    // Checked in `apply_producer_event`.
                    self.note(format!("append {} refused: {error}", event.id));
                }
                Err(error) => {
                    self.note(format!("append {} failed: {error}", event.id));
                    self.allow_error(&error, "append");
                }
            }
        }
        self.apply_producer_acknowledgements(producer_acknowledged);
        if any_error {
            self.forget_unsynced();
            self.place_durable_batches();
            self.reconcile_written();
        } else {
            self.settle_written();
        }
    }

    /// Takes a round's acknowledged producer batches out of their producers' unacknowledged
    /// ones, in sequence order (ids grow with sequences within an epoch).
    fn apply_producer_acknowledgements(
        &mut self,
        mut acknowledged: Vec<(u64, AppendWait, AppendOutcome)>,
    ) {
        acknowledged.sort_by_key(|(id, _, _)| *id);
        for (id, wait, outcome) in acknowledged {
            let producer = &mut self.producers[self.producer_batches[&id].producer];
            let position = producer
                .unacknowledged
                .iter()
                .position(|unacknowledged| *unacknowledged == id)
                .unwrap_or_else(|| {
                    panic!(
                        "producer {}: batch {id} acknowledged but not in flight",
                        producer.producer_id
                    )
                });
            producer.unacknowledged.remove(position);
            if wait == AppendWait::Durable {
                // Its earlier batches lie durable before it (the partition refuses a batch
                // after a gap, and the scan checks they are there): a crash may have cut their
                // answers off, but they are not resent.
                producer.unacknowledged.retain(|earlier| *earlier > id);
                producer.written.retain(|written| written.id > id);
            }
            let entry = ProducerAcknowledged {
                id,
                base_offset: outcome.base_offset,
                next_offset: outcome.next_offset,
            };
            producer.acknowledged.push_back(entry);
            producer
                .acknowledged
                .make_contiguous()
                .sort_by_key(|acknowledged| acknowledged.id);
            if producer.acknowledged.len() > PRODUCER_BATCHES_RETAINED {
                producer.acknowledged.pop_front();
            }
            if wait == AppendWait::Written {
                producer.written.push_back(entry);
                producer
                    .written
                    .make_contiguous()
                    .sort_by_key(|written| written.id);
            }
        }
    }

    /// Written producer batches below the durable end are durable (no error since they were
    /// acknowledged, or they would have been taken back).
    fn settle_written(&mut self) {
        let durable_next_offset = self.durable_next_offset;
        for producer in &mut self.producers {
            producer
                .written
                .retain(|written| written.next_offset > durable_next_offset);
        }
    }

    /// Records where every durable batch lies. After an error a batch whose append failed may
    /// still be in the log (an earlier batch of a call that failed later, durable): its place
    /// must be known before retention may delete it, for the sequence check of [`Case::scan`].
    fn place_durable_batches(&mut self) {
        let log = self.log();
        let from = log.log_start_offset();
        let batches = self
            .run_without_faults(async move { read_all(&log, from, 64 * 1024).await })
            .unwrap_or_else(|error| panic!("reading the durable log failed: {error}"));
        for stored in &batches {
            self.placed
                .insert(id_of(stored), header_of(stored).base_offset);
        }
    }

    /// After an error or a crash a written batch not known durable may be gone. One found in
    /// the durable log at its offsets is durable; any other is resent by its producer (in
    /// sequence order, before its unacknowledged batches), as a producer told of the loss
    /// would.
    fn reconcile_written(&mut self) {
        let log = self.log();
        let log_start = log.log_start_offset();
        let high_watermark = log.high_watermark();
        let checked: Vec<ProducerAcknowledged> = self
            .producers
            .iter()
            .flat_map(|producer| producer.written.iter().copied())
            .filter(|written| {
                written.base_offset >= log_start && written.next_offset <= high_watermark
            })
            .collect();
        let reader = log.clone();
        let found: HashSet<u64> = self
            .run_without_faults(async move {
                let mut found = HashSet::new();
                for written in checked {
                    let read = reader.read(written.base_offset, 1).await?;
                    if read.batches.first().is_some_and(|stored| {
                        id_of(stored) == written.id
                            && header_of(stored).base_offset == written.base_offset
                    }) {
                        found.insert(written.id);
                    }
                }
                Ok::<_, StorageError>(found)
            })
            .unwrap_or_else(|error| panic!("reading written batches failed: {error}"));
        for producer in &mut self.producers {
            // Below the log start it was durable: only durable data is ever deleted.
            let lost: Vec<u64> = producer
                .written
                .drain(..)
                .filter(|written| written.base_offset >= log_start && !found.contains(&written.id))
                .map(|written| written.id)
                .collect();
            if lost.is_empty() {
                continue;
            }
            producer
                .acknowledged
                .retain(|acknowledged| !lost.contains(&acknowledged.id));
            producer.unacknowledged.extend(lost);
            producer.unacknowledged.make_contiguous().sort_unstable();
        }
    }

    /// Checks an answer to a producer batch against what the producer knows. Returns the
    /// outcome of a batch newly acknowledged (not a resend of an acknowledged one).
    fn apply_producer_event(
        &mut self,
        event: &AppendEvent,
        any_error: bool,
    ) -> Option<AppendOutcome> {
        let fields = self.producer_batches[&event.id];
        let log_start = self.log().log_start_offset();
        let producer = &mut self.producers[fields.producer];
        let producer_id = producer.producer_id;
        match (&event.result, event.acknowledged_at) {
            (Ok(outcome), Some(original)) => {
                assert_eq!(
                    (outcome.base_offset, outcome.next_offset),
                    original,
                    "producer {producer_id}: a resend of acknowledged batch {} got other offsets",
                    event.id
                );
                None
            }
            (Ok(outcome), None) => {
                // A retry of a batch the log still holds must be answered with its offsets.
                if let Some((offset, _)) = self.acknowledged.iter().find(|(offset, entry)| {
                    entry.id == event.id
                        && entry.next_offset > log_start
                        && **offset != outcome.base_offset
                }) {
                    panic!(
                        "producer {producer_id}: batch {} appended again at {} while the log holds it at {offset}",
                        event.id, outcome.base_offset
                    );
                }
                Some(*outcome)
            }
            (Err(StorageError::DuplicateSequence { .. }), Some(_)) => {
                // Acknowledged, but out of the partition's window: known old, offsets forgotten.
                None
            }
            (Err(StorageError::OutOfOrderSequence { .. }), _) if any_error => {
                // An earlier request of the producer failed (rolled back, or never appended)
                // before this one arrived: the gap is refused, and the producer resends both
                // in order.
                None
            }
            (Err(error), _) if is_producer_refusal(error) => panic!(
                "producer {producer_id} epoch {} batch {} (sequences {}..={}) refused: {error}",
                fields.epoch, event.id, fields.first_sequence, fields.last_sequence
            ),
            (Err(_), _) => None,
        }
    }

    /// Resends every producer's unacknowledged batches with faults and disk-full off: each
    /// must be acknowledged, none refused.
    fn finish_producers(&mut self) {
        self.disk.set_faults(FaultPlan {
            error_ppm: 0,
            short_write_ppm: 0,
            ..self.faults
        });
        let log = self.log();
        let events = Rc::new(RefCell::new(Vec::new()));
        let mut simulator = Simulator::new(self.rng.gen());
        for index in 0..PRODUCERS {
            if let Some(work) = self.producer_work(index, false) {
                spawn_producer_work(&mut simulator, &log, &events, work);
            }
        }
        drop(log);
        let unfinished = simulator.run_with_clock(&self.clock, 1_000_000);
        assert_eq!(unfinished, 0, "retries stalled: {}", self.log().describe());
        let events = std::mem::take(&mut *events.borrow_mut());
        self.note(format!("producers resend {} batches", events.len()));
        for event in &events {
            if let Err(error) = &event.result {
                panic!("a retry on a healthy disk failed: {error}");
            }
        }
        self.apply_append_events(events);
        for producer in &self.producers {
            assert!(
                producer.unacknowledged.is_empty(),
                "producer {} left batches unacknowledged",
                producer.producer_id
            );
        }
        self.disk.set_faults(self.faults);
    }

    /// After an error, acknowledged batches that were not durable may have been rolled back.
    fn forget_unsynced(&mut self) {
        self.acknowledged.retain(|_, entry| entry.durable);
    }

    fn crash_and_reopen(&mut self) {
        let process_only = self.rng.gen_bool(0.3);
        self.restart(process_only);
    }

    fn restart(&mut self, process_only: bool) {
        self.log = None;
        if process_only {
            // The process dies but the machine stays up: unsynced writes remain readable.
            self.note("process crash".into());
            self.disk.restart_process();
        } else {
            self.note("power loss".into());
            self.disk.crash();
        }
        self.forget_unsynced();
        self.open();
        self.verify_after_open();
    }

    fn close_and_reopen(&mut self) {
        let log = Rc::try_unwrap(self.log.take().expect("open"))
            .ok()
            .expect("no task holds the log");
        let closed = self.run(async move { log.close().await });
        match closed {
            Ok(()) => {
                self.note("close".into());
                for entry in self.acknowledged.values_mut() {
                    entry.durable = true;
                }
                if let Some(last) = self.acknowledged.values().last() {
                    self.durable_next_offset = self.durable_next_offset.max(last.next_offset);
                }
                self.settle_written();
                if self.rng.gen_bool(0.5) {
                    self.disk.crash();
                }
            }
            Err(error) => {
                self.note(format!("close failed: {error}"));
                self.allow_error(&error, "close");
                self.disk.crash();
                self.forget_unsynced();
            }
        }
        self.open();
        self.verify_after_open();
    }

    /// Draws one kind of operator damage to the partition's files as they are now (closed).
    fn draw_damage(&mut self) -> Damage {
        let paths: Vec<PathBuf> = self
            .disk
            .file_paths()
            .into_iter()
            .filter(|path| path.parent() == Some(directory().as_path()))
            .filter(|path| !file_name(path).ends_with(".tmp"))
            .collect();
        let logs: Vec<&PathBuf> = paths
            .iter()
            .filter(|path| file_name(path).ends_with(".log"))
            .collect();
        let closed_logs = &logs[..logs.len().saturating_sub(1)];
        let length_of = |path: &PathBuf| self.disk.file_bytes(path).map_or(0, |bytes| bytes.len());
        let choice = self.rng.gen_range(0..100);
        if choice < 35 {
            let candidates: Vec<&PathBuf> = closed_logs
                .iter()
                .copied()
                .filter(|path| length_of(path) > 0)
                .collect();
            if !candidates.is_empty() {
                let path = candidates[self.rng.gen_range(0..candidates.len())].clone();
                let position = self.rng.gen_range(0..length_of(&path));
                return Damage::FlipClosedLog { path, position };
            }
        }
        if choice < 50 {
            for suffix in [".index", ".timeindex"] {
                let indexes: Vec<&PathBuf> = paths
                    .iter()
                    .filter(|path| file_name(path).ends_with(suffix) && length_of(path) > 0)
                    .collect();
                if indexes.len() >= 2 {
                    let path = indexes[self.rng.gen_range(0..indexes.len())].clone();
                    let from = indexes[self.rng.gen_range(0..indexes.len())].clone();
                    if from != path {
                        return Damage::StaleIndex { path, from };
                    }
                }
            }
        }
        let path = paths[self.rng.gen_range(0..paths.len())].clone();
        let length = length_of(&path);
        if choice < 75 || length == 0 {
            Damage::Delete { path }
        } else {
            // Files are written in whole blocks: half the cuts go into the first bytes, where
            // a checkpoint's or snapshot's contents lie.
            let cut_below = if self.rng.gen_bool(0.5) {
                length.min(64)
            } else {
                length
            };
            let length = self.rng.gen_range(0..cut_below) as u64;
            Damage::Truncate { path, length }
        }
    }

    /// Closes the log cleanly, plants one piece of operator damage, reopens (a restart: the
    /// open-file cache starts empty) and checks the outcome against the model: the open fails
    /// with a typed refusal (the partition goes offline), or every record that was acknowledged
    /// is served byte for byte or, only for a flipped byte in a closed segment, reported as a
    /// `CorruptBatch` naming a range that holds it. Nothing else is served, no read stalls, and
    /// the next append never gets an offset that was acknowledged before.
    fn damage_and_check(&mut self) {
        let log = Rc::try_unwrap(self.log.take().expect("open"))
            .ok()
            .expect("no task holds the log");
        let log_start_before = log.log_start_offset();
        self.run_without_faults(async move { log.close().await })
            .unwrap_or_else(|error| panic!("close on a healthy disk failed: {error}"));
        let damage = self.draw_damage();
        let segment_logs: Vec<PathBuf> = self
            .disk
            .file_paths()
            .into_iter()
            .filter(|path| path.parent() == Some(directory().as_path()))
            .filter(|path| file_name(path).ends_with(".log"))
            .collect();
        // The oldest of several segments deleted: the records before the next one are lost,
        // and the open must say so (the checkpoint names the earlier start).
        let oldest_of_several_deleted = segment_logs.len() >= 2
            && matches!(&damage, Damage::Delete { path } if *path == segment_logs[0]);
        self.note(format!("operator damage: {damage:?}"));
        match &damage {
            Damage::FlipClosedLog { path, position } => {
                let bytes = self.disk.file_bytes(path).expect("the segment exists");
                self.disk
                    .overwrite_durably(path, *position as u64, &[!bytes[*position]]);
            }
            Damage::Delete { path } => {
                let disk = self.disk.clone();
                let path = path.clone();
                self.run_without_faults(async move { disk.remove_file(&path).await })
                    .unwrap_or_else(|error| panic!("removing a file failed: {error}"));
            }
            Damage::Truncate { path, length } => self.disk.set_length_durably(path, *length),
            Damage::StaleIndex { path, from } => {
                let bytes = self.disk.file_bytes(from).expect("the other index exists");
                self.disk.set_length_durably(path, 0);
                self.disk.overwrite_durably(path, 0, &bytes);
            }
        }
        self.files = Rc::new(CachedFileSystem::new((*self.disk).clone(), 4));
        self.faults = FaultPlan {
            error_ppm: 0,
            short_write_ppm: 0,
            ..self.faults
        };
        self.disk.set_faults(self.faults);
        let files = self.files.clone();
        let clock: Rc<dyn Clock> = self.clock.clone();
        let config = self.config.clone();
        let opened =
            self.run(async move { PartitionLog::open(files, directory(), config, clock).await });
        if oldest_of_several_deleted {
            assert!(
                matches!(opened, Err(StorageError::LostOldestSegments { .. })),
                "the open after {damage:?} did not report the lost oldest segment: {:?}",
                opened.as_ref().err()
            );
        }
        let log = match opened {
            Ok(log) => Rc::new(log),
            Err(error) => {
                self.note(format!("open refused: {error}"));
                assert!(
                    !damage.must_be_repaired(),
                    "{damage:?} must be repaired at open, but the open failed: {error}"
                );
                assert!(
                    is_damage_refusal(&error),
                    "an open after {damage:?} failed with an untyped error: {error}"
                );
                return;
            }
        };
        assert!(
            log.next_offset() >= self.durable_next_offset,
            "after {damage:?} the log ends at {} below the acknowledged {}: offsets would be reused",
            log.next_offset(),
            self.durable_next_offset
        );
        let reported = self.scan_reporting_damage(&log, &damage);
        let log_start = log.log_start_offset();
        // With the oldest segment's `.log` deleted, the open must refuse (the `log-start-offset`
        // checkpoint names an earlier start); it never moves the log start forward in silence.
        assert!(
            log_start <= log_start_before,
            "after {damage:?} the log start moved from {log_start_before} to {log_start}"
        );
        let high_watermark = log.high_watermark();
        for (offset, entry) in self.acknowledged.range(log_start_before..high_watermark) {
            let served = reported.served.get(offset) == Some(&entry.id);
            let covered = reported
                .ranges
                .iter()
                .any(|(first, after)| *first < entry.next_offset && *offset < *after);
            assert!(
                served || covered,
                "after {damage:?} batch {} at {offset} is neither served nor reported",
                entry.id
            );
        }
        if let Some(last) = self.acknowledged.values().last() {
            assert!(
                high_watermark >= last.next_offset,
                "after {damage:?} acknowledged offsets up to {} are no longer in the log (it ends at {high_watermark})",
                last.next_offset
            );
        }
        // The next append lands past everything acknowledged.
        let bytes = self.new_batch();
        let appender = log.clone();
        let outcome = self
            .run(async move { appender.append(bytes, AppendWait::Durable).await })
            .unwrap_or_else(|error| panic!("an append after {damage:?} failed: {error}"));
        assert!(
            outcome.base_offset >= self.durable_next_offset,
            "after {damage:?} an append reused offset {} (acknowledged up to {})",
            outcome.base_offset,
            self.durable_next_offset
        );
    }

    /// Reads the whole log from its start, stepping over what reads report as damaged.
    fn scan_reporting_damage(&mut self, log: &Rc<Log>, damage: &Damage) -> DamageScan {
        let mut scan = DamageScan::default();
        let mut offset = log.log_start_offset();
        let high_watermark = log.high_watermark();
        while offset < high_watermark {
            let max_bytes = self.rng.gen_range(1..=40_000);
            let reader = log.clone();
            match self.run(async move { reader.read(offset, max_bytes).await }) {
                Ok(read) => {
                    assert!(
                        !read.batches.is_empty(),
                        "a read below the high watermark returns a batch"
                    );
                    for stored in &read.batches {
                        let header = header_of(stored);
                        assert!(
                            (header.base_offset <= offset && offset < header.next_offset())
                                || header.base_offset == offset,
                            "after {damage:?} a read at {offset} served offset {}",
                            header.base_offset
                        );
                        let id = id_of(stored);
                        let original = self.originals.get(&id).unwrap_or_else(|| {
                            panic!("after {damage:?} a read served a batch no append handed in")
                        });
                        assert!(
                            same_batch(stored, original),
                            "after {damage:?} a read served altered bytes at {}",
                            header.base_offset
                        );
                        if let Some(entry) = self.acknowledged.get(&header.base_offset) {
                            assert_eq!(
                                entry.id, id,
                                "after {damage:?} another batch is served at {}",
                                header.base_offset
                            );
                        }
                        scan.served.insert(header.base_offset, id);
                        offset = header.next_offset();
                    }
                }
                Err(StorageError::CorruptBatch {
                    offset: first,
                    readable_from,
                    ..
                }) => {
                    assert!(
                        matches!(damage, Damage::FlipClosedLog { .. }),
                        "{damage:?} must not make a batch unreadable (at {offset})"
                    );
                    assert!(
                        first <= offset && offset < readable_from,
                        "a corrupt batch report [{first}, {readable_from}) for a read at {offset}"
                    );
                    self.note(format!("reported damaged: [{first}, {readable_from})"));
                    scan.ranges.push((first, readable_from));
                    offset = readable_from;
                }
                Err(error) => panic!("a read at {offset} after {damage:?} failed: {error}"),
            }
        }
        scan
    }

    /// Reads the whole log and checks it against the model; returns the batches by offset.
    fn scan(&mut self) -> Vec<(u64, Bytes)> {
        let log = self.log();
        let from = log.log_start_offset();
        let max_bytes = self.rng.gen_range(1..=40_000);
        let batches = self
            .run_without_faults(async move { read_all(&log, from, max_bytes).await })
            .unwrap_or_else(|error| panic!("scan failed: {error}"));
        let log = self.log();
        let mut expected_offset = from;
        let mut seen_ids = HashSet::new();
        // Per producer: the epoch and last sequence of its previous batch in the log.
        let mut producer_last: HashMap<usize, (i16, i32)> = HashMap::new();
        let mut found = Vec::new();
        for (index, stored) in batches.iter().enumerate() {
            let header = header_of(stored);
            if index == 0 {
                assert!(
                    header.base_offset <= from && from < header.next_offset(),
                    "first batch holds the start"
                );
            } else {
                assert_eq!(
                    header.base_offset, expected_offset,
                    "offsets are contiguous"
                );
            }
            let id = id_of(stored);
            let original = self
                .originals
                .get(&id)
                .unwrap_or_else(|| panic!("served a batch no append handed in (id {id})"));
            assert!(
                same_batch(stored, original),
                "batch {id} differs from what was appended"
            );
            assert!(seen_ids.insert(id), "batch {id} appears twice");
            if let Some(fields) = self.producer_batches.get(&id) {
                if !producer_last.contains_key(&fields.producer) {
                    // The producer's first batch in the log: the batch before it in its
                    // sequence, if any, must have been stored before it and deleted since.
                    if let Some(previous) = self.predecessors.get(&id) {
                        assert!(
                            self.placed
                                .get(previous)
                                .is_some_and(|offset| *offset < header.base_offset && *offset < from),
                            "producer batch {id} (epoch {}, sequences {}..={}) is stored at {} without the batch before it in its sequence ({previous}, last known at {:?}, log start {from}): a later batch landed ahead of a lost one",
                            fields.epoch,
                            fields.first_sequence,
                            fields.last_sequence,
                            header.base_offset,
                            self.placed.get(previous)
                        );
                    }
                }
                if let Some((epoch, last)) = producer_last.get(&fields.producer) {
                    assert!(
                        fields.epoch >= *epoch,
                        "producer batch {id} of epoch {} after epoch {epoch}",
                        fields.epoch
                    );
                    let expected = if fields.epoch == *epoch {
                        sequence_after(*last, 1)
                    } else {
                        0
                    };
                    assert_eq!(
                        fields.first_sequence, expected,
                        "producer batch {id} does not continue its producer's sequence"
                    );
                }
                producer_last.insert(fields.producer, (fields.epoch, fields.last_sequence));
            }
            expected_offset = header.next_offset();
            found.push((header.base_offset, stored.clone()));
        }
        // What lies from the log start to the high watermark is exactly what the scan found
        // (past it lie written batches not yet durable, as they were acknowledged).
        let high_watermark = log.high_watermark();
        self.placed
            .retain(|_, offset| *offset < from || *offset >= high_watermark);
        for (offset, stored) in &found {
            self.placed.insert(id_of(stored), *offset);
        }
        assert_eq!(
            expected_offset.max(from),
            log.high_watermark(),
            "a scan ends at the high watermark"
        );
        found
    }

    /// Full check of the log against the model, then adopt what the log holds (all of it is
    /// durable: it lies below the high watermark).
    fn verify(&mut self) {
        let log = self.log();
        let log_start = log.log_start_offset();
        let high_watermark = log.high_watermark();
        assert!(
            log_start >= self.log_start_floor,
            "log start went back: {log_start} < {}",
            self.log_start_floor
        );
        assert!(
            high_watermark >= self.high_watermark_seen,
            "high watermark went back"
        );
        assert!(
            log.next_offset() >= self.durable_next_offset,
            "log end below durable data"
        );
        self.high_watermark_seen = high_watermark;
        let found = self.scan();
        let by_offset: HashMap<u64, u64> = found
            .iter()
            .map(|(offset, bytes)| (*offset, id_of(bytes)))
            .collect();
        for (offset, entry) in self.acknowledged.range(log_start..) {
            if entry.durable || *offset < high_watermark {
                if *offset >= high_watermark {
                    panic!(
                        "durable batch {} at {offset} is past the high watermark {high_watermark}",
                        entry.id
                    );
                }
                match by_offset.get(offset) {
                    Some(id) if *id == entry.id => {}
                    other if entry.durable => {
                        panic!(
                            "durable batch {} at {offset} lost; found {other:?}",
                            entry.id
                        )
                    }
                    other => panic!(
                        "acknowledged batch {} at {offset} replaced by {other:?} without an error",
                        entry.id
                    ),
                }
            }
        }
        self.check_timestamp_lookups(&found, log_start);
        self.acknowledged = found
            .iter()
            .map(|(offset, bytes)| {
                let header = header_of(bytes);
                (
                    *offset,
                    Acknowledged {
                        id: id_of(bytes),
                        next_offset: header.next_offset(),
                        durable: true,
                    },
                )
            })
            .chain(
                // Acknowledged but not yet durable batches past the high watermark stay known.
                self.acknowledged
                    .range(high_watermark..)
                    .map(|(offset, entry)| (*offset, *entry)),
            )
            .collect();
        self.durable_next_offset = self.durable_next_offset.max(high_watermark);
        self.settle_written();
    }

    fn verify_after_open(&mut self) {
        let log = self.log();
        assert_eq!(
            log.high_watermark(),
            log.next_offset(),
            "everything recovered is durable"
        );
        // A crash may lose unsynced data, so the high watermark seen before it does not bind.
        self.high_watermark_seen = 0;
        self.reconcile_written();
        self.verify();
    }

    fn check_timestamp_lookups(&mut self, found: &[(u64, Bytes)], log_start: u64) {
        for _ in 0..3 {
            let target = self.clock.now_ms() + self.rng.gen_range(-8_000..=8_000);
            let expected = found.iter().find_map(|(_, bytes)| {
                let header = header_of(bytes);
                (header.max_timestamp >= target && header.next_offset() > log_start)
                    .then(|| header.base_offset.max(log_start))
            });
            let log = self.log();
            let answer = self
                .run_without_faults(async move { log.offset_for_timestamp(target).await })
                .unwrap_or_else(|error| panic!("timestamp lookup failed: {error}"));
            assert_eq!(answer, expected, "offset for timestamp {target}");
        }
    }

    fn random_read(&mut self) {
        let log = self.log();
        let log_start = log.log_start_offset();
        let high_watermark = log.high_watermark();
        if high_watermark > log_start {
            let offset = self.rng.gen_range(log_start..high_watermark);
            let max_bytes = self.rng.gen_range(1..=20_000);
            let reader = log.clone();
            match self.run(async move { reader.read(offset, max_bytes).await }) {
                Ok(read) => {
                    assert!(
                        !read.batches.is_empty(),
                        "a read below the high watermark returns a batch"
                    );
                    let mut expected = None;
                    for stored in &read.batches {
                        let header = header_of(stored);
                        match expected {
                            None => assert!(
                                header.base_offset <= offset && offset < header.next_offset()
                            ),
                            Some(next) => assert_eq!(header.base_offset, next),
                        }
                        assert!(header.next_offset() <= read.high_watermark);
                        let id = id_of(stored);
                        assert!(
                            same_batch(stored, &self.originals[&id]),
                            "read served altered bytes"
                        );
                        if let Some(entry) = self.acknowledged.get(&header.base_offset) {
                            assert_eq!(
                                entry.id, id,
                                "read disagrees with acknowledged batch at {}",
                                header.base_offset
                            );
                        }
                        expected = Some(header.next_offset());
                    }
                }
                Err(error) => self.allow_error(&error, "read"),
            }
        }
        let reader = log.clone();
        let past_end = log.next_offset() + 1;
        let below_start = log_start.checked_sub(1);
        let (past, below) = self.run(async move {
            let past = reader.read(past_end, 100).await;
            let below = match below_start {
                Some(offset) => Some(reader.read(offset, 100).await),
                None => None,
            };
            (past, below)
        });
        assert!(
            matches!(past, Err(StorageError::OffsetOutOfRange { .. })),
            "read past the end: {past:?}"
        );
        if let Some(below) = below {
            assert!(
                matches!(below, Err(StorageError::OffsetOutOfRange { .. })),
                "read below the start"
            );
        }
    }

    /// Draws whether the next maintenance operation (delete-records, retention) is cut short
    /// by a power loss, and after how many disk operations: anywhere between its checkpoint
    /// write and its segment removals (FORMAT.md: the checkpoint is durable before the first
    /// removal, so a reopen never finds the oldest segment past the checkpointed start).
    fn maybe_stop_midway(&mut self) -> Option<u64> {
        let operations = self.rng.gen_bool(0.25).then(|| self.rng.gen_range(0..24));
        if let Some(operations) = operations {
            self.disk.stop_after_operations(operations);
        }
        operations
    }

    /// The power loss after a maintenance operation stopped midway: whatever it reached is
    /// checked by the reopen (which must not report lost data) and the verification after it.
    fn crash_after_stop(&mut self, what: &str, operations: u64, new_start: Option<u64>) {
        self.note(format!(
            "{what} stopped after {operations} disk operations (new start {new_start:?}); power loss"
        ));
        if let Some(new_start) = new_start {
            // Returned: its checkpoint is durable.
            self.log_start_floor = self.log_start_floor.max(new_start);
        }
        self.restart(false);
    }

    fn delete_records(&mut self) {
        let log = self.log();
        let log_start = log.log_start_offset();
        let high_watermark = log.high_watermark();
        let target = self.rng.gen_range(log_start..=high_watermark);
        let deleter = log.clone();
        let stop = self.maybe_stop_midway();
        let result = self.run(async move { deleter.delete_records(target).await });
        if let Some(operations) = stop {
            drop(log);
            self.crash_after_stop("delete records", operations, result.ok());
            return;
        }
        match result {
            Ok(new_start) => {
                self.note(format!("delete records before {target}"));
                assert_eq!(new_start, target.max(log_start));
                self.log_start_floor = self.log_start_floor.max(new_start);
            }
            Err(error) => {
                self.note(format!("delete records failed: {error}"));
                self.allow_error(&error, "delete records");
            }
        }
        assert!(log.log_start_offset() >= log_start);
    }

    fn retention(&mut self) {
        let advance_ms = self.rng.gen_range(0..=20_000);
        self.clock.advance(Duration::from_millis(advance_ms));
        let log = self.log();
        let log_start = log.log_start_offset();
        let retainer = log.clone();
        let stop = self.maybe_stop_midway();
        let result = self.run(async move { retainer.enforce_retention().await });
        if let Some(operations) = stop {
            drop(log);
            let new_start = result.ok().map(|outcome| outcome.log_start_offset);
            self.crash_after_stop("retention", operations, new_start);
            return;
        }
        match result {
            Ok(outcome) => {
                self.note(format!(
                    "retention deleted {} segments",
                    outcome.segments_deleted
                ));
                assert!(outcome.log_start_offset >= log_start);
                assert!(log.segment_count() >= 1);
                self.log_start_floor = self.log_start_floor.max(outcome.log_start_offset);
            }
            Err(error) => {
                self.note(format!("retention failed: {error}"));
                self.allow_error(&error, "retention");
            }
        }
    }

    fn sync(&mut self) {
        let log = self.log();
        let explicit = self.rng.gen_bool(0.5);
        let syncer = log.clone();
        let result = self.run(async move {
            if explicit {
                syncer.sync().await.map(|()| true)
            } else {
                syncer.sync_if_due().await
            }
        });
        match result {
            Ok(true) if explicit => {
                self.note("sync".into());
                for entry in self.acknowledged.values_mut() {
                    entry.durable = true;
                }
                if let Some(last) = self.acknowledged.values().last() {
                    self.durable_next_offset = self.durable_next_offset.max(last.next_offset);
                }
                self.settle_written();
            }
            Ok(_) => {}
            Err(error) => {
                self.note(format!("sync failed: {error}"));
                self.allow_error(&error, "sync");
                self.forget_unsynced();
                self.reconcile_written();
            }
        }
    }

    fn step(&mut self) {
        match self.rng.gen_range(0..100) {
            0..=39 => self.append_round(false),
            40..=44 => self.append_round(true),
            45..=54 => self.random_read(),
            55..=59 => self.delete_records(),
            60..=66 => self.retention(),
            67..=72 => self.sync(),
            73..=76 => self.crash_and_reopen(),
            77..=79 => self.close_and_reopen(),
            80..=83 => {
                self.no_space = !self.no_space;
                self.note(format!("disk full: {}", self.no_space));
                self.disk.set_no_space(self.no_space);
            }
            84..=89 => {
                let advance_ms = self.rng.gen_range(0..=500);
                self.clock.advance(Duration::from_millis(advance_ms));
            }
            _ => self.verify(),
        }
    }
}

/// Appends one batch on its own and records what the log answered. The caller pushes the event:
/// no borrow of the shared event list may be held across the append's await.
async fn append_one(log: &Log, bytes: BytesMut, wait: AppendWait) -> AppendEvent {
    let id = id_of(&bytes);
    let result = log.append(bytes, wait).await;
    AppendEvent {
        id,
        wait,
        result,
        acknowledged_at: None,
    }
}

/// Spawns a producer's requests, one task each, sent in order (see [`ArrivalOrder`]).
fn spawn_producer_work(
    simulator: &mut Simulator,
    log: &Rc<Log>,
    events: &Rc<RefCell<Vec<AppendEvent>>>,
    work: ProducerWork,
) {
    let order = Rc::new(ArrivalOrder::default());
    for (turn, request) in work.requests.into_iter().enumerate() {
        simulator.spawn(producer_request(
            log.clone(),
            events.clone(),
            order.clone(),
            turn,
            request,
        ));
    }
}

/// Sends one producer request once the previous one has reached the log, and records the
/// answer for each of its batches.
async fn producer_request(
    log: Rc<Log>,
    events: Rc<RefCell<Vec<AppendEvent>>>,
    order: Rc<ArrivalOrder>,
    turn: usize,
    request: ProducerRequest,
) {
    order.wait_for(turn).await;
    let ids: Vec<u64> = request.batches.iter().map(|bytes| id_of(bytes)).collect();
    let wait = request.wait;
    let mut call: std::pin::Pin<
        Box<dyn Future<Output = Result<Vec<AppendOutcome>, StorageError>>>,
    > = if request.single_call {
        let bytes = request.batches.into_iter().next().expect("one batch");
        let log = log.clone();
        Box::pin(async move { log.append(bytes, wait).await.map(|outcome| vec![outcome]) })
    } else {
        let log = log.clone();
        Box::pin(async move { log.append_batches(request.batches, wait).await })
    };
    // The first poll is where the log admits the call (or queues it in arrival order).
    let first = poll_fn(|context| Poll::Ready(call.as_mut().poll(context))).await;
    order.hand_on();
    let result = match first {
        Poll::Ready(result) => result,
        Poll::Pending => call.await,
    };
    let mut events = events.borrow_mut();
    for (index, id) in ids.into_iter().enumerate() {
        let result = match &result {
            Ok(outcomes) => Ok(outcomes[index]),
            Err(error) => Err(error.clone()),
        };
        events.push(AppendEvent {
            id,
            wait,
            result,
            acknowledged_at: request.acknowledged_at,
        });
    }
}

fn run_case(seed: u64) {
    run_case_with(seed, false);
}

/// Runs one case; with `damaged`, a shorter one that ends in operator damage
/// ([`Case::damage_and_check`]).
fn run_case_with(seed: u64, damaged: bool) {
    let mut case = Case::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        case.open();
        let steps = if damaged {
            case.rng.gen_range(10..=40)
        } else {
            case.rng.gen_range(20..=60)
        };
        for _ in 0..steps {
            case.step();
        }
        // Finish on a healthy disk: everything acknowledged durable must be there.
        case.no_space = false;
        case.disk.set_no_space(false);
        case.finish_producers();
        case.restart(false);
        if damaged {
            case.damage_and_check();
        }
    }));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_default();
        let trace: Vec<&String> = case.trace.iter().rev().take(25).collect();
        panic!(
            "simulation failed for seed {seed}{} (rerun: {}={seed}): {message}\nconfig: {:?}\nfaults: {:?}\nlast operations (newest first): {trace:#?}",
            if damaged { " with operator damage" } else { "" },
            if damaged { "SPATE_SIM_DAMAGE_SEED" } else { "SPATE_SIM_SEED" },
            case.config, case.faults
        );
    }
}

fn cases_total() -> u64 {
    std::env::var("SPATE_SIM_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(CASES_DEFAULT)
}

/// Runs the cases of one half (`part` 0 or 1), or only `SPATE_SIM_SEED` if set (in part 0).
fn run_part(part: u64) {
    if let Some(seed) = std::env::var("SPATE_SIM_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        if part == 0 {
            run_case(seed);
        }
        return;
    }
    let base_seed = std::env::var("SPATE_SIM_BASE_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(BASE_SEED);
    for case in (part..cases_total()).step_by(2) {
        run_case(base_seed + case);
    }
}

/// Runs the operator damage cases (`SPATE_SIM_DAMAGE_CASES`), or only `SPATE_SIM_DAMAGE_SEED`.
fn run_damage_cases() {
    if let Some(seed) = std::env::var("SPATE_SIM_DAMAGE_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
    {
        run_case_with(seed, true);
        return;
    }
    if std::env::var_os("SPATE_SIM_SEED").is_some() {
        return;
    }
    let cases = std::env::var("SPATE_SIM_DAMAGE_CASES")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DAMAGE_CASES_DEFAULT);
    let base_seed = std::env::var("SPATE_SIM_BASE_SEED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(DAMAGE_BASE_SEED);
    for case in 0..cases {
        run_case_with(base_seed + case, true);
    }
}

#[test]
fn seeded_runs_with_operator_damage_serve_or_report_every_acknowledged_record() {
    run_damage_cases();
}

#[test]
fn seeded_runs_keep_every_durable_batch_first_half() {
    run_part(0);
}

#[test]
fn seeded_runs_keep_every_durable_batch_second_half() {
    run_part(1);
}
