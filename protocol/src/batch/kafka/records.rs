//! The records inside a Kafka RecordBatch v2, read in place: what a native consumer gets from a
//! batch a Kafka producer wrote.
//!
//! [`KafkaRecords::validate`] walks every record once and checks everything a reader will
//! trust (lengths inside the record, each record's length field matching its body, offset
//! deltas rising inside the batch's range, header keys UTF-8, the record count, no bytes left
//! over); iterating afterwards re-reads the varints without checking them again. It takes the
//! records' bytes as they follow the Kafka header, already decompressed when the batch's
//! attributes name a codec (see `compression`). Nothing here allocates.
//!
//! Record layout (Kafka's `DefaultRecord`): `length` varint (bytes after it), `attributes`
//! int8 (unused), `timestampDelta` varlong, `offsetDelta` varint, `keyLength` varint (-1:
//! null), key, `valueLength` varint (-1: null), value, `headerCount` varint, then per header
//! `keyLength` varint, UTF-8 key, `valueLength` varint (-1: null), value.

use super::varint::{read_varint, read_varlong};
use super::KafkaBatchInfo;
use crate::error::BatchError;

/// The validated records of one Kafka batch. Cloning is cheap (a cursor over borrowed bytes).
#[derive(Debug, Clone)]
pub struct KafkaRecords<'a> {
    bytes: &'a [u8],
    remaining: usize,
    base_offset: u64,
    base_timestamp: i64,
    /// Kafka's LogAppendTime batches give every record the batch's max timestamp.
    log_append_timestamp: Option<i64>,
}

/// One Kafka record's fields, borrowed from the records' bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaRecord<'a> {
    pub offset: u64,
    pub timestamp: i64,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: usize,
    /// The headers' bytes, `header_count` of them; read with [`KafkaHeaders`].
    pub headers: &'a [u8],
}

/// A cursor over the front of a byte slice that fails rather than panics.
struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn varint(&mut self) -> Option<i32> {
        let (value, taken) = read_varint(self.bytes)?;
        self.bytes = &self.bytes[taken..];
        Some(value)
    }

    fn varlong(&mut self) -> Option<i64> {
        let (value, taken) = read_varlong(self.bytes)?;
        self.bytes = &self.bytes[taken..];
        Some(value)
    }

    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        if length > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Some(taken)
    }

    /// A length-prefixed byte string; `-1` is null, other negative lengths are refused.
    fn nullable_bytes(&mut self) -> Option<Option<&'a [u8]>> {
        match self.varint()? {
            -1 => Some(None),
            length if length >= 0 => self.take(length as usize).map(Some),
            _ => None,
        }
    }
}

/// Why a record is malformed, and which record.
fn bad(index: usize, reason: &'static str) -> BatchError {
    BatchError::KafkaBadRecord { index, reason }
}

impl<'a> KafkaRecords<'a> {
    /// Checks the records of the batch `info` describes. `records` are the bytes after the
    /// Kafka header, decompressed; `base_offset` the batch's base offset (as stamped).
    pub fn validate(records: &'a [u8], info: &KafkaBatchInfo) -> Result<Self, BatchError> {
        let count =
            usize::try_from(info.record_count).map_err(|_| bad(0, "negative record count"))?;
        let mut cursor = Cursor { bytes: records };
        let mut lowest_offset_delta = 0i64;
        for index in 0..count {
            let body =
                record_body(&mut cursor).ok_or_else(|| bad(index, "length runs past the batch"))?;
            let offset_delta = check_body(body).map_err(|reason| bad(index, reason))?;
            if i64::from(offset_delta) < lowest_offset_delta
                || offset_delta > info.last_offset_delta
            {
                return Err(bad(
                    index,
                    "offset delta not above the previous one or past the batch's last",
                ));
            }
            lowest_offset_delta = i64::from(offset_delta) + 1;
        }
        if !cursor.bytes.is_empty() {
            return Err(bad(count, "bytes left after the last record"));
        }
        Ok(Self {
            bytes: records,
            remaining: count,
            base_offset: info.base_offset as u64,
            base_timestamp: info.base_timestamp,
            log_append_timestamp: info.is_log_append_time().then_some(info.max_timestamp),
        })
    }

