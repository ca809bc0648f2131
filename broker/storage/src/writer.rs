//! The write path of a partition log as synchronous state transitions: what is queued, written
//! and durable; which I/O step the next leader performs; and how each step's result (or failure)
//! changes the state. The awaiting happens in `log`, which never holds a borrow across an await:
//! it plans a step here under a borrow, performs the I/O, then applies the result here.
//!
//! Positions in the active segment move through three marks, each at or after the previous:
//! durable (covered by a completed `fdatasync`) <= written (handed to the disk, write completed)
//! <= appended (accepted, offset assigned, bytes queued). Offsets follow the same marks.
//!
//! Sync policy (adaptive group commit): a task waiting for durability syncs as soon as it leads,
//! that is as soon as no other write or sync of the partition is in flight. Appends that arrive
//! while one is in flight queue up and are covered by the next write and sync, so one
//! `fdatasync` serves every append of an in-flight "generation": under load many appends share
//! a sync, and an idle log adds no delay. The group-commit interval (time or bytes) only bounds
//! how long written data that nobody waits on durably (`AppendWait::Written`) stays unsynced:
//! see [`WritePath::sync_due`], which the shard's timer drives through `sync_if_due`.
//!
//! The log's state belongs to `log` (private fields); this module sees only the parts the write
//! path reads and changes, lent as a [`WritePath`] for one synchronous step. It does not import
//! `log`: the arrow runs one way.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::rc::Rc;

use bytes::Bytes;

use super::config::{AppendWait, Durability, LogConfig, PREALLOCATE_STEP_BYTES};
use super::error::StorageError;
use super::file::{align_down, align_up, IoBuffer, StorageFile};
use super::producer_state::ProducerState;
use super::segment::{IndexWrite, Segment, SegmentFiles, SegmentPaths, SegmentTail};
use super::tail_cache::TailCache;
use super::transactions::TransactionState;

/// Where an accepted append stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlotState {
    Queued,
    Written,
    Durable,
    Failed,
}

/// The completion record of one accepted append, shared by the appending task (which waits on
/// it) and the write path (which advances it).
#[derive(Debug)]
pub struct AppendSlot {
    pub next_offset: u64,
    state: Cell<SlotState>,
    error: RefCell<Option<StorageError>>,
}

impl AppendSlot {
    pub fn new(next_offset: u64) -> Self {
        Self {
            next_offset,
            state: Cell::new(SlotState::Queued),
            error: RefCell::new(None),
        }
    }

    pub fn state(&self) -> SlotState {
        self.state.get()
    }

    pub fn error(&self) -> Option<StorageError> {
        self.error.borrow().clone()
    }

    fn fail(&self, error: &StorageError) {
        *self.error.borrow_mut() = Some(error.clone());
        self.state.set(SlotState::Failed);
    }
}

/// A batch accepted but not yet wholly written.
#[derive(Debug)]
pub struct PendingBatch {
    pub bytes: Bytes,
    /// The active segment's tail just after this batch.
    pub tail_after: SegmentTail,
}

/// A point the log can fall back to: a batch boundary with its partial tail block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurablePoint {
    pub tail: SegmentTail,
    /// Bytes `[align_down(tail.end_position), tail.end_position)` of the log file.
    pub tail_block: Vec<u8>,
}

/// Write-path state of the active segment.
#[derive(Debug)]
pub struct Writer {
    pub pending: VecDeque<PendingBatch>,
    /// Bytes of `pending` not yet written.
    pub pending_bytes: usize,
    /// Bytes of the front pending batch already written (a batch larger than one write).
    pub front_written_bytes: usize,
    pub written_position: u64,
    /// The tail after the last wholly written batch.
    pub written_tail: SegmentTail,
    /// Bytes `[align_down(written_position), written_position)`: rewritten by the next write.
    pub tail_block: Vec<u8>,
    pub durable: DurablePoint,
    pub queued_slots: VecDeque<Rc<AppendSlot>>,
    pub written_slots: VecDeque<Rc<AppendSlot>>,
    /// After a failed write or sync the file may hold bytes past the durable point; they must
    /// be cut off (truncate + sync) before the next write.
    pub needs_repair: bool,
    pub failure_epoch: u64,
    pub last_failure: Option<StorageError>,
    pub last_sync_us: u64,
    /// Disk blocks of the active segment's log are reserved up to here (asked for, at least: a
    /// failed reservation is not retried until the next step). 0 after open, a roll or a
    /// repair, whose truncations release reserved blocks.
    pub preallocated_end: u64,
}

