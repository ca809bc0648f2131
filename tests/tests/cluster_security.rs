//! A secured cluster (issue #17): three brokers whose native listeners require TLS and
//! SCRAM-SHA-512, with authorization on and the brokers' own user `broker` a super user, so the
//! brokers' calls to each other (seed discovery, Raft, proposals, replica fetches) go over TLS
//! and log in like any client, and no native client is trusted as a broker for being
//! anonymous.
//!
//! Each broker's `broker` user (and the admin's and alice's) is created offline with
//! `spate-broker user create` before the secured start: the documented bootstrap, as Kafka's
//! `kafka-storage format --add-scram`. The data directories exist before that because each
//! broker first starts once with TLS alone (which exercises peer TLS without SASL too).
//!
//! Checked: the brokers form the quorum; an authenticated admin (`spate-client` with TLS and
//! SCRAM) creates a topic with three replicas; acks=all records are read back exact from another
//! broker after the leader is stopped; a client without a login is refused; an authenticated
//! user that is no super user and has no ACL is refused a ReplicaFetch
//! (ClusterAuthorizationFailed); and a broker restarted with a wrong inter-broker password is
//! refused by its peers, saying so in its log.
//!
//! A second cluster authenticates by client certificates alone (mutual TLS, no SASL): the
//! brokers present their certificate to each other, and with authorization on their principal
//! is its CN, a super user; a client certificate another CA signed is refused.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use spate_client::{
    Client, ClientConfig, ConsumerConfig, NewTopic, ProducerConfig, ProducerRecord, SaslMechanism,
    StartAt, TlsConfig,
};
use spate_protocol::api::{
    encode_request, Message, MetadataRequest, ReplicaFetchRequest, Request,
    SaslAuthenticateRequest, SaslHandshakeRequest,
};
use spate_protocol::error::ErrorCode;
use spate_protocol::frame::split_response_frame;
use spate_security::{ScramClient, ScramMechanism};
use spate_tests::broker_process::broker_binary;
use spate_tests::cluster::{partition_leader, wait_for};
use spate_tests::tls::{CertificateFiles, TestPki};
use spate_tests::{Broker, BrokerOptions};

const BROKER_USER: &str = "broker";
const BROKER_PASSWORD: &str = "broker-secret";
const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
/// Authenticated, no super user, no ACL.
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-secret";
const TOPIC: &str = "secured";
const RECORDS: usize = 20;
/// Debug brokers on a busy 2-core machine: forming a quorum over TLS and SCRAM takes a while.
const FORMATION_TIMEOUT: Duration = Duration::from_secs(120);
const READ_TIMEOUT: Duration = Duration::from_secs(60);
/// What the broker logs when a peer refuses its TLS handshake or login (`peer::PeerPool`).
const REFUSAL_LOG: &str = "another broker refused this broker's TLS handshake or login";

/// `127.0.0.<id>` and a port free there now (nothing else binds that address).
fn free_address(id: u8) -> SocketAddr {
    let ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, id));
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
}

/// The cluster's fixed part: node ids 1..=3 on 127.0.0.1..=3, each its own seed list entry.
struct Layout {
    addresses: Vec<SocketAddr>,
    seeds: String,
}

impl Layout {
    fn new() -> Layout {
        let addresses: Vec<SocketAddr> = (1..=3).map(free_address).collect();
        let seeds = addresses
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        Layout { addresses, seeds }
    }

    /// Broker `index`'s options: cluster, TLS on the native listener with the broker
    /// certificate (verified by peers against the CA), then `security`.
    fn options(&self, index: usize, pki: &TestPki, security: &[String]) -> BrokerOptions {
        let mut arguments: Vec<String> = [
            "--node-id",
            &(index + 1).to_string(),
            "--seeds",
            &self.seeds,
            "--advertised",
            &self.addresses[index].to_string(),
            "--leader-balance-interval-ms",
            "0",
            "--kafka-listen",
            "none",
            "--inter-broker-tls-ca-file",
            &pki.ca_file.display().to_string(),
        ]
        .map(String::from)
        .to_vec();
        arguments.extend(TestPki::listener_arguments("", &pki.broker, None));
        arguments.extend(security.iter().cloned());
        BrokerOptions {
            shards: 1,
            arguments,
            native_listen: self.addresses[index],
            ..BrokerOptions::default()
        }
    }
}

