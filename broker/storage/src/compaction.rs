//! Log compaction (Kafka's log cleaner): one pass keeps the last record of every key in the
//! closed segments below the last stable offset, and swaps the cleaned segments in so that a
//! crash at any step leaves either the old segments or the new ones.
//!
//! A pass ([`PartitionLog::compact`]), under the log's maintenance turn (never beside
//! retention or delete-records):
//!
//! 1. Plan. The *cleanable* segments are the closed ones, oldest first, up to the first that
//!    reaches past the stable offset (the high watermark until transactions land their last
//!    stable offset) or holds a batch newer than `min_compaction_lag_ms`; the active segment
//!    never. The *clean offset* (the `cleaner-offset` checkpoint) splits them into the clean
//!    part, already compacted, and the dirty part after it. The pass runs when dirty bytes /
//!    cleanable bytes reach `min_cleanable_dirty_ratio`, or a dirty segment is older than
//!    `max_compaction_lag_ms` (its newest batch), or the caller forces it.
//! 2. Key map. The dirty records are read in offset order into a map of fixed-size key hashes
//!    (128 bits) to the offset of the key's last record, at most
//!    [`CompactionBudget::key_map_entries_max`] entries (the memory bound: about 48 bytes an
//!    entry). Records of a transaction wait beside the map (counted against the same limit)
//!    until its marker says commit (then they join the map) or abort (dropped, and the
//!    transaction's offsets are remembered as aborted). When the map is full the pass maps only
//!    the dirty prefix before the batch that did not fit, and the *map end* is that batch's
//!    offset; a transaction still undecided at the cleanable end ends the map before its first
//!    batch, so the clean part never holds a record of an undecided transaction.
//! 3. Rewrite. Every closed segment that starts below the map end is rewritten (a cleaned
//!    record is cleaned again when a newer value of its key arrives), in groups of consecutive
//!    segments whose sizes add up to at most `segment_bytes_max`, one new segment per group,
//!    named by the group's first base offset. A record is kept unless: a later record of its key
//!    is in the map; it has no key (Kafka drops those too); it belongs to an aborted
//!    transaction; or it is a tombstone (no value) that was already in the clean part and whose
//!    batch's newest timestamp is more than `delete_retention_ms` old (Kafka's delete horizon,
//!    measured on the batch timestamp). Kept records keep their offset, timestamp, key, value,
//!    headers and order; a batch keeps its base offset and offset range, producer fields and
//!    attributes (`spate_protocol::batch::retain`; Kafka batches recompressed with their codec).
//!    A transaction marker (control batch) is kept while a record or emptied batch of its
//!    transaction is (the rewrite goes in offset order and notes, per producer, whether it
//!    kept any since the producer's last marker); once none is, it goes like a tombstone. A
//!    batch left empty is kept as a header-only batch when it
//!    holds its producer's last batch (so the producer's next sequence still follows it after a
//!    restart); otherwise consecutive emptied batches become one header-only batch of no
//!    producer spanning their offsets, so offsets stay contiguous in every segment (what
//!    recovery, reads and indexes rely on) at 72 bytes per run of removed batches. The indexes
//!    of the new segment are built while it is written.
//! 4. Swap, per group (`FORMAT.md`, "Compaction", lists every crash case): write
//!    `<base>.log.cleaned` and `fdatasync` it; rename it to `<base>.log.swap` and sync the
//!    directory (the commit point: from here recovery completes the swap); remove the group's
//!    index files (offset, time, aborted transactions: every record of a transaction aborted
//!    by a marker in these segments is gone) and every other `.log` of the group, sync the
//!    directory; rename the swap
//!    file over `<base>.log`, sync the directory; write and sync the new index files. Recovery
//!    at open ([`finish_interrupted_swaps`]) deletes `.cleaned` files and completes `.swap`
//!    ones.
//! 5. The clean offset becomes the map end (checkpoint written durably).
//!
//! The producer state is not changed by compaction: offsets do not move, and every producer's
//! last batch stays (possibly empty).

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hasher};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use spate_protocol::batch::header::attributes;
use spate_protocol::batch::retain::{empty_batch, for_each_record, retain, Retained};
use spate_protocol::batch::{BatchHeader, BatchView, PayloadFormat};

use super::checkpoint::{read_checkpoint, write_checkpoint, CheckpointKind};
use super::config::LogConfig;
use super::error::StorageError;
use super::file::{align_down, align_up, FileSystem, IoBuffer, OpenMode, StorageFile};
use super::index::SegmentIndex;
use super::log::PartitionLog;
use super::segment::{
    index_batch, open_segment_files, segment_file_name, sync_index_files, BatchAt, IndexWrite,
    Segment, SegmentFileKind, SegmentFiles, SegmentPaths, SegmentReader, SegmentTail,
    SEGMENT_NAME_DIGITS,
};
use super::txn_index::txn_index_path;

/// Default of [`CompactionBudget::key_map_entries_max`]: 1 Mi keys, about 48 MiB of map.
pub const KEY_MAP_ENTRIES_MAX_DEFAULT: usize = 1 << 20;

/// At most this many aborted transactions are remembered by one pass; past it the pass maps
/// only the dirty records before the marker that would exceed it.
pub const ABORTED_TRANSACTIONS_MAX: usize = 100_000;

/// The pass reports its I/O to [`CompactionBudget::pace`] in steps of this many bytes.
const PACE_STEP_BYTES: u64 = 1 << 20;

/// Suffix of a cleaned segment being written: `<base>.log.cleaned`.
pub const CLEANED_SUFFIX: &str = "log.cleaned";
/// Suffix of a cleaned segment that is complete and durable, being swapped in.
pub const SWAP_SUFFIX: &str = "log.swap";

/// Kafka control record key types (`ControlRecordType`): version (i16) then type (i16).
const CONTROL_TYPE_ABORT: i16 = 0;
const CONTROL_TYPE_COMMIT: i16 = 1;

/// Called with the bytes a pass read or wrote since the last call, and awaited: the caller's
/// I/O budget (sleep to keep a rate) and CPU budget (yield to other tasks) in one hook.
pub type CompactionPace = Rc<dyn Fn(u64) -> Pin<Box<dyn Future<Output = ()>>>>;

