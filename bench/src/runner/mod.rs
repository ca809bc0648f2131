//! Runs a workload against one driver: starts the pinned load-generator threads, decides when
//! measurement starts and stops, and turns the meters into a [`RunOutcome`].
//!
//! One module per workload (`produce`, `consume`, `e2e`); this file holds what they share:
//! thread start-up, the sticky partition cycle, the progress loop, open-loop pacing. Drivers
//! know nothing of runs; reports and JSON are `report`'s job.

pub mod compaction_latency;
pub mod consume;
pub mod e2e;
pub mod pacer;
pub mod produce;

use std::io::IsTerminal;
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;

use crate::constants::PROGRESS_INTERVAL_MS;
use crate::driver::{DriverError, DriverKind, Promise, TopicSpec};
use crate::placement::{pin_current_thread, Placement};
use crate::stats::{per_second, LatencySummary, Meter};
use crate::workload::Workload;

/// Why a run failed (as opposed to finishing with per-record errors, which it counts).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error("cannot start the {name} thread: {source}")]
    SpawnThread {
        name: String,
        source: std::io::Error,
    },
    #[error("the {name} thread panicked")]
    ThreadPanicked { name: String },
    #[error("e2e calibration failed: {0}")]
    Calibration(String),
    #[error(transparent)]
    Pacer(#[from] pacer::PacerError),
}

/// What a latency figure measures, so reports never mix them up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LatencyKind {
    /// From the producer's send call to the acknowledgement.
    ProduceToAck,
    /// From the record's intended send instant (open-loop schedule) to consumer receipt:
    /// corrected for coordinated omission.
    EndToEndCorrected,
    /// From a consumer poll call to its return with records.
    Poll,
    /// A small message's round trip over loopback TCP (the `limits` workload).
    LoopbackRoundTrip,
}

/// Extra e2e figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndToEndDetails {
    pub target_records_per_sec: f64,
    /// Scheduled records sent, over the time from the first scheduled instant to the last
    /// actual send: below the target when the producers fell behind.
    pub achieved_send_records_per_sec: f64,
    pub received_records_per_sec: f64,
    pub rate_held: bool,
    pub sent_records: u64,
    pub received_records: u64,
    pub missing_records: u64,
    /// Longest a send started after its scheduled instant.
    pub send_lag_max_us: f64,
    /// Latency from the actual send call (not corrected for coordinated omission).
    pub latency_uncorrected_us: Option<LatencySummary>,
    /// Produce-to-acknowledgement latency of the same records.
    pub produce_to_ack_us: Option<LatencySummary>,
    /// The calibration run that set the target, when it was given as a percentage of the max.
    pub calibration_max_records_per_sec: Option<f64>,
    pub calibration_percent_of_max: Option<f64>,
    /// What pacing the producers cost the load cores.
    pub load: PacingLoad,
}

/// The open-loop producers' pacing and the CPU their threads used.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PacingLoad {
    pub pacer: pacer::PacerKind,
    /// The timerfd pacer's shortest time between wakes; `None` for `sleep` (a wake per record).
    pub pacer_wake_us: Option<u64>,
    /// CPU time of the producing threads (pacing plus the client's `send` calls) over their
    /// time from start to last send, in percent of one core, summed over the threads.
    pub pacer_cpu_percent: f64,
    pub producer_threads: u32,
    /// Times the producers waited for a due instant, and records sent per wait on average.
    pub pacer_wakes: u64,
    pub records_per_wake: Option<f64>,
}

/// The result of one workload run with one driver.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunOutcome {
    pub driver: DriverKind,
    pub throughput_bytes_per_sec: f64,
    pub records_per_sec: f64,
    pub latency: Option<LatencySummary>,
    pub latency_kind: LatencyKind,
    /// Records and value bytes counted in the measured window.
    pub measured_records: u64,
    pub measured_bytes: u64,
    pub measured_seconds: f64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub end_to_end: Option<EndToEndDetails>,
    pub notes: Vec<String>,
    /// What the system's acknowledgements promised in this run (set by whoever knows how the
    /// system was configured; `None` until then).
    pub promise: Option<Promise>,
}

impl RunOutcome {
    /// The throughput figures of `meter` over the window from `start_nanos` to its last event.
    fn from_meter(
        driver: DriverKind,
        meter: &Meter,
        start_nanos: u64,
        latency_kind: LatencyKind,
    ) -> RunOutcome {
        let window_nanos = meter.last_event_nanos().saturating_sub(start_nanos);
        RunOutcome {
            driver,
            throughput_bytes_per_sec: per_second(meter.bytes(), window_nanos),
            records_per_sec: per_second(meter.records(), window_nanos),
            latency: LatencySummary::of(&meter.histogram()),
            latency_kind,
            measured_records: meter.records(),
            measured_bytes: meter.bytes(),
            measured_seconds: window_nanos as f64 / 1e9,
            errors: meter.errors(),
            first_error: meter.first_error(),
            end_to_end: None,
            notes: Vec::new(),
            promise: None,
        }
    }
}

/// The driver-side topic for a workload.
pub fn topic_of(workload: &Workload) -> TopicSpec {
    TopicSpec {
        name: workload.topic.clone(),
        partitions: workload.partitions,
        durability: workload.durability,
        group_commit_us: workload.group_commit_us,
        group_commit_bytes: workload.group_commit_bytes,
        write_caching: workload.write_caching,
    }
}

