//! One group's membership as a pure state machine: Kafka's classic group protocol (join, sync,
//! heartbeat, leave, session and rebalance timeouts, generation fencing, static members).
//!
//! Nothing here waits or reads a clock: every call takes `now_ms` (a monotonic millisecond
//! count) and returns [`Effects`]: the replies to send to parked requests, named by the
//! [`WaiterId`] the caller gave each request, and whether the group's stable state changed and
//! must be written to the offsets log. The caller (`coordinator`) owns the parked requests, the
//! timer that calls [`Group::tick`], and the log. Committed offsets are not here (`store`).
//!
//! States: `Empty` (no members) → `PreparingRebalance` (waiting up to the rebalance timeout for
//! every known member to join) → `CompletingRebalance` (joined; waiting for the leader's
//! assignment) → `Stable`. Any membership change in `CompletingRebalance` or `Stable` starts a
//! new rebalance; completing a join bumps the generation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use spate_kafka_protocol::consumer_protocol::subscription_topics;
use spate_protocol::api::{
    ConsumerSubscription, DescribedMember, GroupProtocol, GroupState, HeartbeatRequest,
    JoinGroupMember, JoinGroupRequest, JoinGroupResponse, MemberIdentity, MemberResult,
    SyncGroupRequest, SyncGroupResponse, CONSUMER_PROTOCOL_TYPE,
};
use spate_protocol::ErrorCode;

use super::limits::GroupLimits;
use super::records::{GroupRecord, MemberRecord};

/// Names a parked request (a join or sync waiting for the rebalance to progress).
pub type WaiterId = u64;

/// The answer to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Join(JoinGroupResponse),
    Sync(SyncGroupResponse),
}

/// What a state change asks of the caller.
#[derive(Debug, Default)]
pub struct Effects {
    /// Answers to parked requests, in the order they were decided.
    pub replies: Vec<(WaiterId, Reply)>,
    /// The group's stable state (generation, members, assignments) changed: write it to the
    /// offsets log before sending the replies.
    pub persist: bool,
}

impl Effects {
    fn join_error(&mut self, waiter: WaiterId, error_code: ErrorCode, member_id: &str) {
        self.replies.push((
            waiter,
            Reply::Join(JoinGroupResponse::error(error_code, member_id)),
        ));
    }

    fn sync_error(&mut self, waiter: WaiterId, error_code: ErrorCode) {
        self.replies
            .push((waiter, Reply::Sync(SyncGroupResponse::error(error_code))));
    }
}

/// Who a joining member is, beyond what its request says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientInfo {
    pub client_id: String,
    pub client_host: String,
    /// How the client's protocol version gives a new dynamic member its id.
    pub member_id_handshake: MemberIdHandshake,
}

/// How a dynamic member joining without an id gets one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum MemberIdHandshake {
    /// It is answered `MemberIdRequired` with an id and joins again with it, so a join that
    /// times out on the client leaves no member behind (the native protocol, Kafka's JoinGroup
    /// v4+).
    #[default]
    Required,
    /// It joins at once under a new id, which its join answer carries (Kafka's JoinGroup
    /// v0–v3, whose clients do not know the handshake). A client that gives up on such a join
    /// and joins again leaves a member behind until its session expires.
    Skipped,
}

#[derive(Debug, Clone)]
struct Member {
    member_id: String,
    group_instance_id: Option<String>,
    client: ClientInfo,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocols: Vec<GroupProtocol>,
    assignment: Bytes,
    join_waiter: Option<WaiterId>,
    sync_waiter: Option<WaiterId>,
    /// The member is removed if it is not heard from by then (unless a join or sync of it is
    /// parked: it is waiting on the group, not silent).
    session_deadline_ms: u64,
}

impl Member {
    fn metadata_for(&self, protocol_name: Option<&str>) -> Bytes {
        let chosen = protocol_name
            .and_then(|name| self.protocols.iter().find(|protocol| protocol.name == name));
        chosen
            .or(self.protocols.first())
            .map(|protocol| protocol.metadata.clone())
            .unwrap_or_default()
    }

    fn touch(&mut self, now_ms: u64) {
        self.session_deadline_ms = now_ms + u64::from(self.session_timeout_ms);
    }

    fn is_waiting(&self) -> bool {
        self.join_waiter.is_some() || self.sync_waiter.is_some()
    }
}

/// What a join request asks for, after validation.
struct JoinSettings {
    group_instance_id: Option<String>,
    client: ClientInfo,
    session_timeout_ms: u32,
    rebalance_timeout_ms: u32,
    protocol_type: String,
    protocols: Vec<GroupProtocol>,
}

