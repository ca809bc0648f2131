//! Cluster mode: the catalog as this broker's durable mirror of the cluster metadata.
//!
//! In a cluster the metadata quorum's image is the truth about topics (names, ids, configs,
//! partitions and their replicas, leaders and epochs) and brokers. The catalog keeps what this
//! broker needs to serve and to start again: every topic with its directory and `topic.toml`
//! (so the directory rules of `directories` hold unchanged), the placement of each partition on
//! a local shard (as in single mode), and each partition's replica list, so that a restart opens
//! the partitions this broker hosts before the quorum answers. Leaders and ISRs are published in
//! the snapshot but never written: they change often, and are stale by the next start (until the
//! metadata says otherwise after a restart, every partition has no known leader).
//!
//! The reconciler (`spate_server::cluster`) drives it in two steps, as single-mode creation
//! does: [`Catalog::plan_cluster`] compares an image with the snapshot and places what is new
//! (nothing published, nothing written), the reconciler opens the new partitions on their
//! shards, then [`Catalog::commit_cluster`] writes `topic.toml`s, tombstones and `catalog.toml`
//! when topics, configs or replica lists changed, and publishes the snapshot. A change of
//! leaders, ISRs or brokers only publishes. The catalog records the metadata index it mirrors:
//! an image older than that (a restarting broker replaying its log) is never applied, so a
//! restart can never delete a topic the mirror knows because the replay has not reached it.
//!
//! In cluster mode the single-mode writers (`reserve_topic`, `delete_topic`, ...) refuse with
//! [`CatalogError::ClusterManaged`]: one broker must not change what the cluster decides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use spate_protocol::NodeId;
use spate_storage::FileSystem;

use super::{
    directories, least_loaded, topic_directory, validate_topic_name, BrokerInfo, Catalog,
    CatalogError, CatalogFile, CatalogSnapshot, PartitionRole, ShardId, TopicConfig, TopicMetadata,
};

/// Who opens the catalog: a single broker (its catalog is the truth) or a cluster member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CatalogNode {
    pub local_node: NodeId,
    pub cluster_mode: bool,
}

impl CatalogNode {
    /// A broker alone (no `--seeds`), with its `--node-id` (0 by default).
    pub fn single(local_node: NodeId) -> Self {
        Self {
            local_node,
            cluster_mode: false,
        }
    }

    /// A member of a cluster: its topics come from the metadata quorum.
    pub fn cluster(local_node: NodeId) -> Self {
        Self {
            local_node,
            cluster_mode: true,
        }
    }
}

/// One topic as the cluster metadata names it: the input of [`Catalog::plan_cluster`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterTopic {
    pub name: String,
    pub id: u64,
    pub config: TopicConfig,
    /// One per partition, in partition order; never empty.
    pub roles: Vec<PartitionRole>,
}

/// The cluster metadata at one applied index, as the catalog mirrors it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// The metadata log index the view was read at.
    pub applied_index: u64,
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<NodeId, BrokerInfo>,
    /// The quorum's leader, if known.
    pub controller: Option<NodeId>,
    pub topics: Vec<ClusterTopic>,
}

/// What one image changes in the catalog; see the module documentation. The partitions of
/// `created` and `grown` (those this broker hosts) and `replicas_added` are opened before
/// [`Catalog::commit_cluster`]; those of `deleted` and `replicas_removed` are removed after it.
#[derive(Debug)]
pub struct ClusterPlan {
    /// Topics new to this broker, placed on shards.
    pub created: Vec<Arc<TopicMetadata>>,
    /// Topics with more partitions than before, and the first new partition.
    pub grown: Vec<(Arc<TopicMetadata>, u32)>,
    /// Topics the metadata no longer names (or names with a new id: deleted and created again).
    pub deleted: Vec<Arc<TopicMetadata>>,
    /// Topics whose configuration changed.
    pub altered: Vec<Arc<TopicMetadata>>,
    /// Partitions of known topics that this broker now holds a replica of (a reassignment
    /// added it), each with its topic as the new snapshot has it (placed on a shard).
    pub replicas_added: Vec<(Arc<TopicMetadata>, u32)>,
    /// Partitions of known topics whose replica on this broker is no longer one (a completed
    /// reassignment or decommission moved it away): closed and deleted after the commit. The
    /// topic is the new snapshot's, which keeps the partition's shard.
    pub replicas_removed: Vec<(Arc<TopicMetadata>, u32)>,
    /// Partitions whose replicas, ISR, leader or epochs changed (every partition when asked
    /// for every role), each with its topic as the new snapshot has it.
    pub roles_changed: Vec<(Arc<TopicMetadata>, u32)>,
    /// Whether brokers, the controller or the cluster id changed.
    pub brokers_changed: bool,
    applied_index: u64,
    base: Arc<CatalogSnapshot>,
    next: CatalogSnapshot,
    persist: bool,
}

