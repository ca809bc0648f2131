//! One client connection: read frames, run many requests at once, write the responses in request
//! order, and bound the memory it holds.
//!
//! Two tasks share the socket (one descriptor; each task borrows the stream only while polling
//! it): the reader decodes frames and spawns one task per request, queueing the task handles in
//! arrival order; the writer awaits them in that order and writes each response. Ordering
//! therefore costs nothing but waiting for the oldest request.
//!
//! Memory, as bytes arrive. An idle connection holds no read buffer: it waits with a small read
//! into the task's own memory, and takes a buffer only once bytes arrived. Every byte read is held
//! from budgets before it is read, never because a length prefix declared it:
//! - the first `read_chunk_bytes` of any frame (and whole frames that size or smaller) come from
//!   the connection's budget, its share of the shard's arrival budget
//!   (`connection_arrival_bytes_max`) and the shard's arrival budget (`shard_arrival_bytes_max`);
//! - once a frame's first chunk has arrived, the rest of it is held in one step from the
//!   connection's budget and the shard's large budget (`shard_inflight_bytes_max`), and read into
//!   a buffer of its own whose pages fill as bytes arrive (at most one `LARGE_READ_BYTES_MAX` step
//!   ahead of them).
//!
//! A complete small frame moves to the large budget when it has room, so the arrival budget stays
//! free for frames still arriving. Holders of the large budget never wait for the arrival budget,
//! so the two cannot deadlock; clients that declare large frames and stall hold at most one chunk
//! each of the arrival budget, and lose the connection after `frame_read_timeout_ms` of waiting
//! on the socket. Held bytes ride with the request until its response is written. A spent budget
//! stops the reader, the socket buffer fills, and TCP slows the peer.
//!
//! Bounds: at most `connection_inflight_requests_max` requests are in flight; a connection with
//! nothing in flight and nothing arriving for `connections_max_idle_ms` is closed.
//!
//! Answers, for clients that do not read them. A response counts from the moment it is built
//! until it is written: its bytes beyond what its request already holds (a fetch holds its
//! allowance; a metadata answer is larger than its request) are charged to the connection's and
//! the shard's budgets, and all of them to the connection's unsent bytes. While those exceed
//! `connection_unsent_response_bytes_max` the reader takes no next request (as Kafka mutes a
//! channel whose response is unsent), so a client that pipelines requests and never reads holds
//! at most that bound plus the requests already running. A socket that accepts no byte of a
//! pending response for `response_write_timeout_ms` closes the connection, which returns all of
//! it; a warning says so at most every few seconds per shard.
//!
//! TLS: on a listener with certificates, the accepted socket first completes a handshake within
//! `tls_handshake_timeout_ms` (a failure is logged at debug level and closes it), then reader and
//! writer share the TLS session exactly as they share a plaintext socket (`tls::ConnectionStream`).
//! The dialect is made once the handshake is done, from a [`ConnectionPeer`] that carries the
//! verified client certificate's principal on a mutual-TLS listener.
//!
//! The protocol itself (frame sizes, headers, decoding, what is answered to bad input) is a
//! [`Dialect`]; the native one is `handlers::Native`, Kafka's `kafka::Kafka`.
//!
//! Bad input (native dialect): a frame whose header parses but whose body does not gets an error response and the
//! connection goes on; a frame too large, or whose header cannot be parsed, gets an error response
//! when its correlation id is known and the connection is closed after the responses already
//! queued are written. No input can make this code panic or allocate beyond the frame limit.

use std::cell::RefCell;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::sync::{Semaphore, StaticPermit};
use glommio::Task;
use spate_protocol::constants::FRAME_LENGTH_BYTES;

use super::admission::LogThrottle;
use super::handlers::Rejection;
use super::startup::tune_connection;
use crate::config::Limits;
use crate::services::Services;
use crate::shard::budget::{charge, hold, try_hold, ByteBudget, HeldBytes};
use crate::shard::Shard;
use crate::tls::{ConnectionStream, ListenerCertificates};

