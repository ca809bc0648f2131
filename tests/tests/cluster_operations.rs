//! Cluster operations end to end (issue 14, "Operations"), driven with the real `spate` CLI
//! against real brokers on 127.0.0.<id>: a fourth broker started with `--seeds` joins a running
//! cluster of three (`spate cluster info` lists it); while an idempotent acks=all producer keeps
//! writing to an RF=3 topic, `spate cluster move-partitions` moves a partition's replicas onto
//! it, dropping the replica that led; the reassignment completes (`spate cluster reassignments`
//! empty), the producer was acknowledged all along and lost nothing, the new replica's log is
//! byte-identical to the others and the dropped replica's directory is gone. Then
//! `balance-leaders` gives every partition back to its preferred replica, the Kafka API's
//! ElectLeaders and partition reassignments answer Kafka's per-partition codes, and
//! `decommission` moves every replica off a broker, which then leaves `cluster info`.

mod cli_support;
mod cluster_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use cli_support::spate;
use cluster_support::{
    assert_acknowledged_stored_once_in_order, first_difference, partition_directory,
    replica_batches, stored_numbers, ProducerOptions, ProducerRun,
};
use spate_kafka_protocol::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, ElectLeadersRequest,
    ListPartitionReassignmentsRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};
use spate_tests::KafkaTestClient;

const TOPIC: &str = "operations";
const PARTITIONS: u32 = 2;
/// How long a reassignment or a decommission may take to complete (a debug build on a loaded
/// 2-core machine copying a few thousand records).
const MOVE_TIMEOUT: Duration = Duration::from_secs(60);
/// Records acknowledged between two steps: enough to see the producer going on.
const ACKNOWLEDGED_PER_STEP: usize = 200;

/// `spate --broker <broker 1> --json cluster ...`, parsed; panics with the output on failure.
fn cluster_json(cluster: &Cluster, via: NodeId, arguments: &[&str]) -> serde_json::Value {
    let mut all = vec!["cluster"];
    all.extend_from_slice(arguments);
    all.push("--json");
    let stdout = spate(cluster.address(via), &all, b"").ok();
    serde_json::from_str(&stdout).unwrap_or_else(|error| panic!("{error}: {stdout}"))
}

/// The broker ids `spate cluster info` lists.
fn listed_brokers(cluster: &Cluster, via: NodeId) -> BTreeSet<NodeId> {
    let info = cluster_json(cluster, via, &["info"]);
    info["cluster"]["brokers"]
        .as_array()
        .expect("a broker list")
        .iter()
        .map(|broker| broker["id"].as_i64().expect("an id") as NodeId)
        .collect()
}

/// The reassignments `spate cluster reassignments` lists.
fn listed_reassignments(cluster: &Cluster, via: NodeId) -> Vec<serde_json::Value> {
    cluster_json(cluster, via, &["reassignments"])["reassignments"]
        .as_array()
        .expect("a reassignment list")
        .clone()
}

/// Waits until no reassignment is listed; returns how many polls saw one in progress.
fn wait_reassignments_done(cluster: &Cluster, via: NodeId, what: &str) -> usize {
    let mut seen_in_progress = 0;
    let mut last = Vec::new();
    let done = wait_for(MOVE_TIMEOUT, || {
        last = listed_reassignments(cluster, via);
        if last.is_empty() {
            return Some(());
        }
        seen_in_progress += 1;
        None
    });
    assert!(
        done.is_some(),
        "{what}: still listed after {MOVE_TIMEOUT:?}: {last:?}"
    );
    seen_in_progress
}

/// Partition `partition`'s replicas and leader as broker `via` reports them.
fn replicas_of(cluster: &Cluster, via: NodeId, partition: u32) -> (Vec<NodeId>, i32) {
    let metadata = cluster
        .metadata_from(via, Some(vec![TOPIC.to_string()]))
        .unwrap_or_else(|| panic!("broker {via} does not answer Metadata"));
    let found = &metadata.topics[0].partitions[partition as usize];
    (found.replicas.clone(), found.leader_id)
}

