//! The log start offset checkpoint: one small file per partition, replaced atomically.
//!
//! Layout (one 4096-byte block, little-endian): magic `u32` at 0, version `u32` at 4, log start
//! offset `u64` at 8, CRC-32C of bytes `[0, 16)` at 16, zeros after. It is written to a temporary
//! file, synced, renamed over the old one, and the directory is synced: so the file on disk is
//! always a whole old or a whole new checkpoint. A checkpoint that fails its CRC is corruption
//! (the rename only ever exposes a synced file).

use std::path::{Path, PathBuf};

use super::error::StorageError;
use super::file::{replace_file_durably, FileSystem, OpenMode, ReplaceSteps, StorageFile};

pub const LOG_START_FILE_NAME: &str = "log-start-offset";
pub const LOG_START_TEMPORARY_FILE_NAME: &str = "log-start-offset.tmp";

const MAGIC: u32 = u32::from_le_bytes(*b"SPLS");
const VERSION: u32 = 1;
const CRC_AT: usize = 16;
const RECORD_BYTES: usize = CRC_AT + 4;

fn encode(log_start_offset: u64, target: &mut [u8]) {
    target.fill(0);
    target[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    target[4..8].copy_from_slice(&VERSION.to_le_bytes());
    target[8..16].copy_from_slice(&log_start_offset.to_le_bytes());
    let crc = crc32c::crc32c(&target[0..CRC_AT]);
    target[CRC_AT..RECORD_BYTES].copy_from_slice(&crc.to_le_bytes());
}

fn decode(bytes: &[u8]) -> Result<u64, String> {
    if bytes.len() < RECORD_BYTES {
        return Err(format!("{} bytes, {RECORD_BYTES} needed", bytes.len()));
    }
    let word =
        |at: usize| u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]]);
    if word(0) != MAGIC || word(4) != VERSION {
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
    let path = log_start_path(directory);
    let file = match file_system.open_file(&path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::io("opening checkpoint", &path, None, error)),
    };
    let bytes = file
        .read_at(0, RECORD_BYTES)
        .await
        .map_err(|error| StorageError::io("reading checkpoint", &path, Some(0), error))?;
    decode(&bytes)
        .map(Some)
        .map_err(|reason| StorageError::corrupt(&path, 0, reason))
}

/// Durably replaces the checkpoint with `log_start_offset`.
pub async fn write_log_start<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    log_start_offset: u64,
) -> Result<(), StorageError> {
    let mut record = [0u8; RECORD_BYTES];
    encode(log_start_offset, &mut record);
    replace_file_durably(
        file_system,
        directory,
        &directory.join(LOG_START_TEMPORARY_FILE_NAME),
        &log_start_path(directory),
        &record,
        &ReplaceSteps {
            create: "creating checkpoint",
            size: "sizing checkpoint",
            empty: "emptying checkpoint",
            write: "writing checkpoint",
            sync: "syncing checkpoint",
            rename: "renaming checkpoint",
            sync_directory: "syncing directory",
        },
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::file::DIRECT_IO_ALIGNMENT_BYTES;

    #[test]
    fn encoded_checkpoint_decodes_to_the_same_offset() {
        let mut block = vec![0u8; DIRECT_IO_ALIGNMENT_BYTES];
        encode(123_456_789, &mut block);
        assert_eq!(decode(&block), Ok(123_456_789));
    }

    #[test]
    fn a_flipped_bit_fails_the_crc() {
        let mut block = vec![0u8; DIRECT_IO_ALIGNMENT_BYTES];
        encode(42, &mut block);
        block[9] ^= 1;
        assert!(decode(&block).is_err());
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn an_empty_file_is_not_a_checkpoint() {
        assert!(decode(&[]).is_err());
    }
}
