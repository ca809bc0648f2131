//! The consumer's prefetcher: a task on the client's I/O thread that keeps fetching the assigned
//! partitions ahead of the application, within `ConsumerConfig::prefetch_bytes_max`.
//!
//! One fetch request at a time covers every partition that is due; the broker holds it up to
//! `fetch_wait` when nothing is new. Each answer is cut at the last whole batch and queued as a
//! chunk tagged with the partition's epoch: a seek bumps the epoch, so answers to fetches sent
//! before the seek are dropped. Connection failures are retried after `fetch_backoff` (the next
//! call reconnects); the application only sees a delay. Errors it must act on (offset out of
//! range under `OffsetReset::Error`, an unknown topic, a corrupt batch, damage in the broker's
//! stored copy) are queued for `poll`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api::FetchResponse;
use spate_protocol::api::{FetchPartition, FetchPartitionResponse, FetchRequest, TopicPartitions};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::{BatchError, ErrorCode};
use tokio::task::JoinSet;

use crate::config::OffsetReset;
use crate::consumer::{Chunk, ConsumerShared, ConsumerState, PartitionState, TopicPartition};
use crate::error::Error;
use crate::network::routing::{group_by_route, recovery_for, route_to_leader};
use crate::network::{BrokerSlots, Network, Recovery, Route, TopicInfo};

/// How much longer than `fetch_backoff` to wait after an error the application was told about
/// (an unknown topic), so that a deleted topic does not flood `poll` with errors.
const REPORTED_ERROR_BACKOFF_FACTOR: u32 = 10;

/// One partition in a fetch request, with what it looked like when the request was built.
struct Target {
    key: TopicPartition,
    epoch: u64,
    fetch_offset: u64,
}

/// A fetch request to one broker and the partitions it asks for.
struct Planned {
    route: Route,
    targets: Vec<Target>,
    request: FetchRequest,
}

/// What a finished fetch brings back to the loop.
type Finished = (Route, Vec<Target>, Result<FetchResponse, Error>);

/// Runs until the consumer is dropped.
pub(crate) async fn run(shared: Arc<ConsumerShared>, network: Arc<Network>) {
    // The consumer's own connections, one per leader it fetches from: its long polls hold back
    // no one else's answers, and a leader with nothing new holds back no other leader's data.
    let slots = Arc::new(BrokerSlots::new());
    // One fetch in flight per broker; a partition is in at most one of them.
    let mut in_flight: JoinSet<Finished> = JoinSet::new();
    let mut busy: Vec<Route> = Vec::new();
    let mut fetching: HashSet<TopicPartition> = HashSet::new();
    loop {
        if shared.is_closed() {
            return;
        }
        let woken = shared.fetcher_wake.notified();
        let routing = routing_for(&shared, &network, &fetching).await;
        let (planned, wake_at) = plan(&shared, &routing, &busy, &fetching);
        for Planned {
            route,
            targets,
            request,
        } in planned
        {
            busy.push(route.clone());
            fetching.extend(targets.iter().map(|target| target.key.clone()));
            let network = network.clone();
            let slots = slots.clone();
            let fetch_wait = shared.config.fetch_wait;
            in_flight.spawn(async move {
                let result = network
                    .call_routed(&slots, &route, &request, "fetch", Some(fetch_wait))
                    .await;
                (route, targets, result)
            });
        }
        let finished = tokio::select! {
            _ = woken => None,
            _ = sleep_until(wake_at) => None,
            Some(joined) = in_flight.join_next(), if !in_flight.is_empty() => joined.ok(),
        };
        let Some((route, targets, result)) = finished else {
            continue;
        };
        busy.retain(|other| *other != route);
        for target in &targets {
            fetching.remove(&target.key);
        }
        match result {
            Ok(response) if response.error_code == ErrorCode::None => {
                shared.state().unreachable_since = None;
                let answers: Vec<(String, FetchPartitionResponse)> = response
                    .topics
                    .into_iter()
                    .flat_map(|topic| {
                        let name = topic.name;
                        topic
                            .partitions
                            .into_iter()
                            .map(move |answer| (name.clone(), answer))
                    })
                    .collect();
                absorb(&shared, &network, &targets, &answers);
            }
            Ok(response) => {
                let error = Error::broker("fetch", None, None, response.error_code, None);
                back_off_all(&shared, &network, &targets, error);
            }
            Err(error) => back_off_all(&shared, &network, &targets, error),
        }
    }
}

