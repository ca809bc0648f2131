//! Spate's Kafka wire protocol layer, without I/O: what the Kafka listener needs to read a
//! request and write an answer.
//!
//! The message codecs themselves come from the `kafka-protocol` crate (generated from Kafka
//! 4.1's JSON message schemas), re-exported here so that the broker names one version of it.
#![forbid(unsafe_code)]

pub use kafka_protocol;
