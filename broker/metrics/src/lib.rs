//! Per-shard metrics. Every counter and histogram here is written by exactly one thread, the
//! shard that owns it, so an increment is a plain load and store on a cache line no other core
//! writes: no atomics, no locks, nothing shared on the hot path. The admin listener reads them
//! by asking each shard (a typed cross-shard call) for a [`Send`] snapshot, so reading never
//! races a write either.
//!
//! Two homes:
//! - state-owned counters live beside what they count (a partition's bytes in and out are
//!   fields of the shard's partition), so they vanish with it and need no label lookups;
//! - the rest (storage's disk writes and syncs, requests by API, connections, cross-shard
//!   calls) lives in one [`ShardMetrics`] per thread, reached through [`shard`], so layers that
//!   have no handle to the shard (the storage engine's writer) can count without one.
//!
//! Metrics can be turned off per thread ([`set_enabled`]): the paired benchmark runs the same
//! broker with them on and off to show what they cost. Off, every update is one predictable
//! branch on a thread-local flag.

use std::cell::Cell;
use std::time::Duration;

/// Upper bounds of the latency histograms' buckets, in microseconds: 10 us to 10 s in 1-2.5-5
/// steps, which covers a cached read (tens of us) to a stalled fdatasync (seconds) with about
/// the resolution Prometheus' `histogram_quantile` interpolates well across. A last bucket,
/// `+Inf`, takes the rest.
pub const LATENCY_BUCKET_BOUNDS_US: [u64; 19] = [
    10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000,
    500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BUCKET_BOUNDS_US.len() + 1;

/// The highest API key counted per protocol: native keys run to 37 and Kafka's to 92 today;
/// a key at or above it is counted under the last slot (`API_KEYS_COUNTED - 1`), never dropped.
pub const API_KEYS_COUNTED: usize = 128;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(true) };
    static SHARD: ShardMetrics = ShardMetrics::default();
}

/// Whether this thread's metrics are updated (on unless the broker was started without them).
#[inline]
pub fn enabled() -> bool {
    ENABLED.with(Cell::get)
}

/// Turns this thread's metrics on or off; a shard sets it once when it starts.
pub fn set_enabled(enabled: bool) {
    ENABLED.with(|flag| flag.set(enabled));
}

/// Runs `update` on this thread's metrics when they are enabled.
#[inline]
pub fn shard(update: impl FnOnce(&ShardMetrics)) {
    if enabled() {
        SHARD.with(update);
    }
}

/// This thread's metrics as plain numbers.
pub fn shard_snapshot() -> ShardMetricsSnapshot {
    SHARD.with(ShardMetrics::snapshot)
}

/// A monotonic count, written by one thread.
#[derive(Debug, Default)]
pub struct Counter(Cell<u64>);

impl Counter {
    #[inline]
    pub fn add(&self, amount: u64) {
        self.0.set(self.0.get().wrapping_add(amount));
    }

    #[inline]
    pub fn increment(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.get()
    }
}

/// [`Counter`]s behind the enabled flag, for state-owned counters (a partition's traffic) that
/// are not reached through [`shard`].
#[inline]
pub fn add(counter: &Counter, amount: u64) {
    if enabled() {
        counter.add(amount);
    }
}

/// A latency histogram with the fixed buckets of [`LATENCY_BUCKET_BOUNDS_US`], written by one
/// thread.
#[derive(Debug, Default)]
pub struct Histogram {
    /// Observations per bucket (not cumulative; the snapshot makes them so).
    counts: [Cell<u64>; BUCKETS],
    sum_us: Cell<u64>,
}

impl Histogram {
    #[inline]
    pub fn observe_us(&self, micros: u64) {
        let bucket = LATENCY_BUCKET_BOUNDS_US.partition_point(|bound| *bound < micros);
        let count = &self.counts[bucket];
        count.set(count.get() + 1);
        self.sum_us.set(self.sum_us.get().wrapping_add(micros));
    }

    #[inline]
    pub fn observe(&self, duration: Duration) {
        self.observe_us(u64::try_from(duration.as_micros()).unwrap_or(u64::MAX));
    }

    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut counts = [0; BUCKETS];
        for (count, cell) in counts.iter_mut().zip(&self.counts) {
            *count = cell.get();
        }
        HistogramSnapshot {
            counts,
            sum_us: self.sum_us.get(),
        }
    }
}

/// A histogram's counts at one moment; shards' snapshots add up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket, not cumulative; the last is `+Inf`.
    pub counts: [u64; BUCKETS],
    pub sum_us: u64,
}

