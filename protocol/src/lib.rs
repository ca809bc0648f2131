//! Spate's sans-IO protocol crate: the bytes that travel between clients and brokers and that
//! the broker stores on disk.
//!
//! Everything here is a pure function of bytes: no async runtime, no sockets, no clock reads
//! (callers pass `now` in). Decoders take `&[u8]`, never panic, and check every length against a
//! limit in [`constants`] before allocating.

pub mod batch;
pub mod constants;
pub mod error;

pub use error::BatchError;
