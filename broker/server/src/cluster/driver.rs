//! The metadata driver: the one task on shard 0 that owns this broker's [`MetadataNode`].
//!
//! Everything that touches the node goes through the driver's event queue (inbound Raft
//! messages from any shard, proposals), so the node is only ever borrowed by the loop: each turn
//! it ticks when a tick is due, steps and proposes what was queued, then calls `advance` until
//! Raft has nothing more (everything persisted before its messages leave), sends the messages,
//! wakes the proposals whose entries applied and publishes a changed image to the reconciler.
//!
//! Outbound messages go one RaftMessage per destination per turn, on the driver's own peer
//! connections (one per broker), a bounded number in flight per destination: Raft resends what
//! is lost, so a slow peer gets its messages dropped rather than queued without bound.
//!
//! Proposals are matched to their outcomes by [`ProposalId`] (this broker, a sequence that
//! starts at the incarnation so that replayed entries of an earlier run never match): the
//! proposer's own broker applies the entry like every other, so the proposer learns the
//! outcome from its own apply, whichever broker proposed it to Raft. A proposal is re-sent
//! (to the controller then known) until its outcome applies here or its time runs out;
//! duplicates are harmless, the first applied entry of an id is its outcome.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::sync::Semaphore;
use spate_metadata::{
    decode_command, encode_command, encode_result, ApplyError, ApplyOutcome, MetadataCommand,
    MetadataError, MetadataNode, ProposalId,
};
use spate_protocol::api::{
    ClusterProposeRequest, ClusterProposeResponse, RaftMessageRequest, RaftMessageResponse, NO_NODE,
};
use spate_protocol::constants::{RAFT_MESSAGES_PER_REQUEST_MAX, RAFT_MESSAGE_BYTES_MAX};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use super::{bootstrap, reconcile, ClusterState, ProposeError, DRIVER_SHARD};
use crate::kafka::KafkaBroker;
use crate::peer::{resolve, PeerPool};
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::storage::DmaFileSystem;

/// Events queued for the driver loop; beyond this, inbound Raft messages are dropped (Raft
/// resends) and proposals wait for room.
const EVENTS_QUEUED_MAX: usize = 4096;
/// RaftMessage calls in flight to one broker; more are dropped (Raft resends).
const SENDS_IN_FLIGHT_PER_PEER_MAX: usize = 8;
/// Proposals waiting for their outcome on this broker (its own and those it serves as the
/// controller); more are refused as timed out at once.
const PROPOSALS_WAITING_MAX: usize = 16_384;
/// How long a proposal waits for its outcome before it is sent again.
const PROPOSAL_RESEND_MS: u64 = 1000;
/// Pause before sending a proposal again after a refusal (no controller, not the controller).
const PROPOSAL_RETRY_MS: u64 = 50;
/// `advance` calls in one turn: Raft rarely needs more than two to settle.
const ADVANCES_PER_TURN_MAX: usize = 16;
/// How often the controller proposes a cluster id while the image has none.
const CLUSTER_ID_RETRY_MS: u64 = 1000;

/// One thing for the driver loop to do.
enum Event {
    /// Raft messages from broker `from`.
    Raft { from: NodeId, messages: Vec<Bytes> },
    /// Propose `command` as `id` (this broker is, or was, the controller).
    Propose {
        id: ProposalId,
        command: MetadataCommand,
    },
}

/// The outcome of one proposal, awaited by one or more tasks.
struct Waiter {
    outcome: RefCell<Option<(u64, Result<ApplyOutcome, ApplyError>)>>,
    /// Never has permits: closed when the outcome is in, which wakes every waiting task.
    done: Semaphore,
}

impl Waiter {
    fn new() -> Self {
        Self {
            outcome: RefCell::new(None),
            done: Semaphore::new(0),
        }
    }

