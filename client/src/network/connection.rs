//! One TCP connection to a broker, pipelined: many requests in flight, answered in order.
//!
//! A connection is two tasks on the I/O thread. The writer takes encoded requests from a
//! bounded queue, notes each one that expects an answer in the pending list (in write order),
//! and writes them with vectored writes, several requests per system call when they queue up.
//! The reader splits response frames off its buffer and hands each to the oldest pending
//! request, checking the correlation id. The broker answers in request order and sends nothing
//! for an acks=none produce, so write order is answer order.
//!
//! When either side fails, the connection closes: every pending request fails with
//! [`Error::ConnectionLost`] and later sends fail at once. Reconnecting is the caller's job
//! (`network::Network`). This file knows frames, not messages, except for version negotiation
//! and SASL authentication, which every connection goes through before its first request when
//! `ClientConfig::sasl_mechanism` is set.
//!
//! Re-authentication (Kafka's KIP-368): when the broker's SaslAuthenticate answer gives the
//! session a lifetime, the connection logs in again, in place, before it ends: at a random point
//! between 85% and 95% of it, as Kafka's Java client does. Every request holds the session
//! shared from before it is queued until its answer arrives; the first request made after that
//! point takes the session alone instead, which holds back new requests and waits for the
//! answers in flight, then runs SaslHandshake and SaslAuthenticate again with the same
//! credentials and lets the held requests go. The broker closes an expired session only at its
//! next request other than SASL, so renewing at the next request is in time even after an idle
//! spell. A refused re-authentication closes the connection and is `Error::Authentication` to the
//! request that ran it.
//!
//! With `ClientConfig::tls`, the TLS handshake (tokio-rustls) runs after the TCP connect within
//! the connect timeout, and the two tasks share the TLS stream through `tokio::io::split`. A
//! TLS failure, in the handshake or as the broker's alert right after it (TLS 1.3 clients learn
//! that their certificate was refused only then), is `Error::Tls`.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use spate_protocol::api::{encode_request_chunks, pick_version, ApiKey, Message, Request};
use spate_protocol::api::{ApiVersionsRequest, SUPPORTED_API_VERSIONS};
use spate_protocol::constants::FRAME_LENGTH_BYTES;
use spate_protocol::frame::split_response_frame;
use spate_protocol::ErrorCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, RwLock, RwLockReadGuard, Semaphore};

use rand::distributions::{Alphanumeric, DistString};
use spate_protocol::api::{SaslAuthenticateRequest, SaslHandshakeRequest};
use spate_security::{encode_plain, ScramClient, ScramMechanism};

use crate::config::{defaults, ClientConfig, Password, SaslMechanism};
use crate::error::Error;

/// Characters of the client's SCRAM nonce (random, printable, never repeated).
const SCRAM_NONCE_CHARACTERS: usize = 32;

/// Kafka's re-authentication window (KIP-368): a session is renewed at a random point between
/// 85% and 95% of its lifetime, leaving room for latency and clock drift and spreading the
/// renewals of connections opened together.
const REAUTHENTICATE_LIFETIME_FRACTION_MIN: f64 = 0.85;
const REAUTHENTICATE_LIFETIME_FRACTION_JITTER: f64 = 0.10;

/// Most requests the writer gathers into one vectored write.
const WRITE_GATHER_REQUESTS_MAX: usize = 64;
/// Most iovecs passed to one `writev`. Linux accepts 1024; fewer keeps the array on the stack.
const WRITE_SLICES_MAX: usize = 64;

/// A request on its way to the writer.
struct Outgoing {
    correlation_id: u32,
    chunks: Vec<Bytes>,
    reply: Reply,
}

/// Where the answer goes. Holding the permit bounds the requests in flight.
struct Reply {
    sender: oneshot::Sender<Result<Option<Bytes>, Error>>,
    expects_response: bool,
    _permit: OwnedSemaphorePermit,
}

struct Pending {
    correlation_id: u32,
    reply: Reply,
}

/// State both tasks and every caller share.
struct Shared {
    address: String,
    /// Set when the peer sent bytes that are no answer to our requests (a malformed frame, a
    /// correlation id out of step): during the handshake, a sign that it is not a Spate broker.
    garbled: AtomicBool,
    pending: Mutex<VecDeque<Pending>>,
    closed: watch::Sender<Option<String>>,
    /// Set when a read failed with a TLS error (the broker's alert, a bad record): what the
    /// handshake reports as `Error::Tls`.
    tls_failure: Mutex<Option<String>>,
}

