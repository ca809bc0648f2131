//! The shard's open-file cache: file handles that hold a descriptor only while they are among
//! the most recently used, so descriptors do not grow with partitions (issue #18).
//!
//! [`CachedFileSystem`] wraps another [`FileSystem`]. Its files ([`CachedFile`]) keep a path
//! and open the real file on their first use after an eviction; at most `open_files_max` real
//! files stay open per shard (least recently used closed first). A partition that is idle costs
//! no descriptor; a read of an old segment reopens it on demand.
//!
//! Durability: a file with writes, truncations or preallocations not yet covered by a
//! successful `sync_data` is synced before the cache closes it, so closing never drops data a
//! later sync of the log would have promised. If that sync fails, the file stays open and dirty,
//! so the log's own next sync of it runs on the same descriptor and covers the same changes.
//! That is sound because every data file is written with O_DIRECT: no data waits in the page
//! cache, where a failed writeback would mark pages clean and a later fsync succeed without them
//! ("fsyncgate"); a failed fdatasync here is a failed device flush or journal commit, which the
//! next fdatasync repeats (or, after a journal abort, fails too).
//!
//! Limits: files in use by an operation in flight are never closed under it, so the count of
//! real open files can exceed `open_files_max` by the operations in flight on the shard; and a
//! file whose eviction sync failed stays open. A handle reopens with [`OpenMode::Existing`]: a
//! file removed while its handle was evicted is gone (an open descriptor would have kept an
//! unlinked file readable), which a read racing with retention reports as an I/O error.
//!
//! Owned by one shard's thread (`Rc`, no locks), like the partitions that use it.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::Bytes;

use super::file::{FileSystem, OpenMode, StorageFile};

/// Share of the process's descriptor limit the shards' caches take together when no limit is
/// configured; the rest is for connections, directories and the runtime.
pub const DESCRIPTOR_SHARE_PERCENT: u64 = 50;
/// Bounds of a derived per-shard limit: below the lower one a partition's own files would
/// thrash; above the upper one more open files save nothing measurable.
pub const OPEN_FILES_PER_SHARD_MIN: usize = 16;
pub const OPEN_FILES_PER_SHARD_DERIVED_MAX: usize = 16_384;

/// The per-shard limit derived from the process's descriptor limit: an equal part of
/// [`DESCRIPTOR_SHARE_PERCENT`] of it for each shard, within
/// [`OPEN_FILES_PER_SHARD_MIN`]..=[`OPEN_FILES_PER_SHARD_DERIVED_MAX`].
pub fn open_files_per_shard(descriptors_max: u64, shard_count: usize) -> usize {
    let share = descriptors_max.saturating_mul(DESCRIPTOR_SHARE_PERCENT) / 100;
    let per_shard = share / shard_count.max(1) as u64;
    usize::try_from(per_shard)
        .unwrap_or(usize::MAX)
        .clamp(OPEN_FILES_PER_SHARD_MIN, OPEN_FILES_PER_SHARD_DERIVED_MAX)
}

/// Counters of the cache, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FileCacheStats {
    /// Real files open now and held by the cache.
    pub open_files: usize,
    /// Real opens (first opens and reopens).
    pub opens: u64,
    /// Files closed to make room.
    pub evictions: u64,
    /// Syncs done before closing a file with unsynced changes.
    pub eviction_syncs: u64,
    /// Eviction syncs that failed (the file stayed open).
    pub eviction_sync_failures: u64,
}

/// A real open file and what was done to it since its last successful sync.
struct OpenFile<File> {
    file: File,
    /// Writes, truncations and preallocations completed (or failed: a failed write may have
    /// changed part of the file).
    changes: Cell<u64>,
    /// `changes` as it was when the last successful sync started.
    changes_synced: Cell<u64>,
}

impl<File> OpenFile<File> {
    fn is_dirty(&self) -> bool {
        self.changes.get() > self.changes_synced.get()
    }
}

