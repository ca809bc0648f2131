//! The bounds pre-check against the `kafka-protocol` decoders, for every request API and version
//! in Kafka's schemas: random well-formed requests pass and round-trip through the crate's own
//! encoders; mutated, truncated and huge-count requests never panic and never make the decoder
//! allocate more than a small multiple of the frame; arbitrary bytes likewise (proptest).

// The generated table and its vocabulary, mounted here so that the random writer walks the very
// shapes the pre-check walks.
#[path = "../src/shape.rs"]
#[allow(dead_code)]
mod shape;
#[path = "../src/shapes.rs"]
mod shapes;
mod support;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestKind};
use kafka_protocol::protocol::{Decodable, Encodable};
use proptest::prelude::*;
use spate_kafka_protocol::{
    decode_request, header_version, precheck, request_versions, DecodeError, Problem,
};

use shape::RequestShape;
use support::allocations::{measure, Allocations, CountingAllocator};
use support::random_request::{unsigned_varint, RandomWriter};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// The most one frame byte may cost the decoder in one allocation, and in all of them together,
/// plus a fixed allowance (a tagged-field map node, error messages). Measured worst cases are
/// printed by the tests that check them.
const LARGEST_BYTES_PER_FRAME_BYTE: usize = 64;
const TOTAL_BYTES_PER_FRAME_BYTE: usize = 256;
const FIXED_ALLOWANCE_BYTES: usize = 8 * 1024;

const SEEDS_PER_VERSION: u64 = 24;

/// A random frame (header and body) of `request` at `version`, and whether its body holds a known
/// tagged field.
fn random_frame(
    writer: &mut RandomWriter,
    request: &RequestShape,
    version: i16,
) -> (Vec<u8>, Vec<u8>, bool) {
    let header_version = if request.flexible.contains(version) {
        2
    } else {
        1
    };
    let mut frame = writer.header(&shapes::HEADER, header_version, request.api_key, version);
    let body = writer.body(request, version);
    frame.extend_from_slice(&body.bytes);
    (frame, body.bytes, body.has_known_tag)
}

fn every_version() -> impl Iterator<Item = (&'static RequestShape, i16)> {
    shapes::REQUESTS.iter().flat_map(|request| {
        (request.versions.0..=request.versions.1).map(move |version| (request, version))
    })
}

fn allocation_bound(frame_bytes: usize, allocations: Allocations) -> Result<(), String> {
    let largest_max = LARGEST_BYTES_PER_FRAME_BYTE * frame_bytes + FIXED_ALLOWANCE_BYTES;
    let total_max = TOTAL_BYTES_PER_FRAME_BYTE * frame_bytes + FIXED_ALLOWANCE_BYTES;
    if allocations.largest_bytes > largest_max || allocations.total_bytes > total_max {
        return Err(format!(
            "a frame of {frame_bytes} bytes allocated {allocations:?}"
        ));
    }
    Ok(())
}

/// Whether `kafka-protocol` has a decoder for `key` at `version`: its `ApiKey::valid_versions`
/// also counts a schema's unstable newest version, which its message decoders refuse.
fn kafka_protocol_decodes(key: ApiKey, version: i16) -> bool {
    match RequestKind::decode(key, &mut Bytes::new(), version) {
        Ok(_) => true,
        Err(error) => !format!("{error:#}").contains("specified version not supported"),
    }
}

#[test]
fn table_has_exactly_the_versions_kafka_protocol_decodes() {
    for key in ApiKey::iter() {
        let range = key.valid_versions();
        let (_, min, max) =
            request_versions(key as i16).unwrap_or_else(|| panic!("{key:?} is missing"));
        for version in range.min - 1..=range.max + 1 {
            let in_table = (min..=max).contains(&version);
            assert_eq!(
                in_table,
                kafka_protocol_decodes(key, version),
                "{key:?} v{version}"
            );
            if in_table {
                assert_eq!(
                    header_version(key as i16, version),
                    Some(key.request_header_version(version)),
                    "{key:?} v{version}"
                );
            } else {
                assert_eq!(
                    header_version(key as i16, version),
                    None,
                    "{key:?} v{version}"
                );
            }
        }
    }
    for request in shapes::REQUESTS {
        assert!(
            ApiKey::try_from(request.api_key).is_ok(),
            "{} is not in kafka-protocol",
            request.name
        );
    }
}

