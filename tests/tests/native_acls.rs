//! Authorization on the native protocol (issue #17): `spate acl add|list|remove` as a super user
//! and the ACLs surviving a restart; the negative matrix of a user without ACLs (produce, fetch,
//! metadata and topic listing, list offsets, topic creation, deletion and configuration, group
//! join and offset commit, transactional init: each refused with the typed error naming its
//! resource, nothing written, nothing revealed); deny over allow, prefixed bindings, a super
//! user, and an ACL removed while a client stays connected taking effect at its next request.
//!
//! The users are created offline, as an operator would (`spate-broker user create`), then the
//! broker starts with SCRAM on the native listener, which turns authorization on (`auto`), and
//! `User:admin` as its super user. Clients authenticate with `spate-client`'s SASL settings; the
//! CLI with `--sasl-*`.

mod cli_support;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use cli_support::spate;
use spate_client::group::{GroupAdmin, GroupConfig, GroupConsumer};
use spate_client::{
    AclBinding, AclBindingFilter, Client, ClientConfig, ConsumerConfig, Error, NewTopic,
    OffsetSpec, Operation, PatternType, PatternTypeFilter, Permission, ProducerConfig,
    ProducerRecord, ResourceType, SaslMechanism, StartAt,
};
use spate_protocol::ErrorCode;
use spate_tests::broker_process::broker_binary;
use spate_tests::{Broker, BrokerOptions};

const ADMIN: &str = "admin";
const ALICE: &str = "alice";
const PASSWORD: &str = "a-password-of-sorts";

/// The broker's options once its users exist: SCRAM on the native listener (so authorization is
/// on) and the super user.
fn secured_options() -> BrokerOptions {
    BrokerOptions {
        shards: 2,
        arguments: vec![
            "--sasl-mechanisms".into(),
            "SCRAM-SHA-512".into(),
            "--super-users".into(),
            "User:admin".into(),
        ],
        ..BrokerOptions::default()
    }
}

/// A broker with `admin` and `alice`, created offline, and native SASL on.
fn secured_broker() -> Broker {
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    broker.terminate();
    for user in [ADMIN, ALICE] {
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(broker.data_dir())
            .args(["--name", user, "--password", PASSWORD])
            .args(["--mechanism", "SCRAM-SHA-512"])
            .output()
            .expect("run spate-broker user create");
        assert!(
            created.status.success(),
            "user create failed: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    broker.restart_with(secured_options());
    broker
}

fn client_as(address: SocketAddr, user: &str) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(20),
        ..ClientConfig::new(address.to_string())
            .with_client_id("spate-tests")
            .with_sasl(SaslMechanism::ScramSha512, user, PASSWORD)
    };
    Client::new(config).expect("client config is valid")
}

/// `spate --sasl-* ARGS` as `user`.
fn spate_as(address: SocketAddr, user: &str, arguments: &[&str]) -> cli_support::Run {
    let mut full = vec![
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        user,
        "--sasl-password",
        PASSWORD,
    ];
    full.extend_from_slice(arguments);
    spate(address, &full, b"")
}

fn binding(
    resource_type: ResourceType,
    name: &str,
    pattern: PatternType,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: name.to_string(),
        pattern,
        principal: format!("User:{ALICE}"),
        host: "*".to_string(),
        operation,
        permission,
    }
}

fn allow_topic(name: &str, operation: Operation) -> AclBinding {
    binding(
        ResourceType::Topic,
        name,
        PatternType::Literal,
        operation,
        Permission::Allow,
    )
}

fn grant(admin: &Client, bindings: &[AclBinding]) {
    for outcome in admin
        .admin()
        .create_acls(bindings)
        .wait()
        .expect("create acls")
    {
        outcome.expect("each binding created");
    }
}

/// Asserts `error` is the typed authorization error on `resource_type` named `name`.
fn assert_refused(error: &Error, resource_type: ResourceType, name: &str) {
    match error.root() {
        Error::NotAuthorized { resource, .. } => {
            assert_eq!(resource.resource_type, resource_type, "{error}");
            assert_eq!(resource.name, name, "{error}");
        }
        other => panic!("expected an authorization error on {name}, got: {other}"),
    }
}

fn high_watermark(admin: &Client, topic: &str) -> u64 {
    admin
        .admin()
        .list_offsets(topic, Some(&[0]), OffsetSpec::Latest)
        .wait()
        .expect("list offsets as admin")[0]
        .offset
        .expect("an offset")
}

