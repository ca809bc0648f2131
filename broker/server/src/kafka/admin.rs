//! The Kafka admin APIs: CreateTopics, DeleteTopics, CreatePartitions, DeleteRecords,
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster, DescribeLogDirs.
//!
//! They run on Spate's own admin machinery, the same as the native handlers
//! (`handlers::admin`): a topic is created wholly or not at all (`shard::topic_creation`),
//! deletions and config changes go durably to the catalog first and then to every shard. So a
//! topic made over Kafka is the same topic to `spate topic describe`, and the other way round.
//! What is here is Kafka's shape of it: per-topic and per-resource error codes and messages,
//! `validate_only`, replication factors and manual assignments (checked against the cluster's
//! brokers: a single broker has one replica per partition, itself), topic ids, and the configs
//! as Kafka names them (`configs`).
//!
//! Every handler answers every failure inside its response and never panics on input. Names a
//! request repeats are refused for each repetition with INVALID_REQUEST, as Kafka does.

pub(crate) mod configs;

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;

use spate_kafka_protocol::kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use spate_kafka_protocol::kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use spate_kafka_protocol::kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use spate_kafka_protocol::kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use spate_kafka_protocol::kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    alter_configs_response, incremental_alter_configs_response, AlterConfigsRequest,
    AlterConfigsResponse, BrokerId, CreatePartitionsRequest, CreatePartitionsResponse,
    CreateTopicsRequest, CreateTopicsResponse, DeleteRecordsRequest, DeleteRecordsResponse,
    DeleteTopicsRequest, DeleteTopicsResponse, DescribeClusterRequest, DescribeClusterResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeLogDirsRequest,
    DescribeLogDirsResponse, IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
    TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;
use spate_security::Operation;
use uuid::Uuid;

use self::configs::{
    apply_changes, describe_broker, describe_topic, operation, resource_type, ConfigChange,
    ConfigRefusal, DescribedConfig, TopicDefaults,
};
use super::authorization::AUTHORIZED_OPERATIONS_OMITTED;
use super::data::kafka_brokers;
use super::errors::kafka_code;
use super::KafkaContext;
use crate::catalog::{
    validate_topic_name, CatalogError, CatalogSnapshot, TopicConfig, TopicMetadata,
};
use crate::handlers::admin::{
    add_placed_partitions, blocking, catalog_failure, check_log_config, controller_id,
    create_replicated_topic, delete_topic, refuse_internal, replace_topic_config,
};
use crate::handlers::data::delete_records_before;
use crate::handlers::partition_error_code;
use crate::services::Services;
use crate::shard::messages::PartitionKey;
use crate::shard::router::scatter;

/// A failure of one topic or resource: the Kafka error code and its message.
type Failure = (i16, String);

fn failure(error: ResponseError, message: impl Into<String>) -> Failure {
    (error.code(), message.into())
}

/// A native failure (`handlers::admin`) in Kafka's codes.
fn native((code, message): (ErrorCode, String)) -> Failure {
    (kafka_code(code), message)
}

