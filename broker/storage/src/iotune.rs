//! `spate-broker iotune`: measures a data directory's disk through the broker's own I/O path
//! (glommio `DmaFile`: O_DIRECT over io_uring, opened as `dma` opens segments, on one glommio
//! executor) and returns an [`IotuneResult`] for `iotune.toml`.
//!
//! Three measurements, all in scratch files inside the data directory, removed afterwards
//! (also after an error or an interruption):
//! - sequential writes at every block size of [`BLOCK_SIZES_BYTES`] and queue depth of
//!   [`QUEUE_DEPTHS`], each for the given duration, wrapping around a scratch file of the given
//!   size that is written whole first (so every point overwrites allocated blocks, and no read
//!   meets a hole);
//! - sequential reads over the same grid and file;
//! - `fdatasync` latency: a 4 KiB write appended past the end of a fresh file, into blocks
//!   reserved ahead with `FALLOC_FL_KEEP_SIZE`, then `fdatasync`, as a durable append does.
//!
//! Queue depth means what fio's `iodepth` means: that many transfers in flight at once, each
//! next one issued as soon as one completes (one task per slot, positions taken in order).
//! Sizing the broker from the result is `iotune::sizing`; the file is `iotune::result`.

pub mod result;
pub mod sizing;

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use glommio::io::{DmaBuffer, DmaFile, OpenOptions};
use glommio::{LocalExecutorBuilder, Placement};

use super::config::PREALLOCATE_STEP_BYTES;
use super::dma::{into_io, DmaFileSystem};
use super::error::StorageError;
use super::file::DIRECT_IO_ALIGNMENT_BYTES;
use super::medium::memory_file_system;
use result::{Device, IotuneResult, Machine, Run, SyncLatency, TransferPoint};

pub use result::{ResultFileError, RESULT_FILE_NAME, RESULT_FORMAT_VERSION};
pub use sizing::{recommend, LogSizing, Recommendations};

/// Block sizes of the transfer grid: a page, typical batch writes, and the write buffer's
/// default (4 MiB), so that the default is among the sizes the rules can keep.
pub const BLOCK_SIZES_BYTES: [usize; 5] = [4096, 64 * 1024, 128 * 1024, 1 << 20, 4 << 20];
/// Queue depths of the transfer grid: one partition's writes (1) up to many partitions' at once.
pub const QUEUE_DEPTHS: [usize; 4] = [1, 4, 16, 32];
/// Scratch file size and time per point for a real NVMe drive: large enough to leave the
/// drive's cache, long enough to steady.
pub const SIZE_BYTES_DEFAULT: u64 = 1 << 30;
pub const DURATION_MS_DEFAULT: u64 = 2000;
/// Bytes appended before each measured `fdatasync` (one block, as a small durable append).
pub const SYNC_WRITE_BYTES: usize = DIRECT_IO_ALIGNMENT_BYTES;
/// Sync rounds: at most this many (enough for a p99.99), at least this many (for any
/// percentile at all), within [`SYNC_DURATION_FACTOR`] times the per-point duration.
pub const SYNC_ROUNDS_MAX: usize = 10_000;
pub const SYNC_ROUNDS_MIN: usize = 20;
pub const SYNC_DURATION_FACTOR: u32 = 5;
/// Registered io_uring memory of the executor: room for a whole point's buffers in flight (the
/// deepest queue of the largest blocks) and some slack, so that no transfer of a point waits on
/// a heap allocation (glommio takes a read's buffer from this memory when it has room).
const IO_MEMORY_BYTES: usize = LARGEST_BLOCK_BYTES * QUEUE_DEPTH_MAX + (32 << 20);
/// The scratch files, in the data directory; dot names, which the catalog never takes for a
/// topic.
pub const SCRATCH_FILE_NAME: &str = ".iotune-scratch";
pub const SYNC_SCRATCH_FILE_NAME: &str = ".iotune-sync-scratch";

const LARGEST_BLOCK_BYTES: usize = BLOCK_SIZES_BYTES[BLOCK_SIZES_BYTES.len() - 1];
const QUEUE_DEPTH_MAX: usize = QUEUE_DEPTHS[QUEUE_DEPTHS.len() - 1];
const _: () = assert!(LARGEST_BLOCK_BYTES % DIRECT_IO_ALIGNMENT_BYTES == 0);
const _: () = assert!(SYNC_ROUNDS_MIN <= SYNC_ROUNDS_MAX);

