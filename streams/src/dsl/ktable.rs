//! [`KTable`]: a changelog stream read as a table, the latest value per key. Every table of this
//! library is materialized in a key-value store of its own (Kafka Streams materializes lazily):
//! it costs memory, and it gives every table operator the same simple semantics — an update is
//! an upsert into the table's store, a `None` value a delete, and a delete of an absent key
//! changes nothing and is not forwarded. Records below a table carry `Option<V>` values,
//! `None` being a tombstone.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::dsl::builder::{pass_through, Grouped, Materialized, SharedGraph, Types};
use crate::dsl::grouped::KGroupedTable;
use crate::dsl::kstream::KStream;
use crate::error::StreamsError;
use crate::ops::aggregate::{TableChange, TableChangeSerde, TableRegroup, TableSelector};
use crate::ops::foreign_key::{ForeignKeyExtractor, ForeignKeyJoiner, RightTableUpdate};
use crate::ops::foreign_key::{Respond, Subscribe, SubscriptionHandler};
use crate::ops::join::{TableTableJoinSide, TableTableJoiner};
use crate::ops::suppress::SuppressUntilWindowCloses;
use crate::processor::ProcessorContext;
use crate::processor::{downcast_record, Data, ErasedRecord, NodeId, NodeProcessor};
use crate::record::{Record, Windowed};
use crate::serdes::SharedSerde;
use crate::topology::{ProcessorFactory, StoreKind};

/// A table with keys of `K` and values of `V`.
pub struct KTable<K, V> {
    pub(crate) graph: SharedGraph,
    pub(crate) node: NodeId,
    pub(crate) store: String,
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    /// For a table a windowed aggregation made: how long after a window's end it closes, in
    /// stream time (a window closes when `end + this <= stream time`): the grace period for
    /// time windows, whose end is excluded; for sessions, which a record within the gap may
    /// still extend and whose end is included, gap plus grace plus one millisecond. `suppress`
    /// needs it. `None` for other tables.
    pub(crate) window_close_after_end_ms: Option<i64>,
    types: Types<K, V>,
}

/// Writes `value` (or deletes, for `None`) at `key` in a table's store. Answers whether the
/// table changed: a delete of an absent key does not.
pub(crate) fn upsert<K: 'static, V: 'static>(
    context: &mut ProcessorContext<'_>,
    store: &str,
    key_serde: &SharedSerde<K>,
    value_serde: &SharedSerde<V>,
    key: &K,
    value: Option<&V>,
) -> Result<bool, StreamsError> {
    let key_bytes = key_serde.serialize(key);
    let store = context.key_value_store(store)?;
    Ok(match value {
        Some(value) => {
            store.put(&key_bytes, value_serde.serialize(value));
            true
        }
        None => store.delete(&key_bytes).is_some(),
    })
}

/// Reads `key` from a table's store.
pub(crate) fn lookup<K: 'static, V: 'static>(
    context: &mut ProcessorContext<'_>,
    store: &str,
    key_serde: &SharedSerde<K>,
    value_serde: &SharedSerde<V>,
    key: &K,
) -> Result<Option<V>, StreamsError> {
    let key_bytes = key_serde.serialize(key);
    let store = context.key_value_store(store)?;
    Ok(store.get(&key_bytes).map(|bytes| {
        // The store holds only what this topology serialized with this serde.
        value_serde
            .deserialize(bytes)
            .expect("a store value reads back with the serde that wrote it")
    }))
}

/// The node under a table source: upserts each record into the table's store and forwards the
/// changes.
pub(crate) struct TableSource<K, V> {
    store: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

impl<K: Data, V: Data> TableSource<K, V> {
    pub(crate) fn factory(
        store: String,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> ProcessorFactory {
        Arc::new(move || {
            Box::new(TableSource {
                store: store.clone(),
                key_serde: Arc::clone(&key_serde),
                value_serde: Arc::clone(&value_serde),
            }) as Box<dyn NodeProcessor>
        })
    }
}

impl<K: Data, V: Data> NodeProcessor for TableSource<K, V> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Option<V>>(record);
        if upsert(
            context,
            &self.store,
            &self.key_serde,
            &self.value_serde,
            &record.key,
            record.value.as_ref(),
        )? {
            context.forward(record);
        }
        Ok(())
    }
}

