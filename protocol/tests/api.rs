//! Message properties: every request and response round-trips through encode → frame → decode
//! (copied and chunked), arbitrary bytes never panic any decoder, and limits, versions and
//! zero-copy slicing behave as documented.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_protocol::api::config::{name, UNLIMITED};
use spate_protocol::api::*;
use spate_protocol::batch::{BatchBuilder, BatchIter, BatchOptions, NO_HEADERS};
use spate_protocol::constants::{BATCH_BYTES_MAX, TOPICS_PER_MESSAGE_MAX};
use spate_protocol::frame::{split_request_frame, split_response_frame};
use spate_protocol::{ErrorCode, WireError};

// ---- strategies -------------------------------------------------------------------------

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{0,24}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,32}"
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn config_entry() -> impl Strategy<Value = ConfigEntry> {
    ("[a-z.]{0,20}", text()).prop_map(|(name, value)| ConfigEntry { name, value })
}

fn topic_result() -> impl Strategy<Value = TopicResult> {
    (topic_name(), error_code(), proptest::option::of(text())).prop_map(
        |(name, error_code, error_message)| TopicResult {
            name,
            error_code,
            error_message,
        },
    )
}

fn partition_metadata() -> impl Strategy<Value = PartitionMetadata> {
    (
        any::<u32>(),
        error_code(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
        proptest::option::of("[a-z0-9 /.:]{0,40}"),
    )
        .prop_map(
            |(partition, error_code, shard_id, log_start_offset, high_watermark, error_message)| {
                PartitionMetadata {
                    partition,
                    error_code,
                    shard_id,
                    log_start_offset,
                    high_watermark,
                    error_message,
                    ..PartitionMetadata::default()
                }
            },
        )
}

fn node_ids() -> impl Strategy<Value = Vec<i32>> {
    proptest::collection::vec(-1i32..100, 0..5)
}

fn partition_metadata_v1() -> impl Strategy<Value = PartitionMetadata> {
    (
        partition_metadata(),
        any::<i32>(),
        any::<i32>(),
        node_ids(),
        node_ids(),
    )
        .prop_map(
            |(partition, leader_id, leader_epoch, replicas, isr)| PartitionMetadata {
                leader_id,
                leader_epoch,
                replicas,
                isr,
                ..partition
            },
        )
}

fn broker_metadata() -> impl Strategy<Value = BrokerMetadata> {
    (
        any::<i32>(),
        "[a-z0-9.-]{0,30}",
        any::<u16>(),
        proptest::option::of("[a-z0-9-]{0,10}"),
    )
        .prop_map(|(node_id, host, port, rack)| BrokerMetadata {
            node_id,
            host,
            port,
            rack,
        })
}

fn topic_partition_list() -> impl Strategy<Value = TopicPartitionList> {
    (topic_name(), proptest::collection::vec(any::<u32>(), 0..4))
        .prop_map(|(name, partitions)| TopicPartitionList { name, partitions })
}

fn partition_outcome() -> impl Strategy<Value = PartitionOutcome> {
    (any::<u32>(), error_code(), proptest::option::of(text())).prop_map(
        |(partition, error_code, error_message)| PartitionOutcome {
            partition,
            error_code,
            error_message,
        },
    )
}

fn topics_of<P: Debug + Clone>(
    partition: impl Strategy<Value = P>,
) -> impl Strategy<Value = Vec<TopicPartitions<P>>> {
    proptest::collection::vec(
        (topic_name(), proptest::collection::vec(partition, 0..4))
            .prop_map(|(name, partitions)| TopicPartitions { name, partitions }),
        0..4,
    )
}

fn sealed_batch() -> impl Strategy<Value = Bytes> {
    (1usize..4, 0usize..700).prop_map(|(record_count, value_bytes)| {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for index in 0..record_count {
            let value = vec![index as u8; value_bytes];
            builder
                .append(Some(b"k"), Some(&value), NO_HEADERS, index as i64)
                .unwrap();
        }
        builder.seal().unwrap().freeze()
    })
}

fn offset_spec() -> impl Strategy<Value = OffsetSpec> {
    prop_oneof![
        Just(OffsetSpec::Earliest),
        Just(OffsetSpec::Latest),
        (0i64..i64::MAX).prop_map(OffsetSpec::Timestamp),
    ]
}

// ---- round trip helper ------------------------------------------------------------------

fn assert_request_round_trips<R>(request: &R) -> Result<(), TestCaseError>
where
    R: Request + PartialEq + Debug,
{
    let mut buffer = BytesMut::new();
    encode_request(&mut buffer, 17, "client", 0, request).expect("encodes");
    let chunks = encode_request_chunks(17, "client", 0, request).expect("encodes as chunks");
    let joined: Vec<u8> = chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    prop_assert_eq!(
        &joined[..],
        &buffer[..],
        "chunked and copied encodings agree"
    );

    let frame = split_request_frame(&mut buffer)
        .unwrap()
        .expect("whole frame");
    prop_assert_eq!(frame.api_key, R::API_KEY.to_u16());
    prop_assert_eq!(frame.correlation_id, 17);
    let decoded = R::decode(frame.api_version, frame.body).expect("decodes");
    prop_assert_eq!(&decoded, request);
    Ok(())
}

fn assert_response_round_trips<M>(response: &M) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let mut buffer = BytesMut::new();
    encode_response(&mut buffer, 23, 0, response).expect("encodes");
    let chunks = encode_response_chunks(23, 0, response).expect("encodes as chunks");
    let joined: Vec<u8> = chunks
        .iter()
        .flat_map(|chunk| chunk.iter().copied())
        .collect();
    prop_assert_eq!(
        &joined[..],
        &buffer[..],
        "chunked and copied encodings agree"
    );

    let frame = split_response_frame(&mut buffer)
        .unwrap()
        .expect("whole frame");
    prop_assert_eq!(frame.correlation_id, 23);
    let decoded = M::decode(0, frame.body).expect("decodes");
    prop_assert_eq!(&decoded, response);
    Ok(())
}

