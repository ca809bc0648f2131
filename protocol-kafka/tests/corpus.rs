//! Replays the corpus of real clients' request frames (`tests/corpus/`, captured by
//! `generate/capture_corpus.sh` from kcat, kafka-python, confluent-kafka, the Java client,
//! kafkajs, sarama and franz-go against Apache Kafka 4.1.1): every frame (but those of a version
//! newer than Kafka 4.1's, which are told apart) passes the pre-check, decodes as the API and
//! version it was sent as and re-encodes to the same bytes; no truncation of one decodes; no
//! single-byte change of one panics or makes the decoder allocate beyond the frame.

#[path = "support/allocations.rs"]
#[allow(dead_code)]
mod allocations;

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kafka_protocol::protocol::Encodable;
use spate_kafka_protocol::{decode_request, header_version, precheck, DecodeError};

use allocations::{measure, CountingAllocator};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// As in `tests/precheck.rs`: bytes one frame byte may cost, and a fixed allowance.
const LARGEST_BYTES_PER_FRAME_BYTE: usize = 64;
const FIXED_ALLOWANCE_BYTES: usize = 8 * 1024;

struct Sample {
    name: String,
    api_key: i16,
    version: i16,
    frame: Vec<u8>,
}

/// Every corpus frame, with the API key and version its file name records
/// (`<client>-<api key>-v<version>-<digest>.bin`).
fn corpus() -> Vec<Sample> {
    let folder = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut samples: Vec<Sample> = std::fs::read_dir(&folder)
        .unwrap_or_else(|error| panic!("{}: {error}", folder.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "bin"))
        .map(|path| {
            let name = path
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            let parts: Vec<&str> = name.rsplitn(4, '-').collect();
            let api_key = parts[2]
                .parse()
                .unwrap_or_else(|_| panic!("{name}: no API key"));
            let version = parts[1]
                .trim_start_matches('v')
                .parse()
                .unwrap_or_else(|_| panic!("{name}: no version"));
            let frame = std::fs::read(&path).unwrap_or_else(|error| panic!("{name}: {error}"));
            Sample {
                name,
                api_key,
                version,
                frame,
            }
        })
        .collect();
    samples.sort_by(|left, right| left.name.cmp(&right.name));
    assert!(
        samples.len() >= 50,
        "the corpus has only {} frames",
        samples.len()
    );
    samples
}

#[test]
fn every_real_client_frame_passes_and_decodes() {
    let samples = corpus();
    let mut too_new = 0;
    for sample in &samples {
        if header_version(sample.api_key, sample.version).is_none() {
            // A client trying a version newer than Kafka 4.1's first (franz-go opens with
            // ApiVersions v5): told apart, with the correlation id for the v0 answer.
            let error = decode_request(Bytes::from(sample.frame.clone())).unwrap_err();
            assert!(
                matches!(error, DecodeError::UnsupportedVersion { .. }),
                "{}: {error}",
                sample.name
            );
            assert!(error.correlation_id().is_some());
            too_new += 1;
            continue;
        }
        let decoded = decode_request(Bytes::from(sample.frame.clone()))
            .unwrap_or_else(|error| panic!("{}: {error}", sample.name));
        assert_eq!(
            (
                decoded.header.request_api_key,
                decoded.header.request_api_version
            ),
            (sample.api_key, sample.version),
            "{}",
            sample.name
        );
        let header_version = header_version(sample.api_key, sample.version).expect("decoded above");
        let mut encoded = BytesMut::new();
        decoded
            .header
            .encode(&mut encoded, header_version)
            .expect("a decoded header encodes");
        let header_bytes = encoded.len();
        precheck(
            sample.api_key,
            sample.version,
            &sample.frame[header_bytes..],
        )
        .unwrap_or_else(|error| panic!("{}: {error}", sample.name));
        decoded
            .body
            .encode(&mut encoded, sample.version)
            .expect("a decoded body encodes");
        // The walk and the codec agree on every byte of what real clients send.
        assert_eq!(
            &encoded[..],
            &sample.frame[..],
            "{}: re-encoded bytes differ",
            sample.name
        );
    }
    eprintln!(
        "{} real client frames decoded and re-encoded to the same bytes; {too_new} of a \
         version newer than Kafka 4.1's told apart",
        samples.len() - too_new
    );
}

#[test]
fn no_truncated_real_client_frame_decodes() {
    for sample in corpus() {
        for length in 0..sample.frame.len() {
            let result = decode_request(Bytes::copy_from_slice(&sample.frame[..length]));
            assert!(
                result.is_err(),
                "{} cut to {length} bytes decoded",
                sample.name
            );
        }
    }
}

#[test]
fn changed_bytes_in_real_client_frames_never_panic_or_allocate_beyond_the_frame() {
    let mut refused = 0;
    let mut decoded = 0;
    for sample in corpus() {
        for position in 8..sample.frame.len() {
            for value in [0x00, 0x7f, 0x80, 0xff] {
                let mut changed = sample.frame.clone();
                changed[position] = value;
                let length = changed.len();
                let (result, allocations) = measure(|| decode_request(Bytes::from(changed)));
                assert!(
                    allocations.largest_bytes
                        <= LARGEST_BYTES_PER_FRAME_BYTE * length + FIXED_ALLOWANCE_BYTES,
                    "{} with byte {position} = {value:#x}: {allocations:?}",
                    sample.name
                );
                match result {
                    Ok(_) => decoded += 1,
                    Err(_) => refused += 1,
                }
            }
        }
    }
    eprintln!("changed real client frames: {decoded} decoded, {refused} refused");
}
