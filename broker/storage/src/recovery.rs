//! Rebuilding a segment's in-memory state from its files when a partition opens.
//!
//! For each segment: decode the index files' longest valid prefix, confirm the last entry points
//! at a valid batch (dropping entries from the end until one does), then scan batch by batch from
//! there to the end of the log file, checking header, CRC and offset continuity, and adding the
//! index entries the scan passes. The active (last) segment is truncated at the first invalid
//! byte — its torn tail — and synced, so everything it keeps is durable; a closed segment may end
//! only in zero padding, anything else is corruption. Index files are then cut to their valid
//! entries and the rebuilt entries written and synced. `FORMAT.md` lists the crash cases.
//! Which segments to open, delete, or check for contiguity is `log`'s decision, not this file's.

use std::rc::Rc;

use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};

use super::config::{LogConfig, RecoveryScan};
use super::error::StorageError;
use super::file::{align_down, StorageFile};
use super::index::{SegmentIndex, OFFSET_INDEX_ENTRY_BYTES, TIME_INDEX_ENTRY_BYTES};
use super::segment::{
    index_batch, sync_index_files, BatchAt, IndexWrite, Segment, SegmentFiles, SegmentPaths,
    SegmentReader, SegmentTail,
};

/// Whether a segment may end in a torn tail that recovery cuts off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentRole {
    /// The newest segment: unsynced appends may have been torn by a crash.
    Active,
    /// An older segment: it was synced whole before the next one was created.
    Closed,
}

/// What recovery learned about a segment besides its in-memory state.
#[derive(Debug)]
pub struct Recovered<File> {
    pub segment: Segment<File>,
    /// Bytes `[align_down(end), end)` of the log: the partial block the next write rewrites.
    pub tail_block: Vec<u8>,
    /// Log bytes read and checked batch by batch (from the last trusted index entry on).
    pub bytes_scanned: u64,
}

/// The bytes of an index file, but never more than `bytes_max`: entries point at distinct batch
/// starts, so a valid index cannot be longer, and a corrupt size must not drive an allocation.
async fn index_file_bytes<File: StorageFile>(
    file: &File,
    path: &std::path::Path,
    bytes_max: u64,
) -> Result<(bytes::Bytes, u64), StorageError> {
    let size = file
        .size()
        .await
        .map_err(|error| StorageError::io("sizing index", path, None, error))?;
    let bytes = file
        .read_at(0, size.min(bytes_max) as usize)
        .await
        .map_err(|error| StorageError::io("reading index", path, Some(0), error))?;
    Ok((bytes, size))
}

/// Recovers one segment (FORMAT.md, "Recovery at open", step 4). `opened_ms` is recorded as
/// the segment's opening time.
pub async fn recover_segment<File: StorageFile>(
    base_offset: u64,
    paths: SegmentPaths,
    files: SegmentFiles<File>,
    role: SegmentRole,
    config: &LogConfig,
    opened_ms: i64,
) -> Result<Recovered<File>, StorageError> {
    let log_size = files
        .log
        .size()
        .await
        .map_err(|error| StorageError::io("sizing segment", &paths.log, None, error))?;
    // Step 4.1.
    let loaded = load_index(&files, &paths, log_size).await?;
    let mut index = loaded.index;
    if role == SegmentRole::Active && config.recovery_scan == RecoveryScan::Full {
        // Distrusted: the scan starts at the first byte and rebuilds every entry.
        index.truncate(0);
    }
    let mut reader = SegmentReader::new(&files.log, &paths.log, log_size, config.read_chunk_bytes);
    // Step 4.2.
    let mut tail = trusted_tail(&mut reader, &mut index, base_offset, config).await?;
    let trusted_entries = index.len();
    let scan_start = tail.end_position;
    // Step 4.3.
    let stop_reason = scan_batches(&mut reader, &mut index, &mut tail, base_offset, config).await?;
    let torn_offsets = match (role, &stop_reason) {
        (SegmentRole::Active, Some(_)) => {
            offsets_in_torn_tail(
                &mut reader,
                tail.end_position,
                tail.next_offset,
                config.batch_bytes_max,
            )
            .await?
        }
        _ => None,
    };
    drop(reader);
    // Step 4.4.
    let end = tail.end_position;
    if let Some(reason) = stop_reason {
        judge_invalid_end(&paths, role, &tail, log_size, reason, torn_offsets)?;
    }
    settle_log_file(&files, &paths, role, log_size, end).await?;
    // Step 4.5.
    rewrite_index_files(
        &files,
        &paths,
        &index,
        trusted_entries,
        loaded.offset_file_bytes,
        loaded.time_file_bytes,
    )
    .await?;
    // Step 4.6.
    let tail_block = read_tail_block(&files, &paths, end).await?;
    let persisted_entries = index.len();
    Ok(Recovered {
        segment: Segment {
            base_offset,
            paths,
            files: Rc::new(files),
            index,
            persisted_entries,
            tail,
            opened_ms,
        },
        tail_block,
        bytes_scanned: end - scan_start,
    })
}

