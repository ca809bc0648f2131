//! One offsets partition as its coordinator holds it: the groups and the store of committed
//! offsets it replays from the log when first used, and the single writer that appends to the
//! log afterwards.
//!
//! Writes queue in order. The writer takes what is queued (up to about one batch), appends it
//! with acks=all through the partition's owner, applies it to the store only once it is
//! durable, then answers the writers: a commit is acknowledged after its record is durable, and
//! reads of the store never see a record that could still be lost. The log is compacted by the
//! storage engine like any topic with `cleanup.policy=compact` (the shard's compaction task):
//! every record's key names what it is about, so the last record of each key is all replay
//! needs; aborted transactional records are removed by the pass, open ones never.
//!
//! Transactional offset commits go through the same queue, each in a round of its own: a
//! transactional batch of the committing producer (its id and epoch, the next sequence the
//! store knows for it here, attribute TRANSACTIONAL) appended with the verification guard the
//! commit took from the partition before it was queued, so the partition's storage tracks the
//! transaction (its last stable offset, a hanging transaction refused). The transaction's end
//! is a marker (a control batch) appended through the owner's marker path, also in a round of
//! its own, and applied to the store once durable. Replay reads all three kinds of batch.
//!
//! Shard-local (`Rc`, `RefCell`): owned by the coordinator of the shard the partition is
//! coordinated on (`coordinator`), which runs the group requests against it. The log is reached
//! only through shard requests, never the storage engine.

use std::cell::RefCell;
use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use spate_protocol::api::TopicPartitionList;
use spate_protocol::batch::header::{attributes, sequence_after};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::{ErrorCode, WireError};

use super::coordinator::{coordinator_error_code, wall_clock_ms};
use super::membership::Group;
use super::records::LogRecord;
use super::store::OffsetStore;
use super::GroupServices;
use crate::catalog::{ShardId, TopicMetadata};
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{
    FetchOutcome, FetchPartition, Isolation, PartitionError, PartitionKey, PartitionState,
    ProduceAcks, ProducePartition, TxnMarker, TxnResult, VerificationGuard,
};
use crate::shard::Shard;

/// One offsets partition this shard coordinates: its groups, its store and its write queue.
/// Shard-local; created when first used, replaced if the offsets topic is created again.
pub(super) struct CoordinatedPartition {
    pub(super) partition: u32,
    pub(super) topic: Arc<TopicMetadata>,
    pub(super) groups: RefCell<BTreeMap<String, Group>>,
    pub(super) store: RefCell<OffsetStore>,
    queue: RefCell<VecDeque<WriteItem>>,
    /// Bounds the commits waiting for the writer (membership records do not wait for a slot:
    /// they must queue in the order their states were decided).
    slots: Semaphore,
    /// Wakes the writer; one slot, a second ring while one is pending is not needed.
    doorbell: LocalSender<()>,
    /// The offsets partition's leader epoch this broker loaded it under. Leadership that moved
    /// away and back comes back under a higher epoch, and the state is replayed again: another
    /// broker's coordinator wrote to the log meanwhile.
    pub(super) leader_epoch: i32,
    /// Closed when this broker stops coordinating the partition (its leadership moved): parked
    /// joins and syncs then answer NOT_COORDINATOR, and the writer fails what is queued.
    deposed: Semaphore,
    deposed_flag: std::cell::Cell<bool>,
}

pub(super) enum WriteOp {
    Records(Vec<LogRecord>),
    /// Offsets of a transaction: pending until the producer's marker.
    Transactional {
        producer: TransactionalProducer,
        records: Vec<LogRecord>,
        guard: Option<VerificationGuard>,
    },
    /// The end of the producer's transaction in this partition.
    Marker {
        producer: TransactionalProducer,
        commit: bool,
    },
    /// Tombstones for everything the group has when the writer reaches this item.
    DeleteGroup(String),
    /// Tombstones for those of the named offsets that exist when the writer reaches this item.
    DeleteOffsets {
        group: String,
        topics: Vec<TopicPartitionList>,
    },
}

