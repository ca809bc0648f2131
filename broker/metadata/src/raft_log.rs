//! The Raft log of one metadata node: [`RaftStore`], the in-memory view raft-rs reads
//! (`raft::Storage`), and [`DurableLog`], its files under `<data_dir>/metadata/` through the
//! storage crate's [`FileSystem`] trait, so the seeded in-memory disk can tear and drop writes.
//!
//! Files (every one CRC-32C'd):
//! - `entries`: records `[length u32 LE][crc32c(payload) u32 LE][payload]`, payload = one
//!   protobuf `Entry`, appended with direct I/O (the last partial block is rewritten with the
//!   new records; the rest of a block is zeros). Recovery reads records until the first that is
//!   torn, fails its CRC, or breaks the log's shape (indexes not consecutive, terms going down),
//!   then cuts the file there (durably) so that no stale bytes can ever follow a later append.
//!   Entries up to the snapshot's index are skipped.
//! - `hard-state`: `[crc u32][length u32][HardState]`, replaced atomically (write, fsync,
//!   rename, fsync dir) whenever the term or the vote changes. The commit index is not kept
//!   durable: it is volatile in Raft, and recovery starts it at the snapshot's index.
//! - `snapshot`: `[crc u32][length u32][Snapshot]` (metadata: index, term, membership; data: the
//!   encoded image), replaced atomically.
//!
//! Write ordering (Raft's persistence rule: nothing is acknowledged before it is durable):
//! a received snapshot is written before the entries file is emptied; conflicting entries are
//! cut (truncate + fsync) before the new ones are written (write + fsync), so a crash never
//! leaves old entries behind new ones; a local snapshot is written before the entries file is
//! rewritten without the entries it covers. Every crash in between leaves files that recovery
//! reads back to a log at least as long as what was acknowledged.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use protobuf::Message as _;
use raft::eraftpb::{Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage};
use spate_storage::file::{align_down, align_up, read_whole_file, replace_file_durably};
use spate_storage::{FileSystem, IoBuffer, OpenMode, ReplaceSteps, StorageError, StorageFile};

use crate::error::MetadataError;

const ENTRIES_FILE: &str = "entries";
const HARD_STATE_FILE: &str = "hard-state";
const SNAPSHOT_FILE: &str = "snapshot";
const RECORD_HEADER_BYTES: usize = 8;

/// The log as raft-rs reads it: the latest snapshot and the entries after it, in memory.
#[derive(Debug, Default, Clone)]
pub struct RaftStore {
    pub(crate) hard_state: HardState,
    pub(crate) snapshot: Snapshot,
    /// `entries[i].index == snapshot index + 1 + i`.
    pub(crate) entries: Vec<Entry>,
    /// Set when raft-rs asked for a snapshot the store could not give (older than asked, or
    /// from before the destination joined): the node takes a fresh one at its next `advance`.
    pub(crate) snapshot_wanted: std::cell::Cell<bool>,
}

