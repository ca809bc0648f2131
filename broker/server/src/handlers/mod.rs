//! Requests as the server sees them: decode a frame into a typed request, run it, encode the
//! response as chunks for a vectored write.
//!
//! `decode` runs in the connection's reader (so the reader knows a fetch's response allowance
//! before spawning it); `execute` runs in the request's own task. Per-API logic lives in `admin`
//! (versions, metadata, topics), `data` (produce, fetch, offsets, delete records), `group`
//! (consumer groups), `txn` (transactions), `auth_api` (SASL and users) and `acl_api` (ACLs);
//! `access` says what each request asks of the connection's principal, and `execute` refuses
//! what the ACLs do not allow before it dispatches. This file only dispatches and maps errors to
//! wire codes. Nothing here touches sockets.

pub(crate) mod access;
pub(crate) mod acl_api;
pub(crate) mod admin;
pub(crate) mod auth_api;
pub(crate) mod cluster;
pub(crate) mod data;
pub(crate) mod group;
pub(crate) mod txn;
pub(crate) mod txn_peers;

use std::future::Future;
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use spate_protocol::api::{
    encode_error_response, encode_response_chunks, AlterTopicConfigRequest, ApiKey,
    ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest,
    DeleteTopicsRequest, DescribeClusterRequest, DescribeTopicRequest, FetchRequest,
    InitProducerIdRequest, ListOffsetsRequest, ListTopicsRequest, Message, MetadataRequest,
    ProduceRequest,
};
use spate_protocol::api::{AddOffsetsToTxnRequest, AddPartitionsToTxnRequest};
use spate_protocol::api::{AddPartitionsToTxnResponse, CoordinatorType, PartitionResult};
use spate_protocol::api::{AlterReassignmentsRequest, DecommissionBrokerRequest};
use spate_protocol::api::{ClusterProposeRequest, RaftMessageRequest};
use spate_protocol::api::{CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest};
use spate_protocol::api::{DeleteRecordsPartitionResponse, ListOffsetsPartitionResponse};
use spate_protocol::api::{DeleteUserRequest, ListUsersRequest, UpsertUserRequest};
use spate_protocol::api::{ElectLeadersRequest, FindCoordinatorRequest, ListReassignmentsRequest};
use spate_protocol::api::{EndTxnRequest, ReplicaFetchRequest, TxnOffsetCommitRequest};
use spate_protocol::api::{FetchPartitionResponse, FetchResponse, ProducePartitionResponse};
use spate_protocol::api::{ProduceResponse, TopicResult, TxnOffsetCommitResponse, NO_NODE};
use spate_protocol::api::{SaslAuthenticateRequest, SaslHandshakeRequest};
use spate_protocol::api::{VerifyTxnRequest, WriteTxnMarkersRequest};
use spate_protocol::constants::FRAME_LENGTH_BYTES;
use spate_protocol::error::{ErrorCode, WireError};
use spate_protocol::frame::{split_request_frame, RequestFrame, REQUEST_HEADER_BYTES_MIN};
use spate_security::Operation;

use crate::auth::Session;
use crate::catalog::{CatalogError, ProducerIdError};
use crate::config::Limits;
use crate::connection::{Dialect, Reply};
use crate::services::Services;
use crate::shard::messages::PartitionError;
use access::{Access, Refused};

/// A decoded request with what its response needs: the correlation id and the version to
/// answer at.
pub struct Envelope<R> {
    pub correlation_id: u32,
    pub version: u16,
    pub body: R,
}

/// Every request the broker serves.
pub enum Request {
    ApiVersions(Envelope<ApiVersionsRequest>),
    Metadata(Envelope<MetadataRequest>),
    CreateTopics(Envelope<CreateTopicsRequest>),
    DeleteTopics(Envelope<DeleteTopicsRequest>),
    ListTopics(Envelope<ListTopicsRequest>),
    DescribeTopic(Envelope<DescribeTopicRequest>),
    AlterTopicConfig(Envelope<AlterTopicConfigRequest>),
    /// `frame_body` is the frame's body, kept so the produce handler can take the batches out
    /// of it without copying when nothing else shares it.
    Produce(Envelope<ProduceRequest>, Bytes),
    Fetch(Envelope<FetchRequest>),
    ListOffsets(Envelope<ListOffsetsRequest>),
    DeleteRecords(Envelope<DeleteRecordsRequest>),
    InitProducerId(Envelope<InitProducerIdRequest>),
    DescribeCluster(Envelope<DescribeClusterRequest>),
    CreatePartitions(Envelope<CreatePartitionsRequest>),
    AddPartitionsToTxn(Envelope<AddPartitionsToTxnRequest>),
    AddOffsetsToTxn(Envelope<AddOffsetsToTxnRequest>),
    EndTxn(Envelope<EndTxnRequest>),
    TxnOffsetCommit(Envelope<TxnOffsetCommitRequest>),
    FindCoordinator(Envelope<FindCoordinatorRequest>),
    ElectLeaders(Envelope<ElectLeadersRequest>),
    AlterReassignments(Envelope<AlterReassignmentsRequest>),
    ListReassignments(Envelope<ListReassignmentsRequest>),
    DecommissionBroker(Envelope<DecommissionBrokerRequest>),
    /// The metadata quorum's traffic between brokers (`crate::cluster`).
    RaftMessage(Envelope<RaftMessageRequest>),
    ClusterPropose(Envelope<ClusterProposeRequest>),
    /// A follower's fetch (`replication::replica_fetch`).
    ReplicaFetch(Envelope<ReplicaFetchRequest>),
    /// Broker to broker, for transactions in a cluster (`txn_peers`).
    WriteTxnMarkers(Envelope<WriteTxnMarkersRequest>),
    VerifyTxn(Envelope<VerifyTxnRequest>),
    /// Consumer group APIs (`group`).
    Group(group::GroupRequest),
    /// Authentication (`auth_api`): they need the connection's session, which
    /// `Native::execute` holds.
    SaslHandshake(Envelope<SaslHandshakeRequest>),
    SaslAuthenticate(Envelope<SaslAuthenticateRequest>),
    /// User management (`auth_api`).
    UpsertUser(Envelope<UpsertUserRequest>),
    DeleteUser(Envelope<DeleteUserRequest>),
    ListUsers(Envelope<ListUsersRequest>),
    /// ACLs (`acl_api`).
    DescribeAcls(Envelope<DescribeAclsRequest>),
    CreateAcls(Envelope<CreateAclsRequest>),
    DeleteAcls(Envelope<DeleteAclsRequest>),
}

