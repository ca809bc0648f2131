//! Topic administration: create, delete, list, describe, alter configuration, add partitions,
//! list offsets and delete records; and the cluster's description (broker, shards, topic defaults, partitions).
//!
//! Every method returns a [`Completion`] (await it, or `wait()` from a plain thread). Reads are
//! retried through reconnects until `ClientConfig::retry_timeout`; changes are retried only when
//! the request surely never left (connecting failed), so a create is never sent twice. Types
//! here are the client's own, not the wire messages: the wire may change without breaking
//! callers.

use std::collections::BTreeMap;

use spate_protocol::api::CreatePartitionsRequest;
use spate_protocol::api::TopicResult;
use spate_protocol::api::{AlterReassignmentsRequest, DecommissionBrokerRequest};
use spate_protocol::api::{AlterTopicConfigRequest, ConfigEntry, CreateTopic, CreateTopicsRequest};
use spate_protocol::api::{DeleteRecordsPartition, DeleteRecordsRequest, DeleteTopicsRequest};
use spate_protocol::api::{DescribeClusterRequest, DescribeClusterResponse};
use spate_protocol::api::{DescribeTopicRequest, ListOffsetsPartition, ListOffsetsRequest};
use spate_protocol::api::{ElectLeadersRequest, ListReassignmentsRequest, TopicPartitionList};
use spate_protocol::api::{IsolationLevel, ListTopicsRequest, OffsetSpec, TopicPartitions};
use spate_protocol::api::{PartitionMetadata, ReassignmentPartition, ReassignmentTopic};
use spate_protocol::api::{TopicOutcomes, NO_NODE};
use spate_protocol::{ErrorCode, NodeId};

use rand::RngCore;
use spate_protocol::api::DescribeAclsRequest;
use spate_protocol::api::{AclEntry, AclFilter, CreateAclsRequest, DeleteAclsRequest};
use spate_protocol::api::{DeleteUserRequest, ListUsersRequest, UpsertUserRequest};
use spate_security::acl::{AclBinding, AclBindingFilter, Operation, PatternType};
use spate_security::acl::{Permission, ResourceType, KAFKA_CODE_ANY};
use spate_security::{ScramCredential, ScramMechanism};

use crate::client::Client;
use crate::completion::Completion;
use crate::config::SaslMechanism;
use crate::error::Error;
use crate::network::{endpoint, Network, Retry};

/// How long the broker may take over a topic change, sent in the request.
const TOPIC_CHANGE_TIMEOUT_MS: u32 = 30_000;

/// A topic to create.
///
/// ```
/// use spate_client::NewTopic;
///
/// let topic = NewTopic::new("orders", 12)
///     .with_config("retention.ms", "86400000")
///     .with_config("durability", "group-commit");
/// assert_eq!(topic.configs.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewTopic {
    /// Topic name, at most
    /// [`TOPIC_NAME_BYTES_MAX`](spate_protocol::constants::TOPIC_NAME_BYTES_MAX) bytes.
    pub name: String,
    /// Number of partitions, at least 1.
    pub partition_count: u32,
    /// Config names as in `spate_protocol::api::config::name` (`retention.bytes`, ...).
    pub configs: Vec<(String, String)>,
    /// Replicas of each partition in a cluster; 0 takes the cluster's default (a single broker
    /// accepts 0 or 1; a broker older than CreateTopics v1 only 0).
    pub replication_factor: u16,
}

impl NewTopic {
    /// A topic with `partition_count` partitions and the broker's default configuration.
    pub fn new(name: impl Into<String>, partition_count: u32) -> Self {
        Self {
            name: name.into(),
            partition_count,
            configs: Vec::new(),
            replication_factor: 0,
        }
    }

    /// Gives each partition `replication_factor` replicas (0: the cluster's default).
    pub fn with_replication_factor(mut self, replication_factor: u16) -> Self {
        self.replication_factor = replication_factor;
        self
    }

    /// Adds one config entry.
    pub fn with_config(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.configs.push((name.into(), value.into()));
        self
    }
}

/// One line of [`Admin::list_topics`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSummary {
    /// Topic name.
    pub name: String,
    /// Number of partitions.
    pub partition_count: u32,
}

/// One partition as [`Admin::describe_topic`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    /// Partition number.
    pub partition: u32,
    /// The broker shard (core) that owns the partition.
    pub shard: u32,
    /// The oldest offset still kept.
    pub log_start_offset: u64,
    /// The offset the next record will get (records below it are readable).
    pub high_watermark: u64,
    /// Why the broker does not serve the partition (`None` when it does): an offline
    /// partition's reason, naming the file, position and what is wrong.
    pub offline_reason: Option<String>,
    /// The broker is still opening the partition after it started, or (in a cluster) the
    /// partition has no leader now (`LeaderNotAvailable`): it will be served soon, and
    /// requests for it wait or are retried. Its offsets are not known yet; `offline_reason` is
    /// `None`.
    pub opening: bool,
    /// The broker that leads the partition (`None`: none now). A single broker leads all.
    pub leader: Option<NodeId>,
    /// The leader's epoch, bumped at every leader change.
    pub leader_epoch: i32,
    /// Every replica, the preferred leader first (empty from a broker that predates
    /// replication).
    pub replicas: Vec<NodeId>,
    /// The replicas in sync with the leader.
    pub isr: Vec<NodeId>,
}

