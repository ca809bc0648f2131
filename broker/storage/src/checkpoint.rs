//! The partition's offset checkpoints: small files, each holding one offset, replaced atomically.
//!
//! - `log-start-offset` (magic `"SPLS"`): the log start, written before segments are deleted.
//! - `recovery-point` (magic `"SPRP"`): the *recovery point*, an offset below which every batch
//!   was durable when the file was written (as Kafka's `recovery-point-offset-checkpoint`). The
//!   log never legitimately ends below it, so an open that finds a shorter log reports lost data
//!   instead of handing the missing offsets out again.
//! - `cleaner-offset` (magic `"SPCO"`): the *clean offset* of a compacted log, up to which the
//!   last compaction pass cleaned it (Kafka's `cleaner-offset-checkpoint`); a hint only.
//!
//! Layout (one 4096-byte block, little-endian): magic `u32` at 0, version `u32` at 4, offset
//! `u64` at 8, CRC-32C of bytes `[0, 16)` at 16, zeros after. It is written to a temporary
//! file, synced, renamed over the old one, and the directory is synced: so the file on disk is
//! always a whole old or a whole new checkpoint. A checkpoint that fails its CRC is corruption
//! (the rename only ever exposes a synced file).

use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::file::{replace_file_durably, FileSystem, OpenMode, ReplaceSteps, StorageFile};

pub const LOG_START_FILE_NAME: &str = "log-start-offset";
pub const LOG_START_TEMPORARY_FILE_NAME: &str = "log-start-offset.tmp";

pub const RECOVERY_POINT_FILE_NAME: &str = "recovery-point";
pub const RECOVERY_POINT_TEMPORARY_FILE_NAME: &str = "recovery-point.tmp";

pub const COMMITTED_OFFSET_FILE_NAME: &str = "committed-offset";
pub const COMMITTED_OFFSET_TEMPORARY_FILE_NAME: &str = "committed-offset.tmp";

pub const CLEANER_OFFSET_FILE_NAME: &str = "cleaner-offset";
pub const CLEANER_OFFSET_TEMPORARY_FILE_NAME: &str = "cleaner-offset.tmp";

const COMMITTED_OFFSET_MAGIC: u32 = u32::from_le_bytes(*b"SPCM");
const CLEANER_OFFSET_MAGIC: u32 = u32::from_le_bytes(*b"SPCO");
const LOG_START_MAGIC: u32 = u32::from_le_bytes(*b"SPLS");
const RECOVERY_POINT_MAGIC: u32 = u32::from_le_bytes(*b"SPRP");
const VERSION: u32 = 1;
const CRC_AT: usize = 16;
const RECORD_BYTES: usize = CRC_AT + 4;

/// Which checkpoint a file holds: its names, its magic and the words its errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointKind {
    LogStart,
    RecoveryPoint,
    CleanerOffset,
    /// A replicated partition's committed offset (its high watermark as the leader last said),
    /// written lazily: a restarted replica serves from it instead of from 0.
    CommittedOffset,
}

impl CheckpointKind {
    fn magic(self) -> u32 {
        match self {
            Self::LogStart => LOG_START_MAGIC,
            Self::RecoveryPoint => RECOVERY_POINT_MAGIC,
            Self::CleanerOffset => CLEANER_OFFSET_MAGIC,
            Self::CommittedOffset => COMMITTED_OFFSET_MAGIC,
        }
    }

    pub fn file_name(self) -> &'static str {
        match self {
            Self::LogStart => LOG_START_FILE_NAME,
            Self::RecoveryPoint => RECOVERY_POINT_FILE_NAME,
            Self::CleanerOffset => CLEANER_OFFSET_FILE_NAME,
            Self::CommittedOffset => COMMITTED_OFFSET_FILE_NAME,
        }
    }

    pub fn temporary_file_name(self) -> &'static str {
        match self {
            Self::LogStart => LOG_START_TEMPORARY_FILE_NAME,
            Self::RecoveryPoint => RECOVERY_POINT_TEMPORARY_FILE_NAME,
            Self::CleanerOffset => CLEANER_OFFSET_TEMPORARY_FILE_NAME,
            Self::CommittedOffset => COMMITTED_OFFSET_TEMPORARY_FILE_NAME,
        }
    }

    fn steps(self) -> ReplaceSteps {
        match self {
            Self::LogStart => ReplaceSteps {
                create: "creating checkpoint",
                size: "sizing checkpoint",
                empty: "emptying checkpoint",
                write: "writing checkpoint",
                sync: "syncing checkpoint",
                rename: "renaming checkpoint",
                sync_directory: "syncing directory",
            },
            Self::RecoveryPoint => ReplaceSteps {
                create: "creating recovery point",
                size: "sizing recovery point",
                empty: "emptying recovery point",
                write: "writing recovery point",
                sync: "syncing recovery point",
                rename: "renaming recovery point",
                sync_directory: "syncing directory",
            },
            Self::CleanerOffset => ReplaceSteps {
                create: "creating cleaner offset",
                size: "sizing cleaner offset",
                empty: "emptying cleaner offset",
                write: "writing cleaner offset",
                sync: "syncing cleaner offset",
                rename: "renaming cleaner offset",
                sync_directory: "syncing directory",
            },
            Self::CommittedOffset => ReplaceSteps {
                create: "creating committed offset",
                size: "sizing committed offset",
                empty: "emptying committed offset",
                write: "writing committed offset",
                sync: "syncing committed offset",
                rename: "renaming committed offset",
                sync_directory: "syncing directory",
            },
        }
    }
}