/// Both index files as loaded: their longest valid, agreeing prefix, and their sizes on disk.
struct LoadedIndex {
    index: SegmentIndex,
    offset_file_bytes: u64,
    time_file_bytes: u64,
}

/// Step 4.1: loads both index files and keeps their valid, agreeing prefix.
async fn load_index<File: StorageFile>(
    files: &SegmentFiles<File>,
    paths: &SegmentPaths,
    log_size: u64,
) -> Result<LoadedIndex, StorageError> {
    // At most one entry per batch, and a batch is at least a header long.
    let entries_max = log_size / BATCH_HEADER_BYTES as u64 + 1;
    let (offset_bytes, offset_file_bytes) = index_file_bytes(
        &files.offset_index,
        &paths.offset_index,
        entries_max * OFFSET_INDEX_ENTRY_BYTES as u64,
    )
    .await?;
    let (time_bytes, time_file_bytes) = index_file_bytes(
        &files.time_index,
        &paths.time_index,
        entries_max * TIME_INDEX_ENTRY_BYTES as u64,
    )
    .await?;
    Ok(LoadedIndex {
        index: SegmentIndex::decode_valid_prefix(&offset_bytes, &time_bytes, log_size),
        offset_file_bytes,
        time_file_bytes,
    })
}

/// Step 4.2: the tail at the last index entry whose batch checks out (entries after it are
/// dropped), or at the segment's start. Index entries are written only for synced batches, but
/// a torn index write or a medium error can still leave a bad last entry.
async fn trusted_tail<File: StorageFile>(
    reader: &mut SegmentReader<'_, File>,
    index: &mut SegmentIndex,
    base_offset: u64,
    config: &LogConfig,
) -> Result<SegmentTail, StorageError> {
    loop {
        let Some((offset_entry, time_entry)) = index.last() else {
            return Ok(SegmentTail::empty(base_offset));
        };
        let position = u64::from(offset_entry.position);
        let expected = base_offset + u64::from(offset_entry.relative_offset);
        match reader
            .batch_at(position, expected, config.batch_bytes_max, true)
            .await?
        {
            BatchAt::Batch { .. } => {
                return Ok(SegmentTail {
                    end_position: position,
                    next_offset: expected,
                    max_timestamp: time_entry.timestamp_before,
                    bytes_since_index_entry: 0,
                })
            }
            BatchAt::End | BatchAt::Invalid { .. } => index.truncate(index.len() - 1),
        }
    }
}

/// Step 4.3: scans and checks batches from `tail` to the end of the file, adding the index
/// entries it passes; returns why it stopped before the end, if it did (`None`: the end, or
/// zero padding).
async fn scan_batches<File: StorageFile>(
    reader: &mut SegmentReader<'_, File>,
    index: &mut SegmentIndex,
    tail: &mut SegmentTail,
    base_offset: u64,
    config: &LogConfig,
) -> Result<Option<String>, StorageError> {
    loop {
        let found = reader
            .batch_at(
                tail.end_position,
                tail.next_offset,
                config.batch_bytes_max,
                true,
            )
            .await?;
        match found {
            BatchAt::Batch { header, .. } => {
                if u64::from(header.batch_length) + tail.end_position > u64::from(u32::MAX)
                    || header.next_offset() - base_offset > u64::from(u32::MAX)
                {
                    return Ok(Some(
                        "batch beyond the u32 position or offset range of a segment".to_owned(),
                    ));
                }
                // Scanning from an entry's batch with `bytes_since_index_entry` zero never adds
                // a second entry for that batch: the interval is at least one byte.
                index_batch(
                    index,
                    tail,
                    base_offset,
                    &header,
                    config.index_interval_bytes,
                );
            }
            BatchAt::End => return Ok(None),
            BatchAt::Invalid { reason } => return Ok(Some(reason)),
        }
    }
}

/// Step 4.4, for bytes that are not a valid batch where the batches stop (at `tail`): the
/// active segment's torn tail is cut (with a warning naming the bytes and offsets removed); a
/// closed segment's is damage, a `Corrupt` error.
fn judge_invalid_end(
    paths: &SegmentPaths,
    role: SegmentRole,
    tail: &SegmentTail,
    log_size: u64,
    reason: String,
    torn_offsets: Option<(u64, u64)>,
) -> Result<(), StorageError> {
    let end = tail.end_position;
    match role {
        SegmentRole::Closed => {
            // `end` is where the valid batches stop: the start of the first bad one (or of the
            // bytes that should be one), not the end of the last good one's neighbour.
            Err(StorageError::corrupt(
                &paths.log,
                end,
                format!(
                    "closed segment: no valid batch starts here ({reason}); its valid batches \
                     end here at offset {}, and the {} bytes from here to the end of the file \
                     cannot be read (a closed segment was synced whole, so this is damage, \
                     not a torn write)",
                    tail.next_offset,
                    log_size.saturating_sub(end)
                ),
            ))
        }
        SegmentRole::Active => {
            let offsets_removed = match torn_offsets {
                Some((first, after)) => {
                    format!("{} (offsets {first} to {})", after - first, after - 1)
                }
                None => "none that a batch header still names".to_owned(),
            };
            tracing::warn!(
                path = %paths.log.display(),
                position = end,
                next_offset = tail.next_offset,
                bytes_removed = log_size.saturating_sub(end),
                offsets_removed,
                %reason,
                "truncating the torn tail of the active segment: the bytes from this position \
                 on were never acknowledged as durable"
            );
            Ok(())
        }
    }
}