impl ClusterPlan {
    /// Nothing to publish.
    pub fn is_empty(&self) -> bool {
        self.created.is_empty()
            && self.grown.is_empty()
            && self.deleted.is_empty()
            && self.altered.is_empty()
            && self.replicas_added.is_empty()
            && self.replicas_removed.is_empty()
            && self.roles_changed.is_empty()
            && !self.brokers_changed
    }

    /// The snapshot the commit will publish.
    pub fn snapshot(&self) -> &CatalogSnapshot {
        &self.next
    }

    /// The metadata index the plan mirrors.
    pub fn applied_index(&self) -> u64 {
        self.applied_index
    }
}

/// Refuses a data directory that belongs to another node id, or to the other mode while it
/// holds topics (a single broker's topics are not the cluster's, and the reverse).
pub(super) fn check_identity(
    data_dir: &Path,
    file: &CatalogFile,
    node: CatalogNode,
) -> Result<(), CatalogError> {
    if node.cluster_mode {
        if let Some(recorded) = file.node_id {
            if recorded != node.local_node {
                return Err(CatalogError::NodeIdChanged {
                    data_dir: data_dir.to_path_buf(),
                    recorded,
                    configured: node.local_node,
                });
            }
        }
    }
    let mode = |cluster: bool| if cluster { "cluster" } else { "single" };
    if file.cluster_mode != node.cluster_mode && !file.topics.is_empty() {
        return Err(CatalogError::ModeChanged {
            data_dir: data_dir.to_path_buf(),
            count: file.topics.len(),
            recorded: mode(file.cluster_mode),
            configured: mode(node.cluster_mode),
        });
    }
    Ok(())
}

/// The snapshot's broker identity. A single broker is its own controller.
pub(super) fn set_identity(snapshot: &mut CatalogSnapshot, node: CatalogNode) {
    snapshot.local_node = node.local_node;
    snapshot.cluster_mode = node.cluster_mode;
    snapshot.controller = (!node.cluster_mode).then_some(node.local_node);
}

/// A partition's role read back from the mirror at start: its replicas, no known leader or
/// ISR, unknown epochs (-1, Kafka's "unknown"), until the metadata says.
pub(super) fn role_before_metadata(replicas: &[NodeId]) -> PartitionRole {
    PartitionRole {
        replicas: replicas.to_vec(),
        isr: Vec::new(),
        leader: None,
        leader_epoch: -1,
        partition_epoch: -1,
    }
}

impl<F: FileSystem + Clone> Catalog<F> {
    /// The metadata index the durable mirror was last written from: images older than this are
    /// not planned (see the module documentation).
    pub fn metadata_applied_index(&self) -> u64 {
        self.metadata_applied_index.load(Ordering::SeqCst)
    }