/// SCRAM and authorization flags, the inter-broker password read from `password_file`.
fn sasl_arguments(password_file: &Path) -> Vec<String> {
    [
        "--sasl-mechanisms",
        "SCRAM-SHA-512",
        "--inter-broker-sasl-mechanism",
        "SCRAM-SHA-512",
        "--inter-broker-user",
        BROKER_USER,
        "--inter-broker-password-file",
        &password_file.display().to_string(),
        "--authorization",
        "true",
        "--super-users",
        "User:broker,User:admin",
    ]
    .map(String::from)
    .to_vec()
}

/// `spate-broker user create` offline, the password from SPATE_USER_PASSWORD.
fn create_user_offline(data_dir: &Path, user: &str, password: &str) {
    let created = Command::new(broker_binary())
        .args(["user", "create", "--data-dir"])
        .arg(data_dir)
        .args(["--name", user, "--mechanism", "SCRAM-SHA-512"])
        .env("SPATE_USER_PASSWORD", password)
        .output()
        .expect("run spate-broker user create");
    assert!(
        created.status.success(),
        "user create {user} failed: {}",
        String::from_utf8_lossy(&created.stderr)
    );
}

/// Starts (or restarts) every broker at once: a seed's first start waits for the others.
fn start_all(brokers: &mut [Broker], options: Vec<BrokerOptions>) {
    std::thread::scope(|scope| {
        for (broker, options) in brokers.iter_mut().zip(options) {
            scope.spawn(move || broker.restart_with(options));
        }
    });
}

/// `spate-client` over TLS with SCRAM-SHA-512 as `user` (no login when `user` is `None`).
fn client(bootstrap: &[SocketAddr], ca_file: &Path, login: Option<(&str, &str)>) -> Client {
    let mut config = ClientConfig::new(bootstrap[0].to_string()).with_client_id("cluster-security");
    if let Some((user, password)) = login {
        config = config.with_sasl(SaslMechanism::ScramSha512, user, password);
    }
    let config = ClientConfig {
        bootstrap: bootstrap.iter().map(SocketAddr::to_string).collect(),
        retry_timeout: Duration::from_secs(20),
        tls: Some(TlsConfig::new(ca_file)),
        ..config
    };
    Client::new(config).expect("client config is valid")
}

/// A blocking native connection over TLS that logged in with SCRAM-SHA-512, for the requests
/// `spate-client` does not send (ReplicaFetch) and Metadata's leader ids.
struct SecuredConnection {
    stream: rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    buffer: BytesMut,
    next_correlation_id: u32,
}

impl SecuredConnection {
    fn open(address: SocketAddr, ca_file: &Path, user: &str, password: &str) -> SecuredConnection {
        let config = spate_tests::tls::client_config(ca_file, None);
        let stream = spate_tests::tls::connect(address, config).expect("a TLS handshake");
        let mut connection = SecuredConnection {
            stream,
            buffer: BytesMut::new(),
            next_correlation_id: 1,
        };
        let handshake = connection.call(&SaslHandshakeRequest {
            mechanism: "SCRAM-SHA-512".to_string(),
        });
        assert_eq!(handshake.error_code, ErrorCode::None, "{handshake:?}");
        let nonce = format!(
            "test{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_nanos()
        );
        let mut scram = ScramClient::new(ScramMechanism::Sha512, user, password, nonce);
        let mut step = |message: Vec<u8>| {
            let answer = connection.call(&SaslAuthenticateRequest {
                auth_bytes: Bytes::from(message),
            });
            assert_eq!(answer.error_code, ErrorCode::None, "{answer:?}");
            answer.auth_bytes
        };
        let server_first = step(scram.client_first());
        let client_final = scram.server_first(&server_first).expect("server-first");
        let server_final = step(client_final);
        scram.server_final(&server_final).expect("server-final");
        connection
    }

    fn call<R: Request>(&mut self, request: &R) -> R::Response {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut frame = BytesMut::new();
        encode_request(
            &mut frame,
            correlation_id,
            "cluster-security",
            R::VERSIONS.1,
            request,
        )
        .expect("encode the request");
        self.stream.write_all(&frame).expect("send the request");
        self.stream.flush().expect("send the request");
        let mut chunk = vec![0u8; 64 * 1024];
        loop {
            if let Some(frame) = split_response_frame(&mut self.buffer).expect("a frame") {
                assert_eq!(frame.correlation_id, correlation_id);
                return <R::Response as Message>::decode(
                    <R::Response as Message>::VERSIONS.1,
                    frame.body,
                )
                .expect("decode the answer");
            }
            let count = self.stream.read(&mut chunk).expect("read the answer");
            assert!(count > 0, "the broker closed the connection");
            self.buffer.extend_from_slice(&chunk[..count]);
        }
    }
}

