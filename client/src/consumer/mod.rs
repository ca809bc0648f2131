//! The consumer: reads assigned partitions from chosen start positions, prefetching in the
//! background, and hands records to the application zero-copy.
//!
//! State lives in one place (`ConsumerShared`): each assigned partition's position (the next
//! offset `poll` returns), fetch offset (the next offset the prefetcher asks for) and epoch (bumped
//! by every seek, so stale fetches are dropped), plus the queue of fetched chunks. The prefetcher
//! (`fetcher`) fills the queue on the I/O thread; `poll` drains it on the application's thread,
//! checks each batch (CRC, record archive) there, and advances positions.
//!
//! Consumer groups (a later issue) slot in above this: a group member calls [`Consumer::assign`]
//! and [`Consumer::unassign`] when partitions are handed to it or taken away, commits
//! [`Consumer::position`], and resumes from a committed offset with [`StartAt::Offset`]. Nothing
//! here assumes the assignment is fixed.

pub(crate) mod aborted;
pub(crate) mod fetcher;
pub mod records;

use std::collections::{BTreeMap, VecDeque};
use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api::{AbortedTransaction, IsolationLevel, OffsetSpec};

use crate::admin::list_offsets;
use crate::client::Client;
use crate::completion::Completion;
use crate::config::ConsumerConfig;
use crate::error::Error;
use crate::network::Network;
use records::{DecompressionBudget, Polled, PolledChunk};

/// A topic and one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

impl TopicPartition {
    /// `topic`/`partition`.
    pub fn new(topic: impl Into<String>, partition: u32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl std::fmt::Display for TopicPartition {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(formatter, "{}/{}", self.topic, self.partition)
    }
}

/// Where reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest record still kept.
    Earliest,
    /// The next record to be written (only new records are read).
    Latest,
    /// This offset (a committed position, say). Outside the log, `ConsumerConfig::offset_reset`
    /// decides.
    Offset(u64),
    /// The first record whose timestamp (ms since the epoch) is at or after this; the end of
    /// the log if there is none.
    Timestamp(i64),
}

/// Reads records from assigned partitions. Made with [`Client::consumer`].
///
/// ```no_run
/// use std::time::Duration;
/// use spate_client::{Client, ConsumerConfig, StartAt};
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let mut consumer = client.consumer(ConsumerConfig::default())?;
/// consumer.assign("orders", None, StartAt::Earliest).wait()?; // every partition
/// loop {
///     let polled = consumer.poll(Duration::from_secs(1))?;
///     for record in &polled {
///         println!("{} {}", record.offset(), String::from_utf8_lossy(record.value().unwrap_or_default()));
///     }
///     if polled.is_empty() {
///         break;
///     }
/// }
/// # Ok::<(), spate_client::Error>(())
/// ```
pub struct Consumer {
    client: Client,
    shared: Arc<ConsumerShared>,
}

pub(crate) struct ConsumerShared {
    pub(crate) config: ConsumerConfig,
    state: Mutex<ConsumerState>,
    /// Blocking pollers wait here; async pollers park their wakers in the state.
    data_ready: Condvar,
    pub(crate) fetcher_wake: tokio::sync::Notify,
    closed: AtomicBool,
}

pub(crate) struct ConsumerState {
    pub(crate) partitions: BTreeMap<TopicPartition, PartitionState>,
    pub(crate) queue: VecDeque<Chunk>,
    pub(crate) queued_bytes: usize,
    pub(crate) errors: VecDeque<Error>,
    /// Since when fetches have failed to reach the broker, and the last such failure; cleared
    /// by the next fetch answer. Such failures are retried silently; this lets a tool say so.
    pub(crate) unreachable_since: Option<(Instant, String)>,
    waiters: Vec<Waker>,
}

