//! The producer's record accumulator: per-partition batches being filled, sealed batches waiting
//! to be sent, and the bookkeeping that `flush` and `close` wait on.
//!
//! Application threads append here (under the producer's lock) and build the batch bytes
//! themselves, so the copy of each record into its batch costs the sender nothing. The sender
//! task drains ready batches into produce requests and reports each batch's fate back. Nothing
//! here does I/O or completes a delivery while the lock is held: finished batches are returned
//! to the caller, which completes them after unlocking.
//!
//! A batch is sealed when full, or once its linger passed and its partition can send it at
//! once: while every in-flight slot of the partition is taken it keeps filling, so a busy
//! partition sends fewer, larger batches instead of a backlog of small ones.
//!
//! Order: a partition's batches leave in the order they were sealed, at most
//! `partition_inflight_requests_max` at a time, and a batch being retried goes back to the front
//! of its queue, so with the default of one in flight records keep their order across retries.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::batch::{BatchBuilder, BatchOptions, HeaderPair, BATCH_HEADER_BYTES};
use spate_protocol::constants::BATCH_BYTES_MAX;

use crate::completion::Completer;
use crate::config::{KeylessPartitioning, ProducerConfig};
use crate::error::Error;

/// Bytes a sealed batch adds beyond its records' bytes: the header and the archive root.
pub(crate) const BATCH_OVERHEAD_BYTES: usize = BATCH_HEADER_BYTES + 8;

/// Where a record was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordMetadata {
    /// The partition the record went to.
    pub partition: u32,
    /// The record's offset; `None` under `Acks::None`, where the broker does not answer.
    pub offset: Option<u64>,
}

/// How one record's outcome reaches the application.
pub(crate) enum DeliverySink {
    /// Told on its own, when its batch is settled.
    Notify(Notify),
    /// Reported with the other tagged records of its batch, in one call of the producer's
    /// delivery handler: no allocation and no call per record.
    Tagged(u64),
}

/// A record's own completion or callback.
pub(crate) enum Notify {
    Completion(Completer<RecordMetadata>),
    Callback(Box<dyn FnOnce(Result<RecordMetadata, Error>) + Send>),
}

impl Notify {
    pub(crate) fn complete(self, result: Result<RecordMetadata, Error>) {
        match self {
            Self::Completion(completer) => completer.complete(result),
            Self::Callback(callback) => callback(result),
        }
    }
}

/// A tagged record of a batch: its tag and its offset delta (its index in the batch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TaggedRecord {
    pub(crate) offset_delta: u32,
    pub(crate) tag: u64,
}

/// Who learns of the outcome of each record of one batch. Tagged records are kept apart in a
/// plain array, so that the delivery handler gets them as one slice.
#[derive(Default)]
pub(crate) struct Deliveries {
    /// Records sent with a completion or a callback, with their offset deltas.
    pub(crate) notified: Vec<(u32, Notify)>,
    pub(crate) tagged: Vec<TaggedRecord>,
}

impl Deliveries {
    fn push(&mut self, offset_delta: u32, sink: DeliverySink) {
        match sink {
            DeliverySink::Notify(notify) => self.notified.push((offset_delta, notify)),
            DeliverySink::Tagged(tag) => self.tagged.push(TaggedRecord { offset_delta, tag }),
        }
    }
}

/// How the partition of a record was decided by the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartitionChoice {
    /// Named by the record, or computed from its key.
    Fixed(u32),
    /// No key, no partition: the accumulator spreads it.
    Keyless,
}

/// The first buffer of a batch opened while whole buffers of open batches already fill
/// `buffer_bytes_max`; it grows by doubling up to the batch limit.
const GROWING_BATCH_INITIAL_CAPACITY_BYTES: usize = 64 * 1024;

/// A sealed batch keeps its buffer while that is at most this many times its length; a batch
/// sealed smaller is copied into a buffer of its own size.
const SEALED_CAPACITY_SLACK_MAX: usize = 2;

/// A record as the accumulator receives it: bytes to copy into the batch.
pub(crate) struct Incoming<'a, H: HeaderPair> {
    pub(crate) key: Option<&'a [u8]>,
    pub(crate) value: Option<&'a [u8]>,
    pub(crate) headers: &'a [H],
    pub(crate) timestamp_ms: i64,
    /// Exact bytes the record adds to a batch, reserved from buffer memory by the caller.
    pub(crate) record_bytes: usize,
}

struct OpenBatch {
    builder: BatchBuilder,
    deliveries: Deliveries,
    created_at: Instant,
    memory_bytes: usize,
    generation: u64,
    /// Capacity counted in `Accumulator::preallocated_bytes`, given back when sealed.
    preallocated_bytes: usize,
}

