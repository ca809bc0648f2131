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
//! of its queue. An idempotent producer stamps each batch with its producer id, epoch and the
//! partition's next sequence when the batch first leaves (`idempotence`), puts retried batches
//! back in sequence order, and lets a retry leave only once it is the partition's oldest
//! unresolved batch, so retries reach the broker in sequence order and records keep their order
//! with several requests in flight. Without idempotence only one request in flight keeps that
//! order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_protocol::api::InitProducerIdRequest;
use spate_protocol::batch::header::attributes as header_attributes;
use spate_protocol::batch::header::stamp_producer;
use spate_protocol::batch::{BatchBuilder, BatchOptions, HeaderPair, BATCH_HEADER_BYTES};
use spate_protocol::constants::BATCH_BYTES_MAX;

use crate::completion::Completer;
use crate::config::{KeylessPartitioning, ProducerConfig};
use crate::error::Error;
use crate::producer::idempotence::{BatchStamp, PartitionSequences, ProducerIdentity};
use crate::producer::transaction::{Gate, Transaction};

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
    pub(crate) record_count: u32,
    /// Set when an idempotent producer's batch first leaves; kept for every retry.
    pub(crate) stamp: Option<BatchStamp>,
    pub(crate) deliveries: Deliveries,
    pub(crate) memory_bytes: usize,
    pub(crate) generation: u64,
    pub(crate) attempts: u32,
    /// After this the batch fails instead of being retried.
    pub(crate) deadline: Instant,
    pub(crate) last_error: Option<Error>,
}

/// A batch whose attempts are over, with its base offset (`None` under acks=none) or error.
pub(crate) type Finished = (Outbound, Result<Option<u64>, Error>);

#[derive(Default)]
struct PartitionQueue {
    open: Option<OpenBatch>,
    /// Stamped batches (retries, in sequence order) first, then batches that never left.
    ready: VecDeque<ReadyBatch>,
    inflight: usize,
    backoff_until: Option<Instant>,
    /// The idempotent producer's sequences; unused otherwise.
    sequences: PartitionSequences<Finished>,
}

struct TopicQueues {
    name: Arc<str>,
    partitions: Vec<PartitionQueue>,
    /// Keyless records go here until a batch of it is sealed.
    sticky_partition: u32,
    sticky_opened_batch: bool,
    next_round_robin: u32,
    random: Random,
}

/// A batch on its way out, with where it goes.
pub(crate) struct Outbound {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    pub(crate) batch: ReadyBatch,
}

/// Where an idempotent producer stands with its identity (producer id and epoch).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdentityState {
    /// Not asked for yet: asked for once a batch is ready to leave.
    Missing,
    /// An InitProducerId request is under way: nothing is stamped or retried meanwhile.
    Requesting,
    Known(ProducerIdentity),
}

/// What one drain produced.
pub(crate) struct Drained {
    /// Each element becomes one produce request.
    pub(crate) requests: Vec<Vec<Outbound>>,
    /// Ready batches past their delivery deadline, to be failed.
    pub(crate) expired: Vec<Outbound>,
    /// Batches of a producer that failed fatally, with the error that failed it.
    pub(crate) failed: Vec<(Outbound, Error)>,
    /// An InitProducerId request the sender must make: the first identity, or an epoch bump.
    pub(crate) identity_request: Option<InitProducerIdRequest>,
    /// A transactional producer's partitions to add to the transaction before their batches
    /// leave (marked as being added).
    pub(crate) partitions_to_add: Vec<(Arc<str>, u32)>,
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
    /// The idempotent producer's identity.
    identity: IdentityState,
    /// A partition's sequences broke (a stamped batch failed): once nothing is in flight the
    /// producer bumps its epoch and restarts every partition's sequence at 0 (KIP-360). New
    /// batches wait until then; retries of unbroken partitions still leave.
    bump_pending: bool,
    /// Set once the producer can send nothing more (fenced, or the broker cannot give it an
    /// identity): every batch fails with it.
    fatal: Option<Error>,
    /// Finished batches to be told, in the order they may be told (each partition's in send
    /// order). Whoever tells takes them all, so the order does not depend on which task runs
    /// first. Bounded by the batches in existence, which buffer memory bounds.
    due: VecDeque<Finished>,
    /// A transactional producer's transaction; `None` for any other producer. Its identity
    /// comes from `init_transactions` and its epoch bumps from `abort_transaction`, never
    /// from the sender.
    transaction: Option<Transaction>,
}

impl Accumulator {
    /// The state of a producer; `transactional` for one with a `transactional_id`.
    pub(crate) fn new(transactional: bool) -> Self {
        Self {
            topics: Vec::new(),
            topic_indexes: HashMap::new(),
            last_topic_index: None,
            generation: 0,
            unfinished: BTreeMap::new(),
            flush_waiters: Vec::new(),
            preallocated_bytes: 0,
            identity: IdentityState::Missing,
            bump_pending: false,
            fatal: None,
            due: VecDeque::new(),
            transaction: transactional.then(Transaction::default),
        }
    }