/// Starts a load-generator thread pinned to the placement's core for `index`.
pub fn spawn_pinned<T: Send + 'static>(
    name: String,
    placement: &Placement,
    index: usize,
    body: impl FnOnce() -> T + Send + 'static,
) -> Result<JoinHandle<T>, RunError> {
    let core = placement.load_core(index);
    std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            pin_current_thread(core);
            body()
        })
        .map_err(|source| RunError::SpawnThread { name, source })
}

/// Joins every thread, in order; the first panic is reported.
pub fn join_all<T>(handles: Vec<(String, JoinHandle<T>)>) -> Result<Vec<T>, RunError> {
    let mut results = Vec::with_capacity(handles.len());
    let mut panicked = None;
    for (name, handle) in handles {
        match handle.join() {
            Ok(result) => results.push(result),
            Err(_) => {
                panicked.get_or_insert(name);
            }
        }
    }
    match panicked {
        Some(name) => Err(RunError::ThreadPanicked { name }),
        None => Ok(results),
    }
}

/// The partitions a producer writes to, in turn: it stays on one partition for a batch's
/// worth of records, then moves to the next (Kafka's sticky partitioner, deterministic).
#[derive(Debug, Clone)]
pub struct StickyPartitions {
    partitions: u32,
    current: u32,
    records_per_batch: u64,
    left_in_batch: u64,
}

impl StickyPartitions {
    pub fn new(partitions: u32, first: u32, batch_bytes: usize, message_bytes: usize) -> Self {
        assert!(partitions > 0 && message_bytes > 0);
        let records_per_batch = (batch_bytes / message_bytes).max(1) as u64;
        StickyPartitions {
            partitions,
            current: first % partitions,
            records_per_batch,
            left_in_batch: records_per_batch,
        }
    }

    pub fn next_partition(&mut self) -> u32 {
        if self.left_in_batch == 0 {
            self.current = (self.current + 1) % self.partitions;
            self.left_in_batch = self.records_per_batch;
        }
        self.left_in_batch -= 1;
        self.current
    }
}

/// The progress line: shown on stderr only when it is a terminal, rewritten in place.
pub struct Progress {
    enabled: bool,
    shown: bool,
}

impl Progress {
    pub fn new(enabled: bool) -> Progress {
        Progress {
            enabled: enabled && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    pub fn show(&mut self, text: &str) {
        if !self.enabled {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = write!(stderr, "\r\x1b[2K{text}");
        let _ = stderr.flush();
        self.shown = true;
    }

    pub fn finish(&mut self) {
        if self.shown {
            let _ = writeln!(std::io::stderr());
            self.shown = false;
        }
    }

    /// Refreshes the line every interval while any of `handles` runs; `line` gets the seconds
    /// since the previous refresh.
    pub fn follow<T>(
        &mut self,
        handles: &[(String, JoinHandle<T>)],
        mut line: impl FnMut(f64) -> String,
    ) {
        let interval = Duration::from_millis(PROGRESS_INTERVAL_MS);
        let tick = Duration::from_millis(20);
        let mut last = std::time::Instant::now();
        while handles.iter().any(|(_, handle)| !handle.is_finished()) {
            std::thread::sleep(tick);
            if last.elapsed() >= interval {
                let seconds = last.elapsed().as_secs_f64();
                last = std::time::Instant::now();
                let text = line(seconds);
                self.show(&text);
            }
        }
    }
}

/// Formats bytes per second as MB/s (10^6), the unit of the tables.
pub fn megabytes_per_second(bytes_per_second: f64) -> String {
    format!("{:.1} MB/s", bytes_per_second / 1e6)
}

/// Makes sleeps of this thread wake close to their deadline (the default 50 µs timer slack
/// would blur an open-loop schedule).
pub fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects only the calling thread.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong, 0, 0, 0) };
}

/// Shared `Arc<Meter>` constructor, for brevity at call sites.
pub fn new_meter() -> Arc<Meter> {
    Arc::new(Meter::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sticky_partitions_stay_for_a_batch_then_move_on() {
        let mut partitions = StickyPartitions::new(3, 1, 4096, 1024);
        let sequence: Vec<u32> = (0..10).map(|_| partitions.next_partition()).collect();
        assert_eq!(sequence, vec![1, 1, 1, 1, 2, 2, 2, 2, 0, 0]);
    }

    #[test]
    fn one_partition_is_always_chosen() {
        let mut partitions = StickyPartitions::new(1, 5, 100, 1000);
        assert!((0..5).all(|_| partitions.next_partition() == 0));
    }

    #[test]
    fn outcome_rates_use_the_window_from_start_to_last_event() {
        let meter = Meter::default();
        meter.count(10, 10_000, Some(2_000_000_000), Some(1_000));
        let outcome =
            RunOutcome::from_meter(DriverKind::Spate, &meter, 1_000_000_000, LatencyKind::Poll);
        assert_eq!(outcome.records_per_sec, 10.0);
        assert_eq!(outcome.throughput_bytes_per_sec, 10_000.0);
        assert_eq!(outcome.measured_seconds, 1.0);
    }
}
