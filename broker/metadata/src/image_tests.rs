//! Unit tests of `MetadataImage::apply`, one group per rule, and a seeded run of random
//! commands that checks every invariant after each apply.

use super::*;
use crate::commands::MetadataCommand as C;
use crate::security::{AclBindingRecord, AclFilterRecord, ScramCredentialRecord};
use spate_storage::SimulationRng;

/// An image with brokers `ids` registered and unfenced.
fn cluster(ids: &[NodeId]) -> (MetadataImage, u64) {
    let mut image = MetadataImage::default();
    let mut index = 0;
    for id in ids {
        index += 1;
        image.apply(index, &register(*id, 1)).unwrap();
        index += 1;
        image
            .apply(
                index,
                &C::UnfenceBroker {
                    id: *id,
                    incarnation: 1,
                },
            )
            .unwrap();
    }
    (image, index)
}

fn register(id: NodeId, incarnation: u64) -> MetadataCommand {
    C::RegisterBroker {
        id,
        incarnation,
        native: (format!("127.0.0.{}", id + 1), 9000),
        kafka: None,
        rack: None,
    }
}

fn create(name: &str, partitions: u32, factor: Option<u16>) -> MetadataCommand {
    C::CreateTopic {
        name: name.into(),
        partitions,
        replication_factor: factor,
        assignments: None,
        config: BTreeMap::new(),
    }
}

struct Steps {
    image: MetadataImage,
    index: u64,
}

impl Steps {
    fn new(ids: &[NodeId]) -> Self {
        let (image, index) = cluster(ids);
        Self { image, index }
    }

    fn apply(&mut self, command: MetadataCommand) -> Result<ApplyOutcome, ApplyError> {
        self.index += 1;
        let before = self.image.clone();
        let result = self.image.apply(self.index, &command);
        if result.is_err() {
            let mut expected = before;
            expected.applied_index = self.index;
            assert_eq!(
                self.image, expected,
                "a refused {command:?} changed the image"
            );
        }
        self.image.check_invariants().unwrap();
        result
    }

    fn topic_id(&mut self, name: &str, partitions: u32, factor: Option<u16>) -> u64 {
        match self.apply(create(name, partitions, factor)).unwrap() {
            ApplyOutcome::TopicCreated { topic_id } => topic_id,
            other => panic!("{other:?}"),
        }
    }

    fn partition(&self, topic_id: u64, partition: u32) -> PartitionImage {
        self.image.partition(topic_id, partition).unwrap().clone()
    }

    fn fence(&mut self, id: NodeId) {
        let incarnation = self.image.brokers[&id].incarnation;
        self.apply(C::FenceBroker { id, incarnation }).unwrap();
    }

    fn unfence(&mut self, id: NodeId) {
        let incarnation = self.image.brokers[&id].incarnation;
        self.apply(C::UnfenceBroker { id, incarnation }).unwrap();
    }

    fn alter_isr(&mut self, topic_id: u64, partition: u32, new_isr: &[NodeId]) -> ApplyResult {
        let current = self.partition(topic_id, partition);
        self.apply(C::AlterPartition {
            topic_id,
            partition,
            leader: current.leader.unwrap(),
            leader_epoch: current.leader_epoch,
            partition_epoch: current.partition_epoch,
            new_isr: new_isr.to_vec(),
        })
    }
}

#[test]
fn assignment_is_round_robin_from_topic_id_modulo_brokers() {
    let mut steps = Steps::new(&[0, 1, 2, 3]);
    let topic_id = steps.topic_id("t", 4, Some(3));
    assert_eq!(topic_id, 1);
    // start = 1 % 4 = 1; partition p gets brokers (1 + p + k) % 4.
    let replicas: Vec<Vec<NodeId>> = (0..4)
        .map(|p| steps.partition(topic_id, p).replicas)
        .collect();
    assert_eq!(
        replicas,
        vec![vec![1, 2, 3], vec![2, 3, 0], vec![3, 0, 1], vec![0, 1, 2]]
    );
    for p in 0..4 {
        let partition = steps.partition(topic_id, p);
        assert_eq!(partition.isr, partition.replicas);
        assert_eq!(partition.leader, Some(partition.replicas[0]));
        assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 0));
    }
}

#[test]
fn default_replication_factor_is_three_or_every_active_broker() {
    let mut steps = Steps::new(&[5, 7]);
    let topic_id = steps.topic_id("small", 1, None);
    assert_eq!(steps.partition(topic_id, 0).replicas.len(), 2);
    steps.apply(register(9, 1)).unwrap();
    steps.unfence(9);
    steps.apply(register(11, 1)).unwrap();
    steps.unfence(11);
    let topic_id = steps.topic_id("big", 1, None);
    assert_eq!(steps.partition(topic_id, 0).replicas.len(), 3);
}

