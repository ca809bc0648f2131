//! End-to-end: produce, fetch, long poll, list offsets, delete records and topic administration
//! against the real `spate-broker` binary running two shards.
//!
//! Behaviour users see (records round-tripping over partitions and shards, a long poll ending as
//! data arrives, offset lookups) is driven through `spate-client`, as users drive it. What is
//! about the wire itself (several batches per request, acks=none producing no response bytes,
//! corrupt batches, fetch size limits, pipelining order, a reader that never reads) uses the raw
//! test client.

mod client_support;

use std::time::{Duration, Instant};

use bytes::Bytes;
use client_support::{client, partition_records, produce_to, read_records, READ_TIMEOUT};
use spate_client::{ConsumerConfig, Error, NewTopic, OffsetReset, OffsetSpec, StartAt};
use spate_protocol::api::{
    Acks, AlterTopicConfigRequest, ConfigEntry, DeleteTopicsRequest, DescribeTopicRequest,
    ListTopicsRequest,
};
use spate_protocol::error::ErrorCode;
use spate_tests::client::{fetch_request, numbered_records, produce_request, records_of};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

#[test]
fn records_round_trip_through_many_partitions_on_both_shards() {
    let broker = broker();
    let client = client(broker.address());
    let admin = client.admin();
    let partitions = 8u32;
    admin
        .create_topic(NewTopic::new("orders", partitions))
        .wait()
        .expect("create orders");

    let described = admin.describe_topic("orders").wait().expect("describe");
    let shards: std::collections::BTreeSet<u32> = described
        .partitions
        .iter()
        .map(|partition| partition.shard)
        .collect();
    assert_eq!(
        shards.len(),
        2,
        "partitions should be spread over both shards: {shards:?}"
    );

    // Eight records for every partition, in two runs of timestamps.
    let mut expected = Vec::new();
    for partition in 0..partitions {
        let records = [
            numbered_records(partition as usize * 100, 3, 1_000),
            numbered_records(partition as usize * 100 + 3, 5, 2_000),
        ]
        .concat();
        let offsets = produce_to(&client, "orders", partition, &records);
        assert_eq!(
            offsets,
            (0..8).collect::<Vec<u64>>(),
            "an empty partition numbers its records from 0 (partition {partition})"
        );
        expected.push(records);
    }

    let read = read_records(&client, "orders", None, 8 * partitions as usize);
    assert_eq!(read.len(), 8 * partitions as usize, "records read twice");
    for partition in 0..partitions {
        let records = partition_records(&read, partition);
        let offsets: Vec<u64> = records.iter().map(|(offset, _)| *offset).collect();
        assert_eq!(
            offsets,
            (0..8).collect::<Vec<u64>>(),
            "partition {partition}"
        );
        let values: Vec<_> = records.into_iter().map(|(_, record)| record).collect();
        assert_eq!(
            values, expected[partition as usize],
            "partition {partition}"
        );
    }
    let described = admin.describe_topic("orders").wait().expect("describe");
    for partition in &described.partitions {
        assert_eq!(
            (partition.log_start_offset, partition.high_watermark),
            (0, 8),
            "partition {}",
            partition.partition
        );
    }
}

#[test]
fn every_acks_mode_appends_and_only_acks_none_goes_unanswered() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("acks", 1, &[]);

    let (code, base) = client.produce(
        "acks",
        0,
        Acks::Leader,
        vec![build_batch(&numbered_records(0, 2, 1)).freeze()],
    );
    assert_eq!((code, base), (ErrorCode::None, 0));
    // acks=none: no response; the next request's response must be the next thing on the wire.
    client.send(&produce_request(
        "acks",
        0,
        Acks::None,
        vec![build_batch(&numbered_records(2, 2, 1)).freeze()],
    ));
    let (code, base) = client.produce(
        "acks",
        0,
        Acks::All,
        vec![build_batch(&numbered_records(4, 2, 1)).freeze()],
    );
    assert_eq!((code, base), (ErrorCode::None, 4));
    let records = client.fetch_all("acks", 0, 0);
    assert_eq!(records.len(), 6);
    assert_eq!(records[3].1, numbered_records(3, 1, 1)[0]);
}

