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
//! Memory: an idle connection holds an empty read buffer; a call's request is encoded as chunks
//! that share the caller's byte strings (record batches are not copied), and an answer's byte
//! strings share the one buffer its frame was read into.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::{SocketAddr, ToSocketAddrs};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt};
use glommio::channels::local_channel::{self, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::Semaphore;
use glommio::Task;
use spate_protocol::api::{
    encode_request_chunks, pick_version, ApiKey, ApiVersionRange, ApiVersionsRequest, Message,
    Request, SUPPORTED_API_VERSIONS,
};
use spate_protocol::constants::FRAME_LENGTH_BYTES;
use spate_protocol::error::{ErrorCode, WireError};
use spate_protocol::frame::split_response_frame;
use spate_protocol::NodeId;

use crate::config::Limits;
use crate::connection::SharedStream;
use crate::write::write_chunks;

/// Client id this broker sends on its calls to other brokers (the peer's logs name it).
const PEER_CLIENT_ID: &str = "spate-broker";

/// Bytes asked for in each socket read of answers; a larger frame is read in one more step once
/// its length is known.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// First wait before reconnecting to a broker whose connection failed; it doubles with each
/// further failure up to `peer_reconnect_backoff_ms_max`.
const RECONNECT_BACKOFF_MS_MIN: u64 = 50;

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
    /// Shared by the reader task and the calls that write.
    stream: SharedStream,
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
        // SAFETY: the descriptor is the open socket owned by the shared stream, alive for this
        // borrow.
        let borrowed = unsafe { BorrowedFd::borrow_raw(self.stream.as_raw_fd()) };
        let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
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
    /// Opens a connection to the broker at `address` and negotiates versions, all within
    /// `timeout_ms`.
    pub async fn connect(
        address: SocketAddr,
        limits: &PeerLimits,
        timeout_ms: u64,
    ) -> Result<Rc<PeerConnection>, PeerError> {
        let timed_out = PeerError::ConnectTimedOut {
            address,
            timeout_ms,
        };
        with_timeout(timeout_ms, timed_out, Self::open(address, limits)).await
    }

    async fn open(
        address: SocketAddr,
        limits: &PeerLimits,
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
        let shared = Rc::new(Shared {
            address,
            stream: SharedStream(Rc::new(RefCell::new(stream))),
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
        Ok(Rc::new(connection))
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
            let written = write_chunks(&mut stream, &chunks).await;
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
}

impl PeerPool {
    pub fn new(limits: PeerLimits) -> PeerPool {
        PeerPool {
            limits,
            peers: RefCell::new(HashMap::new()),
        }
    }

    pub fn limits(&self) -> &PeerLimits {
        &self.limits
    }

    /// The working connection to broker `node` at `address`, opened now if there is none (or it
    /// broke, or the broker moved to another address). While a failed broker is in its backoff
    /// this fails at once with [`PeerError::BackingOff`]: it never sleeps, so one loop can serve
    /// several brokers.
    pub async fn get(
        &self,
        node: NodeId,
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
        match PeerConnection::connect(address, &self.limits, self.limits.connect_timeout_ms).await {
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
                tracing::debug!(node, %address, %error, backoff_ms, "connecting to a broker failed");
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
