//! Producer ids: the broker-wide allocator behind InitProducerId, kept durably in
//! `<data_dir>/producer_ids.toml`.
//!
//! An idempotent producer's batches are told apart by producer id, so an id must never be handed
//! out twice in the life of a data directory, crash or not. Ids are reserved in blocks of
//! [`PRODUCER_ID_BLOCK_SIZE`]: before the first id of a block is handed out, the end of the block
//! is written (new file, fsync, rename, fsync directory). After a restart, allocation resumes at
//! the recorded end, skipping whatever was left of the last block: ids are plentiful (`i64`), a
//! reused one would break deduplication. This is Kafka's producer-id-block scheme with the
//! broker's data directory in the role of the controller's metadata log.
//!
//! An epoch bump (KIP-360) keeps the id and adds one to the epoch; it needs no I/O because an
//! epoch is the producer's to hold: the broker only checks that the id is one it could have
//! issued. There are no transactional ids, so nothing maps a name to an id. Writes do blocking
//! file I/O: call [`ProducerIdAllocator::init`] from a blocking thread, never on an executor.
//! The per-partition sequence state lives in the storage engine, not here.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use spate_protocol::batch::header::{NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use spate_storage::{BlockingFileSystem, FileSystem};

use super::files::{self, FileError};

/// File name of the producer id reservation inside the data directory.
pub const PRODUCER_IDS_FILE_NAME: &str = "producer_ids.toml";

/// Ids reserved by one durable write. Large enough that allocation rarely touches the disk,
/// small enough that a crash wastes nothing that matters.
pub const PRODUCER_ID_BLOCK_SIZE: i64 = 1000;

/// Version of the file layout this build writes and reads.
const PRODUCER_IDS_FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum ProducerIdError {
    #[error("producer id file I/O failed: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("producer id file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error("producer id {producer_id} with epoch {producer_epoch} is not a valid identity")]
    InvalidIdentity {
        producer_id: i64,
        producer_epoch: i16,
    },
    #[error("producer id {producer_id} was never issued by this broker (next id {next_id})")]
    UnknownProducerId { producer_id: i64, next_id: i64 },
    #[error("every producer id has been issued")]
    Exhausted,
}

/// An identity handed to a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIdentity {
    pub producer_id: i64,
    pub producer_epoch: i16,
}

#[derive(Debug, Serialize, Deserialize)]
struct ProducerIdsFile {
    version: u32,
    /// Every id below this may have been handed out.
    reserved_end: i64,
}

#[derive(Debug)]
struct Reservation {
    /// The id the next new producer gets.
    next_id: i64,
    /// Durable end of the reserved block: `next_id < reserved_end` means no I/O is needed.
    reserved_end: i64,
}

/// The allocator; its file lives on `F` (the real disk in the broker, the in-memory disk in
/// tests), like the catalog's.
#[derive(Debug)]
pub struct ProducerIdAllocator<F: FileSystem = BlockingFileSystem> {
    file_system: F,
    data_dir: PathBuf,
    reservation: Mutex<Reservation>,
}

impl ProducerIdAllocator {
    /// Reads the reservation in `data_dir` on the real disk (see [`ProducerIdAllocator::open_on`]).
    pub fn open(data_dir: &Path) -> Result<Self, ProducerIdError> {
        ProducerIdAllocator::open_on(BlockingFileSystem, data_dir)
    }
}

impl<F: FileSystem> ProducerIdAllocator<F> {
    /// Reads the reservation in `data_dir` (none yet: ids start at 0). Blocking.
    pub fn open_on(file_system: F, data_dir: &Path) -> Result<Self, ProducerIdError> {
        let path = data_dir.join(PRODUCER_IDS_FILE_NAME);
        let reserved_end = match files::read(&file_system, &path)? {
            Some(bytes) => {
                let text = super::directories::utf8_text(&bytes).map_err(|message| {
                    ProducerIdError::Corrupt {
                        path: path.clone(),
                        message,
                    }
                })?;
                parse(&path, text)?
            }
            None => 0,
        };
        Ok(Self {
            file_system,
            data_dir: data_dir.to_path_buf(),
            reservation: Mutex::new(Reservation {
                // Ids of the block reserved before the restart may have been handed out.
                next_id: reserved_end,
                reserved_end,
            }),
        })
    }

