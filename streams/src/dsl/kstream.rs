//! [`KStream`]: a record stream, each record an independent fact. Stateless operators (`map`,
//! `filter`, `flat_map`, `split`, `merge`, `peek`, ...), `process` for application processors,
//! `to` a topic, joins with a table or (windowed) another stream, and the way to state:
//! `group_by_key` / `group_by`, which put a repartition topic in the topology when an operator
//! before them may have changed the key.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::dsl::builder::{pass_through, Grouped, Produced, SharedGraph, StreamJoined, Types};
use crate::dsl::grouped::KGroupedStream;
use crate::dsl::ktable::KTable;
use crate::ops::join::{
    StreamStreamJoinSide, StreamStreamJoiner, StreamTableJoin, StreamTableJoiner,
};
use crate::ops::join::{Unmatched, UnmatchedJoiner};
use crate::processor::{
    ApplicationProcessor, Data, FunctionNode, NodeId, NodeProcessor, Processor, ProcessorContext,
};
use crate::record::Record;
use crate::serdes::{BytesSerde, SharedSerde};
use crate::task::ProducedRecord;
use crate::topology::{ProcessorFactory, StoreKind, TopicName};
use crate::windows::JoinWindows;

/// A stream of records with keys of `K` and values of `V`.
pub struct KStream<K, V> {
    pub(crate) graph: SharedGraph,
    pub(crate) node: NodeId,
    /// Whether an operator since the last source may have changed the key, so that a grouping
    /// or join must first repartition by the new key.
    pub(crate) key_changed: bool,
    types: Types<K, V>,
}

impl<K: Data, V: Data> KStream<K, V> {
    pub(crate) fn new(graph: SharedGraph, node: NodeId, key_changed: bool) -> Self {
        KStream {
            graph,
            node,
            key_changed,
            types: PhantomData,
        }
    }