impl PartitionInfo {
    fn from_wire(partition: PartitionMetadata) -> Self {
        Self {
            partition: partition.partition,
            leader: (partition.leader_id != NO_NODE).then_some(partition.leader_id),
            leader_epoch: partition.leader_epoch,
            replicas: partition.replicas,
            isr: partition.isr,
            shard: partition.shard_id,
            log_start_offset: partition.log_start_offset,
            high_watermark: partition.high_watermark,
            opening: partition.error_code == ErrorCode::LeaderNotAvailable,
            offline_reason: (!partition.error_code.is_none()
                && partition.error_code != ErrorCode::LeaderNotAvailable)
                .then(|| {
                    partition
                        .error_message
                        .unwrap_or_else(|| partition.error_code.to_string())
                }),
        }
    }
}

/// One topic's partitions, as [`Admin::describe_cluster`] reports them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicLayout {
    /// Topic name.
    pub name: String,
    /// Every partition, in partition order.
    pub partitions: Vec<PartitionInfo>,
}

/// One broker of the cluster, as metadata names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerDescription {
    /// Its node id.
    pub id: NodeId,
    /// Its native listener, `HOST:PORT`, as it advertises it.
    pub address: String,
    /// Its rack, if configured.
    pub rack: Option<String>,
}

/// What [`Admin::describe_cluster`] returns: the broker, and every topic's partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterDescription {
    /// The answering broker's node id.
    pub node_id: NodeId,
    /// The cluster's id (`None` for a single broker, or before the first controller chose
    /// one).
    pub cluster_id: Option<String>,
    /// The controller (`None` while none is known).
    pub controller: Option<NodeId>,
    /// Every broker, by id (a single broker: itself, or nothing from a broker that predates
    /// clustering).
    pub brokers: Vec<BrokerDescription>,
    /// The broker's build version.
    pub broker_version: String,
    /// The addresses it listens on, `HOST:PORT`.
    pub listeners: Vec<String>,
    /// How many shards (cores) own partitions.
    pub shard_count: u32,
    /// The value of each topic config key for a topic that does not set it.
    pub topic_defaults: BTreeMap<String, String>,
    /// Every topic (the broker's own `__` topics included), by name.
    pub topics: Vec<TopicLayout>,
}

/// What [`Admin::describe_topic`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Topic name.
    pub name: String,
    /// The effective configuration, broker defaults included, by name.
    pub configs: BTreeMap<String, String>,
    /// Every partition, in partition order.
    pub partitions: Vec<PartitionInfo>,
}

/// One answer of [`Admin::list_offsets`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffset {
    /// Partition number.
    pub partition: u32,
    /// `None` when a timestamp lookup found no record at or after the timestamp.
    pub offset: Option<u64>,
    /// The found record's timestamp for timestamp lookups; -1 otherwise.
    pub timestamp: i64,
}

/// The outcome of a cluster operation for one partition ([`Admin::elect_preferred_leaders`],
/// [`Admin::alter_reassignments`]).
#[derive(Debug, Clone)]
pub struct PartitionChange {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// `Ok` when done (an election) or started (a reassignment completes later), or why not.
    pub result: Result<(), Error>,
}

/// A partition's target replicas for [`Admin::alter_reassignments`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReassignmentTarget {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The replicas the partition should end with, preferred leader first; `None` cancels the
    /// reassignment in progress.
    pub replicas: Option<Vec<NodeId>>,
}

/// A reassignment in progress, as [`Admin::list_reassignments`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reassignment {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
    /// The replicas now: old and new together until the new ones caught up.
    pub replicas: Vec<NodeId>,
    /// Replicas joining.
    pub adding: Vec<NodeId>,
    /// Replicas leaving once the joining ones are in sync.
    pub removing: Vec<NodeId>,
}

/// Topic administration, made with [`Client::admin`]. Cheap to clone.
///
/// ```no_run
/// use spate_client::{Client, NewTopic};
///
/// let admin = Client::connect_to("127.0.0.1:9192")?.admin();
/// admin.create_topic(NewTopic::new("orders", 4)).wait()?;
/// let description = admin.describe_topic("orders").wait()?;
/// assert_eq!(description.partitions.len(), 4);
/// admin.alter_topic_config("orders", &[("retention.ms", "3600000")], &[]).wait()?;
/// admin.delete_topic("orders").wait()?;
/// # Ok::<(), spate_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Admin {
    client: Client,
}