impl RaftStore {
    fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn first_index_value(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn last_index_value(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    /// The term of `index`, if the store still holds it.
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        if index < self.first_index_value() || index > self.last_index_value() {
            return None;
        }
        Some(self.entries[(index - self.first_index_value()) as usize].term)
    }
}

impl Storage for RaftStore {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let mut hard_state = self.hard_state.clone();
        // The commit index is not durable; everything in the snapshot is committed.
        hard_state.commit = hard_state.commit.max(self.snapshot_index());
        Ok(RaftState::new(
            hard_state,
            self.snapshot.get_metadata().get_conf_state().clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        if low < self.first_index_value() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        if high > self.last_index_value() + 1 {
            return Err(raft::Error::Store(raft::StorageError::Unavailable));
        }
        let first = self.first_index_value();
        let mut entries = self.entries[(low - first) as usize..(high - first) as usize].to_vec();
        raft::util::limit_size(&mut entries, max_size.into());
        Ok(entries)
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        if index < self.snapshot_index() {
            return Err(raft::Error::Store(raft::StorageError::Compacted));
        }
        self.term_of(index)
            .ok_or(raft::Error::Store(raft::StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_value())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.last_index_value())
    }

    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<Snapshot> {
        let conf_state = self.snapshot.get_metadata().get_conf_state();
        let knows_destination =
            conf_state.voters.contains(&to) || conf_state.learners.contains(&to);
        if self.snapshot_index() < request_index || !knows_destination {
            // raft-rs retries later; a follower refuses a snapshot whose membership lacks it.
            self.snapshot_wanted.set(true);
            return Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

/// The files of one node's Raft log, and where the entries file ends.
pub struct DurableLog<F: FileSystem> {
    file_system: F,
    directory: PathBuf,
    entries_file: F::File,
    /// Logical end of the entries file: the bytes after it are zeros or garbage.
    entries_end: u64,
    /// The bytes of the last partial block, `[align_down(entries_end), entries_end)`.
    tail: Vec<u8>,
    /// File offset of each entry in the file after the snapshot, by index order.
    offsets: Vec<(u64, u64)>,
    persisted_term_vote: (u64, u64),
}

const STEPS_HARD_STATE: ReplaceSteps = ReplaceSteps {
    create: "create metadata hard state",
    size: "size metadata hard state",
    empty: "empty metadata hard state",
    write: "write metadata hard state",
    sync: "fsync metadata hard state",
    rename: "rename metadata hard state",
    sync_directory: "fsync metadata directory",
};

const STEPS_SNAPSHOT: ReplaceSteps = ReplaceSteps {
    create: "create metadata snapshot",
    size: "size metadata snapshot",
    empty: "empty metadata snapshot",
    write: "write metadata snapshot",
    sync: "fsync metadata snapshot",
    rename: "rename metadata snapshot",
    sync_directory: "fsync metadata directory",
};

const STEPS_ENTRIES: ReplaceSteps = ReplaceSteps {
    create: "create metadata entries",
    size: "size metadata entries",
    empty: "empty metadata entries",
    write: "write metadata entries",
    sync: "fsync metadata entries",
    rename: "rename metadata entries",
    sync_directory: "fsync metadata directory",
};

fn io_error(
    op: &'static str,
    path: &Path,
    position: Option<u64>,
) -> impl FnOnce(std::io::Error) -> MetadataError {
    let path = path.to_path_buf();
    move |error| MetadataError::Storage(StorageError::io(op, &path, position, error))
}

/// `[crc][length][bytes]` for the hard state and snapshot files.
fn frame_checked(payload: &[u8]) -> Vec<u8> {
    let mut framed = Vec::with_capacity(payload.len() + 8);
    framed.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    framed.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    framed.extend_from_slice(payload);
    framed
}

fn unframe_checked<'a>(bytes: &'a [u8], path: &Path) -> Result<&'a [u8], MetadataError> {
    let damaged = |reason: &str| MetadataError::Damaged {
        path: path.display().to_string(),
        reason: reason.into(),
    };
    if bytes.len() < 8 {
        return Err(damaged("shorter than its header"));
    }
    let crc = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
    let length = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes")) as usize;
    let payload = bytes
        .get(8..8 + length)
        .ok_or_else(|| damaged("shorter than its recorded length"))?;
    if crc32c::crc32c(payload) != crc {
        return Err(damaged("CRC mismatch"));
    }
    Ok(payload)
}

fn encode_record(entry: &Entry, into: &mut Vec<u8>) {
    let payload = entry.write_to_bytes().expect("an entry always encodes");
    into.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    into.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    into.extend_from_slice(&payload);
}

/// Reads records from the start of `bytes` while they are whole, CRC-clean and shaped like a
/// Raft log. Returns the entries with their offsets and the logical end.
fn scan_records(bytes: &[u8]) -> (Vec<(Entry, u64)>, u64) {
    let mut entries: Vec<(Entry, u64)> = Vec::new();
    let mut position = 0usize;
    while position + RECORD_HEADER_BYTES <= bytes.len() {
        let length = u32::from_le_bytes(bytes[position..position + 4].try_into().expect("4"));
        let crc = u32::from_le_bytes(bytes[position + 4..position + 8].try_into().expect("4"));
        let start = position + RECORD_HEADER_BYTES;
        let Some(payload) = bytes.get(start..start + length as usize) else {
            break;
        };
        if length == 0 || crc32c::crc32c(payload) != crc {
            break;
        }
        let Ok(entry) = Entry::parse_from_bytes(payload) else {
            break;
        };
        if let Some((previous, _)) = entries.last() {
            if entry.index != previous.index + 1 || entry.term < previous.term {
                break;
            }
        }
        entries.push((entry, position as u64));
        position = start + length as usize;
    }
    (entries, position as u64)
}

/// What recovery found on disk.
pub struct Recovered {
    pub store: RaftStore,
    /// Whether any file existed (a node that has never run has none).
    pub existed: bool,
}

impl<F: FileSystem> DurableLog<F> {
    /// Opens (creating) the directory and reads back the log, cutting a torn tail.
    pub async fn open(
        file_system: F,
        directory: &Path,
        log_file_bytes_max: u64,
    ) -> Result<(Self, Recovered), MetadataError> {
        file_system
            .create_directory(directory)
            .await
            .map_err(io_error("create metadata directory", directory, None))?;
        let mut store = RaftStore::default();
        let mut existed = false;
        let snapshot_path = directory.join(SNAPSHOT_FILE);
        if let Some(bytes) = read_whole_file(&file_system, &snapshot_path)
            .await
            .map_err(io_error("read metadata snapshot", &snapshot_path, None))?
        {
            existed = true;
            let payload = unframe_checked(&bytes, &snapshot_path)?;
            store.snapshot =
                Snapshot::parse_from_bytes(payload).map_err(|error| MetadataError::Damaged {
                    path: snapshot_path.display().to_string(),
                    reason: error.to_string(),
                })?;
        }
        let hard_state_path = directory.join(HARD_STATE_FILE);
        if let Some(bytes) = read_whole_file(&file_system, &hard_state_path)
            .await
            .map_err(io_error("read metadata hard state", &hard_state_path, None))?
        {
            existed = true;
            let payload = unframe_checked(&bytes, &hard_state_path)?;
            store.hard_state =
                HardState::parse_from_bytes(payload).map_err(|error| MetadataError::Damaged {
                    path: hard_state_path.display().to_string(),
                    reason: error.to_string(),
                })?;
        }
        let entries_path = directory.join(ENTRIES_FILE);
        let entries_file = file_system
            .open_file(&entries_path, OpenMode::CreateIfMissing)
            .await
            .map_err(io_error("open metadata entries", &entries_path, None))?;
        // The entries file may be new: its name must be durable before anything in it counts
        // (and the directory's own name in its parent).
        file_system
            .sync_directory(directory)
            .await
            .map_err(io_error("fsync metadata directory", directory, None))?;
        if let Some(parent) = directory.parent() {
            file_system.sync_directory(parent).await.map_err(io_error(
                "fsync data directory",
                parent,
                None,
            ))?;
        }
        let size = entries_file.size().await.map_err(io_error(
            "size metadata entries",
            &entries_path,
            None,
        ))?;
        if size > log_file_bytes_max {
            return Err(MetadataError::Damaged {
                path: entries_path.display().to_string(),
                reason: format!("{size} bytes, more than the limit of {log_file_bytes_max}"),
            });
        }
        existed |= size > 0;
        let bytes = entries_file
            .read_at(0, size as usize)
            .await
            .map_err(io_error("read metadata entries", &entries_path, Some(0)))?;
        let (records, end) = scan_records(&bytes);
        if end < size {
            // Cut the torn or zero tail now, durably: a later append must never be followed by
            // stale records that happen to line up.
            entries_file.truncate(end).await.map_err(io_error(
                "truncate metadata entries",
                &entries_path,
                Some(end),
            ))?;
            entries_file.sync_data().await.map_err(io_error(
                "fsync metadata entries",
                &entries_path,
                None,
            ))?;
        }
        let snapshot_index = store.snapshot.get_metadata().index;
        let mut offsets = Vec::new();
        for (entry, offset) in records {
            if entry.index <= snapshot_index {
                continue;
            }
            if entry.index != snapshot_index + 1 + store.entries.len() as u64 {
                break; // A gap after the snapshot: nothing past it can be used.
            }
            offsets.push((entry.index, offset));
            store.entries.push(entry);
        }
        let tail_start = align_down(end);
        let tail = bytes[tail_start as usize..end as usize].to_vec();
        let persisted_term_vote = (store.hard_state.term, store.hard_state.vote);
        let log = DurableLog {
            file_system,
            directory: directory.to_path_buf(),
            entries_file,
            entries_end: end,
            tail,
            offsets,
            persisted_term_vote,
        };
        Ok((log, Recovered { store, existed }))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.join(name)
    }

    /// Makes `hard_state` durable if its term or vote changed.
    pub async fn persist_hard_state(
        &mut self,
        hard_state: &HardState,
    ) -> Result<(), MetadataError> {
        let term_vote = (hard_state.term, hard_state.vote);
        if term_vote == self.persisted_term_vote {
            return Ok(());
        }
        let payload = hard_state.write_to_bytes().expect("a hard state encodes");
        replace_file_durably(
            &self.file_system,
            &self.directory,
            &self.path("hard-state.new"),
            &self.path(HARD_STATE_FILE),
            &frame_checked(&payload),
            &STEPS_HARD_STATE,
        )
        .await?;
        self.persisted_term_vote = term_vote;
        Ok(())
    }

    /// Writes `snapshot` durably (replacing the previous one).
    pub async fn persist_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), MetadataError> {
        let payload = snapshot.write_to_bytes().expect("a snapshot encodes");
        replace_file_durably(
            &self.file_system,
            &self.directory,
            &self.path("snapshot.new"),
            &self.path(SNAPSHOT_FILE),
            &frame_checked(&payload),
            &STEPS_SNAPSHOT,
        )
        .await?;
        Ok(())
    }

    /// Appends `entries` durably, first cutting (durably) any stored entry at or after the
    /// first one's index.
    pub async fn append(&mut self, entries: &[Entry]) -> Result<(), MetadataError> {
        let Some(first) = entries.first() else {
            return Ok(());
        };
        let cut_at = self
            .offsets
            .iter()
            .position(|(index, _)| *index >= first.index);
        if let Some(position) = cut_at {
            let offset = self.offsets[position].1;
            self.truncate_file(offset).await?;
            self.offsets.truncate(position);
        }
        let mut records = std::mem::take(&mut self.tail);
        let block_start = align_down(self.entries_end);
        let mut new_offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            new_offsets.push((entry.index, block_start + records.len() as u64));
            encode_record(entry, &mut records);
        }
        let end = block_start + records.len() as u64;
        let length = align_up(records.len() as u64) as usize;
        let mut buffer = self.entries_file.allocate_buffer(length);
        let block = buffer.as_bytes_mut();
        block[..records.len()].copy_from_slice(&records);
        block[records.len()..].fill(0);
        let path = self.path(ENTRIES_FILE);
        let written = self
            .entries_file
            .write_at(block_start, buffer)
            .await
            .map_err(io_error("write metadata entries", &path, Some(block_start)))?;
        if written < records.len() {
            return Err(
                io_error("write metadata entries", &path, Some(block_start))(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    format!("short write: {written} of {} bytes", records.len()),
                )),
            );
        }
        self.entries_file.sync_data().await.map_err(io_error(
            "fsync metadata entries",
            &path,
            None,
        ))?;
        self.entries_end = end;
        let tail_start = (align_down(end) - block_start) as usize;
        self.tail = records[tail_start..].to_vec();
        self.offsets.extend(new_offsets);
        Ok(())
    }

