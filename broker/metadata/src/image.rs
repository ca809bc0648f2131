//! The metadata image: the state the Raft log replicates (cluster id, brokers, topics with
//! their partitions' replicas, ISR, leaders and epochs, id counters, and the security part:
//! users and ACL bindings, `security.rs`) and `apply`, the one
//! deterministic function from (image, command) to (image, outcome).
//!
//! Every validation happens here, at apply, against the image as it is at that index: two
//! brokers proposing the same topic at once get `TopicExists` for the later one on every node.
//! A refused command leaves the image as it was (only `applied_index` moves). Nothing here reads
//! a clock, a random number or a hash map's order, so every node computes the same image.
//!
//! The rules (REPL.md section 1), each with its tests below:
//! - Leaders come only from the ISR (never an unclean election) and are never fenced; an ISR is
//!   a subset of the replicas and never empty (fencing its last member leaves it there and the
//!   partition without a leader until that member returns).
//! - A leader change bumps `leader_epoch`; every change of a partition bumps `partition_epoch`.
//! - Replica assignment: round-robin over active brokers sorted by id, starting at
//!   `topic_id % n`; partition p gets brokers `(start + p + k) % n` for k in 0..RF.
//! - A reassignment keeps `replicas = target ++ removing` until every target replica is in the
//!   ISR, then completes in the same apply that makes it so (as Kafka's KRaft controller does).
//!
//! What is not here: when to fence or unfence (the controller, `controller.rs`), how entries
//! reach the image (the node, `node.rs`), topic config keys other than `min.insync.replicas`
//! (validated by the proposer's catalog rules: they depend on nothing in the image).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spate_protocol::constants::TOPIC_NAME_BYTES_MAX;
use spate_protocol::NodeId;

use crate::commands::{ApplyOutcome, ElectionResult, MetadataCommand};
use crate::config::limits;
use crate::error::ApplyError;
use crate::security::SecurityImage;

/// The topic config key the image itself checks (against the replication factor).
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";

/// What the controller knows of one broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerState {
    pub id: NodeId,
    /// Grows at every start of the broker process; a smaller one is stale.
    pub incarnation: u64,
    /// Advertised native endpoint (host, port).
    pub native: (String, u16),
    /// Advertised Kafka endpoint, if the broker serves Kafka.
    pub kafka: Option<(String, u16)>,
    pub rack: Option<String>,
    /// Fenced brokers lead nothing and join no ISR; a new incarnation starts fenced.
    pub fenced: bool,
    /// Being emptied of its replicas; takes no new ones.
    pub decommissioning: bool,
    /// The log index at which this incarnation registered: the controller unfences the broker
    /// only once its metadata log has reached it.
    pub registered_index: u64,
}

/// A broker's state in words (Kafka's terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerStatus {
    Active,
    Fenced,
    Decommissioning,
}

impl BrokerState {
    /// Takes new replicas and leaderships.
    pub fn is_active(&self) -> bool {
        !self.fenced && !self.decommissioning
    }

    pub fn status(&self) -> BrokerStatus {
        if self.fenced {
            BrokerStatus::Fenced
        } else if self.decommissioning {
            BrokerStatus::Decommissioning
        } else {
            BrokerStatus::Active
        }
    }
}

/// One partition's replicas and leadership.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionImage {
    /// Every replica; the first is the preferred leader. While reassigning: target ++ removing.
    pub replicas: Vec<NodeId>,
    /// In-sync replicas: a non-empty subset of `replicas`.
    pub isr: Vec<NodeId>,
    /// None: every ISR member is fenced, the partition is offline.
    pub leader: Option<NodeId>,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    /// Replicas a reassignment adds (catching up, not yet in the target's ISR).
    pub adding: Vec<NodeId>,
    /// Replicas a reassignment removes once the target is in sync.
    pub removing: Vec<NodeId>,
}

impl PartitionImage {
    fn new(replicas: Vec<NodeId>) -> Self {
        Self {
            leader: replicas.first().copied(),
            isr: replicas.clone(),
            replicas,
            leader_epoch: 0,
            partition_epoch: 0,
            adding: Vec::new(),
            removing: Vec::new(),
        }
    }

    pub fn is_reassigning(&self) -> bool {
        !self.adding.is_empty() || !self.removing.is_empty()
    }

    /// The replicas the partition will have once its reassignment (if any) completes.
    pub fn target_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|replica| !self.removing.contains(replica))
            .collect()
    }

    /// The replicas it had before its reassignment (if any) started.
    pub fn original_replicas(&self) -> Vec<NodeId> {
        self.replicas
            .iter()
            .copied()
            .filter(|replica| !self.adding.contains(replica))
            .collect()
    }

    /// Whether `node` leads or follows this partition.
    pub fn is_hosted_by(&self, node: NodeId) -> bool {
        self.replicas.contains(&node)
    }
}

/// One topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    pub name: String,
    pub id: u64,
    /// Only the keys set explicitly; defaults are the readers' (see `min_insync_replicas`).
    pub config: BTreeMap<String, String>,
    /// Index = partition number.
    pub partitions: Vec<PartitionImage>,
}

impl TopicImage {
    /// The target replication factor (of partition 0; every partition has the same).
    pub fn replication_factor(&self) -> usize {
        self.partitions
            .first()
            .map(|partition| partition.target_replicas().len())
            .unwrap_or(0)
    }

