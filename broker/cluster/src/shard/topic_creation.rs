//! Creating a topic so that it exists wholly or not at all.
//!
//! The catalog first reserves the topic (name, id, placement, and the per-shard partition limit
//! checked), every owner then creates and opens its partitions, and only then does the catalog
//! name the topic, durably. A failure at any step removes what was created (partitions closed,
//! the topic directory removed) and releases the name, so no snapshot ever names a partition
//! that no shard holds, and a produce can never wait on one. A crash before the catalog names the
//! topic leaves a directory it does not name, which the next start removes.
//!
//! In a cluster (`snapshot().cluster_mode`) the metadata quorum decides: both operations go to
//! the [`ClusterTopics`] the server registers (`ShardServices::cluster_topics`), which proposes
//! the change to the controller and returns once this broker's catalog has applied it; its
//! reconciler opens the partitions this broker hosts. The group and transaction coordinators
//! create their internal topics through here either way.
//!
//! What is not here: the catalog's own rules (see `catalog`) and the partitions' storage (see
//! `shard::partition`).

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;

use spate_protocol::error::ErrorCode;

use super::mesh::ShardServices;
use super::messages::PartitionError;
use super::router::broadcast;
use crate::catalog::{CatalogError, TopicConfig, TopicMetadata};

/// Why a topic could not be created. Nothing of it is left either way.
#[derive(Debug, thiserror::Error)]
pub enum TopicCreationError {
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("creating the partitions of topic {topic} failed, nothing was kept: {source}")]
    Partitions {
        topic: String,
        source: PartitionError,
    },
    /// The cluster refused or could not make the change (the controller's answer, or no
    /// controller in time): `code` is what a client is answered.
    #[error("topic {topic}: {message}")]
    Cluster {
        topic: String,
        code: ErrorCode,
        message: String,
    },
}

/// A topic operation's future on a cluster member (shard-local, so not `Send`).
pub type ClusterTopicFuture =
    Pin<Box<dyn Future<Output = Result<Arc<TopicMetadata>, TopicCreationError>>>>;

/// How a cluster member creates and grows topics: through the controller (implemented by the
/// server over its metadata proposals). Each returns the topic as this broker's catalog has it
/// once the change is applied here.
pub trait ClusterTopics {
    /// Creates `name`; `replication_factor: None` takes the cluster's default (internal topics:
    /// `min(3, brokers)`).
    fn create_topic(
        &self,
        name: &str,
        partitions: u32,
        replication_factor: Option<u16>,
        config: TopicConfig,
    ) -> ClusterTopicFuture;

    /// Grows `name` to `partitions` partitions in all.
    fn add_partitions(&self, name: &str, partitions: u32) -> ClusterTopicFuture;
}

/// The partition count of a cluster request, or the catalog's refusal.
fn cluster_partitions(partitions: i64, limit: u32) -> Result<u32, TopicCreationError> {
    u32::try_from(partitions)
        .ok()
        .filter(|count| (1..=limit).contains(count))
        .ok_or(TopicCreationError::Catalog(
            CatalogError::InvalidPartitions { partitions, limit },
        ))
}

/// The server's [`ClusterTopics`], or the refusal when it registered none (a cluster member
/// always does; a test shard may not).
fn cluster_topics<S: ShardServices>(
    services: &Rc<S>,
    name: &str,
) -> Result<Rc<dyn ClusterTopics>, TopicCreationError> {
    services.cluster_topics().ok_or_else(|| {
        TopicCreationError::Catalog(CatalogError::ClusterManaged {
            name: name.to_string(),
        })
    })
}

/// Creates `name` with `partitions` partitions: reserve, open on every owner, commit.
pub async fn create_topic<S: ShardServices>(
    services: &Rc<S>,
    name: &str,
    partitions: i64,
    config: TopicConfig,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    if services.snapshot().cluster_mode {
        let count = cluster_partitions(partitions, services.catalog.partitions_per_topic_max())?;
        return cluster_topics(services, name)?
            .create_topic(name, count, None, config)
            .await;
    }
    let catalog = services.catalog.clone();
    let owned_name = name.to_string();
    let topic = glommio::executor()
        .spawn_blocking(move || catalog.reserve_topic(&owned_name, partitions, config))
        .await?;
    open_and_commit(services, topic, Reserved::Topic).await
}

