//! Payload format 2: a Kafka RecordBatch v2 (magic 2) stored as received behind Spate's 64-byte
//! batch header.
//!
//! Stored bytes are the Spate header (`payload_format` 2) followed by the Kafka batch exactly as
//! the client sent it, apart from the base offset and partition leader epoch, which the broker
//! stamps into both headers ([`crate::batch::header::stamp`]). The Spate header repeats the
//! Kafka fields storage needs (offset count, record count, timestamps, producer fields,
//! attributes), so storage, its indexes and the idempotent-producer checks treat both formats
//! alike without reading Kafka bytes.
//!
//! Kafka batch header (big-endian), 61 bytes, then the records (compressed as a whole when the
//! attributes name a codec):
//!
//! | offset | size | field                  | covered by               |
//! |-------:|-----:|------------------------|--------------------------|
//! |      0 |    8 | `baseOffset`           | nothing (stamped)        |
//! |      8 |    4 | `batchLength`          | Spate CRC                |
//! |     12 |    4 | `partitionLeaderEpoch` | nothing (stamped)        |
//! |     16 |    1 | `magic` (2)            | Spate CRC                |
//! |     17 |    4 | `crc` (CRC-32C)        | Spate CRC                |
//! |     21 |    2 | `attributes`           | Kafka CRC                |
//! |     23 |    4 | `lastOffsetDelta`      | Kafka CRC                |
//! |     27 |    8 | `baseTimestamp`        | Kafka CRC                |
//! |     35 |    8 | `maxTimestamp`         | Kafka CRC                |
//! |     43 |    8 | `producerId`           | Kafka CRC                |
//! |     51 |    2 | `producerEpoch`        | Kafka CRC                |
//! |     53 |    4 | `baseSequence`         | Kafka CRC                |
//! |     57 |    4 | `recordCount`          | Kafka CRC                |
//! |     61 |    … | records                | Kafka CRC                |
//!
//! The CRC rule (each byte checked once, no second pass over the payload): the Spate `crc`
//! covers the Spate header `[16, 64)` followed by Kafka bytes `[8, 12)` and `[16, 21)`; Kafka's
//! own CRC covers Kafka bytes `[21, end)`. [`check_stored`] verifies both and that the two
//! headers agree, so recovery finds a torn or corrupt Kafka batch like a native one.
//!
//! This file checks and wraps Kafka batches ([`check`], [`wrap`]) and reads them back
//! ([`kafka_bytes`]). It never allocates while checking. `control` builds and reads transaction
//! markers (control batches), which only the broker writes. `convert` turns a native batch into a
//! Kafka one ([`to_kafka_v2`]); `records` reads a Kafka batch's records for native readers,
//! after `compression` inflated them (bounded) when the producer compressed them; `varint`
//! holds Kafka's variable-length integers.

use bytes::BytesMut;

use crate::batch::header::{
    self, attributes, BatchHeader, PayloadFormat, BATCH_HEADER_BYTES, BATCH_MAGIC,
};
use crate::constants::OFFSET_MAX;
use crate::error::BatchError;

pub mod compression;
pub mod control;
pub mod convert;
pub mod records;
pub mod varint;

pub use convert::to_kafka_v2;

/// Offsets of each field in a Kafka RecordBatch v2 header; each derived from the previous one.
pub mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const BATCH_LENGTH: usize = BASE_OFFSET + 8;
    pub const PARTITION_LEADER_EPOCH: usize = BATCH_LENGTH + 4;
    pub const MAGIC: usize = PARTITION_LEADER_EPOCH + 4;
    pub const CRC: usize = MAGIC + 1;
    pub const ATTRIBUTES: usize = CRC + 4;
    pub const LAST_OFFSET_DELTA: usize = ATTRIBUTES + 2;
    pub const BASE_TIMESTAMP: usize = LAST_OFFSET_DELTA + 4;
    pub const MAX_TIMESTAMP: usize = BASE_TIMESTAMP + 8;
    pub const PRODUCER_ID: usize = MAX_TIMESTAMP + 8;
    pub const PRODUCER_EPOCH: usize = PRODUCER_ID + 8;
    pub const BASE_SEQUENCE: usize = PRODUCER_EPOCH + 2;
    pub const RECORD_COUNT: usize = BASE_SEQUENCE + 4;
    pub const END: usize = RECORD_COUNT + 4;
    /// First byte covered by Kafka's CRC.
    pub const CRC_START: usize = ATTRIBUTES;
    /// Bytes before the first one `batchLength` counts (Kafka's `LOG_OVERHEAD`).
    pub const LENGTH_OVERHEAD: usize = BATCH_LENGTH + 4;
}

