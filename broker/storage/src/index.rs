//! The sparse offset index and time index of one segment: their in-memory form, their on-disk
//! entry encoding, and lookups.
//!
//! Both indexes hold one entry per `index_interval_bytes` of log, for the same batches, so entry
//! `i` of one and entry `i` of the other describe the same batch:
//! - offset index entry: (relative offset of the batch, byte position of the batch) — 8 bytes;
//! - time index entry: (largest `max_timestamp` of all batches *before* that batch in the
//!   segment, relative offset of the batch) — 12 bytes.
//!
//! The first batch of a segment (relative offset 0, position 0) never has an entry: it is
//! implied. So every stored entry has a relative offset above zero, and an all-zero entry marks
//! the end of the entries in a file (files are padded with zeros to a whole block).
//! This file does no I/O; `segment` reads and writes the index files.

/// Bytes of one offset index entry on disk.
pub const OFFSET_INDEX_ENTRY_BYTES: usize = 8;
/// Bytes of one time index entry on disk.
pub const TIME_INDEX_ENTRY_BYTES: usize = 12;

/// Where a batch starts: its offset relative to the segment base and its byte position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetIndexEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Every batch before `relative_offset` has `max_timestamp <= timestamp_before`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeIndexEntry {
    pub timestamp_before: i64,
    pub relative_offset: u32,
}

impl OffsetIndexEntry {
    pub fn encode(&self, target: &mut [u8]) {
        target[0..4].copy_from_slice(&self.relative_offset.to_le_bytes());
        target[4..8].copy_from_slice(&self.position.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Self {
        Self {
            relative_offset: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            position: u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]),
        }
    }
}

impl TimeIndexEntry {
    pub fn encode(&self, target: &mut [u8]) {
        target[0..8].copy_from_slice(&self.timestamp_before.to_le_bytes());
        target[8..12].copy_from_slice(&self.relative_offset.to_le_bytes());
    }

    pub fn decode(bytes: &[u8]) -> Self {
        let mut timestamp = [0u8; 8];
        timestamp.copy_from_slice(&bytes[0..8]);
        Self {
            timestamp_before: i64::from_le_bytes(timestamp),
            relative_offset: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
        }
    }
}

/// The entries of one segment's offset and time indexes, in memory, always the same length.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    offsets: Vec<OffsetIndexEntry>,
    times: Vec<TimeIndexEntry>,
}

impl SegmentIndex {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    pub fn offsets(&self) -> &[OffsetIndexEntry] {
        &self.offsets
    }

    pub fn times(&self) -> &[TimeIndexEntry] {
        &self.times
    }

    pub fn last(&self) -> Option<(OffsetIndexEntry, TimeIndexEntry)> {
        Some((*self.offsets.last()?, *self.times.last()?))
    }

    /// Adds the entry pair for one batch. Entries only grow.
    pub fn push(&mut self, offset: OffsetIndexEntry, time: TimeIndexEntry) {
        assert_eq!(
            offset.relative_offset, time.relative_offset,
            "index entries describe one batch"
        );
        assert!(
            offset.relative_offset > 0,
            "the first batch of a segment is implied, not indexed"
        );
        if let Some(last) = self.offsets.last() {
            assert!(
                offset.relative_offset > last.relative_offset,
                "offset index must grow"
            );
            assert!(offset.position > last.position, "positions must grow");
        }
        if let Some(last) = self.times.last() {
            assert!(
                time.timestamp_before >= last.timestamp_before,
                "time index must not shrink"
            );
        }
        self.offsets.push(offset);
        self.times.push(time);
    }

    /// Keeps only the first `length` entries.
    pub fn truncate(&mut self, length: usize) {
        self.offsets.truncate(length);
        self.times.truncate(length);
    }

    /// Drops every entry for a batch at or after `relative_offset`.
    pub fn truncate_from_offset(&mut self, relative_offset: u32) {
        let keep = self
            .offsets
            .partition_point(|entry| entry.relative_offset < relative_offset);
        self.truncate(keep);
    }

    /// The last entry at or before `relative_offset`: where a scan for that offset starts.
    /// `None` means "start at the segment's first batch".
    pub fn lookup_offset(&self, relative_offset: u32) -> Option<OffsetIndexEntry> {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        after.checked_sub(1).map(|index| self.offsets[index])
    }

    /// The first entry after `relative_offset`: where a scan can resume past damage.
    pub fn entry_after(&self, relative_offset: u32) -> Option<OffsetIndexEntry> {
        let after = self
            .offsets
            .partition_point(|entry| entry.relative_offset <= relative_offset);
        self.offsets.get(after).copied()
    }

    /// The entry to start a scan from for the first batch whose `max_timestamp >= timestamp`:
    /// the last entry whose preceding batches are all older. `None`: start at the first batch.
    pub fn lookup_timestamp(&self, timestamp: i64) -> Option<OffsetIndexEntry> {
        let after = self
            .times
            .partition_point(|entry| entry.timestamp_before < timestamp);
        after.checked_sub(1).map(|index| self.offsets[index])
    }

