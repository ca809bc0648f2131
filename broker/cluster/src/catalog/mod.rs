//! Topic metadata: names, partition counts, per-topic configuration and the placement of every
//! partition on a shard, kept durably in `<data_dir>/catalog.toml`.
//!
//! The catalog is the one piece of state shared by all shards. Readers take a cheap immutable
//! [`CatalogSnapshot`] (an `Arc`); writers are serialized by a mutex, write the new file, fsync
//! it, rename it over the old one and fsync the directory before publishing the new snapshot, so a
//! crash leaves either the old or the new catalog, never a mix. Writes do blocking file I/O: call
//! them from a blocking thread (glommio's `spawn_blocking`), never on an executor. Every file
//! operation goes through the storage file trait (`files`): [`BlockingFileSystem`] in the broker,
//! the in-memory disk in tests, so faults, crashes and operator damage reach the catalog's files
//! as they reach the logs.
//!
//! The catalog knows nothing of logs or sockets: it neither opens nor deletes partition data
//! (the shards do, see `shard`), it only names the directory each partition lives in. It owns
//! the topic directories themselves (`directories`): their `topic.toml`, the check at open that
//! they agree with the catalog, and the removal of a deleted topic's directory, which a tombstone
//! in the catalog records until it is done, so "deleted" is never confused with "unknown".

mod cluster;
pub mod directories;
mod files;
pub mod lock;
pub mod producer_ids;
pub mod topic_config;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use serde::{Deserialize, Serialize};
use spate_protocol::constants::TOPIC_NAME_BYTES_MAX;
use spate_protocol::NodeId;
use spate_storage::{BlockingFileSystem, FileSystem};

use files::FileError;

pub use cluster::{CatalogNode, ClusterPlan, ClusterTopic, ClusterView};
pub use directories::{
    recover_catalog, recover_catalog_on, RecoveredCatalog, TOPIC_METADATA_FILE_NAME,
};
pub use lock::{DataDirectoryLock, DataDirectoryLockError, LOCK_FILE_NAME};
pub use producer_ids::{
    ProducerIdAllocator, ProducerIdError, ProducerIdentity, PRODUCER_IDS_FILE_NAME,
    PRODUCER_IDS_SKIPPED_AFTER_LOSS,
};
pub use topic_config::{TopicConfig, TopicConfigError};

/// File name of the catalog inside the data directory.
pub const CATALOG_FILE_NAME: &str = "catalog.toml";
/// Directory under the data directory that holds one directory per topic.
pub const TOPICS_DIRECTORY_NAME: &str = "topics";
/// Version of the catalog file layout this build writes and reads.
const CATALOG_FORMAT_VERSION: u32 = 1;

/// Shard ids are indexes into the shard list, `0..shard_count`.
pub type ShardId = usize;

/// Why a catalog operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("catalog I/O failed: {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("catalog file {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "the catalog {path} is missing but {topics} holds {count} topic directories (e.g. \
         {example}); nothing was deleted. Run `spate-broker recover-catalog --data-dir \
         {data_dir}` to rebuild the catalog from the topic.toml in each directory, or move the \
         directories away to start empty"
    )]
    Missing {
        path: PathBuf,
        data_dir: PathBuf,
        topics: PathBuf,
        count: usize,
        example: String,
    },
    #[error(
        "the catalog and the topic directories of {data_dir} disagree, so the broker will not \
         start (nothing was deleted): {problems}. If the directories are right, `spate-broker \
         recover-catalog --data-dir {data_dir}` rebuilds the catalog from them (the old catalog \
         is kept beside it); otherwise move the directories named here out of the topics \
         directory"
    )]
    DirectoriesDisagree { data_dir: PathBuf, problems: String },
    #[error("topic name {name:?} is invalid: {reason}")]
    InvalidTopicName { name: String, reason: &'static str },
    #[error("topic {name} already exists")]
    TopicAlreadyExists { name: String },
    #[error("topic {name} does not exist")]
    UnknownTopic { name: String },
    #[error(
        "topic {name} has {existing} partitions; the new count {partitions} must be larger \
         (partitions can only be added, never removed)"
    )]
    PartitionsNotGrown {
        name: String,
        partitions: i64,
        existing: usize,
    },
    #[error("topic {name} is being created or changed by another request; try again")]
    TopicBeingChanged { name: String },
    #[error("invalid partition count {partitions}: must be 1..={limit}")]
    InvalidPartitions { partitions: i64, limit: u32 },
    #[error("the broker already holds {limit} topics")]
    TooManyTopics { limit: usize },
    #[error(
        "{partitions} more partitions would put {placed} on shard {shard}, above the limit \
         partitions_per_shard_max = {limit}"
    )]
    TooManyPartitions {
        partitions: i64,
        shard: ShardId,
        placed: usize,
        limit: usize,
    },
    #[error(
        "the data directory {data_dir} was last used by node {recorded}, not node {configured}: \
         a broker's data belongs to its node id; start it with --node-id {recorded} or use \
         another data directory"
    )]
    NodeIdChanged {
        data_dir: PathBuf,
        recorded: NodeId,
        configured: NodeId,
    },
    #[error(
        "the data directory {data_dir} holds {count} topics of a {recorded} broker, and this \
         broker starts as a {configured} broker: their replicas and ids would not match the \
         cluster's; nothing was changed. Start it as before, or use another data directory"
    )]
    ModeChanged {
        data_dir: PathBuf,
        count: usize,
        recorded: &'static str,
        configured: &'static str,
    },
    #[error(
        "topic {name}: in a cluster topics are created, deleted and changed through the \
         controller, not by one broker's catalog"
    )]
    ClusterManaged { name: String },
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    #[error(transparent)]
    ProducerIds(#[from] ProducerIdError),
}

/// One topic as the shards see it. Immutable: a change publishes a new `TopicMetadata`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicMetadata {
    pub name: String,
    /// Unique for the life of the data directory: a topic deleted and created again gets a new id
    /// and a new directory, so stale partition files of the old one can never be served.
    pub id: u64,
    /// `partition_shards[p]` is the shard that owns partition `p`.
    pub partition_shards: Vec<ShardId>,
    pub config: TopicConfig,
    /// `<data_dir>/topics/<name>.<id>`; partition `p` lives in `<directory>/<p>`.
    pub directory: PathBuf,
    /// `roles[p]` is partition `p`'s replicas and leadership as the cluster metadata last said.
    /// Empty for a single broker: every partition is then led by the local node at epoch 0,
    /// with the local node its only replica (see [`TopicMetadata::role`]).
    pub roles: Arc<Vec<PartitionRole>>,
}

