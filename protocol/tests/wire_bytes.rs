//! The native protocol's bytes, pinned: a representative value of every request and response of
//! every API (and the consumer protocol's subscription and assignment) encodes to exactly the
//! bytes recorded in `wire_bytes.golden`, and those bytes decode back to the value.
//!
//! The golden file was written by the hand-written codecs that the declared ones replaced, so
//! this test is the proof that old and new clients and brokers exchange the same bytes. The
//! values use distinct non-zero numbers, non-empty strings, present and absent options and
//! lists of two, so that a swapped field, a wrong width or a lost tag changes the bytes. The
//! match over `ApiKey` has no wildcard: a new API does not compile until it has values here.
//!
//! The error answers that `encode_error_response` derives from the response declarations are
//! checked here too, against what the broker answered before they were derived.
//!
//! To record a new API's bytes (never to make an existing line pass), run the test with
//! `SPATE_RECORD_WIRE_BYTES=1`; it then rewrites the file and fails.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use spate_protocol::api::*;
use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};
use spate_protocol::ErrorCode;

const GOLDEN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/wire_bytes.golden");

/// Encodings by name, in the order they were produced.
#[derive(Default)]
struct Encodings {
    lines: Vec<(String, String)>,
}

impl Encodings {
    fn message<M: Message + PartialEq + Debug>(&mut self, label: &str, message: M) {
        let mut body = BytesMut::new();
        message
            .encode(0, &mut body)
            .expect("representative value encodes");
        let decoded = M::decode(0, body.clone().freeze()).expect("its bytes decode");
        assert_eq!(decoded, message, "{label} round-trips");
        self.push(format!("{}/{label}", M::NAME), &body);
    }

    /// Like `message`, at `version` (a later version's fields included), labelled with it.
    fn message_at<M: Message + PartialEq + Debug>(
        &mut self,
        label: &str,
        version: u16,
        message: M,
    ) {
        let mut body = BytesMut::new();
        message
            .encode(version, &mut body)
            .expect("representative value encodes");
        let decoded = M::decode(version, body.clone().freeze()).expect("its bytes decode");
        assert_eq!(decoded, message, "{label} round-trips at version {version}");
        self.push(format!("{}/v{version}/{label}", M::NAME), &body);
    }

    fn push(&mut self, name: String, bytes: &[u8]) {
        let hex = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
        assert!(
            !self.lines.iter().any(|(existing, _)| *existing == name),
            "duplicate label {name}"
        );
        self.lines.push((name, hex));
    }

    fn render(&self) -> String {
        self.lines
            .iter()
            .map(|(name, hex)| format!("{name} {hex}\n"))
            .collect()
    }
}

fn text(label: &str) -> String {
    format!("{label}-text")
}

fn opaque(seed: u8) -> Bytes {
    Bytes::from(vec![seed, seed.wrapping_add(1), seed.wrapping_add(2)])
}

fn code(number: u16) -> ErrorCode {
    ErrorCode::from_u16_lossy(number)
}

fn sealed_batch(base: u8) -> Bytes {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder
        .append(Some(&[base]), Some(b"value"), NO_HEADERS, 1_700_000_000_000)
        .unwrap();
    builder
        .append(None, Some(&[base, base]), NO_HEADERS, 1_700_000_000_001)
        .unwrap();
    builder.seal().unwrap().freeze()
}

fn configs() -> Vec<ConfigEntry> {
    vec![
        ConfigEntry::new("retention.ms", "604800000"),
        ConfigEntry::new("durability", "group-commit"),
    ]
}

fn partition_metadata() -> Vec<PartitionMetadata> {
    vec![
        PartitionMetadata {
            partition: 0x0102_0304,
            error_code: ErrorCode::None,
            shard_id: 0x0506_0708,
            log_start_offset: 0x1112_1314_1516_1718,
            high_watermark: 0x2122_2324_2526_2728,
            error_message: None,
            ..PartitionMetadata::default()
        },
        PartitionMetadata {
            partition: 7,
            error_code: ErrorCode::PartitionOffline,
            shard_id: 1,
            log_start_offset: 3,
            high_watermark: 9,
            error_message: Some(text("offline")),
            ..PartitionMetadata::default()
        },
    ]
}

/// Version 1's partitions: a led one and a leaderless one.
fn partition_metadata_v1() -> Vec<PartitionMetadata> {
    let [led, offline] = <[PartitionMetadata; 2]>::try_from(partition_metadata()).unwrap();
    vec![
        PartitionMetadata {
            leader_id: 0x3132_3334,
            leader_epoch: 0x4142_4344,
            replicas: vec![0x3132_3334, 2, 3],
            isr: vec![0x3132_3334, 3],
            ..led
        },
        PartitionMetadata {
            error_code: ErrorCode::LeaderNotAvailable,
            leader_id: NO_NODE,
            leader_epoch: 5,
            replicas: vec![2],
            isr: vec![],
            ..offline
        },
    ]
}

fn brokers() -> Vec<BrokerMetadata> {
    vec![
        BrokerMetadata {
            node_id: 0x0102_0304,
            host: "127.0.0.1".into(),
            port: 0x0506,
            rack: Some(text("rack")),
        },
        BrokerMetadata {
            node_id: 2,
            host: "broker-2.example".into(),
            port: 9192,
            rack: None,
        },
    ]
}

fn topic_results() -> Vec<TopicResult> {
    vec![
        TopicResult {
            name: "alpha".into(),
            error_code: ErrorCode::None,
            error_message: None,
        },
        TopicResult {
            name: "beta".into(),
            error_code: ErrorCode::TopicAlreadyExists,
            error_message: Some(text("exists")),
        },
    ]
}

fn topic_partition_lists() -> Vec<TopicPartitionList> {
    vec![
        TopicPartitionList {
            name: "alpha".into(),
            partitions: vec![0, 0x0a0b_0c0d],
        },
        TopicPartitionList {
            name: "beta".into(),
            partitions: vec![],
        },
    ]
}

fn partition_results() -> Vec<TopicPartitions<PartitionResult>> {
    vec![TopicPartitions {
        name: "alpha".into(),
        partitions: vec![
            PartitionResult {
                partition: 1,
                error_code: ErrorCode::None,
            },
            PartitionResult {
                partition: 0x0102_0304,
                error_code: code(23),
            },
        ],
    }]
}

fn partition_outcomes() -> Vec<TopicOutcomes> {
    vec![TopicPartitions {
        name: "alpha".into(),
        partitions: vec![
            PartitionOutcome {
                partition: 1,
                error_code: ErrorCode::None,
                error_message: None,
            },
            PartitionOutcome {
                partition: 0x0102_0304,
                error_code: ErrorCode::ReassignmentInProgress,
                error_message: Some(text("moving")),
            },
        ],
    }]
}

fn subscription() -> ConsumerSubscription {
    ConsumerSubscription {
        topics: vec!["alpha".into(), "beta".into()],
        owned_partitions: topic_partition_lists(),
        user_data: opaque(40),
    }
}

fn assignment() -> ConsumerAssignment {
    ConsumerAssignment {
        partitions: topic_partition_lists(),
        user_data: opaque(50),
    }
}

