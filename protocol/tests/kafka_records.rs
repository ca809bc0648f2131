//! Native reading of payload format 2: Kafka batches built by the `kafka-protocol` crate's
//! encoder with every codec are wrapped, stamped, decompressed (bounded) and read as records;
//! native batches survive the trip to Kafka and back; malformed records and decompression
//! bombs are refused; no bytes make the readers panic.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression as ReferenceCompression, Record as KafkaRecord, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use spate_protocol::batch::header::{attributes, stamp};
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::records::KafkaRecords;
use spate_protocol::batch::kafka::{
    self, field, to_kafka_v2, Compression, KAFKA_BATCH_HEADER_BYTES,
};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, Record, RecordHeader, Records};
use spate_protocol::constants::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};
use spate_protocol::BatchError;

const CODECS: [(ReferenceCompression, Compression); 5] = [
    (ReferenceCompression::None, Compression::None),
    (ReferenceCompression::Gzip, Compression::Gzip),
    (ReferenceCompression::Snappy, Compression::Snappy),
    (ReferenceCompression::Lz4, Compression::Lz4),
    (ReferenceCompression::Zstd, Compression::Zstd),
];

#[derive(Debug, Clone)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    /// Unique keys: the reference encoder keeps headers in a map.
    headers: Vec<(String, Option<Vec<u8>>)>,
    timestamp: i64,
}

fn input() -> impl Strategy<Value = Input> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..400)),
        proptest::collection::btree_map(
            "[a-z0-9é]{0,8}",
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..8)),
            0..4,
        ),
        -1i64..(1 << 45),
    )
        .prop_map(|(key, value, headers, timestamp)| Input {
            key,
            value,
            headers: headers.into_iter().collect(),
            timestamp,
        })
}

/// One Kafka batch as a producer sends it, by the reference encoder.
fn kafka_batch(inputs: &[Input], compression: ReferenceCompression, producer_id: i64) -> Vec<u8> {
    let records: Vec<KafkaRecord> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id,
            producer_epoch: if producer_id < 0 { -1 } else { 0 },
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch where offset minus sequence changes, so a producer
            // without an id counts from its base sequence -1 as well.
            sequence: if producer_id < 0 { -1i32 } else { 0 }.wrapping_add(index as i32),
            timestamp: input.timestamp,
            key: input.key.clone().map(Bytes::from),
            value: input.value.clone().map(Bytes::from),
            headers: input
                .headers
                .iter()
                .map(|(key, value)| {
                    (
                        StrBytes::from_string(key.clone()),
                        value.clone().map(Bytes::from),
                    )
                })
                .collect::<IndexMap<_, _>>(),
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("reference encoder");
    buffer.to_vec()
}

/// Wraps and stamps a producer's Kafka batch as the broker stores it.
fn stored(kafka_batch: &[u8], base_offset: u64) -> Vec<u8> {
    let mut stored = kafka::wrap(kafka_batch).expect("wraps");
    stamp(&mut stored, base_offset, 0);
    stored.to_vec()
}

