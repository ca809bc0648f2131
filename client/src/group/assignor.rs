//! Partition assignors: how a group's leader shares the subscribed topics' partitions among the
//! members. As in Kafka, the leader (a client) computes the assignment; the broker only relays
//! it. Three are built in:
//!
//! - [`RangeAssignor`] (`range`): per topic, consecutive ranges of partitions to the members
//!   subscribed to it, in member order; the first members get one more when it does not divide.
//! - [`RoundRobinAssignor`] (`roundrobin`): every subscribed partition, in (topic, partition)
//!   order, dealt to the subscribed members in turn.
//! - [`StickyAssignor`] (`sticky`): a balanced assignment that moves as few partitions as
//!   possible from where they are now (the members report what they own when they join).
//!
//! Assignors are pure functions of their input: no I/O, no clock, deterministic, so every
//! leader computes the same answer for the same group.

use std::collections::{BTreeMap, BTreeSet};

use crate::consumer::TopicPartition;

/// One member as the leader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignorMember {
    /// The member's id in the group.
    pub member_id: String,
    /// Its static instance id, if it has one.
    pub group_instance_id: Option<String>,
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it owned before this rebalance.
    pub owned: Vec<TopicPartition>,
}

/// The assignment: member id → its partitions, in order. Every member appears, possibly with
/// no partitions.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Shares partitions among members.
pub trait Assignor: Send + Sync {
    /// The protocol name members announce (`range`, `roundrobin`, `sticky`); members of one
    /// group must share at least one.
    fn name(&self) -> &'static str;

    /// Assigns every partition of `partition_counts` (topic → partition count) that some member
    /// subscribes to, each to exactly one member subscribed to its topic.
    fn assign(
        &self,
        members: &[AssignorMember],
        partition_counts: &BTreeMap<String, u32>,
    ) -> Assignment;
}

fn empty_assignment(members: &[AssignorMember]) -> Assignment {
    members
        .iter()
        .map(|member| (member.member_id.clone(), Vec::new()))
        .collect()
}

/// Members subscribed to each topic that exists, in member id order.
fn subscribers<'a>(
    members: &'a [AssignorMember],
    partition_counts: &BTreeMap<String, u32>,
) -> BTreeMap<String, Vec<&'a str>> {
    let mut sorted: Vec<&AssignorMember> = members.iter().collect();
    sorted.sort_by(|left, right| left.member_id.cmp(&right.member_id));
    partition_counts
        .keys()
        .map(|topic| {
            let subscribed = sorted
                .iter()
                .filter(|member| member.topics.contains(topic))
                .map(|member| member.member_id.as_str())
                .collect();
            (topic.clone(), subscribed)
        })
        .collect()
}

/// Kafka's range assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RangeAssignor;

impl Assignor for RangeAssignor {
    fn name(&self) -> &'static str {
        "range"
    }

    fn assign(
        &self,
        members: &[AssignorMember],
        partition_counts: &BTreeMap<String, u32>,
    ) -> Assignment {
        let mut assignment = empty_assignment(members);
        for (topic, subscribed) in subscribers(members, partition_counts) {
            if subscribed.is_empty() {
                continue;
            }
            let count = partition_counts[&topic] as usize;
            let share = count / subscribed.len();
            let extra = count % subscribed.len();
            let mut next = 0u32;
            for (index, member_id) in subscribed.iter().enumerate() {
                let partitions = assignment.get_mut(*member_id).expect("every member listed");
                for _ in 0..share + usize::from(index < extra) {
                    partitions.push(TopicPartition::new(topic.clone(), next));
                    next += 1;
                }
            }
        }
        assignment
    }
}

/// Kafka's round-robin assignor.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundRobinAssignor;

