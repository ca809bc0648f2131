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

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api::{FetchPartition, FetchPartitionResponse, FetchRequest, TopicPartitions};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::{BatchError, ErrorCode};

use crate::config::OffsetReset;
use crate::consumer::{Chunk, ConsumerShared, ConsumerState, PartitionState, TopicPartition};
use crate::error::Error;
use crate::network::{ConnectionSlot, Network};

/// How much longer than `fetch_backoff` to wait after an error the application was told about
/// (an unknown topic), so that a deleted topic does not flood `poll` with errors.
const REPORTED_ERROR_BACKOFF_FACTOR: u32 = 10;

/// One partition in a fetch request, with what it looked like when the request was built.
struct Target {
    key: TopicPartition,
    epoch: u64,
    fetch_offset: u64,
}

/// Runs until the consumer is dropped.
pub(crate) async fn run(shared: Arc<ConsumerShared>, network: Arc<Network>) {
    // The consumer's own connection: its long polls hold back no one else's answers.
    let slot = ConnectionSlot::new();
    loop {
        if shared.is_closed() {
            return;
        }
        let woken = shared.fetcher_wake.notified();
        let (targets, request, wake_at) = plan(&shared);
        let Some(request) = request else {
            match wake_at {
                Some(wake_at) => {
                    tokio::select! {
                        _ = woken => {}
                        _ = tokio::time::sleep_until(wake_at.into()) => {}
                    }
                }
                None => woken.await,
            }
            continue;
        };
        let fetch_wait = shared.config.fetch_wait;
        match network
            .call_in(&slot, &request, "fetch", Some(fetch_wait))
            .await
        {
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
                absorb(&shared, &targets, &answers);
            }
            Ok(response) => {
                let error = Error::broker("fetch", None, None, response.error_code, None);
                back_off_all(&shared, &targets, error);
            }
            Err(error) => back_off_all(&shared, &targets, error),
        }
    }
}

/// Picks the partitions to fetch now and builds the request, or says when to look again.
fn plan(shared: &ConsumerShared) -> (Vec<Target>, Option<FetchRequest>, Option<Instant>) {
    let config = &shared.config;
    let state = shared.state();
    let budget = config.prefetch_bytes_max.saturating_sub(state.queued_bytes);
    if budget == 0 {
        return (Vec::new(), None, None);
    }
    let now = Instant::now();
    let mut wake_at: Option<Instant> = None;
    let mut targets = Vec::new();
    for (key, partition) in &state.partitions {
        if partition.stopped {
            continue;
        }
        if let Some(until) = partition.backoff_until {
            if now < until {
                wake_at = Some(wake_at.map_or(until, |earliest| earliest.min(until)));
                continue;
            }
        }
        targets.push(Target {
            key: key.clone(),
            epoch: partition.epoch,
            fetch_offset: partition.fetch_offset,
        });
    }
    if targets.is_empty() {
        return (targets, None, wake_at);
    }
    let max_bytes = budget.min(config.fetch_bytes_max);
    let partition_max_bytes = max_bytes.min(config.partition_fetch_bytes_max);
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
    (targets, Some(request), wake_at)
}

/// Applies a fetch response: queues new chunks, handles per-partition errors.
fn absorb(
    shared: &ConsumerShared,
    targets: &[Target],
    answers: &[(String, FetchPartitionResponse)],
) {
    let mut state = shared.state();
    let mut delivered = false;
    for (target, answer) in targets.iter().zip(answers_in_order(targets, answers)) {
        let Some(partition) = state.partitions.get(&target.key) else {
            continue; // unassigned meanwhile
        };
        if partition.epoch != target.epoch {
            continue; // seeked meanwhile
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
fn back_off_all(shared: &ConsumerShared, targets: &[Target], error: Error) {
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
