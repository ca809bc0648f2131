//! [`GroupAdmin`]: consumer group administration — list, describe (members, assignments,
//! committed offsets, lag), delete, and reset the offsets of a stopped group.
//!
//! Resetting is done as Kafka's tools do it, on the client: look the target offsets up with
//! ListOffsets, then commit them from outside the membership, which the coordinator accepts
//! only while the group has no members.

use spate_protocol::api::{
    ConsumerAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupState, ListGroupsRequest,
    OffsetSpec,
};
use spate_protocol::ErrorCode;

use super::member;
use crate::admin::list_offsets;
use crate::client::Client;
use crate::completion::Completion;
use crate::consumer::TopicPartition;
use crate::error::Error;
use crate::network::Retry;

/// One line of [`GroupAdmin::list_groups`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// The group id.
    pub group_id: String,
    /// `consumer` for consumer groups; empty for a group that only holds offsets.
    pub protocol_type: String,
    /// Where the group is in its life.
    pub state: GroupState,
}

/// A member, as [`GroupAdmin::describe_group`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Its id in the group.
    pub member_id: String,
    /// Its static instance id, if it has one.
    pub group_instance_id: Option<String>,
    /// The client id it connected with.
    pub client_id: String,
    /// The partitions assigned to it (empty if its assignment is not a consumer's).
    pub assignment: Vec<TopicPartition>,
}

/// A committed offset with the partition's end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedPosition {
    /// The partition.
    pub partition: TopicPartition,
    /// The next offset the group will read.
    pub committed_offset: u64,
    /// The metadata committed with it.
    pub metadata: Option<String>,
    /// The partition's high watermark (`None` if the partition is gone).
    pub high_watermark: Option<u64>,
    /// Records not yet consumed by the group.
    pub lag: Option<u64>,
}

/// What [`GroupAdmin::describe_group`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// The group id.
    pub group_id: String,
    /// Where the group is in its life.
    pub state: GroupState,
    /// The protocol (assignor) of the current generation.
    pub protocol: String,
    /// The current generation.
    pub generation: i32,
    /// The leader's member id (empty without members).
    pub leader: String,
    /// The members, with their assignments.
    pub members: Vec<MemberDescription>,
    /// Every committed offset, with lag.
    pub offsets: Vec<CommittedPosition>,
}

/// Where [`GroupAdmin::reset_offsets`] moves a group's position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetTarget {
    /// Each partition's log start.
    Earliest,
    /// Each partition's end: only new records are read.
    Latest,
    /// This offset on every partition.
    Offset(u64),
    /// The first record at or after this time (ms since the epoch); the end where none is.
    Timestamp(i64),
}

/// Administration of consumer groups.
///
/// ```no_run
/// use spate_client::Client;
/// use spate_client::group::{GroupAdmin, ResetTarget};
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let groups = GroupAdmin::new(&client);
/// for group in groups.list_groups().wait()? {
///     println!("{} {}", group.group_id, group.state);
/// }
/// let moved = groups.reset_offsets("billing", "orders", ResetTarget::Earliest).wait()?;
/// println!("{} partitions reset", moved.len());
/// # Ok::<(), spate_client::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct GroupAdmin {
    client: Client,
}

impl GroupAdmin {
    /// Group administration through `client`.
    pub fn new(client: &Client) -> Self {
        Self {
            client: client.clone(),
        }
    }

    /// Every group the broker knows, by id.
    pub fn list_groups(&self) -> Completion<Vec<GroupSummary>> {
        let network = self.client.network().clone();
        self.client.spawn("list groups", async move {
            let response = network
                .call_retrying(
                    &ListGroupsRequest::default(),
                    "list groups",
                    Retry::Idempotent,
                )
                .await?;
            if !response.error_code.is_none() {
                return Err(Error::broker(
                    "list groups",
                    None,
                    None,
                    response.error_code,
                    None,
                ));
            }
            Ok(response
                .groups
                .into_iter()
                .map(|group| GroupSummary {
                    group_id: group.group_id,
                    protocol_type: group.protocol_type,
                    state: group.state,
                })
                .collect())
        })
    }

