//! Typed errors of the protocol crate, and the stable numeric codes that go on the wire.
//!
//! `BatchError` says why a batch's bytes are not a valid batch. `ErrorCode` is the wire-level
//! code space shared by every API; its numbers never change once released.

/// Why a sequence of bytes is not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needed {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unknown batch magic {magic}")]
    UnknownMagic { magic: u8 },
    #[error("batch length {batch_length} is smaller than the header")]
    LengthTooSmall { batch_length: u32 },
    #[error("batch of {batch_length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { batch_length: usize, limit: usize },
    #[error("unknown payload format {payload_format}")]
    UnknownPayloadFormat { payload_format: u8 },
    #[error("unknown attribute bits {attributes:#06x}")]
    UnknownAttributes { attributes: u16 },
    #[error("bad counts: offset_count {offset_count}, record_count {record_count}")]
    BadCounts { offset_count: u32, record_count: u32 },
    #[error("max timestamp {max_timestamp} is before first timestamp {first_timestamp}")]
    BadTimestamps { first_timestamp: i64, max_timestamp: i64 },
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    #[error("CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record payload is invalid: {reason}")]
    InvalidPayload { reason: String },
}
