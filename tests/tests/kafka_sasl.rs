//! SASL on the Kafka listener (issue #17): kcat (librdkafka) producing and consuming with
//! SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN; the negative matrix (wrong password, unknown user,
//! a request before authentication, an unsupported mechanism: each answered as Kafka does, the
//! connection closed, nothing written); DescribeUserScramCredentials and
//! AlterUserScramCredentials with Kafka's codes; the offline `spate-broker user create` (and its
//! refusal beside a running broker); credentials across a restart.
//!
//! The first user is created offline, as an operator would: the broker starts once without
//! SASL (so the data directory exists), stops, `spate-broker user create` writes the user, and
//! the broker starts again with `--kafka-sasl-mechanisms`. The native listener stays without
//! SASL, so the test reads the topics back through it to prove nothing was written.
//!
//! Needs `kcat` on the PATH (`.ci/run` installs it; `apt-get install kcat`).

use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};

use bytes::Bytes;
use spate_kafka_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::{
    ScramCredentialDeletion, ScramCredentialUpsertion,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_user_scram_credentials_request::UserName;
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, ApiKey, ApiVersionsRequest,
    DescribeUserScramCredentialsRequest, MetadataRequest, SaslAuthenticateRequest,
    SaslHandshakeRequest,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_protocol::api::ListTopicsRequest;
use spate_security::{encode_plain, ScramClient, ScramCredential, ScramMechanism};
use spate_tests::broker_process::broker_binary;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const ALL_MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";

// Kafka's error codes.
const UNSUPPORTED_SASL_MECHANISM: i16 = 33;
const ILLEGAL_SASL_STATE: i16 = 34;
const SASL_AUTHENTICATION_FAILED: i16 = 58;
const RESOURCE_NOT_FOUND: i16 = 91;
const DUPLICATE_RESOURCE: i16 = 92;
const UNACCEPTABLE_CREDENTIAL: i16 = 93;

fn kcat() -> Command {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs kcat (librdkafka's command-line client) on the PATH: apt-get install kcat"
    );
    Command::new("kcat")
}

/// `spate-broker user create` on a data directory.
fn create_user_offline(
    data_dir: &std::path::Path,
    user: &str,
    password: &str,
    mechanism: &str,
) -> Output {
    Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(data_dir)
        .args([
            "--name",
            user,
            "--password",
            password,
            "--mechanism",
            mechanism,
        ])
        .output()
        .expect("run spate-broker user create")
}

/// SASL on the Kafka listener turns authorization on (`authorization = auto`): the users these
/// tests authenticate are super users, so that what is tested here is authentication alone
/// (ACLs are `kafka_acls`'s).
fn sasl_options(mechanisms: &str) -> BrokerOptions {
    BrokerOptions {
        shards: 2,
        arguments: vec![
            "--kafka-sasl-mechanisms".into(),
            mechanisms.into(),
            "--super-users".into(),
            "User:admin,User:bob".into(),
        ],
        ..BrokerOptions::default()
    }
}

/// A broker whose Kafka listener requires `mechanisms`, with the admin user created offline.
fn broker_with_admin(mechanisms: &str) -> Broker {
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    broker.terminate();
    // A user has one credential per SCRAM mechanism; PLAIN checks either.
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let created = create_user_offline(broker.data_dir(), ADMIN, ADMIN_PASSWORD, mechanism);
        assert!(
            created.status.success(),
            "user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        let said = String::from_utf8_lossy(&created.stdout);
        assert!(said.contains(mechanism), "{said}");
    }
    broker.restart_with(sasl_options(mechanisms));
    broker
}

fn kcat_sasl(broker: &Broker, mechanism: &str, user: &str, password: &str) -> Command {
    let mut command = kcat();
    command
        .args(["-b", &broker.kafka_address().to_string()])
        .args(["-X", "security.protocol=sasl_plaintext"])
        .args(["-X", &format!("sasl.mechanisms={mechanism}")])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")]);
    command
}

fn kcat_produce(
    broker: &Broker,
    mechanism: &str,
    user: &str,
    password: &str,
    topic: &str,
    lines: &[String],
) -> Output {
    use std::io::Write;
    let mut child = kcat_sasl(broker, mechanism, user, password)
        .args([
            "-P",
            "-t",
            topic,
            "-X",
            "acks=all",
            "-X",
            "message.timeout.ms=20000",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut input = child.stdin.take().unwrap();
    for line in lines {
        writeln!(input, "{line}").unwrap();
    }
    drop(input);
    child.wait_with_output().expect("kcat ends")
}

fn kcat_consume(
    broker: &Broker,
    mechanism: &str,
    user: &str,
    password: &str,
    topic: &str,
) -> Output {
    kcat_sasl(broker, mechanism, user, password)
        .args(["-C", "-t", topic, "-o", "beginning", "-e", "-q"])
        .args(["-X", "session.timeout.ms=6000"])
        .output()
        .expect("run kcat")
}

fn topic_names(broker: &Broker) -> Vec<String> {
    let mut native = TestClient::connect(broker.address());
    native
        .call(&ListTopicsRequest::default())
        .topics
        .into_iter()
        .map(|topic| topic.name)
        .collect()
}

fn handshake(client: &mut KafkaTestClient, mechanism: &str) -> (i16, Vec<String>) {
    let answer = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into())),
    );
    let mechanisms = answer
        .mechanisms
        .iter()
        .map(|name| name.as_str().to_string())
        .collect();
    (answer.error_code, mechanisms)
}