#[test]
fn replication_factor_above_the_active_brokers_is_refused() {
    let mut steps = Steps::new(&[0, 1, 2]);
    steps.fence(2);
    assert_eq!(
        steps.apply(create("t", 1, Some(3))),
        Err(ApplyError::InvalidReplicationFactor {
            requested: 3,
            available: 2
        })
    );
    assert_eq!(
        steps.apply(create("t", 1, Some(0))),
        Err(ApplyError::InvalidReplicationFactor {
            requested: 0,
            available: 2
        })
    );
    // An empty cluster refuses the default replication factor too.
    assert_eq!(
        MetadataImage::default().apply(1, &create("t", 1, None)),
        Err(ApplyError::InvalidReplicationFactor {
            requested: 1,
            available: 0
        })
    );
    // Fenced brokers get no replicas.
    let topic_id = steps.topic_id("t", 6, None);
    for p in 0..6 {
        assert!(!steps.partition(topic_id, p).replicas.contains(&2));
    }
}

#[test]
fn concurrent_creates_of_one_name_resolve_to_the_first() {
    let mut steps = Steps::new(&[0]);
    steps.topic_id("dup", 1, None);
    assert_eq!(
        steps.apply(create("dup", 3, None)),
        Err(ApplyError::TopicExists { name: "dup".into() })
    );
    assert_eq!(steps.image.topics["dup"].partitions.len(), 1);
    assert_eq!(steps.image.next_topic_id, 2);
}

#[test]
fn topic_names_follow_the_kafka_rule() {
    let mut steps = Steps::new(&[0]);
    for bad in ["", ".", "..", "a b", "é", &"x".repeat(250)] {
        assert!(
            matches!(
                steps.apply(create(bad, 1, None)),
                Err(ApplyError::InvalidTopicName { .. })
            ),
            "{bad:?}"
        );
    }
    steps.topic_id(&"x".repeat(249), 1, None);
    steps.topic_id("a.b_c-D9", 1, None);
    assert!(matches!(
        steps.apply(create("zero", 0, None)),
        Err(ApplyError::InvalidPartitions { .. })
    ));
}

#[test]
fn explicit_assignments_must_name_distinct_active_brokers_with_one_length() {
    let mut steps = Steps::new(&[0, 1, 2]);
    steps.fence(2);
    let with = |assignments: Vec<Vec<NodeId>>| C::CreateTopic {
        name: "t".into(),
        partitions: assignments.len() as u32,
        replication_factor: None,
        assignments: Some(assignments),
        config: BTreeMap::new(),
    };
    assert!(matches!(
        steps.apply(with(vec![vec![0, 2]])),
        Err(ApplyError::InvalidReplicaAssignment { .. })
    ));
    assert!(matches!(
        steps.apply(with(vec![vec![0, 0]])),
        Err(ApplyError::InvalidReplicaAssignment { .. })
    ));
    assert!(matches!(
        steps.apply(with(vec![vec![0, 1], vec![1]])),
        Err(ApplyError::InvalidReplicaAssignment { .. })
    ));
    assert_eq!(
        steps.apply(with(vec![vec![0, 9]])),
        Err(ApplyError::UnknownBroker { id: 9 })
    );
    let ApplyOutcome::TopicCreated { topic_id } = steps.apply(with(vec![vec![1, 0]])).unwrap()
    else {
        panic!()
    };
    assert_eq!(steps.partition(topic_id, 0).leader, Some(1));
}

#[test]
fn min_insync_replicas_must_lie_within_the_replication_factor() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let with_min = |value: &str| C::CreateTopic {
        name: "t".into(),
        partitions: 1,
        replication_factor: Some(3),
        assignments: None,
        config: BTreeMap::from([(MIN_INSYNC_REPLICAS.into(), value.into())]),
    };
    for bad in ["0", "4", "two", "-1"] {
        assert!(matches!(
            steps.apply(with_min(bad)),
            Err(ApplyError::InvalidConfig { .. })
        ));
    }
    steps.apply(with_min("3")).unwrap();
    assert_eq!(steps.image.topics["t"].min_insync_replicas(), 3);
    steps
        .apply(C::AlterTopicConfig {
            name: "t".into(),
            config: BTreeMap::new(),
        })
        .unwrap();
    // Default: a majority of RF 3.
    assert_eq!(steps.image.topics["t"].min_insync_replicas(), 2);
    assert!(matches!(
        steps.apply(C::AlterTopicConfig {
            name: "t".into(),
            config: BTreeMap::from([("replication.factor".into(), "3".into())]),
        }),
        Err(ApplyError::InvalidConfig { .. })
    ));
}

#[test]
fn fencing_shrinks_isr_and_moves_leadership_to_the_first_live_member() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 3, Some(3));
    // Partition 2 starts at broker (1 + 2) % 3 = 0: replicas [0, 1, 2], leader 0.
    assert_eq!(steps.partition(topic_id, 2).replicas, vec![0, 1, 2]);
    steps.fence(0);
    let partition = steps.partition(topic_id, 2);
    assert_eq!(partition.isr, vec![1, 2]);
    assert_eq!(partition.leader, Some(1));
    assert_eq!((partition.leader_epoch, partition.partition_epoch), (1, 1));
    // Partition 0 ([1, 2, 0]) keeps its leader: only its ISR and partition epoch change.
    let partition = steps.partition(topic_id, 0);
    assert_eq!(partition.isr, vec![1, 2]);
    assert_eq!(partition.leader, Some(1));
    assert_eq!((partition.leader_epoch, partition.partition_epoch), (0, 1));
    // Fencing again changes nothing.
    let incarnation = steps.image.brokers[&0].incarnation;
    assert_eq!(
        steps.apply(C::FenceBroker { id: 0, incarnation }),
        Ok(ApplyOutcome::Unchanged)
    );
}