fn produce_one(client: &Client, topic: &str) -> Result<(), Error> {
    produce_one_with(client, topic, ProducerConfig::default())
}

/// Without idempotence, so that the Produce request itself is what the broker refuses (an
/// idempotent producer asks InitProducerId first, which needs IdempotentWrite on the cluster or
/// Write on some topic).
fn produce_plainly(client: &Client, topic: &str) -> Result<(), Error> {
    let config = ProducerConfig {
        idempotence: false,
        ..ProducerConfig::default()
    };
    produce_one_with(client, topic, config)
}

fn produce_one_with(client: &Client, topic: &str, config: ProducerConfig) -> Result<(), Error> {
    let producer = client.producer(config).expect("producer config is valid");
    let delivery =
        producer.send_blocking(ProducerRecord::new(topic, b"value").with_partition(0))?;
    producer.flush().wait()?;
    delivery.wait().map(|_| ())
}

#[test]
fn acl_commands_add_list_and_remove_and_the_acls_survive_a_restart() {
    let mut broker = secured_broker();
    let address = broker.address();
    let added = spate_as(
        address,
        ADMIN,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Read",
        ],
    );
    // No resource: a usage error, nothing sent.
    added.fails_with(2);
    let added = spate_as(
        address,
        ADMIN,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--operation",
            "Describe",
            "--topic",
            "orders",
        ],
    )
    .ok();
    assert_eq!(added.lines().count(), 2, "{added}");
    assert!(added.contains("User:alice ALLOW Read from host * on TOPIC orders (LITERAL)"));
    spate_as(
        address,
        ADMIN,
        &[
            "acl",
            "add",
            "--principal",
            "User:alice",
            "--operation",
            "All",
            "--group",
            "pay",
            "--prefixed",
            "--deny",
        ],
    )
    .ok();
    let listed = spate_as(address, ADMIN, &["acl", "list", "--json"]).ok();
    let listed: serde_json::Value = serde_json::from_str(&listed).expect("JSON");
    let listed = listed.as_array().expect("an array");
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(listed
        .iter()
        .any(|binding| binding["resource_type"] == "GROUP"
            && binding["resource_name"] == "pay"
            && binding["pattern_type"] == "PREFIXED"
            && binding["operation"] == "ALL"
            && binding["permission"] == "DENY"));
    let topic_only = spate_as(address, ADMIN, &["acl", "list", "--topic", "orders"]).ok();
    assert_eq!(topic_only.lines().count(), 2, "{topic_only}");
    assert!(topic_only
        .lines()
        .all(|line| line.starts_with("User:alice\t*\tTOPIC\torders\tLITERAL\t")));

    // A user without Describe on the cluster may not list them.
    let refused = spate_as(address, ALICE, &["acl", "list"]).fails_with(5);
    assert!(refused.contains("not authorized"), "{refused}");

    broker.terminate();
    broker.restart();
    let address = broker.address();
    let listed = spate_as(address, ADMIN, &["acl", "list"]).ok();
    assert_eq!(listed.lines().count(), 3, "{listed}");

    // `remove` never removes everything at once.
    spate_as(address, ADMIN, &["acl", "remove"]).fails_with(2);
    let removed = spate_as(
        address,
        ADMIN,
        &[
            "acl",
            "remove",
            "--principal",
            "User:alice",
            "--operation",
            "Read",
            "--topic",
            "orders",
        ],
    )
    .ok();
    assert_eq!(removed.lines().count(), 1, "{removed}");
    assert!(
        removed.starts_with("removed: User:alice ALLOW Read"),
        "{removed}"
    );
    let nothing = spate_as(address, ADMIN, &["acl", "remove", "--topic", "ghost"]).ok();
    assert_eq!(nothing.trim(), "no ACL matched");
    let listed = spate_as(address, ADMIN, &["acl", "list"]).ok();
    assert_eq!(listed.lines().count(), 2, "{listed}");
    assert!(!listed.contains("\tREAD\t"), "{listed}");
}

