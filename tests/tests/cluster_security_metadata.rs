//! Users and ACLs as cluster metadata (issue #17): in cluster mode SCRAM credentials and ACL
//! bindings are replicated through the metadata quorum, as KRaft does, not kept per broker.
//!
//! Three brokers require SCRAM-SHA-512 on their Kafka listeners (so authorization is on); the
//! native listener stays plaintext, its connections User:ANONYMOUS, which must then be a super
//! user (the brokers call each other there). `admin` is bootstrapped offline on every broker
//! (`spate-broker user create`, as Kafka's `kafka-storage format --add-scram`). Through broker 1
//! admin creates `alice` (AlterUserScramCredentials) and an ACL (CreateAcls); alice then
//! authenticates on brokers 2 and 3 and the ACL lets her see the topic there. The ACL deleted
//! through broker 3 refuses her on broker 1. A restarted broker and a controller failover keep
//! the users and bindings (they are in the Raft log). The native user and ACL APIs take the same
//! path. A local ACL file with bindings refuses a cluster start, naming the file.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use spate_kafka_protocol::kafka_protocol::messages::alter_user_scram_credentials_request::ScramCredentialUpsertion;
use spate_kafka_protocol::kafka_protocol::messages::create_acls_request::AclCreation;
use spate_kafka_protocol::kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::{
    AlterUserScramCredentialsRequest, CreateAclsRequest, DeleteAclsRequest, DescribeAclsRequest,
    MetadataRequest, SaslAuthenticateRequest, SaslHandshakeRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_protocol::api::{
    AclEntry, AclFilter, CreateAclsRequest as NativeCreateAclsRequest,
    DeleteAclsRequest as NativeDeleteAclsRequest, DeleteUserRequest, ListUsersRequest,
    UpsertUserRequest,
};
use spate_protocol::error::ErrorCode;
use spate_security::{ScramClient, ScramCredential, ScramMechanism};
use spate_tests::broker_process::broker_binary;
use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};
use spate_tests::{KafkaTestClient, TestClient};

const ADMIN: &str = "admin";
const ADMIN_PASSWORD: &str = "admin-secret";
const ALICE: &str = "alice";
const ALICE_PASSWORD: &str = "alice-secret";
const TOPIC: &str = "orders";

/// How long a change made through one broker may take to be in force on another.
const PROPAGATION_TIMEOUT: Duration = Duration::from_secs(30);

