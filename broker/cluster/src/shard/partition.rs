//! One partition as its owning shard holds it: the storage log, the wake-up for long polls, and
//! the operations requests perform on it (validate-then-append, read, offsets by time, delete
//! records), with storage errors (idempotent producer refusals included) turned into
//! [`PartitionError`].
//!
//! This is the only file of the server that calls the storage engine's partition API. It does not
//! route: callers have already established that this shard owns the partition.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spate_protocol::batch::header::{BatchHeader, PayloadFormat, BATCH_HEADER_BYTES};
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::varint::{read_varint, read_varlong};
use spate_protocol::batch::kafka::{Compression, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::BatchView;

use super::messages::{
    FetchOutcome, Isolation, OffsetAnswer, PartitionError, PartitionState, ProduceAcks,
    ProduceOutcome, LIST_OFFSETS_EARLIEST, LIST_OFFSETS_LATEST, LIST_OFFSETS_MAX_TIMESTAMP,
};
use super::signal::AppendSignal;
use crate::catalog::topic_config::DurabilityPolicy;
use crate::catalog::TopicConfig;
use crate::log_throttle::LogThrottle;
use crate::storage::config::{
    ABORTED_TRANSACTIONS_READ_MAX, GROUP_COMMIT_INTERVAL_BYTES_DEFAULT,
    GROUP_COMMIT_INTERVAL_US_DEFAULT,
};
use crate::storage::iotune::LogSizing;
use crate::storage::{
    AppendWait, Clock, Durability, FileSystem, LogConfig, PartitionLog, StorageError, TxnMarker,
    VerificationGuard, Visibility,
};

/// The file system every shard uses for partition data: direct I/O behind the shard's open-file
/// cache, so descriptors do not grow with partitions.
pub type ShardFileSystem = crate::storage::CachedFileSystem<crate::storage::DmaFileSystem>;

/// A partition owned by this shard. Shard-local (`Rc`): created when the topic is opened on this
/// shard, dropped when the topic is deleted or the shard stops.
pub struct Partition<F: FileSystem = ShardFileSystem> {
    pub log: PartitionLog<F>,
    pub appended: Rc<AppendSignal>,
    pub directory: PathBuf,
    /// The error log of damaged batches met by reads: every consumer that reaches the damage
    /// retries it, so one line per interval, with the count held back.
    corrupt_batch_log: RefCell<LogThrottle>,
    /// Whether the topic's cleanup policy includes `compact` (its records need keys, and the
    /// shard's compaction task looks at it); follows the topic's configuration.
    compacted: Cell<bool>,
    /// Held across each change of the log's replica role and each follower append or
    /// truncation (`shard::replication`), so a leader epoch begins after the previous
    /// leader's last batch and a truncation never meets an append half way.
    pub replica_ops: glommio::sync::Semaphore,
    /// Producers' and consumers' bytes and records, for the broker's metrics.
    pub traffic: spate_metrics::PartitionTraffic,
}

/// Bytes and records of stored batches, read from their headers (whole batches the storage
/// engine checked or handed out).
fn batches_size<B: AsRef<[u8]>>(batches: &[B]) -> (u64, u64) {
    batches.iter().fold((0, 0), |(bytes, records), batch| {
        let batch = batch.as_ref();
        let count = BatchHeader::decode(batch).map_or(0, |header| header.record_count);
        (bytes + batch.len() as u64, records + u64::from(count))
    })
}

/// At most one error line per partition in this interval for reads that meet a damaged batch.
pub const CORRUPT_BATCH_LOG_INTERVAL_MS: u64 = 10_000;

/// The storage settings of a topic: its own entries over the storage engine's defaults.
pub fn log_config(config: &TopicConfig, batch_bytes_max: usize) -> LogConfig {
    log_config_sized(config, batch_bytes_max, &LogSizing::default())
}

/// [`log_config`] over the broker's storage sizes (`iotune.toml` or explicit settings) instead
/// of the engine's defaults; the topic's own entries still win.
pub fn log_config_sized(
    config: &TopicConfig,
    batch_bytes_max: usize,
    sizing: &LogSizing,
) -> LogConfig {
    let mut log = LogConfig::default();
    sizing.apply(&mut log);
    if let Some(bytes) = config.segment_bytes {
        log.segment_bytes_max = bytes;
    }
    if let Some(milliseconds) = config.segment_ms {
        log.segment_age_max_ms = milliseconds;
    }
    if let Some(bytes) = config.retention_bytes {
        log.retention_bytes = u64::try_from(bytes).ok();
    }
    if let Some(milliseconds) = config.retention_ms {
        log.retention_ms = u64::try_from(milliseconds).ok();
    }
    if let Some(policy) = config.cleanup_policy {
        log.cleanup_policy = policy;
    }
    if let Some(ratio) = config.min_cleanable_dirty_ratio {
        log.min_cleanable_dirty_ratio = ratio;
    }
    if let Some(milliseconds) = config.min_compaction_lag_ms {
        log.min_compaction_lag_ms = milliseconds;
    }
    if let Some(milliseconds) = config.max_compaction_lag_ms {
        log.max_compaction_lag_ms = milliseconds;
    }
    if let Some(milliseconds) = config.delete_retention_ms {
        log.delete_retention_ms = milliseconds;
    }
    if config.write_caching == Some(true) {
        log.visibility = Visibility::Written;
    }
    let (default_bytes, default_us) = match log.durability {
        Durability::GroupCommit {
            interval_bytes,
            interval_us,
        } => (interval_bytes, interval_us),
        Durability::EveryAppend => (
            GROUP_COMMIT_INTERVAL_BYTES_DEFAULT,
            GROUP_COMMIT_INTERVAL_US_DEFAULT,
        ),
    };
    let group_commit = Durability::GroupCommit {
        interval_bytes: config.group_commit_bytes.unwrap_or(default_bytes),
        interval_us: config.group_commit_us.unwrap_or(default_us),
    };
    log.durability = match config.durability {
        Some(DurabilityPolicy::EveryAppend) => Durability::EveryAppend,
        Some(DurabilityPolicy::GroupCommit) => group_commit,
        None if config.group_commit_bytes.is_some() || config.group_commit_us.is_some() => {
            group_commit
        }
        None => log.durability,
    };
    // A topic's largest batch is the broker's limit, or its segment size if that is smaller:
    // a batch must fit in an empty segment.
    let segment_bytes = usize::try_from(log.segment_bytes_max).unwrap_or(usize::MAX);
    log.batch_bytes_max = log.batch_bytes_max.min(batch_bytes_max).min(segment_bytes);
    // `max.message.bytes` counts a batch without Spate's header (a Kafka batch as its producer
    // sent it), so the stored batch may be one header larger.
    if let Some(bytes) = config.max_message_bytes {
        let stored_bytes = usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .saturating_add(BATCH_HEADER_BYTES);
        log.batch_bytes_max = log.batch_bytes_max.min(stored_bytes);
    }
    log
}

/// A topic's `max.message.bytes` as its partitions enforce it: the largest batch a producer
/// may send, without Spate's batch header (see [`log_config`]).
pub fn max_message_bytes(log: &LogConfig) -> usize {
    log.batch_bytes_max.saturating_sub(BATCH_HEADER_BYTES)
}

/// Whether opening a partition may create its directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenIntent {
    /// A new partition (topic creation): its directory is created.
    Create,
    /// A partition the broker already holds (start-up): a missing directory is lost data.
    Existing,
}

