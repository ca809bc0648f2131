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
//! **A lost reservation.** If the file is missing from a data directory that was used before
//! (`catalog.toml` exists: the broker writes this file with an empty reservation when it creates
//! the catalog), the ids already handed out are unknown. The partitions still remember the
//! producers whose batches they hold, and a new producer given one of those ids could have its
//! first batches answered as duplicates of the old producer's and dropped. So the allocator
//! issues no new id until every partition has opened and reported the largest producer id in its
//! producer state ([`ProducerIdAllocator::observe`], [`ProducerIdAllocator::partitions_reported`]);
//! it then resumes [`PRODUCER_IDS_SKIPPED_AFTER_LOSS`] above the largest, which also steps over
//! ids issued to producers that had not yet written anything, and logs it as an error. In a
//! data directory whose file is present, a partition that remembers an id at or above the
//! reservation (a file restored from an old backup) raises it the same way. A corrupt or
//! truncated file (the text must end with its newline) stops the open: the operator moves it
//! aside, and the next start recovers as for a missing file.
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

/// Ids stepped over when the reservation was lost: the ids of producers that were initialized
/// but had written nothing lie above the largest id a partition remembers. 2^32 ids cover more
/// producer initializations than a data directory sees, and leave room for 2^31 such losses.
pub const PRODUCER_IDS_SKIPPED_AFTER_LOSS: i64 = 1 << 32;

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
    #[error(
        "producer id file {path} is corrupt: {message}; move it aside and restart: the broker \
         then recovers the ids as when the file is missing (FORMAT.md, producer_ids.toml)"
    )]
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
    #[error(
        "producer ids are being recovered ({PRODUCER_IDS_FILE_NAME} was lost): no new id until \
         every partition has reported the producers it remembers"
    )]
    Recovering,
    #[error("waiting for the cluster controller to grant this broker a block of producer ids")]
    AwaitingBlock,
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

/// Cluster mode: ids come in blocks the metadata quorum grants (`AllocateProducerIds`), unique
/// across the brokers and durable in the metadata log; no local file is involved.
#[derive(Debug, Default)]
struct ClusterBlocks {
    /// Granted ranges `[first, end)` not used up yet, oldest first.
    blocks: std::collections::VecDeque<(i64, i64)>,
}

impl ClusterBlocks {
    fn remaining(&self) -> i64 {
        self.blocks.iter().map(|(first, end)| end - first).sum()
    }
}

#[derive(Debug)]
struct Reservation {
    /// The id the next new producer gets.
    next_id: i64,
    /// Durable end of the reserved block: `next_id < reserved_end` means no I/O is needed.
    reserved_end: i64,
    /// The file was lost: nothing is issued until the partitions have reported
    /// ([`ProducerIdAllocator::partitions_reported`]).
    recovering: bool,
    /// The largest producer id any partition reported remembering (-1: none).
    largest_remembered: i64,
    /// Cluster mode: the blocks granted by the metadata quorum (see [`ClusterBlocks`]).
    cluster: Option<ClusterBlocks>,
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
    pub fn open(data_dir: &Path, used_before: bool) -> Result<Self, ProducerIdError> {
        ProducerIdAllocator::open_on(BlockingFileSystem, data_dir, used_before)
    }
}

