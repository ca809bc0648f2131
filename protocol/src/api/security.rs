//! Authentication and users: SaslHandshake and SaslAuthenticate with Kafka's meaning (the
//! handshake names a mechanism; each authenticate step carries one SASL message each way), and
//! the user APIs UpsertUser, DeleteUser and ListUsers. SaslAuthenticate v1 adds the session
//! lifetime to the answer (re-authentication, Kafka's KIP-368).
//!
//! A user's password never travels in the user APIs: the client salts and hashes it (SCRAM's
//! `Hi()`) and sends the salt, the iteration count and the salted password, as Kafka's
//! AlterUserScramCredentials does. Only PLAIN's authenticate message carries a password.
//! Mechanisms travel by their SASL names (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`).

use bytes::Bytes;

use crate::api::wire::{wire, ByteString, ErrorText, List, Str};
use crate::constants::{
    SASL_MECHANISMS_MAX, SASL_MECHANISM_BYTES_MAX, SASL_MESSAGE_BYTES_MAX,
    SCRAM_SALTED_PASSWORD_BYTES_MAX, SCRAM_SALT_BYTES_MAX, USERS_PER_MESSAGE_MAX,
    USER_NAME_BYTES_MAX,
};
use crate::error::ErrorCode;

type MechanismName = Str<SASL_MECHANISM_BYTES_MAX>;
type UserName = Str<USER_NAME_BYTES_MAX>;

wire! {
    /// Chooses the connection's SASL mechanism; the first request after ApiVersions on a
    /// listener that requires authentication.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SaslHandshakeRequest {
        pub mechanism: String as MechanismName,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SaslHandshakeResponse {
        /// `UnsupportedSaslMechanism` (the connection then closes) or `IllegalSaslState`.
        pub error_code: ErrorCode as ErrorCode,
        /// The mechanisms the listener offers.
        pub mechanisms: Vec<String> as List<MechanismName, SASL_MECHANISMS_MAX>,
    }
}

wire! {
    /// One step of the chosen mechanism's exchange.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SaslAuthenticateRequest {
        pub auth_bytes: Bytes as ByteString<SASL_MESSAGE_BYTES_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct SaslAuthenticateResponse {
        /// `SaslAuthenticationFailed` (the connection then closes) or `IllegalSaslState`.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// The server's message of this step (SCRAM's server-first or server-final).
        pub auth_bytes: Bytes as ByteString<SASL_MESSAGE_BYTES_MAX>,
        /// After the last step: how long the authentication lasts, in milliseconds (Kafka's
        /// KIP-368); the client authenticates again on the connection before it ends, or the
        /// broker closes the connection at its next request. 0: for the life of the connection.
        #[since = 1]
        pub session_lifetime_ms: i64 as i64,
    }
}

wire! {
    /// Creates a user, or replaces its credential for the mechanism.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UpsertUserRequest {
        pub name: String as UserName,
        /// `SCRAM-SHA-256` or `SCRAM-SHA-512`.
        pub mechanism: String as MechanismName,
        /// PBKDF2 iterations, 4096..=16384.
        pub iterations: u32 as u32,
        pub salt: Bytes as ByteString<SCRAM_SALT_BYTES_MAX>,
        /// SCRAM's `Hi(password, salt, iterations)`.
        pub salted_password: Bytes as ByteString<SCRAM_SALTED_PASSWORD_BYTES_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UpsertUserResponse {
        /// `UnsupportedSaslMechanism`, `UnacceptableCredential`, `StorageError`.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    /// Removes a user's credential for the mechanism.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteUserRequest {
        pub name: String as UserName,
        pub mechanism: String as MechanismName,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteUserResponse {
        /// `ResourceNotFound`, `UnsupportedSaslMechanism`, `StorageError`.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    /// Lists every user with its mechanisms and iteration counts; the body is empty.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct ListUsersRequest {}
}

wire! {
    /// One credential of a user: never its keys.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UserCredentialInfo {
        pub mechanism: String as MechanismName,
        pub iterations: u32 as u32,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct UserListing {
        pub name: String as UserName,
        pub credentials: Vec<UserCredentialInfo> as List<UserCredentialInfo, SASL_MECHANISMS_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct ListUsersResponse {
        pub error_code: ErrorCode as ErrorCode,
        pub users: Vec<UserListing> as List<UserListing, USERS_PER_MESSAGE_MAX>,
    }
}
