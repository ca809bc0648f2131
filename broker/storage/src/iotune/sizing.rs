//! What the broker derives from a disk measurement (`iotune.toml`): the size of a partition's
//! largest single write, how many appended bytes may queue for the disk, and the group-commit
//! interval. Pure functions of the measured figures, so that the rules are tested without a disk;
//! the measurement itself is in `iotune`, the file in `iotune::result`.
//!
//! Why these three: a partition's write path (`writer`) hands its backlog to the disk one write
//! at a time, each at most `write_buffer_bytes`, so a single partition sees the disk at queue
//! depth 1 and gains from larger writes only until that depth's bandwidth levels off. While one
//! `fdatasync` runs, appends keep arriving and queue (`write_queue_bytes_max` bounds them): the
//! queue must hold what the disk can take during one slow sync, or producers stall behind it.
//! The group-commit interval bounds how long written data nobody waits on stays unsynced; one
//! shorter than a typical `fdatasync` only makes the syncs run back to back.

use serde::{Deserialize, Serialize};

use super::super::config::{
    Durability, LogConfig, GROUP_COMMIT_INTERVAL_US_DEFAULT, WRITE_BUFFER_BYTES_DEFAULT,
    WRITE_BUFFER_POOL_BYTES_MAX, WRITE_QUEUE_BYTES_MAX_DEFAULT,
};
use super::super::file::DIRECT_IO_ALIGNMENT_BYTES;
use super::result::{SyncLatency, TransferPoint};

/// A block size whose depth-1 write bandwidth reaches this share of the best depth-1 bandwidth
/// is large enough: larger writes gain less than the measurement's own noise.
pub const WRITE_BUFFER_BANDWIDTH_SHARE: f64 = 0.9;
/// The write buffer is never sized below this: a smaller one splits a large batch into many
/// writes whose per-write cost the grid's coarse steps cannot see.
pub const WRITE_BUFFER_BYTES_SIZED_MIN: usize = 64 * 1024;
/// Nor above this: the shard's buffer pool must hold two of them to reuse any.
pub const WRITE_BUFFER_BYTES_SIZED_MAX: usize = WRITE_BUFFER_POOL_BYTES_MAX / 2;
/// The write queue is sized at least to its default (a measurement only ever raises it) and at
/// most to this, since every partition may fill its own queue.
pub const WRITE_QUEUE_BYTES_SIZED_MAX: usize = 256 * 1024 * 1024;
/// The group-commit interval is never raised past this by a measurement: data written with
/// acks=leader stays unsynced at most this long.
pub const GROUP_COMMIT_US_SIZED_MAX: u64 = 100_000;

const MEBIBYTE: usize = 1024 * 1024;

const _: () = assert!(WRITE_BUFFER_BYTES_SIZED_MIN % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(WRITE_BUFFER_BYTES_SIZED_MIN <= WRITE_BUFFER_BYTES_DEFAULT);
const _: () = assert!(WRITE_BUFFER_BYTES_DEFAULT <= WRITE_BUFFER_BYTES_SIZED_MAX);
const _: () = assert!(WRITE_QUEUE_BYTES_MAX_DEFAULT <= WRITE_QUEUE_BYTES_SIZED_MAX);
const _: () = assert!(GROUP_COMMIT_INTERVAL_US_DEFAULT <= GROUP_COMMIT_US_SIZED_MAX);

/// The storage settings a measurement decides, each with the sentence that says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recommendations {
    pub write_buffer_bytes: usize,
    pub write_buffer_reason: String,
    pub write_queue_bytes_max: usize,
    pub write_queue_reason: String,
    pub group_commit_us: u64,
    pub group_commit_reason: String,
}

/// The broker-wide storage sizes every partition log starts from (a topic's own
/// `group.commit.us` still wins over `group_commit_us`): the defaults, a measurement's
/// [`Recommendations`], or explicit settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogSizing {
    pub write_buffer_bytes: usize,
    pub write_queue_bytes_max: usize,
    pub group_commit_us: u64,
}

impl Default for LogSizing {
    fn default() -> Self {
        Self {
            write_buffer_bytes: WRITE_BUFFER_BYTES_DEFAULT,
            write_queue_bytes_max: WRITE_QUEUE_BYTES_MAX_DEFAULT,
            group_commit_us: GROUP_COMMIT_INTERVAL_US_DEFAULT,
        }
    }
}

impl LogSizing {
    /// Sets these sizes in `log` (the group-commit interval only when it commits in groups).
    pub fn apply(&self, log: &mut LogConfig) {
        log.write_buffer_bytes = self.write_buffer_bytes;
        log.write_queue_bytes_max = self.write_queue_bytes_max;
        if let Durability::GroupCommit { interval_us, .. } = &mut log.durability {
            *interval_us = self.group_commit_us;
        }
    }
}

impl Recommendations {
    pub fn sizing(&self) -> LogSizing {
        LogSizing {
            write_buffer_bytes: self.write_buffer_bytes,
            write_queue_bytes_max: self.write_queue_bytes_max,
            group_commit_us: self.group_commit_us,
        }
    }
}

