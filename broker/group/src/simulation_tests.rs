//! Seeded randomized runs of one group's coordinator state, with time passed in, checked against
//! a model after every step (issue #11, "deterministic tests above storage").
//!
//! Simulated clients join (dynamic or static; with the member-id handshake, or without it as
//! Kafka's JoinGroup v0-v3 clients), sync (the leader assigns the partitions of one
//! topic round-robin), heartbeat, consume and commit, leave, stall past their session, crash and
//! rejoin; time advances in random steps with `tick` run at every deadline on the way, as the
//! coordinator's timer does; the coordinator restarts: parked requests die with their
//! connections, and the store and the group are rebuilt from the records written so far, the
//! way `partition::load` does (replay into an `OffsetStore`, then `Group::restore`).
//!
//! Checked after every step: each parked request is answered once, and by a bounded time after
//! it was parked; no two owners hold one partition in the same generation's sync answers; a
//! member of an older generation is refused (`IllegalGeneration`, or `UnknownMemberId` /
//! `FencedInstanceId` once it is no longer a member); the store holds exactly the last
//! acknowledged commit of every partition, also after a restart; and an acknowledged member
//! commit never moves an offset backwards. The real API lets any commit set any offset; here
//! members commit only their own consumed positions, which start at the committed offset when
//! they are given a partition, so a backwards commit can only come from a zombie that got past
//! the fencing. Explicit resets are standalone commits (no member, no generation), which the
//! group takes only while it is `Empty`, and may move an offset anywhere.
//!
//! Transactions (KIP-98, KIP-447): some clients commit their positions inside their producer's
//! transaction instead (`check_transactional_commit`, then a transactional entry in the log)
//! and end it later with a commit or an abort marker, maybe after a rebalance or a coordinator
//! restart; a client that crashes comes back with its producer's epoch bumped, which aborts its
//! open transaction (as the transaction coordinator does at InitProducerId). A client given a
//! partition with an offset pending in a transaction waits until the transaction ends before
//! it starts from the committed offset (OffsetFetch `require_stable`). Checked besides: the
//! committed offsets are exactly those of plain commits and committed transactions, by Kafka's
//! rule (the later record in the log wins), also after a restart; an aborted transaction's
//! offsets are never committed; the partitions with pending offsets are those of open
//! transactions; each transactional entry continues its producer's sequence as the partition
//! expects (0 under a new epoch).
//!
//! A failure names its seed; rerun one case with `SPATE_GROUP_SIM_SEED=<seed>`. The number of
//! cases is `SPATE_GROUP_SIM_CASES` (default below); `SPATE_GROUP_SIM_BASE_SEED` starts them
//! elsewhere to explore new seeds.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use spate_protocol::api::{
    GroupProtocol, GroupState, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
    MemberIdentity, SyncGroupAssignment, SyncGroupRequest, GENERATION_NONE,
};
use spate_protocol::ErrorCode;

use super::limits::GroupLimits;
use super::membership::{ClientInfo, Effects, Group, MemberIdHandshake, Reply, WaiterId};
use super::records::{CommittedOffset, LogRecord};
use super::store::OffsetStore;

