//! Every limit of the storage engine, in one struct per partition log, with defaults.
//!
//! The defaults are checked against each other by `const` assertions below; a configuration that
//! comes from a user (topic settings) is checked at run time by [`LogConfig::check`], which
//! returns a typed error instead of panicking. This file holds no behaviour beyond those checks.

use spate_protocol::batch::BATCH_HEADER_BYTES;
use spate_protocol::constants::BATCH_BYTES_MAX;

use super::file::DIRECT_IO_ALIGNMENT_BYTES;

/// When appended bytes are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Every append is followed by an `fdatasync` before it is acknowledged as durable. Appends
    /// that arrive while a sync is in flight share the next one. Written data nobody waits on
    /// durably is synced at the shard timer's next `sync_if_due`.
    EveryAppend,
    /// Adaptive group commit: a durable append syncs as soon as no other write or sync of the
    /// partition is in flight, and one `fdatasync` covers every append since the previous one
    /// (those that arrived while it was in flight share the next one), so an idle log adds no
    /// delay and a busy one syncs back to back. The intervals bound only data nobody waits on
    /// durably (`AppendWait::Written`): `sync_if_due` syncs it once `interval_bytes` are
    /// unsynced or `interval_us` have passed since the last sync.
    GroupCommit {
        interval_bytes: u64,
        interval_us: u64,
    },
}

/// What an append waits for before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppendWait {
    /// The batch's bytes are written to the file (O_DIRECT write completed) but not yet synced:
    /// Kafka's `acks=leader`. A crash may lose it.
    Written,
    /// The batch is covered by an `fdatasync` under the log's [`Durability`] policy.
    ///
    /// Durability is a prefix of the log: when a durable append returns `Ok`, every batch at a
    /// lower offset is durable too, including batches in earlier segments (a roll syncs the
    /// closed segment before the next one exists). Caveat: a batch acknowledged `Written`
    /// earlier holds a lower offset only if no disk error rolled it back in between — a
    /// rollback fails the appends still waiting, but one that already returned `Written` is not
    /// told. To know that several batches all became durable, append them together with
    /// `PartitionLog::append_batches`.
    Durable,
}

pub const SEGMENT_BYTES_MAX_DEFAULT: u64 = 1024 * 1024 * 1024;
pub const SEGMENT_AGE_MAX_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
pub const RETENTION_MS_DEFAULT: u64 = 7 * 24 * 60 * 60 * 1000;
/// Kafka's defaults for compacted topics.
pub const MIN_CLEANABLE_DIRTY_RATIO_DEFAULT: DirtyRatio =
    match DirtyRatio::from_parts_per_million(500_000) {
        Some(ratio) => ratio,
        None => panic!("0.5 is a ratio"),
    };
