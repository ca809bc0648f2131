//! The client side of one SCRAM exchange, as Kafka's `ScramSaslClient` (for `spate-client`, the
//! CLI and tests): no channel binding and no authorization id ("n,,"), the password used as its
//! UTF-8 bytes (Kafka applies no SASLprep), the server's nonce checked to extend the client's,
//! the iterations bounded, and the server's signature compared in constant time.

use std::mem;

use subtle::ConstantTimeEq;

use super::message::{self, ServerFinal};
use super::{check_iterations, hash, hmac, xor, ScramCredential, ScramError, ScramMechanism};
use super::{CLIENT_KEY_LABEL, SERVER_KEY_LABEL};

/// The gs2 header this client sends: no channel binding, no authorization id.
const GS2_HEADER: &str = "n,,";

/// One exchange; it holds the password until it is dropped.
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_nonce: String,
    state: State,
}

enum State {
    Initial,
    AwaitingServerFirst {
        client_first_bare: String,
    },
    AwaitingServerFinal {
        server_signature: Vec<u8>,
    },
    /// Authenticated, or failed: every further message is out of order.
    Ended,
}

impl ScramClient {
    /// `client_nonce`: printable ASCII without ',', from the caller's cryptographic RNG.
    pub fn new(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: String,
    ) -> Self {
        assert!(
            message::is_valid_nonce(&client_nonce),
            "a SCRAM nonce is non-empty printable ASCII without ','"
        );
        Self {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_nonce,
            state: State::Initial,
        }
    }

    /// The client-first-message. Called once, first.
    pub fn client_first(&mut self) -> Vec<u8> {
        assert!(
            matches!(self.state, State::Initial),
            "ScramClient::client_first is the first call of an exchange, and only once"
        );
        let client_first_bare = format!(
            "n={},r={}",
            message::encode_saslname(&self.user),
            self.client_nonce
        );
        let client_first = format!("{GS2_HEADER}{client_first_bare}");
        self.state = State::AwaitingServerFirst { client_first_bare };
        client_first.into_bytes()
    }

    /// server-first-message in, client-final-message out.
    pub fn server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let State::AwaitingServerFirst { client_first_bare } =
            mem::replace(&mut self.state, State::Ended)
        else {
            return Err(ScramError::OutOfOrder);
        };
        let server_first = message::parse_server_first(message)?;
        // The server's nonce extends ours; a server that drops or keeps only ours is not in
        // this exchange.
        let extends_client_nonce = server_first.nonce.len() > self.client_nonce.len()
            && server_first.nonce.starts_with(&self.client_nonce);
        if !extends_client_nonce {
            return Err(ScramError::NonceMismatch);
        }
        // Bounded both ways: too few is weak, too many lets a server make us compute forever.
        check_iterations(server_first.iterations)?;

        let salted_password = ScramCredential::salted_password(
            self.mechanism,
            self.password.as_bytes(),
            &server_first.salt,
            server_first.iterations,
        );
        let client_key = hmac(self.mechanism, &salted_password, CLIENT_KEY_LABEL);
        let stored_key = hash(self.mechanism, &client_key);
        let server_key = hmac(self.mechanism, &salted_password, SERVER_KEY_LABEL);

        let without_proof =
            message::format_client_final_without_proof(GS2_HEADER, server_first.nonce);
        let server_first_text =
            std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let auth_message = format!("{client_first_bare},{server_first_text},{without_proof}");
        let client_signature = hmac(self.mechanism, &stored_key, auth_message.as_bytes());
        let proof = xor(&client_key, &client_signature);
        let server_signature = hmac(self.mechanism, &server_key, auth_message.as_bytes());

        self.state = State::AwaitingServerFinal { server_signature };
        let client_final = format!("{without_proof},p={}", message::encode_base64(&proof));
        Ok(client_final.into_bytes())
    }

    /// server-final-message in: checks the server's signature, which proves the server knows
    /// the user's ServerKey.
    pub fn server_final(&mut self, message: &[u8]) -> Result<(), ScramError> {
        let State::AwaitingServerFinal { server_signature } =
            mem::replace(&mut self.state, State::Ended)
        else {
            return Err(ScramError::OutOfOrder);
        };
        match message::parse_server_final(message)? {
            ServerFinal::Error(error) => Err(ScramError::ServerError(error)),
            ServerFinal::Verifier(verifier) => {
                let signature_matches: bool = verifier.ct_eq(&server_signature).into();
                if signature_matches {
                    Ok(())
                } else {
                    Err(ScramError::ServerSignature)
                }
            }
        }
    }
}
