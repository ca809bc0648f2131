//! Whole-cluster restarts: every broker of a 3-broker cluster is killed with `kill -9` and the
//! cluster is started again from its data directories, in the orders an operator might use:
//!
//! - all three at once;
//! - one after another, each only once its process is up (a broker logs readiness before its
//!   metadata quorum has a controller, so nothing here waits for one);
//! - two of them (a majority: the cluster serves), then the third, which catches up.
//!
//! After each restart a controller is elected, every record acknowledged with acks=all before
//! any kill reads back exactly at its acknowledged offset, and new acks=all writes succeed. A
//! second test restarts a cluster killed about a second after it formed (its metadata log holds
//! little more than the registrations), one broker after another.

mod cluster_support;

use std::time::Duration;

use cluster_support::{
    assert_acknowledged_stored_once_in_order, assert_replicas_identical, stored_numbers,
    Acknowledged, ProducerOptions, ProducerRun,
};
use spate_tests::cluster::{
    partition_leader, wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT,
};

const TOPIC: &str = "full-restart";
const PARTITIONS: u32 = 2;
/// Records acknowledged in each writing round (all partitions together).
const RECORDS_PER_ROUND: usize = 200;
/// How long a restarted cluster may take to elect a controller, lead every partition and get
/// every replica back in sync.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// The acknowledgements of every writing round so far, per round, per partition.
type Rounds = Vec<Vec<Vec<Acknowledged>>>;

#[test]
fn a_killed_cluster_restarts_together_or_one_after_another_and_keeps_every_acknowledged_record() {
    let (mut cluster, mut rounds) = start_with_acknowledged_records();
    let all = cluster.ids();

    kill_all(&mut cluster);
    cluster.restart_together(&all);
    check_serving(&cluster, &all, &rounds, "all three started together");
    write_round(&cluster, &mut rounds, "after all three started together");

    kill_all(&mut cluster);
    for &id in &all {
        cluster.restart(id);
    }
    check_serving(&cluster, &all, &rounds, "started one after another");
    write_round(&cluster, &mut rounds, "after one after another");
    cluster.wait_in_sync(TOPIC, PARTITIONS, RECOVERY_TIMEOUT);
    assert_replicas_identical(&cluster, TOPIC, PARTITIONS);
}

#[test]
fn a_killed_cluster_restarted_two_first_elects_a_controller_and_the_third_catches_up() {
    let (mut cluster, mut rounds) = start_with_acknowledged_records();
    let all = cluster.ids();
    kill_all(&mut cluster);
    let (majority, last) = (&all[..2], all[2]);
    cluster.restart_together(majority);
    wait_for_controller(&cluster, majority, "two of three started");
    cluster.restart(last);
    check_serving(&cluster, &all, &rounds, "the third back");
    write_round(&cluster, &mut rounds, "the third back");
    cluster.wait_in_sync(TOPIC, PARTITIONS, RECOVERY_TIMEOUT);
    check_serving(&cluster, &all, &rounds, "the third in sync");
    assert_replicas_identical(&cluster, TOPIC, PARTITIONS);
}

/// The behaviour wanted, not yet had: each restarted broker's registration (a new incarnation)
/// takes it out of every ISR and gives its leaderships to a replica that "did not restart",
/// which after a whole-cluster restart is the broker still down (its old registration is
/// unfenced until its session times out); fenced then, it stays the last ISR member and the
/// partition stays leaderless until it is back, although the two running replicas hold every
/// acknowledged record. Kafka's answer is the eligible leader replicas of KIP-966.
#[test]
#[ignore = "known gap: two of three restarted brokers do not lead partitions whose ISR shrank to the third"]
fn a_killed_cluster_restarted_two_first_serves_every_partition_with_two() {
    let (mut cluster, mut rounds) = start_with_acknowledged_records();
    let all = cluster.ids();
    kill_all(&mut cluster);
    let majority = &all[..2];
    cluster.restart_together(majority);
    check_serving(&cluster, majority, &rounds, "two of three started");
    write_round(&cluster, &mut rounds, "with two of three");
}

/// A formed cluster holding [`TOPIC`] (RF 3, min.insync.replicas 2, every replica in sync)
/// and one round of acknowledged records.
fn start_with_acknowledged_records() -> (Cluster, Rounds) {
    let cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, PARTITIONS, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, PARTITIONS, RECOVERY_TIMEOUT);
    let mut rounds: Rounds = Vec::new();
    write_round(&cluster, &mut rounds, "before any kill");
    (cluster, rounds)
}

#[test]
fn a_cluster_killed_just_after_forming_restarts_one_broker_after_another() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);
    std::thread::sleep(Duration::from_secs(1));
    let all = cluster.ids();
    kill_all(&mut cluster);
    for &id in &all {
        cluster.restart(id);
    }
    wait_for_controller(&cluster, &all, "restarted one after another");
    cluster.wait_formed(RECOVERY_TIMEOUT);
    cluster.create_topic(2, TOPIC, PARTITIONS, &[("min.insync.replicas", "2")]);
    let mut rounds: Rounds = Vec::new();
    write_round(&cluster, &mut rounds, "after the restart");
    check_serving(&cluster, &all, &rounds, "after the restart");
}

