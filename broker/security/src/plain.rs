//! SASL PLAIN (RFC 4616): "[authzid] NUL authcid NUL passwd", each field bounded. Checking the
//! password against a stored SCRAM credential is [`crate::ScramCredential::verify_password`];
//! PLAIN sends the password in the clear, so listeners should offer it only over TLS.

use std::fmt;

use crate::limits::PLAIN_FIELD_BYTES_MAX;

/// One PLAIN message, parsed.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// Empty, or equal to `user` (Kafka refuses acting as another user).
    pub authorization_id: String,
    pub user: String,
    pub password: String,
}

/// The password stays out of logs.
impl fmt::Debug for PlainRequest {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("PlainRequest")
            .field("authorization_id", &self.authorization_id)
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a PLAIN message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlainError {
    #[error("malformed PLAIN message: {0}")]
    Malformed(&'static str),
    #[error("PLAIN {field} of {field_bytes} bytes is longer than the limit of {limit_bytes}")]
    FieldTooLong {
        field: &'static str,
        field_bytes: usize,
        limit_bytes: usize,
    },
    #[error("PLAIN authorization id differs from the user name")]
    AuthorizationId,
}

pub fn parse_plain(message: &[u8]) -> Result<PlainRequest, PlainError> {
    let _ = (message, PLAIN_FIELD_BYTES_MAX);
    todo!()
}

/// The PLAIN message of `user` with `password` and no authorization id.
pub fn encode_plain(user: &str, password: &str) -> Vec<u8> {
    let _ = (user, password);
    todo!()
}