// Kafka's codes.
const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
const ANY: i8 = 1;
const LITERAL: i8 = 3;
const TOPIC_RESOURCE: i8 = 2;
const READ: i8 = 3;
const ALLOW: i8 = 3;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// A formed cluster whose Kafka listeners require SCRAM-SHA-512, with `admin` created offline
/// on every broker.
fn cluster_with_admin() -> Cluster {
    let mut cluster = Cluster::start(ClusterOptions {
        arguments: vec![
            "--kafka-sasl-mechanisms".into(),
            "SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin,User:ANONYMOUS".into(),
        ],
        ..ClusterOptions::default()
    });
    wait_formed(&mut cluster, None);
    // One broker at a time (the offline tool needs the data directory to itself), so that the
    // others keep the quorum and the restarted one catches up from them.
    for id in cluster.ids() {
        cluster.kill9(id);
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(cluster.data_dir(id))
            .args(["--name", ADMIN, "--password", ADMIN_PASSWORD])
            .args(["--mechanism", "SCRAM-SHA-512"])
            .output()
            .expect("run spate-broker user create");
        assert!(
            created.status.success(),
            "user create on broker {id}: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.restart(id);
        wait_formed(&mut cluster, None);
    }
    wait_formed(&mut cluster, Some((ADMIN, ADMIN_PASSWORD)));
    cluster
}

/// `Cluster::wait_formed` for Kafka listeners that require SASL: every broker names a
/// controller and knows every broker (native Metadata) and, when `user` is given, lists every
/// broker as unfenced to that user on its Kafka listener.
fn wait_formed(cluster: &mut Cluster, user: Option<(&str, &str)>) {
    let expected = cluster.ids().len();
    let mut last = String::new();
    let formed = wait_for(FORMATION_TIMEOUT, || {
        for id in cluster.ids() {
            let metadata = cluster.metadata_from(id, Some(Vec::new()));
            last = format!(
                "broker {id}: {:?}",
                metadata
                    .as_ref()
                    .map(|m| (m.controller_id, m.brokers.len()))
            );
            let metadata = metadata?;
            (metadata.controller_id >= 0 && metadata.brokers.len() == expected).then_some(())?;
            if let Some((user, password)) = user {
                let mut client = try_scram(cluster.kafka_address(id), user, password)?;
                let listed = client
                    .call(
                        12,
                        &MetadataRequest::default().with_topics(Some(Vec::new())),
                    )
                    .brokers
                    .len();
                last = format!("broker {id} lists {listed} unfenced brokers");
                (listed == expected).then_some(())?;
            }
        }
        Some(())
    });
    if formed.is_none() {
        for id in cluster.ids() {
            eprintln!(
                "---- broker {id}: {:?}\n{}",
                cluster.metadata_from(id, Some(Vec::new())),
                cluster.broker(id).drain_log().join("\n")
            );
        }
        panic!("the cluster did not form: {last}");
    }
}

/// A Kafka connection authenticated with SCRAM-SHA-512, or `None` when the broker refused the
/// user or password.
fn try_scram(address: SocketAddr, user: &str, password: &str) -> Option<KafkaTestClient> {
    let mut client = KafkaTestClient::connect(address);
    let handshake = client.call(
        1,
        &SaslHandshakeRequest::default().with_mechanism(text("SCRAM-SHA-512")),
    );
    assert_eq!(handshake.error_code, 0, "SCRAM-SHA-512 is offered");
    let mut scram = ScramClient::new(
        ScramMechanism::Sha512,
        user,
        password,
        "rOprNGfwEbeRWgbNEkqO".into(),
    );
    let step = |client: &mut KafkaTestClient, token: Vec<u8>| {
        client.call(
            2,
            &SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token)),
        )
    };
    let first = step(&mut client, scram.client_first());
    if first.error_code != 0 {
        return None;
    }
    let client_final = scram.server_first(&first.auth_bytes).ok()?;
    let last = step(&mut client, client_final);
    if last.error_code != 0 {
        return None;
    }
    scram.server_final(&last.auth_bytes).ok()?;
    Some(client)
}

fn scram(address: SocketAddr, user: &str, password: &str) -> KafkaTestClient {
    try_scram(address, user, password)
        .unwrap_or_else(|| panic!("{user} does not authenticate on {address}"))
}

fn admin_on(cluster: &Cluster, id: NodeId) -> KafkaTestClient {
    scram(cluster.kafka_address(id), ADMIN, ADMIN_PASSWORD)
}

/// Creates (or replaces) `user`'s SCRAM-SHA-512 credential through `admin`.
fn upsert_user(admin: &mut KafkaTestClient, user: &str, password: &str) {
    let salt = format!("{user}-salt-bytes").into_bytes();
    let salted =
        ScramCredential::salted_password(ScramMechanism::Sha512, password.as_bytes(), &salt, 4096);
    let answer = admin.call(
        0,
        &AlterUserScramCredentialsRequest::default().with_upsertions(vec![
            ScramCredentialUpsertion::default()
                .with_name(text(user))
                .with_mechanism(ScramMechanism::Sha512.kafka_type())
                .with_iterations(4096)
                .with_salt(Bytes::from(salt))
                .with_salted_password(Bytes::from(salted)),
        ]),
    );
    assert_eq!(answer.results[0].error_code, 0, "{answer:?}");
}

fn alice_reads_orders() -> AclCreation {
    AclCreation::default()
        .with_resource_type(TOPIC_RESOURCE)
        .with_resource_name(text(TOPIC))
        .with_resource_pattern_type(LITERAL)
        .with_principal(text("User:alice"))
        .with_host(text("*"))
        .with_operation(READ)
        .with_permission_type(ALLOW)
}

