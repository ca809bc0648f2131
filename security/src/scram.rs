//! SCRAM (RFC 5802) with SHA-256 (RFC 7677) and SHA-512, as Kafka's `ScramSaslServer` and
//! `ScramSaslClient` use it: the mechanisms, the stored credential (salt, iterations, StoredKey,
//! ServerKey — never the password), and the server and client state machines.
//!
//! Sans-IO: each side takes one message and gives the next; nonces come from the caller's RNG.
//! What Kafka leaves out is left out here too: channel binding (only the gs2 header "n,," with an
//! optional authorization id equal to the user), and the `tokenauth` extension of delegation
//! tokens. Framing the messages (SaslAuthenticate, the native APIs) belongs to `spate-server`.

mod client;
mod message;
mod server;

pub use client::ScramClient;
pub use server::ScramServer;

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::limits::{SCRAM_ITERATIONS_MAX, SCRAM_ITERATIONS_MIN};

/// RFC 5802's labels for deriving ClientKey and ServerKey from SaltedPassword.
const CLIENT_KEY_LABEL: &[u8] = b"Client Key";
const SERVER_KEY_LABEL: &[u8] = b"Server Key";

/// HMAC(key, data) with the mechanism's hash.
fn hmac(mechanism: ScramMechanism, key: &[u8], data: &[u8]) -> Vec<u8> {
    fn with<M: Mac + hmac::digest::KeyInit>(key: &[u8], data: &[u8]) -> Vec<u8> {
        // HMAC takes keys of any length (longer ones are hashed), so this cannot fail.
        let mut mac = <M as hmac::digest::KeyInit>::new_from_slice(key)
            .expect("HMAC accepts keys of every length");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }
    match mechanism {
        ScramMechanism::Sha256 => with::<Hmac<Sha256>>(key, data),
        ScramMechanism::Sha512 => with::<Hmac<Sha512>>(key, data),
    }
}

/// H(data) with the mechanism's hash.
fn hash(mechanism: ScramMechanism, data: &[u8]) -> Vec<u8> {
    match mechanism {
        ScramMechanism::Sha256 => Sha256::digest(data).to_vec(),
        ScramMechanism::Sha512 => Sha512::digest(data).to_vec(),
    }
}

/// XOR of two equally long byte strings (ClientKey from ClientProof and ClientSignature).
fn xor(left: &[u8], right: &[u8]) -> Vec<u8> {
    assert_eq!(left.len(), right.len());
    left.iter().zip(right).map(|(l, r)| l ^ r).collect()
}

/// Whether `iterations` is inside Kafka's bounds, as a typed error.
pub fn check_iterations(iterations: u32) -> Result<(), ScramError> {
    if iterations < ScramMechanism::ITERATIONS_MIN {
        return Err(ScramError::TooFewIterations { iterations });
    }
    if iterations > ScramMechanism::ITERATIONS_MAX {
        return Err(ScramError::TooManyIterations { iterations });
    }
    Ok(())
}

/// A nonce (part) made from `random` bytes of the caller's cryptographic RNG: their base64,
/// which is printable and has no ','. 18 random bytes (24 characters) carry more than the 130
/// bits of Kafka's nonces.
pub fn nonce_from_random(random: &[u8]) -> String {
    assert!(!random.is_empty(), "a nonce needs random bytes");
    message::encode_base64(random)
}

/// A SCRAM hash function, as Kafka names and numbers them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ScramMechanism {
    Sha256,
    Sha512,
}

impl ScramMechanism {
    /// Kafka refuses credentials with fewer iterations.
    pub const ITERATIONS_MIN: u32 = SCRAM_ITERATIONS_MIN;
    /// Kafka refuses credentials with more iterations.
    pub const ITERATIONS_MAX: u32 = SCRAM_ITERATIONS_MAX;
    /// Both mechanisms, in Kafka's order.
    pub const ALL: [ScramMechanism; 2] = [ScramMechanism::Sha256, ScramMechanism::Sha512];

    /// The SASL mechanism name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SCRAM-SHA-256",
            Self::Sha512 => "SCRAM-SHA-512",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.name() == name)
    }

    /// Kafka's `ScramMechanism` code, used by DescribeUserScramCredentials and
    /// AlterUserScramCredentials (0 is UNKNOWN there).
    pub fn kafka_type(self) -> i8 {
        match self {
            Self::Sha256 => 1,
            Self::Sha512 => 2,
        }
    }

    pub fn from_kafka_type(value: i8) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|mechanism| mechanism.kafka_type() == value)
    }

    /// The hash's output length, which is also the length of every key, proof and signature.
    pub fn hash_bytes(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha512 => 64,
        }
    }

    /// Whether `iterations` is inside Kafka's bounds.
    pub fn iterations_allowed(iterations: u32) -> bool {
        (Self::ITERATIONS_MIN..=Self::ITERATIONS_MAX).contains(&iterations)
    }
}

/// What a server keeps of a user's password for one mechanism (RFC 5802 section 3): enough to
/// check a client's proof and to prove itself, not enough to log in as the user.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredential {
    pub mechanism: ScramMechanism,
    pub salt: Vec<u8>,
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: Vec<u8>,
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: Vec<u8>,
}