/// One entry of the simulated offsets partition's log: what one batch of the real log is.
#[derive(Debug, Clone)]
enum Entry {
    Plain(LogRecord),
    Transactional {
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        records: Vec<LogRecord>,
    },
    Marker {
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
}

/// Applies a log entry as `partition::replay_batch` applies the batch it stands for.
fn replay(store: &mut OffsetStore, entry: &Entry) {
    match entry {
        Entry::Plain(record) => store.apply(record.clone()),
        Entry::Transactional {
            producer_id,
            producer_epoch,
            base_sequence,
            records,
        } => {
            store.open_transaction(
                *producer_id,
                *producer_epoch,
                *base_sequence,
                records.len() as u32,
            );
            for record in records {
                store.apply_transactional(*producer_id, record.clone());
            }
        }
        Entry::Marker {
            producer_id,
            producer_epoch,
            commit,
        } => store.apply_marker(*producer_id, *producer_epoch, *commit),
    }
}

/// Client `index`'s transactional producer id.
fn producer_id_of(client: usize) -> i64 {
    100 + client as i64
}

const CASES_DEFAULT: u64 = 1_000;
const BASE_SEED: u64 = 0x6e0b_0000;
const STEPS: usize = 400;
const GROUP: &str = "g";
const TOPIC: &str = "t";
const PARTITIONS: u32 = 6;
const CLIENTS: usize = 5;
const SESSION_MS: u32 = 1_000;
const REBALANCE_MS: u32 = 3_000;
const PROTOCOL_TYPE: &str = "sim";
const PROTOCOL_NAME: &str = "round-robin";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaiterKind {
    Join,
    Sync,
}

#[derive(Debug)]
struct Parked {
    client: usize,
    kind: WaiterKind,
    parked_at_ms: u64,
    /// The client crashed or the coordinator restarted: the answer goes nowhere, but the group
    /// must still give one.
    orphaned: bool,
    /// The generation and owner name the request was sent with.
    generation_id: i32,
    owner: String,
}

/// One consumer, as it sees itself.
#[derive(Debug, Default)]
struct Client {
    /// Fixed per client: a static member keeps its instance id across crashes.
    instance: Option<String>,
    /// Fixed per client: whether it knows the member-id handshake (the native protocol and
    /// Kafka's JoinGroup v4+) or is joined at its first join (JoinGroup v0-v3).
    handshake: MemberIdHandshake,
    member_id: String,
    /// The generation of its last successful join; `GENERATION_NONE` before one.
    generation_id: i32,
    /// From its join answer: the members to assign to, when it is the leader.
    leader_of: Option<Vec<String>>,
    /// Partitions from its last successful sync answer, with its consumed positions.
    positions: BTreeMap<u32, u64>,
    /// Stops acting until this time (a stall past the session, or a long pause).
    silent_until_ms: u64,
    join_parked: bool,
    sync_parked: bool,
    /// Answers on their way to the client: it acts on stale state until it reads them.
    inbox: Vec<(Reply, i32, String)>,
    /// Fixed per client: it commits inside its producer's transactions.
    transactional: bool,
    /// Its producer's epoch: bumped by each new incarnation.
    producer_epoch: i16,
    /// Assigned partitions with an offset pending in a transaction: the client waits for them
    /// to become stable before it starts there.
    unstable: BTreeSet<u32>,
}

struct Sim {
    rng: StdRng,
    limits: GroupLimits,
    group: Group,
    /// Every entry written, in order: the offsets partition's log.
    log: Vec<Entry>,
    store: OffsetStore,
    now_ms: u64,
    next_waiter: WaiterId,
    next_member: u64,
    parked: BTreeMap<WaiterId, Parked>,
    clients: Vec<Client>,
    /// Model: the committed offset of every partition, with the log position of the record
    /// that wrote it.
    committed: BTreeMap<u32, (u64, usize)>,
    /// Model: offsets pending in each producer's open transaction, with their log positions.
    pending: BTreeMap<i64, BTreeMap<u32, (u64, usize)>>,
    /// Model of the partition's storage: each producer's epoch and next sequence.
    sequences: BTreeMap<i64, (i16, i32)>,
    /// Model: who holds each partition in each generation's sync answers (owner: instance id
    /// for a static member, whose replacement inherits its assignment, else member id).
    owners: BTreeMap<i32, BTreeMap<u32, String>>,
    trace: Vec<String>,
}

impl Sim {
    fn new(seed: u64) -> Sim {
        let mut rng = StdRng::seed_from_u64(seed);
        let limits = GroupLimits {
            initial_rebalance_delay_ms: if rng.gen_bool(0.5) { 0 } else { 500 },
            members_per_group_max: CLIENTS,
            ..GroupLimits::default()
        };
        let clients = (0..CLIENTS)
            .map(|index| Client {
                instance: rng.gen_bool(0.4).then(|| format!("instance-{index}")),
                transactional: rng.gen_bool(0.5),
                handshake: if rng.gen_bool(0.3) {
                    MemberIdHandshake::Skipped
                } else {
                    MemberIdHandshake::Required
                },
                generation_id: GENERATION_NONE,
                ..Client::default()
            })
            .collect();
        Sim {
            rng,
            group: Group::new(GROUP, &limits),
            limits,
            log: Vec::new(),
            store: OffsetStore::default(),
            now_ms: 0,
            next_waiter: 0,
            next_member: 0,
            parked: BTreeMap::new(),
            clients,
            committed: BTreeMap::new(),
            pending: BTreeMap::new(),
            sequences: BTreeMap::new(),
            owners: BTreeMap::new(),
            trace: Vec::new(),
        }
    }

    fn write(&mut self, record: LogRecord) {
        self.append(Entry::Plain(record));
    }

    /// Appends an entry to the log and applies it, as the writer does once it is durable.
    fn append(&mut self, entry: Entry) {
        replay(&mut self.store, &entry);
        self.log.push(entry);
    }

