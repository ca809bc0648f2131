//! [`PartitionLog`]: one partition's log of segments, as the owning shard uses it — append,
//! read by offset or timestamp, sync, retention, delete-records, open (with recovery), close.
//!
//! Concurrency: a log is owned by one shard and shared among that shard's tasks (`Rc`), so every
//! method takes `&self` and the state sits in a `RefCell` that is never borrowed across an
//! await. I/O is done by whichever waiting task finds the disk idle (the *leader*): it plans one
//! step (write, sync, repair, roll) under a borrow, performs it, applies the result, and wakes
//! everyone; each task then re-checks its own goal. So appends from many tasks share writes and
//! fdatasyncs (group commit) without a background task, and any executor can drive the log. A
//! durable append syncs as soon as it leads (adaptive group commit, see `writer`): appends that
//! arrive while a write or sync is in flight are covered by the next one.
//!
//! Idempotent producers: each batch's producer fields are checked (`producer_state`) in the same
//! borrow that assigns its offset, and appends are admitted strictly in arrival order (a batch
//! that must wait for a roll or for queue room holds back the ones behind it), so the batches of
//! one producer are checked, and land, in the order their requests arrived. A retried batch
//! still remembered is not appended again: its caller waits for the original's slot and gets
//! the original's offsets. A batch whose append fails holds its producer at that batch
//! (`ProducerState::hold_at`), so a later one already on its way cannot land ahead of it; the
//! partition stays online through disk errors (see `FORMAT.md`, "Write ordering", for why).
//! The producer state is rolled back with the write path, snapshotted at each roll and at
//! close, and rebuilt at open from the newest snapshot plus the log after it.
//!
//! Not here: the byte-level write path state machine (`writer`), segment files and scanning
//! (`segment`), crash recovery of one segment (`recovery`), the producer rules
//! (`producer_state`) and snapshot files (`producer_snapshot`), transactions (`transactions`,
//! and their log hooks in `log::txn`), the on-disk layout (`FORMAT.md`).

mod replica;
mod txn;

pub use txn::TxnAppend;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use spate_protocol::batch::header::{check_crc, stamp};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};

use super::checkpoint::{
    read_checkpoint, read_log_start, write_checkpoint, write_log_start, CheckpointKind,
    COMMITTED_OFFSET_TEMPORARY_FILE_NAME, LOG_START_TEMPORARY_FILE_NAME,
    RECOVERY_POINT_TEMPORARY_FILE_NAME,
};
use super::clock::Clock;
use super::compaction;
use super::config::{AppendWait, LogConfig, Visibility, READ_AHEAD_BYTES_MIN};
use super::error::StorageError;
use super::file::{align_down, FileSystem, OpenMode, StorageFile, DIRECT_IO_ALIGNMENT_BYTES};
use super::index::{SegmentIndex, TimeIndexEntry};
use super::leader_epochs::{read_leader_epochs, write_leader_epochs, LeaderEpochCache};
use super::producer_snapshot::{
    self, parse_snapshot_file_name, read_snapshot, snapshot_bytes_max, snapshot_path,
    write_snapshot, SnapshotName, PRODUCER_SNAPSHOTS_KEPT,
};
use super::producer_state::{ProducerBatch, ProducerEntry, ProducerState, Verdict};
use super::progress::Progress;
use super::read_ahead::{ReadAhead, ReadAheadSpan};
use super::recovery::{recover_segment, SegmentRole};
use super::segment::{
    index_batch, open_segment_files, parse_segment_file_name, sync_index_files, BatchAt,
    IndexWrite, Segment, SegmentFileKind, SegmentPaths, SegmentReader, SegmentTail,
};
use super::slow_sync::SlowSyncWarnings;
use super::tail_cache::TailCache;
use super::transactions::{TransactionState, VerificationGuard};
use super::truncation;
use super::txn_index::TxnIndexCache;
use super::writer::{
    AppendSlot, DurablePoint, Goal, IndexPersist, PendingBatch, SlotState, Status, Step, SyncJob,
    WriteJob, WritePath, Writer,
};

/// The leader epoch appended batches are stamped with until [`PartitionLog::set_leader_epoch`]
/// says otherwise, over whatever their producer wrote (Kafka producers send -1), as Kafka's
/// leader stamps its own: a single broker is the only leader there has been.
pub const LEADER_EPOCH: u32 = 0;

/// What an append reports once it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// The offset assigned to the batch's first record.
    pub base_offset: u64,
    /// The offset after the batch.
    pub next_offset: u64,
    pub log_start_offset: u64,
}

/// Whole batches returned by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOutcome {
    /// Stamped batches exactly as stored, in offset order.
    pub batches: Vec<Bytes>,
    /// The offset after the last durable batch: reads never return anything at or past it.
    pub high_watermark: u64,
    pub log_start_offset: u64,
}

/// What a retention pass deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    pub bytes_deleted: u64,
    pub log_start_offset: u64,
}

/// What the last open read to recover the log: the cost a recovery point keeps small.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Segments recovered (closed ones included).
    pub segments: usize,
    /// Log bytes read and checked batch by batch (CRC included).
    pub bytes_scanned: u64,
    /// Log bytes whose batch headers were replayed into the producer state.
    pub bytes_replayed: u64,
    /// The recovery point found on disk, if any.
    pub recovery_point: Option<u64>,
}

/// The last recovery point written (or found at open): the offset, and where it lies in the
/// active segment, to tell how many durable bytes have accumulated since.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryPoint {
    pub offset: u64,
    pub segment_base_offset: u64,
    pub position: u64,
}

/// The mutable state of a log. Owned by this module alone (private fields); the write path
/// (`writer`) works on the parts [`LogState::write_path`] lends it.
#[derive(Debug)]
struct LogState<File> {
    config: LogConfig,
    /// Closed segments by base offset; never written again.
    sealed: BTreeMap<u64, Segment<File>>,
    /// The segment appends go to.
    active: Segment<File>,
    writer: Writer,
    tail_cache: TailCache,
    log_start_offset: u64,
    /// A leader is performing an I/O step; others wait.
    io_busy: bool,
    /// Retention or delete-records is running; they run one at a time.
    maintenance_busy: bool,
    /// A roll was decided: nothing more is appended to the active segment until it happens.
    roll_pending: bool,
    /// Idempotent producers of this partition.
    producers: ProducerState,
    /// Transactions of this partition (`transactions`; checked and recorded by `log::txn`).
    transactions: TransactionState,
    /// Aborted-transaction index entries of segments, read before (`txn_index`).
    txn_index_cache: TxnIndexCache,
    /// Tickets of appends waiting to be admitted; only the smallest may be admitted next, and
    /// an append arriving while any waits takes a ticket too (arrival order).
    admission_waiting: BTreeSet<u64>,
    admission_tickets_issued: u64,
    /// When to warn about a slow `fdatasync` of this partition.
    slow_syncs: SlowSyncWarnings,
    /// The recovery point last written (or read at open).
    recovery_point: RecoveryPoint,
    /// A recovery point and its producer snapshot are being written; they are written one at
    /// a time (they share temporary file names).
    checkpoint_busy: bool,
    recovery_report: RecoveryReport,
    /// Base offsets of the segments whose time index entries were checked against their batch
    /// headers (or were made by this process): an index read from disk is only a hint.
    time_indexes_checked: BTreeSet<u64>,
    /// The active segment's file was found without a directory entry (see
    /// [`StorageError::Unlinked`]): from then on every append is refused with this error.
    lost: Option<StorageError>,
    /// How many times the active segment's index was replaced by one rebuilt from its batch
    /// headers: an index write planned before a replacement must not mark entries persisted.
    index_rebuilds: u64,
    /// What compaction remembers between passes (owned by `compaction`).
    compaction: compaction::CompactionState,
    /// How many times compaction swapped closed segments (a read that failed across a swap is
    /// read again).
    segment_swaps: u64,
    /// A disk read started for this partition's next catch-up fetch (`read_ahead`).
    read_ahead: Option<ReadAhead>,
    /// The epoch appends are stamped with ([`PartitionLog::set_leader_epoch`]; at open the latest
    /// the cache knows, else [`LEADER_EPOCH`]). Replica appends keep their batches' own.
    leader_epoch: i32,
    /// Leader epoch → first offset (`leader_epochs`), as durable in `leader-epochs`, except
    /// that in memory it follows the log start up.
    epochs: LeaderEpochCache,
    /// Replicated (RF > 1): readers see only below the committed offset too.
    replicated: bool,
    /// The offset below which the partition's replicas agree (the leader's high watermark), as
    /// the owner last set it.
    committed_offset: u64,
    /// The committed offset in the `committed-offset` checkpoint, if any.
    committed_persisted: Option<u64>,
    /// The replay at open found batches of epochs the cache lacked (its file lost or old): the
    /// cache now has them and the file is written before the open returns.
    epochs_unwritten: bool,
}

/// One partition's log. Owned by one shard (thread) and dropped when the partition is closed or
/// deleted there; share it among the shard's tasks with `Rc`.
pub struct PartitionLog<F: FileSystem> {
    file_system: Rc<F>,
    directory: PathBuf,
    clock: Rc<dyn Clock>,
    state: RefCell<LogState<F::File>>,
    progress: Progress,
}

enum Admission {
    /// An earlier arrival is still waiting to be admitted.
    Wait,
    Roll(u64),
    QueueFull,
    Admitted(Admitted),
}

/// An accepted batch: its offsets, and the slot to wait on. `None` for a duplicate whose
/// original is already durable.
struct Admitted {
    slot: Option<Rc<AppendSlot>>,
    outcome: AppendOutcome,
}

/// A place in the admission line; leaving it (admitted, failed or dropped) lets the next in.
struct AdmissionTicket<'a, F: FileSystem> {
    log: &'a PartitionLog<F>,
    number: u64,
}

impl<F: FileSystem> Drop for AdmissionTicket<'_, F> {
    fn drop(&mut self) {
        self.log
            .state
            .borrow_mut()
            .admission_waiting
            .remove(&self.number);
        self.log.progress.notify_all();
    }
}

/// Clears the leader flag and wakes everyone when an I/O step ends, however it ends. If the
/// leading task is dropped in the middle of a write, the write may still land later, so the
/// unsynced state is abandoned and the file repaired before the next write.
struct IoGuard<'a, F: FileSystem> {
    log: &'a PartitionLog<F>,
    write_in_flight: bool,
}

impl<F: FileSystem> Drop for IoGuard<'_, F> {
    fn drop(&mut self) {
        let mut state = self.log.state.borrow_mut();
        state.io_busy = false;
        if self.write_in_flight {
            let error = std::io::Error::new(
                std::io::ErrorKind::Interrupted,
                "the task leading a write was dropped before the write completed",
            );
            let path = state.active.paths.log.clone();
            state
                .write_path()
                .fail(StorageError::io("writing segment", &path, None, error));
        }
        drop(state);
        self.log.progress.notify_all();
    }
}

pub(crate) struct MaintenanceGuard<'a, F: FileSystem> {
    log: &'a PartitionLog<F>,
}

impl<F: FileSystem> Drop for MaintenanceGuard<'_, F> {
    fn drop(&mut self) {
        self.log.state.borrow_mut().maintenance_busy = false;
        self.log.progress.notify_all();
    }
}

/// Held while a recovery point (and its producer snapshot) is written.
struct CheckpointGuard<'a, F: FileSystem> {
    log: &'a PartitionLog<F>,
}

impl<F: FileSystem> Drop for CheckpointGuard<'_, F> {
    fn drop(&mut self) {
        self.log.state.borrow_mut().checkpoint_busy = false;
        self.log.progress.notify_all();
    }
}

/// Header, length and CRC checks of a batch handed to `append`.
pub fn validate_batch(batch: &[u8], batch_bytes_max: usize) -> Result<BatchHeader, StorageError> {
    let header = BatchHeader::decode(batch)?;
    header.check(batch_bytes_max)?;
    if header.batch_length as usize != batch.len() {
        return Err(StorageError::BatchLengthMismatch {
            declared: header.batch_length,
            received: batch.len(),
        });
    }
    check_crc(batch, &header)?;
    Ok(header)
}

