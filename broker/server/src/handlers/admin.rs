//! Control-plane handlers: version negotiation, metadata, the broker's description
//! (DescribeCluster: listeners, shards, topic config defaults), topic administration (create,
//! delete, list, describe, alter configuration), and producer ids (InitProducerId).
//!
//! Metadata and DescribeCluster answer the cluster from the catalog snapshot: its brokers, its
//! controller and each partition's role (leader, epoch, replicas, ISR). A single broker's
//! snapshot names no brokers and no roles: it is then the only broker, at its own native
//! listener, and leads every partition at epoch 0 (`TopicMetadata::role`).
//!
//! A topic is created wholly or not at all (`shard::topic_creation`): its partitions are opened
//! on their owners before the catalog names it, so a client that sees "created" can produce and
//! a failed creation leaves nothing. Deletion and configuration changes go to the catalog first
//! (durably, on a blocking thread so the executor never waits on fsync), then to every shard; the
//! answer is sent only after both.
//!
//! Internal topics (names starting with `__`, like the coordinator's `__consumer_offsets`) are
//! the broker's own: clients may read their metadata but never create, delete or reconfigure
//! them (`InvalidTopicName`). The coordinator creates its topic through the catalog directly.

use std::rc::Rc;
use std::sync::Arc;

use spate_protocol::api::{
    AlterTopicConfigRequest, AlterTopicConfigResponse, ApiVersionsRequest, ApiVersionsResponse,
    ConfigEntry, CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest,
    DeleteTopicsResponse, DescribeTopicResponse, InitProducerIdResponse, ListTopicsResponse,
    MetadataResponse, PartitionMetadata, TopicListing, TopicMetadata as WireTopic, TopicResult,
    SUPPORTED_API_VERSIONS,
};
use spate_protocol::api::{BrokerMetadata, DescribeClusterResponse, NO_NODE};
use spate_protocol::api::{CreatePartitionsRequest, CreatePartitionsResponse};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use super::{catalog_error_code, partition_error_code, producer_id_error_code};
use crate::catalog::topic_config;
use crate::catalog::{
    is_internal_topic, CatalogError, CatalogSnapshot, TopicConfig, TopicMetadata,
    INTERNAL_TOPIC_PREFIX,
};
use crate::group::coordinator;
use crate::services::Services;
use crate::shard::join_all;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{PartitionError, PartitionKey, PartitionState};
use crate::shard::partition::{log_config, max_message_bytes};
use crate::shard::router::{broadcast, scatter};
use crate::shard::topic_creation::{self, TopicCreationError};
use crate::storage::config::{
    GROUP_COMMIT_INTERVAL_BYTES_DEFAULT, GROUP_COMMIT_INTERVAL_US_DEFAULT,
};
use crate::storage::{Durability, Visibility};

pub fn api_versions(_request: &ApiVersionsRequest) -> ApiVersionsResponse {
    // The client picks the highest common version with `pick_version`; the broker only lists.
    ApiVersionsResponse {
        error_code: ErrorCode::None,
        broker_versions: SUPPORTED_API_VERSIONS.to_vec(),
    }
}

/// DescribeCluster: this broker's version, listener, shard count, and the value each topic
/// config key has for a topic that does not set it (what the storage engine opens it with);
/// from version 1 its node id, the controller and every broker.
pub fn describe_cluster(services: &Services) -> DescribeClusterResponse {
    let snapshot = services.snapshot();
    DescribeClusterResponse {
        error_code: ErrorCode::None,
        broker_version: env!("CARGO_PKG_VERSION").to_string(),
        listeners: vec![services.config.listen.to_string()],
        shard_count: u32::try_from(services.shard_count).unwrap_or(u32::MAX),
        topic_defaults: topic_defaults(services.batch_bytes_max()),
        node_id: snapshot.local_node,
        cluster_id: cluster_id(&snapshot),
        controller_id: controller_id(&snapshot),
        brokers: native_brokers(services, &snapshot),
    }
}

/// The cluster's id: the metadata image's in a cluster; none for a single broker, which has no
/// cluster metadata (its Kafka cluster id is the Kafka listener's own, `kafka::identity`).
fn cluster_id(snapshot: &CatalogSnapshot) -> Option<String> {
    snapshot.cluster_id.clone()
}