    /// Compares the cluster metadata `view` with the current snapshot. `None` when the image is older than what the mirror holds.
    /// `every_role`: list every partition in `roles_changed` (the first plan after a start,
    /// when the shards know no role yet). Places each new partition this broker hosts on the
    /// shard with the fewest hosted partitions (others on `partition % shards`: they are never
    /// opened here). Writes nothing; called only by the one reconciler of a cluster broker.
    pub fn plan_cluster(&self, view: ClusterView, every_role: bool) -> Option<ClusterPlan> {
        let ClusterView {
            applied_index,
            cluster_id,
            brokers,
            controller,
            topics,
        } = view;
        let base = self.snapshot();
        assert!(base.cluster_mode, "only a cluster member mirrors metadata");
        if applied_index < self.metadata_applied_index() {
            return None;
        }
        let local = base.local_node;
        let mut next = (*base).clone();
        let brokers_changed = *base.brokers != brokers
            || base.controller != controller
            || base.cluster_id != cluster_id;
        next.brokers = Arc::new(brokers);
        next.controller = controller;
        next.cluster_id = cluster_id;
        let mut load = vec![0usize; base.shard_count];
        for topic in base.topics.values() {
            for (partition, shard) in topic.partition_shards.iter().enumerate() {
                if topic.is_hosted(partition as u32, local) {
                    load[*shard] += 1;
                }
            }
        }
        let mut plan = ClusterPlan {
            created: Vec::new(),
            grown: Vec::new(),
            deleted: Vec::new(),
            altered: Vec::new(),
            replicas_added: Vec::new(),
            replicas_removed: Vec::new(),
            roles_changed: Vec::new(),
            brokers_changed,
            applied_index,
            base: base.clone(),
            next: CatalogSnapshot::default(),
            persist: false,
        };
        let mut named = BTreeSet::new();
        for topic in topics {
            if let Err(error) = validate_topic_name(&topic.name) {
                tracing::error!(%error, id = topic.id, "the cluster metadata names a topic this broker cannot hold; ignored");
                continue;
            }
            if topic.roles.is_empty() {
                tracing::error!(topic = %topic.name, "the cluster metadata names a topic without partitions; ignored");
                continue;
            }
            named.insert(topic.name.clone());
            let existing = base.topics.get(&topic.name).cloned();
            let existing = match existing {
                Some(existing) if existing.id == topic.id => existing,
                Some(replaced) => {
                    // Deleted and created again while this broker was not looking.
                    plan.deleted.push(replaced);
                    plan.persist = true;
                    self.plan_new_topic(topic, &mut load, &mut plan, &mut next);
                    continue;
                }
                None => {
                    self.plan_new_topic(topic, &mut load, &mut plan, &mut next);
                    continue;
                }
            };
            let old_count = existing.partition_count() as usize;
            if topic.roles.len() < old_count {
                tracing::error!(
                    topic = %topic.name,
                    partitions = topic.roles.len(),
                    known = old_count,
                    "the cluster metadata names fewer partitions than this broker knows; \
                     partitions are never removed, so the change is ignored"
                );
                continue;
            }
            let mut partition_shards = existing.partition_shards.clone();
            let mut added = Vec::new();
            let mut removed = Vec::new();
            for (partition, role) in topic.roles.iter().enumerate().take(old_count) {
                let was_hosted = existing.is_hosted(partition as u32, local);
                match (was_hosted, role.replicas.contains(&local)) {
                    // Never opened here, so it may take the least loaded shard.
                    (false, true) => {
                        partition_shards[partition] = place(&mut load, partition, role, local);
                        added.push(partition as u32);
                    }
                    (true, false) => removed.push(partition as u32),
                    _ => {}
                }
            }
            for (partition, role) in topic.roles.iter().enumerate().skip(old_count) {
                partition_shards.push(place(&mut load, partition, role, local));
            }
            let replicas_changed = (0..old_count).any(|partition| {
                existing.role(partition as u32, local).replicas != topic.roles[partition].replicas
            });
            let config_changed = existing.config != topic.config;
            let updated = Arc::new(TopicMetadata {
                partition_shards,
                config: topic.config,
                roles: Arc::new(topic.roles),
                ..(*existing).clone()
            });
            for partition in 0..updated.partition_count() {
                let changed = partition as usize >= old_count
                    || existing.role(partition, local) != updated.role(partition, local);
                if every_role || changed {
                    plan.roles_changed.push((updated.clone(), partition));
                }
            }
            if updated.partition_count() as usize > old_count {
                plan.grown.push((updated.clone(), old_count as u32));
            }
            if config_changed {
                plan.altered.push(updated.clone());
            }
            for partition in added {
                plan.replicas_added.push((updated.clone(), partition));
            }
            for partition in removed {
                plan.replicas_removed.push((updated.clone(), partition));
            }
            plan.persist |= replicas_changed || config_changed || topic_grew(&updated, old_count);
            next.topics.insert(updated.name.clone(), updated);
        }
        for (name, topic) in &base.topics {
            if !named.contains(name) {
                plan.deleted.push(topic.clone());
                next.topics.remove(name);
                plan.persist = true;
            }
        }
        plan.next = next;
        Some(plan)
    }