/// The producer of a transactional write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TransactionalProducer {
    pub(super) producer_id: i64,
    pub(super) producer_epoch: i16,
}

struct WriteItem {
    op: WriteOp,
    done: LocalSender<Result<(), ErrorCode>>,
}

pub(super) type WriteDone = LocalReceiver<Result<(), ErrorCode>>;

impl CoordinatedPartition {
    fn key(&self) -> PartitionKey {
        PartitionKey {
            topic_id: self.topic.id,
            partition: self.partition,
        }
    }

    fn owner(&self) -> Option<ShardId> {
        self.topic.owner_of(self.partition)
    }

    /// Queues a write now (so its place in the log is decided now) and returns what will say
    /// when it is durable.
    pub(super) fn enqueue(&self, op: WriteOp) -> WriteDone {
        let (done, finished) = local_channel::new_bounded(1);
        self.queue.borrow_mut().push_back(WriteItem { op, done });
        // Full means the writer has a ring pending already.
        let _ = self.doorbell.try_send(());
        finished
    }

    /// Queues a write once a slot is free and waits until it is durable and applied.
    pub(super) async fn write(&self, op: WriteOp) -> Result<(), ErrorCode> {
        let _slot = self
            .slots
            .acquire_permit(1)
            .await
            .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
        let finished = self.enqueue(op);
        finished
            .recv()
            .await
            .unwrap_or(Err(ErrorCode::CoordinatorNotAvailable))
    }

    /// This broker no longer coordinates the partition: wakes every parked request and stops
    /// the writer from appending what is queued.
    pub(super) fn depose(&self) {
        self.deposed_flag.set(true);
        self.deposed.close();
        // Full means the writer has a ring pending already.
        let _ = self.doorbell.try_send(());
    }

    pub(super) fn is_deposed(&self) -> bool {
        self.deposed_flag.get()
    }

    /// Returns once the partition is deposed.
    pub(super) async fn deposed(&self) {
        // No permit is ever added: the wait ends only when `depose` closes the semaphore.
        let _ = self.deposed.acquire_permit(1).await;
    }

    pub(super) fn knows_group(&self, group_id: &str) -> bool {
        self.groups.borrow().contains_key(group_id) || self.store.borrow().has_group(group_id)
    }

    pub(super) fn group_count(&self) -> usize {
        let groups = self.groups.borrow();
        let store = self.store.borrow();
        let mut ids = store.group_ids();
        ids.extend(groups.keys().map(String::as_str));
        ids.len()
    }
}

/// Replays an offsets partition from its log start to its high watermark.
pub(super) async fn load<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    topic: Arc<TopicMetadata>,
    leader_epoch: i32,
) -> Result<Rc<CoordinatedPartition>, ErrorCode> {
    let coordinator = &services.groups();
    let limits = coordinator.limits();
    let began = Instant::now();
    let key = PartitionKey {
        topic_id: topic.id,
        partition,
    };
    let owner = topic
        .owner_of(partition)
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let state = partition_state(services, owner, key).await?;
    let mut store = OffsetStore::default();
    let mut offset = state.log_start_offset;
    let mut unreadable = 0usize;
    while offset < state.high_watermark {
        let fetched = fetch(services, owner, key, offset, limits.replay_read_bytes).await?;
        if fetched.batches.is_empty() {
            // Below the high watermark there is always a batch to read.
            tracing::error!(
                partition,
                offset,
                "offsets partition returned no batch below its high watermark"
            );
            return Err(ErrorCode::CoordinatorLoadInProgress);
        }
        for batch in &fetched.batches {
            offset = replay_batch(batch, &mut store, &mut unreadable)?;
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            partition,
            unreadable,
            "offsets records this build cannot read were skipped"
        );
    }
    let now_ms = coordinator.now_ms();
    let groups: BTreeMap<String, Group> = store
        .group_records()
        .map(|(group_id, record)| {
            (
                group_id.to_string(),
                Group::restore(group_id, record, limits, now_ms),
            )
        })
        .collect();
    for group in groups.values() {
        coordinator.note_deadline(group.next_deadline_ms());
    }
    tracing::info!(
        partition,
        groups = store.group_ids().len(),
        offsets = store.live_records(),
        records = store.records_applied(),
        elapsed_ms = began.elapsed().as_millis() as u64,
        "offsets partition loaded"
    );
    let (doorbell, rings) = local_channel::new_bounded(1);
    let loaded = Rc::new(CoordinatedPartition {
        partition,
        topic,
        groups: RefCell::new(groups),
        store: RefCell::new(store),
        queue: RefCell::new(VecDeque::new()),
        slots: Semaphore::new(limits.writes_queued_max as u64),
        doorbell,
        leader_epoch,
        deposed: Semaphore::new(0),
        deposed_flag: std::cell::Cell::new(false),
    });
    glommio::spawn_local(run_writer(services.clone(), Rc::downgrade(&loaded), rings)).detach();
    Ok(loaded)
}