impl<File: StorageFile> LogState<File> {
    /// Lends the write path (`writer`) the parts of the state it works on.
    fn write_path(&mut self) -> WritePath<'_, File> {
        WritePath {
            config: &self.config,
            active: &mut self.active,
            writer: &mut self.writer,
            tail_cache: &mut self.tail_cache,
            producers: &mut self.producers,
            transactions: &mut self.transactions,
            roll_pending: &mut self.roll_pending,
        }
    }

    fn needs_roll(&self, header: &BatchHeader, now_ms: i64) -> bool {
        let active = &self.active;
        if active.is_empty() {
            return false;
        }
        let too_large = active.tail.end_position + u64::from(header.batch_length)
            > self.config.segment_bytes_max;
        let age_max_ms = i64::try_from(self.config.segment_age_max_ms).unwrap_or(i64::MAX);
        let too_old = now_ms.saturating_sub(active.opened_ms) >= age_max_ms;
        let relative_next =
            active.tail.next_offset + u64::from(header.offset_count) - active.base_offset;
        too_large || too_old || relative_next > u64::from(u32::MAX)
    }

    /// Accepts a validated and checked batch: assigns its offset, stamps it, queues it for
    /// writing, and records it in the producer state.
    fn enqueue(
        &mut self,
        mut batch: BytesMut,
        header: &BatchHeader,
        producer: Option<&ProducerBatch>,
        transaction: TxnAppend,
        now_ms: i64,
    ) -> Admitted {
        let base_offset = self.active.tail.next_offset;
        // A replica keeps the epoch its leader stamped; a leader stamps its own.
        let leader_epoch = match transaction {
            TxnAppend::Replica(_) => header.leader_epoch,
            _ => self.leader_epoch as u32,
        };
        stamp(&mut batch, base_offset, leader_epoch);
        let bytes = batch.freeze();
        let stamped = BatchHeader {
            base_offset,
            leader_epoch,
            ..*header
        };
        self.active
            .record_batch(&stamped, self.config.index_interval_bytes);
        let tail_after = self.active.tail;
        self.writer.pending_bytes += bytes.len();
        self.writer.pending.push_back(PendingBatch {
            bytes: bytes.clone(),
            tail_after,
        });
        self.tail_cache
            .push(base_offset, tail_after.next_offset, bytes);
        let slot = Rc::new(AppendSlot::new(tail_after.next_offset));
        self.writer.queued_slots.push_back(slot.clone());
        if let Some(producer) = producer {
            let durable_next_offset = self.writer.durable.tail.next_offset;
            self.producers.record(
                producer,
                base_offset,
                tail_after.next_offset,
                durable_next_offset,
                now_ms,
            );
        }
        self.record_transaction(header, transaction, base_offset, now_ms);
        let outcome = AppendOutcome {
            base_offset,
            next_offset: tail_after.next_offset,
            log_start_offset: self.log_start_offset,
        };
        Admitted {
            slot: Some(slot),
            outcome,
        }
    }

    /// The answer for a retried batch whose original sits at `[base_offset, next_offset)`: the
    /// original's slot while it is not durable, so the retry waits for the same goal and fails
    /// if it fails.
    fn duplicate_of(&self, base_offset: u64, next_offset: u64) -> Admitted {
        let writer = &self.writer;
        let slot = (next_offset > writer.durable.tail.next_offset).then(|| {
            let find = |slots: &VecDeque<Rc<AppendSlot>>| {
                slots
                    .binary_search_by_key(&next_offset, |slot| slot.next_offset)
                    .ok()
                    .map(|index| slots[index].clone())
            };
            find(&writer.written_slots)
                .or_else(|| find(&writer.queued_slots))
                .expect("a retained batch past the durable point has a pending slot (a rollback forgets it)")
        });
        Admitted {
            slot,
            outcome: AppendOutcome {
                base_offset,
                next_offset,
                log_start_offset: self.log_start_offset,
            },
        }
    }

    /// Whether the holder of `ticket` (or an append without one) may be admitted now.
    fn admission_turn(&self, ticket: Option<u64>) -> bool {
        match ticket {
            None => self.admission_waiting.is_empty(),
            Some(number) => self.admission_waiting.first() == Some(&number),
        }
    }

    fn take_admission_ticket(&mut self) -> u64 {
        let number = self.admission_tickets_issued;
        self.admission_tickets_issued += 1;
        self.admission_waiting.insert(number);
        number
    }

    /// The durable end (the written end under [`Visibility::Written`]); for a replicated
    /// partition no further than the committed offset, which only durable copies move.
    fn high_watermark(&self) -> u64 {
        let visible_end = self.visible_tail().next_offset;
        if self.replicated {
            visible_end.min(self.committed_offset)
        } else {
            visible_end
        }
    }

    /// Replaces the active segment's index entries before `end_offset` (the durable end when
    /// they were rebuilt) with `rebuilt`, and corrects its largest timestamp, whose true value
    /// over those batches is `max_timestamp`. Entries and tails made since for later batches
    /// were derived from the old (wrong) value: raising them to at least `max_timestamp` makes
    /// them right when that value was too low, and leaves them too high otherwise, which costs
    /// lookups a longer scan, never a later answer. The entries are written again from the
    /// first one by the next index write.
    fn replace_active_index(
        &mut self,
        mut rebuilt: SegmentIndex,
        end_offset: u64,
        max_timestamp: i64,
    ) {
        let active = &mut self.active;
        let end_relative = (end_offset - active.base_offset) as u32;
        for (offset, time) in active.index.offsets().iter().zip(active.index.times()) {
            if offset.relative_offset >= end_relative {
                let time = TimeIndexEntry {
                    timestamp_before: time.timestamp_before.max(max_timestamp),
                    ..*time
                };
                rebuilt.push(*offset, time);
            }
        }
        active.index = rebuilt;
        active.persisted_entries = 0;
        let writer = &mut self.writer;
        for tail in std::iter::once(&mut active.tail)
            .chain([&mut writer.written_tail, &mut writer.durable.tail])
            .chain(writer.pending.iter_mut().map(|batch| &mut batch.tail_after))
        {
            tail.max_timestamp = tail.max_timestamp.max(max_timestamp);
        }
        self.index_rebuilds += 1;
    }

    /// Every segment in offset order with its readable end: closed segments whole, the active
    /// one up to its durable point.
    fn readable_segments(&self) -> impl Iterator<Item = (&Segment<File>, SegmentTail)> {
        self.sealed
            .values()
            .map(|segment| (segment, segment.tail))
            .chain(std::iter::once((&self.active, self.visible_tail())))
    }

    /// The end of what readers see in the active segment: its durable tail, or under
    /// [`Visibility::Written`] its written tail (always in the active segment: a roll syncs
    /// everything first, and a rollback moves the written tail back to the durable one).
    fn visible_tail(&self) -> SegmentTail {
        match self.config.visibility {
            Visibility::Durable => self.writer.durable.tail,
            Visibility::Written => self.writer.written_tail,
        }
    }
}

/// Where and how far a disk read may go.
struct ReadPlan<File> {
    files: Rc<super::segment::SegmentFiles<File>>,
    path: PathBuf,
    start_position: u64,
    start_offset: u64,
    /// The first index entry after the start (position, base offset): where a scan resumes past
    /// damage whose own header no longer says where the next batch starts.
    resume: Option<(u64, u64)>,
    limit: u64,
    /// The offset after the readable batches of the segment.
    end_offset: u64,
    base_offset: u64,
    batch_bytes_max: usize,
    read_chunk_bytes: usize,
    /// How far apart index entries are: a scan from one reaches the batch it looks for within
    /// about this many bytes (and one batch).
    index_interval_bytes: u64,
    /// Bytes before this position never change while the segment stays (closed, or durable in
    /// the active segment): the only part a read may be started ahead for.
    stable_limit: u64,
    /// The log's segment swap counter when the plan was made.
    segment_swaps: u64,
}

/// A batch that cannot be served: where it should start, and why not.
struct Damage {
    position: u64,
    offset: u64,
    reason: String,
}

impl<File: StorageFile> ReadPlan<File> {
    /// A read of `segment` up to its readable end, starting from `start` (position, base offset)
    /// as an index lookup gave it.
    fn new(
        segment: &Segment<File>,
        readable: SegmentTail,
        (start_position, start_offset): (u64, u64),
        config: &LogConfig,
    ) -> Self {
        let start_relative = (start_offset - segment.base_offset) as u32;
        let resume = segment
            .index
            .entry_after(start_relative)
            .map(|entry| {
                (
                    u64::from(entry.position),
                    segment.base_offset + u64::from(entry.relative_offset),
                )
            })
            .filter(|(position, _)| *position < readable.end_position);
        Self {
            files: segment.files.clone(),
            path: segment.paths.log.clone(),
            start_position,
            start_offset,
            resume,
            limit: readable.end_position,
            end_offset: readable.next_offset,
            base_offset: segment.base_offset,
            batch_bytes_max: config.batch_bytes_max,
            read_chunk_bytes: config.read_chunk_bytes,
            index_interval_bytes: u64::from(config.index_interval_bytes),
            stable_limit: readable.end_position,
            segment_swaps: 0,
        }
    }

    /// A reader of the segment, with the position and base offset its scan starts at (see
    /// [`checked_start`]).
    async fn start_scan(&self) -> Result<(SegmentReader<'_, File>, u64, u64), StorageError> {
        self.start_scan_reading(self.read_chunk_bytes, None).await
    }

    /// [`Self::start_scan`] whose first disk read is `read_ahead_bytes` long.
    async fn start_scan_reading(
        &self,
        read_ahead_bytes: usize,
        preloaded: Option<(u64, Bytes)>,
    ) -> Result<(SegmentReader<'_, File>, u64, u64), StorageError> {
        let mut reader =
            SegmentReader::new(&self.files.log, &self.path, self.limit, read_ahead_bytes);
        if let Some((position, bytes)) = preloaded {
            reader.preload(position, bytes);
        }
        let (position, expected) = checked_start(&mut reader, self).await?;
        Ok((reader, position, expected))
    }

    /// The batch at `position`, which must be there with base offset `expected` (with its
    /// payload and CRC checked when `with_payload`), or the damage found in its place.
    async fn batch_at(
        &self,
        reader: &mut SegmentReader<'_, File>,
        position: u64,
        expected: u64,
        with_payload: bool,
    ) -> Result<Result<(BatchHeader, Bytes), Damage>, StorageError> {
        let found = reader
            .batch_at(position, expected, self.batch_bytes_max, with_payload)
            .await?;
        let reason = match found {
            BatchAt::Batch { header, bytes } => return Ok(Ok((header, bytes))),
            BatchAt::End => "the log ends (zero bytes) where a batch should be".to_owned(),
            BatchAt::Invalid { reason } => reason,
        };
        Ok(Err(Damage {
            position,
            offset: expected,
            reason,
        }))
    }

    /// The header of the batch at `position`, which must be there with base offset `expected`;
    /// its payload is neither read nor checked. Damage is a plain `Corrupt` error.
    async fn header_at(
        &self,
        reader: &mut SegmentReader<'_, File>,
        position: u64,
        expected: u64,
    ) -> Result<BatchHeader, StorageError> {
        match self.batch_at(reader, position, expected, false).await? {
            Ok((header, _)) => Ok(header),
            Err(damage) => Err(StorageError::corrupt(
                &self.path,
                damage.position,
                damage.reason,
            )),
        }
    }

    /// Where intact batches resume after `damage` (offset, and position when one is known):
    /// right after the damaged batch when its header still gives a length and offset count and
    /// the next header checks out there; else at the next index entry; else only at the end of
    /// the segment.
    async fn resume_after(
        &self,
        reader: &mut SegmentReader<'_, File>,
        damage: &Damage,
    ) -> Result<(u64, Option<u64>), StorageError> {
        let header_bytes = reader.bytes_at(damage.position, BATCH_HEADER_BYTES).await?;
        let header = BatchHeader::decode(&header_bytes)
            .ok()
            .filter(|header| header.check(self.batch_bytes_max).is_ok());
        if let Some(header) = header {
            let next_position = damage.position + u64::from(header.batch_length);
            let next_offset = damage.offset + u64::from(header.offset_count);
            if next_position == self.limit && next_offset == self.end_offset {
                return Ok((next_offset, Some(next_position)));
            }
            if next_position < self.limit {
                let next = self
                    .batch_at(reader, next_position, next_offset, false)
                    .await?;
                if next.is_ok() {
                    return Ok((next_offset, Some(next_position)));
                }
            }
        }
        match self.resume {
            Some((position, offset)) if position > damage.position => Ok((offset, Some(position))),
            _ => Ok((self.end_offset, None)),
        }
    }

    /// The error for `damage`, naming the offsets it makes unreadable and where reading can go on.
    fn damaged(&self, damage: Damage, readable_from: u64) -> StorageError {
        StorageError::CorruptBatch {
            path: self.path.clone(),
            position: damage.position,
            offset: damage.offset,
            readable_from,
            reason: damage.reason,
        }
    }
}

/// Where a scan starts: the index entry's batch if its header checks out, else the segment's
/// first batch. Recovery verifies only the last index entry; an entry in the middle damaged on
/// the medium must not make intact batches unreadable, so it costs a longer scan instead.
async fn checked_start<File: StorageFile>(
    reader: &mut SegmentReader<'_, File>,
    plan: &ReadPlan<File>,
) -> Result<(u64, u64), StorageError> {
    if plan.start_position == 0 {
        return Ok((0, plan.base_offset));
    }
    let found = reader
        .batch_at(
            plan.start_position,
            plan.start_offset,
            plan.batch_bytes_max,
            false,
        )
        .await?;
    if matches!(found, BatchAt::Batch { .. }) {
        return Ok((plan.start_position, plan.start_offset));
    }
    tracing::warn!(
        path = %plan.path.display(),
        position = plan.start_position,
        offset = plan.start_offset,
        "index entry does not point at its batch; scanning the segment from its start"
    );
    Ok((0, plan.base_offset))
}

/// Whole batches from the one holding `offset`, at most `max_bytes` (but at least one).
///
/// Damage on the medium: the batches before it are served; a read that starts at a damaged
/// batch fails with [`StorageError::CorruptBatch`], which names the offset where reading can go
/// on (so an operator can delete the records before it). Headers on the way to `offset` are
/// only checked, not their payloads, so a damaged payload before `offset` is stepped over.
/// Whole batches from the one holding `offset` on, up to `max_bytes` (at least one), none at or
/// past `read_end` (the high watermark, or a replica's durable end).
async fn read_batches<File: StorageFile>(
    plan: &ReadPlan<File>,
    offset: u64,
    max_bytes: usize,
    read_end: u64,
    preloaded: Option<(u64, Bytes)>,
) -> Result<ServedBatches, StorageError> {
    // One disk read should bring both the scan from the index entry to `offset` (about an index
    // interval) and the batches served, and no more: a read sized only by `read_chunk_bytes` or
    // `max_bytes` from the index entry ends inside the batches served, and the next read (sized
    // the same) fetched up to twice the bytes served from the disk.
    let first_read_bytes = first_read_bytes(max_bytes, plan.index_interval_bytes);
    let (mut reader, mut position, mut expected) =
        plan.start_scan_reading(first_read_bytes, preloaded).await?;
    let scan_start = position;
    loop {
        if position - scan_start > plan.index_interval_bytes {
            // The index did not bring the scan close (damage, or a rebuilt index): scan on in
            // read chunks.
            reader.set_read_ahead_bytes(plan.read_chunk_bytes);
        }
        match plan
            .batch_at(&mut reader, position, expected, false)
            .await?
        {
            Ok((header, _)) => {
                if header.next_offset() > offset {
                    break;
                }
                position += u64::from(header.batch_length);
                expected = header.next_offset();
            }
            Err(damage) => match plan.resume_after(&mut reader, &damage).await? {
                (resume_offset, Some(resume_position)) if resume_offset <= offset => {
                    position = resume_position;
                    expected = resume_offset;
                }
                (readable_from, _) => return Err(plan.damaged(damage, readable_from)),
            },
        }
    }
    let mut batches = Vec::new();
    let mut total = 0usize;
    while position < plan.limit && expected < read_end {
        // A read for the batches still to serve is sized to what the fetch has left (at least
        // the batch itself), never to a whole `max_bytes` again.
        reader.set_read_ahead_bytes(
            max_bytes
                .saturating_sub(total)
                .max(DIRECT_IO_ALIGNMENT_BYTES),
        );
        // Bytes served from disk are checked again: never serve a batch that fails its CRC.
        let found =
            match serve_batch_at(plan, &mut reader, position, expected, total, max_bytes).await {
                Ok(found) => found,
                // The batches read so far are good; the next read starts at the failure and reports it.
                Err(_) if !batches.is_empty() => break,
                Err(error) => return Err(error),
            };
        let (header, bytes) = match found {
            Served::Batch(header, bytes) => (header, bytes),
            Served::OverBudget => break,
            Served::Damaged(_) if !batches.is_empty() => break,
            Served::Damaged(damage) => {
                let (readable_from, _) = plan.resume_after(&mut reader, &damage).await?;
                return Err(plan.damaged(damage, readable_from));
            }
        };
        total += bytes.len();
        batches.push(bytes);
        position += u64::from(header.batch_length);
        expected = header.next_offset();
        if total >= max_bytes {
            break;
        }
    }
    Ok(ServedBatches {
        batches,
        next_position: position,
        next_offset: expected,
    })
}

