//! Committed offsets against the real broker: durability across a clean restart and `kill -9`,
//! compaction of the offsets log, list / describe (with lag) / delete of groups, resetting a
//! stopped group's offsets, deleting offsets, and the refusals that keep them consistent.

mod group_support;

use std::collections::BTreeMap;

use group_support::*;
use spate_protocol::api::{
    Acks, DeleteGroupsRequest, GroupState, HeartbeatRequest, JoinGroupRequest, ListGroupsRequest,
    MetadataRequest, OffsetCommitPartition, OffsetCommitRequest, OffsetDeleteRequest,
    OffsetFetchRequest, TopicPartitionList, TopicPartitions, GENERATION_NONE,
};
use spate_protocol::ErrorCode;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// A commit from outside the membership, as a tool resetting a stopped group makes it.
fn standalone_commit(
    client: &mut TestClient,
    group: &str,
    offsets: &[(&str, u32, u64)],
) -> Vec<ErrorCode> {
    let request = commit_request(group, GENERATION_NONE, "", None, offsets);
    commit_codes(&client.call(&request))
}

fn all_none(codes: &[ErrorCode]) -> bool {
    codes.iter().all(|code| code.is_none())
}

#[test]
fn committed_offsets_survive_a_clean_restart_and_a_kill_9() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("orders", 4, &[]);

    // With metadata, from outside the membership.
    let request = OffsetCommitRequest {
        group_id: "billing".into(),
        generation_id: GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![TopicPartitions {
            name: "orders".into(),
            partitions: vec![
                OffsetCommitPartition {
                    partition: 0,
                    committed_offset: 10,
                    committed_metadata: Some("checkpoint-a".into()),
                },
                OffsetCommitPartition {
                    partition: 3,
                    committed_offset: 31,
                    committed_metadata: None,
                },
            ],
        }],
    };
    assert!(all_none(&commit_codes(&client.call(&request))));
    // And from a member of a live group.
    let mut member = Member::new(broker.address(), "shipping", &["orders"], None);
    member
        .join_and_sync(&BTreeMap::from([("orders".to_string(), 4)]))
        .expect("joins alone");
    assert!(all_none(&commit_codes(
        &member.commit(&[("orders", 1, 7), ("orders", 2, 8)])
    )));

    let check = |client: &mut TestClient| {
        let fetched = client.call(&OffsetFetchRequest {
            group_id: "billing".into(),
            topics: None,
            require_stable: false,
        });
        assert_eq!(fetched.error_code, ErrorCode::None);
        assert_eq!(fetched.topics.len(), 1);
        let partitions = &fetched.topics[0].partitions;
        assert_eq!(
            partitions.len(),
            2,
            "only what was committed: {partitions:?}"
        );
        assert_eq!(partitions[0].committed_offset, Some(10));
        assert_eq!(partitions[0].metadata.as_deref(), Some("checkpoint-a"));
        assert_eq!(partitions[1].committed_offset, Some(31));
        let shipping = committed(client, "shipping", "orders", &[0, 1, 2]);
        assert_eq!(
            shipping,
            BTreeMap::from([(0, None), (1, Some(7)), (2, Some(8))])
        );
    };
    check(&mut client);

    drop(member);
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    check(&mut client);

    // An acknowledged commit is durable: kill -9 right after the answer.
    assert!(all_none(&standalone_commit(
        &mut client,
        "billing",
        &[("orders", 0, 11)]
    )));
    broker.kill();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    assert_eq!(
        committed(&mut client, "billing", "orders", &[0])[&0],
        Some(11)
    );
}

/// Records (not offsets: compaction empties batches but keeps their offsets) in partition
/// `partition` of `topic`, from its log start to its high watermark.
fn records_in(client: &mut TestClient, topic: &str, partition: u32) -> (usize, u64) {
    let (mut offset, high_watermark) = client.offsets_of(topic, partition);
    let mut records = 0;
    while offset < high_watermark {
        let answer = client.fetch_once(topic, partition, offset, 1 << 20);
        let bytes = answer.records.to_bytes();
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let length =
                spate_protocol::batch::header::peek_batch_length(rest).expect("header") as usize;
            let view = spate_protocol::batch::BatchView::validate(&rest[..length], usize::MAX)
                .expect("a valid batch");
            records += view.record_count() as usize;
            offset = view.next_offset();
            rest = &rest[length..];
        }
    }
    (records, high_watermark)
}