/// Applies one stored batch to `store`; returns the offset after it. A transactional batch's
/// offsets are pending for its producer, a control batch is its producer's marker.
fn replay_batch(
    batch: &Bytes,
    store: &mut OffsetStore,
    unreadable: &mut usize,
) -> Result<u64, ErrorCode> {
    let view = BatchView::validate(batch, usize::MAX).map_err(|error| {
        tracing::error!(%error, "stored offsets batch is invalid");
        ErrorCode::CoordinatorNotAvailable
    })?;
    let records = view.records().map_err(|error| {
        tracing::error!(%error, "stored offsets batch is unreadable");
        ErrorCode::CoordinatorNotAvailable
    })?;
    let producer_id = view.producer_id();
    if view.attributes() & attributes::CONTROL != 0 {
        let marker = records
            .into_iter()
            .next()
            .and_then(|record| marker_commits(record.key()));
        match marker {
            Some(commit) => store.apply_marker(producer_id, view.producer_epoch(), commit),
            None => {
                tracing::debug!(offset = view.base_offset(), "skipping a control batch");
                *unreadable += 1;
            }
        }
        return Ok(view.next_offset());
    }
    let transactional = view.attributes() & attributes::TRANSACTIONAL != 0;
    // A batch left without records (a compacted log keeps a producer's last batch as its
    // header) carries the producer's sequence but no transaction to open.
    if transactional && view.record_count() > 0 {
        store.open_transaction(
            producer_id,
            view.producer_epoch(),
            view.base_sequence(),
            view.header().offset_count,
        );
    } else if transactional {
        store.note_sequence(
            producer_id,
            view.producer_epoch(),
            view.base_sequence(),
            view.header().offset_count,
        );
    }
    for record in records {
        match LogRecord::decode(record.key(), record.value()) {
            Ok(decoded) if transactional => store.apply_transactional(producer_id, decoded),
            Ok(decoded) => store.apply(decoded),
            Err(error) => {
                tracing::debug!(%error, offset = record.offset(), "skipping offsets record");
                *unreadable += 1;
            }
        }
    }
    Ok(view.next_offset())
}

/// Control record types of Kafka's transaction markers (`ControlRecordType`).
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;

/// Whether a control record's key (version int16, type int16, big-endian) is a commit marker;
/// `None` for a key that is not a transaction marker's.
fn marker_commits(key: Option<&[u8]>) -> Option<bool> {
    let key = key?;
    let control_type = i16::from_be_bytes(key.get(2..4)?.try_into().ok()?);
    match control_type {
        CONTROL_TYPE_ABORT => Some(false),
        CONTROL_TYPE_COMMIT => Some(true),
        _ => None,
    }
}