    fn park(&mut self, client: usize, kind: WaiterKind) -> WaiterId {
        self.next_waiter += 1;
        self.parked.insert(
            self.next_waiter,
            Parked {
                client,
                kind,
                parked_at_ms: self.now_ms,
                orphaned: false,
                generation_id: self.clients[client].generation_id,
                owner: self.owner_name(client),
            },
        );
        match kind {
            WaiterKind::Join => self.clients[client].join_parked = true,
            WaiterKind::Sync => self.clients[client].sync_parked = true,
        }
        self.next_waiter
    }

    /// Does what the coordinator does with effects: write the group first, then answer.
    fn apply(&mut self, effects: Effects) {
        if effects.persist {
            let record = self.group.to_record();
            self.write(LogRecord::Group {
                group: GROUP.into(),
                value: Some(record),
            });
        }
        for (waiter, reply) in effects.replies {
            let parked = self
                .parked
                .remove(&waiter)
                .unwrap_or_else(|| panic!("reply to waiter {waiter}, which is not parked"));
            let kind = match reply {
                Reply::Join(_) => WaiterKind::Join,
                Reply::Sync(_) => WaiterKind::Sync,
            };
            assert_eq!(
                kind, parked.kind,
                "waiter {waiter} answered with the wrong kind"
            );
            if !parked.orphaned {
                self.clients[parked.client]
                    .inbox
                    .push((reply, parked.generation_id, parked.owner));
            }
        }
    }

    /// The client reads the answers that reached it.
    fn receive(&mut self, client: usize) {
        for (reply, generation_id, owner) in std::mem::take(&mut self.clients[client].inbox) {
            match reply {
                Reply::Join(response) => self.on_join(client, response),
                Reply::Sync(response) => {
                    self.clients[client].sync_parked = false;
                    self.trace.push(format!(
                        "  sync answer to {client}: {:?} {:?}",
                        response.error_code, response.assignment
                    ));
                    // A client that left the generation since (fenced, rejoining) drops the
                    // late answer, as a real consumer does.
                    let current = self.clients[client].generation_id == generation_id;
                    if response.error_code == ErrorCode::None && !current {
                        self.trace.push(format!(
                            "  dropped: client {client} left generation {generation_id}"
                        ));
                    } else if response.error_code == ErrorCode::None {
                        self.on_assignment(client, generation_id, owner, &response.assignment);
                    } else {
                        self.on_error(client, response.error_code);
                    }
                }
            }
        }
    }

    fn on_join(&mut self, client: usize, response: JoinGroupResponse) {
        self.trace.push(format!(
            "  join answer to {client}: {:?} gen {} member {} leader {}",
            response.error_code, response.generation_id, response.member_id, response.leader
        ));
        let state = &mut self.clients[client];
        state.join_parked = false;
        match response.error_code {
            ErrorCode::None => {
                state.member_id = response.member_id.clone();
                state.generation_id = response.generation_id;
                state.positions.clear();
                state.unstable.clear();
                state.leader_of = (response.leader == response.member_id).then(|| {
                    response
                        .members
                        .iter()
                        .map(|member| member.member_id.clone())
                        .collect()
                });
            }
            ErrorCode::MemberIdRequired => state.member_id = response.member_id,
            code => self.on_error(client, code),
        }
    }

    /// A refusal that means "you are out": forget the membership (a static member keeps its
    /// instance id and rejoins without a member id).
    fn on_error(&mut self, client: usize, code: ErrorCode) {
        let state = &mut self.clients[client];
        match code {
            ErrorCode::UnknownMemberId
            | ErrorCode::FencedInstanceId
            | ErrorCode::IllegalGeneration => {
                state.member_id.clear();
                state.generation_id = GENERATION_NONE;
                state.positions.clear();
                state.unstable.clear();
                state.leader_of = None;
            }
            _ => {
                state.positions.clear();
                state.unstable.clear();
            }
        }
    }

    fn on_assignment(
        &mut self,
        client: usize,
        generation_id: i32,
        owner: String,
        assignment: &Bytes,
    ) {
        let mut positions = BTreeMap::new();
        let mut unstable = BTreeSet::new();
        for partition in assignment.iter().map(|byte| u32::from(*byte)) {
            let holders = self.owners.entry(generation_id).or_default();
            match holders.get(&partition) {
                Some(other) if *other != owner => panic!(
                    "partition {partition} given to {owner} and {other} in generation {generation_id}"
                ),
                _ => {
                    holders.insert(partition, owner.clone());
                }
            }
            // OffsetFetch with require_stable: a pending offset must settle first.
            if self.store.has_pending(GROUP, TOPIC, partition) {
                unstable.insert(partition);
            } else {
                positions.insert(partition, self.committed_offset(partition));
            }
        }
        self.clients[client].positions = positions;
        self.clients[client].unstable = unstable;
    }