/// Derives the settings from the write points and the sync latencies of one measurement.
/// Points with no bandwidth are ignored; with none at all, the defaults stay.
pub fn recommend(write: &[TransferPoint], sync: &SyncLatency) -> Recommendations {
    let (write_buffer_bytes, write_buffer_reason) = write_buffer(write);
    let (write_queue_bytes_max, write_queue_reason) = write_queue(write, sync);
    let (group_commit_us, group_commit_reason) = group_commit(sync);
    Recommendations {
        write_buffer_bytes,
        write_buffer_reason,
        write_queue_bytes_max,
        write_queue_reason,
        group_commit_us,
        group_commit_reason,
    }
}

fn write_buffer(write: &[TransferPoint]) -> (usize, String) {
    let shallowest = write
        .iter()
        .filter(|point| point.bytes_per_second > 0.0)
        .map(|point| point.queue_depth)
        .min();
    let Some(depth) = shallowest else {
        return (
            WRITE_BUFFER_BYTES_DEFAULT,
            "no write was measured: the default stays".to_string(),
        );
    };
    let mut points: Vec<&TransferPoint> = write
        .iter()
        .filter(|point| point.queue_depth == depth && point.bytes_per_second > 0.0)
        .collect();
    points.sort_by_key(|point| point.block_bytes);
    let best = points
        .iter()
        .copied()
        .max_by(|left, right| left.bytes_per_second.total_cmp(&right.bytes_per_second))
        .expect("at least the shallowest point has bandwidth");
    let enough = points
        .iter()
        .copied()
        .find(|point| {
            point.bytes_per_second >= WRITE_BUFFER_BANDWIDTH_SHARE * best.bytes_per_second
        })
        .unwrap_or(best);
    let bytes = enough
        .block_bytes
        .clamp(WRITE_BUFFER_BYTES_SIZED_MIN, WRITE_BUFFER_BYTES_SIZED_MAX);
    let bytes = bytes - bytes % DIRECT_IO_ALIGNMENT_BYTES;
    let reason = format!(
        "a partition writes one buffer at a time (queue depth {depth}); {} writes reach {:.0}% of \
         the best bandwidth at that depth ({} at {}), within [{}, {}]",
        size_text(enough.block_bytes),
        100.0 * enough.bytes_per_second / best.bytes_per_second,
        rate_text(best.bytes_per_second),
        size_text(best.block_bytes),
        size_text(WRITE_BUFFER_BYTES_SIZED_MIN),
        size_text(WRITE_BUFFER_BYTES_SIZED_MAX),
    );
    (bytes, reason)
}

fn write_queue(write: &[TransferPoint], sync: &SyncLatency) -> (usize, String) {
    let peak = write
        .iter()
        .map(|point| point.bytes_per_second)
        .fold(0.0_f64, f64::max);
    let during_slow_sync = peak * sync.p99_ns as f64 / 1e9;
    // Whole mebibytes: the figure is an estimate, and round numbers read better in the log.
    let needed = (during_slow_sync / MEBIBYTE as f64).ceil() as usize * MEBIBYTE;
    let bytes = needed.clamp(WRITE_QUEUE_BYTES_MAX_DEFAULT, WRITE_QUEUE_BYTES_SIZED_MAX);
    let reason = format!(
        "peak write bandwidth {} times fdatasync p99 {} is {}: a partition's queue holds what \
         arrives during one slow sync, at least the default {} and at most {}",
        rate_text(peak),
        duration_text(sync.p99_ns),
        size_text(during_slow_sync as usize),
        size_text(WRITE_QUEUE_BYTES_MAX_DEFAULT),
        size_text(WRITE_QUEUE_BYTES_SIZED_MAX),
    );
    (bytes, reason)
}

fn group_commit(sync: &SyncLatency) -> (u64, String) {
    let p50_us = sync.p50_ns.div_ceil(1000);
    let microseconds = p50_us.clamp(GROUP_COMMIT_INTERVAL_US_DEFAULT, GROUP_COMMIT_US_SIZED_MAX);
    let reason = format!(
        "fdatasync p50 is {}: an interval shorter than a typical sync only runs syncs back to \
         back, so the interval is at least that, at least the default {} us and at most {} us",
        duration_text(sync.p50_ns),
        GROUP_COMMIT_INTERVAL_US_DEFAULT,
        GROUP_COMMIT_US_SIZED_MAX,
    );
    (microseconds, reason)
}