impl<F: FileSystem + 'static> Partition<F> {
    pub async fn open(
        file_system: Rc<F>,
        directory: PathBuf,
        config: LogConfig,
        clock: Rc<dyn Clock>,
        intent: OpenIntent,
    ) -> Result<Self, StorageError> {
        let compacted = config.cleanup_policy.compact;
        let log = match intent {
            OpenIntent::Create => {
                PartitionLog::open(file_system, directory.clone(), config, clock).await?
            }
            OpenIntent::Existing => {
                PartitionLog::open_existing(file_system, directory.clone(), config, clock).await?
            }
        };
        Ok(Partition {
            log,
            appended: Rc::new(AppendSignal::default()),
            directory,
            corrupt_batch_log: RefCell::new(LogThrottle::new(Duration::from_millis(
                CORRUPT_BATCH_LOG_INTERVAL_MS,
            ))),
            compacted: Cell::new(compacted),
            replica_ops: glommio::sync::Semaphore::new(1),
            traffic: spate_metrics::PartitionTraffic::default(),
        })
    }

    /// Applies a changed topic configuration.
    pub fn update_config(&self, config: LogConfig) {
        self.compacted.set(config.cleanup_policy.compact);
        self.log.update_config(config);
    }

    /// Whether the topic is compacted (`cleanup.policy` includes `compact`).
    pub fn compacted(&self) -> bool {
        self.compacted.get()
    }

    /// Kafka's rule for compacted topics: every record has a key (see `record_keys`).
    pub fn check_keys(
        &self,
        batches: &[BytesMut],
        decompressed_bytes_max: usize,
    ) -> Result<(), PartitionError> {
        if !self.compacted() {
            return Ok(());
        }
        batches.iter().try_for_each(|batch| {
            super::record_keys::check_every_record_has_a_key(batch, decompressed_bytes_max)
        })
    }

    /// Offsets as clients see them: the high watermark is the end of the durable, readable log.
    pub fn state(&self) -> PartitionState {
        PartitionState {
            log_start_offset: self.log.log_start_offset(),
            high_watermark: self.log.high_watermark(),
            log_end: self.log.next_offset(),
            last_stable_offset: self.last_stable_offset(),
        }
    }

    /// Below it every transaction is decided: `min(high watermark, first offset of the oldest
    /// open transaction)`.
    pub fn last_stable_offset(&self) -> u64 {
        self.log.last_stable_offset()
    }

    /// The end of what a reader under `isolation` may see: the high watermark, or the last
    /// stable offset.
    pub fn readable_end(&self, isolation: Isolation) -> u64 {
        match isolation {
            Isolation::ReadUncommitted => self.log.high_watermark(),
            Isolation::ReadCommitted => self.last_stable_offset(),
        }
    }

    /// Appends every batch or none: the storage engine validates all batches (header, CRC, the
    /// log's batch size limit) before it appends the first, so a bad batch anywhere leaves the
    /// partition untouched, and each batch's CRC is computed once.
    ///
    /// `verification`: the request's guard for a transactional batch that opens its producer's
    /// transaction here (see [`Partition::txn_verification`]).
    pub async fn produce(
        &self,
        batches: Vec<BytesMut>,
        acks: ProduceAcks,
        verification: Option<VerificationGuard>,
    ) -> Result<ProduceOutcome, PartitionError> {
        if batches.is_empty() {
            return Err(PartitionError::InvalidRequest(
                "no record batch for the partition".into(),
            ));
        }
        let wait = match acks {
            ProduceAcks::All => AppendWait::Durable,
            _ => AppendWait::Written,
        };
        // One call for all of the request's batches: storage validates every batch before it
        // appends any, writes them together, and with `Durable` answers Ok only when every one
        // of them is durable (a rollback of any of them fails the call).
        let (bytes_in, records_in) = batches_size(&batches);
        let batches_in = batches.len() as u64;
        let outcome = self
            .log
            .append_batches_verified(batches, wait, verification)
            .await;
        self.appended.notify();
        let outcomes = outcome.map_err(partition_error)?;
        spate_metrics::add(&self.traffic.batches_in, batches_in);
        spate_metrics::add(&self.traffic.bytes_in, bytes_in);
        spate_metrics::add(&self.traffic.records_in, records_in);
        let first_offset = outcomes.first().map(|outcome| outcome.base_offset);
        let log_start_offset = outcomes
            .last()
            .map_or(0, |outcome| outcome.log_start_offset);
        let end_offset = outcomes.last().map_or(0, |outcome| outcome.next_offset);
        Ok(ProduceOutcome {
            base_offset: first_offset.unwrap_or_default(),
            log_start_offset,
            end_offset,
        })
    }

    /// Whole batches from `offset`, up to `max_bytes` (at least one batch if any exists). At or
    /// past the high watermark (data appended but not yet durable) the answer is empty, as in
    /// Kafka; before the log start or past the log end it is `OffsetOutOfRange`.
    ///
    /// Under read_committed only whole batches below the last stable offset are answered (a
    /// batch that reaches it waits, as in Kafka, where the last stable offset is always a batch
    /// boundary), with the aborted transactions whose data meets what is answered.
    pub async fn fetch(
        &self,
        offset: i64,
        max_bytes: usize,
        isolation: Isolation,
    ) -> Result<FetchOutcome, PartitionError> {
        let Ok(offset) = u64::try_from(offset) else {
            let state = self.state();
            return Err(PartitionError::OffsetOutOfRange {
                offset,
                log_start_offset: state.log_start_offset,
                high_watermark: state.high_watermark,
            });
        };
        let read = self
            .log
            .read(offset, max_bytes)
            .await
            .map_err(|error| match error {
                StorageError::OffsetOutOfRange { .. } => {
                    let state = self.state();
                    PartitionError::OffsetOutOfRange {
                        offset: offset as i64,
                        log_start_offset: state.log_start_offset,
                        high_watermark: state.high_watermark,
                    }
                }
                error => self.read_error(error),
            })?;
        // Taken after the read: it never goes back (a transaction begins at the log end, above
        // the high watermark), so bounded by the read's high watermark it is still true of
        // what was read.
        let last_stable_offset = self.last_stable_offset().min(read.high_watermark);
        let mut batches = read.batches;
        let mut aborted = Vec::new();
        if isolation == Isolation::ReadCommitted {
            batches.truncate(stable_prefix(&batches, last_stable_offset));
            if let Some(last) = batches.last() {
                let upper_offset = stored_header(last).next_offset();
                aborted = self
                    .log
                    .aborted_transactions(offset, upper_offset)
                    .await
                    .map_err(|error| self.read_error(error))?;
                // A full list may leave out aborted transactions the records hold: answer the
                // first batch alone, whose list is complete unless more transactions than that
                // overlap one batch.
                if aborted.len() >= ABORTED_TRANSACTIONS_READ_MAX && batches.len() > 1 {
                    batches.truncate(1);
                    let upper_offset = stored_header(&batches[0]).next_offset();
                    aborted = self
                        .log
                        .aborted_transactions(offset, upper_offset)
                        .await
                        .map_err(|error| self.read_error(error))?;
                }
            }
        }
        if spate_metrics::enabled() {
            let (bytes_out, records_out) = batches_size(&batches);
            self.traffic.bytes_out.add(bytes_out);
            self.traffic.records_out.add(records_out);
        }
        Ok(FetchOutcome {
            high_watermark: read.high_watermark,
            last_stable_offset,
            log_start_offset: read.log_start_offset,
            batches,
            aborted,
        })
    }

    /// KIP-890 part 1: `None` when `producer_id` already has a transaction open here (its
    /// batches need no check); otherwise the guard its first transactional batch must be
    /// appended with, once the transaction coordinator confirmed the partition is in the
    /// producer's transaction. A marker for the producer appended meanwhile voids the guard.
    pub fn txn_verification(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Option<VerificationGuard> {
        self.log.begin_txn_verification(producer_id, producer_epoch)
    }

    /// Appends a transaction marker and waits until it is durable; answers its offset. Wakes
    /// the partition's long polls: the marker moves the last stable offset.
    pub async fn write_txn_marker(
        &self,
        marker: TxnMarker,
        timestamp_ms: i64,
    ) -> Result<u64, PartitionError> {
        let outcome = self.log.append_txn_marker(marker, timestamp_ms).await;
        self.appended.notify();
        outcome
            .map(|outcome| outcome.base_offset)
            .map_err(partition_error)
    }

    /// Earliest, latest, or the first record whose timestamp is at or after `target`. The storage
    /// engine answers by batch; the batch is then read and its records scanned, so the answer is
    /// exact to the record.
    ///
    /// Under read_committed, latest is the last stable offset, and a timestamp's answer at or
    /// past it is none (Kafka's `Partition.fetchOffsetForTimestamp`).
    pub async fn list_offset(
        &self,
        target: i64,
        isolation: Isolation,
        decompressed_bytes_max: usize,
    ) -> Result<OffsetAnswer, PartitionError> {
        let answer = self
            .list_offset_uncommitted(target, decompressed_bytes_max)
            .await?;
        if isolation == Isolation::ReadUncommitted || target == LIST_OFFSETS_EARLIEST {
            return Ok(answer);
        }
        let last_stable_offset = self.last_stable_offset();
        if target == LIST_OFFSETS_LATEST {
            return Ok(OffsetAnswer {
                offset: last_stable_offset as i64,
                timestamp: -1,
            });
        }
        if answer.offset >= last_stable_offset as i64 {
            return Ok(OffsetAnswer {
                offset: -1,
                timestamp: -1,
            });
        }
        Ok(answer)
    }

    async fn list_offset_uncommitted(
        &self,
        target: i64,
        decompressed_bytes_max: usize,
    ) -> Result<OffsetAnswer, PartitionError> {
        match target {
            LIST_OFFSETS_EARLIEST => Ok(OffsetAnswer {
                offset: self.log.log_start_offset() as i64,
                timestamp: -1,
            }),
            LIST_OFFSETS_LATEST => Ok(OffsetAnswer {
                offset: self.log.high_watermark() as i64,
                timestamp: -1,
            }),
            LIST_OFFSETS_MAX_TIMESTAMP => match self.log.max_timestamp() {
                Some(timestamp) => {
                    self.offset_for_timestamp(timestamp, decompressed_bytes_max)
                        .await
                }
                None => Ok(OffsetAnswer {
                    offset: -1,
                    timestamp: -1,
                }),
            },
            timestamp if timestamp < 0 => Err(PartitionError::InvalidRequest(format!(
                "list offsets target {timestamp} is neither a timestamp nor -1/-2/-3"
            ))),
            timestamp => {
                self.offset_for_timestamp(timestamp, decompressed_bytes_max)
                    .await
            }
        }
    }

    async fn offset_for_timestamp(
        &self,
        timestamp: i64,
        decompressed_bytes_max: usize,
    ) -> Result<OffsetAnswer, PartitionError> {
        let none = OffsetAnswer {
            offset: -1,
            timestamp: -1,
        };
        let Some(mut offset) = self
            .log
            .offset_for_timestamp(timestamp)
            .await
            .map_err(|error| self.read_error(error))?
        else {
            return Ok(none);
        };
        // The batch found has max_timestamp >= target, so it holds the answer unless retention
        // raced us; scan forward batch by batch to be exact even then.
        while offset < self.log.high_watermark() {
            let read = self
                .log
                .read(offset, 1)
                .await
                .map_err(|error| self.read_error(error))?;
            let Some(batch) = read.batches.first() else {
                break;
            };
            let view = BatchView::validate(batch, usize::MAX).map_err(|error| {
                PartitionError::Storage(format!("stored batch invalid: {error}"))
            })?;
            if view.payload_format() == PayloadFormat::KafkaV2 {
                if let Some(answer) = kafka_record_at_or_after(
                    batch,
                    view.header(),
                    timestamp,
                    decompressed_bytes_max,
                ) {
                    return Ok(answer);
                }
                offset = view.header().next_offset();
                continue;
            }
            let records = view.records().map_err(|error| {
                PartitionError::Storage(format!("stored batch unreadable: {error}"))
            })?;
            for record in records {
                if record.timestamp() >= timestamp {
                    return Ok(OffsetAnswer {
                        offset: record.offset() as i64,
                        timestamp: record.timestamp(),
                    });
                }
            }
            offset = view.header().next_offset();
        }
        Ok(none)
    }

    /// A failed read as the wire sees it. Damage on the medium is logged here, with the file,
    /// the byte position and the offsets it makes unreadable: the client only gets the code.
    /// At most one line per [`CORRUPT_BATCH_LOG_INTERVAL_MS`], naming how many were held back.
    pub(super) fn read_error(&self, error: StorageError) -> PartitionError {
        if let StorageError::CorruptBatch { .. } = error {
            let due = self.corrupt_batch_log.borrow_mut().due(Instant::now());
            if let Some(suppressed_since_last_line) = due {
                tracing::error!(partition = %self.directory.display(), suppressed_since_last_line, "{error}");
            }
        }
        partition_error(error)
    }

    /// Moves the log start to `before` (`-1`: the high watermark, as in Kafka).
    pub async fn delete_records(&self, before: i64) -> Result<u64, PartitionError> {
        let state = self.state();
        let before = match before {
            -1 => state.high_watermark,
            before if before < 0 || before as u64 > state.high_watermark => {
                return Err(PartitionError::OffsetOutOfRange {
                    offset: before,
                    log_start_offset: state.log_start_offset,
                    high_watermark: state.high_watermark,
                })
            }
            before => before as u64,
        };
        self.log
            .delete_records(before)
            .await
            .map_err(partition_error)
    }
}

