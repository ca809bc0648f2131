//! The shard: one glommio executor pinned to one core, owning a disjoint set of partitions.
//!
//! A `Shard` lives on its executor thread for the life of the broker (`Rc`, never `Send`). It
//! holds the partitions the catalog places on it and the shard's memory budgets, and offers the
//! partition operations (produce, fetch, offsets, ...) on the partitions it owns. Any shard may
//! receive any request: [`mesh::invoke_on`] runs a typed call on the owner, locally or through
//! the cross-shard mesh, and [`router`] splits a request by owner and joins the answers.
//!
//! Per-shard services (the group coordinator now) are registered beside the shard, not inside
//! it: the server's services type holds the shard, its end of the mesh and each service, and
//! implements [`mesh::ShardServices`] and each service's extension of it.
//!
//! What is not here: sockets and the wire format (see `server`), topic metadata (see `catalog`;
//! the shard only opens and deletes the partitions the catalog assigns to it), the broker
//! configuration (the shard gets its [`ShardLimits`]), and consumer groups (`group`).

pub mod budget;
pub mod compaction;
pub mod mesh;
pub mod messages;
pub mod opening;
pub mod partition;
pub mod record_keys;
pub mod replication;
pub mod router;
pub mod signal;
pub mod topic_creation;

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;

use crate::catalog::{Catalog, CatalogSnapshot, ShardId, TopicConfig, TopicMetadata};
use crate::storage::iotune::LogSizing;
use crate::storage::{Clock, FileSystem, LogConfig, RecoveryScan, TxnMarker, VerificationGuard};

use budget::ByteBudget;
use messages::{
    FetchOutcome, FetchPartition, Isolation, OffsetAnswer, PartitionError, PartitionKey,
    PartitionState, ProduceAcks, ProduceOutcome, ProducePartition,
};
use opening::{Opening, Readiness};
use partition::{log_config_sized, partition_error, OpenIntent, Partition, ShardFileSystem};
use signal::{AnyAppend, ShardShutdown, ShutdownFlag};

/// How long topic deletion waits for in-flight requests to let go of a partition, per try, and
/// how many tries before it gives up and leaves the directory to the next start-up's cleanup.
const DELETE_RETRY_INTERVAL_MS: u64 = 10;
const DELETE_RETRIES_MAX: u32 = 500;

/// How often a shard looks at partitions holding written-but-not-durable data (acks=leader or
/// none) to run the sync their durability policy makes due. Below the default group-commit
/// interval (2 ms), so such data becomes durable and readable within about one interval.
const WRITTEN_SYNC_TICK_US: u64 = 1_000;

/// Partitions a shard opens at once (start-up, in the background, and topic creation): enough
/// to overlap one partition's disk reads with another's, few enough to bound open files and
/// read buffers.
const PARTITION_OPENS_IN_FLIGHT: usize = 16;

/// Partitions a shard closes at once at shutdown: a close of a partition with unsynced data or
/// a stale recovery point waits on fsyncs, and the disk takes many at once.
const PARTITION_CLOSES_IN_FLIGHT: usize = 16;

/// How often a shard checks its partitions' recovery point byte triggers (at most; less often
/// when `recovery_point_interval_ms` is shorter).
const RECOVERY_POINT_TICK_MS: u64 = 1_000;

/// The bounds a shard works within, set from the broker configuration (`config::Limits`, whose
/// fields of the same names document them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardLimits {
    pub shard_inflight_bytes_max: usize,
    pub shard_arrival_bytes_max: usize,
    /// Largest batch a producer may send (frame limit and protocol limit together).
    pub batch_bytes_max: usize,
    pub fetch_wait_ms_max: u64,
    pub recovery_point_interval_ms: u64,
    pub retention_check_interval_ms: u64,
    pub recovery_scan: RecoveryScan,
    /// Largest decompressed size of a compressed Kafka batch inflated to find a record by
    /// timestamp, or to check the keys of a produced batch for a compacted topic.
    pub kafka_decompressed_bytes_max: usize,
    /// The compaction task's interval and budget.
    pub compaction: compaction::CompactionLimits,
    /// The storage sizes every partition log starts from (`iotune.toml` or settings).
    pub log_sizing: LogSizing,
}

/// Where a shard sits among its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardPosition {
    pub id: ShardId,
    pub shard_count: usize,
}

