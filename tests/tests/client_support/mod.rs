//! Helpers shared by the end-to-end tests that talk to the broker as users do, through
//! `spate-client` (the `client_*` tests, and the user-visible cases of `data_path` and
//! `resilience`): a broker, a patient client for it, producing test records and reading a whole
//! topic back with the client's own consumer.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spate_client::{
    Client, ClientConfig, ConsumerConfig, OwnedRecord, ProducerConfig, ProducerRecord, StartAt,
};
use spate_tests::{Broker, BrokerOptions, TestRecord};

/// How long a test waits for records to show up before it fails.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A broker with two shards.
pub fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

/// A client for `address`, patient enough for a debug broker restarting on a busy machine.
pub fn client(address: SocketAddr) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(address.to_string()).with_client_id("spate-tests")
    };
    Client::new(config).expect("client config is valid")
}

/// Reads `partitions` of `topic` from the start until `expected` records arrived (or fails the
/// test after [`READ_TIMEOUT`]).
pub fn read_records(
    client: &Client,
    topic: &str,
    partitions: Option<&[u32]>,
    expected: usize,
) -> Vec<OwnedRecord> {
    let mut consumer = client
        .consumer(ConsumerConfig::default())
        .expect("consumer config is valid");
    consumer
        .assign(topic, partitions, StartAt::Earliest)
        .wait()
        .expect("assign");
    let deadline = Instant::now() + READ_TIMEOUT;
    let mut records = Vec::new();
    while records.len() < expected {
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} records arrived",
            records.len()
        );
        records.extend(
            consumer
                .poll_owned(Duration::from_millis(200))
                .expect("poll"),
        );
    }
    // Anything more that is already there is a bug the caller should see.
    records.extend(
        consumer
            .poll_owned(Duration::from_millis(300))
            .expect("poll"),
    );
    records
}

/// The value of `record` as text.
pub fn text(bytes: &Option<bytes::Bytes>) -> String {
    String::from_utf8(bytes.as_ref().expect("not a tombstone").to_vec()).expect("UTF-8")
}

/// Sends `records` to `topic`/`partition` (acks=all) and returns the offset of each, in order.
pub fn produce_to(
    client: &Client,
    topic: &str,
    partition: u32,
    records: &[TestRecord],
) -> Vec<u64> {
    let producer = client
        .producer(ProducerConfig::default())
        .expect("producer config is valid");
    let deliveries: Vec<_> = records
        .iter()
        .map(|record| {
            producer
                .send_blocking(as_producer_record(topic, partition, record))
                .expect("record accepted")
        })
        .collect();
    producer.close().wait().expect("producer closes");
    deliveries
        .into_iter()
        .map(|delivery| {
            let written = delivery.wait().expect("record delivered");
            assert_eq!(written.partition, partition);
            written.offset.expect("acks=all reports the offset")
        })
        .collect()
}

/// `record` as a producer sends it to `topic`/`partition`.
pub fn as_producer_record<'a>(
    topic: &'a str,
    partition: u32,
    record: &'a TestRecord,
) -> ProducerRecord<'a> {
    let sent = ProducerRecord::new(topic, &record.value)
        .with_partition(partition)
        .with_timestamp(record.timestamp);
    match &record.key {
        Some(key) => sent.with_key(key),
        None => sent,
    }
}

/// What a consumer read, as (partition, offset, record), for comparing with what was sent.
pub fn as_test_record(record: &OwnedRecord) -> (u32, u64, TestRecord) {
    (
        record.partition,
        record.offset,
        TestRecord {
            key: record.key.as_ref().map(|key| key.to_vec()),
            value: record
                .value
                .as_ref()
                .map(|value| value.to_vec())
                .unwrap_or_default(),
            timestamp: record.timestamp,
        },
    )
}

/// The records of one partition as (offset, record), in the order the consumer returned them.
pub fn partition_records(records: &[OwnedRecord], partition: u32) -> Vec<(u64, TestRecord)> {
    records
        .iter()
        .map(as_test_record)
        .filter(|(read_from, _, _)| *read_from == partition)
        .map(|(_, offset, record)| (offset, record))
        .collect()
}