/// Encodes `message` at `version`, decodes it back at that version and compares.
fn assert_round_trips_at<M>(version: u16, message: &M) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let mut body = BytesMut::new();
    message.encode(version, &mut body).expect("encodes");
    let decoded = M::decode(version, body.freeze()).expect("decodes");
    prop_assert_eq!(&decoded, message);
    Ok(())
}

/// Decodes `bytes` as every message type; only a panic can fail this.
fn decode_everything(bytes: &Bytes) {
    macro_rules! decode_all {
        ($($type:ty),* $(,)?) => {
            $( let _ = <$type>::decode(0, bytes.clone()); )*
        };
    }
    decode_all!(
        ApiVersionsRequest,
        ApiVersionsResponse,
        MetadataRequest,
        MetadataResponse,
        CreateTopicsRequest,
        CreateTopicsResponse,
        DeleteTopicsRequest,
        DeleteTopicsResponse,
        ListTopicsRequest,
        ListTopicsResponse,
        DescribeTopicRequest,
        DescribeTopicResponse,
        AlterTopicConfigRequest,
        AlterTopicConfigResponse,
        CreatePartitionsRequest,
        CreatePartitionsResponse,
        ProduceRequest,
        ProduceResponse,
        FetchRequest,
        FetchResponse,
        ListOffsetsRequest,
        ListOffsetsResponse,
        DeleteRecordsRequest,
        DeleteRecordsResponse,
        FindCoordinatorRequest,
        FindCoordinatorResponse,
        ReplicaFetchRequest,
        ReplicaFetchResponse,
        RaftMessageRequest,
        RaftMessageResponse,
        ClusterProposeRequest,
        ClusterProposeResponse,
        ElectLeadersRequest,
        ElectLeadersResponse,
        AlterReassignmentsRequest,
        AlterReassignmentsResponse,
        ListReassignmentsRequest,
        ListReassignmentsResponse,
        DecommissionBrokerRequest,
        DecommissionBrokerResponse,
    );
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #[test]
    fn api_versions_round_trip(
        ranges in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u16>()), 0..12),
        error_code in error_code(),
    ) {
        let ranges: Vec<ApiVersionRange> = ranges
            .into_iter()
            .map(|(api_key, min_version, max_version)| ApiVersionRange { api_key, min_version, max_version })
            .collect();
        assert_request_round_trips(&ApiVersionsRequest { client_versions: ranges.clone() })?;
        assert_response_round_trips(&ApiVersionsResponse { error_code, broker_versions: ranges })?;
    }

    #[test]
    fn metadata_round_trips(
        topics in proptest::option::of(proptest::collection::vec(topic_name(), 0..5)),
        metadata in proptest::collection::vec(
            (error_code(), topic_name(), proptest::collection::vec(partition_metadata(), 0..4)),
            0..4,
        ),
    ) {
        assert_request_round_trips(&MetadataRequest { topics })?;
        let topics = metadata
            .into_iter()
            .map(|(error_code, name, partitions)| TopicMetadata { error_code, name, partitions })
            .collect();
        assert_response_round_trips(&MetadataResponse { topics, ..MetadataResponse::default() })?;
    }

    #[test]
    fn metadata_version_1_round_trips(
        topics in proptest::collection::vec(
            (error_code(), topic_name(), proptest::collection::vec(partition_metadata_v1(), 0..4)),
            0..4,
        ),
        cluster_id in proptest::option::of("[A-Za-z0-9_-]{0,22}"),
        controller_id in any::<i32>(),
        brokers in proptest::collection::vec(broker_metadata(), 0..4),
    ) {
        let topics = topics
            .into_iter()
            .map(|(error_code, name, partitions)| TopicMetadata { error_code, name, partitions })
            .collect();
        assert_round_trips_at(1, &MetadataResponse { topics, cluster_id, controller_id, brokers })?;
    }

    #[test]
    fn cluster_messages_round_trip(
        node_id in any::<i32>(),
        cluster_id in proptest::option::of("[A-Za-z0-9_-]{0,22}"),
        brokers in proptest::collection::vec(broker_metadata(), 0..4),
        key in text(),
        transaction in any::<bool>(),
        outcome in (error_code(), proptest::option::of(text()), any::<i32>(), "[a-z0-9.]{0,20}", any::<u16>()),
        raft in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..4),
        propose in (any::<u64>(), proptest::collection::vec(any::<u8>(), 0..40), any::<u32>()),
        lists in proptest::option::of(proptest::collection::vec(topic_partition_list(), 0..3)),
        outcomes in topics_of(partition_outcome()),
        targets in topics_of((any::<u32>(), proptest::option::of(node_ids())).prop_map(
            |(partition, target_replicas)| ReassignmentPartition { partition, target_replicas },
        )),
        ongoing in topics_of((any::<u32>(), node_ids(), node_ids(), node_ids()).prop_map(
            |(partition, replicas, adding, removing)| OngoingReassignment { partition, replicas, adding, removing },
        )),
    ) {
        assert_round_trips_at(1, &DescribeClusterResponse {
            node_id,
            cluster_id: cluster_id.clone(),
            controller_id: node_id,
            brokers,
            ..DescribeClusterResponse::default()
        })?;
        let key_type = if transaction { CoordinatorType::Transaction } else { CoordinatorType::Group };
        assert_request_round_trips(&FindCoordinatorRequest { key_type, key })?;
        let (error_code, error_message, node_id, host, port) = outcome;
        assert_response_round_trips(&FindCoordinatorResponse { error_code, error_message: error_message.clone(), node_id, host, port })?;
        let messages = raft.into_iter().map(Bytes::from).collect();
        assert_request_round_trips(&RaftMessageRequest { from: node_id, to: 2, cluster_id, messages })?;
        assert_response_round_trips(&RaftMessageResponse { error_code, error_message: error_message.clone() })?;
        let (sequence, command, timeout_ms) = propose;
        assert_request_round_trips(&ClusterProposeRequest { origin: node_id, sequence, command: Bytes::from(command.clone()), timeout_ms })?;
        assert_response_round_trips(&ClusterProposeResponse { error_code, error_message: error_message.clone(), controller_hint: node_id, outcome: Bytes::from(command) })?;
        assert_request_round_trips(&ElectLeadersRequest { topics: lists.clone(), timeout_ms })?;
        assert_response_round_trips(&ElectLeadersResponse { error_code, error_message: error_message.clone(), topics: outcomes.clone() })?;
        assert_request_round_trips(&AlterReassignmentsRequest { topics: targets, timeout_ms })?;
        assert_response_round_trips(&AlterReassignmentsResponse { error_code, error_message: error_message.clone(), topics: outcomes })?;
        assert_request_round_trips(&ListReassignmentsRequest { topics: lists })?;
        assert_response_round_trips(&ListReassignmentsResponse { error_code, error_message: error_message.clone(), topics: ongoing })?;
        assert_request_round_trips(&DecommissionBrokerRequest { node_id, timeout_ms })?;
        assert_response_round_trips(&DecommissionBrokerResponse { error_code, error_message })?;
    }

    #[test]
    fn replica_fetch_round_trips(
        limits in (any::<i32>(), any::<u32>(), any::<u32>(), any::<u32>()),
        partitions in proptest::collection::vec(
            (any::<u32>(), any::<i32>(), any::<u64>(), any::<i32>(), any::<u32>()).prop_map(
                |(partition, current_leader_epoch, fetch_offset, last_fetched_epoch, partition_max_bytes)| {
                    ReplicaFetchPartition { partition, current_leader_epoch, fetch_offset, last_fetched_epoch, partition_max_bytes }
                },
            ),
            0..4,
        ),
        answers in proptest::collection::vec(
            (any::<u32>(), error_code(), any::<(i32, i32, u64, u64, u64, i32, u64)>(), proptest::collection::vec(sealed_batch(), 0..3)),
            0..4,
        ),
        topic_id in any::<u64>(),
    ) {
        let (replica_id, max_wait_ms, min_bytes, max_bytes) = limits;
        let topics = vec![ReplicaFetchTopic { name: "t".into(), topic_id, partitions }];
        assert_request_round_trips(&ReplicaFetchRequest { replica_id, max_wait_ms, min_bytes, max_bytes, topics })?;
        let partitions = answers
            .into_iter()
            .map(|(partition, error_code, numbers, batches)| {
                let (leader_id, leader_epoch, high_watermark, log_start_offset, log_end, diverging_epoch, diverging_end_offset) = numbers;
                ReplicaFetchPartitionResponse {
                    partition,
                    error_code,
                    error_message: None,
                    leader_id,
                    leader_epoch,
                    high_watermark,
                    log_start_offset,
                    log_end,
                    diverging_epoch,
                    diverging_end_offset,
                    records: RecordSet::from_chunks(batches),
                }
            })
            .collect();
        let topics = vec![ReplicaFetchTopicResponse { name: "t".into(), topic_id, partitions }];
        assert_response_round_trips(&ReplicaFetchResponse { error_code: ErrorCode::None, topics })?;
    }

    #[test]
    fn topic_admin_messages_round_trip(
        creates in proptest::collection::vec(
            (topic_name(), any::<u32>(), proptest::collection::vec(config_entry(), 0..4)),
            0..4,
        ),
        timeout_ms in any::<u32>(),
        results in proptest::collection::vec(topic_result(), 0..4),
        names in proptest::collection::vec(topic_name(), 0..4),
        listings in proptest::collection::vec((topic_name(), any::<u32>()), 0..4),
        describe in (error_code(), proptest::option::of(text()), topic_name(),
            proptest::collection::vec(config_entry(), 0..4),
            proptest::collection::vec(partition_metadata(), 0..4)),
        alter in (topic_name(), proptest::collection::vec(config_entry(), 0..4),
            proptest::collection::vec("[a-z.]{0,20}", 0..4)),
        alter_result in (error_code(), proptest::option::of(text())),
    ) {
        let topics = creates
            .into_iter()
            .map(|(name, partition_count, configs)| CreateTopic {
                name,
                partition_count,
                configs,
                replication_factor: 0,
            })
            .collect();
        assert_request_round_trips(&CreateTopicsRequest { topics, timeout_ms })?;
        assert_response_round_trips(&CreateTopicsResponse { results: results.clone() })?;
        assert_request_round_trips(&DeleteTopicsRequest { names: names.clone(), timeout_ms })?;
        assert_response_round_trips(&DeleteTopicsResponse { results })?;
        assert_request_round_trips(&ListTopicsRequest {})?;
        let topics = listings
            .into_iter()
            .map(|(name, partition_count)| TopicListing { name, partition_count })
            .collect();
        assert_response_round_trips(&ListTopicsResponse { error_code: describe.0, topics })?;
        assert_request_round_trips(&DescribeTopicRequest { name: describe.2.clone() })?;
        let (error_code, error_message, name, configs, partitions) = describe;
        assert_response_round_trips(&DescribeTopicResponse { error_code, error_message, name, configs, partitions })?;
        let (name, set, reset) = alter;
        assert_request_round_trips(&AlterTopicConfigRequest { name, set, reset })?;
        let (error_code, error_message) = alter_result;
        assert_response_round_trips(&AlterTopicConfigResponse { error_code, error_message })?;
    }

    #[test]
    fn describe_cluster_round_trips(
        error_code in error_code(),
        broker_version in text(),
        listeners in proptest::collection::vec("[a-z0-9.:]{0,24}", 0..4),
        shard_count in any::<u32>(),
        topic_defaults in proptest::collection::vec(config_entry(), 0..8),
    ) {
        assert_request_round_trips(&DescribeClusterRequest {})?;
        assert_response_round_trips(&DescribeClusterResponse {
            error_code,
            broker_version,
            listeners,
            shard_count,
            topic_defaults,
            ..DescribeClusterResponse::default()
        })?;
    }

    #[test]
    fn create_partitions_round_trips(
        name in "[a-z]{1,40}",
        partition_count in any::<u32>(),
        error_code in error_code(),
        error_message in proptest::option::of(text()),
    ) {
        assert_request_round_trips(&CreatePartitionsRequest { name, partition_count })?;
        assert_response_round_trips(&CreatePartitionsResponse { error_code, error_message })?;
    }

    #[test]
    fn produce_round_trips(
        acks in proptest::sample::select(vec![Acks::None, Acks::Leader, Acks::All]),
        timeout_ms in any::<u32>(),
        topics in topics_of(
            (any::<u32>(), proptest::collection::vec(sealed_batch(), 0..3))
                .prop_map(|(partition, batches)| ProducePartition { partition, batches }),
        ),
        responses in topics_of(
            (any::<u32>(), error_code(), any::<u64>(), any::<i64>(), any::<u64>()).prop_map(
                |(partition, error_code, base_offset, log_append_time_ms, log_start_offset)| {
                    ProducePartitionResponse { partition, error_code, base_offset, log_append_time_ms, log_start_offset, ..ProducePartitionResponse::default() }
                },
            ),
        ),
    ) {
        assert_request_round_trips(&ProduceRequest { acks, timeout_ms, topics, transactional_id: None })?;
        assert_response_round_trips(&ProduceResponse { topics: responses })?;
    }

    #[test]
    fn fetch_round_trips(
        limits in (any::<u32>(), any::<u32>(), any::<u32>()),
        topics in topics_of(
            (any::<u32>(), any::<u64>(), any::<u32>()).prop_map(
                |(partition, fetch_offset, partition_max_bytes)| FetchPartition { partition, fetch_offset, partition_max_bytes },
            ),
        ),
        error_code in error_code(),
        responses in topics_of(
            (any::<u32>(), error_code(), any::<u64>(), any::<u64>(), proptest::collection::vec(sealed_batch(), 0..3))
                .prop_map(|(partition, error_code, high_watermark, log_start_offset, batches)| {
                    FetchPartitionResponse {
                        partition, error_code, high_watermark, log_start_offset,
                        records: RecordSet::from_chunks(batches),
                        ..FetchPartitionResponse::default()
                    }
                }),
        ),
    ) {
        let (max_wait_ms, min_bytes, max_bytes) = limits;
        assert_request_round_trips(&FetchRequest { max_wait_ms, min_bytes, max_bytes, topics, ..FetchRequest::default() })?;
        assert_response_round_trips(&FetchResponse { error_code, topics: responses })?;
    }

    #[test]
    fn list_offsets_and_delete_records_round_trip(
        requests in topics_of(
            (any::<u32>(), offset_spec()).prop_map(|(partition, spec)| ListOffsetsPartition { partition, spec }),
        ),
        responses in topics_of(
            (any::<u32>(), error_code(), proptest::option::of(any::<u64>()), any::<i64>()).prop_map(
                |(partition, error_code, offset, timestamp)| ListOffsetsPartitionResponse { partition, error_code, offset, timestamp },
            ),
        ),
        timeout_ms in any::<u32>(),
        deletes in topics_of(
            (any::<u32>(), any::<u64>()).prop_map(|(partition, before_offset)| DeleteRecordsPartition { partition, before_offset }),
        ),
        deleted in topics_of(
            (any::<u32>(), error_code(), any::<u64>()).prop_map(
                |(partition, error_code, log_start_offset)| DeleteRecordsPartitionResponse { partition, error_code, log_start_offset },
            ),
        ),
    ) {
        assert_request_round_trips(&ListOffsetsRequest { topics: requests, ..ListOffsetsRequest::default() })?;
        assert_response_round_trips(&ListOffsetsResponse { topics: responses })?;
        assert_request_round_trips(&DeleteRecordsRequest { timeout_ms, topics: deletes })?;
        assert_response_round_trips(&DeleteRecordsResponse { topics: deleted })?;
    }

    #[test]
    fn arbitrary_bytes_never_panic_any_message_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        decode_everything(&Bytes::from(bytes));
    }

    #[test]
    fn mutated_valid_messages_never_panic_any_decoder(
        produce in topics_of(
            (any::<u32>(), proptest::collection::vec(sealed_batch(), 0..2))
                .prop_map(|(partition, batches)| ProducePartition { partition, batches }),
        ),
        creates in proptest::collection::vec(
            (topic_name(), any::<u32>(), proptest::collection::vec(config_entry(), 0..3))
                .prop_map(|(name, partition_count, configs)| CreateTopic {
                    name,
                    partition_count,
                    configs,
                    replication_factor: 0,
                }),
            0..3,
        ),
        describe in (proptest::option::of(text()), proptest::collection::vec(partition_metadata(), 0..3)),
        position_seed in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        // Valid bodies reach deeper decoder paths than random bytes do.
        let mut bodies = Vec::new();
        let mut body = BytesMut::new();
        ProduceRequest { acks: Acks::All, timeout_ms: 1, topics: produce, transactional_id: None }.encode(0, &mut body).unwrap();
        bodies.push(body);
        let mut body = BytesMut::new();
        CreateTopicsRequest { topics: creates, timeout_ms: 1 }.encode(0, &mut body).unwrap();
        bodies.push(body);
        let mut body = BytesMut::new();
        let (error_message, partitions) = describe;
        DescribeTopicResponse { error_message, partitions, ..DescribeTopicResponse::default() }
            .encode(0, &mut body)
            .unwrap();
        bodies.push(body);
        for mut body in bodies {
            let position = position_seed.index(body.len());
            body[position] = replacement;
            decode_everything(&body.freeze());
        }
    }
}

