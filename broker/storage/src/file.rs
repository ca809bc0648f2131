//! The one narrow interface through which the storage engine touches a disk.
//!
//! [`FileSystem`] names, creates, lists, renames and removes files and syncs directories;
//! [`StorageFile`] reads, writes (aligned, direct I/O), syncs and truncates one open file. There
//! are three implementations: `dma` (glommio `DmaFile`, O_DIRECT over io_uring) for partition
//! logs, `blocking` (plain `std::fs` calls, for the broker's small metadata files written from a
//! blocking thread: the catalog, `topic.toml`, the producer-id reservation) and `memory` (a
//! seeded in-memory disk that injects faults and crashes). Nothing else in `storage` reaches the
//! OS, which is what lets the simulation test every crash and error path.
//!
//! The traits are `async` and deliberately `?Send`: a partition log lives on one shard's thread
//! (thread-per-core), so its futures never move between threads.

use std::io;
use std::path::Path;

use bytes::Bytes;

use super::error::StorageError;

/// Writes start and end on multiples of this many bytes. 4096 covers both 512-byte and 4 KiB
/// logical blocks, and matches the ext4/xfs block size, which avoids the file system's
/// sub-block direct-I/O path (zeroing and serialisation).
pub const DIRECT_IO_ALIGNMENT_BYTES: usize = 4096;

/// A buffer that can be handed to a direct write (suitably aligned in memory).
pub trait IoBuffer {
    fn as_bytes(&self) -> &[u8];
    fn as_bytes_mut(&mut self) -> &mut [u8];
}

/// How [`FileSystem::open_file`] treats a missing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// The file must exist.
    Existing,
    /// The file is created empty if missing; an existing file keeps its bytes.
    CreateIfMissing,
}

/// One open file, read and written with direct I/O.
#[allow(async_fn_in_trait)] // Thread-per-core: the futures are `!Send` on purpose.
pub trait StorageFile {
    type Buffer: IoBuffer;

    /// A buffer of exactly `length` bytes (a multiple of [`DIRECT_IO_ALIGNMENT_BYTES`]) for
    /// [`StorageFile::write_at`]. Its initial contents are unspecified.
    fn allocate_buffer(&self, length: usize) -> Self::Buffer;

    /// Up to `length` bytes from `position`; fewer only at the end of the file. Any alignment.
    async fn read_at(&self, position: u64, length: usize) -> io::Result<Bytes>;

    /// Writes the whole buffer at `position`. Position and buffer length are multiples of
    /// [`DIRECT_IO_ALIGNMENT_BYTES`]. Returns the bytes written, which may be fewer (disk full).
    async fn write_at(&self, position: u64, buffer: Self::Buffer) -> io::Result<usize>;

    /// `fdatasync`: every completed write and truncation of this file survives a crash.
    async fn sync_data(&self) -> io::Result<()>;

    /// Sets the file length (any value, not only aligned ones).
    async fn truncate(&self, length: u64) -> io::Result<()>;

    /// The current file length in bytes.
    async fn size(&self) -> io::Result<u64>;

    /// Reserves disk blocks for `[0, end_position)` without changing the file's length or bytes
    /// (`fallocate` with `FALLOC_FL_KEEP_SIZE`), so that later writes there need not allocate
    /// blocks while they run. Recovery never sees it (the length is unchanged; a truncation
    /// releases the blocks past the new length). Advisory: an error (EOPNOTSUPP on some file
    /// systems, ENOSPC) only means that writes will allocate as they go.
    async fn preallocate(&self, end_position: u64) -> io::Result<()>;

    /// How many directory entries name this file (`st_nlink` of `fstat`). 0 means the file was
    /// unlinked (removed, or its directory removed) while open: it is still readable and
    /// writable through this handle, and even `fdatasync` succeeds, but nothing written to it
    /// survives a restart. The log asks once per sync, before it acknowledges what it synced.
    async fn link_count(&self) -> io::Result<u64>;
}

/// Names and directories. Directory entries (create, remove, rename) survive a crash only after
/// [`FileSystem::sync_directory`] on their parent.
#[allow(async_fn_in_trait)] // Thread-per-core: the futures are `!Send` on purpose.
pub trait FileSystem {
    type File: StorageFile + 'static;