/// One shard. Owned by its executor thread; shared by that thread's tasks through `Rc`. Its
/// partitions live on `F`: the direct-I/O disk behind the open-file cache in the broker, the
/// in-memory disk in tests.
pub struct Shard<F: FileSystem + 'static = ShardFileSystem> {
    pub id: ShardId,
    pub shard_count: usize,
    pub limits: ShardLimits,
    pub catalog: Arc<Catalog>,
    /// Bytes of whole frames (past their first read chunk) and fetch response allowances.
    pub budget: ByteBudget,
    /// Bytes of frames still arriving (their first read chunk) and small frames `budget` had no
    /// room for; see `server::connection`.
    pub arrival_budget: ByteBudget,
    pub shutdown: ShardShutdown,
    file_system: Rc<F>,
    clock: Rc<dyn Clock>,
    partitions: RefCell<HashMap<PartitionKey, Rc<Partition<F>>>>,
    /// Partitions this shard owns but does not serve, with the reason (file, position, what is
    /// wrong): they could not be opened, or lost data while running. Requests to them fail with
    /// [`PartitionError::Offline`]; the rest of the shard serves as usual. An operator's
    /// decision (see `broker/storage/FORMAT.md`) and a restart bring one back.
    offline: RefCell<HashMap<PartitionKey, String>>,
    /// Partitions this shard owns but has not opened yet (start-up opens them in the
    /// background); requests for them wait for their open, within their own timeout.
    opening: Rc<Opening<Arc<TopicMetadata>>>,
    /// The broker's start-up counts, shared with every shard.
    pub readiness: Arc<Readiness>,
    /// Partitions with appends that were written but may not be durable yet.
    unsynced: RefCell<HashSet<PartitionKey>>,
    /// Wakes the sync task when `unsynced` stops being empty.
    unsynced_added: Rc<signal::AppendSignal>,
    /// The partitions' replica roles (none: a single broker's partition, led here alone).
    replication: replication::Replication,
}

