//! End-to-end: topics with many partitions against the real broker: a creation that fails
//! midway leaves nothing behind, one the partition budget cannot hold is refused up front, and
//! the number of partitions never stops the broker from starting (issue #18).

mod client_support;

use std::path::Path;

use spate_client::{Client, Error, ErrorCode, NewTopic, ProducerConfig, ProducerRecord};
use spate_tests::{Broker, BrokerOptions, TestRecord};

use client_support::{client, partition_records, produce_to, read_records};

/// Names of the entries of `<data_dir>/topics` that are directories, sorted.
fn topic_directories(data_dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(data_dir.join("topics"))
        .expect("list the topics directory")
        .map(|entry| entry.expect("directory entry"))
        .filter(|entry| entry.file_type().expect("file type").is_dir())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn topic_names(client: &Client) -> Vec<String> {
    client
        .admin()
        .list_topics()
        .wait()
        .expect("list topics")
        .into_iter()
        .map(|topic| topic.name)
        .collect()
}

/// Produces one record to each partition, then reads every partition back.
fn check_every_partition_takes_and_returns_a_record(client: &Client, topic: &str, partitions: u32) {
    for partition in 0..partitions {
        let record = TestRecord::new("key", &format!("record of {partition}"), 1_000);
        produce_to(client, topic, partition, &[record]);
    }
    let records = read_records(client, topic, None, partitions as usize);
    for partition in 0..partitions {
        let stored = partition_records(&records, partition);
        assert_eq!(stored.len(), 1, "partition {partition}");
        assert_eq!(
            stored[0].1.value,
            format!("record of {partition}").into_bytes(),
            "partition {partition}"
        );
    }
}

#[test]
fn a_topic_creation_that_fails_midway_leaves_no_catalog_entry_and_no_directory() {
    let mut broker = Broker::start(BrokerOptions::default());
    let topics = broker.data_dir().join("topics");
    // The topic's directory will be `topics/doomed.<id>`: a file on each id a fresh broker can
    // give makes creating its partitions fail (ENOTDIR) after the catalog reserved the topic.
    let squatters: Vec<_> = (1..=16)
        .map(|id| topics.join(format!("doomed.{id}")))
        .collect();
    for squatter in &squatters {
        std::fs::write(squatter, b"not a directory").expect("write a squatting file");
    }
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("kept", 2))
        .wait()
        .expect("create kept");

    let error = client
        .admin()
        .create_topic(NewTopic::new("doomed", 8))
        .wait()
        .expect_err("a partition directory cannot be created");
    let message = error.to_string();
    assert!(message.contains("nothing was kept"), "{message}");
    assert!(message.contains("doomed"), "{message}");

    assert_eq!(topic_names(&client), vec!["kept".to_string()]);
    let kept_directories = topic_directories(broker.data_dir());
    assert_eq!(kept_directories.len(), 1, "{kept_directories:?}");
    assert!(kept_directories[0].starts_with("kept."));
    // A produce to the topic that was not created fails at once instead of waiting for it.
    let producer = client
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let refused = producer
        .send_blocking(ProducerRecord::new("doomed", b"lost").with_partition(5))
        .expect_err("the topic does not exist");
    assert!(matches!(refused, Error::UnknownTopic { .. }), "{refused}");
    drop(producer);

    // Nothing is left for a restart to trip over, and the name can be used.
    drop(client);
    assert!(broker.terminate().success());
    for squatter in &squatters {
        std::fs::remove_file(squatter).expect("remove a squatting file");
    }
    broker.restart();
    let client = client_support::client(broker.address());
    assert_eq!(topic_names(&client), vec!["kept".to_string()]);
    client
        .admin()
        .create_topic(NewTopic::new("doomed", 8))
        .wait()
        .expect("create doomed once its directory can be made");
    check_every_partition_takes_and_returns_a_record(&client, "doomed", 8);
}

#[test]
fn a_topic_beyond_the_partitions_per_shard_limit_is_refused_with_the_limit_named() {
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        arguments: ["--partitions-per-shard-max", "10"]
            .map(String::from)
            .to_vec(),
        ..BrokerOptions::default()
    });
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("fits", 16))
        .wait()
        .expect("8 partitions per shard fit");
    let error = client
        .admin()
        .create_topic(NewTopic::new("overflows", 6))
        .wait()
        .expect_err("11 partitions on a shard do not fit");
    assert_eq!(error.code(), Some(ErrorCode::InvalidPartitions), "{error}");
    assert!(!error.is_retriable(), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("partitions_per_shard_max = 10"),
        "{message}"
    );
    assert_eq!(topic_names(&client), vec!["fits".to_string()]);
    assert_eq!(topic_directories(broker.data_dir()).len(), 1);
    client
        .admin()
        .create_topic(NewTopic::new("fits-too", 4))
        .wait()
        .expect("10 partitions per shard fit");
}

#[test]
fn a_broker_with_more_partitions_than_descriptors_restarts_and_serves_every_partition() {
    // 3 topics of 100 partitions are 900 segment files (and 300 directories), far beyond 256
    // descriptors: only a bounded open-file cache lets them be created and opened again.
    let options = BrokerOptions {
        shards: 2,
        descriptors_max: Some(256),
        ..BrokerOptions::default()
    };
    let mut broker = Broker::start(options);
    let client = client(broker.address());
    let topics = ["many-a", "many-b", "many-c"];
    for topic in topics {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 100))
            .wait()
            .unwrap_or_else(|error| panic!("create {topic}: {error}"));
    }
    drop(client);
    assert!(broker.terminate().success());

    broker.restart();
    let client = client_support::client(broker.address());
    assert_eq!(topic_names(&client), topics.map(String::from).to_vec());
    for topic in topics {
        check_every_partition_takes_and_returns_a_record(&client, topic, 100);
    }
    drop(client);
    assert!(broker.terminate().success());
}