/// A sealed batch and everything needed to finish it.
pub(crate) struct ReadyBatch {
    pub(crate) bytes: Bytes,
    pub(crate) deliveries: Deliveries,
    pub(crate) memory_bytes: usize,
    pub(crate) generation: u64,
    pub(crate) attempts: u32,
    /// After this the batch fails instead of being retried.
    pub(crate) deadline: Instant,
    pub(crate) last_error: Option<Error>,
}

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    ready: VecDeque<ReadyBatch>,
    inflight: usize,
    backoff_until: Option<Instant>,
}

struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    /// Keyless records go here until a batch of it is sealed.
    sticky_partition: u32,
    sticky_opened_batch: bool,
    next_round_robin: u32,
}

/// A batch on its way out, with where it goes.
pub(crate) struct Outbound {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) batch: ReadyBatch,
}

/// What one drain produced.
pub(crate) struct Drained {
    /// Each element becomes one produce request.
    pub(crate) requests: Vec<Vec<Outbound>>,
    /// Ready batches past their delivery deadline, to be failed.
    pub(crate) expired: Vec<Outbound>,
    /// When the sender should look again even if nothing wakes it (a linger or a backoff
    /// ending).
    pub(crate) wake_at: Option<Instant>,
}

/// What an append did, so the caller knows whether to wake the sender.
pub(crate) struct Appended {
    /// The partition chosen (the tests check keyless spreading with it).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) partition: u32,
    /// A batch was sealed or opened: the sender has something new to send or time.
    pub(crate) wake_sender: bool,
}

/// When `drain` seals an open batch (beyond a full one, which `append` seals).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SealWhen {
    /// Its linger passed and its partition can send it at once.
    Lingered,
    /// Its partition can send it at once, lingered or not: a `send` waits for memory. Sealing
    /// a batch that cannot leave yet would free nothing sooner and only make batches smaller
    /// (each drain while the producer waited cut the open batch short).
    Sendable,
    /// Always: the producer is closing.
    Always,
}

/// Producer state behind one lock.
pub(crate) struct Accumulator {
    /// Topics are never removed, so an index into this stays valid.
    topics: Vec<TopicQueues>,
    topic_indexes: HashMap<Arc<str>, usize>,
    /// The topic appended to last: a producer mostly sends to one topic, and comparing its
    /// name is cheaper than hashing it for every record.
    last_topic_index: Option<usize>,
    /// Batches started from now on belong to this generation; `flush` starts a new one.
    generation: u64,
    /// Batches not yet finished, by generation.
    unfinished: BTreeMap<u64, usize>,
    /// Each waits until no batch of its generation or older is unfinished.
    flush_waiters: Vec<(u64, Completer<()>)>,
    /// Buffer capacity of the open batches that were allocated whole, at their limit; kept
    /// within `buffer_bytes_max` so that open batches on many partitions stay bounded.
    preallocated_bytes: usize,
}

impl Accumulator {
    pub(crate) fn new() -> Self {
        Self {
            topics: Vec::new(),
            topic_indexes: HashMap::new(),
            last_topic_index: None,
            generation: 0,
            unfinished: BTreeMap::new(),
            flush_waiters: Vec::new(),
            preallocated_bytes: 0,
        }
    }

