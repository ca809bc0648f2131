//! Warnings about slow `fdatasync`s: rate-limited reports an operator can act on.
//!
//! Every acks=all answer and every record a consumer may read waits for an `fdatasync` of its
//! segment, so a disk whose syncs sometimes take hundreds of milliseconds shows up as latency
//! stalls that nothing else in the broker explains (the e2e benchmark found single syncs of
//! 314 ms on a VM disk). This file only decides when to report; `log` times each sync and
//! writes the warning. It does not change how or when the broker syncs.

/// A sync at least this long is reported.
pub const SLOW_SYNC_WARNING_US: u64 = 100_000;

/// At most one report per partition in this long; the next report counts the ones skipped.
pub const SLOW_SYNC_WARNING_INTERVAL_US: u64 = 10_000_000;

/// What to tell about slow syncs of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowSyncReport {
    pub took_us: u64,
    /// Slow syncs since the last report that were not reported on their own.
    pub skipped: u64,
    /// The slowest of those.
    pub skipped_slowest_us: u64,
}

/// One partition's slow-sync bookkeeping.
#[derive(Debug, Default)]
pub struct SlowSyncWarnings {
    last_report_us: Option<u64>,
    skipped: u64,
    skipped_slowest_us: u64,
}

impl SlowSyncWarnings {
    /// Records a sync that took `took_us` and ended at `now_us` (monotonic); returns a report
    /// when it was slow and the last report is old enough.
    pub fn observe(&mut self, took_us: u64, now_us: u64) -> Option<SlowSyncReport> {
        if took_us < SLOW_SYNC_WARNING_US {
            return None;
        }
        let due = self
            .last_report_us
            .is_none_or(|last| now_us.saturating_sub(last) >= SLOW_SYNC_WARNING_INTERVAL_US);
        if !due {
            self.skipped += 1;
            self.skipped_slowest_us = self.skipped_slowest_us.max(took_us);
            return None;
        }
        self.last_report_us = Some(now_us);
        let report = SlowSyncReport {
            took_us,
            skipped: self.skipped,
            skipped_slowest_us: self.skipped_slowest_us,
        };
        self.skipped = 0;
        self.skipped_slowest_us = 0;
        Some(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_syncs_are_never_reported() {
        let mut warnings = SlowSyncWarnings::default();
        assert_eq!(warnings.observe(SLOW_SYNC_WARNING_US - 1, 1_000), None);
        assert_eq!(warnings.observe(300, 50_000_000), None);
    }

    #[test]
    fn a_slow_sync_is_reported_and_later_ones_are_counted_until_the_interval_passed() {
        let mut warnings = SlowSyncWarnings::default();
        let first = warnings.observe(314_000, 1_000_000);
        assert_eq!(
            first,
            Some(SlowSyncReport {
                took_us: 314_000,
                skipped: 0,
                skipped_slowest_us: 0
            })
        );
        assert_eq!(warnings.observe(150_000, 2_000_000), None);
        assert_eq!(warnings.observe(400_000, 3_000_000), None);
        let next = warnings.observe(120_000, 1_000_000 + SLOW_SYNC_WARNING_INTERVAL_US);
        assert_eq!(
            next,
            Some(SlowSyncReport {
                took_us: 120_000,
                skipped: 2,
                skipped_slowest_us: 400_000
            })
        );
        assert_eq!(
            warnings.observe(100_000, 1_000_000 + 2 * SLOW_SYNC_WARNING_INTERVAL_US),
            Some(SlowSyncReport {
                took_us: 100_000,
                skipped: 0,
                skipped_slowest_us: 0
            }),
            "the count starts over after a report"
        );
    }
}
