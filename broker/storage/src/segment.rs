//! One segment: a log file of batches plus its offset and time index files, named by the base
//! offset. This file holds the naming rule, the in-memory segment state, batch-by-batch reading
//! of a log file (with header, offset-continuity and CRC checks), and index file writes.
//!
//! It does not decide when to roll, sync or delete (that is `log`), nor how to recover after a
//! crash (`recovery`).

use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;
use spate_protocol::batch::header::check_crc;
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};

use super::error::StorageError;
use super::file::{align_down, align_up, FileSystem, IoBuffer, OpenMode, StorageFile};
use super::index::{
    OffsetIndexEntry, SegmentIndex, TimeIndexEntry, OFFSET_INDEX_ENTRY_BYTES,
    TIME_INDEX_ENTRY_BYTES,
};

pub const LOG_SUFFIX: &str = "log";
pub const OFFSET_INDEX_SUFFIX: &str = "index";
pub const TIME_INDEX_SUFFIX: &str = "timeindex";
/// Base offsets are written as this many decimal digits, zero-padded (as Kafka does), so that
/// lexical order is offset order.
pub const SEGMENT_NAME_DIGITS: usize = 20;

/// Which of a segment's three files a name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentFileKind {
    Log,
    OffsetIndex,
    TimeIndex,
}

impl SegmentFileKind {
    fn suffix(self) -> &'static str {
        match self {
            SegmentFileKind::Log => LOG_SUFFIX,
            SegmentFileKind::OffsetIndex => OFFSET_INDEX_SUFFIX,
            SegmentFileKind::TimeIndex => TIME_INDEX_SUFFIX,
        }
    }
}

/// `00000000000000000042.log` for base offset 42.
pub fn segment_file_name(base_offset: u64, kind: SegmentFileKind) -> String {
    format!(
        "{base_offset:0width$}.{}",
        kind.suffix(),
        width = SEGMENT_NAME_DIGITS
    )
}

/// The base offset and kind of a segment file name; `None` for any other name.
pub fn parse_segment_file_name(name: &str) -> Option<(u64, SegmentFileKind)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let kind = match suffix {
        LOG_SUFFIX => SegmentFileKind::Log,
        OFFSET_INDEX_SUFFIX => SegmentFileKind::OffsetIndex,
        TIME_INDEX_SUFFIX => SegmentFileKind::TimeIndex,
        _ => return None,
    };
    Some((stem.parse().ok()?, kind))
}

/// The paths of one segment's files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentPaths {
    pub log: PathBuf,
    pub offset_index: PathBuf,
    pub time_index: PathBuf,
}

impl SegmentPaths {
    pub fn new(directory: &Path, base_offset: u64) -> Self {
        Self {
            log: directory.join(segment_file_name(base_offset, SegmentFileKind::Log)),
            offset_index: directory
                .join(segment_file_name(base_offset, SegmentFileKind::OffsetIndex)),
            time_index: directory.join(segment_file_name(base_offset, SegmentFileKind::TimeIndex)),
        }
    }
}

/// The end of a segment's batches, and what the indexing rule needs to continue from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentTail {
    /// Byte position after the last batch.
    pub end_position: u64,
    /// Offset after the last batch (the segment's base offset when empty).
    pub next_offset: u64,
    /// Largest `max_timestamp` of the batches; `i64::MIN` when empty.
    pub max_timestamp: i64,
    /// Bytes of log since the batch that got the last index entry (or since position 0).
    pub bytes_since_index_entry: u64,
}

impl SegmentTail {
    pub fn empty(base_offset: u64) -> Self {
        Self {
            end_position: 0,
            next_offset: base_offset,
            max_timestamp: i64::MIN,
            bytes_since_index_entry: 0,
        }
    }
}

/// The three open files of a segment. Shared (`Rc`) so a read can keep using them after the
/// segment is deleted from the log: an unlinked file stays readable while open.
#[derive(Debug)]
pub struct SegmentFiles<File> {
    pub log: File,
    pub offset_index: File,
    pub time_index: File,
}

/// One segment as the owning shard holds it in memory.
#[derive(Debug)]
pub struct Segment<File> {
    pub base_offset: u64,
    pub paths: SegmentPaths,
    pub files: Rc<SegmentFiles<File>>,
    pub index: SegmentIndex,
    /// Index entries already written to the index files.
    pub persisted_entries: usize,
    /// Everything appended so far (for the active segment, including bytes not yet written).
    pub tail: SegmentTail,
    /// When this process opened or created the segment (for the age roll).
    pub opened_ms: i64,
}