#[test]
fn the_offsets_log_is_compacted_and_still_replays_to_the_latest_commits() {
    const PARTITIONS: u32 = 50;
    const ROUNDS: u64 = 210;
    // The offsets topic has cleanup.policy=compact: the shard's compactor (here every 100 ms,
    // over 64 KiB segments) keeps the last commit of each partition.
    let mut broker = Broker::start(BrokerOptions {
        arguments: [
            "--compaction-check-interval-ms",
            "100",
            "--offsets-topic-segment-bytes",
            "65536",
        ]
        .map(String::from)
        .to_vec(),
        ..BrokerOptions::default()
    });
    let mut client = TestClient::connect(broker.address());
    client.create_topic("metrics", PARTITIONS, &[]);
    // 50 x 210 = 10 500 records for 50 live keys.
    for round in 1..=ROUNDS {
        let offsets: Vec<(&str, u32, u64)> = (0..PARTITIONS)
            .map(|partition| ("metrics", partition, round * 100 + u64::from(partition)))
            .collect();
        assert!(all_none(&standalone_commit(
            &mut client,
            "scrapers",
            &offsets
        )));
    }
    let metadata = client.call(&MetadataRequest {
        topics: Some(vec![OFFSETS_TOPIC.to_string()]),
    });
    let partition = metadata.topics[0]
        .partitions
        .iter()
        .find(|partition| partition.high_watermark > 0)
        .expect("one offsets partition holds the group")
        .partition;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (kept, high_watermark) = records_in(&mut client, OFFSETS_TOPIC, partition);
        if kept < 2_000 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compaction bounds the log: {kept} of {high_watermark} records kept"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    broker.kill();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let positions = committed(
        &mut client,
        "scrapers",
        "metrics",
        &(0..PARTITIONS).collect::<Vec<_>>(),
    );
    for (partition, offset) in positions {
        assert_eq!(offset, Some(ROUNDS * 100 + u64::from(partition)));
    }
}

#[test]
fn groups_are_listed_and_described_with_members_assignments_offsets_and_lag() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("views", 2, &[]);
    for partition in 0..2 {
        let batch = build_batch(&numbered_records(0, 30, 1_000)).freeze();
        assert_eq!(
            client.produce("views", partition, Acks::All, vec![batch]).0,
            ErrorCode::None
        );
    }
    assert!(ListGroupsRequest::default() == ListGroupsRequest { states: Vec::new() });
    assert!(
        client.call(&ListGroupsRequest::default()).groups.is_empty(),
        "no groups yet"
    );

    let mut member = Member::new(broker.address(), "dashboards", &["views"], None);
    member
        .join_and_sync(&BTreeMap::from([("views".to_string(), 2)]))
        .expect("joins alone");
    assert!(all_none(&commit_codes(
        &member.commit(&[("views", 0, 12), ("views", 1, 30)])
    )));
    assert!(all_none(&standalone_commit(
        &mut client,
        "archivers",
        &[("views", 0, 5)]
    )));

    let listed = client.call(&ListGroupsRequest::default());
    assert_eq!(listed.error_code, ErrorCode::None);
    let states: BTreeMap<String, GroupState> = listed
        .groups
        .iter()
        .map(|group| (group.group_id.clone(), group.state))
        .collect();
    assert_eq!(
        states,
        BTreeMap::from([
            ("archivers".to_string(), GroupState::Empty),
            ("dashboards".to_string(), GroupState::Stable)
        ])
    );
    let stable_only = client.call(&ListGroupsRequest {
        states: vec![GroupState::Stable],
    });
    assert_eq!(stable_only.groups.len(), 1);
    assert_eq!(stable_only.groups[0].protocol_type, "consumer");

    let described = describe(&mut client, "dashboards");
    assert_eq!(described.error_code, ErrorCode::None);
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.protocol_name, "range");
    assert_eq!(described.leader, member.member_id);
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].client_id, "spate-tests");
    let assignment =
        spate_protocol::api::ConsumerAssignment::decode(described.members[0].assignment.clone())
            .unwrap();
    assert_eq!(
        assignment.topic_partitions().collect::<Vec<_>>(),
        vec![("views", 0), ("views", 1)]
    );
    let offsets = &described.offsets[0];
    assert_eq!(offsets.name, "views");
    let lags: Vec<(u32, u64, Option<u64>)> = offsets
        .partitions
        .iter()
        .map(|offset| (offset.partition, offset.committed_offset, offset.lag()))
        .collect();
    assert_eq!(lags, vec![(0, 12, Some(18)), (1, 30, Some(0))]);

    let missing = describe(&mut client, "nobody");
    assert_eq!(missing.error_code, ErrorCode::GroupIdNotFound);
}