fn create_acl(admin: &mut KafkaTestClient) {
    let created = admin.call(
        3,
        &CreateAclsRequest::default().with_creations(vec![alice_reads_orders()]),
    );
    assert_eq!(created.results[0].error_code, 0, "{created:?}");
}

/// Alice's bindings: every binding whose principal is User:alice.
fn alices_filter() -> DeleteAclsFilter {
    DeleteAclsFilter::default()
        .with_resource_name_filter(None)
        .with_principal_filter(Some(text("User:alice")))
        .with_host_filter(None)
        .with_resource_type_filter(ANY)
        .with_pattern_type_filter(ANY)
        .with_operation(ANY)
        .with_permission_type(ANY)
}

/// (resource name, principal, operation) of every binding a broker describes to `admin`.
fn described(admin: &mut KafkaTestClient) -> Vec<(String, String, i8)> {
    let answer = admin.call(
        3,
        &DescribeAclsRequest::default()
            .with_resource_name_filter(None)
            .with_principal_filter(None)
            .with_host_filter(None)
            .with_resource_type_filter(ANY)
            .with_pattern_type_filter(ANY)
            .with_operation(ANY)
            .with_permission_type(ANY),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
    answer
        .resources
        .iter()
        .flat_map(|resource| {
            resource.acls.iter().map(|acl| {
                (
                    resource.resource_name.to_string(),
                    acl.principal.to_string(),
                    acl.operation,
                )
            })
        })
        .collect()
}

/// The code Kafka Metadata gives `client` for the topic (0: allowed to describe it).
fn topic_code(client: &mut KafkaTestClient) -> i16 {
    let answer = client.call(
        12,
        &MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(TopicName(text(TOPIC))))
            ])),
    );
    answer.topics[0].error_code
}

/// Waits until alice authenticates on broker `id` and Metadata answers her `code` for the
/// topic (a fresh connection each try: the change may not be in force there yet).
fn wait_for_alice(cluster: &Cluster, id: NodeId, code: i16, what: &str) {
    let mut last = None;
    let reached = wait_for(PROPAGATION_TIMEOUT, || {
        let mut alice = try_scram(cluster.kafka_address(id), ALICE, ALICE_PASSWORD)?;
        last = Some(topic_code(&mut alice));
        (last == Some(code)).then_some(())
    });
    assert!(
        reached.is_some(),
        "{what}: on broker {id} alice got {last:?} (None: not authenticated), not {code}"
    );
}

/// The controller the answering brokers name.
fn controller(cluster: &Cluster) -> NodeId {
    wait_for(FORMATION_TIMEOUT, || {
        cluster
            .ids()
            .into_iter()
            .find_map(|id| cluster.metadata_from(id, Some(Vec::new())))
            .map(|metadata| metadata.controller_id)
            .filter(|&controller| controller >= 0)
    })
    .expect("a controller is elected")
}

