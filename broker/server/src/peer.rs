//! Calls from this broker to another one over the native protocol: replica fetches, Raft
//! messages, proposals to the controller. Everything between brokers rides this one client.
//!
//! A [`PeerConnection`] is one TCP connection owned by one shard (glommio: `!Send`, used by the
//! tasks of the shard that opened it). At connect it negotiates versions with ApiVersions, as any
//! native client does, and every call then goes out at the highest version both builds speak.
//! Calls are pipelined: several may be in flight (at most `peer_inflight_requests_max`), each
//! written whole under a write lock that also fixes its place in the answer queue, and the
//! broker answers a connection's requests in the order they arrived, so one reader task takes
//! the answers in that order and hands each to its caller. An answer whose correlation id is not
//! the oldest call's means the stream is out of step: the connection breaks.
//!
//! A connection breaks, for good, on any I/O error, the peer closing, an answer frame larger than
//! `peer_response_bytes_max`, a call that waits past its timeout (its answer would arrive later
//! and be taken for the next call's; Kafka's network client disconnects on a request timeout too)
//! or a call dropped while its request was half written. Every call in flight then fails with
//! [`PeerError::Broken`] and `is_broken` says so; the [`PeerPool`] opens a new one on the next
//! `get`, after a backoff that doubles from `RECONNECT_BACKOFF_MS_MIN` up to
//! `peer_reconnect_backoff_ms_max` while connecting keeps failing.
//!
//! Security (`inter_broker_*`, [`PeerSecurity`]): with a CA file the connection is TLS, the
//! peer's certificate verified for the host it is reached at and this broker's own native
//! listener certificate presented as the client's; with a SASL login the connection
//! authenticates right after version negotiation, before any other call, as a native client
//! does (SaslHandshake, then SaslAuthenticate: one step for PLAIN, two for SCRAM, whose last
//! answer proves the peer knows the credential). A refused handshake or login fails the connect
//! with [`PeerError::Tls`] or [`PeerError::Authentication`], naming the peer and why; the pool
//! warns of it at most once per `AUTHENTICATION_WARNING_INTERVAL_MS` per peer and retries after
//! its backoff, as after any failed connect.
//!
//! Memory: an idle connection holds an empty read buffer; a call's request is encoded as chunks
//! that share the caller's byte strings (record batches are not copied), and an answer's byte
//! strings share the one buffer its frame was read into.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::Task;
use rand::distributions::{Alphanumeric, DistString};
use rustls::pki_types::ServerName;
use spate_protocol::api::{
    encode_request_chunks, pick_version, ApiKey, ApiVersionRange, ApiVersionsRequest, Message,
    Request, SaslAuthenticateRequest, SaslHandshakeRequest, SUPPORTED_API_VERSIONS,
};
use spate_protocol::constants::FRAME_LENGTH_BYTES;
use spate_protocol::error::{ErrorCode, WireError};
use spate_protocol::frame::split_response_frame;
use spate_protocol::NodeId;

use spate_security::{encode_plain, Principal, ScramClient};

use crate::auth::SaslMechanism;
use crate::config::{Config, ConfigError, Limits};
use crate::connection::SharedStream;
use crate::tls::{self, ConnectionStream, TlsError};

/// Client id this broker sends on its calls to other brokers (the peer's logs name it).
const PEER_CLIENT_ID: &str = "spate-broker";

/// Bytes asked for in each socket read of answers; a larger frame is read in one more step once
/// its length is known.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// First wait before reconnecting to a broker whose connection failed; it doubles with each
/// further failure up to `peer_reconnect_backoff_ms_max`.
const RECONNECT_BACKOFF_MS_MIN: u64 = 50;

/// Characters of the SCRAM client nonce (alphanumeric, from the thread's CSPRNG), as the
/// client library sends.
const SCRAM_NONCE_CHARACTERS: usize = 32;

/// Longest one step of the login may wait for its answer (the connect timeout bounds all of
/// them together too).
const SASL_STEP_TIMEOUT_MS: u64 = 10_000;

/// Least time between two warnings of failed TLS handshakes or logins to one peer: a wrong
/// password fails every connect, each backoff, and one line a few seconds says it as well.
const AUTHENTICATION_WARNING_INTERVAL_MS: u64 = 10_000;

/// The bounds of broker-to-broker connections (from [`Limits`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerLimits {
    pub connect_timeout_ms: u64,
    pub inflight_requests_max: usize,
    pub response_bytes_max: usize,
    pub reconnect_backoff_ms_max: u64,
}