impl Shared {
    fn pending(&self) -> MutexGuard<'_, VecDeque<Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_closed(&self) -> bool {
        self.closed.borrow().is_some()
    }

    /// Closes the connection once: records why and fails every pending request.
    fn close(&self, reason: String) {
        let first = self.closed.send_if_modified(|state| {
            if state.is_some() {
                return false;
            }
            *state = Some(reason.clone());
            true
        });
        if !first {
            return;
        }
        let pending: Vec<Pending> = self.pending().drain(..).collect();
        for entry in pending {
            let _ = entry.reply.sender.send(Err(self.lost(&reason)));
        }
    }

    fn lost(&self, reason: &str) -> Error {
        Error::ConnectionLost {
            address: self.address.clone(),
            operation: "a request",
            reason: reason.to_string(),
        }
    }
}

/// What a connection logs in with, kept to log in again when its session's lifetime ends.
struct Login {
    mechanism: SaslMechanism,
    username: String,
    password: Password,
}

/// The SASL session of a connection. Every request holds it shared until its answer arrives; a
/// re-authentication holds it alone.
struct Session {
    /// When the session is renewed; `None` without SASL or when the broker gives no lifetime.
    reauthenticate_at: Option<Instant>,
}

impl Session {
    fn is_due(&self, now: Instant) -> bool {
        self.reauthenticate_at.is_some_and(|at| now >= at)
    }
}

/// How long after a login its session is renewed: `jitter` (in `[0, 1)`) picks the point in
/// Kafka's window of 85% to 95% of `lifetime`.
fn reauthentication_delay(lifetime: Duration, jitter: f64) -> Duration {
    assert!(
        (0.0..1.0).contains(&jitter),
        "jitter {jitter} outside [0, 1)"
    );
    lifetime.mul_f64(
        REAUTHENTICATE_LIFETIME_FRACTION_MIN + REAUTHENTICATE_LIFETIME_FRACTION_JITTER * jitter,
    )
}

/// Closes the connection when a re-authentication is dropped half-way (its caller gave up): the
/// broker would be left mid-exchange.
struct CloseUnlessFinished<'a> {
    shared: &'a Shared,
    finished: bool,
}

impl Drop for CloseUnlessFinished<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.shared
                .close("re-authentication abandoned half-way".into());
        }
    }
}

/// API versions both sides speak, found once per connection.
#[derive(Debug, Clone, Copy)]
struct Versions([Option<u16>; ApiKey::ALL.len()]);

/// A live connection. Cheap to share behind an `Arc`; dropping the last handle closes it.
pub(crate) struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<Outgoing>,
    inflight: Arc<Semaphore>,
    next_correlation_id: AtomicU32,
    client_id: String,
    request_timeout: Duration,
    versions: Versions,
    login: Option<Login>,
    session: RwLock<Session>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shared.close("connection no longer used".into());
    }
}

