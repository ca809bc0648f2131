//! Start-up progress: which step each shard thread has reached, and a watchdog on the main thread
//! that names the stuck shard and step when start-up takes far longer than it should.
//!
//! It only reports; it does not stop or restart anything (a slow disk during recovery is a
//! legitimate reason for a long start, and the operator decides). Shards write their step with a
//! relaxed store; the watchdog's reads may lag by a poll, which is fine for a report.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The steps of a shard's start, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum StartupStep {
    /// The executor thread is spawned but has not run yet.
    Spawned = 0,
    JoiningMesh = 1,
    PreparingStorage = 2,
    RegisteringPartitions = 3,
    WaitingForPeersToRegister = 4,
    Binding = 5,
    Listening = 6,
}

impl StartupStep {
    fn from_u8(value: u8) -> Self {
        match value {
            0 => Self::Spawned,
            1 => Self::JoiningMesh,
            2 => Self::PreparingStorage,
            3 => Self::RegisteringPartitions,
            4 => Self::WaitingForPeersToRegister,
            5 => Self::Binding,
            _ => Self::Listening,
        }
    }

    /// What the shard is doing at this step, in words for the log.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Spawned => "waiting for its executor thread to run",
            Self::JoiningMesh => "joining the cross-shard channel mesh",
            Self::PreparingStorage => "preparing the data directory for direct I/O",
            Self::RegisteringPartitions => "listing the partitions it owns",
            Self::WaitingForPeersToRegister => {
                "waiting for the other shards to list the partitions they own"
            }
            Self::Binding => "binding the listening socket",
            Self::Listening => "listening",
        }
    }
}

/// One step slot per shard, shared by the shard threads and the main thread.
#[derive(Debug, Clone)]
pub struct StartupProgress {
    steps: Arc<[AtomicU8]>,
}

impl StartupProgress {
    pub fn new(shard_count: usize) -> Self {
        Self {
            steps: (0..shard_count)
                .map(|_| AtomicU8::new(StartupStep::Spawned as u8))
                .collect(),
        }
    }

    /// Records that shard `index` (its spawn index) has reached `step`.
    pub fn enter(&self, index: usize, step: StartupStep) {
        if let Some(slot) = self.steps.get(index) {
            slot.store(step as u8, Ordering::Relaxed);
        }
    }

    /// Every shard's current step, by spawn index.
    pub fn steps(&self) -> Vec<StartupStep> {
        self.steps
            .iter()
            .map(|slot| StartupStep::from_u8(slot.load(Ordering::Relaxed)))
            .collect()
    }

    /// The shards not yet listening, with their steps.
    pub fn unfinished(&self) -> Vec<(usize, StartupStep)> {
        self.steps()
            .into_iter()
            .enumerate()
            .filter(|(_, step)| *step != StartupStep::Listening)
            .collect()
    }
}

/// Polled by the main thread while it waits for the shards: after each `interval` without a
/// finished start it logs one warning per unfinished shard.
pub struct Watchdog {
    progress: StartupProgress,
    interval: Duration,
    started_at: Instant,
    next_report_at: Instant,
}

impl Watchdog {
    pub fn new(progress: StartupProgress, interval: Duration) -> Self {
        let started_at = Instant::now();
        Self {
            progress,
            interval,
            started_at,
            next_report_at: started_at + interval,
        }
    }

    /// Logs the unfinished shards when a report is due; returns what it reported (for tests).
    pub fn report_if_slow(&mut self) -> Vec<(usize, StartupStep)> {
        let now = Instant::now();
        if now < self.next_report_at {
            return Vec::new();
        }
        self.next_report_at = now + self.interval;
        let unfinished = self.progress.unfinished();
        let waited_ms = now.duration_since(self.started_at).as_millis() as u64;
        for (shard, step) in &unfinished {
            tracing::warn!(
                shard,
                step = step.describe(),
                waited_ms,
                "start-up is taking long: shard still at this step"
            );
        }
        unfinished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_names_each_unfinished_shard_and_its_step_once_per_interval() {
        let progress = StartupProgress::new(3);
        progress.enter(0, StartupStep::Listening);
        progress.enter(1, StartupStep::JoiningMesh);
        let mut watchdog = Watchdog::new(progress.clone(), Duration::ZERO);
        assert_eq!(
            watchdog.report_if_slow(),
            vec![(1, StartupStep::JoiningMesh), (2, StartupStep::Spawned)]
        );
        progress.enter(1, StartupStep::Listening);
        progress.enter(2, StartupStep::RegisteringPartitions);
        assert_eq!(
            watchdog.report_if_slow(),
            vec![(2, StartupStep::RegisteringPartitions)]
        );

        let mut patient = Watchdog::new(progress, Duration::from_secs(3600));
        assert!(
            patient.report_if_slow().is_empty(),
            "reported before its interval"
        );
    }

    #[test]
    fn steps_round_trip_through_their_stored_form() {
        for step in [
            StartupStep::Spawned,
            StartupStep::JoiningMesh,
            StartupStep::PreparingStorage,
            StartupStep::RegisteringPartitions,
            StartupStep::WaitingForPeersToRegister,
            StartupStep::Binding,
            StartupStep::Listening,
        ] {
            assert_eq!(StartupStep::from_u8(step as u8), step);
            assert!(!step.describe().is_empty());
        }
    }
}