/// What [`read_batches`] served, and where the batch after them starts.
struct ServedBatches {
    batches: Vec<Bytes>,
    next_position: u64,
    next_offset: u64,
}

/// A fetch's first disk read: the scan from the index entry (about an index interval) and the
/// `max_bytes` it serves.
fn first_read_bytes(max_bytes: usize, index_interval_bytes: u64) -> usize {
    max_bytes.saturating_add(index_interval_bytes as usize)
}

/// What the serving loop of [`read_batches`] found at one position.
enum Served {
    Batch(BatchHeader, Bytes),
    /// An intact header whose batch would pass `max_bytes` (never for the first batch).
    OverBudget,
    Damaged(Damage),
}

async fn serve_batch_at<File: StorageFile>(
    plan: &ReadPlan<File>,
    reader: &mut SegmentReader<'_, File>,
    position: u64,
    expected: u64,
    total: usize,
    max_bytes: usize,
) -> Result<Served, StorageError> {
    let header = match plan.batch_at(reader, position, expected, false).await? {
        Ok((header, _)) => header,
        Err(damage) => return Ok(Served::Damaged(damage)),
    };
    if total > 0 && total + header.batch_length as usize > max_bytes {
        return Ok(Served::OverBudget);
    }
    Ok(
        match plan.batch_at(reader, position, expected, true).await? {
            Ok((header, bytes)) => Served::Batch(header, bytes),
            Err(damage) => Served::Damaged(damage),
        },
    )
}

/// The base offset of the first batch at or after `log_start_offset` whose `max_timestamp` is at
/// or after `timestamp_ms`, scanning headers only. Damage wholly before the log start (deleted
/// records) is stepped over; damage after it is reported, since it may hold the answer.
async fn scan_for_timestamp<File: StorageFile>(
    plan: &ReadPlan<File>,
    timestamp_ms: i64,
    log_start_offset: u64,
) -> Result<Option<u64>, StorageError> {
    let (mut reader, mut position, mut expected) = plan.start_scan().await?;
    while position < plan.limit {
        match plan
            .batch_at(&mut reader, position, expected, false)
            .await?
        {
            Ok((header, _)) => {
                if header.max_timestamp >= timestamp_ms && header.next_offset() > log_start_offset {
                    return Ok(Some(header.base_offset.max(log_start_offset)));
                }
                position += u64::from(header.batch_length);
                expected = header.next_offset();
            }
            Err(damage) => match plan.resume_after(&mut reader, &damage).await? {
                (resume_offset, Some(resume_position)) if resume_offset <= log_start_offset => {
                    position = resume_position;
                    expected = resume_offset;
                }
                (readable_from, _) => return Err(plan.damaged(damage, readable_from)),
            },
        }
    }
    Ok(None)
}

/// The index of the segment in `plan` as its batch headers give it, the tail after them, and
/// whether every entry of `entries` (below the readable end) agrees with the headers: it points
/// at a batch start with its relative offset, and its timestamp is the largest before that
/// batch. `entries` may have been made with another `index_interval_bytes`, so they need not be
/// the rebuilt ones. `None` if a header cannot be read (damage).
async fn rebuild_index<File: StorageFile>(
    plan: &ReadPlan<File>,
    entries: &SegmentIndex,
    index_interval_bytes: u32,
) -> Result<Option<(SegmentIndex, SegmentTail, bool)>, StorageError> {
    let mut reader = SegmentReader::new(
        &plan.files.log,
        &plan.path,
        plan.limit,
        plan.read_chunk_bytes,
    );
    let mut claims = entries
        .offsets()
        .iter()
        .zip(entries.times())
        .filter(|(offset, _)| u64::from(offset.position) < plan.limit)
        .peekable();
    let mut agrees = true;
    let mut index = SegmentIndex::new();
    let mut tail = SegmentTail::empty(plan.base_offset);
    while tail.end_position < plan.limit {
        let found = plan
            .batch_at(&mut reader, tail.end_position, tail.next_offset, false)
            .await?;
        let Ok((header, _)) = found else {
            return Ok(None);
        };
        let relative_offset = (header.base_offset - plan.base_offset) as u32;
        while let Some((offset, time)) =
            claims.next_if(|(offset, _)| offset.relative_offset <= relative_offset)
        {
            agrees &= offset.relative_offset == relative_offset
                && u64::from(offset.position) == tail.end_position
                && time.timestamp_before == tail.max_timestamp;
        }
        index_batch(
            &mut index,
            &mut tail,
            plan.base_offset,
            &header,
            index_interval_bytes,
        );
        // Headers only: past a large batch, read the next header's block rather than a chunk
        // that is mostly payload.
        let large = header.batch_length as usize * 2 > plan.read_chunk_bytes;
        reader.set_read_ahead_bytes(if large {
            DIRECT_IO_ALIGNMENT_BYTES
        } else {
            plan.read_chunk_bytes
        });
    }
    agrees &= claims.next().is_none();
    Ok(Some((index, tail, agrees)))
}

/// Replaces both index files of a closed segment with `index`'s entries and syncs them.
async fn rewrite_index_files<File: StorageFile>(
    files: &super::segment::SegmentFiles<File>,
    paths: &SegmentPaths,
    index: &SegmentIndex,
) -> Result<(), StorageError> {
    for (file, path) in [
        (&files.offset_index, &paths.offset_index),
        (&files.time_index, &paths.time_index),
    ] {
        file.truncate(0)
            .await
            .map_err(|error| StorageError::io("truncating index", path, Some(0), error))?;
    }
    if let Some(write) = IndexWrite::plan(index, 0, index.len()) {
        write.execute(files, paths).await?;
    }
    sync_index_files(files, paths).await
}

