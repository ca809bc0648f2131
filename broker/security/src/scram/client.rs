//! The client side of one SCRAM exchange, as Kafka's `ScramSaslClient` (for `spate-client`, the
//! CLI and tests).

use super::{ScramError, ScramMechanism};

/// One exchange; it holds the password until it is dropped.
pub struct ScramClient {
    mechanism: ScramMechanism,
    user: String,
    password: String,
    client_nonce: String,
}

impl ScramClient {
    /// `client_nonce`: printable ASCII without ',', from the caller's cryptographic RNG.
    pub fn new(
        mechanism: ScramMechanism,
        user: &str,
        password: &str,
        client_nonce: String,
    ) -> Self {
        Self {
            mechanism,
            user: user.to_string(),
            password: password.to_string(),
            client_nonce,
        }
    }

    /// The client-first-message.
    pub fn client_first(&mut self) -> Vec<u8> {
        let _ = (
            self.mechanism,
            &self.user,
            &self.password,
            &self.client_nonce,
        );
        todo!()
    }

    /// server-first-message in, client-final-message out.
    pub fn server_first(&mut self, message: &[u8]) -> Result<Vec<u8>, ScramError> {
        let _ = message;
        todo!()
    }

    /// server-final-message in: checks the server's signature.
    pub fn server_final(&mut self, message: &[u8]) -> Result<(), ScramError> {
        let _ = message;
        todo!()
    }
}