/// A wire protocol served by this connection loop: how its frames are delimited and refused,
/// decoded into requests and run. The loop itself (budgets, ordering, timeouts, backpressure)
/// is the same for every protocol; the native protocol (`handlers::Native`) and Kafka's
/// (`kafka::Kafka`) each implement this once per connection.
///
/// Both protocols put a 4-byte length before each frame (`FRAME_LENGTH_BYTES`); only its byte
/// order and what follows differ.
pub trait Dialect: Sized + 'static {
    /// A frame split off the read buffer, not yet decoded.
    type Frame;
    /// A decoded request, ready to run.
    type Request;
    /// Bytes after the length prefix a frame refused for its size must have before it is
    /// answered (its header, so the answer can name the request); 0: refused without an answer.
    const HEADER_BYTES_MIN: usize;
    /// The protocol, as the metrics label requests and connections.
    const PROTOCOL: spate_metrics::Protocol;

    /// The API key a split frame names, read before it is decoded (so refused requests are
    /// counted under their API too); -1 when the frame is too short to name one.
    fn api_key(frame: &Self::Frame) -> i16;

    /// The length prefix at the front of `buffer`, once its bytes arrived.
    fn frame_bytes(buffer: &[u8]) -> Option<usize>;

    /// The answer to a frame larger than `limit` at the front of `buffer`, if one can be built;
    /// the connection closes after it.
    fn refuse_oversized(
        &self,
        buffer: &[u8],
        frame_bytes: usize,
        limit: usize,
    ) -> Option<Vec<Bytes>>;

    /// Splits the complete frame at the front of `buffer` off it. `Err`: the frame cannot be
    /// read (the answer, if any, is sent and the connection closes).
    fn split(&self, buffer: &mut BytesMut) -> Result<Self::Frame, Option<Vec<Bytes>>>;

    /// Decodes a frame into a request, or says how to refuse it.
    fn decode(&self, frame: Self::Frame) -> Result<Self::Request, Rejection>;

    /// Budget bytes the request needs beyond its frame (a fetch's response allowance).
    fn response_allowance(&self, request: &Self::Request, limits: &Limits) -> usize;

    /// Lowers the request's response allowance to `bytes` (its share when the shard's large
    /// budget had no room).
    fn limit_response(&self, request: &mut Self::Request, bytes: usize);

    /// Runs the request and says what goes back.
    fn execute(
        self: &Rc<Self>,
        services: Rc<Services>,
        request: Self::Request,
    ) -> impl Future<Output = Reply> + 'static;
}

/// What a request's execution sends back.
pub enum Reply {
    /// These chunks, written in order as one answer.
    Send(Vec<Bytes>),
    /// Nothing (the client asked for no answer).
    Nothing,
    /// Nothing, and the connection closes once the answers before it are written: a client that
    /// asked for no answer learns of a failure this way (Kafka's acks=0 produce).
    Close,
    /// These chunks, and then the connection closes: a failed authentication's answer.
    Last(Vec<Bytes>),
}

impl Reply {
    /// `Send` when there is an answer, `Nothing` otherwise.
    pub fn from_answer(answer: Option<Vec<Bytes>>) -> Reply {
        answer.map_or(Reply::Nothing, Reply::Send)
    }
}

/// Bytes of the first read after a connection had nothing buffered, into the task's own memory:
/// an idle connection holds no buffer, and a small request arriving whole costs only its size.
const FIRST_READ_BYTES: usize = 1024;

/// Largest step a large frame's buffer grows by before bytes are read into it: its pages are
/// zero-filled once per step, at most this far ahead of the bytes that arrived.
const LARGE_READ_BYTES_MAX: usize = 1024 * 1024;

/// A request in flight: the task that produces its answer, and its place among the connection's
/// in-flight requests (`None` for the last answer before a close).
struct InFlight {
    answer: Task<Answer>,
    _slot: Option<StaticPermit>,
}

/// What the writer takes from a finished request: the encoded response (`None`: nothing is sent,
/// acks=none) and every budget byte the request holds, its response's included, until the
/// response is written.
struct Answer {
    reply: Reply,
    _held: HeldBytes,
}

