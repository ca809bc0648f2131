//! `iotune.toml`: what `spate-broker iotune` measured on a data directory's disk, and what it
//! derived. Written durably (new file, fsync, rename, fsync the directory) by the tool and read
//! by the broker at start. Versioned: a file of another version, or one that does not parse or
//! holds impossible figures, is refused with a [`ResultFileError`] (the broker warns and keeps
//! its defaults; it never fails to start over this file).

use std::path::{Path, PathBuf};

use futures_lite::future::block_on;
use serde::{Deserialize, Serialize};

use super::super::blocking::BlockingFileSystem;
use super::super::error::StorageError;
use super::super::file::{read_whole_file, replace_text_file_durably, ReplaceSteps};
use super::sizing::Recommendations;

/// The file's name in the data directory.
pub const RESULT_FILE_NAME: &str = "iotune.toml";
/// The version this build writes and reads. Raise it when a field changes meaning.
pub const RESULT_FORMAT_VERSION: u32 = 1;
/// Larger files are not results (bounds what a start reads).
const RESULT_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// One measurement of a data directory's disk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IotuneResult {
    pub format_version: u32,
    pub machine: Machine,
    pub device: Device,
    pub run: Run,
    /// Sequential O_DIRECT writes, one point per block size and queue depth.
    pub write: Vec<TransferPoint>,
    /// Sequential O_DIRECT reads of what was written, over the same grid.
    pub read: Vec<TransferPoint>,
    /// `fdatasync` after each appended block, as a partition's durable appends do.
    pub sync: SyncLatency,
    pub recommendations: Recommendations,
}

/// The host the measurement ran on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    pub hostname: String,
    pub kernel: String,
    pub cpu_model: String,
    pub cpus: usize,
}

/// What the data directory is stored on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    pub data_dir: PathBuf,
    /// The file system type from the mount table (`ext4`, `xfs`, ...), or `unknown`.
    pub file_system: String,
    /// The block device's kernel name (`nvme0n1`, `vda`), or `unknown`.
    pub name: String,
    /// The device's model string from sysfs, or empty.
    pub model: String,
    /// Whether the kernel calls it rotational; `None` when sysfs does not say.
    pub rotational: Option<bool>,
}

/// How the measurement was run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// When it ended, RFC 3339 in UTC.
    pub date: String,
    pub spate_version: String,
    /// Size of the scratch file the transfer points read and write.
    pub size_bytes: u64,
    /// How long each transfer point ran.
    pub duration_ms: u64,
}

/// One block size and queue depth of sequential transfers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TransferPoint {
    pub block_bytes: usize,
    /// Transfers kept in flight together.
    pub queue_depth: usize,
    pub bytes_per_second: f64,
    pub operations_per_second: f64,
    pub operations: u64,
    pub elapsed_us: u64,
}

/// `fdatasync` latency percentiles (nearest rank) over `rounds` write-then-sync rounds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncLatency {
    pub rounds: u64,
    /// Bytes appended before each sync.
    pub write_bytes: usize,
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p99_9_ns: u64,
    pub p99_99_ns: u64,
    pub max_ns: u64,
}

/// Why a result file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ResultFileError {
    #[error(transparent)]
    Io(#[from] StorageError),
    #[error("{path} is {bytes} bytes, more than a result file can be ({RESULT_FILE_BYTES_MAX})")]
    TooLarge { path: PathBuf, bytes: u64 },
    #[error("{path} is not a valid iotune result: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error(
        "{path} has format version {found}, this broker reads version {RESULT_FORMAT_VERSION}: \
         run `spate-broker iotune` again"
    )]
    Version { path: PathBuf, found: u32 },
}

const STEPS: ReplaceSteps = ReplaceSteps {
    create: "creating new iotune result",
    size: "sizing new iotune result",
    empty: "emptying new iotune result",
    write: "writing new iotune result",
    sync: "syncing new iotune result",
    rename: "renaming iotune result into place",
    sync_directory: "syncing data directory after iotune result",
};

impl IotuneResult {
    /// The file's text.
    pub fn to_toml(&self) -> String {
        let body = toml::to_string(self).expect("an iotune result is plain data");
        format!(
            "# Written by `spate-broker iotune`; read by the broker at start to size its writes.\n\
             # Delete it, or set the sizes explicitly, to use the defaults.\n{body}"
        )
    }

