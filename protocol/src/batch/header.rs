//! The fixed 64-byte little-endian header that opens every record batch, on the wire and on disk.
//!
//! This file owns the byte layout and the CRC rule; it does not know what the payload holds (see
//! `batch::records` for payload format 1) and it never allocates. The layout is written down in
//! `broker/storage/FORMAT.md` too; the two must agree.
//!
//! Layout (all integers little-endian):
//!
//! | offset | size | field             | who writes it                    | in CRC |
//! |-------:|-----:|-------------------|----------------------------------|--------|
//! |      0 |    8 | `base_offset`     | broker, at append                | no     |
//! |      8 |    4 | `leader_epoch`    | broker, at append (replication)  | no     |
//! |     12 |    4 | `crc`             | producer, at seal                | no     |
//! |     16 |    4 | `batch_length`    | producer                         | yes    |
//! |     20 |    1 | `magic`           | producer                         | yes    |
//! |     21 |    1 | `payload_format`  | producer                         | yes    |
//! |     22 |    2 | `attributes`      | producer                         | yes    |
//! |     24 |    4 | `offset_count`    | producer                         | yes    |
//! |     28 |    4 | `record_count`    | producer                         | yes    |
//! |     32 |    8 | `first_timestamp` | producer (or broker, later)      | yes    |
//! |     40 |    8 | `max_timestamp`   | producer                         | yes    |
//! |     48 |    8 | `producer_id`     | producer                         | yes    |
//! |     56 |    2 | `producer_epoch`  | producer                         | yes    |
//! |     58 |    2 | `reserved`        | zero                             | yes    |
//! |     60 |    4 | `base_sequence`   | producer                         | yes    |
//!
//! For payload format 1 the CRC-32C covers bytes `[16, batch_length)`: everything the producer
//! wrote after the CRC itself. The broker stamps `base_offset` and `leader_epoch` without
//! recomputing it, exactly as Kafka's RecordBatch v2 leaves base offset and leader epoch outside
//! its CRC. `batch_length` sits inside the CRC so that a corrupted length is caught, not trusted.
//!
//! Payload format 2 (a Kafka RecordBatch v2, see `batch::kafka`) covers each byte once with two
//! CRCs: this header's `crc` covers `[16, 64)` followed by the Kafka header's unstamped fields
//! before Kafka's own CRC (Kafka bytes `[8, 12)` and `[16, 21)`), and Kafka's CRC covers the
//! Kafka bytes `[21, end)`. [`check_crc`] verifies both; [`stamp`] writes the base offset and
//! leader epoch into both headers.

use crate::batch::kafka;
use crate::constants::OFFSET_MAX;
use crate::error::BatchError;

/// Offsets of each field inside the header; each derived from the previous one.
pub mod field {
    pub const BASE_OFFSET: usize = 0;
    pub const LEADER_EPOCH: usize = BASE_OFFSET + 8;
    pub const CRC: usize = LEADER_EPOCH + 4;
    pub const BATCH_LENGTH: usize = CRC + 4;
    pub const MAGIC: usize = BATCH_LENGTH + 4;
    pub const PAYLOAD_FORMAT: usize = MAGIC + 1;
    pub const ATTRIBUTES: usize = PAYLOAD_FORMAT + 1;
    pub const OFFSET_COUNT: usize = ATTRIBUTES + 2;
    pub const RECORD_COUNT: usize = OFFSET_COUNT + 4;
    pub const FIRST_TIMESTAMP: usize = RECORD_COUNT + 4;
    pub const MAX_TIMESTAMP: usize = FIRST_TIMESTAMP + 8;
    pub const PRODUCER_ID: usize = MAX_TIMESTAMP + 8;
    pub const PRODUCER_EPOCH: usize = PRODUCER_ID + 8;
    pub const RESERVED: usize = PRODUCER_EPOCH + 2;
    pub const BASE_SEQUENCE: usize = RESERVED + 2;
    pub const END: usize = BASE_SEQUENCE + 4;
    /// First byte covered by the CRC.
    pub const CRC_START: usize = BATCH_LENGTH;
}

/// Size of the batch header in bytes.
pub const BATCH_HEADER_BYTES: usize = 64;

/// The only header layout this build reads and writes.
pub const BATCH_MAGIC: u8 = 1;

const _: () = assert!(field::END == BATCH_HEADER_BYTES);
const _: () = assert!(core::mem::size_of::<BatchHeader>() == BATCH_HEADER_BYTES);

