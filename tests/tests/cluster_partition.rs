//! A network partition on a 3-broker cluster (issue 14, "Failure behaviour"): the leader of an
//! RF=3 partition (min.insync.replicas=2) is cut off from both other brokers by the link
//! proxies while an idempotent acks=all producer keeps writing through the proxies (clients
//! still reach every broker). The isolated old leader must acknowledge no acks=all write: a
//! second client keeps producing to it directly and every answer must be an error (or no
//! answer at all). The majority elects a new leader and the producer goes on there. After the
//! partition heals, no acknowledged record is lost or duplicated or reordered, nothing the
//! isolated leader was sent survives, and every replica's log is identical.

mod cluster_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use cluster_support::{
    assert_acknowledged_stored_once_in_order, assert_replicas_identical, stored_numbers,
    ProducerOptions, ProducerRun,
};
use spate_protocol::api::{Acks, ProducePartition, ProduceRequest, TopicPartitions};
use spate_protocol::error::ErrorCode;
use spate_tests::build_batch;
use spate_tests::client::TestRecord;
use spate_tests::cluster::{call_once, Cluster, ClusterOptions, FORMATION_TIMEOUT};

const TOPIC: &str = "partitioned";
const PARTITIONS: u32 = 1;
/// How long the produce requests sent to the isolated leader ask it to wait for its replicas.
const ISOLATED_PRODUCE_TIMEOUT_MS: u32 = 2_000;
/// How long the test keeps the leader isolated after the majority elected a new one.
const ISOLATION_AFTER_ELECTION: Duration = Duration::from_secs(4);
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn an_isolated_leader_acknowledges_no_acks_all_write_and_healing_loses_nothing() {
    let cluster = Cluster::start(ClusterOptions {
        proxies: true,
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, PARTITIONS, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, PARTITIONS, SETTLE_TIMEOUT);
    let bootstrap = cluster
        .ids()
        .iter()
        .map(|&id| cluster.address(id).to_string())
        .collect();
    // A short produce timeout: a request the isolated old leader holds (it still believes it
    // leads) fails soon, and the client asks again for the leader.
    let options = ProducerOptions {
        produce_timeout: Duration::from_secs(5),
        ..ProducerOptions::default()
    };
    let producer = ProducerRun::start(bootstrap, TOPIC, PARTITIONS, options);
    producer.wait_for_acknowledged(200, SETTLE_TIMEOUT, "before the partition");

    let (old_leader, old_epoch) = cluster.wait_for_agreed_leader(TOPIC, 0, FORMATION_TIMEOUT);
    cluster.isolate(old_leader);
    let isolated_at = Instant::now();
    eprintln!("isolated broker {old_leader} (leader at epoch {old_epoch})");

    // Keep writing to the isolated leader directly until the majority has had its new leader
    // for a while; not one of these may be acknowledged.
    let mut answers = Vec::new();
    let mut elected = None;
    let mut number = 0;
    while elected.is_none_or(|at: Instant| at.elapsed() < ISOLATION_AFTER_ELECTION) {
        assert!(
            isolated_at.elapsed() < SETTLE_TIMEOUT,
            "the majority elected no new leader within {SETTLE_TIMEOUT:?}"
        );
        let request = ProduceRequest {
            acks: Acks::All,
            timeout_ms: ISOLATED_PRODUCE_TIMEOUT_MS,
            topics: vec![TopicPartitions {
                name: TOPIC.to_string(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    batches: vec![isolated_batch(number)],
                }],
            }],
            transactional_id: None,
        };
        number += 1;
        let answer = call_once(
            cluster.direct_address(old_leader),
            &request,
            Duration::from_millis(u64::from(ISOLATED_PRODUCE_TIMEOUT_MS) + 10_000),
        )
        .map(|response| response.topics[0].partitions[0].error_code);
        assert_ne!(
            answer,
            Some(ErrorCode::None),
            "the isolated old leader {old_leader} acknowledged an acks=all write ({} s after \
             the cut)",
            isolated_at.elapsed().as_secs_f64()
        );
        answers.push(answer);
        if elected.is_none() {
            let majority_leader = cluster
                .ids()
                .into_iter()
                .filter(|&id| id != old_leader)
                .filter_map(|id| cluster.metadata_from(id, Some(vec![TOPIC.to_string()])))
                .filter_map(|metadata| spate_tests::cluster::partition_leader(&metadata, TOPIC, 0))
                .find(|&(leader, epoch)| leader != old_leader && epoch > old_epoch);
            if let Some((leader, epoch)) = majority_leader {
                eprintln!(
                    "the majority elected broker {leader} at epoch {epoch} {:.1} s after the cut",
                    isolated_at.elapsed().as_secs_f64()
                );
                elected = Some(Instant::now());
            }
        }
    }
    // The producer, following leaders, goes on with the majority.
    let before = producer.acknowledged_count();
    producer.wait_for_acknowledged(before + 100, SETTLE_TIMEOUT, "on the majority's new leader");
    eprintln!(
        "answers of the isolated leader to {} acks=all writes: {:?}",
        answers.len(),
        summarize(&answers)
    );

    cluster.heal();
    cluster.wait_in_sync(TOPIC, PARTITIONS, SETTLE_TIMEOUT);
    let (acknowledged, failures) = producer.finish();
    let records: usize = acknowledged.iter().map(Vec::len).sum();
    eprintln!(
        "acknowledged records: {records}, failed sends: {} {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    cluster.wait_in_sync(TOPIC, PARTITIONS, SETTLE_TIMEOUT);
    let stored = stored_numbers(&cluster, TOPIC, 0);
    assert_acknowledged_stored_once_in_order(0, &stored, &acknowledged[0]);
    assert_replicas_identical(&cluster, TOPIC, PARTITIONS);
}

/// A batch of one record the isolated leader is sent. Its number field does not parse, so
/// reading it back fails the test: only the isolated broker ever had it, and it was never
/// acknowledged, so it must be gone once that broker follows the new leader.
fn isolated_batch(number: usize) -> Bytes {
    build_batch(&[TestRecord::new(
        "isolated",
        &format!("0:isolated-{number}:never acknowledged"),
        1_000,
    )])
    .freeze()
}

/// Each distinct answer and how often it came (`None`: no answer in time).
fn summarize(answers: &[Option<ErrorCode>]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for answer in answers {
        let name = format!("{answer:?}");
        match counts.iter_mut().find(|(seen, _)| *seen == name) {
            Some((_, count)) => *count += 1,
            None => counts.push((name, 1)),
        }
    }
    counts
}
