//! Fuzzes `decode_request` (the pre-check, then `kafka-protocol`'s decoders) with whole request
//! frames. Run with `-malloc_limit_mb`: libFuzzer then reports any single allocation above it as
//! a finding, so a frame of `-max_len` bytes that makes the decoder allocate from an unchecked
//! count fails the run.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|frame: &[u8]| {
    let _ = spate_kafka_protocol::decode_request(bytes::Bytes::copy_from_slice(frame));
});