/// `max.compaction.lag.ms` default: Kafka's `Long.MAX_VALUE`, i.e. no age forces a pass.
pub const MAX_COMPACTION_LAG_MS_DEFAULT: u64 = i64::MAX as u64;
pub const DELETE_RETENTION_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
pub const GROUP_COMMIT_INTERVAL_BYTES_DEFAULT: u64 = 1024 * 1024;
pub const GROUP_COMMIT_INTERVAL_US_DEFAULT: u64 = 2_000;
pub const INDEX_INTERVAL_BYTES_DEFAULT: u32 = 4096;
pub const INDEX_PERSIST_INTERVAL_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
pub const TAIL_CACHE_BYTES_MAX_DEFAULT: usize = 8 * 1024 * 1024;
pub const WRITE_BUFFER_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
pub const WRITE_QUEUE_BYTES_MAX_DEFAULT: usize = 32 * 1024 * 1024;
pub const READ_CHUNK_BYTES_DEFAULT: usize = 1024 * 1024;
/// Durable log bytes past the recovery point after which the shard's next check writes a new
/// one (with a producer snapshot): what an open after a crash replays is about this much.
pub const RECOVERY_POINT_INTERVAL_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Idempotent producers remembered per partition (each holds up to
/// `PRODUCER_BATCHES_RETAINED` batch records, about 140 bytes in a snapshot).
pub const PRODUCERS_PER_PARTITION_MAX_DEFAULT: usize = 4096;
/// A producer that has not appended for this long is forgotten (Kafka's
/// `producer.id.expiration.ms`).
pub const PRODUCER_EXPIRY_MS_DEFAULT: u64 = 24 * 60 * 60 * 1000;
/// At most this many aborted transactions are returned by one
/// `PartitionLog::aborted_transactions` call (one read_committed fetch). Each aborted
/// transaction in a range holds at least one data batch and its marker (two batch headers,
/// over 128 bytes), so a fetch that passes the end of the records it returns as the upper
/// offset stays below this for any response under 8 MiB; the bound only caps what a bad range
/// can cost.
pub const ABORTED_TRANSACTIONS_READ_MAX: usize = 65_536;
/// Aborted-transaction index entries of closed segments kept in memory per partition once
/// read (40 bytes each on disk, 32 in memory): the segments a read_committed fetch reads
/// again are served from memory, the rest from their `.txnindex` files.
pub const ABORTED_TRANSACTIONS_CACHED_MAX: usize = 4096;
/// No configuration may remember more producers per partition: bounds a producer snapshot
/// (about 140 MiB at this count) and so the memory its load may take.
pub const PRODUCERS_PER_PARTITION_LIMIT: usize = 1 << 20;
/// Leader epochs remembered per partition (`leader_epochs`; 16 bytes each in memory, a line of
/// the `leader-epochs` file on disk): one per leadership that appended, so this many leader
/// changes with writes in between. Past it the oldest are forgotten: a follower asking about
/// one of them is answered "unknown" and truncates further back than needed, never wrongly.
pub const LEADER_EPOCH_ENTRIES_MAX: usize = 4096;

/// The active segment's disk blocks are reserved ahead of its writes in steps of this many bytes
/// (never past `segment_bytes_max`), so that an O_DIRECT write extending the file does not run
/// the file system's block allocator in an io_uring worker. Each step leaves at most this much
/// reserved and unused per partition (released when the segment rolls).
pub const PREALLOCATE_STEP_BYTES: u64 = 16 * 1024 * 1024;
/// Aligned write buffers kept per shard for reuse (`dma`), so that steady-state appends neither
/// allocate nor page-fault fresh memory. At most this many, of at most
/// [`WRITE_BUFFER_POOL_BYTES_MAX`] together; the least recently returned goes first.
pub const WRITE_BUFFER_POOL_BUFFERS_MAX: usize = 4;
pub const WRITE_BUFFER_POOL_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A disk read of at least twice this many bytes (a fetch served from disk, sized from its
/// `max_bytes`) is split into parts of at least this size, up to [`READ_PARTS_MAX`], all in flight
/// at once: one read at queue depth 1 leaves most of an NVMe drive (and of this VM's virtio
/// disk) idle, and the parts land in the one buffer the read returns, so the split costs no
/// memory beyond the read itself.
pub const READ_PART_BYTES_MIN: usize = 256 * 1024;
pub const READ_PARTS_MAX: usize = 4;
/// Disk reads started ahead of a catch-up reader's next fetch (`read_ahead`) hold at most this
/// many bytes per shard together; none is started for less than [`READ_AHEAD_BYTES_MIN`], which
/// also bounds how many can be parked (and keep their segment file open) at once.
pub const READ_AHEAD_BYTES_PER_SHARD_MAX: usize = 64 * 1024 * 1024;
pub const READ_AHEAD_BYTES_MIN: usize = 256 * 1024;

/// Index entries store positions as `u32`: a segment can never be larger.
pub const SEGMENT_BYTES_LIMIT: u64 = u32::MAX as u64;

const _: () = assert!(SEGMENT_BYTES_MAX_DEFAULT <= SEGMENT_BYTES_LIMIT);
const _: () = assert!(READ_PART_BYTES_MIN % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(READ_PARTS_MAX >= 1);
const _: () = assert!(BATCH_BYTES_MAX as u64 <= SEGMENT_BYTES_MAX_DEFAULT);
const _: () = assert!(WRITE_BUFFER_BYTES_DEFAULT % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BUFFER_BYTES_DEFAULT >= 2 * DIRECT_IO_ALIGNMENT_BYTES);
const _: () = assert!(WRITE_QUEUE_BYTES_MAX_DEFAULT >= BATCH_BYTES_MAX);
const _: () = assert!(READ_CHUNK_BYTES_DEFAULT % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(INDEX_INTERVAL_BYTES_DEFAULT > 0);
const _: () = assert!(
    PRODUCERS_PER_PARTITION_MAX_DEFAULT > 0
        && PRODUCERS_PER_PARTITION_MAX_DEFAULT <= PRODUCERS_PER_PARTITION_LIMIT
);
const _: () = assert!(PRODUCER_EXPIRY_MS_DEFAULT > 0);
const _: () = assert!(PREALLOCATE_STEP_BYTES % DIRECT_IO_ALIGNMENT_BYTES as u64 == 0);
const _: () = assert!(PREALLOCATE_STEP_BYTES >= WRITE_BUFFER_BYTES_DEFAULT as u64);
// A pool that cannot hold one default-sized write buffer would never reuse the large ones.
const _: () = assert!(WRITE_BUFFER_POOL_BYTES_MAX >= 2 * WRITE_BUFFER_BYTES_DEFAULT);

/// The settings of one partition log. Every field is a bound; none is unlimited except the
/// optional retention limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The active segment rolls before an append would make it larger than this.
    pub segment_bytes_max: u64,
    /// The active segment rolls once it has been open this long (measured from when this
    /// process opened or created it) and holds at least one batch.
    pub segment_age_max_ms: u64,
    /// Retention deletes the oldest closed segments while the log stays at or above this size.
    pub retention_bytes: Option<u64>,
    /// Retention deletes closed segments whose newest batch timestamp is older than this.
    pub retention_ms: Option<u64>,
    pub durability: Durability,
    /// One offset- and time-index entry per this many bytes of log.
    pub index_interval_bytes: u32,
    /// Index entries are written to disk once the log they cover since the last index write
    /// reaches this many bytes (and at roll and close). Bounds the recovery scan after a crash.
    pub index_persist_interval_bytes: u64,
    /// Recently appended batches kept in memory to serve tail reads without disk I/O.
    pub tail_cache_bytes_max: usize,
    /// Largest batch accepted, header included.
    pub batch_bytes_max: usize,
    /// Largest single aligned write; larger backlogs are written in several writes.
    pub write_buffer_bytes: usize,
    /// Appended bytes not yet handed to the disk; appends wait while it is full.
    pub write_queue_bytes_max: usize,
    /// Size of each disk read when scanning a segment (recovery, reads, timestamp lookups,
    /// producer state replay).
    pub read_chunk_bytes: usize,
    /// Idempotent producers remembered; when full, the one that appended longest ago goes.
    pub producers_per_partition_max: usize,
    /// A producer that has not appended for this long is forgotten (checked at segment roll,
    /// close, and when the producer state is full).
    pub producer_expiry_ms: u64,
    /// Durable bytes of the active segment past the recovery point that make a new recovery
    /// point (and producer snapshot) due (`PartitionLog::checkpoint_recovery_point_if_due`).
    pub recovery_point_interval_bytes: u64,
    /// How much of the active segment an open reads to recover it.
    pub recovery_scan: RecoveryScan,
    /// What removes old records: retention (`delete`), compaction (`compact`), or both
    /// (Kafka's `cleanup.policy`).
    pub cleanup_policy: CleanupPolicy,
    /// Compaction considers a log once its dirty part (after the cleaner checkpoint) is at
    /// least this share of the cleanable log (Kafka's `min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: DirtyRatio,
    /// A record younger than this is never compacted away (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: u64,
    /// A record older than this is compacted whatever the dirty ratio (`max.compaction.lag.ms`).
    pub max_compaction_lag_ms: u64,
    /// Tombstones (and transaction markers whose data is gone) stay this long after the part of
    /// the log holding them was first cleaned (`delete.retention.ms`).
    pub delete_retention_ms: u64,
    /// What readers may see: only durable batches (the default), or batches once written
    /// (`write.caching`).
    pub visibility: Visibility,
}

/// How far readers (consumers, `ListOffsets` latest, the high watermark a fetch reports) see
/// into a single-replica log: Redpanda's `write.caching`, and what Kafka does by default (it
/// serves what is in the page cache).
///
/// A replicated partition's high watermark is still the smallest durable end over its ISR
/// whatever this says: followers report their durable ends, so a record the whole ISR may
/// still lose is never shown (see docs/replication.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Visibility {
    /// Readers see a batch only once it is durable under the log's [`Durability`]: what a
    /// consumer read survives a crash and a power loss. Every record waits for one
    /// `fdatasync` before a consumer can see it.
    #[default]
    Durable,
    /// Readers see a batch as soon as its O_DIRECT write completed, before its `fdatasync`.
    /// A consumer no longer waits for the sync, but may read a record that a power loss (or a
    /// failed sync, which rolls the log back to its durable point) then takes away, so its
    /// offsets are given to other records afterwards. Appends acknowledged `Durable` keep their
    /// promise either way.
    Written,
}

/// Kafka's `cleanup.policy`: `delete`, `compact` or `compact,delete`. At least one is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CleanupPolicy {
    /// Retention (`retention.ms`, `retention.bytes`) deletes whole old segments.
    pub delete: bool,
    /// Compaction keeps the last record of every key.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: Self = Self {
        delete: true,
        compact: false,
    };
    pub const COMPACT: Self = Self {
        delete: false,
        compact: true,
    };
    pub const COMPACT_DELETE: Self = Self {
        delete: true,
        compact: true,
    };

    /// Kafka's spelling: a comma-separated list of `delete` and `compact` in any order, each at
    /// most once, at least one.
    pub fn parse(text: &str) -> Option<Self> {
        let mut policy = Self {
            delete: false,
            compact: false,
        };
        for word in text.split(',').map(str::trim) {
            let slot = match word {
                "delete" => &mut policy.delete,
                "compact" => &mut policy.compact,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        (policy.delete || policy.compact).then_some(policy)
    }

    /// As Kafka writes it (`compact,delete` for both).
    pub fn as_str(self) -> &'static str {
        match (self.compact, self.delete) {
            (true, true) => "compact,delete",
            (true, false) => "compact",
            _ => "delete",
        }
    }
}

/// A share in `[0, 1]` kept as parts per million, so that configs stay `Eq` and exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DirtyRatio {
    parts_per_million: u32,
}

