//! Partition replication on the shard that owns the partition: the role the metadata gives each
//! partition (leader or follower, `Shard::apply_roles`), the leader's service to its followers
//! (`replica_fetch`, `wait_for_replica_data`), the follower's writes of what its leader sent
//! (`append_from_leader`, `truncate_diverging`, `start_replica_at`), and acks=all produce waiting
//! for the high watermark.
//!
//! The rules are the pure ones of `crate::replica` (`LeaderState`, the diverging epoch check,
//! `AckWaiters`); this file applies them to the partition's log and wakes who waits. A partition
//! with no role here is a single broker's: it leads, alone, exactly as before replication (no
//! role is ever set unless the catalog is in cluster mode or `apply_roles` is called). The
//! fetcher tasks, the network and the ISR proposals are the server's (`replication/`).
//!
//! Shard-local: roles live and die with the shard; a role ends when the topic is deleted.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalSender};
use spate_protocol::batch::BatchHeader;

use super::messages::{
    IsrChange, PartitionError, PartitionKey, ReplicaFetchAnswer, ReplicaFetchPartition,
};
use super::partition::{partition_error, Partition};
use super::signal::AnyAppend;
use super::Shard;
use crate::catalog::{PartitionRole, TopicMetadata};
use crate::replica::follower::{
    diverging_epoch, follower_committed_offset, truncation_for, DivergingEpoch, FollowerRole,
};
use crate::replica::leader::{LeaderRole, LeaderState};
use crate::replica::waiters::AckWaiters;
use crate::replica::{min_insync_default, NodeId, ReplicaLimits, NO_EPOCH};
use crate::storage::{FileSystem, PartitionLog};

/// What an acks=all waiter is told: committed, or why not.
type AckResult = Result<(), PartitionError>;

/// A partition's replica role on this broker.
pub(super) enum ReplicaRole {
    Leader(Box<LeaderReplica>),
    /// A follower of `leader` (or of nobody: offline, or a leadership being set up).
    Follower(FollowerRole),
}

/// A leader's state and its acks=all produce requests waiting on the high watermark.
pub(super) struct LeaderReplica {
    state: LeaderState,
    waiters: AckWaiters<LocalSender<AckResult>>,
}

/// The replica roles of a shard's partitions.
#[derive(Default)]
pub(super) struct Replication {
    roles: RefCell<HashMap<PartitionKey, ReplicaRole>>,
    /// Roles given while the partition was not open yet: applied when it opens.
    pending: RefCell<HashMap<PartitionKey, (PartitionRole, u16)>>,
    limits: Cell<ReplicaLimits>,
}

/// Whether this broker may take writes and consumer reads of a partition.
pub(super) enum Leadership {
    /// A single broker's partition: leads, alone, unreplicated.
    Single,
    /// Leads; `replicated`: the partition has other replicas (acks=all waits for them).
    Leader {
        replicated: bool,
    },
    NotLeader(PartitionError),
}

fn not_leader(role: &FollowerRole) -> PartitionError {
    PartitionError::NotLeaderOrFollower {
        leader: role.leader,
        leader_epoch: role.leader_epoch,
    }
}

fn leader_role(role: &PartitionRole, min_insync: u16) -> LeaderRole {
    LeaderRole {
        replicas: role.replicas.clone(),
        isr: role.isr.clone(),
        leader_epoch: role.leader_epoch,
        partition_epoch: role.partition_epoch,
        min_insync,
    }
}

/// The error for a request naming `requested` as the leader epoch while the partition's is
/// `current`; `None` when they agree.
fn epoch_mismatch(requested: i32, current: i32) -> Option<PartitionError> {
    match requested.cmp(&current) {
        std::cmp::Ordering::Less => Some(PartitionError::FencedLeaderEpoch { requested, current }),
        std::cmp::Ordering::Greater => {
            Some(PartitionError::UnknownLeaderEpoch { requested, current })
        }
        std::cmp::Ordering::Equal => None,
    }
}