impl Connection {
    /// Connects to `address`, starts the reader and writer tasks on the current (I/O) runtime,
    /// and negotiates API versions.
    pub(crate) async fn open(address: &str, config: &ClientConfig) -> Result<Self, Error> {
        let connect_error = |source: std::io::Error| Error::Connect {
            address: address.to_string(),
            source: Arc::new(source),
        };
        let stream = tokio::time::timeout(config.connect_timeout, TcpStream::connect(address))
            .await
            .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
            .map_err(connect_error)?;
        stream.set_nodelay(true).map_err(connect_error)?;
        let (closed, closed_watch) = watch::channel(None);
        let shared = Arc::new(Shared {
            address: address.to_string(),
            garbled: AtomicBool::new(false),
            pending: Mutex::new(VecDeque::new()),
            closed,
            tls_failure: Mutex::new(None),
        });
        let inflight_max = config.connection_inflight_requests_max;
        let (outgoing, queue) = mpsc::channel(inflight_max);
        match &config.tls {
            None => {
                let (read_half, write_half) = stream.into_split();
                tokio::spawn(write_loop(
                    shared.clone(),
                    write_half,
                    queue,
                    closed_watch.clone(),
                ));
                tokio::spawn(read_loop(shared.clone(), read_half, closed_watch));
            }
            Some(tls) => {
                let stream = tls_handshake(address, config, tls, stream).await?;
                let (read_half, write_half) = tokio::io::split(stream);
                tokio::spawn(write_loop(
                    shared.clone(),
                    write_half,
                    queue,
                    closed_watch.clone(),
                ));
                tokio::spawn(read_loop(shared.clone(), read_half, closed_watch));
            }
        }
        let mut connection = Self {
            shared,
            outgoing,
            inflight: Arc::new(Semaphore::new(inflight_max)),
            next_correlation_id: AtomicU32::new(1),
            client_id: config.client_id.clone(),
            request_timeout: config.request_timeout,
            versions: Versions([Some(0); ApiKey::ALL.len()]),
            login: config.sasl_mechanism.map(|mechanism| Login {
                mechanism,
                username: config.sasl_username.clone(),
                password: config.sasl_password.clone(),
            }),
            session: RwLock::new(Session {
                reauthenticate_at: None,
            }),
        };
        // A port that accepts and never answers, or answers in another protocol, must not
        // hold the caller for the request timeout: the handshake gets the connect timeout.
        let not_spate = |reason: String| Error::NotSpateBroker {
            address: address.to_string(),
            reason,
        };
        let handshake = async {
            connection.negotiate().await?;
            match &connection.login {
                Some(login) => connection.authenticate(login).await,
                None => Ok(None),
            }
        };
        let negotiated = tokio::time::timeout(config.connect_timeout, handshake).await;
        let tls_failure = connection
            .shared
            .tls_failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        if let (Some(reason), Ok(Err(_))) = (tls_failure, &negotiated) {
            return Err(Error::Tls {
                address: address.to_string(),
                reason,
            });
        }
        match negotiated {
            Ok(Ok(reauthenticate_at)) => {
                connection.session.get_mut().reauthenticate_at = reauthenticate_at;
                Ok(connection)
            }
            Err(_) => Err(not_spate(format!(
                "no answer within {} ms",
                config.connect_timeout.as_millis()
            ))),
            Ok(Err(Error::Protocol { source, .. })) => {
                Err(not_spate(format!("unexpected reply: {source}")))
            }
            Ok(Err(Error::ConnectionLost { reason, .. }))
                if connection.shared.garbled.load(Ordering::Relaxed) =>
            {
                Err(not_spate(format!("unexpected reply: {reason}")))
            }
            Ok(Err(error)) => Err(error),
        }
    }

    async fn negotiate(&mut self) -> Result<(), Error> {
        let request = ApiVersionsRequest {
            client_versions: SUPPORTED_API_VERSIONS.to_vec(),
        };
        // ApiVersions version 0 never changes, so it is safe before negotiation.
        let response = self.call_during_login(&request, 0, "api versions").await?;
        if response.error_code != ErrorCode::None {
            return Err(Error::broker(
                "api versions",
                None,
                None,
                response.error_code,
                None,
            ));
        }
        let mut versions = [None; ApiKey::ALL.len()];
        for (slot, key) in versions.iter_mut().zip(ApiKey::ALL) {
            *slot = pick_version(&SUPPORTED_API_VERSIONS, &response.broker_versions, key);
        }
        self.versions = Versions(versions);
        Ok(())
    }

