//! The shard-local group coordinator: runs group requests against the membership state
//! machines of the offsets partitions this shard coordinates, answers parked joins and syncs,
//! runs the group timers, and creates the offsets topic (shard 0).
//!
//! Registered beside the shard in its services ([`GroupServices`]; one per executor, lives as
//! long as the shard). The request functions (`join`, `sync`, ..., `list`) run on the group's
//! coordinator shard, reached with `shard::mesh::invoke_on`. An offsets partition
//! is loaded on first use (`partition`: replayed into an [`OffsetStore`](super::store) and its
//! membership records restored as [`Group`]s) and written by its own writer task from then on.
//!
//! Joins and syncs park until the group moves on: each gets a waiter id and a one-slot channel;
//! the state machine names the waiters to answer in its [`Effects`]. Effects that change the
//! group's stable state queue its membership record first (at once, so records reach the log in
//! the order they were decided) and are answered after it is written.
//!
//! This file does not parse frames or know connections (`server::handlers::group` does), and it
//! reaches the offsets topic only through shard requests, never the storage engine.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use spate_protocol::api::{
    DeleteGroupsResponse, DescribeGroupsResponse, DescribedGroup, DescribedOffset, GroupListing,
    GroupResult, GroupState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsResponse, MemberResult,
    OffsetCommitPartition, OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest,
    OffsetDeleteResponse, OffsetFetchPartition, OffsetFetchRequest, OffsetFetchResponse,
    PartitionResult, SyncGroupRequest, SyncGroupResponse, TopicPartitionList, TopicPartitions,
    TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use spate_protocol::ErrorCode;

use super::limits::GroupLimits;
use super::membership::{ClientInfo, Effects, Group, Reply, WaiterId};
use super::partition::{
    load, verify_transaction, CoordinatedPartition, TransactionalProducer, WriteOp,
};
use super::records::{CommittedOffset, GroupRecord, LogRecord};
use super::{coordinator_shard_of, GroupServices, OFFSETS_TOPIC_NAME};
use crate::catalog::topic_config::{CLEANUP_POLICY, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES};
use crate::catalog::{CatalogError, TopicConfig, TopicMetadata};
use crate::shard::mesh::invoke_on;
use crate::shard::messages::PartitionError;
use crate::shard::topic_creation::{self, TopicCreationError};

/// Shard-local coordinator state. See the module documentation.
pub struct GroupCoordinator {
    limits: GroupLimits,
    started: Instant,
    partitions: RefCell<HashMap<u32, Rc<CoordinatedPartition>>>,
    /// One partition load at a time on this shard: a second request for the same partition
    /// waits and then finds it loaded.
    loading: Semaphore,
    /// Shard 0 only: one creation of the offsets topic at a time.
    creating: Semaphore,
    waiters: RefCell<HashMap<WaiterId, LocalSender<Reply>>>,
    next_waiter: Cell<WaiterId>,
    next_member: Cell<u64>,
    /// Random per process, so member ids differ across broker restarts.
    member_id_salt: u64,
    /// No group deadline is earlier than this: the timer skips its scan until then.
    next_wakeup_ms: Cell<u64>,
    timers_started: Cell<bool>,
}

/// Removes a parked request's channel when the request ends, answered or not.
struct WaiterGuard<'a> {
    coordinator: &'a GroupCoordinator,
    id: WaiterId,
}

impl Drop for WaiterGuard<'_> {
    fn drop(&mut self) {
        self.coordinator.waiters.borrow_mut().remove(&self.id);
    }
}

impl GroupCoordinator {
    pub fn new(limits: GroupLimits) -> GroupCoordinator {
        assert_eq!(limits.check(), Ok(()), "group limits are consistent");
        GroupCoordinator {
            limits,
            started: Instant::now(),
            partitions: RefCell::new(HashMap::new()),
            loading: Semaphore::new(1),
            creating: Semaphore::new(1),
            waiters: RefCell::new(HashMap::new()),
            next_waiter: Cell::new(0),
            next_member: Cell::new(0),
            member_id_salt: std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish(),
            next_wakeup_ms: Cell::new(u64::MAX),
            timers_started: Cell::new(false),
        }
    }

    pub fn limits(&self) -> &GroupLimits {
        &self.limits
    }

    /// Forgets every loaded offsets partition, as a restart of the coordinator does: the next
    /// request replays its partition from the log. Tests only.
    #[cfg(test)]
    pub(super) fn unload_partitions(&self) {
        self.partitions.borrow_mut().clear();
    }

    /// Stops coordinating `partition` here: its parked requests answer NOT_COORDINATOR and its
    /// writer appends nothing more.
    pub(super) fn unload(&self, partition: u32) {
        if let Some(loaded) = self.partitions.borrow_mut().remove(&partition) {
            loaded.depose();
        }
    }

    pub(super) fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// `<client id>-<random>`: unique within the process by its counter, across restarts by
    /// the per-process salt mixed with the time.
    fn new_member_id(&self, client_id: &str) -> String {
        let counter = self.next_member.get();
        self.next_member.set(counter + 1);
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(self.member_id_salt);
        hasher.write_u64(counter);
        hasher.write_u128(wall_clock_nanos());
        let prefix = if client_id.is_empty() {
            "member"
        } else {
            client_id
        };
        format!("{prefix}-{:016x}{counter:x}", hasher.finish())
    }

