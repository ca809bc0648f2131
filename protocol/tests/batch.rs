//! Record batch properties: build → validate → iterate returns the input, corruption is caught,
//! and no input bytes can make validation or iteration panic.

use bytes::Bytes;
use proptest::prelude::*;
use spate_protocol::batch::header::{self, compute_crc, field, stamp, BATCH_HEADER_BYTES};
use spate_protocol::batch::{
    BatchBuilder, BatchIter, BatchOptions, BatchView, PayloadFormat, Record, RecordHeader,
    NO_HEADERS,
};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::{BatchError, BuildError};

#[derive(Debug, Clone, PartialEq)]
struct InputRecord {
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn input_record() -> impl Strategy<Value = InputRecord> {
    (
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        proptest::option::of(proptest::collection::vec(any::<u8>(), 0..256)),
        proptest::collection::vec(
            (".{0,12}", proptest::collection::vec(any::<u8>(), 0..16)),
            0..4,
        ),
        any::<i64>(),
    )
        .prop_map(|(key, value, headers, timestamp)| InputRecord {
            key,
            value,
            headers,
            timestamp,
        })
}

fn options() -> impl Strategy<Value = BatchOptions> {
    (any::<i64>(), any::<i16>(), any::<i32>(), any::<bool>()).prop_map(
        |(producer_id, producer_epoch, base_sequence, transactional)| BatchOptions {
            producer_id,
            producer_epoch,
            base_sequence,
            attributes: if transactional {
                header::attributes::TRANSACTIONAL
            } else {
                0
            },
            ..BatchOptions::default()
        },
    )
}

fn build(options: BatchOptions, records: &[InputRecord]) -> bytes::BytesMut {
    let mut builder = BatchBuilder::new(options);
    for record in records {
        builder
            .append(
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
                record.timestamp,
            )
            .expect("records fit the default limit");
    }
    let expected_bytes = builder.estimated_bytes();
    let batch = builder.seal().expect("non-empty batch seals");
    assert_eq!(batch.len(), expected_bytes, "estimated_bytes is exact");
    batch
}

fn small_batch(record_count: usize) -> bytes::BytesMut {
    let records: Vec<InputRecord> = (0..record_count)
        .map(|index| InputRecord {
            key: Some(format!("key-{index}").into_bytes()),
            value: Some(vec![index as u8; 40]),
            headers: vec![("trace".to_owned(), vec![1, 2, 3])],
            timestamp: 1_700_000_000_000 + index as i64,
        })
        .collect();
    build(BatchOptions::default(), &records)
}

/// Rewrites a header field and recomputes the CRC, as a buggy or hostile producer could.
fn forge(batch: &mut [u8], at: usize, bytes: &[u8]) {
    batch[at..at + bytes.len()].copy_from_slice(bytes);
    let crc = compute_crc(batch);
    batch[field::CRC..field::CRC + 4].copy_from_slice(&crc.to_le_bytes());
}

proptest! {
    #[test]
    fn built_batch_reads_back_the_records_it_was_given(
        options in options(),
        records in proptest::collection::vec(input_record(), 1..40),
        base_offset in 0u64..(1 << 62),
        leader_epoch in any::<u32>(),
    ) {
        let mut batch = build(options, &records);
        stamp(&mut batch, base_offset, leader_epoch);
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("sealed batch is valid");

        prop_assert_eq!(view.batch_length(), batch.len());
        prop_assert_eq!(view.base_offset(), base_offset);
        prop_assert_eq!(view.header().leader_epoch, leader_epoch);
        prop_assert_eq!(view.record_count() as usize, records.len());
        prop_assert_eq!(view.next_offset(), base_offset + records.len() as u64);
        prop_assert_eq!(view.producer_id(), options.producer_id);
        prop_assert_eq!(view.producer_epoch(), options.producer_epoch);
        prop_assert_eq!(view.base_sequence(), options.base_sequence);
        prop_assert_eq!(view.attributes(), options.attributes);
        prop_assert_eq!(view.payload_format(), PayloadFormat::Rkyv);
        prop_assert_eq!(view.first_timestamp(), records[0].timestamp);
        let max_timestamp = records.iter().map(|record| record.timestamp).max();
        prop_assert_eq!(Some(view.max_timestamp()), max_timestamp);

        let read: Vec<InputRecord> = view
            .records()
            .expect("records validate")
            .map(|record| InputRecord {
                key: record.key().map(<[u8]>::to_vec),
                value: record.value().map(<[u8]>::to_vec),
                headers: record
                    .headers()
                    .map(|(key, value)| (key.to_owned(), value.to_vec()))
                    .collect(),
                timestamp: record.timestamp(),
            })
            .collect();
        prop_assert_eq!(&read, &records);
        let offsets: Vec<u64> = view.records().unwrap().map(|record| record.offset()).collect();
        let expected: Vec<u64> = (0..records.len() as u64).map(|delta| base_offset + delta).collect();
        prop_assert_eq!(offsets, expected);
    }

    #[test]
    fn any_single_bit_flip_inside_the_crc_range_is_detected(
        record_count in 1usize..8,
        position_seed in any::<prop::sample::Index>(),
        bit in 0u8..8,
    ) {
        let mut batch = small_batch(record_count);
        let position = field::CRC + position_seed.index(batch.len() - field::CRC);
        batch[position] ^= 1 << bit;
        prop_assert!(BatchView::validate(&batch, BATCH_BYTES_MAX).is_err());
    }

    #[test]
    fn stamping_broker_fields_keeps_the_crc_valid(
        base_offset in 0u64..(1 << 62),
        leader_epoch in any::<u32>(),
    ) {
        let mut batch = small_batch(3);
        let crc_before = batch[field::CRC..field::CRC + 4].to_vec();
        stamp(&mut batch, base_offset, leader_epoch);
        prop_assert_eq!(&batch[field::CRC..field::CRC + 4], &crc_before[..]);
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("stamped batch is valid");
        prop_assert_eq!(view.base_offset(), base_offset);
        prop_assert_eq!(view.records().unwrap().next().unwrap().offset(), base_offset);
    }

    #[test]
    fn arbitrary_bytes_never_panic_validate_records_or_iteration(
        bytes in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        if let Ok(view) = BatchView::validate(&bytes, BATCH_BYTES_MAX) {
            if let Ok(records) = view.records() {
                records.for_each(|record| { let _ = record.headers().count(); });
            }
        }
        let mut iter = BatchIter::new(&bytes, BATCH_BYTES_MAX);
        for view in iter.by_ref().flatten() {
            let _ = view.records().map(|records| records.count());
        }
        prop_assert!(iter.consumed_bytes() <= bytes.len());
    }

    #[test]
    fn arbitrary_payload_behind_a_valid_header_and_crc_never_panics(
        payload in proptest::collection::vec(any::<u8>(), 0..512),
        record_count in 1u32..8,
    ) {
        // The CRC stops random bytes from reaching the archive reader; forging it does not.
        let mut batch = small_batch(1).to_vec();
        batch.truncate(BATCH_HEADER_BYTES);
        batch.extend_from_slice(&payload);
        let length = batch.len() as u32;
        batch[field::BATCH_LENGTH..][..4].copy_from_slice(&length.to_le_bytes());
        batch[field::OFFSET_COUNT..][..4].copy_from_slice(&record_count.to_le_bytes());
        forge(&mut batch, field::RECORD_COUNT, &record_count.to_le_bytes());
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("forged CRC matches");
        if let Ok(records) = view.records() {
            records.for_each(|record| { let _ = record.headers().count(); });
        }
    }

    #[test]
    fn corrupted_payload_with_recomputed_crc_never_panics(
        record_count in 1usize..6,
        position_seed in any::<prop::sample::Index>(),
        replacement in any::<u8>(),
    ) {
        let mut batch = small_batch(record_count);
        let position = BATCH_HEADER_BYTES + position_seed.index(batch.len() - BATCH_HEADER_BYTES);
        forge(&mut batch, position, &[replacement]);
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("forged CRC matches");
        if let Ok(records) = view.records() {
            records.for_each(|record| { let _ = record.headers().count(); });
        }
    }
}

#[test]
fn empty_batch_cannot_be_sealed() {
    let builder = BatchBuilder::new(BatchOptions::default());
    assert_eq!(builder.seal().unwrap_err(), BuildError::Empty);
}

#[test]
fn append_over_the_limit_fails_and_leaves_the_builder_unchanged() {
    let options = BatchOptions {
        batch_bytes_max: 1024,
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(options);
    builder
        .append(Some(b"k"), Some(&[7u8; 500]), NO_HEADERS, 10)
        .unwrap();
    let bytes_before = builder.estimated_bytes();
    let error = builder
        .append(Some(b"k"), Some(&[7u8; 500]), NO_HEADERS, 11)
        .unwrap_err();
    assert!(
        matches!(error, BuildError::WouldExceedLimit { limit: 1024, .. }),
        "{error:?}"
    );
    assert_eq!(builder.estimated_bytes(), bytes_before);
    assert_eq!(builder.record_count(), 1);
    let batch = builder.seal().unwrap();
    assert!(batch.len() <= 1024);
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    assert_eq!(view.records().unwrap().count(), 1);
}

#[test]
fn batch_of_exactly_the_limit_is_accepted() {
    let probe = small_batch(1);
    let options = BatchOptions {
        batch_bytes_max: probe.len(),
        ..BatchOptions::default()
    };
    let mut builder = BatchBuilder::new(options);
    builder
        .append(
            Some(b"key-0"),
            Some(&[0u8; 40]),
            &[("trace", &[1u8, 2, 3][..])],
            0,
        )
        .expect("exactly at the limit fits");
    assert_eq!(builder.seal().unwrap().len(), probe.len());
}

#[test]
fn validate_rejects_a_buffer_shorter_than_batch_length() {
    let batch = small_batch(2);
    let error = BatchView::validate(&batch[..batch.len() - 1], BATCH_BYTES_MAX).unwrap_err();
    assert_eq!(
        error,
        BatchError::Truncated {
            needed: batch.len(),
            available: batch.len() - 1
        }
    );
}

#[test]
fn validate_covers_exactly_batch_length_and_ignores_what_follows() {
    let batch = small_batch(2);
    let mut longer = batch.to_vec();
    longer.extend_from_slice(&[0xAB; 100]);
    let view = BatchView::validate(&longer, BATCH_BYTES_MAX).unwrap();
    assert_eq!(view.as_bytes(), &batch[..]);
}

#[test]
fn validate_rejects_a_batch_above_the_callers_limit() {
    let batch = small_batch(2);
    let error = BatchView::validate(&batch, batch.len() - 1).unwrap_err();
    assert!(matches!(error, BatchError::TooLarge { .. }), "{error:?}");
}

#[test]
fn base_offset_that_overflows_the_offset_space_is_rejected() {
    let mut batch = small_batch(2);
    stamp(&mut batch, i64::MAX as u64 - 1, 0);
    let error = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap_err();
    assert!(
        matches!(error, BatchError::OffsetOverflow { .. }),
        "{error:?}"
    );
}

#[test]
fn a_native_payload_labelled_as_a_kafka_batch_fails_validation() {
    let mut batch = small_batch(2);
    forge(
        &mut batch,
        field::PAYLOAD_FORMAT,
        &[PayloadFormat::KafkaV2 as u8],
    );
    // The Spate CRC holds (forged); the Kafka header behind it does not (see tests/kafka_batch.rs).
    assert!(BatchView::validate(&batch, BATCH_BYTES_MAX).is_err());
}

#[test]
fn compressed_batch_records_are_unsupported() {
    let mut batch = small_batch(2);
    forge(&mut batch, field::ATTRIBUTES, &1u16.to_le_bytes());
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    assert_eq!(
        view.records().unwrap_err(),
        BatchError::UnsupportedCompression { codec: 1 }
    );
}

#[test]
fn record_count_that_disagrees_with_the_archive_is_rejected() {
    let mut batch = small_batch(3);
    forge(&mut batch, field::RECORD_COUNT, &2u32.to_le_bytes());
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    assert_eq!(
        view.records().unwrap_err(),
        BatchError::RecordCountMismatch {
            expected: 2,
            actual: 3
        }
    );
}

/// Where record entry `index` starts, read from the archive root at the end of the batch:
/// a 4-byte relative pointer (from the root's own position) then a 4-byte length.
fn record_entry_position(batch: &[u8], index: usize) -> usize {
    const ARCHIVED_RECORD_ENTRY_BYTES: usize = 38;
    let root = batch.len() - 8;
    let relative = i32::from_le_bytes(batch[root..root + 4].try_into().unwrap());
    let entries = (root as i64 + i64::from(relative)) as usize;
    entries + index * ARCHIVED_RECORD_ENTRY_BYTES
}

#[test]
fn offset_deltas_that_repeat_or_leave_the_offset_range_are_rejected() {
    for (forged_delta, offset_count) in [(0u32, 3u32), (3, 3), (7, 5)] {
        let mut batch = small_batch(3);
        forge(&mut batch, field::OFFSET_COUNT, &offset_count.to_le_bytes());
        let entry = record_entry_position(&batch, 1);
        assert_eq!(
            &batch[entry..entry + 4],
            &1u32.to_le_bytes(),
            "entry 1 has delta 1"
        );
        forge(&mut batch, entry, &forged_delta.to_le_bytes());
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
        assert_eq!(
            view.records().unwrap_err(),
            BatchError::BadOffsetDelta {
                index: 1,
                offset_delta: forged_delta,
                offset_count
            }
        );
    }
}

#[test]
fn batch_with_gaps_in_its_offset_range_reads_fine() {
    // As after compaction: three records spread over ten offsets.
    let mut batch = small_batch(3);
    forge(&mut batch, field::OFFSET_COUNT, &10u32.to_le_bytes());
    let entry = record_entry_position(&batch, 2);
    forge(&mut batch, entry, &9u32.to_le_bytes());
    stamp(&mut batch, 100, 0);
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    assert_eq!(view.next_offset(), 110);
    let offsets: Vec<u64> = view
        .records()
        .unwrap()
        .map(|record| record.offset())
        .collect();
    assert_eq!(offsets, vec![100, 101, 109]);
}

#[test]
fn truncated_payload_with_valid_crc_is_an_invalid_archive() {
    let mut batch = small_batch(3).to_vec();
    batch.truncate(batch.len() - 3);
    let length = batch.len() as u32;
    forge(&mut batch, field::BATCH_LENGTH, &length.to_le_bytes());
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    assert!(matches!(
        view.records().unwrap_err(),
        BatchError::InvalidPayload { .. }
    ));
}

#[test]
fn batch_iter_yields_complete_batches_and_stops_at_a_partial_tail() {
    let batches = [small_batch(1), small_batch(2), small_batch(3)];
    let mut buffer = Vec::new();
    for batch in &batches {
        buffer.extend_from_slice(batch);
    }
    let complete_bytes = buffer.len();
    buffer.extend_from_slice(&small_batch(4)[..100]);

    let mut iter = BatchIter::new(&buffer, BATCH_BYTES_MAX);
    let counts: Vec<u32> = iter
        .by_ref()
        .map(|view| view.unwrap().record_count())
        .collect();
    assert_eq!(counts, vec![1, 2, 3]);
    assert_eq!(iter.consumed_bytes(), complete_bytes);
    assert_eq!(iter.remainder().len(), 100);
}

#[test]
fn batch_iter_treats_a_fragment_shorter_than_a_header_as_partial() {
    let mut buffer = small_batch(1).to_vec();
    let first_length = buffer.len();
    buffer.extend_from_slice(&[0xFF; BATCH_HEADER_BYTES - 1]);
    let mut iter = BatchIter::new(&buffer, BATCH_BYTES_MAX);
    assert!(iter.next().unwrap().is_ok());
    assert!(iter.next().is_none());
    assert_eq!(iter.consumed_bytes(), first_length);
}

#[test]
fn batch_iter_reports_a_corrupt_batch_once_and_stops() {
    let first = small_batch(1);
    let mut second = small_batch(2);
    let last = second.len() - 1;
    second[last] ^= 0x01;
    let mut buffer = first.to_vec();
    buffer.extend_from_slice(&second);
    buffer.extend_from_slice(&small_batch(1));

    let mut iter = BatchIter::new(&buffer, BATCH_BYTES_MAX);
    assert!(iter.next().unwrap().is_ok());
    assert!(matches!(
        iter.next().unwrap(),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert!(iter.next().is_none());
    assert_eq!(iter.consumed_bytes(), first.len());
}

#[test]
fn batch_iter_reports_a_corrupt_header_even_when_the_batch_is_partial() {
    let mut batch = small_batch(2);
    batch[field::MAGIC] = 9;
    let mut iter = BatchIter::new(&batch[..BATCH_HEADER_BYTES + 1], BATCH_BYTES_MAX);
    assert_eq!(
        iter.next().unwrap().unwrap_err(),
        BatchError::UnknownMagic { magic: 9 }
    );
}

#[test]
fn owned_record_shares_bytes_with_the_batch_buffer() {
    let batch: Bytes = small_batch(2).freeze();
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    let record_view = view.records().unwrap().nth(1).unwrap();
    let shared = record_view.to_record_sharing(&batch);
    let copied = record_view.to_record();
    assert_eq!(shared, copied);
    assert_eq!(
        shared,
        Record {
            offset: 1,
            timestamp: 1_700_000_000_001,
            key: Some(Bytes::from_static(b"key-1")),
            value: Some(Bytes::from(vec![1u8; 40])),
            headers: vec![RecordHeader {
                key: "trace".to_owned(),
                value: Bytes::from_static(&[1, 2, 3]),
            }],
        }
    );
    let batch_range = batch.as_ptr_range();
    let shared_value = shared.value.as_ref().unwrap().as_ptr();
    assert!(
        batch_range.contains(&shared_value),
        "value points into the batch"
    );
    let copied_value = copied.value.as_ref().unwrap().as_ptr();
    assert!(!batch_range.contains(&copied_value), "to_record copies");
}

#[test]
fn owned_records_can_be_appended_with_their_headers() {
    let record = Record {
        key: None,
        value: None,
        headers: vec![RecordHeader {
            key: "h".to_owned(),
            value: Bytes::from_static(b"v"),
        }],
        ..Record::default()
    };
    let mut builder = BatchBuilder::new(BatchOptions::default());
    builder
        .append(
            record.key.as_deref(),
            record.value.as_deref(),
            &record.headers,
            5,
        )
        .unwrap();
    let batch = builder.seal().unwrap();
    let view = BatchView::validate(&batch, BATCH_BYTES_MAX).unwrap();
    let read = view.records().unwrap().next().unwrap().to_record();
    assert_eq!(read.headers, record.headers);
    assert_eq!(read.value, None, "tombstone stays a tombstone");
    assert_eq!(read.timestamp, 5);
}
