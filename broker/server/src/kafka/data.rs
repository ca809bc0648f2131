//! The Kafka data-path handlers ApiVersions and Metadata (with topic auto-creation), and what
//! every data-path handler shares: finding the topic a request names, by name or by topic id.
//! Produce is in `produce`, Fetch in `fetch`, ListOffsets, OffsetForLeaderEpoch and
//! InitProducerId in `offsets`.
//!
//! Each handler resolves names against one catalog snapshot and asks the owning shards as the
//! native handlers do (`shard::router`); what differs is only the wire shape and the error codes
//! (`errors`).
//!
//! Metadata lists the cluster from the snapshot: every unfenced broker at its Kafka endpoint
//! (this broker at its advertised Kafka address), the controller, and per partition the leader,
//! leader epoch, replicas, ISR and offline replicas (fenced or unknown brokers). A single
//! broker's snapshot names no brokers and no roles: it is then node `local_node` leading every
//! partition at epoch 0, its only replica.

use std::sync::Arc;

use spate_kafka_protocol::kafka_protocol::messages::api_versions_response::ApiVersion;
use spate_kafka_protocol::kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    ApiVersionsRequest, ApiVersionsResponse, BrokerId, MetadataRequest, MetadataResponse, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_kafka_protocol::versions::SERVED_APIS;
use spate_protocol::error::ErrorCode;
use spate_security::{Operation, ResourceType};
use uuid::Uuid;

use super::authorization::AUTHORIZED_OPERATIONS_OMITTED;
use super::errors::kafka_code;
use super::KafkaContext;
use crate::catalog::{is_internal_topic, CatalogSnapshot, ShardId, TopicMetadata};
use crate::handlers::admin::{controller_id, create_topic};
use crate::handlers::partition_error_code;
use crate::shard::messages::{PartitionError, PartitionKey};
use crate::shard::router::scatter;

/// The served table as ApiVersions lists it.
/// The served table as ApiVersions lists it; the SASL APIs only on a listener with SASL on.
pub(super) fn served_api_versions(sasl_enabled: bool) -> Vec<ApiVersion> {
    SERVED_APIS
        .iter()
        .filter(|api| sasl_enabled || !super::connection::is_sasl_api(api.key))
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min_version)
                .with_max_version(api.max_version)
        })
        .collect()
}

pub(crate) async fn api_versions(
    context: &KafkaContext<'_>,
    _version: i16,
    _request: ApiVersionsRequest,
) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(served_api_versions(context.session.is_sasl_enabled()))
}

/// A topic the request names, by name or (v10+) by id.
enum Wanted {
    Name(StrBytes),
    Id(Uuid),
}

