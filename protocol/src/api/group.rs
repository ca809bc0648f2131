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

use crate::api::wire::{wire, ClientHost, ClientId, Field, GroupId, GroupInstanceId};
use crate::api::wire::{List, MemberId, MemberMetadata, Optional, OptionalProtocolName};
use crate::api::wire::{OptionalText, ProtocolName, TopicName, Wire};
use crate::api::TopicPartitions;
use crate::codec::{Decoder, Sink};
use crate::constants::{GROUPS_PER_MESSAGE_MAX, GROUP_MEMBERS_PER_MESSAGE_MAX};
use crate::constants::{GROUP_MEMBER_METADATA_BYTES_MAX, GROUP_PROTOCOLS_MAX};
use crate::constants::{PARTITIONS_PER_TOPIC_MAX, TOPICS_PER_MESSAGE_MAX};
use crate::error::{ErrorCode, WireError};

/// The protocol type consumers join with; members of one group must share it.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// Generation id of a commit that comes from outside the group's membership (a standalone
/// consumer, or an administrator resetting offsets of a stopped group).
pub const GENERATION_NONE: i32 = -1;

// ---- shared pieces -----------------------------------------------------------------------

/// The topics of a message that lists topics with some of their partitions.
type TopicPartitionLists = List<TopicPartitionList, TOPICS_PER_MESSAGE_MAX>;

wire! {
    /// A topic and some of its partitions, by index.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct TopicPartitionList {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub partitions: Vec<u32> as List<u32, PARTITIONS_PER_TOPIC_MAX>,
    }
}

wire! {
    /// The outcome for one partition.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct PartitionResult {
        pub partition: u32 as u32,
        pub error_code: ErrorCode as ErrorCode,
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
}

/// A u8, reported as `group_state` in errors wherever it appears; unknown numbers are refused.
impl Wire for GroupState {
    type Value = GroupState;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(value: &GroupState, _field: Field, sink: &mut S) -> Result<(), WireError> {
        sink.put_u8(value.to_u8());
        Ok(())
    }

    fn decode(_field: Field, decoder: &mut Decoder) -> Result<GroupState, WireError> {
        let value = decoder.u8("group_state")?;
        Self::from_u8(value).ok_or(WireError::InvalidValue {
            field: "group_state",
            value: i64::from(value),
        })
    }

    #[cfg(test)]
    fn smallest() -> GroupState {
        GroupState::Empty
    }
}

impl std::fmt::Display for GroupState {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str(self.name())
    }
}

// ---- JoinGroup ---------------------------------------------------------------------------

wire! {
    /// One protocol (assignor) a member can use, with the member's metadata for it (for
    /// consumers: an encoded [`ConsumerSubscription`]).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GroupProtocol {
        #[wire = "protocol_name"]
        pub name: String as ProtocolName,
        #[wire = "protocol_metadata"]
        pub metadata: Bytes as MemberMetadata,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct JoinGroupRequest {
        pub group_id: String as GroupId,
        /// The member is removed if the coordinator hears nothing from it for this long.
        pub session_timeout_ms: u32 as u32,
        /// How long the coordinator waits for every member to rejoin during a rebalance.
        pub rebalance_timeout_ms: u32 as u32,
        /// Empty on a member's first join.
        pub member_id: String as MemberId,
        /// Static membership: a stable id that survives restarts of the member.
        pub group_instance_id: Option<String> as GroupInstanceId,
        pub protocol_type: String as ProtocolName,
        /// In order of preference.
        pub protocols: Vec<GroupProtocol> as List<GroupProtocol, GROUP_PROTOCOLS_MAX>,
    }
}