#[test]
fn the_last_isr_member_stays_and_no_unclean_leader_is_elected() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 1, Some(3));
    // Replicas [1, 2, 0]: shrink the ISR to the leader alone, then fence it.
    steps.alter_isr(topic_id, 0, &[1]).unwrap();
    steps.fence(1);
    let partition = steps.partition(topic_id, 0);
    assert_eq!(partition.isr, vec![1], "the ISR never empties");
    assert_eq!(
        partition.leader, None,
        "2 and 0 are out of sync: no unclean election"
    );
    assert_eq!(partition.leader_epoch, 1);
    // The last in-sync replica comes back: it leads again, in a new epoch.
    steps.unfence(1);
    let partition = steps.partition(topic_id, 0);
    assert_eq!(partition.leader, Some(1));
    assert_eq!(partition.leader_epoch, 2);
}

#[test]
fn a_new_incarnation_starts_fenced_and_loses_its_leaderships() {
    let mut steps = Steps::new(&[0, 1]);
    let topic_id = steps.topic_id("t", 1, Some(2));
    // Replicas [1, 0].
    assert_eq!(steps.partition(topic_id, 0).leader, Some(1));
    steps.apply(register(1, 2)).unwrap();
    let broker = &steps.image.brokers[&1];
    assert!(broker.fenced);
    assert_eq!(broker.registered_index, steps.index);
    let partition = steps.partition(topic_id, 0);
    assert_eq!(
        (partition.leader, partition.isr.clone()),
        (Some(0), vec![0])
    );
    // The old incarnation can neither register nor be unfenced any more.
    assert_eq!(
        steps.apply(register(1, 1)),
        Err(ApplyError::StaleBrokerEpoch {
            id: 1,
            requested: 1,
            current: 2
        })
    );
    assert!(matches!(
        steps.apply(C::UnfenceBroker {
            id: 1,
            incarnation: 1
        }),
        Err(ApplyError::StaleBrokerEpoch { .. })
    ));
    // A retried registration of the same incarnation changes nothing.
    assert_eq!(steps.apply(register(1, 2)), Ok(ApplyOutcome::Unchanged));
    steps.unfence(1);
    assert!(!steps.image.brokers[&1].fenced);
}

#[test]
fn alter_partition_refuses_stale_epochs_and_malformed_isrs() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 1, Some(3));
    let current = steps.partition(topic_id, 0); // replicas [1, 2, 0], leader 1
    let alter = |leader, leader_epoch, partition_epoch, new_isr: Vec<NodeId>| C::AlterPartition {
        topic_id,
        partition: 0,
        leader,
        leader_epoch,
        partition_epoch,
        new_isr,
    };
    assert!(matches!(
        steps.apply(alter(1, -1, 0, vec![1, 2])),
        Err(ApplyError::StaleLeaderEpoch { .. })
    ));
    assert!(matches!(
        steps.apply(alter(1, 0, 5, vec![1, 2])),
        Err(ApplyError::StalePartitionEpoch { .. })
    ));
    assert!(matches!(
        steps.apply(alter(2, 0, 0, vec![1, 2])),
        Err(ApplyError::NotPartitionLeader { .. })
    ));
    for bad in [vec![2, 0], vec![1, 3], vec![1, 1], vec![]] {
        assert!(
            matches!(
                steps.apply(alter(1, 0, 0, bad.clone())),
                Err(ApplyError::InvalidIsr { .. })
            ),
            "{bad:?}"
        );
    }
    assert_eq!(
        steps.apply(alter(1, 0, 0, vec![1, 2])),
        Ok(ApplyOutcome::Done)
    );
    let after = steps.partition(topic_id, 0);
    assert_eq!(after.isr, vec![1, 2]);
    assert_eq!(after.leader_epoch, current.leader_epoch);
    assert_eq!(after.partition_epoch, current.partition_epoch + 1);
    // The same request again is now stale.
    assert!(matches!(
        steps.apply(alter(1, 0, 0, vec![1, 2, 0])),
        Err(ApplyError::StalePartitionEpoch { .. })
    ));
    // A fenced broker cannot join the ISR.
    steps.fence(0);
    assert!(matches!(
        steps.alter_isr(topic_id, 0, &[1, 2, 0]),
        Err(ApplyError::InvalidIsr { .. })
    ));
}