pub(crate) async fn metadata(
    context: &KafkaContext<'_>,
    version: i16,
    request: MetadataRequest,
) -> MetadataResponse {
    let mut snapshot = context.services.snapshot();
    let mut response = MetadataResponse::default()
        .with_brokers(kafka_brokers(context, &snapshot))
        .with_cluster_id(Some(context.broker.identity.cluster_id().clone()))
        .with_controller_id(BrokerId(controller_id(&snapshot)));
    // v0 asks for every topic with an empty list; v1+ with a null one.
    let wanted: Option<Vec<Wanted>> = match request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .into_iter()
                .map(|topic| match topic.name {
                    // v10+ names a topic by id, with a null (or empty) name.
                    Some(name) if topic.topic_id.is_nil() || !name.0.is_empty() => {
                        Wanted::Name(name.0)
                    }
                    _ => Wanted::Id(topic.topic_id),
                })
                .collect(),
        ),
    };
    let include_topic_operations =
        version >= AUTHORIZED_OPERATIONS_VERSION && request.include_topic_authorized_operations;
    // v8 to v10 carry the cluster's; later versions leave it to DescribeCluster.
    if (AUTHORIZED_OPERATIONS_VERSION..=CLUSTER_OPERATIONS_VERSION_MAX).contains(&version)
        && request.include_cluster_authorized_operations
    {
        response.cluster_authorized_operations = if context.cluster_authorized(Operation::Describe)
        {
            context.cluster_authorized_operations()
        } else {
            0
        };
    }
    let Some(wanted) = wanted else {
        // Every topic the principal may describe; the others are left out, never revealed.
        let topics: Vec<Arc<TopicMetadata>> = snapshot
            .topics
            .values()
            .filter(|topic| context.topic_authorized(Operation::Describe, &topic.name))
            .cloned()
            .collect();
        for topic in topics {
            let answer = topic_metadata(context, &snapshot, &topic).await;
            response
                .topics
                .push(with_operations(context, include_topic_operations, answer));
        }
        return response;
    };
    // Kafka before v4 creates topics on every metadata request (the flag arrived with v4).
    let may_create =
        (version < 4 || request.allow_auto_topic_creation) && context.kafka().auto_create_topics;
    for wanted in wanted {
        let found = match &wanted {
            Wanted::Name(name) => snapshot.topic(name.as_str()).cloned(),
            Wanted::Id(id) => topic_by_id(context, &snapshot, *id),
        };
        // A topic the principal may not describe is refused before its existence is looked at
        // (a name), or without its name (an id), as Kafka does.
        let described = match (&wanted, &found) {
            (Wanted::Name(name), _) => context.topic_authorized(Operation::Describe, name),
            (Wanted::Id(_), Some(topic)) => {
                context.topic_authorized(Operation::Describe, &topic.name)
            }
            (Wanted::Id(_), None) => true,
        };
        if !described {
            let refused = MetadataResponseTopic::default()
                .with_error_code(ResponseError::TopicAuthorizationFailed.code());
            response.topics.push(match wanted {
                Wanted::Name(name) => refused.with_name(Some(TopicName(name))),
                Wanted::Id(id) => refused.with_topic_id(id),
            });
            continue;
        }
        let topic = match (found, wanted) {
            (Some(topic), _) => topic,
            (None, Wanted::Id(id)) => {
                response.topics.push(
                    MetadataResponseTopic::default()
                        .with_error_code(ResponseError::UnknownTopicId.code())
                        .with_topic_id(id),
                );
                continue;
            }
            (None, Wanted::Name(name)) if !may_create => {
                response.topics.push(unknown_topic(
                    name,
                    ResponseError::UnknownTopicOrPartition.code(),
                ));
                continue;
            }
            // Creating needs Create on the cluster or on the topic (Kafka's rule).
            (None, Wanted::Name(name))
                if !context.cluster_authorized(Operation::Create)
                    && !context.topic_authorized(Operation::Create, &name) =>
            {
                response.topics.push(unknown_topic(
                    name,
                    ResponseError::TopicAuthorizationFailed.code(),
                ));
                continue;
            }
            (None, Wanted::Name(name)) => match auto_create(context, name.as_str()).await {
                Ok(()) => {
                    snapshot = context.services.snapshot();
                    match snapshot.topic(name.as_str()) {
                        Some(topic) => topic.clone(),
                        // Deleted again at once by another client.
                        None => {
                            response.topics.push(unknown_topic(
                                name,
                                ResponseError::UnknownTopicOrPartition.code(),
                            ));
                            continue;
                        }
                    }
                }
                Err(code) => {
                    response.topics.push(unknown_topic(name, code));
                    continue;
                }
            },
        };
        let answer = topic_metadata(context, &snapshot, &topic).await;
        response
            .topics
            .push(with_operations(context, include_topic_operations, answer));
    }
    response
}

/// First Metadata version that can carry authorized operations (KIP-430).
const AUTHORIZED_OPERATIONS_VERSION: i16 = 8;
/// Last Metadata version with the cluster's authorized operations (KIP-700 moved them to
/// DescribeCluster).
const CLUSTER_OPERATIONS_VERSION_MAX: i16 = 10;

/// A described topic with its authorized-operations bit set, when the client asked for it.
fn with_operations(
    context: &KafkaContext<'_>,
    include: bool,
    topic: MetadataResponseTopic,
) -> MetadataResponseTopic {
    if !include {
        return topic;
    }
    let operations = match &topic.name {
        Some(name) => context.authorized_operations(ResourceType::Topic, name.as_str()),
        None => AUTHORIZED_OPERATIONS_OMITTED,
    };
    topic.with_topic_authorized_operations(operations)
}

