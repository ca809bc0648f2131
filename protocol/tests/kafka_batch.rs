//! Payload format 2: Kafka RecordBatch v2 built by the `kafka-protocol` crate's encoder is
//! checked, wrapped, stamped and validated; every corrupted byte is caught; no input panics.

use bytes::{Bytes, BytesMut};
use kafka_protocol::indexmap::IndexMap;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record as KafkaRecord, RecordBatchDecoder, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use proptest::prelude::*;
use spate_protocol::batch::header::{self, stamp, BatchHeader, BATCH_HEADER_BYTES};
use spate_protocol::batch::kafka::{self, field, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::{BatchIter, BatchView, PayloadFormat};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::BatchError;

const COMPRESSIONS: [Compression; 5] = [
    Compression::None,
    Compression::Gzip,
    Compression::Snappy,
    Compression::Lz4,
    Compression::Zstd,
];

#[derive(Debug, Clone)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
}

#[derive(Debug, Clone)]
struct Input {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn input() -> impl Strategy<Value = Input> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..32)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
        proptest::collection::vec(
            ("[a-z]{0,8}", proptest::collection::vec(any::<u8>(), 0..8)),
            0..3,
        ),
        0i64..(1 << 45),
    )
        .prop_map(|(key, value, headers, timestamp)| Input {
            key,
            value,
            headers,
            timestamp,
        })
}

fn producer() -> impl Strategy<Value = Producer> {
    prop_oneof![
        Just(Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false
        }),
        (
            0i64..i64::MAX,
            0i16..i16::MAX,
            0i32..(i32::MAX - 100),
            any::<bool>()
        )
            .prop_map(|(id, epoch, base_sequence, transactional)| Producer {
                id,
                epoch,
                base_sequence,
                transactional
            }),
    ]
}