impl PeerLimits {
    pub fn from_limits(limits: &Limits) -> PeerLimits {
        PeerLimits {
            connect_timeout_ms: limits.peer_connect_timeout_ms,
            inflight_requests_max: limits.peer_inflight_requests_max,
            response_bytes_max: limits.peer_response_bytes_max,
            reconnect_backoff_ms_max: limits.peer_reconnect_backoff_ms_max,
        }
    }
}

/// Why a call to another broker did not get its answer. Cheap to clone: one breakage fails every
/// call in flight with the same error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    #[error("could not connect to {address}: {message}")]
    Connect {
        address: SocketAddr,
        message: String,
    },
    #[error("connecting to {address} took longer than {timeout_ms} ms")]
    ConnectTimedOut {
        address: SocketAddr,
        timeout_ms: u64,
    },
    #[error("{address} did not answer within {timeout_ms} ms")]
    TimedOut {
        address: SocketAddr,
        timeout_ms: u64,
    },
    #[error("connection to {address} is broken: {reason}")]
    Broken { address: SocketAddr, reason: String },
    #[error("{address} refused version negotiation: {code}")]
    Refused {
        address: SocketAddr,
        code: ErrorCode,
    },
    #[error("{address} does not speak {api:?} at version {needed} or later")]
    Unsupported {
        address: SocketAddr,
        api: ApiKey,
        needed: u16,
    },
    #[error("request does not encode: {0}")]
    Encode(WireError),
    #[error("answer from {address} does not decode: {error}")]
    Decode {
        address: SocketAddr,
        error: WireError,
    },
    #[error("broker {node} at {address:?} cannot be resolved: {message}")]
    Address {
        node: NodeId,
        address: String,
        message: String,
    },
    #[error("connecting to broker {node} again in {retry_in_ms} ms (the last attempt failed)")]
    BackingOff { node: NodeId, retry_in_ms: u64 },
    #[error("TLS with {address} ({server_name}) failed: {message}")]
    Tls {
        address: SocketAddr,
        server_name: String,
        message: String,
    },
    #[error("{address} refused this broker's login as {principal}: {reason}")]
    Authentication {
        address: SocketAddr,
        principal: String,
        reason: String,
    },
}

impl PeerError {
    /// Whether the peer refused this broker's TLS handshake or login: a configuration fault
    /// (a wrong CA, certificate or password) that retrying will not mend by itself.
    pub fn is_refusal_of_security(&self) -> bool {
        matches!(
            self,
            PeerError::Tls { .. } | PeerError::Authentication { .. }
        )
    }
}

/// Why the inter-broker security could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum PeerSecurityError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(
        "authorization is on in cluster mode and the native listener authenticates brokers by \
         their certificate, as {principal} (the CN of tls_cert_file): add {principal} to \
         super_users, or their replica fetches, Raft messages and proposals are refused"
    )]
    PrincipalNotSuperUser { principal: String },
    #[error("tls_cert_file {path} names no subject to take the brokers' principal from")]
    NoCertificatePrincipal { path: std::path::PathBuf },
}

/// How this broker secures its calls to other brokers (`inter_broker_*`): read once at start
/// and shared by every shard's pools (the password is held in memory from then on, as a
/// client's is).
pub struct PeerSecurity {
    /// `Some`: calls go over TLS with this config.
    tls: Option<Arc<rustls::ClientConfig>>,
    /// Longest the TLS handshake may take (`tls_handshake_timeout_ms`; the connect timeout
    /// bounds it too).
    handshake_timeout_ms: u64,
    /// `Some`: calls log in first.
    login: Option<PeerLogin>,
}

struct PeerLogin {
    mechanism: SaslMechanism,
    user: String,
    password: String,
}

impl std::fmt::Debug for PeerSecurity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerSecurity")
            .field("tls", &self.tls.is_some())
            .field(
                "login",
                &self
                    .login
                    .as_ref()
                    .map(|login| (login.mechanism, login.user.as_str())),
            )
            .finish()
    }
}