    fn resolve(&self, index: u64, outcome: Result<ApplyOutcome, ApplyError>) {
        if self.outcome.borrow().is_none() {
            *self.outcome.borrow_mut() = Some((index, outcome));
            self.done.close();
        }
    }

    /// The outcome, once in, within `timeout`.
    async fn wait(&self, timeout: Duration) -> Option<(u64, Result<ApplyOutcome, ApplyError>)> {
        if self.outcome.borrow().is_none() {
            let woken = async {
                let _ = self.done.acquire(1).await;
            };
            let expired = glommio::timer::sleep(timeout);
            future::or(woken, expired).await;
        }
        self.outcome.borrow().clone()
    }
}

/// Shard 0's driver state that proposers and handlers reach (the node itself is the loop's).
pub(crate) struct Driver {
    node_id: NodeId,
    state: Arc<ClusterState>,
    events: RefCell<VecDeque<Event>>,
    wake: LocalSender<()>,
    waiters: RefCell<HashMap<ProposalId, Rc<Waiter>>>,
    next_sequence: Cell<u64>,
    /// The quorum's leader (the controller) as the node last said.
    leader: Cell<Option<NodeId>>,
    /// The controller another broker named (ClusterPropose's hint), for a broker whose own node
    /// knows none yet (a new learner hears no leader before the controller adds it).
    hinted_leader: Cell<Option<NodeId>>,
    /// Which seed a proposal asks next while no controller is known.
    next_seed: Cell<usize>,
    /// Native endpoints of brokers the image does not name yet (seeds learned at bootstrap).
    seed_addresses: RefCell<BTreeMap<NodeId, (String, u16)>>,
    peers: PeerPool,
    sends_in_flight: RefCell<HashMap<NodeId, usize>>,
    /// Wakes the reconciler when the image or the controller changed.
    reconcile: LocalSender<()>,
    propose_timeout_ms: u64,
    tick_ms: u64,
}

impl Driver {
    fn push(&self, event: Event) -> bool {
        let mut events = self.events.borrow_mut();
        if events.len() >= EVENTS_QUEUED_MAX {
            return false;
        }
        events.push_back(event);
        drop(events);
        let _ = self.wake.try_send(());
        true
    }

    pub(crate) fn leader(&self) -> Option<NodeId> {
        self.leader.get()
    }

    fn waiter(&self, id: ProposalId) -> Option<Rc<Waiter>> {
        let mut waiters = self.waiters.borrow_mut();
        if let Some(waiter) = waiters.get(&id) {
            return Some(waiter.clone());
        }
        if waiters.len() >= PROPOSALS_WAITING_MAX {
            return None;
        }
        let waiter = Rc::new(Waiter::new());
        waiters.insert(id, waiter.clone());
        Some(waiter)
    }

    fn next_proposal(&self) -> ProposalId {
        let sequence = self.next_sequence.get();
        self.next_sequence.set(sequence + 1);
        ProposalId {
            origin: self.node_id,
            sequence,
        }
    }

    pub(super) fn peers(&self) -> &PeerPool {
        &self.peers
    }

    /// Records where seed `node` listens, learned after the node opened; the first address
    /// learned for an id stays (two seeds answering with one id is a configuration error
    /// reported at start).
    pub(super) fn learn_seed_address(&self, node: NodeId, endpoint: (String, u16)) {
        self.seed_addresses
            .borrow_mut()
            .entry(node)
            .or_insert(endpoint);
    }

    /// Where broker `node`'s native listener is, as its advertised host (the name its
    /// certificate holds) and that host resolved: the image's registration, else a seed's.
    fn address_of(&self, node: NodeId) -> Option<(String, SocketAddr)> {
        let image = self.state.image();
        let endpoint = image
            .brokers
            .get(&node)
            .map(|broker| broker.native.clone())
            .or_else(|| self.seed_addresses.borrow().get(&node).cloned())?;
        match resolve(node, &endpoint.0, endpoint.1) {
            Ok(address) => Some((endpoint.0, address)),
            Err(error) => {
                tracing::debug!(node, %error, "cannot resolve a broker");
                None
            }
        }
    }

