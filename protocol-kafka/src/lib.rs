//! Spate's Kafka wire protocol layer, without I/O: what the Kafka listener needs to read a
//! request and write an answer.
//!
//! The message codecs themselves come from the `kafka-protocol` crate (generated from Kafka
//! 4.1's JSON message schemas), re-exported here so that the broker names one version of it.
//! Its decoders size vectors from counts on the wire, so nothing reaches them unchecked:
//! `precheck` walks a request by the same schemas first (see `precheck.rs`), and
//! `decode_request` runs both, header and body, for the listener.
#![forbid(unsafe_code)]

pub mod consumer_protocol;

pub use kafka_protocol;

mod decode;
mod precheck;
mod shape;
mod shapes;

pub use decode::{decode_request, DecodeError, Request};
pub use precheck::{
    api_keys, header_version, precheck, precheck_header, request_versions, PrecheckError, Problem,
};

pub mod frame;
pub mod versions;