/// Reads a stored batch's records as a native consumer does: decompress when needed, then
/// validate. The decompressed bytes are returned beside the records' owned copies.
fn read(stored: &[u8], decompressed_bytes_max: usize) -> Result<Vec<Record>, BatchError> {
    let view = BatchView::validate(stored, BATCH_BYTES_MAX)?;
    let to_records = |records: Records<'_>| records.map(|record| record.to_record()).collect();
    match view.compression() {
        Compression::None => Ok(to_records(view.records()?)),
        codec => {
            let compressed = &kafka::kafka_bytes(view.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
            let decompressed = decompress(codec, compressed, decompressed_bytes_max)?;
            Ok(to_records(view.kafka_records(&decompressed)?))
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_kafka_batch_of_any_codec_reads_natively_as_the_records_the_producer_sent(
        inputs in proptest::collection::vec(input(), 1..30),
        codec in 0usize..CODECS.len(),
        base_offset in 0u64..(1 << 62),
        producer_id in prop_oneof![Just(-1i64), 0i64..1000],
    ) {
        let (reference, compression) = CODECS[codec];
        let stored = stored(&kafka_batch(&inputs, reference, producer_id), base_offset);
        let view = BatchView::validate(&stored, BATCH_BYTES_MAX).expect("valid");
        prop_assert_eq!(view.compression(), compression);
        if compression != Compression::None {
            let refused = matches!(view.records(), Err(BatchError::UnsupportedCompression { .. }));
            prop_assert!(refused, "a compressed batch needs decompressing first");
        }
        let records = read(&stored, DECOMPRESSED_BATCH_BYTES_MAX).expect("reads");
        prop_assert_eq!(records.len(), inputs.len());
        for (index, (record, input)) in records.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(record.offset, base_offset + index as u64);
            prop_assert_eq!(record.timestamp, input.timestamp);
            prop_assert_eq!(record.key.as_deref(), input.key.as_deref());
            prop_assert_eq!(record.value.as_deref(), input.value.as_deref());
            let expected: Vec<(String, Vec<u8>)> = input
                .headers
                .iter()
                .map(|(key, value)| (key.clone(), value.clone().unwrap_or_default()))
                .collect();
            let seen: Vec<(String, Vec<u8>)> = record
                .headers
                .iter()
                .map(|header| (header.key.clone(), header.value.to_vec()))
                .collect();
            prop_assert_eq!(seen, expected);
        }
    }

    #[test]
    fn a_native_batch_converted_to_kafka_and_stored_reads_back_the_same(
        records in proptest::collection::vec(
            (
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
                // Repeated keys allowed: both formats keep every header in order.
                proptest::collection::vec(("[a-c]{0,2}", proptest::collection::vec(any::<u8>(), 0..6)), 0..4),
                // Any i64: deltas wrap in both formats.
                any::<i64>(),
            ),
            1..30,
        ),
    ) {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for (key, value, headers, timestamp) in &records {
            builder.append(key.as_deref(), value.as_deref(), headers, *timestamp).expect("fits");
        }
        let mut native = builder.seal().expect("not empty");
        stamp(&mut native, 0, 0);
        let expected: Vec<Record> = BatchView::validate(&native, BATCH_BYTES_MAX)
            .unwrap()
            .records()
            .unwrap()
            .map(|record| record.to_record())
            .collect();
        let kafka_batch = to_kafka_v2(&native).expect("converts");
        let stored = stored(&kafka_batch, 0);
        prop_assert_eq!(read(&stored, DECOMPRESSED_BATCH_BYTES_MAX).expect("reads"), expected);
    }

    #[test]
    fn no_record_bytes_make_the_kafka_reader_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        record_count in 0i32..5,
        last_offset_delta in 0i32..6,
    ) {
        let info = kafka::KafkaBatchInfo {
            base_offset: 10,
            batch_bytes: KAFKA_BATCH_HEADER_BYTES + bytes.len(),
            partition_leader_epoch: 0,
            crc: 0,
            attributes: 0,
            last_offset_delta,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            record_count,
        };
        if let Ok(records) = KafkaRecords::validate(&bytes, &info) {
            for record in records {
                let _ = kafka::records::KafkaHeaders::new(&record).count();
            }
        }
    }

    #[test]
    fn damaged_compressed_batches_are_refused_or_read_within_the_limit_never_a_panic(
        inputs in proptest::collection::vec(input(), 1..8),
        codec in 1usize..CODECS.len(),
        flips in proptest::collection::vec((any::<proptest::sample::Index>(), 1u8..=255), 1..4),
    ) {
        // Valid framing from the reference encoder, then damage inside the compressed bytes
        // under a forged CRC, so that the codecs' and the record reader's own checks are hit.
        let mut batch = kafka_batch(&inputs, CODECS[codec].0, -1);
        let compressed_bytes = batch.len() - KAFKA_BATCH_HEADER_BYTES;
        for (position, flip) in &flips {
            batch[KAFKA_BATCH_HEADER_BYTES + position.index(compressed_bytes)] ^= flip;
        }
        forge_kafka_crc(&mut batch);
        let stored = stored(&batch, 0);
        if let Ok(records) = read(&stored, 64 << 10) {
            prop_assert!(records.len() == inputs.len());
        }
    }

    #[test]
    fn no_compressed_bytes_make_decompression_panic_or_exceed_its_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..300),
        codec in 1usize..CODECS.len(),
    ) {
        if let Ok(decompressed) = decompress(CODECS[codec].1, &bytes, 4096) {
            prop_assert!(decompressed.len() <= 4096);
        }
    }
}

