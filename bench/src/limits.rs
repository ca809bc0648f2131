//! The machine's own ceilings, measured the way the broker uses the machine: loopback TCP
//! throughput and round-trip time between two pinned threads with the broker's socket options,
//! O_DIRECT sequential write bandwidth with `fdatasync` at the broker's durability interval,
//! and O_DIRECT sequential read bandwidth (what a catch-up consumer draining from disk can
//! reach), in the broker's data directory.
//!
//! The disk is driven with plain `pwrite(2)` on an `O_DIRECT` file from one pinned thread
//! (queue depth 1, aligned buffers), not with glommio: the ceiling of interest is the device's
//! sequential bandwidth under the sync policy, which large aligned writes reach without an
//! io_uring runtime in the harness. Reads go through `pread(2)` on an `O_DIRECT` descriptor, so
//! the page cache never serves them (nothing is dropped system-wide): 1 MiB reads at queue depth
//! 1, as `dd iflag=direct bs=1M` does, then at a deeper queue depth with that many threads each
//! reading the next 1 MiB of one sequential stream. The file read is the write stream's probe
//! file, topped up with O_DIRECT writes to a size set by the disk duration. This file knows
//! nothing of brokers, clients or workloads.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use socket2::{Domain, Protocol, Socket, Type};

use crate::constants::*;
use crate::placement::pin_current_thread;
use crate::stats::{new_histogram, record_nanos, LatencySummary};

/// When the disk measurement calls `fdatasync`, mirroring the broker's topic durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskSyncPolicy {
    /// After this many bytes or this many microseconds since the last sync, whichever first.
    GroupCommit {
        interval_bytes: u64,
        interval_us: u64,
    },
    /// After every write.
    EveryWrite,
}

/// What to measure and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitSettings {
    pub loopback_duration_ms: u64,
    pub rtt_round_trips: u64,
    pub disk_duration_ms: u64,
    /// Size of each O_DIRECT write; a multiple of [`DIRECT_IO_ALIGNMENT_BYTES`].
    pub disk_write_bytes: usize,
    pub disk_sync: DiskSyncPolicy,
    /// Size of the file the read limit reads (a multiple of [`DISK_READ_BYTES`]); see
    /// [`read_file_bytes_for`].
    pub disk_read_file_bytes: u64,
    /// Queue depths the read limit is measured at (each at least 1).
    pub disk_read_queue_depths: Vec<usize>,
    /// The broker's data directory (or a directory on the same file system).
    pub data_dir: PathBuf,
    /// The load generator's side of the loopback pair.
    pub client_core: usize,
    /// The broker's side of the loopback pair, and the core that writes to disk.
    pub broker_core: usize,
    /// Each limit is measured this many times (interleaved) and the best round is kept:
    /// interference from anything else on the machine only ever lowers a ceiling, and a
    /// ceiling measured too low would flatter the ratios.
    pub rounds: u32,
}

/// The figures of one measurement round.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LimitRound {
    pub loopback_bytes_per_sec: f64,
    pub loopback_rtt_us: f64,
    pub disk_direct_write_bytes_per_sec: f64,
    pub disk_direct_read_bytes_per_sec: f64,
    pub disk_reads: Vec<DiskReadFigure>,
}

/// O_DIRECT sequential reads at one queue depth.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DiskReadFigure {
    /// Reads in flight at once.
    pub queue_depth: usize,
    pub bytes_per_sec: f64,
    pub bytes: u64,
}

/// The size of the read limit's file for a disk duration: as much as a disk reading 1 GB/s
/// reads in that time, within [`DISK_READ_FILE_BYTES_MIN`]..=[`DISK_READ_FILE_BYTES_MAX`], in
/// whole reads.
pub fn read_file_bytes_for(disk_duration_ms: u64) -> u64 {
    let bytes = disk_duration_ms
        .saturating_mul(DISK_READ_FILE_BYTES_PER_MS)
        .clamp(DISK_READ_FILE_BYTES_MIN, DISK_READ_FILE_BYTES_MAX);
    bytes / DISK_READ_BYTES as u64 * DISK_READ_BYTES as u64
}

/// The best read figure: the read limit.
fn best_read(reads: &[DiskReadFigure]) -> f64 {
    reads
        .iter()
        .map(|read| read.bytes_per_sec)
        .fold(0.0, f64::max)
}

