//! End-to-end: the Kafka consumer-group APIs (FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups,
//! OffsetDelete) against the real broker, spoken on the wire with the `kafka-protocol` crate's
//! encoders (`KafkaTestClient`) at old non-flexible and new flexible versions, and checked
//! against what native members and the native offset APIs see of the same groups.
//!
//! A join parks until the rebalance completes, so members that join together each run on their
//! own thread and connection, as real consumers do.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use spate_client::group::{GroupAdmin, GroupConfig, GroupConsumer};
use spate_client::{Client, ConsumerConfig};
use spate_kafka_protocol::consumer_protocol::{read_assignment, read_subscription};
use spate_kafka_protocol::kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartition;
use spate_kafka_protocol::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartition;
use spate_kafka_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use spate_kafka_protocol::kafka_protocol::messages::leave_group_request::MemberIdentity;
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_delete_request::{
    OffsetDeleteRequestPartition, OffsetDeleteRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use spate_kafka_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use spate_kafka_protocol::kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, DeleteGroupsRequest,
    DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest, GroupId,
    HeartbeatRequest, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, ListGroupsRequest,
    OffsetCommitRequest, OffsetCommitResponse, OffsetDeleteRequest, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api as native;
use spate_protocol::ErrorCode;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 10_000;
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// The consumer protocol version the test members write (v1 has owned partitions).
const CONSUMER_PROTOCOL_VERSION: i16 = 1;

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn group_id(value: &str) -> GroupId {
    GroupId(text(value))
}

fn topic_name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn create_topic(broker: &Broker, name: &str, partitions: u32) {
    TestClient::connect(broker.address()).create_topic(name, partitions, &[]);
}

/// A Kafka consumer's subscription bytes, as the Java client writes them.
fn subscription(topics: &[&str]) -> Bytes {
    let message = ConsumerProtocolSubscription::default()
        .with_topics(topics.iter().map(|topic| text(topic)).collect())
        .with_owned_partitions(Vec::<OwnedPartition>::new());
    let mut bytes = BytesMut::new();
    bytes.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut bytes, CONSUMER_PROTOCOL_VERSION)
        .expect("encode a subscription");
    bytes.freeze()
}

/// A Kafka consumer assignment's bytes.
fn assignment(partitions: &[(&str, &[i32])]) -> Bytes {
    let message = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, indexes)| {
                AssignedPartition::default()
                    .with_topic(topic_name(topic))
                    .with_partitions(indexes.to_vec())
            })
            .collect(),
    );
    let mut bytes = BytesMut::new();
    bytes.put_i16(CONSUMER_PROTOCOL_VERSION);
    message
        .encode(&mut bytes, CONSUMER_PROTOCOL_VERSION)
        .expect("encode an assignment");
    bytes.freeze()
}

fn join_request(
    group: &str,
    member_id: &str,
    instance: Option<&str>,
    topics: &[&str],
) -> JoinGroupRequest {
    JoinGroupRequest::default()
        .with_group_id(group_id(group))
        .with_session_timeout_ms(SESSION_TIMEOUT_MS)
        .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
        .with_member_id(text(member_id))
        .with_group_instance_id(instance.map(text))
        .with_protocol_type(text("consumer"))
        .with_protocols(vec![
            JoinGroupRequestProtocol::default()
                .with_name(text("cooperative-sticky"))
                .with_metadata(subscription(topics)),
            JoinGroupRequestProtocol::default()
                .with_name(text("range"))
                .with_metadata(subscription(topics)),
        ])
}

/// One Kafka group member on its own connection.
struct KafkaMember {
    client: KafkaTestClient,
    group: String,
    instance: Option<String>,
    topics: Vec<String>,
    member_id: String,
    generation: i32,
    join_version: i16,
}

impl KafkaMember {
    fn new(address: SocketAddr, group: &str, topics: &[&str], join_version: i16) -> KafkaMember {
        KafkaMember {
            client: KafkaTestClient::connect(address),
            group: group.to_string(),
            instance: None,
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            member_id: String::new(),
            generation: -1,
            join_version,
        }
    }

    fn with_instance(mut self, instance: &str) -> KafkaMember {
        self.instance = Some(instance.to_string());
        self
    }

    /// One JoinGroup with the member's current id.
    fn join_once(&mut self) -> JoinGroupResponse {
        let topics: Vec<&str> = self.topics.iter().map(String::as_str).collect();
        let request = join_request(
            &self.group,
            &self.member_id,
            self.instance.as_deref(),
            &topics,
        );
        self.client.call(self.join_version, &request)
    }

    /// Joins, doing the member-id handshake if the broker asks for it; the join answer.
    fn join(&mut self) -> JoinGroupResponse {
        let mut response = self.join_once();
        if response.error_code == code(ResponseError::MemberIdRequired) {
            assert!(self.member_id.is_empty());
            assert!(!response.member_id.is_empty());
            self.member_id = response.member_id.to_string();
            response = self.join_once();
        }
        assert_eq!(response.error_code, 0, "join: {response:?}");
        self.member_id = response.member_id.to_string();
        self.generation = response.generation_id;
        response
    }

    fn sync(&mut self, version: i16, assignments: &[(&str, Bytes)]) -> SyncGroupResponse {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_protocol_type(if version >= 5 {
                Some(text("consumer"))
            } else {
                None
            })
            .with_assignments(
                assignments
                    .iter()
                    .map(|(member_id, bytes)| {
                        SyncGroupRequestAssignment::default()
                            .with_member_id(text(member_id))
                            .with_assignment(bytes.clone())
                    })
                    .collect(),
            );
        self.client.call(version, &request)
    }

    fn heartbeat(&mut self, version: i16) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_group_instance_id(if version >= 3 {
                self.instance.as_deref().map(text)
            } else {
                None
            });
        self.client.call(version, &request).error_code
    }

    fn commit(&mut self, version: i16, offsets: &[(&str, i32, i64, Option<&str>)]) -> Vec<i16> {
        let response = commit(
            &mut self.client,
            version,
            &self.group,
            self.generation,
            &self.member_id,
            offsets,
        );
        partition_codes(&response)
    }
}

fn commit(
    client: &mut KafkaTestClient,
    version: i16,
    group: &str,
    generation: i32,
    member_id: &str,
    offsets: &[(&str, i32, i64, Option<&str>)],
) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset, metadata) in offsets {
        let entry = OffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(metadata.map(text));
        match topics
            .iter_mut()
            .find(|known| known.name.as_str() == *topic)
        {
            Some(known) => known.partitions.push(entry),
            None => topics.push(
                OffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(generation)
        .with_member_id(text(member_id))
        .with_topics(topics);
    client.call(version, &request)
}

fn partition_codes(response: &OffsetCommitResponse) -> Vec<i16> {
    response
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| partition.error_code)
        })
        .collect()
}

/// `(topic, partition, offset, metadata)` as OffsetFetch answers it.
type Committed = (String, i32, i64, Option<String>);

