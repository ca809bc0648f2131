//! The `produce` workload: N producers send fixed-size records as fast as the system accepts
//! them (closed loop: each producer blocks only when its client buffer is full), for a
//! duration or a record count. Measures acknowledged throughput and produce-to-ack latency.
//!
//! Also used to pre-fill topics (`consume`) and to calibrate the maximum rate (`e2e`).
//!
//! With `inflight_records_max` a producer also waits, before each send, until fewer than that
//! many of its records are unacknowledged: 1 makes every record a round trip of its own (the
//! latency workload), whatever the driver.

use std::sync::{Arc, Condvar, Mutex};

use super::{join_all, megabytes_per_second, new_meter, spawn_pinned, topic_of};
use super::{LatencyKind, Progress, RunError, RunOutcome, StickyPartitions};
use crate::driver::SendMark;
use crate::driver::TopicSpec;
use crate::driver::{Acknowledgements, Driver, DriverError, ProducerDriver, ProducerSettings};
use crate::placement::Placement;
use crate::stats::{now_nanos, Meter};
use crate::workload::{Stop, Workload};

/// The producer settings a workload asks for.
pub fn producer_settings(workload: &Workload) -> ProducerSettings {
    ProducerSettings {
        batch_bytes: workload.batch_bytes,
        linger_us: workload.linger_us,
        acks: workload.acks,
        message_bytes: workload.message_bytes,
        buffer_bytes: workload.producer_buffer_bytes,
        inflight_requests_per_partition: workload.inflight_requests_per_partition,
    }
}

/// Runs the workload on a fresh topic, which is deleted afterwards.
pub fn run(
    driver: &dyn Driver,
    workload: &Workload,
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    let topic = topic_of(workload);
    driver.create_topic(&topic)?;
    let result = produce(driver, workload, &topic, placement, progress, "produce");
    let _ = driver.delete_topic(&topic);
    result.map(|produced| produced.outcome)
}

/// What a produce phase did, beyond its outcome: records sent per partition.
pub struct Produced {
    pub outcome: RunOutcome,
    pub sent_per_partition: Vec<u64>,
}

/// An acknowledgement callback that counts into `meter` the records marked as counted, each
/// with its own produce-to-ack latency: from its send instant to the instant the driver saw
/// its group's acknowledgement.
pub fn counting_callback(meter: Arc<Meter>) -> crate::driver::AcknowledgementCallback {
    window_callback(meter, None)
}

/// How many of one producer's records the driver has acknowledged or failed: the producer
/// thread waits on it to keep at most `inflight_records_max` outstanding.
#[derive(Default)]
pub struct Answered {
    records: Mutex<u64>,
    changed: Condvar,
}

impl Answered {
    fn add(&self, records: u64) {
        let mut answered = self
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *answered += records;
        self.changed.notify_all();
    }

    /// Blocks until at least `records` are answered.
    fn wait_for(&self, records: u64) {
        let mut answered = self
            .records
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        while *answered < records {
            answered = self
                .changed
                .wait(answered)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }
}

/// [`counting_callback`], also adding every answered record (counted or not, acknowledged or
/// failed) to `answered` when given.
fn window_callback(
    meter: Arc<Meter>,
    answered: Option<Arc<Answered>>,
) -> crate::driver::AcknowledgementCallback {
    Box::new(move |acknowledgements: Acknowledgements<'_>| {
        let acknowledged_nanos = acknowledgements.acknowledged_nanos;
        let mut records = 0u64;
        match &acknowledgements.outcome {
            Ok(()) => meter.count_each(
                acknowledged_nanos,
                acknowledgements.value_bytes as u64,
                acknowledgements
                    .marks
                    .inspect(|_| records += 1)
                    .filter(|mark| mark.counted)
                    .map(|mark| acknowledged_nanos.saturating_sub(mark.sent_nanos)),
            ),
            Err(error) => acknowledgements.marks.for_each(|_| {
                records += 1;
                meter.fail(error);
            }),
        }
        if let Some(answered) = &answered {
            answered.add(records);
        }
    })
}

