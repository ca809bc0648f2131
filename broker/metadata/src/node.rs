//! [`MetadataNode`]: one broker's member of the metadata quorum, on raft-rs's `RawNode`
//! (`check_quorum` and `pre_vote` on), with its log made durable by `raft_log`.
//!
//! The driver (the broker's shard 0, or the simulation) calls `tick` every `tick_ms`, `step` for
//! each inbound Raft message, `heard_from` for each message's sender, `propose` and
//! `add_learner` on the controller, and `advance` whenever any of those happened: `advance`
//! makes everything Raft asks to persist durable first, then applies committed entries to the
//! image and hands back the messages to send and the outcomes applied (Raft's rule: no message
//! leaves before the state it reports is on disk). `controller_tick` runs the controller's
//! decisions while this node leads.
//!
//! Node ids: Kafka broker ids start at 0, raft-rs ids at 1, so Raft id = node id + 1 here and
//! nowhere else. Ids are non-negative.
//!
//! An `Err` from `advance` (a failed write or fsync) leaves Raft's memory ahead of the disk:
//! the node must be dropped and reopened (the broker stops its metadata driver), never used on.
//!
//! One node lives on one thread (shard 0); nothing here is `Send`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use protobuf::Message as _;
use raft::eraftpb::{
    ConfChange, ConfChangeType, ConfChangeV2, ConfState, EntryType, HardState, Message,
    MessageType, Snapshot,
};
use raft::{RawNode, SnapshotStatus, StateRole};
use spate_protocol::NodeId;
use spate_storage::{FileSystem, SimulationRng};

use crate::commands::{
    decode_entry, encode_command, encode_entry, ApplyOutcome, MetadataCommand, ProposalId,
};
use crate::config::MetadataConfig;
use crate::controller::{controller_decisions, ControllerView};
use crate::error::{ApplyError, MetadataError};
use crate::image::MetadataImage;
use crate::raft_log::{DurableLog, RaftStore};

/// The format version of an encoded image (a snapshot's data).
const IMAGE_FORMAT_VERSION: u16 = 1;

/// What one `advance` produced.
#[derive(Debug, Default)]
pub struct Advance {
    /// Raft messages to send, (destination, protobuf bytes): everything they report is durable.
    pub messages: Vec<(NodeId, Vec<u8>)>,
    /// Entries applied, in order: index, proposer, outcome.
    pub applied: Vec<(u64, Option<ProposalId>, Result<ApplyOutcome, ApplyError>)>,
    /// Whether the image changed (a command applied, or a snapshot installed).
    pub image_changed: bool,
}

/// This node's current leadership, for the controller.
#[derive(Debug, Clone, Copy)]
struct Leadership {
    term: u64,
    began_ms: u64,
    previous_leader: Option<NodeId>,
    /// When preferred leaders were last elected back (the leadership's start at first, so a
    /// new controller waits one interval: brokers it has not heard yet are not judged).
    leader_balance_ms: u64,
}

/// One broker's metadata node. Lives on shard 0.
pub struct MetadataNode<F: FileSystem> {
    id: NodeId,
    config: MetadataConfig,
    raw: RawNode<RaftStore>,
    log: DurableLog<F>,
    image: Arc<MetadataImage>,
    /// The Raft membership as of the applied index (what a snapshot taken now records).
    conf_state: ConfState,
    last_heard_ms: BTreeMap<NodeId, u64>,
    last_other_leader: Option<NodeId>,
    leadership: Option<Leadership>,
    /// Controller decisions proposed and when, so one is not re-proposed every tick.
    decisions_in_flight: BTreeMap<Vec<u8>, u64>,
    learners_in_flight: BTreeMap<NodeId, u64>,
    /// Draws this node's randomized election timeouts (raft-rs draws them from the thread's
    /// random generator; drawing them here makes a seeded simulation reproducible).
    election_rng: SimulationRng,
    /// (term, role) when the election timeout was last drawn.
    drawn_for: Option<(u64, StateRole)>,
}

/// Forwards raft-rs's log lines (slog) to `tracing`: its errors and warnings as such, its info
/// lines (elections, leadership changes) at debug, the rest at trace.
struct TracingDrain {
    node: NodeId,
}

