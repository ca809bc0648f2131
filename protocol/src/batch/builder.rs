//! Producer side of a record batch: append records, then seal header + rkyv payload + CRC.
//!
//! The builder copies each record's bytes once, straight into the batch buffer, and remembers
//! only positions; `seal` writes the record entries, the archive root, the header and the CRC.
//! It leaves `base_offset` and `leader_epoch` at zero: the broker stamps them at append time.
//! It does not decide when a batch is full: producers compare [`BatchBuilder::estimated_bytes`]
//! (exact, see `batch::records`) with their own `batch_bytes` target and seal when they choose.
//!
//! Log compaction rebuilds stored batches with this builder too: [`BatchBuilder::append_at`]
//! keeps each retained record's original offset delta and [`BatchBuilder::seal_spanning`] keeps
//! the batch's original offset range (possibly with no record left), so offsets never move.

use bytes::BytesMut;
// Writing into a `BytesMut` and allocating from an arena cannot fail (allocation failure
// aborts), so serialization uses rancor's uninhabited `Panic` error: `Result<T, Panic>` is
// irrefutably `Ok` and no impossible error variant leaks into `BuildError`.
use rkyv::rancor::{Panic, Strategy};
use rkyv::ser::allocator::Arena;
use rkyv::ser::{Positional, Serializer, Writer};
use rkyv::SerializeUnsized;

use crate::batch::header::{attributes, BATCH_HEADER_BYTES, BATCH_MAGIC};
use crate::batch::header::{compute_crc, field, BatchHeader, PayloadFormat};
use crate::batch::records::ARCHIVED_ROOT_BYTES;
use crate::batch::records::{ArchivedHeaderEntry, HeaderEntry, Placed, RecordEntry};
use crate::batch::records::{ARCHIVED_HEADER_ENTRY_BYTES, ARCHIVED_RECORD_ENTRY_BYTES};
use crate::constants::BATCH_BYTES_MAX;
use crate::error::BuildError;

/// A record header as the builder reads it: anything that can lend a UTF-8 key and value bytes.
pub trait HeaderPair {
    fn header_key(&self) -> &str;
    fn header_value(&self) -> &[u8];
}

impl<K: AsRef<str>, V: AsRef<[u8]>> HeaderPair for (K, V) {
    fn header_key(&self) -> &str {
        self.0.as_ref()
    }
    fn header_value(&self) -> &[u8] {
        self.1.as_ref()
    }
}

/// An empty header list with a concrete type, for records that have none.
pub const NO_HEADERS: &[(&str, &[u8])] = &[];

/// Producer identity and batch flags written into the header at seal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchOptions {
    /// -1 when the producer is not idempotent (Kafka's convention).
    pub producer_id: i64,
    /// -1 when the producer is not idempotent.
    pub producer_epoch: i16,
    /// Sequence number of the first record; -1 when the producer is not idempotent.
    pub base_sequence: i32,
    /// Header attribute bits (`batch::header::attributes`). Compression must be 0 for now.
    pub attributes: u16,
    /// The builder refuses a record that would make the sealed batch larger than this.
    pub batch_bytes_max: usize,
    /// Bytes reserved up front for the batch buffer; it grows beyond this as needed.
    pub initial_capacity_bytes: usize,
}

impl Default for BatchOptions {
    fn default() -> Self {
        Self {
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
            batch_bytes_max: BATCH_BYTES_MAX,
            initial_capacity_bytes: 16 * 1024,
        }
    }
}

/// Builds one record batch. Owned by one producer task; dropped or consumed by `seal`.
pub struct BatchBuilder {
    options: BatchOptions,
    /// Header placeholder followed by the payload written so far.
    buffer: BytesMut,
    entries: Vec<RecordEntry>,
    /// Reused for each record's header list, so appends do not allocate once warm.
    header_entries: Vec<HeaderEntry>,
    /// Scratch memory rkyv uses for resolvers while writing slices.
    arena: Arena,
    first_timestamp: i64,
    max_timestamp: i64,
    /// The smallest offset delta the next record may have (one past the last one's).
    next_offset_delta: u32,
}

/// Adapts the batch buffer to rkyv's writer: positions count from the first payload byte.
struct PayloadWriter<'a> {
    buffer: &'a mut BytesMut,
}

impl Positional for PayloadWriter<'_> {
    fn pos(&self) -> usize {
        self.buffer.len() - BATCH_HEADER_BYTES
    }
}

