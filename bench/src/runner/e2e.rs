//! The `e2e` workload: open-loop producers send at a fixed target rate while consumers tail the
//! topic; measures end-to-end latency from each record's intended send instant to its receipt
//! by a consumer, which corrects for coordinated omission (a producer that falls behind its
//! schedule does not hide the delay), and whether the target rate was held.
//!
//! Each record value starts with two timestamps from the harness's shared monotonic clock
//! (`stats::now_nanos`): the intended send instant and the actual one. Producers and
//! consumers live in this one process, so the clocks agree by construction.
//!
//! A target given as a percentage of the maximum is first turned into a rate by a calibration
//! run of this same workload in closed loop: producers send as fast as the client accepts while
//! the consumers tail, and the maximum is the rate at which records reached the consumers. The
//! maximum of an end-to-end pipeline is what producers and consumers sustain together on the
//! same load cores; a produce-only maximum (consumers idle) is a rate the pipeline cannot hold
//! when both share a core, and half of it measured queueing, not latency.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::consume::{consumer_settings, partitions_of};
use super::pacer::{next_wake_nanos, thread_cpu_nanos, Pacer, PacerKind};
use super::produce::{counting_callback, producer_settings};
use super::StickyPartitions;
use super::{join_all, new_meter, spawn_pinned, tighten_timer_slack, topic_of};
use super::{EndToEndDetails, LatencyKind, PacingLoad, Progress, RunError, RunOutcome};
use crate::constants::{DRAIN_TIMEOUT_MS, E2E_TIMESTAMP_BYTES, POLL_WAIT_MS};
use crate::driver::Driver;
use crate::driver::{ConsumerDriver, DriverError, ProducerDriver, SendMark};
use crate::placement::Placement;
use crate::stats::{new_histogram, now_nanos, per_second, record_nanos};
use crate::stats::{LatencySummary, Meter};
use crate::workload::{RateTarget, Stop, Workload};

/// Records whose achieved send rate is at least this share of the target count as "held".
const RATE_HELD_SHARE: f64 = 0.99;
/// Producers start this long after set-up, so every thread is running at the first instant.
const SCHEDULE_START_DELAY_NANOS: u64 = 20_000_000;

pub fn run(
    driver: &dyn Driver,
    workload: &Workload,
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    let (target_rate, calibration) = match workload.rate.expect("e2e workloads have a rate") {
        RateTarget::RecordsPerSec(rate) => (rate, None),
        RateTarget::PercentOfMax(percent) => {
            let calibration = Workload {
                topic: format!("{}-calibration", workload.topic),
                stop: Stop::DurationMs(workload.calibration_ms),
                ..workload.clone()
            };
            let topic = topic_of(&calibration);
            driver.create_topic(&topic)?;
            let result = run_paced(
                driver,
                &calibration,
                &topic,
                Pace::ClosedLoop,
                placement,
                progress,
            );
            let _ = driver.delete_topic(&topic);
            let outcome = result?;
            if outcome.errors > 0 {
                return Err(RunError::Calibration(format!(
                    "{} errors in the closed-loop calibration run; first: {}",
                    outcome.errors,
                    outcome.first_error.unwrap_or_default()
                )));
            }
            let max_rate = outcome.records_per_sec;
            (max_rate * percent / 100.0, Some((max_rate, percent)))
        }
    };
    // Steady state: long enough to write the bytes at this system's own rate.
    let stretched;
    let workload = match workload.steady_state_duration_ms(target_rate) {
        Some(duration_ms) => {
            stretched = Workload {
                stop: Stop::DurationMs(duration_ms),
                ..workload.clone()
            };
            &stretched
        }
        None => workload,
    };
    let topic = topic_of(workload);
    driver.create_topic(&topic)?;
    let result = run_paced(
        driver,
        workload,
        &topic,
        Pace::Open {
            records_per_sec: target_rate,
        },
        placement,
        progress,
    );
    let _ = driver.delete_topic(&topic);
    let mut outcome = result?;
    if let (Some(details), Some((max_rate, percent))) = (outcome.end_to_end.as_mut(), calibration) {
        details.calibration_max_records_per_sec = Some(max_rate);
        details.calibration_percent_of_max = Some(percent);
    }
    Ok(outcome)
}

