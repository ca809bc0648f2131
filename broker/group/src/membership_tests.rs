//! Tests of the membership state machine (`membership`), driven with explicit times: joins,
//! syncs, heartbeats, leaves, timeouts, generation fencing and static members.

use bytes::Bytes;
use spate_protocol::api::{
    GroupProtocol, GroupState, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    MemberIdentity, SyncGroupAssignment, SyncGroupRequest, SyncGroupResponse, GENERATION_NONE,
};
use spate_protocol::ErrorCode;

use super::limits::GroupLimits;
use super::membership::{ClientInfo, Effects, Group, MemberIdHandshake, Reply, WaiterId};

const SESSION_MS: u32 = 1_000;
const REBALANCE_MS: u32 = 5_000;

struct Harness {
    group: Group,
    limits: GroupLimits,
    now_ms: u64,
    next_waiter: WaiterId,
    next_member: u64,
    /// How this harness's client is given a member id (the native protocol's handshake unless
    /// a test speaks as an old Kafka client).
    handshake: MemberIdHandshake,
}

impl Harness {
    fn new(initial_rebalance_delay_ms: u64) -> Harness {
        let limits = GroupLimits {
            initial_rebalance_delay_ms,
            members_per_group_max: 4,
            ..GroupLimits::default()
        };
        Harness {
            group: Group::new("g", &limits),
            limits,
            now_ms: 0,
            next_waiter: 0,
            next_member: 0,
            handshake: MemberIdHandshake::Required,
        }
    }

    fn waiter(&mut self) -> WaiterId {
        self.next_waiter += 1;
        self.next_waiter
    }

    fn request(member_id: &str, instance: Option<&str>, protocols: &[&str]) -> JoinGroupRequest {
        JoinGroupRequest {
            group_id: "g".into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| GroupProtocol {
                    name: name.to_string(),
                    metadata: Bytes::from(format!("{member_id}:{name}")),
                })
                .collect(),
        }
    }

    fn join_with(&mut self, request: JoinGroupRequest) -> (WaiterId, Effects) {
        let waiter = self.waiter();
        let next_member = &mut self.next_member;
        let effects = self.group.join(
            waiter,
            request,
            ClientInfo {
                client_id: "client".into(),
                client_host: String::new(),
                member_id_handshake: self.handshake,
            },
            &self.limits,
            self.now_ms,
            &mut |client_id| {
                *next_member += 1;
                format!("{client_id}-{next_member}")
            },
        );
        (waiter, effects)
    }

    fn join(&mut self, member_id: &str) -> (WaiterId, Effects) {
        self.join_with(Self::request(member_id, None, &["range"]))
    }

    /// A dynamic member's two-step join; returns its id, its join waiter and the second
    /// join's effects.
    fn join_new(&mut self) -> (String, WaiterId, Effects) {
        let (waiter, effects) = self.join("");
        let response = join_reply(&effects, waiter).expect("answered at once");
        assert_eq!(response.error_code, ErrorCode::MemberIdRequired);
        assert!(!response.member_id.is_empty());
        let (waiter, effects) = self.join(&response.member_id);
        (response.member_id, waiter, effects)
    }

    fn sync(
        &mut self,
        member_id: &str,
        generation_id: i32,
        assignments: &[(&str, &str)],
    ) -> (WaiterId, Effects) {
        let waiter = self.waiter();
        let request = SyncGroupRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(member_id, assignment)| SyncGroupAssignment {
                    member_id: member_id.to_string(),
                    assignment: Bytes::from(assignment.to_string()),
                })
                .collect(),
        };
        let effects = self.group.sync(waiter, &request, self.now_ms);
        (waiter, effects)
    }

    fn heartbeat(&mut self, member_id: &str, generation_id: i32) -> ErrorCode {
        self.heartbeat_as(member_id, None, generation_id)
    }

    fn heartbeat_as(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> ErrorCode {
        let request = HeartbeatRequest {
            group_id: "g".into(),
            generation_id,
            member_id: member_id.into(),
            group_instance_id: instance.map(str::to_string),
        };
        self.group.heartbeat(&request, self.now_ms)
    }

    fn advance(&mut self, milliseconds: u64) -> Effects {
        self.now_ms += milliseconds;
        self.group.tick(self.now_ms)
    }

    /// Two members forming a stable group (needs an initial delay, so both land in the first
    /// generation): returns their ids (leader first) and the generation.
    fn stable_pair(&mut self) -> (String, String, i32) {
        assert!(self.limits.initial_rebalance_delay_ms > 0);
        let (first, first_waiter, _) = self.join_new();
        let (second, second_waiter, _) = self.join_new();
        let joined = self.advance(self.limits.initial_rebalance_delay_ms);
        let first_answer = join_reply(&joined, first_waiter).expect("join completed");
        let second_answer = join_reply(&joined, second_waiter).expect("join completed");
        let generation = first_answer.generation_id;
        let leader = first_answer.leader.clone();
        assert_eq!(second_answer.leader, leader);
        let follower = if leader == first {
            second.clone()
        } else {
            first.clone()
        };
        let (follower_waiter, effects) = self.sync(&follower, generation, &[]);
        assert!(effects.replies.is_empty(), "followers wait for the leader");
        let assignments = [
            (leader.as_str(), "leader-part"),
            (follower.as_str(), "follower-part"),
        ];
        let (leader_waiter, effects) = self.sync(&leader, generation, &assignments);
        assert!(effects.persist);
        let leader_part = sync_reply(&effects, leader_waiter).unwrap().assignment;
        let follower_part = sync_reply(&effects, follower_waiter).unwrap().assignment;
        assert_eq!(leader_part, Bytes::from("leader-part"));
        assert_eq!(follower_part, Bytes::from("follower-part"));
        assert_eq!(self.group.state(), GroupState::Stable);
        (leader, follower, generation)
    }
}