    fn register_waiter(&self) -> (WaiterGuard<'_>, LocalReceiver<Reply>) {
        let id = self.next_waiter.get();
        self.next_waiter.set(id + 1);
        let (sender, receiver) = local_channel::new_bounded(1);
        self.waiters.borrow_mut().insert(id, sender);
        (
            WaiterGuard {
                coordinator: self,
                id,
            },
            receiver,
        )
    }

    fn dispatch(&self, replies: Vec<(WaiterId, Reply)>) {
        for (waiter, reply) in replies {
            if let Some(sender) = self.waiters.borrow_mut().remove(&waiter) {
                // One slot, one reply per waiter; failure means the request is gone.
                let _ = sender.try_send(reply);
            }
        }
    }

    pub(super) fn note_deadline(&self, deadline_ms: Option<u64>) {
        if let Some(deadline_ms) = deadline_ms {
            if deadline_ms < self.next_wakeup_ms.get() {
                self.next_wakeup_ms.set(deadline_ms);
            }
        }
    }

    fn group_count(&self) -> usize {
        self.partitions
            .borrow()
            .values()
            .map(|partition| partition.group_count())
            .sum()
    }

    /// Refuses a group that does not exist yet when this shard holds its maximum.
    fn room_for(&self, partition: &CoordinatedPartition, group_id: &str) -> Result<(), ErrorCode> {
        if partition.knows_group(group_id) || self.group_count() < self.limits.groups_per_shard_max
        {
            Ok(())
        } else {
            Err(ErrorCode::TooManyGroups)
        }
    }
}

fn wall_clock_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

pub(super) fn wall_clock_ms() -> i64 {
    (wall_clock_nanos() / 1_000_000) as i64
}

// ---- the offsets topic --------------------------------------------------------------------

/// The offsets topic; with `create`, made (through shard 0) if it does not exist yet.
/// `Ok(None)`: it does not exist and `create` was false.
pub async fn offsets_topic<S: GroupServices>(
    services: &Rc<S>,
    create: bool,
) -> Result<Option<Arc<TopicMetadata>>, ErrorCode> {
    if let Some(topic) = services.snapshot().topic(OFFSETS_TOPIC_NAME) {
        return Ok(Some(topic.clone()));
    }
    if !create {
        return Ok(None);
    }
    // Shard 0 serializes the creation.
    let created = invoke_on(services, 0, |on_zero: Rc<S>| async move {
        create_offsets_topic(&on_zero).await
    })
    .await;
    match created {
        Ok(result) => result.map(Some),
        Err(stopping) => Err(coordinator_error_code(&stopping.into())),
    }
}

