//! [`TopologyTestDriver`]: runs a topology with no broker, as Kafka Streams' driver of the same
//! name. One task (partition 0) processes everything; records piped into input topics are
//! processed at once, records written to repartition topics are fed straight back in (in the
//! order they were written), and records written to output topics wait to be read. The wall
//! clock moves only when the test says so.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::error::StreamsError;
use crate::record::Windowed;
use crate::serdes::{SerdeError, SharedSerde};
use crate::store::StateStore;
use crate::task::{DeserializationPolicy, ProducedRecord, Task, TaskMetrics};
use crate::topology::{InputRecord, TopicName, Topology};

/// How the driver runs the topology.
#[derive(Debug, Clone)]
pub struct DriverConfig {
    /// Prefixes internal topic names.
    pub application_id: String,
    /// The wall clock at start, milliseconds since the Unix epoch.
    pub initial_wall_clock_ms: i64,
    /// What to do with undeserializable input.
    pub deserialization_policy: DeserializationPolicy,
    /// Partition counts of output topics, for the sinks' partitioners (unnamed topics: 1).
    pub partition_counts: HashMap<String, u32>,
}

impl Default for DriverConfig {
    fn default() -> Self {
        DriverConfig {
            application_id: "test-application".to_string(),
            initial_wall_clock_ms: 0,
            deserialization_policy: DeserializationPolicy::Fail,
            partition_counts: HashMap::new(),
        }
    }
}

/// A topic to pipe typed records into.
pub struct TestInputTopic<K, V> {
    name: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

/// A topic to read typed records from.
pub struct TestOutputTopic<K, V> {
    name: String,
    key_serde: SharedSerde<K>,
    value_serde: SharedSerde<V>,
}

/// A record read from an output topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord<K, V> {
    /// The key.
    pub key: K,
    /// The value.
    pub value: V,
    /// Its event time.
    pub timestamp_ms: i64,
    /// The partition the sink's partitioner chose.
    pub partition: u32,
}

/// Runs a topology in the test's thread, with no broker.
pub struct TopologyTestDriver {
    task: Task,
    application_id: String,
    wall_clock_ms: i64,
    next_offsets: HashMap<String, i64>,
    outputs: HashMap<String, VecDeque<ProducedRecord>>,
}

impl TopologyTestDriver {
    /// A driver running `topology` as `config` says.
    pub fn new(topology: Topology, config: DriverConfig) -> Self {
        let counts = config.partition_counts;
        let task = Task::new(
            Arc::new(topology),
            &config.application_id,
            0,
            config.initial_wall_clock_ms,
            Arc::new(move |topic: &str| counts.get(topic).copied().unwrap_or(1)),
            config.deserialization_policy,
        );
        TopologyTestDriver {
            task,
            application_id: config.application_id,
            wall_clock_ms: config.initial_wall_clock_ms,
            next_offsets: HashMap::new(),
            outputs: HashMap::new(),
        }
    }