async fn sleep_until(wake_at: Option<Instant>) {
    match wake_at {
        Some(wake_at) => tokio::time::sleep_until(wake_at.into()).await,
        None => std::future::pending().await,
    }
}

/// Where each topic's partitions are fetched from: its metadata when the client knows the
/// cluster has several brokers (asked for again when stale), nothing for a single broker
/// (everything goes to the bootstrap connection, without metadata requests).
async fn routing_for(
    shared: &ConsumerShared,
    network: &Network,
    fetching: &HashSet<TopicPartition>,
) -> Routing {
    let directory = network.directory();
    if !directory.is_cluster() {
        return Routing {
            directory,
            topics: Vec::new(),
        };
    }
    let names: Vec<String> = {
        let state = shared.state();
        let mut names: Vec<String> = Vec::new();
        for (key, partition) in &state.partitions {
            if !partition.stopped && !fetching.contains(key) && !names.contains(&key.topic) {
                names.push(key.topic.clone());
            }
        }
        names
    };
    let mut topics = Vec::with_capacity(names.len());
    for name in names {
        // A topic whose metadata cannot be had is fetched through the bootstrap connection,
        // whose broker answers why (an unknown topic is reported from that answer).
        let info = network.topic_for_routing(&name).await.ok();
        topics.push((name, info));
    }
    Routing {
        directory: network.directory(),
        topics,
    }
}

/// What [`plan`] routes by.
struct Routing {
    directory: Arc<crate::network::BrokerDirectory>,
    topics: Vec<(String, Option<Arc<TopicInfo>>)>,
}

impl Routing {
    fn route_of(&self, key: &TopicPartition) -> Route {
        if !self.directory.is_cluster() {
            return Route::Bootstrap;
        }
        let info = self
            .topics
            .iter()
            .find(|(name, _)| *name == key.topic)
            .and_then(|(_, info)| info.as_ref());
        match info {
            Some(info) => route_to_leader(info.leader(key.partition), &self.directory),
            None => Route::Bootstrap,
        }
    }
}

