//! Stored batches as a Kafka consumer reads them: a format-2 batch (written by a Kafka
//! producer) is its own Kafka bytes after Spate's 64-byte header, served without copying; a
//! native batch (payload formats 0 and 1) is converted to a Kafka RecordBatch v2 by
//! `spate_protocol::batch::kafka::to_kafka_v2`, and the result kept in a bounded cache so that
//! the next consumer of the same batch (several groups, a re-read after a rebalance) does not
//! pay for the conversion again.
//!
//! The cache is shard-local (one per executor thread, in a `thread_local`), lives as long as
//! the shard's thread, and holds at most `Limits::kafka_conversion_cache_bytes_max` bytes of
//! converted batches, evicting the oldest first. A batch is keyed by its partition, base offset
//! and stored CRC, so a batch rolled back and written again at the same offset (an acks=1
//! append lost in a crash) is never served from the old conversion.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use spate_protocol::batch::header::{self, PayloadFormat, BATCH_HEADER_BYTES};
use spate_protocol::batch::kafka::to_kafka_v2;
use spate_protocol::error::BatchError;

use crate::shard::messages::PartitionKey;

/// What identifies one stored batch's content: its partition, base offset and stored CRC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct BatchKey {
    partition: PartitionKey,
    base_offset: u64,
    crc: u32,
}

/// Converted batches, oldest first out. See the module documentation.
#[derive(Debug, Default)]
struct ConversionCache {
    batches: HashMap<BatchKey, Bytes>,
    /// Insertion order, for eviction.
    order: VecDeque<BatchKey>,
    bytes: usize,
}

impl ConversionCache {
    fn get(&self, key: &BatchKey) -> Option<Bytes> {
        self.batches.get(key).cloned()
    }

    /// Keeps `batch` unless it alone exceeds `bytes_max`; evicts the oldest until it fits.
    fn insert(&mut self, key: BatchKey, batch: Bytes, bytes_max: usize) {
        if batch.len() > bytes_max || self.batches.contains_key(&key) {
            return;
        }
        while self.bytes + batch.len() > bytes_max {
            let oldest = self
                .order
                .pop_front()
                .expect("a cache over its size holds a batch");
            let evicted = self
                .batches
                .remove(&oldest)
                .expect("every ordered key is cached");
            self.bytes -= evicted.len();
        }
        self.bytes += batch.len();
        self.order.push_back(key);
        self.batches.insert(key, batch);
        debug_assert_eq!(self.order.len(), self.batches.len());
        debug_assert!(self.bytes <= bytes_max);
    }
}

thread_local! {
    /// This shard's cache (each shard runs on its own thread).
    static CACHE: RefCell<ConversionCache> = RefCell::new(ConversionCache::default());
}

/// The Kafka bytes of one stored batch of `partition`. `stored` is a whole stored batch as the
/// log returns it (already checked by storage when read). `Err`: a native batch that cannot be
/// converted (a bug or damage the read did not see; the caller answers with an error code).
pub(crate) fn kafka_batch(
    partition: PartitionKey,
    stored: &Bytes,
    cache_bytes_max: usize,
) -> Result<Bytes, BatchError> {
    let format = stored.get(header::field::PAYLOAD_FORMAT).copied();
    if format == Some(PayloadFormat::KafkaV2 as u8) {
        return Ok(stored.slice(BATCH_HEADER_BYTES..));
    }
    let Some(crc) = stored.get(header::field::CRC..header::field::CRC + 4) else {
        return Err(BatchError::Truncated {
            needed: BATCH_HEADER_BYTES,
            available: stored.len(),
        });
    };
    let base_offset = stored
        .get(header::field::BASE_OFFSET..header::field::BASE_OFFSET + 8)
        .map_or(0, |bytes| {
            u64::from_le_bytes(bytes.try_into().expect("8 bytes"))
        });
    let key = BatchKey {
        partition,
        base_offset,
        crc: u32::from_le_bytes(crc.try_into().expect("4 bytes")),
    };
    if let Some(converted) = CACHE.with(|cache| cache.borrow().get(&key)) {
        return Ok(converted);
    }
    let converted = to_kafka_v2(stored)?.freeze();
    if cache_bytes_max > 0 {
        CACHE.with(|cache| {
            cache
                .borrow_mut()
                .insert(key, converted.clone(), cache_bytes_max)
        });
    }
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(base_offset: u64) -> BatchKey {
        BatchKey {
            partition: PartitionKey {
                topic_id: 1,
                partition: 0,
            },
            base_offset,
            crc: 7,
        }
    }

    #[test]
    fn the_cache_evicts_the_oldest_to_stay_within_its_bytes() {
        let mut cache = ConversionCache::default();
        cache.insert(key(0), Bytes::from(vec![0u8; 40]), 100);
        cache.insert(key(1), Bytes::from(vec![1u8; 40]), 100);
        assert_eq!(cache.bytes, 80);
        cache.insert(key(2), Bytes::from(vec![2u8; 40]), 100);
        assert_eq!(cache.bytes, 80);
        assert!(cache.get(&key(0)).is_none(), "the oldest went first");
        assert_eq!(cache.get(&key(1)).unwrap()[0], 1);
        assert_eq!(cache.get(&key(2)).unwrap()[0], 2);
    }

    fn native_batch(base_offset: u64) -> Bytes {
        use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};
        let mut builder = BatchBuilder::new(BatchOptions::default());
        for index in 0..3u8 {
            builder
                .append(Some(&[index]), Some(&[index; 10]), NO_HEADERS, 1_000)
                .expect("fits");
        }
        let mut batch = builder.seal().expect("seal");
        spate_protocol::batch::header::stamp(&mut batch, base_offset, 0);
        batch.freeze()
    }

    #[test]
    fn a_native_batch_is_converted_once_and_then_served_from_the_cache() {
        let partition = PartitionKey {
            topic_id: 9,
            partition: 2,
        };
        let stored = native_batch(40);
        let first = kafka_batch(partition, &stored, 1 << 20).expect("converts");
        let again = kafka_batch(partition, &stored, 1 << 20).expect("converts");
        assert_eq!(first, again);
        assert_eq!(
            first.as_ptr(),
            again.as_ptr(),
            "the second read was converted again"
        );
        assert_eq!(
            &first[..8],
            &40i64.to_be_bytes(),
            "the Kafka batch keeps its offset"
        );
        // Without a cache every read converts.
        let other = PartitionKey {
            topic_id: 9,
            partition: 3,
        };
        let first = kafka_batch(other, &stored, 0).expect("converts");
        let again = kafka_batch(other, &stored, 0).expect("converts");
        assert_eq!(first, again);
        assert_ne!(first.as_ptr(), again.as_ptr());
    }

    #[test]
    fn a_batch_larger_than_the_cache_is_not_kept() {
        let mut cache = ConversionCache::default();
        cache.insert(key(0), Bytes::from(vec![0u8; 40]), 100);
        cache.insert(key(1), Bytes::from(vec![1u8; 101]), 100);
        assert_eq!(cache.bytes, 40);
        assert!(cache.get(&key(0)).is_some(), "nothing evicted for it");
        assert!(cache.get(&key(1)).is_none());
    }
}
