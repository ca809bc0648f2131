//! The data directory's owner: an advisory `flock` on `<data_dir>/spate.lock`, taken before the
//! broker reads or changes anything else in the directory and held until the process exits.
//!
//! Why: two brokers on one directory each treat the other's topics as strays and overwrite each
//! other's catalog, so acknowledged records are lost. The kernel releases a `flock` when its last
//! descriptor closes, which includes `kill -9`, so a crashed broker never leaves a stale lock
//! behind and no "remove the lock file" step exists. The file's contents (pid, listen address,
//! start time, host) are only for the message the next broker shows; the lock is the `flock`.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// File name of the lock inside the data directory.
pub const LOCK_FILE_NAME: &str = "spate.lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum DataDirectoryLockError {
    #[error(
        "data directory {data_dir} is in use by another broker ({holder}); stop that broker or \
         give this one another --data-dir (the lock is {path}, released by the kernel when the \
         holder exits, even by kill -9)"
    )]
    Held {
        data_dir: PathBuf,
        path: PathBuf,
        /// What the holder wrote about itself, or why it cannot be said.
        holder: String,
    },
    #[error("cannot lock data directory: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the life of the broker: dropping it closes the descriptor and releases the lock.
#[derive(Debug)]
pub struct DataDirectoryLock {
    file: std::fs::File,
    path: PathBuf,
}

impl DataDirectoryLock {
    /// Creates `data_dir` if needed and locks it, without waiting. `owner` describes this process
    /// for the message another broker shows (e.g. the listen address); the pid, start time and
    /// host are added here.
    pub fn acquire(data_dir: &Path, owner: &str) -> Result<Self, DataDirectoryLockError> {
        let io = |op: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| DataDirectoryLockError::Io { op, path, source }
        };
        std::fs::create_dir_all(data_dir).map_err(io("create directory", data_dir))?;
        let path = data_dir.join(LOCK_FILE_NAME);
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        let locked = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive);
        if let Err(errno) = locked {
            if errno == rustix::io::Errno::WOULDBLOCK {
                let mut text = String::new();
                let holder = match file.read_to_string(&mut text) {
                    Ok(_) if !text.trim().is_empty() => text.trim().replace('\n', ", "),
                    Ok(_) => "it has not written its details yet".to_string(),
                    Err(error) => format!("its details are unreadable: {error}"),
                };
                return Err(DataDirectoryLockError::Held {
                    data_dir: data_dir.to_path_buf(),
                    path,
                    holder,
                });
            }
            return Err(io("flock", &path)(errno.into()));
        }
        let details = holder_details(owner);
        file.set_len(0).map_err(io("truncate", &path))?;
        file.rewind().map_err(io("seek", &path))?;
        file.write_all(details.as_bytes())
            .map_err(io("write", &path))?;
        Ok(DataDirectoryLock { file, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether this lock still holds the descriptor it locked (for assertions in tests).
    pub fn is_open(&self) -> bool {
        self.file.as_raw_fd() >= 0
    }
}

/// `pid=..., owner, started_unix_s=..., host=...`: what an operator needs to find the holder.
fn holder_details(owner: &str) -> String {
    let started_unix_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_secs())
        .unwrap_or(0);
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string());
    format!(
        "pid={}\n{owner}\nstarted_unix_s={started_unix_s}\nhost={host}\n",
        std::process::id()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_directory_is_refused_naming_the_holder() {
        let directory = tempfile::tempdir().unwrap();
        let first = DataDirectoryLock::acquire(directory.path(), "listen=127.0.0.1:1").unwrap();
        assert!(first.is_open());
        let refused = DataDirectoryLock::acquire(directory.path(), "listen=127.0.0.1:2")
            .expect_err("a second lock must be refused");
        let message = refused.to_string();
        assert!(
            message.contains(&format!("pid={}", std::process::id())),
            "{message}"
        );
        assert!(message.contains("listen=127.0.0.1:1"), "{message}");
        drop(first);
        DataDirectoryLock::acquire(directory.path(), "listen=127.0.0.1:3")
            .expect("the lock is free once its holder is gone");
    }
}