/// One partition's replicas and leadership as the cluster metadata last said.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PartitionRole {
    /// Every replica, the preferred leader first.
    pub replicas: Vec<NodeId>,
    /// The in-sync replicas: those the leader may count toward the high watermark and from
    /// which a new leader is elected.
    pub isr: Vec<NodeId>,
    /// `None` while no in-sync replica is alive (the partition is offline).
    pub leader: Option<NodeId>,
    /// Bumped at every leader change; stamped into every batch the leader appends.
    pub leader_epoch: i32,
    /// Bumped at every change of the partition's replicas, ISR or leader.
    pub partition_epoch: i32,
}

impl PartitionRole {
    /// A single broker's partition: `local` is its only replica and leads it at epoch 0.
    pub fn sole(local: NodeId) -> Self {
        Self {
            replicas: vec![local],
            isr: vec![local],
            leader: Some(local),
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    pub fn replication_factor(&self) -> usize {
        self.replicas.len()
    }
}

/// One broker of the cluster as the metadata last said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerInfo {
    pub id: NodeId,
    /// The native listener's advertised endpoint.
    pub native: (String, u16),
    /// The Kafka listener's advertised endpoint, if it has one.
    pub kafka: Option<(String, u16)>,
    pub rack: Option<String>,
    /// A fenced broker leads nothing and is in no ISR until the controller unfences it.
    pub fenced: bool,
}

impl TopicMetadata {
    pub fn partition_count(&self) -> u32 {
        self.partition_shards.len() as u32
    }

    pub fn partition_directory(&self, partition: u32) -> PathBuf {
        self.directory.join(partition.to_string())
    }

    pub fn owner_of(&self, partition: u32) -> Option<ShardId> {
        self.partition_shards.get(partition as usize).copied()
    }

    /// Partition `partition`'s replicas and leadership; a single broker's partitions are led by
    /// `local`.
    pub fn role(&self, partition: u32, local: NodeId) -> PartitionRole {
        match self.roles.get(partition as usize) {
            Some(role) => role.clone(),
            None => PartitionRole::sole(local),
        }
    }

    /// Whether `local` holds a replica of `partition`.
    pub fn is_hosted(&self, partition: u32, local: NodeId) -> bool {
        match self.roles.get(partition as usize) {
            Some(role) => role.replicas.contains(&local),
            None => partition < self.partition_count(),
        }
    }
}

/// An immutable view of the catalog at one moment.
#[derive(Debug, Clone, Default)]
pub struct CatalogSnapshot {
    pub topics: BTreeMap<String, Arc<TopicMetadata>>,
    pub shard_count: usize,
    /// This broker's node id.
    pub local_node: NodeId,
    /// Every broker the metadata knows; empty for a single broker (see
    /// [`CatalogSnapshot::broker_list`]).
    pub brokers: Arc<BTreeMap<NodeId, BrokerInfo>>,
    /// The cluster controller (the metadata quorum's leader), if one is known. A single broker
    /// is its own controller.
    pub controller: Option<NodeId>,
    /// Whether the broker runs in a cluster (`--seeds`): metadata comes from the quorum.
    pub cluster_mode: bool,
    /// The cluster's id as the metadata quorum chose it (cluster mode, once known); a single
    /// broker's handlers use their own (`kafka::identity`).
    pub cluster_id: Option<String>,
}

impl CatalogSnapshot {
    /// Every broker; for a single broker, the local node with no endpoints filled in (the
    /// handlers answer with the address the client reached).
    pub fn broker_list(&self) -> Vec<NodeId> {
        if self.brokers.is_empty() {
            vec![self.local_node]
        } else {
            self.brokers.keys().copied().collect()
        }
    }

    pub fn topic(&self, name: &str) -> Option<&Arc<TopicMetadata>> {
        self.topics.get(name)
    }

    /// Every (topic, partition) that `shard` owns: partitions of which this broker holds a
    /// replica, placed on `shard`.
    pub fn partitions_of(&self, shard: ShardId) -> Vec<(Arc<TopicMetadata>, u32)> {
        let mut owned = Vec::new();
        for topic in self.topics.values() {
            for (partition, owner) in topic.partition_shards.iter().enumerate() {
                if *owner == shard && topic.is_hosted(partition as u32, self.local_node) {
                    owned.push((topic.clone(), partition as u32));
                }
            }
        }
        owned
    }
}

/// What happened to placement when the catalog was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementChange {
    pub previous_shard_count: usize,
    pub shard_count: usize,
    pub partitions_moved: usize,
}

/// The durable catalog, shared by every shard of one broker (`Arc`). Its files live on `F`:
/// the real disk through blocking calls in the broker, the in-memory disk in tests.
#[derive(Debug)]
pub struct Catalog<F: FileSystem = BlockingFileSystem> {
    file_system: F,
    data_dir: PathBuf,
    topics_max: usize,
    partitions_per_topic_max: u32,
    partitions_per_shard_max: usize,
    /// Serializes writers; holds the id to give the next topic and the topics being created.
    writer: Mutex<Writer>,
    /// Topics deleted whose directories may still exist (tombstones in the catalog file). Only
    /// changed while `writer` is held.
    deleted: Mutex<Vec<DeletedTopicRecord>>,
    current: RwLock<Arc<CatalogSnapshot>>,
    /// Broker-wide producer ids (InitProducerId); durable beside the catalog file.
    producer_ids: ProducerIdAllocator<F>,
    /// Cluster mode: the metadata index `catalog.toml` was last written from (see `cluster`).
    metadata_applied_index: AtomicU64,
}

/// What the writer lock guards.
#[derive(Debug)]
struct Writer {
    /// Ids are never reused within a process, even for a creation that was abandoned: its
    /// directories may outlive it until the next start removes them as orphans.
    next_topic_id: u64,
    /// Topics whose partitions are being created ([`Catalog::reserve_topic`]): their names are
    /// taken and their partitions count toward shard load, but no snapshot names them yet.
    reserved: BTreeMap<String, Arc<TopicMetadata>>,
}

