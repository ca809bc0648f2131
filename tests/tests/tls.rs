//! End-to-end TLS (issue #17): the real broker with certificates made in the test (rcgen),
//! reached by the native client, kcat (librdkafka, over the Kafka listener) and an HTTPS GET
//! to the admin listener; mutual TLS and the principal it yields; mutual TLS with SASL on one
//! listener (Kafka's SASL_SSL with `ssl.client.auth=required`: both required, the SASL login
//! the principal), native and with kcat; the refusals (no client
//! certificate, another CA's, an expired server certificate, plaintext on a TLS port and TLS on
//! a plaintext port), each leaving the broker serving; certificate reload on a file change and
//! on SIGHUP; files that fail the start, naming themselves.
//!
//! kcat must be on the PATH (CI installs it); without it its tests say so and pass.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spate_client::{
    Client, ClientConfig, ConsumerConfig, Error, NewTopic, ProducerConfig, ProducerRecord, StartAt,
    TlsConfig,
};
use spate_tests::broker_process::broker_binary;
use spate_tests::tls::{self as pki, TestPki};
use spate_tests::{Broker, BrokerOptions, TestClient};

mod cli_support;

const WAIT: Duration = Duration::from_secs(60);

fn broker_with(arguments: Vec<String>) -> Broker {
    Broker::start(BrokerOptions {
        arguments,
        ..BrokerOptions::default()
    })
}

fn client(address: SocketAddr, tls: Option<TlsConfig>) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(30),
        tls,
        ..ClientConfig::new(address.to_string()).with_client_id("spate-tls-tests")
    };
    Client::new(config).expect("client config is valid")
}

/// Creates `topic`, produces `values` to it, reads them back and checks they came back whole.
fn produce_and_consume(client: &Client, topic: &str, values: &[Vec<u8>]) {
    client
        .admin()
        .create_topic(NewTopic::new(topic, 2))
        .wait()
        .expect("create the topic");
    let producer = client
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let deliveries: Vec<_> = values
        .iter()
        .enumerate()
        .map(|(number, value)| {
            producer
                .send_blocking(ProducerRecord::new(topic, value).with_partition(number as u32 % 2))
                .expect("record accepted")
        })
        .collect();
    for delivery in deliveries {
        delivery.wait().expect("record delivered");
    }
    producer.close().wait().expect("producer closes");
    let mut consumer = client
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign(topic, None, StartAt::Earliest)
        .wait()
        .expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut read = Vec::new();
    while read.len() < values.len() {
        assert!(
            Instant::now() < deadline,
            "only {} of {} records came back",
            read.len(),
            values.len()
        );
        read.extend(
            consumer
                .poll_owned(Duration::from_millis(200))
                .expect("poll")
                .into_iter()
                .map(|record| record.value.expect("a value").to_vec()),
        );
    }
    let mut expected = values.to_vec();
    expected.sort();
    read.sort();
    assert!(read == expected, "records came back changed");
}

/// Small records and large ones (several TLS records and send buffers each).
fn mixed_values() -> Vec<Vec<u8>> {
    let mut values: Vec<Vec<u8>> = (0..200)
        .map(|number| format!("record-{number}").into_bytes())
        .collect();
    values.extend((0..4u8).map(|number| vec![b'a' + number; 700 * 1024 + number as usize]));
    values
}

/// The refusal a client got, as the error a user sees.
fn tls_refusal(client: &Client) -> Error {
    let error = client
        .admin()
        .list_topics()
        .wait()
        .expect_err("the connection must be refused");
    error.root().clone()
}

#[test]
fn the_native_client_produces_and_consumes_over_tls() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments("", &pki.server, None));
    let client = client(broker.address(), Some(TlsConfig::new(&pki.ca_file)));
    produce_and_consume(&client, "secure", &mixed_values());
    // The same over the name in the certificate rather than its IP address.
    let named = self::client(
        broker.address(),
        Some(TlsConfig::new(&pki.ca_file).with_server_name("localhost")),
    );
    named.admin().list_topics().wait().expect("list topics");
}