fn join_reply(effects: &Effects, waiter: WaiterId) -> Option<JoinGroupResponse> {
    effects.replies.iter().find_map(|(id, reply)| match reply {
        Reply::Join(response) if *id == waiter => Some(response.clone()),
        _ => None,
    })
}

fn sync_reply(effects: &Effects, waiter: WaiterId) -> Option<SyncGroupResponse> {
    effects.replies.iter().find_map(|(id, reply)| match reply {
        Reply::Sync(response) if *id == waiter => Some(response.clone()),
        _ => None,
    })
}

#[test]
fn a_dynamic_members_first_join_is_answered_with_a_member_id_to_join_again_with() {
    let mut harness = Harness::new(0);
    let (waiter, effects) = harness.join("");
    let response = join_reply(&effects, waiter).unwrap();
    assert_eq!(response.error_code, ErrorCode::MemberIdRequired);
    assert_eq!(
        harness.group.member_count(),
        0,
        "not a member until it joins with the id"
    );
    assert!(!harness.group.is_empty(), "the id is reserved");
    let (waiter, effects) = harness.join(&response.member_id);
    let joined = join_reply(&effects, waiter).expect("alone: the join completes at once");
    assert_eq!(joined.error_code, ErrorCode::None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, response.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 1, "the leader sees every member");
    assert_eq!(harness.group.state(), GroupState::CompletingRebalance);
}

#[test]
fn a_client_without_the_member_id_handshake_is_joined_at_once_under_a_new_id() {
    let mut harness = Harness::new(0);
    harness.handshake = MemberIdHandshake::Skipped;
    let (waiter, effects) = harness.join("");
    let joined = join_reply(&effects, waiter).expect("alone: the join completes at once");
    assert_eq!(joined.error_code, ErrorCode::None);
    assert!(
        !joined.member_id.is_empty(),
        "the answer carries the new id"
    );
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
    assert_eq!(harness.group.member_count(), 1);
    // The id works like any other: the member syncs and heartbeats with it.
    let (waiter, effects) = harness.sync(&joined.member_id, 1, &[(&joined.member_id, "all")]);
    assert_eq!(
        sync_reply(&effects, waiter).unwrap().assignment,
        Bytes::from("all")
    );
    assert_eq!(harness.heartbeat(&joined.member_id, 1), ErrorCode::None);
}