/// What a connection's reader, its answer tasks and its writer share; dies with the connection.
struct Shared {
    /// Bytes of built responses not yet written; capacity `connection_unsent_response_bytes_max`
    /// (charged, so it may be overdrawn: then the reader waits).
    unsent: ByteBudget,
    /// One permit per request in flight.
    slots: Rc<Semaphore>,
    /// Never has permits; closed when the writer gives up on the socket, which stops the reader.
    broken: Semaphore,
}

impl Shared {
    /// Resolves once the writer gave up on the socket.
    async fn broken(&self) {
        // Closing is the only way this wait ends (it has no permits to give).
        let _ = self.broken.acquire(1).await;
    }

    /// Stops the reader wherever it waits: for a slot, for answers to be written, for budget (see
    /// `Reader::stopped`) or on the socket (shut down by the writer).
    fn break_off(&self) {
        self.broken.close();
        self.slots.close();
        self.unsent.close();
    }
}

/// Per-shard log throttles of the connections (one line per interval for a flood of closes).
#[derive(Debug)]
pub struct ConnectionLogs {
    pub write_timeouts: RefCell<LogThrottle>,
}

/// The connection's socket, shared by its reader and writer task. Each borrows it only while
/// polling it, and glommio keeps separate wake-ups for reading and writing, so a read waiting for
/// bytes never blocks a write. The peer connections to other brokers share a socket the same way.
#[derive(Clone)]
pub struct SharedStream(pub Rc<RefCell<TcpStream>>);

impl AsyncRead for SharedStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        target: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_read(context, target)
    }
}

impl AsyncWrite for SharedStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        source: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_write(context, source)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_flush(context)
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0.borrow_mut()).poll_close(context)
    }
}

impl AsRawFd for SharedStream {
    fn as_raw_fd(&self) -> RawFd {
        self.0.borrow().as_raw_fd()
    }
}

/// Who is at the other end of a connection, as far as the transport knows. The dialect is
/// made from it once the connection is open (after the TLS handshake, on a TLS listener).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionPeer {
    pub address: Option<SocketAddr>,
    /// On a mutual-TLS listener, `User:<subject CN>` of the client certificate rustls verified
    /// (the whole subject DN when it has no CN); `None` on other listeners.
    pub tls_principal: Option<String>,
}

