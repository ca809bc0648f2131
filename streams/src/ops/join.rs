//! Join processors: stream-table (a stream record looks up the table; table updates emit
//! nothing), table-table (an update on either side looks up the other; the result is a table
//! with its own store), and stream-stream within a time window (each side buffers its records
//! in a window store and looks up the other's buffer).

use std::sync::Arc;

use crate::dsl::ktable::{lookup, upsert};
use crate::error::StreamsError;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeProcessor, ProcessorContext};
use crate::record::Record;
use crate::serdes::SharedSerde;

/// A stream-table join's result for a stream value and the table's value (`None`: the table
/// has no row for the key); `None` drops the record (the inner join's miss).
pub(crate) type StreamTableJoiner<K, V, VT, VR> =
    Arc<dyn Fn(&K, V, Option<VT>) -> Option<VR> + Send + Sync>;

pub(crate) struct StreamTableJoin<K, V, VT, VR> {
    pub(crate) table_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) table_value_serde: SharedSerde<VT>,
    pub(crate) joiner: StreamTableJoiner<K, V, VT, VR>,
}

impl<K: Data, V: Data, VT: Data, VR: Data> NodeProcessor for StreamTableJoin<K, V, VT, VR> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let row = lookup(
            context,
            &self.table_store,
            &self.key_serde,
            &self.table_value_serde,
            &record.key,
        )?;
        if let Some(joined) = (self.joiner)(&record.key, record.value, row) {
            context.forward(Record::new(record.key, joined, record.timestamp_ms));
        }
        Ok(())
    }
}

/// A table-table join's row from this side's and the other side's rows (`None`: no row);
/// `None` means the joined table has no row for the key. The DSL gives the right side the
/// application's joiner with its arguments swapped.
pub(crate) type TableTableJoiner<V, VO, VR> =
    Arc<dyn Fn(Option<&V>, Option<&VO>) -> Option<VR> + Send + Sync>;

/// One side of a table-table join: `V` is this side's value type, `VO` the other's.
pub(crate) struct TableTableJoinSide<K, V, VO, VR> {
    pub(crate) other_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) other_value_serde: SharedSerde<VO>,
    pub(crate) result_store: String,
    pub(crate) result_serde: SharedSerde<VR>,
    pub(crate) joiner: TableTableJoiner<V, VO, VR>,
}

impl<K: Data, V: Data, VO: Data, VR: Data> NodeProcessor for TableTableJoinSide<K, V, VO, VR> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Option<V>>(record);
        let other = lookup(
            context,
            &self.other_store,
            &self.key_serde,
            &self.other_value_serde,
            &record.key,
        )?;
        let joined = (self.joiner)(record.value.as_ref(), other.as_ref());
        let changed = upsert(
            context,
            &self.result_store,
            &self.key_serde,
            &self.result_serde,
            &record.key,
            joined.as_ref(),
        )?;
        if changed {
            context.forward(Record::new(record.key, joined, record.timestamp_ms));
        }
        Ok(())
    }
}

/// Values of one key at one timestamp in a buffer (stream-stream joins, sliding windows):
/// each as a 4-byte little-endian length, then its bytes.
pub(crate) fn append_value(buffer: Option<&[u8]>, value: &[u8]) -> Vec<u8> {
    let mut bytes = buffer.map(<[u8]>::to_vec).unwrap_or_default();
    let length = u32::try_from(value.len()).expect("a value is under 4 GiB");
    bytes.extend_from_slice(&length.to_le_bytes());
    bytes.extend_from_slice(value);
    bytes
}

pub(crate) fn split_values(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut values = Vec::new();
    while !bytes.is_empty() {
        let (length, rest) = bytes.split_at(4);
        let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
        let (value, rest) = rest.split_at(length);
        values.push(value);
        bytes = rest;
    }
    values
}

/// The joined value of this side's and the other side's values of one key (the DSL swaps the
/// application's arguments for the right side).
pub(crate) type StreamStreamJoiner<V, VO, VR> = Arc<dyn Fn(&V, &VO) -> VR + Send + Sync>;

/// The result of a record no record of the other side joined (left and outer joins).
pub(crate) type UnmatchedJoiner<V, VR> = Arc<dyn Fn(&V) -> VR + Send + Sync>;

/// What a left or outer stream-stream join keeps beyond the inner join: the records of its
/// tracked sides that nothing joined yet, in a window store keyed by side byte then key bytes,
/// at the record's timestamp. Such a record is emitted with the unmatched joiner once no record
/// on time could still join it (its timestamp plus twice the difference plus grace is before
/// stream time), so no unmatched result is ever followed by a joined one for the same record,
/// as Kafka Streams' left and outer joins since 3.1.
pub(crate) struct Unmatched<V, VO, VR> {
    pub(crate) store: String,
    pub(crate) this_side: u8,
    /// `Some` where this side's unmatched records are emitted.
    pub(crate) this: Option<UnmatchedJoiner<V, VR>>,
    /// `Some` where the other side's unmatched records are emitted.
    pub(crate) other: Option<UnmatchedJoiner<VO, VR>>,
}

impl<V, VO, VR> Unmatched<V, VO, VR> {
    fn entry_key(side: u8, key_bytes: &[u8]) -> Vec<u8> {
        let mut entry = Vec::with_capacity(key_bytes.len() + 1);
        entry.push(side);
        entry.extend_from_slice(key_bytes);
        entry
    }
}

