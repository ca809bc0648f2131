//! [`StreamsBuilder`] and the graph under construction, with the option types of the DSL:
//! [`Consumed`] (a source's serdes and timestamp extractor), [`Produced`] (a sink's serdes and
//! partitioner), [`Grouped`] (a grouping's serdes) and [`Materialized`] (a store's name and
//! value serde). Each has a `new()` only where its types have a [`DefaultSerde`], so a missing
//! serde is a compile error, not a run-time one.

use std::any::Any;
use std::cell::RefCell;
use std::marker::PhantomData;
use std::rc::Rc;
use std::sync::Arc;

use crate::dsl::kstream::KStream;
use crate::dsl::ktable::{KTable, TableSource};
use crate::processor::{Data, NodeId, NodeProcessor};
use crate::record::Record;
use crate::serdes::{DefaultSerde, SharedSerde};
use crate::topology::{
    InputRecord, NodeSpec, ProcessorFactory, SourceSpec, StoreKind, StoreSpec, TopicName, Topology,
};

/// The graph the DSL's handles add to, shared by them while the topology is being built.
pub(crate) struct Graph {
    pub(crate) topology: Topology,
    next_index: usize,
    /// Set by `build`, which takes the topology: handles kept past it cannot add to it.
    built: bool,
}

pub(crate) type SharedGraph = Rc<RefCell<Graph>>;

impl Graph {
    /// A name for a new node or store: Kafka Streams' `KSTREAM-MAP-0000000003` pattern.
    pub(crate) fn name(&mut self, kind: &str) -> String {
        let name = format!("{kind}-{:010}", self.next_index);
        self.next_index += 1;
        name
    }

    /// Adds a node below `parents`, answering its id.
    pub(crate) fn add_node(
        &mut self,
        kind: &str,
        parents: &[NodeId],
        factory: ProcessorFactory,
        stores: Vec<String>,
    ) -> NodeId {
        let name = self.name(kind);
        self.add_named_node(name, parents, factory, stores, None)
    }

    pub(crate) fn add_named_node(
        &mut self,
        name: String,
        parents: &[NodeId],
        factory: ProcessorFactory,
        stores: Vec<String>,
        sink_topic: Option<TopicName>,
    ) -> NodeId {
        assert!(!self.built, "a topology is not changed after build");
        let id = self.topology.nodes.len();
        self.topology.nodes.push(NodeSpec {
            name,
            children: Vec::new(),
            factory,
            stores,
            sink_topic,
        });
        for parent in parents {
            self.topology.nodes[*parent].children.push(id);
        }
        id
    }

    /// Adds a source node reading `topic` with `consumed`.
    pub(crate) fn add_source<K: Data, V: Data>(
        &mut self,
        topic: TopicName,
        consumed: Consumed<K, V>,
    ) -> NodeId {
        assert!(
            self.topology
                .sources
                .iter()
                .all(|source| source.topic != topic),
            "topic {topic:?} is read by one source only in a topology"
        );
        let node = self.add_node("KSTREAM-SOURCE", &[], pass_through::<K, V>(), Vec::new());
        let Consumed {
            key_serde,
            value_serde,
            timestamp_extractor,
        } = consumed;
        let decode = Arc::new(move |input: &InputRecord| {
            let key = key_serde
                .deserialize_nullable(input.key.as_deref())
                .map_err(|error| ("key", error))?;
            let value = value_serde
                .deserialize_nullable(input.value.as_deref())
                .map_err(|error| ("value", error))?;
            let timestamp_ms = match &timestamp_extractor {
                Some(extract) => extract(&key, &value, input.timestamp_ms),
                None => input.timestamp_ms,
            };
            if timestamp_ms < 0 {
                return Ok(None);
            }
            let record: Box<dyn Any + Send> = Box::new(Record::new(key, value, timestamp_ms));
            Ok(Some((record, timestamp_ms)))
        });
        let pattern = match &topic {
            TopicName::Pattern(pattern) => Some(
                regex::Regex::new(&format!("^(?:{pattern})$"))
                    .unwrap_or_else(|error| panic!("source pattern {pattern}: {error}")),
            ),
            _ => None,
        };
        self.topology.sources.push(SourceSpec {
            topic,
            pattern,
            node,
            decode,
        });
        node
    }

