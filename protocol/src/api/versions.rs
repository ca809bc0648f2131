//! ApiVersions: version negotiation.
//!
//! The client may send the (api key, min, max) ranges it speaks, or nothing; the broker answers
//! with its own ranges. Both sides then use [`pick_version`]: the highest version inside both
//! ranges. A client sends ApiVersions at version 0 first; version 0 of this message never
//! changes, so negotiation works across any two builds.

use crate::api::{decode_error_code, decode_list, encode_list, message, put_error_code};
use crate::api::{ApiKey, Wire};
use crate::codec::{Decoder, Sink};
use crate::constants::API_VERSION_ENTRIES_MAX;
use crate::error::{ErrorCode, WireError};

/// The versions of one API a peer speaks, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersionRange {
    /// Raw key, so that ranges for APIs this build does not know still decode.
    pub api_key: u16,
    pub min_version: u16,
    pub max_version: u16,
}

impl Wire for ApiVersionRange {
    const ENCODED_BYTES_MIN: usize = 6;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        sink.put_u16(self.api_key);
        sink.put_u16(self.min_version);
        sink.put_u16(self.max_version);
        Ok(())
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            api_key: decoder.u16("api_key")?,
            min_version: decoder.u16("min_version")?,
            max_version: decoder.u16("max_version")?,
        })
    }
}

/// Ranges this build speaks, one per API, in key order.
pub const SUPPORTED_API_VERSIONS: [ApiVersionRange; ApiKey::ALL.len()] = {
    let mut ranges = [ApiVersionRange {
        api_key: 0,
        min_version: 0,
        max_version: 0,
    }; ApiKey::ALL.len()];
    let mut index = 0;
    while index < ranges.len() {
        ranges[index].api_key = ApiKey::ALL[index] as u16;
        index += 1;
    }
    ranges
};

/// The highest version of `api_key` inside both peers' ranges, or `None` if they share none.
pub fn pick_version(
    ours: &[ApiVersionRange],
    theirs: &[ApiVersionRange],
    api_key: ApiKey,
) -> Option<u16> {
    let find = |ranges: &[ApiVersionRange]| {
        ranges
            .iter()
            .find(|range| range.api_key == api_key.to_u16())
            .copied()
    };
    let (ours, theirs) = (find(ours)?, find(theirs)?);
    let lowest = ours.min_version.max(theirs.min_version);
    let highest = ours.max_version.min(theirs.max_version);
    (lowest <= highest).then_some(highest)
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsRequest {
    /// The client's ranges; empty if it prefers to pick after seeing the broker's.
    pub client_versions: Vec<ApiVersionRange>,
}

impl Wire for ApiVersionsRequest {
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        encode_list(
            sink,
            "client_versions",
            &self.client_versions,
            API_VERSION_ENTRIES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            client_versions: decode_list(decoder, "client_versions", API_VERSION_ENTRIES_MAX)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiVersionsResponse {
    pub error_code: ErrorCode,
    pub broker_versions: Vec<ApiVersionRange>,
}

impl Wire for ApiVersionsResponse {
    const ENCODED_BYTES_MIN: usize = 2 + 4;

    fn encode<S: Sink>(&self, sink: &mut S) -> Result<(), WireError> {
        put_error_code(sink, self.error_code);
        encode_list(
            sink,
            "broker_versions",
            &self.broker_versions,
            API_VERSION_ENTRIES_MAX,
        )
    }

    fn decode(decoder: &mut Decoder) -> Result<Self, WireError> {
        Ok(Self {
            error_code: decode_error_code(decoder)?,
            broker_versions: decode_list(decoder, "broker_versions", API_VERSION_ENTRIES_MAX)?,
        })
    }
}

message!(
    ApiVersionsRequest,
    ApiKey::ApiVersions,
    "ApiVersionsRequest",
    response = ApiVersionsResponse
);
message!(
    ApiVersionsResponse,
    ApiKey::ApiVersions,
    "ApiVersionsResponse"
);

const _: () = assert!(SUPPORTED_API_VERSIONS.len() == ApiKey::ALL.len());
const _: () = assert!(SUPPORTED_API_VERSIONS.len() <= API_VERSION_ENTRIES_MAX);
