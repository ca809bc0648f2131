//! Owned records, for users who keep records beyond the lifetime of the batch buffer.
//!
//! Reading borrows (`batch::view::RecordView`); this type is what a consumer hands to code that
//! outlives the fetch buffer, and what a producer may queue before building a batch. Key and
//! value are `Bytes`, so converting from a view over a `Bytes` buffer can share instead of copy.

use bytes::Bytes;

use crate::batch::builder::HeaderPair;

/// A record with its own bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    /// Absolute offset; 0 for a record that was never written to a partition.
    pub offset: u64,
    /// Milliseconds since the Unix epoch, as the producer (or broker) stamped it.
    pub timestamp: i64,
    pub key: Option<Bytes>,
    /// `None` is a tombstone.
    pub value: Option<Bytes>,
    pub headers: Vec<RecordHeader>,
}

/// One record header: keys are UTF-8 and may repeat; values are opaque bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RecordHeader {
    pub key: String,
    pub value: Bytes,
}

impl HeaderPair for RecordHeader {
    fn header_key(&self) -> &str {
        &self.key
    }
    fn header_value(&self) -> &[u8] {
        &self.value
    }
}
