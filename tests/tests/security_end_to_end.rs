//! TLS, SCRAM and ACLs together, as an operator deploys them (issue #17): one broker whose
//! native and Kafka listeners both require TLS (a CA and a certificate for `127.0.0.1` and
//! `localhost`, made here with rcgen) and SCRAM-SHA-512 (SASL_SSL on the Kafka side), with
//! authorization on and `admin` its super user, created offline with `spate-broker user create`.
//! Every other user is created online, by admin, over that secured path. The other tests check
//! each piece alone (`tls`, `kafka_sasl`, `native_sasl`, `kafka_acls`, `native_acls`); this one
//! checks that they compose, through three real clients:
//!
//! - kcat (librdkafka, `security.protocol=sasl_ssl`) produces and consumes exactly with its Write
//!   and Read ACLs, is refused by name without them (the topic stays empty), and a wrong
//!   password fails its login;
//! - the Java client (kafka-clients 4.1.1, `tests/compat/java-security`): an `Admin` as admin
//!   creates a topic, two SCRAM users and ACLs; one new user produces and consumes in a group;
//!   a wrong password is `SaslAuthenticationException`, no ACL `TopicAuthorizationException`;
//! - `spate-client` with TLS and SCRAM-SHA-512 produces and consumes with ACLs, and is refused
//!   (`Error::NotAuthorized`) without them, or with a wrong password;
//! - a client speaking plaintext SASL to the TLS port fails and the broker keeps serving.
//!
//! Everything runs against one broker in one test, so the file costs one broker start and one
//! JVM. Needs kcat, a JDK and Maven with kafka-clients in `~/.m2` (`.ci/run` installs them, the
//! Java part through `tests/compat/java-transactions/install.sh`); a missing tool fails the test
//! with the command that installs it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use spate_client::{
    AclBinding, Client, ClientConfig, ConsumerConfig, Error, NewTopic, OffsetSpec, Operation,
    PatternType, Permission, ProducerConfig, ProducerRecord, ResourceType, SaslMechanism, StartAt,
    TlsConfig,
};
use spate_tests::broker_process::broker_binary;
use spate_tests::java;
use spate_tests::tls::TestPki;
use spate_tests::{Broker, BrokerOptions};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
/// The password of every user admin creates online.
const USER_PASSWORD: &str = "user-secret";
const WRONG_PASSWORD: &str = "not-the-password";
/// The whole Java run: JVM start, four cases, each login a TLS handshake and a SCRAM exchange.
const JAVA_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a consumer waits for records before the test fails.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// The secured broker: TLS and SCRAM-SHA-512 on both client listeners, authorization on, and
/// `admin` (created offline before the secured start, as an operator bootstraps one) its super
/// user.
fn secured_broker(pki: &TestPki) -> Broker {
    // The data directory must exist before `user create` writes into it.
    let mut broker = Broker::start(BrokerOptions::default());
    broker.terminate();
    let created = Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(broker.data_dir())
        .args(["--name", ADMIN, "--password", ADMIN_PASSWORD])
        .args(["--mechanism", "SCRAM-SHA-512"])
        .output()
        .expect("run spate-broker user create");
    assert!(
        created.status.success(),
        "user create failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut arguments = TestPki::listener_arguments("", &pki.server, None);
    arguments.extend(TestPki::listener_arguments("kafka-", &pki.server, None));
    arguments.extend(
        [
            "--sasl-mechanisms",
            "SCRAM-SHA-512",
            "--kafka-sasl-mechanisms",
            "SCRAM-SHA-512",
            "--authorization",
            "true",
            "--super-users",
            "User:admin",
        ]
        .map(String::from),
    );
    broker.restart_with(BrokerOptions {
        arguments,
        ..BrokerOptions::default()
    });
    broker
}

/// `spate-client` over TLS (trusting the test CA) with SCRAM-SHA-512 as `user`.
fn native_client(address: SocketAddr, ca_file: &Path, user: &str, password: &str) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(20),
        tls: Some(TlsConfig::new(ca_file)),
        ..ClientConfig::new(address.to_string())
            .with_client_id("security-end-to-end")
            .with_sasl(SaslMechanism::ScramSha512, user, password)
    };
    Client::new(config).expect("client config is valid")
}