#[test]
fn a_user_without_acls_is_refused_everything_and_nothing_is_written_or_revealed() {
    let broker = secured_broker();
    let address = broker.address();
    let admin = client_as(address, ADMIN);
    let alice = client_as(address, ALICE);
    admin
        .admin()
        .create_topic(NewTopic::new("orders", 1))
        .wait()
        .expect("the super user creates a topic");
    produce_one(&admin, "orders").expect("the super user produces");
    assert_eq!(high_watermark(&admin, "orders"), 1);

    // Metadata: the topic is neither listed nor described, and a missing topic reads the same.
    let topics = alice.admin().list_topics().wait().expect("list topics");
    assert!(topics.is_empty(), "{topics:?}");
    let error = alice.admin().describe_topic("orders").wait().unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    let error = alice.admin().describe_topic("ghost").wait().unwrap_err();
    assert_refused(&error, ResourceType::Topic, "ghost");

    // Produce: refused at metadata, then, with Describe allowed, at the produce; an idempotent
    // producer does not even get a producer id (Kafka's rule: that needs IdempotentWrite on the
    // cluster or Write on some topic); nothing written.
    let error = produce_plainly(&alice, "orders").unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    grant(&admin, &[allow_topic("orders", Operation::Describe)]);
    let error = produce_plainly(&alice, "orders").unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    let error = produce_one(&alice, "orders").unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    assert_eq!(high_watermark(&admin, "orders"), 1, "nothing was written");

    // Fetch with Describe but not Read.
    let mut consumer = alice
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign("orders", Some(&[0]), StartAt::Offset(0))
        .wait()
        .expect("assign at an offset needs no lookup");
    let error =
        poll_until_error(|timeout| consumer.poll_owned(timeout).map(|records| records.len()));
    assert_refused(&error, ResourceType::Topic, "orders");

    // List offsets on a topic it may not describe.
    admin
        .admin()
        .create_topic(NewTopic::new("hidden", 1))
        .wait()
        .expect("create");
    let error = alice
        .admin()
        .list_offsets("hidden", Some(&[0]), OffsetSpec::Latest)
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "hidden");

    // Topic creation, deletion and configuration.
    let error = alice
        .admin()
        .create_topic(NewTopic::new("alices", 1))
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "alices");
    let error = alice.admin().delete_topic("orders").wait().unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    let error = alice
        .admin()
        .alter_topic_config("orders", &[("retention.ms", "1000")], &[])
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    let names: Vec<String> = admin
        .admin()
        .list_topics()
        .wait()
        .expect("list")
        .into_iter()
        .map(|topic| topic.name)
        .collect();
    assert_eq!(names, ["hidden", "orders"], "nothing created or deleted");
    let config = admin
        .admin()
        .describe_topic("orders")
        .wait()
        .expect("describe");
    assert!(
        !config
            .configs
            .iter()
            .any(|(name, value)| name == "retention.ms" && value == "1000"),
        "the config is unchanged"
    );

    // Group join, then commit with the group allowed but not the topic.
    let mut member = GroupConsumer::new(
        &alice,
        ConsumerConfig::default(),
        GroupConfig::new("billing"),
    )
    .expect("group consumer");
    member.subscribe(&["orders"]).expect("subscribe");
    let error = poll_until_error(|timeout| member.poll_owned(timeout).map(|records| records.len()));
    assert_refused(&error, ResourceType::Group, "billing");
    drop(member);
    grant(
        &admin,
        &[binding(
            ResourceType::Group,
            "billing",
            PatternType::Literal,
            Operation::Read,
            Permission::Allow,
        )],
    );
    let member = GroupConsumer::new(
        &alice,
        ConsumerConfig::default(),
        GroupConfig::new("billing"),
    )
    .expect("group consumer");
    let error = member
        .commit_offsets(vec![(spate_client::TopicPartition::new("orders", 0), 1)])
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");

    // A transactional producer may not use a transactional id without Write on it.
    let producer = alice
        .producer(ProducerConfig {
            transactional_id: Some("alice-tx".into()),
            ..ProducerConfig::default()
        })
        .expect("producer config is valid");
    let error = producer.init_transactions().wait().unwrap_err();
    assert_refused(&error, ResourceType::TransactionalId, "alice-tx");

    // Groups: only those alice may describe are listed; describing or deleting another is
    // refused by name. (The super user made "audit" by committing to it.)
    let audit = GroupConsumer::new(&admin, ConsumerConfig::default(), GroupConfig::new("audit"))
        .expect("group consumer");
    audit
        .commit_offsets(vec![(spate_client::TopicPartition::new("orders", 0), 1)])
        .wait()
        .expect("the super user commits");
    let groups = GroupAdmin::new(&admin).list_groups().wait().expect("list");
    assert!(
        groups.iter().any(|group| group.group_id == "audit"),
        "{groups:?}"
    );
    grant(
        &admin,
        &[binding(
            ResourceType::Group,
            "billing",
            PatternType::Literal,
            Operation::Describe,
            Permission::Allow,
        )],
    );
    let listed = GroupAdmin::new(&alice).list_groups().wait().expect("list");
    assert!(
        listed.iter().all(|group| group.group_id == "billing"),
        "{listed:?}"
    );
    let error = GroupAdmin::new(&alice)
        .describe_group("audit")
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Group, "audit");
    let error = GroupAdmin::new(&alice)
        .delete_group("billing")
        .wait()
        .unwrap_err();
    assert_refused(&error, ResourceType::Group, "billing");

    // A topic's configs need DescribeConfigs: with Describe only, its partitions alone.
    admin
        .admin()
        .alter_topic_config("orders", &[("retention.ms", "3600000")], &[])
        .wait()
        .expect("the super user sets a config");
    let described = alice
        .admin()
        .describe_topic("orders")
        .wait()
        .expect("describe");
    assert_eq!(described.partitions.len(), 1);
    assert!(described.configs.is_empty(), "{:?}", described.configs);
    let described = admin
        .admin()
        .describe_topic("orders")
        .wait()
        .expect("describe");
    assert_eq!(
        described.configs.get("retention.ms").map(String::as_str),
        Some("3600000")
    );

    // Cluster operations and the user APIs.
    let error = alice.admin().list_users().wait().unwrap_err();
    assert_refused(&error, ResourceType::Cluster, "kafka-cluster");
    let error = alice
        .admin()
        .describe_acls(&AclBindingFilter::any())
        .wait()
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::ClusterAuthorizationFailed));
    assert_eq!(high_watermark(&admin, "orders"), 1, "nothing was written");
}