    /// Decodes both index files' bytes and keeps the longest prefix where every entry is valid
    /// (relative offsets and positions strictly growing and above zero, positions below
    /// `log_bytes`, timestamps not shrinking) and the two files agree entry by entry. Whatever
    /// follows (zero padding, a torn entry, stale bytes) is ignored; the caller rewrites it.
    pub fn decode_valid_prefix(offset_bytes: &[u8], time_bytes: &[u8], log_bytes: u64) -> Self {
        let mut index = Self::new();
        let pairs = offset_bytes
            .chunks_exact(OFFSET_INDEX_ENTRY_BYTES)
            .zip(time_bytes.chunks_exact(TIME_INDEX_ENTRY_BYTES));
        for (offset_entry, time_entry) in pairs {
            let offset = OffsetIndexEntry::decode(offset_entry);
            let time = TimeIndexEntry::decode(time_entry);
            let grows = match (index.offsets.last(), index.times.last()) {
                (Some(last_offset), Some(last_time)) => {
                    offset.relative_offset > last_offset.relative_offset
                        && offset.position > last_offset.position
                        && time.timestamp_before >= last_time.timestamp_before
                }
                _ => true,
            };
            let valid = offset.relative_offset > 0
                && offset.position > 0
                && u64::from(offset.position) < log_bytes
                && offset.relative_offset == time.relative_offset
                && grows;
            if !valid {
                break;
            }
            index.offsets.push(offset);
            index.times.push(time);
        }
        index
    }

    /// The on-disk bytes of offset index entries `[first, end)`.
    pub fn encode_offsets(&self, first: usize, end: usize, target: &mut Vec<u8>) {
        for entry in &self.offsets[first..end] {
            let start = target.len();
            target.resize(start + OFFSET_INDEX_ENTRY_BYTES, 0);
            entry.encode(&mut target[start..]);
        }
    }

    /// The on-disk bytes of time index entries `[first, end)`.
    pub fn encode_times(&self, first: usize, end: usize, target: &mut Vec<u8>) {
        for entry in &self.times[first..end] {
            let start = target.len();
            target.resize(start + TIME_INDEX_ENTRY_BYTES, 0);
            entry.encode(&mut target[start..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(
        relative_offset: u32,
        position: u32,
        timestamp_before: i64,
    ) -> (OffsetIndexEntry, TimeIndexEntry) {
        (
            OffsetIndexEntry {
                relative_offset,
                position,
            },
            TimeIndexEntry {
                timestamp_before,
                relative_offset,
            },
        )
    }

    fn sample() -> SegmentIndex {
        let mut index = SegmentIndex::new();
        for (offset, time) in [pair(10, 1000, 5), pair(20, 2000, 9), pair(30, 3000, 9)] {
            index.push(offset, time);
        }
        index
    }

    #[test]
    fn offset_lookup_finds_last_entry_at_or_before_target() {
        let index = sample();
        assert_eq!(index.lookup_offset(5), None);
        assert_eq!(
            index.lookup_offset(10).map(|entry| entry.position),
            Some(1000)
        );
        assert_eq!(
            index.lookup_offset(29).map(|entry| entry.position),
            Some(2000)
        );
        assert_eq!(
            index.lookup_offset(1_000).map(|entry| entry.position),
            Some(3000)
        );
    }

    #[test]
    fn timestamp_lookup_starts_after_batches_known_to_be_older() {
        let index = sample();
        // Nothing is known to be older than 5: start at the first batch.
        assert_eq!(index.lookup_timestamp(5), None);
        assert_eq!(
            index.lookup_timestamp(6).map(|entry| entry.relative_offset),
            Some(10)
        );
        assert_eq!(
            index
                .lookup_timestamp(10)
                .map(|entry| entry.relative_offset),
            Some(30)
        );
    }

    #[test]
    fn encoded_entries_decode_to_the_same_index() {
        let index = sample();
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        index.encode_offsets(0, index.len(), &mut offsets);
        index.encode_times(0, index.len(), &mut times);
        offsets.resize(4096, 0);
        times.resize(4096, 0);
        assert_eq!(
            SegmentIndex::decode_valid_prefix(&offsets, &times, 1 << 20),
            index
        );
    }

    #[test]
    fn decoding_stops_at_a_torn_or_out_of_range_entry() {
        let index = sample();
        let mut offsets = Vec::new();
        let mut times = Vec::new();
        index.encode_offsets(0, index.len(), &mut offsets);
        index.encode_times(0, index.len(), &mut times);
        // Tear the third offset entry's position: its high bytes are zero, so it goes backwards.
        offsets[16 + 5] = 0;
        offsets[16 + 4] = 1;
        let decoded = SegmentIndex::decode_valid_prefix(&offsets, &times, 1 << 20);
        assert_eq!(decoded.len(), 2);
        // An entry pointing past the end of the log is dropped too.
        let decoded = SegmentIndex::decode_valid_prefix(&offsets, &times, 1500);
        assert_eq!(decoded.len(), 1);
    }

    #[test]
    fn truncating_from_an_offset_drops_entries_at_and_after_it() {
        let mut index = sample();
        index.truncate_from_offset(20);
        assert_eq!(index.len(), 1);
        assert_eq!(index.times().len(), 1);
    }

    proptest::proptest! {
        #[test]
        fn decoding_arbitrary_bytes_never_panics_and_keeps_only_valid_entries(
            offset_bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600),
            time_bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..900),
            log_bytes in 0u64..(1 << 33),
        ) {
            let decoded = SegmentIndex::decode_valid_prefix(&offset_bytes, &time_bytes, log_bytes);
            // Re-pushing every entry re-checks every invariant `push` asserts.
            let mut rebuilt = SegmentIndex::new();
            for (offset, time) in decoded.offsets().iter().zip(decoded.times()) {
                proptest::prop_assert!(u64::from(offset.position) < log_bytes);
                rebuilt.push(*offset, *time);
            }
            proptest::prop_assert_eq!(rebuilt, decoded);
        }
    }

    #[test]
    #[should_panic(expected = "offset index must grow")]
    fn pushing_a_smaller_offset_is_a_bug() {
        let mut index = sample();
        let (offset, time) = pair(5, 4000, 10);
        index.push(offset, time);
    }
}
