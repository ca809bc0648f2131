//! The membership protocol as the client runs it, on the I/O thread: a dedicated connection to
//! the coordinator, the join–sync cycle (with the leader's assignment), heartbeats in the
//! background, leaving, and the offset commit and fetch requests.
//!
//! Group requests get a connection of their own because a join is held by the broker until the
//! rebalance completes, and answers on a connection come back in order: on the shared
//! connection a join would hold up every fetch and produce behind it. Commits and offset
//! fetches are quick and use the shared connection.
//!
//! The application's side (when to rejoin, callbacks, which positions to commit) is
//! `group::consumer`.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api::{
    ConsumerAssignment, ConsumerSubscription, GroupProtocol, HeartbeatRequest, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, MemberIdentity, OffsetCommitPartition,
    OffsetCommitRequest, OffsetFetchRequest, Request, SyncGroupAssignment, SyncGroupRequest,
    TopicPartitionList, TopicPartitions, CONSUMER_PROTOCOL_TYPE, GENERATION_NONE,
};
use spate_protocol::ErrorCode;

use super::assignor::{built_in, AssignorMember};
use super::config::GroupConfig;
use crate::config::ClientConfig;
use crate::consumer::TopicPartition;
use crate::error::Error;
use crate::network::routing::coordinator_moved;
use crate::network::{BrokerSlots, CoordinatorKind, Network, Retry};
use spate_security::ResourceType;

/// Where the member stands, shared by the application's thread and the heartbeat task.
#[derive(Debug)]
pub(crate) struct MemberState {
    /// Empty until the coordinator assigns one.
    pub(crate) member_id: String,
    pub(crate) generation: i32,
    /// In a completed generation, with an assignment: heartbeats run.
    pub(crate) joined: bool,
    /// The coordinator asked the member to rejoin (a rebalance started, or it lost its place).
    pub(crate) rejoin_needed: bool,
    /// A failure the member cannot recover from (another process took its instance id).
    pub(crate) fatal: Option<Error>,
    pub(crate) last_poll: Instant,
    pub(crate) closed: bool,
}

/// One member's shared state: settings, its coordinator connection, where it stands.
pub(crate) struct GroupShared {
    pub(crate) config: GroupConfig,
    client_config: ClientConfig,
    network: Arc<Network>,
    /// The member's own connection to its coordinator (found with FindCoordinator in a
    /// cluster): a parked join holds back nothing else.
    coordinator: BrokerSlots,
    state: Mutex<MemberState>,
    /// Wakes the heartbeat task early (on close).
    pub(crate) wake: tokio::sync::Notify,
}

