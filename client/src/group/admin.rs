//! [`GroupAdmin`]: consumer group administration — list, describe (members, assignments,
//! committed offsets, lag), delete a group or some of its offsets, and reset the offsets of a
//! stopped group (planned first, so a dry run shows what would move).
//!
//! Resetting is done as Kafka's tools do it, on the client: look the target offsets up with
//! ListOffsets, then commit them from outside the membership, which the coordinator accepts
//! only while the group has no members.

use spate_protocol::api::{
    ConsumerAssignment, DeleteGroupsRequest, DescribeGroupsRequest, GroupState, IsolationLevel,
    ListGroupsRequest, OffsetDeleteRequest, OffsetFetchRequest, OffsetSpec, TopicPartitionList,
};
use spate_protocol::ErrorCode;

use super::member;
use crate::admin::list_offsets;
use crate::client::Client;
use crate::completion::Completion;
use crate::consumer::TopicPartition;
use crate::error::Error;
use crate::network::{CoordinatorKind, Network, Retry, Route};

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
    /// The committed offset moved by this many records (negative: back). Every partition
    /// needs a committed offset.
    ShiftBy(i64),
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

    /// Every group the broker knows, by id; in a cluster, every group each broker
    /// coordinates (each is asked, as Kafka's admin client does).
    pub fn list_groups(&self) -> Completion<Vec<GroupSummary>> {
        let network = self.client.network().clone();
        self.client.spawn("list groups", async move {
            let request = ListGroupsRequest::default();
            let mut responses = vec![
                network
                    .call_retrying(&request, "list groups", Retry::Idempotent)
                    .await?,
            ];
            let directory = network.directory();
            if directory.is_cluster() {
                for (id, address) in &directory.brokers {
                    let route = Route::Broker {
                        id: *id,
                        address: address.clone(),
                    };
                    match network
                        .call_routed(
                            network.shared_slots(),
                            &route,
                            &request,
                            "list groups",
                            None,
                        )
                        .await
                    {
                        Ok(response) => responses.push(response),
                        // A broker that is down coordinates nothing now: its groups moved.
                        Err(
                            Error::Connect { .. }
                            | Error::ConnectionLost { .. }
                            | Error::Timeout { .. },
                        ) => {}
                        Err(error) => return Err(error),
                    }
                }
            }
            let mut groups: Vec<GroupSummary> = Vec::new();
            for response in responses {
                if !response.error_code.is_none() {
                    return Err(Error::broker(
                        "list groups",
                        None,
                        None,
                        response.error_code,
                        None,
                    ));
                }
                for group in response.groups {
                    if groups.iter().all(|known| known.group_id != group.group_id) {
                        groups.push(GroupSummary {
                            group_id: group.group_id,
                            protocol_type: group.protocol_type,
                            state: group.state,
                        });
                    }
                }
            }
            Ok(groups)
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
                .call_coordinator(
                    network.shared_slots(),
                    CoordinatorKind::Group,
                    &group_id,
                    &request,
                    "describe group",
                    Retry::Idempotent,
                    None,
                    |response| {
                        response
                            .groups
                            .first()
                            .map_or(response.error_code, |group| {
                                if response.error_code.is_none() {
                                    group.error_code
                                } else {
                                    response.error_code
                                }
                            })
                    },
                )
                .await?;
            let refused = |code| {
                Error::broker(
                    "describe group",
                    None,
                    None,
                    code,
                    Some(format!("group {group_id:?}")),
                )
                .naming(spate_security::ResourceType::Group, &group_id)
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
                .call_coordinator(
                    network.shared_slots(),
                    CoordinatorKind::Group,
                    &group_id,
                    &request,
                    "delete group",
                    Retry::Idempotent,
                    None,
                    |response| {
                        response
                            .results
                            .first()
                            .map_or(response.error_code, |group| {
                                if response.error_code.is_none() {
                                    group.error_code
                                } else {
                                    response.error_code
                                }
                            })
                    },
                )
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
                )
                .naming(spate_security::ResourceType::Group, &group_id)),
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
            let plan = plan(&network, &group_id, &topic, None, target).await?;
            apply(&network, &group_id, &topic, &plan).await?;
            Ok(plan
                .into_iter()
                .map(|planned| (planned.partition, planned.new_offset))
                .collect())
        })
    }

    /// Works out where [`reset_offsets`](Self::reset_offsets) would move the group on
    /// `partitions` of `topic` (every partition when `None`) without moving anything: Kafka's
    /// `--dry-run`. Every new offset lies within the partition's log (clamped to its start or
    /// end, as Kafka's tool does), so the group never starts out of range.
    pub fn plan_reset(
        &self,
        group_id: &str,
        topic: &str,
        partitions: Option<&[u32]>,
        target: ResetTarget,
    ) -> Completion<Vec<PlannedOffset>> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        let topic = topic.to_string();
        let partitions = partitions.map(<[u32]>::to_vec);
        self.client.spawn("plan offset reset", async move {
            plan(&network, &group_id, &topic, partitions, target).await
        })
    }

    /// Commits a plan made by [`plan_reset`](Self::plan_reset). Refused (`NonEmptyGroup`)
    /// while the group has members.
    pub fn apply_reset(
        &self,
        group_id: &str,
        topic: &str,
        plan: &[PlannedOffset],
    ) -> Completion<()> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        let topic = topic.to_string();
        let plan = plan.to_vec();
        self.client.spawn("reset offsets", async move {
            apply(&network, &group_id, &topic, &plan).await
        })
    }

    /// Deletes the group's committed offsets on `partitions` of `topic` (every partition the
    /// group has an offset for when `None`). The broker refuses (`GroupSubscribedToTopic`) while
    /// a live member is subscribed to the topic. Returns each partition's outcome.
    pub fn delete_offsets(
        &self,
        group_id: &str,
        topic: &str,
        partitions: Option<&[u32]>,
    ) -> Completion<Vec<(u32, Result<(), Error>)>> {
        let network = self.client.network().clone();
        let group_id = group_id.to_string();
        let topic = topic.to_string();
        let partitions = partitions.map(<[u32]>::to_vec);
        self.client.spawn("delete offsets", async move {
            let partitions = match partitions {
                Some(partitions) => partitions,
                None => committed_partitions(&network, &group_id, &topic).await?,
            };
            if partitions.is_empty() {
                return Ok(Vec::new());
            }
            let request = OffsetDeleteRequest {
                group_id: group_id.clone(),
                topics: vec![TopicPartitionList {
                    name: topic.clone(),
                    partitions: partitions.clone(),
                }],
            };
            // Deleting twice leaves the same state, so reconnect-and-retry is safe.
            let response = network
                .call_coordinator(
                    network.shared_slots(),
                    CoordinatorKind::Group,
                    &group_id,
                    &request,
                    "delete offsets",
                    Retry::Idempotent,
                    None,
                    |response| response.error_code,
                )
                .await?;
            if !response.error_code.is_none() {
                // A request-wide refusal is the group's (GroupAuthorizationFailed names it).
                return Err(Error::broker(
                    "delete offsets",
                    Some(&topic),
                    None,
                    response.error_code,
                    Some(format!("group {group_id:?}")),
                )
                .naming(spate_security::ResourceType::Group, &group_id));
            }
            Ok(partitions
                .into_iter()
                .map(|partition| {
                    let code = response
                        .topics
                        .iter()
                        .filter(|entry| entry.name == topic)
                        .flat_map(|entry| entry.partitions.iter())
                        .find(|entry| entry.partition == partition)
                        .map_or(ErrorCode::Unknown, |entry| entry.error_code);
                    let outcome = match code {
                        ErrorCode::None => Ok(()),
                        code => Err(Error::broker(
                            "delete offsets",
                            Some(&topic),
                            Some(partition),
                            code,
                            Some(format!("group {group_id:?}")),
                        )),
                    };
                    (partition, outcome)
                })
                .collect())
        })
    }
}