/// One handle's place in the cache.
struct Resident<File> {
    file: Rc<OpenFile<File>>,
    last_use: u64,
}

struct Entries<File> {
    by_handle: HashMap<u64, Resident<File>>,
    /// `last_use` -> handle: the least recently used first.
    by_use: BTreeMap<u64, u64>,
    next_use: u64,
    next_handle: u64,
    stats: FileCacheStats,
}

/// What a handle shares with the cache.
struct Cache<File> {
    open_files_max: usize,
    entries: RefCell<Entries<File>>,
}

impl<File: StorageFile> Cache<File> {
    fn touch(&self, handle: u64) -> Option<Rc<OpenFile<File>>> {
        let mut entries = self.entries.borrow_mut();
        let use_number = entries.next_use;
        let resident = entries.by_handle.get_mut(&handle)?;
        let previous = std::mem::replace(&mut resident.last_use, use_number);
        let file = resident.file.clone();
        entries.by_use.remove(&previous);
        entries.by_use.insert(use_number, handle);
        entries.next_use += 1;
        Some(file)
    }

    fn insert(&self, handle: u64, file: Rc<OpenFile<File>>) {
        let mut entries = self.entries.borrow_mut();
        let last_use = entries.next_use;
        entries.next_use += 1;
        entries.by_use.insert(last_use, handle);
        let replaced = entries
            .by_handle
            .insert(handle, Resident { file, last_use });
        assert!(replaced.is_none(), "a handle is resident at most once");
        entries.stats.open_files = entries.by_handle.len();
    }

    fn remove(&self, handle: u64) -> Option<Rc<OpenFile<File>>> {
        let mut entries = self.entries.borrow_mut();
        let resident = entries.by_handle.remove(&handle)?;
        entries.by_use.remove(&resident.last_use);
        entries.stats.open_files = entries.by_handle.len();
        Some(resident.file)
    }

    /// Closes least recently used files until one more fits. Files in use are skipped; a dirty
    /// file is synced first, and kept (still dirty) if that fails.
    async fn make_room(&self) {
        let mut tries = self.entries.borrow().by_handle.len();
        while tries > 0 {
            tries -= 1;
            let victim = {
                let entries = self.entries.borrow();
                if entries.by_handle.len() < self.open_files_max {
                    return;
                }
                entries
                    .by_use
                    .values()
                    .copied()
                    .find(|handle| Rc::strong_count(&entries.by_handle[handle].file) == 1)
            };
            let Some(handle) = victim else {
                return; // Everything is in use: go over the limit rather than wait.
            };
            let file = self.entries.borrow().by_handle[&handle].file.clone();
            if file.is_dirty() {
                self.entries.borrow_mut().stats.eviction_syncs += 1;
                let synced = file.changes.get();
                match file.file.sync_data().await {
                    Ok(()) => file.changes_synced.set(synced),
                    Err(error) => {
                        self.entries.borrow_mut().stats.eviction_sync_failures += 1;
                        tracing::debug!(%error, "sync before closing a cached file failed; kept open");
                        // Most recently used now, so the next try picks another file.
                        drop(file);
                        self.touch(handle);
                        continue;
                    }
                }
            }
            // Re-checked: the sync let other tasks run.
            if Rc::strong_count(&file) == 2 && !file.is_dirty() && self.remove(handle).is_some() {
                self.entries.borrow_mut().stats.evictions += 1;
            }
        }
    }
}

/// A [`FileSystem`] whose files hold descriptors only while recently used. One per shard.
pub struct CachedFileSystem<F: FileSystem> {
    inner: Rc<F>,
    cache: Rc<Cache<F::File>>,
}

impl<F: FileSystem> std::fmt::Debug for CachedFileSystem<F> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CachedFileSystem")
            .field("open_files_max", &self.cache.open_files_max)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A file of a [`CachedFileSystem`]: a path, and the real file while the cache holds it.