/// One Kafka batch as a producer sends it (base offset 0, leader epoch -1), by the reference
/// encoder.
fn kafka_batch(inputs: &[Input], producer: &Producer, compression: Compression) -> Vec<u8> {
    let records: Vec<KafkaRecord> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| KafkaRecord {
            transactional: producer.transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: producer.id,
            producer_epoch: producer.epoch,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch where offset minus sequence changes; a producer
            // without an id has base sequence -1.
            sequence: producer.base_sequence.wrapping_add(index as i32),
            timestamp: input.timestamp,
            key: input.key.clone().map(Bytes::from),
            value: input.value.clone().map(Bytes::from),
            headers: input
                .headers
                .iter()
                .map(|(key, value)| {
                    (
                        StrBytes::from_string(key.clone()),
                        Some(Bytes::from(value.clone())),
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

/// Recomputes Kafka's CRC after a test rewrote a covered field, as a buggy client could.
fn forge_kafka_crc(kafka: &mut [u8]) {
    let crc = crc32c::crc32c(&kafka[field::CRC_START..]);
    kafka[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_be_bytes());
}

fn compression() -> impl Strategy<Value = Compression> {
    proptest::sample::select(COMPRESSIONS.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn a_kafka_batch_wraps_stamps_and_validates_with_its_fields_in_the_spate_header(
        inputs in proptest::collection::vec(input(), 1..20),
        producer in producer(),
        compression in compression(),
        base_offset in 0u64..(1 << 62),
        leader_epoch in 0u32..(i32::MAX as u32),
    ) {
        let kafka = kafka_batch(&inputs, &producer, compression);
        let info = kafka::check(&kafka).expect("reference batch checks");
        prop_assert_eq!(info.batch_bytes, kafka.len());
        prop_assert_eq!(info.record_count as usize, inputs.len());
        prop_assert_eq!(info.offset_count() as usize, inputs.len());
        prop_assert_eq!(info.compression() as i32, compression as i32);

        let mut stored = kafka::wrap(&kafka).expect("wraps");
        prop_assert_eq!(&kafka::kafka_bytes(&stored)[field::CRC..], &kafka[field::CRC..]);
        let view = BatchView::validate(&stored, BATCH_BYTES_MAX).expect("wrapped batch validates");
        prop_assert_eq!(view.payload_format(), PayloadFormat::KafkaV2);
        let header = *view.header();
        prop_assert_eq!(header.batch_length as usize, BATCH_HEADER_BYTES + kafka.len());
        prop_assert_eq!(header.record_count as usize, inputs.len());
        prop_assert_eq!(header.offset_count as usize, inputs.len());
        let min_timestamp = inputs.iter().map(|input| input.timestamp).min().unwrap();
        let max_timestamp = inputs.iter().map(|input| input.timestamp).max().unwrap();
        prop_assert_eq!(header.first_timestamp, min_timestamp);
        prop_assert_eq!(header.max_timestamp, max_timestamp);
        prop_assert_eq!(header.producer_id, producer.id);
        prop_assert_eq!(header.producer_epoch, producer.epoch);
        prop_assert_eq!(header.base_sequence, info.base_sequence);
        prop_assert_eq!(header.attributes, info.attributes);
        prop_assert_eq!(
            header.attributes & header::attributes::TRANSACTIONAL != 0,
            producer.transactional
        );

        stamp(&mut stored, base_offset, leader_epoch);
        let view = BatchView::validate(&stored, BATCH_BYTES_MAX).expect("stamped batch validates");
        prop_assert_eq!(view.base_offset(), base_offset);
        let served = kafka::kafka_bytes(&stored);
        // As received, apart from the two stamped fields.
        prop_assert_eq!(&served[field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH], &kafka[field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH]);
        prop_assert_eq!(&served[field::MAGIC..], &kafka[field::MAGIC..]);
        let served_info = kafka::check(served).expect("served bytes are a valid Kafka batch");
        prop_assert_eq!(served_info.base_offset as u64, base_offset);
        prop_assert_eq!(served_info.partition_leader_epoch as u32, leader_epoch);

        // A Kafka reader decodes the served bytes to the records at the stamped offsets.
        let decoded = RecordBatchDecoder::decode(&mut Bytes::copy_from_slice(served)).expect("decodes");
        prop_assert_eq!(decoded.records.len(), inputs.len());
        for (index, (record, input)) in decoded.records.iter().zip(&inputs).enumerate() {
            prop_assert_eq!(record.offset as u64, base_offset + index as u64);
            prop_assert_eq!(record.value.as_deref(), input.value.as_deref());
            prop_assert_eq!(record.key.as_deref(), input.key.as_deref());
            prop_assert_eq!(record.timestamp, input.timestamp);
        }
    }

    #[test]
    fn any_flipped_byte_of_a_stored_kafka_batch_is_caught(
        inputs in proptest::collection::vec(input(), 1..6),
        producer in producer(),
        compression in compression(),
        base_offset in 0u64..(1 << 40),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let kafka = kafka_batch(&inputs, &producer, compression);
        let mut stored = kafka::wrap(&kafka).expect("wraps");
        stamp(&mut stored, base_offset, 0);
        let at = position.index(stored.len());
        stored[at] ^= flip;
        // Stamped fields included: the two headers' copies of them must agree.
        prop_assert!(BatchView::validate(&stored, BATCH_BYTES_MAX).is_err(), "flip at {} not caught", at);
    }

    #[test]
    fn a_flipped_byte_of_a_received_kafka_batch_fails_check_outside_the_stamped_fields(
        inputs in proptest::collection::vec(input(), 1..6),
        compression in compression(),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut kafka = kafka_batch(&inputs, &Producer { id: -1, epoch: -1, base_sequence: -1, transactional: false }, compression);
        let at = position.index(kafka.len());
        prop_assume!(!(field::BASE_OFFSET..field::BATCH_LENGTH).contains(&at));
        prop_assume!(!(field::PARTITION_LEADER_EPOCH..field::MAGIC).contains(&at));
        kafka[at] ^= flip;
        prop_assert!(kafka::check(&kafka).is_err(), "flip at {} not caught", at);
    }

    #[test]
    fn no_bytes_make_the_kafka_checks_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = kafka::check(&bytes);
        let _ = kafka::wrap(&bytes);
        // The same bytes behind a Spate header that claims format 2.
        let mut stored = vec![0u8; BATCH_HEADER_BYTES];
        BatchHeader {
            batch_length: (BATCH_HEADER_BYTES + bytes.len()) as u32,
            magic: spate_protocol::batch::BATCH_MAGIC,
            payload_format: PayloadFormat::KafkaV2 as u8,
            offset_count: 1,
            record_count: 1,
            ..BatchHeader::default()
        }
        .encode(&mut stored);
        stored.extend_from_slice(&bytes);
        let crc = header::compute_crc(&stored);
        stored[header::field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
        let _ = BatchView::validate(&stored, BATCH_BYTES_MAX);
        let _ = BatchIter::new(&stored, BATCH_BYTES_MAX).count();
        let _ = kafka::kafka_bytes(&stored);
    }
}

fn plain_batch() -> Vec<u8> {
    let inputs = vec![
        Input {
            key: Some(b"k".to_vec()),
            value: Some(b"hello".to_vec()),
            headers: vec![],
            timestamp: 1_700_000_000_000,
        };
        3
    ];
    let producer = Producer {
        id: -1,
        epoch: -1,
        base_sequence: -1,
        transactional: false,
    };
    kafka_batch(&inputs, &producer, Compression::None)
}

#[test]
fn message_sets_of_magic_0_and_1_are_told_apart_from_corruption() {
    for magic in [0u8, 1] {
        let mut kafka = plain_batch();
        kafka[field::MAGIC] = magic;
        assert_eq!(
            kafka::check(&kafka),
            Err(BatchError::KafkaMessageFormatTooOld { magic })
        );
        assert_eq!(
            kafka::wrap(&kafka).unwrap_err(),
            BatchError::KafkaMessageFormatTooOld { magic }
        );
    }
    let mut kafka = plain_batch();
    kafka[field::MAGIC] = 3;
    assert_eq!(
        kafka::check(&kafka),
        Err(BatchError::UnknownMagic { magic: 3 })
    );
}

#[test]
fn a_corrupt_kafka_crc_is_a_crc_mismatch() {
    let mut kafka = plain_batch();
    let last = kafka.len() - 1;
    kafka[last] ^= 1;
    assert!(matches!(
        kafka::check(&kafka),
        Err(BatchError::CrcMismatch { .. })
    ));
}

#[test]
fn the_bytes_must_be_exactly_one_batch() {
    let kafka = plain_batch();
    let mut two = kafka.clone();
    two.extend_from_slice(&kafka);
    assert_eq!(
        kafka::check(&two),
        Err(BatchError::KafkaLengthMismatch {
            declared: kafka.len(),
            received: two.len()
        })
    );
    assert!(matches!(
        kafka::check(&kafka[..kafka.len() - 1]),
        Err(BatchError::KafkaLengthMismatch { .. })
    ));
    assert!(matches!(
        kafka::check(&kafka[..KAFKA_BATCH_HEADER_BYTES - 1]),
        Err(BatchError::Truncated { .. })
    ));
    assert!(matches!(
        kafka::check(&kafka[..10]),
        Err(BatchError::Truncated { .. })
    ));
}

/// Whether an error is the one a case expects.
type ErrorMatcher = fn(&BatchError) -> bool;

#[test]
fn counts_attributes_and_offsets_are_checked_under_a_valid_crc() {
    let cases: [(usize, &[u8], ErrorMatcher); 5] = [
        (field::LAST_OFFSET_DELTA, &(-1i32).to_be_bytes(), |error| {
            matches!(error, BatchError::KafkaBadCounts { .. })
        }),
        (field::RECORD_COUNT, &4i32.to_be_bytes(), |error| {
            matches!(error, BatchError::KafkaBadCounts { .. })
        }),
        (field::ATTRIBUTES, &(1u16 << 6).to_be_bytes(), |error| {
            matches!(error, BatchError::UnknownAttributes { .. })
        }),
        (field::ATTRIBUTES, &5u16.to_be_bytes(), |error| {
            matches!(error, BatchError::UnsupportedCompression { codec: 5 })
        }),
        (field::MAX_TIMESTAMP, &0i64.to_be_bytes(), |error| {
            matches!(error, BatchError::BadTimestamps { .. })
        }),
    ];
    for (at, bytes, expected) in cases {
        let mut kafka = plain_batch();
        kafka[at..at + bytes.len()].copy_from_slice(bytes);
        forge_kafka_crc(&mut kafka);
        let error = kafka::check(&kafka).unwrap_err();
        assert!(expected(&error), "field at {at}: {error:?}");
    }
    let mut kafka = plain_batch();
    kafka[field::BASE_OFFSET..][..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    assert!(matches!(
        kafka::check(&kafka),
        Err(BatchError::OffsetOverflow { .. })
    ));
}

#[test]
fn wrap_refuses_what_kafka_refuses_from_a_producer() {
    let mut nonzero_base = plain_batch();
    nonzero_base[field::BASE_OFFSET..][..8].copy_from_slice(&5i64.to_be_bytes());
    assert!(kafka::check(&nonzero_base).is_ok());

    let mut fewer_records = plain_batch();
    fewer_records[field::RECORD_COUNT..][..4].copy_from_slice(&2i32.to_be_bytes());
    forge_kafka_crc(&mut fewer_records);

    let mut control = plain_batch();
    control[field::ATTRIBUTES..][..2].copy_from_slice(&header::attributes::CONTROL.to_be_bytes());
    forge_kafka_crc(&mut control);

    let mut no_sequence = plain_batch();
    no_sequence[field::PRODUCER_ID..][..8].copy_from_slice(&7i64.to_be_bytes());
    forge_kafka_crc(&mut no_sequence);

    for kafka in [nonzero_base, fewer_records, control, no_sequence] {
        assert!(kafka::check(&kafka).is_ok());
        assert!(matches!(
            kafka::wrap(&kafka),
            Err(BatchError::KafkaInvalidRecord { .. })
        ));
    }
}

#[test]
fn a_spate_header_that_disagrees_with_its_kafka_header_is_refused() {
    let mut stored = kafka::wrap(&plain_batch()).unwrap();
    // Rewrite the Spate record count and give it a valid Spate CRC: only the cross-check sees it.
    stored[header::field::RECORD_COUNT..][..4].copy_from_slice(&2u32.to_le_bytes());
    let crc = header::compute_crc(&stored);
    stored[header::field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(
        BatchView::validate(&stored, BATCH_BYTES_MAX).unwrap_err(),
        BatchError::KafkaHeaderMismatch {
            field: "record_count"
        }
    );
}

#[test]
fn a_format_2_batch_shorter_than_a_kafka_header_fails_the_header_check() {
    let header = BatchHeader {
        batch_length: (BATCH_HEADER_BYTES + KAFKA_BATCH_HEADER_BYTES - 1) as u32,
        magic: spate_protocol::batch::BATCH_MAGIC,
        payload_format: PayloadFormat::KafkaV2 as u8,
        offset_count: 1,
        record_count: 1,
        ..BatchHeader::default()
    };
    assert!(matches!(
        header.check(BATCH_BYTES_MAX),
        Err(BatchError::LengthTooSmall { .. })
    ));
}