fn authenticate_step(
    client: &mut KafkaTestClient,
    token: Vec<u8>,
) -> (i16, Option<String>, Bytes, i64) {
    let answer = client.call(
        2,
        &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
    );
    (
        answer.error_code,
        answer
            .error_message
            .map(|message| message.as_str().to_string()),
        answer.auth_bytes,
        answer.session_lifetime_ms,
    )
}

/// A Kafka connection authenticated with SCRAM as `user`.
fn scram_client(
    address: SocketAddr,
    mechanism: ScramMechanism,
    user: &str,
    password: &str,
) -> KafkaTestClient {
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(handshake(&mut client, mechanism.name()).0, 0);
    let mut scram = ScramClient::new(mechanism, user, password, "fyko+d2lbbFgONRv9qkxdawL".into());
    let (error, _, server_first, _) = authenticate_step(&mut client, scram.client_first());
    assert_eq!(error, 0, "client-first accepted");
    let client_final = scram
        .server_first(&server_first)
        .expect("server-first is valid");
    let (error, message, server_final, lifetime) = authenticate_step(&mut client, client_final);
    assert_eq!(error, 0, "client-final accepted: {message:?}");
    assert_eq!(lifetime, 0, "no re-authentication asked for");
    scram
        .server_final(&server_final)
        .expect("the server proves it knows the credential");
    client
}

#[test]
fn kcat_produces_and_consumes_with_each_mechanism_and_credentials_survive_a_restart() {
    let mut broker = broker_with_admin(ALL_MECHANISMS);
    let lines: Vec<String> = (0..20).map(|number| format!("record-{number}")).collect();
    let produced = kcat_produce(
        &broker,
        "SCRAM-SHA-512",
        ADMIN,
        ADMIN_PASSWORD,
        "sasl-512",
        &lines,
    );
    assert!(
        produced.status.success(),
        "kcat SCRAM-SHA-512 produce: {}",
        String::from_utf8_lossy(&produced.stderr)
    );
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        let consumed = kcat_consume(&broker, mechanism, ADMIN, ADMIN_PASSWORD, "sasl-512");
        assert!(
            consumed.status.success(),
            "kcat {mechanism} consume: {}",
            String::from_utf8_lossy(&consumed.stderr)
        );
        let read: Vec<String> = String::from_utf8_lossy(&consumed.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(read, lines, "{mechanism}: every record, in order");
    }
    // The user created offline is still there after a restart (the file is the truth).
    broker.terminate();
    broker.restart_with(sasl_options("SCRAM-SHA-512"));
    let consumed = kcat_consume(&broker, "SCRAM-SHA-512", ADMIN, ADMIN_PASSWORD, "sasl-512");
    assert!(
        consumed.status.success(),
        "{}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&consumed.stdout).lines().count(),
        lines.len()
    );
    // A mechanism the listener no longer offers is refused by kcat's handshake.
    let refused = kcat_consume(&broker, "PLAIN", ADMIN, ADMIN_PASSWORD, "sasl-512");
    assert!(refused.stdout.is_empty(), "PLAIN is off: nothing read");
}

