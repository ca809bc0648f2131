//! End-to-end: the idempotent producer's broker side over the wire, with the raw test client —
//! producer ids from InitProducerId (unique across crashes, epoch bumps) and the per-partition
//! sequence checks of produce (duplicates answered with the original offset, gaps refused, older
//! epochs fenced), including after a `kill -9` and restart.
//!
//! The client library's use of these (stamping, retries with five requests in flight) is tested
//! in `client_producer.rs` and `resilience.rs`.

use bytes::Bytes;
use spate_protocol::api::{Acks, InitProducerIdRequest};
use spate_protocol::batch::header::{stamp_producer, NO_PRODUCER_EPOCH, NO_PRODUCER_ID};
use spate_protocol::error::ErrorCode;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

fn new_producer(client: &mut TestClient) -> (i64, i16) {
    let answer = client.call(&InitProducerIdRequest {
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        ..InitProducerIdRequest::default()
    });
    assert_eq!(answer.error_code, ErrorCode::None);
    (answer.producer_id, answer.producer_epoch)
}

#[test]
fn producer_ids_are_unique_across_connections_and_a_kill_9_restart() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut seen = Vec::new();
    for _ in 0..4 {
        // A new connection each time, so that both shards answer some of them.
        let mut client = TestClient::connect(broker.address());
        let (id, epoch) = new_producer(&mut client);
        assert_eq!(epoch, 0);
        seen.push(id);
    }
    broker.kill();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let (after_restart, _) = new_producer(&mut client);
    seen.push(after_restart);
    let mut unique = seen.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        seen.len(),
        "an id was handed out twice: {seen:?}"
    );
}

#[test]
fn an_epoch_bump_keeps_the_id_and_unknown_ids_are_refused() {
    let broker = Broker::start(BrokerOptions::default());
    let mut client = TestClient::connect(broker.address());
    let (id, epoch) = new_producer(&mut client);
    let bumped = client.call(&InitProducerIdRequest {
        producer_id: id,
        producer_epoch: epoch,
        ..InitProducerIdRequest::default()
    });
    assert_eq!(bumped.error_code, ErrorCode::None);
    assert_eq!((bumped.producer_id, bumped.producer_epoch), (id, epoch + 1));

    let unknown = client.call(&InitProducerIdRequest {
        producer_id: id + 1_000_000,
        producer_epoch: 0,
        ..InitProducerIdRequest::default()
    });
    assert_eq!(unknown.error_code, ErrorCode::InvalidProducerIdMapping);
}

/// One sealed batch of `count` records, stamped with a producer identity and base sequence.
fn stamped_batch(first: usize, count: usize, identity: (i64, i16), sequence: i32) -> Bytes {
    let mut batch = build_batch(&numbered_records(first, count, 1_000));
    stamp_producer(&mut batch, identity.0, identity.1, sequence);
    batch.freeze()
}

/// Produces `batch` alone to partition 0 of `topic` (acks all): the error code and base offset.
fn produce_one(client: &mut TestClient, topic: &str, batch: Bytes) -> (ErrorCode, u64) {
    client.produce(topic, 0, Acks::All, vec![batch])
}

/// Produces `batch` alone to partition 0 of `topic` and checks that it is answered without error
/// at `base_offset`: where it was appended, or for a duplicate where it was the first time.
#[track_caller]
fn assert_stored_at(client: &mut TestClient, topic: &str, batch: Bytes, base_offset: u64) {
    assert_eq!(
        produce_one(client, topic, batch),
        (ErrorCode::None, base_offset)
    );
}

/// A topic with one partition and a producer identity, on a fresh connection.
fn setup(broker: &Broker, topic: &str) -> (TestClient, (i64, i16)) {
    let mut client = TestClient::connect(broker.address());
    client.create_topic(topic, 1, &[]);
    let identity = new_producer(&mut client);
    (client, identity)
}