#[test]
fn mutual_tls_serves_a_client_of_the_ca_and_names_its_principal() {
    let pki = TestPki::new();
    let mut arguments = TestPki::listener_arguments("", &pki.server, Some(&pki.ca_file));
    arguments.extend([
        "--log-level".into(),
        "info,spate_server::connection=debug".into(),
    ]);
    let mut broker = broker_with(arguments);
    let tls = TlsConfig::new(&pki.ca_file)
        .with_client_certificate(&pki.client.cert_file, &pki.client.key_file);
    let client = client(broker.address(), Some(tls));
    produce_and_consume(&client, "mutual", &mixed_values());
    let lines = broker.wait_for_log_line("TLS client certificate verified");
    let verified = lines
        .iter()
        .find(|line| line.contains("TLS client certificate verified"))
        .unwrap();
    assert!(verified.contains("User:alice"), "{verified}");
}

#[test]
fn mutual_tls_refuses_no_certificate_an_expired_one_and_another_cas_certificate() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments(
        "",
        &pki.server,
        Some(&pki.ca_file),
    ));
    let without = client(broker.address(), Some(TlsConfig::new(&pki.ca_file)));
    let refusal = tls_refusal(&without);
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
    eprintln!("no client certificate: {refusal}");
    let stranger = client(
        broker.address(),
        Some(
            TlsConfig::new(&pki.ca_file)
                .with_client_certificate(&pki.other_client.cert_file, &pki.other_client.key_file),
        ),
    );
    let refusal = tls_refusal(&stranger);
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
    eprintln!("another CA's client certificate: {refusal}");
    // The right CA, the right name, but past its validity: the broker's verifier checks dates.
    let expired =
        client(
            broker.address(),
            Some(TlsConfig::new(&pki.ca_file).with_client_certificate(
                &pki.client_expired.cert_file,
                &pki.client_expired.key_file,
            )),
        );
    let refusal = tls_refusal(&expired);
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
    eprintln!("an expired client certificate: {refusal}");
    // The broker goes on serving its own clients.
    let member = client(
        broker.address(),
        Some(
            TlsConfig::new(&pki.ca_file)
                .with_client_certificate(&pki.client.cert_file, &pki.client.key_file),
        ),
    );
    member.admin().list_topics().wait().expect("list topics");
}

/// The password of the SASL users of the mutual-TLS-plus-SASL test.
const SASL_PASSWORD: &str = "a-password-of-sorts";

/// A client that presents `certificate` (or none) and logs in as `user` with SCRAM-SHA-512.
fn sasl_ssl_client(
    address: SocketAddr,
    pki: &TestPki,
    certificate: Option<&pki::CertificateFiles>,
    user: &str,
    password: &str,
) -> Client {
    let mut tls = TlsConfig::new(&pki.ca_file);
    if let Some(certificate) = certificate {
        tls = tls.with_client_certificate(&certificate.cert_file, &certificate.key_file);
    }
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(20),
        tls: Some(tls),
        ..ClientConfig::new(address.to_string())
            .with_client_id("spate-tls-tests")
            .with_sasl(spate_client::SaslMechanism::ScramSha512, user, password)
    };
    Client::new(config).expect("client config is valid")
}

fn allow_user(admin: &Client, user: &str, topic: &str, operations: &[spate_client::Operation]) {
    let bindings: Vec<spate_client::AclBinding> = operations
        .iter()
        .map(|operation| spate_client::AclBinding {
            resource_type: spate_client::ResourceType::Topic,
            resource_name: topic.to_string(),
            pattern: spate_client::PatternType::Literal,
            principal: format!("User:{user}"),
            host: "*".to_string(),
            operation: *operation,
            permission: spate_client::Permission::Allow,
        })
        .collect();
    for outcome in admin
        .admin()
        .create_acls(&bindings)
        .wait()
        .expect("create acls")
    {
        outcome.expect("the binding is created");
    }
}

fn produce_one(client: &Client, topic: &str) -> Result<(), Error> {
    let producer = client
        .producer(ProducerConfig {
            idempotence: false,
            ..ProducerConfig::default()
        })
        .expect("producer config is valid");
    let delivery =
        producer.send_blocking(ProducerRecord::new(topic, b"value").with_partition(0))?;
    producer.flush().wait()?;
    delivery.wait().map(|_| ())
}

