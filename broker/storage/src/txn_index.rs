//! The aborted-transaction index of a segment, `<base offset:020>.txnindex` (Kafka's
//! `TransactionIndex`): one entry per transaction aborted by a marker in that segment, in
//! marker offset order, so a read_committed fetch can list the aborted transactions of the
//! range it serves without keeping them all in memory.
//!
//! Layout: 40-byte entries from byte 0, then zero padding to a 4096-byte block:
//!
//! ```text
//! 0 producer id i64 | 8 first offset u64 | 16 last offset u64 (the abort marker) |
//! 24 last stable offset u64 | 32 CRC-32C u32 of bytes [0, 32) | 36 zero u32
//! ```
//!
//! The entries end at the first one that fails its CRC, is not in marker order, or whose
//! first offset is past its last (zero padding fails the CRC). Entries are appended (the
//! partial last block rewritten with its old bytes) and synced before the producer snapshot
//! that covers their markers is written; see `FORMAT.md`, "Aborted transaction index", for
//! the order and the crash cases. This file holds the codec, the file operations and a
//! bounded cache of entries read; when they are written and read is `log::txn`'s decision.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::error::StorageError;
use super::file::{
    align_down, align_up, FileSystem, IoBuffer, OpenMode, StorageFile, DIRECT_IO_ALIGNMENT_BYTES,
};
use super::segment::SEGMENT_NAME_DIGITS;
use super::transactions::AbortedTxnEntry;

pub const TXN_INDEX_SUFFIX: &str = "txnindex";
pub const TXN_INDEX_ENTRY_BYTES: usize = 40;
const CRC_AT: usize = 32;