/// Committed offsets of a group at OffsetFetch `version` (< 8): `(topic, partition, offset,
/// metadata)` in answer order; `topics` `None` asks for every committed partition.
fn fetch_offsets(
    client: &mut KafkaTestClient,
    version: i16,
    group: &str,
    topics: Option<&[(&str, &[i32])]>,
) -> (i16, Vec<Committed>) {
    assert!(version < 8);
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_topics(topics.map(|topics| {
            topics
                .iter()
                .map(|(name, partitions)| {
                    OffsetFetchRequestTopic::default()
                        .with_name(topic_name(name))
                        .with_partition_indexes(partitions.to_vec())
                })
                .collect()
        }));
    let response: OffsetFetchResponse = client.call(version, &request);
    let mut offsets = Vec::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            assert_eq!(partition.error_code, 0, "{response:?}");
            offsets.push((
                topic.name.to_string(),
                partition.partition_index,
                partition.committed_offset,
                partition
                    .metadata
                    .as_ref()
                    .map(|metadata| metadata.to_string()),
            ));
        }
    }
    (response.error_code, offsets)
}

fn describe(client: &mut KafkaTestClient, version: i16, groups: &[&str]) -> DescribeGroupsResponse {
    let request = DescribeGroupsRequest::default()
        .with_groups(groups.iter().map(|group| group_id(group)).collect());
    client.call(version, &request)
}

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

// ---- FindCoordinator -------------------------------------------------------------------------

#[test]
fn find_coordinator_names_this_broker_for_groups_and_refuses_transactions_clearly() {
    let broker = broker();
    let port = i32::from(broker.kafka_address().port());
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    for version in 0..=3 {
        let request = FindCoordinatorRequest::default().with_key(text("payments"));
        let response = client.call(version, &request);
        assert_eq!(response.error_code, 0, "v{version}: {response:?}");
        assert_eq!(response.node_id.0, 0);
        assert_eq!(response.port, port);
        assert_eq!(response.host.as_str(), "127.0.0.1");
    }
    for version in 1..=3 {
        let request = FindCoordinatorRequest::default()
            .with_key(text("transfers"))
            .with_key_type(1);
        let response = client.call(version, &request);
        // The transaction coordinator is this broker too (kafka_transactions.rs has the rest).
        assert_eq!(response.error_code, 0, "v{version}: {response:?}");
        assert_eq!((response.node_id.0, response.port), (0, port));
    }
    for version in 4..=6 {
        let request = FindCoordinatorRequest::default().with_coordinator_keys(vec![
            text("payments"),
            text("refunds"),
            text(""),
        ]);
        let response = client.call(version, &request);
        let answers: Vec<(&str, i16, i32, i32)> = response
            .coordinators
            .iter()
            .map(|found| {
                (
                    found.key.as_str(),
                    found.error_code,
                    found.node_id.0,
                    found.port,
                )
            })
            .collect();
        let invalid = code(ResponseError::InvalidGroupId);
        assert_eq!(
            answers,
            vec![
                ("payments", 0, 0, port),
                ("refunds", 0, 0, port),
                ("", invalid, -1, -1)
            ],
            "v{version}"
        );
        let transactions = client.call(
            version,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![text("transfers")]),
        );
        assert_eq!(transactions.coordinators[0].error_code, 0);
        assert_eq!(transactions.coordinators[0].node_id.0, 0);
    }
}

// ---- membership ------------------------------------------------------------------------------

/// Two members at `join_version`/`sync_version`/`heartbeat_version`: the first forms the group
/// alone, the second's join makes the first's heartbeat answer REBALANCE_IN_PROGRESS, both
/// rejoin into one generation with one leader that sees both subscriptions, the leader's
/// assignment reaches each member, and a leave starts the next rebalance.
fn two_members_rebalance(
    broker: &Broker,
    group: &str,
    join_version: i16,
    sync_version: i16,
    heartbeat_version: i16,
) {
    let address = broker.kafka_address();
    let mut first = KafkaMember::new(address, group, &["orders"], join_version);
    let joined = first.join();
    assert_eq!(joined.leader, joined.member_id, "a lone member leads");
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.generation_id, 1);
    // Both members offer cooperative-sticky first: the broker picks it.
    assert_eq!(
        joined.protocol_name.as_ref().map(|name| name.as_str()),
        Some("cooperative-sticky")
    );
    let mine = assignment(&[("orders", &[0, 1, 2, 3])]);
    let member_id = first.member_id.clone();
    let synced = first.sync(sync_version, &[(&member_id, mine.clone())]);
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, mine);
    assert_eq!(first.heartbeat(heartbeat_version), 0);

    let mut second = KafkaMember::new(address, group, &["orders"], join_version);
    let (first, second, first_joined, second_joined) = thread::scope(|scope| {
        let joining = scope.spawn(move || {
            let response = second.join();
            (second, response)
        });
        // The first member learns of the rebalance from its heartbeat, and rejoins.
        wait_until("the first member's heartbeat asks it to rejoin", || {
            first.heartbeat(heartbeat_version) == code(ResponseError::RebalanceInProgress)
        });
        let first_joined = first.join();
        let (second, second_joined) = joining.join().expect("the second member's thread");
        (first, second, first_joined, second_joined)
    });
    assert_eq!(first_joined.generation_id, 2);
    assert_eq!(second_joined.generation_id, 2);
    assert_eq!(first_joined.leader, second_joined.leader);
    let (mut leader, mut follower, leader_joined) =
        if first_joined.leader.as_str() == first.member_id {
            (first, second, first_joined)
        } else {
            (second, first, second_joined)
        };
    let mut seen: Vec<(String, Bytes)> = leader_joined
        .members
        .iter()
        .map(|member| (member.member_id.to_string(), member.metadata.clone()))
        .collect();
    seen.sort();
    let mut expected = vec![
        (leader.member_id.clone(), subscription(&["orders"])),
        (follower.member_id.clone(), subscription(&["orders"])),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "the leader sees every member's subscription"
    );

    let leader_share = assignment(&[("orders", &[0, 1])]);
    let follower_share = assignment(&[("orders", &[2, 3])]);
    let (leader_id, follower_id) = (leader.member_id.clone(), follower.member_id.clone());
    let expected_share = follower_share.clone();
    let (leader, follower) = thread::scope(|scope| {
        let following = scope.spawn(move || {
            let synced = follower.sync(sync_version, &[]);
            assert_eq!(synced.error_code, 0);
            assert_eq!(synced.assignment, expected_share);
            follower
        });
        let synced = leader.sync(
            sync_version,
            &[
                (&leader_id, leader_share.clone()),
                (&follower_id, follower_share.clone()),
            ],
        );
        assert_eq!(synced.error_code, 0);
        assert_eq!(synced.assignment, leader_share);
        (leader, following.join().expect("the follower's thread"))
    });
    let mut leader = leader;
    let mut follower = follower;
    assert_eq!(leader.heartbeat(heartbeat_version), 0);
    assert_eq!(follower.heartbeat(heartbeat_version), 0);

    // A heartbeat from the old generation is fenced.
    let stale = follower.generation;
    follower.generation = 1;
    assert_eq!(
        follower.heartbeat(heartbeat_version),
        code(ResponseError::IllegalGeneration)
    );
    follower.generation = stale;

    // The follower leaves: the leader is told to rejoin, and rejoins alone.
    let leave = LeaveGroupRequest::default().with_group_id(group_id(group));
    let left = if join_version >= 5 {
        follower.client.call(
            3,
            &leave.with_members(vec![
                MemberIdentity::default().with_member_id(text(&follower.member_id))
            ]),
        )
    } else {
        follower
            .client
            .call(0, &leave.with_member_id(text(&follower.member_id)))
    };
    assert_eq!(left.error_code, 0, "{left:?}");
    assert_eq!(
        leader.heartbeat(heartbeat_version),
        code(ResponseError::RebalanceInProgress)
    );
    let rejoined = leader.join();
    assert_eq!(rejoined.generation_id, 3);
    assert_eq!(rejoined.members.len(), 1);
    assert_eq!(
        follower.heartbeat(heartbeat_version),
        code(ResponseError::UnknownMemberId),
        "a member that left is gone"
    );
}

