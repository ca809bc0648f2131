//! Transaction markers: Kafka control batches, built by the broker and read back by storage
//! recovery and by readers that must tell a commit from an abort.
//!
//! A marker is a Kafka RecordBatch v2 with attributes `TRANSACTIONAL | CONTROL`, no sequence
//! (`baseSequence` -1), the producer's id and epoch, and one uncompressed record whose key is
//! `version` int16 (0), `type` int16 (0 abort, 1 commit) and whose value is `version` int16 (0),
//! `coordinatorEpoch` int32 (Kafka's `ControlRecordType` and `EndTransactionMarker`). It is
//! stored as payload format 2 like any Kafka batch, so a Kafka consumer is served the bytes
//! as stored; native readers skip control batches. Clients may never write one
//! ([`super::wrap`] refuses them); only [`marker_batch`] makes them.

use bytes::{BufMut, BytesMut};

use super::varint::{put_varint, put_varlong, read_varint, read_varlong};
use super::{check, compute_spate_crc, field, spate_header_for, KafkaBatchInfo};
use crate::batch::header::{self, attributes, BATCH_HEADER_BYTES};
use crate::error::BatchError;

/// `version` of the control record key and of the marker value: the only one Kafka writes.
const CONTROL_VERSION: i16 = 0;

/// Key bytes: version int16 + type int16.
const CONTROL_KEY_BYTES: usize = 4;

/// Value bytes: version int16 + coordinator epoch int32.
const MARKER_VALUE_BYTES: usize = 6;

/// What a transaction marker says (Kafka's `ControlRecordType` ABORT / COMMIT).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarkerType {
    Abort = 0,
    Commit = 1,
}

/// The content of one transaction marker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    pub marker_type: MarkerType,
    pub coordinator_epoch: i32,
}

/// The record of a marker: length, attributes, timestamp delta, offset delta, key, value, no
/// headers; every varint except the length is a single byte here.
fn marker_record(marker: Marker) -> BytesMut {
    let mut body = BytesMut::with_capacity(32);
    body.put_i8(0);
    put_varlong(&mut body, 0);
    put_varint(&mut body, 0);
    put_varint(&mut body, CONTROL_KEY_BYTES as i32);
    body.put_i16(CONTROL_VERSION);
    body.put_i16(marker.marker_type as i16);
    put_varint(&mut body, MARKER_VALUE_BYTES as i32);
    body.put_i16(CONTROL_VERSION);
    body.put_i32(marker.coordinator_epoch);
    put_varint(&mut body, 0);
    let mut record = BytesMut::with_capacity(body.len() + 5);
    put_varint(&mut record, body.len() as i32);
    record.extend_from_slice(&body);
    record
}