/// Waits until every replica `partition` lists holds the same batches, byte for byte; returns
/// how many.
fn assert_listed_replicas_identical(cluster: &Cluster, via: NodeId, partition: u32) -> usize {
    let (replicas, _) = replicas_of(cluster, via, partition);
    let mut difference = None;
    let agreed = wait_for(Duration::from_secs(30), || {
        let logs: Vec<_> = replicas
            .iter()
            .map(|id| {
                (
                    *id,
                    replica_batches(cluster.data_dir(*id), TOPIC, partition),
                )
            })
            .collect();
        difference = logs[1..].iter().find_map(|(id, log)| {
            first_difference(&logs[0].1, log)
                .map(|text| format!("broker {} vs {id}: {text}", logs[0].0))
        });
        difference.is_none().then(|| logs[0].1.len())
    });
    let batches = agreed.unwrap_or_else(|| {
        panic!("replicas {replicas:?} of {TOPIC}/{partition} differ: {difference:?}")
    });
    assert!(batches > 0, "{TOPIC}/{partition} holds no batch");
    batches
}

/// Waits until broker `id` no longer has a directory for `partition`.
fn wait_replica_deleted(cluster: &Cluster, id: NodeId, partition: u32) {
    let mut directory = None;
    let gone = wait_for(MOVE_TIMEOUT, || {
        directory = partition_directory(cluster.data_dir(id), TOPIC, partition)
            .filter(|directory| directory.exists());
        directory.is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "broker {id}'s replica of {TOPIC}/{partition} was moved away but {directory:?} is still there"
    );
}

/// The longest wait between two acknowledgements told for one partition, from `since` on.
fn longest_acknowledgement_gap(producer: &ProducerRun, partition: u32, since: Instant) -> Duration {
    let acknowledged = producer.acknowledged.lock().unwrap();
    let told: Vec<Instant> = acknowledged[partition as usize]
        .iter()
        .map(|record| record.told_at)
        .filter(|told| *told >= since)
        .collect();
    told.windows(2)
        .map(|pair| pair[1].duration_since(pair[0]))
        .max()
        .unwrap_or_default()
}

/// ElectLeaders (43), AlterPartitionReassignments (45) and ListPartitionReassignments (46)
/// against the cluster once every preferred leader leads and nothing moves.
fn kafka_operations_answer_kafkas_codes(cluster: &Cluster) {
    let mut kafka = KafkaTestClient::connect(cluster.kafka_address(1));
    let topic = || TopicName(StrBytes::from_string(TOPIC.to_string()));
    let elected = kafka.call(
        2,
        &ElectLeadersRequest::default()
            .with_topic_partitions(Some(vec![TopicPartitions::default()
                .with_topic(topic())
                .with_partitions(vec![0, 1, 5])]))
            .with_timeout_ms(10_000),
    );
    assert_eq!(elected.error_code, 0, "{elected:?}");
    let codes: Vec<i16> = elected.replica_election_results[0]
        .partition_result
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            ResponseError::ElectionNotNeeded.code(),
            ResponseError::ElectionNotNeeded.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ]
    );
    let partition = |index: i32, replicas: Option<Vec<i32>>| {
        ReassignablePartition::default()
            .with_partition_index(index)
            .with_replicas(replicas.map(|nodes| nodes.into_iter().map(BrokerId).collect()))
    };
    let (replicas, _) = replicas_of(cluster, 1, 0);
    let repeated = vec![replicas[0], replicas[0], replicas[1]];
    let answer = kafka.call(
        0,
        &AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(10_000)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic())
                .with_partitions(vec![
                    partition(0, Some(vec![1, 2, 9])),
                    partition(0, Some(repeated)),
                    partition(0, Some(Vec::new())),
                    partition(0, None),
                    partition(9, Some(vec![1])),
                ])]),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
    let codes: Vec<i16> = answer.responses[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            ResponseError::InvalidReplicaAssignment.code(),
            ResponseError::InvalidReplicaAssignment.code(),
            ResponseError::InvalidReplicaAssignment.code(),
            ResponseError::NoReassignmentInProgress.code(),
            ResponseError::UnknownTopicOrPartition.code()
        ],
        "{answer:?}"
    );
    let listed = kafka.call(
        0,
        &ListPartitionReassignmentsRequest::default().with_timeout_ms(10_000),
    );
    assert_eq!(listed.error_code, 0);
    assert!(listed.topics.is_empty(), "{listed:?}");
}