    /// See [`super::propose`]: runs on shard 0.
    pub(crate) async fn propose(
        &self,
        services: &Rc<Services>,
        command: MetadataCommand,
    ) -> Result<ApplyOutcome, ProposeError> {
        let id = self.next_proposal();
        let timeout = Duration::from_millis(self.propose_timeout_ms);
        let deadline = Instant::now() + timeout;
        let Some(waiter) = self.waiter(id) else {
            return Err(ProposeError::TimedOut {
                timeout_ms: self.propose_timeout_ms,
            });
        };
        let outcome = self
            .send_until_applied(services, id, &command, &waiter, deadline)
            .await;
        self.waiters.borrow_mut().remove(&id);
        let (index, outcome) = outcome.ok_or(ProposeError::TimedOut {
            timeout_ms: self.propose_timeout_ms,
        })?;
        // A refused command changed nothing, so there is nothing to reconcile (and a refusal
        // does not wake the reconciler: waiting for it would turn every refusal into a
        // timeout).
        let outcome = outcome.map_err(ProposeError::Refused)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        if !super::wait_reconciled(&self.state, index, remaining).await {
            return Err(ProposeError::TimedOut {
                timeout_ms: self.propose_timeout_ms,
            });
        }
        Ok(outcome)
    }

    async fn send_until_applied(
        &self,
        services: &Rc<Services>,
        id: ProposalId,
        command: &MetadataCommand,
        waiter: &Waiter,
        deadline: Instant,
    ) -> Option<(u64, Result<ApplyOutcome, ApplyError>)> {
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return waiter.outcome.borrow().clone();
            }
            let target = self
                .leader
                .get()
                .or_else(|| self.hinted_leader.take())
                .or_else(|| self.some_seed());
            let wait = match target {
                Some(leader) if leader == self.node_id => {
                    self.push(Event::Propose {
                        id,
                        command: command.clone(),
                    });
                    Duration::from_millis(PROPOSAL_RESEND_MS)
                }
                Some(leader) => self.forward(services, leader, id, command, remaining).await,
                None => Duration::from_millis(PROPOSAL_RETRY_MS),
            };
            if let Some(outcome) = waiter.wait(wait.min(remaining)).await {
                return Some(outcome);
            }
        }
    }

    /// A seed other than this broker, a different one at each call (to find the controller
    /// through while this broker's node knows none).
    fn some_seed(&self) -> Option<NodeId> {
        let seeds: Vec<NodeId> = self
            .seed_addresses
            .borrow()
            .keys()
            .copied()
            .filter(|seed| *seed != self.node_id)
            .collect();
        if seeds.is_empty() {
            return None;
        }
        let index = self.next_seed.get();
        self.next_seed.set(index.wrapping_add(1));
        Some(seeds[index % seeds.len()])
    }

    /// Sends the proposal to the controller `leader`; returns how long to wait for its outcome
    /// to apply here before trying again.
    async fn forward(
        &self,
        _services: &Rc<Services>,
        leader: NodeId,
        id: ProposalId,
        command: &MetadataCommand,
        remaining: Duration,
    ) -> Duration {
        let retry = Duration::from_millis(PROPOSAL_RETRY_MS);
        let Some((host, address)) = self.address_of(leader) else {
            return retry;
        };
        let connection = match self.peers.get(leader, &host, address).await {
            Ok(connection) => connection,
            Err(error) => {
                tracing::debug!(leader, %error, "cannot reach the controller");
                return retry;
            }
        };
        let timeout_ms = (remaining.as_millis() as u64).clamp(1, self.propose_timeout_ms);
        let request = ClusterProposeRequest {
            origin: id.origin,
            sequence: id.sequence,
            command: Bytes::from(encode_command(command)),
            timeout_ms: u32::try_from(timeout_ms).unwrap_or(u32::MAX),
        };
        match connection.call(&request, timeout_ms).await {
            // Applied at the controller (whatever its outcome): it applies here soon.
            Ok(answer) if answer.error_code == ErrorCode::None || !answer.outcome.is_empty() => {
                remaining
            }
            Ok(answer) if answer.error_code == ErrorCode::NotController => {
                if answer.controller_hint >= 0 && answer.controller_hint != leader {
                    self.hinted_leader.set(Some(answer.controller_hint));
                }
                retry
            }
            Ok(answer) => {
                tracing::debug!(leader, code = ?answer.error_code, message = ?answer.error_message, "proposal not applied; sending again");
                retry
            }
            Err(error) => {
                tracing::debug!(leader, %error, "proposal to the controller failed; sending again");
                retry
            }
        }
    }

    /// The controller's side of a ClusterPropose: proposes it here and answers once applied.
    async fn serve_proposal(
        &self,
        id: ProposalId,
        command: MetadataCommand,
        timeout_ms: u64,
    ) -> ClusterProposeResponse {
        if self.leader.get() != Some(self.node_id) {
            return not_controller(self.leader.get());
        }
        let Some(waiter) = self.waiter(id) else {
            return ClusterProposeResponse {
                error_code: ErrorCode::RequestTimedOut,
                error_message: Some("too many proposals waiting at the controller".to_string()),
                ..ClusterProposeResponse::default()
            };
        };
        self.push(Event::Propose { id, command });
        let timeout = Duration::from_millis(timeout_ms.min(self.propose_timeout_ms));
        let outcome = waiter.wait(timeout).await;
        self.waiters.borrow_mut().remove(&id);
        match outcome {
            Some((_, result)) => ClusterProposeResponse {
                error_code: result
                    .as_ref()
                    .err()
                    .map_or(ErrorCode::None, ApplyError::error_code),
                error_message: result.as_ref().err().map(ToString::to_string),
                controller_hint: self.node_id,
                outcome: Bytes::from(encode_result(&result)),
            },
            None if self.leader.get() != Some(self.node_id) => not_controller(self.leader.get()),
            None => ClusterProposeResponse {
                error_code: ErrorCode::RequestTimedOut,
                error_message: Some(format!("not applied within {} ms", timeout.as_millis())),
                ..ClusterProposeResponse::default()
            },
        }
    }
}

