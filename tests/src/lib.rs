//! Shared helpers for the end-to-end tests in `tests/tests/`: start the real broker binary
//! (`broker_process`), talk to it with a small blocking client over `std::net::TcpStream`
//! built on the protocol crate's codecs (`client`), speak Kafka the same way with the
//! `kafka-protocol` codecs (`kafka_client`), cut connections on demand with a TCP
//! proxy (`proxy`), and run a cluster of brokers on loopback addresses with `kill -9`, pauses
//! and cut links (`cluster`).
//!
//! Tests of behaviour users see go through the native client library (`spate-client`); this
//! client stays for tests about the wire itself (bad and truncated frames, pipelining order,
//! acks=none producing no bytes, corrupt batches). It favours being obviously correct over being
//! fast, and it can send raw bytes.

pub mod broker_process;
pub mod client;
pub mod cluster;
pub mod java;
pub mod kafka_client;
pub mod proxy;
pub mod tls;

pub use broker_process::{Broker, BrokerOptions};
pub use client::{build_batch, TestClient, TestRecord};
pub use kafka_client::KafkaTestClient;
pub use proxy::CutProxy;