impl PeerSecurity {
    /// Reads the CA file, this broker's certificate and key, and the password, and checks, with
    /// authorization on, that the brokers' certificate principal is a super user when client
    /// certificates are how the native listener authenticates them. `None`: calls go in
    /// plaintext without a login. An unreadable file fails the start, naming it.
    pub fn load(config: &Config) -> Result<Option<Arc<PeerSecurity>>, PeerSecurityError> {
        let inter_broker = &config.inter_broker;
        if config.cluster.is_cluster_mode()
            && config.authorization.enabled
            && config.native_listener_authenticates()
            && config.sasl_mechanisms.is_empty()
        {
            let files = config.tls.as_ref().expect("client certificates need TLS");
            let principal =
                tls::certificate_file_principal(&files.cert_file)?.ok_or_else(|| {
                    PeerSecurityError::NoCertificatePrincipal {
                        path: files.cert_file.clone(),
                    }
                })?;
            let known = Principal::parse(&principal)
                .is_some_and(|principal| config.authorization.super_users.contains(&principal));
            if !known {
                return Err(PeerSecurityError::PrincipalNotSuperUser { principal });
            }
        }
        let tls = inter_broker
            .tls_ca_file
            .as_deref()
            .map(|ca_file| tls::client_config(ca_file, config.tls.as_ref()))
            .transpose()?;
        let login = match &inter_broker.sasl {
            None => None,
            Some(sasl) => Some(PeerLogin {
                mechanism: sasl.mechanism,
                user: sasl.user.clone(),
                password: sasl.password.read()?,
            }),
        };
        if tls.is_none() && login.is_none() {
            return Ok(None);
        }
        Ok(Some(Arc::new(PeerSecurity {
            tls,
            handshake_timeout_ms: config.limits.tls_handshake_timeout_ms,
            login,
        })))
    }
}

/// See the module documentation.
pub struct PeerConnection {
    shared: Rc<Shared>,
    /// The highest version of each API both brokers speak, by key (`None`: none in common).
    versions: Vec<Option<u16>>,
    /// Takes the answers; cancelled when the connection is dropped (which closes the socket).
    _reader: Task<()>,
}

/// What the connection and its reader task share.
struct Shared {
    address: SocketAddr,
    /// Shared by the reader task and the calls that write: plaintext or TLS.
    stream: ConnectionStream,
    state: RefCell<CallState>,
    /// One writer at a time: a request is written whole, in the order of the answer queue.
    writing: Semaphore,
    /// One permit per call in flight.
    slots: Semaphore,
    response_bytes_max: usize,
}

struct CallState {
    next_correlation_id: u32,
    /// Calls written and not yet answered, oldest first.
    pending: VecDeque<Pending>,
    /// Why the connection broke, once it did.
    broken: Option<String>,
}

struct Pending {
    correlation_id: u32,
    answer: LocalSender<Result<Bytes, PeerError>>,
}

impl Shared {
    fn broken_error(&self) -> Option<PeerError> {
        let state = self.state.borrow();
        state.broken.as_ref().map(|reason| PeerError::Broken {
            address: self.address,
            reason: reason.clone(),
        })
    }

    /// Breaks the connection for good: fails every call in flight, stops the reader (the socket
    /// is shut down) and refuses further calls. The first reason is the one kept.
    fn break_off(&self, reason: &str) {
        let pending = {
            let mut state = self.state.borrow_mut();
            if state.broken.is_none() {
                state.broken = Some(reason.to_string());
            }
            std::mem::take(&mut state.pending)
        };
        let error = self.broken_error().expect("just broken");
        for call in pending {
            // A caller that gave up no longer listens.
            let _ = call.answer.try_send(Err(error.clone()));
        }
        self.slots.close();
        self.writing.close();
        self.stream.shut_down();
    }
}

/// Breaks the connection if dropped before `disarm`: a call dropped while its request was half
/// written leaves the stream out of step.
struct BreakUnlessDone<'a> {
    shared: &'a Shared,
    done: bool,
}

impl Drop for BreakUnlessDone<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.shared
                .break_off("a call was dropped while its request was written");
        }
    }
}

impl PeerConnection {
    /// Opens a connection to the broker at `address` (reached as `host`, the name its
    /// certificate must hold under TLS), secured as `security` says, negotiates versions and
    /// logs in, all within `timeout_ms`.
    pub async fn connect(
        address: SocketAddr,
        host: &str,
        limits: &PeerLimits,
        security: Option<&PeerSecurity>,
        timeout_ms: u64,
    ) -> Result<Rc<PeerConnection>, PeerError> {
        let timed_out = PeerError::ConnectTimedOut {
            address,
            timeout_ms,
        };
        with_timeout(
            timeout_ms,
            timed_out,
            Self::open(address, host, limits, security),
        )
        .await
    }

