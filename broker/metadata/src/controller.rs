//! The controller's decisions: what the Raft leader proposes on each tick, as a pure function
//! of the image, the time and what it has heard ([`controller_decisions`]).
//!
//! - Fence a broker not heard from for `broker_session_timeout_ms`: its leaderships move (the
//!   apply of `FenceBroker` does that).
//! - Unfence a fenced broker that is heard again and whose metadata log has reached its
//!   registration (so it knows what it is expected to host before it leads anything).
//! - Add every registered broker that is not a Raft member as a learner (voters are the seeds).
//! - Remove a decommissioning broker once it holds no replica, and a removed broker's learner
//!   from the Raft configuration (voters, the seeds, stay).
//! - When a leader balance is due (every `leader_balance_interval_ms`), elect the preferred
//!   replica of every partition it does not lead while it is live, active and in the ISR
//!   (Kafka's automatic preferred-leader election); partitions being reassigned are left to
//!   their reassignment.
//!
//! A new controller has heard nobody yet. It gives every broker a session from the start of its
//! leadership, except the previous controller: that one is taken as last heard one election
//! timeout before the leadership began (it stopped sending heartbeats at least that long ago, or
//! there would have been no election). So when the controller dies, its own partitions fail over
//! `broker_session_timeout_ms - election timeout` after the new leader takes office, not a whole
//! session later.
//!
//! What is not here: partition reassignments advance inside `apply` (they complete in the same
//! apply that puts the last target replica in the ISR); re-proposing a decision not yet applied
//! is throttled by the node (`MetadataNode::controller_tick`).

use std::collections::{BTreeMap, BTreeSet};

use spate_protocol::NodeId;

use crate::commands::MetadataCommand;
use crate::image::MetadataImage;

/// What the controller knows at one tick.
#[derive(Debug, Clone, Copy)]
pub struct ControllerView<'a> {
    pub image: &'a MetadataImage,
    /// This node, the Raft leader.
    pub controller: NodeId,
    pub now_ms: u64,
    /// When this node became the leader (its first controller tick in this term).
    pub leadership_began_ms: u64,
    /// The leader before this one, if this node knew it.
    pub previous_leader: Option<NodeId>,
    /// When each node was last heard from (any Raft traffic).
    pub last_heard_ms: &'a BTreeMap<NodeId, u64>,
    /// Each node's highest log index known replicated to it (the leader's Raft progress).
    pub matched_index: &'a BTreeMap<NodeId, u64>,
    /// Voters and learners of the Raft configuration.
    pub raft_members: &'a BTreeSet<NodeId>,
    /// The voters among them (the seeds).
    pub raft_voters: &'a BTreeSet<NodeId>,
    pub broker_session_timeout_ms: u64,
    pub election_timeout_ms: u64,
    /// Whether this tick elects preferred leaders back (the node paces it).
    pub leader_balance_due: bool,
}

/// What the controller wants done this tick.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ControllerDecisions {
    /// Commands to propose, in order.
    pub commands: Vec<MetadataCommand>,
    /// Registered brokers to add to the Raft configuration as learners.
    pub learners_to_add: Vec<NodeId>,
    /// Learners whose broker was removed (decommissioned): they leave the Raft configuration.
    pub learners_to_remove: Vec<NodeId>,
}

impl ControllerView<'_> {
    /// When `node` counts as last heard from, for fencing.
    fn session_start_ms(&self, node: NodeId) -> u64 {
        if node == self.controller {
            return self.now_ms;
        }
        match self.last_heard_ms.get(&node) {
            Some(heard) if *heard >= self.leadership_began_ms => *heard,
            _ if Some(node) == self.previous_leader => self
                .leadership_began_ms
                .saturating_sub(self.election_timeout_ms),
            _ => self.leadership_began_ms,
        }
    }

    fn heard_recently(&self, node: NodeId) -> bool {
        if node == self.controller {
            return true;
        }
        self.last_heard_ms.get(&node).is_some_and(|heard| {
            self.now_ms.saturating_sub(*heard) < self.broker_session_timeout_ms
        })
    }
}

