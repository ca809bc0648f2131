//! `suppress(until_window_closes)`: holds a windowed table's updates and forwards only each
//! window's final value, once the suppress node's observed stream time passes the window's end
//! plus the grace period (sessions: past their end plus the gap plus the grace period).
//! Deleted windows (a session merged into another) are never forwarded.
//!
//! The buffer is in memory. Unbounded, it holds one entry per open window and key (Kafka
//! Streams' `BufferConfig.unbounded()`); bounded, a record that would make it hold more windows
//! than the bound fails processing (`shutDownWhenFull`, the only full policy final results
//! allow: dropping or emitting early would break their promise).

use std::collections::BTreeMap;

use crate::error::StreamsError;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeProcessor, ProcessorContext};
use crate::record::{Record, Windowed};
use crate::serdes::SharedSerde;

pub(crate) struct SuppressUntilWindowCloses<K, V> {
    /// A window closes when `end + close_after_end_ms <= observed stream time`.
    pub(crate) close_after_end_ms: i64,
    pub(crate) key_serde: SharedSerde<Windowed<K>>,
    /// Pending final values by window end, then windowed key bytes: eviction order, as Kafka's
    /// time-ordered buffer.
    pub(crate) buffer: BTreeMap<(i64, Vec<u8>), Record<Windowed<K>, V>>,
    pub(crate) observed_stream_time_ms: Option<i64>,
    /// The most windows the buffer may hold; `None`: unbounded.
    pub(crate) buffered_windows_max: Option<usize>,
}

impl<K: Data, V: Data> SuppressUntilWindowCloses<K, V> {
    /// Forwards, in order, the buffered windows whose end is at or before `expiry_ms`.
    fn emit_closed(&mut self, expiry_ms: i64, context: &mut ProcessorContext<'_>) {
        while let Some(first) = self.buffer.first_entry() {
            if first.key().0 > expiry_ms {
                break;
            }
            context.forward(first.remove());
        }
    }
}

impl<K: Data, V: Data> NodeProcessor for SuppressUntilWindowCloses<K, V> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<Windowed<K>, Option<V>>(record);
        let observed_ms = self
            .observed_stream_time_ms
            .map_or(record.timestamp_ms, |time| time.max(record.timestamp_ms));
        self.observed_stream_time_ms = Some(observed_ms);
        // Windows this record's time closed leave first, making room for it.
        let expiry_ms = observed_ms - self.close_after_end_ms;
        self.emit_closed(expiry_ms, context);
        let entry = (
            record.key.window.end_ms,
            self.key_serde.serialize(&record.key),
        );
        match record.value {
            Some(value) => {
                let full = self.buffered_windows_max.is_some_and(|max| {
                    self.buffer.len() >= max && !self.buffer.contains_key(&entry)
                });
                if full {
                    return Err(StreamsError::SuppressBufferFull {
                        buffered_windows_max: self.buffered_windows_max.unwrap_or_default(),
                    });
                }
                self.buffer
                    .insert(entry, Record::new(record.key, value, record.timestamp_ms));
            }
            None => {
                self.buffer.remove(&entry);
            }
        }
        self.emit_closed(expiry_ms, context);
        Ok(())
    }
}
