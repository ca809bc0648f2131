//! Windowed aggregations. Each processor keeps its own observed stream time (the largest event
//! time that reached it, as Kafka Streams' window processors do), and a window closes when that
//! time passes the window's end plus the grace period: a record for a closed window is dropped
//! and counted. Updates are forwarded as they happen, with the input record's timestamp;
//! `suppress` turns them into one final result per window.

use crate::error::StreamsError;
use crate::ops::aggregate::AggregateStep;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeProcessor, ProcessorContext};
use crate::record::{Record, Window, Windowed};
use crate::serdes::SharedSerde;
use crate::windows::{SessionWindows, TimeWindows};

/// Tumbling and hopping window aggregation over a window store.
pub(crate) struct TimeWindowAggregate<K, V, A> {
    pub(crate) store: String,
    pub(crate) windows: TimeWindows,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) aggregate_serde: SharedSerde<A>,
    pub(crate) step: AggregateStep<K, V, A>,
    pub(crate) observed_stream_time_ms: Option<i64>,
}

impl<K: Data, V: Data, A: Data> NodeProcessor for TimeWindowAggregate<K, V, A> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let observed_ms = self
            .observed_stream_time_ms
            .map_or(record.timestamp_ms, |time| time.max(record.timestamp_ms));
        self.observed_stream_time_ms = Some(observed_ms);
        let close_ms = observed_ms - self.windows.grace_ms;
        let key_bytes = self.key_serde.serialize(&record.key);
        for start_ms in self.windows.window_starts_for(record.timestamp_ms) {
            let end_ms = start_ms + self.windows.size_ms;
            if end_ms <= close_ms {
                context.record_late_drop();
                continue;
            }
            let store = context.window_store(&self.store)?;
            let old = store.fetch(&key_bytes, start_ms).map(|bytes| {
                self.aggregate_serde
                    .deserialize(bytes)
                    .expect("a store value reads back with the serde that wrote it")
            });
            let new = (self.step)(&record.key, record.value.clone(), old);
            store.put(
                &key_bytes,
                start_ms,
                Some(self.aggregate_serde.serialize(&new)),
            );
            context.forward(Record::new(
                Windowed::new(record.key.clone(), Window::new(start_ms, end_ms)),
                Some(new),
                record.timestamp_ms,
            ));
        }
        // Windows starting before this are closed for good.
        let expired_before_ms = observed_ms - self.windows.retention_ms();
        context
            .window_store(&self.store)?
            .expire_before(expired_before_ms);
        Ok(())
    }
}

/// Merges two session aggregates of one key when a record joins their sessions.
pub(crate) type SessionMerger<K, A> = std::sync::Arc<dyn Fn(&K, A, A) -> A + Send + Sync>;

/// Session window aggregation over a session store.
pub(crate) struct SessionWindowAggregate<K, V, A> {
    pub(crate) store: String,
    pub(crate) windows: SessionWindows,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) aggregate_serde: SharedSerde<A>,
    pub(crate) initializer: std::sync::Arc<dyn Fn() -> A + Send + Sync>,
    pub(crate) step: AggregateStep<K, V, A>,
    pub(crate) merger: SessionMerger<K, A>,
    pub(crate) observed_stream_time_ms: Option<i64>,
}

impl<K: Data, V: Data, A: Data> NodeProcessor for SessionWindowAggregate<K, V, A> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let timestamp_ms = record.timestamp_ms;
        let observed_ms = self
            .observed_stream_time_ms
            .map_or(timestamp_ms, |time| time.max(timestamp_ms));
        self.observed_stream_time_ms = Some(observed_ms);
        // A session can be extended by any record within the gap after its end, so it is
        // final only once that record would be late too: Kafka Streams' close time for
        // sessions, stream time minus grace minus gap.
        let gap_ms = self.windows.inactivity_gap_ms;
        let close_ms = observed_ms - self.windows.grace_ms - gap_ms;
        let key_bytes = self.key_serde.serialize(&record.key);
        // Only open sessions merge: a closed one may already be a final result (`suppress`),
        // which must not change. (Kafka Streams also merges closed sessions its segmented
        // store still holds, so its results depend on segment boundaries.)
        let overlapping: Vec<(i64, i64, Vec<u8>)> = context
            .session_store(&self.store)?
            .find_sessions(&key_bytes, timestamp_ms - gap_ms, timestamp_ms + gap_ms)
            .into_iter()
            .filter(|(_, end_ms, _)| *end_ms >= close_ms)
            .collect();
        let start_ms = overlapping
            .iter()
            .map(|(start, _, _)| *start)
            .fold(timestamp_ms, i64::min);
        let end_ms = overlapping
            .iter()
            .map(|(_, end, _)| *end)
            .fold(timestamp_ms, i64::max);
        // Kafka Streams' rule for sessions, whose end is included: closed when the end is
        // before the close time (time windows, whose end is excluded: at or before).
        if end_ms < close_ms {
            context.record_late_drop();
            return Ok(());
        }
        let merged = Window::new(start_ms, end_ms);
        let mut aggregate = (self.initializer)();
        for (session_start_ms, session_end_ms, bytes) in overlapping {
            let value = self
                .aggregate_serde
                .deserialize(&bytes)
                .expect("a store value reads back with the serde that wrote it");
            aggregate = (self.merger)(&record.key, aggregate, value);
            let session = Window::new(session_start_ms, session_end_ms);
            if session != merged {
                context.session_store(&self.store)?.put(
                    &key_bytes,
                    session_start_ms,
                    session_end_ms,
                    None,
                );
                context.forward(Record::new(
                    Windowed::new(record.key.clone(), session),
                    None::<A>,
                    timestamp_ms,
                ));
            }
        }
        let aggregate = (self.step)(&record.key, record.value, Some(aggregate));
        let store = context.session_store(&self.store)?;
        store.put(
            &key_bytes,
            start_ms,
            end_ms,
            Some(self.aggregate_serde.serialize(&aggregate)),
        );
        store.expire_before(close_ms);
        context.forward(Record::new(
            Windowed::new(record.key, merged),
            Some(aggregate),
            timestamp_ms,
        ));
        Ok(())
    }
}