/// The controller's node id, or [`NO_NODE`] while none is known. A single broker is its own.
pub(crate) fn controller_id(snapshot: &CatalogSnapshot) -> NodeId {
    match snapshot.controller {
        Some(controller) => controller,
        None if !snapshot.cluster_mode => snapshot.local_node,
        None => NO_NODE,
    }
}

/// The offsets of a partition this broker cannot tell (it holds no replica, or it failed).
const NO_STATE: PartitionState = PartitionState {
    log_start_offset: 0,
    high_watermark: 0,
    log_end: 0,
    last_stable_offset: 0,
};

/// The native endpoint of this broker: the one it tells peers and clients (`--advertised`,
/// else the bound address).
pub(crate) fn local_native_endpoint(services: &Services) -> (String, u16) {
    services
        .config
        .cluster
        .advertised_native(services.config.listen)
}

/// Every broker with its native endpoint: the snapshot's, or for a single broker (whose
/// snapshot names none) this broker at its own listener.
pub(crate) fn native_brokers(
    services: &Services,
    snapshot: &CatalogSnapshot,
) -> Vec<BrokerMetadata> {
    if snapshot.brokers.is_empty() {
        let (host, port) = local_native_endpoint(services);
        return vec![BrokerMetadata {
            node_id: snapshot.local_node,
            host,
            port,
            rack: None,
        }];
    }
    snapshot
        .brokers
        .values()
        .map(|broker| BrokerMetadata {
            node_id: broker.id,
            host: broker.native.0.clone(),
            port: broker.native.1,
            rack: broker.rack.clone(),
        })
        .collect()
}

/// Every topic config key with the value an unset key gets, read back from the storage
/// configuration a topic with no keys set is opened with, so the two cannot disagree.
pub(crate) fn topic_defaults(batch_bytes_max: usize) -> Vec<ConfigEntry> {
    let log = log_config(&TopicConfig::default(), batch_bytes_max);
    let limit = |value: Option<u64>| {
        value.map_or(topic_config::RETENTION_UNLIMITED.to_string(), |value| {
            value.to_string()
        })
    };
    let (durability, interval_bytes, interval_us) = match log.durability {
        Durability::EveryAppend => (
            topic_config::DURABILITY_EVERY_APPEND,
            GROUP_COMMIT_INTERVAL_BYTES_DEFAULT,
            GROUP_COMMIT_INTERVAL_US_DEFAULT,
        ),
        Durability::GroupCommit {
            interval_bytes,
            interval_us,
        } => (
            topic_config::DURABILITY_GROUP_COMMIT,
            interval_bytes,
            interval_us,
        ),
    };
    let values = [
        (topic_config::RETENTION_BYTES, limit(log.retention_bytes)),
        (topic_config::RETENTION_MS, limit(log.retention_ms)),
        (
            topic_config::SEGMENT_BYTES,
            log.segment_bytes_max.to_string(),
        ),
        (topic_config::SEGMENT_MS, log.segment_age_max_ms.to_string()),
        (topic_config::DURABILITY, durability.to_string()),
        (topic_config::GROUP_COMMIT_BYTES, interval_bytes.to_string()),
        (topic_config::GROUP_COMMIT_US, interval_us.to_string()),
        (
            topic_config::MAX_MESSAGE_BYTES,
            max_message_bytes(&log).to_string(),
        ),
        (
            topic_config::CLEANUP_POLICY,
            log.cleanup_policy.as_str().to_string(),
        ),
        (
            topic_config::MIN_CLEANABLE_DIRTY_RATIO,
            log.min_cleanable_dirty_ratio.to_string(),
        ),
        (
            topic_config::MIN_COMPACTION_LAG_MS,
            log.min_compaction_lag_ms.to_string(),
        ),
        (
            topic_config::MAX_COMPACTION_LAG_MS,
            log.max_compaction_lag_ms.to_string(),
        ),
        (
            topic_config::DELETE_RETENTION_MS,
            log.delete_retention_ms.to_string(),
        ),
        (
            topic_config::WRITE_CACHING,
            (log.visibility == Visibility::Written).to_string(),
        ),
    ];
    values
        .into_iter()
        .map(|(name, value)| ConfigEntry::new(name, value))
        .collect()
}