/// The partition's offsets, retrying while a freshly created partition is not open yet.
async fn partition_state<S: GroupServices>(
    services: &Rc<S>,
    owner: ShardId,
    key: PartitionKey,
) -> Result<PartitionState, ErrorCode> {
    let limits = services.groups().limits();
    for _ in 0..limits.load_tries_max {
        let answer = on_owner(services, owner, move |shard| async move {
            only(shard.states(&[key]))
        })
        .await;
        match answer {
            // Replay reads only committed records, and all of this replica's must be: a new
            // leader holds records its predecessor wrote that its followers have not all
            // confirmed yet, and they may hold acknowledged writes (Kafka's coordinator loads
            // to the log end for the same reason). Nothing else writes to the partition
            // meanwhile: its coordinator is the one being loaded.
            Ok(state) if state.high_watermark >= state.log_end => return Ok(state),
            Ok(_) => {}
            Err(PartitionError::UnknownTopicOrPartition) => {}
            Err(error) => return Err(coordinator_error_code(&error)),
        }
        glommio::timer::sleep(Duration::from_millis(limits.load_retry_interval_ms)).await;
    }
    Err(ErrorCode::CoordinatorLoadInProgress)
}

async fn fetch<S: GroupServices>(
    services: &Rc<S>,
    owner: ShardId,
    key: PartitionKey,
    offset: u64,
    max_bytes: usize,
) -> Result<FetchOutcome, ErrorCode> {
    let fetch = FetchPartition {
        key,
        offset: offset as i64,
        max_bytes,
        isolation: Isolation::ReadUncommitted,
    };
    // Loaded partitions are open (`partition_state` saw them): nothing to wait for.
    let opening_wait_until = Instant::now();
    on_owner(services, owner, move |shard| async move {
        only(shard.fetch(vec![fetch], opening_wait_until).await)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, partition = key.partition, offset, "replaying offsets partition failed");
        coordinator_error_code(&error)
    })
}

/// Runs `run` on the shard that owns a partition of the offsets topic; a shard that is stopping
/// answers like the partition would then.
async fn on_owner<S, T, F, Fut>(
    services: &Rc<S>,
    owner: ShardId,
    run: F,
) -> Result<T, PartitionError>
where
    S: GroupServices,
    T: Send + 'static,
    F: FnOnce(Rc<Shard<S::Files>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, PartitionError>> + 'static,
{
    invoke_on(services, owner, move |on: Rc<S>| run(on.shard().clone()))
        .await
        .map_err(PartitionError::from)
        .and_then(|answer| answer)
}

/// The one answer of a partition operation asked about one partition.
fn only<T>(answers: Vec<T>) -> T {
    let [answer]: [T; 1] = answers
        .try_into()
        .unwrap_or_else(|_| panic!("a shard answers each partition it is asked about"));
    answer
}

// ---- the writer -----------------------------------------------------------------------------

/// One per loaded partition, until the partition is dropped: writes queued items in order,
/// one round (at most about one batch of records) at a time, and compacts when due.
async fn run_writer<S: GroupServices>(
    services: Rc<S>,
    partition: Weak<CoordinatedPartition>,
    rings: LocalReceiver<()>,
) {
    loop {
        let Some(current) = partition.upgrade() else {
            return;
        };
        if current.is_deposed() {
            // Another broker coordinates the partition now: nothing queued here may reach the
            // log after its state was handed over.
            for item in current.queue.borrow_mut().drain(..) {
                let _ = item.done.try_send(Err(ErrorCode::NotCoordinator));
            }
            return;
        }
        if let Some(item) = take_transactional(&current) {
            write_transactional(&services, &current, item).await;
            continue;
        }
        let round = take_round(&current, services.groups().limits().write_batch_bytes_max);
        if round.is_empty() {
            // Not holding the partition while idle: dropping it closes the doorbell.
            drop(current);
            if rings.recv().await.is_none() {
                return;
            }
            continue;
        }
        write_round(&services, &current, round).await;
    }
}

/// Writes one transactional item (a transaction's offsets, or its marker), applies it to the
/// store once durable, and answers it.
async fn write_transactional<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    item: WriteItem,
) {
    let outcome = match item.op {
        WriteOp::Transactional {
            producer,
            records,
            guard,
        } => append_transactional(services, partition, producer, records, guard).await,
        WriteOp::Marker { producer, commit } => {
            let written = append_marker(services, partition, producer, commit).await;
            if written.is_ok() {
                partition.store.borrow_mut().apply_marker(
                    producer.producer_id,
                    producer.producer_epoch,
                    commit,
                );
            }
            written
        }
        WriteOp::Records(_) | WriteOp::DeleteGroup(_) | WriteOp::DeleteOffsets { .. } => {
            unreachable!("only transactional items are taken alone")
        }
    };
    let _ = item.done.try_send(outcome);
}