/// `00000000000000000042.txnindex` for the segment at base offset 42.
pub fn txn_index_file_name(base_offset: u64) -> String {
    format!(
        "{base_offset:0width$}.{TXN_INDEX_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

pub fn txn_index_path(directory: &Path, base_offset: u64) -> PathBuf {
    directory.join(txn_index_file_name(base_offset))
}

/// The base offset a `.txnindex` file name gives, if it is one.
pub fn parse_txn_index_file_name(name: &str) -> Option<u64> {
    let (stem, suffix) = name.split_once('.')?;
    if suffix != TXN_INDEX_SUFFIX
        || stem.len() != SEGMENT_NAME_DIGITS
        || !stem.bytes().all(|byte| byte.is_ascii_digit())
    {
        return None;
    }
    stem.parse().ok()
}

pub fn encode_entry(entry: &AbortedTxnEntry) -> [u8; TXN_INDEX_ENTRY_BYTES] {
    let mut bytes = [0u8; TXN_INDEX_ENTRY_BYTES];
    bytes[0..8].copy_from_slice(&entry.producer_id.to_le_bytes());
    bytes[8..16].copy_from_slice(&entry.first_offset.to_le_bytes());
    bytes[16..24].copy_from_slice(&entry.last_offset.to_le_bytes());
    bytes[24..32].copy_from_slice(&entry.last_stable_offset.to_le_bytes());
    let crc = crc32c::crc32c(&bytes[..CRC_AT]);
    bytes[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    bytes
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// The valid entries at the start of `bytes` (see the module doc for where they end).
pub fn decode_entries(bytes: &[u8]) -> Vec<AbortedTxnEntry> {
    let mut entries: Vec<AbortedTxnEntry> = Vec::new();
    for chunk in bytes.chunks_exact(TXN_INDEX_ENTRY_BYTES) {
        let crc = u32::from_le_bytes(chunk[CRC_AT..CRC_AT + 4].try_into().expect("4 bytes"));
        if crc != crc32c::crc32c(&chunk[..CRC_AT]) || chunk[CRC_AT + 4..] != [0u8; 4] {
            break;
        }
        let entry = AbortedTxnEntry {
            producer_id: i64::from_le_bytes(chunk[0..8].try_into().expect("8 bytes")),
            first_offset: u64_at(chunk, 8),
            last_offset: u64_at(chunk, 16),
            last_stable_offset: u64_at(chunk, 24),
        };
        let in_order = entries
            .last()
            .is_none_or(|previous| previous.last_offset < entry.last_offset);
        if entry.producer_id < 0 || entry.first_offset >= entry.last_offset || !in_order {
            break;
        }
        entries.push(entry);
    }
    entries
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
    position: Option<u64>,
) -> impl FnOnce(io::Error) -> StorageError + 'a {
    move |error| StorageError::io(op, path, position, error)
}

/// The file's bytes, or `None` when it does not exist.
async fn read_file<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<Option<(F::File, bytes::Bytes)>, StorageError> {
    let file = match file_system.open_file(path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("opening txn index", path, None, error)),
    };
    let size = file
        .size()
        .await
        .map_err(io_error("sizing txn index", path, None))?;
    let bytes = file.read_at(0, size as usize).await.map_err(io_error(
        "reading txn index",
        path,
        Some(0),
    ))?;
    Ok(Some((file, bytes)))
}

/// The entries of the index at `path` (none when the file does not exist).
pub async fn read_entries<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<Vec<AbortedTxnEntry>, StorageError> {
    Ok(read_file(file_system, path)
        .await?
        .map(|(_, bytes)| decode_entries(&bytes))
        .unwrap_or_default())
}

/// Writes `entries` (encoded back to back) at entry number `from_entry` of `file`: the block
/// holding that entry is rewritten with its earlier bytes (`existing`), zero padding after.
async fn write_from<F: FileSystem>(
    file: &F::File,
    path: &Path,
    existing: &[u8],
    from_entry: usize,
    entries: &[AbortedTxnEntry],
) -> Result<u64, StorageError> {
    let start_byte = (from_entry * TXN_INDEX_ENTRY_BYTES) as u64;
    let block_start = align_down(start_byte);
    let end_byte = start_byte + (entries.len() * TXN_INDEX_ENTRY_BYTES) as u64;
    let length = (align_up(end_byte) - block_start) as usize;
    let mut buffer = file.allocate_buffer(length);
    let target = buffer.as_bytes_mut();
    target.fill(0);
    let kept = (start_byte - block_start) as usize;
    target[..kept].copy_from_slice(&existing[block_start as usize..start_byte as usize]);
    for (index, entry) in entries.iter().enumerate() {
        let at = kept + index * TXN_INDEX_ENTRY_BYTES;
        target[at..at + TXN_INDEX_ENTRY_BYTES].copy_from_slice(&encode_entry(entry));
    }
    let written = file.write_at(block_start, buffer).await.map_err(io_error(
        "writing txn index",
        path,
        Some(block_start),
    ))?;
    if written != length {
        let short = io::Error::new(
            io::ErrorKind::WriteZero,
            format!("wrote {written} of {length} bytes"),
        );
        return Err(StorageError::io(
            "writing txn index",
            path,
            Some(block_start),
            short,
        ));
    }
    Ok(align_up(end_byte))
}

/// Appends `entries` (in marker order) to the index at `path`, leaving out those already
/// there, and syncs it; a file created here is made durable in `directory` too.
pub async fn append_entries<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    path: &Path,
    entries: &[AbortedTxnEntry],
) -> Result<(), StorageError> {
    if entries.is_empty() {
        return Ok(());
    }
    let (file, existing, created) = match read_file(file_system, path).await? {
        Some((file, bytes)) => (file, bytes, false),
        None => {
            let file = file_system
                .open_file(path, OpenMode::CreateIfMissing)
                .await
                .map_err(io_error("creating txn index", path, None))?;
            (file, bytes::Bytes::new(), true)
        }
    };
    let present = decode_entries(&existing);
    // Entries an earlier attempt wrote before it failed (its sync, or another file's write)
    // are there already: markers before the snapshot offset are durable, never rolled back,
    // so an entry with the same marker offset is the same entry.
    let present_end = present.last().map(|last| last.last_offset);
    let missing: Vec<AbortedTxnEntry> = entries
        .iter()
        .filter(|entry| present_end.is_none_or(|end| entry.last_offset > end))
        .copied()
        .collect();
    // Those already there may not be durable (the attempt that wrote them failed before its
    // sync did): the sync below is never skipped.
    if !missing.is_empty() {
        write_from::<F>(&file, path, &existing, present.len(), &missing).await?;
    }
    file.sync_data()
        .await
        .map_err(io_error("syncing txn index", path, None))?;
    if created {
        file_system
            .sync_directory(directory)
            .await
            .map_err(io_error("syncing partition directory", directory, None))?;
    }
    Ok(())
}

/// Recovery: keeps the entries of the index at `path` whose marker is before `offset`, cuts
/// the file after them (with a torn tail) and syncs it if anything was cut. Returns the kept
/// ones.
pub async fn keep_entries_before<F: FileSystem>(
    file_system: &F,
    path: &Path,
    offset: u64,
) -> Result<Vec<AbortedTxnEntry>, StorageError> {
    let Some((file, existing)) = read_file(file_system, path).await? else {
        return Ok(Vec::new());
    };
    let mut entries = decode_entries(&existing);
    let valid = entries.len();
    entries.retain(|entry| entry.last_offset < offset);
    let kept_end = align_up((entries.len() * TXN_INDEX_ENTRY_BYTES) as u64);
    let clean = entries.len() == valid
        && existing.len() as u64 == kept_end
        && existing[entries.len() * TXN_INDEX_ENTRY_BYTES..]
            .iter()
            .all(|byte| *byte == 0);
    if clean {
        return Ok(entries);
    }
    if (entries.len() * TXN_INDEX_ENTRY_BYTES) % DIRECT_IO_ALIGNMENT_BYTES != 0 {
        // The block the kept entries end in: zeros after them.
        write_from::<F>(&file, path, &existing, entries.len(), &[]).await?;
    }
    file.truncate(kept_end).await.map_err(io_error(
        "truncating txn index",
        path,
        Some(kept_end),
    ))?;
    file.sync_data()
        .await
        .map_err(io_error("syncing txn index", path, None))?;
    Ok(entries)
}

/// Entries of closed segments' index files read before, by segment base offset, at most
/// `entries_max` in all (a segment with more is read from disk each time). Owned by the log.
#[derive(Debug, Default)]
pub struct TxnIndexCache {
    segments: BTreeMap<u64, Rc<Vec<AbortedTxnEntry>>>,
    entries: usize,
    /// Bumped by every change of an index file: a read that began before one must not cache
    /// what it read.
    generation: u64,
}

impl TxnIndexCache {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// A file changed (or is about to): forgets its segment and voids reads in flight.
    pub fn changed(&mut self, base_offset: u64) {
        self.generation += 1;
        self.remove(base_offset);
    }

    /// [`TxnIndexCache::insert`] of entries read when the generation was `generation`, unless a
    /// file changed since.
    pub fn insert_read(
        &mut self,
        generation: u64,
        base_offset: u64,
        entries: Rc<Vec<AbortedTxnEntry>>,
        entries_max: usize,
    ) {
        if generation == self.generation {
            self.insert(base_offset, entries, entries_max);
        }
    }

    pub fn get(&self, base_offset: u64) -> Option<Rc<Vec<AbortedTxnEntry>>> {
        self.segments.get(&base_offset).cloned()
    }

    /// Remembers a segment's entries, evicting the oldest segments to stay under `entries_max`.
    pub fn insert(
        &mut self,
        base_offset: u64,
        entries: Rc<Vec<AbortedTxnEntry>>,
        entries_max: usize,
    ) {
        self.remove(base_offset);
        if entries.len() > entries_max {
            return;
        }
        while self.entries + entries.len() > entries_max {
            let Some((_, evicted)) = self.segments.pop_first() else {
                break;
            };
            self.entries -= evicted.len();
        }
        self.entries += entries.len();
        self.segments.insert(base_offset, entries);
    }

    /// Forgets a segment (its file changed or was removed).
    pub fn remove(&mut self, base_offset: u64) {
        if let Some(removed) = self.segments.remove(&base_offset) {
            self.entries -= removed.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(first_offset: u64, last_offset: u64) -> AbortedTxnEntry {
        AbortedTxnEntry {
            producer_id: 7,
            first_offset,
            last_offset,
            last_stable_offset: last_offset + 1,
        }
    }

    #[test]
    fn entries_read_back_and_end_at_padding_or_damage() {
        let mut bytes = Vec::new();
        for (first, last) in [(0, 3), (1, 9), (10, 12)] {
            bytes.extend_from_slice(&encode_entry(&entry(first, last)));
        }
        bytes.resize(4096, 0);
        assert_eq!(decode_entries(&bytes).len(), 3);
        bytes[45] ^= 1;
        assert_eq!(decode_entries(&bytes), vec![entry(0, 3)]);
        // Out of marker order ends them too.
        let mut bytes = encode_entry(&entry(5, 9)).to_vec();
        bytes.extend_from_slice(&encode_entry(&entry(0, 3)));
        assert_eq!(decode_entries(&bytes).len(), 1);
    }

    #[test]
    fn file_names_parse_back() {
        assert_eq!(
            parse_txn_index_file_name(&txn_index_file_name(42)),
            Some(42)
        );
        assert_eq!(
            parse_txn_index_file_name("00000000000000000042.index"),
            None
        );
    }

    #[test]
    fn the_cache_stays_under_its_bound() {
        let mut cache = TxnIndexCache::default();
        cache.insert(0, Rc::new(vec![entry(0, 1); 3]), 4);
        cache.insert(10, Rc::new(vec![entry(10, 11); 2]), 4);
        assert!(cache.get(0).is_none(), "the oldest went");
        assert!(cache.get(10).is_some());
        cache.insert(20, Rc::new(vec![entry(20, 21); 5]), 4);
        assert!(cache.get(20).is_none(), "too large to cache");
        assert_eq!(cache.entries, 2);
        // A read that began before a file changed is not cached.
        let generation = cache.generation();
        cache.changed(30);
        cache.insert_read(generation, 30, Rc::new(vec![entry(30, 31)]), 4);
        assert!(cache.get(30).is_none());
    }
}