    /// The transaction of a transactional producer.
    pub(crate) fn transaction_mut(&mut self) -> &mut Transaction {
        self.transaction
            .as_mut()
            .expect("only a transactional producer has a transaction")
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
            failed: Vec::new(),
            identity_request: None,
            partitions_to_add: Vec::new(),
            wake_at: None,
        };
        if let Some(error) = &self.fatal {
            let error = error.clone();
            self.fail_all(config, error, &mut drained.failed);
            return drained;
        }
        let idempotent = config.is_idempotent();
        let identity = match self.identity {
            IdentityState::Known(identity) => Some(identity),
            IdentityState::Missing | IdentityState::Requesting => None,
        };
        // New batches are stamped only under an identity that no broken sequence waits to
        // replace.
        let stamp_with = identity.filter(|_| !self.bump_pending);
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
                if let (Some(transaction), false) = (&self.transaction, queue.ready.is_empty()) {
                    match transaction.gate(&queues.name, partition) {
                        Gate::Open => {}
                        Gate::Wait => continue,
                        Gate::Add => {
                            drained
                                .partitions_to_add
                                .push((queues.name.clone(), partition));
                            continue;
                        }
                        Gate::Fail(error) => {
                            for batch in queue.ready.drain(..) {
                                let outbound = Outbound {
                                    topic: queues.name.clone(),
                                    partition,
                                    batch,
                                };
                                drained.failed.push((outbound, error.clone()));
                            }
                            continue;
                        }
                    }
                }
                let mut slot = 0;
                while queue.inflight < config.partition_inflight_requests_max {
                    let Some(front) = queue.ready.front() else {
                        break;
                    };
                    if idempotent && !queue.may_leave(front, identity, stamp_with, config) {
                        // It waits for an identity, an earlier batch or a restamp; if those
                        // take too long its deadline must still fail it, with no answer to
                        // wake the sender then. The front batch is the oldest.
                        drained.wake_at = earliest(drained.wake_at, front.deadline);
                        break;
                    }
                    let mut batch = queue.ready.pop_front().expect("checked non-empty");
                    if idempotent && batch.stamp.is_none() {
                        let identity = stamp_with.expect("checked by may_leave");
                        let stamp = queue.sequences.stamp_next(identity, batch.record_count);
                        write_stamp(&mut batch, stamp);
                    }
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
        match &mut self.transaction {
            Some(transaction) => transaction.adding(&drained.partitions_to_add),
            None if idempotent => drained.identity_request = self.identity_request(),
            None => {}
        }
        drained
    }

    /// The InitProducerId request due now, if any (and marks it under way): the first identity
    /// once a batch waits to leave, or an epoch bump once a broken sequence waits for one and
    /// nothing is in flight (an answer still to come could otherwise carry the old epoch's
    /// sequences past the restamp).
    fn identity_request(&mut self) -> Option<InitProducerIdRequest> {
        let queues = || self.topics.iter().flat_map(|queues| &queues.partitions);
        let request = match self.identity {
            IdentityState::Missing if queues().any(|queue| !queue.ready.is_empty()) => {
                InitProducerIdRequest::default()
            }
            IdentityState::Known(identity)
                if self.bump_pending && queues().all(|queue| queue.inflight == 0) =>
            {
                InitProducerIdRequest {
                    producer_id: identity.producer_id,
                    producer_epoch: identity.producer_epoch,
                    ..InitProducerIdRequest::default()
                }
            }
            _ => return None,
        };
        self.identity = IdentityState::Requesting;
        Some(request)
    }

    /// Takes the identity InitProducerId gave. After an epoch bump every partition's sequence
    /// starts again at 0 and every stamped batch not yet answered is restamped in send order
    /// (none is in flight: the bump waited for that).
    pub(crate) fn install_identity(&mut self, identity: ProducerIdentity) {
        assert_eq!(
            self.identity,
            IdentityState::Requesting,
            "an identity is installed once per request"
        );
        self.identity = IdentityState::Known(identity);
        self.bump_pending = false;
        for queues in &mut self.topics {
            for queue in &mut queues.partitions {
                assert_eq!(queue.inflight, 0, "nothing is in flight across a restamp");
                queue.sequences.restart();
                for batch in &mut queue.ready {
                    let Some(stamp) = batch.stamp else {
                        // Stamped batches come first.
                        break;
                    };
                    let restamped = queue.sequences.restamp(stamp, identity, batch.record_count);
                    write_stamp(batch, restamped);
                }
            }
        }
    }