#[test]
fn reassignment_adds_replicas_then_completes_once_they_are_in_sync() {
    let mut steps = Steps::new(&[0, 1, 2, 3]);
    let topic_id = steps.topic_id("t", 1, Some(2)); // start 1: replicas [1, 2], leader 1
    steps
        .apply(C::ReassignPartition {
            topic_id,
            partition: 0,
            target: Some(vec![3, 2]),
        })
        .unwrap();
    let moving = steps.partition(topic_id, 0);
    assert_eq!(moving.replicas, vec![3, 2, 1]);
    assert_eq!(
        (moving.adding.clone(), moving.removing.clone()),
        (vec![3], vec![1])
    );
    assert_eq!(
        moving.leader,
        Some(1),
        "the leader stays until the target is in sync"
    );
    // A second reassignment while one runs replaces it (Kafka's rule); cancel restores.
    steps
        .apply(C::ReassignPartition {
            topic_id,
            partition: 0,
            target: None,
        })
        .unwrap();
    // As in Kafka, the original replicas come back in the reassignment's order (replicas minus
    // the added ones).
    assert_eq!(steps.partition(topic_id, 0).replicas, vec![2, 1]);
    assert!(!steps.partition(topic_id, 0).is_reassigning());
    assert!(matches!(
        steps.apply(C::ReassignPartition {
            topic_id,
            partition: 0,
            target: None
        }),
        Err(ApplyError::NoReassignmentInProgress { .. })
    ));
    steps
        .apply(C::ReassignPartition {
            topic_id,
            partition: 0,
            target: Some(vec![3, 2]),
        })
        .unwrap();
    // The leader reports 3 caught up: the ISR covers the target, so the move completes and the
    // removed leader hands over to the first in-sync target replica.
    steps.alter_isr(topic_id, 0, &[1, 2, 3]).unwrap();
    let done = steps.partition(topic_id, 0);
    assert_eq!(done.replicas, vec![3, 2]);
    assert_eq!(done.isr, vec![2, 3]);
    assert_eq!(done.leader, Some(2));
    assert!(!done.is_reassigning());
}

#[test]
fn a_shrinking_reassignment_completes_at_once() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 1, Some(3)); // [1, 2, 0]
    steps
        .apply(C::ReassignPartition {
            topic_id,
            partition: 0,
            target: Some(vec![2, 0]),
        })
        .unwrap();
    let partition = steps.partition(topic_id, 0);
    assert_eq!(partition.replicas, vec![2, 0]);
    assert_eq!(partition.leader, Some(2));
    assert!(partition.leader_epoch > 0);
}

#[test]
fn preferred_leader_election_needs_an_in_sync_live_first_replica() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 1, Some(3)); // [1, 2, 0]
    steps.fence(1);
    steps.unfence(1);
    // 1 left the ISR when fenced; it is live again but not in sync.
    assert_eq!(steps.partition(topic_id, 0).leader, Some(2));
    let elect = C::ElectPreferredLeaders {
        partitions: Some(vec![(topic_id, 0), (topic_id, 9)]),
    };
    assert_eq!(
        steps.apply(elect.clone()),
        Ok(ApplyOutcome::LeadersElected {
            results: vec![
                (topic_id, 0, ElectionResult::PreferredNotAvailable),
                (topic_id, 9, ElectionResult::UnknownPartition)
            ]
        })
    );
    steps.alter_isr(topic_id, 0, &[2, 0, 1]).unwrap();
    let epoch = steps.partition(topic_id, 0).leader_epoch;
    assert_eq!(
        steps.apply(C::ElectPreferredLeaders { partitions: None }),
        Ok(ApplyOutcome::LeadersElected {
            results: vec![(topic_id, 0, ElectionResult::Elected)]
        })
    );
    let partition = steps.partition(topic_id, 0);
    assert_eq!(partition.leader, Some(1));
    assert_eq!(partition.leader_epoch, epoch + 1);
}

#[test]
fn decommission_moves_every_replica_off_then_the_broker_can_be_removed() {
    let mut steps = Steps::new(&[0, 1, 2, 3]);
    let topic_id = steps.topic_id("t", 4, Some(2));
    assert!(matches!(
        steps.apply(C::RemoveBroker { id: 1 }),
        Err(ApplyError::BrokerInUse { .. })
    ));
    steps.apply(C::DecommissionBroker { id: 1 }).unwrap();
    assert!(steps.image.brokers[&1].decommissioning);
    for p in 0..4 {
        let partition = steps.partition(topic_id, p);
        assert!(!partition.target_replicas().contains(&1), "{partition:?}");
        // Catch the new replicas up, as the partition leaders would report.
        if partition.is_reassigning() {
            let isr = partition.replicas.clone();
            let isr: Vec<NodeId> = partition
                .isr
                .iter()
                .copied()
                .chain(isr.into_iter().filter(|r| !partition.isr.contains(r)))
                .collect();
            steps.alter_isr(topic_id, p, &isr).unwrap();
        }
        assert!(!steps.partition(topic_id, p).replicas.contains(&1));
    }
    // Decommissioning brokers take no new replicas.
    let other = steps.topic_id("u", 8, Some(3));
    for p in 0..8 {
        assert!(!steps.partition(other, p).replicas.contains(&1));
    }
    steps.apply(C::RemoveBroker { id: 1 }).unwrap();
    assert!(!steps.image.brokers.contains_key(&1));
}