    /// The topic's `min.insync.replicas`: as configured, else a majority of the replication
    /// factor (Spate's default: an acknowledged write survives the loss of any minority).
    pub fn min_insync_replicas(&self) -> u16 {
        self.config
            .get(MIN_INSYNC_REPLICAS)
            .and_then(|value| value.parse::<u16>().ok())
            .unwrap_or_else(|| default_min_insync_replicas(self.replication_factor()))
    }
}

/// A majority of `replication_factor` (1 for RF 1, 2 for RF 3).
pub fn default_min_insync_replicas(replication_factor: usize) -> u16 {
    (replication_factor / 2 + 1) as u16
}

/// The whole replicated state. Cloning is cheap-ish: topics are shared behind `Arc`s and
/// copied on write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    pub cluster_id: Option<String>,
    pub brokers: BTreeMap<NodeId, BrokerState>,
    pub topics: BTreeMap<String, Arc<TopicImage>>,
    /// Topic id → name (every topic is in both maps).
    pub topic_names: BTreeMap<u64, String>,
    pub next_topic_id: u64,
    pub next_producer_id: i64,
    /// Users and ACL bindings, behind an `Arc` (copied on write) so that cloning the image and
    /// comparing what the broker last published stay cheap. A snapshot written before the
    /// part existed decodes with none.
    #[serde(default)]
    pub security: Arc<SecurityImage>,
    /// The last Raft log index applied to this image.
    pub applied_index: u64,
}

impl Default for MetadataImage {
    fn default() -> Self {
        Self {
            cluster_id: None,
            brokers: BTreeMap::new(),
            topics: BTreeMap::new(),
            topic_names: BTreeMap::new(),
            next_topic_id: 1,
            next_producer_id: 0,
            security: Arc::default(),
            applied_index: 0,
        }
    }
}

type ApplyResult = Result<ApplyOutcome, ApplyError>;

impl MetadataImage {
    /// Applies the command found at log `index`. Deterministic; on `Err` the image is unchanged
    /// except for `applied_index`.
    pub fn apply(&mut self, index: u64, command: &MetadataCommand) -> ApplyResult {
        assert!(
            index > self.applied_index,
            "entry {index} applied after entry {}",
            self.applied_index
        );
        self.applied_index = index;
        match command {
            MetadataCommand::SetClusterId { cluster_id } => self.set_cluster_id(cluster_id),
            MetadataCommand::RegisterBroker {
                id,
                incarnation,
                native,
                kafka,
                rack,
            } => self.register_broker(index, *id, *incarnation, native, kafka, rack),
            MetadataCommand::FenceBroker { id, incarnation } => {
                self.fence_broker(*id, *incarnation)
            }
            MetadataCommand::UnfenceBroker { id, incarnation } => {
                self.unfence_broker(*id, *incarnation)
            }
            MetadataCommand::CreateTopic {
                name,
                partitions,
                replication_factor,
                assignments,
                config,
            } => self.create_topic(
                name,
                *partitions,
                *replication_factor,
                assignments.as_deref(),
                config,
            ),
            MetadataCommand::DeleteTopic { name, topic_id } => self.delete_topic(name, *topic_id),
            MetadataCommand::AlterTopicConfig { name, config } => {
                self.alter_topic_config(name, config)
            }
            MetadataCommand::CreatePartitions {
                name,
                count,
                assignments,
            } => self.create_partitions(name, *count, assignments.as_deref()),
            MetadataCommand::AlterPartition {
                topic_id,
                partition,
                leader,
                leader_epoch,
                partition_epoch,
                new_isr,
            } => self.alter_partition(
                *topic_id,
                *partition,
                *leader,
                *leader_epoch,
                *partition_epoch,
                new_isr,
            ),
            MetadataCommand::ReassignPartition {
                topic_id,
                partition,
                target,
            } => self.reassign_partition(*topic_id, *partition, target.as_deref()),
            MetadataCommand::ElectPreferredLeaders { partitions } => {
                self.elect_preferred_leaders(partitions.as_deref())
            }
            MetadataCommand::DecommissionBroker { id } => self.decommission_broker(*id),
            MetadataCommand::RemoveBroker { id } => self.remove_broker(*id),
            MetadataCommand::AllocateProducerIds { broker, count } => {
                self.allocate_producer_ids(*broker, *count)
            }
            MetadataCommand::UpsertScramCredential {
                user,
                mechanism,
                credential,
            } => self.upsert_scram_credential(user, mechanism, credential),
            MetadataCommand::DeleteScramCredential { user, mechanism } => {
                self.delete_scram_credential(user, mechanism)
            }
            MetadataCommand::CreateAcls { bindings } => self.create_acls(bindings),
            MetadataCommand::DeleteAcls { filters } => self.delete_acls(filters),
        }
    }

    /// Records an index that carried no command (Raft's empty entries, membership changes).
    pub fn skip(&mut self, index: u64) {
        assert!(index > self.applied_index);
        self.applied_index = index;
    }

    pub fn topic_by_id(&self, topic_id: u64) -> Option<&Arc<TopicImage>> {
        self.topic_names
            .get(&topic_id)
            .and_then(|name| self.topics.get(name))
    }

