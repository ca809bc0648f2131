//! End-to-end: the `spate-client` admin API against the real broker: the topic lifecycle,
//! offsets, and the errors a user gets when something is wrong or unreachable.

mod client_support;

use std::time::Duration;

use spate_client::{
    Client, ClientConfig, Error, ErrorCode, NewTopic, OffsetSpec, ProducerConfig, ProducerRecord,
};

use client_support::{broker, client};

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let broker = broker();
    let admin = client(broker.address()).admin();
    admin
        .create_topic(NewTopic::new("alpha", 3).with_config("retention.ms", "3600000"))
        .wait()
        .unwrap();
    admin.create_topic(NewTopic::new("beta", 1)).wait().unwrap();

    let topics = admin.list_topics().wait().unwrap();
    let listed: Vec<(&str, u32)> = topics
        .iter()
        .map(|topic| (topic.name.as_str(), topic.partition_count))
        .collect();
    assert_eq!(listed, vec![("alpha", 3), ("beta", 1)]);

    let description = admin.describe_topic("alpha").wait().unwrap();
    assert_eq!(description.name, "alpha");
    let partitions: Vec<u32> = description
        .partitions
        .iter()
        .map(|partition| partition.partition)
        .collect();
    assert_eq!(partitions, vec![0, 1, 2]);
    assert!(description
        .partitions
        .iter()
        .all(|partition| partition.high_watermark == 0 && partition.log_start_offset == 0));

    admin
        .alter_topic_config("alpha", &[("retention.bytes", "1048576")], &[])
        .wait()
        .unwrap();
    let bad = admin
        .alter_topic_config("alpha", &[("retention.bytes", "lots")], &[])
        .wait()
        .unwrap_err();
    assert_eq!(bad.code(), Some(ErrorCode::InvalidConfig), "{bad}");
    assert!(!bad.is_retriable());

    admin.delete_topic("beta").wait().unwrap();
    let names: Vec<String> = admin
        .list_topics()
        .wait()
        .unwrap()
        .into_iter()
        .map(|topic| topic.name)
        .collect();
    assert_eq!(names, vec!["alpha".to_string()]);
}

#[test]
fn offsets_are_listed_by_position_and_by_time_and_records_can_be_deleted() {
    let broker = broker();
    let client = client(broker.address());
    let admin = client.admin();
    admin
        .create_topic(NewTopic::new("offsets", 2))
        .wait()
        .unwrap();
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = (0..20)
        .map(|number| {
            producer
                .send_blocking(
                    ProducerRecord::new("offsets", "x")
                        .with_partition(0)
                        .with_timestamp(5_000 + number * 100),
                )
                .unwrap()
        })
        .collect();
    producer.close().wait().unwrap();
    for (number, delivery) in deliveries.into_iter().enumerate() {
        assert_eq!(delivery.wait().unwrap().offset, Some(number as u64));
    }

    let latest = admin
        .list_offsets("offsets", None, OffsetSpec::Latest)
        .wait()
        .unwrap();
    let ends: Vec<(u32, Option<u64>)> = latest
        .iter()
        .map(|answer| (answer.partition, answer.offset))
        .collect();
    assert_eq!(ends, vec![(0, Some(20)), (1, Some(0))]);

    let by_time = admin
        .list_offsets("offsets", Some(&[0]), OffsetSpec::Timestamp(5_950))
        .wait()
        .unwrap();
    assert_eq!(by_time[0].offset, Some(10));
    assert_eq!(by_time[0].timestamp, 6_000);
    let too_late = admin
        .list_offsets("offsets", Some(&[0]), OffsetSpec::Timestamp(1_000_000))
        .wait()
        .unwrap();
    assert_eq!(too_late[0].offset, None);

    assert_eq!(admin.delete_records("offsets", 0, 5).wait().unwrap(), 5);
    let earliest = admin
        .list_offsets("offsets", Some(&[0]), OffsetSpec::Earliest)
        .wait()
        .unwrap();
    assert_eq!(earliest[0].offset, Some(5));
}

#[test]
fn refusals_say_what_failed_and_whether_retrying_helps() {
    let broker = broker();
    let admin = client(broker.address()).admin();
    admin
        .create_topic(NewTopic::new("twice", 1))
        .wait()
        .unwrap();
    let duplicate = admin
        .create_topic(NewTopic::new("twice", 1))
        .wait()
        .unwrap_err();
    assert_eq!(duplicate.code(), Some(ErrorCode::TopicAlreadyExists));
    assert!(!duplicate.is_retriable());
    assert!(duplicate.to_string().contains("twice"), "{duplicate}");

    let missing = admin.describe_topic("nowhere").wait().unwrap_err();
    assert!(matches!(missing, Error::UnknownTopic { ref topic } if topic == "nowhere"));
    let bad_partitions = admin
        .create_topic(NewTopic::new("empty", 0))
        .wait()
        .unwrap_err();
    assert_eq!(
        bad_partitions.code(),
        Some(ErrorCode::InvalidPartitions),
        "{bad_partitions}"
    );
}

#[test]
fn an_unreachable_broker_is_a_retriable_connect_error() {
    // Bind and drop: a port nothing listens on.
    let address = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::new(ClientConfig {
        retry_timeout: Duration::from_millis(300),
        ..ClientConfig::new(address.to_string())
    })
    .unwrap();
    let error = client.admin().list_topics().wait().unwrap_err();
    assert!(matches!(error, Error::Connect { .. }), "{error}");
    assert!(error.is_retriable());
    assert!(error.is_unreachable());
    assert!(error.to_string().contains(&address.to_string()), "{error}");
}

#[test]
fn max_message_bytes_refuses_larger_batches_and_takes_smaller_ones() {
    let broker = broker();
    let client = client(broker.address());
    let admin = client.admin();
    admin
        .create_topic(NewTopic::new("small", 1).with_config("max.message.bytes", "1024"))
        .wait()
        .unwrap();
    let described = admin.describe_topic("small").wait().unwrap();
    assert_eq!(
        described
            .configs
            .get("max.message.bytes")
            .map(String::as_str),
        Some("1024")
    );
    // Each record is delivered before the next is sent, so each is a batch of its own.
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let small = vec![b's'; 200];
    let large = vec![b'l'; 4096];
    let fits = producer
        .send_blocking(ProducerRecord::new("small", &small).with_partition(0))
        .unwrap();
    assert_eq!(fits.wait().unwrap().offset, Some(0));
    let too_large = producer
        .send_blocking(ProducerRecord::new("small", &large).with_partition(0))
        .unwrap();
    let refused = too_large.wait().unwrap_err();
    producer.close().wait().unwrap();
    assert_eq!(
        refused.code(),
        Some(ErrorCode::MessageTooLarge),
        "{refused}"
    );
}
