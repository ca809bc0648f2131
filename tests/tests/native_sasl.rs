//! SASL on the native listener (issue #17): `spate-client` authenticating with SCRAM-SHA-256,
//! SCRAM-SHA-512 and PLAIN; the negative matrix (wrong password, unknown user, a request before
//! authentication, an unsupported mechanism: each refused, the connection closed, nothing
//! written); `spate user create|list|delete` with the `--sasl-*` flags and
//! `SPATE_SASL_PASSWORD`; an unknown user answered exactly as a wrong password.
//!
//! The first user is made offline (`spate-broker user create`), as an operator would.

mod cli_support;
mod client_support;

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cli_support::{run, spate, spate_binary};
use client_support::{produce_to, read_records, text};
use spate_client::{Client, ClientConfig, Error, NewTopic, SaslMechanism};
use spate_protocol::api::{
    CreateTopic, CreateTopicsRequest, SaslAuthenticateRequest, SaslHandshakeRequest,
};
use spate_protocol::ErrorCode;
use spate_security::encode_plain;
use spate_tests::broker_process::broker_binary;
use spate_tests::{Broker, BrokerOptions, TestClient, TestRecord};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";

/// A broker whose native listener requires every mechanism, with the admin user (both SCRAM
/// credentials) created offline.
fn broker_with_admin() -> Broker {
    let mut broker = Broker::start(BrokerOptions::default());
    broker.terminate();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(broker.data_dir())
            .args(["--name", ADMIN, "--password", ADMIN_PASSWORD])
            .args(["--mechanism", mechanism])
            .output()
            .expect("run spate-broker user create");
        assert!(
            created.status.success(),
            "{}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    broker.restart_with(BrokerOptions {
        // SASL turns authorization on (`authorization = auto`): the admin is its super user, as
        // an operator's first user would be, so that these tests are about authentication.
        arguments: vec![
            "--sasl-mechanisms".into(),
            "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin".into(),
        ],
        ..BrokerOptions::default()
    });
    broker
}

fn client_as(broker: &Broker, mechanism: SaslMechanism, user: &str, password: &str) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(5),
        ..ClientConfig::new(broker.address().to_string())
            .with_client_id("spate-tests")
            .with_sasl(mechanism, user, password)
    };
    Client::new(config).expect("client config is valid")
}

fn topic_names(broker: &Broker) -> Vec<String> {
    client_as(broker, SaslMechanism::ScramSha512, ADMIN, ADMIN_PASSWORD)
        .admin()
        .list_topics()
        .wait()
        .expect("an authenticated client lists topics")
        .into_iter()
        .map(|topic| topic.name)
        .collect()
}

#[test]
fn the_native_client_authenticates_with_each_mechanism() {
    let broker = broker_with_admin();
    for (index, mechanism) in [
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
        SaslMechanism::Plain,
    ]
    .into_iter()
    .enumerate()
    {
        let client = client_as(&broker, mechanism, ADMIN, ADMIN_PASSWORD);
        let topic = format!("native-sasl-{index}");
        client
            .admin()
            .create_topic(NewTopic::new(&topic, 1))
            .wait()
            .unwrap_or_else(|error| panic!("{}: create topic: {error}", mechanism.name()));
        let records: Vec<TestRecord> = (0..5)
            .map(|number| TestRecord::new("key", &format!("value-{number}"), 1_000 + number))
            .collect();
        produce_to(&client, &topic, 0, &records);
        let read = read_records(&client, &topic, None, records.len());
        let values: Vec<String> = read.iter().map(|record| text(&record.value)).collect();
        assert_eq!(
            values,
            (0..5)
                .map(|number| format!("value-{number}"))
                .collect::<Vec<_>>(),
            "{}",
            mechanism.name()
        );
    }
}

#[test]
fn failed_native_authentications_are_refused_and_write_nothing() {
    let broker = broker_with_admin();

    // Wrong password (SCRAM) and unknown user (PLAIN): an authentication error, not retried.
    for (mechanism, user, password) in [
        (SaslMechanism::ScramSha512, ADMIN, "wrong"),
        (SaslMechanism::ScramSha256, "mallory", "guess"),
        (SaslMechanism::Plain, "mallory", "guess"),
        (SaslMechanism::Plain, ADMIN, "wrong"),
    ] {
        let error = client_as(&broker, mechanism, user, password)
            .admin()
            .create_topic(NewTopic::new("never-created", 1))
            .wait()
            .expect_err("refused");
        assert!(
            matches!(error, Error::Authentication { .. }),
            "{}: {error}",
            mechanism.name()
        );
    }

    // A client without SASL: its first request after ApiVersions closes the connection.
    let mut raw = TestClient::connect(broker.address());
    raw.send(&CreateTopicsRequest {
        topics: vec![CreateTopic {
            name: "never-created".into(),
            partition_count: 1,
            ..CreateTopic::default()
        }],
        ..CreateTopicsRequest::default()
    });
    assert!(raw.closed_by_broker(), "no answer before authentication");

    // An unsupported mechanism: the enabled list, then the close.
    let mut raw = TestClient::connect(broker.address());
    let answer = raw.call(&SaslHandshakeRequest {
        mechanism: "GSSAPI".into(),
    });
    assert_eq!(answer.error_code, ErrorCode::UnsupportedSaslMechanism);
    assert_eq!(
        answer.mechanisms,
        ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
    );
    assert!(raw.closed_by_broker());

    // A wrong password answered with the code and a message, then the close.
    let mut raw = TestClient::connect(broker.address());
    let answer = raw.call(&SaslHandshakeRequest {
        mechanism: "PLAIN".into(),
    });
    assert_eq!(answer.error_code, ErrorCode::None);
    let answer = raw.call(&SaslAuthenticateRequest {
        auth_bytes: Bytes::from(encode_plain(ADMIN, "wrong")),
    });
    assert_eq!(answer.error_code, ErrorCode::SaslAuthenticationFailed);
    assert!(answer.error_message.is_some());
    assert!(raw.closed_by_broker());

    assert!(
        !topic_names(&broker).contains(&"never-created".to_string()),
        "nothing was created"
    );
}