pub async fn metadata(services: &Rc<Services>, names: Option<&[String]>) -> MetadataResponse {
    let snapshot = services.snapshot();
    let topics: Vec<Result<Arc<TopicMetadata>, String>> = match names {
        None => snapshot.topics.values().cloned().map(Ok).collect(),
        Some(names) => names
            .iter()
            .map(|name| snapshot.topic(name).cloned().ok_or_else(|| name.clone()))
            .collect(),
    };
    let mut response = MetadataResponse {
        cluster_id: cluster_id(&snapshot),
        controller_id: controller_id(&snapshot),
        brokers: native_brokers(services, &snapshot),
        ..MetadataResponse::default()
    };
    for topic in topics {
        match topic {
            Ok(topic) => response.topics.push(WireTopic {
                error_code: ErrorCode::None,
                name: topic.name.clone(),
                partitions: partition_metadata(services, &snapshot, &topic).await,
            }),
            Err(name) => response.topics.push(WireTopic {
                error_code: ErrorCode::UnknownTopicOrPartition,
                name,
                partitions: Vec::new(),
            }),
        }
    }
    response
}

/// Every partition of `topic` with its owner, its role (leader, epoch, replicas, ISR) and,
/// where this broker holds a replica, its offsets as the owning shard knows them (asked of the
/// owners; 0 where this broker holds none: the leader knows them).
async fn partition_metadata(
    services: &Rc<Services>,
    snapshot: &CatalogSnapshot,
    topic: &TopicMetadata,
) -> Vec<PartitionMetadata> {
    let local = snapshot.local_node;
    let hosted: Vec<u32> = (0..topic.partition_count())
        .filter(|partition| topic.is_hosted(*partition, local))
        .collect();
    let items: Vec<_> = hosted
        .iter()
        .map(|partition| {
            let key = PartitionKey {
                topic_id: topic.id,
                partition: *partition,
            };
            (topic.partition_shards[*partition as usize], key)
        })
        .collect();
    let states = scatter(services, items, |shard, partitions| async move {
        shard.states(&partitions)
    })
    .await;
    let mut states = hosted.into_iter().zip(states).peekable();
    (0..topic.partition_count())
        .map(|partition| {
            let state = match states.peek() {
                Some((hosted, _)) if *hosted == partition => states.next().map(|(_, state)| state),
                _ => None,
            };
            let role = topic.role(partition, local);
            let (error_code, error_message, state) = match state {
                _ if role.leader.is_none() => (
                    ErrorCode::LeaderNotAvailable,
                    Some(format!(
                        "no leader: none of the in-sync replicas {:?} is available",
                        role.isr
                    )),
                    NO_STATE,
                ),
                None => (ErrorCode::None, None, NO_STATE),
                Some(Ok(state)) => (ErrorCode::None, None, state),
                Some(Err(error)) => (
                    partition_error_code(&error),
                    // The code already says "offline"; the text is the reason alone, so that
                    // `spate topic describe` does not print "offline: partition offline: ...".
                    Some(match &error {
                        PartitionError::Offline(reason) => reason.clone(),
                        other => other.to_string(),
                    }),
                    NO_STATE,
                ),
            };
            PartitionMetadata {
                partition,
                error_code,
                shard_id: topic.partition_shards[partition as usize] as u32,
                log_start_offset: state.log_start_offset,
                high_watermark: state.high_watermark,
                error_message,
                leader_id: role.leader.unwrap_or(NO_NODE),
                leader_epoch: role.leader_epoch,
                replicas: role.replicas,
                isr: role.isr,
            }
        })
        .collect()
}

pub async fn create_topics(
    services: &Rc<Services>,
    request: &CreateTopicsRequest,
) -> CreateTopicsResponse {
    let mut response = CreateTopicsResponse::default();
    for topic in &request.topics {
        let outcome = create_topic(
            services,
            &topic.name,
            i64::from(topic.partition_count),
            topic.replication_factor,
            &topic.configs,
        )
        .await;
        response.results.push(topic_result(&topic.name, outcome));
    }
    response
}

/// Creates topic `name`; `replication_factor` 0 takes the default (native CreateTopics v1).
pub(crate) async fn create_topic(
    services: &Rc<Services>,
    name: &str,
    partitions: i64,
    replication_factor: u16,
    entries: &[ConfigEntry],
) -> Result<(), (ErrorCode, String)> {
    refuse_internal(name)?;
    let config = TopicConfig::default()
        .with_entries(
            entries
                .iter()
                .map(|entry| (entry.name.as_str(), entry.value.as_str())),
        )
        .map_err(|error| (ErrorCode::InvalidConfig, error.to_string()))?;
    let replication_factor = (replication_factor != 0).then_some(replication_factor);
    create_replicated_topic(services, name, partitions, replication_factor, None, config)
        .await
        .map(|_| ())
}