pub(crate) struct PartitionState {
    pub(crate) topic: Arc<str>,
    /// The next offset `poll` returns.
    pub(crate) position: u64,
    /// The next offset the prefetcher asks for (at or ahead of `position`).
    pub(crate) fetch_offset: u64,
    /// Bumped by every seek and reset; chunks and fetches of older epochs are dropped.
    pub(crate) epoch: u64,
    pub(crate) high_watermark: Option<u64>,
    pub(crate) log_start_offset: Option<u64>,
    /// The last stable offset last reported: below it every transaction is decided.
    pub(crate) last_stable_offset: Option<u64>,
    /// Fetching stopped until the application seeks (offset out of range, reset `Error`).
    pub(crate) stopped: bool,
    pub(crate) backoff_until: Option<Instant>,
    /// An error of the current failure streak was already queued for `poll`.
    pub(crate) reported_error: bool,
}

/// Fetched whole batches of one partition, waiting for `poll`.
pub(crate) struct Chunk {
    pub(crate) key: TopicPartition,
    pub(crate) epoch: u64,
    pub(crate) bytes: Bytes,
    /// The fetch offset of the request that returned it.
    pub(crate) start_offset: u64,
    /// The offset after its last batch.
    pub(crate) next_offset: u64,
    /// The aborted transactions the answer listed (read_committed; empty otherwise).
    pub(crate) aborted: Vec<AbortedTransaction>,
}

impl ConsumerShared {
    pub(crate) fn state(&self) -> MutexGuard<'_, ConsumerState> {
        // Every critical section keeps the state consistent before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Wakes pollers: data or an error arrived.
    pub(crate) fn notify_data(&self) {
        let waiters = std::mem::take(&mut self.state().waiters);
        self.data_ready.notify_all();
        waiters.into_iter().for_each(Waker::wake);
    }
}

impl ConsumerState {
    fn has_news(&self) -> bool {
        !self.queue.is_empty() || !self.errors.is_empty()
    }

    /// Drops queued chunks of `key` (after a seek or unassign).
    fn drop_chunks_of(&mut self, key: &TopicPartition) {
        let mut freed = 0;
        self.queue.retain(|chunk| {
            let keep = chunk.key != *key;
            if !keep {
                freed += chunk.bytes.len();
            }
            keep
        });
        self.queued_bytes -= freed;
    }
}

impl Consumer {
    pub(crate) fn new(client: Client, config: ConsumerConfig) -> Result<Self, Error> {
        config.check()?;
        let shared = Arc::new(ConsumerShared {
            config,
            state: Mutex::new(ConsumerState {
                partitions: BTreeMap::new(),
                queue: VecDeque::new(),
                queued_bytes: 0,
                errors: VecDeque::new(),
                unreachable_since: None,
                waiters: Vec::new(),
            }),
            data_ready: Condvar::new(),
            fetcher_wake: tokio::sync::Notify::new(),
            closed: AtomicBool::new(false),
        });
        client.spawn_detached(fetcher::run(shared.clone(), client.network().clone()));
        Ok(Self { client, shared })
    }

    /// The settings this consumer was made with.
    pub fn config(&self) -> &ConsumerConfig {
        &self.shared.config
    }

    /// Adds `partitions` of `topic` (every partition when `None`) to the assignment, reading
    /// from `start`. A partition already assigned moves to `start`. Completes once the start
    /// offsets are resolved and prefetching has begun.
    pub fn assign(
        &self,
        topic: &str,
        partitions: Option<&[u32]>,
        start: StartAt,
    ) -> Completion<()> {
        let network = self.client.network().clone();
        let shared = self.shared.clone();
        let topic = topic.to_string();
        let partitions = partitions.map(<[u32]>::to_vec);
        self.client.spawn("assign", async move {
            let info = network.topic(&topic).await?;
            let partition_count = info.partition_count();
            let partitions = partitions.unwrap_or_else(|| (0..partition_count).collect());
            if let Some(&partition) = partitions
                .iter()
                .find(|&&partition| partition >= partition_count)
            {
                return Err(Error::UnknownPartition {
                    topic,
                    partition,
                    partition_count,
                });
            }
            let isolation_level = shared.config.isolation_level;
            let offsets = resolve(&network, &topic, &partitions, start, isolation_level).await?;
            let name: Arc<str> = Arc::from(topic.as_str());
            {
                let mut state = shared.state();
                for (partition, offset) in partitions.iter().zip(offsets) {
                    let key = TopicPartition::new(topic.clone(), *partition);
                    let epoch = state.partitions.get(&key).map_or(0, |old| old.epoch + 1);
                    state.drop_chunks_of(&key);
                    state.partitions.insert(
                        key,
                        PartitionState {
                            topic: name.clone(),
                            position: offset,
                            fetch_offset: offset,
                            epoch,
                            high_watermark: None,
                            log_start_offset: None,
                            last_stable_offset: None,
                            stopped: false,
                            backoff_until: None,
                            reported_error: false,
                        },
                    );
                }
            }
            shared.fetcher_wake.notify_one();
            Ok(())
        })
    }