#[test]
fn two_members_join_sync_heartbeat_and_rebalance_at_old_and_new_versions() {
    let broker = broker();
    create_topic(&broker, "orders", 4);
    // kafkajs's versions (non-flexible) and the newest flexible ones.
    two_members_rebalance(&broker, "non-flexible", 5, 3, 3);
    two_members_rebalance(&broker, "flexible", 9, 5, 4);
    // The handshake-less JoinGroup of old clients, with the oldest sync and heartbeat.
    two_members_rebalance(&broker, "oldest", 0, 0, 0);
}

#[test]
fn join_group_v4_and_later_hands_out_the_member_id_first_and_older_versions_join_at_once() {
    let broker = broker();
    create_topic(&broker, "orders", 1);
    let address = broker.kafka_address();
    for version in 4..=9 {
        let mut member = KafkaMember::new(
            address,
            &format!("handshake-{version}"),
            &["orders"],
            version,
        );
        let first = member.join_once();
        assert_eq!(
            first.error_code,
            code(ResponseError::MemberIdRequired),
            "v{version}: {first:?}"
        );
        assert!(first.member_id.starts_with("spate-tests-"), "{first:?}");
        // The id is reserved for the member, not yet a member: a heartbeat with it is unknown.
        member.member_id = first.member_id.to_string();
        assert_eq!(member.heartbeat(3), code(ResponseError::UnknownMemberId));
        let second = member.join_once();
        assert_eq!(second.error_code, 0, "v{version}: {second:?}");
        assert_eq!(second.member_id, first.member_id);
        assert_eq!(second.generation_id, 1);
    }
    for version in 0..=3 {
        let mut member = KafkaMember::new(
            address,
            &format!("no-handshake-{version}"),
            &["orders"],
            version,
        );
        let joined = member.join_once();
        assert_eq!(joined.error_code, 0, "v{version}: {joined:?}");
        assert!(!joined.member_id.is_empty());
        assert_eq!(joined.leader, joined.member_id);
        assert_eq!(joined.generation_id, 1);
    }
    // An unknown member id is refused, not adopted.
    let mut stranger = KafkaMember::new(address, "handshake-9", &["orders"], 9);
    stranger.member_id = "spate-tests-nobody".to_string();
    assert_eq!(
        stranger.join_once().error_code,
        code(ResponseError::UnknownMemberId)
    );
    // Group ids the coordinator cannot hold.
    let mut nameless = KafkaMember::new(address, "", &["orders"], 9);
    assert_eq!(
        nameless.join_once().error_code,
        code(ResponseError::InvalidGroupId)
    );
    let mut too_long = KafkaMember::new(address, &"g".repeat(300), &["orders"], 9);
    assert_eq!(
        too_long.join_once().error_code,
        code(ResponseError::InvalidGroupId)
    );
}