async fn create_offsets_topic<S: GroupServices>(
    services: &Rc<S>,
) -> Result<Arc<TopicMetadata>, ErrorCode> {
    let coordinator = services.groups();
    let _serialized = coordinator
        .creating
        .acquire_permit(1)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    if let Some(topic) = services.snapshot().topic(OFFSETS_TOPIC_NAME) {
        return Ok(topic.clone());
    }
    let limits = &coordinator.limits;
    let segment_bytes = limits.offsets_topic_segment_bytes.to_string();
    // The shard's compactor bounds the log (one record per live key, Kafka's
    // `__consumer_offsets` policy); retention must never delete the only copy of an offset.
    let entries = [
        (CLEANUP_POLICY, "compact"),
        (RETENTION_MS, "-1"),
        (RETENTION_BYTES, "-1"),
        (SEGMENT_BYTES, segment_bytes.as_str()),
    ];
    let config = TopicConfig::default()
        .with_entries(entries)
        .map_err(|error| {
            tracing::error!(%error, "offsets topic configuration refused");
            ErrorCode::CoordinatorNotAvailable
        })?;
    let partitions = i64::from(limits.offsets_topic_partitions);
    let created =
        topic_creation::create_topic(services, OFFSETS_TOPIC_NAME, partitions, config).await;
    let topic = match created {
        Ok(topic) => topic,
        // Created by someone else (an administrator) in between; whoever created it opens it.
        Err(TopicCreationError::Catalog(CatalogError::TopicAlreadyExists { .. })) => {
            return services
                .snapshot()
                .topic(OFFSETS_TOPIC_NAME)
                .cloned()
                .ok_or(ErrorCode::CoordinatorNotAvailable)
        }
        Err(TopicCreationError::Partitions { source, .. }) => {
            tracing::error!(error = %source, "cannot open the offsets topic's partitions");
            return Err(coordinator_error_code(&source));
        }
        Err(error) => {
            tracing::error!(%error, "cannot create the offsets topic");
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
    };
    tracing::info!(
        topic = OFFSETS_TOPIC_NAME,
        partitions = topic.partition_count(),
        "offsets topic created"
    );
    Ok(topic)
}

/// The wire code a coordinator reports when a partition operation under it failed.
pub fn coordinator_error_code(error: &PartitionError) -> ErrorCode {
    match error {
        PartitionError::NoSpace(_) => ErrorCode::NotEnoughDiskSpace,
        PartitionError::Storage(_) => ErrorCode::StorageError,
        PartitionError::ShuttingDown => ErrorCode::ShuttingDown,
        // The offsets partition is still opening after a start: the group's state loads soon.
        PartitionError::Opening => ErrorCode::CoordinatorLoadInProgress,
        // The offsets partition's leadership moved: the group's coordinator is elsewhere now.
        PartitionError::NotLeaderOrFollower { .. } => ErrorCode::NotCoordinator,
        _ => ErrorCode::CoordinatorNotAvailable,
    }
}

/// The loaded partition `partition`, loading it first if needed. Only the leader of the
/// offsets partition coordinates its groups (a single broker leads all of them); a partition
/// loaded under an older leader epoch is replayed again.
async fn coordinated<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
) -> Result<Rc<CoordinatedPartition>, ErrorCode> {
    let coordinator = services.groups();
    let snapshot = services.snapshot();
    let topic = snapshot
        .topic(OFFSETS_TOPIC_NAME)
        .cloned()
        .ok_or(ErrorCode::CoordinatorNotAvailable)?;
    if partition >= topic.partition_count()
        || coordinator_shard_of(partition, services.shard_count) != services.id
    {
        return Err(ErrorCode::NotCoordinator);
    }
    let role = topic.role(partition, snapshot.local_node);
    if role.leader != Some(snapshot.local_node) {
        coordinator.unload(partition);
        return Err(match role.leader {
            Some(_) => ErrorCode::NotCoordinator,
            None => ErrorCode::CoordinatorNotAvailable,
        });
    }
    let current = || {
        coordinator
            .partitions
            .borrow()
            .get(&partition)
            .filter(|loaded| {
                loaded.topic.id == topic.id && loaded.leader_epoch == role.leader_epoch
            })
            .cloned()
    };
    if let Some(loaded) = current() {
        return Ok(loaded);
    }
    let _one_load = coordinator
        .loading
        .acquire_permit(1)
        .await
        .map_err(|_| ErrorCode::CoordinatorNotAvailable)?;
    if let Some(loaded) = current() {
        return Ok(loaded);
    }
    // Loaded under an older epoch or an older topic: that state is stale.
    coordinator.unload(partition);
    let loaded = load(services, partition, topic, role.leader_epoch).await?;
    coordinator
        .partitions
        .borrow_mut()
        .insert(partition, loaded.clone());
    start_timers(services);
    Ok(loaded)
}

/// Unloads every partition whose leadership this broker no longer holds at the epoch it was
/// loaded under, so that parked requests learn at once that the coordinator moved.
fn unload_deposed<S: GroupServices>(services: &Rc<S>) {
    let snapshot = services.snapshot();
    let Some(topic) = snapshot.topic(OFFSETS_TOPIC_NAME) else {
        return;
    };
    let coordinator = services.groups();
    let stale: Vec<u32> = coordinator
        .partitions
        .borrow()
        .values()
        .filter(|loaded| {
            let role = topic.role(loaded.partition, snapshot.local_node);
            loaded.topic.id != topic.id
                || role.leader != Some(snapshot.local_node)
                || role.leader_epoch != loaded.leader_epoch
        })
        .map(|loaded| loaded.partition)
        .collect();
    for partition in stale {
        tracing::info!(
            partition,
            "offsets partition's leadership moved; its groups unloaded"
        );
        coordinator.unload(partition);
    }
}

// ---- effects and timers ------------------------------------------------------------------------

/// Queues the group's record if its stable state changed (now, so its place in the log follows
/// the order of decisions), then returns a future that waits for it and sends the replies.
fn finish<S: GroupServices>(
    services: &Rc<S>,
    partition: &CoordinatedPartition,
    group_id: &str,
    effects: Effects,
    record: Option<GroupRecord>,
) -> impl Future<Output = ()> {
    let written = record.map(|record| {
        partition.enqueue(WriteOp::Records(vec![LogRecord::Group {
            group: group_id.to_string(),
            value: Some(record),
        }]))
    });
    let services = services.clone();
    let group_id = group_id.to_string();
    async move {
        if let Some(written) = written {
            // Membership records are best effort: members that lose theirs rejoin after a
            // restart. Offsets never depend on them.
            if let Some(Err(code)) = written.recv().await {
                tracing::warn!(group = %group_id, ?code, "group membership record not written");
            }
        }
        services.groups().dispatch(effects.replies);
    }
}

fn start_timers<S: GroupServices>(services: &Rc<S>) {
    if services.groups().timers_started.replace(true) {
        return;
    }
    glommio::spawn_local(run_timers(services.clone())).detach();
}

