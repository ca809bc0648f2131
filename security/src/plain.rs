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
    #[error("PLAIN message of {message_bytes} bytes is longer than the limit of {limit_bytes}")]
    TooLong {
        message_bytes: usize,
        limit_bytes: usize,
    },
    #[error("PLAIN authorization id differs from the user name")]
    AuthorizationId,
}

/// The longest PLAIN message: three fields at their limit and two NULs.
const PLAIN_MESSAGE_BYTES_MAX: usize = 3 * PLAIN_FIELD_BYTES_MAX + 2;

/// Parses a PLAIN message: exactly two NULs, each field UTF-8 and at most
/// [`PLAIN_FIELD_BYTES_MAX`] bytes, user and password non-empty, and the authorization id
/// empty or equal to the user (Kafka's `PlainSaslServer` rules).
pub fn parse_plain(message: &[u8]) -> Result<PlainRequest, PlainError> {
    if message.len() > PLAIN_MESSAGE_BYTES_MAX {
        return Err(PlainError::TooLong {
            message_bytes: message.len(),
            limit_bytes: PLAIN_MESSAGE_BYTES_MAX,
        });
    }
    let mut fields = message.split(|&byte| byte == 0);
    let (Some(authorization_id), Some(user), Some(password), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(PlainError::Malformed("expected exactly two NUL separators"));
    };
    let authorization_id = field_text("authorization id", authorization_id)?;
    let user = field_text("user", user)?;
    let password = field_text("password", password)?;
    if user.is_empty() {
        return Err(PlainError::Malformed("empty user name"));
    }
    if password.is_empty() {
        return Err(PlainError::Malformed("empty password"));
    }
    if !authorization_id.is_empty() && authorization_id != user {
        return Err(PlainError::AuthorizationId);
    }
    Ok(PlainRequest {
        authorization_id: authorization_id.to_string(),
        user: user.to_string(),
        password: password.to_string(),
    })
}

fn field_text<'a>(field: &'static str, bytes: &'a [u8]) -> Result<&'a str, PlainError> {
    if bytes.len() > PLAIN_FIELD_BYTES_MAX {
        return Err(PlainError::FieldTooLong {
            field,
            field_bytes: bytes.len(),
            limit_bytes: PLAIN_FIELD_BYTES_MAX,
        });
    }
    std::str::from_utf8(bytes).map_err(|_| PlainError::Malformed("a field is not UTF-8"))
}

/// The PLAIN message of `user` with `password` and no authorization id. A server refuses it if
/// either holds a NUL or is longer than [`PLAIN_FIELD_BYTES_MAX`]; this side does not check,
/// so that the server's answer is the one the user sees.
pub fn encode_plain(user: &str, password: &str) -> Vec<u8> {
    let mut message = Vec::with_capacity(user.len() + password.len() + 2);
    message.push(0);
    message.extend_from_slice(user.as_bytes());
    message.push(0);
    message.extend_from_slice(password.as_bytes());
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encoded_message_parses_back() {
        let request = parse_plain(&encode_plain("alice", "pass word")).unwrap();
        assert_eq!(request.authorization_id, "");
        assert_eq!(request.user, "alice");
        assert_eq!(request.password, "pass word");
    }

    #[test]
    fn authorization_id_equal_to_the_user_is_accepted() {
        let request = parse_plain(b"alice\0alice\0secret").unwrap();
        assert_eq!(request.authorization_id, "alice");
        assert_eq!(
            parse_plain(b"admin\0alice\0secret"),
            Err(PlainError::AuthorizationId)
        );
    }

    #[test]
    fn separators_and_empty_fields_are_checked() {
        for message in [
            &b""[..],
            b"alice",
            b"\0alice",
            b"\0alice\0secret\0",
            b"\0\0secret",
            b"\0alice\0",
        ] {
            assert!(
                matches!(parse_plain(message), Err(PlainError::Malformed(_))),
                "{message:?}"
            );
        }
        assert!(matches!(
            parse_plain(b"\0al\xffice\0secret"),
            Err(PlainError::Malformed(_))
        ));
    }

    #[test]
    fn fields_of_255_bytes_are_accepted_and_256_refused() {
        let longest = "é".repeat(127) + "x";
        assert_eq!(longest.len(), PLAIN_FIELD_BYTES_MAX);
        let request = parse_plain(&encode_plain(&longest, &longest)).unwrap();
        assert_eq!(request.user, longest);
        let too_long = "x".repeat(PLAIN_FIELD_BYTES_MAX + 1);
        assert_eq!(
            parse_plain(&encode_plain("alice", &too_long)),
            Err(PlainError::FieldTooLong {
                field: "password",
                field_bytes: 256,
                limit_bytes: 255
            })
        );
        assert!(matches!(
            parse_plain(&vec![b'x'; PLAIN_MESSAGE_BYTES_MAX + 1]),
            Err(PlainError::TooLong { .. })
        ));
    }

    #[test]
    fn debug_hides_the_password() {
        let request = parse_plain(&encode_plain("alice", "hunter2")).unwrap();
        assert!(!format!("{request:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(message in proptest::collection::vec(any::<u8>(), 0..800)) {
            let _ = parse_plain(&message);
        }

        #[test]
        fn any_valid_user_and_password_round_trip(
            user in "[^\\x00]{1,60}",
            password in "[^\\x00]{1,60}",
        ) {
            let request = parse_plain(&encode_plain(&user, &password)).unwrap();
            prop_assert_eq!(request.user, user);
            prop_assert_eq!(request.password, password);
        }
    }
}