    /// A new stream below this one, fed by a stateless function of each record.
    fn stateless<K2: Data, V2: Data>(
        &self,
        kind: &str,
        key_changed: bool,
        function: impl Fn(Record<K, V>, &mut ProcessorContext<'_>) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        let function = Arc::new(function);
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(FunctionNode::<K, V> {
                function: function.clone(),
            }) as Box<dyn NodeProcessor>
        });
        let node = self
            .graph
            .borrow_mut()
            .add_node(kind, &[self.node], factory, Vec::new());
        KStream::new(Rc::clone(&self.graph), node, key_changed)
    }

    /// The records `predicate` accepts.
    pub fn filter(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.stateless(
            "KSTREAM-FILTER",
            self.key_changed,
            move |record, context| {
                if predicate(&record.key, &record.value) {
                    context.forward(record);
                }
            },
        )
    }

    /// The records `predicate` refuses.
    pub fn filter_not(&self, predicate: impl Fn(&K, &V) -> bool + Send + Sync + 'static) -> Self {
        self.filter(move |key, value| !predicate(key, value))
    }

    /// Each record's key and value replaced by `mapper`'s; marks the key as changed.
    pub fn map<K2: Data, V2: Data>(
        &self,
        mapper: impl Fn(K, V) -> (K2, V2) + Send + Sync + 'static,
    ) -> KStream<K2, V2> {
        self.stateless("KSTREAM-MAP", true, move |record, context| {
            let (key, value) = mapper(record.key, record.value);
            context.forward(Record::new(key, value, record.timestamp_ms));
        })
    }

    /// Each record's value replaced by `mapper`'s; the key is kept, so no repartition follows.
    pub fn map_values<V2: Data>(
        &self,
        mapper: impl Fn(V) -> V2 + Send + Sync + 'static,
    ) -> KStream<K, V2> {
        self.stateless(
            "KSTREAM-MAPVALUES",
            self.key_changed,
            move |record, context| {
                let value = mapper(record.value);
                context.forward(Record::new(record.key, value, record.timestamp_ms));
            },
        )
    }

    /// Each record's key replaced by `selector`'s; marks the key as changed.
    pub fn select_key<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
    ) -> KStream<K2, V> {
        self.stateless("KSTREAM-KEY-SELECT", true, move |record, context| {
            let key = selector(&record.key, &record.value);
            context.forward(Record::new(key, record.value, record.timestamp_ms));
        })
    }

    /// Each record replaced by the records `mapper` makes of it (none, one or many), with its
    /// timestamp; marks the key as changed.
    pub fn flat_map<K2: Data, V2: Data, I>(
        &self,
        mapper: impl Fn(K, V) -> I + Send + Sync + 'static,
    ) -> KStream<K2, V2>
    where
        I: IntoIterator<Item = (K2, V2)>,
    {
        self.stateless("KSTREAM-FLATMAP", true, move |record, context| {
            for (key, value) in mapper(record.key, record.value) {
                context.forward(Record::new(key, value, record.timestamp_ms));
            }
        })
    }

    /// Each record replaced by one record per value `mapper` makes of its value, each with the
    /// record's key and timestamp.
    pub fn flat_map_values<V2: Data, I>(
        &self,
        mapper: impl Fn(V) -> I + Send + Sync + 'static,
    ) -> KStream<K, V2>
    where
        I: IntoIterator<Item = V2>,
    {
        self.stateless(
            "KSTREAM-FLATMAPVALUES",
            self.key_changed,
            move |record, context| {
                for value in mapper(record.value) {
                    context.forward(Record::new(record.key.clone(), value, record.timestamp_ms));
                }
            },
        )
    }

    /// The same stream, with `action` called on each record as it passes.
    pub fn peek(&self, action: impl Fn(&K, &V) + Send + Sync + 'static) -> Self {
        self.stateless("KSTREAM-PEEK", self.key_changed, move |record, context| {
            action(&record.key, &record.value);
            context.forward(record);
        })
    }

    /// One stream per predicate, in order, and a last one for the records no predicate accepted:
    /// each record goes to the first branch whose predicate accepts it (Kafka Streams' `split`
    /// with its `defaultBranch`).
    pub fn split(&self, predicates: Vec<Predicate<K, V>>) -> Vec<KStream<K, V>> {
        let predicates: Arc<[Predicate<K, V>]> = predicates.into();
        let branch_count = predicates.len() + 1;
        let router = self.stateless::<K, V>(
            "KSTREAM-BRANCH",
            self.key_changed,
            move |record, context| {
                let branch = predicates
                    .iter()
                    .position(|predicate| predicate(&record.key, &record.value))
                    .unwrap_or(predicates.len());
                context.forward_to(branch, record);
            },
        );
        (0..branch_count)
            .map(|_| {
                let node = self.graph.borrow_mut().add_node(
                    "KSTREAM-BRANCHCHILD",
                    &[router.node],
                    pass_through::<K, V>(),
                    Vec::new(),
                );
                KStream::new(Rc::clone(&self.graph), node, self.key_changed)
            })
            .collect()
    }

    /// The records of this stream and of `other`, in the order the task processes them.
    pub fn merge(&self, other: &KStream<K, V>) -> Self {
        assert!(
            Rc::ptr_eq(&self.graph, &other.graph),
            "merged streams come from the same builder"
        );
        let node = self.graph.borrow_mut().add_node(
            "KSTREAM-MERGE",
            &[self.node, other.node],
            pass_through::<K, V>(),
            Vec::new(),
        );
        KStream::new(
            Rc::clone(&self.graph),
            node,
            self.key_changed || other.key_changed,
        )
    }

    /// The stream through an application's processor, made once per task by `supplier`. It
    /// may use stores added with `StreamsBuilder::add_key_value_store`. Marks the key as
    /// changed: the processor may forward any key.
    pub fn process<P>(
        &self,
        supplier: impl Fn() -> P + Send + Sync + 'static,
    ) -> KStream<P::KeyOut, P::ValueOut>
    where
        P: Processor<K, V>,
    {
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(ApplicationProcessor::<P, K, V> {
                processor: supplier(),
                types: PhantomData,
            }) as Box<dyn NodeProcessor>
        });
        let node = self.graph.borrow_mut().add_node(
            "KSTREAM-PROCESSOR",
            &[self.node],
            factory,
            Vec::new(),
        );
        KStream::new(Rc::clone(&self.graph), node, true)
    }

    /// Writes the stream to `topic`.
    pub fn to(&self, topic: &str, produced: Produced<K, V>) {
        let mut graph = self.graph.borrow_mut();
        let name = graph.name("KSTREAM-SINK");
        add_sink(
            &mut graph,
            name,
            self.node,
            TopicName::External(topic.to_string()),
            produced,
        );
    }

    /// Groups the records by their key, for an aggregation. If the key may have changed since
    /// the source, the records first go through a repartition topic (with `grouped`'s serdes),
    /// so that all records of a key meet in one task.
    pub fn group_by_key(&self, grouped: Grouped<K, V>) -> KGroupedStream<K, V> {
        let node = if self.key_changed {
            self.repartition(&grouped.key_serde, &grouped.value_serde)
        } else {
            self.node
        };
        KGroupedStream::new(Rc::clone(&self.graph), node, grouped)
    }

    /// Groups the records by the key `selector` chooses (through a repartition topic).
    pub fn group_by<K2: Data>(
        &self,
        selector: impl Fn(&K, &V) -> K2 + Send + Sync + 'static,
        grouped: Grouped<K2, V>,
    ) -> KGroupedStream<K2, V> {
        self.select_key(selector).group_by_key(grouped)
    }

    /// Each record joined with `table`'s row of its key (inner join: records whose key has no
    /// row are dropped). Table updates emit nothing. If the key may have changed, the stream is
    /// first repartitioned with `joined`'s serdes, so that it meets the table's partitions.
    pub fn join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, &VT) -> VR + Send + Sync + 'static,
        joined: Grouped<K, V>,
    ) -> KStream<K, VR> {
        self.stream_table_join(
            table,
            Arc::new(move |_, value, row| row.map(|row| joiner(&value, &row))),
            joined,
        )
    }

    /// Each record joined with `table`'s row of its key, `None` when there is none.
    pub fn left_join_table<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: impl Fn(&V, Option<&VT>) -> VR + Send + Sync + 'static,
        joined: Grouped<K, V>,
    ) -> KStream<K, VR> {
        self.stream_table_join(
            table,
            Arc::new(move |_, value, row| Some(joiner(&value, row.as_ref()))),
            joined,
        )
    }

    fn stream_table_join<VT: Data, VR: Data>(
        &self,
        table: &KTable<K, VT>,
        joiner: StreamTableJoiner<K, V, VT, VR>,
        joined: Grouped<K, V>,
    ) -> KStream<K, VR> {
        assert!(
            Rc::ptr_eq(&self.graph, &table.graph),
            "joined streams and tables come from the same builder"
        );
        let parent = if self.key_changed {
            self.repartition(&joined.key_serde, &joined.value_serde)
        } else {
            self.node
        };
        let (store, key_serde, value_serde) = (
            table.store.clone(),
            Arc::clone(&table.key_serde),
            Arc::clone(&table.value_serde),
        );
        let factory: ProcessorFactory = Arc::new(move || {
            Box::new(StreamTableJoin {
                table_store: store.clone(),
                key_serde: Arc::clone(&key_serde),
                table_value_serde: Arc::clone(&value_serde),
                joiner: Arc::clone(&joiner),
            }) as Box<dyn NodeProcessor>
        });
        let node = self.graph.borrow_mut().add_node(
            "KSTREAM-JOIN-TABLE",
            &[parent],
            factory,
            vec![table.store.clone()],
        );
        KStream::new(Rc::clone(&self.graph), node, false)
    }

    /// Records of this stream and `other` with the same key and timestamps at most the window's
    /// time difference apart, joined (inner join), with the later of the two timestamps. A side
    /// whose key may have changed is repartitioned first.
    pub fn join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, &V2) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        self.stream_stream_join(other, Arc::new(joiner), windows, joined, None, None)
    }

    /// The inner join, plus each record of this stream that no record of `other` joined, with
    /// `None`, once no record on time could still join it (Kafka Streams' left join since 3.1,
    /// which emits no early unmatched result).
    pub fn left_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(&V, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(joiner);
        let unmatched = Arc::clone(&joiner);
        self.stream_stream_join(
            other,
            Arc::new(move |left, right| joiner(left, Some(right))),
            windows,
            joined,
            Some(Arc::new(move |left| unmatched(left, None))),
            None,
        )
    }

    /// The inner join, plus each record of either stream that nothing joined, with `None` for
    /// the missing side, once no record on time could still join it.
    pub fn outer_join_stream<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: impl Fn(Option<&V>, Option<&V2>) -> VR + Send + Sync + 'static,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
    ) -> KStream<K, VR> {
        let joiner = Arc::new(joiner);
        let (left_unmatched, right_unmatched) = (Arc::clone(&joiner), Arc::clone(&joiner));
        self.stream_stream_join(
            other,
            Arc::new(move |left, right| joiner(Some(left), Some(right))),
            windows,
            joined,
            Some(Arc::new(move |left| left_unmatched(Some(left), None))),
            Some(Arc::new(move |right| right_unmatched(None, Some(right)))),
        )
    }

    fn stream_stream_join<V2: Data, VR: Data>(
        &self,
        other: &KStream<K, V2>,
        joiner: StreamStreamJoiner<V, V2, VR>,
        windows: JoinWindows,
        joined: StreamJoined<K, V, V2>,
        left_unmatched: Option<UnmatchedJoiner<V, VR>>,
        right_unmatched: Option<UnmatchedJoiner<V2, VR>>,
    ) -> KStream<K, VR> {
        assert!(
            Rc::ptr_eq(&self.graph, &other.graph),
            "joined streams come from the same builder"
        );
        let left_parent = if self.key_changed {
            self.repartition(&joined.key_serde, &joined.value_serde)
        } else {
            self.node
        };
        let right_parent = if other.key_changed {
            other.repartition(&joined.key_serde, &joined.other_value_serde)
        } else {
            other.node
        };
        let mut graph = self.graph.borrow_mut();
        let left_store_name = graph.name("KSTREAM-JOINTHIS-STORE");
        let right_store_name = graph.name("KSTREAM-JOINOTHER-STORE");
        let left_store = graph.add_store(
            left_store_name,
            StoreKind::Window,
            Arc::clone(&joined.key_serde),
            Arc::clone(&joined.value_serde),
        );
        let right_store = graph.add_store(
            right_store_name,
            StoreKind::Window,
            Arc::clone(&joined.key_serde),
            Arc::clone(&joined.other_value_serde),
        );
        let mut stores = vec![left_store.clone(), right_store.clone()];
        let unmatched_store = (left_unmatched.is_some() || right_unmatched.is_some()).then(|| {
            // Entries are a side byte and the key's bytes: read raw.
            let name = graph.name("KSTREAM-OUTERSHARED-STORE");
            let bytes: SharedSerde<Vec<u8>> = Arc::new(BytesSerde);
            let store = graph.add_store(name, StoreKind::Window, Arc::clone(&bytes), bytes);
            stores.push(store.clone());
            store
        });
        let left_joiner = Arc::clone(&joiner);
        let right_joiner: StreamStreamJoiner<V2, V, VR> =
            Arc::new(move |this, other| joiner(other, this));
        let left = join_side_factory(
            (left_store.clone(), right_store.clone()),
            Arc::clone(&joined.key_serde),
            (
                Arc::clone(&joined.value_serde),
                Arc::clone(&joined.other_value_serde),
            ),
            windows,
            left_joiner,
            unmatched_store
                .clone()
                .map(|store| (store, 0, left_unmatched.clone(), right_unmatched.clone())),
        );
        let right = join_side_factory(
            (right_store, left_store),
            Arc::clone(&joined.key_serde),
            (
                Arc::clone(&joined.other_value_serde),
                Arc::clone(&joined.value_serde),
            ),
            windows,
            right_joiner,
            unmatched_store.map(|store| (store, 1, right_unmatched, left_unmatched)),
        );
        let left_node = graph.add_node("KSTREAM-JOINTHIS", &[left_parent], left, stores.clone());
        let right_node = graph.add_node("KSTREAM-JOINOTHER", &[right_parent], right, stores);
        let merge = graph.add_node(
            "KSTREAM-MERGE",
            &[left_node, right_node],
            pass_through::<K, VR>(),
            Vec::new(),
        );
        drop(graph);
        KStream::new(Rc::clone(&self.graph), merge, false)
    }

    /// A sink to a new internal topic and a source from it: the node the rest of the topology
    /// hangs from. In a cluster the topic spreads records by key over the tasks; the test driver
    /// feeds its records straight back in.
    pub(crate) fn repartition(
        &self,
        key_serde: &SharedSerde<K>,
        value_serde: &SharedSerde<V>,
    ) -> NodeId {
        let mut graph = self.graph.borrow_mut();
        let name = graph.name("KSTREAM-REPARTITION");
        let topic = TopicName::Internal(format!("{name}-repartition"));
        add_sink(
            &mut graph,
            format!("{name}-sink"),
            self.node,
            topic.clone(),
            Produced::with(Arc::clone(key_serde), Arc::clone(value_serde)),
        );
        graph.add_source(
            topic,
            crate::dsl::builder::Consumed::with(Arc::clone(key_serde), Arc::clone(value_serde)),
        )
    }
}