#[test]
fn a_static_member_rejoins_without_a_rebalance_and_its_old_incarnation_is_fenced() {
    let broker = broker();
    create_topic(&broker, "orders", 2);
    let address = broker.kafka_address();
    let mut member = KafkaMember::new(address, "static", &["orders"], 9).with_instance("host-1");
    // A static member gets no handshake: its instance id already names it.
    let joined = member.join_once();
    assert_eq!(joined.error_code, 0, "{joined:?}");
    member.member_id = joined.member_id.to_string();
    member.generation = joined.generation_id;
    let share = assignment(&[("orders", &[0, 1])]);
    let member_id = member.member_id.clone();
    assert_eq!(member.sync(5, &[(&member_id, share.clone())]).error_code, 0);
    assert_eq!(member.heartbeat(4), 0);

    // The same instance restarts (a new connection, no member id): it takes the old member's
    // place in the same generation, with its assignment, and no rebalance.
    let mut restarted = KafkaMember::new(address, "static", &["orders"], 9).with_instance("host-1");
    let rejoined = restarted.join_once();
    assert_eq!(rejoined.error_code, 0, "{rejoined:?}");
    assert_ne!(rejoined.member_id.as_str(), member.member_id);
    assert_eq!(rejoined.generation_id, joined.generation_id, "no rebalance");
    restarted.member_id = rejoined.member_id.to_string();
    restarted.generation = rejoined.generation_id;
    let synced = restarted.sync(5, &[]);
    assert_eq!(synced.error_code, 0);
    assert_eq!(
        synced.assignment, share,
        "the assignment stays with the instance"
    );
    assert_eq!(restarted.heartbeat(4), 0);

    // The old incarnation is fenced everywhere.
    assert_eq!(member.heartbeat(4), code(ResponseError::FencedInstanceId));
    assert_eq!(
        member.sync(5, &[]).error_code,
        code(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        member.join_once().error_code,
        code(ResponseError::FencedInstanceId)
    );
    let fenced_commit = commit(
        &mut member.client,
        9,
        "static",
        member.generation,
        &member.member_id.clone(),
        &[("orders", 0, 5, None)],
    );
    // OffsetCommit v9 carries no instance id field in this helper: the old member id is simply
    // no longer a member.
    assert_eq!(
        partition_codes(&fenced_commit),
        vec![code(ResponseError::UnknownMemberId)]
    );

    // The static member leaves by instance id (LeaveGroup v3+).
    let left = restarted.client.call(
        5,
        &LeaveGroupRequest::default()
            .with_group_id(group_id("static"))
            .with_members(vec![MemberIdentity::default()
                .with_member_id(text(""))
                .with_group_instance_id(Some(text("host-1")))]),
    );
    assert_eq!(left.error_code, 0);
    assert_eq!(left.members.len(), 1);
    assert_eq!(left.members[0].error_code, 0, "{left:?}");
    let described = describe(&mut restarted.client, 5, &["static"]);
    assert!(described.groups[0].members.is_empty());
}

/// A Kafka consumer's subscription carries the partitions it owns, so a restarted static
/// member joins with other metadata than its old incarnation had. Kafka (4.1) rebalances for
/// that only if the group's protocol would change; and always while the group waits for the
/// leader's assignment, which names the old member id.
#[test]
fn a_static_restart_with_new_metadata_keeps_the_generation_and_one_during_a_sync_rebalances() {
    let broker = broker();
    create_topic(&broker, "orders", 2);
    let address = broker.kafka_address();

    // Stable: the old incarnation said it owned both partitions, the restart owns nothing.
    let mut member =
        KafkaMember::new(address, "static-meta", &["orders"], 9).with_instance("host-1");
    let mut request = join_request("static-meta", "", Some("host-1"), &["orders"]);
    let owning = {
        let message = ConsumerProtocolSubscription::default()
            .with_topics(vec![text("orders")])
            .with_owned_partitions(vec![OwnedPartition::default()
                .with_topic(topic_name("orders"))
                .with_partitions(vec![0, 1])]);
        let mut bytes = BytesMut::new();
        bytes.put_i16(CONSUMER_PROTOCOL_VERSION);
        message
            .encode(&mut bytes, CONSUMER_PROTOCOL_VERSION)
            .expect("encode a subscription");
        bytes.freeze()
    };
    for protocol in request.protocols.iter_mut() {
        protocol.metadata = owning.clone();
    }
    let joined: JoinGroupResponse = member.client.call(9, &request);
    assert_eq!(joined.error_code, 0, "{joined:?}");
    member.member_id = joined.member_id.to_string();
    member.generation = joined.generation_id;
    let share = assignment(&[("orders", &[0, 1])]);
    let member_id = member.member_id.clone();
    assert_eq!(member.sync(5, &[(&member_id, share.clone())]).error_code, 0);
    let mut restarted =
        KafkaMember::new(address, "static-meta", &["orders"], 9).with_instance("host-1");
    let rejoined = restarted.join_once();
    assert_eq!(rejoined.error_code, 0, "{rejoined:?}");
    assert_eq!(
        rejoined.generation_id, joined.generation_id,
        "new subscription bytes, same protocol: no rebalance"
    );
    restarted.member_id = rejoined.member_id.to_string();
    restarted.generation = rejoined.generation_id;
    assert_eq!(restarted.sync(5, &[]).assignment, share);

    // CompletingRebalance: the leader has the old member id in its member list.
    let mut leader =
        KafkaMember::new(address, "static-sync", &["orders"], 9).with_instance("host-a");
    leader.join();
    let leader_id = leader.member_id.clone();
    assert_eq!(
        leader
            .sync(5, &[(&leader_id, assignment(&[("orders", &[0, 1])]))])
            .error_code,
        0
    );
    let mut follower =
        KafkaMember::new(address, "static-sync", &["orders"], 9).with_instance("host-b");
    let (frame, follower_call) = follower.client.encode(
        9,
        &join_request("static-sync", "", Some("host-b"), &["orders"]),
    );
    follower.client.send_raw(&frame);
    wait_until("the follower's join to start a rebalance", || {
        leader.heartbeat(4) == code(ResponseError::RebalanceInProgress)
    });
    let second = leader.join();
    let follower_joined: JoinGroupResponse = follower.client.receive(9, follower_call);
    assert_eq!(follower_joined.error_code, 0, "{follower_joined:?}");
    assert_eq!(second.members.len(), 2);
    // host-b restarts before the leader's SyncGroup.
    let mut follower_again =
        KafkaMember::new(address, "static-sync", &["orders"], 9).with_instance("host-b");
    let (frame, again_call) = follower_again.client.encode(
        9,
        &join_request("static-sync", "", Some("host-b"), &["orders"]),
    );
    follower_again.client.send_raw(&frame);
    wait_until("the restarted follower's join to arrive", || {
        describe(&mut leader.client, 5, &["static-sync"]).groups[0]
            .members
            .iter()
            .all(|member| member.member_id.as_str() != follower_joined.member_id.as_str())
    });
    let old_follower_id = follower_joined.member_id.to_string();
    let late = leader.sync(
        5,
        &[
            (&leader_id, assignment(&[("orders", &[0])])),
            (&old_follower_id, assignment(&[("orders", &[1])])),
        ],
    );
    assert_eq!(
        late.error_code,
        code(ResponseError::RebalanceInProgress),
        "an assignment for the replaced member id must not stand"
    );
    let third = leader.join();
    assert!(third.generation_id > second.generation_id);
    let again: JoinGroupResponse = follower_again.client.receive(9, again_call);
    assert_eq!(again.error_code, 0, "{again:?}");
    assert_eq!(again.generation_id, third.generation_id);
    let new_follower_id = again.member_id.to_string();
    let mut listed: Vec<String> = third
        .members
        .iter()
        .map(|member| member.member_id.to_string())
        .collect();
    listed.sort();
    let mut expected = vec![leader_id.clone(), new_follower_id.clone()];
    expected.sort();
    assert_eq!(listed, expected, "the leader assigns to the new member id");
    let for_follower = assignment(&[("orders", &[1])]);
    assert_eq!(
        leader
            .sync(
                5,
                &[
                    (&leader_id, assignment(&[("orders", &[0])])),
                    (&new_follower_id, for_follower.clone()),
                ],
            )
            .error_code,
        0
    );
    follower_again.member_id = new_follower_id;
    follower_again.generation = again.generation_id;
    assert_eq!(follower_again.sync(5, &[]).assignment, for_follower);
}

// ---- offsets ---------------------------------------------------------------------------------

#[test]
fn committed_offsets_and_their_metadata_round_trip_at_every_version() {
    let broker = broker();
    create_topic(&broker, "payments", 3);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    for version in 2..=9 {
        let group = format!("simple-{version}");
        let metadata = format!("checkpoint v{version}");
        let response = commit(
            &mut client,
            version,
            &group,
            -1,
            "",
            &[
                ("payments", 0, 100 + i64::from(version), Some(&metadata)),
                ("payments", 1, 7, None),
                ("payments", 9, 1, None),
                ("missing", 0, 1, None),
                ("payments", -1, 1, None),
            ],
        );
        let unknown = code(ResponseError::UnknownTopicOrPartition);
        assert_eq!(
            partition_codes(&response),
            vec![0, 0, unknown, unknown, unknown],
            "v{version}"
        );
        for fetch_version in 1..=7 {
            let (error_code, offsets) = fetch_offsets(
                &mut client,
                fetch_version,
                &group,
                Some(&[("payments", &[0, 1, 2])]),
            );
            assert_eq!(error_code, 0);
            assert_eq!(
                offsets,
                vec![
                    (
                        "payments".into(),
                        0,
                        100 + i64::from(version),
                        Some(metadata.clone())
                    ),
                    // Kafka keeps a commit without metadata as "".
                    ("payments".into(), 1, 7, Some(String::new())),
                    ("payments".into(), 2, -1, Some(String::new())),
                ],
                "committed at v{version}, fetched at v{fetch_version}"
            );
        }
        // v2+: null topics asks for every committed partition.
        let (_, every) = fetch_offsets(&mut client, 7, &group, None);
        assert_eq!(
            every
                .iter()
                .map(|(topic, partition, offset, _)| (topic.as_str(), *partition, *offset))
                .collect::<Vec<_>>(),
            vec![
                ("payments", 0, 100 + i64::from(version)),
                ("payments", 1, 7)
            ]
        );
    }
    // v8+: several groups in one request, one with every partition, one unknown.
    for version in 8..=9 {
        let request = OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("simple-2"))
                .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                    .with_name(topic_name("payments"))
                    .with_partition_indexes(vec![0])])),
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("simple-9"))
                .with_topics(None),
            OffsetFetchRequestGroup::default()
                .with_group_id(group_id("never-committed"))
                .with_topics(None),
        ]);
        let response: OffsetFetchResponse =
            client.call(version, &request.with_require_stable(true));
        type GroupAnswer = (String, i16, Vec<(i32, i64, String)>);
        let answers: Vec<GroupAnswer> = response
            .groups
            .iter()
            .map(|group| {
                let partitions = group
                    .topics
                    .iter()
                    .flat_map(|topic| topic.partitions.iter())
                    .map(|partition| {
                        (
                            partition.partition_index,
                            partition.committed_offset,
                            partition.metadata.as_deref().unwrap_or("null").to_string(),
                        )
                    })
                    .collect();
                (group.group_id.to_string(), group.error_code, partitions)
            })
            .collect();
        assert_eq!(
            answers,
            vec![
                ("simple-2".into(), 0, vec![(0, 102, "checkpoint v2".into())]),
                (
                    "simple-9".into(),
                    0,
                    vec![(0, 109, "checkpoint v9".into()), (1, 7, String::new())]
                ),
                ("never-committed".into(), 0, vec![]),
            ],
            "v{version}"
        );
    }
}

