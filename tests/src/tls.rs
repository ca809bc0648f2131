//! Certificates for the TLS tests, made with rcgen in a temporary directory: a CA, server
//! certificates for `127.0.0.1` and `localhost` (a current one, a second one for reload tests,
//! an expired one), client certificates (`CN=alice`, a current and an expired one), and a
//! second CA with a client certificate of its own, which the first CA's brokers must refuse.
//! Every file is PEM, as an operator would hand them to the broker.
//!
//! Also a blocking rustls client for tests that look at the handshake itself: which certificate
//! the broker presented, and an HTTPS GET to the admin listener.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// A certificate and its key, written as PEM files.
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// The leaf certificate's DER bytes, to tell which one a broker presented.
    pub der: Vec<u8>,
}

/// The test PKI. The files live as long as it does.
pub struct TestPki {
    pub directory: tempfile::TempDir,
    /// The CA bundle brokers and clients trust.
    pub ca_file: PathBuf,
    /// For `127.0.0.1` and `localhost`, valid now.
    pub server: CertificateFiles,
    /// Another valid server certificate from the same CA (`CN=spate-broker-2`), for reloads.
    pub server_renewed: CertificateFiles,
    /// A server certificate that expired in 2021.
    pub server_expired: CertificateFiles,
    /// A client certificate `CN=alice`, signed by the CA.
    pub client: CertificateFiles,
    /// A client certificate `CN=alice` from the same CA that expired in 2021.
    pub client_expired: CertificateFiles,
    /// A second CA, and a client certificate `CN=mallory` it signed.
    pub other_ca_file: PathBuf,
    pub other_client: CertificateFiles,
    /// A cluster broker's certificate (`CN=spate-cluster-broker`), signed by the CA: for
    /// `localhost` and the test clusters' loopback addresses `127.0.0.1`..=`127.0.0.9`, and good
    /// as a server's and a client's certificate (a broker presents it on its listener and on
    /// its calls to the other brokers).
    pub broker: CertificateFiles,
}

struct Authority {
    certificate: rcgen::Certificate,
    key: KeyPair,
}

impl TestPki {
    pub fn new() -> TestPki {
        let directory = tempfile::tempdir().expect("a temporary directory for certificates");
        let root = directory.path().to_path_buf();
        let authority = new_authority("spate test CA");
        let ca_file = write(&root, "ca.pem", &authority.certificate.pem());
        let other = new_authority("another CA");
        let other_ca_file = write(&root, "other-ca.pem", &other.certificate.pem());
        let server = leaf(
            &root,
            "server",
            &authority,
            "spate-broker",
            Role::Server,
            Validity::Current,
        );
        let server_renewed = leaf(
            &root,
            "server-renewed",
            &authority,
            "spate-broker-2",
            Role::Server,
            Validity::Current,
        );
        let server_expired = leaf(
            &root,
            "server-expired",
            &authority,
            "spate-broker-old",
            Role::Server,
            Validity::Expired,
        );
        let client = leaf(
            &root,
            "client",
            &authority,
            "alice",
            Role::Client,
            Validity::Current,
        );
        let client_expired = leaf(
            &root,
            "client-expired",
            &authority,
            "alice",
            Role::Client,
            Validity::Expired,
        );
        let other_client = leaf(
            &root,
            "other-client",
            &other,
            "mallory",
            Role::Client,
            Validity::Current,
        );
        let broker = leaf(
            &root,
            "broker",
            &authority,
            "spate-cluster-broker",
            Role::Broker,
            Validity::Current,
        );
        TestPki {
            broker,
            directory,
            ca_file,
            server,
            server_renewed,
            server_expired,
            client,
            client_expired,
            other_ca_file,
            other_client,
        }
    }