/// What the bytes after the header hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PayloadFormat {
    /// An rkyv archive of the records (see `batch::records`).
    Rkyv = 1,
    /// Kafka RecordBatch v2 bytes kept exactly as a Kafka client sent them, apart from the
    /// stamped base offset and leader epoch (see `batch::kafka`). A native reader decodes them
    /// itself; a Kafka reader gets them as they are.
    KafkaV2 = 2,
}

impl PayloadFormat {
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            1 => Some(Self::Rkyv),
            2 => Some(Self::KafkaV2),
            _ => None,
        }
    }
}

/// Bit layout of `attributes`. Bits not named here must be zero.
pub mod attributes {
    /// Bits 0..=2: compression codec of the payload. 0 = none; for payload format 2 Kafka's
    /// codecs (1 gzip, 2 snappy, 3 lz4, 4 zstd), which apply to its records; format 1 has none.
    pub const COMPRESSION_MASK: u16 = 0b0000_0111;
    /// Bit 3: timestamps are log-append time (set by the broker) rather than create time.
    pub const TIMESTAMP_LOG_APPEND: u16 = 1 << 3;
    /// Bit 4: the batch belongs to a transaction.
    pub const TRANSACTIONAL: u16 = 1 << 4;
    /// Bit 5: a control batch (transaction markers), not user records.
    pub const CONTROL: u16 = 1 << 5;
    /// Every bit this build understands.
    pub const KNOWN: u16 = COMPRESSION_MASK | TIMESTAMP_LOG_APPEND | TRANSACTIONAL | CONTROL;
}

/// A decoded copy of the header fields. Wire bytes are the truth; this is a convenient view.
///
/// `#[repr(C)]` with fields in wire order so the struct's size pins the layout (the const
/// assertion above); it is never transmuted from bytes, which keeps decoding endian-safe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub struct BatchHeader {
    pub base_offset: u64,
    pub leader_epoch: u32,
    pub crc: u32,
    pub batch_length: u32,
    pub magic: u8,
    pub payload_format: u8,
    pub attributes: u16,
    pub offset_count: u32,
    pub record_count: u32,
    pub first_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub reserved: u16,
    pub base_sequence: i32,
}

#[inline]
fn read_u16(bytes: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([bytes[at], bytes[at + 1]])
}

#[inline]
fn read_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(word)
}

#[inline]
fn read_u64(bytes: &[u8], at: usize) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(word)
}