/// Applies group deadlines (sessions, joins, syncs) every tick while anything is due; until
/// shutdown.
async fn run_timers<S: GroupServices>(services: Rc<S>) {
    let coordinator = services.groups();
    let tick = coordinator.limits.timer_tick();
    while !services.shutdown.is_requested() {
        glommio::timer::sleep(tick).await;
        unload_deposed(&services);
        let now_ms = coordinator.now_ms();
        if now_ms < coordinator.next_wakeup_ms.get() {
            continue;
        }
        coordinator.next_wakeup_ms.set(u64::MAX);
        let partitions: Vec<Rc<CoordinatedPartition>> =
            coordinator.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            let mut due = Vec::new();
            for (group_id, group) in partition.groups.borrow_mut().iter_mut() {
                if group
                    .next_deadline_ms()
                    .is_some_and(|deadline| deadline <= now_ms)
                {
                    let effects = group.tick(now_ms);
                    let record = effects.persist.then(|| group.to_record());
                    if !effects.replies.is_empty() || record.is_some() {
                        due.push((group_id.clone(), effects, record));
                    }
                }
                coordinator.note_deadline(group.next_deadline_ms());
            }
            for (group_id, effects, record) in due {
                glommio::spawn_local(finish(&services, &partition, &group_id, effects, record))
                    .detach();
            }
        }
    }
}

// ---- membership requests -------------------------------------------------------------------------

pub async fn join<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: JoinGroupRequest,
    client: ClientInfo,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(code) => return JoinGroupResponse::error(code, &member_id),
    };
    let coordinator = services.groups();
    let group_id = request.group_id.clone();
    if let Err(code) = coordinator.room_for(&coordinated, &group_id) {
        return JoinGroupResponse::error(code, &member_id);
    }
    let (waiter, replies) = coordinator.register_waiter();
    let (effects, record) = {
        let mut groups = coordinated.groups.borrow_mut();
        let group = groups
            .entry(group_id.clone())
            .or_insert_with(|| Group::new(&group_id, &coordinator.limits));
        let effects = group.join(
            waiter.id,
            request,
            client,
            &coordinator.limits,
            coordinator.now_ms(),
            &mut |client_id| coordinator.new_member_id(client_id),
        );
        let record = effects.persist.then(|| group.to_record());
        coordinator.note_deadline(group.next_deadline_ms());
        // A refused first join must not leave a group behind.
        let untouched = group.is_empty() && group.generation_id() == 0;
        if untouched && !coordinated.store.borrow().has_group(&group_id) {
            groups.remove(&group_id);
        }
        (effects, record)
    };
    finish(services, &coordinated, &group_id, effects, record).await;
    match parked_reply(services, &coordinated, &replies).await {
        Ok(Reply::Join(response)) => response,
        // The state machine answers a waiter with the reply to what it parked (a join here).
        Ok(Reply::Sync(_)) => unreachable!("a parked join was answered with a sync reply"),
        Err(code) => JoinGroupResponse::error(code, &member_id),
    }
}

pub async fn sync<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(code) => return SyncGroupResponse::error(code),
    };
    let coordinator = services.groups();
    let (waiter, replies) = coordinator.register_waiter();
    let (effects, record) = {
        let mut groups = coordinated.groups.borrow_mut();
        let Some(group) = groups.get_mut(&request.group_id) else {
            return SyncGroupResponse::error(ErrorCode::UnknownMemberId);
        };
        let effects = group.sync(waiter.id, &request, coordinator.now_ms());
        let record = effects.persist.then(|| group.to_record());
        coordinator.note_deadline(group.next_deadline_ms());
        (effects, record)
    };
    finish(services, &coordinated, &request.group_id, effects, record).await;
    match parked_reply(services, &coordinated, &replies).await {
        Ok(Reply::Sync(response)) => response,
        Ok(Reply::Join(_)) => unreachable!("a parked sync was answered with a join reply"),
        Err(code) => SyncGroupResponse::error(code),
    }
}

/// The reply to a parked join or sync; `ShuttingDown` once shutdown begins, so that a rebalance that
/// is still waiting for members does not hold the broker's shutdown for its whole timeout.
async fn parked_reply<S: GroupServices>(
    services: &Rc<S>,
    coordinated: &CoordinatedPartition,
    replies: &LocalReceiver<Reply>,
) -> Result<Reply, ErrorCode> {
    let answered = async { replies.recv().await.ok_or(ErrorCode::ShuttingDown) };
    let stopping = async {
        services.shutdown.requested().await;
        Err(ErrorCode::ShuttingDown)
    };
    // The partition's leadership moved: the member finds the new coordinator and joins there.
    let deposed = async {
        coordinated.deposed().await;
        Err(ErrorCode::NotCoordinator)
    };
    futures_lite::future::or(answered, futures_lite::future::or(stopping, deposed)).await
}

pub async fn heartbeat<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(error_code) => return HeartbeatResponse { error_code },
    };
    let coordinator = services.groups();
    let mut groups = coordinated.groups.borrow_mut();
    let error_code = match groups.get_mut(&request.group_id) {
        None => ErrorCode::UnknownMemberId,
        Some(group) => {
            let code = group.heartbeat(&request, coordinator.now_ms());
            coordinator.note_deadline(group.next_deadline_ms());
            code
        }
    };
    HeartbeatResponse { error_code }
}

