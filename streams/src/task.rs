//! A [`Task`]: one instance of a topology for one partition number (of every source topic,
//! which must be co-partitioned), with its own processors, stores, stream time and metrics.
//! It is synchronous and owns no thread: the caller hands it records, one at a time, and takes
//! the records it produced. The runtime over a broker and the test driver are both such callers.
//!
//! Processing is depth first: a record goes through a node, then each record the node forwarded
//! goes all the way down before the next one, and the next input record starts only after all
//! of it is done.

use std::collections::HashMap;
use std::sync::Arc;

use crate::changelog::{self, ChangeSink, ChangelogRecord, MalformedChangelogKey};
use crate::error::StreamsError;
use crate::processor::ScheduleId;
use crate::processor::{ErasedRecord, NodeId, NodeProcessor, ProcessorContext, PunctuationType};
use crate::store::StateStore;
use crate::topology::{InputRecord, Topology};

/// A record a task produced for a topic (already serialized and partitioned).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducedRecord {
    /// The topic's full name.
    pub topic: String,
    /// The partition chosen by the sink's partitioner.
    pub partition: u32,
    /// The key's bytes, `None` for a null key.
    pub key: Option<Vec<u8>>,
    /// The value's bytes, `None` for a null value.
    pub value: Option<Vec<u8>>,
    /// The record's event time.
    pub timestamp_ms: i64,
}

/// What a task counted since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskMetrics {
    /// Input records processed.
    pub records_processed: u64,
    /// Input records skipped: undeserializable under the skip policy, or a negative event time.
    pub records_skipped: u64,
    /// Windows a late record could no longer update (a record late for two hopping windows
    /// counts twice, as Kafka Streams' dropped-records sensor), and stream-stream join records
    /// that came after their join window closed.
    pub late_records_dropped: u64,
    /// Punctuations run.
    pub punctuations: u64,
}

/// What to do with a record whose key or value does not deserialize.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeserializationPolicy {
    /// Stop processing with [`StreamsError::Deserialization`] (Kafka Streams' default,
    /// `LogAndFailExceptionHandler`).
    #[default]
    Fail,
    /// Skip the record and count it in [`TaskMetrics::records_skipped`].
    Skip,
}

/// How a task finds a topic's partition count (sinks partition by it).
pub type PartitionCounts = Arc<dyn Fn(&str) -> u32 + Send + Sync>;

/// A punctuation schedule of one node.
pub(crate) struct Schedule {
    pub(crate) node: NodeId,
    pub(crate) id: ScheduleId,
    pub(crate) kind: PunctuationType,
    pub(crate) interval_ms: i64,
    /// When it is next due; `None` for a stream-time schedule made before the first record.
    pub(crate) next_ms: Option<i64>,
}

/// Everything of a task that its processors reach through their context.
pub(crate) struct TaskState {
    pub(crate) application_id: String,
    pub(crate) partition: u32,
    pub(crate) stores: HashMap<String, StateStore>,
    pub(crate) stream_time_ms: Option<i64>,
    pub(crate) wall_clock_ms: i64,
    pub(crate) metrics: TaskMetrics,
    pub(crate) output: Vec<ProducedRecord>,
    pub(crate) schedules: Vec<Schedule>,
    pub(crate) partition_count: PartitionCounts,
}

/// One running instance of a topology for one partition.
pub struct Task {
    topology: Arc<Topology>,
    /// Each source's position in the topology, by the full name of the topic it reads (topics
    /// of pattern sources added as they first appear).
    sources_by_topic: HashMap<String, usize>,
    processors: Vec<Box<dyn NodeProcessor>>,
    state: TaskState,
    deserialization_policy: DeserializationPolicy,
    /// Where the stores' writes collect once [`Task::log_changes`] was called.
    changes: Option<ChangeSink>,
}

