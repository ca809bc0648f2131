//! An idle crowd beside a workload (issue #18): many connections the harness opens to a spawned
//! broker and never uses. They measure what idle connections cost the broker at rest (resident
//! memory and descriptors per connection, CPU while idle) and what they cost a producer and a
//! consumer running beside them: the workload runs once with the crowd and once without it, on
//! the same broker, in one invocation (with it first, so the broker at rest is measured fresh).
//!
//! The broker's figures come from its own `/proc/<pid>` (`VmRSS`, `fd/`, `utime + stime`), so a
//! crowd needs a spawned broker. This file opens sockets and reads `/proc`; `app` decides when,
//! and `report` prints.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::constants::{
    IDLE_ACCEPT_TIMEOUT_MS, IDLE_DESCRIPTORS_SPARE, IDLE_POLL_INTERVAL_MS, IDLE_SETTLE_MS,
};
use crate::runner::RunOutcome;

/// Why a crowd could not be opened or measured.
#[derive(Debug, thiserror::Error)]
pub enum IdleError {
    #[error(
        "{count} idle connections need {wanted} open files in the harness, and the hard limit is \
         {hard}: raise it (ulimit -Hn)"
    )]
    DescriptorLimit {
        count: usize,
        wanted: u64,
        hard: u64,
    },
    #[error("cannot raise the open-files limit: {0}")]
    RaiseLimit(std::io::Error),
    #[error("opening idle connection {index} of {count} to {address}: {source}")]
    Connect {
        index: usize,
        count: usize,
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "the broker closed {closed} of {count} idle connections: its connection limit is lower \
         (connections_max, or what the descriptor limit leaves beside open_files_per_shard_max; \
         the broker logs the number at start)"
    )]
    Refused { closed: usize, count: usize },
    #[error("the broker held {held} of {count} idle connections after {waited_ms} ms")]
    NotAccepted {
        held: usize,
        count: usize,
        waited_ms: u64,
    },
    #[error(
        "the broker still held {held} of {count} closed idle connections after {waited_ms} ms"
    )]
    NotReleased {
        held: usize,
        count: usize,
        waited_ms: u64,
    },
    #[error("reading /proc/{pid}: {source}")]
    Proc { pid: u32, source: std::io::Error },
}

/// What one process uses at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ProcessSample {
    pub resident_bytes: u64,
    pub descriptors: usize,
    /// User plus system CPU time since the process started.
    pub cpu_seconds: f64,
}

impl ProcessSample {
    pub fn of(pid: u32) -> Result<ProcessSample, IdleError> {
        let proc_error = |source| IdleError::Proc { pid, source };
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(proc_error)?;
        let resident_kib = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse::<u64>().ok())
            .unwrap_or(0);
        let descriptors = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .map_err(proc_error)?
            .count();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(proc_error)?;
        // Fields after the command name (which may hold spaces): utime and stime are the 12th
        // and 13th of them, in clock ticks.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |index: usize| {
            fields
                .get(index)
                .and_then(|field| field.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // SAFETY: sysconf only reads a system constant.
        let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        Ok(ProcessSample {
            resident_bytes: resident_kib * 1024,
            descriptors,
            cpu_seconds: (ticks(11) + ticks(12)) as f64 / ticks_per_second,
        })
    }
}

/// A process at rest for a while: its figures at the end, and the CPU it used meanwhile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct IdleMeasurement {
    pub sample: ProcessSample,
    pub measured_ms: u64,
    /// CPU time over the interval, in percent of one core.
    pub cpu_percent_of_a_core: f64,
}

/// Waits `duration` without doing anything and reports what the process used meanwhile.
pub fn measure_idle(pid: u32, duration: Duration) -> Result<IdleMeasurement, IdleError> {
    let first = ProcessSample::of(pid)?;
    let started = Instant::now();
    std::thread::sleep(duration);
    let last = ProcessSample::of(pid)?;
    let elapsed = started.elapsed().as_secs_f64();
    Ok(IdleMeasurement {
        sample: last,
        measured_ms: started.elapsed().as_millis() as u64,
        cpu_percent_of_a_core: 100.0 * (last.cpu_seconds - first.cpu_seconds) / elapsed,
    })
}

/// Connections held open and never used; closed when dropped.
pub struct IdleCrowd {
    streams: Vec<TcpStream>,
}

