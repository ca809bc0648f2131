//! The `consume` workload: pre-fill a fresh topic (the workload's producers, for its count or
//! duration, no warm-up), then M consumers drain it from the earliest offset as fast as they
//! can. Measures drain throughput and the latency of each poll that returned records.
//!
//! Partitions are dealt to consumers round-robin (partition p to consumer p mod M); consumers
//! beyond the partition count would get nothing and are not started.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::produce::produce;
use super::{join_all, megabytes_per_second, new_meter, spawn_pinned, topic_of};
use super::{LatencyKind, Progress, RunError, RunOutcome};
use crate::constants::{DRAIN_TIMEOUT_MS, POLL_WAIT_MS};
use crate::driver::{ConsumerDriver, ConsumerSettings, Driver, DriverError, StartPosition};
use crate::placement::Placement;
use crate::stats::{new_histogram, now_nanos, record_nanos, Meter};
use crate::workload::Workload;

/// The consumer settings a workload asks for.
pub fn consumer_settings(workload: &Workload) -> ConsumerSettings {
    ConsumerSettings {
        fetch_bytes_max: workload.fetch_bytes_max,
        message_bytes: workload.message_bytes,
        start: StartPosition::Earliest,
    }
}

/// Partitions of consumer `index` among `consumers`.
pub fn partitions_of(index: u32, consumers: u32, partitions: u32) -> Vec<u32> {
    (0..partitions)
        .filter(|partition| partition % consumers == index)
        .collect()
}

pub fn run(
    driver: &dyn Driver,
    workload: &Workload,
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    let topic = topic_of(workload);
    driver.create_topic(&topic)?;
    let result = (|| {
        let prefill = Workload {
            warmup_ms: 0,
            ..workload.clone()
        };
        let produced = produce(driver, &prefill, &topic, placement, progress, "prefill")?;
        let mut outcome = drain(
            driver,
            workload,
            &topic,
            &produced.sent_per_partition,
            placement,
            progress,
        )?;
        if produced.outcome.errors > 0 {
            outcome.notes.push(format!(
                "pre-fill had {} failed records (first: {})",
                produced.outcome.errors,
                produced.outcome.first_error.unwrap_or_default()
            ));
        }
        Ok(outcome)
    })();
    let _ = driver.delete_topic(&topic);
    result
}

fn drain(
    driver: &dyn Driver,
    workload: &Workload,
    topic: &crate::driver::TopicSpec,
    sent_per_partition: &[u64],
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    let consumer_count = workload.consumers.min(workload.partitions);
    let settings = consumer_settings(workload);
    let meter = new_meter();
    let mut jobs = Vec::new();
    for index in 0..consumer_count {
        let partitions = partitions_of(index, consumer_count, workload.partitions);
        let expected: u64 = partitions
            .iter()
            .map(|&partition| sent_per_partition[partition as usize])
            .sum();
        let consumer = driver.consumer(topic, &partitions, &settings)?;
        jobs.push((index, consumer, expected));
    }
    let expected_total: u64 = sent_per_partition.iter().sum();
    let start_nanos = now_nanos();
    let mut handles = Vec::new();
    for (index, consumer, expected) in jobs {
        let meter = Arc::clone(&meter);
        let name = format!("consume-{index}");
        let handle = spawn_pinned(name.clone(), placement, index as usize, move || {
            drain_partitions(consumer, expected, &meter)
        })?;
        handles.push((name, handle));
    }
    let mut last_bytes = 0u64;
    let driver_name = driver.kind().name();
    progress.follow(&handles, |seconds| {
        let bytes = meter.bytes();
        let line = format!(
            "consume {driver_name}  {}/{expected_total} records  {}",
            meter.records(),
            megabytes_per_second((bytes - last_bytes) as f64 / seconds)
        );
        last_bytes = bytes;
        line
    });
    progress.finish();
    for result in join_all(handles)? {
        result?;
    }
    let mut outcome = RunOutcome::from_meter(driver.kind(), &meter, start_nanos, LatencyKind::Poll);
    let received = meter.records();
    if received < expected_total {
        outcome.notes.push(format!(
            "{} of {expected_total} records never arrived within {DRAIN_TIMEOUT_MS} ms",
            expected_total - received
        ));
        outcome.errors += expected_total - received;
    }
    if workload.consumers > consumer_count {
        outcome.notes.push(format!(
            "{} consumers had no partition and were not started",
            workload.consumers - consumer_count
        ));
    }
    Ok(outcome)
}

/// Polls until `expected` records arrived, or nothing arrived for the drain timeout.
fn drain_partitions(
    mut consumer: Box<dyn ConsumerDriver>,
    expected: u64,
    meter: &Meter,
) -> Result<(), DriverError> {
    let mut poll_latency = new_histogram();
    let mut received = 0u64;
    let mut last_progress = Instant::now();
    let wait = Duration::from_millis(POLL_WAIT_MS);
    while received < expected && last_progress.elapsed() < Duration::from_millis(DRAIN_TIMEOUT_MS) {
        let mut bytes = 0u64;
        let poll_started = Instant::now();
        let records = consumer.poll(wait, &mut |_partition, value| {
            bytes += value.len() as u64;
        })? as u64;
        if records == 0 {
            continue;
        }
        let now = Instant::now();
        record_nanos(
            &mut poll_latency,
            now.duration_since(poll_started).as_nanos() as u64,
        );
        meter.count(records, bytes, Some(crate::stats::nanos_of(now)), None);
        received += records;
        last_progress = now;
    }
    meter.merge_histogram(&poll_latency);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_are_dealt_round_robin() {
        assert_eq!(partitions_of(0, 2, 5), vec![0, 2, 4]);
        assert_eq!(partitions_of(1, 2, 5), vec![1, 3]);
        assert_eq!(partitions_of(0, 1, 3), vec![0, 1, 2]);
    }
}
