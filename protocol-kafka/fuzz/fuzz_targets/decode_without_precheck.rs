//! The control for `decode_request`: `kafka-protocol`'s decoders alone, on the same frames. With
//! `-malloc_limit_mb` libFuzzer finds frames that make them allocate from unchecked counts,
//! which is why the pre-check exists.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spate_kafka_protocol::kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind};
use spate_kafka_protocol::kafka_protocol::protocol::Decodable;

fuzz_target!(|frame: &[u8]| {
    if frame.len() < 4 {
        return;
    }
    let api_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let Ok(key) = ApiKey::try_from(api_key) else {
        return;
    };
    if !(key.valid_versions().min..=key.valid_versions().max).contains(&version) {
        return;
    }
    let mut bytes = bytes::Bytes::copy_from_slice(frame);
    if RequestHeader::decode(&mut bytes, key.request_header_version(version)).is_ok() {
        let _ = RequestKind::decode(key, &mut bytes, version);
    }
});
