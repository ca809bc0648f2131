//! Jepsen-style `kill -9` cycles on a 3-broker cluster (issue 14, "Failure behaviour"): an
//! idempotent acks=all producer (the native client, following leaders) keeps writing to an
//! RF=3 topic with min.insync.replicas=2 while a random broker is killed every few seconds and
//! restarted. Then every acknowledged record must be stored exactly once, at its acknowledged
//! offset, in send order, and the replicas' logs must be identical.
//!
//! Between kills the test waits until the restarted broker is back in every ISR, so each kill
//! finds a healthy cluster (two kills in a row could otherwise take out both copies a
//! partition needs, which stalls it by design: no unclean election).
//!
//! Prints the cycles, the records and the failover time: per kill of a broker that led a
//! partition, the time from the kill to the first acknowledgement, on that partition, of a
//! record handed to the producer after the kill (so it cannot have been answered by the dead
//! broker; an upper bound, as it includes the producer's queue ahead of it). No assertion on
//! speed. `SPATE_CLUSTER_KILL9_CYCLES` (default 10) and `SPATE_CLUSTER_SEED` vary the run.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::{
    assert_acknowledged_stored_once_in_order, assert_replicas_identical, env_count, percentile,
    stored_numbers, ProducerOptions, ProducerRun, Random,
};
use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};

const TOPIC: &str = "kill9";
const PARTITIONS: u32 = 3;
/// How long a restarted broker may take to be back in every ISR.
const REJOIN_TIMEOUT: Duration = Duration::from_secs(120);
/// How often the controller gives leaderships back to preferred replicas in this test.
const LEADER_BALANCE_INTERVAL_MS: u64 = 2_000;
/// How long the producer may make no progress after a kill before the test fails.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(60);

/// One kill.
struct Kill {
    victim: NodeId,
    at: Instant,
    /// Partitions the victim led when it was killed.
    led: Vec<u32>,
}

#[test]
fn kill_9_cycles_lose_no_acknowledged_record_and_replicas_stay_identical() {
    let cycles = env_count("SPATE_CLUSTER_KILL9_CYCLES", 10);
    let mut random = Random::from_env("SPATE_CLUSTER_SEED");
    // Leaderships go back to preferred replicas often, so kills find them spread again.
    let mut cluster = Cluster::start(ClusterOptions {
        arguments: vec![
            "--leader-balance-interval-ms".to_string(),
            LEADER_BALANCE_INTERVAL_MS.to_string(),
        ],
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, PARTITIONS, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, PARTITIONS, REJOIN_TIMEOUT);
    let bootstrap = cluster
        .ids()
        .iter()
        .map(|&id| cluster.address(id).to_string())
        .collect();
    let producer = ProducerRun::start(bootstrap, TOPIC, PARTITIONS, ProducerOptions::default());
    producer.wait_for_acknowledged(300, PROGRESS_TIMEOUT, "before the first kill");

    let mut kills = Vec::new();
    for cycle in 0..cycles {
        std::thread::sleep(Duration::from_millis(random.between(1_000, 3_000)));
        let ids = cluster.ids();
        let victim = ids[random.between(0, ids.len() as u64) as usize];
        let led = (0..PARTITIONS)
            .filter(|&partition| {
                cluster
                    .leader_of(TOPIC, partition)
                    .is_some_and(|(leader, _)| leader == victim)
            })
            .collect();
        let before = producer.acknowledged_count();
        let at = Instant::now();
        cluster.kill9(victim);
        kills.push(Kill { victim, at, led });
        // The two survivors are a majority of every partition's replicas: writes go on.
        producer.wait_for_acknowledged(
            before + 100,
            PROGRESS_TIMEOUT,
            &format!("cycle {cycle}: after kill -9 of broker {victim}"),
        );
        std::thread::sleep(Duration::from_millis(random.between(0, 1_500)));
        cluster.restart(victim);
        cluster.wait_in_sync(TOPIC, PARTITIONS, REJOIN_TIMEOUT);
    }

    let (acknowledged, failures) = producer.finish();
    let mut failover = Vec::new();
    for kill in &kills {
        for &partition in &kill.led {
            let first = acknowledged[partition as usize]
                .iter()
                .find(|record| record.sent_at > kill.at);
            if let Some(record) = first {
                failover.push(record.told_at - kill.at);
            }
        }
    }
    let records: usize = acknowledged.iter().map(Vec::len).sum();
    let millis = |duration: Option<Duration>| {
        duration.map_or_else(|| "-".to_string(), |d| format!("{} ms", d.as_millis()))
    };
    eprintln!(
        "kill -9 cycles: {cycles}, acknowledged records: {records}, failed sends: {}, \
         failovers measured (a killed broker's led partitions): {}, failover (kill -> first ack \
         on the new leader) p50 {} max {}; each: {:?} ms",
        failures.len(),
        failover.len(),
        millis(percentile(&failover, 50.0)),
        millis(failover.iter().max().copied()),
        failover.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    eprintln!(
        "victims: {:?}",
        kills
            .iter()
            .map(|kill| (kill.victim, kill.led.clone()))
            .collect::<Vec<_>>()
    );
    if !failures.is_empty() {
        eprintln!("first failures: {:?}", &failures[..failures.len().min(5)]);
    }

    cluster.wait_in_sync(TOPIC, PARTITIONS, REJOIN_TIMEOUT);
    for partition in 0..PARTITIONS {
        let stored = stored_numbers(&cluster, TOPIC, partition);
        assert_acknowledged_stored_once_in_order(
            partition,
            &stored,
            &acknowledged[partition as usize],
        );
    }
    assert_replicas_identical(&cluster, TOPIC, PARTITIONS);

    // Every broker is back and in sync: each partition is led by its preferred replica again
    // (the controller's leader balance), not by whichever broker survived the last kill.
    let mut last = Vec::new();
    let balanced = wait_for(REJOIN_TIMEOUT, || {
        last = (0..PARTITIONS)
            .map(|partition| {
                let preferred = cluster
                    .metadata_from(1, Some(vec![TOPIC.to_string()]))
                    .and_then(|metadata| {
                        let topic = metadata.topics.into_iter().find(|t| t.name == TOPIC)?;
                        let seen = topic
                            .partitions
                            .into_iter()
                            .find(|p| p.partition == partition)?;
                        seen.replicas.first().copied()
                    });
                (partition, preferred, cluster.leader_of(TOPIC, partition))
            })
            .collect();
        last.iter()
            .all(|(_, preferred, leader)| {
                preferred.is_some() && leader.map(|(id, _)| id) == *preferred
            })
            .then_some(())
    });
    assert!(
        balanced.is_some(),
        "leaderships did not go back to the preferred replicas: (partition, preferred, leader) {last:?}"
    );
}