    /// Members, assignments, committed offsets and lag of one group.
    pub fn describe_group(&self, group_id: &str) -> Completion<GroupDescription> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        self.client.spawn("describe group", async move {
            let request = DescribeGroupsRequest {
                groups: vec![group_id.clone()],
            };
            let response = network
                .call_retrying(&request, "describe group", Retry::Idempotent)
                .await?;
            let refused = |code| {
                Error::broker(
                    "describe group",
                    None,
                    None,
                    code,
                    Some(format!("group {group_id:?}")),
                )
            };
            if !response.error_code.is_none() {
                return Err(refused(response.error_code));
            }
            let group = response
                .groups
                .into_iter()
                .next()
                .ok_or_else(|| refused(ErrorCode::Unknown))?;
            if !group.error_code.is_none() {
                return Err(refused(group.error_code));
            }
            Ok(GroupDescription {
                group_id: group.group_id,
                state: group.state,
                protocol: group.protocol_name,
                generation: group.generation_id,
                leader: group.leader,
                members: group
                    .members
                    .into_iter()
                    .map(|member| MemberDescription {
                        member_id: member.member_id,
                        group_instance_id: member.group_instance_id,
                        client_id: member.client_id,
                        assignment: ConsumerAssignment::decode(member.assignment)
                            .map(|assignment| {
                                assignment
                                    .topic_partitions()
                                    .map(|(topic, partition)| TopicPartition::new(topic, partition))
                                    .collect()
                            })
                            .unwrap_or_default(),
                    })
                    .collect(),
                offsets: group
                    .offsets
                    .into_iter()
                    .flat_map(|topic| {
                        let name = topic.name;
                        topic
                            .partitions
                            .into_iter()
                            .map(move |offset| CommittedPosition {
                                partition: TopicPartition::new(name.clone(), offset.partition),
                                committed_offset: offset.committed_offset,
                                lag: offset.lag(),
                                metadata: offset.metadata,
                                high_watermark: offset.high_watermark,
                            })
                    })
                    .collect(),
            })
        })
    }

    /// Deletes a group without members, with all its committed offsets.
    pub fn delete_group(&self, group_id: &str) -> Completion<()> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        self.client.spawn("delete group", async move {
            let request = DeleteGroupsRequest {
                groups: vec![group_id.clone()],
            };
            let response = network
                .call_retrying(&request, "delete group", Retry::Idempotent)
                .await?;
            let code = if response.error_code.is_none() {
                response
                    .results
                    .first()
                    .map_or(ErrorCode::Unknown, |result| result.error_code)
            } else {
                response.error_code
            };
            match code {
                ErrorCode::None => Ok(()),
                code => Err(Error::broker(
                    "delete group",
                    None,
                    None,
                    code,
                    Some(format!("group {group_id:?}")),
                )),
            }
        })
    }

    /// Moves a stopped group's committed offsets on every partition of `topic` to `target`.
    /// Refused (`NonEmptyGroup`) while the group has members. Returns the new offsets.
    pub fn reset_offsets(
        &self,
        group_id: &str,
        topic: &str,
        target: ResetTarget,
    ) -> Completion<Vec<(u32, u64)>> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        let topic = topic.to_string();
        self.client.spawn("reset offsets", async move {
            let partition_count = network.refresh_topic(&topic).await?.partition_count();
            let partitions: Vec<u32> = (0..partition_count).collect();
            let offsets: Vec<u64> = match target {
                ResetTarget::Offset(offset) => vec![offset; partitions.len()],
                ResetTarget::Earliest => {
                    lookup(&network, &topic, &partitions, OffsetSpec::Earliest).await?
                }
                ResetTarget::Latest => {
                    lookup(&network, &topic, &partitions, OffsetSpec::Latest).await?
                }
                ResetTarget::Timestamp(timestamp) => {
                    let found = list_offsets(
                        &network,
                        &topic,
                        Some(partitions.clone()),
                        OffsetSpec::Timestamp(timestamp),
                    )
                    .await?;
                    let ends = lookup(&network, &topic, &partitions, OffsetSpec::Latest).await?;
                    found
                        .iter()
                        .zip(ends)
                        .map(|(answer, end)| answer.offset.unwrap_or(end))
                        .collect()
                }
            };
            let commits = partitions
                .iter()
                .zip(&offsets)
                .map(|(partition, offset)| {
                    (TopicPartition::new(topic.clone(), *partition), *offset)
                })
                .collect();
            member::commit(&network, &group_id, None, commits).await?;
            Ok(partitions.into_iter().zip(offsets).collect())
        })
    }
}

async fn lookup(
    network: &crate::network::Network,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<Vec<u64>, Error> {
    let found = list_offsets(network, topic, Some(partitions.to_vec()), spec).await?;
    Ok(found
        .iter()
        .map(|answer| answer.offset.unwrap_or(0))
        .collect())
}
