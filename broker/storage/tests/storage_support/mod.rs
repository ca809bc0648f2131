//! Helpers shared by the storage tests: hand-built batches (header via `BatchHeader::encode`,
//! payload format 1, seeded payload bytes, real CRC; from a non-idempotent producer unless
//! built with [`producer_batch`]), a tiny deterministic executor that interleaves tasks in a
//! seeded order, and the in-memory disk and manual clock a partition log test opens its log on
//! ([`Setup`], [`small_config`]). Not a test file itself.

#![allow(dead_code)] // Each test crate uses a different subset.

use std::cell::RefCell;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use bytes::{Bytes, BytesMut};
use spate_protocol::batch::header::{
    compute_crc, stamp_producer, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{
    Clock, Durability, LogConfig, ManualClock, MemoryFileSystem, PartitionLog, SimulationRng,
};

/// Bytes `[0, 12)` of a header (base offset, leader epoch) are stamped by the broker.
pub const STAMPED_BYTES: usize = 12;

/// Bytes of the payload that carry a test batch's id: the broker never interprets a payload,
/// while the header's producer fields are checked (idempotent producers).
pub const ID_BYTES: usize = 8;
/// The smallest test batch: a header and the id.
pub const TEST_BATCH_BYTES_MIN: usize = BATCH_HEADER_BYTES + ID_BYTES;

/// A valid batch of `total_bytes` (header included, at least [`TEST_BATCH_BYTES_MIN`]) from a
/// producer that is not idempotent, whose first payload bytes hold `id`, so the tests can
/// recognise it wherever it ends up. The other payload bytes follow from `id`.
pub fn batch(
    id: u64,
    offset_count: u32,
    total_bytes: usize,
    first_timestamp: i64,
    max_timestamp: i64,
) -> BytesMut {
    assert!(total_bytes >= TEST_BATCH_BYTES_MIN);
    let mut bytes = BytesMut::zeroed(total_bytes);
    let mut rng = SimulationRng::new(id.wrapping_mul(0x2545_f491_4f6c_dd1d));
    bytes[BATCH_HEADER_BYTES..TEST_BATCH_BYTES_MIN].copy_from_slice(&id.to_le_bytes());
    for chunk in bytes[TEST_BATCH_BYTES_MIN..].chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    let mut header = BatchHeader {
        base_offset: 0,
        leader_epoch: 0,
        crc: 0,
        batch_length: total_bytes as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        attributes: 0,
        offset_count,
        record_count: offset_count,
        first_timestamp,
        max_timestamp,
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

/// A simple batch with one offset and timestamp `timestamp`.
pub fn simple_batch(id: u64, total_bytes: usize, timestamp: i64) -> BytesMut {
    batch(id, 1, total_bytes, timestamp, timestamp)
}

/// A batch of `records` records (one offset each) from idempotent producer `producer_id` at
/// `epoch`, starting at sequence `sequence`; `id` as in [`batch`].
pub fn producer_batch(
    id: u64,
    producer_id: i64,
    epoch: i16,
    sequence: i32,
    records: u32,
    total_bytes: usize,
) -> BytesMut {
    let mut bytes = batch(id, records, total_bytes, 1_000, 1_000);
    stamp_producer(&mut bytes, producer_id, epoch, sequence);
    bytes
}

pub fn header_of(bytes: &[u8]) -> BatchHeader {
    BatchHeader::decode(bytes).expect("test batches have a header")
}

/// The id a test batch was built with (see [`batch`]).
pub fn id_of(bytes: &[u8]) -> u64 {
    let mut id = [0u8; ID_BYTES];
    id.copy_from_slice(&bytes[BATCH_HEADER_BYTES..TEST_BATCH_BYTES_MIN]);
    u64::from_le_bytes(id)
}

/// Whether `stored` is `original` with only the broker-stamped bytes changed.
pub fn same_batch(stored: &[u8], original: &[u8]) -> bool {
    stored.len() == original.len() && stored[STAMPED_BYTES..] == original[STAMPED_BYTES..]
}

type Task = Pin<Box<dyn Future<Output = ()>>>;

struct ReadyQueue {
    ready: Mutex<Vec<usize>>,
}

struct TaskWaker {
    queue: Arc<ReadyQueue>,
    index: usize,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut ready = self.queue.ready.lock().expect("single-threaded");
        if !ready.contains(&self.index) {
            ready.push(self.index);
        }
    }
}

/// Runs tasks on the current thread, picking the next ready task with a seeded generator, so a
/// seed fixes the interleaving.
pub struct Simulator {
    tasks: Vec<Option<Task>>,
    queue: Arc<ReadyQueue>,
    rng: SimulationRng,
}

impl Simulator {
    pub fn new(seed: u64) -> Self {
        Self {
            tasks: Vec::new(),
            queue: Arc::new(ReadyQueue {
                ready: Mutex::new(Vec::new()),
            }),
            rng: SimulationRng::new(seed),
        }
    }

    pub fn spawn(&mut self, task: impl Future<Output = ()> + 'static) {
        self.tasks.push(Some(Box::pin(task)));
        let index = self.tasks.len() - 1;
        self.queue
            .ready
            .lock()
            .expect("single-threaded")
            .push(index);
    }

    /// Polls ready tasks until none is ready or `steps_max` polls were made. Returns the number
    /// of tasks still unfinished.
    pub fn run(&mut self, steps_max: usize) -> usize {
        for _ in 0..steps_max {
            let next = {
                let mut ready = self.queue.ready.lock().expect("single-threaded");
                if ready.is_empty() {
                    break;
                }
                let pick = self.rng.below(ready.len() as u64) as usize;
                ready.swap_remove(pick)
            };
            let Some(task) = self.tasks[next].as_mut() else {
                continue;
            };
            let waker = Waker::from(Arc::new(TaskWaker {
                queue: self.queue.clone(),
                index: next,
            }));
            let mut context = Context::from_waker(&waker);
            if let Poll::Ready(()) = task.as_mut().poll(&mut context) {
                self.tasks[next] = None;
            }
        }
        self.unfinished()
    }

    /// Like [`Simulator::run`], but when every unfinished task is asleep on `clock`, jumps the
    /// clock to the earliest deadline and goes on (discrete-event time).
    pub fn run_with_clock(&mut self, clock: &ManualClock, steps_max: usize) -> usize {
        for _ in 0..10_000 {
            let unfinished = self.run(steps_max);
            let still_ready = !self.queue.ready.lock().expect("single-threaded").is_empty();
            assert!(
                !still_ready,
                "livelock: tasks still ready after {steps_max} polls"
            );
            if unfinished == 0 || !clock.advance_to_next_deadline() {
                return unfinished;
            }
        }
        self.unfinished()
    }

    pub fn unfinished(&self) -> usize {
        self.tasks.iter().filter(|task| task.is_some()).count()
    }

    /// Drops every task, finished or not (a process dying).
    pub fn abandon_all(&mut self) {
        self.tasks.clear();
        self.queue.ready.lock().expect("single-threaded").clear();
    }
}

/// Runs one future to completion on a fresh simulator; panics if it stalls.
pub fn run_to_end<T: 'static>(seed: u64, future: impl Future<Output = T> + 'static) -> T {
    run_to_end_timed(seed, &ManualClock::new(0), future)
}

/// Runs one future to completion, moving `clock` to each sleep deadline when nothing else can
/// run; panics if it stalls.
pub fn run_to_end_timed<T: 'static>(
    seed: u64,
    clock: &ManualClock,
    future: impl Future<Output = T> + 'static,
) -> T {
    let result = Rc::new(RefCell::new(None));
    let slot = result.clone();
    let mut simulator = Simulator::new(seed);
    simulator.spawn(async move {
        *slot.borrow_mut() = Some(future.await);
    });
    let unfinished = simulator.run_with_clock(clock, 10_000_000);
    assert_eq!(unfinished, 0, "the future stalled: nothing left to wake it");
    let value = result.borrow_mut().take().expect("finished");
    value
}

