//! One call for the Kafka listener: a request frame (header and body, without the size prefix)
//! in, the decoded header and body out. The frame is checked by `precheck` (header, then body)
//! before the `kafka-protocol` decoders see it, so they never size a vector from an unchecked
//! count. What to answer to each error is the listener's business; the error carries the
//! correlation id wherever the frame has one.

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use kafka_protocol::protocol::Decodable;

use crate::precheck::{header_version, precheck, precheck_header, request_versions, PrecheckError};

/// The api key, api version and correlation id: the fixed start of every request header.
const HEADER_FIXED_BYTES: usize = 8;

/// A decoded request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub header: RequestHeader,
    pub body: RequestKind,
}

/// Why a frame did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than the api key, version and correlation id (Kafka closes the connection).
    #[error("a request of {bytes} bytes is too short for a request header")]
    TooShort { bytes: usize },
    /// An API key Kafka 4.1 does not have (Kafka closes the connection).
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16, correlation_id: i32 },
    /// A version of a known API that Kafka 4.1 does not have (Kafka answers
    /// `UNSUPPORTED_VERSION`; for ApiVersions, a v0 answer with that error).
    #[error("{name} v{api_version} is not between v{min} and v{max}")]
    UnsupportedVersion {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        name: &'static str,
        min: i16,
        max: i16,
    },
    /// Refused by the bounds pre-check (header or body).
    #[error("{error}")]
    Invalid {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        error: PrecheckError,
    },
    /// Passed the pre-check but the decoder refused it (for example a string that is not UTF-8).
    #[error("API {api_key} v{api_version}: {message}")]
    Decode {
        api_key: i16,
        api_version: i16,
        correlation_id: i32,
        message: String,
    },
}

impl DecodeError {
    /// The request's correlation id, when the frame was long enough to carry one.
    pub fn correlation_id(&self) -> Option<i32> {
        match self {
            DecodeError::TooShort { .. } => None,
            DecodeError::UnknownApiKey { correlation_id, .. }
            | DecodeError::UnsupportedVersion { correlation_id, .. }
            | DecodeError::Invalid { correlation_id, .. }
            | DecodeError::Decode { correlation_id, .. } => Some(*correlation_id),
        }
    }
}

/// Checks and decodes one request frame: the request header (v1, or v2 for flexible requests),
/// then the body. The body's `Bytes` fields (record sets, strings) are slices of `frame`.
pub fn decode_request(frame: Bytes) -> Result<Request, DecodeError> {
    if frame.len() < HEADER_FIXED_BYTES {
        return Err(DecodeError::TooShort { bytes: frame.len() });
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Some((name, min, max)) = request_versions(api_key) else {
        return Err(DecodeError::UnknownApiKey {
            api_key,
            correlation_id,
        });
    };
    let Some(header_version) = header_version(api_key, api_version) else {
        return Err(DecodeError::UnsupportedVersion {
            api_key,
            api_version,
            correlation_id,
            name,
            min,
            max,
        });
    };
    let invalid = |error| DecodeError::Invalid {
        api_key,
        api_version,
        correlation_id,
        error,
    };
    let header_bytes = precheck_header(header_version, &frame).map_err(invalid)?;
    precheck(api_key, api_version, &frame[header_bytes..]).map_err(invalid)?;

    let decode_failed = |message| DecodeError::Decode {
        api_key,
        api_version,
        correlation_id,
        message,
    };
    let mut bytes = frame;
    let header = RequestHeader::decode(&mut bytes, header_version)
        .map_err(|error| decode_failed(format!("{error:#}")))?;
    let key = ApiKey::try_from(api_key)
        .expect("the shapes table has only API keys that kafka-protocol decodes (tested)");
    let body = RequestKind::decode(key, &mut bytes, api_version)
        .map_err(|error| decode_failed(format!("{error:#}")))?;
    Ok(Request { header, body })
}