    /// SASL right after version negotiation (the broker takes nothing else first): the
    /// handshake names the mechanism, then one authenticate step (PLAIN) or two (SCRAM: the
    /// client-first and client-final messages; the server's final message proves it knows the
    /// credential, which is checked). Returns when the session is to be renewed, when the broker
    /// gives it a lifetime. Its requests bypass the session lock: at a re-authentication, the
    /// caller holds it alone.
    async fn authenticate(&self, login: &Login) -> Result<Option<Instant>, Error> {
        let mechanism = login.mechanism;
        let refused = |reason: String| Error::Authentication {
            address: self.shared.address.clone(),
            reason,
        };
        if self.version_of(ApiKey::SaslHandshake).is_err() {
            return Err(refused("the broker does not offer SASL".into()));
        }
        let handshake_request = SaslHandshakeRequest {
            mechanism: mechanism.name().to_string(),
        };
        let version = self.version_for(&handshake_request)?;
        let handshake = self
            .call_during_login(&handshake_request, version, "sasl handshake")
            .await?;
        if handshake.error_code != ErrorCode::None {
            return Err(refused(format!(
                "{} refused ({}); the broker offers [{}]",
                mechanism.name(),
                handshake.error_code,
                handshake.mechanisms.join(", ")
            )));
        }
        let user = &login.username;
        let password = login.password.reveal();
        let version = self.version_of(ApiKey::SaslAuthenticate)?;
        // Each step's answer, and when its session is to be renewed: the lifetime counts from
        // the broker's check, after the step was sent.
        let step = |message: Vec<u8>| async move {
            let request = SaslAuthenticateRequest {
                auth_bytes: Bytes::from(message),
            };
            let sent_at = Instant::now();
            let answer = self
                .call_during_login(&request, version, "sasl authenticate")
                .await?;
            if answer.error_code != ErrorCode::None {
                return Err(refused(format!(
                    "{} ({})",
                    answer.error_code,
                    answer.error_message.unwrap_or_default()
                )));
            }
            let lifetime_ms = u64::try_from(answer.session_lifetime_ms).unwrap_or(0);
            let renewal = (lifetime_ms > 0).then(|| {
                let jitter = rand::Rng::gen_range(&mut rand::thread_rng(), 0.0..1.0);
                sent_at + reauthentication_delay(Duration::from_millis(lifetime_ms), jitter)
            });
            Ok((answer.auth_bytes, renewal))
        };
        let scram = match mechanism {
            SaslMechanism::Plain => {
                let (_, renewal) = step(encode_plain(user, password)).await?;
                return Ok(renewal);
            }
            SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
            SaslMechanism::ScramSha512 => ScramMechanism::Sha512,
        };
        let nonce = Alphanumeric.sample_string(&mut rand::thread_rng(), SCRAM_NONCE_CHARACTERS);
        let mut client = ScramClient::new(scram, user, password, nonce);
        let (server_first, _) = step(client.client_first()).await?;
        let client_final = client
            .server_first(&server_first)
            .map_err(|error| refused(format!("server-first-message: {error}")))?;
        let (server_final, renewal) = step(client_final).await?;
        client
            .server_final(&server_final)
            .map_err(|error| refused(format!("server-final-message: {error}")))?;
        Ok(renewal)
    }

