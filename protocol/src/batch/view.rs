//! Reader side of record batches: validate bytes in place, then walk their records zero-copy.
//!
//! [`BatchView::validate`] checks the header and the CRC and covers exactly `batch_length`
//! bytes; [`BatchView::records`] additionally validates the records against the header before
//! handing out any record: the rkyv archive (bytecheck) of payload format 1, or the Kafka
//! records of payload format 2 (`batch::kafka::records`; compressed ones through
//! [`BatchView::kafka_records`] once decompressed). Both formats yield the same [`RecordView`]. [`BatchIter`] splits a
//! buffer of back-to-back batches, as a fetch returns them. Nothing here copies record bytes
//! except the explicit conversions to the owned [`Record`].

use bytes::Bytes;

use crate::batch::header::check_crc;
use crate::batch::header::{attributes, BatchHeader, PayloadFormat, BATCH_HEADER_BYTES};
use crate::batch::kafka::records::{KafkaHeaders, KafkaRecords};
use crate::batch::kafka::{self, Compression, KafkaBatchInfo, KAFKA_BATCH_HEADER_BYTES};
use crate::batch::record::{Record, RecordHeader};
use crate::batch::records::{access_entries, ArchivedHeaderEntry, ArchivedRecordEntry};
use crate::error::BatchError;

/// One batch whose header and CRC are known good. Borrows exactly `batch_length` bytes.
#[derive(Debug, Clone, Copy)]
pub struct BatchView<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl<'a> BatchView<'a> {
    /// Validates the batch that starts at `bytes[0]`: header fields ([`BatchHeader::check`]),
    /// that `bytes` holds at least `batch_length` bytes, and the CRC (both CRCs and the Kafka
    /// header for payload format 2, see `header::check_crc`). Bytes after the batch are
    /// ignored; the view covers exactly `batch_length` bytes (see [`BatchView::batch_length`]).
    pub fn validate(bytes: &'a [u8], batch_bytes_max: usize) -> Result<Self, BatchError> {
        let header = BatchHeader::decode(bytes)?;
        header.check(batch_bytes_max)?;
        let batch_length = header.batch_length as usize;
        let Some(bytes) = bytes.get(..batch_length) else {
            return Err(BatchError::Truncated {
                needed: batch_length,
                available: bytes.len(),
            });
        };
        check_crc(bytes, &header)?;
        Ok(Self { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes, exactly `batch_length` of them.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Size of the whole batch in bytes; the next batch in a buffer starts this far on.
    pub fn batch_length(&self) -> usize {
        self.bytes.len()
    }

    pub fn base_offset(&self) -> u64 {
        self.header.base_offset
    }

    pub fn last_offset(&self) -> u64 {
        self.header.last_offset()
    }

    pub fn next_offset(&self) -> u64 {
        self.header.next_offset()
    }

    pub fn record_count(&self) -> u32 {
        self.header.record_count
    }

    pub fn first_timestamp(&self) -> i64 {
        self.header.first_timestamp
    }

    pub fn max_timestamp(&self) -> i64 {
        self.header.max_timestamp
    }

    pub fn producer_id(&self) -> i64 {
        self.header.producer_id
    }

    pub fn producer_epoch(&self) -> i16 {
        self.header.producer_epoch
    }

    pub fn base_sequence(&self) -> i32 {
        self.header.base_sequence
    }

    pub fn attributes(&self) -> u16 {
        self.header.attributes
    }

    pub fn payload_format(&self) -> PayloadFormat {
        // `check` accepted the byte, so it names a known format.
        PayloadFormat::from_byte(self.header.payload_format).expect("checked in validate")
    }

    /// The bytes after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.bytes[BATCH_HEADER_BYTES..]
    }

    /// Validates the payload as records and returns an iterator over them. Fails on a
    /// compressed payload (for a Kafka batch: decompress it, see
    /// `batch::kafka::compression`, then use [`BatchView::kafka_records`]), on an archive
    /// bytecheck rejects or Kafka records that do not parse, and on records whose count or
    /// offset deltas disagree with the header.
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        let codec = self.header.attributes & attributes::COMPRESSION_MASK;
        if codec != 0 {
            return Err(BatchError::UnsupportedCompression { codec });
        }
        if self.payload_format() == PayloadFormat::KafkaV2 {
            let kafka = kafka::kafka_bytes(self.bytes);
            return self.kafka_records(&kafka[KAFKA_BATCH_HEADER_BYTES..]);
        }
        let entries = access_entries(self.payload())?;
        check_entries(entries, &self.header)?;
        Ok(Records {
            inner: RecordsInner::Native {
                entries: entries.iter(),
                base_offset: self.header.base_offset,
                first_timestamp: self.header.first_timestamp,
            },
        })
    }

    /// The Kafka header of a payload format 2 batch (`None` for format 1). `validate`
    /// checked it and its CRC; this reads its 61 bytes again without the CRC pass.
    pub fn kafka_info(&self) -> Option<KafkaBatchInfo> {
        if self.payload_format() != PayloadFormat::KafkaV2 {
            return None;
        }
        let info = kafka::decode_header(kafka::kafka_bytes(self.bytes));
        Some(info.expect("validate checked the Kafka header"))
    }

    /// The compression codec of the batch's records (always none for payload format 1).
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.header.attributes).unwrap_or(Compression::None)
    }

    /// Validates `records` as the records of this payload format 2 batch: its bytes after the
    /// Kafka header, or their decompression when it is compressed. They may live outside the
    /// batch (a decompression buffer); the iterator borrows them, not the batch.
    pub fn kafka_records<'r>(&self, records: &'r [u8]) -> Result<Records<'r>, BatchError> {
        let Some(info) = self.kafka_info() else {
            return Err(BatchError::UnsupportedPayloadFormat {
                payload_format: self.header.payload_format,
            });
        };
        let records = KafkaRecords::validate(records, &info)?;
        if records.len() != self.header.record_count as usize {
            // `check_stored` made the two headers agree, so this is the Kafka count too.
            return Err(BatchError::RecordCountMismatch {
                expected: self.header.record_count,
                actual: records.len(),
            });
        }
        Ok(Records {
            inner: RecordsInner::Kafka(records),
        })
    }
}

