//! How an open-loop producer waits for its next record's due instant, and what that waiting
//! costs the load core.
//!
//! Two pacers, chosen per run (`pacer` in the workload, `--pacer` on the command line), so that
//! one binary can show the difference:
//! - `sleep`: `std::thread::sleep` (nanosleep) until each record's due instant: one timer
//!   programmed and one wake per record. On the development VM that cost the load core ~46% at
//!   50,000 records/s, mostly in the kernel's timer programming (bench/README.md).
//! - `timerfd` (the default): wakes at most once per `pacer_wake_us` and sends every record due
//!   by then in one go; a wait longer than the spin margin sleeps on a timerfd armed to the wake
//!   instant less that margin, and only the last microseconds are spun on the monotonic clock.
//!   The margin is calibrated from how late the timerfd actually wakes (an average of its
//!   overshoot), so the spin stays a few microseconds. A record waits at most `pacer_wake_us`
//!   past its due instant for its send; that lateness is inside the corrected end-to-end latency
//!   (measured from the due instant) and in `send_lag_max_us`, never hidden.
//!
//! The producing thread's own CPU time (`CLOCK_THREAD_CPUTIME_ID`: pacing plus the client's
//! `send` calls) is measured over the paced run, so a report can say what the pacing cost.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use serde::{Deserialize, Serialize};

use crate::stats::now_nanos;

/// Which pacer an open-loop producer uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum PacerKind {
    /// nanosleep until each record's due instant (the pacer before 2026-12-03).
    Sleep,
    /// A timerfd wake at most every `pacer_wake_us`, every due record sent per wake, a
    /// calibrated spin for the last microseconds.
    Timerfd,
}

impl PacerKind {
    pub fn name(self) -> &'static str {
        match self {
            PacerKind::Sleep => "sleep",
            PacerKind::Timerfd => "timerfd",
        }
    }
}

/// The spin margin's bounds: never spin less than this (the clock read itself) ...
const SPIN_MARGIN_MIN_NANOS: u64 = 2_000;
/// ... nor more than this (a timerfd that wakes later than this is a loaded machine, and
/// spinning longer would only burn the core the client needs).
const SPIN_MARGIN_MAX_NANOS: u64 = 50_000;
/// The margin before the first measured wake.
const SPIN_MARGIN_INITIAL_NANOS: u64 = 20_000;
/// The margin is this many times the average overshoot, so most wakes land before the instant.
const SPIN_MARGIN_PER_OVERSHOOT: u64 = 2;
/// Weight of a new overshoot in its running average: 1/8.
const OVERSHOOT_AVERAGE_SHIFT: u32 = 3;

/// When the next wake is: the next record's due instant, but no sooner than the minimum
/// interval after the previous wake (records due in between are sent together then).
pub fn next_wake_nanos(
    next_due_nanos: u64,
    last_wake_nanos: u64,
    wake_interval_min_nanos: u64,
) -> u64 {
    next_due_nanos.max(last_wake_nanos.saturating_add(wake_interval_min_nanos))
}

/// The spin margin, learned from how late a timerfd wakes after the instant it was armed for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpinMargin {
    average_overshoot_nanos: u64,
}

impl Default for SpinMargin {
    fn default() -> Self {
        SpinMargin {
            average_overshoot_nanos: SPIN_MARGIN_INITIAL_NANOS / SPIN_MARGIN_PER_OVERSHOOT,
        }
    }
}

impl SpinMargin {
    /// How long before a wake instant the timerfd is armed for; the rest is spun.
    pub fn nanos(&self) -> u64 {
        (self.average_overshoot_nanos * SPIN_MARGIN_PER_OVERSHOOT)
            .clamp(SPIN_MARGIN_MIN_NANOS, SPIN_MARGIN_MAX_NANOS)
    }

    /// A timerfd armed for `armed_nanos` returned at `woke_nanos`.
    pub fn observe(&mut self, armed_nanos: u64, woke_nanos: u64) {
        let overshoot = woke_nanos
            .saturating_sub(armed_nanos)
            .min(SPIN_MARGIN_MAX_NANOS);
        let average = self.average_overshoot_nanos;
        self.average_overshoot_nanos =
            average - (average >> OVERSHOOT_AVERAGE_SHIFT) + (overshoot >> OVERSHOOT_AVERAGE_SHIFT);
    }
}

/// Why the timerfd pacer could not wait.
#[derive(Debug, thiserror::Error)]
#[error("pacer timerfd {operation}: {source}")]
pub struct PacerError {
    operation: &'static str,
    source: std::io::Error,
}

fn pacer_error(operation: &'static str) -> PacerError {
    PacerError {
        operation,
        source: std::io::Error::last_os_error(),
    }
}

/// A one-shot monotonic timerfd, re-armed for each wait.
pub struct Timer {
    descriptor: OwnedFd,
}