impl<F: FileSystem> ProducerIdAllocator<F> {
    /// Reads the reservation in `data_dir`. `used_before` says whether the data directory was
    /// used before (its catalog exists): a missing file then means a lost reservation (see the
    /// module documentation); in a new one the empty reservation is written at once, so that
    /// its absence later means a loss. Blocking.
    pub fn open_on(
        file_system: F,
        data_dir: &Path,
        used_before: bool,
    ) -> Result<Self, ProducerIdError> {
        let path = data_dir.join(PRODUCER_IDS_FILE_NAME);
        let (reserved_end, recovering) = match files::read(&file_system, &path)? {
            Some(bytes) => {
                let text = super::directories::utf8_text(&bytes).map_err(|message| {
                    ProducerIdError::Corrupt {
                        path: path.clone(),
                        message,
                    }
                })?;
                (parse(&path, text)?, false)
            }
            None => (0, used_before),
        };
        let allocator = Self {
            file_system,
            data_dir: data_dir.to_path_buf(),
            reservation: Mutex::new(Reservation {
                // Ids of the block reserved before the restart may have been handed out.
                next_id: reserved_end,
                reserved_end,
                recovering,
                largest_remembered: -1,
                cluster: None,
            }),
        };
        if recovering {
            tracing::error!(
                path = %path.display(),
                "the producer id reservation is missing from a data directory in use (removed, \
                 or never written by a build older than this one): the ids already handed out are \
                 unknown, so no new producer id is issued until every partition has opened and \
                 reported the producers it remembers; ids then resume {PRODUCER_IDS_SKIPPED_AFTER_LOSS} \
                 above the largest (FORMAT.md, producer_ids.toml)"
            );
        } else if !used_before && reserved_end == 0 {
            allocator.persist(0)?;
        }
        Ok(allocator)
    }

    /// A partition opened and remembers producers up to `largest_producer_id` (from its
    /// snapshot and the batches replayed after it). Ids at or above it are never issued: with a
    /// lost reservation this is what recovery waits for; with a reservation that is behind (a
    /// file restored from an old backup) it is raised at once, and logged. No I/O: the raised
    /// reservation is written before the first id of it is issued. In cluster mode ids come
    /// from the controller's blocks and a replicated partition remembers every broker's
    /// producers, so the local reservation is not compared (nor was it behind).
    pub fn observe(&self, largest_producer_id: i64) {
        if largest_producer_id < 0 {
            return;
        }
        let mut reservation = self.lock();
        reservation.largest_remembered = reservation.largest_remembered.max(largest_producer_id);
        if reservation.recovering
            || reservation.cluster.is_some()
            || largest_producer_id < reservation.next_id
        {
            return;
        }
        let next_id = largest_producer_id.saturating_add(1);
        tracing::error!(
            path = %self.data_dir.join(PRODUCER_IDS_FILE_NAME).display(),
            reserved_end = reservation.reserved_end,
            largest_producer_id,
            next_id,
            "the producer id reservation is behind a partition's producer state (an old file \
             restored?): ids resume above every id a partition remembers"
        );
        reservation.next_id = next_id;
    }

    /// Every partition of the data directory has opened (or gone offline) and been
    /// [`observe`](ProducerIdAllocator::observe)d, `offline` of them without a report. Ends the
    /// recovery of a lost reservation. No I/O (as `observe`).
    pub fn partitions_reported(&self, offline: usize) {
        let mut reservation = self.lock();
        if !reservation.recovering {
            return;
        }
        let floor = reservation.largest_remembered.saturating_add(1);
        reservation.next_id = floor
            .max(reservation.next_id)
            .saturating_add(PRODUCER_IDS_SKIPPED_AFTER_LOSS);
        reservation.recovering = false;
        tracing::error!(
            path = %self.data_dir.join(PRODUCER_IDS_FILE_NAME).display(),
            largest_remembered = reservation.largest_remembered,
            next_id = reservation.next_id,
            offline_partitions_not_counted = offline,
            "producer ids recovered after the reservation was lost: new producers get ids from \
             next_id, {PRODUCER_IDS_SKIPPED_AFTER_LOSS} above the largest id any partition \
             remembers, so no acknowledged batch can be taken for a new producer's duplicate"
        );
    }

    /// Cluster mode: ids are issued only from blocks granted with
    /// [`ProducerIdAllocator::grant_block`] (unique across brokers); the local reservation is
    /// neither read nor written, and an epoch bump is accepted for any id (another broker may
    /// have issued it before a failover).
    pub fn enter_cluster_mode(&self) {
        let mut reservation = self.lock();
        reservation.recovering = false;
        reservation
            .cluster
            .get_or_insert_with(ClusterBlocks::default);
    }