    /// Holds the session shared for one request, renewing it first when it is due. A failed
    /// renewal closes the connection; the requests held behind it then fail as lost.
    async fn session_for_request(&self) -> Result<RwLockReadGuard<'_, Session>, Error> {
        loop {
            let session = self.session.read().await;
            if !session.is_due(Instant::now()) {
                return Ok(session);
            }
            drop(session);
            // Waits for every request in flight to be answered; holds back the new ones.
            let mut session = self.session.write().await;
            if !session.is_due(Instant::now()) {
                continue;
            }
            session.reauthenticate_at = None;
            let login = self
                .login
                .as_ref()
                .expect("only a logged-in session has a renewal time");
            let mut guard = CloseUnlessFinished {
                shared: &self.shared,
                finished: false,
            };
            let renewed = self.authenticate(login).await;
            guard.finished = true;
            match renewed {
                Ok(reauthenticate_at) => session.reauthenticate_at = reauthenticate_at,
                Err(error) => {
                    self.close(&format!("re-authentication failed: {error}"));
                    return Err(match error {
                        Error::Authentication { .. } => error,
                        other => Error::Authentication {
                            address: self.shared.address.clone(),
                            reason: format!("re-authentication failed: {other}"),
                        },
                    });
                }
            }
        }
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.shared.is_closed()
    }

    /// The address this connection was opened to, as given.
    pub(crate) fn address(&self) -> &str {
        &self.shared.address
    }

    /// Closes the connection (failing what is in flight); the next request reconnects.
    pub(crate) fn close(&self, reason: &str) {
        self.shared.close(reason.to_string());
    }

    fn version_of(&self, api: ApiKey) -> Result<u16, Error> {
        self.versions.0[api as usize].ok_or(Error::UnsupportedVersion { api })
    }

    /// The negotiated version for `request`, refused when it cannot carry what the request
    /// holds (a read_committed fetch to a broker that predates transactions): sent older, the
    /// broker would quietly ignore it.
    fn version_for<R: Request>(&self, request: &R) -> Result<u16, Error> {
        let version = self.version_of(R::API_KEY)?;
        if request.version_needed() > version {
            return Err(Error::UnsupportedVersion { api: R::API_KEY });
        }
        Ok(version)
    }

    /// Sends `request` and decodes its response. `extra_wait` is time the broker may hold the
    /// request on purpose (a fetch's max wait), added to the request timeout.
    pub(crate) async fn call<R: Request>(
        &self,
        request: &R,
        operation: &'static str,
        extra_wait: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let version = self.version_for(request)?;
        self.call_at(request, version, operation, extra_wait).await
    }

    async fn call_at<R: Request>(
        &self,
        request: &R,
        version: u16,
        operation: &'static str,
        extra_wait: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let body = self
            .exchange(request, version, operation, true, extra_wait)
            .await?;
        self.decode_response::<R>(body, version, operation)
    }

    /// A request of the login (version negotiation, SASL), outside the session lock.
    async fn call_during_login<R: Request>(
        &self,
        request: &R,
        version: u16,
        operation: &'static str,
    ) -> Result<R::Response, Error> {
        let body = self
            .transmit(request, version, operation, true, None)
            .await?;
        self.decode_response::<R>(body, version, operation)
    }

    fn decode_response<R: Request>(
        &self,
        body: Option<Bytes>,
        version: u16,
        operation: &'static str,
    ) -> Result<R::Response, Error> {
        let body = body.ok_or_else(|| self.shared.lost("no response body"))?;
        R::Response::decode(version, body).map_err(|source| {
            // The stream may be out of step now; start afresh.
            self.close(&format!("malformed {operation} response"));
            Error::Protocol { operation, source }
        })
    }

    /// Sends a request that the broker does not answer (an acks=none produce). Returns once
    /// the request has been written to the socket.
    pub(crate) async fn send_only<R: Request>(
        &self,
        request: &R,
        operation: &'static str,
    ) -> Result<(), Error> {
        let version = self.version_for(request)?;
        self.exchange(request, version, operation, false, None)
            .await
            .map(|_| ())
    }

    /// Sends `request` within the session: held shared until the answer arrives, so that a
    /// re-authentication waits for it.
    async fn exchange<R: Request>(
        &self,
        request: &R,
        version: u16,
        operation: &'static str,
        expects_response: bool,
        extra_wait: Option<Duration>,
    ) -> Result<Option<Bytes>, Error> {
        let _session = self.session_for_request().await?;
        self.transmit(request, version, operation, expects_response, extra_wait)
            .await
    }

    async fn transmit<R: Request>(
        &self,
        request: &R,
        version: u16,
        operation: &'static str,
        expects_response: bool,
        extra_wait: Option<Duration>,
    ) -> Result<Option<Bytes>, Error> {
        let started = Instant::now();
        let lost = |reason: &str| Error::ConnectionLost {
            address: self.shared.address.clone(),
            operation,
            reason: reason.to_string(),
        };
        if let Some(reason) = self.shared.closed.borrow().as_ref() {
            return Err(lost(reason));
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let chunks = encode_request_chunks(correlation_id, &self.client_id, version, request)
            .map_err(|error| Error::invalid("request", format!("{operation}: {error}")))?;
        let timeout = self.request_timeout + extra_wait.unwrap_or_default();
        let exchange = async {
            let permit = self
                .inflight
                .clone()
                .acquire_owned()
                .await
                .map_err(|_| lost("connection closed"))?;
            let (sender, receiver) = oneshot::channel();
            let outgoing = Outgoing {
                correlation_id,
                chunks,
                reply: Reply {
                    sender,
                    expects_response,
                    _permit: permit,
                },
            };
            self.outgoing
                .send(outgoing)
                .await
                .map_err(|_| lost("connection closed"))?;
            match receiver.await {
                Ok(Ok(body)) => Ok(body),
                Ok(Err(Error::ConnectionLost { reason, .. })) => Err(lost(&reason)),
                Ok(Err(error)) => Err(error),
                Err(_) => Err(lost("connection closed")),
            }
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // Answers come in order: a late answer would block every later one. Start over.
                self.close(&format!("{operation} timed out"));
                Err(Error::Timeout {
                    operation,
                    elapsed: started.elapsed(),
                })
            }
        }
    }
}

