//! What `poll` returns: fetched batch bytes, already checked, and records read from them in
//! place.
//!
//! A [`Polled`] owns the fetched bytes (reference-counted slices of the response frame, no
//! copy). `poll` validates each batch once (header, CRC, record archive or Kafka records,
//! record offsets) and keeps, beside the bytes, the protocol's validated record iterator of
//! every batch; [`Polled::records`] walks those without validating anything again.
//!
//! Batches a Kafka producer wrote (payload format 2) read like native ones. A compressed one
//! is decompressed once, at `poll`, into a buffer of its own that the chunk keeps beside its
//! records; a [`DecompressionBudget`] keeps one poll's decompressed bytes under
//! `ConsumerConfig::decompressed_bytes_max` by ending a chunk early (the consumer fetches the
//! rest again). Control batches (Kafka's transaction markers) hold no user records and are
//! skipped, and so, for a read_committed consumer, are the batches of the aborted
//! transactions the fetch answer listed (`aborted`). A [`ConsumerRecord`]'s
//! key, value and headers are views into the bytes; [`OwnedRecord`] is the variant that outlives
//! the `Polled`, sharing the same memory rather than copying it. Fetching and positions are
//! `consumer`'s business; this file only reads.

use std::sync::Arc;

use bytes::Bytes;
use self_cell::self_cell;
use spate_protocol::api::AbortedTransaction;
use spate_protocol::batch::header::attributes;
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::{self, Compression, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::{BatchIter, BatchView, RecordHeader, RecordView, Records};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_protocol::BatchError;

use crate::consumer::aborted::{AbortedFilter, BatchFacts};

self_cell!(
    /// A compressed Kafka batch's records, validated, beside their decompressed bytes.
    struct DecompressedRecords {
        owner: Bytes,
        #[covariant]
        dependent: Records,
    }

    impl {Debug}
);

/// The validated records of one batch.
#[derive(Debug)]
enum BatchRecords<'bytes> {
    /// Read in place from the fetched bytes.
    InPlace(Records<'bytes>),
    /// Read from the batch's decompression.
    Decompressed(DecompressedRecords),
}

impl BatchRecords<'_> {
    /// A fresh iterator over the records (cheap: a cursor), and the bytes they borrow from.
    fn records<'a>(&'a self, fetched: &'a Bytes) -> (Records<'a>, &'a Bytes) {
        match self {
            Self::InPlace(records) => (records.clone(), fetched),
            Self::Decompressed(cell) => (cell.borrow_dependent().clone(), cell.borrow_owner()),
        }
    }
}

/// Decompressed bytes one poll may still take. Owned by one `poll`; dies with it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecompressionBudget {
    /// Bytes left for this poll. Starts at the limit, so the first batch always fits.
    left_bytes: usize,
    /// The most one batch may inflate to (the limit).
    batch_bytes_max: usize,
}

impl DecompressionBudget {
    pub(crate) fn new(decompressed_bytes_max: usize) -> Self {
        Self {
            left_bytes: decompressed_bytes_max,
            batch_bytes_max: decompressed_bytes_max,
        }
    }
}

/// Validates one batch's records: in place, or, for a compressed Kafka batch, in a buffer it
/// is decompressed into. `None`: the decompressed batch does not fit what is left of the
/// poll's budget (dropped at once; the batch is read by a later poll).
fn validate_records<'bytes>(
    batch: &BatchView<'bytes>,
    budget: &mut DecompressionBudget,
) -> Result<Option<BatchRecords<'bytes>>, BatchError> {
    let codec = batch.compression();
    if codec == Compression::None {
        return batch
            .records()
            .map(|records| Some(BatchRecords::InPlace(records)));
    }
    let compressed = &kafka::kafka_bytes(batch.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
    let decompressed = decompress(codec, compressed, budget.batch_bytes_max)?;
    if decompressed.len() > budget.left_bytes {
        return Ok(None);
    }
    budget.left_bytes -= decompressed.len();
    let decompressed = Bytes::from(decompressed);
    let cell = DecompressedRecords::try_new(decompressed, |records| batch.kafka_records(records))?;
    Ok(Some(BatchRecords::Decompressed(cell)))
}

/// The records of each batch of a chunk, in order.
type ChunkRecords<'bytes> = Vec<BatchRecords<'bytes>>;

