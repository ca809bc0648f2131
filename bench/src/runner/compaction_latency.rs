//! The `compaction-latency` workload: what a compaction pass costs the producers of its shard.
//!
//! On a broker of one shard (so both topics share the shard's core and disk queue):
//! 1. fill a topic with overwrites of a small key space (`cleanup.policy=delete` for now, so
//!    nothing compacts it yet), in segments of `segment_bytes`;
//! 2. probe: one acks=all record at a time to a second topic, every `probe_interval_us`, each
//!    timed from `send` to its acknowledgement, for `probe_ms` ("idle");
//! 3. switch the first topic to `cleanup.policy=compact`: the shard's compaction task starts a
//!    pass at its next check; probe the same way while the pass runs (the broker's log says
//!    when it starts and ends; only records sent in between count) ("compacting");
//! 4. probe again for `probe_ms` once it ended ("idle after": how much the two idle phases
//!    differ shows the run's noise).
//!
//! A probe waits for each acknowledgement before the next send, so a slow answer delays the
//! next probe instead of piling up (no coordinated omission to correct: nothing is scheduled
//! while one is outstanding). Figures from different runs are not compared, only the phases of
//! one run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;
use spate_client::{Acks, Client, ClientConfig, NewTopic, ProducerConfig, ProducerRecord};

use crate::driver::DriverError;
use crate::stats::{new_histogram, record_nanos, LatencySummary};

const DRIVER: &str = "spate";
/// The compacted topic and the probed one.
pub const LOG_TOPIC: &str = "compaction-latency-log";
pub const PROBE_TOPIC: &str = "compaction-latency-probe";
/// Broker log lines that bound a pass (`spate_cluster::shard::compaction`).
pub const PASS_STARTED_LINE: &str = "compacting partition";
pub const PASS_ENDED_LINE: &str = "partition compacted";
pub const PASS_FAILED_LINE: &str = "compaction pass failed";
/// Bytes of a probe record's value.
const PROBE_VALUE_BYTES: usize = 100;

/// What the workload does.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionLatencySettings {
    pub fill_bytes: u64,
    pub keys: u64,
    pub value_bytes: usize,
    pub segment_bytes: u64,
    pub probe_ms: u64,
    pub probe_interval_us: u64,
    /// Longest the workload waits for the pass to start, and then to end.
    pub pass_timeout_ms: u64,
}

/// One probe phase's produce-to-ack latency.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub name: &'static str,
    pub duration_ms: u64,
    pub latency_us: Option<LatencySummary>,
}

/// The run's figures.
#[derive(Debug, Clone, Serialize)]
pub struct CompactionLatencyOutcome {
    pub fill_seconds: f64,
    pub fill_bytes_per_sec: f64,
    pub phases: Vec<Phase>,
    /// The broker's line for the pass (segments, bytes before and after, how long).
    pub pass_log_line: Option<String>,
    pub pass_seconds: Option<f64>,
}

/// Where the workload reads whether the pass runs: the broker's recent log lines.
pub trait BrokerLog {
    fn recent(&self) -> String;
}

fn failed(operation: &'static str) -> impl Fn(spate_client::Error) -> DriverError {
    move |error| DriverError::Operation {
        driver: DRIVER,
        operation,
        message: error.to_string(),
    }
}

