//! `spate-metadata`, the cluster metadata of a Spate cluster: one Raft quorum (TiKV's `raft-rs`,
//! sans-IO) replicating the [`MetadataImage`] — brokers and their liveness, topics, each
//! partition's replicas, ISR, leader and epochs, configs, id counters — as Kafka's KRaft does.
//!
//! - `commands`: the [`MetadataCommand`]s of the log, their encoding and outcomes.
//! - `image`: the image and `apply`, deterministic, with every validation at apply.
//! - `security`: the image's users (SCRAM credentials) and ACL bindings, and the commands that
//!   change them, as KRaft replicates them instead of per-broker files.
//! - `controller`: what the Raft leader (the controller) proposes each tick: fencing and
//!   unfencing brokers, adding learners, finishing decommissions.
//! - `raft_log`: the Raft log, hard state and snapshot, durable through the storage crate's
//!   file trait, CRC'd, recovered from torn tails.
//! - `node`: [`MetadataNode`], one broker's Raft node: tick, step, propose, advance.
//! - `config`: every setting and limit.
//!
//! Architecture invariant: this crate depends on `spate-protocol` (ids, error codes),
//! `spate-storage` (the file trait) and `spate-security` (sans-IO: what a valid credential or
//! binding is and what an ACL filter matches) only: no sockets, no clocks (time is passed in), no shards.
//! The broker's driver (`spate-server`'s `cluster/`) moves its messages and applies its image.

pub mod commands;
pub mod config;
pub mod controller;
pub mod error;
pub mod image;
pub mod node;
pub mod raft_log;
pub mod security;

pub use commands::{
    decode_command, decode_entry, decode_result, encode_command, encode_entry, encode_result,
    ApplyOutcome, ElectionResult, EntryEnvelope, MetadataCommand, ProposalId,
};
pub use config::{limits, MetadataConfig};
pub use controller::{controller_decisions, ControllerDecisions, ControllerView};
pub use error::{ApplyError, MetadataError};
pub use image::{
    default_min_insync_replicas, validate_topic_name, BrokerState, BrokerStatus, MetadataImage,
    PartitionImage, TopicImage, MIN_INSYNC_REPLICAS,
};
pub use node::{Advance, MetadataNode};
pub use security::{AclBindingRecord, AclFilterRecord, ScramCredentialRecord, SecurityImage};
pub use spate_protocol::NodeId;