/// What the reader does with a frame it could not decode.
pub struct Rejection {
    /// The error response to send, if the api has a response this error fits in.
    pub answer: Option<Vec<Bytes>>,
    /// Whether to close the connection after the answer (the client cannot tell what went wrong
    /// from the answer alone, or the api is unknown).
    pub close: bool,
}

/// Spate's native protocol, as the connection loop serves it: little-endian length prefixes,
/// `spate_protocol::frame` headers, the requests above; one per connection, with the
/// connection's authentication (on a mutual-TLS listener without SASL, the principal of its
/// verified client certificate: `Session::use_transport_principal`).
pub struct Native {
    session: Session,
}

impl Native {
    pub fn new(session: Session) -> Native {
        Native { session }
    }
}

impl Dialect for Native {
    type Frame = RequestFrame;
    type Request = Request;
    const PROTOCOL: spate_metrics::Protocol = spate_metrics::Protocol::Native;

    fn api_key(frame: &RequestFrame) -> i16 {
        i16::try_from(frame.api_key).unwrap_or(-1)
    }

    const HEADER_BYTES_MIN: usize = REQUEST_HEADER_BYTES_MIN;

    fn frame_bytes(buffer: &[u8]) -> Option<usize> {
        peek_u32(buffer, 0).map(|length| length as usize)
    }

    fn refuse_oversized(
        &self,
        buffer: &[u8],
        frame_bytes: usize,
        limit: usize,
    ) -> Option<Vec<Bytes>> {
        let error = WireError::FrameTooLarge {
            frame_bytes,
            limit,
            api_key: peek_u16(buffer, FRAME_LENGTH_BYTES),
            correlation_id: peek_u32(buffer, FRAME_LENGTH_BYTES + 4),
        };
        refuse_unreadable(buffer, &error)
    }

    fn split(&self, buffer: &mut BytesMut) -> Result<RequestFrame, Option<Vec<Bytes>>> {
        match split_request_frame(buffer) {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => unreachable!("a frame whose bytes all arrived is complete"),
            Err(error) => Err(refuse_unreadable(buffer, &error)),
        }
    }

    fn decode(&self, frame: RequestFrame) -> Result<Request, Rejection> {
        // As on the Kafka listener: before the connection authenticated, only what
        // authenticates it is taken, and anything else closes it without an answer.
        if !self.session.is_authenticated() && !may_precede_authentication(frame.api_key) {
            tracing::info!(
                api_key = frame.api_key,
                "closing a native connection: a request before the connection authenticated \
                 (SASL is required)"
            );
            return Err(Rejection {
                answer: None,
                close: true,
            });
        }
        // Re-authentication (KIP-368): past its lifetime the session serves only a new
        // handshake and its steps.
        if !may_precede_authentication(frame.api_key)
            && self.session.has_expired(std::time::Instant::now())
        {
            tracing::info!(
                api_key = frame.api_key,
                "closing a native connection: a request after the authentication's lifetime \
                 (connections_max_reauth_ms) ended without a re-authentication"
            );
            return Err(Rejection {
                answer: None,
                close: true,
            });
        }
        decode(frame)
    }

    fn response_allowance(&self, request: &Request, limits: &Limits) -> usize {
        response_allowance(request, limits)
    }

    fn limit_response(&self, request: &mut Request, bytes: usize) {
        let bytes = u32::try_from(bytes).unwrap_or(u32::MAX);
        match request {
            Request::Fetch(fetch) => {
                fetch.body.max_bytes = fetch.body.max_bytes.min(bytes);
                fetch.body.min_bytes = fetch.body.min_bytes.min(fetch.body.max_bytes);
            }
            Request::ReplicaFetch(fetch) => {
                fetch.body.max_bytes = fetch.body.max_bytes.min(bytes);
                fetch.body.min_bytes = fetch.body.min_bytes.min(fetch.body.max_bytes);
            }
            _ => {}
        }
    }

