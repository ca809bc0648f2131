//! Consumer group messages: every request and response round-trips through encode → frame →
//! decode (copied and chunked), arbitrary and mutated bytes never panic a group decoder, the
//! consumer protocol's subscription and assignment round-trip, and the group error codes keep
//! their numbers and retriability.

use std::fmt::Debug;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use spate_protocol::api::*;
use spate_protocol::constants::{GROUP_ID_BYTES_MAX, GROUP_MEMBER_METADATA_BYTES_MAX};
use spate_protocol::frame::{split_request_frame, split_response_frame};
use spate_protocol::{ErrorCode, WireError};

// ---- strategies -------------------------------------------------------------------------

fn name() -> impl Strategy<Value = String> {
    "[a-z0-9._-]{0,24}"
}

fn text() -> impl Strategy<Value = String> {
    "\\PC{0,32}"
}

fn opaque() -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..64).prop_map(Bytes::from)
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    proptest::sample::select(ErrorCode::ALL.to_vec())
}

fn group_state() -> impl Strategy<Value = GroupState> {
    proptest::sample::select(GroupState::ALL.to_vec())
}

fn topic_partition_lists() -> impl Strategy<Value = Vec<TopicPartitionList>> {
    proptest::collection::vec(
        (name(), proptest::collection::vec(any::<u32>(), 0..5))
            .prop_map(|(name, partitions)| TopicPartitionList { name, partitions }),
        0..4,
    )
}

fn topics_of<P: Debug + Clone>(
    partition: impl Strategy<Value = P>,
) -> impl Strategy<Value = Vec<TopicPartitions<P>>> {
    proptest::collection::vec(
        (name(), proptest::collection::vec(partition, 0..4))
            .prop_map(|(name, partitions)| TopicPartitions { name, partitions }),
        0..4,
    )
}

fn partition_result() -> impl Strategy<Value = PartitionResult> {
    (any::<u32>(), error_code()).prop_map(|(partition, error_code)| PartitionResult {
        partition,
        error_code,
    })
}

fn join_request() -> impl Strategy<Value = JoinGroupRequest> {
    (
        name(),
        any::<u32>(),
        any::<u32>(),
        name(),
        proptest::option::of(name()),
        name(),
        proptest::collection::vec(
            (name(), opaque()).prop_map(|(name, metadata)| GroupProtocol { name, metadata }),
            0..4,
        ),
    )
        .prop_map(
            |(
                group_id,
                session_timeout_ms,
                rebalance_timeout_ms,
                member_id,
                group_instance_id,
                protocol_type,
                protocols,
            )| JoinGroupRequest {
                group_id,
                session_timeout_ms,
                rebalance_timeout_ms,
                member_id,
                group_instance_id,
                protocol_type,
                protocols,
            },
        )
}

fn join_response() -> impl Strategy<Value = JoinGroupResponse> {
    (
        error_code(),
        any::<i32>(),
        proptest::option::of(name()),
        proptest::option::of(name()),
        name(),
        name(),
        proptest::collection::vec(
            (name(), proptest::option::of(name()), opaque()).prop_map(
                |(member_id, group_instance_id, metadata)| JoinGroupMember {
                    member_id,
                    group_instance_id,
                    metadata,
                },
            ),
            0..4,
        ),
    )
        .prop_map(
            |(
                error_code,
                generation_id,
                protocol_type,
                protocol_name,
                leader,
                member_id,
                members,
            )| {
                JoinGroupResponse {
                    error_code,
                    generation_id,
                    protocol_type,
                    protocol_name,
                    leader,
                    member_id,
                    members,
                }
            },
        )
}