/// Adds the representative request and response of `api_key`.
fn add_api(encodings: &mut Encodings, api_key: ApiKey) {
    match api_key {
        ApiKey::ApiVersions => {
            encodings.message(
                "ranges",
                ApiVersionsRequest {
                    client_versions: vec![
                        ApiVersionRange {
                            api_key: 0x0102,
                            min_version: 0x0304,
                            max_version: 0x0506,
                        },
                        ApiVersionRange {
                            api_key: 7,
                            min_version: 0,
                            max_version: 2,
                        },
                    ],
                },
            );
            encodings.message(
                "supported",
                ApiVersionsResponse {
                    error_code: code(6),
                    broker_versions: SUPPORTED_API_VERSIONS.to_vec(),
                },
            );
        }
        ApiKey::Metadata => {
            encodings.message("all", MetadataRequest { topics: None });
            encodings.message(
                "named",
                MetadataRequest {
                    topics: Some(vec!["alpha".into(), "beta".into()]),
                },
            );
            encodings.message(
                "topics",
                MetadataResponse {
                    topics: vec![
                        TopicMetadata {
                            error_code: ErrorCode::None,
                            name: "alpha".into(),
                            partitions: partition_metadata(),
                        },
                        TopicMetadata {
                            error_code: ErrorCode::UnknownTopicOrPartition,
                            name: "gone".into(),
                            partitions: vec![],
                        },
                    ],
                    ..MetadataResponse::default()
                },
            );
            encodings.message_at(
                "cluster",
                1,
                MetadataResponse {
                    topics: vec![TopicMetadata {
                        error_code: ErrorCode::None,
                        name: "alpha".into(),
                        partitions: partition_metadata_v1(),
                    }],
                    cluster_id: Some(text("cluster")),
                    controller_id: 0x0a0b_0c0d,
                    brokers: brokers(),
                },
            );
            encodings.message_at(
                "no_controller",
                1,
                MetadataResponse {
                    topics: vec![],
                    cluster_id: None,
                    controller_id: NO_NODE,
                    brokers: vec![],
                },
            );
        }
        ApiKey::CreateTopics => {
            encodings.message(
                "two",
                CreateTopicsRequest {
                    topics: vec![
                        CreateTopic {
                            name: "alpha".into(),
                            partition_count: 0x0102_0304,
                            configs: configs(),
                            replication_factor: 0,
                        },
                        CreateTopic {
                            name: "beta".into(),
                            partition_count: 1,
                            configs: vec![],
                            replication_factor: 0,
                        },
                    ],
                    timeout_ms: 0x0a0b_0c0d,
                },
            );
            encodings.message_at(
                "replicated",
                1,
                CreateTopicsRequest {
                    topics: vec![CreateTopic {
                        name: "alpha".into(),
                        partition_count: 0x0102_0304,
                        configs: configs(),
                        replication_factor: 0x0a0b,
                    }],
                    timeout_ms: 0x0a0b_0c0d,
                },
            );
            encodings.message(
                "results",
                CreateTopicsResponse {
                    results: topic_results(),
                },
            );
        }
        ApiKey::DeleteTopics => {
            encodings.message(
                "two",
                DeleteTopicsRequest {
                    names: vec!["alpha".into(), "beta".into()],
                    timeout_ms: 0x0a0b_0c0d,
                },
            );
            encodings.message(
                "results",
                DeleteTopicsResponse {
                    results: topic_results(),
                },
            );
        }
        ApiKey::ListTopics => {
            encodings.message("empty", ListTopicsRequest {});
            encodings.message(
                "two",
                ListTopicsResponse {
                    error_code: code(17),
                    topics: vec![
                        TopicListing {
                            name: "alpha".into(),
                            partition_count: 0x0102_0304,
                        },
                        TopicListing {
                            name: "beta".into(),
                            partition_count: 2,
                        },
                    ],
                },
            );
        }
        ApiKey::DescribeTopic => {
            encodings.message(
                "named",
                DescribeTopicRequest {
                    name: "alpha".into(),
                },
            );
            encodings.message(
                "full",
                DescribeTopicResponse {
                    error_code: code(4),
                    error_message: Some(text("describe")),
                    name: "alpha".into(),
                    configs: configs(),
                    partitions: partition_metadata(),
                },
            );
        }
        ApiKey::AlterTopicConfig => {
            encodings.message(
                "set_and_reset",
                AlterTopicConfigRequest {
                    name: "alpha".into(),
                    set: configs(),
                    reset: vec!["segment.ms".into(), "retention.bytes".into()],
                },
            );
            encodings.message(
                "failed",
                AlterTopicConfigResponse {
                    error_code: code(9),
                    error_message: Some(text("alter")),
                },
            );
        }
        ApiKey::Produce => {
            encodings.message(
                "two_partitions",
                ProduceRequest {
                    acks: Acks::Leader,
                    timeout_ms: 0x0102_0304,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ProducePartition {
                                partition: 3,
                                batches: vec![sealed_batch(1), sealed_batch(2)],
                            },
                            ProducePartition {
                                partition: 0x0a0b_0c0d,
                                batches: vec![],
                            },
                        ],
                    }],
                    transactional_id: None,
                },
            );
            encodings.message_at(
                "transactional",
                1,
                ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 5,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![ProducePartition {
                            partition: 3,
                            batches: vec![sealed_batch(1)],
                        }],
                    }],
                    transactional_id: Some(text("txn")),
                },
            );
            encodings.message(
                "acks_all",
                ProduceRequest {
                    acks: Acks::All,
                    timeout_ms: 5,
                    topics: vec![],
                    transactional_id: None,
                },
            );
            encodings.message(
                "offsets",
                ProduceResponse {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ProducePartitionResponse {
                                partition: 3,
                                error_code: ErrorCode::None,
                                base_offset: 0x1112_1314_1516_1718,
                                log_append_time_ms: -1,
                                log_start_offset: 0x2122_2324_2526_2728,
                                ..ProducePartitionResponse::default()
                            },
                            ProducePartitionResponse {
                                partition: 4,
                                error_code: code(27),
                                base_offset: 0,
                                log_append_time_ms: 0x0102_0304_0506,
                                log_start_offset: 9,
                                ..ProducePartitionResponse::default()
                            },
                        ],
                    }],
                },
            );
            encodings.message_at(
                "not_leader",
                2,
                ProduceResponse {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ProducePartitionResponse {
                                partition: 3,
                                error_code: ErrorCode::None,
                                base_offset: 0x1112_1314_1516_1718,
                                log_append_time_ms: -1,
                                log_start_offset: 0x2122_2324_2526_2728,
                                leader_id: NO_NODE,
                                leader_epoch: -1,
                            },
                            ProducePartitionResponse {
                                partition: 4,
                                error_code: ErrorCode::NotLeaderOrFollower,
                                base_offset: 0,
                                log_append_time_ms: -1,
                                log_start_offset: 0,
                                leader_id: 0x0102_0304,
                                leader_epoch: 0x0506_0708,
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::Fetch => {
            encodings.message(
                "two_partitions",
                FetchRequest {
                    max_wait_ms: 0x0102_0304,
                    min_bytes: 0x0506_0708,
                    max_bytes: 0x090a_0b0c,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            FetchPartition {
                                partition: 1,
                                fetch_offset: 0x1112_1314_1516_1718,
                                partition_max_bytes: 0x2122_2324,
                            },
                            FetchPartition {
                                partition: 2,
                                fetch_offset: 0,
                                partition_max_bytes: 1,
                            },
                        ],
                    }],
                    isolation_level: IsolationLevel::ReadUncommitted,
                },
            );
            encodings.message_at(
                "read_committed",
                1,
                FetchRequest {
                    max_wait_ms: 0x0102_0304,
                    min_bytes: 0x0506_0708,
                    max_bytes: 0x090a_0b0c,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![FetchPartition {
                            partition: 1,
                            fetch_offset: 0x1112_1314_1516_1718,
                            partition_max_bytes: 0x2122_2324,
                        }],
                    }],
                    isolation_level: IsolationLevel::ReadCommitted,
                },
            );
            let mut joined = BytesMut::new();
            joined.extend_from_slice(&sealed_batch(3));
            joined.extend_from_slice(&sealed_batch(4));
            encodings.message(
                "records",
                FetchResponse {
                    error_code: code(17),
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            FetchPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                high_watermark: 0x1112_1314_1516_1718,
                                log_start_offset: 0x2122_2324_2526_2728,
                                records: RecordSet::from_bytes(joined.clone().freeze()),
                                ..FetchPartitionResponse::default()
                            },
                            FetchPartitionResponse {
                                partition: 2,
                                error_code: code(5),
                                high_watermark: 3,
                                log_start_offset: 1,
                                records: RecordSet::default(),
                                ..FetchPartitionResponse::default()
                            },
                        ],
                    }],
                },
            );
            encodings.message_at(
                "transactions",
                1,
                FetchResponse {
                    error_code: ErrorCode::None,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            FetchPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                high_watermark: 0x1112_1314_1516_1718,
                                log_start_offset: 0x2122_2324_2526_2728,
                                records: RecordSet::from_bytes(joined.freeze()),
                                last_stable_offset: 0x3132_3334_3536_3738,
                                aborted_transactions: vec![
                                    AbortedTransaction {
                                        producer_id: 0x4142_4344_4546_4748,
                                        first_offset: 0x5152_5354_5556_5758,
                                    },
                                    AbortedTransaction {
                                        producer_id: 7,
                                        first_offset: 9,
                                    },
                                ],
                                ..FetchPartitionResponse::default()
                            },
                            FetchPartitionResponse {
                                partition: 2,
                                error_code: code(5),
                                high_watermark: 3,
                                log_start_offset: 1,
                                records: RecordSet::default(),
                                last_stable_offset: 2,
                                aborted_transactions: vec![],
                                ..FetchPartitionResponse::default()
                            },
                        ],
                    }],
                },
            );
            encodings.message_at(
                "not_leader",
                2,
                FetchResponse {
                    error_code: ErrorCode::None,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            FetchPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                high_watermark: 0x1112_1314_1516_1718,
                                log_start_offset: 0x2122_2324_2526_2728,
                                records: RecordSet::from_bytes(sealed_batch(5)),
                                last_stable_offset: 0x3132_3334_3536_3738,
                                aborted_transactions: vec![],
                                leader_id: NO_NODE,
                                leader_epoch: -1,
                            },
                            FetchPartitionResponse {
                                partition: 2,
                                error_code: ErrorCode::NotLeaderOrFollower,
                                high_watermark: 0,
                                log_start_offset: 0,
                                records: RecordSet::default(),
                                last_stable_offset: 0,
                                aborted_transactions: vec![],
                                leader_id: 0x0102_0304,
                                leader_epoch: 0x0506_0708,
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::ListOffsets => {
            encodings.message(
                "specs",
                ListOffsetsRequest {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ListOffsetsPartition {
                                partition: 1,
                                spec: OffsetSpec::Earliest,
                            },
                            ListOffsetsPartition {
                                partition: 2,
                                spec: OffsetSpec::Latest,
                            },
                            ListOffsetsPartition {
                                partition: 0x0102_0304,
                                spec: OffsetSpec::Timestamp(0x0506_0708_090a),
                            },
                        ],
                    }],
                    isolation_level: IsolationLevel::ReadUncommitted,
                },
            );
            encodings.message_at(
                "read_committed",
                1,
                ListOffsetsRequest {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![ListOffsetsPartition {
                            partition: 2,
                            spec: OffsetSpec::Latest,
                        }],
                    }],
                    isolation_level: IsolationLevel::ReadCommitted,
                },
            );
            encodings.message(
                "answers",
                ListOffsetsResponse {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ListOffsetsPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                offset: Some(0x1112_1314_1516_1718),
                                timestamp: -1,
                            },
                            ListOffsetsPartitionResponse {
                                partition: 2,
                                error_code: code(4),
                                offset: None,
                                timestamp: 0x0102_0304_0506,
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::DeleteRecords => {
            encodings.message(
                "two",
                DeleteRecordsRequest {
                    timeout_ms: 0x0102_0304,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            DeleteRecordsPartition {
                                partition: 1,
                                before_offset: 0x1112_1314_1516_1718,
                            },
                            DeleteRecordsPartition {
                                partition: 2,
                                before_offset: 0,
                            },
                        ],
                    }],
                },
            );
            encodings.message(
                "two",
                DeleteRecordsResponse {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            DeleteRecordsPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                log_start_offset: 0x1112_1314_1516_1718,
                            },
                            DeleteRecordsPartitionResponse {
                                partition: 2,
                                error_code: code(5),
                                log_start_offset: 3,
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::JoinGroup => {
            encodings.message(
                "static_member",
                JoinGroupRequest {
                    group_id: "group".into(),
                    session_timeout_ms: 0x0102_0304,
                    rebalance_timeout_ms: 0x0506_0708,
                    member_id: "member-1".into(),
                    group_instance_id: Some("instance".into()),
                    protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                    protocols: vec![
                        GroupProtocol {
                            name: "range".into(),
                            metadata: subscription().encode().unwrap(),
                        },
                        GroupProtocol {
                            name: "sticky".into(),
                            metadata: opaque(9),
                        },
                    ],
                },
            );
            encodings.message(
                "first_join",
                JoinGroupRequest {
                    group_id: "group".into(),
                    session_timeout_ms: 1,
                    rebalance_timeout_ms: 2,
                    member_id: String::new(),
                    group_instance_id: None,
                    protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                    protocols: vec![],
                },
            );
            encodings.message(
                "leader",
                JoinGroupResponse {
                    error_code: ErrorCode::None,
                    generation_id: 0x0102_0304,
                    protocol_type: Some(CONSUMER_PROTOCOL_TYPE.into()),
                    protocol_name: Some("range".into()),
                    leader: "member-1".into(),
                    member_id: "member-1".into(),
                    members: vec![
                        JoinGroupMember {
                            member_id: "member-1".into(),
                            group_instance_id: Some("instance".into()),
                            metadata: opaque(11),
                        },
                        JoinGroupMember {
                            member_id: "member-2".into(),
                            group_instance_id: None,
                            metadata: Bytes::new(),
                        },
                    ],
                },
            );
            encodings.message(
                "error",
                JoinGroupResponse::error(ErrorCode::MemberIdRequired, "member-3"),
            );
        }
        ApiKey::SyncGroup => {
            encodings.message(
                "leader",
                SyncGroupRequest {
                    group_id: "group".into(),
                    generation_id: 0x0102_0304,
                    member_id: "member-1".into(),
                    group_instance_id: Some("instance".into()),
                    protocol_type: Some(CONSUMER_PROTOCOL_TYPE.into()),
                    protocol_name: None,
                    assignments: vec![
                        SyncGroupAssignment {
                            member_id: "member-1".into(),
                            assignment: assignment().encode().unwrap(),
                        },
                        SyncGroupAssignment {
                            member_id: "member-2".into(),
                            assignment: Bytes::new(),
                        },
                    ],
                },
            );
            encodings.message(
                "assigned",
                SyncGroupResponse {
                    error_code: code(27),
                    protocol_type: None,
                    protocol_name: Some("range".into()),
                    assignment: opaque(12),
                },
            );
        }
        ApiKey::Heartbeat => {
            encodings.message(
                "member",
                HeartbeatRequest {
                    group_id: "group".into(),
                    generation_id: -0x0102_0304,
                    member_id: "member-1".into(),
                    group_instance_id: None,
                },
            );
            encodings.message(
                "rebalance",
                HeartbeatResponse {
                    error_code: code(27),
                },
            );
        }
        ApiKey::LeaveGroup => {
            encodings.message(
                "two",
                LeaveGroupRequest {
                    group_id: "group".into(),
                    members: vec![
                        MemberIdentity {
                            member_id: "member-1".into(),
                            group_instance_id: None,
                        },
                        MemberIdentity {
                            member_id: String::new(),
                            group_instance_id: Some("instance".into()),
                        },
                    ],
                },
            );
            encodings.message(
                "two",
                LeaveGroupResponse {
                    error_code: code(19),
                    members: vec![
                        MemberResult {
                            member_id: "member-1".into(),
                            group_instance_id: Some("instance".into()),
                            error_code: ErrorCode::None,
                        },
                        MemberResult {
                            member_id: "member-2".into(),
                            group_instance_id: None,
                            error_code: code(22),
                        },
                    ],
                },
            );
        }
        ApiKey::OffsetCommit => {
            encodings.message(
                "two",
                OffsetCommitRequest {
                    group_id: "group".into(),
                    generation_id: GENERATION_NONE,
                    member_id: "member-1".into(),
                    group_instance_id: Some("instance".into()),
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            OffsetCommitPartition {
                                partition: 1,
                                committed_offset: 0x1112_1314_1516_1718,
                                committed_metadata: Some(text("commit")),
                            },
                            OffsetCommitPartition {
                                partition: 2,
                                committed_offset: 0,
                                committed_metadata: None,
                            },
                        ],
                    }],
                },
            );
            encodings.message(
                "results",
                OffsetCommitResponse {
                    error_code: code(25),
                    topics: partition_results(),
                },
            );
        }
        ApiKey::OffsetFetch => {
            encodings.message(
                "all",
                OffsetFetchRequest {
                    group_id: "group".into(),
                    topics: None,
                    require_stable: false,
                },
            );
            encodings.message(
                "named",
                OffsetFetchRequest {
                    group_id: "group".into(),
                    topics: Some(topic_partition_lists()),
                    require_stable: false,
                },
            );
            encodings.message_at(
                "stable",
                1,
                OffsetFetchRequest {
                    group_id: "group".into(),
                    topics: None,
                    require_stable: true,
                },
            );
            encodings.message(
                "offsets",
                OffsetFetchResponse {
                    error_code: code(20),
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            OffsetFetchPartition {
                                partition: 1,
                                committed_offset: Some(0x1112_1314_1516_1718),
                                metadata: Some(text("fetch")),
                                error_code: ErrorCode::None,
                            },
                            OffsetFetchPartition {
                                partition: 2,
                                committed_offset: None,
                                metadata: None,
                                error_code: code(4),
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::ListGroups => {
            encodings.message(
                "states",
                ListGroupsRequest {
                    states: vec![GroupState::Stable, GroupState::Empty],
                },
            );
            encodings.message(
                "two",
                ListGroupsResponse {
                    error_code: code(18),
                    groups: vec![
                        GroupListing {
                            group_id: "group".into(),
                            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                            state: GroupState::CompletingRebalance,
                        },
                        GroupListing {
                            group_id: "offsets-only".into(),
                            protocol_type: String::new(),
                            state: GroupState::Dead,
                        },
                    ],
                },
            );
        }
        ApiKey::DescribeGroups => {
            encodings.message(
                "two",
                DescribeGroupsRequest {
                    groups: vec!["group".into(), "other".into()],
                },
            );
            encodings.message(
                "described",
                DescribeGroupsResponse {
                    error_code: code(18),
                    groups: vec![
                        DescribedGroup {
                            error_code: ErrorCode::None,
                            group_id: "group".into(),
                            state: GroupState::PreparingRebalance,
                            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
                            protocol_name: "range".into(),
                            generation_id: 0x0102_0304,
                            leader: "member-1".into(),
                            members: vec![
                                DescribedMember {
                                    member_id: "member-1".into(),
                                    group_instance_id: Some("instance".into()),
                                    client_id: "client".into(),
                                    client_host: "127.0.0.1".into(),
                                    metadata: opaque(21),
                                    assignment: opaque(22),
                                },
                                DescribedMember {
                                    member_id: "member-2".into(),
                                    group_instance_id: None,
                                    client_id: String::new(),
                                    client_host: String::new(),
                                    metadata: Bytes::new(),
                                    assignment: Bytes::new(),
                                },
                            ],
                            offsets: vec![TopicPartitions {
                                name: "alpha".into(),
                                partitions: vec![
                                    DescribedOffset {
                                        partition: 1,
                                        committed_offset: 0x1112_1314_1516_1718,
                                        metadata: Some(text("offset")),
                                        high_watermark: Some(0x2122_2324_2526_2728),
                                    },
                                    DescribedOffset {
                                        partition: 2,
                                        committed_offset: 3,
                                        metadata: None,
                                        high_watermark: None,
                                    },
                                ],
                            }],
                        },
                        DescribedGroup {
                            error_code: ErrorCode::Unknown,
                            group_id: "missing".into(),
                            ..DescribedGroup::default()
                        },
                    ],
                },
            );
        }
        ApiKey::DeleteGroups => {
            encodings.message(
                "two",
                DeleteGroupsRequest {
                    groups: vec!["group".into(), "other".into()],
                },
            );
            encodings.message(
                "two",
                DeleteGroupsResponse {
                    error_code: code(18),
                    results: vec![
                        GroupResult {
                            group_id: "group".into(),
                            error_code: ErrorCode::None,
                        },
                        GroupResult {
                            group_id: "other".into(),
                            error_code: code(26),
                        },
                    ],
                },
            );
        }
        ApiKey::OffsetDelete => {
            encodings.message(
                "two",
                OffsetDeleteRequest {
                    group_id: "group".into(),
                    topics: topic_partition_lists(),
                },
            );
            encodings.message(
                "results",
                OffsetDeleteResponse {
                    error_code: code(29),
                    topics: partition_results(),
                },
            );
        }
        ApiKey::InitProducerId => {
            encodings.message("new", InitProducerIdRequest::default());
            encodings.message(
                "bump",
                InitProducerIdRequest {
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    ..InitProducerIdRequest::default()
                },
            );
            encodings.message_at(
                "transactional",
                1,
                InitProducerIdRequest {
                    transactional_id: Some(text("txn")),
                    transaction_timeout_ms: 0x0102_0304,
                    ..InitProducerIdRequest::default()
                },
            );
            encodings.message_at(
                "idempotent",
                1,
                InitProducerIdRequest {
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    ..InitProducerIdRequest::default()
                },
            );
            encodings.message(
                "granted",
                InitProducerIdResponse {
                    error_code: code(11),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: -0x0a0b,
                },
            );
        }
        ApiKey::DescribeCluster => {
            encodings.message("empty", DescribeClusterRequest {});
            encodings.message(
                "described",
                DescribeClusterResponse {
                    error_code: code(14),
                    broker_version: "0.1.0".into(),
                    listeners: vec!["127.0.0.1:9192".into(), "127.0.0.2:9192".into()],
                    shard_count: 0x0102_0304,
                    topic_defaults: configs(),
                    ..DescribeClusterResponse::default()
                },
            );
            encodings.message_at(
                "cluster",
                1,
                DescribeClusterResponse {
                    error_code: ErrorCode::None,
                    broker_version: "0.1.0".into(),
                    listeners: vec!["127.0.0.1:9192".into()],
                    shard_count: 2,
                    topic_defaults: vec![],
                    node_id: 0x0a0b_0c0d,
                    cluster_id: Some(text("cluster")),
                    controller_id: 0x1112_1314,
                    brokers: brokers(),
                },
            );
        }
        ApiKey::AddPartitionsToTxn => {
            encodings.message(
                "two_topics",
                AddPartitionsToTxnRequest {
                    transactional_id: text("txn"),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    topics: topic_partition_lists(),
                },
            );
            encodings.message(
                "results",
                AddPartitionsToTxnResponse {
                    error_code: code(41),
                    error_message: Some(text("state")),
                    topics: partition_results(),
                },
            );
        }
        ApiKey::AddOffsetsToTxn => {
            encodings.message(
                "group",
                AddOffsetsToTxnRequest {
                    transactional_id: text("txn"),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    group_id: "group".into(),
                },
            );
            encodings.message(
                "fenced",
                AddOffsetsToTxnResponse {
                    error_code: code(37),
                    error_message: Some(text("fenced")),
                },
            );
        }
        ApiKey::EndTxn => {
            encodings.message(
                "commit",
                EndTxnRequest {
                    transactional_id: text("txn"),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    commit: true,
                },
            );
            encodings.message(
                "abort",
                EndTxnRequest {
                    transactional_id: text("txn"),
                    producer_id: 1,
                    producer_epoch: 2,
                    commit: false,
                },
            );
            encodings.message(
                "concurrent",
                EndTxnResponse {
                    error_code: code(43),
                    error_message: None,
                },
            );
        }
        ApiKey::TxnOffsetCommit => {
            encodings.message(
                "member",
                TxnOffsetCommitRequest {
                    transactional_id: text("txn"),
                    group_id: "group".into(),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x0a0b,
                    generation_id: 0x0c0d_0e0f,
                    member_id: "member-1".into(),
                    group_instance_id: Some("instance".into()),
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            OffsetCommitPartition {
                                partition: 1,
                                committed_offset: 0x1112_1314_1516_1718,
                                committed_metadata: Some(text("meta")),
                            },
                            OffsetCommitPartition {
                                partition: 2,
                                committed_offset: 0,
                                committed_metadata: None,
                            },
                        ],
                    }],
                },
            );
            encodings.message(
                "results",
                TxnOffsetCommitResponse {
                    error_code: code(23),
                    topics: partition_results(),
                },
            );
        }
        ApiKey::CreatePartitions => {
            encodings.message(
                "grow",
                CreatePartitionsRequest {
                    name: "alpha".into(),
                    partition_count: 0x0102_0304,
                },
            );
            encodings.message(
                "refused",
                CreatePartitionsResponse {
                    error_code: code(10),
                    error_message: Some(text("grow")),
                },
            );
        }
        ApiKey::FindCoordinator => {
            encodings.message(
                "group",
                FindCoordinatorRequest {
                    key_type: CoordinatorType::Group,
                    key: "group".into(),
                },
            );
            encodings.message(
                "transaction",
                FindCoordinatorRequest {
                    key_type: CoordinatorType::Transaction,
                    key: text("txn"),
                },
            );
            encodings.message(
                "found",
                FindCoordinatorResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    node_id: 0x0102_0304,
                    host: "127.0.0.1".into(),
                    port: 0x0506,
                },
            );
            encodings.message(
                "leaderless",
                FindCoordinatorResponse {
                    error_code: ErrorCode::CoordinatorNotAvailable,
                    error_message: Some(text("leaderless")),
                    ..FindCoordinatorResponse::default()
                },
            );
        }
        ApiKey::ReplicaFetch => {
            encodings.message(
                "two_partitions",
                ReplicaFetchRequest {
                    replica_id: 0x0102_0304,
                    max_wait_ms: 0x0506_0708,
                    min_bytes: 0x090a_0b0c,
                    max_bytes: 0x0d0e_0f10,
                    topics: vec![ReplicaFetchTopic {
                        name: "alpha".into(),
                        topic_id: 0x1112_1314_1516_1718,
                        partitions: vec![
                            ReplicaFetchPartition {
                                partition: 1,
                                current_leader_epoch: 0x2122_2324,
                                fetch_offset: 0x3132_3334_3536_3738,
                                last_fetched_epoch: 0x4142_4344,
                                partition_max_bytes: 0x5152_5354,
                            },
                            ReplicaFetchPartition {
                                partition: 2,
                                current_leader_epoch: 0,
                                fetch_offset: 0,
                                last_fetched_epoch: NO_EPOCH,
                                partition_max_bytes: 1,
                            },
                        ],
                    }],
                },
            );
            encodings.message(
                "records_and_divergence",
                ReplicaFetchResponse {
                    error_code: ErrorCode::None,
                    topics: vec![ReplicaFetchTopicResponse {
                        name: "alpha".into(),
                        topic_id: 0x1112_1314_1516_1718,
                        partitions: vec![
                            ReplicaFetchPartitionResponse {
                                partition: 1,
                                error_code: ErrorCode::None,
                                error_message: None,
                                leader_id: 0x0102_0304,
                                leader_epoch: 0x0506_0708,
                                high_watermark: 0x2122_2324_2526_2728,
                                log_start_offset: 0x3132_3334_3536_3738,
                                log_end: 0x4142_4344_4546_4748,
                                diverging_epoch: NO_EPOCH,
                                diverging_end_offset: 0,
                                records: RecordSet::from_bytes(sealed_batch(6)),
                            },
                            ReplicaFetchPartitionResponse {
                                partition: 2,
                                error_code: ErrorCode::None,
                                error_message: None,
                                leader_id: 3,
                                leader_epoch: 7,
                                high_watermark: 10,
                                log_start_offset: 0,
                                log_end: 12,
                                diverging_epoch: 5,
                                diverging_end_offset: 0x5152_5354_5556_5758,
                                records: RecordSet::default(),
                            },
                            ReplicaFetchPartitionResponse {
                                partition: 3,
                                error_code: ErrorCode::FencedLeaderEpoch,
                                error_message: Some(text("fenced")),
                                ..ReplicaFetchPartitionResponse::default()
                            },
                        ],
                    }],
                },
            );
        }
        ApiKey::RaftMessage => {
            encodings.message(
                "two_messages",
                RaftMessageRequest {
                    from: 0x0102_0304,
                    to: 0x0506_0708,
                    cluster_id: Some(text("cluster")),
                    messages: vec![opaque(60), opaque(70)],
                },
            );
            encodings.message(
                "before_cluster_id",
                RaftMessageRequest {
                    from: 1,
                    to: 2,
                    cluster_id: None,
                    messages: vec![],
                },
            );
            encodings.message(
                "refused",
                RaftMessageResponse {
                    error_code: ErrorCode::InvalidRequest,
                    error_message: Some(text("cluster")),
                },
            );
        }
        ApiKey::ClusterPropose => {
            encodings.message(
                "command",
                ClusterProposeRequest {
                    origin: 0x0102_0304,
                    sequence: 0x1112_1314_1516_1718,
                    command: opaque(80),
                    timeout_ms: 0x2122_2324,
                },
            );
            encodings.message(
                "applied",
                ClusterProposeResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    controller_hint: NO_NODE,
                    outcome: opaque(90),
                },
            );
            encodings.message(
                "not_controller",
                ClusterProposeResponse {
                    error_code: ErrorCode::NotController,
                    error_message: Some(text("controller")),
                    controller_hint: 0x3132_3334,
                    outcome: Bytes::new(),
                },
            );
        }
        ApiKey::ElectLeaders => {
            encodings.message(
                "named",
                ElectLeadersRequest {
                    topics: Some(topic_partition_lists()),
                    timeout_ms: 0x0102_0304,
                },
            );
            encodings.message(
                "all",
                ElectLeadersRequest {
                    topics: None,
                    timeout_ms: 5,
                },
            );
            encodings.message(
                "outcomes",
                ElectLeadersResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    topics: partition_outcomes(),
                },
            );
        }
        ApiKey::AlterReassignments => {
            encodings.message(
                "move_and_cancel",
                AlterReassignmentsRequest {
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![
                            ReassignmentPartition {
                                partition: 1,
                                target_replicas: Some(vec![0x0102_0304, 2, 3]),
                            },
                            ReassignmentPartition {
                                partition: 2,
                                target_replicas: None,
                            },
                        ],
                    }],
                    timeout_ms: 0x0a0b_0c0d,
                },
            );
            encodings.message(
                "outcomes",
                AlterReassignmentsResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    topics: partition_outcomes(),
                },
            );
        }
        ApiKey::ListReassignments => {
            encodings.message(
                "named",
                ListReassignmentsRequest {
                    topics: Some(topic_partition_lists()),
                },
            );
            encodings.message("all", ListReassignmentsRequest { topics: None });
            encodings.message(
                "ongoing",
                ListReassignmentsResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![OngoingReassignment {
                            partition: 0x0102_0304,
                            replicas: vec![1, 2, 3, 4],
                            adding: vec![4],
                            removing: vec![1],
                        }],
                    }],
                },
            );
        }
        ApiKey::DecommissionBroker => {
            encodings.message(
                "broker",
                DecommissionBrokerRequest {
                    node_id: 0x0102_0304,
                    timeout_ms: 0x0506_0708,
                },
            );
            encodings.message(
                "unknown",
                DecommissionBrokerResponse {
                    error_code: ErrorCode::BrokerNotAvailable,
                    error_message: Some(text("unknown")),
                },
            );
        }
        ApiKey::WriteTxnMarkers => {
            encodings.message(
                "markers",
                WriteTxnMarkersRequest {
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x090a,
                    coordinator_epoch: 0x0b0c_0d0e,
                    commit: true,
                    topics: vec![TopicPartitionList {
                        name: "alpha".into(),
                        partitions: vec![1, 2],
                    }],
                    groups: vec!["payments".into()],
                },
            );
            encodings.message(
                "answers",
                WriteTxnMarkersResponse {
                    error_code: ErrorCode::None,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![PartitionResult {
                            partition: 1,
                            error_code: ErrorCode::NotLeaderOrFollower,
                        }],
                    }],
                    groups: vec![GroupResult {
                        group_id: "payments".into(),
                        error_code: ErrorCode::NotCoordinator,
                    }],
                },
            );
        }
        ApiKey::VerifyTxn => {
            encodings.message(
                "partitions",
                VerifyTxnRequest {
                    transactional_id: "tx-1".into(),
                    producer_id: 0x0102_0304_0506_0708,
                    producer_epoch: 0x090a,
                    topics: vec![TopicPartitionList {
                        name: "alpha".into(),
                        partitions: vec![3],
                    }],
                    group_id: None,
                },
            );
            encodings.message(
                "group",
                VerifyTxnRequest {
                    transactional_id: "tx-1".into(),
                    producer_id: 7,
                    producer_epoch: 1,
                    topics: Vec::new(),
                    group_id: Some("payments".into()),
                },
            );
            encodings.message(
                "abortable",
                VerifyTxnResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    topics: vec![TopicPartitions {
                        name: "alpha".into(),
                        partitions: vec![PartitionResult {
                            partition: 3,
                            error_code: ErrorCode::TransactionAbortable,
                        }],
                    }],
                },
            );
        }
        ApiKey::SaslHandshake => {
            encodings.message(
                "scram",
                SaslHandshakeRequest {
                    mechanism: "SCRAM-SHA-512".into(),
                },
            );
            encodings.message(
                "unsupported",
                SaslHandshakeResponse {
                    error_code: ErrorCode::UnsupportedSaslMechanism,
                    mechanisms: vec!["PLAIN".into(), "SCRAM-SHA-256".into()],
                },
            );
        }
        ApiKey::SaslAuthenticate => {
            encodings.message(
                "client-first",
                SaslAuthenticateRequest {
                    auth_bytes: Bytes::from_static(b"n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL"),
                },
            );
            encodings.message(
                "failed",
                SaslAuthenticateResponse {
                    error_code: ErrorCode::SaslAuthenticationFailed,
                    error_message: Some("invalid credentials".into()),
                    auth_bytes: Bytes::from_static(b"e=invalid-proof"),
                    session_lifetime_ms: 0,
                },
            );
            encodings.message_at(
                "authenticated",
                1,
                SaslAuthenticateResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    auth_bytes: Bytes::from_static(b"v=rmF9pqV8S7suAoZWja4dJRkFsKQ="),
                    session_lifetime_ms: 0x0102_0304_0506,
                },
            );
        }
        ApiKey::UpsertUser => {
            encodings.message(
                "sha-256",
                UpsertUserRequest {
                    name: "alice".into(),
                    mechanism: "SCRAM-SHA-256".into(),
                    iterations: 0x1000,
                    salt: Bytes::from_static(&[1, 2, 3, 4]),
                    salted_password: Bytes::from_static(&[5, 6, 7, 8, 9]),
                },
            );
            encodings.message(
                "too-few",
                UpsertUserResponse {
                    error_code: ErrorCode::UnacceptableCredential,
                    error_message: Some("Too few iterations".into()),
                },
            );
        }
        ApiKey::DeleteUser => {
            encodings.message(
                "sha-512",
                DeleteUserRequest {
                    name: "alice".into(),
                    mechanism: "SCRAM-SHA-512".into(),
                },
            );
            encodings.message(
                "unknown",
                DeleteUserResponse {
                    error_code: ErrorCode::ResourceNotFound,
                    error_message: None,
                },
            );
        }
        ApiKey::ListUsers => {
            encodings.message("all", ListUsersRequest {});
            encodings.message(
                "two",
                ListUsersResponse {
                    error_code: ErrorCode::None,
                    users: vec![
                        UserListing {
                            name: "alice".into(),
                            credentials: vec![
                                UserCredentialInfo {
                                    mechanism: "SCRAM-SHA-256".into(),
                                    iterations: 4096,
                                },
                                UserCredentialInfo {
                                    mechanism: "SCRAM-SHA-512".into(),
                                    iterations: 8192,
                                },
                            ],
                        },
                        UserListing {
                            name: "bob".into(),
                            credentials: Vec::new(),
                        },
                    ],
                },
            );
        }
        ApiKey::DescribeAcls => {
            encodings.message(
                "match-topic",
                DescribeAclsRequest {
                    filter: AclFilter {
                        resource_type: 2,
                        resource_name: Some("orders".into()),
                        pattern_type: 2,
                        principal: None,
                        host: Some("*".into()),
                        operation: 1,
                        permission: 3,
                    },
                },
            );
            encodings.message(
                "two",
                DescribeAclsResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    bindings: vec![acl_entry(), prefixed_group_deny()],
                },
            );
            encodings.message(
                "refused",
                DescribeAclsResponse {
                    error_code: ErrorCode::ClusterAuthorizationFailed,
                    error_message: Some("Describe on the cluster".into()),
                    bindings: Vec::new(),
                },
            );
        }
        ApiKey::CreateAcls => {
            encodings.message(
                "two",
                CreateAclsRequest {
                    creations: vec![acl_entry(), prefixed_group_deny()],
                },
            );
            encodings.message(
                "one-invalid",
                CreateAclsResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    results: vec![
                        AclCreationResult {
                            error_code: ErrorCode::None,
                            error_message: None,
                        },
                        AclCreationResult {
                            error_code: ErrorCode::InvalidRequest,
                            error_message: Some("host".into()),
                        },
                    ],
                },
            );
        }
        ApiKey::DeleteAcls => {
            encodings.message(
                "two",
                DeleteAclsRequest {
                    filters: vec![
                        AclFilter {
                            resource_type: 3,
                            resource_name: Some("payments".into()),
                            pattern_type: 4,
                            principal: Some("User:bob".into()),
                            host: None,
                            operation: 4,
                            permission: 2,
                        },
                        AclFilter {
                            resource_type: 1,
                            resource_name: None,
                            pattern_type: 1,
                            principal: None,
                            host: None,
                            operation: 1,
                            permission: 1,
                        },
                    ],
                },
            );
            encodings.message(
                "deleted",
                DeleteAclsResponse {
                    error_code: ErrorCode::None,
                    error_message: None,
                    results: vec![
                        AclFilterResult {
                            error_code: ErrorCode::None,
                            error_message: None,
                            deleted: vec![prefixed_group_deny()],
                        },
                        AclFilterResult {
                            error_code: ErrorCode::InvalidRequest,
                            error_message: Some("operation 0".into()),
                            deleted: Vec::new(),
                        },
                    ],
                },
            );
        }
    }
}