/// One partition of a reset plan ([`GroupAdmin::plan_reset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlannedOffset {
    /// The partition.
    pub partition: u32,
    /// The group's committed offset now, if it has one.
    pub current_offset: Option<u64>,
    /// Where the reset moves it.
    pub new_offset: u64,
}

async fn plan(
    network: &Network,
    group_id: &str,
    topic: &str,
    partitions: Option<Vec<u32>>,
    target: ResetTarget,
) -> Result<Vec<PlannedOffset>, Error> {
    let partition_count = network.refresh_topic(topic).await?.partition_count();
    let partitions: Vec<u32> = match partitions {
        None => (0..partition_count).collect(),
        Some(partitions) => {
            if let Some(missing) = partitions.iter().find(|p| **p >= partition_count) {
                return Err(Error::UnknownPartition {
                    topic: topic.to_string(),
                    partition: *missing,
                    partition_count,
                });
            }
            partitions
        }
    };
    let starts = lookup(network, topic, &partitions, OffsetSpec::Earliest).await?;
    let ends = lookup(network, topic, &partitions, OffsetSpec::Latest).await?;
    let keyed: Vec<TopicPartition> = partitions
        .iter()
        .map(|partition| TopicPartition::new(topic, *partition))
        .collect();
    let current = member::committed(network, group_id, &keyed, false).await?;
    let wanted: Vec<u64> = match target {
        ResetTarget::Offset(offset) => vec![offset; partitions.len()],
        ResetTarget::Earliest => starts.clone(),
        ResetTarget::Latest => ends.clone(),
        ResetTarget::Timestamp(timestamp) => {
            let found = list_offsets(
                network,
                topic,
                Some(partitions.clone()),
                OffsetSpec::Timestamp(timestamp),
                IsolationLevel::ReadUncommitted,
            )
            .await?;
            found
                .iter()
                .zip(&ends)
                .map(|(answer, end)| answer.offset.unwrap_or(*end))
                .collect()
        }
        ResetTarget::ShiftBy(shift) => {
            let mut shifted = Vec::with_capacity(partitions.len());
            for (partition, current) in partitions.iter().zip(&current) {
                // Kafka's rule: there is nothing to shift from without a committed offset.
                let current = current.ok_or_else(|| {
                    Error::invalid(
                        "offset shift",
                        format!(
                            "group {group_id:?} has no committed offset on {topic}/{partition} to shift"
                        ),
                    )
                })?;
                shifted.push(current.saturating_add_signed(shift));
            }
            shifted
        }
    };
    Ok(partitions
        .iter()
        .enumerate()
        .map(|(index, partition)| PlannedOffset {
            partition: *partition,
            current_offset: current[index],
            new_offset: wanted[index].clamp(starts[index], ends[index].max(starts[index])),
        })
        .collect())
}

