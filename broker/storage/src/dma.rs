//! The real disk: [`FileSystem`] over glommio's `DmaFile` (O_DIRECT through io_uring), plus the
//! per-shard setup of a data directory that works around glommio 0.9's IOPOLL probe, and the
//! shard's pool of reusable write buffers.
//!
//! Every method here must run inside a glommio executor. Directory listing, creation and removal
//! use blocking `std::fs` calls: they happen only when a partition is opened, created or deleted,
//! never on the append or read path.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

use bytes::{Bytes, BytesMut};
use glommio::io::{Directory, DmaBuffer, DmaFile, OpenOptions};
use glommio::GlommioError;

use super::config::{
    READ_PARTS_MAX, READ_PART_BYTES_MIN, WRITE_BUFFER_POOL_BUFFERS_MAX, WRITE_BUFFER_POOL_BYTES_MAX,
};
use super::error::StorageError;
use super::file::{FileSystem, IoBuffer, OpenMode, StorageFile, DIRECT_IO_ALIGNMENT_BYTES};

/// Name of the file, in each data directory, that glommio probes for IOPOLL support.
pub const IOPOLL_PROBE_FILE_NAME: &str = ".iopoll-probe";

/// The direct-I/O file system of one shard. Create it with [`DmaFileSystem::for_data_dir`] on the
/// shard's own thread before opening any partition; it lives as long as that shard's partitions.
#[derive(Debug)]
pub struct DmaFileSystem {
    write_buffers: Rc<WriteBufferPool>,
}

/// One file opened with O_DIRECT.
#[derive(Debug)]
pub struct DmaStorageFile {
    file: DmaFile,
    write_buffers: Rc<WriteBufferPool>,
}

/// Write buffers returned by completed writes, for the shard's next writes of the same length.
///
/// Why: a write buffer used to be allocated per write, from the executor's registered io_uring
/// memory when it had room, else from the heap, where a multi-megabyte aligned allocation is
/// typically a fresh `mmap` that page-faults on first touch (issue #5's profile of the shard:
/// the copy into the buffer was about half of its time). Reused buffers stay mapped. Exact
/// lengths only: glommio's `DmaBuffer` cannot grow back after a trim, and a
/// write must be exactly its buffer's length. Steady appends of similar batches need only a few
/// lengths (a batch plus 0 or 1 block of the rewritten tail). Buffers come from the heap, not
/// from the executor's registered io_uring memory, so pooling them never starves reads of it.
/// Bounded by [`WRITE_BUFFER_POOL_BUFFERS_MAX`] and [`WRITE_BUFFER_POOL_BYTES_MAX`]; owned by the
/// shard's thread and dropped with its file system and files.
#[derive(Debug, Default)]
struct WriteBufferPool {
    /// Least recently returned first.
    free: RefCell<VecDeque<DmaBuffer>>,
    free_bytes: Cell<usize>,
    reused: Cell<u64>,
    allocated: Cell<u64>,
}

/// How the shard's write buffers were obtained, for tests and diagnostics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteBufferStats {
    /// Buffers taken from the pool.
    pub reused: u64,
    /// Buffers freshly allocated (the pool had none of that length).
    pub allocated: u64,
    /// Buffers in the pool now.
    pub pooled: usize,
    pub pooled_bytes: usize,
}

impl WriteBufferPool {
    fn take(&self, length: usize) -> DmaBuffer {
        let mut free = self.free.borrow_mut();
        if let Some(index) = free.iter().position(|buffer| buffer.len() == length) {
            let buffer = free.remove(index).expect("the index was just found");
            self.free_bytes.set(self.free_bytes.get() - length);
            self.reused.set(self.reused.get() + 1);
            return buffer;
        }
        self.allocated.set(self.allocated.get() + 1);
        glommio::allocate_dma_buffer_global(length)
    }