    pub fn partition(&self, topic_id: u64, partition: u32) -> Option<&PartitionImage> {
        self.topic_by_id(topic_id)
            .and_then(|topic| topic.partitions.get(partition as usize))
    }

    /// Brokers that take new replicas, by id.
    pub fn active_brokers(&self) -> Vec<NodeId> {
        self.brokers
            .values()
            .filter(|broker| broker.is_active())
            .map(|broker| broker.id)
            .collect()
    }

    fn is_live(&self, node: NodeId) -> bool {
        self.brokers.get(&node).is_some_and(|broker| !broker.fenced)
    }

    /// Every invariant of the image, for tests and the simulation: `Err` names the first broken
    /// one. (A broken invariant is a bug; the node asserts it in debug builds after each apply.)
    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, name) in &self.topic_names {
            match self.topics.get(name) {
                Some(topic) if topic.id == *id => {}
                _ => {
                    return Err(format!(
                        "topic id {id} names '{name}', which is not that topic"
                    ))
                }
            }
        }
        if self.topic_names.len() != self.topics.len() {
            return Err("topic maps differ in size".into());
        }
        for topic in self.topics.values() {
            if topic.id >= self.next_topic_id {
                return Err(format!(
                    "topic '{}' id {} not below next id",
                    topic.name, topic.id
                ));
            }
            for (number, partition) in topic.partitions.iter().enumerate() {
                let at = || format!("topic '{}' partition {number}", topic.name);
                let distinct =
                    |list: &[NodeId]| list.iter().collect::<BTreeSet<_>>().len() == list.len();
                if partition.replicas.is_empty() || !distinct(&partition.replicas) {
                    return Err(format!("{}: replicas {:?}", at(), partition.replicas));
                }
                if partition.isr.is_empty() || !distinct(&partition.isr) {
                    return Err(format!("{}: isr {:?}", at(), partition.isr));
                }
                if let Some(outside) = partition
                    .isr
                    .iter()
                    .find(|member| !partition.replicas.contains(member))
                {
                    return Err(format!("{}: isr member {outside} is no replica", at()));
                }
                if let Some(leader) = partition.leader {
                    if !partition.isr.contains(&leader) {
                        return Err(format!("{}: leader {leader} not in isr", at()));
                    }
                    if !self.is_live(leader) {
                        return Err(format!("{}: leader {leader} is fenced or unknown", at()));
                    }
                } else if partition.isr.iter().any(|member| self.is_live(*member)) {
                    return Err(format!(
                        "{}: no leader while a live isr member exists",
                        at()
                    ));
                }
                for replica in &partition.replicas {
                    if !self.brokers.contains_key(replica) {
                        return Err(format!("{}: replica {replica} is not registered", at()));
                    }
                }
                let moving_ok = partition
                    .adding
                    .iter()
                    .all(|r| partition.replicas.contains(r))
                    && partition
                        .removing
                        .iter()
                        .all(|r| partition.replicas.contains(r))
                    && partition
                        .adding
                        .iter()
                        .all(|r| !partition.removing.contains(r));
                if !moving_ok || partition.target_replicas().is_empty() {
                    return Err(format!(
                        "{}: adding {:?} removing {:?} replicas {:?}",
                        at(),
                        partition.adding,
                        partition.removing,
                        partition.replicas
                    ));
                }
            }
        }
        self.security
            .check_invariants()
            .map_err(|error| format!("security: {error}"))
    }

    // ---- cluster and brokers ----

    fn set_cluster_id(&mut self, cluster_id: &str) -> ApplyResult {
        let valid = !cluster_id.is_empty()
            && cluster_id.len() <= limits::CLUSTER_ID_BYTES_MAX
            && cluster_id.bytes().all(|byte| byte.is_ascii_graphic());
        if !valid {
            return Err(invalid_command(format!(
                "cluster id must be 1..={} printable ASCII bytes",
                limits::CLUSTER_ID_BYTES_MAX
            )));
        }
        match &self.cluster_id {
            None => {
                self.cluster_id = Some(cluster_id.to_owned());
                Ok(ApplyOutcome::Done)
            }
            Some(existing) if existing == cluster_id => Ok(ApplyOutcome::Unchanged),
            Some(existing) => Err(ApplyError::ClusterIdMismatch {
                existing: existing.clone(),
            }),
        }
    }

    fn register_broker(
        &mut self,
        index: u64,
        id: NodeId,
        incarnation: u64,
        native: &(String, u16),
        kafka: &Option<(String, u16)>,
        rack: &Option<String>,
    ) -> ApplyResult {
        if id < 0 {
            return Err(invalid_command(format!("broker id {id} is negative")));
        }
        validate_endpoint("native", native)?;
        if let Some(kafka) = kafka {
            validate_endpoint("kafka", kafka)?;
        }
        if rack
            .as_ref()
            .is_some_and(|rack| rack.is_empty() || rack.len() > limits::HOST_BYTES_MAX)
        {
            return Err(invalid_command("rack must be 1..=255 bytes".into()));
        }
        let state = BrokerState {
            id,
            incarnation,
            native: native.clone(),
            kafka: kafka.clone(),
            rack: rack.clone(),
            fenced: true,
            decommissioning: false,
            registered_index: index,
        };
        match self.brokers.get_mut(&id) {
            None => {
                if self.brokers.len() >= limits::BROKERS_MAX {
                    return Err(limit_exceeded("registered brokers", limits::BROKERS_MAX));
                }
                self.brokers.insert(id, state);
                Ok(ApplyOutcome::Done)
            }
            Some(current) if incarnation < current.incarnation => {
                Err(ApplyError::StaleBrokerEpoch {
                    id,
                    requested: incarnation,
                    current: current.incarnation,
                })
            }
            Some(current) if incarnation == current.incarnation => {
                // A retried registration of the running process: endpoints may be refreshed,
                // its fencing state stays.
                if current.native == *native && current.kafka == *kafka && current.rack == *rack {
                    return Ok(ApplyOutcome::Unchanged);
                }
                current.native = native.clone();
                current.kafka = kafka.clone();
                current.rack = rack.clone();
                Ok(ApplyOutcome::Done)
            }
            Some(current) => {
                // A new process: whatever the old one led may have lost unsynced data on a
                // crash, so it leads nothing until unfenced.
                let decommissioning = current.decommissioning;
                *current = BrokerState {
                    decommissioning,
                    ..state
                };
                self.move_away_from(id);
                Ok(ApplyOutcome::Done)
            }
        }
    }

    fn broker_at(&self, id: NodeId, incarnation: u64) -> Result<&BrokerState, ApplyError> {
        let broker = self
            .brokers
            .get(&id)
            .ok_or(ApplyError::UnknownBroker { id })?;
        if broker.incarnation != incarnation {
            return Err(ApplyError::StaleBrokerEpoch {
                id,
                requested: incarnation,
                current: broker.incarnation,
            });
        }
        Ok(broker)
    }

    fn fence_broker(&mut self, id: NodeId, incarnation: u64) -> ApplyResult {
        if self.broker_at(id, incarnation)?.fenced {
            return Ok(ApplyOutcome::Unchanged);
        }
        self.brokers.get_mut(&id).expect("checked above").fenced = true;
        self.move_away_from(id);
        Ok(ApplyOutcome::Done)
    }

    /// The consequences of `id` being fenced (already marked so): it leaves every ISR it is in
    /// unless it is the last member, and every leadership it held goes to the first live ISR
    /// member (or none).
    fn move_away_from(&mut self, id: NodeId) {
        let live: BTreeSet<NodeId> = self
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .map(|broker| broker.id)
            .collect();
        for topic in self.topics.values_mut() {
            let touched = topic
                .partitions
                .iter()
                .any(|partition| partition.isr.contains(&id) || partition.leader == Some(id));
            if !touched {
                continue;
            }
            let topic = Arc::make_mut(topic);
            for partition in &mut topic.partitions {
                if !partition.isr.contains(&id) && partition.leader != Some(id) {
                    continue;
                }
                let mut isr: Vec<NodeId> = partition
                    .isr
                    .iter()
                    .copied()
                    .filter(|member| *member != id)
                    .collect();
                if isr.is_empty() {
                    isr.push(id);
                }
                let leader = match partition.leader {
                    Some(leader) if leader != id => Some(leader),
                    _ => first_live(&isr, &live),
                };
                change_partition(partition, isr, leader);
            }
        }
    }

    fn unfence_broker(&mut self, id: NodeId, incarnation: u64) -> ApplyResult {
        if !self.broker_at(id, incarnation)?.fenced {
            return Ok(ApplyOutcome::Unchanged);
        }
        self.brokers.get_mut(&id).expect("checked above").fenced = false;
        let live: BTreeSet<NodeId> = self
            .brokers
            .values()
            .filter(|broker| !broker.fenced)
            .map(|broker| broker.id)
            .collect();
        for topic in self.topics.values_mut() {
            let offline = |partition: &PartitionImage| {
                partition.leader.is_none() && partition.isr.contains(&id)
            };
            if !topic.partitions.iter().any(offline) {
                continue;
            }
            let topic = Arc::make_mut(topic);
            for partition in topic.partitions.iter_mut().filter(|p| offline(p)) {
                let leader = first_live(&partition.isr, &live);
                let isr = partition.isr.clone();
                change_partition(partition, isr, leader);
            }
        }
        Ok(ApplyOutcome::Done)
    }

    fn decommission_broker(&mut self, id: NodeId) -> ApplyResult {
        let broker = self
            .brokers
            .get(&id)
            .ok_or(ApplyError::UnknownBroker { id })?;
        if broker.decommissioning {
            return Ok(ApplyOutcome::Unchanged);
        }
        // Works on a copy: a partition that finds no replacement refuses the whole command.
        let mut next = self.clone();
        next.brokers
            .get_mut(&id)
            .expect("checked above")
            .decommissioning = true;
        let candidates = next.active_brokers();
        let mut load: BTreeMap<NodeId, usize> =
            candidates.iter().map(|broker| (*broker, 0)).collect();
        for topic in next.topics.values() {
            for partition in &topic.partitions {
                for replica in partition.target_replicas() {
                    if let Some(count) = load.get_mut(&replica) {
                        *count += 1;
                    }
                }
            }
        }
        let moves: Vec<(u64, u32, Vec<NodeId>)> = next
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, partition)| partition.target_replicas().contains(&id))
                    .map(|(number, partition)| {
                        (topic.id, number as u32, partition.target_replicas())
                    })
            })
            .collect();
        for (topic_id, partition, mut target) in moves {
            let replacement = load
                .iter()
                .filter(|(broker, _)| !target.contains(broker))
                .min_by_key(|(broker, count)| (**count, **broker))
                .map(|(broker, _)| *broker);
            let Some(replacement) = replacement else {
                return Err(ApplyError::InvalidReplicationFactor {
                    requested: target.len(),
                    available: candidates.len(),
                });
            };
            *load.get_mut(&replacement).expect("a candidate") += 1;
            for replica in &mut target {
                if *replica == id {
                    *replica = replacement;
                }
            }
            next.reassign_partition(topic_id, partition, Some(&target))?;
        }
        *self = next;
        Ok(ApplyOutcome::Done)
    }

    fn remove_broker(&mut self, id: NodeId) -> ApplyResult {
        let broker = self
            .brokers
            .get(&id)
            .ok_or(ApplyError::UnknownBroker { id })?;
        if !broker.decommissioning {
            return Err(ApplyError::BrokerInUse {
                id,
                reason: "it is not being decommissioned".into(),
            });
        }
        let hosts = self.topics.values().any(|topic| {
            topic
                .partitions
                .iter()
                .any(|partition| partition.is_hosted_by(id))
        });
        if hosts {
            return Err(ApplyError::BrokerInUse {
                id,
                reason: "it still holds replicas".into(),
            });
        }
        self.brokers.remove(&id);
        Ok(ApplyOutcome::Done)
    }

    fn allocate_producer_ids(&mut self, broker: NodeId, count: u32) -> ApplyResult {
        if !self.brokers.contains_key(&broker) {
            return Err(ApplyError::UnknownBroker { id: broker });
        }
        if count == 0 || count > limits::PRODUCER_ID_BLOCK_MAX {
            return Err(invalid_command(format!(
                "producer id block of {count}: must be 1..={}",
                limits::PRODUCER_ID_BLOCK_MAX
            )));
        }
        let first = self.next_producer_id;
        let next = first
            .checked_add(i64::from(count))
            .ok_or_else(|| limit_exceeded("producer ids", i64::MAX as usize))?;
        self.next_producer_id = next;
        Ok(ApplyOutcome::ProducerIds { first, count })
    }

    // ---- topics ----

    fn create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        assignments: Option<&[Vec<NodeId>]>,
        config: &BTreeMap<String, String>,
    ) -> ApplyResult {
        validate_topic_name(name)?;
        if self.topics.contains_key(name) {
            return Err(ApplyError::TopicExists { name: name.into() });
        }
        if self.topics.len() >= limits::TOPICS_MAX {
            return Err(limit_exceeded("topics", limits::TOPICS_MAX));
        }
        validate_partition_count(partitions)?;
        let topic_id = self.next_topic_id;
        let replicas = match assignments {
            Some(assignments) => {
                if assignments.len() != partitions as usize {
                    return Err(invalid_assignment(format!(
                        "{} replica lists for {partitions} partitions",
                        assignments.len()
                    )));
                }
                if let Some(factor) = replication_factor {
                    if assignments.first().map(Vec::len) != Some(usize::from(factor)) {
                        return Err(invalid_assignment(format!(
                            "replication factor {factor} differs from the assignment's"
                        )));
                    }
                }
                self.validate_assignments(assignments, None)?;
                assignments.to_vec()
            }
            None => self.assign(topic_id, 0, partitions, replication_factor.map(usize::from))?,
        };
        validate_config(config, replicas[0].len())?;
        self.next_topic_id += 1;
        let topic = TopicImage {
            name: name.into(),
            id: topic_id,
            config: config.clone(),
            partitions: replicas.into_iter().map(PartitionImage::new).collect(),
        };
        self.topic_names.insert(topic_id, name.into());
        self.topics.insert(name.into(), Arc::new(topic));
        Ok(ApplyOutcome::TopicCreated { topic_id })
    }

    /// Kafka's rack-unaware assignment over active brokers sorted by id.
    fn assign(
        &self,
        topic_id: u64,
        first_partition: u32,
        count: u32,
        replication_factor: Option<usize>,
    ) -> Result<Vec<Vec<NodeId>>, ApplyError> {
        let brokers = self.active_brokers();
        let available = brokers.len();
        let factor = replication_factor
            .unwrap_or_else(|| available.min(limits::DEFAULT_REPLICATION_FACTOR_MAX));
        if factor == 0 || factor > available || factor > limits::REPLICATION_FACTOR_MAX {
            return Err(ApplyError::InvalidReplicationFactor {
                // The default asks for at least one replica, even of an empty cluster.
                requested: replication_factor.unwrap_or(factor.max(1)),
                available,
            });
        }
        let start = (topic_id % available as u64) as usize;
        Ok((first_partition..first_partition + count)
            .map(|partition| {
                (0..factor)
                    .map(|k| brokers[(start + partition as usize + k) % available])
                    .collect()
            })
            .collect())
    }

    /// Explicit assignments: same length everywhere (`factor` if given), distinct, active
    /// brokers only.
    fn validate_assignments(
        &self,
        assignments: &[Vec<NodeId>],
        factor: Option<usize>,
    ) -> Result<(), ApplyError> {
        let factor = factor.unwrap_or_else(|| assignments.first().map_or(0, Vec::len));
        for replicas in assignments {
            if replicas.len() != factor {
                return Err(invalid_assignment(format!(
                    "replica lists differ in length ({} and {factor})",
                    replicas.len()
                )));
            }
            self.validate_replica_list(replicas)?;
        }
        Ok(())
    }

    fn validate_replica_list(&self, replicas: &[NodeId]) -> Result<(), ApplyError> {
        if replicas.is_empty() || replicas.len() > limits::REPLICATION_FACTOR_MAX {
            return Err(ApplyError::InvalidReplicationFactor {
                requested: replicas.len(),
                available: self.active_brokers().len(),
            });
        }
        if replicas.iter().collect::<BTreeSet<_>>().len() != replicas.len() {
            return Err(invalid_assignment(format!(
                "replicas {replicas:?} repeat a broker"
            )));
        }
        for replica in replicas {
            match self.brokers.get(replica) {
                Some(broker) if broker.is_active() => {}
                Some(broker) => {
                    return Err(invalid_assignment(format!(
                        "broker {replica} is {:?}",
                        broker.status()
                    )))
                }
                None => return Err(ApplyError::UnknownBroker { id: *replica }),
            }
        }
        Ok(())
    }

    fn topic_mut(&mut self, name: &str) -> Result<&mut Arc<TopicImage>, ApplyError> {
        self.topics
            .get_mut(name)
            .ok_or_else(|| ApplyError::UnknownTopic { name: name.into() })
    }

    fn delete_topic(&mut self, name: &str, topic_id: Option<u64>) -> ApplyResult {
        let actual = self.topic_mut(name)?.id;
        if let Some(requested) = topic_id {
            if requested != actual {
                return Err(ApplyError::InconsistentTopicId {
                    name: name.into(),
                    requested,
                    actual,
                });
            }
        }
        self.topics.remove(name);
        self.topic_names.remove(&actual);
        Ok(ApplyOutcome::TopicDeleted { topic_id: actual })
    }

    fn alter_topic_config(&mut self, name: &str, config: &BTreeMap<String, String>) -> ApplyResult {
        let topic = self.topic_mut(name)?;
        validate_config(config, topic.replication_factor())?;
        if topic.config == *config {
            return Ok(ApplyOutcome::Unchanged);
        }
        Arc::make_mut(topic).config = config.clone();
        Ok(ApplyOutcome::Done)
    }

    fn create_partitions(
        &mut self,
        name: &str,
        count: u32,
        assignments: Option<&[Vec<NodeId>]>,
    ) -> ApplyResult {
        let topic = self
            .topics
            .get(name)
            .ok_or_else(|| ApplyError::UnknownTopic { name: name.into() })?;
        let current = topic.partitions.len() as u32;
        if count <= current {
            return Err(ApplyError::InvalidPartitions {
                reason: format!("topic '{name}' already has {current} partitions, asked {count}"),
            });
        }
        validate_partition_count(count)?;
        let factor = topic.replication_factor();
        let topic_id = topic.id;
        let added = count - current;
        let replicas = match assignments {
            Some(assignments) => {
                if assignments.len() != added as usize {
                    return Err(invalid_assignment(format!(
                        "{} replica lists for {added} new partitions",
                        assignments.len()
                    )));
                }
                self.validate_assignments(assignments, Some(factor))?;
                assignments.to_vec()
            }
            None => self.assign(topic_id, current, added, Some(factor))?,
        };
        let topic = Arc::make_mut(self.topic_mut(name)?);
        topic
            .partitions
            .extend(replicas.into_iter().map(PartitionImage::new));
        Ok(ApplyOutcome::Done)
    }

    // ---- partitions ----

    fn partition_mut(
        &mut self,
        topic_id: u64,
        partition: u32,
    ) -> Result<&mut PartitionImage, ApplyError> {
        let name = self
            .topic_names
            .get(&topic_id)
            .ok_or(ApplyError::UnknownTopicId { topic_id })?;
        let topic = Arc::make_mut(self.topics.get_mut(name).expect("topic maps agree"));
        topic
            .partitions
            .get_mut(partition as usize)
            .ok_or(ApplyError::UnknownPartition {
                topic_id,
                partition,
            })
    }

    fn live_set(&self) -> BTreeSet<NodeId> {
        self.brokers
            .values()
            .filter(|broker| !broker.fenced)
            .map(|broker| broker.id)
            .collect()
    }

    fn alter_partition(
        &mut self,
        topic_id: u64,
        number: u32,
        leader: NodeId,
        leader_epoch: i32,
        partition_epoch: i32,
        new_isr: &[NodeId],
    ) -> ApplyResult {
        let partition = self
            .partition(topic_id, number)
            .ok_or(ApplyError::UnknownPartition {
                topic_id,
                partition: number,
            })?;
        if leader_epoch != partition.leader_epoch {
            return Err(ApplyError::StaleLeaderEpoch {
                requested: leader_epoch,
                current: partition.leader_epoch,
            });
        }
        if partition.leader != Some(leader) {
            return Err(ApplyError::NotPartitionLeader {
                requested: leader,
                current: partition.leader,
            });
        }
        if partition_epoch != partition.partition_epoch {
            return Err(ApplyError::StalePartitionEpoch {
                requested: partition_epoch,
                current: partition.partition_epoch,
            });
        }
        let invalid = |reason: String| Err(ApplyError::InvalidIsr { reason });
        if new_isr.iter().collect::<BTreeSet<_>>().len() != new_isr.len() {
            return invalid(format!("{new_isr:?} repeats a broker"));
        }
        if !new_isr.contains(&leader) {
            return invalid(format!("{new_isr:?} lacks the leader {leader}"));
        }
        if let Some(outside) = new_isr.iter().find(|m| !partition.replicas.contains(m)) {
            return invalid(format!(
                "{outside} is not a replica ({:?})",
                partition.replicas
            ));
        }
        if let Some(fenced) = new_isr
            .iter()
            .find(|m| !partition.isr.contains(m) && !self.is_live(**m))
        {
            return invalid(format!("{fenced} is fenced and cannot join the isr"));
        }
        if partition.isr == new_isr {
            return Ok(ApplyOutcome::Unchanged);
        }
        let live = self.live_set();
        let partition = self.partition_mut(topic_id, number)?;
        change_partition(partition, new_isr.to_vec(), Some(leader));
        complete_reassignment(partition, &live);
        Ok(ApplyOutcome::Done)
    }

    fn reassign_partition(
        &mut self,
        topic_id: u64,
        number: u32,
        target: Option<&[NodeId]>,
    ) -> ApplyResult {
        let partition = self
            .partition(topic_id, number)
            .ok_or(ApplyError::UnknownPartition {
                topic_id,
                partition: number,
            })?;
        let original = partition.original_replicas();
        let (replicas, adding, removing) = match target {
            None => {
                if !partition.is_reassigning() {
                    return Err(ApplyError::NoReassignmentInProgress {
                        topic_id,
                        partition: number,
                    });
                }
                (original, Vec::new(), Vec::new())
            }
            Some(target) => {
                for replica in target {
                    // A target may keep a fenced replica (it catches up once back), but never
                    // one that is leaving the cluster or unknown.
                    match self.brokers.get(replica) {
                        Some(broker) if !broker.decommissioning => {}
                        Some(_) => {
                            return Err(invalid_assignment(format!(
                                "broker {replica} is being decommissioned"
                            )))
                        }
                        None => return Err(ApplyError::UnknownBroker { id: *replica }),
                    }
                }
                if target.is_empty()
                    || target.len() > limits::REPLICATION_FACTOR_MAX
                    || target.iter().collect::<BTreeSet<_>>().len() != target.len()
                {
                    return Err(invalid_assignment(format!(
                        "target {target:?} must be 1..={} distinct brokers",
                        limits::REPLICATION_FACTOR_MAX
                    )));
                }
                let adding: Vec<NodeId> = target
                    .iter()
                    .copied()
                    .filter(|r| !original.contains(r))
                    .collect();
                let removing: Vec<NodeId> = original
                    .iter()
                    .copied()
                    .filter(|r| !target.contains(r))
                    .collect();
                let mut replicas = target.to_vec();
                replicas.extend(removing.iter().copied());
                (replicas, adding, removing)
            }
        };
        let isr: Vec<NodeId> = partition
            .isr
            .iter()
            .copied()
            .filter(|member| replicas.contains(member))
            .collect();
        if isr.is_empty() {
            return Err(invalid_assignment(format!(
                "replicas {replicas:?} would keep none of the in-sync replicas {:?}",
                partition.isr
            )));
        }
        let live = self.live_set();
        let leader = match partition.leader {
            Some(leader) if isr.contains(&leader) => Some(leader),
            _ => first_live(&isr, &live),
        };
        let partition = self.partition_mut(topic_id, number)?;
        let moved = partition.replicas != replicas
            || partition.adding != adding
            || partition.removing != removing;
        if !moved && partition.isr == isr && partition.leader == leader {
            return Ok(ApplyOutcome::Unchanged);
        }
        partition.replicas = replicas;
        partition.adding = adding;
        partition.removing = removing;
        if !change_partition(partition, isr, leader) {
            partition.partition_epoch += 1;
        }
        complete_reassignment(partition, &live);
        Ok(ApplyOutcome::Done)
    }

    fn elect_preferred_leaders(&mut self, partitions: Option<&[(u64, u32)]>) -> ApplyResult {
        let named: Vec<(u64, u32)> = match partitions {
            Some(partitions) => {
                if partitions.len() > limits::ELECTION_PARTITIONS_MAX {
                    return Err(limit_exceeded(
                        "partitions of one election",
                        limits::ELECTION_PARTITIONS_MAX,
                    ));
                }
                partitions.to_vec()
            }
            None => self
                .topics
                .values()
                .flat_map(|topic| (0..topic.partitions.len() as u32).map(|p| (topic.id, p)))
                .collect(),
        };
        let live = self.live_set();
        let mut results = Vec::new();
        for (topic_id, number) in named {
            let Ok(partition) = self.partition_mut(topic_id, number) else {
                results.push((topic_id, number, ElectionResult::UnknownPartition));
                continue;
            };
            let preferred = partition.replicas[0];
            let result = if partition.leader == Some(preferred) {
                ElectionResult::NotNeeded
            } else if partition.isr.contains(&preferred) && live.contains(&preferred) {
                let isr = partition.isr.clone();
                change_partition(partition, isr, Some(preferred));
                ElectionResult::Elected
            } else {
                ElectionResult::PreferredNotAvailable
            };
            // Over every partition, only the ones that moved are worth reporting.
            if partitions.is_some() || result == ElectionResult::Elected {
                results.push((topic_id, number, result));
            }
        }
        Ok(ApplyOutcome::LeadersElected { results })
    }
}