/// What one pass may use.
#[derive(Clone)]
pub struct CompactionBudget {
    /// The key map's limit in entries (the pass's memory bound). See the module doc.
    pub key_map_entries_max: usize,
    /// Awaited after every [`PACE_STEP_BYTES`] of I/O and at the end; `None`: no pacing.
    pub pace: Option<CompactionPace>,
    /// Compact even below the dirty ratio and the lag rules' trigger (tests, operators).
    pub force: bool,
}

impl Default for CompactionBudget {
    fn default() -> Self {
        Self {
            key_map_entries_max: KEY_MAP_ENTRIES_MAX_DEFAULT,
            pace: None,
            force: false,
        }
    }
}

impl std::fmt::Debug for CompactionBudget {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CompactionBudget")
            .field("key_map_entries_max", &self.key_map_entries_max)
            .field("pace", &self.pace.is_some())
            .field("force", &self.force)
            .finish()
    }
}

/// Why a pass did nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompactionSkipped {
    /// The log's cleanup policy has no `compact`.
    NotCompacted,
    /// No closed segment below the stable offset and the minimum lag holds dirty records.
    NothingDirty,
    /// The dirty ratio is below `min_cleanable_dirty_ratio` and no dirty segment is older than
    /// `max_compaction_lag_ms`.
    NotDue {
        dirty_bytes: u64,
        cleanable_bytes: u64,
    },
    /// The first dirty batch alone holds more keys than the key map may.
    KeyMapTooSmall { key_map_entries_max: usize },
    /// The first dirty batch belongs to a transaction whose marker is not below the stable
    /// offset yet (a transaction index will tell sooner).
    TransactionUndecided,
}

/// What a pass did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompactionOutcome {
    pub skipped: Option<CompactionSkipped>,
    /// Closed segments replaced, and the segments that replaced them.
    pub segments_replaced: usize,
    pub segments_written: usize,
    /// Log bytes of the replaced segments, and of what replaced them.
    pub bytes_before: u64,
    pub bytes_after: u64,
    /// Log bytes read (key map and rewrite).
    pub bytes_read: u64,
    pub records_removed: u64,
    /// The clean offset after the pass.
    pub clean_offset: u64,
    /// The key map filled up: only a prefix of the dirty part was cleaned.
    pub map_full: bool,
}

/// How dirty a log is, from memory alone (see [`PartitionLog::compaction_dirt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionDirt {
    pub dirty_bytes: u64,
    pub cleanable_bytes: u64,
    /// Whether a pass would run now (policy, ratio, lags).
    pub due: bool,
}

/// A closed segment as the log lends it to a pass: its files stay readable while held.
pub(crate) struct SealedSegment<File> {
    pub base_offset: u64,
    pub paths: SegmentPaths,
    pub files: Rc<SegmentFiles<File>>,
    pub tail: SegmentTail,
    pub index: SegmentIndex,
}

/// What a pass reads from the log's state, under one borrow.
pub(crate) struct CompactionInput<File> {
    pub config: LogConfig,
    /// No record at or after it is compacted: the last stable offset.
    pub stable_offset: u64,
    pub sealed: Vec<SealedSegment<File>>,
    /// Each producer's last batch (its base offset), as the producer state knows it.
    pub producer_last_batches: HashMap<i64, u64>,
    pub state: CompactionState,
}

/// What compaction remembers of a log between passes, in memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CompactionState {
    /// The clean offset (`None`: not read from its checkpoint yet).
    pub clean_offset: Option<u64>,
    /// When the oldest tombstone the last pass kept passes `delete_retention_ms`: a pass is
    /// due then even with nothing dirty, to remove it.
    pub tombstone_sweep_ms: Option<i64>,
}

/// The cleanable segments and how dirty they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Plan {
    clean_offset: u64,
    /// Offset after the last cleanable segment (a segment boundary).
    cleanable_end: u64,
    dirty_bytes: u64,
    cleanable_bytes: u64,
    due: bool,
}

/// The cleanable segments and how dirty they are, from the closed segments' tails (base
/// offset, tail) in offset order.
fn plan(
    config: &LogConfig,
    stable_offset: u64,
    state: CompactionState,
    sealed: impl Iterator<Item = (u64, SegmentTail)>,
    clean_offset: u64,
    now_ms: i64,
) -> Plan {
    let mut sealed = sealed.peekable();
    let first_base = sealed.peek().map_or(0, |(base_offset, _)| *base_offset);
    let clean_offset = clean_offset.max(first_base);
    let min_lag_ms = i64::try_from(config.min_compaction_lag_ms).unwrap_or(i64::MAX);
    let max_lag_ms = i64::try_from(config.max_compaction_lag_ms).unwrap_or(i64::MAX);
    let mut plan = Plan {
        clean_offset,
        cleanable_end: first_base,
        dirty_bytes: 0,
        cleanable_bytes: 0,
        due: false,
    };
    let mut overdue = false;
    for (_, tail) in sealed {
        let too_young = min_lag_ms > 0 && tail.max_timestamp > now_ms - min_lag_ms;
        if tail.next_offset > stable_offset || too_young {
            break;
        }
        plan.cleanable_end = tail.next_offset;
        plan.cleanable_bytes += tail.end_position;
        if tail.next_offset > clean_offset {
            plan.dirty_bytes += tail.end_position;
            overdue |=
                max_lag_ms < i64::MAX && tail.max_timestamp <= now_ms.saturating_sub(max_lag_ms);
        }
    }
    plan.clean_offset = plan.clean_offset.min(plan.cleanable_end);
    let sweep = state
        .tombstone_sweep_ms
        .is_some_and(|sweep_ms| sweep_ms <= now_ms)
        && plan.cleanable_bytes > 0;
    let dirty = plan.dirty_bytes > 0
        && (overdue
            || config
                .min_cleanable_dirty_ratio
                .reached_by(plan.dirty_bytes, plan.cleanable_bytes));
    plan.due = config.cleanup_policy.compact && (dirty || sweep);
    plan
}