    fn execute(
        self: &Rc<Self>,
        services: Rc<Services>,
        request: Request,
    ) -> impl Future<Output = Reply> + 'static {
        let native = self.clone();
        async move {
            let answer = match request {
                Request::SaslHandshake(request) => answer(
                    &request,
                    auth_api::sasl_handshake(&native.session, &request.body),
                ),
                Request::SaslAuthenticate(request) => answer(
                    &request,
                    auth_api::sasl_authenticate(&services, &native.session, &request.body).await,
                ),
                request => execute(services, &native.session, request).await,
            };
            match answer {
                // A failed authentication step is answered, then the connection closes.
                Some(chunks) if native.session.has_failed() => Reply::Last(chunks),
                answer => Reply::from_answer(answer),
            }
        }
    }
}

/// Whether a request with this API key may come before the connection authenticated.
fn may_precede_authentication(api_key: u16) -> bool {
    [
        ApiKey::ApiVersions,
        ApiKey::SaslHandshake,
        ApiKey::SaslAuthenticate,
    ]
    .iter()
    .any(|allowed| allowed.to_u16() == api_key)
}

/// The error answer to a frame that cannot be read, when its correlation id is readable and its
/// api is known (an unknown api has no response layout to carry the error).
fn refuse_unreadable(buffer: &[u8], error: &WireError) -> Option<Vec<Bytes>> {
    let correlation_id = match error {
        WireError::FrameTooLarge { correlation_id, .. } => *correlation_id,
        _ if buffer.len() >= FRAME_LENGTH_BYTES + REQUEST_HEADER_BYTES_MIN => {
            peek_u32(buffer, FRAME_LENGTH_BYTES + 4)
        }
        _ => None,
    };
    tracing::debug!(%error, ?correlation_id, "closing connection after an unreadable frame");
    let correlation_id = correlation_id?;
    let api_key = peek_u16(buffer, FRAME_LENGTH_BYTES).and_then(ApiKey::from_u16)?;
    let version = peek_u16(buffer, FRAME_LENGTH_BYTES + 2).unwrap_or(0);
    reject(
        api_key,
        correlation_id,
        version,
        ErrorCode::for_wire_error(error),
    )
    .answer
}

fn peek_u16(buffer: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buffer.get(at..at + 2)?.try_into().ok()?))
}

fn peek_u32(buffer: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buffer.get(at..at + 4)?.try_into().ok()?))
}