/// Appends a transaction's offsets as transactional batches of its producer, continuing the
/// producer's sequence here, and applies them as pending once durable.
async fn append_transactional<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    producer: TransactionalProducer,
    records: Vec<LogRecord>,
    guard: Option<VerificationGuard>,
) -> Result<(), ErrorCode> {
    let encoded: Vec<(Bytes, Option<Bytes>)> = records
        .iter()
        .map(|record| Ok((record.encode_key()?, record.encode_value()?)))
        .collect::<Result<_, WireError>>()
        .map_err(|error| {
            tracing::error!(%error, "offsets record cannot be encoded");
            ErrorCode::InvalidRequest
        })?;
    if encoded.is_empty() {
        return Ok(());
    }
    let base_sequence = partition
        .store
        .borrow()
        .next_sequence(producer.producer_id, producer.producer_epoch);
    let template = BatchOptions {
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        base_sequence,
        attributes: attributes::TRANSACTIONAL,
        ..BatchOptions::default()
    };
    let references: Vec<&(Bytes, Option<Bytes>)> = encoded.iter().collect();
    let bytes_max = services.groups().limits().write_batch_bytes_max;
    let batches = build_batches(&references, bytes_max, template)?;
    let counts: Vec<u32> = batches
        .iter()
        .map(|batch| {
            BatchView::validate(batch, BATCH_BYTES_MAX)
                .expect("a batch built here is valid")
                .header()
                .offset_count
        })
        .collect();
    append_batches(services, partition, batches, guard)
        .await
        .map_err(|error| {
            tracing::info!(
                %error,
                partition = partition.partition,
                producer_id = producer.producer_id,
                "transactional offsets write failed"
            );
            transactional_error_code(&error)
        })?;
    let mut store = partition.store.borrow_mut();
    let mut sequence = base_sequence;
    for count in counts {
        store.open_transaction(
            producer.producer_id,
            producer.producer_epoch,
            sequence,
            count,
        );
        sequence = sequence_after(sequence, count);
    }
    for record in records {
        store.apply_transactional(producer.producer_id, record);
    }
    Ok(())
}

/// The code a transactional write reports: the producer's own refusals as Kafka's
/// TxnOffsetCommit gives them, the rest as any coordinator write.
pub(super) fn transactional_error_code(error: &PartitionError) -> ErrorCode {
    match error {
        PartitionError::ProducerFenced(_) => ErrorCode::ProducerFenced,
        PartitionError::InvalidProducerIdMapping(_) => ErrorCode::InvalidProducerIdMapping,
        PartitionError::OutOfOrderSequence(_) | PartitionError::DuplicateSequence(_) => {
            ErrorCode::OutOfOrderSequence
        }
        PartitionError::InvalidTxnState(_) => ErrorCode::InvalidTxnState,
        PartitionError::TransactionAbortable(_) => ErrorCode::TransactionAbortable,
        PartitionError::TransactionCoordinatorFenced(_) => ErrorCode::TransactionCoordinatorFenced,
        other => coordinator_error_code(other),
    }
}

