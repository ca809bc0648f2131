//! The Kafka protocol listener: Kafka clients (librdkafka, the Java clients, franz-go, kafkajs,
//! ...) connect here and reach the same topics as the native protocol.
//!
//! The connection loop is the native one (`crate::connection`: budgets, in-order answers,
//! timeouts, the unsent-answer bound); `connection` gives it Kafka's framing and decoding, and
//! this file dispatches each decoded request to its handler by API key. The handlers are one
//! module per API family, each with the same shape (`KAFKA.md`):
//! `async fn <api>(context: &KafkaContext<'_>, version: i16, request: XRequest) -> XResponse`.
//! A handler answers every failure inside its response with Kafka error codes (`errors`) and
//! never returns an error; a request it cannot run still gets its answer.
//!
//! What is served at which versions is one table, `spate_kafka_protocol::versions`; ApiVersions
//! answers from it, and a request for an API or version outside it never reaches a handler.
//! Single broker: this broker is node 0, the leader of every partition and its only replica.

pub(crate) mod acl;
pub(crate) mod admin;
mod authorization;
pub mod connection;
mod conversion;
mod data;
pub mod errors;
mod fetch;
mod groups;
pub mod identity;
mod offsets;
mod operations;
mod produce;
mod sasl;
mod sessions;
mod transactions;

use std::net::SocketAddr;
use std::rc::Rc;

use bytes::Bytes;
use spate_kafka_protocol::frame::{encode_response, EncodeError};
use spate_kafka_protocol::kafka_protocol::messages::TxnOffsetCommitRequest;
use spate_kafka_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, DescribeTransactionsRequest, EndTxnRequest,
    InitProducerIdRequest, ListTransactionsRequest,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterConfigsRequest, ApiKey, ApiVersionsRequest, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteRecordsRequest, DeleteTopicsRequest, DescribeClusterRequest, DescribeConfigsRequest,
    DescribeLogDirsRequest, FetchRequest, IncrementalAlterConfigsRequest, ListOffsetsRequest,
    MetadataRequest, OffsetForLeaderEpochRequest, ProduceRequest,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, ElectLeadersRequest, ListPartitionReassignmentsRequest,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    DeleteGroupsRequest, DescribeGroupsRequest, FindCoordinatorRequest, HeartbeatRequest,
    JoinGroupRequest, LeaveGroupRequest, ListGroupsRequest, OffsetCommitRequest,
    OffsetDeleteRequest, OffsetFetchRequest, SyncGroupRequest,
};
use spate_kafka_protocol::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, StrBytes,
};

use spate_kafka_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, DescribeUserScramCredentialsRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
};

use crate::auth::{SaslMechanism, Session};
use crate::config::{Config, KafkaConfig};
use crate::connection::Reply;
use crate::services::Services;
pub use connection::Kafka;
pub use identity::KafkaIdentity;

/// What every Kafka connection of the broker shares: its settings (the listen address resolved)
/// and its identity. Built once at start-up; read-only.
#[derive(Debug)]
pub struct KafkaBroker {
    pub config: KafkaConfig,
    pub identity: KafkaIdentity,
    /// What Metadata names as this broker's host and port.
    advertised_host: StrBytes,
    advertised_port: i32,
    /// The listener's SASL mechanisms, shared by every connection's session.
    pub(crate) sasl_mechanisms: std::sync::Arc<[SaslMechanism]>,
}

impl KafkaBroker {
    pub fn new(config: KafkaConfig, identity: KafkaIdentity) -> KafkaBroker {
        let (host, port) = config.advertised();
        KafkaBroker {
            sasl_mechanisms: config.sasl_mechanisms.clone().into(),
            config,
            identity,
            advertised_host: StrBytes::from_string(host),
            advertised_port: i32::from(port),
        }
    }

    /// The host and port clients are told to connect to.
    pub fn advertised(&self) -> (&StrBytes, i32) {
        (&self.advertised_host, self.advertised_port)
    }
}

/// What a Kafka handler may use besides its request: the shard's services, who sent the request
/// and the broker's settings. Lives for one request.
pub(crate) struct KafkaContext<'a> {
    pub services: &'a Rc<Services>,
    /// The request header's client id (`None`: the client sent null).
    pub client_id: Option<&'a str>,
    /// The connection's peer, when the socket could tell.
    pub peer: Option<SocketAddr>,
    pub broker: &'a KafkaBroker,
    /// The connection's authentication, and who it acts for (`Session::principal`).
    pub session: &'a Session,
}

impl KafkaContext<'_> {
    /// The broker's configuration (limits included).
    pub fn config(&self) -> &Config {
        &self.services.config
    }

    /// The Kafka listener's settings.
    pub fn kafka(&self) -> &KafkaConfig {
        &self.broker.config
    }
}

