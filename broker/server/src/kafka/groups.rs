//! The Kafka consumer-group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup,
//! OffsetCommit, TxnOffsetCommit, OffsetFetch, DescribeGroups, ListGroups, DeleteGroups,
//! OffsetDelete.
//!
//! There is one group coordinator (`spate-group`), and native and Kafka members share it: a
//! group is one group, and its committed offsets one set, whichever protocol joined or committed.
//! Each handler here turns the Kafka request into the native one and runs the native handler
//! (`handlers::group`: routing to the coordinator shard, creating the offsets topic, fanning
//! out to several coordinators); what is left here is Kafka's shape of it: which fields exist
//! at which version, Kafka's error codes, and the limits of the native types checked before a
//! Kafka value is narrowed into one.
//!
//! Versions decide two behaviours: JoinGroup v4+ clients get the member-id handshake
//! (MEMBER_ID_REQUIRED, then a second join with the id), older ones join at once
//! (`MemberIdHandshake::Skipped`); DescribeGroups below v6 describes an unknown group as a
//! `Dead` group without an error, as Kafka does, and v6 answers GROUP_ID_NOT_FOUND.
//!
//! Members' subscriptions and assignments leave in Kafka's layout (`group::dialect`), whichever
//! protocol's member wrote them, so native and Kafka consumers can share a group.
//!
//! Every failure is answered inside the response; nothing here panics on input.

use std::collections::HashMap;
use std::rc::Rc;

use spate_kafka_protocol::kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use spate_kafka_protocol::kafka_protocol::messages::describe_groups_response::{
    DescribedGroup as KafkaDescribedGroup, DescribedGroupMember,
};
use spate_kafka_protocol::kafka_protocol::messages::find_coordinator_response::Coordinator;
use spate_kafka_protocol::kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use spate_kafka_protocol::kafka_protocol::messages::leave_group_response::MemberResponse;
use spate_kafka_protocol::kafka_protocol::messages::list_groups_response::ListedGroup;
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use spate_kafka_protocol::kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    BrokerId, DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest,
    DescribeGroupsResponse, FindCoordinatorRequest, FindCoordinatorResponse, GroupId,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, OffsetCommitRequest,
    OffsetCommitResponse, OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api;
use spate_protocol::api::{CoordinatorType, GroupState, TopicPartitions};
use spate_protocol::constants::{
    CLIENT_HOST_BYTES_MAX, CLIENT_ID_BYTES_MAX, GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX,
    GROUP_MEMBERS_PER_MESSAGE_MAX, GROUP_MEMBER_METADATA_BYTES_MAX, GROUP_PROTOCOLS_MAX,
    GROUP_PROTOCOL_NAME_BYTES_MAX, MEMBER_ID_BYTES_MAX,
};
use spate_protocol::error::ErrorCode;
use spate_security::{Operation, ResourceType};

use super::authorization::AUTHORIZED_OPERATIONS_OMITTED;
use super::data::kafka_endpoint;
use super::errors::kafka_code;
use super::transactions::txn_code;
use super::KafkaContext;
use crate::group::dialect::{described_group_for, join_response_for, sync_response_for, Dialect};
use crate::group::{ClientInfo, MemberIdHandshake};
use crate::handlers::cluster::coordinator_node;
use crate::handlers::group as native;
use crate::services::Services;
use crate::shard::join_all;

/// FindCoordinator's key types.
const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

/// The first JoinGroup version whose clients know the member-id handshake (KIP-394).
const JOIN_HANDSHAKE_VERSION_MIN: i16 = 4;

/// The first DescribeGroups version that reports an unknown group as GROUP_ID_NOT_FOUND
/// (KIP-1043); earlier ones describe it as `Dead` without an error.
const DESCRIBE_NOT_FOUND_VERSION_MIN: i16 = 6;

/// What ListGroups v5+ calls the groups of the classic protocol (the only kind Spate has).
const GROUP_TYPE_CLASSIC: &str = "classic";

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

/// `value` cut to at most `bytes_max` bytes, at a character boundary.
fn truncated(value: &str, bytes_max: usize) -> String {
    if value.len() <= bytes_max {
        return value.to_string();
    }
    let mut end = bytes_max;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].to_string()
}

/// Who a joining member is, as DescribeGroups shows it: the request header's client id (cut to
/// what a member record holds; member ids are made from it) and the peer's address written as
/// Kafka writes it (`/127.0.0.1`).
fn client_info(context: &KafkaContext<'_>, handshake: MemberIdHandshake) -> ClientInfo {
    let client_host = context
        .peer
        .map(|peer| truncated(&format!("/{}", peer.ip()), CLIENT_HOST_BYTES_MAX))
        .unwrap_or_default();
    ClientInfo {
        client_id: truncated(context.client_id.unwrap_or_default(), CLIENT_ID_BYTES_MAX),
        client_host,
        member_id_handshake: handshake,
    }
}

/// A group id the coordinator can hold (native groups have the same bound), or
/// INVALID_GROUP_ID.
fn check_group_id(group_id: &str) -> Result<(), ResponseError> {
    if group_id.is_empty() || group_id.len() > GROUP_ID_BYTES_MAX {
        Err(ResponseError::InvalidGroupId)
    } else {
        Ok(())
    }
}

/// No member has an id longer than the coordinator hands out.
fn check_member_id(member_id: &str) -> Result<(), ResponseError> {
    if member_id.len() > MEMBER_ID_BYTES_MAX {
        Err(ResponseError::UnknownMemberId)
    } else {
        Ok(())
    }
}

fn check_instance_id(instance: Option<&StrBytes>) -> Result<(), ResponseError> {
    match instance {
        Some(instance) if instance.is_empty() || instance.len() > GROUP_INSTANCE_ID_BYTES_MAX => {
            Err(ResponseError::InvalidRequest)
        }
        _ => Ok(()),
    }
}

fn check_member(
    group_id: &str,
    member_id: &str,
    instance: Option<&StrBytes>,
) -> Result<(), ResponseError> {
    check_group_id(group_id)?;
    check_member_id(member_id)?;
    check_instance_id(instance)
}

fn owned(value: &StrBytes) -> String {
    value.as_str().to_string()
}

fn owned_option(value: Option<&StrBytes>) -> Option<String> {
    value.map(owned)
}

/// The native timeout for a Kafka one; a negative one becomes 0, which the coordinator refuses
/// (session) or reads as "the session timeout" (rebalance, as Kafka's JoinGroup v0).
fn timeout_ms(value: i32) -> u32 {
    u32::try_from(value).unwrap_or(0)
}

// ---------------------------------------------------------------------------------------------
// FindCoordinator