/// The Kafka endpoint of broker `node`: this broker's advertised Kafka address, or the one the
/// cluster metadata lists. `None` for a broker without a Kafka listener or not known.
pub(crate) fn kafka_endpoint(
    context: &KafkaContext<'_>,
    snapshot: &CatalogSnapshot,
    node: i32,
) -> Option<(StrBytes, i32)> {
    if node == snapshot.local_node {
        let (host, port) = context.broker.advertised();
        return Some((host.clone(), port));
    }
    let broker = snapshot.brokers.get(&node)?;
    let (host, port) = broker.kafka.as_ref()?;
    Some((StrBytes::from_string(host.clone()), i32::from(*port)))
}

/// Every broker a Kafka client may reach: unfenced, with a Kafka listener (Kafka lists only
/// live brokers). This broker is always listed: the client is talking to it.
pub(crate) fn kafka_brokers(
    context: &KafkaContext<'_>,
    snapshot: &CatalogSnapshot,
) -> Vec<MetadataResponseBroker> {
    snapshot
        .broker_list()
        .into_iter()
        .filter(|node| {
            *node == snapshot.local_node
                || snapshot
                    .brokers
                    .get(node)
                    .is_some_and(|broker| !broker.fenced)
        })
        .filter_map(|node| {
            let (host, port) = kafka_endpoint(context, snapshot, node)?;
            let rack = snapshot
                .brokers
                .get(&node)
                .and_then(|broker| broker.rack.clone())
                .map(StrBytes::from_string);
            Some(
                MetadataResponseBroker::default()
                    .with_node_id(BrokerId(node))
                    .with_host(host)
                    .with_port(port)
                    .with_rack(rack),
            )
        })
        .collect()
}

/// Whether `node` is a replica a client cannot reach now: fenced, or unknown to the metadata.
fn is_offline(snapshot: &CatalogSnapshot, node: i32) -> bool {
    if snapshot.brokers.is_empty() {
        return node != snapshot.local_node;
    }
    snapshot
        .brokers
        .get(&node)
        .is_none_or(|broker| broker.fenced)
}

fn unknown_topic(name: StrBytes, code: i16) -> MetadataResponseTopic {
    MetadataResponseTopic::default()
        .with_error_code(code)
        .with_name(Some(TopicName(name)))
}

/// The topic a Kafka topic id names, if this broker has it.
pub(crate) fn topic_by_id(
    context: &KafkaContext<'_>,
    snapshot: &CatalogSnapshot,
    id: Uuid,
) -> Option<Arc<TopicMetadata>> {
    let catalog_id = context.broker.identity.catalog_id(id)?;
    snapshot
        .topics
        .values()
        .find(|topic| topic.id == catalog_id)
        .cloned()
}

/// The topic a data request names, if the principal may do `operation` on it: by id when
/// `by_id` (the request's version names topics by id: Produce v13+, Fetch v13+), by name
/// otherwise. `Err`: the Kafka error code for each of its partitions, in Kafka's order:
/// UNKNOWN_TOPIC_ID for an id this broker lacks; TOPIC_AUTHORIZATION_FAILED for a topic the
/// principal may not do `operation` on, whether it exists or not; UNKNOWN_TOPIC_OR_PARTITION.
pub(crate) fn named_topic(
    context: &KafkaContext<'_>,
    snapshot: &CatalogSnapshot,
    by_id: bool,
    name: &str,
    id: Uuid,
    operation: Operation,
) -> Result<Arc<TopicMetadata>, i16> {
    let refused = ResponseError::TopicAuthorizationFailed.code();
    if by_id {
        let topic =
            topic_by_id(context, snapshot, id).ok_or(ResponseError::UnknownTopicId.code())?;
        if !context.topic_authorized(operation, &topic.name) {
            return Err(refused);
        }
        Ok(topic)
    } else {
        if !context.topic_authorized(operation, name) {
            return Err(refused);
        }
        snapshot
            .topic(name)
            .cloned()
            .ok_or(ResponseError::UnknownTopicOrPartition.code())
    }
}

/// The shard owning `partition` of `topic` and its key; `None`: no such partition.
pub(crate) fn owned_partition(
    topic: &TopicMetadata,
    partition: i32,
) -> Option<(ShardId, PartitionKey)> {
    let partition = u32::try_from(partition).ok()?;
    let owner = topic.owner_of(partition)?;
    Some((
        owner,
        PartitionKey {
            topic_id: topic.id,
            partition,
        },
    ))
}