#[test]
fn random_requests_of_every_api_and_version_pass_and_round_trip() {
    let mut checked = 0;
    for (request, version) in every_version() {
        for seed in 0..SEEDS_PER_VERSION {
            let context = format!("{} v{version} seed {seed}", request.name);
            let mut writer = RandomWriter::new(seed);
            let (frame, body, has_known_tag) = random_frame(&mut writer, request, version);
            precheck(request.api_key, version, &body)
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let decoded = decode_request(Bytes::from(frame.clone()))
                .unwrap_or_else(|error| panic!("{context}: {error}"));

            let mut encoded = BytesMut::new();
            let header_version =
                header_version(request.api_key, version).expect("a version of the table");
            decoded
                .header
                .encode(&mut encoded, header_version)
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let header_bytes = encoded.len();
            decoded
                .body
                .encode(&mut encoded, version)
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            precheck(request.api_key, version, &encoded[header_bytes..])
                .unwrap_or_else(|error| panic!("{context}: re-encoded: {error}"));
            if !has_known_tag {
                assert_eq!(
                    &encoded[..],
                    &frame[..],
                    "{context}: re-encoded bytes differ"
                );
            }
            let again = decode_request(encoded.freeze())
                .unwrap_or_else(|error| panic!("{context}: re-encoded: {error}"));
            assert_eq!(again, decoded, "{context}");
            checked += 1;
        }
    }
    eprintln!("{checked} random requests passed and round-tripped");
}

/// Every way the mutation test spoils a frame at `position`.
fn mutations(frame: &[u8], position: usize) -> Vec<Vec<u8>> {
    let mut spoiled = vec![frame[..position].to_vec()];
    for window in [
        &[0x7f, 0xff, 0xff, 0xff][..],
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x80; 5],
        &[0xff, 0xfe],
    ] {
        let mut copy = frame.to_vec();
        let end = (position + window.len()).min(copy.len());
        copy[position..end].copy_from_slice(&window[..end - position]);
        spoiled.push(copy);
    }
    let mut flipped = frame.to_vec();
    flipped[position] ^= 0x41;
    spoiled.push(flipped);
    let mut inserted = frame.to_vec();
    inserted.insert(position, 0x7f);
    spoiled.push(inserted);
    spoiled
}

#[test]
fn mutated_requests_never_panic_and_allocate_within_the_frame() {
    let mut decoded = 0;
    let mut refused = 0;
    let mut worst_ratio = 0.0f64;
    for (request, version) in every_version() {
        for seed in 0..2 {
            let (frame, _, _) = random_frame(&mut RandomWriter::new(seed), request, version);
            // Past the fixed 8 header bytes, which choose the API rather than spoil it.
            for position in 8..frame.len() {
                for spoiled in mutations(&frame, position) {
                    let length = spoiled.len();
                    let (result, allocations) = measure(|| decode_request(Bytes::from(spoiled)));
                    allocation_bound(length, allocations).unwrap_or_else(|error| {
                        panic!(
                            "{} v{version} seed {seed} at {position}: {error}",
                            request.name
                        )
                    });
                    if length >= 128 {
                        worst_ratio =
                            worst_ratio.max(allocations.largest_bytes as f64 / length as f64);
                    }
                    match result {
                        Ok(_) => decoded += 1,
                        Err(_) => refused += 1,
                    }
                }
            }
        }
    }
    eprintln!("mutated frames: {decoded} decoded, {refused} refused; largest allocation per frame byte (frames of 128 bytes or more) at most {worst_ratio:.1}");
    assert!(refused > 0 && decoded > 0);
}

