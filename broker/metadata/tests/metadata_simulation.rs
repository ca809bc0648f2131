//! A seeded, deterministic simulation of the metadata quorum in TigerBeetle's VOPR manner: 3 or
//! 5 voters (and sometimes a learner broker) running `MetadataNode` over the storage crate's
//! fault-injecting memory disks, a simulated network that loses, delays (reorders), duplicates
//! and partitions messages, nodes that crash (power loss: unsynced writes torn or dropped; or a
//! process crash) and restart with a new incarnation, disk errors, and time passed in.
//!
//! The workload is what brokers do: register at every start, propose topic changes to the
//! controller, partition leaders propose ISR changes (AlterPartition) from their own image,
//! the controller fences, unfences, adds learners, and operators reassign, elect and
//! decommission.
//!
//! Checked after every step:
//! - no two nodes apply different entries at one index (same proposal, same outcome) and nodes
//!   at the same applied index have the same image;
//! - a proposal acknowledged (applied on its proposer's node) stays the entry at its index on
//!   every node that reaches that index, across crashes and restarts;
//! - at most one leader per term;
//! - every image invariant (`MetadataImage::check_invariants`: partition leaders in the ISR and
//!   not fenced, ISR a non-empty subset of the replicas, ...);
//! - leader and partition epochs only grow on each node between restarts.
//!
//! And at the end, after the faults stop and the network heals: one leader, every node at the
//! same applied index with the same image, every running broker registered and unfenced.
//!
//! A failure names its seed: rerun it with `SPATE_METADATA_SIM_SEED=<seed>`
//! (`SPATE_METADATA_SIM_TRACE=1` prints every event). `SPATE_METADATA_SIM_CASES` sets how many
//! cases run (default 30, a few seconds), `SPATE_METADATA_SIM_BASE_SEED` where they start.

use std::collections::hash_map::DefaultHasher;
use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;

use futures_lite::future::block_on;
use spate_metadata::{
    ApplyError, ApplyOutcome, MetadataCommand, MetadataConfig, MetadataError, MetadataImage,
    MetadataNode, NodeId, ProposalId,
};
use spate_storage::{FaultPlan, MemoryFileSystem, SimulationRng};

const CASES_DEFAULT: u64 = 30;
const BASE_SEED: u64 = 0x3e7a_0000;
/// One simulation step.
const STEP_MS: u64 = 10;
/// Faults run this long, then the network heals and nodes restart for the convergence check.
const FAULTY_MS: u64 = 30_000;
const HEAL_MS: u64 = 20_000;
/// Marks a registration's proposal sequence (the incarnation sits in the bits from 40 up).
const REGISTRATION_TAG: u64 = 1 << 39;

struct Packet {
    deliver_at_ms: u64,
    from: NodeId,
    to: NodeId,
    bytes: Vec<u8>,
}

struct Broker {
    disk: MemoryFileSystem,
    node: Option<MetadataNode<MemoryFileSystem>>,
    /// While down: when it restarts.
    down_until_ms: u64,
    incarnation: u64,
    /// Whether this incarnation's registration applied on this node.
    registered: bool,
    last_registration_ms: Option<u64>,
    /// (topic id, partition) → (leader epoch, partition epoch) in this node's image since it
    /// last started.
    epochs: BTreeMap<(u64, u32), (i32, i32)>,
    /// The applied index whose image was last checked (images change only with it).
    checked_index: Option<u64>,
}