self_cell!(
    /// A chunk's bytes and, borrowed from them, the records of every batch in them, validated
    /// once when the cell was built.
    struct ValidatedBatches {
        owner: Bytes,
        #[covariant]
        dependent: ChunkRecords,
    }

    impl {Debug}
);

/// What the aborted-transaction filter reads of a batch.
fn batch_facts(batch: &BatchView<'_>) -> BatchFacts {
    let is_control = batch.attributes() & attributes::CONTROL != 0;
    BatchFacts {
        producer_id: batch.producer_id(),
        last_offset: batch.last_offset(),
        is_transactional: batch.attributes() & attributes::TRANSACTIONAL != 0,
        is_control,
        is_abort_marker: if is_control {
            abort_marker(batch)
        } else {
            None
        },
    }
}

/// Whether a control batch's marker is an abort (`Some(true)`) or a commit; `None` when its
/// record does not read as a marker. Kafka's control record key is a version (i16) and a type
/// (i16: 0 abort, 1 commit), big-endian.
fn abort_marker(batch: &BatchView<'_>) -> Option<bool> {
    let key = batch.records().ok()?.next()?.key()?;
    match i16::from_be_bytes(key.get(2..4)?.try_into().ok()?) {
        0 => Some(true),
        1 => Some(false),
        _ => None,
    }
}

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
    /// Where the chunk was ended early to keep within the poll's decompression budget: the
    /// first batch left out. The consumer fetches again from there.
    pub(crate) cut_at: Option<u64>,
}

impl PolledChunk {
    /// Validates every batch (header, CRC, records; a compressed Kafka batch is decompressed
    /// within `budget`) and counts the records at or above `skip_below`. Returns the first
    /// failure with the offset of the batch it hit. The only validation these bytes get:
    /// reading the records later reuses what it found. A batch that does not fit what is left
    /// of `budget` ends the chunk there (`cut_at`).
    pub(crate) fn check(
        topic: Arc<str>,
        partition: u32,
        bytes: Bytes,
        skip_below: u64,
        aborted: &[AbortedTransaction],
        budget: &mut DecompressionBudget,
    ) -> Result<Self, (u64, BatchError)> {
        let mut record_count = 0;
        let mut cut_at = None;
        let mut filter = AbortedFilter::new(aborted);
        let batches = ValidatedBatches::try_new(bytes, |bytes| {
            let mut all_records = Vec::new();
            let mut batches = BatchIter::new(bytes, BATCH_BYTES_MAX);
            for batch in &mut batches {
                let batch = batch.map_err(|error| (skip_below, error))?;
                // Transaction markers hold no user records, and aborted transactions' batches
                // are not handed out under read_committed. Positions move past both anyway
                // (the fetcher advances by batch headers).
                if filter.skips(batch_facts(&batch)) {
                    continue;
                }
                let Some(records) = validate_records(&batch, budget)
                    .map_err(|error| (batch.base_offset(), error))?
                else {
                    cut_at = Some(batch.base_offset());
                    return Ok(all_records);
                };
                let (batch_records, _) = records.records(bytes);
                record_count += if batch.base_offset() >= skip_below {
                    // Every record counts: no walk (a Kafka batch's would re-read its varints).
                    batch_records.len()
                } else {
                    batch_records
                        .filter(|record| record.offset() >= skip_below)
                        .count()
                };
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
            cut_at,
        })
    }

    /// The fetched bytes: whole batches, back to back.
    pub(crate) fn bytes(&self) -> &Bytes {
        self.batches.borrow_owner()
    }

    fn batch_records(&self) -> &[BatchRecords<'_>] {
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
    batches: std::slice::Iter<'a, BatchRecords<'a>>,
    /// The current batch's records and the bytes they borrow from.
    records: Option<(Records<'a>, &'a Bytes)>,
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
            if let Some((records, source)) = &mut cursor.records {
                for view in records.by_ref() {
                    if view.offset() >= cursor.chunk.skip_below {
                        return Some(ConsumerRecord {
                            chunk: cursor.chunk,
                            source,
                            view,
                        });
                    }
                }
                cursor.records = None;
            }
            match cursor.batches.next() {
                Some(batch) => cursor.records = Some(batch.records(cursor.chunk.bytes())),
                None => self.current = None,
            }
        }
    }
}

