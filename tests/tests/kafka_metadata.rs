//! The Kafka listener's framework, seen from a Kafka client on the wire: ApiVersions at every
//! version (and above the served one), Metadata at every version with topic auto-creation, stable
//! cluster and topic ids across a restart, and bad frames that close only their own connection.
//! Requests and answers use the `kafka-protocol` crate's codecs (`KafkaTestClient`).

use spate_kafka_protocol::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_tests::{Broker, BrokerOptions, KafkaTestClient};

const UNSUPPORTED_VERSION: i16 = 35;

fn broker_with(arguments: &[&str]) -> Broker {
    Broker::start(BrokerOptions {
        shards: 2,
        arguments: arguments
            .iter()
            .map(|argument| argument.to_string())
            .collect(),
        ..BrokerOptions::default()
    })
}

fn api_range(response: &ApiVersionsResponse, key: ApiKey) -> Option<(i16, i16)> {
    response
        .api_keys
        .iter()
        .find(|api| api.api_key == key as i16)
        .map(|api| (api.min_version, api.max_version))
}

fn metadata_for(names: &[&str], version: i16, allow_auto_topic_creation: bool) -> MetadataRequest {
    MetadataRequest::default()
        .with_topics(Some(
            names
                .iter()
                .map(|name| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                })
                .collect(),
        ))
        // Before v4 the field does not exist and the broker always may create (its default).
        .with_allow_auto_topic_creation(allow_auto_topic_creation || version < 4)
}

fn topic_named<'a>(
    response: &'a MetadataResponse,
    name: &str,
) -> &'a spate_kafka_protocol::kafka_protocol::messages::metadata_response::MetadataResponseTopic {
    response
        .topics
        .iter()
        .find(|topic| topic.name.as_ref().map(|name| name.0.as_str()) == Some(name))
        .unwrap_or_else(|| panic!("topic {name} is not in the answer: {response:?}"))
}

#[test]
fn api_versions_at_every_version_lists_the_served_table() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    for version in 0..=4 {
        let response = client.call(version, &ApiVersionsRequest::default());
        assert_eq!(response.error_code, 0, "v{version}");
        assert_eq!(
            api_range(&response, ApiKey::ApiVersions),
            Some((0, 4)),
            "v{version}"
        );
        assert_eq!(
            api_range(&response, ApiKey::Metadata),
            Some((0, 13)),
            "v{version}"
        );
    }
}

#[test]
fn api_versions_above_the_served_version_is_answered_at_v0_and_the_connection_goes_on() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    // ApiVersions v5 as a newer client would send it: request header v2 (flexible), the v3+
    // body. Written by hand: the codecs cannot encode a version they do not know.
    let correlation_id: i32 = 77;
    let mut body = Vec::new();
    body.extend_from_slice(&(ApiKey::ApiVersions as i16).to_be_bytes());
    body.extend_from_slice(&5i16.to_be_bytes());
    body.extend_from_slice(&correlation_id.to_be_bytes());
    body.extend_from_slice(&4i16.to_be_bytes());
    body.extend_from_slice(b"test");
    body.push(0); // header tagged fields
    body.push(5); // client_software_name: compact string of 4 bytes
    body.extend_from_slice(b"next");
    body.push(4);
    body.extend_from_slice(b"9.9");
    body.push(0); // body tagged fields
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    client.send_raw(&frame);
    let response: ApiVersionsResponse = client.receive(0, correlation_id);
    assert_eq!(response.error_code, UNSUPPORTED_VERSION);
    assert_eq!(api_range(&response, ApiKey::ApiVersions), Some((0, 4)));
    // The client then asks again at a version it read from the answer, on the same connection.
    let again = client.call(3, &ApiVersionsRequest::default());
    assert_eq!(again.error_code, 0);
}

#[test]
fn metadata_auto_creates_an_unknown_topic_with_one_partition_led_by_node_0() {
    let broker = broker_with(&[]);
    let kafka = broker.kafka_address();
    let mut client = KafkaTestClient::connect(kafka);
    let response = client.call(12, &metadata_for(&["kafka-auto"], 12, true));
    assert_eq!(response.brokers.len(), 1);
    let node = &response.brokers[0];
    assert_eq!(node.node_id.0, 0);
    assert_eq!(node.host.as_str(), kafka.ip().to_string());
    assert_eq!(node.port, i32::from(kafka.port()));
    assert_eq!(response.controller_id.0, 0);
    let cluster_id = response.cluster_id.clone().expect("a cluster id");
    assert_eq!(cluster_id.len(), 22, "Kafka's text form of a UUID");
    let topic = topic_named(&response, "kafka-auto");
    assert_eq!(topic.error_code, 0);
    assert!(!topic.topic_id.is_nil());
    assert!(!topic.is_internal);
    assert_eq!(topic.partitions.len(), 1);
    let partition = &topic.partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.partition_index, 0);
    assert_eq!(partition.leader_id.0, 0);
    assert_eq!(
        partition
            .replica_nodes
            .iter()
            .map(|node| node.0)
            .collect::<Vec<_>>(),
        [0]
    );
    assert_eq!(
        partition
            .isr_nodes
            .iter()
            .map(|node| node.0)
            .collect::<Vec<_>>(),
        [0]
    );

    // Every version reads the topic; v0 and v1+ "all topics" include it.
    for version in 0..=13 {
        let request = metadata_for(&["kafka-auto"], version, true);
        let answer = client.call(version, &request);
        assert_eq!(
            topic_named(&answer, "kafka-auto").partitions.len(),
            1,
            "v{version}"
        );
    }
    let all_v0 = client.call(0, &MetadataRequest::default().with_topics(Some(Vec::new())));
    topic_named(&all_v0, "kafka-auto");
    let all = client.call(9, &MetadataRequest::default().with_topics(None));
    topic_named(&all, "kafka-auto");

    // By topic id (v10+), as newer clients ask.
    let by_id = client.call(
        12,
        &MetadataRequest::default().with_topics(Some(vec![
            MetadataRequestTopic::default().with_topic_id(topic.topic_id)
        ])),
    );
    assert_eq!(by_id.topics.len(), 1);
    assert_eq!(by_id.topics[0].error_code, 0);
    assert_eq!(
        by_id.topics[0].name.as_ref().map(|name| name.0.as_str()),
        Some("kafka-auto")
    );
}