impl<File: StorageFile> Segment<File> {
    /// Records a batch appended at the current end: index entries per `index_interval_bytes`.
    pub fn record_batch(&mut self, header: &BatchHeader, index_interval_bytes: u32) {
        let relative_offset = header.base_offset - self.base_offset;
        assert!(
            relative_offset <= u64::from(u32::MAX),
            "the roll rule keeps relative offsets in u32"
        );
        assert_eq!(
            header.base_offset, self.tail.next_offset,
            "batches are contiguous"
        );
        index_batch(
            &mut self.index,
            &mut self.tail,
            self.base_offset,
            header,
            index_interval_bytes,
        );
    }

    /// Bytes of log on disk (or to be on disk) in this segment.
    pub fn size_bytes(&self) -> u64 {
        self.tail.end_position
    }

    pub fn is_empty(&self) -> bool {
        self.tail.end_position == 0
    }

    /// Position of the batch to start scanning from for `offset`, and that batch's base offset.
    pub fn scan_start_for_offset(&self, offset: u64) -> (u64, u64) {
        let relative = (offset.saturating_sub(self.base_offset)).min(u64::from(u32::MAX)) as u32;
        match self.index.lookup_offset(relative) {
            Some(entry) => (
                u64::from(entry.position),
                self.base_offset + u64::from(entry.relative_offset),
            ),
            None => (0, self.base_offset),
        }
    }

    /// Position and base offset to start scanning from for the first batch with
    /// `max_timestamp >= timestamp`.
    pub fn scan_start_for_timestamp(&self, timestamp: i64) -> (u64, u64) {
        match self.index.lookup_timestamp(timestamp) {
            Some(entry) => (
                u64::from(entry.position),
                self.base_offset + u64::from(entry.relative_offset),
            ),
            None => (0, self.base_offset),
        }
    }
}

/// The indexing rule, shared by appends and recovery: a batch gets an entry when at least
/// `index_interval_bytes` of log precede it since the last entry. Advances `tail` past it.
pub fn index_batch(
    index: &mut SegmentIndex,
    tail: &mut SegmentTail,
    segment_base_offset: u64,
    header: &BatchHeader,
    index_interval_bytes: u32,
) {
    let relative_offset = (header.base_offset - segment_base_offset) as u32;
    if relative_offset > 0 && tail.bytes_since_index_entry >= u64::from(index_interval_bytes) {
        index.push(
            OffsetIndexEntry {
                relative_offset,
                position: tail.end_position as u32,
            },
            TimeIndexEntry {
                timestamp_before: tail.max_timestamp,
                relative_offset,
            },
        );
        tail.bytes_since_index_entry = 0;
    }
    let length = u64::from(header.batch_length);
    tail.end_position += length;
    tail.bytes_since_index_entry += length;
    tail.next_offset = header.next_offset();
    tail.max_timestamp = tail.max_timestamp.max(header.max_timestamp);
}

/// What was found at a position in a log file.
#[derive(Debug)]
pub enum BatchAt {
    /// A whole valid batch (header checked, base offset as expected, CRC matches).
    Batch { header: BatchHeader, bytes: Bytes },
    /// Nothing more: end of the readable bytes, or a zeroed header (padding).
    End,
    /// Bytes that are not the expected batch.
    Invalid { reason: String },
}

/// Reads a log file front to back through a window of whole chunks, handing out batches as
/// zero-copy slices of the window.
pub struct SegmentReader<'a, File> {
    file: &'a File,
    path: &'a Path,
    /// Bytes at or after this position are never read.
    limit: u64,
    read_ahead_bytes: usize,
    window_position: u64,
    window: Bytes,
}

impl<'a, File: StorageFile> SegmentReader<'a, File> {
    pub fn new(file: &'a File, path: &'a Path, limit: u64, read_ahead_bytes: usize) -> Self {
        Self {
            file,
            path,
            limit,
            read_ahead_bytes,
            window_position: 0,
            window: Bytes::new(),
        }
    }

    /// Serves reads inside `[position, position + bytes.len())` from `bytes`, read earlier
    /// (a parked read-ahead) instead of the disk. Bytes past the reader's limit are never used.
    pub fn preload(&mut self, position: u64, bytes: Bytes) {
        let usable = self.limit.saturating_sub(position).min(bytes.len() as u64) as usize;
        self.window_position = position;
        self.window = bytes.slice(..usable);
    }

    pub fn set_read_ahead_bytes(&mut self, read_ahead_bytes: usize) {
        self.read_ahead_bytes = read_ahead_bytes;
    }