struct Simulation {
    seed: u64,
    rng: SimulationRng,
    trace: bool,
    now_ms: u64,
    config: MetadataConfig,
    voters: Vec<NodeId>,
    brokers: Vec<Broker>,
    network: Vec<Packet>,
    /// Links cut (from, to), until when.
    cut: BTreeMap<(NodeId, NodeId), u64>,
    loss_ppm: u32,
    duplicate_ppm: u32,
    delay_ms_max: u64,
    crash_ppm: u32,
    partition_ppm: u32,
    next_sequence: u64,
    // What the checks remember.
    history: BTreeMap<u64, (Option<ProposalId>, Result<ApplyOutcome, ApplyError>)>,
    image_hashes: BTreeMap<u64, u64>,
    leaders: BTreeMap<u64, NodeId>,
    acknowledged: BTreeMap<ProposalId, u64>,
    /// A crashed controller that led partitions, and when it crashed.
    failover_from: Option<(NodeId, u64)>,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Stats {
    delivered: u64,
    crashes: u64,
    power_losses: u64,
    disk_errors: u64,
    proposals: u64,
    acknowledged: u64,
    refused: u64,
    elections: u64,
    applied_max: u64,
    /// Times from a controller's crash to a new controller's image in which it leads nothing.
    failovers_ms: Vec<u64>,
}

fn hash_image(image: &MetadataImage) -> u64 {
    let mut hasher = DefaultHasher::new();
    serde_json::to_vec(image).unwrap().hash(&mut hasher);
    hasher.finish()
}

impl Simulation {
    fn new(seed: u64) -> Self {
        let mut rng = SimulationRng::new(seed);
        let voter_count = if rng.below(2) == 0 { 3 } else { 5 };
        let learners = rng.below(2) as usize;
        let config = MetadataConfig {
            snapshot_every_entries: 10 + rng.below(60),
            // Off, or often enough that a case's run sees several balances.
            leader_balance_interval_ms: [0, 1_000, 5_000][rng.below(3) as usize],
            election_seed: seed,
            ..MetadataConfig::default()
        };
        let faults = FaultPlan {
            error_ppm: if rng.below(3) == 0 { 300 } else { 0 },
            short_write_ppm: if rng.below(4) == 0 { 300 } else { 0 },
            yield_ppm: 0,
        };
        let brokers = (0..voter_count + learners)
            .map(|index| {
                let disk = MemoryFileSystem::new(seed ^ ((index as u64 + 1) << 32));
                disk.set_faults(faults);
                Broker {
                    disk,
                    node: None,
                    down_until_ms: 0,
                    incarnation: 0,
                    registered: false,
                    last_registration_ms: None,
                    epochs: BTreeMap::new(),
                    checked_index: None,
                }
            })
            .collect();
        let loss_ppm = [0, 20_000, 100_000][rng.below(3) as usize];
        let duplicate_ppm = [0, 20_000][rng.below(2) as usize];
        let delay_ms_max = [2, 20, 80][rng.below(3) as usize];
        let crash_ppm = [0, 300, 1000][rng.below(3) as usize];
        let partition_ppm = [0, 300, 1000][rng.below(3) as usize];
        Simulation {
            seed,
            rng,
            trace: std::env::var_os("SPATE_METADATA_SIM_TRACE").is_some(),
            now_ms: 0,
            config,
            voters: (0..voter_count as NodeId).collect(),
            brokers,
            network: Vec::new(),
            cut: BTreeMap::new(),
            loss_ppm,
            duplicate_ppm,
            delay_ms_max,
            crash_ppm,
            partition_ppm,
            next_sequence: 0,
            history: BTreeMap::new(),
            image_hashes: BTreeMap::new(),
            leaders: BTreeMap::new(),
            acknowledged: BTreeMap::new(),
            failover_from: None,
            stats: Stats::default(),
        }
    }

    fn fail(&self, what: String) -> ! {
        panic!(
            "metadata simulation seed {} at {} ms: {what}\n(rerun: SPATE_METADATA_SIM_SEED={} \
             SPATE_METADATA_SIM_TRACE=1)",
            self.seed, self.now_ms, self.seed
        )
    }

    fn log(&self, what: impl FnOnce() -> String) {
        if self.trace {
            eprintln!("[{:>6} ms] {}", self.now_ms, what());
        }
    }

    fn start(&mut self, index: usize) {
        let broker = &mut self.brokers[index];
        let opened = block_on(MetadataNode::open(
            broker.disk.clone(),
            PathBuf::from("/data/metadata"),
            index as NodeId,
            &self.voters,
            self.config.clone(),
        ));
        match opened {
            Ok(node) => {
                broker.node = Some(node);
                broker.incarnation += 1;
                broker.registered = false;
                broker.last_registration_ms = None;
                broker.epochs.clear();
                broker.checked_index = None;
                let incarnation = broker.incarnation;
                self.log(|| format!("node {index} starts, incarnation {incarnation}"));
            }
            Err(MetadataError::Storage(error)) => {
                // An injected disk error while recovering: the process dies, tries again later.
                self.stats.disk_errors += 1;
                self.brokers[index].disk.restart_process();
                self.brokers[index].down_until_ms = self.now_ms + 100;
                self.log(|| format!("node {index} failed to open: {error}"));
            }
            Err(error) => self.fail(format!("node {index} cannot reopen its log: {error}")),
        }
    }