// ---- examples -----------------------------------------------------------------------------

#[test]
fn produce_decoding_slices_batches_out_of_the_body_without_copying() {
    let batch = BatchBuilder::new(BatchOptions::default());
    let mut batch = batch;
    batch
        .append(Some(b"k"), Some(&[9u8; 100]), NO_HEADERS, 0)
        .unwrap();
    let batch = batch.seal().unwrap().freeze();
    let request = ProduceRequest {
        acks: Acks::Leader,
        timeout_ms: 1000,
        topics: vec![TopicPartitions {
            name: "events".to_owned(),
            partitions: vec![ProducePartition {
                partition: 3,
                batches: vec![batch.clone(), batch.clone()],
            }],
        }],
        transactional_id: None,
    };
    let mut body = BytesMut::new();
    request.encode(0, &mut body).unwrap();
    let body = body.freeze();
    let decoded = ProduceRequest::decode(0, body.clone()).unwrap();
    let body_range = body.as_ptr_range();
    for decoded_batch in &decoded.topics[0].partitions[0].batches {
        assert_eq!(decoded_batch, &batch);
        assert!(
            body_range.contains(&decoded_batch.as_ptr()),
            "batch shares the body"
        );
    }
}

#[test]
fn fetch_response_chunks_share_large_batches_with_storage_buffers() {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder
        .append(None, Some(&[1u8; 4096]), NO_HEADERS, 0)
        .unwrap();
    let stored = builder.seal().unwrap().freeze();
    let response = FetchResponse {
        error_code: ErrorCode::None,
        topics: vec![TopicPartitions {
            name: "events".to_owned(),
            partitions: vec![FetchPartitionResponse {
                partition: 0,
                error_code: ErrorCode::None,
                high_watermark: 1,
                log_start_offset: 0,
                records: RecordSet::from_chunks(vec![stored.clone()]),
                ..FetchPartitionResponse::default()
            }],
        }],
    };
    let chunks = encode_response_chunks(1, 0, &response).unwrap();
    assert!(
        chunks
            .iter()
            .any(|chunk| chunk.as_ptr() == stored.as_ptr() && chunk.len() == stored.len()),
        "the stored batch is sent as its own chunk, not copied"
    );
    let mut copied = BytesMut::new();
    encode_response(&mut copied, 1, 0, &response).unwrap();
    let frame = split_response_frame(&mut copied).unwrap().unwrap();
    let decoded = FetchResponse::decode(0, frame.body).unwrap();
    let records = decoded.topics[0].partitions[0].records.to_bytes();
    let batches: Vec<_> = BatchIter::new(&records, BATCH_BYTES_MAX).collect();
    assert_eq!(batches.len(), 1);
    assert_eq!(batches[0].as_ref().unwrap().as_bytes(), &stored[..]);
}