#[test]
fn commits_follow_the_membership_rules_of_kafka() {
    let broker = broker();
    create_topic(&broker, "orders", 2);
    let address = broker.kafka_address();
    let mut member = KafkaMember::new(address, "members-commit", &["orders"], 9);
    member.join();
    let member_id = member.member_id.clone();
    member.sync(5, &[(&member_id, assignment(&[("orders", &[0, 1])]))]);
    assert_eq!(
        member.commit(9, &[("orders", 0, 42, Some("from the member"))]),
        vec![0]
    );
    // Wrong generation, unknown member, and a commit from outside a group with members.
    let generation = member.generation;
    member.generation = generation + 5;
    assert_eq!(
        member.commit(9, &[("orders", 0, 43, None)]),
        vec![code(ResponseError::IllegalGeneration)]
    );
    member.generation = generation;
    let mut outsider = KafkaTestClient::connect(address);
    let stranger = commit(
        &mut outsider,
        9,
        "members-commit",
        generation,
        "spate-tests-stranger",
        &[("orders", 0, 44, None)],
    );
    assert_eq!(
        partition_codes(&stranger),
        vec![code(ResponseError::UnknownMemberId)]
    );
    let simple = commit(
        &mut outsider,
        7,
        "members-commit",
        -1,
        "",
        &[("orders", 0, 45, None)],
    );
    assert_eq!(
        partition_codes(&simple),
        vec![code(ResponseError::UnknownMemberId)],
        "a simple commit is taken only while the group is empty"
    );
    let (_, offsets) = fetch_offsets(
        &mut outsider,
        5,
        "members-commit",
        Some(&[("orders", &[0])]),
    );
    assert_eq!(offsets[0].2, 42);
    assert_eq!(offsets[0].3.as_deref(), Some("from the member"));
    // Metadata beyond the broker's limit is refused for its partition only.
    let long = "m".repeat(5_000);
    assert_eq!(
        member.commit(
            9,
            &[("orders", 0, 50, Some(&long)), ("orders", 1, 51, None)]
        ),
        vec![code(ResponseError::OffsetMetadataTooLarge), 0]
    );
}

/// What Apache Kafka 4.1.1 answers (measured with its own request classes, see
/// tests/compat/FINDINGS.md): a generation of a group that does not exist is ILLEGAL_GENERATION
/// before OffsetCommit v9 and GROUP_ID_NOT_FOUND from v9; a commit without a generation is
/// taken for an unknown or empty group whatever member id it names; a generation of an empty
/// group is UNKNOWN_MEMBER_ID.
#[test]
fn commits_into_unknown_and_empty_groups_get_kafkas_answers() {
    let broker = broker();
    create_topic(&broker, "ledger", 1);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    for (version, expected) in [
        (2, ResponseError::IllegalGeneration),
        (8, ResponseError::IllegalGeneration),
        (9, ResponseError::GroupIdNotFound),
    ] {
        for generation in [0, 3] {
            let group = format!("never-joined-{version}-{generation}");
            let answer = commit(
                &mut client,
                version,
                &group,
                generation,
                "spate-tests-ghost",
                &[("ledger", 0, 7, None)],
            );
            assert_eq!(
                partition_codes(&answer),
                vec![code(expected)],
                "v{version} generation {generation}"
            );
            let (_, offsets) = fetch_offsets(&mut client, 5, &group, Some(&[("ledger", &[0])]));
            assert_eq!(offsets[0].2, -1, "v{version}: nothing was committed");
        }
    }
    // Without a generation, a stale member id does not stop a commit into a new group...
    let answer = commit(
        &mut client,
        9,
        "simple-with-member-id",
        -1,
        "spate-tests-ghost",
        &[("ledger", 0, 11, None)],
    );
    assert_eq!(partition_codes(&answer), vec![0]);
    // ... nor into the now empty one; a generation of the empty group names no member.
    let answer = commit(
        &mut client,
        8,
        "simple-with-member-id",
        -1,
        "spate-tests-other-ghost",
        &[("ledger", 0, 12, None)],
    );
    assert_eq!(partition_codes(&answer), vec![0]);
    for version in [2, 9] {
        let answer = commit(
            &mut client,
            version,
            "simple-with-member-id",
            1,
            "spate-tests-ghost",
            &[("ledger", 0, 13, None)],
        );
        assert_eq!(
            partition_codes(&answer),
            vec![code(ResponseError::UnknownMemberId)],
            "v{version}"
        );
    }
    let (_, offsets) = fetch_offsets(
        &mut client,
        5,
        "simple-with-member-id",
        Some(&[("ledger", &[0])]),
    );
    assert_eq!(offsets[0].2, 12);
    // Partitions that do not exist are answered before the group is looked at.
    for (version, generation) in [(8, 3), (9, 3), (9, -1)] {
        let answer = commit(
            &mut client,
            version,
            "never-joined-topics",
            generation,
            "spate-tests-ghost",
            &[("no-such-topic", 0, 1, None), ("ledger", 1, 1, None)],
        );
        assert_eq!(
            partition_codes(&answer),
            vec![
                code(ResponseError::UnknownTopicOrPartition),
                code(ResponseError::UnknownTopicOrPartition)
            ],
            "v{version} generation {generation}"
        );
    }
    let answer = commit(
        &mut client,
        9,
        "simple-with-member-id",
        -1,
        "",
        &[("no-such-topic", 0, 1, None), ("ledger", 0, 14, None)],
    );
    assert_eq!(
        partition_codes(&answer),
        vec![code(ResponseError::UnknownTopicOrPartition), 0]
    );
}

#[test]
fn offsets_committed_over_kafka_and_natively_are_one_set() {
    let broker = broker();
    create_topic(&broker, "ledger", 2);
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let mut native_client = TestClient::connect(broker.address());
    let response = commit(
        &mut kafka,
        8,
        "shared",
        -1,
        "",
        &[("ledger", 0, 11, Some("kafka"))],
    );
    assert_eq!(partition_codes(&response), vec![0]);
    let natively: native::OffsetCommitResponse = native_client.call(&native::OffsetCommitRequest {
        group_id: "shared".into(),
        generation_id: native::GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![native::TopicPartitions {
            name: "ledger".into(),
            partitions: vec![native::OffsetCommitPartition {
                partition: 1,
                committed_offset: 22,
                committed_metadata: Some("native".into()),
            }],
        }],
    });
    assert_eq!(natively.topics[0].partitions[0].error_code, ErrorCode::None);

    let (_, offsets) = fetch_offsets(&mut kafka, 6, "shared", None);
    assert_eq!(
        offsets,
        vec![
            ("ledger".into(), 0, 11, Some("kafka".into())),
            ("ledger".into(), 1, 22, Some("native".into())),
        ]
    );
    let fetched: native::OffsetFetchResponse = native_client.call(&native::OffsetFetchRequest {
        group_id: "shared".into(),
        topics: None,
        require_stable: false,
    });
    assert_eq!(fetched.committed("ledger", 0), Some(11));
    assert_eq!(fetched.committed("ledger", 1), Some(22));
}