fn described_group() -> impl Strategy<Value = DescribedGroup> {
    (
        (
            error_code(),
            name(),
            group_state(),
            name(),
            name(),
            any::<i32>(),
            name(),
        ),
        proptest::collection::vec(
            (
                name(),
                proptest::option::of(name()),
                name(),
                name(),
                opaque(),
                opaque(),
            )
                .prop_map(
                    |(
                        member_id,
                        group_instance_id,
                        client_id,
                        client_host,
                        metadata,
                        assignment,
                    )| {
                        DescribedMember {
                            member_id,
                            group_instance_id,
                            client_id,
                            client_host,
                            metadata,
                            assignment,
                        }
                    },
                ),
            0..3,
        ),
        topics_of(
            (
                any::<u32>(),
                any::<u64>(),
                proptest::option::of(text()),
                proptest::option::of(any::<u64>()),
            )
                .prop_map(|(partition, committed_offset, metadata, high_watermark)| {
                    DescribedOffset {
                        partition,
                        committed_offset,
                        metadata,
                        high_watermark,
                    }
                }),
        ),
    )
        .prop_map(|(head, members, offsets)| {
            let (error_code, group_id, state, protocol_type, protocol_name, generation_id, leader) =
                head;
            DescribedGroup {
                error_code,
                group_id,
                state,
                protocol_type,
                protocol_name,
                generation_id,
                leader,
                members,
                offsets,
            }
        })
}

// ---- round trip helpers -------------------------------------------------------------------

fn assert_request_round_trips<R>(request: &R) -> Result<(), TestCaseError>
where
    R: Request + PartialEq + Debug,
{
    let mut buffer = BytesMut::new();
    encode_request(&mut buffer, 7, "client", 0, request).expect("encodes");
    let chunks = encode_request_chunks(7, "client", 0, request).expect("encodes as chunks");
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
    let decoded = R::decode(frame.api_version, frame.body).expect("decodes");
    prop_assert_eq!(&decoded, request);
    Ok(())
}

fn assert_response_round_trips<M>(response: &M) -> Result<(), TestCaseError>
where
    M: Message + PartialEq + Debug,
{
    let mut buffer = BytesMut::new();
    encode_response(&mut buffer, 9, 0, response).expect("encodes");
    let chunks = encode_response_chunks(9, 0, response).expect("encodes as chunks");
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
    let decoded = M::decode(0, frame.body).expect("decodes");
    prop_assert_eq!(&decoded, response);
    Ok(())
}

/// Decodes `bytes` as every group message and both consumer protocol types; only a panic can
/// fail this.
fn decode_every_group_message(bytes: &Bytes) {
    macro_rules! decode_all {
        ($($type:ty),* $(,)?) => {
            $( let _ = <$type>::decode(0, bytes.clone()); )*
        };
    }
    decode_all!(
        JoinGroupRequest,
        JoinGroupResponse,
        SyncGroupRequest,
        SyncGroupResponse,
        HeartbeatRequest,
        HeartbeatResponse,
        LeaveGroupRequest,
        LeaveGroupResponse,
        OffsetCommitRequest,
        OffsetCommitResponse,
        OffsetFetchRequest,
        OffsetFetchResponse,
        ListGroupsRequest,
        ListGroupsResponse,
        DescribeGroupsRequest,
        DescribeGroupsResponse,
        DeleteGroupsRequest,
        DeleteGroupsResponse,
        OffsetDeleteRequest,
        OffsetDeleteResponse,
    );
    let _ = ConsumerSubscription::decode(bytes.clone());
    let _ = ConsumerAssignment::decode(bytes.clone());
}

