//! Topic administration in a cluster: every change is a proposal to the controller
//! (`super::propose`), answered once this broker applied it, so the topic as the answer
//! describes it is already in this broker's catalog.
//!
//! [`ServerClusterTopics`] is what `spate_cluster::shard::topic_creation` calls in cluster mode,
//! so the admin handlers and the coordinators' internal topics (`__consumer_offsets`,
//! `__transaction_state`: replication factor `min(3, brokers)`) share one path.

use std::collections::BTreeMap;
use std::rc::{Rc, Weak};
use std::sync::Arc;

use spate_metadata::{ApplyError, ApplyOutcome, MetadataCommand};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use super::{propose, ProposeError};
use crate::catalog::{is_internal_topic, CatalogError, TopicConfig, TopicMetadata};
use crate::services::Services;
use crate::shard::topic_creation::{ClusterTopicFuture, ClusterTopics, TopicCreationError};

/// Most replicas of an internal topic (Kafka's `offsets.topic.replication.factor` default, 3),
/// fewer when the cluster has fewer active brokers.
pub const INTERNAL_TOPIC_REPLICATION_FACTOR_MAX: u16 = 3;

/// The server's [`ClusterTopics`]: one per shard, registered in its `Services`.
pub struct ServerClusterTopics {
    /// Weak: the services own this.
    services: Weak<Services>,
}

impl ServerClusterTopics {
    pub fn new(services: Weak<Services>) -> Self {
        Self { services }
    }
}

impl ClusterTopics for ServerClusterTopics {
    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: TopicConfig,
    ) -> ClusterTopicFuture {
        let services = self.services.upgrade();
        let name = name.to_string();
        Box::pin(async move {
            let services = services.ok_or_else(|| stopping(&name))?;
            create_topic(
                &services,
                &name,
                partitions,
                replication_factor,
                None,
                config,
            )
            .await
        })
    }

    fn add_partitions(&self, name: &str, partitions: u32) -> ClusterTopicFuture {
        let services = self.services.upgrade();
        let name = name.to_string();
        Box::pin(async move {
            let services = services.ok_or_else(|| stopping(&name))?;
            add_partitions(&services, &name, partitions, None).await
        })
    }
}

fn stopping(name: &str) -> TopicCreationError {
    TopicCreationError::Cluster {
        topic: name.to_string(),
        code: ErrorCode::BrokerNotAvailable,
        message: "the broker is stopping".to_string(),
    }
}

/// A proposal's failure as a topic operation's.
fn failure(name: &str, error: ProposeError) -> TopicCreationError {
    match error {
        ProposeError::Refused(ApplyError::TopicExists { .. }) => {
            TopicCreationError::Catalog(CatalogError::TopicAlreadyExists {
                name: name.to_string(),
            })
        }
        ProposeError::Refused(ApplyError::UnknownTopic { .. }) => {
            TopicCreationError::Catalog(CatalogError::UnknownTopic {
                name: name.to_string(),
            })
        }
        error => TopicCreationError::Cluster {
            topic: name.to_string(),
            code: error.error_code(),
            message: error.to_string(),
        },
    }
}

/// The topic as this broker's catalog has it after the proposal applied here.
fn applied_topic(
    services: &Services,
    name: &str,
    topic_id: Option<u64>,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    services
        .snapshot()
        .topic(name)
        .filter(|topic| topic_id.is_none_or(|id| topic.id == id))
        .cloned()
        .ok_or_else(|| TopicCreationError::Cluster {
            topic: name.to_string(),
            code: ErrorCode::UnknownTopicOrPartition,
            message: format!("topic {name} was changed again before this broker applied it"),
        })
}

/// The replication factor a creation without one gets: internal topics `min(3, active
/// brokers)`, others the configured default (`None`: the controller's `min(3, brokers)`).
fn default_replication_factor(services: &Services, name: &str) -> Option<u16> {
    if is_internal_topic(name) {
        let active = services.cluster.image().active_brokers().len();
        let active = u16::try_from(active).unwrap_or(u16::MAX).max(1);
        return Some(active.min(INTERNAL_TOPIC_REPLICATION_FACTOR_MAX));
    }
    services.config.limits.default_replication_factor
}

/// Creates `name` through the controller. `replication_factor: None` takes the default;
/// `assignments` (one replica list per partition) overrides the controller's placement.
pub async fn create_topic(
    services: &Rc<Services>,
    name: &str,
    partitions: u32,
    replication_factor: Option<u16>,
    assignments: Option<Vec<Vec<NodeId>>>,
    config: TopicConfig,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    let replication_factor =
        replication_factor.or_else(|| default_replication_factor(services, name));
    let command = MetadataCommand::CreateTopic {
        name: name.to_string(),
        partitions,
        replication_factor,
        assignments,
        config: config.to_map(),
    };
    match propose(services, command).await {
        Ok(ApplyOutcome::TopicCreated { topic_id }) => {
            applied_topic(services, name, Some(topic_id))
        }
        Ok(other) => Err(TopicCreationError::Cluster {
            topic: name.to_string(),
            code: ErrorCode::Unknown,
            message: format!("the controller answered {other:?} to a topic creation"),
        }),
        Err(error) => Err(failure(name, error)),
    }
}

/// Grows `name` to `partitions` partitions through the controller.
pub async fn add_partitions(
    services: &Rc<Services>,
    name: &str,
    partitions: u32,
    assignments: Option<Vec<Vec<NodeId>>>,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    let command = MetadataCommand::CreatePartitions {
        name: name.to_string(),
        count: partitions,
        assignments,
    };
    propose(services, command)
        .await
        .map_err(|error| failure(name, error))?;
    applied_topic(services, name, None)
}

/// Deletes `name` (only if its id is `topic_id`, when given) through the controller.
pub async fn delete_topic(
    services: &Rc<Services>,
    name: &str,
    topic_id: Option<u64>,
) -> Result<(), (ErrorCode, String)> {
    let command = MetadataCommand::DeleteTopic {
        name: name.to_string(),
        topic_id,
    };
    propose(services, command)
        .await
        .map(|_| ())
        .map_err(|error| (error.error_code(), error.to_string()))
}

/// Replaces `name`'s whole configuration through the controller.
pub async fn replace_topic_config(
    services: &Rc<Services>,
    name: &str,
    config: &TopicConfig,
) -> Result<(), (ErrorCode, String)> {
    let command = MetadataCommand::AlterTopicConfig {
        name: name.to_string(),
        config: config.to_map().into_iter().collect::<BTreeMap<_, _>>(),
    };
    propose(services, command)
        .await
        .map(|_| ())
        .map_err(|error| (error.error_code(), error.to_string()))
}
