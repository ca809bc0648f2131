//! Re-authentication (issue #17, Kafka's KIP-368, `connections_max_reauth_ms`): the lifetime each
//! listener answers, a session that authenticates again keeping its connection, one that does not
//! being closed at its next request, another principal refused; `spate-client`'s producer and
//! consumer re-authenticating in place over several lifetimes; the Java client re-authenticating
//! on its own while it produces for several lifetimes; and librdkafka (kcat) where its version
//! has KIP-368 (2.2 and later).
//!
//! Needs kcat on the PATH and, for the Java case, a JDK, Maven and kafka-clients in `~/.m2`
//! (`tests/compat/java-transactions/install.sh`): a missing tool fails the test, it never skips
//! because of one. An old librdkafka is reported and its case left out, since it cannot
//! re-authenticate at all.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_client::{
    Client, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, SaslMechanism,
    StartAt,
};
use spate_kafka_protocol::kafka_protocol::messages::{
    MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_protocol::api::{
    ListTopicsRequest, SaslAuthenticateRequest as NativeAuthenticate,
    SaslHandshakeRequest as NativeHandshake,
};
use spate_protocol::ErrorCode;
use spate_security::{ScramClient, ScramMechanism};
use spate_tests::broker_process::broker_binary;
use spate_tests::{java, Broker, BrokerOptions, KafkaTestClient, TestClient};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const BOB: &str = "bob";
const BOB_PASSWORD: &str = "bob-secret";

// Kafka's error code.
const SASL_AUTHENTICATION_FAILED: i16 = 58;

/// A broker whose native and Kafka listeners require SCRAM (and PLAIN), with `admin` and `bob`
/// created offline, and authentications that last `lifetime`.
fn broker_with_lifetime(lifetime: Duration) -> Broker {
    let mut broker = Broker::start(BrokerOptions::default());
    broker.terminate();
    for (user, password) in [(ADMIN, ADMIN_PASSWORD), (BOB, BOB_PASSWORD)] {
        for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let created = Command::new(broker_binary())
                .args(["user", "create", "--data-dir"])
                .arg(broker.data_dir())
                .args(["--name", user, "--password", password])
                .args(["--mechanism", mechanism])
                .output()
                .expect("run spate-broker user create");
            assert!(
                created.status.success(),
                "{}",
                String::from_utf8_lossy(&created.stderr)
            );
        }
    }
    broker.restart_with(BrokerOptions {
        shards: 2,
        arguments: vec![
            "--sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-512".into(),
            "--kafka-sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin,User:bob".into(),
            "--connections-max-reauth-ms".into(),
            lifetime.as_millis().to_string(),
        ],
        ..BrokerOptions::default()
    });
    broker
}

/// One Kafka SCRAM-SHA-512 exchange on `client` (a handshake and two SaslAuthenticate v2): the
/// last answer's error code, message and session lifetime.
fn kafka_login(
    client: &mut KafkaTestClient,
    user: &str,
    password: &str,
) -> (i16, Option<String>, i64) {
    let handshake = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
    );
    assert_eq!(handshake.error_code, 0, "the handshake is taken");
    let mut scram = ScramClient::new(ScramMechanism::Sha512, user, password, "kafkanonce".into());
    let step = |client: &mut KafkaTestClient, token: Vec<u8>| {
        client.call(
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )
    };
    let first = step(client, scram.client_first());
    assert_eq!(first.error_code, 0, "client-first is answered");
    let client_final = scram
        .server_first(&first.auth_bytes)
        .expect("a valid server-first");
    let last = step(client, client_final);
    if last.error_code == 0 {
        scram
            .server_final(&last.auth_bytes)
            .expect("the broker proves it knows the credential");
    }
    (
        last.error_code,
        last.error_message.map(|message| message.to_string()),
        last.session_lifetime_ms,
    )
}

/// Whether a Metadata request (for no topic) is answered, or the broker closes the connection.
fn kafka_request_is_answered(client: &mut KafkaTestClient) -> bool {
    let (frame, _) = client.encode(12, &MetadataRequest::default().with_topics(Some(vec![])));
    client.send_raw(&frame);
    client.receive_frame().is_some()
}