/// Decodes a frame's body for its api key and version.
pub fn decode(frame: RequestFrame) -> Result<Request, Rejection> {
    let correlation_id = frame.correlation_id;
    let version = frame.api_version;
    let Some(api_key) = ApiKey::from_u16(frame.api_key) else {
        tracing::debug!(api_key = frame.api_key, "request with an unknown api key");
        return Err(Rejection {
            answer: None,
            close: true,
        });
    };
    let failed = |error: WireError| {
        tracing::debug!(?api_key, %error, "request body does not decode");
        reject(
            api_key,
            correlation_id,
            version,
            ErrorCode::for_wire_error(&error),
        )
    };
    macro_rules! decoded {
        ($variant:ident, $type:ty) => {
            <$type>::decode(version, frame.body)
                .map(|body| {
                    Request::$variant(Envelope {
                        correlation_id,
                        version,
                        body,
                    })
                })
                .map_err(failed)
        };
    }
    match api_key {
        ApiKey::ApiVersions => decoded!(ApiVersions, ApiVersionsRequest),
        ApiKey::Metadata => decoded!(Metadata, MetadataRequest),
        ApiKey::CreateTopics => decoded!(CreateTopics, CreateTopicsRequest),
        ApiKey::DeleteTopics => decoded!(DeleteTopics, DeleteTopicsRequest),
        ApiKey::ListTopics => decoded!(ListTopics, ListTopicsRequest),
        ApiKey::DescribeTopic => decoded!(DescribeTopic, DescribeTopicRequest),
        ApiKey::AlterTopicConfig => decoded!(AlterTopicConfig, AlterTopicConfigRequest),
        ApiKey::Produce => {
            let body = frame.body.clone();
            ProduceRequest::decode(version, frame.body)
                .map(|request| {
                    Request::Produce(
                        Envelope {
                            correlation_id,
                            version,
                            body: request,
                        },
                        body,
                    )
                })
                .map_err(failed)
        }
        ApiKey::Fetch => decoded!(Fetch, FetchRequest),
        ApiKey::ListOffsets => decoded!(ListOffsets, ListOffsetsRequest),
        ApiKey::DeleteRecords => decoded!(DeleteRecords, DeleteRecordsRequest),
        ApiKey::InitProducerId => decoded!(InitProducerId, InitProducerIdRequest),
        ApiKey::DescribeCluster => decoded!(DescribeCluster, DescribeClusterRequest),
        ApiKey::CreatePartitions => decoded!(CreatePartitions, CreatePartitionsRequest),
        ApiKey::AddPartitionsToTxn => decoded!(AddPartitionsToTxn, AddPartitionsToTxnRequest),
        ApiKey::AddOffsetsToTxn => decoded!(AddOffsetsToTxn, AddOffsetsToTxnRequest),
        ApiKey::EndTxn => decoded!(EndTxn, EndTxnRequest),
        ApiKey::TxnOffsetCommit => decoded!(TxnOffsetCommit, TxnOffsetCommitRequest),
        ApiKey::FindCoordinator => decoded!(FindCoordinator, FindCoordinatorRequest),
        ApiKey::ElectLeaders => decoded!(ElectLeaders, ElectLeadersRequest),
        ApiKey::AlterReassignments => decoded!(AlterReassignments, AlterReassignmentsRequest),
        ApiKey::ListReassignments => decoded!(ListReassignments, ListReassignmentsRequest),
        ApiKey::DecommissionBroker => decoded!(DecommissionBroker, DecommissionBrokerRequest),
        ApiKey::RaftMessage => decoded!(RaftMessage, RaftMessageRequest),
        ApiKey::ClusterPropose => decoded!(ClusterPropose, ClusterProposeRequest),
        ApiKey::ReplicaFetch => decoded!(ReplicaFetch, ReplicaFetchRequest),
        ApiKey::WriteTxnMarkers => decoded!(WriteTxnMarkers, WriteTxnMarkersRequest),
        ApiKey::VerifyTxn => decoded!(VerifyTxn, VerifyTxnRequest),
        ApiKey::SaslHandshake => decoded!(SaslHandshake, SaslHandshakeRequest),
        ApiKey::SaslAuthenticate => decoded!(SaslAuthenticate, SaslAuthenticateRequest),
        ApiKey::UpsertUser => decoded!(UpsertUser, UpsertUserRequest),
        ApiKey::DeleteUser => decoded!(DeleteUser, DeleteUserRequest),
        ApiKey::ListUsers => decoded!(ListUsers, ListUsersRequest),
        ApiKey::DescribeAcls => decoded!(DescribeAcls, DescribeAclsRequest),
        ApiKey::CreateAcls => decoded!(CreateAcls, CreateAclsRequest),
        ApiKey::DeleteAcls => decoded!(DeleteAcls, DeleteAclsRequest),
        group_api if group::is_group_api(group_api) => group::decode(
            group_api,
            correlation_id,
            version,
            frame.client_id,
            frame.body,
        )
        .map(Request::Group)
        .map_err(failed),
        other => {
            tracing::error!(api_key = ?other, "api key without a decoder");
            Err(Rejection {
                answer: None,
                close: true,
            })
        }
    }
}

/// Budget bytes a request needs beyond its frame: the most a fetch's response may carry.
pub fn response_allowance(request: &Request, limits: &Limits) -> usize {
    match request {
        Request::Fetch(fetch) => {
            (fetch.body.max_bytes as usize).min(limits.fetch_response_bytes_max)
        }
        Request::ReplicaFetch(fetch) => {
            (fetch.body.max_bytes as usize).min(limits.fetch_response_bytes_max)
        }
        _ => 0,
    }
}