/// `4 KiB`, `1 MiB`, `1.5 GiB`: sizes as the table and the log print them.
pub fn size_text(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Bandwidth in MB/s (10^6 bytes, as fio prints it next to MiB/s).
pub fn rate_text(bytes_per_second: f64) -> String {
    format!("{:.1} MB/s", bytes_per_second / 1e6)
}

/// A latency in microseconds or milliseconds.
pub fn duration_text(nanoseconds: u64) -> String {
    if nanoseconds >= 10_000_000 {
        format!("{:.1} ms", nanoseconds as f64 / 1e6)
    } else {
        format!("{:.1} us", nanoseconds as f64 / 1e3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(block_bytes: usize, queue_depth: usize, megabytes_per_second: f64) -> TransferPoint {
        let bytes_per_second = megabytes_per_second * 1e6;
        TransferPoint {
            block_bytes,
            queue_depth,
            bytes_per_second,
            operations_per_second: bytes_per_second / block_bytes as f64,
            operations: 100,
            elapsed_us: 1000,
        }
    }

    fn sync(p50_ns: u64, p99_ns: u64) -> SyncLatency {
        SyncLatency {
            rounds: 100,
            write_bytes: 4096,
            p50_ns,
            p90_ns: p50_ns,
            p99_ns,
            p99_9_ns: p99_ns,
            p99_99_ns: p99_ns,
            max_ns: p99_ns,
        }
    }

    const KIB: usize = 1024;

    #[test]
    fn write_buffer_is_the_smallest_block_near_the_best_depth_one_bandwidth() {
        let write = [
            point(4 * KIB, 1, 50.0),
            point(64 * KIB, 1, 400.0),
            point(128 * KIB, 1, 700.0),
            point(MEBIBYTE, 1, 950.0),
            point(4 * MEBIBYTE, 1, 1000.0),
            // Deeper queues are faster, but one partition never writes at them.
            point(4 * KIB, 32, 2000.0),
        ];
        let chosen = recommend(&write, &sync(1_000_000, 2_000_000));
        assert_eq!(chosen.write_buffer_bytes, MEBIBYTE);
        assert!(chosen.write_buffer_reason.contains("95%"), "{chosen:?}");
    }

    #[test]
    fn write_buffer_stays_within_its_bounds() {
        let flat = [point(4 * KIB, 1, 100.0), point(MEBIBYTE, 1, 100.0)];
        assert_eq!(
            recommend(&flat, &sync(1000, 1000)).write_buffer_bytes,
            WRITE_BUFFER_BYTES_SIZED_MIN
        );
        let growing = [point(MEBIBYTE, 1, 100.0), point(64 * MEBIBYTE, 1, 1000.0)];
        assert_eq!(
            recommend(&growing, &sync(1000, 1000)).write_buffer_bytes,
            WRITE_BUFFER_BYTES_SIZED_MAX
        );
    }

    #[test]
    fn without_measured_writes_the_defaults_stay() {
        let chosen = recommend(&[], &sync(10, 10));
        assert_eq!(chosen.write_buffer_bytes, WRITE_BUFFER_BYTES_DEFAULT);
        assert_eq!(chosen.write_queue_bytes_max, WRITE_QUEUE_BYTES_MAX_DEFAULT);
        assert_eq!(chosen.group_commit_us, GROUP_COMMIT_INTERVAL_US_DEFAULT);
    }

    #[test]
    fn write_queue_holds_what_arrives_during_a_slow_sync() {
        // 2000 MB/s for 50 ms is 100 MB: about 96 MiB, rounded up to whole mebibytes.
        let write = [point(MEBIBYTE, 32, 2000.0)];
        let chosen = recommend(&write, &sync(1_000_000, 50_000_000));
        assert_eq!(chosen.write_queue_bytes_max, 96 * MEBIBYTE);
        // A fast sync never lowers the default; a very slow one stops at the cap.
        assert_eq!(
            recommend(&write, &sync(1000, 1000)).write_queue_bytes_max,
            WRITE_QUEUE_BYTES_MAX_DEFAULT
        );
        assert_eq!(
            recommend(&write, &sync(1000, 10_000_000_000)).write_queue_bytes_max,
            WRITE_QUEUE_BYTES_SIZED_MAX
        );
    }

    #[test]
    fn group_commit_interval_is_at_least_a_typical_sync() {
        assert_eq!(
            recommend(&[], &sync(5_000_001, 9_000_000)).group_commit_us,
            5_001
        );
        assert_eq!(
            recommend(&[], &sync(20_000, 90_000)).group_commit_us,
            GROUP_COMMIT_INTERVAL_US_DEFAULT
        );
        assert_eq!(
            recommend(&[], &sync(1_000_000_000, 1_000_000_000)).group_commit_us,
            GROUP_COMMIT_US_SIZED_MAX
        );
    }

    #[test]
    fn recommended_sizes_make_a_valid_log_config() {
        let write = [point(4 * KIB, 1, 10.0), point(4 * MEBIBYTE, 1, 3000.0)];
        let mut log = LogConfig::default();
        let sizing = recommend(&write, &sync(3_000_000, 90_000_000)).sizing();
        sizing.apply(&mut log);
        assert_eq!(log.check(), Ok(()));
        assert_eq!(log.write_buffer_bytes, 4 * MEBIBYTE);
        assert_eq!(
            log.durability,
            Durability::GroupCommit {
                interval_bytes: crate::config::GROUP_COMMIT_INTERVAL_BYTES_DEFAULT,
                interval_us: 3000
            }
        );
    }

    #[test]
    fn sizes_print_in_binary_units() {
        assert_eq!(size_text(4096), "4 KiB");
        assert_eq!(size_text(1536 * 1024), "1.5 MiB");
        assert_eq!(size_text(100), "100 B");
    }
}
