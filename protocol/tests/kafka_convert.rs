//! Native batch to Kafka RecordBatch v2 (`batch::kafka::to_kafka_v2`): random native batches
//! are converted and decoded by the `kafka-protocol` crate's reference decoder (which checks
//! Kafka's CRC), and every batch and record field is compared with what the native reader sees.

use bytes::Bytes;
use kafka_protocol::records::{RecordBatchDecoder, TimestampType};
use proptest::prelude::*;
use spate_protocol::batch::header::{self, stamp, stamp_producer, BATCH_HEADER_BYTES};
use spate_protocol::batch::kafka::{self, to_kafka_v2, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, Record, RecordHeader};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::BatchError;

#[derive(Debug, Clone)]
struct Producer {
    id: i64,
    epoch: i16,
    base_sequence: i32,
    transactional: bool,
}

fn producer() -> impl Strategy<Value = Producer> {
    prop_oneof![
        Just(Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false
        }),
        (0i64..i64::MAX, 0i16..i16::MAX, 0..i32::MAX, any::<bool>()).prop_map(
            |(id, epoch, base_sequence, transactional)| Producer {
                id,
                epoch,
                base_sequence,
                transactional
            }
        ),
    ]
}

/// Bytes whose sizes cross the varint boundaries (127/128, 16383/16384) now and then.
fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => proptest::collection::vec(any::<u8>(), 0..max),
        1 => (126usize..130).prop_map(|length| vec![0xa5; length]),
        1 => (16_382usize..16_386).prop_map(|length| vec![0x5a; length]),
    ]
}

/// A record as a native producer appends it. Header keys are unique within a record here
/// because the reference decoder keeps headers in a map; repeated keys are tested below.
fn record() -> impl Strategy<Value = Record> {
    (
        proptest::option::of(bytes(40)),
        proptest::option::of(bytes(300)),
        proptest::collection::btree_map("[a-zA-Z0-9._-]{0,12}", bytes(20), 0..4),
        // Negative (-1 is Kafka's "no timestamp") to far future, in any order within a batch.
        -1i64..(1 << 45),
    )
        .prop_map(|(key, value, headers, timestamp)| Record {
            offset: 0,
            timestamp,
            key: key.map(Bytes::from),
            value: value.map(Bytes::from),
            headers: headers
                .into_iter()
                .map(|(key, value)| RecordHeader {
                    key,
                    value: Bytes::from(value),
                })
                .collect(),
        })
}