/// A batch of one record whose value is `value_bytes` zeros, compressed with `codec`.
fn zeros_batch(codec: ReferenceCompression, value_bytes: usize) -> Vec<u8> {
    let input = Input {
        key: None,
        value: Some(vec![0; value_bytes]),
        headers: Vec::new(),
        timestamp: 1,
    };
    kafka_batch(&[input], codec, -1)
}

#[test]
fn a_batch_that_inflates_past_the_limit_is_refused_for_every_codec() {
    for (reference, compression) in &CODECS[1..] {
        let stored = stored(&zeros_batch(*reference, 4 << 20), 0);
        assert!(stored.len() < 1 << 20, "{compression:?} compresses zeros");
        let error = read(&stored, 1 << 20).unwrap_err();
        assert_eq!(
            error,
            BatchError::DecompressedTooLarge { limit: 1 << 20 },
            "{compression:?}"
        );
        // Just enough room reads it.
        let records = read(&stored, (4 << 20) + 64).unwrap();
        assert_eq!(
            records[0].value.as_ref().unwrap().len(),
            4 << 20,
            "{compression:?}"
        );
    }
}

#[test]
fn raw_snappy_as_librdkafka_writes_it_reads_like_xerial_framing() {
    let inputs = vec![Input {
        key: Some(b"k".to_vec()),
        value: Some(b"librdkafka writes one raw snappy block".to_vec()),
        headers: vec![("h".into(), None)],
        timestamp: 42,
    }];
    let plain = kafka_batch(&inputs, ReferenceCompression::None, -1);
    let raw = snap::raw::Encoder::new()
        .compress_vec(&plain[KAFKA_BATCH_HEADER_BYTES..])
        .unwrap();
    let mut batch = plain[..KAFKA_BATCH_HEADER_BYTES].to_vec();
    batch.extend_from_slice(&raw);
    let length = (batch.len() - field::LENGTH_OVERHEAD) as i32;
    batch[field::BATCH_LENGTH..][..4].copy_from_slice(&length.to_be_bytes());
    batch[field::ATTRIBUTES..][..2].copy_from_slice(&(Compression::Snappy as u16).to_be_bytes());
    forge_kafka_crc(&mut batch);
    let records = read(&stored(&batch, 3), DECOMPRESSED_BATCH_BYTES_MAX).unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].offset, 3);
    assert_eq!(
        records[0].value.as_deref(),
        Some(&b"librdkafka writes one raw snappy block"[..])
    );
    assert_eq!(
        records[0].headers,
        vec![RecordHeader {
            key: "h".into(),
            value: Bytes::new()
        }]
    );
}

