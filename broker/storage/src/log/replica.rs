//! What Kafka's ISR replication needs of a partition's log (KIP-101, KIP-279, KIP-320): the
//! leader epoch a leader stamps and the epoch cache that answers OffsetsForLeaderEpoch
//! (`leader_epochs`), a follower's append of its leader's batches as they are
//! ([`PartitionLog::append_replica`]), truncation from the end or of everything (crash-safe
//! through the `truncation` intent file, then the state reloaded as an open would), and the
//! committed offset that bounds what readers see on a replicated partition.
//!
//! Not here: who leads, the followers' progress and the high watermark's computation (the
//! cluster's replica state), the wire. The rules of the epoch cache are in `leader_epochs`, the
//! truncation's file steps in `truncation`.

use bytes::BytesMut;

use super::txn::marker_of;
use super::{
    load_state, validate_batch, AdmissionTicket, Admitted, CheckpointGuard, IoGuard,
    MaintenanceGuard, PartitionLog, ReadOutcome, ReadPlan, TxnAppend,
};
use crate::checkpoint::{write_checkpoint, CheckpointKind};
use crate::config::AppendWait;
use crate::error::StorageError;
use crate::file::FileSystem;
use crate::leader_epochs::{write_leader_epochs, EpochEntry};
use crate::producer_state::ProducerBatch;
use crate::truncation::{self, Truncation};
use crate::writer::Goal;

/// Every other writer of the log held off: retention and compaction (maintenance turn), appends
/// (the admission line), I/O steps (the leader flag) and recovery point writes. Everything
/// admitted before was made durable first.
struct Exclusive<'a, F: FileSystem> {
    _checkpoint: CheckpointGuard<'a, F>,
    _io: IoGuard<'a, F>,
    _ticket: AdmissionTicket<'a, F>,
    _maintenance: MaintenanceGuard<'a, F>,
}

impl<F: FileSystem> PartitionLog<F> {
    /// The epoch appends are stamped with.
    pub fn leader_epoch(&self) -> i32 {
        self.state.borrow().leader_epoch
    }

    /// The latest epoch in the epoch cache (`None` for a log that never had one set: a single
    /// broker's, whose batches all carry epoch 0).
    pub fn latest_epoch(&self) -> Option<i32> {
        self.state.borrow().epochs.latest().map(|entry| entry.epoch)
    }

    /// The epoch cache's entries (epoch, start offset), oldest first.
    pub fn leader_epochs(&self) -> Vec<EpochEntry> {
        self.state.borrow().epochs.entries().to_vec()
    }