/// The measured ceilings: the `limits` object of the JSON report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineLimits {
    pub loopback_bytes_per_sec: f64,
    /// Median round trip of a small message.
    pub loopback_rtt_us: f64,
    pub disk_direct_write_bytes_per_sec: f64,
    /// O_DIRECT sequential 1 MiB reads, the best of the queue depths in `disk_reads`.
    pub disk_direct_read_bytes_per_sec: f64,
    /// Extra fields (the required shape ends above).
    /// Each queue depth's read figure (of the round with the best read limit).
    pub disk_reads: Vec<DiskReadFigure>,
    pub disk_read_bytes: usize,
    pub disk_read_file_bytes: u64,
    pub disk_read_method: &'static str,
    pub loopback_rtt: LatencySummary,
    pub loopback_bytes: u64,
    pub disk_bytes: u64,
    pub disk_write_bytes: usize,
    pub disk_syncs: u64,
    pub disk_sync_latency: Option<LatencySummary>,
    pub disk_sync_policy: DiskSyncPolicy,
    pub disk_method: &'static str,
    /// The data directory is in memory (tmpfs, ramfs), not on a disk: the "disk" figures are
    /// memory speed and nothing written there is durable (since Linux 6.6 tmpfs accepts
    /// O_DIRECT, so nothing fails to say so).
    pub disk_is_memory: bool,
    /// Which memory file system, when `disk_is_memory`.
    pub disk_memory_file_system: Option<&'static str>,
    pub data_dir: String,
    pub client_core: usize,
    pub broker_core: usize,
    /// Every round measured; the figures above are the best of them.
    pub rounds: Vec<LimitRound>,
    /// How long the loopback and disk streams were asked to run.
    pub loopback_duration_ms: u64,
    pub disk_duration_ms: u64,
}

impl MachineLimits {
    /// Why these figures are no ceilings, when a stream ran shorter than
    /// [`LIMIT_DURATION_MS_RELIABLE_MIN`].
    pub fn too_short(&self) -> Option<String> {
        let shortest = self.loopback_duration_ms.min(self.disk_duration_ms);
        (shortest < LIMIT_DURATION_MS_RELIABLE_MIN).then(|| {
            format!(
                "the limits were measured for {} ms (loopback) and {} ms (disk), under \
                 {LIMIT_DURATION_MS_RELIABLE_MIN} ms: warm-up figures, not ceilings",
                self.loopback_duration_ms, self.disk_duration_ms
            )
        })
    }

    /// Why the "disk" figures are no disk limits, when the data directory is in memory.
    pub fn not_a_disk(&self) -> Option<String> {
        self.disk_memory_file_system.map(|file_system| {
            format!(
                "the data directory {} is on {file_system}: memory, not a disk; the disk figures \
                 are no disk limits and nothing written there is durable",
                self.data_dir
            )
        })
    }

    /// The lower of the network and disk ceilings: what a durable produce path can reach.
    pub fn loopback_or_disk_bytes_per_sec(&self) -> f64 {
        self.loopback_bytes_per_sec
            .min(self.disk_direct_write_bytes_per_sec)
    }

    /// The lower of the network and disk read ceilings: what a consumer catching up from disk
    /// (records no longer in any cache) can reach.
    pub fn loopback_or_disk_read_bytes_per_sec(&self) -> f64 {
        self.loopback_bytes_per_sec
            .min(self.disk_direct_read_bytes_per_sec)
    }
}

/// Why a measurement failed: what was being done, and where.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    #[error("loopback {operation}: {source}")]
    Socket {
        operation: &'static str,
        source: std::io::Error,
    },
    #[error("disk {operation} on {path} at offset {offset}: {source}")]
    Disk {
        operation: &'static str,
        path: PathBuf,
        offset: u64,
        source: std::io::Error,
    },
    #[error(
        "{path} does not support O_DIRECT (tmpfs before Linux 6.6?); give --data-dir on a real \
         disk: {source}"
    )]
    NoDirectIo {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {thread} thread of the limits measurement panicked")]
    ThreadPanicked { thread: &'static str },
    #[error("disk write size {bytes} is not a positive multiple of {DIRECT_IO_ALIGNMENT_BYTES}")]
    UnalignedWrite { bytes: usize },
    #[error(
        "disk read file size {bytes} is not a positive multiple of the {DISK_READ_BYTES}-byte read"
    )]
    UnalignedReadFile { bytes: u64 },
    #[error("disk read queue depths {depths:?} must each be at least 1")]
    NoReadQueueDepth { depths: Vec<usize> },
}

fn socket_error(operation: &'static str) -> impl FnOnce(std::io::Error) -> LimitsError {
    move |source| LimitsError::Socket { operation, source }
}

/// Measures every ceiling, one after the other (never concurrently: they would share cores),
/// `settings.rounds` times, and keeps the best figure of each.
pub fn measure(settings: &LimitSettings) -> Result<MachineLimits, LimitsError> {
    let mut best: Option<MachineLimits> = None;
    let mut rounds = Vec::new();
    for _ in 0..settings.rounds.max(1) {
        let round = measure_once(settings)?;
        rounds.push(LimitRound {
            loopback_bytes_per_sec: round.loopback_bytes_per_sec,
            loopback_rtt_us: round.loopback_rtt_us,
            disk_direct_write_bytes_per_sec: round.disk_direct_write_bytes_per_sec,
            disk_direct_read_bytes_per_sec: round.disk_direct_read_bytes_per_sec,
            disk_reads: round.disk_reads.clone(),
        });
        best = Some(match best {
            None => round,
            Some(best) => keep_best(best, round),
        });
    }
    let mut best = best.expect("at least one round ran");
    best.rounds = rounds;
    Ok(best)
}