impl Task {
    /// A task of `topology` for `partition`, its processors initialized at `wall_clock_ms`.
    pub fn new(
        topology: Arc<Topology>,
        application_id: &str,
        partition: u32,
        wall_clock_ms: i64,
        partition_count: PartitionCounts,
        deserialization_policy: DeserializationPolicy,
    ) -> Self {
        let stores = topology
            .stores
            .iter()
            .map(|spec| (spec.name.clone(), spec.instantiate()))
            .collect();
        let processors = topology.nodes.iter().map(|node| (node.factory)()).collect();
        let sources_by_topic = topology
            .sources
            .iter()
            .enumerate()
            .filter(|(_, source)| source.pattern.is_none())
            .map(|(index, source)| (source.topic.resolve(application_id), index))
            .collect();
        let mut task = Task {
            topology,
            sources_by_topic,
            processors,
            state: TaskState {
                application_id: application_id.to_string(),
                partition,
                stores,
                stream_time_ms: None,
                wall_clock_ms,
                metrics: TaskMetrics::default(),
                output: Vec::new(),
                schedules: Vec::new(),
                partition_count,
            },
            deserialization_policy,
            changes: None,
        };
        for node in 0..task.processors.len() {
            let topology = Arc::clone(&task.topology);
            let mut forwarded = Vec::new();
            let mut context = ProcessorContext {
                state: &mut task.state,
                node,
                children: &topology.nodes[node].children,
                forwarded: &mut forwarded,
            };
            task.processors[node].init(&mut context);
            assert!(
                forwarded.is_empty(),
                "a processor forwards nothing from init"
            );
        }
        task
    }

