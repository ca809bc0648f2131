//! One client connection: read frames, run many requests at once, write the responses in request
//! order, and bound the memory it holds.
//!
//! Two tasks share the socket (the descriptor is duplicated so each owns a glommio stream): the
//! reader decodes frames and spawns one task per request, queueing the task handles in arrival
//! order; the writer awaits them in that order and writes each response. Ordering therefore
//! costs nothing but waiting for the oldest request.
//!
//! Bounds: the queue holds at most `connection_inflight_requests_max` requests; every frame's
//! bytes (and a fetch's response allowance) are held from the connection's budget and the shard's
//! before the reader goes on, and are released only when the response has been written. A spent
//! budget stops the reader, the socket buffer fills, and TCP slows the peer. A slow consumer
//! therefore holds at most its own budget and never stalls other connections.
//!
//! Bad input: a frame whose header parses but whose body does not gets an error response and the
//! connection goes on; a frame too large, or whose header cannot be parsed, gets an error response
//! when its correlation id is known and the connection is closed after the responses already
//! queued are written. No input can make this code panic or allocate beyond the frame limit.

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::{future, AsyncReadExt};
use glommio::channels::local_channel::{self, LocalReceiver, LocalSender};
use glommio::net::TcpStream;
use glommio::Task;
use spate_protocol::api::ApiKey;
use spate_protocol::constants::FRAME_LENGTH_BYTES;
use spate_protocol::error::{ErrorCode, WireError};
use spate_protocol::frame::{split_request_frame, REQUEST_HEADER_BYTES_MIN};

use super::handlers;
use super::startup::tune_connection;
use super::write::write_chunks;
use crate::shard::budget::{ByteBudget, HeldBytes};
use crate::shard::Shard;

/// A request in flight: the task that produces its response (`None`: no response, acks=none)
/// and the budget bytes it holds until that response is written.
struct InFlight {
    response: Task<Option<Vec<Bytes>>>,
    _held: HeldBytes,
}

/// Serves one accepted connection until the peer closes it, it breaks the protocol beyond
/// repair, or the broker shuts down.
pub async fn serve(shard: Rc<Shard>, stream: TcpStream) {
    let limits = &shard.config.limits;
    let fd = stream.as_raw_fd();
    // SAFETY: `fd` is the open socket owned by `stream`, alive for this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    if let Err(error) = tune_connection(
        socket2::SockRef::from(&borrowed),
        limits.socket_send_buffer_bytes,
        limits.socket_receive_buffer_bytes,
    ) {
        tracing::debug!(shard = shard.id, %error, "could not tune connection socket");
    }
    // SAFETY: dup returns a new descriptor for the same socket (or -1, checked), owned below.
    let writer_fd = unsafe { libc::dup(fd) };
    if writer_fd < 0 {
        tracing::warn!(shard = shard.id, error = %std::io::Error::last_os_error(), "dup of connection socket failed");
        return;
    }
    // SAFETY: `writer_fd` is a fresh descriptor nobody else owns.
    let writer_stream = unsafe { TcpStream::from_raw_fd(writer_fd) };

    let budget = ByteBudget::new(limits.connection_inflight_bytes_max);
    let (queue, queued) = local_channel::new_bounded(limits.connection_inflight_requests_max);
    let writer = glommio::spawn_local(write_responses(queued, writer_stream));
    read_requests(&shard, stream, &budget, queue).await;
    writer.await;
}