    /// Appends one record to its partition's open batch, sealing and opening batches as size
    /// demands. `partition_count` is the topic's current count from metadata. `now` is only
    /// called when a batch opens (its linger starts then), so most records read no clock.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn append<H: HeaderPair>(
        &mut self,
        topic: &str,
        partition_count: u32,
        choice: PartitionChoice,
        record: &Incoming<'_, H>,
        delivery: DeliverySink,
        config: &ProducerConfig,
        now: impl FnOnce() -> Instant,
    ) -> Appended {
        assert!(partition_count > 0, "metadata lists at least one partition");
        let generation = self.generation;
        let topic_index = self.topic_index(topic, partition_count);
        let queues = &mut self.topics[topic_index];
        let mut wake_sender = false;
        let partition = match choice {
            PartitionChoice::Fixed(partition) => partition,
            PartitionChoice::Keyless => {
                let partition = queues.keyless_partition(config.keyless);
                let queue = &mut queues.partitions[partition as usize];
                if config.keyless == KeylessPartitioning::Sticky && !fits(queue, record, config) {
                    // The sticky batch is full: seal it and let this record start the next
                    // partition's batch, rather than a second batch on the same partition.
                    seal_open(queue, config, &mut self.preallocated_bytes);
                    wake_sender = true;
                    queues.keyless_partition(config.keyless)
                } else {
                    partition
                }
            }
        };
        let count = queues.partitions.len() as u32;
        assert!(
            partition < count,
            "partition {partition} checked against metadata"
        );
        let queue = &mut queues.partitions[partition as usize];

        if !fits(queue, record, config) {
            seal_open(queue, config, &mut self.preallocated_bytes);
            wake_sender = true;
        }
        let mut opened = false;
        if queue.open.is_none() {
            queue.open = Some(open_batch(
                record.record_bytes,
                config,
                now(),
                generation,
                &mut self.preallocated_bytes,
            ));
            opened = true;
            wake_sender = true;
        }
        let open = queue.open.as_mut().expect("opened above");
        let offset_delta =
            u32::try_from(open.builder.record_count()).expect("bounded by BATCH_BYTES_MAX");
        open.builder
            .append(
                record.key,
                record.value,
                record.headers,
                record.timestamp_ms,
            )
            .expect("the batch limit leaves room for the record (checked by the caller)");
        open.deliveries.push(offset_delta, delivery);
        open.memory_bytes += record.record_bytes;
        if open.builder.estimated_bytes() >= config.batch_bytes {
            seal_open(queue, config, &mut self.preallocated_bytes);
        }
        if opened {
            *self.unfinished.entry(generation).or_default() += 1;
        }
        if choice == PartitionChoice::Keyless && opened {
            self.topics[topic_index].sticky_opened_batch = true;
        }
        Appended {
            partition,
            wake_sender,
        }
    }

    /// Seals every open batch and starts a new generation. Returns the generation a flush
    /// must wait for.
    pub(crate) fn seal_all(&mut self, config: &ProducerConfig) -> u64 {
        for queues in &mut self.topics {
            for queue in &mut queues.partitions {
                if queue.open.is_some() {
                    seal_open(queue, config, &mut self.preallocated_bytes);
                }
            }
        }
        let flushed = self.generation;
        self.generation += 1;
        flushed
    }

    /// Registers a flush waiter for `generation`, or completes it at once when nothing of that
    /// generation or older is unfinished.
    pub(crate) fn wait_for_generation(&mut self, generation: u64, completer: Completer<()>) {
        if self.is_generation_done(generation) {
            completer.complete(Ok(()));
        } else {
            self.flush_waiters.push((generation, completer));
        }
    }

    fn is_generation_done(&self, generation: u64) -> bool {
        self.unfinished
            .first_key_value()
            .is_none_or(|(oldest, _)| *oldest > generation)
    }

    /// Whether nothing is open, waiting or in flight.
    pub(crate) fn is_idle(&self) -> bool {
        self.unfinished.is_empty()
    }

    /// Collects what the sender should do now: seals open batches as `seal_when` says (a
    /// lingered batch whose partition has no free in-flight slot keeps filling until one frees
    /// up or it is full), takes sendable batches into requests, and picks out ready batches past
    /// their deadline.
    pub(crate) fn drain(
        &mut self,
        config: &ProducerConfig,
        now: Instant,
        seal_when: SealWhen,
    ) -> Drained {
        let mut drained = Drained {
            requests: Vec::new(),
            expired: Vec::new(),
            wake_at: None,
        };
        // One draft per in-flight slot, so that a partition never has two batches in one
        // request (the broker answers one base offset per partition entry).
        let mut drafts: Vec<RequestDraft> = Vec::new();
        for queues in &mut self.topics {
            for (partition, queue) in queues.partitions.iter_mut().enumerate() {
                let partition = partition as u32;
                if let Some(open) = &queue.open {
                    let due = open.created_at + config.linger;
                    let seal = match seal_when {
                        SealWhen::Always => true,
                        SealWhen::Sendable => queue.can_send_one_more(config, now),
                        SealWhen::Lingered => now >= due && queue.can_send_one_more(config, now),
                    };
                    if seal {
                        seal_open(queue, config, &mut self.preallocated_bytes);
                    } else if now < due {
                        drained.wake_at = earliest(drained.wake_at, due);
                    } else if let Some(until) = queue.backoff_until {
                        // Lingered, but the partition is backing off: look again when it ends.
                        drained.wake_at = earliest(drained.wake_at, until);
                    }
                    // Otherwise it lingered but every in-flight slot is taken: it stays open and
                    // keeps filling (as Kafka's does) instead of queueing as a small batch that
                    // needs a round trip of its own; the response that frees a slot wakes the
                    // sender.
                }
                expire(queue, &queues.name, partition, now, &mut drained.expired);
                if let Some(until) = queue.backoff_until {
                    if now < until {
                        if !queue.ready.is_empty() {
                            drained.wake_at = earliest(drained.wake_at, until);
                        }
                        continue;
                    }
                    queue.backoff_until = None;
                }
                let mut slot = 0;
                while queue.inflight < config.partition_inflight_requests_max {
                    let Some(batch) = queue.ready.pop_front() else {
                        break;
                    };
                    queue.inflight += 1;
                    let outbound = Outbound {
                        topic: queues.name.clone(),
                        partition,
                        batch,
                    };
                    place(&mut drafts, &mut drained.requests, slot, outbound, config);
                    slot += 1;
                }
            }
        }
        drained.requests.extend(
            drafts
                .into_iter()
                .filter_map(|draft| (!draft.batches.is_empty()).then_some(draft.batches)),
        );
        drained
    }

    /// Puts a batch whose attempt failed retriably back at the front of its queue.
    pub(crate) fn requeue(&mut self, outbound: Outbound, backoff_until: Instant) {
        let queue = self.queue_mut(&outbound.topic, outbound.partition);
        assert!(
            queue.inflight > 0,
            "requeued a batch that was not in flight"
        );
        queue.inflight -= 1;
        queue.backoff_until = Some(backoff_until);
        queue.ready.push_front(outbound.batch);
    }

    /// Marks a batch finished (delivered or failed) in one step. Returns the flush completions
    /// that are now due. The sender takes the two steps apart (`release_slot`, then
    /// `finish_generation` once the records were told).
    #[cfg(test)]
    pub(crate) fn finish(
        &mut self,
        topic: &str,
        partition: u32,
        generation: u64,
        was_inflight: bool,
    ) -> Vec<Completer<()>> {
        if was_inflight {
            self.release_slot(topic, partition);
        }
        self.finish_generation(generation)
    }

    /// Gives back the in-flight slot of a batch whose request was answered, so that the
    /// partition's next batch may leave before this one's records are told (`finish_generation`
    /// follows).
    pub(crate) fn release_slot(&mut self, topic: &str, partition: u32) {
        let queue = self.queue_mut(topic, partition);
        assert!(
            queue.inflight > 0,
            "finished a batch that was not in flight"
        );
        queue.inflight -= 1;
    }

    /// Counts a batch of `generation` as finished, once its records have been told. Returns
    /// the flush completions that are now due.
    pub(crate) fn finish_generation(&mut self, generation: u64) -> Vec<Completer<()>> {
        let count = self
            .unfinished
            .get_mut(&generation)
            .expect("every batch is counted in its generation");
        *count -= 1;
        if *count == 0 {
            self.unfinished.remove(&generation);
        }
        let waiters = std::mem::take(&mut self.flush_waiters);
        let (done, waiting): (Vec<_>, Vec<_>) = waiters
            .into_iter()
            .partition(|(generation, _)| self.is_generation_done(*generation));
        self.flush_waiters = waiting;
        done.into_iter().map(|(_, completer)| completer).collect()
    }

    fn queue_mut(&mut self, topic: &str, partition: u32) -> &mut PartitionQueue {
        let index = *self
            .topic_indexes
            .get(topic)
            .expect("a batch's topic stays in the accumulator");
        &mut self.topics[index].partitions[partition as usize]
    }

    /// The index of `topic`'s queues, made on first use, with at least `partition_count`
    /// partitions.
    fn topic_index(&mut self, topic: &str, partition_count: u32) -> usize {
        let index = match self.last_topic_index {
            Some(index) if *self.topics[index].name == *topic => index,
            _ => {
                let index = match self.topic_indexes.get(topic) {
                    Some(index) => *index,
                    None => {
                        let name: Arc<str> = Arc::from(topic);
                        self.topics.push(TopicQueues {
                            name: name.clone(),
                            partitions: Vec::new(),
                            sticky_partition: 0,
                            sticky_opened_batch: false,
                            next_round_robin: 0,
                        });
                        self.topic_indexes.insert(name, self.topics.len() - 1);
                        self.topics.len() - 1
                    }
                };
                self.last_topic_index = Some(index);
                index
            }
        };
        let queues = &mut self.topics[index];
        // Partition counts only grow; queues of a shrunken topic would stay until drained.
        if queues.partitions.len() < partition_count as usize {
            queues
                .partitions
                .resize_with(partition_count as usize, PartitionQueue::default);
        }
        index
    }
}

