//! TLS on the broker's listeners (native, Kafka, admin HTTP), with rustls and its `ring`
//! provider.
//!
//! - `ListenerCertificates` (this file): one listener's rustls `ServerConfig`, built from its
//!   PEM files (`config::ListenerTls`), shared by every shard, and rebuilt when the files
//!   change. A connection takes the current config when it is accepted, so a reload applies to
//!   new connections and leaves open ones as they are; a reload whose files do not build keeps
//!   the config in force and logs why.
//! - `reload`: the thread that looks at the files every `tls_reload_check_interval_ms` and on
//!   SIGHUP.
//! - `session`: the handshake and the TLS session a connection's reader and writer share.
//! - `principal`: `User:<CN>` of a verified client certificate (mutual TLS).
//! - `ConnectionStream` (this file): what the connection loop, the admin listener and the calls
//!   to other brokers (`peer`) read and write, plaintext or TLS. Plaintext keeps the zero-copy
//!   vectored `sendmsg` of `write`.
//! - `client_config` (this file): the rustls `ClientConfig` of calls to other brokers
//!   (`inter_broker_tls_ca_file`, and this broker's own certificate as the client's).
//!
//! Authentication beyond the certificate (SASL) and authorization are not here.

pub mod principal;
pub mod reload;
pub mod session;

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::SystemTime;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::config::ListenerTls;
use crate::connection::SharedStream;
pub use session::{HandshakeError, SharedTlsStream, TlsPeer};

/// Why a listener's TLS configuration could not be built. Each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{listener} listener: cannot read {what} {path}: {source}")]
    ReadFile {
        listener: &'static str,
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{listener} listener: {what} {path} is not valid PEM: {message}")]
    Pem {
        listener: &'static str,
        what: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("{listener} listener: {what} {path} holds no {expected}")]
    Empty {
        listener: &'static str,
        what: &'static str,
        path: PathBuf,
        expected: &'static str,
    },
    #[error("{listener} listener: client CA file {path}: {message}")]
    ClientCa {
        listener: &'static str,
        path: PathBuf,
        message: String,
    },
    #[error("inter-broker CA file {path}: {message}")]
    PeerCa { path: PathBuf, message: String },
    #[error("{listener} listener: certificate {cert_file} with key {key_file}: {source}")]
    Certificate {
        listener: &'static str,
        cert_file: PathBuf,
        key_file: PathBuf,
        source: Box<rustls::Error>,
    },
}

/// The crypto provider of every TLS config the broker builds: `ring`, not rustls' default
/// aws-lc-rs (a C build with cmake, twice the compile), named here so no process-wide default
/// needs installing.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds `files`' `ServerConfig`, reading and checking every file.
pub fn server_config(
    listener: &'static str,
    files: &ListenerTls,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = read_certificates(listener, "certificate file", &files.cert_file)?;
    let key = read_private_key(listener, &files.key_file)?;
    let provider = crypto_provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Certificate {
            listener,
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
            source: Box::new(source),
        })?;
    let builder = match &files.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(client_ca_file) => {
            let authorities = read_certificates(listener, "client CA file", client_ca_file)?;
            let mut roots = RootCertStore::empty();
            for authority in authorities {
                roots.add(authority).map_err(|error| TlsError::ClientCa {
                    listener,
                    path: client_ca_file.clone(),
                    message: error.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|error| TlsError::ClientCa {
                    listener,
                    path: client_ca_file.clone(),
                    message: error.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    // Checks that the key is the leaf certificate's.
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Certificate {
            listener,
            cert_file: files.cert_file.clone(),
            key_file: files.key_file.clone(),
            source: Box::new(source),
        })?;
    Ok(Arc::new(config))
}

/// Builds the `ClientConfig` of this broker's calls to other brokers: their native listener's
/// certificate is verified against `ca_file` (for the host name the call goes to), and
/// `identity`, this broker's own native listener certificate and key, is presented as the
/// client certificate (a listener with mutual TLS requires one; Kafka's inter-broker SSL
/// presents the broker keystore the same way).
pub fn client_config(
    ca_file: &Path,
    identity: Option<&ListenerTls>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let listener = "native";
    let authorities = read_certificates(listener, "inter-broker CA file", ca_file)?;
    let mut roots = RootCertStore::empty();
    for authority in authorities {
        roots.add(authority).map_err(|error| TlsError::PeerCa {
            path: ca_file.to_path_buf(),
            message: error.to_string(),
        })?;
    }
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| TlsError::PeerCa {
            path: ca_file.to_path_buf(),
            message: error.to_string(),
        })?
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some(files) => {
            let chain = read_certificates(listener, "certificate file", &files.cert_file)?;
            let key = read_private_key(listener, &files.key_file)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Certificate {
                    listener,
                    cert_file: files.cert_file.clone(),
                    key_file: files.key_file.clone(),
                    source: Box::new(source),
                })?
        }
    };
    Ok(Arc::new(config))
}