    /// Removes partitions from the assignment; their prefetched records are dropped.
    pub fn unassign(&self, topic: &str, partitions: &[u32]) {
        let mut state = self.shared.state();
        for partition in partitions {
            let key = TopicPartition::new(topic, *partition);
            state.partitions.remove(&key);
            state.drop_chunks_of(&key);
        }
    }

    /// The assigned partitions, in order.
    pub fn assignment(&self) -> Vec<TopicPartition> {
        self.shared.state().partitions.keys().cloned().collect()
    }

    /// Moves an assigned partition to `offset`: the next `poll` returns records from there.
    pub fn seek(&self, topic: &str, partition: u32, offset: u64) -> Result<(), Error> {
        let key = TopicPartition::new(topic, partition);
        {
            let mut state = self.shared.state();
            let Some(partition_state) = state.partitions.get_mut(&key) else {
                return Err(not_assigned(&key));
            };
            partition_state.position = offset;
            partition_state.fetch_offset = offset;
            partition_state.epoch += 1;
            partition_state.stopped = false;
            partition_state.backoff_until = None;
            partition_state.reported_error = false;
            state.drop_chunks_of(&key);
        }
        self.shared.fetcher_wake.notify_one();
        Ok(())
    }

    /// Moves an assigned partition to `start` (earliest, latest, an offset or a timestamp).
    pub fn seek_to(&self, topic: &str, partition: u32, start: StartAt) -> Completion<()> {
        let key = TopicPartition::new(topic, partition);
        if !self.shared.state().partitions.contains_key(&key) {
            return Completion::ready(Err(not_assigned(&key)));
        }
        let network = self.client.network().clone();
        let shared = self.shared.clone();
        self.client.spawn("seek", async move {
            let isolation_level = shared.config.isolation_level;
            let offsets = resolve(
                &network,
                &key.topic,
                &[key.partition],
                start,
                isolation_level,
            )
            .await?;
            let offset = offsets[0];
            {
                let mut state = shared.state();
                let Some(partition_state) = state.partitions.get_mut(&key) else {
                    return Err(not_assigned(&key));
                };
                partition_state.position = offset;
                partition_state.fetch_offset = offset;
                partition_state.epoch += 1;
                partition_state.stopped = false;
                partition_state.backoff_until = None;
                partition_state.reported_error = false;
                state.drop_chunks_of(&key);
            }
            shared.fetcher_wake.notify_one();
            Ok(())
        })
    }

    /// The next offset `poll` will return for an assigned partition.
    pub fn position(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = TopicPartition::new(topic, partition);
        self.shared
            .state()
            .partitions
            .get(&key)
            .map(|state| state.position)
    }

    /// While fetches cannot reach the broker (it is down, or the network is cut): since when,
    /// and the last failure. The consumer keeps retrying on its own; this is for telling a
    /// person. `None` once a fetch is answered again.
    pub fn connection_trouble(&self) -> Option<(Instant, String)> {
        self.shared.state().unreachable_since.clone()
    }