impl PartitionQueue {
    /// Whether a batch sealed now would leave in this drain: the partition is not backing off
    /// and an in-flight slot is free after the batches already waiting take theirs.
    fn can_send_one_more(&self, config: &ProducerConfig, now: Instant) -> bool {
        let backing_off = self.backoff_until.is_some_and(|until| now < until);
        !backing_off && self.inflight + self.ready.len() < config.partition_inflight_requests_max
    }
}

impl TopicQueues {
    fn keyless_partition(&mut self, policy: KeylessPartitioning) -> u32 {
        let count = self.partitions.len() as u32;
        match policy {
            KeylessPartitioning::RoundRobin => {
                let partition = self.next_round_robin % count;
                self.next_round_robin = self.next_round_robin.wrapping_add(1);
                partition
            }
            KeylessPartitioning::Sticky => {
                let current = self.sticky_partition % count;
                // Move on once the batch we started here has been sealed (Kafka's KIP-480).
                if self.sticky_opened_batch && self.partitions[current as usize].open.is_none() {
                    self.sticky_partition = (current + 1) % count;
                    self.sticky_opened_batch = false;
                }
                self.sticky_partition % count
            }
        }
    }
}

fn earliest(current: Option<Instant>, candidate: Instant) -> Option<Instant> {
    Some(current.map_or(candidate, |current| current.min(candidate)))
}

