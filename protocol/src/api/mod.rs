//! Request and response messages of the native protocol, one module per API.
//!
//! Each message is a plain struct declared once with `wire!` (see `wire`): its fields, their
//! wire types and limits. From that declaration come its encoder and decoder, its minimum size
//! and what a request-wide error puts in it. The API table below ([`apis!`]) gives each API its
//! stable [`ApiKey`] number and its request and response types, and from it come the
//! [`Message`], [`Request`] and [`Response`] implementations and [`encode_error_response`], the
//! answer to a request that cannot be run. Frame layout is `frame`'s job, primitives are
//! `codec`'s; this module adds the helpers that put a message into a frame.
//!
//! Versions: an API starts at version 0; a later version may only append fields
//! (`#[since = N]` in its declaration), so the newest declaration reads and writes every
//! version. The table gives each API the range this build speaks; the client sends an
//! ApiVersions first and both sides use the highest version in both ranges
//! (`versions::pick_version`), so an old client and a new broker (or the reverse) keep talking
//! at the old version. Common layouts: strings carry a u16 length, byte strings and
//! element counts a u32, optional values a u8 tag (0 absent, 1 present), error codes a u16.
//! Decoders bound every count by a limit in `constants` and by the bytes left.
//!
//! Adding an API: declare its request and response structs with `wire!` in a module here, add
//! one line to the table, then serve it in the broker and call it from the client.

pub mod acl;
pub mod cluster;
pub mod config;
pub mod coordinator;
pub mod fetch;
pub mod group;
pub mod metadata;
pub mod offsets;
pub mod operations;
pub mod partitions;
pub mod produce;
pub mod producer;
pub mod quorum;
pub mod replication;
pub mod security;
pub mod topics;
pub mod transactions;
pub mod txn_markers;
pub mod versions;
pub(crate) mod wire;

use bytes::{Bytes, BytesMut};

use crate::codec::{Decoder, Sink};
use crate::constants::PARTITIONS_PER_TOPIC_MAX;
use crate::error::{ErrorCode, WireError};
use crate::frame::RequestHeader;
use crate::frame::{encode_request_frame, encode_request_frame_chunks};
use crate::frame::{encode_response_frame, encode_response_frame_chunks};
use wire::{wire, Field, Fields, List, TopicName, Wire};