#[test]
fn a_second_client_without_the_handshake_rebalances_the_group_and_both_get_the_new_generation() {
    let mut harness = Harness::new(0);
    let (leader, leader_waiter, effects) = harness.join_new();
    let first = join_reply(&effects, leader_waiter).unwrap();
    harness.sync(&leader, first.generation_id, &[(&leader, "all")]);
    assert_eq!(harness.group.state(), GroupState::Stable);
    harness.handshake = MemberIdHandshake::Skipped;
    let (newcomer_waiter, effects) = harness.join("");
    assert!(
        effects.replies.is_empty(),
        "the new member waits for the known one to rejoin"
    );
    assert_eq!(harness.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        harness.group.member_count(),
        2,
        "a member without a handshake"
    );
    assert_eq!(
        harness.heartbeat(&leader, first.generation_id),
        ErrorCode::RebalanceInProgress
    );
    let (rejoin_waiter, effects) = harness.join(&leader);
    let leader_answer = join_reply(&effects, rejoin_waiter).unwrap();
    let newcomer_answer = join_reply(&effects, newcomer_waiter).unwrap();
    assert_eq!(leader_answer.generation_id, first.generation_id + 1);
    assert_eq!(newcomer_answer.generation_id, first.generation_id + 1);
    assert_eq!(newcomer_answer.error_code, ErrorCode::None);
    assert_ne!(newcomer_answer.member_id, leader);
    assert_eq!(leader_answer.members.len(), 2, "the leader sees both");
    assert!(newcomer_answer.members.is_empty(), "a follower sees none");
}

#[test]
fn a_full_group_refuses_a_client_without_the_handshake_before_giving_it_an_id() {
    let mut harness = Harness::new(0);
    harness.handshake = MemberIdHandshake::Skipped;
    for _ in 0..harness.limits.members_per_group_max {
        harness.join("");
    }
    let (waiter, effects) = harness.join("");
    let refused = join_reply(&effects, waiter).unwrap();
    assert_eq!(refused.error_code, ErrorCode::GroupMaxSizeReached);
    assert!(refused.member_id.is_empty());
    assert_eq!(
        harness.group.member_count(),
        harness.limits.members_per_group_max
    );
}

#[test]
fn an_unclaimed_member_id_expires_after_the_session_timeout() {
    let mut harness = Harness::new(0);
    harness.join("");
    assert!(!harness.group.is_empty());
    harness.advance(u64::from(SESSION_MS));
    assert!(harness.group.is_empty());
}

#[test]
fn the_initial_delay_gathers_members_that_join_together_into_one_generation() {
    let mut harness = Harness::new(300);
    let (_, first_waiter, effects) = harness.join_new();
    assert!(
        join_reply(&effects, first_waiter).is_none(),
        "waits for the delay"
    );
    harness.advance(200);
    let (_, second_waiter, effects) = harness.join_new();
    assert!(effects.replies.is_empty());
    // The second member pushed the deadline out: 200 ms later it has not passed yet.
    let effects = harness.advance(200);
    assert!(effects.replies.is_empty());
    let effects = harness.advance(100);
    let first = join_reply(&effects, first_waiter).unwrap();
    let second = join_reply(&effects, second_waiter).unwrap();
    assert_eq!(first.generation_id, 1);
    assert_eq!(second.generation_id, 1);
    assert_eq!(harness.group.member_count(), 2);
}

#[test]
fn the_initial_delay_never_runs_past_the_rebalance_timeout() {
    let mut harness = Harness::new(3_000);
    let (_, waiter, _) = harness.join_new();
    let mut completed = None;
    for _ in 0..10 {
        let effects = harness.advance(1_000);
        if let Some(response) = join_reply(&effects, waiter) {
            completed = Some((harness.now_ms, response));
            break;
        }
        // Keep new members arriving; each would push the delay out.
        if harness.group.member_count() < 3 {
            harness.join_new();
        }
    }
    let (at_ms, response) = completed.expect("the join completed");
    assert!(at_ms <= u64::from(REBALANCE_MS), "completed at {at_ms} ms");
    assert_eq!(response.error_code, ErrorCode::None);
}