/// The client side of a TLS handshake on `stream`, within the connect timeout.
async fn tls_handshake(
    address: &str,
    config: &ClientConfig,
    tls: &crate::tls::TlsConfig,
    stream: TcpStream,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, Error> {
    let failed = |reason: String| Error::Tls {
        address: address.to_string(),
        reason,
    };
    let connector = tokio_rustls::TlsConnector::from(tls.client_config()?);
    let name = tls.server_name_for(address)?;
    match tokio::time::timeout(config.connect_timeout, connector.connect(name, stream)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(error)) => Err(failed(error.to_string())),
        Err(_) => Err(failed(format!(
            "no handshake within {} ms (is it a TLS port?)",
            config.connect_timeout.as_millis()
        ))),
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    shared: Arc<Shared>,
    mut stream: W,
    mut queue: mpsc::Receiver<Outgoing>,
    mut closed: watch::Receiver<Option<String>>,
) {
    let mut batch: Vec<Outgoing> = Vec::with_capacity(WRITE_GATHER_REQUESTS_MAX);
    loop {
        let first = tokio::select! {
            item = queue.recv() => item,
            _ = closed.wait_for(Option::is_some) => None,
        };
        let Some(first) = first else { break };
        batch.push(first);
        while batch.len() < WRITE_GATHER_REQUESTS_MAX {
            match queue.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        if shared.is_closed() {
            break;
        }
        let mut chunks: VecDeque<Bytes> = VecDeque::new();
        let mut written_without_answer = Vec::new();
        {
            let mut pending = shared.pending();
            for item in batch.drain(..) {
                chunks.extend(item.chunks);
                if item.reply.expects_response {
                    pending.push_back(Pending {
                        correlation_id: item.correlation_id,
                        reply: item.reply,
                    });
                } else {
                    written_without_answer.push(item.reply);
                }
            }
        }
        let written = match write_chunks(&mut stream, &mut chunks).await {
            // TLS keeps what the socket did not take yet in its session: flushed here.
            Ok(()) => stream.flush().await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            shared.close(format!("write failed: {error}"));
            for reply in written_without_answer {
                let _ = reply.sender.send(Err(shared.lost("write failed")));
            }
            break;
        }
        for reply in written_without_answer {
            let _ = reply.sender.send(Ok(None));
        }
    }
    shared.close("connection closed".into());
    queue.close();
    while let Ok(item) = queue.try_recv() {
        let _ = item
            .reply
            .sender
            .send(Err(shared.lost("connection closed")));
    }
    let _ = stream.shutdown().await;
}

/// Writes every chunk, as few `writev` calls as the kernel allows.
async fn write_chunks<W: AsyncWrite + Unpin>(
    stream: &mut W,
    chunks: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    while !chunks.is_empty() {
        let written = {
            let slices: Vec<IoSlice<'_>> = chunks
                .iter()
                .take(WRITE_SLICES_MAX)
                .map(|chunk| IoSlice::new(chunk))
                .collect();
            stream.write_vectored(&slices).await?
        };
        if written == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        advance(chunks, written);
    }
    Ok(())
}

fn advance(chunks: &mut VecDeque<Bytes>, mut written: usize) {
    while written > 0 {
        let front = chunks.front_mut().expect("wrote no more than was queued");
        if written >= front.len() {
            written -= front.len();
            chunks.pop_front();
        } else {
            front.advance(written);
            written = 0;
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(
    shared: Arc<Shared>,
    mut stream: R,
    mut closed: watch::Receiver<Option<String>>,
) {
    let mut buffer = BytesMut::with_capacity(defaults::READ_CHUNK_BYTES);
    loop {
        loop {
            match split_response_frame(&mut buffer) {
                Ok(Some(frame)) => {
                    if let Err(reason) = deliver(&shared, frame.correlation_id, frame.body) {
                        shared.close(reason);
                        return;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    shared.garbled.store(true, Ordering::Relaxed);
                    shared.close(format!("malformed response frame: {error}"));
                    return;
                }
            }
        }
        reserve_for_next_frame(&mut buffer);
        let read = tokio::select! {
            read = stream.read_buf(&mut buffer) => read,
            _ = closed.wait_for(Option::is_some) => return,
        };
        match read {
            Ok(0) => {
                // A TLS alert record (content type 21, version 3.x) is what a TLS listener
                // answers a plaintext client with before it closes.
                let reason = if buffer.starts_with(&[0x15, 0x03]) {
                    "the broker answered with a TLS alert and closed the connection: a TLS port \
                     (set ClientConfig::tls, or --tls-ca)"
                } else {
                    "the broker closed the connection"
                };
                shared.close(reason.into());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                let is_tls = error
                    .get_ref()
                    .is_some_and(|inner| inner.is::<rustls::Error>());
                if is_tls {
                    *shared
                        .tls_failure
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(error.to_string());
                }
                shared.close(format!("read failed: {error}"));
                return;
            }
        }
    }
}

/// Makes room for the rest of the frame being received (known from its length prefix), or
/// for one read chunk when no frame has started.
fn reserve_for_next_frame(buffer: &mut BytesMut) {
    let wanted = match buffer.get(..FRAME_LENGTH_BYTES) {
        Some(prefix) => {
            let frame_bytes = u32::from_le_bytes(prefix.try_into().expect("4 bytes")) as usize;
            (FRAME_LENGTH_BYTES + frame_bytes).saturating_sub(buffer.len())
        }
        None => 0,
    };
    buffer.reserve(wanted.max(defaults::READ_CHUNK_BYTES));
}

fn deliver(shared: &Shared, correlation_id: u32, body: Bytes) -> Result<(), String> {
    let Some(pending) = shared.pending().pop_front() else {
        shared.garbled.store(true, Ordering::Relaxed);
        return Err(format!(
            "response with correlation id {correlation_id} answers no request"
        ));
    };
    if pending.correlation_id != correlation_id {
        // Before the requester hears of it, so it can tell a stranger from a broken connection.
        shared.garbled.store(true, Ordering::Relaxed);
        let expected = pending.correlation_id;
        let _ = pending
            .reply
            .sender
            .send(Err(shared.lost("responses out of order")));
        return Err(format!(
            "response with correlation id {correlation_id} arrived where {expected} was due"
        ));
    }
    // The requester may have given up (timed out, dropped); the answer is then unwanted.
    let _ = pending.reply.sender.send(Ok(Some(body)));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::api::MetadataRequest;
    use spate_protocol::api::{encode_response, ApiVersionRange, ApiVersionsResponse};
    use spate_protocol::api::{MetadataResponse, TopicMetadata};
    use spate_protocol::frame::split_request_frame;
    use std::io::{Read, Write};

    /// A broker stand-in that answers ApiVersions at once but holds Metadata requests until
    /// `hold` of them have arrived, then answers them in order (naming each answer's topic
    /// after its correlation id). Only a client that pipelines gets any answer.
    fn holding_broker(hold: usize) -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = BytesMut::new();
            let mut held = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                while let Some(frame) = split_request_frame(&mut buffer).unwrap() {
                    let mut out = BytesMut::new();
                    if frame.api_key == ApiKey::ApiVersions as u16 {
                        let response = ApiVersionsResponse {
                            error_code: ErrorCode::None,
                            broker_versions: SUPPORTED_API_VERSIONS.to_vec(),
                        };
                        encode_response(&mut out, frame.correlation_id, 0, &response).unwrap();
                    } else {
                        // Answered at the version asked, as a broker does.
                        held.push((frame.correlation_id, frame.api_version));
                        if held.len() == hold {
                            for (correlation_id, version) in held.drain(..) {
                                let response = MetadataResponse {
                                    topics: vec![TopicMetadata {
                                        name: format!("answer-{correlation_id}"),
                                        ..TopicMetadata::default()
                                    }],
                                    ..MetadataResponse::default()
                                };
                                encode_response(&mut out, correlation_id, version, &response)
                                    .unwrap();
                            }
                        }
                    }
                    stream.write_all(&out).unwrap();
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(count) => buffer.extend_from_slice(&chunk[..count]),
                }
            }
        });
        address
    }

    #[test]
    fn many_requests_are_in_flight_at_once_and_each_gets_its_own_answer() {
        let in_flight = 8;
        let address = holding_broker(in_flight).to_string();
        let config = ClientConfig {
            request_timeout: Duration::from_secs(10),
            ..ClientConfig::new(address.clone())
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let connection = Arc::new(Connection::open(&address, &config).await.unwrap());
            let calls: Vec<_> = (0..in_flight)
                .map(|_| {
                    let connection = connection.clone();
                    tokio::spawn(async move {
                        let request = MetadataRequest { topics: None };
                        connection.call(&request, "metadata", None).await
                    })
                })
                .collect();
            let mut names = Vec::new();
            for call in calls {
                let response = call.await.unwrap().expect("answered, not timed out");
                names.push(response.topics[0].name.clone());
            }
            names.sort();
            names.dedup();
            assert_eq!(names.len(), in_flight, "every request got its own answer");
        });
    }

    /// A broker stand-in from before versioned APIs: it lists every API at version 0 only,
    /// and answers nothing else.
    fn version_0_broker() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buffer = BytesMut::new();
            let mut chunk = [0u8; 4096];
            loop {
                while let Some(frame) = split_request_frame(&mut buffer).unwrap() {
                    if frame.api_key != ApiKey::ApiVersions as u16 {
                        continue;
                    }
                    let response = ApiVersionsResponse {
                        error_code: ErrorCode::None,
                        broker_versions: SUPPORTED_API_VERSIONS
                            .iter()
                            .map(|range| ApiVersionRange {
                                max_version: 0,
                                ..*range
                            })
                            .collect(),
                    };
                    let mut out = BytesMut::new();
                    encode_response(&mut out, frame.correlation_id, 0, &response).unwrap();
                    stream.write_all(&out).unwrap();
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(count) => buffer.extend_from_slice(&chunk[..count]),
                }
            }
        });
        address
    }

    #[test]
    fn a_read_committed_fetch_is_refused_by_a_broker_that_only_speaks_fetch_version_0() {
        use spate_protocol::api::{FetchRequest, IsolationLevel};
        let address = version_0_broker().to_string();
        let config = ClientConfig::new(address.clone());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let connection = Connection::open(&address, &config).await.unwrap();
            let uncommitted = FetchRequest::default();
            assert_eq!(connection.version_for(&uncommitted).unwrap(), 0);
            let committed = FetchRequest {
                isolation_level: IsolationLevel::ReadCommitted,
                ..FetchRequest::default()
            };
            let refused = connection
                .call(&committed, "fetch", None)
                .await
                .expect_err("sent at version 0 it would read uncommitted");
            assert!(matches!(
                refused,
                Error::UnsupportedVersion { api: ApiKey::Fetch }
            ));
        });
    }

    #[test]
    fn a_session_is_renewed_between_85_and_95_percent_of_its_lifetime() {
        let lifetime = Duration::from_millis(2000);
        assert_eq!(
            reauthentication_delay(lifetime, 0.0),
            Duration::from_millis(1700)
        );
        assert_eq!(
            reauthentication_delay(lifetime, 0.5),
            Duration::from_millis(1800)
        );
        let latest = reauthentication_delay(lifetime, 0.999_999);
        assert!(latest < Duration::from_millis(1900), "{latest:?}");
        assert!(latest > Duration::from_millis(1899), "{latest:?}");
    }

    #[test]
    #[should_panic(expected = "outside [0, 1)")]
    fn a_jitter_outside_its_range_is_a_bug() {
        reauthentication_delay(Duration::from_secs(1), 1.0);
    }

    #[test]
    fn a_session_is_due_from_its_renewal_time_and_never_without_one() {
        let now = Instant::now();
        let renewed = Session {
            reauthenticate_at: Some(now + Duration::from_millis(10)),
        };
        assert!(!renewed.is_due(now));
        assert!(renewed.is_due(now + Duration::from_millis(10)));
        let forever = Session {
            reauthenticate_at: None,
        };
        assert!(!forever.is_due(now + Duration::from_secs(3600)));
    }

    #[test]
    fn advance_drops_whole_chunks_and_trims_the_partial_one() {
        let mut chunks: VecDeque<Bytes> = [
            Bytes::from_static(b"abc"),
            Bytes::from_static(b"defg"),
            Bytes::from_static(b"h"),
        ]
        .into_iter()
        .collect();
        advance(&mut chunks, 5);
        assert_eq!(chunks.len(), 2);
        assert_eq!(&chunks[0][..], b"fg");
        advance(&mut chunks, 3);
        assert!(chunks.is_empty());
    }

    #[test]
    fn the_buffer_grows_to_hold_a_large_frame_at_once() {
        let mut buffer = BytesMut::new();
        buffer.extend_from_slice(&(1_000_000u32).to_le_bytes());
        reserve_for_next_frame(&mut buffer);
        assert!(buffer.capacity() >= 1_000_004);
    }
}
