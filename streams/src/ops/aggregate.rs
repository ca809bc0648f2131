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