/// The 22-byte Produce v9 frame of the issue: a topic count of 2^32 - 2 and nothing after it.
fn produce_with_huge_topic_count() -> Vec<u8> {
    let mut frame = Vec::new();
    frame.extend_from_slice(&0i16.to_be_bytes()); // api key: Produce
    frame.extend_from_slice(&9i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // client id: null
    frame.push(0); // header tagged fields
    frame.push(0); // transactional id: null
    frame.extend_from_slice(&(-1i16).to_be_bytes()); // acks
    frame.extend_from_slice(&1000i32.to_be_bytes()); // timeout
    unsigned_varint(&mut frame, u32::MAX); // topic count + 1
    frame.push(0);
    frame
}

#[test]
fn a_huge_array_count_is_refused_before_anything_is_allocated() {
    let frame = produce_with_huge_topic_count();
    let (result, allocations) = measure(|| decode_request(Bytes::from(frame.clone())));
    let Err(DecodeError::Invalid {
        correlation_id: 7,
        error,
        ..
    }) = result
    else {
        panic!("{result:?}");
    };
    assert_eq!(error.path, "TopicData");
    assert!(
        matches!(
            error.problem,
            Problem::CountBeyondEnd {
                count: 4_294_967_294,
                left: 1,
                ..
            }
        ),
        "{error}"
    );
    eprintln!("refused: {error}; allocated {allocations:?}");
    allocation_bound(frame.len(), allocations).unwrap();
}

#[test]
fn without_the_precheck_the_decoder_allocates_from_the_count() {
    // The same request with a count of one million: the decoder alone reserves all of them
    // before it finds the bytes missing (with 2^32 - 2 it would abort the process).
    let mut body = vec![0, 0xff, 0xff, 0, 0, 0x03, 0xe8];
    unsigned_varint(&mut body, 1_000_001);
    let length = body.len();
    let (result, allocations) =
        measure(|| ProduceRequest::decode(&mut Bytes::from(body.clone()), 9).map(|_| ()));
    assert!(result.is_err());
    eprintln!(
        "kafka-protocol alone, {length}-byte body: largest allocation {} bytes",
        allocations.largest_bytes
    );
    assert!(allocations.largest_bytes >= 1_000_000, "{allocations:?}");
    assert!(precheck(0, 9, &body).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4096, ..ProptestConfig::default() })]

    /// Arbitrary bytes after a chosen API key and version: never a panic, allocations within
    /// the frame, and whatever the pre-check passes decodes unless a string is not UTF-8.
    #[test]
    fn arbitrary_bytes_never_panic_or_allocate_beyond_the_frame(
        api_key in prop_oneof![
            proptest::sample::select(shapes::REQUESTS.iter().map(|request| request.api_key).collect::<Vec<_>>()),
            any::<i16>(),
        ],
        version in -1i16..20,
        rest in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut frame = Vec::new();
        frame.extend_from_slice(&api_key.to_be_bytes());
        frame.extend_from_slice(&version.to_be_bytes());
        frame.extend_from_slice(&rest);
        let length = frame.len();
        let (result, allocations) = measure(|| decode_request(Bytes::from(frame)));
        prop_assert!(allocation_bound(length, allocations).is_ok(), "{:?}", allocations);
        // The walk itself allocates only an error's path and text.
        let (_, allocations) = measure(|| precheck(api_key, version, &rest));
        prop_assert!(allocations.total_bytes <= FIXED_ALLOWANCE_BYTES);
        if let Err(DecodeError::Decode { message, .. }) = &result {
            prop_assert!(message.contains("utf-8") || message.contains("UTF-8"), "passed the pre-check but: {}", message);
        }
    }

    /// A random well-formed request with bytes overwritten at random: the same guarantees.
    #[test]
    fn spoiled_requests_never_panic_or_allocate_beyond_the_frame(
        index in 0..shapes::REQUESTS.len(),
        version_pick in any::<u16>(),
        seed in any::<u64>(),
        edits in proptest::collection::vec((any::<u16>(), any::<u8>()), 1..8),
    ) {
        let request = &shapes::REQUESTS[index];
        let span = (request.versions.1 - request.versions.0 + 1) as u16;
        let version = request.versions.0 + (version_pick % span) as i16;
        let (mut frame, _, _) = random_frame(&mut RandomWriter::new(seed), request, version);
        for (position, byte) in edits {
            let position = 8 + usize::from(position) % (frame.len() - 8).max(1);
            if position < frame.len() {
                frame[position] = byte;
            }
        }
        let length = frame.len();
        let (result, allocations) = measure(|| decode_request(Bytes::from(frame)));
        prop_assert!(allocation_bound(length, allocations).is_ok(), "{:?}", allocations);
        if let Err(DecodeError::Decode { message, .. }) = &result {
            prop_assert!(message.contains("utf-8") || message.contains("UTF-8"), "passed the pre-check but: {}", message);
        }
    }
}

/// A FetchRequest v15+ body with no topics, no rack, and the given tagged-field section.
fn fetch_body(tagged_fields: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&500i32.to_be_bytes()); // max wait
    body.extend_from_slice(&1i32.to_be_bytes()); // min bytes
    body.extend_from_slice(&(1i32 << 20).to_be_bytes()); // max bytes
    body.push(0); // isolation level
    body.extend_from_slice(&0i32.to_be_bytes()); // session id
    body.extend_from_slice(&(-1i32).to_be_bytes()); // session epoch
    body.extend_from_slice(&[1, 1, 1]); // no topics, no forgotten topics, empty rack id
    body.extend_from_slice(tagged_fields);
    body
}

