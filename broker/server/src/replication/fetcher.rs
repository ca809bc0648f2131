//! A follower's fetcher: one task per (shard, leader broker), fetching every partition this
//! shard follows from that leader over one peer connection (the shard's replication
//! `peer::PeerPool`).
//!
//! Each round asks the shard for each partition's position (durable log end and the epoch of
//! its last batch, `Shard::follower_positions`), sends one long-polling `ReplicaFetch` (the
//! leader waits up to `replica_fetch_wait_ms` for data), and applies each partition's answer on
//! the shard: batches are appended as the leader stored them (`Shard::append_from_leader`,
//! durable before the next fetch reports the new end), a diverging epoch truncates the log
//! where it and the leader's agree (`Shard::truncate_diverging`, KIP-320) and a fetch offset
//! below the leader's log start restarts the log there (`Shard::start_replica_at`). The shard
//! refuses an answer whose epoch or position is no longer the partition's, so a late or
//! repeated answer changes nothing.
//!
//! A partition the leader refuses (not the leader, an epoch the leader does not know or has
//! left behind, still opening) rests for `PARTITION_RETRY_MS` at the epoch it was refused at: a
//! new epoch from the metadata (`roles_changed`) ends the rest at once. A failed connection is
//! opened again by the pool after its backoff. The task ends when the shard follows nothing
//! from this leader any more, or at shutdown.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use spate_protocol::api::{
    RecordSet, ReplicaFetchPartition as WirePartition, ReplicaFetchPartitionResponse,
    ReplicaFetchRequest, ReplicaFetchTopic, NO_EPOCH,
};
use spate_protocol::batch::header::{BatchHeader, BATCH_HEADER_BYTES};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use crate::peer::{self, PeerError};
use crate::services::Services;
use crate::shard::messages::{PartitionError, PartitionKey};

/// How long a partition the leader refused rests before it is fetched again at the same epoch.
const PARTITION_RETRY_MS: u64 = 200;

/// How long the fetcher waits before trying a leader again after a failed call.
const CALL_RETRY_MS: u64 = 100;

/// How long an answer may take beyond the long poll's own wait (Kafka's
/// `replica.socket.timeout.ms`): past it the connection is taken for dead and opened again.
const ANSWER_TIMEOUT_MS: u64 = 30_000;

/// A partition this shard follows, as the metadata last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Followed {
    pub topic: String,
    pub leader_epoch: i32,
}

/// The handle `replication` keeps of one running fetcher.
pub(super) struct Fetcher {
    leader: NodeId,
    partitions: RefCell<BTreeMap<PartitionKey, Followed>>,
    stopped: Cell<bool>,
    /// Wakes the task when its partitions change or it is stopped (capacity 1: one wake-up is
    /// enough whatever changed).
    wake: LocalSender<()>,
}

impl Fetcher {
    /// Starts the fetcher of `leader` for `partitions`.
    pub(super) fn start(
        services: Rc<Services>,
        leader: NodeId,
        partitions: BTreeMap<PartitionKey, Followed>,
    ) -> Rc<Fetcher> {
        let (wake, woken) = local_channel::new_bounded(1);
        let fetcher = Rc::new(Fetcher {
            leader,
            partitions: RefCell::new(partitions),
            stopped: Cell::new(false),
            wake,
        });
        glommio::spawn_local(fetcher.clone().run(services, woken)).detach();
        fetcher
    }

    /// Replaces the partitions followed from this leader.
    pub(super) fn set_partitions(&self, partitions: BTreeMap<PartitionKey, Followed>) {
        if *self.partitions.borrow() != partitions {
            *self.partitions.borrow_mut() = partitions;
            let _ = self.wake.try_send(());
        }
    }

    /// Ends the task after its current round (an append in progress finishes).
    pub(super) fn stop(&self) {
        self.stopped.set(true);
        let _ = self.wake.try_send(());
    }

    async fn run(self: Rc<Self>, services: Rc<Services>, woken: LocalReceiver<()>) {
        let leader = self.leader;
        tracing::debug!(shard = services.shard.id, leader, "replica fetcher started");
        // Partitions resting after a refusal: the epoch they were refused at, and until when.
        let mut resting: HashMap<PartitionKey, (i32, Instant)> = HashMap::new();
        while !self.stopped.get() && !services.shutdown.is_requested() {
            let now = Instant::now();
            resting.retain(|_, (_, until)| *until > now);
            let partitions: Vec<(PartitionKey, Followed)> = self
                .partitions
                .borrow()
                .iter()
                .filter(|(key, followed)| {
                    !matches!(resting.get(key), Some((epoch, _)) if *epoch == followed.leader_epoch)
                })
                .map(|(key, followed)| (*key, followed.clone()))
                .collect();
            if partitions.is_empty() {
                let until_next = resting
                    .values()
                    .map(|(_, until)| until.saturating_duration_since(now))
                    .min()
                    .unwrap_or(Duration::from_secs(1));
                self.pause(&services, &woken, until_next).await;
                continue;
            }
            match self.round(&services, &partitions, &mut resting).await {
                Ok(()) => {}
                Err(wait) => self.pause(&services, &woken, wait).await,
            }
        }
        tracing::debug!(shard = services.shard.id, leader, "replica fetcher stopped");
    }

