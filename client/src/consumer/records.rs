//! What `poll` returns: fetched batch bytes, already checked, and records read from them in
//! place.
//!
//! A [`Polled`] owns the fetched bytes (reference-counted slices of the response frame, no
//! copy). `poll` validates each batch once (header, CRC, record archive, record offsets) and
//! keeps, beside the bytes, the protocol's validated record iterator of every batch;
//! [`Polled::records`] walks those without validating anything again. A [`ConsumerRecord`]'s
//! key, value and headers are views into the bytes; [`OwnedRecord`] is the variant that outlives
//! the `Polled`, sharing the same memory rather than copying it. Fetching and positions are
//! `consumer`'s business; this file only reads.

use std::sync::Arc;

use bytes::Bytes;
use self_cell::self_cell;
use spate_protocol::batch::{BatchIter, RecordHeader, RecordView, Records};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::BatchError;

/// The records of each batch of a chunk, in order, borrowed from the chunk's bytes.
type BatchRecords<'bytes> = Vec<Records<'bytes>>;

self_cell!(
    /// A chunk's bytes and, borrowed from them, the records of every batch in them, validated
    /// once when the cell was built.
    struct ValidatedBatches {
        owner: Bytes,
        #[covariant]
        dependent: BatchRecords,
    }

    impl {Debug}
);

/// Consecutive whole batches of one partition, checked by `poll`.
#[derive(Debug, Clone)]
pub(crate) struct PolledChunk {
    pub(crate) topic: Arc<str>,
    pub(crate) partition: u32,
    /// Shared, so that cloning a `Polled` neither copies nor validates again.
    batches: Arc<ValidatedBatches>,
    /// Records below this offset were already returned (a fetch starts at the batch that holds
    /// the position, which may begin earlier).
    pub(crate) skip_below: u64,
    pub(crate) record_count: usize,
}

impl PolledChunk {
    /// Validates every batch (header, CRC, record archive) and counts the records at or above
    /// `skip_below`. Returns the first failure with the offset of the batch it hit. The only
    /// validation these bytes get: reading the records later reuses what it found.
    pub(crate) fn check(
        topic: Arc<str>,
        partition: u32,
        bytes: Bytes,
        skip_below: u64,
    ) -> Result<Self, (u64, BatchError)> {
        let mut record_count = 0;
        let batches = ValidatedBatches::try_new(bytes, |bytes| {
            let mut all_records = Vec::new();
            let mut batches = BatchIter::new(bytes, BATCH_BYTES_MAX);
            for batch in &mut batches {
                let batch = batch.map_err(|error| (skip_below, error))?;
                let records = batch
                    .records()
                    .map_err(|error| (batch.base_offset(), error))?;
                record_count += records
                    .clone()
                    .filter(|record| record.offset() >= skip_below)
                    .count();
                all_records.push(records);
            }
            if !batches.remainder().is_empty() {
                // The fetcher cuts chunks at batch boundaries; a remainder means bytes changed.
                return Err((
                    skip_below,
                    BatchError::Truncated {
                        needed: bytes.len(),
                        available: batches.consumed_bytes(),
                    },
                ));
            }
            Ok(all_records)
        })?;
        Ok(Self {
            topic,
            partition,
            batches: Arc::new(batches),
            skip_below,
            record_count,
        })
    }

    /// The fetched bytes: whole batches, back to back.
    pub(crate) fn bytes(&self) -> &Bytes {
        self.batches.borrow_owner()
    }

    fn batch_records(&self) -> &[Records<'_>] {
        self.batches.borrow_dependent()
    }
}

// `poll` runs on the application's thread; its result may move to and be read from others.
const _: fn() = || {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<Polled>();
};

