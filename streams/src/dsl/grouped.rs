//! Grouped streams and their aggregations: [`KGroupedStream`] (`count`, `reduce`, `aggregate`
//! into a [`KTable`]) and its windowed forms, [`TimeWindowedKStream`] (tumbling, hopping and
//! sliding windows) and [`SessionWindowedKStream`], whose aggregations make tables keyed by
//! [`Windowed`] keys.

use std::rc::Rc;
use std::sync::Arc;

use crate::dsl::builder::{Grouped, Materialized, SharedGraph};
use crate::dsl::ktable::KTable;
use crate::ops::aggregate::{AggregateStep, StreamAggregate};
use crate::ops::aggregate::{TableAggregate, TableAggregateStep, TableChange};
use crate::ops::window::{SessionWindowAggregate, SlidingWindowAggregate, TimeWindowAggregate};
use crate::processor::{Data, NodeId, NodeProcessor};
use crate::record::Windowed;
use crate::serdes::{SharedSerde, WindowedSerde};
use crate::topology::{ProcessorFactory, StoreKind};
use crate::windows::{SessionWindows, SlidingWindows, TimeWindows};

/// A stream grouped by key, all records of a key in one task.
pub struct KGroupedStream<K, V> {
    graph: SharedGraph,
    node: NodeId,
    grouped: Grouped<K, V>,
}

/// The step of `count`.
fn count_step<K, V>() -> AggregateStep<K, V, u64> {
    Arc::new(|_, _, count: Option<u64>| count.unwrap_or(0) + 1)
}

/// The step of `reduce`: the first value as is, then `reducer(aggregate, value)`.
fn reduce_step<K, V: 'static>(
    reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
) -> AggregateStep<K, V, V> {
    Arc::new(move |_, value, old: Option<V>| match old {
        Some(old) => reducer(old, value),
        None => value,
    })
}

/// The step of `aggregate`: `aggregator(key, value, aggregate)`, from `initializer()`.
fn aggregate_step<K, V, A: 'static>(
    initializer: Arc<dyn Fn() -> A + Send + Sync>,
    aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
) -> AggregateStep<K, V, A> {
    Arc::new(move |key, value, old: Option<A>| {
        aggregator(key, value, old.unwrap_or_else(|| initializer()))
    })
}

impl<K: Data, V: Data> KGroupedStream<K, V> {
    pub(crate) fn new(graph: SharedGraph, node: NodeId, grouped: Grouped<K, V>) -> Self {
        KGroupedStream {
            graph,
            node,
            grouped,
        }
    }

    /// How many records each key had.
    pub fn count(&self, materialized: Materialized<u64>) -> KTable<K, u64> {
        self.aggregate_with(materialized, count_step())
    }