    fn give_back(&self, buffer: DmaBuffer) {
        if buffer.len() > WRITE_BUFFER_POOL_BYTES_MAX {
            return;
        }
        let mut free = self.free.borrow_mut();
        self.free_bytes.set(self.free_bytes.get() + buffer.len());
        free.push_back(buffer);
        while free.len() > WRITE_BUFFER_POOL_BUFFERS_MAX
            || self.free_bytes.get() > WRITE_BUFFER_POOL_BYTES_MAX
        {
            let oldest = free.pop_front().expect("an over-full pool is not empty");
            self.free_bytes.set(self.free_bytes.get() - oldest.len());
        }
    }

    fn stats(&self) -> WriteBufferStats {
        WriteBufferStats {
            reused: self.reused.get(),
            allocated: self.allocated.get(),
            pooled: self.free.borrow().len(),
            pooled_bytes: self.free_bytes.get(),
        }
    }
}

impl IoBuffer for DmaBuffer {
    fn as_bytes(&self) -> &[u8] {
        DmaBuffer::as_bytes(self)
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        DmaBuffer::as_bytes_mut(self)
    }
}

/// glommio opens paths with `openat(-1, path)`, which fails with EBADF for a relative path
/// (there is no directory descriptor to resolve it against), so every path handed to glommio is
/// made absolute first against the current directory. `std::fs` calls need no such care.
fn absolute(path: &Path) -> io::Result<PathBuf> {
    std::path::absolute(path)
}

/// glommio's error keeps the OS error inside; unwrap it so `ENOSPC` stays recognisable
/// (glommio's own conversion rebuilds the error from its kind and loses the errno).
pub(crate) fn into_io(error: GlommioError<()>) -> io::Error {
    match error {
        GlommioError::IoError(source) => source,
        GlommioError::EnhancedIoError { source, .. } => source,
        other => io::Error::from(other),
    }
}

impl DmaFileSystem {
    /// Prepares `data_dir` for direct I/O on the calling executor thread and returns the file
    /// system to open partitions with. Call once per shard thread, before any partition.
    ///
    /// glommio 0.9 quirk: the first `DmaFile` opened on a device, per thread, runs
    /// `probe_iopoll_support`, which reads 512 bytes at offset 0 through the poll ring and caches
    /// the answer for the thread. On an EMPTY file that read "succeeds" with EOF, so glommio
    /// concludes the device supports IOPOLL; on virtio (and other devices without poll queues)
    /// every later O_DIRECT read then fails with EOPNOTSUPP. A new partition's first file is an
    /// empty segment, so we open a non-empty probe file on the same device first: its real read
    /// gives the correct answer, which glommio caches before any segment is opened.
    pub async fn for_data_dir(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir).map_err(|source| {
            StorageError::io("creating data directory", data_dir, None, source)
        })?;
        let probe_path = data_dir.join(IOPOLL_PROBE_FILE_NAME);
        let probe_bytes_present = std::fs::metadata(&probe_path)
            .map(|metadata| metadata.len())
            .unwrap_or(0);
        if probe_bytes_present < DIRECT_IO_ALIGNMENT_BYTES as u64 {
            // Written under a name of this thread's own and renamed into place: the shards of one
            // broker run this concurrently, and a plain write truncates the file first, so a peer
            // opening it at that moment would probe an empty file (the very misfire this avoids).
            let thread_id = rustix::thread::gettid().as_raw_nonzero();
            let staging_path = data_dir.join(format!("{IOPOLL_PROBE_FILE_NAME}.{thread_id}.tmp"));
            std::fs::write(&staging_path, [0x5a_u8; DIRECT_IO_ALIGNMENT_BYTES]).map_err(
                |source| StorageError::io("writing iopoll probe", &staging_path, None, source),
            )?;
            std::fs::rename(&staging_path, &probe_path).map_err(|source| {
                StorageError::io("renaming iopoll probe", &probe_path, None, source)
            })?;
        }
        let probe_path = absolute(&probe_path).map_err(|source| {
            StorageError::io("resolving iopoll probe", &probe_path, None, source)
        })?;
        let probe = DmaFile::open(&probe_path).await.map_err(|error| {
            StorageError::io("opening iopoll probe", &probe_path, None, into_io(error))
        })?;
        let _ = probe.close().await;
        Ok(Self {
            write_buffers: Rc::default(),
        })
    }

    /// How this shard's write buffers were obtained so far.
    pub fn write_buffer_stats(&self) -> WriteBufferStats {
        self.write_buffers.stats()
    }
}