    /// `length` bytes at `position`, or fewer where the file or the limit ends first.
    pub async fn bytes_at(&mut self, position: u64, length: usize) -> Result<Bytes, StorageError> {
        let end = position + length as u64;
        let window_end = self.window_position + self.window.len() as u64;
        if position >= self.window_position && end <= window_end {
            let start = (position - self.window_position) as usize;
            return Ok(self.window.slice(start..start + length));
        }
        let available = self.limit.saturating_sub(position);
        let wanted = (length.max(self.read_ahead_bytes) as u64).min(available) as usize;
        if wanted == 0 {
            return Ok(Bytes::new());
        }
        // Start the window on a block boundary: direct I/O reads whole blocks anyway, so the
        // bytes before `position` come for free and later look-backs stay in the window.
        let aligned_start = align_down(position);
        let read_end = position + wanted as u64;
        let bytes = self
            .file
            .read_at(aligned_start, (read_end - aligned_start) as usize)
            .await
            .map_err(|error| {
                StorageError::io("reading segment", self.path, Some(aligned_start), error)
            })?;
        self.window_position = aligned_start;
        self.window = bytes;
        let start = (position - aligned_start) as usize;
        let available_in_window = self.window.len().saturating_sub(start);
        Ok(self
            .window
            .slice(start..start + length.min(available_in_window)))
    }

    /// The batch at `position`, which must have base offset `expected_offset`. With
    /// `with_payload` false only the header is read and checked (no CRC).
    pub async fn batch_at(
        &mut self,
        position: u64,
        expected_offset: u64,
        batch_bytes_max: usize,
        with_payload: bool,
    ) -> Result<BatchAt, StorageError> {
        let header_bytes = self.bytes_at(position, BATCH_HEADER_BYTES).await?;
        if header_bytes.iter().all(|byte| *byte == 0) {
            return Ok(BatchAt::End);
        }
        if header_bytes.len() < BATCH_HEADER_BYTES {
            return Ok(BatchAt::Invalid {
                reason: format!("{} bytes of a header before the end", header_bytes.len()),
            });
        }
        let header = match BatchHeader::decode(&header_bytes).and_then(|header| {
            header.check(batch_bytes_max)?;
            Ok(header)
        }) {
            Ok(header) => header,
            Err(error) => {
                return Ok(BatchAt::Invalid {
                    reason: error.to_string(),
                })
            }
        };
        if header.base_offset != expected_offset {
            return Ok(BatchAt::Invalid {
                reason: format!(
                    "base offset {}, expected {expected_offset}",
                    header.base_offset
                ),
            });
        }
        let length = header.batch_length as usize;
        if !with_payload {
            if position + length as u64 > self.limit {
                return Ok(BatchAt::Invalid {
                    reason: format!("batch of {length} bytes runs past the end"),
                });
            }
            return Ok(BatchAt::Batch {
                header,
                bytes: header_bytes,
            });
        }
        let bytes = self.bytes_at(position, length).await?;
        if bytes.len() < length {
            return Ok(BatchAt::Invalid {
                reason: format!(
                    "batch of {length} bytes has only {} before the end",
                    bytes.len()
                ),
            });
        }
        // Format 2 (Kafka) batches: both CRCs and the Kafka header (`header::check_crc`).
        if let Err(error) = check_crc(&bytes, &header) {
            return Ok(BatchAt::Invalid {
                reason: error.to_string(),
            });
        }
        Ok(BatchAt::Batch { header, bytes })
    }
}

/// Opens (creating if needed) the three files of a segment.
pub async fn open_segment_files<F: FileSystem>(
    file_system: &F,
    paths: &SegmentPaths,
    log_mode: OpenMode,
) -> Result<SegmentFiles<F::File>, StorageError> {
    let open = |path: &Path, mode: OpenMode| {
        let path = path.to_path_buf();
        async move {
            file_system
                .open_file(&path, mode)
                .await
                .map_err(|error| StorageError::io("opening segment file", &path, None, error))
        }
    };
    Ok(SegmentFiles {
        log: open(&paths.log, log_mode).await?,
        offset_index: open(&paths.offset_index, OpenMode::CreateIfMissing).await?,
        time_index: open(&paths.time_index, OpenMode::CreateIfMissing).await?,
    })
}

/// The bytes that bring both index files from `persisted` entries to `end` entries: for each
/// file, the aligned region from the block holding the first new entry (the bytes before that
/// entry are rewritten unchanged). Built synchronously so no borrow of the index spans an await.
#[derive(Debug)]
pub struct IndexWrite {
    pub entries_after: usize,
    offsets: (u64, Vec<u8>),
    times: (u64, Vec<u8>),
}

