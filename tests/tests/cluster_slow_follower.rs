//! Slow and dead followers (issue 14, "Failure behaviour"): a follower stopped with SIGSTOP
//! (it keeps its sockets and answers nothing, the worst kind of slow) must never stall
//! acks=leader produce, and acks=all must answer within the request's timeout.
//!
//! One follower paused: the leader keeps the other follower, which is enough for
//! min.insync.replicas=2, so acks=all either waits for the paused follower until the leader
//! drops it from the ISR (`replica_lag_time_max_ms`) and then succeeds, or times out; the test
//! prints which (by design the shrink comes first when the lag time is shorter than the
//! request's timeout). Both followers paused: the ISR can no longer change (the controller's
//! quorum is gone, or the controller is paused), so acks=all must answer with an error within
//! its timeout, and acks=leader must still succeed.
//!
//! "Within the timeout" allows a fixed slack for a debug build on a busy machine; the test
//! asserts no speed, only that the broker answers and does not wait past its deadline.

mod cluster_support;

use std::time::{Duration, Instant};

use cluster_support::assert_replicas_identical;
use spate_protocol::api::{Acks, ProducePartition, ProduceRequest, TopicPartitions};
use spate_protocol::error::ErrorCode;
use spate_tests::build_batch;
use spate_tests::client::TestRecord;
use spate_tests::cluster::{call_once, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};

const TOPIC: &str = "slow-follower";
/// The produce requests' own timeout.
const PRODUCE_TIMEOUT_MS: u32 = 8_000;
/// Lag after which the leader drops a follower from the ISR (the broker's default is 5000).
const REPLICA_LAG_TIME_MAX_MS: u32 = 3_000;
/// What an answer may take beyond the request's timeout on a busy debug build.
const ANSWER_SLACK: Duration = Duration::from_secs(5);
/// acks=leader writes made while followers are paused.
const LEADER_ACK_WRITES: usize = 50;
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// One produce to `leader` directly: the answer's error code (`None`: no answer within the
/// timeout and the slack) and how long it took.
fn produce(
    cluster: &Cluster,
    leader: NodeId,
    acks: Acks,
    number: usize,
) -> (Option<ErrorCode>, Duration) {
    let request = ProduceRequest {
        acks,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        topics: vec![TopicPartitions {
            name: TOPIC.to_string(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: vec![build_batch(&[TestRecord::new(
                    "key",
                    &format!("0:{number}:slow follower"),
                    1_000,
                )])
                .freeze()],
            }],
        }],
        transactional_id: None,
    };
    let started = Instant::now();
    let answer = call_once(
        cluster.direct_address(leader),
        &request,
        Duration::from_millis(u64::from(PRODUCE_TIMEOUT_MS)) + ANSWER_SLACK,
    )
    .map(|response| response.topics[0].partitions[0].error_code);
    (answer, started.elapsed())
}

/// acks=leader writes all succeed while followers are paused.
fn assert_acks_leader_goes_on(cluster: &Cluster, leader: NodeId, first_number: usize) {
    for number in first_number..first_number + LEADER_ACK_WRITES {
        let (answer, took) = produce(cluster, leader, Acks::Leader, number);
        assert_eq!(
            answer,
            Some(ErrorCode::None),
            "acks=leader write {number} with followers paused (answered after {took:?})"
        );
    }
}

#[test]
fn a_paused_follower_never_stalls_acks_leader_and_acks_all_answers_within_its_timeout() {
    let mut cluster = Cluster::start(ClusterOptions {
        arguments: vec![
            "--replica-lag-time-max-ms".to_string(),
            REPLICA_LAG_TIME_MAX_MS.to_string(),
        ],
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, 1, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, 1, SETTLE_TIMEOUT);
    let (leader, _) = cluster.wait_for_agreed_leader(TOPIC, 0, FORMATION_TIMEOUT);
    let (answer, _) = produce(&cluster, leader, Acks::All, 0);
    assert_eq!(
        answer,
        Some(ErrorCode::None),
        "acks=all with every replica up"
    );
    let followers: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|&id| id != leader)
        .collect();

    // One follower paused.
    cluster.pause(followers[0]);
    assert_acks_leader_goes_on(&cluster, leader, 1_000);
    let (answer, took) = produce(&cluster, leader, Acks::All, 2_000);
    let timeout = Duration::from_millis(u64::from(PRODUCE_TIMEOUT_MS));
    assert!(
        answer.is_some(),
        "acks=all got no answer within {:?}",
        timeout + ANSWER_SLACK
    );
    assert!(
        answer == Some(ErrorCode::None)
            || answer == Some(ErrorCode::RequestTimedOut)
            || answer == Some(ErrorCode::NotEnoughReplicasAfterAppend),
        "acks=all with one of two followers paused answered {answer:?}"
    );
    eprintln!(
        "one follower paused: acks=all answered {answer:?} after {took:?} (lag time {} ms, \
         request timeout {PRODUCE_TIMEOUT_MS} ms): {}",
        REPLICA_LAG_TIME_MAX_MS,
        if answer == Some(ErrorCode::None) {
            "succeeded (the paused follower was dropped from the ISR)"
        } else {
            "an error within the timeout"
        }
    );
    // Once shrunk (or if the first write timed out, soon), the ISR without the paused follower
    // still meets min.insync.replicas=2: acks=all succeeds again.
    let mut later = None;
    for number in 2_001..2_010 {
        let (answer, took) = produce(&cluster, leader, Acks::All, number);
        assert!(took <= timeout + ANSWER_SLACK, "acks=all took {took:?}");
        if answer == Some(ErrorCode::None) {
            later = Some(number);
            break;
        }
    }
    assert!(
        later.is_some(),
        "acks=all never succeeded with one of two followers paused (the ISR should have shrunk \
         to the leader and the live follower)"
    );

    // Both followers paused: the ISR cannot change any more.
    cluster.pause(followers[1]);
    assert_acks_leader_goes_on(&cluster, leader, 3_000);
    let (answer, took) = produce(&cluster, leader, Acks::All, 4_000);
    eprintln!("both followers paused: acks=all answered {answer:?} after {took:?}");
    assert!(
        matches!(
            answer,
            Some(
                ErrorCode::RequestTimedOut
                    | ErrorCode::NotEnoughReplicas
                    | ErrorCode::NotEnoughReplicasAfterAppend
            )
        ),
        "acks=all with both followers paused must answer an error within {:?}, got {answer:?} \
         after {took:?}",
        timeout + ANSWER_SLACK
    );

    cluster.resume(followers[0]);
    cluster.resume(followers[1]);
    cluster.wait_in_sync(TOPIC, 1, SETTLE_TIMEOUT);
    let (answer, _) = produce(&cluster, leader, Acks::All, 5_000);
    let (now_leader, _) = cluster.wait_for_agreed_leader(TOPIC, 0, FORMATION_TIMEOUT);
    if now_leader == leader {
        assert_eq!(answer, Some(ErrorCode::None), "acks=all after resuming");
    }
    assert_replicas_identical(&cluster, TOPIC, 1);
}
