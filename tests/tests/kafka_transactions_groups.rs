//! End-to-end: the group coordinator's side of Kafka transactions (InitProducerId,
//! AddOffsetsToTxn, TxnOffsetCommit with KIP-447's member checks and the transaction
//! coordinator's verification, offsets pending until EndTxn's marker, OffsetFetch
//! `require_stable`, a broker killed in between), and groups of other protocol types than `consumer` (Kafka Connect's
//! `connect`, Kafka Streams' consumer protocol with its own user data) passing through the
//! coordinator untouched. Spoken on the wire with the `kafka-protocol` crate's encoders
//! (`KafkaTestClient`) against the real broker.
//!
//! A join parks until the rebalance completes, so members that join together each run on their
//! own thread and connection, as real clients do.

use std::thread;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartition;
use spate_kafka_protocol::kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopic, OffsetFetchRequestTopics,
};
use spate_kafka_protocol::kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use spate_kafka_protocol::kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, EndTxnRequest, InitProducerIdRequest, InitProducerIdResponse,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    ConsumerProtocolSubscription, DescribeGroupsRequest, GroupId, HeartbeatRequest,
    JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest, OffsetFetchRequest,
    OffsetFetchResponse, ProducerId, SyncGroupRequest, SyncGroupResponse, TopicName,
    TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use spate_kafka_protocol::kafka_protocol::protocol::{Encodable, StrBytes};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api as native;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 10_000;
const WAIT_LIMIT: Duration = Duration::from_secs(60);
/// The transactional id every test's producer uses.
const TXN_ID: &str = "spate-tests-txn";
const TXN_TIMEOUT_MS: i32 = 60_000;

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

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// One group member on its own connection, of any protocol type; its protocols are
/// `(name, metadata)` in preference order.
struct Member {
    client: KafkaTestClient,
    group: String,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    instance: Option<String>,
    member_id: String,
    generation: i32,
}

impl Member {
    fn new(broker: &Broker, group: &str, protocol_type: &str, protocols: &[(&str, Bytes)]) -> Self {
        Member {
            client: KafkaTestClient::connect(broker.kafka_address()),
            group: group.to_string(),
            protocol_type: protocol_type.to_string(),
            protocols: protocols
                .iter()
                .map(|(name, metadata)| (name.to_string(), metadata.clone()))
                .collect(),
            instance: None,
            member_id: String::new(),
            generation: -1,
        }
    }

    fn join_once(&mut self) -> JoinGroupResponse {
        let request = JoinGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_session_timeout_ms(SESSION_TIMEOUT_MS)
            .with_rebalance_timeout_ms(REBALANCE_TIMEOUT_MS)
            .with_member_id(text(&self.member_id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_protocol_type(text(&self.protocol_type))
            .with_protocols(
                self.protocols
                    .iter()
                    .map(|(name, metadata)| {
                        JoinGroupRequestProtocol::default()
                            .with_name(text(name))
                            .with_metadata(metadata.clone())
                    })
                    .collect(),
            );
        self.client.call(9, &request)
    }

    /// Joins, with the member-id handshake; the join answer.
    fn join(&mut self) -> JoinGroupResponse {
        let mut response = self.join_once();
        if response.error_code == code(ResponseError::MemberIdRequired) {
            self.member_id = response.member_id.to_string();
            response = self.join_once();
        }
        assert_eq!(response.error_code, 0, "join: {response:?}");
        self.member_id = response.member_id.to_string();
        self.generation = response.generation_id;
        response
    }

    fn sync(&mut self, assignments: &[(&str, Bytes)]) -> SyncGroupResponse {
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_group_instance_id(self.instance.as_deref().map(text))
            .with_protocol_type(Some(text(&self.protocol_type)))
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
        let response: SyncGroupResponse = self.client.call(5, &request);
        assert_eq!(response.error_code, 0, "sync: {response:?}");
        response
    }

    fn heartbeat(&mut self) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(&self.group))
            .with_generation_id(self.generation)
            .with_member_id(text(&self.member_id))
            .with_group_instance_id(self.instance.as_deref().map(text));
        self.client.call(4, &request).error_code
    }
}

