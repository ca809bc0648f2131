//! Truncation of a partition's log from its end (a follower dropping what diverges from its
//! leader, KIP-101/279) or as a whole (a follower restarting at the leader's log start), made
//! crash-safe by an intent file: `truncation` names what to cut and is written durably before
//! anything is removed; the removals are then done (each step can be done again), and the file
//! removed last. An open that finds the file completes the truncation before it recovers
//! anything, so a crash at any step leaves either the old log (the file never became durable) or
//! the truncated one, never a mix; see `FORMAT.md`, "Truncation".
//!
//! This module does the file work only; the log (`log::replica`) decides where to cut (a batch
//! boundary), holds every other writer off while it runs, and reloads its state afterwards.

use std::path::{Path, PathBuf};

use crate::checkpoint::{read_checkpoint, write_checkpoint, CheckpointKind};
use crate::error::StorageError;
use crate::file::{replace_file_durably, FileSystem, OpenMode, ReplaceSteps, StorageFile};
use crate::leader_epochs::{leader_epochs_path, read_leader_epochs, write_leader_epochs};
use crate::producer_snapshot::{parse_snapshot_file_name, SnapshotName};
use crate::segment::{parse_segment_file_name, SegmentFileKind, SegmentPaths};
use crate::txn_index::{keep_entries_before, parse_txn_index_file_name, txn_index_path};

pub const TRUNCATION_FILE_NAME: &str = "truncation";
pub const TRUNCATION_TEMPORARY_FILE_NAME: &str = "truncation.tmp";

const MAGIC: u32 = u32::from_le_bytes(*b"SPTR");
const VERSION: u32 = 1;
const MODE_TO: u32 = 1;
const MODE_FULLY: u32 = 2;
const CRC_AT: usize = 40;
const RECORD_BYTES: usize = CRC_AT + 4;

const STEPS: ReplaceSteps = ReplaceSteps {
    create: "creating truncation intent",
    size: "sizing truncation intent",
    empty: "emptying truncation intent",
    write: "writing truncation intent",
    sync: "syncing truncation intent",
    rename: "renaming truncation intent",
    sync_directory: "syncing directory",
};

/// What a truncation removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Everything at or after `end_offset`, a batch boundary at byte `position` of the segment
    /// based at `segment_base_offset` (the segment holding it, or ending there and so cut to
    /// nothing when `position` is 0).
    To {
        end_offset: u64,
        segment_base_offset: u64,
        position: u64,
    },
    /// Every segment; the log starts over, empty, at `start_offset`.
    Fully { start_offset: u64 },
}

impl Truncation {
    fn encode(&self) -> [u8; RECORD_BYTES] {
        let (mode, offset, base, position) = match *self {
            Truncation::To {
                end_offset,
                segment_base_offset,
                position,
            } => (MODE_TO, end_offset, segment_base_offset, position),
            Truncation::Fully { start_offset } => (MODE_FULLY, start_offset, 0, 0),
        };
        let mut record = [0u8; RECORD_BYTES];
        record[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        record[4..8].copy_from_slice(&VERSION.to_le_bytes());
        record[8..12].copy_from_slice(&mode.to_le_bytes());
        record[16..24].copy_from_slice(&offset.to_le_bytes());
        record[24..32].copy_from_slice(&base.to_le_bytes());
        record[32..40].copy_from_slice(&position.to_le_bytes());
        let crc = crc32c::crc32c(&record[..CRC_AT]);
        record[CRC_AT..].copy_from_slice(&crc.to_le_bytes());
        record
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < RECORD_BYTES {
            return Err(format!("{} bytes, {RECORD_BYTES} needed", bytes.len()));
        }
        let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
        if word(0) != MAGIC || word(4) != VERSION {
            return Err(format!(
                "unknown magic {:#010x} or version {}",
                word(0),
                word(4)
            ));
        }
        let crc = crc32c::crc32c(&bytes[..CRC_AT]);
        if word(CRC_AT) != crc {
            return Err(format!(
                "CRC {:#010x}, bytes give {crc:#010x}",
                word(CRC_AT)
            ));
        }
        match word(8) {
            MODE_TO => Ok(Truncation::To {
                end_offset: long(16),
                segment_base_offset: long(24),
                position: long(32),
            }),
            MODE_FULLY => Ok(Truncation::Fully {
                start_offset: long(16),
            }),
            mode => Err(format!("unknown truncation mode {mode}")),
        }
    }
}

fn intent_path(directory: &Path) -> PathBuf {
    directory.join(TRUNCATION_FILE_NAME)
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StorageError + 'a {
    move |error| StorageError::io(op, path, None, error)
}

/// The commit point: once this returns, the truncation happens even across a crash.
pub async fn write_intent<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    truncation: &Truncation,
) -> Result<(), StorageError> {
    replace_file_durably(
        file_system,
        directory,
        &directory.join(TRUNCATION_TEMPORARY_FILE_NAME),
        &intent_path(directory),
        &truncation.encode(),
        &STEPS,
    )
    .await
}