    /// A write buffer for any of this file system's files (see [`StorageFile::allocate_buffer`]).
    fn allocate_buffer(&self, length: usize) -> <Self::File as StorageFile>::Buffer;
    /// Opens `path` for reading and writing with direct I/O.
    async fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<Self::File>;
    /// Creates the directory and any missing parents.
    async fn create_directory(&self, path: &Path) -> io::Result<()>;
    /// The names (not paths) of the entries in a directory.
    async fn list_directory(&self, path: &Path) -> io::Result<Vec<String>>;
    async fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Removes an empty directory.
    async fn remove_directory(&self, path: &Path) -> io::Result<()>;
    /// Whether `path` names a directory (`false` for a file or nothing). The log engine never
    /// asks; the catalog does, to tell topic directories from stray files.
    async fn is_directory(&self, path: &Path) -> io::Result<bool>;
    /// Atomically replaces `target` with `source`.
    async fn rename(&self, source: &Path, target: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable (`fsync` on the directory).
    async fn sync_directory(&self, path: &Path) -> io::Result<()>;
}

/// Rounds down to the direct-I/O alignment.
pub fn align_down(position: u64) -> u64 {
    position - position % DIRECT_IO_ALIGNMENT_BYTES as u64
}

/// Rounds up to the direct-I/O alignment.
pub fn align_up(length: u64) -> u64 {
    align_down(length + DIRECT_IO_ALIGNMENT_BYTES as u64 - 1)
}

/// Names of the steps of [`replace_file_durably`], for its errors: each caller says which file
/// it is replacing (`"writing checkpoint"`, ...).
pub struct ReplaceSteps {
    pub create: &'static str,
    pub size: &'static str,
    pub empty: &'static str,
    pub write: &'static str,
    pub sync: &'static str,
    pub rename: &'static str,
    pub sync_directory: &'static str,
}

/// Replaces `target` with `bytes` so that a crash leaves the old file or the new one, never a
/// mix: writes `temporary` (emptied first if a crashed attempt left it behind) with direct I/O,
/// syncs it, renames it over `target` and syncs `directory`. For the engine's small metadata
/// files (log-start checkpoint, producer snapshots); the file ends zero-padded to a whole block.
pub async fn replace_file_durably<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    temporary: &Path,
    target: &Path,
    bytes: &[u8],
    steps: &ReplaceSteps,
) -> Result<(), StorageError> {
    replace_file(
        file_system,
        directory,
        temporary,
        target,
        bytes,
        steps,
        false,
    )
    .await
}

/// [`replace_file_durably`] for a file that people read and edit (the catalog's TOML files): the
/// file is cut to exactly `bytes` (direct writes are whole blocks) before it is synced.
pub async fn replace_text_file_durably<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    temporary: &Path,
    target: &Path,
    bytes: &[u8],
    steps: &ReplaceSteps,
) -> Result<(), StorageError> {
    replace_file(
        file_system,
        directory,
        temporary,
        target,
        bytes,
        steps,
        true,
    )
    .await
}

async fn replace_file<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    temporary: &Path,
    target: &Path,
    bytes: &[u8],
    steps: &ReplaceSteps,
    exact_length: bool,
) -> Result<(), StorageError> {
    let failed = |op: &'static str, path: &Path, position: Option<u64>| {
        let path = path.to_path_buf();
        move |error| StorageError::io(op, &path, position, error)
    };
    let file = file_system
        .open_file(temporary, OpenMode::CreateIfMissing)
        .await
        .map_err(failed(steps.create, temporary, None))?;
    let leftover = file
        .size()
        .await
        .map_err(failed(steps.size, temporary, None))?;
    if leftover > 0 {
        file.truncate(0)
            .await
            .map_err(failed(steps.empty, temporary, Some(0)))?;
    }
    let mut buffer = file.allocate_buffer(align_up(bytes.len() as u64) as usize);
    let block = buffer.as_bytes_mut();
    block[..bytes.len()].copy_from_slice(bytes);
    block[bytes.len()..].fill(0);
    let written =
        file.write_at(0, buffer)
            .await
            .map_err(failed(steps.write, temporary, Some(0)))?;
    if written < bytes.len() {
        return Err(StorageError::io(
            steps.write,
            temporary,
            Some(0),
            io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {written} of {} bytes", bytes.len()),
            ),
        ));
    }
    if exact_length && written as u64 != bytes.len() as u64 {
        file.truncate(bytes.len() as u64).await.map_err(failed(
            steps.write,
            temporary,
            Some(bytes.len() as u64),
        ))?;
    }
    file.sync_data()
        .await
        .map_err(failed(steps.sync, temporary, None))?;
    drop(file);
    file_system
        .rename(temporary, target)
        .await
        .map_err(failed(steps.rename, target, None))?;
    file_system.sync_directory(directory).await.map_err(failed(
        steps.sync_directory,
        directory,
        None,
    ))
}

/// The whole of a small file, or `None` when it does not exist.
pub async fn read_whole_file<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> io::Result<Option<Bytes>> {
    let file = match file_system.open_file(path, OpenMode::Existing).await {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let length = file.size().await?;
    let length = usize::try_from(length).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{length} bytes do not fit in memory"),
        )
    })?;
    file.read_at(0, length).await.map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alignment_rounds_to_whole_blocks() {
        assert_eq!(align_down(0), 0);
        assert_eq!(align_down(4095), 0);
        assert_eq!(align_down(4096), 4096);
        assert_eq!(align_up(1), 4096);
        assert_eq!(align_up(4096), 4096);
        assert_eq!(align_up(4097), 8192);
    }
}