/// Serves one accepted connection until the peer closes it, it breaks the protocol beyond
/// repair, it stays idle too long, it does not take its answers, or the broker shuts down.
/// On a TLS listener (`certificates`) the handshake comes first.
pub async fn serve<D: Dialect>(
    shard: Rc<Services>,
    stream: TcpStream,
    certificates: Option<Arc<ListenerCertificates>>,
    logs: Rc<ConnectionLogs>,
    make_dialect: impl FnOnce(&ConnectionPeer) -> D,
) {
    let limits = &shard.config.limits;
    // SAFETY: the descriptor is the open socket owned by `stream`, alive for this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    if let Err(error) = tune_connection(
        socket2::SockRef::from(&borrowed),
        limits.socket_send_buffer_bytes,
        limits.socket_receive_buffer_bytes,
    ) {
        tracing::debug!(shard = shard.id, %error, "could not tune connection socket");
    }
    // glommio's write timeout runs only while a write waits for the socket, and restarts with
    // every byte accepted: an idle connection has no timer.
    let write_timeout = Duration::from_millis(limits.response_write_timeout_ms);
    if let Err(error) = stream.set_write_timeout(Some(write_timeout)) {
        tracing::debug!(shard = shard.id, %error, "could not set the response write timeout");
    }
    let address = stream.peer_addr().ok();
    let handshake_timeout = Duration::from_millis(limits.tls_handshake_timeout_ms);
    let opened = crate::tls::open(
        stream,
        certificates.as_deref(),
        handshake_timeout,
        shard.shutdown.requested(),
    )
    .await;
    let (stream, tls_peer) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            // A plaintext client on a TLS port, an untrusted or missing client certificate, a
            // scanner: the client's doing, so not above debug.
            tracing::debug!(shard = shard.id, peer = ?address, %error, "TLS handshake failed; connection closed");
            return;
        }
    };
    let peer = ConnectionPeer {
        address,
        tls_principal: tls_peer.principal,
    };
    if let Some(principal) = &peer.tls_principal {
        tracing::debug!(shard = shard.id, peer = ?address, principal, "TLS client certificate verified");
    }
    let dialect = make_dialect(&peer);
    spate_metrics::shard(|metrics| metrics.connection_opened(D::PROTOCOL));
    // Unbounded only in type: the reader takes one of `slots` before it queues a request.
    let (queue, queued) = local_channel::new_unbounded();
    let shared = Rc::new(Shared {
        unsent: ByteBudget::new(limits.connection_unsent_response_bytes_max),
        slots: Rc::new(Semaphore::new(
            limits.connection_inflight_requests_max as u64,
        )),
        broken: Semaphore::new(0),
    });
    let writer = glommio::spawn_local(write_responses(
        queued,
        stream.clone(),
        shared.clone(),
        shard.clone(),
        logs,
    ));
    let reader = Reader {
        dialect: Rc::new(dialect),
        budget: ByteBudget::new(limits.connection_inflight_bytes_max),
        arrival_budget: ByteBudget::new(limits.connection_arrival_bytes_max),
        shard,
        stream,
        queue,
        shared,
        buffer: BytesMut::new(),
        held: HeldBytes::default(),
        frame_waited: Duration::ZERO,
    };
    reader.run().await;
    writer.await;
    spate_metrics::shard(|metrics| metrics.connection_closed(D::PROTOCOL));
}

async fn write_responses(
    queued: LocalReceiver<InFlight>,
    mut stream: ConnectionStream,
    shared: Rc<Shared>,
    shard: Rc<Services>,
    logs: Rc<ConnectionLogs>,
) {
    let mut broken = false;
    while let Some(in_flight) = queued.recv().await {
        // Always wait for the task, even after the socket broke: it may be appending data, and
        // its budget bytes must return only when it is done.
        let answer = in_flight.answer.await;
        if broken {
            continue;
        }
        let (chunks, last) = match &answer.reply {
            Reply::Send(chunks) => (chunks, false),
            Reply::Last(chunks) => (chunks, true),
            Reply::Nothing => continue,
            Reply::Close => {
                broken = true;
                shared.break_off();
                shut_down(&stream);
                continue;
            }
        };
        if let Err(error) = stream.write_chunks(chunks).await {
            log_write_failure(&shard, &stream, &logs, &error);
            broken = true;
            // Stop the reader now, and let the peer see the close now, not once every request
            // in flight has finished.
            shared.break_off();
            shut_down(&stream);
        } else if last {
            broken = true;
            shared.break_off();
            shut_down(&stream);
        }
    }
    shut_down(&stream);
}

fn log_write_failure(
    shard: &Services,
    stream: &ConnectionStream,
    logs: &ConnectionLogs,
    error: &io::Error,
) {
    if error.kind() != io::ErrorKind::TimedOut {
        tracing::debug!(%error, "connection write failed; dropping further responses");
        return;
    }
    let Some(suppressed) = logs.write_timeouts.borrow_mut().due(Instant::now()) else {
        return;
    };
    let peer = stream.peer_addr();
    tracing::warn!(
        shard = shard.id,
        peer = ?peer,
        timeout_ms = shard.config.limits.response_write_timeout_ms,
        suppressed,
        "closing a connection whose socket accepted no byte of a response for \
         response_write_timeout_ms (a client that does not read its answers)"
    );
}

fn shut_down(stream: &ConnectionStream) {
    stream.shut_down();
}

/// What the reader does after looking at the front of its buffer.
enum Next {
    /// Keep reading: no complete frame yet.
    NeedMore,
    /// A request was queued; look again.
    Queued,
    /// Stop reading: the peer broke framing, the writer is gone, or shutdown started.
    Stop,
}