/// Kafka's SASL_SSL with `ssl.client.auth=required` on one listener: the client certificate
/// is required (no certificate: refused at the handshake, before any password is sent), and
/// the SASL login, not the certificate's CN, decides the principal whose ACLs apply.
/// A broker whose listener `prefix` ("" native, "kafka-" Kafka) has TLS with required client
/// certificates and SCRAM-SHA-512, so authorization on; users `admin` (super user), `bob` and
/// `alice` (also the test certificate's CN), created offline. On the Kafka variant the native
/// listener stays plain and its `User:ANONYMOUS` a super user, the test's own view.
fn sasl_ssl_broker(pki: &TestPki, prefix: &str) -> Broker {
    let mut broker = broker_with(Vec::new());
    broker.terminate();
    for user in ["admin", "bob", "alice"] {
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(broker.data_dir())
            .args(["--name", user, "--password", SASL_PASSWORD])
            .args(["--mechanism", "SCRAM-SHA-512"])
            .output()
            .expect("run spate-broker user create");
        assert!(
            created.status.success(),
            "user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let super_users = if prefix.is_empty() {
        "User:admin"
    } else {
        "User:admin,User:ANONYMOUS"
    };
    let mut arguments = TestPki::listener_arguments(prefix, &pki.server, Some(&pki.ca_file));
    arguments.extend([
        format!("--{prefix}sasl-mechanisms"),
        "SCRAM-SHA-512".into(),
        "--super-users".into(),
        super_users.into(),
    ]);
    broker.restart_with(BrokerOptions {
        arguments,
        ..BrokerOptions::default()
    });
    broker
}

/// Topics `bobs` and `alices`, each writable by the user it is named for.
fn bobs_and_alices(admin: &Client) {
    for topic in ["bobs", "alices"] {
        admin
            .admin()
            .create_topic(NewTopic::new(topic, 1))
            .wait()
            .expect("the super user creates a topic");
    }
    let write = [
        spate_client::Operation::Write,
        spate_client::Operation::Describe,
    ];
    allow_user(admin, "bob", "bobs", &write);
    allow_user(admin, "alice", "alices", &write);
}

fn latest_offset(admin: &Client, topic: &str) -> Option<u64> {
    admin
        .admin()
        .list_offsets(topic, Some(&[0]), spate_client::OffsetSpec::Latest)
        .wait()
        .expect("list offsets")[0]
        .offset
}

/// Kafka's SASL_SSL with `ssl.client.auth=required` on one listener: the client certificate
/// is required (no certificate: refused at the handshake, before any password is sent), and
/// the SASL login, not the certificate's CN, decides the principal whose ACLs apply.
#[test]
fn mutual_tls_with_sasl_requires_both_and_the_sasl_login_is_the_principal() {
    let pki = TestPki::new();
    let broker = sasl_ssl_broker(&pki, "");
    let address = broker.address();
    let certificate = Some(&pki.client);

    let admin = sasl_ssl_client(address, &pki, certificate, "admin", SASL_PASSWORD);
    bobs_and_alices(&admin);

    // Both: bob's ACLs apply, not those of the certificate's CN=alice.
    let bob = sasl_ssl_client(address, &pki, certificate, "bob", SASL_PASSWORD);
    produce_one(&bob, "bobs").expect("bob writes where bob may");
    let refused = produce_one(&bob, "alices").unwrap_err();
    match refused.root() {
        Error::NotAuthorized { resource, .. } => assert_eq!(resource.name, "alices", "{refused}"),
        other => panic!("expected bob refused on alices, got: {other}"),
    }

    // No certificate: the TLS handshake is refused, whatever the password.
    let without = sasl_ssl_client(address, &pki, None, "bob", SASL_PASSWORD);
    let refusal = tls_refusal(&without);
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");

    // The certificate but a wrong password: the SASL login is refused (the certificate alone
    // does not authenticate a SASL listener).
    let wrong = sasl_ssl_client(address, &pki, certificate, "bob", "not-the-password");
    let refusal = tls_refusal(&wrong);
    assert!(
        matches!(refusal, Error::Authentication { .. }),
        "{refusal:?}"
    );

    // Nothing was written by the refused attempts.
    assert_eq!(latest_offset(&admin, "bobs"), Some(1));
    assert_eq!(latest_offset(&admin, "alices"), Some(0));
}

/// One record produced by kcat over SASL_SSL as `user`, presenting the test client certificate
/// when `with_certificate`.
fn kcat_sasl_ssl_produce(
    broker: &Broker,
    pki: &TestPki,
    with_certificate: bool,
    user: &str,
    password: &str,
    topic: &str,
) -> std::process::Output {
    let mut command = Command::new("kcat");
    command
        .args(["-P", "-b", &broker.kafka_address().to_string()])
        .args(["-t", topic, "-p", "0"])
        .args(["-X", "security.protocol=sasl_ssl"])
        .args(["-X", &format!("ssl.ca.location={}", pki.ca_file.display())])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")])
        .args(["-X", "message.timeout.ms=10000"]);
    if with_certificate {
        command
            .args([
                "-X",
                &format!(
                    "ssl.certificate.location={}",
                    pki.client.cert_file.display()
                ),
            ])
            .args([
                "-X",
                &format!("ssl.key.location={}", pki.client.key_file.display()),
            ]);
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut input = child.stdin.take().expect("kcat's input");
    writeln!(input, "from-{user}").expect("write to kcat");
    drop(input);
    child.wait_with_output().expect("kcat ends")
}

/// The same on the Kafka listener with a real client (kcat, librdkafka's SASL_SSL).
#[test]
fn kcat_over_sasl_ssl_needs_the_certificate_and_the_password_and_acts_as_the_sasl_user() {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("SKIPPED: kcat (librdkafka's command-line client) is not on the PATH");
        return;
    }
    let pki = TestPki::new();
    let broker = sasl_ssl_broker(&pki, "kafka-");
    let admin = client(broker.address(), None);
    bobs_and_alices(&admin);

    let produced = kcat_sasl_ssl_produce(&broker, &pki, true, "bob", SASL_PASSWORD, "bobs");
    assert!(
        produced.status.success(),
        "bob with the certificate and his password: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    // CN=alice's certificate does not make bob alice.
    let refused = kcat_sasl_ssl_produce(&broker, &pki, true, "bob", SASL_PASSWORD, "alices");
    assert!(!refused.status.success(), "bob may not write to alices");
    let errors = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(
        errors.contains("topic authorization failed")
            || errors.contains("topic_authorization_failed"),
        "{errors}"
    );
    let no_certificate = kcat_sasl_ssl_produce(&broker, &pki, false, "bob", SASL_PASSWORD, "bobs");
    assert!(!no_certificate.status.success(), "no certificate, no entry");
    let errors = String::from_utf8_lossy(&no_certificate.stderr).to_lowercase();
    assert!(
        errors.contains("ssl"),
        "refused at the TLS handshake: {errors}"
    );
    let wrong_password =
        kcat_sasl_ssl_produce(&broker, &pki, true, "bob", "not-the-password", "bobs");
    assert!(!wrong_password.status.success(), "a wrong password fails");
    let errors = String::from_utf8_lossy(&wrong_password.stderr).to_lowercase();
    assert!(errors.contains("authentication"), "{errors}");
    assert_eq!(latest_offset(&admin, "bobs"), Some(1));
    assert_eq!(latest_offset(&admin, "alices"), Some(0));
}

#[test]
fn an_expired_or_untrusted_server_certificate_is_refused_by_the_client() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments("", &pki.server_expired, None));
    let refusal = tls_refusal(&client(
        broker.address(),
        Some(TlsConfig::new(&pki.ca_file)),
    ));
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
    assert!(
        refusal.to_string().to_lowercase().contains("expired"),
        "{refusal}"
    );
    let untrusting = client(broker.address(), Some(TlsConfig::new(&pki.other_ca_file)));
    let refusal = tls_refusal(&untrusting);
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_closed_and_the_broker_keeps_serving() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments("", &pki.server, None));
    // The native protocol's own client library, without TLS (impatient: a lost connection is
    // retriable, and would be retried for the whole retry timeout).
    let plaintext = Client::new(ClientConfig {
        retry_timeout: Duration::from_secs(1),
        ..ClientConfig::new(broker.address().to_string())
    })
    .unwrap();
    let refusal = tls_refusal(&plaintext);
    assert!(
        refusal.is_unreachable() || matches!(refusal, Error::ConnectionLost { .. }),
        "{refusal:?}"
    );
    eprintln!("plaintext client on a TLS port: {refusal}");
    // Raw bytes: the broker answers with a TLS alert at most, then closes; it never hangs.
    let mut raw = TcpStream::connect(broker.address()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(&[0, 0, 0, 12, 0, 18, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0])
        .unwrap();
    let mut answer = Vec::new();
    let closed = raw.read_to_end(&mut answer);
    assert!(
        closed.is_ok()
            || closed.as_ref().unwrap_err().kind() == std::io::ErrorKind::ConnectionReset,
        "the broker did not close the connection: {closed:?}"
    );
    assert!(
        answer.len() < 64,
        "a plaintext client got {} bytes",
        answer.len()
    );
    // TLS clients are still served.
    let client = client(broker.address(), Some(TlsConfig::new(&pki.ca_file)));
    client.admin().list_topics().wait().expect("list topics");
}