impl BatchHeader {
    /// Decodes the header fields from the first 64 bytes. Checks nothing but the length: use
    /// [`BatchHeader::check`] or `batch::BatchView::validate` before trusting any field.
    pub fn decode(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < BATCH_HEADER_BYTES {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_BYTES,
                available: bytes.len(),
            });
        }
        Ok(Self {
            base_offset: read_u64(bytes, field::BASE_OFFSET),
            leader_epoch: read_u32(bytes, field::LEADER_EPOCH),
            crc: read_u32(bytes, field::CRC),
            batch_length: read_u32(bytes, field::BATCH_LENGTH),
            magic: bytes[field::MAGIC],
            payload_format: bytes[field::PAYLOAD_FORMAT],
            attributes: read_u16(bytes, field::ATTRIBUTES),
            offset_count: read_u32(bytes, field::OFFSET_COUNT),
            record_count: read_u32(bytes, field::RECORD_COUNT),
            first_timestamp: read_u64(bytes, field::FIRST_TIMESTAMP) as i64,
            max_timestamp: read_u64(bytes, field::MAX_TIMESTAMP) as i64,
            producer_id: read_u64(bytes, field::PRODUCER_ID) as i64,
            producer_epoch: read_u16(bytes, field::PRODUCER_EPOCH) as i16,
            reserved: read_u16(bytes, field::RESERVED),
            base_sequence: read_u32(bytes, field::BASE_SEQUENCE) as i32,
        })
    }

    /// Writes every field into the first 64 bytes of `target`.
    pub fn encode(&self, target: &mut [u8]) {
        assert!(
            target.len() >= BATCH_HEADER_BYTES,
            "header target too short"
        );
        target[field::BASE_OFFSET..][..8].copy_from_slice(&self.base_offset.to_le_bytes());
        target[field::LEADER_EPOCH..][..4].copy_from_slice(&self.leader_epoch.to_le_bytes());
        target[field::CRC..][..4].copy_from_slice(&self.crc.to_le_bytes());
        target[field::BATCH_LENGTH..][..4].copy_from_slice(&self.batch_length.to_le_bytes());
        target[field::MAGIC] = self.magic;
        target[field::PAYLOAD_FORMAT] = self.payload_format;
        target[field::ATTRIBUTES..][..2].copy_from_slice(&self.attributes.to_le_bytes());
        target[field::OFFSET_COUNT..][..4].copy_from_slice(&self.offset_count.to_le_bytes());
        target[field::RECORD_COUNT..][..4].copy_from_slice(&self.record_count.to_le_bytes());
        target[field::FIRST_TIMESTAMP..][..8].copy_from_slice(&self.first_timestamp.to_le_bytes());
        target[field::MAX_TIMESTAMP..][..8].copy_from_slice(&self.max_timestamp.to_le_bytes());
        target[field::PRODUCER_ID..][..8].copy_from_slice(&self.producer_id.to_le_bytes());
        target[field::PRODUCER_EPOCH..][..2].copy_from_slice(&self.producer_epoch.to_le_bytes());
        target[field::RESERVED..][..2].copy_from_slice(&self.reserved.to_le_bytes());
        target[field::BASE_SEQUENCE..][..4].copy_from_slice(&self.base_sequence.to_le_bytes());
    }

    /// The last offset in the batch, given its stamped base offset. Meaningful once
    /// [`BatchHeader::check`] passed (non-empty range, no overflow); saturates otherwise so that
    /// a caller holding unchecked bytes cannot make it panic.
    pub fn last_offset(&self) -> u64 {
        self.next_offset().saturating_sub(1)
    }

    /// The offset after the batch. Saturates on headers that [`BatchHeader::check`] rejects.
    pub fn next_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.offset_count))
    }

    /// Structural checks that need no payload bytes: magic, length bounds (a format-2 batch
    /// holds at least a Kafka batch header), known format and attribute bits, non-empty offset
    /// range that ends at or below [`OFFSET_MAX`], timestamp order. Does not check the CRC.
    pub fn check(&self, batch_bytes_max: usize) -> Result<(), BatchError> {
        if self.magic != BATCH_MAGIC {
            return Err(BatchError::UnknownMagic { magic: self.magic });
        }
        let length = self.batch_length as usize;
        if length < BATCH_HEADER_BYTES {
            return Err(BatchError::LengthTooSmall {
                batch_length: self.batch_length,
            });
        }
        if length > batch_bytes_max {
            return Err(BatchError::TooLarge {
                batch_length: length,
                limit: batch_bytes_max,
            });
        }
        let Some(payload_format) = PayloadFormat::from_byte(self.payload_format) else {
            return Err(BatchError::UnknownPayloadFormat {
                payload_format: self.payload_format,
            });
        };
        if payload_format == PayloadFormat::KafkaV2
            && length < BATCH_HEADER_BYTES + kafka::KAFKA_BATCH_HEADER_BYTES
        {
            return Err(BatchError::LengthTooSmall {
                batch_length: self.batch_length,
            });
        }
        if self.attributes & !attributes::KNOWN != 0 {
            return Err(BatchError::UnknownAttributes {
                attributes: self.attributes,
            });
        }
        if self.offset_count == 0 || self.record_count > self.offset_count {
            return Err(BatchError::BadCounts {
                offset_count: self.offset_count,
                record_count: self.record_count,
            });
        }
        if self.max_timestamp < self.first_timestamp {
            return Err(BatchError::BadTimestamps {
                first_timestamp: self.first_timestamp,
                max_timestamp: self.max_timestamp,
            });
        }
        if self.reserved != 0 {
            return Err(BatchError::ReservedNotZero);
        }
        // The broker stamps base_offset outside the CRC, so a corrupt one is only caught here.
        let next_offset = self.base_offset.checked_add(u64::from(self.offset_count));
        if next_offset.is_none_or(|next_offset| next_offset > OFFSET_MAX) {
            return Err(BatchError::OffsetOverflow {
                base_offset: self.base_offset,
                offset_count: self.offset_count,
            });
        }
        Ok(())
    }
}

/// The value of the header's `crc` field under the CRC rule of the batch's payload format
/// (format 1: CRC-32C of `[16, batch_length)`; format 2: see [`kafka::compute_spate_crc`]).
/// `batch` must be exactly one batch (its length equal to `batch_length`). Never panics: bytes
/// too short for their format give a CRC that cannot match a valid header.
pub fn compute_crc(batch: &[u8]) -> u32 {
    debug_assert!(batch.len() >= BATCH_HEADER_BYTES);
    let covered = batch.get(field::CRC_START..).unwrap_or_default();
    match batch.get(field::PAYLOAD_FORMAT).copied() {
        Some(format) if format == PayloadFormat::KafkaV2 as u8 => kafka::compute_spate_crc(batch),
        _ => crc32c::crc32c(covered),
    }
}

