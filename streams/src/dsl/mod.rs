//! The typed DSL that builds a [`crate::Topology`]: [`StreamsBuilder`], [`KStream`], [`KTable`],
//! grouped and windowed streams, and their option types. Handles are cheap, single-threaded
//! (they share the graph under construction) and gone once the topology is built.

pub(crate) mod builder;
pub(crate) mod grouped;
pub(crate) mod kstream;
pub(crate) mod ktable;

pub use builder::{Consumed, Grouped, Materialized, Partitioner, Produced, StreamsBuilder};
pub use builder::{StreamJoined, TimestampExtractor};
pub use grouped::{KGroupedStream, KGroupedTable, SessionWindowedKStream, TimeWindowedKStream};
pub use kstream::{KStream, Predicate};
pub use ktable::KTable;