/// Picks the partitions to fetch now (not in flight, not backing off, led by a broker with no
/// fetch in flight) and builds one request per leader, or says when to look again.
fn plan(
    shared: &ConsumerShared,
    routing: &Routing,
    busy: &[Route],
    fetching: &HashSet<TopicPartition>,
) -> (Vec<Planned>, Option<Instant>) {
    let config = &shared.config;
    let state = shared.state();
    let budget = config.prefetch_bytes_max.saturating_sub(state.queued_bytes);
    if budget == 0 {
        return (Vec::new(), None);
    }
    let now = Instant::now();
    let mut wake_at: Option<Instant> = None;
    let mut targets = Vec::new();
    for (key, partition) in &state.partitions {
        if partition.stopped || fetching.contains(key) {
            continue;
        }
        if let Some(until) = partition.backoff_until {
            if now < until {
                wake_at = Some(wake_at.map_or(until, |earliest| earliest.min(until)));
                continue;
            }
        }
        targets.push((
            routing.route_of(key),
            Target {
                key: key.clone(),
                epoch: partition.epoch,
                fetch_offset: partition.fetch_offset,
            },
        ));
    }
    drop(state);
    let (groups, no_leader) = group_by_route(targets, |(route, _)| route.clone());
    if !no_leader.is_empty() {
        // Nothing to send them to until metadata names a leader: look again after a pause.
        let until = now + config.fetch_backoff;
        let mut state = shared.state();
        for (_, target) in &no_leader {
            if let Some(partition) = state.partitions.get_mut(&target.key) {
                partition.backoff_until = Some(until);
            }
        }
        wake_at = Some(wake_at.map_or(until, |earliest| earliest.min(until)));
    }
    // Each broker's request may use the whole budget: answers above it are cut at whole
    // batches, and the budget is checked again before the next fetch.
    let max_bytes = budget.min(config.fetch_bytes_max);
    let partition_max_bytes = max_bytes.min(config.partition_fetch_bytes_max);
    let mut planned = Vec::new();
    for (route, group) in groups {
        if busy.contains(&route) {
            continue;
        }
        let targets: Vec<Target> = group.into_iter().map(|(_, target)| target).collect();
        let mut topics: Vec<TopicPartitions<FetchPartition>> = Vec::new();
        for target in &targets {
            let entry = FetchPartition {
                partition: target.key.partition,
                fetch_offset: target.fetch_offset,
                // Checked below u32::MAX by `ConsumerConfig::check`.
                partition_max_bytes: partition_max_bytes as u32,
            };
            match topics
                .iter_mut()
                .find(|topic| topic.name == target.key.topic)
            {
                Some(topic) => topic.partitions.push(entry),
                None => topics.push(TopicPartitions {
                    name: target.key.topic.clone(),
                    partitions: vec![entry],
                }),
            }
        }
        let request = FetchRequest {
            max_wait_ms: config.fetch_wait.as_millis() as u32,
            min_bytes: 1,
            max_bytes: max_bytes as u32,
            topics,
            isolation_level: config.isolation_level,
        };
        planned.push(Planned {
            route,
            targets,
            request,
        });
    }
    (planned, wake_at)
}

/// Applies a fetch response: queues new chunks, handles per-partition errors.
fn absorb(
    shared: &ConsumerShared,
    network: &Network,
    targets: &[Target],
    answers: &[(String, FetchPartitionResponse)],
) {
    let mut state = shared.state();
    let mut delivered = false;
    for (target, answer) in targets.iter().zip(answers_in_order(targets, answers)) {
        let Some(partition) = state.partitions.get(&target.key) else {
            continue; // unassigned meanwhile
        };
        if partition.epoch != target.epoch || partition.fetch_offset != target.fetch_offset {
            continue; // seeked meanwhile, or answered already
        }
        let Some(answer) = answer else {
            let error = Error::Protocol {
                operation: "fetch",
                source: spate_protocol::WireError::InvalidValue {
                    field: "fetch response (partition missing)",
                    value: i64::from(target.key.partition),
                },
            };
            report(&mut state, target, error, shared.config.fetch_backoff);
            continue;
        };
        if answer.error_code != ErrorCode::None {
            let error = Error::broker(
                "fetch",
                Some(&target.key.topic),
                Some(target.key.partition),
                answer.error_code,
                None,
            );
            if answer.error_code != ErrorCode::UnknownTopicOrPartition
                && recovery_for(&error, false) == Recovery::RefreshMetadata
            {
                // The leader moved: the next fetch of the partition goes where fresh metadata
                // says, after the partition's backoff.
                network.leaders_changed(&target.key.topic);
            }
        }
        delivered |= absorb_partition(shared, &mut state, target, answer);
    }
    drop(state);
    if delivered {
        shared.notify_data();
    }
}

/// Pairs each target with its answer by topic and partition (the broker answers in request
/// order, but a missing or extra entry must not shift the pairing).
fn answers_in_order<'a>(
    targets: &'a [Target],
    answers: &'a [(String, FetchPartitionResponse)],
) -> impl Iterator<Item = Option<&'a FetchPartitionResponse>> + 'a {
    let mut used = vec![false; answers.len()];
    targets.iter().map(move |target| {
        let index = answers
            .iter()
            .enumerate()
            .position(|(index, (topic, answer))| {
                !used[index]
                    && *topic == target.key.topic
                    && answer.partition == target.key.partition
            })?;
        used[index] = true;
        Some(&answers[index].1)
    })
}