/// Sleeps until `instant` (at once when it has passed).
fn sleep_until(instant: Instant) {
    sleep(instant.saturating_duration_since(Instant::now()));
}

#[test]
fn a_kafka_session_lasts_its_lifetime_and_only_a_reauthentication_extends_it() {
    let lifetime = Duration::from_millis(3000);
    let broker = broker_with_lifetime(lifetime);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let (error, message, lifetime_ms) = kafka_login(&mut client, ADMIN, ADMIN_PASSWORD);
    // The broker's clock started before this one's: the lifetime ends by then at the latest.
    let first_done = Instant::now();
    assert_eq!(error, 0, "{message:?}");
    assert_eq!(
        lifetime_ms, 3000,
        "SaslAuthenticate v1+ answers the lifetime"
    );
    assert!(kafka_request_is_answered(&mut client));

    // Half-way through, the client authenticates again on the same connection.
    sleep_until(first_done + lifetime / 2);
    let renewal_started = Instant::now();
    let (error, message, lifetime_ms) = kafka_login(&mut client, ADMIN, ADMIN_PASSWORD);
    let renewed = Instant::now();
    assert_eq!(error, 0, "the same principal re-authenticates: {message:?}");
    assert_eq!(lifetime_ms, 3000);

    // Past the first lifetime, inside the second: still served.
    sleep_until(first_done + lifetime + Duration::from_millis(300));
    assert!(
        Instant::now() < renewal_started + lifetime,
        "the machine was too slow to tell the lifetimes apart"
    );
    assert!(
        kafka_request_is_answered(&mut client),
        "a re-authentication restarts the lifetime"
    );

    // Past the second: the next request closes the connection, unanswered.
    sleep_until(renewed + lifetime + Duration::from_millis(300));
    assert!(
        !kafka_request_is_answered(&mut client),
        "an expired session is closed at its next request"
    );
}

#[test]
fn a_kafka_reauthentication_as_another_principal_is_refused_and_closes_the_connection() {
    let broker = broker_with_lifetime(Duration::from_secs(60));
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(kafka_login(&mut client, ADMIN, ADMIN_PASSWORD).0, 0);
    let (error, message, _) = kafka_login(&mut client, BOB, BOB_PASSWORD);
    assert_eq!(error, SASL_AUTHENTICATION_FAILED);
    let message = message.expect("a message says why");
    assert!(
        message.contains("Cannot change principals during re-authentication")
            && message.contains("User:admin")
            && message.contains("User:bob"),
        "{message}"
    );
    assert!(client.is_closed_by_broker());
}

/// One native SCRAM-SHA-512 exchange: the last answer's error code and session lifetime.
fn native_login(client: &mut TestClient, user: &str, password: &str) -> (ErrorCode, i64) {
    let handshake = client.call(&NativeHandshake {
        mechanism: "SCRAM-SHA-512".into(),
    });
    assert_eq!(handshake.error_code, ErrorCode::None);
    let mut scram = ScramClient::new(ScramMechanism::Sha512, user, password, "nativenonce".into());
    let first = client.call(&NativeAuthenticate {
        auth_bytes: Bytes::from(scram.client_first()),
    });
    assert_eq!(first.error_code, ErrorCode::None);
    let client_final = scram
        .server_first(&first.auth_bytes)
        .expect("a valid server-first");
    let last = client.call(&NativeAuthenticate {
        auth_bytes: Bytes::from(client_final),
    });
    (last.error_code, last.session_lifetime_ms)
}

/// Whether a ListTopics request is answered, or the broker closes the connection.
fn native_request_is_answered(client: &mut TestClient) -> bool {
    client.send(&ListTopicsRequest::default());
    client.receive_frame().is_some()
}