impl<F: FileSystem> PartitionLog<F> {
    /// Opens the partition in `directory`, which must exist (a partition the broker already
    /// holds), and recovers it: a missing directory is lost data, never recreated empty.
    pub async fn open_existing(
        file_system: Rc<F>,
        directory: PathBuf,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        match file_system.list_directory(&directory).await {
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(StorageError::MissingDirectory { directory });
            }
            Err(error) => {
                return Err(StorageError::io(
                    "listing partition directory",
                    &directory,
                    None,
                    error,
                ))
            }
        }
        Self::open(file_system, directory, config, clock).await
    }

    /// Opens the partition in `directory` (creating it if needed) and recovers it: see
    /// `FORMAT.md`, "Recovery at open", whose steps this follows, for what is checked,
    /// truncated and rebuilt.
    pub async fn open(
        file_system: Rc<F>,
        directory: PathBuf,
        config: LogConfig,
        clock: Rc<dyn Clock>,
    ) -> Result<Self, StorageError> {
        config.check()?;
        let (state, names) = load_state(&*file_system, &directory, config, &*clock).await?;
        let log = Self {
            file_system,
            directory,
            clock,
            state: RefCell::new(state),
            progress: Progress::default(),
        };
        // Step 9.
        log.rebuild_producer_state(&names).await?;
        log.settle_leader_epochs().await?;
        Ok(log)
    }

    /// Rebuilds the producer state after segment recovery: removes snapshots being written
    /// when the process stopped and snapshots past the log end, loads the newest snapshot that
    /// reads back valid (a damaged one is logged and skipped), replays the batch headers from
    /// its offset (or from the oldest segment) to the log end, and drops producers whose last
    /// batch is before the log start or that have expired.
    async fn rebuild_producer_state(&self, names: &[String]) -> Result<(), StorageError> {
        let fs = &*self.file_system;
        let (log_end, bytes_max) = {
            let state = self.state.borrow();
            (
                state.active.tail.next_offset,
                snapshot_bytes_max(state.config.producers_per_partition_max),
            )
        };
        let mut offsets = Vec::new();
        for name in names {
            match parse_snapshot_file_name(name) {
                Some(SnapshotName::Temporary(_)) => {
                    remove_if_present(fs, &self.directory.join(name)).await?;
                }
                // A snapshot must never claim batches the log does not hold.
                Some(SnapshotName::Snapshot(offset)) if offset > log_end => {
                    tracing::warn!(directory = %self.directory.display(), offset, log_end,
                        "removing a producer snapshot past the log end");
                    remove_if_present(fs, &snapshot_path(&self.directory, offset)).await?;
                }
                Some(SnapshotName::Snapshot(offset)) => offsets.push(offset),
                None => {}
            }
        }
        offsets.sort_unstable();
        let mut loaded = None;
        for offset in offsets.iter().rev() {
            match read_snapshot(fs, &self.directory, *offset, bytes_max).await {
                Ok(snapshot) => {
                    loaded = Some(snapshot);
                    break;
                }
                Err(error) => tracing::warn!(%error, "skipping unreadable producer snapshot"),
            }
        }
        let now_ms = self.clock.now_ms();
        let replay_from = {
            let mut state = self.state.borrow_mut();
            let oldest = state
                .sealed
                .values()
                .next()
                .map_or(state.active.base_offset, |segment| segment.base_offset);
            match loaded {
                Some(snapshot) => {
                    for (producer_id, entry) in snapshot.producers {
                        state.producers.insert(producer_id, entry);
                    }
                    // A snapshot older than the oldest segment (the newer ones unreadable)
                    // leaves a gap the replay cannot read: its open transactions may have
                    // ended there. Their records in the gap are deleted; the replay reopens
                    // any that goes on at its first batch after the gap.
                    if snapshot.offset >= oldest {
                        for (producer_id, first_offset) in snapshot.ongoing {
                            state.transactions.insert_ongoing(producer_id, first_offset);
                        }
                    }
                    snapshot.offset.max(oldest)
                }
                None => oldest,
            }
        };
        self.recover_txn_indexes(names).await?;
        self.replay_producers(replay_from, now_ms).await?;
        {
            let mut state = self.state.borrow_mut();
            let log_start_offset = state.log_start_offset;
            state.producers.drop_before(log_start_offset);
            state.producers.expire(now_ms);
        }
        self.prune_producer_snapshots().await;
        Ok(())
    }

    /// Records every batch from `from_offset` to the log end in the producer state, reading
    /// headers only, a chunk at a time (`read_chunk_bytes`): memory stays bounded whatever the
    /// log's size. Recovery has just validated these batches, so anything unexpected is
    /// corruption.
    async fn replay_producers(&self, from_offset: u64, now_ms: i64) -> Result<(), StorageError> {
        let plans: Vec<ReadPlan<F::File>> = {
            let state = self.state.borrow();
            state
                .readable_segments()
                .filter(|(_, readable)| readable.next_offset > from_offset)
                .map(|(segment, readable)| {
                    let start = segment.scan_start_for_offset(from_offset);
                    ReadPlan::new(segment, readable, start, &state.config)
                })
                .collect()
        };
        for plan in &plans {
            let (mut reader, mut position, mut expected) = plan.start_scan().await?;
            self.state.borrow_mut().recovery_report.bytes_replayed +=
                plan.limit.saturating_sub(position);
            while position < plan.limit {
                let header = plan.header_at(&mut reader, position, expected).await?;
                if header.next_offset() > from_offset {
                    // Stored batches passed this check when appended; one that does not is
                    // from before idempotence was checked and names no producer to remember.
                    if let Ok(Some(producer)) = ProducerBatch::of_stored(&header) {
                        // Recovered batches are durable.
                        self.state.borrow_mut().producers.record(
                            &producer,
                            header.base_offset,
                            header.next_offset(),
                            header.next_offset(),
                            now_ms,
                        );
                    }
                    self.replay_transaction(plan, &mut reader, position, &header)
                        .await?;
                    self.replay_leader_epoch(&header);
                }
                // Headers only: past a large batch, read the next header's block rather than a
                // chunk that is mostly payload.
                let large = header.batch_length as usize * 2 > plan.read_chunk_bytes;
                reader.set_read_ahead_bytes(if large {
                    DIRECT_IO_ALIGNMENT_BYTES
                } else {
                    plan.read_chunk_bytes
                });
                position += u64::from(header.batch_length);
                expected = header.next_offset();
            }
        }
        Ok(())
    }

    /// Replay at open: a batch of an epoch newer than the cache gives for its offset means the
    /// cache lost that epoch's entry (its file removed or restored from an old copy); it is
    /// added back, and written by [`Self::settle_leader_epochs`]. Epoch 0 of a log without
    /// entries is a single broker's: nothing to add.
    fn replay_leader_epoch(&self, header: &BatchHeader) {
        let mut state = self.state.borrow_mut();
        // The replay may start in a segment partly before the log start: the cache no longer
        // dates those batches (found by the replica simulation, seed 6221079).
        let log_start_offset = state.log_start_offset;
        if header.next_offset() <= log_start_offset {
            return;
        }
        let start_offset = header.base_offset.max(log_start_offset);
        let epoch = header.leader_epoch as i32;
        if epoch > state.epochs.epoch_at(start_offset) && state.epochs.assign(epoch, start_offset) {
            state.epochs_unwritten = true;
        }
    }

    /// Writes the leader epoch file if the replay at open added entries to the cache.
    async fn settle_leader_epochs(&self) -> Result<(), StorageError> {
        let epochs = {
            let mut state = self.state.borrow_mut();
            if !std::mem::take(&mut state.epochs_unwritten) {
                return Ok(());
            }
            state.epochs.clone()
        };
        tracing::warn!(directory = %self.directory.display(), latest = ?epochs.latest(),
            "leader epochs found in batches but missing from the leader-epochs file; writing it");
        write_leader_epochs(&*self.file_system, &self.directory, &epochs).await
    }

    /// Writes the producer state as of `offset` (encoded by the caller under the same borrow
    /// that fixed the state) and removes all but the newest snapshots. A failure is logged,
    /// not returned: a snapshot only shortens the replay at the next open.
    async fn persist_producer_snapshot(&self, offset: u64, bytes: Vec<u8>) {
        // The snapshot promises every aborted transaction before it is in an index file.
        if let Err(error) = self.persist_txn_index(offset).await {
            tracing::warn!(%error, offset,
                "txn index write failed; no producer snapshot, the next open replays more of the log");
            return;
        }
        match write_snapshot(&*self.file_system, &self.directory, offset, &bytes).await {
            Ok(()) => self.prune_producer_snapshots().await,
            Err(error) => tracing::warn!(%error, offset,
                "producer snapshot write failed; the next open replays more of the log"),
        }
    }

    /// Removes all but the newest [`PRODUCER_SNAPSHOTS_KEPT`] snapshots. Best effort: a snapshot
    /// left behind is removed by a later prune, and loading always picks the newest valid one.
    async fn prune_producer_snapshots(&self) {
        let names = match self.file_system.list_directory(&self.directory).await {
            Ok(names) => names,
            Err(error) => {
                tracing::warn!(%error, directory = %self.directory.display(),
                    "listing partition directory to prune producer snapshots failed");
                return;
            }
        };
        let mut offsets: Vec<u64> = names
            .iter()
            .filter_map(|name| match parse_snapshot_file_name(name) {
                Some(SnapshotName::Snapshot(offset)) => Some(offset),
                _ => None,
            })
            .collect();
        offsets.sort_unstable();
        let excess = offsets.len().saturating_sub(PRODUCER_SNAPSHOTS_KEPT);
        for offset in &offsets[..excess] {
            let path = snapshot_path(&self.directory, *offset);
            if let Err(error) = remove_if_present(&*self.file_system, &path).await {
                tracing::warn!(%error, "removing an old producer snapshot failed");
            }
        }
    }

    /// The producer state's entry for `producer_id`, if the partition remembers it.
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.state.borrow().producers.get(producer_id).cloned()
    }

    /// The largest producer id the partition remembers (its producer state after recovery: the
    /// snapshot and the batches replayed after it), if any. The broker's producer id allocator
    /// never issues an id at or below it again.
    pub fn largest_producer_id(&self) -> Option<i64> {
        self.state
            .borrow()
            .producers
            .entries()
            .map(|(id, _)| id)
            .max()
    }

    /// Idempotent producers the partition remembers.
    pub fn producer_count(&self) -> usize {
        self.state.borrow().producers.len()
    }

    /// Appends one batch: checks header, length, CRC and (for an idempotent producer) its
    /// sequence, assigns and stamps the base offset, and returns once the batch is written or
    /// durable as `wait` asks. A retry of a batch the producer state still remembers appends
    /// nothing: it returns the original's offsets once the original reaches `wait`, or the
    /// original's error. A returned error means the batch is not acknowledged; after a crash it
    /// may still be found in the log (as in Kafka, an error is not a promise that nothing was
    /// written). See [`AppendWait::Durable`] for what a durable return says about earlier
    /// batches, and [`PartitionLog::append_batches`] to learn whether several batches all
    /// became durable.
    pub async fn append(
        &self,
        batch: BytesMut,
        wait: AppendWait,
    ) -> Result<AppendOutcome, StorageError> {
        let batch_bytes_max = self.state.borrow().config.batch_bytes_max;
        let header = validate_batch(&batch, batch_bytes_max)?;
        txn::refuse_control_batch(&header)?;
        let producer = self.producer_of(&header)?;
        let admitted = match self
            .admit(
                batch,
                &header,
                producer.as_ref(),
                TxnAppend::Data(None),
                &[],
                &mut None,
            )
            .await
        {
            Ok(admitted) => admitted,
            Err(error) => {
                self.hold_producers(producer.iter());
                return Err(error);
            }
        };
        if let Some(slot) = &admitted.slot {
            self.drive(Goal::Append { slot, wait }).await?;
        }
        Ok(admitted.outcome)
    }

    /// Appends several batches in order and returns once every one of them is written or
    /// durable as `wait` asks. All are validated (header, CRC, producer fields) before the
    /// first is appended, so an invalid batch appends nothing; each is checked against the
    /// producer state as the previous one left it. They are admitted one after another: an
    /// append that arrives while one of them waits (for a roll or queue room) comes after the
    /// last, so pipelined calls of one producer keep their sequence order.
    /// It fails if any of them fails — including a sequence refusal of a later batch, and a disk
    /// error that rolls one back after it was written — so an `Ok` with `AppendWait::Durable`
    /// means every batch of the call is durable, and one fdatasync can cover them all. After an
    /// error some of the batches may be in the log (at-least-once, as in Kafka; an idempotent
    /// producer's retry of them is answered as a duplicate).
    pub async fn append_batches(
        &self,
        batches: Vec<BytesMut>,
        wait: AppendWait,
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        self.append_batches_verified(batches, wait, None).await
    }

    /// [`PartitionLog::append_batches`] with the verification guard of the request (see
    /// [`PartitionLog::begin_txn_verification`]): a transactional batch that opens its
    /// producer's transaction here is appended only with a guard still valid.
    pub async fn append_batches_verified(
        &self,
        batches: Vec<BytesMut>,
        wait: AppendWait,
        guard: Option<VerificationGuard>,
    ) -> Result<Vec<AppendOutcome>, StorageError> {
        let batch_bytes_max = self.state.borrow().config.batch_bytes_max;
        let checked = batches
            .iter()
            .map(|batch| {
                let header = validate_batch(batch, batch_bytes_max)?;
                txn::refuse_control_batch(&header)?;
                let producer = self.producer_of(&header)?;
                Ok((header, producer))
            })
            .collect::<Result<Vec<_>, StorageError>>()?;
        let mut admitted: Vec<Admitted> = Vec::with_capacity(batches.len());
        // Once one batch of the call has waited for its turn, the call keeps the turn until
        // its last batch is admitted: a request that arrived meanwhile (the same producer's
        // next one) must not be admitted between them, or its sequence would not follow.
        let mut ticket = None;
        for (index, (batch, (header, producer))) in batches.into_iter().zip(&checked).enumerate() {
            // Stops at the first earlier batch of this call that has failed (see `admit`): the
            // call fails with that batch's error, not with what its rollback did to this one.
            match self
                .admit(
                    batch,
                    header,
                    producer.as_ref(),
                    TxnAppend::Data(guard),
                    &admitted,
                    &mut ticket,
                )
                .await
            {
                Ok(one) => admitted.push(one),
                Err(error) => {
                    // Before the ticket is dropped: the next in line must see the holds.
                    self.hold_producers(
                        checked[index..]
                            .iter()
                            .filter_map(|(_, producer)| producer.as_ref()),
                    );
                    return Err(error);
                }
            }
        }
        drop(ticket);
        // Each slot is checked, not only the last: a batch rolled back after it was written
        // fails its own slot even when a later batch of the call becomes durable.
        for slot in admitted
            .iter()
            .filter_map(|admitted| admitted.slot.as_ref())
        {
            self.drive(Goal::Append { slot, wait }).await?;
        }
        Ok(admitted
            .into_iter()
            .map(|admitted| admitted.outcome)
            .collect())
    }

    /// Holds the producer of each batch that was not appended because its append failed (in
    /// sequence order): a later pipelined batch of that producer, already on its way, must not
    /// be appended before the failed one is resent. See [`ProducerState::hold_at`].
    fn hold_producers<'batch>(&self, batches: impl Iterator<Item = &'batch ProducerBatch>) {
        let now_ms = self.clock.now_ms();
        let mut state = self.state.borrow_mut();
        for batch in batches {
            state.producers.hold_at(batch, now_ms);
        }
    }

    /// The producer fields of a validated batch; `None` when its producer is not idempotent.
    fn producer_of(&self, header: &BatchHeader) -> Result<Option<ProducerBatch>, StorageError> {
        ProducerBatch::of(header)
            .map_err(|refusal| StorageError::producer(&self.directory, refusal))
    }

    /// Admits a validated batch in arrival order: checks its producer sequence, then (rolling
    /// the segment or waiting for queue room first if needed) queues it, all in one borrow with
    /// the check. Returns its completion slot and outcome, or the original's for a duplicate.
    /// Fails with the error of any batch in `earlier_in_call` (the same `append_batches` call)
    /// that has failed by the time this one's turn comes, checked in the same borrow: once an
    /// earlier batch is rolled back, this one must not be checked against the state the
    /// rollback left (a sequence gap, or any sequence if the rollback emptied the producer's
    /// entry) nor land after the hole it left. `ticket` is the caller's place in the arrival
    /// order, taken here when the batch must wait and kept (for the call's next batch) after.
    async fn admit<'log>(
        &'log self,
        batch: BytesMut,
        header: &BatchHeader,
        producer: Option<&ProducerBatch>,
        transaction: TxnAppend,
        earlier_in_call: &[Admitted],
        ticket: &mut Option<AdmissionTicket<'log, F>>,
    ) -> Result<Admitted, StorageError> {
        let length = batch.len();
        let mut batch = Some(batch);
        loop {
            let seen = self.progress.generation();
            let (admission, new_ticket) = {
                let mut state = self.state.borrow_mut();
                if let Some(error) = &state.lost {
                    return Err(error.clone());
                }
                let admission = if !state.admission_turn(ticket.as_ref().map(|t| t.number)) {
                    Admission::Wait
                } else if let Some(error) = earlier_in_call
                    .iter()
                    .filter_map(|admitted| admitted.slot.as_ref())
                    .find(|slot| slot.state() == SlotState::Failed)
                    .map(|slot| slot.error().expect("a failed slot carries its error"))
                {
                    return Err(error);
                } else {
                    let replica = matches!(transaction, TxnAppend::Replica(_));
                    if replica && header.base_offset != state.active.tail.next_offset {
                        // An earlier batch of the call failed and was rolled back, or another
                        // writer got in: the leader's offsets no longer continue this log.
                        return Err(StorageError::ReplicaOffsetMismatch {
                            directory: self.directory.clone(),
                            expected: state.active.tail.next_offset,
                            received: header.base_offset,
                        });
                    }
                    let verdict = match producer {
                        // A replica records its leader's producers without judging them: the
                        // leader refused what had to be refused.
                        Some(producer) if !replica => state
                            .producers
                            .check(producer)
                            .map_err(|refusal| StorageError::producer(&self.directory, refusal))?,
                        _ => Verdict::Append,
                    };
                    if verdict == Verdict::Append {
                        state.check_transaction(header, transaction, &self.directory)?;
                    }
                    match verdict {
                        Verdict::Duplicate {
                            base_offset,
                            next_offset,
                        } => Admission::Admitted(state.duplicate_of(base_offset, next_offset)),
                        Verdict::Append => {
                            if state.roll_pending || state.needs_roll(header, self.clock.now_ms()) {
                                state.roll_pending = true;
                                Admission::Roll(state.active.base_offset)
                            } else if !matches!(
                                state
                                    .write_path()
                                    .status(&Goal::QueueRoom { bytes: length }),
                                Status::Done
                            ) {
                                Admission::QueueFull
                            } else {
                                let batch = batch.take().expect("a batch is enqueued once");
                                let now_ms = self.clock.now_ms();
                                Admission::Admitted(state.enqueue(
                                    batch,
                                    header,
                                    producer,
                                    transaction,
                                    now_ms,
                                ))
                            }
                        }
                    }
                };
                let waits = !matches!(admission, Admission::Admitted(_));
                let new_ticket = (waits && ticket.is_none()).then(|| state.take_admission_ticket());
                (admission, new_ticket)
            };
            if let Some(number) = new_ticket {
                *ticket = Some(AdmissionTicket { log: self, number });
            }
            match admission {
                Admission::Wait => self.progress.changed(seen).await,
                Admission::Roll(base_offset) => self.drive(Goal::Roll { base_offset }).await?,
                Admission::QueueFull => self.drive(Goal::QueueRoom { bytes: length }).await?,
                Admission::Admitted(admitted) => return Ok(admitted),
            }
        }
    }

    /// Works toward `goal`, leading I/O steps when the disk is idle, until it is met or fails.
    async fn drive(&self, goal: Goal<'_>) -> Result<(), StorageError> {
        loop {
            let seen = self.progress.generation();
            let step = {
                let mut state = self.state.borrow_mut();
                match state.write_path().status(&goal) {
                    Status::Done => return Ok(()),
                    Status::Failed(error) => return Err(error),
                    Status::Pending => {}
                }
                if state.io_busy {
                    // Another task leads: wait for its step to complete.
                    None
                } else {
                    state.io_busy = true;
                    Some(state.write_path().plan(&goal))
                }
            };
            match step {
                None => self.progress.changed(seen).await,
                Some(step) => {
                    let mut guard = IoGuard {
                        log: self,
                        write_in_flight: matches!(step, Step::Write(_)),
                    };
                    let result = self.perform(step, &mut guard).await;
                    drop(guard);
                    result?;
                }
            }
        }
    }

    /// Performs one leader step and applies its result to the state.
    async fn perform(
        &self,
        step: Step<F::File>,
        guard: &mut IoGuard<'_, F>,
    ) -> Result<(), StorageError> {
        match step {
            Step::Write(WriteJob {
                files,
                path,
                position,
                buffer,
                payload_bytes,
                consumed_bytes,
                tail_block_after,
                preallocate_to,
            }) => {
                if let Some(end_position) = preallocate_to {
                    // Advisory (see `StorageFile::preallocate`): without it the write still
                    // works, it only allocates blocks as it goes.
                    if let Err(error) = files.log.preallocate(end_position).await {
                        tracing::debug!(%error, path = %path.display(), end_position,
                            "preallocating segment blocks failed; writes allocate as they go");
                    }
                }
                let write_bytes = crate::file::IoBuffer::as_bytes(&buffer).len() as u64;
                let started_us = self.clock.monotonic_us();
                let result = files.log.write_at(position, buffer).await;
                let took_us = self.clock.monotonic_us().saturating_sub(started_us);
                spate_metrics::shard(|metrics| {
                    metrics.disk_write_latency.observe_us(took_us);
                    metrics.disk_writes.increment();
                    metrics.disk_written_bytes.add(write_bytes);
                });
                guard.write_in_flight = false;
                self.state.borrow_mut().write_path().finish_write(
                    position,
                    payload_bytes,
                    consumed_bytes,
                    tail_block_after,
                    &path,
                    result,
                )
            }
            Step::Sync(job) => {
                let SyncJob {
                    files,
                    path,
                    target,
                    index,
                } = job;
                // The index entries written here cover batches an earlier sync made durable, so
                // they may go to disk while this sync runs: the flush hides their latency.
                let index_write = async {
                    if let Some(persist) = index {
                        self.persist_index(persist).await;
                    }
                };
                let started_us = self.clock.monotonic_us();
                let sync = async {
                    let result = files.log.sync_data().await;
                    (result, self.clock.monotonic_us())
                };
                let ((result, synced_us), _) = futures_lite::future::zip(sync, index_write).await;
                // Before anything this sync covers is acknowledged: a file that lost its name
                // loses it all at the next restart, however well synced.
                let linked = match &result {
                    Ok(()) => check_linked(&files.log, &path).await,
                    Err(_) => Ok(()),
                };
                let mut state = self.state.borrow_mut();
                let took_us = synced_us.saturating_sub(started_us);
                spate_metrics::shard(|metrics| {
                    metrics.fsync_latency.observe_us(took_us);
                    if took_us >= crate::slow_sync::SLOW_SYNC_WARNING_US {
                        metrics.slow_fsyncs.increment();
                    }
                });
                if let Some(report) = state.slow_syncs.observe(took_us, synced_us) {
                    tracing::warn!(
                        path = %path.display(),
                        took_ms = report.took_us / 1000,
                        skipped_since_last_report = report.skipped,
                        skipped_slowest_ms = report.skipped_slowest_us / 1000,
                        "slow fdatasync: acks=all answers and what consumers may read waited for it"
                    );
                }
                if let Err(error) = linked {
                    if let StorageError::Unlinked { .. } = error {
                        state.lost = Some(error.clone());
                    }
                    return Err(state.write_path().fail(error));
                }
                state
                    .write_path()
                    .finish_sync(target, &path, result, self.clock.monotonic_us())
            }
            Step::Repair(job) => {
                let result = match job.files.log.truncate(job.position).await {
                    Ok(()) => job.files.log.sync_data().await,
                    Err(error) => Err(error),
                };
                self.state
                    .borrow_mut()
                    .write_path()
                    .finish_repair(&job.path, result)
            }
            Step::Roll => self.roll().await,
        }
    }

    /// Writes index entries. A failure is not fatal: the index is a hint that recovery rebuilds
    /// from the log, so it is logged and the entries are retried with the next persist.
    async fn persist_index(&self, persist: IndexPersist<F::File>) {
        let IndexPersist {
            base_offset,
            files,
            paths,
            write,
        } = persist;
        let entries_after = write.entries_after;
        let rebuilds = self.state.borrow().index_rebuilds;
        match write.execute(&files, &paths).await {
            // Entries rebuilt meanwhile are not the ones written: they are all written again.
            Ok(()) if self.state.borrow().index_rebuilds != rebuilds => {}
            Ok(()) => self
                .state
                .borrow_mut()
                .write_path()
                .finish_index_persist(base_offset, entries_after),
            Err(error) => tracing::warn!(%error, "index write failed; will retry"),
        }
    }

    /// Closes the active segment and opens the next. Runs as leader with everything written and
    /// synced. Order: index entries written and synced; log cut to its exact length and synced;
    /// new files created; directory synced. Each step is idempotent, so a failed roll is retried
    /// whole by the next append.
    async fn roll(&self) -> Result<(), StorageError> {
        let (files, paths, index_write, end_position, base_offset, new_base_offset, snapshot) = {
            let mut state = self.state.borrow_mut();
            assert!(
                state.writer.pending.is_empty(),
                "roll after everything is written"
            );
            assert_eq!(
                state.writer.durable.tail, state.active.tail,
                "roll after everything is synced"
            );
            // Nothing is admitted while a roll is pending, so this is the state as of the new
            // segment's base offset, and every batch it reflects is durable.
            let now_ms = self.clock.now_ms();
            state.producers.expire(now_ms);
            state.producers.trim_to_retained();
            let new_base_offset = state.active.tail.next_offset;
            let snapshot = producer_snapshot::encode(
                &state.producers,
                &state.transactions.ongoing_as_of(new_base_offset),
                new_base_offset,
            );
            let active = &state.active;
            (
                active.files.clone(),
                active.paths.clone(),
                IndexWrite::plan(&active.index, active.persisted_entries, active.index.len()),
                active.tail.end_position,
                active.base_offset,
                active.tail.next_offset,
                snapshot,
            )
        };
        if let Some(write) = index_write {
            let entries_after = write.entries_after;
            let rebuilds = self.state.borrow().index_rebuilds;
            write.execute(&files, &paths).await?;
            let mut state = self.state.borrow_mut();
            // Entries rebuilt meanwhile (a timestamp lookup's check) stay in memory only; the
            // next open checks the files again.
            if state.index_rebuilds == rebuilds {
                state
                    .write_path()
                    .finish_index_persist(base_offset, entries_after);
            }
        }
        sync_index_files(&files, &paths).await?;
        files.log.truncate(end_position).await.map_err(|error| {
            StorageError::io(
                "truncating closed segment",
                &paths.log,
                Some(end_position),
                error,
            )
        })?;
        files
            .log
            .sync_data()
            .await
            .map_err(|error| StorageError::io("syncing closed segment", &paths.log, None, error))?;

        let new_paths = SegmentPaths::new(&self.directory, new_base_offset);
        let new_files =
            open_segment_files(&*self.file_system, &new_paths, OpenMode::CreateIfMissing).await?;
        for (file, path) in [
            (&new_files.log, &new_paths.log),
            (&new_files.offset_index, &new_paths.offset_index),
            (&new_files.time_index, &new_paths.time_index),
        ] {
            // Left over by a roll interrupted after creating files: they never held data, but
            // make sure of it.
            let size = file
                .size()
                .await
                .map_err(|error| StorageError::io("sizing new segment file", path, None, error))?;
            if size > 0 {
                file.truncate(0).await.map_err(|error| {
                    StorageError::io("emptying new segment file", path, Some(0), error)
                })?;
                file.sync_data().await.map_err(|error| {
                    StorageError::io("syncing new segment file", path, None, error)
                })?;
            }
        }
        self.file_system
            .sync_directory(&self.directory)
            .await
            .map_err(|error| {
                StorageError::io("syncing partition directory", &self.directory, None, error)
            })?;

        {
            let mut state = self.state.borrow_mut();
            let new_segment = Segment {
                base_offset: new_base_offset,
                paths: new_paths,
                files: Rc::new(new_files),
                index: SegmentIndex::new(),
                persisted_entries: 0,
                tail: SegmentTail::empty(new_base_offset),
                opened_ms: self.clock.now_ms(),
            };
            let old = std::mem::replace(&mut state.active, new_segment);
            state.sealed.insert(old.base_offset, old);
            state.time_indexes_checked.insert(new_base_offset);
            state.writer.restart_at(DurablePoint {
                tail: SegmentTail::empty(new_base_offset),
                tail_block: Vec::new(),
            });
            state.roll_pending = false;
        }
        spate_metrics::shard(|metrics| metrics.segment_rolls.increment());
        // After the switch: appends queue behind this leader step rather than behind a roll.
        let _checkpoint = self.checkpoint_turn().await;
        self.persist_producer_snapshot(new_base_offset, snapshot)
            .await;
        // Everything before the new segment is durable. Best effort like the snapshot: a
        // failure only leaves an older recovery point (a longer replay, a weaker loss check).
        if let Err(error) = self.write_recovery_point(new_base_offset, 0).await {
            tracing::warn!(%error, offset = new_base_offset, "recovery point write failed at roll");
        }
        Ok(())
    }

    /// Waits until no recovery point or producer snapshot is being written, then holds the
    /// turn until the guard is dropped.
    async fn checkpoint_turn(&self) -> CheckpointGuard<'_, F> {
        loop {
            let seen = self.progress.generation();
            {
                let mut state = self.state.borrow_mut();
                if !state.checkpoint_busy {
                    state.checkpoint_busy = true;
                    return CheckpointGuard { log: self };
                }
            }
            self.progress.changed(seen).await;
        }
    }

    /// Durably records `offset` (at `position` of the active segment) as the recovery point.
    /// The caller holds the checkpoint turn and has made everything before `offset` durable.
    async fn write_recovery_point(&self, offset: u64, position: u64) -> Result<(), StorageError> {
        write_checkpoint(
            &*self.file_system,
            &self.directory,
            CheckpointKind::RecoveryPoint,
            offset,
        )
        .await?;
        let mut state = self.state.borrow_mut();
        if offset >= state.recovery_point.offset {
            state.recovery_point = RecoveryPoint {
                offset,
                segment_base_offset: state.active.base_offset,
                position,
            };
        }
        Ok(())
    }

    /// Writes a producer snapshot and the recovery point at the durable end if at least
    /// `recovery_point_interval_bytes` of durable log lie past the last recovery point (or
    /// `force` and any do): so an open after a crash replays and scans only what came after it.
    /// Returns whether it wrote one. Called by the owner's timer; skipped while another
    /// checkpoint is being written. An error means the recovery point could not be written
    /// (the partition's directory may be gone).
    pub async fn checkpoint_recovery_point(&self, force: bool) -> Result<bool, StorageError> {
        // The committed offset moves without appends (a follower learning its leader's high
        // watermark), so it is written on the slow beat whatever the log did.
        if force && !self.state.borrow().checkpoint_busy {
            self.state.borrow_mut().checkpoint_busy = true;
            let _checkpoint = CheckpointGuard { log: self };
            self.persist_committed_offset().await;
        }
        let (offset, position, snapshot) = {
            let mut state = self.state.borrow_mut();
            if state.checkpoint_busy {
                return Ok(false);
            }
            let durable = state.writer.durable.tail;
            let last = state.recovery_point;
            if durable.next_offset <= last.offset {
                return Ok(false);
            }
            let bytes_since = if last.segment_base_offset == state.active.base_offset {
                durable.end_position.saturating_sub(last.position)
            } else {
                durable.end_position
            };
            if !force && bytes_since < state.config.recovery_point_interval_bytes {
                return Ok(false);
            }
            state.checkpoint_busy = true;
            // Batches past the durable end may already be recorded: the snapshot holds only
            // what precedes its offset, the replay at the next open brings back the rest.
            let snapshot = producer_snapshot::encode(
                &state.producers.as_of(durable.next_offset),
                &state.transactions.ongoing_as_of(durable.next_offset),
                durable.next_offset,
            );
            (durable.next_offset, durable.end_position, snapshot)
        };
        let _checkpoint = CheckpointGuard { log: self };
        self.persist_producer_snapshot(offset, snapshot).await;
        self.write_recovery_point(offset, position).await?;
        Ok(true)
    }

    /// The error that stopped every append for good, if the active segment's file was found
    /// unlinked (see [`StorageError::Unlinked`]) or a compaction swap failed after its commit
    /// point; the owner then takes the partition offline (an open recovers it).
    pub fn lost(&self) -> Option<StorageError> {
        self.state.borrow().lost.clone()
    }

    /// Checks that the active segment's file still has a directory entry; if not, the log is
    /// lost from now on (see [`PartitionLog::lost`]) and every later append is refused. For the
    /// owner's timer: a partition nobody writes to has no sync that would notice. Appends
    /// already admitted fail at their own sync, which checks again before acknowledging.
    pub async fn check_linked(&self) -> Result<(), StorageError> {
        let (files, path) = {
            let state = self.state.borrow();
            if let Some(error) = &state.lost {
                return Err(error.clone());
            }
            (state.active.files.clone(), state.active.paths.log.clone())
        };
        let result = check_linked(&files.log, &path).await;
        if let Err(error @ StorageError::Unlinked { .. }) = &result {
            tracing::warn!(%error, "the active segment lost its directory entry");
            self.state.borrow_mut().lost = Some(error.clone());
        }
        result
    }

    /// What the open of this log read to recover it.
    pub fn recovery_report(&self) -> RecoveryReport {
        self.state.borrow().recovery_report
    }

    /// Whole batches starting with the one that holds `offset`, up to `max_bytes` (always at
    /// least one batch when `offset` is below the high watermark, as Kafka does, so consumers
    /// make progress). Only durable batches are returned. `OffsetOutOfRange` if `offset` is
    /// before the log start or after the log end; an empty result at or past the high watermark.
    pub async fn read(&self, offset: u64, max_bytes: usize) -> Result<ReadOutcome, StorageError> {
        // A read that failed while compaction replaced the segment it read (its files removed
        // or renamed under a closed handle) is read again from the new segment.
        let mut swaps = self.state.borrow().segment_swaps;
        loop {
            match self.read_once(offset, max_bytes, false).await {
                Err(_) if self.state.borrow().segment_swaps != swaps => {
                    swaps = self.state.borrow().segment_swaps;
                }
                result => return result,
            }
        }
    }

    /// One read, up to the high watermark, or up to the durable end for a replica
    /// (`to_durable_end`).
    async fn read_once(
        &self,
        offset: u64,
        max_bytes: usize,
        to_durable_end: bool,
    ) -> Result<ReadOutcome, StorageError> {
        let plan = {
            let state = self.state.borrow();
            let high_watermark = state.high_watermark();
            let read_end = if to_durable_end {
                state.writer.durable.tail.next_offset
            } else {
                high_watermark
            };
            let log_start_offset = state.log_start_offset;
            if offset < log_start_offset || offset > state.active.tail.next_offset {
                return Err(StorageError::OffsetOutOfRange {
                    offset,
                    log_start_offset,
                    next_offset: state.active.tail.next_offset,
                });
            }
            let mut outcome = ReadOutcome {
                batches: Vec::new(),
                high_watermark,
                log_start_offset,
            };
            if offset >= read_end {
                return Ok(outcome);
            }
            if let Some(batches) = state.tail_cache.read(offset, read_end, max_bytes) {
                outcome.batches = batches;
                return Ok(outcome);
            }
            let (segment, readable) = state
                .readable_segments()
                .take_while(|(segment, _)| segment.base_offset <= offset)
                .last()
                .expect("every offset from the log start on lies in a segment");
            let start = segment.scan_start_for_offset(offset);
            let mut plan = ReadPlan::new(segment, readable, start, &state.config);
            plan.segment_swaps = state.segment_swaps;
            if segment.base_offset == state.active.base_offset {
                plan.stable_limit = plan
                    .stable_limit
                    .min(state.writer.durable.tail.end_position);
            }
            (plan, outcome, read_end)
        };
        let (plan, mut outcome, read_end) = plan;
        debug_assert!(plan.base_offset <= offset);
        // A read parked for this fetch (see `read_ahead`): taken whether it fits or not, so a
        // reader that moved elsewhere does not keep it.
        let parked = self.state.borrow_mut().read_ahead.take();
        let preloaded = match parked {
            Some(parked)
                if parked.covers(plan.base_offset, plan.segment_swaps, plan.start_position) =>
            {
                parked.finish().await
            }
            _ => None,
        };
        let served = read_batches(&plan, offset, max_bytes, read_end, preloaded).await?;
        outcome.batches = served.batches;
        if served.next_offset < read_end {
            self.read_ahead_from(&plan, served.next_position, served.next_offset, max_bytes)
                .await;
        }
        Ok(outcome)
    }

    /// Starts the disk read the next fetch of `max_bytes` from `next_offset` (at
    /// `next_position` in the plan's segment) will begin with, and parks it, when that lies in
    /// the segment's stable bytes and is worth it.
    async fn read_ahead_from(
        &self,
        plan: &ReadPlan<F::File>,
        next_position: u64,
        next_offset: u64,
        max_bytes: usize,
    ) {
        if next_position >= plan.stable_limit {
            return;
        }
        let span = {
            let state = self.state.borrow();
            if state.segment_swaps != plan.segment_swaps || state.read_ahead.is_some() {
                return;
            }
            let segment = if state.active.base_offset == plan.base_offset {
                &state.active
            } else {
                match state.sealed.get(&plan.base_offset) {
                    Some(segment) => segment,
                    None => return,
                }
            };
            let (scan_position, _) = segment.scan_start_for_offset(next_offset);
            let position = align_down(scan_position.min(next_position));
            let end = (scan_position
                + first_read_bytes(max_bytes, plan.index_interval_bytes) as u64)
                .min(plan.stable_limit);
            if end <= position || ((end - position) as usize) < READ_AHEAD_BYTES_MIN {
                return;
            }
            ReadAheadSpan {
                segment_base_offset: plan.base_offset,
                segment_swaps: plan.segment_swaps,
                position,
                length: (end - position) as usize,
            }
        };
        if let Some(parked) = ReadAhead::start(plan.files.clone(), span).await {
            let mut state = self.state.borrow_mut();
            // Dropped if the segment was swapped meanwhile or another read parked first.
            if state.segment_swaps == plan.segment_swaps && state.read_ahead.is_none() {
                state.read_ahead = Some(parked);
            }
        }
    }

    /// The base offset of the first durable batch (at or after the log start) whose
    /// `max_timestamp` is at or after `timestamp_ms`, or `None`. Batch granularity: the batch
    /// found may hold earlier records too; the caller scans its records for the exact one.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<u64>, StorageError> {
        let mut searched_through: Option<u64> = None;
        loop {
            let (mut plan, log_start_offset, unchecked_entries) = {
                let state = self.state.borrow();
                let log_start_offset = state.log_start_offset;
                let unchecked = |segment: &Segment<F::File>| {
                    !state.time_indexes_checked.contains(&segment.base_offset)
                };
                // A segment is skipped on its largest timestamp, which comes partly from its
                // time index (a hint) after an open: never on an unchecked one. Checking it costs
                // one scan of the segment, once per open (remembered); a claim too low would
                // otherwise skip its newest batches in silence.
                let candidate = state.readable_segments().find(|(segment, readable)| {
                    searched_through.is_none_or(|base_offset| segment.base_offset > base_offset)
                        && readable.next_offset > log_start_offset
                        && (readable.max_timestamp >= timestamp_ms || unchecked(segment))
                });
                let Some((segment, readable)) = candidate else {
                    return Ok(None);
                };
                let start = segment.scan_start_for_timestamp(timestamp_ms);
                let unchecked_entries =
                    unchecked(segment).then(|| (segment.index.clone(), readable.max_timestamp));
                (
                    ReadPlan::new(segment, readable, start, &state.config),
                    log_start_offset,
                    unchecked_entries,
                )
            };
            if let Some((entries, claimed_max_timestamp)) = unchecked_entries {
                if !self
                    .check_time_index(&plan, &entries, claimed_max_timestamp)
                    .await?
                {
                    // The entries lie: this lookup scans the whole segment.
                    plan.start_position = 0;
                    plan.start_offset = plan.base_offset;
                    plan.resume = None;
                }
            }
            if let Some(offset) = scan_for_timestamp(&plan, timestamp_ms, log_start_offset).await? {
                // A replicated log holds durable batches readers may not see yet: every later
                // batch is past the high watermark too.
                return Ok((offset < self.high_watermark()).then_some(offset));
            }
            searched_through = Some(plan.base_offset);
        }
    }

    /// Checks a segment's index entries and its largest timestamp (`claimed_max_timestamp`,
    /// which decides whether lookups skip it and when retention deletes it), as derived from
    /// disk at open, against its batch headers once; returns whether they can be trusted.
    /// Entries that disagree are replaced by ones rebuilt from the headers (a closed segment's
    /// files are rewritten, an error doing so only logged as for any index write; the active
    /// segment's entries are replaced in memory and written again by its next index write), and
    /// the largest timestamp corrected. A segment whose headers cannot all be read stays
    /// unchecked: the lookup then meets the damage itself and reports it.
    async fn check_time_index(
        &self,
        plan: &ReadPlan<F::File>,
        entries: &SegmentIndex,
        claimed_max_timestamp: i64,
    ) -> Result<bool, StorageError> {
        let index_interval_bytes = self.state.borrow().config.index_interval_bytes;
        let Some((index, tail, entries_agree)) =
            rebuild_index(plan, entries, index_interval_bytes).await?
        else {
            return Ok(true);
        };
        let replace = {
            let mut state = self.state.borrow_mut();
            if entries_agree && tail.max_timestamp == claimed_max_timestamp {
                state.time_indexes_checked.insert(plan.base_offset);
                return Ok(true);
            }
            tracing::warn!(
                path = %plan.path.display(),
                claimed_max_timestamp,
                max_timestamp = tail.max_timestamp,
                "index entries disagree with the batches they describe, or the segment's largest \
                 timestamp does; rebuilding them from the batch headers"
            );
            let state = &mut *state;
            match state.sealed.get_mut(&plan.base_offset) {
                Some(segment) if segment.tail.end_position == tail.end_position => {
                    segment.index = index.clone();
                    segment.persisted_entries = index.len();
                    segment.tail.max_timestamp = tail.max_timestamp;
                    state.time_indexes_checked.insert(plan.base_offset);
                    Some((segment.files.clone(), segment.paths.clone()))
                }
                Some(_) => None,
                None if state.active.base_offset == plan.base_offset => {
                    state.replace_active_index(index.clone(), plan.end_offset, tail.max_timestamp);
                    state.time_indexes_checked.insert(plan.base_offset);
                    None
                }
                None => None,
            }
        };
        if let Some((files, paths)) = replace {
            if let Err(error) = rewrite_index_files(&files, &paths, &index).await {
                tracing::warn!(%error, "rewriting a rebuilt index failed; it stays rebuilt in memory");
            }
        }
        Ok(false)
    }

    pub(crate) async fn maintenance(&self) -> MaintenanceGuard<'_, F> {
        loop {
            let seen = self.progress.generation();
            {
                let mut state = self.state.borrow_mut();
                if !state.maintenance_busy {
                    state.maintenance_busy = true;
                    return MaintenanceGuard { log: self };
                }
            }
            self.progress.changed(seen).await;
        }
    }

    /// Moves the log start to `log_start_offset` durably (checkpoint first), then deletes the
    /// closed segments wholly before it. Returns (segments deleted, bytes deleted).
    async fn advance_log_start(&self, log_start_offset: u64) -> Result<(usize, u64), StorageError> {
        if log_start_offset > self.state.borrow().log_start_offset {
            write_log_start(&*self.file_system, &self.directory, log_start_offset).await?;
            let mut state = self.state.borrow_mut();
            state.log_start_offset = log_start_offset;
            state.producers.drop_before(log_start_offset);
            state.transactions.drop_before(log_start_offset);
            state.epochs.truncate_from_start(log_start_offset);
        }
        let victims: Vec<Segment<F::File>> = {
            let mut state = self.state.borrow_mut();
            let doomed: Vec<u64> = state
                .sealed
                .values()
                .take_while(|segment| segment.tail.next_offset <= log_start_offset)
                .map(|segment| segment.base_offset)
                .collect();
            doomed
                .iter()
                .filter_map(|base_offset| state.sealed.remove(base_offset))
                .collect()
        };
        if victims.is_empty() {
            return Ok((0, 0));
        }
        let bytes: u64 = victims.iter().map(Segment::size_bytes).sum();
        let mut first_error = None;
        for segment in &victims {
            if let Err(error) = remove_segment_files(&*self.file_system, &segment.paths).await {
                first_error.get_or_insert(error);
            }
        }
        if let Err(error) = self.file_system.sync_directory(&self.directory).await {
            first_error.get_or_insert(StorageError::io(
                "syncing partition directory",
                &self.directory,
                None,
                error,
            ));
        }
        match first_error {
            // The checkpoint is durable: files left behind are deleted at the next open.
            Some(error) => Err(error),
            None => Ok((victims.len(), bytes)),
        }
    }

    /// Deletes whole closed segments (never the active one), oldest first, while the log is at
    /// least `retention_bytes` without them, or while their newest batch timestamp is more than
    /// `retention_ms` before the clock's now. Nothing when the cleanup policy has no `delete`
    /// (a compacted topic keeps every key's last record however old).
    pub async fn enforce_retention(&self) -> Result<RetentionOutcome, StorageError> {
        if !self.state.borrow().config.cleanup_policy.delete {
            return Ok(RetentionOutcome {
                segments_deleted: 0,
                bytes_deleted: 0,
                log_start_offset: self.log_start_offset(),
            });
        }
        let _maintenance = self.maintenance().await;
        let now_ms = self.clock.now_ms();
        // Segments whose largest timestamp this pass checked (or could not: damage).
        let mut tried = BTreeSet::new();
        let new_start = loop {
            let (new_start, unchecked) = self.retention_plan(now_ms, &tried);
            let Some((plan, entries, claimed_max_timestamp)) = unchecked else {
                break new_start;
            };
            // Its age alone would delete it, and its largest timestamp may come from a tampered
            // time index (too low: records deleted early): check it against its batch headers
            // first, once per segment and process. (A too high one only keeps it longer.)
            tried.insert(plan.base_offset);
            self.check_time_index(&plan, &entries, claimed_max_timestamp)
                .await?;
        };
        let (segments_deleted, bytes_deleted) = match new_start {
            Some(offset) => self.advance_log_start(offset).await?,
            None => (0, 0),
        };
        Ok(RetentionOutcome {
            segments_deleted,
            bytes_deleted,
            log_start_offset: self.log_start_offset(),
        })
    }

    /// The log start retention would move to (`None`: no change), or first a segment that only
    /// its age would delete and whose largest timestamp is not yet checked (nor in `tried`): a
    /// plan to scan it whole, its entries, and its largest timestamp as claimed.
    #[allow(clippy::type_complexity)]
    fn retention_plan(
        &self,
        now_ms: i64,
        tried: &BTreeSet<u64>,
    ) -> (Option<u64>, Option<(ReadPlan<F::File>, SegmentIndex, i64)>) {
        let state = self.state.borrow();
        let mut total_bytes: u64 =
            state.sealed.values().map(Segment::size_bytes).sum::<u64>() + state.active.size_bytes();
        let mut new_start = None;
        for segment in state.sealed.values() {
            let size = segment.size_bytes();
            let by_bytes = state
                .config
                .retention_bytes
                .is_some_and(|limit| total_bytes - size >= limit);
            let by_age = state.config.retention_ms.is_some_and(|retention_ms| {
                let retention_ms = i64::try_from(retention_ms).unwrap_or(i64::MAX);
                segment.tail.max_timestamp < now_ms.saturating_sub(retention_ms)
            });
            if !(by_bytes || by_age) {
                break;
            }
            let unchecked = !state.time_indexes_checked.contains(&segment.base_offset)
                && !tried.contains(&segment.base_offset);
            if !by_bytes && unchecked {
                let start = (0, segment.base_offset);
                let plan = ReadPlan::new(segment, segment.tail, start, &state.config);
                let claimed = segment.tail.max_timestamp;
                return (None, Some((plan, segment.index.clone(), claimed)));
            }
            total_bytes -= size;
            new_start = Some(segment.tail.next_offset);
        }
        (
            new_start.map(|offset| offset.max(state.log_start_offset)),
            None,
        )
    }

    /// Makes `before_offset` the new log start (Kafka's DeleteRecords), durably, and deletes the
    /// closed segments wholly before it. It may not pass the high watermark. Returns the log
    /// start, which never moves backwards.
    pub async fn delete_records(&self, before_offset: u64) -> Result<u64, StorageError> {
        let _maintenance = self.maintenance().await;
        {
            let state = self.state.borrow();
            if before_offset > state.high_watermark() {
                return Err(StorageError::OffsetOutOfRange {
                    offset: before_offset,
                    log_start_offset: state.log_start_offset,
                    next_offset: state.high_watermark(),
                });
            }
            if before_offset <= state.log_start_offset {
                return Ok(state.log_start_offset);
            }
        }
        self.advance_log_start(before_offset).await?;
        Ok(self.log_start_offset())
    }

    /// The offset the next append gets (the log end, written or not).
    pub fn next_offset(&self) -> u64 {
        self.state.borrow().active.tail.next_offset
    }

    /// Where the read parked for this partition's next catch-up fetch lies, if one is.
    pub fn parked_read_ahead(&self) -> Option<ReadAheadSpan> {
        self.state
            .borrow()
            .read_ahead
            .as_ref()
            .map(|parked| parked.span)
    }

    /// The offset after the last durable batch: what reads may return.
    pub fn high_watermark(&self) -> u64 {
        self.state.borrow().high_watermark()
    }

    pub fn log_start_offset(&self) -> u64 {
        self.state.borrow().log_start_offset
    }

    /// The largest `max_timestamp` of the durable segments holding offsets at or after the log
    /// start (Kafka's ListOffsets -3), or `None` when there is none. Segment granularity: a
    /// segment cut by DeleteRecords still counts its deleted batches, and after an open a
    /// segment's value may come from its time index until [`Self::offset_for_timestamp`]
    /// checks it; callers look the record up with `offset_for_timestamp`, which is exact.
    pub fn max_timestamp(&self) -> Option<i64> {
        let state = self.state.borrow();
        let log_start_offset = state.log_start_offset;
        state
            .readable_segments()
            .filter(|(_, readable)| readable.next_offset > log_start_offset)
            .map(|(_, readable)| readable.max_timestamp)
            .filter(|timestamp| *timestamp != i64::MIN)
            .max()
    }

    /// Bytes of log on disk across all segments (including queued, unwritten appends).
    pub fn size_bytes(&self) -> u64 {
        let state = self.state.borrow();
        state.sealed.values().map(Segment::size_bytes).sum::<u64>() + state.active.size_bytes()
    }

    /// Bytes of recent batches held in memory for tail reads, and the most it may hold (the
    /// log's `tail_cache_bytes_max`).
    pub fn tail_cache_bytes(&self) -> (usize, usize) {
        let state = self.state.borrow();
        (state.tail_cache.bytes(), state.config.tail_cache_bytes_max)
    }

    /// Number of segments, the active one included.
    pub fn segment_count(&self) -> usize {
        self.state.borrow().sealed.len() + 1
    }

    /// A one-line summary of the write path, for logs and test failure messages.
    pub fn describe(&self) -> String {
        let state = self.state.borrow();
        let writer = &state.writer;
        format!(
            "active segment {} | appended {}@{} written {}@{} durable {}@{} | pending {} batches {} bytes \
             (front written {}) | slots queued {} written {} | io busy {} roll pending {} needs repair {} \
             failures {} | log start {}",
            state.active.base_offset,
            state.active.tail.next_offset,
            state.active.tail.end_position,
            writer.written_tail.next_offset,
            writer.written_position,
            writer.durable.tail.next_offset,
            writer.durable.tail.end_position,
            writer.pending.len(),
            writer.pending_bytes,
            writer.front_written_bytes,
            writer.queued_slots.len(),
            writer.written_slots.len(),
            state.io_busy,
            state.roll_pending,
            writer.needs_repair,
            writer.failure_epoch,
            state.log_start_offset,
        )
    }

    pub fn directory(&self) -> &Path {
        &self.directory
    }

    /// Returns once every batch appended before the call is durable, whatever the policy.
    pub async fn sync(&self) -> Result<(), StorageError> {
        let goal = {
            let state = self.state.borrow();
            Goal::Synced {
                next_offset: state.active.tail.next_offset,
                epoch: state.writer.failure_epoch,
            }
        };
        self.drive(goal).await
    }

    /// Syncs if the durability policy says a sync is due for data already written. Appends that
    /// wait for `Durable` drive syncs themselves; call this from a shard timer (about every
    /// group-commit interval) so that data appended with `AppendWait::Written` becomes durable
    /// and visible to readers within the policy's bound even if no durable append follows.
    /// Returns whether it synced.
    pub async fn sync_if_due(&self) -> Result<bool, StorageError> {
        let goal = {
            let mut state = self.state.borrow_mut();
            if !state.write_path().sync_due(self.clock.monotonic_us()) {
                return Ok(false);
            }
            Goal::Synced {
                next_offset: state.writer.written_tail.next_offset,
                epoch: state.writer.failure_epoch,
            }
        };
        self.drive(goal).await.map(|()| true)
    }

    /// Replaces the configuration at run time (topic config change). New limits apply from the
    /// next append, roll or retention pass. A configuration failing [`LogConfig::check`] is
    /// refused: the old one stays and the refusal is logged (callers check first).
    pub fn update_config(&self, config: LogConfig) {
        if let Err(error) = config.check() {
            tracing::error!(%error, directory = %self.directory.display(), "refusing invalid log config");
            return;
        }
        let mut state = self.state.borrow_mut();
        state.tail_cache.set_bytes_max(config.tail_cache_bytes_max);
        state.producers.set_limits(
            config.producers_per_partition_max,
            config.producer_expiry_ms,
        );
        state
            .transactions
            .set_limits(config.producers_per_partition_max);
        state.config = config;
    }

    /// Makes everything durable, writes the remaining index entries, and closes the files.
    pub async fn close(self) -> Result<(), StorageError> {
        self.sync().await?;
        let repair = {
            let state = self.state.borrow();
            state.writer.needs_repair.then(|| {
                (
                    state.active.files.clone(),
                    state.active.paths.log.clone(),
                    state.writer.durable.tail.end_position,
                )
            })
        };
        if let Some((files, path, position)) = repair {
            // Cut off bytes a failed write may have left, so they cannot resurface at the next open.
            let result = match files.log.truncate(position).await {
                Ok(()) => files.log.sync_data().await,
                Err(error) => Err(error),
            };
            self.state
                .borrow_mut()
                .write_path()
                .finish_repair(&path, result)?;
        }
        let persist = self
            .state
            .borrow_mut()
            .write_path()
            .plan_index_persist(true);
        if let Some(IndexPersist {
            files,
            paths,
            write,
            ..
        }) = persist
        {
            write.execute(&files, &paths).await?;
            sync_index_files(&files, &paths).await?;
        }
        self.persist_committed_offset().await;
        let (log_end, snapshot) = {
            let mut state = self.state.borrow_mut();
            if state.recovery_point.offset == state.active.tail.next_offset {
                // Nothing was appended since the last recovery point, and its producer snapshot
                // (written with it) is as of the same offset: writing both again would only cost
                // four fsyncs, which for many idle partitions made shutdown take minutes.
                return Ok(());
            }
            state.producers.expire(self.clock.now_ms());
            // Everything is durable (synced above).
            state.producers.trim_to_retained();
            let log_end = state.active.tail.next_offset;
            (
                log_end,
                producer_snapshot::encode(
                    &state.producers,
                    &state.transactions.ongoing_as_of(log_end),
                    log_end,
                ),
            )
        };
        // As of the log end, so that the next open replays nothing.
        self.persist_producer_snapshot(log_end, snapshot).await;
        let position = self.state.borrow().writer.durable.tail.end_position;
        self.write_recovery_point(log_end, position).await
    }

    /// Removes the partition: every file, then the directory (topic deletion). Not atomic: a
    /// crash part-way leaves a partial directory that the caller's deletion must finish.
    pub async fn delete(self) -> Result<(), StorageError> {
        let directory = self.directory.clone();
        let file_system = self.file_system.clone();
        drop(self);
        let names = file_system
            .list_directory(&directory)
            .await
            .map_err(|error| {
                StorageError::io("listing partition directory", &directory, None, error)
            })?;
        for name in names {
            let path = directory.join(name);
            remove_if_present(&*file_system, &path).await?;
        }
        file_system
            .remove_directory(&directory)
            .await
            .map_err(|error| {
                StorageError::io("removing partition directory", &directory, None, error)
            })?;
        if let Some(parent) = directory.parent() {
            file_system.sync_directory(parent).await.map_err(|error| {
                StorageError::io("syncing parent directory", parent, None, error)
            })?;
        }
        Ok(())
    }
}

