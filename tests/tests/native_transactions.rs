//! Transactions through the native protocol and `spate-client`, against the real broker:
//! committed and aborted transactions as read_committed and read_uncommitted consumers see
//! them, an open transaction hidden behind the last stable offset, consume-transform-produce
//! whose input offsets commit only with the transaction, fencing of an older producer by a
//! newer one with the same transactional id, and a Kafka read_committed fetch of the same
//! records agreeing with the native consumer.

mod client_support;

use std::time::{Duration, Instant};

use client_support::{broker, client, READ_TIMEOUT};
use spate_client::group::{GroupConfig, GroupConsumer};
use spate_client::{
    Client, ConsumerConfig, Error, IsolationLevel, NewTopic, OwnedRecord, Producer, ProducerConfig,
    ProducerRecord, StartAt, TopicPartition,
};
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::{FetchRequest, FetchResponse, TopicName};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_tests::kafka_client::kafka_records;
use spate_tests::KafkaTestClient;

fn create_topic(client: &Client, name: &str, partitions: u32) {
    client
        .admin()
        .create_topic(NewTopic::new(name, partitions))
        .wait()
        .expect("topic created");
}

fn transactional_producer(client: &Client, transactional_id: &str) -> Producer {
    let producer = client
        .producer(ProducerConfig {
            transactional_id: Some(transactional_id.to_string()),
            ..ProducerConfig::default()
        })
        .expect("transactional producer config is valid");
    producer
        .init_transactions()
        .wait()
        .expect("init_transactions");
    producer
}

/// Sends `values` (to `partition`) inside the open transaction and waits for each delivery.
fn send_all(producer: &Producer, topic: &str, partition: u32, values: &[&str]) {
    let deliveries: Vec<_> = values
        .iter()
        .map(|value| {
            producer
                .send_blocking(ProducerRecord::new(topic, value).with_partition(partition))
                .expect("record accepted")
        })
        .collect();
    for delivery in deliveries {
        delivery.wait().expect("record delivered");
    }
}

fn consumer(client: &Client, isolation_level: IsolationLevel) -> spate_client::Consumer {
    client
        .consumer(ConsumerConfig {
            isolation_level,
            ..ConsumerConfig::default()
        })
        .expect("consumer config is valid")
}

/// Polls `consumer` until `expected` values arrived, then a little more (anything extra is a
/// bug the caller sees); values in (partition, offset) order.
fn read_values(consumer: &mut spate_client::Consumer, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records: Vec<OwnedRecord> = Vec::new();
    while records.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} records arrived: {:?}",
            records.len(),
            values(&records)
        );
        records.extend(
            consumer
                .poll_owned(Duration::from_millis(200))
                .expect("poll"),
        );
    }
    records.extend(
        consumer
            .poll_owned(Duration::from_millis(500))
            .expect("poll"),
    );
    records.sort_by_key(|record| (record.partition, record.offset));
    values(&records)
}

fn values(records: &[OwnedRecord]) -> Vec<String> {
    records
        .iter()
        .map(|record| String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into())
        .collect()
}