    /// Registers a store, answering its name.
    pub(crate) fn add_store<K: 'static, V: 'static>(
        &mut self,
        name: String,
        kind: StoreKind,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> String {
        assert!(
            self.topology.store_spec(&name).is_none(),
            "store {name} is defined once in a topology"
        );
        self.topology.stores.push(StoreSpec {
            name: name.clone(),
            kind,
            serdes: Arc::new((key_serde, value_serde)),
        });
        name
    }
}

/// A node that forwards what it receives: sources, branches and merges.
pub(crate) fn pass_through<K: Data, V: Data>() -> ProcessorFactory {
    Arc::new(|| {
        Box::new(crate::processor::FunctionNode::<K, V> {
            function: Arc::new(|record, context| context.forward(record)),
        }) as Box<dyn NodeProcessor>
    })
}

/// Builds a topology: make streams and tables from topics, chain operators on them, then
/// [`build`](StreamsBuilder::build).
pub struct StreamsBuilder {
    graph: SharedGraph,
}

impl Default for StreamsBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamsBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        StreamsBuilder {
            graph: Rc::new(RefCell::new(Graph {
                topology: Topology {
                    nodes: Vec::new(),
                    sources: Vec::new(),
                    stores: Vec::new(),
                },
                next_index: 0,
                built: false,
            })),
        }
    }

    /// A stream of the records of `topic`.
    pub fn stream<K: Data, V: Data>(&self, topic: &str, consumed: Consumed<K, V>) -> KStream<K, V> {
        let node = self
            .graph
            .borrow_mut()
            .add_source(TopicName::External(topic.to_string()), consumed);
        KStream::new(Rc::clone(&self.graph), node, false)
    }

    /// A stream of the records of every topic whose whole name matches `pattern` (a regular
    /// expression, as Kafka's pattern subscription). The runtime subscribes to the topics that
    /// match when it starts; a topic created later is not read until a restart.
    ///
    /// # Panics
    /// When `pattern` is not a valid regular expression (a bug in the topology's code).
    pub fn stream_matching<K: Data, V: Data>(
        &self,
        pattern: &str,
        consumed: Consumed<K, V>,
    ) -> KStream<K, V> {
        let node = self
            .graph
            .borrow_mut()
            .add_source(TopicName::Pattern(pattern.to_string()), consumed);
        KStream::new(Rc::clone(&self.graph), node, false)
    }

    /// A table of the latest value of each key of `topic`: a record upserts its key, a null
    /// value (a tombstone) deletes it. The value type is the table's; the topic's values are
    /// read with `consumed`'s value serde, a null value being a tombstone whatever the serde.
    pub fn table<K: Data, V: Data>(
        &self,
        topic: &str,
        consumed: Consumed<K, V>,
        materialized: Materialized<V>,
    ) -> KTable<K, V> {
        let mut graph = self.graph.borrow_mut();
        let key_serde = Arc::clone(&consumed.key_serde);
        let nullable = Consumed::<K, Option<V>> {
            key_serde: consumed.key_serde,
            value_serde: Arc::new(crate::serdes::NullableSerde(consumed.value_serde)),
            timestamp_extractor: consumed.timestamp_extractor.map(|extract| {
                // An extractor for the table's values cannot see a tombstone's; it gets the
                // record's own timestamp.
                Arc::new(
                    move |key: &K, value: &Option<V>, timestamp_ms: i64| match value {
                        Some(value) => extract(key, value, timestamp_ms),
                        None => timestamp_ms,
                    },
                ) as TimestampExtractor<K, Option<V>>
            }),
        };
        let source = graph.add_source(TopicName::External(topic.to_string()), nullable);
        let store_name = materialized
            .name
            .unwrap_or_else(|| graph.name("KTABLE-SOURCE-STATE-STORE"));
        let store = graph.add_store(
            store_name,
            StoreKind::KeyValue,
            Arc::clone(&key_serde),
            Arc::clone(&materialized.value_serde),
        );
        let factory = TableSource::factory(
            store.clone(),
            Arc::clone(&key_serde),
            Arc::clone(&materialized.value_serde),
        );
        let node = graph.add_node("KTABLE-SOURCE", &[source], factory, vec![store.clone()]);
        drop(graph);
        KTable::new(
            Rc::clone(&self.graph),
            node,
            store,
            key_serde,
            materialized.value_serde,
        )
    }

    /// Adds a key-value store `name` for application processors (`KStream::process`), which
    /// reach it with `ProcessorContext::key_value_store(name)`; the serdes say how the test
    /// driver (and, later, queries) read it.
    pub fn add_key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> String {
        self.graph.borrow_mut().add_store(
            name.to_string(),
            StoreKind::KeyValue,
            key_serde,
            value_serde,
        )
    }

    /// The topology, ready to run.
    pub fn build(self) -> Topology {
        let mut graph = self.graph.borrow_mut();
        graph.built = true;
        std::mem::replace(
            &mut graph.topology,
            Topology {
                nodes: Vec::new(),
                sources: Vec::new(),
                stores: Vec::new(),
            },
        )
    }
}

/// Chooses a record's event time from its key, value and record timestamp (the default is the
/// record timestamp). A negative answer skips the record.
pub type TimestampExtractor<K, V> = Arc<dyn Fn(&K, &V, i64) -> i64 + Send + Sync>;

/// How a source reads its topic.
pub struct Consumed<K, V> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) timestamp_extractor: Option<TimestampExtractor<K, V>>,
}