/// Size of a Kafka RecordBatch v2 header; the smallest Kafka batch.
pub const KAFKA_BATCH_HEADER_BYTES: usize = 61;

/// The only Kafka batch magic stored: RecordBatch v2.
pub const KAFKA_MAGIC: u8 = 2;

const _: () = assert!(field::END == KAFKA_BATCH_HEADER_BYTES);

/// Kafka's attribute bits 0–5 mean what Spate's do (compression, timestamp type,
/// transactional, control). Bit 6 (delete horizon) is set only by Kafka's log cleaner.
const KAFKA_ATTRIBUTES_KNOWN: u16 = attributes::KNOWN;

/// A Kafka batch's compression codec (attribute bits 0–2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Compression {
    None = 0,
    Gzip = 1,
    Snappy = 2,
    Lz4 = 3,
    Zstd = 4,
}

impl Compression {
    pub fn from_attributes(attributes: u16) -> Option<Self> {
        match attributes & attributes::COMPRESSION_MASK {
            0 => Some(Self::None),
            1 => Some(Self::Gzip),
            2 => Some(Self::Snappy),
            3 => Some(Self::Lz4),
            4 => Some(Self::Zstd),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// The header fields of one checked Kafka batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaBatchInfo {
    pub base_offset: i64,
    /// Size of the whole Kafka batch in bytes (`batchLength` + 12).
    pub batch_bytes: usize,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: u16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl KafkaBatchInfo {
    /// Offsets the batch spans: `lastOffsetDelta + 1` (at least 1 once checked).
    pub fn offset_count(&self) -> u32 {
        // `check` keeps lastOffsetDelta in [0, i32::MAX], so the sum fits.
        (self.last_offset_delta as u32).saturating_add(1)
    }

    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes).unwrap_or(Compression::None)
    }

    pub fn is_control(&self) -> bool {
        self.attributes & attributes::CONTROL != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & attributes::TRANSACTIONAL != 0
    }

    /// Whether the records' timestamps are log-append time rather than create time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & attributes::TIMESTAMP_LOG_APPEND != 0
    }
}

#[inline]
fn read_i16(bytes: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[inline]
fn read_i32(bytes: &[u8], at: usize) -> i32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    i32::from_be_bytes(word)
}

#[inline]
fn read_i64(bytes: &[u8], at: usize) -> i64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    i64::from_be_bytes(word)
}

/// Checks one whole Kafka batch: `kafka` must be exactly one batch (its length equal to
/// `batchLength + 12`). Checks the magic (0 and 1 give [`BatchError::KafkaMessageFormatTooOld`],
/// so a broker can answer UNSUPPORTED_FOR_MESSAGE_FORMAT), the length, the attributes, the
/// counts (`lastOffsetDelta` ≥ 0, 0 ≤ records ≤ `lastOffsetDelta + 1`), timestamp order,
/// the offset range, and Kafka's CRC-32C over `[21, end)`. Allocates nothing.
pub fn check(kafka: &[u8]) -> Result<KafkaBatchInfo, BatchError> {
    let info = decode_header(kafka)?;
    let actual = crc32c::crc32c(&kafka[field::CRC_START..]);
    if actual != info.crc {
        return Err(BatchError::CrcMismatch {
            expected: info.crc,
            actual,
        });
    }
    Ok(info)
}

