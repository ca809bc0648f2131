//! The file trait over plain blocking `std::fs` calls: for the broker's small metadata files (the
//! catalog, each topic's `topic.toml`, the producer-id reservation), which are written from a
//! blocking thread or before the executors start, where glommio's `DmaFile` cannot run.
//!
//! Every future here completes on its first poll: the call blocks the thread that polls it, so
//! run it from a blocking thread (glommio's `spawn_blocking`), never on an executor. Going through
//! the trait rather than `std::fs` lets tests run the same code on the in-memory disk
//! (`memory`), with its faults and crashes. Files are opened without O_DIRECT: the page cache is
//! harmless for a few kilobytes written rarely, and every write is followed by `fdatasync`.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;

use bytes::Bytes;

use super::file::{FileSystem, IoBuffer, OpenMode, StorageFile, DIRECT_IO_ALIGNMENT_BYTES};

/// The real disk through blocking calls. Stateless: any thread may make one.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockingFileSystem;

/// One open file.
#[derive(Debug)]
pub struct BlockingFile {
    file: File,
}

/// A heap buffer: without O_DIRECT, its address needs no alignment.
#[derive(Debug)]
pub struct HeapBuffer(Vec<u8>);

impl IoBuffer for HeapBuffer {
    fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}

fn heap_buffer(length: usize) -> HeapBuffer {
    debug_assert_eq!(length % DIRECT_IO_ALIGNMENT_BYTES, 0);
    HeapBuffer(vec![0; length])
}

/// Whether `path` is a directory; a missing path is not one (shared with `dma`).
pub(crate) fn is_directory(path: &Path) -> io::Result<bool> {
    match std::fs::metadata(path) {
        Ok(metadata) => Ok(metadata.is_dir()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(error) => Err(error),
    }
}

impl StorageFile for BlockingFile {
    type Buffer = HeapBuffer;

    fn allocate_buffer(&self, length: usize) -> HeapBuffer {
        heap_buffer(length)
    }

    async fn read_at(&self, position: u64, length: usize) -> io::Result<Bytes> {
        let mut bytes = vec![0; length];
        let mut filled = 0;
        while filled < length {
            match self
                .file
                .read_at(&mut bytes[filled..], position + filled as u64)
            {
                Ok(0) => break,
                Ok(read) => filled += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        bytes.truncate(filled);
        Ok(Bytes::from(bytes))
    }

    async fn write_at(&self, position: u64, buffer: HeapBuffer) -> io::Result<usize> {
        self.file.write_all_at(&buffer.0, position)?;
        Ok(buffer.0.len())
    }

    async fn sync_data(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    async fn truncate(&self, length: u64) -> io::Result<()> {
        self.file.set_len(length)
    }

    async fn size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    async fn preallocate(&self, end_position: u64) -> io::Result<()> {
        rustix::fs::fallocate(
            &self.file,
            rustix::fs::FallocateFlags::KEEP_SIZE,
            0,
            end_position,
        )
        .map_err(io::Error::from)
    }

    async fn link_count(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.nlink())
    }
}

impl FileSystem for BlockingFileSystem {
    type File = BlockingFile;

    fn allocate_buffer(&self, length: usize) -> HeapBuffer {
        heap_buffer(length)
    }

    async fn open_file(&self, path: &Path, mode: OpenMode) -> io::Result<BlockingFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(mode == OpenMode::CreateIfMissing)
            .truncate(false)
            .open(path)?;
        Ok(BlockingFile { file })
    }

    async fn create_directory(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir_all(path)
    }

    async fn list_directory(&self, path: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(path)? {
            if let Some(name) = entry?.file_name().to_str() {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    async fn remove_directory(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_dir(path)
    }

    async fn is_directory(&self, path: &Path) -> io::Result<bool> {
        is_directory(path)
    }

    async fn rename(&self, source: &Path, target: &Path) -> io::Result<()> {
        std::fs::rename(source, target)
    }

    async fn sync_directory(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::file::{read_whole_file, replace_text_file_durably, ReplaceSteps};
    use futures_lite::future::block_on;

    const STEPS: ReplaceSteps = ReplaceSteps {
        create: "creating",
        size: "sizing",
        empty: "emptying",
        write: "writing",
        sync: "syncing",
        rename: "renaming",
        sync_directory: "syncing directory",
    };

    #[test]
    fn a_text_file_is_replaced_with_exactly_its_bytes() {
        let directory = tempfile::tempdir().unwrap();
        let target = directory.path().join("file.toml");
        let temporary = directory.path().join("file.toml.new");
        let file_system = BlockingFileSystem;
        block_on(async {
            for text in ["a longer first version\n", "short\n"] {
                replace_text_file_durably(
                    &file_system,
                    directory.path(),
                    &temporary,
                    &target,
                    text.as_bytes(),
                    &STEPS,
                )
                .await
                .unwrap();
                assert_eq!(std::fs::read_to_string(&target).unwrap(), text);
                let read = read_whole_file(&file_system, &target).await.unwrap();
                assert_eq!(read.as_deref(), Some(text.as_bytes()));
            }
            assert!(!temporary.exists());
            assert!(
                read_whole_file(&file_system, &directory.path().join("none"))
                    .await
                    .unwrap()
                    .is_none()
            );
            assert!(file_system.is_directory(directory.path()).await.unwrap());
            assert!(!file_system.is_directory(&target).await.unwrap());
        });
    }
}