    fn plan_new_topic(
        &self,
        topic: ClusterTopic,
        load: &mut [usize],
        plan: &mut ClusterPlan,
        next: &mut CatalogSnapshot,
    ) {
        let local = plan.base.local_node;
        let partition_shards = topic
            .roles
            .iter()
            .enumerate()
            .map(|(partition, role)| place(load, partition, role, local))
            .collect();
        let created = Arc::new(TopicMetadata {
            directory: topic_directory(&self.data_dir, &topic.name, topic.id),
            name: topic.name,
            id: topic.id,
            partition_shards,
            config: topic.config,
            roles: Arc::new(topic.roles),
        });
        for partition in 0..created.partition_count() {
            plan.roles_changed.push((created.clone(), partition));
        }
        plan.created.push(created.clone());
        plan.persist = true;
        next.topics.insert(created.name.clone(), created);
    }

    /// Makes `plan` durable where it changed what the mirror keeps (each new, grown or altered
    /// topic's `topic.toml` first, then `catalog.toml` with tombstones for deleted topics and
    /// the applied index), then publishes its snapshot. Blocking when it writes. On an error
    /// nothing is published and the tombstones are taken back; the reconciler tries again.
    pub fn commit_cluster(&self, plan: ClusterPlan) -> Result<Arc<CatalogSnapshot>, CatalogError> {
        let mut writer = self.lock_writer();
        assert!(
            Arc::ptr_eq(&self.snapshot(), &plan.base),
            "a cluster catalog changes only through its reconciler's plans, one at a time"
        );
        if plan.persist {
            for topic in plan
                .created
                .iter()
                .chain(plan.grown.iter().map(|(topic, _)| topic))
                .chain(plan.altered.iter())
            {
                directories::write_topic_metadata(&self.file_system, topic)?;
            }
            let tombstones: Vec<_> = plan
                .deleted
                .iter()
                .map(|topic| super::DeletedTopicRecord {
                    name: topic.name.clone(),
                    id: topic.id,
                })
                .collect();
            self.deleted_topics().extend(tombstones.iter().cloned());
            let highest_id = plan
                .next
                .topics
                .values()
                .chain(plan.deleted.iter())
                .map(|topic| topic.id)
                .max()
                .unwrap_or(0);
            let next_topic_id = writer.next_topic_id.max(highest_id + 1);
            let previous_index = self
                .metadata_applied_index
                .swap(plan.applied_index, Ordering::SeqCst);
            if let Err(error) = self.persist(&plan.next, next_topic_id) {
                self.deleted_topics()
                    .retain(|record| !tombstones.contains(record));
                self.metadata_applied_index
                    .store(previous_index, Ordering::SeqCst);
                return Err(error);
            }
            writer.next_topic_id = next_topic_id;
        }
        let published = Arc::new(plan.next);
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = published.clone();
        Ok(published)
    }

    /// Refuses a single-mode change of a cluster's catalog.
    pub(super) fn refuse_in_cluster_mode(&self, name: &str) -> Result<(), CatalogError> {
        if self.snapshot().cluster_mode {
            return Err(CatalogError::ClusterManaged {
                name: name.to_string(),
            });
        }
        Ok(())
    }
}

fn topic_grew(topic: &TopicMetadata, old_count: usize) -> bool {
    topic.partition_count() as usize > old_count
}

