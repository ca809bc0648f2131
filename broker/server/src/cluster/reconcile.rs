//! The image → catalog reconciler: one task on shard 0 that makes this broker's catalog and
//! shards follow the metadata, one image at a time.
//!
//! For each new image (or controller) it plans the catalog change (`Catalog::plan_cluster`),
//! opens the partitions this broker hosts of new or grown topics on their shards (before the
//! catalog names them, as a single broker's creation does), commits the catalog (durable where
//! topics, configs or replica lists changed; leaders and ISRs only published), removes the
//! partitions of deleted topics (their directories go with `Catalog::finish_deletion`, or at
//! the next start under their tombstones), applies changed configs, then hands every shard the
//! roles of its hosted partitions that changed (`Shard::apply_roles`: leader epochs, followers,
//! acks=all waiters), and last closes and deletes the replicas a completed reassignment or
//! decommission moved off this broker (a replica moved onto it was opened, empty, with the new
//! partitions). Only then is the image's index "reconciled", which is what proposers wait
//! for. A failure is logged and the same image is tried again at the next wake-up.
//!
//! The first pass after a start applies every hosted partition's role: until then a partition
//! opened from the mirror has no leader (see `catalog::cluster`).
//!
//! Before the catalog, each image's security part (users, ACL bindings) is published into the
//! broker's credential and ACL stores when it changed (`publish_security`), so a proposer waiting
//! for its index finds its change in force here. Nothing is published before the image holds
//! this start's own registration: entries are applied in order, so such an image has every
//! change committed before this broker started, and until then authorization allows super users
//! only and only the local bootstrap users authenticate (fail closed, never on a stale copy).

use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use glommio::channels::local_channel::LocalReceiver;
use spate_metadata::{MetadataImage, SecurityImage};

use super::driver::Driver;
use super::ClusterState;
use crate::catalog::ShardId;
use crate::catalog::TopicMetadata;
use crate::catalog::{BrokerInfo, ClusterTopic, ClusterView, PartitionRole, TopicConfig};
use crate::kafka::KafkaBroker;
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::PartitionKey;
use crate::shard::router::broadcast;

/// Pause before a failed reconciliation is tried again without a new image.
const RETRY_MS: u64 = 500;

/// The loop; see the module documentation.
pub(super) async fn run(
    services: Rc<Services>,
    state: Arc<ClusterState>,
    driver: Rc<Driver>,
    wake: LocalReceiver<()>,
    kafka: Option<Arc<KafkaBroker>>,
    incarnation: u64,
) {
    let mut published_security: Option<Arc<SecurityImage>> = None;
    let mut first = true;
    let mut failed = false;
    let mut reconciled_controller = None;
    loop {
        let stop = future::or(
            async {
                if failed {
                    glommio::timer::sleep(Duration::from_millis(RETRY_MS)).await;
                } else {
                    wake.recv().await;
                }
                false
            },
            async {
                services.shutdown.requested().await;
                true
            },
        )
        .await;
        if stop {
            return;
        }
        let image = state.image();
        let controller = driver.leader();
        if !first
            && !failed
            && image.applied_index <= state.reconciled_index()
            && controller == reconciled_controller
        {
            continue;
        }
        if let (Some(kafka), Some(cluster_id)) = (&kafka, &image.cluster_id) {
            adopt_cluster_id(&services, kafka, cluster_id).await;
        }
        publish_security(&services, &image, incarnation, &mut published_security);
        match reconcile(&services, &image, controller, first).await {
            Ok(true) => {
                first = false;
                failed = false;
                reconciled_controller = controller;
                state
                    .reconciled_index
                    .fetch_max(image.applied_index, Ordering::SeqCst);
            }
            // Older than the mirror: a restart replaying its log; wait for more.
            Ok(false) => failed = false,
            Err(error) => {
                tracing::error!(%error, applied_index = image.applied_index, "applying the cluster metadata failed; trying again");
                failed = true;
            }
        }
    }
}

