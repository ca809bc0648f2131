//! The log's transaction hooks: the public transaction API of [`PartitionLog`] (markers, the
//! last stable offset, aborted transactions, KIP-890 verification) and the checks and records
//! the append path calls in the borrow that assigns an offset, the aborted-transaction index
//! files (written before each producer snapshot, trimmed and rebuilt at open, read by
//! `aborted_transactions`), and the replay of transactional batches and markers at open. The
//! rules themselves are pure, in `transactions`; the file codec is `txn_index`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use spate_protocol::batch::header::attributes;
use spate_protocol::batch::header::PayloadFormat;
use spate_protocol::batch::kafka::control::{marker_batch, read_marker, Marker, MarkerType};
use spate_protocol::batch::kafka::kafka_bytes;
use spate_protocol::batch::BatchHeader;
use spate_protocol::BatchError;

use super::{remove_if_present, validate_batch, AppendOutcome, LogState, PartitionLog, ReadPlan};
use crate::config::{AppendWait, ABORTED_TRANSACTIONS_CACHED_MAX, ABORTED_TRANSACTIONS_READ_MAX};
use crate::error::StorageError;
use crate::file::{FileSystem, StorageFile};
use crate::producer_state::ProducerRefusal;
use crate::segment::{SegmentPaths, SegmentReader};
use crate::transactions::{AbortedTxn, AbortedTxnEntry, TxnMarker, TxnResult, VerificationGuard};
use crate::txn_index::{
    append_entries, keep_entries_before, parse_txn_index_file_name, read_entries, txn_index_path,
    TXN_INDEX_SUFFIX,
};
use crate::writer::Goal;

/// The `.txnindex` path of a segment (removed with its other files).
pub(super) fn txn_index_path_of(paths: &SegmentPaths) -> PathBuf {
    paths.log.with_extension(TXN_INDEX_SUFFIX)
}

fn is_transactional(header: &BatchHeader) -> bool {
    header.attributes & attributes::TRANSACTIONAL != 0
}

fn is_control(header: &BatchHeader) -> bool {
    header.attributes & attributes::CONTROL != 0
}

/// What the transaction rules need of an append besides the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAppend {
    /// A client's data batch, with its request's verification guard, if any.
    Data(Option<VerificationGuard>),
    /// A transaction marker built by the broker ([`PartitionLog::append_txn_marker`]).
    Marker(TxnMarker),
    /// A batch a follower copies from its leader (`PartitionLog::append_replica`): checked by
    /// the leader already, so only recorded; the marker if it is a control batch.
    Replica(Option<TxnMarker>),
}

/// Clients never write control batches (Kafka: INVALID_RECORD); only markers the broker
/// builds are stored as control batches.
pub(super) fn refuse_control_batch(header: &BatchHeader) -> Result<(), StorageError> {
    if is_control(header) {
        return Err(StorageError::InvalidBatch(BatchError::KafkaInvalidRecord {
            reason: "clients may not write control batches",
        }));
    }
    Ok(())
}

/// The marker a control batch holds (its one record read, as the replay at open does), `None`
/// for any other batch; a reason when a control batch is not a version-0 marker.
pub(super) fn marker_of(header: &BatchHeader, batch: &[u8]) -> Result<Option<TxnMarker>, String> {
    if !is_control(header) {
        return Ok(None);
    }
    if header.payload_format != PayloadFormat::KafkaV2 as u8 {
        return Err("a control batch that is not a Kafka batch".into());
    }
    let read =
        read_marker(kafka_bytes(batch)).map_err(|error| format!("control batch: {error}"))?;
    Ok(Some(TxnMarker {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        coordinator_epoch: read.coordinator_epoch,
        result: match read.marker_type {
            MarkerType::Commit => TxnResult::Commit,
            MarkerType::Abort => TxnResult::Abort,
        },
    }))
}

