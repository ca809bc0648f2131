//! Partition replication over three real brokers (issue 14): an acks=all write is answered only
//! once every in-sync follower holds it on disk; acks=leader is answered by the leader alone;
//! the replicas end with the same batches, byte for byte; a follower killed with `kill -9`
//! catches up after its restart and holds the same batches again.
//!
//! "Holds it on disk" is read from the follower's own data directory (its segment files), not
//! through any broker: a follower does not serve consumer reads.

mod cluster_support;

use cluster_support::{assert_replicas_identical, replica_batches};
use spate_protocol::api::{
    Acks, CreateTopic, CreateTopicsRequest, ProducePartition, ProducePartitionResponse,
    ProduceRequest, TopicPartitions,
};
use spate_protocol::error::ErrorCode;
use spate_tests::build_batch;
use spate_tests::client::TestRecord;
use spate_tests::cluster::{
    call_once, wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT,
};
use std::time::Duration;

const TOPIC: &str = "replicated";
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
const PRODUCE_TIMEOUT_MS: u32 = 30_000;

/// One produce of one single-record batch to `leader`: (error code, base offset).
fn produce(cluster: &Cluster, leader: NodeId, acks: Acks, number: usize) -> (ErrorCode, u64) {
    let answer = produce_answer(cluster, leader, acks, number);
    (answer.error_code, answer.base_offset)
}

/// One produce of one single-record batch to broker `to`: its partition's answer.
fn produce_answer(
    cluster: &Cluster,
    to: NodeId,
    acks: Acks,
    number: usize,
) -> ProducePartitionResponse {
    let leader = to;
    let request = ProduceRequest {
        acks,
        timeout_ms: PRODUCE_TIMEOUT_MS,
        topics: vec![TopicPartitions {
            name: TOPIC.to_string(),
            partitions: vec![ProducePartition {
                partition: 0,
                batches: vec![build_batch(&[TestRecord::new(
                    "key",
                    &format!("record {number}"),
                    1_700_000_000_000 + number as i64,
                )])
                .freeze()],
            }],
        }],
        transactional_id: None,
    };
    let response = call_once(
        cluster.address(leader),
        &request,
        Duration::from_millis(u64::from(PRODUCE_TIMEOUT_MS) + 10_000),
    )
    .unwrap_or_else(|| panic!("leader {leader} did not answer produce {number}"));
    response.topics[0].partitions[0]
}

/// The ISR of partition 0 as `leader` itself knows it (a leader uses a shrunk ISR only once
/// its metadata applied it, so a follower in this list was in the ISR when any earlier write
/// was committed, or rejoined it holding everything committed).
fn isr_on(cluster: &Cluster, leader: NodeId) -> Vec<NodeId> {
    let metadata = cluster
        .metadata_from(leader, Some(vec![TOPIC.to_string()]))
        .expect("the leader answers Metadata");
    metadata.topics[0].partitions[0].isr.clone()
}

fn holds(cluster: &Cluster, id: NodeId, offset: u64) -> bool {
    replica_batches(cluster.data_dir(id), TOPIC, 0)
        .iter()
        .any(|(base_offset, _)| *base_offset == offset)
}

/// Creates the topic (replication factor: the brokers' default, 3) once the controller counts
/// every broker as active (a broker registers fenced and is unfenced once caught up).
fn create_topic(cluster: &Cluster) {
    let request = CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: TOPIC.to_string(),
            partition_count: 1,
            configs: Vec::new(),
            replication_factor: 0,
        }],
        timeout_ms: 30_000,
    };
    let created = wait_for(SETTLE_TIMEOUT, || {
        let response = call_once(cluster.address(1), &request, Duration::from_secs(40))?;
        let result = &response.results[0];
        match result.error_code {
            ErrorCode::None | ErrorCode::TopicAlreadyExists => Some(()),
            ErrorCode::InvalidReplicationFactor => None,
            other => panic!("creating {TOPIC}: {other} {:?}", result.error_message),
        }
    });
    assert!(
        created.is_some(),
        "{TOPIC} not created within {SETTLE_TIMEOUT:?}"
    );
    cluster.wait_for_agreed_leader(TOPIC, 0, SETTLE_TIMEOUT);
}