#[test]
fn the_leaders_sync_hands_every_member_its_assignment_and_asks_for_a_record() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    // A sync in the stable state gets the current assignment back at once.
    let (waiter, effects) = harness.sync(&follower, generation, &[]);
    assert_eq!(
        sync_reply(&effects, waiter).unwrap().assignment,
        Bytes::from("follower-part")
    );
    let record = harness.group.to_record();
    assert_eq!(record.generation_id, generation);
    assert_eq!(record.leader.as_deref(), Some(leader.as_str()));
    assert_eq!(record.members.len(), 2);
}

#[test]
fn a_new_member_starts_a_rebalance_that_heartbeats_announce_and_that_waits_for_known_members() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let (newcomer, newcomer_waiter, effects) = harness.join_new();
    assert!(effects.replies.is_empty());
    assert_eq!(harness.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        harness.heartbeat(&leader, generation),
        ErrorCode::RebalanceInProgress
    );
    let (leader_waiter, effects) = harness.join(&leader);
    assert!(
        effects.replies.is_empty(),
        "the follower has not rejoined yet"
    );
    let (follower_waiter, effects) = harness.join(&follower);
    let answers = [leader_waiter, follower_waiter, newcomer_waiter]
        .map(|waiter| join_reply(&effects, waiter).unwrap());
    for answer in &answers {
        assert_eq!(answer.error_code, ErrorCode::None);
        assert_eq!(answer.generation_id, generation + 1);
        assert_eq!(answer.leader, leader, "the leader keeps its role");
    }
    assert_eq!(answers[0].members.len(), 3);
    assert!(answers[1].members.is_empty());
    assert_eq!(harness.group.member_count(), 3);
    let _ = newcomer;
}

#[test]
fn a_member_that_does_not_rejoin_within_the_rebalance_timeout_is_removed() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let (_, newcomer_waiter, _) = harness.join_new();
    let (leader_waiter, _) = harness.join(&leader);
    // The follower keeps heartbeating but never rejoins.
    for _ in 0..(REBALANCE_MS / 500) {
        assert_eq!(
            harness.heartbeat(&follower, generation),
            ErrorCode::RebalanceInProgress
        );
        let effects = harness.advance(500);
        if !effects.replies.is_empty() {
            assert!(join_reply(&effects, leader_waiter).is_some());
            assert!(join_reply(&effects, newcomer_waiter).is_some());
            break;
        }
    }
    assert_eq!(harness.group.state(), GroupState::CompletingRebalance);
    assert_eq!(harness.group.member_count(), 2);
    assert_eq!(
        harness.heartbeat(&follower, generation),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn a_silent_member_is_evicted_after_its_session_timeout_and_the_rest_rebalance() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    harness.advance(u64::from(SESSION_MS) / 2);
    assert_eq!(harness.heartbeat(&leader, generation), ErrorCode::None);
    assert_eq!(harness.group.state(), GroupState::Stable);
    // The follower has now been silent for longer than its session.
    harness.advance(u64::from(SESSION_MS) / 2 + 100);
    assert_eq!(harness.group.member_count(), 1);
    assert_eq!(
        harness.heartbeat(&follower, generation),
        ErrorCode::UnknownMemberId
    );
    assert_eq!(
        harness.heartbeat(&leader, generation),
        ErrorCode::RebalanceInProgress
    );
}

