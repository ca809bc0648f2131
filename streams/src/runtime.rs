//! [`StreamsRuntime`]: a topology run against brokers, at least once. One instance is one member
//! of a consumer group named by the application id; the group gives it partitions, and it runs
//! one [`Task`] per partition number it owns. Everything happens on the thread that calls
//! [`StreamsRuntime::poll_once`]: poll a batch, process each record in its task, hand the
//! output to the producer, wait for the producer's flush, then commit the consumed positions.
//! A record's offset is committed only after everything it caused was acknowledged, so a crash
//! repeats work but never loses it. The client's I/O thread only moves bytes.
//!
//! Every store is backed by a compacted changelog topic (`<application id>-<store>-changelog`,
//! created at start with the sources' partition count): each store write of a task is sent to
//! the task's partition of it with the task's output, so it is acknowledged before the input
//! offsets that caused it are committed. When a task is created (its partition was assigned to
//! this instance, at start or on a rebalance), its stores are first restored from their
//! changelogs up to the end they had then, and only then does it process; a crash therefore
//! repeats input whose effects may already be in the changelog (at least once: a count may
//! count a record twice) but never loses a counted one. Restoring is synchronous, on the same
//! thread, through a consumer of its own; [`StreamsRuntime::restore_progress`] tells how far
//! each store got.
//!
//! Under [`ProcessingGuarantee::ExactlyOnce`] (Kafka Streams' `exactly_once_v2`), the instance
//! has one transactional producer (transactional id `<application id>-<instance id>`): each
//! commit interval (`StreamsConfig::commit_interval`; by default every poll that processed or
//! produced anything) is one transaction holding its output, its changelog writes and its
//! input offsets (sent with the group's metadata, so a member a rebalance moved past cannot
//! commit them), and every consumer (input, restore, standby) reads committed only. A new instance with the same instance id fences the old one at start, which
//! aborts the transaction the old one left open. If the group refuses the offsets (a rebalance
//! moved on), the transaction is aborted, every task is dropped, and the input is read again
//! from where the transaction began: the tasks come back restored from their committed
//! changelogs.
//!
//! With `num_standby_replicas` set, an instance also keeps standby replicas: for each partition
//! it owns, the stores of the next `num_standby_replicas` partitions (by number, wrapping) that
//! it does not own, kept up from their changelogs at every poll without blocking. When such a
//! partition is assigned to it, its task starts from the standby's stores and restores only
//! the changelog written since. (Kafka Streams places standbys with its own assignor, on other
//! instances than the active task's; this placement needs no knowledge of the other members,
//! so two instances may keep a standby of the same partition, or none may.)

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spate_client::group::{GroupConfig, GroupConsumer};
use spate_client::{Admin, Client, Consumer, ConsumerConfig, ErrorCode, NewTopic, OffsetSpec};
use spate_client::{Delivery, Error, IsolationLevel, Producer, ProducerConfig, ProducerRecord};
use spate_client::{StartAt, TopicPartition};

use crate::changelog::changelog_topic;
use crate::error::StreamsError;
use crate::task::{DeserializationPolicy, ProducedRecord, Task, TaskMetrics};
use crate::topology::{InputRecord, TopicName, Topology};

/// How a runtime runs.
#[derive(Debug, Clone)]
pub struct StreamsConfig {
    /// The consumer group and the prefix of internal topics.
    pub application_id: String,
    /// What to do with undeserializable input.
    pub deserialization_policy: DeserializationPolicy,
    /// How long one poll waits for records.
    pub poll_timeout: Duration,
    /// At least once (the default) or exactly once.
    pub processing_guarantee: ProcessingGuarantee,
    /// How many partitions, beyond those it owns, each instance keeps standby replicas of
    /// (see the module documentation); 0 (the default) keeps none.
    pub num_standby_replicas: u32,
    /// How often processed work is committed (a transaction under exactly-once); zero (the
    /// default) commits after every poll that did something. Longer intervals make fewer,
    /// larger commits and transactions, and more work to repeat (at least once) or to abort
    /// (exactly once) after a crash.
    pub commit_interval: Duration,
    /// Under exactly-once, names this instance's transactional producer
    /// (`<application id>-<instance id>`): an instance started with the instance id of one
    /// that died fences it and aborts its open transaction. Two live instances must not share
    /// one.
    pub instance_id: String,
}