/// Recovery steps 1-8 (see `FORMAT.md`, "Recovery at open"): the log's state with the segments
/// recovered and an empty producer state, and the directory's names, for step 9. Also used to
/// reload the state after a truncation.
async fn load_state<F: FileSystem>(
    fs: &F,
    directory: &Path,
    config: LogConfig,
    clock: &dyn Clock,
) -> Result<(LogState<F::File>, Vec<String>), StorageError> {
    // Steps 1-2 (and a compaction swap or a truncation interrupted by a stop, finished or
    // rolled back).
    let names = prepare_directory(fs, directory).await?;
    let names = compaction::finish_interrupted_swaps(fs, directory, names, &config).await?;
    let names = truncation::finish_interrupted_truncation(fs, directory, names).await?;
    let checkpoints = read_checkpoints(fs, directory, &names).await?;
    let checkpoint_start = checkpoints.log_start.unwrap_or(0);
    // Before the segments are opened, like the checkpoints: opening a file (even a missing
    // one) makes room in an open-file cache, and the segments must be the most recently used
    // files when the open returns (a broker short of descriptors could not reopen them).
    let mut epochs = read_leader_epochs(fs, directory).await?;
    // Step 3.
    let kept = segments_to_recover(fs, directory, &names, checkpoint_start).await?;
    check_oldest_segment(directory, checkpoints.log_start, &kept)?;
    if checkpoints.log_start.is_none() {
        // Before the segments are opened, so their files are the most recently used ones
        // in an open-file cache.
        write_missing_log_start(fs, directory, &kept).await?;
    }
    // Step 4.
    let mut report = RecoveryReport {
        recovery_point: checkpoints.recovery_point,
        ..RecoveryReport::default()
    };
    let now_ms = clock.now_ms();
    let (mut segments, active_tail_block) = recover_segments(
        fs,
        directory,
        &kept,
        checkpoint_start,
        &config,
        now_ms,
        &mut report,
    )
    .await?;
    // Step 5: always, not only when this open changed entries: an earlier open or roll may
    // have created files and failed before its directory sync, and the names just found
    // may not be durable yet.
    fs.sync_directory(directory)
        .await
        .map_err(|error| StorageError::io("syncing partition directory", directory, None, error))?;
    // Steps 6-8.
    check_contiguous(&segments)?;
    let active = segments
        .pop()
        .expect("at least one segment exists or was created");
    check_nothing_lost(
        directory,
        &names,
        checkpoints.recovery_point,
        active.tail.next_offset,
    )?;
    let log_end = active.tail.next_offset;
    let first_base_offset = segments.first().unwrap_or(&active).base_offset;
    let log_start_offset = settled_log_start(checkpoint_start, first_base_offset, log_end);
    // Leader epochs: entries past the log end were written for appends a crash lost; the file
    // is rewritten without them before anything is appended, so they cannot come back later
    // and misdate batches appended since.
    if epochs.drop_past(log_end) {
        write_leader_epochs(fs, directory, &epochs).await?;
    }
    epochs.truncate_from_start(log_start_offset);
    let durable = DurablePoint {
        tail: active.tail,
        tail_block: active_tail_block,
    };
    let recovery_point = RecoveryPoint {
        offset: checkpoints.recovery_point.unwrap_or(0),
        segment_base_offset: active.base_offset,
        position: 0,
    };
    let state = LogState {
        sealed: segments
            .into_iter()
            .map(|segment| (segment.base_offset, segment))
            .collect(),
        active,
        writer: Writer::at(durable, clock.monotonic_us()),
        tail_cache: TailCache::new(config.tail_cache_bytes_max),
        log_start_offset,
        io_busy: false,
        maintenance_busy: false,
        roll_pending: false,
        producers: ProducerState::new(
            config.producers_per_partition_max,
            config.producer_expiry_ms,
        ),
        transactions: TransactionState::new(config.producers_per_partition_max),
        txn_index_cache: TxnIndexCache::default(),
        admission_waiting: BTreeSet::new(),
        admission_tickets_issued: 0,
        slow_syncs: SlowSyncWarnings::default(),
        recovery_point,
        checkpoint_busy: false,
        recovery_report: report,
        time_indexes_checked: BTreeSet::new(),
        lost: None,
        index_rebuilds: 0,
        compaction: compaction::CompactionState::default(),
        segment_swaps: 0,
        read_ahead: None,
        leader_epoch: epochs
            .latest()
            .map_or(LEADER_EPOCH as i32, |entry| entry.epoch),
        epochs,
        replicated: false,
        // Never past what this replica holds durably (everything recovered is).
        committed_offset: checkpoints.committed_offset.unwrap_or(0).min(log_end),
        committed_persisted: checkpoints.committed_offset,
        epochs_unwritten: false,
        config,
    };
    Ok((state, names))
}