fn not_controller(leader: Option<NodeId>) -> ClusterProposeResponse {
    ClusterProposeResponse {
        error_code: ErrorCode::NotController,
        error_message: Some("this broker is not the controller".to_string()),
        controller_hint: leader.unwrap_or(NO_NODE),
        ..ClusterProposeResponse::default()
    }
}

/// RaftMessage from another broker, received on any shard: queued for the driver on shard 0.
pub async fn handle_raft_message(
    services: &Rc<Services>,
    request: &RaftMessageRequest,
) -> RaftMessageResponse {
    let refuse = |error_code: ErrorCode, message: String| RaftMessageResponse {
        error_code,
        error_message: Some(message),
    };
    if !services.cluster.is_cluster_mode() {
        return refuse(
            ErrorCode::InvalidRequest,
            "this broker is not in a cluster".to_string(),
        );
    }
    let snapshot = services.snapshot();
    if request.to != snapshot.local_node {
        return refuse(
            ErrorCode::InvalidRequest,
            format!(
                "Raft messages for node {} reached node {}",
                request.to, snapshot.local_node
            ),
        );
    }
    if let (Some(theirs), Some(ours)) = (&request.cluster_id, &snapshot.cluster_id) {
        if theirs != ours {
            return refuse(
                ErrorCode::InvalidRequest,
                format!("Raft messages of cluster {theirs} reached cluster {ours}"),
            );
        }
    }
    let from = request.from;
    let messages = request.messages.clone();
    let queued = invoke_on(services, DRIVER_SHARD, move |on: Rc<Services>| async move {
        on.cluster
            .driver()
            .is_some_and(|driver| driver.push(Event::Raft { from, messages }))
    })
    .await
    .unwrap_or(false);
    if queued {
        RaftMessageResponse::default()
    } else {
        refuse(
            ErrorCode::BrokerNotAvailable,
            "the metadata node is not running or is overloaded".to_string(),
        )
    }
}

