//! The producer's sender: a task on the client's I/O thread that turns ready batches into
//! produce requests, sends them (many in flight on one connection), and settles each batch:
//! delivered, retried after a backoff, or failed.
//!
//! It wakes when an application thread seals or opens a batch, when a request finishes, and
//! when the earliest linger or backoff ends. It exits once the producer is closing and every
//! accepted record is settled. Building batches is the accumulator's job; choosing partitions
//! is the application thread's.
//!
//! When a response arrives, its batches give back their in-flight slots and memory first and
//! the next request goes out; only then are the records' completions, callbacks and the
//! delivery handler run, so the broker is not left idle while the client tells the application.

use std::sync::Arc;
use std::time::Instant;

use spate_protocol::api::TopicPartitions;
use spate_protocol::api::{Acks, ProducePartition, ProduceRequest, ProduceResponse};
use spate_protocol::ErrorCode;

use crate::completion::Completer;
use crate::error::Error;
use crate::network::ConnectionSlot;
use crate::producer::accumulator::{retry_backoff, Deliveries, Outbound, RecordMetadata, SealWhen};
use crate::producer::delivery::DeliveredBatch;
use crate::producer::ProducerInner;

/// Runs until the producer is closed and idle.
pub(crate) async fn run(inner: Arc<ProducerInner>) {
    // The producer's own connection: its answers never wait behind a consumer's long poll.
    let slot = Arc::new(ConnectionSlot::new());
    loop {
        let now = Instant::now();
        let seal_when = if inner.is_closing() {
            SealWhen::Always
        } else if inner.memory.has_waiters() {
            SealWhen::Sendable
        } else {
            SealWhen::Lingered
        };
        let drained = inner.accumulator().drain(&inner.config, now, seal_when);
        for outbound in drained.expired {
            let error = outbound.batch.last_error.clone().map_or(
                Error::Timeout {
                    operation: "produce (delivery timeout)",
                    elapsed: inner.config.delivery_timeout,
                },
                |last| Error::RetriesExhausted {
                    attempts: outbound.batch.attempts,
                    last: Box::new(last),
                },
            );
            settle(&inner, outbound, Err(error), false);
        }
        for request in drained.requests {
            tokio::spawn(send_request(inner.clone(), slot.clone(), request));
        }
        if inner.is_closing() && inner.accumulator().is_idle() {
            return;
        }
        let woken = inner.wake.notified();
        match drained.wake_at {
            Some(wake_at) => {
                tokio::select! {
                    _ = woken => {}
                    _ = tokio::time::sleep_until(wake_at.into()) => {}
                }
            }
            None => woken.await,
        }
    }
}

/// Sends one produce request and settles each of its batches.
async fn send_request(
    inner: Arc<ProducerInner>,
    slot: Arc<ConnectionSlot>,
    batches: Vec<Outbound>,
) {
    let request = produce_request(&inner, &batches);
    let network = inner.client.network();
    let outcome = match network.connection(&slot).await {
        Err(error) => Err(error),
        Ok(connection) if inner.config.acks == Acks::None => connection
            .send_only(&request, "produce")
            .await
            .map(|()| None),
        Ok(connection) => connection
            .call(&request, "produce", Some(inner.config.produce_timeout))
            .await
            .map(Some),
    };
    // Every batch of the request either goes back to its queue for a retry or is finished here;
    // finished ones, failed or not, are told on one path so that a partition's records are told
    // in the order their batches were answered.
    let finished: Vec<(Outbound, Result<Option<u64>, Error>)> = match outcome {
        Err(error) => batches
            .into_iter()
            .filter_map(|outbound| retry_or_fail(&inner, outbound, error.clone()))
            .map(|(outbound, error)| (outbound, Err(error)))
            .collect(),
        Ok(None) => batches
            .into_iter()
            .map(|outbound| (outbound, Ok(None)))
            .collect(),
        Ok(Some(response)) => batches
            .into_iter()
            .filter_map(|outbound| match answer_for(&response, &outbound) {
                Ok(base_offset) => Some((outbound, Ok(Some(base_offset)))),
                Err(error) => retry_or_fail(&inner, outbound, error)
                    .map(|(outbound, error)| (outbound, Err(error))),
            })
            .collect(),
    };
    if finished.is_empty() {
        // Everything was requeued: the freed slots let the sender schedule the retries.
        inner.wake.notify_one();
        return;
    }
    release_then_deliver(&inner, finished).await;
}

/// Settles finished batches of one answered request (with their base offsets, `None` under
/// acks=none, or their error): frees their in-flight slots and memory and lets the sender put
/// the next request on the wire, then tells every record's sink. The batches count as
/// unfinished until then, so a flush still waits for their records to be told.
async fn release_then_deliver(
    inner: &ProducerInner,
    finished: Vec<(Outbound, Result<Option<u64>, Error>)>,
) {
    {
        let mut accumulator = inner.accumulator();
        for (outbound, _) in &finished {
            accumulator.release_slot(&outbound.topic, outbound.partition);
        }
    }
    for (outbound, _) in &finished {
        inner.memory.release(outbound.batch.memory_bytes);
    }
    inner.wake.notify_one();
    // The sender task (and the request it spawns) run on this thread: step aside so that they
    // go first. Every answered request yields here once before telling, and tokio's
    // current-thread runtime resumes yielded tasks in the order they yielded, so batches of
    // one partition are told in the order they were answered.
    tokio::task::yield_now().await;
    let mut generations = Vec::with_capacity(finished.len());
    for (outbound, result) in finished {
        generations.push(outbound.batch.generation);
        deliver(inner, outbound, result);
    }
    let flushes: Vec<Completer<()>> = {
        let mut accumulator = inner.accumulator();
        generations
            .into_iter()
            .flat_map(|generation| accumulator.finish_generation(generation))
            .collect()
    };
    for flush in flushes {
        flush.complete(Ok(()));
    }
}