/// One side of a stream-stream join within `time_difference_ms`: a record at `t` joins the
/// other side's records of its key at `[t - difference, t + difference]`, with the later of the
/// two timestamps. A record is late, dropped and counted, once its whole window plus the grace
/// period is before the task's stream time; buffers keep what a record on time could still
/// join. Left and outer joins also emit records nothing joined (`Unmatched`).
pub(crate) struct StreamStreamJoinSide<K, V, VO, VR> {
    pub(crate) this_store: String,
    pub(crate) other_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) other_value_serde: SharedSerde<VO>,
    pub(crate) time_difference_ms: i64,
    pub(crate) grace_ms: i64,
    pub(crate) joiner: StreamStreamJoiner<V, VO, VR>,
    pub(crate) unmatched: Option<Unmatched<V, VO, VR>>,
}

impl<K: Data, V: Data, VO: Data, VR: Data> StreamStreamJoinSide<K, V, VO, VR> {
    /// Emits, in timestamp order, the unmatched records no record on time could still join.
    fn emit_unmatched(
        &self,
        context: &mut ProcessorContext<'_>,
        stream_time_ms: i64,
    ) -> Result<(), StreamsError> {
        let Some(unmatched) = &self.unmatched else {
            return Ok(());
        };
        let final_before_ms = stream_time_ms - 2 * self.time_difference_ms - self.grace_ms;
        let due: Vec<(Vec<u8>, i64, Vec<u8>)> = context
            .window_store(&unmatched.store)?
            .all()
            .into_iter()
            .take_while(|(_, timestamp_ms, _)| *timestamp_ms < final_before_ms)
            .collect();
        for (entry, timestamp_ms, buffered) in due {
            context
                .window_store(&unmatched.store)?
                .put(&entry, timestamp_ms, None);
            let (side, key_bytes) = entry.split_first().expect("an entry starts with its side");
            let key = self
                .key_serde
                .deserialize(key_bytes)
                .expect("a buffered key reads back with the serde that wrote it");
            for bytes in split_values(&buffered) {
                let value = if *side == unmatched.this_side {
                    let value = read_buffered(&self.value_serde, bytes);
                    (unmatched
                        .this
                        .as_ref()
                        .expect("only tracked sides are kept"))(&value)
                } else {
                    let value = read_buffered(&self.other_value_serde, bytes);
                    (unmatched
                        .other
                        .as_ref()
                        .expect("only tracked sides are kept"))(&value)
                };
                context.forward(Record::new(key.clone(), value, timestamp_ms));
            }
        }
        Ok(())
    }
}

fn read_buffered<T: 'static>(serde: &SharedSerde<T>, bytes: &[u8]) -> T {
    serde
        .deserialize(bytes)
        .expect("a buffered value reads back with the serde that wrote it")
}

impl<K: Data, V: Data, VO: Data, VR: Data> NodeProcessor for StreamStreamJoinSide<K, V, VO, VR> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let stream_time_ms = context
            .stream_time_ms()
            .expect("a task has a stream time once it processes a record");
        let timestamp_ms = record.timestamp_ms;
        if timestamp_ms + self.time_difference_ms + self.grace_ms < stream_time_ms {
            context.record_late_drop();
            return Ok(());
        }
        let key_bytes = self.key_serde.serialize(&record.key);
        let matches = context.window_store(&self.other_store)?.fetch_range(
            &key_bytes,
            timestamp_ms - self.time_difference_ms,
            timestamp_ms + self.time_difference_ms,
        );
        let matched = !matches.is_empty();
        for (other_timestamp_ms, buffered) in matches {
            if let Some(unmatched) = self.unmatched.as_ref().filter(|u| u.other.is_some()) {
                // Every record of the other side at that time is within this one's window.
                let entry = Unmatched::<V, VO, VR>::entry_key(1 - unmatched.this_side, &key_bytes);
                context
                    .window_store(&unmatched.store)?
                    .put(&entry, other_timestamp_ms, None);
            }
            for bytes in split_values(&buffered) {
                let other = read_buffered(&self.other_value_serde, bytes);
                let joined = (self.joiner)(&record.value, &other);
                context.forward(Record::new(
                    record.key.clone(),
                    joined,
                    timestamp_ms.max(other_timestamp_ms),
                ));
            }
        }
        let value_bytes = self.value_serde.serialize(&record.value);
        if let Some(unmatched) = self
            .unmatched
            .as_ref()
            .filter(|u| u.this.is_some() && !matched)
        {
            let entry = Unmatched::<V, VO, VR>::entry_key(unmatched.this_side, &key_bytes);
            let store = context.window_store(&unmatched.store)?;
            let buffered = append_value(store.fetch(&entry, timestamp_ms), &value_bytes);
            store.put(&entry, timestamp_ms, Some(buffered));
        }
        let store = context.window_store(&self.this_store)?;
        let buffered = append_value(store.fetch(&key_bytes, timestamp_ms), &value_bytes);
        store.put(&key_bytes, timestamp_ms, Some(buffered));
        // An on-time record is at or after stream time - difference - grace and joins back to
        // difference before itself.
        let retained_from_ms = stream_time_ms - 2 * self.time_difference_ms - self.grace_ms;
        store.expire_before(retained_from_ms);
        context
            .window_store(&self.other_store)?
            .expire_before(retained_from_ms);
        self.emit_unmatched(context, stream_time_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffered_values_split_back_into_what_was_appended() {
        let bytes = append_value(None, b"one");
        let bytes = append_value(Some(&bytes), b"");
        let bytes = append_value(Some(&bytes), b"three");
        assert_eq!(split_values(&bytes), vec![&b"one"[..], b"", b"three"]);
    }
}