#[test]
fn a_snappy_block_declaring_more_than_the_limit_is_refused_before_allocating() {
    // A raw snappy block's preamble is its decompressed length as a varint: claim 1 TiB.
    let bomb = [0x80, 0x80, 0x80, 0x80, 0x80, 0x20, 0x00];
    assert!(matches!(
        decompress(Compression::Snappy, &bomb, 1 << 20),
        Err(BatchError::DecompressedTooLarge { .. } | BatchError::Decompression { .. })
    ));
    let mut xerial = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01".to_vec();
    let block = snap::raw::Encoder::new()
        .compress_vec(&vec![7u8; 70_000])
        .unwrap();
    for _ in 0..20 {
        xerial.extend_from_slice(&(block.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&block);
    }
    assert_eq!(
        decompress(Compression::Snappy, &xerial, 1 << 20),
        Err(BatchError::DecompressedTooLarge { limit: 1 << 20 })
    );
    assert_eq!(
        decompress(Compression::Snappy, &xerial, 1_400_000)
            .unwrap()
            .len(),
        1_400_000
    );
}

/// Recomputes Kafka's CRC after a test rewrote covered bytes.
fn forge_kafka_crc(kafka: &mut [u8]) {
    let crc = crc32c::crc32c(&kafka[field::CRC_START..]);
    kafka[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
}

/// An uncompressed Kafka batch of two records with its records region replaced.
fn with_records(records: &[u8], record_count: i32) -> Vec<u8> {
    let inputs = vec![
        Input {
            key: None,
            value: Some(b"a".to_vec()),
            headers: Vec::new(),
            timestamp: 0,
        },
        Input {
            key: None,
            value: Some(b"b".to_vec()),
            headers: Vec::new(),
            timestamp: 0,
        },
    ];
    let mut batch = kafka_batch(&inputs, ReferenceCompression::None, -1);
    batch.truncate(KAFKA_BATCH_HEADER_BYTES);
    batch.extend_from_slice(records);
    let length = (batch.len() - field::LENGTH_OVERHEAD) as i32;
    batch[field::BATCH_LENGTH..][..4].copy_from_slice(&length.to_be_bytes());
    batch[field::RECORD_COUNT..][..4].copy_from_slice(&record_count.to_be_bytes());
    forge_kafka_crc(&mut batch);
    batch
}

#[test]
fn malformed_records_under_a_valid_crc_are_refused_with_the_record_named() {
    // Each record: length, attributes, timestamp delta, offset delta, key -1, value, headers.
    let good_first: &[u8] = &[14, 0, 0, 0, 1, 2, b'a', 0];
    let cases: [(&str, Vec<u8>, i32, usize); 6] = [
        (
            "length longer than the body",
            [good_first, &[16, 0, 0, 2, 1, 2, b'b', 0]].concat(),
            2,
            1,
        ),
        (
            "length shorter than the body",
            [good_first, &[12, 0, 0, 2, 1, 2, b'b', 0]].concat(),
            2,
            1,
        ),
        (
            "offset deltas not rising",
            [good_first, &[14, 0, 0, 0, 1, 2, b'b', 0]].concat(),
            2,
            1,
        ),
        (
            "offset delta past the batch's last",
            [good_first, &[14, 0, 0, 4, 1, 2, b'b', 0]].concat(),
            2,
            1,
        ),
        (
            "header key not UTF-8",
            [good_first, &[22, 0, 0, 2, 1, 2, b'b', 2, 2, 0xff, 2, b'v']].concat(),
            2,
            1,
        ),
        (
            "bytes after the last record",
            [good_first, &[14, 0, 0, 2, 1, 2, b'b', 0], &[0]].concat(),
            2,
            2,
        ),
    ];
    for (what, records, record_count, index) in cases {
        let stored = stored(&with_records(&records, record_count), 0);
        let error = read(&stored, DECOMPRESSED_BATCH_BYTES_MAX).unwrap_err();
        assert!(
            matches!(error, BatchError::KafkaBadRecord { index: at, .. } if at == index),
            "{what}: {error:?}"
        );
    }
    // The same framing, well formed, reads.
    let good = [good_first, &[14, 0, 0, 2, 1, 2, b'b', 0]].concat();
    let records = read(
        &stored(&with_records(&good, 2), 0),
        DECOMPRESSED_BATCH_BYTES_MAX,
    )
    .unwrap();
    assert_eq!(
        records
            .iter()
            .map(|record| record.value.clone().unwrap())
            .collect::<Vec<_>>(),
        [&b"a"[..], b"b"]
    );
}

#[test]
fn log_append_time_gives_every_record_the_max_timestamp() {
    let inputs = vec![
        Input {
            key: None,
            value: Some(b"a".to_vec()),
            headers: Vec::new(),
            timestamp: 100,
        },
        Input {
            key: None,
            value: Some(b"b".to_vec()),
            headers: Vec::new(),
            timestamp: 250,
        },
    ];
    let mut batch = kafka_batch(&inputs, ReferenceCompression::None, -1);
    let attributes = attributes::TIMESTAMP_LOG_APPEND;
    batch[field::ATTRIBUTES..][..2].copy_from_slice(&attributes.to_be_bytes());
    batch[field::MAX_TIMESTAMP..][..8].copy_from_slice(&900i64.to_be_bytes());
    forge_kafka_crc(&mut batch);
    let records = read(&stored(&batch, 0), DECOMPRESSED_BATCH_BYTES_MAX).unwrap();
    assert_eq!(
        records
            .iter()
            .map(|record| record.timestamp)
            .collect::<Vec<_>>(),
        [900, 900]
    );
}