#[test]
fn spate_user_commands_manage_users_over_the_native_protocol() {
    let broker = broker_with_admin();
    let address = broker.address();
    let as_admin = [
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        ADMIN,
        "--sasl-password",
        ADMIN_PASSWORD,
    ];
    let with = |first: &[&str], rest: &[&str]| -> Vec<String> {
        first
            .iter()
            .chain(rest)
            .map(|argument| argument.to_string())
            .collect()
    };
    let spate_as = |first: &[&str], rest: &[&str]| {
        let arguments = with(first, rest);
        let arguments: Vec<&str> = arguments.iter().map(String::as_str).collect();
        spate(address, &arguments, b"")
    };

    let said = spate_as(
        &as_admin,
        &[
            "user",
            "create",
            "--name",
            "carol",
            "--password",
            "carol-secret",
            "--mechanism",
            "SCRAM-SHA-256",
            "--iterations",
            "4096",
        ],
    )
    .ok();
    assert!(said.contains("carol"), "{said}");
    let listed = spate_as(&as_admin, &["user", "list"]).ok();
    assert!(listed.contains("carol\tSCRAM-SHA-256\t4096"), "{listed}");
    assert!(listed.contains("admin\tSCRAM-SHA-512\t8192"), "{listed}");

    // Carol logs in, with the password from the environment.
    let mut command = Command::new(spate_binary());
    command
        .args(["--broker", &address.to_string()])
        .args([
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            "carol",
        ])
        .args(["topic", "list"])
        .env("SPATE_SASL_PASSWORD", "carol-secret");
    run(command, b"").ok();

    // Kafka's rules refuse too few iterations; deleting twice finds nothing the second time.
    let refused = spate_as(
        &as_admin,
        &[
            "user",
            "create",
            "--name",
            "dave",
            "--password",
            "x",
            "--iterations",
            "100",
        ],
    )
    .fails_with(1);
    assert!(refused.contains("iterations"), "{refused}");
    spate_as(
        &as_admin,
        &[
            "user",
            "delete",
            "--name",
            "carol",
            "--mechanism",
            "SCRAM-SHA-256",
        ],
    )
    .ok();
    spate_as(
        &as_admin,
        &[
            "user",
            "delete",
            "--name",
            "carol",
            "--mechanism",
            "SCRAM-SHA-256",
        ],
    )
    .fails_with(1);

    // Carol is gone: her login fails.
    let refused = spate_as(
        &[
            "--sasl-mechanism",
            "SCRAM-SHA-256",
            "--sasl-username",
            "carol",
            "--sasl-password",
            "carol-secret",
        ],
        &["topic", "list"],
    )
    .fails_with(1);
    assert!(refused.contains("authentication"), "{refused}");
    // And without credentials nothing is answered.
    let refused = spate(address, &["--timeout-ms", "1000", "topic", "list"], b"");
    assert_ne!(refused.code, 0);
}

/// A failed native SCRAM-SHA-512 login as `user`: the server-first-message without its nonce,
/// and the last answer's code and message.
fn failed_native_scram(
    broker: &Broker,
    user: &str,
    password: &str,
) -> (String, ErrorCode, Option<String>) {
    let mut raw = TestClient::connect(broker.address());
    let answer = raw.call(&SaslHandshakeRequest {
        mechanism: "SCRAM-SHA-512".into(),
    });
    assert_eq!(answer.error_code, ErrorCode::None);
    let mut scram = spate_security::ScramClient::new(
        spate_security::ScramMechanism::Sha512,
        user,
        password,
        "a-native-nonce".into(),
    );
    let first = raw.call(&SaslAuthenticateRequest {
        auth_bytes: Bytes::from(scram.client_first()),
    });
    assert_eq!(first.error_code, ErrorCode::None, "{user}: answered");
    let client_final = scram.server_first(&first.auth_bytes).expect("valid");
    let last = raw.call(&SaslAuthenticateRequest {
        auth_bytes: Bytes::from(client_final),
    });
    assert!(raw.closed_by_broker());
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).expect("text");
    let without_nonce = server_first
        .split_once(',')
        .expect("r=,s=,i=")
        .1
        .to_string();
    (without_nonce, last.error_code, last.error_message)
}

#[test]
fn an_unknown_native_user_is_answered_exactly_as_a_wrong_password() {
    let broker = broker_with_admin();
    let (admin_salt, admin_code, admin_message) = failed_native_scram(&broker, ADMIN, "wrong");
    let (unknown_salt, unknown_code, unknown_message) =
        failed_native_scram(&broker, "mallory", "guess");
    let (unknown_salt_again, _, _) = failed_native_scram(&broker, "mallory", "again");
    assert_eq!(unknown_code, ErrorCode::SaslAuthenticationFailed);
    assert_eq!((admin_code, admin_message), (unknown_code, unknown_message));
    assert_eq!(unknown_salt, unknown_salt_again, "a stable salt per name");
    assert_eq!(admin_salt.len(), unknown_salt.len());
}