/// The file layout (TOML). Only this struct is serialized; the snapshot is derived from it.
#[derive(Debug, Serialize, Deserialize)]
struct CatalogFile {
    version: u32,
    shard_count: usize,
    next_topic_id: u64,
    #[serde(default)]
    topics: Vec<TopicRecord>,
    /// Deleted topics whose directories may remain: removed at the next open, never mistaken
    /// for directories the catalog does not know.
    #[serde(default)]
    deleted_topics: Vec<DeletedTopicRecord>,
    /// The node this directory belongs to, recorded in cluster mode: a broker started on it
    /// with another id would claim another node's replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    node_id: Option<NodeId>,
    /// Whether the topics here are a cluster's (a mirror of the metadata quorum's image).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    cluster_mode: bool,
    /// Cluster mode: the metadata index this mirror was written from.
    #[serde(default, skip_serializing_if = "is_zero")]
    metadata_applied_index: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

#[derive(Debug, Serialize, Deserialize)]
struct TopicRecord {
    name: String,
    id: u64,
    partition_shards: Vec<ShardId>,
    /// Cluster mode: each partition's replicas as the metadata last said, so that a restart
    /// opens the partitions this broker hosts before the metadata quorum answers. Leaders and
    /// ISRs are not kept: they are stale by the time anyone reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    replicas: Vec<Vec<NodeId>>,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

impl TopicRecord {
    fn of(topic: &TopicMetadata) -> Self {
        TopicRecord {
            name: topic.name.clone(),
            id: topic.id,
            partition_shards: topic.partition_shards.clone(),
            replicas: topic
                .roles
                .iter()
                .map(|role| role.replicas.clone())
                .collect(),
            config: topic.config.to_map(),
        }
    }
}

/// A tombstone: topic `name` with `id` was deleted; its directory `<name>.<id>` may remain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct DeletedTopicRecord {
    name: String,
    id: u64,
}

impl Catalog {
    /// Opens (or creates) the catalog in `data_dir` on the real disk; see [`Catalog::open_on`].
    /// Blocking: call before the executors start or from a blocking thread.
    pub fn open(
        data_dir: &Path,
        shard_count: usize,
        topics_max: usize,
        partitions_per_topic_max: u32,
        partitions_per_shard_max: usize,
    ) -> Result<(Catalog, Option<PlacementChange>), CatalogError> {
        Catalog::open_on(
            BlockingFileSystem,
            data_dir,
            shard_count,
            topics_max,
            partitions_per_topic_max,
            partitions_per_shard_max,
        )
    }
}

impl Catalog {
    /// [`Catalog::open`] for the broker `node` (see [`Catalog::open_as_on`]).
    pub fn open_as(
        data_dir: &Path,
        shard_count: usize,
        topics_max: usize,
        partitions_per_topic_max: u32,
        partitions_per_shard_max: usize,
        node: CatalogNode,
    ) -> Result<(Catalog, Option<PlacementChange>), CatalogError> {
        Catalog::open_as_on(
            BlockingFileSystem,
            data_dir,
            shard_count,
            topics_max,
            partitions_per_topic_max,
            partitions_per_shard_max,
            node,
        )
    }
}

impl<F: FileSystem + Clone> Catalog<F> {
    /// Opens (or creates) the catalog in `data_dir`, on `file_system`, for a broker running
    /// `shard_count` shards. If the catalog was written by a broker with another shard count,
    /// every partition is placed again (deterministically, round robin in name order) and the
    /// new placement is persisted. Blocking.
    pub fn open_on(
        file_system: F,
        data_dir: &Path,
        shard_count: usize,
        topics_max: usize,
        partitions_per_topic_max: u32,
        partitions_per_shard_max: usize,
    ) -> Result<(Catalog<F>, Option<PlacementChange>), CatalogError> {
        Catalog::open_as_on(
            file_system,
            data_dir,
            shard_count,
            topics_max,
            partitions_per_topic_max,
            partitions_per_shard_max,
            CatalogNode::single(0),
        )
    }

    /// [`Catalog::open_on`] for the broker `node`: a single broker with its node id, or a
    /// cluster member whose topics mirror the cluster metadata (see `cluster`). A directory
    /// recorded for another node id, or for the other mode while it holds topics, is refused
    /// with nothing changed. Blocking.
    pub fn open_as_on(
        file_system: F,
        data_dir: &Path,
        shard_count: usize,
        topics_max: usize,
        partitions_per_topic_max: u32,
        partitions_per_shard_max: usize,
        node: CatalogNode,
    ) -> Result<(Catalog<F>, Option<PlacementChange>), CatalogError> {
        assert!(shard_count > 0, "a broker has at least one shard");
        files::create_directory(&file_system, data_dir)?;
        let topics = data_dir.join(TOPICS_DIRECTORY_NAME);
        let path = data_dir.join(CATALOG_FILE_NAME);
        let bytes = files::read(&file_system, &path)?;
        let existed = bytes.is_some();
        let file = match bytes {
            Some(bytes) => parse_catalog(&path, &bytes)?,
            None => {
                refuse_if_topics_exist(&file_system, data_dir, &path)?;
                CatalogFile {
                    version: CATALOG_FORMAT_VERSION,
                    shard_count,
                    next_topic_id: 1,
                    topics: Vec::new(),
                    deleted_topics: Vec::new(),
                    node_id: None,
                    cluster_mode: node.cluster_mode,
                    metadata_applied_index: 0,
                }
            }
        };
        cluster::check_identity(data_dir, &file, node)?;
        let identity_changed = file.cluster_mode != node.cluster_mode
            || (node.cluster_mode && file.node_id != Some(node.local_node));
        let mut snapshot = build_snapshot(data_dir, &file)?;
        cluster::set_identity(&mut snapshot, node);
        // Checked before anything is changed: a mismatch stops the open with nothing removed.
        let reconciliation = directories::reconcile(
            &file_system,
            data_dir,
            &snapshot,
            &file.deleted_topics,
            file.next_topic_id,
        )?;
        files::create_directory(&file_system, &topics)?;
        let mut change = None;
        if file.shard_count != shard_count {
            let partitions_moved = reassign(&mut snapshot, shard_count);
            change = Some(PlacementChange {
                previous_shard_count: file.shard_count,
                shard_count,
                partitions_moved,
            });
        }
        snapshot.shard_count = shard_count;
        let producer_ids = ProducerIdAllocator::open_on(file_system.clone(), data_dir, existed)?;
        if node.cluster_mode {
            producer_ids.enter_cluster_mode();
        }
        let catalog = Catalog {
            file_system,
            data_dir: data_dir.to_path_buf(),
            topics_max,
            partitions_per_topic_max,
            partitions_per_shard_max,
            writer: Mutex::new(Writer {
                next_topic_id: file.next_topic_id,
                reserved: BTreeMap::new(),
            }),
            deleted: Mutex::new(Vec::new()),
            current: RwLock::new(Arc::new(snapshot)),
            producer_ids,
            metadata_applied_index: AtomicU64::new(if node.cluster_mode {
                file.metadata_applied_index
            } else {
                0
            }),
        };
        for topic in &reconciliation.missing {
            tracing::error!(
                topic = %topic.name,
                id = topic.id,
                directory = %topic.directory.display(),
                partitions = topic.partition_count(),
                "the catalog names this topic but its directory is missing: its records are \
                 lost, its partitions are offline (never recreated empty) and the rest of the \
                 broker serves; restore the directory and restart, or delete the topic"
            );
        }
        for (directory, why) in &reconciliation.removals {
            tracing::warn!(path = %directory.display(), "{why}");
            files::remove_tree(&catalog.file_system, directory)?;
        }
        if !reconciliation.removals.is_empty() {
            files::sync_directory(&catalog.file_system, &topics)?;
        }
        for topic in &reconciliation.metadata_to_write {
            directories::write_topic_metadata(&catalog.file_system, topic)?;
        }
        // Tombstones go only once their directories are gone (above).
        if change.is_some() || !existed || !file.deleted_topics.is_empty() || identity_changed {
            let next_topic_id = file.next_topic_id;
            catalog.persist(&catalog.snapshot(), next_topic_id)?;
        }
        Ok((catalog, change))
    }