    /// Records not yet yielded.
    pub fn len(&self) -> usize {
        self.remaining
    }

    pub fn is_empty(&self) -> bool {
        self.remaining == 0
    }
}

/// Reads one record's length and returns its body.
fn record_body<'a>(cursor: &mut Cursor<'a>) -> Option<&'a [u8]> {
    let length = cursor.varint()?;
    cursor.take(usize::try_from(length).ok()?)
}

/// Checks one record body and returns its offset delta.
fn check_body(body: &[u8]) -> Result<i32, &'static str> {
    let mut cursor = Cursor { bytes: body };
    cursor.byte().ok_or("no attributes")?;
    cursor.varlong().ok_or("bad timestamp delta")?;
    let offset_delta = cursor.varint().ok_or("bad offset delta")?;
    cursor.nullable_bytes().ok_or("bad key length")?;
    cursor.nullable_bytes().ok_or("bad value length")?;
    let header_count = cursor.varint().ok_or("bad header count")?;
    if header_count < 0 {
        return Err("negative header count");
    }
    for _ in 0..header_count {
        let key = match cursor.nullable_bytes() {
            Some(Some(key)) => key,
            _ => return Err("bad header key length"),
        };
        if core::str::from_utf8(key).is_err() {
            return Err("header key is not UTF-8");
        }
        cursor.nullable_bytes().ok_or("bad header value length")?;
    }
    if !cursor.bytes.is_empty() {
        return Err("record length field disagrees with its body");
    }
    Ok(offset_delta)
}

/// Re-reads one record that `validate` accepted (`None` here is a broken invariant). The
/// record's offset and timestamp are still deltas.
fn read_record<'a>(cursor: &mut Cursor<'a>) -> Option<(i64, i32, KafkaRecord<'a>)> {
    let body = record_body(cursor)?;
    let mut body = Cursor { bytes: body };
    body.byte()?;
    let timestamp_delta = body.varlong()?;
    let offset_delta = body.varint()?;
    let key = body.nullable_bytes()?;
    let value = body.nullable_bytes()?;
    let header_count = usize::try_from(body.varint()?).ok()?;
    let record = KafkaRecord {
        offset: 0,
        timestamp: 0,
        key,
        value,
        header_count,
        headers: body.bytes,
    };
    Some((timestamp_delta, offset_delta, record))
}

impl<'a> Iterator for KafkaRecords<'a> {
    type Item = KafkaRecord<'a>;

    fn next(&mut self) -> Option<KafkaRecord<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let mut cursor = Cursor { bytes: self.bytes };
        let (timestamp_delta, offset_delta, record) =
            read_record(&mut cursor).expect("records were validated");
        self.bytes = cursor.bytes;
        self.remaining -= 1;
        Some(KafkaRecord {
            // No overflow: `check` bounds base offset + offset count by OFFSET_MAX, and
            // `validate` keeps deltas in [0, lastOffsetDelta].
            offset: self.base_offset + offset_delta as u64,
            // Wrapping, as Java's long arithmetic does.
            timestamp: self
                .log_append_timestamp
                .unwrap_or_else(|| self.base_timestamp.wrapping_add(timestamp_delta)),
            ..record
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for KafkaRecords<'_> {}

/// The headers of one validated Kafka record: `(key, value)`, a null value read as empty
/// (native headers have no null value).
#[derive(Debug, Clone, Copy)]
pub struct KafkaHeaders<'a> {
    bytes: &'a [u8],
    remaining: usize,
}

impl<'a> KafkaHeaders<'a> {
    pub fn new(record: &KafkaRecord<'a>) -> Self {
        Self {
            bytes: record.headers,
            remaining: record.header_count,
        }
    }
}

impl<'a> Iterator for KafkaHeaders<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        let mut cursor = Cursor { bytes: self.bytes };
        let key = cursor
            .nullable_bytes()
            .flatten()
            .expect("headers were validated");
        let key = core::str::from_utf8(key).expect("header keys were validated as UTF-8");
        let value = cursor.nullable_bytes().expect("headers were validated");
        self.bytes = cursor.bytes;
        self.remaining -= 1;
        Some((key, value.unwrap_or_default()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for KafkaHeaders<'_> {}