/// The higher throughputs and the lower round trip of two rounds, each with its details.
fn keep_best(mut best: MachineLimits, round: MachineLimits) -> MachineLimits {
    if round.loopback_bytes_per_sec > best.loopback_bytes_per_sec {
        best.loopback_bytes_per_sec = round.loopback_bytes_per_sec;
        best.loopback_bytes = round.loopback_bytes;
    }
    if round.loopback_rtt_us < best.loopback_rtt_us {
        best.loopback_rtt_us = round.loopback_rtt_us;
        best.loopback_rtt = round.loopback_rtt;
    }
    if round.disk_direct_write_bytes_per_sec > best.disk_direct_write_bytes_per_sec {
        best.disk_direct_write_bytes_per_sec = round.disk_direct_write_bytes_per_sec;
        best.disk_bytes = round.disk_bytes;
        best.disk_syncs = round.disk_syncs;
        best.disk_sync_latency = round.disk_sync_latency;
    }
    if round.disk_direct_read_bytes_per_sec > best.disk_direct_read_bytes_per_sec {
        best.disk_direct_read_bytes_per_sec = round.disk_direct_read_bytes_per_sec;
        best.disk_reads = round.disk_reads;
    }
    best
}

fn measure_once(settings: &LimitSettings) -> Result<MachineLimits, LimitsError> {
    let (loopback_bytes, loopback_nanos) = measure_loopback_throughput(settings)?;
    let rtt = measure_loopback_rtt(settings)?;
    let disk = measure_disk(settings)?;
    let memory = memory_file_system(&settings.data_dir);
    Ok(MachineLimits {
        loopback_bytes_per_sec: crate::stats::per_second(loopback_bytes, loopback_nanos),
        loopback_rtt_us: rtt.p50,
        disk_direct_write_bytes_per_sec: crate::stats::per_second(disk.bytes, disk.nanos),
        disk_direct_read_bytes_per_sec: best_read(&disk.reads),
        disk_reads: disk.reads,
        disk_read_bytes: DISK_READ_BYTES,
        disk_read_file_bytes: settings.disk_read_file_bytes,
        disk_read_method: "O_DIRECT pread of 1 MiB, sequential, one stream shared by as many \
                           threads as the queue depth, on the broker core",
        loopback_rtt: rtt,
        loopback_bytes,
        disk_bytes: disk.bytes,
        disk_write_bytes: settings.disk_write_bytes,
        disk_syncs: disk.syncs,
        disk_sync_latency: disk.sync_latency,
        disk_sync_policy: settings.disk_sync,
        disk_method: "O_DIRECT pwrite + fdatasync, one pinned thread, queue depth 1",
        disk_is_memory: memory.is_some(),
        disk_memory_file_system: memory,
        data_dir: settings.data_dir.display().to_string(),
        client_core: settings.client_core,
        broker_core: settings.broker_core,
        rounds: Vec::new(),
        loopback_duration_ms: settings.loopback_duration_ms,
        disk_duration_ms: settings.disk_duration_ms,
    })
}

/// The memory file system `path` is on ("tmpfs", "ramfs"), or `None` (another file system, or
/// statfs failed). The broker makes the same check (`catalog::medium`); the bench does not
/// depend on the broker.
pub fn memory_file_system(path: &Path) -> Option<&'static str> {
    use std::os::unix::ffi::OsStrExt;
    // `f_type` values from linux/magic.h.
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    let text = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: `statfs` is plain data; statfs(2) writes at most its size and reads the
    // NUL-terminated path, which outlives the call.
    let mut status: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statfs(text.as_ptr(), &mut status) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // f_type's width differs between targets.
    match status.f_type as i64 {
        TMPFS_MAGIC => Some("tmpfs"),
        RAMFS_MAGIC => Some("ramfs"),
        _ => None,
    }
}

/// A TCP socket with the broker's options (broker/server/src/startup.rs): TCP_NODELAY and its
/// default send and receive buffer sizes.
fn configure(socket: &Socket) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    socket.set_send_buffer_size(SOCKET_SEND_BUFFER_BYTES)?;
    socket.set_recv_buffer_size(SOCKET_RECEIVE_BUFFER_BYTES)
}

