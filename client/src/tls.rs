//! TLS to the broker: the settings ([`TlsConfig`]), the rustls client config built from them
//! once per [`Client`](crate::Client) (its files read when the client is made, so a missing
//! or bad file fails `Client::new`, not every connection), and the handshake on the I/O thread
//! (tokio-rustls, `ring` provider).
//!
//! The broker's certificate is verified against `ca_file` only: the client loads no system
//! roots (brokers are reached through a private CA in every deployment Spate targets; a public
//! one is a file away). A client certificate (`cert_file` + `key_file`) is offered for mutual
//! TLS.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::RootCertStore;

use crate::error::Error;

/// How the client talks TLS to the brokers (`ClientConfig::tls`).
///
/// ```
/// use spate_client::{ClientConfig, TlsConfig};
///
/// let config = ClientConfig::new("broker.internal:9192")
///     .with_tls(TlsConfig::new("/etc/spate/ca.pem").with_client_certificate(
///         "/etc/spate/client.pem",
///         "/etc/spate/client.key",
///     ));
/// assert!(config.tls.is_some());
/// ```
#[derive(Clone, Default)]
pub struct TlsConfig {
    /// PEM CA bundle the broker's certificate must chain to.
    pub ca_file: PathBuf,
    /// PEM certificate chain offered to the broker (mutual TLS), with `key_file`.
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    pub key_file: Option<PathBuf>,
    /// The name the broker's certificate must carry; `None`: the host of the address dialled
    /// (a name or an IP address).
    pub server_name: Option<String>,
    /// The rustls config, built once from the files and shared by every clone.
    built: Arc<OnceLock<Arc<rustls::ClientConfig>>>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("TlsConfig")
            .field("ca_file", &self.ca_file)
            .field("cert_file", &self.cert_file)
            .field("key_file", &self.key_file)
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsConfig {
    /// TLS verified against the CA bundle `ca_file`, no client certificate.
    pub fn new(ca_file: impl Into<PathBuf>) -> Self {
        Self {
            ca_file: ca_file.into(),
            ..Self::default()
        }
    }

    /// Offers this certificate chain and key to the broker (mutual TLS).
    pub fn with_client_certificate(
        mut self,
        cert_file: impl Into<PathBuf>,
        key_file: impl Into<PathBuf>,
    ) -> Self {
        self.cert_file = Some(cert_file.into());
        self.key_file = Some(key_file.into());
        self.built = Arc::default();
        self
    }

    /// Expects this name in the broker's certificate instead of the dialled host.
    pub fn with_server_name(mut self, server_name: impl Into<String>) -> Self {
        self.server_name = Some(server_name.into());
        self
    }

    /// The rustls config, read from the files the first time.
    pub(crate) fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        if let Some(built) = self.built.get() {
            return Ok(built.clone());
        }
        let built = self.build()?;
        Ok(self.built.get_or_init(|| built).clone())
    }

    fn build(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let mut roots = RootCertStore::empty();
        for authority in read_certificates("ca_file", &self.ca_file)? {
            roots
                .add(authority)
                .map_err(|error| invalid(format!("ca_file {}: {error}", self.ca_file.display())))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|error| invalid(error.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert_file, &self.key_file) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert_file), Some(key_file)) => {
                let chain = read_certificates("cert_file", cert_file)?;
                let key = PrivateKeyDer::from_pem_file(key_file).map_err(|error| {
                    invalid(format!("key_file {}: {error}", key_file.display()))
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|error| {
                    invalid(format!(
                        "cert_file {} with key_file {}: {error}",
                        cert_file.display(),
                        key_file.display()
                    ))
                })?
            }
            (Some(_), None) => return Err(invalid("cert_file is set without key_file".into())),
            (None, Some(_)) => return Err(invalid("key_file is set without cert_file".into())),
        };
        Ok(Arc::new(config))
    }

    /// The name to verify the broker at `address` (`host:port`) against.
    pub(crate) fn server_name_for(&self, address: &str) -> Result<ServerName<'static>, Error> {
        let host = match &self.server_name {
            Some(name) => name.as_str(),
            None => host_of(address),
        };
        ServerName::try_from(host.to_string())
            .map_err(|error| invalid(format!("server name {host:?}: {error}")))
    }
}

/// The host of `host:port` (`[v6]:port` unbracketed).
fn host_of(address: &str) -> &str {
    let host = address.rsplit_once(':').map_or(address, |(host, _)| host);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn invalid(reason: String) -> Error {
    Error::invalid("tls config", reason)
}

fn read_certificates(setting: &str, path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(|iterator| iterator.collect::<Result<Vec<_>, _>>())
        .map_err(|error| invalid(format!("{setting} {}: {error}", path.display())))?;
    if certificates.is_empty() {
        return Err(invalid(format!(
            "{setting} {} holds no CERTIFICATE block",
            path.display()
        )));
    }
    Ok(certificates)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_name_is_the_dialled_host_unless_overridden() {
        assert_eq!(host_of("broker-1.internal:9192"), "broker-1.internal");
        assert_eq!(host_of("127.0.0.1:9192"), "127.0.0.1");
        assert_eq!(host_of("[::1]:9192"), "::1");
        let config = TlsConfig::new("ca.pem");
        assert!(matches!(
            config.server_name_for("127.0.0.1:1").unwrap(),
            ServerName::IpAddress(_)
        ));
        let named = config.with_server_name("localhost");
        assert!(matches!(
            named.server_name_for("127.0.0.1:1").unwrap(),
            ServerName::DnsName(_)
        ));
    }

    #[test]
    fn a_missing_ca_file_is_refused_naming_it() {
        let error = TlsConfig::new("/nonexistent/ca.pem")
            .client_config()
            .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/ca.pem"), "{error}");
    }
}