/// A TxnOffsetCommit of `offsets` (`(topic, partition, offset)`) at `version`; each partition's
/// code in request order.
#[allow(clippy::too_many_arguments)]
fn txn_commit(
    client: &mut KafkaTestClient,
    version: i16,
    group: &str,
    producer: (i64, i16),
    generation: i32,
    member_id: &str,
    instance: Option<&str>,
    offsets: &[(&str, i32, i64)],
) -> Vec<i16> {
    let mut topics: Vec<TxnOffsetCommitRequestTopic> = Vec::new();
    for (topic, partition, offset) in offsets {
        let entry = TxnOffsetCommitRequestPartition::default()
            .with_partition_index(*partition)
            .with_committed_offset(*offset)
            .with_committed_metadata(Some(text("in a transaction")));
        match topics
            .iter_mut()
            .find(|known| known.name.as_str() == *topic)
        {
            Some(known) => known.partitions.push(entry),
            None => topics.push(
                TxnOffsetCommitRequestTopic::default()
                    .with_name(topic_name(topic))
                    .with_partitions(vec![entry]),
            ),
        }
    }
    let mut request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(text(TXN_ID)))
        .with_group_id(group_id(group))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_topics(topics);
    if version >= 3 {
        request = request
            .with_generation_id(generation)
            .with_member_id(text(member_id))
            .with_group_instance_id(instance.map(text));
    }
    let response: TxnOffsetCommitResponse = client.call(version, &request);
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

/// InitProducerId v4 for [`TXN_ID`], until it is not CONCURRENT_TRANSACTIONS (an older
/// epoch's transaction aborting): (producer id, epoch).
fn init_producer(client: &mut KafkaTestClient) -> (i64, i16) {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(TransactionalId(text(TXN_ID))))
            .with_transaction_timeout_ms(TXN_TIMEOUT_MS)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let response: InitProducerIdResponse = client.call(4, &request);
        if response.error_code == 0 {
            return (response.producer_id.0, response.producer_epoch);
        }
        assert_eq!(
            response.error_code,
            code(ResponseError::ConcurrentTransactions)
        );
        assert!(Instant::now() < deadline, "InitProducerId never succeeded");
        thread::sleep(Duration::from_millis(50));
    }
}

/// AddOffsetsToTxn v3: the group joins the producer's transaction.
fn add_offsets(client: &mut KafkaTestClient, producer: (i64, i16), group: &str) {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(text(TXN_ID)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(group_id(group));
    let response = client.call(3, &request);
    assert_eq!(
        response.error_code, 0,
        "AddOffsetsToTxn {group}: {response:?}"
    );
}

/// EndTxn v3: commit or abort the producer's transaction.
fn end_txn(client: &mut KafkaTestClient, producer: (i64, i16), commit: bool) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(text(TXN_ID)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let response = client.call(3, &request);
    assert_eq!(response.error_code, 0, "EndTxn: {response:?}");
}

/// OffsetFetch v7 of one partition with `require_stable`: (error code, offset).
fn fetch_one(
    client: &mut KafkaTestClient,
    group: &str,
    topic: &str,
    partition: i32,
    require_stable: bool,
) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(group_id(group))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partition_indexes(vec![partition])]));
    let response: OffsetFetchResponse = client.call(7, &request);
    assert_eq!(response.error_code, 0, "{response:?}");
    let answer = &response.topics[0].partitions[0];
    (answer.error_code, answer.committed_offset)
}

/// OffsetFetch v8 (batched groups) of one partition: (error code, offset).
fn fetch_one_batched(
    client: &mut KafkaTestClient,
    group: &str,
    topic: &str,
    partition: i32,
    require_stable: bool,
) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_require_stable(require_stable)
        .with_groups(vec![OffsetFetchRequestGroup::default()
            .with_group_id(group_id(group))
            .with_topics(Some(vec![OffsetFetchRequestTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(vec![partition])]))]);
    let response: OffsetFetchResponse = client.call(8, &request);
    let answer = &response.groups[0].topics[0].partitions[0];
    (answer.error_code, answer.committed_offset)
}

/// A plain OffsetCommit (v8) from outside the membership.
fn plain_commit(
    client: &mut KafkaTestClient,
    group: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) {
    let request = OffsetCommitRequest::default()
        .with_group_id(group_id(group))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(text(""))
        .with_topics(vec![OffsetCommitRequestTopic::default()
            .with_name(topic_name(topic))
            .with_partitions(vec![OffsetCommitRequestPartition::default()
                .with_partition_index(partition)
                .with_committed_offset(offset)])]);
    let response = client.call(8, &request);
    assert_eq!(
        response.topics[0].partitions[0].error_code, 0,
        "{response:?}"
    );
}