impl StorageFile for DmaStorageFile {
    type Buffer = DmaBuffer;

    fn allocate_buffer(&self, length: usize) -> DmaBuffer {
        debug_assert_eq!(length % DIRECT_IO_ALIGNMENT_BYTES, 0);
        self.write_buffers.take(length)
    }

    async fn read_at(&self, position: u64, length: usize) -> io::Result<Bytes> {
        // `read_at` aligns the request itself; the result is copied out of the DMA buffer once so
        // that batches can be handed out as `Bytes` (the DMA buffer is `!Send` and pooled).
        let parts = read_parts(position, length);
        if parts.len() == 1 {
            let result = self.file.read_at(position, length).await.map_err(into_io)?;
            return Ok(Bytes::copy_from_slice(&result));
        }
        // Every part is submitted before any is awaited: the first poll of each read puts it on
        // the ring, so all of them are in flight together (see `READ_PART_BYTES_MIN`).
        let reads = parts
            .iter()
            .map(|&(part_position, part_length)| {
                Box::pin(self.file.read_at(part_position, part_length))
            })
            .collect();
        let results = join_all(reads).await;
        let mut bytes = BytesMut::with_capacity(length);
        for (result, (_, part_length)) in results.into_iter().zip(parts) {
            let part = result.map_err(into_io)?;
            bytes.extend_from_slice(&part);
            if part.len() < part_length {
                // The file ends inside this part: the later parts read nothing.
                break;
            }
        }
        Ok(bytes.freeze())
    }

    async fn write_at(&self, position: u64, buffer: DmaBuffer) -> io::Result<usize> {
        debug_assert_eq!(position % DIRECT_IO_ALIGNMENT_BYTES as u64, 0);
        debug_assert_eq!(buffer.len() % DIRECT_IO_ALIGNMENT_BYTES, 0);
        // Shared with the ring so that the buffer comes back once the write completes. If this
        // future is dropped mid-write, glommio keeps its reference until the kernel is done and
        // the buffer is simply freed then.
        let buffer = Rc::new(buffer);
        let result = self.file.write_rc_at(buffer.clone(), position).await;
        if let Ok(buffer) = Rc::try_unwrap(buffer) {
            self.write_buffers.give_back(buffer);
        }
        result.map_err(into_io)
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.fdatasync().await.map_err(into_io)
    }

    async fn truncate(&self, length: u64) -> io::Result<()> {
        self.file.truncate(length).await.map_err(into_io)
    }

    async fn size(&self) -> io::Result<u64> {
        self.file.file_size().await.map_err(into_io)
    }

    async fn preallocate(&self, end_position: u64) -> io::Result<()> {
        // An io_uring fallocate (run by the kernel off this thread): the executor never blocks.
        self.file
            .pre_allocate(end_position, true)
            .await
            .map_err(into_io)
    }

    async fn link_count(&self) -> io::Result<u64> {
        // A plain fstat on the descriptor: it reads the in-memory inode and never waits for the
        // device (glommio's statx returns no link count), so it costs about a microsecond on
        // the executor thread, once per sync.
        // SAFETY: the descriptor is open for the life of `self.file`, which outlives this
        // borrow (glommio's `DmaFile` gives only a raw descriptor, no `AsFd`).
        let descriptor = unsafe { BorrowedFd::borrow_raw(self.file.as_raw_fd()) };
        let links = rustix::fs::fstat(descriptor)?.st_nlink;
        #[allow(clippy::unnecessary_cast)] // `nlink_t` is u32 on some targets.
        Ok(links as u64)
    }
}

impl FileSystem for DmaFileSystem {
    type File = DmaStorageFile;

    fn allocate_buffer(&self, length: usize) -> DmaBuffer {
        debug_assert_eq!(length % DIRECT_IO_ALIGNMENT_BYTES, 0);
        self.write_buffers.take(length)
    }

