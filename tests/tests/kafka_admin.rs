//! End-to-end: the Kafka admin APIs (CreateTopics, DeleteTopics, CreatePartitions,
//! DeleteRecords, DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster,
//! DescribeLogDirs) against the real broker, spoken on the wire with the `kafka-protocol`
//! crate's encoders (`KafkaTestClient`) at every served version, and checked against what the
//! native side (`spate topic describe`, `spate produce`) sees of the same topics.

mod cli_support;

use serde_json::Value;
use spate_kafka_protocol::kafka_protocol::messages::create_partitions_request::{
    CreatePartitionsAssignment, CreatePartitionsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use spate_kafka_protocol::kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use spate_kafka_protocol::kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::{
    alter_configs_request, incremental_alter_configs_request, AlterConfigsRequest, BrokerId,
    CreatePartitionsRequest, CreateTopicsRequest, DeleteRecordsRequest, DeleteTopicsRequest,
    DescribeClusterRequest, DescribeConfigsRequest, DescribeLogDirsRequest,
    IncrementalAlterConfigsRequest, MetadataRequest, MetadataResponse, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient};
use uuid::Uuid;

use cli_support::spate;

const TOPIC: i8 = 2;
const BROKER: i8 = 4;
const SOURCE_TOPIC: i8 = 1;
const SOURCE_DEFAULT: i8 = 5;
const TYPE_LONG: i8 = 5;
const TYPE_LIST: i8 = 7;
const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn name(value: &str) -> TopicName {
    TopicName(text(value))
}

fn code(error: ResponseError) -> i16 {
    error.code()
}

fn new_topic(topic: &str, partitions: i32, configs: &[(&str, &str)]) -> CreatableTopic {
    CreatableTopic::default()
        .with_name(name(topic))
        .with_num_partitions(partitions)
        .with_replication_factor(-1)
        .with_configs(
            configs
                .iter()
                .map(|(key, value)| {
                    CreatableTopicConfig::default()
                        .with_name(text(key))
                        .with_value(Some(text(value)))
                })
                .collect(),
        )
}

fn create(
    kafka: &mut KafkaTestClient,
    version: i16,
    topics: Vec<CreatableTopic>,
    validate_only: bool,
) -> Vec<CreatableTopicResult> {
    let request = CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(30_000)
        .with_validate_only(validate_only);
    kafka.call(version, &request).topics
}

fn create_one(
    kafka: &mut KafkaTestClient,
    version: i16,
    topic: CreatableTopic,
) -> CreatableTopicResult {
    let mut results = create(kafka, version, vec![topic], false);
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn metadata(kafka: &mut KafkaTestClient, topics: &[&str]) -> MetadataResponse {
    let request = MetadataRequest::default()
        .with_topics(Some(
            topics
                .iter()
                .map(|topic| MetadataRequestTopic::default().with_name(Some(name(topic))))
                .collect(),
        ))
        // Looking must not create (Metadata's auto-creation is on by default).
        .with_allow_auto_topic_creation(false);
    kafka.call(12, &request)
}

/// The partition count Metadata reports for `topic`, or its error code.
fn partition_count(kafka: &mut KafkaTestClient, topic: &str) -> Result<usize, i16> {
    let answer = metadata(kafka, &[topic]);
    let found = &answer.topics[0];
    if found.error_code != 0 {
        return Err(found.error_code);
    }
    Ok(found.partitions.len())
}

fn describe(
    kafka: &mut KafkaTestClient,
    version: i16,
    resource_type: i8,
    resource: &str,
    keys: Option<&[&str]>,
    synonyms: bool,
    documentation: bool,
) -> DescribeConfigsResult {
    let request = DescribeConfigsRequest::default()
        .with_resources(vec![DescribeConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(text(resource))
            .with_configuration_keys(
                keys.map(|keys| keys.iter().map(|key| text(key)).collect()),
            )])
        .with_include_synonyms(synonyms)
        .with_include_documentation(documentation && version >= 3);
    let mut results = kafka.call(version, &request).results;
    assert_eq!(results.len(), 1);
    results.remove(0)
}

fn config<'a>(result: &'a DescribeConfigsResult, key: &str) -> &'a DescribeConfigsResourceResult {
    result
        .configs
        .iter()
        .find(|config| config.name.as_str() == key)
        .unwrap_or_else(|| panic!("{key} is not described: {result:?}"))
}