/// The stored (payload format 2) batch of a transaction marker for `producer_id` at
/// `producer_epoch`, timestamped `timestamp_ms`, base offset and leader epoch 0 until the broker
/// stamps them. Both CRCs are valid.
pub fn marker_batch(
    producer_id: i64,
    producer_epoch: i16,
    marker: Marker,
    timestamp_ms: i64,
) -> BytesMut {
    let record = marker_record(marker);
    let kafka_bytes = field::END + record.len();
    let mut kafka = BytesMut::with_capacity(kafka_bytes);
    kafka.put_i64(0);
    kafka.put_i32((kafka_bytes - field::LENGTH_OVERHEAD) as i32);
    kafka.put_i32(0);
    kafka.put_u8(super::KAFKA_MAGIC);
    kafka.put_u32(0);
    kafka.put_u16(attributes::TRANSACTIONAL | attributes::CONTROL);
    kafka.put_i32(0);
    kafka.put_i64(timestamp_ms);
    kafka.put_i64(timestamp_ms);
    kafka.put_i64(producer_id);
    kafka.put_i16(producer_epoch);
    kafka.put_i32(-1);
    kafka.put_i32(1);
    kafka.extend_from_slice(&record);
    let crc = crc32c::crc32c(&kafka[field::CRC_START..]);
    kafka[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    let info = check(&kafka).expect("a marker batch built here is a valid Kafka batch");
    let mut batch = BytesMut::zeroed(BATCH_HEADER_BYTES + kafka.len());
    spate_header_for(&info).encode(&mut batch);
    batch[BATCH_HEADER_BYTES..].copy_from_slice(&kafka);
    header::stamp(&mut batch, 0, 0);
    let crc = compute_spate_crc(&batch);
    batch[header::field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
    batch
}

fn invalid(reason: &'static str) -> BatchError {
    BatchError::KafkaInvalidRecord { reason }
}

/// The marker in a Kafka control batch (`kafka`: the Kafka bytes, as
/// [`super::kafka_bytes`] gives them from a stored batch; already checked). Control batches
/// are never compressed by Kafka's broker; a compressed one, or one whose single record is not
/// a version 0 abort or commit marker, is refused (Kafka's other control types are not
/// transaction markers and are never written here).
pub fn read_marker(kafka: &[u8]) -> Result<Marker, BatchError> {
    let info: KafkaBatchInfo = super::decode_header(kafka)?;
    if !info.is_control() || info.record_count != 1 {
        return Err(invalid("not a control batch of one record"));
    }
    if info.compression() != super::Compression::None {
        return Err(invalid("a compressed control batch"));
    }
    let records = &kafka[field::END..];
    let (length, used) = read_varint(records).ok_or(invalid("control record length"))?;
    let body = usize::try_from(length)
        .ok()
        .and_then(|length| records.get(used..used + length))
        .ok_or(invalid("control record length"))?;
    // attributes, timestamp delta, offset delta
    let mut at = 1usize;
    let (_, used) = read_varlong(body.get(at..).unwrap_or_default())
        .ok_or(invalid("control record timestamp"))?;
    at += used;
    let (_, used) =
        read_varint(body.get(at..).unwrap_or_default()).ok_or(invalid("control record offset"))?;
    at += used;
    let key = length_prefixed(body, &mut at).ok_or(invalid("control record key"))?;
    if key.len() < CONTROL_KEY_BYTES || i16::from_be_bytes([key[0], key[1]]) != CONTROL_VERSION {
        return Err(invalid("control record key version"));
    }
    let marker_type = match i16::from_be_bytes([key[2], key[3]]) {
        0 => MarkerType::Abort,
        1 => MarkerType::Commit,
        _ => return Err(invalid("a control record that is not a transaction marker")),
    };
    let value = length_prefixed(body, &mut at).ok_or(invalid("control record value"))?;
    if value.len() < MARKER_VALUE_BYTES {
        return Err(invalid("control record value"));
    }
    let coordinator_epoch = i32::from_be_bytes([value[2], value[3], value[4], value[5]]);
    Ok(Marker {
        marker_type,
        coordinator_epoch,
    })
}

/// A varint length (-1 for null, given as empty) and that many bytes at `*at`.
fn length_prefixed<'a>(body: &'a [u8], at: &mut usize) -> Option<&'a [u8]> {
    let (length, used) = read_varint(body.get(*at..)?)?;
    *at += used;
    if length < 0 {
        return Some(&[]);
    }
    let bytes = body.get(*at..*at + length as usize)?;
    *at += length as usize;
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::header::{check_crc, BatchHeader};
    use crate::batch::kafka::records::KafkaRecords;

    #[test]
    fn a_marker_batch_is_a_valid_stored_control_batch_that_reads_back() {
        for (marker_type, coordinator_epoch) in [(MarkerType::Commit, 7), (MarkerType::Abort, 0)] {
            let marker = Marker {
                marker_type,
                coordinator_epoch,
            };
            let mut batch = marker_batch(42, 3, marker, 1_700_000_000_000);
            header::stamp(&mut batch, 1234, 0);
            let header = BatchHeader::decode(&batch).expect("header");
            header.check(1 << 20).expect("header checks");
            check_crc(&batch, &header).expect("both CRCs");
            assert_eq!(
                header.attributes,
                attributes::TRANSACTIONAL | attributes::CONTROL
            );
            assert_eq!(header.producer_id, 42);
            assert_eq!(header.producer_epoch, 3);
            assert_eq!(header.base_sequence, -1);
            assert_eq!((header.offset_count, header.record_count), (1, 1));
            let kafka = super::super::kafka_bytes(&batch);
            assert_eq!(read_marker(kafka), Ok(marker));
            // Kafka readers walk the record like any other.
            let info = check(kafka).expect("kafka");
            let mut records =
                KafkaRecords::validate(&kafka[field::END..], &info).expect("records validate");
            let record = records.next().expect("one record");
            assert_eq!(record.offset, 1234);
            assert_eq!(record.key.map(<[u8]>::len), Some(CONTROL_KEY_BYTES));
        }
    }

    #[test]
    fn a_client_may_not_wrap_a_marker() {
        let batch = marker_batch(
            1,
            0,
            Marker {
                marker_type: MarkerType::Abort,
                coordinator_epoch: 0,
            },
            0,
        );
        let kafka = super::super::kafka_bytes(&batch);
        assert!(matches!(
            super::super::wrap(kafka),
            Err(BatchError::KafkaInvalidRecord { .. })
        ));
    }

    #[test]
    fn a_data_batch_is_not_a_marker() {
        let mut kafka = BytesMut::zeroed(field::END);
        kafka[field::BATCH_LENGTH..][..4]
            .copy_from_slice(&((field::END - field::LENGTH_OVERHEAD) as i32).to_be_bytes());
        kafka[field::MAGIC] = super::super::KAFKA_MAGIC;
        assert!(read_marker(&kafka).is_err());
        assert!(read_marker(&[]).is_err());
    }
}