/// Publishes the image's users and bindings into the credential and ACL stores when they
/// changed since `published` (cheap to compare: the image shares its part behind an `Arc`), once
/// the image holds this start's registration (see the module documentation).
fn publish_security(
    services: &Services,
    image: &MetadataImage,
    incarnation: u64,
    published: &mut Option<Arc<SecurityImage>>,
) {
    if !caught_up(image, services.config.cluster.node_id, incarnation) {
        return;
    }
    let unchanged = published
        .as_ref()
        .is_some_and(|last| Arc::ptr_eq(last, &image.security) || **last == *image.security);
    if unchanged {
        return;
    }
    services
        .credentials
        .publish_replicated(image.security.credentials());
    services.authorizer.acls().publish(image.security.acls());
    tracing::info!(
        users = image.security.users.len(),
        bindings = image.security.bindings.len(),
        applied_index = image.applied_index,
        "cluster users and ACLs in force"
    );
    *published = Some(image.security.clone());
}

/// Whether `image` holds this broker's registration of this start, or a later one.
fn caught_up(image: &MetadataImage, node: i32, incarnation: u64) -> bool {
    image
        .brokers
        .get(&node)
        .is_some_and(|broker| broker.incarnation >= incarnation)
}

/// Makes the Kafka listener report the cluster's id (and topic ids derived from it), as every
/// other broker of the cluster does.
async fn adopt_cluster_id(services: &Services, kafka: &Arc<KafkaBroker>, cluster_id: &str) {
    if kafka.identity.cluster_id().as_str() == cluster_id {
        return;
    }
    let data_dir = services.config.data_dir.clone();
    let adopting = kafka.clone();
    let id = cluster_id.to_string();
    let adopted = glommio::executor()
        .spawn_blocking(move || adopting.identity.adopt(&data_dir, &id))
        .await;
    match adopted {
        Ok(true) => tracing::info!(cluster_id, "Kafka cluster id set from the cluster metadata"),
        Ok(false) => {}
        Err(error) => tracing::error!(%error, "cannot take the cluster's id for Kafka clients"),
    }
}

/// One image's worth of changes. `Ok(false)`: the image is older than the catalog's mirror.
async fn reconcile(
    services: &Rc<Services>,
    image: &MetadataImage,
    controller: Option<i32>,
    every_role: bool,
) -> Result<bool, String> {
    let view = view_of(image, controller);
    let catalog = services.catalog.clone();
    let Some(plan) = catalog.plan_cluster(view, every_role) else {
        return Ok(false);
    };
    if plan.is_empty() {
        return Ok(true);
    }
    // A replica a reassignment adds here opens empty; its fetcher then starts it at the
    // leader's log start (`replication::fetcher`).
    let opened: Vec<_> = plan
        .created
        .iter()
        .cloned()
        .chain(plan.grown.iter().map(|(topic, _)| topic.clone()))
        .chain(plan.replicas_added.iter().map(|(topic, _)| topic.clone()))
        .collect();
    for topic in opened {
        let name = topic.name.clone();
        let opening = topic.clone();
        if let Err(error) = broadcast(services, move |shard| {
            shard.open_topic_partitions(opening.clone())
        })
        .await
        {
            // The partition is offline on this broker (logged by the shard); the topic is
            // still named, as it is everywhere else, and the other partitions serve.
            tracing::error!(topic = %name, %error, "opening a replica of a new topic failed");
        }
    }
    let deleted = plan.deleted.clone();
    let altered = plan.altered.clone();
    let roles = plan.roles_changed.clone();
    let removed = plan.replicas_removed.clone();
    let local = plan.snapshot().local_node;
    let committing = catalog.clone();
    glommio::executor()
        .spawn_blocking(move || committing.commit_cluster(plan))
        .await
        .map_err(|error| format!("catalog: {error}"))?;
    for topic in deleted {
        tracing::info!(topic = %topic.name, id = topic.id, "topic deleted by the cluster");
        let removed = topic.clone();
        if let Err(error) = broadcast(services, move |shard| {
            shard.delete_topic_partitions(removed.clone(), 0)
        })
        .await
        {
            tracing::warn!(topic = %topic.name, %error, "removing the replicas of a deleted topic");
        }
        crate::handlers::admin::delete_committed_offsets(services, &topic.name).await;
        let finishing = catalog.clone();
        let finished = topic.clone();
        if let Err(error) = glommio::executor()
            .spawn_blocking(move || finishing.finish_deletion(&finished))
            .await
        {
            tracing::warn!(topic = %topic.name, %error, "topic directory not removed; it is removed at the next start");
        }
    }
    for topic in altered {
        let changed = topic.clone();
        if let Err(error) = broadcast(services, move |shard| {
            let changed = changed.clone();
            async move { shard.alter_topic_partitions(&changed) }
        })
        .await
        {
            tracing::warn!(topic = %topic.name, %error, "applying a topic's new config");
        }
    }
    let mut by_shard: BTreeMap<ShardId, Vec<(PartitionKey, PartitionRole, u16)>> = BTreeMap::new();
    for (topic, partition) in roles {
        // A replica moved away takes its last role too (a follower of the new leader): a
        // leadership it held ends now, failing its waiting acks=all requests with
        // NOT_LEADER_OR_FOLLOWER, before the replica is deleted.
        let moved_away = removed
            .iter()
            .any(|(gone, number)| gone.id == topic.id && *number == partition);
        if !topic.is_hosted(partition, local) && !moved_away {
            continue;
        }
        let Some(shard) = topic.owner_of(partition) else {
            continue;
        };
        let min_insync = image
            .topics
            .get(&topic.name)
            .map_or(1, |topic| topic.min_insync_replicas());
        by_shard.entry(shard).or_default().push((
            PartitionKey {
                topic_id: topic.id,
                partition,
            },
            topic.role(partition, local),
            min_insync,
        ));
    }
    for (shard, roles) in by_shard {
        let applied = invoke_on(services, shard, move |on: Rc<Services>| async move {
            on.shard.apply_roles(roles).await;
        })
        .await;
        if applied.is_err() {
            return Err("a shard is stopping".to_string());
        }
    }
    // Every shard's replica fetchers follow the roles now in its snapshot (and the first pass
    // starts each shard's ISR checks).
    for shard in 0..services.shard_count {
        let followed = invoke_on(services, shard, move |on: Rc<Services>| async move {
            crate::replication::roles_changed(&on);
        })
        .await;
        if followed.is_err() {
            return Err("a shard is stopping".to_string());
        }
    }
    // Last, once no fetcher follows them any more: the replicas moved away from here.
    for (topic, partition) in removed {
        delete_moved_replica(services, topic, partition).await;
    }
    Ok(true)
}