// ---- administration ----------------------------------------------------------------------------

/// A group of one Kafka member, joined and synced with every partition of `topic`.
fn stable_member(address: SocketAddr, group: &str, topic: &str, partitions: &[i32]) -> KafkaMember {
    let mut member = KafkaMember::new(address, group, &[topic], 9);
    member.join();
    let member_id = member.member_id.clone();
    let synced = member.sync(5, &[(&member_id, assignment(&[(topic, partitions)]))]);
    assert_eq!(synced.error_code, 0);
    member
}

fn listed(
    client: &mut KafkaTestClient,
    version: i16,
    states: &[&str],
    types: &[&str],
) -> Vec<(String, String, String)> {
    let request = ListGroupsRequest::default()
        .with_states_filter(states.iter().map(|state| text(state)).collect())
        .with_types_filter(types.iter().map(|kind| text(kind)).collect());
    let response = client.call(version, &request);
    assert_eq!(response.error_code, 0);
    let mut groups: Vec<(String, String, String)> = response
        .groups
        .iter()
        .map(|group| {
            (
                group.group_id.to_string(),
                group.protocol_type.to_string(),
                group.group_state.to_string(),
            )
        })
        .collect();
    groups.sort();
    groups
}

#[test]
fn groups_are_described_listed_and_deleted_as_kafka_describes_them() {
    let broker = broker();
    create_topic(&broker, "events", 2);
    let address = broker.kafka_address();
    let mut client = KafkaTestClient::connect(address);
    let member = stable_member(address, "live", "events", &[0, 1]);
    let simple = commit(
        &mut client,
        9,
        "offsets-only",
        -1,
        "",
        &[("events", 0, 3, None)],
    );
    assert_eq!(partition_codes(&simple), vec![0]);

    for version in 0..=6 {
        let described = describe(&mut client, version, &["live", "offsets-only", "unknown"]);
        let live = &described.groups[0];
        assert_eq!(live.error_code, 0);
        assert_eq!(live.group_id.as_str(), "live");
        assert_eq!(live.group_state.as_str(), "Stable");
        assert_eq!(live.protocol_type.as_str(), "consumer");
        assert_eq!(live.protocol_data.as_str(), "cooperative-sticky");
        assert_eq!(live.members.len(), 1);
        let described_member = &live.members[0];
        assert_eq!(described_member.member_id.as_str(), member.member_id);
        assert_eq!(described_member.client_id.as_str(), "spate-tests");
        assert_eq!(described_member.client_host.as_str(), "/127.0.0.1");
        assert_eq!(described_member.member_metadata, subscription(&["events"]));
        assert_eq!(
            described_member.member_assignment,
            assignment(&[("events", &[0, 1])])
        );
        let offsets_only = &described.groups[1];
        assert_eq!(
            (offsets_only.error_code, offsets_only.group_state.as_str()),
            (0, "Empty")
        );
        assert!(offsets_only.members.is_empty());
        let unknown = &described.groups[2];
        assert_eq!(unknown.group_state.as_str(), "Dead");
        if version >= 6 {
            assert_eq!(unknown.error_code, code(ResponseError::GroupIdNotFound));
            assert!(unknown.error_message.is_some());
        } else {
            assert_eq!(unknown.error_code, 0, "before v6 an unknown group is Dead");
        }
        if version >= 3 {
            assert_eq!(live.authorized_operations, i32::MIN, "not asked for");
        }
    }
    let with_operations = client.call(
        5,
        &DescribeGroupsRequest::default()
            .with_groups(vec![group_id("live")])
            .with_include_authorized_operations(true),
    );
    // READ, DELETE, DESCRIBE.
    assert_eq!(
        with_operations.groups[0].authorized_operations,
        (1 << 3) | (1 << 6) | (1 << 8)
    );

    let all = vec![
        (
            "live".to_string(),
            "consumer".to_string(),
            "Stable".to_string(),
        ),
        (
            "offsets-only".to_string(),
            String::new(),
            "Empty".to_string(),
        ),
    ];
    for version in 0..=5 {
        let groups = listed(&mut client, version, &[], &[]);
        let expected: Vec<(String, String, String)> = all
            .iter()
            .map(|(group, protocol, state)| {
                let state = if version >= 4 {
                    state.clone()
                } else {
                    String::new()
                };
                (group.clone(), protocol.clone(), state)
            })
            .collect();
        assert_eq!(groups, expected, "v{version}");
    }
    assert_eq!(
        listed(&mut client, 4, &["stable"], &[]),
        all[..1].to_vec(),
        "states ignore case"
    );
    assert_eq!(
        listed(&mut client, 4, &["Empty", "Dead"], &[]),
        all[1..].to_vec()
    );
    assert!(
        listed(&mut client, 4, &["Assigning"], &[]).is_empty(),
        "a state no group here has"
    );
    assert_eq!(listed(&mut client, 5, &[], &["Classic"]), all);
    assert!(
        listed(&mut client, 5, &[], &["consumer"]).is_empty(),
        "no KIP-848 groups"
    );

    for version in 0..=2 {
        let response = client.call(
            version,
            &DeleteGroupsRequest::default()
                .with_groups_names(vec![group_id("live"), group_id("unknown")]),
        );
        let results: Vec<(&str, i16)> = response
            .results
            .iter()
            .map(|result| (result.group_id.as_str(), result.error_code))
            .collect();
        assert_eq!(
            results,
            vec![
                ("live", code(ResponseError::NonEmptyGroup)),
                ("unknown", code(ResponseError::GroupIdNotFound)),
            ]
        );
    }
    let deleted = client.call(
        2,
        &DeleteGroupsRequest::default().with_groups_names(vec![group_id("offsets-only")]),
    );
    assert_eq!(deleted.results[0].error_code, 0);
    let (_, offsets) = fetch_offsets(&mut client, 7, "offsets-only", None);
    assert!(offsets.is_empty(), "a deleted group's offsets go with it");
    assert_eq!(listed(&mut client, 5, &[], &[]), all[..1].to_vec());
    drop(member);
}