#[test]
fn deny_wins_prefixes_match_and_a_removed_acl_applies_to_an_open_connection() {
    let broker = secured_broker();
    let address = broker.address();
    let admin = client_as(address, ADMIN);
    let alice = client_as(address, ALICE);
    for topic in ["orders", "orders-eu", "payments"] {
        admin
            .admin()
            .create_topic(NewTopic::new(topic, 1))
            .wait()
            .expect("create");
    }
    // Everything under "orders" by prefix, but never "orders-eu".
    let prefixed = [Operation::Write, Operation::Describe].map(|operation| {
        binding(
            ResourceType::Topic,
            "orders",
            PatternType::Prefixed,
            operation,
            Permission::Allow,
        )
    });
    grant(&admin, &prefixed);
    grant(
        &admin,
        &[binding(
            ResourceType::Topic,
            "orders-eu",
            PatternType::Literal,
            Operation::Write,
            Permission::Deny,
        )],
    );
    let producer = alice
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let send = |topic: &str| -> Result<(), Error> {
        let delivery =
            producer.send_blocking(ProducerRecord::new(topic, b"value").with_partition(0))?;
        producer.flush().wait()?;
        delivery.wait().map(|_| ())
    };
    send("orders").expect("a prefixed allow lets alice write");
    let error = send("orders-eu").unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders-eu");
    let error = send("payments").unwrap_err();
    assert_refused(&error, ResourceType::Topic, "payments");
    assert_eq!(high_watermark(&admin, "orders"), 1);
    assert_eq!(high_watermark(&admin, "orders-eu"), 0);
    assert_eq!(high_watermark(&admin, "payments"), 0);

    // The listing shows what matches a name (MATCH): the prefix and the literal deny.
    let matching = admin
        .admin()
        .describe_acls(&AclBindingFilter {
            resource_type: Some(ResourceType::Topic),
            resource_name: Some("orders-eu".into()),
            pattern: PatternTypeFilter::Match,
            ..AclBindingFilter::any()
        })
        .wait()
        .expect("describe acls");
    assert_eq!(matching.len(), 3, "{matching:?}");

    // The super user is not bound by the deny.
    produce_one(&admin, "orders-eu").expect("a super user writes anywhere");
    assert_eq!(high_watermark(&admin, "orders-eu"), 1);

    // Removing the Write allow takes effect on alice's open connection at its next request.
    let removed = admin
        .admin()
        .delete_acls(&[AclBindingFilter {
            operation: Some(Operation::Write),
            permission: Some(Permission::Allow),
            ..AclBindingFilter::any()
        }])
        .wait()
        .expect("delete acls");
    assert_eq!(removed.len(), 1);
    assert_eq!(
        removed[0].as_ref().expect("deleted"),
        &vec![prefixed[0].clone()]
    );
    let error = send("orders").unwrap_err();
    assert_refused(&error, ResourceType::Topic, "orders");
    assert_eq!(
        high_watermark(&admin, "orders"),
        1,
        "nothing more was written"
    );
}

