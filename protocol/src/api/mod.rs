//! Request and response messages of the native protocol, one module per API.
//!
//! Each message is a plain struct with `encode` (to a [`Sink`]) and `decode` (from the frame
//! body's `Bytes`) for a given API version, through the [`Message`] trait; [`Request`] pairs a
//! request with its response type. Frame layout is `frame`'s job, primitives are `codec`'s; this
//! module adds the stable [`ApiKey`] numbers and helpers that put a message into a frame.
//!
//! Every API is at version 0. Common layouts: strings carry a u16 length, byte strings and
//! element counts a u32, optional values a u8 tag (0 absent, 1 present), error codes a u16.
//! Decoders bound every count by a limit in `constants` and by the bytes left.

pub mod cluster;
pub mod config;
pub mod fetch;
pub mod group;
pub mod metadata;
pub mod offsets;
pub mod partitions;
pub mod produce;
pub mod producer;
pub mod topics;
pub mod versions;

use bytes::{Bytes, BytesMut};

use crate::codec::{put_count, put_string, Decoder, Sink};
use crate::constants::{PARTITIONS_PER_TOPIC_MAX, TOPIC_NAME_BYTES_MAX};
use crate::error::{ErrorCode, WireError};
use crate::frame::RequestHeader;
use crate::frame::{encode_request_frame, encode_request_frame_chunks};
use crate::frame::{encode_response_frame, encode_response_frame_chunks};

pub use cluster::{DescribeClusterRequest, DescribeClusterResponse};
pub use config::{ConfigEntry, ConfigError, Durability, TopicConfig};
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
pub use metadata::{MetadataRequest, MetadataResponse, PartitionMetadata, TopicMetadata};
pub use offsets::{DeleteRecordsPartition, DeleteRecordsPartitionResponse, DeleteRecordsRequest};
pub use offsets::{DeleteRecordsResponse, ListOffsetsPartition, ListOffsetsPartitionResponse};
pub use offsets::{ListOffsetsRequest, ListOffsetsResponse, OffsetSpec};
pub use partitions::{CreatePartitionsRequest, CreatePartitionsResponse};
pub use produce::ProduceResponse;
pub use produce::{Acks, ProducePartition, ProducePartitionResponse, ProduceRequest};
pub use producer::{InitProducerIdRequest, InitProducerIdResponse};
pub use topics::{AlterTopicConfigRequest, AlterTopicConfigResponse, CreateTopic};
pub use topics::{CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest};
pub use topics::{DeleteTopicsResponse, DescribeTopicRequest, DescribeTopicResponse};
pub use topics::{ListTopicsRequest, ListTopicsResponse, TopicListing, TopicResult};
pub use versions::SUPPORTED_API_VERSIONS;
pub use versions::{pick_version, ApiVersionRange, ApiVersionsRequest, ApiVersionsResponse};

/// API keys: stable numbers, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u16)]
pub enum ApiKey {
    ApiVersions = 0,
    Metadata = 1,
    CreateTopics = 2,
    DeleteTopics = 3,
    ListTopics = 4,
    DescribeTopic = 5,
    AlterTopicConfig = 6,
    Produce = 7,
    Fetch = 8,
    ListOffsets = 9,
    DeleteRecords = 10,
    JoinGroup = 11,
    SyncGroup = 12,
    Heartbeat = 13,
    LeaveGroup = 14,
    OffsetCommit = 15,
    OffsetFetch = 16,
    ListGroups = 17,
    DescribeGroups = 18,
    DeleteGroups = 19,
    OffsetDelete = 20,
    InitProducerId = 21,
    DescribeCluster = 22,
    CreatePartitions = 23,
}

impl ApiKey {
    /// Every key, in numeric order.
    pub const ALL: [ApiKey; 24] = [
        Self::ApiVersions,
        Self::Metadata,
        Self::CreateTopics,
        Self::DeleteTopics,
        Self::ListTopics,
        Self::DescribeTopic,
        Self::AlterTopicConfig,
        Self::Produce,
        Self::Fetch,
        Self::ListOffsets,
        Self::DeleteRecords,
        Self::JoinGroup,
        Self::SyncGroup,
        Self::Heartbeat,
        Self::LeaveGroup,
        Self::OffsetCommit,
        Self::OffsetFetch,
        Self::ListGroups,
        Self::DescribeGroups,
        Self::DeleteGroups,
        Self::OffsetDelete,
        Self::InitProducerId,
        Self::DescribeCluster,
        Self::CreatePartitions,
    ];

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

/// A message body of one API, in one direction.
pub trait Message: Sized {
    const API_KEY: ApiKey;
    /// Oldest and newest version this build encodes and decodes.
    const VERSIONS: (u16, u16) = (0, 0);
    /// Name used in decode errors.
    const NAME: &'static str;

    /// Appends the body for `version`. Fails on an unsupported version or a value the decoder
    /// would reject (too long, too many).
    fn encode<S: Sink>(&self, version: u16, sink: &mut S) -> Result<(), WireError>;

