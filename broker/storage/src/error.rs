//! The storage engine's operating errors: bad input, disk failures, corruption found on disk.
//!
//! Every I/O error carries what was being done, the path and the byte position within the file.
//! Errors are `Clone` (the I/O source sits behind an `Arc`) because one failed write or sync is
//! reported to every append that was waiting on it. Broken invariants are not errors: they panic.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::io::Errno;
use spate_protocol::BatchError;

use super::config::ConfigError;
use super::producer_state::ProducerRefusal;
use super::transactions::TxnRefusal;

/// Why a storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    /// The batch handed to `append` is not a valid batch (header, length or CRC).
    #[error("invalid batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The buffer handed to `append` is not exactly `batch_length` bytes long.
    #[error("batch declares {declared} bytes but {received} bytes were given")]
    BatchLengthMismatch { declared: u32, received: usize },
    /// The offset lies before the log start or after the log end.
    #[error("offset {offset} is outside the log [{log_start_offset}, {next_offset}]")]
    OffsetOutOfRange {
        offset: u64,
        log_start_offset: u64,
        next_offset: u64,
    },
    /// The device is full. Reads keep working; appends work again once space is freed.
    #[error("no space left on device while {op} {}{}: {source}", .path.display(), Position(*.position))]
    NoSpace {
        op: &'static str,
        path: PathBuf,
        position: Option<u64>,
        #[source]
        source: Arc<io::Error>,
    },
    /// Any other I/O failure.
    #[error("I/O error while {op} {}{}: {source}", .path.display(), Position(*.position))]
    Io {
        op: &'static str,
        path: PathBuf,
        position: Option<u64>,
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk that should hold a valid batch, index or checkpoint do not.
    #[error("corrupt data in {} at byte {position}: {reason}", .path.display())]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
    /// A read met a stored batch that fails its checks (damage on the medium): offsets
    /// `[offset, readable_from)` cannot be served, the batches before it still can.
    #[error(
        "corrupt batch in {} at byte {position}: offsets {offset} to {} cannot be read ({reason}); \
         reading goes on at offset {readable_from} once the records before it are deleted",
        .path.display(),
        .readable_from.saturating_sub(1)
    )]
    CorruptBatch {
        path: PathBuf,
        position: u64,
        offset: u64,
        readable_from: u64,
        reason: String,
    },
    #[error("invalid log configuration: {0}")]
    Config(#[from] ConfigError),
    /// The partition's log ends before an offset the broker had durably promised (its recovery
    /// point or a producer snapshot): files were truncated, deleted or replaced outside the
    /// broker. Serving it would hand the missing offsets out again.
    #[error("data lost in {}: the log ends at offset {log_end}, but {promised_by} says offsets up to {promised_offset} were durable ({} offsets missing); the partition is not served so that no offset is reused (see FORMAT.md, \"Lost data\")", .directory.display(), .promised_offset - .log_end)]
    LostData {
        directory: PathBuf,
        log_end: u64,
        promised_offset: u64,
        promised_by: String,
    },
    /// The partition's oldest segment starts after the log start its `log-start-offset`
    /// checkpoint names (written before the broker deletes any segment): segment files were
    /// deleted outside the broker. Serving it would move the log start past records in silence.
    #[error("data lost in {}: the log-start-offset checkpoint says the log starts at offset {log_start_offset}, but the oldest segment starts at offset {oldest_base_offset} ({} offsets missing: segment files were deleted outside the broker); the partition is not served (see FORMAT.md, \"Lost data\")", .directory.display(), .oldest_base_offset - .log_start_offset)]
    LostOldestSegments {
        directory: PathBuf,
        log_start_offset: u64,
        oldest_base_offset: u64,
    },
    /// The active segment's file lost its last directory entry while the log was open (the file
    /// or its directory was removed under the running broker): what is written to it cannot
    /// survive a restart, so nothing more is acknowledged for the partition.
    #[error("segment file {} was removed under the running broker (no directory entry names it any more): nothing written to it can survive a restart, so the partition is offline and nothing more is acknowledged for it (see FORMAT.md, \"Lost data\")", .path.display())]
    Unlinked { path: PathBuf },
    /// The directory of a partition that exists is gone: it is not recreated empty.
    #[error("partition directory {} is missing although the partition exists; it is not recreated empty, so that no offset is reused (see FORMAT.md, \"Lost data\")", .directory.display())]
    MissingDirectory { directory: PathBuf },
    /// An idempotent producer's batch does not continue its sequence (a gap, or a new epoch not
    /// starting at 0). Nothing of the batch was appended.
    #[error("out of order sequence in {}: producer {producer_id} epoch {producer_epoch} sent sequence {received_sequence}, expected {expected_sequence}", .directory.display())]
    OutOfOrderSequence {
        directory: PathBuf,
        producer_id: i64,
        producer_epoch: i16,
        expected_sequence: i32,
        received_sequence: i32,
    },
    /// An idempotent producer's batch lies at or before its last sequence but is none of the
    /// batches still remembered, so its original offsets are unknown.
    #[error("duplicate sequence in {}: producer {producer_id} epoch {producer_epoch} sent sequence {received_sequence}, last is {last_sequence}", .directory.display())]
    DuplicateSequence {
        directory: PathBuf,
        producer_id: i64,
        producer_epoch: i16,
        last_sequence: i32,
        received_sequence: i32,
    },
    /// A newer epoch of this producer id has appended to the partition.
    #[error("producer {producer_id} fenced in {}: epoch {received_epoch} is older than {current_epoch}", .directory.display())]
    ProducerFenced {
        directory: PathBuf,
        producer_id: i64,
        current_epoch: i16,
        received_epoch: i16,
    },
    /// A batch names a producer id with a negative epoch or sequence (or another invalid
    /// combination of producer fields).
    #[error("invalid producer fields in {}: producer {producer_id} epoch {producer_epoch} sequence {base_sequence} records {record_count}", .directory.display())]
    InvalidProducerFields {
        directory: PathBuf,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        record_count: u32,
    },
    /// Kafka's INVALID_TXN_STATE: a batch the transaction rules refuse (a non-transactional
    /// batch from a producer with a transaction open here, or a transactional batch that may
    /// not open one: not verified, or a marker came after its verification). Nothing of the
    /// batch was appended.
    #[error("invalid transaction state in {}: producer {producer_id}: {reason}", .directory.display())]
    InvalidTxnState {
        directory: PathBuf,
        producer_id: i64,
        reason: &'static str,
    },
    /// A follower's append whose first batch does not start at the log end, or whose batches do
    /// not follow each other: the leader's offsets must continue this log exactly (after a
    /// truncation if they diverge). Nothing of the call was appended past `expected`.
    #[error("replica append in {}: expected a batch at offset {expected}, got one at {received}", .directory.display())]
    ReplicaOffsetMismatch {
        directory: PathBuf,
        expected: u64,
        received: u64,
    },
    /// A leader epoch older than one the log already holds batches of (or, for
    /// `set_leader_epoch`, older than the latest it knows): epochs only grow along the log.
    #[error("leader epoch {received} in {} is older than epoch {latest} already in the log", .directory.display())]
    StaleLeaderEpoch {
        directory: PathBuf,
        latest: i32,
        received: i32,
    },
    /// `truncate_to` below the log start (the batch holding the offset starts before it): use
    /// `truncate_fully_and_start_at`.
    #[error("cannot truncate {} to offset {offset}: the log starts at {log_start_offset}", .directory.display())]
    TruncateBelowLogStart {
        directory: PathBuf,
        offset: u64,
        log_start_offset: u64,
    },
    /// A transaction marker from an older coordinator epoch than one the partition has seen for
    /// the producer (Kafka's TRANSACTION_COORDINATOR_FENCED). Nothing was appended.
    #[error("transaction coordinator fenced in {}: producer {producer_id} marker of coordinator epoch {received_coordinator_epoch}, {current_coordinator_epoch} seen", .directory.display())]
    TransactionCoordinatorFenced {
        directory: PathBuf,
        producer_id: i64,
        current_coordinator_epoch: i32,
        received_coordinator_epoch: i32,
    },
}