    /// Parses and checks a file's text: version first (so an old file says so, whatever its
    /// fields), then every field.
    pub fn from_toml(path: &Path, text: &str) -> Result<Self, ResultFileError> {
        #[derive(Deserialize)]
        struct VersionOnly {
            format_version: Option<u32>,
        }
        let invalid = |message: String| ResultFileError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let version: VersionOnly = toml::from_str::<toml::Table>(text)
            .map_err(|error| invalid(error.to_string()))
            .and_then(|table| {
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|error: toml::de::Error| invalid(error.to_string()))
            })?;
        match version.format_version {
            Some(RESULT_FORMAT_VERSION) => {}
            Some(found) => {
                return Err(ResultFileError::Version {
                    path: path.to_path_buf(),
                    found,
                })
            }
            None => return Err(invalid("no format_version".to_string())),
        }
        let result: IotuneResult =
            toml::from_str(text).map_err(|error| invalid(error.to_string()))?;
        result.check().map_err(invalid)?;
        Ok(result)
    }

    /// Every figure is one a measurement can produce.
    fn check(&self) -> Result<(), String> {
        if self.write.is_empty() {
            return Err("no write points".to_string());
        }
        for point in self.write.iter().chain(&self.read) {
            let plausible = point.block_bytes > 0
                && point.queue_depth > 0
                && point.bytes_per_second.is_finite()
                && point.bytes_per_second >= 0.0
                && point.operations_per_second.is_finite()
                && point.operations_per_second >= 0.0;
            if !plausible {
                return Err(format!("impossible transfer point {point:?}"));
            }
        }
        let sync = &self.sync;
        let ordered = sync.p50_ns <= sync.p90_ns
            && sync.p90_ns <= sync.p99_ns
            && sync.p99_ns <= sync.p99_9_ns
            && sync.p99_9_ns <= sync.p99_99_ns
            && sync.p99_99_ns <= sync.max_ns;
        if sync.rounds == 0 || !ordered {
            return Err(format!("impossible sync latencies {sync:?}"));
        }
        Ok(())
    }

    /// Writes `<data_dir>/iotune.toml` durably: a crash leaves the old file or the new one.
    /// Blocking: call it outside any executor.
    pub fn write_to(&self, data_dir: &Path) -> Result<PathBuf, ResultFileError> {
        let target = data_dir.join(RESULT_FILE_NAME);
        let temporary = data_dir.join(format!("{RESULT_FILE_NAME}.new"));
        block_on(replace_text_file_durably(
            &BlockingFileSystem,
            data_dir,
            &temporary,
            &target,
            self.to_toml().as_bytes(),
            &STEPS,
        ))?;
        Ok(target)
    }

    /// Reads `<data_dir>/iotune.toml`; `Ok(None)` when there is none. Blocking.
    pub fn read_from(data_dir: &Path) -> Result<Option<Self>, ResultFileError> {
        let path = data_dir.join(RESULT_FILE_NAME);
        match std::fs::metadata(&path) {
            Ok(metadata) if metadata.len() > RESULT_FILE_BYTES_MAX => {
                return Err(ResultFileError::TooLarge {
                    path,
                    bytes: metadata.len(),
                })
            }
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(error) => {
                return Err(StorageError::io("reading iotune result", &path, None, error).into())
            }
        }
        let bytes = match block_on(read_whole_file(&BlockingFileSystem, &path)) {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(None),
            Err(error) => {
                return Err(StorageError::io("reading iotune result", &path, None, error).into())
            }
        };
        let text = std::str::from_utf8(&bytes).map_err(|error| ResultFileError::Invalid {
            path: path.clone(),
            message: error.to_string(),
        })?;
        Self::from_toml(&path, text).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iotune::sizing::recommend;

    fn sample() -> IotuneResult {
        let write = vec![TransferPoint {
            block_bytes: 1 << 20,
            queue_depth: 1,
            bytes_per_second: 5e8,
            operations_per_second: 476.8,
            operations: 954,
            elapsed_us: 2_000_000,
        }];
        let sync = SyncLatency {
            rounds: 1000,
            write_bytes: 4096,
            p50_ns: 900_000,
            p90_ns: 1_100_000,
            p99_ns: 2_000_000,
            p99_9_ns: 5_000_000,
            p99_99_ns: 7_000_000,
            max_ns: 7_500_000,
        };
        IotuneResult {
            format_version: RESULT_FORMAT_VERSION,
            machine: Machine {
                hostname: "host".into(),
                kernel: "6.12.0".into(),
                cpu_model: "a CPU".into(),
                cpus: 2,
            },
            device: Device {
                data_dir: "/var/lib/spate".into(),
                file_system: "xfs".into(),
                name: "nvme0n1".into(),
                model: "a drive".into(),
                rotational: Some(false),
            },
            run: Run {
                date: "2026-12-03T21:00:00Z".into(),
                spate_version: "0.1.0".into(),
                size_bytes: 1 << 30,
                duration_ms: 2000,
            },
            read: write.clone(),
            recommendations: recommend(&write, &sync),
            write,
            sync,
        }
    }

    fn path() -> PathBuf {
        PathBuf::from("/data/iotune.toml")
    }

    #[test]
    fn a_result_survives_its_file_text() {
        let result = sample();
        let text = result.to_toml();
        assert_eq!(IotuneResult::from_toml(&path(), &text).unwrap(), result);
    }

    #[test]
    fn another_version_is_refused_by_name() {
        let text = sample()
            .to_toml()
            .replace("format_version = 1", "format_version = 0");
        let error = IotuneResult::from_toml(&path(), &text).unwrap_err();
        assert!(
            matches!(error, ResultFileError::Version { found: 0, .. }),
            "{error}"
        );
        // Even when the rest of the file is of another shape.
        let error =
            IotuneResult::from_toml(&path(), "format_version = 7\n[x]\ny = 1\n").unwrap_err();
        assert!(matches!(error, ResultFileError::Version { found: 7, .. }));
    }

    #[test]
    fn corrupt_files_are_refused_never_accepted() {
        let text = sample().to_toml();
        let truncated = &text[..text.len() / 2];
        let unordered = text.replace("p50_ns = 900000", "p50_ns = 900000000");
        for bad in [
            "",
            "not toml at all \u{0}",
            truncated,
            &unordered,
            &text.replace("format_version = 1\n", ""),
        ] {
            assert!(
                IotuneResult::from_toml(&path(), bad).is_err(),
                "accepted:\n{bad}"
            );
        }
    }

    #[test]
    fn a_written_file_reads_back_and_a_missing_one_is_none() {
        let directory = tempfile::tempdir().unwrap();
        assert!(IotuneResult::read_from(directory.path()).unwrap().is_none());
        let result = sample();
        let written = result.write_to(directory.path()).unwrap();
        assert_eq!(written, directory.path().join(RESULT_FILE_NAME));
        assert_eq!(
            IotuneResult::read_from(directory.path()).unwrap(),
            Some(result)
        );
        std::fs::write(&written, "format_version = 1\n").unwrap();
        assert!(IotuneResult::read_from(directory.path()).is_err());
    }
}