/// Polls until the consumer reports an error (or fails the test after a while).
fn poll_until_error(mut poll: impl FnMut(Duration) -> Result<usize, Error>) -> Error {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match poll(Duration::from_millis(200)) {
            Err(error) => return error,
            Ok(count) => assert_eq!(count, 0, "records arrived for a refused read"),
        }
        assert!(std::time::Instant::now() < deadline, "no error within 30 s");
    }
}

#[test]
fn the_acl_apis_answer_security_disabled_on_a_broker_without_authorization() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let refused = spate(broker.address(), &["acl", "list"], b"").fails_with(1);
    assert!(
        refused.contains("authorization is not enabled"),
        "{refused}"
    );
    let client = Client::connect_to(broker.address().to_string()).expect("client");
    let error = client
        .admin()
        .create_acls(&[allow_topic("orders", Operation::Read)])
        .wait()
        .unwrap_err();
    assert_eq!(error.code(), Some(ErrorCode::SecurityDisabled));
    // Without authorization everything is allowed, as before ACLs existed.
    client
        .admin()
        .create_topic(NewTopic::new("orders", 1))
        .wait()
        .expect("create");
    produce_plainly(&client, "orders").expect("produce");
}

#[test]
fn a_user_with_the_right_acls_consumes_in_a_group_and_commits_a_transaction() {
    let broker = secured_broker();
    let address = broker.address();
    let admin = client_as(address, ADMIN);
    let alice = client_as(address, ALICE);
    for topic in ["input", "output"] {
        admin
            .admin()
            .create_topic(NewTopic::new(topic, 1))
            .wait()
            .expect("create");
    }
    produce_one(&admin, "input").expect("the super user produces");
    grant(
        &admin,
        &[
            allow_topic("input", Operation::Read),
            allow_topic("output", Operation::Write),
            binding(
                ResourceType::Group,
                "copier",
                PatternType::Literal,
                Operation::Read,
                Permission::Allow,
            ),
            binding(
                ResourceType::TransactionalId,
                "copier-tx",
                PatternType::Literal,
                Operation::Write,
                Permission::Allow,
            ),
        ],
    );

    // A member of the group reads what it may read (Read implies the Describe that metadata,
    // FindCoordinator and OffsetFetch need).
    let mut member = GroupConsumer::new(
        &alice,
        ConsumerConfig::default(),
        GroupConfig::new("copier"),
    )
    .expect("group consumer");
    member.subscribe(&["input"]).expect("subscribe");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut records = Vec::new();
    while records.is_empty() {
        assert!(std::time::Instant::now() < deadline, "no record arrived");
        records = member
            .poll_owned(Duration::from_millis(200))
            .expect("a member with Read polls");
    }

    // A transaction writes the record on and commits the group's offset with it.
    let producer = alice
        .producer(ProducerConfig {
            transactional_id: Some("copier-tx".into()),
            ..ProducerConfig::default()
        })
        .expect("producer config is valid");
    producer
        .init_transactions()
        .wait()
        .expect("init transactions");
    producer.begin_transaction().expect("begin");
    let delivery = producer
        .send_blocking(ProducerRecord::new("output", b"copied").with_partition(0))
        .expect("send");
    producer
        .send_offsets_to_transaction(
            &[(spate_client::TopicPartition::new("input", 0), 1)],
            &member.group_metadata(),
        )
        .wait()
        .expect("offsets in the transaction");
    producer.commit_transaction().wait().expect("commit");
    delivery.wait().expect("delivered");
    assert_eq!(
        high_watermark(&admin, "output"),
        2,
        "the record and the commit marker"
    );
    let committed = member
        .committed(&[spate_client::TopicPartition::new("input", 0)])
        .wait()
        .expect("committed offsets");
    assert_eq!(committed, [Some(1)]);

    // Writing outside the ACLs spoils the transaction (AddPartitionsToTxn is refused), and the
    // commit says why, naming the topic.
    producer.begin_transaction().expect("begin");
    let delivery = producer
        .send_blocking(ProducerRecord::new("input", b"not allowed").with_partition(0))
        .expect("accepted into the transaction");
    let refused = producer.commit_transaction().wait().unwrap_err();
    match &refused {
        Error::TransactionAbortable { cause } => {
            assert_refused(cause, ResourceType::Topic, "input")
        }
        other => panic!("expected an abortable transaction, got: {other}"),
    }
    assert!(delivery.wait().is_err(), "the record was not written");
    producer.abort_transaction().wait().expect("abort");
    assert_eq!(high_watermark(&admin, "input"), 1, "nothing was written");
}