/// Record count must match the header, and offset deltas must rise strictly inside
/// `[0, offset_count)`, so absolute offsets are unique, ordered and inside the batch's range.
fn check_entries(entries: &[ArchivedRecordEntry], header: &BatchHeader) -> Result<(), BatchError> {
    if entries.len() != header.record_count as usize {
        return Err(BatchError::RecordCountMismatch {
            expected: header.record_count,
            actual: entries.len(),
        });
    }
    let mut lowest_allowed = 0u32;
    for (index, entry) in entries.iter().enumerate() {
        let offset_delta = entry.offset_delta.to_native();
        if offset_delta < lowest_allowed || offset_delta >= header.offset_count {
            return Err(BatchError::BadOffsetDelta {
                index,
                offset_delta,
                offset_count: header.offset_count,
            });
        }
        // Cannot overflow: offset_delta < offset_count <= u32::MAX.
        lowest_allowed = offset_delta + 1;
    }
    Ok(())
}

/// Iterator over the records of one validated batch, of either payload format.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    inner: RecordsInner<'a>,
}

#[derive(Debug, Clone)]
enum RecordsInner<'a> {
    Native {
        entries: core::slice::Iter<'a, ArchivedRecordEntry>,
        base_offset: u64,
        first_timestamp: i64,
    },
    Kafka(KafkaRecords<'a>),
}

impl<'a> Iterator for Records<'a> {
    type Item = RecordView<'a>;

    fn next(&mut self) -> Option<RecordView<'a>> {
        match &mut self.inner {
            RecordsInner::Native {
                entries,
                base_offset,
                first_timestamp,
            } => {
                let entry = entries.next()?;
                Some(RecordView {
                    // No overflow: `check` bounds base_offset + offset_count by OFFSET_MAX.
                    offset: *base_offset + u64::from(entry.offset_delta.to_native()),
                    timestamp: first_timestamp.wrapping_add(entry.timestamp_delta.to_native()),
                    key: entry.key.as_ref().map(|key| key.get()),
                    value: entry.value.as_ref().map(|value| value.get()),
                    headers: HeaderSource::Native(entry.headers.get()),
                })
            }
            RecordsInner::Kafka(records) => {
                let record = records.next()?;
                Some(RecordView {
                    offset: record.offset,
                    timestamp: record.timestamp,
                    key: record.key,
                    value: record.value,
                    headers: HeaderSource::Kafka(KafkaHeaders::new(&record)),
                })
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.inner {
            RecordsInner::Native { entries, .. } => entries.size_hint(),
            RecordsInner::Kafka(records) => records.size_hint(),
        }
    }
}

impl ExactSizeIterator for Records<'_> {}

/// One record, borrowed from its batch's bytes.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    offset: u64,
    timestamp: i64,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    headers: HeaderSource<'a>,
}

