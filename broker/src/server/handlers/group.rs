//! Consumer group handlers: decode the group APIs, find each group's coordinator shard (from the
//! offsets topic in the catalog, creating the topic on a group's first join or commit), forward
//! the request there as a `GroupCall`, and encode the answer.
//!
//! The only work done here rather than at the coordinator: fanning DescribeGroups, DeleteGroups
//! and ListGroups out to several coordinators and joining the answers, and filling in each
//! described offset's high watermark (so tools can show lag) from the partitions' owners.
//! Group rules live in `group`.

use std::collections::BTreeMap;
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
    PartitionResult, SyncGroupRequest, SyncGroupResponse, TopicPartitions,
};
use spate_protocol::error::{ErrorCode, WireError};

use super::{encode, Envelope};
use crate::catalog::{ShardId, TopicMetadata};
use crate::group::coordinator::{coordinator_error_code, offsets_topic};
use crate::group::{
    coordinator_shard_of, offsets_partition_of, ClientInfo, GroupAnswer, GroupCall,
};
use crate::shard::messages::{PartitionKey, ShardRequest, ShardResponse};
use crate::shard::router::scatter;
use crate::shard::{join_all, Shard};

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

/// Runs a group request and encodes its response.
pub async fn execute(shard: &Rc<Shard>, request: GroupRequest) -> Option<Vec<Bytes>> {
    match request {
        GroupRequest::Join(request, client_id) => {
            let response = join_group(shard, request.body, client_id).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Sync(request) => {
            let response = sync_group(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Heartbeat(request) => {
            let response = heartbeat(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Leave(request) => {
            let response = leave_group(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::CommitOffsets(request) => {
            let response = commit_offsets(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::FetchOffsets(request) => {
            let response = fetch_offsets(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::DeleteOffsets(request) => {
            let response = delete_offsets(shard, request.body).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::List(request) => {
            let response = list_groups(shard, &request.body.states).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Describe(request) => {
            let response = describe_groups(shard, request.body.groups).await;
            encode(request.correlation_id, request.version, &response)
        }
        GroupRequest::Delete(request) => {
            let response = delete_groups(shard, request.body.groups).await;
            encode(request.correlation_id, request.version, &response)
        }
    }
}

/// The error response of a group API whose request could not be decoded.
pub fn error_response(
    api_key: ApiKey,
    correlation_id: u32,
    error_code: ErrorCode,
) -> Option<Vec<Bytes>> {
    let version = 0;
    match api_key {
        ApiKey::JoinGroup => encode(
            correlation_id,
            version,
            &JoinGroupResponse::error(error_code, ""),
        ),
        ApiKey::SyncGroup => encode(
            correlation_id,
            version,
            &SyncGroupResponse::error(error_code),
        ),
        ApiKey::Heartbeat => encode(correlation_id, version, &HeartbeatResponse { error_code }),
        ApiKey::LeaveGroup => encode(
            correlation_id,
            version,
            &LeaveGroupResponse {
                error_code,
                members: Vec::new(),
            },
        ),
        ApiKey::OffsetCommit => encode(
            correlation_id,
            version,
            &OffsetCommitResponse {
                error_code,
                topics: Vec::new(),
            },
        ),
        ApiKey::OffsetFetch => encode(
            correlation_id,
            version,
            &OffsetFetchResponse {
                error_code,
                topics: Vec::new(),
            },
        ),
        ApiKey::OffsetDelete => encode(
            correlation_id,
            version,
            &OffsetDeleteResponse {
                error_code,
                topics: Vec::new(),
            },
        ),
        ApiKey::ListGroups => encode(
            correlation_id,
            version,
            &ListGroupsResponse {
                error_code,
                groups: Vec::new(),
            },
        ),
        ApiKey::DescribeGroups => encode(
            correlation_id,
            version,
            &DescribeGroupsResponse {
                error_code,
                groups: Vec::new(),
            },
        ),
        ApiKey::DeleteGroups => encode(
            correlation_id,
            version,
            &DeleteGroupsResponse {
                error_code,
                results: Vec::new(),
            },
        ),
        _ => None,
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
    shard: &Rc<Shard>,
    group_id: &str,
    create: bool,
) -> Result<Option<Route>, ErrorCode> {
    if group_id.is_empty() {
        return Err(ErrorCode::InvalidGroupId);
    }
    let topic = offsets_topic(shard, create).await?;
    Ok(topic.map(|topic| route_in(&topic, group_id, shard.shard_count)))
}

async fn call(
    shard: &Rc<Shard>,
    coordinator: ShardId,
    call: GroupCall,
) -> Result<GroupAnswer, ErrorCode> {
    match shard
        .call(coordinator, ShardRequest::Group(Box::new(call)))
        .await
    {
        Ok(ShardResponse::Group(answer)) => Ok(*answer),
        Ok(_) => Err(ErrorCode::Unknown),
        Err(error) => Err(coordinator_error_code(&error)),
    }
}

/// The answer of kind `$kind`, or `$failed(code)`.
macro_rules! answer_or {
    ($answer:expr, $kind:ident, $failed:expr) => {
        match $answer {
            Ok(GroupAnswer::$kind(response)) => response,
            Ok(_) => $failed(ErrorCode::Unknown),
            Err(code) => $failed(code),
        }
    };
}

// ---- membership --------------------------------------------------------------------------------

async fn join_group(
    shard: &Rc<Shard>,
    request: JoinGroupRequest,
    client_id: String,
) -> JoinGroupResponse {
    let member_id = request.member_id.clone();
    let failed = |code| JoinGroupResponse::error(code, &member_id);
    let route = match route(shard, &request.group_id, true).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::CoordinatorNotAvailable),
        Err(code) => return failed(code),
    };
    let client = ClientInfo {
        client_id,
        client_host: String::new(),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::Join {
            partition: route.partition,
            request,
            client,
        },
    )
    .await;
    answer_or!(answer, Join, failed)
}

async fn sync_group(shard: &Rc<Shard>, request: SyncGroupRequest) -> SyncGroupResponse {
    let route = match route(shard, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return SyncGroupResponse::error(ErrorCode::UnknownMemberId),
        Err(code) => return SyncGroupResponse::error(code),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::Sync {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, Sync, SyncGroupResponse::error)
}

async fn heartbeat(shard: &Rc<Shard>, request: HeartbeatRequest) -> HeartbeatResponse {
    let failed = |error_code| HeartbeatResponse { error_code };
    let route = match route(shard, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::UnknownMemberId),
        Err(code) => return failed(code),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::Heartbeat {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, Heartbeat, failed)
}

async fn leave_group(shard: &Rc<Shard>, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let failed = |error_code| LeaveGroupResponse {
        error_code,
        members: Vec::new(),
    };
    let route = match route(shard, &request.group_id, false).await {
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
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::Leave {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, Leave, failed)
}

// ---- offsets ---------------------------------------------------------------------------------

async fn commit_offsets(shard: &Rc<Shard>, request: OffsetCommitRequest) -> OffsetCommitResponse {
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
    let route = match route(shard, &request.group_id, true).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::CoordinatorNotAvailable),
        Err(code) => return failed(code),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::CommitOffsets {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, CommitOffsets, failed)
}

async fn fetch_offsets(shard: &Rc<Shard>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let failed = |error_code| OffsetFetchResponse {
        error_code,
        topics: Vec::new(),
    };
    let route = match route(shard, &request.group_id, false).await {
        Ok(Some(route)) => route,
        // No offsets topic: no group has committed anything.
        Ok(None) => return OffsetFetchResponse::default(),
        Err(code) => return failed(code),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::FetchOffsets {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, FetchOffsets, failed)
}

async fn delete_offsets(shard: &Rc<Shard>, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
    let failed = |error_code| OffsetDeleteResponse {
        error_code,
        topics: Vec::new(),
    };
    let route = match route(shard, &request.group_id, false).await {
        Ok(Some(route)) => route,
        Ok(None) => return failed(ErrorCode::GroupIdNotFound),
        Err(code) => return failed(code),
    };
    let answer = call(
        shard,
        route.coordinator,
        GroupCall::DeleteOffsets {
            partition: route.partition,
            request,
        },
    )
    .await;
    answer_or!(answer, DeleteOffsets, failed)
}

// ---- administration ------------------------------------------------------------------------------

/// Groups with their offsets partitions, as one coordinator gets them.
type RoutedGroups = Vec<(u32, String)>;

/// Sends each coordinator its groups (with their partitions) through `build` and puts the
/// answers back in request order; `None` for a group whose coordinator could not answer,
/// with the code.
async fn fan_out<T: 'static>(
    shard: &Rc<Shard>,
    topic: &TopicMetadata,
    groups: &[String],
    build: impl Fn(Vec<(u32, String)>) -> GroupCall,
    unpack: impl Fn(GroupAnswer) -> Option<Vec<T>>,
) -> Vec<Result<T, ErrorCode>> {
    let mut by_coordinator: BTreeMap<ShardId, (Vec<usize>, RoutedGroups)> = BTreeMap::new();
    for (index, group_id) in groups.iter().enumerate() {
        let route = route_in(topic, group_id, shard.shard_count);
        let entry = by_coordinator.entry(route.coordinator).or_default();
        entry.0.push(index);
        entry.1.push((route.partition, group_id.clone()));
    }
    let mut positions = Vec::new();
    let mut calls = Vec::new();
    for (coordinator, (indexes, routed)) in by_coordinator {
        positions.push(indexes);
        let shard = shard.clone();
        let group_call = build(routed);
        calls.push(async move { call(&shard, coordinator, group_call).await });
    }
    let answers = join_all(calls).await;
    let mut results: Vec<Option<Result<T, ErrorCode>>> = groups.iter().map(|_| None).collect();
    for (indexes, answer) in positions.into_iter().zip(answers) {
        let answered = match answer.map(&unpack) {
            Ok(Some(items)) if items.len() == indexes.len() => Ok(items),
            Ok(_) => Err(ErrorCode::Unknown),
            Err(code) => Err(code),
        };
        match answered {
            Ok(items) => {
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
        .map(|result| result.unwrap_or(Err(ErrorCode::Unknown)))
        .collect()
}

async fn describe_groups(shard: &Rc<Shard>, groups: Vec<String>) -> DescribeGroupsResponse {
    let not_found = |group_id: &str, error_code| DescribedGroup {
        error_code,
        group_id: group_id.to_string(),
        state: GroupState::Dead,
        ..DescribedGroup::default()
    };
    let topic = match offsets_topic(shard, false).await {
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
    let results = fan_out(
        shard,
        &topic,
        &groups,
        |groups| GroupCall::Describe { groups },
        |answer| match answer {
            GroupAnswer::Describe(response) => Some(response.groups),
            _ => None,
        },
    )
    .await;
    let mut described: Vec<DescribedGroup> = groups
        .iter()
        .zip(results)
        .map(|(group_id, result)| match result {
            Ok(group) => group,
            Err(code) => not_found(group_id, code),
        })
        .collect();
    fill_high_watermarks(shard, &mut described).await;
    DescribeGroupsResponse {
        error_code: ErrorCode::None,
        groups: described,
    }
}

/// Asks the owners of every described offset's partition for its high watermark.
async fn fill_high_watermarks(shard: &Rc<Shard>, groups: &mut [DescribedGroup]) {
    let snapshot = shard.snapshot();
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
    let states = scatter(
        shard,
        items,
        |partitions| ShardRequest::States { partitions },
        |response| match response {
            ShardResponse::States(states) => Some(states),
            _ => None,
        },
    )
    .await;
    for ((group_index, topic_index, partition_index), state) in places.into_iter().zip(states) {
        if let Ok(state) = state {
            groups[group_index].offsets[topic_index].partitions[partition_index].high_watermark =
                Some(state.high_watermark);
        }
    }
}

async fn delete_groups(shard: &Rc<Shard>, groups: Vec<String>) -> DeleteGroupsResponse {
    let result_of = |group_id: &str, error_code| GroupResult {
        group_id: group_id.to_string(),
        error_code,
    };
    let topic: Arc<TopicMetadata> = match offsets_topic(shard, false).await {
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
    let results = fan_out(
        shard,
        &topic,
        &groups,
        |groups| GroupCall::Delete { groups },
        |answer| match answer {
            GroupAnswer::Delete(response) => Some(response.results),
            _ => None,
        },
    )
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

async fn list_groups(shard: &Rc<Shard>, states: &[GroupState]) -> ListGroupsResponse {
    match offsets_topic(shard, false).await {
        Ok(Some(_)) => {}
        Ok(None) => return ListGroupsResponse::default(),
        Err(error_code) => {
            return ListGroupsResponse {
                error_code,
                groups: Vec::new(),
            }
        }
    }
    let calls: Vec<_> = (0..shard.shard_count)
        .map(|coordinator| {
            let shard = shard.clone();
            let states = states.to_vec();
            async move { call(&shard, coordinator, GroupCall::List { states }).await }
        })
        .collect();
    let mut response = ListGroupsResponse::default();
    for answer in join_all(calls).await {
        match answer {
            Ok(GroupAnswer::List(listed)) if listed.error_code.is_none() => {
                response.groups.extend(listed.groups)
            }
            Ok(GroupAnswer::List(listed)) => response.error_code = listed.error_code,
            Ok(_) => response.error_code = ErrorCode::Unknown,
            Err(code) => response.error_code = code,
        }
    }
    response
        .groups
        .sort_by(|left, right| left.group_id.cmp(&right.group_id));
    response
}