fn value(result: &DescribeConfigsResult, key: &str) -> String {
    config(result, key)
        .value
        .as_ref()
        .map(|value| value.to_string())
        .unwrap_or_default()
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text:?}"))
}

#[test]
fn create_topics_creates_at_every_version_and_refuses_each_bad_topic_with_its_code() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    for version in 2..=7 {
        let topic = format!("created-v{version}");
        let created = create_one(
            &mut kafka,
            version,
            new_topic(
                &topic,
                3,
                &[("retention.ms", "60000"), ("cleanup.policy", "delete")],
            ),
        );
        assert_eq!(created.error_code, 0, "v{version}: {created:?}");
        assert_eq!(partition_count(&mut kafka, &topic), Ok(3), "v{version}");
        if version >= 5 {
            assert_eq!((created.num_partitions, created.replication_factor), (3, 1));
            let configs = created.configs.as_ref().expect("v5+ lists the configs");
            let retention = configs
                .iter()
                .find(|config| config.name.as_str() == "retention.ms")
                .expect("retention.ms");
            assert_eq!(retention.value.as_deref(), Some("60000"));
            assert_eq!(retention.config_source, SOURCE_TOPIC);
        }
        if version >= 7 {
            assert!(!created.topic_id.is_nil());
            let described = metadata(&mut kafka, &[&topic]);
            assert_eq!(
                described.topics[0].topic_id, created.topic_id,
                "one topic id rule"
            );
        }
    }

    // Kafka's metrics make '.' and '_' the same: a name differing only there collides.
    assert_eq!(
        create_one(&mut kafka, 7, new_topic("dotted.name", 1, &[])).error_code,
        0
    );

    // -1 partitions and replication factor: the broker's defaults (one partition).
    let defaults = create_one(&mut kafka, 7, new_topic("defaults", -1, &[]));
    assert_eq!((defaults.error_code, defaults.num_partitions), (0, 1));
    assert_eq!(partition_count(&mut kafka, "defaults"), Ok(1));

    let long_name = "n".repeat(250);
    let refused = [
        (
            new_topic("created-v7", 1, &[]),
            ResponseError::TopicAlreadyExists,
            "exists",
        ),
        (
            new_topic("bad/name", 1, &[]),
            ResponseError::InvalidTopicException,
            "bad/name",
        ),
        (
            new_topic(&long_name, 1, &[]),
            ResponseError::InvalidTopicException,
            "249",
        ),
        (
            new_topic("dotted_name", 1, &[]),
            ResponseError::InvalidTopicException,
            "collides",
        ),
        (
            new_topic("archived", 1, &[("cleanup.policy", "archive")]),
            ResponseError::InvalidConfig,
            "cleanup.policy",
        ),
        (
            new_topic("tiered", 1, &[("local.retention.ms", "5")]),
            ResponseError::InvalidConfig,
            "local.retention.ms",
        ),
        (
            new_topic("tiny", 1, &[("segment.bytes", "10")]),
            ResponseError::InvalidConfig,
            "segment.bytes",
        ),
        (
            new_topic("zero", 0, &[]),
            ResponseError::InvalidPartitions,
            "partitions",
        ),
        (
            new_topic("replicated", 1, &[]).with_replication_factor(3),
            ResponseError::InvalidReplicationFactor,
            "replication factor 3",
        ),
        (
            new_topic("__mine", 1, &[]),
            ResponseError::InvalidTopicException,
            "internal",
        ),
    ];
    for version in [2, 4, 5, 7] {
        for (topic, error, message) in &refused {
            let answer = create_one(&mut kafka, version, topic.clone());
            assert_eq!(
                answer.error_code,
                code(*error),
                "v{version} {}: {answer:?}",
                topic.name.0
            );
            let said = answer.error_message.as_deref().unwrap_or_default();
            assert!(
                said.contains(message),
                "v{version}: {said:?} should name {message:?}"
            );
            if version >= 5 {
                assert_eq!((answer.num_partitions, answer.replication_factor), (-1, -1));
            }
        }
    }
    for (topic, ..) in &refused[1..] {
        assert!(
            partition_count(&mut kafka, topic.name.0.as_str()).is_err(),
            "{} was not created",
            topic.name.0
        );
    }

    // validate_only checks everything and creates nothing.
    let validated = create(
        &mut kafka,
        7,
        vec![new_topic("checked", 4, &[("retention.bytes", "1000")])],
        true,
    );
    assert_eq!(validated[0].error_code, 0, "{validated:?}");
    assert_eq!(validated[0].num_partitions, 4);
    assert_eq!(
        partition_count(&mut kafka, "checked"),
        Err(code(ResponseError::UnknownTopicOrPartition))
    );
    let invalid = create(&mut kafka, 7, vec![new_topic("created-v2", 1, &[])], true);
    assert_eq!(
        invalid[0].error_code,
        code(ResponseError::TopicAlreadyExists)
    );

    // A topic named twice in one request: both refused, neither created.
    let twice = create(
        &mut kafka,
        5,
        vec![new_topic("twice", 1, &[]), new_topic("twice", 2, &[])],
        false,
    );
    assert!(
        twice
            .iter()
            .all(|answer| answer.error_code == code(ResponseError::InvalidRequest)),
        "{twice:?}"
    );
    assert!(partition_count(&mut kafka, "twice").is_err());
}