/// Runs one future of a test to completion on a simulator with a fixed seed.
pub fn block<T: 'static>(future: impl Future<Output = T> + 'static) -> T {
    run_to_end(7, future)
}

/// Concatenated readable batches `[from, high watermark)`, read in chunks of `max_bytes`.
pub async fn read_all<F: spate_storage::FileSystem>(
    log: &spate_storage::PartitionLog<F>,
    from: u64,
    max_bytes: usize,
) -> Result<Vec<Bytes>, spate_storage::StorageError> {
    let mut batches = Vec::new();
    let mut offset = from;
    loop {
        let read = log.read(offset, max_bytes).await?;
        let Some(last) = read.batches.last() else {
            return Ok(batches);
        };
        offset = header_of(last).next_offset();
        batches.extend(read.batches);
    }
}

/// Where the manual clock of a [`Setup`] starts, in milliseconds since the Unix epoch.
pub const START_MS: i64 = 1_700_000_000_000;

/// The partition directory a [`Setup`] opens its log in.
pub fn directory() -> PathBuf {
    PathBuf::from("/data/topic-0")
}

/// Small segments, buffers and index intervals, so that a few batches roll segments and write
/// index entries; no tail cache, so reads reach the disk; every append durable on its own.
pub fn small_config() -> LogConfig {
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

/// A seeded in-memory disk and a manual clock at [`START_MS`] that outlive the logs opened on
/// them, so a test can close or drop a log and open it again on what it left on disk.
pub struct Setup {
    pub disk: Rc<MemoryFileSystem>,
    pub clock: Rc<ManualClock>,
}

impl Setup {
    pub fn new(seed: u64) -> Self {
        Self {
            disk: Rc::new(MemoryFileSystem::new(seed)),
            clock: Rc::new(ManualClock::new(START_MS)),
        }
    }

    /// Opens (and recovers) the log in [`directory`]; panics if that fails.
    pub fn open(&self, config: LogConfig) -> PartitionLog<MemoryFileSystem> {
        let disk = self.disk.clone();
        let clock: Rc<dyn Clock> = self.clock.clone();
        run_to_end(1, async move {
            PartitionLog::open(disk, directory(), config, clock).await
        })
        .expect("open")
    }
}