/// Formats an optional byte position for error messages: " at byte N", or nothing when the
/// operation has no position (a sync, a size query).
struct Position(Option<u64>);

impl fmt::Display for Position {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(position) => write!(formatter, " at byte {position}"),
            None => Ok(()),
        }
    }
}

impl StorageError {
    /// Wraps an I/O error with its context; `ENOSPC` becomes [`StorageError::NoSpace`].
    pub fn io(op: &'static str, path: &Path, position: Option<u64>, source: io::Error) -> Self {
        let no_space = source.raw_os_error() == Some(Errno::NOSPC.raw_os_error())
            || source.kind() == io::ErrorKind::StorageFull;
        let path = path.to_path_buf();
        let source = Arc::new(source);
        if no_space {
            StorageError::NoSpace {
                op,
                path,
                position,
                source,
            }
        } else {
            StorageError::Io {
                op,
                path,
                position,
                source,
            }
        }
    }

    pub fn corrupt(path: &Path, position: u64, reason: impl Into<String>) -> Self {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason: reason.into(),
        }
    }

    /// A transaction refusal, with the partition directory it happened in.
    pub fn transaction(directory: &Path, refusal: TxnRefusal) -> Self {
        let directory = directory.to_path_buf();
        match refusal {
            TxnRefusal::InvalidTxnState {
                producer_id,
                reason,
            } => StorageError::InvalidTxnState {
                directory,
                producer_id,
                reason,
            },
            TxnRefusal::CoordinatorFenced {
                producer_id,
                current_coordinator_epoch,
                received_coordinator_epoch,
            } => StorageError::TransactionCoordinatorFenced {
                directory,
                producer_id,
                current_coordinator_epoch,
                received_coordinator_epoch,
            },
        }
    }

    /// A producer state refusal, with the partition directory it happened in.
    pub fn producer(directory: &Path, refusal: ProducerRefusal) -> Self {
        let directory = directory.to_path_buf();
        match refusal {
            ProducerRefusal::OutOfOrderSequence {
                producer_id,
                producer_epoch,
                expected_sequence,
                received_sequence,
            } => StorageError::OutOfOrderSequence {
                directory,
                producer_id,
                producer_epoch,
                expected_sequence,
                received_sequence,
            },
            ProducerRefusal::DuplicateSequence {
                producer_id,
                producer_epoch,
                last_sequence,
                received_sequence,
            } => StorageError::DuplicateSequence {
                directory,
                producer_id,
                producer_epoch,
                last_sequence,
                received_sequence,
            },
            ProducerRefusal::ProducerFenced {
                producer_id,
                current_epoch,
                received_epoch,
            } => StorageError::ProducerFenced {
                directory,
                producer_id,
                current_epoch,
                received_epoch,
            },
            ProducerRefusal::InvalidProducerFields {
                producer_id,
                producer_epoch,
                base_sequence,
                record_count,
            } => StorageError::InvalidProducerFields {
                directory,
                producer_id,
                producer_epoch,
                base_sequence,
                record_count,
            },
        }
    }

    pub fn is_no_space(&self) -> bool {
        matches!(self, StorageError::NoSpace { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_becomes_no_space_with_context() {
        let error = StorageError::io(
            "writing",
            Path::new("/data/0.log"),
            Some(4096),
            io::Error::from(Errno::NOSPC),
        );
        assert!(error.is_no_space());
        let text = error.to_string();
        assert!(text.contains("/data/0.log"), "{text}");
        assert!(text.contains("byte 4096"), "{text}");
    }

    #[test]
    fn producer_refusal_names_the_partition_and_the_sequences() {
        let error = StorageError::producer(
            Path::new("/data/topic-0"),
            ProducerRefusal::OutOfOrderSequence {
                producer_id: 7,
                producer_epoch: 1,
                expected_sequence: 5,
                received_sequence: 9,
            },
        );
        let text = error.to_string();
        for part in [
            "/data/topic-0",
            "producer 7",
            "epoch 1",
            "sequence 9",
            "expected 5",
        ] {
            assert!(text.contains(part), "{text}");
        }
    }

    #[test]
    fn eio_stays_an_io_error() {
        let error = StorageError::io(
            "syncing",
            Path::new("/data/0.log"),
            None,
            io::Error::from(Errno::IO),
        );
        assert!(matches!(error, StorageError::Io { op: "syncing", .. }));
    }

    #[test]
    fn an_error_without_a_position_leaves_the_position_out() {
        let error = StorageError::io(
            "syncing",
            Path::new("/data/0.log"),
            None,
            io::Error::from(Errno::IO),
        );
        let text = error.to_string();
        assert!(
            text.starts_with("I/O error while syncing /data/0.log: "),
            "{text}"
        );
        assert!(!text.contains(" at "), "{text}");
    }
}