    /// A transactional producer asks for its identity itself (`init_transactions`, and the
    /// epoch bump after an abort): marks the request under way, as the sender's own would.
    pub(crate) fn begin_identity_request(&mut self) {
        assert!(
            self.identity != IdentityState::Requesting,
            "one identity request at a time"
        );
        self.identity = IdentityState::Requesting;
    }

    /// Whether a broken sequence waits for the next epoch (a transactional producer takes it
    /// after the abort).
    pub(crate) fn needs_epoch_bump(&self) -> bool {
        self.bump_pending
    }

    /// The identity this producer holds, if it holds one now.
    pub(crate) fn identity(&self) -> Option<ProducerIdentity> {
        match self.identity {
            IdentityState::Known(identity) => Some(identity),
            IdentityState::Missing | IdentityState::Requesting => None,
        }
    }

    /// Fails the producer for good: the next drain fails every batch not in flight with `error`
    /// (in-flight ones fail as they come back), and nothing is sent any more.
    pub(crate) fn fail_producer(&mut self, error: Error) {
        if self.fatal.is_none() {
            self.fatal = Some(error);
        }
    }

    pub(crate) fn fatal(&self) -> Option<&Error> {
        self.fatal.as_ref()
    }

    /// Seals every open batch and moves every waiting batch to `failed` with `error`.
    fn fail_all(
        &mut self,
        config: &ProducerConfig,
        error: Error,
        failed: &mut Vec<(Outbound, Error)>,
    ) {
        for queues in &mut self.topics {
            for (partition, queue) in queues.partitions.iter_mut().enumerate() {
                if queue.open.is_some() {
                    seal_open(queue, config, &mut self.preallocated_bytes);
                }
                for batch in queue.ready.drain(..) {
                    let outbound = Outbound {
                        topic: queues.name.clone(),
                        partition: partition as u32,
                        batch,
                    };
                    failed.push((outbound, error.clone()));
                }
            }
        }
    }

    /// Whether an OutOfOrderSequence answer for `outbound` only says that an earlier batch of
    /// its partition is missing (that one is unresolved, or the partition waits for a restamp),
    /// so the batch is resent after it; otherwise the broker lost records it had acknowledged.
    pub(crate) fn out_of_order_is_retriable(&self, outbound: &Outbound) -> bool {
        let stamp = outbound
            .batch
            .stamp
            .expect("only stamped batches are refused as out of order");
        let sequences = &self.queue(&outbound.topic, outbound.partition).sequences;
        sequences.is_awaiting_restamp() || !sequences.is_oldest_unresolved(stamp.ordinal)
    }

    /// Takes the stamped batches of a partition out of its queue (they wait for a retry): they
    /// fail with the partition's broken sequence, as Kafka's producer fails them.
    pub(crate) fn take_stamped_ready(&mut self, topic: &Arc<str>, partition: u32) -> Vec<Outbound> {
        let queue = self.queue_mut(topic, partition);
        let stamped = queue
            .ready
            .iter()
            .take_while(|batch| batch.stamp.is_some())
            .count();
        queue
            .ready
            .drain(..stamped)
            .map(|batch| Outbound {
                topic: topic.clone(),
                partition,
                batch,
            })
            .collect()
    }

    /// Takes batches whose attempts are over and queues those that may be told now
    /// ([`Accumulator::take_due`]): every partition's batches in the order they were sent. A
    /// stamped batch answered while an earlier one of its partition is unresolved waits for it.
    /// A stamped batch that failed without the broker surely holding it breaks its partition's
    /// sequence: the producer bumps its epoch before it stamps anything new. Returns the
    /// buffer memory of the batches that became due (no longer needed: their bytes are sent).
    pub(crate) fn resolve(&mut self, finished: Vec<Finished>) -> usize {
        let mut due = Vec::with_capacity(finished.len());
        if let Some(transaction) = &mut self.transaction {
            // A record that did not make it spoils its transaction: it cannot commit.
            for (_, result) in &finished {
                if let Err(error) = result {
                    transaction.spoil(error.clone());
                }
            }
        }
        for (outbound, result) in finished {
            let Some(stamp) = outbound.batch.stamp else {
                due.push((outbound, result));
                continue;
            };
            let breaks = match &result {
                Ok(_) => SequenceBreak::None,
                Err(error) => sequence_break(error),
            };
            let queue = self.queue_mut(&outbound.topic, outbound.partition);
            match breaks {
                SequenceBreak::None => {}
                SequenceBreak::LaterBatchesFail => self.bump_pending = true,
                SequenceBreak::LaterBatchesRestamped => {
                    queue.sequences.await_restamp();
                    self.bump_pending = true;
                }
            }
            let queue = self.queue_mut(&outbound.topic, outbound.partition);
            queue
                .sequences
                .resolve(stamp.ordinal, (outbound, result), &mut due);
        }
        let memory_bytes = due
            .iter()
            .map(|(outbound, _)| outbound.batch.memory_bytes)
            .sum();
        self.due.extend(due);
        memory_bytes
    }