    /// Most partitions one topic may have.
    pub fn partitions_per_topic_max(&self) -> u32 {
        self.partitions_per_topic_max
    }

    /// The allocator behind InitProducerId. Its `init` is blocking, like catalog writes.
    pub fn producer_ids(&self) -> &ProducerIdAllocator<F> {
        &self.producer_ids
    }

    /// The current catalog. Cheap: one `Arc` clone under a read lock.
    pub fn snapshot(&self) -> Arc<CatalogSnapshot> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Adds a topic at once (reserve and commit). For callers that create no partition data
    /// (tests); the broker creates topics with [`Catalog::reserve_topic`] and
    /// [`Catalog::commit_topic`] around opening the partitions. Blocking.
    pub fn create_topic(
        &self,
        name: &str,
        partitions: i64,
        config: TopicConfig,
    ) -> Result<Arc<TopicMetadata>, CatalogError> {
        let topic = self.reserve_topic(name, partitions, config)?;
        self.commit_topic(&topic)?;
        Ok(topic)
    }

    /// Takes a name, an id and a placement for a new topic without naming it in any snapshot:
    /// the caller creates its partitions, then [`Catalog::commit_topic`]s it, or
    /// [`Catalog::release_topic`]s it after removing what it created. Each partition goes to the
    /// shard that owns the fewest partitions (lowest id on ties); a topic that would put more
    /// than `partitions_per_shard_max` on a shard is refused here, before anything exists.
    /// Takes the writer lock, which a persisting writer holds across fsyncs: call it from a
    /// blocking thread.
    pub fn reserve_topic(
        &self,
        name: &str,
        partitions: i64,
        config: TopicConfig,
    ) -> Result<Arc<TopicMetadata>, CatalogError> {
        self.refuse_in_cluster_mode(name)?;
        validate_topic_name(name)?;
        if partitions < 1 || partitions > i64::from(self.partitions_per_topic_max) {
            return Err(CatalogError::InvalidPartitions {
                partitions,
                limit: self.partitions_per_topic_max,
            });
        }
        let mut writer = self.lock_writer();
        let current = self.snapshot();
        if current.topics.contains_key(name) || writer.reserved.contains_key(name) {
            return Err(CatalogError::TopicAlreadyExists {
                name: name.to_string(),
            });
        }
        if current.topics.len() + writer.reserved.len() >= self.topics_max {
            return Err(CatalogError::TooManyTopics {
                limit: self.topics_max,
            });
        }
        let mut load = vec![0usize; current.shard_count];
        for topic in current.topics.values().chain(writer.reserved.values()) {
            for shard in &topic.partition_shards {
                load[*shard] += 1;
            }
        }
        let partition_shards: Vec<ShardId> = (0..partitions)
            .map(|_| {
                let shard = least_loaded(&load);
                load[shard] += 1;
                shard
            })
            .collect();
        if let Some((shard, placed)) = load
            .iter()
            .copied()
            .enumerate()
            .find(|(_, placed)| *placed > self.partitions_per_shard_max)
        {
            return Err(CatalogError::TooManyPartitions {
                partitions,
                shard,
                placed,
                limit: self.partitions_per_shard_max,
            });
        }
        let id = writer.next_topic_id;
        writer.next_topic_id += 1;
        let topic = Arc::new(TopicMetadata {
            name: name.to_string(),
            id,
            partition_shards,
            config,
            directory: topic_directory(&self.data_dir, name, id),
            roles: Arc::default(),
        });
        writer.reserved.insert(name.to_string(), topic.clone());
        Ok(topic)
    }

    /// Names a reserved topic in the catalog: persists it, then publishes it. On an error the
    /// topic stays reserved (the caller removes its partitions, then releases it). Blocking.
    pub fn commit_topic(&self, topic: &TopicMetadata) -> Result<(), CatalogError> {
        let mut writer = self.lock_writer();
        let reserved = writer.reserved.get(&topic.name).cloned();
        assert!(
            reserved.as_deref() == Some(topic),
            "only a reserved topic is committed, once"
        );
        // The directory and its topic.toml exist before the catalog names the topic, so a named
        // topic without a directory is always a mismatch; a crash in between leaves a directory
        // with an id at or above the persisted next_topic_id, removed at the next open.
        directories::write_topic_metadata(&self.file_system, topic)?;
        let mut next = (*self.snapshot()).clone();
        next.topics
            .insert(topic.name.clone(), reserved.expect("checked above"));
        self.persist(&next, writer.next_topic_id)?;
        writer.reserved.remove(&topic.name);
        self.publish(next);
        Ok(())
    }

    /// Reserves more partitions for an existing topic (Kafka's CreatePartitions: only growth):
    /// returns the topic with `partitions` partitions in all, the new ones placed like a new
    /// topic's (least loaded shard first) and checked against `partitions_per_shard_max`. No
    /// snapshot names them until [`Catalog::commit_topic`]; [`Catalog::release_topic`] gives the
    /// reservation up and the topic stays as it was. Blocking (writer lock).
    pub fn reserve_partitions(
        &self,
        name: &str,
        partitions: i64,
    ) -> Result<Arc<TopicMetadata>, CatalogError> {
        self.refuse_in_cluster_mode(name)?;
        let mut writer = self.lock_writer();
        let current = self.snapshot();
        let Some(topic) = current.topics.get(name).cloned() else {
            return Err(CatalogError::UnknownTopic {
                name: name.to_string(),
            });
        };
        if writer.reserved.contains_key(name) {
            return Err(CatalogError::TopicBeingChanged {
                name: name.to_string(),
            });
        }
        let existing = topic.partition_shards.len();
        if partitions <= existing as i64 {
            return Err(CatalogError::PartitionsNotGrown {
                name: name.to_string(),
                partitions,
                existing,
            });
        }
        if partitions > i64::from(self.partitions_per_topic_max) {
            return Err(CatalogError::InvalidPartitions {
                partitions,
                limit: self.partitions_per_topic_max,
            });
        }
        let mut load = vec![0usize; current.shard_count];
        for placed in current.topics.values().chain(writer.reserved.values()) {
            for shard in &placed.partition_shards {
                load[*shard] += 1;
            }
        }
        let mut partition_shards = topic.partition_shards.clone();
        for _ in existing..partitions as usize {
            let shard = least_loaded(&load);
            load[shard] += 1;
            partition_shards.push(shard);
        }
        if let Some((shard, placed)) = load
            .iter()
            .copied()
            .enumerate()
            .find(|(_, placed)| *placed > self.partitions_per_shard_max)
        {
            return Err(CatalogError::TooManyPartitions {
                partitions: partitions - existing as i64,
                shard,
                placed,
                limit: self.partitions_per_shard_max,
            });
        }
        let grown = Arc::new(TopicMetadata {
            partition_shards,
            ..(*topic).clone()
        });
        writer.reserved.insert(name.to_string(), grown.clone());
        Ok(grown)
    }