#[test]
fn offset_delete_removes_offsets_of_topics_no_member_subscribes_to() {
    let broker = broker();
    create_topic(&broker, "subscribed", 1);
    create_topic(&broker, "abandoned", 2);
    let address = broker.kafka_address();
    let mut member = stable_member(address, "cleanup", "subscribed", &[0]);
    assert_eq!(
        member.commit(
            9,
            &[
                ("subscribed", 0, 5, None),
                ("abandoned", 0, 6, None),
                ("abandoned", 1, 7, None)
            ]
        ),
        vec![0, 0, 0]
    );
    let mut client = KafkaTestClient::connect(address);
    let delete = |group: &str, topics: &[(&str, &[i32])]| {
        OffsetDeleteRequest::default()
            .with_group_id(group_id(group))
            .with_topics(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        OffsetDeleteRequestTopic::default()
                            .with_name(topic_name(name))
                            .with_partitions(
                                partitions
                                    .iter()
                                    .map(|partition| {
                                        OffsetDeleteRequestPartition::default()
                                            .with_partition_index(*partition)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    };
    let response = client.call(
        0,
        &delete(
            "cleanup",
            &[
                ("abandoned", &[0, 5]),
                ("subscribed", &[0]),
                ("missing", &[0]),
            ],
        ),
    );
    assert_eq!(response.error_code, 0);
    let results: Vec<(&str, i32, i16)> = response
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(move |partition| {
                (
                    topic.name.as_str(),
                    partition.partition_index,
                    partition.error_code,
                )
            })
        })
        .collect();
    let unknown = code(ResponseError::UnknownTopicOrPartition);
    assert_eq!(
        results,
        vec![
            ("abandoned", 0, 0),
            ("abandoned", 5, unknown),
            ("subscribed", 0, code(ResponseError::GroupSubscribedToTopic)),
            ("missing", 0, unknown),
        ]
    );
    let (_, offsets) = fetch_offsets(&mut client, 7, "cleanup", None);
    let left: Vec<(&str, i32, i64)> = offsets
        .iter()
        .map(|(topic, partition, offset, _)| (topic.as_str(), *partition, *offset))
        .collect();
    assert_eq!(left, vec![("abandoned", 1, 7), ("subscribed", 0, 5)]);
    let unknown_group = client.call(0, &delete("nobody", &[("abandoned", &[1])]));
    assert_eq!(
        unknown_group.error_code,
        code(ResponseError::GroupIdNotFound)
    );
    drop(member);
}

// ---- restarts ----------------------------------------------------------------------------------

#[test]
fn a_group_and_its_offsets_survive_a_broker_restart() {
    let mut broker = broker();
    create_topic(&broker, "durable", 2);
    let member = stable_member(broker.kafka_address(), "survivor", "durable", &[0, 1]);
    let mut member = member;
    assert_eq!(
        member.commit(
            8,
            &[("durable", 0, 10, Some("before")), ("durable", 1, 20, None)]
        ),
        vec![0, 0]
    );
    let (member_id, generation) = (member.member_id.clone(), member.generation);
    drop(member);
    broker.kill();
    broker.restart();

    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let (_, offsets) = fetch_offsets(&mut client, 5, "survivor", None);
    assert_eq!(
        offsets,
        vec![
            ("durable".into(), 0, 10, Some("before".into())),
            ("durable".into(), 1, 20, Some(String::new())),
        ]
    );
    // The member of the last written generation is still there and may go on, as a Kafka
    // coordinator that moved would let it.
    let described = describe(&mut client, 5, &["survivor"]);
    assert_eq!(described.groups[0].group_state.as_str(), "Stable");
    assert_eq!(described.groups[0].members[0].member_id.as_str(), member_id);
    let mut member = KafkaMember::new(broker.kafka_address(), "survivor", &["durable"], 9);
    member.member_id = member_id;
    member.generation = generation;
    assert_eq!(member.heartbeat(4), 0);
    assert_eq!(member.commit(9, &[("durable", 0, 11, None)]), vec![0]);
}

// ---- native and Kafka members in one group ------------------------------------------------------

/// A native group consumer (`spate-client`) polling on its own thread until told to stop; what
/// it owns after each poll is shared.
struct NativeMember {
    assigned: Arc<Mutex<BTreeSet<u32>>>,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    member_id: Arc<Mutex<String>>,
}

impl NativeMember {
    fn start(address: SocketAddr, group: &str, topic: &str) -> NativeMember {
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let member_id = Arc::new(Mutex::new(String::new()));
        let mut config = GroupConfig::new(group).with_session_timeout(Duration::from_secs(10));
        config.heartbeat_interval = Duration::from_millis(200);
        config.rebalance_timeout = Duration::from_secs(10);
        let thread = {
            let (assigned, stop, member_id) = (assigned.clone(), stop.clone(), member_id.clone());
            let topic = topic.to_string();
            thread::spawn(move || {
                let client = Client::connect_to(address.to_string()).unwrap();
                let mut consumer =
                    GroupConsumer::new(&client, ConsumerConfig::default(), config).unwrap();
                consumer.subscribe(&[&topic]).unwrap();
                while !stop.load(Ordering::SeqCst) {
                    consumer.poll(Duration::from_millis(50)).unwrap();
                    *assigned.lock().unwrap() = consumer
                        .assignment()
                        .iter()
                        .map(|partition| partition.partition)
                        .collect();
                    *member_id.lock().unwrap() = consumer.member_id();
                }
                consumer.close().unwrap();
            })
        };
        NativeMember {
            assigned,
            stop,
            thread: Some(thread),
            member_id,
        }
    }

    fn assigned(&self) -> BTreeSet<u32> {
        self.assigned.lock().unwrap().clone()
    }

    fn member_id(&self) -> String {
        self.member_id.lock().unwrap().clone()
    }

    fn close(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
    }
}

fn partitions_of(assignment: &Bytes, topic: &str) -> BTreeSet<u32> {
    let read = read_assignment(assignment).expect("an assignment in Kafka's layout");
    read.partitions
        .iter()
        .filter(|(name, _)| name == topic)
        .flat_map(|(_, partitions)| partitions.iter().map(|partition| *partition as u32))
        .collect()
}

#[test]
fn a_native_member_and_a_kafka_member_share_one_group_whichever_leads() {
    let broker = broker();
    create_topic(&broker, "mixed", 4);
    let address = broker.kafka_address();
    let every: BTreeSet<u32> = (0..4).collect();

    // A native leader: the Kafka member joins its group, and gets its part of the native
    // leader's (range) assignment in Kafka's layout.
    let native = NativeMember::start(broker.address(), "native-led", "mixed");
    wait_until("the native member owns every partition", || {
        native.assigned() == every
    });
    let mut kafka = KafkaMember::new(address, "native-led", &["mixed"], 9);
    let joined = kafka.join();
    assert_eq!(
        joined.protocol_name.as_deref(),
        Some("range"),
        "the one both offer"
    );
    assert_eq!(joined.leader.as_str(), native.member_id());
    let synced = kafka.sync(5, &[]);
    assert_eq!(synced.error_code, 0);
    let kafka_owns = partitions_of(&synced.assignment, "mixed");
    assert_eq!(kafka_owns.len(), 2, "{kafka_owns:?}");
    wait_until("the native member owns the other half", || {
        let native_owns = native.assigned();
        native_owns.len() == 2 && native_owns.is_disjoint(&kafka_owns)
    });
    assert_eq!(kafka.heartbeat(4), 0);
    // The Kafka member's commit is the group's, as the native admin API sees it.
    let partition = *kafka_owns.iter().next().unwrap() as i32;
    assert_eq!(
        kafka.commit(9, &[("mixed", partition, 3, Some("kafka"))]),
        vec![0]
    );
    let admin_client = Client::connect_to(broker.address().to_string()).unwrap();
    let described = GroupAdmin::new(&admin_client)
        .describe_group("native-led")
        .wait()
        .unwrap();
    assert_eq!(described.members.len(), 2);
    for member in &described.members {
        assert_eq!(
            member.assignment.len(),
            2,
            "native tools read both members' assignments"
        );
    }
    assert!(described.offsets.iter().any(
        |offset| offset.partition.partition == partition as u32 && offset.committed_offset == 3
    ));
    // Kafka tools read both members' bytes in Kafka's layout.
    let described = describe(&mut kafka.client, 5, &["native-led"]);
    for member in &described.groups[0].members {
        let subscription =
            read_subscription(&member.member_metadata).expect("a Kafka subscription");
        assert_eq!(subscription.topics, vec!["mixed"]);
        assert_eq!(partitions_of(&member.member_assignment, "mixed").len(), 2);
    }
    native.close();

    // A Kafka leader: it reads the native member's subscription in Kafka's layout, and its
    // assignment reaches the native member.
    let mut leader = stable_member(address, "kafka-led", "mixed", &[0, 1, 2, 3]);
    let native = NativeMember::start(broker.address(), "kafka-led", "mixed");
    wait_until("the Kafka leader is asked to rejoin", || {
        leader.heartbeat(4) == code(ResponseError::RebalanceInProgress)
    });
    let joined = leader.join();
    assert_eq!(joined.leader.as_str(), leader.member_id);
    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
    assert_eq!(joined.members.len(), 2);
    let native_id = joined
        .members
        .iter()
        .find(|member| member.member_id.as_str() != leader.member_id)
        .expect("the native member")
        .clone();
    let subscription = read_subscription(&native_id.metadata).expect("in Kafka's layout");
    assert_eq!(subscription.topics, vec!["mixed"]);
    let leader_id = leader.member_id.clone();
    let synced = leader.sync(
        5,
        &[
            (&leader_id, assignment(&[("mixed", &[0, 1])])),
            (
                native_id.member_id.as_str(),
                assignment(&[("mixed", &[2, 3])]),
            ),
        ],
    );
    assert_eq!(synced.error_code, 0);
    wait_until(
        "the native member owns what the Kafka leader gave it",
        || native.assigned() == BTreeSet::from([2, 3]),
    );
    native.close();
}

// ---- bad input ---------------------------------------------------------------------------------

#[test]
fn requests_beyond_the_coordinators_bounds_get_kafka_codes_and_the_connection_goes_on() {
    let broker = broker();
    create_topic(&broker, "bounds", 1);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let join = |request: JoinGroupRequest| request;
    let too_many_protocols = join(join_request("bounds-g", "", None, &["bounds"])).with_protocols(
        (0..33)
            .map(|index| {
                JoinGroupRequestProtocol::default()
                    .with_name(text(&format!("assignor-{index}")))
                    .with_metadata(subscription(&["bounds"]))
            })
            .collect(),
    );
    let answer: JoinGroupResponse = client.call(9, &too_many_protocols);
    assert_eq!(
        answer.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let long_name = join(join_request("bounds-g", "", None, &["bounds"])).with_protocols(vec![
        JoinGroupRequestProtocol::default()
            .with_name(text(&"r".repeat(300)))
            .with_metadata(subscription(&["bounds"])),
    ]);
    let answer: JoinGroupResponse = client.call(9, &long_name);
    assert_eq!(
        answer.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let huge_metadata = join(join_request("bounds-g", "", None, &["bounds"])).with_protocols(vec![
        JoinGroupRequestProtocol::default()
            .with_name(text("range"))
            .with_metadata(Bytes::from(vec![0u8; 1024 * 1024 + 1])),
    ]);
    let answer: JoinGroupResponse = client.call(9, &huge_metadata);
    assert_eq!(answer.error_code, code(ResponseError::InvalidRequest));
    let negative_session =
        join(join_request("bounds-g", "", None, &["bounds"])).with_session_timeout_ms(-5);
    let answer: JoinGroupResponse = client.call(9, &negative_session);
    assert_eq!(
        answer.error_code,
        code(ResponseError::InvalidSessionTimeout)
    );
    let empty_instance = join(join_request("bounds-g", "", Some(""), &["bounds"]));
    let answer: JoinGroupResponse = client.call(9, &empty_instance);
    assert_eq!(answer.error_code, code(ResponseError::InvalidRequest));
    let long_member = join(join_request(
        "bounds-g",
        &"m".repeat(600),
        None,
        &["bounds"],
    ));
    let answer: JoinGroupResponse = client.call(9, &long_member);
    assert_eq!(answer.error_code, code(ResponseError::UnknownMemberId));

    // A negative offset has no place in the store.
    let response = commit(
        &mut client,
        9,
        "bounds-g",
        -1,
        "",
        &[("bounds", 0, -7, None)],
    );
    assert_eq!(
        partition_codes(&response),
        vec![code(ResponseError::InvalidRequest)]
    );
    assert_eq!(
        partition_codes(&commit(
            &mut client,
            9,
            "bounds-g",
            -1,
            "",
            &[("bounds", 0, 8, None)]
        )),
        vec![0]
    );
    // Nothing was left behind by the refused joins: the group has only its offsets.
    let described = describe(&mut client, 5, &["bounds-g"]);
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    assert!(described.groups[0].members.is_empty());
}

#[test]
fn sync_group_v5_checks_the_protocol_and_leave_group_v3_answers_each_member() {
    let broker = broker();
    create_topic(&broker, "checks", 2);
    let address = broker.kafka_address();
    let mut member = KafkaMember::new(address, "checks", &["checks"], 9);
    member.join();
    let wrong_name = SyncGroupRequest::default()
        .with_group_id(group_id("checks"))
        .with_generation_id(member.generation)
        .with_member_id(text(&member.member_id))
        .with_protocol_type(Some(text("consumer")))
        .with_protocol_name(Some(text("roundrobin")));
    let refused: SyncGroupResponse = member.client.call(5, &wrong_name);
    assert_eq!(
        refused.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let wrong_type = wrong_name
        .clone()
        .with_protocol_type(Some(text("connect")))
        .with_protocol_name(Some(text("cooperative-sticky")));
    let refused: SyncGroupResponse = member.client.call(5, &wrong_type);
    assert_eq!(
        refused.error_code,
        code(ResponseError::InconsistentGroupProtocol)
    );
    let member_id = member.member_id.clone();
    let synced = member.sync(5, &[(&member_id, assignment(&[("checks", &[0, 1])]))]);
    assert_eq!(synced.error_code, 0);
    assert_eq!(
        (
            synced.protocol_type.as_deref(),
            synced.protocol_name.as_deref()
        ),
        (Some("consumer"), Some("cooperative-sticky"))
    );

    let left = member.client.call(
        4,
        &LeaveGroupRequest::default()
            .with_group_id(group_id("checks"))
            .with_members(vec![
                MemberIdentity::default().with_member_id(text("spate-tests-nobody")),
                MemberIdentity::default()
                    .with_member_id(text(&member_id))
                    .with_reason(Some(text("shutting down"))),
            ]),
    );
    assert_eq!(left.error_code, 0);
    let codes: Vec<(&str, i16)> = left
        .members
        .iter()
        .map(|result| (result.member_id.as_str(), result.error_code))
        .collect();
    assert_eq!(
        codes,
        vec![
            ("spate-tests-nobody", code(ResponseError::UnknownMemberId)),
            (member_id.as_str(), 0),
        ]
    );
    let described = describe(&mut member.client, 5, &["checks"]);
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
}