#[test]
fn under_write_caching_acks_leader_records_are_read_before_their_fsync() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    // A group commit that syncs acks=leader data only after 10 s (or 1 GiB): within the test
    // nothing is synced unless an acks=all write asks for it.
    let group_commit = [
        ("group.commit.us", "10000000"),
        ("group.commit.bytes", "1073741824"),
    ];
    client.create_topic(
        "cached",
        1,
        &[group_commit[0], group_commit[1], ("write.caching", "true")],
    );
    client.create_topic("durable-only", 1, &group_commit);
    let started = Instant::now();
    for topic in ["cached", "durable-only"] {
        let (code, base) = client.produce(
            topic,
            0,
            Acks::Leader,
            vec![build_batch(&numbered_records(0, 3, 1)).freeze()],
        );
        assert_eq!((code, base), (ErrorCode::None, 0), "{topic}");
    }
    let cached = client.fetch_once("cached", 0, 0, 1024 * 1024);
    assert_eq!(cached.high_watermark, 3);
    assert_eq!(records_of(&cached.records.to_bytes()).len(), 3);
    let durable_only = client.fetch_once("durable-only", 0, 0, 1024 * 1024);
    // Only meaningful while the 10 s sync interval cannot have passed.
    if started.elapsed() < Duration::from_secs(5) {
        assert_eq!(
            durable_only.high_watermark, 0,
            "unsynced records are not shown"
        );
        assert!(records_of(&durable_only.records.to_bytes()).is_empty());
    }
    // An acks=all write syncs everything before it; both topics then show every record.
    for topic in ["cached", "durable-only"] {
        let (code, base) = client.produce(
            topic,
            0,
            Acks::All,
            vec![build_batch(&numbered_records(3, 1, 1)).freeze()],
        );
        assert_eq!((code, base), (ErrorCode::None, 3), "{topic}");
        assert_eq!(client.fetch_all(topic, 0, 0).len(), 4, "{topic}");
    }
}

#[test]
fn a_corrupt_batch_is_refused_and_nothing_of_its_request_partition_is_stored() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("strict", 1, &[]);
    let good = build_batch(&numbered_records(0, 4, 10)).freeze();
    let mut corrupt = build_batch(&numbered_records(4, 4, 10));
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x40;

    let (code, _) = client.produce("strict", 0, Acks::All, vec![good.clone(), corrupt.freeze()]);
    assert_eq!(code, ErrorCode::CorruptMessage);
    assert_eq!(
        client.offsets_of("strict", 0),
        (0, 0),
        "the good batch of the refused request was stored"
    );

    let (code, base) = client.produce("strict", 0, Acks::All, vec![good]);
    assert_eq!((code, base), (ErrorCode::None, 0));
}

#[test]
fn unknown_topics_and_partitions_get_per_partition_errors() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("known", 2, &[]);
    let batch = build_batch(&numbered_records(0, 1, 0)).freeze();
    assert_eq!(
        client
            .produce("unknown", 0, Acks::All, vec![batch.clone()])
            .0,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        client.produce("known", 2, Acks::All, vec![batch.clone()]).0,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        client.fetch_once("known", 5, 0, 1024).error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert_eq!(
        client.produce("known", 1, Acks::All, vec![batch]).0,
        ErrorCode::None
    );
    assert_eq!(
        client.fetch_once("known", 1, 7, 1024).error_code,
        ErrorCode::OffsetOutOfRange
    );
}