fn listen_loopback() -> Result<(Socket, SocketAddr), LimitsError> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(socket_error("socket"))?;
    socket
        .set_reuse_address(true)
        .map_err(socket_error("set SO_REUSEADDR"))?;
    let address: SocketAddr = ([127, 0, 0, 1], 0).into();
    socket.bind(&address.into()).map_err(socket_error("bind"))?;
    socket.listen(1).map_err(socket_error("listen"))?;
    let bound = socket
        .local_addr()
        .map_err(socket_error("local address"))?
        .as_socket()
        .ok_or(LimitsError::Socket {
            operation: "local address",
            source: std::io::Error::other("not an inet address"),
        })?;
    Ok((socket, bound))
}

fn accept_configured(listener: &Socket) -> Result<TcpStream, LimitsError> {
    let (socket, _) = listener.accept().map_err(socket_error("accept"))?;
    configure(&socket).map_err(socket_error("configure accepted socket"))?;
    Ok(socket.into())
}

fn connect_configured(address: SocketAddr) -> Result<TcpStream, LimitsError> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
        .map_err(socket_error("socket"))?;
    configure(&socket).map_err(socket_error("configure client socket"))?;
    socket
        .connect(&address.into())
        .map_err(socket_error("connect"))?;
    Ok(socket.into())
}

fn join<T>(
    handle: thread::JoinHandle<Result<T, LimitsError>>,
    thread: &'static str,
) -> Result<T, LimitsError> {
    handle
        .join()
        .map_err(|_| LimitsError::ThreadPanicked { thread })?
}

/// Streams large writes from the client core to the broker core for the configured time.
/// Returns the bytes received and the receiver's nanoseconds from first byte to end of stream.
fn measure_loopback_throughput(settings: &LimitSettings) -> Result<(u64, u64), LimitsError> {
    let (listener, address) = listen_loopback()?;
    let broker_core = settings.broker_core;
    let receiver = thread::Builder::new()
        .name("limits-receiver".into())
        .spawn(move || -> Result<(u64, u64), LimitsError> {
            pin_current_thread(broker_core);
            let mut stream = accept_configured(&listener)?;
            let mut buffer = vec![0u8; LOOPBACK_READ_BYTES];
            let mut received = 0u64;
            let mut first_byte_at = None;
            loop {
                let read = stream.read(&mut buffer).map_err(socket_error("read"))?;
                if read == 0 {
                    break;
                }
                first_byte_at.get_or_insert_with(Instant::now);
                received += read as u64;
            }
            let nanos = first_byte_at.map_or(0, |at| at.elapsed().as_nanos() as u64);
            Ok((received, nanos))
        })
        .map_err(socket_error("spawn receiver thread"))?;
    let client_core = settings.client_core;
    let duration = Duration::from_millis(settings.loopback_duration_ms);
    let sender = thread::Builder::new()
        .name("limits-sender".into())
        .spawn(move || -> Result<(), LimitsError> {
            pin_current_thread(client_core);
            let mut stream = connect_configured(address)?;
            let buffer = vec![0x5au8; LOOPBACK_WRITE_BYTES];
            let deadline = Instant::now() + duration;
            while Instant::now() < deadline {
                stream.write_all(&buffer).map_err(socket_error("write"))?;
            }
            stream
                .shutdown(std::net::Shutdown::Write)
                .map_err(socket_error("shutdown"))
        })
        .map_err(socket_error("spawn sender thread"))?;
    join(sender, "sender")?;
    join(receiver, "receiver")
}