/// Runs a request for the connection's principal (`session`); `None` means no response is sent
/// (produce with acks=none). What the principal may not do is refused first (`access`): the
/// whole request, or the items of it whose answers carry their own codes.
pub async fn execute(
    services: Rc<Services>,
    session: &Session,
    request: Request,
) -> Option<Vec<Bytes>> {
    let access = Access::new(&services, session);
    if let Some((api_key, correlation_id, version, code)) = refused_whole(access, &request) {
        tracing::debug!(?api_key, ?code, "request refused by the ACLs");
        return reject(api_key, correlation_id, version, code).answer;
    }
    match request {
        Request::ApiVersions(request) => answer(&request, admin::api_versions(&request.body)),
        Request::Metadata(request) => answer(
            &request,
            access::metadata(&services, access, request.body.topics.as_deref()).await,
        ),
        Request::CreateTopics(mut request) => {
            let refused: Vec<String> = take_names(&mut request.body.topics, |topic| {
                (!access.may_create_topic(&topic.name)).then(|| topic.name.clone())
            });
            let mut response = admin::create_topics(&services, &request.body).await;
            response.results.extend(refused_topics(refused));
            answer(&request, response)
        }
        Request::DeleteTopics(mut request) => {
            let refused: Vec<String> = take_names(&mut request.body.names, |name| {
                (!access.topic(Operation::Delete, name)).then(|| name.clone())
            });
            let mut response = admin::delete_topics(&services, &request.body).await;
            response.results.extend(refused_topics(refused));
            answer(&request, response)
        }
        Request::ListTopics(request) => {
            let mut response = admin::list_topics(&services);
            response
                .topics
                .retain(|topic| access.topic(Operation::Describe, &topic.name));
            answer(&request, response)
        }
        Request::DescribeTopic(request) => {
            let mut response = admin::describe_topic(&services, &request.body.name).await;
            // The configs are Kafka's DescribeConfigs: without it, only the partitions.
            if !access.topic(Operation::DescribeConfigs, &request.body.name) {
                response.configs.clear();
            }
            answer(&request, response)
        }
        Request::AlterTopicConfig(request) => answer(
            &request,
            admin::alter_topic_config(&services, &request.body).await,
        ),
        Request::Produce(request, frame_body) => {
            let Envelope {
                correlation_id,
                version,
                mut body,
            } = request;
            let refused = access::refuse_produce(access, &mut body);
            let mut response = if body.topics.is_empty() {
                // Nothing left to write; acks=none still gets no answer.
                (body.acks != spate_protocol::api::Acks::None).then(ProduceResponse::default)
            } else {
                data::produce(&services, body, frame_body).await
            }?;
            refused.answer(&mut response.topics, |partition, error_code| {
                ProducePartitionResponse {
                    partition,
                    error_code,
                    log_append_time_ms: -1,
                    leader_id: NO_NODE,
                    leader_epoch: -1,
                    ..ProducePartitionResponse::default()
                }
            });
            encode(correlation_id, version, &response)
        }
        Request::Fetch(mut request) => {
            let refused = Refused::take(
                &mut request.body.topics,
                |partition| partition.partition,
                |topic| access.topic_refusal(Operation::Read, topic),
            );
            // A fetch left with nothing to read answers at once, not after its long poll.
            let mut response = if request.body.topics.is_empty() && !refused.is_empty() {
                FetchResponse::default()
            } else {
                data::fetch(&services, &request.body).await
            };
            refused.answer(&mut response.topics, |partition, error_code| {
                FetchPartitionResponse {
                    partition,
                    error_code,
                    leader_id: NO_NODE,
                    leader_epoch: -1,
                    ..FetchPartitionResponse::default()
                }
            });
            answer(&request, response)
        }
        Request::ListOffsets(mut request) => {
            let refused = Refused::take(
                &mut request.body.topics,
                |partition| partition.partition,
                |topic| access.topic_refusal(Operation::Describe, topic),
            );
            let mut response = data::list_offsets(&services, &request.body).await;
            refused.answer(&mut response.topics, |partition, error_code| {
                ListOffsetsPartitionResponse {
                    partition,
                    error_code,
                    timestamp: -1,
                    ..ListOffsetsPartitionResponse::default()
                }
            });
            answer(&request, response)
        }
        Request::DeleteRecords(mut request) => {
            let refused = Refused::take(
                &mut request.body.topics,
                |partition| partition.partition,
                |topic| access.topic_refusal(Operation::Delete, topic),
            );
            let mut response = data::delete_records(&services, &request.body).await;
            refused.answer(&mut response.topics, |partition, error_code| {
                DeleteRecordsPartitionResponse {
                    partition,
                    error_code,
                    ..DeleteRecordsPartitionResponse::default()
                }
            });
            answer(&request, response)
        }
        Request::InitProducerId(request) => {
            let response = txn::init_producer_id(&services, &request.body).await;
            answer(&request, response)
        }
        Request::DescribeCluster(request) => answer(&request, admin::describe_cluster(&services)),
        Request::CreatePartitions(request) => answer(
            &request,
            admin::create_partitions(&services, &request.body).await,
        ),
        Request::Group(request) => group::execute(&services, access, request).await,
        Request::AddPartitionsToTxn(Envelope {
            correlation_id,
            version,
            mut body,
        }) => {
            let refused = Refused::take_lists(&mut body.topics, |topic| {
                access.topic_refusal(Operation::Write, topic)
            });
            let response = if refused.is_empty() {
                txn::add_partitions(&services, body).await
            } else {
                // Kafka adds none of a request's partitions when one is refused: the others
                // are answered OperationNotAttempted.
                let mut response = AddPartitionsToTxnResponse::default();
                Refused::take_lists(&mut body.topics, |_| Some(ErrorCode::OperationNotAttempted))
                    .answer(&mut response.topics, partition_result);
                refused.answer(&mut response.topics, partition_result);
                response
            };
            encode(correlation_id, version, &response)
        }
        Request::AddOffsetsToTxn(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &txn::add_offsets(&services, body).await,
        ),
        Request::EndTxn(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &txn::end_txn(&services, body).await,
        ),
        Request::TxnOffsetCommit(Envelope {
            correlation_id,
            version,
            mut body,
        }) => {
            let refused = Refused::take(
                &mut body.topics,
                |partition| partition.partition,
                |topic| access.topic_refusal(Operation::Read, topic),
            );
            let mut response = if body.topics.is_empty() && !refused.is_empty() {
                TxnOffsetCommitResponse::default()
            } else {
                txn::txn_offset_commit(&services, body).await
            };
            refused.answer(&mut response.topics, partition_result);
            encode(correlation_id, version, &response)
        }
        Request::ReplicaFetch(request) => answer(
            &request,
            crate::replication::replica_fetch(&services, &request.body).await,
        ),
        Request::FindCoordinator(request) => answer(
            &request,
            cluster::find_coordinator(&services, &request.body).await,
        ),
        Request::ElectLeaders(request) => answer(
            &request,
            cluster::elect_leaders(&services, &request.body).await,
        ),
        Request::AlterReassignments(request) => answer(
            &request,
            cluster::alter_reassignments(&services, &request.body).await,
        ),
        Request::ListReassignments(request) => answer(
            &request,
            cluster::list_reassignments(&services, &request.body).await,
        ),
        Request::DecommissionBroker(request) => answer(
            &request,
            cluster::decommission_broker(&services, &request.body).await,
        ),
        Request::RaftMessage(request) => answer(
            &request,
            crate::cluster::handle_raft_message(&services, &request.body).await,
        ),
        Request::ClusterPropose(request) => answer(
            &request,
            crate::cluster::handle_cluster_propose(&services, &request.body).await,
        ),
        Request::WriteTxnMarkers(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &txn_peers::write_txn_markers(&services, body).await,
        ),
        // Answered with the session by `Native::execute`; a request reaching here (none does)
        // gets the state error rather than a panic.
        Request::SaslHandshake(request) => {
            reject(
                ApiKey::SaslHandshake,
                request.correlation_id,
                request.version,
                ErrorCode::IllegalSaslState,
            )
            .answer
        }
        Request::SaslAuthenticate(request) => {
            reject(
                ApiKey::SaslAuthenticate,
                request.correlation_id,
                request.version,
                ErrorCode::IllegalSaslState,
            )
            .answer
        }
        Request::UpsertUser(request) => answer(
            &request,
            auth_api::upsert_user(&services, &request.body).await,
        ),
        Request::DeleteUser(request) => answer(
            &request,
            auth_api::delete_user(&services, &request.body).await,
        ),
        Request::ListUsers(request) => answer(&request, auth_api::list_users(&services)),
        Request::DescribeAcls(request) => {
            answer(&request, acl_api::describe_acls(&services, &request.body))
        }
        Request::CreateAcls(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &acl_api::create_acls(&services, body).await,
        ),
        Request::DeleteAcls(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &acl_api::delete_acls(&services, body).await,
        ),
        Request::VerifyTxn(Envelope {
            correlation_id,
            version,
            body,
        }) => encode(
            correlation_id,
            version,
            &txn_peers::verify_txn(&services, body).await,
        ),
    }
}

