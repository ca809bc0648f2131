//! Consumer group handlers: decode the group APIs, find each group's coordinator shard (from the
//! offsets topic in the catalog, creating the topic on a group's first join or commit), run the
//! matching `group::coordinator` function there (a typed cross-shard call), and encode the
//! answer. The Kafka group APIs (`kafka::groups`) run the same functions; each protocol puts
//! members' subscriptions and assignments into its own layout on the way out
//! (`group::dialect`), so a group may mix native and Kafka members.
//!
//! The only work done here rather than at the coordinator: fanning DescribeGroups, DeleteGroups
//! and ListGroups out to several coordinators and joining the answers, and filling in each
//! described offset's high watermark (so tools can show lag) from the partitions' owners.
//! Group rules live in `group`.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use spate_protocol::api::ApiKey;
use spate_protocol::api::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    DescribedGroup, GroupResult, GroupState, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest,
    JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest,
    ListGroupsResponse, MemberResult, Message, OffsetCommitRequest, OffsetCommitResponse,
    OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchRequest, OffsetFetchResponse,
    PartitionResult, SyncGroupRequest, SyncGroupResponse, TopicPartitions, TxnOffsetCommitRequest,
    TxnOffsetCommitResponse,
};
use spate_protocol::error::{ErrorCode, WireError};

use super::access::{Access, Refused};
use super::{encode, reject, Envelope};
use crate::catalog::{ShardId, TopicMetadata};
use crate::group::coordinator::{self, coordinator_error_code, offsets_topic};
use crate::group::dialect::{described_group_for, join_response_for, sync_response_for, Dialect};
use crate::group::{coordinator_shard_of, offsets_partition_of, ClientInfo};
use crate::services::Services;
use crate::shard::join_all;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::PartitionKey;
use crate::shard::router::scatter;
use spate_protocol::api::OffsetFetchPartition;
use spate_security::Operation;

/// A decoded group request.
pub enum GroupRequest {
    /// With the client id from the request header, shown when the group is described.
    Join(Envelope<JoinGroupRequest>, String),
    Sync(Envelope<SyncGroupRequest>),
    Heartbeat(Envelope<HeartbeatRequest>),
    Leave(Envelope<LeaveGroupRequest>),
    CommitOffsets(Envelope<OffsetCommitRequest>),
    FetchOffsets(Envelope<OffsetFetchRequest>),
    DeleteOffsets(Envelope<OffsetDeleteRequest>),
    List(Envelope<ListGroupsRequest>),
    Describe(Envelope<DescribeGroupsRequest>),
    Delete(Envelope<DeleteGroupsRequest>),
}

/// Whether `api_key` is one of the group APIs this file serves.
pub fn is_group_api(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::JoinGroup
            | ApiKey::SyncGroup
            | ApiKey::Heartbeat
            | ApiKey::LeaveGroup
            | ApiKey::OffsetCommit
            | ApiKey::OffsetFetch
            | ApiKey::OffsetDelete
            | ApiKey::ListGroups
            | ApiKey::DescribeGroups
            | ApiKey::DeleteGroups
    )
}

/// Decodes the body of a group API request.
pub fn decode(
    api_key: ApiKey,
    correlation_id: u32,
    version: u16,
    client_id: String,
    body: Bytes,
) -> Result<GroupRequest, WireError> {
    fn envelope<M: Message>(
        correlation_id: u32,
        version: u16,
        body: Bytes,
    ) -> Result<Envelope<M>, WireError> {
        Ok(Envelope {
            correlation_id,
            version,
            body: M::decode(version, body)?,
        })
    }
    Ok(match api_key {
        ApiKey::JoinGroup => {
            GroupRequest::Join(envelope(correlation_id, version, body)?, client_id)
        }
        ApiKey::SyncGroup => GroupRequest::Sync(envelope(correlation_id, version, body)?),
        ApiKey::Heartbeat => GroupRequest::Heartbeat(envelope(correlation_id, version, body)?),
        ApiKey::LeaveGroup => GroupRequest::Leave(envelope(correlation_id, version, body)?),
        ApiKey::OffsetCommit => {
            GroupRequest::CommitOffsets(envelope(correlation_id, version, body)?)
        }
        ApiKey::OffsetFetch => GroupRequest::FetchOffsets(envelope(correlation_id, version, body)?),
        ApiKey::OffsetDelete => {
            GroupRequest::DeleteOffsets(envelope(correlation_id, version, body)?)
        }
        ApiKey::ListGroups => GroupRequest::List(envelope(correlation_id, version, body)?),
        ApiKey::DescribeGroups => GroupRequest::Describe(envelope(correlation_id, version, body)?),
        ApiKey::DeleteGroups => GroupRequest::Delete(envelope(correlation_id, version, body)?),
        other => {
            return Err(WireError::UnknownApiKey {
                api_key: other.to_u16(),
            })
        }
    })
}

