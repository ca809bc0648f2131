//! The server side of one SCRAM exchange, as Kafka's `ScramSaslServer`: client-first in,
//! server-first out; client-final in, server-final and the authenticated user out.

use super::{ScramCredential, ScramError, ScramMechanism};

/// One exchange on one connection; it owns its state until the connection drops it.
pub struct ScramServer {
    mechanism: ScramMechanism,
    server_nonce: String,
}

impl ScramServer {
    /// `server_nonce`: the server's part of the nonce, printable ASCII without ',', from the
    /// caller's cryptographic RNG.
    pub fn new(mechanism: ScramMechanism, server_nonce: String) -> Self {
        Self {
            mechanism,
            server_nonce,
        }
    }

    /// client-first-message in, server-first-message out. `lookup` gets the user name with the
    /// saslname escapes undone and returns its credential for this mechanism.
    pub fn client_first(
        &mut self,
        message: &[u8],
        lookup: impl FnOnce(&str) -> Option<ScramCredential>,
    ) -> Result<Vec<u8>, ScramError> {
        let _ = (message, lookup, self.mechanism, &self.server_nonce);
        todo!()
    }

    /// client-final-message in; the server-final-message and the authenticated user out.
    pub fn client_final(&mut self, message: &[u8]) -> Result<(Vec<u8>, String), ScramError> {
        let _ = message;
        todo!()
    }
}