#[test]
fn a_native_session_answers_its_lifetime_reauthenticates_and_is_closed_once_expired() {
    let lifetime = Duration::from_millis(2000);
    let broker = broker_with_lifetime(lifetime);
    let mut client = TestClient::connect(broker.address());
    assert_eq!(
        native_login(&mut client, ADMIN, ADMIN_PASSWORD),
        (ErrorCode::None, 2000),
        "SaslAuthenticate v1 carries the lifetime"
    );
    assert!(native_request_is_answered(&mut client));
    assert_eq!(
        native_login(&mut client, ADMIN, ADMIN_PASSWORD),
        (ErrorCode::None, 2000),
        "the same principal re-authenticates"
    );
    let renewed = Instant::now();
    assert!(native_request_is_answered(&mut client));
    sleep_until(renewed + lifetime + Duration::from_millis(300));
    assert!(
        !native_request_is_answered(&mut client),
        "an expired session is closed at its next request"
    );

    // Another principal on a re-authentication: refused, closed.
    let mut client = TestClient::connect(broker.address());
    assert_eq!(
        native_login(&mut client, ADMIN, ADMIN_PASSWORD).0,
        ErrorCode::None
    );
    assert_eq!(
        native_login(&mut client, BOB, BOB_PASSWORD).0,
        ErrorCode::SaslAuthenticationFailed
    );
    assert!(client.closed_by_broker());
}

/// Native connections the broker has accepted, from its `/metrics` exposition.
fn native_connections_opened(broker: &Broker) -> f64 {
    let mut stream = std::net::TcpStream::connect(broker.admin_address())
        .expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).expect("read /metrics");
    let samples: Vec<f64> = answer
        .lines()
        .filter(|line| line.contains("connections_opened") && !line.starts_with('#'))
        .filter(|line| line.contains("protocol=\"native\""))
        .map(|line| {
            let value = line.split_whitespace().last().expect("a sample value");
            value.parse().expect("a number")
        })
        .collect();
    assert!(
        !samples.is_empty(),
        "no connections_opened sample:\n{answer}"
    );
    samples.iter().sum()
}

#[test]
fn the_native_producer_and_consumer_reauthenticate_in_place_over_several_lifetimes() {
    let lifetime = Duration::from_millis(2000);
    let mut broker = broker_with_lifetime(lifetime);
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(5),
        ..ClientConfig::new(broker.address().to_string()).with_sasl(
            SaslMechanism::ScramSha512,
            ADMIN,
            ADMIN_PASSWORD,
        )
    };
    let client = Client::new(config).expect("client config is valid");
    let topic = "native-reauthenticated";
    client
        .admin()
        .create_topic(NewTopic::new(topic, 1))
        .wait()
        .expect("create topic");
    let producer = client
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let mut consumer = client
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign(topic, None, StartAt::Earliest)
        .wait()
        .expect("assign");
    let produce = |number: usize| {
        let value = format!("value-{number}");
        producer
            .send_blocking(ProducerRecord::new(topic, value.as_bytes()).with_partition(0))
            .expect("record accepted")
            .wait()
            .unwrap_or_else(|error| panic!("record {number} delivered: {error}"));
    };
    let mut read = Vec::new();
    let mut poll_until = |count: usize, read: &mut Vec<String>| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while read.len() < count {
            assert!(
                Instant::now() < deadline,
                "only {} of {count} read",
                read.len()
            );
            let records = consumer
                .poll_owned(Duration::from_millis(200))
                .expect("poll");
            read.extend(records.iter().map(|record| {
                String::from_utf8(record.value.as_ref().expect("a value").to_vec()).unwrap()
            }));
        }
    };
    // Every connection the run needs is open once the first record went round.
    produce(0);
    poll_until(1, &mut read);
    let opened = native_connections_opened(&broker);
    let until = Instant::now() + lifetime * 4;
    let mut sent = 1;
    while Instant::now() < until {
        produce(sent);
        sent += 1;
        poll_until(sent, &mut read);
        sleep(Duration::from_millis(50));
    }
    assert_eq!(
        read,
        (0..sent)
            .map(|number| format!("value-{number}"))
            .collect::<Vec<_>>()
    );
    assert_eq!(
        native_connections_opened(&broker),
        opened,
        "four lifetimes and no connection was opened again"
    );
    let log = broker.drain_log().join("\n");
    assert!(
        !log.contains("without a re-authentication"),
        "the broker closed no expired session:\n{log}"
    );
}