impl<E> Writer<E> for PayloadWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), E> {
        self.buffer.extend_from_slice(bytes);
        Ok(())
    }
}

impl BatchBuilder {
    /// Panics if `options` are invalid (unknown attribute bits, a compression codec, or a size
    /// limit outside `[empty batch size, BATCH_BYTES_MAX]`): those are programming errors.
    pub fn new(options: BatchOptions) -> Self {
        assert_eq!(
            options.attributes & !attributes::KNOWN,
            0,
            "unknown attribute bits"
        );
        assert_eq!(
            options.attributes & attributes::COMPRESSION_MASK,
            0,
            "compression is not supported yet"
        );
        assert!(
            options.batch_bytes_max <= BATCH_BYTES_MAX,
            "batch_bytes_max above the limit"
        );
        assert!(
            options.batch_bytes_max >= BATCH_HEADER_BYTES + ARCHIVED_ROOT_BYTES,
            "batch_bytes_max below the size of an empty batch"
        );
        let capacity_bytes = options.initial_capacity_bytes.clamp(
            BATCH_HEADER_BYTES + ARCHIVED_ROOT_BYTES,
            options.batch_bytes_max,
        );
        let mut buffer = BytesMut::with_capacity(capacity_bytes);
        buffer.resize(BATCH_HEADER_BYTES, 0);
        Self {
            options,
            buffer,
            entries: Vec::new(),
            header_entries: Vec::new(),
            arena: Arena::new(),
            first_timestamp: 0,
            max_timestamp: 0,
            next_offset_delta: 0,
        }
    }

    pub fn options(&self) -> &BatchOptions {
        &self.options
    }