    fn committed_offset(&self, partition: u32) -> u64 {
        self.committed
            .get(&partition)
            .map_or(0, |(offset, _)| *offset)
    }

    /// The client asks again (require_stable) for the partitions that were unstable.
    fn refetch(&mut self, client: usize) {
        let unstable = std::mem::take(&mut self.clients[client].unstable);
        for partition in unstable {
            if self.store.has_pending(GROUP, TOPIC, partition) {
                self.clients[client].unstable.insert(partition);
            } else {
                let offset = self.committed_offset(partition);
                self.clients[client].positions.insert(partition, offset);
            }
        }
        self.trace.push(format!(
            "refetch {client}: unstable {:?}",
            self.clients[client].unstable
        ));
    }

    fn owner_name(&self, client: usize) -> String {
        let state = &self.clients[client];
        state
            .instance
            .clone()
            .unwrap_or_else(|| state.member_id.clone())
    }

    fn is_member(&self, member_id: &str) -> bool {
        self.group
            .describe_members()
            .iter()
            .any(|member| member.member_id == member_id)
    }

    fn join_request(&self, client: usize) -> JoinGroupRequest {
        let state = &self.clients[client];
        JoinGroupRequest {
            group_id: GROUP.into(),
            session_timeout_ms: SESSION_MS,
            rebalance_timeout_ms: REBALANCE_MS,
            member_id: state.member_id.clone(),
            group_instance_id: state.instance.clone(),
            protocol_type: PROTOCOL_TYPE.into(),
            // As a Kafka consumer's subscription, the metadata names what the member owns: a
            // restarted static member joins with other bytes than its old incarnation.
            protocols: vec![GroupProtocol {
                name: PROTOCOL_NAME.into(),
                metadata: Bytes::from(format!(
                    "subscription owning {:?}",
                    state.positions.keys().collect::<Vec<_>>()
                )),
            }],
        }
    }

    // ---- steps ---------------------------------------------------------------------------

    fn join(&mut self, client: usize) {
        if self.clients[client].join_parked {
            return;
        }
        let request = self.join_request(client);
        self.trace
            .push(format!("join {client} {:?}", request.member_id));
        // A static member's restart into a stable group of one protocol is no rebalance.
        let restarts_into_stable = request.member_id.is_empty()
            && self.group.state() == GroupState::Stable
            && request.group_instance_id.as_ref().is_some_and(|instance| {
                self.group
                    .describe_members()
                    .iter()
                    .any(|member| member.group_instance_id.as_ref() == Some(instance))
            });
        let generation_before = self.group.generation_id();
        let waiter = self.park(client, WaiterKind::Join);
        let next_member = &mut self.next_member;
        let effects = self.group.join(
            waiter,
            request,
            ClientInfo {
                client_id: format!("client-{client}"),
                client_host: String::new(),
                member_id_handshake: self.clients[client].handshake,
            },
            &self.limits,
            self.now_ms,
            &mut |client_id| {
                *next_member += 1;
                format!("{client_id}-{next_member}")
            },
        );
        if restarts_into_stable {
            assert_eq!(
                (self.group.state(), self.group.generation_id()),
                (GroupState::Stable, generation_before),
                "a static restart into a stable group rebalanced"
            );
        }
        self.apply(effects);
    }

