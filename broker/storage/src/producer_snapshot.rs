//! Producer snapshot files: the producer state of a partition as of one offset, so that after a
//! restart a retried batch is still recognised without replaying the whole log.
//!
//! File `<offset:020>.producers` (offset: everything before it is reflected, nothing after).
//! Layout, little-endian, zero-padded to a 4096-byte block:
//!
//! ```text
//! 0  magic u32 "SPPS" | 4 version u32 (2) | 8 offset u64 | 16 entry count u32 | 20 body bytes u32
//! 24 entries, each: producer id i64 | last append ms i64 | epoch i16 | batch count u16
//!                   then per batch: first sequence i32 | last sequence i32 | base offset u64 |
//!                   next offset u64
//!    version 2 only, after the entries: open transaction count u32, then each:
//!                   producer id i64 | first offset u64
//! 24 + body bytes: CRC-32C u32 of bytes [0, 24 + body bytes)
//! ```
//!
//! Version 1 (before transactions) has no open transactions and is still read.
//!
//! Written as `<name>.tmp`, synced, renamed over the name, directory synced: a name only ever
//! exposes a whole, synced snapshot. This file holds the codec and the file operations; when
//! snapshots are written, which one is loaded and the replay after it are `log`'s decisions.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};

use spate_protocol::constants::PRODUCER_BATCHES_RETAINED;

use super::error::StorageError;
use super::file::{
    align_up, replace_file_durably, FileSystem, OpenMode, ReplaceSteps, StorageFile,
};
use super::producer_state::{ProducerEntry, ProducerState, RetainedBatch};
use super::segment::SEGMENT_NAME_DIGITS;

pub const PRODUCER_SNAPSHOT_SUFFIX: &str = "producers";
pub const TEMPORARY_SUFFIX: &str = "tmp";
/// Snapshots kept per partition: the newest, and one to fall back to if it is damaged.
pub const PRODUCER_SNAPSHOTS_KEPT: usize = 2;

const MAGIC: u32 = u32::from_le_bytes(*b"SPPS");
const VERSION: u32 = 2;
/// Snapshots written before transactions: no open transactions section.
const VERSION_WITHOUT_TRANSACTIONS: u32 = 1;
const ONGOING_TRANSACTION_BYTES: usize = 16;
const HEADER_BYTES: usize = 24;
const ENTRY_HEADER_BYTES: usize = 20;
const RETAINED_BATCH_BYTES: usize = 24;
const CRC_BYTES: usize = 4;
/// The largest entry: its header and a full window of retained batches.
pub const ENTRY_BYTES_MAX: usize =
    ENTRY_HEADER_BYTES + PRODUCER_BATCHES_RETAINED * RETAINED_BATCH_BYTES;

/// The largest snapshot of a state holding `producers_max` producers (and as many open
/// transactions: a transaction is opened only through a verification guard, bounded by the
/// same count, but the producers holding them may have been evicted, so twice is allowed).
pub fn snapshot_bytes_max(producers_max: usize) -> usize {
    HEADER_BYTES + producers_max * (ENTRY_BYTES_MAX + 2 * ONGOING_TRANSACTION_BYTES) + 4 + CRC_BYTES
}

/// `00000000000000000042.producers` for offset 42.
pub fn snapshot_file_name(offset: u64) -> String {
    format!(
        "{offset:0width$}.{PRODUCER_SNAPSHOT_SUFFIX}",
        width = SEGMENT_NAME_DIGITS
    )
}

pub fn snapshot_path(directory: &Path, offset: u64) -> PathBuf {
    directory.join(snapshot_file_name(offset))
}

fn temporary_path(directory: &Path, offset: u64) -> PathBuf {
    directory.join(format!("{}.{TEMPORARY_SUFFIX}", snapshot_file_name(offset)))
}

/// What a name in a partition directory is, as far as snapshots are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotName {
    Snapshot(u64),
    /// A snapshot being written when the process stopped.
    Temporary(u64),
}