/// A queued item with the records it resolved to and their encodings.
struct RoundItem {
    done: LocalSender<Result<(), ErrorCode>>,
    records: Vec<LogRecord>,
    encoded: Vec<(Bytes, Option<Bytes>)>,
}

/// The first queued item, when it is a transactional write or a marker: a round of its own.
fn take_transactional(partition: &CoordinatedPartition) -> Option<WriteItem> {
    let mut queue = partition.queue.borrow_mut();
    let first = queue.front()?;
    match first.op {
        WriteOp::Transactional { .. } | WriteOp::Marker { .. } => queue.pop_front(),
        _ => None,
    }
}

/// Takes plain items from the front of the queue, up to about `bytes_max` of records; stops
/// at a transactional write or a marker.
fn take_round(partition: &CoordinatedPartition, bytes_max: usize) -> Vec<RoundItem> {
    let mut round = Vec::new();
    let mut round_bytes = 0;
    let mut queue = partition.queue.borrow_mut();
    while let Some(item) = queue.front() {
        let records = match &item.op {
            WriteOp::Transactional { .. } | WriteOp::Marker { .. } => break,
            WriteOp::Records(records) => records.clone(),
            WriteOp::DeleteGroup(group) => partition.store.borrow().tombstones_for_group(group),
            WriteOp::DeleteOffsets { group, topics } => partition
                .store
                .borrow()
                .tombstones_for_offsets(group, topics),
        };
        let encoded: Result<Vec<(Bytes, Option<Bytes>)>, WireError> = records
            .iter()
            .map(|record| Ok((record.encode_key()?, record.encode_value()?)))
            .collect();
        let item_bytes: usize = match &encoded {
            Ok(encoded) => encoded
                .iter()
                .map(|(key, value)| key.len() + value.as_ref().map_or(0, Bytes::len))
                .sum(),
            Err(_) => 0,
        };
        if !round.is_empty() && round_bytes + item_bytes > bytes_max {
            break;
        }
        let item = queue.pop_front().expect("front exists");
        match encoded {
            Ok(encoded) => {
                round_bytes += item_bytes;
                round.push(RoundItem {
                    done: item.done,
                    records,
                    encoded,
                });
            }
            Err(error) => {
                tracing::error!(%error, "offsets record cannot be encoded");
                let _ = item.done.try_send(Err(ErrorCode::InvalidRequest));
            }
        }
    }
    round
}

async fn write_round<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    round: Vec<RoundItem>,
) {
    let encoded: Vec<&(Bytes, Option<Bytes>)> =
        round.iter().flat_map(|item| item.encoded.iter()).collect();
    let outcome = if encoded.is_empty() {
        Ok(())
    } else {
        append_durably(services, partition, &encoded)
            .await
            .map(|_| ())
    };
    let mut store = partition.store.borrow_mut();
    for item in round {
        if outcome.is_ok() {
            for record in item.records {
                store.apply(record);
            }
        }
        let _ = item.done.try_send(outcome);
    }
}

/// Appends records as batches with acks=all; returns the first batch's base offset.
async fn append_durably<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    encoded: &[&(Bytes, Option<Bytes>)],
) -> Result<u64, ErrorCode> {
    let bytes_max = services.groups().limits().write_batch_bytes_max;
    let batches = build_batches(encoded, bytes_max, BatchOptions::default())?;
    append_batches(services, partition, batches, None)
        .await
        .map_err(|error| {
            tracing::warn!(%error, partition = partition.partition, "offsets write failed");
            coordinator_error_code(&error)
        })
}

