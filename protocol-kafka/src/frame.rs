//! Kafka framing: a 4-byte big-endian size before each request and response, the request
//! header (v1, or v2 with tagged fields for flexible versions, as each API's version says) and
//! the response header (v0, or v1 for flexible versions; ApiVersions' is always v0, so a client
//! that does not know the broker yet can read it).
//!
//! Pure functions of bytes: the Kafka listener splits frames off its socket buffer and hands
//! them here.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

/// Bytes of the size before each frame.
pub const FRAME_SIZE_BYTES: usize = 4;

/// Bytes of a request header's fixed start: api key, api version, correlation id.
pub const REQUEST_HEADER_FIXED_BYTES: usize = 2 + 2 + 4;

/// Why a request frame's header cannot be read. Kafka closes the connection in every case: the
/// client cannot be told in a response it would understand.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("request frame of {frame_bytes} bytes is shorter than a request header")]
    TooShort { frame_bytes: usize },
    #[error("unknown api key {api_key} (correlation id {correlation_id})")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    #[error("request header of api {api_key:?} v{version} does not decode: {message}")]
    Malformed {
        api_key: ApiKey,
        version: i16,
        message: String,
    },
}

/// A request's header and its body (what follows the header in the frame; shares its memory).
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaRequestFrame {
    pub api_key: ApiKey,
    pub version: i16,
    pub header: RequestHeader,
    pub body: Bytes,
}

/// The size at the front of `buffer`, once its 4 bytes arrived. A negative size (which no
/// client sends) reads as a size beyond any limit.
pub fn peek_frame_bytes(buffer: &[u8]) -> Option<usize> {
    let size = i32::from_be_bytes(buffer.get(..FRAME_SIZE_BYTES)?.try_into().ok()?);
    Some(usize::try_from(size).unwrap_or(usize::MAX))
}

/// The api key and correlation id at the start of a frame (after its size), if present.
pub fn peek_request_start(frame: &[u8]) -> Option<(i16, i16, i32)> {
    let api_key = i16::from_be_bytes(frame.get(0..2)?.try_into().ok()?);
    let version = i16::from_be_bytes(frame.get(2..4)?.try_into().ok()?);
    let correlation_id = i32::from_be_bytes(frame.get(4..8)?.try_into().ok()?);
    Some((api_key, version, correlation_id))
}

/// Decodes the header of `frame` (the bytes after the size) with the header version its api and
/// version call for; the body is the rest.
pub fn decode_request_frame(mut frame: Bytes) -> Result<KafkaRequestFrame, HeaderError> {
    let frame_bytes = frame.len();
    let (key, version, correlation_id) =
        peek_request_start(&frame).ok_or(HeaderError::TooShort { frame_bytes })?;
    let api_key = ApiKey::try_from(key).map_err(|()| HeaderError::UnknownApiKey {
        api_key: key,
        correlation_id,
    })?;
    let header_version = api_key.request_header_version(version);
    // The header's client id and tagged fields are bounded by the bytes present before the
    // decoder sizes anything from them.
    crate::precheck_header(header_version, &frame).map_err(|error| HeaderError::Malformed {
        api_key,
        version,
        message: error.to_string(),
    })?;
    let header = RequestHeader::decode(&mut frame, header_version).map_err(|error| {
        HeaderError::Malformed {
            api_key,
            version,
            message: error.to_string(),
        }
    })?;
    Ok(KafkaRequestFrame {
        api_key,
        version,
        header,
        body: frame,
    })
}

/// Why a response could not be encoded: a broker bug (a field that does not fit the version),
/// never the client's input.
#[derive(Debug, thiserror::Error)]
#[error("cannot encode the {api_key:?} v{version} response: {message}")]
pub struct EncodeError {
    pub api_key: ApiKey,
    pub version: i16,
    pub message: String,
}

/// The whole response frame: size, header, body.
pub fn encode_response<R: Encodable + HeaderVersion>(
    api_key: ApiKey,
    version: i16,
    correlation_id: i32,
    response: &R,
) -> Result<Bytes, EncodeError> {
    let failed = |error: anyhow::Error| EncodeError {
        api_key,
        version,
        message: error.to_string(),
    };
    let header_version = R::header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let header_bytes = header.compute_size(header_version).map_err(failed)?;
    let body_bytes = response.compute_size(version).map_err(failed)?;
    let frame_bytes = header_bytes + body_bytes;
    let size = i32::try_from(frame_bytes).map_err(|_| EncodeError {
        api_key,
        version,
        message: format!("{frame_bytes} bytes do not fit a frame"),
    })?;
    let mut buffer = BytesMut::with_capacity(FRAME_SIZE_BYTES + frame_bytes);
    buffer.put_i32(size);
    header.encode(&mut buffer, header_version).map_err(failed)?;
    response.encode(&mut buffer, version).map_err(failed)?;
    assert_eq!(
        buffer.len(),
        FRAME_SIZE_BYTES + frame_bytes,
        "a response's computed size is the size it encodes to"
    );
    Ok(buffer.freeze())
}