#[test]
fn produce_encoding_refuses_bytes_that_are_not_one_whole_batch() {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder.append(None, Some(b"v"), NO_HEADERS, 0).unwrap();
    let batch = builder.seal().unwrap();
    let mut two_batches = batch.clone();
    two_batches.extend_from_slice(&batch);
    for bytes in [two_batches.freeze(), Bytes::from_static(&[0u8; 10])] {
        let request = ProduceRequest {
            topics: vec![TopicPartitions {
                name: "t".to_owned(),
                partitions: vec![ProducePartition {
                    partition: 0,
                    batches: vec![bytes],
                }],
            }],
            ..ProduceRequest::default()
        };
        let mut body = BytesMut::new();
        assert!(request.encode(0, &mut body).is_err());
    }
}

#[test]
fn produce_decoding_keeps_a_batch_beyond_the_limit_for_the_broker_to_refuse() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&(-1i16).to_le_bytes());
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // one topic
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(b"t");
    body.extend_from_slice(&1u32.to_le_bytes()); // one partition
    body.extend_from_slice(&0u32.to_le_bytes());
    body.extend_from_slice(&1u32.to_le_bytes()); // one batch
    let oversized = BATCH_BYTES_MAX + 1;
    let mut batch = vec![0u8; oversized];
    batch[16..20].copy_from_slice(&(oversized as u32).to_le_bytes());
    batch[20] = spate_protocol::batch::BATCH_MAGIC;
    body.extend_from_slice(&batch);
    let request = ProduceRequest::decode(0, body.clone().freeze()).expect("frames still decode");
    let decoded = &request.topics[0].partitions[0].batches[0];
    assert_eq!(decoded.len(), oversized);
    assert!(matches!(
        spate_protocol::batch::BatchView::validate(decoded, BATCH_BYTES_MAX),
        Err(spate_protocol::BatchError::TooLarge { .. })
    ));
    // A length past the end of the body is still a framing error.
    body.truncate(body.len() - 1);
    assert!(ProduceRequest::decode(0, body.freeze()).is_err());
}