/// A literal topic binding that allows alice to read from one host.
fn acl_entry() -> AclEntry {
    AclEntry {
        resource_type: 2,
        resource_name: "orders".into(),
        pattern_type: 3,
        principal: "User:alice".into(),
        host: "10.0.0.7".into(),
        operation: 3,
        permission: 3,
    }
}

/// A prefixed group binding that denies bob every operation from every host.
fn prefixed_group_deny() -> AclEntry {
    AclEntry {
        resource_type: 3,
        resource_name: "pay".into(),
        pattern_type: 4,
        principal: "User:bob".into(),
        host: "*".into(),
        operation: 2,
        permission: 2,
    }
}

fn every_encoding() -> Encodings {
    let mut encodings = Encodings::default();
    for api_key in ApiKey::ALL {
        add_api(&mut encodings, api_key);
    }
    let subscription_bytes = subscription().encode().unwrap();
    assert_eq!(
        ConsumerSubscription::decode(subscription_bytes.clone()).unwrap(),
        subscription()
    );
    encodings.push("ConsumerSubscription".into(), &subscription_bytes);
    let assignment_bytes = assignment().encode().unwrap();
    assert_eq!(
        ConsumerAssignment::decode(assignment_bytes.clone()).unwrap(),
        assignment()
    );
    encodings.push("ConsumerAssignment".into(), &assignment_bytes);
    encodings
}

