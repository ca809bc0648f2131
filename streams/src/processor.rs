//! Processors and what they see of their task: the [`Processor`] trait for application-written
//! processing steps (`KStream::process`), the [`ProcessorContext`] each call gets (time, stores,
//! punctuation, forwarding), and the type-erased `NodeProcessor` every node of a topology runs
//! as inside a task. The typed DSL (`dsl`) guarantees that a node only receives the record type
//! it was built for; the downcast in `downcast_record` asserts it.

use std::any::Any;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use crate::error::StreamsError;
use crate::record::Record;
use crate::store::{KeyValueStore, SessionStore, StateStore, WindowStore};
use crate::task::{ProducedRecord, Schedule, TaskState};

/// What keys and values must be to flow through a topology: owned, cloneable (a record
/// forwarded to several children is cloned for all but the last) and sendable (a task may move
/// between threads between calls).
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// A node's position in its topology.
pub(crate) type NodeId = usize;

/// A record on its way between nodes, typed by the node that forwarded it.
pub(crate) type ErasedRecord = Box<dyn Any + Send>;

/// The typed record inside an erased one. A mismatch is a bug in the DSL, which wires only
/// nodes of matching types.
pub(crate) fn downcast_record<K: 'static, V: 'static>(record: ErasedRecord) -> Record<K, V> {
    *record.downcast::<Record<K, V>>().unwrap_or_else(|_| {
        panic!("a node received a record of another type than it was built for")
    })
}

/// Which clock a punctuation follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PunctuationType {
    /// The task's stream time: the largest event time it has processed. Fires only as records
    /// arrive, so it is deterministic and replays the same.
    StreamTime,
    /// The wall clock (in tests, the driver's clock).
    WallClockTime,
}

/// A punctuation schedule of one processor, as `ProcessorContext::schedule` answered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScheduleId(pub(crate) usize);

/// A processor as a node of a task runs it: type-erased records in, forwarded through the
/// context.
pub(crate) trait NodeProcessor: Send {
    fn init(&mut self, _context: &mut ProcessorContext<'_>) {}
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError>;
    fn punctuate(
        &mut self,
        _schedule: ScheduleId,
        _timestamp_ms: i64,
        _context: &mut ProcessorContext<'_>,
    ) {
    }
}

/// What a processor sees of its task during one call: the task's partition and clocks, its
/// stores, punctuation, and the records it forwards to its children (processed after the call
/// returns, depth first, before the next input record).
pub struct ProcessorContext<'a> {
    pub(crate) state: &'a mut TaskState,
    pub(crate) node: NodeId,
    pub(crate) children: &'a [NodeId],
    pub(crate) forwarded: &'a mut Vec<(NodeId, ErasedRecord)>,
}

impl ProcessorContext<'_> {
    /// The partition the task processes.
    pub fn partition(&self) -> u32 {
        self.state.partition
    }

    /// The task's stream time: the largest event time of the records it has processed, `None`
    /// before the first.
    pub fn stream_time_ms(&self) -> Option<i64> {
        self.state.stream_time_ms
    }

    /// The wall clock as the task last saw it, milliseconds since the Unix epoch.
    pub fn wall_clock_ms(&self) -> i64 {
        self.state.wall_clock_ms
    }

    /// Calls this processor's `punctuate` every `interval_ms` of `kind` time: first when that
    /// clock reaches its current value plus `interval_ms` (stream time: the first record's time),
    /// then once per passed interval, however many intervals one step of the clock passes (as
    /// Kafka Streams: a punctuation is not repeated to catch up).
    pub fn schedule(&mut self, interval_ms: i64, kind: PunctuationType) -> ScheduleId {
        assert!(interval_ms > 0, "a punctuation interval is positive");
        let start_ms = match kind {
            PunctuationType::StreamTime => self.state.stream_time_ms,
            PunctuationType::WallClockTime => Some(self.state.wall_clock_ms),
        };
        let id = ScheduleId(self.state.schedules.len());
        self.state.schedules.push(Schedule {
            node: self.node,
            id,
            kind,
            interval_ms,
            next_ms: start_ms.map(|start| start + interval_ms),
        });
        id
    }

    /// The key-value store `name` of this task.
    pub fn key_value_store(&mut self, name: &str) -> Result<&mut dyn KeyValueStore, StreamsError> {
        match self.state.stores.get_mut(name) {
            Some(StateStore::KeyValue(store)) => Ok(store.as_mut()),
            _ => Err(StreamsError::UnknownStore {
                name: name.to_string(),
                kind: "key-value",
            }),
        }
    }

    /// The window store `name` of this task.
    pub fn window_store(&mut self, name: &str) -> Result<&mut dyn WindowStore, StreamsError> {
        match self.state.stores.get_mut(name) {
            Some(StateStore::Window(store)) => Ok(store.as_mut()),
            _ => Err(StreamsError::UnknownStore {
                name: name.to_string(),
                kind: "window",
            }),
        }
    }

    /// The session store `name` of this task.
    pub fn session_store(&mut self, name: &str) -> Result<&mut dyn SessionStore, StreamsError> {
        match self.state.stores.get_mut(name) {
            Some(StateStore::Session(store)) => Ok(store.as_mut()),
            _ => Err(StreamsError::UnknownStore {
                name: name.to_string(),
                kind: "session",
            }),
        }
    }

    /// Sends `record` to every child of this node.
    pub(crate) fn forward<K: Data, V: Data>(&mut self, record: Record<K, V>) {
        if let Some((last, others)) = self.children.split_last() {
            for child in others {
                self.forwarded.push((*child, Box::new(record.clone())));
            }
            self.forwarded.push((*last, Box::new(record)));
        }
    }

    /// Sends `record` to this node's child number `child` (in the order the children were
    /// added): how `split` routes each record to one branch.
    pub(crate) fn forward_to<K: Data, V: Data>(&mut self, child: usize, record: Record<K, V>) {
        self.forwarded
            .push((self.children[child], Box::new(record)));
    }

    /// Counts a record, or one window of it, dropped because it came after its window closed.
    pub(crate) fn record_late_drop(&mut self) {
        self.state.metrics.late_records_dropped += 1;
    }

    /// Queues a record for an output topic.
    pub(crate) fn produce(&mut self, record: ProducedRecord) {
        self.state.output.push(record);
    }

    /// How many partitions `topic` (a resolved name) has.
    pub(crate) fn partition_count(&self, topic: &str) -> u32 {
        (self.state.partition_count)(topic)
    }

    /// The application id internal topic names are prefixed with.
    pub(crate) fn application_id(&self) -> &str {
        &self.state.application_id
    }
}