/// The code a request is refused with as a whole, with what its answer needs; `None` when it
/// may run (possibly with some of its items refused, which its arm in `execute` answers).
fn refused_whole(access: Access<'_>, request: &Request) -> Option<(ApiKey, u32, u16, ErrorCode)> {
    use Operation::{Alter, AlterConfigs, ClusterAction, Describe};
    fn whole<R>(
        api_key: ApiKey,
        request: &Envelope<R>,
        code: Option<ErrorCode>,
    ) -> Option<(ApiKey, u32, u16, ErrorCode)> {
        code.map(|code| (api_key, request.correlation_id, request.version, code))
    }
    let topic = |operation, name: &str| access.topic_refusal(operation, name);
    let cluster = |operation| access.refuse_unless_cluster(operation);
    // The ACL APIs answer SecurityDisabled on a broker that does not check (Kafka's rule);
    // their arms in `execute` run only when it does.
    let acls = |operation| {
        if access.is_enabled() {
            cluster(operation)
        } else {
            Some(ErrorCode::SecurityDisabled)
        }
    };
    match request {
        Request::DescribeTopic(request) => whole(
            ApiKey::DescribeTopic,
            request,
            topic(Describe, &request.body.name),
        ),
        Request::AlterTopicConfig(request) => whole(
            ApiKey::AlterTopicConfig,
            request,
            topic(AlterConfigs, &request.body.name),
        ),
        Request::CreatePartitions(request) => whole(
            ApiKey::CreatePartitions,
            request,
            topic(Alter, &request.body.name),
        ),
        Request::InitProducerId(request) => {
            let refusal = match &request.body.transactional_id {
                Some(transactional_id) => access.refuse_unless_transactional_id(transactional_id),
                None => (!access.may_produce_idempotently())
                    .then_some(ErrorCode::ClusterAuthorizationFailed),
            };
            whole(ApiKey::InitProducerId, request, refusal)
        }
        Request::DescribeCluster(request) => {
            // Brokers ask each other for their ids with it (ClusterAction).
            let refusal = cluster(Describe).and(cluster(ClusterAction));
            whole(ApiKey::DescribeCluster, request, refusal)
        }
        Request::AddPartitionsToTxn(request) => whole(
            ApiKey::AddPartitionsToTxn,
            request,
            access.refuse_unless_transactional_id(&request.body.transactional_id),
        ),
        Request::AddOffsetsToTxn(request) => {
            let refusal = access
                .refuse_unless_transactional_id(&request.body.transactional_id)
                .or_else(|| access.refuse_unless_group(Operation::Read, &request.body.group_id));
            whole(ApiKey::AddOffsetsToTxn, request, refusal)
        }
        Request::EndTxn(request) => whole(
            ApiKey::EndTxn,
            request,
            access.refuse_unless_transactional_id(&request.body.transactional_id),
        ),
        Request::TxnOffsetCommit(request) => {
            let refusal = access
                .refuse_unless_transactional_id(&request.body.transactional_id)
                .or_else(|| access.refuse_unless_group(Operation::Read, &request.body.group_id));
            whole(ApiKey::TxnOffsetCommit, request, refusal)
        }
        Request::FindCoordinator(request) => {
            let refusal = match request.body.key_type {
                CoordinatorType::Group => access.refuse_unless_group(Describe, &request.body.key),
                CoordinatorType::Transaction => (!access
                    .transactional_id(Describe, &request.body.key))
                .then_some(ErrorCode::TransactionalIdAuthorizationFailed),
            };
            whole(ApiKey::FindCoordinator, request, refusal)
        }
        Request::ElectLeaders(request) => whole(ApiKey::ElectLeaders, request, cluster(Alter)),
        Request::AlterReassignments(request) => {
            whole(ApiKey::AlterReassignments, request, cluster(Alter))
        }
        Request::ListReassignments(request) => {
            whole(ApiKey::ListReassignments, request, cluster(Describe))
        }
        Request::DecommissionBroker(request) => {
            whole(ApiKey::DecommissionBroker, request, cluster(Alter))
        }
        Request::RaftMessage(request) => {
            whole(ApiKey::RaftMessage, request, cluster(ClusterAction))
        }
        Request::ClusterPropose(request) => {
            whole(ApiKey::ClusterPropose, request, cluster(ClusterAction))
        }
        Request::ReplicaFetch(request) => {
            whole(ApiKey::ReplicaFetch, request, cluster(ClusterAction))
        }
        Request::WriteTxnMarkers(request) => {
            whole(ApiKey::WriteTxnMarkers, request, cluster(ClusterAction))
        }
        Request::VerifyTxn(request) => whole(ApiKey::VerifyTxn, request, cluster(ClusterAction)),
        Request::UpsertUser(request) => whole(ApiKey::UpsertUser, request, cluster(Alter)),
        Request::DeleteUser(request) => whole(ApiKey::DeleteUser, request, cluster(Alter)),
        Request::ListUsers(request) => whole(ApiKey::ListUsers, request, cluster(Describe)),
        Request::DescribeAcls(request) => whole(ApiKey::DescribeAcls, request, acls(Describe)),
        Request::CreateAcls(request) => whole(ApiKey::CreateAcls, request, acls(Alter)),
        Request::DeleteAcls(request) => whole(ApiKey::DeleteAcls, request, acls(Alter)),
        Request::ApiVersions(_)
        | Request::SaslHandshake(_)
        | Request::SaslAuthenticate(_)
        | Request::Metadata(_)
        | Request::CreateTopics(_)
        | Request::DeleteTopics(_)
        | Request::ListTopics(_)
        | Request::Produce(..)
        | Request::Fetch(_)
        | Request::ListOffsets(_)
        | Request::DeleteRecords(_)
        | Request::Group(_) => None,
    }
}