pub fn parse_snapshot_file_name(name: &str) -> Option<SnapshotName> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != SEGMENT_NAME_DIGITS || !stem.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    let offset = stem.parse().ok()?;
    match suffix.split_once('.') {
        None if suffix == PRODUCER_SNAPSHOT_SUFFIX => Some(SnapshotName::Snapshot(offset)),
        Some((PRODUCER_SNAPSHOT_SUFFIX, TEMPORARY_SUFFIX)) => Some(SnapshotName::Temporary(offset)),
        _ => None,
    }
}

/// The snapshot bytes of `state` and the open transactions `ongoing` (producer id, first
/// offset; in producer id order, each before `offset`) as of `offset` (entries in producer id
/// order), unpadded.
pub fn encode(state: &ProducerState, ongoing: &[(i64, u64)], offset: u64) -> Vec<u8> {
    let mut entries: Vec<(i64, &ProducerEntry)> = state.entries().collect();
    entries.sort_unstable_by_key(|(id, _)| *id);
    let mut bytes = Vec::with_capacity(HEADER_BYTES + entries.len() * ENTRY_BYTES_MAX + 4);
    bytes.extend_from_slice(&MAGIC.to_le_bytes());
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&offset.to_le_bytes());
    bytes.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&0u32.to_le_bytes());
    for (producer_id, entry) in entries {
        assert!(
            entry
                .batches
                .back()
                .is_none_or(|last| last.next_offset <= offset),
            "a snapshot holds only batches before its offset"
        );
        bytes.extend_from_slice(&producer_id.to_le_bytes());
        bytes.extend_from_slice(&entry.last_append_ms.to_le_bytes());
        bytes.extend_from_slice(&entry.epoch.to_le_bytes());
        bytes.extend_from_slice(&(entry.batches.len() as u16).to_le_bytes());
        for batch in &entry.batches {
            bytes.extend_from_slice(&batch.first_sequence.to_le_bytes());
            bytes.extend_from_slice(&batch.last_sequence.to_le_bytes());
            bytes.extend_from_slice(&batch.base_offset.to_le_bytes());
            bytes.extend_from_slice(&batch.next_offset.to_le_bytes());
        }
    }
    bytes.extend_from_slice(&(ongoing.len() as u32).to_le_bytes());
    for (producer_id, first_offset) in ongoing {
        assert!(
            *first_offset < offset,
            "a snapshot holds transactions opened before it"
        );
        bytes.extend_from_slice(&producer_id.to_le_bytes());
        bytes.extend_from_slice(&first_offset.to_le_bytes());
    }
    let body_bytes = (bytes.len() - HEADER_BYTES) as u32;
    bytes[20..24].copy_from_slice(&body_bytes.to_le_bytes());
    let crc = crc32c::crc32c(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    bytes
}

/// Reads fixed-size little-endian fields front to back; `None` past the end.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Cursor<'a> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let field = self.bytes.get(self.at..self.at + N)?;
        self.at += N;
        field.try_into().ok()
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take().map(i16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take().map(u32::from_le_bytes)
    }
    fn i32(&mut self) -> Option<i32> {
        self.take().map(i32::from_le_bytes)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }
    fn i64(&mut self) -> Option<i64> {
        self.take().map(i64::from_le_bytes)
    }
}

/// A decoded snapshot: its offset and its producers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub offset: u64,
    pub producers: Vec<(i64, ProducerEntry)>,
    /// Open transactions (producer id, first offset), in producer id order.
    pub ongoing: Vec<(i64, u64)>,
}