#[test]
fn a_long_poll_returns_as_soon_as_data_arrives() {
    let broker = broker();
    let client = client(broker.address());
    // Two partitions, so the fetch and the append can sit on different shards.
    client
        .admin()
        .create_topic(NewTopic::new("poll", 2))
        .wait()
        .expect("create poll");
    for partition in 0..2 {
        // The broker may hold each of this consumer's fetches for 20 s when nothing is new.
        let mut consumer = client
            .consumer(ConsumerConfig {
                fetch_wait: Duration::from_secs(20),
                ..ConsumerConfig::default()
            })
            .expect("consumer config is valid");
        consumer
            .assign("poll", Some(&[partition]), StartAt::Earliest)
            .wait()
            .expect("assign");
        let started = Instant::now();
        let producing = {
            let client = client.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(300));
                produce_to(&client, "poll", partition, &numbered_records(0, 3, 5))
            })
        };
        let mut records = Vec::new();
        while records.len() < 3 && started.elapsed() < READ_TIMEOUT {
            records.extend(
                consumer
                    .poll_owned(Duration::from_millis(100))
                    .expect("poll"),
            );
        }
        let elapsed = started.elapsed();
        assert_eq!(producing.join().expect("producer thread"), vec![0, 1, 2]);
        assert_eq!(records.len(), 3, "partition {partition}");
        assert!(
            elapsed < Duration::from_secs(15),
            "the fetch waited for its full max wait ({elapsed:?})"
        );
    }
}

#[test]
fn a_long_poll_without_data_answers_empty_after_its_max_wait() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("quiet", 1, &[]);
    let started = Instant::now();
    let response = client.call(&fetch_request("quiet", 0, 0, 1 << 20, 400, 1));
    let elapsed = started.elapsed();
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, ErrorCode::None);
    assert!(partition.records.is_empty());
    assert!(
        elapsed >= Duration::from_millis(350),
        "answered before its max wait ({elapsed:?})"
    );
}

#[test]
fn fetch_respects_max_bytes_but_always_returns_a_first_whole_batch() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("sized", 1, &[]);
    let batches: Vec<Bytes> = (0..4)
        .map(|index| build_batch(&numbered_records(index * 10, 10, 0)).freeze())
        .collect();
    let first_two_bytes = batches[0].len() + batches[1].len();
    client.produce("sized", 0, Acks::All, batches);
    let tiny = client.fetch_once("sized", 0, 0, 1);
    assert_eq!(
        records_of(&tiny.records.to_bytes()).len(),
        10,
        "one whole batch despite max_bytes=1"
    );
    let two = client.fetch_once("sized", 0, 0, first_two_bytes as u32);
    assert_eq!(records_of(&two.records.to_bytes()).len(), 20);
    let from_middle = client.fetch_once("sized", 0, 15, 1 << 20);
    let records = records_of(&from_middle.records.to_bytes());
    assert_eq!(
        records.first().map(|(offset, _)| *offset),
        Some(10),
        "fetch starts at the batch holding the offset"
    );
    assert_eq!(records.len(), 30);
}