/// Creates topic `name` with a parsed `config` (checked here against the storage engine's
/// rules), a replication factor and replica assignments (one replica list per partition), as
/// Kafka's CreateTopics and native CreateTopics v1 give them: in a cluster they go to the
/// controller (`None`: the defaults); a single broker is the only replica, so it accepts only
/// a factor of 1 and assignments naming itself.
pub(crate) async fn create_replicated_topic(
    services: &Rc<Services>,
    name: &str,
    partitions: i64,
    replication_factor: Option<u16>,
    assignments: Option<Vec<Vec<NodeId>>>,
    config: TopicConfig,
) -> Result<Arc<TopicMetadata>, (ErrorCode, String)> {
    refuse_internal(name)?;
    check_log_config(services, &config)?;
    let topic = if services.cluster.is_cluster_mode() {
        let count = u32::try_from(partitions)
            .ok()
            .filter(|count| *count >= 1)
            .ok_or_else(|| {
                catalog_failure(CatalogError::InvalidPartitions {
                    partitions,
                    limit: services.catalog.partitions_per_topic_max(),
                })
            })?;
        crate::cluster::topics::create_topic(
            services,
            name,
            count,
            replication_factor,
            assignments,
            config,
        )
        .await
    } else {
        refuse_single_replication(services, replication_factor, assignments.as_deref())?;
        refuse_single_min_insync(&config)?;
        topic_creation::create_topic(services, name, partitions, config).await
    }
    .map_err(|error| creation_failure(name, "topic creation failed", error))?;
    tracing::info!(topic = %topic.name, partitions = topic.partition_count(), "topic created");
    Ok(topic)
}

/// A single broker's partitions have one replica: more in-sync replicas could never be met.
fn refuse_single_min_insync(config: &TopicConfig) -> Result<(), (ErrorCode, String)> {
    match config.min_insync_replicas {
        Some(count) if count > 1 => Err((
            ErrorCode::InvalidConfig,
            format!(
                "{}={count} on a single broker: its partitions have one replica, so acks=all \
                 writes could never be acknowledged",
                topic_config::MIN_INSYNC_REPLICAS
            ),
        )),
        _ => Ok(()),
    }
}

/// A single broker holds one replica of each partition, itself.
fn refuse_single_replication(
    services: &Services,
    replication_factor: Option<u16>,
    assignments: Option<&[Vec<NodeId>]>,
) -> Result<(), (ErrorCode, String)> {
    let local = services.snapshot().local_node;
    if replication_factor.is_some_and(|factor| factor != 1) {
        return Err((
            ErrorCode::InvalidReplicationFactor,
            format!(
                "replication factor {} on a single broker: it holds the one replica of each \
                 partition (start brokers with --seeds for a cluster)",
                replication_factor.unwrap_or(1)
            ),
        ));
    }
    if let Some(assignments) = assignments {
        if assignments.iter().any(|replicas| replicas != &[local]) {
            return Err((
                ErrorCode::InvalidRequest,
                format!("a single broker's partitions have one replica, node {local}"),
            ));
        }
    }
    Ok(())
}

pub async fn delete_topics(
    services: &Rc<Services>,
    request: &DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut response = DeleteTopicsResponse::default();
    for name in &request.names {
        let outcome = delete_topic(services, name, None).await;
        response.results.push(topic_result(name, outcome));
    }
    response
}

