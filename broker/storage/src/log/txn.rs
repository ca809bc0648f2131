//! The log's transaction hooks: the public transaction API of [`PartitionLog`] (markers, the
//! last stable offset, aborted transactions, KIP-890 verification) and the checks and records
//! the append path calls in the borrow that assigns an offset. The rules themselves are pure,
//! in `transactions`; this file only ties them to the log's state.

use spate_protocol::batch::header::attributes;
use spate_protocol::batch::kafka::control::{marker_batch, Marker, MarkerType};
use spate_protocol::batch::BatchHeader;
use spate_protocol::BatchError;

use super::{validate_batch, AppendOutcome, LogState, PartitionLog};
use crate::config::{AppendWait, ABORTED_TRANSACTIONS_READ_MAX};
use crate::error::StorageError;
use crate::file::{FileSystem, StorageFile};
use crate::producer_state::ProducerRefusal;
use crate::transactions::{AbortedTxn, TxnMarker, TxnResult, VerificationGuard};
use crate::writer::Goal;

/// What the transaction rules need of an append besides the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnAppend {
    /// A client's data batch, with its request's verification guard, if any.
    Data(Option<VerificationGuard>),
    /// A transaction marker built by the broker ([`PartitionLog::append_txn_marker`]).
    Marker(TxnMarker),
}

/// Clients never write control batches (Kafka: INVALID_RECORD); only markers the broker
/// builds are stored as control batches.
pub(super) fn refuse_control_batch(header: &BatchHeader) -> Result<(), StorageError> {
    if header.attributes & attributes::CONTROL != 0 {
        return Err(StorageError::InvalidBatch(BatchError::KafkaInvalidRecord {
            reason: "clients may not write control batches",
        }));
    }
    Ok(())
}

impl<File: StorageFile> LogState<File> {
    /// The transaction checks of a batch the producer state would append (not a duplicate).
    pub(super) fn check_transaction(
        &self,
        header: &BatchHeader,
        transaction: TxnAppend,
        directory: &std::path::Path,
    ) -> Result<(), StorageError> {
        match transaction {
            TxnAppend::Data(guard) => self
                .transactions
                .check_batch(
                    header.producer_id,
                    header.producer_epoch,
                    header.attributes & attributes::TRANSACTIONAL != 0,
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
            TxnAppend::Data(_) => self.transactions.record_batch(
                header.producer_id,
                header.attributes & attributes::TRANSACTIONAL != 0,
                base_offset,
            ),
            TxnAppend::Marker(marker) => {
                let durable_next_offset = self.writer.durable.tail.next_offset;
                self.transactions
                    .record_marker(&marker, base_offset, durable_next_offset);
                self.producers
                    .observe_marker_epoch(marker.producer_id, marker.producer_epoch);
            }
        }
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
    /// first, at most [`ABORTED_TRANSACTIONS_READ_MAX`].
    pub async fn aborted_transactions(
        &self,
        from_offset: u64,
        upper_offset: u64,
    ) -> Result<Vec<AbortedTxn>, StorageError> {
        let state = self.state.borrow();
        Ok(state
            .transactions
            .aborted_between(from_offset, upper_offset, ABORTED_TRANSACTIONS_READ_MAX)
            .into_iter()
            .map(|entry| AbortedTxn {
                producer_id: entry.producer_id,
                first_offset: entry.first_offset,
            })
            .collect())
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