impl ScramCredential {
    /// The credential for `password`. `iterations` should be inside
    /// [`ScramMechanism::iterations_allowed`]; callers check it before taking a user's input.
    pub fn from_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        let salted_password = Self::salted_password(mechanism, password, &salt, iterations);
        Self::from_salted_password(mechanism, &salted_password, salt, iterations)
    }

    /// The credential from an already salted password, as AlterUserScramCredentials carries it
    /// (the client salts, so the password never travels).
    pub fn from_salted_password(
        mechanism: ScramMechanism,
        salted_password: &[u8],
        salt: Vec<u8>,
        iterations: u32,
    ) -> Self {
        let client_key = hmac(mechanism, salted_password, CLIENT_KEY_LABEL);
        Self {
            mechanism,
            salt,
            iterations,
            stored_key: hash(mechanism, &client_key),
            server_key: hmac(mechanism, salted_password, SERVER_KEY_LABEL),
        }
    }

    /// RFC 5802's Hi(): PBKDF2 with HMAC of the mechanism's hash, one output block.
    pub fn salted_password(
        mechanism: ScramMechanism,
        password: &[u8],
        salt: &[u8],
        iterations: u32,
    ) -> Vec<u8> {
        let mut salted_password = vec![0; mechanism.hash_bytes()];
        match mechanism {
            ScramMechanism::Sha256 => {
                pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted_password)
            }
            ScramMechanism::Sha512 => {
                pbkdf2::pbkdf2_hmac::<Sha512>(password, salt, iterations, &mut salted_password)
            }
        }
        salted_password
    }

    /// A made-up credential for a user that does not exist, so a server can answer its
    /// client-first-message as for any user (RFC 5802 section 5: a consistent salt from a
    /// server secret): salt and keys are HMACs under `secret` of what they are, the mechanism and
    /// the user name, so the same name gets the same credential each time, and nobody without
    /// the secret can tell it from a real one or compute a proof for it.
    pub fn for_unknown_user(
        mechanism: ScramMechanism,
        user: &str,
        secret: &[u8],
        iterations: u32,
        salt_bytes: usize,
    ) -> Self {
        let derive = |label: &str, bytes: usize| {
            let mut derived = Vec::with_capacity(bytes);
            let mut block = 0u32;
            while derived.len() < bytes {
                let mut data = Vec::new();
                for part in [label.as_bytes(), user.as_bytes()] {
                    data.extend_from_slice(&(part.len() as u64).to_be_bytes());
                    data.extend_from_slice(part);
                }
                data.extend_from_slice(&block.to_be_bytes());
                derived.extend_from_slice(&hmac(mechanism, secret, &data));
                block += 1;
            }
            derived.truncate(bytes);
            derived
        };
        Self {
            mechanism,
            salt: derive("salt", salt_bytes),
            iterations,
            stored_key: derive("stored key", mechanism.hash_bytes()),
            server_key: derive("server key", mechanism.hash_bytes()),
        }
    }

    /// Whether `password` (from a PLAIN exchange) is this credential's password. The keys are
    /// compared in constant time.
    pub fn verify_password(&self, password: &[u8]) -> bool {
        // A credential outside the bounds (iterations from a hand-edited file, say) would make
        // every PLAIN attempt cost what the file says; it authenticates nobody instead.
        if self.check().is_err() {
            return false;
        }
        let candidate =
            Self::from_password(self.mechanism, password, self.salt.clone(), self.iterations);
        // Comparing StoredKey alone would do; comparing ServerKey too costs nothing and keeps
        // a credential whose two keys disagree (a corrupt one) from ever matching.
        let stored_key_equal = candidate.stored_key.ct_eq(&self.stored_key);
        let server_key_equal = candidate.server_key.ct_eq(&self.server_key);
        (stored_key_equal & server_key_equal).into()
    }

    /// Whether the keys have the mechanism's hash length and the iterations are inside
    /// Kafka's bounds: what the server checks before using a credential.
    pub fn check(&self) -> Result<(), ScramError> {
        let hash_bytes = self.mechanism.hash_bytes();
        if self.stored_key.len() != hash_bytes || self.server_key.len() != hash_bytes {
            return Err(ScramError::CredentialMismatch);
        }
        if self.salt.is_empty() {
            return Err(ScramError::CredentialMismatch);
        }
        check_iterations(self.iterations)
    }
}

/// Keys are secrets (StoredKey and ServerKey with one captured exchange let an attacker pose as
/// the broker), so they never reach a log through `Debug`.
impl fmt::Debug for ScramCredential {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ScramCredential")
            .field("mechanism", &self.mechanism)
            .field("salt_bytes", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// Why a SCRAM exchange failed. Every failure ends the exchange: the state machine refuses
/// further messages with [`ScramError::OutOfOrder`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("SCRAM message of {message_bytes} bytes is longer than the limit of {limit_bytes}")]
    TooLong {
        message_bytes: usize,
        limit_bytes: usize,
    },
    #[error("SCRAM channel binding is not supported (only the gs2 header \"n\")")]
    ChannelBinding,
    #[error("SCRAM authorization id differs from the user name")]
    AuthorizationId,
    #[error("SCRAM extension not supported (delegation tokens, a reserved m= or a client-final extension)")]
    UnsupportedExtension,
    #[error("unknown SCRAM user")]
    UnknownUser,
    #[error("SCRAM nonce does not match the exchange's")]
    NonceMismatch,
    #[error("SCRAM client proof is wrong")]
    BadProof,
    #[error("SCRAM server signature is wrong")]
    ServerSignature,
    #[error(
        "SCRAM iteration count {iterations} is below the minimum of {}",
        ScramMechanism::ITERATIONS_MIN
    )]
    TooFewIterations { iterations: u32 },
    #[error(
        "SCRAM iteration count {iterations} is above the maximum of {}",
        ScramMechanism::ITERATIONS_MAX
    )]
    TooManyIterations { iterations: u32 },
    #[error("SCRAM credential does not fit its mechanism (key or salt length)")]
    CredentialMismatch,
    #[error("SCRAM server refused the exchange: {0}")]
    ServerError(String),
    #[error("SCRAM message out of order (or after the exchange ended)")]
    OutOfOrder,
}
