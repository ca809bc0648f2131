//! Burst or steady state: how much a run writes. A system that acknowledges from the page
//! cache runs at memory speed until the kernel's dirty-page limit is reached and at its disk's
//! speed after; a steady-state run writes [`STEADY_STATE_DIRTY_LIMIT_FACTOR`] times that limit
//! so that no system can hide its disk.
//!
//! This file reads the limit (`/proc/sys/vm`, `/proc/meminfo`) and the data directory's free
//! space, and turns them into a byte count per system; the workload decides how to write it
//! (`Workload::steady_state_bytes`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::constants::{
    STEADY_STATE_DIRTY_LIMIT_FACTOR, STEADY_STATE_FREE_MARGIN_BYTES, STEADY_STATE_FREE_SHARE,
};

/// Why a steady-state run cannot start.
#[derive(Debug, thiserror::Error)]
pub enum SteadyStateError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold {what}")]
    Parse { path: PathBuf, what: &'static str },
    #[error("cannot read the free space of {path}: {source}")]
    FreeSpace {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is on {file_system}, which is memory, not a disk: a steady-state run measures \
         the disk; give a --data-dir on one"
    )]
    NotADisk {
        path: PathBuf,
        file_system: &'static str,
    },
    #[error(
        "a steady-state run keeps {needed_gb:.1} GB of entries in Redis's memory (its bytes \
         and half again for Redis's own overhead), but only {available_gb:.1} GB are available: \
         leave redis out of --steady-state runs on this machine"
    )]
    NotEnoughMemory { needed_gb: f64, available_gb: f64 },
    #[error(
        "a steady-state run writes {needed_gb:.1} GB per system (2.2x the dirty-page limit, \
         plus 10% and 1 GiB of margin), but {path} has {free_gb:.1} GB free: free space there \
         or give another --data-dir"
    )]
    NotEnoughSpace {
        path: PathBuf,
        needed_gb: f64,
        free_gb: f64,
    },
}

/// The kernel's dirty-page limit, as the harness reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DirtyLimit {
    pub bytes: u64,
    /// Where the figure came from, e.g. `vm.dirty_ratio 20% of MemTotal 25275 MB`.
    pub source: String,
}

/// A steady-state run's plan: what each system writes, and the space it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SteadyState {
    pub dirty_limit_bytes: u64,
    pub dirty_limit_source: String,
    pub bytes_per_system: u64,
    pub free_bytes: u64,
}

/// `vm.dirty_bytes` when set (non-zero), else `vm.dirty_ratio` percent of `MemTotal`: the
/// kernel applies the ratio to the memory it can dirty, which is at most `MemTotal`, so the
/// figure is an upper bound of the real limit.
pub fn dirty_limit(
    dirty_bytes: u64,
    dirty_ratio_percent: u64,
    memory_total_bytes: u64,
) -> DirtyLimit {
    if dirty_bytes > 0 {
        return DirtyLimit {
            bytes: dirty_bytes,
            source: format!("vm.dirty_bytes {dirty_bytes}"),
        };
    }
    DirtyLimit {
        bytes: memory_total_bytes / 100 * dirty_ratio_percent,
        source: format!(
            "vm.dirty_ratio {dirty_ratio_percent}% of MemTotal {} MB",
            memory_total_bytes / 1_000_000
        ),
    }
}

/// The bytes each system writes in a steady-state run, given the dirty limit.
pub fn bytes_per_system(limit: &DirtyLimit) -> u64 {
    (limit.bytes as f64 * STEADY_STATE_DIRTY_LIMIT_FACTOR).ceil() as u64
}

/// Free space a steady-state run needs in the data directory to write `bytes`.
pub fn space_needed(bytes: u64) -> u64 {
    (bytes as f64 * (1.0 + STEADY_STATE_FREE_SHARE)) as u64 + STEADY_STATE_FREE_MARGIN_BYTES
}

/// Reads this machine's dirty limit and the free space of `data_root`, and refuses when the
/// run would not fit, or when `data_root` is memory (a tmpfs) rather than a disk.
pub fn plan(data_root: &Path) -> Result<SteadyState, SteadyStateError> {
    let free = free_bytes(data_root)?;
    if let Some(file_system) = crate::limits::memory_file_system(data_root) {
        return Err(SteadyStateError::NotADisk {
            path: data_root.to_path_buf(),
            file_system,
        });
    }
    let dirty_bytes = read_number(Path::new("/proc/sys/vm/dirty_bytes"))?;
    let dirty_ratio = read_number(Path::new("/proc/sys/vm/dirty_ratio"))?;
    let memory_total = memory_total_bytes()?;
    let limit = dirty_limit(dirty_bytes, dirty_ratio, memory_total);
    let bytes = bytes_per_system(&limit);
    let needed = space_needed(bytes);
    if free < needed {
        return Err(SteadyStateError::NotEnoughSpace {
            path: data_root.to_path_buf(),
            needed_gb: needed as f64 / 1e9,
            free_gb: free as f64 / 1e9,
        });
    }
    Ok(SteadyState {
        dirty_limit_bytes: limit.bytes,
        dirty_limit_source: limit.source,
        bytes_per_system: bytes,
        free_bytes: free,
    })
}