#[test]
fn huge_counts_fail_before_allocating() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&u32::MAX.to_le_bytes());
    assert_eq!(
        MetadataResponse::decode(0, body.clone().freeze()).unwrap_err(),
        WireError::TooMany {
            field: "topics",
            count: u32::MAX as usize,
            limit: TOPICS_PER_MESSAGE_MAX
        }
    );
    // Within the limit but more than the bytes left could hold.
    let mut body = BytesMut::new();
    body.extend_from_slice(&(TOPICS_PER_MESSAGE_MAX as u32).to_le_bytes());
    assert!(matches!(
        MetadataResponse::decode(0, body.freeze()).unwrap_err(),
        WireError::Truncated {
            field: "topics",
            ..
        }
    ));
}

#[test]
fn unsupported_versions_are_refused_on_both_sides() {
    let request = ListTopicsRequest {};
    let mut body = BytesMut::new();
    assert_eq!(
        request.encode(1, &mut body).unwrap_err(),
        WireError::UnsupportedVersion {
            api_key: ApiKey::ListTopics.to_u16(),
            api_version: 1
        }
    );
    assert_eq!(
        ListTopicsRequest::decode(1, Bytes::new()).unwrap_err(),
        WireError::UnsupportedVersion {
            api_key: ApiKey::ListTopics.to_u16(),
            api_version: 1
        }
    );
}

#[test]
fn trailing_bytes_after_a_message_are_rejected() {
    let mut body = BytesMut::new();
    DescribeTopicRequest {
        name: "t".to_owned(),
    }
    .encode(0, &mut body)
    .unwrap();
    body.extend_from_slice(&[0]);
    assert_eq!(
        DescribeTopicRequest::decode(0, body.freeze()).unwrap_err(),
        WireError::TrailingBytes {
            message: "DescribeTopicRequest",
            count: 1
        }
    );
}