/// Returns whether a chunk was queued.
fn absorb_partition(
    shared: &ConsumerShared,
    state: &mut ConsumerState,
    target: &Target,
    answer: &FetchPartitionResponse,
) -> bool {
    let config = &shared.config;
    match answer.error_code {
        ErrorCode::None => {}
        ErrorCode::OffsetOutOfRange => {
            let partition = state
                .partitions
                .get_mut(&target.key)
                .expect("checked by caller");
            let reset_to = match config.offset_reset {
                OffsetReset::Earliest => Some(answer.log_start_offset),
                OffsetReset::Latest => Some(answer.high_watermark),
                OffsetReset::Error => None,
            };
            match reset_to {
                Some(offset) => partition.reset(offset),
                None => {
                    partition.stopped = true;
                    let error = Error::OffsetOutOfRange {
                        topic: target.key.topic.clone(),
                        partition: target.key.partition,
                        offset: target.fetch_offset,
                        log_start_offset: answer.log_start_offset,
                        high_watermark: answer.high_watermark,
                    };
                    state.errors.push_back(error);
                    return true;
                }
            }
            return false;
        }
        ErrorCode::CorruptMessage => {
            // Corruption of what the broker stored, not of a request in transit: fetching the
            // same offset again fails the same way, so the application is told (once per streak)
            // and the partition waits longer between tries (an operator may skip the damage).
            let error = Error::CorruptStoredData {
                topic: target.key.topic.clone(),
                partition: target.key.partition,
                offset: target.fetch_offset,
            };
            let backoff = config.fetch_backoff * REPORTED_ERROR_BACKOFF_FACTOR;
            return report(state, target, error, backoff);
        }
        code => {
            let error = if code == ErrorCode::UnknownTopicOrPartition {
                Error::UnknownTopic {
                    topic: target.key.topic.clone(),
                }
            } else {
                Error::broker(
                    "fetch",
                    Some(&target.key.topic),
                    Some(target.key.partition),
                    code,
                    None,
                )
            };
            if !code.is_retriable() || code == ErrorCode::UnknownTopicOrPartition {
                let backoff = config.fetch_backoff * REPORTED_ERROR_BACKOFF_FACTOR;
                return report(state, target, error, backoff);
            }
            let partition = state
                .partitions
                .get_mut(&target.key)
                .expect("checked by caller");
            partition.backoff_until = Some(Instant::now() + config.fetch_backoff);
            return false;
        }
    }
    let partition = state
        .partitions
        .get_mut(&target.key)
        .expect("checked by caller");
    partition.high_watermark = Some(answer.high_watermark);
    partition.log_start_offset = Some(answer.log_start_offset);
    partition.last_stable_offset = Some(answer.last_stable_offset);
    partition.reported_error = false;
    let bytes = answer.records.to_bytes();
    if bytes.is_empty() {
        return false;
    }
    match whole_batches(&bytes, target.fetch_offset) {
        Ok(Some((length, next_offset))) => {
            partition.fetch_offset = next_offset;
            state.queued_bytes += length;
            state.queue.push_back(Chunk {
                key: target.key.clone(),
                epoch: target.epoch,
                bytes: bytes.slice(..length),
                start_offset: target.fetch_offset,
                next_offset,
                aborted: answer.aborted_transactions.clone(),
            });
            true
        }
        Ok(None) => false,
        Err(error) => {
            let error = Error::CorruptBatch {
                topic: target.key.topic.clone(),
                partition: target.key.partition,
                offset: target.fetch_offset,
                source: error,
            };
            report(state, target, error, config.fetch_backoff)
        }
    }
}

/// Queues `error` for `poll` once per streak of failures and backs the partition off.
/// Returns whether something was queued.
fn report(state: &mut ConsumerState, target: &Target, error: Error, backoff: Duration) -> bool {
    let Some(partition) = state.partitions.get_mut(&target.key) else {
        return false;
    };
    partition.backoff_until = Some(Instant::now() + backoff);
    if partition.reported_error {
        return false;
    }
    partition.reported_error = true;
    state.errors.push_back(error);
    true
}