    /// Decodes a whole body for `version`; leftover bytes are an error. Byte strings (record
    /// batches) in the result share `body`'s memory.
    fn decode(version: u16, body: Bytes) -> Result<Self, WireError>;

    /// Whether this build speaks `version` of this message.
    fn supports(version: u16) -> bool {
        (Self::VERSIONS.0..=Self::VERSIONS.1).contains(&version)
    }
}

/// A request, tied to the response the server answers it with.
pub trait Request: Message {
    type Response: Message;
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

/// Element codec inside messages. Versionless for now: when a version changes an element,
/// thread the version through here.
pub(crate) trait Wire: Sized {
    /// Fewest bytes one encoded value takes; lets decoders bound a count by the bytes left.
    const ENCODED_BYTES_MIN: usize;
    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError>;
    fn decode(decoder: &mut Decoder) -> Result<Self, WireError>;
}

pub(crate) fn encode_list<T: Wire, S: Sink>(
    sink: &mut S,
    field: &'static str,
    items: &[T],
    limit: usize,
) -> Result<(), WireError> {
    put_count(sink, field, items.len(), limit)?;
    items.iter().try_for_each(|item| item.encode(sink))
}

pub(crate) fn decode_list<T: Wire>(
    decoder: &mut Decoder,
    field: &'static str,
    limit: usize,
) -> Result<Vec<T>, WireError> {
    let count = decoder.count(field, limit, T::ENCODED_BYTES_MIN)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(T::decode(decoder)?);
    }
    Ok(items)
}

/// Checks the version, then decodes the whole body as `T`.
pub(crate) fn decode_body<M: Message + Wire>(version: u16, body: Bytes) -> Result<M, WireError> {
    check_version::<M>(version)?;
    let mut decoder = Decoder::new(body);
    let message = <M as Wire>::decode(&mut decoder)?;
    decoder.finish(M::NAME)?;
    Ok(message)
}

pub(crate) fn check_version<M: Message>(version: u16) -> Result<(), WireError> {
    if M::supports(version) {
        Ok(())
    } else {
        Err(WireError::UnsupportedVersion {
            api_key: M::API_KEY.to_u16(),
            api_version: version,
        })
    }
}

/// Implements [`Message`] (and optionally [`Request`]) for a type that implements [`Wire`].
macro_rules! message {
    ($type:ty, $api_key:expr, $name:literal) => {
        impl $crate::api::Message for $type {
            const API_KEY: $crate::api::ApiKey = $api_key;
            const NAME: &'static str = $name;
            fn encode<S: $crate::codec::Sink>(
                &self,
                version: u16,
                sink: &mut S,
            ) -> Result<(), $crate::error::WireError> {
                $crate::api::check_version::<Self>(version)?;
                $crate::api::Wire::encode(self, sink)
            }
            fn decode(version: u16, body: bytes::Bytes) -> Result<Self, $crate::error::WireError> {
                $crate::api::decode_body(version, body)
            }
        }
    };
    ($type:ty, $api_key:expr, $name:literal, response = $response:ty) => {
        message!($type, $api_key, $name);
        impl $crate::api::Request for $type {
            type Response = $response;
        }
    };
}
pub(crate) use message;

/// One topic and a list of per-partition entries: the shape of most data-plane messages.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPartitions<P> {
    pub name: String,
    pub partitions: Vec<P>,
}

impl<P: Wire> Wire for TopicPartitions<P> {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_string(sink, "topic_name", &self.name, TOPIC_NAME_BYTES_MAX)?;
        encode_list(
            sink,
            "partitions",
            &self.partitions,
            PARTITIONS_PER_TOPIC_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            name: decoder.string("topic_name", TOPIC_NAME_BYTES_MAX)?,
            partitions: decode_list(decoder, "partitions", PARTITIONS_PER_TOPIC_MAX)?,
        })
    }
}

pub(crate) fn put_error_code<S: Sink>(sink: &mut S, code: ErrorCode) {
    sink.put_u16(code.to_u16());
}

pub(crate) fn decode_error_code(decoder: &mut Decoder) -> Result<ErrorCode, WireError> {
    decoder.u16("error_code").map(ErrorCode::from_u16_lossy)
}

pub(crate) fn encode_strings<S: Sink>(
    sink: &mut S,
    field: &'static str,
    items: &[String],
    count_limit: usize,
    length_limit: usize,
) -> Result<(), WireError> {
    put_count(sink, field, items.len(), count_limit)?;
    items
        .iter()
        .try_for_each(|item| put_string(sink, field, item, length_limit))
}

pub(crate) fn decode_strings(
    decoder: &mut Decoder,
    field: &'static str,
    count_limit: usize,
    length_limit: usize,
) -> Result<Vec<String>, WireError> {
    let count = decoder.count(field, count_limit, 2)?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        items.push(decoder.string(field, length_limit)?);
    }
    Ok(items)
}
