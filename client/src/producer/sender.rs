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
//!
//! An idempotent producer's sender also gets the producer's identity (InitProducerId, on the
//! producer's own connection) before the first batch leaves and again for an epoch bump, and
//! reads the broker's sequence errors: an OutOfOrderSequence answer is retried while an earlier
//! batch of the partition is unresolved and fails the partition's unresolved batches otherwise;
//! DuplicateSequence fails the batch with a typed error (written, offsets unknown);
//! ProducerFenced fails the producer for good. A broker that cannot give an identity (no
//! InitProducerId: an older broker) fails the producer with that error rather than quietly
//! dropping to one request in flight without the guarantees: the application asked for them
//! (idempotence is the default) and can turn them off.

use std::sync::Arc;
use std::time::Instant;

use spate_protocol::api::{Acks, ProducePartition, ProduceRequest, ProduceResponse};
use spate_protocol::api::{InitProducerIdRequest, TopicPartitions};
use spate_protocol::batch::header::NO_PRODUCER_ID;
use spate_protocol::ErrorCode;

use crate::completion::Completer;
use crate::config::defaults;
use crate::error::Error;
use crate::network::routing::group_by_route;
use crate::network::{BrokerSlots, Recovery, Route, TopicInfo};
use crate::producer::accumulator::{retry_backoff, Deliveries, Finished, Outbound};
use crate::producer::accumulator::{RecordMetadata, SealWhen};
use crate::producer::delivery::DeliveredBatch;
use crate::producer::idempotence::ProducerIdentity;
use crate::producer::transaction_requests::add_partitions;
use crate::producer::ProducerInner;
use crate::timer::PreciseTimer;

/// Runs until the producer is closed and idle.
pub(crate) async fn run(inner: Arc<ProducerInner>) {
    // The producer's own connections (one per leader it sends to): its answers never wait
    // behind a consumer's long poll.
    let slots = Arc::new(BrokerSlots::new());
    // tokio's timer rounds deadlines up to whole milliseconds, longer than many lingers; without
    // a timerfd (descriptor limit reached) lingers are simply that coarse.
    let mut precise_timer = PreciseTimer::new().ok();
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
        let mut failed: Vec<Finished> = Vec::new();
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
            failed.push((outbound, Err(error)));
        }
        failed.extend(
            drained
                .failed
                .into_iter()
                .map(|(outbound, error)| (outbound, Err(error))),
        );
        if !failed.is_empty() {
            // Told on the same deferred path as answered batches, so that they take their turn
            // behind batches of their partitions answered before.
            tokio::spawn(release_then_deliver(inner.clone(), Vec::new(), failed));
        }
        if let Some(request) = drained.identity_request {
            tokio::spawn(obtain_identity(inner.clone(), slots.clone(), request));
        }
        if !drained.partitions_to_add.is_empty() {
            tokio::spawn(add_partitions(inner.clone(), drained.partitions_to_add));
        }
        for request in drained.requests {
            tokio::spawn(route_request(inner.clone(), slots.clone(), request));
        }
        if inner.is_closing() && inner.accumulator().is_idle() {
            return;
        }
        let woken = inner.wake.notified();
        match drained.wake_at {
            Some(wake_at) => {
                let sleep = async {
                    let precise = match precise_timer.as_mut() {
                        Some(timer) => timer.sleep_until(wake_at).await.is_ok(),
                        None => false,
                    };
                    if !precise {
                        tokio::time::sleep_until(wake_at.into()).await;
                    }
                };
                tokio::select! {
                    _ = woken => {}
                    _ = sleep => {}
                }
            }
            None => woken.await,
        }
    }
}

/// A topic's metadata for routing, or why there is none.
type TopicLookup = Result<Arc<TopicInfo>, Error>;

