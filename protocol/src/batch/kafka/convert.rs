//! Native batch (payload format 1) to Kafka RecordBatch v2: what a Kafka consumer is served
//! for records a native producer wrote.
//!
//! [`to_kafka_v2`] validates the stored batch (header, CRC, rkyv archive, offset deltas), then
//! writes one uncompressed Kafka batch into a buffer sized once from an upper bound, so the
//! output never reallocates. Caching the result is the broker's business (Fetch's conversion
//! cache); this file only converts.
//!
//! Field mapping (native header → Kafka header):
//!
//! | Kafka field            | from                                                      |
//! |------------------------|-----------------------------------------------------------|
//! | `baseOffset`           | `base_offset` (stamped by the broker)                     |
//! | `partitionLeaderEpoch` | `leader_epoch` (stamped by the broker; 0 on one node)     |
//! | `attributes`           | `attributes` (timestamp type, transactional, control); no compression |
//! | `lastOffsetDelta`      | `offset_count - 1`                                        |
//! | `baseTimestamp`        | `first_timestamp`                                         |
//! | `maxTimestamp`         | `max_timestamp`                                           |
//! | producer id/epoch/sequence | the same fields                                       |
//! | `recordCount`          | `record_count`                                            |
//!
//! Each record keeps its offset delta, its timestamp delta (wrapping, as both formats read it
//! back), key and value (absent stays null, empty stays empty) and its headers in order.

use bytes::{BufMut, BytesMut};

use super::varint::{put_varint, put_varlong, varint_bytes, varlong_bytes};
use super::{field, KAFKA_BATCH_HEADER_BYTES, KAFKA_MAGIC};
use crate::batch::header::{attributes, PayloadFormat};
use crate::batch::view::{BatchView, RecordView};
use crate::constants::BATCH_BYTES_MAX;
use crate::error::BatchError;

/// Converts one stored batch into the Kafka RecordBatch v2 a Kafka consumer reads.
///
/// `stored` must start with exactly one stored batch (bytes after it are ignored), as storage
/// returns it: base offset and leader epoch stamped. Payload format 1 is converted; payload
/// format 2 (already Kafka) is copied out as stored. The batch is validated first (header,
/// CRC, records), so corrupt bytes give an error and never a wrong Kafka batch.
///
/// Cost: one CRC pass and one archive validation over the stored batch, one copy of every
/// key, value and header byte, one CRC-32C pass over the output. The output is at most the
/// stored payload plus the Kafka header in size: Kafka's varint framing of a record and of a
/// header is never longer than the archived entries it replaces (38 and 16 bytes).
pub fn to_kafka_v2(stored: &[u8]) -> Result<BytesMut, BatchError> {
    let view = BatchView::validate(stored, BATCH_BYTES_MAX)?;
    if view.payload_format() == PayloadFormat::KafkaV2 {
        return Ok(BytesMut::from(super::kafka_bytes(view.as_bytes())));
    }
    let records = view.records()?;
    let header = view.header();
    let Ok(last_offset_delta) = i32::try_from(header.offset_count - 1) else {
        // A native batch may span more offsets than Kafka's 32-bit deltas reach; real ones are
        // far smaller (BATCH_BYTES_MAX bytes hold at most ~440 000 records).
        return Err(BatchError::OffsetOverflow {
            base_offset: header.base_offset,
            offset_count: header.offset_count,
        });
    };
    let output_bytes_max = KAFKA_BATCH_HEADER_BYTES + view.payload().len();
    let mut kafka = BytesMut::with_capacity(output_bytes_max);
    kafka.put_i64(header.base_offset as i64);
    // batchLength and crc are written once the records are in.
    kafka.put_i32(0);
    kafka.put_i32(header.leader_epoch as i32);
    kafka.put_u8(KAFKA_MAGIC);
    kafka.put_u32(0);
    // Native format-1 payloads are never compressed (`BatchView::records` refused otherwise).
    kafka.put_u16(header.attributes & attributes::KNOWN & !attributes::COMPRESSION_MASK);
    kafka.put_i32(last_offset_delta);
    kafka.put_i64(header.first_timestamp);
    kafka.put_i64(header.max_timestamp);
    kafka.put_i64(header.producer_id);
    kafka.put_i16(header.producer_epoch);
    kafka.put_i32(header.base_sequence);
    // Fits: record_count <= offset_count, checked above to fit an i32 offset delta.
    kafka.put_i32(header.record_count as i32);
    debug_assert_eq!(kafka.len(), KAFKA_BATCH_HEADER_BYTES);
    for record in records {
        put_record(
            &mut kafka,
            &record,
            header.base_offset,
            header.first_timestamp,
        );
    }
    assert!(
        kafka.len() <= output_bytes_max,
        "Kafka batch of {} bytes exceeds its bound of {output_bytes_max}",
        kafka.len()
    );
    let batch_length = (kafka.len() - field::LENGTH_OVERHEAD) as i32;
    kafka[field::BATCH_LENGTH..][..4].copy_from_slice(&batch_length.to_be_bytes());
    let crc = crc32c::crc32c(&kafka[field::CRC_START..]);
    kafka[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    Ok(kafka)
}

/// Length of a key, value or header value as Kafka writes it: -1 for null.
#[inline]
fn length_of(bytes: Option<&[u8]>) -> i32 {
    // Fits: a validated batch is at most BATCH_BYTES_MAX (16 MiB) long.
    bytes.map_or(-1, |bytes| bytes.len() as i32)
}

#[inline]
fn bytes_with_length(bytes: Option<&[u8]>) -> usize {
    varint_bytes(length_of(bytes)) + bytes.map_or(0, <[u8]>::len)
}

#[inline]
fn put_bytes_with_length(target: &mut BytesMut, bytes: Option<&[u8]>) {
    put_varint(target, length_of(bytes));
    if let Some(bytes) = bytes {
        target.put_slice(bytes);
    }
}

/// Appends one Kafka record: its varint length, then attributes (always 0), timestamp delta,
/// offset delta, key, value and headers.
fn put_record(
    target: &mut BytesMut,
    record: &RecordView<'_>,
    base_offset: u64,
    base_timestamp: i64,
) {
    let timestamp_delta = record.timestamp().wrapping_sub(base_timestamp);
    // Fits: the offset delta is below offset_count, which the caller checked fits an i32.
    let offset_delta = (record.offset() - base_offset) as i32;
    let headers_bytes: usize = record
        .headers()
        .map(|(key, value)| {
            bytes_with_length(Some(key.as_bytes())) + bytes_with_length(Some(value))
        })
        .sum();
    let body_bytes = 1
        + varlong_bytes(timestamp_delta)
        + varint_bytes(offset_delta)
        + bytes_with_length(record.key())
        + bytes_with_length(record.value())
        + varint_bytes(record.header_count() as i32)
        + headers_bytes;
    let start = target.len();
    // Fits: one record is smaller than its 16 MiB batch.
    put_varint(target, body_bytes as i32);
    let body_start = target.len();
    target.put_u8(0);
    put_varlong(target, timestamp_delta);
    put_varint(target, offset_delta);
    put_bytes_with_length(target, record.key());
    put_bytes_with_length(target, record.value());
    put_varint(target, record.header_count() as i32);
    for (key, value) in record.headers() {
        put_bytes_with_length(target, Some(key.as_bytes()));
        put_bytes_with_length(target, Some(value));
    }
    debug_assert_eq!(target.len() - body_start, body_bytes);
    debug_assert!(target.len() > start);
}