/// Grows topic `name` to `partitions` partitions in all, the same way: the catalog reserves the
/// new partitions (placed and checked against the per-shard limit), their owners open them, then
/// the catalog names the new count, durably. Before that commit no snapshot names the new
/// partitions, so nothing is produced to them; a failure removes them and leaves the topic as it
/// was. A crash before the commit leaves empty partition directories the next start removes.
pub async fn add_partitions<S: ShardServices>(
    services: &Rc<S>,
    name: &str,
    partitions: i64,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    if services.snapshot().cluster_mode {
        let count = cluster_partitions(partitions, services.catalog.partitions_per_topic_max())?;
        return cluster_topics(services, name)?
            .add_partitions(name, count)
            .await;
    }
    let catalog = services.catalog.clone();
    let owned_name = name.to_string();
    let topic = glommio::executor()
        .spawn_blocking(move || catalog.reserve_partitions(&owned_name, partitions))
        .await?;
    let existing = services
        .snapshot()
        .topic(name)
        .map_or(0, |current| current.partition_count());
    open_and_commit(
        services,
        topic,
        Reserved::Partitions {
            first_partition: existing,
        },
    )
    .await
}

/// What the catalog reserved, and so what a failure must remove.
#[derive(Debug, Clone, Copy)]
enum Reserved {
    /// A whole new topic.
    Topic,
    /// Partitions `first_partition..` of an existing topic.
    Partitions { first_partition: u32 },
}

/// The steps creation and growth share once the catalog has reserved `topic`: every owner opens
/// its partitions, then the catalog names them, durably; a failure removes what was reserved.
async fn open_and_commit<S: ShardServices>(
    services: &Rc<S>,
    topic: Arc<TopicMetadata>,
    reserved: Reserved,
) -> Result<Arc<TopicMetadata>, TopicCreationError> {
    let undo = || async {
        match reserved {
            Reserved::Topic => abandon(services, &topic).await,
            Reserved::Partitions { first_partition } => {
                abandon_partitions(services, &topic, first_partition).await
            }
        }
    };
    let opened = topic.clone();
    if let Err(source) = broadcast(services, move |shard| {
        shard.open_topic_partitions(opened.clone())
    })
    .await
    {
        undo().await;
        return Err(TopicCreationError::Partitions {
            topic: topic.name.clone(),
            source,
        });
    }
    let catalog = services.catalog.clone();
    let committed = topic.clone();
    if let Err(error) = glommio::executor()
        .spawn_blocking(move || catalog.commit_topic(&committed))
        .await
    {
        undo().await;
        return Err(error.into());
    }
    Ok(topic)
}

/// Closes and removes the partitions from `first_partition` on that an addition opened, then
/// gives up the reservation; the topic keeps its old partitions untouched.
async fn abandon_partitions<S: ShardServices>(
    services: &Rc<S>,
    topic: &Arc<TopicMetadata>,
    first_partition: u32,
) {
    assert!(
        first_partition > 0,
        "an addition keeps the existing partitions"
    );
    let abandoned = topic.clone();
    if let Err(error) = broadcast(services, move |shard| {
        shard.delete_topic_partitions(abandoned.clone(), first_partition)
    })
    .await
    {
        tracing::warn!(topic = %topic.name, %error, "removing the partitions of a failed addition");
    }
    let directories: Vec<_> = (first_partition..topic.partition_count())
        .map(|partition| topic.partition_directory(partition))
        .collect();
    let removed = glommio::executor()
        .spawn_blocking(move || {
            directories
                .iter()
                .try_for_each(|path| remove_directory_tree(path))
        })
        .await;
    if let Err(error) = removed {
        tracing::warn!(topic = %topic.name, %error, "cannot remove a partition of a failed addition; the next start removes it");
    }
    let catalog = services.catalog.clone();
    let released = topic.clone();
    glommio::executor()
        .spawn_blocking(move || catalog.release_topic(&released))
        .await;
}

/// Closes the partitions the owners opened, removes the topic's directory and releases the
/// name. What cannot be removed now is an orphan the next start removes: the catalog never
/// names it and its id is not given again.
async fn abandon<S: ShardServices>(services: &Rc<S>, topic: &Arc<TopicMetadata>) {
    let abandoned = topic.clone();
    if let Err(error) = broadcast(services, move |shard| {
        shard.delete_topic_partitions(abandoned.clone(), 0)
    })
    .await
    {
        tracing::warn!(topic = %topic.name, %error, "removing the partitions of a failed creation");
    }
    let directory = topic.directory.clone();
    let removed = glommio::executor()
        .spawn_blocking(move || remove_directory_tree(&directory))
        .await;
    if let Err(error) = removed {
        tracing::warn!(
            topic = %topic.name,
            directory = %topic.directory.display(),
            %error,
            "cannot remove the directory of a failed creation; the next start removes it"
        );
    }
    let catalog = services.catalog.clone();
    let released = topic.clone();
    glommio::executor()
        .spawn_blocking(move || catalog.release_topic(&released))
        .await;
}

/// Removes a directory and everything in it; a missing one is fine, and anything else at that
/// path (not made by the broker) is left alone.
fn remove_directory_tree(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.is_dir() => std::fs::remove_dir_all(path),
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}