#[test]
fn describe_configs_gives_every_config_with_its_source_synonyms_type_and_documentation() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let created = create_one(
        &mut kafka,
        7,
        new_topic("orders", 2, &[("retention.ms", "60000")]),
    );
    assert_eq!(created.error_code, 0);
    for version in 1..=4 {
        let all = describe(&mut kafka, version, TOPIC, "orders", None, true, true);
        assert_eq!(all.error_code, 0, "v{version}: {all:?}");
        for key in [
            "retention.ms",
            "retention.bytes",
            "segment.bytes",
            "segment.ms",
            "max.message.bytes",
            "cleanup.policy",
            "compression.type",
            "min.insync.replicas",
            "durability",
            "group.commit.bytes",
            "group.commit.us",
        ] {
            config(&all, key);
        }
        let retention = config(&all, "retention.ms");
        assert_eq!(retention.value.as_deref(), Some("60000"));
        assert_eq!(retention.config_source, SOURCE_TOPIC);
        let synonyms: Vec<(&str, Option<&str>, i8)> = retention
            .synonyms
            .iter()
            .map(|synonym| {
                (
                    synonym.name.as_str(),
                    synonym.value.as_deref(),
                    synonym.source,
                )
            })
            .collect();
        assert_eq!(
            synonyms,
            [
                ("retention.ms", Some("60000"), SOURCE_TOPIC),
                ("log.retention.ms", Some("604800000"), SOURCE_DEFAULT)
            ],
            "v{version}"
        );
        let segment = config(&all, "segment.bytes");
        assert_eq!(segment.value.as_deref(), Some("1073741824"));
        assert_eq!(segment.config_source, SOURCE_DEFAULT);
        assert!(!segment.read_only);
        let cleanup = config(&all, "cleanup.policy");
        assert_eq!(cleanup.value.as_deref(), Some("delete"));
        assert!(!cleanup.read_only);
        assert_eq!(
            config(&all, "delete.retention.ms").value.as_deref(),
            Some("86400000")
        );
        assert!(all.configs.iter().all(|config| !config.is_sensitive));
        if version >= 3 {
            assert_eq!(retention.config_type, TYPE_LONG);
            assert_eq!(cleanup.config_type, TYPE_LIST);
            let documentation = config(&all, "durability")
                .documentation
                .as_deref()
                .unwrap_or_default();
            assert!(documentation.contains("fsync"), "{documentation:?}");
        }

        // Without synonyms or documentation asked, none are sent; a key filter keeps only those.
        let filtered = describe(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            Some(&["retention.bytes", "no.such.key"]),
            false,
            false,
        );
        let names: Vec<&str> = filtered
            .configs
            .iter()
            .map(|config| config.name.as_str())
            .collect();
        assert_eq!(names, ["retention.bytes"], "v{version}");
        assert_eq!(filtered.configs[0].value.as_deref(), Some("-1"));
        assert!(filtered.configs[0].synonyms.is_empty());
        if version >= 3 {
            assert_eq!(filtered.configs[0].documentation, None);
        }

        let missing = describe(&mut kafka, version, TOPIC, "nowhere", None, false, false);
        assert_eq!(
            missing.error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );

        let broker_configs = describe(&mut kafka, version, BROKER, "0", None, true, false);
        assert_eq!(broker_configs.error_code, 0, "{broker_configs:?}");
        assert_eq!(value(&broker_configs, "num.partitions"), "1");
        assert_eq!(value(&broker_configs, "default.replication.factor"), "1");
        assert_eq!(value(&broker_configs, "auto.create.topics.enable"), "true");
        assert_eq!(value(&broker_configs, "log.retention.ms"), "604800000");
        let data_dir = std::fs::canonicalize(broker.data_dir()).unwrap();
        assert_eq!(
            std::fs::canonicalize(value(&broker_configs, "log.dirs")).unwrap(),
            data_dir
        );
        assert!(broker_configs.configs.iter().all(|config| config.read_only));
        let other = describe(&mut kafka, version, BROKER, "7", None, false, false);
        assert_eq!(other.error_code, code(ResponseError::InvalidRequest));
    }
}