impl slog::Drain for TracingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let node = self.node;
        let message = record.msg();
        match record.level() {
            slog::Level::Critical | slog::Level::Error => {
                tracing::error!(target: "spate_metadata::raft", node, "{message}")
            }
            slog::Level::Warning => {
                tracing::warn!(target: "spate_metadata::raft", node, "{message}")
            }
            slog::Level::Info => tracing::debug!(target: "spate_metadata::raft", node, "{message}"),
            slog::Level::Debug | slog::Level::Trace => {
                tracing::trace!(target: "spate_metadata::raft", node, "{message}")
            }
        }
        Ok(())
    }
}

fn raft_id(node: NodeId) -> u64 {
    debug_assert!(node >= 0);
    node as u64 + 1
}

fn node_of(raft: u64) -> NodeId {
    debug_assert!(raft > 0);
    (raft - 1) as NodeId
}

fn encode_image(image: &MetadataImage) -> Vec<u8> {
    #[derive(serde::Serialize)]
    struct Encoded<'a> {
        version: u16,
        image: &'a MetadataImage,
    }
    serde_json::to_vec(&Encoded {
        version: IMAGE_FORMAT_VERSION,
        image,
    })
    .expect("an image always encodes")
}

fn decode_image(bytes: &[u8]) -> Result<MetadataImage, MetadataError> {
    #[derive(serde::Deserialize)]
    struct Encoded {
        version: u16,
        image: MetadataImage,
    }
    let codec = |reason: String| MetadataError::Codec {
        what: "metadata snapshot",
        reason,
    };
    let encoded: Encoded =
        serde_json::from_slice(bytes).map_err(|error| codec(error.to_string()))?;
    if encoded.version != IMAGE_FORMAT_VERSION {
        return Err(codec(format!("image format version {}", encoded.version)));
    }
    Ok(encoded.image)
}