/// Sets a partition's ISR and leader, bumping the epochs Kafka's way: `leader_epoch` on a
/// leader change, `partition_epoch` on any change. Returns whether anything changed.
fn change_partition(
    partition: &mut PartitionImage,
    isr: Vec<NodeId>,
    leader: Option<NodeId>,
) -> bool {
    debug_assert!(!isr.is_empty());
    debug_assert!(leader.is_none_or(|leader| isr.contains(&leader)));
    if partition.isr == isr && partition.leader == leader {
        return false;
    }
    if partition.leader != leader {
        partition.leader_epoch += 1;
    }
    partition.partition_epoch += 1;
    partition.isr = isr;
    partition.leader = leader;
    true
}

/// Ends a reassignment whose target replicas are all in sync: the removed replicas go (a
/// removed leader hands over to the first live in-sync target replica).
fn complete_reassignment(partition: &mut PartitionImage, live: &BTreeSet<NodeId>) {
    if !partition.is_reassigning() {
        return;
    }
    let target = partition.target_replicas();
    if !target.iter().all(|replica| partition.isr.contains(replica)) {
        return;
    }
    let isr: Vec<NodeId> = partition
        .isr
        .iter()
        .copied()
        .filter(|member| target.contains(member))
        .collect();
    let leader = match partition.leader {
        Some(leader) if isr.contains(&leader) => Some(leader),
        _ => first_live(&isr, live),
    };
    partition.replicas = target;
    partition.adding.clear();
    partition.removing.clear();
    if !change_partition(partition, isr, leader) {
        partition.partition_epoch += 1;
    }
}