pub async fn leave<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(error_code) => {
            return LeaveGroupResponse {
                error_code,
                members: Vec::new(),
            }
        }
    };
    let coordinator = services.groups();
    let (members, effects, record) = {
        let mut groups = coordinated.groups.borrow_mut();
        let Some(group) = groups.get_mut(&request.group_id) else {
            let members = request
                .members
                .iter()
                .map(|identity| MemberResult {
                    member_id: identity.member_id.clone(),
                    group_instance_id: identity.group_instance_id.clone(),
                    error_code: ErrorCode::UnknownMemberId,
                })
                .collect();
            return LeaveGroupResponse {
                error_code: ErrorCode::None,
                members,
            };
        };
        let (members, effects) = group.leave(&request.members, coordinator.now_ms());
        let record = effects.persist.then(|| group.to_record());
        coordinator.note_deadline(group.next_deadline_ms());
        (members, effects, record)
    };
    finish(services, &coordinated, &request.group_id, effects, record).await;
    LeaveGroupResponse {
        error_code: ErrorCode::None,
        members,
    }
}

// ---- offsets ---------------------------------------------------------------------------------------

/// A response with `code` for the whole request and for each partition in it.
fn commit_failed(request: &OffsetCommitRequest, error_code: ErrorCode) -> OffsetCommitResponse {
    OffsetCommitResponse {
        error_code,
        topics: request
            .topics
            .iter()
            .map(|topic| TopicPartitions {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        partition: partition.partition,
                        error_code,
                    })
                    .collect(),
            })
            .collect(),
    }
}

pub async fn commit_offsets<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(code) => return commit_failed(&request, code),
    };
    let coordinator = services.groups();
    // A commit without a generation comes from outside group management (an admin client, a
    // consumer with assigned partitions). Kafka takes it for a group that is empty or unknown
    // (creating a "simple" group), whatever member id it names.
    let standalone = request.generation_id < 0;
    let checked = coordinated
        .groups
        .borrow_mut()
        .get_mut(&request.group_id)
        .map(|group| {
            let outcome = group.check_commit(
                request.generation_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
                coordinator.now_ms(),
            );
            coordinator.note_deadline(group.next_deadline_ms());
            outcome
        });
    let allowed = match checked {
        Some(outcome) => outcome,
        None if standalone => coordinator.room_for(&coordinated, &request.group_id),
        // A group with committed offsets only is an empty group (Kafka's "simple" group):
        // no generation names a member of it.
        None if coordinated.knows_group(&request.group_id) => Err(ErrorCode::UnknownMemberId),
        // A generation of a group that does not exist here: gone, or never formed. Kafka
        // answers GROUP_ID_NOT_FOUND (OffsetCommit v9+; ILLEGAL_GENERATION before, which the
        // Kafka layer maps).
        None => Err(ErrorCode::GroupIdNotFound),
    };
    if let Err(code) = allowed {
        return commit_failed(&request, code);
    }

    let (records, codes) = offset_records(services, &request.group_id, &request.topics);
    let written = if records.is_empty() {
        Ok(())
    } else {
        coordinated.write(WriteOp::Records(records)).await
    };
    OffsetCommitResponse {
        error_code: ErrorCode::None,
        topics: partition_results(&request.topics, codes, written),
    }
}

/// The records of a commit's partitions and each partition's code: metadata beyond the limit
/// and partitions that do not exist are refused, the others get a record.
fn offset_records<S: GroupServices>(
    services: &Rc<S>,
    group_id: &str,
    topics: &[TopicPartitions<OffsetCommitPartition>],
) -> (Vec<LogRecord>, Vec<Vec<ErrorCode>>) {
    let snapshot = services.snapshot();
    let metadata_max = services.groups().limits.offset_metadata_bytes_max;
    let commit_timestamp_ms = wall_clock_ms();
    let mut records = Vec::new();
    let mut codes: Vec<Vec<ErrorCode>> = Vec::with_capacity(topics.len());
    for topic in topics {
        let partition_count = snapshot
            .topic(&topic.name)
            .map_or(0, |metadata| metadata.partition_count());
        let mut topic_codes = Vec::with_capacity(topic.partitions.len());
        for entry in &topic.partitions {
            let metadata_bytes = entry.committed_metadata.as_ref().map_or(0, String::len);
            let code = if metadata_bytes > metadata_max {
                ErrorCode::OffsetMetadataTooLarge
            } else if entry.partition >= partition_count {
                ErrorCode::UnknownTopicOrPartition
            } else {
                records.push(LogRecord::Offset {
                    group: group_id.to_string(),
                    topic: topic.name.clone(),
                    partition: entry.partition,
                    value: Some(CommittedOffset {
                        offset: entry.committed_offset,
                        metadata: entry.committed_metadata.clone(),
                        commit_timestamp_ms,
                    }),
                });
                ErrorCode::None
            };
            topic_codes.push(code);
        }
        codes.push(topic_codes);
    }
    (records, codes)
}