/// Every check of [`check`] except the CRC.
pub(crate) fn decode_header(kafka: &[u8]) -> Result<KafkaBatchInfo, BatchError> {
    // Magic sits at byte 16 in every Kafka message format, so old ones are told apart first.
    let Some(&magic) = kafka.get(field::MAGIC) else {
        return Err(BatchError::Truncated {
            needed: KAFKA_BATCH_HEADER_BYTES,
            available: kafka.len(),
        });
    };
    match magic {
        KAFKA_MAGIC => {}
        0 | 1 => return Err(BatchError::KafkaMessageFormatTooOld { magic }),
        _ => return Err(BatchError::UnknownMagic { magic }),
    }
    if kafka.len() < KAFKA_BATCH_HEADER_BYTES {
        return Err(BatchError::Truncated {
            needed: KAFKA_BATCH_HEADER_BYTES,
            available: kafka.len(),
        });
    }
    let length_field = read_i32(kafka, field::BATCH_LENGTH);
    let declared = i64::from(length_field) + field::LENGTH_OVERHEAD as i64;
    if declared < KAFKA_BATCH_HEADER_BYTES as i64 {
        return Err(BatchError::KafkaLengthMismatch {
            declared: declared.max(0) as usize,
            received: kafka.len(),
        });
    }
    // Fits: at most i32::MAX + 12.
    let batch_bytes = declared as usize;
    if batch_bytes != kafka.len() {
        return Err(BatchError::KafkaLengthMismatch {
            declared: batch_bytes,
            received: kafka.len(),
        });
    }
    let info = KafkaBatchInfo {
        base_offset: read_i64(kafka, field::BASE_OFFSET),
        batch_bytes,
        partition_leader_epoch: read_i32(kafka, field::PARTITION_LEADER_EPOCH),
        crc: read_i32(kafka, field::CRC) as u32,
        attributes: read_i16(kafka, field::ATTRIBUTES) as u16,
        last_offset_delta: read_i32(kafka, field::LAST_OFFSET_DELTA),
        base_timestamp: read_i64(kafka, field::BASE_TIMESTAMP),
        max_timestamp: read_i64(kafka, field::MAX_TIMESTAMP),
        producer_id: read_i64(kafka, field::PRODUCER_ID),
        producer_epoch: read_i16(kafka, field::PRODUCER_EPOCH),
        base_sequence: read_i32(kafka, field::BASE_SEQUENCE),
        record_count: read_i32(kafka, field::RECORD_COUNT),
    };
    if info.attributes & !KAFKA_ATTRIBUTES_KNOWN != 0 {
        return Err(BatchError::UnknownAttributes {
            attributes: info.attributes,
        });
    }
    if Compression::from_attributes(info.attributes).is_none() {
        return Err(BatchError::UnsupportedCompression {
            codec: info.attributes & attributes::COMPRESSION_MASK,
        });
    }
    if info.last_offset_delta < 0
        || info.record_count < 0
        || i64::from(info.record_count) > i64::from(info.last_offset_delta) + 1
    {
        return Err(BatchError::KafkaBadCounts {
            last_offset_delta: info.last_offset_delta,
            record_count: info.record_count,
        });
    }
    if info.max_timestamp < info.base_timestamp {
        return Err(BatchError::BadTimestamps {
            first_timestamp: info.base_timestamp,
            max_timestamp: info.max_timestamp,
        });
    }
    let next_offset = i128::from(info.base_offset) + i128::from(info.offset_count());
    if info.base_offset < 0 || next_offset > i128::from(OFFSET_MAX) {
        return Err(BatchError::OffsetOverflow {
            base_offset: info.base_offset as u64,
            offset_count: info.offset_count(),
        });
    }
    Ok(info)
}

/// The Spate header that wraps a Kafka batch with these fields, before its CRC is set. Base
/// offset and leader epoch are Kafka's own here; the broker stamps both later.
pub(crate) fn spate_header_for(info: &KafkaBatchInfo) -> BatchHeader {
    BatchHeader {
        base_offset: info.base_offset as u64,
        leader_epoch: info.partition_leader_epoch as u32,
        crc: 0,
        // Fits: a checked Kafka batch is at most i32::MAX + 12 bytes.
        batch_length: (BATCH_HEADER_BYTES + info.batch_bytes) as u32,
        magic: BATCH_MAGIC,
        payload_format: PayloadFormat::KafkaV2 as u8,
        attributes: info.attributes & attributes::KNOWN,
        offset_count: info.offset_count(),
        record_count: info.record_count as u32,
        first_timestamp: info.base_timestamp,
        max_timestamp: info.max_timestamp,
        producer_id: info.producer_id,
        producer_epoch: info.producer_epoch,
        reserved: 0,
        base_sequence: info.base_sequence,
    }
}