impl DirtyRatio {
    pub const MILLION: u32 = 1_000_000;

    /// `None` unless `0 <= parts_per_million <= 1_000_000`.
    pub const fn from_parts_per_million(parts_per_million: u32) -> Option<Self> {
        if parts_per_million <= Self::MILLION {
            Some(Self { parts_per_million })
        } else {
            None
        }
    }

    /// Kafka's spelling, a decimal in `[0, 1]` (`0.5`); `None` outside it or not a number.
    pub fn parse(text: &str) -> Option<Self> {
        let value: f64 = text.trim().parse().ok()?;
        if !(0.0..=1.0).contains(&value) {
            return None;
        }
        Self::from_parts_per_million((value * f64::from(Self::MILLION)).round() as u32)
    }

    pub fn parts_per_million(self) -> u32 {
        self.parts_per_million
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.parts_per_million) / f64::from(Self::MILLION)
    }

    /// Whether `dirty` bytes out of `total` reach this share (`total == 0` never does).
    pub fn reached_by(self, dirty: u64, total: u64) -> bool {
        total > 0
            && u128::from(dirty) * u128::from(Self::MILLION)
                >= u128::from(total) * u128::from(self.parts_per_million)
    }
}

impl std::fmt::Display for DirtyRatio {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}", self.as_f64())
    }
}