async fn apply(
    network: &Network,
    group_id: &str,
    topic: &str,
    plan: &[PlannedOffset],
) -> Result<(), Error> {
    let commits = plan
        .iter()
        .map(|planned| {
            (
                TopicPartition::new(topic, planned.partition),
                planned.new_offset,
            )
        })
        .collect();
    member::commit(network, group_id, None, commits).await
}

/// The partitions of `topic` the group has a committed offset on.
async fn committed_partitions(
    network: &Network,
    group_id: &str,
    topic: &str,
) -> Result<Vec<u32>, Error> {
    let request = OffsetFetchRequest {
        group_id: group_id.to_string(),
        topics: None,
        require_stable: false,
    };
    let response = network
        .call_coordinator(
            network.shared_slots(),
            CoordinatorKind::Group,
            group_id,
            &request,
            "fetch offsets",
            Retry::Idempotent,
            None,
            |response| response.error_code,
        )
        .await?;
    if !response.error_code.is_none() {
        return Err(Error::broker(
            "fetch offsets",
            None,
            None,
            response.error_code,
            Some(format!("group {group_id:?}")),
        )
        .naming(spate_security::ResourceType::Group, group_id));
    }
    Ok(response
        .topics
        .iter()
        .filter(|entry| entry.name == topic)
        .flat_map(|entry| entry.partitions.iter())
        .filter(|entry| entry.committed_offset.is_some())
        .map(|entry| entry.partition)
        .collect())
}

async fn lookup(
    network: &Network,
    topic: &str,
    partitions: &[u32],
    spec: OffsetSpec,
) -> Result<Vec<u64>, Error> {
    let found = list_offsets(
        network,
        topic,
        Some(partitions.to_vec()),
        spec,
        IsolationLevel::ReadUncommitted,
    )
    .await?;
    Ok(found
        .iter()
        .map(|answer| answer.offset.unwrap_or(0))
        .collect())
}
