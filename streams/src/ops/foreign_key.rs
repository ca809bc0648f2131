//! Foreign-key table joins (Kafka Streams' KIP-213, simplified): a left table keyed by `K`
//! joins the right table's row whose key `KO` a function of the left value names. The two
//! tables are partitioned by different keys, so the join goes through two internal topics:
//!
//! 1. `Subscribe`, below the left table (partitioned by `K`): for each left row, a subscription
//!    keyed by its foreign key (and an unsubscription from the previous one when it changed),
//!    to the subscription topic. A deleted left row also goes straight to `Respond` (step 4).
//! 2. `SubscriptionHandler` (partitioned by `KO`, beside the right table): keeps the
//!    subscriptions in a store keyed by foreign key then left key, and answers each
//!    subscription with the right row as it is, to the response topic, keyed by `K`.
//! 3. `RightTableUpdate`, below the right table: answers every subscriber of an updated row.
//! 4. `Respond` (partitioned by `K`): joins the answer with the left row as it is now, unless
//!    the left row names another foreign key by then (a stale answer, dropped), and upserts
//!    the result table.
//!
//! Internal values are bytes: a subscription is one byte (1 subscribe, 0 unsubscribe) then the
//! left key's bytes; a response is the foreign key's length (4 bytes, little-endian), its
//! bytes, one byte (1 the right row exists, 0 not), then the right value's bytes.

use std::sync::Arc;

use crate::dsl::ktable::{lookup, upsert};
use crate::error::StreamsError;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeProcessor, ProcessorContext};
use crate::record::Record;
use crate::serdes::SharedSerde;

/// The foreign key a left value names.
pub(crate) type ForeignKeyExtractor<V, KO> = Arc<dyn Fn(&V) -> KO + Send + Sync>;

/// The joined value of a left value and the right row (`None`: the right table has none);
/// `None` means the result table has no row.
pub(crate) type ForeignKeyJoiner<V, VO, VR> =
    Arc<dyn Fn(&V, Option<&VO>) -> Option<VR> + Send + Sync>;

fn subscription(subscribe: bool, key_bytes: &[u8]) -> Vec<u8> {
    let mut bytes = vec![u8::from(subscribe)];
    bytes.extend_from_slice(key_bytes);
    bytes
}

fn response(foreign_key_bytes: &[u8], value_bytes: Option<&[u8]>) -> Vec<u8> {
    let length = u32::try_from(foreign_key_bytes.len()).expect("a key is under 4 GiB");
    let mut bytes = length.to_le_bytes().to_vec();
    bytes.extend_from_slice(foreign_key_bytes);
    match value_bytes {
        Some(value) => {
            bytes.push(1);
            bytes.extend_from_slice(value);
        }
        None => bytes.push(0),
    }
    bytes
}

/// A response's foreign key and right value bytes. Only this module writes responses.
fn read_response(bytes: &[u8]) -> (&[u8], Option<&[u8]>) {
    let (length, rest) = bytes.split_at(4);
    let length = u32::from_le_bytes(length.try_into().expect("4 bytes")) as usize;
    let (foreign_key, rest) = rest.split_at(length);
    let (present, value) = rest
        .split_first()
        .expect("a response says whether the row exists");
    (foreign_key, (*present == 1).then_some(value))
}

/// A subscription store key: the foreign key's length and bytes, then the left key's bytes, so
/// that a prefix scan finds a right row's subscribers.
fn subscription_prefix(foreign_key_bytes: &[u8]) -> Vec<u8> {
    let length = u32::try_from(foreign_key_bytes.len()).expect("a key is under 4 GiB");
    let mut bytes = length.to_le_bytes().to_vec();
    bytes.extend_from_slice(foreign_key_bytes);
    bytes
}

/// Step 1. Child 0 is the subscription topic's sink; child 1 is `Respond`.
pub(crate) struct Subscribe<K, V, KO> {
    pub(crate) previous_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) foreign_key_serde: SharedSerde<KO>,
    pub(crate) extractor: ForeignKeyExtractor<V, KO>,
}

impl<K: Data, V: Data, KO: Data> NodeProcessor for Subscribe<K, V, KO> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Option<V>>(record);
        let key_bytes = self.key_serde.serialize(&record.key);
        let foreign_key = record.value.as_ref().map(|value| (self.extractor)(value));
        let foreign_key_bytes = foreign_key
            .as_ref()
            .map(|key| self.foreign_key_serde.serialize(key));
        let store = context.key_value_store(&self.previous_store)?;
        let previous = store.get(&key_bytes).map(<[u8]>::to_vec);
        match &foreign_key_bytes {
            Some(bytes) => store.put(&key_bytes, bytes.clone()),
            None => {
                store.delete(&key_bytes);
            }
        }
        let timestamp_ms = record.timestamp_ms;
        if let Some(previous) =
            previous.filter(|previous| Some(previous) != foreign_key_bytes.as_ref())
        {
            let previous_key = self
                .foreign_key_serde
                .deserialize(&previous)
                .expect("a stored foreign key reads back with the serde that wrote it");
            let unsubscribe = subscription(false, &key_bytes);
            context.forward_to(0, Record::new(previous_key, unsubscribe, timestamp_ms));
        }
        match foreign_key {
            Some(foreign_key) => {
                let subscribe = subscription(true, &key_bytes);
                context.forward_to(0, Record::new(foreign_key, subscribe, timestamp_ms));
            }
            // The left row is gone: its result goes at once, on this side.
            None => context.forward_to(
                1,
                Record::new(record.key, response(&[], None), timestamp_ms),
            ),
        }
        Ok(())
    }
}

