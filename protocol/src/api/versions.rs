//! ApiVersions: version negotiation.
//!
//! The client may send the (api key, min, max) ranges it speaks, or nothing; the broker answers
//! with its own ranges. Both sides then use [`pick_version`]: the highest version inside both
//! ranges. A client sends ApiVersions at version 0 first; version 0 of this message never
//! changes, so negotiation works across any two builds.

use crate::api::wire::{wire, List};
use crate::api::ApiKey;
use crate::constants::API_VERSION_ENTRIES_MAX;
use crate::error::ErrorCode;

wire! {
    /// The versions of one API a peer speaks, both ends inclusive.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub struct ApiVersionRange {
        /// Raw key, so that ranges for APIs this build does not know still decode.
        pub api_key: u16 as u16,
        pub min_version: u16 as u16,
        pub max_version: u16 as u16,
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
        let (min_version, max_version) = ApiKey::ALL[index].versions();
        ranges[index].api_key = ApiKey::ALL[index] as u16;
        ranges[index].min_version = min_version;
        ranges[index].max_version = max_version;
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

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ApiVersionsRequest {
        /// The client's ranges; empty if it prefers to pick after seeing the broker's.
        pub client_versions: Vec<ApiVersionRange>
            as List<ApiVersionRange, API_VERSION_ENTRIES_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ApiVersionsResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub broker_versions: Vec<ApiVersionRange>
            as List<ApiVersionRange, API_VERSION_ENTRIES_MAX>,
    }
}

const _: () = assert!(SUPPORTED_API_VERSIONS.len() == ApiKey::ALL.len());
const _: () = assert!(SUPPORTED_API_VERSIONS.len() <= API_VERSION_ENTRIES_MAX);