#[test]
fn invalid_acks_and_offset_specs_are_rejected() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&2i16.to_le_bytes());
    body.extend_from_slice(&[0; 8]);
    assert_eq!(
        ProduceRequest::decode(0, body.freeze()).unwrap_err(),
        WireError::InvalidValue {
            field: "acks",
            value: 2
        }
    );
    let request = ListOffsetsRequest {
        topics: vec![TopicPartitions {
            name: "t".to_owned(),
            partitions: vec![ListOffsetsPartition {
                partition: 0,
                spec: OffsetSpec::Timestamp(-5),
            }],
        }],
        ..ListOffsetsRequest::default()
    };
    assert!(request.encode(0, &mut BytesMut::new()).is_err());
    assert_eq!(OffsetSpec::from_wire(-3), None);
    assert_eq!(OffsetSpec::from_wire(-2), Some(OffsetSpec::Earliest));
    assert_eq!(OffsetSpec::from_wire(-1), Some(OffsetSpec::Latest));
}

#[test]
fn encoding_refuses_what_the_decoder_would_reject() {
    let request = DescribeTopicRequest {
        name: "n".repeat(250),
    };
    assert!(matches!(
        request.encode(0, &mut BytesMut::new()).unwrap_err(),
        WireError::TooLong {
            field: "topic_name",
            length: 250,
            limit: 249
        }
    ));
}

#[test]
fn a_create_partitions_request_cut_short_or_with_a_bad_name_is_a_clear_error() {
    let request = CreatePartitionsRequest {
        name: "orders".to_string(),
        partition_count: 5,
    };
    let mut body = BytesMut::new();
    request.encode(0, &mut body).unwrap();
    let whole = body.freeze();
    let cut = whole.slice(..whole.len() - 1);
    assert!(CreatePartitionsRequest::decode(0, cut).is_err());
    let mut bad_name = BytesMut::new();
    bad_name.extend_from_slice(&2u16.to_le_bytes());
    bad_name.extend_from_slice(&[0xff, 0xfe]);
    bad_name.extend_from_slice(&5u32.to_le_bytes());
    assert!(CreatePartitionsRequest::decode(0, bad_name.freeze()).is_err());
    let too_long = CreatePartitionsRequest {
        name: "n".repeat(250),
        partition_count: 5,
    };
    assert!(matches!(
        too_long.encode(0, &mut BytesMut::new()).unwrap_err(),
        WireError::TooLong {
            field: "topic_name",
            ..
        }
    ));
}

#[test]
fn unknown_error_codes_from_newer_peers_decode_as_unknown() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&999u16.to_le_bytes());
    body.extend_from_slice(&0u8.to_le_bytes());
    let response = AlterTopicConfigResponse::decode(0, body.freeze()).unwrap();
    assert_eq!(response.error_code, ErrorCode::Unknown);
}

#[test]
fn version_negotiation_picks_the_highest_common_version() {
    let range = |api_key: ApiKey, min_version, max_version| ApiVersionRange {
        api_key: api_key.to_u16(),
        min_version,
        max_version,
    };
    let ours = [range(ApiKey::Produce, 0, 3), range(ApiKey::Fetch, 2, 4)];
    let theirs = [range(ApiKey::Produce, 1, 5), range(ApiKey::Fetch, 0, 1)];
    assert_eq!(pick_version(&ours, &theirs, ApiKey::Produce), Some(3));
    assert_eq!(
        pick_version(&ours, &theirs, ApiKey::Fetch),
        None,
        "ranges do not overlap"
    );
    assert_eq!(
        pick_version(&ours, &theirs, ApiKey::Metadata),
        None,
        "api unknown to both"
    );
    assert_eq!(
        pick_version(
            &SUPPORTED_API_VERSIONS,
            &SUPPORTED_API_VERSIONS,
            ApiKey::DeleteRecords
        ),
        Some(0)
    );
}

#[test]
fn api_keys_and_error_codes_keep_their_wire_numbers() {
    // These numbers are the protocol: changing one breaks every deployed peer.
    let keys: Vec<(ApiKey, u16)> = ApiKey::ALL.iter().map(|key| (*key, key.to_u16())).collect();
    assert_eq!(
        keys,
        vec![
            (ApiKey::ApiVersions, 0),
            (ApiKey::Metadata, 1),
            (ApiKey::CreateTopics, 2),
            (ApiKey::DeleteTopics, 3),
            (ApiKey::ListTopics, 4),
            (ApiKey::DescribeTopic, 5),
            (ApiKey::AlterTopicConfig, 6),
            (ApiKey::Produce, 7),
            (ApiKey::Fetch, 8),
            (ApiKey::ListOffsets, 9),
            (ApiKey::DeleteRecords, 10),
            (ApiKey::JoinGroup, 11),
            (ApiKey::SyncGroup, 12),
            (ApiKey::Heartbeat, 13),
            (ApiKey::LeaveGroup, 14),
            (ApiKey::OffsetCommit, 15),
            (ApiKey::OffsetFetch, 16),
            (ApiKey::ListGroups, 17),
            (ApiKey::DescribeGroups, 18),
            (ApiKey::DeleteGroups, 19),
            (ApiKey::OffsetDelete, 20),
            (ApiKey::InitProducerId, 21),
            (ApiKey::DescribeCluster, 22),
            (ApiKey::CreatePartitions, 23),
            (ApiKey::AddPartitionsToTxn, 24),
            (ApiKey::AddOffsetsToTxn, 25),
            (ApiKey::EndTxn, 26),
            (ApiKey::TxnOffsetCommit, 27),
            (ApiKey::FindCoordinator, 28),
            (ApiKey::ReplicaFetch, 29),
            (ApiKey::RaftMessage, 30),
            (ApiKey::ClusterPropose, 31),
            (ApiKey::ElectLeaders, 32),
            (ApiKey::AlterReassignments, 33),
            (ApiKey::ListReassignments, 34),
            (ApiKey::DecommissionBroker, 35),
            (ApiKey::WriteTxnMarkers, 36),
            (ApiKey::VerifyTxn, 37),
            (ApiKey::SaslHandshake, 38),
            (ApiKey::SaslAuthenticate, 39),
            (ApiKey::UpsertUser, 40),
            (ApiKey::DeleteUser, 41),
            (ApiKey::ListUsers, 42),
            (ApiKey::DescribeAcls, 43),
            (ApiKey::CreateAcls, 44),
            (ApiKey::DeleteAcls, 45),
        ]
    );
    assert_eq!(ErrorCode::SaslAuthenticationFailed.to_u16(), 60);
    assert_eq!(ErrorCode::UnacceptableCredential.to_u16(), 64);
    assert_eq!(ErrorCode::TopicAuthorizationFailed.to_u16(), 65);
    assert_eq!(ErrorCode::GroupAuthorizationFailed.to_u16(), 66);
    assert_eq!(ErrorCode::ClusterAuthorizationFailed.to_u16(), 67);
    assert_eq!(ErrorCode::TransactionalIdAuthorizationFailed.to_u16(), 68);
    assert_eq!(ErrorCode::SecurityDisabled.to_u16(), 69);
    assert_eq!(ErrorCode::CorruptMessage.to_u16(), 2);
    assert_eq!(ErrorCode::UnknownTopicOrPartition.to_u16(), 4);
    assert_eq!(ErrorCode::InvalidTopicName.to_u16(), 15);
    assert_eq!(ErrorCode::BrokerBusy.to_u16(), 17);
    assert_eq!(ErrorCode::OutOfOrderSequence.to_u16(), 35);
    assert_eq!(ErrorCode::ProducerFenced.to_u16(), 37);
    assert_eq!(ErrorCode::InvalidTxnState.to_u16(), 41);
    assert_eq!(ErrorCode::TransactionAbortable.to_u16(), 48);
    for code in ErrorCode::ALL {
        assert_eq!(ErrorCode::from_u16(code.to_u16()), Some(code));
    }
    assert_eq!(ErrorCode::from_u16(ErrorCode::ALL.len() as u16), None);
    assert_eq!(ApiKey::from_u16(ApiKey::ALL.len() as u16), None);
}