/// `User:<CN>` of the leaf certificate in `cert_file` (the native listener's): the principal a
/// broker presenting it as its client certificate has on another broker's listener.
pub fn certificate_file_principal(cert_file: &Path) -> Result<Option<String>, TlsError> {
    let chain = read_certificates("native", "certificate file", cert_file)?;
    Ok(chain
        .first()
        .and_then(|leaf| principal::certificate_principal(leaf.as_ref())))
}

fn read_file(listener: &'static str, what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::ReadFile {
        listener,
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn read_certificates(
    listener: &'static str,
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(listener, what, path)?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            listener,
            what,
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(TlsError::Empty {
            listener,
            what,
            path: path.to_path_buf(),
            expected: "CERTIFICATE block",
        });
    }
    Ok(certificates)
}

fn read_private_key(
    listener: &'static str,
    path: &Path,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let what = "key file";
    let pem = read_file(listener, what, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|error| match error {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            listener,
            what,
            path: path.to_path_buf(),
            expected: "PRIVATE KEY block (PKCS#8, PKCS#1 or SEC1)",
        },
        error => TlsError::Pem {
            listener,
            what,
            path: path.to_path_buf(),
            message: error.to_string(),
        },
    })
}

/// What identifies one version of a file: a change of any part is a change of the file (an
/// editor's rename changes the inode, a copy over it the time and usually the size).
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileStamp {
    modified: Option<SystemTime>,
    length_bytes: u64,
    inode: u64,
    device: u64,
}

impl FileStamp {
    /// `None` when the file cannot be looked at (being replaced, say): a change too.
    fn of(path: &Path) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        // Follows symbolic links: a Kubernetes secret volume swaps the link's target.
        let metadata = std::fs::metadata(path).ok()?;
        Some(FileStamp {
            modified: metadata.modified().ok(),
            length_bytes: metadata.len(),
            inode: metadata.ino(),
            device: metadata.dev(),
        })
    }
}

/// One TLS listener's certificates: the config in force, shared by every shard (an `Arc`,
/// read once per accepted connection) and replaced by the reload thread.
#[derive(Debug)]
pub struct ListenerCertificates {
    /// "native", "kafka" or "admin", for errors and logs.
    pub listener: &'static str,
    files: ListenerTls,
    current: RwLock<Arc<ServerConfig>>,
    /// The files as last looked at (certificate, key, client CA).
    stamps: Mutex<Vec<Option<FileStamp>>>,
}

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadCause {
    /// The periodic look found a file changed.
    FilesChanged,
    /// SIGHUP: rebuild even if the files look the same.
    Hangup,
}

impl ListenerCertificates {
    /// Builds the listener's config from its files; an error fails the broker's start.
    pub fn load(listener: &'static str, files: &ListenerTls) -> Result<Arc<Self>, TlsError> {
        let stamps = Self::stamp_files(files);
        let config = server_config(listener, files)?;
        Ok(Arc::new(ListenerCertificates {
            listener,
            files: files.clone(),
            current: RwLock::new(config),
            stamps: Mutex::new(stamps),
        }))
    }

