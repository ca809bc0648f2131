//! The server side of one SCRAM exchange, as Kafka's `ScramSaslServer`: client-first in,
//! server-first out; client-final in, server-final and the authenticated user out.
//!
//! Kafka's behaviour kept here: an unknown user (`lookup` finds nothing) fails at the first
//! message, an authorization id must equal the user, and a credential with fewer than the
//! minimum iterations is refused. A server that must not tell unknown users apart answers
//! them with `ScramCredential::for_unknown_user` from its `lookup` instead (the broker does).

use std::mem;

use subtle::ConstantTimeEq;

use super::message::{self, ClientFinal};
use super::{hash, hmac, xor, ScramCredential, ScramError, ScramMechanism};

/// One exchange on one connection; the connection owns it and drops it when the exchange ends.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
    state: State,
}

enum State {
    AwaitingClientFirst,
    AwaitingClientFinal(Box<Exchange>),
    /// Authenticated, or failed: every further message is out of order.
    Ended,
}

/// What the server-first step leaves for the client-final step.
struct Exchange {
    user: String,
    credential: ScramCredential,
    gs2_header: String,
    /// The client's nonce followed by the server's.
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl ScramServer {
    /// `server_nonce`: the server's part of the nonce, printable ASCII without ',', from the
    /// caller's cryptographic RNG (Kafka uses 32 or more random characters).
    pub fn new(mechanism: ScramMechanism, server_nonce: String) -> Self {
        assert!(
            message::is_valid_nonce(&server_nonce),
            "a SCRAM nonce is non-empty printable ASCII without ','"
        );
        Self {
            mechanism,
            server_nonce,
            state: State::AwaitingClientFirst,
        }
    }

    pub fn mechanism(&self) -> ScramMechanism {
        self.mechanism
    }

    /// client-first-message in, server-first-message out. `lookup` gets the user name with the
    /// saslname escapes undone (no other SASLprep: Kafka applies none) and returns its
    /// credential for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        let State::AwaitingClientFirst = mem::replace(&mut self.state, State::Ended) else {
            return Err(ScramError::OutOfOrder);
        };
        let client_first = message::parse_client_first(message)?;
        if let Some(authorization_id) = &client_first.authorization_id {
            if *authorization_id != client_first.user {
                return Err(ScramError::AuthorizationId);
            }
        }
        let credential = lookup(&client_first.user).ok_or(ScramError::UnknownUser)?;
        if credential.mechanism != self.mechanism {
            return Err(ScramError::CredentialMismatch);
        }
        credential.check()?;

        let nonce = format!("{}{}", client_first.client_nonce, self.server_nonce);
        let server_first =
            message::format_server_first(&nonce, &credential.salt, credential.iterations);
        self.state = State::AwaitingClientFinal(Box::new(Exchange {
            user: client_first.user,
            credential,
            gs2_header: client_first.gs2_header.to_string(),
            nonce,
            client_first_bare: client_first.bare.to_string(),
            server_first: server_first.clone(),
        }));
        Ok(server_first.into_bytes())
    }

    /// client-final-message in; the server-final-message and the authenticated user out.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let State::AwaitingClientFinal(exchange) = mem::replace(&mut self.state, State::Ended)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let client_final = message::parse_client_final(message)?;
        let server_signature = exchange.verify(&client_final, self.mechanism)?;
        let server_final = message::format_server_final(&server_signature);
        Ok((server_final.into_bytes(), exchange.user))
    }
}

impl Exchange {
    /// Checks the client-final-message against this exchange; the ServerSignature out.
    fn verify(
        &self,
        client_final: &ClientFinal<'_>,
        mechanism: ScramMechanism,
    ) -> Result<Vec<u8>, ScramError> {
        // The client repeats the gs2 header it sent, so a header changed in flight shows.
        if client_final.channel_binding != self.gs2_header.as_bytes() {
            return Err(ScramError::ChannelBinding);
        }
        // Kafka checks that the client's nonce ends with the server-first nonce, not that it
        // equals it: librdkafka (2.0 at least) sends its own nonce again in front of the
        // server-first nonce, and the proof covers what it sent.
        if !client_final.nonce.ends_with(self.nonce.as_str()) {
            return Err(ScramError::NonceMismatch);
        }
        if client_final.proof.len() != mechanism.hash_bytes() {
            return Err(ScramError::BadProof);
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, client_final.without_proof
        );
        let client_signature = hmac(
            mechanism,
            &self.credential.stored_key,
            auth_message.as_bytes(),
        );
        let client_key = xor(&client_final.proof, &client_signature);
        let proof_matches: bool = hash(mechanism, &client_key)
            .ct_eq(&self.credential.stored_key)
            .into();
        if !proof_matches {
            return Err(ScramError::BadProof);
        }
        Ok(hmac(
            mechanism,
            &self.credential.server_key,
            auth_message.as_bytes(),
        ))
    }
}