/// A branch condition of [`KStream::split`].
pub type Predicate<K, V> = Box<dyn Fn(&K, &V) -> bool + Send + Sync>;

/// Adds a node that serializes records, partitions them and queues them for `topic`.
pub(crate) fn add_sink<K: Data, V: Data>(
    graph: &mut crate::dsl::builder::Graph,
    name: String,
    parent: NodeId,
    topic: TopicName,
    produced: Produced<K, V>,
) {
    let produced = Arc::new(produced);
    let sink_topic = topic.clone();
    let function = Arc::new(
        move |record: Record<K, V>, context: &mut ProcessorContext<'_>| {
            let topic = sink_topic.resolve(context.application_id());
            let partition_count = context.partition_count(&topic);
            let key = produced.key_serde.serialize_nullable(&record.key);
            let partition = match (&produced.partitioner, &key) {
                (Some(partitioner), _) => partitioner(&record.key, &record.value, partition_count),
                (None, Some(key)) => spate_client::partition_for_key(key, partition_count),
                (None, None) => context.partition() % partition_count,
            };
            assert!(
                partition < partition_count,
                "the partitioner of {topic} answered {partition} of {partition_count} partitions"
            );
            context.produce(ProducedRecord {
                topic,
                partition,
                key,
                value: produced.value_serde.serialize_nullable(&record.value),
                timestamp_ms: record.timestamp_ms,
            });
        },
    );
    let factory: ProcessorFactory = Arc::new(move || {
        Box::new(FunctionNode::<K, V> {
            function: function.clone(),
        }) as Box<dyn NodeProcessor>
    });
    graph.add_named_node(name, &[parent], factory, Vec::new(), Some(topic));
}