impl<File: StorageFile> LogState<File> {
    /// The transaction checks of a batch the producer state would append (not a duplicate).
    pub(super) fn check_transaction(
        &self,
        header: &BatchHeader,
        transaction: TxnAppend,
        directory: &Path,
    ) -> Result<(), StorageError> {
        match transaction {
            TxnAppend::Data(guard) => self
                .transactions
                .check_batch(
                    header.producer_id,
                    header.producer_epoch,
                    is_transactional(header),
                    guard,
                )
                .map_err(|refusal| StorageError::transaction(directory, refusal)),
            TxnAppend::Marker(marker) => {
                if let Some(entry) = self.producers.get(marker.producer_id) {
                    if marker.producer_epoch < entry.epoch {
                        return Err(StorageError::producer(
                            directory,
                            ProducerRefusal::ProducerFenced {
                                producer_id: marker.producer_id,
                                current_epoch: entry.epoch,
                                received_epoch: marker.producer_epoch,
                            },
                        ));
                    }
                }
                self.transactions
                    .check_marker(&marker)
                    .map_err(|refusal| StorageError::transaction(directory, refusal))
            }
            TxnAppend::Replica(_) => Ok(()),
        }
    }

    /// Records an enqueued batch at `base_offset` in the transaction state.
    pub(super) fn record_transaction(
        &mut self,
        header: &BatchHeader,
        transaction: TxnAppend,
        base_offset: u64,
        _now_ms: i64,
    ) {
        match transaction {
            TxnAppend::Data(_) | TxnAppend::Replica(None) => self.transactions.record_batch(
                header.producer_id,
                is_transactional(header),
                base_offset,
            ),
            TxnAppend::Marker(marker) | TxnAppend::Replica(Some(marker)) => {
                let durable_next_offset = self.writer.durable.tail.next_offset;
                self.transactions
                    .record_marker(&marker, base_offset, durable_next_offset);
                self.producers
                    .observe_marker_epoch(marker.producer_id, marker.producer_epoch);
            }
        }
    }

    /// Base offsets and end offsets of every segment, oldest first.
    fn segment_ranges(&self) -> Vec<(u64, u64)> {
        self.sealed
            .values()
            .chain(std::iter::once(&self.active))
            .map(|segment| (segment.base_offset, segment.tail.next_offset))
            .collect()
    }

    /// The base offset of the segment holding `offset`.
    fn segment_of(&self, offset: u64) -> u64 {
        if offset >= self.active.base_offset {
            return self.active.base_offset;
        }
        *self
            .sealed
            .range(..=offset)
            .next_back()
            .map(|(base, _)| base)
            .expect("an offset of the log lies in a segment")
    }

    fn last_stable_offset(&self) -> u64 {
        let high_watermark = self.high_watermark();
        self.transactions
            .last_stable_offset(high_watermark)
            .max(self.log_start_offset.min(high_watermark))
    }
}

impl<F: FileSystem> PartitionLog<F> {
    /// Appends a transaction marker (a Kafka control batch, payload format 2: attributes
    /// CONTROL|TRANSACTIONAL, one record: key = version 0 + type (0 abort, 1 commit), value =
    /// version 0 + coordinator epoch) and waits until it is durable. Ends the producer's open
    /// transaction in this partition (an abort of one with data here adds an aborted entry).
    /// Refused with `ProducerFenced` if the marker's epoch is older than the producer's here,
    /// `TransactionCoordinatorFenced` if its coordinator epoch is older than one seen. A marker
    /// for a producer without a transaction here is appended too (it ends nothing).
    pub async fn append_txn_marker(
        &self,
        marker: TxnMarker,
        timestamp_ms: i64,
    ) -> Result<AppendOutcome, StorageError> {
        let marker_type = match marker.result {
            TxnResult::Commit => MarkerType::Commit,
            TxnResult::Abort => MarkerType::Abort,
        };
        let batch = marker_batch(
            marker.producer_id,
            marker.producer_epoch,
            Marker {
                marker_type,
                coordinator_epoch: marker.coordinator_epoch,
            },
            timestamp_ms,
        );
        let batch_bytes_max = self.state.borrow().config.batch_bytes_max;
        let header = validate_batch(&batch, batch_bytes_max)?;
        let admitted = self
            .admit(
                batch,
                &header,
                None,
                TxnAppend::Marker(marker),
                &[],
                &mut None,
            )
            .await?;
        if let Some(slot) = &admitted.slot {
            self.drive(Goal::Append {
                slot,
                wait: AppendWait::Durable,
            })
            .await?;
        }
        Ok(admitted.outcome)
    }