/// ReplicaState (tag 1): replica id, replica epoch, no tagged fields: 13 bytes.
const REPLICA_STATE: [u8; 13] = [0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 9, 0];

#[test]
fn a_known_tagged_field_must_take_exactly_its_declared_size() {
    let mut exact = vec![1, 1, 13];
    exact.extend_from_slice(&REPLICA_STATE);
    assert_eq!(precheck(1, 15, &fetch_body(&exact)), Ok(()));
    assert!(decode_request_body_ok(1, 15, &fetch_body(&exact)));

    let mut longer = vec![1, 1, 14];
    longer.extend_from_slice(&REPLICA_STATE);
    longer.push(0);
    let error = precheck(1, 15, &fetch_body(&longer)).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::TaggedFieldSize {
            tag: 1,
            declared: 14,
            used: 13
        }
    );
    assert_eq!(error.path, "tag 1");
}

#[test]
fn a_known_tag_outside_its_versions_is_refused_as_the_decoder_refuses_it() {
    let mut tagged = vec![1, 1, 13];
    tagged.extend_from_slice(&REPLICA_STATE);
    // Versions before 15 start with the replica id.
    let mut body = (-1i32).to_be_bytes().to_vec();
    body.extend_from_slice(&fetch_body(&tagged));
    let error = precheck(1, 12, &body).unwrap_err();
    assert_eq!(error.problem, Problem::TagNotInVersion(1));
    assert!(!decode_request_body_ok(1, 12, &body));
}

#[test]
fn unknown_tags_are_skipped_and_their_sizes_checked() {
    assert_eq!(
        precheck(1, 15, &fetch_body(&[1, 0x90, 0x4e, 2, 0xaa, 0xbb])),
        Ok(())
    );
    let error = precheck(1, 15, &fetch_body(&[1, 0x90, 0x4e, 3, 0xaa, 0xbb])).unwrap_err();
    assert_eq!(
        error.problem,
        Problem::LengthBeyondEnd { length: 3, left: 2 }
    );
    assert_eq!(error.path, "tag 10000");
    let error = precheck(1, 15, &fetch_body(&[0xff, 0xff, 0xff, 0xff, 0x0f])).unwrap_err();
    assert!(matches!(
        error.problem,
        Problem::CountBeyondEnd {
            element_bytes_min: 2,
            ..
        }
    ));
}

#[test]
fn a_varint_longer_than_five_bytes_is_refused() {
    let error = precheck(1, 15, &fetch_body(&[0x80, 0x80, 0x80, 0x80, 0x80, 0])).unwrap_err();
    assert_eq!(error.problem, Problem::VarintTooLong);
}

#[test]
fn a_nullable_struct_marker_other_than_minus_one_or_one_is_refused() {
    // DescribeTopicPartitions v0: no topics, a partition limit, then the nullable Cursor.
    let mut body = vec![1, 0, 0, 7, 0xd0];
    for (marker, accepted) in [(0xffu8, true), (0, false), (2, false)] {
        let mut with_marker = body.clone();
        with_marker.extend_from_slice(&[marker, 0]);
        let result = precheck(75, 0, &with_marker);
        assert_eq!(result.is_ok(), accepted, "marker {marker}: {result:?}");
        if !accepted {
            assert_eq!(
                result.unwrap_err().problem,
                Problem::PresenceMarker(marker as i8)
            );
        }
    }
    body.extend_from_slice(&[1, 2, b'a', 0, 0, 0, 3, 0, 0]);
    assert_eq!(precheck(75, 0, &body), Ok(()));
}

#[test]
fn null_in_a_field_that_is_not_nullable_is_refused() {
    // FindCoordinator v0: the group id is a non-nullable string.
    let error = precheck(10, 0, &[0xff, 0xff]).unwrap_err();
    assert_eq!(
        (error.problem, error.path.as_str()),
        (Problem::NullNotAllowed, "Key")
    );
    let error = precheck(10, 0, &[0xff, 0xfe]).unwrap_err();
    assert_eq!(error.problem, Problem::NegativeLength(-2));
}