/// Splits one drained request by the leaders of its partitions and sends each part to its
/// leader. Batches of a partition with no leader now are settled like a refusal
/// (LeaderNotAvailable: retried after a metadata refresh).
async fn route_request(inner: Arc<ProducerInner>, slots: Arc<BrokerSlots>, batches: Vec<Outbound>) {
    let network = inner.client.network().clone();
    if !network.directory().is_cluster() {
        // A single broker: everything on the bootstrap connection, no metadata asked, as
        // before clustering (the producer's first record asked metadata, which named the
        // brokers).
        send_request(inner, slots, Route::Bootstrap, batches).await;
        return;
    }
    let mut names: Vec<Arc<str>> = Vec::new();
    for outbound in &batches {
        if !names.contains(&outbound.topic) {
            names.push(outbound.topic.clone());
        }
    }
    let mut topics: Vec<(Arc<str>, TopicLookup)> = Vec::new();
    for name in names {
        // Fresh cached metadata costs no I/O; stale leaders are asked for once for all.
        let info = network.topic_for_routing(&name).await;
        topics.push((name, info));
    }
    let directory = network.directory();
    let mut unsendable: Vec<(Outbound, Error)> = Vec::new();
    let mut routable = Vec::with_capacity(batches.len());
    for outbound in batches {
        let (_, info) = topics
            .iter()
            .find(|(topic, _)| *topic == outbound.topic)
            .expect("looked up above");
        match info {
            Ok(info) => {
                let route = crate::network::routing::route_to_leader(
                    info.leader(outbound.partition),
                    &directory,
                );
                routable.push((route, outbound));
            }
            // A broker whose metadata is behind may not know a topic created a moment ago:
            // retried like the broker's own UnknownTopicOrPartition answer.
            Err(Error::UnknownTopic { .. }) => {
                let error = Error::broker(
                    "produce",
                    Some(&outbound.topic),
                    Some(outbound.partition),
                    ErrorCode::UnknownTopicOrPartition,
                    None,
                );
                unsendable.push((outbound, error));
            }
            Err(error) => unsendable.push((outbound, error.clone())),
        }
    }
    let (groups, no_leader) = group_by_route(routable, |(route, _)| route.clone());
    for (_, outbound) in no_leader {
        let error = Error::broker(
            "produce",
            Some(&outbound.topic),
            Some(outbound.partition),
            ErrorCode::LeaderNotAvailable,
            None,
        );
        unsendable.push((outbound, error));
    }
    for (route, group) in groups {
        let batches = group.into_iter().map(|(_, outbound)| outbound).collect();
        tokio::spawn(send_request(inner.clone(), slots.clone(), route, batches));
    }
    if !unsendable.is_empty() {
        let mut answered: Vec<Finished> = Vec::new();
        let mut waiting: Vec<Finished> = Vec::new();
        for (outbound, error) in unsendable {
            // Never sent: the in-flight slot it took is given back as for an answered batch.
            dispose(&inner, outbound, error, &mut answered, &mut waiting);
        }
        settle(inner, answered, waiting).await;
    }
}