    /// OffsetsForLeaderEpoch: the largest epoch at or below `epoch` that wrote to this log and
    /// where the next epoch starts (the log end for the latest); below the first epoch, `epoch`
    /// and the first epoch's start. `None` above the latest or for a negative one. See
    /// `LeaderEpochCache::end_offset_for`.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> Option<(i32, u64)> {
        let state = self.state.borrow();
        state
            .epochs
            .end_offset_for(epoch, state.leader_epoch, state.active.tail.next_offset)
    }

    /// Makes this log's appends carry `epoch` (this broker leads the partition in it). A new
    /// epoch is recorded in the epoch cache at the log end, durably, before anything is stamped
    /// with it; appends admitted before are made durable first, so that the entry starts after
    /// all of them whatever a disk error rolls back. The same epoch again changes nothing; an
    /// older one than the cache's latest is refused (`StaleLeaderEpoch`).
    pub async fn set_leader_epoch(&self, epoch: i32) -> Result<(), StorageError> {
        if epoch < 0 {
            return Err(self.stale_epoch(epoch));
        }
        {
            let state = self.state.borrow();
            if state
                .epochs
                .latest()
                .is_some_and(|latest| latest.epoch == epoch)
            {
                drop(state);
                self.state.borrow_mut().leader_epoch = epoch;
                return Ok(());
            }
        }
        let _ticket = self.first_in_line().await;
        self.sync().await?;
        let cache = {
            let state = self.state.borrow();
            if let Some(error) = &state.lost {
                return Err(error.clone());
            }
            if state
                .epochs
                .latest()
                .is_some_and(|latest| epoch < latest.epoch)
            {
                return Err(self.stale_epoch(epoch));
            }
            let log_end = state.active.tail.next_offset;
            let mut cache = state.epochs.clone();
            // A log written before epochs were kept (a single broker's, all epoch 0) gets that
            // history first, so that followers asking about epoch 0 are answered.
            if cache.is_empty() && log_end > state.log_start_offset {
                cache.assign(0, state.log_start_offset);
            }
            cache.assign(epoch, log_end);
            cache
        };
        write_leader_epochs(&*self.file_system, &self.directory, &cache).await?;
        let mut state = self.state.borrow_mut();
        state.epochs = cache;
        state.leader_epoch = epoch;
        Ok(())
    }

    fn stale_epoch(&self, received: i32) -> StorageError {
        StorageError::StaleLeaderEpoch {
            directory: self.directory.clone(),
            latest: self.latest_epoch().unwrap_or(0),
            received,
        }
    }

    /// Marks the partition replicated (RF > 1): from then on reads, the last stable offset and
    /// delete-records stop at `min(durable end, committed offset)`. Unreplicated, the high
    /// watermark is the durable end alone, as on a single broker.
    pub fn set_replicated(&self, replicated: bool) {
        self.state.borrow_mut().replicated = replicated;
        self.progress.notify_all();
    }

    pub fn is_replicated(&self) -> bool {
        self.state.borrow().replicated
    }

    /// The offset below which every in-sync replica holds the log (the leader's high watermark;
    /// a follower sets what its leader said). Persisted lazily (recovery point timer with
    /// `force`, close), never past the durable end; the owner wakes its readers.
    pub fn set_committed_offset(&self, offset: u64) {
        self.state.borrow_mut().committed_offset = offset;
        self.progress.notify_all();
    }

    pub fn committed_offset(&self) -> u64 {
        self.state.borrow().committed_offset
    }

    /// The offset the next append gets (written or not).
    pub fn log_end(&self) -> u64 {
        self.state.borrow().active.tail.next_offset
    }

    /// The offset after the last durable batch.
    pub fn durable_end(&self) -> u64 {
        self.state.borrow().writer.durable.tail.next_offset
    }

    /// [`PartitionLog::read`] for a follower: bounded by the durable end, not by the committed
    /// offset (followers must copy what is not committed yet). `OffsetOutOfRange` as `read`.
    pub async fn read_replica(
        &self,
        offset: u64,
        max_bytes: usize,
    ) -> Result<ReadOutcome, StorageError> {
        let mut swaps = self.state.borrow().segment_swaps;
        loop {
            match self.read_once(offset, max_bytes, true).await {
                Err(_) if self.state.borrow().segment_swaps != swaps => {
                    swaps = self.state.borrow().segment_swaps;
                }
                result => return result,
            }
        }
    }

    /// Writes the committed offset checkpoint if it moved since the last one. Best effort: a
    /// restarted replica then starts from an older committed offset.
    pub(super) async fn persist_committed_offset(&self) {
        let offset = {
            let state = self.state.borrow();
            if !state.replicated {
                return;
            }
            let offset = state
                .committed_offset
                .min(state.writer.durable.tail.next_offset);
            if state.committed_persisted == Some(offset) {
                return;
            }
            offset
        };
        match write_checkpoint(
            &*self.file_system,
            &self.directory,
            CheckpointKind::CommittedOffset,
            offset,
        )
        .await
        {
            Ok(()) => self.state.borrow_mut().committed_persisted = Some(offset),
            Err(error) => tracing::warn!(%error, offset, "committed offset write failed"),
        }
    }

    /// A follower appends its leader's batches as the leader stored them (base offsets and
    /// epochs stamped there): each is checked (header, length, CRC), the first must start at the
    /// log end and each follow the one before (`ReplicaOffsetMismatch` otherwise), epochs may
    /// not go back (`StaleLeaderEpoch`). A new epoch is written to the epoch cache before its
    /// first batch is appended. Producer state (without sequence refusals: the leader judged
    /// them, and a retry of a batch copied here is answered as a duplicate if this replica
    /// leads later), transactions and aborted transactions (markers) follow the batches.
    /// Returns the new log end once every batch is durable. After an error, a prefix of the
    /// batches may be in the log, as with `append_batches`.
    pub async fn append_replica(&self, batches: Vec<BytesMut>) -> Result<u64, StorageError> {
        let mut checked = Vec::with_capacity(batches.len());
        {
            let state = self.state.borrow();
            let batch_bytes_max = state.config.batch_bytes_max;
            let mut expected = state.active.tail.next_offset;
            let mut epochs = state.epochs.clone();
            for batch in &batches {
                let header = validate_batch(batch, batch_bytes_max)?;
                if header.base_offset != expected {
                    return Err(StorageError::ReplicaOffsetMismatch {
                        directory: self.directory.clone(),
                        expected,
                        received: header.base_offset,
                    });
                }
                let epoch = header.leader_epoch as i32;
                let older = epochs
                    .epoch_before(header.base_offset)
                    .filter(|latest| epoch < *latest);
                if epoch < 0 || older.is_some() {
                    return Err(StorageError::StaleLeaderEpoch {
                        directory: self.directory.clone(),
                        latest: older.unwrap_or(0),
                        received: epoch,
                    });
                }
                // An empty cache records epoch 0 too (a follower of an epoch-0 leader must be
                // able to answer for it when it leads); an older epoch than the cache gives
                // here replaces an entry that starts here with nothing appended in it (this
                // replica's own leadership that wrote nothing).
                if epochs.is_empty() || epoch != epochs.epoch_at(header.base_offset) {
                    epochs.assign(epoch, header.base_offset);
                }
                let marker = marker_of(&header, batch).map_err(|reason| {
                    StorageError::corrupt(&self.directory, header.base_offset, reason)
                })?;
                // Like the replay at open: a header that names no valid producer (from before
                // idempotence was checked) is not remembered.
                let producer = ProducerBatch::of_stored(&header).ok().flatten();
                expected = header.next_offset();
                checked.push((header, producer, marker));
            }
        }
        if checked.is_empty() {
            return Ok(self.log_end());
        }
        let mut ticket = Some(self.first_in_line().await);
        self.write_replica_epochs(&checked).await?;
        let mut admitted: Vec<Admitted> = Vec::with_capacity(checked.len());
        for (batch, (header, producer, marker)) in batches.into_iter().zip(&checked) {
            let result = self
                .admit(
                    batch,
                    header,
                    producer.as_ref(),
                    TxnAppend::Replica(*marker),
                    &admitted,
                    &mut ticket,
                )
                .await;
            match result {
                Ok(one) => admitted.push(one),
                Err(error) => {
                    self.forget_epochs_past_log_end();
                    return Err(error);
                }
            }
        }
        drop(ticket);
        for slot in admitted
            .iter()
            .filter_map(|admitted| admitted.slot.as_ref())
        {
            if let Err(error) = self
                .drive(Goal::Append {
                    slot,
                    wait: AppendWait::Durable,
                })
                .await
            {
                self.forget_epochs_past_log_end();
                return Err(error);
            }
        }
        Ok(admitted
            .last()
            .map_or_else(|| self.log_end(), |last| last.outcome.next_offset))
    }

    /// Adds the epochs the batches start to the cache, durably, before any of them is appended
    /// (the caller is first in the admission line, so the log end cannot move but back).
    async fn write_replica_epochs(
        &self,
        checked: &[(
            spate_protocol::batch::BatchHeader,
            Option<ProducerBatch>,
            Option<crate::transactions::TxnMarker>,
        )],
    ) -> Result<(), StorageError> {
        let cache = {
            let state = self.state.borrow();
            let mut cache = state.epochs.clone();
            let mut changed = false;
            for (header, _, _) in checked {
                let epoch = header.leader_epoch as i32;
                if cache.is_empty() || epoch != cache.epoch_at(header.base_offset) {
                    changed |= cache.assign(epoch, header.base_offset);
                }
            }
            if !changed {
                return Ok(());
            }
            cache
        };
        write_leader_epochs(&*self.file_system, &self.directory, &cache).await?;
        self.state.borrow_mut().epochs = cache;
        Ok(())
    }

    /// After a failed replica append: entries for batches that are not in the log. The file may
    /// keep them until its next write; the open drops them (and rewrites it) if the log still
    /// ends before them.
    fn forget_epochs_past_log_end(&self) {
        let mut state = self.state.borrow_mut();
        let log_end = state.active.tail.next_offset;
        state.epochs.drop_past(log_end);
    }

    /// Removes every batch at or after `offset` — from the start of the batch holding it, so the
    /// log may end before `offset` — durably, with their index entries, aborted transactions,
    /// producer snapshots and epoch cache entries, then rebuilds the producer and transaction
    /// state as of the new end. Nothing when `offset` is at or past the log end, except that
    /// epochs starting there are dropped (an epoch that never appended). Appends are stamped with
    /// the latest epoch left in the cache afterwards. Never below the log
    /// start (`TruncateBelowLogStart`). Appends are held off while it runs, and those already
    /// admitted are made durable first. A crash leaves the old log or the truncated one (see
    /// `FORMAT.md`, "Truncation"). An error after the commit point marks the log lost (the
    /// owner takes it offline; the next open completes the truncation).
    pub async fn truncate_to(&self, offset: u64) -> Result<(), StorageError> {
        let exclusive = self.exclusive().await?;
        let plan = {
            let state = self.state.borrow();
            let log_end = state.active.tail.next_offset;
            if offset >= log_end {
                None
            } else if offset < state.log_start_offset {
                return Err(self.below_log_start(offset, state.log_start_offset));
            } else {
                let (segment, readable) = state
                    .readable_segments()
                    .take_while(|(segment, _)| segment.base_offset <= offset)
                    .last()
                    .expect("every offset from the log start on lies in a segment");
                let start = segment.scan_start_for_offset(offset);
                Some((
                    ReadPlan::new(segment, readable, start, &state.config),
                    segment.base_offset,
                    state.log_start_offset,
                ))
            }
        };
        let Some(plan) = plan else {
            let mut epochs = self.state.borrow().epochs.clone();
            if epochs.truncate_from_end(offset) {
                write_leader_epochs(&*self.file_system, &self.directory, &epochs).await?;
                self.state.borrow_mut().epochs = epochs;
            }
            return Ok(());
        };
        let (plan, segment_base_offset, log_start_offset) = plan;
        let (mut reader, mut position, mut expected) = plan.start_scan().await?;
        loop {
            let header = plan.header_at(&mut reader, position, expected).await?;
            if header.next_offset() > offset {
                break;
            }
            position += u64::from(header.batch_length);
            expected = header.next_offset();
        }
        drop(reader);
        if expected < log_start_offset {
            return Err(self.below_log_start(offset, log_start_offset));
        }
        let truncation = Truncation::To {
            end_offset: expected,
            segment_base_offset,
            position,
        };
        self.truncate(truncation, exclusive).await
    }

    /// Removes every segment and starts the log over, empty, at `offset` (also its new log
    /// start, which may move either way): a follower whose log ends before its leader's log
    /// start. The epoch cache is emptied and the committed offset becomes `offset`. Crash-safe
    /// like [`PartitionLog::truncate_to`].
    pub async fn truncate_fully_and_start_at(&self, offset: u64) -> Result<(), StorageError> {
        let exclusive = self.exclusive().await?;
        self.truncate(
            Truncation::Fully {
                start_offset: offset,
            },
            exclusive,
        )
        .await
    }

    fn below_log_start(&self, offset: u64, log_start_offset: u64) -> StorageError {
        StorageError::TruncateBelowLogStart {
            directory: self.directory.clone(),
            offset,
            log_start_offset,
        }
    }

    /// Writes the intent (the commit point), does the file work and reloads the state from the
    /// files as an open would.
    async fn truncate(
        &self,
        truncation: Truncation,
        exclusive: Exclusive<'_, F>,
    ) -> Result<(), StorageError> {
        let fs = &*self.file_system;
        truncation::write_intent(fs, &self.directory, &truncation).await?;
        let result = async {
            let names = fs.list_directory(&self.directory).await.map_err(|error| {
                StorageError::io("listing partition directory", &self.directory, None, error)
            })?;
            truncation::complete(fs, &self.directory, &names, truncation).await?;
            let committed_offset = match truncation {
                Truncation::Fully { start_offset } => Some(start_offset),
                Truncation::To { .. } => None,
            };
            self.reload(committed_offset).await
        }
        .await;
        if let Err(error) = &result {
            tracing::error!(%error, directory = %self.directory.display(), ?truncation,
                "truncation failed after its commit point; the partition is lost until reopened");
            self.mark_lost(error.clone());
        }
        drop(exclusive);
        result
    }

    /// Replaces the state with one loaded from the files (recovery steps 1-9), keeping what is
    /// not on disk: the guards the caller holds, the admission line, the replication settings.
    /// The committed offset is `committed_offset` if given, else the old one cut to the new end.
    async fn reload(&self, committed_offset: Option<u64>) -> Result<(), StorageError> {
        let config = self.state.borrow().config.clone();
        let (mut loaded, names) =
            load_state(&*self.file_system, &self.directory, config, &*self.clock).await?;
        {
            let mut state = self.state.borrow_mut();
            loaded.io_busy = state.io_busy;
            loaded.maintenance_busy = state.maintenance_busy;
            loaded.checkpoint_busy = state.checkpoint_busy;
            loaded.admission_waiting = std::mem::take(&mut state.admission_waiting);
            loaded.admission_tickets_issued = state.admission_tickets_issued;
            loaded.slow_syncs = std::mem::take(&mut state.slow_syncs);
            loaded.replicated = state.replicated;
            // Segments were rewritten: reads planned (and reads parked) before do not apply.
            loaded.segment_swaps = state.segment_swaps + 1;
            // `leader_epoch` stays as loaded (the cache's latest): an epoch whose entry the
            // truncation removed must not stamp batches the cache cannot date. A follower
            // stamps nothing; a leader sets its epoch again.
            let log_end = loaded.active.tail.next_offset;
            loaded.committed_offset = committed_offset
                .unwrap_or(state.committed_offset)
                .min(log_end);
            *state = loaded;
        }
        self.rebuild_producer_state(&names).await?;
        self.settle_leader_epochs().await?;
        self.progress.notify_all();
        Ok(())
    }

    /// Waits to be first in the admission line and holds that place until the ticket is dropped:
    /// no append is admitted meanwhile.
    async fn first_in_line(&self) -> AdmissionTicket<'_, F> {
        let number = self.state.borrow_mut().take_admission_ticket();
        let ticket = AdmissionTicket { log: self, number };
        loop {
            let seen = self.progress.generation();
            if self.state.borrow().admission_turn(Some(number)) {
                return ticket;
            }
            self.progress.changed(seen).await;
        }
    }

    /// Holds every other writer off (see [`Exclusive`]), with everything admitted durable.
    async fn exclusive(&self) -> Result<Exclusive<'_, F>, StorageError> {
        let maintenance = self.maintenance().await;
        let ticket = self.first_in_line().await;
        loop {
            self.sync().await?;
            let seen = self.progress.generation();
            let acquired = {
                let mut state = self.state.borrow_mut();
                if let Some(error) = &state.lost {
                    return Err(error.clone());
                }
                let settled = state.writer.durable.tail == state.active.tail
                    && state.writer.pending.is_empty();
                if settled && !state.io_busy {
                    state.io_busy = true;
                    true
                } else {
                    false
                }
            };
            if acquired {
                break;
            }
            self.progress.changed(seen).await;
        }
        let io = IoGuard {
            log: self,
            write_in_flight: false,
        };
        let checkpoint = self.checkpoint_turn().await;
        // A roll decided before (and failed) would make an empty segment with the same name.
        self.state.borrow_mut().roll_pending = false;
        Ok(Exclusive {
            _checkpoint: checkpoint,
            _io: io,
            _ticket: ticket,
            _maintenance: maintenance,
        })
    }
}