/// A table derived from another by a function of each key and new value: `filter`,
/// `map_values`. `None` from the function removes the key from the derived table.
struct DerivedTable<K, V, V2> {
    store: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V2>,
    derive: DeriveFunction<K, V, V2>,
}

/// A derived table's value of a key, from the source table's new value.
type DeriveFunction<K, V, V2> = Arc<dyn Fn(&K, V) -> Option<V2> + Send + Sync>;

impl<K: Data, V: Data, V2: Data> NodeProcessor for DerivedTable<K, V, V2> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        let record = downcast_record::<K, Option<V>>(record);
        let value = record
            .value
            .and_then(|value| (self.derive)(&record.key, value));
        if upsert(
            context,
            &self.store,
            &self.key_serde,
            &self.value_serde,
            &record.key,
            value.as_ref(),
        )? {
            context.forward(Record::new(record.key, value, record.timestamp_ms));
        }
        Ok(())
    }
}

impl<K: Data, V: Data> KTable<K, V> {
    pub(crate) fn new(
        graph: SharedGraph,
        node: NodeId,
        store: String,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> Self {
        KTable {
            graph,
            node,
            store,
            key_serde,
            value_serde,
            window_close_after_end_ms: None,
            types: PhantomData,
        }
    }

    pub(crate) fn with_window_close_after_end(mut self, close_after_end_ms: i64) -> Self {
        self.window_close_after_end_ms = Some(close_after_end_ms);
        self
    }

    /// The name of the table's store.
    pub fn store_name(&self) -> &str {
        &self.store
    }

    /// The table's changes as a stream; a `None` value is a delete.
    pub fn to_stream(&self) -> KStream<K, Option<V>> {
        let node = self.graph.borrow_mut().add_node(
            "KTABLE-TOSTREAM",
            &[self.node],
            pass_through::<K, Option<V>>(),
            Vec::new(),
        );
        KStream::new(Rc::clone(&self.graph), node, false)
    }

    /// A table derived with `derive`, in a store of its own.
    fn derive<V2: Data>(
        &self,
        kind: &str,
        materialized: Materialized<V2>,
        derive: impl Fn(&K, V) -> Option<V2> + Send + Sync + 'static,
    ) -> KTable<K, V2> {
        let mut graph = self.graph.borrow_mut();
        let store_name = materialized
            .name
            .unwrap_or_else(|| graph.name(&format!("{kind}-STATE-STORE")));
        let store = graph.add_store(
            store_name,
            StoreKind::KeyValue,
            Arc::clone(&self.key_serde),
            Arc::clone(&materialized.value_serde),
        );
        let derive: DeriveFunction<K, V, V2> = Arc::new(derive);
        let (store_for_factory, key_serde, value_serde) = (
            store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&materialized.value_serde),
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(DerivedTable {
                store: store_for_factory.clone(),
                key_serde: Arc::clone(&key_serde),
                value_serde: Arc::clone(&value_serde),
                derive: Arc::clone(&derive),
            }) as Box<dyn NodeProcessor>
        });
        let node = graph.add_node(kind, &[self.node], factory, vec![store.clone()]);
        drop(graph);
        let mut table = KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            Arc::clone(&self.key_serde),
            materialized.value_serde,
        );
        table.window_close_after_end_ms = self.window_close_after_end_ms;
        table
    }

    /// The rows `predicate` accepts; a row it stops accepting is deleted.
    pub fn filter(
        &self,
        predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static,
    ) -> KTable<K, V> {
        let materialized = Materialized::with(Arc::clone(&self.value_serde));
        self.derive("KTABLE-FILTER", materialized, move |key, value| {
            predicate(key, &value).then_some(value)
        })
    }

    /// The inner join with `other`: a row where both tables have one, `joiner` of the two.
    pub fn join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        self.join_tables(other, materialized, move |left, right| {
            match (left, right) {
                (Some(left), Some(right)) => Some(joiner(left, right)),
                _ => None,
            }
        })
    }

    /// The left join with `other`: a row wherever this table has one.
    pub fn left_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        self.join_tables(other, materialized, move |left, right| {
            left.map(|left| joiner(left, right))
        })
    }

    /// The outer join with `other`: a row wherever either table has one.
    pub fn outer_join<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        self.join_tables(other, materialized, move |left, right| {
            (left.is_some() || right.is_some()).then(|| joiner(left, right))
        })
    }

    /// The inner join of each row with the row of `right` whose key `extractor` takes from the
    /// row's value (a foreign key): Kafka Streams' foreign-key join. It goes through a
    /// subscription topic (partitioned like `right`) and a response topic (partitioned like this
    /// table); see `ops::foreign_key`.
    pub fn join_on_foreign_key<KO: Data, VO: Data, VR: Data>(
        &self,
        right: &KTable<KO, VO>,
        extractor: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, &VO) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        let joiner: ForeignKeyJoiner<V, VO, VR> =
            Arc::new(move |left, right| right.map(|right| joiner(left, right)));
        self.foreign_key_join(right, Arc::new(extractor), joiner, materialized)
    }

    /// Like [`join_on_foreign_key`](Self::join_on_foreign_key), keeping rows whose foreign key
    /// names no row of `right` (the joiner gets `None`).
    pub fn left_join_on_foreign_key<KO: Data, VO: Data, VR: Data>(
        &self,
        right: &KTable<KO, VO>,
        extractor: impl Fn(&V) -> KO + Send + Sync + 'static,
        joiner: impl Fn(&V, Option<&VO>) -> VR + Send + Sync + 'static,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        let joiner: ForeignKeyJoiner<V, VO, VR> =
            Arc::new(move |left, right| Some(joiner(left, right)));
        self.foreign_key_join(right, Arc::new(extractor), joiner, materialized)
    }

    fn foreign_key_join<KO: Data, VO: Data, VR: Data>(
        &self,
        right: &KTable<KO, VO>,
        extractor: ForeignKeyExtractor<V, KO>,
        joiner: ForeignKeyJoiner<V, VO, VR>,
        materialized: Materialized<VR>,
    ) -> KTable<K, VR> {
        assert!(
            Rc::ptr_eq(&self.graph, &right.graph),
            "joined tables come from the same builder"
        );
        let bytes: SharedSerde<Vec<u8>> = Arc::new(crate::serdes::BytesSerde);
        let mut graph = self.graph.borrow_mut();
        let previous_name = graph.name("KTABLE-FK-JOIN-FOREIGN-KEYS-STORE");
        let previous_store = graph.add_store(
            previous_name,
            StoreKind::KeyValue,
            Arc::clone(&self.key_serde),
            Arc::clone(&bytes),
        );
        let subscriptions_name = graph.name("KTABLE-FK-JOIN-SUBSCRIPTIONS-STORE");
        let subscriptions_store = graph.add_store(
            subscriptions_name,
            StoreKind::KeyValue,
            Arc::clone(&bytes),
            Arc::clone(&bytes),
        );
        let result_name = materialized
            .name
            .unwrap_or_else(|| graph.name("KTABLE-FK-JOIN-OUTPUT-STATE-STORE"));
        let result_store = graph.add_store(
            result_name,
            StoreKind::KeyValue,
            Arc::clone(&self.key_serde),
            Arc::clone(&materialized.value_serde),
        );

        let subscribe: ProcessorFactory = {
            let (store, key_serde, foreign_key_serde, extractor) = (
                previous_store.clone(),
                Arc::clone(&self.key_serde),
                Arc::clone(&right.key_serde),
                Arc::clone(&extractor),
            );
            Arc::new(move || {
                Box::new(Subscribe {
                    previous_store: store.clone(),
                    key_serde: Arc::clone(&key_serde),
                    foreign_key_serde: Arc::clone(&foreign_key_serde),
                    extractor: Arc::clone(&extractor),
                }) as Box<dyn NodeProcessor>
            })
        };
        let subscribe_node = graph.add_node(
            "KTABLE-FK-JOIN-SUBSCRIBE",
            &[self.node],
            subscribe,
            vec![previous_store],
        );
        drop(graph);
        // Child 0 of the subscribe node: the subscription topic, partitioned like `right`.
        let subscription_source =
            KStream::<KO, Vec<u8>>::new(Rc::clone(&self.graph), subscribe_node, true)
                .repartition(&right.key_serde, &bytes);

        let mut graph = self.graph.borrow_mut();
        let handler: ProcessorFactory = {
            let (subscriptions, right_store, key_serde, foreign_key_serde, right_value_serde) = (
                subscriptions_store.clone(),
                right.store.clone(),
                Arc::clone(&self.key_serde),
                Arc::clone(&right.key_serde),
                Arc::clone(&right.value_serde),
            );
            Arc::new(move || {
                Box::new(SubscriptionHandler {
                    subscriptions_store: subscriptions.clone(),
                    right_store: right_store.clone(),
                    key_serde: Arc::clone(&key_serde),
                    foreign_key_serde: Arc::clone(&foreign_key_serde),
                    right_value_serde: Arc::clone(&right_value_serde),
                }) as Box<dyn NodeProcessor>
            })
        };
        let handler_node = graph.add_node(
            "KTABLE-FK-JOIN-SUBSCRIPTION-HANDLER",
            &[subscription_source],
            handler,
            vec![subscriptions_store.clone(), right.store.clone()],
        );
        let update: ProcessorFactory = {
            let (subscriptions, key_serde, foreign_key_serde, right_value_serde) = (
                subscriptions_store.clone(),
                Arc::clone(&self.key_serde),
                Arc::clone(&right.key_serde),
                Arc::clone(&right.value_serde),
            );
            Arc::new(move || {
                Box::new(RightTableUpdate {
                    subscriptions_store: subscriptions.clone(),
                    key_serde: Arc::clone(&key_serde),
                    foreign_key_serde: Arc::clone(&foreign_key_serde),
                    right_value_serde: Arc::clone(&right_value_serde),
                }) as Box<dyn NodeProcessor>
            })
        };
        let update_node = graph.add_node(
            "KTABLE-FK-JOIN-RIGHT-UPDATE",
            &[right.node],
            update,
            vec![subscriptions_store],
        );
        let responses = graph.add_node(
            "KTABLE-FK-JOIN-RESPONSES",
            &[handler_node, update_node],
            pass_through::<K, Vec<u8>>(),
            Vec::new(),
        );
        drop(graph);
        let response_source = KStream::<K, Vec<u8>>::new(Rc::clone(&self.graph), responses, true)
            .repartition(&self.key_serde, &bytes);

        let mut graph = self.graph.borrow_mut();
        let respond: ProcessorFactory = {
            let (
                left_store,
                result,
                key_serde,
                left_value_serde,
                foreign_key_serde,
                right_value_serde,
                result_serde,
            ) = (
                self.store.clone(),
                result_store.clone(),
                Arc::clone(&self.key_serde),
                Arc::clone(&self.value_serde),
                Arc::clone(&right.key_serde),
                Arc::clone(&right.value_serde),
                Arc::clone(&materialized.value_serde),
            );
            Arc::new(move || {
                Box::new(Respond {
                    left_store: left_store.clone(),
                    result_store: result.clone(),
                    key_serde: Arc::clone(&key_serde),
                    left_value_serde: Arc::clone(&left_value_serde),
                    foreign_key_serde: Arc::clone(&foreign_key_serde),
                    right_value_serde: Arc::clone(&right_value_serde),
                    result_serde: Arc::clone(&result_serde),
                    extractor: Arc::clone(&extractor),
                    joiner: Arc::clone(&joiner),
                }) as Box<dyn NodeProcessor>
            })
        };
        // Child 1 of the subscribe node (deleted left rows), and the response topic's reader.
        let respond_node = graph.add_node(
            "KTABLE-FK-JOIN-RESPOND",
            &[subscribe_node, response_source],
            respond,
            vec![self.store.clone(), result_store.clone()],
        );
        drop(graph);
        KTable::new(
            Rc::clone(&self.graph),
            respond_node,
            result_store,
            Arc::clone(&self.key_serde),
            materialized.value_serde,
        )
    }

    /// Both sides' nodes below their tables, writing one result store, merged into the result
    /// table's node.
    fn join_tables<V2: Data, VR: Data>(
        &self,
        other: &KTable<K, V2>,
        materialized: Materialized<VR>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> Option<VR> + Send + Sync + 'static,
    ) -> KTable<K, VR> {
        assert!(
            Rc::ptr_eq(&self.graph, &other.graph),
            "joined tables come from the same builder"
        );
        let mut graph = self.graph.borrow_mut();
        let name = materialized
            .name
            .unwrap_or_else(|| graph.name("KTABLE-JOIN-STATE-STORE"));
        let result_store = graph.add_store(
            name,
            StoreKind::KeyValue,
            Arc::clone(&self.key_serde),
            Arc::clone(&materialized.value_serde),
        );
        let joiner = Arc::new(joiner);
        let left_joiner: TableTableJoiner<V, V2, VR> = {
            let joiner = Arc::clone(&joiner);
            Arc::new(move |this, other| joiner(this, other))
        };
        let right_joiner: TableTableJoiner<V2, V, VR> =
            Arc::new(move |this, other| joiner(other, this));
        let left = table_join_side_factory(
            other.store.clone(),
            result_store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&other.value_serde),
            Arc::clone(&materialized.value_serde),
            left_joiner,
        );
        let right = table_join_side_factory(
            self.store.clone(),
            result_store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&self.value_serde),
            Arc::clone(&materialized.value_serde),
            right_joiner,
        );
        let stores = vec![
            self.store.clone(),
            other.store.clone(),
            result_store.clone(),
        ];
        let left_node = graph.add_node("KTABLE-JOINTHIS", &[self.node], left, stores.clone());
        let right_node = graph.add_node("KTABLE-JOINOTHER", &[other.node], right, stores);
        let merge = graph.add_node(
            "KTABLE-MERGE",
            &[left_node, right_node],
            pass_through::<K, Option<VR>>(),
            Vec::new(),
        );
        drop(graph);
        KTable::new(
            Rc::clone(&self.graph),
            merge,
            result_store,
            Arc::clone(&self.key_serde),
            materialized.value_serde,
        )
    }

    /// The table regrouped by the key and value `selector` makes of each row, for an
    /// aggregation that adds each new row and subtracts each replaced or deleted one (through a
    /// repartition topic, with `grouped`'s serdes).
    pub fn group_by<K2: Data, V2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> (K2, V2) + Send + Sync + 'static,
        grouped: Grouped<K2, V2>,
    ) -> KGroupedTable<K2, V2> {
        let mut graph = self.graph.borrow_mut();
        let store_name = graph.name("KTABLE-SELECT-STATE-STORE");
        // Each row's last mapping, as its two parts' bytes: read raw.
        let bytes: SharedSerde<Vec<u8>> = Arc::new(crate::serdes::BytesSerde);
        let store = graph.add_store(
            store_name,
            StoreKind::KeyValue,
            Arc::clone(&self.key_serde),
            bytes,
        );
        let selector: TableSelector<K, V, K2, V2> = Arc::new(selector);
        let (factory_store, key_serde, new_key_serde, new_value_serde) = (
            store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&grouped.key_serde),
            Arc::clone(&grouped.value_serde),
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(TableRegroup {
                store: factory_store.clone(),
                key_serde: Arc::clone(&key_serde),
                new_key_serde: Arc::clone(&new_key_serde),
                new_value_serde: Arc::clone(&new_value_serde),
                selector: Arc::clone(&selector),
            }) as Box<dyn NodeProcessor>
        });
        let node = graph.add_node("KTABLE-SELECT", &[self.node], factory, vec![store]);
        drop(graph);
        let changes = KStream::<K2, TableChange<V2>>::new(Rc::clone(&self.graph), node, true);
        let change_serde: SharedSerde<TableChange<V2>> =
            Arc::new(TableChangeSerde(Arc::clone(&grouped.value_serde)));
        let source = changes.repartition(&grouped.key_serde, &change_serde);
        KGroupedTable::new(Rc::clone(&self.graph), source, grouped)
    }

    /// Each row's value replaced by `mapper`'s.
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(V) -> V2 + Send + Sync + 'static,
        materialized: Materialized<V2>,
    ) -> KTable<K, V2> {
        self.derive("KTABLE-MAPVALUES", materialized, move |_, value| {
            Some(mapper(value))
        })
    }
}