    /// Records between the position and the end the broker last reported: the high
    /// watermark, or under read_committed the last stable offset (what this consumer can
    /// read), as Kafka counts it; `None` before the first fetch answer.
    pub fn lag(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = TopicPartition::new(topic, partition);
        let state = self.shared.state();
        let partition = state.partitions.get(&key)?;
        let end = match self.shared.config.isolation_level {
            IsolationLevel::ReadUncommitted => partition.high_watermark?,
            IsolationLevel::ReadCommitted => partition.last_stable_offset?,
        };
        Some(end.saturating_sub(partition.position))
    }

    /// The last stable offset last reported for an assigned partition: below it every
    /// transaction is committed or aborted, and a read_committed consumer reads no further.
    pub fn last_stable_offset(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = TopicPartition::new(topic, partition);
        self.shared.state().partitions.get(&key)?.last_stable_offset
    }

    /// The high watermark last reported for an assigned partition.
    pub fn high_watermark(&self, topic: &str, partition: u32) -> Option<u64> {
        let key = TopicPartition::new(topic, partition);
        self.shared.state().partitions.get(&key)?.high_watermark
    }

    /// Waits up to `timeout` for records and returns what has been fetched (possibly nothing).
    /// Errors the prefetcher met (offset out of range under `OffsetReset::Error`, an unknown
    /// topic, a corrupt batch) come out here, one per call. Blocks the calling thread; see
    /// [`Consumer::poll_async`] for async code.
    pub fn poll(&mut self, timeout: Duration) -> Result<Polled, Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.state();
        while !state.has_news() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(Polled::default());
            }
            state = self
                .shared
                .data_ready
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
        drop(state);
        self.take()
    }

    /// Like [`Consumer::poll`], for async code on any runtime.
    pub async fn poll_async(&mut self, timeout: Duration) -> Result<Polled, Error> {
        let shared = self.shared.clone();
        let mut timer = pin!(self.client.timer(timeout));
        let news = poll_fn(|context| {
            {
                let mut state = shared.state();
                if state.has_news() {
                    return Poll::Ready(true);
                }
                state.waiters.push(context.waker().clone());
            }
            if timer.as_mut().poll(context).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if !news {
            return Ok(Polled::default());
        }
        self.take()
    }

    /// Like [`Consumer::poll`], returning records that own (share) their bytes.
    pub fn poll_owned(&mut self, timeout: Duration) -> Result<Vec<records::OwnedRecord>, Error> {
        Ok(self.poll(timeout)?.to_owned_records())
    }

    /// Takes every queued chunk (or, when none is queued, the oldest error), checks the batches
    /// outside the lock, and advances positions. Records fetched before an error are handed out
    /// before it: a partition's error (damage in the broker's copy, say) is found by the fetch
    /// after the one that queued its last good records.
    fn take(&mut self) -> Result<Polled, Error> {
        let chunks = {
            let mut state = self.shared.state();
            if state.queue.is_empty() {
                if let Some(error) = state.errors.pop_front() {
                    return Err(error);
                }
            }
            let chunks: Vec<Chunk> = state.queue.drain(..).collect();
            state.queued_bytes = 0;
            // Stale chunks (seeked since) are dropped here; positions tell where to skip to.
            chunks
                .into_iter()
                .filter_map(|chunk| {
                    let partition = state.partitions.get(&chunk.key)?;
                    (partition.epoch == chunk.epoch).then(|| {
                        let skip_below = partition.position.max(chunk.start_offset);
                        (chunk, partition.topic.clone(), skip_below)
                    })
                })
                .collect::<Vec<_>>()
        };
        self.shared.fetcher_wake.notify_one();

        let mut polled = Polled::default();
        let mut failed: Vec<(TopicPartition, u64, Error)> = Vec::new();
        // Partitions whose chunk ended early to keep within the decompression budget.
        let mut cut: Vec<TopicPartition> = Vec::new();
        let mut budget = DecompressionBudget::new(self.shared.config.decompressed_bytes_max);
        for (chunk, topic, skip_below) in chunks {
            if failed.iter().any(|(key, _, _)| *key == chunk.key) || cut.contains(&chunk.key) {
                continue; // later chunks of a partition with a bad or cut one are fetched again
            }
            match PolledChunk::check(
                topic,
                chunk.key.partition,
                chunk.bytes,
                skip_below,
                &chunk.aborted,
                &mut budget,
            ) {
                Ok(checked) => {
                    let next_offset = checked.cut_at.unwrap_or(chunk.next_offset);
                    let was_cut = checked.cut_at.is_some();
                    polled.chunks.push(checked);
                    let mut state = self.shared.state();
                    if let Some(partition) = state.partitions.get_mut(&chunk.key) {
                        if partition.epoch == chunk.epoch {
                            partition.position = partition.position.max(next_offset);
                        }
                    }
                    if was_cut {
                        cut.push(chunk.key);
                    }
                }
                Err((offset, source)) => {
                    let error = Error::CorruptBatch {
                        topic: chunk.key.topic.clone(),
                        partition: chunk.key.partition,
                        offset,
                        source,
                    };
                    failed.push((chunk.key, skip_below, error));
                }
            }
        }
        if !failed.is_empty() {
            let mut state = self.shared.state();
            for (key, position, error) in failed {
                if let Some(partition) = state.partitions.get_mut(&key) {
                    // Fetch again from the last good position after a pause.
                    partition.position = position;
                    partition.fetch_offset = position;
                    partition.epoch += 1;
                    partition.backoff_until =
                        Some(Instant::now() + self.shared.config.fetch_backoff);
                }
                state.drop_chunks_of(&key);
                state.errors.push_back(error);
            }
        }
        if !cut.is_empty() {
            let mut state = self.shared.state();
            for key in cut {
                if let Some(partition) = state.partitions.get_mut(&key) {
                    // Fetch the rest again, for a later poll: memory bounded over bytes saved.
                    partition.fetch_offset = partition.position;
                    partition.epoch += 1;
                }
                state.drop_chunks_of(&key);
            }
            drop(state);
            self.shared.fetcher_wake.notify_one();
        }
        if polled.chunks.is_empty() {
            if let Some(error) = self.shared.state().errors.pop_front() {
                return Err(error);
            }
        }
        Ok(polled)
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.fetcher_wake.notify_one();
    }
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Consumer")
            .field("assignment", &self.assignment())
            .finish()
    }
}