/// How a wait on the socket ended.
enum Waited {
    Read(io::Result<usize>),
    Shutdown,
    TimedOut,
}

/// The reading half of a connection; owned by the connection's task.
struct Reader<D: Dialect> {
    /// The connection's protocol (and what it knows of the connection).
    dialect: Rc<D>,
    shard: Rc<Services>,
    stream: ConnectionStream,
    /// Everything this connection holds: frames, and fetches' response allowances.
    budget: ByteBudget,
    /// This connection's share of the shard's arrival budget.
    arrival_budget: ByteBudget,
    queue: LocalSender<InFlight>,
    shared: Rc<Shared>,
    /// Bytes read and not yet taken by a request; empty (no memory) between bursts.
    buffer: BytesMut,
    /// Budget bytes covering `buffer` (at least its length).
    held: HeldBytes,
    /// Time spent waiting on the socket for the frame at the front of `buffer`.
    frame_waited: Duration,
}

impl<D: Dialect> Reader<D> {
    async fn run(mut self) {
        loop {
            loop {
                match self.next_frame().await {
                    Next::Queued => continue,
                    Next::NeedMore => break,
                    Next::Stop => return,
                }
            }
            if self.shard.shutdown.is_requested() {
                return;
            }
            let going_on = if self.buffer.is_empty() {
                self.read_first().await
            } else if let Some(total) = self.large_frame_in_progress() {
                self.read_large_frame(total).await
            } else {
                self.read_more().await
            };
            if !going_on {
                return;
            }
        }
    }

    /// The budgets the first chunk of every frame is held from.
    fn arrival_budgets(&self) -> [&ByteBudget; 3] {
        [
            &self.budget,
            &self.arrival_budget,
            &self.shard.arrival_budget,
        ]
    }

    /// Holds `bytes` from `budgets`, unless shutdown comes first or the writer gives up.
    async fn hold_or_stop(&self, budgets: &[&ByteBudget], bytes: usize) -> Option<HeldBytes> {
        future::or(hold(budgets, bytes), async {
            stopped(&self.shard, &self.shared).await;
            None
        })
        .await
    }

    /// Runs `response` in a task of its own. Once built, the response counts as unsent and, for
    /// its bytes beyond what the request already holds, against the connection's and the shard's
    /// budgets, until it is written.
    fn spawn_answer(
        &self,
        mut held: HeldBytes,
        response: impl Future<Output = Reply> + 'static,
    ) -> Task<Answer> {
        let unsent = self.shared.unsent.clone();
        let connection = self.budget.clone();
        let shard = self.shard.budget.clone();
        glommio::spawn_local(async move {
            let reply = response.await;
            if let Reply::Send(chunks) | Reply::Last(chunks) = &reply {
                let bytes: usize = chunks.iter().map(Bytes::len).sum();
                let beyond = bytes.saturating_sub(held.bytes());
                held.absorb(charge(&[&unsent], bytes));
                if beyond > 0 {
                    held.absorb(charge(&[&connection, &shard], beyond));
                }
            }
            Answer { reply, _held: held }
        })
    }

    /// Waits, without a buffer, for the first bytes after the connection had none buffered; then
    /// holds them and puts them in a buffer of their size.
    async fn read_first(&mut self) -> bool {
        // Nothing buffered: give the memory and its budget back while the connection waits.
        self.buffer = BytesMut::new();
        self.held.release_beyond(0);
        let mut first = [0u8; FIRST_READ_BYTES];
        let limit = FIRST_READ_BYTES.min(self.shard.config.limits.read_chunk_bytes);
        let Some(count) = self.read_when_idle(&mut first[..limit]).await else {
            return false;
        };
        let Some(held) = self.hold_or_stop(&self.arrival_budgets(), count).await else {
            return false;
        };
        self.held = held;
        self.buffer = BytesMut::from(&first[..count]);
        self.frame_waited = Duration::ZERO;
        true
    }