impl Admin {
    pub(crate) fn new(client: Client) -> Self {
        Self { client }
    }

    /// Creates one topic. Fails with a `TopicAlreadyExists` broker error if it exists.
    pub fn create_topic(&self, topic: NewTopic) -> Completion<()> {
        let network = self.client.network().clone();
        self.client.spawn("create topic", async move {
            let request = CreateTopicsRequest {
                topics: vec![CreateTopic {
                    name: topic.name.clone(),
                    partition_count: topic.partition_count,
                    configs: topic
                        .configs
                        .iter()
                        .map(|(name, value)| ConfigEntry::new(name, value))
                        .collect(),
                    replication_factor: topic.replication_factor,
                }],
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            let response = network
                .call_retrying(&request, "create topic", Retry::BeforeSending)
                .await?;
            one_result("create topic", &topic.name, &response.results)
        })
    }

    /// Deletes one topic and all its records.
    pub fn delete_topic(&self, name: &str) -> Completion<()> {
        let network = self.client.network().clone();
        let name = name.to_string();
        self.client.spawn("delete topic", async move {
            let request = DeleteTopicsRequest {
                names: vec![name.clone()],
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            let response = network
                .call_retrying(&request, "delete topic", Retry::BeforeSending)
                .await?;
            network.invalidate(&name);
            one_result("delete topic", &name, &response.results)
        })
    }

    /// Creates a user (or replaces its credential for `mechanism`, SCRAM-SHA-256 or
    /// SCRAM-SHA-512) with `iterations` of PBKDF2 (4096..=16384). The password is salted and
    /// hashed here, on the caller's thread (milliseconds); only the salt, the iteration count
    /// and the salted password travel.
    pub fn create_user(
        &self,
        name: &str,
        password: &str,
        mechanism: SaslMechanism,
        iterations: u32,
    ) -> Completion<()> {
        let network = self.client.network().clone();
        let scram = scram_mechanism(mechanism);
        let mut salt = vec![0u8; USER_SALT_BYTES];
        rand::thread_rng().fill_bytes(&mut salt);
        let salted_password = scram.map(|scram| {
            ScramCredential::salted_password(scram, password.as_bytes(), &salt, iterations)
        });
        let name = name.to_string();
        self.client.spawn("create user", async move {
            let Some(salted_password) = salted_password else {
                return Err(Error::invalid(
                    "create user",
                    "PLAIN is not a credential: store SCRAM-SHA-256 or SCRAM-SHA-512 (PLAIN \
                     logins check them)",
                ));
            };
            let request = UpsertUserRequest {
                name,
                mechanism: mechanism.name().to_string(),
                iterations,
                salt: salt.into(),
                salted_password: salted_password.into(),
            };
            // The same salt and hash again change nothing: safe to retry.
            let response = network
                .call_retrying(&request, "create user", Retry::Idempotent)
                .await?;
            user_outcome("create user", response.error_code, response.error_message)
        })
    }

    /// Deletes a user's credential for `mechanism`.
    pub fn delete_user(&self, name: &str, mechanism: SaslMechanism) -> Completion<()> {
        let network = self.client.network().clone();
        let request = DeleteUserRequest {
            name: name.to_string(),
            mechanism: mechanism.name().to_string(),
        };
        self.client.spawn("delete user", async move {
            let response = network
                .call_retrying(&request, "delete user", Retry::BeforeSending)
                .await?;
            user_outcome("delete user", response.error_code, response.error_message)
        })
    }

    /// Every user with its credentials' mechanisms and iteration counts, by name.
    pub fn list_users(&self) -> Completion<Vec<UserDescription>> {
        let network = self.client.network().clone();
        self.client.spawn("list users", async move {
            let response = network
                .call_retrying(&ListUsersRequest {}, "list users", Retry::Idempotent)
                .await?;
            user_outcome("list users", response.error_code, None)?;
            let mut users: Vec<UserDescription> = response
                .users
                .into_iter()
                .map(|user| UserDescription {
                    name: user.name,
                    credentials: user
                        .credentials
                        .into_iter()
                        .map(|credential| (credential.mechanism, credential.iterations))
                        .collect(),
                })
                .collect();
            users.sort_by(|left, right| left.name.cmp(&right.name));
            Ok(users)
        })
    }

    /// Creates ACL bindings (Kafka's CreateAcls): each gets its own outcome, in the order given
    /// (an invalid binding, such as a host that is not an IP address, is refused alone). A
    /// binding that exists already is a success. Needs Alter on the cluster.
    pub fn create_acls(&self, bindings: &[AclBinding]) -> Completion<Vec<Result<(), Error>>> {
        let network = self.client.network().clone();
        let request = CreateAclsRequest {
            creations: bindings.iter().map(acl_entry).collect(),
        };
        self.client.spawn("create acls", async move {
            // Adding a binding twice leaves one: safe to retry.
            let response = network
                .call_retrying(&request, "create acls", Retry::Idempotent)
                .await?;
            user_outcome("create acls", response.error_code, response.error_message)?;
            if response.results.len() != request.creations.len() {
                return Err(missing_answer("create acls"));
            }
            Ok(response
                .results
                .into_iter()
                .map(|result| user_outcome("create acl", result.error_code, result.error_message))
                .collect())
        })
    }

    /// The ACL bindings `filter` matches (Kafka's DescribeAcls), sorted. Needs Describe on the
    /// cluster.
    pub fn describe_acls(&self, filter: &AclBindingFilter) -> Completion<Vec<AclBinding>> {
        let network = self.client.network().clone();
        let request = DescribeAclsRequest {
            filter: acl_filter(filter),
        };
        self.client.spawn("describe acls", async move {
            let response = network
                .call_retrying(&request, "describe acls", Retry::Idempotent)
                .await?;
            user_outcome("describe acls", response.error_code, response.error_message)?;
            let mut bindings = response
                .bindings
                .iter()
                .map(|entry| acl_binding("describe acls", entry))
                .collect::<Result<Vec<_>, Error>>()?;
            bindings.sort();
            Ok(bindings)
        })
    }

    /// Deletes the ACL bindings each filter matches (Kafka's DeleteAcls): per filter, in the
    /// order given, the bindings it deleted. Needs Alter on the cluster.
    pub fn delete_acls(
        &self,
        filters: &[AclBindingFilter],
    ) -> Completion<Vec<Result<Vec<AclBinding>, Error>>> {
        let network = self.client.network().clone();
        let request = DeleteAclsRequest {
            filters: filters.iter().map(acl_filter).collect(),
        };
        self.client.spawn("delete acls", async move {
            // A second deletion finds nothing more to delete: safe to retry, though a retry
            // after a lost answer reports nothing deleted.
            let response = network
                .call_retrying(&request, "delete acls", Retry::Idempotent)
                .await?;
            user_outcome("delete acls", response.error_code, response.error_message)?;
            if response.results.len() != request.filters.len() {
                return Err(missing_answer("delete acls"));
            }
            Ok(response
                .results
                .into_iter()
                .map(|result| {
                    user_outcome("delete acls", result.error_code, result.error_message)?;
                    let mut deleted = result
                        .deleted
                        .iter()
                        .map(|entry| acl_binding("delete acls", entry))
                        .collect::<Result<Vec<_>, Error>>()?;
                    deleted.sort();
                    Ok(deleted)
                })
                .collect())
        })
    }

    /// Deletes several topics in one request. Each name gets its own outcome, in the order
    /// given: one refused deletion does not stop the others.
    pub fn delete_topics(&self, names: &[String]) -> Completion<Vec<(String, Result<(), Error>)>> {
        let network = self.client.network().clone();
        let names = names.to_vec();
        self.client.spawn("delete topics", async move {
            let request = DeleteTopicsRequest {
                names: names.clone(),
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            let response = network
                .call_retrying(&request, "delete topics", Retry::BeforeSending)
                .await?;
            Ok(names
                .into_iter()
                .map(|name| {
                    network.invalidate(&name);
                    let outcome = one_result("delete topic", &name, &response.results);
                    (name, outcome)
                })
                .collect())
        })
    }

    /// Every topic, sorted by name.
    pub fn list_topics(&self) -> Completion<Vec<TopicSummary>> {
        let network = self.client.network().clone();
        self.client.spawn("list topics", async move {
            let response = network
                .call_retrying(&ListTopicsRequest {}, "list topics", Retry::Idempotent)
                .await?;
            if response.error_code != ErrorCode::None {
                return Err(Error::broker(
                    "list topics",
                    None,
                    None,
                    response.error_code,
                    None,
                ));
            }
            let mut topics: Vec<TopicSummary> = response
                .topics
                .into_iter()
                .map(|listing| TopicSummary {
                    name: listing.name,
                    partition_count: listing.partition_count,
                })
                .collect();
            topics.sort_by(|left, right| left.name.cmp(&right.name));
            Ok(topics)
        })
    }

    /// A topic's partitions (owner, offsets) and effective configuration.
    pub fn describe_topic(&self, name: &str) -> Completion<TopicDescription> {
        let network = self.client.network().clone();
        let name = name.to_string();
        self.client.spawn("describe topic", async move {
            let request = DescribeTopicRequest { name: name.clone() };
            let response = network
                .call_retrying(&request, "describe topic", Retry::Idempotent)
                .await?;
            match response.error_code {
                ErrorCode::None => {}
                ErrorCode::UnknownTopicOrPartition => {
                    return Err(Error::UnknownTopic { topic: name });
                }
                code => {
                    return Err(Error::broker(
                        "describe topic",
                        Some(&name),
                        None,
                        code,
                        response.error_message,
                    ))
                }
            }
            let mut partitions: Vec<PartitionInfo> = response
                .partitions
                .into_iter()
                .map(PartitionInfo::from_wire)
                .collect();
            if network.directory().is_cluster() {
                // DescribeTopic says nothing of leaders; metadata does.
                let info = network.refresh_topic(&response.name).await?;
                for partition in &mut partitions {
                    if let Some(entry) = info
                        .partitions
                        .iter()
                        .find(|entry| entry.partition == partition.partition)
                    {
                        let leading = PartitionInfo::from_wire(entry.clone());
                        partition.leader = leading.leader;
                        partition.leader_epoch = leading.leader_epoch;
                        partition.replicas = leading.replicas;
                        partition.isr = leading.isr;
                    }
                }
            }
            Ok(TopicDescription {
                name: response.name,
                configs: response
                    .configs
                    .into_iter()
                    .map(|entry| (entry.name, entry.value))
                    .collect(),
                partitions,
            })
        })
    }

    /// The broker (version, listeners, shards, topic config defaults) and every topic's
    /// partitions with their owner shard and offsets (kcat's `-L`, `rpk cluster info`).
    pub fn describe_cluster(&self) -> Completion<ClusterDescription> {
        let network = self.client.network().clone();
        self.client.spawn("describe cluster", async move {
            let broker = describe_broker(&network).await?;
            let metadata = network.cluster_metadata(None).await?;
            let mut brokers: Vec<BrokerDescription> = metadata
                .brokers
                .iter()
                .map(|entry| BrokerDescription {
                    id: entry.node_id,
                    address: endpoint(&entry.host, entry.port),
                    rack: entry.rack.clone(),
                })
                .collect();
            brokers.sort_by_key(|entry| entry.id);
            let mut topics: Vec<TopicLayout> = metadata
                .topics
                .into_iter()
                .map(|topic| TopicLayout {
                    name: topic.name,
                    partitions: topic
                        .partitions
                        .into_iter()
                        .map(PartitionInfo::from_wire)
                        .collect(),
                })
                .collect();
            topics.sort_by(|left, right| left.name.cmp(&right.name));
            Ok(ClusterDescription {
                node_id: broker.node_id,
                cluster_id: metadata.cluster_id.clone(),
                controller: (metadata.controller_id != NO_NODE).then_some(metadata.controller_id),
                brokers,
                broker_version: broker.broker_version,
                listeners: broker.listeners,
                shard_count: broker.shard_count,
                topic_defaults: broker
                    .topic_defaults
                    .into_iter()
                    .map(|entry| (entry.name, entry.value))
                    .collect(),
                topics,
            })
        })
    }

    /// The value each topic config key has for a topic that does not set it, as the broker
    /// reports it (Kafka's DescribeConfigs default source).
    pub fn topic_config_defaults(&self) -> Completion<BTreeMap<String, String>> {
        let network = self.client.network().clone();
        self.client.spawn("describe cluster", async move {
            let broker = describe_broker(&network).await?;
            Ok(broker
                .topic_defaults
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect())
        })
    }

    /// Sets the `set` entries and returns the `reset` names to the broker default.
    pub fn alter_topic_config(
        &self,
        name: &str,
        set: &[(&str, &str)],
        reset: &[&str],
    ) -> Completion<()> {
        let network = self.client.network().clone();
        let request = AlterTopicConfigRequest {
            name: name.to_string(),
            set: set
                .iter()
                .map(|(name, value)| ConfigEntry::new(*name, *value))
                .collect(),
            reset: reset.iter().map(|name| name.to_string()).collect(),
        };
        self.client.spawn("alter topic config", async move {
            // Setting the same values twice is harmless, so reconnect-and-retry is safe.
            let response = network
                .call_retrying(&request, "alter topic config", Retry::Idempotent)
                .await?;
            match response.error_code {
                ErrorCode::None => Ok(()),
                ErrorCode::UnknownTopicOrPartition => Err(Error::UnknownTopic {
                    topic: request.name,
                }),
                code => Err(Error::broker(
                    "alter topic config",
                    Some(&request.name),
                    None,
                    code,
                    response.error_message,
                )),
            }
        })
    }

    /// Grows topic `name` to `partition_count` partitions in all (Kafka's CreatePartitions: the
    /// count can only grow; one not larger than today's is refused with `InvalidPartitions`).
    /// Existing partitions keep their records; records with keys may hash to another partition
    /// from now on. This client's metadata cache forgets the topic, so its producers use the new
    /// count at once; other clients see it when their cached metadata ages out.
    pub fn create_partitions(&self, name: &str, partition_count: u32) -> Completion<()> {
        let network = self.client.network().clone();
        let request = CreatePartitionsRequest {
            name: name.to_string(),
            partition_count,
        };
        self.client.spawn("create partitions", async move {
            // Sent once: a repeat after a lost answer would be refused as "not larger".
            let response = network
                .call_retrying(&request, "create partitions", Retry::BeforeSending)
                .await;
            network.invalidate(&request.name);
            let response = response?;
            match response.error_code {
                ErrorCode::None => Ok(()),
                ErrorCode::UnknownTopicOrPartition => Err(Error::UnknownTopic {
                    topic: request.name,
                }),
                code => Err(Error::broker(
                    "create partitions",
                    Some(&request.name),
                    None,
                    code,
                    response.error_message,
                )),
            }
        })
    }

    /// Looks up `spec` (earliest, latest, or the first record at or after a timestamp) for
    /// `partitions` of `topic` (every partition when `None`). Answers are in partition order.
    pub fn list_offsets(
        &self,
        topic: &str,
        partitions: Option<&[u32]>,
        spec: OffsetSpec,
    ) -> Completion<Vec<PartitionOffset>> {
        let network = self.client.network().clone();
        let topic = topic.to_string();
        let partitions = partitions.map(<[u32]>::to_vec);
        self.client.spawn("list offsets", async move {
            list_offsets(
                &network,
                &topic,
                partitions,
                spec,
                IsolationLevel::ReadUncommitted,
            )
            .await
        })
    }

    /// Deletes the records of `topic`/`partition` below `before_offset` (it becomes the log
    /// start). Returns the new log start offset.
    pub fn delete_records(
        &self,
        topic: &str,
        partition: u32,
        before_offset: u64,
    ) -> Completion<u64> {
        let network = self.client.network().clone();
        let topic = topic.to_string();
        self.client.spawn("delete records", async move {
            let mut answers = network
                .call_leaders(
                    &topic,
                    &[partition],
                    "delete records",
                    |asked| DeleteRecordsRequest {
                        timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
                        topics: vec![TopicPartitions {
                            name: topic.clone(),
                            partitions: asked
                                .iter()
                                .map(|partition| DeleteRecordsPartition {
                                    partition: *partition,
                                    before_offset,
                                })
                                .collect(),
                        }],
                    },
                    |response| {
                        response
                            .topics
                            .into_iter()
                            .flat_map(|entry| entry.partitions)
                            .map(|answer| {
                                (answer.partition, answer.error_code, answer.log_start_offset)
                            })
                            .collect()
                    },
                )
                .await?;
            answers.pop().expect("one partition asked")
        })
    }
}

impl Admin {
    /// Makes each partition's preferred replica (its first) the leader where it is in sync and
    /// alive (`None`: every partition of every topic). Returns each partition's outcome; a
    /// refusal of the whole request is the error.
    pub fn elect_preferred_leaders(
        &self,
        partitions: Option<Vec<(String, Vec<u32>)>>,
    ) -> Completion<Vec<PartitionChange>> {
        let network = self.client.network().clone();
        self.client.spawn("elect leaders", async move {
            let request = ElectLeadersRequest {
                topics: partitions.map(|topics| {
                    topics
                        .into_iter()
                        .map(|(name, partitions)| TopicPartitionList { name, partitions })
                        .collect()
                }),
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            // Electing twice leaves the same leaders: safe to repeat.
            let response = network
                .call_retrying(&request, "elect leaders", Retry::Idempotent)
                .await?;
            if !response.error_code.is_none() {
                return Err(Error::broker(
                    "elect leaders",
                    None,
                    None,
                    response.error_code,
                    response.error_message,
                ));
            }
            Ok(changes("elect leaders", response.topics))
        })
    }

    /// Gives partitions new replica lists (or cancels their reassignment). The data is copied
    /// while each partition stays writable; `Ok` for a partition means its reassignment
    /// started. Sent once unless connecting failed (a second send could find the first in
    /// progress and refuse it).
    pub fn alter_reassignments(
        &self,
        targets: Vec<ReassignmentTarget>,
    ) -> Completion<Vec<PartitionChange>> {
        let network = self.client.network().clone();
        self.client.spawn("alter reassignments", async move {
            let mut topics: Vec<ReassignmentTopic> = Vec::new();
            for target in targets {
                let entry = ReassignmentPartition {
                    partition: target.partition,
                    target_replicas: target.replicas,
                };
                match topics.iter_mut().find(|topic| topic.name == target.topic) {
                    Some(topic) => topic.partitions.push(entry),
                    None => topics.push(TopicPartitions {
                        name: target.topic,
                        partitions: vec![entry],
                    }),
                }
            }
            let request = AlterReassignmentsRequest {
                topics,
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            let response = network
                .call_retrying(&request, "alter reassignments", Retry::BeforeSending)
                .await?;
            if !response.error_code.is_none() {
                return Err(Error::broker(
                    "alter reassignments",
                    None,
                    None,
                    response.error_code,
                    response.error_message,
                ));
            }
            Ok(changes("alter reassignments", response.topics))
        })
    }

    /// The reassignments in progress, by topic and partition.
    pub fn list_reassignments(&self) -> Completion<Vec<Reassignment>> {
        let network = self.client.network().clone();
        self.client.spawn("list reassignments", async move {
            let response = network
                .call_retrying(
                    &ListReassignmentsRequest { topics: None },
                    "list reassignments",
                    Retry::Idempotent,
                )
                .await?;
            if !response.error_code.is_none() {
                return Err(Error::broker(
                    "list reassignments",
                    None,
                    None,
                    response.error_code,
                    response.error_message,
                ));
            }
            let mut listed: Vec<Reassignment> = response
                .topics
                .into_iter()
                .flat_map(|topic| {
                    let name = topic.name;
                    topic.partitions.into_iter().map(move |entry| Reassignment {
                        topic: name.clone(),
                        partition: entry.partition,
                        replicas: entry.replicas,
                        adding: entry.adding,
                        removing: entry.removing,
                    })
                })
                .collect();
            listed.sort_by(|left, right| {
                (&left.topic, left.partition).cmp(&(&right.topic, right.partition))
            });
            Ok(listed)
        })
    }

    /// Moves every replica off broker `id`, then removes it from the cluster. Completes once
    /// the decommission started; `describe_cluster` shows its replicas moving.
    pub fn decommission_broker(&self, id: NodeId) -> Completion<()> {
        let network = self.client.network().clone();
        self.client.spawn("decommission broker", async move {
            let request = DecommissionBrokerRequest {
                node_id: id,
                timeout_ms: TOPIC_CHANGE_TIMEOUT_MS,
            };
            let response = network
                .call_retrying(&request, "decommission broker", Retry::BeforeSending)
                .await?;
            match response.error_code {
                ErrorCode::None => Ok(()),
                code => Err(Error::broker(
                    "decommission broker",
                    None,
                    None,
                    code,
                    response.error_message,
                )),
            }
        })
    }
}

/// Each partition's outcome of a cluster operation, in answer order.
fn changes(operation: &'static str, topics: Vec<TopicOutcomes>) -> Vec<PartitionChange> {
    topics
        .into_iter()
        .flat_map(|topic| {
            let name = topic.name;
            topic.partitions.into_iter().map(move |entry| {
                let result = match entry.error_code {
                    ErrorCode::None => Ok(()),
                    code => Err(Error::broker(
                        operation,
                        Some(&name),
                        Some(entry.partition),
                        code,
                        entry.error_message,
                    )),
                };
                PartitionChange {
                    topic: name.clone(),
                    partition: entry.partition,
                    result,
                }
            })
        })
        .collect()
}

async fn describe_broker(network: &Network) -> Result<DescribeClusterResponse, Error> {
    let broker = network
        .call_retrying(
            &DescribeClusterRequest {},
            "describe cluster",
            Retry::Idempotent,
        )
        .await?;
    if !broker.error_code.is_none() {
        return Err(Error::broker(
            "describe cluster",
            None,
            None,
            broker.error_code,
            None,
        ));
    }
    Ok(broker)
}

/// Shared with the consumer, which resolves its start positions with it. Under
/// `ReadCommitted`, latest is the last stable offset; a broker that predates transactions
/// (ListOffsets version 0) cannot say it, and the lookup fails rather than answer the high
/// watermark.
pub(crate) async fn list_offsets(
    network: &Network,
    topic: &str,
    partitions: Option<Vec<u32>>,
    spec: OffsetSpec,
    isolation_level: IsolationLevel,
) -> Result<Vec<PartitionOffset>, Error> {
    if spec.to_wire().is_none() {
        return Err(Error::invalid(
            "offset lookup",
            "a timestamp must not be negative",
        ));
    }
    let partitions = match partitions {
        Some(partitions) => partitions,
        None => (0..network.topic(topic).await?.partition_count()).collect(),
    };
    // Each partition is asked of its leader; a partition still opening after a start
    // (LeaderNotAvailable) or whose leader moved is asked again until `retry_timeout`.
    let answers = network
        .call_leaders(
            topic,
            &partitions,
            "list offsets",
            |asked| ListOffsetsRequest {
                topics: vec![TopicPartitions {
                    name: topic.to_string(),
                    partitions: asked
                        .iter()
                        .map(|partition| ListOffsetsPartition {
                            partition: *partition,
                            spec,
                        })
                        .collect(),
                }],
                isolation_level,
            },
            |response| {
                response
                    .topics
                    .into_iter()
                    .flat_map(|entry| entry.partitions)
                    .map(|answer| (answer.partition, answer.error_code, answer))
                    .collect()
            },
        )
        .await?;
    partitions
        .iter()
        .zip(answers)
        .map(|(partition, answer)| {
            let answer = answer?;
            Ok(PartitionOffset {
                partition: *partition,
                offset: answer.offset,
                timestamp: answer.timestamp,
            })
        })
        .collect()
}

fn one_result(operation: &'static str, name: &str, results: &[TopicResult]) -> Result<(), Error> {
    let result = results
        .iter()
        .find(|result| result.name == name)
        .ok_or_else(|| missing_answer(operation))?;
    match result.error_code {
        ErrorCode::None => Ok(()),
        ErrorCode::UnknownTopicOrPartition => Err(Error::UnknownTopic {
            topic: name.to_string(),
        }),
        code => Err(Error::broker(
            operation,
            Some(name),
            None,
            code,
            result.error_message.clone(),
        )),
    }
}

fn missing_answer(operation: &'static str) -> Error {
    Error::Protocol {
        operation,
        source: spate_protocol::WireError::InvalidValue {
            field: "response (an asked-for entry is missing)",
            value: 0,
        },
    }
}

/// Bytes of random salt of a user's credential (RFC 5802 asks only that it be random).
const USER_SALT_BYTES: usize = 32;

/// A user and its credentials: `(mechanism, iterations)` each, never a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserDescription {
    /// The user name.
    pub name: String,
    /// Each credential's mechanism (`SCRAM-SHA-256`, `SCRAM-SHA-512`) and iteration count.
    pub credentials: Vec<(String, u32)>,
}

fn scram_mechanism(mechanism: SaslMechanism) -> Option<ScramMechanism> {
    match mechanism {
        SaslMechanism::Plain => None,
        SaslMechanism::ScramSha256 => Some(ScramMechanism::Sha256),
        SaslMechanism::ScramSha512 => Some(ScramMechanism::Sha512),
    }
}

/// A binding in the wire's Kafka codes.
fn acl_entry(binding: &AclBinding) -> AclEntry {
    AclEntry {
        resource_type: kafka_code(binding.resource_type.to_kafka()),
        resource_name: binding.resource_name.clone(),
        pattern_type: kafka_code(binding.pattern.to_kafka()),
        principal: binding.principal.clone(),
        host: binding.host.clone(),
        operation: kafka_code(binding.operation.to_kafka()),
        permission: kafka_code(binding.permission.to_kafka()),
    }
}

fn acl_filter(filter: &AclBindingFilter) -> AclFilter {
    let any = kafka_code(KAFKA_CODE_ANY);
    AclFilter {
        resource_type: filter
            .resource_type
            .map_or(any, |value| kafka_code(value.to_kafka())),
        resource_name: filter.resource_name.clone(),
        pattern_type: kafka_code(filter.pattern.to_kafka()),
        principal: filter.principal.clone(),
        host: filter.host.clone(),
        operation: filter
            .operation
            .map_or(any, |value| kafka_code(value.to_kafka())),
        permission: filter
            .permission
            .map_or(any, |value| kafka_code(value.to_kafka())),
    }
}

/// Kafka's ACL codes are small positive numbers; the wire carries them in a u8.
fn kafka_code(code: i8) -> u8 {
    u8::try_from(code).expect("Kafka's ACL codes are positive")
}

/// A binding the broker answered; a code this client does not know is a protocol error.
fn acl_binding(operation: &'static str, entry: &AclEntry) -> Result<AclBinding, Error> {
    let invalid = |field: &'static str, value: u8| Error::Protocol {
        operation,
        source: spate_protocol::WireError::InvalidValue {
            field,
            value: i64::from(value),
        },
    };
    let code = |value: u8| i8::try_from(value).unwrap_or(i8::MIN);
    Ok(AclBinding {
        resource_type: ResourceType::from_kafka(code(entry.resource_type))
            .ok_or_else(|| invalid("resource_type", entry.resource_type))?,
        resource_name: entry.resource_name.clone(),
        pattern: PatternType::from_kafka(code(entry.pattern_type))
            .ok_or_else(|| invalid("pattern_type", entry.pattern_type))?,
        principal: entry.principal.clone(),
        host: entry.host.clone(),
        operation: Operation::from_kafka(code(entry.operation))
            .ok_or_else(|| invalid("operation", entry.operation))?,
        permission: Permission::from_kafka(code(entry.permission))
            .ok_or_else(|| invalid("permission", entry.permission))?,
    })
}

fn user_outcome(
    operation: &'static str,
    code: ErrorCode,
    message: Option<String>,
) -> Result<(), Error> {
    if code == ErrorCode::None {
        return Ok(());
    }
    Err(Error::broker(operation, None, None, code, message))
}
