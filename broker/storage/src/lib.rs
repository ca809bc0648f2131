//! `spate-storage`, the storage engine: each partition is a directory of segments written with
//! direct I/O. The lowest layer of the broker: it depends on `spate-protocol` (the batch header)
//! and on no broker crate, so it cannot name a socket, a request, a shard or a group.
//!
//! Entry point: [`PartitionLog`] (open, append, read, offset by timestamp, sync, retention,
//! delete-records, close, delete). All disk access goes through the [`FileSystem`] trait:
//! [`DmaFileSystem`] (glommio `DmaFile`, O_DIRECT over io_uring; create one per shard with
//! [`DmaFileSystem::for_data_dir`]) or [`MemoryFileSystem`] (seeded, fault-injecting, crashable,
//! for tests and simulation). Idempotent producers' sequences are checked per partition
//! (`producer_state`) and persisted as snapshots (`producer_snapshot`); transactions (open ones, the
//! last stable offset, aborted ones, markers) are tracked in `transactions`. Every limit is in
//! [`LogConfig`]. The byte layout, the write ordering and every crash case are in
//! `broker/storage/FORMAT.md`, beside this crate's `src/`.
//!
//! Architecture invariant: storage knows nothing of sockets, requests or the wire protocol
//! beyond the batch header; it validates header and CRC and treats payloads as opaque bytes.
//! Architecture invariant: no background task — the tasks that wait on the log drive its I/O.

pub mod blocking;
pub mod checkpoint;
pub mod clock;
pub mod compaction;
pub mod config;
pub mod dma;
pub mod error;
pub mod file;
pub mod file_cache;
pub mod index;
pub mod iotune;
pub mod leader_epochs;
pub mod log;
pub mod medium;
pub mod memory;
pub mod producer_snapshot;
pub mod producer_state;
pub mod progress;
pub mod read_ahead;
pub mod recovery;
pub mod segment;
pub mod slow_sync;
pub mod tail_cache;
pub mod transactions;
pub mod truncation;
pub mod txn_index;
pub mod writer;

pub use blocking::BlockingFileSystem;
pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::{
    CompactionBudget, CompactionDirt, CompactionOutcome, CompactionPace, CompactionSkipped,
};
pub use config::{
    AppendWait, CleanupPolicy, ConfigError, DirtyRatio, Durability, LogConfig, RecoveryScan,
    Visibility,
};
pub use dma::{DmaFileSystem, WriteBufferStats};
pub use error::StorageError;
pub use file::{
    read_whole_file, replace_text_file_durably, FileSystem, IoBuffer, OpenMode, ReplaceSteps,
    StorageFile, DIRECT_IO_ALIGNMENT_BYTES,
};
pub use file_cache::{CachedFile, CachedFileSystem, FileCacheStats};
pub use log::{
    validate_batch, AppendOutcome, PartitionLog, ReadOutcome, RetentionOutcome, TxnAppend,
};
pub use memory::{FaultPlan, MemoryFileSystem, MemoryStats, SimulationRng};
pub use producer_state::{ProducerEntry, ProducerRefusal, ProducerState, RetainedBatch};
pub use transactions::{AbortedTxn, TxnMarker, TxnResult, VerificationGuard};
