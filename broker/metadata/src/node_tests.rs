//! Small deterministic runs of a few `MetadataNode`s over memory disks with a perfect network:
//! election, proposals applied everywhere, restart from disk, learners, snapshots. The seeded
//! simulation with faults is `tests/metadata_simulation.rs`.

use std::collections::VecDeque;
use std::path::PathBuf;

use futures_lite::future::block_on;
use spate_storage::MemoryFileSystem;

use super::*;

struct Cluster {
    disks: Vec<MemoryFileSystem>,
    nodes: Vec<Option<MetadataNode<MemoryFileSystem>>>,
    voters: Vec<NodeId>,
    config: MetadataConfig,
    queue: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    applied: Vec<Vec<(u64, Option<ProposalId>)>>,
    now_ms: u64,
}

impl Cluster {
    fn new(nodes: usize, voters: usize, config: MetadataConfig) -> Self {
        let voter_ids: Vec<NodeId> = (0..voters as NodeId).collect();
        let mut cluster = Cluster {
            disks: (0..nodes)
                .map(|n| MemoryFileSystem::new(n as u64))
                .collect(),
            nodes: (0..nodes).map(|_| None).collect(),
            voters: voter_ids,
            config,
            queue: VecDeque::new(),
            applied: vec![Vec::new(); nodes],
            now_ms: 0,
        };
        for node in 0..nodes {
            cluster.start(node);
        }
        cluster
    }

    fn start(&mut self, node: usize) {
        let opened = block_on(MetadataNode::open(
            self.disks[node].clone(),
            PathBuf::from("/data/metadata"),
            node as NodeId,
            &self.voters,
            self.config.clone(),
        ))
        .unwrap();
        self.nodes[node] = Some(opened);
    }

    fn crash(&mut self, node: usize) {
        self.nodes[node] = None;
        self.disks[node].crash();
    }

    fn node(&mut self, node: usize) -> &mut MetadataNode<MemoryFileSystem> {
        self.nodes[node].as_mut().unwrap()
    }

    fn advance_all(&mut self) {
        for index in 0..self.nodes.len() {
            let Some(node) = self.nodes[index].as_mut() else {
                continue;
            };
            let advance = block_on(node.advance()).unwrap();
            for (to, bytes) in advance.messages {
                self.queue.push_back((index as NodeId, to, bytes));
            }
            for (applied, proposal, _) in advance.applied {
                self.applied[index].push((applied, proposal));
            }
        }
    }

    /// Runs `ms` of time: ticks every tick_ms, delivers every message at once.
    fn run(&mut self, ms: u64) {
        let end = self.now_ms + ms;
        while self.now_ms < end {
            self.now_ms += self.config.tick_ms;
            for node in self.nodes.iter_mut().flatten() {
                node.tick();
            }
            for index in 0..self.nodes.len() {
                let now = self.now_ms;
                if let Some(node) = self.nodes[index].as_mut() {
                    let commands = node.controller_tick(now);
                    for (sequence, command) in commands.into_iter().enumerate() {
                        let proposal = ProposalId {
                            origin: index as NodeId,
                            sequence: now * 100 + sequence as u64,
                        };
                        let _ = node.propose(proposal, command);
                    }
                }
            }
            self.advance_all();
            while let Some((from, to, bytes)) = self.queue.pop_front() {
                let now = self.now_ms;
                if let Some(node) = self.nodes.get_mut(to as usize).and_then(Option::as_mut) {
                    node.heard_from(from, now);
                    let _ = node.step(from, &bytes);
                    let advance = block_on(node.advance()).unwrap();
                    for (to_next, bytes) in advance.messages {
                        self.queue.push_back((to, to_next, bytes));
                    }
                    for (applied, proposal, _) in advance.applied {
                        self.applied[to as usize].push((applied, proposal));
                    }
                }
            }
        }
    }

