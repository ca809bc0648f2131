//! Native Rust client for Spate: a [`Producer`] that batches and delivers records, a
//! [`Consumer`] that reads them zero-copy, and [`Admin`] for topics. The `spate` command-line
//! tool (`src/bin/spate`) is built on it.
//!
//! # Runtime
//!
//! The client does its network I/O on a thread of its own (a private tokio current-thread
//! runtime the caller never sees). Operations hand back a [`Completion`]: a `Future` that any
//! executor can await (tokio, glommio, smol, ...), and that a plain thread can `wait()` on.
//! So the same client serves async services, thread-per-core programs and blocking tools.
//!
//! # Quick start
//!
//! ```no_run
//! use std::time::Duration;
//! use spate_client::{Client, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, StartAt};
//!
//! let client = Client::connect_to("127.0.0.1:9192")?;
//! client.admin().create_topic(NewTopic::new("greetings", 3)).wait()?;
//!
//! let producer = client.producer(ProducerConfig::default())?;
//! let delivery = producer.send_blocking(ProducerRecord::new("greetings", "hello").with_key("me"))?;
//! let written = delivery.wait()?;
//! println!("written to partition {} at offset {:?}", written.partition, written.offset);
//!
//! let mut consumer = client.consumer(ConsumerConfig::default())?;
//! consumer.assign("greetings", None, StartAt::Earliest).wait()?;
//! for record in &consumer.poll(Duration::from_secs(1))? {
//!     println!("{}", String::from_utf8_lossy(record.value().unwrap_or_default()));
//! }
//! # Ok::<(), spate_client::Error>(())
//! ```
//!
//! # Transactions
//!
//! A [`Producer`] made with a `transactional_id` writes in transactions (Kafka's semantics:
//! `init_transactions`, `begin_transaction`, `send_offsets_to_transaction`,
//! `commit_transaction`, `abort_transaction`; see the [`Producer`] documentation), and a
//! [`Consumer`] or [`group::GroupConsumer`] with
//! [`IsolationLevel::ReadCommitted`] reads only committed records.
//!
//! # Layout
//!
//! `client` (the entry point), `network` (connection, pipelining, reconnects, metadata),
//! `producer` (accumulator, sender, idempotence, partitioner, memory), `timer` (the linger's
//! timerfd), `consumer` (prefetcher, zero-copy
//! records), `group` (consumer groups: [`group::GroupConsumer`], assignors, group admin),
//! `admin`, `config` (every setting and default), `error`, `completion` (the
//! runtime-agnostic result type), `runtime` (the I/O thread). The wire format is
//! `spate-protocol`'s; this crate never depends on the broker.
//!
//! No `unsafe` code: descriptors reach the reactor through tokio's safe types (`timer`), and
//! record archives are read only after `spate-protocol` validated them.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod client;
pub mod completion;
pub mod config;
pub mod consumer;
pub mod error;
pub mod group;
pub(crate) mod network;
pub mod producer;
pub(crate) mod runtime;
pub(crate) mod timer;
pub mod tls;

pub use admin::{Admin, ClusterDescription, NewTopic, PartitionInfo, PartitionOffset};
pub use admin::{BrokerDescription, PartitionChange, Reassignment, ReassignmentTarget};
pub use admin::{TopicDescription, TopicLayout, TopicSummary, UserDescription};
pub use client::Client;
pub use completion::Completion;
pub use config::{BufferFullPolicy, ClientConfig, ConsumerConfig, KeylessPartitioning};
pub use config::{OffsetReset, Password, ProducerConfig, SaslMechanism};
pub use consumer::records::{ConsumerRecord, OwnedRecord, Polled, PolledRecords};
pub use consumer::{Consumer, StartAt, TopicPartition};
pub use error::{Error, Resource, Result};
pub use producer::partitioner::{murmur2, partition_for_key};
pub use producer::RecordMetadata;
pub use producer::{DeliveredBatch, Delivery, DeliveryHandler, Header, Producer, ProducerRecord};
pub use spate_protocol::api::{Acks, IsolationLevel, OffsetSpec};
pub use spate_protocol::ErrorCode;
pub use spate_security::acl::{AclBinding, AclBindingFilter, Operation, PatternType};
pub use spate_security::acl::{PatternTypeFilter, Permission, ResourceType};
pub use tls::TlsConfig;