impl<File> SealedSegment<File> {
    fn size_bytes(&self) -> u64 {
        self.tail.end_position
    }
}

/// 128 bits of a key: two SipHash-1-3 runs with different prefixes. The map lives for one pass,
/// so the hash needs no stability across builds; a collision (odds about 2^-128 per pair of
/// keys) would drop the older record of one of the two keys, as an MD5 collision would in Kafka.
fn key_hash(key: &[u8]) -> u128 {
    let half = |prefix: u8| {
        let mut hasher = DefaultHasher::new();
        hasher.write_u8(prefix);
        hasher.write(key);
        hasher.finish()
    };
    (u128::from(half(0)) << 64) | u128::from(half(1))
}

/// The outcome of transactions found in the dirty part.
#[derive(Debug, Default)]
struct Transactions {
    /// Per producer: the aborted transactions' `[first offset, marker offset)`.
    aborted: HashMap<i64, Vec<(u64, u64)>>,
    aborted_count: usize,
    /// Per producer with an open transaction: its first offset and its records' keys so far.
    open: HashMap<i64, (u64, Vec<(u128, u64)>)>,
}

impl Transactions {
    fn is_aborted(&self, header: &BatchHeader) -> bool {
        header.attributes & attributes::TRANSACTIONAL != 0
            && self.aborted.get(&header.producer_id).is_some_and(|ranges| {
                ranges
                    .iter()
                    .any(|&(first, end)| first <= header.base_offset && header.base_offset < end)
            })
    }

    fn pending_keys(&self) -> usize {
        self.open.values().map(|(_, keys)| keys.len()).sum()
    }
}

/// The key map of a pass and where it ends.
struct KeyMap {
    offsets: HashMap<u128, u64>,
    /// Records from here on were not mapped.
    end_offset: u64,
    transactions: Transactions,
}

/// The transaction marker type of a control batch (`None`: not a marker this build reads).
fn marker_type(view: &BatchView<'_>) -> Option<i16> {
    if view.payload_format() != PayloadFormat::KafkaV2 {
        return None;
    }
    let mut found = None;
    for_each_record(view, |record| {
        if let Some(key) = record.key().filter(|key| key.len() >= 4) {
            found = Some(i16::from_be_bytes([key[2], key[3]]));
        }
    })
    .ok()?;
    found
}

/// Calls the pace hook once `pending` reached a step, or at the end when `flush`.
async fn pace(budget: &CompactionBudget, pending: &mut u64, flush: bool) {
    if *pending >= PACE_STEP_BYTES || (flush && *pending > 0) {
        if let Some(pace) = &budget.pace {
            pace(*pending).await;
        }
        *pending = 0;
    }
}

/// Reads the batches of a closed segment in order from a batch start, each whole and checked
/// (header, offset, CRC); one that fails its checks is corruption.
struct BatchScan<'a, File> {
    reader: SegmentReader<'a, File>,
    path: &'a Path,
    end_position: u64,
    batch_bytes_max: usize,
    position: u64,
    expected: u64,
    bytes_read: u64,
}

impl<'a, File: StorageFile> BatchScan<'a, File> {
    fn new(segment: &'a SealedSegment<File>, start: (u64, u64), config: &LogConfig) -> Self {
        Self {
            reader: SegmentReader::new(
                &segment.files.log,
                &segment.paths.log,
                segment.tail.end_position,
                config.read_chunk_bytes,
            ),
            path: &segment.paths.log,
            end_position: segment.tail.end_position,
            batch_bytes_max: config.batch_bytes_max,
            position: start.0,
            expected: start.1,
            bytes_read: 0,
        }
    }

    async fn next(&mut self) -> Result<Option<(BatchHeader, Bytes)>, StorageError> {
        if self.position >= self.end_position {
            return Ok(None);
        }
        match self
            .reader
            .batch_at(self.position, self.expected, self.batch_bytes_max, true)
            .await?
        {
            BatchAt::Batch { header, bytes } => {
                self.position += u64::from(header.batch_length);
                self.bytes_read += u64::from(header.batch_length);
                self.expected = header.next_offset();
                Ok(Some((header, bytes)))
            }
            BatchAt::End => Ok(None),
            BatchAt::Invalid { reason } => {
                Err(StorageError::corrupt(self.path, self.position, reason))
            }
        }
    }
}

/// Step 2: the key map of the dirty records in `[plan.clean_offset, plan.cleanable_end)`.
async fn build_key_map<File: StorageFile>(
    input: &CompactionInput<File>,
    plan: &Plan,
    budget: &CompactionBudget,
    outcome: &mut CompactionOutcome,
) -> Result<KeyMap, StorageError> {
    let mut map = KeyMap {
        offsets: HashMap::new(),
        end_offset: plan.cleanable_end,
        transactions: Transactions::default(),
    };
    let mut full = false;
    let mut paced = 0;
    let dirty = input.sealed.iter().filter(|segment| {
        segment.tail.next_offset > plan.clean_offset
            && segment.tail.next_offset <= plan.cleanable_end
    });
    for segment in dirty {
        let start = match segment.index.lookup_offset(
            (plan.clean_offset.saturating_sub(segment.base_offset)).min(u64::from(u32::MAX)) as u32,
        ) {
            Some(entry) => (
                u64::from(entry.position),
                segment.base_offset + u64::from(entry.relative_offset),
            ),
            None => (0, segment.base_offset),
        };
        let mut scan = BatchScan::new(segment, start, &input.config);
        while let Some((header, bytes)) = scan.next().await? {
            if header.next_offset() > plan.clean_offset {
                map_batch(
                    &mut map,
                    &mut full,
                    &header,
                    &bytes,
                    budget,
                    &segment.paths.log,
                )?;
            }
            paced += u64::from(header.batch_length);
            pace(budget, &mut paced, false).await;
        }
        outcome.bytes_read += scan.bytes_read;
        if full && map.transactions.open.is_empty() {
            break;
        }
    }
    outcome.map_full = full;
    // A transaction still open at the cleanable end: its outcome is unknown, so nothing from
    // its first batch on may count as clean.
    if let Some(first) = map
        .transactions
        .open
        .values()
        .map(|(first, _)| *first)
        .min()
    {
        map.end_offset = map.end_offset.min(first);
    }
    Ok(map)
}