    /// Gives up a reserved topic's name (its creation failed and what it created is removed).
    pub fn release_topic(&self, topic: &TopicMetadata) {
        let mut writer = self.lock_writer();
        if writer
            .reserved
            .get(&topic.name)
            .is_some_and(|reserved| reserved.id == topic.id)
        {
            writer.reserved.remove(&topic.name);
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, Writer> {
        self.writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Removes a topic from the catalog, leaving a tombstone, and persists it. The caller then
    /// deletes its partition data and calls [`Catalog::finish_deletion`]; if the broker dies
    /// first, the tombstone makes the next open remove the directory. Blocking.
    pub fn delete_topic(&self, name: &str) -> Result<Arc<TopicMetadata>, CatalogError> {
        self.delete_topic_matching(name, None)
    }

    /// [`Catalog::delete_topic`], only if the topic's id is `expected_id` when one is given (a
    /// deletion by id must not remove a newer topic that took the name); otherwise
    /// `UnknownTopic`. Blocking.
    pub fn delete_topic_matching(
        &self,
        name: &str,
        expected_id: Option<u64>,
    ) -> Result<Arc<TopicMetadata>, CatalogError> {
        self.refuse_in_cluster_mode(name)?;
        let writer = self.lock_writer();
        let current = self.snapshot();
        let Some(topic) = current
            .topics
            .get(name)
            .filter(|topic| expected_id.is_none_or(|id| topic.id == id))
            .cloned()
        else {
            return Err(CatalogError::UnknownTopic {
                name: name.to_string(),
            });
        };
        let mut next = (*current).clone();
        next.topics.remove(name);
        let tombstone = DeletedTopicRecord {
            name: topic.name.clone(),
            id: topic.id,
        };
        self.deleted_topics().push(tombstone.clone());
        if let Err(error) = self.persist(&next, writer.next_topic_id) {
            self.deleted_topics().retain(|record| *record != tombstone);
            return Err(error);
        }
        self.publish(next);
        Ok(topic)
    }

    /// After every shard deleted its partitions of `topic`: removes the topic's directory and
    /// then its tombstone. A partition directory still present (a shard found it in use) keeps
    /// both until the next open. Returns whether the directory is gone. Blocking.
    pub fn finish_deletion(&self, topic: &TopicMetadata) -> Result<bool, CatalogError> {
        let writer = self.lock_writer();
        let children = files::list(&self.file_system, &topic.directory)?.unwrap_or_default();
        for child in children {
            if files::is_directory(&self.file_system, &topic.directory.join(child))? {
                return Ok(false);
            }
        }
        files::remove_tree(&self.file_system, &topic.directory)?;
        files::sync_directory(
            &self.file_system,
            &self.data_dir.join(TOPICS_DIRECTORY_NAME),
        )?;
        self.deleted_topics()
            .retain(|record| !(record.name == topic.name && record.id == topic.id));
        self.persist(&self.snapshot(), writer.next_topic_id)?;
        Ok(true)
    }

    fn deleted_topics(&self) -> std::sync::MutexGuard<'_, Vec<DeletedTopicRecord>> {
        self.deleted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replaces a topic's configuration and persists it. Blocking.
    pub fn alter_topic_config(
        &self,
        name: &str,
        config: TopicConfig,
    ) -> Result<Arc<TopicMetadata>, CatalogError> {
        self.refuse_in_cluster_mode(name)?;
        let writer = self.lock_writer();
        let current = self.snapshot();
        let Some(topic) = current.topics.get(name) else {
            return Err(CatalogError::UnknownTopic {
                name: name.to_string(),
            });
        };
        let altered = Arc::new(TopicMetadata {
            config,
            ..(**topic).clone()
        });
        // topic.toml first: after a crash in between, the catalog (the authority) still has the
        // old config and the next open rewrites topic.toml from it.
        directories::write_topic_metadata(&self.file_system, &altered)?;
        let mut next = (*current).clone();
        next.topics.insert(name.to_string(), altered.clone());
        self.persist(&next, writer.next_topic_id)?;
        self.publish(next);
        Ok(altered)
    }

    fn publish(&self, snapshot: CatalogSnapshot) {
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Arc::new(snapshot);
    }

    /// New file, fsync, rename over the old one, fsync the directory: after a crash the catalog
    /// is either wholly old or wholly new.
    fn persist(&self, snapshot: &CatalogSnapshot, next_topic_id: u64) -> Result<(), CatalogError> {
        let file = CatalogFile {
            version: CATALOG_FORMAT_VERSION,
            shard_count: snapshot.shard_count,
            next_topic_id,
            topics: snapshot
                .topics
                .values()
                .map(|topic| TopicRecord::of(topic))
                .collect(),
            deleted_topics: self.deleted_topics().clone(),
            node_id: snapshot.cluster_mode.then_some(snapshot.local_node),
            cluster_mode: snapshot.cluster_mode,
            metadata_applied_index: self
                .metadata_applied_index
                .load(std::sync::atomic::Ordering::SeqCst),
        };
        write_catalog_file(&self.file_system, &self.data_dir, &file)
    }
}

/// Writes `catalog.toml` durably (see [`files::write_file_durably`]).
fn write_catalog_file<F: FileSystem>(
    file_system: &F,
    data_dir: &Path,
    file: &CatalogFile,
) -> Result<(), CatalogError> {
    let text = toml::to_string(file).map_err(|error| CatalogError::Corrupt {
        path: data_dir.join(CATALOG_FILE_NAME),
        message: format!("cannot serialize: {error}"),
    })?;
    files::write_file_durably(file_system, data_dir, CATALOG_FILE_NAME, text.as_bytes())?;
    Ok(())
}

/// Without a catalog, topic directories cannot be told apart from strays: stop, delete nothing.
fn refuse_if_topics_exist<F: FileSystem>(
    file_system: &F,
    data_dir: &Path,
    path: &Path,
) -> Result<(), CatalogError> {
    let topics = data_dir.join(TOPICS_DIRECTORY_NAME);
    let Some(names) = files::list(file_system, &topics)? else {
        return Ok(());
    };
    let Some(example) = names.iter().min() else {
        return Ok(());
    };
    Err(CatalogError::Missing {
        path: path.to_path_buf(),
        data_dir: data_dir.to_path_buf(),
        example: example.clone(),
        count: names.len(),
        topics,
    })
}

fn least_loaded(load: &[usize]) -> ShardId {
    let mut best = 0;
    for (shard, count) in load.iter().enumerate() {
        if *count < load[best] {
            best = shard;
        }
    }
    best
}

/// Places every partition again, round robin over shards in (topic name, partition) order.
/// Returns how many partitions changed shard.
fn reassign(snapshot: &mut CatalogSnapshot, shard_count: usize) -> usize {
    let mut next_shard = 0;
    let mut moved = 0;
    for topic in snapshot.topics.values_mut() {
        let mut placed = (**topic).clone();
        for shard in placed.partition_shards.iter_mut() {
            if *shard != next_shard {
                moved += 1;
            }
            *shard = next_shard;
            next_shard = (next_shard + 1) % shard_count;
        }
        *topic = Arc::new(placed);
    }
    moved
}

fn topic_directory(data_dir: &Path, name: &str, id: u64) -> PathBuf {
    data_dir
        .join(TOPICS_DIRECTORY_NAME)
        .join(format!("{name}.{id}"))
}

fn parse_catalog(path: &Path, bytes: &[u8]) -> Result<CatalogFile, CatalogError> {
    let corrupt = |message: String| CatalogError::Corrupt {
        path: path.to_path_buf(),
        message,
    };
    let text = directories::utf8_text(bytes).map_err(corrupt)?;
    let file: CatalogFile = toml::from_str(text).map_err(|error| corrupt(error.to_string()))?;
    if file.version != CATALOG_FORMAT_VERSION {
        return Err(corrupt(format!("unknown version {}", file.version)));
    }
    if file.shard_count == 0 {
        return Err(corrupt("shard_count is zero".to_string()));
    }
    Ok(file)
}

fn build_snapshot(data_dir: &Path, file: &CatalogFile) -> Result<CatalogSnapshot, CatalogError> {
    let path = data_dir.join(CATALOG_FILE_NAME);
    let corrupt = |message: String| CatalogError::Corrupt {
        path: path.clone(),
        message,
    };
    let mut topics = BTreeMap::new();
    for record in &file.topics {
        validate_topic_name(&record.name).map_err(|error| corrupt(error.to_string()))?;
        if record.partition_shards.is_empty() {
            return Err(corrupt(format!("topic {} has no partitions", record.name)));
        }
        if record.id >= file.next_topic_id {
            return Err(corrupt(format!(
                "topic {} id is not below next_topic_id",
                record.name
            )));
        }
        // A shard id beyond the recorded count is corruption; beyond the *current* count is a
        // shard-count change, handled by `reassign`.
        if record
            .partition_shards
            .iter()
            .any(|shard| *shard >= file.shard_count)
        {
            return Err(corrupt(format!(
                "topic {} names a shard out of range",
                record.name
            )));
        }
        let config = TopicConfig::from_map(&record.config)
            .map_err(|error| corrupt(format!("topic {}: {error}", record.name)))?;
        if !record.replicas.is_empty() && record.replicas.len() != record.partition_shards.len() {
            return Err(corrupt(format!(
                "topic {} has {} partitions but replicas for {}",
                record.name,
                record.partition_shards.len(),
                record.replicas.len()
            )));
        }
        let topic = TopicMetadata {
            name: record.name.clone(),
            id: record.id,
            partition_shards: record.partition_shards.clone(),
            config,
            directory: topic_directory(data_dir, &record.name, record.id),
            roles: Arc::new(
                record
                    .replicas
                    .iter()
                    .map(|replicas| cluster::role_before_metadata(replicas))
                    .collect(),
            ),
        };
        if topics
            .insert(record.name.clone(), Arc::new(topic))
            .is_some()
        {
            return Err(corrupt(format!("topic {} is listed twice", record.name)));
        }
    }
    Ok(CatalogSnapshot {
        topics,
        shard_count: file.shard_count,
        ..CatalogSnapshot::default()
    })
}

/// Names starting with this are the broker's own topics (the group coordinator's
/// `__consumer_offsets`), as in Kafka. The catalog holds them like any topic; the request
/// handlers refuse to let clients create, delete, reconfigure or write to them.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";

/// Whether `name` is reserved for the broker's own topics (see [`INTERNAL_TOPIC_PREFIX`]).
pub const fn is_internal_topic(name: &str) -> bool {
    let (name, prefix) = (name.as_bytes(), INTERNAL_TOPIC_PREFIX.as_bytes());
    if name.len() < prefix.len() {
        return false;
    }
    let mut index = 0;
    while index < prefix.len() {
        if name[index] != prefix[index] {
            return false;
        }
        index += 1;
    }
    true
}

/// Why a name over [`TOPIC_NAME_BYTES_MAX`] (Kafka's limit, one name per file name) is refused.
const TOPIC_NAME_TOO_LONG: &str = "longer than 249 bytes";
const _: () = assert!(
    TOPIC_NAME_BYTES_MAX == 249,
    "TOPIC_NAME_TOO_LONG names the limit"
);

/// Kafka's rule: 1..=`TOPIC_NAME_BYTES_MAX` bytes of `[a-zA-Z0-9._-]`, and not `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |reason| {
        Err(CatalogError::InvalidTopicName {
            name: name.chars().take(TOPIC_NAME_BYTES_MAX + 1).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid(TOPIC_NAME_TOO_LONG);
    }
    if name == "." || name == ".." {
        return invalid("'.' and '..' are reserved");
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    if !name.bytes().all(allowed) {
        return invalid("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

impl From<FileError> for CatalogError {
    fn from(error: FileError) -> Self {
        let FileError { op, path, source } = error;
        CatalogError::Io { op, path, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(directory: &Path, shards: usize) -> (Catalog, Option<PlacementChange>) {
        Catalog::open(directory, shards, 100, 64, 1000).unwrap()
    }

    #[test]
    fn topics_survive_reopening_with_their_placement_and_config() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, change) = open(directory.path(), 2);
        assert!(change.is_none());
        let config = TopicConfig {
            retention_bytes: Some(1 << 20),
            ..TopicConfig::default()
        };
        let created = catalog.create_topic("orders", 3, config.clone()).unwrap();
        assert_eq!(created.partition_shards, vec![0, 1, 0]);
        drop(catalog);

        let (reopened, change) = open(directory.path(), 2);
        assert!(change.is_none());
        let topic = reopened.snapshot().topic("orders").cloned().unwrap();
        assert_eq!(*topic, *created);
        assert_eq!(topic.config, config);
    }

    #[test]
    fn new_partitions_go_to_the_least_loaded_shard() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 3);
        catalog
            .create_topic("a", 2, TopicConfig::default())
            .unwrap();
        let second = catalog
            .create_topic("b", 2, TopicConfig::default())
            .unwrap();
        assert_eq!(second.partition_shards, vec![2, 0]);
    }

    #[test]
    fn a_changed_shard_count_reassigns_every_partition_deterministically() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 4);
        catalog
            .create_topic("a", 4, TopicConfig::default())
            .unwrap();
        catalog
            .create_topic("b", 2, TopicConfig::default())
            .unwrap();
        drop(catalog);

        let (reopened, change) = open(directory.path(), 2);
        let change = change.expect("placement changed");
        assert_eq!(change.previous_shard_count, 4);
        assert_eq!(change.shard_count, 2);
        let snapshot = reopened.snapshot();
        for topic in snapshot.topics.values() {
            assert!(topic.partition_shards.iter().all(|shard| *shard < 2));
        }
        assert_eq!(
            snapshot.topic("a").unwrap().partition_shards,
            vec![0, 1, 0, 1]
        );
        drop(reopened);
        // The new placement was persisted: opening again with 2 shards changes nothing.
        let (_, change) = open(directory.path(), 2);
        assert!(change.is_none());
    }

    #[test]
    fn deleting_a_topic_frees_its_name_and_a_new_one_gets_a_new_directory() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let first = catalog
            .create_topic("t", 1, TopicConfig::default())
            .unwrap();
        assert!(matches!(
            catalog.create_topic("t", 1, TopicConfig::default()),
            Err(CatalogError::TopicAlreadyExists { .. })
        ));
        catalog.delete_topic("t").unwrap();
        assert!(matches!(
            catalog.delete_topic("t"),
            Err(CatalogError::UnknownTopic { .. })
        ));
        let second = catalog
            .create_topic("t", 1, TopicConfig::default())
            .unwrap();
        assert_ne!(first.directory, second.directory);
    }

    #[test]
    fn a_directory_the_catalog_does_not_name_stops_the_open_and_nothing_is_deleted() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let kept = catalog
            .create_topic("kept", 1, TopicConfig::default())
            .unwrap();
        std::fs::create_dir_all(kept.partition_directory(0)).unwrap();
        let stray = directory.path().join(TOPICS_DIRECTORY_NAME).join("gone.0");
        std::fs::create_dir_all(stray.join("0")).unwrap();
        std::fs::write(stray.join("0").join("00000000000000000000.log"), b"records").unwrap();
        drop(catalog);
        let error = Catalog::open(directory.path(), 1, 100, 64, 1000).unwrap_err();
        assert!(
            matches!(error, CatalogError::DirectoriesDisagree { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("gone.0"), "{error}");
        assert!(stray.join("0").join("00000000000000000000.log").exists());
        assert!(kept.partition_directory(0).exists());
    }

    #[test]
    fn a_reserved_topic_is_named_only_once_committed_and_a_released_one_leaves_no_trace() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 2);
        let reserved = catalog
            .reserve_topic("t", 3, TopicConfig::default())
            .unwrap();
        assert!(catalog.snapshot().topic("t").is_none());
        assert!(matches!(
            catalog.reserve_topic("t", 1, TopicConfig::default()),
            Err(CatalogError::TopicAlreadyExists { .. })
        ));
        catalog.release_topic(&reserved);
        drop(catalog);
        let (reopened, _) = open(directory.path(), 2);
        assert!(reopened.snapshot().topic("t").is_none());
        let again = reopened
            .reserve_topic("t", 3, TopicConfig::default())
            .unwrap();
        reopened.commit_topic(&again).unwrap();
        assert_eq!(*reopened.snapshot().topic("t").unwrap().clone(), *again);
    }

    #[test]
    fn ids_of_released_topics_are_not_given_again_in_the_same_process() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let released = catalog
            .reserve_topic("t", 1, TopicConfig::default())
            .unwrap();
        catalog.release_topic(&released);
        let created = catalog
            .create_topic("t", 1, TopicConfig::default())
            .unwrap();
        assert_ne!(created.directory, released.directory);
    }