/// How much of a partition's active segment an open checks (`recovery::recover_segment`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RecoveryScan {
    /// Trust the checkpoints: check batches from the last index entry on disk that points at a
    /// valid batch (at most `index_persist_interval_bytes` behind the durable end), and replay
    /// producers from the recovery point's snapshot. What keeps restarts short.
    #[default]
    Checkpoints,
    /// Trust no index entry of the active segment: check every batch of it from its first byte
    /// (header, offset continuity and CRC), and rebuild its index from the scan (the producer
    /// state still comes from the newest valid snapshot, which has a CRC). For an operator
    /// who distrusts the files that make an open short (a restored copy of the data directory,
    /// a disk suspected of losing writes it acknowledged); it reads each active segment whole,
    /// as the broker did before recovery points and persisted index entries.
    Full,
}

impl std::str::FromStr for RecoveryScan {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "checkpoints" => Ok(Self::Checkpoints),
            "full" => Ok(Self::Full),
            other => Err(format!(
                "recovery scan {other:?} is neither \"checkpoints\" nor \"full\""
            )),
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes_max: SEGMENT_BYTES_MAX_DEFAULT,
            segment_age_max_ms: SEGMENT_AGE_MAX_MS_DEFAULT,
            retention_bytes: None,
            retention_ms: Some(RETENTION_MS_DEFAULT),
            durability: Durability::GroupCommit {
                interval_bytes: GROUP_COMMIT_INTERVAL_BYTES_DEFAULT,
                interval_us: GROUP_COMMIT_INTERVAL_US_DEFAULT,
            },
            index_interval_bytes: INDEX_INTERVAL_BYTES_DEFAULT,
            index_persist_interval_bytes: INDEX_PERSIST_INTERVAL_BYTES_DEFAULT,
            tail_cache_bytes_max: TAIL_CACHE_BYTES_MAX_DEFAULT,
            batch_bytes_max: BATCH_BYTES_MAX,
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            write_queue_bytes_max: WRITE_QUEUE_BYTES_MAX_DEFAULT,
            read_chunk_bytes: READ_CHUNK_BYTES_DEFAULT,
            producers_per_partition_max: PRODUCERS_PER_PARTITION_MAX_DEFAULT,
            producer_expiry_ms: PRODUCER_EXPIRY_MS_DEFAULT,
            recovery_point_interval_bytes: RECOVERY_POINT_INTERVAL_BYTES_DEFAULT,
            recovery_scan: RecoveryScan::Checkpoints,
            cleanup_policy: CleanupPolicy::DELETE,
            min_cleanable_dirty_ratio: MIN_CLEANABLE_DIRTY_RATIO_DEFAULT,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: MAX_COMPACTION_LAG_MS_DEFAULT,
            delete_retention_ms: DELETE_RETENTION_MS_DEFAULT,
            visibility: Visibility::Durable,
        }
    }
}