fn not_assigned(key: &TopicPartition) -> Error {
    Error::invalid(
        "partition",
        format!("{key} is not assigned to this consumer"),
    )
}

/// The start offset of each partition, in `partitions` order.
async fn resolve(
    network: &Network,
    topic: &str,
    partitions: &[u32],
    start: StartAt,
    isolation_level: IsolationLevel,
) -> Result<Vec<u64>, Error> {
    let spec = match start {
        StartAt::Offset(offset) => return Ok(vec![offset; partitions.len()]),
        StartAt::Earliest => OffsetSpec::Earliest,
        StartAt::Latest => OffsetSpec::Latest,
        StartAt::Timestamp(timestamp) => OffsetSpec::Timestamp(timestamp),
    };
    let found = list_offsets(
        network,
        topic,
        Some(partitions.to_vec()),
        spec,
        isolation_level,
    )
    .await?;
    let mut offsets = Vec::with_capacity(found.len());
    let mut latest: Option<Vec<u64>> = None;
    for (index, answer) in found.iter().enumerate() {
        match answer.offset {
            Some(offset) => offsets.push(offset),
            None => {
                // No record at or after the timestamp: start at the end, as Kafka does.
                if latest.is_none() {
                    let ends = list_offsets(
                        network,
                        topic,
                        Some(partitions.to_vec()),
                        OffsetSpec::Latest,
                        isolation_level,
                    )
                    .await?;
                    latest = Some(ends.iter().map(|end| end.offset.unwrap_or(0)).collect());
                }
                offsets.push(latest.as_ref().expect("filled above")[index]);
            }
        }
    }
    Ok(offsets)
}
