//! End-to-end: a broker serves before its partitions are open (issue #18). After a restart it
//! listens as soon as the catalog is loaded and opens the partitions in the background; a
//! request for a partition still opening waits for it, and metadata names such a partition as
//! not available yet (`LeaderNotAvailable`, retriable), never as unknown or offline.
//!
//! Whether a given request arrives while its partition is still opening depends on timing, so
//! these tests check what must hold either way; the waiting itself is checked without timing in
//! `shard::opening`'s unit tests.

mod client_support;

use spate_protocol::api::{Acks, MetadataRequest};
use spate_protocol::error::ErrorCode;
use spate_tests::client::{fetch_request, records_of};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient, TestRecord};

/// Enough partitions on one shard that opening them all takes a while after a restart.
const PARTITIONS: u32 = 1_000;

fn one_shard(wait_for_partitions_open: bool) -> BrokerOptions {
    BrokerOptions {
        shards: 1,
        wait_for_partitions_open,
        ..BrokerOptions::default()
    }
}

fn record(value: &str) -> bytes::Bytes {
    build_batch(&[TestRecord::new("key", value, 1_000)]).freeze()
}

/// Every partition's metadata error code, in partition order.
fn partition_codes(client: &mut TestClient, topic: &str) -> Vec<ErrorCode> {
    let response = client.call(&MetadataRequest {
        topics: Some(vec![topic.to_string()]),
    });
    assert_eq!(response.topics[0].error_code, ErrorCode::None);
    response.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect()
}

#[test]
fn requests_during_the_opens_after_a_crash_wait_for_their_partition_and_succeed() {
    let mut broker = Broker::start(one_shard(true));
    let mut client = TestClient::connect(broker.address());
    client.create_topic("many", PARTITIONS, &[]);
    let last = PARTITIONS - 1;
    let (code, _) = client.produce("many", last, Acks::All, vec![record("before")]);
    assert_eq!(code, ErrorCode::None);
    drop(client);
    broker.kill();

    // Returns at "broker ready": the partitions open in the background from here on.
    broker.restart_with(one_shard(false));
    let mut client = TestClient::connect(broker.address());
    // The last partition is queued last; the produce waits for it (it is opened next) within
    // the request's 30 s timeout instead of being refused.
    let (code, base_offset) = client.produce("many", last, Acks::All, vec![record("after")]);
    assert_eq!(
        code,
        ErrorCode::None,
        "a produce during the opens waits for its partition"
    );
    assert_eq!(base_offset, 1, "the record from before the crash is kept");
    let codes = partition_codes(&mut client, "many");
    assert_eq!(codes.len(), PARTITIONS as usize);
    assert!(
        codes
            .iter()
            .all(|code| matches!(code, ErrorCode::None | ErrorCode::LeaderNotAvailable)),
        "metadata during the opens: every partition served or still opening, got {codes:?}"
    );
    // The admin client says "opening", not "offline", for a partition not open yet.
    let description = client_support::client(broker.address())
        .admin()
        .describe_topic("many")
        .wait()
        .expect("describe");
    assert!(
        description
            .partitions
            .iter()
            .all(|partition| partition.offline_reason.is_none()),
        "no partition is reported offline during the opens"
    );
    let first = client
        .call(&fetch_request("many", 0, 0, 1024, 10_000, 0))
        .topics[0]
        .partitions[0]
        .error_code;
    assert_eq!(
        first,
        ErrorCode::None,
        "a fetch waits for its partition too"
    );

    broker.wait_for_log_line("all partitions open");
    let codes = partition_codes(&mut client, "many");
    assert!(
        codes.iter().all(|code| *code == ErrorCode::None),
        "{codes:?}"
    );
    let description = client_support::client(broker.address())
        .admin()
        .describe_topic("many")
        .wait()
        .expect("describe");
    assert!(description
        .partitions
        .iter()
        .all(|partition| !partition.opening && partition.offline_reason.is_none()));
    let fetched = client.fetch_once("many", last, 0, 1024 * 1024);
    let values: Vec<Vec<u8>> = records_of(&fetched.records.to_bytes())
        .into_iter()
        .map(|(_, record)| record.value)
        .collect();
    assert_eq!(values, vec![b"before".to_vec(), b"after".to_vec()]);
}

#[test]
fn a_shutdown_while_partitions_open_exits_cleanly_and_loses_nothing() {
    let mut broker = Broker::start(one_shard(true));
    let mut client = TestClient::connect(broker.address());
    client.create_topic("many", PARTITIONS, &[]);
    let (code, _) = client.produce("many", 0, Acks::All, vec![record("kept")]);
    assert_eq!(code, ErrorCode::None);
    drop(client);
    broker.kill();

    broker.restart_with(one_shard(false));
    // SIGTERM at once: opens not begun are skipped, those running finish, and the open ones
    // are closed durably.
    assert!(broker.terminate().success());
    broker.restart_with(one_shard(true));
    let mut client = TestClient::connect(broker.address());
    let codes = partition_codes(&mut client, "many");
    assert!(
        codes.iter().all(|code| *code == ErrorCode::None),
        "{codes:?}"
    );
    let fetched = client.fetch_once("many", 0, 0, 1024 * 1024);
    assert_eq!(records_of(&fetched.records.to_bytes()).len(), 1);
}