/// Each partition's answer: its own refusal, or the write's outcome.
fn partition_results(
    topics: &[TopicPartitions<OffsetCommitPartition>],
    codes: Vec<Vec<ErrorCode>>,
    written: Result<(), ErrorCode>,
) -> Vec<TopicPartitions<PartitionResult>> {
    topics
        .iter()
        .zip(codes)
        .map(|(topic, topic_codes)| TopicPartitions {
            name: topic.name.clone(),
            partitions: topic
                .partitions
                .iter()
                .zip(topic_codes)
                .map(|(entry, code)| PartitionResult {
                    partition: entry.partition,
                    error_code: match (code, written) {
                        (ErrorCode::None, Err(write_code)) => write_code,
                        (code, _) => code,
                    },
                })
                .collect(),
        })
        .collect()
}

// ---- transactional offsets ----------------------------------------------------------------------

/// Every partition of a transactional commit answered with `error_code`.
fn txn_commit_failed(
    request: &TxnOffsetCommitRequest,
    error_code: ErrorCode,
) -> TxnOffsetCommitResponse {
    TxnOffsetCommitResponse {
        error_code,
        topics: request
            .topics
            .iter()
            .map(|topic| TopicPartitions {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        partition: partition.partition,
                        error_code,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// TxnOffsetCommit (KIP-98, KIP-447): the offsets are written now, in a transactional batch of
/// the producer, and become the group's committed offsets only when the producer's commit
/// marker reaches the group's offsets partition ([`complete_transaction`]); an abort drops
/// them. The member checks are Kafka's for a transactional commit
/// ([`Group::check_transactional_commit`]); an unknown group takes it without a generation
/// (a "simple" group) and refuses a generation (ILLEGAL_GENERATION).
///
/// That the group is in the producer's transaction (AddOffsetsToTxn) is the transaction
/// coordinator's to check before this runs; here the partition's storage refuses a transaction
/// that a marker ended meanwhile (the verification guard) and a fenced epoch.
pub async fn commit_transactional_offsets<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(code) => return txn_commit_failed(&request, code),
    };
    let producer = TransactionalProducer {
        producer_id: request.producer_id,
        producer_epoch: request.producer_epoch,
    };
    if producer.producer_id < 0 || producer.producer_epoch < 0 {
        return txn_commit_failed(&request, ErrorCode::InvalidProducerIdMapping);
    }
    // Asked before the write is queued: a marker of the producer written after this voids the
    // guard, so a commit that loses the race with its transaction's end cannot open a
    // transaction that nothing ends.
    let guard = match verify_transaction(services, &coordinated, producer).await {
        Ok(guard) => guard,
        Err(code) => return txn_commit_failed(&request, code),
    };
    let coordinator = services.groups();
    let checked = coordinated
        .groups
        .borrow_mut()
        .get_mut(&request.group_id)
        .map(|group| {
            let outcome = group.check_transactional_commit(
                request.generation_id,
                &request.member_id,
                request.group_instance_id.as_deref(),
                coordinator.now_ms(),
            );
            coordinator.note_deadline(group.next_deadline_ms());
            outcome
        });
    let allowed = match checked {
        Some(outcome) => outcome,
        None if request.generation_id < 0 => coordinator.room_for(&coordinated, &request.group_id),
        // A group with offsets only has no members: a member id names none of them.
        None if coordinated.knows_group(&request.group_id) => Err(ErrorCode::UnknownMemberId),
        // Kafka: a generation of a group it does not know is ILLEGAL_GENERATION here.
        None => Err(ErrorCode::IllegalGeneration),
    };
    if let Err(code) = allowed {
        return txn_commit_failed(&request, code);
    }
    let (records, codes) = offset_records(services, &request.group_id, &request.topics);
    let written = if records.is_empty() {
        Ok(())
    } else {
        coordinated
            .write(WriteOp::Transactional {
                producer,
                records,
                guard,
            })
            .await
    };
    TxnOffsetCommitResponse {
        error_code: ErrorCode::None,
        topics: partition_results(&request.topics, codes, written),
    }
}

/// Ends `producer_id`'s transaction in `group_id`'s offsets partition (called by the
/// transaction coordinator for each group of a transaction once its outcome is durable, and
/// again after a restart for a transaction still completing): writes the marker there (always,
/// as Kafka does: it also voids a late commit's verification) and applies it, so the
/// producer's pending offsets of every group of the partition become committed, or are
/// dropped. Runs on any shard; the work runs on the group's coordinator shard.
pub async fn complete_transaction<S: GroupServices>(
    services: &Rc<S>,
    group_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    // No offsets topic: no group ever committed, nothing is pending anywhere.
    let Some(topic) = offsets_topic(services, false).await? else {
        return Ok(());
    };
    let partition = super::offsets_partition_of(group_id, topic.partition_count());
    let shard = coordinator_shard_of(partition, services.shard_count);
    let producer = TransactionalProducer {
        producer_id,
        producer_epoch,
    };
    invoke_on(services, shard, move |on: Rc<S>| async move {
        let coordinated = coordinated(&on, partition).await?;
        coordinated
            .write(WriteOp::Marker { producer, commit })
            .await
    })
    .await
    .map_err(|stopping| coordinator_error_code(&stopping.into()))?
}

/// The group's committed offsets. With `require_stable` (Kafka's OffsetFetch v7+, what a
/// read_committed consumer asks), a partition with an offset pending in an open transaction is
/// answered UNSTABLE_OFFSET_COMMIT without an offset, as Kafka does: the consumer retries
/// until the transaction ends, rather than start from an offset the transaction may replace.
pub async fn fetch_offsets<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let require_stable = request.require_stable;
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(error_code) => {
            return OffsetFetchResponse {
                error_code,
                topics: Vec::new(),
            }
        }
    };
    let store = coordinated.store.borrow();
    let answer = |topic: &str, partition: u32| {
        if require_stable && store.has_pending(&request.group_id, topic, partition) {
            return OffsetFetchPartition {
                partition,
                committed_offset: None,
                metadata: None,
                error_code: ErrorCode::UnstableOffsetCommit,
            };
        }
        let committed = store.committed(&request.group_id, topic, partition);
        OffsetFetchPartition {
            partition,
            committed_offset: committed.map(|value| value.offset),
            metadata: committed.and_then(|value| value.metadata.clone()),
            error_code: ErrorCode::None,
        }
    };
    let topics = match &request.topics {
        Some(topics) => topics
            .iter()
            .map(|topic| TopicPartitions {
                name: topic.name.clone(),
                partitions: topic
                    .partitions
                    .iter()
                    .map(|partition| answer(&topic.name, *partition))
                    .collect(),
            })
            .collect(),
        None => {
            let mut by_topic: BTreeMap<&str, Vec<OffsetFetchPartition>> = BTreeMap::new();
            for ((topic, partition), _) in store.group_offsets(&request.group_id) {
                by_topic
                    .entry(topic.as_str())
                    .or_default()
                    .push(answer(topic, *partition));
            }
            by_topic
                .into_iter()
                .map(|(name, partitions)| TopicPartitions {
                    name: name.to_string(),
                    partitions,
                })
                .collect()
        }
    };
    OffsetFetchResponse {
        error_code: ErrorCode::None,
        topics,
    }
}