/// What consumers share: counts and when to stop.
struct Tally {
    received: AtomicU64,
    /// Records sent in total, known once every producer finished; `u64::MAX` until then.
    expected: AtomicU64,
    /// Clock reading when the producers finished; 0 until then.
    producers_done_nanos: AtomicU64,
}

/// The measured window of the schedule: records intended in [from, until) count.
#[derive(Debug, Clone, Copy)]
struct Window {
    from_nanos: u64,
    until_nanos: u64,
}

/// How producers pace their sends.
#[derive(Debug, Clone, Copy)]
enum Pace {
    /// Open loop: record k is due at a fixed instant, whether or not earlier ones were sent.
    Open { records_per_sec: f64 },
    /// Closed loop, for calibration: each record is due when the previous send returned.
    ClosedLoop,
}

fn run_paced(
    driver: &dyn Driver,
    workload: &Workload,
    topic: &crate::driver::TopicSpec,
    pace: Pace,
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    let Stop::DurationMs(duration_ms) = workload.stop else {
        unreachable!("Workload::check refuses e2e runs without a duration");
    };
    let consumer_count = workload.consumers.min(workload.partitions);
    let settings = consumer_settings(workload);
    let mut consumers = Vec::new();
    for index in 0..consumer_count {
        let partitions = partitions_of(index, consumer_count, workload.partitions);
        consumers.push(driver.consumer(topic, &partitions, &settings)?);
    }
    let acknowledgements = new_meter();
    let mut producers = Vec::new();
    for _ in 0..workload.producers {
        producers.push(driver.producer(
            topic,
            &producer_settings(workload),
            counting_callback(Arc::clone(&acknowledgements)),
        )?);
    }
    let start_nanos = now_nanos() + SCHEDULE_START_DELAY_NANOS;
    let window = Window {
        from_nanos: start_nanos + workload.warmup_ms * 1_000_000,
        until_nanos: start_nanos + (workload.warmup_ms + duration_ms) * 1_000_000,
    };
    let corrected = new_meter();
    let uncorrected = new_meter();
    let tally = Arc::new(Tally {
        received: AtomicU64::new(0),
        expected: AtomicU64::new(u64::MAX),
        producers_done_nanos: AtomicU64::new(0),
    });
    let mut consumer_handles = Vec::new();
    for (index, consumer) in consumers.into_iter().enumerate() {
        let (corrected, uncorrected, tally) = (
            Arc::clone(&corrected),
            Arc::clone(&uncorrected),
            Arc::clone(&tally),
        );
        let name = format!("e2e-consume-{index}");
        // Consumers take the load cores after the producers', so that with few cores a
        // producer and a consumer do not start on the same one.
        let core_index = workload.producers as usize + index;
        let handle = spawn_pinned(name.clone(), placement, core_index, move || {
            tail(consumer, window, &corrected, &uncorrected, &tally)
        })?;
        consumer_handles.push((name, handle));
    }
    let producer_count = f64::from(workload.producers);
    let (interval_nanos, target_rate) = match pace {
        Pace::Open { records_per_sec } => (
            Some(1e9 * producer_count / records_per_sec),
            records_per_sec,
        ),
        // No schedule: the first record is due at the start, each later one when it is sent.
        Pace::ClosedLoop => (None, f64::INFINITY),
    };
    let mut producer_handles = Vec::new();
    for (index, producer) in producers.into_iter().enumerate() {
        let schedule = Schedule {
            // Producers are staggered so their sends interleave evenly.
            first_nanos: start_nanos
                + (interval_nanos.unwrap_or(0.0) * index as f64 / producer_count) as u64,
            interval_nanos,
            until_nanos: window.until_nanos,
        };
        let partitions = StickyPartitions::new(
            workload.partitions,
            index as u32,
            workload.batch_bytes,
            workload.message_bytes,
        );
        let message_bytes = workload.message_bytes;
        let pacing = Pacing {
            kind: workload.pacer,
            wake_interval_min_nanos: match workload.pacer {
                PacerKind::Sleep => 0,
                PacerKind::Timerfd => workload.pacer_wake_us * 1_000,
            },
        };
        let name = format!("e2e-produce-{index}");
        let handle = spawn_pinned(name.clone(), placement, index, move || {
            paced_send(
                producer,
                schedule,
                window,
                partitions,
                message_bytes,
                pacing,
            )
        })?;
        producer_handles.push((name, handle));
    }
    let driver_name = driver.kind().name();
    let target = match pace {
        Pace::Open { records_per_sec } => format!("target {records_per_sec:.0} records/s"),
        Pace::ClosedLoop => "calibrating (closed loop)".to_string(),
    };
    progress.follow(&producer_handles, |_| {
        format!(
            "e2e {driver_name}  {:.0} s  {target}  received {}",
            now_nanos().saturating_sub(start_nanos) as f64 / 1e9,
            tally.received.load(Ordering::Relaxed),
        )
    });
    let sent = join_all(producer_handles);
    // Consumers must be told to stop even when a producer failed.
    let sent_total: u64 = match &sent {
        Ok(results) => results
            .iter()
            .map(|result| result.as_ref().map_or(0, |paced| paced.sent))
            .sum(),
        Err(_) => 0,
    };
    tally
        .producers_done_nanos
        .store(now_nanos(), Ordering::Relaxed);
    tally.expected.store(sent_total, Ordering::Relaxed);
    progress.follow(&consumer_handles, |_| {
        format!(
            "e2e {driver_name}  draining  {}/{sent_total}",
            tally.received.load(Ordering::Relaxed)
        )
    });
    progress.finish();
    let consumed = join_all(consumer_handles);
    let paced: Vec<Paced> = sent?.into_iter().collect::<Result<_, _>>()?;
    for result in consumed? {
        result?;
    }
    let received = tally.received.load(Ordering::Relaxed);
    let mut outcome = RunOutcome::from_meter(
        driver.kind(),
        &corrected,
        window.from_nanos,
        LatencyKind::EndToEndCorrected,
    );
    outcome.errors += acknowledgements.errors();
    outcome.first_error = outcome.first_error.or(acknowledgements.first_error());
    let scheduled_first = paced.iter().map(|paced| paced.first_nanos).min();
    let last_send = paced.iter().map(|paced| paced.last_send_nanos).max();
    let achieved_send_rate = match (scheduled_first, last_send) {
        (Some(first), Some(last)) => per_second(sent_total, last.saturating_sub(first)),
        _ => 0.0,
    };
    let missing = sent_total.saturating_sub(received);
    let send_lag_max_nanos = paced.iter().map(|paced| paced.lag_max_nanos).max();
    let pacer_wakes: u64 = paced.iter().map(|paced| paced.wakes).sum();
    let load = PacingLoad {
        pacer: workload.pacer,
        pacer_wake_us: (workload.pacer == PacerKind::Timerfd).then_some(workload.pacer_wake_us),
        pacer_cpu_percent: paced
            .iter()
            .map(|paced| cpu_percent(paced.cpu_nanos, paced.wall_nanos))
            .sum(),
        producer_threads: workload.producers,
        pacer_wakes,
        records_per_wake: (pacer_wakes > 0).then(|| sent_total as f64 / pacer_wakes as f64),
    };
    if missing > 0 {
        outcome.notes.push(format!(
            "{missing} of {sent_total} records never arrived within {DRAIN_TIMEOUT_MS} ms"
        ));
    }
    outcome.end_to_end = Some(EndToEndDetails {
        target_records_per_sec: target_rate,
        achieved_send_records_per_sec: achieved_send_rate,
        received_records_per_sec: outcome.records_per_sec,
        rate_held: achieved_send_rate >= RATE_HELD_SHARE * target_rate && missing == 0,
        sent_records: sent_total,
        received_records: received,
        missing_records: missing,
        send_lag_max_us: send_lag_max_nanos.unwrap_or(0) as f64 / 1e3,
        latency_uncorrected_us: LatencySummary::of(&uncorrected.histogram()),
        produce_to_ack_us: LatencySummary::of(&acknowledgements.histogram()),
        calibration_max_records_per_sec: None,
        calibration_percent_of_max: None,
        load,
    });
    Ok(outcome)
}