    /// A handle to pipe records into `name` with these serdes.
    pub fn input_topic<K, V>(
        &self,
        name: &str,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> TestInputTopic<K, V> {
        TestInputTopic {
            name: name.to_string(),
            key_serde,
            value_serde,
        }
    }

    /// A handle to read records of `name` with these serdes.
    pub fn output_topic<K, V>(
        &self,
        name: &str,
        key_serde: SharedSerde<K>,
        value_serde: SharedSerde<V>,
    ) -> TestOutputTopic<K, V> {
        TestOutputTopic {
            name: name.to_string(),
            key_serde,
            value_serde,
        }
    }

    /// Pipes one record into `topic` and processes it, with everything it causes.
    pub fn pipe<K: 'static, V: 'static>(
        &mut self,
        topic: &TestInputTopic<K, V>,
        key: &K,
        value: &V,
        timestamp_ms: i64,
    ) -> Result<(), StreamsError> {
        let key = topic.key_serde.serialize_nullable(key);
        let value = topic.value_serde.serialize_nullable(value);
        self.pipe_bytes(&topic.name, key, value, timestamp_ms)
    }

    /// Pipes one record, as bytes, into `topic` (its full name) and processes it.
    pub fn pipe_bytes(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
    ) -> Result<(), StreamsError> {
        let record = self.input_record(topic, key, value, timestamp_ms);
        self.task.process(topic, &record)?;
        self.route_output()
    }

    /// Moves the wall clock forward by `duration_ms` and runs the wall-clock punctuations due.
    pub fn advance_wall_clock(&mut self, duration_ms: i64) -> Result<(), StreamsError> {
        assert!(duration_ms >= 0, "the wall clock does not go back");
        self.wall_clock_ms += duration_ms;
        self.task.advance_wall_clock(self.wall_clock_ms)?;
        self.route_output()
    }

    /// Reads (and removes) every record written to `topic` so far.
    pub fn read_output<K: 'static, V: 'static>(
        &mut self,
        topic: &TestOutputTopic<K, V>,
    ) -> Result<Vec<TestRecord<K, V>>, SerdeError> {
        let records = self.outputs.remove(&topic.name).unwrap_or_default();
        records
            .into_iter()
            .map(|record| {
                Ok(TestRecord {
                    key: topic
                        .key_serde
                        .deserialize_nullable(record.key.as_deref())?,
                    value: topic
                        .value_serde
                        .deserialize_nullable(record.value.as_deref())?,
                    timestamp_ms: record.timestamp_ms,
                    partition: record.partition,
                })
            })
            .collect()
    }

    /// Every entry of key-value store `name`, in key byte order.
    pub fn key_value_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<Vec<(K, V)>, StreamsError> {
        let (key_serde, value_serde) = self.serdes::<K, V>(name, "key-value")?;
        let Some(StateStore::KeyValue(store)) = self.task.store(name) else {
            return Err(unknown(name, "key-value"));
        };
        Ok(store
            .all()
            .into_iter()
            .map(|(key, value)| (read(&key_serde, &key), read(&value_serde, &value)))
            .collect())
    }

    /// Every entry of window store `name` as `(key, window start, value)`, in start order.
    pub fn window_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<Vec<(K, i64, V)>, StreamsError> {
        let (key_serde, value_serde) = self.serdes::<K, V>(name, "window")?;
        let Some(StateStore::Window(store)) = self.task.store(name) else {
            return Err(unknown(name, "window"));
        };
        Ok(store
            .all()
            .into_iter()
            .map(|(key, start_ms, value)| {
                (read(&key_serde, &key), start_ms, read(&value_serde, &value))
            })
            .collect())
    }

    /// Every session of session store `name`.
    pub fn session_store<K: 'static, V: 'static>(
        &self,
        name: &str,
    ) -> Result<Vec<(Windowed<K>, V)>, StreamsError> {
        let (key_serde, value_serde) = self.serdes::<K, V>(name, "session")?;
        let Some(StateStore::Session(store)) = self.task.store(name) else {
            return Err(unknown(name, "session"));
        };
        Ok(store
            .all()
            .into_iter()
            .map(|(key, start_ms, end_ms, value)| {
                let window = crate::record::Window::new(start_ms, end_ms);
                (
                    Windowed::new(read(&key_serde, &key), window),
                    read(&value_serde, &value),
                )
            })
            .collect())
    }

    /// What the task counted.
    pub fn metrics(&self) -> &TaskMetrics {
        self.task.metrics()
    }

    /// The task's stream time.
    pub fn stream_time_ms(&self) -> Option<i64> {
        self.task.stream_time_ms()
    }

    fn serdes<K: 'static, V: 'static>(
        &self,
        name: &str,
        kind: &'static str,
    ) -> Result<(SharedSerde<K>, SharedSerde<V>), StreamsError> {
        let spec = self
            .task
            .topology()
            .store_spec(name)
            .ok_or_else(|| unknown(name, kind))?;
        let serdes = spec
            .serdes
            .downcast_ref::<(SharedSerde<K>, SharedSerde<V>)>()
            .unwrap_or_else(|| {
                panic!("store {name} is read with the key and value types it holds")
            });
        Ok(serdes.clone())
    }

    fn input_record(
        &mut self,
        topic: &str,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        timestamp_ms: i64,
    ) -> InputRecord {
        let offset = self.next_offsets.entry(topic.to_string()).or_insert(0);
        let record = InputRecord {
            key,
            value,
            timestamp_ms,
            offset: *offset,
        };
        *offset += 1;
        record
    }

    /// Feeds records written to the topology's own source topics (repartition topics) back in,
    /// and keeps the rest for `read_output`.
    fn route_output(&mut self) -> Result<(), StreamsError> {
        let internal: Vec<String> = self
            .task
            .topology()
            .source_topics()
            .into_iter()
            .filter(|topic| matches!(topic, TopicName::Internal(_)))
            .map(|topic| topic.resolve(&self.application_id))
            .collect();
        let mut pending: VecDeque<ProducedRecord> = self.task.take_output().into();
        while let Some(record) = pending.pop_front() {
            if internal.contains(&record.topic) {
                let input =
                    self.input_record(&record.topic, record.key, record.value, record.timestamp_ms);
                self.task.process(&record.topic, &input)?;
                pending.extend(self.task.take_output());
            } else {
                self.outputs
                    .entry(record.topic.clone())
                    .or_default()
                    .push_back(record);
            }
        }
        Ok(())
    }
}

fn unknown(name: &str, kind: &'static str) -> StreamsError {
    StreamsError::UnknownStore {
        name: name.to_string(),
        kind,
    }
}

fn read<T: 'static>(serde: &SharedSerde<T>, bytes: &[u8]) -> T {
    serde
        .deserialize(bytes)
        .expect("a store value reads back with the serde that wrote it")
}