    /// Processes one record read from `topic` (its full name). Stream-time punctuations that
    /// the record's time made due run after it.
    pub fn process(&mut self, topic: &str, record: &InputRecord) -> Result<(), StreamsError> {
        let topology = Arc::clone(&self.topology);
        let index = match self.sources_by_topic.get(topic) {
            Some(index) => *index,
            None => {
                // A topic a pattern source reads: found once, then remembered by name.
                let index = topology
                    .sources
                    .iter()
                    .position(|source| source.reads(topic, &self.state.application_id))
                    .ok_or_else(|| StreamsError::UnknownTopic {
                        topic: topic.to_string(),
                    })?;
                self.sources_by_topic.insert(topic.to_string(), index);
                index
            }
        };
        let source = &topology.sources[index];
        let (typed, timestamp_ms) = match (source.decode)(record) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                self.state.metrics.records_skipped += 1;
                return Ok(());
            }
            Err((part, source)) => match self.deserialization_policy {
                DeserializationPolicy::Skip => {
                    self.state.metrics.records_skipped += 1;
                    return Ok(());
                }
                DeserializationPolicy::Fail => {
                    return Err(StreamsError::Deserialization {
                        topic: topic.to_string(),
                        partition: self.state.partition,
                        offset: record.offset,
                        part,
                        source,
                    })
                }
            },
        };
        let stream_time_ms = self
            .state
            .stream_time_ms
            .map_or(timestamp_ms, |time| time.max(timestamp_ms));
        self.state.stream_time_ms = Some(stream_time_ms);
        self.state.metrics.records_processed += 1;
        self.deliver(source.node, typed)?;
        self.punctuate(PunctuationType::StreamTime, stream_time_ms)
    }

    /// Moves the task's wall clock to `now_ms` and runs the wall-clock punctuations due.
    pub fn advance_wall_clock(&mut self, now_ms: i64) -> Result<(), StreamsError> {
        assert!(
            now_ms >= self.state.wall_clock_ms,
            "the wall clock does not go back"
        );
        self.state.wall_clock_ms = now_ms;
        self.punctuate(PunctuationType::WallClockTime, now_ms)
    }

    /// The records produced since the last call, in the order they were produced.
    pub fn take_output(&mut self) -> Vec<ProducedRecord> {
        std::mem::take(&mut self.state.output)
    }

    /// Applies one record of `store`'s changelog to the store, as restoring does. Only before
    /// [`Task::log_changes`]: a restored write is not logged again.
    pub(crate) fn restore(
        &mut self,
        store: &str,
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<(), MalformedChangelogKey> {
        assert!(
            self.changes.is_none(),
            "stores are restored before their writes are logged"
        );
        let store = self
            .state
            .stores
            .get_mut(store)
            .expect("the runtime restores only the topology's stores");
        changelog::restore(store, key, value)
    }

    /// From now on, every store write is also collected for the store's changelog
    /// ([`Task::take_changelog`]).
    pub(crate) fn log_changes(&mut self) {
        assert!(self.changes.is_none(), "changes are logged once");
        let sink = ChangeSink::default();
        self.state.stores = std::mem::take(&mut self.state.stores)
            .into_iter()
            .map(|(name, store)| {
                let store = changelog::logged(&name, store, &sink);
                (name, store)
            })
            .collect();
        self.changes = Some(sink);
    }

    /// The store writes since the last call, in the order they were made (none unless the
    /// runtime turned logging on once the stores were restored; the test driver does not).
    pub fn take_changelog(&mut self) -> Vec<ChangelogRecord> {
        self.changes
            .as_ref()
            .map(changelog::drain)
            .unwrap_or_default()
    }

    /// The task's stream time, `None` before its first record.
    pub fn stream_time_ms(&self) -> Option<i64> {
        self.state.stream_time_ms
    }

    /// The partition the task processes.
    pub fn partition(&self) -> u32 {
        self.state.partition
    }

    /// What the task counted.
    pub fn metrics(&self) -> &TaskMetrics {
        &self.state.metrics
    }

    pub(crate) fn topology(&self) -> &Topology {
        &self.topology
    }

    pub(crate) fn store(&self, name: &str) -> Option<&StateStore> {
        self.state.stores.get(name)
    }

    /// Runs `record` through `node` and everything it forwards, depth first.
    fn deliver(&mut self, node: NodeId, record: ErasedRecord) -> Result<(), StreamsError> {
        let topology = Arc::clone(&self.topology);
        let mut forwarded = Vec::new();
        let mut context = ProcessorContext {
            state: &mut self.state,
            node,
            children: &topology.nodes[node].children,
            forwarded: &mut forwarded,
        };
        self.processors[node].process(record, &mut context)?;
        for (child, record) in forwarded {
            self.deliver(child, record)?;
        }
        Ok(())
    }

    /// Runs each `kind` schedule that `now_ms` made due, once, in the order they were made.
    fn punctuate(&mut self, kind: PunctuationType, now_ms: i64) -> Result<(), StreamsError> {
        for index in 0..self.state.schedules.len() {
            let schedule = &mut self.state.schedules[index];
            if schedule.kind != kind {
                continue;
            }
            let next_ms = *schedule
                .next_ms
                .get_or_insert(now_ms + schedule.interval_ms);
            if now_ms < next_ms {
                continue;
            }
            // Kafka's PunctuationSchedule::next: one call, then the next interval after now
            // if this step passed several.
            schedule.next_ms = Some(if now_ms >= next_ms + schedule.interval_ms {
                now_ms + schedule.interval_ms
            } else {
                next_ms + schedule.interval_ms
            });
            let (node, id) = (schedule.node, schedule.id);
            self.state.metrics.punctuations += 1;
            let topology = Arc::clone(&self.topology);
            let mut forwarded = Vec::new();
            let mut context = ProcessorContext {
                state: &mut self.state,
                node,
                children: &topology.nodes[node].children,
                forwarded: &mut forwarded,
            };
            self.processors[node].punctuate(id, now_ms, &mut context);
            for (child, record) in forwarded {
                self.deliver(child, record)?;
            }
        }
        Ok(())
    }
}

// The design's promise, checked at compile time: one topology shared by tasks on any threads,
// each task (and runtime) movable between threads between calls.
const _: () = {
    const fn shared_across_threads<T: Send + Sync>() {}
    const fn movable_between_threads<T: Send>() {}
    shared_across_threads::<Topology>();
    movable_between_threads::<Task>();
    movable_between_threads::<crate::runtime::StreamsRuntime>();
};