#[test]
fn only_groups_without_members_can_be_deleted_and_deletion_takes_their_offsets() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("logs", 1, &[]);
    let mut member = Member::new(broker.address(), "indexers", &["logs"], None);
    member
        .join_and_sync(&BTreeMap::from([("logs".to_string(), 1)]))
        .expect("joins alone");
    assert!(all_none(&commit_codes(&member.commit(&[("logs", 0, 4)]))));

    let delete = |client: &mut TestClient| {
        let response = client.call(&DeleteGroupsRequest {
            groups: vec!["indexers".into(), "never-existed".into()],
        });
        assert_eq!(response.error_code, ErrorCode::None);
        (
            response.results[0].error_code,
            response.results[1].error_code,
        )
    };
    assert_eq!(
        delete(&mut client),
        (ErrorCode::NonEmptyGroup, ErrorCode::GroupIdNotFound)
    );
    assert_eq!(member.leave().members[0].error_code, ErrorCode::None);
    assert_eq!(describe(&mut client, "indexers").state, GroupState::Empty);
    assert_eq!(delete(&mut client).0, ErrorCode::None);
    assert_eq!(
        describe(&mut client, "indexers").error_code,
        ErrorCode::GroupIdNotFound
    );
    assert_eq!(committed(&mut client, "indexers", "logs", &[0])[&0], None);
    assert_eq!(delete(&mut client).0, ErrorCode::GroupIdNotFound);
}

#[test]
fn a_stopped_groups_offsets_can_be_reset_but_an_active_groups_cannot() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("jobs", 1, &[]);
    let mut member = Member::new(broker.address(), "workers", &["jobs"], None);
    member
        .join_and_sync(&BTreeMap::from([("jobs".to_string(), 1)]))
        .expect("joins alone");
    assert!(all_none(&commit_codes(&member.commit(&[("jobs", 0, 40)]))));
    assert_eq!(
        standalone_commit(&mut client, "workers", &[("jobs", 0, 0)])[0],
        ErrorCode::NonEmptyGroup,
        "resetting under a live member's feet is refused"
    );
    member.leave();
    assert!(all_none(&standalone_commit(
        &mut client,
        "workers",
        &[("jobs", 0, 0)]
    )));
    assert_eq!(committed(&mut client, "workers", "jobs", &[0])[&0], Some(0));
}

#[test]
fn offsets_of_topics_a_live_group_consumes_cannot_be_deleted_but_others_can() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("current", 1, &[]);
    client.create_topic("retired", 1, &[]);
    let mut member = Member::new(broker.address(), "movers", &["current"], None);
    member
        .join_and_sync(&BTreeMap::from([("current".to_string(), 1)]))
        .expect("joins alone");
    assert!(all_none(&commit_codes(
        &member.commit(&[("current", 0, 3), ("retired", 0, 9)])
    )));
    let response = client.call(&OffsetDeleteRequest {
        group_id: "movers".into(),
        topics: vec![
            TopicPartitionList {
                name: "current".into(),
                partitions: vec![0],
            },
            TopicPartitionList {
                name: "retired".into(),
                partitions: vec![0],
            },
        ],
    });
    assert_eq!(response.error_code, ErrorCode::None);
    let codes: BTreeMap<String, ErrorCode> = response
        .topics
        .iter()
        .map(|topic| (topic.name.clone(), topic.partitions[0].error_code))
        .collect();
    assert_eq!(codes["current"], ErrorCode::GroupSubscribedToTopic);
    assert_eq!(codes["retired"], ErrorCode::None);
    assert_eq!(
        committed(&mut client, "movers", "current", &[0])[&0],
        Some(3)
    );
    assert_eq!(committed(&mut client, "movers", "retired", &[0])[&0], None);
}