#[test]
fn acks_all_is_on_every_in_sync_follower_when_answered_and_the_replicas_agree() {
    let mut cluster = Cluster::start(ClusterOptions {
        brokers: 3,
        shards: 2,
        // Three replicas whatever the controller counts as active when the topic is created:
        // created only once all three are (a broker registers fenced).
        arguments: vec!["--default-replication-factor".to_string(), "3".to_string()],
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    create_topic(&cluster);
    cluster.wait_in_sync(TOPIC, 1, SETTLE_TIMEOUT);
    let (leader, _) = cluster.wait_for_agreed_leader(TOPIC, 0, SETTLE_TIMEOUT);
    let followers: Vec<NodeId> = cluster
        .ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    let metadata = cluster
        .metadata_from(leader, Some(vec![TOPIC.to_string()]))
        .expect("the leader answers Metadata");
    let mut replicas = metadata.topics[0].partitions[0].replicas.clone();
    replicas.sort_unstable();
    assert_eq!(replicas, cluster.ids(), "a replica on every broker");

    // A follower refuses writes and names the leader (native Produce v2).
    let (leader_now, epoch) = cluster.leader_of(TOPIC, 0).expect("a leader");
    assert_eq!(leader_now, leader);
    let refused = produce_answer(&cluster, followers[0], Acks::All, 0);
    assert_eq!(
        (refused.error_code, refused.leader_id, refused.leader_epoch),
        (ErrorCode::NotLeaderOrFollower, leader, epoch)
    );

    for number in 0..20 {
        let (code, offset) = produce(&cluster, leader, Acks::All, number);
        assert_eq!(code, ErrorCode::None, "acks=all produce {number}");
        assert_eq!(offset, number as u64);
        let isr = isr_on(&cluster, leader);
        for follower in &followers {
            if isr.contains(follower) {
                assert!(
                    holds(&cluster, *follower, offset),
                    "acks=all answered offset {offset}, but follower {follower} (in the ISR \
                     {isr:?}) does not hold it"
                );
            }
        }
    }
    for number in 20..40 {
        let (code, offset) = produce(&cluster, leader, Acks::Leader, number);
        assert_eq!(code, ErrorCode::None, "acks=leader produce {number}");
        assert_eq!(offset, number as u64);
    }
    assert_replicas_identical(&cluster, TOPIC, 1);

    // A follower killed and restarted catches up from its own durable log.
    let restarted = followers[0];
    cluster.kill9(restarted);
    // Killed while the partition is idle, it still looks caught up by its last fetch: once the
    // controller fenced it (out of the ISR) the leader must not propose it back in (the
    // refused proposal would hold the high watermark), so acks=all goes on with two replicas.
    let fenced = wait_for(SETTLE_TIMEOUT, || {
        (!isr_on(&cluster, leader).contains(&restarted)).then_some(())
    });
    assert!(
        fenced.is_some(),
        "the killed follower {restarted} stayed in the ISR"
    );
    std::thread::sleep(Duration::from_secs(3));
    let (code, offset) = produce(&cluster, leader, Acks::All, 40);
    assert_eq!(
        code,
        ErrorCode::None,
        "acks=all on an idle partition after a follower died"
    );
    assert_eq!(offset, 40);
    for number in 41..59 {
        let (code, _) = produce(&cluster, leader, Acks::Leader, number);
        assert_eq!(
            code,
            ErrorCode::None,
            "acks=leader produce {number} with a follower down"
        );
    }
    // acks=all goes on once the leader dropped the dead follower from the ISR (two replicas
    // left: min.insync.replicas 2 still met).
    let (code, offset) = produce(&cluster, leader, Acks::All, 59);
    assert_eq!(code, ErrorCode::None, "acks=all with a follower down");
    assert_eq!(offset, 59);
    assert!(!isr_on(&cluster, leader).contains(&restarted));
    cluster.restart(restarted);
    cluster.wait_in_sync(TOPIC, 1, SETTLE_TIMEOUT);
    let (code, offset) = produce(&cluster, leader, Acks::All, 60);
    assert_eq!(code, ErrorCode::None, "acks=all after the restart");
    assert_eq!(offset, 60);
    assert_replicas_identical(&cluster, TOPIC, 1);
    assert_eq!(
        replica_batches(cluster.data_dir(restarted), TOPIC, 0).len(),
        61
    );
}