/// The leader of `TOPIC`/0 every running broker agrees on, by native Metadata as admin.
fn agreed_leader(addresses: &[SocketAddr], ca_file: &Path) -> Option<i32> {
    let mut leaders = addresses.iter().map(|&address| {
        let mut admin = SecuredConnection::open(address, ca_file, ADMIN, ADMIN_PASSWORD);
        let metadata = admin.call(&MetadataRequest {
            topics: Some(vec![TOPIC.to_string()]),
        });
        partition_leader(&metadata, TOPIC, 0).map(|(leader, _)| leader)
    });
    let first = leaders.next()??;
    leaders.all(|leader| leader == Some(first)).then_some(first)
}

#[test]
fn a_cluster_requiring_tls_and_scram_replicates_and_refuses_the_unauthenticated() {
    let pki = TestPki::new();
    let layout = Layout::new();
    let ca = pki.ca_file.as_path();

    // The first start, TLS alone, makes the data directories (and forms the cluster over TLS).
    let mut brokers: Vec<Broker> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..3)
            .map(|index| {
                let options = layout.options(index, &pki, &[]);
                scope.spawn(move || Broker::start(options))
            })
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().expect("a broker start panicked"))
            .collect()
    });
    for broker in &mut brokers {
        broker.terminate();
        create_user_offline(broker.data_dir(), BROKER_USER, BROKER_PASSWORD);
        create_user_offline(broker.data_dir(), ADMIN, ADMIN_PASSWORD);
        create_user_offline(broker.data_dir(), ALICE, ALICE_PASSWORD);
    }
    let password_file = pki.directory.path().join("inter-broker.password");
    std::fs::write(&password_file, format!("{BROKER_PASSWORD}\n")).expect("password file");
    let secured: Vec<BrokerOptions> = (0..3)
        .map(|index| layout.options(index, &pki, &sasl_arguments(&password_file)))
        .collect();
    start_all(&mut brokers, secured.clone());

    // The brokers form the quorum: the admin's topic creation goes through the controller, and
    // its three replicas need every broker registered.
    let admin = client(&layout.addresses, ca, Some((ADMIN, ADMIN_PASSWORD)));
    create_replicated_topic(&admin);
    let leader = wait_for(FORMATION_TIMEOUT, || agreed_leader(&layout.addresses, ca))
        .expect("every broker names the same leader");

    let values = produce_acks_all(&admin);

    // The leader stops; the records are read back exact from the others.
    let leader_index = usize::try_from(leader - 1).expect("node ids from 1");
    brokers[leader_index].terminate();
    let others: Vec<SocketAddr> = (0..3)
        .filter(|&index| index != leader_index)
        .map(|index| layout.addresses[index])
        .collect();
    let reader = client(&others, ca, Some((ADMIN, ADMIN_PASSWORD)));
    assert_eq!(
        read_all(&reader),
        values,
        "read back exact, in order, once each"
    );

    // No login, no service.
    let anonymous = client(&others, ca, None);
    let refused = anonymous.admin().list_topics().wait();
    assert!(refused.is_err(), "a client without a login was served");

    // Authenticated, but no super user and no ACL: the brokers' APIs are not alice's.
    let mut alice = SecuredConnection::open(others[0], ca, ALICE, ALICE_PASSWORD);
    let fetched = alice.call(&ReplicaFetchRequest::default());
    assert_eq!(fetched.error_code, ErrorCode::ClusterAuthorizationFailed);
    assert!(fetched.topics.is_empty(), "nothing read");

    // A broker with the wrong inter-broker password is refused by its peers and says so.
    let wrong_file = pki.directory.path().join("wrong.password");
    std::fs::write(&wrong_file, "not-the-password\n").expect("password file");
    let follower_index = (0..3)
        .find(|&index| index != leader_index)
        .expect("a follower");
    brokers[follower_index].terminate();
    brokers[follower_index].drain_log();
    brokers[follower_index].restart_with(layout.options(
        follower_index,
        &pki,
        &sasl_arguments(&wrong_file),
    ));
    let log = brokers[follower_index].wait_for_log_line(REFUSAL_LOG);
    let refusal = log
        .iter()
        .find(|line| line.contains(REFUSAL_LOG))
        .expect("the refusal line");
    assert!(
        refusal.contains("User:broker") && refusal.contains("SaslAuthenticationFailed"),
        "the refusal names the principal and why: {refusal}"
    );
    for broker in &mut brokers {
        broker.kill();
    }
}