/// Appends built batches with acks=all (a transactional one with its verification guard).
async fn append_batches<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    batches: Vec<BytesMut>,
    verification: Option<VerificationGuard>,
) -> Result<u64, PartitionError> {
    let owner = partition
        .owner()
        .ok_or(PartitionError::UnknownTopicOrPartition)?;
    // The partition is open (it was loaded); on a replicated one the write waits this long
    // for the in-sync replicas.
    let opening_wait_until =
        Instant::now() + Duration::from_millis(services.groups().limits().write_timeout_ms);
    let produce = ProducePartition {
        key: partition.key(),
        batches,
        verification,
    };
    on_owner(services, owner, move |shard| async move {
        only(
            shard
                .produce(ProduceAcks::All, vec![produce], opening_wait_until)
                .await,
        )
    })
    .await
    .map(|outcome| outcome.base_offset)
}

/// Packs records into batches of about `bytes_max` each (a record larger than that gets a batch
/// of its own, up to the protocol's batch limit), with the producer fields and attributes of
/// `template`; a batch with a sequence starts where the one before it ended.
fn build_batches(
    encoded: &[&(Bytes, Option<Bytes>)],
    bytes_max: usize,
    template: BatchOptions,
) -> Result<Vec<BytesMut>, ErrorCode> {
    let timestamp_ms = wall_clock_ms();
    let options = |base_sequence: i32| BatchOptions {
        batch_bytes_max: BATCH_BYTES_MAX,
        base_sequence,
        ..template
    };
    let failed = |error: spate_protocol::BuildError| {
        tracing::error!(%error, "offsets batch cannot be built");
        ErrorCode::InvalidRequest
    };
    let mut batches = Vec::new();
    let mut base_sequence = template.base_sequence;
    let mut builder = BatchBuilder::new(options(base_sequence));
    for (key, value) in encoded {
        let record_bytes = BatchBuilder::record_bytes(Some(key), value.as_deref(), NO_HEADERS);
        if !builder.is_empty() && builder.estimated_bytes() + record_bytes > bytes_max {
            if base_sequence >= 0 {
                base_sequence = sequence_after(base_sequence, builder.record_count() as u32);
            }
            let full = std::mem::replace(&mut builder, BatchBuilder::new(options(base_sequence)));
            batches.push(full.seal().map_err(failed)?);
        }
        builder
            .append(Some(key), value.as_deref(), NO_HEADERS, timestamp_ms)
            .map_err(failed)?;
    }
    if !builder.is_empty() {
        batches.push(builder.seal().map_err(failed)?);
    }
    Ok(batches)
}

/// The coordinator epoch of the markers written here: the group coordinator alone writes markers
/// into offsets partitions, and a single broker has one transaction coordinator generation.
const MARKER_COORDINATOR_EPOCH: i32 = 0;

/// The partition's guard for `producer` to open a transaction here (KIP-890), asked before its
/// offsets are queued; `None` when it has one open here already.
pub(super) async fn verify_transaction<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    producer: TransactionalProducer,
) -> Result<Option<VerificationGuard>, ErrorCode> {
    let owner = partition
        .owner()
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let key = partition.key();
    // Loaded partitions are open: nothing to wait for.
    let opening_wait_until = Instant::now();
    on_owner(services, owner, move |shard| async move {
        shard
            .txn_verification(
                key,
                producer.producer_id,
                producer.producer_epoch,
                opening_wait_until,
            )
            .await
    })
    .await
    .map_err(|error| coordinator_error_code(&error))
}