/// What a crash may do to results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessingGuarantee {
    /// Output and store changes are acknowledged before the input offsets are committed: a
    /// crash repeats the input since the last commit, so a record may take effect twice.
    #[default]
    AtLeastOnce,
    /// Output, store changes and input offsets commit in one transaction per commit interval;
    /// consumers of the output that read committed see each input record's effect once.
    ExactlyOnce,
}

impl StreamsConfig {
    /// The defaults for `application_id`.
    pub fn new(application_id: &str) -> Self {
        StreamsConfig {
            application_id: application_id.to_string(),
            deserialization_policy: DeserializationPolicy::Fail,
            poll_timeout: Duration::from_millis(100),
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            instance_id: "0".to_string(),
            num_standby_replicas: 0,
            commit_interval: Duration::ZERO,
        }
    }
}

/// A standby replica: the stores of a partition this instance does not own, kept up from their
/// changelogs, and per store the next changelog offset to apply.
struct Standby {
    task: Task,
    positions: BTreeMap<String, u64>,
}

/// How far restoring one store of one task got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreProgress {
    /// Where restoring began: 0, or where the standby replica the task started from had got.
    pub start_offset: u64,
    /// The changelog's end offset when restoring began: restoring reads up to it.
    pub end_offset: u64,
    /// The changelog records applied so far.
    pub records_restored: u64,
    /// Whether the store reached `end_offset` (the task processes only after all its stores
    /// did).
    pub done: bool,
}

/// One instance of a stream processing application.
pub struct StreamsRuntime {
    topology: Arc<Topology>,
    config: StreamsConfig,
    admin: Admin,
    consumer: GroupConsumer,
    /// Reads changelogs while restoring; assigned one changelog partition at a time.
    restore_consumer: Consumer,
    /// By store and partition, the last restore of each.
    restore_progress: BTreeMap<(String, u32), RestoreProgress>,
    /// Reads the changelogs of the standby replicas; assigned all of theirs.
    standby_consumer: Consumer,
    /// The standby replicas, by partition.
    standbys: BTreeMap<u32, Standby>,
    /// The number of tasks (the sources' partition count).
    task_count: u32,
    producer: Producer,
    /// Under exactly-once, whether the transaction of this commit interval was begun.
    in_transaction: bool,
    /// Per input partition processed since the last commit, where processing began and the
    /// next offset after what it processed.
    pending_offsets: BTreeMap<TopicPartition, (u64, u64)>,
    /// The deliveries of the output sent since the last commit (at least once).
    pending_deliveries: Vec<Delivery>,
    last_commit: Instant,
    partition_counts: Arc<HashMap<String, u32>>,
    tasks: BTreeMap<u32, Task>,
    wall_clock_ms: i64,
}