#[test]
fn decommission_without_a_replacement_is_refused_whole() {
    let mut steps = Steps::new(&[0, 1, 2]);
    steps.topic_id("t", 2, Some(3));
    assert_eq!(
        steps.apply(C::DecommissionBroker { id: 0 }),
        Err(ApplyError::InvalidReplicationFactor {
            requested: 3,
            available: 2
        })
    );
    assert!(!steps.image.brokers[&0].decommissioning);
}

#[test]
fn producer_id_blocks_never_overlap() {
    let mut steps = Steps::new(&[0, 1]);
    assert_eq!(
        steps.apply(C::AllocateProducerIds {
            broker: 0,
            count: 1000
        }),
        Ok(ApplyOutcome::ProducerIds {
            first: 0,
            count: 1000
        })
    );
    assert_eq!(
        steps.apply(C::AllocateProducerIds {
            broker: 1,
            count: 10
        }),
        Ok(ApplyOutcome::ProducerIds {
            first: 1000,
            count: 10
        })
    );
    assert!(steps
        .apply(C::AllocateProducerIds {
            broker: 1,
            count: 0
        })
        .is_err());
    assert!(steps
        .apply(C::AllocateProducerIds {
            broker: 9,
            count: 1
        })
        .is_err());
    assert_eq!(steps.image.next_producer_id, 1010);
}

#[test]
fn the_cluster_id_is_set_once() {
    let mut steps = Steps::new(&[0]);
    let set = |id: &str| C::SetClusterId {
        cluster_id: id.into(),
    };
    assert!(steps.apply(set("")).is_err());
    assert_eq!(steps.apply(set("abc")), Ok(ApplyOutcome::Done));
    assert_eq!(steps.apply(set("abc")), Ok(ApplyOutcome::Unchanged));
    assert!(matches!(
        steps.apply(set("xyz")),
        Err(ApplyError::ClusterIdMismatch { .. })
    ));
    assert_eq!(steps.image.cluster_id.as_deref(), Some("abc"));
}

#[test]
fn delete_checks_the_topic_id_and_create_partitions_extends_the_round_robin() {
    let mut steps = Steps::new(&[0, 1, 2]);
    let topic_id = steps.topic_id("t", 1, Some(2));
    steps
        .apply(C::CreatePartitions {
            name: "t".into(),
            count: 3,
            assignments: None,
        })
        .unwrap();
    // start = 1: partition 2 gets (1 + 2 + k) % 3 = [0, 1].
    assert_eq!(steps.partition(topic_id, 2).replicas, vec![0, 1]);
    assert!(matches!(
        steps.apply(C::CreatePartitions {
            name: "t".into(),
            count: 3,
            assignments: None
        }),
        Err(ApplyError::InvalidPartitions { .. })
    ));
    assert!(matches!(
        steps.apply(C::CreatePartitions {
            name: "t".into(),
            count: 4,
            assignments: Some(vec![vec![0]])
        }),
        Err(ApplyError::InvalidReplicaAssignment { .. })
    ));
    assert!(matches!(
        steps.apply(C::DeleteTopic {
            name: "t".into(),
            topic_id: Some(topic_id + 1)
        }),
        Err(ApplyError::InconsistentTopicId { .. })
    ));
    assert_eq!(
        steps.apply(C::DeleteTopic {
            name: "t".into(),
            topic_id: Some(topic_id)
        }),
        Ok(ApplyOutcome::TopicDeleted { topic_id })
    );
    assert!(steps.image.topic_by_id(topic_id).is_none());
    // A new topic of the same name gets a new id.
    assert_ne!(steps.topic_id("t", 1, None), topic_id);
}

/// A credential for `mechanism` (SHA-256 for an unknown one; any password: the keys only need
/// the right lengths), made once each: PBKDF2 is too slow to run for every random command.
fn security_credential(mechanism: &str) -> ScramCredentialRecord {
    static SHA256: std::sync::OnceLock<ScramCredentialRecord> = std::sync::OnceLock::new();
    static SHA512: std::sync::OnceLock<ScramCredentialRecord> = std::sync::OnceLock::new();
    if mechanism == "SCRAM-SHA-512" {
        return SHA512
            .get_or_init(|| credential_record("SCRAM-SHA-512", "random"))
            .clone();
    }
    SHA256
        .get_or_init(|| credential_record("SCRAM-SHA-256", "random"))
        .clone()
}