    /// min(high watermark, first offset of the oldest transaction open here or ended by a
    /// marker not yet durable), never below the log start: what read_committed readers may see.
    pub fn last_stable_offset(&self) -> u64 {
        self.state.borrow().last_stable_offset()
    }

    /// Aborted transactions whose data range meets `[from_offset, upper_offset)`, oldest
    /// first, at most [`ABORTED_TRANSACTIONS_READ_MAX`]. Pass the end of the records served as
    /// `upper_offset`. Reads the `.txnindex` files of the segments from the one holding
    /// `from_offset` on (through a bounded cache), stopping at the first entry whose last
    /// stable offset reaches `upper_offset` (every transaction that started before it had
    /// ended by then: Kafka's rule), then the entries not yet written to files.
    pub async fn aborted_transactions(
        &self,
        from_offset: u64,
        upper_offset: u64,
    ) -> Result<Vec<AbortedTxn>, StorageError> {
        let (segments, unpersisted, generation) = {
            let state = self.state.borrow();
            let segments: Vec<(u64, Option<Rc<Vec<AbortedTxnEntry>>>)> = state
                .segment_ranges()
                .into_iter()
                .filter(|(_, end_offset)| *end_offset > from_offset)
                .map(|(base, _)| (base, state.txn_index_cache.get(base)))
                .collect();
            let unpersisted = state.transactions.aborted_between(
                from_offset,
                upper_offset,
                ABORTED_TRANSACTIONS_READ_MAX,
            );
            (segments, unpersisted, state.txn_index_cache.generation())
        };
        let meets = |entry: &AbortedTxnEntry| {
            entry.last_offset >= from_offset && entry.first_offset < upper_offset
        };
        let mut found: Vec<AbortedTxnEntry> = Vec::new();
        for (base_offset, cached) in segments {
            let entries = match cached {
                Some(entries) => entries,
                None => {
                    let path = txn_index_path(&self.directory, base_offset);
                    let entries = Rc::new(read_entries(&*self.file_system, &path).await?);
                    self.state.borrow_mut().txn_index_cache.insert_read(
                        generation,
                        base_offset,
                        entries.clone(),
                        ABORTED_TRANSACTIONS_CACHED_MAX,
                    );
                    entries
                }
            };
            found.extend(entries.iter().filter(|entry| meets(entry)));
            let complete = entries.iter().any(|entry| {
                entry.last_offset >= from_offset && entry.last_stable_offset >= upper_offset
            });
            if complete || found.len() >= ABORTED_TRANSACTIONS_READ_MAX {
                break;
            }
        }
        // Markers after every entry in a file (or replayed at open into a closed segment).
        found.extend(unpersisted);
        found.sort_unstable_by_key(|entry| entry.last_offset);
        found.dedup_by_key(|entry| entry.last_offset);
        found.truncate(ABORTED_TRANSACTIONS_READ_MAX);
        Ok(found
            .into_iter()
            .map(|entry| AbortedTxn {
                producer_id: entry.producer_id,
                first_offset: entry.first_offset,
            })
            .collect())
    }