/// One group. Lives on its coordinator shard, inside the offsets partition that holds it.
#[derive(Debug, Clone)]
pub struct Group {
    group_id: String,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// By member id: iteration order (and so leader choice) is deterministic.
    members: BTreeMap<String, Member>,
    /// Static members: instance id → current member id.
    instances: HashMap<String, String>,
    /// Member ids handed out with `MemberIdRequired`, not yet joined, with their deadlines.
    pending: BTreeMap<String, u64>,
    /// `PreparingRebalance`: the join completes at this time at the latest.
    join_deadline_ms: Option<u64>,
    /// Set during the first rebalance of an empty group: the delayed join never runs past it.
    initial_join_limit_ms: Option<u64>,
    /// `CompletingRebalance`: members that have not synced by then are removed.
    sync_deadline_ms: Option<u64>,
    initial_rebalance_delay_ms: u64,
    members_max: usize,
}

impl Group {
    pub fn new(group_id: &str, limits: &GroupLimits) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            instances: HashMap::new(),
            pending: BTreeMap::new(),
            join_deadline_ms: None,
            initial_join_limit_ms: None,
            sync_deadline_ms: None,
            initial_rebalance_delay_ms: limits.initial_rebalance_delay_ms,
            members_max: limits.members_per_group_max,
        }
    }

    /// The group as it was last written: `Stable` with its members (each with a fresh session,
    /// so members that outlived a broker restart keep going), or `Empty`.
    pub fn restore(
        group_id: &str,
        record: &GroupRecord,
        limits: &GroupLimits,
        now_ms: u64,
    ) -> Group {
        let mut group = Group::new(group_id, limits);
        group.generation_id = record.generation_id;
        group.protocol_type = Some(record.protocol_type.clone()).filter(|name| !name.is_empty());
        group.protocol_name = record.protocol_name.clone();
        for stored in &record.members {
            let member = Member {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id.clone(),
                client: ClientInfo {
                    client_id: stored.client_id.clone(),
                    client_host: stored.client_host.clone(),
                    ..ClientInfo::default()
                },
                session_timeout_ms: stored.session_timeout_ms,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                protocols: vec![GroupProtocol {
                    name: record.protocol_name.clone().unwrap_or_default(),
                    metadata: stored.metadata.clone(),
                }],
                assignment: stored.assignment.clone(),
                join_waiter: None,
                sync_waiter: None,
                session_deadline_ms: now_ms + u64::from(stored.session_timeout_ms),
            };
            if let Some(instance) = &member.group_instance_id {
                group
                    .instances
                    .insert(instance.clone(), member.member_id.clone());
            }
            group.members.insert(member.member_id.clone(), member);
        }
        if !group.members.is_empty() {
            group.state = GroupState::Stable;
            group.leader_id = record
                .leader
                .clone()
                .filter(|leader| group.members.contains_key(leader))
                .or_else(|| group.members.keys().next().cloned());
        }
        group
    }

    /// The stable state to write to the offsets log.
    pub fn to_record(&self) -> GroupRecord {
        GroupRecord {
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone(),
            members: self
                .members
                .values()
                .map(|member| MemberRecord {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    client_id: member.client.client_id.clone(),
                    client_host: member.client.client_host.clone(),
                    session_timeout_ms: member.session_timeout_ms,
                    rebalance_timeout_ms: member.rebalance_timeout_ms,
                    metadata: member.metadata_for(self.protocol_name.as_deref()),
                    assignment: member.assignment.clone(),
                })
                .collect(),
        }
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// No members and none about to join.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    pub fn describe_members(&self) -> Vec<DescribedMember> {
        self.members
            .values()
            .map(|member| DescribedMember {
                member_id: member.member_id.clone(),
                group_instance_id: member.group_instance_id.clone(),
                client_id: member.client.client_id.clone(),
                client_host: member.client.client_host.clone(),
                metadata: member.metadata_for(self.protocol_name.as_deref()),
                assignment: member.assignment.clone(),
            })
            .collect()
    }

    /// Topics the members of a consumer group subscribe to; `None` when the group does not
    /// speak the consumer protocol (its subscriptions cannot be read).
    pub fn subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        if self.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
            return None;
        }
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            let metadata = member.metadata_for(self.protocol_name.as_deref());
            // A native member's subscription, or a Kafka consumer's (big-endian): read as native,
            // a Kafka one has no topics or at least 2^24 of them, beyond the native limit, so
            // the two cannot be mistaken for each other.
            match ConsumerSubscription::decode(metadata.clone()) {
                Ok(subscription) => topics.extend(subscription.topics),
                Err(_) => topics.extend(subscription_topics(&metadata)?),
            }
        }
        Some(topics)
    }

    /// The earliest time at which [`Group::tick`] has something to do.
    pub fn next_deadline_ms(&self) -> Option<u64> {
        let sessions = self
            .members
            .values()
            .filter(|member| !member.is_waiting())
            .map(|member| member.session_deadline_ms);
        let join = match self.state {
            GroupState::PreparingRebalance => self.join_deadline_ms,
            _ => None,
        };
        let sync = match self.state {
            GroupState::CompletingRebalance => self.sync_deadline_ms,
            _ => None,
        };
        sessions
            .chain(self.pending.values().copied())
            .chain(join)
            .chain(sync)
            .min()
    }

    // ---- join --------------------------------------------------------------------------

    /// Handles a JoinGroup. The reply to `waiter` may come in the returned effects or in those
    /// of a later call (when the rebalance completes).
    pub fn join(
        &mut self,
        waiter: WaiterId,
        request: JoinGroupRequest,
        client: ClientInfo,
        limits: &GroupLimits,
        now_ms: u64,
        new_member_id: &mut dyn FnMut(&str) -> String,
    ) -> Effects {
        let mut effects = Effects::default();
        if let Err(code) = self.check_join(&request, limits) {
            effects.join_error(waiter, code, &request.member_id);
            return effects;
        }
        // A zero rebalance timeout means "as long as the session", as Kafka's first version.
        let rebalance_timeout_ms = match request.rebalance_timeout_ms {
            0 => request.session_timeout_ms,
            timeout => timeout,
        }
        .min(limits.rebalance_timeout_ms_max);
        let settings = JoinSettings {
            group_instance_id: request.group_instance_id,
            client,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
        };
        let member_id = request.member_id;
        match (member_id.is_empty(), settings.group_instance_id.clone()) {
            (true, Some(instance)) => self.join_static_without_id(
                waiter,
                &instance,
                settings,
                now_ms,
                new_member_id,
                &mut effects,
            ),
            (true, None) => {
                self.join_new_dynamic(waiter, settings, now_ms, new_member_id, &mut effects)
            }
            (false, _) => self.join_with_id(waiter, member_id, settings, now_ms, &mut effects),
        }
        effects
    }

    fn check_join(
        &self,
        request: &JoinGroupRequest,
        limits: &GroupLimits,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        let session = request.session_timeout_ms;
        if session < limits.session_timeout_ms_min || session > limits.session_timeout_ms_max {
            return Err(ErrorCode::InvalidSessionTimeout);
        }
        if request.protocol_type.is_empty() || request.protocols.is_empty() {
            return Err(ErrorCode::InconsistentGroupProtocol);
        }
        Ok(())
    }

    /// Whether a member offering `protocols` can be in this group with its members other than
    /// `excluding`: same protocol type, and one protocol every other member offers too.
    fn supports(
        &self,
        protocol_type: &str,
        protocols: &[GroupProtocol],
        excluding: Option<&str>,
    ) -> bool {
        let mut others = self
            .members
            .values()
            .filter(|member| Some(member.member_id.as_str()) != excluding)
            .peekable();
        if others.peek().is_none() {
            return true;
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        let others: Vec<&Member> = others.collect();
        protocols.iter().any(|offered| {
            others.iter().all(|member| {
                member
                    .protocols
                    .iter()
                    .any(|protocol| protocol.name == offered.name)
            })
        })
    }

    fn has_room(&self) -> bool {
        self.members.len() + self.pending.len() < self.members_max
    }

    /// A dynamic member's first join: hand out its id and ask it to join again with it, so a
    /// join that times out on the client leaves no member behind; or, for a client that does
    /// not know that handshake, join it at once under a new id.
    fn join_new_dynamic(
        &mut self,
        waiter: WaiterId,
        settings: JoinSettings,
        now_ms: u64,
        new_member_id: &mut dyn FnMut(&str) -> String,
        effects: &mut Effects,
    ) {
        if !self.has_room() {
            effects.join_error(waiter, ErrorCode::GroupMaxSizeReached, "");
            return;
        }
        if !self.supports(&settings.protocol_type, &settings.protocols, None) {
            effects.join_error(waiter, ErrorCode::InconsistentGroupProtocol, "");
            return;
        }
        let member_id = new_member_id(&settings.client.client_id);
        if settings.client.member_id_handshake == MemberIdHandshake::Skipped {
            self.add_member_and_rebalance(waiter, member_id, settings, now_ms, effects);
            return;
        }
        self.pending.insert(
            member_id.clone(),
            now_ms + u64::from(settings.session_timeout_ms),
        );
        effects.join_error(waiter, ErrorCode::MemberIdRequired, &member_id);
    }

    fn join_with_id(
        &mut self,
        waiter: WaiterId,
        member_id: String,
        settings: JoinSettings,
        now_ms: u64,
        effects: &mut Effects,
    ) {
        if let Some(instance) = &settings.group_instance_id {
            match self.instances.get(instance) {
                Some(current) if *current != member_id => {
                    effects.join_error(waiter, ErrorCode::FencedInstanceId, &member_id);
                    return;
                }
                Some(_) => {}
                None if !self.pending.contains_key(&member_id) => {
                    effects.join_error(waiter, ErrorCode::UnknownMemberId, &member_id);
                    return;
                }
                None => {}
            }
        }
        if !self.supports(
            &settings.protocol_type,
            &settings.protocols,
            Some(&member_id),
        ) {
            effects.join_error(waiter, ErrorCode::InconsistentGroupProtocol, &member_id);
            return;
        }
        if self.pending.remove(&member_id).is_some() {
            self.add_member_and_rebalance(waiter, member_id, settings, now_ms, effects);
        } else if self.members.contains_key(&member_id) {
            self.rejoin(waiter, &member_id, settings, now_ms, effects);
        } else {
            effects.join_error(waiter, ErrorCode::UnknownMemberId, &member_id);
        }
    }

    /// A static member joining without a member id: either new, or a restart of a known
    /// instance, which takes over the old member's place (and assignment) without a rebalance.
    fn join_static_without_id(
        &mut self,
        waiter: WaiterId,
        instance: &str,
        settings: JoinSettings,
        now_ms: u64,
        new_member_id: &mut dyn FnMut(&str) -> String,
        effects: &mut Effects,
    ) {
        let Some(old_member_id) = self.instances.get(instance).cloned() else {
            if !self.has_room() {
                effects.join_error(waiter, ErrorCode::GroupMaxSizeReached, "");
                return;
            }
            if !self.supports(&settings.protocol_type, &settings.protocols, None) {
                effects.join_error(waiter, ErrorCode::InconsistentGroupProtocol, "");
                return;
            }
            let member_id = new_member_id(&settings.client.client_id);
            self.add_member_and_rebalance(waiter, member_id, settings, now_ms, effects);
            return;
        };
        if !self.supports(
            &settings.protocol_type,
            &settings.protocols,
            Some(&old_member_id),
        ) {
            effects.join_error(waiter, ErrorCode::InconsistentGroupProtocol, "");
            return;
        }
        let mut member = self
            .members
            .remove(&old_member_id)
            .expect("every static instance maps to a current member");
        // The old incarnation is fenced: whatever it was waiting for, it will not get.
        if let Some(old_waiter) = member.join_waiter.take() {
            effects.join_error(old_waiter, ErrorCode::FencedInstanceId, &old_member_id);
        }
        if let Some(old_waiter) = member.sync_waiter.take() {
            effects.sync_error(old_waiter, ErrorCode::FencedInstanceId);
        }
        let member_id = new_member_id(&settings.client.client_id);
        member.member_id = member_id.clone();
        apply_settings(&mut member, settings);
        member.touch(now_ms);
        self.instances
            .insert(instance.to_string(), member_id.clone());
        if self.leader_id.as_deref() == Some(old_member_id.as_str()) {
            self.leader_id = Some(member_id.clone());
        }
        self.members.insert(member_id.clone(), member);
        // As Kafka: a restarted consumer's metadata differs from its old incarnation's (a
        // Kafka subscription carries the partitions the member owns and its generation), so
        // only a change of the group's protocol calls for a rebalance.
        let same_protocol = self.select_protocol() == self.protocol_name;
        let member = self.members.get_mut(&member_id).expect("inserted above");
        match self.state {
            GroupState::Stable if same_protocol => {
                let response = self.join_response(&member_id);
                effects.replies.push((waiter, Reply::Join(response)));
                // The member id changed: the stored group must name the new one.
                effects.persist = true;
            }
            GroupState::PreparingRebalance => {
                member.join_waiter = Some(waiter);
                self.try_complete_join(now_ms, effects);
            }
            // As Kafka, also while the group waits for the leader's assignment: the leader
            // assigns to the old member id, which would leave the new one without partitions.
            _ => {
                member.join_waiter = Some(waiter);
                self.prepare_rebalance(now_ms, effects);
            }
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        waiter: WaiterId,
        member_id: String,
        settings: JoinSettings,
        now_ms: u64,
        effects: &mut Effects,
    ) {
        if self.members.is_empty() {
            self.protocol_type = Some(settings.protocol_type.clone());
        }
        let mut member = Member {
            member_id: member_id.clone(),
            group_instance_id: None,
            client: ClientInfo::default(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            protocols: Vec::new(),
            assignment: Bytes::new(),
            join_waiter: Some(waiter),
            sync_waiter: None,
            session_deadline_ms: 0,
        };
        apply_settings(&mut member, settings);
        member.touch(now_ms);
        if let Some(instance) = &member.group_instance_id {
            self.instances.insert(instance.clone(), member_id.clone());
        }
        self.members.insert(member_id, member);
        if self.state == GroupState::PreparingRebalance {
            // A new member during the initial delay pushes the delay out, within its limit.
            if let Some(limit) = self.initial_join_limit_ms {
                self.join_deadline_ms = Some((now_ms + self.initial_rebalance_delay_ms).min(limit));
            }
            self.try_complete_join(now_ms, effects);
        } else {
            self.prepare_rebalance(now_ms, effects);
        }
    }

    /// A current member joining again.
    fn rejoin(
        &mut self,
        waiter: WaiterId,
        member_id: &str,
        settings: JoinSettings,
        now_ms: u64,
        effects: &mut Effects,
    ) {
        let is_leader = self.leader_id.as_deref() == Some(member_id);
        let state = self.state;
        let member = self
            .members
            .get_mut(member_id)
            .expect("the caller checked membership");
        let protocols_changed = member.protocols != settings.protocols;
        apply_settings(member, settings);
        member.touch(now_ms);
        match state {
            GroupState::PreparingRebalance => {
                if let Some(old_waiter) = member.join_waiter.replace(waiter) {
                    effects.join_error(old_waiter, ErrorCode::RebalanceInProgress, member_id);
                }
                self.try_complete_join(now_ms, effects);
            }
            // It missed (or did not wait for) its join answer: give it again.
            GroupState::CompletingRebalance if !protocols_changed => {
                let response = self.join_response(member_id);
                effects.replies.push((waiter, Reply::Join(response)));
            }
            // A follower with nothing new is answered with the current generation; the leader
            // (which rejoins to make a new assignment, e.g. after metadata changed) and a
            // member with new protocols start a rebalance.
            GroupState::Stable if !is_leader && !protocols_changed => {
                let response = self.join_response(member_id);
                effects.replies.push((waiter, Reply::Join(response)));
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                member.join_waiter = Some(waiter);
                self.prepare_rebalance(now_ms, effects);
            }
            GroupState::Empty | GroupState::Dead => {
                effects.join_error(waiter, ErrorCode::UnknownMemberId, member_id);
            }
        }
    }

    fn join_response(&self, member_id: &str) -> JoinGroupResponse {
        let is_leader = self.leader_id.as_deref() == Some(member_id);
        let members = if is_leader {
            self.members
                .values()
                .map(|member| JoinGroupMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata_for(self.protocol_name.as_deref()),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinGroupResponse {
            error_code: ErrorCode::None,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
        }
    }

    fn rebalance_timeout_ms(&self) -> u64 {
        self.members
            .values()
            .map(|member| u64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    fn prepare_rebalance(&mut self, now_ms: u64, effects: &mut Effects) {
        if self.state == GroupState::CompletingRebalance {
            // The assignment being completed is void; its waiters must rejoin.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(waiter) = member.sync_waiter.take() {
                    effects.sync_error(waiter, ErrorCode::RebalanceInProgress);
                }
            }
        }
        let initial = self.state == GroupState::Empty && self.initial_rebalance_delay_ms > 0;
        self.state = GroupState::PreparingRebalance;
        self.sync_deadline_ms = None;
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        if initial {
            let limit = now_ms + rebalance_timeout_ms;
            self.initial_join_limit_ms = Some(limit);
            self.join_deadline_ms = Some((now_ms + self.initial_rebalance_delay_ms).min(limit));
        } else {
            self.initial_join_limit_ms = None;
            self.join_deadline_ms = Some(now_ms + rebalance_timeout_ms);
            self.try_complete_join(now_ms, effects);
        }
    }

    /// Completes the join early once every known member has joined (outside the initial
    /// delay, which waits for members the group does not know yet).
    fn try_complete_join(&mut self, now_ms: u64, effects: &mut Effects) {
        if self.state != GroupState::PreparingRebalance || self.initial_join_limit_ms.is_some() {
            return;
        }
        let all_joined = self.pending.is_empty()
            && self
                .members
                .values()
                .all(|member| member.join_waiter.is_some());
        if all_joined {
            self.complete_join(now_ms, effects);
        }
    }

    fn complete_join(&mut self, now_ms: u64, effects: &mut Effects) {
        assert_eq!(self.state, GroupState::PreparingRebalance);
        let missing: Vec<String> = self
            .members
            .values()
            .filter(|member| member.join_waiter.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in missing {
            self.forget_member(&member_id, effects);
        }
        self.join_deadline_ms = None;
        self.initial_join_limit_ms = None;
        self.generation_id = next_generation(self.generation_id);
        if self.members.is_empty() {
            // The protocol type stays, as in Kafka: an empty consumer group is still listed as
            // one, and the next member to join sets it again anyway.
            self.state = GroupState::Empty;
            self.protocol_name = None;
            self.leader_id = None;
            effects.persist = true;
            return;
        }
        self.protocol_name = self.select_protocol();
        if !self
            .leader_id
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.state = GroupState::CompletingRebalance;
        self.sync_deadline_ms = Some(now_ms + self.rebalance_timeout_ms());
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let response = self.join_response(&member_id);
            let member = self.members.get_mut(&member_id).expect("listed above");
            member.touch(now_ms);
            if let Some(waiter) = member.join_waiter.take() {
                effects.replies.push((waiter, Reply::Join(response)));
            }
        }
    }

    /// The protocol every member offers that most members prefer (ties: the first member's
    /// preference order).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|protocol| protocol.name.as_str())
            .filter(|name| {
                self.members.values().all(|member| {
                    member
                        .protocols
                        .iter()
                        .any(|protocol| protocol.name == *name)
                })
            })
            .collect();
        let votes = |candidate: &str| {
            self.members
                .values()
                .filter(|member| {
                    member
                        .protocols
                        .iter()
                        .find(|protocol| candidates.contains(&protocol.name.as_str()))
                        .is_some_and(|protocol| protocol.name == candidate)
                })
                .count()
        };
        let mut best: Option<(&str, usize)> = None;
        for candidate in &candidates {
            let count = votes(candidate);
            if best.is_none_or(|(_, best_count)| count > best_count) {
                best = Some((candidate, count));
            }
        }
        best.map(|(name, _)| name.to_string())
    }

    // ---- sync, heartbeat, commit checks ------------------------------------------------

    /// Checks that the request comes from the current incarnation of a current member.
    fn check_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if let Some(instance) = group_instance_id {
            if let Some(current) = self.instances.get(instance) {
                if current != member_id {
                    return Err(ErrorCode::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ErrorCode::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ErrorCode::IllegalGeneration);
        }
        Ok(())
    }

    pub fn sync(&mut self, waiter: WaiterId, request: &SyncGroupRequest, now_ms: u64) -> Effects {
        let mut effects = Effects::default();
        if let Err(code) = self.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ) {
            effects.sync_error(waiter, code);
            return effects;
        }
        let type_mismatch = request
            .protocol_type
            .as_ref()
            .is_some_and(|name| Some(name) != self.protocol_type.as_ref());
        let name_mismatch = request
            .protocol_name
            .as_ref()
            .is_some_and(|name| Some(name) != self.protocol_name.as_ref());
        if type_mismatch || name_mismatch {
            effects.sync_error(waiter, ErrorCode::InconsistentGroupProtocol);
            return effects;
        }
        let is_leader = self.leader_id.as_deref() == Some(request.member_id.as_str());
        let state = self.state;
        let member = self
            .members
            .get_mut(&request.member_id)
            .expect("check_member found it");
        member.touch(now_ms);
        match state {
            GroupState::PreparingRebalance => {
                effects.sync_error(waiter, ErrorCode::RebalanceInProgress);
            }
            GroupState::Stable => {
                let response = self.sync_response(&request.member_id);
                effects.replies.push((waiter, Reply::Sync(response)));
            }
            GroupState::CompletingRebalance => {
                if let Some(old_waiter) = member.sync_waiter.replace(waiter) {
                    effects.sync_error(old_waiter, ErrorCode::RebalanceInProgress);
                }
                if is_leader {
                    self.complete_sync(request, &mut effects);
                }
            }
            GroupState::Empty | GroupState::Dead => {
                effects.sync_error(waiter, ErrorCode::UnknownMemberId);
            }
        }
        effects
    }

    /// The leader's assignment arrived: every member gets its part (members the leader did not
    /// mention get an empty one) and the group is stable.
    fn complete_sync(&mut self, request: &SyncGroupRequest, effects: &mut Effects) {
        let given: HashMap<&str, &Bytes> = request
            .assignments
            .iter()
            .map(|assignment| (assignment.member_id.as_str(), &assignment.assignment))
            .collect();
        for member in self.members.values_mut() {
            member.assignment = given
                .get(member.member_id.as_str())
                .map(|bytes| (*bytes).clone())
                .unwrap_or_default();
        }
        self.state = GroupState::Stable;
        self.sync_deadline_ms = None;
        effects.persist = true;
        let member_ids: Vec<String> = self.members.keys().cloned().collect();
        for member_id in member_ids {
            let response = self.sync_response(&member_id);
            let member = self.members.get_mut(&member_id).expect("listed above");
            if let Some(waiter) = member.sync_waiter.take() {
                effects.replies.push((waiter, Reply::Sync(response)));
            }
        }
    }

    fn sync_response(&self, member_id: &str) -> SyncGroupResponse {
        SyncGroupResponse {
            error_code: ErrorCode::None,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment: self
                .members
                .get(member_id)
                .map(|member| member.assignment.clone())
                .unwrap_or_default(),
        }
    }

    /// Keeps the member's session alive; `RebalanceInProgress` tells it to rejoin.
    pub fn heartbeat(&mut self, request: &HeartbeatRequest, now_ms: u64) -> ErrorCode {
        if let Err(code) = self.check_member(
            &request.member_id,
            request.group_instance_id.as_deref(),
            request.generation_id,
        ) {
            return code;
        }
        if let Some(member) = self.members.get_mut(&request.member_id) {
            member.touch(now_ms);
        }
        match self.state {
            GroupState::PreparingRebalance => ErrorCode::RebalanceInProgress,
            GroupState::CompletingRebalance | GroupState::Stable => ErrorCode::None,
            GroupState::Empty | GroupState::Dead => ErrorCode::UnknownMemberId,
        }
    }

    /// Whether an offset commit may proceed. A commit from outside the membership
    /// ([`GENERATION_NONE`](spate_protocol::api::GENERATION_NONE), with no member id or, as
    /// Kafka, any) is accepted only while the group is `Empty`; a member's commit must carry the current generation, and is
    /// refused while the group waits for its new assignment. During `PreparingRebalance` the
    /// current generation may still commit: that is how a member commits what it processed
    /// before giving its partitions up.
    pub fn check_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), ErrorCode> {
        // As Kafka: without a generation, any member id (even a stale one) may commit into
        // an empty group; into a group with members only as one of them.
        if generation_id < 0 && (member_id.is_empty() || self.state == GroupState::Empty) {
            return match self.state {
                GroupState::Dead => Err(ErrorCode::CoordinatorNotAvailable),
                // Only `Empty`, as Kafka: a group rebalancing with no members yet may still be
                // restored after a restart with the members of its last written generation,
                // whose commits would then overwrite this one.
                GroupState::Empty => Ok(()),
                _ => Err(ErrorCode::NonEmptyGroup),
            };
        }
        self.check_member(member_id, group_instance_id, generation_id)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(ErrorCode::RebalanceInProgress);
        }
        if let Some(member) = self.members.get_mut(member_id) {
            member.touch(now_ms);
        }
        Ok(())
    }

    /// A transactional offset commit's check (TxnOffsetCommit, KIP-447), as Kafka's
    /// `validateOffsetCommit` with `isTransactional`: without a generation, member id and
    /// instance id it is accepted whatever the state (TxnOffsetCommit before v3 names none);
    /// with any of them the member must be the group's at its generation. A rebalance in
    /// progress does not refuse it: the transaction decides, and a member of an older
    /// generation is fenced by ILLEGAL_GENERATION.
    pub fn check_transactional_commit(
        &mut self,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: u64,
    ) -> Result<(), ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if generation_id < 0 && self.state == GroupState::Empty {
            return Ok(());
        }
        if generation_id < 0 && member_id.is_empty() && group_instance_id.is_none() {
            return Ok(());
        }
        self.check_member(member_id, group_instance_id, generation_id)?;
        if let Some(member) = self.members.get_mut(member_id) {
            member.touch(now_ms);
        }
        Ok(())
    }

    // ---- leave and expiry ----------------------------------------------------------------

    pub fn leave(
        &mut self,
        identities: &[MemberIdentity],
        now_ms: u64,
    ) -> (Vec<MemberResult>, Effects) {
        let mut effects = Effects::default();
        let mut results = Vec::with_capacity(identities.len());
        for identity in identities {
            let error_code = match self.resolve_leaver(identity) {
                Err(code) => code,
                Ok(Leaver::Pending(member_id)) => {
                    self.pending.remove(&member_id);
                    self.try_complete_join(now_ms, &mut effects);
                    ErrorCode::None
                }
                Ok(Leaver::Member(member_id)) => {
                    self.remove_member(&member_id, now_ms, &mut effects);
                    ErrorCode::None
                }
            };
            results.push(MemberResult {
                member_id: identity.member_id.clone(),
                group_instance_id: identity.group_instance_id.clone(),
                error_code,
            });
        }
        (results, effects)
    }

    fn resolve_leaver(&self, identity: &MemberIdentity) -> Result<Leaver, ErrorCode> {
        if self.state == GroupState::Dead {
            return Err(ErrorCode::CoordinatorNotAvailable);
        }
        if let Some(instance) = &identity.group_instance_id {
            return match self.instances.get(instance) {
                None => Err(ErrorCode::UnknownMemberId),
                Some(current)
                    if !identity.member_id.is_empty() && *current != identity.member_id =>
                {
                    Err(ErrorCode::FencedInstanceId)
                }
                Some(current) => Ok(Leaver::Member(current.clone())),
            };
        }
        if self.pending.contains_key(&identity.member_id) {
            Ok(Leaver::Pending(identity.member_id.clone()))
        } else if self.members.contains_key(&identity.member_id) {
            Ok(Leaver::Member(identity.member_id.clone()))
        } else {
            Err(ErrorCode::UnknownMemberId)
        }
    }

    /// Removes a member and moves the group on: a rebalance if it was settled, or an earlier
    /// end to the join if it was waiting for this member.
    fn remove_member(&mut self, member_id: &str, now_ms: u64, effects: &mut Effects) {
        self.forget_member(member_id, effects);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, effects)
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, effects),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// Drops a member and answers whatever it had parked; does not move the group on.
    fn forget_member(&mut self, member_id: &str, effects: &mut Effects) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if let Some(instance) = &member.group_instance_id {
            if self.instances.get(instance).map(String::as_str) == Some(member_id) {
                self.instances.remove(instance);
            }
        }
        if let Some(waiter) = member.join_waiter {
            effects.join_error(waiter, ErrorCode::UnknownMemberId, member_id);
        }
        if let Some(waiter) = member.sync_waiter {
            effects.sync_error(waiter, ErrorCode::UnknownMemberId);
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = None;
        }
    }

    /// Applies every deadline that has passed: silent members and unclaimed member ids are
    /// removed, a join whose time is up completes with the members that made it, and members
    /// that did not sync in time are removed.
    pub fn tick(&mut self, now_ms: u64) -> Effects {
        let mut effects = Effects::default();
        let expired_pending: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now_ms)
            .map(|(member_id, _)| member_id.clone())
            .collect();
        for member_id in expired_pending {
            self.pending.remove(&member_id);
            self.try_complete_join(now_ms, &mut effects);
        }
        let silent: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.is_waiting() && member.session_deadline_ms <= now_ms)
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in silent {
            tracing::info!(group = %self.group_id, member = %member_id, "member session expired");
            self.remove_member(&member_id, now_ms, &mut effects);
        }
        if self.state == GroupState::PreparingRebalance
            && self
                .join_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms)
        {
            self.complete_join(now_ms, &mut effects);
        }
        if self.state == GroupState::CompletingRebalance
            && self
                .sync_deadline_ms
                .is_some_and(|deadline| deadline <= now_ms)
        {
            let unsynced: Vec<String> = self
                .members
                .values()
                .filter(|member| member.sync_waiter.is_none())
                .map(|member| member.member_id.clone())
                .collect();
            tracing::info!(group = %self.group_id, members = unsynced.len(), "members did not sync in time");
            for member_id in unsynced {
                self.remove_member(&member_id, now_ms, &mut effects);
            }
        }
        effects
    }
}

enum Leaver {
    Pending(String),
    Member(String),
}

fn apply_settings(member: &mut Member, settings: JoinSettings) {
    member.group_instance_id = settings.group_instance_id;
    member.client = settings.client;
    member.session_timeout_ms = settings.session_timeout_ms;
    member.rebalance_timeout_ms = settings.rebalance_timeout_ms;
    member.protocols = settings.protocols;
}

/// Generations count up from 1 and wrap before overflowing, skipping the values that mean
/// "no generation".
fn next_generation(generation_id: i32) -> i32 {
    match generation_id.checked_add(1) {
        Some(next) if next > 0 => next,
        _ => 1,
    }
}