/// The controller's decisions at one tick (see the module docs for the rules).
pub fn controller_decisions(view: &ControllerView<'_>) -> ControllerDecisions {
    let mut decisions = ControllerDecisions::default();
    for broker in view.image.brokers.values() {
        let id = broker.id;
        if !broker.fenced {
            let silent_ms = view.now_ms.saturating_sub(view.session_start_ms(id));
            if silent_ms >= view.broker_session_timeout_ms {
                decisions.commands.push(MetadataCommand::FenceBroker {
                    id,
                    incarnation: broker.incarnation,
                });
            }
        } else {
            let caught_up = if id == view.controller {
                view.image.applied_index >= broker.registered_index
            } else {
                view.matched_index
                    .get(&id)
                    .is_some_and(|matched| *matched >= broker.registered_index)
            };
            if caught_up && view.heard_recently(id) {
                decisions.commands.push(MetadataCommand::UnfenceBroker {
                    id,
                    incarnation: broker.incarnation,
                });
            }
        }
        if broker.decommissioning {
            let hosts = view.image.topics.values().any(|topic| {
                topic
                    .partitions
                    .iter()
                    .any(|partition| partition.is_hosted_by(id))
            });
            if !hosts {
                decisions
                    .commands
                    .push(MetadataCommand::RemoveBroker { id });
            }
        }
        if !view.raft_members.contains(&id) {
            decisions.learners_to_add.push(id);
        }
    }
    if view.leader_balance_due {
        let unbalanced = preferred_leaders_not_leading(view.image);
        if !unbalanced.is_empty() {
            decisions
                .commands
                .push(MetadataCommand::ElectPreferredLeaders {
                    partitions: Some(unbalanced),
                });
        }
    }
    decisions.learners_to_remove = view
        .raft_members
        .iter()
        .copied()
        .filter(|member| {
            !view.raft_voters.contains(member) && !view.image.brokers.contains_key(member)
        })
        .collect();
    decisions
}