fn refusal(refusal: ConfigRefusal) -> Failure {
    (refusal.error.code(), refusal.message)
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// Indexes of the entries whose key appeared earlier in `keys`: Kafka answers each of them
/// INVALID_REQUEST and runs none of them.
fn repeated<K: Ord>(keys: impl IntoIterator<Item = K>) -> Vec<bool> {
    let keys: Vec<K> = keys.into_iter().collect();
    let mut counts: BTreeMap<&K, usize> = BTreeMap::new();
    for key in &keys {
        *counts.entry(key).or_default() += 1;
    }
    keys.iter().map(|key| counts[key] > 1).collect()
}

// ---------------------------------------------------------------------------------------------
// CreateTopics

/// A topic CreateTopics would create, after every check that needs no catalog write.
struct TopicPlan {
    partitions: i64,
    /// The replicas each partition gets (the default made explicit).
    replication_factor: i16,
    /// The factor the client asked for; `None`: the default (or the assignment's).
    requested_factor: Option<u16>,
    /// The client's replica list per partition (first = preferred leader), if it gave one.
    assignments: Option<Vec<Vec<NodeId>>>,
    config: TopicConfig,
}

pub(crate) async fn create_topics(
    context: &KafkaContext<'_>,
    version: i16,
    request: CreateTopicsRequest,
) -> CreateTopicsResponse {
    let services = context.services;
    let defaults = TopicDefaults::of(context.config());
    let repeats = repeated(request.topics.iter().map(|topic| topic.name.0.clone()));
    // Create on the cluster allows every topic; otherwise each needs Create on itself.
    let cluster_may_create = context.cluster_authorized(Operation::Create);
    let mut results = Vec::with_capacity(request.topics.len());
    for (topic, repeated) in request.topics.iter().zip(repeats) {
        let name = topic.name.0.as_str();
        let outcome = if repeated {
            Err(failure(
                ResponseError::InvalidRequest,
                format!("topic {name} is named more than once in the request"),
            ))
        } else if !cluster_may_create && !context.topic_authorized(Operation::Create, name) {
            Err(failure(
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.",
            ))
        } else {
            match plan_topic(context, topic) {
                Err(failed) => Err(failed),
                Ok(plan) if request.validate_only => validate_creation(services, name, &plan)
                    .await
                    .map(|()| (None, plan)),
                Ok(plan) => create_replicated_topic(
                    services,
                    name,
                    plan.partitions,
                    plan.requested_factor,
                    plan.assignments.clone(),
                    plan.config.clone(),
                )
                .await
                .map(|created| (Some(created), plan))
                .map_err(native),
            }
        };
        results.push(creation_result(
            context,
            version,
            &defaults,
            &topic.name,
            outcome,
        ));
    }
    CreateTopicsResponse::default().with_topics(results)
}

/// Checks a topic's count, replication and configs; the catalog checks the rest (name, limits,
/// existence) when it reserves the name.
fn plan_topic(
    context: &KafkaContext<'_>,
    topic: &spate_kafka_protocol::kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<TopicPlan, Failure> {
    let name = topic.name.0.as_str();
    refuse_internal(name).map_err(native)?;
    refuse_colliding_name(context.services, name)?;
    let snapshot = context.services.snapshot();
    check_replication_factor(&snapshot, topic.replication_factor)?;
    let partitions = if topic.assignments.is_empty() {
        match topic.num_partitions {
            -1 => i64::from(context.kafka().default_partitions),
            count if count >= 1 => i64::from(count),
            count => {
                return Err(failure(
                    ResponseError::InvalidPartitions,
                    format!("number of partitions {count} must be at least 1 (or -1 for the broker default)"),
                ))
            }
        }
    } else {
        // Manual assignment: the count and the factor come from it, as in Kafka.
        if topic.num_partitions != -1 || topic.replication_factor != -1 {
            return Err(failure(
                ResponseError::InvalidRequest,
                "both a replica assignment and a partition count or replication factor were given; give one",
            ));
        }
        for (index, assignment) in topic.assignments.iter().enumerate() {
            if assignment.partition_index != index as i32 {
                return Err(failure(
                    ResponseError::InvalidReplicaAssignment,
                    "the assignment's partitions must be 0, 1, 2, ... in order",
                ));
            }
            check_assignment(
                &snapshot,
                assignment.broker_ids.iter().map(|broker| broker.0),
            )?;
        }
        check_equal_lengths(
            topic
                .assignments
                .iter()
                .map(|assignment| assignment.broker_ids.len()),
        )?;
        topic.assignments.len() as i64
    };
    let replication_factor = match (topic.assignments.first(), topic.replication_factor) {
        (Some(assignment), _) => assignment.broker_ids.len() as i16,
        (None, -1) => default_replication_factor(context.services, &snapshot),
        (None, factor) => factor,
    };
    let requested_factor = u16::try_from(topic.replication_factor).ok();
    let assignments = (!topic.assignments.is_empty()).then(|| {
        topic
            .assignments
            .iter()
            .map(|assignment| {
                assignment
                    .broker_ids
                    .iter()
                    .map(|broker| broker.0)
                    .collect()
            })
            .collect()
    });
    let changes = topic.configs.iter().map(|config| ConfigChange::Set {
        name: config.name.as_str(),
        value: config.value.as_ref().map(|value| value.as_str()),
    });
    let config = apply_changes(&TopicConfig::default(), changes).map_err(refusal)?;
    check_log_config(context.services, &config).map_err(native)?;
    check_min_insync_replicas(&config, replication_factor.max(1) as usize)?;
    Ok(TopicPlan {
        partitions,
        replication_factor,
        requested_factor,
        assignments,
        config,
    })
}

/// `min.insync.replicas` can be met only by at most the partition's replicas; a larger value
/// would refuse every acks=all write, so the config is refused at once (INVALID_CONFIG). A single
/// broker's partitions have one replica.
fn check_min_insync_replicas(
    config: &TopicConfig,
    replication_factor: usize,
) -> Result<(), Failure> {
    match config.min_insync_replicas {
        Some(count) if usize::from(count) > replication_factor => Err(failure(
            ResponseError::InvalidConfig,
            format!(
                "min.insync.replicas={count} is larger than the replication factor \
                 {replication_factor}: acks=all writes could never be acknowledged"
            ),
        )),
        _ => Ok(()),
    }
}

/// The replicas of each partition of `topic` (every partition has as many).
fn replication_factor_of(snapshot: &CatalogSnapshot, topic: &TopicMetadata) -> usize {
    topic
        .role(0, snapshot.local_node)
        .replication_factor()
        .max(1)
}

/// Kafka refuses a name that differs from an existing one only by `.` against `_` (they collide
/// in its metric names); clients that rely on that get the same answer here.
fn refuse_colliding_name(services: &Services, name: &str) -> Result<(), Failure> {
    if !name.contains(['.', '_']) {
        return Ok(());
    }
    let folded = name.replace('.', "_");
    let snapshot = services.snapshot();
    match snapshot
        .topics
        .keys()
        .find(|existing| existing.as_str() != name && existing.replace('.', "_") == folded)
    {
        Some(existing) => Err(failure(
            ResponseError::InvalidTopicException,
            format!("topic {name} collides with existing topic {existing} ('.' and '_' are the same to Kafka's metrics)"),
        )),
        None => Ok(()),
    }
}

/// The brokers a new replica may be placed on: the unfenced ones (a single broker: itself).
fn active_brokers(snapshot: &CatalogSnapshot) -> Vec<i32> {
    if snapshot.brokers.is_empty() {
        return vec![snapshot.local_node];
    }
    snapshot
        .brokers
        .values()
        .filter(|broker| !broker.fenced)
        .map(|broker| broker.id)
        .collect()
}

/// The replication factor of a topic created without one: the configured default
/// (`default_replication_factor`), else `min(3, active brokers)` in a cluster (Kafka's
/// `default.replication.factor` analog); 1 for a single broker. The controller caps it at the
/// active brokers as it places the replicas.
fn default_replication_factor(services: &Services, snapshot: &CatalogSnapshot) -> i16 {
    let active = active_brokers(snapshot).len().max(1);
    let configured = if snapshot.cluster_mode {
        services.config.limits.default_replication_factor
    } else {
        None
    };
    let factor = configured.map_or(active.min(3), |factor| usize::from(factor).min(active));
    factor.max(1) as i16
}

/// A replication factor: -1 (the default) or 1 up to the active brokers.
fn check_replication_factor(snapshot: &CatalogSnapshot, factor: i16) -> Result<(), Failure> {
    let available = active_brokers(snapshot).len();
    match factor {
        -1 => Ok(()),
        factor if factor >= 1 && factor as usize <= available => Ok(()),
        factor if factor >= 1 => Err(failure(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {factor} is larger than the {available} active brokers"),
        )),
        factor => Err(failure(
            ResponseError::InvalidReplicationFactor,
            format!("replication factor {factor} must be at least 1 (or -1 for the default)"),
        )),
    }
}

/// A partition's replicas in a manual assignment: distinct active brokers (a single broker:
/// itself, once).
fn check_assignment(
    snapshot: &CatalogSnapshot,
    brokers: impl Iterator<Item = i32>,
) -> Result<(), Failure> {
    let brokers: Vec<i32> = brokers.collect();
    let active = active_brokers(snapshot);
    if brokers.is_empty() {
        return Err(failure(
            ResponseError::InvalidReplicaAssignment,
            "a partition needs at least one replica",
        ));
    }
    if let Some(unknown) = brokers.iter().find(|broker| !active.contains(broker)) {
        return Err(failure(
            ResponseError::InvalidReplicaAssignment,
            format!("replicas {brokers:?}: broker {unknown} is not an active broker (active: {active:?})"),
        ));
    }
    let mut distinct = brokers.clone();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() != brokers.len() {
        return Err(failure(
            ResponseError::InvalidReplicaAssignment,
            format!("replicas {brokers:?} name a broker more than once"),
        ));
    }
    Ok(())
}

/// Every partition of one manual assignment has the same number of replicas (Kafka's rule).
fn check_equal_lengths(mut lengths: impl Iterator<Item = usize>) -> Result<(), Failure> {
    let Some(first) = lengths.next() else {
        return Ok(());
    };
    if lengths.all(|length| length == first) {
        Ok(())
    } else {
        Err(failure(
            ResponseError::InvalidReplicaAssignment,
            "every partition of the assignment must have the same number of replicas",
        ))
    }
}

/// validate_only: the catalog reserves the name (checking it, the partition count and the
/// limits) and releases it at once; nothing is created. A cluster's catalog is the controller's
/// to change: there the name, the count and the existence are checked against this broker's
/// view, and the controller checks them again at creation.
async fn validate_creation(
    services: &Rc<Services>,
    name: &str,
    plan: &TopicPlan,
) -> Result<(), Failure> {
    if services.cluster.is_cluster_mode() {
        return validate_cluster_creation(services, name, plan.partitions);
    }
    let catalog = services.catalog.clone();
    let owned_name = name.to_string();
    let (partitions, config) = (plan.partitions, plan.config.clone());
    blocking(move || {
        let reserved = catalog.reserve_topic(&owned_name, partitions, config)?;
        catalog.release_topic(&reserved);
        Ok(())
    })
    .await
    .map_err(|error| native(catalog_failure(error)))
}

fn validate_cluster_creation(
    services: &Services,
    name: &str,
    partitions: i64,
) -> Result<(), Failure> {
    let limit = services.catalog.partitions_per_topic_max();
    validate_topic_name(name).map_err(|error| native(catalog_failure(error)))?;
    if partitions < 1 || partitions > i64::from(limit) {
        return Err(native(catalog_failure(CatalogError::InvalidPartitions {
            partitions,
            limit,
        })));
    }
    if services.snapshot().topic(name).is_some() {
        return Err(native(catalog_failure(CatalogError::TopicAlreadyExists {
            name: name.to_string(),
        })));
    }
    Ok(())
}

fn creation_result(
    context: &KafkaContext<'_>,
    version: i16,
    defaults: &TopicDefaults,
    name: &TopicName,
    outcome: Result<(Option<Arc<TopicMetadata>>, TopicPlan), Failure>,
) -> CreatableTopicResult {
    let result = CreatableTopicResult::default().with_name(name.clone());
    // v5+ answers the created topic's configs only to a principal that may describe them.
    let configs_described =
        version < 5 || context.topic_authorized(Operation::DescribeConfigs, name.0.as_str());
    let result = if configs_described {
        result
    } else {
        result.with_topic_config_error_code(ResponseError::TopicAuthorizationFailed.code())
    };
    match outcome {
        Ok((created, plan)) => {
            // The replicas the controller placed (the plan's factor when validating only).
            let replication_factor = created.as_ref().map_or(plan.replication_factor, |topic| {
                replication_factor_of(&context.services.snapshot(), topic) as i16
            });
            let result = result
                .with_topic_id(created.map_or(Uuid::nil(), |topic| {
                    context.broker.identity.topic_id(topic.id)
                }))
                .with_num_partitions(i32::try_from(plan.partitions).unwrap_or(i32::MAX))
                .with_replication_factor(replication_factor);
            if version >= 5 && configs_described {
                result.with_configs(Some(
                    describe_topic(&plan.config, replication_factor.max(1) as usize, defaults)
                        .into_iter()
                        .map(creatable_config)
                        .collect(),
                ))
            } else {
                result
            }
        }
        Err((code, message)) => result
            .with_error_code(code)
            .with_error_message(Some(text(message)))
            .with_num_partitions(-1)
            .with_replication_factor(-1),
    }
}

fn creatable_config(config: DescribedConfig) -> CreatableTopicConfigs {
    CreatableTopicConfigs::default()
        .with_name(text(config.name))
        .with_value(Some(text(config.value)))
        .with_read_only(config.read_only)
        .with_config_source(config.source as i8)
        .with_is_sensitive(false)
}

// ---------------------------------------------------------------------------------------------
// DeleteTopics

/// A topic DeleteTopics names, by name (v1+) or by id (v6).
enum Named {
    Name(StrBytes),
    Id(Uuid),
}

pub(crate) async fn delete_topics(
    context: &KafkaContext<'_>,
    version: i16,
    request: DeleteTopicsRequest,
) -> DeleteTopicsResponse {
    let mut named: Vec<Result<Named, Failure>> = request
        .topic_names
        .into_iter()
        .map(|name| Ok(Named::Name(name.0)))
        .collect();
    named.extend(request.topics.into_iter().map(|topic| {
        match (topic.name, topic.topic_id.is_nil()) {
            (Some(name), true) => Ok(Named::Name(name.0)),
            (None, false) => Ok(Named::Id(topic.topic_id)),
            (Some(_), false) => Err(failure(
                ResponseError::InvalidRequest,
                "a topic is named by its name or by its id, not both",
            )),
            (None, true) => Err(failure(
                ResponseError::InvalidRequest,
                "a topic without a name or an id",
            )),
        }
    }));
    let keys = named.iter().map(|entry| match entry {
        Ok(Named::Name(name)) => Some((0, name.to_string())),
        Ok(Named::Id(id)) => Some((1, id.to_string())),
        Err(_) => None,
    });
    let repeats = repeated(keys.map(|key| key.unwrap_or_default()));
    let mut responses = Vec::with_capacity(named.len());
    for (entry, repeated) in named.into_iter().zip(repeats) {
        let (name, id, outcome) = match entry {
            Err(failed) => (None, Uuid::nil(), Err(failed)),
            Ok(entry) if repeated => {
                let (name, id) = match entry {
                    Named::Name(name) => (Some(name), Uuid::nil()),
                    Named::Id(id) => (None, id),
                };
                let failed = failure(
                    ResponseError::InvalidRequest,
                    "the topic is named more than once in the request",
                );
                (name, id, Err(failed))
            }
            Ok(entry) => delete_named(context, entry).await,
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.map(TopicName))
            .with_topic_id(if version >= 6 { id } else { Uuid::nil() });
        if let Err((code, message)) = outcome {
            result = result
                .with_error_code(code)
                .with_error_message((version >= 5).then(|| text(message)));
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}

/// Deletes one topic; answers its name and id as the response names them.
async fn delete_named(
    context: &KafkaContext<'_>,
    named: Named,
) -> (Option<StrBytes>, Uuid, Result<(), Failure>) {
    let snapshot = context.services.snapshot();
    let identity = &context.broker.identity;
    let refused = || {
        failure(
            ResponseError::TopicAuthorizationFailed,
            "Authorization failed.",
        )
    };
    let (name, topic) = match named {
        Named::Name(name) => {
            // Refused before its existence is looked at, so a refusal reveals nothing.
            if !context.topic_authorized(Operation::Delete, name.as_str()) {
                return (Some(name), Uuid::nil(), Err(refused()));
            }
            let topic = snapshot.topic(name.as_str()).cloned();
            (name, topic)
        }
        Named::Id(id) => {
            let found = identity.catalog_id(id).and_then(|catalog_id| {
                snapshot
                    .topics
                    .values()
                    .find(|topic| topic.id == catalog_id)
                    .cloned()
            });
            let Some(topic) = found else {
                let failed = failure(
                    ResponseError::UnknownTopicId,
                    format!("no topic has id {id}"),
                );
                return (None, id, Err(failed));
            };
            // Kafka does not hold an id secret, but a name only a describer may learn.
            if !context.topic_authorized(Operation::Describe, &topic.name) {
                return (None, id, Err(refused()));
            }
            if !context.topic_authorized(Operation::Delete, &topic.name) {
                return (Some(text(topic.name.clone())), id, Err(refused()));
            }
            (text(topic.name.clone()), Some(topic))
        }
    };
    let id = topic
        .as_ref()
        .map_or(Uuid::nil(), |topic| identity.topic_id(topic.id));
    let expected_id = topic.as_ref().map(|topic| topic.id);
    let outcome = delete_topic(context.services, name.as_str(), expected_id)
        .await
        .map_err(native);
    (Some(name), id, outcome)
}

// ---------------------------------------------------------------------------------------------
// CreatePartitions

pub(crate) async fn create_partitions(
    context: &KafkaContext<'_>,
    _version: i16,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let services = context.services;
    let repeats = repeated(request.topics.iter().map(|topic| topic.name.0.clone()));
    let mut results = Vec::with_capacity(request.topics.len());
    for (topic, repeated) in request.topics.iter().zip(repeats) {
        let name = topic.name.0.as_str();
        let outcome = if repeated {
            Err(failure(
                ResponseError::InvalidRequest,
                format!("topic {name} is named more than once in the request"),
            ))
        } else if !context.topic_authorized(Operation::Alter, name) {
            Err(failure(
                ResponseError::TopicAuthorizationFailed,
                "Authorization failed.",
            ))
        } else {
            grow(services, topic, request.validate_only).await
        };
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name.clone());
        if let Err((code, message)) = outcome {
            result = result
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}

async fn grow(
    services: &Rc<Services>,
    topic: &spate_kafka_protocol::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic,
    validate_only: bool,
) -> Result<(), Failure> {
    let name = topic.name.0.as_str();
    refuse_internal(name).map_err(native)?;
    let Some(existing) = services
        .snapshot()
        .topic(name)
        .map(|topic| topic.partition_count())
    else {
        return Err(failure(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    };
    let mut placed: Option<Vec<Vec<NodeId>>> = None;
    if let Some(assignments) = &topic.assignments {
        let added = i64::from(topic.count) - i64::from(existing);
        if assignments.len() as i64 != added {
            return Err(failure(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "{} assignments for {added} new partitions",
                    assignments.len()
                ),
            ));
        }
        let snapshot = services.snapshot();
        for assignment in assignments {
            check_assignment(
                &snapshot,
                assignment.broker_ids.iter().map(|broker| broker.0),
            )?;
        }
        placed = Some(
            assignments
                .iter()
                .map(|assignment| {
                    assignment
                        .broker_ids
                        .iter()
                        .map(|broker| broker.0)
                        .collect()
                })
                .collect(),
        );
    }
    let count = i64::from(topic.count);
    if validate_only && services.cluster.is_cluster_mode() {
        // The controller's to check at the change; here only that the topic grows.
        return if count > i64::from(existing) {
            Ok(())
        } else {
            Err(failure(
                ResponseError::InvalidPartitions,
                format!("topic {name} has {existing} partitions; it can only grow"),
            ))
        };
    }
    if validate_only {
        let catalog = services.catalog.clone();
        let owned_name = name.to_string();
        return blocking(move || {
            let reserved = catalog.reserve_partitions(&owned_name, count)?;
            catalog.release_topic(&reserved);
            Ok(())
        })
        .await
        .map_err(|error| native(catalog_failure(error)));
    }
    let count = u32::try_from(topic.count).map_err(|_| {
        failure(
            ResponseError::InvalidPartitions,
            format!("partition count {} must be positive", topic.count),
        )
    })?;
    add_placed_partitions(services, name, count, placed)
        .await
        .map_err(native)
}

// ---------------------------------------------------------------------------------------------
// DeleteRecords

pub(crate) async fn delete_records(
    context: &KafkaContext<'_>,
    _version: i16,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut items = Vec::new();
    // Per topic: whether the principal may delete its records (Kafka answers the others
    // TOPIC_AUTHORIZATION_FAILED per partition, existing or not, and asks nobody).
    let mut deletable = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        let allowed = context.topic_authorized(Operation::Delete, topic.name.0.as_str());
        deletable.push(allowed);
        if !allowed {
            continue;
        }
        for partition in &topic.partitions {
            // A negative index names no partition: u32::MAX is past every topic's count.
            let index = u32::try_from(partition.partition_index).unwrap_or(u32::MAX);
            items.push((topic.name.0.as_str(), index, partition.offset));
        }
    }
    let timeout_ms = u64::try_from(request.timeout_ms).unwrap_or(0);
    let mut answers = delete_records_before(context.services, &items, timeout_ms)
        .await
        .into_iter();
    let topics = request
        .topics
        .iter()
        .zip(deletable)
        .map(|(topic, allowed)| {
            let partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let result = DeleteRecordsPartitionResult::default()
                        .with_partition_index(partition.partition_index);
                    if !allowed {
                        return result
                            .with_low_watermark(-1)
                            .with_error_code(ResponseError::TopicAuthorizationFailed.code());
                    }
                    let answer = answers.next().expect("one answer per partition asked");
                    match answer {
                        Ok(log_start_offset) => result.with_low_watermark(
                            i64::try_from(log_start_offset).unwrap_or(i64::MAX),
                        ),
                        Err(error) => result
                            .with_low_watermark(-1)
                            .with_error_code(kafka_code(partition_error_code(&error))),
                    }
                })
                .collect();
            DeleteRecordsTopicResult::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    DeleteRecordsResponse::default().with_topics(topics)
}

// ---------------------------------------------------------------------------------------------
// DescribeConfigs

pub(crate) async fn describe_configs(
    context: &KafkaContext<'_>,
    version: i16,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let defaults = TopicDefaults::of(context.config());
    let snapshot = context.services.snapshot();
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let described = match resource.resource_type {
                kind if !config_resource_authorized(
                    context,
                    kind,
                    name,
                    Operation::DescribeConfigs,
                ) =>
                {
                    Err(config_resource_refusal(kind))
                }
                resource_type::TOPIC => match snapshot.topic(name) {
                    Some(topic) => Ok(describe_topic(
                        &topic.config,
                        replication_factor_of(&snapshot, topic),
                        &defaults,
                    )),
                    None => Err(failure(
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )),
                },
                resource_type::BROKER => this_broker(context.services, name)
                    .map(|()| describe_broker(context.config(), context.kafka())),
                other => Err(unsupported_resource(other)),
            };
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match described {
                Ok(configs) => {
                    let wanted = resource.configuration_keys.as_ref();
                    let configs = configs
                        .into_iter()
                        .filter(|config| {
                            wanted.is_none_or(|keys| {
                                keys.iter().any(|key| key.as_str() == config.name)
                            })
                        })
                        .map(|config| {
                            described_config(
                                config,
                                request.include_synonyms,
                                version >= 3 && request.include_documentation,
                            )
                        })
                        .collect();
                    result.with_configs(configs)
                }
                Err((code, message)) => result
                    .with_error_code(code)
                    .with_error_message(Some(text(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

/// A broker resource names this broker: its id, or "" (Kafka's cluster-wide default). Another
/// broker's configs are that broker's to describe (Kafka's admin client asks each broker for
/// its own).
fn this_broker(services: &Services, name: &str) -> Result<(), Failure> {
    let local = services.snapshot().local_node;
    if name.is_empty() || name.parse::<i32>() == Ok(local) {
        Ok(())
    } else {
        Err(failure(
            ResponseError::InvalidRequest,
            format!("broker {name:?} is not this broker, which is {local}; ask that broker"),
        ))
    }
}

/// Whether the principal may do `operation` (DescribeConfigs, AlterConfigs) on a config
/// resource: on the topic for a topic, on the cluster for a broker or broker logger (Kafka's
/// rule). Other resource types are refused later, as unsupported.
fn config_resource_authorized(
    context: &KafkaContext<'_>,
    kind: i8,
    name: &str,
    operation: Operation,
) -> bool {
    match kind {
        resource_type::TOPIC => context.topic_authorized(operation, name),
        resource_type::BROKER | resource_type::BROKER_LOGGER => {
            context.cluster_authorized(operation)
        }
        _ => true,
    }
}

/// A refused config resource, with Kafka's code for its type.
fn config_resource_refusal(kind: i8) -> Failure {
    let error = if kind == resource_type::TOPIC {
        ResponseError::TopicAuthorizationFailed
    } else {
        ResponseError::ClusterAuthorizationFailed
    };
    failure(error, "Authorization failed.")
}

fn unsupported_resource(resource: i8) -> Failure {
    let message = if resource == resource_type::BROKER_LOGGER {
        "Spate has no per-logger levels over Kafka; the broker's log level is its --log-level"
            .to_string()
    } else {
        format!("Spate has no config resources of type {resource} (topics are 2, brokers 4)")
    };
    failure(ResponseError::InvalidRequest, message)
}

fn described_config(
    config: DescribedConfig,
    include_synonyms: bool,
    include_documentation: bool,
) -> DescribeConfigsResourceResult {
    let synonyms = if include_synonyms {
        config
            .synonyms
            .iter()
            .map(|synonym| {
                DescribeConfigsSynonym::default()
                    .with_name(text(synonym.name.clone()))
                    .with_value(Some(text(synonym.value.clone())))
                    .with_source(synonym.source as i8)
            })
            .collect()
    } else {
        Vec::new()
    };
    DescribeConfigsResourceResult::default()
        .with_name(text(config.name))
        .with_value(Some(text(config.value)))
        .with_read_only(config.read_only)
        .with_config_source(config.source as i8)
        .with_is_sensitive(false)
        .with_synonyms(synonyms)
        .with_config_type(config.config_type as i8)
        .with_documentation(
            include_documentation.then(|| StrBytes::from_static_str(config.documentation)),
        )
}

// ---------------------------------------------------------------------------------------------
// AlterConfigs and IncrementalAlterConfigs

/// One resource's changes: whole replacement (AlterConfigs) or operations (incremental).
async fn alter_resource<'a>(
    context: &KafkaContext<'_>,
    kind: i8,
    name: &str,
    replace: bool,
    changes: Vec<ConfigChange<'a>>,
    validate_only: bool,
) -> Result<(), Failure> {
    if !config_resource_authorized(context, kind, name, Operation::AlterConfigs) {
        return Err(config_resource_refusal(kind));
    }
    match kind {
        resource_type::TOPIC => {}
        resource_type::BROKER => {
            this_broker(context.services, name)?;
            if changes.is_empty() {
                return Ok(());
            }
            let names: Vec<String> = changes
                .iter()
                .map(|change| change.name().chars().take(256).collect())
                .collect();
            return Err(failure(
                ResponseError::InvalidRequest,
                format!(
                    "broker configs cannot be changed while Spate runs ({}): set them in the broker's configuration (file, flags or SPATE_* environment) and restart",
                    names.join(", ")
                ),
            ));
        }
        other => return Err(unsupported_resource(other)),
    }
    let services = context.services;
    refuse_internal(name).map_err(native)?;
    let Some(topic) = services.snapshot().topic(name).cloned() else {
        return Err(failure(
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        ));
    };
    let base = if replace {
        TopicConfig::default()
    } else {
        topic.config.clone()
    };
    let config = apply_changes(&base, changes).map_err(refusal)?;
    check_min_insync_replicas(&config, replication_factor_of(&services.snapshot(), &topic))?;
    if validate_only {
        return check_log_config(services, &config).map_err(native);
    }
    if config == topic.config {
        return Ok(());
    }
    replace_topic_config(services, name, config)
        .await
        .map_err(native)
}

pub(crate) async fn alter_configs(
    context: &KafkaContext<'_>,
    _version: i16,
    request: AlterConfigsRequest,
) -> AlterConfigsResponse {
    let repeats = repeated(
        request
            .resources
            .iter()
            .map(|resource| (resource.resource_type, resource.resource_name.clone())),
    );
    let mut responses = Vec::with_capacity(request.resources.len());
    for (resource, repeated) in request.resources.iter().zip(repeats) {
        let outcome = if repeated {
            Err(repeated_resource())
        } else {
            let changes = resource
                .configs
                .iter()
                .map(|config| ConfigChange::Set {
                    name: config.name.as_str(),
                    value: config.value.as_ref().map(|value| value.as_str()),
                })
                .collect();
            alter_resource(
                context,
                resource.resource_type,
                resource.resource_name.as_str(),
                true,
                changes,
                request.validate_only,
            )
            .await
        };
        let mut answer = alter_configs_response::AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        if let Err((code, message)) = outcome {
            answer = answer
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        responses.push(answer);
    }
    AlterConfigsResponse::default().with_responses(responses)
}

pub(crate) async fn incremental_alter_configs(
    context: &KafkaContext<'_>,
    _version: i16,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let repeats = repeated(
        request
            .resources
            .iter()
            .map(|resource| (resource.resource_type, resource.resource_name.clone())),
    );
    let mut responses = Vec::with_capacity(request.resources.len());
    for (resource, repeated) in request.resources.iter().zip(repeats) {
        let outcome = if repeated {
            Err(repeated_resource())
        } else {
            let changes: Result<Vec<ConfigChange<'_>>, Failure> = resource
                .configs
                .iter()
                .map(|config| {
                    let name = config.name.as_str();
                    let value = config.value.as_ref().map(|value| value.as_str());
                    match config.config_operation {
                        operation::SET => Ok(ConfigChange::Set { name, value }),
                        operation::DELETE => Ok(ConfigChange::Delete { name }),
                        operation::APPEND => Ok(ConfigChange::Append { name, value }),
                        operation::SUBTRACT => Ok(ConfigChange::Subtract { name, value }),
                        other => Err(failure(
                            ResponseError::InvalidRequest,
                            format!("unknown config operation {other} for {name}"),
                        )),
                    }
                })
                .collect();
            match changes {
                Ok(changes) => {
                    alter_resource(
                        context,
                        resource.resource_type,
                        resource.resource_name.as_str(),
                        false,
                        changes,
                        request.validate_only,
                    )
                    .await
                }
                Err(failed) => Err(failed),
            }
        };
        let mut answer =
            incremental_alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
        if let Err((code, message)) = outcome {
            answer = answer
                .with_error_code(code)
                .with_error_message(Some(text(message)));
        }
        responses.push(answer);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn repeated_resource() -> Failure {
    failure(
        ResponseError::InvalidRequest,
        "the resource is named more than once in the request",
    )
}

// ---------------------------------------------------------------------------------------------
// DescribeCluster

/// DescribeCluster's endpoint types (v1+).
const ENDPOINT_TYPE_BROKERS: i8 = 1;

pub(crate) async fn describe_cluster(
    context: &KafkaContext<'_>,
    version: i16,
    request: DescribeClusterRequest,
) -> DescribeClusterResponse {
    let snapshot = context.services.snapshot();
    let response = DescribeClusterResponse::default()
        .with_cluster_id(context.broker.identity.cluster_id().clone())
        .with_controller_id(BrokerId(controller_id(&snapshot)))
        .with_endpoint_type(if version >= 1 {
            request.endpoint_type
        } else {
            ENDPOINT_TYPE_BROKERS
        });
    if version >= 1 && request.endpoint_type != ENDPOINT_TYPE_BROKERS {
        return response
            .with_controller_id(BrokerId(-1))
            .with_error_code(ResponseError::UnsupportedEndpointType.code())
            .with_error_message(Some(text(format!(
                "endpoint type {} is not served: Spate's controllers are its brokers; ask for brokers (1)",
                request.endpoint_type
            ))));
    }
    // The brokers Metadata lists (unfenced, with a Kafka listener), in DescribeCluster's shape.
    let brokers = kafka_brokers(context, &snapshot)
        .into_iter()
        .map(|broker| {
            DescribeClusterBroker::default()
                .with_broker_id(broker.node_id)
                .with_host(broker.host)
                .with_port(broker.port)
                .with_rack(broker.rack)
        })
        .collect();
    // As Kafka: the brokers are no secret (Metadata lists them too), but the cluster's
    // authorized operations are answered only to a principal that may describe the cluster.
    let operations = if !request.include_cluster_authorized_operations {
        AUTHORIZED_OPERATIONS_OMITTED
    } else if context.cluster_authorized(Operation::Describe) {
        context.cluster_authorized_operations()
    } else {
        0
    };
    response
        .with_brokers(brokers)
        .with_cluster_authorized_operations(operations)
}

// ---------------------------------------------------------------------------------------------
// DescribeLogDirs

/// First DescribeLogDirs version whose answer has a top-level error code.
const DESCRIBE_LOG_DIRS_ERROR_CODE_VERSION: i16 = 3;

pub(crate) async fn describe_log_dirs(
    context: &KafkaContext<'_>,
    version: i16,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !context.cluster_authorized(Operation::Describe) {
        // v3+ carries the code; older versions learn it from the empty answer, as in Kafka.
        let response = DescribeLogDirsResponse::default();
        return if version >= DESCRIBE_LOG_DIRS_ERROR_CODE_VERSION {
            response.with_error_code(ResponseError::ClusterAuthorizationFailed.code())
        } else {
            response
        };
    }
    let services = context.services;
    let snapshot = services.snapshot();
    let local = snapshot.local_node;
    // Every partition asked for that exists and of which this broker holds a replica (Kafka
    // leaves out the ones it does not host).
    let mut wanted: Vec<(Arc<TopicMetadata>, Vec<u32>)> = Vec::new();
    match request.topics {
        None => {
            for topic in snapshot.topics.values() {
                let hosted = (0..topic.partition_count())
                    .filter(|partition| topic.is_hosted(*partition, local))
                    .collect();
                wanted.push((topic.clone(), hosted));
            }
        }
        Some(topics) => {
            for asked in topics {
                let Some(topic) = snapshot.topic(asked.topic.0.as_str()) else {
                    continue;
                };
                let mut partitions: Vec<u32> = asked
                    .partitions
                    .iter()
                    .filter_map(|partition| u32::try_from(*partition).ok())
                    .filter(|partition| *partition < topic.partition_count())
                    .filter(|partition| topic.is_hosted(*partition, local))
                    .collect();
                partitions.sort_unstable();
                partitions.dedup();
                wanted.push((topic.clone(), partitions));
            }
        }
    }
    let sizes = partition_sizes(services, &wanted).await;
    let mut sizes = sizes.into_iter();
    let topics = wanted
        .iter()
        .map(|(topic, partitions)| {
            let partitions = partitions
                .iter()
                .filter_map(|partition| {
                    let size = sizes.next().expect("one size per partition asked")?;
                    Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(*partition as i32)
                            .with_partition_size(i64::try_from(size).unwrap_or(i64::MAX))
                            // A follower's lag is the leader's to know (its fetch progress);
                            // this broker reports 0 for its replicas, as a leader's is.
                            .with_offset_lag(0),
                    )
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(text(topic.name.clone())))
                .with_partitions(partitions)
        })
        .collect();
    let data_dir = &context.config().data_dir;
    let log_dir = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.clone());
    let (total_bytes, usable_bytes) = if version >= 4 {
        disk_space(data_dir)
    } else {
        (-1, -1)
    };
    let result = DescribeLogDirsResult::default()
        .with_log_dir(text(log_dir.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total_bytes)
        .with_usable_bytes(usable_bytes);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Each wanted partition's size from its owner, in order; `None` for one not served now (an
/// offline partition is not described, as Kafka leaves out a replica in a failed log dir).
async fn partition_sizes(
    services: &Rc<Services>,
    wanted: &[(Arc<TopicMetadata>, Vec<u32>)],
) -> Vec<Option<u64>> {
    let items: Vec<_> = wanted
        .iter()
        .flat_map(|(topic, partitions)| {
            partitions.iter().map(|partition| {
                let owner = topic.partition_shards[*partition as usize];
                let key = PartitionKey {
                    topic_id: topic.id,
                    partition: *partition,
                };
                (owner, key)
            })
        })
        .collect();
    scatter(services, items, |shard, partitions| async move {
        shard.sizes(&partitions)
    })
    .await
    .into_iter()
    .map(Result::ok)
    .collect()
}

/// The data directory's file system: total and available bytes (-1 when it cannot tell).
fn disk_space(data_dir: &std::path::Path) -> (i64, i64) {
    match rustix::fs::statvfs(data_dir) {
        Ok(stats) => {
            let block = stats.f_frsize;
            let bytes =
                |blocks: u64| i64::try_from(blocks.saturating_mul(block)).unwrap_or(i64::MAX);
            (bytes(stats.f_blocks), bytes(stats.f_bavail))
        }
        Err(error) => {
            tracing::debug!(%error, path = %data_dir.display(), "statvfs of the data directory");
            (-1, -1)
        }
    }
}
