//! What the data directory is stored on, as far as durability goes: a memory file system
//! (tmpfs, ramfs) keeps nothing across a power loss or reboot, whatever `fdatasync` says.
//!
//! Why the broker checks: since Linux 6.6 tmpfs accepts `O_DIRECT`, so a data directory on
//! `/dev/shm` opens, writes and "syncs" at memory speed with no error anywhere, and every
//! acknowledged acks=all record is lost with the machine. The broker still runs there (tests and
//! demos use it) but says so loudly at start.

use std::path::Path;

/// `f_type` of tmpfs (and of `/dev/shm`), from `linux/magic.h`.
const TMPFS_MAGIC: i64 = 0x0102_1994;
/// `f_type` of ramfs, from `linux/magic.h`.
const RAMFS_MAGIC: i64 = 0x8584_58f6;

/// The memory file system `path` is on ("tmpfs", "ramfs"), or `None` for anything else, or when
/// it cannot be told (statfs failed: the caller's own I/O reports that better).
pub fn memory_file_system(path: &Path) -> Option<&'static str> {
    let status = rustix::fs::statfs(path).ok()?;
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets.
    match status.f_type as i64 {
        TMPFS_MAGIC => Some("tmpfs"),
        RAMFS_MAGIC => Some("ramfs"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_shm_is_memory_and_the_build_directory_is_not() {
        if Path::new("/dev/shm").is_dir() {
            assert_eq!(memory_file_system(Path::new("/dev/shm")), Some("tmpfs"));
        }
        // The tests' own data lives under target/ for O_DIRECT; it must not be memory.
        let target = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(memory_file_system(target), None);
    }
}
