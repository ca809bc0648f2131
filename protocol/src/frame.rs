//! Length-prefixed frames of the native protocol, and the request header inside them.
//!
//! Request frame (integers little-endian):
//!
//! | size | field                                              |
//! |-----:|----------------------------------------------------|
//! |    4 | `frame_bytes`: length of everything after this field |
//! |    2 | `api_key`                                          |
//! |    2 | `api_version`                                      |
//! |    4 | `correlation_id`                                   |
//! |    2 | `client_id` length, then that many UTF-8 bytes     |
//! |    … | body (layout per api key and version, see `api`)   |
//!
//! Response frame: `frame_bytes` (u32), `correlation_id` (u32), body.
//!
//! Decoders are incremental: given what has arrived so far they answer `Ok(None)` (need more),
//! the frame and the bytes it used, or a [`WireError`]. A frame announcing more than
//! [`FRAME_BYTES_MAX`] fails as soon as its length is visible, carrying that length (and the api
//! key and correlation id when already buffered) so a server can answer with an error and skip
//! `FRAME_LENGTH_BYTES + frame_bytes` bytes before closing. This file knows nothing of bodies.

use core::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::codec::{ChunkWriter, Sink};
use crate::constants::{CLIENT_ID_BYTES_MAX, FRAME_BYTES_MAX, FRAME_LENGTH_BYTES};
use crate::error::WireError;

/// Fixed bytes of a request header: api key, version, correlation id, client id length.
pub const REQUEST_HEADER_BYTES_MIN: usize = 2 + 2 + 4 + 2;

/// Bytes of a response header: the correlation id.
pub const RESPONSE_HEADER_BYTES: usize = 4;

/// The request header. Borrowed so that a client can reuse its client id for every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHeader<'a> {
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
    pub client_id: &'a str,
}

/// A request frame borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestFrameRef<'a> {
    pub header: RequestHeader<'a>,
    pub body: &'a [u8],
}

/// A request frame split off a receive buffer; `body` shares the buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestFrame {
    pub api_key: u16,
    pub api_version: u16,
    pub correlation_id: u32,
    pub client_id: String,
    pub body: Bytes,
}

impl RequestFrame {
    pub fn header(&self) -> RequestHeader<'_> {
        RequestHeader {
            api_key: self.api_key,
            api_version: self.api_version,
            correlation_id: self.correlation_id,
            client_id: &self.client_id,
        }
    }
}

/// A response frame borrowed from a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseFrameRef<'a> {
    pub correlation_id: u32,
    pub body: &'a [u8],
}

/// A response frame split off a receive buffer; `body` shares the buffer's memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseFrame {
    pub correlation_id: u32,
    pub body: Bytes,
}

fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

/// Reads the length prefix and returns the frame's bytes (prefix excluded) once all arrived.
/// `api_key_at` / `correlation_id_at` locate those fields (prefix included) for the oversize
/// report.
fn complete_frame(
    buffer: &[u8],
    header_bytes_min: usize,
    api_key_at: Option<usize>,
    correlation_id_at: usize,
) -> Result<Option<&[u8]>, WireError> {
    let Some(frame_bytes) = read_u32(buffer, 0) else {
        return Ok(None);
    };
    let frame_bytes = frame_bytes as usize;
    if frame_bytes > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            frame_bytes,
            limit: FRAME_BYTES_MAX,
            api_key: api_key_at.and_then(|at| read_u16(buffer, at)),
            correlation_id: read_u32(buffer, correlation_id_at),
        });
    }
    if frame_bytes < header_bytes_min {
        return Err(WireError::FrameTooSmall {
            frame_bytes,
            needed: header_bytes_min,
        });
    }
    Ok(buffer.get(FRAME_LENGTH_BYTES..FRAME_LENGTH_BYTES + frame_bytes))
}

/// Decodes the request frame at the start of `buffer`, if it has fully arrived.
pub fn decode_request_frame(
    buffer: &[u8],
) -> Result<Option<(RequestFrameRef<'_>, usize)>, WireError> {
    let Some(frame) = complete_frame(buffer, REQUEST_HEADER_BYTES_MIN, Some(4), 8)? else {
        return Ok(None);
    };
    let (header, body) = decode_request_header(frame)?;
    let consumed = FRAME_LENGTH_BYTES + frame.len();
    Ok(Some((RequestFrameRef { header, body }, consumed)))
}