impl IndexWrite {
    pub fn plan(index: &SegmentIndex, persisted: usize, end: usize) -> Option<Self> {
        assert!(persisted <= end && end <= index.len(), "index write range");
        if persisted == end {
            return None;
        }
        Some(Self {
            entries_after: end,
            offsets: encode_tail(
                persisted,
                end,
                OFFSET_INDEX_ENTRY_BYTES,
                |first, last, target| index.encode_offsets(first, last, target),
            ),
            times: encode_tail(
                persisted,
                end,
                TIME_INDEX_ENTRY_BYTES,
                |first, last, target| index.encode_times(first, last, target),
            ),
        })
    }

    /// Writes both regions. Does not sync.
    pub async fn execute<File: StorageFile>(
        self,
        files: &SegmentFiles<File>,
        paths: &SegmentPaths,
    ) -> Result<(), StorageError> {
        write_block(&files.offset_index, &paths.offset_index, self.offsets).await?;
        write_block(&files.time_index, &paths.time_index, self.times).await
    }
}

/// Syncs both index files.
pub async fn sync_index_files<File: StorageFile>(
    files: &SegmentFiles<File>,
    paths: &SegmentPaths,
) -> Result<(), StorageError> {
    for (file, path) in [
        (&files.offset_index, &paths.offset_index),
        (&files.time_index, &paths.time_index),
    ] {
        file.sync_data()
            .await
            .map_err(|error| StorageError::io("syncing index", path, None, error))?;
    }
    Ok(())
}

/// The aligned file region holding entries `[persisted, end)`: its start and its bytes.
fn encode_tail(
    persisted: usize,
    end: usize,
    entry_bytes: usize,
    encode: impl Fn(usize, usize, &mut Vec<u8>),
) -> (u64, Vec<u8>) {
    let region_start = align_down((persisted * entry_bytes) as u64);
    let first_entry = region_start as usize / entry_bytes;
    let skip = region_start as usize - first_entry * entry_bytes;
    let mut bytes = Vec::with_capacity((end - first_entry) * entry_bytes);
    encode(first_entry, end, &mut bytes);
    bytes.drain(..skip);
    (region_start, bytes)
}

async fn write_block<File: StorageFile>(
    file: &File,
    path: &Path,
    (position, bytes): (u64, Vec<u8>),
) -> Result<(), StorageError> {
    let length = align_up(bytes.len() as u64) as usize;
    let mut buffer = file.allocate_buffer(length);
    let target = buffer.as_bytes_mut();
    target[..bytes.len()].copy_from_slice(&bytes);
    target[bytes.len()..].fill(0);
    let written = file
        .write_at(position, buffer)
        .await
        .map_err(|error| StorageError::io("writing index", path, Some(position), error))?;
    if written < bytes.len() {
        return Err(StorageError::io(
            "writing index",
            path,
            Some(position),
            std::io::Error::new(
                std::io::ErrorKind::WriteZero,
                format!("short write of {written} bytes"),
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_names_are_zero_padded_base_offsets() {
        assert_eq!(
            segment_file_name(0, SegmentFileKind::Log),
            "00000000000000000000.log"
        );
        assert_eq!(
            segment_file_name(42, SegmentFileKind::TimeIndex),
            "00000000000000000042.timeindex"
        );
        assert_eq!(
            parse_segment_file_name("00000000000000000042.index"),
            Some((42, SegmentFileKind::OffsetIndex))
        );
    }

    #[test]
    fn other_names_are_not_segments() {
        for name in [
            "42.log",
            "0000000000000000004x.log",
            "00000000000000000042.txt",
            "log-start-offset",
        ] {
            assert_eq!(parse_segment_file_name(name), None, "{name}");
        }
    }

    #[test]
    fn index_tail_region_starts_at_the_block_of_the_first_new_entry() {
        // 12-byte entries straddle block boundaries: entry 341 starts at byte 4092.
        let (start, bytes) = encode_tail(342, 344, 12, |first, last, target| {
            for entry in first..last {
                target.extend_from_slice(&[entry as u8; 12]);
            }
        });
        assert_eq!(start, 4096);
        // Bytes from 4096: the last 8 bytes of entry 341, then entries 342 and 343.
        assert_eq!(bytes.len(), 8 + 24);
        assert_eq!(bytes[0], 341u16 as u8);
        assert_eq!(bytes[8], 342u16 as u8);
    }
}