fn first_live(isr: &[NodeId], live: &BTreeSet<NodeId>) -> Option<NodeId> {
    isr.iter().copied().find(|member| live.contains(member))
}

/// Kafka's topic name rule, as `spate_cluster::catalog::validate_topic_name` states it (this
/// crate sits beside the cluster crate, not above it): 1..=249 bytes of `[a-zA-Z0-9._-]`, not
/// `.` or `..`.
pub fn validate_topic_name(name: &str) -> Result<(), ApplyError> {
    let invalid = |reason: &str| {
        Err(ApplyError::InvalidTopicName {
            name: name.chars().take(TOPIC_NAME_BYTES_MAX + 1).collect(),
            reason: reason.into(),
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return invalid("longer than 249 bytes");
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

fn validate_partition_count(count: u32) -> Result<(), ApplyError> {
    if count == 0 || count > limits::PARTITIONS_PER_TOPIC_MAX {
        return Err(ApplyError::InvalidPartitions {
            reason: format!(
                "{count} partitions: must be 1..={}",
                limits::PARTITIONS_PER_TOPIC_MAX
            ),
        });
    }
    Ok(())
}

/// The config checks that need the image: sizes, and `min.insync.replicas` in 1..=RF.
fn validate_config(config: &BTreeMap<String, String>, factor: usize) -> Result<(), ApplyError> {
    let invalid = |reason: String| Err(ApplyError::InvalidConfig { reason });
    if config.len() > limits::TOPIC_CONFIG_ENTRIES_MAX {
        return invalid(format!(
            "{} entries, at most {}",
            config.len(),
            limits::TOPIC_CONFIG_ENTRIES_MAX
        ));
    }
    for (key, value) in config {
        if key.is_empty() || key.len() > limits::CONFIG_NAME_BYTES_MAX {
            return invalid(format!("config name '{key}' must be 1..=255 bytes"));
        }
        if value.len() > limits::CONFIG_VALUE_BYTES_MAX {
            return invalid(format!(
                "value of '{key}' exceeds {} bytes",
                limits::CONFIG_VALUE_BYTES_MAX
            ));
        }
    }
    if config.contains_key("replication.factor") {
        return invalid("replication.factor is the replica list's length, not a config".into());
    }
    if let Some(value) = config.get(MIN_INSYNC_REPLICAS) {
        match value.parse::<usize>() {
            Ok(count) if (1..=factor).contains(&count) => {}
            _ => {
                return invalid(format!(
                    "{MIN_INSYNC_REPLICAS}={value}: must be 1..={factor} (the replication factor)"
                ))
            }
        }
    }
    Ok(())
}

fn validate_endpoint(what: &str, (host, port): &(String, u16)) -> Result<(), ApplyError> {
    if host.is_empty() || host.len() > limits::HOST_BYTES_MAX || *port == 0 {
        return Err(invalid_command(format!(
            "{what} endpoint {host}:{port}: host must be 1..=255 bytes, port non-zero"
        )));
    }
    Ok(())
}

fn invalid_command(reason: String) -> ApplyError {
    ApplyError::InvalidCommand { reason }
}

fn invalid_assignment(reason: String) -> ApplyError {
    ApplyError::InvalidReplicaAssignment { reason }
}

fn limit_exceeded(what: &str, limit: usize) -> ApplyError {
    ApplyError::LimitExceeded {
        what: what.into(),
        limit: limit as u64,
    }
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