/// One producer's schedule: in open loop record k is due at `first + k * interval`; without an
/// interval (closed loop) each record is due when it is sent and the run ends by the clock.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    first_nanos: u64,
    interval_nanos: Option<f64>,
    until_nanos: u64,
}

impl Schedule {
    /// When record `index` is due, given that the previous send ended at `now_nanos`.
    fn due_nanos(&self, index: u64, now_nanos: u64) -> u64 {
        match self.interval_nanos {
            Some(interval_nanos) => self.first_nanos + (index as f64 * interval_nanos) as u64,
            None => now_nanos.max(self.first_nanos),
        }
    }
}

/// What one paced producer did.
struct Paced {
    sent: u64,
    first_nanos: u64,
    last_send_nanos: u64,
    lag_max_nanos: u64,
    /// The thread's CPU time and its wall time, from its start to its last send.
    cpu_nanos: u64,
    wall_nanos: u64,
    /// Times it waited for a due instant.
    wakes: u64,
}

/// How a producer waits for due instants.
#[derive(Debug, Clone, Copy)]
struct Pacing {
    kind: PacerKind,
    /// Wakes are at least this far apart (records due in between are sent together).
    wake_interval_min_nanos: u64,
}

/// `cpu_nanos` over `wall_nanos`, in percent of one core.
fn cpu_percent(cpu_nanos: u64, wall_nanos: u64) -> f64 {
    if wall_nanos == 0 {
        return 0.0;
    }
    100.0 * cpu_nanos as f64 / wall_nanos as f64
}