/// After a failed request: every partition in it waits `fetch_backoff`. Connection failures
/// stay silent (the next attempt reconnects); others reach `poll`.
fn back_off_all(shared: &ConsumerShared, network: &Network, targets: &[Target], error: Error) {
    if recovery_for(&error, false) == Recovery::RefreshMetadata {
        // The broker may be gone: its partitions get new leaders.
        for target in targets {
            network.leaders_changed(&target.key.topic);
        }
    }
    let mut state = shared.state();
    let until = Instant::now() + shared.config.fetch_backoff;
    for target in targets {
        if let Some(partition) = state.partitions.get_mut(&target.key) {
            partition.backoff_until = Some(until);
        }
    }
    let unreachable = matches!(
        error,
        Error::Connect { .. } | Error::ConnectionLost { .. } | Error::Timeout { .. }
    );
    if unreachable {
        let reason = error.to_string();
        match &mut state.unreachable_since {
            Some((_, last)) => *last = reason,
            None => state.unreachable_since = Some((Instant::now(), reason)),
        }
    }
    let silent = unreachable || error.code().is_some_and(ErrorCode::is_retriable);
    if !silent {
        state.errors.push_back(error);
        drop(state);
        shared.notify_data();
    }
}

/// The length of the whole batches at the start of `bytes` and the offset after the last of
/// them; `None` if not even one batch is whole. Reads headers only: `poll` checks CRCs and
/// records on the application's thread.
fn whole_batches(bytes: &Bytes, fetch_offset: u64) -> Result<Option<(usize, u64)>, BatchError> {
    let mut consumed = 0;
    let mut next_offset = None;
    while bytes.len() - consumed >= BATCH_HEADER_BYTES {
        let header = BatchHeader::decode(&bytes[consumed..])?;
        header.check(BATCH_BYTES_MAX)?;
        let length = header.batch_length as usize;
        if consumed + length > bytes.len() {
            break;
        }
        consumed += length;
        next_offset = Some(header.next_offset());
    }
    match next_offset {
        None => Ok(None),
        // A batch that ends at or before the fetch offset would make the consumer fetch the
        // same bytes forever.
        Some(next) if next <= fetch_offset => Err(BatchError::OffsetOverflow {
            base_offset: fetch_offset,
            offset_count: 0,
        }),
        Some(next) => Ok(Some((consumed, next))),
    }
}

impl PartitionState {
    /// Moves both positions (after an offset reset) and drops what is in flight or queued.
    fn reset(&mut self, offset: u64) {
        self.position = offset;
        self.fetch_offset = offset;
        self.epoch += 1;
        self.backoff_until = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spate_protocol::batch::header::stamp;
    use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};

    fn batch(base_offset: u64, count: usize) -> BytesMut {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for _ in 0..count {
            builder.append(None, Some(b"v"), NO_HEADERS, 0).unwrap();
        }
        let mut bytes = builder.seal().unwrap();
        stamp(&mut bytes, base_offset, 0);
        bytes
    }

    #[test]
    fn a_trailing_partial_batch_is_left_for_the_next_fetch() {
        let first = batch(5, 3);
        let second = batch(8, 2);
        let mut bytes = BytesMut::new();
        bytes.extend_from_slice(&first);
        bytes.extend_from_slice(&second[..second.len() - 1]);
        let bytes = bytes.freeze();
        assert_eq!(whole_batches(&bytes, 5).unwrap(), Some((first.len(), 8)));
        let only_partial = bytes.slice(first.len()..);
        assert_eq!(whole_batches(&only_partial, 8).unwrap(), None);
    }

    #[test]
    fn a_batch_behind_the_fetch_offset_is_refused() {
        let bytes = batch(0, 2).freeze();
        assert!(whole_batches(&bytes, 2).is_err());
    }
}
