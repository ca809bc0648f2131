//! Consumer groups: membership (JoinGroup, SyncGroup, Heartbeat, LeaveGroup), committed offsets
//! (OffsetCommit, OffsetFetch, OffsetDelete) and administration (ListGroups, DescribeGroups,
//! DeleteGroups), plus the consumer protocol: the subscription and assignment bytes that members
//! exchange through the coordinator without the broker reading them.
//!
//! The membership protocol is Kafka's classic one. A member joins (the first join of a dynamic
//! member is answered `MemberIdRequired` with the id to join again with), the coordinator waits
//! up to the rebalance timeout for every known member to join, answers them all with the new
//! generation and names a leader; the leader's SyncGroup carries every member's assignment, which
//! the coordinator hands to each member's SyncGroup. Heartbeats keep a member's session alive and
//! tell it when a rebalance starts. Generation ids fence members from older generations.
//!
//! The broker treats `metadata` and `assignment` as opaque bytes; [`ConsumerSubscription`] and
//! [`ConsumerAssignment`] are what consumers put in them (protocol type
//! [`CONSUMER_PROTOCOL_TYPE`]). This file only encodes and decodes; the coordinator's rules live
//! in the broker and the assignors in the client.

use bytes::{Bytes, BytesMut};

use crate::api::{decode_error_code, decode_list, decode_strings, encode_list, encode_strings};
use crate::api::{message, put_error_code, ApiKey, TopicPartitions, Wire};
use crate::codec::{put_count, put_optional_string, put_string, Decoder, Sink};
use crate::constants::TOPIC_NAME_BYTES_MAX;
use crate::constants::{CLIENT_HOST_BYTES_MAX, CLIENT_ID_BYTES_MAX, GROUPS_PER_MESSAGE_MAX};
use crate::constants::{GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX};
use crate::constants::{GROUP_MEMBERS_PER_MESSAGE_MAX, GROUP_MEMBER_METADATA_BYTES_MAX};
use crate::constants::{GROUP_PROTOCOLS_MAX, GROUP_PROTOCOL_NAME_BYTES_MAX, MEMBER_ID_BYTES_MAX};
use crate::constants::{PARTITIONS_PER_TOPIC_MAX, STRING_BYTES_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::{ErrorCode, WireError};

/// The protocol type consumers join with; members of one group must share it.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Generation id of a commit that comes from outside the group's membership (a standalone
/// consumer, or an administrator resetting offsets of a stopped group).
pub const GENERATION_NONE: i32 = -1;

// ---- shared pieces -----------------------------------------------------------------------

fn put_byte_string<S: Sink>(
    sink: &mut S,
    field: &'static str,
    bytes: &Bytes,
    limit: usize,
) -> Result<(), WireError> {
    if bytes.len() > limit {
        return Err(WireError::TooLong {
            field,
            length: bytes.len(),
            limit,
        });
    }
    sink.put_u32(bytes.len() as u32);
    sink.put_shared(bytes);
    Ok(())
}

fn put_group_id<S: Sink>(sink: &mut S, group_id: &str) -> Result<(), WireError> {
    put_string(sink, "group_id", group_id, GROUP_ID_BYTES_MAX)
}

fn decode_group_id(decoder: &mut Decoder) -> Result<String, WireError> {
    decoder.string("group_id", GROUP_ID_BYTES_MAX)
}

fn put_member_id<S: Sink>(sink: &mut S, member_id: &str) -> Result<(), WireError> {
    put_string(sink, "member_id", member_id, MEMBER_ID_BYTES_MAX)
}

fn decode_member_id(decoder: &mut Decoder) -> Result<String, WireError> {
    decoder.string("member_id", MEMBER_ID_BYTES_MAX)
}

fn put_instance_id<S: Sink>(sink: &mut S, instance_id: Option<&str>) -> Result<(), WireError> {
    put_optional_string(
        sink,
        "group_instance_id",
        instance_id,
        GROUP_INSTANCE_ID_BYTES_MAX,
    )
}

fn decode_instance_id(decoder: &mut Decoder) -> Result<Option<String>, WireError> {
    decoder.optional_string("group_instance_id", GROUP_INSTANCE_ID_BYTES_MAX)
}

fn put_protocol_name<S: Sink>(
    sink: &mut S,
    field: &'static str,
    name: &str,
) -> Result<(), WireError> {
    put_string(sink, field, name, GROUP_PROTOCOL_NAME_BYTES_MAX)
}

fn put_optional_protocol_name<S: Sink>(
    sink: &mut S,
    field: &'static str,
    name: Option<&str>,
) -> Result<(), WireError> {
    put_optional_string(sink, field, name, GROUP_PROTOCOL_NAME_BYTES_MAX)
}

fn decode_metadata(decoder: &mut Decoder, field: &'static str) -> Result<Bytes, WireError> {
    decoder.byte_string(field, GROUP_MEMBER_METADATA_BYTES_MAX)
}

/// A topic and some of its partitions, by index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TopicPartitionList {
    pub name: String,
    pub partitions: Vec<u32>,
}