pub use acl::{AclCreationResult, AclEntry, AclFilter, AclFilterResult};
pub use acl::{CreateAclsRequest, CreateAclsResponse, DeleteAclsRequest, DeleteAclsResponse};
pub use acl::{DescribeAclsRequest, DescribeAclsResponse};
pub use cluster::{DescribeClusterRequest, DescribeClusterResponse};
pub use config::{ConfigEntry, ConfigError, Durability, TopicConfig};
pub use coordinator::{CoordinatorType, FindCoordinatorRequest, FindCoordinatorResponse};
pub use fetch::{AbortedTransaction, IsolationLevel};
pub use fetch::{FetchPartition, FetchPartitionResponse, FetchRequest, FetchResponse, RecordSet};
pub use group::{ConsumerAssignment, ConsumerSubscription, GroupState, TopicPartitionList};
pub use group::{DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest};
pub use group::{DescribeGroupsResponse, DescribedGroup, DescribedMember, DescribedOffset};
pub use group::{GroupListing, GroupProtocol, GroupResult, HeartbeatRequest, HeartbeatResponse};
pub use group::{JoinGroupMember, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest};
pub use group::{LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, MemberIdentity};
pub use group::{MemberResult, OffsetCommitPartition, OffsetCommitRequest, OffsetCommitResponse};
pub use group::{OffsetDeleteRequest, OffsetDeleteResponse, OffsetFetchPartition};
pub use group::{OffsetFetchRequest, OffsetFetchResponse, PartitionResult, SyncGroupAssignment};
pub use group::{SyncGroupRequest, SyncGroupResponse, CONSUMER_PROTOCOL_TYPE, GENERATION_NONE};
pub use metadata::{BrokerMetadata, MetadataRequest, MetadataResponse, PartitionMetadata};
pub use metadata::{TopicMetadata, NO_NODE};
pub use offsets::{DeleteRecordsPartition, DeleteRecordsPartitionResponse, DeleteRecordsRequest};
pub use offsets::{DeleteRecordsResponse, ListOffsetsPartition, ListOffsetsPartitionResponse};
pub use offsets::{ListOffsetsRequest, ListOffsetsResponse, OffsetSpec};
pub use operations::TopicOutcomes;
pub use operations::{AlterReassignmentsRequest, AlterReassignmentsResponse};
pub use operations::{DecommissionBrokerRequest, DecommissionBrokerResponse};
pub use operations::{ElectLeadersRequest, ElectLeadersResponse, ListReassignmentsRequest};
pub use operations::{ListReassignmentsResponse, OngoingReassignment, PartitionOutcome};
pub use operations::{ReassignmentListing, ReassignmentPartition, ReassignmentTopic};
pub use partitions::{CreatePartitionsRequest, CreatePartitionsResponse};
pub use produce::ProduceResponse;
pub use produce::{Acks, ProducePartition, ProducePartitionResponse, ProduceRequest};
pub use producer::{InitProducerIdRequest, InitProducerIdResponse};
pub use quorum::{ClusterProposeRequest, ClusterProposeResponse};
pub use quorum::{RaftMessageRequest, RaftMessageResponse};
pub use replication::{ReplicaFetchPartition, ReplicaFetchPartitionResponse};
pub use replication::{ReplicaFetchRequest, ReplicaFetchResponse, ReplicaFetchTopic};
pub use replication::{ReplicaFetchTopicResponse, NO_EPOCH};
pub use security::{DeleteUserRequest, ListUsersRequest, ListUsersResponse, UpsertUserRequest};
pub use security::{DeleteUserResponse, UpsertUserResponse};
pub use security::{SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest};
pub use security::{SaslHandshakeResponse, UserCredentialInfo, UserListing};
pub use topics::{AlterTopicConfigRequest, AlterTopicConfigResponse, CreateTopic};
pub use topics::{CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest};
pub use topics::{DeleteTopicsResponse, DescribeTopicRequest, DescribeTopicResponse};
pub use topics::{ListTopicsRequest, ListTopicsResponse, TopicListing, TopicResult};
pub use transactions::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
pub use transactions::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, EndTxnRequest};
pub use transactions::{EndTxnResponse, TxnOffsetCommitRequest, TxnOffsetCommitResponse};
pub use txn_markers::{VerifyTxnRequest, VerifyTxnResponse};
pub use txn_markers::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
pub use versions::SUPPORTED_API_VERSIONS;
pub use versions::{pick_version, ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse};

/// The API table: each API's stable number (never reused) and its request and response. From
/// it come [`ApiKey`], the [`Message`], [`Request`] and [`Response`] implementations, and
/// [`encode_error_response`].
macro_rules! apis {
    ($(
        $api:ident = $number:literal $(, versions $oldest:literal ..= $newest:literal)?
            => $request:ident, $response:ident;
    )*) => {
        /// API keys: stable numbers, never reused.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[repr(u16)]
        pub enum ApiKey {
            $($api = $number,)*
        }

        impl ApiKey {
            /// Every key, in numeric order.
            pub const ALL: [ApiKey; [$(ApiKey::$api),*].len()] = [$(ApiKey::$api),*];

            /// The oldest and newest version of this API that this build speaks.
            pub const fn versions(self) -> (u16, u16) {
                match self {
                    $(ApiKey::$api => api_versions!($($oldest, $newest)?),)*
                }
            }
        }

        $(
            impl Message for $request {
                const API_KEY: ApiKey = ApiKey::$api;
                const VERSIONS: (u16, u16) = ApiKey::$api.versions();
                const NAME: &'static str = stringify!($request);
            }

            impl Request for $request {
                type Response = $response;
            }

            impl Message for $response {
                const API_KEY: ApiKey = ApiKey::$api;
                const VERSIONS: (u16, u16) = ApiKey::$api.versions();
                const NAME: &'static str = stringify!($response);
            }

            impl Response for $response {
                const CARRIES_ERROR_CODE: bool = <$response as Fields>::HAS_ERROR_CODE;

                fn error_answer(code: ErrorCode) -> Self {
                    let mut answer = Self::default();
                    Fields::put_error(&mut answer, code);
                    answer
                }
            }
        )*

        /// The response frame answering a request of `api_key` that failed as a whole with
        /// `code` before it could run (it did not decode, or the frame was too large).
        pub fn encode_error_response(
            api_key: ApiKey,
            correlation_id: u32,
            version: u16,
            code: ErrorCode,
        ) -> Result<ErrorResponse, WireError> {
            match api_key {
                $(ApiKey::$api => error_response::<$response>(correlation_id, version, code),)*
            }
        }

        /// Checks the minimum size of every message and of every type inside one.
        #[cfg(test)]
        fn check_every_message(check: &mut wire::minimums::Check) {
            $(
                <$request as Wire>::check_minimums(check);
                <$response as Wire>::check_minimums(check);
            )*
        }
    };
}

