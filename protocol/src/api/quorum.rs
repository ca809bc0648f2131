//! The metadata quorum's traffic between brokers: RaftMessage carries raft-rs's messages from
//! one broker's Raft node to another's, ClusterPropose carries a metadata change from any
//! broker to the controller (the Raft leader), which answers once the change applied.
//!
//! Both carry their payloads as opaque bytes: Raft's protobuf encoding and the metadata
//! crate's command and outcome encoding are those crates' formats, not this protocol's, so a
//! new command needs no new wire version here.

use bytes::Bytes;

use crate::api::wire::{wire, ByteString, ErrorText, List, OptionalClusterId};
use crate::constants::RAFT_MESSAGE_BYTES_MAX;
use crate::constants::{METADATA_COMMAND_BYTES_MAX, RAFT_MESSAGES_PER_REQUEST_MAX};
use crate::error::ErrorCode;
use crate::NodeId;

wire! {
    /// Raft messages from node `from` to node `to`, in the order Raft produced them.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct RaftMessageRequest {
        pub from: NodeId as i32,
        pub to: NodeId as i32,
        /// The sender's cluster id, `None` until the first controller chose one. A broker
        /// refuses messages of another cluster (`InvalidRequest`), so two clusters never mix.
        pub cluster_id: Option<String> as OptionalClusterId,
        /// Each one raft-rs `Message` in its protobuf encoding.
        pub messages: Vec<Bytes>
            as List<ByteString<RAFT_MESSAGE_BYTES_MAX>, RAFT_MESSAGES_PER_REQUEST_MAX>,
    }
}

wire! {
    /// Whether the receiver took the messages (Raft copes with lost ones; the sender only logs).
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct RaftMessageResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    /// One metadata change for the controller to propose to the quorum. `(origin, sequence)`
    /// identifies the proposal, so the controller reports the apply outcome of exactly it.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ClusterProposeRequest {
        /// The proposing broker.
        pub origin: NodeId as i32,
        /// Rises with each proposal of `origin`'s incarnation.
        pub sequence: u64 as u64,
        /// The command, in the metadata crate's encoding.
        pub command: Bytes as ByteString<METADATA_COMMAND_BYTES_MAX>,
        /// How long the controller may take to commit and apply it.
        pub timeout_ms: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ClusterProposeResponse {
        /// `NotController` (see `controller_hint`), `RequestTimedOut` (the outcome is then
        /// unknown: the command may still apply), or the code of the error the command's apply
        /// gave (`TopicAlreadyExists`, `InvalidReplicationFactor`, ...).
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// With `NotController`: the controller as this broker knows it, or -1.
        pub controller_hint: NodeId as i32,
        /// The apply result (the outcome, or the typed apply error the code stands for) in the
        /// metadata crate's encoding; empty when the command was not applied.
        pub outcome: Bytes as ByteString<METADATA_COMMAND_BYTES_MAX>,
    }
}

/// An answer with no error and no controller hint (`metadata::NO_NODE`).
impl Default for ClusterProposeResponse {
    fn default() -> Self {
        Self {
            error_code: ErrorCode::None,
            error_message: None,
            controller_hint: crate::api::metadata::NO_NODE,
            outcome: Bytes::new(),
        }
    }
}