    /// Each key's values combined with `reducer`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        self.aggregate_with(materialized, reduce_step(reducer))
    }

    /// Each key's values folded into an aggregate that starts as `initializer()`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<K, A> {
        self.aggregate_with(
            materialized,
            aggregate_step(Arc::new(initializer), aggregator),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        materialized: Materialized<A>,
        step: AggregateStep<K, V, A>,
    ) -> KTable<K, A> {
        let mut graph = self.graph.borrow_mut();
        let name = materialized
            .name
            .unwrap_or_else(|| graph.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let key_serde = Arc::clone(&self.grouped.key_serde);
        let aggregate_serde = materialized.value_serde;
        let store = graph.add_store(
            name,
            StoreKind::KeyValue,
            Arc::clone(&key_serde),
            Arc::clone(&aggregate_serde),
        );
        let (factory_store, factory_key_serde, factory_aggregate_serde) = (
            store.clone(),
            Arc::clone(&key_serde),
            Arc::clone(&aggregate_serde),
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(StreamAggregate {
                store: factory_store.clone(),
                key_serde: Arc::clone(&factory_key_serde),
                aggregate_serde: Arc::clone(&factory_aggregate_serde),
                step: Arc::clone(&step),
            }) as Box<dyn NodeProcessor>
        });
        let node = graph.add_node(
            "KSTREAM-AGGREGATE",
            &[self.node],
            factory,
            vec![store.clone()],
        );
        drop(graph);
        KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            key_serde,
            aggregate_serde,
        )
    }

    /// The grouped stream in tumbling or hopping windows.
    pub fn windowed_by(&self, windows: TimeWindows) -> TimeWindowedKStream<K, V> {
        self.time_windowed(WindowKind::Time(windows))
    }

    /// The grouped stream in sliding windows.
    pub fn windowed_by_sliding(&self, windows: SlidingWindows) -> TimeWindowedKStream<K, V> {
        self.time_windowed(WindowKind::Sliding(windows))
    }

    fn time_windowed(&self, windows: WindowKind) -> TimeWindowedKStream<K, V> {
        TimeWindowedKStream {
            graph: Rc::clone(&self.graph),
            node: self.node,
            key_serde: Arc::clone(&self.grouped.key_serde),
            value_serde: Arc::clone(&self.grouped.value_serde),
            windows,
        }
    }

    /// The grouped stream in session windows.
    pub fn windowed_by_session(&self, windows: SessionWindows) -> SessionWindowedKStream<K, V> {
        SessionWindowedKStream {
            graph: Rc::clone(&self.graph),
            node: self.node,
            key_serde: Arc::clone(&self.grouped.key_serde),
            windows,
            types: std::marker::PhantomData,
        }
    }
}

/// The windows of a [`TimeWindowedKStream`].
#[derive(Debug, Clone, Copy)]
enum WindowKind {
    Time(TimeWindows),
    Sliding(SlidingWindows),
}

/// A grouped stream in tumbling, hopping or sliding windows.
pub struct TimeWindowedKStream<K, V> {
    graph: SharedGraph,
    node: NodeId,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
    windows: WindowKind,
}

impl<K: Data, V: Data> TimeWindowedKStream<K, V> {
    /// How many records each key had in each window.
    pub fn count(&self, materialized: Materialized<u64>) -> KTable<Windowed<K>, u64> {
        self.aggregate_with(materialized, count_step())
    }

    /// Each key's values in each window combined with `reducer`.
    pub fn reduce(
        &self,
        reducer: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<Windowed<K>, V> {
        self.aggregate_with(materialized, reduce_step(reducer))
    }

    /// Each key's values in each window folded into an aggregate from `initializer()`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        self.aggregate_with(
            materialized,
            aggregate_step(Arc::new(initializer), aggregator),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        materialized: Materialized<A>,
        step: AggregateStep<K, V, A>,
    ) -> KTable<Windowed<K>, A> {
        let mut graph = self.graph.borrow_mut();
        let name = materialized
            .name
            .unwrap_or_else(|| graph.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let aggregate_serde = materialized.value_serde;
        let store = graph.add_store(
            name,
            StoreKind::Window,
            Arc::clone(&self.key_serde),
            Arc::clone(&aggregate_serde),
        );
        let (factory_store, key_serde, value_serde, factory_aggregate_serde) = (
            store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&self.value_serde),
            Arc::clone(&aggregate_serde),
        );
        let (factory, stores, grace_ms): (ProcessorFactory, Vec<String>, i64) = match self.windows {
            WindowKind::Time(windows) => (
                Arc::new(move || {
                    Box::new(TimeWindowAggregate {
                        store: factory_store.clone(),
                        windows,
                        key_serde: Arc::clone(&key_serde),
                        aggregate_serde: Arc::clone(&factory_aggregate_serde),
                        step: Arc::clone(&step),
                        observed_stream_time_ms: None,
                    }) as Box<dyn NodeProcessor>
                }),
                vec![store.clone()],
                windows.grace_ms,
            ),
            WindowKind::Sliding(windows) => {
                let records_store = graph.add_store(
                    format!("{store}-records"),
                    StoreKind::Window,
                    Arc::clone(&self.key_serde),
                    Arc::clone(&self.value_serde),
                );
                let factory_records_store = records_store.clone();
                (
                    Arc::new(move || {
                        Box::new(SlidingWindowAggregate {
                            store: factory_store.clone(),
                            records_store: factory_records_store.clone(),
                            windows,
                            key_serde: Arc::clone(&key_serde),
                            value_serde: Arc::clone(&value_serde),
                            aggregate_serde: Arc::clone(&factory_aggregate_serde),
                            step: Arc::clone(&step),
                            observed_stream_time_ms: None,
                        }) as Box<dyn NodeProcessor>
                    }),
                    vec![store.clone(), records_store],
                    windows.grace_ms,
                )
            }
        };
        let node = graph.add_node("KSTREAM-WINDOWED-AGGREGATE", &[self.node], factory, stores);
        drop(graph);
        let windowed_key_serde: SharedSerde<Windowed<K>> =
            Arc::new(WindowedSerde(Arc::clone(&self.key_serde)));
        KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            windowed_key_serde,
            aggregate_serde,
        )
        .with_window_close_after_end(grace_ms)
    }
}