impl Wire for TopicPartitionList {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        put_count(
            sink,
            "partitions",
            self.partitions.len(),
            PARTITIONS_PER_TOPIC_MAX,
        )?;
        self.partitions
            .iter()
            .for_each(|partition| sink.put_u32(*partition));
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let name = decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?;
        let count = decoder.count("partitions", PARTITIONS_PER_TOPIC_MAX, 4)?;
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(decoder.u32("partition")?);
        }
        Ok(Self { name, partitions })
    }
}

fn encode_topic_lists<S: Sink>(
    sink: &mut S,
    topics: &[TopicPartitionList],
) -> Result<(), WireError> {
    encode_list(sink, "topics", topics, TOPICS_PER_MESSAGE_MAX)
}

fn decode_topic_lists(decoder: &mut Decoder) -> Result<Vec<TopicPartitionList>, WireError> {
    decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)
}

/// The outcome for one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PartitionResult {
    pub partition: u32,
    pub error_code: ErrorCode,
}

impl Wire for PartitionResult {
    const ENCODED_BYTES_MIN: usize = 4 + 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        put_error_code(sink, self.error_code);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            error_code: decode_error_code(decoder)?,
        })
    }
}

/// Where a group is in its life, as Kafka names the states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum GroupState {
    /// No members; the group may still hold committed offsets.
    #[default]
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Joined; waiting for the leader's assignment.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Being removed.
    Dead,
}

impl GroupState {
    pub const ALL: [GroupState; 5] = [
        Self::Empty,
        Self::PreparingRebalance,
        Self::CompletingRebalance,
        Self::Stable,
        Self::Dead,
    ];

    pub fn to_u8(self) -> u8 {
        match self {
            Self::Empty => 0,
            Self::PreparingRebalance => 1,
            Self::CompletingRebalance => 2,
            Self::Stable => 3,
            Self::Dead => 4,
        }
    }

    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.get(usize::from(value)).copied()
    }

    /// Kafka's name for the state, as tools print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    fn encode<S: Sink>(self, sink: &mut S) {
        sink.put_u8(self.to_u8());
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let value = decoder.u8("group_state")?;
        Self::from_u8(value).ok_or(WireError::InvalidValue {
            field: "group_state",
            value: i64::from(value),
        })
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

// ---- JoinGroup ---------------------------------------------------------------------------

/// One protocol (assignor) a member can use, with the member's metadata for it (for consumers:
/// an encoded [`ConsumerSubscription`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupProtocol {
    pub name: String,
    pub metadata: Bytes,
}

impl Wire for GroupProtocol {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_protocol_name(sink, "protocol_name", &self.name)?;
        put_byte_string(
            sink,
            "protocol_metadata",
            &self.metadata,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            metadata: decode_metadata(decoder, "protocol_metadata")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinGroupRequest {
    pub group_id: String,
    /// The member is removed if the coordinator hears nothing from it for this long.
    pub session_timeout_ms: u32,
    /// How long the coordinator waits for every member to rejoin during a rebalance.
    pub rebalance_timeout_ms: u32,
    /// Empty on a member's first join.
    pub member_id: String,
    /// Static membership: a stable id that survives restarts of the member.
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// In order of preference.
    pub protocols: Vec<GroupProtocol>,
}

impl Wire for JoinGroupRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 4 + 2 + 1 + 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        sink.put_u32(self.session_timeout_ms);
        sink.put_u32(self.rebalance_timeout_ms);
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        put_protocol_name(sink, "protocol_type", &self.protocol_type)?;
        encode_list(sink, "protocols", &self.protocols, GROUP_PROTOCOLS_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            session_timeout_ms: decoder.u32("session_timeout_ms")?,
            rebalance_timeout_ms: decoder.u32("rebalance_timeout_ms")?,
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            protocol_type: decoder.string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            protocols: decode_list(decoder, "protocols", GROUP_PROTOCOLS_MAX)?,
        })
    }
}