impl Timer {
    pub fn new() -> Result<Timer, PacerError> {
        // SAFETY: timerfd_create takes plain integers and returns a new descriptor or -1.
        let raw = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, libc::TFD_CLOEXEC) };
        if raw < 0 {
            return Err(pacer_error("create"));
        }
        // SAFETY: `raw` is a descriptor this call just created and nothing else owns.
        Ok(Timer {
            descriptor: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    /// Blocks for `nanos` (relative, at least 1 ns): one timer programmed, one wake.
    pub fn sleep(&self, nanos: u64) -> Result<(), PacerError> {
        let nanos = nanos.max(1);
        let setting = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: (nanos / 1_000_000_000) as libc::time_t,
                tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
            },
        };
        // SAFETY: the descriptor is a timerfd owned by self; `setting` outlives the call and a
        // null old value is allowed.
        let armed = unsafe {
            libc::timerfd_settime(
                self.descriptor.as_raw_fd(),
                0,
                &setting,
                std::ptr::null_mut(),
            )
        };
        if armed != 0 {
            return Err(pacer_error("arm"));
        }
        let mut expirations = 0u64;
        loop {
            // SAFETY: reads 8 bytes into a u64 that outlives the call.
            let read = unsafe {
                libc::read(
                    self.descriptor.as_raw_fd(),
                    (&mut expirations as *mut u64).cast(),
                    std::mem::size_of::<u64>(),
                )
            };
            if read == std::mem::size_of::<u64>() as isize {
                return Ok(());
            }
            let error = std::io::Error::last_os_error();
            if error.kind() != std::io::ErrorKind::Interrupted {
                return Err(PacerError {
                    operation: "read",
                    source: error,
                });
            }
        }
    }
}

/// Waits until a due instant, the way the chosen pacer does.
pub enum Pacer {
    Sleep,
    Timerfd { timer: Timer, margin: SpinMargin },
}

impl Pacer {
    pub fn new(kind: PacerKind) -> Result<Pacer, PacerError> {
        Ok(match kind {
            PacerKind::Sleep => Pacer::Sleep,
            PacerKind::Timerfd => Pacer::Timerfd {
                timer: Timer::new()?,
                margin: SpinMargin::default(),
            },
        })
    }

    /// Returns at `wake_nanos` (harness clock) or a little after; never before.
    pub fn wait_until(&mut self, wake_nanos: u64) -> Result<(), PacerError> {
        match self {
            Pacer::Sleep => {
                let now = now_nanos();
                if now < wake_nanos {
                    std::thread::sleep(std::time::Duration::from_nanos(wake_nanos - now));
                }
            }
            Pacer::Timerfd { timer, margin } => {
                let now = now_nanos();
                let spin_nanos = margin.nanos();
                if wake_nanos > now + spin_nanos {
                    let armed = wake_nanos - spin_nanos;
                    timer.sleep(armed - now)?;
                    margin.observe(armed, now_nanos());
                }
                while now_nanos() < wake_nanos {
                    std::hint::spin_loop();
                }
            }
        }
        Ok(())
    }
}

/// CPU time the calling thread has used (user and system), in nanoseconds.
pub fn thread_cpu_nanos() -> u64 {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec that outlives the call.
    if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) } != 0 {
        return 0;
    }
    time.tv_sec as u64 * 1_000_000_000 + time.tv_nsec as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wake_waits_for_the_next_record_but_no_less_than_the_minimum_interval() {
        // Records 20 us apart, wakes at least 100 us apart: the wake moves out to 100 us.
        assert_eq!(next_wake_nanos(1_020_000, 1_000_000, 100_000), 1_100_000);
        // A record due after the interval sets the wake itself.
        assert_eq!(next_wake_nanos(5_000_000, 1_000_000, 100_000), 5_000_000);
        // No minimum: each record's own instant.
        assert_eq!(next_wake_nanos(1_020_000, 1_000_000, 0), 1_020_000);
    }

    #[test]
    fn the_spin_margin_follows_the_overshoot_within_its_bounds() {
        let mut margin = SpinMargin::default();
        assert_eq!(margin.nanos(), SPIN_MARGIN_INITIAL_NANOS);
        for _ in 0..200 {
            margin.observe(1_000_000, 1_003_000);
        }
        // Settles near twice the 3 us overshoot.
        assert!((5_000..=7_000).contains(&margin.nanos()), "{margin:?}");
        for _ in 0..200 {
            margin.observe(1_000_000, 1_000_000);
        }
        assert_eq!(margin.nanos(), SPIN_MARGIN_MIN_NANOS);
        for _ in 0..200 {
            margin.observe(1_000_000, 9_000_000);
        }
        assert_eq!(margin.nanos(), SPIN_MARGIN_MAX_NANOS);
        // A clock that reads earlier than the armed instant counts as no overshoot.
        margin.observe(2_000_000, 1_000_000);
    }

    #[test]
    fn each_pacer_returns_no_sooner_than_the_instant() {
        for kind in [PacerKind::Sleep, PacerKind::Timerfd] {
            let mut pacer = Pacer::new(kind).expect("a pacer");
            for gap in [0, 5_000, 300_000] {
                let wake = now_nanos() + gap;
                pacer.wait_until(wake).expect("wait");
                assert!(now_nanos() >= wake, "{kind:?} woke early");
            }
        }
    }

    #[test]
    fn thread_cpu_time_grows_with_work() {
        let before = thread_cpu_nanos();
        let mut sum = 0u64;
        for index in 0..2_000_000u64 {
            sum = sum.wrapping_add(std::hint::black_box(index));
        }
        std::hint::black_box(sum);
        assert!(thread_cpu_nanos() > before);
    }
}