/// A grouped stream in session windows.
pub struct SessionWindowedKStream<K, V> {
    graph: SharedGraph,
    node: NodeId,
    key_serde: SharedSerde<K>,
    windows: SessionWindows,
    types: std::marker::PhantomData<fn() -> V>,
}

impl<K: Data, V: Data> SessionWindowedKStream<K, V> {
    /// How many records each session of each key had.
    pub fn count(&self, materialized: Materialized<u64>) -> KTable<Windowed<K>, u64> {
        self.aggregate_with(
            materialized,
            Arc::new(|| 0),
            count_step(),
            Arc::new(|_, left, right| left + right),
        )
    }

    /// Each session's values folded into an aggregate from `initializer()`; `merger` combines
    /// two sessions' aggregates when a record joins them.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        aggregator: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        merger: impl Fn(&K, A, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<Windowed<K>, A> {
        let initializer: Arc<dyn Fn() -> A + Send + Sync> = Arc::new(initializer);
        let step = aggregate_step(Arc::clone(&initializer), aggregator);
        self.aggregate_with(materialized, initializer, step, Arc::new(merger))
    }

    fn aggregate_with<A: Data>(
        &self,
        materialized: Materialized<A>,
        initializer: Arc<dyn Fn() -> A + Send + Sync>,
        step: AggregateStep<K, V, A>,
        merger: crate::ops::window::SessionMerger<K, A>,
    ) -> KTable<Windowed<K>, A> {
        let mut graph = self.graph.borrow_mut();
        let name = materialized
            .name
            .unwrap_or_else(|| graph.name("KSTREAM-AGGREGATE-STATE-STORE"));
        let aggregate_serde = materialized.value_serde;
        let store = graph.add_store(
            name,
            StoreKind::Session,
            Arc::clone(&self.key_serde),
            Arc::clone(&aggregate_serde),
        );
        let (factory_store, key_serde, factory_aggregate_serde, windows) = (
            store.clone(),
            Arc::clone(&self.key_serde),
            Arc::clone(&aggregate_serde),
            self.windows,
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(SessionWindowAggregate {
                store: factory_store.clone(),
                windows,
                key_serde: Arc::clone(&key_serde),
                aggregate_serde: Arc::clone(&factory_aggregate_serde),
                initializer: Arc::clone(&initializer),
                step: Arc::clone(&step),
                merger: Arc::clone(&merger),
                observed_stream_time_ms: None,
            }) as Box<dyn NodeProcessor>
        });
        let node = graph.add_node(
            "KSTREAM-SESSION-AGGREGATE",
            &[self.node],
            factory,
            vec![store.clone()],
        );
        drop(graph);
        let windowed_key_serde: SharedSerde<Windowed<K>> =
            Arc::new(WindowedSerde(Arc::clone(&self.key_serde)));
        KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            windowed_key_serde,
            aggregate_serde,
        )
        .with_window_close_after_end(self.windows.retention_ms() + 1)
    }
}