/// The shard of a new partition: the least loaded for one this broker hosts.
fn place(load: &mut [usize], partition: usize, role: &PartitionRole, local: NodeId) -> ShardId {
    if role.replicas.contains(&local) {
        let shard = least_loaded(load);
        load[shard] += 1;
        shard
    } else {
        partition % load.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CATALOG_FILE_NAME;

    fn open_cluster(directory: &Path, node: NodeId, shards: usize) -> Catalog {
        Catalog::open_as_on(
            spate_storage::BlockingFileSystem,
            directory,
            shards,
            100,
            64,
            1000,
            CatalogNode::cluster(node),
        )
        .unwrap()
        .0
    }

    fn role(replicas: &[NodeId], leader: NodeId, epoch: i32) -> PartitionRole {
        PartitionRole {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader: Some(leader),
            leader_epoch: epoch,
            partition_epoch: epoch,
        }
    }

    fn topic(name: &str, id: u64, roles: Vec<PartitionRole>) -> ClusterTopic {
        ClusterTopic {
            name: name.to_string(),
            id,
            config: TopicConfig::default(),
            roles,
        }
    }

    fn view(
        applied_index: u64,
        topics: Vec<ClusterTopic>,
        brokers: BTreeMap<NodeId, BrokerInfo>,
        controller: Option<NodeId>,
    ) -> ClusterView {
        ClusterView {
            applied_index,
            cluster_id: Some("c".to_string()),
            brokers,
            controller,
            topics,
        }
    }

    fn broker(id: NodeId) -> (NodeId, BrokerInfo) {
        (
            id,
            BrokerInfo {
                id,
                native: ("127.0.0.1".to_string(), 9000 + id as u16),
                kafka: None,
                rack: None,
                fenced: false,
            },
        )
    }

    #[test]
    fn a_new_topic_is_published_only_at_commit_with_its_roles_and_hosted_partitions_placed() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 2);
        let roles = vec![
            role(&[1, 2], 1, 0),
            role(&[2, 3], 2, 0),
            role(&[3, 1], 3, 0),
        ];
        let plan = catalog
            .plan_cluster(
                view(
                    5,
                    vec![topic("t", 7, roles.clone())],
                    [broker(1), broker(2), broker(3)].into(),
                    Some(2),
                ),
                false,
            )
            .unwrap();
        assert_eq!(plan.created.len(), 1);
        assert_eq!(plan.roles_changed.len(), 3);
        assert!(catalog.snapshot().topic("t").is_none());
        let created = plan.created[0].clone();
        // Partitions 0 and 2 are hosted here: one on each shard.
        let hosted: Vec<_> = [0, 2]
            .iter()
            .map(|p| created.partition_shards[*p])
            .collect();
        assert_eq!(hosted, vec![0, 1]);
        assert!(!created.is_hosted(1, 1));
        let snapshot = catalog.commit_cluster(plan).unwrap();
        let published = snapshot.topic("t").unwrap();
        assert_eq!(published.id, 7);
        assert_eq!(*published.roles, roles);
        assert_eq!(snapshot.controller, Some(2));
        assert_eq!(snapshot.broker_list(), vec![1, 2, 3]);
        assert_eq!(
            snapshot
                .partitions_of(0)
                .iter()
                .map(|(_, p)| *p)
                .collect::<Vec<_>>(),
            vec![0]
        );
        assert!(created.directory.join("topic.toml").exists());
        assert_eq!(catalog.metadata_applied_index(), 5);
    }

    #[test]
    fn leadership_changes_publish_without_rewriting_the_catalog_file() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 1);
        let plan = catalog
            .plan_cluster(
                view(
                    3,
                    vec![topic("t", 1, vec![role(&[1, 2], 1, 0)])],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        catalog.commit_cluster(plan).unwrap();
        let file = directory.path().join(CATALOG_FILE_NAME);
        let written = std::fs::read_to_string(&file).unwrap();
        std::fs::write(&file, format!("{written}\n# untouched\n")).unwrap();
        let plan = catalog
            .plan_cluster(
                view(
                    9,
                    vec![topic("t", 1, vec![role(&[1, 2], 2, 1)])],
                    BTreeMap::new(),
                    Some(2),
                ),
                false,
            )
            .unwrap();
        assert!(plan.created.is_empty() && plan.deleted.is_empty() && plan.altered.is_empty());
        assert_eq!(plan.roles_changed.len(), 1);
        let snapshot = catalog.commit_cluster(plan).unwrap();
        assert_eq!(snapshot.topic("t").unwrap().roles[0].leader, Some(2));
        assert!(std::fs::read_to_string(&file)
            .unwrap()
            .contains("# untouched"));
        // The mirror's index moved only with what it keeps.
        assert_eq!(catalog.metadata_applied_index(), 3);
        // Nothing changed: an empty plan.
        let plan = catalog
            .plan_cluster(
                view(
                    10,
                    vec![topic("t", 1, vec![role(&[1, 2], 2, 1)])],
                    BTreeMap::new(),
                    Some(2),
                ),
                false,
            )
            .unwrap();
        assert!(plan.is_empty());
    }

    #[test]
    fn a_replica_moved_onto_or_off_this_broker_is_listed_to_open_or_to_delete() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 2);
        let before = vec![role(&[1, 2], 1, 0), role(&[2, 3], 2, 0)];
        let plan = catalog
            .plan_cluster(
                view(3, vec![topic("t", 1, before)], BTreeMap::new(), None),
                false,
            )
            .unwrap();
        assert!(plan.replicas_added.is_empty() && plan.replicas_removed.is_empty());
        catalog.commit_cluster(plan).unwrap();
        let hosted_shard = catalog.snapshot().topic("t").unwrap().partition_shards[0];
        // Partition 0 moves off broker 1, partition 1 onto it.
        let after = vec![role(&[2, 3], 2, 1), role(&[2, 3, 1], 2, 1)];
        let plan = catalog
            .plan_cluster(
                view(4, vec![topic("t", 1, after)], BTreeMap::new(), None),
                false,
            )
            .unwrap();
        let listed = |list: &[(Arc<TopicMetadata>, u32)]| -> Vec<u32> {
            list.iter().map(|(_, partition)| *partition).collect()
        };
        assert_eq!(listed(&plan.replicas_added), vec![1]);
        assert_eq!(listed(&plan.replicas_removed), vec![0]);
        let (removed_topic, _) = &plan.replicas_removed[0];
        assert_eq!(
            removed_topic.owner_of(0),
            Some(hosted_shard),
            "a removed replica is deleted on the shard that holds it"
        );
        let (added_topic, _) = &plan.replicas_added[0];
        assert!(added_topic.is_hosted(1, 1));
        assert_ne!(
            added_topic.owner_of(1),
            Some(hosted_shard),
            "an added replica goes to the least loaded shard"
        );
        assert!(!plan.is_empty());
        catalog.commit_cluster(plan).unwrap();
        assert_eq!(
            catalog.metadata_applied_index(),
            4,
            "replica lists are kept"
        );
    }

    #[test]
    fn a_restart_keeps_replicas_forgets_leaders_and_ignores_older_images() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 1);
        let plan = catalog
            .plan_cluster(
                view(
                    20,
                    vec![topic(
                        "t",
                        4,
                        vec![role(&[1, 2], 1, 3), role(&[2, 3], 2, 3)],
                    )],
                    BTreeMap::new(),
                    Some(1),
                ),
                false,
            )
            .unwrap();
        catalog.commit_cluster(plan).unwrap();
        drop(catalog);
        let catalog = open_cluster(directory.path(), 1, 1);
        let snapshot = catalog.snapshot();
        assert!(snapshot.cluster_mode);
        assert_eq!(snapshot.local_node, 1);
        assert_eq!(snapshot.controller, None);
        let topic_after = snapshot.topic("t").unwrap();
        assert_eq!(topic_after.roles[0].replicas, vec![1, 2]);
        assert_eq!(topic_after.roles[0].leader, None);
        assert!(!topic_after.is_hosted(1, 1));
        // A replaying quorum's image from before the mirror deletes nothing.
        assert!(catalog
            .plan_cluster(view(4, Vec::new(), BTreeMap::new(), None), true)
            .is_none());
        // Caught up: every role is listed on the first plan.
        let plan = catalog
            .plan_cluster(
                view(
                    20,
                    vec![topic(
                        "t",
                        4,
                        vec![role(&[1, 2], 1, 3), role(&[2, 3], 2, 3)],
                    )],
                    BTreeMap::new(),
                    Some(1),
                ),
                true,
            )
            .unwrap();
        assert_eq!(plan.roles_changed.len(), 2);
    }

    #[test]
    fn topics_gone_from_the_metadata_or_replaced_by_a_new_id_are_deleted_with_a_tombstone() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 1);
        let plan = catalog
            .plan_cluster(
                view(
                    1,
                    vec![
                        topic("gone", 1, vec![role(&[1], 1, 0)]),
                        topic("again", 2, vec![role(&[1], 1, 0)]),
                    ],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        catalog.commit_cluster(plan).unwrap();
        let plan = catalog
            .plan_cluster(
                view(
                    2,
                    vec![topic("again", 3, vec![role(&[1], 1, 0)])],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        let mut deleted: Vec<_> = plan
            .deleted
            .iter()
            .map(|t| (t.name.clone(), t.id))
            .collect();
        deleted.sort();
        assert_eq!(
            deleted,
            vec![("again".to_string(), 2), ("gone".to_string(), 1)]
        );
        assert_eq!(plan.created.len(), 1);
        let snapshot = catalog.commit_cluster(plan).unwrap();
        assert_eq!(snapshot.topic("again").unwrap().id, 3);
        assert!(snapshot.topic("gone").is_none());
        let text = std::fs::read_to_string(directory.path().join(CATALOG_FILE_NAME)).unwrap();
        assert!(text.contains("deleted_topics"), "{text}");
    }

    #[test]
    fn growth_and_config_changes_are_planned_and_shrinking_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 2);
        let plan = catalog
            .plan_cluster(
                view(
                    1,
                    vec![topic("t", 1, vec![role(&[1], 1, 0)])],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        catalog.commit_cluster(plan).unwrap();
        let mut grown = topic("t", 1, vec![role(&[1], 1, 0), role(&[1], 1, 0)]);
        grown.config = TopicConfig {
            retention_bytes: Some(1 << 20),
            ..TopicConfig::default()
        };
        let plan = catalog
            .plan_cluster(view(2, vec![grown], BTreeMap::new(), None), false)
            .unwrap();
        assert_eq!(plan.grown.len(), 1);
        assert_eq!(plan.grown[0].1, 1);
        assert_eq!(plan.altered.len(), 1);
        assert_eq!(plan.roles_changed.len(), 1);
        let snapshot = catalog.commit_cluster(plan).unwrap();
        assert_eq!(snapshot.topic("t").unwrap().partition_shards, vec![0, 1]);
        let plan = catalog
            .plan_cluster(
                view(
                    3,
                    vec![topic("t", 1, vec![role(&[1], 1, 0)])],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        assert!(plan.grown.is_empty() && plan.deleted.is_empty());
        let snapshot = catalog.commit_cluster(plan).unwrap();
        assert_eq!(snapshot.topic("t").unwrap().partition_count(), 2);
    }

    #[test]
    fn a_directory_of_another_node_or_mode_is_refused_and_single_writers_refuse_in_a_cluster() {
        let directory = tempfile::tempdir().unwrap();
        let catalog = open_cluster(directory.path(), 1, 1);
        assert!(matches!(
            catalog.create_topic("t", 1, TopicConfig::default()),
            Err(CatalogError::ClusterManaged { .. })
        ));
        let plan = catalog
            .plan_cluster(
                view(
                    1,
                    vec![topic("t", 1, vec![role(&[1], 1, 0)])],
                    BTreeMap::new(),
                    None,
                ),
                false,
            )
            .unwrap();
        catalog.commit_cluster(plan).unwrap();
        assert!(matches!(
            catalog.delete_topic("t"),
            Err(CatalogError::ClusterManaged { .. })
        ));
        drop(catalog);
        let other = Catalog::open_as_on(
            spate_storage::BlockingFileSystem,
            directory.path(),
            1,
            100,
            64,
            1000,
            CatalogNode::cluster(2),
        );
        assert!(matches!(
            other,
            Err(CatalogError::NodeIdChanged {
                recorded: 1,
                configured: 2,
                ..
            })
        ));
        let single = Catalog::open_as_on(
            spate_storage::BlockingFileSystem,
            directory.path(),
            1,
            100,
            64,
            1000,
            CatalogNode::single(1),
        );
        assert!(matches!(single, Err(CatalogError::ModeChanged { .. })));
    }

    #[test]
    fn a_single_broker_is_its_own_controller_under_its_node_id() {
        let directory = tempfile::tempdir().unwrap();
        let (catalog, _) = Catalog::open_as_on(
            spate_storage::BlockingFileSystem,
            directory.path(),
            1,
            100,
            64,
            1000,
            CatalogNode::single(5),
        )
        .unwrap();
        let created = catalog
            .create_topic("t", 1, TopicConfig::default())
            .unwrap();
        let snapshot = catalog.snapshot();
        assert_eq!(snapshot.local_node, 5);
        assert_eq!(snapshot.controller, Some(5));
        assert!(!snapshot.cluster_mode);
        assert_eq!(created.role(0, 5), PartitionRole::sole(5));
        assert_eq!(snapshot.partitions_of(0).len(), 1);
    }
}