/// Deletes topic `name` (only if its catalog id is `expected_id`, when given: a topic deleted
/// by id is never confused with a newer one of the same name): from the catalog first, then
/// every shard's partitions, then its committed offsets and its directory. The native and the
/// Kafka DeleteTopics share it.
pub(crate) async fn delete_topic(
    services: &Rc<Services>,
    name: &str,
    expected_id: Option<u64>,
) -> Result<(), (ErrorCode, String)> {
    refuse_internal(name)?;
    if services.cluster.is_cluster_mode() {
        // Every broker's reconciler removes its replicas and its groups' committed offsets.
        crate::cluster::topics::delete_topic(services, name, expected_id).await?;
        tracing::info!(topic = name, "topic deleted");
        return Ok(());
    }
    let catalog = services.catalog.clone();
    let owned_name = name.to_string();
    let topic = blocking(move || catalog.delete_topic_matching(&owned_name, expected_id))
        .await
        .map_err(catalog_failure)?;
    tracing::info!(topic = %topic.name, "topic deleted");
    let deleted_topic = topic.clone();
    broadcast(services, move |shard| {
        shard.delete_topic_partitions(deleted_topic.clone(), 0)
    })
    .await
    .map_err(|error| {
        (
            partition_error_code(&error),
            format!("deleting partitions: {error}"),
        )
    })?;
    delete_committed_offsets(services, &topic.name).await;
    // The topic is gone for clients either way; what is left of its directory stays under a
    // tombstone and goes at the next start.
    let catalog = services.catalog.clone();
    let finished = topic.clone();
    if let Err(error) = blocking(move || catalog.finish_deletion(&finished)).await {
        tracing::warn!(topic = %topic.name, %error, "topic directory not removed; it is removed at the next start");
    }
    Ok(())
}

/// Removes every group's committed offsets of the deleted `topic` on every coordinator shard (as
/// Kafka does). A failure is logged, not answered: the topic itself is deleted.
pub(crate) async fn delete_committed_offsets(services: &Rc<Services>, topic: &str) {
    let calls: Vec<_> = (0..services.shard_count)
        .map(|target| {
            let topic = topic.to_string();
            let services = services.clone();
            async move {
                let deleted = invoke_on(&services, target, move |on: Rc<Services>| async move {
                    coordinator::delete_topic_offsets(&on, &topic).await
                })
                .await;
                (target, deleted)
            }
        })
        .collect();
    for (target, answer) in join_all(calls).await {
        let outcome = match answer {
            Ok(deleted) => deleted.map_err(|code| format!("{code:?}")),
            Err(stopping) => Err(stopping.to_string()),
        };
        match outcome {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                topic,
                shard = target,
                removed,
                "committed offsets of the deleted topic removed"
            ),
            Err(error) => {
                tracing::warn!(topic, shard = target, %error, "committed offsets of the deleted topic not removed")
            }
        }
    }
}

pub fn list_topics(services: &Rc<Services>) -> ListTopicsResponse {
    let snapshot = services.snapshot();
    ListTopicsResponse {
        error_code: ErrorCode::None,
        topics: snapshot
            .topics
            .values()
            .map(|topic| TopicListing {
                name: topic.name.clone(),
                partition_count: topic.partition_count(),
            })
            .collect(),
    }
}

pub async fn describe_topic(services: &Rc<Services>, name: &str) -> DescribeTopicResponse {
    let Some(topic) = services.snapshot().topic(name).cloned() else {
        return DescribeTopicResponse {
            error_code: ErrorCode::UnknownTopicOrPartition,
            error_message: Some(format!("topic {name} does not exist")),
            name: name.to_string(),
            ..Default::default()
        };
    };
    DescribeTopicResponse {
        error_code: ErrorCode::None,
        error_message: None,
        name: topic.name.clone(),
        configs: topic
            .config
            .to_map()
            .into_iter()
            .map(|(name, value)| ConfigEntry { name, value })
            .collect(),
        partitions: partition_metadata(services, &services.snapshot(), &topic).await,
    }
}

pub async fn alter_topic_config(
    services: &Rc<Services>,
    request: &AlterTopicConfigRequest,
) -> AlterTopicConfigResponse {
    match alter(services, request).await {
        Ok(()) => AlterTopicConfigResponse {
            error_code: ErrorCode::None,
            error_message: None,
        },
        Err((error_code, message)) => AlterTopicConfigResponse {
            error_code,
            error_message: Some(message),
        },
    }
}

async fn alter(
    services: &Rc<Services>,
    request: &AlterTopicConfigRequest,
) -> Result<(), (ErrorCode, String)> {
    refuse_internal(&request.name)?;
    let Some(topic) = services.snapshot().topic(&request.name).cloned() else {
        return Err((
            ErrorCode::UnknownTopicOrPartition,
            format!("topic {} does not exist", request.name),
        ));
    };
    // `reset` keys go back to the default: an empty value clears a key.
    let entries = request
        .set
        .iter()
        .map(|entry| (entry.name.as_str(), entry.value.as_str()))
        .chain(request.reset.iter().map(|name| (name.as_str(), "")));
    let config = topic
        .config
        .with_entries(entries)
        .map_err(|error| (ErrorCode::InvalidConfig, error.to_string()))?;
    replace_topic_config(services, &request.name, config).await
}