/// Adds one dirty batch to the map (or its transaction's pending keys).
fn map_batch(
    map: &mut KeyMap,
    full: &mut bool,
    header: &BatchHeader,
    bytes: &Bytes,
    budget: &CompactionBudget,
    path: &Path,
) -> Result<(), StorageError> {
    let corrupt = |error: spate_protocol::error::BatchError| {
        StorageError::corrupt(path, header.base_offset, error.to_string())
    };
    let view = BatchView::validate(bytes, usize::MAX).map_err(corrupt)?;
    let transactions = &mut map.transactions;
    if header.attributes & attributes::CONTROL != 0 {
        let Some((first, keys)) = transactions.open.remove(&header.producer_id) else {
            return Ok(());
        };
        match marker_type(&view) {
            Some(CONTROL_TYPE_COMMIT) => {
                for (hash, offset) in keys {
                    let entry = map.offsets.entry(hash).or_insert(offset);
                    *entry = (*entry).max(offset);
                }
            }
            Some(CONTROL_TYPE_ABORT) => {
                if transactions.aborted_count >= ABORTED_TRANSACTIONS_MAX && !*full {
                    *full = true;
                    map.end_offset = map.end_offset.min(header.base_offset);
                }
                transactions
                    .aborted
                    .entry(header.producer_id)
                    .or_default()
                    .push((first, header.base_offset));
                transactions.aborted_count += 1;
            }
            // Not a marker this build reads: leave the transaction open (its records stay).
            _ => {
                transactions.open.insert(header.producer_id, (first, keys));
            }
        }
        return Ok(());
    }
    let transactional =
        header.attributes & attributes::TRANSACTIONAL != 0 && header.producer_id >= 0;
    if transactional {
        transactions
            .open
            .entry(header.producer_id)
            .or_insert_with(|| (header.base_offset, Vec::new()));
    }
    if *full {
        return Ok(());
    }
    let mut keys = Vec::with_capacity(header.record_count as usize);
    let readable = for_each_record(&view, |record| {
        if let Some(key) = record.key() {
            keys.push((key_hash(key), record.offset()));
        }
    });
    if readable.is_err() {
        // Records that do not parse (the broker checks only header and CRC at append) are
        // kept as they are and map nothing; `decide` keeps the batch whole.
        return Ok(());
    }
    let pending = transactions.pending_keys();
    let new_keys = keys
        .iter()
        .filter(|(hash, _)| !map.offsets.contains_key(hash))
        .count();
    if map.offsets.len() + pending + new_keys > budget.key_map_entries_max {
        *full = true;
        map.end_offset = map.end_offset.min(header.base_offset);
        return Ok(());
    }
    if transactional {
        let (_, pending) = transactions
            .open
            .get_mut(&header.producer_id)
            .expect("inserted above");
        pending.extend(keys);
    } else {
        for (hash, offset) in keys {
            map.offsets.insert(hash, offset);
        }
    }
    Ok(())
}

/// Writes a new segment file front to back in aligned blocks, building its indexes.
struct CleanedWriter<File> {
    file: File,
    path: PathBuf,
    base_offset: u64,
    /// Bytes not yet written: the partial last block and what follows it.
    pending: Vec<u8>,
    /// File position of `pending[0]` (block-aligned).
    written: u64,
    index: SegmentIndex,
    tail: SegmentTail,
    index_interval_bytes: u32,
    write_chunk_bytes: usize,
}

impl<File: StorageFile> CleanedWriter<File> {
    fn push(&mut self, batch: &[u8]) {
        let header = BatchHeader::decode(batch).expect("a batch the pass built or checked");
        debug_assert_eq!(header.base_offset, self.tail.next_offset, "contiguous");
        index_batch(
            &mut self.index,
            &mut self.tail,
            self.base_offset,
            &header,
            self.index_interval_bytes,
        );
        self.pending.extend_from_slice(batch);
    }

    /// Header-only batches of no producer over `[start, end)` (a run of removed batches).
    fn push_gap(&mut self, (start, end, leader_epoch): (u64, u64, u32)) {
        let mut from = start;
        while from < end {
            let count = (end - from).min(u64::from(u32::MAX)) as u32;
            self.push(&empty_batch(from, count, leader_epoch, None, -1));
            from += u64::from(count);
        }
    }

    async fn write_blocks(&mut self, all: bool) -> Result<u64, StorageError> {
        let length = if all {
            align_up(self.pending.len() as u64) as usize
        } else {
            align_down(self.pending.len() as u64) as usize
        };
        if length == 0 {
            return Ok(0);
        }
        let mut buffer = self.file.allocate_buffer(length);
        let target = buffer.as_bytes_mut();
        let copied = length.min(self.pending.len());
        target[..copied].copy_from_slice(&self.pending[..copied]);
        target[copied..].fill(0);
        let written = self
            .file
            .write_at(self.written, buffer)
            .await
            .map_err(|error| {
                StorageError::io(
                    "writing cleaned segment",
                    &self.path,
                    Some(self.written),
                    error,
                )
            })?;
        if written < copied {
            return Err(StorageError::io(
                "writing cleaned segment",
                &self.path,
                Some(self.written),
                std::io::Error::new(std::io::ErrorKind::WriteZero, "short write"),
            ));
        }
        let whole = align_down(copied as u64) as usize;
        self.pending.drain(..whole);
        self.written += whole as u64;
        Ok(copied as u64)
    }

    async fn write_if_due(&mut self) -> Result<u64, StorageError> {
        if self.pending.len() >= self.write_chunk_bytes {
            return self.write_blocks(false).await;
        }
        Ok(0)
    }

    /// Writes the rest, cuts the file to its exact length and syncs it.
    async fn finish(mut self) -> Result<(SegmentIndex, SegmentTail, u64), StorageError> {
        let written = self.write_blocks(true).await?;
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |error| StorageError::io(op, &path, None, error)
        };
        self.file
            .truncate(self.tail.end_position)
            .await
            .map_err(io("cutting cleaned segment", &self.path))?;
        self.file
            .sync_data()
            .await
            .map_err(io("syncing cleaned segment", &self.path))?;
        Ok((self.index, self.tail, written))
    }
}

