//! Shared helpers for the end-to-end tests in `tests/tests/`: start the real broker binary
//! (`broker_process`) and talk to it with a small blocking client over `std::net::TcpStream`
//! built on the protocol crate's codecs (`client`).
//!
//! This client exists until the native client library (`spate-client`) lands; it favours being
//! obviously correct over being fast, and it can also send raw bytes to test bad input.

pub mod broker_process;
pub mod client;

pub use broker_process::{Broker, BrokerOptions};
pub use client::{build_batch, TestClient, TestRecord};