    /// Every finished batch that may be told, in the order to tell them.
    pub(crate) fn take_due(&mut self) -> VecDeque<Finished> {
        std::mem::take(&mut self.due)
    }

    /// Puts a batch whose attempt failed retriably back at the front of its queue: a stamped
    /// one in sequence order among the other stamped ones (attempts of one partition may come
    /// back in any order). `backoff_until` pauses the partition; `None` resends as soon as the
    /// batch's turn comes (an out-of-order answer that only waits for an earlier batch).
    pub(crate) fn requeue(&mut self, outbound: Outbound, backoff_until: Option<Instant>) {
        let queue = self.queue_mut(&outbound.topic, outbound.partition);
        assert!(
            queue.inflight > 0,
            "requeued a batch that was not in flight"
        );
        queue.inflight -= 1;
        if let Some(until) = backoff_until {
            queue.backoff_until = Some(until);
        }
        match outbound.batch.stamp {
            None => queue.ready.push_front(outbound.batch),
            Some(stamp) => {
                let position = queue
                    .ready
                    .iter()
                    .position(|batch| {
                        batch
                            .stamp
                            .is_none_or(|other| other.ordinal > stamp.ordinal)
                    })
                    .unwrap_or(queue.ready.len());
                queue.ready.insert(position, outbound.batch);
            }
        }
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

    fn queue(&self, topic: &str, partition: u32) -> &PartitionQueue {
        let index = *self
            .topic_indexes
            .get(topic)
            .expect("a batch's topic stays in the accumulator");
        &self.topics[index].partitions[partition as usize]
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
                        let mut random = Random::new();
                        self.topics.push(TopicQueues {
                            name: name.clone(),
                            partitions: Vec::new(),
                            // Random, so that short-lived producers (one `spate produce` per
                            // line) do not all fill partition 0.
                            sticky_partition: random.next_u32(),
                            sticky_opened_batch: false,
                            next_round_robin: 0,
                            random,
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
    /// Whether an idempotent producer's `batch` at the front of the queue may leave now. A retry
    /// leaves only as the partition's oldest unresolved batch (so retries reach the broker in
    /// sequence order, one at a time, as in Kafka's producer), and not while the partition
    /// waits for its restamp. A new batch needs an identity to be stamped with, and room among
    /// the unresolved batches the broker can recognise a copy of.
    fn may_leave(
        &self,
        batch: &ReadyBatch,
        identity: Option<ProducerIdentity>,
        stamp_with: Option<ProducerIdentity>,
        config: &ProducerConfig,
    ) -> bool {
        match batch.stamp {
            Some(stamp) => {
                debug_assert!(
                    identity.is_none_or(|identity| identity == stamp.identity),
                    "a waiting batch is restamped when the identity changes"
                );
                identity.is_some()
                    && !self.sequences.is_awaiting_restamp()
                    && self.sequences.is_oldest_unresolved(stamp.ordinal)
            }
            None => {
                stamp_with.is_some()
                    && self.sequences.unresolved_count() < config.partition_inflight_requests_max
            }
        }
    }

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
                // Move on once the batch we started here has been sealed (Kafka's KIP-480), to
                // a random other partition, as Kafka's sticky partitioner does.
                if self.sticky_opened_batch && self.partitions[current as usize].open.is_none() {
                    let step = if count > 1 {
                        1 + self.random.next_u32() % (count - 1)
                    } else {
                        0
                    };
                    self.sticky_partition = (current + step) % count;
                    self.sticky_opened_batch = false;
                }
                self.sticky_partition % count
            }
        }
    }
}

/// A small xorshift generator for keyless partition choices: they need spread, not secrecy, and
/// each producer's topic seeds its own from the process's random hasher keys.
#[derive(Debug)]
struct Random(u64);

impl Random {
    fn new() -> Self {
        use std::hash::{BuildHasher, Hasher};
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        // xorshift never leaves zero.
        Self(seed | 1)
    }

    fn next_u32(&mut self) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 32) as u32
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
    // A transactional producer's batches say so: a read_committed consumer drops those of
    // aborted transactions, and the broker checks they belong to an ongoing transaction.
    let attributes = if config.transactional_id.is_some() {
        header_attributes::TRANSACTIONAL
    } else {
        0
    };
    let builder = BatchBuilder::new(BatchOptions {
        batch_bytes_max,
        initial_capacity_bytes,
        attributes,
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
    let record_count =
        u32::try_from(open.builder.record_count()).expect("bounded by BATCH_BYTES_MAX");
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
        record_count,
        stamp: None,
        deliveries: open.deliveries,
        memory_bytes: open.memory_bytes,
        generation: open.generation,
        attempts: 0,
        deadline: open.created_at + config.delivery_timeout,
        last_error: None,
    });
}