/// The checkpoints an open found: the log start and the recovery point, each if present.
// Hooks for `compaction`; the log's state stays private to this file.
impl<F: FileSystem> PartitionLog<F> {
    pub(crate) async fn maintenance_turn(&self) -> MaintenanceGuard<'_, F> {
        self.maintenance().await
    }

    pub(crate) fn clock_now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    pub(crate) fn file_system_ref(&self) -> &F {
        &self.file_system
    }

    /// The closed segments (files shared), the stable offset, each producer's last batch and
    /// the clean offset, under one borrow.
    pub(crate) fn compaction_input(&self) -> compaction::CompactionInput<F::File> {
        let stable_offset = self.last_stable_offset();
        let state = self.state.borrow();
        compaction::CompactionInput {
            config: state.config.clone(),
            stable_offset,
            sealed: state
                .sealed
                .values()
                .map(|segment| compaction::SealedSegment {
                    base_offset: segment.base_offset,
                    paths: segment.paths.clone(),
                    files: segment.files.clone(),
                    tail: segment.tail,
                    index: segment.index.clone(),
                })
                .collect(),
            producer_last_batches: state
                .producers
                .entries()
                .filter_map(|(producer_id, entry)| {
                    entry
                        .batches
                        .back()
                        .map(|batch| (producer_id, batch.base_offset))
                })
                .collect(),
            state: state.compaction,
        }
    }

    /// Stops every append for good and tells the owner to take the partition offline (see
    /// [`PartitionLog::lost`]): compaction's swap failed after its commit point.
    pub(crate) fn mark_lost(&self, error: StorageError) {
        self.state.borrow_mut().lost.get_or_insert(error);
        self.progress.notify_all();
    }

    /// Calls `view` with the config, the stable offset, compaction's state and the closed
    /// segments' (base offset, tail), under one borrow, without copying them.
    pub(crate) fn with_compaction_view<R>(
        &self,
        view: impl FnOnce(
            &LogConfig,
            u64,
            compaction::CompactionState,
            &mut dyn Iterator<Item = (u64, SegmentTail)>,
        ) -> R,
    ) -> R {
        let stable_offset = self.last_stable_offset();
        let state = self.state.borrow();
        let mut sealed = state
            .sealed
            .values()
            .map(|segment| (segment.base_offset, segment.tail));
        view(&state.config, stable_offset, state.compaction, &mut sealed)
    }

    pub(crate) fn set_compaction_state(&self, compaction: compaction::CompactionState) {
        self.state.borrow_mut().compaction = compaction;
    }

    /// Replaces the closed segments based at `replaced` with the compacted `segment`, which
    /// spans exactly their offsets.
    pub(crate) fn install_compacted(&self, replaced: &[u64], segment: Segment<F::File>) {
        let mut state = self.state.borrow_mut();
        let mut next_offset = None;
        for base_offset in replaced {
            let old = state
                .sealed
                .remove(base_offset)
                .expect("compaction replaces closed segments it holds the maintenance turn for");
            next_offset = Some(old.tail.next_offset);
            state.time_indexes_checked.remove(base_offset);
            state.txn_index_cache.remove(*base_offset);
        }
        assert_eq!(Some(segment.tail.next_offset), next_offset, "same offsets");
        state.time_indexes_checked.insert(segment.base_offset);
        state.tail_cache.drop_before(segment.tail.next_offset);
        state.sealed.insert(segment.base_offset, segment);
        state.segment_swaps += 1;
        drop(state);
        self.progress.notify_all();
    }
}