/// What to measure, where.
#[derive(Clone)]
pub struct IotuneOptions {
    pub data_dir: PathBuf,
    /// Scratch file size for the transfer points; rounded down to a whole largest block.
    pub size_bytes: u64,
    /// How long each transfer point runs.
    pub duration_ms: u64,
    /// Measure a memory file system (tmpfs, ramfs) anyway: its figures say nothing of a disk.
    pub allow_memory_file_system: bool,
    /// Polled between transfers: `true` stops the measurement (SIGINT, SIGTERM).
    pub stop_requested: Arc<dyn Fn() -> bool + Send + Sync>,
}

/// What a measurement reports as it goes, for a progress display.
#[derive(Debug, Clone, Copy)]
pub enum Progress<'a> {
    Layout { size_bytes: u64 },
    Write(&'a TransferPoint),
    Read(&'a TransferPoint),
    Sync(&'a SyncLatency),
}

/// Why a measurement did not finish.
#[derive(Debug, thiserror::Error)]
pub enum IotuneError {
    #[error(
        "{data_dir} is on {file_system}, in memory: it measures no disk, and a broker there keeps \
         nothing across a reboot (pass --allow-memory-file-system to measure it anyway)"
    )]
    MemoryFileSystem {
        data_dir: PathBuf,
        file_system: &'static str,
    },
    #[error("size {size_bytes} bytes is below the largest block, {LARGEST_BLOCK_BYTES} bytes")]
    SizeTooSmall { size_bytes: u64 },
    #[error("duration must be positive")]
    DurationZero,
    #[error(transparent)]
    Io(#[from] StorageError),
    #[error("{operation} at {path}, position {position}: {done} of {wanted} bytes")]
    ShortTransfer {
        operation: &'static str,
        path: PathBuf,
        position: u64,
        done: usize,
        wanted: usize,
    },
    #[error("cannot start the measuring executor: {0}")]
    Executor(String),
    #[error("interrupted; scratch files removed")]
    Interrupted,
}

/// Runs the whole measurement on a glommio executor on the calling thread, reporting each step
/// to `progress`; removes its scratch files whatever happens. Does not write `iotune.toml`.
pub fn measure(
    options: &IotuneOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<IotuneResult, IotuneError> {
    if let Some(file_system) = memory_file_system(&options.data_dir) {
        if !options.allow_memory_file_system {
            return Err(IotuneError::MemoryFileSystem {
                data_dir: options.data_dir.clone(),
                file_system,
            });
        }
    }
    let size_bytes = options.size_bytes - options.size_bytes % LARGEST_BLOCK_BYTES as u64;
    if size_bytes == 0 {
        return Err(IotuneError::SizeTooSmall {
            size_bytes: options.size_bytes,
        });
    }
    if options.duration_ms == 0 {
        return Err(IotuneError::DurationZero);
    }
    let data_dir = std::path::absolute(&options.data_dir).map_err(|source| {
        StorageError::io("resolving data directory", &options.data_dir, None, source)
    })?;
    let _scratch = ScratchFiles(vec![
        data_dir.join(SCRATCH_FILE_NAME),
        data_dir.join(SYNC_SCRATCH_FILE_NAME),
    ]);
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("iotune")
        .io_memory(IO_MEMORY_BYTES)
        .make()
        .map_err(|error| IotuneError::Executor(error.to_string()))?;
    let plan = Plan {
        data_dir: data_dir.clone(),
        size_bytes,
        duration: Duration::from_millis(options.duration_ms),
        stop_requested: options.stop_requested.clone(),
    };
    let (write, read, sync) = executor.run(plan.run(progress))?;
    let recommendations = recommend(&write, &sync);
    Ok(IotuneResult {
        format_version: RESULT_FORMAT_VERSION,
        machine: machine(),
        device: device(&data_dir),
        run: Run {
            date: utc_date_time(SystemTime::now()),
            spate_version: env!("CARGO_PKG_VERSION").to_string(),
            size_bytes,
            duration_ms: options.duration_ms,
        },
        write,
        read,
        sync,
        recommendations,
    })
}

/// Removes the scratch files when the measurement ends, however it ends.
struct ScratchFiles(Vec<PathBuf>);

impl Drop for ScratchFiles {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

struct Plan {
    data_dir: PathBuf,
    size_bytes: u64,
    duration: Duration,
    stop_requested: Arc<dyn Fn() -> bool + Send + Sync>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Write,
    Read,
}

/// When a run of transfers ends.
#[derive(Debug, Clone, Copy)]
enum Until {
    /// Once every position of the file was transferred once (the layout pass).
    OnePass,
    Deadline(Instant),
}

type Measured = (Vec<TransferPoint>, Vec<TransferPoint>, SyncLatency);

impl Plan {
    async fn run(self, progress: &mut dyn FnMut(Progress<'_>)) -> Result<Measured, IotuneError> {
        // Works around glommio's IOPOLL probe misfire (see `DmaFileSystem::for_data_dir`)
        // before the first scratch file, which starts empty, is opened.
        DmaFileSystem::for_data_dir(&self.data_dir).await?;
        let path = self.data_dir.join(SCRATCH_FILE_NAME);
        let file = Rc::new(open_scratch(&path).await?);
        file.pre_allocate(self.size_bytes, false)
            .await
            .map_err(|error| {
                StorageError::io("reserving iotune scratch file", &path, None, into_io(error))
            })?;
        progress(Progress::Layout {
            size_bytes: self.size_bytes,
        });
        let layout_buffers = write_buffers(&file, 1 << 20, 4);
        self.transfer(
            &file,
            &path,
            Direction::Write,
            &layout_buffers,
            4,
            Until::OnePass,
        )
        .await?;
        drop(layout_buffers);
        let mut write = Vec::new();
        let mut read = Vec::new();
        for direction in [Direction::Write, Direction::Read] {
            for block_bytes in BLOCK_SIZES_BYTES {
                // Made before any clock starts, and shared by the depths of one block size.
                let buffers = match direction {
                    Direction::Write => write_buffers(&file, block_bytes, QUEUE_DEPTH_MAX),
                    Direction::Read => vec![Rc::new(file.alloc_dma_buffer(block_bytes))],
                };
                for queue_depth in QUEUE_DEPTHS {
                    let until = Until::Deadline(Instant::now() + self.duration);
                    let point = self
                        .transfer(&file, &path, direction, &buffers, queue_depth, until)
                        .await?;
                    match direction {
                        Direction::Write => {
                            progress(Progress::Write(&point));
                            write.push(point);
                        }
                        Direction::Read => {
                            progress(Progress::Read(&point));
                            read.push(point);
                        }
                    }
                }
            }
        }
        let _ = Rc::try_unwrap(file).map(DmaFile::close);
        let sync = self.sync_latency().await?;
        progress(Progress::Sync(&sync));
        Ok((write, read, sync))
    }

    /// Sequential transfers of the buffers' length with `queue_depth` in flight, wrapping
    /// around the file, until `until`. Writes take one of `buffers` per slot (there are enough);
    /// reads use only the first buffer's length.
    async fn transfer(
        &self,
        file: &Rc<DmaFile>,
        path: &Path,
        direction: Direction,
        buffers: &[Rc<DmaBuffer>],
        queue_depth: usize,
        until: Until,
    ) -> Result<TransferPoint, IotuneError> {
        let block_bytes = buffers[0].len();
        assert!(
            direction == Direction::Read || buffers.len() >= queue_depth,
            "every write slot has its own buffer"
        );
        let next_position = Rc::new(Cell::new(0_u64));
        let started = Instant::now();
        let slots: Vec<_> = (0..queue_depth)
            .map(|index| {
                let slot = Slot {
                    file: file.clone(),
                    path: path.to_path_buf(),
                    direction,
                    buffer: buffers[index % buffers.len()].clone(),
                    file_bytes: self.size_bytes,
                    next_position: next_position.clone(),
                    until,
                    stop_requested: self.stop_requested.clone(),
                };
                glommio::spawn_local(slot.run())
            })
            .collect();
        let mut operations = 0_u64;
        let mut failure = None;
        for slot in slots {
            match slot.await {
                Ok(count) => operations += count,
                Err(error) => failure = failure.or(Some(error)),
            }
        }
        let elapsed = started.elapsed();
        if let Some(error) = failure {
            return Err(error);
        }
        if (self.stop_requested)() {
            return Err(IotuneError::Interrupted);
        }
        let seconds = elapsed.as_secs_f64().max(1e-9);
        let bytes = operations as f64 * block_bytes as f64;
        Ok(TransferPoint {
            block_bytes,
            queue_depth,
            bytes_per_second: bytes / seconds,
            operations_per_second: operations as f64 / seconds,
            operations,
            elapsed_us: elapsed.as_micros() as u64,
        })
    }

    /// Appends one block past the end of a fresh file and syncs it, round after round, with
    /// blocks reserved ahead as a partition's active segment reserves them.
    async fn sync_latency(&self) -> Result<SyncLatency, IotuneError> {
        let path = self.data_dir.join(SYNC_SCRATCH_FILE_NAME);
        let _ = std::fs::remove_file(&path);
        let file = open_scratch(&path).await?;
        let buffer = Rc::new(filled_buffer(&file, SYNC_WRITE_BYTES, 0));
        let failed = |operation: &'static str, position: u64| {
            let path = path.clone();
            move |error| StorageError::io(operation, &path, Some(position), into_io(error))
        };
        let deadline = Instant::now() + self.duration * SYNC_DURATION_FACTOR;
        let mut latencies_ns = Vec::with_capacity(SYNC_ROUNDS_MAX);
        let mut reserved = 0_u64;
        let mut position = 0_u64;
        while latencies_ns.len() < SYNC_ROUNDS_MAX
            && (latencies_ns.len() < SYNC_ROUNDS_MIN || Instant::now() < deadline)
        {
            if (self.stop_requested)() {
                return Err(IotuneError::Interrupted);
            }
            if position + SYNC_WRITE_BYTES as u64 > reserved {
                reserved += PREALLOCATE_STEP_BYTES;
                file.pre_allocate(reserved, true)
                    .await
                    .map_err(failed("reserving iotune sync scratch", position))?;
            }
            let written = file
                .write_rc_at(buffer.clone(), position)
                .await
                .map_err(failed("writing iotune sync scratch", position))?;
            if written != SYNC_WRITE_BYTES {
                return Err(IotuneError::ShortTransfer {
                    operation: "writing iotune sync scratch",
                    path: path.clone(),
                    position,
                    done: written,
                    wanted: SYNC_WRITE_BYTES,
                });
            }
            let started = Instant::now();
            file.fdatasync()
                .await
                .map_err(failed("syncing iotune sync scratch", position))?;
            latencies_ns.push(started.elapsed().as_nanos() as u64);
            position += SYNC_WRITE_BYTES as u64;
        }
        let _ = file.close().await;
        Ok(percentiles(latencies_ns))
    }
}

/// One in-flight transfer slot of a point: issues the next position's transfer as soon as its
/// previous one completes.
struct Slot {
    file: Rc<DmaFile>,
    path: PathBuf,
    direction: Direction,
    /// Written by every write; its length is the block size of reads too.
    buffer: Rc<DmaBuffer>,
    file_bytes: u64,
    next_position: Rc<Cell<u64>>,
    until: Until,
    stop_requested: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl Slot {
    /// Returns how many transfers completed.
    async fn run(self) -> Result<u64, IotuneError> {
        let block_bytes = self.buffer.len();
        let mut operations = 0;
        loop {
            if (self.stop_requested)() {
                return Ok(operations);
            }
            let position = self.next_position.get();
            match self.until {
                Until::OnePass if position >= self.file_bytes => return Ok(operations),
                Until::OnePass => self.next_position.set(position + block_bytes as u64),
                Until::Deadline(deadline) if Instant::now() >= deadline => return Ok(operations),
                Until::Deadline(_) => self
                    .next_position
                    .set((position + block_bytes as u64) % self.file_bytes),
            }
            let (operation, done) = match self.direction {
                Direction::Write => (
                    "writing iotune scratch",
                    self.file.write_rc_at(self.buffer.clone(), position).await,
                ),
                Direction::Read => (
                    "reading iotune scratch",
                    self.file
                        .read_at_aligned(position, block_bytes)
                        .await
                        .map(|read| read.len()),
                ),
            };
            let done = done.map_err(|error| {
                StorageError::io(operation, &self.path, Some(position), into_io(error))
            })?;
            if done != block_bytes {
                return Err(IotuneError::ShortTransfer {
                    operation,
                    path: self.path.clone(),
                    position,
                    done,
                    wanted: block_bytes,
                });
            }
            operations += 1;
        }
    }
}

/// Opens a scratch file for reading and writing with O_DIRECT, as `dma` opens a segment
/// (glommio's `DmaFile::create` would open it write-only).
async fn open_scratch(path: &Path) -> Result<DmaFile, IotuneError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .dma_open(path)
        .await
        .map_err(|error| {
            StorageError::io("opening iotune scratch", path, None, into_io(error)).into()
        })
}

/// An aligned buffer of pseudo-random bytes: a device that skips zero blocks or compresses
/// must not flatter the figures (fio fills its buffers with random bytes too).
fn filled_buffer(file: &DmaFile, length: usize, seed: u64) -> DmaBuffer {
    let mut buffer = file.alloc_dma_buffer(length);
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for word in buffer.as_bytes_mut().chunks_exact_mut(8) {
        // xorshift64: cheap, and plenty for bytes nobody reads.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        word.copy_from_slice(&state.to_le_bytes());
    }
    buffer
}

/// One filled buffer per write slot.
fn write_buffers(file: &DmaFile, block_bytes: usize, count: usize) -> Vec<Rc<DmaBuffer>> {
    (0..count)
        .map(|index| Rc::new(filled_buffer(file, block_bytes, index as u64 + 1)))
        .collect()
}

/// Nearest-rank percentiles of the latencies.
fn percentiles(mut latencies_ns: Vec<u64>) -> SyncLatency {
    assert!(!latencies_ns.is_empty(), "at least one sync round ran");
    latencies_ns.sort_unstable();
    let rank = |share: f64| {
        let index = (share * latencies_ns.len() as f64).ceil() as usize;
        latencies_ns[index.clamp(1, latencies_ns.len()) - 1]
    };
    SyncLatency {
        rounds: latencies_ns.len() as u64,
        write_bytes: SYNC_WRITE_BYTES,
        p50_ns: rank(0.5),
        p90_ns: rank(0.9),
        p99_ns: rank(0.99),
        p99_9_ns: rank(0.999),
        p99_99_ns: rank(0.9999),
        max_ns: latencies_ns[latencies_ns.len() - 1],
    }
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|text| text.trim().to_string())
}

fn machine() -> Machine {
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_default();
    Machine {
        hostname: read_trimmed("/proc/sys/kernel/hostname").unwrap_or_default(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
        cpu_model,
        cpus: std::thread::available_parallelism().map_or(1, usize::from),
    }
}

/// The device and file system under `data_dir`, from sysfs and the mount table; `unknown`
/// where they do not say (a container, a device-mapper stack).
fn device(data_dir: &Path) -> Device {
    let unknown = || "unknown".to_string();
    let name = rustix::fs::stat(data_dir).ok().and_then(|status| {
        let major = rustix::fs::major(status.st_dev);
        let minor = rustix::fs::minor(status.st_dev);
        let node = std::fs::canonicalize(format!("/sys/dev/block/{major}:{minor}")).ok()?;
        // A partition's sysfs directory sits inside its disk's.
        let disk = if node.join("partition").exists() {
            node.parent()?.to_path_buf()
        } else {
            node
        };
        disk.file_name()?.to_str().map(str::to_string)
    });
    let (model, rotational) = match &name {
        Some(name) => (
            read_trimmed(&format!("/sys/block/{name}/device/model")).unwrap_or_default(),
            read_trimmed(&format!("/sys/block/{name}/queue/rotational")).map(|text| text == "1"),
        ),
        None => (String::new(), None),
    };
    Device {
        data_dir: data_dir.to_path_buf(),
        file_system: mount_file_system(data_dir).unwrap_or_else(unknown),
        name: name.unwrap_or_else(unknown),
        model,
        rotational,
    }
}

/// The file system type of the longest mount point containing `path` (`/proc/self/mounts`).
fn mount_file_system(path: &Path) -> Option<String> {
    let path = std::fs::canonicalize(path).ok()?;
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let _source = fields.next()?;
            let mount_point = fields.next()?.replace("\\040", " ");
            let file_system = fields.next()?;
            path.starts_with(&mount_point)
                .then(|| (mount_point.len(), file_system.to_string()))
        })
        .max_by_key(|(length, _)| *length)
        .map(|(_, file_system)| file_system)
}

/// RFC 3339 in UTC, to the second (civil date from days since the epoch, proleptic Gregorian).
fn utc_date_time(time: SystemTime) -> String {
    let seconds = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs()) as i64;
    let (days, second_of_day) = (seconds.div_euclid(86_400), seconds.rem_euclid(86_400));
    let shifted = days + 719_468;
    let era = shifted.div_euclid(146_097);
    let day_of_era = shifted - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        second_of_day / 3600,
        second_of_day / 60 % 60,
        second_of_day % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let latencies: Vec<u64> = (1..=1000).rev().collect();
        let sync = percentiles(latencies);
        assert_eq!(sync.rounds, 1000);
        assert_eq!(
            (sync.p50_ns, sync.p90_ns, sync.p99_ns, sync.p99_9_ns),
            (500, 900, 990, 999)
        );
        assert_eq!((sync.p99_99_ns, sync.max_ns), (1000, 1000));
        let one = percentiles(vec![7]);
        assert_eq!((one.p50_ns, one.p99_99_ns, one.max_ns), (7, 7, 7));
    }

    #[test]
    fn dates_are_utc_rfc_3339() {
        let at = |seconds| utc_date_time(SystemTime::UNIX_EPOCH + Duration::from_secs(seconds));
        assert_eq!(at(0), "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(at(1_796_333_445), "2026-12-03T21:30:45Z");
    }

    #[test]
    fn the_build_directory_has_a_file_system() {
        let file_system = mount_file_system(Path::new(env!("CARGO_MANIFEST_DIR")));
        assert!(file_system.is_some_and(|name| !name.is_empty()));
    }
}