fn kill_all(cluster: &mut Cluster) {
    for id in cluster.ids() {
        cluster.kill9(id);
    }
}

/// Sends acks=all records to every partition until [`RECORDS_PER_ROUND`] are acknowledged,
/// waits for every outcome and keeps the acknowledgements as a new round.
fn write_round(cluster: &Cluster, rounds: &mut Rounds, when: &str) {
    let bootstrap = cluster
        .ids()
        .into_iter()
        .filter(|&id| cluster.is_answering(id))
        .map(|id| cluster.address(id).to_string())
        .collect();
    let producer = ProducerRun::start(bootstrap, TOPIC, PARTITIONS, ProducerOptions::default());
    producer.wait_for_acknowledged(RECORDS_PER_ROUND, RECOVERY_TIMEOUT, when);
    let (acknowledged, failures) = producer.finish();
    assert!(
        failures.is_empty(),
        "{when}: acks=all writes failed: {:?}",
        &failures[..failures.len().min(5)]
    );
    rounds.push(acknowledged);
}

/// Waits until every broker of `running` names one controller, that controller among them.
fn wait_for_controller(cluster: &Cluster, running: &[NodeId], when: &str) -> NodeId {
    let mut last = Vec::new();
    let agreed = wait_for(RECOVERY_TIMEOUT, || {
        last = running
            .iter()
            .map(|&id| {
                cluster
                    .metadata_from(id, Some(Vec::new()))
                    .map(|metadata| metadata.controller_id)
            })
            .collect();
        let first = (*last.first()?)?;
        (running.contains(&first) && last.iter().all(|seen| *seen == Some(first))).then_some(first)
    });
    agreed.unwrap_or_else(|| {
        panic!(
            "{when}: brokers {running:?} elected no controller they agree on within \
             {RECOVERY_TIMEOUT:?}; controllers named: {last:?}"
        )
    })
}

/// Waits until every broker of `running` names the same leader of `partition`, one of them
/// (while a broker is down, partitions it led move once the controller fences it).
fn wait_for_leader_among(cluster: &Cluster, running: &[NodeId], partition: u32, when: &str) {
    let mut last = Vec::new();
    let agreed = wait_for(RECOVERY_TIMEOUT, || {
        last = running
            .iter()
            .map(|&id| {
                cluster
                    .metadata_from(id, Some(vec![TOPIC.to_string()]))
                    .and_then(|metadata| partition_leader(&metadata, TOPIC, partition))
            })
            .collect();
        let (leader, _) = (*last.first()?)?;
        (running.contains(&leader) && last.iter().all(|seen| *seen == last[0])).then_some(())
    });
    assert!(
        agreed.is_some(),
        "{when}: brokers {running:?} did not agree on a leader of {TOPIC}/{partition} among \
         them within {RECOVERY_TIMEOUT:?}; (leader, epoch) named: {last:?}"
    );
}

/// A controller is elected among `running`, and every partition holds every record
/// acknowledged in every round, each at its acknowledged offset, in send order, none twice.
fn check_serving(cluster: &Cluster, running: &[NodeId], rounds: &Rounds, when: &str) {
    let controller = wait_for_controller(cluster, running, when);
    eprintln!("{when}: controller {controller}");
    for partition in 0..PARTITIONS {
        wait_for_leader_among(cluster, running, partition, when);
        // A leader elected after the restart serves up to its high watermark, which is back to
        // the log's end only once the followers fetched from it: read until every
        // acknowledged offset is visible (the assertions then say what is missing).
        let last_acknowledged = rounds
            .iter()
            .filter_map(|round| round[partition as usize].last())
            .map(|record| record.offset)
            .max();
        let visible = |stored: &[(u64, usize)]| {
            last_acknowledged.is_none_or(|offset| stored.last().is_some_and(|s| s.0 >= offset))
        };
        let stored = wait_for(RECOVERY_TIMEOUT, || {
            let stored = stored_numbers(cluster, TOPIC, partition);
            visible(&stored).then_some(stored)
        })
        .unwrap_or_else(|| stored_numbers(cluster, TOPIC, partition));
        for round in rounds {
            let acknowledged = &round[partition as usize];
            let (Some(first), Some(last)) = (acknowledged.first(), acknowledged.last()) else {
                continue;
            };
            // Record numbers start again at 0 in each round: compare one round's span only.
            let span: Vec<(u64, usize)> = stored
                .iter()
                .copied()
                .filter(|(offset, _)| (first.offset..=last.offset).contains(offset))
                .collect();
            assert_acknowledged_stored_once_in_order(partition, &span, acknowledged);
        }
    }
}