#[test]
fn failed_authentications_are_answered_then_closed_and_write_nothing() {
    let mut broker = broker_with_admin(ALL_MECHANISMS);
    let address = broker.kafka_address();

    // ApiVersions before authentication lists the SASL APIs.
    let mut client = KafkaTestClient::connect(address);
    let versions = client.call(3, &ApiVersionsRequest::default());
    let listed: Vec<i16> = versions.api_keys.iter().map(|api| api.api_key).collect();
    assert!(listed.contains(&(ApiKey::SaslHandshake as i16)));
    assert!(listed.contains(&(ApiKey::SaslAuthenticate as i16)));

    // Wrong password (SCRAM): SASL_AUTHENTICATION_FAILED with a message, then the close.
    assert_eq!(handshake(&mut client, "SCRAM-SHA-512").0, 0);
    let mut scram = ScramClient::new(
        ScramMechanism::Sha512,
        ADMIN,
        "wrong",
        "rOprNGfwEbeRWgbNEkqO".into(),
    );
    let (error, _, server_first, _) = authenticate_step(&mut client, scram.client_first());
    assert_eq!(error, 0);
    let client_final = scram.server_first(&server_first).unwrap();
    let sent = std::time::Instant::now();
    let (error, message, _, _) = authenticate_step(&mut client, client_final);
    assert_eq!(error, SASL_AUTHENTICATION_FAILED);
    assert!(message.is_some_and(|message| !message.is_empty()));
    // Held back by failed_authentication_delay_ms (default 100), as Kafka's
    // connection.failed.authentication.delay.ms: a lower bound, which no machine can miss.
    assert!(
        sent.elapsed() >= std::time::Duration::from_millis(100),
        "a failed login is answered only after the delay, not in {:?}",
        sent.elapsed()
    );
    assert!(
        client.is_closed_by_broker(),
        "closed after a wrong password"
    );

    // Unknown user (PLAIN): refused and closed.
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(handshake(&mut client, "PLAIN").0, 0);
    let (error, _, _, _) = authenticate_step(&mut client, encode_plain("mallory", "guess"));
    assert_eq!(error, SASL_AUTHENTICATION_FAILED);
    assert!(client.is_closed_by_broker(), "closed after an unknown user");

    // Wrong password (PLAIN).
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(handshake(&mut client, "PLAIN").0, 0);
    let (error, _, _, _) = authenticate_step(&mut client, encode_plain(ADMIN, "guess"));
    assert_eq!(error, SASL_AUTHENTICATION_FAILED);
    assert!(client.is_closed_by_broker());

    // A request before authentication: no answer, the connection closes, no topic is made
    // (Metadata would create it).
    let mut client = KafkaTestClient::connect(address);
    let (frame, _) = client.encode(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic::default()
                .with_name(Some(StrBytes::from_static_str("unauthorized-topic").into())),
        ])),
    );
    client.send_raw(&frame);
    assert!(
        client.receive_frame().is_none(),
        "no answer before authentication"
    );

    // After a handshake but before authenticate finished: the same.
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(handshake(&mut client, "SCRAM-SHA-256").0, 0);
    client.send_raw(&frame);
    assert!(client.receive_frame().is_none());

    // An unsupported mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list, then closed.
    let mut client = KafkaTestClient::connect(address);
    let (error, mechanisms) = handshake(&mut client, "GSSAPI");
    assert_eq!(error, UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(mechanisms, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(client.is_closed_by_broker());

    // Authenticate without a handshake: ILLEGAL_SASL_STATE, closed.
    let mut client = KafkaTestClient::connect(address);
    let (error, _, _, _) = authenticate_step(&mut client, encode_plain(ADMIN, ADMIN_PASSWORD));
    assert_eq!(error, ILLEGAL_SASL_STATE);
    assert!(client.is_closed_by_broker());

    // kcat with a wrong password writes nothing.
    let produced = kcat_produce(
        &broker,
        "SCRAM-SHA-512",
        ADMIN,
        "wrong",
        "never-written",
        &["x".to_string()],
    );
    assert!(
        !produced.status.success(),
        "kcat reports the failed delivery"
    );

    assert!(
        !topic_names(&broker)
            .iter()
            .any(|name| name == "unauthorized-topic" || name == "never-written"),
        "no topic was created by an unauthenticated connection"
    );
    let log = broker.drain_log().join("\n");
    assert!(log.contains("authentication failed"), "failures are logged");
}

#[test]
fn without_sasl_the_sasl_apis_are_not_listed_and_users_are_managed_over_kafka() {
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let address = broker.kafka_address();
    let mut client = KafkaTestClient::connect(address);
    let versions = client.call(3, &ApiVersionsRequest::default());
    let listed: Vec<i16> = versions.api_keys.iter().map(|api| api.api_key).collect();
    assert!(!listed.contains(&(ApiKey::SaslHandshake as i16)));
    assert!(listed.contains(&(ApiKey::AlterUserScramCredentials as i16)));

    let salt = b"a-salt-of-some-bytes".to_vec();
    let salted =
        ScramCredential::salted_password(ScramMechanism::Sha256, b"bob-secret", &salt, 4096);
    let upsertion = |name: &str, mechanism: i8, iterations: i32| {
        ScramCredentialUpsertion::default()
            .with_name(StrBytes::from_string(name.into()))
            .with_mechanism(mechanism)
            .with_iterations(iterations)
            .with_salt(Bytes::from(salt.clone()))
            .with_salted_password(Bytes::from(salted.clone()))
    };
    let answer = client.call(
        0,
        &AlterUserScramCredentialsRequest::default()
            .with_upsertions(vec![
                upsertion("bob", 1, 4096),
                upsertion("few", 1, 100),
                upsertion("many", 2, 20_000),
                upsertion("odd", 9, 4096),
                upsertion("twice", 1, 4096),
                upsertion("twice", 1, 8192),
            ])
            .with_deletions(vec![ScramCredentialDeletion::default()
                .with_name(StrBytes::from_static_str("ghost"))
                .with_mechanism(2)]),
    );
    let codes: std::collections::BTreeMap<String, i16> = answer
        .results
        .iter()
        .map(|result| (result.user.as_str().to_string(), result.error_code))
        .collect();
    assert_eq!(codes["bob"], 0);
    assert_eq!(codes["few"], UNACCEPTABLE_CREDENTIAL);
    assert_eq!(codes["many"], UNACCEPTABLE_CREDENTIAL);
    assert_eq!(codes["odd"], UNSUPPORTED_SASL_MECHANISM);
    assert_eq!(codes["twice"], DUPLICATE_RESOURCE);
    assert_eq!(codes["ghost"], RESOURCE_NOT_FOUND);

    let described = client.call(0, &DescribeUserScramCredentialsRequest::default());
    let users: Vec<(String, Vec<(i8, i32)>)> = described
        .results
        .iter()
        .map(|result| {
            (
                result.user.as_str().to_string(),
                result
                    .credential_infos
                    .iter()
                    .map(|info| (info.mechanism, info.iterations))
                    .collect(),
            )
        })
        .collect();
    assert_eq!(users, [("bob".to_string(), vec![(1, 4096)])]);
    let named = client.call(
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_static_str("bob")),
            UserName::default().with_name(StrBytes::from_static_str("nobody")),
        ])),
    );
    let codes: Vec<(String, i16)> = named
        .results
        .iter()
        .map(|result| (result.user.as_str().to_string(), result.error_code))
        .collect();
    assert_eq!(
        codes,
        [
            ("bob".to_string(), 0),
            ("nobody".to_string(), RESOURCE_NOT_FOUND)
        ]
    );
    let twice = client.call(
        0,
        &DescribeUserScramCredentialsRequest::default().with_users(Some(vec![
            UserName::default().with_name(StrBytes::from_static_str("bob")),
            UserName::default().with_name(StrBytes::from_static_str("bob")),
        ])),
    );
    assert_eq!(twice.results.len(), 1, "one answer per user");
    assert_eq!(twice.results[0].error_code, DUPLICATE_RESOURCE);

    // The user made over Kafka logs in with SCRAM-SHA-256 once SASL is on; a deletion ends that.
    let mut broker = broker;
    broker.terminate();
    broker.restart_with(sasl_options("SCRAM-SHA-256"));
    let mut bob = scram_client(
        broker.kafka_address(),
        ScramMechanism::Sha256,
        "bob",
        "bob-secret",
    );
    let answer = bob.call(
        0,
        &AlterUserScramCredentialsRequest::default().with_deletions(vec![
            ScramCredentialDeletion::default()
                .with_name(StrBytes::from_static_str("bob"))
                .with_mechanism(1),
        ]),
    );
    assert_eq!(answer.results[0].error_code, 0);
    // Already authenticated connections go on (as in Kafka); a new one is refused.
    let versions = bob.call(3, &ApiVersionsRequest::default());
    assert_eq!(versions.error_code, 0);
    let mut again = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(handshake(&mut again, "SCRAM-SHA-256").0, 0);
    let mut scram = ScramClient::new(
        ScramMechanism::Sha256,
        "bob",
        "bob-secret",
        "nonce-of-the-client".into(),
    );
    // As for any unknown user, the exchange goes on to the proof, which fails.
    let (error, _, server_first, _) = authenticate_step(&mut again, scram.client_first());
    assert_eq!(error, 0, "answered as if bob still existed");
    let client_final = scram
        .server_first(&server_first)
        .expect("a valid server-first");
    let (error, _, _, _) = authenticate_step(&mut again, client_final);
    assert_eq!(
        error, SASL_AUTHENTICATION_FAILED,
        "a deleted user cannot log in"
    );
    assert!(again.is_closed_by_broker());
}