/// The epoch of a log's last batch as a follower reports it: a log whose epoch cache is empty
/// holds only epoch 0 batches (a single broker's, or a follower of an epoch 0 leader).
fn last_epoch<F: FileSystem>(log: &PartitionLog<F>) -> i32 {
    match log.latest_epoch() {
        Some(epoch) => epoch,
        None if log.log_end() > log.log_start_offset() => 0,
        None => NO_EPOCH,
    }
}

/// Where a follower's last fetched epoch ends on the leader's log, for the diverging check: an
/// epoch newer than any of the leader's (a leader's epochs are all in its cache) ends where the
/// leader's latest does.
fn leader_end_for_epoch<F: FileSystem>(log: &PartitionLog<F>, epoch: i32) -> Option<(i32, u64)> {
    if epoch == NO_EPOCH {
        return None;
    }
    match log.end_offset_for_epoch(epoch) {
        None => match log.latest_epoch() {
            Some(latest) if latest < epoch => Some((latest, log.log_end())),
            _ => None,
        },
        found => found,
    }
}

impl<F: FileSystem + 'static> Shard<F> {
    /// This broker's node id, as the catalog knows it.
    pub fn local_node(&self) -> NodeId {
        self.snapshot().local_node
    }

    /// Replaces the replication limits (lag time, ISR change retry, acks=all waiters).
    pub fn set_replica_limits(&self, limits: ReplicaLimits) {
        self.replication.limits.set(limits);
    }

    pub fn replica_limits(&self) -> ReplicaLimits {
        self.replication.limits.get()
    }

    /// Milliseconds on the shard clock's monotonic scale: follower lag is measured on it.
    fn monotonic_ms(&self) -> u64 {
        self.clock.monotonic_us() / 1_000
    }

    pub(super) fn leadership(&self, key: &PartitionKey) -> Leadership {
        match self.replication.roles.borrow().get(key) {
            None => Leadership::Single,
            Some(ReplicaRole::Leader(leader)) => Leadership::Leader {
                replicated: leader.state.role().replicas.len() > 1,
            },
            Some(ReplicaRole::Follower(role)) => Leadership::NotLeader(not_leader(role)),
        }
    }

    /// Refuses consumer requests and writes to a partition this broker does not lead.
    pub(super) fn check_leader(&self, key: &PartitionKey) -> Result<(), PartitionError> {
        match self.leadership(key) {
            Leadership::NotLeader(error) => Err(error),
            _ => Ok(()),
        }
    }

    /// Applies the roles the metadata gives partitions of this shard: `(partition, role,
    /// min.insync.replicas)`. A new leadership stamps its epoch into the log before the first
    /// write (durably), and starts with the followers unknown; a lost one fails its waiting
    /// acks=all requests (`NotLeaderOrFollower`); an ISR change takes effect now. A role older
    /// than the one held (a smaller leader or partition epoch) is ignored. A partition not open
    /// yet gets its role when it opens.
    pub async fn apply_roles(&self, roles: Vec<(PartitionKey, PartitionRole, u16)>) {
        for (key, role, min_insync) in roles {
            match self.partition(&key) {
                Ok(partition) => self.apply_role(key, &partition, role, min_insync).await,
                Err(PartitionError::Opening) | Err(PartitionError::UnknownTopicOrPartition) => {
                    self.replication
                        .pending
                        .borrow_mut()
                        .insert(key, (role, min_insync));
                }
                Err(_) => {} // Offline: served by nobody here until a restart.
            }
        }
    }

    /// A partition just opened: in cluster mode it takes the role given while it was opening,
    /// or else the catalog's (with the topic's `min.insync.replicas`, a majority by default).
    pub(super) async fn adopt_role_at_open(
        &self,
        topic: &TopicMetadata,
        key: PartitionKey,
        partition: &Partition<F>,
    ) {
        let pending = self.replication.pending.borrow_mut().remove(&key);
        if let Some((role, min_insync)) = pending {
            return self.apply_role(key, partition, role, min_insync).await;
        }
        let snapshot = self.snapshot();
        if !snapshot.cluster_mode {
            return;
        }
        let role = topic.role(key.partition, snapshot.local_node);
        let min_insync = topic
            .config
            .min_insync_replicas
            .unwrap_or_else(|| min_insync_default(role.replication_factor()));
        self.apply_role(key, partition, role, min_insync).await;
    }

    async fn apply_role(
        &self,
        key: PartitionKey,
        partition: &Partition<F>,
        role: PartitionRole,
        min_insync: u16,
    ) {
        // Role changes of one partition one at a time, and never inside a follower's append.
        let Ok(_permit) = partition.replica_ops.acquire_permit(1).await else {
            return;
        };
        let local = self.local_node();
        let now_ms = self.monotonic_ms();
        // An older role than the one held arrives late: ignore it.
        let (held_epoch, held_partition_epoch, held_leader) =
            match self.replication.roles.borrow().get(&key) {
                Some(ReplicaRole::Leader(leader)) => (
                    leader.state.leader_epoch(),
                    leader.state.partition_epoch(),
                    true,
                ),
                Some(ReplicaRole::Follower(follower)) => (follower.leader_epoch, i32::MIN, false),
                None => (i32::MIN, i32::MIN, false),
            };
        if role.leader_epoch < held_epoch
            || (role.leader_epoch == held_epoch && role.partition_epoch < held_partition_epoch)
        {
            return;
        }
        let leads = role.leader == Some(local) && role.isr.contains(&local);
        if role.leader == Some(local) && !leads {
            tracing::error!(
                shard = self.id,
                topic_id = key.topic_id,
                partition = key.partition,
                ?role,
                "the metadata names this broker leader outside its ISR; not leading"
            );
        }
        if leads && held_leader && role.leader_epoch == held_epoch {
            self.update_leadership(key, partition, &role, min_insync, now_ms);
            return;
        }
        // A leadership ends (or none was held): its waiters fail, and until a new one is set
        // up the partition refuses writes.
        let follower = FollowerRole {
            leader: role.leader,
            leader_epoch: role.leader_epoch,
        };
        let ended = self
            .replication
            .roles
            .borrow_mut()
            .insert(key, ReplicaRole::Follower(follower));
        if let Some(ReplicaRole::Leader(mut leader)) = ended {
            for waiter in leader.waiters.take_all() {
                let _ = waiter.try_send(Err(not_leader(&follower)));
            }
        }
        partition.log.set_replicated(true);
        if leads {
            self.begin_leadership(key, partition, &role, min_insync, now_ms)
                .await;
        }
        // Long polls end: their next read reports the new role.
        partition.appended.notify();
    }

    /// A new leader epoch on this broker: stamped into the log (durably) before the first
    /// append of the epoch, then writes are taken.
    async fn begin_leadership(
        &self,
        key: PartitionKey,
        partition: &Partition<F>,
        role: &PartitionRole,
        min_insync: u16,
        now_ms: u64,
    ) {
        if let Err(error) = partition.log.set_leader_epoch(role.leader_epoch).await {
            tracing::error!(shard = self.id, topic_id = key.topic_id, partition = key.partition, leader_epoch = role.leader_epoch, %error, "cannot begin the leader epoch; the partition refuses writes until a retry succeeds");
            self.take_offline_if_lost(key, partition);
            // Tried again by the next produce or follower fetch (`retry_leadership`).
            self.replication
                .pending
                .borrow_mut()
                .insert(key, (role.clone(), min_insync));
            return;
        }
        let replicated = role.replicas.len() > 1;
        partition.log.set_replicated(replicated);
        let log_end = partition.log.log_end();
        let committed = partition.log.committed_offset().min(log_end);
        let state = LeaderState::new(
            self.local_node(),
            leader_role(role, min_insync),
            log_end,
            committed,
            now_ms,
        );
        let limits = self.replication.limits.get();
        let mut leader = Box::new(LeaderReplica {
            state,
            waiters: AckWaiters::new(limits.acks_all_waiters_max),
        });
        if let Some(high_watermark) = leader
            .state
            .advance_high_watermark(partition.log.durable_end())
        {
            self.high_watermark_moved(partition, &mut leader, high_watermark);
        }
        tracing::info!(
            shard = self.id,
            topic_id = key.topic_id,
            partition = key.partition,
            leader_epoch = role.leader_epoch,
            isr = ?role.isr,
            log_end,
            committed,
            "leading"
        );
        self.replication
            .roles
            .borrow_mut()
            .insert(key, ReplicaRole::Leader(leader));
    }

    /// The metadata changed the ISR or replicas of a leadership held here.
    fn update_leadership(
        &self,
        key: PartitionKey,
        partition: &Partition<F>,
        role: &PartitionRole,
        min_insync: u16,
        now_ms: u64,
    ) {
        let mut roles = self.replication.roles.borrow_mut();
        let Some(ReplicaRole::Leader(leader)) = roles.get_mut(&key) else {
            return;
        };
        partition.log.set_replicated(role.replicas.len() > 1);
        let moved = leader.state.update_role(
            leader_role(role, min_insync),
            partition.log.durable_end(),
            now_ms,
        );
        if !leader.state.has_min_insync() {
            for waiter in leader.waiters.take_all() {
                let _ = waiter.try_send(Err(PartitionError::NotEnoughReplicasAfterAppend {
                    min_insync,
                }));
            }
        }
        if let Some(high_watermark) = moved {
            self.high_watermark_moved(partition, leader, high_watermark);
        }
    }

    /// The leader's high watermark moved: the log serves consumers up to it, acks=all writes
    /// below it are answered, long polls wake.
    fn high_watermark_moved(
        &self,
        partition: &Partition<F>,
        leader: &mut LeaderReplica,
        high_watermark: u64,
    ) {
        partition.log.set_committed_offset(high_watermark);
        let outcome = if leader.state.has_min_insync() {
            Ok(())
        } else {
            Err(PartitionError::NotEnoughReplicasAfterAppend {
                min_insync: leader.state.min_insync(),
            })
        };
        for waiter in leader.waiters.take_reached(high_watermark) {
            let _ = waiter.try_send(outcome.clone());
        }
        partition.appended.notify();
    }

    /// The leader's durable end may have moved (an append or a sync): with no follower in the
    /// ISR the high watermark follows it.
    pub(super) fn leader_durable_moved(&self, key: &PartitionKey, partition: &Partition<F>) {
        let mut roles = self.replication.roles.borrow_mut();
        let Some(ReplicaRole::Leader(leader)) = roles.get_mut(key) else {
            return;
        };
        if let Some(high_watermark) = leader
            .state
            .advance_high_watermark(partition.log.durable_end())
        {
            self.high_watermark_moved(partition, leader, high_watermark);
        }
    }

    /// acks=all on a replicated partition: refused before the append when the ISR is smaller
    /// than `min.insync.replicas`.
    pub(super) fn check_min_insync(&self, key: &PartitionKey) -> Result<(), PartitionError> {
        match self.replication.roles.borrow().get(key) {
            Some(ReplicaRole::Leader(leader)) if !leader.state.has_min_insync() => {
                Err(PartitionError::NotEnoughReplicas {
                    isr: leader.state.isr().len(),
                    min_insync: leader.state.min_insync(),
                })
            }
            Some(ReplicaRole::Follower(role)) => Err(not_leader(role)),
            _ => Ok(()),
        }
    }

    /// Waits until the high watermark reaches `end_offset` (the acks=all write is committed on
    /// the ISR), `deadline` passes (`ReplicationTimedOut`), the leadership ends or its role is
    /// forgotten (`NotLeaderOrFollower`) or the ISR falls below `min.insync.replicas`
    /// (`NotEnoughReplicasAfterAppend`). Only for a partition this shard led, replicated, when
    /// the write was appended.
    pub(super) async fn wait_committed(
        &self,
        key: &PartitionKey,
        end_offset: u64,
        deadline: Instant,
    ) -> Result<(), PartitionError> {
        let started = Instant::now();
        let receiver = {
            let mut roles = self.replication.roles.borrow_mut();
            let leader = match roles.get_mut(key) {
                Some(ReplicaRole::Leader(leader)) => leader,
                Some(ReplicaRole::Follower(role)) => return Err(not_leader(role)),
                // Called only for a replicated leadership: its role is gone since the append (the
                // replica is being deleted, moved away from this broker), so the write may never
                // be committed and must not be acknowledged.
                None => {
                    return Err(PartitionError::NotLeaderOrFollower {
                        leader: None,
                        leader_epoch: NO_EPOCH,
                    })
                }
            };
            if leader.state.high_watermark() >= end_offset {
                return if leader.state.has_min_insync() {
                    Ok(())
                } else {
                    Err(PartitionError::NotEnoughReplicasAfterAppend {
                        min_insync: leader.state.min_insync(),
                    })
                };
            }
            let (sender, receiver) = local_channel::new_bounded(1);
            if leader.waiters.add(end_offset, sender).is_err() {
                return Err(PartitionError::ReplicationTimedOut { timeout_ms: 0 });
            }
            receiver
        };
        let timeout = deadline.saturating_duration_since(started);
        let timed_out = PartitionError::ReplicationTimedOut {
            timeout_ms: timeout.as_millis() as u64,
        };
        future::or(
            future::or(
                async {
                    receiver
                        .recv()
                        .await
                        .unwrap_or(Err(PartitionError::NotLeaderOrFollower {
                            leader: None,
                            leader_epoch: NO_EPOCH,
                        }))
                },
                async {
                    glommio::timer::sleep(timeout).await;
                    Err(timed_out)
                },
            ),
            async {
                self.shutdown.requested().await;
                Err(PartitionError::ShuttingDown)
            },
        )
        .await
    }

    /// Roles of deleted partitions end; their waiters fail.
    pub(super) fn forget_roles(&self, deleted: impl Fn(&PartitionKey) -> bool) {
        self.replication
            .pending
            .borrow_mut()
            .retain(|key, _| !deleted(key));
        let mut ended = Vec::new();
        self.replication.roles.borrow_mut().retain(|key, role| {
            if deleted(key) {
                if let ReplicaRole::Leader(leader) = role {
                    ended.extend(leader.waiters.take_all());
                }
                false
            } else {
                true
            }
        });
        for waiter in ended {
            let _ = waiter.try_send(Err(PartitionError::UnknownTopicOrPartition));
        }
    }

    /// A leadership this broker was given but could not begin (its epoch could not be written)
    /// is tried again: called before the requests that need the leader.
    pub(super) async fn retry_leadership(&self, key: &PartitionKey) {
        let local = self.local_node();
        let failed = matches!(
            self.replication.roles.borrow().get(key),
            Some(ReplicaRole::Follower(role)) if role.leader == Some(local)
        );
        if !failed {
            return;
        }
        let Some((role, min_insync)) = self.replication.pending.borrow_mut().remove(key) else {
            return;
        };
        if let Ok(partition) = self.partition(key) {
            self.apply_role(*key, &partition, role, min_insync).await;
        }
    }

    /// The leader side of a follower's fetch (`ReplicaFetch`); answers in the order of
    /// `partitions`. Each partition: the follower's leader epoch must be the partition's
    /// (`FencedLeaderEpoch`, `UnknownLeaderEpoch`), its position must lie on the leader's log
    /// (else the diverging epoch, KIP-320, and no data); then its progress is recorded (which
    /// may move the high watermark, answer acks=all writes and wake long polls) and it gets
    /// whole batches from its fetch offset up to the leader's durable end, within `max_bytes`.
    pub async fn replica_fetch(
        &self,
        follower: NodeId,
        partitions: Vec<ReplicaFetchPartition>,
    ) -> Vec<ReplicaFetchAnswer> {
        let mut answers = Vec::with_capacity(partitions.len());
        for fetch in partitions {
            answers.push(self.replica_fetch_one(follower, fetch).await);
        }
        answers
    }

    async fn replica_fetch_one(
        &self,
        follower: NodeId,
        fetch: ReplicaFetchPartition,
    ) -> ReplicaFetchAnswer {
        let refused = |error| ReplicaFetchAnswer {
            error: Some(error),
            ..ReplicaFetchAnswer::default()
        };
        self.retry_leadership(&fetch.key).await;
        let partition = match self.partition(&fetch.key) {
            Ok(partition) => partition,
            Err(error) => return refused(error),
        };
        let log = &partition.log;
        let local = self.local_node();
        let mut answer = ReplicaFetchAnswer {
            log_start_offset: log.log_start_offset(),
            log_end: log.log_end(),
            ..ReplicaFetchAnswer::default()
        };
        match self.replication.roles.borrow().get(&fetch.key) {
            Some(ReplicaRole::Leader(leader)) => {
                let current = leader.state.leader_epoch();
                if let Some(error) = epoch_mismatch(fetch.current_leader_epoch, current) {
                    return refused(error);
                }
                if !leader.state.is_follower(follower) {
                    return refused(PartitionError::NotLeaderOrFollower {
                        leader: Some(local),
                        leader_epoch: current,
                    });
                }
                answer.high_watermark = leader.state.high_watermark();
            }
            Some(ReplicaRole::Follower(role)) => return refused(not_leader(role)),
            None => {
                return refused(PartitionError::NotLeaderOrFollower {
                    leader: None,
                    leader_epoch: NO_EPOCH,
                })
            }
        }
        let leader_end_for_epoch = leader_end_for_epoch(log, fetch.last_fetched_epoch);
        if let Some(diverging) = diverging_epoch(
            fetch.fetch_offset,
            fetch.last_fetched_epoch,
            leader_end_for_epoch,
            answer.log_start_offset,
            answer.log_end,
        ) {
            answer.diverging = Some((diverging.epoch, diverging.end_offset));
            return answer;
        }
        if fetch.fetch_offset < answer.log_start_offset {
            return refused(PartitionError::OffsetOutOfRange {
                offset: fetch.fetch_offset as i64,
                log_start_offset: answer.log_start_offset,
                high_watermark: answer.high_watermark,
            });
        }
        let now_ms = self.monotonic_ms();
        {
            let mut roles = self.replication.roles.borrow_mut();
            if let Some(ReplicaRole::Leader(leader)) = roles.get_mut(&fetch.key) {
                if let Some(high_watermark) = leader.state.record_fetch(
                    follower,
                    fetch.fetch_offset,
                    log.durable_end(),
                    answer.log_end,
                    now_ms,
                ) {
                    self.high_watermark_moved(&partition, leader, high_watermark);
                }
                answer.high_watermark = leader.state.high_watermark();
            }
        }
        match log
            .read_replica(fetch.fetch_offset, fetch.max_bytes as usize)
            .await
        {
            Ok(read) => answer.batches = read.batches,
            Err(error) => return refused(partition.read_error(error)),
        }
        answer
    }

    /// Waits until one of the partitions this broker leads has durable data past the follower's
    /// fetch offset, its high watermark or role changes, `wait_ms` passes, or shutdown begins.
    /// Returns at once if a partition is not led here (the next fetch reports it).
    pub async fn wait_for_replica_data(&self, partitions: &[(PartitionKey, u64)], wait_ms: u64) {
        let mut signals = Vec::with_capacity(partitions.len());
        for (key, fetch_offset) in partitions {
            let Ok(partition) = self.partition(key) else {
                return;
            };
            if !matches!(self.leadership(key), Leadership::Leader { .. })
                || partition.log.durable_end() > *fetch_offset
            {
                return;
            }
            signals.push(partition.appended.clone());
        }
        let wait_ms = wait_ms.min(self.limits.fetch_wait_ms_max);
        future::or(
            future::or(
                AnyAppend::new(signals),
                glommio::timer::sleep(Duration::from_millis(wait_ms)),
            ),
            self.shutdown.requested(),
        )
        .await;
    }

    /// The follower's role for `key` at `leader_epoch`, or why an answer for that epoch no
    /// longer applies.
    fn check_follower(&self, key: &PartitionKey, leader_epoch: i32) -> Result<(), PartitionError> {
        match self.replication.roles.borrow().get(key) {
            Some(ReplicaRole::Follower(role)) => {
                match epoch_mismatch(leader_epoch, role.leader_epoch) {
                    Some(error) => Err(error),
                    None if role.leader.is_none() => Err(not_leader(role)),
                    None => Ok(()),
                }
            }
            Some(ReplicaRole::Leader(leader)) => Err(PartitionError::NotLeaderOrFollower {
                leader: Some(self.local_node()),
                leader_epoch: leader.state.leader_epoch(),
            }),
            None => Err(PartitionError::NotLeaderOrFollower {
                leader: None,
                leader_epoch: NO_EPOCH,
            }),
        }
    }

    /// A follower stores what its leader sent at `leader_epoch` (batches as the leader stored
    /// them, the first at this log's end), durably, and records the leader's high watermark as
    /// its committed offset (never past its own log end). Answers the new log end. Refused
    /// when the role changed since the fetch was sent (`FencedLeaderEpoch`, ...), or when the
    /// batches do not start at the log end (a stale or repeated answer: fetch again).
    pub async fn append_from_leader(
        &self,
        key: PartitionKey,
        leader_epoch: i32,
        batches: Vec<BytesMut>,
        leader_high_watermark: u64,
        leader_log_start: u64,
    ) -> Result<u64, PartitionError> {
        let partition = self.partition(&key)?;
        let Ok(_permit) = partition.replica_ops.acquire_permit(1).await else {
            return Err(PartitionError::ShuttingDown);
        };
        self.check_follower(&key, leader_epoch)?;
        let log = &partition.log;
        let log_end = match batches.first() {
            None => log.log_end(),
            Some(first) => {
                let base_offset = BatchHeader::decode(first)
                    .map_err(|error| PartitionError::CorruptBatch(error.to_string()))?
                    .base_offset;
                if base_offset != log.log_end() {
                    return Err(PartitionError::InvalidRequest(format!(
                        "the leader's batches start at {base_offset}, the log ends at {}",
                        log.log_end()
                    )));
                }
                let appended = log.append_replica(batches).await;
                self.take_offline_if_lost(key, &partition);
                appended.map_err(partition_error)?
            }
        };
        let committed = follower_committed_offset(leader_high_watermark, log_end);
        if committed > log.committed_offset() {
            log.set_committed_offset(committed);
        }
        // The leader removed records below its log start (DeleteRecords, retention): so does
        // the follower, once it holds them.
        if leader_log_start > log.log_start_offset() && leader_log_start <= committed {
            if let Err(error) = log.delete_records(leader_log_start).await {
                tracing::warn!(shard = self.id, topic_id = key.topic_id, partition = key.partition, %error, "following the leader's log start failed");
            }
        }
        Ok(log_end)
    }

    /// A follower's answer to a diverging epoch from its leader at `leader_epoch`, for the fetch
    /// it sent from `fetch_offset`: it truncates where its own log and the leader's agree
    /// (`replica::follower::truncation_for`: its end of the diverging epoch, at most the
    /// leader's), durably, and answers its new log end (storage cuts from the start of the batch
    /// holding that offset), from which it fetches again. An answer to an older position (the
    /// log moved since the fetch was sent) changes nothing: it might cut batches the follower
    /// has since fetched, committed ones among them. A truncation that fails past its commit
    /// point takes the partition offline (storage marks the log lost).
    pub async fn truncate_diverging(
        &self,
        key: PartitionKey,
        leader_epoch: i32,
        fetch_offset: u64,
        diverging: (i32, u64),
    ) -> Result<u64, PartitionError> {
        let partition = self.partition(&key)?;
        let Ok(_permit) = partition.replica_ops.acquire_permit(1).await else {
            return Err(PartitionError::ShuttingDown);
        };
        self.check_follower(&key, leader_epoch)?;
        let log = &partition.log;
        if log.log_end() != fetch_offset || log.durable_end() != fetch_offset {
            return Ok(log.log_end());
        }
        let (epoch, end_offset) = diverging;
        let local = if epoch == NO_EPOCH {
            None
        } else {
            log.end_offset_for_epoch(epoch)
        };
        let truncation = truncation_for(DivergingEpoch { epoch, end_offset }, local, fetch_offset);
        // Diverged below its own log start: nothing of the log is kept.
        let truncated = if truncation.offset < log.log_start_offset() {
            log.truncate_fully_and_start_at(truncation.offset).await
        } else {
            log.truncate_to(truncation.offset).await
        };
        if let Err(error) = truncated {
            self.take_offline_if_lost(key, &partition);
            return Err(partition_error(error));
        }
        Ok(log.log_end())
    }

    /// A follower whose log ends before its leader's log start empties its log and starts at
    /// `offset` (the leader's log start), durably.
    pub async fn start_replica_at(
        &self,
        key: PartitionKey,
        leader_epoch: i32,
        offset: u64,
    ) -> Result<(), PartitionError> {
        let partition = self.partition(&key)?;
        let Ok(_permit) = partition.replica_ops.acquire_permit(1).await else {
            return Err(PartitionError::ShuttingDown);
        };
        self.check_follower(&key, leader_epoch)?;
        let restarted = partition.log.truncate_fully_and_start_at(offset).await;
        // A truncation that failed past its commit point leaves the log lost: offline until a
        // restart completes it from the intent file. Before it, the log is as it was.
        self.take_offline_if_lost(key, &partition);
        restarted.map_err(partition_error)
    }

    /// Each open partition's fetch position as a follower: its durable log end and the epoch
    /// of its last batch (`NO_EPOCH` when it has none). Partitions not open here are left out.
    pub fn follower_positions(&self, keys: &[PartitionKey]) -> Vec<(PartitionKey, u64, i32)> {
        keys.iter()
            .filter_map(|key| {
                let partition = self.partition(key).ok()?;
                let log = &partition.log;
                Some((*key, log.durable_end(), last_epoch(log)))
            })
            .collect()
    }

    /// The ISR changes this shard's leaderships want proposed now (lagging followers out,
    /// caught-up ones in), on the shard's monotonic clock. Each is pending until the metadata
    /// applies a change of that partition or `isr_change_retry_ms` passes.
    pub fn isr_changes_due(&self) -> Vec<IsrChange> {
        let now_ms = self.monotonic_ms();
        let limits = self.replication.limits.get();
        let mut changes = Vec::new();
        for (key, role) in self.replication.roles.borrow_mut().iter_mut() {
            if let ReplicaRole::Leader(leader) = role {
                if let Some(proposal) = leader.state.isr_change_due(now_ms, &limits) {
                    changes.push(IsrChange {
                        key: *key,
                        leader_epoch: proposal.leader_epoch,
                        partition_epoch: proposal.partition_epoch,
                        new_isr: proposal.new_isr,
                    });
                }
            }
        }
        changes
    }

    /// Where `epoch` ends in the partition's log (Kafka's OffsetForLeaderEpoch): the largest
    /// epoch at or below it and the offset after its last batch. `None`: the log holds no
    /// epoch at or below it.
    pub fn end_offset_for_epoch(
        &self,
        key: &PartitionKey,
        epoch: i32,
    ) -> Result<Option<(i32, u64)>, PartitionError> {
        Ok(self.partition(key)?.log.end_offset_for_epoch(epoch))
    }
}