    async fn open(
        address: SocketAddr,
        host: &str,
        limits: &PeerLimits,
        security: Option<&PeerSecurity>,
    ) -> Result<Rc<PeerConnection>, PeerError> {
        let stream = TcpStream::connect(address)
            .await
            .map_err(|error| PeerError::Connect {
                address,
                message: error.to_string(),
            })?;
        // Answers and Raft messages are small and latency-bound.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%address, %error, "could not set TCP_NODELAY on a peer connection");
        }
        let tls = security.and_then(|security| {
            let timeout = Duration::from_millis(security.handshake_timeout_ms);
            security.tls.clone().map(|config| (config, timeout))
        });
        let stream = match tls {
            None => ConnectionStream::Plain(SharedStream(Rc::new(RefCell::new(stream)))),
            Some((config, timeout)) => {
                let refused = |message: String| PeerError::Tls {
                    address,
                    server_name: host.to_string(),
                    message,
                };
                let server_name = ServerName::try_from(host.to_string())
                    .map_err(|error| refused(format!("not a host name: {error}")))?;
                let session = tls::session::connect(stream, config, server_name, timeout)
                    .await
                    .map_err(|error| refused(error.to_string()))?;
                ConnectionStream::Tls(session)
            }
        };
        let shared = Rc::new(Shared {
            address,
            stream,
            state: RefCell::new(CallState {
                next_correlation_id: 0,
                pending: VecDeque::new(),
                broken: None,
            }),
            writing: Semaphore::new(1),
            slots: Semaphore::new(limits.inflight_requests_max.max(1) as u64),
            response_bytes_max: limits.response_bytes_max,
        });
        let reader = glommio::spawn_local(read_answers(shared.clone()));
        let mut connection = PeerConnection {
            shared,
            versions: Vec::new(),
            _reader: reader,
        };
        // Version 0 of ApiVersions never changes, so it works against any build.
        let request = ApiVersionsRequest {
            client_versions: SUPPORTED_API_VERSIONS.to_vec(),
        };
        let body = connection.exchange(&request, 0).await?;
        let answer = <ApiVersionsRequest as Request>::Response::decode(0, body)
            .map_err(|error| PeerError::Decode { address, error })?;
        if answer.error_code != ErrorCode::None {
            return Err(PeerError::Refused {
                address,
                code: answer.error_code,
            });
        }
        connection.versions = negotiate(&answer.broker_versions);
        if let Some(login) = security.and_then(|security| security.login.as_ref()) {
            connection.log_in(login).await?;
        }
        Ok(Rc::new(connection))
    }

    /// SASL right after version negotiation, before any other call (the peer takes nothing
    /// else first): the handshake names the mechanism, then one authenticate step (PLAIN) or
    /// two (SCRAM, whose server-final message is checked: a peer that does not know the
    /// credential is not trusted with this broker's calls either).
    async fn log_in(&self, login: &PeerLogin) -> Result<(), PeerError> {
        let address = self.shared.address;
        let refused = |reason: String| PeerError::Authentication {
            address,
            principal: format!("User:{}", login.user),
            reason,
        };
        let timeout_ms = SASL_STEP_TIMEOUT_MS;
        let handshake = self
            .call(
                &SaslHandshakeRequest {
                    mechanism: login.mechanism.name().to_string(),
                },
                timeout_ms,
            )
            .await
            .map_err(|error| refused(format!("SaslHandshake: {error}")))?;
        if handshake.error_code != ErrorCode::None {
            return Err(refused(format!(
                "{} refused ({}); the peer offers [{}]",
                login.mechanism,
                handshake.error_code,
                handshake.mechanisms.join(", ")
            )));
        }
        let step = |message: Vec<u8>| async move {
            let answer = self
                .call(
                    &SaslAuthenticateRequest {
                        auth_bytes: Bytes::from(message),
                    },
                    timeout_ms,
                )
                .await
                .map_err(|error| refused(format!("SaslAuthenticate: {error}")))?;
            if answer.error_code != ErrorCode::None {
                return Err(refused(format!(
                    "{:?}: {} ({})",
                    answer.error_code,
                    answer.error_code,
                    answer.error_message.unwrap_or_default()
                )));
            }
            Ok(answer.auth_bytes)
        };
        let Some(scram) = login.mechanism.scram() else {
            step(encode_plain(&login.user, &login.password)).await?;
            return Ok(());
        };
        let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), SCRAM_NONCE_CHARACTERS);
        let mut client = ScramClient::new(scram, &login.user, &login.password, nonce);
        let server_first = step(client.client_first()).await?;
        let client_final = client
            .server_first(&server_first)
            .map_err(|error| refused(format!("server-first-message: {error}")))?;
        let server_final = step(client_final).await?;
        client
            .server_final(&server_final)
            .map_err(|error| refused(format!("server-final-message: {error}")))
    }

    /// The address this connection goes to.
    pub fn address(&self) -> SocketAddr {
        self.shared.address
    }

    /// Whether the connection broke; a broken one never works again (open a new one).
    pub fn is_broken(&self) -> bool {
        self.shared.state.borrow().broken.is_some()
    }

    /// Calls in flight (written, not yet answered).
    pub fn calls_in_flight(&self) -> usize {
        self.shared.state.borrow().pending.len()
    }

    /// The version `Req` goes out at on this connection, if both brokers speak one.
    pub fn version_of(&self, api: ApiKey) -> Option<u16> {
        self.versions
            .get(usize::from(api.to_u16()))
            .copied()
            .flatten()
    }

    /// Sends `request` and waits for its answer, at most `timeout_ms` (waiting for a free slot
    /// included). A timeout breaks the connection (see the module documentation).
    pub async fn call<Req: Request>(
        &self,
        request: &Req,
        timeout_ms: u64,
    ) -> Result<Req::Response, PeerError> {
        let address = self.shared.address;
        let needed = request.version_needed();
        let version = self
            .version_of(Req::API_KEY)
            .filter(|version| *version >= needed)
            .ok_or(PeerError::Unsupported {
                address,
                api: Req::API_KEY,
                needed,
            })?;
        let timed_out = PeerError::TimedOut {
            address,
            timeout_ms,
        };
        let answer = with_timeout(timeout_ms, timed_out, self.exchange(request, version)).await;
        let body = match answer {
            Ok(body) => body,
            Err(error @ PeerError::TimedOut { .. }) => {
                self.shared.break_off(&error.to_string());
                return Err(error);
            }
            Err(error) => return Err(error),
        };
        Req::Response::decode(version, body).map_err(|error| PeerError::Decode { address, error })
    }

    /// Writes one request at `version` and waits for its answer's body.
    async fn exchange<Req: Request>(
        &self,
        request: &Req,
        version: u16,
    ) -> Result<Bytes, PeerError> {
        let shared = &*self.shared;
        let broken = || {
            shared
                .broken_error()
                .expect("semaphores close only on a break")
        };
        let _slot = shared.slots.acquire_permit(1).await.map_err(|_| broken())?;
        let receiver = {
            let _writing = shared
                .writing
                .acquire_permit(1)
                .await
                .map_err(|_| broken())?;
            if let Some(error) = shared.broken_error() {
                return Err(error);
            }
            let correlation_id = {
                let mut state = shared.state.borrow_mut();
                let id = state.next_correlation_id;
                state.next_correlation_id = id.wrapping_add(1);
                id
            };
            let chunks = encode_request_chunks(correlation_id, PEER_CLIENT_ID, version, request)
                .map_err(PeerError::Encode)?;
            let (sender, receiver) = local_channel::new_bounded(1);
            shared.state.borrow_mut().pending.push_back(Pending {
                correlation_id,
                answer: sender,
            });
            let mut guard = BreakUnlessDone {
                shared,
                done: false,
            };
            let mut stream = shared.stream.clone();
            let written = stream.write_chunks(&chunks).await;
            guard.done = true;
            if let Err(error) = written {
                shared.break_off(&format!("write failed: {error}"));
                return Err(broken());
            }
            receiver
        };
        match receiver.recv().await {
            Some(answer) => answer,
            // The reader is gone: only when the connection itself was dropped.
            None => Err(broken()),
        }
    }
}