/// Where a record's headers are read from: archived entries, or Kafka's varint-framed list.
#[derive(Debug, Clone, Copy)]
enum HeaderSource<'a> {
    Native(&'a [ArchivedHeaderEntry]),
    Kafka(KafkaHeaders<'a>),
}

/// Iterator over one record's headers, `(key, value)` in the producer's order.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    source: HeaderSource<'a>,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.source {
            HeaderSource::Native(entries) => {
                let (first, rest) = entries.split_first()?;
                *entries = rest;
                Some((first.key.get(), first.value.get()))
            }
            HeaderSource::Kafka(headers) => headers.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match &self.source {
            HeaderSource::Native(entries) => (entries.len(), Some(entries.len())),
            HeaderSource::Kafka(headers) => headers.size_hint(),
        }
    }
}

impl ExactSizeIterator for Headers<'_> {}

impl<'a> RecordView<'a> {
    /// Absolute offset: the batch's stamped base offset plus this record's delta.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Absolute timestamp in milliseconds.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    pub fn key(&self) -> Option<&'a [u8]> {
        self.key
    }

    /// `None` is a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.value
    }

    pub fn header_count(&self) -> usize {
        self.headers().len()
    }

    /// Headers in the order the producer appended them; keys may repeat. A Kafka header's
    /// null value reads as empty.
    pub fn headers(&self) -> Headers<'a> {
        Headers {
            source: self.headers,
        }
    }

    /// Copies the record out of the batch.
    pub fn to_record(&self) -> Record {
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(Bytes::copy_from_slice),
            value: self.value.map(Bytes::copy_from_slice),
            headers: self
                .headers()
                .map(|(key, value)| RecordHeader {
                    key: key.to_owned(),
                    value: Bytes::copy_from_slice(value),
                })
                .collect(),
        }
    }

    /// Like [`RecordView::to_record`] but shares key and value bytes with `batch` (no copy)
    /// when this view was read from inside it; copies otherwise. Header keys are always copied
    /// into `String`s.
    pub fn to_record_sharing(&self, batch: &Bytes) -> Record {
        let share = |bytes: &[u8]| share_or_copy(batch, bytes);
        Record {
            offset: self.offset,
            timestamp: self.timestamp,
            key: self.key.map(share),
            value: self.value.map(share),
            headers: self
                .headers()
                .map(|(key, value)| RecordHeader {
                    key: key.to_owned(),
                    value: share(value),
                })
                .collect(),
        }
    }
}

fn share_or_copy(batch: &Bytes, bytes: &[u8]) -> Bytes {
    let outer = batch.as_ptr_range();
    let inner = bytes.as_ptr_range();
    let inside = outer.start <= inner.start && inner.end <= outer.end;
    if inside && !bytes.is_empty() {
        batch.slice_ref(bytes)
    } else {
        Bytes::copy_from_slice(bytes)
    }
}

/// Splits a buffer of back-to-back batches. Yields each batch validated like
/// [`BatchView::validate`]; ends cleanly (`None`) at a trailing partial batch, which a fetch
/// response may legally end with, and yields one error then ends at a corrupt batch.
///
/// A trailing fragment shorter than a header counts as partial. A fragment with a whole header
/// is partial only if the header passes [`BatchHeader::check`]; otherwise it is corrupt.
#[derive(Debug, Clone)]
pub struct BatchIter<'a> {
    bytes: &'a [u8],
    consumed_bytes: usize,
    batch_bytes_max: usize,
    failed: bool,
}

impl<'a> BatchIter<'a> {
    pub fn new(bytes: &'a [u8], batch_bytes_max: usize) -> Self {
        Self {
            bytes,
            consumed_bytes: 0,
            batch_bytes_max,
            failed: false,
        }
    }

    /// Bytes covered by the complete batches yielded so far.
    pub fn consumed_bytes(&self) -> usize {
        self.consumed_bytes
    }

    /// The bytes not yet yielded as batches: after the iterator ends without an error, the
    /// trailing partial batch (possibly empty).
    pub fn remainder(&self) -> &'a [u8] {
        &self.bytes[self.consumed_bytes..]
    }

    fn fail(&mut self, error: BatchError) -> Option<Result<BatchView<'a>, BatchError>> {
        self.failed = true;
        Some(Err(error))
    }
}

impl<'a> Iterator for BatchIter<'a> {
    type Item = Result<BatchView<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let rest = self.remainder();
        if rest.len() < BATCH_HEADER_BYTES {
            return None;
        }
        let header = match BatchHeader::decode(rest) {
            Ok(header) => header,
            Err(error) => return self.fail(error),
        };
        if let Err(error) = header.check(self.batch_bytes_max) {
            return self.fail(error);
        }
        if rest.len() < header.batch_length as usize {
            return None;
        }
        match BatchView::validate(rest, self.batch_bytes_max) {
            Ok(view) => {
                self.consumed_bytes += view.batch_length();
                Some(Ok(view))
            }
            Err(error) => self.fail(error),
        }
    }
}

impl core::iter::FusedIterator for BatchIter<'_> {}