/// A member as the leader sees it in its join response: its metadata for the chosen protocol.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinGroupMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

impl Wire for JoinGroupMember {
    const ENCODED_BYTES_MIN: usize = 2 + 1 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        put_byte_string(
            sink,
            "member_metadata",
            &self.metadata,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            metadata: decode_metadata(decoder, "member_metadata")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JoinGroupResponse {
    pub error_code: ErrorCode,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    /// The protocol (assignor) the coordinator chose: one every member offered.
    pub protocol_name: Option<String>,
    pub leader: String,
    /// The member's id: the one it joined with, or the one assigned to it (also with
    /// `MemberIdRequired`).
    pub member_id: String,
    /// Every member with its metadata, for the leader only; empty for the others.
    pub members: Vec<JoinGroupMember>,
}

impl JoinGroupResponse {
    /// A response carrying only an error (and the member id, when one was assigned).
    pub fn error(error_code: ErrorCode, member_id: &str) -> Self {
        Self {
            error_code,
            generation_id: GENERATION_NONE,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }

    pub fn is_leader(&self) -> bool {
        !self.member_id.is_empty() && self.leader == self.member_id
    }
}

impl Wire for JoinGroupResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 1 + 1 + 2 + 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        sink.put_i32(self.generation_id);
        put_optional_protocol_name(sink, "protocol_type", self.protocol_type.as_deref())?;
        put_optional_protocol_name(sink, "protocol_name", self.protocol_name.as_deref())?;
        put_member_id(sink, &self.leader)?;
        put_member_id(sink, &self.member_id)?;
        encode_list(
            sink,
            "members",
            &self.members,
            GROUP_MEMBERS_PER_MESSAGE_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            generation_id: decoder.i32("generation_id")?,
            protocol_type: decoder
                .optional_string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            protocol_name: decoder
                .optional_string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            leader: decoder.string("leader", MEMBER_ID_BYTES_MAX)?,
            member_id: decode_member_id(decoder)?,
            members: decode_list(decoder, "members", GROUP_MEMBERS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- SyncGroup ---------------------------------------------------------------------------

/// One member's assignment, as the leader sends it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncGroupAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

impl Wire for SyncGroupAssignment {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_member_id(sink, &self.member_id)?;
        put_byte_string(
            sink,
            "assignment",
            &self.assignment,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            member_id: decode_member_id(decoder)?,
            assignment: decode_metadata(decoder, "assignment")?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncGroupRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// Checked against the group's when present.
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignment for every member; empty from the other members.
    pub assignments: Vec<SyncGroupAssignment>,
}

impl Wire for SyncGroupRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 2 + 1 + 1 + 1 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        sink.put_i32(self.generation_id);
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        put_optional_protocol_name(sink, "protocol_type", self.protocol_type.as_deref())?;
        put_optional_protocol_name(sink, "protocol_name", self.protocol_name.as_deref())?;
        encode_list(
            sink,
            "assignments",
            &self.assignments,
            GROUP_MEMBERS_PER_MESSAGE_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            generation_id: decoder.i32("generation_id")?,
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            protocol_type: decoder
                .optional_string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            protocol_name: decoder
                .optional_string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            assignments: decode_list(decoder, "assignments", GROUP_MEMBERS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SyncGroupResponse {
    pub error_code: ErrorCode,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// This member's assignment (for consumers: an encoded [`ConsumerAssignment`]).
    pub assignment: Bytes,
}

impl SyncGroupResponse {
    pub fn error(error_code: ErrorCode) -> Self {
        Self {
            error_code,
            ..Self::default()
        }
    }
}

impl Wire for SyncGroupResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 1 + 1 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_optional_protocol_name(sink, "protocol_type", self.protocol_type.as_deref())?;
        put_optional_protocol_name(sink, "protocol_name", self.protocol_name.as_deref())?;
        put_byte_string(
            sink,
            "assignment",
            &self.assignment,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            protocol_type: decoder
                .optional_string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            protocol_name: decoder
                .optional_string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            assignment: decode_metadata(decoder, "assignment")?,
        })
    }
}

// ---- Heartbeat ---------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HeartbeatRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Wire for HeartbeatRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        sink.put_i32(self.generation_id);
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            generation_id: decoder.i32("generation_id")?,
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HeartbeatResponse {
    /// `RebalanceInProgress` tells the member to rejoin.
    pub error_code: ErrorCode,
}

impl Wire for HeartbeatResponse {
    const ENCODED_BYTES_MIN: usize = 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
        })
    }
}

// ---- LeaveGroup --------------------------------------------------------------------------

/// Names a member: by member id, or (static members) by instance id.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberIdentity {
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

impl Wire for MemberIdentity {
    const ENCODED_BYTES_MIN: usize = 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaveGroupRequest {
    pub group_id: String,
    pub members: Vec<MemberIdentity>,
}

impl Wire for LeaveGroupRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        encode_list(
            sink,
            "members",
            &self.members,
            GROUP_MEMBERS_PER_MESSAGE_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            members: decode_list(decoder, "members", GROUP_MEMBERS_PER_MESSAGE_MAX)?,
        })
    }
}