struct Checkpoints {
    log_start: Option<u64>,
    recovery_point: Option<u64>,
    committed_offset: Option<u64>,
}

/// Recovery step 1: the partition directory exists (created, its parent synced) and its names.
async fn prepare_directory<F: FileSystem>(
    fs: &F,
    directory: &Path,
) -> Result<Vec<String>, StorageError> {
    let io = |op: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |error| StorageError::io(op, &path, None, error)
    };
    fs.create_directory(directory)
        .await
        .map_err(io("creating partition directory", directory))?;
    if let Some(parent) = directory.parent() {
        fs.sync_directory(parent)
            .await
            .map_err(io("syncing parent directory", parent))?;
    }
    fs.list_directory(directory)
        .await
        .map_err(io("listing partition directory", directory))
}

/// Recovery step 2: removes checkpoints being written when the process stopped and reads both.
async fn read_checkpoints<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: &[String],
) -> Result<Checkpoints, StorageError> {
    for (temporary, op) in [
        (
            LOG_START_TEMPORARY_FILE_NAME,
            "removing leftover checkpoint",
        ),
        (
            RECOVERY_POINT_TEMPORARY_FILE_NAME,
            "removing leftover recovery point",
        ),
        (
            COMMITTED_OFFSET_TEMPORARY_FILE_NAME,
            "removing leftover committed offset",
        ),
    ] {
        if names.iter().any(|name| name == temporary) {
            let path = directory.join(temporary);
            fs.remove_file(&path)
                .await
                .map_err(|error| StorageError::io(op, &path, None, error))?;
        }
    }
    Ok(Checkpoints {
        log_start: read_log_start(fs, directory).await?,
        recovery_point: read_checkpoint(fs, directory, CheckpointKind::RecoveryPoint).await?,
        committed_offset: read_checkpoint(fs, directory, CheckpointKind::CommittedOffset).await?,
    })
}