#[test]
fn a_version_0_peer_and_a_version_1_peer_agree_on_version_0() {
    let range = |api_key: ApiKey, max_version| ApiVersionRange {
        api_key: api_key.to_u16(),
        min_version: 0,
        max_version,
    };
    // What a build from before transactions lists.
    let old = [range(ApiKey::Fetch, 0), range(ApiKey::InitProducerId, 0)];
    assert_eq!(ApiKey::Fetch.versions(), (0, 2));
    for api_key in [ApiKey::Fetch, ApiKey::InitProducerId] {
        assert_eq!(
            pick_version(&SUPPORTED_API_VERSIONS, &old, api_key),
            Some(0)
        );
        assert_eq!(
            pick_version(&old, &SUPPORTED_API_VERSIONS, api_key),
            Some(0)
        );
    }
    assert_eq!(
        pick_version(&old, &SUPPORTED_API_VERSIONS, ApiKey::EndTxn),
        None
    );

    // A version 0 fetch carries no isolation level and reads as read_uncommitted; its answer
    // carries neither the last stable offset nor the aborted list.
    let request = FetchRequest {
        max_wait_ms: 1,
        isolation_level: IsolationLevel::ReadCommitted,
        ..FetchRequest::default()
    };
    let mut version_0 = BytesMut::new();
    request.encode(0, &mut version_0).unwrap();
    let mut version_1 = BytesMut::new();
    request.encode(1, &mut version_1).unwrap();
    assert_eq!(
        version_1.len(),
        version_0.len() + 1,
        "one byte of isolation level"
    );
    let read = FetchRequest::decode(0, version_0.freeze()).unwrap();
    assert_eq!(read.isolation_level, IsolationLevel::ReadUncommitted);
    assert_eq!(
        FetchRequest::decode(1, version_1.clone().freeze()).unwrap(),
        request
    );
    // Read at the wrong version, the bytes do not pass: a leftover byte, or one missing.
    assert!(FetchRequest::decode(0, version_1.freeze()).is_err());

    let answer = FetchPartitionResponse {
        last_stable_offset: 5,
        aborted_transactions: vec![AbortedTransaction {
            producer_id: 3,
            first_offset: 4,
        }],
        ..FetchPartitionResponse::default()
    };
    let response = FetchResponse {
        error_code: ErrorCode::None,
        topics: vec![TopicPartitions {
            name: "t".into(),
            partitions: vec![answer],
        }],
    };
    let mut old_answer = BytesMut::new();
    response.encode(0, &mut old_answer).unwrap();
    let read = FetchResponse::decode(0, old_answer.clone().freeze()).unwrap();
    assert_eq!(read.topics[0].partitions[0].last_stable_offset, 0);
    assert!(read.topics[0].partitions[0].aborted_transactions.is_empty());
    assert!(FetchResponse::decode(1, old_answer.freeze()).is_err());
}

#[test]
fn a_message_needs_the_version_of_its_newest_field_that_holds_a_value() {
    assert_eq!(FetchRequest::default().version_needed(), 0);
    let read_committed = FetchRequest {
        isolation_level: IsolationLevel::ReadCommitted,
        ..FetchRequest::default()
    };
    assert_eq!(read_committed.version_needed(), 1);
    assert_eq!(InitProducerIdRequest::default().version_needed(), 0);
    let transactional = InitProducerIdRequest {
        transactional_id: Some("t".into()),
        ..InitProducerIdRequest::default()
    };
    assert_eq!(transactional.version_needed(), 1);
    assert_eq!(EndTxnRequest::default().version_needed(), 0);
}

#[test]
fn an_isolation_level_other_than_0_or_1_is_refused() {
    let mut body = BytesMut::new();
    FetchRequest::default().encode(1, &mut body).unwrap();
    let last = body.len() - 1;
    body[last] = 2;
    assert!(matches!(
        FetchRequest::decode(1, body.freeze()),
        Err(WireError::InvalidValue {
            field: "isolation_level",
            value: 2
        })
    ));
}

#[test]
fn retriable_codes_are_the_transient_ones() {
    assert!(ErrorCode::RequestTimedOut.is_retriable());
    assert!(ErrorCode::BrokerBusy.is_retriable());
    assert!(!ErrorCode::OffsetOutOfRange.is_retriable());
    assert!(!ErrorCode::TopicAlreadyExists.is_retriable());
    assert!(!ErrorCode::None.is_retriable());
}