    /// Writes the aborted entries of markers before `offset` that are not in their segments'
    /// index files yet (appended, each file synced; a new file's directory entry synced), so
    /// that a producer snapshot at `offset` may be written after it.
    pub(super) async fn persist_txn_index(&self, offset: u64) -> Result<(), StorageError> {
        let groups: BTreeMap<u64, Vec<AbortedTxnEntry>> = {
            let state = self.state.borrow();
            let mut groups: BTreeMap<u64, Vec<AbortedTxnEntry>> = BTreeMap::new();
            for entry in state.transactions.unpersisted_before(offset) {
                groups
                    .entry(state.segment_of(entry.last_offset))
                    .or_default()
                    .push(entry);
            }
            groups
        };
        for (base_offset, entries) in &groups {
            let path = txn_index_path(&self.directory, *base_offset);
            self.state
                .borrow_mut()
                .txn_index_cache
                .changed(*base_offset);
            append_entries(&*self.file_system, &self.directory, &path, entries).await?;
        }
        let mut state = self.state.borrow_mut();
        // Again, in the borrow that moves the entries out of memory: a read that began during
        // the appends must not cache a file without them.
        for base_offset in groups.keys() {
            state.txn_index_cache.changed(*base_offset);
        }
        state.transactions.persisted_before(offset);
        Ok(())
    }

    /// Open, before the replay: removes `.txnindex` files without a segment, and cuts each
    /// other one after its valid entries (a torn tail). Entries are never cut by offset: each
    /// names a marker that was durable before it was written, so it is true whichever
    /// snapshot the open loads (an older one, when the newest is unreadable, makes the replay
    /// add some entries again: appends leave out those already there, reads drop doubles).
    pub(super) async fn recover_txn_indexes(&self, names: &[String]) -> Result<(), StorageError> {
        let segments = self.state.borrow().segment_ranges();
        let fs = &*self.file_system;
        for name in names {
            let Some(base_offset) = parse_txn_index_file_name(name) else {
                continue;
            };
            let path = txn_index_path(&self.directory, base_offset);
            if segments.iter().any(|(base, _)| *base == base_offset) {
                keep_entries_before(fs, &path, u64::MAX).await?;
            } else {
                remove_if_present(fs, &path).await?;
            }
        }
        Ok(())
    }

    /// Replay at open: a transactional batch opens its producer's transaction (if none is
    /// open), a marker (its one record read) ends it as at append.
    pub(super) async fn replay_transaction(
        &self,
        plan: &ReadPlan<F::File>,
        reader: &mut SegmentReader<'_, F::File>,
        position: u64,
        header: &BatchHeader,
    ) -> Result<(), StorageError> {
        if !is_transactional(header) {
            return Ok(());
        }
        if !is_control(header) {
            self.state.borrow_mut().transactions.record_batch(
                header.producer_id,
                true,
                header.base_offset,
            );
            return Ok(());
        }
        let corrupt = |reason: String| StorageError::corrupt(&plan.path, position, reason);
        let batch = match plan
            .batch_at(reader, position, header.base_offset, true)
            .await?
        {
            Ok((_, bytes)) => bytes,
            Err(damage) => return Err(corrupt(damage.reason)),
        };
        if header.payload_format != PayloadFormat::KafkaV2 as u8 {
            return Err(corrupt("a control batch that is not a Kafka batch".into()));
        }
        let read = read_marker(kafka_bytes(&batch))
            .map_err(|error| corrupt(format!("control batch: {error}")))?;
        let marker = TxnMarker {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            coordinator_epoch: read.coordinator_epoch,
            result: match read.marker_type {
                MarkerType::Commit => TxnResult::Commit,
                MarkerType::Abort => TxnResult::Abort,
            },
        };
        let mut state = self.state.borrow_mut();
        state
            .transactions
            .replay_marker(&marker, header.base_offset);
        state
            .producers
            .observe_marker_epoch(marker.producer_id, marker.producer_epoch);
        Ok(())
    }

    /// KIP-890 part 1 (hanging transactions): a transactional batch of a producer with no
    /// transaction open in this partition is appended only with the guard issued here (pass it
    /// to [`PartitionLog::append_batches_verified`]), and only if no marker for that producer
    /// came in between. `None` = already in a transaction here, no check needed.
    pub fn begin_txn_verification(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Option<VerificationGuard> {
        self.state
            .borrow_mut()
            .transactions
            .begin_verification(producer_id, producer_epoch)
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn ongoing_transaction(&self, producer_id: i64) -> Option<u64> {
        self.state
            .borrow()
            .transactions
            .ongoing_first_offset(producer_id)
    }
}