/// Partitions, as (topic id, partition), whose preferred replica could lead and does not: it is
/// an active broker and in the ISR, and no reassignment is moving the partition.
fn preferred_leaders_not_leading(image: &MetadataImage) -> Vec<(u64, u32)> {
    let active = |node: NodeId| image.brokers.get(&node).is_some_and(|b| b.is_active());
    let mut partitions = Vec::new();
    for topic in image.topics.values() {
        for (number, partition) in topic.partitions.iter().enumerate() {
            let Some(&preferred) = partition.replicas.first() else {
                continue;
            };
            if partition.leader != Some(preferred)
                && !partition.is_reassigning()
                && active(preferred)
                && partition.isr.contains(&preferred)
            {
                partitions.push((topic.id, number as u32));
            }
        }
    }
    partitions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::MetadataCommand as C;

    struct World {
        image: MetadataImage,
        heard: BTreeMap<NodeId, u64>,
        matched: BTreeMap<NodeId, u64>,
        members: BTreeSet<NodeId>,
        voters: BTreeSet<NodeId>,
        index: u64,
    }

    impl World {
        /// Brokers 0..count registered, unfenced, Raft members, fully caught up.
        fn new(count: NodeId) -> Self {
            let mut world = World {
                image: MetadataImage::default(),
                heard: BTreeMap::new(),
                matched: BTreeMap::new(),
                members: BTreeSet::new(),
                voters: BTreeSet::new(),
                index: 0,
            };
            for id in 0..count {
                world.register(id, 1);
                world.apply(C::UnfenceBroker { id, incarnation: 1 });
                world.members.insert(id);
                world.voters.insert(id);
            }
            for id in 0..count {
                world.matched.insert(id, world.index);
            }
            world
        }

        fn register(&mut self, id: NodeId, incarnation: u64) {
            self.apply(C::RegisterBroker {
                id,
                incarnation,
                native: ("h".into(), 1),
                kafka: None,
                rack: None,
            });
        }

        fn apply(&mut self, command: MetadataCommand) {
            self.index += 1;
            self.image.apply(self.index, &command).unwrap();
        }

        fn decide(
            &self,
            now_ms: u64,
            began_ms: u64,
            previous: Option<NodeId>,
        ) -> ControllerDecisions {
            controller_decisions(&ControllerView {
                image: &self.image,
                controller: 0,
                now_ms,
                leadership_began_ms: began_ms,
                previous_leader: previous,
                last_heard_ms: &self.heard,
                matched_index: &self.matched,
                raft_members: &self.members,
                raft_voters: &self.voters,
                broker_session_timeout_ms: 1500,
                election_timeout_ms: 1000,
                leader_balance_due: false,
            })
        }
    }

    #[test]
    fn a_silent_broker_is_fenced_after_its_session_timeout() {
        let mut world = World::new(3);
        world.heard.insert(1, 10_000);
        world.heard.insert(2, 10_000);
        assert!(world.decide(11_499, 0, None).commands.is_empty());
        assert_eq!(
            world.decide(11_500, 0, None).commands,
            vec![
                C::FenceBroker {
                    id: 1,
                    incarnation: 1
                },
                C::FenceBroker {
                    id: 2,
                    incarnation: 1
                }
            ]
        );
        world.heard.insert(2, 11_400);
        assert_eq!(
            world.decide(11_500, 0, None).commands,
            vec![C::FenceBroker {
                id: 1,
                incarnation: 1
            }]
        );
    }

    #[test]
    fn a_new_controller_gives_everyone_a_session_but_the_previous_leader_a_shorter_one() {
        let world = World::new(3);
        // Leadership began at 20 000; nobody heard since. Broker 2 led before.
        let began = 20_000;
        assert!(world
            .decide(began + 499, began, Some(2))
            .commands
            .is_empty());
        assert_eq!(
            world.decide(began + 500, began, Some(2)).commands,
            vec![C::FenceBroker {
                id: 2,
                incarnation: 1
            }],
            "the dead controller is fenced 500 ms into the new leadership"
        );
        assert_eq!(world.decide(began + 1500, began, Some(2)).commands.len(), 2);
    }

    #[test]
    fn the_controller_never_fences_itself() {
        let world = World::new(1);
        assert!(world.decide(1_000_000, 0, None).commands.is_empty());
    }

    #[test]
    fn a_fenced_broker_is_unfenced_once_heard_and_caught_up_with_its_registration() {
        let mut world = World::new(2);
        world.register(1, 2);
        let registered = world.image.brokers[&1].registered_index;
        world.heard.insert(1, 5_000);
        world.matched.insert(1, registered - 1);
        assert!(
            world.decide(5_100, 0, None).commands.is_empty(),
            "not caught up"
        );
        world.matched.insert(1, registered);
        assert_eq!(
            world.decide(5_100, 0, None).commands,
            vec![C::UnfenceBroker {
                id: 1,
                incarnation: 2
            }]
        );
        assert!(
            !world
                .decide(6_600, 0, None)
                .commands
                .contains(&C::FenceBroker {
                    id: 0,
                    incarnation: 1
                }),
            "the controller itself stays unfenced"
        );
        assert!(
            !world
                .decide(6_600, 0, None)
                .commands
                .contains(&C::UnfenceBroker {
                    id: 1,
                    incarnation: 2
                }),
            "not heard for a session: stays fenced"
        );
    }

    #[test]
    fn registered_brokers_outside_raft_become_learners_and_empty_decommissions_finish() {
        let mut world = World::new(2);
        world.register(7, 1);
        assert_eq!(world.decide(0, 0, None).learners_to_add, vec![7]);
        world.apply(C::DecommissionBroker { id: 7 });
        assert!(world
            .decide(0, 0, None)
            .commands
            .contains(&C::RemoveBroker { id: 7 }));
        world.members.insert(7);
        assert!(world.decide(0, 0, None).learners_to_remove.is_empty());
        world.apply(C::RemoveBroker { id: 7 });
        assert_eq!(world.decide(0, 0, None).learners_to_remove, vec![7]);
        // A voter stays a voter even when its broker is gone.
        world.image.brokers.remove(&1);
        assert_eq!(world.decide(0, 0, None).learners_to_remove, vec![7]);
    }

    #[test]
    fn a_due_balance_elects_preferred_replicas_that_are_back_in_sync() {
        let mut world = World::new(3);
        world.apply(C::CreateTopic {
            name: "t".into(),
            partitions: 1,
            replication_factor: None,
            assignments: Some(vec![vec![1, 2, 0]]),
            config: BTreeMap::new(),
        });
        let topic_id = world.image.topics["t"].id;
        let balance = |world: &World| {
            controller_decisions(&ControllerView {
                image: &world.image,
                controller: 0,
                now_ms: 0,
                leadership_began_ms: 0,
                previous_leader: None,
                last_heard_ms: &world.heard,
                matched_index: &world.matched,
                raft_members: &world.members,
                raft_voters: &world.voters,
                broker_session_timeout_ms: u64::MAX,
                election_timeout_ms: 1000,
                leader_balance_due: true,
            })
            .commands
        };
        // The preferred replica leads: nothing to do.
        assert!(balance(&world).is_empty());
        // Broker 1 dies: broker 2 leads, and while 1 is fenced nothing is elected.
        world.apply(C::FenceBroker {
            id: 1,
            incarnation: 1,
        });
        assert_eq!(world.image.partition(topic_id, 0).unwrap().leader, Some(2));
        assert!(balance(&world).is_empty());
        // Back (unfenced) but not yet in sync: still nothing.
        world.apply(C::UnfenceBroker {
            id: 1,
            incarnation: 1,
        });
        assert!(balance(&world).is_empty());
        // In sync again: leadership goes back to it.
        let partition = world.image.partition(topic_id, 0).unwrap().clone();
        world.apply(C::AlterPartition {
            topic_id,
            partition: 0,
            leader: 2,
            leader_epoch: partition.leader_epoch,
            partition_epoch: partition.partition_epoch,
            new_isr: vec![2, 0, 1],
        });
        assert_eq!(
            balance(&world),
            vec![C::ElectPreferredLeaders {
                partitions: Some(vec![(topic_id, 0)])
            }]
        );
        // Not due: nothing.
        assert!(world.decide(0, 0, None).commands.is_empty());
    }
}
