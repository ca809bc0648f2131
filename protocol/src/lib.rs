//! Spate's sans-IO protocol crate: the bytes that travel between clients and brokers and that
//! the broker stores on disk.
//!
//! - [`batch`]: record batches (header, rkyv payload, builder, validating views).
//! - [`frame`]: length-prefixed request and response frames, decoded incrementally.
//! - [`api`]: the request and response messages of each API, and version negotiation.
//! - [`codec`]: the primitive encodings those share.
//! - [`error`]: typed errors and the stable wire error codes; [`constants`]: every limit.
//!
//! Everything here is a pure function of bytes: no async runtime, no sockets, no clock reads
//! (callers pass `now` in). Decoders never panic and check every length against a limit in
//! [`constants`] before allocating.
//!
//! No `unsafe` code: rkyv archives are reached only through its validating `access`.

#![forbid(unsafe_code)]

pub mod api;
pub mod batch;
pub mod codec;
pub mod constants;
pub mod core_list;
pub mod error;
pub mod frame;

pub use error::{BatchError, BuildError, ErrorCode, WireError};

/// A broker's id in a cluster (Kafka's broker id, the same number on both protocols). A single
/// broker is node 0 unless `--node-id` says otherwise.
pub type NodeId = i32;