/// Step 4.4: cuts the log to `end` (a torn tail, or a closed segment's trailing padding) and
/// syncs it, always for the active segment: the recovered bytes may sit in a volatile device
/// cache (written, never synced), and must be durable before anything is acknowledged on top.
async fn settle_log_file<File: StorageFile>(
    files: &SegmentFiles<File>,
    paths: &SegmentPaths,
    role: SegmentRole,
    log_size: u64,
    end: u64,
) -> Result<(), StorageError> {
    if log_size != end {
        files.log.truncate(end).await.map_err(|error| {
            StorageError::io("truncating segment", &paths.log, Some(end), error)
        })?;
    }
    if role == SegmentRole::Active || log_size != end {
        files
            .log
            .sync_data()
            .await
            .map_err(|error| StorageError::io("syncing segment", &paths.log, None, error))?;
    }
    Ok(())
}

/// Step 4.6: bytes `[align_down(end), end)` of the log, the partial block the next write
/// rewrites.
async fn read_tail_block<File: StorageFile>(
    files: &SegmentFiles<File>,
    paths: &SegmentPaths,
    end: u64,
) -> Result<Vec<u8>, StorageError> {
    let tail_block_start = align_down(end);
    if tail_block_start == end {
        return Ok(Vec::new());
    }
    let bytes = files
        .log
        .read_at(tail_block_start, (end - tail_block_start) as usize)
        .await
        .map_err(|error| {
            StorageError::io(
                "reading tail block",
                &paths.log,
                Some(tail_block_start),
                error,
            )
        })?;
    assert_eq!(
        bytes.len() as u64,
        end - tail_block_start,
        "the scan just read these bytes"
    );
    Ok(bytes.to_vec())
}

/// The offsets `[first, after)` that the batch headers in a torn tail still name, starting at
/// the first invalid batch (at `position`, with offset `next_offset`): headers are followed while each one
/// decodes, checks out and carries the expected base offset, whether or not its bytes are all
/// there (a batch torn short or failing its CRC still held those offsets). `None` when not even
/// the first header is readable: how many offsets the cut bytes held is then unknown.
async fn offsets_in_torn_tail<File: StorageFile>(
    reader: &mut SegmentReader<'_, File>,
    mut position: u64,
    next_offset: u64,
    batch_bytes_max: usize,
) -> Result<Option<(u64, u64)>, StorageError> {
    let mut after = next_offset;
    loop {
        let bytes = reader.bytes_at(position, BATCH_HEADER_BYTES).await?;
        let header = (bytes.len() == BATCH_HEADER_BYTES)
            .then(|| BatchHeader::decode(&bytes).ok())
            .flatten()
            .filter(|header| header.check(batch_bytes_max).is_ok() && header.base_offset == after);
        let Some(header) = header else {
            break;
        };
        after = header.next_offset();
        position += u64::from(header.batch_length);
    }
    Ok((after > next_offset).then_some((next_offset, after)))
}

/// Cuts both index files to their trusted entries (dropping torn entries, stale entries and
/// padding) and writes the entries the scan rebuilt, then syncs them. Skipped when the files
/// already hold exactly the entries.
async fn rewrite_index_files<File: StorageFile>(
    files: &SegmentFiles<File>,
    paths: &SegmentPaths,
    index: &SegmentIndex,
    trusted_entries: usize,
    offset_file_bytes: u64,
    time_file_bytes: u64,
) -> Result<(), StorageError> {
    let offset_trusted_bytes = trusted_entries * OFFSET_INDEX_ENTRY_BYTES;
    let time_trusted_bytes = trusted_entries * TIME_INDEX_ENTRY_BYTES;
    let exact = offset_file_bytes == offset_trusted_bytes as u64
        && time_file_bytes == time_trusted_bytes as u64
        && trusted_entries == index.len();
    if exact {
        return Ok(());
    }
    for (file, path, length) in [
        (
            &files.offset_index,
            &paths.offset_index,
            offset_trusted_bytes,
        ),
        (&files.time_index, &paths.time_index, time_trusted_bytes),
    ] {
        file.truncate(length as u64).await.map_err(|error| {
            StorageError::io("truncating index", path, Some(length as u64), error)
        })?;
    }
    if let Some(write) = IndexWrite::plan(index, trusted_entries, index.len()) {
        write.execute(files, paths).await?;
    }
    sync_index_files(files, paths).await
}