fn body_of<M: Message>(message: &M) -> BytesMut {
    let mut body = BytesMut::new();
    message.encode(0, &mut body).expect("encodes");
    body
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #[test]
    fn join_and_sync_round_trip(
        join in join_request(),
        joined in join_response(),
        sync in (name(), any::<i32>(), name(), proptest::option::of(name()),
            proptest::option::of(name()), proptest::option::of(name()),
            proptest::collection::vec((name(), opaque()), 0..4)),
        synced in (error_code(), proptest::option::of(name()), proptest::option::of(name()), opaque()),
    ) {
        assert_request_round_trips(&join)?;
        assert_response_round_trips(&joined)?;
        let (group_id, generation_id, member_id, group_instance_id, protocol_type, protocol_name, assignments) = sync;
        assert_request_round_trips(&SyncGroupRequest {
            group_id,
            generation_id,
            member_id,
            group_instance_id,
            protocol_type,
            protocol_name,
            assignments: assignments
                .into_iter()
                .map(|(member_id, assignment)| SyncGroupAssignment { member_id, assignment })
                .collect(),
        })?;
        let (error_code, protocol_type, protocol_name, assignment) = synced;
        assert_response_round_trips(&SyncGroupResponse { error_code, protocol_type, protocol_name, assignment })?;
    }

    #[test]
    fn heartbeat_and_leave_round_trip(
        heartbeat in (name(), any::<i32>(), name(), proptest::option::of(name())),
        error_code in error_code(),
        members in proptest::collection::vec((name(), proptest::option::of(name()), error_code()), 0..4),
    ) {
        let (group_id, generation_id, member_id, group_instance_id) = heartbeat;
        assert_request_round_trips(&HeartbeatRequest { group_id: group_id.clone(), generation_id, member_id, group_instance_id })?;
        assert_response_round_trips(&HeartbeatResponse { error_code })?;
        assert_request_round_trips(&LeaveGroupRequest {
            group_id,
            members: members
                .iter()
                .map(|(member_id, group_instance_id, _)| MemberIdentity {
                    member_id: member_id.clone(),
                    group_instance_id: group_instance_id.clone(),
                })
                .collect(),
        })?;
        assert_response_round_trips(&LeaveGroupResponse {
            error_code,
            members: members
                .into_iter()
                .map(|(member_id, group_instance_id, error_code)| MemberResult { member_id, group_instance_id, error_code })
                .collect(),
        })?;
    }

    #[test]
    fn offset_messages_round_trip(
        group_id in name(),
        generation_id in any::<i32>(),
        member_id in name(),
        commits in topics_of(
            (any::<u32>(), any::<u64>(), proptest::option::of(text())).prop_map(
                |(partition, committed_offset, committed_metadata)| OffsetCommitPartition {
                    partition,
                    committed_offset,
                    committed_metadata,
                },
            ),
        ),
        results in topics_of(partition_result()),
        error_code in error_code(),
        requested in proptest::option::of(topic_partition_lists()),
        fetched in topics_of(
            (any::<u32>(), proptest::option::of(any::<u64>()), proptest::option::of(text()), error_code()).prop_map(
                |(partition, committed_offset, metadata, error_code)| OffsetFetchPartition {
                    partition,
                    committed_offset,
                    metadata,
                    error_code,
                },
            ),
        ),
        deleted in topic_partition_lists(),
    ) {
        assert_request_round_trips(&OffsetCommitRequest {
            group_id: group_id.clone(),
            generation_id,
            member_id,
            group_instance_id: None,
            topics: commits,
        })?;
        assert_response_round_trips(&OffsetCommitResponse { error_code, topics: results.clone() })?;
        assert_request_round_trips(&OffsetFetchRequest { group_id: group_id.clone(), topics: requested, require_stable: false })?;
        assert_response_round_trips(&OffsetFetchResponse { error_code, topics: fetched })?;
        assert_request_round_trips(&OffsetDeleteRequest { group_id, topics: deleted })?;
        assert_response_round_trips(&OffsetDeleteResponse { error_code, topics: results })?;
    }

    #[test]
    fn group_administration_round_trips(
        states in proptest::collection::vec(group_state(), 0..5),
        listings in proptest::collection::vec((name(), name(), group_state()), 0..4),
        groups in proptest::collection::vec(name(), 0..4),
        described in proptest::collection::vec(described_group(), 0..3),
        error_code in error_code(),
        results in proptest::collection::vec((name(), error_code()), 0..4),
    ) {
        assert_request_round_trips(&ListGroupsRequest { states })?;
        assert_response_round_trips(&ListGroupsResponse {
            error_code,
            groups: listings
                .into_iter()
                .map(|(group_id, protocol_type, state)| GroupListing { group_id, protocol_type, state })
                .collect(),
        })?;
        assert_request_round_trips(&DescribeGroupsRequest { groups: groups.clone() })?;
        assert_response_round_trips(&DescribeGroupsResponse { error_code, groups: described })?;
        assert_request_round_trips(&DeleteGroupsRequest { groups })?;
        assert_response_round_trips(&DeleteGroupsResponse {
            error_code,
            results: results
                .into_iter()
                .map(|(group_id, error_code)| GroupResult { group_id, error_code })
                .collect(),
        })?;
    }

    #[test]
    fn consumer_subscription_and_assignment_round_trip(
        topics in proptest::collection::vec(name(), 0..5),
        owned in topic_partition_lists(),
        assigned in topic_partition_lists(),
        user_data in opaque(),
    ) {
        let subscription = ConsumerSubscription { topics, owned_partitions: owned, user_data: user_data.clone() };
        prop_assert_eq!(ConsumerSubscription::decode(subscription.encode().unwrap()).unwrap(), subscription);
        let assignment = ConsumerAssignment { partitions: assigned, user_data };
        prop_assert_eq!(ConsumerAssignment::decode(assignment.encode().unwrap()).unwrap(), assignment);
    }

    #[test]
    fn arbitrary_bytes_never_panic_a_group_decoder(
        bytes in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        decode_every_group_message(&Bytes::from(bytes));
    }

    #[test]
    fn mutated_group_messages_never_panic_a_group_decoder(
        join in join_request(),
        joined in join_response(),
        described in proptest::collection::vec(described_group(), 1..3),
        position_seed in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        // Valid bodies reach deeper decoder paths than random bytes do.
        let bodies = [
            body_of(&join),
            body_of(&joined),
            body_of(&DescribeGroupsResponse { error_code: ErrorCode::None, groups: described }),
        ];
        for mut body in bodies {
            let position = position_seed.index(body.len());
            body[position] = replacement;
            decode_every_group_message(&body.freeze());
        }
    }
}

