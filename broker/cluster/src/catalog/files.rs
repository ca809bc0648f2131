//! The catalog's file operations, over the storage file trait ([`FileSystem`]) and run to
//! completion on the calling thread.
//!
//! The catalog is shared by every shard and written from blocking threads, so its API stays
//! synchronous: each operation here drives one trait future with `block_on`. In the broker the
//! file system is [`spate_storage::BlockingFileSystem`] (plain `std::fs`, whose futures are
//! ready at once); in tests it is the in-memory disk, whose faults, crashes and operator damage
//! then reach the catalog files exactly as they reach the partition logs.
//!
//! What is not here: the data directory lock (`lock`, an `flock` the trait has no call for).

use std::io;
use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use spate_storage::{
    read_whole_file, replace_text_file_durably, FileSystem, OpenMode, ReplaceSteps, StorageError,
    StorageFile,
};

/// A step of [`write_file_durably`] (or another file operation) that failed: what was being
/// done, on which path. Each caller turns it into its own error type.
#[derive(Debug)]
pub(crate) struct FileError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

fn failed(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> FileError {
    let path = path.to_path_buf();
    move |source| FileError { op, path, source }
}

const STEPS: ReplaceSteps = ReplaceSteps {
    create: "create",
    size: "size",
    empty: "empty",
    write: "write",
    sync: "fsync",
    rename: "rename",
    sync_directory: "fsync directory",
};

/// Replaces `directory/name` with `bytes` so that a crash leaves the whole old file or the whole
/// new one, never a mix: writes `name.new`, fsyncs it, renames it over `name` and fsyncs the
/// directory, so the rename itself is durable when this returns.
pub(crate) fn write_file_durably<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    name: &str,
    bytes: &[u8],
) -> Result<(), FileError> {
    let target = directory.join(name);
    let temporary = directory.join(format!("{name}.new"));
    block_on(replace_text_file_durably(
        file_system,
        directory,
        &temporary,
        &target,
        bytes,
        &STEPS,
    ))
    .map_err(|error| match error {
        StorageError::Io {
            op, path, source, ..
        }
        | StorageError::NoSpace {
            op, path, source, ..
        } => FileError {
            op,
            path,
            // The storage error shares its source; keep its kind and its words.
            source: io::Error::new(source.kind(), source.to_string()),
        },
        other => unreachable!("replacing a file fails only with an I/O error, not {other}"),
    })
}

/// The whole file, or `None` when it does not exist.
pub(crate) fn read<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<Option<Vec<u8>>, FileError> {
    block_on(read_whole_file(file_system, path))
        .map(|bytes| bytes.map(|bytes| bytes.to_vec()))
        .map_err(failed("read", path))
}

/// The entries of a directory, or `None` when it does not exist.
pub(crate) fn list<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<Option<Vec<String>>, FileError> {
    match block_on(file_system.list_directory(path)) {
        Ok(mut names) => {
            names.sort();
            Ok(Some(names))
        }
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(failed("list", path)(source)),
    }
}

pub(crate) fn is_directory<F: FileSystem>(file_system: &F, path: &Path) -> Result<bool, FileError> {
    block_on(file_system.is_directory(path)).map_err(failed("inspect", path))
}

/// The length of a file.
pub(crate) fn length<F: FileSystem>(file_system: &F, path: &Path) -> io::Result<u64> {
    block_on(async {
        let file = file_system.open_file(path, OpenMode::Existing).await?;
        file.size().await
    })
}

/// Creates the directory and any missing parents.
pub(crate) fn create_directory<F: FileSystem>(
    file_system: &F,
    path: &Path,
) -> Result<(), FileError> {
    block_on(file_system.create_directory(path)).map_err(failed("create directory", path))
}

/// fsyncs `directory`, so that entries created, renamed or removed in it are durable.
pub(crate) fn sync_directory<F: FileSystem>(
    file_system: &F,
    directory: &Path,
) -> Result<(), FileError> {
    block_on(file_system.sync_directory(directory)).map_err(failed("fsync directory", directory))
}

pub(crate) fn rename<F: FileSystem>(
    file_system: &F,
    source: &Path,
    target: &Path,
) -> Result<(), FileError> {
    block_on(file_system.rename(source, target)).map_err(failed("rename", target))
}

/// Removes a directory and everything under it (`rm -r`); a missing one is already removed.
pub(crate) fn remove_tree<F: FileSystem>(file_system: &F, path: &Path) -> Result<(), FileError> {
    let Some(names) = list(file_system, path)? else {
        return Ok(());
    };
    for name in names {
        let child = path.join(name);
        if is_directory(file_system, &child)? {
            remove_tree(file_system, &child)?;
        } else {
            match block_on(file_system.remove_file(&child)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(source) => return Err(failed("remove", &child)(source)),
            }
        }
    }
    match block_on(file_system.remove_directory(path)) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(failed("remove directory", path)(source)),
    }
}