/// One record, borrowed from the fetched batch.
#[derive(Debug, Clone, Copy)]
pub struct ConsumerRecord<'a> {
    chunk: &'a PolledChunk,
    /// The bytes `view` borrows: the fetched chunk, or a batch's decompression.
    source: &'a Bytes,
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
        let record = self.view.to_record_sharing(self.source);
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
    use spate_protocol::batch::BATCH_HEADER_BYTES;
    use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};
    use spate_protocol::constants::BATCH_BYTES_MAX;
    use spate_protocol::constants::DECOMPRESSED_BATCH_BYTES_MAX;

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
        let chunk = PolledChunk::check(
            Arc::from("t"),
            0,
            bytes.clone(),
            11,
            &[],
            &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
        )
        .unwrap();
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
        let error = PolledChunk::check(
            Arc::from("t"),
            0,
            bytes.freeze(),
            0,
            &[],
            &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
        )
        .unwrap_err();
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
            chunks: vec![PolledChunk::check(
                Arc::from("t"),
                0,
                bytes.clone(),
                0,
                &[],
                &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
            )
            .unwrap()],
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
        let error = PolledChunk::check(
            Arc::from("t"),
            0,
            bytes.freeze(),
            0,
            &[],
            &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
        )
        .unwrap_err();
        assert!(matches!(error.1, BatchError::CrcMismatch { .. }));
    }

    /// A Kafka producer's batch of `values` with `codec`, stored as the broker stores it.
    fn kafka_batch(
        base_offset: u64,
        values: &[&[u8]],
        codec: kafka_protocol::records::Compression,
        control: bool,
    ) -> BytesMut {
        use kafka_protocol::records::{
            Record as KafkaRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let records: Vec<KafkaRecord> = values
            .iter()
            .enumerate()
            .map(|(index, value)| KafkaRecord {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: index as i64,
                sequence: index as i32 - 1,
                timestamp: 1000 + index as i64,
                key: Some(Bytes::from_static(b"key")),
                value: Some(Bytes::copy_from_slice(value)),
                headers: Default::default(),
            })
            .collect();
        let mut kafka = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut kafka,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression: codec,
            },
        )
        .unwrap();
        let mut stored = kafka::wrap(&kafka).unwrap();
        if control {
            make_control(&mut stored);
        }
        stamp(&mut stored, base_offset, 0);
        stored
    }

    /// Producers may not write control batches (`wrap` refuses them); the broker writes
    /// transaction markers itself. Sets the bit in both headers, then both CRCs.
    fn make_control(stored: &mut BytesMut) {
        let spate_attributes = field::ATTRIBUTES;
        stored[spate_attributes] |= attributes::CONTROL as u8;
        let kafka_attributes = BATCH_HEADER_BYTES + kafka::field::ATTRIBUTES + 1;
        stored[kafka_attributes] |= attributes::CONTROL as u8;
        let kafka_part = &mut stored[BATCH_HEADER_BYTES..];
        let crc = crc32c::crc32c(&kafka_part[kafka::field::CRC_START..]);
        kafka_part[kafka::field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
        let crc = compute_crc(stored);
        stored[field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
    }

    /// A transaction marker of `producer_id` as the broker writes it: a Kafka control batch
    /// whose one record's key is version 0 and type 0 (abort) or 1 (commit).
    fn marker(base_offset: u64, producer_id: i64, abort: bool) -> BytesMut {
        use kafka_protocol::records::{
            Record as KafkaRecord, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
        };
        let record = KafkaRecord {
            transactional: true,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: 0,
            // `wrap` checks a producer's batch; the broker's own markers carry -1.
            sequence: 0,
            timestamp: 1000,
            key: Some(Bytes::from(vec![0, 0, 0, u8::from(!abort)])),
            value: Some(Bytes::from_static(&[0, 0, 0, 0, 0, 0])),
            headers: Default::default(),
        };
        let mut kafka = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut kafka,
            &[record],
            &RecordEncodeOptions {
                version: 2,
                compression: kafka_protocol::records::Compression::None,
            },
        )
        .unwrap();
        let mut stored = kafka::wrap(&kafka).unwrap();
        make_control(&mut stored);
        stamp(&mut stored, base_offset, 0);
        stored
    }

    /// A native transactional batch of `producer_id`.
    fn transactional_batch(base_offset: u64, producer_id: i64, values: &[&str]) -> BytesMut {
        let mut builder = BatchBuilder::new(BatchOptions {
            producer_id,
            producer_epoch: 0,
            base_sequence: 0,
            attributes: attributes::TRANSACTIONAL,
            ..BatchOptions::default()
        });
        for value in values {
            builder
                .append(Some(b"k"), Some(value.as_bytes()), NO_HEADERS, 5)
                .unwrap();
        }
        let mut bytes = builder.seal().unwrap();
        stamp(&mut bytes, base_offset, 0);
        bytes
    }

    fn values_of(polled: &Polled) -> Vec<(u64, String)> {
        polled
            .records()
            .map(|record| {
                let value = String::from_utf8_lossy(record.value().unwrap()).to_string();
                (record.offset(), value)
            })
            .collect()
    }

    #[test]
    fn read_committed_drops_the_aborted_transactions_records_and_every_marker() {
        // Producer 7 aborts (offsets 0-2, marker 3), producer 8 commits around it (1 and 4,
        // marker 5), producer 7 commits its next transaction (6, marker 7), then a plain batch.
        let mut bytes = transactional_batch(0, 7, &["aborted-a"]);
        bytes.extend_from_slice(&transactional_batch(1, 8, &["committed-a"]));
        bytes.extend_from_slice(&transactional_batch(2, 7, &["aborted-b"]));
        bytes.extend_from_slice(&marker(3, 7, true));
        bytes.extend_from_slice(&transactional_batch(4, 8, &["committed-b"]));
        bytes.extend_from_slice(&marker(5, 8, false));
        bytes.extend_from_slice(&transactional_batch(6, 7, &["committed-c"]));
        bytes.extend_from_slice(&marker(7, 7, false));
        bytes.extend_from_slice(&batch(8, &["plain"]));
        let bytes = bytes.freeze();
        let aborted = [AbortedTransaction {
            producer_id: 7,
            first_offset: 0,
        }];
        let read = |aborted: &[AbortedTransaction]| {
            let chunk = PolledChunk::check(
                Arc::from("t"),
                0,
                bytes.clone(),
                0,
                aborted,
                &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
            )
            .unwrap();
            assert_eq!(chunk.record_count, chunk_values(&chunk).len());
            chunk
        };
        let committed = read(&aborted);
        assert_eq!(
            chunk_values(&committed),
            vec![
                (1, "committed-a".to_string()),
                (4, "committed-b".to_string()),
                (6, "committed-c".to_string()),
                (8, "plain".to_string()),
            ]
        );
        // Read uncommitted (no aborted list): every data record, still no marker.
        let uncommitted = read(&[]);
        assert_eq!(chunk_values(&uncommitted).len(), 6);
        assert!(chunk_values(&uncommitted)
            .iter()
            .all(|(_, value)| value != "marker"));
    }

    fn chunk_values(chunk: &PolledChunk) -> Vec<(u64, String)> {
        values_of(&Polled {
            chunks: vec![chunk.clone()],
        })
    }

    #[test]
    fn the_marker_type_is_read_from_the_control_records_key() {
        for abort in [true, false] {
            let bytes = marker(4, 9, abort).freeze();
            let view = BatchView::validate(&bytes, BATCH_BYTES_MAX).unwrap();
            assert_eq!(abort_marker(&view), Some(abort));
            let facts = batch_facts(&view);
            assert!(facts.is_control && facts.is_transactional);
            assert_eq!((facts.producer_id, facts.last_offset), (9, 4));
        }
    }

    #[test]
    fn kafka_batches_of_every_codec_read_like_native_ones_and_control_batches_are_skipped() {
        use kafka_protocol::records::Compression as Codec;
        let codecs = [
            Codec::None,
            Codec::Gzip,
            Codec::Snappy,
            Codec::Lz4,
            Codec::Zstd,
        ];
        let mut bytes = batch(0, &["native"]);
        let mut expected: Vec<(u64, Vec<u8>)> = vec![(0, b"native".to_vec())];
        let mut next_offset = 1;
        for codec in codecs {
            let values: Vec<Vec<u8>> = (0..3)
                .map(|index| format!("{codec:?}-{index}-").repeat(50).into_bytes())
                .collect();
            let borrowed: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
            bytes.extend_from_slice(&kafka_batch(next_offset, &borrowed, codec, false));
            for value in values {
                expected.push((next_offset, value));
                next_offset += 1;
            }
        }
        // A transaction marker between data batches holds no records for the application.
        bytes.extend_from_slice(&kafka_batch(next_offset, &[b"marker"], Codec::None, true));
        next_offset += 1;
        bytes.extend_from_slice(&batch(next_offset, &["after"]));
        expected.push((next_offset, b"after".to_vec()));

        let bytes = bytes.freeze();
        let chunk = PolledChunk::check(
            Arc::from("t"),
            0,
            bytes.clone(),
            2,
            &[],
            &mut DecompressionBudget::new(DECOMPRESSED_BATCH_BYTES_MAX),
        )
        .unwrap();
        expected.retain(|(offset, _)| *offset >= 2);
        assert_eq!(chunk.record_count, expected.len());
        let polled = Polled {
            chunks: vec![chunk],
        };
        let seen: Vec<(u64, Vec<u8>)> = polled
            .records()
            .map(|record| (record.offset(), record.value().unwrap().to_vec()))
            .collect();
        assert_eq!(seen, expected);
        // Owned copies share the bytes they were read from: the fetched ones for uncompressed
        // batches, the decompression buffer for compressed ones; either way they match.
        let owned = polled.to_owned_records();
        assert_eq!(
            owned
                .iter()
                .map(|record| (record.offset, record.value.as_ref().unwrap().to_vec()))
                .collect::<Vec<_>>(),
            expected
        );
    }

    #[test]
    fn a_kafka_batch_that_inflates_past_the_consumers_limit_is_refused() {
        let value = vec![0u8; 1 << 20];
        let bytes = kafka_batch(
            9,
            &[&value],
            kafka_protocol::records::Compression::Zstd,
            false,
        );
        let mut budget = DecompressionBudget::new(64 * 1024);
        let error = PolledChunk::check(
            Arc::from("t"),
            0,
            bytes.clone().freeze(),
            0,
            &[],
            &mut budget,
        )
        .unwrap_err();
        assert_eq!(error.0, 9);
        assert_eq!(
            error.1,
            BatchError::DecompressedTooLarge { limit: 64 * 1024 }
        );
        let mut budget = DecompressionBudget::new(2 << 20);
        let chunk =
            PolledChunk::check(Arc::from("t"), 0, bytes.freeze(), 0, &[], &mut budget).unwrap();
        assert_eq!(chunk.record_count, 1);
        assert_eq!(chunk.cut_at, None);
    }

    #[test]
    fn batches_past_the_polls_decompression_budget_are_left_for_the_next_poll() {
        use kafka_protocol::records::Compression as Codec;
        let value = vec![1u8; 600 << 10];
        let mut bytes = kafka_batch(0, &[&value], Codec::Lz4, false);
        bytes.extend_from_slice(&kafka_batch(1, &[&value], Codec::Gzip, false));
        bytes.extend_from_slice(&batch(2, &["native"]));
        let bytes = bytes.freeze();

        // Room for one decompressed batch: the chunk ends before the second.
        let mut budget = DecompressionBudget::new(1 << 20);
        let chunk =
            PolledChunk::check(Arc::from("t"), 0, bytes.clone(), 0, &[], &mut budget).unwrap();
        assert_eq!((chunk.record_count, chunk.cut_at), (1, Some(1)));
        // The budget is the poll's: a second chunk in the same poll gets only what is left.
        let later = kafka_batch(3, &[&value], Codec::Snappy, false).freeze();
        let chunk = PolledChunk::check(Arc::from("u"), 0, later, 0, &[], &mut budget).unwrap();
        assert_eq!((chunk.record_count, chunk.cut_at), (0, Some(3)));

        // Room for both: the whole chunk, native batch included.
        let mut budget = DecompressionBudget::new(2 << 20);
        let chunk = PolledChunk::check(Arc::from("t"), 0, bytes, 0, &[], &mut budget).unwrap();
        assert_eq!((chunk.record_count, chunk.cut_at), (3, None));
    }
}