fn alter(
    kafka: &mut KafkaTestClient,
    version: i16,
    resource_type: i8,
    resource: &str,
    configs: &[(&str, &str)],
    validate_only: bool,
) -> (i16, String) {
    let request = AlterConfigsRequest::default()
        .with_resources(vec![alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(text(resource))
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        alter_configs_request::AlterableConfig::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                    })
                    .collect(),
            )])
        .with_validate_only(validate_only);
    let answer = &kafka.call(version, &request).responses[0];
    (
        answer.error_code,
        answer
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string(),
    )
}

fn alter_incrementally(
    kafka: &mut KafkaTestClient,
    version: i16,
    resource_type: i8,
    resource: &str,
    operations: &[(&str, i8, &str)],
) -> (i16, String) {
    let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
        incremental_alter_configs_request::AlterConfigsResource::default()
            .with_resource_type(resource_type)
            .with_resource_name(text(resource))
            .with_configs(
                operations
                    .iter()
                    .map(|(key, operation, value)| {
                        incremental_alter_configs_request::AlterableConfig::default()
                            .with_name(text(key))
                            .with_config_operation(*operation)
                            .with_value(Some(text(value)))
                    })
                    .collect(),
            ),
    ]);
    let answer = &kafka.call(version, &request).responses[0];
    (
        answer.error_code,
        answer
            .error_message
            .as_deref()
            .unwrap_or_default()
            .to_string(),
    )
}