impl StreamsRuntime {
    /// Finds the topics pattern sources match, checks that the source topics are co-partitioned
    /// (same partition count), creates the repartition topics with that count, learns the sink
    /// topics' counts, and subscribes. The application's own topics must exist.
    pub fn start(
        client: &Client,
        topology: Topology,
        config: StreamsConfig,
    ) -> Result<Self, StreamsError> {
        let admin = client.admin();
        let application_id = config.application_id.clone();
        let internal: BTreeSet<String> = topology
            .internal_topics()
            .iter()
            .map(|topic| topic.resolve(&application_id))
            .collect();
        // The application's source topics: those named, and those a pattern matches now (never
        // the application's own internal topics).
        let mut application_sources = BTreeSet::new();
        let mut patterns = Vec::new();
        for source in &topology.sources {
            match (&source.topic, &source.pattern) {
                (TopicName::External(name), _) => {
                    application_sources.insert(name.clone());
                }
                (TopicName::Pattern(_), Some(pattern)) => patterns.push(pattern),
                _ => {}
            }
        }
        if !patterns.is_empty() {
            for topic in admin.list_topics().wait()? {
                let matched = patterns.iter().any(|pattern| pattern.is_match(&topic.name));
                if matched && !internal.contains(&topic.name) {
                    application_sources.insert(topic.name);
                }
            }
        }
        let mut counts = HashMap::new();
        let mut source_counts = BTreeSet::new();
        for name in &application_sources {
            let count = admin.describe_topic(name).wait()?.partitions.len() as u32;
            counts.insert(name.clone(), count);
            source_counts.insert(count);
        }
        if source_counts.len() > 1 {
            return Err(StreamsError::NotCopartitioned {
                partition_counts: counts.clone().into_iter().collect(),
            });
        }
        let task_count = source_counts.into_iter().next().unwrap_or(1);
        for topic in topology.internal_topics() {
            let name = topic.resolve(&application_id);
            match admin
                .create_topic(NewTopic::new(name.clone(), task_count))
                .wait()
            {
                Ok(()) => {}
                Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {}
                Err(error) => return Err(error.into()),
            }
            counts.insert(name, task_count);
        }
        // Changelogs are compacted: a store's latest value per key is all a restore needs.
        for store in &topology.stores {
            let name = changelog_topic(&application_id, &store.name);
            let topic =
                NewTopic::new(name.clone(), task_count).with_config("cleanup.policy", "compact");
            match admin.create_topic(topic).wait() {
                Ok(()) => {}
                Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {}
                Err(error) => return Err(error.into()),
            }
            counts.insert(name, task_count);
        }
        for topic in topology.sink_topics() {
            let name = topic.resolve(&application_id);
            if let std::collections::hash_map::Entry::Vacant(entry) = counts.entry(name) {
                let count = admin.describe_topic(entry.key()).wait()?.partitions.len() as u32;
                entry.insert(count);
            }
        }
        let exactly_once = config.processing_guarantee == ProcessingGuarantee::ExactlyOnce;
        let consumer_config = ConsumerConfig {
            isolation_level: if exactly_once {
                IsolationLevel::ReadCommitted
            } else {
                IsolationLevel::ReadUncommitted
            },
            ..ConsumerConfig::default()
        };
        let group = GroupConfig::new(application_id.clone()).with_manual_commits();
        let mut consumer = GroupConsumer::new(client, consumer_config.clone(), group)?;
        let source_names: Vec<&str> = application_sources
            .iter()
            .chain(&internal)
            .map(String::as_str)
            .collect();
        consumer.subscribe(&source_names)?;
        let producer = if exactly_once {
            let producer = client.producer(ProducerConfig {
                transactional_id: Some(format!("{application_id}-{}", config.instance_id)),
                ..ProducerConfig::default()
            })?;
            // Fences an older instance with this id and aborts what it left open, before
            // anything is restored from the changelogs that transaction wrote to.
            producer.init_transactions().wait()?;
            producer
        } else {
            client.producer(ProducerConfig::default())?
        };
        let restore_consumer = client.consumer(consumer_config.clone())?;
        let standby_consumer = client.consumer(consumer_config)?;
        Ok(StreamsRuntime {
            topology: Arc::new(topology),
            config,
            admin,
            consumer,
            restore_consumer,
            restore_progress: BTreeMap::new(),
            standby_consumer,
            standbys: BTreeMap::new(),
            task_count,
            in_transaction: false,
            pending_offsets: BTreeMap::new(),
            pending_deliveries: Vec::new(),
            last_commit: Instant::now(),
            producer,
            partition_counts: Arc::new(counts),
            tasks: BTreeMap::new(),
            wall_clock_ms: wall_clock_ms(),
        })
    }