/// A sealed, stamped native batch of `records`, as storage returns it.
fn native_batch(
    records: &[Record],
    producer: &Producer,
    base_offset: u64,
    leader_epoch: u32,
) -> Vec<u8> {
    let attributes = if producer.transactional {
        header::attributes::TRANSACTIONAL
    } else {
        0
    };
    let mut builder = BatchBuilder::new(BatchOptions {
        attributes,
        ..BatchOptions::default()
    });
    for record in records {
        builder
            .append(
                record.key.as_deref(),
                record.value.as_deref(),
                &record.headers,
                record.timestamp,
            )
            .expect("fits");
    }
    let mut batch = builder.seal().expect("not empty");
    // As an idempotent producer does after sealing, so the CRC update path is covered too.
    stamp_producer(
        &mut batch,
        producer.id,
        producer.epoch,
        producer.base_sequence,
    );
    stamp(&mut batch, base_offset, leader_epoch);
    batch.to_vec()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn a_converted_native_batch_decodes_in_kafka_to_the_same_records_and_fields(
        records in proptest::collection::vec(record(), 1..40),
        producer in producer(),
        base_offset in 0u64..(1 << 62),
        leader_epoch in 0u32..(i32::MAX as u32),
    ) {
        let stored = native_batch(&records, &producer, base_offset, leader_epoch);
        let native = BatchView::validate(&stored, BATCH_BYTES_MAX).expect("valid");
        let expected: Vec<Record> = native.records().expect("records").map(|view| view.to_record()).collect();

        let converted = to_kafka_v2(&stored).expect("converts");
        prop_assert!(converted.len() <= KAFKA_BATCH_HEADER_BYTES + native.payload().len());

        // Header fields, through Spate's own Kafka check (CRC-32C, lengths, counts).
        let info = kafka::check(&converted).expect("a valid Kafka batch");
        prop_assert_eq!(info.batch_bytes, converted.len());
        prop_assert_eq!(info.base_offset as u64, base_offset);
        prop_assert_eq!(info.partition_leader_epoch as u32, leader_epoch);
        prop_assert_eq!(info.attributes, native.attributes());
        prop_assert_eq!(info.last_offset_delta as usize, records.len() - 1);
        prop_assert_eq!(info.base_timestamp, records[0].timestamp);
        prop_assert_eq!(info.max_timestamp, records.iter().map(|record| record.timestamp).max().unwrap());
        prop_assert_eq!(info.producer_id, producer.id);
        prop_assert_eq!(info.producer_epoch, producer.epoch);
        prop_assert_eq!(info.base_sequence, producer.base_sequence);
        prop_assert_eq!(info.record_count as usize, records.len());
        prop_assert_eq!(info.is_transactional(), producer.transactional);
        prop_assert!(!info.is_control());

        // Records, through the reference decoder.
        let decoded = RecordBatchDecoder::decode(&mut Bytes::from(converted.to_vec())).expect("decodes");
        prop_assert_eq!(decoded.version, 2);
        prop_assert_eq!(decoded.records.len(), expected.len());
        for (index, (kafka, native)) in decoded.records.iter().zip(&expected).enumerate() {
            prop_assert_eq!(kafka.offset as u64, base_offset + index as u64);
            prop_assert_eq!(kafka.offset as u64, native.offset);
            prop_assert_eq!(kafka.timestamp, records[index].timestamp);
            prop_assert_eq!(kafka.timestamp, native.timestamp);
            prop_assert_eq!(kafka.timestamp_type, TimestampType::Creation);
            prop_assert_eq!(&kafka.key, &native.key);
            prop_assert_eq!(&kafka.value, &native.value);
            prop_assert_eq!(&kafka.key, &records[index].key);
            prop_assert_eq!(&kafka.value, &records[index].value);
            let headers: Vec<(String, Option<Bytes>)> = kafka
                .headers
                .iter()
                .map(|(key, value)| (key.to_string(), value.clone()))
                .collect();
            let native_headers: Vec<(String, Option<Bytes>)> = native
                .headers
                .iter()
                .map(|header| (header.key.clone(), Some(header.value.clone())))
                .collect();
            prop_assert_eq!(headers, native_headers);
            prop_assert_eq!(kafka.producer_id, producer.id);
            prop_assert_eq!(kafka.producer_epoch, producer.epoch);
            prop_assert_eq!(kafka.sequence, producer.base_sequence.wrapping_add(index as i32));
            prop_assert_eq!(kafka.transactional, producer.transactional);
            prop_assert!(!kafka.control);
            prop_assert_eq!(kafka.partition_leader_epoch as u32, leader_epoch);
        }
    }

    #[test]
    fn any_flipped_byte_of_a_stored_native_batch_is_refused_not_converted(
        records in proptest::collection::vec(record(), 1..5),
        position in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let mut stored = native_batch(&records, &Producer { id: -1, epoch: -1, base_sequence: -1, transactional: false }, 1000, 0);
        let at = position.index(stored.len());
        // Base offset and leader epoch are outside the CRC by design (stamped by the broker).
        prop_assume!(at >= header::field::CRC);
        stored[at] ^= flip;
        prop_assert!(to_kafka_v2(&stored).is_err(), "flip at {} converted", at);
    }

    #[test]
    fn no_bytes_make_the_conversion_panic(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = to_kafka_v2(&bytes);
    }
}