    /// Stops a node: with power loss (unsynced writes dropped or torn) or as a process crash.
    fn crash(&mut self, index: usize, down_ms: u64, power_loss: bool) {
        // A failover is timed only when nothing else fails meanwhile.
        self.failover_from = None;
        let broker = &mut self.brokers[index];
        broker.node = None;
        if power_loss {
            broker.disk.crash();
            self.stats.power_losses += 1;
        } else {
            broker.disk.restart_process();
        }
        broker.down_until_ms = self.now_ms + down_ms;
        self.stats.crashes += 1;
        self.network.retain(|packet| packet.to != index as NodeId);
        self.log(|| format!("node {index} crashes (power loss: {power_loss}) for {down_ms} ms"));
    }

    fn linked(&self, from: NodeId, to: NodeId) -> bool {
        self.cut
            .get(&(from, to))
            .is_none_or(|until| *until <= self.now_ms)
    }

    /// Advances one node and routes what it produced; a disk error crashes it.
    fn advance(&mut self, index: usize) {
        let Some(node) = self.brokers[index].node.as_mut() else {
            return;
        };
        let advance = match block_on(node.advance()) {
            Ok(advance) => advance,
            Err(MetadataError::Storage(error)) => {
                self.stats.disk_errors += 1;
                self.log(|| format!("node {index} disk error: {error}"));
                let power_loss = self.rng.below(2) == 0;
                self.crash(index, 200, power_loss);
                return;
            }
            Err(error) => self.fail(format!("node {index} advance: {error}")),
        };
        for (to, bytes) in advance.messages {
            self.send(index as NodeId, to, bytes);
        }
        for (applied_index, proposal, result) in advance.applied {
            self.check_applied(index, applied_index, proposal, result);
        }
        self.check_node(index);
    }

    fn send(&mut self, from: NodeId, to: NodeId, bytes: Vec<u8>) {
        if self.rng.chance_ppm(self.loss_ppm) {
            return;
        }
        let copies = if self.rng.chance_ppm(self.duplicate_ppm) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let delay = 1 + self.rng.below(self.delay_ms_max);
            self.network.push(Packet {
                deliver_at_ms: self.now_ms + delay,
                from,
                to,
                bytes: bytes.clone(),
            });
        }
    }

    fn check_applied(
        &mut self,
        index: usize,
        applied_index: u64,
        proposal: Option<ProposalId>,
        result: Result<ApplyOutcome, ApplyError>,
    ) {
        self.stats.applied_max = self.stats.applied_max.max(applied_index);
        match self.history.get(&applied_index) {
            Some((known_proposal, known_result)) => {
                if *known_proposal != proposal || *known_result != result {
                    self.fail(format!(
                        "node {index} applied {proposal:?} -> {result:?} at index \
                         {applied_index}, where {known_proposal:?} -> {known_result:?} was \
                         applied before"
                    ));
                }
            }
            None => {
                self.history
                    .insert(applied_index, (proposal, result.clone()));
            }
        }
        let Some(proposal) = proposal else { return };
        if let Some(acknowledged_at) = self.acknowledged.get(&proposal) {
            if *acknowledged_at != applied_index {
                self.fail(format!(
                    "proposal {proposal:?} acknowledged at index {acknowledged_at} reappears at \
                     {applied_index} on node {index}"
                ));
            }
        }
        if proposal.origin == index as NodeId && !self.acknowledged.contains_key(&proposal) {
            self.acknowledged.insert(proposal, applied_index);
            self.stats.acknowledged += 1;
            if result.is_err() {
                self.stats.refused += 1;
            }
            let broker = &mut self.brokers[index];
            if proposal.sequence & REGISTRATION_TAG != 0
                && proposal.sequence >> 40 == broker.incarnation
            {
                broker.registered = true;
            }
        }
    }