pub struct CachedFile<F: FileSystem> {
    handle: u64,
    path: PathBuf,
    inner: Rc<F>,
    cache: Rc<Cache<F::File>>,
}

impl<F: FileSystem> std::fmt::Debug for CachedFile<F> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CachedFile")
            .field("path", &self.path)
            .finish()
    }
}

impl<F: FileSystem> CachedFileSystem<F> {
    /// At most `open_files_max` files of `inner` stay open (see the module docs for when the
    /// count may run over).
    pub fn new(inner: F, open_files_max: usize) -> Self {
        assert!(open_files_max > 0, "the cache holds at least one file");
        Self {
            inner: Rc::new(inner),
            cache: Rc::new(Cache {
                open_files_max,
                entries: RefCell::new(Entries {
                    by_handle: HashMap::new(),
                    by_use: BTreeMap::new(),
                    next_use: 0,
                    next_handle: 0,
                    stats: FileCacheStats::default(),
                }),
            }),
        }
    }

    pub fn inner(&self) -> &F {
        &self.inner
    }

    pub fn open_files_max(&self) -> usize {
        self.cache.open_files_max
    }

    pub fn stats(&self) -> FileCacheStats {
        self.cache.entries.borrow().stats
    }
}

impl<F: FileSystem> CachedFile<F> {
    /// The real file, opened again if the cache closed it. Holding the `Rc` keeps it open.
    async fn open(&self) -> io::Result<Rc<OpenFile<F::File>>> {
        if let Some(file) = self.cache.touch(self.handle) {
            return Ok(file);
        }
        self.cache.make_room().await;
        let file = self.inner.open_file(&self.path, OpenMode::Existing).await?;
        // Another task of this handle may have reopened it meanwhile: use that one.
        if let Some(resident) = self.cache.touch(self.handle) {
            return Ok(resident);
        }
        let file = Rc::new(OpenFile {
            file,
            changes: Cell::new(0),
            changes_synced: Cell::new(0),
        });
        self.cache.entries.borrow_mut().stats.opens += 1;
        self.cache.insert(self.handle, file.clone());
        Ok(file)
    }

    /// Runs a changing operation and counts it, whether it succeeded or not.
    async fn change<T>(
        &self,
        operation: impl AsyncFnOnce(&F::File) -> io::Result<T>,
    ) -> io::Result<T> {
        let file = self.open().await?;
        let result = operation(&file.file).await;
        file.changes.set(file.changes.get() + 1);
        result
    }
}

impl<F: FileSystem> Drop for CachedFile<F> {
    fn drop(&mut self) {
        self.cache.remove(self.handle);
    }
}

impl<F: FileSystem> StorageFile for CachedFile<F> {
    type Buffer = <F::File as StorageFile>::Buffer;

    fn allocate_buffer(&self, length: usize) -> Self::Buffer {
        self.inner.allocate_buffer(length)
    }

    async fn read_at(&self, position: u64, length: usize) -> io::Result<Bytes> {
        self.open().await?.file.read_at(position, length).await
    }

    async fn write_at(&self, position: u64, buffer: Self::Buffer) -> io::Result<usize> {
        self.change(async |file| file.write_at(position, buffer).await)
            .await
    }

    async fn sync_data(&self) -> io::Result<()> {
        let file = self.open().await?;
        let synced = file.changes.get();
        file.file.sync_data().await?;
        file.changes_synced
            .set(file.changes_synced.get().max(synced));
        Ok(())
    }

    async fn truncate(&self, length: u64) -> io::Result<()> {
        self.change(async |file| file.truncate(length).await).await
    }

    async fn size(&self) -> io::Result<u64> {
        self.open().await?.file.size().await
    }

    async fn preallocate(&self, end_position: u64) -> io::Result<()> {
        self.change(async |file| file.preallocate(end_position).await)
            .await
    }