pub(crate) async fn find_coordinator(
    context: &KafkaContext<'_>,
    version: i16,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    // v0 has no key type: it looks for a group's coordinator.
    let key_type = if version >= 1 {
        request.key_type
    } else {
        KEY_TYPE_GROUP
    };
    let keys = if version >= 4 {
        request.coordinator_keys.clone()
    } else {
        vec![request.key.clone()]
    };
    let mut coordinators = Vec::with_capacity(keys.len());
    for key in keys {
        let found = match locate(key_type, &key) {
            Ok(native_type) => match coordinator_refusal(context, native_type, &key) {
                Some(refused) => Err(refused),
                None => coordinator_at(context, native_type, &key).await,
            },
            Err(error) => Err(error),
        };
        coordinators.push(match found {
            Ok((node, host, port)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(node))
                .with_host(host)
                .with_port(port)
                .with_error_message(None),
            Err((error, message)) => Coordinator::default()
                .with_key(key)
                .with_node_id(BrokerId(-1))
                .with_host(StrBytes::default())
                .with_port(-1)
                .with_error_code(error)
                .with_error_message(Some(text(message))),
        });
    }
    if version >= 4 {
        return FindCoordinatorResponse::default()
            .with_error_message(None)
            .with_coordinators(coordinators);
    }
    let coordinator = coordinators.pop().expect("one key before v4");
    FindCoordinatorResponse::default()
        .with_error_code(coordinator.error_code)
        .with_error_message(coordinator.error_message)
        .with_node_id(coordinator.node_id)
        .with_host(coordinator.host)
        .with_port(coordinator.port)
}

/// Describe on the group or transactional id whose coordinator is asked for (Kafka's rule).
fn coordinator_refusal(
    context: &KafkaContext<'_>,
    key_type: CoordinatorType,
    key: &str,
) -> Option<(i16, String)> {
    let (allowed, error) = match key_type {
        CoordinatorType::Group => (
            context.group_authorized(Operation::Describe, key),
            ResponseError::GroupAuthorizationFailed,
        ),
        CoordinatorType::Transaction => (
            context.transactional_id_authorized(Operation::Describe, key),
            ResponseError::TransactionalIdAuthorizationFailed,
        ),
    };
    (!allowed).then(|| (code(error), "Authorization failed.".to_string()))
}

/// The broker coordinating `key` (the leader of its internal partition, `handlers::cluster`)
/// at its Kafka endpoint. `Err`: the Kafka code (COORDINATOR_NOT_AVAILABLE while the partition
/// has no leader or the broker no Kafka listener) and why.
async fn coordinator_at(
    context: &KafkaContext<'_>,
    key_type: CoordinatorType,
    key: &str,
) -> Result<(i32, StrBytes, i32), (i16, String)> {
    let node = coordinator_node(context.services, key_type, key)
        .await
        .map_err(|(error, message)| (kafka_code(error), message))?;
    let snapshot = context.services.snapshot();
    let (host, port) = kafka_endpoint(context, &snapshot, node).ok_or_else(|| {
        (
            code(ResponseError::CoordinatorNotAvailable),
            format!("the coordinator, broker {node}, has no Kafka listener this broker knows of"),
        )
    })?;
    Ok((node, host, port))
}