// ---- examples -----------------------------------------------------------------------------

#[test]
fn group_api_keys_and_error_codes_keep_their_wire_numbers() {
    let keys = [
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
    ];
    for (key, number) in keys {
        assert_eq!(key.to_u16(), number);
        assert_eq!(ApiKey::from_u16(number), Some(key));
        assert!(
            SUPPORTED_API_VERSIONS
                .iter()
                .any(|range| range.api_key == number),
            "{key:?} is missing from the versions table"
        );
    }
    let codes = [
        (ErrorCode::CoordinatorNotAvailable, 18),
        (ErrorCode::NotCoordinator, 19),
        (ErrorCode::CoordinatorLoadInProgress, 20),
        (ErrorCode::InvalidGroupId, 21),
        (ErrorCode::UnknownMemberId, 22),
        (ErrorCode::IllegalGeneration, 23),
        (ErrorCode::RebalanceInProgress, 24),
        (ErrorCode::InconsistentGroupProtocol, 25),
        (ErrorCode::InvalidSessionTimeout, 26),
        (ErrorCode::MemberIdRequired, 27),
        (ErrorCode::GroupIdNotFound, 28),
        (ErrorCode::NonEmptyGroup, 29),
        (ErrorCode::FencedInstanceId, 30),
        (ErrorCode::GroupMaxSizeReached, 31),
        (ErrorCode::GroupSubscribedToTopic, 32),
        (ErrorCode::OffsetMetadataTooLarge, 33),
        (ErrorCode::TooManyGroups, 34),
    ];
    for (code, number) in codes {
        assert_eq!(code.to_u16(), number);
        assert_eq!(ErrorCode::from_u16(number), Some(code));
    }
}

#[test]
fn only_the_coordinators_transient_states_are_retriable() {
    for code in [
        ErrorCode::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator,
        ErrorCode::CoordinatorLoadInProgress,
    ] {
        assert!(code.is_retriable(), "{code:?}");
    }
    // These ask the member to do something else (rejoin, change its request): the same
    // request again would fail again.
    for code in [
        ErrorCode::UnknownMemberId,
        ErrorCode::IllegalGeneration,
        ErrorCode::RebalanceInProgress,
        ErrorCode::MemberIdRequired,
        ErrorCode::FencedInstanceId,
        ErrorCode::InconsistentGroupProtocol,
        ErrorCode::InvalidSessionTimeout,
        ErrorCode::GroupIdNotFound,
        ErrorCode::NonEmptyGroup,
        ErrorCode::GroupMaxSizeReached,
        ErrorCode::InvalidGroupId,
    ] {
        assert!(!code.is_retriable(), "{code:?}");
    }
}