impl std::fmt::Debug for PeerConnection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PeerConnection")
            .field("address", &self.shared.address)
            .field("calls_in_flight", &self.calls_in_flight())
            .field("broken", &self.shared.state.borrow().broken)
            .finish()
    }
}

/// The highest common version of every API this build knows, by key.
fn negotiate(theirs: &[ApiVersionRange]) -> Vec<Option<u16>> {
    ApiKey::ALL
        .iter()
        .map(|api| pick_version(&SUPPORTED_API_VERSIONS, theirs, *api))
        .collect()
}

/// Runs `work` for at most `timeout_ms`; then `timed_out`.
async fn with_timeout<T>(
    timeout_ms: u64,
    timed_out: PeerError,
    work: impl std::future::Future<Output = Result<T, PeerError>>,
) -> Result<T, PeerError> {
    future::or(work, async {
        glommio::timer::sleep(Duration::from_millis(timeout_ms)).await;
        Err(timed_out)
    })
    .await
}

/// The reader task: takes answer frames off the socket and hands each to the oldest call.
async fn read_answers(shared: Rc<Shared>) {
    let reason = match read_loop(&shared).await {
        Ok(()) => "the peer closed the connection".to_string(),
        Err(reason) => reason,
    };
    shared.break_off(&reason);
}