#[test]
fn topic_config_parses_known_names_and_writes_them_back() {
    let entries = vec![
        ConfigEntry::new(name::RETENTION_BYTES, UNLIMITED),
        ConfigEntry::new(name::RETENTION_MS, "604800000"),
        ConfigEntry::new(name::SEGMENT_BYTES, "1073741824"),
        ConfigEntry::new(name::DURABILITY, "group-commit"),
        ConfigEntry::new(name::GROUP_COMMIT_US, "500"),
    ];
    let config = TopicConfig::from_entries(&entries).unwrap();
    assert_eq!(config.retention_bytes, Some(u64::MAX));
    assert_eq!(config.retention_ms, Some(604_800_000));
    assert_eq!(config.segment_bytes, Some(1 << 30));
    assert_eq!(config.segment_ms, None);
    assert_eq!(config.durability, Some(Durability::GroupCommit));
    assert_eq!(config.group_commit_us, Some(500));
    assert_eq!(config.to_entries(), entries);
    assert_eq!(TopicConfig::from_entries(&config.to_entries()), Ok(config));

    let mut altered = config;
    altered.reset(name::RETENTION_MS).unwrap();
    altered
        .set(&ConfigEntry::new(name::DURABILITY, "fsync-every-append"))
        .unwrap();
    assert_eq!(altered.retention_ms, None);
    assert_eq!(altered.durability, Some(Durability::FsyncEveryAppend));
}

#[test]
fn topic_config_rejects_unknown_repeated_and_malformed_entries() {
    let unknown = [ConfigEntry::new("unclean.leader.election.enable", "true")];
    assert!(matches!(
        TopicConfig::from_entries(&unknown),
        Err(ConfigError::UnknownName { .. })
    ));
    let repeated = [
        ConfigEntry::new(name::SEGMENT_MS, "1"),
        ConfigEntry::new(name::SEGMENT_MS, "2"),
    ];
    assert!(matches!(
        TopicConfig::from_entries(&repeated),
        Err(ConfigError::DuplicateName { .. })
    ));
    for (config_name, value) in [
        (name::SEGMENT_BYTES, "0"),
        (name::SEGMENT_BYTES, "-1"),
        (name::RETENTION_MS, "-2"),
        (name::RETENTION_BYTES, "lots"),
        (name::DURABILITY, "sometimes"),
    ] {
        let entries = [ConfigEntry::new(config_name, value)];
        assert!(
            matches!(
                TopicConfig::from_entries(&entries),
                Err(ConfigError::InvalidValue { .. })
            ),
            "{config_name}={value}"
        );
    }
}

#[test]
fn a_version_0_metadata_answer_carries_no_cluster_and_reads_as_a_single_broker() {
    let partition = PartitionMetadata {
        partition: 3,
        high_watermark: 7,
        leader_id: 2,
        leader_epoch: 4,
        replicas: vec![2, 0, 1],
        isr: vec![2, 0],
        ..PartitionMetadata::default()
    };
    let response = MetadataResponse {
        topics: vec![TopicMetadata {
            error_code: ErrorCode::None,
            name: "t".into(),
            partitions: vec![partition.clone()],
        }],
        cluster_id: Some("cluster".into()),
        controller_id: 1,
        brokers: vec![BrokerMetadata {
            node_id: 2,
            host: "h".into(),
            port: 9,
            rack: None,
        }],
    };
    assert_eq!(response.version_needed(), 1);
    let mut version_0 = BytesMut::new();
    response.encode(0, &mut version_0).unwrap();
    let read = MetadataResponse::decode(0, version_0.clone().freeze()).unwrap();
    assert_eq!(read.cluster_id, None);
    assert_eq!(read.controller_id, 0);
    assert!(read.brokers.is_empty());
    let read_partition = &read.topics[0].partitions[0];
    assert_eq!(read_partition.high_watermark, 7);
    assert_eq!(
        (read_partition.leader_id, read_partition.leader_epoch),
        (0, 0)
    );
    assert!(read_partition.replicas.is_empty());
    assert!(MetadataResponse::decode(1, version_0.freeze()).is_err());

    let mut version_1 = BytesMut::new();
    response.encode(1, &mut version_1).unwrap();
    assert_eq!(
        MetadataResponse::decode(1, version_1.freeze()).unwrap(),
        response
    );
    assert_eq!(ApiKey::Metadata.versions(), (0, 1));
    assert_eq!(ApiKey::DescribeCluster.versions(), (0, 1));
    assert_eq!(ApiKey::Produce.versions(), (0, 2));
}

#[test]
fn a_not_leader_hint_needs_version_2_of_produce_and_fetch() {
    let produce = ProduceResponse {
        topics: vec![TopicPartitions {
            name: "t".into(),
            partitions: vec![ProducePartitionResponse {
                error_code: ErrorCode::NotLeaderOrFollower,
                leader_id: 2,
                leader_epoch: 5,
                ..ProducePartitionResponse::default()
            }],
        }],
    };
    let mut version_1 = BytesMut::new();
    produce.encode(1, &mut version_1).unwrap();
    let read = ProduceResponse::decode(1, version_1.freeze()).unwrap();
    assert_eq!(
        read.topics[0].partitions[0].error_code,
        ErrorCode::NotLeaderOrFollower
    );
    assert_eq!(read.topics[0].partitions[0].leader_id, 0);
    let mut version_2 = BytesMut::new();
    produce.encode(2, &mut version_2).unwrap();
    assert_eq!(
        ProduceResponse::decode(2, version_2.freeze()).unwrap(),
        produce
    );

    let fetch = FetchResponse {
        error_code: ErrorCode::None,
        topics: vec![TopicPartitions {
            name: "t".into(),
            partitions: vec![FetchPartitionResponse {
                error_code: ErrorCode::NotLeaderOrFollower,
                leader_id: 2,
                leader_epoch: 5,
                ..FetchPartitionResponse::default()
            }],
        }],
    };
    let mut version_2 = BytesMut::new();
    fetch.encode(2, &mut version_2).unwrap();
    assert_eq!(FetchResponse::decode(2, version_2.freeze()).unwrap(), fetch);
}