    /// The config new connections use now.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Rebuilds and publishes the config when a file changed since the last look (or always,
    /// for SIGHUP). `Ok(false)`: nothing to do; an error leaves the config in force.
    pub fn reload(&self, cause: ReloadCause) -> Result<bool, TlsError> {
        let stamps = Self::stamp_files(&self.files);
        {
            let mut seen = self
                .stamps
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if cause == ReloadCause::FilesChanged && *seen == stamps {
                return Ok(false);
            }
            // Remembered even if the build fails: a half-written pair is tried again when the
            // second file lands (its stamp changes), not every few seconds meanwhile.
            *seen = stamps;
        }
        let config = server_config(self.listener, &self.files)?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = config;
        Ok(true)
    }

    fn stamp_files(files: &ListenerTls) -> Vec<Option<FileStamp>> {
        [
            Some(files.cert_file.as_path()),
            Some(files.key_file.as_path()),
            files.client_ca_file.as_deref(),
        ]
        .into_iter()
        .flatten()
        .map(FileStamp::of)
        .collect()
    }
}

/// A connection's byte stream, plaintext or TLS, shared by its reader and writer tasks (each
/// borrows it only while polling).
#[derive(Clone)]
pub enum ConnectionStream {
    Plain(SharedStream),
    Tls(SharedTlsStream),
}

impl ConnectionStream {
    /// Writes every chunk, in order, completely: plaintext with vectored `sendmsg` straight
    /// from the chunks, TLS through one encrypting copy.
    pub async fn write_chunks(&mut self, chunks: &[Bytes]) -> io::Result<()> {
        match self {
            ConnectionStream::Plain(stream) => crate::write::write_chunks(stream, chunks).await,
            ConnectionStream::Tls(stream) => stream.write_chunks(chunks).await,
        }
    }

    /// Shuts the socket down both ways (after close_notify, if the socket takes it, on TLS).
    pub fn shut_down(&self) {
        match self {
            ConnectionStream::Plain(stream) => {
                use std::os::fd::{AsRawFd, BorrowedFd};
                // SAFETY: the descriptor is the open socket owned by the shared stream, alive
                // for this borrow.
                let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
                let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
            }
            ConnectionStream::Tls(stream) => stream.shut_down(),
        }
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            ConnectionStream::Plain(stream) => stream.0.borrow().peer_addr().ok(),
            ConnectionStream::Tls(stream) => stream.peer_addr(),
        }
    }
}

impl AsyncRead for ConnectionStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        target: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnectionStream::Plain(stream) => Pin::new(stream).poll_read(context, target),
            ConnectionStream::Tls(stream) => Pin::new(stream).poll_read(context, target),
        }
    }
}

impl AsyncWrite for ConnectionStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        source: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ConnectionStream::Plain(stream) => Pin::new(stream).poll_write(context, source),
            ConnectionStream::Tls(stream) => Pin::new(stream).poll_write(context, source),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnectionStream::Plain(stream) => Pin::new(stream).poll_flush(context),
            ConnectionStream::Tls(stream) => Pin::new(stream).poll_flush(context),
        }
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ConnectionStream::Plain(stream) => Pin::new(stream).poll_close(context),
            ConnectionStream::Tls(stream) => Pin::new(stream).poll_close(context),
        }
    }
}

/// Opens an accepted socket for serving: plaintext as it is, TLS after a handshake under
/// `timeout` (racing `stopped`, shutdown). `Err`: the handshake failed and the socket is closed.
pub async fn open(
    stream: glommio::net::TcpStream,
    certificates: Option<&ListenerCertificates>,
    timeout: std::time::Duration,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<(ConnectionStream, TlsPeer), HandshakeError> {
    match certificates {
        None => Ok((
            ConnectionStream::Plain(SharedStream(std::rc::Rc::new(std::cell::RefCell::new(
                stream,
            )))),
            TlsPeer::default(),
        )),
        Some(certificates) => {
            let (stream, peer) =
                session::accept(stream, certificates.server_config(), timeout, stopped).await?;
            Ok((ConnectionStream::Tls(stream), peer))
        }
    }
}
