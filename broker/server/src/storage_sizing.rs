//! The storage sizes the broker starts its partition logs with (largest single write, write
//! queue bound, group-commit interval): an explicit setting wins; otherwise `iotune.toml` in the
//! data directory, whose measured points this build's rules (`storage::iotune::sizing`) turn
//! into sizes again at every start; otherwise the storage engine's defaults. A topic's own
//! `group.commit.us` still wins over all three for its partitions.
//!
//! A missing `iotune.toml` is the usual case and costs nothing; an unreadable, corrupt or
//! other-version one is a warning and the defaults, never a failed start.

use std::path::Path;

use crate::storage::iotune::result::IotuneResult;
use crate::storage::iotune::sizing::{size_text, WRITE_BUFFER_BYTES_SIZED_MAX};
use crate::storage::iotune::{recommend, LogSizing, RESULT_FILE_NAME};
use crate::storage::DIRECT_IO_ALIGNMENT_BYTES;

/// The `storage_*` settings and what start-up chose from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSizing {
    /// Explicit settings (file, flags, environment); `None`: from `iotune.toml` or the default.
    pub write_buffer_bytes: Option<usize>,
    pub write_queue_bytes_max: Option<usize>,
    pub group_commit_us: Option<u64>,
    /// Whether start-up reads `iotune.toml` (`storage_iotune`, default true).
    pub from_iotune: bool,
    /// The sizes in force: the explicit ones over the defaults until [`StorageSizing::resolve`]
    /// fills the others from `iotune.toml`.
    pub chosen: LogSizing,
}

/// Where one chosen size came from, for the start-up log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeSource {
    Setting,
    Iotune,
    Default,
}

impl StorageSizing {
    pub fn from_settings(
        write_buffer_bytes: Option<usize>,
        write_queue_bytes_max: Option<usize>,
        group_commit_us: Option<u64>,
        from_iotune: bool,
    ) -> Self {
        let mut sizing = Self {
            write_buffer_bytes,
            write_queue_bytes_max,
            group_commit_us,
            from_iotune,
            chosen: LogSizing::default(),
        };
        sizing.chosen = sizing.over(&LogSizing::default());
        sizing
    }

    /// The explicit settings over `lower`.
    fn over(&self, lower: &LogSizing) -> LogSizing {
        LogSizing {
            write_buffer_bytes: self.write_buffer_bytes.unwrap_or(lower.write_buffer_bytes),
            write_queue_bytes_max: self
                .write_queue_bytes_max
                .unwrap_or(lower.write_queue_bytes_max),
            group_commit_us: self.group_commit_us.unwrap_or(lower.group_commit_us),
        }
    }

    /// Which explicit settings are out of range: `(setting, why)`. `batch_bytes_max` is the
    /// broker's largest batch, which a write queue must hold.
    pub fn check(&self, batch_bytes_max: usize) -> Result<(), (&'static str, String)> {
        if let Some(bytes) = self.write_buffer_bytes {
            if bytes < 2 * DIRECT_IO_ALIGNMENT_BYTES
                || bytes % DIRECT_IO_ALIGNMENT_BYTES != 0
                || bytes > WRITE_BUFFER_BYTES_SIZED_MAX
            {
                return Err((
                    "storage_write_buffer_bytes",
                    format!(
                        "{bytes} must be a multiple of {DIRECT_IO_ALIGNMENT_BYTES} from {} to {}",
                        2 * DIRECT_IO_ALIGNMENT_BYTES,
                        WRITE_BUFFER_BYTES_SIZED_MAX
                    ),
                ));
            }
        }
        if let Some(bytes) = self.write_queue_bytes_max {
            if bytes < batch_bytes_max {
                return Err((
                    "storage_write_queue_bytes_max",
                    format!("{bytes} is below the largest batch, {batch_bytes_max} bytes"),
                ));
            }
        }
        if self.group_commit_us == Some(0) {
            return Err(("storage_group_commit_us", "must be positive".to_string()));
        }
        Ok(())
    }