/// Decodes snapshot bytes (padding after the CRC allowed). Never panics on any input; every
/// field is checked against the layout and the state's invariants.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, String> {
    let truncated = || format!("truncated at {} bytes", bytes.len());
    let mut cursor = Cursor { bytes, at: 0 };
    let magic = cursor.u32().ok_or_else(truncated)?;
    let version = cursor.u32().ok_or_else(truncated)?;
    if magic != MAGIC || !(version == VERSION || version == VERSION_WITHOUT_TRANSACTIONS) {
        return Err(format!("unknown magic {magic:#010x} or version {version}"));
    }
    let offset = cursor.u64().ok_or_else(truncated)?;
    let entry_count = cursor.u32().ok_or_else(truncated)? as usize;
    let body_bytes = cursor.u32().ok_or_else(truncated)? as usize;
    let crc_at = HEADER_BYTES + body_bytes;
    let Some(crc_field) = bytes.get(crc_at..crc_at + CRC_BYTES) else {
        return Err(format!(
            "body of {body_bytes} bytes runs past the {} bytes read",
            bytes.len()
        ));
    };
    let stored_crc = u32::from_le_bytes(crc_field.try_into().map_err(|_| truncated())?);
    let crc = crc32c::crc32c(&bytes[..crc_at]);
    if stored_crc != crc {
        return Err(format!("CRC {stored_crc:#010x}, bytes give {crc:#010x}"));
    }
    if entry_count > body_bytes / ENTRY_HEADER_BYTES {
        return Err(format!(
            "{entry_count} entries cannot fit {body_bytes} bytes"
        ));
    }
    let mut cursor = Cursor {
        bytes: &bytes[..crc_at],
        at: HEADER_BYTES,
    };
    let mut producers = Vec::with_capacity(entry_count);
    let mut previous_id = None;
    for _ in 0..entry_count {
        let producer_id = cursor.i64().ok_or_else(truncated)?;
        let last_append_ms = cursor.i64().ok_or_else(truncated)?;
        let epoch = cursor.i16().ok_or_else(truncated)?;
        let batch_count = cursor.u16().ok_or_else(truncated)? as usize;
        if producer_id < 0
            || epoch < 0
            || previous_id.is_some_and(|previous| previous >= producer_id)
        {
            return Err(format!(
                "entry for producer {producer_id} epoch {epoch} is negative or out of order"
            ));
        }
        previous_id = Some(producer_id);
        if batch_count > PRODUCER_BATCHES_RETAINED {
            return Err(format!(
                "producer {producer_id} has {batch_count} batches, at most {PRODUCER_BATCHES_RETAINED} are kept"
            ));
        }
        let mut batches = VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED);
        for _ in 0..batch_count {
            let batch = RetainedBatch {
                first_sequence: cursor.i32().ok_or_else(truncated)?,
                last_sequence: cursor.i32().ok_or_else(truncated)?,
                base_offset: cursor.u64().ok_or_else(truncated)?,
                next_offset: cursor.u64().ok_or_else(truncated)?,
            };
            let follows = batches
                .back()
                .is_none_or(|last: &RetainedBatch| last.next_offset <= batch.base_offset);
            if batch.first_sequence < 0
                || batch.last_sequence < 0
                || batch.base_offset >= batch.next_offset
                || batch.next_offset > offset
                || !follows
            {
                return Err(format!(
                    "producer {producer_id} has an invalid batch {batch:?}"
                ));
            }
            batches.push_back(batch);
        }
        producers.push((
            producer_id,
            ProducerEntry {
                epoch,
                batches,
                last_append_ms,
                held_at: None,
            },
        ));
    }
    let mut ongoing = Vec::new();
    if version == VERSION {
        let ongoing_count = cursor.u32().ok_or_else(truncated)? as usize;
        if ongoing_count > (crc_at - cursor.at) / ONGOING_TRANSACTION_BYTES {
            return Err(format!(
                "{ongoing_count} open transactions cannot fit the body"
            ));
        }
        ongoing.reserve(ongoing_count);
        for _ in 0..ongoing_count {
            let producer_id = cursor.i64().ok_or_else(truncated)?;
            let first_offset = cursor.u64().ok_or_else(truncated)?;
            let in_order = ongoing
                .last()
                .is_none_or(|(previous, _): &(i64, u64)| *previous < producer_id);
            if producer_id < 0 || first_offset >= offset || !in_order {
                return Err(format!(
                    "open transaction of producer {producer_id} at {first_offset} is invalid"
                ));
            }
            ongoing.push((producer_id, first_offset));
        }
    }
    if cursor.at != crc_at {
        return Err(format!(
            "entries end at byte {} but the body ends at {crc_at}",
            cursor.at
        ));
    }
    Ok(Snapshot {
        offset,
        producers,
        ongoing,
    })
}