/// How a stamped batch's failure leaves its partition's sequence.
enum SequenceBreak {
    /// Written (a duplicate), or the producer is done anyway (fenced): the sequence goes on.
    None,
    /// The broker lost what it had acknowledged: the later unresolved batches fail too (as
    /// their answers come back), then the epoch is bumped.
    LaterBatchesFail,
    /// The broker may not hold the batch: the later unresolved batches wait for the epoch bump
    /// and are restamped from 0.
    LaterBatchesRestamped,
}

fn sequence_break(error: &Error) -> SequenceBreak {
    match error {
        Error::DuplicateSequence { .. } | Error::ProducerFenced { .. } => SequenceBreak::None,
        Error::OutOfOrderSequence { .. } => SequenceBreak::LaterBatchesFail,
        _ => SequenceBreak::LaterBatchesRestamped,
    }
}

/// Writes `stamp` into the batch bytes (and their CRC, without a pass over the records). The
/// bytes are not shared when a batch first leaves or waits for a restamp, so this copies
/// nothing; if they were, it would copy them once.
fn write_stamp(batch: &mut ReadyBatch, stamp: BatchStamp) {
    let mut bytes = BytesMut::from(std::mem::take(&mut batch.bytes));
    stamp_producer(
        &mut bytes,
        stamp.identity.producer_id,
        stamp.identity.producer_epoch,
        stamp.base_sequence,
    );
    batch.bytes = bytes.freeze();
    batch.stamp = Some(stamp);
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

    /// A producer without idempotence and one request in flight per partition: the batching
    /// tests look at batches, not at stamps.
    fn config() -> ProducerConfig {
        ProducerConfig {
            batch_bytes: 1024,
            linger: Duration::from_millis(10),
            idempotence: false,
            partition_inflight_requests_max: 1,
            ..ProducerConfig::default()
        }
    }

    #[test]
    fn a_full_batch_is_sealed_and_the_record_that_does_not_fit_opens_the_next() {
        let config = config();
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        accumulator.requeue(outbound, Some(now + Duration::from_millis(5)));
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        let mut accumulator = Accumulator::new(false);
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
        // third seals it and starts a batch on another partition, picked at random.
        for pair in partitions.chunks(2) {
            assert_eq!(pair[0], pair[1], "{partitions:?}");
            assert!(pair[0] < 3, "{partitions:?}");
        }
        for runs in partitions.chunks(2).collect::<Vec<_>>().windows(2) {
            assert_ne!(runs[0][0], runs[1][0], "{partitions:?}");
        }
    }

    #[test]
    fn sticky_keyless_records_start_on_a_random_partition() {
        let config = config();
        let now = Instant::now();
        let first_partitions: std::collections::BTreeSet<u32> = (0..64)
            .map(|_| {
                let mut accumulator = Accumulator::new(false);
                accumulator
                    .append(
                        "t",
                        4,
                        PartitionChoice::Keyless,
                        &incoming(&[1u8; 10]),
                        sink(),
                        &config,
                        || now,
                    )
                    .partition
            })
            .collect();
        // 64 producers all starting on one partition: a chance of 4 in 4^64 if the pick is
        // random.
        assert!(first_partitions.len() > 1, "{first_partitions:?}");
    }

    #[test]
    fn a_record_larger_than_batch_bytes_gets_a_batch_of_its_own() {
        let config = config();
        let mut accumulator = Accumulator::new(false);
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

    /// An idempotent producer with `inflight` requests in flight per partition, batches of
    /// 1024 bytes (a 600-byte record fills one).
    fn idempotent_config(inflight: usize) -> ProducerConfig {
        ProducerConfig {
            batch_bytes: 1024,
            linger: Duration::from_millis(10),
            idempotence: true,
            partition_inflight_requests_max: inflight,
            ..ProducerConfig::default()
        }
    }

    const IDENTITY: ProducerIdentity = ProducerIdentity {
        producer_id: 42,
        producer_epoch: 3,
    };

    /// Seals `count` batches of one 600-byte record each on partition 0 of "t".
    fn seal_batches(accumulator: &mut Accumulator, config: &ProducerConfig, count: usize) {
        for _ in 0..count {
            append_value(accumulator, config, Instant::now(), &[5u8; 600]);
        }
        accumulator.seal_all(config);
    }

    /// Every batch a drain put into requests, in request order.
    fn sent(drained: Drained) -> Vec<Outbound> {
        drained.requests.into_iter().flatten().collect()
    }

    /// (producer id, epoch, base sequence) as written in the batch bytes, whose CRC must hold.
    fn stamp_in_bytes(outbound: &Outbound) -> (i64, i16, i32) {
        let view = BatchView::validate(&outbound.batch.bytes, BATCH_BYTES_MAX)
            .expect("a stamped batch keeps a valid CRC");
        (
            view.producer_id(),
            view.producer_epoch(),
            view.base_sequence(),
        )
    }

    /// Marks answered batches finished and returns the ones due to be told.
    fn answer(accumulator: &mut Accumulator, finished: Vec<Finished>) -> Vec<Finished> {
        for (outbound, _) in &finished {
            accumulator.release_slot(&outbound.topic, outbound.partition);
        }
        accumulator.resolve(finished);
        accumulator.take_due().into()
    }

    /// An accumulator holding `IDENTITY` (its InitProducerId answered) with `count` sealed
    /// batches waiting to leave.
    fn identified_with_sealed_batches(config: &ProducerConfig, count: usize) -> Accumulator {
        let mut accumulator = Accumulator::new(false);
        accumulator.identity = IdentityState::Requesting;
        accumulator.install_identity(IDENTITY);
        seal_batches(&mut accumulator, config, count);
        accumulator
    }

    fn transactional_config() -> ProducerConfig {
        ProducerConfig {
            transactional_id: Some("t".into()),
            ..idempotent_config(5)
        }
    }

    /// A transactional producer after `init_transactions` (holding `IDENTITY`), in a
    /// transaction, with `count` sealed batches on partition 0 of "t".
    fn transaction_with_sealed_batches(config: &ProducerConfig, count: usize) -> Accumulator {
        assert!(config.transactional_id.is_some());
        let mut accumulator = Accumulator::new(true);
        accumulator.transaction_mut().begin_init().unwrap();
        accumulator.begin_identity_request();
        accumulator.install_identity(IDENTITY);
        accumulator.transaction_mut().end_init(true);
        accumulator.transaction_mut().begin().unwrap();
        seal_batches(&mut accumulator, config, count);
        accumulator
    }

    #[test]
    fn a_transactional_batch_leaves_only_once_its_partition_was_added_to_the_transaction() {
        let config = transactional_config();
        let mut accumulator = transaction_with_sealed_batches(&config, 2);
        let now = Instant::now();
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert!(drained.requests.is_empty(), "nothing leaves before the add");
        assert!(
            drained.identity_request.is_none(),
            "a transactional producer's identity is init_transactions'"
        );
        let topic: Arc<str> = Arc::from("t");
        assert_eq!(drained.partitions_to_add, vec![(topic.clone(), 0)]);
        let again = accumulator.drain(&config, now, SealWhen::Lingered);
        assert!(
            again.partitions_to_add.is_empty() && again.requests.is_empty(),
            "one add at a time, and the batches wait for it"
        );
        accumulator.transaction_mut().added(&[(topic, 0)]);
        let sent = sent(accumulator.drain(&config, now, SealWhen::Lingered));
        assert_eq!(sent.len(), 2);
        assert_eq!(stamp_in_bytes(&sent[0]), (42, 3, 0));
        let view = BatchView::validate(&sent[0].batch.bytes, BATCH_BYTES_MAX).unwrap();
        assert_ne!(
            view.attributes() & header_attributes::TRANSACTIONAL,
            0,
            "a read_committed consumer tells a transaction's batches by this bit"
        );
    }

    #[test]
    fn an_abort_fails_the_transactions_batches_that_never_left() {
        let config = transactional_config();
        let mut accumulator = transaction_with_sealed_batches(&config, 2);
        let now = Instant::now();
        let topic: Arc<str> = Arc::from("t");
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert_eq!(drained.partitions_to_add.len(), 1);
        accumulator.transaction_mut().added(&[(topic, 0)]);
        accumulator.transaction_mut().begin_abort().unwrap();
        append_value(&mut accumulator, &config, now, &[1u8; 10]);
        accumulator.seal_all(&config);
        let drained = accumulator.drain(&config, now, SealWhen::Always);
        assert!(drained.requests.is_empty());
        assert_eq!(drained.failed.len(), 3);
        assert!(drained
            .failed
            .iter()
            .all(|(_, error)| matches!(error, Error::TransactionAborted)));
        let due = answer_failed(&mut accumulator, drained.failed);
        assert_eq!(due, 3, "unstamped batches are told at once");
        assert!(!accumulator.needs_epoch_bump(), "no sequence was used");
    }

    fn answer_failed(accumulator: &mut Accumulator, failed: Vec<(Outbound, Error)>) -> usize {
        accumulator.resolve(
            failed
                .into_iter()
                .map(|(outbound, error)| (outbound, Err(error)))
                .collect(),
        );
        accumulator.take_due().len()
    }

    /// Two stamped batches sent (sequences 0 and 1) and not yet answered: the accumulator, the
    /// first and the second.
    fn two_batches_in_flight(config: &ProducerConfig) -> (Accumulator, Outbound, Outbound) {
        let mut accumulator = identified_with_sealed_batches(config, 2);
        let mut batches = sent(accumulator.drain(config, Instant::now(), SealWhen::Lingered));
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();
        (accumulator, first, second)
    }

    fn timeout() -> Error {
        Error::Timeout {
            operation: "test",
            elapsed: Duration::from_secs(1),
        }
    }

    #[test]
    fn nothing_leaves_an_idempotent_producer_before_it_has_an_identity() {
        let config = idempotent_config(5);
        let mut accumulator = Accumulator::new(false);
        let drained = accumulator.drain(&config, Instant::now(), SealWhen::Lingered);
        assert!(
            drained.identity_request.is_none(),
            "no identity is asked for while nothing waits to leave"
        );
        seal_batches(&mut accumulator, &config, 2);
        let drained = accumulator.drain(&config, Instant::now(), SealWhen::Lingered);
        assert!(drained.requests.is_empty());
        assert_eq!(
            drained.identity_request,
            Some(InitProducerIdRequest::default()),
            "a new producer asks for a new id"
        );
        let again = accumulator.drain(&config, Instant::now(), SealWhen::Lingered);
        assert!(again.identity_request.is_none(), "one request at a time");

        accumulator.install_identity(IDENTITY);
        assert_eq!(accumulator.identity(), Some(IDENTITY));
        let batches = sent(accumulator.drain(&config, Instant::now(), SealWhen::Lingered));
        assert_eq!(batches.len(), 2);
    }

    #[test]
    fn batches_are_stamped_in_send_order_when_they_first_leave_and_keep_the_stamp_on_retry() {
        let config = idempotent_config(5);
        let mut accumulator = identified_with_sealed_batches(&config, 3);
        let now = Instant::now();
        let mut batches = sent(accumulator.drain(&config, now, SealWhen::Lingered));
        let stamps: Vec<(i64, i16, i32)> = batches.iter().map(stamp_in_bytes).collect();
        assert_eq!(
            stamps,
            vec![(42, 3, 0), (42, 3, 1), (42, 3, 2)],
            "one record per batch: sequences 0, 1, 2"
        );

        let first = batches.remove(0);
        let first_bytes = first.batch.bytes.clone();
        accumulator.requeue(first, Some(now + Duration::from_millis(5)));
        let retried =
            sent(accumulator.drain(&config, now + Duration::from_millis(5), SealWhen::Lingered));
        assert_eq!(retried.len(), 1);
        assert_eq!(
            retried[0].batch.bytes, first_bytes,
            "a retry carries the same stamp"
        );
    }

    #[test]
    fn retries_go_back_in_sequence_order_and_leave_one_at_a_time_from_the_oldest() {
        let config = idempotent_config(5);
        let mut accumulator = identified_with_sealed_batches(&config, 3);
        let now = Instant::now();
        let batches = sent(accumulator.drain(&config, now, SealWhen::Lingered));
        // The connection broke: the attempts come back in any order.
        let mut batches: Vec<Option<Outbound>> = batches.into_iter().map(Some).collect();
        for index in [2, 0, 1] {
            let outbound = batches[index].take().unwrap();
            accumulator.requeue(outbound, None);
        }
        // A new batch sealed meanwhile waits behind the retries.
        seal_batches(&mut accumulator, &config, 1);

        let mut drains = Vec::new();
        while drains.iter().map(Vec::len).sum::<usize>() < 4 {
            let leaving = sent(accumulator.drain(&config, now, SealWhen::Lingered));
            assert!(!leaving.is_empty(), "each answer lets the next batch leave");
            drains.push(
                leaving
                    .iter()
                    .map(|outbound| stamp_in_bytes(outbound).2)
                    .collect(),
            );
            let answered = leaving.into_iter().map(|outbound| (outbound, Ok(Some(0))));
            answer(&mut accumulator, answered.collect());
        }
        assert_eq!(
            drains,
            vec![vec![0], vec![1], vec![2, 3]],
            "retries leave one at a time, oldest first; the new batch follows the last one"
        );
    }

    #[test]
    fn a_batch_answered_before_an_earlier_unresolved_one_is_told_after_it() {
        let config = idempotent_config(5);
        let (mut accumulator, first, second) = two_batches_in_flight(&config);
        assert!(answer(&mut accumulator, vec![(second, Ok(Some(1)))]).is_empty());
        let due = answer(&mut accumulator, vec![(first, Ok(Some(0)))]);
        let told: Vec<Option<u64>> = due
            .iter()
            .map(|(_, result)| *result.as_ref().unwrap())
            .collect();
        assert_eq!(told, vec![Some(0), Some(1)]);
    }

    #[test]
    fn a_failed_stamped_batch_bumps_the_epoch_once_nothing_is_in_flight_and_restamps_from_zero() {
        let config = idempotent_config(5);
        let mut accumulator = identified_with_sealed_batches(&config, 3);
        let now = Instant::now();
        let mut batches = sent(accumulator.drain(&config, now, SealWhen::Lingered));
        let third = batches.pop().unwrap();
        let second = batches.pop().unwrap();
        let first = batches.pop().unwrap();

        // The first gives up (its delivery time ran out): sequences 1 and 2 no longer follow.
        let due = answer(&mut accumulator, vec![(first, Err(timeout()))]);
        assert_eq!(due.len(), 1, "the failed batch is told at once");
        accumulator.requeue(second, None);
        seal_batches(&mut accumulator, &config, 1);
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert!(
            drained.requests.is_empty(),
            "the partition waits for its restamp"
        );
        assert!(
            drained.identity_request.is_none(),
            "the third batch is still in flight"
        );

        accumulator.requeue(third, None);
        let drained = accumulator.drain(&config, now, SealWhen::Lingered);
        assert_eq!(
            drained.identity_request,
            Some(InitProducerIdRequest {
                producer_id: 42,
                producer_epoch: 3,
                ..InitProducerIdRequest::default()
            }),
            "with nothing in flight the producer asks for its next epoch"
        );
        let bumped = ProducerIdentity {
            producer_epoch: 4,
            ..IDENTITY
        };
        accumulator.install_identity(bumped);
        let mut stamps = Vec::new();
        while stamps.len() < 3 {
            let leaving = sent(accumulator.drain(&config, now, SealWhen::Lingered));
            assert!(!leaving.is_empty(), "each answer lets the next batch leave");
            stamps.extend(leaving.iter().map(stamp_in_bytes));
            let answered = leaving.into_iter().map(|outbound| (outbound, Ok(Some(0))));
            answer(&mut accumulator, answered.collect());
        }
        assert_eq!(
            stamps,
            vec![(42, 4, 0), (42, 4, 1), (42, 4, 2)],
            "the two retries and then the new batch, from sequence 0 under the new epoch"
        );
    }

    #[test]
    fn an_out_of_order_answer_is_retriable_only_behind_an_unresolved_earlier_batch() {
        let config = idempotent_config(5);
        let (mut accumulator, first, second) = two_batches_in_flight(&config);
        assert!(accumulator.out_of_order_is_retriable(&second));
        assert!(!accumulator.out_of_order_is_retriable(&first));
        answer(&mut accumulator, vec![(first, Ok(Some(0)))]);
        assert!(
            !accumulator.out_of_order_is_retriable(&second),
            "nothing earlier is missing any more"
        );
    }

    #[test]
    fn a_batch_waiting_for_an_identity_still_expires_at_its_deadline() {
        let config = idempotent_config(5);
        let mut accumulator = Accumulator::new(false);
        let now = Instant::now();
        append_value(&mut accumulator, &config, now, b"v");
        accumulator.seal_all(&config);
        let waiting = accumulator.drain(&config, now, SealWhen::Lingered);
        assert!(waiting.identity_request.is_some());
        let deadline = now + config.delivery_timeout;
        assert_eq!(
            waiting.wake_at,
            Some(deadline),
            "nothing else would wake the sender to fail it"
        );
        let expired = accumulator.drain(&config, deadline, SealWhen::Lingered);
        assert_eq!(expired.expired.len(), 1);
    }

    #[test]
    fn a_producer_that_failed_for_good_fails_every_batch_not_in_flight() {
        let config = idempotent_config(5);
        let mut accumulator = Accumulator::new(false);
        seal_batches(&mut accumulator, &config, 2);
        append_value(&mut accumulator, &config, Instant::now(), b"open");
        accumulator.fail_producer(Error::ProducerFenced {
            producer_id: 42,
            producer_epoch: 3,
        });
        let drained = accumulator.drain(&config, Instant::now(), SealWhen::Lingered);
        assert!(drained.requests.is_empty());
        assert!(drained.identity_request.is_none());
        assert_eq!(
            drained.failed.len(),
            3,
            "two sealed batches and the open one"
        );
        assert!(drained
            .failed
            .iter()
            .all(|(_, error)| matches!(error, Error::ProducerFenced { .. })));
    }

    #[test]
    fn acks_none_sends_unstamped_batches_without_asking_for_an_identity() {
        let config = ProducerConfig {
            acks: spate_protocol::api::Acks::None,
            ..idempotent_config(5)
        };
        let mut accumulator = Accumulator::new(false);
        seal_batches(&mut accumulator, &config, 2);
        let drained = accumulator.drain(&config, Instant::now(), SealWhen::Lingered);
        assert!(drained.identity_request.is_none());
        let batches = sent(drained);
        assert_eq!(batches.len(), 2);
        assert!(batches
            .iter()
            .all(|outbound| stamp_in_bytes(outbound) == (-1, -1, -1)));
    }
}