/// Closes and deletes this broker's replica of `partition`, which the metadata moved to other
/// brokers. A failure is logged, not retried: the catalog no longer names the replica here, so
/// nothing serves it, and its directory is only disk space.
async fn delete_moved_replica(services: &Rc<Services>, topic: Arc<TopicMetadata>, partition: u32) {
    let Some(shard) = topic.owner_of(partition) else {
        return;
    };
    let name = topic.name.clone();
    let deleted = invoke_on(services, shard, move |on: Rc<Services>| async move {
        on.shard
            .clone()
            .delete_partition_replicas(topic, vec![partition])
            .await
    })
    .await;
    match deleted {
        Ok(Ok(())) => {
            tracing::info!(topic = %name, partition, "replica moved away by the cluster; deleted here")
        }
        Ok(Err(error)) => {
            tracing::warn!(topic = %name, partition, %error, "a replica moved away could not be deleted")
        }
        Err(_) => {} // The shard is stopping.
    }
}

/// The catalog's view of `image`: every topic with its config and roles, every broker.
fn view_of(image: &MetadataImage, controller: Option<i32>) -> ClusterView {
    let topics = image
        .topics
        .values()
        .map(|topic| ClusterTopic {
            name: topic.name.clone(),
            id: topic.id,
            config: config_of(&topic.name, &topic.config),
            roles: topic
                .partitions
                .iter()
                .map(|partition| PartitionRole {
                    replicas: partition.replicas.clone(),
                    isr: partition.isr.clone(),
                    leader: partition.leader,
                    leader_epoch: partition.leader_epoch,
                    partition_epoch: partition.partition_epoch,
                })
                .collect(),
        })
        .collect();
    let brokers = image
        .brokers
        .values()
        .map(|broker| {
            (
                broker.id,
                BrokerInfo {
                    id: broker.id,
                    native: broker.native.clone(),
                    kafka: broker.kafka.clone(),
                    rack: broker.rack.clone(),
                    fenced: broker.fenced,
                },
            )
        })
        .collect();
    ClusterView {
        applied_index: image.applied_index,
        cluster_id: image.cluster_id.clone(),
        brokers,
        controller,
        topics,
    }
}