    /// One read while nothing is buffered, closing the connection when it has been idle (nothing
    /// in flight either) for `connections_max_idle_ms`. `None`: stop reading.
    async fn read_when_idle(&mut self, target: &mut [u8]) -> Option<usize> {
        let idle_ms = self.shard.config.limits.connections_max_idle_ms;
        loop {
            match read_or_stop(
                &self.shard,
                &self.shared,
                &mut self.stream,
                target,
                Duration::from_millis(idle_ms),
            )
            .await
            {
                Waited::Read(Ok(count)) if count > 0 => return Some(count),
                Waited::Read(_) | Waited::Shutdown => return None,
                Waited::TimedOut if self.nothing_in_flight() => {
                    tracing::debug!(
                        shard = self.shard.id,
                        idle_ms,
                        "closing a connection idle for connections_max_idle_ms"
                    );
                    return None;
                }
                // Quiet, but a long poll is still running: not idle.
                Waited::TimedOut => continue,
            }
        }
    }

    fn nothing_in_flight(&self) -> bool {
        self.shared.slots.available() as usize
            == self.shard.config.limits.connection_inflight_requests_max
    }

    /// Reads more of a frame into the shared buffer, up to one read chunk in all.
    async fn read_more(&mut self) -> bool {
        let filled = self.buffer.len();
        let chunk_bytes = self.shard.config.limits.read_chunk_bytes;
        debug_assert!(
            filled < chunk_bytes,
            "a frame of a chunk or more reads alone"
        );
        let wanted = chunk_bytes - filled;
        let missing = (filled + wanted).saturating_sub(self.held.bytes());
        if missing > 0 {
            let Some(more) = self.hold_or_stop(&self.arrival_budgets(), missing).await else {
                return false;
            };
            self.held.absorb(more);
        }
        self.buffer.resize(filled + wanted, 0);
        let count = read_partial(
            &self.shard,
            &self.shared,
            &mut self.stream,
            &mut self.buffer[filled..],
            &mut self.frame_waited,
        )
        .await;
        let Some(count) = count else {
            return false;
        };
        self.buffer.truncate(filled + count);
        self.held.release_beyond(self.buffer.len());
        true
    }

    /// The total size of the frame at the front of the buffer if its first read chunk has
    /// arrived and the rest has not.
    fn large_frame_in_progress(&self) -> Option<usize> {
        let frame_bytes = D::frame_bytes(&self.buffer)?;
        if frame_bytes > self.shard.config.limits.frame_bytes_max {
            return None; // Refused by `next_frame` once its header is here.
        }
        let total = FRAME_LENGTH_BYTES + frame_bytes;
        let chunk_bytes = self.shard.config.limits.read_chunk_bytes;
        (self.buffer.len() >= chunk_bytes && self.buffer.len() < total).then_some(total)
    }

    /// Reads the rest of a frame whose first chunk has arrived into a buffer of its own (the
    /// chunk is copied over): no later frame shares its memory, so produce can take its batches
    /// without copying. The rest is held from the shard's large budget first.
    async fn read_large_frame(&mut self, total: usize) -> bool {
        let arrived = self.buffer.len();
        let large = [&self.budget, &self.shard.budget];
        let Some(rest) = self.hold_or_stop(&large, total - arrived).await else {
            return false;
        };
        let mut frame_held = self.held.split_off(arrived);
        self.held.release_beyond(0);
        frame_held.absorb(rest);
        // Address space for the whole frame (held from the budget above); its pages are touched,
        // and so become memory, only step by step as bytes arrive.
        let mut frame = Vec::with_capacity(total);
        frame.extend_from_slice(&self.buffer);
        self.buffer = BytesMut::new();
        let mut filled = arrived;
        while filled < total {
            let step_end = total.min(filled + LARGE_READ_BYTES_MAX);
            // Zero-fill each step once: a read usually returns far less than it is offered, and
            // zero-filling its target before every read cost more than the reads themselves.
            frame.resize(step_end, 0);
            while filled < step_end {
                let count = read_partial(
                    &self.shard,
                    &self.shared,
                    &mut self.stream,
                    &mut frame[filled..step_end],
                    &mut self.frame_waited,
                )
                .await;
                match count {
                    Some(count) => filled += count,
                    None => return false,
                }
            }
        }
        // Without copying: `frame` is full (length == capacity), which `Bytes` takes as it is.
        self.buffer = BytesMut::from(Bytes::from(frame));
        self.held = frame_held;
        true
    }