/// Round trips of a small message between the client core and the broker core.
fn measure_loopback_rtt(settings: &LimitSettings) -> Result<LatencySummary, LimitsError> {
    let (listener, address) = listen_loopback()?;
    let broker_core = settings.broker_core;
    let echo = thread::Builder::new()
        .name("limits-echo".into())
        .spawn(move || -> Result<(), LimitsError> {
            pin_current_thread(broker_core);
            let mut stream = accept_configured(&listener)?;
            let mut message = [0u8; RTT_MESSAGE_BYTES];
            loop {
                match stream.read_exact(&mut message) {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {
                        return Ok(())
                    }
                    Err(error) => return Err(socket_error("echo read")(error)),
                }
                stream
                    .write_all(&message)
                    .map_err(socket_error("echo write"))?;
            }
        })
        .map_err(socket_error("spawn echo thread"))?;
    let client_core = settings.client_core;
    let round_trips = settings.rtt_round_trips.max(1);
    let client = thread::Builder::new()
        .name("limits-ping".into())
        .spawn(move || -> Result<LatencySummary, LimitsError> {
            pin_current_thread(client_core);
            let mut stream = connect_configured(address)?;
            let mut message = [0x33u8; RTT_MESSAGE_BYTES];
            let mut histogram = new_histogram();
            // The first round trips pay for slow start and cold caches; they are not the limit.
            let warmup = (round_trips / 10).max(1);
            for index in 0..warmup + round_trips {
                let started = Instant::now();
                stream
                    .write_all(&message)
                    .map_err(socket_error("ping write"))?;
                stream
                    .read_exact(&mut message)
                    .map_err(socket_error("ping read"))?;
                if index >= warmup {
                    record_nanos(&mut histogram, started.elapsed().as_nanos() as u64);
                }
            }
            drop(stream);
            Ok(LatencySummary::of(&histogram).expect("at least one round trip was recorded"))
        })
        .map_err(socket_error("spawn ping thread"))?;
    let summary = join(client, "ping")?;
    join(echo, "echo")?;
    Ok(summary)
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuffer {
    pointer: std::ptr::NonNull<u8>,
    layout: std::alloc::Layout,
}

impl AlignedBuffer {
    fn new(bytes: usize) -> AlignedBuffer {
        assert!(bytes > 0 && bytes % DIRECT_IO_ALIGNMENT_BYTES == 0);
        let layout = std::alloc::Layout::from_size_align(bytes, DIRECT_IO_ALIGNMENT_BYTES)
            .expect("aligned layout of a checked size");
        // SAFETY: the layout has a non-zero size.
        let pointer = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(pointer) = std::ptr::NonNull::new(pointer) else {
            std::alloc::handle_alloc_error(layout);
        };
        AlignedBuffer { pointer, layout }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: the allocation is `layout.size()` bytes, initialised (zeroed), owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.layout.size()) }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: as above; shared borrow of self.
        unsafe { std::slice::from_raw_parts(self.pointer.as_ptr(), self.layout.size()) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.pointer.as_ptr(), self.layout) };
    }
}

// SAFETY: the buffer is uniquely owned heap memory; nothing else aliases it.
unsafe impl Send for AlignedBuffer {}

/// The probe file, removed when the measurement ends (also on error).
struct ProbeFile {
    path: PathBuf,
}

impl Drop for ProbeFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

struct DiskResult {
    bytes: u64,
    nanos: u64,
    syncs: u64,
    sync_latency: Option<LatencySummary>,
    reads: Vec<DiskReadFigure>,
}

fn open_direct(path: &Path) -> Result<File, LimitsError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|source| {
            if source.raw_os_error() == Some(libc::EINVAL) {
                LimitsError::NoDirectIo {
                    path: path.to_path_buf(),
                    source,
                }
            } else {
                LimitsError::Disk {
                    operation: "open O_DIRECT",
                    path: path.to_path_buf(),
                    offset: 0,
                    source,
                }
            }
        })
}

fn measure_disk(settings: &LimitSettings) -> Result<DiskResult, LimitsError> {
    let write_bytes = settings.disk_write_bytes;
    if write_bytes == 0 || write_bytes % DIRECT_IO_ALIGNMENT_BYTES != 0 {
        return Err(LimitsError::UnalignedWrite { bytes: write_bytes });
    }
    let read_file_bytes = settings.disk_read_file_bytes;
    if read_file_bytes == 0 || read_file_bytes % DISK_READ_BYTES as u64 != 0 {
        return Err(LimitsError::UnalignedReadFile {
            bytes: read_file_bytes,
        });
    }
    if settings.disk_read_queue_depths.contains(&0) {
        return Err(LimitsError::NoReadQueueDepth {
            depths: settings.disk_read_queue_depths.clone(),
        });
    }
    let path = settings
        .data_dir
        .join(format!(".spate-bench-disk-probe-{}", std::process::id()));
    let data_dir = settings.data_dir.clone();
    let settings = settings.clone();
    let handle = thread::Builder::new()
        .name("limits-disk".into())
        .spawn(move || -> Result<DiskResult, LimitsError> {
            pin_current_thread(settings.broker_core);
            let file = Arc::new(open_direct(&path)?);
            let probe = ProbeFile { path };
            let mut result = write_stream(&file, &probe.path, &settings)?;
            fill_to(
                &file,
                &probe.path,
                result.bytes,
                settings.disk_read_file_bytes,
            )?;
            for &depth in &settings.disk_read_queue_depths {
                result
                    .reads
                    .push(read_stream(&file, &probe.path, depth, &settings)?);
            }
            Ok(result)
        })
        .map_err(|source| LimitsError::Disk {
            operation: "spawn disk thread",
            path: data_dir,
            offset: 0,
            source,
        })?;
    join(handle, "disk")
}