impl Assignor for RoundRobinAssignor {
    fn name(&self) -> &'static str {
        "roundrobin"
    }

    fn assign(
        &self,
        members: &[AssignorMember],
        partition_counts: &BTreeMap<String, u32>,
    ) -> Assignment {
        let mut assignment = empty_assignment(members);
        let member_ids: Vec<String> = assignment.keys().cloned().collect();
        if member_ids.is_empty() {
            return assignment;
        }
        let subscribed = subscribers(members, partition_counts);
        let mut turn = 0usize;
        for (topic, count) in partition_counts {
            let takers = &subscribed[topic];
            if takers.is_empty() {
                continue;
            }
            for partition in 0..*count {
                // The next member in the circle that subscribes to this topic.
                while !takers.contains(&member_ids[turn % member_ids.len()].as_str()) {
                    turn += 1;
                }
                let member_id = &member_ids[turn % member_ids.len()];
                assignment
                    .get_mut(member_id)
                    .expect("every member listed")
                    .push(TopicPartition::new(topic.clone(), partition));
                turn += 1;
            }
        }
        assignment
    }
}

/// A balanced assignment that keeps partitions where they are when it can.
///
/// 1. Each member keeps the partitions it owned that still exist and that it still subscribes
///    to (a partition two members claim stays with the first, by member id).
/// 2. Every other partition goes to the subscribed member with the fewest partitions.
/// 3. While some member has at least two more partitions than another member that could take
///    one of them, one partition moves from the fuller to the emptier member.
///
/// With every member subscribed to the same topics this ends with counts that differ by at
/// most one, and a member joining or leaving moves only the partitions needed for that.
#[derive(Debug, Clone, Copy, Default)]
pub struct StickyAssignor;

impl Assignor for StickyAssignor {
    fn name(&self) -> &'static str {
        "sticky"
    }

    fn assign(
        &self,
        members: &[AssignorMember],
        partition_counts: &BTreeMap<String, u32>,
    ) -> Assignment {
        let mut sorted: Vec<&AssignorMember> = members.iter().collect();
        sorted.sort_by(|left, right| left.member_id.cmp(&right.member_id));
        let subscribes = |member_id: &str, topic: &str| {
            members.iter().any(|member| {
                member.member_id == member_id && member.topics.iter().any(|name| name == topic)
            })
        };
        let exists = |partition: &TopicPartition| {
            partition_counts
                .get(&partition.topic)
                .is_some_and(|count| partition.partition < *count)
        };
        let mut owners: BTreeMap<TopicPartition, String> = BTreeMap::new();
        let mut held: BTreeMap<String, BTreeSet<TopicPartition>> = sorted
            .iter()
            .map(|member| (member.member_id.clone(), BTreeSet::new()))
            .collect();
        // 1. Keep what is still valid.
        for member in &sorted {
            for partition in &member.owned {
                if exists(partition)
                    && subscribes(&member.member_id, &partition.topic)
                    && !owners.contains_key(partition)
                {
                    owners.insert(partition.clone(), member.member_id.clone());
                    held.get_mut(&member.member_id)
                        .expect("listed")
                        .insert(partition.clone());
                }
            }
        }
        // 2. Place the rest on the least loaded subscriber.
        let subscribed = subscribers(members, partition_counts);
        for (topic, count) in partition_counts {
            for partition in 0..*count {
                let key = TopicPartition::new(topic.clone(), partition);
                if owners.contains_key(&key) {
                    continue;
                }
                let Some(member_id) = subscribed[topic]
                    .iter()
                    .min_by_key(|member_id| (held[**member_id].len(), **member_id))
                else {
                    continue;
                };
                owners.insert(key.clone(), member_id.to_string());
                held.get_mut(*member_id).expect("listed").insert(key);
            }
        }
        // 3. Even out, one move at a time. Each move lowers the sum of squared counts, so this
        //    ends; the bound is a safety net.
        for _ in 0..owners.len() {
            let Some((from, to, partition)) = best_move(&held, &subscribes) else {
                break;
            };
            held.get_mut(&from).expect("listed").remove(&partition);
            held.get_mut(&to).expect("listed").insert(partition);
        }
        held.into_iter()
            .map(|(member_id, partitions)| (member_id, partitions.into_iter().collect()))
            .collect()
    }
}