fn open_batch(
    first_record_bytes: usize,
    config: &ProducerConfig,
    now: Instant,
    generation: u64,
    preallocated_bytes_total: &mut usize,
) -> OpenBatch {
    // A record larger than batch_bytes gets a batch of its own, as large as it needs.
    let batch_bytes_max = config
        .batch_bytes
        .max(first_record_bytes + BATCH_OVERHEAD_BYTES)
        .min(BATCH_BYTES_MAX);
    // The buffer is allocated once at the batch's limit: growing it by doubling copied about
    // one extra byte per byte sent (the realloc memmove was 45% of a producer thread at
    // 870 MB/s). Whole buffers of open batches together stay within `buffer_bytes_max`; past
    // that (open batches on many partitions at once) a batch starts small and grows.
    let preallocated_bytes =
        if *preallocated_bytes_total + batch_bytes_max <= config.buffer_bytes_max {
            batch_bytes_max
        } else {
            0
        };
    *preallocated_bytes_total += preallocated_bytes;
    let initial_capacity_bytes = if preallocated_bytes > 0 {
        batch_bytes_max
    } else {
        batch_bytes_max.min(GROWING_BATCH_INITIAL_CAPACITY_BYTES)
    };
    let builder = BatchBuilder::new(BatchOptions {
        batch_bytes_max,
        initial_capacity_bytes,
        ..BatchOptions::default()
    });
    OpenBatch {
        builder,
        deliveries: Deliveries::default(),
        created_at: now,
        memory_bytes: 0,
        generation,
        preallocated_bytes,
    }
}

/// Whether the record can join the partition's open batch (false when there is an open batch
/// it would overfill; true when there is none).
fn fits<H: HeaderPair>(
    queue: &PartitionQueue,
    record: &Incoming<'_, H>,
    config: &ProducerConfig,
) -> bool {
    queue.open.as_ref().is_none_or(|open| {
        open.builder.estimated_bytes() + record.record_bytes <= config.batch_bytes
    })
}

fn seal_open(
    queue: &mut PartitionQueue,
    config: &ProducerConfig,
    preallocated_bytes_total: &mut usize,
) {
    let open = queue.open.take().expect("caller checked an open batch");
    assert!(
        *preallocated_bytes_total >= open.preallocated_bytes,
        "every preallocated batch is counted"
    );
    *preallocated_bytes_total -= open.preallocated_bytes;
    let sealed = open
        .builder
        .seal()
        .expect("an open batch holds at least one record");
    debug_assert!(sealed.len() <= BATCH_BYTES_MAX);
    // A batch sealed early (linger, flush) would otherwise keep its whole `batch_bytes` buffer
    // while it waits and flies; copying it out bounds what a sealed batch holds to twice its
    // bytes, and the copy costs at most the bytes it keeps (full batches are never copied).
    let bytes = if sealed.len() * SEALED_CAPACITY_SLACK_MAX < sealed.capacity() {
        Bytes::copy_from_slice(&sealed)
    } else {
        sealed.freeze()
    };
    queue.ready.push_back(ReadyBatch {
        bytes,
        deliveries: open.deliveries,
        memory_bytes: open.memory_bytes,
        generation: open.generation,
        attempts: 0,
        deadline: open.created_at + config.delivery_timeout,
        last_error: None,
    });
}

fn expire(
    queue: &mut PartitionQueue,
    topic: &Arc<str>,
    partition: u32,
    now: Instant,
    expired: &mut Vec<Outbound>,
) {
    while queue
        .ready
        .front()
        .is_some_and(|batch| batch.deadline <= now)
    {
        let batch = queue.ready.pop_front().expect("checked non-empty");
        expired.push(Outbound {
            topic: topic.clone(),
            partition,
            batch,
        });
    }
}

struct RequestDraft {
    batches: Vec<Outbound>,
    bytes: usize,
}