/// `frame` excludes the length prefix and is at least `REQUEST_HEADER_BYTES_MIN` long.
fn decode_request_header(frame: &[u8]) -> Result<(RequestHeader<'_>, &[u8]), WireError> {
    let (fixed, rest) = frame.split_at(REQUEST_HEADER_BYTES_MIN);
    let client_id_bytes = usize::from(u16::from_le_bytes([fixed[8], fixed[9]]));
    if client_id_bytes > CLIENT_ID_BYTES_MAX {
        return Err(WireError::TooLong {
            field: "client_id",
            length: client_id_bytes,
            limit: CLIENT_ID_BYTES_MAX,
        });
    }
    if client_id_bytes > rest.len() {
        return Err(WireError::Truncated {
            field: "client_id",
            needed: client_id_bytes,
            available: rest.len(),
        });
    }
    let (client_id, body) = rest.split_at(client_id_bytes);
    let client_id = core::str::from_utf8(client_id)
        .map_err(|_| WireError::InvalidUtf8 { field: "client_id" })?;
    let header = RequestHeader {
        api_key: u16::from_le_bytes([fixed[0], fixed[1]]),
        api_version: u16::from_le_bytes([fixed[2], fixed[3]]),
        correlation_id: u32::from_le_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]),
        client_id,
    };
    Ok((header, body))
}

/// Like [`decode_request_frame`], but splits the frame off the front of `buffer` and returns it
/// with a `Bytes` body that shares `buffer`'s memory (no copy). On `Ok(None)` or an error,
/// `buffer` is left unchanged.
pub fn split_request_frame(buffer: &mut BytesMut) -> Result<Option<RequestFrame>, WireError> {
    let Some((frame, consumed)) = decode_request_frame(buffer)? else {
        return Ok(None);
    };
    let header = frame.header;
    let mut request = RequestFrame {
        api_key: header.api_key,
        api_version: header.api_version,
        correlation_id: header.correlation_id,
        client_id: header.client_id.to_owned(),
        body: Bytes::new(),
    };
    let body_range = consumed - frame.body.len()..consumed;
    let frame_bytes = buffer.split_to(consumed).freeze();
    request.body = frame_bytes.slice(body_range);
    Ok(Some(request))
}

/// Decodes the response frame at the start of `buffer`, if it has fully arrived.
pub fn decode_response_frame(
    buffer: &[u8],
) -> Result<Option<(ResponseFrameRef<'_>, usize)>, WireError> {
    let Some(frame) = complete_frame(buffer, RESPONSE_HEADER_BYTES, None, 4)? else {
        return Ok(None);
    };
    let (correlation_id, body) = frame.split_at(RESPONSE_HEADER_BYTES);
    let correlation_id = u32::from_le_bytes(correlation_id.try_into().expect("split at 4"));
    let consumed = FRAME_LENGTH_BYTES + frame.len();
    Ok(Some((
        ResponseFrameRef {
            correlation_id,
            body,
        },
        consumed,
    )))
}

/// Like [`decode_response_frame`], but splits the frame off `buffer` (no copy of the body).
pub fn split_response_frame(buffer: &mut BytesMut) -> Result<Option<ResponseFrame>, WireError> {
    let Some((frame, consumed)) = decode_response_frame(buffer)? else {
        return Ok(None);
    };
    let correlation_id = frame.correlation_id;
    let body_range: Range<usize> = consumed - frame.body.len()..consumed;
    let frame_bytes = buffer.split_to(consumed).freeze();
    Ok(Some(ResponseFrame {
        correlation_id,
        body: frame_bytes.slice(body_range),
    }))
}

