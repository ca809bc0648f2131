//! A task's state directory, `<state_dir>/<application id>/<task>/`: a lock so that one
//! instance at a time opens it, one subdirectory per persistent store, and a `.checkpoint` file
//! naming, per changelog partition, the offset the flushed stores reflect.
//!
//! This module keeps the directory; restoring stores from changelogs (starting at the
//! checkpoint's offsets, or at the beginning when there is none) belongs to the runtime.
//!
//! # The commit order, and what each crash leaves
//!
//! A task commits by flushing every store (each flush is one durable engine transaction), then
//! [`TaskStateDirectory::write_checkpoint`] (written to `.checkpoint.tmp`, synced, renamed over
//! `.checkpoint`, then the directory synced).
//! - A crash before a store's flush: that store's disk image is its previous flush, at or
//!   before the old checkpoint; changes since are in the changelog after the old checkpoint
//!   offsets, so restoring from the old checkpoint replays them.
//! - A crash after the flushes but before the rename: the stores are ahead of the checkpoint.
//!   Replaying a changelog (final values per key, tombstones for deletes) from an older offset
//!   over a newer image converges on the same image, so the old checkpoint is still safe.
//! - A crash during the checkpoint write: the rename is atomic, so `.checkpoint` is the old
//!   one or the new one, never torn.
//! - No checkpoint at all (a crash before the first commit, or a checkpoint removed because the
//!   stores cannot be trusted): [`TaskStateDirectory::open`] wipes the stores, and the runtime
//!   restores them from the changelogs' beginnings, as Kafka Streams does.
//!
//! # Checkpoint format
//!
//! Text in UTF-8, Kafka Streams' `.checkpoint` layout: a version line (`0`), a line with the
//! number of entries, then one line per changelog partition, `<topic> <partition> <offset>`,
//! separated by single spaces, each line ending in `\n`. The offset is the next changelog
//! offset to restore from (one past the last record the flushed stores reflect). A file that
//! does not parse is treated as missing (the stores are wiped and restored): the rename means a
//! crash cannot tear it, so a bad file was changed by hand and nothing in it can be trusted.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside a task directory.
pub const LOCK_FILE_NAME: &str = ".lock";
/// The checkpoint file's name inside a task directory.
pub const CHECKPOINT_FILE_NAME: &str = ".checkpoint";
const CHECKPOINT_TEMPORARY_FILE_NAME: &str = ".checkpoint.tmp";
/// The only checkpoint format version written and read.
pub const CHECKPOINT_VERSION: u32 = 0;

/// A task directory that cannot be opened, locked, wiped or checkpointed.
#[derive(Debug, thiserror::Error)]
pub enum StateDirectoryError {
    /// A file-system operation failed.
    #[error("state directory: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// Another instance (or another opener in this process) holds the task directory's lock.
    #[error("state directory {path} is locked by another instance")]
    Locked {
        /// The task directory.
        path: PathBuf,
    },
    /// An application id, task or store name that is not a plain directory name (empty, `.`,
    /// `..`, starting with `.`, or holding a path separator).
    #[error("{name:?} cannot name a state directory")]
    BadName {
        /// The name given.
        name: String,
    },
}

/// The changelog offsets a task's flushed stores reflect, by changelog topic and partition.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// `(changelog topic, partition)` to the next offset to restore from.
    pub offsets: BTreeMap<(String, u32), i64>,
}

impl Checkpoint {
    /// The file's bytes, in the format the module documentation gives.
    pub fn encode(&self) -> String {
        let mut text = format!("{CHECKPOINT_VERSION}\n{}\n", self.offsets.len());
        for ((topic, partition), offset) in &self.offsets {
            assert!(
                !topic.is_empty() && !topic.contains(char::is_whitespace),
                "a changelog topic name has no whitespace"
            );
            assert!(*offset >= 0, "a checkpointed offset is never negative");
            text.push_str(&format!("{topic} {partition} {offset}\n"));
        }
        text
    }

    /// Reads a file's text; `None` when it does not parse.
    pub fn decode(text: &str) -> Option<Self> {
        let mut lines = text.strip_suffix('\n')?.split('\n');
        if lines.next()?.parse::<u32>().ok()? != CHECKPOINT_VERSION {
            return None;
        }
        let count: usize = lines.next()?.parse().ok()?;
        let mut offsets = BTreeMap::new();
        for line in lines.by_ref().take(count) {
            let mut fields = line.split(' ');
            let topic = fields.next().filter(|topic| !topic.is_empty())?;
            let partition: u32 = fields.next()?.parse().ok()?;
            let offset: i64 = fields.next()?.parse().ok().filter(|offset| *offset >= 0)?;
            if fields.next().is_some() {
                return None;
            }
            offsets.insert((topic.to_string(), partition), offset);
        }
        (offsets.len() == count && lines.next().is_none()).then_some(Self { offsets })
    }
}