#[test]
fn users_and_acls_made_through_one_broker_are_in_force_on_every_broker_and_survive_restarts() {
    let mut cluster = cluster_with_admin();
    cluster.create_topic(1, TOPIC, 1, &[]);
    let (a, b, c) = (1, 2, 3);

    // A user and an ACL made through broker A, each answered once A applied it.
    let mut admin_a = admin_on(&cluster, a);
    upsert_user(&mut admin_a, ALICE, ALICE_PASSWORD);
    let mut alice_a = scram(cluster.kafka_address(a), ALICE, ALICE_PASSWORD);
    assert_eq!(
        topic_code(&mut alice_a),
        TOPIC_AUTHORIZATION_FAILED,
        "no ACL yet"
    );
    create_acl(&mut admin_a);
    assert_eq!(topic_code(&mut alice_a), 0, "A applied the ACL it answered");
    for id in [b, c] {
        wait_for_alice(&cluster, id, 0, "the user and ACL made through A");
    }
    // Every broker keeps the users as cluster metadata, not in its file.
    for id in cluster.ids() {
        let file = std::fs::read(cluster.data_dir(id).join("security/credentials")).unwrap();
        assert!(
            !String::from_utf8_lossy(&file).contains(ALICE),
            "broker {id} wrote alice to its local file"
        );
    }

    // Deleted through C, with the matching binding reported; refused on A.
    let mut admin_c = admin_on(&cluster, c);
    let deleted = admin_c.call(
        3,
        &DeleteAclsRequest::default().with_filters(vec![alices_filter()]),
    );
    let result = &deleted.filter_results[0];
    assert_eq!(result.error_code, 0, "{deleted:?}");
    let matched: Vec<String> = result
        .matching_acls
        .iter()
        .map(|acl| format!("{} {}", acl.resource_name.as_str(), acl.principal.as_str()))
        .collect();
    assert_eq!(matched, ["orders User:alice"]);
    wait_for_alice(
        &cluster,
        a,
        TOPIC_AUTHORIZATION_FAILED,
        "the ACL deleted through C",
    );
    assert_eq!(
        topic_code(&mut alice_a),
        TOPIC_AUTHORIZATION_FAILED,
        "the open connection sees the deletion too"
    );

    // Created again; a restarted broker has both from the Raft log.
    create_acl(&mut admin_c);
    cluster.kill9(b);
    cluster.restart(b);
    wait_for_alice(&cluster, b, 0, "after broker B restarted");
    assert_eq!(
        described(&mut admin_on(&cluster, b)),
        [(TOPIC.to_string(), "User:alice".to_string(), READ)]
    );

    // The controller fails over: the new one has them, and takes new changes.
    let old_controller = controller(&cluster);
    cluster.kill9(old_controller);
    let survivor = cluster
        .ids()
        .into_iter()
        .find(|&id| id != old_controller)
        .expect("two brokers survive");
    let new_controller = wait_for(FORMATION_TIMEOUT, || {
        let controller = cluster
            .metadata_from(survivor, Some(Vec::new()))?
            .controller_id;
        (controller >= 0 && controller != old_controller).then_some(controller)
    })
    .expect("a new controller is elected");
    let mut admin_new = admin_on(&cluster, new_controller);
    upsert_user(&mut admin_new, "bob", "bob-secret");
    for id in cluster.ids().into_iter().filter(|&id| id != old_controller) {
        wait_for_alice(&cluster, id, 0, "after the controller failed over");
        assert_eq!(
            described(&mut admin_on(&cluster, id)),
            [(TOPIC.to_string(), "User:alice".to_string(), READ)]
        );
    }
    cluster.restart(old_controller);
    wait_for_alice(&cluster, old_controller, 0, "the old controller, restarted");
    let caught_up = wait_for(PROPAGATION_TIMEOUT, || {
        try_scram(cluster.kafka_address(old_controller), "bob", "bob-secret")
    });
    assert!(
        caught_up.is_some(),
        "the old controller learns the user made while it was down"
    );
}

/// A native connection to broker `id` (plaintext: User:ANONYMOUS, a super user here).
fn native(cluster: &Cluster, id: NodeId) -> TestClient {
    TestClient::connect(cluster.address(id))
}

/// Alice's bindings, as a native filter.
fn native_alices_filter() -> AclFilter {
    AclFilter {
        resource_type: ANY as u8,
        resource_name: None,
        pattern_type: ANY as u8,
        principal: Some("User:alice".into()),
        host: None,
        operation: ANY as u8,
        permission: ANY as u8,
    }
}