#[test]
fn the_last_member_to_leave_empties_the_group_and_bumps_the_generation() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let (results, _) = harness.group.leave(
        &[MemberIdentity {
            member_id: follower.clone(),
            group_instance_id: None,
        }],
        harness.now_ms,
    );
    assert_eq!(results[0].error_code, ErrorCode::None);
    assert_eq!(harness.group.state(), GroupState::PreparingRebalance);
    let (results, effects) = harness.group.leave(
        &[
            MemberIdentity {
                member_id: leader.clone(),
                group_instance_id: None,
            },
            MemberIdentity {
                member_id: "stranger".into(),
                group_instance_id: None,
            },
        ],
        harness.now_ms,
    );
    assert_eq!(results[0].error_code, ErrorCode::None);
    assert_eq!(results[1].error_code, ErrorCode::UnknownMemberId);
    assert!(effects.persist, "the empty group is recorded");
    assert_eq!(harness.group.state(), GroupState::Empty);
    assert_eq!(harness.group.generation_id(), generation + 1);
}

#[test]
fn commits_from_an_old_generation_or_an_unknown_member_are_refused() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let now = harness.now_ms;
    assert_eq!(
        harness.group.check_commit(generation, &leader, None, now),
        Ok(())
    );
    assert_eq!(
        harness
            .group
            .check_commit(generation - 1, &leader, None, now),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        harness.group.check_commit(generation, "zombie", None, now),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        harness.group.check_commit(GENERATION_NONE, "", None, now),
        Err(ErrorCode::NonEmptyGroup),
        "no commits from outside while the group has members"
    );
    // During the next rebalance the current generation may still commit what it processed;
    // once the join completes, the old generation is fenced.
    harness.join_new();
    assert_eq!(harness.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        harness.group.check_commit(generation, &follower, None, now),
        Ok(())
    );
    harness.join(&leader);
    harness.join(&follower);
    assert_eq!(harness.group.state(), GroupState::CompletingRebalance);
    assert_eq!(
        harness
            .group
            .check_commit(generation + 1, &follower, None, now),
        Err(ErrorCode::RebalanceInProgress),
        "no commits before the new assignment arrives"
    );
    assert_eq!(
        harness.group.check_commit(generation, &follower, None, now),
        Err(ErrorCode::IllegalGeneration)
    );
}

/// Kafka's `validateOffsetCommit` with `isTransactional`: no REBALANCE_IN_PROGRESS, and a
/// commit naming no generation, member or instance (TxnOffsetCommit v0-v2) is taken whatever
/// the group's state.
#[test]
fn transactional_commits_follow_kafkas_checks_for_them() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let now = harness.now_ms;
    let group = &mut harness.group;
    assert_eq!(
        group.check_transactional_commit(generation, &leader, None, now),
        Ok(())
    );
    assert_eq!(
        group.check_transactional_commit(generation - 1, &leader, None, now),
        Err(ErrorCode::IllegalGeneration)
    );
    assert_eq!(
        group.check_transactional_commit(generation, "zombie", None, now),
        Err(ErrorCode::UnknownMemberId)
    );
    assert_eq!(
        group.check_transactional_commit(GENERATION_NONE, "", None, now),
        Ok(()),
        "a producer outside the membership (TxnOffsetCommit before v3)"
    );
    assert_eq!(
        group.check_transactional_commit(GENERATION_NONE, &leader, None, now),
        Err(ErrorCode::IllegalGeneration),
        "a member id without its generation"
    );
    harness.join_new();
    harness.join(&leader);
    harness.join(&follower);
    assert_eq!(harness.group.state(), GroupState::CompletingRebalance);
    assert_eq!(
        harness
            .group
            .check_transactional_commit(generation + 1, &follower, None, now),
        Ok(()),
        "no REBALANCE_IN_PROGRESS for a transactional commit"
    );
    assert_eq!(
        harness
            .group
            .check_transactional_commit(generation, &follower, None, now),
        Err(ErrorCode::IllegalGeneration)
    );
}

#[test]
fn commits_from_outside_are_accepted_while_the_group_has_no_members() {
    let mut harness = Harness::new(0);
    assert_eq!(
        harness.group.check_commit(GENERATION_NONE, "", None, 0),
        Ok(())
    );
}