#[test]
fn read_committed_sees_committed_transactions_and_read_uncommitted_sees_aborted_ones_too() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "orders", 2);
    let producer = transactional_producer(&client, "orders-writer");

    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", 0, &["c1", "c2"]);
    send_all(&producer, "orders", 1, &["c3"]);
    producer.commit_transaction().wait().expect("commit");

    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", 0, &["a1"]);
    send_all(&producer, "orders", 1, &["a2"]);
    producer.abort_transaction().wait().expect("abort");

    producer.begin_transaction().unwrap();
    send_all(&producer, "orders", 0, &["c4"]);
    producer.commit_transaction().wait().expect("commit");

    let mut committed = consumer(&client, IsolationLevel::ReadCommitted);
    committed
        .assign("orders", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(read_values(&mut committed, 4), ["c1", "c2", "c4", "c3"]);

    let mut uncommitted = consumer(&client, IsolationLevel::ReadUncommitted);
    uncommitted
        .assign("orders", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(
        read_values(&mut uncommitted, 6),
        ["c1", "c2", "a1", "c4", "c3", "a2"]
    );
}

#[test]
fn an_open_transaction_is_hidden_from_read_committed_until_it_commits() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "pending", 1);
    let producer = transactional_producer(&client, "pending-writer");
    producer.begin_transaction().unwrap();
    send_all(&producer, "pending", 0, &["p1", "p2"]);

    let mut committed = consumer(&client, IsolationLevel::ReadCommitted);
    committed
        .assign("pending", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let mut uncommitted = consumer(&client, IsolationLevel::ReadUncommitted);
    uncommitted
        .assign("pending", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(read_values(&mut uncommitted, 2), ["p1", "p2"]);
    let early = committed.poll_owned(Duration::from_secs(1)).unwrap();
    assert!(
        early.is_empty(),
        "read an undecided transaction: {:?}",
        values(&early)
    );
    assert_eq!(committed.last_stable_offset("pending", 0), Some(0));
    // Latest under read_committed is the last stable offset, not the high watermark.
    for (isolation_level, latest) in [
        (IsolationLevel::ReadCommitted, 0),
        (IsolationLevel::ReadUncommitted, 2),
    ] {
        let at_end = consumer(&client, isolation_level);
        at_end
            .assign("pending", None, StartAt::Latest)
            .wait()
            .unwrap();
        assert_eq!(
            at_end.position("pending", 0),
            Some(latest),
            "{isolation_level:?}"
        );
    }

    producer.commit_transaction().wait().expect("commit");
    assert_eq!(read_values(&mut committed, 2), ["p1", "p2"]);
    // Past the commit marker: the last stable offset is the high watermark again.
    assert_eq!(
        committed.last_stable_offset("pending", 0),
        committed.high_watermark("pending", 0)
    );
}

/// One round of consume-transform-produce: reads the three input words, writes them shouted
/// and commits the input offsets inside one transaction, which ends as `commit` says.
fn transform(input: &mut GroupConsumer, producer: &Producer, commit: bool) -> Vec<String> {
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut read = Vec::new();
    while read.len() < 3 {
        assert!(Instant::now() < deadline, "the input did not arrive");
        read.extend(input.poll_owned(Duration::from_millis(200)).unwrap());
    }
    producer.begin_transaction().unwrap();
    for record in &read {
        let shouted = String::from_utf8_lossy(record.value.as_deref().unwrap()).to_uppercase();
        producer
            .send_blocking(ProducerRecord::new("shouted", &shouted))
            .unwrap()
            .wait()
            .unwrap();
    }
    let next = read.last().unwrap().offset + 1;
    let words = TopicPartition::new("words", 0);
    producer
        .send_offsets_to_transaction(&[(words, next)], &input.group_metadata())
        .wait()
        .expect("offsets added to the transaction");
    let ended = if commit {
        producer.commit_transaction()
    } else {
        producer.abort_transaction()
    };
    ended.wait().expect("transaction ended");
    values(&read)
}

#[test]
fn consume_transform_produce_commits_the_input_offsets_only_with_the_transaction() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "words", 1);
    create_topic(&client, "shouted", 1);
    let plain = client.producer(ProducerConfig::default()).unwrap();
    for word in ["one", "two", "three"] {
        plain
            .send_blocking(ProducerRecord::new("words", word))
            .unwrap()
            .wait()
            .unwrap();
    }
    plain.close().wait().unwrap();

    let mut input = GroupConsumer::new(
        &client,
        ConsumerConfig {
            isolation_level: IsolationLevel::ReadCommitted,
            ..ConsumerConfig::default()
        },
        GroupConfig::new("shouters").with_manual_commits(),
    )
    .unwrap();
    input.subscribe(&["words"]).unwrap();
    let producer = transactional_producer(&client, "shouter");
    let words = TopicPartition::new("words", 0);

    assert_eq!(
        transform(&mut input, &producer, false),
        ["one", "two", "three"]
    );
    let committed = input
        .committed(std::slice::from_ref(&words))
        .wait()
        .unwrap();
    assert_eq!(
        committed,
        [None],
        "an aborted transaction commits no offset"
    );
    // Read the input again, as an application does after an abort.
    input.seek("words", 0, 0).unwrap();
    assert_eq!(
        transform(&mut input, &producer, true),
        ["one", "two", "three"]
    );
    let committed = input
        .committed(std::slice::from_ref(&words))
        .wait()
        .unwrap();
    assert_eq!(committed, [Some(3)]);

    let mut output = consumer(&client, IsolationLevel::ReadCommitted);
    output
        .assign("shouted", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(read_values(&mut output, 3), ["ONE", "TWO", "THREE"]);
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "fenced", 1);
    let zombie = transactional_producer(&client, "singleton");
    zombie.begin_transaction().unwrap();
    send_all(&zombie, "fenced", 0, &["zombie"]);

    // The newer instance takes the id over: the zombie's open transaction is aborted.
    let successor = transactional_producer(&client, "singleton");
    let commit = zombie.commit_transaction().wait();
    assert!(
        matches!(commit, Err(Error::ProducerFenced { .. })),
        "the fenced producer committed: {commit:?}"
    );
    let later = zombie.begin_transaction();
    assert!(
        matches!(later, Err(Error::ProducerFenced { .. })),
        "fencing is fatal: {later:?}"
    );

    successor.begin_transaction().unwrap();
    send_all(&successor, "fenced", 0, &["successor"]);
    successor.commit_transaction().wait().expect("commit");
    let mut committed = consumer(&client, IsolationLevel::ReadCommitted);
    committed
        .assign("fenced", None, StartAt::Earliest)
        .wait()
        .unwrap();
    assert_eq!(read_values(&mut committed, 1), ["successor"]);
}