#[test]
fn a_silent_client_on_a_tls_port_is_closed_after_the_handshake_timeout() {
    let pki = TestPki::new();
    let mut arguments = TestPki::listener_arguments("", &pki.server, None);
    arguments.extend(["--tls-handshake-timeout-ms".into(), "500".into()]);
    let broker = broker_with(arguments);
    let mut silent = TcpStream::connect(broker.address()).unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let started = Instant::now();
    let mut answer = Vec::new();
    let closed = silent.read_to_end(&mut answer);
    assert!(closed.is_ok(), "{closed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "closed only after {:?}",
        started.elapsed()
    );
}

#[test]
fn a_tls_client_on_a_plaintext_port_is_closed_and_the_broker_keeps_serving() {
    let pki = TestPki::new();
    let broker = broker_with(Vec::new());
    let refusal = tls_refusal(&client(
        broker.address(),
        Some(TlsConfig::new(&pki.ca_file)),
    ));
    assert!(matches!(refusal, Error::Tls { .. }), "{refusal:?}");
    let handshake = pki::connect(broker.address(), pki::client_config(&pki.ca_file, None));
    assert!(handshake.is_err(), "a TLS handshake with a plaintext port");
    let mut plain = TestClient::connect(broker.address());
    plain.create_topic("still-serving", 1, &[]);
}