/// Checks a Kafka batch as a producer sent it ([`check`], plus what Kafka demands of a
/// producer's batch: base offset 0, as many records as offsets, no control batch, a sequence
/// when there is a producer id; those give [`BatchError::KafkaInvalidRecord`], Kafka's
/// INVALID_RECORD) and returns the Spate format-2 batch that stores it: a Spate header filled
/// from the Kafka header, then the Kafka bytes as received. Base offset and leader epoch are 0
/// in both headers until the broker stamps them; both CRCs are valid.
pub fn wrap(kafka: &[u8]) -> Result<BytesMut, BatchError> {
    let info = check(kafka)?;
    if info.base_offset != 0 {
        return Err(BatchError::KafkaInvalidRecord {
            reason: "a producer's batch must have base offset 0",
        });
    }
    if i64::from(info.record_count) != i64::from(info.offset_count()) {
        return Err(BatchError::KafkaInvalidRecord {
            reason: "the record count differs from the batch's offset range",
        });
    }
    if info.is_control() {
        return Err(BatchError::KafkaInvalidRecord {
            reason: "clients may not write control batches",
        });
    }
    if info.producer_id >= 0 && info.base_sequence < 0 {
        return Err(BatchError::KafkaInvalidRecord {
            reason: "an idempotent producer's batch has no sequence number",
        });
    }
    let mut batch = BytesMut::zeroed(BATCH_HEADER_BYTES + kafka.len());
    spate_header_for(&info).encode(&mut batch);
    batch[BATCH_HEADER_BYTES..].copy_from_slice(kafka);
    header::stamp(&mut batch, 0, 0);
    let crc = compute_spate_crc(&batch);
    batch[header::field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
    Ok(batch)
}

/// The Kafka batch inside a stored format-2 batch (the bytes after the Spate header): what a
/// Kafka consumer is served. `stored` should be one checked format-2 batch; shorter bytes give
/// an empty slice rather than a panic.
pub fn kafka_bytes(stored: &[u8]) -> &[u8] {
    debug_assert_eq!(
        stored.get(header::field::PAYLOAD_FORMAT).copied(),
        Some(PayloadFormat::KafkaV2 as u8),
        "kafka_bytes of a batch that is not payload format 2"
    );
    stored.get(BATCH_HEADER_BYTES..).unwrap_or_default()
}

/// The Spate `crc` of a format-2 batch: CRC-32C of the Spate header `[16, 64)`, then Kafka
/// bytes `[8, 12)` (batchLength) and `[16, 21)` (magic and Kafka's CRC). Short bytes give a
/// CRC over what there is (which a checked header can never match).
pub(crate) fn compute_spate_crc(batch: &[u8]) -> u32 {
    let spate = batch
        .get(header::field::CRC_START..BATCH_HEADER_BYTES)
        .unwrap_or_default();
    let kafka = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let length = kafka
        .get(field::BATCH_LENGTH..field::PARTITION_LEADER_EPOCH)
        .unwrap_or_default();
    let magic_and_crc = kafka
        .get(field::MAGIC..field::CRC_START)
        .unwrap_or_default();
    let crc = crc32c::crc32c(spate);
    let crc = crc32c::crc32c_append(crc, length);
    crc32c::crc32c_append(crc, magic_and_crc)
}

/// Writes the stamped fields into a Kafka header (big-endian, as Kafka does).
pub(crate) fn stamp_kafka_header(kafka: &mut [u8], base_offset: u64, leader_epoch: u32) {
    assert!(
        kafka.len() >= field::MAGIC,
        "stamp on a format-2 batch without a Kafka header"
    );
    kafka[field::BASE_OFFSET..][..8].copy_from_slice(&(base_offset as i64).to_be_bytes());
    kafka[field::PARTITION_LEADER_EPOCH..][..4]
        .copy_from_slice(&(leader_epoch as i32).to_be_bytes());
}

/// The CRC checks of a stored format-2 batch (see the module doc), and that its Spate header
/// says what its Kafka header says. `header` was decoded from `batch` and passed
/// [`BatchHeader::check`]; `batch` is exactly `batch_length` bytes.
pub(crate) fn check_stored(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    let actual = compute_spate_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    let kafka = batch.get(BATCH_HEADER_BYTES..).unwrap_or_default();
    let info = check(kafka)?;
    let expected = BatchHeader {
        base_offset: header.base_offset,
        leader_epoch: header.leader_epoch,
        crc: header.crc,
        ..spate_header_for(&info)
    };
    if expected != *header {
        return Err(BatchError::KafkaHeaderMismatch {
            field: first_difference(&expected, header),
        });
    }
    if info.base_offset as u64 != header.base_offset {
        return Err(BatchError::KafkaHeaderMismatch {
            field: "base_offset",
        });
    }
    if info.partition_leader_epoch as u32 != header.leader_epoch {
        return Err(BatchError::KafkaHeaderMismatch {
            field: "leader_epoch",
        });
    }
    Ok(())
}

/// The name of the first field in which two headers differ (for the error message).
fn first_difference(expected: &BatchHeader, actual: &BatchHeader) -> &'static str {
    let fields: [(&'static str, bool); 10] = [
        ("batch_length", expected.batch_length == actual.batch_length),
        ("attributes", expected.attributes == actual.attributes),
        ("offset_count", expected.offset_count == actual.offset_count),
        ("record_count", expected.record_count == actual.record_count),
        (
            "first_timestamp",
            expected.first_timestamp == actual.first_timestamp,
        ),
        (
            "max_timestamp",
            expected.max_timestamp == actual.max_timestamp,
        ),
        ("producer_id", expected.producer_id == actual.producer_id),
        (
            "producer_epoch",
            expected.producer_epoch == actual.producer_epoch,
        ),
        (
            "base_sequence",
            expected.base_sequence == actual.base_sequence,
        ),
        ("magic", expected.magic == actual.magic),
    ];
    fields
        .iter()
        .find(|(_, same)| !same)
        .map_or("header", |(name, _)| name)
}