fn io_error<'a>(
    op: &'static str,
    path: &'a Path,
    position: Option<u64>,
) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |error| StorageError::io(op, path, position, error)
}

/// Durably writes `bytes` (from [`encode`]) as the snapshot at `offset`, replacing any.
pub async fn write_snapshot<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    offset: u64,
    bytes: &[u8],
) -> Result<(), StorageError> {
    replace_file_durably(
        file_system,
        directory,
        &temporary_path(directory, offset),
        &snapshot_path(directory, offset),
        bytes,
        &ReplaceSteps {
            create: "creating producer snapshot",
            size: "sizing producer snapshot",
            empty: "emptying producer snapshot",
            write: "writing producer snapshot",
            sync: "syncing producer snapshot",
            rename: "renaming producer snapshot",
            sync_directory: "syncing partition directory",
        },
    )
    .await
}

/// Reads and decodes the snapshot at `offset`. A file larger than `bytes_max` or one that does
/// not decode is `Corrupt`.
pub async fn read_snapshot<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    offset: u64,
    bytes_max: usize,
) -> Result<Snapshot, StorageError> {
    let path = snapshot_path(directory, offset);
    let file = file_system
        .open_file(&path, OpenMode::Existing)
        .await
        .map_err(io_error("opening producer snapshot", &path, None))?;
    let size = file
        .size()
        .await
        .map_err(io_error("sizing producer snapshot", &path, None))?;
    // The padding after the CRC may reach up to one block past the largest snapshot.
    if size > align_up(bytes_max as u64) {
        return Err(StorageError::corrupt(
            &path,
            0,
            format!("{size} bytes, more than the largest snapshot ({bytes_max})"),
        ));
    }
    let bytes = file.read_at(0, size as usize).await.map_err(io_error(
        "reading producer snapshot",
        &path,
        Some(0),
    ))?;
    let snapshot = decode(&bytes).map_err(|reason| StorageError::corrupt(&path, 0, reason))?;
    if snapshot.offset != offset {
        return Err(StorageError::corrupt(
            &path,
            8,
            format!("holds offset {} but is named {offset}", snapshot.offset),
        ));
    }
    Ok(snapshot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::producer_state::ProducerBatch;

    fn sample_state() -> ProducerState {
        let mut state = ProducerState::new(64, u64::MAX);
        for (producer_id, epoch) in [(3, 0), (1, 2), (900, 7)] {
            for sequence in 0..(producer_id as i32 % 7 + 1) {
                let offset = (producer_id as u64) * 100 + sequence as u64;
                state.record(
                    &ProducerBatch {
                        producer_id,
                        producer_epoch: epoch,
                        first_sequence: sequence,
                        last_sequence: sequence,
                    },
                    offset,
                    offset + 1,
                    offset + 1,
                    1_700_000_000_000 + producer_id,
                );
            }
        }
        state
    }

    #[test]
    fn an_encoded_state_decodes_to_the_same_producers() {
        let state = sample_state();
        let bytes = encode(&state, &[(1, 5), (77, 99_999)], 100_000);
        let snapshot = decode(&bytes).expect("decodes");
        assert_eq!(snapshot.offset, 100_000);
        assert_eq!(snapshot.ongoing, vec![(1, 5), (77, 99_999)]);
        assert_eq!(snapshot.producers.len(), state.len());
        for (producer_id, entry) in &snapshot.producers {
            assert_eq!(Some(entry), state.get(*producer_id), "{producer_id}");
        }
    }

    #[test]
    fn padding_after_the_crc_is_ignored() {
        let mut bytes = encode(&sample_state(), &[], 100_000);
        bytes.resize(4096, 0);
        assert!(decode(&bytes).is_ok());
    }

    #[test]
    fn a_flipped_bit_anywhere_fails_the_snapshot() {
        let bytes = encode(&sample_state(), &[(1, 5)], 100_000);
        for position in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[position] ^= 0x10;
            assert!(decode(&damaged).is_err(), "bit at byte {position}");
        }
    }

    /// A version 1 snapshot (before transactions), as that build wrote it.
    fn version_1(state: &ProducerState, offset: u64) -> Vec<u8> {
        let mut bytes = encode(state, &[], offset);
        bytes.truncate(bytes.len() - CRC_BYTES - 4);
        bytes[4..8].copy_from_slice(&VERSION_WITHOUT_TRANSACTIONS.to_le_bytes());
        let body_bytes = (bytes.len() - HEADER_BYTES) as u32;
        bytes[20..24].copy_from_slice(&body_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_version_1_snapshot_is_still_read_without_transactions() {
        let state = sample_state();
        let snapshot = decode(&version_1(&state, 100_000)).expect("decodes");
        assert_eq!(snapshot.producers.len(), state.len());
        assert!(snapshot.ongoing.is_empty());
    }

    #[test]
    fn an_open_transaction_at_or_after_the_offset_fails_the_snapshot() {
        let bytes = encode(&ProducerState::new(4, 1), &[], 10);
        assert!(decode(&bytes).is_ok());
        let mut forged = bytes[..bytes.len() - CRC_BYTES - 4].to_vec();
        forged.extend_from_slice(&1u32.to_le_bytes());
        forged.extend_from_slice(&3i64.to_le_bytes());
        forged.extend_from_slice(&10u64.to_le_bytes());
        let body_bytes = (forged.len() - HEADER_BYTES) as u32;
        forged[20..24].copy_from_slice(&body_bytes.to_le_bytes());
        let crc = crc32c::crc32c(&forged);
        forged.extend_from_slice(&crc.to_le_bytes());
        assert!(decode(&forged).is_err());
    }

    #[test]
    fn an_empty_file_is_not_a_snapshot() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[0; 4096]).is_err());
    }

    #[test]
    fn snapshot_names_parse_back_to_their_offsets() {
        assert_eq!(snapshot_file_name(42), "00000000000000000042.producers");
        assert_eq!(
            parse_snapshot_file_name("00000000000000000042.producers"),
            Some(SnapshotName::Snapshot(42))
        );
        assert_eq!(
            parse_snapshot_file_name("00000000000000000042.producers.tmp"),
            Some(SnapshotName::Temporary(42))
        );
        for other in [
            "00000000000000000042.log",
            "42.producers",
            "log-start-offset",
        ] {
            assert_eq!(parse_snapshot_file_name(other), None, "{other}");
        }
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn decoding_a_snapshot_with_a_forged_header_never_panics(
            entry_count in proptest::prelude::any::<u32>(),
            body_bytes in 0u32..600,
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
        ) {
            // A valid CRC over forged counts: only the structural checks stand in the way.
            let mut bytes = Vec::new();
            bytes.extend_from_slice(&MAGIC.to_le_bytes());
            bytes.extend_from_slice(&VERSION.to_le_bytes());
            bytes.extend_from_slice(&u64::MAX.to_le_bytes());
            bytes.extend_from_slice(&entry_count.to_le_bytes());
            bytes.extend_from_slice(&body_bytes.to_le_bytes());
            let mut body = tail.clone();
            body.resize(body_bytes as usize, 0);
            bytes.extend_from_slice(&body);
            let crc = crc32c::crc32c(&bytes);
            bytes.extend_from_slice(&crc.to_le_bytes());
            let _ = decode(&bytes);
        }
    }
}