#[test]
fn null_and_empty_keys_and_values_stay_apart() {
    let records = [
        (None, None),
        (Some(&b""[..]), Some(&b""[..])),
        (None, Some(&b"v"[..])),
        (Some(&b"k"[..]), None),
    ]
    .map(|(key, value)| Record {
        key: key.map(Bytes::from_static),
        value: value.map(Bytes::from_static),
        timestamp: 7,
        ..Record::default()
    });
    let stored = native_batch(
        &records,
        &Producer {
            id: 4,
            epoch: 2,
            base_sequence: 10,
            transactional: false,
        },
        0,
        0,
    );
    let decoded =
        RecordBatchDecoder::decode(&mut Bytes::from(to_kafka_v2(&stored).unwrap().to_vec()))
            .unwrap();
    let seen: Vec<_> = decoded
        .records
        .iter()
        .map(|record| (record.key.clone(), record.value.clone()))
        .collect();
    let expected: Vec<_> = records
        .iter()
        .map(|record| (record.key.clone(), record.value.clone()))
        .collect();
    assert_eq!(seen, expected);
}

#[test]
fn repeated_header_keys_are_written_in_order() {
    let headers = vec![
        RecordHeader {
            key: "trace".into(),
            value: Bytes::from_static(b"a"),
        },
        RecordHeader {
            key: "trace".into(),
            value: Bytes::from_static(b"b"),
        },
    ];
    let record = Record {
        value: Some(Bytes::from_static(b"v")),
        headers,
        ..Record::default()
    };
    let stored = native_batch(
        &[record],
        &Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false,
        },
        0,
        0,
    );
    let converted = to_kafka_v2(&stored).unwrap();
    // The single record's bytes: length, attributes 0, deltas 0, null key, value "v", then two
    // headers "trace"="a" and "trace"="b" (varints zig-zag encoded).
    let record_bytes = &converted[KAFKA_BATCH_HEADER_BYTES..];
    let body: &[u8] = &[
        0, 0, 0, 1, 2, b'v', 4, 10, b't', b'r', b'a', b'c', b'e', 2, b'a', 10, b't', b'r', b'a',
        b'c', b'e', 2, b'b',
    ];
    assert_eq!(record_bytes[0], (body.len() * 2) as u8, "zig-zag length");
    assert_eq!(&record_bytes[1..], body);
}

#[test]
fn a_batch_near_the_size_limit_converts_in_one_allocation() {
    let value = Bytes::from(vec![0x42u8; BATCH_BYTES_MAX - 4096]);
    let record = Record {
        key: Some(Bytes::from_static(b"big")),
        value: Some(value.clone()),
        timestamp: 1,
        ..Record::default()
    };
    let stored = native_batch(
        &[record],
        &Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false,
        },
        5,
        0,
    );
    let converted = to_kafka_v2(&stored).unwrap();
    assert!(converted.capacity() <= KAFKA_BATCH_HEADER_BYTES + stored.len() - BATCH_HEADER_BYTES);
    let decoded = RecordBatchDecoder::decode(&mut Bytes::from(converted.to_vec())).unwrap();
    assert_eq!(decoded.records[0].value.as_ref(), Some(&value));
    assert_eq!(decoded.records[0].offset, 5);
}

#[test]
fn a_stored_kafka_batch_is_served_as_stored() {
    // A native batch converted, then wrapped as a producer's Kafka batch would be.
    let record = Record {
        value: Some(Bytes::from_static(b"kafka")),
        timestamp: 3,
        ..Record::default()
    };
    let native = native_batch(
        &[record],
        &Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false,
        },
        0,
        0,
    );
    let kafka_batch = to_kafka_v2(&native).unwrap();
    let mut stored = kafka::wrap(&kafka_batch).unwrap();
    stamp(&mut stored, 77, 3);
    let served = to_kafka_v2(&stored).unwrap();
    assert_eq!(&served[..], kafka::kafka_bytes(&stored));
    assert_eq!(kafka::check(&served).unwrap().base_offset, 77);
}

#[test]
fn a_corrupt_stored_batch_is_an_error() {
    let record = Record {
        value: Some(Bytes::from_static(b"x")),
        ..Record::default()
    };
    let mut stored = native_batch(
        &[record],
        &Producer {
            id: -1,
            epoch: -1,
            base_sequence: -1,
            transactional: false,
        },
        0,
        0,
    );
    let last = stored.len() - 1;
    stored[last] ^= 1;
    assert!(matches!(
        to_kafka_v2(&stored),
        Err(BatchError::CrcMismatch { .. })
    ));
    assert!(matches!(
        to_kafka_v2(&stored[..10]),
        Err(BatchError::Truncated { .. })
    ));
}