fn allow(resource_type: ResourceType, name: &str, user: &str, operation: Operation) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern: PatternType::Literal,
        principal: format!("User:{user}"),
        host: "*".to_string(),
        operation,
        permission: Permission::Allow,
    }
}

/// Admin creates `user` (SCRAM-SHA-512) and grants it Write and Read on `topic`.
fn create_user_with_topic_acls(admin: &Client, user: &str, topic: Option<&str>) {
    admin
        .admin()
        .create_user(user, USER_PASSWORD, SaslMechanism::ScramSha512, 4096)
        .wait()
        .unwrap_or_else(|error| panic!("admin creates {user}: {error}"));
    let Some(topic) = topic else { return };
    let bindings = [
        allow(ResourceType::Topic, topic, user, Operation::Write),
        allow(ResourceType::Topic, topic, user, Operation::Read),
    ];
    for outcome in admin
        .admin()
        .create_acls(&bindings)
        .wait()
        .expect("admin creates ACLs")
    {
        outcome.expect("each ACL created");
    }
}

fn create_topic(admin: &Client, topic: &str) {
    admin
        .admin()
        .create_topic(NewTopic::new(topic, 1))
        .wait()
        .unwrap_or_else(|error| panic!("admin creates {topic}: {error}"));
}

fn end_offset(admin: &Client, topic: &str) -> u64 {
    admin
        .admin()
        .list_offsets(topic, Some(&[0]), OffsetSpec::Latest)
        .wait()
        .expect("list offsets as admin")[0]
        .offset
        .expect("an offset")
}

/// kcat over SASL_SSL as `user`.
fn kcat(broker: &Broker, ca_file: &Path, user: &str, password: &str) -> Command {
    let mut command = Command::new("kcat");
    command
        .args(["-b", &broker.kafka_address().to_string()])
        .args(["-X", "security.protocol=sasl_ssl"])
        .args(["-X", &format!("ssl.ca.location={}", ca_file.display())])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={user}")])
        .args(["-X", &format!("sasl.password={password}")]);
    command
}