/// Sends records on `topic` (which exists) as the workload says. `label` names the phase on
/// the progress line.
pub fn produce(
    driver: &dyn Driver,
    workload: &Workload,
    topic: &TopicSpec,
    placement: &Placement,
    progress: &mut Progress,
    label: &str,
) -> Result<Produced, RunError> {
    let settings = producer_settings(workload);
    let meter = new_meter();
    // Created here, on the main thread, whose affinity is the load cores: threads a client
    // library starts inherit it.
    let mut producers: Vec<WindowedProducer> = Vec::new();
    for _ in 0..workload.producers {
        let answered = workload
            .inflight_records_max
            .map(|_| Arc::new(Answered::default()));
        let callback = window_callback(Arc::clone(&meter), answered.clone());
        producers.push((driver.producer(topic, &settings, callback)?, answered));
    }
    let start_nanos = now_nanos();
    let measure_from = start_nanos + workload.warmup_ms * 1_000_000;
    let producer_count = u64::from(workload.producers);
    let mut handles = Vec::new();
    for (index, (producer, answered)) in producers.into_iter().enumerate() {
        let limit = match workload.stop {
            Stop::DurationMs(duration_ms) => {
                SendLimit::Until(measure_from + duration_ms * 1_000_000)
            }
            Stop::MessageCount(total) => SendLimit::Count(
                total / producer_count + u64::from((index as u64) < total % producer_count),
            ),
        };
        let job = ProducerJob {
            partitions: StickyPartitions::new(
                workload.partitions,
                index as u32,
                workload.batch_bytes,
                workload.message_bytes,
            ),
            partition_count: workload.partitions,
            message_bytes: workload.message_bytes,
            measure_from_nanos: measure_from,
            limit,
            window: workload
                .inflight_records_max
                .zip(answered)
                .map(|(records_max, answered)| RecordWindow {
                    records_max,
                    answered,
                }),
        };
        let name = format!("{label}-{index}");
        let handle = spawn_pinned(name.clone(), placement, index, move || job.run(producer))?;
        handles.push((name, handle));
    }
    let mut last_bytes = 0u64;
    let mut last_records = 0u64;
    let driver_name = driver.kind().name();
    progress.follow(&handles, |seconds| {
        let (bytes, records) = (meter.bytes(), meter.records());
        let line = format!(
            "{label} {driver_name}  {:.0} s  {}  {:.0} records/s  errors {}",
            (now_nanos() - start_nanos) as f64 / 1e9,
            megabytes_per_second((bytes - last_bytes) as f64 / seconds),
            (records - last_records) as f64 / seconds,
            meter.errors()
        );
        (last_bytes, last_records) = (bytes, records);
        line
    });
    progress.finish();
    let mut sent_per_partition = vec![0u64; workload.partitions as usize];
    for result in join_all(handles)? {
        let sent = result?;
        for (total, sent) in sent_per_partition.iter_mut().zip(sent) {
            *total += sent;
        }
    }
    let outcome = RunOutcome::from_meter(
        driver.kind(),
        &meter,
        measure_from,
        LatencyKind::ProduceToAck,
    );
    Ok(Produced {
        outcome,
        sent_per_partition,
    })
}

/// A producer and, with a record window, what its acknowledgements answered.
type WindowedProducer = (Box<dyn ProducerDriver>, Option<Arc<Answered>>);

/// When a producer stops.
#[derive(Debug, Clone, Copy)]
enum SendLimit {
    /// At this clock reading (`now_nanos`).
    Until(u64),
    /// After this many records.
    Count(u64),
}

/// One producer thread's work.
struct ProducerJob {
    partitions: StickyPartitions,
    partition_count: u32,
    message_bytes: usize,
    /// Records sent from this clock reading on count towards the measurement.
    measure_from_nanos: u64,
    limit: SendLimit,
    window: Option<RecordWindow>,
}

/// At most `records_max` records sent and not yet answered.
struct RecordWindow {
    records_max: u64,
    answered: Arc<Answered>,
}

impl ProducerJob {
    /// Sends until the limit, then waits for every acknowledgement. Returns records sent per
    /// partition.
    fn run(mut self, mut producer: Box<dyn ProducerDriver>) -> Result<Vec<u64>, DriverError> {
        // Not all one byte value: some storage layers compress or deduplicate.
        let value: Vec<u8> = (0..self.message_bytes)
            .map(|index| (index.wrapping_mul(31) ^ (index >> 8)) as u8)
            .collect();
        let mut sent = vec![0u64; self.partition_count as usize];
        let mut sent_total = 0u64;
        loop {
            if let SendLimit::Count(count) = self.limit {
                if sent_total >= count {
                    break;
                }
            }
            // Every record is timed; the same reading serves the stop and warm-up checks.
            let sent_nanos = now_nanos();
            if matches!(self.limit, SendLimit::Until(stop_nanos) if sent_nanos >= stop_nanos) {
                break;
            }
            // The window's wait comes before the clock reading that times the record, so a
            // round trip is timed from its own send, not from the previous one's.
            let sent_nanos = match &self.window {
                Some(window) if sent_total >= window.records_max => {
                    // Whatever the driver holds back must leave before the answer can come.
                    producer.idle()?;
                    window
                        .answered
                        .wait_for(sent_total + 1 - window.records_max);
                    now_nanos()
                }
                _ => sent_nanos,
            };
            let mark = SendMark {
                sent_nanos,
                counted: sent_nanos >= self.measure_from_nanos,
            };
            let partition = self.partitions.next_partition();
            producer.send(partition, &value, mark)?;
            sent[partition as usize] += 1;
            sent_total += 1;
        }
        producer.flush()?;
        Ok(sent)
    }
}
