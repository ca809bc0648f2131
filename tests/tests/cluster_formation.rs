//! A cluster forms and survives the loss of its controller (issue 14, "Cluster"): three real
//! brokers on 127.0.0.1, 127.0.0.2 and 127.0.0.3, each given the three as `--seeds`, elect a
//! controller and register; a topic created through any broker gets three replicas by default
//! (RF = min(3, brokers)) and every broker's metadata names it with the same leaders; after
//! `kill -9` of the controller the two others elect a new one and move the dead broker's
//! leaderships to live in-sync replicas.

use std::collections::BTreeSet;

use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};

const TOPIC: &str = "formation";
const PARTITIONS: u32 = 3;

/// The controller as broker `id` names it, if it answers and names one.
fn controller_seen_by(cluster: &Cluster, id: NodeId) -> Option<NodeId> {
    let metadata = cluster.metadata_from(id, Some(Vec::new()))?;
    (metadata.controller_id >= 0).then_some(metadata.controller_id)
}

#[test]
fn three_brokers_form_a_quorum_replicate_topic_metadata_and_replace_a_killed_controller() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);

    // Created through a broker that is not necessarily the controller.
    cluster.create_topic(2, TOPIC, PARTITIONS, &[]);
    for id in cluster.ids() {
        let metadata = cluster
            .metadata_from(id, Some(vec![TOPIC.to_string()]))
            .unwrap_or_else(|| panic!("broker {id} does not answer Metadata"));
        assert_eq!(metadata.brokers.len(), 3, "broker {id}: {metadata:?}");
        let topic = metadata
            .topics
            .iter()
            .find(|topic| topic.name == TOPIC)
            .unwrap_or_else(|| panic!("broker {id} does not know {TOPIC}"));
        assert_eq!(topic.partitions.len(), PARTITIONS as usize, "broker {id}");
        for partition in &topic.partitions {
            let replicas: BTreeSet<NodeId> = partition.replicas.iter().copied().collect();
            assert_eq!(
                replicas,
                BTreeSet::from([1, 2, 3]),
                "broker {id}: {TOPIC}/{} replicas",
                partition.partition
            );
            assert!(
                partition.leader_id >= 1 && partition.leader_id <= 3,
                "broker {id}: {TOPIC}/{} leader {}",
                partition.partition,
                partition.leader_id
            );
        }
    }
    // Every broker agrees on every partition's leader.
    for partition in 0..PARTITIONS {
        cluster.wait_for_agreed_leader(TOPIC, partition, FORMATION_TIMEOUT);
    }

    let controller = controller_seen_by(&cluster, 1).expect("broker 1 names a controller");
    let led_before: Vec<(u32, (NodeId, i32))> = (0..PARTITIONS)
        .map(|partition| {
            (
                partition,
                cluster.leader_of(TOPIC, partition).expect("a leader"),
            )
        })
        .collect();
    cluster.kill9(controller);

    let survivors: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != controller)
        .collect();
    let elected = wait_for(FORMATION_TIMEOUT, || {
        let seen: Vec<Option<NodeId>> = survivors
            .iter()
            .map(|&id| controller_seen_by(&cluster, id))
            .collect();
        let first = seen[0]?;
        (first != controller && seen.iter().all(|other| *other == Some(first))).then_some(first)
    })
    .unwrap_or_else(|| panic!("no new controller agreed on after killing controller {controller}"));
    assert!(survivors.contains(&elected));

    // Partitions the dead controller led get a live leader at a higher epoch.
    for (partition, (leader, epoch)) in led_before {
        if leader != controller {
            continue;
        }
        let (new_leader, new_epoch) = cluster.wait_for_leader(
            TOPIC,
            partition,
            FORMATION_TIMEOUT,
            |candidate, candidate_epoch| candidate != controller && candidate_epoch > epoch,
        );
        assert!(
            survivors.contains(&new_leader),
            "{new_leader} at {new_epoch}"
        );
    }

    // The metadata still serves changes: a topic created after the failover.
    cluster.create_topic(survivors[0], "after-failover", 1, &[]);
}
