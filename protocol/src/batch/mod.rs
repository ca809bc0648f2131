//! Record batches: the unit producers build, brokers store and consumers read, identical on the
//! wire and on disk.
//!
//! `header` owns the fixed 64-byte header and CRC rule, `records` the rkyv payload layout
//! (payload format 1), `kafka` Kafka RecordBatch v2 as payload format 2, `builder` the producer
//! side, `view` validation and zero-copy reading, `record` the owned record type. Nothing here
//! does I/O.

pub mod builder;
pub mod header;
pub mod kafka;
pub mod record;
pub(crate) mod records;
pub mod retain;
pub mod view;

pub use builder::{BatchBuilder, BatchOptions, HeaderPair, NO_HEADERS};
pub use header::{BatchHeader, PayloadFormat, BATCH_HEADER_BYTES, BATCH_MAGIC};
pub use record::{Record, RecordHeader};
pub use view::{BatchIter, BatchView, RecordView, Records};