    fn leader(&self) -> Option<usize> {
        self.nodes
            .iter()
            .position(|node| node.as_ref().is_some_and(|node| node.is_leader()))
    }

    fn register(&mut self, broker: NodeId, incarnation: u64) {
        let leader = self.leader().expect("a leader");
        let command = MetadataCommand::RegisterBroker {
            id: broker,
            incarnation,
            native: ("127.0.0.1".into(), 9000 + broker as u16),
            kafka: None,
            rack: None,
        };
        let proposal = ProposalId {
            origin: broker,
            sequence: incarnation,
        };
        self.node(leader).propose(proposal, command).unwrap();
    }
}

fn test_config() -> MetadataConfig {
    MetadataConfig {
        snapshot_every_entries: 20,
        ..MetadataConfig::default()
    }
}

#[test]
fn three_voters_elect_a_leader_and_apply_proposals_everywhere() {
    let mut cluster = Cluster::new(3, 3, test_config());
    cluster.run(3000);
    let leader = cluster.leader().expect("a leader within 3 s");
    assert!(matches!(
        cluster.node((leader + 1) % 3).propose(
            ProposalId {
                origin: 0,
                sequence: 0
            },
            MetadataCommand::DecommissionBroker { id: 0 }
        ),
        Err(MetadataError::NotController { leader: Some(l) }) if l == leader as NodeId
    ));
    for broker in 0..3 {
        cluster.register(broker, 1);
    }
    cluster.run(2000);
    for node in 0..3 {
        let image = cluster.node(node).image();
        assert_eq!(image.brokers.len(), 3, "node {node}");
        // The controller unfenced every broker it hears.
        assert!(
            image.brokers.values().all(|broker| !broker.fenced),
            "node {node}"
        );
    }
    assert_eq!(cluster.node(0).voters(), vec![0, 1, 2]);
}

#[test]
fn a_crashed_node_recovers_its_log_and_catches_up_with_snapshots() {
    let mut cluster = Cluster::new(3, 3, test_config());
    cluster.run(3000);
    for broker in 0..3 {
        cluster.register(broker, 1);
    }
    cluster.run(1000);
    let victim = (cluster.leader().unwrap() + 1) % 3;
    cluster.crash(victim);
    // Enough entries for several snapshots while it is down.
    for round in 0..60u64 {
        let leader = cluster.leader().unwrap();
        let command = MetadataCommand::AllocateProducerIds {
            broker: 0,
            count: 10,
        };
        let proposal = ProposalId {
            origin: 99,
            sequence: round,
        };
        cluster.node(leader).propose(proposal, command).unwrap();
        cluster.run(100);
    }
    let leader = cluster.leader().unwrap();
    assert_eq!(cluster.node(leader).image().next_producer_id, 600);
    cluster.start(victim);
    cluster.run(3000);
    let image = cluster.node(victim).image();
    assert_eq!(image.next_producer_id, 600);
    let leader_image = cluster.node(cluster.leader().unwrap()).image();
    assert_eq!(image.brokers, leader_image.brokers);
}

#[test]
fn a_non_voter_broker_joins_as_a_learner() {
    let mut cluster = Cluster::new(4, 3, test_config());
    cluster.run(3000);
    for broker in 0..4 {
        cluster.register(broker, 1);
    }
    cluster.run(3000);
    let leader = cluster.leader().unwrap();
    assert_eq!(cluster.node(leader).learners(), vec![3]);
    let image = cluster.node(3).image();
    assert_eq!(image.brokers.len(), 4);
    assert!(!image.brokers[&3].fenced);
    assert!(!cluster.node(3).is_leader());
}