/// A topic's config as the catalog holds it. The proposer checked it before proposing; a key
/// this build does not know (a newer broker's) is left out, with an error logged, rather than
/// making the topic unusable here.
fn config_of(name: &str, entries: &BTreeMap<String, String>) -> TopicConfig {
    let mut config = TopicConfig::default();
    for (key, value) in entries {
        match config.with_entries([(key.as_str(), value.as_str())]) {
            Ok(with) => config = with,
            Err(error) => {
                tracing::error!(topic = name, %error, "a topic config entry of the cluster metadata is not understood here; ignored")
            }
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_metadata::MetadataCommand;

    fn image_with_topic() -> MetadataImage {
        let mut image = MetadataImage::default();
        let mut index = 0;
        let mut apply = |image: &mut MetadataImage, command: MetadataCommand| {
            index += 1;
            image.apply(index, &command).expect("applies");
        };
        apply(
            &mut image,
            MetadataCommand::SetClusterId {
                cluster_id: "AAAAAAAAAAEAAAAAAAAAAQ".to_string(),
            },
        );
        for id in 1..=3 {
            apply(
                &mut image,
                MetadataCommand::RegisterBroker {
                    id,
                    incarnation: 1,
                    native: (format!("127.0.0.{id}"), 9192),
                    kafka: Some((format!("127.0.0.{id}"), 9092)),
                    rack: None,
                },
            );
            apply(
                &mut image,
                MetadataCommand::UnfenceBroker { id, incarnation: 1 },
            );
        }
        apply(
            &mut image,
            MetadataCommand::CreateTopic {
                name: "t".to_string(),
                partitions: 2,
                replication_factor: Some(3),
                assignments: None,
                config: [
                    ("retention.ms".to_string(), "1000".to_string()),
                    ("min.insync.replicas".to_string(), "2".to_string()),
                ]
                .into(),
            },
        );
        image
    }

    #[test]
    fn the_catalog_view_carries_every_topic_role_and_broker_of_the_image() {
        let image = image_with_topic();
        let view = view_of(&image, Some(2));
        assert_eq!(view.applied_index, image.applied_index);
        assert_eq!(view.cluster_id.as_deref(), Some("AAAAAAAAAAEAAAAAAAAAAQ"));
        assert_eq!(view.controller, Some(2));
        assert_eq!(
            view.brokers.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert_eq!(view.brokers[&2].native, ("127.0.0.2".to_string(), 9192));
        assert!(!view.brokers[&2].fenced);
        assert_eq!(view.topics.len(), 1);
        let topic = &view.topics[0];
        let imaged = &image.topics["t"];
        assert_eq!(topic.id, imaged.id);
        assert_eq!(topic.config.retention_ms, Some(1000));
        assert_eq!(topic.config.min_insync_replicas, Some(2));
        assert_eq!(topic.roles.len(), 2);
        for (role, partition) in topic.roles.iter().zip(&imaged.partitions) {
            assert_eq!(role.replicas, partition.replicas);
            assert_eq!(role.replicas.len(), 3);
            assert_eq!(role.isr, partition.isr);
            assert_eq!(role.leader, partition.leader);
            assert_eq!(role.leader_epoch, partition.leader_epoch);
        }
    }

    #[test]
    fn security_waits_for_this_starts_registration() {
        let image = image_with_topic();
        assert!(caught_up(&image, 2, 1));
        assert!(
            !caught_up(&image, 2, 2),
            "a later start's registration is not applied yet"
        );
        assert!(
            !caught_up(&image, 4, 1),
            "an unregistered broker is not caught up"
        );
    }

    #[test]
    fn config_keys_this_build_does_not_know_are_left_out_not_fatal() {
        let config = config_of(
            "t",
            &[
                ("retention.bytes".to_string(), "4096".to_string()),
                ("from.a.newer.broker".to_string(), "1".to_string()),
            ]
            .into(),
        );
        assert_eq!(config.retention_bytes, Some(4096));
        assert_eq!(config.to_map().len(), 1);
    }
}