// ---- protocol types other than `consumer` ------------------------------------------------------

/// Kafka Connect's distributed workers join with protocol type `connect` and the protocols
/// `sessioned`, `compatible` and `default`; their metadata and assignments are Connect's own
/// bytes, which the coordinator must hand on as they came. One worker's metadata here is a
/// native consumer subscription's encoding and one assignment a native consumer assignment's:
/// bytes the coordinator would turn into Kafka's layout if it took the group for a consumer
/// group.
#[test]
fn a_connect_group_gets_its_metadata_and_assignments_back_byte_for_byte() {
    let broker = broker();
    let looks_native = native::ConsumerSubscription {
        topics: vec!["connect-configs".into()],
        owned_partitions: Vec::new(),
        user_data: Bytes::from_static(b"worker-1"),
    }
    .encode()
    .expect("a native subscription");
    let first_protocols = [
        ("sessioned", looks_native.clone()),
        (
            "compatible",
            Bytes::from_static(b"\x00\x01compatible worker 1"),
        ),
        ("default", Bytes::from_static(b"\x00\x00default worker 1")),
    ];
    let opaque = Bytes::from((0u8..=255).rev().collect::<Vec<u8>>());
    let second_protocols = [
        ("sessioned", opaque.clone()),
        (
            "compatible",
            Bytes::from_static(b"\x00\x01compatible worker 2"),
        ),
        ("default", Bytes::from_static(b"\x00\x00default worker 2")),
    ];
    let mut first = Member::new(&broker, "connect-cluster", "connect", &first_protocols);
    let joined = first.join();
    assert_eq!(
        joined.protocol_type.as_ref().map(|name| name.as_str()),
        Some("connect")
    );
    assert_eq!(
        joined.protocol_name.as_ref().map(|name| name.as_str()),
        Some("sessioned")
    );
    assert_eq!(joined.members.len(), 1);
    assert_eq!(
        joined.members[0].metadata, looks_native,
        "the leader sees its own bytes"
    );
    let lone = native::ConsumerAssignment {
        partitions: vec![native::TopicPartitionList {
            name: "connect-configs".into(),
            partitions: vec![0],
        }],
        user_data: Bytes::new(),
    }
    .encode()
    .expect("a native assignment");
    let member_id = first.member_id.clone();
    assert_eq!(first.sync(&[(&member_id, lone.clone())]).assignment, lone);

    let mut second = Member::new(&broker, "connect-cluster", "connect", &second_protocols);
    let (mut first, mut second, first_joined, second_joined) = thread::scope(|scope| {
        let joining = scope.spawn(move || {
            let response = second.join();
            (second, response)
        });
        wait_until("the first worker is asked to rejoin", || {
            first.heartbeat() == code(ResponseError::RebalanceInProgress)
        });
        let first_joined = first.join();
        let (second, second_joined) = joining.join().expect("the second worker's thread");
        (first, second, first_joined, second_joined)
    });
    let leader_joined = if first_joined.leader.as_str() == first.member_id {
        first_joined
    } else {
        second_joined
    };
    let mut seen: Vec<(String, Bytes)> = leader_joined
        .members
        .iter()
        .map(|member| (member.member_id.to_string(), member.metadata.clone()))
        .collect();
    seen.sort();
    let mut expected = vec![
        (first.member_id.clone(), looks_native.clone()),
        (second.member_id.clone(), opaque.clone()),
    ];
    expected.sort();
    assert_eq!(
        seen, expected,
        "the leader gets each worker's `sessioned` bytes unchanged"
    );

    let first_share = lone.clone();
    let second_share = Bytes::from_static(b"\x00\x01{connector: file-sink, tasks: [0]}");
    let assignments = [
        (first.member_id.clone(), first_share.clone()),
        (second.member_id.clone(), second_share.clone()),
    ];
    let leader_is_first = leader_joined.leader.as_str() == first.member_id;
    let (first_synced, second_synced) = thread::scope(|scope| {
        let assignments: Vec<(&str, Bytes)> = assignments
            .iter()
            .map(|(member, bytes)| (member.as_str(), bytes.clone()))
            .collect();
        let (leader, follower) = if leader_is_first {
            (&mut first, &mut second)
        } else {
            (&mut second, &mut first)
        };
        let following = scope.spawn(move || follower.sync(&[]));
        let led = leader.sync(&assignments);
        let followed = following.join().expect("the follower's thread");
        if leader_is_first {
            (led, followed)
        } else {
            (followed, led)
        }
    });
    assert_eq!(first_synced.assignment, first_share);
    assert_eq!(second_synced.assignment, second_share);
    assert_eq!(
        first_synced
            .protocol_type
            .as_ref()
            .map(|name| name.as_str()),
        Some("connect")
    );

    // Tools see the same bytes.
    let described = KafkaTestClient::connect(broker.kafka_address()).call(
        5,
        &DescribeGroupsRequest::default().with_groups(vec![group_id("connect-cluster")]),
    );
    let group = &described.groups[0];
    assert_eq!(group.protocol_type.as_str(), "connect");
    assert_eq!(group.protocol_data.as_str(), "sessioned");
    for member in &group.members {
        let (metadata, assignment) = if member.member_id.as_str() == first.member_id {
            (&looks_native, &first_share)
        } else {
            (&opaque, &second_share)
        };
        assert_eq!(&member.member_metadata, metadata);
        assert_eq!(&member.member_assignment, assignment);
    }
}