/// How many of `batches` (stored, in offset order) end at or below `end`: a read_committed
/// answer stops before the first batch that reaches the last stable offset.
fn stable_prefix(batches: &[bytes::Bytes], end: u64) -> usize {
    batches
        .iter()
        .position(|batch| stored_header(batch).next_offset() > end)
        .unwrap_or(batches.len())
}

/// The header of a batch storage handed out: storage reads only whole, checked batches.
fn stored_header(batch: &[u8]) -> BatchHeader {
    BatchHeader::decode(batch).expect("storage hands out whole batches")
}

/// The first record of a stored format-2 (Kafka) batch whose timestamp is at or after
/// `timestamp`. Uncompressed records are walked in place (each record's length, attributes,
/// timestamp delta and offset delta; nothing else is read). A compressed batch is inflated
/// first, as Kafka does for the same lookup: at most `decompressed_bytes_max` bytes, once per
/// lookup, freed when it ends (the cost is one decompression of one batch, about what a
/// consumer pays to read it). A batch that cannot be inflated within the bound is answered by
/// batch (its base offset), with a warning: the consumer then gets a few earlier records of
/// that batch first. `None`: no record of the batch qualifies.
fn kafka_record_at_or_after(
    batch: &[u8],
    header: &BatchHeader,
    timestamp: i64,
    decompressed_bytes_max: usize,
) -> Option<OffsetAnswer> {
    if header.max_timestamp < timestamp {
        return None;
    }
    // Kafka's producers stamp the first record's timestamp as the batch's first timestamp.
    let batch_answer = OffsetAnswer {
        offset: header.base_offset as i64,
        timestamp: if header.first_timestamp >= timestamp {
            header.first_timestamp
        } else {
            header.max_timestamp
        },
    };
    let records = batch.get(BATCH_HEADER_BYTES + KAFKA_BATCH_HEADER_BYTES..)?;
    let Some(codec) = Compression::from_attributes(header.attributes) else {
        return Some(batch_answer);
    };
    let answer = if codec == Compression::None {
        first_record_at_or_after(records, header, timestamp)
    } else {
        match decompress(codec, records, decompressed_bytes_max) {
            Ok(inflated) => first_record_at_or_after(&inflated, header, timestamp),
            Err(error) => {
                tracing::warn!(
                    base_offset = header.base_offset,
                    codec = codec.name(),
                    %error,
                    "a timestamp lookup answers by batch: the batch could not be decompressed \
                     within kafka_decompressed_bytes_max"
                );
                None
            }
        }
    };
    // `None` here: the records disagree with the header's largest timestamp, or could not be
    // read; the batch is the answer.
    Some(answer.unwrap_or(batch_answer))
}

