//! Helpers shared by the `client_*` end-to-end tests: a broker, a patient client for it, and a
//! way to read a whole topic back with the client's own consumer.

#![allow(dead_code)] // each test file uses its own subset

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ConsumerConfig, OwnedRecord, StartAt};
use spate_tests::{Broker, BrokerOptions};

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