    /// Waits `wait`, or less when the partitions change, the fetcher stops or shutdown begins.
    async fn pause(&self, services: &Services, woken: &LocalReceiver<()>, wait: Duration) {
        future::or(
            future::or(
                async {
                    woken.recv().await;
                },
                glommio::timer::sleep(wait),
            ),
            services.shutdown.requested(),
        )
        .await;
    }

    /// One fetch from the leader and what its answer does to each partition. `Err`: the
    /// leader could not be asked; wait that long before the next round.
    async fn round(
        &self,
        services: &Rc<Services>,
        partitions: &[(PartitionKey, Followed)],
        resting: &mut HashMap<PartitionKey, (i32, Instant)>,
    ) -> Result<(), Duration> {
        let leader = self.leader;
        let limits = &services.config.limits;
        let snapshot = services.snapshot();
        let retry = Duration::from_millis(CALL_RETRY_MS);
        let Some(broker) = snapshot.brokers.get(&leader) else {
            tracing::debug!(leader, "the leader is not among the known brokers");
            return Err(Duration::from_millis(PARTITION_RETRY_MS));
        };
        let address =
            peer::resolve(leader, &broker.native.0, broker.native.1).map_err(|error| {
                tracing::warn!(leader, %error, "cannot reach the leader");
                Duration::from_secs(1)
            })?;
        let connection = match services
            .replication
            .peers
            .get(leader, &broker.native.0, address)
            .await
        {
            Ok(connection) => connection,
            Err(PeerError::BackingOff { retry_in_ms, .. }) => {
                return Err(Duration::from_millis(retry_in_ms.max(1)))
            }
            Err(error) => {
                tracing::debug!(leader, %error, "connecting to the leader failed");
                return Err(retry);
            }
        };

        // Each open partition's position; one not open yet is left out until it is.
        let keys: Vec<PartitionKey> = partitions.iter().map(|(key, _)| *key).collect();
        let positions = services.shard.follower_positions(&keys);
        let followed: HashMap<PartitionKey, &Followed> = partitions
            .iter()
            .map(|(key, followed)| (*key, followed))
            .collect();
        let partition_max_bytes =
            u32::try_from(limits.replica_fetch_partition_bytes_max).unwrap_or(u32::MAX);
        let mut topics: BTreeMap<u64, ReplicaFetchTopic> = BTreeMap::new();
        // What each partition was fetched with: its epoch and fetch offset.
        let mut sent: HashMap<PartitionKey, (i32, u64)> = HashMap::new();
        for (key, log_end, last_epoch) in positions {
            let Some(followed) = followed.get(&key) else {
                continue;
            };
            sent.insert(key, (followed.leader_epoch, log_end));
            topics
                .entry(key.topic_id)
                .or_insert_with(|| ReplicaFetchTopic {
                    name: followed.topic.clone(),
                    topic_id: key.topic_id,
                    partitions: Vec::new(),
                })
                .partitions
                .push(WirePartition {
                    partition: key.partition,
                    current_leader_epoch: followed.leader_epoch,
                    fetch_offset: log_end,
                    last_fetched_epoch: last_epoch,
                    partition_max_bytes,
                });
        }
        if sent.is_empty() {
            return Err(Duration::from_millis(PARTITION_RETRY_MS));
        }
        let request = ReplicaFetchRequest {
            replica_id: snapshot.local_node,
            max_wait_ms: u32::try_from(limits.replica_fetch_wait_ms).unwrap_or(u32::MAX),
            min_bytes: 1,
            max_bytes: u32::try_from(limits.replica_fetch_bytes_max).unwrap_or(u32::MAX),
            topics: topics.into_values().collect(),
        };
        let timeout_ms = limits.replica_fetch_wait_ms + ANSWER_TIMEOUT_MS;
        let response = match connection.call(&request, timeout_ms).await {
            Ok(response) => response,
            Err(error) => {
                tracing::debug!(leader, %error, "replica fetch failed");
                return Err(retry);
            }
        };
        if response.error_code != ErrorCode::None {
            tracing::debug!(leader, code = %response.error_code, "replica fetch refused");
            return Err(Duration::from_millis(PARTITION_RETRY_MS));
        }
        let rest_until = Instant::now() + Duration::from_millis(PARTITION_RETRY_MS);
        for topic in response.topics {
            for answer in topic.partitions {
                let key = PartitionKey {
                    topic_id: topic.topic_id,
                    partition: answer.partition,
                };
                let Some(&(epoch, fetch_offset)) = sent.get(&key) else {
                    continue; // Not asked for: nothing to apply.
                };
                if let Err(reason) = apply(services, key, epoch, fetch_offset, answer).await {
                    tracing::debug!(leader, topic_id = key.topic_id, partition = key.partition, %reason, "replica fetch of a partition refused; retrying");
                    resting.insert(key, (epoch, rest_until));
                }
            }
        }
        Ok(())
    }
}