async fn read_intent<F: FileSystem>(
    file_system: &F,
    directory: &Path,
) -> Result<Option<Truncation>, StorageError> {
    let path = intent_path(directory);
    let file = match file_system.open_file(&path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => {
            return Err(StorageError::io(
                "opening truncation intent",
                &path,
                None,
                error,
            ))
        }
    };
    let bytes = file
        .read_at(0, RECORD_BYTES)
        .await
        .map_err(io("reading truncation intent", &path))?;
    // The rename only ever exposes a synced file: a bad one is damage, not a torn write.
    Truncation::decode(&bytes)
        .map(Some)
        .map_err(|reason| StorageError::corrupt(&path, 0, reason))
}

async fn remove_if_present<F: FileSystem>(fs: &F, path: &Path) -> Result<(), StorageError> {
    match fs.remove_file(path).await {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(StorageError::io("removing file", path, None, error)),
    }
}

/// Lowers the checkpoint of `kind` to `offset` if it is above it. A damaged cleaner offset (a
/// hint) is removed instead.
async fn lower_checkpoint<F: FileSystem>(
    fs: &F,
    directory: &Path,
    kind: CheckpointKind,
    offset: u64,
) -> Result<(), StorageError> {
    match read_checkpoint(fs, directory, kind).await {
        Ok(Some(current)) if current > offset => {
            write_checkpoint(fs, directory, kind, offset).await
        }
        Ok(_) => Ok(()),
        Err(StorageError::Corrupt { .. }) if kind == CheckpointKind::CleanerOffset => {
            remove_if_present(fs, &directory.join(kind.file_name())).await
        }
        Err(error) => Err(error),
    }
}

/// Does every removal `truncation` names in `directory` (whose entries are `names`), then
/// removes the intent. Each step is idempotent, so this can run again after a crash.
pub async fn complete<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: &[String],
    truncation: Truncation,
) -> Result<(), StorageError> {
    match truncation {
        Truncation::To {
            end_offset,
            segment_base_offset,
            position,
        } => {
            cut_to(
                fs,
                directory,
                names,
                end_offset,
                segment_base_offset,
                position,
            )
            .await?
        }
        Truncation::Fully { start_offset } => cut_fully(fs, directory, names, start_offset).await?,
    }
    fs.sync_directory(directory)
        .await
        .map_err(io("syncing partition directory", directory))?;
    remove_if_present(fs, &intent_path(directory)).await?;
    fs.sync_directory(directory)
        .await
        .map_err(io("syncing partition directory", directory))
}