/// `<base>.log.cleaned` or `<base>.log.swap` in `directory`.
pub fn compaction_file_path(directory: &Path, base_offset: u64, suffix: &str) -> PathBuf {
    let stem = segment_file_name(base_offset, SegmentFileKind::Log);
    let stem = stem.strip_suffix(".log").expect("a log file name");
    directory.join(format!("{stem}.{suffix}"))
}

/// The base offset of a `<base>.<suffix>` name.
fn parse_compaction_file_name(name: &str, suffix: &str) -> Option<u64> {
    let stem = name.strip_suffix(suffix)?.strip_suffix('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

/// What the rewrite of one group produced.
struct Rewritten {
    index: SegmentIndex,
    tail: SegmentTail,
    changed: bool,
    records_removed: u64,
    cleaned_path: PathBuf,
}

/// Decides the fate of each record: see the module doc, step 3.
struct Rules<'a> {
    map: &'a KeyMap,
    clean_offset: u64,
    tombstone_horizon_ms: i64,
    delete_retention_ms: i64,
    /// The earliest time a tombstone kept by this pass may go (see [`CompactionState`]).
    tombstone_sweep_ms: std::cell::Cell<Option<i64>>,
    /// Per producer: whether the rewrite kept anything (a record, or an emptied batch) of its
    /// transaction since its last marker. Batches are decided in offset order, so at a marker
    /// this says whether the transaction it closes still has data in the log.
    transaction_kept: std::cell::RefCell<HashMap<i64, bool>>,
    producer_last_batches: &'a HashMap<i64, u64>,
}

impl Rules<'_> {
    /// Kafka's rule for a transaction marker: it stays while any record (or emptied batch) of
    /// its transaction does; once none does, it is removed like a tombstone: when it was already
    /// in the clean part and its batch is older than `delete_retention_ms`.
    fn decide_marker(&self, header: &BatchHeader) -> Decision {
        let kept = self
            .transaction_kept
            .borrow_mut()
            .remove(&header.producer_id)
            .unwrap_or(false);
        if kept {
            return Decision::Keep(None);
        }
        if header.base_offset < self.clean_offset
            && header.max_timestamp <= self.tombstone_horizon_ms
        {
            return Decision::Remove;
        }
        self.note_tombstone(header);
        Decision::Keep(None)
    }

    /// Remembers when a tombstone (or marker) kept by this pass may go.
    fn note_tombstone(&self, header: &BatchHeader) {
        let sweep_ms = header
            .max_timestamp
            .saturating_add(self.delete_retention_ms)
            .saturating_add(1);
        let earliest = self
            .tombstone_sweep_ms
            .get()
            .map_or(sweep_ms, |ms| ms.min(sweep_ms));
        self.tombstone_sweep_ms.set(Some(earliest));
    }

    fn keep(&self, header: &BatchHeader, record: &spate_protocol::batch::RecordView<'_>) -> bool {
        let Some(key) = record.key() else {
            return false;
        };
        if self
            .map
            .offsets
            .get(&key_hash(key))
            .is_some_and(|&latest| record.offset() < latest)
        {
            return false;
        }
        if record.value().is_some() {
            return true;
        }
        if record.offset() < self.clean_offset && header.max_timestamp <= self.tombstone_horizon_ms
        {
            return false;
        }
        self.note_tombstone(header);
        true
    }
}

/// Step 3 for one group: writes `<base>.log.cleaned` with what the group keeps.
async fn rewrite_group<F: FileSystem>(
    fs: &F,
    directory: &Path,
    group: &[&SealedSegment<F::File>],
    config: &LogConfig,
    rules: &Rules<'_>,
    budget: &CompactionBudget,
    outcome: &mut CompactionOutcome,
) -> Result<Rewritten, StorageError> {
    let base_offset = group[0].base_offset;
    let path = compaction_file_path(directory, base_offset, CLEANED_SUFFIX);
    let file = fs
        .open_file(&path, OpenMode::CreateIfMissing)
        .await
        .map_err(|error| StorageError::io("creating cleaned segment", &path, None, error))?;
    file.truncate(0)
        .await
        .map_err(|error| StorageError::io("emptying cleaned segment", &path, Some(0), error))?;
    let mut writer = CleanedWriter {
        file,
        path: path.clone(),
        base_offset,
        pending: Vec::new(),
        written: 0,
        index: SegmentIndex::new(),
        tail: SegmentTail::empty(base_offset),
        index_interval_bytes: config.index_interval_bytes,
        write_chunk_bytes: config.write_buffer_bytes.max(1 << 16),
    };
    let mut changed = false;
    let mut records_removed = 0u64;
    let mut paced = 0u64;
    for segment in group {
        let mut scan = BatchScan::new(segment, (0, segment.base_offset), config);
        // A run of removed batches: its first offset, the offset after it, a leader epoch.
        let mut gap: Option<(u64, u64, u32)> = None;
        while let Some((header, bytes)) = scan.next().await? {
            match decide(&header, &bytes, rules, &segment.paths.log)? {
                Decision::Keep(batch) => {
                    if let Some(gap) = gap.take() {
                        writer.push_gap(gap);
                    }
                    match batch {
                        Some(batch) => {
                            changed = true;
                            let kept = BatchHeader::decode(&batch).expect("built here");
                            records_removed += u64::from(header.record_count - kept.record_count);
                            writer.push(&batch);
                        }
                        None => writer.push(&bytes),
                    }
                }
                Decision::Remove => {
                    changed = true;
                    records_removed += u64::from(header.record_count);
                    gap = Some(match gap {
                        Some((start, _, epoch)) => (start, header.next_offset(), epoch),
                        None => (
                            header.base_offset,
                            header.next_offset(),
                            header.leader_epoch,
                        ),
                    });
                }
            }
            paced += u64::from(header.batch_length) + writer.write_if_due().await?;
            pace(budget, &mut paced, false).await;
        }
        if let Some(gap) = gap.take() {
            writer.push_gap(gap);
        }
        outcome.bytes_read += scan.bytes_read;
    }
    let (index, tail, written) = writer.finish().await?;
    paced += written;
    pace(budget, &mut paced, true).await;
    Ok(Rewritten {
        index,
        tail,
        changed,
        records_removed,
        cleaned_path: path,
    })
}

