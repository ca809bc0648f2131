//! Stream processing on Spate, in the spirit of Kafka Streams: build a [`Topology`] once with
//! the typed DSL ([`StreamsBuilder`], [`KStream`], [`KTable`], groupings, windows, `suppress`),
//! then run it in tasks, one per input partition; test it with [`TopologyTestDriver`], no broker
//! needed.
//!
//! # Quick start
//!
//! ```
//! use spate_streams::{Consumed, DriverConfig, Grouped, Materialized, Produced, StreamsBuilder};
//! use spate_streams::{DefaultSerde, TopologyTestDriver};
//!
//! let builder = StreamsBuilder::new();
//! builder
//!     .stream::<Option<String>, String>("lines", Consumed::new())
//!     .flat_map_values(|line: String| line.split(' ').map(String::from).collect::<Vec<_>>())
//!     .group_by(|_, word| word.clone(), Grouped::new())
//!     .count(Materialized::as_store("counts"))
//!     .to_stream()
//!     .to("word-counts", Produced::new());
//!
//! let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
//! let (key_serde, value_serde) = (Option::<String>::default_serde(), String::default_serde());
//! let lines = driver.input_topic("lines", key_serde, value_serde);
//! driver.pipe(&lines, &None, &"to be or not to be".to_string(), 1_000)?;
//! let counts: Vec<(String, u64)> = driver.key_value_store("counts")?;
//! assert_eq!(counts[0], ("be".to_string(), 2));
//! # Ok::<(), spate_streams::StreamsError>(())
//! ```
//!
//! Over a broker, [`StreamsRuntime`] runs the same topology (`examples/word_count.rs`).
//!
//! # Design
//!
//! - **Typed DSL, erased graph.** The DSL's handles are typed (`KStream<K, V>`), so operators
//!   only connect where types match; the [`Topology`] they build is a graph of processor
//!   factories passing records as `Box<dyn Any>`. A node downcasts what it receives, and a
//!   mismatch, which the DSL makes impossible, panics as the broken invariant it is.
//! - **Built once, run by many tasks.** The topology holds factories and serdes (`Arc`s), never
//!   state; a [`Task`] instantiates its own processors and stores from it. Tasks share nothing,
//!   so they can run on any threads.
//! - **Processing is synchronous, on the caller's thread.** A task is a plain value: the caller
//!   hands it one record at a time ([`Task::process`]) and takes the records it produced
//!   ([`Task::take_output`]). Nothing in this crate awaits. Over a broker, the application's
//!   threads (one per core is fine, each owning some tasks) poll a `spate-client` consumer,
//!   process, and hand the output to a producer; the client's own I/O thread only moves bytes
//!   (fetch prefetching, produce batching and delivery) and never runs application code. The
//!   test driver is just another caller.
//! - **Depth first.** A record runs through a node, then each record the node forwarded runs
//!   all the way down, before the next input record starts.
//! - **Bytes at the edges.** Records are typed inside a task; [`serdes`] turn keys and values
//!   into bytes only at sources, sinks, repartition topics and stores. Stores hold bytes (see
//!   [`store`]) so that a changelog, a restore or an embedded engine changes nothing above them.
//! - **Every table is materialized.** Each [`KTable`] has its own key-value store: upserts,
//!   tombstone deletes and joins all read the same way. Below a table, values are `Option<V>`,
//!   `None` a tombstone.
//! - **Time.** Event time comes from the record timestamp or a [`Consumed`] extractor (a
//!   negative time skips the record). A task's stream time is the largest event time it has
//!   processed; windowed operators and `suppress` keep their own observed stream time, as Kafka
//!   Streams' do, and close a window when that time reaches its end plus the grace period.
//!   Records for closed windows are dropped and counted ([`TaskMetrics`]). Punctuations follow
//!   stream time or the wall clock ([`PunctuationType`]).
//! - **Repartitioning.** An operator that may change the key (`map`, `select_key`, `flat_map`,
//!   `process`) marks the stream; a grouping after it first writes to an internal repartition
//!   topic (`<application id>-<name>-repartition`) and reads it back, so that all records of a
//!   key meet in one task. The test driver feeds such records straight back in.
//!
//! # What exists
//!
//! Sources from a topic or from every topic matching a regular expression; stateless operators
//! (`filter`, `map`, `map_values`, `select_key`, `flat_map`, `flat_map_values`, `peek`, `split`,
//! `merge`, `process`, `to` with a partitioner), tables from topics with upsert and tombstone
//! semantics (`filter`, `map_values`, `to_stream`, and `group_by` into `count`, `reduce`,
//! `aggregate` with adders and subtractors), `group_by_key` / `group_by` with `count`, `reduce`,
//! `aggregate`, tumbling, hopping, sliding and session windows with grace,
//! `suppress_until_window_closes`, joins (stream-table inner and left, table-table inner, left and
//! outer, foreign-key inner and left, stream-stream inner, left and outer within a time
//! difference), punctuation, in-memory key-value, window and session stores behind traits,
//! persistent key-value and window stores on redb with a locked, checkpointed task directory, the
//! serdes (bytes, UTF-8, JSON, fixed-width native, nullable, windowed), the test driver, and
//! [`StreamsRuntime`]: at least once over `spate-client` (a consumer group named by the application
//! id, one task per partition, co-partitioning checked and repartition topics created at start,
//! offsets committed after the output's deliveries are acknowledged), with every store backed by
//! a compacted changelog topic (`<application id>-<store>-changelog`) that a task's stores are
//! restored from before it processes on a new instance ([`StreamsRuntime::restore_progress`]),
//! and exactly-once ([`ProcessingGuarantee::ExactlyOnce`], Kafka Streams' `exactly_once_v2`:
//! each poll's output, changelog writes and input offsets in one transaction of the instance's
//! transactional producer), and standby replicas (`StreamsConfig::num_standby_replicas`).
//!
//! # Persistent stores: why redb
//!
//! [`persistent_store`] keeps key-value and window stores in `redb` (a B-tree with
//! copy-on-write pages, pure Rust, one file per store, stable file format), each in
//! `<state_dir>/<application id>/<task>/<store>/`, a directory [`state_directory`] locks,
//! checkpoints and wipes. Writes reach redb at the task's commit, in one durable transaction
//! per store; the checkpoint (changelog offsets the stores reflect) is written after them.
//! `fjall` (an LSM tree) was the other candidate; `benches/engines.rs` measured both on a state
//! store's pattern, 10,000 keys of 16 bytes (`cargo bench -p spate-streams --bench engines`,
//! 2026-12-04, on the shared 2-core development machine at a load average of about 8, so the
//! figures are rough; medians): a commit of 1,000 puts and 100 deletes made durable, redb
//! 13.3 ms, fjall 17.2 ms; a point get, redb 3.1 µs, fjall 6.1 µs; a range scan of 10 of a
//! key's 50 windows, redb 6.9 µs, fjall 9.9 µs. redb was ahead on every one, and its single
//! file with no background compaction threads suits many small per-task stores; fjall's
//! strength, sustained write throughput larger than memory, matters less while the stores keep
//! their image in memory (the traits lend values by reference).
//!
//! # Not there yet (deliberately)
//!
//! - Tasks opening their stores on the engine: the persistent stores and the task directory
//!   exist (above), but the runtime and the driver still instantiate in-memory stores (with
//!   changelogs), so a task that moves or restarts restores its stores' whole changelogs,
//!   synchronously, before it processes; the checkpoint is to be the restore's start.
//! - Standby placement by the group's assignor (standbys follow partition numbers, see
//!   [`runtime`]).
//! - Fencing without a successor: under exactly-once, an instance that dies and is not
//!   replaced by one with the same `instance_id` leaves its open transaction to the broker's
//!   transaction timeout, and read_committed consumers wait until then.
//! - Interactive queries (reading a store from the application, finding the instance of a key).
//! - Pattern sources that pick up topics created after start.
//! - The differential test and the benchmark against Kafka Streams (`benches/task.rs` measures
//!   this crate alone).

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod changelog;
pub mod driver;
pub mod dsl;
pub mod error;
pub(crate) mod ops;
pub mod persistent_store;
pub mod processor;
pub mod record;
pub mod runtime;
pub mod serdes;
pub mod state_directory;
pub mod store;
pub mod task;
pub mod topology;
pub mod windows;

pub use changelog::{changelog_topic, ChangelogRecord};
pub use driver::{DriverConfig, TestInputTopic, TestOutputTopic, TestRecord, TopologyTestDriver};
pub use dsl::{Consumed, Grouped, Materialized, Produced, StreamJoined, StreamsBuilder};
pub use dsl::{KGroupedStream, KGroupedTable, KStream, KTable};
pub use dsl::{SessionWindowedKStream, TimeWindowedKStream};
pub use error::StreamsError;
pub use processor::{Processor, ProcessorContext, PunctuationType, ScheduleId, TypedContext};
pub use record::{Record, Window, Windowed};
pub use runtime::{ProcessingGuarantee, RestoreProgress, StreamsConfig, StreamsRuntime};
pub use serdes::{DefaultSerde, Serde, SerdeError, SharedSerde};
pub use task::{DeserializationPolicy, ProducedRecord, Task, TaskMetrics};
pub use topology::{InputRecord, TopicName, Topology};
pub use windows::{JoinWindows, SessionWindows, SlidingWindows, TimeWindows};