/// Sends one produce request to `route` and settles each of its batches.
async fn send_request(
    inner: Arc<ProducerInner>,
    slots: Arc<BrokerSlots>,
    route: Route,
    batches: Vec<Outbound>,
) {
    let request = produce_request(&inner, &batches);
    let network = inner.client.network();
    let outcome = match network.connection_for(&slots, &route, "produce").await {
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
    // The batches' bytes are shared with the request until it is gone; a batch waiting for a
    // restamp must own them again.
    drop(request);
    // Every batch of the request either goes back to its queue for a retry or is finished here;
    // finished ones, failed or not, are told on one path so that a partition's records are told
    // in the order their batches were sent.
    let mut answered: Vec<Finished> = Vec::with_capacity(batches.len());
    let mut waiting: Vec<Finished> = Vec::new();
    match outcome {
        Err(error) => {
            for outbound in batches {
                dispose(&inner, outbound, error.clone(), &mut answered, &mut waiting);
            }
        }
        Ok(None) => answered.extend(batches.into_iter().map(|outbound| (outbound, Ok(None)))),
        Ok(Some(response)) => {
            for outbound in batches {
                match answer_for(&response, &outbound) {
                    Ok(base_offset) => answered.push((outbound, Ok(Some(base_offset)))),
                    Err(error) => dispose(&inner, outbound, error, &mut answered, &mut waiting),
                }
            }
        }
    }
    settle(inner, answered, waiting).await;
}

/// Settles what one request (or its routing) finished.
async fn settle(inner: Arc<ProducerInner>, answered: Vec<Finished>, waiting: Vec<Finished>) {
    if answered.is_empty() && waiting.is_empty() {
        // Everything was requeued: the freed slots let the sender schedule the retries.
        inner.wake.notify_one();
        return;
    }
    release_then_deliver(inner, answered, waiting).await;
}

/// Decides what a batch refused by the broker (or lost with its connection) becomes: requeued
/// for a retry, or finished with an error in `answered`. A broken sequence may also finish
/// batches of the partition that wait in its queue (`waiting`).
fn dispose(
    inner: &ProducerInner,
    outbound: Outbound,
    error: Error,
    answered: &mut Vec<Finished>,
    waiting: &mut Vec<Finished>,
) {
    let mut accumulator = inner.accumulator();
    if let Some(fatal) = accumulator.fatal() {
        let fatal = fatal.clone();
        answered.push((outbound, Err(fatal)));
        return;
    }
    if let Some(stamp) = outbound.batch.stamp {
        match error.code() {
            Some(ErrorCode::ProducerFenced) => {
                let fenced = Error::ProducerFenced {
                    producer_id: stamp.identity.producer_id,
                    producer_epoch: stamp.identity.producer_epoch,
                };
                inner.fail_fatally(&mut accumulator, fenced.clone());
                answered.push((outbound, Err(fenced)));
                return;
            }
            Some(ErrorCode::DuplicateSequence) => {
                let duplicate = Error::DuplicateSequence {
                    topic: outbound.topic.to_string(),
                    partition: outbound.partition,
                };
                answered.push((outbound, Err(duplicate)));
                return;
            }
            Some(ErrorCode::OutOfOrderSequence) => {
                if accumulator.out_of_order_is_retriable(&outbound) {
                    // An earlier batch is missing: resend this one after it, without a pause
                    // of its own (the earlier one's retry sets the pace).
                    accumulator.requeue(outbound, None);
                    return;
                }
                let lost = Error::OutOfOrderSequence {
                    topic: outbound.topic.to_string(),
                    partition: outbound.partition,
                    producer_id: stamp.identity.producer_id,
                    producer_epoch: stamp.identity.producer_epoch,
                    base_sequence: stamp.base_sequence,
                };
                let later = accumulator.take_stamped_ready(&outbound.topic, outbound.partition);
                waiting.extend(later.into_iter().map(|later| (later, Err(lost.clone()))));
                answered.push((outbound, Err(lost)));
                return;
            }
            _ => {}
        }
    }
    drop(accumulator);
    if let Some((outbound, error)) = retry_or_fail(inner, outbound, error) {
        answered.push((outbound, Err(error)));
    }
}

/// Gets the producer's identity from the broker (a new one, or the next epoch of the one it
/// holds) on the producer's connection, retrying retriable failures with the producer's
/// backoff, and installs it. A failure that cannot pass fails the producer.
async fn obtain_identity(
    inner: Arc<ProducerInner>,
    slots: Arc<BrokerSlots>,
    mut request: InitProducerIdRequest,
) {
    let network = inner.client.network();
    let mut attempts = 0u32;
    loop {
        let error = match network
            .call_in(slots.bootstrap(), &request, "init producer id", None)
            .await
        {
            Ok(response) if response.error_code == ErrorCode::None => {
                if response.producer_id < 0 || response.producer_epoch < 0 {
                    let malformed = Error::Protocol {
                        operation: "init producer id",
                        source: spate_protocol::WireError::InvalidValue {
                            field: "producer_id or producer_epoch (negative)",
                            value: response.producer_id.min(i64::from(response.producer_epoch)),
                        },
                    };
                    inner.fail_fatally(&mut inner.accumulator(), malformed);
                } else {
                    inner.accumulator().install_identity(ProducerIdentity {
                        producer_id: response.producer_id,
                        producer_epoch: response.producer_epoch,
                    });
                }
                inner.wake.notify_one();
                return;
            }
            Ok(response) => {
                Error::broker("init producer id", None, None, response.error_code, None)
            }
            Err(error) => error,
        };
        let bumping = request.producer_id != NO_PRODUCER_ID;
        if bumping && error.code() == Some(ErrorCode::InvalidProducerIdMapping) {
            // The broker does not know the id (its data directory was replaced): a new one.
            request = InitProducerIdRequest::default();
            continue;
        }
        if !error.is_retriable() {
            let error = match error.code() {
                Some(ErrorCode::ProducerFenced) => Error::ProducerFenced {
                    producer_id: request.producer_id,
                    producer_epoch: request.producer_epoch,
                },
                _ => error,
            };
            inner.fail_fatally(&mut inner.accumulator(), error);
            inner.wake.notify_one();
            return;
        }
        if inner.is_closing() && inner.accumulator().is_idle() {
            return;
        }
        tokio::time::sleep(retry_backoff(&inner.config, attempts)).await;
        attempts = attempts.saturating_add(1);
    }
}

/// Settles finished batches: `answered` ones of one answered request (with their base offsets,
/// `None` under acks=none, or their error) and `waiting` ones that were not in flight (failed
/// from their queue). Frees the answered batches' in-flight slots, then the memory of the
/// batches that may be told now (a partition's batches are told in send order, so an
/// idempotent batch answered before an earlier one waits for it) and lets the sender put the
/// next request on the wire, then tells every record's sink. The batches count as unfinished
/// until then, so a flush still waits for their records to be told.
async fn release_then_deliver(
    inner: Arc<ProducerInner>,
    answered: Vec<Finished>,
    waiting: Vec<Finished>,
) {
    let released_bytes = {
        let mut accumulator = inner.accumulator();
        for (outbound, _) in &answered {
            accumulator.release_slot(&outbound.topic, outbound.partition);
        }
        let mut finished = answered;
        finished.extend(waiting);
        accumulator.resolve(finished)
    };
    if released_bytes > 0 {
        inner.memory.release(released_bytes);
    }
    inner.wake.notify_one();
    // The sender task (and the request it spawns) run on this thread: step aside so that they
    // go first. Tasks that yield together do not resume in the order they yielded (tokio wakes
    // deferred tasks last in, first out), so what to tell is queued in order in the
    // accumulator, and the first task to resume tells everything queued so far.
    tokio::task::yield_now().await;
    let due = inner.accumulator().take_due();
    let mut generations = Vec::with_capacity(due.len());
    for (outbound, result) in due {
        generations.push(outbound.batch.generation);
        deliver(&inner, outbound, result);
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
    if inner.is_closing() {
        // The sender exits once nothing is unfinished: let it look again.
        inner.wake.notify_one();
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
        transactional_id: inner.config.transactional_id.clone(),
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
    let mut backoff = retry_backoff(&inner.config, outbound.batch.attempts);
    if error.code() == Some(ErrorCode::UnknownTopicOrPartition) {
        // The topic may have been recreated or grown; look again before the next attempt.
        inner.client.network().invalidate(&outbound.topic);
    } else if crate::network::routing::recovery_for(&error, false) == Recovery::RefreshMetadata {
        // The leader moved, or its broker is gone: the retry goes where fresh metadata says.
        // The batch keeps its stamp, so the new leader recognises a copy the old one already
        // replicated to it (answered with the original's offsets) and appends nothing twice.
        inner.client.network().leaders_changed(&outbound.topic);
        backoff = backoff.min(defaults::LEADER_CHANGE_BACKOFF_MAX);
    }
    let next_attempt = Instant::now() + backoff;
    outbound.batch.attempts += 1;
    if error.is_retriable() && next_attempt < outbound.batch.deadline {
        outbound.batch.last_error = Some(error);
        inner.accumulator().requeue(outbound, Some(next_attempt));
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