impl Writer {
    /// A writer whose appended, written and durable marks all sit at `durable`.
    pub fn at(durable: DurablePoint, now_us: u64) -> Self {
        Self {
            pending: VecDeque::new(),
            pending_bytes: 0,
            front_written_bytes: 0,
            written_position: durable.tail.end_position,
            written_tail: durable.tail,
            tail_block: durable.tail_block.clone(),
            durable,
            queued_slots: VecDeque::new(),
            written_slots: VecDeque::new(),
            needs_repair: false,
            failure_epoch: 0,
            last_failure: None,
            last_sync_us: now_us,
            preallocated_end: 0,
        }
    }

    /// Moves all three marks to the start of a new segment (after a roll, when nothing is queued
    /// or unsynced). Failure history is kept: a sync waiting across the roll still compares epochs.
    pub fn restart_at(&mut self, durable: DurablePoint) {
        assert!(self.pending.is_empty(), "roll with queued batches");
        assert!(
            self.queued_slots.is_empty() && self.written_slots.is_empty(),
            "roll with unsynced appends"
        );
        self.front_written_bytes = 0;
        self.written_position = durable.tail.end_position;
        self.written_tail = durable.tail;
        self.tail_block = durable.tail_block.clone();
        self.durable = durable;
        self.preallocated_end = 0;
    }

    pub fn unsynced_bytes(&self) -> u64 {
        self.written_tail.end_position - self.durable.tail.end_position + self.pending_bytes as u64
    }
}

/// What an operation waits for.
#[derive(Debug, Clone, Copy)]
pub enum Goal<'a> {
    Append {
        slot: &'a AppendSlot,
        wait: AppendWait,
    },
    /// Room in the write queue for a batch of this many bytes.
    QueueRoom { bytes: usize },
    /// The active segment with this base offset has been rolled.
    Roll { base_offset: u64 },
    /// Everything before this offset is durable (an explicit sync).
    Synced { next_offset: u64, epoch: u64 },
}

pub enum Status {
    Done,
    Failed(StorageError),
    Pending,
}

/// The next I/O step a leading task performs for its goal (a task that does not lead waits for
/// the leader's step instead).
pub enum Step<File: StorageFile> {
    Write(WriteJob<File>),
    Sync(SyncJob<File>),
    Repair(RepairJob<File>),
    Roll,
}

pub struct WriteJob<File: StorageFile> {
    pub files: Rc<SegmentFiles<File>>,
    pub path: PathBuf,
    pub position: u64,
    pub buffer: File::Buffer,
    /// Bytes of the buffer that carry data (the rest is zero padding to the block).
    pub payload_bytes: usize,
    /// Pending bytes this write carries.
    pub consumed_bytes: usize,
    pub tail_block_after: Vec<u8>,
    /// Reserve the log's blocks up to here before writing (the write reaches past what is
    /// reserved).
    pub preallocate_to: Option<u64>,
}

pub struct SyncJob<File> {
    pub files: Rc<SegmentFiles<File>>,
    pub path: PathBuf,
    pub target: DurablePoint,
    /// Index entries of batches made durable by an earlier sync, written while this sync runs
    /// so that the index write adds no latency of its own.
    pub index: Option<IndexPersist<File>>,
}

pub struct RepairJob<File> {
    pub files: Rc<SegmentFiles<File>>,
    pub path: PathBuf,
    pub position: u64,
}

/// An index write due because enough synced log is not yet covered by index entries on disk.
pub struct IndexPersist<File> {
    pub base_offset: u64,
    pub files: Rc<SegmentFiles<File>>,
    pub paths: SegmentPaths,
    pub write: IndexWrite,
}

/// The parts of a partition log's state the write path reads and changes, lent by the log
/// (`log::LogState::write_path`) for one synchronous step, never across an await.
pub struct WritePath<'a, File> {
    pub config: &'a LogConfig,
    pub active: &'a mut Segment<File>,
    pub writer: &'a mut Writer,
    pub tail_cache: &'a mut TailCache,
    pub producers: &'a mut ProducerState,
    pub transactions: &'a mut TransactionState,
    /// Whether a roll of the active segment was decided and has not happened yet.
    pub roll_pending: &'a mut bool,
}