    fn check_node(&mut self, index: usize) {
        let Some(node) = self.brokers[index].node.as_ref() else {
            return;
        };
        let image = node.image();
        let is_leader = node.is_leader();
        let term = node.term();
        if is_leader {
            match self.leaders.get(&term) {
                Some(leader) if *leader != index as NodeId => {
                    self.fail(format!("two leaders in term {term}: {leader} and {index}"))
                }
                Some(_) => {}
                None => {
                    self.stats.elections += 1;
                    self.leaders.insert(term, index as NodeId);
                    self.log(|| format!("node {index} leads term {term}"));
                }
            }
        }
        if let Some((dead, crashed_at_ms)) = self.failover_from {
            let moved = is_leader
                && image
                    .topics
                    .values()
                    .all(|topic| topic.partitions.iter().all(|p| p.leader != Some(dead)));
            if moved {
                self.failover_from = None;
                self.stats.failovers_ms.push(self.now_ms - crashed_at_ms);
                let took_ms = self.now_ms - crashed_at_ms;
                self.log(|| format!("leaderships of {dead} moved after {took_ms} ms"));
            }
        }
        if self.brokers[index].checked_index == Some(image.applied_index) {
            return;
        }
        self.brokers[index].checked_index = Some(image.applied_index);
        if let Err(broken) = image.check_invariants() {
            self.fail(format!(
                "node {index} image at {}: {broken}",
                image.applied_index
            ));
        }
        let hash = hash_image(&image);
        match self.image_hashes.get(&image.applied_index) {
            Some(known) if *known != hash => self.fail(format!(
                "node {index} image at index {} differs from another node's",
                image.applied_index
            )),
            Some(_) => {}
            None => {
                self.image_hashes.insert(image.applied_index, hash);
            }
        }
        let mut epochs = std::mem::take(&mut self.brokers[index].epochs);
        for topic in image.topics.values() {
            for (number, partition) in topic.partitions.iter().enumerate() {
                let now = (partition.leader_epoch, partition.partition_epoch);
                if let Some(then) = epochs.insert((topic.id, number as u32), now) {
                    if now.0 < then.0 || now.1 < then.1 {
                        self.fail(format!(
                            "node {index}: topic {} partition {number} epochs went from \
                             {then:?} to {now:?}",
                            topic.id
                        ));
                    }
                }
            }
        }
        self.brokers[index].epochs = epochs;
    }

    fn deliver_due(&mut self) {
        let now = self.now_ms;
        let (mut due, later): (Vec<Packet>, Vec<Packet>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|packet| packet.deliver_at_ms <= now);
        self.network = later;
        due.sort_by_key(|packet| packet.deliver_at_ms);
        for packet in due {
            if !self.linked(packet.from, packet.to) {
                continue;
            }
            let to = packet.to as usize;
            let Some(node) = self.brokers.get_mut(to).and_then(|b| b.node.as_mut()) else {
                continue;
            };
            node.heard_from(packet.from, now);
            // Unknown peers and the like are ignored, as the broker's driver does.
            let _ = node.step(packet.from, &packet.bytes);
            self.stats.delivered += 1;
            self.advance(to);
        }
    }

    /// Sends `command` from `origin` to the controller it knows, as ClusterPropose would.
    fn propose_from(&mut self, origin: usize, command: MetadataCommand, sequence: u64) {
        let Some(node) = self.brokers[origin].node.as_ref() else {
            return;
        };
        // A broker that knows no controller yet (a learner before it joined) asks a random
        // seed, which names the controller it knows, as ClusterPropose's hint does.
        let controller = match node.leader() {
            Some(controller) => controller,
            None => {
                let seed = self.voters[self.rng.below(self.voters.len() as u64) as usize];
                match self.brokers[seed as usize].node.as_ref() {
                    Some(voter) if self.linked(origin as NodeId, seed) => match voter.leader() {
                        Some(controller) => controller,
                        None => return,
                    },
                    _ => return,
                }
            }
        };
        if controller as usize != origin
            && (!self.linked(origin as NodeId, controller) || self.rng.chance_ppm(self.loss_ppm))
        {
            return;
        }
        let Some(target) = self
            .brokers
            .get_mut(controller as usize)
            .and_then(|b| b.node.as_mut())
        else {
            return;
        };
        let proposal = ProposalId {
            origin: origin as NodeId,
            sequence,
        };
        let described = format!("{command:?}");
        if target.propose(proposal, command).is_ok() {
            self.log(|| format!("node {origin} proposes {described} via {controller}"));
            self.stats.proposals += 1;
            self.advance(controller as usize);
        }
    }

    fn sequence(&mut self) -> u64 {
        self.next_sequence += 1;
        self.next_sequence
    }