impl<K: Data, V: Data> KTable<Windowed<K>, V> {
    /// Only each window's final value, forwarded once the window closes (its end plus the
    /// grace period of the windowed aggregation this table came from, in stream time): Kafka
    /// Streams' `suppress(Suppressed.untilWindowCloses(unbounded()))`.
    pub fn suppress_until_window_closes(&self) -> KStream<Windowed<K>, V> {
        self.suppress(None)
    }

    /// Like [`suppress_until_window_closes`](Self::suppress_until_window_closes), with a buffer
    /// of at most `buffered_windows_max` windows: a record that needs one more fails processing
    /// with [`StreamsError::SuppressBufferFull`] (Kafka's `maxRecords(n).shutDownWhenFull()`).
    pub fn suppress_until_window_closes_bounded(
        &self,
        buffered_windows_max: usize,
    ) -> KStream<Windowed<K>, V> {
        assert!(
            buffered_windows_max > 0,
            "a suppress buffer holds at least one window"
        );
        self.suppress(Some(buffered_windows_max))
    }

    fn suppress(&self, buffered_windows_max: Option<usize>) -> KStream<Windowed<K>, V> {
        let close_after_end_ms = self
            .window_close_after_end_ms
            .expect("a windowed table comes from a windowed aggregation, which sets its closing");
        let key_serde = Arc::clone(&self.key_serde);
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(SuppressUntilWindowCloses::<K, V> {
                close_after_end_ms,
                key_serde: Arc::clone(&key_serde),
                buffer: Default::default(),
                observed_stream_time_ms: None,
                buffered_windows_max,
            }) as Box<dyn NodeProcessor>
        });
        let node =
            self.graph
                .borrow_mut()
                .add_node("KTABLE-SUPPRESS", &[self.node], factory, Vec::new());
        KStream::new(Rc::clone(&self.graph), node, false)
    }
}

/// The factory of one side of a table-table join.
fn table_join_side_factory<K: Data, V: Data, VO: Data, VR: Data>(
    other_store: String,
    result_store: String,
    key_serde: SharedSerde<K>,
    other_value_serde: SharedSerde<VO>,
    result_serde: SharedSerde<VR>,
    joiner: TableTableJoiner<V, VO, VR>,
) -> ProcessorFactory {
    Arc::new(move || {
        Box::new(TableTableJoinSide {
            other_store: other_store.clone(),
            key_serde: Arc::clone(&key_serde),
            other_value_serde: Arc::clone(&other_value_serde),
            result_store: result_store.clone(),
            result_serde: Arc::clone(&result_serde),
            joiner: Arc::clone(&joiner),
        }) as Box<dyn NodeProcessor>
    })
}