/// ClusterPropose from another broker, received on any shard: served by the driver on shard 0.
pub async fn handle_cluster_propose(
    services: &Rc<Services>,
    request: &ClusterProposeRequest,
) -> ClusterProposeResponse {
    if !services.cluster.is_cluster_mode() {
        return ClusterProposeResponse {
            error_code: ErrorCode::InvalidRequest,
            error_message: Some("this broker is not in a cluster".to_string()),
            ..ClusterProposeResponse::default()
        };
    }
    let command = match decode_command(&request.command) {
        Ok(command) => command,
        Err(error) => {
            return ClusterProposeResponse {
                error_code: ErrorCode::InvalidRequest,
                error_message: Some(error.to_string()),
                ..ClusterProposeResponse::default()
            }
        }
    };
    let id = ProposalId {
        origin: request.origin,
        sequence: request.sequence,
    };
    let timeout_ms = u64::from(request.timeout_ms);
    invoke_on(services, DRIVER_SHARD, move |on: Rc<Services>| async move {
        match on.cluster.driver() {
            Some(driver) => driver.serve_proposal(id, command, timeout_ms).await,
            None => not_controller(None),
        }
    })
    .await
    .unwrap_or_else(|_| not_controller(None))
}

/// Starts cluster mode on shard 0 (in the background: the broker already serves): learns the
/// seeds, opens the metadata node, runs the driver and the reconciler, registers the broker.
pub fn start(services: Rc<Services>, kafka: Option<Arc<KafkaBroker>>) {
    assert_eq!(
        services.id, DRIVER_SHARD,
        "the metadata driver runs on shard 0"
    );
    let Some(state) = services.cluster.state().cloned() else {
        return;
    };
    glommio::spawn_local(async move {
        if let Err(error) = run(services.clone(), state, kafka).await {
            tracing::error!(%error, "the metadata node failed; stopping the broker (its metadata log cannot be trusted past a failed write)");
            services.shutdown.request();
        }
    })
    .detach();
}