    fn tick(&mut self) {
        for index in 0..self.brokers.len() {
            let Some(node) = self.brokers[index].node.as_mut() else {
                continue;
            };
            node.tick();
            let commands = node.controller_tick(self.now_ms);
            let needs_cluster_id = node.is_leader() && node.image().cluster_id.is_none();
            for command in commands {
                let sequence = self.sequence();
                self.propose_from(index, command, sequence);
            }
            if needs_cluster_id && self.rng.below(5) == 0 {
                let sequence = self.sequence();
                // Different ids from different controllers: only the first may win.
                let cluster_id = format!("cluster-{}", self.rng.below(3));
                self.propose_from(
                    index,
                    MetadataCommand::SetClusterId { cluster_id },
                    sequence,
                );
            }
            self.advance(index);
        }
    }

    fn register_brokers(&mut self) {
        for index in 0..self.brokers.len() {
            let broker = &self.brokers[index];
            if broker.node.is_none() || broker.registered {
                continue;
            }
            if broker
                .last_registration_ms
                .is_some_and(|at| self.now_ms < at + 300)
            {
                continue;
            }
            let incarnation = broker.incarnation;
            self.brokers[index].last_registration_ms = Some(self.now_ms);
            let command = MetadataCommand::RegisterBroker {
                id: index as NodeId,
                incarnation,
                native: (format!("10.0.0.{}", index + 1), 9000),
                kafka: Some((format!("10.0.0.{}", index + 1), 9092)),
                rack: None,
            };
            let sequence = (incarnation << 40) | REGISTRATION_TAG | self.sequence();
            self.propose_from(index, command, sequence);
        }
    }

    fn random_workload(&mut self) {
        if !self.rng.chance_ppm(60_000) {
            return;
        }
        let origin = self.rng.below(self.brokers.len() as u64) as usize;
        let Some(node) = self.brokers[origin].node.as_ref() else {
            return;
        };
        let image = node.image();
        let command = if self.rng.below(3) == 0 {
            match self.isr_change(origin, &image) {
                Some(command) => command,
                None => return,
            }
        } else {
            self.operator_command(&image)
        };
        let sequence = self.sequence();
        self.propose_from(origin, command, sequence);
    }