/// Every broker's log lines since the last drain (appends left out), for a failure's reader.
fn dump_broker_logs(cluster: &mut Cluster) {
    for id in cluster.ids() {
        eprintln!("--- broker {id} ---");
        for line in cluster.broker(id).drain_log() {
            if !line.contains("appended") {
                eprintln!("{line}");
            }
        }
    }
}

#[test]
fn a_joining_broker_takes_a_moved_replica_leaders_rebalance_and_a_decommissioned_broker_leaves() {
    let started = Instant::now();
    let mut cluster = Cluster::start(ClusterOptions {
        brokers: 3,
        shards: 2,
        arguments: vec!["--default-replication-factor".to_string(), "3".to_string()],
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, PARTITIONS, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, PARTITIONS, MOVE_TIMEOUT);

    // add-broker: a fourth broker given the same seeds joins, and `cluster info` lists it.
    let added = cluster.add_broker();
    assert_eq!(added, 4);
    cluster.wait_formed(FORMATION_TIMEOUT);
    let listed = wait_for(FORMATION_TIMEOUT, || {
        let listed = listed_brokers(&cluster, 1);
        listed.contains(&added).then_some(listed)
    })
    .expect("spate cluster info lists the joined broker");
    assert_eq!(listed, BTreeSet::from([1, 2, 3, 4]));
    // `add-broker --dry-run` plans moves onto it without making any.
    let planned = cluster_json(&cluster, 2, &["add-broker", "4", "--dry-run"]);
    assert!(
        !planned["partitions"].as_array().unwrap().is_empty(),
        "{planned}"
    );
    assert!(listed_reassignments(&cluster, 1).is_empty());
    println!(
        "joined: broker {added} listed after {:?}",
        started.elapsed()
    );

    let bootstrap = cluster
        .ids()
        .iter()
        .map(|&id| cluster.address(id).to_string())
        .collect();
    let producer = ProducerRun::start(bootstrap, TOPIC, PARTITIONS, ProducerOptions::default());
    producer.wait_for_acknowledged(ACKNOWLEDGED_PER_STEP, MOVE_TIMEOUT, "before the move");

    // move-partitions: partition 0 drops its first replica (its preferred leader, leading
    // now) for the new broker.
    let (before, leader_before) = replicas_of(&cluster, 1, 0);
    let dropped = before[0];
    let target: Vec<NodeId> = before[1..].iter().copied().chain([added]).collect();
    let target_text = target
        .iter()
        .map(NodeId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let move_started = Instant::now();
    let acknowledged_at_move = producer.acknowledged_count();
    let output = spate(
        cluster.address(2),
        &[
            "cluster",
            "move-partitions",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--replicas",
            &target_text,
        ],
        b"",
    )
    .ok();
    assert_eq!(
        output.trim(),
        format!("{TOPIC}\t0\t{target_text}\tmoving"),
        "move-partitions reports the move"
    );
    let polls_in_progress = wait_reassignments_done(&cluster, 1, "moving partition 0");
    let moved_after = move_started.elapsed();
    // The listing reads the applied metadata; Metadata answers once this broker reconciled it.
    let (after, leader_after) = wait_for(MOVE_TIMEOUT, || {
        Some(replicas_of(&cluster, 1, 0)).filter(|(replicas, _)| *replicas == target)
    })
    .unwrap_or_else(|| {
        panic!(
            "the replicas are not the target {target:?} once complete: {:?}",
            replicas_of(&cluster, 1, 0)
        )
    });
    assert_ne!(leader_after, dropped, "the dropped replica no longer leads");
    wait_replica_deleted(&cluster, dropped, 0);
    producer.wait_for_acknowledged(
        producer.acknowledged_count() + ACKNOWLEDGED_PER_STEP,
        MOVE_TIMEOUT,
        "after the move",
    );
    let acknowledged_during_move = producer.acknowledged_count() - acknowledged_at_move;
    println!(
        "move: {before:?} (leader {leader_before}) -> {after:?} (leader {leader_after}) in \
         {moved_after:?}, {polls_in_progress} polls saw it in progress, {acknowledged_during_move} \
         records acknowledged since it began, longest wait between two acknowledgements of \
         partition 0: {:?}",
        longest_acknowledgement_gap(&producer, 0, move_started)
    );

    // A cancel of nothing is refused with what is wrong; a target naming an unknown broker too.
    let refused = spate(
        cluster.address(1),
        &[
            "cluster",
            "move-partitions",
            "--topic",
            TOPIC,
            "--partition",
            "0",
            "--cancel",
        ],
        b"",
    );
    assert_ne!(refused.code, 0, "{}", refused.stdout);
    assert!(
        refused.stdout.contains("no reassignment") || refused.stderr.contains("no reassignment"),
        "stdout: {}\nstderr: {}",
        refused.stdout,
        refused.stderr
    );
    println!("cancel of nothing: {}", refused.stderr.trim());
    let unknown = spate(
        cluster.address(1),
        &[
            "cluster",
            "move-partitions",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--replicas",
            "1,2,9",
        ],
        b"",
    );
    assert_ne!(unknown.code, 0, "{}", unknown.stdout);
    assert!(
        unknown.stdout.contains("broker 9") || unknown.stderr.contains("broker 9"),
        "stdout: {}\nstderr: {}",
        unknown.stdout,
        unknown.stderr
    );

    println!("unknown broker: {}", unknown.stderr.trim());

    // balance-leaders: partition 1's replica list is reordered so that its preferred replica
    // does not lead (the leader stays through a reassignment), then the election moves it.
    let (replicas_1, leader_1) = replicas_of(&cluster, 1, 1);
    let mut reordered: Vec<NodeId> = replicas_1
        .iter()
        .copied()
        .filter(|id| *id != leader_1)
        .collect();
    reordered.push(leader_1);
    let reordered_text = reordered
        .iter()
        .map(NodeId::to_string)
        .collect::<Vec<_>>()
        .join(",");
    spate(
        cluster.address(1),
        &[
            "cluster",
            "move-partitions",
            "--topic",
            TOPIC,
            "--partition",
            "1",
            "--replicas",
            &reordered_text,
        ],
        b"",
    )
    .ok();
    wait_reassignments_done(&cluster, 1, "reordering partition 1");
    let reordered_now = wait_for(MOVE_TIMEOUT, || {
        Some(replicas_of(&cluster, 1, 1)).filter(|(replicas, _)| *replicas == reordered)
    });
    assert_eq!(reordered_now, Some((reordered.clone(), leader_1)));
    let balanced = spate(cluster.address(3), &["cluster", "balance-leaders"], b"").ok();
    assert!(
        balanced.contains(&format!("{TOPIC}\t1\tpreferred leader leads")),
        "{balanced}"
    );
    for partition in 0..PARTITIONS {
        let (replicas, _) = replicas_of(&cluster, 1, partition);
        cluster.wait_for_leader(TOPIC, partition, MOVE_TIMEOUT, |leader, _| {
            leader == replicas[0]
        });
    }
    let again = cluster_json(&cluster, 1, &["balance-leaders", "--topic", TOPIC]);
    println!("balance-leaders: {balanced:?}; again: {again}");
    producer.wait_for_acknowledged(
        producer.acknowledged_count() + ACKNOWLEDGED_PER_STEP,
        MOVE_TIMEOUT,
        "after the election",
    );

    // The Kafka API takes the same paths and answers Kafka's per-partition codes.
    kafka_operations_answer_kafkas_codes(&cluster);

    // decommission: a broker that holds a replica of partition 1 and is not the controller.
    let controller = cluster
        .metadata_from(1, Some(Vec::new()))
        .expect("broker 1 answers")
        .controller_id;
    let (replicas_1, _) = replicas_of(&cluster, 1, 1);
    let leaving = *replicas_1
        .iter()
        .find(|id| **id != controller && **id != added)
        .expect("a replica that is not the controller");
    // Asked through a broker that stays.
    let observer = added;
    let decommission_started = Instant::now();
    let run = spate(
        cluster.address(observer),
        &["cluster", "decommission", &leaving.to_string()],
        b"",
    );
    if run.code != 0 {
        dump_broker_logs(&mut cluster);
    }
    let output = run.ok();
    assert!(
        output.contains(&format!("decommissioning broker {leaving}")),
        "{output}"
    );
    let gone = wait_for(MOVE_TIMEOUT, || {
        (!listed_brokers(&cluster, observer).contains(&leaving)).then_some(())
    });
    assert!(
        gone.is_some(),
        "broker {leaving} still listed {MOVE_TIMEOUT:?} after its decommission"
    );
    wait_reassignments_done(&cluster, observer, "decommissioning");
    for partition in 0..PARTITIONS {
        let moved_off = wait_for(MOVE_TIMEOUT, || {
            Some(replicas_of(&cluster, observer, partition).0)
                .filter(|replicas| !replicas.contains(&leaving))
        });
        let replicas = moved_off.unwrap_or_else(|| {
            panic!("{TOPIC}/{partition} still has a replica on broker {leaving}")
        });
        assert_eq!(replicas.len(), 3, "{partition}: {replicas:?}");
        wait_replica_deleted(&cluster, leaving, partition);
    }
    let decommissioned_after = decommission_started.elapsed();
    producer.wait_for_acknowledged(
        producer.acknowledged_count() + ACKNOWLEDGED_PER_STEP,
        MOVE_TIMEOUT,
        "after the decommission",
    );
    // Deciding again on a broker that left is refused with a clear error.
    let refused = spate(
        cluster.address(observer),
        &["cluster", "decommission", &leaving.to_string()],
        b"",
    );
    assert_ne!(refused.code, 0);
    assert!(
        refused
            .stderr
            .contains(&format!("broker {leaving} is not in the cluster")),
        "{}",
        refused.stderr
    );

    println!("decommission again: {}", refused.stderr.trim());
    let (acknowledged, failures) = producer.finish();
    if !failures.is_empty() {
        dump_broker_logs(&mut cluster);
    }
    let mut records = 0;
    for partition in 0..PARTITIONS {
        let stored = stored_numbers(&cluster, TOPIC, partition);
        assert_acknowledged_stored_once_in_order(
            partition,
            &stored,
            &acknowledged[partition as usize],
        );
        let batches = assert_listed_replicas_identical(&cluster, observer, partition);
        records += acknowledged[partition as usize].len();
        println!(
            "{TOPIC}/{partition}: {} acknowledged, {} stored, {batches} batches identical on \
             replicas {:?}",
            acknowledged[partition as usize].len(),
            stored.len(),
            replicas_of(&cluster, observer, partition).0
        );
    }
    assert!(
        failures.is_empty(),
        "sends failed (retriable errors are retried by the producer): {:?}",
        &failures[..failures.len().min(5)]
    );
    assert!(
        replicas_of(&cluster, observer, 0).0.contains(&added),
        "the new broker still holds partition 0"
    );
    println!(
        "decommission of broker {leaving} done in {decommissioned_after:?}; {records} records \
         acknowledged in all; whole test {:?}",
        started.elapsed()
    );
}