    /// Polls once, processes what came, and commits it after its output is acknowledged.
    /// Answers how many records were processed. Tasks of partitions this member no longer
    /// owns are dropped (with their state).
    pub fn poll_once(&mut self) -> Result<usize, StreamsError> {
        let polled = self.consumer.poll(self.config.poll_timeout)?;
        let owned: BTreeSet<u32> = self
            .consumer
            .assignment()
            .iter()
            .map(|partition| partition.partition)
            .collect();
        self.tasks.retain(|partition, _| owned.contains(partition));
        // The task clocks never go back, even if the system clock does.
        self.wall_clock_ms = self.wall_clock_ms.max(wall_clock_ms());
        let now_ms = self.wall_clock_ms;
        self.update_standbys(&owned, now_ms)?;
        let mut processed = 0;
        let mut deliveries = std::mem::take(&mut self.pending_deliveries);
        let mut offsets = std::mem::take(&mut self.pending_offsets);
        for record in &polled {
            offsets
                .entry(TopicPartition::new(record.topic(), record.partition()))
                .or_insert((record.offset(), record.offset()))
                .1 = record.offset() + 1;
            let task = self.task(record.partition(), now_ms)?;
            let input = InputRecord {
                key: record.key().map(<[u8]>::to_vec),
                value: record.value().map(<[u8]>::to_vec),
                timestamp_ms: record.timestamp(),
                offset: record.offset() as i64,
            };
            task.process(record.topic(), &input)?;
            processed += 1;
            let output = task.take_output();
            let changes = self.changelog_output(record.partition());
            deliveries.extend(self.send(changes)?);
            deliveries.extend(self.send(output)?);
        }
        for task in self.tasks.values_mut() {
            task.advance_wall_clock(now_ms)?;
        }
        let partitions: Vec<u32> = self.tasks.keys().copied().collect();
        let mut punctuated = Vec::new();
        for partition in partitions {
            punctuated.extend(self.changelog_output(partition));
            punctuated.extend(
                self.tasks
                    .get_mut(&partition)
                    .map(Task::take_output)
                    .unwrap_or_default(),
            );
        }
        deliveries.extend(self.send(punctuated)?);
        self.pending_deliveries = deliveries;
        self.pending_offsets = offsets;
        if self.last_commit.elapsed() >= self.config.commit_interval {
            self.commit()?;
        }
        Ok(processed)
    }