#[test]
fn every_message_encodes_to_the_recorded_bytes() {
    let actual = every_encoding().render();
    if std::env::var_os("SPATE_RECORD_WIRE_BYTES").is_some() {
        std::fs::write(GOLDEN_PATH, &actual).expect("write the golden file");
        panic!("recorded {GOLDEN_PATH}; run again without SPATE_RECORD_WIRE_BYTES");
    }
    let expected = std::fs::read_to_string(GOLDEN_PATH).expect("the golden file exists");
    let mut expected_lines = expected.lines();
    for line in actual.lines() {
        let name = line.split(' ').next().unwrap();
        let Some(recorded) = expected_lines.next() else {
            panic!("{name} has no recorded bytes; record them (see the file's doc)");
        };
        assert_eq!(line, recorded, "{name} encodes differently than recorded");
    }
    assert_eq!(expected_lines.next(), None, "recorded messages are missing");
}

#[test]
fn every_api_has_both_directions_recorded() {
    let encodings = every_encoding();
    for api_key in ApiKey::ALL {
        let (request, response) = names_of(api_key);
        for name in [request, response] {
            assert!(
                encodings
                    .lines
                    .iter()
                    .any(|(label, _)| label.starts_with(&format!("{name}/"))),
                "{api_key:?} has no recorded {name}"
            );
        }
    }
}