#[test]
fn metadata_without_auto_creation_reports_an_unknown_topic_and_creates_nothing() {
    let broker = broker_with(&[]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let response = client.call(12, &metadata_for(&["not-wanted"], 12, false));
    assert_eq!(
        topic_named(&response, "not-wanted").error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let all = client.call(12, &MetadataRequest::default().with_topics(None));
    assert!(all
        .topics
        .iter()
        .all(|topic| topic.name.as_ref().map(|name| name.0.as_str()) != Some("not-wanted")));
    // An invalid name is refused as Kafka does, not created.
    let invalid = client.call(12, &metadata_for(&["no spaces allowed"], 12, true));
    assert_eq!(
        topic_named(&invalid, "no spaces allowed").error_code,
        ResponseError::InvalidTopicException.code()
    );
}

#[test]
fn auto_creation_follows_the_broker_settings() {
    let broker = broker_with(&[
        "--kafka-auto-create-topics",
        "false",
        "--kafka-default-partitions",
        "3",
    ]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let off = client.call(12, &metadata_for(&["stays-unknown"], 12, true));
    assert_eq!(
        topic_named(&off, "stays-unknown").error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    let broker = broker_with(&["--kafka-default-partitions", "3"]);
    let mut client = KafkaTestClient::connect(broker.kafka_address());
    let three = client.call(12, &metadata_for(&["three"], 12, true));
    assert_eq!(topic_named(&three, "three").partitions.len(), 3);
}

#[test]
fn cluster_and_topic_ids_survive_a_restart_on_the_same_ports() {
    let mut broker = broker_with(&[]);
    let kafka = broker.kafka_address();
    let before = KafkaTestClient::connect(kafka).call(12, &metadata_for(&["kept"], 12, true));
    broker.terminate();
    broker.restart();
    assert_eq!(
        broker.kafka_address(),
        kafka,
        "a restart binds the same Kafka port"
    );
    let after = KafkaTestClient::connect(kafka).call(12, &metadata_for(&["kept"], 12, false));
    assert_eq!(before.cluster_id, after.cluster_id);
    assert_eq!(
        topic_named(&before, "kept").topic_id,
        topic_named(&after, "kept").topic_id
    );
}

#[test]
fn a_garbage_frame_closes_only_its_own_connection() {
    let broker = broker_with(&[]);
    let kafka = broker.kafka_address();
    let mut bystander = KafkaTestClient::connect(kafka);
    assert_eq!(
        bystander.call(3, &ApiVersionsRequest::default()).error_code,
        0
    );

    // An unknown API key.
    let mut unknown = KafkaTestClient::connect(kafka);
    let mut frame = 10i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&[0x7f, 0x00, 0, 0, 0, 0, 0, 1, 0xff, 0xff]);
    unknown.send_raw(&frame);
    assert!(unknown.is_closed_by_broker());

    // A known API whose body ends early: three topics announced, none sent. (Counts far beyond
    // the bytes sent are the bounds pre-check's to refuse, see `protocol-kafka/src/precheck.rs`.)
    let mut garbage = KafkaTestClient::connect(kafka);
    let mut frame = 12i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&12i16.to_be_bytes());
    frame.extend_from_slice(&5i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0x00, 0x04]);
    garbage.send_raw(&frame);
    assert!(garbage.is_closed_by_broker());

    // A frame larger than the broker takes.
    let mut oversized = KafkaTestClient::connect(kafka);
    oversized.send_raw(&i32::MAX.to_be_bytes());
    assert!(oversized.is_closed_by_broker());

    // A version of an API that is not served.
    let mut unserved = KafkaTestClient::connect(kafka);
    // Metadata v14 (hand-written: the codecs cannot encode a version they do not know).
    let mut frame = 12i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&14i16.to_be_bytes());
    frame.extend_from_slice(&6i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0, 0]);
    unserved.send_raw(&frame);
    assert!(unserved.is_closed_by_broker());

    // A count far beyond the bytes sent (a topics array of 2^32 - 2 entries): refused by the
    // bounds pre-check before the decoder could size anything from it.
    let mut huge = KafkaTestClient::connect(kafka);
    let mut frame = 18i32.to_be_bytes().to_vec();
    frame.extend_from_slice(&(ApiKey::Metadata as i16).to_be_bytes());
    frame.extend_from_slice(&12i16.to_be_bytes());
    frame.extend_from_slice(&7i32.to_be_bytes());
    frame.extend_from_slice(&[0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x00, 0x00]);
    huge.send_raw(&frame);
    assert!(huge.is_closed_by_broker());

    // The bystander never noticed.
    assert_eq!(
        bystander.call(4, &ApiVersionsRequest::default()).error_code,
        0
    );
    let metadata = bystander.call(12, &metadata_for(&["still-fine"], 12, true));
    assert_eq!(topic_named(&metadata, "still-fine").error_code, 0);
}