/// Sequential aligned writes for the configured time, syncing as the policy says.
fn write_stream(
    file: &File,
    path: &Path,
    settings: &LimitSettings,
) -> Result<DiskResult, LimitsError> {
    let buffer = patterned_buffer(settings.disk_write_bytes);
    let disk_error = |operation: &'static str, offset: u64| {
        let path = path.to_path_buf();
        move |source| LimitsError::Disk {
            operation,
            path,
            offset,
            source,
        }
    };
    let duration = Duration::from_millis(settings.disk_duration_ms);
    let mut sync_histogram = new_histogram();
    let mut offset = 0u64;
    let mut unsynced_bytes = 0u64;
    let mut syncs = 0u64;
    let started = Instant::now();
    let mut last_sync = started;
    let mut sync = |offset: u64, last_sync: &mut Instant| -> Result<(), LimitsError> {
        let sync_started = Instant::now();
        file.sync_data().map_err(disk_error("fdatasync", offset))?;
        record_nanos(
            &mut sync_histogram,
            sync_started.elapsed().as_nanos() as u64,
        );
        syncs += 1;
        *last_sync = Instant::now();
        Ok(())
    };
    while started.elapsed() < duration
        && offset + (settings.disk_write_bytes as u64) <= DISK_BYTES_MAX
    {
        file.write_all_at(buffer.as_slice(), offset)
            .map_err(disk_error("write", offset))?;
        offset += settings.disk_write_bytes as u64;
        unsynced_bytes += settings.disk_write_bytes as u64;
        let due = match settings.disk_sync {
            DiskSyncPolicy::EveryWrite => true,
            DiskSyncPolicy::GroupCommit {
                interval_bytes,
                interval_us,
            } => {
                unsynced_bytes >= interval_bytes
                    || last_sync.elapsed() >= Duration::from_micros(interval_us)
            }
        };
        if due {
            sync(offset, &mut last_sync)?;
            unsynced_bytes = 0;
        }
    }
    if unsynced_bytes > 0 {
        sync(offset, &mut last_sync)?;
    }
    let nanos = started.elapsed().as_nanos() as u64;
    Ok(DiskResult {
        bytes: offset,
        nanos,
        syncs,
        sync_latency: LatencySummary::of(&sync_histogram),
        reads: Vec::new(),
    })
}

/// A buffer of bytes that are not all one value: a virtual disk may compress or skip zeroes.
fn patterned_buffer(bytes: usize) -> AlignedBuffer {
    let mut buffer = AlignedBuffer::new(bytes);
    for (index, byte) in buffer.as_mut_slice().iter_mut().enumerate() {
        *byte = (index.wrapping_mul(2_654_435_761) >> 13) as u8;
    }
    buffer
}

/// Grows the probe file from `written` to at least `file_bytes` with O_DIRECT writes (never
/// through the page cache, so the reads that follow find nothing there), then syncs it.
fn fill_to(file: &File, path: &Path, written: u64, file_bytes: u64) -> Result<(), LimitsError> {
    let buffer = patterned_buffer(DISK_READ_BYTES);
    // From the last whole read below the write stream's end (an aligned offset): a partial last
    // read is written over, so that every read up to `file_bytes` finds a whole 1 MiB.
    let mut offset = written / DISK_READ_BYTES as u64 * DISK_READ_BYTES as u64;
    while offset < file_bytes {
        file.write_all_at(buffer.as_slice(), offset)
            .map_err(|source| LimitsError::Disk {
                operation: "write (read probe fill)",
                path: path.to_path_buf(),
                offset,
                source,
            })?;
        offset += DISK_READ_BYTES as u64;
    }
    file.sync_data().map_err(|source| LimitsError::Disk {
        operation: "fdatasync (read probe fill)",
        path: path.to_path_buf(),
        offset,
        source,
    })
}

/// The offsets of one sequential stream of [`DISK_READ_BYTES`] reads over `file_bytes`, handed
/// out in order to whichever reader asks next, until the file or the time runs out.
struct ReadCursor {
    next_offset: AtomicU64,
    file_bytes: u64,
}

impl ReadCursor {
    fn new(file_bytes: u64) -> ReadCursor {
        ReadCursor {
            next_offset: AtomicU64::new(0),
            file_bytes,
        }
    }

    /// The next read's offset, or `None` at the end of the file.
    fn next_offset(&self) -> Option<u64> {
        let offset = self
            .next_offset
            .fetch_add(DISK_READ_BYTES as u64, Ordering::Relaxed);
        (offset + DISK_READ_BYTES as u64 <= self.file_bytes).then_some(offset)
    }
}