    #[test]
    fn a_topic_that_would_overfill_a_shard_is_refused_before_anything_is_named() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = Catalog::open(directory.path(), 2, 100, 64, 10).unwrap();
        catalog
            .create_topic("first", 16, TopicConfig::default())
            .unwrap();
        let reserved = catalog
            .reserve_topic("pending", 2, TopicConfig::default())
            .unwrap();
        // 8 + 1 on each shard so far: three more put 11 on shard 0 (reserved ones count).
        let refusal = catalog
            .reserve_topic("third", 3, TopicConfig::default())
            .unwrap_err();
        assert!(
            matches!(
                refusal,
                CatalogError::TooManyPartitions {
                    shard: 0,
                    placed: 11,
                    limit: 10,
                    ..
                }
            ),
            "{refusal:?}"
        );
        assert!(refusal
            .to_string()
            .contains("partitions_per_shard_max = 10"));
        assert!(catalog.snapshot().topic("third").is_none());
        catalog.release_topic(&reserved);
        catalog
            .create_topic("third", 3, TopicConfig::default())
            .unwrap();
    }

    #[test]
    fn a_deleted_topic_directory_is_removed_at_open_by_its_tombstone() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let deleted = catalog
            .create_topic("deleted", 1, TopicConfig::default())
            .unwrap();
        std::fs::create_dir_all(deleted.partition_directory(0)).unwrap();
        std::fs::write(
            deleted
                .partition_directory(0)
                .join("00000000000000000000.log"),
            b"x",
        )
        .unwrap();
        catalog.delete_topic("deleted").unwrap();
        // The broker stops before the shards removed the partitions.
        drop(catalog);
        let (reopened, _) = open(directory.path(), 1);
        assert!(!deleted.directory.exists());
        drop(reopened);
        // The tombstone went with the directory: a later open finds nothing to do.
        let text = std::fs::read_to_string(directory.path().join(CATALOG_FILE_NAME)).unwrap();
        assert!(!text.contains("name = \"deleted\""), "{text}");
    }

    #[test]
    fn finishing_a_deletion_removes_the_directory_and_the_tombstone() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let topic = catalog
            .create_topic("t", 1, TopicConfig::default())
            .unwrap();
        catalog.delete_topic("t").unwrap();
        assert!(catalog.finish_deletion(&topic).unwrap());
        assert!(!topic.directory.exists());
        let text = std::fs::read_to_string(directory.path().join(CATALOG_FILE_NAME)).unwrap();
        assert!(!text.contains("name = \"t\""), "{text}");
    }

    #[test]
    fn a_creation_that_never_committed_is_removed_at_open_when_it_holds_no_records() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        drop(catalog);
        // As a crash between writing topic.toml and the catalog leaves it: id >= next_topic_id.
        let unfinished = directory.path().join(TOPICS_DIRECTORY_NAME).join("new.1");
        std::fs::create_dir_all(unfinished.join("0")).unwrap();
        let (_, _) = open(directory.path(), 1);
        assert!(!unfinished.exists());
    }

    #[test]
    fn a_lost_catalog_stops_the_open_and_recover_catalog_rebuilds_it() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 2);
        let config = TopicConfig {
            retention_bytes: Some(1 << 20),
            ..TopicConfig::default()
        };
        let created = catalog.create_topic("orders", 3, config.clone()).unwrap();
        std::fs::create_dir_all(created.partition_directory(2)).unwrap();
        drop(catalog);
        std::fs::remove_file(directory.path().join(CATALOG_FILE_NAME)).unwrap();

        let error = Catalog::open(directory.path(), 2, 100, 64, 1000).unwrap_err();
        assert!(matches!(error, CatalogError::Missing { .. }), "{error}");
        assert!(error.to_string().contains("recover-catalog"), "{error}");
        assert!(created.partition_directory(2).exists());

        let recovered = recover_catalog(directory.path()).unwrap();
        assert_eq!(recovered.topics.len(), 1);
        let (reopened, _) = open(directory.path(), 2);
        let topic = reopened.snapshot().topic("orders").cloned().unwrap();
        assert_eq!(topic.id, created.id);
        assert_eq!(topic.partition_count(), 3);
        assert_eq!(topic.config, config);
        // New topics never reuse the recovered id.
        let next = reopened
            .create_topic("later", 1, TopicConfig::default())
            .unwrap();
        assert!(next.id > created.id);
    }

    #[test]
    fn added_partitions_are_named_only_once_committed_and_only_growth_is_accepted() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 2);
        catalog
            .create_topic("t", 2, TopicConfig::default())
            .unwrap();
        for count in [1, 2] {
            let error = catalog.reserve_partitions("t", count).unwrap_err();
            assert!(
                matches!(error, CatalogError::PartitionsNotGrown { .. }),
                "{error}"
            );
        }
        assert!(matches!(
            catalog.reserve_partitions("none", 3).unwrap_err(),
            CatalogError::UnknownTopic { .. }
        ));
        let grown = catalog.reserve_partitions("t", 5).unwrap();
        assert_eq!(grown.partition_shards, vec![0, 1, 0, 1, 0]);
        assert_eq!(catalog.snapshot().topic("t").unwrap().partition_count(), 2);
        assert!(matches!(
            catalog.reserve_partitions("t", 6).unwrap_err(),
            CatalogError::TopicBeingChanged { .. }
        ));
        catalog.release_topic(&grown);
        assert_eq!(catalog.snapshot().topic("t").unwrap().partition_count(), 2);
        let grown = catalog.reserve_partitions("t", 5).unwrap();
        catalog.commit_topic(&grown).unwrap();
        drop(catalog);
        let (reopened, _) = open(directory.path(), 2);
        assert_eq!(reopened.snapshot().topic("t").unwrap().partition_count(), 5);
    }

    #[test]
    fn empty_partitions_of_an_addition_that_never_committed_are_removed_at_open() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let created = catalog
            .create_topic("t", 2, TopicConfig::default())
            .unwrap();
        let grown = catalog.reserve_partitions("t", 4).unwrap();
        for partition in 0..4 {
            std::fs::create_dir_all(created.partition_directory(partition)).unwrap();
        }
        // The crash came after topic.toml named 4 partitions but before the catalog did.
        directories::write_topic_metadata(&BlockingFileSystem, &grown).unwrap();
        drop(catalog);
        let (reopened, _) = open(directory.path(), 1);
        assert_eq!(reopened.snapshot().topic("t").unwrap().partition_count(), 2);
        assert!(created.partition_directory(1).exists());
        assert!(!created.partition_directory(2).exists());
        assert!(!created.partition_directory(3).exists());
    }

    #[test]
    fn a_catalog_with_fewer_partitions_than_the_directory_stops_the_open() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        let created = catalog
            .create_topic("t", 3, TopicConfig::default())
            .unwrap();
        for partition in 0..3 {
            std::fs::create_dir_all(created.partition_directory(partition)).unwrap();
        }
        // Records in the partition the catalog lost: not an unfinished addition, lost data.
        std::fs::write(
            created
                .partition_directory(2)
                .join("00000000000000000000.log"),
            b"x",
        )
        .unwrap();
        drop(catalog);
        let path = directory.path().join(CATALOG_FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace("[0, 0, 0]", "[0, 0]")).unwrap();
        let error = Catalog::open(directory.path(), 1, 100, 64, 1000).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("holds partition 2"), "{message}");
    }

    #[test]
    fn invalid_utf8_in_the_catalog_is_reported_as_corrupt_with_its_place() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(
            directory.path().join(CATALOG_FILE_NAME),
            b"version = 1\nshard_count = \xff1\n",
        )
        .unwrap();
        let error = Catalog::open(directory.path(), 1, 10, 10, 100).unwrap_err();
        assert!(matches!(error, CatalogError::Corrupt { .. }), "{error}");
        let message = error.to_string();
        assert!(message.contains("is corrupt"), "{message}");
        assert!(message.contains("line 2, byte 15"), "{message}");
    }

    #[test]
    fn topic_names_follow_the_kafka_rule() {
        assert!(validate_topic_name("orders.v1_eu-west").is_ok());
        assert!(validate_topic_name(&"x".repeat(249)).is_ok());
        assert!(validate_topic_name(&"x".repeat(250)).is_err());
        for bad in ["", ".", "..", "a/b", "a b", "é", "a\0"] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn partition_counts_outside_the_limit_are_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = open(directory.path(), 1);
        for partitions in [0, -1, 65] {
            assert!(matches!(
                catalog.create_topic("t", partitions, TopicConfig::default()),
                Err(CatalogError::InvalidPartitions { .. })
            ));
        }
    }

    #[test]
    fn a_corrupt_catalog_file_is_an_error_not_an_empty_catalog() {
        let directory = tempfile::tempdir().unwrap();
        std::fs::write(directory.path().join(CATALOG_FILE_NAME), "version = [").unwrap();
        assert!(matches!(
            Catalog::open(directory.path(), 1, 10, 10, 100),
            Err(CatalogError::Corrupt { .. })
        ));
    }

    #[test]
    fn only_names_starting_with_two_underscores_are_internal() {
        for internal in ["__consumer_offsets", "__", "__x"] {
            assert!(is_internal_topic(internal), "{internal}");
        }
        for ordinary in ["", "_", "_x", "x__", "a__b", "consumer_offsets"] {
            assert!(!is_internal_topic(ordinary), "{ordinary}");
        }
    }
}
