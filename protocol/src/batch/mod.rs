//! Record batches: the unit producers build, brokers store and consumers read, identical on the
//! wire and on disk.

pub mod header;

pub use header::{BatchHeader, PayloadFormat, BATCH_HEADER_BYTES, BATCH_MAGIC};