/// Why a [`LogConfig`] cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("log config field `{field}`: {reason}")]
pub struct ConfigError {
    pub field: &'static str,
    pub reason: String,
}

fn refuse(field: &'static str, reason: String) -> Result<(), ConfigError> {
    Err(ConfigError { field, reason })
}

impl LogConfig {
    /// Checks every relation between the limits. Run on any configuration built from user input;
    /// [`super::PartitionLog::open`] refuses a configuration that fails it.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.batch_bytes_max < BATCH_HEADER_BYTES {
            return refuse(
                "batch_bytes_max",
                format!(
                    "{} is below the {BATCH_HEADER_BYTES}-byte header",
                    self.batch_bytes_max
                ),
            );
        }
        if self.segment_bytes_max > SEGMENT_BYTES_LIMIT {
            return refuse(
                "segment_bytes_max",
                format!(
                    "{} exceeds the u32 position limit {SEGMENT_BYTES_LIMIT}",
                    self.segment_bytes_max
                ),
            );
        }
        if self.segment_bytes_max < self.batch_bytes_max as u64 {
            return refuse(
                "segment_bytes_max",
                format!(
                    "{} is below batch_bytes_max {}: a largest batch must fit an empty segment",
                    self.segment_bytes_max, self.batch_bytes_max
                ),
            );
        }
        if self.segment_age_max_ms == 0 {
            return refuse("segment_age_max_ms", "must be positive".into());
        }
        if self.index_interval_bytes == 0 {
            return refuse("index_interval_bytes", "must be positive".into());
        }
        if self.index_persist_interval_bytes == 0 {
            return refuse("index_persist_interval_bytes", "must be positive".into());
        }
        if self.write_buffer_bytes < 2 * DIRECT_IO_ALIGNMENT_BYTES
            || self.write_buffer_bytes % DIRECT_IO_ALIGNMENT_BYTES != 0
        {
            return refuse(
                "write_buffer_bytes",
                format!(
                    "{} must be a multiple of {DIRECT_IO_ALIGNMENT_BYTES} and hold at least two blocks \
                     (the rewritten tail block and one new block)",
                    self.write_buffer_bytes
                ),
            );
        }
        if self.write_queue_bytes_max < self.batch_bytes_max {
            return refuse(
                "write_queue_bytes_max",
                format!(
                    "{} is below batch_bytes_max {}",
                    self.write_queue_bytes_max, self.batch_bytes_max
                ),
            );
        }
        if self.read_chunk_bytes < DIRECT_IO_ALIGNMENT_BYTES
            || self.read_chunk_bytes % DIRECT_IO_ALIGNMENT_BYTES != 0
        {
            return refuse(
                "read_chunk_bytes",
                format!(
                    "{} must be a positive multiple of {DIRECT_IO_ALIGNMENT_BYTES}",
                    self.read_chunk_bytes
                ),
            );
        }
        if self.producers_per_partition_max == 0
            || self.producers_per_partition_max > PRODUCERS_PER_PARTITION_LIMIT
        {
            return refuse(
                "producers_per_partition_max",
                format!(
                    "{} must be in [1, {PRODUCERS_PER_PARTITION_LIMIT}]",
                    self.producers_per_partition_max
                ),
            );
        }
        if self.producer_expiry_ms == 0 {
            return refuse("producer_expiry_ms", "must be positive".into());
        }
        if self.recovery_point_interval_bytes == 0 {
            return refuse("recovery_point_interval_bytes", "must be positive".into());
        }
        if let Durability::GroupCommit {
            interval_bytes,
            interval_us,
        } = self.durability
        {
            if interval_bytes == 0 || interval_us == 0 {
                return refuse(
                    "durability",
                    "group commit intervals must be positive".into(),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_passes_its_own_check() {
        assert_eq!(LogConfig::default().check(), Ok(()));
    }

    #[test]
    fn check_refuses_segment_smaller_than_largest_batch() {
        let config = LogConfig {
            segment_bytes_max: 1024,
            batch_bytes_max: 4096,
            write_queue_bytes_max: 4096,
            ..LogConfig::default()
        };
        assert_eq!(
            config.check().map_err(|error| error.field),
            Err("segment_bytes_max")
        );
    }

    #[test]
    fn check_refuses_unaligned_write_buffer() {
        let config = LogConfig {
            write_buffer_bytes: 3 * DIRECT_IO_ALIGNMENT_BYTES + 1,
            ..LogConfig::default()
        };
        assert_eq!(
            config.check().map_err(|error| error.field),
            Err("write_buffer_bytes")
        );
    }

    #[test]
    fn check_refuses_a_partition_without_room_for_producers() {
        for producers_per_partition_max in [0, PRODUCERS_PER_PARTITION_LIMIT + 1] {
            let config = LogConfig {
                producers_per_partition_max,
                ..LogConfig::default()
            };
            assert_eq!(
                config.check().map_err(|error| error.field),
                Err("producers_per_partition_max")
            );
        }
    }

    #[test]
    fn check_refuses_zero_group_commit_interval() {
        let config = LogConfig {
            durability: Durability::GroupCommit {
                interval_bytes: 0,
                interval_us: 10,
            },
            ..LogConfig::default()
        };
        assert_eq!(
            config.check().map_err(|error| error.field),
            Err("durability")
        );
    }
}
