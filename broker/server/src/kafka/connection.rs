//! Kafka's side of the connection loop (`crate::connection::Dialect`): big-endian frame sizes,
//! Kafka request headers, the served-version check, and what Kafka does with a request it cannot
//! take.
//!
//! Nothing from the wire reaches a generated decoder before `spate_kafka_protocol::precheck`
//! (and `precheck_header`, in `decode_request_frame`) found every count and length within the
//! bytes present.
//!
//! As Kafka does: an unknown API key, a header that does not decode, a version outside the
//! served table (ApiVersions aside) and a body that does not decode close the connection, with a
//! log line (the client cannot read an answer to a request it framed wrongly); a frame larger
//! than `frame_bytes_max` closes it without an answer. ApiVersions asked at a version above the
//! served one is answered at v0 with UNSUPPORTED_VERSION and the served ranges, so the client can
//! pick a version and ask again on the same connection.
//!
//! Authentication (`crate::auth`): on a listener with SASL mechanisms, a connection that has not
//! authenticated may send only ApiVersions, SaslHandshake and SaslAuthenticate; anything else
//! closes it with a log line and no answer, as Kafka does. A request sent before the answer to
//! the authentication step it follows is refused the same way (clients wait for each step).
//! Without SASL the two SASL APIs are not served (ApiVersions does not list them). After a
//! SaslHandshake v0 the exchange's messages are bare tokens (a size and the token, no header)
//! both ways, as Kafka does for clients older than SaslAuthenticate; librdkafka asks for v0 to
//! be listed before it uses v1.
//!
//! Re-authentication (KIP-368, `connections_max_reauth_ms`): a request other than the SASL
//! APIs that arrives after the session's lifetime ended closes the connection, as Kafka does.

use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::frame::{
    decode_request_frame, encode_response, peek_frame_bytes, FRAME_SIZE_BYTES,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsResponse, SaslAuthenticateRequest,
};
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_kafka_protocol::precheck;
use spate_kafka_protocol::versions::{is_served, served_versions};

use super::{data, decode_body, execute, KafkaBody, KafkaBroker, KafkaRequest};
use crate::auth::Session;
use crate::config::Limits;
use crate::connection::{ConnectionPeer, Dialect, Reply};
use crate::handlers::Rejection;
use crate::services::Services;

/// One Kafka connection's dialect: the broker's shared Kafka state, the peer's address and the
/// connection's authentication (on a mutual-TLS listener without SASL, the principal of its
/// verified client certificate).
pub struct Kafka {
    pub(crate) broker: Arc<KafkaBroker>,
    pub(crate) peer: Option<SocketAddr>,
    pub(crate) session: Session,
}

impl Kafka {
    /// `session_lifetime`: how long an authentication lasts (`connections_max_reauth_ms`).
    pub fn new(
        broker: Arc<KafkaBroker>,
        peer: &ConnectionPeer,
        session_lifetime: Option<Duration>,
    ) -> Kafka {
        let session = Session::new(broker.sasl_mechanisms.clone(), peer.address)
            .with_session_lifetime(session_lifetime);
        session.use_transport_principal(peer.tls_principal.as_deref());
        Kafka {
            broker,
            peer: peer.address,
            session,
        }
    }

    fn close(&self, reason: std::fmt::Arguments<'_>) -> Rejection {
        tracing::info!(
            peer = ?self.peer,
            principal = ?self.session.principal(),
            "closing a Kafka connection: {reason}"
        );
        Rejection {
            answer: None,
            close: true,
        }
    }
}

impl Dialect for Kafka {
    type Frame = Bytes;
    type Request = KafkaRequest;
    /// Kafka answers an oversized frame by closing the connection: nothing to wait for.
    const HEADER_BYTES_MIN: usize = 0;
    const PROTOCOL: spate_metrics::Protocol = spate_metrics::Protocol::Kafka;

    /// The request header's first field, big-endian.
    fn api_key(frame: &Bytes) -> i16 {
        match frame.get(..2) {
            Some(key) => i16::from_be_bytes([key[0], key[1]]),
            None => -1,
        }
    }

    fn frame_bytes(buffer: &[u8]) -> Option<usize> {
        peek_frame_bytes(buffer)
    }

    fn refuse_oversized(
        &self,
        _buffer: &[u8],
        frame_bytes: usize,
        limit: usize,
    ) -> Option<Vec<Bytes>> {
        tracing::info!(
            peer = ?self.peer,
            frame_bytes,
            limit,
            "closing a Kafka connection: request larger than frame_bytes_max"
        );
        None
    }

    fn split(&self, buffer: &mut BytesMut) -> Result<Bytes, Option<Vec<Bytes>>> {
        let frame_bytes = peek_frame_bytes(buffer).expect("a complete frame has its size");
        let mut frame = buffer.split_to(FRAME_SIZE_BYTES + frame_bytes).freeze();
        Ok(frame.split_off(FRAME_SIZE_BYTES))
    }