/// Records returned by one `poll`, from one or more partitions, in partition order within
/// each partition.
///
/// ```no_run
/// # fn demo(consumer: &mut spate_client::Consumer) -> Result<(), spate_client::Error> {
/// use std::time::Duration;
///
/// let polled = consumer.poll(Duration::from_millis(500))?;
/// for record in polled.records() {
///     // Borrowed from the fetched batch: no copy.
///     let value: &[u8] = record.value().unwrap_or_default();
///     println!("{}/{} @{}: {}", record.topic(), record.partition(), record.offset(),
///              String::from_utf8_lossy(value));
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Default)]
pub struct Polled {
    pub(crate) chunks: Vec<PolledChunk>,
}

impl Polled {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.record_count).sum()
    }

    /// Whether the poll returned no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of fetched batches held.
    pub fn batch_bytes(&self) -> usize {
        self.chunks.iter().map(|chunk| chunk.bytes().len()).sum()
    }

    /// The records, borrowing from the fetched bytes.
    pub fn records(&self) -> PolledRecords<'_> {
        PolledRecords {
            chunks: self.chunks.iter(),
            current: None,
        }
    }

    /// The records as [`OwnedRecord`]s that share the fetched bytes (no copy of keys or
    /// values).
    pub fn to_owned_records(&self) -> Vec<OwnedRecord> {
        self.records()
            .map(|record| record.to_owned_record())
            .collect()
    }
}

impl<'a> IntoIterator for &'a Polled {
    type Item = ConsumerRecord<'a>;
    type IntoIter = PolledRecords<'a>;

    fn into_iter(self) -> PolledRecords<'a> {
        self.records()
    }
}

/// Iterator over a [`Polled`]'s records.
pub struct PolledRecords<'a> {
    chunks: std::slice::Iter<'a, PolledChunk>,
    current: Option<ChunkCursor<'a>>,
}

struct ChunkCursor<'a> {
    chunk: &'a PolledChunk,
    batches: std::slice::Iter<'a, Records<'a>>,
    records: Option<Records<'a>>,
}

impl<'a> Iterator for PolledRecords<'a> {
    type Item = ConsumerRecord<'a>;

    fn next(&mut self) -> Option<ConsumerRecord<'a>> {
        loop {
            let Some(cursor) = &mut self.current else {
                let chunk = self.chunks.next()?;
                self.current = Some(ChunkCursor {
                    chunk,
                    batches: chunk.batch_records().iter(),
                    records: None,
                });
                continue;
            };
            if let Some(records) = &mut cursor.records {
                for view in records.by_ref() {
                    if view.offset() >= cursor.chunk.skip_below {
                        return Some(ConsumerRecord {
                            chunk: cursor.chunk,
                            view,
                        });
                    }
                }
                cursor.records = None;
            }
            match cursor.batches.next() {
                Some(records) => cursor.records = Some(records.clone()),
                None => self.current = None,
            }
        }
    }
}

/// One record, borrowed from the fetched batch.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRecord<'a> {
    chunk: &'a PolledChunk,
    view: RecordView<'a>,
}

impl<'a> ConsumerRecord<'a> {
    /// The topic it was read from.
    pub fn topic(&self) -> &'a str {
        &self.chunk.topic
    }

    /// The partition it was read from.
    pub fn partition(&self) -> u32 {
        self.chunk.partition
    }

    /// Its offset in the partition.
    pub fn offset(&self) -> u64 {
        self.view.offset()
    }

    /// Milliseconds since the Unix epoch.
    pub fn timestamp(&self) -> i64 {
        self.view.timestamp()
    }

    /// The key, if it has one.
    pub fn key(&self) -> Option<&'a [u8]> {
        self.view.key()
    }

    /// `None` for a tombstone.
    pub fn value(&self) -> Option<&'a [u8]> {
        self.view.value()
    }

    /// Headers in the order the producer added them; keys may repeat.
    pub fn headers(&self) -> impl ExactSizeIterator<Item = (&'a str, &'a [u8])> + Clone + 'a {
        self.view.headers()
    }

    /// A copy that outlives the poll result; key and value share the fetched bytes.
    pub fn to_owned_record(&self) -> OwnedRecord {
        let record = self.view.to_record_sharing(self.chunk.bytes());
        OwnedRecord {
            topic: self.chunk.topic.clone(),
            partition: self.chunk.partition,
            offset: record.offset,
            timestamp: record.timestamp,
            key: record.key,
            value: record.value,
            headers: record.headers,
        }
    }
}