/// Sends each record at its scheduled instant, or at once when behind (never skipping one).
/// Each wake sends every record due by then.
fn paced_send(
    mut producer: Box<dyn ProducerDriver>,
    schedule: Schedule,
    window: Window,
    mut partitions: StickyPartitions,
    message_bytes: usize,
    pacing: Pacing,
) -> Result<Paced, RunError> {
    tighten_timer_slack();
    let started_nanos = now_nanos();
    let started_cpu_nanos = thread_cpu_nanos();
    let mut pacer = Pacer::new(pacing.kind)?;
    let mut value = vec![0x6bu8; message_bytes];
    let mut sent = 0u64;
    let mut lag_max_nanos = 0u64;
    let mut last_send_nanos = schedule.first_nanos;
    let mut last_wake_nanos = 0u64;
    let mut wakes = 0u64;
    'schedule: loop {
        let now = now_nanos();
        let due = schedule.due_nanos(sent, now);
        if due >= schedule.until_nanos {
            break;
        }
        if now < due {
            producer.idle()?;
            let wake = next_wake_nanos(due, last_wake_nanos, pacing.wake_interval_min_nanos);
            pacer.wait_until(wake)?;
            last_wake_nanos = now_nanos();
            wakes += 1;
        }
        // Every record due by now, in one go.
        loop {
            let sent_nanos = now_nanos();
            let due = schedule.due_nanos(sent, sent_nanos);
            if due >= schedule.until_nanos {
                break 'schedule;
            }
            if due > sent_nanos {
                break;
            }
            lag_max_nanos = lag_max_nanos.max(sent_nanos - due);
            value[..8].copy_from_slice(&due.to_le_bytes());
            value[8..E2E_TIMESTAMP_BYTES].copy_from_slice(&sent_nanos.to_le_bytes());
            let mark = SendMark {
                sent_nanos,
                counted: (window.from_nanos..window.until_nanos).contains(&due),
            };
            producer.send(partitions.next_partition(), &value, mark)?;
            last_send_nanos = sent_nanos;
            sent += 1;
        }
    }
    let cpu_nanos = thread_cpu_nanos().saturating_sub(started_cpu_nanos);
    let wall_nanos = now_nanos().saturating_sub(started_nanos);
    producer.flush()?;
    Ok(Paced {
        sent,
        first_nanos: schedule.first_nanos,
        last_send_nanos,
        lag_max_nanos,
        cpu_nanos,
        wall_nanos,
        wakes,
    })
}