/// Appends one request frame to `target`: header, then whatever `encode_body` writes. On error
/// (body encoding failed, client id or frame too long) `target` is restored to its old length.
pub fn encode_request_frame(
    target: &mut BytesMut,
    header: &RequestHeader<'_>,
    encode_body: impl FnOnce(&mut BytesMut) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let start = target.len();
    let result = (|| {
        target.put_u32(0);
        target.put_u16(header.api_key);
        target.put_u16(header.api_version);
        target.put_u32(header.correlation_id);
        crate::codec::put_string(target, "client_id", header.client_id, CLIENT_ID_BYTES_MAX)?;
        encode_body(target)?;
        patch_frame_length(target, start)
    })();
    if result.is_err() {
        target.truncate(start);
    }
    result
}

/// Encodes one request frame as chunks for a vectored write: byte strings the body shares
/// (record batches in a produce request) become their own chunks instead of being copied.
pub fn encode_request_frame_chunks(
    header: &RequestHeader<'_>,
    encode_body: impl FnOnce(&mut ChunkWriter) -> Result<(), WireError>,
) -> Result<Vec<Bytes>, WireError> {
    let mut writer = ChunkWriter::new();
    writer.put_u32(0);
    writer.put_u16(header.api_key);
    writer.put_u16(header.api_version);
    writer.put_u32(header.correlation_id);
    crate::codec::put_string(
        &mut writer,
        "client_id",
        header.client_id,
        CLIENT_ID_BYTES_MAX,
    )?;
    encode_body(&mut writer)?;
    let frame_bytes = writer.written_bytes() - FRAME_LENGTH_BYTES;
    check_frame_bytes(
        frame_bytes,
        Some(header.api_key),
        Some(header.correlation_id),
    )?;
    let mut chunks = writer.finish();
    // The first chunk holds at least the fixed header: nothing shared was written before it.
    let mut first = BytesMut::from(&chunks[0][..]);
    first[..FRAME_LENGTH_BYTES].copy_from_slice(&(frame_bytes as u32).to_le_bytes());
    chunks[0] = first.freeze();
    Ok(chunks)
}

fn check_frame_bytes(
    frame_bytes: usize,
    api_key: Option<u16>,
    correlation_id: Option<u32>,
) -> Result<(), WireError> {
    if frame_bytes > FRAME_BYTES_MAX {
        return Err(WireError::FrameTooLarge {
            frame_bytes,
            limit: FRAME_BYTES_MAX,
            api_key,
            correlation_id,
        });
    }
    Ok(())
}

/// Appends one response frame to `target`, copying everything `encode_body` writes.
pub fn encode_response_frame(
    target: &mut BytesMut,
    correlation_id: u32,
    encode_body: impl FnOnce(&mut BytesMut) -> Result<(), WireError>,
) -> Result<(), WireError> {
    let start = target.len();
    let result = (|| {
        target.put_u32(0);
        target.put_u32(correlation_id);
        encode_body(target)?;
        patch_frame_length(target, start)
    })();
    if result.is_err() {
        target.truncate(start);
    }
    result
}

/// Encodes one response frame as chunks for a vectored write: byte strings the body shares
/// (stored record batches) become their own chunks instead of being copied.
pub fn encode_response_frame_chunks(
    correlation_id: u32,
    encode_body: impl FnOnce(&mut ChunkWriter) -> Result<(), WireError>,
) -> Result<Vec<Bytes>, WireError> {
    let mut writer = ChunkWriter::new();
    encode_body(&mut writer)?;
    let frame_bytes = RESPONSE_HEADER_BYTES + writer.written_bytes();
    check_frame_bytes(frame_bytes, None, Some(correlation_id))?;
    let mut prefix = BytesMut::with_capacity(FRAME_LENGTH_BYTES + RESPONSE_HEADER_BYTES);
    prefix.put_u32(frame_bytes as u32);
    prefix.put_u32(correlation_id);
    let body_chunks = writer.finish();
    let mut chunks = Vec::with_capacity(1 + body_chunks.len());
    chunks.push(prefix.freeze());
    chunks.extend(body_chunks);
    Ok(chunks)
}

fn patch_frame_length(target: &mut BytesMut, start: usize) -> Result<(), WireError> {
    let frame_bytes = target.len() - start - FRAME_LENGTH_BYTES;
    check_frame_bytes(frame_bytes, None, None)?;
    target[start..start + FRAME_LENGTH_BYTES].copy_from_slice(&(frame_bytes as u32).to_le_bytes());
    Ok(())
}