async fn run(
    services: Rc<Services>,
    state: Arc<ClusterState>,
    kafka: Option<Arc<KafkaBroker>>,
) -> Result<(), MetadataError> {
    let config = services.config.clone();
    let node_id = config.cluster.node_id;
    let incarnation = bootstrap::incarnation();
    let metadata_dir = config.data_dir.join(bootstrap::METADATA_DIRECTORY_NAME);
    let peers = PeerPool::new(
        crate::peer::PeerLimits::from_limits(&config.limits),
        services.peer_security.clone(),
    );
    let Some(seeds) = bootstrap::learn_seeds(&services, &peers, &metadata_dir).await else {
        return Ok(()); // Shutdown came first.
    };
    let file_system = DmaFileSystem::for_data_dir(&config.data_dir)
        .await
        .map_err(MetadataError::Storage)?;
    let voters: Vec<NodeId> = seeds.voters.clone();
    let unanswered = seeds.unanswered;
    let mut node = MetadataNode::open(
        file_system,
        metadata_dir,
        node_id,
        &voters,
        bootstrap::metadata_config(&config.limits),
    )
    .await?;
    tracing::info!(
        node = node_id,
        voters = ?node.voters(),
        learners = ?node.learners(),
        applied_index = node.applied_index(),
        "metadata node open"
    );
    let (wake, wake_receiver) = local_channel::new_bounded(1);
    let (reconcile_wake, reconcile_receiver) = local_channel::new_bounded(1);
    let driver = Rc::new(Driver {
        node_id,
        state: state.clone(),
        events: RefCell::new(VecDeque::new()),
        wake,
        waiters: RefCell::new(HashMap::new()),
        next_sequence: Cell::new(incarnation << 16),
        leader: Cell::new(node.leader()),
        hinted_leader: Cell::new(None),
        next_seed: Cell::new(0),
        seed_addresses: RefCell::new(seeds.addresses),
        peers,
        sends_in_flight: RefCell::new(HashMap::new()),
        reconcile: reconcile_wake,
        propose_timeout_ms: config.limits.cluster_propose_timeout_ms,
        tick_ms: config.limits.metadata_tick_ms,
    });
    state.publish_image(node.image());
    services.cluster.set_driver(driver.clone());
    glommio::spawn_local(reconcile::run(
        services.clone(),
        state.clone(),
        driver.clone(),
        reconcile_receiver,
        kafka,
        incarnation,
    ))
    .detach();
    glommio::spawn_local(bootstrap::keep_asking_seeds(
        services.clone(),
        driver.clone(),
        unanswered,
    ))
    .detach();
    glommio::spawn_local(bootstrap::register(
        services.clone(),
        driver.clone(),
        incarnation,
    ))
    .detach();
    glommio::spawn_local(bootstrap::supply_producer_ids(
        services.clone(),
        driver.clone(),
    ))
    .detach();
    drive(&services, &driver, &mut node, wake_receiver).await
}

/// The loop; see the module documentation. Returns at shutdown, or with the error of a failed
/// persist (after which the node must not be used).
async fn drive(
    services: &Rc<Services>,
    driver: &Rc<Driver>,
    node: &mut MetadataNode<DmaFileSystem>,
    wake: LocalReceiver<()>,
) -> Result<(), MetadataError> {
    let tick = Duration::from_millis(driver.tick_ms);
    let started = Instant::now();
    let now_ms = || started.elapsed().as_millis() as u64;
    let mut next_tick = Instant::now() + tick;
    let mut cluster_id_proposed_ms: Option<u64> = None;
    loop {
        let until_tick = next_tick.saturating_duration_since(Instant::now());
        let stop = future::or(
            async {
                future::or(
                    async {
                        wake.recv().await;
                    },
                    glommio::timer::sleep(until_tick),
                )
                .await;
                false
            },
            async {
                services.shutdown.requested().await;
                true
            },
        )
        .await;
        if stop {
            return Ok(());
        }
        if Instant::now() >= next_tick {
            node.tick();
            next_tick += tick;
            if next_tick < Instant::now() {
                // Far behind (a long stall): do not tick in a burst, Raft would see time jump.
                next_tick = Instant::now() + tick;
            }
            if node.is_leader() {
                controller_work(driver, node, now_ms(), &mut cluster_id_proposed_ms);
            }
        }
        let events: Vec<Event> = driver.events.borrow_mut().drain(..).collect();
        for event in events {
            match event {
                Event::Raft { from, messages } => {
                    node.heard_from(from, now_ms());
                    for message in messages {
                        if let Err(error) = node.step(from, &message) {
                            tracing::debug!(from, %error, "Raft message refused");
                        }
                    }
                }
                Event::Propose { id, command } => {
                    if let Err(error) = node.propose(id, command) {
                        // Not the controller any more, or dropped: the proposer sends again.
                        tracing::debug!(?id, %error, "proposal not taken");
                    }
                }
            }
        }
        for _ in 0..ADVANCES_PER_TURN_MAX {
            let advance = node.advance().await?;
            if advance.messages.is_empty() && advance.applied.is_empty() && !advance.image_changed {
                break;
            }
            send(driver, node, advance.messages);
            for (index, proposal, outcome) in advance.applied {
                let Some(proposal) = proposal else { continue };
                let waiter = driver.waiters.borrow().get(&proposal).cloned();
                if let Some(waiter) = waiter {
                    waiter.resolve(index, outcome);
                }
            }
            if advance.image_changed {
                driver.state.publish_image(node.image());
                let _ = driver.reconcile.try_send(());
            }
        }
        let leader = node.leader();
        if leader != driver.leader.replace(leader) {
            tracing::info!(controller = ?leader, term = node.term(), "metadata controller changed");
            let _ = driver.reconcile.try_send(());
        }
    }
}

