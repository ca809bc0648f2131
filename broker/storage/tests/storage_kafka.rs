//! Payload format 2 (Kafka RecordBatch v2 behind the Spate header) in the partition log: such
//! batches append beside native ones, survive a close or a crash byte for byte (recovery checks
//! them with the same CRC rule as the broker), and a corrupt one at the tail is cut off like a
//! native one.

mod storage_support;

use std::path::PathBuf;
use std::rc::Rc;

use bytes::BytesMut;
use spate_protocol::batch::header::BATCH_HEADER_BYTES;
use spate_protocol::batch::kafka::{self, field};
use spate_protocol::batch::{BatchView, PayloadFormat};
use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{AppendWait, MemoryFileSystem, PartitionLog, StorageError};
use storage_support::{block, directory, header_of, read_all, simple_batch, small_config, Setup};

fn log_path(base_offset: u64) -> PathBuf {
    directory().join(segment_file_name(base_offset, SegmentFileKind::Log))
}

/// A Kafka batch as a producer sends it (base offset 0, leader epoch -1, no producer id), of
/// `records` records and `total_bytes` bytes. The broker never parses Kafka records, so the
/// record area is filler that starts with `id`.
fn kafka_batch(id: u64, records: i32, total_bytes: usize) -> Vec<u8> {
    assert!(total_bytes >= field::END + 8);
    let mut kafka = vec![0u8; total_bytes];
    kafka[field::BATCH_LENGTH..][..4]
        .copy_from_slice(&((total_bytes - field::LENGTH_OVERHEAD) as i32).to_be_bytes());
    kafka[field::PARTITION_LEADER_EPOCH..][..4].copy_from_slice(&(-1i32).to_be_bytes());
    kafka[field::MAGIC] = kafka::KAFKA_MAGIC;
    kafka[field::LAST_OFFSET_DELTA..][..4].copy_from_slice(&(records - 1).to_be_bytes());
    kafka[field::BASE_TIMESTAMP..][..8].copy_from_slice(&1_700_000_000_000i64.to_be_bytes());
    kafka[field::MAX_TIMESTAMP..][..8].copy_from_slice(&1_700_000_000_009i64.to_be_bytes());
    kafka[field::PRODUCER_ID..][..8].copy_from_slice(&(-1i64).to_be_bytes());
    kafka[field::PRODUCER_EPOCH..][..2].copy_from_slice(&(-1i16).to_be_bytes());
    kafka[field::BASE_SEQUENCE..][..4].copy_from_slice(&(-1i32).to_be_bytes());
    kafka[field::RECORD_COUNT..][..4].copy_from_slice(&records.to_be_bytes());
    kafka[field::END..][..8].copy_from_slice(&id.to_le_bytes());
    for (index, byte) in kafka[field::END + 8..].iter_mut().enumerate() {
        *byte = (index as u64 ^ id) as u8;
    }
    let crc = crc32c::crc32c(&kafka[field::CRC_START..]);
    kafka[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    kafka
}

/// Whether `served` is the Kafka batch `sent` with only the stamped base offset and leader
/// epoch changed, and it carries `base_offset`.
fn same_kafka_batch(served: &[u8], sent: &[u8], base_offset: u64) -> bool {
    served.len() == sent.len()
        && served[field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH]
            == sent[field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH]
        && served[field::MAGIC..] == sent[field::MAGIC..]
        && kafka::check(served).is_ok_and(|info| info.base_offset as u64 == base_offset)
}

/// What was appended, in offset order: a Kafka batch (its bytes as sent) or a native one.
enum Sent {
    Kafka(Vec<u8>),
    Native(BytesMut),
}

/// Appends Kafka batches of 1..=4 records with a native batch after every third; returns them
/// with their base offsets.
fn append_mixed(log: &Rc<PartitionLog<MemoryFileSystem>>, count: u64) -> Vec<(u64, Sent)> {
    let log = log.clone();
    block(async move {
        let mut sent = Vec::new();
        for id in 0..count {
            let (batch, item) = if id % 3 == 2 {
                let native = simple_batch(id, 200, 1_700_000_000_000);
                (native.clone(), Sent::Native(native))
            } else {
                let kafka = kafka_batch(id, 1 + (id % 4) as i32, 400 + id as usize * 29);
                (kafka::wrap(&kafka).expect("wraps"), Sent::Kafka(kafka))
            };
            let outcome = log
                .append(batch, AppendWait::Durable)
                .await
                .expect("append");
            sent.push((outcome.base_offset, item));
        }
        sent
    })
}

fn check_read_back(log: &Rc<PartitionLog<MemoryFileSystem>>, sent: &[(u64, Sent)]) {
    let reader = log.clone();
    let stored = block(async move { read_all(&reader, 0, 1000).await.expect("read") });
    assert_eq!(stored.len(), sent.len());
    for (index, (stored, (base_offset, sent))) in stored.iter().zip(sent).enumerate() {
        let view = BatchView::validate(stored, usize::MAX).expect("stored batch validates");
        assert_eq!(view.base_offset(), *base_offset, "batch {index}");
        match sent {
            Sent::Kafka(kafka) => {
                assert_eq!(view.payload_format(), PayloadFormat::KafkaV2);
                assert!(
                    same_kafka_batch(kafka::kafka_bytes(stored), kafka, *base_offset),
                    "Kafka batch {index} differs"
                );
            }
            Sent::Native(native) => {
                assert_eq!(stored[12..], native[12..], "native batch {index} differs");
            }
        }
    }
}

#[test]
fn kafka_batches_append_beside_native_ones_and_survive_a_reopen_byte_for_byte() {
    let setup = Setup::new(41);
    let log = Rc::new(setup.open(small_config()));
    let sent = append_mixed(&log, 30);
    assert!(log.segment_count() > 1, "the test crosses a segment roll");
    check_read_back(&log, &sent);
    let next_offset = log.next_offset();

    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.next_offset(), next_offset);
    check_read_back(&log, &sent);

    // A crash (no close): recovery scans the tail and keeps every batch.
    drop(log);
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.next_offset(), next_offset);
    check_read_back(&log, &sent);
}