    async fn link_count(&self) -> io::Result<u64> {
        match self.open().await {
            Ok(file) => file.file.link_count().await,
            // Closed by the cache and gone since: no directory entry names it any more.
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(error),
        }
    }
}

impl<F: FileSystem + 'static> FileSystem for CachedFileSystem<F> {
    type File = CachedFile<F>;

    fn allocate_buffer(&self, length: usize) -> <F::File as StorageFile>::Buffer {
        self.inner.allocate_buffer(length)
    }

    /// Opens (or creates) the real file now, so a missing file or a failed creation is reported
    /// here, and keeps it in the cache as the most recently used.
    async fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<CachedFile<F>> {
        self.cache.make_room().await;
        let file = self.inner.open_file(path, mode).await?;
        let handle = {
            let mut entries = self.cache.entries.borrow_mut();
            entries.next_handle += 1;
            entries.stats.opens += 1;
            entries.next_handle
        };
        self.cache.insert(
            handle,
            Rc::new(OpenFile {
                file,
                changes: Cell::new(0),
                changes_synced: Cell::new(0),
            }),
        );
        Ok(CachedFile {
            handle,
            path: path.to_path_buf(),
            inner: self.inner.clone(),
            cache: self.cache.clone(),
        })
    }

    async fn create_directory(&self, path: &Path) -> io::Result<()> {
        self.inner.create_directory(path).await
    }

    async fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        self.inner.list_directory(path).await
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_file(path).await
    }

    async fn remove_directory(&self, path: &Path) -> io::Result<()> {
        self.inner.remove_directory(path).await
    }

    async fn is_directory(&self, path: &Path) -> io::Result<bool> {
        self.inner.is_directory(path).await
    }

    async fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        self.inner.rename(source, target).await
    }

    async fn sync_directory(&self, path: &Path) -> io::Result<()> {
        self.inner.sync_directory(path).await
    }
}

#[cfg(test)]
mod tests {
    use futures_lite::future::block_on;

    use super::*;
    use crate::file::{IoBuffer, DIRECT_IO_ALIGNMENT_BYTES};
    use crate::MemoryFileSystem;

    const BLOCK: usize = DIRECT_IO_ALIGNMENT_BYTES;

    fn cached(open_files_max: usize) -> (MemoryFileSystem, CachedFileSystem<MemoryFileSystem>) {
        let disk = MemoryFileSystem::new(7);
        block_on(disk.create_directory(Path::new("/data"))).unwrap();
        (disk.clone(), CachedFileSystem::new(disk, open_files_max))
    }

    fn path(index: usize) -> PathBuf {
        PathBuf::from(format!("/data/{index}"))
    }

    fn write_block(file: &CachedFile<MemoryFileSystem>, byte: u8) {
        let mut buffer = file.allocate_buffer(BLOCK);
        buffer.as_bytes_mut().fill(byte);
        assert_eq!(block_on(file.write_at(0, buffer)).unwrap(), BLOCK);
    }

    #[test]
    fn at_most_the_limit_of_files_stay_open_however_many_handles_exist() {
        let (_, files) = cached(4);
        let handles: Vec<_> = (0..20)
            .map(|index| block_on(files.open_file(&path(index), OpenMode::CreateIfMissing)))
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(files.stats().open_files, 4);
        assert_eq!(files.stats().evictions, 16);
        for handle in &handles {
            block_on(handle.size()).unwrap();
            assert!(files.stats().open_files <= 4);
        }
    }