    async fn truncate_file(&mut self, offset: u64) -> Result<(), MetadataError> {
        let path = self.path(ENTRIES_FILE);
        self.entries_file.truncate(offset).await.map_err(io_error(
            "truncate metadata entries",
            &path,
            Some(offset),
        ))?;
        self.entries_file.sync_data().await.map_err(io_error(
            "fsync metadata entries",
            &path,
            None,
        ))?;
        let tail_start = align_down(offset);
        let tail: Bytes = self
            .entries_file
            .read_at(tail_start, (offset - tail_start) as usize)
            .await
            .map_err(io_error("read metadata entries", &path, Some(tail_start)))?;
        self.tail = tail.to_vec();
        self.entries_end = offset;
        Ok(())
    }

    /// Rewrites the entries file with only `entries` (those after a new snapshot), atomically.
    pub async fn rewrite_entries(&mut self, entries: &[Entry]) -> Result<(), MetadataError> {
        if entries.is_empty() {
            self.offsets.clear();
            return self.truncate_file(0).await;
        }
        let mut records = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for entry in entries {
            offsets.push((entry.index, records.len() as u64));
            encode_record(entry, &mut records);
        }
        let path = self.path(ENTRIES_FILE);
        replace_file_durably(
            &self.file_system,
            &self.directory,
            &self.path("entries.new"),
            &path,
            &records,
            &STEPS_ENTRIES,
        )
        .await?;
        self.entries_file = self
            .file_system
            .open_file(&path, OpenMode::Existing)
            .await
            .map_err(io_error("open metadata entries", &path, None))?;
        let end = records.len() as u64;
        self.tail = records[align_down(end) as usize..].to_vec();
        self.entries_end = end;
        self.offsets = offsets;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;
    use spate_storage::MemoryFileSystem;

    fn entry(index: u64, term: u64, bytes: usize) -> Entry {
        Entry {
            index,
            term,
            data: Bytes::from(vec![index as u8; bytes]),
            ..Entry::default()
        }
    }

    fn reopen(disk: &MemoryFileSystem) -> (DurableLog<MemoryFileSystem>, RaftStore) {
        let (log, recovered) =
            block_on(DurableLog::open(disk.clone(), Path::new("/m"), u64::MAX)).unwrap();
        (log, recovered.store)
    }

    fn indexes_and_terms(store: &RaftStore) -> Vec<(u64, u64)> {
        store.entries.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn appended_entries_survive_a_crash_and_conflicts_are_cut() {
        let disk = MemoryFileSystem::new(1);
        let (mut log, _) = reopen(&disk);
        block_on(log.append(&(1..=5).map(|i| entry(i, 1, 3000)).collect::<Vec<_>>())).unwrap();
        block_on(log.append(&[entry(6, 2, 10)])).unwrap();
        // A new leader's entries replace 4..=6.
        block_on(log.append(&[entry(4, 3, 100), entry(5, 3, 100)])).unwrap();
        disk.crash();
        let (_, store) = reopen(&disk);
        assert_eq!(
            indexes_and_terms(&store),
            vec![(1, 1), (2, 1), (3, 1), (4, 3), (5, 3)]
        );
        assert_eq!(store.entries[4].data, Bytes::from(vec![5u8; 100]));
    }

    #[test]
    fn a_torn_tail_is_cut_and_later_appends_are_not_followed_by_stale_records() {
        let disk = MemoryFileSystem::new(2);
        let (mut log, _) = reopen(&disk);
        block_on(log.append(&(1..=3).map(|i| entry(i, 1, 2000)).collect::<Vec<_>>())).unwrap();
        drop(log);
        // Damage the third record's payload: recovery keeps 1 and 2 and cuts the rest.
        let bytes = disk.file_bytes(Path::new("/m/entries")).unwrap();
        let (records, _) = scan_records(&bytes);
        let third = records[2].1;
        disk.overwrite_durably(Path::new("/m/entries"), third + 20, b"XXXX");
        let (mut log, store) = reopen(&disk);
        assert_eq!(indexes_and_terms(&store), vec![(1, 1), (2, 1)]);
        block_on(log.append(&[entry(3, 2, 1)])).unwrap();
        disk.crash();
        let (_, store) = reopen(&disk);
        assert_eq!(indexes_and_terms(&store), vec![(1, 1), (2, 1), (3, 2)]);
    }

    #[test]
    fn hard_state_and_snapshot_round_trip_and_damage_is_reported() {
        let disk = MemoryFileSystem::new(3);
        let (mut log, _) = reopen(&disk);
        let hard_state = HardState {
            term: 7,
            vote: 2,
            ..HardState::default()
        };
        block_on(log.persist_hard_state(&hard_state)).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 10;
        snapshot.mut_metadata().term = 6;
        snapshot.data = Bytes::from_static(b"image");
        block_on(log.persist_snapshot(&snapshot)).unwrap();
        block_on(log.rewrite_entries(&[entry(11, 6, 5), entry(12, 7, 5)])).unwrap();
        block_on(log.append(&[entry(13, 7, 5)])).unwrap();
        disk.crash();
        let (_, store) = reopen(&disk);
        assert_eq!((store.hard_state.term, store.hard_state.vote), (7, 2));
        assert_eq!(store.snapshot, snapshot);
        assert_eq!(indexes_and_terms(&store), vec![(11, 6), (12, 7), (13, 7)]);
        assert_eq!(store.initial_state().unwrap().hard_state.commit, 10);
        disk.overwrite_durably(Path::new("/m/snapshot"), 12, b"!");
        assert!(matches!(
            block_on(DurableLog::open(disk.clone(), Path::new("/m"), u64::MAX)),
            Err(MetadataError::Damaged { .. })
        ));
    }

    #[test]
    fn entries_covered_by_the_snapshot_are_skipped_at_recovery() {
        let disk = MemoryFileSystem::new(4);
        let (mut log, _) = reopen(&disk);
        block_on(log.append(&(1..=4).map(|i| entry(i, 1, 10)).collect::<Vec<_>>())).unwrap();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = 2;
        snapshot.mut_metadata().term = 1;
        // Crash between the snapshot and the rewrite of the entries file.
        block_on(log.persist_snapshot(&snapshot)).unwrap();
        disk.crash();
        let (_, store) = reopen(&disk);
        assert_eq!(indexes_and_terms(&store), vec![(3, 1), (4, 1)]);
        assert_eq!(store.first_index_value(), 3);
        assert_eq!(store.term_of(2), Some(1));
    }

    /// Any damage to an entries file (bytes overwritten, the file cut short, garbage appended)
    /// recovers to a prefix of what was written, never to something else.
    #[test]
    fn any_damage_recovers_a_prefix_of_the_written_entries() {
        let mut rng = spate_storage::SimulationRng::new(7);
        for case in 0..500 {
            let count = 1 + rng.below(30);
            let mut term = 1;
            let written: Vec<Entry> = (1..=count)
                .map(|index| {
                    term += rng.below(2);
                    entry(index, term, rng.below(300) as usize)
                })
                .collect();
            let mut bytes = Vec::new();
            for entry in &written {
                encode_record(entry, &mut bytes);
            }
            match rng.below(3) {
                0 => {
                    for _ in 0..1 + rng.below(4) {
                        let at = rng.below(bytes.len() as u64) as usize;
                        bytes[at] ^= 1 + rng.below(255) as u8;
                    }
                }
                1 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
                _ => bytes.extend((0..rng.below(100)).map(|_| rng.below(256) as u8)),
            }
            let (recovered, end) = scan_records(&bytes);
            assert!(end as usize <= bytes.len(), "case {case}");
            assert!(recovered.len() <= written.len(), "case {case}");
            for ((entry, _), original) in recovered.iter().zip(&written) {
                assert_eq!(
                    entry, original,
                    "case {case}: recovered an entry never written"
                );
            }
        }
        // Nothing but garbage: nothing recovered, no panic.
        for length in 0..256 {
            let garbage: Vec<u8> = (0..length).map(|_| rng.below(256) as u8).collect();
            assert!(scan_records(&garbage).0.is_empty(), "length {length}");
        }
    }
}