#[test]
fn kcat_produces_and_consumes_over_tls_on_the_kafka_listener() {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        eprintln!("SKIPPED: kcat (librdkafka's command-line client) is not on the PATH");
        return;
    }
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments("kafka-", &pki.server, None));
    let bootstrap = broker.kafka_address().to_string();
    let ca = pki.ca_file.display().to_string();
    let ssl = [
        "-X",
        "security.protocol=ssl",
        "-X",
        &format!("ssl.ca.location={ca}"),
    ];
    let lines: Vec<String> = (0..100).map(|number| format!("line-{number}")).collect();
    let mut producer = Command::new("kcat")
        .args(["-P", "-b", &bootstrap, "-t", "kcat-tls", "-p", "0"])
        .args(ssl)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    {
        let mut input = producer.stdin.take().unwrap();
        for line in &lines {
            writeln!(input, "{line}").unwrap();
        }
    }
    let produced = producer.wait_with_output().expect("kcat produces");
    assert!(
        produced.status.success(),
        "kcat could not produce over TLS: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    let consumed = Command::new("kcat")
        .args(["-C", "-b", &bootstrap, "-t", "kcat-tls", "-p", "0"])
        .args(["-o", "beginning", "-e", "-q", "-f", "%s\\n"])
        .args(ssl)
        .stdin(Stdio::null())
        .output()
        .expect("run the kcat consumer");
    assert!(
        consumed.status.success(),
        "kcat could not consume over TLS: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let read: Vec<String> = String::from_utf8(consumed.stdout)
        .unwrap()
        .lines()
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(read, lines);
    // Without TLS, kcat gets nowhere on that port.
    let refused = Command::new("kcat")
        .args(["-L", "-b", &bootstrap, "-m", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat -L");
    assert!(
        !refused.status.success(),
        "plaintext metadata from a TLS listener"
    );

    // Mutual TLS on the Kafka listener: kcat with the CA's client certificate is served,
    // without one it is refused.
    let mutual = broker_with(TestPki::listener_arguments(
        "kafka-",
        &pki.server,
        Some(&pki.ca_file),
    ));
    let bootstrap = mutual.kafka_address().to_string();
    let cert = format!(
        "ssl.certificate.location={}",
        pki.client.cert_file.display()
    );
    let key = format!("ssl.key.location={}", pki.client.key_file.display());
    let listed = Command::new("kcat")
        .args(["-L", "-b", &bootstrap, "-m", "10"])
        .args(ssl)
        .args(["-X", &cert, "-X", &key])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat -L");
    assert!(
        listed.status.success(),
        "kcat with a client certificate was refused: {}",
        String::from_utf8_lossy(&listed.stderr)
    );
    let refused = Command::new("kcat")
        .args(["-L", "-b", &bootstrap, "-m", "5"])
        .args(ssl)
        .stdin(Stdio::null())
        .output()
        .expect("run kcat -L");
    assert!(
        !refused.status.success(),
        "kcat without a client certificate was served"
    );
}

#[test]
fn the_admin_listener_serves_https_and_requires_client_certificates_when_told() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments("admin-", &pki.server, None));
    let (status, body) = pki::https_get(
        broker.admin_address(),
        pki::client_config(&pki.ca_file, None),
        "/metrics",
    )
    .expect("an HTTPS GET");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("spate_"), "{body}");
    // Plain HTTP on the HTTPS port: closed, no answer.
    let mut plain = TcpStream::connect(broker.admin_address()).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!String::from_utf8_lossy(&answer).contains("200 OK"));

    let mutual = broker_with(TestPki::listener_arguments(
        "admin-",
        &pki.server,
        Some(&pki.ca_file),
    ));
    let refused = pki::https_get(
        mutual.admin_address(),
        pki::client_config(&pki.ca_file, None),
        "/v1/health",
    );
    assert!(
        refused.is_err(),
        "answered without a client certificate: {refused:?}"
    );
    let (status, _) = pki::https_get(
        mutual.admin_address(),
        pki::client_config(&pki.ca_file, Some(&pki.client)),
        "/v1/health",
    )
    .expect("an HTTPS GET with a client certificate");
    assert_eq!(status, "HTTP/1.1 200 OK");
}