/// Kafka Streams joins as a consumer group with its own assignor (`stream`) and its own user
/// data in the subscription (consumer protocol v3: owned partitions, generation, rack) and in
/// the assignment; a Kafka member's bytes come back exactly as sent.
#[test]
fn a_streams_subscription_and_assignment_with_user_data_come_back_unchanged() {
    let broker = broker();
    let version = 3;
    let mut subscription = BytesMut::new();
    subscription.put_i16(version);
    ConsumerProtocolSubscription::default()
        .with_topics(vec![text("words")])
        .with_user_data(Some(Bytes::from_static(b"\x00\x00\x00\x0bstreams-info")))
        .with_owned_partitions(Vec::<OwnedPartition>::new())
        .with_generation_id(4)
        .with_rack_id(Some(text("rack-a")))
        .encode(&mut subscription, version)
        .expect("a v3 subscription");
    let subscription = subscription.freeze();
    let mut member = Member::new(
        &broker,
        "word-count",
        "consumer",
        &[("stream", subscription.clone())],
    );
    let joined = member.join();
    assert_eq!(
        joined.protocol_name.as_ref().map(|name| name.as_str()),
        Some("stream")
    );
    assert_eq!(joined.members[0].metadata, subscription);
    let mut assignment = BytesMut::new();
    assignment.put_i16(3);
    assignment.put_i32(0); // no partitions
    assignment.put_i32(12);
    assignment.put_slice(b"task-0_0 map");
    let assignment = assignment.freeze();
    let member_id = member.member_id.clone();
    assert_eq!(
        member.sync(&[(&member_id, assignment.clone())]).assignment,
        assignment
    );
}

// ---- TxnOffsetCommit ------------------------------------------------------------------------