/// Appends four Kafka batches of 300 bytes stored (one segment); returns the log.
fn four_kafka_batches(setup: &Setup) -> Rc<PartitionLog<MemoryFileSystem>> {
    let log = Rc::new(setup.open(small_config()));
    let appender = log.clone();
    block(async move {
        for id in 0..4 {
            let stored = kafka::wrap(&kafka_batch(id, 1, 300 - BATCH_HEADER_BYTES)).unwrap();
            appender
                .append(stored, AppendWait::Durable)
                .await
                .expect("append");
        }
    });
    log
}

#[test]
fn recovery_truncates_a_kafka_batch_torn_in_its_records_or_its_kafka_header() {
    // Byte positions inside the last stored batch: a record byte (Kafka's CRC), Kafka's CRC
    // field and its batch length (the Spate CRC), its stamped base offset (the headers'
    // agreement), and the Spate header's record count (the Spate CRC).
    let kafka_start = BATCH_HEADER_BYTES;
    let torn_at = [
        kafka_start + 200,
        kafka_start + field::CRC + 1,
        kafka_start + field::BATCH_LENGTH + 3,
        kafka_start + field::BASE_OFFSET + 7,
        spate_protocol::batch::header::field::RECORD_COUNT,
    ];
    for (seed, at) in torn_at.into_iter().enumerate() {
        let setup = Setup::new(50 + seed as u64);
        let log = four_kafka_batches(&setup);
        drop(log);
        let position = 3 * 300 + at as u64;
        let byte = setup.disk.file_bytes(&log_path(0)).unwrap()[position as usize];
        setup
            .disk
            .overwrite_durably(&log_path(0), position, &[byte ^ 0x5a]);
        let log = Rc::new(setup.open(small_config()));
        assert_eq!(
            log.next_offset(),
            3,
            "torn byte {at}: the torn batch is cut off"
        );
        assert_eq!(
            setup.disk.file_bytes(&log_path(0)).map(|bytes| bytes.len()),
            Some(3 * 300)
        );
        let reader = log.clone();
        let stored = block(async move { read_all(&reader, 0, 100).await.expect("read") });
        assert_eq!(stored.len(), 3);
        assert!(stored
            .iter()
            .all(|batch| header_of(batch).payload_format == PayloadFormat::KafkaV2 as u8));
    }
}

#[test]
fn append_refuses_a_kafka_batch_whose_records_changed_after_wrapping() {
    let setup = Setup::new(60);
    let log = Rc::new(setup.open(small_config()));
    let mut stored = kafka::wrap(&kafka_batch(1, 2, 200)).unwrap();
    let last = stored.len() - 1;
    stored[last] ^= 1;
    let result = block(async move { log.append(stored, AppendWait::Durable).await });
    assert!(
        matches!(result, Err(StorageError::InvalidBatch(_))),
        "{result:?}"
    );
}