impl<F: FileSystem> MetadataNode<F> {
    /// Opens the node's log under `directory` (`<data_dir>/metadata`). A node that has no log
    /// yet and is among `bootstrap_voters` starts the quorum with them (every seed computes the
    /// same initial state: a snapshot at index 1, term 1, with those voters); any other new
    /// node starts empty and waits for the controller to add it as a learner.
    pub async fn open(
        file_system: F,
        directory: PathBuf,
        id: NodeId,
        bootstrap_voters: &[NodeId],
        config: MetadataConfig,
    ) -> Result<Self, MetadataError> {
        config.validate().map_err(MetadataError::InvalidConfig)?;
        for node in std::iter::once(&id).chain(bootstrap_voters) {
            if *node < 0 {
                return Err(MetadataError::InvalidNodeId {
                    id: *node,
                    reason: "node ids are non-negative".into(),
                });
            }
        }
        let (mut log, recovered) =
            DurableLog::open(file_system, &directory, config.log_file_bytes_max).await?;
        let mut store = recovered.store;
        if !recovered.existed && bootstrap_voters.contains(&id) {
            let mut snapshot = Snapshot::default();
            let metadata = snapshot.mut_metadata();
            metadata.index = 1;
            metadata.term = 1;
            let voters: BTreeSet<u64> = bootstrap_voters.iter().map(|v| raft_id(*v)).collect();
            metadata.mut_conf_state().voters = voters.into_iter().collect();
            let image = MetadataImage {
                applied_index: 1,
                ..MetadataImage::default()
            };
            snapshot.data = encode_image(&image).into();
            log.persist_snapshot(&snapshot).await?;
            let hard_state = HardState {
                term: 1,
                commit: 1,
                ..HardState::default()
            };
            log.persist_hard_state(&hard_state).await?;
            store.snapshot = snapshot;
            store.hard_state = hard_state;
        }
        let snapshot_metadata = store.snapshot.get_metadata().clone();
        let image = if store.snapshot.data.is_empty() {
            MetadataImage::default()
        } else {
            let mut image = decode_image(&store.snapshot.data)?;
            image.applied_index = snapshot_metadata.index;
            image
        };
        let raft_config = raft::Config {
            id: raft_id(id),
            election_tick: config.election_ticks,
            heartbeat_tick: config.heartbeat_ticks,
            applied: snapshot_metadata.index,
            max_size_per_msg: config.message_entries_bytes_max as u64,
            max_inflight_msgs: config.max_inflight_messages,
            max_uncommitted_size: config.uncommitted_bytes_max as u64,
            check_quorum: true,
            pre_vote: true,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(TracingDrain { node: id }, slog::o!());
        let election_seed = config.election_seed ^ raft_id(id).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let raw = RawNode::new(&raft_config, store, &logger)
            .map_err(|error| MetadataError::Raft(error.to_string()))?;
        Ok(Self {
            id,
            config,
            raw,
            log,
            image: Arc::new(image),
            conf_state: snapshot_metadata.get_conf_state().clone(),
            last_heard_ms: BTreeMap::new(),
            last_other_leader: None,
            leadership: None,
            decisions_in_flight: BTreeMap::new(),
            learners_in_flight: BTreeMap::new(),
            election_rng: SimulationRng::new(election_seed),
            drawn_for: None,
        })
        .map(|mut node: Self| {
            node.observe_leader();
            node
        })
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Advances Raft's clock by one tick (`tick_ms`).
    pub fn tick(&mut self) {
        self.raw.tick();
        self.observe_leader();
    }

    /// Steps one inbound Raft message (protobuf bytes) from `from`.
    pub fn step(&mut self, from: NodeId, bytes: &[u8]) -> Result<(), MetadataError> {
        if bytes.len() > self.config.message_bytes_max {
            return Err(MetadataError::Codec {
                what: "raft message",
                reason: format!(
                    "{} bytes, more than the limit of {}",
                    bytes.len(),
                    self.config.message_bytes_max
                ),
            });
        }
        let message = Message::parse_from_bytes(bytes).map_err(|error| MetadataError::Codec {
            what: "raft message",
            reason: error.to_string(),
        })?;
        if from < 0 || message.from != raft_id(from) || message.to != raft_id(self.id) {
            return Err(MetadataError::Codec {
                what: "raft message",
                reason: format!(
                    "from raft id {} to {}, received from node {from} at node {}",
                    message.from, message.to, self.id
                ),
            });
        }
        if raft::raw_node::is_local_msg(message.get_msg_type()) {
            return Err(MetadataError::Codec {
                what: "raft message",
                reason: "a local message type".into(),
            });
        }
        self.raw
            .step(message)
            .map_err(|error| MetadataError::Raft(error.to_string()))?;
        self.observe_leader();
        Ok(())
    }

    /// Proposes `command` (controller only). Its outcome comes back from a later `advance`,
    /// tagged with `proposal`, once committed and applied here.
    pub fn propose(
        &mut self,
        proposal: ProposalId,
        command: MetadataCommand,
    ) -> Result<(), MetadataError> {
        self.ensure_leader()?;
        let data = encode_entry(Some(proposal), &command);
        if data.len() > self.config.entry_bytes_max {
            return Err(MetadataError::EntryTooLarge {
                bytes: data.len(),
                limit: self.config.entry_bytes_max,
            });
        }
        self.raw
            .propose(Vec::new(), data)
            .map_err(|error| MetadataError::ProposalDropped {
                reason: error.to_string(),
            })
    }

    /// Adds `node` to the Raft configuration as a learner (controller only; a no-op for a
    /// member). raft-rs takes one membership change at a time: a second one while the first is
    /// pending is dropped, and the controller tries again later.
    pub fn add_learner(&mut self, node: NodeId) -> Result<(), MetadataError> {
        self.ensure_leader()?;
        if node < 0 {
            return Err(MetadataError::InvalidNodeId {
                id: node,
                reason: "node ids are non-negative".into(),
            });
        }
        if self.voters().contains(&node) || self.learners().contains(&node) {
            return Ok(());
        }
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::AddLearnerNode);
        change.node_id = raft_id(node);
        self.raw
            .propose_conf_change(Vec::new(), change)
            .map_err(|error| MetadataError::ProposalDropped {
                reason: error.to_string(),
            })
    }

    /// Removes learner `node` from the Raft configuration (controller only; a no-op unless it
    /// is a learner: voters never leave this way).
    pub fn remove_learner(&mut self, node: NodeId) -> Result<(), MetadataError> {
        self.ensure_leader()?;
        if node < 0 || !self.learners().contains(&node) {
            return Ok(());
        }
        let mut change = ConfChange::default();
        change.set_change_type(ConfChangeType::RemoveNode);
        change.node_id = raft_id(node);
        self.raw
            .propose_conf_change(Vec::new(), change)
            .map_err(|error| MetadataError::ProposalDropped {
                reason: error.to_string(),
            })
    }

    fn ensure_leader(&self) -> Result<(), MetadataError> {
        if self.is_leader() {
            Ok(())
        } else {
            Err(MetadataError::NotController {
                leader: self.leader(),
            })
        }
    }

    /// Persists what Raft asks (durably), applies committed entries, and returns the messages
    /// to send and the outcomes. Call after `tick`, `step`, `propose` or `add_learner`.
    pub async fn advance(&mut self) -> Result<Advance, MetadataError> {
        let mut advance = Advance::default();
        if !self.raw.has_ready() {
            return Ok(advance);
        }
        let mut ready = self.raw.ready();
        let mut messages = ready.take_messages();
        if !ready.snapshot().is_empty() {
            let snapshot = ready.snapshot().clone();
            self.install_snapshot(snapshot).await?;
            advance.image_changed = true;
        }
        let committed = ready.take_committed_entries();
        self.apply_entries(committed, &mut advance);
        if !ready.entries().is_empty() {
            let entries = ready.take_entries();
            self.log.append(&entries).await?;
            let store = self.raw.mut_store();
            let first = entries[0].index;
            let keep = (first - store.first_index_value()) as usize;
            store.entries.truncate(keep);
            store.entries.extend(entries);
        }
        if let Some(hard_state) = ready.hs() {
            let hard_state = hard_state.clone();
            self.log.persist_hard_state(&hard_state).await?;
            self.raw.mut_store().hard_state = hard_state;
        }
        messages.extend(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            self.raw.mut_store().hard_state.commit = commit;
        }
        messages.extend(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply_entries(committed, &mut advance);
        self.raw.advance_apply();
        self.maybe_snapshot().await?;
        self.observe_leader();
        for message in &messages {
            if message.get_msg_type() == MessageType::MsgSnapshot {
                // Delivery is not known; the follower's next answer tells. Reporting it sent
                // lets a lost snapshot be retried instead of pausing the follower for good.
                self.raw.report_snapshot(message.to, SnapshotStatus::Finish);
            }
        }
        advance.messages = messages
            .into_iter()
            .map(|message| {
                let bytes = message.write_to_bytes().expect("a raft message encodes");
                (node_of(message.to), bytes)
            })
            .collect();
        Ok(advance)
    }

    async fn install_snapshot(&mut self, snapshot: Snapshot) -> Result<(), MetadataError> {
        if snapshot.data.len() > self.config.snapshot_bytes_max {
            return Err(MetadataError::Codec {
                what: "metadata snapshot",
                reason: format!(
                    "{} bytes, more than the limit of {}",
                    snapshot.data.len(),
                    self.config.snapshot_bytes_max
                ),
            });
        }
        let mut image = decode_image(&snapshot.data)?;
        let metadata = snapshot.get_metadata().clone();
        image.applied_index = metadata.index;
        self.log.persist_snapshot(&snapshot).await?;
        self.log.rewrite_entries(&[]).await?;
        let store = self.raw.mut_store();
        store.hard_state.commit = store.hard_state.commit.max(metadata.index);
        store.hard_state.term = store.hard_state.term.max(metadata.term);
        store.entries.clear();
        store.snapshot = snapshot;
        self.image = Arc::new(image);
        self.conf_state = metadata.get_conf_state().clone();
        Ok(())
    }

    fn apply_entries(&mut self, entries: Vec<raft::eraftpb::Entry>, advance: &mut Advance) {
        for entry in entries {
            let index = entry.index;
            if index <= self.image.applied_index {
                continue; // Covered by a snapshot installed in the same ready.
            }
            let image = Arc::make_mut(&mut self.image);
            match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => image.skip(index),
                EntryType::EntryNormal => {
                    let (proposal, result) = match decode_entry(&entry.data) {
                        Ok(envelope) => (envelope.proposal, image.apply(index, &envelope.command)),
                        Err(error) => {
                            image.skip(index);
                            (None, Err(error))
                        }
                    };
                    debug_assert!(
                        image.check_invariants().is_ok(),
                        "entry {index} broke the image: {:?}",
                        image.check_invariants()
                    );
                    advance.image_changed |= result.is_ok();
                    advance.applied.push((index, proposal, result));
                }
                EntryType::EntryConfChange => {
                    image.skip(index);
                    match ConfChange::parse_from_bytes(&entry.data) {
                        Ok(change) => {
                            let applied = self.raw.apply_conf_change(&change);
                            self.record_conf_change(applied);
                        }
                        Err(error) => {
                            tracing::warn!(index, %error, "undecodable membership change")
                        }
                    }
                }
                EntryType::EntryConfChangeV2 => {
                    image.skip(index);
                    match ConfChangeV2::parse_from_bytes(&entry.data) {
                        Ok(change) => {
                            let applied = self.raw.apply_conf_change(&change);
                            self.record_conf_change(applied);
                        }
                        Err(error) => {
                            tracing::warn!(index, %error, "undecodable membership change")
                        }
                    }
                }
            }
        }
    }

    fn record_conf_change(&mut self, applied: raft::Result<ConfState>) {
        // A refused change (adding a learner twice) is refused the same way on every node.
        match applied {
            Ok(conf_state) => self.conf_state = conf_state,
            Err(error) => tracing::debug!(%error, "membership change refused"),
        }
    }

    /// Takes a snapshot of the image every `snapshot_every_entries` applied entries, and at once
    /// when the membership changed or raft-rs wanted one it could not have (a new learner needs
    /// a snapshot that lists it), and cuts the log behind it.
    async fn maybe_snapshot(&mut self) -> Result<(), MetadataError> {
        let applied = self.image.applied_index;
        let store = self.raw.store();
        let snapshot_index = store.snapshot.get_metadata().index;
        let wanted = store.snapshot_wanted.replace(false)
            || self.conf_state != *store.snapshot.get_metadata().get_conf_state();
        if applied <= snapshot_index
            || (!wanted && applied < snapshot_index + self.config.snapshot_every_entries)
        {
            return Ok(());
        }
        let Some(term) = store.term_of(applied) else {
            return Ok(());
        };
        let data = encode_image(&self.image);
        if data.len() > self.config.snapshot_bytes_max {
            tracing::warn!(
                bytes = data.len(),
                limit = self.config.snapshot_bytes_max,
                "metadata image too large to snapshot; the log keeps growing"
            );
            return Ok(());
        }
        let mut snapshot = Snapshot::default();
        let metadata = snapshot.mut_metadata();
        metadata.index = applied;
        metadata.term = term;
        metadata.set_conf_state(self.conf_state.clone());
        snapshot.data = data.into();
        self.log.persist_snapshot(&snapshot).await?;
        let store = self.raw.mut_store();
        let covered = (applied - store.first_index_value() + 1) as usize;
        store.entries.drain(..covered);
        store.snapshot = snapshot;
        let remaining = store.entries.clone();
        self.log.rewrite_entries(&remaining).await?;
        Ok(())
    }

    /// Also redraws the randomized election timeout whenever raft-rs reset it (a new term or
    /// role), from this node's own seeded generator, in raft-rs's range
    /// `[election_ticks, 2 * election_ticks)`.
    fn observe_leader(&mut self) {
        let now = (self.raw.raft.term, self.raw.raft.state);
        if self.drawn_for != Some(now) {
            self.drawn_for = Some(now);
            let base = self.config.election_ticks as u64;
            let timeout = base + self.election_rng.below(base);
            self.raw
                .raft
                .set_randomized_election_timeout(timeout as usize);
        }
        let leader = self.raw.raft.leader_id;
        if leader != 0 && leader != raft_id(self.id) {
            self.last_other_leader = Some(node_of(leader));
        }
    }

    /// Records traffic from `node` (any Raft message), for the controller's liveness view.
    pub fn heard_from(&mut self, node: NodeId, now_ms: u64) {
        let heard = self.last_heard_ms.entry(node).or_insert(now_ms);
        *heard = (*heard).max(now_ms);
    }

    /// The controller's work for this tick while this node leads: proposes nothing itself
    /// except learner additions and removals; returns the commands to propose (fence, unfence, remove),
    /// each at most once per `controller_retry_ms` while it is not applied.
    pub fn controller_tick(&mut self, now_ms: u64) -> Vec<MetadataCommand> {
        if !self.is_leader() {
            self.leadership = None;
            return Vec::new();
        }
        let term = self.raw.raft.term;
        if self
            .leadership
            .is_none_or(|leadership| leadership.term != term)
        {
            self.leadership = Some(Leadership {
                term,
                began_ms: now_ms,
                previous_leader: self.last_other_leader,
                leader_balance_ms: now_ms,
            });
            self.decisions_in_flight.clear();
            self.learners_in_flight.clear();
        }
        let interval_ms = self.config.leader_balance_interval_ms;
        let leadership = self.leadership.as_mut().expect("set above");
        let leader_balance_due =
            interval_ms > 0 && now_ms >= leadership.leader_balance_ms.saturating_add(interval_ms);
        if leader_balance_due {
            leadership.leader_balance_ms = now_ms;
        }
        let leadership = *leadership;
        let matched: BTreeMap<NodeId, u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .map(|(id, progress)| (node_of(*id), progress.matched))
            .collect();
        let voters: BTreeSet<NodeId> = self.voters().into_iter().collect();
        let members: BTreeSet<NodeId> = voters.iter().copied().chain(self.learners()).collect();
        let decisions = controller_decisions(&ControllerView {
            image: &self.image,
            controller: self.id,
            now_ms,
            leadership_began_ms: leadership.began_ms,
            previous_leader: leadership.previous_leader,
            last_heard_ms: &self.last_heard_ms,
            matched_index: &matched,
            raft_members: &members,
            raft_voters: &voters,
            broker_session_timeout_ms: self.config.broker_session_timeout_ms,
            election_timeout_ms: self.config.election_timeout_ms(),
            leader_balance_due,
        });
        let retry_ms = self.config.controller_retry_ms;
        let fresh = |proposed: Option<&u64>| proposed.is_some_and(|at| now_ms < at + retry_ms);
        let changes = decisions
            .learners_to_add
            .into_iter()
            .map(|learner| (learner, true))
            .chain(decisions.learners_to_remove.into_iter().map(|l| (l, false)));
        for (learner, add) in changes {
            if fresh(self.learners_in_flight.get(&learner)) {
                continue;
            }
            self.learners_in_flight.insert(learner, now_ms);
            let changed = if add {
                self.add_learner(learner)
            } else {
                self.remove_learner(learner)
            };
            if let Err(error) = changed {
                tracing::debug!(learner, add, %error, "a learner change failed; retrying later");
            }
            break; // One membership change at a time.
        }
        self.decisions_in_flight
            .retain(|_, proposed| now_ms < *proposed + retry_ms);
        let mut commands = Vec::new();
        for command in decisions.commands {
            let key = encode_command(&command);
            if fresh(self.decisions_in_flight.get(&key)) {
                continue;
            }
            self.decisions_in_flight.insert(key, now_ms);
            commands.push(command);
        }
        commands
    }

    /// The image as of the last applied entry.
    pub fn image(&self) -> Arc<MetadataImage> {
        Arc::clone(&self.image)
    }

    pub fn is_leader(&self) -> bool {
        self.raw.raft.state == StateRole::Leader
    }

    /// The leader (controller) this node knows of.
    pub fn leader(&self) -> Option<NodeId> {
        let leader = self.raw.raft.leader_id;
        (leader != 0).then(|| node_of(leader))
    }

    pub fn term(&self) -> u64 {
        self.raw.raft.term
    }

    /// The highest index this node knows committed.
    pub fn commit_index(&self) -> u64 {
        self.raw.raft.raft_log.committed
    }

    pub fn applied_index(&self) -> u64 {
        self.image.applied_index
    }

    pub fn voters(&self) -> Vec<NodeId> {
        let conf = self.raw.raft.prs().conf().to_conf_state();
        conf.voters.iter().map(|id| node_of(*id)).collect()
    }

    pub fn learners(&self) -> Vec<NodeId> {
        let conf = self.raw.raft.prs().conf().to_conf_state();
        conf.learners.iter().map(|id| node_of(*id)).collect()
    }
}

#[cfg(test)]
#[path = "node_tests.rs"]
mod tests;