/// KIP-447's checks, as Kafka answers TxnOffsetCommit v3+: a wrong generation
/// ILLEGAL_GENERATION, a member the group does not have UNKNOWN_MEMBER_ID, a static member's
/// instance id with another member id FENCED_INSTANCE_ID, a generation of a group that does
/// not exist ILLEGAL_GENERATION; partitions that do not exist UNKNOWN_TOPIC_OR_PARTITION
/// whatever the group; an empty group id INVALID_GROUP_ID.
#[test]
fn transactional_commits_are_refused_to_members_kafka_refuses() {
    let broker = broker();
    create_topic(&broker, "payments", 2);
    let protocols = [("range", Bytes::from_static(b"\x00\x00\x00\x00\x00\x00"))];
    let mut member = Member::new(&broker, "txn-members", "consumer", &protocols);
    member.instance = Some("instance-1".into());
    member.join();
    let member_id = member.member_id.clone();
    member.sync(&[(&member_id, Bytes::new())]);
    let generation = member.generation;
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let producer = init_producer(&mut client);
    add_offsets(&mut client, producer, "txn-members");
    add_offsets(&mut client, producer, "no-such-group");
    let mut commit = |version: i16,
                      group: &str,
                      generation: i32,
                      member: &str,
                      instance: Option<&str>,
                      offsets: &[(&str, i32, i64)]| {
        txn_commit(
            &mut client,
            version,
            group,
            producer,
            generation,
            member,
            instance,
            offsets,
        )
    };
    for version in [3, 4, 5] {
        assert_eq!(
            commit(
                version,
                "txn-members",
                generation + 1,
                &member_id,
                Some("instance-1"),
                &[("payments", 0, 5)]
            ),
            vec![code(ResponseError::IllegalGeneration)],
            "v{version}: wrong generation"
        );
        assert_eq!(
            commit(
                version,
                "txn-members",
                generation,
                "someone-else",
                None,
                &[("payments", 0, 5)]
            ),
            vec![code(ResponseError::UnknownMemberId)],
            "v{version}: not a member"
        );
        assert_eq!(
            commit(
                version,
                "txn-members",
                generation,
                "someone-else",
                Some("instance-1"),
                &[("payments", 0, 5)]
            ),
            vec![code(ResponseError::FencedInstanceId)],
            "v{version}: the instance belongs to another member id"
        );
        assert_eq!(
            commit(version, "no-such-group", 3, "", None, &[("payments", 0, 5)]),
            vec![code(ResponseError::IllegalGeneration)],
            "v{version}: a generation of an unknown group"
        );
        assert_eq!(
            commit(
                version,
                "txn-members",
                generation,
                &member_id,
                Some("instance-1"),
                &[("payments", 7, 5), ("missing", 0, 5)]
            ),
            vec![
                code(ResponseError::UnknownTopicOrPartition),
                code(ResponseError::UnknownTopicOrPartition)
            ],
            "v{version}: partitions that do not exist"
        );
        assert_eq!(
            commit(version, "", -1, "", None, &[("payments", 0, 5)]),
            vec![code(ResponseError::InvalidGroupId)],
            "v{version}: an empty group id"
        );
    }
    // The transaction coordinator's verification (KIP-890): a group not in the transaction
    // (INVALID_TXN_STATE before v4, TRANSACTION_ABORTABLE from v4), an older epoch, an unknown
    // producer id.
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let not_added = |version| {
        if version >= 4 {
            code(ResponseError::TransactionAbortable)
        } else {
            code(ResponseError::InvalidTxnState)
        }
    };
    let one = [("payments", 0, 5)];
    for version in [0, 3, 4, 5] {
        assert_eq!(
            txn_commit(
                &mut client,
                version,
                "not-added",
                producer,
                -1,
                "",
                None,
                &one
            ),
            vec![not_added(version)],
            "v{version}: a group not added to the transaction"
        );
    }
    let bumped = init_producer(&mut client);
    assert_eq!(bumped.0, producer.0);
    assert!(bumped.1 > producer.1);
    assert_eq!(
        txn_commit(&mut client, 3, "txn-members", producer, -1, "", None, &one),
        vec![code(ResponseError::InvalidProducerEpoch)],
        "the fenced epoch"
    );
    let stranger = (producer.0 + 1_000, 0);
    assert_eq!(
        txn_commit(&mut client, 3, "txn-members", stranger, -1, "", None, &one),
        vec![code(ResponseError::InvalidProducerIdMapping)],
        "another producer id"
    );
    // Nothing of it reached the group.
    assert_eq!(
        fetch_one(&mut client, "txn-members", "payments", 0, true),
        (0, -1)
    );
}