/// The factory of one side of a stream-stream join: its buffer and the other's, its value serde
/// and the other's.
fn join_side_factory<K: Data, V: Data, VO: Data, VR: Data>(
    (this_store, other_store): (String, String),
    key_serde: SharedSerde<K>,
    (value_serde, other_value_serde): (SharedSerde<V>, SharedSerde<VO>),
    windows: JoinWindows,
    joiner: StreamStreamJoiner<V, VO, VR>,
    unmatched: Option<UnmatchedSide<V, VO, VR>>,
) -> ProcessorFactory {
    Arc::new(move || {
        Box::new(StreamStreamJoinSide {
            this_store: this_store.clone(),
            other_store: other_store.clone(),
            key_serde: Arc::clone(&key_serde),
            value_serde: Arc::clone(&value_serde),
            other_value_serde: Arc::clone(&other_value_serde),
            time_difference_ms: windows.time_difference_ms,
            grace_ms: windows.grace_ms,
            joiner: Arc::clone(&joiner),
            unmatched: unmatched
                .clone()
                .map(|(store, this_side, this, other)| Unmatched {
                    store,
                    this_side,
                    this,
                    other,
                }),
        }) as Box<dyn NodeProcessor>
    })
}

/// A side's view of a left or outer join's unmatched records: the store, this side's byte,
/// and the unmatched joiners of this side and the other (`None`: that side is not emitted).
type UnmatchedSide<V, VO, VR> = (
    String,
    u8,
    Option<UnmatchedJoiner<V, VR>>,
    Option<UnmatchedJoiner<VO, VR>>,
);
