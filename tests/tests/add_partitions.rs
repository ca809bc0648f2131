//! End-to-end: growing a topic's partition count (`spate topic add-partitions`, CreatePartitions)
//! against the real broker: the new partitions take and return records, survive SIGTERM and
//! kill -9, and a count that does not grow the topic (or an internal topic) is refused with a
//! clear message and changes nothing.

mod cli_support;
mod client_support;

use serde_json::Value;
use spate_client::{Client, ErrorCode};
use spate_tests::{Broker, BrokerOptions, TestRecord};

use cli_support::spate;
use client_support::{client, partition_records, produce_to, read_records};

fn partition_count(client: &Client, topic: &str) -> u32 {
    client
        .admin()
        .list_topics()
        .wait()
        .expect("list topics")
        .into_iter()
        .find(|summary| summary.name == topic)
        .expect("the topic exists")
        .partition_count
}

/// Every partition of `topic` holds exactly the one record `record of P` it was given.
fn check_one_record_in_each_partition(client: &Client, topic: &str, partitions: u32) {
    let records = read_records(client, topic, None, partitions as usize);
    assert_eq!(records.len(), partitions as usize);
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
fn a_topic_grown_from_two_to_five_partitions_serves_them_all_across_sigterm_and_kill_9() {
    // Two shards: the new partitions are placed on both, as creation places them.
    let mut broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    let client = client(address);
    for partition in 0..2 {
        let record = TestRecord::new("key", &format!("record of {partition}"), 1_000);
        produce_to(&client, "orders", partition, &[record]);
    }

    let grown = spate(
        address,
        &[
            "topic",
            "add-partitions",
            "orders",
            "--count",
            "5",
            "--json",
        ],
        b"",
    )
    .ok();
    let grown: Value = serde_json::from_str(&grown).expect("JSON");
    assert_eq!(grown["topic"], "orders");
    assert_eq!(grown["partitions"], 5);
    assert_eq!(partition_count(&client, "orders"), 5);

    // This client cached 2 partitions before the CLI grew the topic: a record for partition 2
    // makes its producer ask the broker again instead of refusing it.
    for partition in 2..5 {
        let record = TestRecord::new("key", &format!("record of {partition}"), 1_000);
        produce_to(&client, "orders", partition, &[record]);
    }
    check_one_record_in_each_partition(&client, "orders", 5);
    drop(client);

    broker.kill();
    broker.restart();
    let client = client_support::client(broker.address());
    assert_eq!(partition_count(&client, "orders"), 5);
    check_one_record_in_each_partition(&client, "orders", 5);
    drop(client);

    assert!(broker.terminate().success());
    broker.restart();
    let client = client_support::client(broker.address());
    assert_eq!(partition_count(&client, "orders"), 5);
    check_one_record_in_each_partition(&client, "orders", 5);
}

#[test]
fn shrinking_or_keeping_the_partition_count_is_refused_and_changes_nothing() {
    let broker = Broker::start(BrokerOptions::default());
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "3"],
        b"",
    )
    .ok();

    for count in ["3", "2"] {
        let refused = spate(
            address,
            &["topic", "add-partitions", "orders", "--count", count],
            b"",
        )
        .fails_with(1);
        assert!(refused.contains("has 3 partitions"), "{refused}");
        assert!(refused.contains("must be larger"), "{refused}");
    }
    let unknown = spate(
        address,
        &["topic", "add-partitions", "missing", "--count", "4"],
        b"",
    );
    assert_ne!(unknown.code, 0);
    let client = client(address);
    assert_eq!(partition_count(&client, "orders"), 3);

    let error = client
        .admin()
        .create_partitions("orders", 1)
        .wait()
        .expect_err("fewer partitions");
    assert_eq!(error.code(), Some(ErrorCode::InvalidPartitions), "{error}");
    let internal = client
        .admin()
        .create_partitions("__consumer_offsets", 100)
        .wait()
        .expect_err("internal topics are the broker's own");
    assert_eq!(
        internal.code(),
        Some(ErrorCode::InvalidTopicName),
        "{internal}"
    );
    assert_eq!(partition_count(&client, "orders"), 3);
}

#[test]
fn partitions_beyond_the_per_shard_limit_are_refused_and_the_topic_stays_as_it_was() {
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        arguments: ["--partitions-per-shard-max", "10"]
            .map(String::from)
            .to_vec(),
        ..BrokerOptions::default()
    });
    let client = client(broker.address());
    spate(
        broker.address(),
        &["topic", "create", "orders", "--partitions", "4"],
        b"",
    )
    .ok();
    let error = client
        .admin()
        .create_partitions("orders", 40)
        .wait()
        .expect_err("20 partitions per shard do not fit");
    assert_eq!(error.code(), Some(ErrorCode::InvalidPartitions), "{error}");
    assert!(
        error.to_string().contains("partitions_per_shard_max = 10"),
        "{error}"
    );
    assert_eq!(partition_count(&client, "orders"), 4);
    client
        .admin()
        .create_partitions("orders", 20)
        .wait()
        .expect("10 per shard fit");
    assert_eq!(partition_count(&client, "orders"), 20);
}