async fn read_loop(shared: &Shared) -> Result<(), String> {
    let mut stream = shared.stream.clone();
    let mut buffer = BytesMut::new();
    loop {
        // Hand over every complete frame in the buffer.
        loop {
            if let Some(prefix) = buffer.get(..FRAME_LENGTH_BYTES) {
                let frame_bytes = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
                if frame_bytes > shared.response_bytes_max {
                    return Err(format!(
                        "answer frame of {frame_bytes} bytes is over peer_response_bytes_max {}",
                        shared.response_bytes_max
                    ));
                }
            }
            let frame = split_response_frame(&mut buffer)
                .map_err(|error| format!("answer frame does not decode: {error}"))?;
            let Some(frame) = frame else { break };
            let oldest = shared.state.borrow_mut().pending.pop_front();
            let Some(call) = oldest else {
                return Err(format!(
                    "answer with correlation id {} to no call",
                    frame.correlation_id
                ));
            };
            if call.correlation_id != frame.correlation_id {
                return Err(format!(
                    "answer with correlation id {} while call {} is the oldest",
                    frame.correlation_id, call.correlation_id
                ));
            }
            // A caller that timed out or was dropped no longer listens.
            let _ = call.answer.try_send(Ok(frame.body));
        }
        if shared.state.borrow().broken.is_some() {
            return Err("broken".to_string());
        }
        // Read at least a chunk, and the whole rest of a frame whose length is known.
        let wanted = match buffer.get(..FRAME_LENGTH_BYTES) {
            Some(prefix) => {
                let frame_bytes = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
                (FRAME_LENGTH_BYTES + frame_bytes)
                    .saturating_sub(buffer.len())
                    .max(READ_CHUNK_BYTES)
            }
            None => READ_CHUNK_BYTES,
        };
        let filled = buffer.len();
        buffer.resize(filled + wanted, 0);
        let read = stream.read(&mut buffer[filled..]).await;
        match read {
            Ok(0) => {
                buffer.truncate(filled);
                return Ok(());
            }
            Ok(count) => buffer.truncate(filled + count),
            Err(error) => return Err(format!("read failed: {error}")),
        }
    }
}

/// Resolves a broker's advertised endpoint: an IP address as written, or a host name through the
/// system resolver (the first address it gives).
pub fn resolve(node: NodeId, host: &str, port: u16) -> Result<SocketAddr, PeerError> {
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let failed = |message: String| PeerError::Address {
        node,
        address: format!("{host}:{port}"),
        message,
    };
    (host, port)
        .to_socket_addrs()
        .map_err(|error| failed(error.to_string()))?
        .next()
        .ok_or_else(|| failed("no address".to_string()))
}

/// One shard's connections to the other brokers, one per broker, opened on demand and opened
/// again after a break (see the module documentation for the backoff).
pub struct PeerPool {
    limits: PeerLimits,
    /// TLS and login of every connection (`None`: plaintext, no login).
    security: Option<Arc<PeerSecurity>>,
    peers: RefCell<HashMap<NodeId, Rc<PeerSlot>>>,
}

struct PeerSlot {
    connection: RefCell<Option<Rc<PeerConnection>>>,
    /// One connect at a time per broker: a second caller waits and takes its result.
    connecting: Semaphore,
    /// Connects failed in a row.
    failures: Cell<u32>,
    /// No new connect before this, after a failure.
    retry_at: Cell<Option<Instant>>,
    /// When a refused handshake or login was last warned of (they repeat every backoff).
    warned_at: Cell<Option<Instant>>,
}