/// The outcome for one member named in a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MemberResult {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error_code: ErrorCode,
}

impl Wire for MemberResult {
    const ENCODED_BYTES_MIN: usize = 2 + 1 + 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        put_error_code(sink, self.error_code);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            error_code: decode_error_code(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaveGroupResponse {
    /// A group-level failure (unknown group, coordinator unavailable); members are then empty.
    pub error_code: ErrorCode,
    pub members: Vec<MemberResult>,
}

impl Wire for LeaveGroupResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(
            sink,
            "members",
            &self.members,
            GROUP_MEMBERS_PER_MESSAGE_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            members: decode_list(decoder, "members", GROUP_MEMBERS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- OffsetCommit ------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitPartition {
    pub partition: u32,
    /// The next offset to consume (one past the last processed record), as in Kafka.
    pub committed_offset: u64,
    /// Free text the committer wants back with the offset.
    pub committed_metadata: Option<String>,
}

impl Wire for OffsetCommitPartition {
    const ENCODED_BYTES_MIN: usize = 4 + 8 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        sink.put_u64(self.committed_offset);
        put_optional_string(
            sink,
            "committed_metadata",
            self.committed_metadata.as_deref(),
            STRING_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            partition: decoder.u32("partition")?,
            committed_offset: decoder.u64("committed_offset")?,
            committed_metadata: decoder.optional_string("committed_metadata", STRING_BYTES_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// The committer's generation, or [`GENERATION_NONE`] (with an empty member id) for a
    /// commit from outside the membership, which only a group without members accepts.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub topics: Vec<TopicPartitions<OffsetCommitPartition>>,
}

impl Wire for OffsetCommitRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4 + 2 + 1 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        sink.put_i32(self.generation_id);
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            generation_id: decoder.i32("generation_id")?,
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetCommitResponse {
    /// A failure of the whole request (fencing, rebalance, coordinator); the per-partition
    /// codes then repeat it.
    pub error_code: ErrorCode,
    pub topics: Vec<TopicPartitions<PartitionResult>>,
}

impl Wire for OffsetCommitResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- OffsetFetch -------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchRequest {
    pub group_id: String,
    /// `None`: every partition the group has an offset for.
    pub topics: Option<Vec<TopicPartitionList>>,
}

impl Wire for OffsetFetchRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        match &self.topics {
            None => {
                sink.put_u8(0);
                Ok(())
            }
            Some(topics) => {
                sink.put_u8(1);
                encode_topic_lists(sink, topics)
            }
        }
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let group_id = decode_group_id(decoder)?;
        let topics = if decoder.bool("topics_present")? {
            Some(decode_topic_lists(decoder)?)
        } else {
            None
        };
        Ok(Self { group_id, topics })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchPartition {
    pub partition: u32,
    /// `None` when the group has no offset for the partition.
    pub committed_offset: Option<u64>,
    pub metadata: Option<String>,
    pub error_code: ErrorCode,
}

impl Wire for OffsetFetchPartition {
    const ENCODED_BYTES_MIN: usize = 4 + 1 + 1 + 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        match self.committed_offset {
            None => sink.put_u8(0),
            Some(offset) => {
                sink.put_u8(1);
                sink.put_u64(offset);
            }
        }
        put_optional_string(sink, "metadata", self.metadata.as_deref(), STRING_BYTES_MAX)?;
        put_error_code(sink, self.error_code);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let partition = decoder.u32("partition")?;
        let committed_offset = if decoder.bool("committed_offset_present")? {
            Some(decoder.u64("committed_offset")?)
        } else {
            None
        };
        Ok(Self {
            partition,
            committed_offset,
            metadata: decoder.optional_string("metadata", STRING_BYTES_MAX)?,
            error_code: decode_error_code(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetFetchResponse {
    pub error_code: ErrorCode,
    pub topics: Vec<TopicPartitions<OffsetFetchPartition>>,
}

impl OffsetFetchResponse {
    /// The committed offset of `(topic, partition)`, if the response has one.
    pub fn committed(&self, topic: &str, partition: u32) -> Option<u64> {
        self.topics
            .iter()
            .filter(|entry| entry.name == topic)
            .flat_map(|entry| entry.partitions.iter())
            .find(|entry| entry.partition == partition)
            .and_then(|entry| entry.committed_offset)
    }
}

impl Wire for OffsetFetchResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- OffsetDelete ------------------------------------------------------------------------

/// Deletes some committed offsets of a group. Refused (`GroupSubscribedToTopic`) for a topic
/// the group's live members are subscribed to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetDeleteRequest {
    pub group_id: String,
    pub topics: Vec<TopicPartitionList>,
}

impl Wire for OffsetDeleteRequest {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        encode_topic_lists(sink, &self.topics)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            topics: decode_topic_lists(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OffsetDeleteResponse {
    pub error_code: ErrorCode,
    pub topics: Vec<TopicPartitions<PartitionResult>>,
}

impl Wire for OffsetDeleteResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "topics", &self.topics, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            topics: decode_list(decoder, "topics", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- ListGroups --------------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsRequest {
    /// Only groups in one of these states; empty for every group.
    pub states: Vec<GroupState>,
}

impl Wire for ListGroupsRequest {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_count(sink, "states", self.states.len(), GroupState::ALL.len())?;
        self.states.iter().for_each(|state| state.encode(sink));
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let count = decoder.count("states", GroupState::ALL.len(), 1)?;
        let mut states = Vec::with_capacity(count);
        for _ in 0..count {
            states.push(GroupState::decode(decoder)?);
        }
        Ok(Self { states })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupListing {
    pub group_id: String,
    /// Empty for a group that only holds offsets.
    pub protocol_type: String,
    pub state: GroupState,
}

impl Wire for GroupListing {
    const ENCODED_BYTES_MIN: usize = 2 + 2 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        put_protocol_name(sink, "protocol_type", &self.protocol_type)?;
        self.state.encode(sink);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            protocol_type: decoder.string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            state: GroupState::decode(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListGroupsResponse {
    pub error_code: ErrorCode,
    pub groups: Vec<GroupListing>,
}

impl Wire for ListGroupsResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "groups", &self.groups, GROUPS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            groups: decode_list(decoder, "groups", GROUPS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- DescribeGroups ----------------------------------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsRequest {
    pub groups: Vec<String>,
}

impl Wire for DescribeGroupsRequest {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_strings(
            sink,
            "groups",
            &self.groups,
            GROUPS_PER_MESSAGE_MAX,
            GROUP_ID_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            groups: decode_strings(
                decoder,
                "groups",
                GROUPS_PER_MESSAGE_MAX,
                GROUP_ID_BYTES_MAX,
            )?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// The member's metadata for the group's protocol (for consumers, its subscription).
    pub metadata: Bytes,
    /// Its current assignment (for consumers, an encoded [`ConsumerAssignment`]).
    pub assignment: Bytes,
}

impl Wire for DescribedMember {
    const ENCODED_BYTES_MIN: usize = 2 + 1 + 2 + 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_member_id(sink, &self.member_id)?;
        put_instance_id(sink, self.group_instance_id.as_deref())?;
        put_string(sink, "client_id", &self.client_id, CLIENT_ID_BYTES_MAX)?;
        put_string(
            sink,
            "client_host",
            &self.client_host,
            CLIENT_HOST_BYTES_MAX,
        )?;
        put_byte_string(
            sink,
            "member_metadata",
            &self.metadata,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )?;
        put_byte_string(
            sink,
            "assignment",
            &self.assignment,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            member_id: decode_member_id(decoder)?,
            group_instance_id: decode_instance_id(decoder)?,
            client_id: decoder.string("client_id", CLIENT_ID_BYTES_MAX)?,
            client_host: decoder.string("client_host", CLIENT_HOST_BYTES_MAX)?,
            metadata: decode_metadata(decoder, "member_metadata")?,
            assignment: decode_metadata(decoder, "assignment")?,
        })
    }
}

/// A committed offset with the partition's end, so tools can show lag.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedOffset {
    pub partition: u32,
    pub committed_offset: u64,
    pub metadata: Option<String>,
    /// The partition's high watermark; `None` if the partition no longer exists.
    pub high_watermark: Option<u64>,
}

impl DescribedOffset {
    /// Records between the committed offset and the high watermark.
    pub fn lag(&self) -> Option<u64> {
        self.high_watermark
            .map(|high_watermark| high_watermark.saturating_sub(self.committed_offset))
    }
}

impl Wire for DescribedOffset {
    const ENCODED_BYTES_MIN: usize = 4 + 8 + 1 + 1;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u32(self.partition);
        sink.put_u64(self.committed_offset);
        put_optional_string(sink, "metadata", self.metadata.as_deref(), STRING_BYTES_MAX)?;
        match self.high_watermark {
            None => sink.put_u8(0),
            Some(high_watermark) => {
                sink.put_u8(1);
                sink.put_u64(high_watermark);
            }
        }
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        let partition = decoder.u32("partition")?;
        let committed_offset = decoder.u64("committed_offset")?;
        let metadata = decoder.optional_string("metadata", STRING_BYTES_MAX)?;
        let high_watermark = if decoder.bool("high_watermark_present")? {
            Some(decoder.u64("high_watermark")?)
        } else {
            None
        };
        Ok(Self {
            partition,
            committed_offset,
            metadata,
            high_watermark,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribedGroup {
    /// `GroupIdNotFound` for a group with neither members nor offsets.
    pub error_code: ErrorCode,
    pub group_id: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol_name: String,
    pub generation_id: i32,
    /// Empty when the group has no leader.
    pub leader: String,
    pub members: Vec<DescribedMember>,
    pub offsets: Vec<TopicPartitions<DescribedOffset>>,
}

impl Wire for DescribedGroup {
    const ENCODED_BYTES_MIN: usize = 2 + 2 + 1 + 2 + 2 + 4 + 2 + 4 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        put_group_id(sink, &self.group_id)?;
        self.state.encode(sink);
        put_protocol_name(sink, "protocol_type", &self.protocol_type)?;
        put_protocol_name(sink, "protocol_name", &self.protocol_name)?;
        sink.put_i32(self.generation_id);
        put_member_id(sink, &self.leader)?;
        encode_list(
            sink,
            "members",
            &self.members,
            GROUP_MEMBERS_PER_MESSAGE_MAX,
        )?;
        encode_list(sink, "offsets", &self.offsets, TOPICS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            group_id: decode_group_id(decoder)?,
            state: GroupState::decode(decoder)?,
            protocol_type: decoder.string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            protocol_name: decoder.string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?,
            generation_id: decoder.i32("generation_id")?,
            leader: decoder.string("leader", MEMBER_ID_BYTES_MAX)?,
            members: decode_list(decoder, "members", GROUP_MEMBERS_PER_MESSAGE_MAX)?,
            offsets: decode_list(decoder, "offsets", TOPICS_PER_MESSAGE_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DescribeGroupsResponse {
    pub error_code: ErrorCode,
    /// One per requested group, in request order.
    pub groups: Vec<DescribedGroup>,
}

impl Wire for DescribeGroupsResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "groups", &self.groups, GROUPS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            groups: decode_list(decoder, "groups", GROUPS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- DeleteGroups ------------------------------------------------------------------------

/// Deletes groups without members, with all their committed offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsRequest {
    pub groups: Vec<String>,
}

impl Wire for DeleteGroupsRequest {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_strings(
            sink,
            "groups",
            &self.groups,
            GROUPS_PER_MESSAGE_MAX,
            GROUP_ID_BYTES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            groups: decode_strings(
                decoder,
                "groups",
                GROUPS_PER_MESSAGE_MAX,
                GROUP_ID_BYTES_MAX,
            )?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GroupResult {
    pub group_id: String,
    pub error_code: ErrorCode,
}

impl Wire for GroupResult {
    const ENCODED_BYTES_MIN: usize = 2 + 2;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_group_id(sink, &self.group_id)?;
        put_error_code(sink, self.error_code);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            group_id: decode_group_id(decoder)?,
            error_code: decode_error_code(decoder)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeleteGroupsResponse {
    pub error_code: ErrorCode,
    /// One per requested group, in request order.
    pub results: Vec<GroupResult>,
}

impl Wire for DeleteGroupsResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(sink, "results", &self.results, GROUPS_PER_MESSAGE_MAX)
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            results: decode_list(decoder, "results", GROUPS_PER_MESSAGE_MAX)?,
        })
    }
}

// ---- the consumer protocol ----------------------------------------------------------------

/// Version of the consumer protocol's subscription and assignment layouts this build writes.
const CONSUMER_PROTOCOL_VERSION: u16 = 0;

fn check_consumer_protocol_version(decoder: &mut Decoder) -> Result<(), WireError> {
    let version = decoder.u16("consumer_protocol_version")?;
    if version == CONSUMER_PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(WireError::InvalidValue {
            field: "consumer_protocol_version",
            value: i64::from(version),
        })
    }
}

/// What a consumer puts in its JoinGroup protocol metadata: the topics it wants, and the
/// partitions it owns now (so that a sticky assignor can leave them where they are).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerSubscription {
    pub topics: Vec<String>,
    pub owned_partitions: Vec<TopicPartitionList>,
    pub user_data: Bytes,
}

impl ConsumerSubscription {
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let mut sink = BytesMut::new();
        sink.put_u16(CONSUMER_PROTOCOL_VERSION);
        encode_strings(
            &mut sink,
            "topics",
            &self.topics,
            TOPICS_PER_MESSAGE_MAX,
            TOPIC_NAME_BYTES_MAX,
        )?;
        encode_topic_lists(&mut sink, &self.owned_partitions)?;
        put_byte_string(
            &mut sink,
            "user_data",
            &self.user_data,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )?;
        check_metadata_size("subscription", sink.len())?;
        Ok(sink.freeze())
    }

    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        let mut decoder = Decoder::new(bytes);
        check_consumer_protocol_version(&mut decoder)?;
        let subscription = Self {
            topics: decode_strings(
                &mut decoder,
                "topics",
                TOPICS_PER_MESSAGE_MAX,
                TOPIC_NAME_BYTES_MAX,
            )?,
            owned_partitions: decode_topic_lists(&mut decoder)?,
            user_data: decode_metadata(&mut decoder, "user_data")?,
        };
        decoder.finish("ConsumerSubscription")?;
        Ok(subscription)
    }
}

/// What the leader gives each consumer in SyncGroup: the partitions it owns from now on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConsumerAssignment {
    pub partitions: Vec<TopicPartitionList>,
    pub user_data: Bytes,
}

impl ConsumerAssignment {
    pub fn encode(&self) -> Result<Bytes, WireError> {
        let mut sink = BytesMut::new();
        sink.put_u16(CONSUMER_PROTOCOL_VERSION);
        encode_topic_lists(&mut sink, &self.partitions)?;
        put_byte_string(
            &mut sink,
            "user_data",
            &self.user_data,
            GROUP_MEMBER_METADATA_BYTES_MAX,
        )?;
        check_metadata_size("assignment", sink.len())?;
        Ok(sink.freeze())
    }

    /// An empty byte string is an empty assignment (what a member gets when the leader
    /// assigned it nothing).
    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        let mut decoder = Decoder::new(bytes);
        check_consumer_protocol_version(&mut decoder)?;
        let assignment = Self {
            partitions: decode_topic_lists(&mut decoder)?,
            user_data: decode_metadata(&mut decoder, "user_data")?,
        };
        decoder.finish("ConsumerAssignment")?;
        Ok(assignment)
    }

    /// Every assigned (topic, partition), in order.
    pub fn topic_partitions(&self) -> impl Iterator<Item = (&str, u32)> + '_ {
        self.partitions.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.name.as_str(), *partition))
        })
    }
}

fn check_metadata_size(field: &'static str, length: usize) -> Result<(), WireError> {
    if length > GROUP_MEMBER_METADATA_BYTES_MAX {
        return Err(WireError::TooLong {
            field,
            length,
            limit: GROUP_MEMBER_METADATA_BYTES_MAX,
        });
    }
    Ok(())
}

// ---- message registrations ----------------------------------------------------------------

message!(
    JoinGroupRequest,
    ApiKey::JoinGroup,
    "JoinGroupRequest",
    response = JoinGroupResponse
);
message!(JoinGroupResponse, ApiKey::JoinGroup, "JoinGroupResponse");
message!(
    SyncGroupRequest,
    ApiKey::SyncGroup,
    "SyncGroupRequest",
    response = SyncGroupResponse
);
message!(SyncGroupResponse, ApiKey::SyncGroup, "SyncGroupResponse");
message!(
    HeartbeatRequest,
    ApiKey::Heartbeat,
    "HeartbeatRequest",
    response = HeartbeatResponse
);
message!(HeartbeatResponse, ApiKey::Heartbeat, "HeartbeatResponse");
message!(
    LeaveGroupRequest,
    ApiKey::LeaveGroup,
    "LeaveGroupRequest",
    response = LeaveGroupResponse
);
message!(LeaveGroupResponse, ApiKey::LeaveGroup, "LeaveGroupResponse");
message!(
    OffsetCommitRequest,
    ApiKey::OffsetCommit,
    "OffsetCommitRequest",
    response = OffsetCommitResponse
);
message!(
    OffsetCommitResponse,
    ApiKey::OffsetCommit,
    "OffsetCommitResponse"
);
message!(
    OffsetFetchRequest,
    ApiKey::OffsetFetch,
    "OffsetFetchRequest",
    response = OffsetFetchResponse
);
message!(
    OffsetFetchResponse,
    ApiKey::OffsetFetch,
    "OffsetFetchResponse"
);
message!(
    ListGroupsRequest,
    ApiKey::ListGroups,
    "ListGroupsRequest",
    response = ListGroupsResponse
);
message!(ListGroupsResponse, ApiKey::ListGroups, "ListGroupsResponse");
message!(
    DescribeGroupsRequest,
    ApiKey::DescribeGroups,
    "DescribeGroupsRequest",
    response = DescribeGroupsResponse
);
message!(
    DescribeGroupsResponse,
    ApiKey::DescribeGroups,
    "DescribeGroupsResponse"
);
message!(
    DeleteGroupsRequest,
    ApiKey::DeleteGroups,
    "DeleteGroupsRequest",
    response = DeleteGroupsResponse
);
message!(
    DeleteGroupsResponse,
    ApiKey::DeleteGroups,
    "DeleteGroupsResponse"
);
message!(
    OffsetDeleteRequest,
    ApiKey::OffsetDelete,
    "OffsetDeleteRequest",
    response = OffsetDeleteResponse
);
message!(
    OffsetDeleteResponse,
    ApiKey::OffsetDelete,
    "OffsetDeleteResponse"
);