/// The first of `records` (a Kafka batch's records, uncompressed) whose timestamp is at or after
/// `timestamp`.
fn first_record_at_or_after(
    mut records: &[u8],
    header: &BatchHeader,
    timestamp: i64,
) -> Option<OffsetAnswer> {
    for _ in 0..header.record_count {
        let (length, used) = read_varint(records)?;
        let record = records.get(used..used + usize::try_from(length).ok()?)?;
        records = &records[used + record.len()..];
        // attributes (1 byte), timestampDelta (varlong), offsetDelta (varint).
        let (timestamp_delta, used) = read_varlong(record.get(1..)?)?;
        let (offset_delta, _) = read_varint(record.get(1 + used..)?)?;
        let record_timestamp = header.first_timestamp.wrapping_add(timestamp_delta);
        if record_timestamp >= timestamp {
            return Some(OffsetAnswer {
                offset: header.base_offset as i64 + i64::from(offset_delta),
                timestamp: record_timestamp,
            });
        }
    }
    None
}

/// Storage errors as the wire sees them.
pub fn partition_error(error: StorageError) -> PartitionError {
    match error {
        StorageError::InvalidBatch(spate_protocol::BatchError::TooLarge { .. }) => {
            PartitionError::BatchTooLarge(error.to_string())
        }
        StorageError::InvalidBatch(_)
        | StorageError::BatchLengthMismatch { .. }
        | StorageError::CorruptBatch { .. } => PartitionError::CorruptBatch(error.to_string()),
        StorageError::OffsetOutOfRange { .. } => PartitionError::Storage(error.to_string()),
        StorageError::NoSpace { .. } => PartitionError::NoSpace(error.to_string()),
        StorageError::OutOfOrderSequence { .. } => {
            PartitionError::OutOfOrderSequence(error.to_string())
        }
        StorageError::DuplicateSequence { .. } => {
            PartitionError::DuplicateSequence(error.to_string())
        }
        StorageError::ProducerFenced { .. } => PartitionError::ProducerFenced(error.to_string()),
        StorageError::Unlinked { .. } => PartitionError::Offline(error.to_string()),
        StorageError::InvalidProducerFields { .. } => {
            PartitionError::InvalidProducerIdMapping(error.to_string())
        }
        StorageError::InvalidTxnState { .. } => PartitionError::InvalidTxnState(error.to_string()),
        StorageError::TransactionCoordinatorFenced { .. } => {
            PartitionError::TransactionCoordinatorFenced(error.to_string())
        }
        error => PartitionError::Storage(error.to_string()),
    }
}