impl PeerPool {
    pub fn new(limits: PeerLimits, security: Option<Arc<PeerSecurity>>) -> PeerPool {
        PeerPool {
            limits,
            security,
            peers: RefCell::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// How this pool's connections are secured (`None`: plaintext, no login).
    pub fn security(&self) -> Option<&PeerSecurity> {
        self.security.as_deref()
    }

    /// The working connection to broker `node` at `address` (its advertised `host` resolved),
    /// opened now if there is none (or it broke, or the broker moved to another address).
    /// While a failed broker is in its backoff this fails at once with
    /// [`PeerError::BackingOff`]: it never sleeps, so one loop can serve several brokers.
    pub async fn get(
        &self,
        node: NodeId,
        host: &str,
        address: SocketAddr,
    ) -> Result<Rc<PeerConnection>, PeerError> {
        let slot = self
            .peers
            .borrow_mut()
            .entry(node)
            .or_insert_with(|| {
                Rc::new(PeerSlot {
                    connection: RefCell::new(None),
                    connecting: Semaphore::new(1),
                    failures: Cell::new(0),
                    retry_at: Cell::new(None),
                    warned_at: Cell::new(None),
                })
            })
            .clone();
        let usable = |slot: &PeerSlot| {
            slot.connection
                .borrow()
                .as_ref()
                .filter(|connection| !connection.is_broken() && connection.address() == address)
                .cloned()
        };
        if let Some(connection) = usable(&slot) {
            return Ok(connection);
        }
        let _connecting = slot
            .connecting
            .acquire_permit(1)
            .await
            .expect("the connect lock is never closed");
        // Another caller may have connected while this one waited.
        if let Some(connection) = usable(&slot) {
            return Ok(connection);
        }
        if let Some(retry_at) = slot.retry_at.get() {
            let now = Instant::now();
            if now < retry_at {
                return Err(PeerError::BackingOff {
                    node,
                    retry_in_ms: (retry_at - now).as_millis() as u64,
                });
            }
        }
        slot.connection.borrow_mut().take();
        let connected = PeerConnection::connect(
            address,
            host,
            &self.limits,
            self.security(),
            self.limits.connect_timeout_ms,
        )
        .await;
        match connected {
            Ok(connection) => {
                slot.failures.set(0);
                slot.retry_at.set(None);
                *slot.connection.borrow_mut() = Some(connection.clone());
                Ok(connection)
            }
            Err(error) => {
                let failures = slot.failures.get().saturating_add(1);
                slot.failures.set(failures);
                let backoff_ms = backoff_ms(failures, self.limits.reconnect_backoff_ms_max);
                slot.retry_at
                    .set(Some(Instant::now() + Duration::from_millis(backoff_ms)));
                if error.is_refusal_of_security() {
                    warn_of_refusal(&slot, node, &error, backoff_ms);
                } else {
                    tracing::debug!(node, %address, %error, backoff_ms, "connecting to a broker failed");
                }
                Err(error)
            }
        }
    }

    /// The open connection to `node`, if there is a working one (never connects).
    pub fn connected(&self, node: NodeId) -> Option<Rc<PeerConnection>> {
        let peers = self.peers.borrow();
        let connection = peers.get(&node)?.connection.borrow().clone()?;
        (!connection.is_broken()).then_some(connection)
    }

    /// Closes and forgets the connection to `node` (the broker left the cluster). Calls in
    /// flight on it keep it open until they end.
    pub fn forget(&self, node: NodeId) {
        self.peers.borrow_mut().remove(&node);
    }
}

/// Warns that broker `node` refused this broker's TLS handshake or login, at most once per
/// `AUTHENTICATION_WARNING_INTERVAL_MS` for each peer (the rest at debug level).
fn warn_of_refusal(slot: &PeerSlot, node: NodeId, error: &PeerError, backoff_ms: u64) {
    let now = Instant::now();
    let interval = Duration::from_millis(AUTHENTICATION_WARNING_INTERVAL_MS);
    let due = slot
        .warned_at
        .get()
        .is_none_or(|warned_at| now.duration_since(warned_at) >= interval);
    if due {
        slot.warned_at.set(Some(now));
        tracing::warn!(
            node,
            %error,
            backoff_ms,
            "another broker refused this broker's TLS handshake or login (check \
             inter_broker_tls_ca_file, the certificates, inter_broker_user and its password); \
             retrying"
        );
    } else {
        tracing::debug!(node, %error, backoff_ms, "another broker refused this broker's TLS handshake or login");
    }
}

/// The wait before connect attempt `failures + 1`: 50 ms doubling per failure, capped at
/// `max_ms`, with up to a quarter more at random so brokers that lost the same peer do not all
/// come back at once.
fn backoff_ms(failures: u32, max_ms: u64) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    let base = RECONNECT_BACKOFF_MS_MIN
        .saturating_mul(1 << doublings)
        .min(max_ms.max(1));
    base + rand::random::<u64>() % (base / 4 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A cluster broker's config whose native listener requires client certificates (the
    /// broker's certificate `CN=node-7`, written under `directory`), authorization on, with
    /// `super_users`.
    fn mutual_tls_cluster(directory: &std::path::Path, super_users: &str) -> Config {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "node-7");
        let certificate = params.self_signed(&key).unwrap();
        let cert_file = directory.join("broker.pem");
        let key_file = directory.join("broker.key");
        std::fs::write(&cert_file, certificate.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let arguments = [
            "spate-broker",
            "--seeds",
            "127.0.0.1:9192",
            "--tls-cert-file",
            cert_file.to_str().unwrap(),
            "--tls-key-file",
            key_file.to_str().unwrap(),
            "--tls-client-ca-file",
            cert_file.to_str().unwrap(),
            "--inter-broker-tls-ca-file",
            cert_file.to_str().unwrap(),
            "--authorization",
            "true",
            "--super-users",
            super_users,
        ];
        let command_line = crate::config::CommandLine::try_parse_from(arguments).unwrap();
        Config::from_layers(command_line, &|_| None, vec![0]).expect("a valid config")
    }

    #[test]
    fn with_client_certificates_alone_the_certificates_cn_must_be_a_super_user() {
        let directory = tempfile::tempdir().unwrap();
        let refused = PeerSecurity::load(&mutual_tls_cluster(directory.path(), "User:admin"));
        match refused {
            Err(error @ PeerSecurityError::PrincipalNotSuperUser { .. }) => {
                assert!(error.to_string().contains("User:node-7"), "{error}");
            }
            other => panic!("the certificate's principal was not required: {other:?}"),
        }
        let config = mutual_tls_cluster(directory.path(), "User:admin,User:node-7");
        let security = PeerSecurity::load(&config)
            .expect("the CN is a super user")
            .expect("calls use TLS");
        assert!(security.tls.is_some());
        assert!(security.login.is_none());
    }

    #[test]
    fn the_login_reads_its_password_file_and_never_prints_it() {
        let directory = tempfile::tempdir().unwrap();
        let password_file = directory.path().join("password");
        std::fs::write(&password_file, "pa55-word\n").unwrap();
        let arguments = [
            "spate-broker",
            "--seeds",
            "127.0.0.1:9192",
            "--sasl-mechanisms",
            "SCRAM-SHA-256",
            "--inter-broker-sasl-mechanism",
            "SCRAM-SHA-256",
            "--inter-broker-user",
            "broker",
            "--inter-broker-password-file",
            password_file.to_str().unwrap(),
            "--super-users",
            "User:broker",
        ];
        let command_line = crate::config::CommandLine::try_parse_from(arguments).unwrap();
        let config = Config::from_layers(command_line, &|_| None, vec![0]).unwrap();
        let security = PeerSecurity::load(&config).unwrap().expect("a login");
        let login = security.login.as_ref().expect("a login");
        assert_eq!(login.password, "pa55-word");
        assert_eq!(login.mechanism, SaslMechanism::ScramSha256);
        assert!(security.tls.is_none());
        assert!(!format!("{security:?}").contains("pa55-word"));
        std::fs::remove_file(&password_file).unwrap();
        assert!(matches!(
            PeerSecurity::load(&config),
            Err(PeerSecurityError::Config(_))
        ));
    }

    #[test]
    fn backoff_doubles_from_the_minimum_and_stops_at_the_maximum() {
        for _ in 0..100 {
            let first = backoff_ms(1, 2000);
            assert!((50..=62).contains(&first), "{first}");
            let third = backoff_ms(3, 2000);
            assert!((200..=250).contains(&third), "{third}");
            let many = backoff_ms(40, 2000);
            assert!((2000..=2500).contains(&many), "{many}");
        }
    }
}