/// Removes from `items` those `refusal` names, returning the names.
fn take_names<T>(items: &mut Vec<T>, mut refusal: impl FnMut(&T) -> Option<String>) -> Vec<String> {
    let mut refused = Vec::new();
    items.retain(|item| match refusal(item) {
        None => true,
        Some(name) => {
            refused.push(name);
            false
        }
    });
    refused
}

/// CreateTopics' and DeleteTopics' answers for topics the principal may not touch.
fn refused_topics(names: Vec<String>) -> impl Iterator<Item = TopicResult> {
    names.into_iter().map(|name| TopicResult {
        name,
        error_code: ErrorCode::TopicAuthorizationFailed,
        error_message: Some(ErrorCode::TopicAuthorizationFailed.to_string()),
    })
}

fn partition_result(partition: u32, error_code: ErrorCode) -> PartitionResult {
    PartitionResult {
        partition,
        error_code,
    }
}

fn answer<R, M: Message>(request: &Envelope<R>, response: M) -> Option<Vec<Bytes>> {
    encode(request.correlation_id, request.version, &response)
}

fn encode<M: Message>(correlation_id: u32, version: u16, response: &M) -> Option<Vec<Bytes>> {
    match encode_response_chunks(correlation_id, version, response) {
        Ok(chunks) => Some(chunks),
        Err(error) => {
            // Responses are built from bounded inputs; failing to encode one is a bug, but it is
            // the client's request that suffers, not the broker: log it and answer nothing.
            tracing::error!(api = M::NAME, %error, "cannot encode response");
            None
        }
    }
}

/// The error response for `api_key`, and whether the connection must close after it: a
/// response without a request-wide error code (produce, metadata, topic creation) can only
/// answer empty, so the client sees both that its items are missing and that the connection
/// ended. Which fields carry the code comes from the response's declaration. The answer is at
/// the request's version, which the client decodes it at; a version this build does not speak
/// is answered at 0.
pub fn reject(api_key: ApiKey, correlation_id: u32, version: u16, code: ErrorCode) -> Rejection {
    let (oldest, newest) = api_key.versions();
    let version = if (oldest..=newest).contains(&version) {
        version
    } else {
        0
    };
    match encode_error_response(api_key, correlation_id, version, code) {
        Ok(response) => Rejection {
            answer: Some(response.chunks),
            close: !response.carries_error_code,
        },
        Err(error) => {
            // Error answers are built from defaults and a code; failing to encode one is a bug,
            // but the client's request is what suffers: log it and close without an answer.
            tracing::error!(?api_key, %error, "cannot encode an error response");
            Rejection {
                answer: None,
                close: true,
            }
        }
    }
}