/// An API's version range in the table: 0 to 0 unless it says otherwise.
macro_rules! api_versions {
    () => {
        (0, 0)
    };
    ($oldest:literal, $newest:literal) => {
        ($oldest, $newest)
    };
}

apis! {
    ApiVersions = 0 => ApiVersionsRequest, ApiVersionsResponse;
    // Version 1: the cluster (id, controller, brokers) and each partition's leader, leader
    // epoch, replicas and in-sync replicas.
    Metadata = 1, versions 0..=1 => MetadataRequest, MetadataResponse;
    // Version 1: each topic's replication factor.
    CreateTopics = 2, versions 0..=1 => CreateTopicsRequest, CreateTopicsResponse;
    DeleteTopics = 3 => DeleteTopicsRequest, DeleteTopicsResponse;
    ListTopics = 4 => ListTopicsRequest, ListTopicsResponse;
    DescribeTopic = 5 => DescribeTopicRequest, DescribeTopicResponse;
    AlterTopicConfig = 6 => AlterTopicConfigRequest, AlterTopicConfigResponse;
    // Version 1: the transactional id (the broker checks the partition is in the transaction).
    // Version 2: a NotLeaderOrFollower partition names the leader and its epoch.
    Produce = 7, versions 0..=2 => ProduceRequest, ProduceResponse;
    // Version 1: the isolation level; last stable offset and aborted transactions answered.
    // Version 2: a NotLeaderOrFollower partition names the leader and its epoch.
    Fetch = 8, versions 0..=2 => FetchRequest, FetchResponse;
    // Version 1: the isolation level (latest is the last stable offset under read_committed).
    ListOffsets = 9, versions 0..=1 => ListOffsetsRequest, ListOffsetsResponse;
    DeleteRecords = 10 => DeleteRecordsRequest, DeleteRecordsResponse;
    JoinGroup = 11 => JoinGroupRequest, JoinGroupResponse;
    SyncGroup = 12 => SyncGroupRequest, SyncGroupResponse;
    Heartbeat = 13 => HeartbeatRequest, HeartbeatResponse;
    LeaveGroup = 14 => LeaveGroupRequest, LeaveGroupResponse;
    OffsetCommit = 15 => OffsetCommitRequest, OffsetCommitResponse;
    // Version 1: `require_stable`.
    OffsetFetch = 16, versions 0..=1 => OffsetFetchRequest, OffsetFetchResponse;
    ListGroups = 17 => ListGroupsRequest, ListGroupsResponse;
    DescribeGroups = 18 => DescribeGroupsRequest, DescribeGroupsResponse;
    DeleteGroups = 19 => DeleteGroupsRequest, DeleteGroupsResponse;
    OffsetDelete = 20 => OffsetDeleteRequest, OffsetDeleteResponse;
    // Version 1: the transactional id and transaction timeout.
    InitProducerId = 21, versions 0..=1 => InitProducerIdRequest, InitProducerIdResponse;
    // Version 1: the answering broker's node id, the cluster id, controller and brokers.
    DescribeCluster = 22, versions 0..=1 => DescribeClusterRequest, DescribeClusterResponse;
    CreatePartitions = 23 => CreatePartitionsRequest, CreatePartitionsResponse;
    AddPartitionsToTxn = 24 => AddPartitionsToTxnRequest, AddPartitionsToTxnResponse;
    AddOffsetsToTxn = 25 => AddOffsetsToTxnRequest, AddOffsetsToTxnResponse;
    EndTxn = 26 => EndTxnRequest, EndTxnResponse;
    TxnOffsetCommit = 27 => TxnOffsetCommitRequest, TxnOffsetCommitResponse;
    FindCoordinator = 28 => FindCoordinatorRequest, FindCoordinatorResponse;
    // Broker to broker: a follower's fetch, and the metadata quorum's traffic.
    ReplicaFetch = 29 => ReplicaFetchRequest, ReplicaFetchResponse;
    RaftMessage = 30 => RaftMessageRequest, RaftMessageResponse;
    ClusterPropose = 31 => ClusterProposeRequest, ClusterProposeResponse;
    // Cluster operations (`spate cluster`).
    ElectLeaders = 32 => ElectLeadersRequest, ElectLeadersResponse;
    AlterReassignments = 33 => AlterReassignmentsRequest, AlterReassignmentsResponse;
    ListReassignments = 34 => ListReassignmentsRequest, ListReassignmentsResponse;
    DecommissionBroker = 35 => DecommissionBrokerRequest, DecommissionBrokerResponse;
    // Broker to broker, for transactions: a coordinator's markers to a partition leader, and a
    // leader's KIP-890 check with a transactional id's coordinator.
    WriteTxnMarkers = 36 => WriteTxnMarkersRequest, WriteTxnMarkersResponse;
    VerifyTxn = 37 => VerifyTxnRequest, VerifyTxnResponse;
    // Authentication (Kafka's meaning) and users (issue #17).
    SaslHandshake = 38 => SaslHandshakeRequest, SaslHandshakeResponse;
    // Version 1: the answer's session_lifetime_ms (re-authentication).
    SaslAuthenticate = 39, versions 0..=1 => SaslAuthenticateRequest, SaslAuthenticateResponse;
    UpsertUser = 40 => UpsertUserRequest, UpsertUserResponse;
    DeleteUser = 41 => DeleteUserRequest, DeleteUserResponse;
    ListUsers = 42 => ListUsersRequest, ListUsersResponse;
    // Authorization: ACLs with Kafka's meaning and codes (issue #17).
    DescribeAcls = 43 => DescribeAclsRequest, DescribeAclsResponse;
    CreateAcls = 44 => CreateAclsRequest, CreateAclsResponse;
    DeleteAcls = 45 => DeleteAclsRequest, DeleteAclsResponse;
}