/// A random command over a small universe of names, brokers and epochs, so that most of them
/// hit the interesting cases (stale epochs, duplicates, fencing the last ISR member).
pub(crate) fn random_command(rng: &mut SimulationRng, image: &MetadataImage) -> MetadataCommand {
    let broker = rng.below(5) as NodeId;
    let incarnation = image
        .brokers
        .get(&broker)
        .map_or(1, |b| b.incarnation)
        .saturating_sub(rng.below(2));
    let topic_ids: Vec<u64> = image.topic_names.keys().copied().collect();
    let topic_id = if topic_ids.is_empty() || rng.below(10) == 0 {
        rng.below(5)
    } else {
        topic_ids[rng.below(topic_ids.len() as u64) as usize]
    };
    let partition = rng.below(3) as u32;
    let name = format!("t{}", rng.below(4));
    let some_brokers = |rng: &mut SimulationRng| -> Vec<NodeId> {
        let count = 1 + rng.below(3);
        (0..count).map(|_| rng.below(5) as NodeId).collect()
    };
    let user = format!("u{}", rng.below(3));
    let mechanism = ["SCRAM-SHA-256", "SCRAM-SHA-512", "SCRAM-MD5"][rng.below(3) as usize];
    let principal = ["User:u0", "User:u1", "User:*", "nobody"][rng.below(4) as usize];
    let some_binding = |rng: &mut SimulationRng| AclBindingRecord {
        resource_type: ["TOPIC", "GROUP", "CLUSTER"][rng.below(3) as usize].into(),
        resource_name: format!("t{}", rng.below(3)),
        pattern: ["LITERAL", "PREFIXED"][rng.below(2) as usize].into(),
        principal: principal.into(),
        host: ["*", "127.0.0.1", "a host"][rng.below(3) as usize].into(),
        operation: ["READ", "WRITE", "ALL"][rng.below(3) as usize].into(),
        permission: ["ALLOW", "DENY"][rng.below(2) as usize].into(),
    };
    match rng.below(18) {
        14 => {
            let mut credential = security_credential(mechanism);
            if rng.below(5) == 0 {
                credential.stored_key.pop();
            }
            credential.iterations += rng.below(2) as u32;
            C::UpsertScramCredential {
                user,
                mechanism: mechanism.into(),
                credential,
            }
        }
        15 => C::DeleteScramCredential {
            user,
            mechanism: mechanism.into(),
        },
        16 => C::CreateAcls {
            bindings: (0..1 + rng.below(3)).map(|_| some_binding(rng)).collect(),
        },
        17 => {
            let mut filter = AclFilterRecord::of(&spate_security::AclBindingFilter::any());
            if rng.below(2) == 0 {
                filter.principal = Some(principal.into());
            }
            if rng.below(2) == 0 {
                filter.resource_name = Some(format!("t{}", rng.below(3)));
                filter.pattern =
                    ["ANY", "MATCH", "LITERAL", "PREFIXED"][rng.below(4) as usize].into();
            }
            C::DeleteAcls {
                filters: vec![filter],
            }
        }
        0 => C::RegisterBroker {
            id: broker,
            incarnation: incarnation + rng.below(2),
            native: ("h".into(), 1),
            kafka: None,
            rack: None,
        },
        1 | 2 => C::FenceBroker {
            id: broker,
            incarnation,
        },
        3 | 4 => C::UnfenceBroker {
            id: broker,
            incarnation,
        },
        5 => C::CreateTopic {
            name,
            partitions: 1 + rng.below(3) as u32,
            replication_factor: if rng.below(2) == 0 {
                None
            } else {
                Some(1 + rng.below(3) as u16)
            },
            assignments: None,
            config: BTreeMap::new(),
        },
        6 => C::DeleteTopic {
            name,
            topic_id: None,
        },
        7 => C::CreatePartitions {
            name,
            count: 1 + rng.below(4) as u32,
            assignments: None,
        },
        8 | 9 => {
            let current = image.partition(topic_id, partition);
            let mut isr = some_brokers(rng);
            if let Some(leader) = current.and_then(|p| p.leader) {
                if rng.below(4) != 0 {
                    isr.retain(|m| *m != leader && current.unwrap().replicas.contains(m));
                    isr.insert(0, leader);
                }
            }
            C::AlterPartition {
                topic_id,
                partition,
                leader: current.and_then(|p| p.leader).unwrap_or(broker),
                leader_epoch: current.map_or(0, |p| p.leader_epoch) - rng.below(2) as i32,
                partition_epoch: current.map_or(0, |p| p.partition_epoch) - rng.below(2) as i32,
                new_isr: isr,
            }
        }
        10 => C::ReassignPartition {
            topic_id,
            partition,
            target: if rng.below(4) == 0 {
                None
            } else {
                Some(some_brokers(rng))
            },
        },
        11 => C::ElectPreferredLeaders { partitions: None },
        12 => {
            if rng.below(3) == 0 {
                C::DecommissionBroker { id: broker }
            } else {
                C::RemoveBroker { id: broker }
            }
        }
        _ => C::AllocateProducerIds {
            broker,
            count: 1 + rng.below(100) as u32,
        },
    }
}