#[test]
fn a_restarted_static_member_takes_its_place_back_without_a_rebalance() {
    let mut harness = Harness::new(100);
    let (static_waiter, _) =
        harness.join_with(Harness::request("", Some("instance-a"), &["range"]));
    let (dynamic, _, _) = harness.join_new();
    let effects = harness.advance(100);
    let static_answer = join_reply(&effects, static_waiter).expect("both joined");
    let generation = static_answer.generation_id;
    let old_static = static_answer.member_id.clone();
    let leader = static_answer.leader.clone();
    let assignments = [
        (old_static.as_str(), "a-part"),
        (dynamic.as_str(), "b-part"),
    ];
    let follower = if leader == dynamic {
        old_static.clone()
    } else {
        dynamic.clone()
    };
    harness.sync(&follower, generation, &[]);
    harness.sync(&leader, generation, &assignments);
    assert_eq!(harness.group.state(), GroupState::Stable);

    // The static member restarts: a new process, no member id, the same instance id.
    let (waiter, effects) = harness.join_with(Harness::request("", Some("instance-a"), &["range"]));
    let rejoined = join_reply(&effects, waiter).expect("answered at once");
    assert_eq!(rejoined.error_code, ErrorCode::None);
    assert_eq!(rejoined.generation_id, generation, "no new generation");
    assert_ne!(rejoined.member_id, old_static);
    assert_eq!(harness.group.state(), GroupState::Stable);
    assert_eq!(
        harness.heartbeat(&dynamic, generation),
        ErrorCode::None,
        "the others see no rebalance"
    );
    let (waiter, effects) = harness.sync(&rejoined.member_id, generation, &[]);
    assert_eq!(
        sync_reply(&effects, waiter).unwrap().assignment,
        Bytes::from("a-part")
    );
    // The previous incarnation is fenced.
    assert_eq!(
        harness.heartbeat_as(&old_static, Some("instance-a"), generation),
        ErrorCode::FencedInstanceId
    );
    assert_eq!(
        harness
            .group
            .check_commit(generation, &old_static, Some("instance-a"), harness.now_ms),
        Err(ErrorCode::FencedInstanceId)
    );
}

#[test]
fn a_full_group_refuses_new_members() {
    let mut harness = Harness::new(0);
    for _ in 0..harness.limits.members_per_group_max {
        harness.join("");
    }
    let (waiter, effects) = harness.join("");
    assert_eq!(
        join_reply(&effects, waiter).unwrap().error_code,
        ErrorCode::GroupMaxSizeReached
    );
}

#[test]
fn joins_with_bad_timeouts_or_protocols_are_refused() {
    let mut harness = Harness::new(0);
    let mut short = Harness::request("", None, &["range"]);
    short.session_timeout_ms = harness.limits.session_timeout_ms_min - 1;
    let (waiter, effects) = harness.join_with(short);
    assert_eq!(
        join_reply(&effects, waiter).unwrap().error_code,
        ErrorCode::InvalidSessionTimeout
    );
    let (waiter, effects) = harness.join_with(Harness::request("", None, &[]));
    assert_eq!(
        join_reply(&effects, waiter).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol
    );

    harness.join_new();
    let (waiter, effects) = harness.join_with(Harness::request("", None, &["sticky"]));
    assert_eq!(
        join_reply(&effects, waiter).unwrap().error_code,
        ErrorCode::InconsistentGroupProtocol,
        "no protocol in common with the current member"
    );
}

#[test]
fn the_chosen_protocol_is_one_every_member_offers() {
    let mut harness = Harness::new(100);
    let join_twice = |harness: &mut Harness, protocols: &[&str]| {
        let (waiter, effects) = harness.join_with(Harness::request("", None, protocols));
        let member_id = join_reply(&effects, waiter).unwrap().member_id;
        harness
            .join_with(Harness::request(&member_id, None, protocols))
            .0
    };
    let first = join_twice(&mut harness, &["sticky", "range"]);
    let second = join_twice(&mut harness, &["range", "roundrobin"]);
    let effects = harness.advance(100);
    for waiter in [first, second] {
        let answer = join_reply(&effects, waiter).unwrap();
        assert_eq!(answer.protocol_name.as_deref(), Some("range"));
    }
}