/// Creates `TOPIC` with three replicas through `admin`, retrying until the cluster has formed
/// (a controller elected and every broker registered).
fn create_replicated_topic(admin: &Client) {
    let mut last_error = String::new();
    let created = wait_for(FORMATION_TIMEOUT, || {
        let outcome = admin
            .admin()
            .create_topic(NewTopic {
                replication_factor: 3,
                ..NewTopic::new(TOPIC, 1)
            })
            .wait();
        match outcome {
            Ok(()) => Some(()),
            Err(error) if error.to_string().contains("exists") => Some(()),
            Err(error) => {
                last_error = error.to_string();
                std::thread::sleep(Duration::from_millis(500));
                None
            }
        }
    });
    assert!(
        created.is_some(),
        "the secured cluster did not create a topic with three replicas within \
         {FORMATION_TIMEOUT:?}: {last_error}"
    );
}

/// Produces `RECORDS` values to `TOPIC`/0 with acks=all: each is on every in-sync replica (all
/// three, for a new topic) when it is told, so the followers fetched it over their secured
/// connections. Returns the values in order.
fn produce_acks_all(client: &Client) -> Vec<String> {
    let producer = client
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let values: Vec<String> = (0..RECORDS)
        .map(|number| format!("secured-{number}"))
        .collect();
    let deliveries: Vec<_> = values
        .iter()
        .map(|value| {
            producer
                .send_blocking(ProducerRecord::new(TOPIC, value.as_bytes()).with_partition(0))
                .expect("accepted")
        })
        .collect();
    for delivery in deliveries {
        delivery.wait().expect("acks=all produce succeeds");
    }
    values
}

/// Reads `TOPIC`/0 from the start until `RECORDS` values came, riding out a leader election.
fn read_all(client: &Client) -> Vec<String> {
    let mut consumer = client
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign(TOPIC, Some(&[0]), StartAt::Earliest)
        .wait()
        .expect("assign");
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut read = Vec::new();
    while read.len() < RECORDS {
        assert!(
            Instant::now() < deadline,
            "only {} of {RECORDS} records came back",
            read.len()
        );
        match consumer.poll_owned(Duration::from_millis(200)) {
            Ok(records) => read.extend(records.into_iter().map(|record| {
                String::from_utf8(record.value.expect("a value").to_vec()).expect("UTF-8")
            })),
            // A new leader is being elected.
            Err(error) => eprintln!("poll while the leadership moves: {error}"),
        }
    }
    read
}

#[test]
fn a_cluster_authenticating_by_client_certificates_alone_trusts_the_brokers_cn() {
    let pki = TestPki::new();
    let layout = Layout::new();
    let ca = pki.ca_file.as_path();
    let mutual: Vec<String> = [
        "--tls-client-ca-file",
        &pki.ca_file.display().to_string(),
        "--authorization",
        "true",
        // The brokers' certificate CN, and alice's, the test's admin here.
        "--super-users",
        "User:spate-cluster-broker,User:alice",
    ]
    .map(String::from)
    .to_vec();
    let mut brokers: Vec<Broker> = std::thread::scope(|scope| {
        let starts: Vec<_> = (0..3)
            .map(|index| {
                let options = layout.options(index, &pki, &mutual);
                scope.spawn(move || Broker::start(options))
            })
            .collect();
        starts
            .into_iter()
            .map(|start| start.join().expect("a broker start panicked"))
            .collect()
    });
    let with_certificate = |addresses: &[SocketAddr], certificate: &CertificateFiles| {
        let config = ClientConfig {
            bootstrap: addresses.iter().map(SocketAddr::to_string).collect(),
            retry_timeout: Duration::from_secs(20),
            tls: Some(
                TlsConfig::new(ca)
                    .with_client_certificate(&certificate.cert_file, &certificate.key_file),
            ),
            ..ClientConfig::new(addresses[0].to_string()).with_client_id("cluster-security")
        };
        Client::new(config).expect("client config is valid")
    };
    let admin = with_certificate(&layout.addresses, &pki.client);
    create_replicated_topic(&admin);
    let values = produce_acks_all(&admin);
    // Every replica has the records (acks=all): any broker serves them.
    let reader = with_certificate(&layout.addresses[2..], &pki.client);
    assert_eq!(read_all(&reader), values, "read back exact");
    // Another CA's certificate does not get through the handshake.
    let stranger = with_certificate(&layout.addresses, &pki.other_client);
    assert!(
        stranger.admin().list_topics().wait().is_err(),
        "a certificate another CA signed was accepted"
    );
    for broker in &mut brokers {
        broker.kill();
    }
}