impl ApiKey {
    pub fn to_u16(self) -> u16 {
        self as u16
    }

    pub fn from_u16(api_key: u16) -> Option<Self> {
        Self::ALL.get(usize::from(api_key)).copied()
    }
}

const _: () = {
    let mut index = 0;
    while index < ApiKey::ALL.len() {
        assert!(
            ApiKey::ALL[index] as usize == index,
            "ALL must list keys in numeric order"
        );
        index += 1;
    }
};

/// A message body of one API, in one direction. Implemented for every message in the API
/// table, from its declaration.
#[allow(private_bounds)]
pub trait Message: Wire<Value = Self> + Fields {
    const API_KEY: ApiKey;
    /// Oldest and newest version this build encodes and decodes.
    const VERSIONS: (u16, u16) = (0, 0);
    /// Name used in decode errors.
    const NAME: &'static str;

    /// Appends the body for `version`. Fails on an unsupported version or a value the decoder
    /// would reject (too long, too many).
    fn encode<S: Sink>(&self, version: u16, sink: &mut S) -> Result<(), WireError> {
        check_version::<Self>(version)?;
        <Self as Wire>::encode(self, Field::message_at(Self::NAME, version), sink)
    }

    /// Decodes a whole body for `version`; leftover bytes are an error. Byte strings (record
    /// batches) in the result share `body`'s memory.
    fn decode(version: u16, body: Bytes) -> Result<Self, WireError> {
        check_version::<Self>(version)?;
        let mut decoder = Decoder::new(body);
        let message = <Self as Wire>::decode(Field::message_at(Self::NAME, version), &mut decoder)?;
        decoder.finish(Self::NAME)?;
        Ok(message)
    }

    /// The oldest version that carries everything this message holds: a version 1 field with
    /// a value (a read_committed fetch, a transactional id) cannot be sent at version 0. Only
    /// the message's own fields count, not those of the items in its lists.
    fn version_needed(&self) -> u16 {
        Fields::version_needed(self)
    }