#[test]
fn a_leader_that_never_syncs_is_removed_and_the_rest_rebalance() {
    let mut harness = Harness::new(0);
    // Alone, the first member completes generation 1 at once; the second starts generation 2.
    let (first, _, _) = harness.join_new();
    let (second, _, _) = harness.join_new();
    let (first_rejoin, effects) = harness.join(&first);
    let answer = join_reply(&effects, first_rejoin).expect("join completed");
    assert_eq!(answer.generation_id, 2);
    let generation = answer.generation_id;
    let leader = answer.leader.clone();
    let follower = if leader == first {
        second.clone()
    } else {
        first.clone()
    };
    let (follower_waiter, _) = harness.sync(&follower, generation, &[]);
    let effects = harness.advance(u64::from(REBALANCE_MS));
    let answer = sync_reply(&effects, follower_waiter).expect("the waiting follower is told");
    assert_eq!(answer.error_code, ErrorCode::RebalanceInProgress);
    assert_eq!(harness.group.state(), GroupState::PreparingRebalance);
    assert_eq!(
        harness.heartbeat(&leader, generation),
        ErrorCode::UnknownMemberId
    );
}

#[test]
fn a_restored_group_is_stable_with_its_generation_members_and_assignments() {
    let mut harness = Harness::new(100);
    let (leader, follower, generation) = harness.stable_pair();
    let record = harness.group.to_record();
    let mut restored = Group::restore("g", &record, &harness.limits, 1_000_000);
    assert_eq!(restored.state(), GroupState::Stable);
    assert_eq!(restored.generation_id(), generation);
    assert_eq!(restored.leader(), Some(leader.as_str()));
    let request = SyncGroupRequest {
        group_id: "g".into(),
        generation_id: generation,
        member_id: follower.clone(),
        ..SyncGroupRequest::default()
    };
    let effects = restored.sync(1, &request, 1_000_000);
    assert_eq!(
        sync_reply(&effects, 1).unwrap().assignment,
        Bytes::from("follower-part")
    );
    // Members that never come back after the restart expire like any silent member.
    let effects = restored.tick(1_000_000 + u64::from(SESSION_MS) + 1);
    assert!(effects.replies.is_empty());
    assert_eq!(restored.member_count(), 0);
}

#[test]
fn the_subscribed_topics_of_native_and_kafka_consumers_are_read_together() {
    use bytes::BufMut;
    use spate_kafka_protocol::kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
    use spate_kafka_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
    use spate_protocol::api::ConsumerSubscription;

    let native = ConsumerSubscription {
        topics: vec!["orders".into()],
        ..ConsumerSubscription::default()
    }
    .encode()
    .unwrap();
    let mut kafka = bytes::BytesMut::new();
    kafka.put_i16(3);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![StrBytes::from_static_str("payments")])
        .encode(&mut kafka, 3)
        .unwrap();
    let mut harness = Harness::new(100);
    for (member_id, metadata) in [("", native), ("", kafka.freeze())] {
        let mut request = Harness::request(member_id, None, &["range"]);
        request.protocols[0].metadata = metadata;
        let (waiter, effects) = harness.join_with(request.clone());
        let id = join_reply(&effects, waiter).unwrap().member_id;
        request.member_id = id;
        harness.join_with(request);
    }
    assert_eq!(harness.group.member_count(), 2);
    let topics = harness
        .group
        .subscribed_topics()
        .expect("both are readable");
    assert_eq!(
        topics.into_iter().collect::<Vec<_>>(),
        ["orders".to_string(), "payments".to_string()]
    );
    // Bytes that are neither: the topics cannot be known.
    let mut request = Harness::request("", None, &["range"]);
    request.protocols[0].metadata = Bytes::from_static(b"\xff\xff garbage");
    let (waiter, effects) = harness.join_with(request.clone());
    request.member_id = join_reply(&effects, waiter).unwrap().member_id;
    harness.join_with(request);
    assert_eq!(harness.group.subscribed_topics(), None);
}