fn names_of(api_key: ApiKey) -> (&'static str, &'static str) {
    fn pair<R: Request>() -> (&'static str, &'static str) {
        (R::NAME, R::Response::NAME)
    }
    match api_key {
        ApiKey::ApiVersions => pair::<ApiVersionsRequest>(),
        ApiKey::Metadata => pair::<MetadataRequest>(),
        ApiKey::CreateTopics => pair::<CreateTopicsRequest>(),
        ApiKey::DeleteTopics => pair::<DeleteTopicsRequest>(),
        ApiKey::ListTopics => pair::<ListTopicsRequest>(),
        ApiKey::DescribeTopic => pair::<DescribeTopicRequest>(),
        ApiKey::AlterTopicConfig => pair::<AlterTopicConfigRequest>(),
        ApiKey::Produce => pair::<ProduceRequest>(),
        ApiKey::Fetch => pair::<FetchRequest>(),
        ApiKey::ListOffsets => pair::<ListOffsetsRequest>(),
        ApiKey::DeleteRecords => pair::<DeleteRecordsRequest>(),
        ApiKey::JoinGroup => pair::<JoinGroupRequest>(),
        ApiKey::SyncGroup => pair::<SyncGroupRequest>(),
        ApiKey::Heartbeat => pair::<HeartbeatRequest>(),
        ApiKey::LeaveGroup => pair::<LeaveGroupRequest>(),
        ApiKey::OffsetCommit => pair::<OffsetCommitRequest>(),
        ApiKey::OffsetFetch => pair::<OffsetFetchRequest>(),
        ApiKey::ListGroups => pair::<ListGroupsRequest>(),
        ApiKey::DescribeGroups => pair::<DescribeGroupsRequest>(),
        ApiKey::DeleteGroups => pair::<DeleteGroupsRequest>(),
        ApiKey::OffsetDelete => pair::<OffsetDeleteRequest>(),
        ApiKey::InitProducerId => pair::<InitProducerIdRequest>(),
        ApiKey::DescribeCluster => pair::<DescribeClusterRequest>(),
        ApiKey::CreatePartitions => pair::<CreatePartitionsRequest>(),
        ApiKey::AddPartitionsToTxn => pair::<AddPartitionsToTxnRequest>(),
        ApiKey::AddOffsetsToTxn => pair::<AddOffsetsToTxnRequest>(),
        ApiKey::EndTxn => pair::<EndTxnRequest>(),
        ApiKey::TxnOffsetCommit => pair::<TxnOffsetCommitRequest>(),
        ApiKey::FindCoordinator => pair::<FindCoordinatorRequest>(),
        ApiKey::ReplicaFetch => pair::<ReplicaFetchRequest>(),
        ApiKey::RaftMessage => pair::<RaftMessageRequest>(),
        ApiKey::ClusterPropose => pair::<ClusterProposeRequest>(),
        ApiKey::ElectLeaders => pair::<ElectLeadersRequest>(),
        ApiKey::AlterReassignments => pair::<AlterReassignmentsRequest>(),
        ApiKey::ListReassignments => pair::<ListReassignmentsRequest>(),
        ApiKey::DecommissionBroker => pair::<DecommissionBrokerRequest>(),
        ApiKey::WriteTxnMarkers => pair::<WriteTxnMarkersRequest>(),
        ApiKey::VerifyTxn => pair::<VerifyTxnRequest>(),
        ApiKey::SaslHandshake => pair::<SaslHandshakeRequest>(),
        ApiKey::SaslAuthenticate => pair::<SaslAuthenticateRequest>(),
        ApiKey::UpsertUser => pair::<UpsertUserRequest>(),
        ApiKey::DeleteUser => pair::<DeleteUserRequest>(),
        ApiKey::ListUsers => pair::<ListUsersRequest>(),
        ApiKey::DescribeAcls => pair::<DescribeAclsRequest>(),
        ApiKey::CreateAcls => pair::<CreateAclsRequest>(),
        ApiKey::DeleteAcls => pair::<DeleteAclsRequest>(),
    }
}