/// Gives topic `name` the configuration `config` (checked here against the storage engine's
/// rules): durably in the catalog, then on every shard's open partitions. The native
/// AlterTopicConfig and Kafka's AlterConfigs share it.
pub(crate) async fn replace_topic_config(
    services: &Rc<Services>,
    name: &str,
    config: TopicConfig,
) -> Result<(), (ErrorCode, String)> {
    refuse_internal(name)?;
    check_log_config(services, &config)?;
    if services.cluster.is_cluster_mode() {
        crate::cluster::topics::replace_topic_config(services, name, &config).await?;
        tracing::info!(topic = name, config = ?config.to_map(), "topic config altered");
        return Ok(());
    }
    refuse_single_min_insync(&config)?;
    let catalog = services.catalog.clone();
    let name = name.to_string();
    let altered = blocking(move || catalog.alter_topic_config(&name, config))
        .await
        .map_err(catalog_failure)?;
    tracing::info!(topic = %altered.name, config = ?altered.config.to_map(), "topic config altered");
    broadcast(services, move |shard| {
        let altered = altered.clone();
        async move { shard.alter_topic_partitions(&altered) }
    })
    .await
    .map_err(|error| (partition_error_code(&error), error.to_string()))
}

/// CreatePartitions: grows a topic to the requested count (only growth, as in Kafka). The new
/// partitions are placed and opened like a new topic's before the catalog names them
/// (`topic_creation::add_partitions`); a failure leaves the topic as it was.
pub async fn create_partitions(
    services: &Rc<Services>,
    request: &CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let outcome = add_partitions(services, &request.name, request.partition_count).await;
    CreatePartitionsResponse {
        error_code: outcome
            .as_ref()
            .err()
            .map_or(ErrorCode::None, |error| error.0),
        error_message: outcome.err().map(|error| error.1),
    }
}

/// Grows topic `name` to `partitions` partitions in all; the native and the Kafka
/// CreatePartitions share it.
pub(crate) async fn add_partitions(
    services: &Rc<Services>,
    name: &str,
    partitions: u32,
) -> Result<(), (ErrorCode, String)> {
    add_placed_partitions(services, name, partitions, None).await
}

/// [`add_partitions`] with the replicas of each new partition, as Kafka's CreatePartitions may
/// give them: in a cluster they go to the controller; a single broker accepts only itself.
pub(crate) async fn add_placed_partitions(
    services: &Rc<Services>,
    name: &str,
    partitions: u32,
    assignments: Option<Vec<Vec<NodeId>>>,
) -> Result<(), (ErrorCode, String)> {
    refuse_internal(name)?;
    let topic = if services.cluster.is_cluster_mode() {
        crate::cluster::topics::add_partitions(services, name, partitions, assignments).await
    } else {
        refuse_single_replication(services, None, assignments.as_deref())?;
        topic_creation::add_partitions(services, name, i64::from(partitions)).await
    }
    .map_err(|error| creation_failure(name, "adding partitions failed", error))?;
    tracing::info!(topic = %topic.name, partitions = topic.partition_count(), "partitions added");
    Ok(())
}

/// The client's answer to a failed creation or growth of topic `name`.
fn creation_failure(
    name: &str,
    what: &'static str,
    error: TopicCreationError,
) -> (ErrorCode, String) {
    match error {
        TopicCreationError::Catalog(error) => catalog_failure(error),
        TopicCreationError::Partitions { ref source, .. } => {
            tracing::error!(topic = name, %error, "{what}");
            (partition_error_code(source), error.to_string())
        }
        TopicCreationError::Cluster { code, message, .. } => (code, message),
    }
}

/// Refuses a client's change to one of the broker's own topics.
pub(crate) fn refuse_internal(name: &str) -> Result<(), (ErrorCode, String)> {
    if is_internal_topic(name) {
        return Err((
            ErrorCode::InvalidTopicName,
            format!(
                "topic {name} is internal to the broker: names starting with \"{INTERNAL_TOPIC_PREFIX}\" are reserved and cannot be created, deleted or altered by clients"
            ),
        ));
    }
    Ok(())
}