/// A table regrouped by a new key ([`KTable::group_by`]): its aggregations add each new row's
/// value and subtract each replaced or deleted one. A subtraction for a key with no aggregate
/// (which only lost state can cause) changes nothing.
pub struct KGroupedTable<K, V> {
    graph: SharedGraph,
    node: NodeId,
    grouped: Grouped<K, V>,
}

impl<K: Data, V: Data> KGroupedTable<K, V> {
    pub(crate) fn new(graph: SharedGraph, node: NodeId, grouped: Grouped<K, V>) -> Self {
        KGroupedTable {
            graph,
            node,
            grouped,
        }
    }

    /// How many rows each new key has.
    pub fn count(&self, materialized: Materialized<u64>) -> KTable<K, u64> {
        self.aggregate_with(
            materialized,
            Arc::new(|_, change, count: Option<u64>| match change {
                TableChange::Add(_) => Some(count.unwrap_or(0) + 1),
                TableChange::Subtract(_) => count.map(|count| count.saturating_sub(1)),
            }),
        )
    }

    /// Each new key's values combined with `adder`, and taken out again with `subtractor`.
    pub fn reduce(
        &self,
        adder: impl Fn(V, V) -> V + Send + Sync + 'static,
        subtractor: impl Fn(V, V) -> V + Send + Sync + 'static,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        self.aggregate_with(
            materialized,
            Arc::new(move |_, change, old: Option<V>| match (change, old) {
                (TableChange::Add(value), None) => Some(value),
                (TableChange::Add(value), Some(old)) => Some(adder(old, value)),
                (TableChange::Subtract(value), old) => old.map(|old| subtractor(old, value)),
            }),
        )
    }

    /// Each new key's values folded into an aggregate from `initializer()` with `adder`, and
    /// taken out again with `subtractor`.
    pub fn aggregate<A: Data>(
        &self,
        initializer: impl Fn() -> A + Send + Sync + 'static,
        adder: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        subtractor: impl Fn(&K, V, A) -> A + Send + Sync + 'static,
        materialized: Materialized<A>,
    ) -> KTable<K, A> {
        self.aggregate_with(
            materialized,
            Arc::new(move |key, change, old: Option<A>| match change {
                TableChange::Add(value) => {
                    Some(adder(key, value, old.unwrap_or_else(&initializer)))
                }
                TableChange::Subtract(value) => old.map(|old| subtractor(key, value, old)),
            }),
        )
    }

    fn aggregate_with<A: Data>(
        &self,
        materialized: Materialized<A>,
        step: TableAggregateStep<K, V, A>,
    ) -> KTable<K, A> {
        let mut graph = self.graph.borrow_mut();
        let name = materialized
            .name
            .unwrap_or_else(|| graph.name("KTABLE-AGGREGATE-STATE-STORE"));
        let key_serde = Arc::clone(&self.grouped.key_serde);
        let aggregate_serde = materialized.value_serde;
        let store = graph.add_store(
            name,
            StoreKind::KeyValue,
            Arc::clone(&key_serde),
            Arc::clone(&aggregate_serde),
        );
        let (factory_store, factory_key_serde, factory_aggregate_serde) = (
            store.clone(),
            Arc::clone(&key_serde),
            Arc::clone(&aggregate_serde),
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(TableAggregate {
                store: factory_store.clone(),
                key_serde: Arc::clone(&factory_key_serde),
                aggregate_serde: Arc::clone(&factory_aggregate_serde),
                step: Arc::clone(&step),
            }) as Box<dyn NodeProcessor>
        });
        let node = graph.add_node(
            "KTABLE-AGGREGATE",
            &[self.node],
            factory,
            vec![store.clone()],
        );
        drop(graph);
        KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            key_serde,
            aggregate_serde,
        )
    }
}
