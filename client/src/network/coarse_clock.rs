//! Cheap clock reads for per-record work on the send path: the kernel's coarse clocks
//! (`CLOCK_REALTIME_COARSE`, `CLOCK_MONOTONIC_COARSE`), which return the time of the last
//! scheduler tick from the vDSO without reading the hardware counter.
//!
//! Their granularity is one kernel tick (1 to 10 ms, 4 ms at the common `HZ=250`), so they suit
//! record timestamps in milliseconds and cache-age checks, not latency measurement or timers
//! (those keep `Instant`). Off Linux the precise std clocks stand in.

use std::time::Duration;

/// Milliseconds since the Unix epoch, to within one kernel tick; 0 if the clock reads before
/// the epoch.
pub(crate) fn unix_ms() -> i64 {
    let since_epoch = realtime();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A monotonic reading, to within one kernel tick, for comparing against other readings of
/// this function only.
pub(crate) fn monotonic() -> Duration {
    monotonic_reading()
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn realtime() -> Duration {
    timespec_duration(rustix::time::clock_gettime(
        rustix::time::ClockId::RealtimeCoarse,
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn monotonic_reading() -> Duration {
    timespec_duration(rustix::time::clock_gettime(
        rustix::time::ClockId::MonotonicCoarse,
    ))
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn timespec_duration(time: rustix::time::Timespec) -> Duration {
    // A clock before its epoch (only a realtime clock set back before 1970) reads as zero.
    let seconds = u64::try_from(time.tv_sec).unwrap_or(0);
    let nanoseconds = u32::try_from(time.tv_nsec).unwrap_or(0);
    Duration::new(seconds, nanoseconds)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn realtime() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn monotonic_reading() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    #[test]
    fn the_coarse_wall_clock_agrees_with_the_system_clock_within_a_tick() {
        let before_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        let coarse_ms = unix_ms();
        let after_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64;
        // The coarse clock lags by up to one tick (at most 10 ms at HZ=100); allow a margin
        // for a preempted test thread.
        assert!(
            coarse_ms <= after_ms && coarse_ms >= before_ms - 50,
            "coarse {coarse_ms} outside [{before_ms} - 50, {after_ms}]"
        );
    }

    #[test]
    fn the_coarse_monotonic_clock_never_goes_back() {
        let mut previous = monotonic();
        for _ in 0..1000 {
            let now = monotonic();
            assert!(now >= previous);
            previous = now;
        }
    }
}