/// Checks the CRC (or, for payload format 2, both CRCs and that the two headers agree) of one
/// batch whose `header` was decoded from it and passed [`BatchHeader::check`]. `batch` must be
/// exactly `batch_length` bytes. Reads each payload byte once.
pub fn check_crc(batch: &[u8], header: &BatchHeader) -> Result<(), BatchError> {
    if header.payload_format == PayloadFormat::KafkaV2 as u8 {
        return kafka::check_stored(batch, header);
    }
    let actual = compute_crc(batch);
    if actual != header.crc {
        return Err(BatchError::CrcMismatch {
            expected: header.crc,
            actual,
        });
    }
    Ok(())
}

/// Stamps the broker-owned fields in place. The CRC stays valid: these bytes are outside it.
/// A format-2 batch gets them in its Kafka header too (big-endian, as Kafka writes them), so a
/// Kafka consumer reads the same base offset and leader epoch.
pub fn stamp(batch: &mut [u8], base_offset: u64, leader_epoch: u32) {
    assert!(batch.len() >= BATCH_HEADER_BYTES, "stamp on a short batch");
    batch[field::BASE_OFFSET..][..8].copy_from_slice(&base_offset.to_le_bytes());
    batch[field::LEADER_EPOCH..][..4].copy_from_slice(&leader_epoch.to_le_bytes());
    if batch[field::PAYLOAD_FORMAT] == PayloadFormat::KafkaV2 as u8 {
        kafka::stamp_kafka_header(&mut batch[BATCH_HEADER_BYTES..], base_offset, leader_epoch);
    }
}

/// `producer_id` of a batch from a producer that is not idempotent (Kafka's convention).
pub const NO_PRODUCER_ID: i64 = -1;

/// `producer_epoch` of a batch from a producer that is not idempotent.
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// `base_sequence` of a batch from a producer that is not idempotent.
pub const NO_SEQUENCE: i32 = -1;

/// Rewrites the producer identity of a sealed batch in place and brings its CRC up to date
/// without reading the payload again.
///
/// An idempotent producer learns its id and a partition's next sequence only when a batch first
/// leaves (as Kafka's producer does at drain), after the batch was sealed on the caller's thread.
/// CRC-32C is affine over equal-length inputs, so the new CRC is the old one plus the CRC of the
/// changed header bytes shifted past the unchanged payload (`crc32c_combine` with a zero tail):
/// a few dozen operations instead of a pass over up to 16 MiB. `batch` must be exactly one
/// sealed batch whose CRC is valid; the result is then valid too.
pub fn stamp_producer(batch: &mut [u8], producer_id: i64, producer_epoch: i16, base_sequence: i32) {
    assert!(
        batch.len() >= BATCH_HEADER_BYTES,
        "stamp_producer on a short batch"
    );
    // A Kafka batch carries its producer fields in its own header, under its own CRC: only its
    // producer may set them.
    assert_eq!(
        batch[field::PAYLOAD_FORMAT],
        PayloadFormat::Rkyv as u8,
        "stamp_producer on a batch of payload format 1 only"
    );
    let covered = field::CRC_START..BATCH_HEADER_BYTES;
    let before = crc32c::crc32c(&batch[covered.clone()]);
    batch[field::PRODUCER_ID..][..8].copy_from_slice(&producer_id.to_le_bytes());
    batch[field::PRODUCER_EPOCH..][..2].copy_from_slice(&producer_epoch.to_le_bytes());
    batch[field::BASE_SEQUENCE..][..4].copy_from_slice(&base_sequence.to_le_bytes());
    let after = crc32c::crc32c(&batch[covered]);
    let payload_bytes = batch.len() - BATCH_HEADER_BYTES;
    let difference = crc_shifted_by_zeros(before ^ after, payload_bytes);
    let crc = read_u32(batch, field::CRC) ^ difference;
    batch[field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
}

/// CRC-32C's polynomial in the reflected bit order the checksum uses.
const CRC32C_POLYNOMIAL_REFLECTED: u32 = 0x82F6_3B78;

/// `a * b mod P` over GF(2), both in reflected order (bit 31 is x^0).
const fn multiply_modulo(a: u32, mut b: u32) -> u32 {
    let mut product = 0;
    let mut mask = 1 << 31;
    while mask != 0 {
        if a & mask != 0 {
            product ^= b;
        }
        mask >>= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC32C_POLYNOMIAL_REFLECTED
        } else {
            b >> 1
        };
    }
    product
}

/// `X_POWERS[k]` = x^(2^k) mod P, so x^n is the product of the entries of n's set bits.
const X_POWERS: [u32; 64] = {
    let mut table = [0u32; 64];
    table[0] = 1 << 30; // x^1
    let mut index = 1;
    while index < table.len() {
        table[index] = multiply_modulo(table[index - 1], table[index - 1]);
        index += 1;
    }
    table
};