/// Recovery step 3: the base offsets of the segments to recover, oldest first. Index files
/// without a log (a segment deleted log-first, interrupted) are removed, and so are segments
/// wholly before the checkpointed log start: remnants of an interrupted deletion (the
/// checkpoint is written first), removed without reading them.
async fn segments_to_recover<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: &[String],
    checkpoint_start: u64,
) -> Result<Vec<u64>, StorageError> {
    let mut found: BTreeMap<u64, Vec<SegmentFileKind>> = BTreeMap::new();
    for name in names {
        if let Some((base_offset, kind)) = parse_segment_file_name(name) {
            found.entry(base_offset).or_default().push(kind);
        }
    }
    let mut bases = Vec::new();
    for (base_offset, kinds) in &found {
        if kinds.contains(&SegmentFileKind::Log) {
            bases.push(*base_offset);
        } else {
            let paths = SegmentPaths::new(directory, *base_offset);
            remove_if_present(fs, &paths.offset_index).await?;
            remove_if_present(fs, &paths.time_index).await?;
        }
    }
    let mut kept = Vec::new();
    for (index, base_offset) in bases.iter().enumerate() {
        match bases.get(index + 1) {
            Some(next_base) if *next_base <= checkpoint_start => {
                remove_segment_files(fs, &SegmentPaths::new(directory, *base_offset)).await?;
            }
            _ => kept.push(*base_offset),
        }
    }
    Ok(kept)
}

/// Refuses a log whose oldest segment starts past the checkpointed log start: the checkpoint is
/// written before the broker deletes a segment, so the ones before it were lost outside it.
fn check_oldest_segment(
    directory: &Path,
    checkpoint: Option<u64>,
    kept: &[u64],
) -> Result<(), StorageError> {
    match (checkpoint, kept.first()) {
        (Some(log_start_offset), Some(&oldest_base_offset))
            if oldest_base_offset > log_start_offset =>
        {
            Err(StorageError::LostOldestSegments {
                directory: directory.to_path_buf(),
                log_start_offset,
                oldest_base_offset,
            })
        }
        _ => Ok(()),
    }
}

/// Writes the log start checkpoint of a partition that has none, at its oldest segment: a
/// partition being created, one from a build that wrote the checkpoint only when records were
/// deleted, or one whose checkpoint was removed (the documented way to accept lost oldest
/// segments). From then on the start is checked at every open.
async fn write_missing_log_start<F: FileSystem>(
    fs: &F,
    directory: &Path,
    kept: &[u64],
) -> Result<(), StorageError> {
    let log_start_offset = kept.first().copied().unwrap_or(0);
    if log_start_offset > 0 {
        tracing::warn!(
            directory = %directory.display(),
            log_start_offset,
            "no log-start-offset checkpoint: the log starts at its oldest segment; offsets \
             below it are gone (if segment files were deleted by hand, their records are \
             lost); writing the checkpoint now"
        );
    }
    write_log_start(fs, directory, log_start_offset).await
}

/// Recovery step 4: every segment in `kept` recovered, oldest first (the last one as the active
/// segment), or one new empty segment at `checkpoint_start` if there is none; and the partial
/// last block of the active segment's log.
async fn recover_segments<F: FileSystem>(
    fs: &F,
    directory: &Path,
    kept: &[u64],
    checkpoint_start: u64,
    config: &LogConfig,
    now_ms: i64,
    report: &mut RecoveryReport,
) -> Result<(Vec<Segment<F::File>>, Vec<u8>), StorageError> {
    if kept.is_empty() {
        let paths = SegmentPaths::new(directory, checkpoint_start);
        let files = open_segment_files(fs, &paths, OpenMode::CreateIfMissing).await?;
        let segment = Segment {
            base_offset: checkpoint_start,
            paths,
            files: Rc::new(files),
            index: SegmentIndex::new(),
            persisted_entries: 0,
            tail: SegmentTail::empty(checkpoint_start),
            opened_ms: now_ms,
        };
        return Ok((vec![segment], Vec::new()));
    }
    let mut segments = Vec::with_capacity(kept.len());
    let mut active_tail_block = Vec::new();
    let last = kept.len() - 1;
    for (index, base_offset) in kept.iter().enumerate() {
        let paths = SegmentPaths::new(directory, *base_offset);
        let files = open_segment_files(fs, &paths, OpenMode::Existing).await?;
        let role = if index == last {
            SegmentRole::Active
        } else {
            SegmentRole::Closed
        };
        let recovered = recover_segment(*base_offset, paths, files, role, config, now_ms).await?;
        report.segments += 1;
        report.bytes_scanned += recovered.bytes_scanned;
        if index == last {
            active_tail_block = recovered.tail_block;
        }
        segments.push(recovered.segment);
    }
    Ok((segments, active_tail_block))
}

/// Recovery step 6: each segment ends where the next one starts.
fn check_contiguous<File>(segments: &[Segment<File>]) -> Result<(), StorageError> {
    for pair in segments.windows(2) {
        if pair[0].tail.next_offset != pair[1].base_offset {
            return Err(StorageError::corrupt(
                &pair[0].paths.log,
                pair[0].tail.end_position,
                format!(
                    "segment ends at offset {} but the next segment starts at {}",
                    pair[0].tail.next_offset, pair[1].base_offset
                ),
            ));
        }
    }
    Ok(())
}

/// Recovery step 8: the log start, `max(checkpoint, first base offset)`, clamped to the log end.
fn settled_log_start(checkpoint_start: u64, first_base_offset: u64, log_end: u64) -> u64 {
    let log_start_offset = checkpoint_start.max(first_base_offset);
    if log_start_offset > log_end {
        tracing::warn!(
            log_start_offset,
            next_offset = log_end,
            "checkpointed log start is past the log end; clamping"
        );
        return log_end;
    }
    log_start_offset
}

/// Refuses a log that ends before an offset the broker durably promised: the recovery point, or
/// the newest producer snapshot (written only for durable data). Such a log lost data outside
/// the broker (a truncated or deleted segment); serving it would reuse the missing offsets.
fn check_nothing_lost(
    directory: &Path,
    names: &[String],
    recovery_point: Option<u64>,
    log_end: u64,
) -> Result<(), StorageError> {
    let newest_snapshot = names
        .iter()
        .filter_map(|name| match parse_snapshot_file_name(name) {
            Some(SnapshotName::Snapshot(offset)) => Some(offset),
            _ => None,
        })
        .max();
    // On a tie the recovery point is named (`max_by_key` keeps the last of equal ones).
    let promises = [
        newest_snapshot.map(|offset| {
            (
                offset,
                format!(
                    "producer snapshot {}",
                    snapshot_path(directory, offset).display()
                ),
            )
        }),
        recovery_point.map(|offset| (offset, "the recovery point".to_owned())),
    ];
    let broken = promises
        .into_iter()
        .flatten()
        .filter(|(offset, _)| *offset > log_end)
        .max_by_key(|(offset, _)| *offset);
    match broken {
        None => Ok(()),
        Some((promised_offset, promised_by)) => Err(StorageError::LostData {
            directory: directory.to_path_buf(),
            log_end,
            promised_offset,
            promised_by,
        }),
    }
}

/// `Unlinked` when no directory entry names `file` any more (see [`StorageFile::link_count`]).
async fn check_linked<File: StorageFile>(file: &File, path: &Path) -> Result<(), StorageError> {
    match file.link_count().await {
        Ok(0) => Err(StorageError::Unlinked {
            path: path.to_path_buf(),
        }),
        Ok(_) => Ok(()),
        Err(error) => Err(StorageError::io(
            "checking the directory entry of",
            path,
            None,
            error,
        )),
    }
}

async fn remove_if_present<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<(), StorageError> {
    match file_system.remove_file(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io("removing file", path, None, error)),
    }
}

/// Removes a segment log-first: without its log a segment no longer exists (orphan index files
/// are cleaned up at open).
async fn remove_segment_files<F: FileSystem>(
    file_system: &F,
    paths: &SegmentPaths,
) -> Result<(), StorageError> {
    remove_if_present(file_system, &paths.log).await?;
    remove_if_present(file_system, &paths.offset_index).await?;
    remove_if_present(file_system, &paths.time_index).await?;
    remove_if_present(file_system, &txn::txn_index_path_of(paths)).await
}