#[test]
fn random_commands_keep_every_invariant_and_apply_the_same_everywhere() {
    // Security commands that changed the image, so the run is known to reach them.
    let mut security_changes = 0;
    for seed in 0..100 {
        let mut rng = SimulationRng::new(seed);
        let mut image = MetadataImage::default();
        let mut replay = MetadataImage::default();
        let mut epochs: BTreeMap<(u64, u32), (i32, i32)> = BTreeMap::new();
        for index in 1..=300 {
            let command = random_command(&mut rng, &image);
            let before = image.clone();
            let result = image.apply(index, &command);
            let replayed = replay.apply(index, &command);
            assert_eq!(result, replayed, "seed {seed} index {index}");
            if !Arc::ptr_eq(&before.security, &image.security) {
                security_changes += 1;
            }
            assert_eq!(image, replay, "seed {seed} index {index}");
            if let Err(error) = image.check_invariants() {
                panic!("seed {seed} index {index}: {command:?} broke an invariant: {error}");
            }
            if result.is_err() {
                let mut expected = before;
                expected.applied_index = index;
                assert_eq!(
                    image, expected,
                    "seed {seed}: refused {command:?} changed the image"
                );
            }
            for topic in image.topics.values() {
                for (number, partition) in topic.partitions.iter().enumerate() {
                    let key = (topic.id, number as u32);
                    let now = (partition.leader_epoch, partition.partition_epoch);
                    if let Some(then) = epochs.insert(key, now) {
                        assert!(
                            now.0 >= then.0 && now.1 >= then.1,
                            "seed {seed}: epochs went back {then:?} -> {now:?}"
                        );
                    }
                }
            }
            if index % 50 == 0 {
                let encoded = serde_json::to_vec(&image).unwrap();
                let decoded: MetadataImage = serde_json::from_slice(&encoded).unwrap();
                assert_eq!(decoded, image);
            }
        }
    }
    assert!(
        security_changes > 100,
        "only {security_changes} security commands changed an image"
    );
}

// ---- security: users and ACL bindings ----

fn credential_record(mechanism: &str, password: &str) -> ScramCredentialRecord {
    let mechanism = spate_security::ScramMechanism::from_name(mechanism).unwrap();
    let credential = spate_security::ScramCredential::from_password(
        mechanism,
        password.as_bytes(),
        b"salt-of-the-test".to_vec(),
        4096,
    );
    ScramCredentialRecord::of(&credential).1
}

fn upsert(user: &str, mechanism: &str, password: &str) -> MetadataCommand {
    C::UpsertScramCredential {
        user: user.into(),
        mechanism: mechanism.into(),
        credential: credential_record(mechanism, password),
    }
}

fn binding(principal: &str, topic: &str, permission: &str) -> AclBindingRecord {
    AclBindingRecord {
        resource_type: "TOPIC".into(),
        resource_name: topic.into(),
        pattern: "LITERAL".into(),
        principal: principal.into(),
        host: "*".into(),
        operation: "READ".into(),
        permission: permission.into(),
    }
}

fn filter_of_principal(principal: &str) -> AclFilterRecord {
    AclFilterRecord {
        principal: Some(principal.into()),
        ..AclFilterRecord::of(&spate_security::AclBindingFilter::any())
    }
}

#[test]
fn a_credential_is_upserted_replaced_and_deleted_by_mechanism() {
    let mut steps = Steps::new(&[1]);
    assert_eq!(
        steps.apply(upsert("alice", "SCRAM-SHA-512", "one")),
        Ok(ApplyOutcome::Done)
    );
    assert_eq!(
        steps.apply(upsert("alice", "SCRAM-SHA-512", "one")),
        Ok(ApplyOutcome::Unchanged)
    );
    steps
        .apply(upsert("alice", "SCRAM-SHA-256", "two"))
        .unwrap();
    steps
        .apply(upsert("alice", "SCRAM-SHA-512", "three"))
        .unwrap();
    let credentials = steps.image.security.credentials();
    let sha512 = spate_security::ScramMechanism::Sha512;
    assert!(credentials
        .get("alice", sha512)
        .unwrap()
        .verify_password(b"three"));
    assert_eq!(credentials.user_count(), 1);

    let delete = |mechanism: &str| C::DeleteScramCredential {
        user: "alice".into(),
        mechanism: mechanism.into(),
    };
    assert_eq!(steps.apply(delete("SCRAM-SHA-512")), Ok(ApplyOutcome::Done));
    assert_eq!(
        steps.apply(delete("SCRAM-SHA-512")),
        Err(ApplyError::UnknownScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-SHA-512".into()
        })
    );
    steps.apply(delete("SCRAM-SHA-256")).unwrap();
    assert!(
        steps.image.security.users.is_empty(),
        "a user without credentials is gone"
    );
}

#[test]
fn credentials_that_do_not_fit_their_mechanism_are_refused_at_apply() {
    let mut steps = Steps::new(&[1]);
    let refused = |steps: &mut Steps, command| {
        assert!(
            matches!(
                steps.apply(command),
                Err(ApplyError::InvalidCredential { .. })
            ),
            "accepted"
        );
    };
    let mut short_key = credential_record("SCRAM-SHA-512", "pw");
    short_key.stored_key.truncate(32);
    refused(
        &mut steps,
        C::UpsertScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-SHA-512".into(),
            credential: short_key,
        },
    );
    let mut few_iterations = credential_record("SCRAM-SHA-256", "pw");
    few_iterations.iterations = 100;
    refused(
        &mut steps,
        C::UpsertScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-SHA-256".into(),
            credential: few_iterations,
        },
    );
    refused(&mut steps, upsert("", "SCRAM-SHA-256", "pw"));
    refused(
        &mut steps,
        C::UpsertScramCredential {
            user: "alice".into(),
            mechanism: "SCRAM-MD5".into(),
            credential: credential_record("SCRAM-SHA-256", "pw"),
        },
    );
    refused(
        &mut steps,
        C::DeleteScramCredential {
            user: "alice".into(),
            mechanism: "PLAIN".into(),
        },
    );
    assert!(steps.image.security.users.is_empty());
}