    #[test]
    fn the_least_recently_used_file_is_closed_first_and_reopened_on_its_next_read() {
        let (_, files) = cached(2);
        let first = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        write_block(&first, 0x11);
        block_on(first.sync_data()).unwrap();
        let second = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing)).unwrap();
        let third = block_on(files.open_file(&path(2), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().evictions, 1);
        let opens = files.stats().opens;
        // `first` was the least recently used: `second` and `third` are still open.
        block_on(second.size()).unwrap();
        block_on(third.size()).unwrap();
        assert_eq!(files.stats().opens, opens);
        let bytes = block_on(first.read_at(0, BLOCK)).unwrap();
        assert_eq!(files.stats().opens, opens + 1);
        assert!(bytes.iter().all(|byte| *byte == 0x11));
        assert_eq!(files.stats().open_files, 2);
    }

    #[test]
    fn a_file_with_unsynced_writes_is_synced_before_it_is_closed() {
        let (disk, files) = cached(1);
        let written = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        block_on(disk.sync_directory(Path::new("/data"))).unwrap();
        write_block(&written, 0x22);
        let syncs = disk.stats().data_syncs;
        let _other = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().eviction_syncs, 1);
        assert_eq!(disk.stats().data_syncs, syncs + 1);
        // Power loss: what the eviction synced survives.
        disk.crash();
        assert_eq!(disk.file_bytes(&path(0)).unwrap(), vec![0x22; BLOCK]);
    }

    #[test]
    fn a_clean_file_is_closed_without_a_sync() {
        let (disk, files) = cached(1);
        let written = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        write_block(&written, 0x33);
        block_on(written.sync_data()).unwrap();
        let syncs = disk.stats().data_syncs;
        let _other = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().evictions, 1);
        assert_eq!(files.stats().eviction_syncs, 0);
        assert_eq!(disk.stats().data_syncs, syncs);
    }

    #[test]
    fn a_failed_eviction_sync_keeps_the_file_open_and_dirty_for_the_next_sync() {
        let (disk, files) = cached(1);
        let written = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        write_block(&written, 0x44);
        disk.set_faults(crate::FaultPlan {
            error_ppm: 1_000_000,
            ..Default::default()
        });
        let opened = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing));
        disk.set_faults(crate::FaultPlan::default());
        assert!(
            opened.is_err(),
            "the open itself failed under the same faults"
        );
        assert_eq!(files.stats().eviction_sync_failures, 1);
        assert_eq!(files.stats().open_files, 1);
        let syncs = disk.stats().data_syncs;
        block_on(written.sync_data()).unwrap();
        assert_eq!(disk.stats().data_syncs, syncs + 1);
        // Synced by its owner now, it is closed without another sync.
        let _other = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().open_files, 1);
        assert_eq!(disk.stats().data_syncs, syncs + 1);
        block_on(disk.sync_directory(Path::new("/data"))).unwrap();
        disk.crash();
        assert_eq!(disk.file_bytes(&path(0)).unwrap(), vec![0x44; BLOCK]);
    }

    #[test]
    fn the_derived_limit_is_a_share_of_the_descriptor_limit_within_bounds() {
        assert_eq!(open_files_per_shard(20_000, 2), 5_000);
        assert_eq!(open_files_per_shard(64, 4), OPEN_FILES_PER_SHARD_MIN);
        assert_eq!(
            open_files_per_shard(u64::MAX, 1),
            OPEN_FILES_PER_SHARD_DERIVED_MAX
        );
    }

    #[test]
    fn a_dropped_handle_closes_its_file() {
        let (_, files) = cached(4);
        let handle = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().open_files, 1);
        drop(handle);
        assert_eq!(files.stats().open_files, 0);
    }

    #[test]
    fn a_file_in_use_is_not_closed_under_its_operation() {
        let (_, files) = cached(1);
        let first = block_on(files.open_file(&path(0), OpenMode::CreateIfMissing)).unwrap();
        let in_use = block_on(first.open()).unwrap();
        let _second = block_on(files.open_file(&path(1), OpenMode::CreateIfMissing)).unwrap();
        // Over the limit by the one file in use, rather than closing it.
        assert_eq!(files.stats().open_files, 2);
        drop(in_use);
        let _third = block_on(files.open_file(&path(2), OpenMode::CreateIfMissing)).unwrap();
        assert_eq!(files.stats().open_files, 1);
    }
}