#[test]
fn the_error_names_the_field_path_with_element_indexes() {
    // Produce v9: one topic "t" with two partitions; the second one's record set is cut short.
    let mut body = vec![0, 0xff, 0xff, 0, 0, 0x03, 0xe8, 2, 2, b't', 3];
    body.extend_from_slice(&[0, 0, 0, 0, 1, 0]); // partition 0, null records, no tags
    body.extend_from_slice(&[0, 0, 0, 1, 10, 1, 2, 3]); // partition 1, 9 record bytes announced, 3 there
    let error = precheck(0, 9, &body).unwrap_err();
    assert_eq!(error.path, "TopicData[0].PartitionData[1].Records");
    assert_eq!(
        error.problem,
        Problem::LengthBeyondEnd { length: 9, left: 3 }
    );
    assert!(error.to_string().contains("ProduceRequest v9"), "{error}");
}

#[test]
fn bytes_after_the_body_are_allowed_as_kafka_allows_them() {
    // ApiVersions v0 has no fields at all.
    assert_eq!(precheck(18, 0, &[1, 2, 3]), Ok(()));
}

#[test]
fn unknown_api_keys_and_versions_are_told_apart() {
    assert_eq!(
        precheck(1000, 0, &[]).unwrap_err().problem,
        Problem::UnknownApiKey(1000)
    );
    assert_eq!(
        precheck(18, 5, &[]).unwrap_err().problem,
        Problem::UnsupportedVersion {
            version: 5,
            min: 0,
            max: 4
        }
    );
    let mut frame = vec![0, 18, 0, 9, 0, 0, 0, 42];
    frame.extend_from_slice(&[0, 0, 0]);
    let error = decode_request(Bytes::from(frame)).unwrap_err();
    assert!(matches!(
        error,
        DecodeError::UnsupportedVersion {
            api_key: 18,
            api_version: 9,
            ..
        }
    ));
    assert_eq!(error.correlation_id(), Some(42));
    let error = decode_request(Bytes::from_static(&[0, 1, 0])).unwrap_err();
    assert_eq!(
        (error.correlation_id(), error),
        (None, DecodeError::TooShort { bytes: 3 })
    );
}

/// Whether `body` decodes as request `api_key` v`version` behind a valid header.
fn decode_request_body_ok(api_key: i16, version: i16, body: &[u8]) -> bool {
    let mut frame = Vec::new();
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&version.to_be_bytes());
    frame.extend_from_slice(&1i32.to_be_bytes());
    frame.extend_from_slice(&(-1i16).to_be_bytes());
    if header_version(api_key, version) == Some(2) {
        frame.push(0);
    }
    frame.extend_from_slice(body);
    decode_request(Bytes::from(frame)).is_ok()
}

/// What cargo-fuzz found in `kafka-protocol` alone within its first few hundred runs (target
/// `decode_without_precheck`, from sarama's DescribeConfigs v4 frame in the corpus): 49 bytes
/// whose configuration-key count of 2^32 - 3 made the decoder ask for an 8.5 GB allocation.
const FUZZ_FOUND_DESCRIBE_CONFIGS: [u8; 49] = [
    0x00, 0x20, 0x00, 0x04, 0x00, 0x00, 0x00, 0x08, 0x00, 0x0c, 0x73, 0x61, 0x72, 0x61, 0x6d, 0x61,
    0x2d, 0x61, 0x64, 0x6d, 0x69, 0x6e, 0x00, 0x02, 0x02, 0x13, 0x5f, 0x5f, 0x63, 0x6f, 0x6e, 0x73,
    0x75, 0x6d, 0x65, 0x72, 0x5f, 0x6f, 0x66, 0x66, 0x73, 0x65, 0x74, 0x73, 0xff, 0xff, 0xff, 0xfe,
    0x00,
];

#[test]
fn the_frame_the_fuzzer_found_is_refused_without_allocating() {
    let frame = FUZZ_FOUND_DESCRIBE_CONFIGS;
    let (result, allocations) = measure(|| decode_request(Bytes::copy_from_slice(&frame)));
    let Err(DecodeError::Invalid { error, .. }) = result else {
        panic!("{result:?}");
    };
    assert_eq!(error.path, "Resources[0].ConfigurationKeys");
    assert!(
        matches!(error.problem, Problem::CountBeyondEnd { .. }),
        "{error}"
    );
    allocation_bound(frame.len(), allocations).unwrap();
}