impl<K: DefaultSerde, V: DefaultSerde> Consumed<K, V> {
    /// The default serdes of `K` and `V`.
    pub fn new() -> Self {
        Self::with(K::default_serde(), V::default_serde())
    }
}

impl<K: DefaultSerde, V: DefaultSerde> Default for Consumed<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Consumed<K, V> {
    /// These serdes.
    pub fn with(key_serde: SharedSerde<K>, value_serde: SharedSerde<V>) -> Self {
        Consumed {
            key_serde,
            value_serde,
            timestamp_extractor: None,
        }
    }

    /// Event time from `extractor` instead of the record timestamp.
    pub fn with_timestamp_extractor(
        mut self,
        extractor: impl Fn(&K, &V, i64) -> i64 + Send + Sync + 'static,
    ) -> Self {
        self.timestamp_extractor = Some(Arc::new(extractor));
        self
    }
}

/// Chooses the partition of a record among a topic's `partition_count`.
pub type Partitioner<K, V> = Arc<dyn Fn(&K, &V, u32) -> u32 + Send + Sync>;

/// How a sink writes its topic.
pub struct Produced<K, V> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) partitioner: Option<Partitioner<K, V>>,
}

impl<K: DefaultSerde, V: DefaultSerde> Produced<K, V> {
    /// The default serdes of `K` and `V`.
    pub fn new() -> Self {
        Self::with(K::default_serde(), V::default_serde())
    }
}

impl<K: DefaultSerde, V: DefaultSerde> Default for Produced<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Produced<K, V> {
    /// These serdes; records are partitioned by Kafka's murmur2 of the key's bytes (a null key:
    /// the task's own partition, modulo the topic's count).
    pub fn with(key_serde: SharedSerde<K>, value_serde: SharedSerde<V>) -> Self {
        Produced {
            key_serde,
            value_serde,
            partitioner: None,
        }
    }

    /// Partitions records with `partitioner` instead. Its answer must be below the count it is
    /// given.
    pub fn with_partitioner(
        mut self,
        partitioner: impl Fn(&K, &V, u32) -> u32 + Send + Sync + 'static,
    ) -> Self {
        self.partitioner = Some(Arc::new(partitioner));
        self
    }
}

/// The serdes of a grouping: what a repartition topic and the grouping's stores use.
pub struct Grouped<K, V> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
}

impl<K: DefaultSerde, V: DefaultSerde> Grouped<K, V> {
    /// The default serdes of `K` and `V`.
    pub fn new() -> Self {
        Self::with(K::default_serde(), V::default_serde())
    }
}

impl<K: DefaultSerde, V: DefaultSerde> Default for Grouped<K, V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V> Grouped<K, V> {
    /// These serdes.
    pub fn with(key_serde: SharedSerde<K>, value_serde: SharedSerde<V>) -> Self {
        Grouped {
            key_serde,
            value_serde,
        }
    }
}

/// A store's name (generated if not given) and the serde of its values.
pub struct Materialized<V> {
    pub(crate) name: Option<String>,
    pub(crate) value_serde: SharedSerde<V>,
}

impl<V: DefaultSerde> Materialized<V> {
    /// A store with a generated name and `V`'s default serde.
    pub fn new() -> Self {
        Self::with(V::default_serde())
    }

    /// A store named `name` with `V`'s default serde.
    pub fn as_store(name: &str) -> Self {
        Self::new().named(name)
    }
}

impl<V: DefaultSerde> Default for Materialized<V> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V> Materialized<V> {
    /// A store with a generated name and this value serde.
    pub fn with(value_serde: SharedSerde<V>) -> Self {
        Materialized {
            name: None,
            value_serde,
        }
    }

    /// Names the store (test drivers and queries find it by this name).
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_string());
        self
    }
}

/// Marker for handles that carry their record types.
pub(crate) type Types<K, V> = PhantomData<fn() -> (K, V)>;

/// The serdes of a stream-stream join: the key, and each side's values (for the join buffers,
/// and repartition topics when a side's key changed).
pub struct StreamJoined<K, V, V2> {
    pub(crate) key_serde: SharedSerde<K>,
    pub(crate) value_serde: SharedSerde<V>,
    pub(crate) other_value_serde: SharedSerde<V2>,
}

impl<K: DefaultSerde, V: DefaultSerde, V2: DefaultSerde> StreamJoined<K, V, V2> {
    /// The default serdes of `K`, `V` and `V2`.
    pub fn new() -> Self {
        Self::with(K::default_serde(), V::default_serde(), V2::default_serde())
    }
}

impl<K: DefaultSerde, V: DefaultSerde, V2: DefaultSerde> Default for StreamJoined<K, V, V2> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K, V, V2> StreamJoined<K, V, V2> {
    /// These serdes.
    pub fn with(
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
        other_value_serde: SharedSerde<V2>,
    ) -> Self {
        StreamJoined {
            key_serde,
            value_serde,
            other_value_serde,
        }
    }
}