/// Sliding window aggregation. It buffers each key's records (values by timestamp, in a window
/// store of their own) and recomputes each affected window from them in timestamp order (then
/// arrival order): simpler than Kafka Streams' incremental updates, and the same result for
/// any aggregation whose order within a window does not matter.
pub(crate) struct SlidingWindowAggregate<K, V, A> {
    pub(crate) store: String,
    pub(crate) records_store: String,
    pub(crate) windows: crate::windows::SlidingWindows,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) aggregate_serde: SharedSerde<A>,
    pub(crate) step: AggregateStep<K, V, A>,
    pub(crate) observed_stream_time_ms: Option<i64>,
}

impl<K: Data, V: Data, A: Data> SlidingWindowAggregate<K, V, A> {
    /// The buffered records of a key with timestamps in `[from_ms, to_ms]`, in order.
    fn buffered(
        &self,
        context: &mut ProcessorContext<'_>,
        key_bytes: &[u8],
        from_ms: i64,
        to_ms: i64,
    ) -> Result<Vec<(i64, V)>, StreamsError> {
        let mut records = Vec::new();
        for (timestamp_ms, bytes) in context
            .window_store(&self.records_store)?
            .fetch_range(key_bytes, from_ms, to_ms)
        {
            for value in crate::ops::join::split_values(&bytes) {
                let value = self
                    .value_serde
                    .deserialize(value)
                    .expect("a buffered value reads back with the serde that wrote it");
                records.push((timestamp_ms, value));
            }
        }
        Ok(records)
    }
}

impl<K: Data, V: Data, A: Data> NodeProcessor for SlidingWindowAggregate<K, V, A> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let timestamp_ms = record.timestamp_ms;
        let difference_ms = self.windows.time_difference_ms;
        let observed_ms = self
            .observed_stream_time_ms
            .map_or(timestamp_ms, |time| time.max(timestamp_ms));
        self.observed_stream_time_ms = Some(observed_ms);
        // Kafka's rule for windows: open while the end is after stream time minus grace.
        let close_ms = observed_ms - self.windows.grace_ms;
        if timestamp_ms + difference_ms <= close_ms {
            // Every window holding it (the latest is [t, t + difference]) has closed.
            context.record_late_drop();
            return Ok(());
        }
        let key_bytes = self.key_serde.serialize(&record.key);
        let records_store = context.window_store(&self.records_store)?;
        let buffered = crate::ops::join::append_value(
            records_store.fetch(&key_bytes, timestamp_ms),
            &self.value_serde.serialize(&record.value),
        );
        records_store.put(&key_bytes, timestamp_ms, Some(buffered));
        // The windows this record changes or creates: ending at a record within the
        // difference after it (its own left window included), starting just after a record
        // within the difference (plus one) before it, and its own right window if a record
        // falls in it.
        let nearby = self.buffered(
            context,
            &key_bytes,
            timestamp_ms - difference_ms - 1,
            timestamp_ms + difference_ms + 1,
        )?;
        let mut starts = std::collections::BTreeSet::new();
        for (other_ms, _) in &nearby {
            if *other_ms >= timestamp_ms && *other_ms <= timestamp_ms + difference_ms {
                starts.insert(other_ms - difference_ms);
            }
            if *other_ms < timestamp_ms && *other_ms + 1 + difference_ms >= timestamp_ms {
                starts.insert(other_ms + 1);
            }
        }
        if nearby.iter().any(|(other_ms, _)| {
            *other_ms > timestamp_ms && *other_ms <= timestamp_ms + 1 + difference_ms
        }) {
            starts.insert(timestamp_ms + 1);
        }
        for start_ms in starts {
            let end_ms = start_ms + difference_ms;
            if end_ms <= close_ms {
                continue;
            }
            let mut aggregate = None;
            for (_, value) in nearby
                .iter()
                .filter(|(other_ms, _)| *other_ms >= start_ms && *other_ms <= end_ms)
            {
                aggregate = Some((self.step)(&record.key, value.clone(), aggregate));
            }
            let aggregate = aggregate.expect("each window of the set holds a record");
            context.window_store(&self.store)?.put(
                &key_bytes,
                start_ms,
                Some(self.aggregate_serde.serialize(&aggregate)),
            );
            context.forward(Record::new(
                Windowed::new(record.key.clone(), Window::new(start_ms, end_ms)),
                Some(aggregate),
                timestamp_ms,
            ));
        }
        // Closed windows start before close - difference; an open window reaches back
        // difference before its start... so records before that can no longer be counted.
        let open_from_ms = close_ms - difference_ms;
        context
            .window_store(&self.store)?
            .expire_before(open_from_ms);
        context
            .window_store(&self.records_store)?
            .expire_before(open_from_ms - 1);
        Ok(())
    }
}