wire! {
    /// A member as the leader sees it in its join response: its metadata for the chosen
    /// protocol.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct JoinGroupMember {
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        #[wire = "member_metadata"]
        pub metadata: Bytes as MemberMetadata,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct JoinGroupResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub generation_id: i32 as i32,
        pub protocol_type: Option<String> as OptionalProtocolName,
        /// The protocol (assignor) the coordinator chose: one every member offered.
        pub protocol_name: Option<String> as OptionalProtocolName,
        pub leader: String as MemberId,
        /// The member's id: the one it joined with, or the one assigned to it (also with
        /// `MemberIdRequired`).
        pub member_id: String as MemberId,
        /// Every member with its metadata, for the leader only; empty for the others.
        pub members: Vec<JoinGroupMember> as List<JoinGroupMember, GROUP_MEMBERS_PER_MESSAGE_MAX>,
    }
}

/// A response without a generation ([`GENERATION_NONE`]), leader or members.
impl Default for JoinGroupResponse {
    fn default() -> Self {
        Self {
            error_code: ErrorCode::None,
            generation_id: GENERATION_NONE,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: String::new(),
            members: Vec::new(),
        }
    }
}

impl JoinGroupResponse {
    /// A response carrying only an error (and the member id, when one was assigned).
    pub fn error(error_code: ErrorCode, member_id: &str) -> Self {
        Self {
            error_code,
            member_id: member_id.to_string(),
            ..Self::default()
        }
    }

    pub fn is_leader(&self) -> bool {
        !self.member_id.is_empty() && self.leader == self.member_id
    }
}

// ---- SyncGroup ---------------------------------------------------------------------------

wire! {
    /// One member's assignment, as the leader sends it.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SyncGroupAssignment {
        pub member_id: String as MemberId,
        pub assignment: Bytes as MemberMetadata,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SyncGroupRequest {
        pub group_id: String as GroupId,
        pub generation_id: i32 as i32,
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        /// Checked against the group's when present.
        pub protocol_type: Option<String> as OptionalProtocolName,
        pub protocol_name: Option<String> as OptionalProtocolName,
        /// The leader's assignment for every member; empty from the other members.
        pub assignments: Vec<SyncGroupAssignment>
            as List<SyncGroupAssignment, GROUP_MEMBERS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SyncGroupResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub protocol_type: Option<String> as OptionalProtocolName,
        pub protocol_name: Option<String> as OptionalProtocolName,
        /// This member's assignment (for consumers: an encoded [`ConsumerAssignment`]).
        pub assignment: Bytes as MemberMetadata,
    }
}

impl SyncGroupResponse {
    pub fn error(error_code: ErrorCode) -> Self {
        Self {
            error_code,
            ..Self::default()
        }
    }
}

// ---- Heartbeat ---------------------------------------------------------------------------

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct HeartbeatRequest {
        pub group_id: String as GroupId,
        pub generation_id: i32 as i32,
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
    }
}

wire! {
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct HeartbeatResponse {
        /// `RebalanceInProgress` tells the member to rejoin.
        pub error_code: ErrorCode as ErrorCode,
    }
}

// ---- LeaveGroup --------------------------------------------------------------------------