/// Refuses a topic config the storage engine would refuse when opening a partition.
pub(crate) fn check_log_config(
    services: &Services,
    config: &TopicConfig,
) -> Result<(), (ErrorCode, String)> {
    log_config(config, services.batch_bytes_max())
        .check()
        .map_err(|error| (ErrorCode::InvalidConfig, error.to_string()))
}

fn topic_result(name: &str, outcome: Result<(), (ErrorCode, String)>) -> TopicResult {
    match outcome {
        Ok(()) => TopicResult {
            name: name.to_string(),
            error_code: ErrorCode::None,
            error_message: None,
        },
        Err((error_code, message)) => TopicResult {
            name: name.to_string(),
            error_code,
            error_message: Some(message),
        },
    }
}

pub(crate) fn catalog_failure(error: CatalogError) -> (ErrorCode, String) {
    if matches!(
        error,
        CatalogError::Io { .. } | CatalogError::Corrupt { .. }
    ) {
        tracing::error!(%error, "catalog update failed");
    }
    (catalog_error_code(&error), error.to_string())
}

/// InitProducerId of an idempotent producer (no transactional id: those are `txn`'s): any
/// shard answers, from the broker-wide allocator. Reserving a new block of ids writes and
/// fsyncs a file, so it runs on the blocking thread pool like catalog changes.
pub async fn init_producer_id(
    services: &Services,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    let catalog = services.catalog.clone();
    let outcome = glommio::executor()
        .spawn_blocking(move || catalog.producer_ids().init(producer_id, producer_epoch))
        .await;
    match outcome {
        Ok(identity) => InitProducerIdResponse {
            error_code: ErrorCode::None,
            producer_id: identity.producer_id,
            producer_epoch: identity.producer_epoch,
        },
        Err(error) => {
            let code = producer_id_error_code(&error);
            if code == ErrorCode::StorageError {
                tracing::error!(%error, "cannot reserve producer ids");
            } else {
                tracing::debug!(%error, "InitProducerId refused");
            }
            InitProducerIdResponse {
                error_code: code,
                ..Default::default()
            }
        }
    }
}

/// Runs a catalog change (file writes and fsyncs) on glommio's blocking thread pool.
pub(crate) async fn blocking<T: Send + 'static>(
    change: impl FnOnce() -> Result<T, CatalogError> + Send + 'static,
) -> Result<T, CatalogError> {
    glommio::executor().spawn_blocking(change).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_defaults_name_every_key_once_and_setting_them_changes_nothing() {
        let batch_bytes_max = 1 << 20;
        let defaults = topic_defaults(batch_bytes_max);
        let names: Vec<&str> = defaults.iter().map(|entry| entry.name.as_str()).collect();
        assert_eq!(names, topic_config::KEYS);
        let explicit = TopicConfig::default()
            .with_entries(
                defaults
                    .iter()
                    .map(|entry| (entry.name.as_str(), entry.value.as_str())),
            )
            .expect("every default is a value a topic may set");
        let implicit = log_config(&TopicConfig::default(), batch_bytes_max);
        let explicit = log_config(&explicit, batch_bytes_max);
        assert_eq!(explicit.segment_bytes_max, implicit.segment_bytes_max);
        assert_eq!(explicit.segment_age_max_ms, implicit.segment_age_max_ms);
        assert_eq!(explicit.retention_bytes, implicit.retention_bytes);
        assert_eq!(explicit.retention_ms, implicit.retention_ms);
        assert_eq!(explicit.durability, implicit.durability);
        assert_eq!(explicit.batch_bytes_max, implicit.batch_bytes_max);
        assert_eq!(explicit.cleanup_policy, implicit.cleanup_policy);
        assert_eq!(
            explicit.min_cleanable_dirty_ratio,
            implicit.min_cleanable_dirty_ratio
        );
        assert_eq!(
            explicit.min_compaction_lag_ms,
            implicit.min_compaction_lag_ms
        );
        assert_eq!(
            explicit.max_compaction_lag_ms,
            implicit.max_compaction_lag_ms
        );
        assert_eq!(explicit.delete_retention_ms, implicit.delete_retention_ms);
    }
}
