//! [`KStream`]: a record stream, each record an independent fact. Stateless operators (`map`,
//! `filter`, `flat_map`, `split`, `merge`, `peek`, ...), `process` for application processors,
//! `to` a topic, and the way to state: `group_by_key` / `group_by`, which put a repartition topic
//! in the topology when an operator before them may have changed the key.

use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::dsl::builder::{pass_through, Grouped, Produced, SharedGraph, Types};
use crate::dsl::grouped::KGroupedStream;
use crate::processor::{
    ApplicationProcessor, Data, FunctionNode, NodeId, NodeProcessor, Processor, ProcessorContext,
};
use crate::record::Record;
use crate::serdes::SharedSerde;
use crate::task::ProducedRecord;
use crate::topology::{ProcessorFactory, TopicName};

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

    /// The stream through an application's processor, connected to `stores` (made with the
    /// builder's store methods). Marks the key as changed: the processor may forward any key.
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