wire! {
    /// Names a member: by member id, or (static members) by instance id.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct MemberIdentity {
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct LeaveGroupRequest {
        pub group_id: String as GroupId,
        pub members: Vec<MemberIdentity> as List<MemberIdentity, GROUP_MEMBERS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// The outcome for one member named in a request.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct MemberResult {
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        pub error_code: ErrorCode as ErrorCode,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct LeaveGroupResponse {
        /// A group-level failure (unknown group, coordinator unavailable); members are then
        /// empty.
        pub error_code: ErrorCode as ErrorCode,
        pub members: Vec<MemberResult> as List<MemberResult, GROUP_MEMBERS_PER_MESSAGE_MAX>,
    }
}

// ---- OffsetCommit ------------------------------------------------------------------------

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetCommitPartition {
        pub partition: u32 as u32,
        /// The next offset to consume (one past the last processed record), as in Kafka.
        pub committed_offset: u64 as u64,
        /// Free text the committer wants back with the offset.
        pub committed_metadata: Option<String> as OptionalText,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetCommitRequest {
        pub group_id: String as GroupId,
        /// The committer's generation, or [`GENERATION_NONE`] (with an empty member id) for a
        /// commit from outside the membership, which only a group without members accepts.
        pub generation_id: i32 as i32,
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        pub topics: Vec<TopicPartitions<OffsetCommitPartition>>
            as List<TopicPartitions<OffsetCommitPartition>, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetCommitResponse {
        /// A failure of the whole request (fencing, rebalance, coordinator); the per-partition
        /// codes then repeat it.
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
    }
}

// ---- OffsetFetch -------------------------------------------------------------------------

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetFetchRequest {
        pub group_id: String as GroupId,
        /// `None`: every partition the group has an offset for.
        pub topics: Option<Vec<TopicPartitionList>> as Optional<TopicPartitionLists>,
        /// Kafka's `require_stable` (KIP-447): a partition whose offset waits in an open
        /// transaction is answered `UnstableOffsetCommit` (retriable) instead of its last
        /// committed offset, so a read_committed consumer does not start behind a commit that
        /// is about to land.
        #[since = 1]
        pub require_stable: bool as bool,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetFetchPartition {
        pub partition: u32 as u32,
        /// `None` when the group has no offset for the partition.
        pub committed_offset: Option<u64> as Optional<u64>,
        pub metadata: Option<String> as OptionalText,
        pub error_code: ErrorCode as ErrorCode,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetFetchResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicPartitions<OffsetFetchPartition>>
            as List<TopicPartitions<OffsetFetchPartition>, TOPICS_PER_MESSAGE_MAX>,
    }
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

// ---- OffsetDelete ------------------------------------------------------------------------

wire! {
    /// Deletes some committed offsets of a group. Refused (`GroupSubscribedToTopic`) for a
    /// topic the group's live members are subscribed to.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetDeleteRequest {
        pub group_id: String as GroupId,
        pub topics: Vec<TopicPartitionList> as TopicPartitionLists,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct OffsetDeleteResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub topics: Vec<TopicPartitions<PartitionResult>>
            as List<TopicPartitions<PartitionResult>, TOPICS_PER_MESSAGE_MAX>,
    }
}

// ---- ListGroups --------------------------------------------------------------------------

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListGroupsRequest {
        /// Only groups in one of these states; empty for every group.
        pub states: Vec<GroupState> as List<GroupState, { GroupState::ALL.len() }>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GroupListing {
        pub group_id: String as GroupId,
        /// Empty for a group that only holds offsets.
        pub protocol_type: String as ProtocolName,
        pub state: GroupState as GroupState,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListGroupsResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub groups: Vec<GroupListing> as List<GroupListing, GROUPS_PER_MESSAGE_MAX>,
    }
}

// ---- DescribeGroups ----------------------------------------------------------------------

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeGroupsRequest {
        pub groups: Vec<String> as List<GroupId, GROUPS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribedMember {
        pub member_id: String as MemberId,
        pub group_instance_id: Option<String> as GroupInstanceId,
        pub client_id: String as ClientId,
        pub client_host: String as ClientHost,
        /// The member's metadata for the group's protocol (for consumers, its subscription).
        #[wire = "member_metadata"]
        pub metadata: Bytes as MemberMetadata,
        /// Its current assignment (for consumers, an encoded [`ConsumerAssignment`]).
        pub assignment: Bytes as MemberMetadata,
    }
}

wire! {
    /// A committed offset with the partition's end, so tools can show lag.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribedOffset {
        pub partition: u32 as u32,
        pub committed_offset: u64 as u64,
        pub metadata: Option<String> as OptionalText,
        /// The partition's high watermark; `None` if the partition no longer exists.
        pub high_watermark: Option<u64> as Optional<u64>,
    }
}

impl DescribedOffset {
    /// Records between the committed offset and the high watermark.
    pub fn lag(&self) -> Option<u64> {
        self.high_watermark
            .map(|high_watermark| high_watermark.saturating_sub(self.committed_offset))
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribedGroup {
        /// `GroupIdNotFound` for a group with neither members nor offsets.
        pub error_code: ErrorCode as ErrorCode,
        pub group_id: String as GroupId,
        pub state: GroupState as GroupState,
        pub protocol_type: String as ProtocolName,
        pub protocol_name: String as ProtocolName,
        pub generation_id: i32 as i32,
        /// Empty when the group has no leader.
        pub leader: String as MemberId,
        pub members: Vec<DescribedMember> as List<DescribedMember, GROUP_MEMBERS_PER_MESSAGE_MAX>,
        pub offsets: Vec<TopicPartitions<DescribedOffset>>
            as List<TopicPartitions<DescribedOffset>, TOPICS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeGroupsResponse {
        pub error_code: ErrorCode as ErrorCode,
        /// One per requested group, in request order.
        pub groups: Vec<DescribedGroup> as List<DescribedGroup, GROUPS_PER_MESSAGE_MAX>,
    }
}

// ---- DeleteGroups ------------------------------------------------------------------------

wire! {
    /// Deletes groups without members, with all their committed offsets.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteGroupsRequest {
        pub groups: Vec<String> as List<GroupId, GROUPS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct GroupResult {
        pub group_id: String as GroupId,
        pub error_code: ErrorCode as ErrorCode,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteGroupsResponse {
        pub error_code: ErrorCode as ErrorCode,
        /// One per requested group, in request order.
        pub results: Vec<GroupResult> as List<GroupResult, GROUPS_PER_MESSAGE_MAX>,
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

wire! {
    /// What a consumer puts in its JoinGroup protocol metadata: the topics it wants, and the
    /// partitions it owns now (so that a sticky assignor can leave them where they are). On the
    /// wire: a u16 version, then the fields.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ConsumerSubscription {
        pub topics: Vec<String> as List<TopicName, TOPICS_PER_MESSAGE_MAX>,
        #[wire = "topics"]
        pub owned_partitions: Vec<TopicPartitionList> as TopicPartitionLists,
        pub user_data: Bytes as MemberMetadata,
    }
}

impl ConsumerSubscription {
    const NAME: &'static str = "ConsumerSubscription";

    pub fn encode(&self) -> Result<Bytes, WireError> {
        encode_consumer_protocol::<Self>(self, "subscription")
    }

    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        decode_consumer_protocol::<Self>(bytes, Self::NAME)
    }
}

wire! {
    /// What the leader gives each consumer in SyncGroup: the partitions it owns from now on.
    /// On the wire: a u16 version, then the fields.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ConsumerAssignment {
        #[wire = "topics"]
        pub partitions: Vec<TopicPartitionList> as TopicPartitionLists,
        pub user_data: Bytes as MemberMetadata,
    }
}

impl ConsumerAssignment {
    const NAME: &'static str = "ConsumerAssignment";

    pub fn encode(&self) -> Result<Bytes, WireError> {
        encode_consumer_protocol::<Self>(self, "assignment")
    }

    /// An empty byte string is an empty assignment (what a member gets when the leader
    /// assigned it nothing).
    pub fn decode(bytes: Bytes) -> Result<Self, WireError> {
        if bytes.is_empty() {
            return Ok(Self::default());
        }
        decode_consumer_protocol::<Self>(bytes, Self::NAME)
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

/// The version, then the fields; refused if the whole exceeds what a member's metadata may be.
fn encode_consumer_protocol<T: Wire<Value = T>>(
    value: &T,
    field: &'static str,
) -> Result<Bytes, WireError> {
    let mut sink = BytesMut::new();
    sink.put_u16(CONSUMER_PROTOCOL_VERSION);
    T::encode(value, Field::message(field), &mut sink)?;
    if sink.len() > GROUP_MEMBER_METADATA_BYTES_MAX {
        return Err(WireError::TooLong {
            field,
            length: sink.len(),
            limit: GROUP_MEMBER_METADATA_BYTES_MAX,
        });
    }
    Ok(sink.freeze())
}

fn decode_consumer_protocol<T: Wire<Value = T>>(
    bytes: Bytes,
    name: &'static str,
) -> Result<T, WireError> {
    let mut decoder = Decoder::new(bytes);
    check_consumer_protocol_version(&mut decoder)?;
    let value = T::decode(Field::message(name), &mut decoder)?;
    decoder.finish(name)?;
    Ok(value)
}
