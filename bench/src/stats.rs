//! Measurement primitives: the shared monotonic clock, latency histograms and their summaries,
//! and the counters that load-generator threads update while the progress line reads them.
//!
//! Every instant the harness compares comes from one process-wide monotonic clock
//! ([`now_nanos`]), so a timestamp a producer writes into a record can be compared with the
//! instant a consumer in the same process receives it. This file measures; it decides nothing
//! about when a run starts or stops.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::constants::{HISTOGRAM_NANOS_MAX, HISTOGRAM_SIGNIFICANT_DIGITS};

static EPOCH: OnceLock<Instant> = OnceLock::new();

/// The harness's clock epoch: the first call fixes it.
pub fn epoch() -> Instant {
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since [`epoch`], from the monotonic clock.
pub fn now_nanos() -> u64 {
    nanos_of(Instant::now())
}

/// `instant` as nanoseconds since [`epoch`] (0 for instants before it).
pub fn nanos_of(instant: Instant) -> u64 {
    u64::try_from(instant.saturating_duration_since(epoch()).as_nanos()).unwrap_or(u64::MAX)
}

/// A latency histogram in nanoseconds, with the bounds every histogram of the harness shares.
pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HISTOGRAM_NANOS_MAX, HISTOGRAM_SIGNIFICANT_DIGITS)
        .expect("constant histogram bounds are valid")
}

/// Records one latency, clamped into the histogram's range (a value above the top still
/// counts, at the top).
pub fn record_nanos(histogram: &mut Histogram<u64>, nanos: u64) {
    histogram.saturating_record(nanos.clamp(1, HISTOGRAM_NANOS_MAX));
}

/// Latency percentiles in microseconds: the `latency_us` object of the JSON report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub p9999: f64,
    pub max: f64,
    /// Extra fields (the required shape ends above).
    pub mean: f64,
    pub count: u64,
}

impl LatencySummary {
    /// `None` for an empty histogram: no percentile exists.
    pub fn of(histogram: &Histogram<u64>) -> Option<LatencySummary> {
        if histogram.is_empty() {
            return None;
        }
        let micros = |nanos: u64| nanos as f64 / 1_000.0;
        Some(LatencySummary {
            p50: micros(histogram.value_at_quantile(0.50)),
            p90: micros(histogram.value_at_quantile(0.90)),
            p99: micros(histogram.value_at_quantile(0.99)),
            p999: micros(histogram.value_at_quantile(0.999)),
            p9999: micros(histogram.value_at_quantile(0.9999)),
            max: micros(histogram.max()),
            mean: histogram.mean() / 1_000.0,
            count: histogram.len(),
        })
    }
}

/// Counters of one load-generator actor (or of all of them), safe to read while it runs.
#[derive(Debug)]
pub struct Meter {
    records: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Clock reading (`now_nanos`) of the latest counted event; 0 before the first.
    last_event_nanos: AtomicU64,
    histogram: Mutex<Histogram<u64>>,
    first_error: Mutex<Option<String>>,
}

impl Default for Meter {
    fn default() -> Self {
        Meter {
            records: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_event_nanos: AtomicU64::new(0),
            histogram: Mutex::new(new_histogram()),
            first_error: Mutex::new(None),
        }
    }
}

impl Meter {
    /// Counts `records` records of `bytes` bytes that completed at `event_nanos` (when known),
    /// with one latency sample per record (`latency_nanos`, or none).
    pub fn count(
        &self,
        records: u64,
        bytes: u64,
        event_nanos: Option<u64>,
        latency_nanos: Option<u64>,
    ) {
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        if let Some(event_nanos) = event_nanos {
            self.last_event_nanos
                .fetch_max(event_nanos, Ordering::Relaxed);
        }
        if let Some(latency_nanos) = latency_nanos {
            let mut histogram = self.lock_histogram();
            let _ = histogram.record_n(latency_nanos.clamp(1, HISTOGRAM_NANOS_MAX), records);
        }
    }