/// A transactional commit is pending until its transaction ends: plain OffsetFetch still
/// answers the committed offset, `require_stable` (v7+, batched v8+) answers
/// UNSTABLE_OFFSET_COMMIT for the partition and nothing for the others, and the pending offset
/// survives a broker restart (replayed from the offsets partition). Members of the group may
/// commit in a transaction during a rebalance (no REBALANCE_IN_PROGRESS), and TxnOffsetCommit
/// v0-v2, which names no member, is taken from outside the membership.
#[test]
fn transactional_offsets_stay_pending_and_require_stable_waits_for_them() {
    let mut broker = broker();
    create_topic(&broker, "ledger", 2);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    plain_commit(&mut client, "pending-group", "ledger", 0, 5);
    let producer = init_producer(&mut client);
    add_offsets(&mut client, producer, "pending-group");
    for version in [0, 3, 5] {
        assert_eq!(
            txn_commit(
                &mut client,
                version,
                "pending-group",
                producer,
                -1,
                "",
                None,
                &[("ledger", 0, 9)]
            ),
            vec![0],
            "TxnOffsetCommit v{version} without a member, into an empty group"
        );
    }
    assert_eq!(
        fetch_one(&mut client, "pending-group", "ledger", 0, false),
        (0, 5)
    );
    assert_eq!(
        fetch_one(&mut client, "pending-group", "ledger", 0, true),
        (code(ResponseError::UnstableOffsetCommit), -1)
    );
    assert_eq!(
        fetch_one_batched(&mut client, "pending-group", "ledger", 0, true),
        (code(ResponseError::UnstableOffsetCommit), -1)
    );
    assert_eq!(
        fetch_one_batched(&mut client, "pending-group", "ledger", 0, false),
        (0, 5)
    );
    assert_eq!(
        fetch_one(&mut client, "pending-group", "ledger", 1, true),
        (0, -1),
        "a partition without a pending offset is stable"
    );

    broker.kill();
    broker.restart();
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(
        fetch_one(&mut client, "pending-group", "ledger", 0, false),
        (0, 5)
    );
    assert_eq!(
        fetch_one(&mut client, "pending-group", "ledger", 0, true),
        (code(ResponseError::UnstableOffsetCommit), -1),
        "the pending offset was replayed"
    );
    // The transaction coordinator came back with the transaction open: its commit ends it.
    end_txn(&mut client, producer, true);
    wait_until("the commit marker reaches the group", || {
        fetch_one(&mut client, "pending-group", "ledger", 0, true) == (0, 9)
    });
}

/// The whole exchange of a consume-transform-produce producer: AddOffsetsToTxn, TxnOffsetCommit,
/// EndTxn. A committed transaction's offsets become the group's, an aborted one's never do,
/// and a producer that starts again (InitProducerId) aborts its predecessor's open
/// transaction, offsets included.
#[test]
fn end_txn_commits_or_aborts_the_groups_offsets() {
    let broker = broker();
    create_topic(&broker, "orders", 2);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let producer = init_producer(&mut client);

    add_offsets(&mut client, producer, "eos-app");
    let offsets = [("orders", 0, 17), ("orders", 1, 4)];
    assert_eq!(
        txn_commit(&mut client, 3, "eos-app", producer, -1, "", None, &offsets),
        vec![0, 0]
    );
    assert_eq!(
        fetch_one(&mut client, "eos-app", "orders", 0, true),
        (code(ResponseError::UnstableOffsetCommit), -1)
    );
    end_txn(&mut client, producer, true);
    wait_until("the committed offsets are stable", || {
        fetch_one(&mut client, "eos-app", "orders", 0, true) == (0, 17)
    });
    assert_eq!(fetch_one(&mut client, "eos-app", "orders", 1, true), (0, 4));

    add_offsets(&mut client, producer, "eos-app");
    assert_eq!(
        txn_commit(
            &mut client,
            4,
            "eos-app",
            producer,
            -1,
            "",
            None,
            &[("orders", 0, 30)]
        ),
        vec![0]
    );
    end_txn(&mut client, producer, false);
    wait_until("the aborted offset is gone", || {
        fetch_one(&mut client, "eos-app", "orders", 0, true) == (0, 17)
    });

    // A new incarnation fences the old one and aborts its open transaction.
    add_offsets(&mut client, producer, "eos-app");
    assert_eq!(
        txn_commit(
            &mut client,
            3,
            "eos-app",
            producer,
            -1,
            "",
            None,
            &[("orders", 1, 50)]
        ),
        vec![0]
    );
    let successor = init_producer(&mut client);
    assert!(successor.1 > producer.1);
    wait_until("the predecessor's transaction is aborted", || {
        fetch_one(&mut client, "eos-app", "orders", 1, true) == (0, 4)
    });
    add_offsets(&mut client, successor, "eos-app");
    assert_eq!(
        txn_commit(
            &mut client,
            3,
            "eos-app",
            successor,
            -1,
            "",
            None,
            &[("orders", 1, 60)]
        ),
        vec![0]
    );
    end_txn(&mut client, successor, true);
    wait_until("the successor's commit lands", || {
        fetch_one(&mut client, "eos-app", "orders", 1, true) == (0, 60)
    });
}