#[test]
fn alter_configs_replace_and_incremental_changes_are_what_describe_and_the_native_side_see() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(
        create_one(
            &mut kafka,
            7,
            new_topic("orders", 1, &[("retention.ms", "60000")])
        )
        .error_code,
        0
    );
    for version in 0..=2 {
        // AlterConfigs replaces the topic's whole set: retention.ms goes back to its default.
        let (error, message) = alter(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            &[("retention.bytes", "1048576")],
            false,
        );
        assert_eq!(error, 0, "v{version}: {message}");
        let described = describe(&mut kafka, 4, TOPIC, "orders", None, false, false);
        assert_eq!(value(&described, "retention.bytes"), "1048576");
        assert_eq!(
            config(&described, "retention.bytes").config_source,
            SOURCE_TOPIC
        );
        assert_eq!(value(&described, "retention.ms"), "604800000");
        assert_eq!(
            config(&described, "retention.ms").config_source,
            SOURCE_DEFAULT
        );

        // validate_only changes nothing.
        let (error, _) = alter(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            &[("retention.ms", "5")],
            true,
        );
        assert_eq!(error, 0);
        let unchanged = describe(&mut kafka, 4, TOPIC, "orders", None, false, false);
        assert_eq!(value(&unchanged, "retention.ms"), "604800000");

        let (error, message) = alter(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            &[("flush.ms", "5")],
            false,
        );
        assert_eq!(error, code(ResponseError::InvalidConfig));
        assert!(
            message.contains("flush.ms") && message.contains("durability"),
            "{message}"
        );
        let (error, _) = alter(
            &mut kafka,
            version,
            TOPIC,
            "nowhere",
            &[("retention.ms", "5")],
            false,
        );
        assert_eq!(error, code(ResponseError::UnknownTopicOrPartition));
        let (error, message) = alter(
            &mut kafka,
            version,
            BROKER,
            "0",
            &[("log.retention.ms", "5")],
            false,
        );
        assert_eq!(error, code(ResponseError::InvalidRequest), "{message}");
    }
    for version in 0..=1 {
        let (error, message) = alter_incrementally(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            &[
                ("segment.ms", SET, "3600000"),
                ("retention.bytes", DELETE, ""),
                ("durability", SET, "fsync-every-append"),
            ],
        );
        assert_eq!(error, 0, "v{version}: {message}");
        let described = describe(&mut kafka, 4, TOPIC, "orders", None, false, false);
        assert_eq!(value(&described, "segment.ms"), "3600000");
        assert_eq!(value(&described, "durability"), "fsync-every-append");
        assert_eq!(value(&described, "retention.bytes"), "-1");
        assert_eq!(
            config(&described, "retention.bytes").config_source,
            SOURCE_DEFAULT
        );

        for (operations, error, message) in [
            (
                &[("retention.ms", APPEND, "5")][..],
                ResponseError::InvalidConfig,
                "list",
            ),
            (
                &[("cleanup.policy", APPEND, "archive")][..],
                ResponseError::InvalidConfig,
                "archive",
            ),
            (
                &[("min.insync.replicas", SET, "2")][..],
                ResponseError::InvalidConfig,
                "replica",
            ),
            (
                &[("no.such.config", SET, "1")][..],
                ResponseError::InvalidConfig,
                "no.such.config",
            ),
            (
                &[("segment.ms", SET, "1"), ("segment.ms", DELETE, "")][..],
                ResponseError::InvalidRequest,
                "more than once",
            ),
        ] {
            let (answer, said) =
                alter_incrementally(&mut kafka, version, TOPIC, "orders", operations);
            assert_eq!(answer, code(error), "v{version} {operations:?}: {said}");
            assert!(said.contains(message), "{said:?} should say {message:?}");
        }
        // A refused change leaves the earlier ones in place.
        assert_eq!(
            value(
                &describe(&mut kafka, 4, TOPIC, "orders", None, false, false),
                "segment.ms"
            ),
            "3600000"
        );
        let (cleanup, _) = alter_incrementally(
            &mut kafka,
            version,
            TOPIC,
            "orders",
            &[("cleanup.policy", APPEND, "delete")],
        );
        assert_eq!(cleanup, 0);
    }

    // The native side sees the same configuration.
    let described = json(
        &spate(
            broker.address(),
            &["topic", "describe", "orders", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(described["configs"]["segment.ms"]["value"], "3600000");
    assert_eq!(described["configs"]["segment.ms"]["source"], "topic");
    assert_eq!(
        described["configs"]["durability"]["value"],
        "fsync-every-append"
    );
    assert_eq!(described["configs"]["retention.ms"]["source"], "default");
}

#[test]
fn create_partitions_grows_topics_and_refuses_what_kafka_refuses() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(
        create_one(&mut kafka, 7, new_topic("orders", 1, &[])).error_code,
        0
    );
    let grow = |count: i32, assignments: Option<Vec<CreatePartitionsAssignment>>| {
        CreatePartitionsTopic::default()
            .with_name(name("orders"))
            .with_count(count)
            .with_assignments(assignments)
    };
    let mut count = 1;
    for version in 0..=3 {
        count += 1;
        let request = CreatePartitionsRequest::default()
            .with_topics(vec![grow(count, None)])
            .with_timeout_ms(30_000);
        let answer = kafka.call(version, &request);
        assert_eq!(answer.results[0].error_code, 0, "v{version}: {answer:?}");
        assert_eq!(partition_count(&mut kafka, "orders"), Ok(count as usize));

        let checks = [
            (grow(count, None), ResponseError::InvalidPartitions),
            (grow(1, None), ResponseError::InvalidPartitions),
            (
                grow(
                    count + 1,
                    Some(vec![
                        CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(1)])
                    ]),
                ),
                ResponseError::InvalidReplicaAssignment,
            ),
            (
                CreatePartitionsTopic::default()
                    .with_name(name("nowhere"))
                    .with_count(3),
                ResponseError::UnknownTopicOrPartition,
            ),
        ];
        for (topic, error) in checks {
            let request = CreatePartitionsRequest::default()
                .with_topics(vec![topic.clone()])
                .with_timeout_ms(30_000);
            let answer = kafka.call(version, &request);
            assert_eq!(
                answer.results[0].error_code,
                code(error),
                "v{version} {topic:?}: {answer:?}"
            );
            assert!(answer.results[0].error_message.is_some());
        }
        let validated = CreatePartitionsRequest::default()
            .with_topics(vec![grow(count + 5, None)])
            .with_validate_only(true);
        assert_eq!(kafka.call(version, &validated).results[0].error_code, 0);
        assert_eq!(
            partition_count(&mut kafka, "orders"),
            Ok(count as usize),
            "validate_only adds nothing"
        );
    }
    // Assignments naming this broker (node 0) are taken.
    let assigned = CreatePartitionsRequest::default().with_topics(vec![grow(
        count + 2,
        Some(vec![
            CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
            CreatePartitionsAssignment::default().with_broker_ids(vec![BrokerId(0)]),
        ]),
    )]);
    assert_eq!(kafka.call(3, &assigned).results[0].error_code, 0);
    let described = json(
        &spate(
            broker.address(),
            &["topic", "describe", "orders", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(
        described["partitions"].as_array().unwrap().len(),
        count as usize + 2
    );
}

#[test]
fn delete_records_moves_the_log_start_the_native_side_sees() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    assert_eq!(
        create_one(&mut kafka, 7, new_topic("orders", 2, &[])).error_code,
        0
    );
    let records = "record\n".repeat(10);
    spate(
        broker.address(),
        &["produce", "orders", "--partition", "0"],
        records.as_bytes(),
    )
    .ok();
    let delete = |partition: i32, offset: i64| {
        DeleteRecordsRequest::default()
            .with_topics(vec![DeleteRecordsTopic::default()
                .with_name(name("orders"))
                .with_partitions(vec![DeleteRecordsPartition::default()
                    .with_partition_index(partition)
                    .with_offset(offset)])])
            .with_timeout_ms(30_000)
    };
    for (version, offset) in [(0, 2), (1, 4), (2, 6)] {
        let answer = kafka.call(version, &delete(0, offset));
        let result = &answer.topics[0].partitions[0];
        assert_eq!(
            (result.error_code, result.low_watermark),
            (0, offset),
            "v{version}: {answer:?}"
        );
        let described = json(
            &spate(
                broker.address(),
                &["topic", "describe", "orders", "--json"],
                b"",
            )
            .ok(),
        );
        assert_eq!(described["partitions"][0]["log_start_offset"], offset);
    }
    for (partition, offset, error) in [
        (0, 11, ResponseError::OffsetOutOfRange),
        (7, 0, ResponseError::UnknownTopicOrPartition),
        (-1, 0, ResponseError::UnknownTopicOrPartition),
    ] {
        let answer = kafka.call(2, &delete(partition, offset));
        assert_eq!(
            answer.topics[0].partitions[0].error_code,
            code(error),
            "{answer:?}"
        );
    }
    // -1: everything up to the high watermark.
    let answer = kafka.call(2, &delete(0, -1));
    assert_eq!(answer.topics[0].partitions[0].low_watermark, 10);
    let described = json(
        &spate(
            broker.address(),
            &["topic", "describe", "orders", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(described["partitions"][0]["log_start_offset"], 10);
    assert_eq!(described["partitions"][0]["high_watermark"], 10);
}

#[test]
fn delete_topics_by_name_and_by_id_at_every_version() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    for version in 1..=6 {
        let topic = format!("doomed-v{version}");
        assert_eq!(
            create_one(&mut kafka, 7, new_topic(&topic, 2, &[])).error_code,
            0
        );
        let request = if version >= 6 {
            DeleteTopicsRequest::default().with_topics(vec![
                DeleteTopicState::default().with_name(Some(name(&topic)))
            ])
        } else {
            DeleteTopicsRequest::default().with_topic_names(vec![name(&topic)])
        }
        .with_timeout_ms(30_000);
        let answer = kafka.call(version, &request);
        assert_eq!(answer.responses.len(), 1);
        assert_eq!(answer.responses[0].error_code, 0, "v{version}: {answer:?}");
        assert_eq!(
            answer.responses[0]
                .name
                .as_ref()
                .map(|name| name.0.as_str()),
            Some(topic.as_str())
        );
        assert_eq!(
            partition_count(&mut kafka, &topic),
            Err(code(ResponseError::UnknownTopicOrPartition))
        );

        let again = kafka.call(version, &request);
        assert_eq!(
            again.responses[0].error_code,
            code(ResponseError::UnknownTopicOrPartition)
        );
        if version >= 5 {
            assert!(again.responses[0].error_message.is_some());
        }
    }

    // v6 by id: the id CreateTopics gave; the name comes back with it.
    let created = create_one(&mut kafka, 7, new_topic("by-id", 1, &[]));
    let by_id = DeleteTopicsRequest::default()
        .with_topics(vec![
            DeleteTopicState::default().with_topic_id(created.topic_id)
        ])
        .with_timeout_ms(30_000);
    let answer = kafka.call(6, &by_id);
    assert_eq!(answer.responses[0].error_code, 0, "{answer:?}");
    assert_eq!(answer.responses[0].topic_id, created.topic_id);
    assert_eq!(
        answer.responses[0]
            .name
            .as_ref()
            .map(|name| name.0.as_str()),
        Some("by-id")
    );
    assert!(partition_count(&mut kafka, "by-id").is_err());
    // The same name again is a new topic with a new id: the old id deletes nothing.
    let recreated = create_one(&mut kafka, 7, new_topic("by-id", 1, &[]));
    assert_ne!(recreated.topic_id, created.topic_id);
    let stale = kafka.call(6, &by_id);
    assert_eq!(
        stale.responses[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
    assert_eq!(partition_count(&mut kafka, "by-id"), Ok(1));
    let unknown = DeleteTopicsRequest::default().with_topics(vec![
        DeleteTopicState::default().with_topic_id(Uuid::from_u64_pair(1, 2))
    ]);
    assert_eq!(
        kafka.call(6, &unknown).responses[0].error_code,
        code(ResponseError::UnknownTopicId)
    );
    let both = DeleteTopicsRequest::default().with_topics(vec![DeleteTopicState::default()
        .with_name(Some(name("by-id")))
        .with_topic_id(recreated.topic_id)]);
    assert_eq!(
        kafka.call(6, &both).responses[0].error_code,
        code(ResponseError::InvalidRequest)
    );
    assert_eq!(partition_count(&mut kafka, "by-id"), Ok(1));
    let internal =
        DeleteTopicsRequest::default().with_topic_names(vec![name("__consumer_offsets")]);
    assert_eq!(
        kafka.call(4, &internal).responses[0].error_code,
        code(ResponseError::InvalidTopicException)
    );
}

#[test]
fn topics_made_on_either_protocol_are_the_same_topic_on_the_other() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let created = create_one(
        &mut kafka,
        7,
        new_topic(
            "from-kafka",
            3,
            &[
                ("retention.bytes", "1048576"),
                ("max.message.bytes", "65536"),
            ],
        ),
    );
    assert_eq!(created.error_code, 0);
    let described = json(
        &spate(
            broker.address(),
            &["topic", "describe", "from-kafka", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(described["partitions"].as_array().unwrap().len(), 3);
    assert_eq!(described["configs"]["retention.bytes"]["value"], "1048576");
    assert_eq!(described["configs"]["max.message.bytes"]["value"], "65536");

    spate(
        broker.address(),
        &[
            "topic",
            "create",
            "from-native",
            "--partitions",
            "2",
            "--config",
            "segment.ms=60000",
        ],
        b"",
    )
    .ok();
    assert_eq!(partition_count(&mut kafka, "from-native"), Ok(2));
    let native = describe(&mut kafka, 4, TOPIC, "from-native", None, false, false);
    assert_eq!(value(&native, "segment.ms"), "60000");
    assert_eq!(config(&native, "segment.ms").config_source, SOURCE_TOPIC);
    let again = create_one(&mut kafka, 7, new_topic("from-native", 1, &[]));
    assert_eq!(again.error_code, code(ResponseError::TopicAlreadyExists));

    spate(broker.address(), &["topic", "delete", "from-kafka"], b"").ok();
    assert!(partition_count(&mut kafka, "from-kafka").is_err());
}

#[test]
fn describe_cluster_and_log_dirs_describe_this_broker_and_its_partitions() {
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let cluster_id = metadata(&mut kafka, &[]).cluster_id.expect("a cluster id");
    for version in 0..=2 {
        let answer = kafka.call(
            version,
            &DescribeClusterRequest::default().with_include_cluster_authorized_operations(true),
        );
        assert_eq!(answer.error_code, 0, "v{version}: {answer:?}");
        assert_eq!(answer.cluster_id, cluster_id);
        assert_eq!(answer.controller_id, BrokerId(0));
        assert_eq!(answer.brokers.len(), 1);
        let node = &answer.brokers[0];
        assert_eq!(node.broker_id, BrokerId(0));
        assert_eq!(node.port, i32::from(broker.kafka_address().port()));
        assert_eq!(node.host.as_str(), broker.kafka_address().ip().to_string());
        assert!(answer.cluster_authorized_operations > 0);
        if version >= 1 {
            let controllers = kafka.call(
                version,
                &DescribeClusterRequest::default().with_endpoint_type(2),
            );
            assert_eq!(
                controllers.error_code,
                code(ResponseError::UnsupportedEndpointType)
            );
        }
    }

    assert_eq!(
        create_one(&mut kafka, 7, new_topic("orders", 2, &[])).error_code,
        0
    );
    spate(
        broker.address(),
        &["produce", "orders", "--partition", "1"],
        b"a\nb\nc\n",
    )
    .ok();
    let data_dir = std::fs::canonicalize(broker.data_dir()).unwrap();
    for version in 1..=4 {
        let all = kafka.call(
            version,
            &DescribeLogDirsRequest::default().with_topics(None),
        );
        assert_eq!(all.results.len(), 1, "v{version}: {all:?}");
        let directory = &all.results[0];
        assert_eq!(directory.error_code, 0);
        assert_eq!(std::path::Path::new(directory.log_dir.as_str()), data_dir);
        let orders = directory
            .topics
            .iter()
            .find(|topic| topic.name.0.as_str() == "orders")
            .expect("orders is described");
        let sizes: Vec<(i32, bool, i64)> = orders
            .partitions
            .iter()
            .map(|partition| {
                (
                    partition.partition_index,
                    partition.partition_size > 0,
                    partition.offset_lag,
                )
            })
            .collect();
        assert_eq!(sizes, [(0, false, 0), (1, true, 0)], "v{version}");
        if version >= 4 {
            assert!(
                directory.total_bytes > 0 && directory.usable_bytes >= 0,
                "{directory:?}"
            );
        }
        let one = kafka.call(
            version,
            &DescribeLogDirsRequest::default().with_topics(Some(vec![
                DescribableLogDirTopic::default()
                    .with_topic(name("orders"))
                    .with_partitions(vec![1, 9]),
                DescribableLogDirTopic::default()
                    .with_topic(name("nowhere"))
                    .with_partitions(vec![0]),
            ])),
        );
        let topics = &one.results[0].topics;
        assert_eq!(topics.len(), 1, "v{version}: {one:?}");
        assert_eq!(topics[0].partitions.len(), 1);
        assert_eq!(topics[0].partitions[0].partition_index, 1);
    }
}

#[test]
fn compacted_topics_are_created_described_and_altered_as_kafka_connect_and_streams_ask() {
    // Kafka Connect refuses to start unless its config, offset and status topics describe
    // cleanup.policy=compact; Streams creates its changelogs with it.
    let broker = broker();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let created = create_one(
        &mut kafka,
        7,
        new_topic(
            "connect-configs",
            1,
            &[
                ("cleanup.policy", "compact"),
                ("min.cleanable.dirty.ratio", "0.01"),
                ("delete.retention.ms", "100"),
            ],
        ),
    );
    assert_eq!(created.error_code, 0, "{created:?}");
    let described = describe(&mut kafka, 4, TOPIC, "connect-configs", None, true, true);
    let cleanup = config(&described, "cleanup.policy");
    assert_eq!(cleanup.value.as_deref(), Some("compact"));
    assert_eq!(cleanup.config_source, SOURCE_TOPIC);
    assert_eq!(value(&described, "min.cleanable.dirty.ratio"), "0.01");
    assert_eq!(value(&described, "delete.retention.ms"), "100");
    assert_eq!(value(&described, "min.compaction.lag.ms"), "0");
    assert_eq!(
        config(&described, "min.compaction.lag.ms").config_source,
        SOURCE_DEFAULT
    );
    // APPEND and SUBTRACT work on the list, as kafka-configs --add-config does.
    assert_eq!(
        alter_incrementally(
            &mut kafka,
            1,
            TOPIC,
            "connect-configs",
            &[("cleanup.policy", APPEND, "delete")]
        )
        .0,
        0
    );
    let described = describe(&mut kafka, 4, TOPIC, "connect-configs", None, false, false);
    assert_eq!(value(&described, "cleanup.policy"), "compact,delete");
    assert_eq!(
        alter_incrementally(
            &mut kafka,
            1,
            TOPIC,
            "connect-configs",
            &[("cleanup.policy", SUBTRACT, "compact")]
        )
        .0,
        0
    );
    let described = describe(&mut kafka, 4, TOPIC, "connect-configs", None, false, false);
    assert_eq!(value(&described, "cleanup.policy"), "delete");
    let (error, message) = alter_incrementally(
        &mut kafka,
        1,
        TOPIC,
        "connect-configs",
        &[("cleanup.policy", SUBTRACT, "delete")],
    );
    assert_eq!(error, code(ResponseError::InvalidConfig), "{message}");
}