/// A record that owns (shares) its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// The topic it was read from.
    pub topic: Arc<str>,
    /// The partition it was read from.
    pub partition: u32,
    /// Its offset in the partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch.
    pub timestamp: i64,
    /// The key, if it has one.
    pub key: Option<Bytes>,
    /// `None` for a tombstone.
    pub value: Option<Bytes>,
    /// Headers in the order the producer added them.
    pub headers: Vec<RecordHeader>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use spate_protocol::batch::header::{compute_crc, field, stamp};
    use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};

    fn batch(base_offset: u64, values: &[&str]) -> BytesMut {
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for value in values {
            builder
                .append(Some(b"k"), Some(value.as_bytes()), NO_HEADERS, 5)
                .unwrap();
        }
        let mut bytes = builder.seal().unwrap();
        stamp(&mut bytes, base_offset, 0);
        bytes
    }

    #[test]
    fn records_below_the_position_are_skipped_and_the_rest_are_read_in_place() {
        let mut bytes = batch(10, &["a", "b", "c"]);
        bytes.extend_from_slice(&batch(13, &["d"]));
        let bytes = bytes.freeze();
        let chunk = PolledChunk::check(Arc::from("t"), 0, bytes.clone(), 11).unwrap();
        assert_eq!(chunk.record_count, 3);
        let polled = Polled {
            chunks: vec![chunk],
        };
        let seen: Vec<(u64, &[u8])> = polled
            .records()
            .map(|record| (record.offset(), record.value().unwrap()))
            .collect();
        assert_eq!(seen, vec![(11, &b"b"[..]), (12, b"c"), (13, b"d")]);
        let value = polled.records().next().unwrap().value().unwrap();
        assert!(
            bytes.as_ptr_range().contains(&value.as_ptr()),
            "a view, not a copy"
        );
        let owned = polled.to_owned_records();
        assert!(bytes
            .as_ptr_range()
            .contains(&owned[0].value.as_ref().unwrap().as_ptr()));
    }

    #[test]
    fn a_batch_whose_crc_holds_but_whose_record_archive_is_broken_is_refused() {
        let mut bytes = batch(7, &["hello", "world"]);
        // The archive's root (at the payload's end) claims far more records than exist; the
        // CRC is recomputed so that only the archive check can notice.
        let root_length = bytes.len() - 4;
        bytes[root_length..].copy_from_slice(&u32::MAX.to_le_bytes());
        let crc = compute_crc(&bytes);
        bytes[field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
        let error = PolledChunk::check(Arc::from("t"), 0, bytes.freeze(), 0).unwrap_err();
        assert_eq!(error.0, 7, "the failure names the batch's offset");
        assert!(
            matches!(error.1, BatchError::InvalidPayload { .. }),
            "{:?}",
            error.1
        );
    }

    #[test]
    fn a_clone_reads_the_same_records_from_the_same_bytes() {
        let bytes = batch(3, &["x", "y"]).freeze();
        let polled = Polled {
            chunks: vec![PolledChunk::check(Arc::from("t"), 0, bytes.clone(), 0).unwrap()],
        };
        let clone = polled.clone();
        let values: Vec<&[u8]> = clone
            .records()
            .map(|record| record.value().unwrap())
            .collect();
        assert_eq!(values, vec![&b"x"[..], b"y"]);
        assert!(bytes.as_ptr_range().contains(&values[0].as_ptr()));
        assert_eq!(clone.len(), 2);
    }

    #[test]
    fn a_flipped_byte_fails_the_check() {
        let mut bytes = batch(0, &["hello"]);
        let last = bytes.len() - 20;
        bytes[last] ^= 0xff;
        let error = PolledChunk::check(Arc::from("t"), 0, bytes.freeze(), 0).unwrap_err();
        assert!(matches!(error.1, BatchError::CrcMismatch { .. }));
    }
}