impl IdleCrowd {
    /// Opens `count` connections to the broker at `address` (process `pid`) and waits until it
    /// holds every one (its descriptors grew by `count`); fails if it closed any (a limit).
    pub fn open(address: SocketAddr, count: usize, pid: u32) -> Result<IdleCrowd, IdleError> {
        raise_descriptor_limit(count)?;
        let before = ProcessSample::of(pid)?.descriptors;
        let mut streams = Vec::with_capacity(count);
        for index in 0..count {
            let stream = TcpStream::connect(address).map_err(|source| IdleError::Connect {
                index,
                count,
                address,
                source,
            })?;
            streams.push(stream);
        }
        let crowd = IdleCrowd { streams };
        crowd.wait_until_held(pid, before)?;
        Ok(crowd)
    }

    /// Closes every connection and waits until the broker has closed its ends (its descriptors
    /// fell by the crowd), so that what runs next runs without them.
    pub fn close(self, pid: u32) -> Result<(), IdleError> {
        let count = self.streams.len();
        let before = ProcessSample::of(pid)?.descriptors;
        drop(self);
        let started = Instant::now();
        let deadline = started + Duration::from_millis(IDLE_ACCEPT_TIMEOUT_MS);
        loop {
            let now = ProcessSample::of(pid)?.descriptors;
            if now + count <= before {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(IdleError::NotReleased {
                    held: (now + count).saturating_sub(before),
                    count,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(IDLE_POLL_INTERVAL_MS));
        }
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Waits until the broker's descriptors grew by the crowd, and checks it closed none.
    fn wait_until_held(&self, pid: u32, descriptors_before: usize) -> Result<(), IdleError> {
        let count = self.streams.len();
        let started = Instant::now();
        let deadline = started + Duration::from_millis(IDLE_ACCEPT_TIMEOUT_MS);
        loop {
            let held = ProcessSample::of(pid)?
                .descriptors
                .saturating_sub(descriptors_before);
            let closed = self.closed_by_broker();
            if closed > 0 {
                return Err(IdleError::Refused { closed, count });
            }
            if held >= count {
                // Accepted; let the broker's connection tasks reach their idle wait.
                std::thread::sleep(Duration::from_millis(IDLE_SETTLE_MS));
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(IdleError::NotAccepted {
                    held,
                    count,
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            std::thread::sleep(Duration::from_millis(IDLE_POLL_INTERVAL_MS));
        }
    }

    /// Connections the broker has closed (end of stream or reset), found without blocking.
    fn closed_by_broker(&self) -> usize {
        let mut byte = [0u8; 1];
        self.streams
            .iter()
            .filter(|stream| {
                let _ = stream.set_nonblocking(true);
                let closed = match stream.peek(&mut byte) {
                    Ok(count) => count == 0,
                    Err(error) => error.kind() != std::io::ErrorKind::WouldBlock,
                };
                let _ = stream.set_nonblocking(false);
                closed
            })
            .count()
    }
}

/// Raises this process's soft open-files limit to its hard limit when `count` connections and
/// the harness's own files would not fit below the soft one.
fn raise_descriptor_limit(count: usize) -> Result<(), IdleError> {
    let wanted = count as u64 + IDLE_DESCRIPTORS_SPARE;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes only the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(IdleError::RaiseLimit(std::io::Error::last_os_error()));
    }
    if limit.rlim_cur >= wanted {
        return Ok(());
    }
    if limit.rlim_max < wanted {
        return Err(IdleError::DescriptorLimit {
            count,
            wanted,
            hard: limit.rlim_max,
        });
    }
    limit.rlim_cur = limit.rlim_max;
    // SAFETY: setrlimit reads only the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(IdleError::RaiseLimit(std::io::Error::last_os_error()));
    }
    Ok(())
}

/// The idle crowd's figures: the broker at rest without and with it, and the workload run beside
/// it (the run without it is the main outcome).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IdleCrowdReport {
    pub connections: usize,
    pub without: IdleMeasurement,
    pub with: IdleMeasurement,
    pub resident_bytes_per_connection: f64,
    pub descriptors_per_connection: f64,
    /// The workload beside the crowd.
    pub with_crowd: RunOutcome,
}

impl IdleCrowdReport {
    pub fn new(
        connections: usize,
        without: IdleMeasurement,
        with: IdleMeasurement,
        with_crowd: RunOutcome,
    ) -> IdleCrowdReport {
        let per_connection = |after: f64, before: f64| (after - before) / connections.max(1) as f64;
        IdleCrowdReport {
            connections,
            resident_bytes_per_connection: per_connection(
                with.sample.resident_bytes as f64,
                without.sample.resident_bytes as f64,
            ),
            descriptors_per_connection: per_connection(
                with.sample.descriptors as f64,
                without.sample.descriptors as f64,
            ),
            without,
            with,
            with_crowd,
        }
    }
}