    async fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<DmaStorageFile> {
        // glommio 0.9 quirk: `DmaFile::create` opens the file write-only, so reads of a segment
        // created that way fail with EBADF. Open read+write explicitly instead.
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateIfMissing)
            .dma_open(absolute(path)?)
            .await
            .map_err(into_io)?;
        Ok(DmaStorageFile {
            file,
            write_buffers: self.write_buffers.clone(),
        })
    }

    async fn create_directory(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    async fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        glommio::io::remove(absolute(path)?).await.map_err(into_io)
    }

    async fn remove_directory(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    async fn is_directory(&self, path: &Path) -> io::Result<bool> {
        crate::blocking::is_directory(path)
    }

    async fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        glommio::io::rename(absolute(source)?, absolute(target)?)
            .await
            .map_err(into_io)
    }

    async fn sync_directory(&self, path: &Path) -> io::Result<()> {
        let directory = Directory::open(absolute(path)?).await.map_err(into_io)?;
        let synced = directory.sync().await.map_err(into_io);
        let _ = directory.close().await;
        synced
    }
}

/// The path of the probe file for a data directory (for tests and tools).
pub fn iopoll_probe_path(data_dir: &Path) -> PathBuf {
    data_dir.join(IOPOLL_PROBE_FILE_NAME)
}

/// How a read of `length` bytes at `position` is split (see [`READ_PART_BYTES_MIN`]): consecutive
/// `(position, length)` parts covering exactly the read, every inner boundary on a block
/// boundary (so no block is read twice), each part at least `READ_PART_BYTES_MIN` long but the
/// last, at most [`READ_PARTS_MAX`] of them. A short read is one part.
fn read_parts(position: u64, length: usize) -> Vec<(u64, usize)> {
    let count = (length / READ_PART_BYTES_MIN).clamp(1, READ_PARTS_MAX);
    if count == 1 {
        return vec![(position, length)];
    }
    let end = position + length as u64;
    let step = (length / count) as u64;
    let mut parts = Vec::with_capacity(count);
    let mut start = position;
    for index in 1..count {
        let boundary = align_down(position + step * index as u64);
        if boundary > start && boundary < end {
            parts.push((start, (boundary - start) as usize));
            start = boundary;
        }
    }
    parts.push((start, (end - start) as usize));
    parts
}

fn align_down(position: u64) -> u64 {
    position - position % DIRECT_IO_ALIGNMENT_BYTES as u64
}

/// Polls every future until all are ready; outputs in the order given. Each is polled once
/// before this first returns `Pending`, which is what puts every read on the ring at once.
async fn join_all<F: Future>(mut futures: Vec<Pin<Box<F>>>) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|context| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(context) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    outputs
        .into_iter()
        .map(|output| output.expect("every future finished"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn covers_exactly(parts: &[(u64, usize)], position: u64, length: usize) {
        let mut next = position;
        for &(part_position, part_length) in parts {
            assert_eq!(part_position, next, "{parts:?}");
            next += part_length as u64;
        }
        assert_eq!(next, position + length as u64, "{parts:?}");
    }

    #[test]
    fn short_reads_stay_whole() {
        assert_eq!(read_parts(100, 4096), vec![(100, 4096)]);
        let length = 2 * READ_PART_BYTES_MIN - 1;
        assert_eq!(read_parts(0, length), vec![(0, length)]);
    }

    #[test]
    fn large_reads_split_on_block_boundaries_into_at_most_the_maximum() {
        for (position, length) in [
            (0, 2 * READ_PART_BYTES_MIN),
            (12_345, 1024 * 1024),
            (4096, 1024 * 1024 + 17),
            (999, 64 * 1024 * 1024),
        ] {
            let parts = read_parts(position, length);
            assert!(
                parts.len() >= 2 && parts.len() <= READ_PARTS_MAX,
                "{parts:?}"
            );
            covers_exactly(&parts, position, length);
            for &(part_position, part_length) in &parts[1..] {
                assert_eq!(part_position % DIRECT_IO_ALIGNMENT_BYTES as u64, 0);
                assert!(part_length > 0);
            }
            for &(_, part_length) in &parts[..parts.len() - 1] {
                assert!(part_length >= READ_PART_BYTES_MIN - DIRECT_IO_ALIGNMENT_BYTES);
            }
        }
    }
}