/// Reads the first `disk_read_file_bytes` of the probe file once, sequentially, with `depth`
/// reads in flight (one blocking `pread` per thread, all pinned to the broker core), for at
/// most the disk duration.
fn read_stream(
    file: &Arc<File>,
    path: &Path,
    depth: usize,
    settings: &LimitSettings,
) -> Result<DiskReadFigure, LimitsError> {
    let cursor = Arc::new(ReadCursor::new(settings.disk_read_file_bytes));
    let deadline = Instant::now() + Duration::from_millis(settings.disk_duration_ms);
    let started = Instant::now();
    let mut readers = Vec::with_capacity(depth);
    for _ in 0..depth {
        let (file, cursor) = (Arc::clone(file), Arc::clone(&cursor));
        let reader_path = path.to_path_buf();
        let core = settings.broker_core;
        let reader = thread::Builder::new()
            .name("limits-disk-read".into())
            .spawn(move || -> Result<u64, LimitsError> {
                pin_current_thread(core);
                let mut buffer = AlignedBuffer::new(DISK_READ_BYTES);
                let mut read_bytes = 0u64;
                while Instant::now() < deadline {
                    let Some(offset) = cursor.next_offset() else {
                        break;
                    };
                    file.read_exact_at(buffer.as_mut_slice(), offset)
                        .map_err(|source| LimitsError::Disk {
                            operation: "O_DIRECT read",
                            path: reader_path.clone(),
                            offset,
                            source,
                        })?;
                    read_bytes += DISK_READ_BYTES as u64;
                }
                Ok(read_bytes)
            })
            .map_err(|source| LimitsError::Disk {
                operation: "spawn disk read thread",
                path: path.to_path_buf(),
                offset: 0,
                source,
            })?;
        readers.push(reader);
    }
    let mut bytes = 0u64;
    let mut failure = None;
    for reader in readers {
        match join(reader, "disk read") {
            Ok(read_bytes) => bytes += read_bytes,
            Err(error) => {
                failure.get_or_insert(error);
            }
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    let nanos = started.elapsed().as_nanos() as u64;
    Ok(DiskReadFigure {
        queue_depth: depth,
        bytes_per_sec: crate::stats::per_second(bytes, nanos),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick_settings(data_dir: PathBuf) -> LimitSettings {
        LimitSettings {
            loopback_duration_ms: 100,
            rtt_round_trips: 200,
            disk_duration_ms: 100,
            disk_write_bytes: 64 * 1024,
            disk_sync: DiskSyncPolicy::GroupCommit {
                interval_bytes: 256 * 1024,
                interval_us: 2_000,
            },
            disk_read_file_bytes: 4 * DISK_READ_BYTES as u64,
            disk_read_queue_depths: vec![1, 4],
            data_dir,
            client_core: 0,
            broker_core: 0,
            rounds: 1,
        }
    }

    /// A directory on a real disk: the build's target directory (/tmp may be tmpfs).
    fn disk_directory() -> tempfile::TempDir {
        let root = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
        std::fs::create_dir_all(&root).unwrap();
        tempfile::tempdir_in(root).unwrap()
    }

    #[test]
    fn loopback_stream_moves_bytes_and_reports_a_positive_rate() {
        let directory = disk_directory();
        let (bytes, nanos) = measure_loopback_throughput(&quick_settings(directory.path().into()))
            .expect("loopback stream");
        assert!(bytes >= LOOPBACK_WRITE_BYTES as u64, "only {bytes} bytes");
        assert!(nanos > 0);
    }

    #[test]
    fn round_trips_are_all_recorded() {
        let directory = disk_directory();
        let summary =
            measure_loopback_rtt(&quick_settings(directory.path().into())).expect("ping-pong");
        assert_eq!(summary.count, 200);
        assert!(summary.p50 > 0.0 && summary.p50 <= summary.max);
    }

    #[test]
    fn disk_stream_syncs_by_the_group_commit_interval_and_removes_its_file() {
        let directory = disk_directory();
        let settings = quick_settings(directory.path().into());
        let result = measure_disk(&settings).expect("disk stream");
        assert!(result.bytes > 0 && result.bytes % (64 * 1024) == 0);
        // One sync per 256 KiB at most four writes apart, plus a final one; time may add more.
        assert!(
            result.syncs >= result.bytes / (256 * 1024),
            "{} syncs",
            result.syncs
        );
        let leftovers: Vec<_> = std::fs::read_dir(directory.path()).unwrap().collect();
        assert!(
            leftovers.is_empty(),
            "probe file left behind: {leftovers:?}"
        );
    }

    #[test]
    fn every_write_policy_syncs_each_write() {
        let directory = disk_directory();
        let settings = LimitSettings {
            disk_sync: DiskSyncPolicy::EveryWrite,
            ..quick_settings(directory.path().into())
        };
        let result = measure_disk(&settings).expect("disk stream");
        assert_eq!(result.syncs, result.bytes / (64 * 1024));
    }

    #[test]
    fn repeated_rounds_keep_the_best_of_each_figure() {
        let directory = disk_directory();
        let settings = LimitSettings {
            rounds: 2,
            ..quick_settings(directory.path().into())
        };
        let limits = measure(&settings).expect("two rounds");
        assert_eq!(limits.rounds.len(), 2);
        let best_loopback = limits
            .rounds
            .iter()
            .map(|round| round.loopback_bytes_per_sec)
            .fold(0.0, f64::max);
        let best_rtt = limits
            .rounds
            .iter()
            .map(|round| round.loopback_rtt_us)
            .fold(f64::INFINITY, f64::min);
        let best_disk = limits
            .rounds
            .iter()
            .map(|round| round.disk_direct_write_bytes_per_sec)
            .fold(0.0, f64::max);
        assert_eq!(limits.loopback_bytes_per_sec, best_loopback);
        assert_eq!(limits.loopback_rtt_us, best_rtt);
        assert_eq!(limits.loopback_rtt.p50, best_rtt);
        assert_eq!(limits.disk_direct_write_bytes_per_sec, best_disk);
        let best_read = limits
            .rounds
            .iter()
            .map(|round| round.disk_direct_read_bytes_per_sec)
            .fold(0.0, f64::max);
        assert_eq!(limits.disk_direct_read_bytes_per_sec, best_read);
        assert_eq!(
            limits.disk_direct_read_bytes_per_sec,
            super::best_read(&limits.disk_reads),
            "the per-depth figures are the best round's"
        );
    }

    #[test]
    fn the_read_file_is_sized_from_the_duration_within_bounds_in_whole_reads() {
        assert_eq!(read_file_bytes_for(0), DISK_READ_FILE_BYTES_MIN);
        assert_eq!(read_file_bytes_for(100), 100 * DISK_READ_FILE_BYTES_PER_MS);
        assert_eq!(read_file_bytes_for(3_000), DISK_READ_FILE_BYTES_MAX);
        assert_eq!(read_file_bytes_for(u64::MAX), DISK_READ_FILE_BYTES_MAX);
        for duration_ms in [1, 17, 300, 999, 1_000] {
            assert_eq!(read_file_bytes_for(duration_ms) % DISK_READ_BYTES as u64, 0);
        }
    }

    #[test]
    fn the_read_file_is_filled_to_whole_reads_whatever_the_write_stream_left() {
        let directory = disk_directory();
        let path = directory.path().join("probe");
        let file = open_direct(&path).unwrap();
        let read = DISK_READ_BYTES as u64;
        // A write stream of 64 KiB writes that ended inside the last 1 MiB read.
        let partial = 3 * read + 64 * 1024;
        file.write_all_at(patterned_buffer(partial as usize).as_slice(), 0)
            .unwrap();
        fill_to(&file, &path, partial, 4 * read).unwrap();
        assert!(file.metadata().unwrap().len() >= 4 * read);
        drop(file);
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn the_read_cursor_hands_out_each_read_of_the_file_once_in_order() {
        let cursor = ReadCursor::new(3 * DISK_READ_BYTES as u64);
        let offsets: Vec<Option<u64>> = (0..5).map(|_| cursor.next_offset()).collect();
        let read = DISK_READ_BYTES as u64;
        assert_eq!(offsets, [Some(0), Some(read), Some(2 * read), None, None]);
    }

    #[test]
    fn disk_reads_are_reported_for_each_queue_depth_and_the_best_is_the_limit() {
        let directory = disk_directory();
        let settings = quick_settings(directory.path().into());
        let result = measure_disk(&settings).expect("disk stream");
        let depths: Vec<usize> = result.reads.iter().map(|read| read.queue_depth).collect();
        assert_eq!(depths, [1, 4]);
        for read in &result.reads {
            // The time bound may cut a pass short on a busy machine; never beyond the file.
            assert_eq!(read.bytes % DISK_READ_BYTES as u64, 0);
            assert!(read.bytes <= settings.disk_read_file_bytes, "{read:?}");
        }
        let figures = [
            DiskReadFigure {
                queue_depth: 1,
                bytes_per_sec: 5.0,
                bytes: 1,
            },
            DiskReadFigure {
                queue_depth: 8,
                bytes_per_sec: 7.0,
                bytes: 1,
            },
        ];
        assert_eq!(best_read(&figures), 7.0);
    }

    #[test]
    fn read_settings_that_cannot_be_measured_are_refused() {
        let directory = disk_directory();
        let unaligned = LimitSettings {
            disk_read_file_bytes: 1000,
            ..quick_settings(directory.path().into())
        };
        assert!(matches!(
            measure_disk(&unaligned),
            Err(LimitsError::UnalignedReadFile { bytes: 1000 })
        ));
        let no_depth = LimitSettings {
            disk_read_queue_depths: vec![1, 0],
            ..quick_settings(directory.path().into())
        };
        assert!(matches!(
            measure_disk(&no_depth),
            Err(LimitsError::NoReadQueueDepth { .. })
        ));
    }

    #[test]
    fn unaligned_write_sizes_are_refused() {
        let directory = disk_directory();
        let settings = LimitSettings {
            disk_write_bytes: 1000,
            ..quick_settings(directory.path().into())
        };
        assert!(matches!(
            measure_disk(&settings),
            Err(LimitsError::UnalignedWrite { bytes: 1000 })
        ));
    }
}
