//! The aggregation of a grouped stream into a table: `count`, `reduce` and `aggregate` are all
//! one step, `new = step(key, value, old)`, over the table's key-value store; each update is
//! forwarded with the input record's timestamp.

use std::sync::Arc;

use crate::dsl::ktable::{lookup, upsert};
use crate::error::StreamsError;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeProcessor, ProcessorContext};
use crate::record::Record;
use crate::serdes::SharedSerde;

/// One aggregation step: the key, the new value, and the aggregate so far (`None` for a key's
/// first record).
pub(crate) type AggregateStep<K, V, A> = Arc<dyn Fn(&K, V, Option<A>) -> A + Send + Sync>;

pub(crate) struct StreamAggregate<K, V, A> {
    pub(crate) store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) aggregate_serde: SharedSerde<A>,
    pub(crate) step: AggregateStep<K, V, A>,
}

impl<K: Data, V: Data, A: Data> NodeProcessor for StreamAggregate<K, V, A> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, V>(record);
        let old = lookup(
            context,
            &self.store,
            &self.key_serde,
            &self.aggregate_serde,
            &record.key,
        )?;
        let new = (self.step)(&record.key, record.value, old);
        upsert(
            context,
            &self.store,
            &self.key_serde,
            &self.aggregate_serde,
            &record.key,
            Some(&new),
        )?;
        context.forward(Record::new(record.key, Some(new), record.timestamp_ms));
        Ok(())
    }
}

/// One change a table update makes to a regrouped table's aggregate: the new row's mapped value
/// is added, the old row's subtracted (Kafka Streams sends both in one `Change`; two records,
/// subtraction first, let each go to the partition of its own key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TableChange<V> {
    Add(V),
    Subtract(V),
}

/// [`TableChange`] on the wire of a repartition topic: one byte (1 add, 0 subtract), then the
/// value's bytes.
pub(crate) struct TableChangeSerde<V>(pub(crate) SharedSerde<V>);

impl<V: 'static> crate::serdes::Serde<TableChange<V>> for TableChangeSerde<V> {
    fn serialize(&self, change: &TableChange<V>) -> Vec<u8> {
        let (tag, value) = match change {
            TableChange::Add(value) => (1, value),
            TableChange::Subtract(value) => (0, value),
        };
        let mut bytes = vec![tag];
        bytes.extend_from_slice(&self.0.serialize(value));
        bytes
    }

    fn deserialize(&self, bytes: &[u8]) -> Result<TableChange<V>, crate::serdes::SerdeError> {
        match bytes.split_first() {
            Some((1, value)) => Ok(TableChange::Add(self.0.deserialize(value)?)),
            Some((0, value)) => Ok(TableChange::Subtract(self.0.deserialize(value)?)),
            _ => Err(crate::serdes::SerdeError::Invalid {
                type_name: "TableChange",
                reason: "no add or subtract tag".to_string(),
            }),
        }
    }
}

/// A regrouping's new key and value of a row.
pub(crate) type TableSelector<K, V, K2, V2> = Arc<dyn Fn(&K, &V) -> (K2, V2) + Send + Sync>;

/// Below a table being regrouped: maps each row to its new key and value and sends the changes
/// the update makes, remembering each row's last mapping (the source table's store already
/// holds the new row when this runs, so the old mapping must be kept here).
pub(crate) struct TableRegroup<K, V, K2, V2> {
    pub(crate) store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) new_key_serde: SharedSerde<K2>,
    pub(crate) new_value_serde: SharedSerde<V2>,
    pub(crate) selector: TableSelector<K, V, K2, V2>,
}

impl<K: Data, V: Data, K2: Data, V2: Data> NodeProcessor for TableRegroup<K, V, K2, V2> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Option<V>>(record);
        let key_bytes = self.key_serde.serialize(&record.key);
        let store = context.key_value_store(&self.store)?;
        let old = store.get(&key_bytes).map(|bytes| {
            let parts = crate::ops::join::split_values(bytes);
            let read = "a stored mapping reads back with the serdes that wrote it";
            (
                self.new_key_serde.deserialize(parts[0]).expect(read),
                self.new_value_serde.deserialize(parts[1]).expect(read),
            )
        });
        let new = record
            .value
            .as_ref()
            .map(|value| (self.selector)(&record.key, value));
        match &new {
            Some((new_key, new_value)) => {
                let mapping = crate::ops::join::append_value(
                    Some(&crate::ops::join::append_value(
                        None,
                        &self.new_key_serde.serialize(new_key),
                    )),
                    &self.new_value_serde.serialize(new_value),
                );
                store.put(&key_bytes, mapping);
            }
            None => {
                store.delete(&key_bytes);
            }
        }
        if let Some((old_key, old_value)) = old {
            let change = TableChange::Subtract(old_value);
            context.forward(Record::new(old_key, change, record.timestamp_ms));
        }
        if let Some((new_key, new_value)) = new {
            let change = TableChange::Add(new_value);
            context.forward(Record::new(new_key, change, record.timestamp_ms));
        }
        Ok(())
    }
}

/// Adds or subtracts a change to a regrouped table's aggregate (`None` before the key's first
/// change); `None` leaves the aggregate as it is.
pub(crate) type TableAggregateStep<K, V, A> =
    Arc<dyn Fn(&K, TableChange<V>, Option<A>) -> Option<A> + Send + Sync>;

/// The aggregation of a regrouped table: applies each change to the key's aggregate in its
/// store and forwards the new aggregate.
pub(crate) struct TableAggregate<K, V, A> {
    pub(crate) store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) aggregate_serde: SharedSerde<A>,
    pub(crate) step: TableAggregateStep<K, V, A>,
}

impl<K: Data, V: Data, A: Data> NodeProcessor for TableAggregate<K, V, A> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, TableChange<V>>(record);
        let old = lookup(
            context,
            &self.store,
            &self.key_serde,
            &self.aggregate_serde,
            &record.key,
        )?;
        let Some(new) = (self.step)(&record.key, record.value, old) else {
            return Ok(());
        };
        upsert(
            context,
            &self.store,
            &self.key_serde,
            &self.aggregate_serde,
            &record.key,
            Some(&new),
        )?;
        context.forward(Record::new(record.key, Some(new), record.timestamp_ms));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serdes::{Serde, Utf8Serde};

    #[test]
    fn table_changes_round_trip_through_a_repartition_topic_and_refuse_unknown_tags() {
        let serde = TableChangeSerde(Arc::new(Utf8Serde) as SharedSerde<String>);
        for change in [
            TableChange::Add("a".to_string()),
            TableChange::Subtract("b".to_string()),
        ] {
            assert_eq!(serde.deserialize(&serde.serialize(&change)), Ok(change));
        }
        assert!(serde.deserialize(b"").is_err());
        assert!(serde.deserialize(b"\x07x").is_err());
    }
}