/// Checks a key as Kafka does and names its native type; other key types (share groups) are
/// not Spate's.
fn locate(key_type: i8, key: &str) -> Result<CoordinatorType, (i16, String)> {
    match key_type {
        KEY_TYPE_GROUP => check_group_id(key)
            .map(|()| CoordinatorType::Group)
            .map_err(|error| {
                (
                    code(error),
                    format!("group id {key:?} is empty or longer than {GROUP_ID_BYTES_MAX} bytes"),
                )
            }),
        // Kafka refuses an empty transactional id.
        KEY_TYPE_TRANSACTION if key.is_empty() => Err((
            code(ResponseError::InvalidRequest),
            "the transactional id is empty".to_string(),
        )),
        KEY_TYPE_TRANSACTION => Ok(CoordinatorType::Transaction),
        other => Err((
            code(ResponseError::InvalidRequest),
            format!("coordinator key type {other} is not served; only groups (0) and transactions (1) are"),
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// JoinGroup

/// A failed join's answer at `version`.
fn join_failed(version: i16, error: ResponseError, member_id: &str) -> JoinGroupResponse {
    join_response(
        version,
        api::JoinGroupResponse::error(ErrorCode::None, member_id),
    )
    .with_error_code(code(error))
}

/// Checks what the native request type bounds; the coordinator checks the rest (session timeout
/// range, protocol type and protocols present, a common protocol, static member fencing).
fn check_join(request: &JoinGroupRequest) -> Result<(), ResponseError> {
    check_member(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_ref(),
    )?;
    let names_fit = request.protocol_type.len() <= GROUP_PROTOCOL_NAME_BYTES_MAX
        && request
            .protocols
            .iter()
            .all(|protocol| protocol.name.len() <= GROUP_PROTOCOL_NAME_BYTES_MAX);
    if !names_fit || request.protocols.len() > GROUP_PROTOCOLS_MAX {
        return Err(ResponseError::InconsistentGroupProtocol);
    }
    if request
        .protocols
        .iter()
        .any(|protocol| protocol.metadata.len() > GROUP_MEMBER_METADATA_BYTES_MAX)
    {
        return Err(ResponseError::InvalidRequest);
    }
    Ok(())
}

pub(crate) async fn join_group(
    context: &KafkaContext<'_>,
    version: i16,
    request: JoinGroupRequest,
) -> JoinGroupResponse {
    if let Err(error) = check_join(&request) {
        return join_failed(version, error, &request.member_id);
    }
    if !context.group_authorized(Operation::Read, &request.group_id) {
        return join_failed(
            version,
            ResponseError::GroupAuthorizationFailed,
            &request.member_id,
        );
    }
    let handshake = if version >= JOIN_HANDSHAKE_VERSION_MIN {
        MemberIdHandshake::Required
    } else {
        MemberIdHandshake::Skipped
    };
    let client = client_info(context, handshake);
    let joined = api::JoinGroupRequest {
        group_id: owned(&request.group_id),
        session_timeout_ms: timeout_ms(request.session_timeout_ms),
        // v0 has no rebalance timeout: the session timeout stands for it.
        rebalance_timeout_ms: if version >= 1 {
            timeout_ms(request.rebalance_timeout_ms)
        } else {
            0
        },
        member_id: owned(&request.member_id),
        group_instance_id: owned_option(request.group_instance_id.as_ref()),
        protocol_type: owned(&request.protocol_type),
        protocols: request
            .protocols
            .into_iter()
            .map(|protocol| api::GroupProtocol {
                name: owned(&protocol.name),
                metadata: protocol.metadata,
            })
            .collect(),
    };
    let mut response = native::join_group(context.services, joined, client).await;
    join_response_for(Dialect::Kafka, &mut response);
    join_response(version, response)
}

/// The native answer in Kafka's shape at `version`: fields a version lacks stay at their
/// defaults (the encoder refuses some that are set), and names that are not nullable before
/// v7 are empty rather than null.
fn join_response(version: i16, response: api::JoinGroupResponse) -> JoinGroupResponse {
    let protocol_name = if version >= 7 {
        response.protocol_name.map(text)
    } else {
        Some(text(response.protocol_name.unwrap_or_default()))
    };
    let members = response
        .members
        .into_iter()
        .map(|member| {
            JoinGroupResponseMember::default()
                .with_member_id(text(member.member_id))
                .with_group_instance_id(if version >= 5 {
                    member.group_instance_id.map(text)
                } else {
                    None
                })
                .with_metadata(member.metadata)
        })
        .collect();
    JoinGroupResponse::default()
        .with_error_code(kafka_code(response.error_code))
        .with_generation_id(response.generation_id)
        .with_protocol_type(if version >= 7 {
            response.protocol_type.map(text)
        } else {
            None
        })
        .with_protocol_name(protocol_name)
        .with_leader(text(response.leader))
        .with_member_id(text(response.member_id))
        .with_members(members)
}

// ---------------------------------------------------------------------------------------------
// SyncGroup

fn sync_failed(error: ResponseError) -> SyncGroupResponse {
    SyncGroupResponse::default().with_error_code(code(error))
}

pub(crate) async fn sync_group(
    context: &KafkaContext<'_>,
    version: i16,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    if let Err(error) = check_member(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_ref(),
    ) {
        return sync_failed(error);
    }
    if !context.group_authorized(Operation::Read, &request.group_id) {
        return sync_failed(ResponseError::GroupAuthorizationFailed);
    }
    let too_large = request.assignments.len() > GROUP_MEMBERS_PER_MESSAGE_MAX
        || request
            .assignments
            .iter()
            .any(|assignment| assignment.assignment.len() > GROUP_MEMBER_METADATA_BYTES_MAX);
    if too_large {
        return sync_failed(ResponseError::InvalidRequest);
    }
    let synced = api::SyncGroupRequest {
        group_id: owned(&request.group_id),
        generation_id: request.generation_id,
        member_id: owned(&request.member_id),
        group_instance_id: owned_option(request.group_instance_id.as_ref()),
        protocol_type: owned_option(request.protocol_type.as_ref()),
        protocol_name: owned_option(request.protocol_name.as_ref()),
        assignments: request
            .assignments
            .into_iter()
            .map(|assignment| api::SyncGroupAssignment {
                member_id: owned(&assignment.member_id),
                assignment: assignment.assignment,
            })
            .collect(),
    };
    let mut response = native::sync_group(context.services, synced).await;
    sync_response_for(Dialect::Kafka, &mut response);
    let answer = SyncGroupResponse::default()
        .with_error_code(kafka_code(response.error_code))
        .with_assignment(response.assignment);
    if version >= 5 {
        answer
            .with_protocol_type(response.protocol_type.map(text))
            .with_protocol_name(response.protocol_name.map(text))
    } else {
        answer
    }
}

// ---------------------------------------------------------------------------------------------
// Heartbeat and LeaveGroup

pub(crate) async fn heartbeat(
    context: &KafkaContext<'_>,
    _version: i16,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    if let Err(error) = check_member(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_ref(),
    ) {
        return HeartbeatResponse::default().with_error_code(code(error));
    }
    if !context.group_authorized(Operation::Read, &request.group_id) {
        return HeartbeatResponse::default()
            .with_error_code(code(ResponseError::GroupAuthorizationFailed));
    }
    let beat = api::HeartbeatRequest {
        group_id: owned(&request.group_id),
        generation_id: request.generation_id,
        member_id: owned(&request.member_id),
        group_instance_id: owned_option(request.group_instance_id.as_ref()),
    };
    let response = native::heartbeat(context.services, beat).await;
    HeartbeatResponse::default().with_error_code(kafka_code(response.error_code))
}

/// The first LeaveGroup version that names several members (KIP-345).
const LEAVE_BATCH_VERSION_MIN: i16 = 3;

pub(crate) async fn leave_group(
    context: &KafkaContext<'_>,
    version: i16,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let identities: Vec<(StrBytes, Option<StrBytes>)> = if version >= LEAVE_BATCH_VERSION_MIN {
        request
            .members
            .iter()
            .map(|member| (member.member_id.clone(), member.group_instance_id.clone()))
            .collect()
    } else {
        vec![(request.member_id.clone(), None)]
    };
    let refusal = check_group_id(&request.group_id).err().or_else(|| {
        identities.iter().find_map(|(member_id, instance)| {
            check_member_id(member_id)
                .and_then(|()| check_instance_id(instance.as_ref()))
                .err()
        })
    });
    let refusal = refusal.or_else(|| {
        (!context.group_authorized(Operation::Read, &request.group_id))
            .then_some(ResponseError::GroupAuthorizationFailed)
    });
    if let Some(error) = refusal {
        return LeaveGroupResponse::default().with_error_code(code(error));
    }
    let leaving = api::LeaveGroupRequest {
        group_id: owned(&request.group_id),
        members: identities
            .iter()
            .map(|(member_id, instance)| api::MemberIdentity {
                member_id: owned(member_id),
                group_instance_id: owned_option(instance.as_ref()),
            })
            .collect(),
    };
    let response = native::leave_group(context.services, leaving).await;
    if version < LEAVE_BATCH_VERSION_MIN {
        // One member, answered at the top level.
        let member_code = response
            .members
            .first()
            .map_or(ErrorCode::None, |member| member.error_code);
        let error_code = if response.error_code.is_none() {
            member_code
        } else {
            response.error_code
        };
        return LeaveGroupResponse::default().with_error_code(kafka_code(error_code));
    }
    let members = response
        .members
        .into_iter()
        .map(|member| {
            MemberResponse::default()
                .with_member_id(text(member.member_id))
                .with_group_instance_id(member.group_instance_id.map(text))
                .with_error_code(kafka_code(member.error_code))
        })
        .collect();
    LeaveGroupResponse::default()
        .with_error_code(kafka_code(response.error_code))
        .with_members(members)
}

// ---------------------------------------------------------------------------------------------
// OffsetCommit

/// Where the answer for one requested partition comes from.
enum CommitSlot {
    /// Answered here, without asking the coordinator.
    Refused(ResponseError),
    /// The partition at this index of its topic in the native request.
    Native(usize),
}

pub(crate) async fn offset_commit(
    context: &KafkaContext<'_>,
    version: i16,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    let refusal = check_member(
        &request.group_id,
        &request.member_id,
        request.group_instance_id.as_ref(),
    )
    .err()
    .or_else(|| group_refusal(context, Operation::Read, &request.group_id));
    // Partitions that do not exist are answered here, before the group is looked at, as Kafka
    // does (measured on 4.1.1: an unknown topic is UNKNOWN_TOPIC_OR_PARTITION even for an
    // unknown group).
    let snapshot = context.services.snapshot();
    let partition_count = |topic: &str| {
        snapshot
            .topic(topic)
            .map_or(0, |topic| topic.partition_count())
    };
    let mut slots: Vec<Vec<CommitSlot>> = Vec::with_capacity(request.topics.len());
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        // Read on each topic, checked before its existence (Kafka's order).
        let topic_refusal = refusal.or_else(|| {
            (!context.topic_authorized(Operation::Read, &topic.name))
                .then_some(ResponseError::TopicAuthorizationFailed)
        });
        let count = partition_count(&topic.name);
        let mut topic_slots = Vec::with_capacity(topic.partitions.len());
        let mut partitions = Vec::new();
        for entry in &topic.partitions {
            let partition = u32::try_from(entry.partition_index)
                .ok()
                .filter(|partition| *partition < count)
                .ok_or(());
            let offset = u64::try_from(entry.committed_offset);
            let slot = match (topic_refusal, partition, offset) {
                (Some(error), _, _) => CommitSlot::Refused(error),
                (None, Err(()), _) => CommitSlot::Refused(ResponseError::UnknownTopicOrPartition),
                // Kafka's consumers never commit a negative offset (the Java client refuses
                // one before sending it); the native store has no place for one.
                (None, Ok(_), Err(_)) => CommitSlot::Refused(ResponseError::InvalidRequest),
                (None, Ok(partition), Ok(committed_offset)) => {
                    partitions.push(api::OffsetCommitPartition {
                        partition,
                        committed_offset,
                        committed_metadata: owned_option(entry.committed_metadata.as_ref()),
                    });
                    CommitSlot::Native(partitions.len() - 1)
                }
            };
            topic_slots.push(slot);
        }
        slots.push(topic_slots);
        topics.push(TopicPartitions {
            name: owned(&topic.name),
            partitions,
        });
    }
    let committing = topics.iter().any(|topic| !topic.partitions.is_empty());
    let response = if committing {
        let commit = api::OffsetCommitRequest {
            group_id: owned(&request.group_id),
            generation_id: request.generation_id_or_member_epoch,
            member_id: owned(&request.member_id),
            group_instance_id: owned_option(request.group_instance_id.as_ref()),
            topics,
        };
        native::commit_offsets(context.services, commit).await
    } else {
        api::OffsetCommitResponse::default()
    };
    let answer_topics = request
        .topics
        .iter()
        .zip(slots)
        .enumerate()
        .map(|(topic_index, (topic, topic_slots))| {
            let partitions = topic
                .partitions
                .iter()
                .zip(topic_slots)
                .map(|(entry, slot)| {
                    let error_code = match slot {
                        CommitSlot::Refused(error) => code(error),
                        CommitSlot::Native(index) => {
                            kafka_code(commit_code(version, &response, topic_index, index))
                        }
                    };
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(entry.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(answer_topics)
}

/// GROUP_AUTHORIZATION_FAILED when the principal may not do `operation` on the group.
fn group_refusal(
    context: &KafkaContext<'_>,
    operation: Operation,
    group_id: &str,
) -> Option<ResponseError> {
    (!context.group_authorized(operation, group_id))
        .then_some(ResponseError::GroupAuthorizationFailed)
}

/// The first OffsetCommit version that answers GROUP_ID_NOT_FOUND for a generation of an
/// unknown group; older versions say ILLEGAL_GENERATION (Kafka 4.1, measured).
const COMMIT_GROUP_ID_NOT_FOUND_VERSION_MIN: i16 = 9;

/// The coordinator's code for one committed partition. A commit from outside the membership
/// into a group with members is UNKNOWN_MEMBER_ID in Kafka (the native protocol says
/// NON_EMPTY_GROUP).
fn commit_code(
    version: i16,
    response: &api::OffsetCommitResponse,
    topic: usize,
    partition: usize,
) -> ErrorCode {
    let found = response
        .topics
        .get(topic)
        .and_then(|topic| topic.partitions.get(partition))
        .map(|result| result.error_code);
    // The coordinator answers each partition it was given, in order; a whole-request failure
    // answers with the same shape.
    debug_assert!(found.is_some(), "the coordinator answers every partition");
    let code = found.unwrap_or(if response.error_code.is_none() {
        ErrorCode::Unknown
    } else {
        response.error_code
    });
    match code {
        ErrorCode::NonEmptyGroup => ErrorCode::UnknownMemberId,
        ErrorCode::GroupIdNotFound if version < COMMIT_GROUP_ID_NOT_FOUND_VERSION_MIN => {
            ErrorCode::IllegalGeneration
        }
        code => code,
    }
}

// ---------------------------------------------------------------------------------------------
// TxnOffsetCommit

/// The first TxnOffsetCommit version with the member fields (KIP-447); older ones commit as a
/// producer outside the group's membership (generation -1, no member).
const TXN_COMMIT_MEMBER_VERSION_MIN: i16 = 3;
/// TxnOffsetCommit answers a fenced producer INVALID_PRODUCER_EPOCH at every version (Kafka's
/// group coordinator does), never PRODUCER_FENCED.
const TXN_COMMIT_FENCED_VERSION_MIN: i16 = i16::MAX;
/// The first TxnOffsetCommit version that knows TRANSACTION_ABORTABLE (KIP-890); older ones
/// get INVALID_TXN_STATE.
const TXN_COMMIT_ABORTABLE_VERSION_MIN: i16 = 4;

/// TxnOffsetCommit 0–5: the offsets are written into the group's offsets partition inside the
/// producer's transaction and become the group's when the transaction commits
/// (`group::coordinator::commit_transactional_offsets`), once the transaction coordinator
/// confirmed the group is in the producer's transaction at its epoch
/// (`spate_txn::coordinator::verify_group`). Partitions that do not exist are
/// answered UNKNOWN_TOPIC_OR_PARTITION here, before the group is looked at, as Kafka does;
/// the member checks are Kafka's for a transactional commit (ILLEGAL_GENERATION,
/// UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID; no REBALANCE_IN_PROGRESS).
pub(crate) async fn txn_offset_commit(
    context: &KafkaContext<'_>,
    version: i16,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let (generation_id, member_id, group_instance_id) = if version >= TXN_COMMIT_MEMBER_VERSION_MIN
    {
        (
            request.generation_id,
            owned(&request.member_id),
            owned_option(request.group_instance_id.as_ref()),
        )
    } else {
        (api::GENERATION_NONE, String::new(), None)
    };
    let refusal = check_member(
        &request.group_id,
        &member_id,
        request.group_instance_id.as_ref().filter(|_| version >= 3),
    )
    .err()
    .or_else(|| {
        (!context.transactional_id_authorized(Operation::Write, &request.transactional_id))
            .then_some(ResponseError::TransactionalIdAuthorizationFailed)
    })
    .or_else(|| group_refusal(context, Operation::Read, &request.group_id));
    let snapshot = context.services.snapshot();
    let partition_count = |topic: &str| {
        snapshot
            .topic(topic)
            .map_or(0, |topic| topic.partition_count())
    };
    let mut slots: Vec<Vec<CommitSlot>> = Vec::with_capacity(request.topics.len());
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in &request.topics {
        // Read on each topic, checked before its existence (Kafka's order).
        let topic_refusal = refusal.or_else(|| {
            (!context.topic_authorized(Operation::Read, &topic.name))
                .then_some(ResponseError::TopicAuthorizationFailed)
        });
        let count = partition_count(&topic.name);
        let mut topic_slots = Vec::with_capacity(topic.partitions.len());
        let mut partitions = Vec::new();
        for entry in &topic.partitions {
            let partition = u32::try_from(entry.partition_index)
                .ok()
                .filter(|partition| *partition < count)
                .ok_or(());
            let offset = u64::try_from(entry.committed_offset);
            let slot = match (topic_refusal, partition, offset) {
                (Some(error), _, _) => CommitSlot::Refused(error),
                (None, Err(()), _) => CommitSlot::Refused(ResponseError::UnknownTopicOrPartition),
                // As OffsetCommit: the native store has no place for a negative offset.
                (None, Ok(_), Err(_)) => CommitSlot::Refused(ResponseError::InvalidRequest),
                (None, Ok(partition), Ok(committed_offset)) => {
                    partitions.push(api::OffsetCommitPartition {
                        partition,
                        committed_offset,
                        committed_metadata: owned_option(entry.committed_metadata.as_ref()),
                    });
                    CommitSlot::Native(partitions.len() - 1)
                }
            };
            topic_slots.push(slot);
        }
        slots.push(topic_slots);
        topics.push(TopicPartitions {
            name: owned(&topic.name),
            partitions,
        });
    }
    let committing = topics.iter().any(|topic| !topic.partitions.is_empty());
    // KIP-890, as Kafka verifies the offsets partition: the group must be in the producer's
    // ongoing transaction at this epoch (AddOffsetsToTxn), or nothing is written.
    let verified = if committing {
        crate::txn::coordinator::verify_group(
            context.services,
            &request.transactional_id,
            request.producer_id.0,
            request.producer_epoch,
            &request.group_id,
        )
        .await
        .map_err(|error| {
            txn_code(
                &error,
                version,
                TXN_COMMIT_FENCED_VERSION_MIN,
                TXN_COMMIT_ABORTABLE_VERSION_MIN,
            )
        })
    } else {
        Ok(())
    };
    let response = if committing && verified.is_ok() {
        let commit = api::TxnOffsetCommitRequest {
            transactional_id: owned(&request.transactional_id),
            group_id: owned(&request.group_id),
            producer_id: request.producer_id.0,
            producer_epoch: request.producer_epoch,
            generation_id,
            member_id,
            group_instance_id,
            topics,
        };
        native::commit_verified_transactional_offsets(context.services, commit).await
    } else {
        api::TxnOffsetCommitResponse::default()
    };
    let answer_topics = request
        .topics
        .iter()
        .zip(slots)
        .enumerate()
        .map(|(topic_index, (topic, topic_slots))| {
            let partitions = topic
                .partitions
                .iter()
                .zip(topic_slots)
                .map(|(entry, slot)| {
                    let error_code = match (slot, verified) {
                        (CommitSlot::Refused(error), _) => code(error),
                        (CommitSlot::Native(_), Err(refused)) => refused,
                        (CommitSlot::Native(index), Ok(())) => {
                            kafka_code(txn_commit_code(&response, topic_index, index))
                        }
                    };
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(entry.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(answer_topics)
}

/// The coordinator's code for one partition of a transactional commit.
fn txn_commit_code(
    response: &api::TxnOffsetCommitResponse,
    topic: usize,
    partition: usize,
) -> ErrorCode {
    let found = response
        .topics
        .get(topic)
        .and_then(|topic| topic.partitions.get(partition))
        .map(|result| result.error_code);
    debug_assert!(found.is_some(), "the coordinator answers every partition");
    found.unwrap_or(if response.error_code.is_none() {
        ErrorCode::Unknown
    } else {
        response.error_code
    })
}

// ---------------------------------------------------------------------------------------------
// OffsetFetch

/// The first OffsetFetch version that asks for several groups (KIP-709).
const FETCH_BATCH_VERSION_MIN: i16 = 8;
/// The first OffsetFetch version with `require_stable` (KIP-447).
const FETCH_REQUIRE_STABLE_VERSION_MIN: i16 = 7;
/// The first OffsetFetch version with a top-level error code; v1 puts it on each partition.
const FETCH_TOP_ERROR_VERSION_MIN: i16 = 2;
/// What Kafka answers for a partition without a committed offset.
const NO_OFFSET: i64 = -1;
/// Spate does not keep the leader epoch of a commit; Kafka's "unknown".
const NO_LEADER_EPOCH: i32 = -1;

/// One group's topics as an OffsetFetch asks for them; `None`: every committed partition.
type WantedTopics = Option<Vec<(TopicName, Vec<i32>)>>;

/// One group's committed offsets, in the order the request asked (or, for every partition, in
/// the coordinator's order).
struct FetchedGroup {
    /// A Kafka error code.
    error_code: i16,
    topics: Vec<(TopicName, Vec<FetchedPartition>)>,
}

struct FetchedPartition {
    partition: i32,
    offset: i64,
    metadata: Option<StrBytes>,
    /// A Kafka error code.
    error_code: i16,
}

/// One group of an OffsetFetch after authorization: Describe on the group, then on each topic.
/// A named topic the principal may not describe is not asked of the coordinator and is answered
/// TOPIC_AUTHORIZATION_FAILED; with every topic asked for, such topics are left out of the
/// answer (Kafka's rules).
struct AuthorizedFetch {
    group_allowed: bool,
    /// The topics asked for, and whether each may be described (`None`: every topic).
    asked: Option<Vec<(AskedTopic, bool)>>,
}

/// A topic an OffsetFetch names, with the partitions it asks for.
type AskedTopic = (TopicName, Vec<i32>);

impl AuthorizedFetch {
    fn new(context: &KafkaContext<'_>, group_id: &str, wanted: WantedTopics) -> AuthorizedFetch {
        let asked = wanted.map(|topics| {
            topics
                .into_iter()
                .map(|topic| {
                    let allowed = context.topic_authorized(Operation::Describe, topic.0.as_str());
                    (topic, allowed)
                })
                .collect()
        });
        AuthorizedFetch {
            group_allowed: context.group_authorized(Operation::Describe, group_id),
            asked,
        }
    }

    /// What the coordinator is asked for.
    fn wanted(&self) -> WantedTopics {
        self.asked.as_ref().map(|topics| {
            topics
                .iter()
                .filter(|(_, allowed)| *allowed)
                .map(|(topic, _)| topic.clone())
                .collect()
        })
    }

    /// The coordinator's answer with the refused topics put back in their places (or, for every
    /// topic, those the principal may not describe taken out).
    fn answer(self, context: &KafkaContext<'_>, fetched: FetchedGroup) -> FetchedGroup {
        let Some(asked) = self.asked else {
            let topics = fetched
                .topics
                .into_iter()
                .filter(|(name, _)| context.topic_authorized(Operation::Describe, name.0.as_str()))
                .collect();
            return FetchedGroup {
                error_code: fetched.error_code,
                topics,
            };
        };
        let mut answered = fetched.topics.into_iter();
        let topics = asked
            .into_iter()
            .filter_map(|((name, partitions), allowed)| {
                if allowed {
                    return answered.next();
                }
                let refused = partitions
                    .into_iter()
                    .map(|partition| FetchedPartition {
                        partition,
                        offset: NO_OFFSET,
                        metadata: Some(StrBytes::default()),
                        error_code: code(ResponseError::TopicAuthorizationFailed),
                    })
                    .collect();
                Some((name, refused))
            })
            .collect();
        FetchedGroup {
            error_code: fetched.error_code,
            topics,
        }
    }
}

/// A group the principal may not describe: refused whole, nothing asked.
fn unauthorized_group() -> FetchedGroup {
    FetchedGroup {
        error_code: code(ResponseError::GroupAuthorizationFailed),
        topics: Vec::new(),
    }
}

async fn fetch_group(
    services: Rc<Services>,
    group_id: GroupId,
    wanted: WantedTopics,
    require_stable: bool,
) -> FetchedGroup {
    let native_topics = wanted.as_ref().map(|topics| {
        topics
            .iter()
            .map(|(name, partitions)| api::TopicPartitionList {
                name: owned(name),
                partitions: partitions
                    .iter()
                    .filter_map(|partition| u32::try_from(*partition).ok())
                    .collect(),
            })
            .collect()
    });
    let fetch = api::OffsetFetchRequest {
        group_id: owned(&group_id),
        topics: native_topics,
        require_stable,
    };
    let response = native::fetch_offsets(&services, fetch).await;
    let fetched = |partition: &api::OffsetFetchPartition| FetchedPartition {
        partition: partition.partition as i32,
        offset: partition
            .committed_offset
            .map_or(NO_OFFSET, |offset| offset as i64),
        // Kafka keeps a commit without metadata as "" and answers "" for no commit.
        metadata: Some(text(partition.metadata.clone().unwrap_or_default())),
        error_code: kafka_code(partition.error_code),
    };
    let topics = match wanted {
        None => response
            .topics
            .iter()
            .map(|topic| {
                let name = TopicName(text(topic.name.clone()));
                (name, topic.partitions.iter().map(fetched).collect())
            })
            .collect(),
        Some(wanted) => {
            let mut answered: HashMap<(&str, u32), &api::OffsetFetchPartition> = HashMap::new();
            for topic in &response.topics {
                for partition in &topic.partitions {
                    answered.insert((topic.name.as_str(), partition.partition), partition);
                }
            }
            wanted
                .into_iter()
                .map(|(name, partitions)| {
                    let answers = partitions
                        .iter()
                        .map(|index| {
                            let found = u32::try_from(*index)
                                .ok()
                                .and_then(|partition| answered.get(&(name.as_str(), partition)));
                            match found {
                                Some(partition) => fetched(partition),
                                None => FetchedPartition {
                                    partition: *index,
                                    offset: NO_OFFSET,
                                    metadata: Some(StrBytes::default()),
                                    error_code: 0,
                                },
                            }
                        })
                        .collect();
                    (name, answers)
                })
                .collect()
        }
    };
    FetchedGroup {
        error_code: kafka_code(response.error_code),
        topics,
    }
}

pub(crate) async fn offset_fetch(
    context: &KafkaContext<'_>,
    version: i16,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    // `require_stable` (v7+; a read_committed consumer sets it): a partition with an offset
    // pending in an open transaction is answered UNSTABLE_OFFSET_COMMIT, and the client retries.
    let require_stable = version >= FETCH_REQUIRE_STABLE_VERSION_MIN && request.require_stable;
    if version >= FETCH_BATCH_VERSION_MIN {
        let authorized: Vec<AuthorizedFetch> = request
            .groups
            .iter()
            .map(|group| {
                let wanted = group.topics.as_ref().map(|topics| {
                    topics
                        .iter()
                        .map(|topic| (topic.name.clone(), topic.partition_indexes.clone()))
                        .collect()
                });
                AuthorizedFetch::new(context, &group.group_id, wanted)
            })
            .collect();
        let fetches = request
            .groups
            .iter()
            .zip(&authorized)
            .filter(|(_, authorized)| authorized.group_allowed)
            .map(|(group, authorized)| {
                fetch_group(
                    context.services.clone(),
                    group.group_id.clone(),
                    authorized.wanted(),
                    require_stable,
                )
            });
        let mut fetched_groups = join_all(fetches).await.into_iter();
        let groups: Vec<FetchedGroup> = authorized
            .into_iter()
            .map(|authorized| {
                if !authorized.group_allowed {
                    return unauthorized_group();
                }
                let fetched = fetched_groups.next().expect("a fetch per allowed group");
                authorized.answer(context, fetched)
            })
            .collect();
        let answers = request
            .groups
            .iter()
            .zip(groups)
            .map(|(group, fetched)| {
                let topics = fetched
                    .topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        let partitions = partitions
                            .into_iter()
                            .map(|partition| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(partition.partition)
                                    .with_committed_offset(partition.offset)
                                    .with_committed_leader_epoch(NO_LEADER_EPOCH)
                                    .with_metadata(partition.metadata)
                                    .with_error_code(partition.error_code)
                            })
                            .collect();
                        OffsetFetchResponseTopics::default()
                            .with_name(name)
                            .with_partitions(partitions)
                    })
                    .collect();
                OffsetFetchResponseGroup::default()
                    .with_group_id(group.group_id.clone())
                    .with_error_code(fetched.error_code)
                    .with_topics(topics)
            })
            .collect();
        return OffsetFetchResponse::default().with_groups(answers);
    }
    // v1 always names its topics; v2+ may send null for "every committed partition".
    let wanted = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .map(|topic| (topic.name.clone(), topic.partition_indexes.clone()))
            .collect()
    });
    let authorized = AuthorizedFetch::new(context, &request.group_id, wanted);
    let fetched = if authorized.group_allowed {
        let fetched = fetch_group(
            context.services.clone(),
            request.group_id.clone(),
            authorized.wanted(),
            require_stable,
        )
        .await;
        authorized.answer(context, fetched)
    } else if version < FETCH_TOP_ERROR_VERSION_MIN {
        // v1 has no top-level code: each partition asked carries the group's refusal.
        let refused = AuthorizedFetch {
            group_allowed: false,
            asked: authorized.asked.map(|topics| {
                topics
                    .into_iter()
                    .map(|(topic, _)| (topic, false))
                    .collect()
            }),
        };
        let mut fetched = refused.answer(context, unauthorized_group());
        for (_, partitions) in &mut fetched.topics {
            for partition in partitions {
                partition.error_code = code(ResponseError::GroupAuthorizationFailed);
            }
        }
        fetched
    } else {
        unauthorized_group()
    };
    let group_code = fetched.error_code;
    let topics = fetched
        .topics
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|partition| {
                    // v1 has no top-level error: the group's error is every partition's.
                    let error_code =
                        if version < FETCH_TOP_ERROR_VERSION_MIN && partition.error_code == 0 {
                            group_code
                        } else {
                            partition.error_code
                        };
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(partition.partition)
                        .with_committed_offset(partition.offset)
                        .with_committed_leader_epoch(NO_LEADER_EPOCH)
                        .with_metadata(partition.metadata)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetFetchResponseTopic::default()
                .with_name(name)
                .with_partitions(partitions)
        })
        .collect();
    let response = OffsetFetchResponse::default().with_topics(topics);
    if version >= FETCH_TOP_ERROR_VERSION_MIN {
        response.with_error_code(group_code)
    } else {
        response
    }
}

// ---------------------------------------------------------------------------------------------
// DescribeGroups

pub(crate) async fn describe_groups(
    context: &KafkaContext<'_>,
    version: i16,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let operations = |group_id: &str| {
        if request.include_authorized_operations {
            context.authorized_operations(ResourceType::Group, group_id)
        } else {
            AUTHORIZED_OPERATIONS_OMITTED
        }
    };
    // Groups the principal may not describe are answered here and never looked up.
    let allowed: Vec<bool> = request
        .groups
        .iter()
        .map(|group| context.group_authorized(Operation::Describe, group))
        .collect();
    let names: Vec<String> = request
        .groups
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(group, _)| owned(group))
        .collect();
    let described = if names.is_empty() {
        api::DescribeGroupsResponse::default()
    } else {
        native::describe_group_states(context.services, names).await
    };
    if !described.error_code.is_none() {
        // The offsets topic could not be read: every group gets the error.
        let error_code = kafka_code(described.error_code);
        let groups = request
            .groups
            .into_iter()
            .zip(allowed)
            .map(|(group_id, allowed)| {
                if !allowed {
                    return unauthorized_described_group(group_id);
                }
                let operations = operations(&group_id);
                KafkaDescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(error_code)
                    .with_group_state(text(GroupState::Dead.name()))
                    .with_authorized_operations(operations)
            })
            .collect();
        return DescribeGroupsResponse::default().with_groups(groups);
    }
    let mut described = described.groups.into_iter();
    let groups = request
        .groups
        .into_iter()
        .zip(allowed)
        .map(|(group_id, allowed)| {
            if !allowed {
                return unauthorized_described_group(group_id);
            }
            match described.next() {
                Some(group) => {
                    let operations = operations(&group.group_id);
                    describe_group(version, group).with_authorized_operations(operations)
                }
                // The coordinator answers every group asked; were one missing, say so.
                None => KafkaDescribedGroup::default()
                    .with_group_id(group_id)
                    .with_error_code(code(ResponseError::UnknownServerError))
                    .with_group_state(text(GroupState::Dead.name())),
            }
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

/// A group the principal may not describe: Kafka's answer names it and nothing else.
fn unauthorized_described_group(group_id: GroupId) -> KafkaDescribedGroup {
    KafkaDescribedGroup::default()
        .with_group_id(group_id)
        .with_error_code(code(ResponseError::GroupAuthorizationFailed))
}

fn describe_group(version: i16, mut group: api::DescribedGroup) -> KafkaDescribedGroup {
    described_group_for(Dialect::Kafka, &mut group);
    let group_id = GroupId(text(group.group_id));
    if group.error_code == ErrorCode::GroupIdNotFound {
        let unknown = KafkaDescribedGroup::default()
            .with_group_id(group_id.clone())
            .with_group_state(text(GroupState::Dead.name()));
        return if version >= DESCRIBE_NOT_FOUND_VERSION_MIN {
            unknown
                .with_error_code(code(ResponseError::GroupIdNotFound))
                .with_error_message(Some(text(format!("Group {} not found.", group_id.0))))
        } else {
            unknown
        };
    }
    let members = group
        .members
        .into_iter()
        .map(|member| {
            DescribedGroupMember::default()
                .with_member_id(text(member.member_id))
                .with_group_instance_id(if version >= 4 {
                    member.group_instance_id.map(text)
                } else {
                    None
                })
                .with_client_id(text(member.client_id))
                .with_client_host(text(member.client_host))
                .with_member_metadata(member.metadata)
                .with_member_assignment(member.assignment)
        })
        .collect();
    KafkaDescribedGroup::default()
        .with_error_code(kafka_code(group.error_code))
        .with_group_id(group_id)
        .with_group_state(text(group.state.name()))
        .with_protocol_type(text(group.protocol_type))
        .with_protocol_data(text(group.protocol_name))
        .with_members(members)
}

// ---------------------------------------------------------------------------------------------
// ListGroups

/// The states a ListGroups filter names (Kafka compares them ignoring case); `None` when the
/// filter names only states no group here can be in, so nothing is listed.
fn wanted_states(filter: &[StrBytes]) -> Option<Vec<GroupState>> {
    if filter.is_empty() {
        return Some(Vec::new());
    }
    let states: Vec<GroupState> = GroupState::ALL
        .into_iter()
        .filter(|state| {
            filter
                .iter()
                .any(|name| name.eq_ignore_ascii_case(state.name()))
        })
        .collect();
    (!states.is_empty()).then_some(states)
}

pub(crate) async fn list_groups(
    context: &KafkaContext<'_>,
    version: i16,
    request: ListGroupsRequest,
) -> ListGroupsResponse {
    // Every group here is a classic one: a type filter without "classic" matches none.
    let classic_wanted = request.types_filter.is_empty()
        || request
            .types_filter
            .iter()
            .any(|name| name.eq_ignore_ascii_case(GROUP_TYPE_CLASSIC));
    let states = match wanted_states(&request.states_filter) {
        Some(states) if classic_wanted => states,
        _ => return ListGroupsResponse::default(),
    };
    let listed = native::list_groups(context.services, &states).await;
    // Describe on the cluster lists every group; otherwise only those the principal may
    // describe (Kafka's rule).
    let cluster_described = context.cluster_authorized(Operation::Describe);
    let groups = listed
        .groups
        .into_iter()
        .filter(|group| {
            cluster_described || context.group_authorized(Operation::Describe, &group.group_id)
        })
        .map(|group| {
            let listed = ListedGroup::default()
                .with_group_id(GroupId(text(group.group_id)))
                .with_protocol_type(text(group.protocol_type));
            let listed = if version >= 4 {
                listed.with_group_state(text(group.state.name()))
            } else {
                listed
            };
            if version >= 5 {
                listed.with_group_type(text(GROUP_TYPE_CLASSIC))
            } else {
                listed
            }
        })
        .collect();
    ListGroupsResponse::default()
        .with_error_code(kafka_code(listed.error_code))
        .with_groups(groups)
}

// ---------------------------------------------------------------------------------------------
// DeleteGroups and OffsetDelete

pub(crate) async fn delete_groups(
    context: &KafkaContext<'_>,
    _version: i16,
    request: DeleteGroupsRequest,
) -> DeleteGroupsResponse {
    // Groups the principal may not delete are refused here; the others are deleted.
    let allowed: Vec<bool> = request
        .groups_names
        .iter()
        .map(|group| context.group_authorized(Operation::Delete, group))
        .collect();
    let names: Vec<String> = request
        .groups_names
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| **allowed)
        .map(|(group, _)| owned(group))
        .collect();
    let refused = DeletableGroupResult::default()
        .with_error_code(code(ResponseError::GroupAuthorizationFailed));
    let mut results: Vec<DeletableGroupResult> = request
        .groups_names
        .iter()
        .zip(&allowed)
        .filter(|(_, allowed)| !**allowed)
        .map(|(group_id, _)| refused.clone().with_group_id(group_id.clone()))
        .collect();
    if names.is_empty() {
        return DeleteGroupsResponse::default().with_results(results);
    }
    let deleted = native::delete_groups(context.services, names).await;
    if deleted.error_code.is_none() {
        results.extend(deleted.results.into_iter().map(|result| {
            DeletableGroupResult::default()
                .with_group_id(GroupId(text(result.group_id)))
                .with_error_code(kafka_code(result.error_code))
        }));
    } else {
        let error_code = kafka_code(deleted.error_code);
        results.extend(
            request
                .groups_names
                .into_iter()
                .zip(allowed)
                .filter(|(_, allowed)| *allowed)
                .map(|(group_id, _)| {
                    DeletableGroupResult::default()
                        .with_group_id(group_id)
                        .with_error_code(error_code)
                }),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}

pub(crate) async fn offset_delete(
    context: &KafkaContext<'_>,
    _version: i16,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    if let Err(error) = check_group_id(&request.group_id) {
        return OffsetDeleteResponse::default().with_error_code(code(error));
    }
    if let Some(error) = group_refusal(context, Operation::Delete, &request.group_id) {
        return OffsetDeleteResponse::default().with_error_code(code(error));
    }
    // Topics the principal may not read are refused, and partitions that do not exist answered
    // here, as Kafka does; the coordinator is asked about the others.
    let readable: HashMap<&str, bool> = request
        .topics
        .iter()
        .map(|topic| {
            let name = topic.name.as_str();
            (name, context.topic_authorized(Operation::Read, name))
        })
        .collect();
    let snapshot = context.services.snapshot();
    let exists = |topic: &str, partition: i32| {
        let count = snapshot
            .topic(topic)
            .map_or(0, |topic| topic.partition_count());
        readable.get(topic).copied().unwrap_or(false)
            && u32::try_from(partition).is_ok_and(|partition| partition < count)
    };
    let topics: Vec<api::TopicPartitionList> = request
        .topics
        .iter()
        .map(|topic| api::TopicPartitionList {
            name: owned(&topic.name),
            partitions: topic
                .partitions
                .iter()
                .filter(|entry| exists(&topic.name, entry.partition_index))
                .map(|entry| entry.partition_index as u32)
                .collect(),
        })
        .filter(|topic| !topic.partitions.is_empty())
        .collect();
    let deleting = api::OffsetDeleteRequest {
        group_id: owned(&request.group_id),
        topics,
    };
    let response = native::delete_offsets(context.services, deleting).await;
    if !response.error_code.is_none() {
        return OffsetDeleteResponse::default().with_error_code(kafka_code(response.error_code));
    }
    let mut answered: HashMap<(&str, u32), ErrorCode> = HashMap::new();
    for topic in &response.topics {
        for partition in &topic.partitions {
            answered.insert(
                (topic.name.as_str(), partition.partition),
                partition.error_code,
            );
        }
    }
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|entry| {
                    let error_code = if !readable[topic.name.as_str()] {
                        code(ResponseError::TopicAuthorizationFailed)
                    } else if exists(&topic.name, entry.partition_index) {
                        let partition = entry.partition_index as u32;
                        let found = answered.get(&(topic.name.as_str(), partition)).copied();
                        kafka_code(found.unwrap_or(ErrorCode::None))
                    } else {
                        code(ResponseError::UnknownTopicOrPartition)
                    };
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(entry.partition_index)
                        .with_error_code(error_code)
                })
                .collect();
            OffsetDeleteResponseTopic::default()
                .with_name(topic.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    OffsetDeleteResponse::default().with_topics(topics)
}