/// Declares every API with a handler: its request type and its handler. From this table come
/// the decoded request (`KafkaBody`), its decoder by API key, and the dispatch to the handler
/// with the response's encoding. An API needs a row here and one in
/// `spate_kafka_protocol::versions`; a test checks that every served API has a row.
macro_rules! kafka_apis {
    ($( $api:ident($request:ty) => $handler:path, )*) => {
        /// A decoded Kafka request body, one variant per API with a handler.
        pub(crate) enum KafkaBody {
            $( $api($request), )*
        }

        /// Decodes `body` as the request of `api_key` at `version`; `None`: no handler serves
        /// the API.
        fn decode_body(
            api_key: ApiKey,
            version: i16,
            body: &mut Bytes,
        ) -> Option<anyhow::Result<KafkaBody>> {
            match api_key {
                $( ApiKey::$api => Some(<$request as Decodable>::decode(body, version).map(KafkaBody::$api)), )*
                _ => None,
            }
        }

        /// Runs the request's handler and encodes its response frame.
        async fn run(
            context: &KafkaContext<'_>,
            version: i16,
            correlation_id: i32,
            body: KafkaBody,
        ) -> Result<Vec<Bytes>, EncodeError> {
            match body {
                $( KafkaBody::$api(request) => {
                    let response = $handler(context, version, request).await;
                    response.into_frames(ApiKey::$api, version, correlation_id)
                } )*
            }
        }
    };
}

kafka_apis! {
    ApiVersions(ApiVersionsRequest) => data::api_versions,
    Metadata(MetadataRequest) => data::metadata,
    CreateTopics(CreateTopicsRequest) => admin::create_topics,
    DeleteTopics(DeleteTopicsRequest) => admin::delete_topics,
    DeleteRecords(DeleteRecordsRequest) => admin::delete_records,
    DescribeConfigs(DescribeConfigsRequest) => admin::describe_configs,
    AlterConfigs(AlterConfigsRequest) => admin::alter_configs,
    CreatePartitions(CreatePartitionsRequest) => admin::create_partitions,
    DescribeLogDirs(DescribeLogDirsRequest) => admin::describe_log_dirs,
    IncrementalAlterConfigs(IncrementalAlterConfigsRequest) => admin::incremental_alter_configs,
    DescribeCluster(DescribeClusterRequest) => admin::describe_cluster,
    ElectLeaders(ElectLeadersRequest) => operations::elect_leaders,
    AlterPartitionReassignments(AlterPartitionReassignmentsRequest) => operations::alter_partition_reassignments,
    ListPartitionReassignments(ListPartitionReassignmentsRequest) => operations::list_partition_reassignments,
    Produce(ProduceRequest) => produce::produce,
    Fetch(FetchRequest) => fetch::fetch,
    ListOffsets(ListOffsetsRequest) => offsets::list_offsets,
    OffsetForLeaderEpoch(OffsetForLeaderEpochRequest) => offsets::offset_for_leader_epoch,
    // Groups
    FindCoordinator(FindCoordinatorRequest) => groups::find_coordinator,
    JoinGroup(JoinGroupRequest) => groups::join_group,
    SyncGroup(SyncGroupRequest) => groups::sync_group,
    Heartbeat(HeartbeatRequest) => groups::heartbeat,
    LeaveGroup(LeaveGroupRequest) => groups::leave_group,
    OffsetCommit(OffsetCommitRequest) => groups::offset_commit,
    OffsetFetch(OffsetFetchRequest) => groups::offset_fetch,
    DescribeGroups(DescribeGroupsRequest) => groups::describe_groups,
    ListGroups(ListGroupsRequest) => groups::list_groups,
    DeleteGroups(DeleteGroupsRequest) => groups::delete_groups,
    OffsetDelete(OffsetDeleteRequest) => groups::offset_delete,
    // Transactions (txn-coord)
    InitProducerId(InitProducerIdRequest) => transactions::init_producer_id,
    AddPartitionsToTxn(AddPartitionsToTxnRequest) => transactions::add_partitions_to_txn,
    AddOffsetsToTxn(AddOffsetsToTxnRequest) => transactions::add_offsets_to_txn,
    EndTxn(EndTxnRequest) => transactions::end_txn,
    DescribeTransactions(DescribeTransactionsRequest) => transactions::describe_transactions,
    ListTransactions(ListTransactionsRequest) => transactions::list_transactions,
    // Transactions (txn-groups)
    TxnOffsetCommit(TxnOffsetCommitRequest) => groups::txn_offset_commit,
    // Authentication and users (issue #17)
    SaslHandshake(SaslHandshakeRequest) => sasl::sasl_handshake,
    SaslAuthenticate(SaslAuthenticateRequest) => sasl::sasl_authenticate,
    DescribeUserScramCredentials(DescribeUserScramCredentialsRequest) => sasl::describe_user_scram_credentials,
    AlterUserScramCredentials(AlterUserScramCredentialsRequest) => sasl::alter_user_scram_credentials,
    // Authorization (issue #17)
    DescribeAcls(DescribeAclsRequest) => acl::describe_acls,
    CreateAcls(CreateAclsRequest) => acl::create_acls,
    DeleteAcls(DeleteAclsRequest) => acl::delete_acls,
}