    /// Answers InitProducerId: a new id with epoch 0 for (`NO_PRODUCER_ID`, `NO_PRODUCER_EPOCH`),
    /// the same id with the next epoch for an identity this broker issued, or a new id when the
    /// epoch would overflow. Blocking (it may write the reservation).
    pub fn init(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<ProducerIdentity, ProducerIdError> {
        let mut reservation = self
            .reservation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match (producer_id, producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => self.issue(&mut reservation),
            (id, epoch) if id >= 0 && epoch >= 0 => {
                if id >= reservation.next_id {
                    return Err(ProducerIdError::UnknownProducerId {
                        producer_id: id,
                        next_id: reservation.next_id,
                    });
                }
                match epoch.checked_add(1) {
                    Some(next_epoch) => Ok(ProducerIdentity {
                        producer_id: id,
                        producer_epoch: next_epoch,
                    }),
                    // Kafka does the same: a fresh id once the epoch runs out.
                    None => self.issue(&mut reservation),
                }
            }
            (id, epoch) => Err(ProducerIdError::InvalidIdentity {
                producer_id: id,
                producer_epoch: epoch,
            }),
        }
    }

    fn issue(&self, reservation: &mut Reservation) -> Result<ProducerIdentity, ProducerIdError> {
        if reservation.next_id >= reservation.reserved_end {
            let reserved_end = reservation
                .next_id
                .checked_add(PRODUCER_ID_BLOCK_SIZE)
                .ok_or(ProducerIdError::Exhausted)?;
            self.persist(reserved_end)?;
            reservation.reserved_end = reserved_end;
        }
        let producer_id = reservation.next_id;
        reservation.next_id += 1;
        Ok(ProducerIdentity {
            producer_id,
            producer_epoch: 0,
        })
    }

    /// New file, fsync, rename over the old one, fsync the directory: after a crash the file
    /// holds the old or the new reservation, and the new one is on disk before any id of it is
    /// handed out.
    fn persist(&self, reserved_end: i64) -> Result<(), ProducerIdError> {
        let text = toml::to_string(&ProducerIdsFile {
            version: PRODUCER_IDS_FORMAT_VERSION,
            reserved_end,
        })
        .map_err(|error| ProducerIdError::Corrupt {
            path: self.data_dir.join(PRODUCER_IDS_FILE_NAME),
            message: format!("cannot serialize: {error}"),
        })?;
        files::write_file_durably(
            &self.file_system,
            &self.data_dir,
            PRODUCER_IDS_FILE_NAME,
            text.as_bytes(),
        )?;
        Ok(())
    }
}

impl From<FileError> for ProducerIdError {
    fn from(error: FileError) -> Self {
        let FileError { op, path, source } = error;
        ProducerIdError::Io { op, path, source }
    }
}

fn parse(path: &Path, text: &str) -> Result<i64, ProducerIdError> {
    let corrupt = |message: String| ProducerIdError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let file: ProducerIdsFile = toml::from_str(text).map_err(|error| corrupt(error.to_string()))?;
    if file.version != PRODUCER_IDS_FORMAT_VERSION {
        return Err(corrupt(format!(
            "format version {} is not {PRODUCER_IDS_FORMAT_VERSION}",
            file.version
        )));
    }
    if file.reserved_end < 0 {
        return Err(corrupt(format!(
            "reserved end {} is negative",
            file.reserved_end
        )));
    }
    Ok(file.reserved_end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_producer(allocator: &ProducerIdAllocator) -> ProducerIdentity {
        allocator.init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH).unwrap()
    }

    #[test]
    fn new_producers_get_distinct_ids_with_epoch_zero() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        let first = new_producer(&allocator);
        let second = new_producer(&allocator);
        assert_eq!(first.producer_epoch, 0);
        assert_eq!(second.producer_epoch, 0);
        assert_ne!(first.producer_id, second.producer_id);
    }

    #[test]
    fn ids_are_never_handed_out_again_after_a_restart() {
        let directory = tempfile::tempdir().unwrap();
        let before: Vec<i64> = {
            let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
            (0..3)
                .map(|_| new_producer(&allocator).producer_id)
                .collect()
        };
        // A restart without any clean shutdown step: the reservation on disk is all there is.
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        let after = new_producer(&allocator).producer_id;
        assert!(
            before.iter().all(|id| *id < after),
            "{after} reuses one of {before:?}"
        );
    }

    #[test]
    fn a_new_block_is_reserved_durably_before_its_first_id_is_handed_out() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        for _ in 0..=PRODUCER_ID_BLOCK_SIZE {
            new_producer(&allocator);
        }
        let text = std::fs::read_to_string(directory.path().join(PRODUCER_IDS_FILE_NAME)).unwrap();
        let reserved_end = parse(directory.path(), &text).unwrap();
        assert_eq!(reserved_end, 2 * PRODUCER_ID_BLOCK_SIZE);
    }

    #[test]
    fn an_epoch_bump_keeps_the_id_and_adds_one_to_the_epoch() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        let identity = new_producer(&allocator);
        let bumped = allocator
            .init(identity.producer_id, identity.producer_epoch)
            .unwrap();
        assert_eq!(bumped.producer_id, identity.producer_id);
        assert_eq!(bumped.producer_epoch, 1);
    }

    #[test]
    fn an_exhausted_epoch_gets_a_new_id() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        let identity = new_producer(&allocator);
        let renewed = allocator.init(identity.producer_id, i16::MAX).unwrap();
        assert_ne!(renewed.producer_id, identity.producer_id);
        assert_eq!(renewed.producer_epoch, 0);
    }

    #[test]
    fn identities_the_broker_never_issued_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path()).unwrap();
        assert!(matches!(
            allocator.init(5, 0),
            Err(ProducerIdError::UnknownProducerId { producer_id: 5, .. })
        ));
        assert!(matches!(
            allocator.init(NO_PRODUCER_ID, 3),
            Err(ProducerIdError::InvalidIdentity { .. })
        ));
        assert!(matches!(
            allocator.init(0, -2),
            Err(ProducerIdError::InvalidIdentity { .. })
        ));
    }

    #[test]
    fn a_corrupt_reservation_file_refuses_to_open() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join(PRODUCER_IDS_FILE_NAME),
            "version = 1\nreserved_end = -4\n",
        )
        .unwrap();
        assert!(matches!(
            ProducerIdAllocator::open(directory.path()),
            Err(ProducerIdError::Corrupt { .. })
        ));
        std::fs::write(directory.path().join(PRODUCER_IDS_FILE_NAME), "garbage").unwrap();
        assert!(matches!(
            ProducerIdAllocator::open(directory.path()),
            Err(ProducerIdError::Corrupt { .. })
        ));
    }
}
