//! FindCoordinator: which broker coordinates a consumer group or a transactional id.
//!
//! A group's coordinator is the leader of the `__consumer_offsets` partition the group id
//! hashes to, a transactional id's the leader of its `__transaction_state` partition (Kafka's
//! rule), so the coordinator moves with that partition's leadership. A client asks any broker
//! and sends its group or transaction requests to the broker named in the answer; a
//! `NotCoordinator` answer later means it moved, and the client asks again.

use crate::api::metadata::NO_NODE;
use crate::api::wire::{wire, CoordinatorKey, ErrorText, Field, HostName, Wire};
use crate::codec::{Decoder, Sink};
use crate::error::{ErrorCode, WireError};
use crate::NodeId;

/// What a coordinator key names (Kafka's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CoordinatorType {
    /// A consumer group id.
    #[default]
    Group,
    /// A transactional id.
    Transaction,
}

impl CoordinatorType {
    /// The wire byte (Kafka's `key_type`: 0 group, 1 transaction).
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Group => 0,
            Self::Transaction => 1,
        }
    }

    /// The type of a wire byte; `None` for any other.
    pub fn from_u8(value: u8) -> Option<Self> {
        match value {
            0 => Some(Self::Group),
            1 => Some(Self::Transaction),
            _ => None,
        }
    }
}

/// A u8 with Kafka's numbers; any other is refused.
impl Wire for CoordinatorType {
    type Value = CoordinatorType;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(
        value: &CoordinatorType,
        _field: Field,
        sink: &mut S,
    ) -> Result<(), WireError> {
        sink.put_u8(value.to_u8());
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<CoordinatorType, WireError> {
        let value = decoder.u8(field.name)?;
        CoordinatorType::from_u8(value).ok_or(WireError::InvalidValue {
            field: field.name,
            value: i64::from(value),
        })
    }

    #[cfg(test)]
    fn smallest() -> CoordinatorType {
        CoordinatorType::Group
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct FindCoordinatorRequest {
        pub key_type: CoordinatorType as CoordinatorType,
        /// The group id or transactional id.
        pub key: String as CoordinatorKey,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct FindCoordinatorResponse {
        /// `CoordinatorNotAvailable` while the coordinator's partition has no leader;
        /// `InvalidGroupId` / `InvalidRequest` for an empty key.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// The coordinator's broker and its native endpoint; -1 and empty on an error.
        pub node_id: NodeId as i32,
        pub host: String as HostName,
        pub port: u16 as u16,
    }
}

/// An answer naming no coordinator ([`NO_NODE`]), as an error answer does.
impl Default for FindCoordinatorResponse {
    fn default() -> Self {
        Self {
            error_code: ErrorCode::None,
            error_message: None,
            node_id: NO_NODE,
            host: String::new(),
            port: 0,
        }
    }
}