/// Applies one partition's answer on the shard. `Err`: the partition rests (the leader or the
/// shard refused it at this epoch).
async fn apply(
    services: &Services,
    key: PartitionKey,
    leader_epoch: i32,
    fetch_offset: u64,
    answer: ReplicaFetchPartitionResponse,
) -> Result<(), String> {
    let shard = &services.shard;
    match answer.error_code {
        ErrorCode::None => {}
        ErrorCode::OffsetOutOfRange if fetch_offset < answer.log_start_offset => {
            // The leader no longer has what this log lacks (retention, DeleteRecords): start
            // over at its log start.
            return shard
                .start_replica_at(key, leader_epoch, answer.log_start_offset)
                .await
                .map_err(|error| error.to_string());
        }
        code => {
            return Err(match answer.error_message {
                Some(message) => format!("{code}: {message}"),
                None => code.to_string(),
            })
        }
    }
    if answer.diverging_epoch != NO_EPOCH {
        let diverging = (answer.diverging_epoch, answer.diverging_end_offset);
        return match shard
            .truncate_diverging(key, leader_epoch, fetch_offset, diverging)
            .await
        {
            Ok(log_end) => {
                tracing::info!(
                    topic_id = key.topic_id,
                    partition = key.partition,
                    leader_epoch,
                    fetch_offset,
                    log_end,
                    "truncated a follower's log where it diverged from the leader's"
                );
                Ok(())
            }
            Err(error) => Err(error.to_string()),
        };
    }
    let batches = split_batches(&answer.records)?;
    if let Some(first) = batches.first() {
        let base_offset = BatchHeader::decode(first)
            .map_err(|error| error.to_string())?
            .base_offset;
        if base_offset < fetch_offset {
            // This log restarted at the leader's log start, which lies inside the leader's
            // first batch: start over at that batch (Kafka's answer to an unexpected append
            // offset), so it is stored whole, as the leader holds it.
            shard
                .start_replica_at(key, leader_epoch, base_offset)
                .await
                .map_err(|error| error.to_string())?;
        }
    }
    match shard
        .append_from_leader(
            key,
            leader_epoch,
            batches,
            answer.high_watermark,
            answer.log_start_offset,
        )
        .await
    {
        Ok(_) => Ok(()),
        // A stale or repeated answer (the log moved since the fetch was sent): fetch again.
        Err(PartitionError::InvalidRequest(_)) => Ok(()),
        Err(error) => Err(error.to_string()),
    }
}

/// The whole batches of a leader's answer, each in a buffer of its own for the follower's
/// append (the bytes the leader stored, copied once out of the answer's frame).
fn split_batches(records: &RecordSet) -> Result<Vec<BytesMut>, String> {
    let bytes = records.to_bytes();
    let mut rest = &bytes[..];
    let mut batches = Vec::new();
    while !rest.is_empty() {
        if rest.len() < BATCH_HEADER_BYTES {
            return Err(format!(
                "{} bytes after the last whole batch of the leader's answer",
                rest.len()
            ));
        }
        let header = BatchHeader::decode(rest).map_err(|error| error.to_string())?;
        let length = header.batch_length as usize;
        if length < BATCH_HEADER_BYTES || length > rest.len() {
            return Err(format!(
                "a batch of {length} bytes where the leader's answer has {} left",
                rest.len()
            ));
        }
        batches.push(BytesMut::from(&rest[..length]));
        rest = &rest[length..];
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use spate_protocol::batch::{BatchBuilder, BatchOptions};

    fn batch(value: &str) -> Bytes {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        builder
            .append(
                Some(b"key".as_slice()),
                Some(value.as_bytes()),
                spate_protocol::batch::NO_HEADERS,
                1_700_000_000_000,
            )
            .unwrap();
        builder.seal().unwrap().freeze()
    }

    #[test]
    fn an_answer_splits_into_its_batches_and_a_torn_one_is_refused() {
        let first = batch("one");
        let second = batch("second value");
        let both = RecordSet::from_chunks(vec![first.clone(), second.clone()]);
        let split = split_batches(&both).unwrap();
        assert_eq!(split.len(), 2);
        assert_eq!(&split[0][..], &first[..]);
        assert_eq!(&split[1][..], &second[..]);
        assert!(split_batches(&RecordSet::default()).unwrap().is_empty());
        let torn = RecordSet::from_bytes(second.slice(..second.len() - 1));
        assert!(split_batches(&torn).is_err());
        let short = RecordSet::from_bytes(first.slice(..10));
        assert!(split_batches(&short).is_err());
    }
}