    pub fn record_count(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Exact size of the batch `seal` would return now, header included.
    pub fn estimated_bytes(&self) -> usize {
        self.buffer.len() + self.entries.len() * ARCHIVED_RECORD_ENTRY_BYTES + ARCHIVED_ROOT_BYTES
    }

    /// Exactly how many bytes appending this record would add to [`Self::estimated_bytes`].
    pub fn record_bytes<H: HeaderPair>(
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
    ) -> usize {
        let header_bytes: usize = headers
            .iter()
            .map(|header| {
                header.header_key().len()
                    + header.header_value().len()
                    + ARCHIVED_HEADER_ENTRY_BYTES
            })
            .sum();
        key.map_or(0, <[u8]>::len)
            + value.map_or(0, <[u8]>::len)
            + header_bytes
            + ARCHIVED_RECORD_ENTRY_BYTES
    }

    /// Appends one record. Fails, leaving the builder unchanged, if the sealed batch would exceed
    /// `batch_bytes_max`; a producer then seals what it has and starts a new batch.
    pub fn append<H: HeaderPair>(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
        timestamp_ms: i64,
    ) -> Result<(), BuildError> {
        self.append_at(self.next_offset_delta, key, value, headers, timestamp_ms)
    }

    /// Appends one record at `offset_delta` from the batch's base offset, leaving the deltas in
    /// between unused (a record compaction removed). Deltas must rise strictly: a smaller one is
    /// a programming error and panics. Fails like [`BatchBuilder::append`] on the size limit.
    pub fn append_at<H: HeaderPair>(
        &mut self,
        offset_delta: u32,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[H],
        timestamp_ms: i64,
    ) -> Result<(), BuildError> {
        assert!(
            offset_delta >= self.next_offset_delta && offset_delta < u32::MAX,
            "offset delta {offset_delta} below the next free one {}",
            self.next_offset_delta
        );
        let record_bytes = Self::record_bytes(key, value, headers);
        let batch_bytes = self.estimated_bytes();
        if record_bytes > self.options.batch_bytes_max.saturating_sub(batch_bytes) {
            return Err(BuildError::WouldExceedLimit {
                record_bytes,
                batch_bytes,
                limit: self.options.batch_bytes_max,
            });
        }
        self.next_offset_delta = offset_delta + 1;
        if self.entries.is_empty() {
            self.first_timestamp = timestamp_ms;
            self.max_timestamp = timestamp_ms;
        }
        self.max_timestamp = self.max_timestamp.max(timestamp_ms);

        let key = key.map(|key| self.place(key));
        let value = value.map(|value| self.place(value));
        let headers = self.place_headers(headers);
        self.entries.push(RecordEntry {
            offset_delta,
            // Wrapping keeps every pair of i64 timestamps representable; readers wrap back.
            timestamp_delta: timestamp_ms.wrapping_sub(self.first_timestamp),
            key,
            value,
            headers,
        });
        debug_assert_eq!(self.estimated_bytes(), batch_bytes + record_bytes);
        Ok(())
    }

    /// Copies `bytes` into the payload and returns where they landed.
    fn place<T: ?Sized>(&mut self, bytes: &[u8]) -> Placed<T> {
        let position = self.buffer.len() - BATCH_HEADER_BYTES;
        self.buffer.extend_from_slice(bytes);
        Placed::new(position, bytes.len())
    }

    /// Writes each header's key and value bytes, then the array of header entries after them.
    fn place_headers<H: HeaderPair>(&mut self, headers: &[H]) -> Placed<[ArchivedHeaderEntry]> {
        if headers.is_empty() {
            // rkyv writes nothing for an empty slice; skip building a serializer for it.
            return Placed::new(self.buffer.len() - BATCH_HEADER_BYTES, 0);
        }
        self.header_entries.clear();
        for header in headers {
            let key = self.place(header.header_key().as_bytes());
            let value = self.place(header.header_value());
            self.header_entries.push(HeaderEntry { key, value });
        }
        let mut serializer = Serializer::new(
            PayloadWriter {
                buffer: &mut self.buffer,
            },
            self.arena.acquire(),
            (),
        );
        let Ok(position) = self
            .header_entries
            .as_slice()
            .serialize_unsized(Strategy::<_, Panic>::wrap(&mut serializer));
        Placed::new(position, headers.len())
    }

    /// Writes the record entries, the root, the header and the CRC. The returned buffer holds
    /// exactly one batch with `base_offset` 0, ready to send.
    pub fn seal(self) -> Result<BytesMut, BuildError> {
        if self.entries.is_empty() {
            return Err(BuildError::Empty);
        }
        let offset_count = self.next_offset_delta;
        Ok(self.seal_spanning(offset_count, 0))
    }

    /// Seals a batch that spans `offset_count` offsets whatever records it holds (at least one
    /// past the last record's delta; fewer is a programming error and panics): a batch that
    /// compaction rewrote keeps its offset range. With no record at all, the batch is a header
    /// and an empty archive, and both its timestamps are `timestamp_if_empty_ms`.
    pub fn seal_spanning(mut self, offset_count: u32, timestamp_if_empty_ms: i64) -> BytesMut {
        assert!(
            offset_count >= self.next_offset_delta && offset_count > 0,
            "a batch of {offset_count} offsets cannot hold offset delta {}",
            self.next_offset_delta.saturating_sub(1)
        );
        if self.entries.is_empty() {
            self.first_timestamp = timestamp_if_empty_ms;
            self.max_timestamp = timestamp_if_empty_ms;
        }
        let expected_bytes = self.estimated_bytes();
        let mut serializer = Serializer::new(
            PayloadWriter {
                buffer: &mut self.buffer,
            },
            self.arena.acquire(),
            (),
        );
        let Ok(_root_position) =
            rkyv::api::serialize_using::<_, Panic>(&self.entries, &mut serializer);
        assert_eq!(
            self.buffer.len(),
            expected_bytes,
            "archive size differs from estimate"
        );

        let record_count = u32::try_from(self.entries.len()).expect("bounded by batch_bytes_max");
        let header = BatchHeader {
            base_offset: 0,
            leader_epoch: 0,
            crc: 0,
            batch_length: u32::try_from(self.buffer.len()).expect("bounded by BATCH_BYTES_MAX"),
            magic: BATCH_MAGIC,
            payload_format: PayloadFormat::Rkyv as u8,
            attributes: self.options.attributes,
            offset_count,
            record_count,
            first_timestamp: self.first_timestamp,
            max_timestamp: self.max_timestamp,
            producer_id: self.options.producer_id,
            producer_epoch: self.options.producer_epoch,
            reserved: 0,
            base_sequence: self.options.base_sequence,
        };
        header.encode(&mut self.buffer[..BATCH_HEADER_BYTES]);
        let crc = compute_crc(&self.buffer);
        self.buffer[field::CRC..][..4].copy_from_slice(&crc.to_le_bytes());
        self.buffer
    }
}