enum Decision {
    /// Keep the batch: as stored (`None`) or rewritten (possibly as an empty batch).
    Keep(Option<BytesMut>),
    /// Nothing of it stays: its offsets join the run of removed batches.
    Remove,
}

fn decide(
    header: &BatchHeader,
    bytes: &Bytes,
    rules: &Rules<'_>,
    path: &Path,
) -> Result<Decision, StorageError> {
    if header.attributes & attributes::CONTROL != 0 {
        return Ok(rules.decide_marker(header));
    }
    let decision = decide_records(header, bytes, rules, path);
    if header.attributes & attributes::TRANSACTIONAL != 0
        && header.producer_id >= 0
        && matches!(decision, Decision::Keep(_))
    {
        rules
            .transaction_kept
            .borrow_mut()
            .insert(header.producer_id, true);
    }
    Ok(decision)
}

fn decide_records(header: &BatchHeader, bytes: &Bytes, rules: &Rules<'_>, path: &Path) -> Decision {
    let retained = if rules.map.transactions.is_aborted(header) {
        Retained::Nothing
    } else {
        match retain(bytes, |record| rules.keep(header, record)) {
            Ok(retained) => retained,
            Err(error) => {
                tracing::warn!(%error, path = %path.display(), base_offset = header.base_offset,
                    "compaction keeps a batch whose records do not parse as it is");
                return Decision::Keep(None);
            }
        }
    };
    match retained {
        Retained::Unchanged => Decision::Keep(None),
        Retained::Rewritten(batch) => Decision::Keep(Some(batch)),
        Retained::Nothing
            if header.producer_id >= 0
                && rules.producer_last_batches.get(&header.producer_id)
                    == Some(&header.base_offset) =>
        {
            Decision::Keep(Some(empty_batch(
                header.base_offset,
                header.offset_count,
                header.leader_epoch,
                Some(header),
                header.max_timestamp,
            )))
        }
        Retained::Nothing => Decision::Remove,
    }
}

/// Step 4 up to its commit point: the cleaned file becomes `<base>.log.swap`, durably.
async fn commit_swap<F: FileSystem>(
    fs: &F,
    directory: &Path,
    group: &[&SealedSegment<F::File>],
    cleaned_path: &Path,
) -> Result<(), StorageError> {
    let base_offset = group[0].base_offset;
    let swap_path = compaction_file_path(directory, base_offset, SWAP_SUFFIX);
    let sync_directory = || async {
        fs.sync_directory(directory).await.map_err(|error| {
            StorageError::io("syncing partition directory", directory, None, error)
        })
    };
    fs.rename(cleaned_path, &swap_path)
        .await
        .map_err(|error| StorageError::io("renaming cleaned segment", &swap_path, None, error))?;
    sync_directory().await?;
    Ok(())
}

/// Step 4 after the commit point: the old files go and the swap file becomes `<base>.log`.
async fn finish_swap<F: FileSystem>(
    fs: &F,
    directory: &Path,
    group: &[&SealedSegment<F::File>],
) -> Result<(), StorageError> {
    let base_offset = group[0].base_offset;
    let swap_path = compaction_file_path(directory, base_offset, SWAP_SUFFIX);
    let sync_directory = || async {
        fs.sync_directory(directory).await.map_err(|error| {
            StorageError::io("syncing partition directory", directory, None, error)
        })
    };
    for segment in group {
        if segment.base_offset != base_offset {
            remove_file(fs, &segment.paths.log).await?;
        }
        remove_file(fs, &segment.paths.offset_index).await?;
        remove_file(fs, &segment.paths.time_index).await?;
        remove_file(fs, &txn_index_path(directory, segment.base_offset)).await?;
    }
    sync_directory().await?;
    let log_path = &group[0].paths.log;
    fs.rename(&swap_path, log_path)
        .await
        .map_err(|error| StorageError::io("renaming swapped segment", log_path, None, error))?;
    sync_directory().await
}

async fn remove_file<F: FileSystem>(fs: &F, path: &Path) -> Result<(), StorageError> {
    match fs.remove_file(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io(
            "removing replaced segment file",
            path,
            None,
            error,
        )),
    }
}

/// Opens the swapped-in segment and writes its index files (synced).
async fn open_swapped<F: FileSystem>(
    fs: &F,
    directory: &Path,
    base_offset: u64,
    index: SegmentIndex,
    tail: SegmentTail,
    now_ms: i64,
) -> Result<Segment<F::File>, StorageError> {
    let paths = SegmentPaths::new(directory, base_offset);
    let files = open_segment_files(fs, &paths, OpenMode::Existing).await?;
    if let Some(write) = IndexWrite::plan(&index, 0, index.len()) {
        write.execute(&files, &paths).await?;
    }
    sync_index_files(&files, &paths).await?;
    let persisted_entries = index.len();
    Ok(Segment {
        base_offset,
        paths,
        files: Rc::new(files),
        index,
        persisted_entries,
        tail,
        opened_ms: now_ms,
    })
}

/// Groups consecutive segments (from the oldest) that start below `end_offset` so that each
/// group's bytes add up to at most `segment_bytes_max` and its offsets fit relative `u32`s.
fn groups<File>(
    sealed: &[SealedSegment<File>],
    end_offset: u64,
    segment_bytes_max: u64,
) -> Vec<Vec<&SealedSegment<File>>> {
    let mut groups: Vec<Vec<&SealedSegment<File>>> = Vec::new();
    let mut bytes = 0u64;
    for segment in sealed
        .iter()
        .take_while(|segment| segment.base_offset < end_offset)
    {
        let fits = groups.last().is_some_and(|group| {
            bytes + segment.size_bytes() <= segment_bytes_max
                && segment.tail.next_offset - group[0].base_offset <= u64::from(u32::MAX)
        });
        if fits {
            groups.last_mut().expect("checked").push(segment);
            bytes += segment.size_bytes();
        } else {
            groups.push(vec![segment]);
            bytes = segment.size_bytes();
        }
    }
    groups
}