#[test]
fn the_native_user_and_acl_apis_change_the_cluster_metadata_too() {
    let cluster = cluster_with_admin();
    cluster.create_topic(1, TOPIC, 1, &[]);

    // A user made through broker 2's native UpsertUser authenticates on broker 3.
    let salt = b"alice-native-salt".to_vec();
    let salted = ScramCredential::salted_password(
        ScramMechanism::Sha512,
        ALICE_PASSWORD.as_bytes(),
        &salt,
        4096,
    );
    let upserted = native(&cluster, 2).call(&UpsertUserRequest {
        name: ALICE.into(),
        mechanism: "SCRAM-SHA-512".into(),
        iterations: 4096,
        salt: Bytes::from(salt),
        salted_password: Bytes::from(salted),
    });
    assert_eq!(upserted.error_code, ErrorCode::None, "{upserted:?}");
    wait_for_alice(
        &cluster,
        3,
        TOPIC_AUTHORIZATION_FAILED,
        "the native UpsertUser",
    );

    // An ACL made through broker 3's native CreateAcls lets her see the topic on broker 1.
    let created = native(&cluster, 3).call(&NativeCreateAclsRequest {
        creations: vec![AclEntry {
            resource_type: TOPIC_RESOURCE as u8,
            resource_name: TOPIC.into(),
            pattern_type: LITERAL as u8,
            principal: "User:alice".into(),
            host: "*".into(),
            operation: READ as u8,
            permission: ALLOW as u8,
        }],
    });
    assert_eq!(created.error_code, ErrorCode::None, "{created:?}");
    assert_eq!(
        created.results[0].error_code,
        ErrorCode::None,
        "{created:?}"
    );
    wait_for_alice(&cluster, 1, 0, "the native CreateAcls");

    // Deleted through broker 1, answered with the binding; refused on broker 2.
    let deleted = native(&cluster, 1).call(&NativeDeleteAclsRequest {
        filters: vec![native_alices_filter()],
    });
    assert_eq!(deleted.error_code, ErrorCode::None, "{deleted:?}");
    let removed: Vec<&str> = deleted.results[0]
        .deleted
        .iter()
        .map(|entry| entry.resource_name.as_str())
        .collect();
    assert_eq!(removed, [TOPIC]);
    wait_for_alice(
        &cluster,
        2,
        TOPIC_AUTHORIZATION_FAILED,
        "the native DeleteAcls",
    );

    // The user deleted through broker 3 (once: the second finds nothing) cannot log in on 1;
    // the bootstrap admin is still listed.
    let delete_user = || DeleteUserRequest {
        name: ALICE.into(),
        mechanism: "SCRAM-SHA-512".into(),
    };
    assert_eq!(
        native(&cluster, 3).call(&delete_user()).error_code,
        ErrorCode::None
    );
    assert_eq!(
        native(&cluster, 3).call(&delete_user()).error_code,
        ErrorCode::ResourceNotFound
    );
    let gone = wait_for(PROPAGATION_TIMEOUT, || {
        try_scram(cluster.kafka_address(1), ALICE, ALICE_PASSWORD)
            .is_none()
            .then_some(())
    });
    assert!(gone.is_some(), "alice still logs in on broker 1");
    let users: Vec<String> = native(&cluster, 1)
        .call(&ListUsersRequest {})
        .users
        .into_iter()
        .map(|user| user.name)
        .collect();
    assert_eq!(users, [ADMIN]);
}

#[test]
fn a_local_acl_file_with_bindings_refuses_a_cluster_start_naming_it() {
    let data_dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("a data directory");
    let mut acls = spate_security::Acls::default();
    acls.add(spate_security::AclBinding {
        resource_type: spate_security::ResourceType::Topic,
        resource_name: TOPIC.into(),
        pattern: spate_security::PatternType::Literal,
        principal: "User:alice".into(),
        host: "*".into(),
        operation: spate_security::Operation::Read,
        permission: spate_security::Permission::Allow,
    });
    spate_security::AclsFile::save(data_dir.path(), &acls).expect("saved");
    let output = Command::new(broker_binary())
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", "127.0.0.1:0", "--advertised", "127.0.0.1:9"])
        .args(["--kafka-listen", "none", "--admin-listen", "none"])
        .args(["--node-id", "1", "--seeds", "127.0.0.1:9", "--shards", "1"])
        .env_remove("SPATE_CONFIG")
        .output()
        .expect("run spate-broker");
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "started: {log}");
    let path = spate_security::AclsFile::path(data_dir.path());
    assert!(
        log.contains(&path.display().to_string()) && log.contains("cluster mode"),
        "the refusal does not name the file: {log}"
    );
}