/// Reads until every sent record arrived, or the drain timeout passed after the producers
/// finished. Latencies of records scheduled inside `window` are recorded.
fn tail(
    mut consumer: Box<dyn ConsumerDriver>,
    window: Window,
    corrected: &Meter,
    uncorrected: &Meter,
    tally: &Tally,
) -> Result<(), DriverError> {
    let mut corrected_histogram = new_histogram();
    let mut uncorrected_histogram = new_histogram();
    let mut malformed = 0u64;
    let wait = Duration::from_millis(POLL_WAIT_MS);
    loop {
        if tally.received.load(Ordering::Relaxed) >= tally.expected.load(Ordering::Relaxed) {
            break;
        }
        let done_nanos = tally.producers_done_nanos.load(Ordering::Relaxed);
        if done_nanos != 0 && now_nanos() > done_nanos + DRAIN_TIMEOUT_MS * 1_000_000 {
            break;
        }
        let mut measured = 0u64;
        let mut measured_bytes = 0u64;
        let mut last_receipt_nanos = 0u64;
        let records = consumer.poll(wait, &mut |_partition, value| {
            let received_nanos = now_nanos();
            let (Some(due), Some(sent)) = (read_u64(value, 0), read_u64(value, 8)) else {
                malformed += 1;
                return;
            };
            if (window.from_nanos..window.until_nanos).contains(&due) {
                record_nanos(&mut corrected_histogram, received_nanos.saturating_sub(due));
                record_nanos(
                    &mut uncorrected_histogram,
                    received_nanos.saturating_sub(sent),
                );
                measured += 1;
                measured_bytes += value.len() as u64;
                last_receipt_nanos = received_nanos;
            }
        })?;
        if measured > 0 {
            corrected.count(measured, measured_bytes, Some(last_receipt_nanos), None);
        }
        tally.received.fetch_add(records as u64, Ordering::Relaxed);
    }
    corrected.merge_histogram(&corrected_histogram);
    uncorrected.merge_histogram(&uncorrected_histogram);
    if malformed > 0 {
        corrected.fail(&format!(
            "{malformed} records too short to hold e2e timestamps"
        ));
    }
    Ok(())
}

fn read_u64(value: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(value.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_spaces_records_by_the_interval() {
        let schedule = Schedule {
            first_nanos: 1_000,
            interval_nanos: Some(2.5),
            until_nanos: 2_000,
        };
        assert_eq!(schedule.due_nanos(0, 0), 1_000);
        assert_eq!(
            schedule.due_nanos(4, 5_000),
            1_010,
            "open loop ignores the clock"
        );
    }

    #[test]
    fn in_closed_loop_each_record_is_due_when_it_is_sent() {
        let schedule = Schedule {
            first_nanos: 1_000,
            interval_nanos: None,
            until_nanos: 2_000,
        };
        assert_eq!(schedule.due_nanos(0, 10), 1_000, "not before the start");
        assert_eq!(schedule.due_nanos(7, 1_500), 1_500);
    }

    #[test]
    fn cpu_is_a_percentage_of_the_wall_time_and_zero_without_one() {
        assert_eq!(cpu_percent(250, 1_000), 25.0);
        assert_eq!(cpu_percent(5, 0), 0.0);
    }

    #[test]
    fn timestamps_are_read_little_endian_and_short_values_are_refused() {
        let mut value = vec![0u8; 16];
        value[..8].copy_from_slice(&7u64.to_le_bytes());
        value[8..].copy_from_slice(&9u64.to_le_bytes());
        assert_eq!(read_u64(&value, 0), Some(7));
        assert_eq!(read_u64(&value, 8), Some(9));
        assert_eq!(read_u64(&value[..12], 8), None);
    }
}