    /// Whether this build speaks `version` of this message.
    fn supports(version: u16) -> bool {
        (Self::VERSIONS.0..=Self::VERSIONS.1).contains(&version)
    }
}

/// A request, tied to the response the server answers it with.
pub trait Request: Message {
    type Response: Response;
}

/// A response, with the answer it gives when its request failed as a whole.
pub trait Response: Message + Default {
    /// Whether the response has a field for a request-wide error code. One without (produce,
    /// metadata, topic creation: per-item codes only) can only answer empty, and the connection
    /// then closes so the client learns that something failed.
    const CARRIES_ERROR_CODE: bool;

    /// The default response with `code` in its error-code field and the code's description in
    /// its error-text field, where it has them.
    fn error_answer(code: ErrorCode) -> Self;
}

/// The encoded answer to a request that failed as a whole (see [`encode_error_response`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    /// The response frame, as chunks for a vectored write.
    pub chunks: Vec<Bytes>,
    /// Whether the response says which error it was; if not, close after sending it.
    pub carries_error_code: bool,
}

fn error_response<M: Response>(
    correlation_id: u32,
    version: u16,
    code: ErrorCode,
) -> Result<ErrorResponse, WireError> {
    Ok(ErrorResponse {
        chunks: encode_response_chunks(correlation_id, version, &M::error_answer(code))?,
        carries_error_code: M::CARRIES_ERROR_CODE,
    })
}

fn check_version<M: Message>(version: u16) -> Result<(), WireError> {
    if M::supports(version) {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion {
            api_key: M::API_KEY.to_u16(),
            api_version: version,
        })
    }
}

/// Appends a request frame for `request` at `version` to `target`.
pub fn encode_request<R: Request>(
    target: &mut BytesMut,
    correlation_id: u32,
    client_id: &str,
    version: u16,
    request: &R,
) -> Result<(), WireError> {
    let header = RequestHeader {
        api_key: R::API_KEY.to_u16(),
        api_version: version,
        correlation_id,
        client_id,
    };
    encode_request_frame(target, &header, |sink| request.encode(version, sink))
}

/// Encodes a request frame as chunks for a vectored write; record batches in it (produce)
/// stay shared with the buffers the producer sealed them in.
pub fn encode_request_chunks<R: Request>(
    correlation_id: u32,
    client_id: &str,
    version: u16,
    request: &R,
) -> Result<Vec<Bytes>, WireError> {
    let header = RequestHeader {
        api_key: R::API_KEY.to_u16(),
        api_version: version,
        correlation_id,
        client_id,
    };
    encode_request_frame_chunks(&header, |sink| request.encode(version, sink))
}

/// Appends a response frame for `response` at `version` to `target`, copying all its bytes.
pub fn encode_response<M: Message>(
    target: &mut BytesMut,
    correlation_id: u32,
    version: u16,
    response: &M,
) -> Result<(), WireError> {
    encode_response_frame(target, correlation_id, |sink| {
        response.encode(version, sink)
    })
}

/// Encodes a response frame as chunks for a vectored write; record batches in it (fetch) stay
/// shared with the buffers they came from.
pub fn encode_response_chunks<M: Message>(
    correlation_id: u32,
    version: u16,
    response: &M,
) -> Result<Vec<Bytes>, WireError> {
    encode_response_frame_chunks(correlation_id, |sink| response.encode(version, sink))
}

wire! {
    /// One topic and a list of per-partition entries: the shape of most data-plane messages.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct TopicPartitions<P> {
        #[wire = "topic_name"]
        pub name: String as TopicName,
        pub partitions: Vec<P> as List<P, PARTITIONS_PER_TOPIC_MAX>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_minimum_size_is_the_size_of_the_smallest_encoding() {
        let mut check = wire::minimums::Check::default();
        check_every_message(&mut check);
        // The consumer protocol travels inside group messages as opaque bytes.
        <ConsumerSubscription as Wire>::check_minimums(&mut check);
        <ConsumerAssignment as Wire>::check_minimums(&mut check);
        for api_key in ApiKey::ALL {
            assert!(
                check
                    .checked
                    .iter()
                    .any(|name| name.contains(&format!("::{api_key:?}Request"))),
                "{api_key:?}'s request was not checked"
            );
        }
        assert!(check.checked.len() > 2 * ApiKey::ALL.len());
    }
}