impl GroupShared {
    pub(crate) fn new(config: GroupConfig, network: Arc<Network>) -> Self {
        Self {
            config,
            client_config: network.config().clone(),
            network,
            coordinator: BrokerSlots::new(),
            state: Mutex::new(MemberState {
                member_id: String::new(),
                generation: GENERATION_NONE,
                joined: false,
                rejoin_needed: false,
                fatal: None,
                last_poll: Instant::now(),
                closed: false,
            }),
            wake: tokio::sync::Notify::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, MemberState> {
        // Every critical section leaves the state consistent before anything can panic.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// One attempt at the group's coordinator, on the member's coordinator connection
    /// (opened again when needed). A failure to reach it makes the next attempt find the
    /// coordinator again; so does an answer saying it is not the coordinator
    /// ([`GroupShared::heard`]).
    async fn call<R: Request>(
        &self,
        request: &R,
        operation: &'static str,
        held_up_to: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let group_id = &self.config.group_id;
        let route = self
            .network
            .coordinator(CoordinatorKind::Group, group_id)
            .await?;
        let result = self
            .network
            .call_routed(&self.coordinator, &route, request, operation, held_up_to)
            .await;
        if let Err(error) = &result {
            if crate::network::routing::recovery_for(error, true)
                == crate::network::Recovery::FindCoordinator
            {
                self.network
                    .coordinator_moved(CoordinatorKind::Group, group_id);
            }
        }
        result
    }

    /// Notes an answer's error code: the coordinator moved or is not ready, so the next
    /// attempt asks where it is now.
    fn heard(&self, code: ErrorCode) {
        if coordinator_moved(code) {
            self.network
                .coordinator_moved(CoordinatorKind::Group, &self.config.group_id);
        }
    }

    fn identity(&self) -> (String, i32) {
        let state = self.state();
        (state.member_id.clone(), state.generation)
    }
}

/// The broker's refusal of a request about `group_id` (an authorization error names it).
fn refused(group_id: &str, operation: &'static str, code: ErrorCode) -> Error {
    Error::broker(operation, None, None, code, None).naming(ResourceType::Group, group_id)
}

/// Joins (again), has the leader assign, syncs; repeats while the group keeps rebalancing.
/// `owned` is what the member held before, for the sticky assignor. Returns the member's new
/// partitions.
pub(crate) async fn join_and_sync(
    shared: Arc<GroupShared>,
    network: Arc<Network>,
    topics: Vec<String>,
    owned: Vec<TopicPartition>,
) -> Result<Vec<TopicPartition>, Error> {
    let subscription = ConsumerSubscription {
        topics: topics.clone(),
        owned_partitions: partition_lists(&owned),
        user_data: Bytes::new(),
    }
    .encode()
    .map_err(|source| Error::Protocol {
        operation: "join group",
        source,
    })?;
    shared.state().rejoin_needed = false;
    loop {
        let joined = join(&shared, &subscription).await?;
        let assignments = if joined.is_leader() {
            assign(&network, &joined).await?
        } else {
            Vec::new()
        };
        let request = SyncGroupRequest {
            group_id: shared.config.group_id.clone(),
            generation_id: joined.generation_id,
            member_id: joined.member_id.clone(),
            group_instance_id: shared.config.group_instance_id.clone(),
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: joined.protocol_name.clone(),
            assignments,
        };
        let synced = shared
            .call(
                &request,
                "sync group",
                Some(shared.config.rebalance_timeout),
            )
            .await?;
        shared.heard(synced.error_code);
        match synced.error_code {
            ErrorCode::None => {
                let assignment =
                    ConsumerAssignment::decode(synced.assignment).map_err(|source| {
                        Error::Protocol {
                            operation: "sync group",
                            source,
                        }
                    })?;
                shared.state().joined = true;
                return Ok(assignment
                    .topic_partitions()
                    .map(|(topic, partition)| TopicPartition::new(topic, partition))
                    .collect());
            }
            // The group moved on while this member synced: join the new generation.
            ErrorCode::RebalanceInProgress | ErrorCode::IllegalGeneration => continue,
            ErrorCode::UnknownMemberId => {
                shared.state().member_id.clear();
                continue;
            }
            code if code.is_retriable() => {
                tokio::time::sleep(shared.config.retry_backoff).await;
                continue;
            }
            code => return Err(refused(&shared.config.group_id, "sync group", code)),
        }
    }
}

/// JoinGroup until the coordinator answers with a generation; handles the member id
/// handshake and transient refusals.
async fn join(shared: &GroupShared, subscription: &Bytes) -> Result<JoinGroupResponse, Error> {
    let config = &shared.config;
    let deadline = Instant::now() + config.rebalance_timeout + shared.client_config.retry_timeout;
    loop {
        let (member_id, _) = shared.identity();
        let request = JoinGroupRequest {
            group_id: config.group_id.clone(),
            session_timeout_ms: millis(config.session_timeout),
            rebalance_timeout_ms: millis(config.rebalance_timeout),
            member_id,
            group_instance_id: config.group_instance_id.clone(),
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
            protocols: config
                .assignors
                .iter()
                .map(|name| GroupProtocol {
                    name: name.clone(),
                    metadata: subscription.clone(),
                })
                .collect(),
        };
        let answer = shared
            .call(&request, "join group", Some(config.rebalance_timeout))
            .await;
        let response = match answer {
            Ok(response) => response,
            Err(error) if error.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(config.retry_backoff).await;
                continue;
            }
            Err(error) => return Err(error),
        };
        shared.heard(response.error_code);
        match response.error_code {
            ErrorCode::None => {
                let mut state = shared.state();
                state.member_id = response.member_id.clone();
                state.generation = response.generation_id;
                return Ok(response);
            }
            ErrorCode::MemberIdRequired => shared.state().member_id = response.member_id,
            ErrorCode::UnknownMemberId => shared.state().member_id.clear(),
            code if (code.is_retriable() || code == ErrorCode::RebalanceInProgress)
                && Instant::now() < deadline =>
            {
                tokio::time::sleep(config.retry_backoff).await;
            }
            code => return Err(refused(&shared.config.group_id, "join group", code)),
        }
    }
}

/// The leader's assignment, with the protocol (assignor) the coordinator chose.
async fn assign(
    network: &Network,
    joined: &JoinGroupResponse,
) -> Result<Vec<SyncGroupAssignment>, Error> {
    let name = joined.protocol_name.as_deref().unwrap_or_default();
    let assignor = built_in(name).ok_or_else(|| {
        Error::invalid(
            "assignor",
            format!("the group chose {name:?}, which this client does not know"),
        )
    })?;
    let mut members = Vec::with_capacity(joined.members.len());
    let mut topics = BTreeSet::new();
    for member in &joined.members {
        let subscription =
            ConsumerSubscription::decode(member.metadata.clone()).map_err(|source| {
                Error::Protocol {
                    operation: "join group",
                    source,
                }
            })?;
        topics.extend(subscription.topics.iter().cloned());
        members.push(AssignorMember {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            topics: subscription.topics,
            owned: subscription
                .owned_partitions
                .iter()
                .flat_map(|topic| {
                    topic
                        .partitions
                        .iter()
                        .map(|partition| TopicPartition::new(topic.name.clone(), *partition))
                })
                .collect(),
        });
    }
    // Fresh metadata: the assignment must cover partitions added since the last look.
    let mut partition_counts = BTreeMap::new();
    for topic in topics {
        match network.refresh_topic(&topic).await {
            Ok(info) => {
                partition_counts.insert(topic, info.partition_count());
            }
            Err(Error::UnknownTopic { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    let assignment = assignor.assign(&members, &partition_counts);
    assignment
        .into_iter()
        .map(|(member_id, partitions)| {
            let encoded = ConsumerAssignment {
                partitions: partition_lists(&partitions),
                user_data: Bytes::new(),
            }
            .encode()
            .map_err(|source| Error::Protocol {
                operation: "sync group",
                source,
            })?;
            Ok(SyncGroupAssignment {
                member_id,
                assignment: encoded,
            })
        })
        .collect()
}

/// Heartbeats while the member is in a generation, until it closes. Also leaves the group for
/// a member whose application stopped polling for longer than `max_poll_interval`.
pub(crate) async fn run_heartbeats(shared: Arc<GroupShared>) {
    let config = shared.config.clone();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(config.heartbeat_interval) => {}
            _ = shared.wake.notified() => {}
        }
        let (member_id, generation, stalled) = {
            let state = shared.state();
            if state.closed {
                return;
            }
            if !state.joined || state.fatal.is_some() {
                continue;
            }
            (
                state.member_id.clone(),
                state.generation,
                state.last_poll.elapsed() > config.max_poll_interval,
            )
        };
        if stalled {
            // The application is stuck: give its partitions to someone who makes progress.
            let _ = leave(&shared).await;
            let mut state = shared.state();
            state.joined = false;
            state.rejoin_needed = true;
            continue;
        }
        let request = HeartbeatRequest {
            group_id: config.group_id.clone(),
            generation_id: generation,
            member_id: member_id.clone(),
            group_instance_id: config.group_instance_id.clone(),
        };
        let Ok(response) = shared.call(&request, "heartbeat", None).await else {
            continue; // Transport trouble: the next heartbeat reconnects.
        };
        shared.heard(response.error_code);
        let mut state = shared.state();
        if state.member_id != member_id || state.generation != generation {
            continue; // The member rejoined meanwhile; this answer is about the past.
        }
        match response.error_code {
            ErrorCode::None => {}
            ErrorCode::RebalanceInProgress => state.rejoin_needed = true,
            ErrorCode::IllegalGeneration => {
                state.joined = false;
                state.rejoin_needed = true;
            }
            ErrorCode::UnknownMemberId => {
                state.member_id.clear();
                state.joined = false;
                state.rejoin_needed = true;
            }
            ErrorCode::FencedInstanceId => {
                state.joined = false;
                state.fatal = Some(refused(
                    &shared.config.group_id,
                    "heartbeat",
                    ErrorCode::FencedInstanceId,
                ));
            }
            _ => {} // The coordinator is busy or moving; try again next time.
        }
    }
}

/// Leaves the group (dynamic members; static members stay until their session expires).
pub(crate) async fn leave(shared: &GroupShared) -> Result<(), Error> {
    let (member_id, _) = shared.identity();
    if member_id.is_empty() {
        return Ok(());
    }
    let request = LeaveGroupRequest {
        group_id: shared.config.group_id.clone(),
        members: vec![MemberIdentity {
            member_id,
            group_instance_id: shared.config.group_instance_id.clone(),
        }],
    };
    let response = shared.call(&request, "leave group", None).await?;
    let mut state = shared.state();
    state.member_id.clear();
    state.generation = GENERATION_NONE;
    state.joined = false;
    match response.error_code {
        ErrorCode::None => Ok(()),
        code => Err(refused(&shared.config.group_id, "leave group", code)),
    }
}

/// Commits `offsets` (the next offset to read, per partition) as the member, or from outside
/// the membership with `member` `None`.
pub(crate) async fn commit(
    network: &Network,
    group_id: &str,
    member: Option<(String, i32, Option<String>)>,
    offsets: Vec<(TopicPartition, u64)>,
) -> Result<(), Error> {
    if offsets.is_empty() {
        return Ok(());
    }
    let (member_id, generation_id, group_instance_id) =
        member.unwrap_or((String::new(), GENERATION_NONE, None));
    let mut topics: BTreeMap<String, Vec<OffsetCommitPartition>> = BTreeMap::new();
    for (partition, offset) in offsets {
        topics
            .entry(partition.topic)
            .or_default()
            .push(OffsetCommitPartition {
                partition: partition.partition,
                committed_offset: offset,
                committed_metadata: None,
            });
    }
    let request = OffsetCommitRequest {
        group_id: group_id.to_string(),
        generation_id,
        member_id,
        group_instance_id,
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicPartitions { name, partitions })
            .collect(),
    };
    // A commit repeats safely: the same offsets again.
    let response = network
        .call_coordinator(
            network.shared_slots(),
            CoordinatorKind::Group,
            group_id,
            &request,
            "commit offsets",
            Retry::Idempotent,
            None,
            |response| response.error_code,
        )
        .await?;
    if !response.error_code.is_none() {
        return Err(refused(group_id, "commit offsets", response.error_code));
    }
    for topic in &response.topics {
        if let Some(failed) = topic
            .partitions
            .iter()
            .find(|partition| !partition.error_code.is_none())
        {
            return Err(Error::broker(
                "commit offsets",
                Some(&topic.name),
                Some(failed.partition),
                failed.error_code,
                None,
            ));
        }
    }
    Ok(())
}

/// The committed offsets of `partitions` (`None` where nothing is committed). With
/// `require_stable` (a read_committed consumer), a partition whose offset waits in an open
/// transaction is asked for again until the transaction ended (or `retry_timeout` passed), so
/// the consumer does not start behind a commit about to land.
pub(crate) async fn committed(
    network: &Network,
    group_id: &str,
    partitions: &[TopicPartition],
    require_stable: bool,
) -> Result<Vec<Option<u64>>, Error> {
    let request = OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics: Some(partition_lists(partitions)),
        require_stable,
    };
    let deadline = Instant::now() + network.config().retry_timeout;
    let mut backoff = network.config().reconnect_backoff_min;
    let response = loop {
        let response = network
            .call_coordinator(
                network.shared_slots(),
                CoordinatorKind::Group,
                group_id,
                &request,
                "fetch offsets",
                Retry::Idempotent,
                None,
                |response| response.error_code,
            )
            .await?;
        let unstable = response
            .topics
            .iter()
            .flat_map(|topic| topic.partitions.iter())
            .any(|partition| partition.error_code == ErrorCode::UnstableOffsetCommit);
        if !unstable || Instant::now() + backoff > deadline {
            break response;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(network.config().reconnect_backoff_max);
    };
    if !response.error_code.is_none() {
        return Err(refused(group_id, "fetch offsets", response.error_code));
    }
    if let Some((topic, failed)) = response.topics.iter().find_map(|topic| {
        topic
            .partitions
            .iter()
            .find(|partition| !partition.error_code.is_none())
            .map(|partition| (topic, partition))
    }) {
        return Err(Error::broker(
            "fetch offsets",
            Some(&topic.name),
            Some(failed.partition),
            failed.error_code,
            None,
        ));
    }
    Ok(partitions
        .iter()
        .map(|partition| response.committed(&partition.topic, partition.partition))
        .collect())
}

/// Partitions grouped by topic, as the wire lists them.
pub(crate) fn partition_lists(partitions: &[TopicPartition]) -> Vec<TopicPartitionList> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for partition in partitions {
        by_topic
            .entry(&partition.topic)
            .or_default()
            .push(partition.partition);
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| TopicPartitionList {
            name: name.to_string(),
            partitions,
        })
        .collect()
}

fn millis(duration: Duration) -> u32 {
    // GroupConfig::check keeps timeouts within u32 milliseconds.
    u32::try_from(duration.as_millis()).unwrap_or(u32::MAX)
}