/// Runs a group request for a connection whose principal `access` checks, and encodes its
/// response: a group the principal may not use refuses the whole request (Read to be a member
/// or commit, Describe to fetch offsets, Delete to delete offsets); topics it may not read (or
/// describe, for OffsetFetch) are answered per partition; DescribeGroups and DeleteGroups answer
/// each group, and ListGroups lists only the groups it may describe unless it may describe the
/// cluster.
pub async fn execute(
    services: &Rc<Services>,
    access: Access<'_>,
    request: GroupRequest,
) -> Option<Vec<Bytes>> {
    if let Some((api_key, correlation_id, version)) = refused_group(access, &request) {
        return reject(
            api_key,
            correlation_id,
            version,
            ErrorCode::GroupAuthorizationFailed,
        )
        .answer;
    }
    let topic_refusal = |operation| move |topic: &str| access.topic_refusal(operation, topic);
    match request {
        GroupRequest::Join(request, client_id) => {
            let client = ClientInfo {
                client_id,
                ..ClientInfo::default()
            };
            let mut response = join_group(services, request.body, client).await;
            join_response_for(Dialect::Native, &mut response);
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Sync(request) => {
            let mut response = sync_group(services, request.body).await;
            sync_response_for(Dialect::Native, &mut response);
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Heartbeat(request) => {
            let response = heartbeat(services, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Leave(request) => {
            let response = leave_group(services, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::CommitOffsets(mut request) => {
            let refused = Refused::take(
                &mut request.body.topics,
                |partition| partition.partition,
                topic_refusal(Operation::Read),
            );
            let mut response = if request.body.topics.is_empty() && !refused.is_empty() {
                OffsetCommitResponse::default()
            } else {
                commit_offsets(services, request.body).await
            };
            refused.answer(&mut response.topics, partition_result);
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::FetchOffsets(mut request) => {
            let refused = match &mut request.body.topics {
                Some(topics) => Refused::take_lists(topics, topic_refusal(Operation::Describe)),
                None => Refused::default(),
            };
            let mut response = fetch_offsets(services, request.body).await;
            response
                .topics
                .retain(|topic| access.topic(Operation::Describe, &topic.name));
            refused.answer(&mut response.topics, |partition, error_code| {
                OffsetFetchPartition {
                    partition,
                    error_code,
                    ..OffsetFetchPartition::default()
                }
            });
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::DeleteOffsets(mut request) => {
            let refused =
                Refused::take_lists(&mut request.body.topics, topic_refusal(Operation::Read));
            let mut response = if request.body.topics.is_empty() && !refused.is_empty() {
                OffsetDeleteResponse::default()
            } else {
                delete_offsets(services, request.body).await
            };
            refused.answer(&mut response.topics, partition_result);
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::List(request) => {
            let mut response = list_groups(services, &request.body.states).await;
            if !access.cluster(Operation::Describe) {
                response
                    .groups
                    .retain(|group| access.group(Operation::Describe, &group.group_id));
            }
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Describe(request) => {
            let (allowed, refused): (Vec<String>, Vec<String>) = request
                .body
                .groups
                .iter()
                .cloned()
                .partition(|group_id| access.group(Operation::Describe, group_id));
            let mut response = describe_groups(services, allowed).await;
            for group in &mut response.groups {
                described_group_for(Dialect::Native, group);
            }
            response
                .groups
                .extend(refused.into_iter().map(|group_id| DescribedGroup {
                    error_code: ErrorCode::GroupAuthorizationFailed,
                    group_id,
                    state: GroupState::Dead,
                    ..DescribedGroup::default()
                }));
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Delete(request) => {
            let (allowed, refused): (Vec<String>, Vec<String>) = request
                .body
                .groups
                .iter()
                .cloned()
                .partition(|group_id| access.group(Operation::Delete, group_id));
            let mut response = delete_groups(services, allowed).await;
            response
                .results
                .extend(refused.into_iter().map(|group_id| GroupResult {
                    group_id,
                    error_code: ErrorCode::GroupAuthorizationFailed,
                }));
            encode(request.correlation_id, request.version, &response)
        }
    }
}

/// The API, correlation id and version of a group request whose group the principal may not
/// use as the request needs; `None` when it may (or the request names several groups, each
/// answered on its own).
fn refused_group(access: Access<'_>, request: &GroupRequest) -> Option<(ApiKey, u32, u16)> {
    fn named<R>(
        access: Access<'_>,
        api_key: ApiKey,
        request: &Envelope<R>,
        operation: Operation,
        group_id: &str,
    ) -> Option<(ApiKey, u32, u16)> {
        (!access.group(operation, group_id)).then_some((
            api_key,
            request.correlation_id,
            request.version,
        ))
    }
    match request {
        GroupRequest::Join(request, _) => named(
            access,
            ApiKey::JoinGroup,
            request,
            Operation::Read,
            &request.body.group_id,
        ),
        GroupRequest::Sync(request) => named(
            access,
            ApiKey::SyncGroup,
            request,
            Operation::Read,
            &request.body.group_id,
        ),
        GroupRequest::Heartbeat(request) => named(
            access,
            ApiKey::Heartbeat,
            request,
            Operation::Read,
            &request.body.group_id,
        ),
        GroupRequest::Leave(request) => named(
            access,
            ApiKey::LeaveGroup,
            request,
            Operation::Read,
            &request.body.group_id,
        ),
        GroupRequest::CommitOffsets(request) => named(
            access,
            ApiKey::OffsetCommit,
            request,
            Operation::Read,
            &request.body.group_id,
        ),
        GroupRequest::FetchOffsets(request) => named(
            access,
            ApiKey::OffsetFetch,
            request,
            Operation::Describe,
            &request.body.group_id,
        ),
        GroupRequest::DeleteOffsets(request) => named(
            access,
            ApiKey::OffsetDelete,
            request,
            Operation::Delete,
            &request.body.group_id,
        ),
        GroupRequest::List(_) | GroupRequest::Describe(_) | GroupRequest::Delete(_) => None,
    }
}

fn partition_result(partition: u32, error_code: ErrorCode) -> PartitionResult {
    PartitionResult {
        partition,
        error_code,
    }
}

// ---- routing -------------------------------------------------------------------------------

/// Where a group's state lives.
#[derive(Debug, Clone, Copy)]
struct Route {
    partition: u32,
    coordinator: ShardId,
}

fn route_in(topic: &TopicMetadata, group_id: &str, shard_count: usize) -> Route {
    let partition = offsets_partition_of(group_id, topic.partition_count());
    Route {
        partition,
        coordinator: coordinator_shard_of(partition, shard_count),
    }
}

/// The group's route; `Ok(None)` when the offsets topic does not exist and `create` is false
/// (then no group exists either).
async fn route(
    services: &Rc<Services>,
    group_id: &str,
    create: bool,
) -> Result<Option<Route>, ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let topic = offsets_topic(services, create).await?;
    Ok(topic.map(|topic| route_in(&topic, group_id, services.shard_count)))
}

/// Runs `run` on the group's coordinator shard with that shard's services; a coordinator that
/// is stopping answers with its code.
async fn on_coordinator<T, F, Fut>(
    services: &Rc<Services>,
    coordinator: ShardId,
    run: F,
) -> Result<T, ErrorCode>
where
    T: Send + 'static,
    F: FnOnce(Rc<Services>) -> Fut + Send + 'static,
    Fut: Future<Output = T> + 'static,
{
    invoke_on(services, coordinator, run)
        .await
        .map_err(|stopping| coordinator_error_code(&stopping.into()))
}

// ---- membership --------------------------------------------------------------------------------

pub(crate) async fn join_group(
    services: &Rc<Services>,
    request: JoinGroupRequest,
    client: ClientInfo,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let failed = |code| JoinGroupResponse::error(code, &member_id);
    let route = match route(services, &request.group_id, true).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::CoordinatorNotAvailable),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::join(&on, partition, request, client).await
    })
    .await
    .unwrap_or_else(failed)
}

pub(crate) async fn sync_group(
    services: &Rc<Services>,
    request: SyncGroupRequest,
) -> SyncGroupResponse {
    let route = match route(services, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return SyncGroupResponse::error(ErrorCode::UnknownMemberId),
        Err(code) => return SyncGroupResponse::error(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::sync(&on, partition, request).await
    })
    .await
    .unwrap_or_else(SyncGroupResponse::error)
}

pub(crate) async fn heartbeat(
    services: &Rc<Services>,
    request: HeartbeatRequest,
) -> HeartbeatResponse {
    let failed = |error_code| HeartbeatResponse { error_code };
    let route = match route(services, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::UnknownMemberId),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::heartbeat(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

pub(crate) async fn leave_group(
    services: &Rc<Services>,
    request: LeaveGroupRequest,
) -> LeaveGroupResponse {
    let failed = |error_code| LeaveGroupResponse {
        error_code,
        members: Vec::new(),
    };
    let route = match route(services, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => {
            return LeaveGroupResponse {
                error_code: ErrorCode::None,
                members: request
                    .members
                    .iter()
                    .map(|identity| MemberResult {
                        member_id: identity.member_id.clone(),
                        group_instance_id: identity.group_instance_id.clone(),
                        error_code: ErrorCode::UnknownMemberId,
                    })
                    .collect(),
            }
        }
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::leave(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

// ---- offsets ---------------------------------------------------------------------------------

pub(crate) async fn commit_offsets(
    services: &Rc<Services>,
    request: OffsetCommitRequest,
) -> OffsetCommitResponse {
    // Kept to answer every partition should the coordinator not answer at all.
    let shape: Vec<(String, Vec<u32>)> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic.partitions.iter().map(|entry| entry.partition);
            (topic.name.clone(), partitions.collect())
        })
        .collect();
    let failed = |error_code: ErrorCode| OffsetCommitResponse {
        error_code,
        topics: shape
            .iter()
            .map(|(name, partitions)| TopicPartitions {
                name: name.clone(),
                partitions: partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        partition: *partition,
                        error_code,
                    })
                    .collect(),
            })
            .collect(),
    };
    let route = match route(services, &request.group_id, true).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::CoordinatorNotAvailable),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::commit_offsets(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

/// With `require_stable`, partitions with an offset pending in an open transaction are answered
/// `UnstableOffsetCommit` (see `coordinator::fetch_offsets`).
pub(crate) async fn fetch_offsets(
    services: &Rc<Services>,
    request: OffsetFetchRequest,
) -> OffsetFetchResponse {
    let failed = |error_code| OffsetFetchResponse {
        error_code,
        topics: Vec::new(),
    };
    let route = match route(services, &request.group_id, false).await {
        Ok(Some(route)) => route,
        // No offsets topic: no group has committed anything.
        Ok(None) => return OffsetFetchResponse::default(),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::fetch_offsets(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

/// A transactional offset commit (TxnOffsetCommit) once the transaction coordinator confirmed
/// the group is in the producer's transaction at its epoch (KIP-890,
/// `txn::coordinator::verify_group`; refusals answered with its native code): without that, a
/// fenced producer's late commit would open a transaction in the offsets partition that no
/// marker ends.
pub(crate) async fn commit_transactional_offsets(
    services: &Rc<Services>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let verified = crate::txn::coordinator::verify_group(
        services,
        &request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        &request.group_id,
    )
    .await;
    match verified {
        Ok(()) => commit_verified_transactional_offsets(services, request).await,
        Err(error) => {
            let error_code = super::txn::txn_error_code(&error);
            TxnOffsetCommitResponse {
                error_code,
                topics: request
                    .topics
                    .iter()
                    .map(|topic| TopicPartitions {
                        name: topic.name.clone(),
                        partitions: topic
                            .partitions
                            .iter()
                            .map(|entry| PartitionResult {
                                partition: entry.partition,
                                error_code,
                            })
                            .collect(),
                    })
                    .collect(),
            }
        }
    }
}

/// A transactional offset commit whose transaction was verified, run on the group's
/// coordinator: the offsets wait there for the transaction's end
/// (`coordinator::complete_transaction`).
pub(crate) async fn commit_verified_transactional_offsets(
    services: &Rc<Services>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    // Kept to answer every partition should the coordinator not answer at all.
    let shape: Vec<(String, Vec<u32>)> = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic.partitions.iter().map(|entry| entry.partition);
            (topic.name.clone(), partitions.collect())
        })
        .collect();
    let failed = |error_code: ErrorCode| TxnOffsetCommitResponse {
        error_code,
        topics: shape
            .iter()
            .map(|(name, partitions)| TopicPartitions {
                name: name.clone(),
                partitions: partitions
                    .iter()
                    .map(|partition| PartitionResult {
                        partition: *partition,
                        error_code,
                    })
                    .collect(),
            })
            .collect(),
    };
    let route = match route(services, &request.group_id, true).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::CoordinatorNotAvailable),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::commit_transactional_offsets(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

pub(crate) async fn delete_offsets(
    services: &Rc<Services>,
    request: OffsetDeleteRequest,
) -> OffsetDeleteResponse {
    let failed = |error_code| OffsetDeleteResponse {
        error_code,
        topics: Vec::new(),
    };
    let route = match route(services, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::GroupIdNotFound),
        Err(code) => return failed(code),
    };
    let partition = route.partition;
    on_coordinator(services, route.coordinator, move |on| async move {
        coordinator::delete_offsets(&on, partition, request).await
    })
    .await
    .unwrap_or_else(failed)
}

// ---- administration ------------------------------------------------------------------------------

/// Groups with their offsets partitions, as one coordinator gets them.
type RoutedGroups = Vec<(u32, String)>;

/// Sends each coordinator its groups (with their partitions) through `build` and puts the
/// answers back in request order; `None` for a group whose coordinator could not answer,
/// with the code.
async fn fan_out<T, F, Fut>(
    services: &Rc<Services>,
    topic: &TopicMetadata,
    groups: &[String],
    run: F,
) -> Vec<Result<T, ErrorCode>>
where
    T: Send + 'static,
    F: Fn(Rc<Services>, RoutedGroups) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Vec<T>> + 'static,
{
    let mut by_coordinator: BTreeMap<ShardId, (Vec<usize>, RoutedGroups)> = BTreeMap::new();
    for (index, group_id) in groups.iter().enumerate() {
        let route = route_in(topic, group_id, services.shard_count);
        let entry = by_coordinator.entry(route.coordinator).or_default();
        entry.0.push(index);
        entry.1.push((route.partition, group_id.clone()));
    }
    let mut positions = Vec::new();
    let mut calls = Vec::new();
    for (coordinator, (indexes, routed)) in by_coordinator {
        positions.push(indexes);
        let services = services.clone();
        let run = run.clone();
        calls.push(async move {
            on_coordinator(&services, coordinator, move |on| run(on, routed)).await
        });
    }
    let answers = join_all(calls).await;
    let mut results: Vec<Option<Result<T, ErrorCode>>> = groups.iter().map(|_| None).collect();
    for (indexes, answer) in positions.into_iter().zip(answers) {
        match answer {
            Ok(items) => {
                assert_eq!(
                    items.len(),
                    indexes.len(),
                    "a coordinator answers each of its groups"
                );
                for (index, item) in indexes.into_iter().zip(items) {
                    results[index] = Some(Ok(item));
                }
            }
            Err(code) => {
                for index in indexes {
                    results[index] = Some(Err(code));
                }
            }
        }
    }
    results
        .into_iter()
        .map(|result| result.expect("every group has one coordinator"))
        .collect()
}

pub(crate) async fn describe_groups(
    services: &Rc<Services>,
    groups: Vec<String>,
) -> DescribeGroupsResponse {
    let mut response = describe_group_states(services, groups).await;
    fill_high_watermarks(services, &mut response.groups).await;
    response
}

/// The groups' states, members and committed offsets from their coordinators, without the
/// offsets' high watermarks (which cost a call to every partition's owner).
pub(crate) async fn describe_group_states(
    services: &Rc<Services>,
    groups: Vec<String>,
) -> DescribeGroupsResponse {
    let not_found = |group_id: &str, error_code| DescribedGroup {
        error_code,
        group_id: group_id.to_string(),
        state: GroupState::Dead,
        ..DescribedGroup::default()
    };
    let topic = match offsets_topic(services, false).await {
        Ok(Some(topic)) => topic,
        Ok(None) => {
            return DescribeGroupsResponse {
                error_code: ErrorCode::None,
                groups: groups
                    .iter()
                    .map(|group_id| not_found(group_id, ErrorCode::GroupIdNotFound))
                    .collect(),
            }
        }
        Err(error_code) => {
            return DescribeGroupsResponse {
                error_code,
                groups: Vec::new(),
            }
        }
    };
    let results = fan_out(services, &topic, &groups, |on, groups| async move {
        coordinator::describe(&on, groups).await.groups
    })
    .await;
    let described: Vec<DescribedGroup> = groups
        .iter()
        .zip(results)
        .map(|(group_id, result)| match result {
            Ok(group) => group,
            Err(code) => not_found(group_id, code),
        })
        .collect();
    DescribeGroupsResponse {
        error_code: ErrorCode::None,
        groups: described,
    }
}

/// Asks the owners of every described offset's partition for its high watermark.
async fn fill_high_watermarks(services: &Rc<Services>, groups: &mut [DescribedGroup]) {
    let snapshot = services.snapshot();
    let mut items = Vec::new();
    let mut places = Vec::new();
    for (group_index, group) in groups.iter().enumerate() {
        for (topic_index, topic) in group.offsets.iter().enumerate() {
            let Some(metadata) = snapshot.topic(&topic.name) else {
                continue;
            };
            for (partition_index, offset) in topic.partitions.iter().enumerate() {
                if let Some(owner) = metadata.owner_of(offset.partition) {
                    let key = PartitionKey {
                        topic_id: metadata.id,
                        partition: offset.partition,
                    };
                    items.push((owner, key));
                    places.push((group_index, topic_index, partition_index));
                }
            }
        }
    }
    if items.is_empty() {
        return;
    }
    let states = scatter(services, items, |shard, partitions| async move {
        shard.states(&partitions)
    })
    .await;
    for ((group_index, topic_index, partition_index), state) in places.into_iter().zip(states) {
        if let Ok(state) = state {
            groups[group_index].offsets[topic_index].partitions[partition_index].high_watermark =
                Some(state.high_watermark);
        }
    }
}

pub(crate) async fn delete_groups(
    services: &Rc<Services>,
    groups: Vec<String>,
) -> DeleteGroupsResponse {
    let result_of = |group_id: &str, error_code| GroupResult {
        group_id: group_id.to_string(),
        error_code,
    };
    let topic: Arc<TopicMetadata> = match offsets_topic(services, false).await {
        Ok(Some(topic)) => topic,
        Ok(None) => {
            return DeleteGroupsResponse {
                error_code: ErrorCode::None,
                results: groups
                    .iter()
                    .map(|group_id| result_of(group_id, ErrorCode::GroupIdNotFound))
                    .collect(),
            }
        }
        Err(error_code) => {
            return DeleteGroupsResponse {
                error_code,
                results: Vec::new(),
            }
        }
    };
    let results = fan_out(services, &topic, &groups, |on, groups| async move {
        coordinator::delete_groups(&on, groups).await.results
    })
    .await;
    DeleteGroupsResponse {
        error_code: ErrorCode::None,
        results: groups
            .iter()
            .zip(results)
            .map(|(group_id, result)| match result {
                Ok(result) => result,
                Err(code) => result_of(group_id, code),
            })
            .collect(),
    }
}

pub(crate) async fn list_groups(
    services: &Rc<Services>,
    states: &[GroupState],
) -> ListGroupsResponse {
    match offsets_topic(services, false).await {
        Ok(Some(_)) => {}
        Ok(None) => return ListGroupsResponse::default(),
        Err(error_code) => {
            return ListGroupsResponse {
                error_code,
                groups: Vec::new(),
            }
        }
    }
    let calls: Vec<_> = (0..services.shard_count)
        .map(|coordinator| {
            let services = services.clone();
            let states = states.to_vec();
            async move {
                on_coordinator(&services, coordinator, move |on| async move {
                    coordinator::list(&on, &states).await
                })
                .await
            }
        })
        .collect();
    let mut response = ListGroupsResponse::default();
    for answer in join_all(calls).await {
        match answer {
            Ok(listed) if listed.error_code.is_none() => response.groups.extend(listed.groups),
            Ok(listed) => response.error_code = listed.error_code,
            Err(code) => response.error_code = code,
        }
    }
    response
        .groups
        .sort_by(|left, right| left.group_id.cmp(&right.group_id));
    response
}