async fn write_responses(queued: LocalReceiver<InFlight>, mut stream: TcpStream) {
    let mut broken = false;
    while let Some(in_flight) = queued.recv().await {
        // Always wait for the task, even after the socket broke: it may be appending data, and
        // its budget bytes must return only when it is done.
        let response = in_flight.response.await;
        if broken {
            continue;
        }
        if let Some(chunks) = response {
            if let Err(error) = write_chunks(&mut stream, &chunks).await {
                tracing::debug!(%error, "connection write failed; dropping further responses");
                broken = true;
            }
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both).await;
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

async fn read_requests(
    shard: &Rc<Shard>,
    mut stream: TcpStream,
    budget: &ByteBudget,
    queue: LocalSender<InFlight>,
) {
    let chunk_bytes = shard.config.limits.read_chunk_bytes;
    let mut buffer = BytesMut::with_capacity(chunk_bytes);
    // Budget held for the frame whose length prefix has arrived but whose bytes have not.
    let mut held_for_frame: Option<HeldBytes> = None;
    loop {
        loop {
            match next_frame(shard, &mut buffer, budget, &mut held_for_frame, &queue).await {
                Next::Queued => continue,
                Next::NeedMore => break,
                Next::Stop => return,
            }
        }
        if shard.shutdown.is_requested() {
            return;
        }
        if let Some(total) = large_frame_in_progress(&buffer, held_for_frame.is_some()) {
            // Read the rest of a large frame straight into a buffer of its own (the bytes already
            // read, at most one chunk, are copied over): no later frame shares its memory.
            let mut frame = BytesMut::with_capacity(total);
            frame.extend_from_slice(&buffer);
            buffer.clear();
            let mut filled = frame.len();
            // Zero-fill the frame once: a read usually returns far less than it is offered, and
            // zero-filling its target before every read cost more than the reads themselves.
            // The frame's bytes are already held from the budget.
            frame.resize(total, 0);
            while filled < total {
                match read_or_shutdown(shard, &mut stream, &mut frame[filled..]).await {
                    Some(count) => filled += count,
                    None => return,
                }
            }
            match next_frame(shard, &mut frame, budget, &mut held_for_frame, &queue).await {
                Next::Queued | Next::NeedMore => continue,
                Next::Stop => return,
            }
        }
        let filled = buffer.len();
        buffer.resize(filled + read_size(&buffer, chunk_bytes), 0);
        match read_or_shutdown(shard, &mut stream, &mut buffer[filled..]).await {
            Some(count) => buffer.truncate(filled + count),
            // EOF, an error, or shutdown: stop reading; queued requests still get answers.
            None => return,
        }
    }
}

/// One read; `None` on EOF, a socket error, or shutdown.
async fn read_or_shutdown(
    shard: &Shard,
    stream: &mut TcpStream,
    target: &mut [u8],
) -> Option<usize> {
    let read = future::or(async { Some(stream.read(target).await) }, async {
        shard.shutdown.requested().await;
        None
    })
    .await;
    match read {
        Some(Ok(count)) if count > 0 => Some(count),
        _ => None,
    }
}

/// Frames at least this large are read into a buffer of their own.
const LARGE_FRAME_BYTES: usize = 256 * 1024;

/// The total size of the frame at the front of `buffer` if it is large, admitted (its bytes are
/// held from the budget) and not complete yet.
fn large_frame_in_progress(buffer: &[u8], admitted: bool) -> Option<usize> {
    let total = FRAME_LENGTH_BYTES + peek_frame_bytes(buffer)?;
    (admitted && total >= LARGE_FRAME_BYTES && buffer.len() < total).then_some(total)
}

async fn next_frame(
    shard: &Rc<Shard>,
    buffer: &mut BytesMut,
    budget: &ByteBudget,
    held_for_frame: &mut Option<HeldBytes>,
    queue: &LocalSender<InFlight>,
) -> Next {
    let limits = &shard.config.limits;
    let Some(frame_bytes) = peek_frame_bytes(buffer) else {
        return Next::NeedMore;
    };
    if frame_bytes > limits.frame_bytes_max {
        if buffer.len() < FRAME_LENGTH_BYTES + REQUEST_HEADER_BYTES_MIN {
            // Wait for the header so the error can carry the correlation id (one short read).
            return Next::NeedMore;
        }
        let error = WireError::FrameTooLarge {
            frame_bytes,
            limit: limits.frame_bytes_max,
            api_key: peek_u16(buffer, FRAME_LENGTH_BYTES),
            correlation_id: peek_u32(buffer, FRAME_LENGTH_BYTES + 4),
        };
        reject_and_stop(shard, buffer, &error, queue).await;
        return Next::Stop;
    }
    if held_for_frame.is_none() {
        // Hold the whole frame's bytes before reading them: this is the backpressure point.
        match budget
            .hold(&shard.budget, FRAME_LENGTH_BYTES + frame_bytes)
            .await
        {
            Some(held) => *held_for_frame = Some(held),
            None => return Next::Stop,
        }
    }
    let frame = match split_request_frame(buffer) {
        Ok(Some(frame)) => frame,
        Ok(None) => return Next::NeedMore,
        Err(error) => {
            reject_and_stop(shard, buffer, &error, queue).await;
            return Next::Stop;
        }
    };
    if buffer.is_empty() {
        // The buffer's empty remainder still shares the frame's memory; let it go so the frame
        // owns its memory alone and produce can take its batches without copying.
        drop(std::mem::take(buffer));
    }
    let mut held = held_for_frame.take().unwrap_or_default();
    let (response, close) = match handlers::decode(frame) {
        Ok(request) => {
            let allowance = handlers::response_allowance(&request, limits);
            if allowance > 0 {
                match budget.hold(&shard.budget, allowance).await {
                    Some(more) => held.absorb(more),
                    None => return Next::Stop,
                }
            }
            (
                glommio::spawn_local(handlers::execute(shard.clone(), request)),
                false,
            )
        }
        Err(rejection) => {
            let answer = rejection.answer;
            (glommio::spawn_local(async move { answer }), rejection.close)
        }
    };
    let in_flight = InFlight {
        response,
        _held: held,
    };
    if queue.send(in_flight).await.is_err() || close {
        return Next::Stop;
    }
    Next::Queued
}

/// Queues an error response when the frame's correlation id is readable, then stops reading.
async fn reject_and_stop(
    shard: &Rc<Shard>,
    buffer: &BytesMut,
    error: &WireError,
    queue: &LocalSender<InFlight>,
) {
    let correlation_id = match error {
        WireError::FrameTooLarge { correlation_id, .. } => *correlation_id,
        _ if buffer.len() >= FRAME_LENGTH_BYTES + REQUEST_HEADER_BYTES_MIN => {
            peek_u32(buffer, FRAME_LENGTH_BYTES + 4)
        }
        _ => None,
    };
    tracing::debug!(shard = shard.id, %error, ?correlation_id, "closing connection after an unreadable frame");
    let Some(correlation_id) = correlation_id else {
        return;
    };
    // An unknown api key has no response layout to carry the error: close without one.
    let Some(api_key) = peek_u16(buffer, FRAME_LENGTH_BYTES).and_then(ApiKey::from_u16) else {
        return;
    };
    let answer = handlers::reject(api_key, correlation_id, ErrorCode::for_wire_error(error)).answer;
    let _ = queue
        .send(InFlight {
            response: glommio::spawn_local(async move { answer }),
            _held: HeldBytes::default(),
        })
        .await;
}

/// Bytes to ask for in the next read: a normal chunk, or more while a large frame is arriving
/// (its bytes are already held from the budget), up to `LARGE_READ_BYTES_MAX`.
fn read_size(buffer: &[u8], chunk_bytes: usize) -> usize {
    let frame_remaining = peek_frame_bytes(buffer)
        .map(|frame_bytes| (FRAME_LENGTH_BYTES + frame_bytes).saturating_sub(buffer.len()))
        .unwrap_or(0);
    frame_remaining.clamp(chunk_bytes, LARGE_READ_BYTES_MAX.max(chunk_bytes))
}

/// Largest single read into the shared buffer; each such read zero-fills its target first.
const LARGE_READ_BYTES_MAX: usize = 1024 * 1024;

fn peek_frame_bytes(buffer: &[u8]) -> Option<usize> {
    peek_u32(buffer, 0).map(|length| length as usize)
}

fn peek_u16(buffer: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(buffer.get(at..at + 2)?.try_into().ok()?))
}

fn peek_u32(buffer: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(buffer.get(at..at + 4)?.try_into().ok()?))
}