/// Appends the producer's marker (a control batch) to the partition and waits until it is
/// durable.
async fn append_marker<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    producer: TransactionalProducer,
    commit: bool,
) -> Result<(), ErrorCode> {
    let owner = partition
        .owner()
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    let key = partition.key();
    let marker = TxnMarker {
        producer_id: producer.producer_id,
        producer_epoch: producer.producer_epoch,
        coordinator_epoch: MARKER_COORDINATOR_EPOCH,
        result: if commit {
            TxnResult::Commit
        } else {
            TxnResult::Abort
        },
    };
    on_owner(services, owner, move |shard| async move {
        only(shard.write_txn_markers(vec![(key, marker)]).await)
    })
    .await
    .map(|_offset| ())
    .map_err(|error| {
        tracing::warn!(
            %error,
            partition = partition.partition,
            producer_id = producer.producer_id,
            "transaction marker write failed"
        );
        transactional_error_code(&error)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::CommittedOffset;
    use spate_protocol::batch::kafka::control::{marker_batch, Marker, MarkerType};

    fn offset(partition: u32, offset: u64) -> LogRecord {
        LogRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition,
            value: Some(CommittedOffset {
                offset,
                metadata: None,
                commit_timestamp_ms: 0,
            }),
        }
    }

    fn batch(records: &[LogRecord], template: BatchOptions) -> Bytes {
        let encoded: Vec<(Bytes, Option<Bytes>)> = records
            .iter()
            .map(|record| (record.encode_key().unwrap(), record.encode_value().unwrap()))
            .collect();
        let references: Vec<&(Bytes, Option<Bytes>)> = encoded.iter().collect();
        let mut batches = build_batches(&references, BATCH_BYTES_MAX, template).unwrap();
        assert_eq!(batches.len(), 1);
        batches.pop().unwrap().freeze()
    }

    fn transactional(producer_id: i64, base_sequence: i32) -> BatchOptions {
        BatchOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence,
            attributes: attributes::TRANSACTIONAL,
            ..BatchOptions::default()
        }
    }

    fn marker(producer_id: i64, marker_type: MarkerType) -> Bytes {
        let marker = Marker {
            marker_type,
            coordinator_epoch: MARKER_COORDINATOR_EPOCH,
        };
        marker_batch(producer_id, 0, marker, 0).freeze()
    }

    fn committed(store: &OffsetStore, partition: u32) -> Option<u64> {
        store
            .committed("g", "t", partition)
            .map(|value| value.offset)
    }

    /// The log as the writer leaves it (plain batches, transactional batches of two producers,
    /// the storage's commit and abort control batches) replays to what the writer applied.
    #[test]
    fn replay_reads_transactional_batches_and_markers_as_the_writer_applied_them() {
        let log = [
            batch(&[offset(0, 5)], BatchOptions::default()),
            batch(&[offset(0, 9), offset(1, 3)], transactional(7, 0)),
            batch(&[offset(1, 4), offset(2, 8)], transactional(8, 0)),
            batch(&[offset(2, 1)], transactional(7, 2)),
            marker(8, MarkerType::Abort),
        ];
        let mut store = OffsetStore::default();
        let mut unreadable = 0;
        for stored in &log {
            replay_batch(stored, &mut store, &mut unreadable).unwrap();
        }
        assert_eq!(unreadable, 0);
        assert_eq!(committed(&store, 0), Some(5), "producer 7 is still open");
        assert!(store.has_pending("g", "t", 0));
        assert!(store.has_pending("g", "t", 2));
        assert!(store.has_pending("g", "t", 1) && store.is_open(7));
        assert_eq!(store.next_sequence(7, 0), 3);
        assert_eq!(store.next_sequence(8, 0), 2);
        replay_batch(&marker(7, MarkerType::Commit), &mut store, &mut unreadable).unwrap();
        assert_eq!(committed(&store, 0), Some(9));
        assert_eq!(committed(&store, 1), Some(3), "producer 8's 4 was aborted");
        assert_eq!(committed(&store, 2), Some(1));
        assert!(!store.has_open_transactions());
    }

    #[test]
    fn a_control_record_key_names_commit_or_abort() {
        assert_eq!(marker_commits(Some(&[0, 0, 0, 1])), Some(true));
        assert_eq!(marker_commits(Some(&[0, 0, 0, 0])), Some(false));
        assert_eq!(marker_commits(Some(&[0, 0, 0, 5])), None);
        assert_eq!(marker_commits(Some(&[0, 0])), None);
        assert_eq!(marker_commits(None), None);
    }
}