#[test]
fn group_states_round_trip_through_their_numbers_and_reject_unknown_ones() {
    for state in GroupState::ALL {
        assert_eq!(GroupState::from_u8(state.to_u8()), Some(state));
    }
    assert_eq!(GroupState::from_u8(GroupState::ALL.len() as u8), None);
    let mut body = BytesMut::new();
    body.extend_from_slice(&1u32.to_le_bytes());
    body.extend_from_slice(&[9]);
    assert!(matches!(
        ListGroupsRequest::decode(0, body.freeze()),
        Err(WireError::InvalidValue {
            field: "group_state",
            value: 9
        })
    ));
}

#[test]
fn an_empty_assignment_decodes_as_no_partitions() {
    let assignment = ConsumerAssignment::decode(Bytes::new()).unwrap();
    assert!(assignment.partitions.is_empty());
    assert_eq!(assignment.topic_partitions().count(), 0);
}

#[test]
fn a_consumer_protocol_version_from_the_future_is_refused() {
    let mut bytes = BytesMut::new();
    bytes.extend_from_slice(&7u16.to_le_bytes());
    assert!(matches!(
        ConsumerSubscription::decode(bytes.freeze()),
        Err(WireError::InvalidValue {
            field: "consumer_protocol_version",
            value: 7
        })
    ));
}

#[test]
fn encoding_refuses_group_ids_and_metadata_the_decoder_would_reject() {
    let long_group = JoinGroupRequest {
        group_id: "g".repeat(GROUP_ID_BYTES_MAX + 1),
        ..JoinGroupRequest::default()
    };
    assert!(matches!(
        long_group.encode(0, &mut BytesMut::new()),
        Err(WireError::TooLong {
            field: "group_id",
            ..
        })
    ));
    let large_assignment = SyncGroupResponse {
        assignment: Bytes::from(vec![0u8; GROUP_MEMBER_METADATA_BYTES_MAX + 1]),
        ..SyncGroupResponse::default()
    };
    assert!(matches!(
        large_assignment.encode(0, &mut BytesMut::new()),
        Err(WireError::TooLong {
            field: "assignment",
            ..
        })
    ));
}

#[test]
fn a_huge_member_count_fails_before_allocating() {
    let mut body = BytesMut::new();
    body.extend_from_slice(&0u16.to_le_bytes()); // error code
    body.extend_from_slice(&u32::MAX.to_le_bytes()); // members
    assert!(matches!(
        LeaveGroupResponse::decode(0, body.freeze()),
        Err(WireError::TooMany { .. })
    ));
}

#[test]
fn lag_is_the_distance_from_the_committed_offset_to_the_high_watermark() {
    let offset = DescribedOffset {
        partition: 0,
        committed_offset: 40,
        metadata: None,
        high_watermark: Some(100),
    };
    assert_eq!(offset.lag(), Some(60));
    let ahead = DescribedOffset {
        committed_offset: 120,
        ..offset.clone()
    };
    assert_eq!(
        ahead.lag(),
        Some(0),
        "a commit past the end is no negative lag"
    );
    let gone = DescribedOffset {
        high_watermark: None,
        ..offset
    };
    assert_eq!(gone.lag(), None);
}

#[test]
fn join_response_knows_whether_it_names_the_member_leader() {
    let response = JoinGroupResponse {
        leader: "m-1".into(),
        member_id: "m-1".into(),
        ..JoinGroupResponse::default()
    };
    assert!(response.is_leader());
    assert!(!JoinGroupResponse::error(ErrorCode::MemberIdRequired, "").is_leader());
}