    /// Cluster mode: whether fewer than `low_water` ids are left (time to ask the controller).
    pub fn wants_block(&self, low_water: i64) -> bool {
        self.lock()
            .cluster
            .as_ref()
            .is_some_and(|cluster| cluster.remaining() < low_water)
    }

    /// Cluster mode: ids `first..first + count` are this broker's to issue.
    pub fn grant_block(&self, first: i64, count: u32) {
        let mut reservation = self.lock();
        let Some(cluster) = reservation.cluster.as_mut() else {
            return;
        };
        let end = first.saturating_add(i64::from(count));
        if first >= 0 && end > first {
            cluster.blocks.push_back((first, end));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Reservation> {
        self.reservation
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers InitProducerId: a new id with epoch 0 for (`NO_PRODUCER_ID`, `NO_PRODUCER_EPOCH`),
    /// the same id with the next epoch for an identity this broker issued, or a new id when the
    /// epoch would overflow. Blocking (it may write the reservation).
    pub fn init(
        &self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Result<ProducerIdentity, ProducerIdError> {
        let mut reservation = self.lock();
        let identity_is_valid = (producer_id, producer_epoch)
            == (NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
            || (producer_id >= 0 && producer_epoch >= 0);
        // Neither a new id nor the check that an old one was issued can be answered yet.
        if reservation.recovering && identity_is_valid {
            return Err(ProducerIdError::Recovering);
        }
        match (producer_id, producer_epoch) {
            (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => self.issue(&mut reservation),
            (id, epoch) if id >= 0 && epoch >= 0 => {
                if reservation.cluster.is_none() && id >= reservation.next_id {
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
        if let Some(cluster) = reservation.cluster.as_mut() {
            let Some((first, end)) = cluster.blocks.front_mut() else {
                return Err(ProducerIdError::AwaitingBlock);
            };
            let producer_id = *first;
            *first += 1;
            if *first >= *end {
                cluster.blocks.pop_front();
            }
            return Ok(ProducerIdentity {
                producer_id,
                producer_epoch: 0,
            });
        }
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
    // Written with a final newline: a file cut anywhere (a truncated `reserved_end` would still
    // parse, smaller) lacks it.
    if !text.ends_with('\n') {
        return Err(corrupt("truncated (no final newline)".to_string()));
    }
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
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
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
            let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
            (0..3)
                .map(|_| new_producer(&allocator).producer_id)
                .collect()
        };
        // A restart without any clean shutdown step: the reservation on disk is all there is.
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
        let after = new_producer(&allocator).producer_id;
        assert!(
            before.iter().all(|id| *id < after),
            "{after} reuses one of {before:?}"
        );
    }

    #[test]
    fn a_new_block_is_reserved_durably_before_its_first_id_is_handed_out() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
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
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
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
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
        let identity = new_producer(&allocator);
        let renewed = allocator.init(identity.producer_id, i16::MAX).unwrap();
        assert_ne!(renewed.producer_id, identity.producer_id);
        assert_eq!(renewed.producer_epoch, 0);
    }

    #[test]
    fn identities_the_broker_never_issued_are_refused() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
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
    fn a_new_data_directory_gets_its_empty_reservation_written_at_once() {
        let directory = tempfile::tempdir().unwrap();
        ProducerIdAllocator::open(directory.path(), false).unwrap();
        let text = std::fs::read_to_string(directory.path().join(PRODUCER_IDS_FILE_NAME)).unwrap();
        assert_eq!(parse(directory.path(), &text).unwrap(), 0);
    }

    #[test]
    fn a_lost_reservation_issues_nothing_until_the_partitions_report_then_resumes_above_them() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path(), true).unwrap();
        assert!(matches!(
            allocator.init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
            Err(ProducerIdError::Recovering)
        ));
        // An old producer's epoch bump cannot be checked yet either.
        assert!(matches!(
            allocator.init(3, 0),
            Err(ProducerIdError::Recovering)
        ));
        allocator.observe(41);
        allocator.observe(-1);
        allocator.observe(7);
        assert!(matches!(
            allocator.init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
            Err(ProducerIdError::Recovering)
        ));
        allocator.partitions_reported(0);
        let first = new_producer(&allocator).producer_id;
        assert_eq!(first, 42 + PRODUCER_IDS_SKIPPED_AFTER_LOSS);
        // The old producer is known again, and the recovered reservation is durable.
        assert_eq!(allocator.init(3, 0).unwrap().producer_epoch, 1);
        let reopened = ProducerIdAllocator::open(directory.path(), true).unwrap();
        assert!(new_producer(&reopened).producer_id > first);
    }

    #[test]
    fn a_reservation_behind_a_partition_is_raised_above_what_the_partition_remembers() {
        let directory = tempfile::tempdir().unwrap();
        {
            let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
            new_producer(&allocator);
        }
        let allocator = ProducerIdAllocator::open(directory.path(), true).unwrap();
        allocator.observe(5_000);
        assert_eq!(new_producer(&allocator).producer_id, 5_001);
        allocator.observe(10);
        assert_eq!(new_producer(&allocator).producer_id, 5_002);
    }

    #[test]
    fn a_truncated_reservation_file_refuses_to_open() {
        let directory = tempfile::tempdir().unwrap();
        {
            let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
            new_producer(&allocator);
        }
        let path = directory.path().join(PRODUCER_IDS_FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with("reserved_end = 1000\n"), "{text:?}");
        // Cut inside the number: "reserved_end = 100" would parse, smaller.
        std::fs::write(&path, &text[..text.len() - 2]).unwrap();
        assert!(matches!(
            ProducerIdAllocator::open(directory.path(), true),
            Err(ProducerIdError::Corrupt { .. })
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
            ProducerIdAllocator::open(directory.path(), false),
            Err(ProducerIdError::Corrupt { .. })
        ));
        std::fs::write(directory.path().join(PRODUCER_IDS_FILE_NAME), "garbage").unwrap();
        assert!(matches!(
            ProducerIdAllocator::open(directory.path(), false),
            Err(ProducerIdError::Corrupt { .. })
        ));
    }

    #[test]
    fn in_cluster_mode_ids_come_only_from_granted_blocks_and_any_id_may_bump_its_epoch() {
        let directory = tempfile::tempdir().unwrap();
        let allocator = ProducerIdAllocator::open(directory.path(), false).unwrap();
        allocator.enter_cluster_mode();
        assert!(allocator.wants_block(1));
        assert!(matches!(
            allocator.init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
            Err(ProducerIdError::AwaitingBlock)
        ));
        allocator.grant_block(5000, 2);
        allocator.grant_block(9000, 1);
        assert!(!allocator.wants_block(3));
        assert!(allocator.wants_block(4));
        let issued: Vec<i64> = (0..3)
            .map(|_| {
                allocator
                    .init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                    .unwrap()
                    .producer_id
            })
            .collect();
        assert_eq!(issued, vec![5000, 5001, 9000]);
        assert!(matches!(
            allocator.init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH),
            Err(ProducerIdError::AwaitingBlock)
        ));
        // Issued by another broker before a failover: its epoch bump is answered here.
        let bumped = allocator.init(123_456, 4).unwrap();
        assert_eq!((bumped.producer_id, bumped.producer_epoch), (123_456, 5));
        // A replicated partition remembers other brokers' ids: they move nothing here.
        allocator.observe(1_000_000);
        allocator.grant_block(7000, 1);
        assert_eq!(
            allocator
                .init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
                .unwrap()
                .producer_id,
            7000
        );
    }
}