/// The answers of a failed SCRAM-SHA-512 login as `user`: the server-first-message's salt and
/// iterations, and the last step's error code and message.
fn failed_scram_login(address: SocketAddr, user: &str, password: &str) -> (String, i16, String) {
    let mut client = KafkaTestClient::connect(address);
    assert_eq!(handshake(&mut client, "SCRAM-SHA-512").0, 0);
    let mut scram = ScramClient::new(ScramMechanism::Sha512, user, password, "a-nonce".into());
    let (error, _, server_first, _) = authenticate_step(&mut client, scram.client_first());
    assert_eq!(error, 0, "{user}: the client-first-message is answered");
    let client_final = scram
        .server_first(&server_first)
        .expect("a valid server-first");
    let (error, message, _, _) = authenticate_step(&mut client, client_final);
    assert!(client.is_closed_by_broker());
    let server_first = String::from_utf8(server_first.to_vec()).expect("text");
    // Without the nonce (`r=`), which is new each time.
    let salt_and_iterations = server_first
        .split_once(',')
        .expect("r=,s=,i=")
        .1
        .to_string();
    (salt_and_iterations, error, message.unwrap_or_default())
}

#[test]
fn an_unknown_user_is_answered_exactly_as_a_wrong_password() {
    let mut broker = broker_with_admin(ALL_MECHANISMS);
    let address = broker.kafka_address();
    // SCRAM: both fail at the proof, with the same code and message; the unknown user's salt
    // is as long as a real one and the same on every try, as a real user's is.
    let (admin_salt, admin_error, admin_message) = failed_scram_login(address, ADMIN, "wrong");
    let (unknown_salt, unknown_error, unknown_message) =
        failed_scram_login(address, "mallory", "guess");
    let (unknown_salt_again, _, _) = failed_scram_login(address, "mallory", "other");
    assert_eq!(unknown_error, SASL_AUTHENTICATION_FAILED);
    assert_eq!(
        (admin_error, &admin_message),
        (unknown_error, &unknown_message)
    );
    assert_eq!(unknown_salt, unknown_salt_again);
    assert_eq!(
        admin_salt.len(),
        unknown_salt.len(),
        "{admin_salt} / {unknown_salt}"
    );
    assert_eq!(
        admin_salt
            .rsplit_once(",i=")
            .map(|(_, iterations)| iterations),
        unknown_salt
            .rsplit_once(",i=")
            .map(|(_, iterations)| iterations),
        "the default iterations"
    );
    // PLAIN: the same code and message.
    let plain = |user: &str| {
        let mut client = KafkaTestClient::connect(address);
        assert_eq!(handshake(&mut client, "PLAIN").0, 0);
        let (error, message, _, _) = authenticate_step(&mut client, encode_plain(user, "guess"));
        (error, message)
    };
    assert_eq!(plain(ADMIN), plain("mallory"));
    // Only the broker's log tells them apart.
    let log = broker.drain_log().join("\n");
    assert!(log.contains("unknown user mallory"), "{log}");
}