    /// Commits what was processed since the last commit: under exactly-once, the open
    /// transaction with the input offsets; at least once, the input positions once every
    /// output record is acknowledged (a failed delivery fails the call, and nothing is
    /// committed).
    fn commit(&mut self) -> Result<(), StreamsError> {
        self.last_commit = Instant::now();
        let offsets = std::mem::take(&mut self.pending_offsets);
        let deliveries = std::mem::take(&mut self.pending_deliveries);
        if self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            return self.commit_transaction(&offsets);
        }
        self.producer.flush().wait()?;
        for delivery in deliveries {
            delivery.wait()?;
        }
        if !offsets.is_empty() {
            self.consumer.commit_sync()?;
        }
        Ok(())
    }

    /// What each task counted, by partition.
    pub fn metrics(&self) -> BTreeMap<u32, TaskMetrics> {
        self.tasks
            .iter()
            .map(|(partition, task)| (*partition, task.metrics().clone()))
            .collect()
    }

    /// By store and partition, how far the last restore of each got (a store restored again,
    /// when its task came back, shows the latest restore).
    pub fn restore_progress(&self) -> BTreeMap<(String, u32), RestoreProgress> {
        self.restore_progress.clone()
    }

    /// By partition, the standby replicas this instance keeps: per store, the next changelog
    /// offset it will apply.
    pub fn standby_positions(&self) -> BTreeMap<u32, BTreeMap<String, u64>> {
        self.standbys
            .iter()
            .map(|(partition, standby)| (*partition, standby.positions.clone()))
            .collect()
    }

    /// Per owned input partition (repartition topics included), the records between this
    /// instance's position and the last high watermark it saw: how far processing trails.
    pub fn lag(&self) -> BTreeMap<(String, u32), u64> {
        self.consumer
            .assignment()
            .into_iter()
            .filter_map(|owned| {
                let lag = self.consumer.lag(&owned.topic, owned.partition)?;
                Some(((owned.topic, owned.partition), lag))
            })
            .collect()
    }

    /// Commits what was processed since the last commit, and leaves the group.
    pub fn close(mut self) -> Result<(), StreamsError> {
        self.commit()?;
        self.producer.flush().wait()?;
        self.consumer.close()?;
        Ok(())
    }

    /// The task of `partition`, created and its stores restored if this instance had none.
    fn task(&mut self, partition: u32, now_ms: i64) -> Result<&mut Task, StreamsError> {
        if !self.tasks.contains_key(&partition) {
            let (mut task, start_offsets) = match self.standbys.remove(&partition) {
                Some(standby) => {
                    self.unassign_standby(partition);
                    (standby.task, standby.positions)
                }
                None => (self.new_task(partition, now_ms), BTreeMap::new()),
            };
            self.restore(&mut task, &start_offsets)?;
            task.log_changes();
            self.tasks.insert(partition, task);
        }
        Ok(self
            .tasks
            .get_mut(&partition)
            .expect("the task was just inserted"))
    }

    fn new_task(&self, partition: u32, now_ms: i64) -> Task {
        let counts = Arc::clone(&self.partition_counts);
        Task::new(
            Arc::clone(&self.topology),
            &self.config.application_id,
            partition,
            now_ms,
            Arc::new(move |topic: &str| {
                *counts
                    .get(topic)
                    .expect("start learned the partition count of every sink topic")
            }),
            self.config.deserialization_policy,
        )
    }

    /// Reads each store's changelog partition from `start_offsets` (its start where none) to
    /// the end it has now into the task's stores.
    fn restore(
        &mut self,
        task: &mut Task,
        start_offsets: &BTreeMap<String, u64>,
    ) -> Result<(), StreamsError> {
        let partition = task.partition();
        let stores: Vec<String> = self.topology.store_names();
        for store in stores {
            let topic = changelog_topic(&self.config.application_id, &store);
            let range = [partition];
            let end_offset = self
                .admin
                .list_offsets(&topic, Some(&range), OffsetSpec::Latest)
                .wait()?
                .first()
                .and_then(|answer| answer.offset)
                .unwrap_or(0);
            let start_offset = start_offsets.get(&store).copied().unwrap_or(0);
            let mut progress = RestoreProgress {
                start_offset,
                end_offset,
                records_restored: 0,
                done: false,
            };
            self.restore_progress
                .insert((store.clone(), partition), progress);
            let start = if start_offset == 0 {
                StartAt::Earliest
            } else {
                StartAt::Offset(start_offset)
            };
            self.restore_consumer
                .assign(&topic, Some(&range), start)
                .wait()?;
            while self
                .restore_consumer
                .position(&topic, partition)
                .is_some_and(|position| position < end_offset)
            {
                for record in self.restore_consumer.poll_owned(self.config.poll_timeout)? {
                    if record.offset >= end_offset {
                        continue;
                    }
                    task.restore(
                        &store,
                        &record.key.unwrap_or_default(),
                        record.value.as_deref(),
                    )
                    .map_err(|source| StreamsError::MalformedChangelog {
                        store: store.clone(),
                        topic: topic.clone(),
                        partition,
                        offset: record.offset,
                        source,
                    })?;
                    progress.records_restored += 1;
                }
                self.restore_progress
                    .insert((store.clone(), partition), progress);
            }
            self.restore_consumer.unassign(&topic, &range);
            progress.done = true;
            self.restore_progress.insert((store, partition), progress);
        }
        Ok(())
    }

    /// Keeps the standby replicas of the next `num_standby_replicas` partitions after each
    /// owned one that this instance does not own, drops the others, and applies what their
    /// changelogs have fetched so far (without waiting).
    fn update_standbys(&mut self, owned: &BTreeSet<u32>, now_ms: i64) -> Result<(), StreamsError> {
        let replicas = self.config.num_standby_replicas;
        let wanted: BTreeSet<u32> = owned
            .iter()
            .flat_map(|partition| (1..=replicas).map(move |step| partition + step))
            .map(|partition| partition % self.task_count)
            .filter(|partition| !owned.contains(partition))
            .collect();
        // A standby of a partition now owned stays until its task is created from it.
        let unwanted: Vec<u32> = self
            .standbys
            .keys()
            .filter(|partition| !wanted.contains(partition) && !owned.contains(partition))
            .copied()
            .collect();
        for partition in unwanted {
            self.standbys.remove(&partition);
            self.unassign_standby(partition);
        }
        for partition in wanted {
            if self.standbys.contains_key(&partition) {
                continue;
            }
            let task = self.new_task(partition, now_ms);
            for store in self.topology.store_names() {
                let topic = changelog_topic(&self.config.application_id, &store);
                self.standby_consumer
                    .assign(&topic, Some(&[partition]), StartAt::Earliest)
                    .wait()?;
            }
            let positions = BTreeMap::new();
            self.standbys.insert(partition, Standby { task, positions });
        }
        if self.standbys.is_empty() {
            return Ok(());
        }
        let stores: HashMap<String, String> = self
            .topology
            .store_names()
            .into_iter()
            .map(|store| (changelog_topic(&self.config.application_id, &store), store))
            .collect();
        for record in self.standby_consumer.poll_owned(Duration::ZERO)? {
            let Some(standby) = self.standbys.get_mut(&record.partition) else {
                continue;
            };
            let store = &stores[&*record.topic];
            standby
                .task
                .restore(
                    store,
                    &record.key.unwrap_or_default(),
                    record.value.as_deref(),
                )
                .map_err(|source| StreamsError::MalformedChangelog {
                    store: store.clone(),
                    topic: record.topic.to_string(),
                    partition: record.partition,
                    offset: record.offset,
                    source,
                })?;
            standby.positions.insert(store.clone(), record.offset + 1);
        }
        Ok(())
    }

    fn unassign_standby(&self, partition: u32) {
        for store in self.topology.store_names() {
            let topic = changelog_topic(&self.config.application_id, &store);
            self.standby_consumer.unassign(&topic, &[partition]);
        }
    }

    /// The changelog records of `partition`'s task since the last call.
    fn changelog_output(&mut self, partition: u32) -> Vec<ProducedRecord> {
        let Some(task) = self.tasks.get_mut(&partition) else {
            return Vec::new();
        };
        let application_id = &self.config.application_id;
        task.take_changelog()
            .into_iter()
            .map(|change| ProducedRecord {
                topic: changelog_topic(application_id, &change.store),
                partition,
                key: Some(change.key),
                value: change.value,
                timestamp_ms: task.stream_time_ms().unwrap_or(0),
            })
            .collect()
    }

    /// Commits the open transaction with the input `offsets` (if it processed or produced
    /// anything). A refusal that leaves the producer usable aborts the transaction and rewinds:
    /// every task is dropped (its stores hold uncommitted writes) and each input partition of
    /// the transaction is read again from where the transaction began.
    fn commit_transaction(
        &mut self,
        offsets: &BTreeMap<TopicPartition, (u64, u64)>,
    ) -> Result<(), StreamsError> {
        if offsets.is_empty() && !self.in_transaction {
            return Ok(());
        }
        self.begin_transaction()?;
        self.in_transaction = false;
        let next: Vec<(TopicPartition, u64)> = offsets
            .iter()
            .map(|(partition, (_, next))| (partition.clone(), *next))
            .collect();
        let committed = if next.is_empty() {
            Ok(())
        } else {
            self.producer
                .send_offsets_to_transaction(&next, &self.consumer.group_metadata())
                .wait()
        };
        match committed.and_then(|()| self.producer.commit_transaction().wait()) {
            Ok(()) => Ok(()),
            Err(Error::TransactionAbortable { .. }) => {
                self.producer.abort_transaction().wait()?;
                self.tasks.clear();
                for (partition, (first, _)) in offsets {
                    // A partition a rebalance took away is no longer this member's to seek.
                    let _ = self
                        .consumer
                        .seek(&partition.topic, partition.partition, *first);
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    fn begin_transaction(&mut self) -> Result<(), StreamsError> {
        if !self.in_transaction {
            self.producer.begin_transaction()?;
            self.in_transaction = true;
        }
        Ok(())
    }

    fn send(&mut self, records: Vec<ProducedRecord>) -> Result<Vec<Delivery>, StreamsError> {
        if records.is_empty() {
            return Ok(Vec::new());
        }
        if self.config.processing_guarantee == ProcessingGuarantee::ExactlyOnce {
            self.begin_transaction()?;
        }
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let produced = ProducerRecord {
                topic: &record.topic,
                partition: Some(record.partition),
                key: record.key.as_deref(),
                value: record.value.as_deref(),
                headers: &[],
                timestamp: Some(record.timestamp_ms),
            };
            deliveries.push(self.producer.send_blocking(produced)?);
        }
        Ok(deliveries)
    }
}

fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| {
            i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
        })
}