impl<File: StorageFile> WritePath<'_, File> {
    pub fn status(&self, goal: &Goal<'_>) -> Status {
        match *goal {
            Goal::Append { slot, wait } => match (slot.state(), wait) {
                (SlotState::Durable, _) | (SlotState::Written, AppendWait::Written) => Status::Done,
                (SlotState::Failed, _) => {
                    Status::Failed(slot.error().expect("a failed slot carries its error"))
                }
                _ => Status::Pending,
            },
            Goal::QueueRoom { bytes } => {
                let writer = &self.writer;
                if writer.pending.is_empty()
                    || writer.pending_bytes + bytes <= self.config.write_queue_bytes_max
                {
                    Status::Done
                } else {
                    Status::Pending
                }
            }
            Goal::Roll { base_offset } => {
                if self.active.base_offset != base_offset || !*self.roll_pending {
                    Status::Done
                } else {
                    Status::Pending
                }
            }
            Goal::Synced { next_offset, epoch } => {
                if self.writer.durable.tail.next_offset >= next_offset {
                    Status::Done
                } else if self.writer.failure_epoch != epoch {
                    Status::Failed(
                        self.writer
                            .last_failure
                            .clone()
                            .expect("a failure epoch carries its error"),
                    )
                } else {
                    Status::Pending
                }
            }
        }
    }

    /// The step the caller performs next as leader (nobody else is doing I/O). A goal that
    /// needs durability syncs now, without waiting for the group-commit interval: whatever was
    /// appended while the previous step ran rides along with this write or the next one.
    pub fn plan(&mut self, goal: &Goal<'_>) -> Step<File> {
        if self.writer.needs_repair {
            return Step::Repair(RepairJob {
                files: self.active.files.clone(),
                path: self.active.paths.log.clone(),
                position: self.writer.durable.tail.end_position,
            });
        }
        match *goal {
            Goal::Append { slot, .. } if slot.state() == SlotState::Queued => self.plan_write(),
            Goal::Append { .. } => self.plan_sync_of_written(),
            Goal::QueueRoom { .. } => self.plan_write(),
            Goal::Roll { .. } => {
                if !self.writer.pending.is_empty() {
                    self.plan_write()
                } else if self.writer.written_tail.next_offset
                    > self.writer.durable.tail.next_offset
                {
                    self.plan_sync()
                } else {
                    Step::Roll
                }
            }
            Goal::Synced { next_offset, .. } => {
                if self.writer.written_tail.next_offset < next_offset {
                    self.plan_write()
                } else {
                    self.plan_sync_of_written()
                }
            }
        }
    }

    /// Syncs everything written so far.
    fn plan_sync_of_written(&mut self) -> Step<File> {
        // A sync point must be a batch boundary: finish a batch split across writes first.
        if self.writer.front_written_bytes > 0 {
            return self.plan_write();
        }
        assert!(
            self.writer.written_tail.next_offset > self.writer.durable.tail.next_offset,
            "a pending durability goal implies unsynced written batches"
        );
        self.plan_sync()
    }

    /// When written data nobody waits on durably must be synced by; `None` under `EveryAppend`
    /// (always due). Durable waiters never wait for it (see the module docs).
    pub fn sync_deadline_us(&self) -> Option<u64> {
        match self.config.durability {
            Durability::EveryAppend => None,
            Durability::GroupCommit { interval_us, .. } => {
                Some(self.writer.last_sync_us + interval_us)
            }
        }
    }

    fn group_commit_interval_bytes(&self) -> u64 {
        match self.config.durability {
            Durability::EveryAppend => 0,
            Durability::GroupCommit { interval_bytes, .. } => interval_bytes,
        }
    }

    /// Whether the durability policy wants a sync now for data already written, waited on
    /// durably or not: the group-commit interval has passed since the last sync, or
    /// `interval_bytes` are unsynced.
    pub fn sync_due(&self, now_us: u64) -> bool {
        let unsynced = self.writer.written_tail.next_offset > self.writer.durable.tail.next_offset;
        unsynced
            && match self.sync_deadline_us() {
                None => true,
                Some(deadline_us) => {
                    deadline_us <= now_us
                        || self.writer.unsynced_bytes() >= self.group_commit_interval_bytes()
                }
            }
    }

    fn plan_sync(&self) -> Step<File> {
        let writer = &self.writer;
        assert_eq!(
            writer.front_written_bytes, 0,
            "syncs happen at batch boundaries"
        );
        assert_eq!(writer.written_position, writer.written_tail.end_position);
        Step::Sync(SyncJob {
            files: self.active.files.clone(),
            path: self.active.paths.log.clone(),
            target: DurablePoint {
                tail: writer.written_tail,
                tail_block: writer.tail_block.clone(),
            },
            index: self.plan_index_persist(false),
        })
    }

    /// Fills one aligned buffer: the partial tail block (rewritten unchanged) and as many pending
    /// bytes as fit. A batch is split across writes only when it is the first and does not fit,
    /// so writes end on batch boundaries whenever they can.
    fn plan_write(&mut self) -> Step<File> {
        let writer = &self.writer;
        assert!(
            !writer.pending.is_empty(),
            "a write is planned only for pending bytes"
        );
        let start = align_down(writer.written_position);
        let prefix = writer.tail_block.len();
        assert_eq!(
            start + prefix as u64,
            writer.written_position,
            "tail block matches the written mark"
        );
        let mut room = self.config.write_buffer_bytes - prefix;
        let mut take = 0usize;
        for (index, batch) in writer.pending.iter().enumerate() {
            let left = batch.bytes.len()
                - if index == 0 {
                    writer.front_written_bytes
                } else {
                    0
                };
            if left <= room {
                take += left;
                room -= left;
            } else {
                if take == 0 {
                    take = room;
                }
                break;
            }
        }
        let payload_bytes = prefix + take;
        let aligned_bytes = align_up(payload_bytes as u64) as usize;
        let mut buffer = self.active.files.log.allocate_buffer(aligned_bytes);
        let target = buffer.as_bytes_mut();
        target[..prefix].copy_from_slice(&writer.tail_block);
        let mut filled = prefix;
        for (index, batch) in writer.pending.iter().enumerate() {
            if filled == payload_bytes {
                break;
            }
            let skip = if index == 0 {
                writer.front_written_bytes
            } else {
                0
            };
            let source = &batch.bytes[skip..];
            let count = source.len().min(payload_bytes - filled);
            target[filled..filled + count].copy_from_slice(&source[..count]);
            filled += count;
        }
        target[payload_bytes..].fill(0);
        let written_after = start + payload_bytes as u64;
        let tail_start = (align_down(written_after) - start) as usize;
        let tail_block_after = target[tail_start..payload_bytes].to_vec();
        let preallocate_to = self.plan_preallocation(start + aligned_bytes as u64);
        Step::Write(WriteJob {
            files: self.active.files.clone(),
            path: self.active.paths.log.clone(),
            position: start,
            buffer,
            payload_bytes,
            consumed_bytes: take,
            tail_block_after,
            preallocate_to,
        })
    }

    /// The end to reserve blocks up to before a write ending at `write_end`, if the write
    /// reaches past the reservation: the next [`PREALLOCATE_STEP_BYTES`] boundary, but not past
    /// the largest segment. Recorded as done now; a failure only costs allocation during writes.
    fn plan_preallocation(&mut self, write_end: u64) -> Option<u64> {
        if write_end <= self.writer.preallocated_end {
            return None;
        }
        let step_end = write_end.div_ceil(PREALLOCATE_STEP_BYTES) * PREALLOCATE_STEP_BYTES;
        let segment_end = align_up(self.config.segment_bytes_max);
        let target = step_end.min(segment_end).max(write_end);
        self.writer.preallocated_end = target;
        Some(target)
    }

    /// Applies a completed write. `written` is what the file reported.
    pub fn finish_write(
        &mut self,
        position: u64,
        payload_bytes: usize,
        consumed_bytes: usize,
        tail_block_after: Vec<u8>,
        path: &std::path::Path,
        result: std::io::Result<usize>,
    ) -> Result<(), StorageError> {
        let written = match result {
            Ok(written) => written,
            Err(error) => {
                return Err(self.fail(StorageError::io(
                    "writing segment",
                    path,
                    Some(position),
                    error,
                )))
            }
        };
        if written < payload_bytes {
            let error = std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write: {written} of {payload_bytes} bytes"),
            );
            return Err(self.fail(StorageError::io(
                "writing segment",
                path,
                Some(position),
                error,
            )));
        }
        let writer = &mut self.writer;
        writer.written_position = position + payload_bytes as u64;
        writer.tail_block = tail_block_after;
        writer.pending_bytes -= consumed_bytes;
        let mut remaining = consumed_bytes;
        while remaining > 0 {
            let front = writer
                .pending
                .front()
                .expect("consumed bytes come from pending batches");
            let left = front.bytes.len() - writer.front_written_bytes;
            if remaining < left {
                writer.front_written_bytes += remaining;
                break;
            }
            remaining -= left;
            writer.front_written_bytes = 0;
            let batch = writer.pending.pop_front().expect("front exists");
            writer.written_tail = batch.tail_after;
        }
        if writer.front_written_bytes == 0 {
            assert_eq!(writer.written_position, writer.written_tail.end_position);
        }
        while let Some(slot) = writer.queued_slots.front() {
            if slot.next_offset > writer.written_tail.next_offset {
                break;
            }
            slot.state.set(SlotState::Written);
            let slot = writer.queued_slots.pop_front().expect("front exists");
            writer.written_slots.push_back(slot);
        }
        Ok(())
    }

    /// Applies a completed sync.
    pub fn finish_sync(
        &mut self,
        target: DurablePoint,
        path: &std::path::Path,
        result: std::io::Result<()>,
        now_us: u64,
    ) -> Result<(), StorageError> {
        if let Err(error) = result {
            return Err(self.fail(StorageError::io("syncing segment", path, None, error)));
        }
        let writer = &mut self.writer;
        assert!(
            target.tail.next_offset >= writer.durable.tail.next_offset,
            "durability only moves forward"
        );
        writer.durable = target;
        writer.last_sync_us = now_us;
        while let Some(slot) = writer.written_slots.front() {
            if slot.next_offset > writer.durable.tail.next_offset {
                break;
            }
            slot.state.set(SlotState::Durable);
            writer.written_slots.pop_front();
        }
        Ok(())
    }

    /// Index entries whose batches are durable and not yet on disk: written once they cover
    /// `index_persist_interval_bytes` of log, or always with `all`.
    pub fn plan_index_persist(&self, all: bool) -> Option<IndexPersist<File>> {
        let active = &self.active;
        let durable = &self.writer.durable.tail;
        let durable_relative = durable.next_offset - active.base_offset;
        let durable_entries = active
            .index
            .offsets()
            .partition_point(|entry| u64::from(entry.relative_offset) < durable_relative);
        if durable_entries <= active.persisted_entries {
            return None;
        }
        let persisted_position = match active.persisted_entries {
            0 => 0,
            count => u64::from(active.index.offsets()[count - 1].position),
        };
        if !all
            && durable.end_position - persisted_position < self.config.index_persist_interval_bytes
        {
            return None;
        }
        Some(IndexPersist {
            base_offset: active.base_offset,
            files: active.files.clone(),
            paths: active.paths.clone(),
            write: IndexWrite::plan(&active.index, active.persisted_entries, durable_entries)?,
        })
    }

    /// Records index entries as written (if the active segment is still the one they belong to).
    pub fn finish_index_persist(&mut self, base_offset: u64, entries_after: usize) {
        if self.active.base_offset == base_offset {
            self.active.persisted_entries = self.active.persisted_entries.max(entries_after);
        }
    }

    pub fn finish_repair(
        &mut self,
        path: &std::path::Path,
        result: std::io::Result<()>,
    ) -> Result<(), StorageError> {
        match result {
            Ok(()) => {
                self.writer.needs_repair = false;
                Ok(())
            }
            Err(error) => Err(self.fail(StorageError::io(
                "truncating segment to its durable end",
                path,
                None,
                error,
            ))),
        }
    }

    /// A write or sync failed: nothing past the durable point can be trusted. Fails every append
    /// not yet durable, forgets the bytes after the durable point (queue, index entries, tail
    /// cache, producer batches) and marks the file for repair. Offsets after the durable point will be reused.
    pub fn fail(&mut self, error: StorageError) -> StorageError {
        tracing::warn!(%error, "write path failed; rolling back to the durable point");
        let writer = &mut self.writer;
        writer.failure_epoch += 1;
        writer.last_failure = Some(error.clone());
        for slot in writer
            .queued_slots
            .drain(..)
            .chain(writer.written_slots.drain(..))
        {
            slot.fail(&error);
        }
        writer.pending.clear();
        writer.pending_bytes = 0;
        writer.front_written_bytes = 0;
        let durable = writer.durable.clone();
        writer.written_position = durable.tail.end_position;
        writer.written_tail = durable.tail;
        writer.tail_block = durable.tail_block.clone();
        writer.needs_repair = true;
        // The repair truncates the file, which releases blocks reserved past its new length.
        writer.preallocated_end = 0;
        let active = &mut self.active;
        active.tail = durable.tail;
        active
            .index
            .truncate_from_offset((durable.tail.next_offset - active.base_offset) as u32);
        assert!(
            active.persisted_entries <= active.index.len(),
            "persisted index entries only ever cover durable batches"
        );
        self.tail_cache.truncate_from(durable.tail.next_offset);
        // A retry of a rolled-back batch must be appended again, not answered as a duplicate of
        // bytes that are gone.
        self.producers.truncate_from(durable.tail.next_offset);
        // Transactions opened by rolled-back batches are gone; those a rolled-back marker
        // ended are open again.
        self.transactions.truncate_from(durable.tail.next_offset);
        if active.is_empty() {
            // The roll was decided on batches that are gone; an empty segment is never closed.
            // (No roll step can have started: it runs only once everything is durable, and the
            // durable point is not empty.)
            *self.roll_pending = false;
        }
        error
    }
}