    fn decode(&self, frame: Bytes) -> Result<KafkaRequest, Rejection> {
        if self.session.expects_raw_token() {
            return Ok(raw_sasl_token(frame));
        }
        let mut frame = match decode_request_frame(frame) {
            Ok(frame) => frame,
            Err(error) => return Err(self.close(format_args!("{error}"))),
        };
        let (api_key, version) = (frame.api_key, frame.version);
        let correlation_id = frame.header.correlation_id;
        let sasl_enabled = self.session.is_sasl_enabled();
        if !is_served(api_key, version) || (is_sasl_api(api_key) && !sasl_enabled) {
            if api_key == ApiKey::ApiVersions && version > 0 {
                return Err(unsupported_api_versions(correlation_id, sasl_enabled));
            }
            return Err(self.close(format_args!(
                "{api_key:?} v{version} is not served (served: {:?})",
                served_versions(api_key).map(|api| api.min_version..=api.max_version)
            )));
        }
        // As Kafka: before a connection authenticated, only what authenticates it is taken.
        if !self.session.is_authenticated()
            && !is_sasl_api(api_key)
            && api_key != ApiKey::ApiVersions
        {
            return Err(self.close(format_args!(
                "{api_key:?} before the connection authenticated (SASL is required)"
            )));
        }
        // KIP-368, as Kafka's processor: past its lifetime an authentication serves nothing but
        // a new handshake (a re-authentication).
        if !is_sasl_api(api_key) && self.session.has_expired(Instant::now()) {
            return Err(self.close(format_args!(
                "{api_key:?} after the authentication's lifetime (connections_max_reauth_ms) \
                 ended without a re-authentication"
            )));
        }
        // Every count and length in the body fits the bytes present, before the generated
        // decoder sizes anything from them.
        if let Err(error) = precheck(api_key as i16, version, &frame.body) {
            return Err(self.close(format_args!(
                "{api_key:?} v{version} request refused by the bounds pre-check: {error}"
            )));
        }
        let Some(body) = decode_body(api_key, version, &mut frame.body) else {
            return Err(self.close(format_args!("{api_key:?} has no handler")));
        };
        match body {
            Ok(body) => Ok(KafkaRequest {
                api_key,
                version,
                correlation_id,
                client_id: frame.header.client_id,
                body,
                raw_sasl_token: false,
            }),
            Err(error) => Err(self.close(format_args!(
                "{api_key:?} v{version} request does not decode: {error}"
            ))),
        }
    }

    fn response_allowance(&self, request: &KafkaRequest, limits: &Limits) -> usize {
        request.body.response_allowance(limits)
    }

    fn limit_response(&self, request: &mut KafkaRequest, bytes: usize) {
        request.body.limit_response(bytes);
    }

    fn execute(
        self: &Rc<Self>,
        services: Rc<Services>,
        request: KafkaRequest,
    ) -> impl Future<Output = Reply> + 'static {
        execute(services, self.clone(), request)
    }
}

/// A bare SASL token after SaslHandshake v0 (Kafka's `enableKafkaSaslAuthenticateHeaders(false)`):
/// the whole frame is the token, carried as a SaslAuthenticate that is answered bare.
fn raw_sasl_token(frame: Bytes) -> KafkaRequest {
    KafkaRequest {
        api_key: ApiKey::SaslAuthenticate,
        version: 0,
        correlation_id: 0,
        client_id: None,
        body: KafkaBody::SaslAuthenticate(
            SaslAuthenticateRequest::default().with_auth_bytes(frame),
        ),
        raw_sasl_token: true,
    }
}

/// The APIs of the SASL exchange: served only on a listener with SASL on.
pub(crate) fn is_sasl_api(api_key: ApiKey) -> bool {
    matches!(api_key, ApiKey::SaslHandshake | ApiKey::SaslAuthenticate)
}

/// ApiVersions at a version above the served one: v0 with UNSUPPORTED_VERSION and the served
/// ranges, as Kafka answers (the response header of ApiVersions is always v0, so any client
/// reads it).
fn unsupported_api_versions(correlation_id: i32, sasl_enabled: bool) -> Rejection {
    let response = ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(data::served_api_versions(sasl_enabled));
    match encode_response(ApiKey::ApiVersions, 0, correlation_id, &response) {
        Ok(frame) => Rejection {
            answer: Some(vec![frame]),
            close: false,
        },
        Err(error) => {
            tracing::error!(%error, "cannot encode the UNSUPPORTED_VERSION ApiVersions answer");
            Rejection {
                answer: None,
                close: true,
            }
        }
    }
}