    /// What a partition leader proposes: shrink or grow its ISR, from its own image.
    fn isr_change(&mut self, origin: usize, image: &MetadataImage) -> Option<MetadataCommand> {
        let led: Vec<(u64, u32)> = image
            .topics
            .values()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| p.leader == Some(origin as NodeId))
                    .map(|(n, _)| (topic.id, n as u32))
                    .collect::<Vec<_>>()
            })
            .collect();
        if led.is_empty() {
            return None;
        }
        let (topic_id, number) = led[self.rng.below(led.len() as u64) as usize];
        let partition = image.partition(topic_id, number)?;
        let mut new_isr = vec![origin as NodeId];
        for replica in &partition.replicas {
            let live = image.brokers.get(replica).is_some_and(|b| !b.fenced);
            if *replica != origin as NodeId && live && self.rng.below(3) != 0 {
                new_isr.push(*replica);
            }
        }
        Some(MetadataCommand::AlterPartition {
            topic_id,
            partition: number,
            leader: origin as NodeId,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            new_isr,
        })
    }

    fn operator_command(&mut self, image: &MetadataImage) -> MetadataCommand {
        let name = format!("topic-{}", self.rng.below(6));
        let topic_ids: Vec<u64> = image.topic_names.keys().copied().collect();
        let topic_id = if topic_ids.is_empty() {
            1
        } else {
            topic_ids[self.rng.below(topic_ids.len() as u64) as usize]
        };
        let brokers = self.brokers.len() as u64;
        match self.rng.below(20) {
            0..=5 => MetadataCommand::CreateTopic {
                name,
                partitions: 1 + self.rng.below(4) as u32,
                replication_factor: match self.rng.below(3) {
                    0 => None,
                    factor => Some(factor as u16 + 1),
                },
                assignments: None,
                config: BTreeMap::new(),
            },
            6 | 7 => MetadataCommand::DeleteTopic {
                name,
                topic_id: None,
            },
            8 => MetadataCommand::CreatePartitions {
                name,
                count: 2 + self.rng.below(4) as u32,
                assignments: None,
            },
            9 => MetadataCommand::AlterTopicConfig {
                name,
                config: BTreeMap::from([(
                    "min.insync.replicas".to_string(),
                    (1 + self.rng.below(3)).to_string(),
                )]),
            },
            10..=12 => {
                let count = 1 + self.rng.below(3);
                let mut target: Vec<NodeId> = Vec::new();
                for _ in 0..count {
                    let broker = self.rng.below(brokers) as NodeId;
                    if !target.contains(&broker) {
                        target.push(broker);
                    }
                }
                MetadataCommand::ReassignPartition {
                    topic_id,
                    partition: self.rng.below(3) as u32,
                    target: if self.rng.below(5) == 0 {
                        None
                    } else {
                        Some(target)
                    },
                }
            }
            13 | 14 => MetadataCommand::ElectPreferredLeaders { partitions: None },
            15 if self.rng.below(4) == 0 => MetadataCommand::DecommissionBroker {
                id: self.rng.below(brokers) as NodeId,
            },
            _ => MetadataCommand::AllocateProducerIds {
                broker: self.rng.below(brokers) as NodeId,
                count: 1 + self.rng.below(1000) as u32,
            },
        }
    }

    fn inject_faults(&mut self) {
        let count = self.brokers.len();
        let leader = (0..count).find(|index| {
            self.brokers[*index]
                .node
                .as_ref()
                .is_some_and(|node| node.is_leader())
        });
        // Crashes are likelier during elections, where a forgotten vote would elect two
        // leaders in one term.
        let crash_ppm = if leader.is_none() {
            self.crash_ppm.saturating_mul(20)
        } else {
            self.crash_ppm
        };
        if self.rng.chance_ppm(crash_ppm) {
            // Half the crashes hit the controller: its failover is the interesting case.
            let victim = match leader {
                Some(leader) if self.rng.below(2) == 0 => leader,
                _ => self.rng.below(count as u64) as usize,
            };
            if self.brokers[victim].node.is_some() {
                let down_ms = 100 + self.rng.below(4000);
                let power_loss = self.rng.below(2) == 0;
                let leads_partitions = self.brokers[victim].node.as_ref().is_some_and(|node| {
                    node.image().topics.values().any(|topic| {
                        topic
                            .partitions
                            .iter()
                            .any(|p| p.leader == Some(victim as NodeId))
                    })
                });
                // A controller that leads partitions and stays down longer than any failover:
                // time how long until a new controller has moved its leaderships.
                self.crash(victim, down_ms, power_loss);
                if Some(victim) == leader && leads_partitions && down_ms >= 3000 {
                    self.failover_from = Some((victim as NodeId, self.now_ms));
                }
            }
        }
        if self.rng.chance_ppm(self.partition_ppm) {
            self.failover_from = None;
            let until = self.now_ms + 500 + self.rng.below(5000);
            let leader = (0..count).find(|index| {
                self.brokers[*index]
                    .node
                    .as_ref()
                    .is_some_and(|node| node.is_leader())
            });
            let node = match leader {
                Some(leader) if self.rng.below(2) == 0 => leader as NodeId,
                _ => self.rng.below(count as u64) as NodeId,
            };
            if self.rng.below(2) == 0 {
                for other in 0..count as NodeId {
                    if other != node {
                        self.cut.insert((node, other), until);
                        self.cut.insert((other, node), until);
                    }
                }
                self.log(|| format!("node {node} isolated until {until} ms"));
            } else {
                let other = self.rng.below(count as u64) as NodeId;
                self.cut.insert((node, other), until);
                self.log(|| format!("link {node} -> {other} cut until {until} ms"));
            }
        }
    }

    fn restart_due(&mut self) {
        for index in 0..self.brokers.len() {
            let broker = &self.brokers[index];
            if broker.node.is_none() && broker.down_until_ms <= self.now_ms {
                self.start(index);
            }
        }
    }

    fn step(&mut self, faulty: bool) {
        self.now_ms += STEP_MS;
        if faulty {
            self.inject_faults();
        }
        self.restart_due();
        self.deliver_due();
        if self.now_ms % self.config.tick_ms == 0 {
            self.tick();
            self.register_brokers();
        }
        if faulty {
            self.random_workload();
        }
    }

    fn heal(&mut self) {
        self.log(|| "faults stop, the network heals".into());
        self.failover_from = None;
        self.cut.clear();
        self.loss_ppm = 0;
        self.duplicate_ppm = 0;
        for broker in &mut self.brokers {
            broker.disk.set_faults(FaultPlan::default());
            broker.down_until_ms = broker.down_until_ms.min(self.now_ms);
        }
    }

    /// After healing: one leader, everyone at the same image, every broker registered and
    /// unfenced (removed brokers aside), nothing acknowledged beyond the final log.
    fn check_converged(&self) {
        let leaders: Vec<usize> = (0..self.brokers.len())
            .filter(|index| {
                self.brokers[*index]
                    .node
                    .as_ref()
                    .is_some_and(|node| node.is_leader())
            })
            .collect();
        if leaders.len() != 1 {
            self.fail(format!("after healing, leaders: {leaders:?}"));
        }
        let leader_image = self.brokers[leaders[0]].node.as_ref().unwrap().image();
        for (index, broker) in self.brokers.iter().enumerate() {
            let Some(node) = broker.node.as_ref() else {
                self.fail(format!("node {index} still down after healing"));
            };
            let image = node.image();
            let removed_learner = !self.voters.contains(&(index as NodeId))
                && !leader_image.brokers.contains_key(&(index as NodeId));
            if removed_learner {
                // Decommissioned and removed from the Raft configuration: it hears no more.
                continue;
            }
            if *image != *leader_image {
                self.fail(format!(
                    "node {index} at index {} differs from the leader at {}",
                    image.applied_index, leader_image.applied_index
                ));
            }
            match image.brokers.get(&(index as NodeId)) {
                Some(state) if state.fenced || state.incarnation != broker.incarnation => self
                    .fail(format!(
                        "broker {index} (incarnation {}) is {state:?} after healing",
                        broker.incarnation
                    )),
                Some(_) => {}
                // Decommissioned and removed: a broker may stay out.
                None if broker.registered => {}
                None => self.fail(format!("broker {index} never registered")),
            }
        }
        if leader_image.cluster_id.is_none() {
            self.fail("no cluster id after healing".into());
        }
        let acknowledged_max = self.acknowledged.values().max().copied().unwrap_or(0);
        if leader_image.applied_index < acknowledged_max {
            self.fail(format!(
                "acknowledged index {acknowledged_max} beyond the final image ({})",
                leader_image.applied_index
            ));
        }
    }

    fn run(&mut self) {
        for index in 0..self.brokers.len() {
            self.start(index);
        }
        while self.now_ms < FAULTY_MS {
            self.step(true);
        }
        self.heal();
        let end = self.now_ms + HEAL_MS;
        while self.now_ms < end {
            self.step(false);
        }
        self.check_converged();
        self.log(|| format!("{:?}", self.stats));
    }
}