    async fn next_frame(&mut self) -> Next {
        let limits = &self.shard.config.limits;
        let Some(frame_bytes) = D::frame_bytes(&self.buffer) else {
            return Next::NeedMore;
        };
        if frame_bytes > limits.frame_bytes_max {
            if self.buffer.len() < FRAME_LENGTH_BYTES + D::HEADER_BYTES_MIN {
                // Wait for the header so the error can carry the correlation id (one short read).
                return Next::NeedMore;
            }
            tracing::debug!(
                shard = self.shard.id,
                frame_bytes,
                limit = limits.frame_bytes_max,
                "closing a connection that sent a frame larger than frame_bytes_max"
            );
            let answer =
                self.dialect
                    .refuse_oversized(&self.buffer, frame_bytes, limits.frame_bytes_max);
            self.queue_last_answer(answer).await;
            return Next::Stop;
        }
        let total = FRAME_LENGTH_BYTES + frame_bytes;
        if self.buffer.len() < total {
            return Next::NeedMore;
        }
        let frame = match self.dialect.split(&mut self.buffer) {
            Ok(frame) => frame,
            Err(answer) => {
                self.queue_last_answer(answer).await;
                return Next::Stop;
            }
        };
        let mut held = self.held.split_off(total);
        self.frame_waited = Duration::ZERO;
        if self.buffer.is_empty() {
            // The buffer's empty remainder still shares the frame's memory; let it go so the frame
            // owns its memory alone and produce can take its batches without copying.
            drop(std::mem::take(&mut self.buffer));
            self.held.release_beyond(0);
        }
        if total <= limits.read_chunk_bytes {
            // A whole small frame: leave the arrival budgets to frames still arriving when the
            // large budget has room for it.
            if let Some(large) = try_hold(&[&self.shard.budget], total) {
                held.exchange(&[&self.arrival_budget, &self.shard.arrival_budget], large);
            }
        }
        // Kafka mutes a channel whose response is unsent: no next request while this
        // connection's built responses wait beyond their bound for a client that does not read.
        if !self.unsent_within_bound().await {
            return Next::Stop;
        }
        let Ok(slot) = self.shared.slots.acquire_static_permit(1).await else {
            return Next::Stop;
        };
        let api_key = D::api_key(&frame);
        let (answer, close) = match self.dialect.decode(frame) {
            Ok(mut request) => {
                match self.hold_allowance(&mut request).await {
                    Some(allowance) => held.absorb(allowance),
                    None => return Next::Stop,
                }
                let shard = self.shard.clone();
                let execution = self.dialect.execute(shard, request);
                let started = spate_metrics::enabled().then(Instant::now);
                let measured = async move {
                    let reply = execution.await;
                    if let Some(started) = started {
                        spate_metrics::shard(|metrics| {
                            let api = metrics.api(D::PROTOCOL, api_key);
                            api.answered.increment();
                            api.latency.observe(started.elapsed());
                        });
                    }
                    reply
                };
                (self.spawn_answer(held, measured), false)
            }
            Err(rejection) => {
                spate_metrics::shard(|metrics| {
                    metrics.api(D::PROTOCOL, api_key).refused.increment()
                });
                let reply = Reply::from_answer(rejection.answer);
                (
                    self.spawn_answer(held, async move { reply }),
                    rejection.close,
                )
            }
        };
        let in_flight = InFlight {
            answer,
            _slot: Some(slot),
        };
        if self.queue.send(in_flight).await.is_err() || close {
            return Next::Stop;
        }
        // Let the request's task, and the shard's other connections, run before the next request
        // of a pipelined burst is taken: an answer built at once then counts as unsent before the
        // reader looks at the bound again, instead of after the whole burst was taken.
        future::yield_now().await;
        Next::Queued
    }
}