/// An open, locked task directory. The lock is held until this value is dropped (the operating
/// system also drops it when the process dies, so a crash never leaves a stale lock).
#[derive(Debug)]
pub struct TaskStateDirectory {
    path: PathBuf,
    checkpoint: Option<Checkpoint>,
    _lock: File,
}

impl TaskStateDirectory {
    /// Opens (creating it if needed) and locks `<state_dir>/<application_id>/<task>/`, reads
    /// its checkpoint, and wipes every store in it when there is none.
    pub fn open(
        state_dir: &Path,
        application_id: &str,
        task: &str,
    ) -> Result<Self, StateDirectoryError> {
        let path = state_dir
            .join(checked_name(application_id)?)
            .join(checked_name(task)?);
        fs::create_dir_all(&path).map_err(io_error("create", &path))?;
        let lock_path = path.join(LOCK_FILE_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error("open", &lock_path))?;
        match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => {}
            Err(rustix::io::Errno::WOULDBLOCK) => return Err(StateDirectoryError::Locked { path }),
            Err(errno) => return Err(io_error("lock", &lock_path)(errno.into())),
        }
        let checkpoint = read_checkpoint(&path)?;
        if checkpoint.is_none() {
            wipe_stores(&path)?;
        }
        Ok(Self {
            path,
            checkpoint,
            _lock: lock,
        })
    }

    /// The task directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint found at open (after [`Self::write_checkpoint`], the one written), or
    /// `None` when the stores were wiped and must be restored from the changelogs' beginnings.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        self.checkpoint.as_ref()
    }

    /// The directory of store `name` (created if needed), where its engine keeps its files.
    pub fn store_path(&self, name: &str) -> Result<PathBuf, StateDirectoryError> {
        let path = self.path.join(checked_name(name)?);
        fs::create_dir_all(&path).map_err(io_error("create", &path))?;
        Ok(path)
    }

    /// Durably replaces the checkpoint. Call it only after every store of the task has been
    /// flushed, so that the stores reflect at least the offsets it names.
    pub fn write_checkpoint(&mut self, checkpoint: &Checkpoint) -> Result<(), StateDirectoryError> {
        let temporary = self.path.join(CHECKPOINT_TEMPORARY_FILE_NAME);
        let target = self.path.join(CHECKPOINT_FILE_NAME);
        let mut file = File::create(&temporary).map_err(io_error("create", &temporary))?;
        file.write_all(checkpoint.encode().as_bytes())
            .map_err(io_error("write", &temporary))?;
        file.sync_all().map_err(io_error("sync", &temporary))?;
        fs::rename(&temporary, &target).map_err(io_error("rename into", &target))?;
        sync_directory(&self.path)?;
        self.checkpoint = Some(checkpoint.clone());
        Ok(())
    }

    /// Removes the checkpoint, so that the next open wipes the stores: for a runtime that is
    /// about to write to them without the changelog offsets being committed in step (exactly
    /// once, where Kafka Streams removes the checkpoint while a task runs).
    pub fn remove_checkpoint(&mut self) -> Result<(), StateDirectoryError> {
        let target = self.path.join(CHECKPOINT_FILE_NAME);
        match fs::remove_file(&target) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => return Err(io_error("remove", &target)(error)),
        }
        sync_directory(&self.path)?;
        self.checkpoint = None;
        Ok(())
    }
}

fn checked_name(name: &str) -> Result<&str, StateDirectoryError> {
    let plain = !name.is_empty()
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.contains('\0');
    if plain {
        Ok(name)
    } else {
        Err(StateDirectoryError::BadName {
            name: name.to_string(),
        })
    }
}

fn read_checkpoint(task_path: &Path) -> Result<Option<Checkpoint>, StateDirectoryError> {
    let path = task_path.join(CHECKPOINT_FILE_NAME);
    match fs::read(&path) {
        Ok(bytes) => Ok(std::str::from_utf8(&bytes)
            .ok()
            .and_then(Checkpoint::decode)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(io_error("read", &path)(error)),
    }
}

/// Removes everything in the task directory but its lock: the stores, and a checkpoint that
/// did not parse, so that the next commit starts a fresh one.
fn wipe_stores(task_path: &Path) -> Result<(), StateDirectoryError> {
    let entries = fs::read_dir(task_path).map_err(io_error("list", task_path))?;
    for entry in entries {
        let entry = entry.map_err(io_error("list", task_path))?;
        if entry.file_name() == LOCK_FILE_NAME {
            continue;
        }
        let path = entry.path();
        let file_type = entry.file_type().map_err(io_error("inspect", &path))?;
        let removed = if file_type.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        removed.map_err(io_error("wipe", &path))?;
    }
    sync_directory(task_path)
}

fn sync_directory(path: &Path) -> Result<(), StateDirectoryError> {
    File::open(path)
        .and_then(|directory| directory.sync_all())
        .map_err(io_error("sync", path))
}

fn io_error(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> StateDirectoryError {
    let path = path.to_path_buf();
    move |source| StateDirectoryError::Io {
        action,
        path,
        source,
    }
}