#[test]
fn a_decommissioned_learner_leaves_the_raft_configuration() {
    let mut cluster = Cluster::new(4, 3, test_config());
    cluster.run(3000);
    for broker in 0..4 {
        cluster.register(broker, 1);
    }
    cluster.run(3000);
    let leader = cluster.leader().unwrap();
    assert_eq!(cluster.node(leader).learners(), vec![3]);
    cluster
        .node(leader)
        .propose(
            ProposalId {
                origin: 0,
                sequence: 77,
            },
            MetadataCommand::DecommissionBroker { id: 3 },
        )
        .unwrap();
    cluster.run(3000);
    let leader = cluster.leader().unwrap();
    assert!(!cluster.node(leader).image().brokers.contains_key(&3));
    assert!(cluster.node(leader).learners().is_empty());
    assert_eq!(cluster.node(leader).voters(), vec![0, 1, 2]);
}

#[test]
fn the_leaders_partitions_fail_over_after_it_dies() {
    let mut cluster = Cluster::new(3, 3, test_config());
    cluster.run(3000);
    for broker in 0..3 {
        cluster.register(broker, 1);
    }
    cluster.run(1000);
    let old = cluster.leader().unwrap();
    let create = MetadataCommand::CreateTopic {
        name: "t".into(),
        partitions: 3,
        replication_factor: Some(3),
        assignments: None,
        config: BTreeMap::new(),
    };
    cluster
        .node(old)
        .propose(
            ProposalId {
                origin: 0,
                sequence: 9,
            },
            create,
        )
        .unwrap();
    cluster.run(500);
    let killed_at = cluster.now_ms;
    cluster.crash(old);
    let mut failed_over_ms = None;
    for _ in 0..60 {
        cluster.run(100);
        let Some(leader) = cluster.leader() else {
            continue;
        };
        let image = cluster.node(leader).image();
        let topic = &image.topics["t"];
        if topic
            .partitions
            .iter()
            .all(|partition| partition.leader.is_some_and(|l| l != old as NodeId))
        {
            failed_over_ms = Some(cluster.now_ms - killed_at);
            break;
        }
    }
    let failed_over_ms = failed_over_ms.expect("partitions led by live brokers within 6 s");
    eprintln!("partition failover after the controller died: {failed_over_ms} ms");
    assert!(
        failed_over_ms <= 3000,
        "took {failed_over_ms} ms (election + fencing)"
    );
}

#[test]
fn step_refuses_garbage_and_misaddressed_messages_without_panicking() {
    let mut cluster = Cluster::new(3, 3, test_config());
    cluster.run(3000);
    let leader = cluster.leader().unwrap();
    let follower = (leader + 1) % 3;
    // A real message, truncated at every length and with bytes flipped.
    let mut message = Message::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = leader as u64 + 1;
    message.to = follower as u64 + 1;
    message.term = cluster.node(leader).term();
    let bytes = message.write_to_bytes().unwrap();
    let mut rng = spate_storage::SimulationRng::new(3);
    for length in 0..bytes.len() {
        let _ = cluster
            .node(follower)
            .step(leader as NodeId, &bytes[..length]);
    }
    for _ in 0..2000 {
        let length = rng.below(64) as usize;
        let garbage: Vec<u8> = (0..length).map(|_| rng.below(256) as u8).collect();
        let _ = cluster.node(follower).step(leader as NodeId, &garbage);
    }
    // Claimed sender and destination must match the message's.
    assert!(matches!(
        cluster
            .node(follower)
            .step((leader as NodeId + 2) % 3, &bytes),
        Err(MetadataError::Codec { .. })
    ));
    assert!(matches!(
        cluster.node(follower).step(-1, &bytes),
        Err(MetadataError::Codec { .. })
    ));
    // A local message type (a campaign order) is not accepted from the wire.
    let mut local = message.clone();
    local.set_msg_type(MessageType::MsgHup);
    assert!(matches!(
        cluster
            .node(follower)
            .step(leader as NodeId, &local.write_to_bytes().unwrap()),
        Err(MetadataError::Codec { .. })
    ));
    // The cluster still works.
    cluster.run(1000);
    assert!(cluster.leader().is_some());
}