fn encode(kind: CheckpointKind, offset: u64, target: &mut [u8]) {
    target.fill(0);
    target[0..4].copy_from_slice(&kind.magic().to_le_bytes());
    target[4..8].copy_from_slice(&VERSION.to_le_bytes());
    target[8..16].copy_from_slice(&offset.to_le_bytes());
    let crc = crc32c::crc32c(&target[0..CRC_AT]);
    target[CRC_AT..RECORD_BYTES].copy_from_slice(&crc.to_le_bytes());
}

fn decode(kind: CheckpointKind, bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < RECORD_BYTES {
        return Err(format!("{} bytes, {RECORD_BYTES} needed", bytes.len()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(0) != kind.magic() || word(4) != VERSION {
        return Err(format!(
            "unknown magic {:#010x} or version {}",
            word(0),
            word(4)
        ));
    }
    let crc = crc32c::crc32c(&bytes[0..CRC_AT]);
    if word(CRC_AT) != crc {
        return Err(format!(
            "CRC {:#010x}, bytes give {crc:#010x}",
            word(CRC_AT)
        ));
    }
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&bytes[8..16]);
    Ok(u64::from_le_bytes(offset))
}

pub fn log_start_path(directory: &Path) -> PathBuf {
    directory.join(LOG_START_FILE_NAME)
}

/// The checkpointed log start offset, or `None` if there is no checkpoint file.
pub async fn read_log_start<F: FileSystem>(
    file_system: &F,
    directory: &Path,
) -> Result<Option<u64>, StorageError> {
    read_checkpoint(file_system, directory, CheckpointKind::LogStart).await
}

/// Durably replaces the checkpoint with `log_start_offset`.
pub async fn write_log_start<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    log_start_offset: u64,
) -> Result<(), StorageError> {
    write_checkpoint(
        file_system,
        directory,
        CheckpointKind::LogStart,
        log_start_offset,
    )
    .await
}

/// The checkpoint's offset, or `None` if there is no such file.
pub async fn read_checkpoint<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    kind: CheckpointKind,
) -> Result<Option<u64>, StorageError> {
    let path = directory.join(kind.file_name());
    let file = match file_system.open_file(&path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("opening checkpoint", &path, None, error)),
    };
    let bytes = file
        .read_at(0, RECORD_BYTES)
        .await
        .map_err(|error| StorageError::io("reading checkpoint", &path, Some(0), error))?;
    decode(kind, &bytes)
        .map(Some)
        .map_err(|reason| StorageError::corrupt(&path, 0, reason))
}

/// Durably replaces the checkpoint with `offset`.
pub async fn write_checkpoint<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    kind: CheckpointKind,
    offset: u64,
) -> Result<(), StorageError> {
    let mut record = [0u8; RECORD_BYTES];
    encode(kind, offset, &mut record);
    replace_file_durably(
        file_system,
        directory,
        &directory.join(kind.temporary_file_name()),
        &directory.join(kind.file_name()),
        &record,
        &kind.steps(),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::DIRECT_IO_ALIGNMENT_BYTES;

    #[test]
    fn encoded_checkpoint_decodes_to_the_same_offset() {
        let mut block = vec![0u8; DIRECT_IO_ALIGNMENT_BYTES];
        encode(CheckpointKind::RecoveryPoint, 123_456_789, &mut block);
        assert_eq!(
            decode(CheckpointKind::RecoveryPoint, &block),
            Ok(123_456_789)
        );
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut block = vec![0u8; DIRECT_IO_ALIGNMENT_BYTES];
        encode(CheckpointKind::LogStart, 42, &mut block);
        block[9] ^= 1;
        assert!(decode(CheckpointKind::LogStart, &block).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(CheckpointKind::RecoveryPoint, &bytes);
        }
    }

    #[test]
    fn an_empty_file_is_not_a_checkpoint() {
        assert!(decode(CheckpointKind::LogStart, &[]).is_err());
    }

    #[test]
    fn a_log_start_checkpoint_is_not_a_recovery_point() {
        let mut block = vec![0u8; DIRECT_IO_ALIGNMENT_BYTES];
        encode(CheckpointKind::LogStart, 42, &mut block);
        assert!(decode(CheckpointKind::RecoveryPoint, &block).is_err());
    }
}