impl HistogramSnapshot {
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }

    /// `(upper bound in seconds, observations at or below it)` for each finite bucket, as a
    /// Prometheus histogram lists them (cumulative); the `+Inf` bucket is [`Self::count`].
    pub fn cumulative_buckets_seconds(&self) -> Vec<(f64, u64)> {
        let mut total = 0;
        LATENCY_BUCKET_BOUNDS_US
            .iter()
            .zip(&self.counts)
            .map(|(bound, count)| {
                total += count;
                (*bound as f64 / 1e6, total)
            })
            .collect()
    }

    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (count, more) in self.counts.iter_mut().zip(&other.counts) {
            *count += more;
        }
        self.sum_us += other.sum_us;
    }
}

/// One API's requests on one protocol.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    /// Run and answered (what the answer says, an error code included, is the API's own).
    pub answered: Counter,
    /// Refused before running: undecodable, an unsupported version, refused by the bounds
    /// pre-check (the connection usually closes).
    pub refused: Counter,
    /// From the whole request's arrival to its answer being ready to write.
    pub latency: Histogram,
}

/// The listener protocols a request can arrive on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Native,
    Kafka,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Native, Protocol::Kafka];

    pub fn label(self) -> &'static str {
        match self {
            Protocol::Native => "native",
            Protocol::Kafka => "kafka",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What one shard thread counts outside the partitions (see the module documentation).
#[derive(Debug)]
pub struct ShardMetrics {
    /// Appends handed to the disk: each O_DIRECT write's time from submission to completion.
    pub disk_write_latency: Histogram,
    pub disk_writes: Counter,
    pub disk_written_bytes: Counter,
    /// Each fdatasync of a segment, from submission to completion.
    pub fsync_latency: Histogram,
    /// Syncs over the slow-sync threshold (the ones the log warns about).
    pub slow_fsyncs: Counter,
    /// Active segments closed and new ones begun.
    pub segment_rolls: Counter,
    /// Requests by protocol and API key.
    requests: [Vec<ApiMetrics>; 2],
    /// Connections accepted and ended, by protocol.
    connections_opened: [Counter; 2],
    connections_closed: [Counter; 2],
    /// Calls this shard sent to other shards through the cross-shard mesh, and ran for them.
    pub cross_shard_calls_sent: Counter,
    pub cross_shard_calls_run: Counter,
}

impl Default for ShardMetrics {
    fn default() -> Self {
        let apis = || {
            (0..API_KEYS_COUNTED)
                .map(|_| ApiMetrics::default())
                .collect()
        };
        ShardMetrics {
            disk_write_latency: Histogram::default(),
            disk_writes: Counter::default(),
            disk_written_bytes: Counter::default(),
            fsync_latency: Histogram::default(),
            slow_fsyncs: Counter::default(),
            segment_rolls: Counter::default(),
            requests: [apis(), apis()],
            connections_opened: Default::default(),
            connections_closed: Default::default(),
            cross_shard_calls_sent: Counter::default(),
            cross_shard_calls_run: Counter::default(),
        }
    }
}

impl ShardMetrics {
    /// The counters of API `key` on `protocol` (keys past the table share its last slot).
    pub fn api(&self, protocol: Protocol, key: i16) -> &ApiMetrics {
        let index = usize::try_from(key)
            .unwrap_or(API_KEYS_COUNTED - 1)
            .min(API_KEYS_COUNTED - 1);
        &self.requests[protocol.index()][index]
    }

    pub fn connection_opened(&self, protocol: Protocol) {
        self.connections_opened[protocol.index()].increment();
    }

    pub fn connection_closed(&self, protocol: Protocol) {
        self.connections_closed[protocol.index()].increment();
    }

    pub fn snapshot(&self) -> ShardMetricsSnapshot {
        let mut requests = Vec::new();
        for protocol in Protocol::ALL {
            for (key, api) in self.requests[protocol.index()].iter().enumerate() {
                let latency = api.latency.snapshot();
                if api.answered.get() == 0 && api.refused.get() == 0 && latency.count() == 0 {
                    continue;
                }
                requests.push(ApiSnapshot {
                    protocol,
                    key: key as i16,
                    answered: api.answered.get(),
                    refused: api.refused.get(),
                    latency,
                });
            }
        }
        let connections = Protocol::ALL
            .map(|protocol| ConnectionSnapshot {
                protocol,
                opened: self.connections_opened[protocol.index()].get(),
                closed: self.connections_closed[protocol.index()].get(),
            })
            .to_vec();
        ShardMetricsSnapshot {
            disk_write_latency: self.disk_write_latency.snapshot(),
            disk_writes: self.disk_writes.get(),
            disk_written_bytes: self.disk_written_bytes.get(),
            fsync_latency: self.fsync_latency.snapshot(),
            slow_fsyncs: self.slow_fsyncs.get(),
            segment_rolls: self.segment_rolls.get(),
            requests,
            connections,
            cross_shard_calls_sent: self.cross_shard_calls_sent.get(),
            cross_shard_calls_run: self.cross_shard_calls_run.get(),
        }
    }
}

/// [`ShardMetrics`] at one moment, as plain numbers that can cross threads.
#[derive(Debug, Clone, Default)]
pub struct ShardMetricsSnapshot {
    pub disk_write_latency: HistogramSnapshot,
    pub disk_writes: u64,
    pub disk_written_bytes: u64,
    pub fsync_latency: HistogramSnapshot,
    pub slow_fsyncs: u64,
    pub segment_rolls: u64,
    /// Only the APIs that were called.
    pub requests: Vec<ApiSnapshot>,
    pub connections: Vec<ConnectionSnapshot>,
    pub cross_shard_calls_sent: u64,
    pub cross_shard_calls_run: u64,
}

#[derive(Debug, Clone)]
pub struct ApiSnapshot {
    pub protocol: Protocol,
    pub key: i16,
    pub answered: u64,
    pub refused: u64,
    pub latency: HistogramSnapshot,
}

#[derive(Debug, Clone)]
pub struct ConnectionSnapshot {
    pub protocol: Protocol,
    pub opened: u64,
    pub closed: u64,
}

/// A partition's traffic, kept beside the partition by the shard that owns it.
#[derive(Debug, Default)]
pub struct PartitionTraffic {
    /// Batches, their bytes (as stored, headers included) and records appended by producers
    /// (not by replication or markers).
    pub batches_in: Counter,
    pub bytes_in: Counter,
    pub records_in: Counter,
    /// Bytes and records answered to fetches.
    pub bytes_out: Counter,
    pub records_out: Counter,
}

impl PartitionTraffic {
    pub fn snapshot(&self) -> PartitionTrafficSnapshot {
        PartitionTrafficSnapshot {
            batches_in: self.batches_in.get(),
            bytes_in: self.bytes_in.get(),
            records_in: self.records_in.get(),
            bytes_out: self.bytes_out.get(),
            records_out: self.records_out.get(),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PartitionTrafficSnapshot {
    pub batches_in: u64,
    pub bytes_in: u64,
    pub records_in: u64,
    pub bytes_out: u64,
    pub records_out: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_puts_each_observation_in_the_first_bucket_whose_bound_holds_it() {
        let histogram = Histogram::default();
        for micros in [0, 10, 11, 999, 1_000, 20_000_000] {
            histogram.observe_us(micros);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 6);
        assert_eq!(snapshot.counts[0], 2, "0 and 10 us are at or below 10 us");
        assert_eq!(snapshot.counts[1], 1, "11 us is in (10, 25]");
        assert_eq!(snapshot.counts[6], 2, "999 and 1000 us are in (500, 1000]");
        assert_eq!(
            snapshot.counts[BUCKETS - 1],
            1,
            "20 s is past the last bound"
        );
        assert_eq!(snapshot.sum_us, 10 + 11 + 999 + 1_000 + 20_000_000);
        let cumulative = snapshot.cumulative_buckets_seconds();
        assert_eq!(cumulative.len(), LATENCY_BUCKET_BOUNDS_US.len());
        assert_eq!(cumulative[0], (0.00001, 2));
        assert_eq!(cumulative.last().unwrap().1, 5, "+Inf adds the 20 s one");
    }

    #[test]
    fn disabled_metrics_count_nothing_and_enabled_ones_count_everything() {
        std::thread::spawn(|| {
            set_enabled(false);
            shard(|metrics| metrics.segment_rolls.increment());
            let traffic = PartitionTraffic::default();
            add(&traffic.bytes_in, 10);
            assert_eq!(shard_snapshot().segment_rolls, 0);
            assert_eq!(traffic.snapshot().bytes_in, 0);
            set_enabled(true);
            shard(|metrics| metrics.segment_rolls.increment());
            shard(|metrics| metrics.api(Protocol::Kafka, 0).answered.increment());
            shard(|metrics| metrics.api(Protocol::Kafka, 500).refused.increment());
            shard(|metrics| metrics.api(Protocol::Native, -3).refused.increment());
            add(&traffic.bytes_in, 10);
            let snapshot = shard_snapshot();
            assert_eq!(snapshot.segment_rolls, 1);
            assert_eq!(traffic.snapshot().bytes_in, 10);
            let keys: Vec<(Protocol, i16, u64, u64)> = snapshot
                .requests
                .iter()
                .map(|api| (api.protocol, api.key, api.answered, api.refused))
                .collect();
            let last = (API_KEYS_COUNTED - 1) as i16;
            assert_eq!(
                keys,
                vec![
                    (Protocol::Native, last, 0, 1),
                    (Protocol::Kafka, 0, 1, 0),
                    (Protocol::Kafka, last, 0, 1),
                ]
            );
        })
        .join()
        .unwrap();
    }
}