/// Wire code for a partition-level failure.
pub fn partition_error_code(error: &PartitionError) -> ErrorCode {
    match error {
        PartitionError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        PartitionError::OffsetOutOfRange { .. } => ErrorCode::OffsetOutOfRange,
        PartitionError::CorruptBatch(_) => ErrorCode::CorruptMessage,
        PartitionError::BatchTooLarge(_) => ErrorCode::MessageTooLarge,
        PartitionError::NoSpace(_) => ErrorCode::NotEnoughDiskSpace,
        PartitionError::Storage(_) => ErrorCode::StorageError,
        PartitionError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        PartitionError::ShuttingDown => ErrorCode::ShuttingDown,
        PartitionError::InternalTopic => ErrorCode::InvalidTopicName,
        PartitionError::OutOfOrderSequence(_) => ErrorCode::OutOfOrderSequence,
        PartitionError::DuplicateSequence(_) => ErrorCode::DuplicateSequence,
        PartitionError::ProducerFenced(_) => ErrorCode::ProducerFenced,
        PartitionError::InvalidProducerIdMapping(_) => ErrorCode::InvalidProducerIdMapping,
        PartitionError::Offline(_) => ErrorCode::PartitionOffline,
        PartitionError::Opening => ErrorCode::LeaderNotAvailable,
        PartitionError::InvalidTxnState(_) => ErrorCode::InvalidTxnState,
        PartitionError::TransactionAbortable(_) => ErrorCode::TransactionAbortable,
        // Retriable: the coordinator is loading, moving or finishing the previous transaction.
        PartitionError::TransactionVerificationUnavailable(_) => ErrorCode::CoordinatorNotAvailable,
        PartitionError::TransactionCoordinatorFenced(_) => ErrorCode::TransactionCoordinatorFenced,
        // The native protocol's code for a batch no producer may send (Kafka's invalid records
        // get it too, `ErrorCode::for_batch_error`); the message says which record.
        PartitionError::InvalidRecord(_) => ErrorCode::InvalidRequest,
        PartitionError::NotLeaderOrFollower { .. } => ErrorCode::NotLeaderOrFollower,
        PartitionError::NotEnoughReplicas { .. } => ErrorCode::NotEnoughReplicas,
        PartitionError::NotEnoughReplicasAfterAppend { .. } => {
            ErrorCode::NotEnoughReplicasAfterAppend
        }
        PartitionError::FencedLeaderEpoch { .. } => ErrorCode::FencedLeaderEpoch,
        PartitionError::UnknownLeaderEpoch { .. } => ErrorCode::UnknownLeaderEpoch,
        PartitionError::ReplicationTimedOut { .. } => ErrorCode::RequestTimedOut,
    }
}

/// Wire code for a catalog failure.
pub fn catalog_error_code(error: &CatalogError) -> ErrorCode {
    match error {
        CatalogError::InvalidTopicName { .. } => ErrorCode::InvalidTopicName,
        CatalogError::TopicAlreadyExists { .. } => ErrorCode::TopicAlreadyExists,
        CatalogError::UnknownTopic { .. } => ErrorCode::UnknownTopicOrPartition,
        CatalogError::InvalidPartitions { .. } | CatalogError::PartitionsNotGrown { .. } => {
            ErrorCode::InvalidPartitions
        }
        CatalogError::TopicBeingChanged { .. } => ErrorCode::InvalidRequest,
        CatalogError::TooManyTopics { .. } => ErrorCode::InvalidRequest,
        CatalogError::TooManyPartitions { .. } => ErrorCode::InvalidPartitions,
        CatalogError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        CatalogError::Io { .. }
        | CatalogError::Corrupt { .. }
        | CatalogError::Missing { .. }
        | CatalogError::DirectoriesDisagree { .. }
        | CatalogError::NodeIdChanged { .. }
        | CatalogError::ModeChanged { .. } => ErrorCode::StorageError,
        // A cluster's topics change through the controller; a broker's own path never gets here.
        CatalogError::ClusterManaged { .. } => ErrorCode::NotController,
        CatalogError::ProducerIds(error) => producer_id_error_code(error),
    }
}

/// Wire code for a producer id failure.
pub fn producer_id_error_code(error: &ProducerIdError) -> ErrorCode {
    match error {
        ProducerIdError::InvalidIdentity { .. } | ProducerIdError::UnknownProducerId { .. } => {
            ErrorCode::InvalidProducerIdMapping
        }
        ProducerIdError::Io { .. } | ProducerIdError::Corrupt { .. } => ErrorCode::StorageError,
        ProducerIdError::Exhausted => ErrorCode::Unknown,
        // Retriable: the partitions are still opening after a lost reservation.
        ProducerIdError::Recovering => ErrorCode::CoordinatorLoadInProgress,
        // Retriable: the controller grants the next block within moments.
        ProducerIdError::AwaitingBlock => ErrorCode::CoordinatorLoadInProgress,
    }
}