/// How long the Java and kcat cases give their clients to finish.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(120);

#[test]
fn the_java_producer_reauthenticates_on_its_own_and_never_fails_over_several_lifetimes() {
    let java_build = std::thread::spawn(|| java::compile(&java::project("java-security")));
    let lifetime = Duration::from_millis(2000);
    let mut broker = broker_with_lifetime(lifetime);
    let classpath = java_build
        .join()
        .expect("the Java program compiles (see the panic above)");
    let duration = lifetime * 5;
    let started = Instant::now();
    let output = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .args(["-cp", &classpath, "spate.compat.security.Reauthentication"])
        .env("KAFKA_BOOTSTRAP", broker.kafka_address().to_string())
        .env("USER_NAME", ADMIN)
        .env("USER_PASSWORD", ADMIN_PASSWORD)
        .env("TOPIC", "reauthenticated")
        .env("DURATION_MS", duration.as_millis().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run java");
    assert!(
        started.elapsed() < CLIENT_TIMEOUT + duration,
        "the Java program hung"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("java: {stdout}");
    assert!(
        output.status.success(),
        "the Java producer failed ({}):\n{stdout}\n--- its stderr:\n{stderr}",
        output.status
    );
    let counts: Vec<u64> = stdout
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let [sent, reauthenticated, failed, connections] = counts[..] else {
        panic!("unexpected output: {stdout}");
    };
    assert!(sent >= 10, "{stdout}");
    // Five lifetimes: at least three re-authentications on the producer's broker connection.
    assert!(
        reauthenticated >= 3,
        "kafka-clients re-authenticated: {stdout}"
    );
    assert_eq!(failed, 0, "{stdout}");
    // The bootstrap connection and the broker's one: nothing was closed and opened again.
    assert!(connections <= 2, "no connection was lost: {stdout}");
    let log = broker.drain_log().join("\n");
    assert!(
        !log.contains("without a re-authentication"),
        "the broker closed no expired session:\n{log}"
    );
}

/// librdkafka's version in `kcat -V` ("... librdkafka 2.0.2 builtin.features=..."), as
/// (major, minor).
fn librdkafka_version() -> (u32, u32) {
    let output = Command::new("kcat").arg("-V").output().expect(
        "this test needs kcat (librdkafka's command-line client) on the PATH: apt-get install kcat",
    );
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let version = text
        .split_once("librdkafka ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no librdkafka version in kcat -V: {text}"));
    let mut parts = version.split('.').map(|part| part.parse::<u32>());
    match (parts.next(), parts.next()) {
        (Some(Ok(major)), Some(Ok(minor))) => (major, minor),
        _ => panic!("librdkafka version {version:?} does not parse"),
    }
}

#[test]
fn kcat_reauthenticates_where_librdkafka_has_kip_368() {
    let version = librdkafka_version();
    if version < (2, 2) {
        // librdkafka added KIP-368 in 2.2.0: an older one never re-authenticates, and the broker
        // would close its connections by design. The version comes from the distribution.
        eprintln!(
            "kcat's librdkafka is {}.{}, older than 2.2 (KIP-368): its re-authentication case is \
             left out",
            version.0, version.1
        );
        return;
    }
    use std::io::Write;
    let lifetime = Duration::from_millis(2000);
    let broker = broker_with_lifetime(lifetime);
    let mut kcat = Command::new("kcat")
        .args(["-b", &broker.kafka_address().to_string()])
        .args(["-X", "security.protocol=sasl_plaintext"])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={ADMIN}")])
        .args(["-X", &format!("sasl.password={ADMIN_PASSWORD}")])
        .args(["-P", "-t", "reauthenticated", "-X", "acks=all"])
        .args(["-X", "message.send.max.retries=0", "-X", "linger.ms=0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut input = kcat.stdin.take().expect("piped");
    let end = Instant::now() + lifetime * 4;
    let mut lines = 0;
    while Instant::now() < end {
        writeln!(input, "record-{lines}").expect("kcat takes lines");
        input.flush().expect("flush");
        lines += 1;
        sleep(Duration::from_millis(100));
    }
    drop(input);
    let output = kcat.wait_with_output().expect("kcat ends");
    assert!(
        output.status.success(),
        "kcat failed over several lifetimes: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut native = TestClient::connect(broker.address());
    assert_eq!(
        native_login(&mut native, ADMIN, ADMIN_PASSWORD).0,
        ErrorCode::None
    );
    let topics = native.call(&ListTopicsRequest::default()).topics;
    assert!(topics.iter().any(|topic| topic.name == "reauthenticated"));
    assert!(lines > 0);
}

/// A connection to `target` from another loopback source address than 127.0.0.1.
fn connect_from(source: [u8; 4], target: SocketAddr) -> std::net::TcpStream {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .expect("bind a loopback source address");
    socket.connect(&target.into()).expect("connect");
    let stream: std::net::TcpStream = socket.into();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("read timeout");
    stream
}

#[test]
fn an_address_with_too_many_failed_logins_is_refused_at_accept_until_its_window_passes() {
    use std::io::{Read, Write};
    let window = Duration::from_millis(4000);
    let mut broker = Broker::start(BrokerOptions::default());
    broker.terminate();
    let created = Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(broker.data_dir())
        .args(["--name", ADMIN, "--password", ADMIN_PASSWORD])
        .output()
        .expect("run spate-broker user create");
    assert!(created.status.success());
    broker.restart_with(BrokerOptions {
        arguments: vec![
            "--kafka-sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin".into(),
            "--failed-authentications-per-address-max".into(),
            "3".into(),
            "--failed-authentication-window-ms".into(),
            window.as_millis().to_string(),
        ],
        ..BrokerOptions::default()
    });
    let address = broker.kafka_address();
    let plain = |client: &mut KafkaTestClient, password: &str| {
        let handshake = client.call(
            1,
            &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
        );
        assert_eq!(handshake.error_code, 0);
        client
            .call(
                2,
                &SaslAuthenticateRequest::default()
                    .with_auth_bytes(Bytes::from(spate_security::encode_plain(ADMIN, password))),
            )
            .error_code
    };
    let mut first_failure = None;
    for guess in ["one", "two", "three"] {
        let mut client = KafkaTestClient::connect(address);
        assert_eq!(plain(&mut client, guess), SASL_AUTHENTICATION_FAILED);
        // The broker counted the failure, and so began the window, before it answered.
        first_failure.get_or_insert_with(Instant::now);
        assert!(client.is_closed_by_broker());
    }
    let first_failure = first_failure.expect("three failures");
    // The fourth connection from this address is closed before anything is read, even with the
    // right password; ApiVersions gets no answer.
    let mut refused = KafkaTestClient::connect(address);
    assert!(
        refused.is_closed_by_broker(),
        "refused at accept after three failures"
    );
    // Another address is not concerned.
    let (frame, _) = refused.encode(
        3,
        &spate_kafka_protocol::kafka_protocol::messages::ApiVersionsRequest::default(),
    );
    let mut other = connect_from([127, 0, 0, 2], address);
    other.write_all(&frame).expect("send ApiVersions");
    let mut size = [0u8; 4];
    other.read_exact(&mut size).expect("127.0.0.2 is answered");
    // Logged once per window, however many connections are refused.
    let mut again = KafkaTestClient::connect(address);
    assert!(again.is_closed_by_broker());
    let lines = broker.wait_for_log_line("failed_authentications_per_address_max");
    let refusals = lines
        .iter()
        .chain(broker.drain_log().iter())
        .filter(|line| line.contains("failed_authentications_per_address_max"))
        .count();
    assert_eq!(refusals, 1, "one line per address per window");

    // Once the window passed, the address is taken again and the right password works.
    sleep_until(first_failure + window + Duration::from_millis(500));
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(plain(&mut client, ADMIN_PASSWORD), 0);
    assert!(kafka_request_is_answered(&mut client));
}