/// Waits until new connections to `address` get the certificate `der`.
fn wait_for_presented(address: SocketAddr, ca_file: &std::path::Path, der: &[u8]) {
    let deadline = Instant::now() + WAIT;
    while pki::presented_certificate(address, ca_file) != der {
        assert!(
            Instant::now() < deadline,
            "the broker kept its old certificate"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn certificates_are_reloaded_when_their_files_change_and_a_broken_file_keeps_the_old_ones() {
    let pki = TestPki::new();
    let live = pki::CertificateFiles {
        cert_file: pki.directory.path().join("live.pem"),
        key_file: pki.directory.path().join("live.key"),
        der: Vec::new(),
    };
    pki::install(&pki.server, &live);
    let mut arguments = TestPki::listener_arguments("", &live, None);
    arguments.extend(["--tls-reload-check-interval-ms".into(), "200".into()]);
    let mut broker = broker_with(arguments);
    assert_eq!(
        pki::presented_certificate(broker.address(), &pki.ca_file),
        pki.server.der
    );
    // An open connection is not disturbed by the reload.
    let open = client(broker.address(), Some(TlsConfig::new(&pki.ca_file)));
    open.admin().list_topics().wait().expect("list topics");
    pki::install(&pki.server_renewed, &live);
    wait_for_presented(broker.address(), &pki.ca_file, &pki.server_renewed.der);
    open.admin()
        .list_topics()
        .wait()
        .expect("the open connection goes on");
    broker.wait_for_log_line("TLS certificates reloaded");

    // A key that is not the certificate's: refused, the renewed pair stays in force.
    std::fs::copy(&pki.client.key_file, &live.key_file).unwrap();
    broker.wait_for_log_line("TLS certificates not reloaded");
    assert_eq!(
        pki::presented_certificate(broker.address(), &pki.ca_file),
        pki.server_renewed.der
    );
}

#[test]
fn sighup_reloads_certificates_at_once() {
    let pki = TestPki::new();
    let live = pki::CertificateFiles {
        cert_file: pki.directory.path().join("live.pem"),
        key_file: pki.directory.path().join("live.key"),
        der: Vec::new(),
    };
    pki::install(&pki.server, &live);
    let mut arguments = TestPki::listener_arguments("kafka-", &live, None);
    // No periodic look during the test: only the signal can reload.
    arguments.extend(["--tls-reload-check-interval-ms".into(), "3600000".into()]);
    let mut broker = broker_with(arguments);
    assert_eq!(
        pki::presented_certificate(broker.kafka_address(), &pki.ca_file),
        pki.server.der
    );
    pki::install(&pki.server_renewed, &live);
    // SAFETY: sends a signal to the broker process this test started and still owns.
    let sent = unsafe { libc::kill(broker.pid() as libc::pid_t, libc::SIGHUP) };
    assert_eq!(sent, 0);
    broker.wait_for_log_line("TLS certificates reloaded");
    assert_eq!(
        pki::presented_certificate(broker.kafka_address(), &pki.ca_file),
        pki.server_renewed.der
    );
    assert!(broker.is_running(), "SIGHUP must not stop the broker");
}

/// Runs the broker with `arguments` until it exits; its exit code and log.
fn failed_start(arguments: &[String]) -> (Option<i32>, String) {
    let data_dir = tempfile::tempdir().unwrap();
    let output = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "none"])
        .args(["--admin-listen", "none", "--shards", "1"])
        .args(arguments)
        .env_remove("SPATE_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run the broker");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn missing_invalid_or_half_configured_tls_files_fail_the_start_naming_them() {
    let pki = TestPki::new();
    let missing = pki.directory.path().join("missing.pem");
    let (code, log) = failed_start(&[
        "--tls-cert-file".into(),
        missing.display().to_string(),
        "--tls-key-file".into(),
        pki.server.key_file.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains(&missing.display().to_string()), "{log}");

    // A key file given as the certificate: no CERTIFICATE block.
    let (code, log) = failed_start(&[
        "--tls-cert-file".into(),
        pki.server.key_file.display().to_string(),
        "--tls-key-file".into(),
        pki.server.key_file.display().to_string(),
    ]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("CERTIFICATE"), "{log}");

    let (code, log) = failed_start(&[
        "--tls-cert-file".into(),
        pki.server.cert_file.display().to_string(),
    ]);
    assert_eq!(code, Some(2), "{log}");
    assert!(log.contains("tls_key_file"), "{log}");
}

#[test]
fn a_plaintext_listener_on_a_non_loopback_address_is_warned_about() {
    let mut broker = broker_with(vec!["--kafka-listen".into(), "0.0.0.0:0".into()]);
    let lines = broker.wait_for_log_line("plaintext listener binds a non-loopback address");
    let warning = lines
        .iter()
        .find(|line| line.contains("plaintext listener binds"))
        .unwrap();
    assert!(warning.contains("kafka"), "{warning}");
    assert!(
        !lines
            .iter()
            .any(|line| line.contains("plaintext listener binds") && line.contains("native")),
        "the native listener is on 127.0.0.1"
    );
}

#[test]
fn the_spate_tool_talks_tls_and_mutual_tls_with_its_global_flags() {
    let pki = TestPki::new();
    let broker = broker_with(TestPki::listener_arguments(
        "",
        &pki.server,
        Some(&pki.ca_file),
    ));
    let ca = pki.ca_file.display().to_string();
    let cert = pki.client.cert_file.display().to_string();
    let key = pki.client.key_file.display().to_string();
    let tls = [
        "--tls-ca",
        ca.as_str(),
        "--tls-cert",
        cert.as_str(),
        "--tls-key",
        key.as_str(),
    ];
    let mut create = tls.to_vec();
    create.extend(["topic", "create", "cli-tls"]);
    cli_support::spate(broker.address(), &create, b"").ok();
    let mut produce = tls.to_vec();
    produce.extend(["produce", "cli-tls"]);
    cli_support::spate(broker.address(), &produce, b"one\ntwo\n").ok();
    let mut consume = tls.to_vec();
    consume.extend(["consume", "cli-tls", "-o", "beginning", "-e"]);
    let read = cli_support::spate(broker.address(), &consume, b"").ok();
    assert_eq!(read.lines().collect::<Vec<_>>(), ["one", "two"]);
    // Without the client certificate the broker refuses, and the tool says it was TLS.
    let refused = cli_support::spate(broker.address(), &["--tls-ca", &ca, "topic", "list"], b"")
        .fails_with(1);
    assert!(refused.contains("TLS"), "{refused}");
    // Half the flags: a usage error.
    cli_support::spate(
        broker.address(),
        &["--tls-cert", &cert, "topic", "list"],
        b"",
    )
    .fails_with(2);
}