pub async fn delete_offsets<S: GroupServices>(
    services: &Rc<S>,
    partition: u32,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let failed = |error_code: ErrorCode| OffsetDeleteResponse {
        error_code,
        topics: Vec::new(),
    };
    let coordinated = match coordinated(services, partition).await {
        Ok(coordinated) => coordinated,
        Err(code) => return failed(code),
    };
    if !coordinated.knows_group(&request.group_id) {
        return failed(ErrorCode::GroupIdNotFound);
    }
    let subscribed = match coordinated.groups.borrow().get(&request.group_id) {
        Some(group) => match group.subscribed_topics() {
            Some(topics) => topics,
            None => return failed(ErrorCode::NonEmptyGroup),
        },
        None => Default::default(),
    };
    let (deletable, kept): (Vec<TopicPartitionList>, Vec<TopicPartitionList>) = request
        .topics
        .iter()
        .cloned()
        .partition(|topic| !subscribed.contains(&topic.name));
    let written = if deletable.is_empty() {
        Ok(())
    } else {
        coordinated
            .write(WriteOp::DeleteOffsets {
                group: request.group_id.clone(),
                topics: deletable.clone(),
            })
            .await
    };
    let results = |topics: Vec<TopicPartitionList>, error_code: ErrorCode| {
        topics.into_iter().map(move |topic| TopicPartitions {
            name: topic.name,
            partitions: topic
                .partitions
                .into_iter()
                .map(|partition| PartitionResult {
                    partition,
                    error_code,
                })
                .collect(),
        })
    };
    let deleted_code = written.err().unwrap_or(ErrorCode::None);
    OffsetDeleteResponse {
        error_code: ErrorCode::None,
        topics: results(deletable, deleted_code)
            .chain(results(kept, ErrorCode::GroupSubscribedToTopic))
            .collect(),
    }
}

/// A deleted topic's committed offsets, removed from every group of the offsets partitions this
/// shard coordinates, as Kafka does: otherwise a topic created again under the name would show
/// (and a consumer would resume from) the old topic's positions. Tombstones go through each
/// partition's writer (acks=all), so the removal is durable when this returns.
pub async fn delete_topic_offsets<S: GroupServices>(
    services: &Rc<S>,
    topic: &str,
) -> Result<usize, ErrorCode> {
    let Some(offsets_topic) = services.snapshot().topic(OFFSETS_TOPIC_NAME).cloned() else {
        return Ok(0);
    };
    let owned = (0..offsets_topic.partition_count())
        .filter(|partition| coordinator_shard_of(*partition, services.shard_count) == services.id);
    let mut removed = 0;
    for partition in owned {
        let coordinated = coordinated(services, partition).await?;
        let stale = coordinated.store.borrow().offsets_of_topic(topic);
        for (group, partitions) in stale {
            removed += partitions.len();
            coordinated
                .write(WriteOp::DeleteOffsets {
                    group,
                    topics: vec![TopicPartitionList {
                        name: topic.to_string(),
                        partitions,
                    }],
                })
                .await?;
        }
    }
    Ok(removed)
}

// ---- administration ----------------------------------------------------------------------------