/// A processing step the application writes, for what the DSL's operators do not cover: it
/// receives records of `K`, `V`, forwards any number of `KeyOut`, `ValueOut` records, may keep
/// state in the stores it was connected to, and may schedule punctuations.
pub trait Processor<K, V>: Send + 'static {
    /// The key type this processor forwards.
    type KeyOut: Data;
    /// The value type this processor forwards.
    type ValueOut: Data;

    /// Called once when the task starts, before any record: the place to schedule punctuations.
    fn init(&mut self, _context: &mut TypedContext<'_, '_, Self::KeyOut, Self::ValueOut>) {}

    /// Processes one record.
    fn process(
        &mut self,
        record: Record<K, V>,
        context: &mut TypedContext<'_, '_, Self::KeyOut, Self::ValueOut>,
    ) -> Result<(), StreamsError>;

    /// Called when a schedule of this processor is due, with the time that made it due.
    fn punctuate(
        &mut self,
        _schedule: ScheduleId,
        _timestamp_ms: i64,
        _context: &mut TypedContext<'_, '_, Self::KeyOut, Self::ValueOut>,
    ) {
    }
}

/// A [`ProcessorContext`] that forwards only the processor's declared output types.
pub struct TypedContext<'c, 'a, K, V> {
    context: &'c mut ProcessorContext<'a>,
    types: PhantomData<fn(K, V)>,
}

impl<K: Data, V: Data> TypedContext<'_, '_, K, V> {
    /// Sends `record` to every child of this processor.
    pub fn forward(&mut self, record: Record<K, V>) {
        self.context.forward(record);
    }
}

impl<'a, K, V> Deref for TypedContext<'_, 'a, K, V> {
    type Target = ProcessorContext<'a>;
    fn deref(&self) -> &Self::Target {
        self.context
    }
}

impl<K, V> DerefMut for TypedContext<'_, '_, K, V> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        self.context
    }
}

/// Runs an application's [`Processor`] as a node.
pub(crate) struct ApplicationProcessor<P, K, V> {
    pub(crate) processor: P,
    pub(crate) types: PhantomData<fn(K, V)>,
}

impl<P, K, V> NodeProcessor for ApplicationProcessor<P, K, V>
where
    P: Processor<K, V>,
    K: Data,
    V: Data,
{
    fn init(&mut self, context: &mut ProcessorContext<'_>) {
        self.processor.init(&mut TypedContext {
            context,
            types: PhantomData,
        });
    }

    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        self.processor.process(
            downcast_record::<K, V>(record),
            &mut TypedContext {
                context,
                types: PhantomData,
            },
        )
    }

    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        timestamp_ms: i64,
        context: &mut ProcessorContext<'_>,
    ) {
        self.processor.punctuate(
            schedule,
            timestamp_ms,
            &mut TypedContext {
                context,
                types: PhantomData,
            },
        );
    }
}

/// A node whose processing is one function of the record and the context, shared by all tasks:
/// every stateless operator of the DSL.
pub(crate) struct FunctionNode<K, V> {
    pub(crate) function: StatelessFunction<K, V>,
}

pub(crate) type StatelessFunction<K, V> =
    std::sync::Arc<dyn Fn(Record<K, V>, &mut ProcessorContext<'_>) + Send + Sync>;

impl<K: Data, V: Data> NodeProcessor for FunctionNode<K, V> {
    fn process(
        &mut self,
        record: ErasedRecord,
        context: &mut ProcessorContext<'_>,
    ) -> Result<(), StreamsError> {
        (self.function)(downcast_record::<K, V>(record), context);
        Ok(())
    }
}
