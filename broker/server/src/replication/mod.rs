//! Partition replication, the server's part: moving batches between brokers and proposing ISR
//! changes. The rules (roles, the high watermark, the diverging-epoch check, acks=all waits)
//! are the shard's (`spate_cluster::shard::replication`, `spate_cluster::replica`); this
//! module is the network and the timers around them. Nothing here runs for a single broker.
//!
//! - Follower: per shard, one fetcher task per leader broker, fetching every partition this
//!   shard follows from it over one peer connection (`fetcher`). Which partitions, from which
//!   leader, at which epoch: the catalog snapshot's roles, read again by [`roles_changed`],
//!   which the metadata reconciler calls on every shard after it applied a change
//!   (`Shard::apply_roles` first, so the shard and the fetchers agree on the epochs).
//! - Leader: the inbound `ReplicaFetch` (`serve`), split by owning shard, long-polled.
//! - ISR: every `replica_isr_check_ms` each shard asks for the ISR changes its leaderships want
//!   (`Shard::isr_changes_due`) and proposes each to the controller as `AlterPartition`
//!   (`cluster::propose`); the leader uses a new ISR only once the metadata applied it.

mod fetcher;
mod serve;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use futures_lite::future;
use spate_cluster::replica::ReplicaLimits;
use spate_metadata::MetadataCommand;
use spate_protocol::NodeId;

use crate::peer::{PeerLimits, PeerPool, PeerSecurity};
use crate::services::Services;
use crate::shard::messages::PartitionKey;
use fetcher::{Fetcher, Followed};

pub use serve::replica_fetch;

/// One shard's replication tasks (in `Services::replication`).
pub struct ShardReplication {
    /// The running fetchers, by leader.
    fetchers: RefCell<HashMap<NodeId, Rc<Fetcher>>>,
    /// The fetchers' connections, one per leader broker: apart from `Services::peers` (Raft,
    /// proposals), so a long-polling fetch never holds a metadata answer up behind it.
    peers: PeerPool,
    /// Whether the ISR check task runs (started with the first `roles_changed`, which also
    /// gives the shard its replication limits from the configuration).
    isr_checks: Cell<bool>,
}

impl ShardReplication {
    pub fn new(limits: PeerLimits, security: Option<Arc<PeerSecurity>>) -> ShardReplication {
        ShardReplication {
            fetchers: RefCell::new(HashMap::new()),
            peers: PeerPool::new(limits, security),
            isr_checks: Cell::new(false),
        }
    }

    /// Leaders this shard runs a fetcher for.
    pub fn leaders_followed(&self) -> Vec<NodeId> {
        let mut leaders: Vec<NodeId> = self.fetchers.borrow().keys().copied().collect();
        leaders.sort_unstable();
        leaders
    }
}

/// Brings this shard's fetchers in line with the roles in its catalog snapshot: a fetcher for
/// each leader it follows a partition from, each with exactly those partitions and their
/// current epochs; fetchers of leaders it no longer follows stop. Call it on every shard after
/// the roles changed (after `Shard::apply_roles`), and once at start in cluster mode; it is
/// cheap and idempotent. A single broker's snapshot has no followers: nothing starts.
pub fn roles_changed(services: &Rc<Services>) {
    let snapshot = services.snapshot();
    if !snapshot.cluster_mode {
        return;
    }
    let replication = &services.replication;
    if !replication.isr_checks.replace(true) {
        services.shard.set_replica_limits(ReplicaLimits {
            replica_lag_time_max_ms: services.config.limits.replica_lag_time_max_ms,
            ..ReplicaLimits::default()
        });
        glommio::spawn_local(run_isr_checks(services.clone())).detach();
    }
    let local = snapshot.local_node;
    let mut wanted: HashMap<NodeId, BTreeMap<PartitionKey, Followed>> = HashMap::new();
    for (topic, partition) in snapshot.partitions_of(services.shard.id) {
        let role = topic.role(partition, local);
        let Some(leader) = role.leader else { continue };
        if leader == local || !role.replicas.contains(&local) {
            continue;
        }
        wanted.entry(leader).or_default().insert(
            PartitionKey {
                topic_id: topic.id,
                partition,
            },
            Followed {
                topic: topic.name.clone(),
                leader_epoch: role.leader_epoch,
            },
        );
    }
    let mut fetchers = replication.fetchers.borrow_mut();
    fetchers.retain(|leader, fetcher| {
        let keep = wanted.contains_key(leader);
        if !keep {
            fetcher.stop();
        }
        keep
    });
    for (leader, partitions) in wanted {
        match fetchers.get(&leader) {
            Some(fetcher) => fetcher.set_partitions(partitions),
            None => {
                let fetcher = Fetcher::start(services.clone(), leader, partitions);
                fetchers.insert(leader, fetcher);
            }
        }
    }
}

/// Every `replica_isr_check_ms` until shutdown: proposes the ISR changes this shard's
/// leaderships want. Each proposal runs on its own, so a slow controller delays no other
/// partition; the shard keeps a change pending until the metadata applies a change of that
/// partition or its retry time passes, so none is proposed twice meanwhile.
async fn run_isr_checks(services: Rc<Services>) {
    let every = Duration::from_millis(services.config.limits.replica_isr_check_ms.max(1));
    loop {
        future::or(glommio::timer::sleep(every), services.shutdown.requested()).await;
        if services.shutdown.is_requested() {
            return;
        }
        let local = services.snapshot().local_node;
        for change in services.shard.isr_changes_due() {
            let command = MetadataCommand::AlterPartition {
                topic_id: change.key.topic_id,
                partition: change.key.partition,
                leader: local,
                leader_epoch: change.leader_epoch,
                partition_epoch: change.partition_epoch,
                new_isr: change.new_isr.clone(),
            };
            let services = services.clone();
            glommio::spawn_local(async move {
                match crate::cluster::propose(&services, command).await {
                    Ok(_) => tracing::info!(
                        topic_id = change.key.topic_id,
                        partition = change.key.partition,
                        isr = ?change.new_isr,
                        "ISR changed"
                    ),
                    Err(error) => tracing::info!(
                        topic_id = change.key.topic_id,
                        partition = change.key.partition,
                        isr = ?change.new_isr,
                        %error,
                        "ISR change not applied; the leader proposes it again if still due"
                    ),
                }
            })
            .detach();
        }
    }
}