#[test]
fn a_retried_batch_is_answered_with_its_original_offset_and_stored_once() {
    let broker = Broker::start(BrokerOptions::default());
    let (mut client, identity) = setup(&broker, "retries");
    let first = stamped_batch(0, 3, identity, 0);
    let second = stamped_batch(3, 2, identity, 3);
    assert_stored_at(&mut client, "retries", first.clone(), 0);
    assert_stored_at(&mut client, "retries", second.clone(), 3);
    // Both retried, the older one first: each gets the offset it got the first time.
    assert_stored_at(&mut client, "retries", first, 0);
    assert_stored_at(&mut client, "retries", second, 3);
    let stored = client.fetch_all("retries", 0, 0);
    assert_eq!(stored.len(), 5, "duplicates were appended: {stored:?}");
    assert_eq!(client.offsets_of("retries", 0), (0, 5));
}

#[test]
fn a_gap_in_a_producers_sequence_is_refused_and_appends_nothing() {
    let broker = Broker::start(BrokerOptions::default());
    let (mut client, identity) = setup(&broker, "gaps");
    assert_stored_at(&mut client, "gaps", stamped_batch(0, 3, identity, 0), 0);
    let (code, _) = produce_one(&mut client, "gaps", stamped_batch(3, 1, identity, 4));
    assert_eq!(code, ErrorCode::OutOfOrderSequence);
    assert_eq!(client.offsets_of("gaps", 0), (0, 3));
    // The expected sequence is still accepted afterwards.
    assert_stored_at(&mut client, "gaps", stamped_batch(3, 1, identity, 3), 3);
}

#[test]
fn a_new_epoch_restarts_at_sequence_zero_and_fences_the_old_one() {
    let broker = Broker::start(BrokerOptions::default());
    let (mut client, identity) = setup(&broker, "epochs");
    assert_stored_at(&mut client, "epochs", stamped_batch(0, 2, identity, 0), 0);
    let bumped = client.call(&InitProducerIdRequest {
        producer_id: identity.0,
        producer_epoch: identity.1,
        ..InitProducerIdRequest::default()
    });
    let bumped = (bumped.producer_id, bumped.producer_epoch);
    let (code, _) = produce_one(&mut client, "epochs", stamped_batch(2, 1, bumped, 2));
    assert_eq!(
        code,
        ErrorCode::OutOfOrderSequence,
        "a new epoch starts at 0"
    );
    assert_stored_at(&mut client, "epochs", stamped_batch(2, 1, bumped, 0), 2);
    let (code, _) = produce_one(&mut client, "epochs", stamped_batch(3, 1, identity, 2));
    assert_eq!(code, ErrorCode::ProducerFenced);
    assert_eq!(client.offsets_of("epochs", 0), (0, 3));
}

#[test]
fn a_retry_after_a_kill_9_restart_is_still_recognised_as_a_duplicate() {
    let mut broker = Broker::start(BrokerOptions::default());
    let (mut client, identity) = setup(&broker, "crashes");
    let batches: Vec<_> = (0..4)
        .map(|index| stamped_batch(index * 2, 2, identity, (index * 2) as i32))
        .collect();
    for (index, batch) in batches.iter().enumerate() {
        assert_stored_at(&mut client, "crashes", batch.clone(), index as u64 * 2);
    }
    drop(client);
    broker.kill();
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    // The last batch, retried as a producer would after losing its connection.
    assert_stored_at(&mut client, "crashes", batches[3].clone(), 6);
    assert_stored_at(&mut client, "crashes", stamped_batch(8, 1, identity, 8), 8);
    // And after a clean restart, from the snapshot the broker writes when it stops.
    drop(client);
    assert!(broker.terminate().success());
    broker.restart();
    let mut client = TestClient::connect(broker.address());
    assert_stored_at(&mut client, "crashes", stamped_batch(8, 1, identity, 8), 8);
    assert_eq!(client.offsets_of("crashes", 0), (0, 9));
}