/// The linear part of a CRC followed by `bytes` zero bytes: `crc * x^(8 * bytes) mod P`, the same
/// as `crc32c_combine(crc, 0, bytes)` but in at most 61 polynomial products rather than zlib's
/// matrix squarings (which cost ~10 µs per call, a visible share of a producer's I/O thread).
fn crc_shifted_by_zeros(crc: u32, bytes: usize) -> u32 {
    let mut bits = (bytes as u64) << 3;
    let mut power = 0;
    let mut shifted = crc;
    while bits != 0 {
        if bits & 1 != 0 {
            shifted = multiply_modulo(X_POWERS[power], shifted);
        }
        bits >>= 1;
        power += 1;
    }
    shifted
}

/// The sequence number after `base_sequence` and `record_count` records: sequences count records
/// (not batches) and wrap from `i32::MAX` to 0, as Kafka's do.
pub fn sequence_after(base_sequence: i32, record_count: u32) -> i32 {
    debug_assert!(base_sequence >= 0, "sequences are never negative");
    let modulus = i64::from(i32::MAX) + 1;
    ((i64::from(base_sequence) + i64::from(record_count)) % modulus) as i32
}

/// The sequence of a batch's last record (its base sequence for a one-record batch).
pub fn last_sequence(base_sequence: i32, record_count: u32) -> i32 {
    sequence_after(base_sequence, record_count.saturating_sub(1))
}

/// Reads `batch_length` from a buffer that holds at least the first 20 bytes of a batch, without
/// any other check. Framing code uses it to know how many bytes to wait for.
pub fn peek_batch_length(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < field::BATCH_LENGTH + 4 {
        return None;
    }
    Some(read_u32(bytes, field::BATCH_LENGTH))
}

#[cfg(test)]
mod producer_stamp_tests {
    use super::*;
    use proptest::prelude::*;

    /// Raw bytes of one batch with a valid CRC: a header with the given producer fields followed
    /// by `payload` (the CRC rule does not look inside the payload).
    fn sealed(
        payload: &[u8],
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let header = BatchHeader {
            batch_length: (BATCH_HEADER_BYTES + payload.len()) as u32,
            magic: BATCH_MAGIC,
            payload_format: PayloadFormat::Rkyv as u8,
            offset_count: 1,
            record_count: 1,
            producer_id,
            producer_epoch,
            base_sequence,
            ..BatchHeader::default()
        };
        let mut batch = vec![0; BATCH_HEADER_BYTES + payload.len()];
        header.encode(&mut batch);
        batch[BATCH_HEADER_BYTES..].copy_from_slice(payload);
        let crc = compute_crc(&batch);
        batch[field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
        batch
    }

    proptest! {
        #[test]
        fn stamping_a_producer_gives_the_crc_a_full_pass_would(
            payload in proptest::collection::vec(any::<u8>(), 0..4096),
            old in (any::<i64>(), any::<i16>(), any::<i32>()),
            new in (any::<i64>(), any::<i16>(), any::<i32>()),
        ) {
            let mut batch = sealed(&payload, old.0, old.1, old.2);
            stamp_producer(&mut batch, new.0, new.1, new.2);
            let expected = sealed(&payload, new.0, new.1, new.2);
            prop_assert_eq!(&batch, &expected);
            prop_assert_eq!(read_u32(&batch, field::CRC), compute_crc(&batch));
        }

        #[test]
        fn sequences_wrap_from_the_largest_to_zero(base in 0..=i32::MAX, count in 1u32..100_000) {
            let after = sequence_after(base, count);
            prop_assert!(after >= 0);
            let expected = (i64::from(base) + i64::from(count)) % (i64::from(i32::MAX) + 1);
            prop_assert_eq!(i64::from(after), expected);
            prop_assert_eq!(sequence_after(last_sequence(base, count), 1), after);
        }
    }

    proptest! {
        #[test]
        fn shifting_by_zero_bytes_agrees_with_zlibs_combine(crc in any::<u32>(), bytes in 0usize..(64 << 20)) {
            prop_assert_eq!(crc_shifted_by_zeros(crc, bytes), crc32c::crc32c_combine(crc, 0, bytes));
        }
    }

    #[test]
    fn the_sequence_after_the_largest_is_zero() {
        assert_eq!(sequence_after(i32::MAX, 1), 0);
        assert_eq!(sequence_after(i32::MAX - 1, 3), 1);
        assert_eq!(last_sequence(7, 1), 7);
    }
}