async fn cut_to<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: &[String],
    end_offset: u64,
    segment_base_offset: u64,
    position: u64,
) -> Result<(), StorageError> {
    // Promises past the new end go first: the open's lost-data check holds the log end against
    // them, and a recovery point or snapshot past it would make the cut look like lost data.
    for kind in [
        CheckpointKind::RecoveryPoint,
        CheckpointKind::CommittedOffset,
        CheckpointKind::CleanerOffset,
    ] {
        lower_checkpoint(fs, directory, kind, end_offset).await?;
    }
    let mut epochs = read_leader_epochs(fs, directory).await?;
    if epochs.truncate_from_end(end_offset) {
        write_leader_epochs(fs, directory, &epochs).await?;
    }
    for name in names {
        let path = directory.join(name);
        if let Some(base_offset) = parse_segment_file_name(name)
            .map(|(base_offset, _)| base_offset)
            .or_else(|| parse_txn_index_file_name(name))
        {
            if base_offset > segment_base_offset {
                remove_if_present(fs, &path).await?;
            }
            continue;
        }
        match parse_snapshot_file_name(name) {
            Some(SnapshotName::Snapshot(offset)) if offset > end_offset => {
                remove_if_present(fs, &path).await?
            }
            Some(SnapshotName::Temporary(_)) => remove_if_present(fs, &path).await?,
            _ => {}
        }
    }
    // Aborted transactions whose marker is cut.
    keep_entries_before(
        fs,
        &txn_index_path(directory, segment_base_offset),
        end_offset,
    )
    .await?;
    let log_path = SegmentPaths::new(directory, segment_base_offset).log;
    let log = fs
        .open_file(&log_path, OpenMode::Existing)
        .await
        .map_err(io("opening segment to truncate", &log_path))?;
    let size = log
        .size()
        .await
        .map_err(io("sizing segment to truncate", &log_path))?;
    if size > position {
        log.truncate(position).await.map_err(|error| {
            StorageError::io("truncating segment", &log_path, Some(position), error)
        })?;
    }
    // Always: an earlier attempt may have cut it and crashed before its sync.
    log.sync_data()
        .await
        .map_err(io("syncing truncated segment", &log_path))
}

async fn cut_fully<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: &[String],
    start_offset: u64,
) -> Result<(), StorageError> {
    // Segment logs first (without its log a segment does not exist), then everything else.
    for name in names {
        if let Some((_, SegmentFileKind::Log)) = parse_segment_file_name(name) {
            remove_if_present(fs, &directory.join(name)).await?;
        }
    }
    for name in names {
        let doomed = parse_segment_file_name(name).is_some()
            || parse_txn_index_file_name(name).is_some()
            || parse_snapshot_file_name(name).is_some();
        if doomed {
            remove_if_present(fs, &directory.join(name)).await?;
        }
    }
    remove_if_present(
        fs,
        &directory.join(CheckpointKind::CleanerOffset.file_name()),
    )
    .await?;
    remove_if_present(fs, &leader_epochs_path(directory)).await?;
    fs.sync_directory(directory)
        .await
        .map_err(io("syncing partition directory", directory))?;
    for kind in [
        CheckpointKind::LogStart,
        CheckpointKind::RecoveryPoint,
        CheckpointKind::CommittedOffset,
    ] {
        write_checkpoint(fs, directory, kind, start_offset).await?;
    }
    Ok(())
}

/// At open, before anything else is read: completes a truncation a crash interrupted (its
/// intent durable), and removes an intent being written. Returns the directory's names as they
/// are afterwards.
pub async fn finish_interrupted_truncation<F: FileSystem>(
    fs: &F,
    directory: &Path,
    names: Vec<String>,
) -> Result<Vec<String>, StorageError> {
    let temporary = names
        .iter()
        .any(|name| name == TRUNCATION_TEMPORARY_FILE_NAME);
    let intent = names.iter().any(|name| name == TRUNCATION_FILE_NAME);
    if !temporary && !intent {
        return Ok(names);
    }
    if temporary {
        remove_if_present(fs, &directory.join(TRUNCATION_TEMPORARY_FILE_NAME)).await?;
    }
    if intent {
        if let Some(truncation) = read_intent(fs, directory).await? {
            tracing::warn!(directory = %directory.display(), ?truncation,
                "completing a truncation interrupted by a crash");
            complete(fs, directory, &names, truncation).await?;
        }
    }
    fs.list_directory(directory)
        .await
        .map_err(io("listing partition directory", directory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_intents_decode_to_the_same_truncation() {
        for truncation in [
            Truncation::To {
                end_offset: 42,
                segment_base_offset: 40,
                position: 4096 + 17,
            },
            Truncation::Fully { start_offset: 99 },
        ] {
            assert_eq!(Truncation::decode(&truncation.encode()), Ok(truncation));
        }
    }

    #[test]
    fn a_damaged_intent_is_refused() {
        let mut record = Truncation::Fully { start_offset: 7 }.encode();
        record[16] ^= 1;
        assert!(Truncation::decode(&record).is_err());
        assert!(Truncation::decode(&record[..10]).is_err());
    }
}