impl<F: FileSystem + 'static> Shard<F> {
    pub fn new(
        position: ShardPosition,
        limits: ShardLimits,
        catalog: Arc<Catalog>,
        file_system: Rc<F>,
        clock: Rc<dyn Clock>,
        shutdown: ShutdownFlag,
        readiness: Arc<Readiness>,
    ) -> Rc<Shard<F>> {
        assert!(
            position.id < position.shard_count,
            "a shard is one of its peers"
        );
        Rc::new(Shard {
            id: position.id,
            shard_count: position.shard_count,
            budget: ByteBudget::new(limits.shard_inflight_bytes_max),
            arrival_budget: ByteBudget::new(limits.shard_arrival_bytes_max),
            limits,
            catalog,
            shutdown: ShardShutdown::new(shutdown),
            file_system,
            clock,
            partitions: RefCell::new(HashMap::new()),
            offline: RefCell::new(HashMap::new()),
            opening: Rc::new(Opening::default()),
            readiness,
            unsynced: RefCell::new(HashSet::new()),
            unsynced_added: Rc::new(signal::AppendSignal::default()),
            replication: replication::Replication::default(),
        })
    }

    /// The file system the shard's partitions live on (for its open-file figures).
    pub fn files(&self) -> &F {
        &self.file_system
    }

    /// The partitions this shard serves now (open, not offline), for reports.
    pub fn served_partitions(&self) -> Vec<(PartitionKey, Rc<Partition<F>>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(key, partition)| (*key, partition.clone()))
            .collect()
    }

    /// How many owned partitions are offline, and how many are still opening.
    pub fn unavailable_partition_counts(&self) -> (usize, usize) {
        (self.offline.borrow().len(), self.opening.pending_count())
    }

    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.catalog.snapshot()
    }

    /// Largest batch a producer may send: bounded by the frame limit and the protocol's limit.
    pub fn batch_bytes_max(&self) -> usize {
        self.limits.batch_bytes_max
    }

    /// The storage settings of a topic's partitions on this shard.
    fn log_config(&self, config: &TopicConfig) -> LogConfig {
        log_config_sized(config, self.batch_bytes_max(), &self.limits.log_sizing)
    }

    /// Queues every partition the catalog places on this shard to be opened by
    /// [`Shard::open_registered_partitions`] (start-up). Until a partition is open, requests for
    /// it wait for it (within their timeout) or are answered [`PartitionError::Opening`].
    /// Returns how many were queued.
    pub fn register_owned_partitions(&self) -> usize {
        let snapshot = self.snapshot();
        let mut registered = 0;
        for topic in snapshot.topics.values() {
            for partition in 0..topic.partition_count() {
                // In a cluster, only the partitions this broker holds a replica of.
                if topic.owner_of(partition) == Some(self.id)
                    && topic.is_hosted(partition, snapshot.local_node)
                {
                    let key = PartitionKey {
                        topic_id: topic.id,
                        partition,
                    };
                    self.opening.add(key, topic.clone());
                    registered += 1;
                }
            }
        }
        self.readiness.add_partitions(registered);
        registered
    }

    /// Opens the partitions queued by [`Shard::register_owned_partitions`] while the shard
    /// serves, up to [`PARTITION_OPENS_IN_FLIGHT`] at once (one partition's reads overlap
    /// another's waits), those a request waits for first. A partition that cannot be opened is
    /// taken offline (logged with its reason) and the others still open: one damaged partition
    /// must not stop the broker. Ends when all are open or [`Shard::stop_opening`] was called.
    pub async fn open_registered_partitions(self: Rc<Self>) {
        let started = Instant::now();
        let shard = self.clone();
        self.opening
            .run(PARTITION_OPENS_IN_FLIGHT, move |key, topic| {
                let shard = shard.clone();
                async move {
                    match shard
                        .open_partition(&topic, key.partition, OpenIntent::Existing)
                        .await
                    {
                        Ok(()) => shard.readiness.partition_opened(),
                        Err(_) => shard.readiness.partition_offline(),
                    }
                }
            })
            .await;
        let mut report = crate::storage::log::RecoveryReport::default();
        for partition in self.partitions.borrow().values() {
            let one = partition.log.recovery_report();
            report.segments += one.segments;
            report.bytes_scanned += one.bytes_scanned;
            report.bytes_replayed += one.bytes_replayed;
        }
        let offline = self.offline.borrow().len();
        let not_opened = self.opening.pending_count();
        tracing::info!(
            shard = self.id,
            partitions = self.partitions.borrow().len(),
            offline,
            not_opened,
            open_ms = started.elapsed().as_millis() as u64,
            segments = report.segments,
            recovery_bytes_scanned = report.bytes_scanned,
            recovery_bytes_replayed = report.bytes_replayed,
            "partitions recovered"
        );
        if offline > 0 {
            tracing::error!(
                shard = self.id,
                offline,
                "some partitions are offline; the others serve (see the errors above for why)"
            );
        }
        if self.readiness.shard_opened() {
            let readiness = self.readiness.report();
            let message = if readiness.partitions_opening() == 0 {
                // Every partition has told the producer id allocator what it remembers.
                self.catalog
                    .producer_ids()
                    .partitions_reported(readiness.partitions_offline);
                "all partitions open"
            } else {
                "partition opens stopped by shutdown"
            };
            tracing::info!(
                partitions = readiness.partitions_total,
                opened = readiness.partitions_opened,
                offline = readiness.partitions_offline,
                not_opened = readiness.partitions_opening(),
                serving_after_ms = ?readiness.serving_after_ms,
                opened_after_ms = ?readiness.opened_after_ms,
                "{message}"
            );
        }
    }

    /// No more start-up opens begin (shutdown); those running finish, and
    /// [`Shard::open_registered_partitions`] returns once they have.
    pub fn stop_opening(&self) {
        self.opening.stop();
    }

    async fn open_topic(
        self: &Rc<Self>,
        topic: &Arc<TopicMetadata>,
        intent: OpenIntent,
    ) -> TopicOpened {
        let partitions = (0..topic.partition_count())
            .map(|partition| (topic.clone(), partition))
            .collect();
        self.open_partitions(partitions, intent).await
    }

    /// Opens the partitions among `partitions` that this shard owns and does not hold yet, a
    /// bounded number at a time.
    async fn open_partitions(
        self: &Rc<Self>,
        partitions: Vec<(Arc<TopicMetadata>, u32)>,
        intent: OpenIntent,
    ) -> TopicOpened {
        let mut outcome = TopicOpened::default();
        let local = self.local_node();
        let mine: Vec<(Arc<TopicMetadata>, u32)> = partitions
            .into_iter()
            .filter(|(topic, partition)| {
                let key = PartitionKey {
                    topic_id: topic.id,
                    partition: *partition,
                };
                topic.owner_of(*partition) == Some(self.id)
                    && topic.is_hosted(*partition, local)
                    && !self.partitions.borrow().contains_key(&key)
                    && !self.offline.borrow().contains_key(&key)
                    && !self.opening.is_pending(&key)
            })
            .collect();
        for group in mine.chunks(PARTITION_OPENS_IN_FLIGHT) {
            let opens = group.iter().map(|(topic, partition)| {
                let shard = self.clone();
                let topic = topic.clone();
                let partition = *partition;
                async move { shard.open_partition(&topic, partition, intent).await }
            });
            for result in join_all(opens).await {
                match result {
                    Ok(()) => outcome.opened += 1,
                    Err(error) => {
                        outcome.first_offline.get_or_insert(error);
                    }
                }
            }
        }
        outcome
    }

    /// Opens one partition, or takes it offline with the reason it could not be opened.
    async fn open_partition(
        &self,
        topic: &TopicMetadata,
        partition: u32,
        intent: OpenIntent,
    ) -> Result<(), PartitionError> {
        let key = PartitionKey {
            topic_id: topic.id,
            partition,
        };
        let directory = topic.partition_directory(partition);
        let mut config = self.log_config(&topic.config);
        config.recovery_scan = self.limits.recovery_scan;
        match Partition::open(
            self.file_system.clone(),
            directory.clone(),
            config,
            self.clock.clone(),
            intent,
        )
        .await
        {
            Ok(opened_partition) => {
                if let Some(largest) = opened_partition.log.largest_producer_id() {
                    self.catalog.producer_ids().observe(largest);
                }
                // A configuration change committed while the partition was opening reached
                // only the partitions open then (`alter_topic`): apply the current one.
                if let Some(current) = self.snapshot().topic(&topic.name) {
                    if current.id == topic.id && current.config != topic.config {
                        opened_partition.update_config(self.log_config(&current.config));
                    }
                }
                let opened_partition = Rc::new(opened_partition);
                self.partitions
                    .borrow_mut()
                    .insert(key, opened_partition.clone());
                self.adopt_role_at_open(topic, key, &opened_partition).await;
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    shard = self.id,
                    topic = %topic.name,
                    partition,
                    directory = %directory.display(),
                    %error,
                    "partition offline: it could not be opened; the rest of the broker serves"
                );
                let reason = error.to_string();
                self.offline.borrow_mut().insert(key, reason.clone());
                Err(PartitionError::Offline(reason))
            }
        }
    }

    /// Closes and deletes every partition of `topic` this shard holds from `first_partition`
    /// on. A partition that fails to delete does not stop the others; the first error is returned.
    async fn delete_topic(
        &self,
        topic: &TopicMetadata,
        first_partition: u32,
    ) -> Result<(), PartitionError> {
        self.delete_partitions(topic, |partition| partition >= first_partition)
            .await
    }

    /// Closes and deletes the partitions of `topic` this shard holds that `chosen` picks. A
    /// partition that fails to delete does not stop the others; the first error is returned.
    async fn delete_partitions(
        &self,
        topic: &TopicMetadata,
        chosen: impl Fn(u32) -> bool,
    ) -> Result<(), PartitionError> {
        let deleted = |key: &PartitionKey| key.topic_id == topic.id && chosen(key.partition);
        // A partition whose start-up open has not begun is never opened; one being opened is
        // waited for and then deleted like the others.
        for key in self.opening.pending_keys(deleted) {
            if !self.opening.cancel(&key) {
                self.opening.wait(&key, None).await;
            }
        }
        // An offline or never opened partition's files are left to the next start's cleanup of
        // deleted topics: what is wrong with them may also make removing them fail.
        self.offline.borrow_mut().retain(|key, _| !deleted(key));
        self.forget_roles(deleted);
        let keys: Vec<PartitionKey> = self
            .partitions
            .borrow()
            .keys()
            .filter(|key| deleted(key))
            .copied()
            .collect();
        let mut first_error = None;
        for key in keys {
            let Some(mut partition) = self.partitions.borrow_mut().remove(&key) else {
                continue;
            };
            // In-flight requests may still hold the partition; wait for them to finish.
            let mut tries = 0;
            let owned = loop {
                match Rc::try_unwrap(partition) {
                    Ok(owned) => break Some(owned),
                    Err(shared) if tries < DELETE_RETRIES_MAX => {
                        partition = shared;
                        tries += 1;
                        glommio::timer::sleep(Duration::from_millis(DELETE_RETRY_INTERVAL_MS))
                            .await;
                    }
                    Err(_) => break None,
                }
            };
            match owned {
                Some(owned) => {
                    if let Err(error) = owned.log.delete().await {
                        first_error.get_or_insert(partition_error(error));
                    }
                }
                None => tracing::warn!(
                    shard = self.id,
                    topic = %topic.name,
                    partition = key.partition,
                    "partition still in use; its directory is removed at the next start"
                ),
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn alter_topic(&self, topic: &TopicMetadata) {
        let config = self.log_config(&topic.config);
        for (key, partition) in self.partitions.borrow().iter() {
            if key.topic_id == topic.id {
                partition.update_config(config.clone());
            }
        }
    }

    fn partition(&self, key: &PartitionKey) -> Result<Rc<Partition<F>>, PartitionError> {
        if let Some(partition) = self.partitions.borrow().get(key) {
            return Ok(partition.clone());
        }
        if let Some(reason) = self.offline.borrow().get(key) {
            return Err(PartitionError::Offline(reason.clone()));
        }
        if self.opening.is_pending(key) {
            return Err(PartitionError::Opening);
        }
        Err(self
            .hosted_elsewhere(key)
            .unwrap_or(PartitionError::UnknownTopicOrPartition))
    }

    /// In a cluster, a partition of a known topic that this broker holds no replica of (never,
    /// or no longer: a reassignment moved it away) is answered as Kafka does,
    /// NOT_LEADER_OR_FOLLOWER naming its leader, so that a client with older metadata goes
    /// there instead of taking the topic for gone.
    fn hosted_elsewhere(&self, key: &PartitionKey) -> Option<PartitionError> {
        let snapshot = self.snapshot();
        if !snapshot.cluster_mode {
            return None;
        }
        let local = snapshot.local_node;
        let topic = snapshot
            .topics
            .values()
            .find(|topic| topic.id == key.topic_id)?;
        if key.partition >= topic.partition_count() || topic.is_hosted(key.partition, local) {
            return None;
        }
        let role = topic.role(key.partition, local);
        Some(PartitionError::NotLeaderOrFollower {
            leader: role.leader,
            leader_epoch: role.leader_epoch,
        })
    }

    /// Like [`Shard::partition`], but a partition still opening is waited for until its open
    /// ends (then it is served, or offline), `deadline` passes (then `Opening`), or shutdown
    /// begins.
    async fn partition_waiting(
        &self,
        key: &PartitionKey,
        deadline: Instant,
    ) -> Result<Rc<Partition<F>>, PartitionError> {
        loop {
            match self.partition(key) {
                Err(PartitionError::Opening) => {
                    let ended = future::or(self.opening.wait(key, Some(deadline)), async {
                        self.shutdown.requested().await;
                        false
                    })
                    .await;
                    if !ended {
                        return Err(PartitionError::Opening);
                    }
                }
                result => return result,
            }
        }
    }

    /// Opens (creating if needed) the partitions of `topic` this shard owns; the first that could
    /// not be opened (now offline), if any, is the error.
    pub async fn open_topic_partitions(
        self: Rc<Self>,
        topic: Arc<TopicMetadata>,
    ) -> Result<(), PartitionError> {
        let opened = self.open_topic(&topic, OpenIntent::Create).await;
        opened.first_offline.map_or(Ok(()), Err)
    }

    /// Closes and deletes the partitions of `topic` this shard owns, from `first_partition` on
    /// (0: the whole topic; the old count: the partitions of an abandoned addition).
    pub async fn delete_topic_partitions(
        self: Rc<Self>,
        topic: Arc<TopicMetadata>,
        first_partition: u32,
    ) -> Result<(), PartitionError> {
        self.delete_topic(&topic, first_partition).await
    }

    /// Closes and deletes this shard's replicas of `partitions` of `topic`, which this broker
    /// no longer holds (a reassignment moved them away); the topic lives on elsewhere.
    pub async fn delete_partition_replicas(
        self: Rc<Self>,
        topic: Arc<TopicMetadata>,
        partitions: Vec<u32>,
    ) -> Result<(), PartitionError> {
        self.delete_partitions(&topic, |partition| partitions.contains(&partition))
            .await
    }

    /// Applies a changed topic configuration to the open partitions.
    pub fn alter_topic_partitions(&self, topic: &TopicMetadata) -> Result<(), PartitionError> {
        self.alter_topic(topic);
        Ok(())
    }

    /// Appends each partition's batches; answers in the order of `partitions`.
    /// `opening_wait_until`: until when a partition still opening after the start is waited for
    /// (the request's own timeout); past it the partition is answered
    /// [`PartitionError::Opening`].
    pub async fn produce(
        self: Rc<Self>,
        acks: ProduceAcks,
        partitions: Vec<ProducePartition>,
        opening_wait_until: Instant,
    ) -> Vec<Result<ProduceOutcome, PartitionError>> {
        let appends = partitions.into_iter().map(|produce| {
            let shard = self.clone();
            async move {
                let partition = shard
                    .partition_waiting(&produce.key, opening_wait_until)
                    .await?;
                shard.retry_leadership(&produce.key).await;
                let leadership = shard.leadership(&produce.key);
                if let replication::Leadership::NotLeader(error) = leadership {
                    return Err(error);
                }
                partition
                    .check_keys(&produce.batches, shard.limits.kafka_decompressed_bytes_max)?;
                // acks=all on a replicated partition: committed on the ISR, not only durable
                // here (see `replication`).
                let replicated_all = acks == ProduceAcks::All
                    && matches!(
                        leadership,
                        replication::Leadership::Leader { replicated: true }
                    );
                if replicated_all {
                    shard.check_min_insync(&produce.key)?;
                }
                let outcome = partition
                    .produce(produce.batches, acks, produce.verification)
                    .await;
                shard.take_offline_if_lost(produce.key, &partition);
                if acks != ProduceAcks::All {
                    shard.mark_unsynced(produce.key);
                }
                let outcome = outcome?;
                shard.leader_durable_moved(&produce.key, &partition);
                if replicated_all {
                    shard
                        .wait_committed(&produce.key, outcome.end_offset, opening_wait_until)
                        .await?;
                }
                Ok(outcome)
            }
        });
        join_all(appends).await
    }

    /// KIP-890 part 1, before a transactional batch of `producer_id` is appended to `key`:
    /// `None` when the producer already has a transaction open there; otherwise the guard to
    /// append its batch with (`ProducePartition::verification`) once the transaction
    /// coordinator confirmed the partition is in the producer's transaction.
    pub async fn txn_verification(
        &self,
        key: PartitionKey,
        producer_id: i64,
        producer_epoch: i16,
        opening_wait_until: Instant,
    ) -> Result<Option<VerificationGuard>, PartitionError> {
        let partition = self.partition_waiting(&key, opening_wait_until).await?;
        Ok(partition.txn_verification(producer_id, producer_epoch))
    }

    /// Appends each transaction marker to its partition and waits until each is durable
    /// (answers in the order of `markers`: the marker's offset). A marker moves its
    /// partition's last stable offset, so each wakes the long polls waiting on its partition.
    /// A partition still opening after the start is answered [`PartitionError::Opening`]
    /// (retriable): the coordinator retries its markers until each is written. On a
    /// replicated partition a marker is written by the leader only and answered once the
    /// in-sync replicas hold it (Kafka writes markers with acks=all), within
    /// `ReplicaLimits::txn_marker_commit_wait_ms` (see [`Shard::write_txn_markers_until`]).
    pub async fn write_txn_markers(
        self: Rc<Self>,
        markers: Vec<(PartitionKey, TxnMarker)>,
    ) -> Vec<Result<u64, PartitionError>> {
        let wait_ms = self.replica_limits().txn_marker_commit_wait_ms;
        let deadline = Instant::now() + Duration::from_millis(wait_ms);
        self.write_txn_markers_until(markers, deadline).await
    }

    /// [`Shard::write_txn_markers`] waiting for the in-sync replicas of a replicated partition
    /// until `deadline` (then `ReplicationTimedOut`: the marker is written but not committed,
    /// and the coordinator retries it).
    pub async fn write_txn_markers_until(
        self: Rc<Self>,
        markers: Vec<(PartitionKey, TxnMarker)>,
        deadline: Instant,
    ) -> Vec<Result<u64, PartitionError>> {
        let writes = markers.into_iter().map(|(key, marker)| {
            let shard = self.clone();
            async move {
                let partition = shard.partition(&key)?;
                shard.retry_leadership(&key).await;
                let leadership = shard.leadership(&key);
                if let replication::Leadership::NotLeader(error) = leadership {
                    return Err(error);
                }
                let timestamp_ms = shard.clock.now_ms();
                let written = partition.write_txn_marker(marker, timestamp_ms).await;
                shard.take_offline_if_lost(key, &partition);
                let offset = written?;
                shard.leader_durable_moved(&key, &partition);
                if matches!(
                    leadership,
                    replication::Leadership::Leader { replicated: true }
                ) {
                    shard.wait_committed(&key, offset + 1, deadline).await?;
                }
                Ok(offset)
            }
        });
        join_all(writes).await
    }

    /// Reads each partition from its offset; answers in the order of `partitions`.
    pub async fn fetch(
        self: Rc<Self>,
        partitions: Vec<FetchPartition>,
        opening_wait_until: Instant,
    ) -> Vec<Result<FetchOutcome, PartitionError>> {
        let reads = partitions.into_iter().map(|fetch| {
            let shard = self.clone();
            async move {
                let partition = shard
                    .partition_waiting(&fetch.key, opening_wait_until)
                    .await?;
                // Consumers read from the leader only, below its high watermark.
                shard.check_leader(&fetch.key)?;
                partition
                    .fetch(fetch.offset, fetch.max_bytes, fetch.isolation)
                    .await
            }
        });
        join_all(reads).await
    }

    /// Each partition's offset for its target (a timestamp, or latest/earliest) as a reader
    /// under `isolation` sees it (read_committed: latest is the last stable offset).
    pub async fn list_offsets(
        self: Rc<Self>,
        partitions: Vec<(PartitionKey, i64)>,
        isolation: Isolation,
    ) -> Vec<Result<OffsetAnswer, PartitionError>> {
        let decompressed_bytes_max = self.limits.kafka_decompressed_bytes_max;
        let answers = partitions.into_iter().map(|(key, target)| {
            let shard = self.clone();
            async move {
                let partition = shard.partition(&key)?;
                shard.check_leader(&key)?;
                partition
                    .list_offset(target, isolation, decompressed_bytes_max)
                    .await
            }
        });
        join_all(answers).await
    }

    /// Deletes each partition's records before its offset; answers the new log starts.
    pub async fn delete_records(
        self: Rc<Self>,
        partitions: Vec<(PartitionKey, i64)>,
        opening_wait_until: Instant,
    ) -> Vec<Result<u64, PartitionError>> {
        let answers = partitions.into_iter().map(|(key, before)| {
            let shard = self.clone();
            async move {
                let partition = shard.partition_waiting(&key, opening_wait_until).await?;
                shard.check_leader(&key)?;
                partition.delete_records(before).await
            }
        });
        join_all(answers).await
    }

    /// Each partition's log start and high watermark.
    pub fn states(
        &self,
        partitions: &[PartitionKey],
    ) -> Vec<Result<PartitionState, PartitionError>> {
        partitions
            .iter()
            .map(|key| self.partition(key).map(|partition| partition.state()))
            .collect()
    }

    /// Each partition's log size in bytes (its segments, appends not yet written included;
    /// indexes and checkpoints not counted), for DescribeLogDirs.
    pub fn sizes(&self, partitions: &[PartitionKey]) -> Vec<Result<u64, PartitionError>> {
        partitions
            .iter()
            .map(|key| {
                self.partition(key)
                    .map(|partition| partition.log.size_bytes())
            })
            .collect()
    }

    /// Waits until one of the partitions has data at or past its offset that a reader under
    /// its isolation may see (read_committed: below the last stable offset, which a marker
    /// moves), or `wait_ms` passes, or shutdown begins.
    pub async fn wait_for_data(&self, partitions: &[(PartitionKey, i64, Isolation)], wait_ms: u64) {
        let mut signals = Vec::with_capacity(partitions.len());
        for (key, offset, isolation) in partitions {
            let Ok(partition) = self.partition(key) else {
                return; // Gone: the caller's next read reports it.
            };
            if self.check_leader(key).is_err() {
                return; // Not led here (any more): the caller's next read reports it.
            }
            if partition.readable_end(*isolation) as i64 > *offset {
                return;
            }
            signals.push(partition.appended.clone());
        }
        let wait_ms = wait_ms.min(self.limits.fetch_wait_ms_max);
        future::or(
            future::or(
                AnyAppend::new(signals),
                glommio::timer::sleep(Duration::from_millis(wait_ms)),
            ),
            self.shutdown.requested(),
        )
        .await;
    }

    fn mark_unsynced(&self, key: PartitionKey) {
        let was_empty = self.unsynced.borrow().is_empty();
        self.unsynced.borrow_mut().insert(key);
        if was_empty {
            self.unsynced_added.notify();
        }
    }

    /// Makes written data durable when its policy says so (acks=leader/none appends do not wait
    /// for that themselves), and wakes long polls when data becomes readable. Until shutdown.
    pub async fn run_written_syncs(self: Rc<Self>) {
        let tick = Duration::from_micros(WRITTEN_SYNC_TICK_US);
        while !self.shutdown.is_requested() {
            if self.unsynced.borrow().is_empty() {
                future::or(
                    AnyAppend::new(vec![self.unsynced_added.clone()]),
                    self.shutdown.requested(),
                )
                .await;
                continue;
            }
            glommio::timer::sleep(tick).await;
            let keys: Vec<PartitionKey> = self.unsynced.borrow().iter().copied().collect();
            for key in keys {
                let Ok(partition) = self.partition(&key) else {
                    self.unsynced.borrow_mut().remove(&key);
                    continue;
                };
                match partition.log.sync_if_due().await {
                    Ok(true) => {
                        partition.appended.notify();
                        self.leader_durable_moved(&key, &partition);
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(shard = self.id, topic_id = key.topic_id, partition = key.partition, %error, "sync of written data failed")
                    }
                }
                self.take_offline_if_lost(key, &partition);
                if partition.log.durable_end() == partition.log.next_offset() {
                    self.unsynced.borrow_mut().remove(&key);
                }
            }
        }
    }

    /// Takes a served partition offline: it lost data under the running broker (its directory
    /// or files are gone), so nothing more may be acknowledged for it.
    fn take_offline(&self, key: PartitionKey, reason: String) {
        let removed = self.partitions.borrow_mut().remove(&key);
        if let Some(partition) = removed {
            tracing::error!(
                shard = self.id,
                topic_id = key.topic_id,
                partition = key.partition,
                directory = %partition.directory.display(),
                %reason,
                "partition offline: its files are gone under the running broker"
            );
            // Long polls on it end; their next read reports the partition offline.
            partition.appended.notify();
            self.offline.borrow_mut().insert(key, reason);
        }
    }

    /// Takes the partition offline if its log found its active segment unlinked (a sync or the
    /// timer's check did): nothing more may be acknowledged for it.
    fn take_offline_if_lost(&self, key: PartitionKey, partition: &Partition<F>) {
        if let Some(error) = partition.log.lost() {
            self.take_offline(key, error.to_string());
        }
    }

    /// Sleeps for `duration`, or less if shutdown is requested first; true if it was. The
    /// periodic shard tasks (recovery points, retention) end on it.
    async fn sleep_unless_stopped(&self, duration: Duration) -> bool {
        future::or(
            async {
                glommio::timer::sleep(duration).await;
                false
            },
            async {
                self.shutdown.requested().await;
                true
            },
        )
        .await
    }

    /// The partitions this shard serves now, taken out of the map so that a periodic task can
    /// await on each without holding the borrow (a topic may be created or deleted meanwhile).
    fn owned_partitions(&self) -> Vec<(PartitionKey, Rc<Partition<F>>)> {
        self.partitions
            .borrow()
            .iter()
            .map(|(key, partition)| (*key, partition.clone()))
            .collect()
    }

    /// Writes the recovery point of every partition whose durable data grew by its byte
    /// trigger (checked each second), or moved at all within `recovery_point_interval_ms`;
    /// until shutdown. A partition whose recovery point cannot be written because its
    /// directory is gone is taken offline.
    pub async fn run_recovery_points(self: Rc<Self>) {
        let interval_ms = self.limits.recovery_point_interval_ms;
        let tick = Duration::from_millis(interval_ms.min(RECOVERY_POINT_TICK_MS));
        let mut last_forced = std::time::Instant::now();
        loop {
            if self.sleep_unless_stopped(tick).await {
                return;
            }
            let force = last_forced.elapsed() >= Duration::from_millis(interval_ms);
            if force {
                last_forced = std::time::Instant::now();
            }
            for (key, partition) in self.owned_partitions() {
                // One fstat per partition and tick: a partition nobody writes to has no sync
                // that would notice its files removed, and reads of it must stop too.
                if let Err(error) = partition.log.check_linked().await {
                    if partition.log.lost().is_some() {
                        self.take_offline(key, error.to_string());
                        continue;
                    }
                    tracing::warn!(shard = self.id, topic_id = key.topic_id, partition = key.partition, %error, "checking the active segment's directory entry failed");
                }
                match partition.log.checkpoint_recovery_point(force).await {
                    Ok(_) => {}
                    Err(error) if is_gone(&error) => self.take_offline(key, error.to_string()),
                    Err(error) => {
                        tracing::warn!(shard = self.id, topic_id = key.topic_id, partition = key.partition, %error, "recovery point write failed");
                    }
                }
            }
        }
    }

    /// Applies retention to every owned partition, then sleeps; until shutdown.
    pub async fn run_retention(self: Rc<Self>) {
        let interval = Duration::from_millis(self.limits.retention_check_interval_ms);
        loop {
            if self.sleep_unless_stopped(interval).await {
                return;
            }
            for (key, partition) in self.owned_partitions() {
                if let Err(error) = partition.log.enforce_retention().await {
                    tracing::warn!(shard = self.id, topic_id = key.topic_id, partition = key.partition, %error, "retention failed");
                }
            }
        }
    }

    /// Fsyncs and closes every partition (shutdown, after every connection has finished),
    /// [`PARTITION_CLOSES_IN_FLIGHT`] at a time so that their fsyncs overlap.
    pub async fn close_partitions(&self) {
        let started = Instant::now();
        let partitions: Vec<(PartitionKey, Rc<Partition<F>>)> =
            self.partitions.borrow_mut().drain().collect();
        let count = partitions.len();
        let queue = Rc::new(RefCell::new(partitions));
        let shard = self.id;
        let closers = (0..PARTITION_CLOSES_IN_FLIGHT).map(|_| {
            let queue = queue.clone();
            async move {
                loop {
                    let Some((key, partition)) = queue.borrow_mut().pop() else {
                        return;
                    };
                    let result = match Rc::try_unwrap(partition) {
                        Ok(owned) => owned.log.close().await,
                        Err(shared) => shared.log.sync().await,
                    };
                    if let Err(error) = result {
                        tracing::error!(shard, topic_id = key.topic_id, partition = key.partition, %error, "closing partition failed");
                    }
                }
            }
        });
        join_all(closers).await;
        tracing::info!(
            shard,
            partitions = count,
            close_ms = started.elapsed().as_millis() as u64,
            "partitions synced and closed"
        );
    }

    pub fn owned_partition_count(&self) -> usize {
        self.partitions.borrow().len()
    }
}

/// Whether a storage error says the partition's directory or files no longer exist.
fn is_gone(error: &crate::storage::StorageError) -> bool {
    matches!(
        error,
        crate::storage::StorageError::Io { source, .. }
            if source.kind() == std::io::ErrorKind::NotFound
    )
}

/// What opening a topic's partitions on this shard did.
#[derive(Debug, Default)]
struct TopicOpened {
    opened: usize,
    /// The first partition that could not be opened (now offline), if any.
    first_offline: Option<PartitionError>,
}

/// Runs the futures concurrently on this shard and returns their outputs in order.
pub async fn join_all<T, F>(futures: impl IntoIterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + 'static,
    T: 'static,
{
    let tasks: Vec<glommio::Task<T>> = futures.into_iter().map(glommio::spawn_local).collect();
    let mut outputs = Vec::with_capacity(tasks.len());
    for task in tasks {
        outputs.push(task.await);
    }
    outputs
}