fn kcat_produce(mut kcat: Command, topic: &str, lines: &[String]) -> Output {
    let mut child = kcat
        .args(["-P", "-t", topic, "-p", "0", "-X", "acks=all"])
        .args(["-X", "message.timeout.ms=15000"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let mut input = child.stdin.take().expect("kcat's input");
    for line in lines {
        writeln!(input, "{line}").expect("write to kcat");
    }
    drop(input);
    child.wait_with_output().expect("kcat ends")
}

fn kcat_consume(mut kcat: Command, topic: &str) -> Output {
    kcat.args(["-C", "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q"])
        .args(["-f", "%s\\n"])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat")
}

fn stderr_of(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).to_lowercase()
}

fn kcat_cases(broker: &Broker, pki: &TestPki, admin: &Client) {
    let ca = &pki.ca_file;
    create_topic(admin, "kcat-allowed");
    create_topic(admin, "kcat-forbidden");
    create_user_with_topic_acls(admin, "kcat-user", Some("kcat-allowed"));

    let lines: Vec<String> = (0..40)
        .map(|number| format!("kcat-record-{number}-{}", "y".repeat(number * 29)))
        .collect();
    let produced = kcat_produce(
        kcat(broker, ca, "kcat-user", USER_PASSWORD),
        "kcat-allowed",
        &lines,
    );
    assert!(
        produced.status.success(),
        "kcat produces over SASL_SSL with its Write ACL: {}",
        stderr_of(&produced)
    );
    let consumed = kcat_consume(kcat(broker, ca, "kcat-user", USER_PASSWORD), "kcat-allowed");
    assert!(
        consumed.status.success(),
        "kcat consumes over SASL_SSL with its Read ACL: {}",
        stderr_of(&consumed)
    );
    let read: Vec<String> = String::from_utf8(consumed.stdout)
        .expect("UTF-8")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(read == lines, "kcat read back exactly what it wrote");

    // The same user, a topic it has no ACL on: refused by name, nothing written.
    let refused = kcat_produce(
        kcat(broker, ca, "kcat-user", USER_PASSWORD),
        "kcat-forbidden",
        &lines[..3],
    );
    let errors = stderr_of(&refused);
    assert!(!refused.status.success(), "kcat reports the refusal");
    assert!(
        errors.contains("topic authorization failed")
            || errors.contains("topic_authorization_failed"),
        "librdkafka names the refusal: {errors}"
    );
    assert_eq!(end_offset(admin, "kcat-forbidden"), 0, "nothing written");
    let refused = kcat_consume(
        kcat(broker, ca, "kcat-user", USER_PASSWORD),
        "kcat-forbidden",
    );
    let errors = stderr_of(&refused);
    assert!(
        !refused.status.success() && errors.contains("authoriz"),
        "kcat may not read a topic without Read: {errors}"
    );

    // A wrong password: the login fails, and says so.
    let refused = kcat_produce(
        kcat(broker, ca, "kcat-user", WRONG_PASSWORD),
        "kcat-allowed",
        &lines[..3],
    );
    let errors = stderr_of(&refused);
    assert!(
        !refused.status.success() && errors.contains("authentication"),
        "kcat with a wrong password fails its login: {errors}"
    );
    assert_eq!(
        end_offset(admin, "kcat-allowed"),
        lines.len() as u64,
        "nothing written by the failed login"
    );
}

fn java_cases(broker: &Broker, pki: &TestPki, admin: &Client, classpath: &str) {
    let started = Instant::now();
    let java = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=error")
        .args(["-cp", classpath, "spate.compat.security.SecureClients"])
        .env("KAFKA_BOOTSTRAP", broker.kafka_address().to_string())
        .env("CA_FILE", &pki.ca_file)
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("TOPIC", "java-topic")
        .env("GROUP", "java-group")
        .env("USER_NAME", "java-user")
        .env("STRANGER", "java-stranger")
        .env("USER_PASSWORD", USER_PASSWORD)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start java");
    // The JVM is bounded by its own timeouts; this guards against a hang all the same. The child
    // cannot be reaped (so its pid reused) before `finished` is sent.
    let pid = java.id();
    let (finished, watched) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if watched.recv_timeout(JAVA_TIMEOUT) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
            // SAFETY: kill(2) on our own child, not yet waited for.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    });
    let output = java.wait_with_output().expect("java ends");
    let _ = finished.send(());
    let _ = watchdog.join();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("java: {:.1} s\n{stdout}", started.elapsed().as_secs_f64());
    assert!(
        output.status.success() && stdout.lines().last() == Some("4 passed, 0 failed"),
        "the Java program failed ({}):\n{stdout}\n--- its stderr:\n{stderr}",
        output.status
    );
    // The users and ACLs the Java admin created are the broker's, seen by the native admin too.
    let users: Vec<String> = admin
        .admin()
        .list_users()
        .wait()
        .expect("list users")
        .into_iter()
        .map(|user| user.name)
        .collect();
    assert!(
        users.iter().any(|name| name == "java-user")
            && users.iter().any(|name| name == "java-stranger"),
        "{users:?}"
    );
}

fn native_cases(broker: &Broker, pki: &TestPki, admin: &Client) {
    let ca = &pki.ca_file;
    create_topic(admin, "native-allowed");
    create_topic(admin, "native-forbidden");
    create_user_with_topic_acls(admin, "native-user", Some("native-allowed"));
    let user = native_client(broker.address(), ca, "native-user", USER_PASSWORD);

    let values: Vec<Vec<u8>> = (0..60)
        .map(|number| format!("native-{number}-{}", "z".repeat(number * 53)).into_bytes())
        .collect();
    let producer = user
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let deliveries: Vec<_> = values
        .iter()
        .map(|value| {
            producer
                .send_blocking(ProducerRecord::new("native-allowed", value).with_partition(0))
                .expect("record accepted")
        })
        .collect();
    for delivery in deliveries {
        delivery.wait().expect("delivered with the Write ACL");
    }
    producer.close().wait().expect("producer closes");
    let read = read_values(&user, "native-allowed", values.len()).expect("read with the Read ACL");
    assert!(
        read == values,
        "the native client read back exactly what it wrote"
    );

    // Without ACLs on the topic: both directions refused, naming it, nothing written.
    let producer = user
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let refused = producer
        .send_blocking(ProducerRecord::new("native-forbidden", b"never").with_partition(0))
        .and_then(|delivery| {
            producer.flush().wait()?;
            delivery.wait()
        })
        .expect_err("produce without Write");
    assert_not_authorized(&refused, "native-forbidden");
    let refused = read_values(&user, "native-forbidden", 1).expect_err("read without Read");
    assert_not_authorized(&refused, "native-forbidden");
    assert_eq!(end_offset(admin, "native-forbidden"), 0, "nothing written");

    // A wrong password over TLS: an authentication error, not retried.
    let refused = native_client(broker.address(), ca, "native-user", WRONG_PASSWORD)
        .admin()
        .list_topics()
        .wait()
        .expect_err("a wrong password is refused");
    assert!(
        matches!(refused.root(), Error::Authentication { .. }),
        "{refused}"
    );
}

fn assert_not_authorized(error: &Error, topic: &str) {
    match error.root() {
        Error::NotAuthorized { resource, .. } => {
            assert_eq!(resource.resource_type, ResourceType::Topic, "{error}");
            assert_eq!(resource.name, topic, "{error}");
        }
        other => panic!("expected an authorization error on {topic}, got: {other}"),
    }
}

/// Reads partition 0 of `topic` from the start until `expected` values arrived.
fn read_values(client: &Client, topic: &str, expected: usize) -> Result<Vec<Vec<u8>>, Error> {
    let mut consumer = client
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign(topic, Some(&[0]), StartAt::Earliest)
        .wait()?;
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut values = Vec::new();
    while values.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} records arrived",
            values.len()
        );
        values.extend(
            consumer
                .poll_owned(Duration::from_millis(200))?
                .into_iter()
                .map(|record| record.value.expect("a value").to_vec()),
        );
    }
    Ok(values)
}