#[test]
fn malformed_group_requests_get_clear_errors() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("things", 1, &[]);

    let heartbeat = client.call(&HeartbeatRequest {
        group_id: "unknown".into(),
        generation_id: 1,
        member_id: "who".into(),
        group_instance_id: None,
    });
    assert_eq!(heartbeat.error_code, ErrorCode::UnknownMemberId);

    let mut member = Member::new(broker.address(), "strict", &["things"], None);
    member.session_timeout_ms = 10;
    assert_eq!(member.join().error_code, ErrorCode::InvalidSessionTimeout);
    let empty_group = client.call(&JoinGroupRequest {
        group_id: String::new(),
        ..JoinGroupRequest::default()
    });
    assert_eq!(empty_group.error_code, ErrorCode::InvalidGroupId);

    let long_metadata = OffsetCommitRequest {
        group_id: "strict".into(),
        generation_id: GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![TopicPartitions {
            name: "things".into(),
            partitions: vec![
                OffsetCommitPartition {
                    partition: 0,
                    committed_offset: 1,
                    committed_metadata: Some("x".repeat(5_000)),
                },
                OffsetCommitPartition {
                    partition: 9,
                    committed_offset: 1,
                    committed_metadata: None,
                },
            ],
        }],
    };
    let codes = commit_codes(&client.call(&long_metadata));
    assert_eq!(
        codes,
        vec![
            ErrorCode::None,
            ErrorCode::OffsetMetadataTooLarge,
            ErrorCode::UnknownTopicOrPartition
        ]
    );
}

#[test]
fn deleting_a_topic_removes_its_committed_offsets_so_a_recreated_topic_starts_clean() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("orders", 2, &[]);
    client.create_topic("kept", 1, &[]);
    for partition in 0..2 {
        let (code, _) = client.produce(
            "orders",
            partition,
            Acks::All,
            vec![build_batch(&numbered_records(0, 10, 0)).freeze()],
        );
        assert_eq!(code, ErrorCode::None);
    }
    // Groups on several offsets partitions (and so coordinator shards), one with another topic.
    let groups = ["billing", "audit", "search", "mail"];
    for group in groups {
        assert!(all_none(&standalone_commit(
            &mut client,
            group,
            &[("orders", 0, 10), ("orders", 1, 7)]
        )));
    }
    assert!(all_none(&standalone_commit(
        &mut client,
        "billing",
        &[("kept", 0, 0)]
    )));

    let response = client.call(&spate_protocol::api::DeleteTopicsRequest {
        names: vec!["orders".to_string()],
        timeout_ms: 30_000,
    });
    assert_eq!(response.results[0].error_code, ErrorCode::None);
    client.create_topic("orders", 2, &[]);
    let (code, _) = client.produce(
        "orders",
        0,
        Acks::All,
        vec![build_batch(&numbered_records(0, 3, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::None);

    let expect_clean = |client: &mut TestClient| {
        for group in groups {
            let offsets = committed(client, group, "orders", &[0, 1]);
            assert_eq!(
                offsets,
                BTreeMap::from([(0, None), (1, None)]),
                "group {group} kept the deleted topic's offsets"
            );
        }
        // Another topic's offsets are untouched.
        assert_eq!(
            committed(client, "billing", "kept", &[0]),
            BTreeMap::from([(0, Some(0))])
        );
    };
    expect_clean(&mut client);
    // Durable: tombstones, not a cache.
    broker.kill();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    expect_clean(&mut client);
}