/// A move from the fullest member to the emptiest one that can take one of its partitions, if
/// that narrows the gap (counts differing by two or more).
fn best_move(
    held: &BTreeMap<String, BTreeSet<TopicPartition>>,
    subscribes: &dyn Fn(&str, &str) -> bool,
) -> Option<(String, String, TopicPartition)> {
    let mut by_load: Vec<(&String, &BTreeSet<TopicPartition>)> = held.iter().collect();
    by_load.sort_by(|left, right| right.1.len().cmp(&left.1.len()).then(left.0.cmp(right.0)));
    for (from, partitions) in &by_load {
        for (to, taken) in by_load.iter().rev() {
            if taken.len() + 2 > partitions.len() {
                break;
            }
            // The highest partition moves: the lower ones stay where they were longest.
            if let Some(partition) = partitions
                .iter()
                .rev()
                .find(|partition| subscribes(to, &partition.topic))
            {
                return Some(((*from).clone(), (*to).clone(), partition.clone()));
            }
        }
    }
    None
}

/// The built-in assignor called `name`.
pub fn built_in(name: &str) -> Option<Box<dyn Assignor>> {
    match name {
        "range" => Some(Box::new(RangeAssignor)),
        "roundrobin" => Some(Box::new(RoundRobinAssignor)),
        "sticky" => Some(Box::new(StickyAssignor)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(member_id: &str, topics: &[&str], owned: &[(&str, u32)]) -> AssignorMember {
        AssignorMember {
            member_id: member_id.to_string(),
            group_instance_id: None,
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            owned: owned
                .iter()
                .map(|(topic, partition)| TopicPartition::new(*topic, *partition))
                .collect(),
        }
    }

    fn counts(topics: &[(&str, u32)]) -> BTreeMap<String, u32> {
        topics
            .iter()
            .map(|(topic, count)| (topic.to_string(), *count))
            .collect()
    }

    fn numbers(assignment: &Assignment, member_id: &str) -> Vec<u32> {
        assignment[member_id]
            .iter()
            .map(|partition| partition.partition)
            .collect()
    }

    /// Every partition of a subscribed topic owned by exactly one member that subscribes to it.
    fn assert_valid(
        assignment: &Assignment,
        members: &[AssignorMember],
        partition_counts: &BTreeMap<String, u32>,
    ) {
        let mut seen = BTreeSet::new();
        for (member_id, partitions) in assignment {
            let member = members
                .iter()
                .find(|member| &member.member_id == member_id)
                .expect("only members are assigned");
            for partition in partitions {
                assert!(
                    member.topics.contains(&partition.topic),
                    "{member_id} got {partition} without subscribing"
                );
                assert!(seen.insert(partition.clone()), "{partition} assigned twice");
            }
        }
        for (topic, count) in partition_counts {
            if members.iter().any(|member| member.topics.contains(topic)) {
                for partition in 0..*count {
                    assert!(
                        seen.contains(&TopicPartition::new(topic.clone(), partition)),
                        "{topic}/{partition} unassigned"
                    );
                }
            }
        }
    }

    fn spread(assignment: &Assignment) -> usize {
        let sizes: Vec<usize> = assignment.values().map(Vec::len).collect();
        sizes.iter().max().unwrap_or(&0) - sizes.iter().min().unwrap_or(&0)
    }

    #[test]
    fn range_gives_consecutive_ranges_and_the_remainder_to_the_first_members() {
        let members = [
            member("a", &["t"], &[]),
            member("b", &["t"], &[]),
            member("c", &["t"], &[]),
        ];
        let partition_counts = counts(&[("t", 8)]);
        let assignment = RangeAssignor.assign(&members, &partition_counts);
        assert_eq!(numbers(&assignment, "a"), vec![0, 1, 2]);
        assert_eq!(numbers(&assignment, "b"), vec![3, 4, 5]);
        assert_eq!(numbers(&assignment, "c"), vec![6, 7]);
        assert_valid(&assignment, &members, &partition_counts);
    }

    #[test]
    fn round_robin_deals_partitions_in_turn_and_skips_members_not_subscribed() {
        let members = [member("a", &["t", "u"], &[]), member("b", &["t"], &[])];
        let partition_counts = counts(&[("t", 3), ("u", 2)]);
        let assignment = RoundRobinAssignor.assign(&members, &partition_counts);
        assert_eq!(
            assignment["a"],
            vec![
                TopicPartition::new("t", 0),
                TopicPartition::new("t", 2),
                TopicPartition::new("u", 0),
                TopicPartition::new("u", 1)
            ]
        );
        assert_eq!(assignment["b"], vec![TopicPartition::new("t", 1)]);
        assert_valid(&assignment, &members, &partition_counts);
    }

    #[test]
    fn topics_nobody_subscribes_to_are_not_assigned() {
        let members = [member("a", &["t"], &[])];
        let partition_counts = counts(&[("t", 2), ("other", 5)]);
        for assignor in [
            built_in("range").unwrap(),
            built_in("roundrobin").unwrap(),
            built_in("sticky").unwrap(),
        ] {
            let assignment = assignor.assign(&members, &partition_counts);
            assert_eq!(assignment["a"].len(), 2, "{}", assignor.name());
        }
    }

    #[test]
    fn sticky_keeps_everything_in_place_when_nothing_changed() {
        let owned_a: Vec<(&str, u32)> = (0..6).map(|partition| ("t", partition)).collect();
        let owned_b: Vec<(&str, u32)> = (6..12).map(|partition| ("t", partition)).collect();
        let members = [member("a", &["t"], &owned_a), member("b", &["t"], &owned_b)];
        let assignment = StickyAssignor.assign(&members, &counts(&[("t", 12)]));
        assert_eq!(numbers(&assignment, "a"), (0..6).collect::<Vec<_>>());
        assert_eq!(numbers(&assignment, "b"), (6..12).collect::<Vec<_>>());
    }

    #[test]
    fn sticky_moves_only_a_departed_members_partitions() {
        let members = [
            member("a", &["t"], &[("t", 0), ("t", 1), ("t", 2), ("t", 3)]),
            member("c", &["t"], &[("t", 8), ("t", 9), ("t", 10), ("t", 11)]),
        ];
        // b (partitions 4..8) is gone.
        let partition_counts = counts(&[("t", 12)]);
        let assignment = StickyAssignor.assign(&members, &partition_counts);
        assert_valid(&assignment, &members, &partition_counts);
        assert_eq!(spread(&assignment), 0);
        for partition in [0, 1, 2, 3] {
            assert!(numbers(&assignment, "a").contains(&partition));
        }
        for partition in [8, 9, 10, 11] {
            assert!(numbers(&assignment, "c").contains(&partition));
        }
    }

    #[test]
    fn sticky_gives_a_new_member_its_share_and_moves_nothing_else() {
        let owned_a: Vec<(&str, u32)> = (0..6).map(|partition| ("t", partition)).collect();
        let owned_b: Vec<(&str, u32)> = (6..12).map(|partition| ("t", partition)).collect();
        let members = [
            member("a", &["t"], &owned_a),
            member("b", &["t"], &owned_b),
            member("c", &["t"], &[]),
        ];
        let partition_counts = counts(&[("t", 12)]);
        let assignment = StickyAssignor.assign(&members, &partition_counts);
        assert_valid(&assignment, &members, &partition_counts);
        assert_eq!(assignment["c"].len(), 4);
        let moved = assignment["a"]
            .iter()
            .filter(|partition| partition.partition >= 6)
            .count()
            + assignment["b"]
                .iter()
                .filter(|partition| partition.partition < 6)
                .count();
        assert_eq!(moved, 0, "a and b only gave partitions away");
        assert_eq!(spread(&assignment), 0);
    }

    #[test]
    fn a_partition_claimed_twice_stays_with_one_member() {
        let members = [
            member("a", &["t"], &[("t", 0)]),
            member("b", &["t"], &[("t", 0)]),
        ];
        let partition_counts = counts(&[("t", 2)]);
        let assignment = StickyAssignor.assign(&members, &partition_counts);
        assert_valid(&assignment, &members, &partition_counts);
    }

    /// A small deterministic generator, so these checks need no extra dependency.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, bound: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % bound.max(1)
        }
    }

    #[test]
    fn every_assignor_covers_every_subscribed_partition_once_for_random_groups() {
        let mut random = Lcg(7);
        for case in 0..300 {
            let topic_count = 1 + random.below(3) as usize;
            let topics: Vec<String> = (0..topic_count)
                .map(|index| format!("topic-{index}"))
                .collect();
            let partition_counts: BTreeMap<String, u32> = topics
                .iter()
                .map(|topic| (topic.clone(), 1 + random.below(20) as u32))
                .collect();
            let member_count = 1 + random.below(8) as usize;
            let members: Vec<AssignorMember> = (0..member_count)
                .map(|index| {
                    let subscribed: Vec<&str> = topics
                        .iter()
                        .filter(|_| random.below(3) > 0)
                        .map(String::as_str)
                        .collect();
                    let owned: Vec<(&str, u32)> = (0..random.below(6))
                        .map(|_| {
                            let topic = &topics[random.below(topic_count as u64) as usize];
                            (topic.as_str(), random.below(25) as u32)
                        })
                        .collect();
                    member(&format!("member-{index}"), &subscribed, &owned)
                })
                .collect();
            let uniform: Vec<AssignorMember> = members
                .iter()
                .map(|member| AssignorMember {
                    topics: topics.clone(),
                    ..member.clone()
                })
                .collect();
            for assignor in [
                built_in("range").unwrap(),
                built_in("roundrobin").unwrap(),
                built_in("sticky").unwrap(),
            ] {
                let assignment = assignor.assign(&members, &partition_counts);
                assert_valid(&assignment, &members, &partition_counts);
                assert_eq!(assignment.len(), members.len(), "case {case}");
                let repeated = assignor.assign(&members, &partition_counts);
                assert_eq!(assignment, repeated, "{} is deterministic", assignor.name());
            }
            // With the same subscriptions, round robin and sticky balance to within one.
            for assignor in [built_in("roundrobin").unwrap(), built_in("sticky").unwrap()] {
                let assignment = assignor.assign(&uniform, &partition_counts);
                assert_valid(&assignment, &uniform, &partition_counts);
                assert!(
                    spread(&assignment) <= 1,
                    "case {case}: {} spread {}",
                    assignor.name(),
                    spread(&assignment)
                );
            }
        }
    }

    #[test]
    fn sticky_moves_no_more_than_needed_when_a_member_joins_a_balanced_group() {
        let mut random = Lcg(11);
        for _ in 0..100 {
            let partitions = 4 + random.below(40) as u32;
            let before_count = 1 + random.below(6) as usize;
            let partition_counts = counts(&[("t", partitions)]);
            let before_members: Vec<AssignorMember> = (0..before_count)
                .map(|index| member(&format!("m{index}"), &["t"], &[]))
                .collect();
            let before = StickyAssignor.assign(&before_members, &partition_counts);
            let mut after_members: Vec<AssignorMember> = before
                .iter()
                .map(|(member_id, owned)| AssignorMember {
                    owned: owned.clone(),
                    ..member(member_id, &["t"], &[])
                })
                .collect();
            after_members.push(member("newcomer", &["t"], &[]));
            let after = StickyAssignor.assign(&after_members, &partition_counts);
            let moved: usize = before
                .iter()
                .map(|(member_id, owned)| {
                    owned
                        .iter()
                        .filter(|partition| !after[member_id].contains(partition))
                        .count()
                })
                .sum();
            // The newcomer's fair share is all that has to move.
            let fair_share = partitions as usize / (before_count + 1);
            assert_eq!(after["newcomer"].len(), moved);
            assert!(
                moved <= fair_share + 1,
                "moved {moved}, fair share {fair_share}"
            );
            assert!(spread(&after) <= 1);
        }
    }
}