impl<F: FileSystem> PartitionLog<F> {
    /// How dirty the log is and whether a pass would run now, from memory alone (cheap: no
    /// I/O), for a background task to pick what to compact. Before the first pass of this
    /// process the whole cleanable part counts as dirty.
    pub fn compaction_dirt(&self) -> CompactionDirt {
        let now_ms = self.clock_now_ms();
        let plan = self.with_compaction_view(|config, stable_offset, state, sealed| {
            plan(
                config,
                stable_offset,
                state,
                sealed,
                state.clean_offset.unwrap_or(0),
                now_ms,
            )
        });
        CompactionDirt {
            dirty_bytes: plan.dirty_bytes,
            cleanable_bytes: plan.cleanable_bytes,
            due: plan.due,
        }
    }

    /// One compaction pass (see the module doc): keeps the last record of every key in the
    /// closed segments below the stable offset, swaps the cleaned segments in crash-safely,
    /// and moves the clean offset. Runs in the log's maintenance turn. An error leaves the log
    /// as it was or with some groups swapped (each whole); a `.cleaned` file left behind is
    /// removed by the next pass or open.
    pub async fn compact(
        &self,
        budget: &CompactionBudget,
    ) -> Result<CompactionOutcome, StorageError> {
        assert!(
            budget.key_map_entries_max > 0,
            "a key map needs room for a key"
        );
        let _maintenance = self.maintenance_turn().await;
        let now_ms = self.clock_now_ms();
        let input = self.compaction_input();
        let fs = self.file_system_ref();
        let directory = self.directory().to_path_buf();
        let mut state = input.state;
        let clean_offset = match state.clean_offset {
            Some(offset) => offset,
            None => {
                // Past the log end it belongs to offsets lost and handed out again (an
                // operator accepted a loss): nothing after the log start is known clean.
                let offset = read_clean_offset(fs, &directory).await;
                let offset = if offset > self.next_offset() {
                    0
                } else {
                    offset
                };
                state.clean_offset = Some(offset);
                self.set_compaction_state(state);
                offset
            }
        };
        let plan = plan(
            &input.config,
            input.stable_offset,
            state,
            input
                .sealed
                .iter()
                .map(|segment| (segment.base_offset, segment.tail)),
            clean_offset,
            now_ms,
        );
        let mut outcome = CompactionOutcome {
            clean_offset: plan.clean_offset,
            ..CompactionOutcome::default()
        };
        let skipped = if !input.config.cleanup_policy.compact {
            Some(CompactionSkipped::NotCompacted)
        } else if plan.cleanable_bytes == 0 || (plan.dirty_bytes == 0 && !plan.due && !budget.force)
        {
            Some(CompactionSkipped::NothingDirty)
        } else if !plan.due && !budget.force {
            Some(CompactionSkipped::NotDue {
                dirty_bytes: plan.dirty_bytes,
                cleanable_bytes: plan.cleanable_bytes,
            })
        } else {
            None
        };
        if skipped.is_some() {
            outcome.skipped = skipped;
            return Ok(outcome);
        }
        let map = build_key_map(&input, &plan, budget, &mut outcome).await?;
        if plan.dirty_bytes > 0 && map.end_offset <= plan.clean_offset {
            outcome.skipped = Some(if outcome.map_full {
                CompactionSkipped::KeyMapTooSmall {
                    key_map_entries_max: budget.key_map_entries_max,
                }
            } else {
                CompactionSkipped::TransactionUndecided
            });
            return Ok(outcome);
        }
        let delete_retention_ms =
            i64::try_from(input.config.delete_retention_ms).unwrap_or(i64::MAX);
        let rules = Rules {
            map: &map,
            clean_offset: plan.clean_offset,
            tombstone_horizon_ms: now_ms.saturating_sub(delete_retention_ms),
            delete_retention_ms,
            tombstone_sweep_ms: std::cell::Cell::new(None),
            transaction_kept: std::cell::RefCell::new(HashMap::new()),
            producer_last_batches: &input.producer_last_batches,
        };
        for group in groups(
            &input.sealed,
            map.end_offset,
            input.config.segment_bytes_max,
        ) {
            let rewritten = rewrite_group(
                fs,
                &directory,
                &group,
                &input.config,
                &rules,
                budget,
                &mut outcome,
            )
            .await?;
            // A group of one segment that kept everything is left as it is; several segments
            // are merged even so (fewer, fuller segments).
            if !rewritten.changed && group.len() == 1 {
                remove_file(fs, &rewritten.cleaned_path).await?;
                continue;
            }
            assert_eq!(
                rewritten.tail.next_offset,
                group.last().expect("groups are not empty").tail.next_offset,
                "a cleaned segment spans the offsets of the segments it replaces"
            );
            commit_swap(fs, &directory, &group, &rewritten.cleaned_path).await?;
            let base_offset = group[0].base_offset;
            let bytes_after = rewritten.tail.end_position;
            let finished = match finish_swap(fs, &directory, &group).await {
                Ok(()) => {
                    open_swapped(
                        fs,
                        &directory,
                        base_offset,
                        rewritten.index,
                        rewritten.tail,
                        now_ms,
                    )
                    .await
                }
                Err(error) => Err(error),
            };
            let segment = match finished {
                Ok(segment) => segment,
                Err(error) => {
                    // Past the commit point the disk holds the swap (the next open completes
                    // it) while this process still reads the old segments, whose files may be
                    // gone or renamed: the partition must be reopened, so it is lost until then.
                    tracing::error!(%error, directory = %directory.display(), base_offset,
                        "a compaction swap failed after its commit point; the partition must be \
                         reopened (the open completes the swap)");
                    self.mark_lost(error.clone());
                    return Err(error);
                }
            };
            let replaced: Vec<u64> = group.iter().map(|segment| segment.base_offset).collect();
            self.install_compacted(&replaced, segment);
            outcome.segments_replaced += group.len();
            outcome.segments_written += 1;
            outcome.bytes_before += group
                .iter()
                .map(|segment| segment.size_bytes())
                .sum::<u64>();
            outcome.bytes_after += bytes_after;
            outcome.records_removed += rewritten.records_removed;
        }
        write_checkpoint(
            fs,
            &directory,
            CheckpointKind::CleanerOffset,
            map.end_offset,
        )
        .await?;
        self.set_compaction_state(CompactionState {
            clean_offset: Some(map.end_offset),
            tombstone_sweep_ms: rules.tombstone_sweep_ms.get(),
        });
        outcome.clean_offset = map.end_offset;
        Ok(outcome)
    }
}