fn run_case(seed: u64) -> Stats {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        let mut simulation = Simulation::new(seed);
        simulation.run();
        simulation.stats
    }));
    match outcome {
        Ok(stats) => stats,
        Err(panic) => {
            eprintln!(
                "metadata simulation failed for seed {seed}: rerun with \
                 SPATE_METADATA_SIM_SEED={seed} (SPATE_METADATA_SIM_TRACE=1 for every event)"
            );
            std::panic::resume_unwind(panic)
        }
    }
}

#[test]
fn metadata_quorum_survives_loss_reordering_partitions_crashes_and_power_loss() {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|value| value.parse::<u64>().ok())
    };
    let seeds: Vec<u64> = match env("SPATE_METADATA_SIM_SEED") {
        Some(seed) => vec![seed],
        None => {
            let base = env("SPATE_METADATA_SIM_BASE_SEED").unwrap_or(BASE_SEED);
            let cases = env("SPATE_METADATA_SIM_CASES").unwrap_or(CASES_DEFAULT);
            (base..base + cases).collect()
        }
    };
    let mut totals = Stats::default();
    for seed in &seeds {
        let stats = run_case(*seed);
        totals.delivered += stats.delivered;
        totals.crashes += stats.crashes;
        totals.power_losses += stats.power_losses;
        totals.disk_errors += stats.disk_errors;
        totals.proposals += stats.proposals;
        totals.acknowledged += stats.acknowledged;
        totals.refused += stats.refused;
        totals.elections += stats.elections;
        totals.applied_max = totals.applied_max.max(stats.applied_max);
        totals.failovers_ms.extend(stats.failovers_ms);
    }
    let mut failovers = std::mem::take(&mut totals.failovers_ms);
    failovers.sort_unstable();
    eprintln!("{} cases: {totals:?}", seeds.len());
    if !failovers.is_empty() {
        eprintln!(
            "controller failovers (crash to leaderships moved, lossy network): {} measured, \
             p50 {} ms, max {} ms",
            failovers.len(),
            failovers[failovers.len() / 2],
            failovers[failovers.len() - 1]
        );
    }
    // The run must have exercised what it claims to.
    assert!(totals.acknowledged > 0 && totals.elections > 0);
}