/// Refuses when `bytes` held in memory, and half again for the holder's overhead, would not
/// fit in the memory available now (`MemAvailable`).
pub fn check_memory_holds(bytes: u64) -> Result<(), SteadyStateError> {
    let path = Path::new("/proc/meminfo");
    let available =
        parse_meminfo_kilobytes(&read_text(path)?, "MemAvailable:").ok_or_else(|| {
            SteadyStateError::Parse {
                path: path.to_path_buf(),
                what: "a MemAvailable line in kB",
            }
        })?;
    let needed = bytes + bytes / 2;
    if available < needed {
        return Err(SteadyStateError::NotEnoughMemory {
            needed_gb: needed as f64 / 1e9,
            available_gb: available as f64 / 1e9,
        });
    }
    Ok(())
}

fn read_text(path: &Path) -> Result<String, SteadyStateError> {
    std::fs::read_to_string(path).map_err(|source| SteadyStateError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_number(path: &Path) -> Result<u64, SteadyStateError> {
    read_text(path)?
        .trim()
        .parse()
        .map_err(|_| SteadyStateError::Parse {
            path: path.to_path_buf(),
            what: "a number",
        })
}

fn memory_total_bytes() -> Result<u64, SteadyStateError> {
    let path = Path::new("/proc/meminfo");
    parse_memory_total(&read_text(path)?).ok_or_else(|| SteadyStateError::Parse {
        path: path.to_path_buf(),
        what: "a MemTotal line in kB",
    })
}

/// `MemTotal:       24683664 kB` -> bytes.
fn parse_memory_total(meminfo: &str) -> Option<u64> {
    parse_meminfo_kilobytes(meminfo, "MemTotal:")
}

/// The bytes of the `/proc/meminfo` line `key` (`MemAvailable:`), given there in kB.
fn parse_meminfo_kilobytes(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|line| line.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let kilobytes: u64 = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(kilobytes * 1024)
}

/// Bytes an unprivileged writer may still use on the file system of `path` (created if
/// missing, as the run would).
fn free_bytes(path: &Path) -> Result<u64, SteadyStateError> {
    let error = |source| SteadyStateError::FreeSpace {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(path).map_err(error)?;
    let name = CString::new(path.as_os_str().as_bytes()).map_err(|_| {
        error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the path holds a NUL byte",
        ))
    })?;
    // SAFETY: `statvfs` is plain data that statvfs(3) fills; `name` is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(name.as_ptr(), &mut stats) } != 0 {
        return Err(error(std::io::Error::last_os_error()));
    }
    Ok(stats.f_bavail as u64 * stats.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dirty_ratio_applies_to_memory_unless_dirty_bytes_is_set() {
        let limit = dirty_limit(0, 20, 25_000_000_000);
        assert_eq!(limit.bytes, 5_000_000_000);
        assert!(
            limit.source.contains("vm.dirty_ratio 20%"),
            "{}",
            limit.source
        );
        assert_eq!(bytes_per_system(&limit), 11_000_000_000);
        let fixed = dirty_limit(1_000_000, 20, 25_000_000_000);
        assert_eq!(fixed.bytes, 1_000_000);
        assert!(fixed.source.contains("vm.dirty_bytes"));
    }

    #[test]
    fn memory_total_is_read_in_kilobytes() {
        let meminfo = "MemFree:  10 kB\nMemTotal:       24683664 kB\nCached: 1 kB\n";
        assert_eq!(parse_memory_total(meminfo), Some(24_683_664 * 1024));
        assert_eq!(parse_memory_total("MemTotal: 5 MB\n"), None);
        assert_eq!(parse_memory_total(""), None);
        assert_eq!(
            parse_meminfo_kilobytes(meminfo, "MemFree:"),
            Some(10 * 1024)
        );
    }

    #[test]
    fn the_space_needed_leaves_a_margin() {
        assert!(space_needed(10_000_000_000) > 11_000_000_000);
    }

    #[test]
    fn this_machine_has_a_dirty_limit_and_free_space() {
        let directory = tempfile::tempdir().unwrap();
        assert!(free_bytes(directory.path()).unwrap() > 0);
        let limit = dirty_limit(
            read_number(Path::new("/proc/sys/vm/dirty_bytes")).unwrap(),
            read_number(Path::new("/proc/sys/vm/dirty_ratio")).unwrap(),
            memory_total_bytes().unwrap(),
        );
        assert!(limit.bytes > 0, "{limit:?}");
        assert!(check_memory_holds(1).is_ok());
        assert!(matches!(
            check_memory_holds(u64::MAX / 4),
            Err(SteadyStateError::NotEnoughMemory { .. })
        ));
    }
}