    /// The broker flags for TLS on one listener (`prefix` "", "kafka-" or "admin-") with
    /// `certificate`, and client certificates required when `client_ca` is given.
    pub fn listener_arguments(
        prefix: &str,
        certificate: &CertificateFiles,
        client_ca: Option<&Path>,
    ) -> Vec<String> {
        let mut arguments = vec![
            format!("--{prefix}tls-cert-file"),
            certificate.cert_file.display().to_string(),
            format!("--{prefix}tls-key-file"),
            certificate.key_file.display().to_string(),
        ];
        if let Some(client_ca) = client_ca {
            arguments.push(format!("--{prefix}tls-client-ca-file"));
            arguments.push(client_ca.display().to_string());
        }
        arguments
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

enum Role {
    Server,
    Client,
    /// Both, for every loopback address a test cluster uses.
    Broker,
}

enum Validity {
    /// rcgen's default: from 1975 to 4096.
    Current,
    /// 2020 to 2021.
    Expired,
}

fn new_authority(name: &str) -> Authority {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().expect("a CA key");
    let certificate = params.self_signed(&key).expect("a self-signed CA");
    Authority { certificate, key }
}

fn leaf(
    root: &Path,
    name: &str,
    authority: &Authority,
    common_name: &str,
    role: Role,
    validity: Validity,
) -> CertificateFiles {
    let mut params = match role {
        Role::Server => {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string()]).expect("server parameters");
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params
        }
        Role::Client => {
            let mut params =
                CertificateParams::new(Vec::<String>::new()).expect("client parameters");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            params
        }
        Role::Broker => {
            let mut params =
                CertificateParams::new(vec!["localhost".to_string()]).expect("broker parameters");
            params.subject_alt_names.extend(
                (1..=9).map(|last| SanType::IpAddress(IpAddr::V4(Ipv4Addr::new(127, 0, 0, last)))),
            );
            params.extended_key_usages = vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ];
            params
        }
    };
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Spate tests");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if let Validity::Expired = validity {
        params.not_before = rcgen::date_time_ymd(2020, 1, 1);
        params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    let key = KeyPair::generate().expect("a leaf key");
    let certificate = params
        .signed_by(&key, &authority.certificate, &authority.key)
        .expect("a signed leaf certificate");
    CertificateFiles {
        cert_file: write(root, &format!("{name}.pem"), &certificate.pem()),
        key_file: write(root, &format!("{name}.key"), &key.serialize_pem()),
        der: certificate.der().to_vec(),
    }
}

fn write(root: &Path, name: &str, contents: &str) -> PathBuf {
    let path = root.join(name);
    std::fs::write(&path, contents).expect("write a PEM file");
    path
}

/// Replaces `target`'s certificate and key files with `source`'s (a renewal as an operator
/// does it: the new contents written over the old paths).
pub fn install(source: &CertificateFiles, target: &CertificateFiles) {
    std::fs::copy(&source.cert_file, &target.cert_file).expect("copy the certificate");
    std::fs::copy(&source.key_file, &target.key_file).expect("copy the key");
}

/// A rustls client config trusting `ca_file`, with an optional client certificate.
pub fn client_config(
    ca_file: &Path,
    client: Option<&CertificateFiles>,
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in CertificateDer::pem_file_iter(ca_file).expect("read the CA file") {
        roots
            .add(certificate.expect("a CA certificate"))
            .expect("a usable CA");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        None => builder.with_no_client_auth(),
        Some(client) => {
            let chain = CertificateDer::pem_file_iter(&client.cert_file)
                .expect("read the client certificate")
                .collect::<Result<Vec<_>, _>>()
                .expect("client certificates");
            let key = PrivateKeyDer::from_pem_file(&client.key_file).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client certificate and key")
        }
    };
    Arc::new(config)
}

/// A blocking TLS connection to `address`, handshake done.
pub fn connect(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let socket = TcpStream::connect(address)?;
    socket.set_read_timeout(Some(Duration::from_secs(30)))?;
    socket.set_write_timeout(Some(Duration::from_secs(30)))?;
    let name = ServerName::IpAddress(address.ip().into());
    let connection = rustls::ClientConnection::new(config, name)
        .map_err(|error| std::io::Error::new(std::io::ErrorKind::InvalidData, error))?;
    let mut stream = rustls::StreamOwned::new(connection, socket);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// The DER bytes of the certificate the broker at `address` presents now.
pub fn presented_certificate(address: SocketAddr, ca_file: &Path) -> Vec<u8> {
    let stream = connect(address, client_config(ca_file, None)).expect("a TLS handshake");
    stream
        .conn
        .peer_certificates()
        .and_then(|chain| chain.first())
        .expect("the broker presents a certificate")
        .to_vec()
}

/// `GET path` over HTTPS; the status line and the body.
pub fn https_get(
    address: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    path: &str,
) -> std::io::Result<(String, String)> {
    let mut stream = connect(address, config)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let mut response = Vec::new();
    match stream.read_to_end(&mut response) {
        Ok(_) => {}
        // The broker closes after its answer; an unclean close after a whole answer is fine.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(error) => return Err(error),
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}