#[test]
fn acl_creation_answers_each_binding_and_keeps_one_copy() {
    let mut steps = Steps::new(&[1]);
    let mut bad_host = binding("User:bob", "orders", "ALLOW");
    bad_host.host = "not-an-address".into();
    let mut unknown_operation = binding("User:bob", "orders", "ALLOW");
    unknown_operation.operation = "TELEPORT".into();
    let mut lower_case = binding("User:alice", "orders", "ALLOW");
    lower_case.operation = "read".into();
    let outcome = steps
        .apply(C::CreateAcls {
            bindings: vec![
                binding("User:alice", "orders", "ALLOW"),
                bad_host,
                binding("User:alice", "orders", "ALLOW"),
                unknown_operation,
                binding("User:*", "orders", "DENY"),
                lower_case,
            ],
        })
        .unwrap();
    let ApplyOutcome::AclsCreated { results } = outcome else {
        panic!("{outcome:?}")
    };
    let accepted: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(accepted, [true, false, true, false, true, false]);
    assert_eq!(steps.image.security.bindings.len(), 2);
    let acls = steps.image.security.acls();
    assert_eq!(acls.len(), 2);
    assert!(!acls.authorize(
        &spate_security::Principal::user("alice"),
        "127.0.0.1".parse().unwrap(),
        spate_security::Operation::Read,
        spate_security::ResourceType::Topic,
        "orders",
        &[],
    ));
}

#[test]
fn acl_deletion_reports_per_filter_what_it_removed() {
    let mut steps = Steps::new(&[1]);
    steps
        .apply(C::CreateAcls {
            bindings: vec![
                binding("User:alice", "orders", "ALLOW"),
                binding("User:alice", "payments", "ALLOW"),
                binding("User:bob", "orders", "ALLOW"),
            ],
        })
        .unwrap();
    let outcome = steps
        .apply(C::DeleteAcls {
            filters: vec![
                filter_of_principal("User:alice"),
                AclFilterRecord::of(&spate_security::AclBindingFilter::any()),
                filter_of_principal("User:carol"),
            ],
        })
        .unwrap();
    let ApplyOutcome::AclsDeleted { deleted } = outcome else {
        panic!("{outcome:?}")
    };
    let names = |list: &Vec<AclBindingRecord>| -> Vec<(String, String)> {
        list.iter()
            .map(|b| (b.principal.clone(), b.resource_name.clone()))
            .collect()
    };
    assert_eq!(
        names(&deleted[0]),
        [
            ("User:alice".to_string(), "orders".to_string()),
            ("User:alice".to_string(), "payments".to_string())
        ]
    );
    // The second filter matches everything left; the first one already took alice's.
    assert_eq!(
        names(&deleted[1]),
        [("User:bob".to_string(), "orders".to_string())]
    );
    assert!(deleted[2].is_empty());
    assert!(steps.image.security.bindings.is_empty());

    let mut unknown = filter_of_principal("User:alice");
    unknown.pattern = "SIDEWAYS".into();
    assert!(matches!(
        steps.apply(C::DeleteAcls {
            filters: vec![unknown]
        }),
        Err(ApplyError::InvalidCommand { .. })
    ));
}

#[test]
fn an_image_without_a_security_part_decodes_as_empty() {
    let (image, _) = cluster(&[1, 2]);
    let mut encoded: serde_json::Value = serde_json::to_value(&image).unwrap();
    let removed = encoded.as_object_mut().unwrap().remove("security");
    assert!(removed.is_some(), "the part is encoded");
    let decoded: MetadataImage = serde_json::from_value(encoded).unwrap();
    assert_eq!(decoded, image);
    assert_eq!(*decoded.security, SecurityImage::default());
}

#[test]
fn the_user_limit_refuses_new_users_only() {
    let mut image = MetadataImage::default();
    let record = credential_record("SCRAM-SHA-256", "pw");
    let security = Arc::make_mut(&mut image.security);
    for number in 0..limits::USERS_MAX {
        security.users.insert(
            format!("user{number}"),
            BTreeMap::from([("SCRAM-SHA-256".to_string(), record.clone())]),
        );
    }
    assert!(matches!(
        image.apply(1, &upsert("one-more", "SCRAM-SHA-256", "pw")),
        Err(ApplyError::LimitExceeded { .. })
    ));
    assert_eq!(
        image.apply(2, &upsert("user7", "SCRAM-SHA-512", "pw")),
        Ok(ApplyOutcome::Done)
    );
    image.check_invariants().unwrap();
}