#[test]
fn the_offline_user_create_is_refused_while_a_broker_holds_the_data_directory() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let refused = create_user_offline(broker.data_dir(), ADMIN, ADMIN_PASSWORD, "SCRAM-SHA-512");
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("refused"), "{message}");
    assert!(
        !spate_security::CredentialsFile::path(broker.data_dir()).exists(),
        "nothing written beside a running broker"
    );
}

#[test]
fn a_version_0_handshake_takes_bare_tokens_then_kafka_requests() {
    let broker = broker_with_admin(ALL_MECHANISMS);
    let address = broker.kafka_address();
    let bare = |token: &[u8]| {
        let mut frame = (token.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(token);
        frame
    };

    // SCRAM-SHA-512 in bare tokens: the server's messages come back bare, and the connection
    // then takes Kafka requests.
    let mut client = KafkaTestClient::connect(address);
    let answer = client.call(
        0,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("SCRAM-SHA-512")),
    );
    assert_eq!(answer.error_code, 0);
    let mut scram = ScramClient::new(
        ScramMechanism::Sha512,
        ADMIN,
        ADMIN_PASSWORD,
        "bare-token-nonce".into(),
    );
    client.send_raw(&bare(&scram.client_first()));
    let server_first = client.receive_frame().expect("a bare server-first-message");
    let client_final = scram
        .server_first(&server_first)
        .expect("valid server-first");
    client.send_raw(&bare(&client_final));
    let server_final = client.receive_frame().expect("a bare server-final-message");
    scram
        .server_final(&server_final)
        .expect("the server's signature checks");
    let versions = client.call(3, &ApiVersionsRequest::default());
    assert_eq!(
        versions.error_code, 0,
        "Kafka requests after a bare exchange"
    );

    // A wrong password in bare tokens (PLAIN): no answer can say so; the connection closes.
    let mut client = KafkaTestClient::connect(address);
    let answer = client.call(
        0,
        &SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN")),
    );
    assert_eq!(answer.error_code, 0);
    client.send_raw(&bare(&encode_plain(ADMIN, "wrong")));
    assert!(client.receive_frame().is_none(), "closed without an answer");
}

#[test]
fn a_corrupt_credentials_file_stops_the_start_naming_it() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    broker.terminate();
    let created = create_user_offline(broker.data_dir(), ADMIN, ADMIN_PASSWORD, "SCRAM-SHA-512");
    assert!(created.status.success());
    let path = spate_security::CredentialsFile::path(broker.data_dir());
    let mut bytes = std::fs::read(&path).expect("the credentials file exists");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(&path, bytes).expect("damage the credentials file");
    let mut child = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(broker.data_dir())
        .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "none", "--shards", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the broker");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("poll the broker") {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the broker started on a corrupt credentials file");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("credentials") && stderr.contains(&path.display().to_string()),
        "{stderr}"
    );
}