/// The controller's decisions for this tick (fence, unfence, learners, ...) and the cluster id
/// while the image has none, proposed directly (nobody waits for them).
fn controller_work(
    driver: &Driver,
    node: &mut MetadataNode<DmaFileSystem>,
    now_ms: u64,
    cluster_id_proposed_ms: &mut Option<u64>,
) {
    let mut commands = node.controller_tick(now_ms);
    if node.image().cluster_id.is_none()
        && cluster_id_proposed_ms.is_none_or(|at| now_ms >= at + CLUSTER_ID_RETRY_MS)
    {
        *cluster_id_proposed_ms = Some(now_ms);
        commands.push(MetadataCommand::SetClusterId {
            cluster_id: bootstrap::new_cluster_id(),
        });
    }
    for command in commands {
        tracing::debug!(?command, "controller decision");
        if let Err(error) = node.propose(driver.next_proposal(), command) {
            tracing::debug!(%error, "controller decision not proposed");
        }
    }
}

/// Sends each destination's messages as one RaftMessage (split at the protocol's limits), in
/// the background, at most [`SENDS_IN_FLIGHT_PER_PEER_MAX`] calls per destination.
fn send(driver: &Rc<Driver>, node: &MetadataNode<DmaFileSystem>, messages: Vec<(NodeId, Vec<u8>)>) {
    let mut by_destination: BTreeMap<NodeId, Vec<Bytes>> = BTreeMap::new();
    for (to, message) in messages {
        if message.len() > RAFT_MESSAGE_BYTES_MAX {
            tracing::warn!(
                to,
                bytes = message.len(),
                "Raft message over the protocol's limit dropped"
            );
            continue;
        }
        by_destination
            .entry(to)
            .or_default()
            .push(Bytes::from(message));
    }
    let cluster_id = node.image().cluster_id.clone();
    for (to, messages) in by_destination {
        for chunk in messages.chunks(RAFT_MESSAGES_PER_REQUEST_MAX) {
            let in_flight = *driver.sends_in_flight.borrow().get(&to).unwrap_or(&0);
            if in_flight >= SENDS_IN_FLIGHT_PER_PEER_MAX {
                tracing::trace!(to, "Raft messages dropped: too many in flight");
                continue;
            }
            let Some((host, address)) = driver.address_of(to) else {
                tracing::trace!(to, "Raft messages dropped: address unknown");
                continue;
            };
            *driver.sends_in_flight.borrow_mut().entry(to).or_default() += 1;
            let request = RaftMessageRequest {
                from: driver.node_id,
                to,
                cluster_id: cluster_id.clone(),
                messages: chunk.to_vec(),
            };
            let driver = driver.clone();
            glommio::spawn_local(async move {
                let timeout_ms = driver.tick_ms * 10;
                let outcome = match driver.peers.get(to, &host, address).await {
                    Ok(connection) => connection
                        .call(&request, timeout_ms)
                        .await
                        .map(|answer| answer.error_code),
                    Err(error) => Err(error),
                };
                match outcome {
                    Ok(ErrorCode::None) => {}
                    Ok(code) => tracing::debug!(to, ?code, "Raft messages refused"),
                    Err(error) => tracing::trace!(to, %error, "Raft messages not delivered"),
                }
                if let Some(count) = driver.sends_in_flight.borrow_mut().get_mut(&to) {
                    *count = count.saturating_sub(1);
                }
            })
            .detach();
        }
    }
}