/// A handler's answer as the chunks of its response frame, written in order with one
/// vectored write: one encoded frame for every response type, while Fetch splices its records
/// in without copying them (`fetch::FetchAnswer`).
pub(crate) trait KafkaAnswer {
    fn into_frames(
        self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Vec<Bytes>, EncodeError>;
}

impl<R: Encodable + HeaderVersion> KafkaAnswer for R {
    fn into_frames(
        self,
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
    ) -> Result<Vec<Bytes>, EncodeError> {
        encode_response(api_key, version, correlation_id, &self).map(|frame| vec![frame])
    }
}

/// A decoded request with what its answer needs.
pub struct KafkaRequest {
    pub(crate) api_key: ApiKey,
    pub(crate) version: i16,
    pub(crate) correlation_id: i32,
    pub(crate) client_id: Option<StrBytes>,
    pub(crate) body: KafkaBody,
    /// A bare SASL token after SaslHandshake v0 (no Kafka header; `body` is a
    /// SaslAuthenticate carrying it, answered bare too).
    pub(crate) raw_sasl_token: bool,
}

impl KafkaBody {
    /// Budget bytes the answer may need beyond the request (a fetch's records).
    fn response_allowance(&self, limits: &crate::config::Limits) -> usize {
        match self {
            KafkaBody::Fetch(request) => {
                fetch::response_bytes_max(request, limits.fetch_response_bytes_max)
            }
            _ => 0,
        }
    }

    /// Lowers the answer's allowance to `bytes`: a fetch then asks for no more than that.
    fn limit_response(&mut self, bytes: usize) {
        if let KafkaBody::Fetch(request) = self {
            let bytes = i32::try_from(bytes).unwrap_or(i32::MAX);
            request.max_bytes = request.max_bytes.min(bytes);
            request.min_bytes = request.min_bytes.min(request.max_bytes);
        }
    }
}

/// Runs one request and says what goes back.
async fn execute(services: Rc<Services>, broker: Rc<Kafka>, request: KafkaRequest) -> Reply {
    let KafkaRequest {
        api_key,
        version,
        correlation_id,
        client_id,
        body,
        raw_sasl_token,
    } = request;
    let context = KafkaContext {
        services: &services,
        client_id: client_id.as_ref().map(|id| id.as_str()),
        peer: broker.peer,
        broker: &broker.broker,
        session: &broker.session,
    };
    let body = match body {
        KafkaBody::SaslAuthenticate(request) if raw_sasl_token => {
            return sasl::raw_authenticate(&context, request).await;
        }
        KafkaBody::Produce(request) if request.acks == 0 => {
            let response = produce::produce(&context, version, request).await;
            return unanswered_produce(&response, broker.peer);
        }
        body => body,
    };
    match run(&context, version, correlation_id, body).await {
        // A failed authentication step is answered, then the connection closes (Kafka's way).
        Ok(frames) if broker.session.has_failed() => Reply::Last(frames),
        Ok(frames) => Reply::Send(frames),
        Err(error) => {
            // Responses are built from bounded inputs; failing to encode one is a bug, but it is
            // the client's request that suffers, not the broker: log it and answer nothing.
            tracing::error!(?api_key, version, %error, "cannot encode a Kafka response");
            Reply::Nothing
        }
    }
}

/// A produce with acks=0 gets no answer. As in Kafka, a failure closes the connection instead:
/// the producer sees the close, refreshes its metadata and learns what is wrong, rather than
/// sending on into a partition that refuses every batch in silence.
fn unanswered_produce(
    response: &spate_kafka_protocol::kafka_protocol::messages::ProduceResponse,
    peer: Option<SocketAddr>,
) -> Reply {
    let failed = response
        .responses
        .iter()
        .flat_map(|topic| {
            topic
                .partition_responses
                .iter()
                .map(move |partition| (topic, partition))
        })
        .find(|(_, partition)| partition.error_code != 0);
    match failed {
        None => Reply::Nothing,
        Some((topic, partition)) => {
            tracing::info!(
                ?peer,
                topic = %topic.name.as_str(),
                partition = partition.index,
                error_code = partition.error_code,
                "closing a Kafka connection: a produce with acks=0 failed"
            );
            Reply::Close
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_kafka_protocol::versions::SERVED_APIS;

    #[test]
    fn every_served_api_has_a_handler() {
        for api in SERVED_APIS {
            assert!(
                decode_body(api.key, api.max_version, &mut Bytes::new()).is_some(),
                "{:?} is in the served table but has no handler",
                api.key
            );
        }
    }
}