    fn sync(&mut self, client: usize) {
        let state = &self.clients[client];
        if state.sync_parked || state.join_parked || state.generation_id == GENERATION_NONE {
            return;
        }
        // The leader assigns round-robin over the members of its join answer.
        let assignments = state
            .leader_of
            .as_ref()
            .map(|members| {
                members
                    .iter()
                    .enumerate()
                    .map(|(index, member_id)| SyncGroupAssignment {
                        member_id: member_id.clone(),
                        assignment: (0..PARTITIONS)
                            .filter(|partition| *partition as usize % members.len() == index)
                            .map(|partition| partition as u8)
                            .collect::<Vec<u8>>()
                            .into(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let request = SyncGroupRequest {
            group_id: GROUP.into(),
            generation_id: state.generation_id,
            member_id: state.member_id.clone(),
            group_instance_id: state.instance.clone(),
            protocol_type: Some(PROTOCOL_TYPE.into()),
            protocol_name: Some(PROTOCOL_NAME.into()),
            assignments,
        };
        self.trace.push(format!(
            "sync {client} {} gen {}",
            request.member_id, request.generation_id
        ));
        let waiter = self.park(client, WaiterKind::Sync);
        let effects = self.group.sync(waiter, &request, self.now_ms);
        self.apply(effects);
    }

    /// The refusal a request of `client` must get if its generation is not the group's.
    fn expected_fencing(&self, client: usize) -> Option<ErrorCode> {
        let state = &self.clients[client];
        if state.generation_id == self.group.generation_id() {
            return None;
        }
        if self.is_member(&state.member_id) {
            Some(ErrorCode::IllegalGeneration)
        } else {
            None // UnknownMemberId or FencedInstanceId, checked by the caller
        }
    }

    fn check_fenced(&self, client: usize, code: ErrorCode, what: &str) {
        let state = &self.clients[client];
        if state.generation_id == self.group.generation_id() {
            return;
        }
        match self.expected_fencing(client) {
            Some(expected) => assert_eq!(
                code,
                expected,
                "{what} of member {} at generation {} (group at {})",
                state.member_id,
                state.generation_id,
                self.group.generation_id()
            ),
            None => assert!(
                matches!(
                    code,
                    ErrorCode::UnknownMemberId | ErrorCode::FencedInstanceId
                ),
                "{what} of former member {} at generation {} (group at {}) got {code:?}",
                state.member_id,
                state.generation_id,
                self.group.generation_id()
            ),
        }
    }

    fn heartbeat(&mut self, client: usize) {
        let state = &self.clients[client];
        if state.member_id.is_empty() || state.generation_id == GENERATION_NONE {
            return;
        }
        let request = HeartbeatRequest {
            group_id: GROUP.into(),
            generation_id: state.generation_id,
            member_id: state.member_id.clone(),
            group_instance_id: state.instance.clone(),
        };
        let stale = self.clients[client].generation_id != self.group.generation_id();
        let code = self.group.heartbeat(&request, self.now_ms);
        self.trace.push(format!(
            "heartbeat {client} {} -> {code:?}",
            request.member_id
        ));
        if stale {
            self.check_fenced(client, code, "heartbeat");
        }
        match code {
            ErrorCode::None => {}
            // Rejoin with the same id (Kafka's consumer keeps its assignment meanwhile).
            ErrorCode::RebalanceInProgress => self.join(client),
            code => self.on_error(client, code),
        }
    }

    fn consume(&mut self, client: usize) {
        let step = self.rng.gen_range(1..=5);
        for position in self.clients[client].positions.values_mut() {
            *position += step;
        }
    }

    fn commit(&mut self, client: usize) {
        let state = &self.clients[client];
        if state.member_id.is_empty() || state.positions.is_empty() {
            return;
        }
        let (generation_id, member_id) = (state.generation_id, state.member_id.clone());
        let instance = state.instance.clone();
        let positions: Vec<(u32, u64)> = state.positions.iter().map(|(p, o)| (*p, *o)).collect();
        let stale = generation_id != self.group.generation_id();
        let outcome =
            self.group
                .check_commit(generation_id, &member_id, instance.as_deref(), self.now_ms);
        self.trace.push(format!(
            "commit {client} {member_id} gen {generation_id} {positions:?} -> {outcome:?}"
        ));
        if stale {
            let code = outcome.expect_err("a commit of an older generation is refused");
            self.check_fenced(client, code, "commit");
        }
        match outcome {
            Ok(()) => {
                for (partition, offset) in positions {
                    let before = self.committed_offset(partition);
                    assert!(
                        offset >= before,
                        "member {member_id} (generation {generation_id}) moved partition \
                         {partition} back from {before} to {offset}"
                    );
                    self.commit_record(partition, offset);
                }
            }
            Err(ErrorCode::RebalanceInProgress) => {}
            Err(code) => self.on_error(client, code),
        }
    }

    /// An operator's reset: a standalone commit, allowed only while the group is `Empty`.
    fn reset(&mut self) {
        let partition = self.rng.gen_range(0..PARTITIONS);
        let offset = self.rng.gen_range(0..20);
        let had_members = self.group.state() != GroupState::Empty;
        let outcome = self
            .group
            .check_commit(GENERATION_NONE, "", None, self.now_ms);
        self.trace
            .push(format!("reset {partition} to {offset} -> {outcome:?}"));
        if had_members {
            assert_eq!(outcome, Err(ErrorCode::NonEmptyGroup));
        } else {
            assert_eq!(outcome, Ok(()));
            self.commit_record(partition, offset);
        }
    }

    fn offset_record(&self, partition: u32, offset: u64) -> LogRecord {
        LogRecord::Offset {
            group: GROUP.into(),
            topic: TOPIC.into(),
            partition,
            value: Some(CommittedOffset {
                offset,
                metadata: None,
                commit_timestamp_ms: self.now_ms as i64,
            }),
        }
    }

    /// Writes and acknowledges a commit (acknowledged once applied: the record is durable).
    fn commit_record(&mut self, partition: u32, offset: u64) {
        let record = self.offset_record(partition, offset);
        self.write(record);
        self.committed
            .insert(partition, (offset, self.log.len() - 1));
    }

    /// A commit inside the client's transaction (TxnOffsetCommit): checked as Kafka checks
    /// one, written as a transactional entry, pending until the transaction ends.
    fn txn_commit(&mut self, client: usize) {
        let state = &self.clients[client];
        if state.member_id.is_empty() || state.positions.is_empty() {
            return;
        }
        let (generation_id, member_id) = (state.generation_id, state.member_id.clone());
        let instance = state.instance.clone();
        let producer_id = producer_id_of(client);
        let producer_epoch = state.producer_epoch;
        let positions: Vec<(u32, u64)> = state.positions.iter().map(|(p, o)| (*p, *o)).collect();
        let stale = generation_id != self.group.generation_id();
        let outcome = self.group.check_transactional_commit(
            generation_id,
            &member_id,
            instance.as_deref(),
            self.now_ms,
        );
        self.trace.push(format!(
            "txn commit {client} {member_id} gen {generation_id} producer {producer_id}/{producer_epoch} \
             {positions:?} -> {outcome:?}"
        ));
        if stale {
            let code =
                outcome.expect_err("a transactional commit of an older generation is refused");
            self.check_fenced(client, code, "transactional commit");
        }
        if let Err(code) = outcome {
            self.on_error(client, code);
            return;
        }
        let base_sequence = self.store.next_sequence(producer_id, producer_epoch);
        // The partition's storage takes only the sequence that continues the producer's.
        let expected = match self.sequences.get(&producer_id) {
            Some((epoch, next)) if *epoch == producer_epoch => *next,
            _ => 0,
        };
        assert_eq!(
            base_sequence, expected,
            "producer {producer_id} epoch {producer_epoch}: the coordinator's sequence"
        );
        let records: Vec<LogRecord> = positions
            .iter()
            .map(|(partition, offset)| self.offset_record(*partition, *offset))
            .collect();
        let count = records.len() as i32;
        self.append(Entry::Transactional {
            producer_id,
            producer_epoch,
            base_sequence,
            records,
        });
        self.sequences
            .insert(producer_id, (producer_epoch, base_sequence + count));
        let position = self.log.len() - 1;
        let pending = self.pending.entry(producer_id).or_default();
        for (partition, offset) in positions {
            let before = self
                .committed
                .get(&partition)
                .map_or(0, |(offset, _)| *offset);
            assert!(
                offset >= before,
                "member {member_id} (generation {generation_id}) put partition {partition} \
                 back from {before} to {offset} in a transaction"
            );
            pending.insert(partition, (offset, position));
        }
    }

    /// The transaction coordinator writes the marker of the producer's transaction.
    fn end_transaction(&mut self, producer_id: i64, producer_epoch: i16, commit: bool) {
        self.trace.push(format!(
            "end transaction of {producer_id}/{producer_epoch}: {}",
            if commit { "commit" } else { "abort" }
        ));
        self.append(Entry::Marker {
            producer_id,
            producer_epoch,
            commit,
        });
        if let Some((epoch, next)) = self.sequences.get_mut(&producer_id) {
            if *epoch < producer_epoch {
                (*epoch, *next) = (producer_epoch, 0);
            }
        }
        let Some(pending) = self.pending.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for (partition, (offset, position)) in pending {
            match self.committed.get(&partition) {
                Some((_, current)) if *current > position => {}
                current => {
                    let before = current.map_or(0, |(offset, _)| *offset);
                    assert!(
                        offset >= before,
                        "a committed transaction moved partition {partition} back from {before} \
                         to {offset}"
                    );
                    self.committed.insert(partition, (offset, position));
                }
            }
        }
    }

    /// The client ends its own open transaction, mostly with a commit.
    fn end_own_transaction(&mut self, client: usize) {
        let producer_id = producer_id_of(client);
        if self.pending.contains_key(&producer_id) {
            let commit = self.rng.gen_bool(0.8);
            let epoch = self.clients[client].producer_epoch;
            self.end_transaction(producer_id, epoch, commit);
        }
    }

    fn leave(&mut self, client: usize) {
        let state = &self.clients[client];
        if state.member_id.is_empty() && state.instance.is_none() {
            return;
        }
        let identity = MemberIdentity {
            member_id: state.member_id.clone(),
            group_instance_id: state.instance.clone(),
        };
        let (results, effects) = self.group.leave(&[identity], self.now_ms);
        self.trace
            .push(format!("leave {client} -> {:?}", results[0].error_code));
        self.apply(effects);
        let state = &mut self.clients[client];
        state.member_id.clear();
        state.generation_id = GENERATION_NONE;
        state.positions.clear();
        state.unstable.clear();
        state.leader_of = None;
    }

    /// The client process dies: parked requests go nowhere, all it knew is lost (a static
    /// member keeps its instance id from its configuration).
    fn crash(&mut self, client: usize) {
        self.trace.push(format!("crash {client}"));
        for parked in self.parked.values_mut() {
            if parked.client == client {
                parked.orphaned = true;
            }
        }
        let instance = self.clients[client].instance.clone();
        let handshake = self.clients[client].handshake;
        let transactional = self.clients[client].transactional;
        // The new incarnation's InitProducerId bumps the epoch, and the transaction
        // coordinator aborts the old one's open transaction under the new epoch.
        let producer_epoch = self.clients[client].producer_epoch + 1;
        if self.pending.contains_key(&producer_id_of(client)) {
            self.end_transaction(producer_id_of(client), producer_epoch, false);
        }
        self.clients[client] = Client {
            instance,
            handshake,
            transactional,
            producer_epoch,
            generation_id: GENERATION_NONE,
            silent_until_ms: self.now_ms + self.rng.gen_range(0..2 * u64::from(SESSION_MS)),
            ..Client::default()
        };
    }

    fn stall(&mut self, client: usize) {
        let pause_ms = self.rng.gen_range(0..3 * u64::from(SESSION_MS));
        self.trace.push(format!("stall {client} for {pause_ms} ms"));
        self.clients[client].silent_until_ms = self.now_ms + pause_ms;
    }

    /// Time passes; the timer ticks at every deadline on the way.
    fn advance(&mut self, by_ms: u64) {
        let target_ms = self.now_ms + by_ms;
        while let Some(deadline) = self.group.next_deadline_ms() {
            if deadline > target_ms {
                break;
            }
            self.now_ms = self.now_ms.max(deadline);
            let effects = self.group.tick(self.now_ms);
            self.apply(effects);
            if self.group.next_deadline_ms() == Some(deadline) {
                break; // nothing changed; `tick` at the target below
            }
        }
        self.now_ms = target_ms;
        let effects = self.group.tick(self.now_ms);
        self.apply(effects);
    }

    /// The coordinator restarts: parked requests die with their connections, and the state is
    /// rebuilt from the log as `partition::load` does.
    fn restart(&mut self) {
        self.trace.push("restart".into());
        self.parked.clear();
        for client in &mut self.clients {
            client.join_parked = false;
            client.sync_parked = false;
            client.inbox.clear();
        }
        let mut store = OffsetStore::default();
        for entry in &self.log {
            replay(&mut store, entry);
        }
        self.group = match store.group_record(GROUP) {
            Some(record) => Group::restore(GROUP, record, &self.limits, self.now_ms),
            None => Group::new(GROUP, &self.limits),
        };
        self.store = store;
    }

    // ---- checks --------------------------------------------------------------------------

    fn check(&self) {
        for partition in 0..PARTITIONS {
            let stored = self
                .store
                .committed(GROUP, TOPIC, partition)
                .map(|committed| committed.offset);
            assert_eq!(
                stored,
                self.committed.get(&partition).map(|(offset, _)| *offset),
                "partition {partition}: the store's committed offset is not the model's \
                 (acknowledged commits and committed transactions)"
            );
            let pending = self
                .pending
                .values()
                .any(|offsets| offsets.contains_key(&partition));
            assert_eq!(
                self.store.has_pending(GROUP, TOPIC, partition),
                pending,
                "partition {partition}: pending offsets differ from the open transactions'"
            );
        }
        // A join waits at most the rebalance timeout (plus the initial delay) to complete, and a
        // sync at most the rebalance timeout after that.
        let bound_ms = 2 * u64::from(REBALANCE_MS) + self.limits.initial_rebalance_delay_ms;
        for (waiter, parked) in &self.parked {
            assert!(
                self.now_ms <= parked.parked_at_ms + bound_ms,
                "waiter {waiter} ({:?} of client {}) parked at {} ms, unanswered at {} ms",
                parked.kind,
                parked.client,
                parked.parked_at_ms,
                self.now_ms
            );
        }
        if self.group.state() == GroupState::Stable {
            let members = self.group.describe_members();
            let mut held = BTreeSet::new();
            for member in &members {
                for partition in member.assignment.iter() {
                    assert!(
                        held.insert(*partition),
                        "partition {partition} assigned twice in the stable group"
                    );
                }
            }
        }
    }

    /// What a well-behaved consumer does next: read its answers, join, sync, then heartbeat,
    /// consume and commit.
    fn act(&mut self, client: usize) {
        let state = &self.clients[client];
        if !state.inbox.is_empty() && self.rng.gen_bool(0.7) {
            self.receive(client);
        } else if state.join_parked || state.sync_parked {
            self.heartbeat(client);
        } else if state.member_id.is_empty() || state.generation_id == GENERATION_NONE {
            self.join(client);
        } else if !state.unstable.is_empty() && self.rng.gen_bool(0.5) {
            self.refetch(client);
        } else if state.positions.is_empty() && self.rng.gen_bool(0.7) {
            self.sync(client);
        } else {
            match self.rng.gen_range(0..4) {
                0 => self.heartbeat(client),
                1 => self.consume(client),
                2 if self.clients[client].transactional => self.txn_commit(client),
                2 => self.commit(client),
                _ => self.end_own_transaction(client),
            }
        }
    }

    fn step(&mut self) {
        let client = self.rng.gen_range(0..CLIENTS);
        let silent = self.clients[client].silent_until_ms > self.now_ms;
        match self.rng.gen_range(0..100) {
            0..=59 if !silent => self.act(client),
            60..=61 if !silent => self.join(client),
            62..=63 if !silent => self.sync(client),
            64..=65 if !silent => self.heartbeat(client),
            66..=69 if !silent => self.commit(client),
            70..=71 if !silent => self.leave(client),
            72..=73 => self.crash(client),
            74..=75 => self.stall(client),
            76 => self.reset(),
            77 => self.restart(),
            78..=79 if !silent => self.txn_commit(client),
            // A transaction timeout: the coordinator aborts it, with the epoch bumped.
            80 => {
                let producer_id = producer_id_of(client);
                if self.pending.contains_key(&producer_id) {
                    self.clients[client].producer_epoch += 1;
                    let epoch = self.clients[client].producer_epoch;
                    self.end_transaction(producer_id, epoch, false);
                }
            }
            _ => {
                let by_ms = self.rng.gen_range(0..=u64::from(SESSION_MS) / 4);
                self.trace.push(format!("advance {by_ms} ms"));
                self.advance(by_ms);
            }
        }
        self.trace.push(format!(
            "    [{:?} generation {} members {}]",
            self.group.state(),
            self.group.generation_id(),
            self.group.member_count()
        ));
        self.check();
    }
}

fn run_case(seed: u64) {
    let mut sim = Sim::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..STEPS {
            sim.step();
        }
        // Quiet time at the end: every parked request is answered.
        sim.advance(4 * u64::from(REBALANCE_MS));
        sim.check();
        assert!(
            sim.parked.is_empty(),
            "requests still parked after the quiet time"
        );
    }));
    if let Err(panic) = outcome {
        if std::env::var_os("SPATE_GROUP_SIM_TRACE").is_some() {
            eprintln!("{}", sim.trace.join("\n"));
        }
        eprintln!(
            "group simulation failed: rerun with SPATE_GROUP_SIM_SEED={seed} \
             (SPATE_GROUP_SIM_TRACE=1 prints the steps)"
        );
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn seeded_group_simulation_keeps_its_invariants() {
    if let Some(seed) = std::env::var("SPATE_GROUP_SIM_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
    {
        run_case(seed);
        return;
    }
    let cases = std::env::var("SPATE_GROUP_SIM_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES_DEFAULT);
    let base_seed = std::env::var("SPATE_GROUP_SIM_BASE_SEED")
        .ok()
        .and_then(|seed| seed.parse().ok())
        .unwrap_or(BASE_SEED);
    for seed in base_seed..base_seed + cases {
        run_case(seed);
    }
}
