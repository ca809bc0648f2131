//! The producer's sender: a task on the client's I/O thread that turns ready batches into
//! produce requests, sends them (many in flight on one connection), and settles each batch:
//! delivered, retried after a backoff, or failed.
//!
//! It wakes when an application thread seals or opens a batch, when a request finishes, and
//! when the earliest linger or backoff ends. It exits once the producer is closing and every
//! accepted record is settled. Building batches is the accumulator's job; choosing partitions
//! is the application thread's.

use std::sync::Arc;
use std::time::Instant;

use spate_protocol::api::TopicPartitions;
use spate_protocol::api::{Acks, ProducePartition, ProduceRequest, ProduceResponse};
use spate_protocol::ErrorCode;

use crate::error::Error;
use crate::network::ConnectionSlot;
use crate::producer::accumulator::{retry_backoff, Outbound, RecordMetadata};
use crate::producer::ProducerInner;

/// Runs until the producer is closed and idle.
pub(crate) async fn run(inner: Arc<ProducerInner>) {
    // The producer's own connection: its answers never wait behind a consumer's long poll.
    let slot = Arc::new(ConnectionSlot::new());
    loop {
        let now = Instant::now();
        let seal_everything = inner.is_closing() || inner.memory.has_waiters();
        let drained = inner
            .accumulator()
            .drain(&inner.config, now, seal_everything);
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
    match outcome {
        Err(error) => {
            for outbound in batches {
                retry_or_fail(&inner, outbound, error.clone());
            }
        }
        Ok(None) => {
            for outbound in batches {
                settle(&inner, outbound, Ok(None), true);
            }
        }
        Ok(Some(response)) => {
            for outbound in batches {
                match answer_for(&response, &outbound) {
                    Ok(base_offset) => settle(&inner, outbound, Ok(Some(base_offset)), true),
                    Err(error) => retry_or_fail(&inner, outbound, error),
                }
            }
        }
    }
    inner.wake.notify_one();
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

/// Puts a retriable failure back in the queue (after a backoff) while the batch's delivery
/// deadline allows; fails the batch otherwise.
fn retry_or_fail(inner: &ProducerInner, mut outbound: Outbound, error: Error) {
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
        return;
    }
    let error = if error.is_retriable() {
        Error::RetriesExhausted {
            attempts: outbound.batch.attempts,
            last: Box::new(error),
        }
    } else {
        error
    };
    settle(inner, outbound, Err(error), true);
}

/// Finishes a batch: frees its memory, tells every record's sink, and completes flushes that
/// were waiting for it. `base_offset` is `None` under acks=none.
pub(crate) fn settle(
    inner: &ProducerInner,
    outbound: Outbound,
    result: Result<Option<u64>, Error>,
    was_inflight: bool,
) {
    let Outbound {
        topic,
        partition,
        batch,
    } = outbound;
    let flushes = inner
        .accumulator()
        .finish(&topic, partition, batch.generation, was_inflight);
    inner.memory.release(batch.memory_bytes);
    for (index, delivery) in batch.deliveries.into_iter().enumerate() {
        // The builder gives record `index` the offset delta `index`.
        let record_result = match &result {
            Ok(base_offset) => Ok(RecordMetadata {
                partition,
                offset: base_offset.map(|base| base + index as u64),
            }),
            Err(error) => Err(error.clone()),
        };
        delivery.complete(record_result);
    }
    for flush in flushes {
        flush.complete(Ok(()));
    }
}