impl<D: Dialect> Reader<D> {
    /// Waits while the connection's unsent responses exceed their bound; `false`: stop reading
    /// (shutdown, or the writer gave up).
    async fn unsent_within_bound(&self) -> bool {
        future::or(self.shared.unsent.within_capacity(), async {
            stopped(&self.shard, &self.shared).await;
            false
        })
        .await
    }

    /// Queues the last answer before the connection closes, if there is one.
    async fn queue_last_answer(&self, answer: Option<Vec<Bytes>>) {
        let Some(answer) = answer else {
            return;
        };
        let reply = Reply::Send(answer);
        let _ = self
            .queue
            .send(InFlight {
                answer: self.spawn_answer(HeldBytes::default(), async move { reply }),
                _slot: None,
            })
            .await;
    }

    /// Holds a fetch's response allowance from the large budget. When the shard's has no room now
    /// (other connections' frames fill it), the fetch is answered with at most one read chunk of
    /// records, held from the arrival budgets, instead of waiting: consumers stay served while
    /// large frames hold the large budget. `None`: shutdown.
    async fn hold_allowance(&self, request: &mut D::Request) -> Option<HeldBytes> {
        let limits = &self.shard.config.limits;
        let allowance = self.dialect.response_allowance(request, limits);
        if allowance == 0 {
            return Some(HeldBytes::default());
        }
        let large = [&self.budget, &self.shard.budget];
        if let Some(held) = try_hold(&large, allowance) {
            return Some(held);
        }
        if self.budget.available_bytes() < allowance.min(self.budget.capacity_bytes()) {
            // This connection's own requests hold its budget (a consumer fetching ahead): wait
            // for their answers, as for any backpressure.
            return self.hold_or_stop(&large, allowance).await;
        }
        let smaller = allowance.min(limits.read_chunk_bytes);
        if let Some(held) = try_hold(&self.arrival_budgets(), smaller) {
            self.dialect.limit_response(request, smaller);
            return Some(held);
        }
        self.hold_or_stop(&large, allowance).await
    }
}

/// Resolves when the reader must stop: shutdown, or the writer gave up on the socket.
async fn stopped(shard: &Shard, shared: &Shared) {
    future::or(shard.shutdown.requested(), shared.broken()).await
}

/// One read, racing shutdown, the writer giving up, and a timeout.
async fn read_or_stop(
    shard: &Shard,
    shared: &Shared,
    stream: &mut ConnectionStream,
    target: &mut [u8],
    timeout: Duration,
) -> Waited {
    future::or(
        future::or(async { Waited::Read(stream.read(target).await) }, async {
            stopped(shard, shared).await;
            Waited::Shutdown
        }),
        async {
            glommio::timer::sleep(timeout).await;
            Waited::TimedOut
        },
    )
    .await
}

/// One read of a frame that has begun; `None` on EOF, a socket error, shutdown, or when the
/// frame has waited on the socket for `frame_read_timeout_ms` in all (`waited` adds up each
/// wait).
async fn read_partial(
    shard: &Services,
    shared: &Shared,
    stream: &mut ConnectionStream,
    target: &mut [u8],
    waited: &mut Duration,
) -> Option<usize> {
    let timeout_ms = shard.config.limits.frame_read_timeout_ms;
    let remaining = Duration::from_millis(timeout_ms).saturating_sub(*waited);
    let started = Instant::now();
    let outcome = read_or_stop(shard, shared, stream, target, remaining).await;
    *waited += started.elapsed();
    match outcome {
        Waited::Read(Ok(count)) if count > 0 => Some(count),
        Waited::TimedOut => {
            tracing::debug!(
                shard = shard.id,
                timeout_ms,
                "closing a connection whose frame did not arrive within frame_read_timeout_ms"
            );
            None
        }
        // EOF, an error, or shutdown: stop reading; queued requests still get answers.
        Waited::Read(_) | Waited::Shutdown => None,
    }
}