pub async fn describe<S: GroupServices>(
    services: &Rc<S>,
    groups: Vec<(u32, String)>,
) -> DescribeGroupsResponse {
    let mut described = Vec::with_capacity(groups.len());
    for (partition, group_id) in groups {
        let group = match coordinated(services, partition).await {
            Ok(coordinated) => describe_group(&coordinated, &group_id),
            Err(error_code) => DescribedGroup {
                error_code,
                group_id,
                state: GroupState::Dead,
                ..DescribedGroup::default()
            },
        };
        described.push(group);
    }
    DescribeGroupsResponse {
        error_code: ErrorCode::None,
        groups: described,
    }
}

/// The group's membership and offsets; high watermarks are the caller's to fill in.
fn describe_group(coordinated: &CoordinatedPartition, group_id: &str) -> DescribedGroup {
    let groups = coordinated.groups.borrow();
    let store = coordinated.store.borrow();
    let group = groups.get(group_id);
    if group.is_none() && !store.has_group(group_id) {
        return DescribedGroup {
            error_code: ErrorCode::GroupIdNotFound,
            group_id: group_id.to_string(),
            state: GroupState::Dead,
            ..DescribedGroup::default()
        };
    }
    let mut offsets: BTreeMap<&str, Vec<DescribedOffset>> = BTreeMap::new();
    for ((topic, partition), committed) in store.group_offsets(group_id) {
        offsets
            .entry(topic.as_str())
            .or_default()
            .push(DescribedOffset {
                partition: *partition,
                committed_offset: committed.offset,
                metadata: committed.metadata.clone(),
                high_watermark: None,
            });
    }
    let offsets = offsets
        .into_iter()
        .map(|(name, partitions)| TopicPartitions {
            name: name.to_string(),
            partitions,
        })
        .collect();
    match group {
        Some(group) => DescribedGroup {
            error_code: ErrorCode::None,
            group_id: group_id.to_string(),
            state: group.state(),
            protocol_type: group.protocol_type().unwrap_or_default().to_string(),
            protocol_name: group.protocol_name().unwrap_or_default().to_string(),
            generation_id: group.generation_id(),
            leader: group.leader().unwrap_or_default().to_string(),
            members: group.describe_members(),
            offsets,
        },
        None => DescribedGroup {
            error_code: ErrorCode::None,
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            offsets,
            ..DescribedGroup::default()
        },
    }
}

pub async fn delete_groups<S: GroupServices>(
    services: &Rc<S>,
    groups: Vec<(u32, String)>,
) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(groups.len());
    for (partition, group_id) in groups {
        let error_code = match coordinated(services, partition).await {
            Ok(coordinated) => delete_group(&coordinated, &group_id).await,
            Err(code) => code,
        };
        results.push(GroupResult {
            group_id,
            error_code,
        });
    }
    DeleteGroupsResponse {
        error_code: ErrorCode::None,
        results,
    }
}

async fn delete_group(coordinated: &CoordinatedPartition, group_id: &str) -> ErrorCode {
    if !coordinated.knows_group(group_id) {
        return ErrorCode::GroupIdNotFound;
    }
    {
        let mut groups = coordinated.groups.borrow_mut();
        if let Some(group) = groups.get(group_id) {
            if !group.is_empty() {
                return ErrorCode::NonEmptyGroup;
            }
            groups.remove(group_id);
        }
    }
    match coordinated
        .write(WriteOp::DeleteGroup(group_id.to_string()))
        .await
    {
        Ok(()) => {
            tracing::info!(group = %group_id, "group deleted");
            ErrorCode::None
        }
        Err(code) => code,
    }
}

pub async fn list<S: GroupServices>(services: &Rc<S>, states: &[GroupState]) -> ListGroupsResponse {
    let Some(topic) = services.snapshot().topic(OFFSETS_TOPIC_NAME).cloned() else {
        return ListGroupsResponse::default();
    };
    let mut listings = Vec::new();
    let owned = (0..topic.partition_count())
        .filter(|partition| coordinator_shard_of(*partition, services.shard_count) == services.id);
    for partition in owned {
        let coordinated = match coordinated(services, partition).await {
            Ok(coordinated) => coordinated,
            Err(error_code) => {
                return ListGroupsResponse {
                    error_code,
                    groups: Vec::new(),
                }
            }
        };
        let groups = coordinated.groups.borrow();
        let store = coordinated.store.borrow();
        let mut ids = store.group_ids();
        ids.extend(groups.keys().map(String::as_str));
        for group_id in ids {
            let group = groups.get(group_id);
            let state = group.map_or(GroupState::Empty, Group::state);
            if !states.is_empty() && !states.contains(&state) {
                continue;
            }
            let protocol_type = group
                .and_then(Group::protocol_type)
                .or_else(|| {
                    store
                        .group_record(group_id)
                        .map(|record| record.protocol_type.as_str())
                })
                .unwrap_or_default();
            listings.push(GroupListing {
                group_id: group_id.to_string(),
                protocol_type: protocol_type.to_string(),
                state,
            });
        }
    }
    ListGroupsResponse {
        error_code: ErrorCode::None,
        groups: listings,
    }
}