#[test]
fn a_send_outside_a_transaction_is_refused() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "outside", 1);
    let producer = client
        .producer(ProducerConfig {
            transactional_id: Some("outside-writer".into()),
            ..ProducerConfig::default()
        })
        .unwrap();
    let before_init = producer.send_blocking(ProducerRecord::new("outside", "x"));
    assert!(matches!(before_init, Err(Error::TransactionState { .. })));
    for ended in [producer.commit_transaction(), producer.abort_transaction()] {
        assert!(matches!(ended.wait(), Err(Error::TransactionState { .. })));
    }
    producer.init_transactions().wait().unwrap();
    let before_begin = producer.send_blocking(ProducerRecord::new("outside", "x"));
    assert!(matches!(before_begin, Err(Error::TransactionState { .. })));
    assert!(producer.commit_transaction().wait().is_err());
}

/// The values a Kafka read_committed consumer keeps from a fetch answer: its records, less
/// control records and the records of the listed aborted transactions (Kafka's consumer rule:
/// a producer's records from its aborted transaction's first offset until its next marker).
fn kafka_read_committed(
    records: &[spate_kafka_protocol::kafka_protocol::records::Record],
    aborted: &[(i64, i64)],
) -> Vec<String> {
    let mut aborted: Vec<(i64, i64)> = aborted.to_vec();
    aborted.sort_by_key(|(_, first_offset)| std::cmp::Reverse(*first_offset));
    let mut aborting = std::collections::HashSet::new();
    let mut kept = Vec::new();
    for record in records {
        while aborted
            .last()
            .is_some_and(|(_, first_offset)| *first_offset <= record.offset)
        {
            aborting.insert(aborted.pop().unwrap().0);
        }
        if record.control {
            aborting.remove(&record.producer_id);
            continue;
        }
        if record.transactional && aborting.contains(&record.producer_id) {
            continue;
        }
        kept.push(String::from_utf8_lossy(record.value.as_deref().unwrap_or_default()).into());
    }
    kept
}

#[test]
fn a_kafka_read_committed_fetch_agrees_with_the_native_read_committed_consumer() {
    let broker = broker();
    let client = client(broker.address());
    create_topic(&client, "shared", 1);
    let producer = transactional_producer(&client, "shared-writer");
    for (values, commit) in [
        (&["k1", "k2"], true),
        (&["x1", "x2"], false),
        (&["k3", "k4"], true),
    ] {
        producer.begin_transaction().unwrap();
        send_all(&producer, "shared", 0, values);
        let ended = if commit {
            producer.commit_transaction()
        } else {
            producer.abort_transaction()
        };
        ended.wait().unwrap();
    }
    let mut native = consumer(&client, IsolationLevel::ReadCommitted);
    native
        .assign("shared", None, StartAt::Earliest)
        .wait()
        .unwrap();
    let native_values = read_values(&mut native, 4);
    assert_eq!(native_values, ["k1", "k2", "k3", "k4"]);

    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let request = FetchRequest::default()
        .with_max_wait_ms(100)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_static_str("shared")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let response: FetchResponse = kafka.call(11, &request);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.last_stable_offset, partition.high_watermark);
    let aborted: Vec<(i64, i64)> = partition
        .aborted_transactions
        .iter()
        .flatten()
        .map(|aborted| (aborted.producer_id.0, aborted.first_offset))
        .collect();
    assert_eq!(aborted.len(), 1, "one aborted transaction: {aborted:?}");
    let records = kafka_records(&partition.records.clone().unwrap_or_default());
    assert_eq!(kafka_read_committed(&records, &aborted), native_values);
    // Both protocols see the same log: markers included, 3 of them after 6 records.
    assert_eq!(partition.high_watermark, 9);
}