/// Adds a partition's `slot`-th batch of this drain to the `slot`-th open draft, closing the
/// draft first if the batch would push it over the request size limit.
fn place(
    drafts: &mut Vec<RequestDraft>,
    finished: &mut Vec<Vec<Outbound>>,
    slot: usize,
    outbound: Outbound,
    config: &ProducerConfig,
) {
    while drafts.len() <= slot {
        drafts.push(RequestDraft {
            batches: Vec::new(),
            bytes: 0,
        });
    }
    let draft = &mut drafts[slot];
    let batch_bytes = outbound.batch.bytes.len();
    if !draft.batches.is_empty() && draft.bytes + batch_bytes > config.produce_request_bytes_max {
        finished.push(std::mem::take(&mut draft.batches));
        draft.bytes = 0;
    }
    draft.bytes += batch_bytes;
    draft.batches.push(outbound);
}

/// The pause before a batch's next attempt: doubling from the minimum, capped.
pub(crate) fn retry_backoff(config: &ProducerConfig, attempts: u32) -> Duration {
    let factor = 1u32 << attempts.min(16);
    (config.retry_backoff_min * factor).min(config.retry_backoff_max)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::completion::completion;
    use spate_protocol::batch::{BatchView, NO_HEADERS};

    fn incoming(value: &[u8]) -> Incoming<'_, (&'static str, &'static [u8])> {
        Incoming {
            key: None,
            value: Some(value),
            headers: NO_HEADERS,
            timestamp_ms: 1_000,
            record_bytes: BatchBuilder::record_bytes(None, Some(value), NO_HEADERS),
        }
    }

    fn sink() -> DeliverySink {
        DeliverySink::Notify(Notify::Callback(Box::new(|_| {})))
    }

    /// Appends one small record to partition 0 of a one-partition topic "t", at `now`.
    fn append_one(accumulator: &mut Accumulator, config: &ProducerConfig, now: Instant) {
        append_value(accumulator, config, now, b"v");
    }

    /// Appends a record with `value` to partition 0 of a one-partition topic "t", at `now`.
    fn append_value(
        accumulator: &mut Accumulator,
        config: &ProducerConfig,
        now: Instant,
        value: &[u8],
    ) {
        accumulator.append(
            "t",
            1,
            PartitionChoice::Fixed(0),
            &incoming(value),
            sink(),
            config,
            || now,
        );
    }

    fn config() -> ProducerConfig {
        ProducerConfig {
            batch_bytes: 1024,
            linger: Duration::from_millis(10),
            ..ProducerConfig::default()
        }
    }

    #[test]
    fn a_full_batch_is_sealed_and_the_record_that_does_not_fit_opens_the_next() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let value = [7u8; 200];
        for _ in 0..3 {
            append_value(&mut accumulator, &config, now, &value);
        }
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert!(
            drained.requests.is_empty(),
            "72 + 3 * 238 bytes stay below 1024"
        );
        // The fourth fills the batch exactly (72 + 4 * 238 = 1024): sealed at once. The fifth
        // opens the next batch.
        for _ in 0..2 {
            append_value(&mut accumulator, &config, now, &value);
        }
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert_eq!(drained.requests.len(), 1);
        let batch = &drained.requests[0][0].batch;
        let view = BatchView::validate(&batch.bytes, BATCH_BYTES_MAX).unwrap();
        assert_eq!(view.record_count(), 4);
        assert!(batch.bytes.len() <= config.batch_bytes);
        assert_eq!(
            drained.wake_at,
            Some(now + config.linger),
            "the fifth record lingers"
        );
    }

    #[test]
    fn whole_batch_buffers_of_open_batches_stay_within_the_buffer_budget() {
        let config = ProducerConfig {
            batch_bytes: 1024,
            buffer_bytes_max: 4 * 1024,
            ..config()
        };
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        for partition in 0..10 {
            accumulator.append(
                "t",
                10,
                PartitionChoice::Fixed(partition),
                &incoming(b"v"),
                sink(),
                &config,
                || now,
            );
        }
        assert_eq!(
            accumulator.preallocated_bytes, config.buffer_bytes_max,
            "four of the ten open batches got a whole buffer, the rest start small"
        );
        accumulator.seal_all(&config);
        assert_eq!(
            accumulator.preallocated_bytes, 0,
            "sealing gives every whole buffer back to the count"
        );
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        let batches = drained.requests.iter().flatten().count();
        assert_eq!(batches, 10, "every partition's record is sent");
    }

    #[test]
    fn a_lingered_batch_keeps_filling_while_its_partition_has_no_free_slot() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let append = |accumulator: &mut Accumulator| append_one(accumulator, &config, now);
        append(&mut accumulator);
        let first = accumulator.drain(&config, now + config.linger, SealWhen::Lingered);
        assert_eq!(
            first.requests.len(),
            1,
            "the first batch takes the one slot"
        );
        let in_flight = first.requests.into_iter().flatten().next().unwrap();

        append(&mut accumulator);
        let later = now + config.linger * 3;
        let blocked = accumulator.drain(&config, later, SealWhen::Lingered);
        assert!(blocked.requests.is_empty(), "no slot is free");
        assert_eq!(
            blocked.wake_at, None,
            "the freed slot wakes the sender, not a timer"
        );
        append(&mut accumulator);

        accumulator.finish("t", 0, in_flight.batch.generation, true);
        let freed = accumulator.drain(&config, later, SealWhen::Lingered);
        assert_eq!(freed.requests.len(), 1);
        let batch = &freed.requests[0][0].batch;
        let view = BatchView::validate(&batch.bytes, BATCH_BYTES_MAX).unwrap();
        assert_eq!(
            view.record_count(),
            2,
            "the record appended after the linger joined the waiting batch"
        );
    }

    #[test]
    fn under_memory_pressure_an_open_batch_is_sealed_only_when_its_partition_can_send_it() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let append = |accumulator: &mut Accumulator| append_one(accumulator, &config, now);
        append(&mut accumulator);
        let first = accumulator.drain(&config, now, SealWhen::Sendable);
        assert_eq!(
            first.requests.len(),
            1,
            "a free slot: sealed before its linger passed"
        );
        let in_flight = first.requests.into_iter().flatten().next().unwrap();

        append(&mut accumulator);
        let blocked = accumulator.drain(&config, now, SealWhen::Sendable);
        assert!(blocked.requests.is_empty(), "no slot is free");
        append(&mut accumulator);
        accumulator.finish("t", 0, in_flight.batch.generation, true);
        let freed = accumulator.drain(&config, now, SealWhen::Sendable);
        let batch = &freed.requests[0][0].batch;
        let view = BatchView::validate(&batch.bytes, BATCH_BYTES_MAX).unwrap();
        assert_eq!(
            view.record_count(),
            2,
            "the batch kept filling while it could not leave"
        );
    }

    #[test]
    fn tagged_and_notified_records_keep_their_offset_deltas() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let sinks = [
            sink(),
            DeliverySink::Tagged(41),
            sink(),
            DeliverySink::Tagged(43),
        ];
        for sink in sinks {
            accumulator.append(
                "t",
                1,
                PartitionChoice::Fixed(0),
                &incoming(b"v"),
                sink,
                &config,
                || now,
            );
        }
        let drained = accumulator.drain(&config, now, SealWhen::Always);
        let deliveries = &drained.requests[0][0].batch.deliveries;
        let notified: Vec<u32> = deliveries
            .notified
            .iter()
            .map(|(delta, _)| *delta)
            .collect();
        assert_eq!(notified, vec![0, 2]);
        assert_eq!(
            deliveries.tagged,
            vec![
                TaggedRecord {
                    offset_delta: 1,
                    tag: 41
                },
                TaggedRecord {
                    offset_delta: 3,
                    tag: 43
                },
            ]
        );
    }

    #[test]
    fn records_for_several_topics_each_reach_their_own_queues() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        for topic in ["a", "b", "a", "c", "b", "a"] {
            accumulator.append(
                topic,
                1,
                PartitionChoice::Fixed(0),
                &incoming(topic.as_bytes()),
                sink(),
                &config,
                || now,
            );
        }
        let drained = accumulator.drain(&config, now, SealWhen::Always);
        let mut counts: Vec<(String, usize)> = drained
            .requests
            .iter()
            .flatten()
            .map(|outbound| {
                let view = BatchView::validate(&outbound.batch.bytes, BATCH_BYTES_MAX).unwrap();
                let values_match = view
                    .records()
                    .unwrap()
                    .all(|record| record.value().unwrap() == outbound.topic.as_bytes());
                assert!(
                    values_match,
                    "every record of {} is its own",
                    outbound.topic
                );
                (outbound.topic.to_string(), view.record_count() as usize)
            })
            .collect();
        counts.sort();
        let expected =
            [("a", 3), ("b", 2), ("c", 1)].map(|(name, count)| (name.to_string(), count));
        assert_eq!(counts, expected);
    }

    #[test]
    fn a_lingering_batch_is_sent_once_its_linger_passed() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        accumulator.append(
            "t",
            2,
            PartitionChoice::Fixed(1),
            &incoming(b"x"),
            sink(),
            &config,
            || now,
        );
        assert!(accumulator
            .drain(&config, now, SealWhen::Lingered)
            .requests
            .is_empty());
        let drained = accumulator.drain(&config, now + config.linger, SealWhen::Lingered);
        assert_eq!(drained.requests.len(), 1);
        assert_eq!(drained.requests[0][0].partition, 1);
    }

    #[test]
    fn a_partition_has_one_batch_in_flight_and_a_retry_goes_first() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let value = [1u8; 600];
        for _ in 0..3 {
            append_value(&mut accumulator, &config, now, &value);
        }
        let first = accumulator.drain(&config, now, SealWhen::Always);
        assert_eq!(first.requests.len(), 1);
        assert_eq!(
            first.requests[0].len(),
            1,
            "one batch of the partition per request"
        );
        let again = accumulator.drain(&config, now, SealWhen::Always);
        assert!(
            again.requests.is_empty(),
            "the partition already has a batch in flight"
        );

        let outbound = first.requests.into_iter().next().unwrap().pop().unwrap();
        let retried_bytes = outbound.batch.bytes.clone();
        accumulator.requeue(outbound, now + Duration::from_millis(5));
        assert!(
            accumulator
                .drain(&config, now, SealWhen::Always)
                .requests
                .is_empty(),
            "backing off"
        );
        let after = accumulator.drain(&config, now + Duration::from_millis(5), SealWhen::Always);
        assert_eq!(after.requests[0][0].batch.bytes, retried_bytes);
    }

    #[test]
    fn flush_waits_for_its_generation_only() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        append_value(&mut accumulator, &config, now, b"old");
        let generation = accumulator.seal_all(&config);
        let (completer, mut flushed) = completion::<()>("test");
        accumulator.wait_for_generation(generation, completer);
        // A record after the flush started belongs to the next generation.
        append_value(&mut accumulator, &config, now, b"new");
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        let outbound = &drained.requests[0][0];
        let done = accumulator.finish(&outbound.topic, 0, outbound.batch.generation, true);
        assert_eq!(done.len(), 1);
        done.into_iter()
            .for_each(|completer| completer.complete(Ok(())));
        assert!(flushed.try_take().unwrap().is_ok());
        assert!(!accumulator.is_idle(), "the newer record is still open");
    }

    #[test]
    fn a_released_slot_lets_the_next_batch_leave_while_flush_still_waits_for_the_first() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let append = |accumulator: &mut Accumulator| append_one(accumulator, &config, now);
        append(&mut accumulator);
        let first = accumulator.drain(&config, now, SealWhen::Always);
        let in_flight = first.requests.into_iter().flatten().next().unwrap();
        append(&mut accumulator);
        let generation = accumulator.seal_all(&config);
        let (completer, mut flushed) = completion::<()>("test");
        accumulator.wait_for_generation(generation, completer);

        accumulator.release_slot("t", 0);
        let next = accumulator.drain(&config, now, SealWhen::Lingered);
        assert_eq!(
            next.requests.len(),
            1,
            "the freed slot takes the next batch"
        );
        assert!(
            flushed.try_take().is_none(),
            "the first batch is not told yet"
        );

        let done = accumulator.finish_generation(in_flight.batch.generation);
        assert!(done.is_empty(), "the second batch is still in flight");
        let second = next.requests.into_iter().flatten().next().unwrap();
        let done = accumulator.finish("t", 0, second.batch.generation, true);
        done.into_iter()
            .for_each(|completer| completer.complete(Ok(())));
        assert!(flushed.try_take().unwrap().is_ok());
    }

    #[test]
    fn sticky_keyless_records_fill_one_partition_then_move_on() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let value = [3u8; 300];
        let mut partitions = Vec::new();
        for _ in 0..8 {
            let appended = accumulator.append(
                "t",
                3,
                PartitionChoice::Keyless,
                &incoming(&value),
                sink(),
                &config,
                || now,
            );
            partitions.push(appended.partition);
        }
        // Two records of 338 bytes fit a 1024-byte batch (with its 72 bytes of overhead); the
        // third seals it and starts the next partition's batch.
        assert_eq!(partitions, vec![0, 0, 1, 1, 2, 2, 0, 0]);
    }

    #[test]
    fn a_record_larger_than_batch_bytes_gets_a_batch_of_its_own() {
        let config = config();
        let mut accumulator = Accumulator::new();
        let now = Instant::now();
        let value = vec![9u8; 5000];
        append_value(&mut accumulator, &config, now, &value);
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        let batch = &drained.requests[0][0].batch;
        assert!(batch.bytes.len() > config.batch_bytes);
        let view = BatchView::validate(&batch.bytes, BATCH_BYTES_MAX).unwrap();
        assert_eq!(
            view.records().unwrap().next().unwrap().value().unwrap(),
            &value[..]
        );
    }
}
