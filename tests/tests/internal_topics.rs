//! End-to-end: the broker's own topics (names starting with `__`, like the group coordinator's
//! `__consumer_offsets`) are out of clients' reach for every change — create, delete, alter,
//! produce, delete records — while their data stays readable, and the coordinator itself keeps
//! writing them.

mod group_support;

use group_support::{commit_codes, commit_request, committed};
use spate_protocol::api::{
    Acks, AlterTopicConfigRequest, ConfigEntry, DeleteRecordsPartition, DeleteRecordsRequest,
    DeleteTopicsRequest, ListTopicsRequest, MetadataRequest, TopicPartitions, GENERATION_NONE,
};
use spate_protocol::ErrorCode;
use spate_tests::client::{numbered_records, records_of};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Makes the coordinator create the offsets topic and write one commit to it.
fn commit_through_the_coordinator(client: &mut TestClient, offset: u64) {
    let request = commit_request(
        "billing",
        GENERATION_NONE,
        "",
        None,
        &[("orders", 0, offset)],
    );
    let codes = commit_codes(&client.call(&request));
    assert!(
        codes.iter().all(|code| code.is_none()),
        "commit refused: {codes:?}"
    );
}

/// The offsets partition (and its high watermark) that holds the group's records.
fn written_offsets_partition(client: &mut TestClient) -> (u32, u64) {
    let metadata = client.call(&MetadataRequest {
        topics: Some(vec![OFFSETS_TOPIC.to_string()]),
    });
    assert_eq!(metadata.topics[0].error_code, ErrorCode::None);
    let written = metadata.topics[0]
        .partitions
        .iter()
        .find(|partition| partition.high_watermark > 0)
        .expect("one offsets partition holds the commit");
    (written.partition, written.high_watermark)
}

#[test]
fn clients_cannot_create_topics_with_the_internal_prefix() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    for name in ["__mine", OFFSETS_TOPIC] {
        assert_eq!(
            client.try_create_topic(name, 1, &[]),
            ErrorCode::InvalidTopicName,
            "creating {name}"
        );
    }
    // One underscore, or two further in, is an ordinary name.
    client.create_topic("_single", 1, &[]);
    client.create_topic("a__b", 1, &[]);
    let listed = client.call(&ListTopicsRequest::default());
    let mut names: Vec<&str> = listed
        .topics
        .iter()
        .map(|topic| topic.name.as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["_single", "a__b"]);
}

#[test]
fn clients_cannot_delete_alter_or_write_the_offsets_topic_but_can_read_it() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    client.create_topic("orders", 1, &[]);
    commit_through_the_coordinator(&mut client, 7);
    let (partition, high_watermark) = written_offsets_partition(&mut client);

    let deleted = client.call(&DeleteTopicsRequest {
        names: vec![OFFSETS_TOPIC.to_string()],
        timeout_ms: 30_000,
    });
    assert_eq!(deleted.results[0].error_code, ErrorCode::InvalidTopicName);
    let message = deleted.results[0].error_message.as_deref().unwrap_or("");
    assert!(message.contains("internal"), "unclear refusal: {message:?}");

    let altered = client.call(&AlterTopicConfigRequest {
        name: OFFSETS_TOPIC.to_string(),
        set: vec![ConfigEntry::new("retention.ms", "1")],
        reset: Vec::new(),
    });
    assert_eq!(altered.error_code, ErrorCode::InvalidTopicName);

    let batch = build_batch(&numbered_records(0, 1, 0)).freeze();
    let (code, _) = client.produce(OFFSETS_TOPIC, partition, Acks::All, vec![batch]);
    assert_eq!(code, ErrorCode::InvalidTopicName);

    let truncated = client.call(&DeleteRecordsRequest {
        timeout_ms: 30_000,
        topics: vec![TopicPartitions {
            name: OFFSETS_TOPIC.to_string(),
            partitions: vec![DeleteRecordsPartition {
                partition,
                before_offset: u64::MAX,
            }],
        }],
    });
    assert_eq!(
        truncated.topics[0].partitions[0].error_code,
        ErrorCode::InvalidTopicName
    );

    // Nothing changed: the commit is still there, readable by fetch, and the coordinator still
    // writes the topic.
    let fetched = client.fetch_once(OFFSETS_TOPIC, partition, 0, 1 << 20);
    assert_eq!(fetched.error_code, ErrorCode::None);
    assert_eq!(fetched.high_watermark, high_watermark);
    assert_eq!(fetched.log_start_offset, 0);
    assert_eq!(
        records_of(&fetched.records.to_bytes()).len() as u64,
        high_watermark
    );
    assert_eq!(
        committed(&mut client, "billing", "orders", &[0])[&0],
        Some(7)
    );
    commit_through_the_coordinator(&mut client, 9);
    assert_eq!(
        committed(&mut client, "billing", "orders", &[0])[&0],
        Some(9)
    );
    let listed = client.call(&ListTopicsRequest::default());
    assert!(
        listed
            .topics
            .iter()
            .any(|topic| topic.name == OFFSETS_TOPIC),
        "the offsets topic is still there"
    );
}