#[test]
fn list_offsets_answers_earliest_latest_and_the_exact_record_for_a_timestamp() {
    let broker = broker();
    let client = client(broker.address());
    let admin = client.admin();
    admin
        .create_topic(NewTopic::new("times", 1))
        .wait()
        .expect("create times");
    // Offsets 0..10 with timestamps 1000..1009, then 10..20 with 2000..2009, each run in a
    // batch of its own (one producer, flushed, per run).
    assert_eq!(
        produce_to(&client, "times", 0, &numbered_records(0, 10, 1_000)),
        (0..10).collect::<Vec<u64>>()
    );
    assert_eq!(
        produce_to(&client, "times", 0, &numbered_records(10, 10, 1_990)),
        (10..20).collect::<Vec<u64>>()
    );
    let ask = |spec: OffsetSpec| {
        let answers = admin
            .list_offsets("times", Some(&[0]), spec)
            .wait()
            .expect("list offsets");
        assert_eq!(answers.len(), 1);
        (answers[0].offset, answers[0].timestamp)
    };
    assert_eq!(ask(OffsetSpec::Earliest).0, Some(0));
    assert_eq!(ask(OffsetSpec::Latest).0, Some(20));
    assert_eq!(
        ask(OffsetSpec::Timestamp(1_004)),
        (Some(4), 1_004),
        "inside the first batch"
    );
    assert_eq!(
        ask(OffsetSpec::Timestamp(1_500)),
        (Some(10), 2_000),
        "between batches"
    );
    assert_eq!(
        ask(OffsetSpec::Timestamp(2_005)),
        (Some(15), 2_005),
        "inside the second batch"
    );
    assert_eq!(
        ask(OffsetSpec::Timestamp(9_999)).0,
        None,
        "after every record"
    );

    assert_eq!(
        admin
            .delete_records("times", 0, 10)
            .wait()
            .expect("delete records"),
        10
    );
    assert_eq!(ask(OffsetSpec::Earliest).0, Some(10));
    let mut strict = client
        .consumer(ConsumerConfig {
            offset_reset: OffsetReset::Error,
            ..ConsumerConfig::default()
        })
        .expect("consumer config is valid");
    strict
        .assign("times", None, StartAt::Offset(5))
        .wait()
        .expect("assign");
    let deadline = Instant::now() + READ_TIMEOUT;
    let error = loop {
        assert!(Instant::now() < deadline, "no error reported");
        match strict.poll(Duration::from_millis(200)) {
            Err(error) => break error,
            Ok(polled) => assert!(polled.is_empty(), "deleted records were read"),
        }
    };
    assert!(
        matches!(
            error,
            Error::OffsetOutOfRange {
                offset: 5,
                log_start_offset: 10,
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn topics_are_created_listed_described_altered_and_deleted() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic(
        "admin",
        3,
        &[
            ("retention.ms", "60000"),
            ("durability", "fsync-every-append"),
        ],
    );
    assert_eq!(
        client.try_create_topic("admin", 3, &[]),
        ErrorCode::TopicAlreadyExists
    );
    assert_eq!(
        client.try_create_topic("bad/name", 1, &[]),
        ErrorCode::InvalidTopicName
    );
    assert_eq!(
        client.try_create_topic("zero", 0, &[]),
        ErrorCode::InvalidPartitions
    );
    assert_eq!(
        client.try_create_topic("badconfig", 1, &[("segment.bytes", "12")]),
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        client.try_create_topic("badpolicy", 1, &[("cleanup.policy", "archive")]),
        ErrorCode::InvalidConfig
    );
    assert_eq!(
        client.try_create_topic(
            "unknownkey",
            1,
            &[("unclean.leader.election.enable", "true")]
        ),
        ErrorCode::InvalidConfig
    );

    let listing = client.call(&ListTopicsRequest {});
    let names: Vec<(String, u32)> = listing
        .topics
        .iter()
        .map(|topic| (topic.name.clone(), topic.partition_count))
        .collect();
    assert_eq!(names, vec![("admin".to_string(), 3)]);

    let altered = client.call(&AlterTopicConfigRequest {
        name: "admin".to_string(),
        set: vec![ConfigEntry::new("retention.bytes", "1048576")],
        reset: vec!["durability".to_string()],
    });
    assert_eq!(
        altered.error_code,
        ErrorCode::None,
        "{:?}",
        altered.error_message
    );
    let described = client.call(&DescribeTopicRequest {
        name: "admin".to_string(),
    });
    assert_eq!(described.error_code, ErrorCode::None);
    assert_eq!(described.partitions.len(), 3);
    let mut configs: Vec<(String, String)> = described
        .configs
        .iter()
        .map(|entry| (entry.name.clone(), entry.value.clone()))
        .collect();
    configs.sort();
    assert_eq!(
        configs,
        vec![
            ("retention.bytes".to_string(), "1048576".to_string()),
            ("retention.ms".to_string(), "60000".to_string())
        ]
    );

    let deleted = client.call(&DeleteTopicsRequest {
        names: vec!["admin".to_string(), "never".to_string()],
        timeout_ms: 30_000,
    });
    assert_eq!(deleted.results[0].error_code, ErrorCode::None);
    assert_eq!(
        deleted.results[1].error_code,
        ErrorCode::UnknownTopicOrPartition
    );
    assert!(client.call(&ListTopicsRequest {}).topics.is_empty());
    assert_eq!(
        client
            .call(&DescribeTopicRequest {
                name: "admin".to_string()
            })
            .error_code,
        ErrorCode::UnknownTopicOrPartition
    );

    // The name is free again, and the new topic starts empty.
    client.create_topic("admin", 1, &[]);
    assert_eq!(client.offsets_of("admin", 0), (0, 0));
}

#[test]
fn pipelined_requests_are_answered_in_request_order() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("pipe", 4, &[]);
    let mut sent = Vec::new();
    for round in 0..50usize {
        let partition = (round % 4) as u32;
        let batch = build_batch(&numbered_records(round, 1, 0)).freeze();
        sent.push((
            client.send(&produce_request("pipe", partition, Acks::All, vec![batch])),
            partition,
        ));
        // Interleave a long-ish fetch on another partition: it must not overtake.
        if round % 10 == 0 {
            sent.push((
                client.send(&fetch_request(
                    "pipe",
                    (partition + 1) % 4,
                    0,
                    1 << 20,
                    0,
                    0,
                )),
                u32::MAX,
            ));
        }
    }
    let mut expected_base = [0u64; 4];
    for (correlation_id, partition) in sent {
        if partition == u32::MAX {
            let _: spate_protocol::api::FetchResponse = client.receive(correlation_id);
            continue;
        }
        let response: spate_protocol::api::ProduceResponse = client.receive(correlation_id);
        let answer = response.topics[0].partitions[0];
        assert_eq!(answer.error_code, ErrorCode::None);
        assert_eq!(answer.base_offset, expected_base[partition as usize]);
        expected_base[partition as usize] += 1;
    }
}

#[test]
fn large_batches_round_trip_byte_for_byte() {
    let broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("large", 2, &[]);
    // 16 records of 64 KiB: a 1 MiB batch, read by the broker into a frame buffer of its own.
    let records: Vec<spate_tests::TestRecord> = (0..16u8)
        .map(|index| spate_tests::TestRecord {
            key: Some(vec![index]),
            value: vec![index.wrapping_mul(31); 64 * 1024],
            timestamp: i64::from(index),
        })
        .collect();
    let batch = build_batch(&records).freeze();
    assert!(batch.len() > 1 << 20);
    for partition in 0..2 {
        let (code, base) = client.produce(
            "large",
            partition,
            Acks::All,
            vec![batch.clone(), batch.clone()],
        );
        assert_eq!((code, base), (ErrorCode::None, 0));
        let fetched = client.fetch_once("large", partition, 0, 4 << 20);
        assert_eq!(fetched.error_code, ErrorCode::None);
        let bytes = fetched.records.to_bytes();
        assert_eq!(bytes.len(), 2 * batch.len());
        // Only the broker-stamped base offset (bytes 0..8) of the second copy differs.
        assert_eq!(&bytes[8..batch.len()], &batch[8..]);
        assert_eq!(&bytes[batch.len() + 8..], &batch[8..]);
        let fetched_records: Vec<_> = records_of(&bytes)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        assert_eq!(fetched_records, [records.clone(), records.clone()].concat());
    }
}

#[test]
fn a_consumer_that_never_reads_its_responses_does_not_stall_producers() {
    let broker = broker();
    let mut producer = TestClient::connect(broker.address());
    producer.create_topic("busy", 1, &[]);
    let batch = build_batch(&numbered_records(0, 100, 0)).freeze();
    for _ in 0..20 {
        producer.produce("busy", 0, Acks::All, vec![batch.clone()]);
    }
    // The stalled consumer pipelines far more fetch responses than its socket can hold, and
    // never reads one of them.
    let mut stalled = TestClient::connect(broker.address());
    for _ in 0..2_000 {
        stalled.send(&fetch_request("busy", 0, 0, 1 << 20, 0, 0));
    }
    for round in 0..50 {
        let (code, base) = producer.produce("busy", 0, Acks::All, vec![batch.clone()]);
        assert_eq!((code, base), (ErrorCode::None, (20 + round) * 100));
    }
    let mut reader = TestClient::connect(broker.address());
    assert_eq!(
        reader.fetch_once("busy", 0, 6_900, 1 << 20).error_code,
        ErrorCode::None
    );
    drop(stalled);
}