/// Decodes the error response `encode_error_response` gives for `R`'s API and checks it is
/// `R::Response::error_answer(code)`; returns whether it carries the code.
fn error_answer_round_trips<R: Request>(code: ErrorCode) -> bool
where
    R::Response: PartialEq + Debug,
{
    let answer = encode_error_response(R::API_KEY, 31, 0, code).expect("error answers encode");
    let mut frame = BytesMut::new();
    answer
        .chunks
        .iter()
        .for_each(|chunk| frame.extend_from_slice(chunk));
    let frame = spate_protocol::frame::split_response_frame(&mut frame)
        .unwrap()
        .expect("a whole frame");
    assert_eq!(frame.correlation_id, 31);
    let decoded = R::Response::decode(0, frame.body).expect("the answer decodes");
    assert_eq!(decoded, R::Response::error_answer(code));
    answer.carries_error_code
}

#[test]
fn error_answers_carry_the_code_where_the_response_has_a_field_for_it() {
    let code = ErrorCode::CorruptMessage;
    let mut closing = Vec::new();
    for api_key in ApiKey::ALL {
        let carries = match api_key {
            ApiKey::ApiVersions => error_answer_round_trips::<ApiVersionsRequest>(code),
            ApiKey::Metadata => error_answer_round_trips::<MetadataRequest>(code),
            ApiKey::CreateTopics => error_answer_round_trips::<CreateTopicsRequest>(code),
            ApiKey::DeleteTopics => error_answer_round_trips::<DeleteTopicsRequest>(code),
            ApiKey::ListTopics => error_answer_round_trips::<ListTopicsRequest>(code),
            ApiKey::DescribeTopic => error_answer_round_trips::<DescribeTopicRequest>(code),
            ApiKey::AlterTopicConfig => error_answer_round_trips::<AlterTopicConfigRequest>(code),
            ApiKey::Produce => error_answer_round_trips::<ProduceRequest>(code),
            ApiKey::Fetch => error_answer_round_trips::<FetchRequest>(code),
            ApiKey::ListOffsets => error_answer_round_trips::<ListOffsetsRequest>(code),
            ApiKey::DeleteRecords => error_answer_round_trips::<DeleteRecordsRequest>(code),
            ApiKey::JoinGroup => error_answer_round_trips::<JoinGroupRequest>(code),
            ApiKey::SyncGroup => error_answer_round_trips::<SyncGroupRequest>(code),
            ApiKey::Heartbeat => error_answer_round_trips::<HeartbeatRequest>(code),
            ApiKey::LeaveGroup => error_answer_round_trips::<LeaveGroupRequest>(code),
            ApiKey::OffsetCommit => error_answer_round_trips::<OffsetCommitRequest>(code),
            ApiKey::OffsetFetch => error_answer_round_trips::<OffsetFetchRequest>(code),
            ApiKey::ListGroups => error_answer_round_trips::<ListGroupsRequest>(code),
            ApiKey::DescribeGroups => error_answer_round_trips::<DescribeGroupsRequest>(code),
            ApiKey::DeleteGroups => error_answer_round_trips::<DeleteGroupsRequest>(code),
            ApiKey::OffsetDelete => error_answer_round_trips::<OffsetDeleteRequest>(code),
            ApiKey::InitProducerId => error_answer_round_trips::<InitProducerIdRequest>(code),
            ApiKey::DescribeCluster => error_answer_round_trips::<DescribeClusterRequest>(code),
            ApiKey::CreatePartitions => error_answer_round_trips::<CreatePartitionsRequest>(code),
            ApiKey::AddPartitionsToTxn => {
                error_answer_round_trips::<AddPartitionsToTxnRequest>(code)
            }
            ApiKey::AddOffsetsToTxn => error_answer_round_trips::<AddOffsetsToTxnRequest>(code),
            ApiKey::EndTxn => error_answer_round_trips::<EndTxnRequest>(code),
            ApiKey::TxnOffsetCommit => error_answer_round_trips::<TxnOffsetCommitRequest>(code),
            ApiKey::FindCoordinator => error_answer_round_trips::<FindCoordinatorRequest>(code),
            ApiKey::ReplicaFetch => error_answer_round_trips::<ReplicaFetchRequest>(code),
            ApiKey::RaftMessage => error_answer_round_trips::<RaftMessageRequest>(code),
            ApiKey::ClusterPropose => error_answer_round_trips::<ClusterProposeRequest>(code),
            ApiKey::ElectLeaders => error_answer_round_trips::<ElectLeadersRequest>(code),
            ApiKey::AlterReassignments => {
                error_answer_round_trips::<AlterReassignmentsRequest>(code)
            }
            ApiKey::ListReassignments => error_answer_round_trips::<ListReassignmentsRequest>(code),
            ApiKey::DecommissionBroker => {
                error_answer_round_trips::<DecommissionBrokerRequest>(code)
            }
            ApiKey::WriteTxnMarkers => error_answer_round_trips::<WriteTxnMarkersRequest>(code),
            ApiKey::VerifyTxn => error_answer_round_trips::<VerifyTxnRequest>(code),
            ApiKey::SaslHandshake => error_answer_round_trips::<SaslHandshakeRequest>(code),
            ApiKey::SaslAuthenticate => error_answer_round_trips::<SaslAuthenticateRequest>(code),
            ApiKey::UpsertUser => error_answer_round_trips::<UpsertUserRequest>(code),
            ApiKey::DeleteUser => error_answer_round_trips::<DeleteUserRequest>(code),
            ApiKey::ListUsers => error_answer_round_trips::<ListUsersRequest>(code),
            ApiKey::DescribeAcls => error_answer_round_trips::<DescribeAclsRequest>(code),
            ApiKey::CreateAcls => error_answer_round_trips::<CreateAclsRequest>(code),
            ApiKey::DeleteAcls => error_answer_round_trips::<DeleteAclsRequest>(code),
        };
        if !carries {
            closing.push(api_key);
        }
    }
    // Responses with only per-item codes answer empty, and the connection closes after them.
    assert_eq!(
        closing,
        [
            ApiKey::Metadata,
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::Produce,
            ApiKey::ListOffsets,
            ApiKey::DeleteRecords,
        ]
    );
    assert_eq!(
        DescribeTopicResponse::error_answer(code),
        DescribeTopicResponse {
            error_code: code,
            error_message: Some(code.to_string()),
            ..DescribeTopicResponse::default()
        }
    );
    assert_eq!(
        JoinGroupResponse::error_answer(code),
        JoinGroupResponse::error(code, "")
    );
    assert_eq!(
        JoinGroupResponse::error_answer(code).generation_id,
        GENERATION_NONE
    );
    assert_eq!(
        InitProducerIdResponse::error_answer(code),
        InitProducerIdResponse {
            error_code: code,
            ..InitProducerIdResponse::default()
        }
    );
    assert_eq!(
        CreatePartitionsResponse::error_answer(code),
        CreatePartitionsResponse {
            error_code: code,
            error_message: None,
        }
    );
    assert_eq!(
        MetadataResponse::error_answer(code),
        MetadataResponse::default()
    );
    // Answers that name a broker name none.
    assert_eq!(
        FindCoordinatorResponse::error_answer(code),
        FindCoordinatorResponse {
            error_code: code,
            error_message: Some(code.to_string()),
            node_id: NO_NODE,
            host: String::new(),
            port: 0,
        }
    );
    assert_eq!(
        ClusterProposeResponse::error_answer(code).controller_hint,
        NO_NODE
    );
}