/// Runs the workload against the broker at `address`, whose log `log` reads.
pub fn run(
    address: std::net::SocketAddr,
    settings: &CompactionLatencySettings,
    log: &dyn BrokerLog,
) -> Result<CompactionLatencyOutcome, DriverError> {
    let client = Client::new(ClientConfig::new(address.to_string()).with_client_id("spate-bench"))
        .map_err(failed("start a client"))?;
    let admin = client.admin();
    let segment_bytes = settings.segment_bytes.to_string();
    admin
        .create_topic(
            NewTopic::new(LOG_TOPIC, 1)
                .with_config("cleanup.policy", "delete")
                .with_config("segment.bytes", segment_bytes.as_str()),
        )
        .wait()
        .map_err(failed("create the log topic"))?;
    admin
        .create_topic(NewTopic::new(PROBE_TOPIC, 1))
        .wait()
        .map_err(failed("create the probe topic"))?;

    eprintln!(
        "filling {LOG_TOPIC} with {} MiB of overwrites of {} keys ...",
        settings.fill_bytes >> 20,
        settings.keys
    );
    let (fill_seconds, filled_bytes) = fill(&client, settings)?;
    let probe = client
        .producer(ProducerConfig {
            acks: Acks::All,
            linger: Duration::ZERO,
            ..ProducerConfig::default()
        })
        .map_err(failed("start the probe producer"))?;
    let interval = Duration::from_micros(settings.probe_interval_us);
    let probe_for = Duration::from_millis(settings.probe_ms);
    let mut phases = Vec::new();

    eprintln!(
        "probing with compaction idle for {} ms ...",
        settings.probe_ms
    );
    phases.push(probe_phase("idle", &probe, interval, |started| {
        started.elapsed() >= probe_for
    })?);

    let before = log.recent();
    admin
        .alter_topic_config(LOG_TOPIC, &[("cleanup.policy", "compact")], &[])
        .wait()
        .map_err(failed("switch the log topic to compaction"))?;
    eprintln!("waiting for the compaction pass to start ...");
    let timeout = Duration::from_millis(settings.pass_timeout_ms);
    let waited = Instant::now();
    while !new_lines(&before, &log.recent()).contains(PASS_STARTED_LINE) {
        if waited.elapsed() > timeout {
            return Err(not_seen("the pass did not start", log));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("probing while the pass runs ...");
    let pass_started = Instant::now();
    let mut last_look = Instant::now();
    let mut ended = false;
    let compacting = probe_phase("compacting", &probe, interval, |_| {
        if last_look.elapsed() >= Duration::from_millis(20) {
            last_look = Instant::now();
            let recent = log.recent();
            let recent = new_lines(&before, &recent);
            ended = recent.contains(PASS_ENDED_LINE) || recent.contains(PASS_FAILED_LINE);
        }
        ended || pass_started.elapsed() > timeout
    })?;
    let pass_seconds = pass_started.elapsed().as_secs_f64();
    let recent = log.recent();
    let recent = new_lines(&before, &recent);
    let pass_log_line = recent
        .lines()
        .find(|line| line.contains(PASS_ENDED_LINE) || line.contains(PASS_FAILED_LINE))
        .map(str::to_string);
    if pass_log_line.is_none() {
        return Err(not_seen("the pass did not end in time", log));
    }
    phases.push(compacting);

    eprintln!(
        "probing with compaction idle again for {} ms ...",
        settings.probe_ms
    );
    phases.push(probe_phase("idle after", &probe, interval, |started| {
        started.elapsed() >= probe_for
    })?);
    Ok(CompactionLatencyOutcome {
        fill_seconds,
        fill_bytes_per_sec: filled_bytes as f64 / fill_seconds,
        phases,
        pass_log_line,
        pass_seconds: Some(pass_seconds),
    })
}

fn not_seen(what: &str, log: &dyn BrokerLog) -> DriverError {
    DriverError::Operation {
        driver: DRIVER,
        operation: "compaction pass",
        message: format!("{what}; the broker's last lines:\n{}", log.recent()),
    }
}

/// The lines of `now` after those it shares with `before` (the log keeps its last lines).
fn new_lines<'a>(before: &str, now: &'a str) -> &'a str {
    let last_before = before.lines().last();
    match last_before.and_then(|line| now.rfind(line).map(|at| at + line.len())) {
        Some(end) => &now[end..],
        None => now,
    }
}

/// Writes `fill_bytes` of values to the log topic, key `i % keys` for the i-th record; returns
/// the seconds it took and the bytes written.
fn fill(client: &Client, settings: &CompactionLatencySettings) -> Result<(f64, u64), DriverError> {
    let producer = client
        .producer(ProducerConfig {
            acks: Acks::All,
            ..ProducerConfig::default()
        })
        .map_err(failed("start the fill producer"))?;
    let value = vec![b'v'; settings.value_bytes];
    let records = settings.fill_bytes / settings.value_bytes.max(1) as u64;
    let refused = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    for index in 0..records {
        let key = format!("key-{:08}", index % settings.keys.max(1));
        let record = ProducerRecord::new(LOG_TOPIC, &value)
            .with_key(&key)
            .with_partition(0);
        let refused = refused.clone();
        producer
            .send_with_callback_blocking(record, move |result| {
                if result.is_err() {
                    refused.fetch_add(1, Ordering::Relaxed);
                }
            })
            .map_err(failed("send a fill record"))?;
    }
    producer.flush().wait().map_err(failed("flush the fill"))?;
    let refused = refused.load(Ordering::Relaxed);
    if refused > 0 {
        return Err(DriverError::Operation {
            driver: DRIVER,
            operation: "fill",
            message: format!("{refused} of {records} fill records failed"),
        });
    }
    Ok((
        started.elapsed().as_secs_f64(),
        records * settings.value_bytes as u64,
    ))
}

/// One record at a time to the probe topic, every `interval` (or as soon as the previous one
/// is acknowledged, if later), until `done(started)`.
fn probe_phase(
    name: &'static str,
    producer: &spate_client::Producer,
    interval: Duration,
    mut done: impl FnMut(Instant) -> bool,
) -> Result<Phase, DriverError> {
    let value = vec![b'p'; PROBE_VALUE_BYTES];
    let mut histogram = new_histogram();
    let started = Instant::now();
    let mut next = started;
    while !done(started) {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        }
        next = Instant::now() + interval;
        let sent = Instant::now();
        let record = ProducerRecord::new(PROBE_TOPIC, &value).with_partition(0);
        producer
            .send_blocking(record)
            .map_err(failed("send a probe"))?
            .wait()
            .map_err(failed("probe acknowledgement"))?;
        record_nanos(&mut histogram, sent.elapsed().as_nanos() as u64);
    }
    Ok(Phase {
        name,
        duration_ms: started.elapsed().as_millis() as u64,
        latency_us: LatencySummary::of(&histogram),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_lines_are_those_after_the_last_line_seen() {
        assert_eq!(new_lines("a\nb", "a\nb\nc\nd"), "\nc\nd");
        assert_eq!(new_lines("", "a"), "a");
        // The kept lines rolled past everything seen: all of them are new.
        assert_eq!(new_lines("a\nb", "x\ny"), "x\ny");
    }
}