/// Creates `name` with the configured default partition count (Kafka's
/// `auto.create.topics.enable` and `num.partitions`). Another client creating it meanwhile is
/// success. `Err`: the Kafka error code for the topic.
pub(crate) async fn auto_create(context: &KafkaContext<'_>, name: &str) -> Result<(), i16> {
    let partitions = i64::from(context.kafka().default_partitions);
    match create_topic(context.services, name, partitions, 0, &[]).await {
        Ok(()) => {
            tracing::info!(
                topic = name,
                partitions,
                client_id = context.client_id,
                peer = ?context.peer,
                "topic auto-created for a Kafka client"
            );
            Ok(())
        }
        Err((ErrorCode::TopicAlreadyExists, _)) => Ok(()),
        Err((code, message)) => {
            tracing::debug!(topic = name, %message, "topic not auto-created");
            Err(kafka_code(code))
        }
    }
}

/// One topic as Metadata describes it: each partition's leader, epoch, replicas and ISR from
/// the snapshot; LEADER_NOT_AVAILABLE (leader -1) for a partition without a leader, and for one
/// this broker leads that is still opening after a start or offline (its data damaged: this
/// broker is then an offline replica). Only partitions this broker leads are asked of the owning
/// shards; the others are the cluster metadata's word.
async fn topic_metadata(
    context: &KafkaContext<'_>,
    snapshot: &CatalogSnapshot,
    topic: &TopicMetadata,
) -> MetadataResponseTopic {
    let local = snapshot.local_node;
    let roles: Vec<_> = (0..topic.partition_count())
        .map(|partition| topic.role(partition, local))
        .collect();
    let led: Vec<u32> = (0..topic.partition_count())
        .filter(|partition| roles[*partition as usize].leader == Some(local))
        .collect();
    let items: Vec<_> = led
        .iter()
        .map(|partition| {
            let key = PartitionKey {
                topic_id: topic.id,
                partition: *partition,
            };
            (topic.partition_shards[*partition as usize], key)
        })
        .collect();
    let states = scatter(context.services, items, |shard, partitions| async move {
        shard.states(&partitions)
    })
    .await;
    let mut states = led.into_iter().zip(states).peekable();
    let partitions = roles
        .into_iter()
        .enumerate()
        .map(|(index, role)| {
            let state = match states.peek() {
                Some((led, _)) if *led as usize == index => states.next().map(|(_, state)| state),
                _ => None,
            };
            let mut offline: Vec<BrokerId> = role
                .replicas
                .iter()
                .filter(|node| is_offline(snapshot, **node))
                .map(|node| BrokerId(*node))
                .collect();
            let partition = MetadataResponsePartition::default()
                .with_partition_index(index as i32)
                .with_leader_epoch(role.leader_epoch)
                .with_replica_nodes(role.replicas.iter().map(|node| BrokerId(*node)).collect())
                .with_isr_nodes(role.isr.iter().map(|node| BrokerId(*node)).collect());
            let not_led = partition
                .clone()
                .with_error_code(ResponseError::LeaderNotAvailable.code())
                .with_leader_id(BrokerId(-1));
            let partition = match (role.leader, state) {
                (None, _) => not_led,
                (Some(leader), None | Some(Ok(_))) => partition.with_leader_id(BrokerId(leader)),
                (Some(_), Some(Err(PartitionError::Opening))) => not_led,
                (Some(_), Some(Err(PartitionError::Offline(_)))) => {
                    if !offline.contains(&BrokerId(local)) {
                        offline.push(BrokerId(local));
                    }
                    not_led
                }
                (Some(_), Some(Err(error))) => partition
                    .with_error_code(kafka_code(partition_error_code(&error)))
                    .with_leader_id(BrokerId(-1)),
            };
            partition.with_offline_replicas(offline)
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_string(topic.name.clone()))))
        .with_topic_id(context.broker.identity.topic_id(topic.id))
        .with_is_internal(is_internal_topic(&topic.name))
        .with_partitions(partitions)
}