/// A client speaking plaintext SASL to the TLS port fails, and the broker serves the next one.
fn plaintext_case(broker: &mut Broker, pki: &TestPki, admin: &Client) {
    let plaintext = Command::new("kcat")
        .args(["-b", &broker.kafka_address().to_string()])
        .args(["-X", "security.protocol=sasl_plaintext"])
        .args(["-X", "sasl.mechanisms=SCRAM-SHA-512"])
        .args(["-X", &format!("sasl.username={ADMIN}")])
        .args(["-X", &format!("sasl.password={ADMIN_PASSWORD}")])
        .args(["-L", "-m", "5"])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat");
    assert!(
        !plaintext.status.success(),
        "plaintext on the TLS port must fail: {}",
        String::from_utf8_lossy(&plaintext.stdout)
    );
    assert!(
        broker.is_running(),
        "the broker survives the plaintext client"
    );
    let listed = kcat(broker, &pki.ca_file, ADMIN, ADMIN_PASSWORD)
        .args(["-L", "-t", "kcat-allowed", "-m", "10"])
        .stdin(Stdio::null())
        .output()
        .expect("run kcat");
    assert!(
        listed.status.success() && String::from_utf8_lossy(&listed.stdout).contains("kcat-allowed"),
        "a SASL_SSL client is served after the plaintext one: {}",
        stderr_of(&listed)
    );
    admin
        .admin()
        .list_topics()
        .wait()
        .expect("the native listener serves too");
}

#[test]
fn kcat_java_and_the_native_client_work_over_tls_and_scram_with_acls() {
    assert!(
        java::has("kcat", "-V"),
        "this test needs kcat (librdkafka's command-line client) on the PATH: apt-get install kcat"
    );
    let started = Instant::now();
    // Maven and the broker start take seconds each: overlap them.
    let java_build = std::thread::spawn(|| java::compile(&java::project("java-security")));
    let pki = TestPki::new();
    let mut broker = secured_broker(&pki);
    let admin = native_client(broker.address(), &pki.ca_file, ADMIN, ADMIN_PASSWORD);
    eprintln!("broker up: {:.1} s", started.elapsed().as_secs_f64());

    kcat_cases(&broker, &pki, &admin);
    eprintln!("kcat cases: {:.1} s", started.elapsed().as_secs_f64());
    native_cases(&broker, &pki, &admin);
    eprintln!("native cases: {:.1} s", started.elapsed().as_secs_f64());
    let classpath = java_build
        .join()
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
    java_cases(&broker, &pki, &admin, &classpath);
    eprintln!("java cases: {:.1} s", started.elapsed().as_secs_f64());
    plaintext_case(&mut broker, &pki, &admin);
    eprintln!("all cases: {:.1} s", started.elapsed().as_secs_f64());
}