    /// Counts records that completed together at `event_nanos`, each with its own latency
    /// (`latencies_nanos` yields one per record), taking the histogram's lock once.
    pub fn count_each(
        &self,
        event_nanos: u64,
        bytes_per_record: u64,
        latencies_nanos: impl Iterator<Item = u64>,
    ) {
        let mut records = 0u64;
        {
            let mut histogram = self.lock_histogram();
            for latency_nanos in latencies_nanos {
                histogram.saturating_record(latency_nanos.clamp(1, HISTOGRAM_NANOS_MAX));
                records += 1;
            }
        }
        if records == 0 {
            return;
        }
        self.records.fetch_add(records, Ordering::Relaxed);
        self.bytes
            .fetch_add(records * bytes_per_record, Ordering::Relaxed);
        self.last_event_nanos
            .fetch_max(event_nanos, Ordering::Relaxed);
    }

    /// Counts a whole histogram of samples gathered elsewhere (a consumer's local histogram).
    pub fn merge_histogram(&self, samples: &Histogram<u64>) {
        let _ = self.lock_histogram().add(samples);
    }

    /// Counts one failed record, keeping the first error's text.
    pub fn fail(&self, error: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if first.is_none() {
            *first = Some(error.to_string());
        }
    }

    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn last_event_nanos(&self) -> u64 {
        self.last_event_nanos.load(Ordering::Relaxed)
    }

    pub fn first_error(&self) -> Option<String> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// A copy of the latency histogram so far.
    pub fn histogram(&self) -> Histogram<u64> {
        self.lock_histogram().clone()
    }

    fn lock_histogram(&self) -> std::sync::MutexGuard<'_, Histogram<u64>> {
        self.histogram
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Bytes (or records) per second over `nanos`; 0 for an empty window.
pub fn per_second(amount: u64, nanos: u64) -> f64 {
    if nanos == 0 {
        return 0.0;
    }
    amount as f64 * 1e9 / nanos as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_in_microseconds() {
        let mut histogram = new_histogram();
        for micros in 1..=1000u64 {
            record_nanos(&mut histogram, micros * 1_000);
        }
        let summary = LatencySummary::of(&histogram).unwrap();
        assert!((summary.p50 - 500.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.p99 - 990.0).abs() <= 1.0, "{summary:?}");
        assert!((summary.max - 1000.0).abs() <= 1.0, "{summary:?}");
        assert_eq!(summary.count, 1000);
    }

    #[test]
    fn empty_histogram_has_no_summary() {
        assert!(LatencySummary::of(&new_histogram()).is_none());
    }

    #[test]
    fn latencies_beyond_the_top_are_clamped_not_lost() {
        let mut histogram = new_histogram();
        record_nanos(&mut histogram, u64::MAX);
        record_nanos(&mut histogram, 0);
        assert_eq!(histogram.len(), 2);
    }

    #[test]
    fn meter_counts_records_bytes_and_latencies() {
        let meter = Meter::default();
        meter.count(3, 3000, Some(50), Some(2_000));
        meter.count(1, 1000, Some(40), None);
        meter.count(1, 1000, None, None);
        assert_eq!(meter.records(), 5);
        assert_eq!(meter.bytes(), 5000);
        assert_eq!(meter.last_event_nanos(), 50);
        assert_eq!(meter.histogram().len(), 3);
        meter.fail(&"broken pipe");
        meter.fail(&"second");
        assert_eq!(meter.errors(), 2);
        assert_eq!(meter.first_error().as_deref(), Some("broken pipe"));
    }

    #[test]
    fn meter_counts_each_record_of_a_group_with_its_own_latency() {
        let meter = Meter::default();
        meter.count_each(900, 1024, [100u64, 200, 300].into_iter());
        meter.count_each(800, 1024, std::iter::empty());
        assert_eq!(meter.records(), 3);
        assert_eq!(meter.bytes(), 3 * 1024);
        assert_eq!(
            meter.last_event_nanos(),
            900,
            "an empty group changes nothing"
        );
        let histogram = meter.histogram();
        assert_eq!(histogram.len(), 3);
        assert_eq!(histogram.min(), 100);
        assert_eq!(histogram.max(), 300);
    }

    #[test]
    fn clock_is_monotonic_from_its_epoch() {
        let first = now_nanos();
        let second = now_nanos();
        assert!(second >= first);
        assert_eq!(nanos_of(epoch()), 0);
    }

    #[test]
    fn rates_of_an_empty_window_are_zero() {
        assert_eq!(per_second(10, 0), 0.0);
        assert_eq!(per_second(5, 500_000_000), 10.0);
    }
}