/// The checkpointed clean offset; 0 when there is none or it does not read back (it is only a
/// hint: a lower clean offset costs a longer pass and keeps tombstones one pass longer).
async fn read_clean_offset<F: FileSystem>(fs: &F, directory: &Path) -> u64 {
    match read_checkpoint(fs, directory, CheckpointKind::CleanerOffset).await {
        Ok(offset) => offset.unwrap_or(0),
        Err(error) => {
            tracing::warn!(%error, directory = %directory.display(),
                "cleaner offset checkpoint unreadable; compacting from the log start");
            0
        }
    }
}

/// Recovery at open, before segments are listed (FORMAT.md, "Compaction"): removes every
/// `<base>.log.cleaned` (a pass interrupted before its commit point: the old segments are
/// whole), and completes every `<base>.log.swap` (complete and durable before it got that
/// name): the segment files it replaces (every segment starting in its offset range, and the
/// index files of its own base) are removed, then it is renamed to `<base>.log`, each step
/// followed by a directory sync. Returns the directory's names afterwards.
pub async fn finish_interrupted_swaps<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: Vec<String>,
    config: &LogConfig,
) -> Result<Vec<String>, StorageError> {
    let cleaned: Vec<&String> = names
        .iter()
        .filter(|name| parse_compaction_file_name(name, CLEANED_SUFFIX).is_some())
        .collect();
    let swaps: Vec<u64> = names
        .iter()
        .filter_map(|name| parse_compaction_file_name(name, SWAP_SUFFIX))
        .collect();
    if cleaned.is_empty() && swaps.is_empty() {
        return Ok(names);
    }
    for name in &cleaned {
        remove_file(fs, &directory.join(name)).await?;
    }
    let segment_bases: Vec<u64> = names
        .iter()
        .filter_map(|name| super::segment::parse_segment_file_name(name))
        .map(|(base_offset, _)| base_offset)
        .collect();
    let sync_directory = || async {
        fs.sync_directory(directory).await.map_err(|error| {
            StorageError::io("syncing partition directory", directory, None, error)
        })
    };
    for base_offset in swaps {
        let swap_path = compaction_file_path(directory, base_offset, SWAP_SUFFIX);
        let end_offset = swap_end_offset(fs, &swap_path, base_offset, config).await?;
        tracing::warn!(directory = %directory.display(), base_offset, end_offset,
            "completing a compaction swap interrupted by a stop");
        for &other in &segment_bases {
            if other >= base_offset && other < end_offset {
                let paths = SegmentPaths::new(directory, other);
                if other != base_offset {
                    remove_file(fs, &paths.log).await?;
                }
                remove_file(fs, &paths.offset_index).await?;
                remove_file(fs, &paths.time_index).await?;
                remove_file(fs, &txn_index_path(directory, other)).await?;
            }
        }
        sync_directory().await?;
        let log_path = SegmentPaths::new(directory, base_offset).log;
        fs.rename(&swap_path, &log_path).await.map_err(|error| {
            StorageError::io("renaming swapped segment", &log_path, None, error)
        })?;
    }
    sync_directory().await?;
    fs.list_directory(directory)
        .await
        .map_err(|error| StorageError::io("listing partition directory", directory, None, error))
}

/// The offset after the last batch of a swap file, read from its batch headers. The file was
/// synced whole before it got its name, so anything but whole batches to its end is corruption.
async fn swap_end_offset<F: FileSystem>(
    fs: &F,
    path: &Path,
    base_offset: u64,
    config: &LogConfig,
) -> Result<u64, StorageError> {
    let file = fs
        .open_file(path, OpenMode::Existing)
        .await
        .map_err(|error| StorageError::io("opening swap segment", path, None, error))?;
    let size = file
        .size()
        .await
        .map_err(|error| StorageError::io("sizing swap segment", path, None, error))?;
    let mut reader = SegmentReader::new(&file, path, size, config.read_chunk_bytes);
    let (mut position, mut expected) = (0u64, base_offset);
    while position < size {
        match reader
            .batch_at(position, expected, config.batch_bytes_max, false)
            .await?
        {
            BatchAt::Batch { header, .. } => {
                position += u64::from(header.batch_length);
                expected = header.next_offset();
            }
            BatchAt::End | BatchAt::Invalid { .. } => {
                return Err(StorageError::corrupt(
                    path,
                    position,
                    "a compaction swap file that is not whole batches to its end",
                ))
            }
        }
    }
    Ok(expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compaction_file_names_carry_the_base_offset() {
        let path = compaction_file_path(Path::new("/p"), 42, SWAP_SUFFIX);
        assert_eq!(path, Path::new("/p/00000000000000000042.log.swap"));
        assert_eq!(
            parse_compaction_file_name("00000000000000000042.log.swap", SWAP_SUFFIX),
            Some(42)
        );
        assert_eq!(
            parse_compaction_file_name("00000000000000000042.log", SWAP_SUFFIX),
            None
        );
        assert_eq!(
            parse_compaction_file_name("00000000000000000042.log.cleaned", SWAP_SUFFIX),
            None
        );
        // Not a segment file either: recovery never mistakes them for segments.
        assert_eq!(
            super::super::segment::parse_segment_file_name("00000000000000000042.log.swap"),
            None
        );
    }

    #[test]
    fn key_hashes_differ_per_key_and_repeat_per_key() {
        assert_eq!(key_hash(b"a"), key_hash(b"a"));
        assert_ne!(key_hash(b"a"), key_hash(b"b"));
        assert_ne!(key_hash(b""), key_hash(b"\0"));
    }
}