    /// Reads `<data_dir>/iotune.toml` (when allowed), chooses every size not set explicitly
    /// from it, and logs what it chose and why. Blocking file reads: call before the shards.
    pub fn resolve(&mut self, data_dir: &Path) {
        let path = data_dir.join(RESULT_FILE_NAME);
        let measured = if !self.from_iotune {
            tracing::info!(
                path = %path.display(),
                "storage_iotune is false: {RESULT_FILE_NAME} is not read"
            );
            None
        } else {
            match IotuneResult::read_from(data_dir) {
                Ok(measured) => measured,
                Err(error) => {
                    tracing::warn!(
                        %error,
                        "{RESULT_FILE_NAME} ignored: storage sizes are the defaults and settings \
                         (run `spate-broker iotune` again to replace it)"
                    );
                    None
                }
            }
        };
        let (chosen, sources) = self.choose(
            measured
                .as_ref()
                .map(|result| recommend(&result.write, &result.sync).sizing()),
        );
        self.chosen = chosen;
        let source_text = |source: SizeSource| match source {
            SizeSource::Setting => "setting",
            SizeSource::Iotune => RESULT_FILE_NAME,
            SizeSource::Default => "default",
        };
        match &measured {
            Some(result) => {
                let reasons = recommend(&result.write, &result.sync);
                tracing::info!(
                    path = %path.display(),
                    measured = %result.run.date,
                    device = %result.device.name,
                    write_buffer_bytes = chosen.write_buffer_bytes,
                    write_buffer_from = source_text(sources[0]),
                    write_queue_bytes_max = chosen.write_queue_bytes_max,
                    write_queue_from = source_text(sources[1]),
                    group_commit_us = chosen.group_commit_us,
                    group_commit_from = source_text(sources[2]),
                    "storage sized from {RESULT_FILE_NAME}: write buffer {} because {}; write \
                     queue {} because {}; group commit {} us because {} (explicit settings win)",
                    size_text(reasons.write_buffer_bytes),
                    reasons.write_buffer_reason,
                    size_text(reasons.write_queue_bytes_max),
                    reasons.write_queue_reason,
                    reasons.group_commit_us,
                    reasons.group_commit_reason,
                );
            }
            None => tracing::info!(
                write_buffer_bytes = chosen.write_buffer_bytes,
                write_buffer_from = source_text(sources[0]),
                write_queue_bytes_max = chosen.write_queue_bytes_max,
                write_queue_from = source_text(sources[1]),
                group_commit_us = chosen.group_commit_us,
                group_commit_from = source_text(sources[2]),
                "storage sizes (no {RESULT_FILE_NAME} used; `spate-broker iotune` measures the \
                 disk to size them)"
            ),
        }
    }

    /// Explicit settings over the measured sizes over the defaults, and where each came from
    /// (write buffer, write queue, group commit).
    pub fn choose(&self, measured: Option<LogSizing>) -> (LogSizing, [SizeSource; 3]) {
        let fallback = if measured.is_some() {
            SizeSource::Iotune
        } else {
            SizeSource::Default
        };
        let source = |explicit: bool| {
            if explicit {
                SizeSource::Setting
            } else {
                fallback
            }
        };
        let chosen = self.over(&measured.unwrap_or_default());
        let sources = [
            source(self.write_buffer_bytes.is_some()),
            source(self.write_queue_bytes_max.is_some()),
            source(self.group_commit_us.is_some()),
        ];
        (chosen, sources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> LogSizing {
        LogSizing {
            write_buffer_bytes: 1 << 20,
            write_queue_bytes_max: 96 << 20,
            group_commit_us: 5000,
        }
    }

    #[test]
    fn explicit_settings_win_over_the_measurement() {
        let sizing = StorageSizing::from_settings(Some(256 << 10), None, Some(700), true);
        let (chosen, sources) = sizing.choose(Some(measured()));
        assert_eq!(
            chosen,
            LogSizing {
                write_buffer_bytes: 256 << 10,
                write_queue_bytes_max: 96 << 20,
                group_commit_us: 700,
            }
        );
        assert_eq!(
            sources,
            [SizeSource::Setting, SizeSource::Iotune, SizeSource::Setting]
        );
    }

    #[test]
    fn without_a_measurement_the_defaults_fill_in() {
        let sizing = StorageSizing::from_settings(None, Some(64 << 20), None, true);
        let (chosen, sources) = sizing.choose(None);
        assert_eq!(chosen.write_queue_bytes_max, 64 << 20);
        assert_eq!(
            chosen.write_buffer_bytes,
            LogSizing::default().write_buffer_bytes
        );
        assert_eq!(
            sources,
            [
                SizeSource::Default,
                SizeSource::Setting,
                SizeSource::Default
            ]
        );
        assert_eq!(sizing.chosen, chosen);
    }

    #[test]
    fn a_corrupt_file_leaves_the_defaults_and_the_settings() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join(RESULT_FILE_NAME),
            "format_version = 1\n[",
        )
        .unwrap();
        let mut sizing = StorageSizing::from_settings(None, None, Some(900), true);
        sizing.resolve(directory.path());
        assert_eq!(
            sizing.chosen,
            LogSizing {
                group_commit_us: 900,
                ..LogSizing::default()
            }
        );
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let check = |buffer, queue, group_commit| {
            StorageSizing::from_settings(buffer, queue, group_commit, true)
                .check(1 << 20)
                .map_err(|(setting, _)| setting)
        };
        assert_eq!(check(None, None, None), Ok(()));
        assert_eq!(
            check(Some(4096), None, None),
            Err("storage_write_buffer_bytes")
        );
        assert_eq!(
            check(Some(10_000), None, None),
            Err("storage_write_buffer_bytes")
        );
        assert_eq!(
            check(None, Some(1 << 19), None),
            Err("storage_write_queue_bytes_max")
        );
        assert_eq!(check(None, None, Some(0)), Err("storage_group_commit_us"));
    }
}
