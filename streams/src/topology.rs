//! The built [`Topology`]: a directed acyclic graph of nodes (sources, processors, sinks), the
//! state stores they use, and the topics they read and write. It holds factories, not
//! processors: every task instantiates its own processors and stores from it, so one topology
//! serves any number of tasks and threads. Building it is `dsl`'s job; running it is `task`'s.

use std::any::Any;
use std::collections::BTreeSet;
use std::fmt::Write;
use std::sync::Arc;

use crate::processor::{ErasedRecord, NodeId, NodeProcessor};
use crate::serdes::SerdeError;
use crate::store::{InMemoryKeyValueStore, InMemorySessionStore, InMemoryWindowStore, StateStore};

/// A topic as the topology names it: the application's own, or an internal one (a repartition
/// topic) whose full name is the application id, a dash, and this name, as in Kafka Streams.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum TopicName {
    /// A topic named by the application.
    External(String),
    /// A topic the topology made: prefixed with the application id at run time.
    Internal(String),
    /// Every application topic whose whole name matches this regular expression (Kafka's
    /// pattern subscription).
    Pattern(String),
}

impl TopicName {
    /// The topic's name on the broker for application `application_id`.
    pub fn resolve(&self, application_id: &str) -> String {
        match self {
            TopicName::External(name) => name.clone(),
            TopicName::Internal(name) => format!("{application_id}-{name}"),
            TopicName::Pattern(pattern) => pattern.clone(),
        }
    }
}

/// A record as it comes from a topic: bytes, a timestamp, and where it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputRecord {
    /// The key's bytes; `None` is a null key.
    pub key: Option<Vec<u8>>,
    /// The value's bytes; `None` is a null value (a tombstone for a table).
    pub value: Option<Vec<u8>>,
    /// The record's timestamp (create or append time), milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// The record's offset in its partition.
    pub offset: i64,
}

/// What a source makes of an input record: the typed record and its event time, or `None`
/// when the timestamp extractor gave a negative time (the record is skipped and counted).
pub(crate) type SourceDecoded = Option<(ErasedRecord, i64)>;

pub(crate) type SourceDecoder =
    Arc<dyn Fn(&InputRecord) -> Result<SourceDecoded, (&'static str, SerdeError)> + Send + Sync>;

pub(crate) type ProcessorFactory = Arc<dyn Fn() -> Box<dyn NodeProcessor> + Send + Sync>;

/// One node of the graph.
pub(crate) struct NodeSpec {
    pub(crate) name: String,
    pub(crate) children: Vec<NodeId>,
    pub(crate) factory: ProcessorFactory,
    pub(crate) stores: Vec<String>,
    /// The topic a sink node writes, for `describe`.
    pub(crate) sink_topic: Option<TopicName>,
}

/// A topic the topology reads, and the node its records enter at.
pub(crate) struct SourceSpec {
    pub(crate) topic: TopicName,
    /// For a `TopicName::Pattern` source: the pattern, anchored at both ends.
    pub(crate) pattern: Option<regex::Regex>,
    pub(crate) node: NodeId,
    pub(crate) decode: SourceDecoder,
}

impl SourceSpec {
    /// Whether this source reads `topic` (a full name) for application `application_id`.
    pub(crate) fn reads(&self, topic: &str, application_id: &str) -> bool {
        match &self.pattern {
            Some(pattern) => pattern.is_match(topic),
            None => self.topic.resolve(application_id) == topic,
        }
    }
}

/// The kinds of state store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// A [`crate::store::KeyValueStore`].
    KeyValue,
    /// A [`crate::store::WindowStore`].
    Window,
    /// A [`crate::store::SessionStore`].
    Session,
}

/// A store of the topology: its name, kind, and the serdes of its keys and values (a
/// `(SharedSerde<K>, SharedSerde<V>)`, kept erased so that the test driver and, later,
/// interactive queries can read the store typed).
pub(crate) struct StoreSpec {
    pub(crate) name: String,
    pub(crate) kind: StoreKind,
    pub(crate) serdes: Arc<dyn Any + Send + Sync>,
}

impl StoreSpec {
    pub(crate) fn instantiate(&self) -> StateStore {
        match self.kind {
            StoreKind::KeyValue => StateStore::KeyValue(Box::<InMemoryKeyValueStore>::default()),
            StoreKind::Window => StateStore::Window(Box::<InMemoryWindowStore>::default()),
            StoreKind::Session => StateStore::Session(Box::<InMemorySessionStore>::default()),
        }
    }
}

/// A topology, built once by [`crate::StreamsBuilder::build`] and run by any number of tasks.
pub struct Topology {
    pub(crate) nodes: Vec<NodeSpec>,
    pub(crate) sources: Vec<SourceSpec>,
    pub(crate) stores: Vec<StoreSpec>,
}

impl Topology {
    /// The topics the topology reads, internal ones and patterns included.
    pub fn source_topics(&self) -> Vec<TopicName> {
        self.sources
            .iter()
            .map(|source| source.topic.clone())
            .collect()
    }

    /// The topics the topology writes, internal ones included.
    pub fn sink_topics(&self) -> BTreeSet<TopicName> {
        self.nodes
            .iter()
            .filter_map(|node| node.sink_topic.clone())
            .collect()
    }

    /// The repartition topics the topology made (a key changed before a grouping or join).
    pub fn internal_topics(&self) -> BTreeSet<TopicName> {
        self.source_topics()
            .into_iter()
            .filter(|topic| matches!(topic, TopicName::Internal(_)))
            .collect()
    }

    /// The names of the topology's state stores.
    pub fn store_names(&self) -> Vec<String> {
        self.stores.iter().map(|store| store.name.clone()).collect()
    }

    /// The graph in words, one node a line with its children and stores, as Kafka Streams'
    /// `Topology::describe`.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        for source in &self.sources {
            let _ = writeln!(
                text,
                "Source topic {:?} -> {}",
                source.topic, self.nodes[source.node].name
            );
        }
        for node in &self.nodes {
            let children: Vec<&str> = node
                .children
                .iter()
                .map(|child| self.nodes[*child].name.as_str())
                .collect();
            let _ = write!(text, "{} -> [{}]", node.name, children.join(", "));
            if !node.stores.is_empty() {
                let _ = write!(text, " stores [{}]", node.stores.join(", "));
            }
            if let Some(topic) = &node.sink_topic {
                let _ = write!(text, " topic {topic:?}");
            }
            text.push('\n');
        }
        text
    }

    pub(crate) fn store_spec(&self, name: &str) -> Option<&StoreSpec> {
        self.stores.iter().find(|store| store.name == name)
    }
}