/// Step 2.
pub(crate) struct SubscriptionHandler<K, KO, VO> {
    pub(crate) subscriptions_store: String,
    pub(crate) right_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) foreign_key_serde: SharedSerde<KO>,
    pub(crate) right_value_serde: SharedSerde<VO>,
}

impl<K: Data, KO: Data, VO: Data> NodeProcessor for SubscriptionHandler<K, KO, VO> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<KO, Vec<u8>>(record);
        let (subscribe, key_bytes) = record
            .value
            .split_first()
            .expect("a subscription starts with its kind");
        let foreign_key_bytes = self.foreign_key_serde.serialize(&record.key);
        let mut entry = subscription_prefix(&foreign_key_bytes);
        entry.extend_from_slice(key_bytes);
        let store = context.key_value_store(&self.subscriptions_store)?;
        if *subscribe == 0 {
            store.delete(&entry);
            return Ok(());
        }
        store.put(&entry, Vec::new());
        let right = lookup(
            context,
            &self.right_store,
            &self.foreign_key_serde,
            &self.right_value_serde,
            &record.key,
        )?;
        let right_bytes = right.map(|value| self.right_value_serde.serialize(&value));
        let key = self
            .key_serde
            .deserialize(key_bytes)
            .expect("a subscription's key reads back with the serde that wrote it");
        let answer = response(&foreign_key_bytes, right_bytes.as_deref());
        context.forward(Record::new(key, answer, record.timestamp_ms));
        Ok(())
    }
}

/// Step 3.
pub(crate) struct RightTableUpdate<K, KO, VO> {
    pub(crate) subscriptions_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) foreign_key_serde: SharedSerde<KO>,
    pub(crate) right_value_serde: SharedSerde<VO>,
}

impl<K: Data, KO: Data, VO: Data> NodeProcessor for RightTableUpdate<K, KO, VO> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<KO, Option<VO>>(record);
        let foreign_key_bytes = self.foreign_key_serde.serialize(&record.key);
        let prefix = subscription_prefix(&foreign_key_bytes);
        let value_bytes = record
            .value
            .as_ref()
            .map(|value| self.right_value_serde.serialize(value));
        let subscribers = context
            .key_value_store(&self.subscriptions_store)?
            .prefix(&prefix);
        for (entry, _) in subscribers {
            let key = self
                .key_serde
                .deserialize(&entry[prefix.len()..])
                .expect("a subscription's key reads back with the serde that wrote it");
            let answer = response(&foreign_key_bytes, value_bytes.as_deref());
            context.forward(Record::new(key, answer, record.timestamp_ms));
        }
        Ok(())
    }
}

/// Step 4.
pub(crate) struct Respond<K, V, KO, VO, VR> {
    pub(crate) left_store: String,
    pub(crate) result_store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) left_value_serde: SharedSerde<V>,
    pub(crate) foreign_key_serde: SharedSerde<KO>,
    pub(crate) right_value_serde: SharedSerde<VO>,
    pub(crate) result_serde: SharedSerde<VR>,
    pub(crate) extractor: ForeignKeyExtractor<V, KO>,
    pub(crate) joiner: ForeignKeyJoiner<V, VO, VR>,
}

impl<K: Data, V: Data, KO: Data, VO: Data, VR: Data> NodeProcessor for Respond<K, V, KO, VO, VR> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Vec<u8>>(record);
        let (foreign_key_bytes, right_bytes) = read_response(&record.value);
        let left = lookup(
            context,
            &self.left_store,
            &self.key_serde,
            &self.left_value_serde,
            &record.key,
        )?;
        let joined = match &left {
            None => None,
            Some(left) => {
                let current = self.foreign_key_serde.serialize(&(self.extractor)(left));
                if current != foreign_key_bytes {
                    // Answers a subscription the left row has moved away from.
                    return Ok(());
                }
                let right = right_bytes.map(|bytes| {
                    self.right_value_serde
                        .deserialize(bytes)
                        .expect("a right value reads back with the serde that wrote it")
                });
                (self.joiner)(left, right.as_ref())
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_read_back_what_was_written() {
        assert_eq!(
            read_response(&response(b"fk", Some(b"row"))),
            (&b"fk"[..], Some(&b"row"[..]))
        );
        assert_eq!(read_response(&response(b"", None)), (&b""[..], None));
        assert_eq!(
            read_response(&response(b"fk", Some(b""))),
            (&b"fk"[..], Some(&b""[..]))
        );
    }
}