fn produce_request(inner: &ProducerInner, batches: &[Outbound]) -> ProduceRequest {
    let mut topics: Vec<TopicPartitions<ProducePartition>> = Vec::new();
    for outbound in batches {
        let partition = ProducePartition {
            partition: outbound.partition,
            batches: vec![outbound.batch.bytes.clone()],
        };
        match topics
            .iter_mut()
            .find(|topic| *topic.name == *outbound.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(TopicPartitions {
                name: outbound.topic.to_string(),
                partitions: vec![partition],
            }),
        }
    }
    ProduceRequest {
        acks: inner.config.acks,
        // Checked to fit in `ProducerConfig::check`.
        timeout_ms: inner.config.produce_timeout.as_millis() as u32,
        topics,
    }
}

/// The base offset the broker gave this batch, or why it refused it.
fn answer_for(response: &ProduceResponse, outbound: &Outbound) -> Result<u64, Error> {
    let answer = response
        .topics
        .iter()
        .filter(|topic| *topic.name == *outbound.topic)
        .flat_map(|topic| topic.partitions.iter())
        .find(|answer| answer.partition == outbound.partition);
    let Some(answer) = answer else {
        return Err(Error::Protocol {
            operation: "produce",
            source: spate_protocol::WireError::InvalidValue {
                field: "produce response (partition missing)",
                value: i64::from(outbound.partition),
            },
        });
    };
    match answer.error_code {
        ErrorCode::None => Ok(answer.base_offset),
        code => Err(Error::broker(
            "produce",
            Some(&outbound.topic),
            Some(outbound.partition),
            code,
            None,
        )),
    }
}

/// Puts a failed in-flight batch back in its queue when the error is retriable and time is
/// left; otherwise returns it with the error to report (the caller settles it).
fn retry_or_fail(
    inner: &ProducerInner,
    mut outbound: Outbound,
    error: Error,
) -> Option<(Outbound, Error)> {
    if error.code() == Some(ErrorCode::UnknownTopicOrPartition) {
        // The topic may have been recreated or grown; look again before the next attempt.
        inner.client.network().invalidate(&outbound.topic);
    }
    let backoff = retry_backoff(&inner.config, outbound.batch.attempts);
    let next_attempt = Instant::now() + backoff;
    outbound.batch.attempts += 1;
    if error.is_retriable() && next_attempt < outbound.batch.deadline {
        outbound.batch.last_error = Some(error);
        inner.accumulator().requeue(outbound, next_attempt);
        return None;
    }
    let error = if error.is_retriable() {
        Error::RetriesExhausted {
            attempts: outbound.batch.attempts,
            last: Box::new(error),
        }
    } else {
        error
    };
    Some((outbound, error))
}

/// Finishes a batch: frees its memory, tells every record's sink, and completes flushes that
/// were waiting for it. `base_offset` is `None` under acks=none.
pub(crate) fn settle(
    inner: &ProducerInner,
    outbound: Outbound,
    result: Result<Option<u64>, Error>,
    was_inflight: bool,
) {
    if was_inflight {
        inner
            .accumulator()
            .release_slot(&outbound.topic, outbound.partition);
    }
    inner.memory.release(outbound.batch.memory_bytes);
    let generation = outbound.batch.generation;
    deliver(inner, outbound, result);
    // Only now: a flush must not complete before the records it covers were told.
    let flushes = inner.accumulator().finish_generation(generation);
    for flush in flushes {
        flush.complete(Ok(()));
    }
}

/// Tells each record of a finished batch how it went: the tagged ones in one call of the
/// delivery handler, the others one by one.
fn deliver(inner: &ProducerInner, outbound: Outbound, result: Result<Option<u64>, Error>) {
    let Outbound {
        topic,
        partition,
        batch,
    } = outbound;
    let Deliveries { notified, tagged } = batch.deliveries;
    if !tagged.is_empty() {
        let handler = inner
            .delivery_handler
            .as_ref()
            .expect("tagged records are only accepted by a producer with a handler");
        let report = DeliveredBatch {
            topic: &topic,
            partition,
            outcome: result.as_ref().copied(),
            records: &tagged,
        };
        // A handler that panicked once leaves nothing half-updated of ours; keep using it.
        handler
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .delivered(&report);
    }
    for (offset_delta, notify) in notified {
        let record_result = match &result {
            Ok(base_offset) => Ok(RecordMetadata {
                partition,
                offset: base_offset.map(|base| base + u64::from(offset_delta)),
            }),
            Err(error) => Err(error.clone()),
        };
        notify.complete(record_result);
    }
}
