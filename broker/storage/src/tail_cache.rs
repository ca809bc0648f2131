//! A bounded in-memory copy of the most recently appended batches, so that consumers reading at
//! the tail are served without touching the disk.
//!
//! It always holds a contiguous run of batches ending at the log end (the newest batch), each as
//! the exact stamped bytes that were written. It knows nothing of durability: the caller only
//! asks for offsets below the high watermark, and truncates it when unsynced batches are rolled
//! back after a disk error.

use std::collections::VecDeque;

use bytes::Bytes;

#[derive(Debug)]
struct CachedBatch {
    base_offset: u64,
    next_offset: u64,
    bytes: Bytes,
}

#[derive(Debug)]
pub struct TailCache {
    batches: VecDeque<CachedBatch>,
    bytes: usize,
    bytes_max: usize,
}

impl TailCache {
    pub fn new(bytes_max: usize) -> Self {
        Self {
            batches: VecDeque::new(),
            bytes: 0,
            bytes_max,
        }
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    pub fn set_bytes_max(&mut self, bytes_max: usize) {
        self.bytes_max = bytes_max;
        self.evict();
    }

    /// Adds the newest batch. A batch that does not follow the cached run, or that alone exceeds
    /// the bound, empties the cache (it must stay contiguous up to the log end).
    pub fn push(&mut self, base_offset: u64, next_offset: u64, bytes: Bytes) {
        debug_assert!(next_offset > base_offset);
        let follows = self
            .batches
            .back()
            .is_none_or(|last| last.next_offset == base_offset);
        if !follows || bytes.len() > self.bytes_max {
            self.clear();
        }
        if bytes.len() > self.bytes_max {
            return;
        }
        self.bytes += bytes.len();
        self.batches.push_back(CachedBatch {
            base_offset,
            next_offset,
            bytes,
        });
        self.evict();
    }

    fn evict(&mut self) {
        while self.bytes > self.bytes_max {
            match self.batches.pop_front() {
                Some(oldest) => self.bytes -= oldest.bytes.len(),
                None => break,
            }
        }
    }

    pub fn clear(&mut self) {
        self.batches.clear();
        self.bytes = 0;
    }

    /// Drops every batch at or after `offset` (unsynced batches lost to a disk error).
    pub fn truncate_from(&mut self, offset: u64) {
        while let Some(last) = self.batches.back() {
            if last.next_offset <= offset {
                break;
            }
            let bytes = last.bytes.len();
            self.batches.pop_back();
            self.bytes -= bytes;
        }
    }

    /// Drops every batch before `offset` (compaction rewrote the segments holding them, so the
    /// cached bytes are no longer what the disk serves).
    pub fn drop_before(&mut self, offset: u64) {
        while let Some(first) = self.batches.front() {
            if first.base_offset >= offset {
                break;
            }
            let bytes = first.bytes.len();
            self.batches.pop_front();
            self.bytes -= bytes;
        }
    }

    /// The batches from the one holding `offset`, stopping before `high_watermark` and before
    /// `max_bytes` is exceeded (but always the first batch). `None` if the cache does not hold
    /// the batch with `offset`.
    pub fn read(&self, offset: u64, high_watermark: u64, max_bytes: usize) -> Option<Vec<Bytes>> {
        let first = self.batches.front()?;
        if offset < first.base_offset || offset >= high_watermark {
            return None;
        }
        let start = self
            .batches
            .partition_point(|batch| batch.next_offset <= offset);
        let holder = self.batches.get(start)?;
        if holder.next_offset > high_watermark {
            return None;
        }
        let mut batches = Vec::new();
        let mut total = 0usize;
        for batch in self.batches.range(start..) {
            if batch.next_offset > high_watermark {
                break;
            }
            if !batches.is_empty() && total + batch.bytes.len() > max_bytes {
                break;
            }
            total += batch.bytes.len();
            batches.push(batch.bytes.clone());
        }
        Some(batches)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(length: usize) -> Bytes {
        Bytes::from(vec![7u8; length])
    }

    #[test]
    fn eviction_keeps_the_newest_batches_within_the_bound() {
        let mut cache = TailCache::new(250);
        cache.push(0, 10, batch(100));
        cache.push(10, 20, batch(100));
        cache.push(20, 30, batch(100));
        assert_eq!(cache.bytes(), 200);
        assert!(cache.read(5, 30, 1000).is_none());
        assert_eq!(
            cache.read(15, 30, 1000).map(|batches| batches.len()),
            Some(2)
        );
    }

    #[test]
    fn read_returns_at_least_one_batch_even_above_max_bytes() {
        let mut cache = TailCache::new(1000);
        cache.push(0, 10, batch(100));
        cache.push(10, 20, batch(100));
        assert_eq!(cache.read(3, 20, 1).map(|batches| batches.len()), Some(1));
        assert_eq!(cache.read(3, 20, 200).map(|batches| batches.len()), Some(2));
    }

    #[test]
    fn read_stops_at_the_high_watermark() {
        let mut cache = TailCache::new(1000);
        cache.push(0, 10, batch(100));
        cache.push(10, 20, batch(100));
        assert_eq!(
            cache.read(0, 10, 1000).map(|batches| batches.len()),
            Some(1)
        );
        assert!(cache.read(10, 10, 1000).is_none());
    }

    #[test]
    fn a_gap_or_an_oversized_batch_empties_the_cache() {
        let mut cache = TailCache::new(150);
        cache.push(0, 10, batch(100));
        cache.push(20, 30, batch(10));
        assert!(cache.read(0, 30, 1000).is_none());
        cache.push(30, 40, batch(200));
        assert_eq!(cache.bytes(), 0);
    }

    #[test]
    fn truncation_drops_batches_at_and_after_the_offset() {
        let mut cache = TailCache::new(1000);
        cache.push(0, 10, batch(100));
        cache.push(10, 20, batch(100));
        cache.truncate_from(10);
        assert_eq!(cache.bytes(), 100);
        assert!(cache.read(10, 20, 1000).is_none());
    }
}
