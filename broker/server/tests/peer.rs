//! `peer::PeerConnection` and `peer::PeerPool` against the real `spate-broker` binary: pipelined
//! calls answered in order, a call past its timeout, an answer over the response limit, and a
//! broker that dies and comes back.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use spate_protocol::api::{Acks, ApiKey, MetadataRequest};
use spate_protocol::error::ErrorCode;
use spate_server::peer::{PeerConnection, PeerError, PeerLimits, PeerPool};
use spate_tests::client::{fetch_request, produce_request, records_of};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient, TestRecord};

fn limits() -> PeerLimits {
    PeerLimits {
        connect_timeout_ms: 5_000,
        inflight_requests_max: 8,
        response_bytes_max: 1 << 20,
        reconnect_backoff_ms_max: 200,
    }
}

fn batch(number: usize) -> Bytes {
    build_batch(&[TestRecord::new(
        &format!("key-{number}"),
        &format!("value-{number}"),
        1_700_000_000_000 + number as i64,
    )])
    .freeze()
}

fn broker_with_topic(topic: &str) -> Broker {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic(topic, 1, &[]);
    broker
}

#[test]
fn pipelined_calls_are_answered_in_order_with_negotiated_versions() {
    let broker = broker_with_topic("peer-pipeline");
    let address = broker.address();
    glommio::LocalExecutor::default().run(async move {
        let connection = PeerConnection::connect(address, "127.0.0.1", &limits(), None, 5_000)
            .await
            .unwrap();
        assert_eq!(
            connection.version_of(ApiKey::Fetch),
            Some(ApiKey::Fetch.versions().1)
        );
        assert_eq!(connection.version_of(ApiKey::ApiVersions), Some(0));
        // 20 produce calls at once, with at most 8 in flight: each answered, offsets in the order
        // the calls were made.
        let finished = Rc::new(Cell::new(0));
        let calls: Vec<_> = (0..20)
            .map(|number| {
                let connection = connection.clone();
                let finished = finished.clone();
                glommio::spawn_local(async move {
                    let request =
                        produce_request("peer-pipeline", 0, Acks::All, vec![batch(number)]);
                    let answer = connection.call(&request, 10_000).await;
                    finished.set(finished.get() + 1);
                    answer
                })
            })
            .collect();
        // Each acks=all produce waits for an fsync at the broker: the calls overlap.
        let mut most_in_flight = 0;
        while finished.get() < 20 {
            most_in_flight = most_in_flight.max(connection.calls_in_flight());
            glommio::timer::sleep(Duration::from_micros(200)).await;
        }
        let mut told = Vec::new();
        for (number, call) in calls.into_iter().enumerate() {
            let answer = call.await.unwrap();
            let partition = &answer.topics[0].partitions[0];
            assert_eq!(partition.error_code, ErrorCode::None);
            told.push((partition.base_offset, number));
        }
        // Every call got its own answer: the offset each was told holds its own record. Calls
        // waiting for a slot take it in the order the executor runs them, not necessarily the
        // order their tasks were spawned in, so the offsets need not follow the call numbers.
        let mut offsets: Vec<u64> = told.iter().map(|(offset, _)| *offset).collect();
        offsets.sort_unstable();
        assert_eq!(offsets, (0..20).collect::<Vec<u64>>());
        let stored = connection
            .call(&fetch_request("peer-pipeline", 0, 0, 1 << 20, 0, 0), 5_000)
            .await
            .unwrap();
        let records = records_of(&stored.topics[0].partitions[0].records.to_bytes());
        assert_eq!(records.len(), 20);
        for (offset, number) in told {
            let (_, record) = &records[offset as usize];
            assert_eq!(
                record.key.as_deref(),
                Some(format!("key-{number}").as_bytes()),
                "offset {offset} was told to call {number}"
            );
        }
        assert!(
            most_in_flight > 1,
            "calls were not pipelined: {most_in_flight}"
        );
        assert!(
            most_in_flight <= 8,
            "more calls in flight than the limit: {most_in_flight}"
        );
        // A long-poll fetch is answered once another connection produces.
        let waiting = {
            let connection = connection.clone();
            glommio::spawn_local(async move {
                let request = fetch_request("peer-pipeline", 0, 20, 1 << 16, 5_000, 1);
                connection.call(&request, 10_000).await
            })
        };
        glommio::timer::sleep(Duration::from_millis(100)).await;
        let other = PeerConnection::connect(address, "127.0.0.1", &limits(), None, 5_000)
            .await
            .unwrap();
        let request = produce_request("peer-pipeline", 0, Acks::Leader, vec![batch(20)]);
        other.call(&request, 10_000).await.unwrap();
        let fetched = waiting.await.unwrap();
        let partition = &fetched.topics[0].partitions[0];
        assert_eq!(partition.error_code, ErrorCode::None);
        let records = records_of(&partition.records.to_bytes());
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].0, 20);
        let metadata = connection
            .call(&MetadataRequest { topics: None }, 5_000)
            .await
            .unwrap();
        assert!(metadata
            .topics
            .iter()
            .any(|topic| topic.name == "peer-pipeline"));
        assert!(!connection.is_broken());
    });
    drop(broker);
}

#[test]
fn a_call_past_its_timeout_breaks_the_connection_and_so_does_an_oversized_answer() {
    let broker = broker_with_topic("peer-timeout");
    let address = broker.address();
    let mut client = TestClient::connect(address);
    let (code, _) = client.produce(
        "peer-timeout",
        0,
        Acks::All,
        vec![build_batch(&[TestRecord::new("k", &"v".repeat(4096), 1)]).freeze()],
    );
    assert_eq!(code, ErrorCode::None);
    glommio::LocalExecutor::default().run(async move {
        let connection = PeerConnection::connect(address, "127.0.0.1", &limits(), None, 5_000)
            .await
            .unwrap();
        // Nothing at offset 1: the fetch waits 3 s at the broker, the call only 200 ms.
        let request = fetch_request("peer-timeout", 0, 1, 1 << 16, 3_000, 1);
        let error = connection.call(&request, 200).await.unwrap_err();
        assert!(matches!(error, PeerError::TimedOut { .. }), "{error}");
        assert!(connection.is_broken());
        let error = connection
            .call(&MetadataRequest { topics: None }, 1_000)
            .await
            .unwrap_err();
        assert!(matches!(error, PeerError::Broken { .. }), "{error}");

        // An answer larger than the limit breaks the connection.
        let small = PeerLimits {
            response_bytes_max: 1024,
            ..limits()
        };
        let connection = PeerConnection::connect(address, "127.0.0.1", &small, None, 5_000)
            .await
            .unwrap();
        let request = fetch_request("peer-timeout", 0, 0, 1 << 16, 0, 0);
        let error = connection.call(&request, 5_000).await.unwrap_err();
        match &error {
            PeerError::Broken { reason, .. } => {
                assert!(reason.contains("peer_response_bytes_max"), "{reason}")
            }
            other => panic!("expected a broken connection, got {other}"),
        }
    });
    drop(broker);
}

#[test]
fn the_pool_fails_calls_of_a_killed_broker_backs_off_and_reconnects_after_its_restart() {
    let mut broker = broker_with_topic("peer-restart");
    let address = broker.address();
    glommio::LocalExecutor::default().run(async move {
        let pool = Rc::new(PeerPool::new(limits(), None));
        let connection = pool.get(7, "127.0.0.1", address).await.unwrap();
        assert!(Rc::ptr_eq(
            &connection,
            &pool.get(7, "127.0.0.1", address).await.unwrap()
        ));
        let waiting = {
            let connection = connection.clone();
            glommio::spawn_local(async move {
                let request = fetch_request("peer-restart", 0, 0, 1 << 16, 10_000, 1);
                connection.call(&request, 20_000).await
            })
        };
        glommio::timer::sleep(Duration::from_millis(100)).await;
        broker.kill();
        let error = waiting.await.unwrap_err();
        assert!(matches!(error, PeerError::Broken { .. }), "{error}");
        assert!(connection.is_broken());
        assert!(pool.connected(7).is_none());
        // Refused now, then in backoff until the wait passes.
        let error = pool.get(7, "127.0.0.1", address).await.unwrap_err();
        assert!(matches!(error, PeerError::Connect { .. }), "{error}");
        let error = pool.get(7, "127.0.0.1", address).await.unwrap_err();
        assert!(
            matches!(error, PeerError::BackingOff { node: 7, .. }),
            "{error}"
        );
        broker.restart();
        let mut reconnected = None;
        for _ in 0..100 {
            match pool.get(7, "127.0.0.1", address).await {
                Ok(connection) => {
                    reconnected = Some(connection);
                    break;
                }
                Err(PeerError::BackingOff { retry_in_ms, .. }) => {
                    glommio::timer::sleep(Duration::from_millis(retry_in_ms + 1)).await
                }
                Err(error) => panic!("reconnecting failed: {error}"),
            }
        }
        let connection = reconnected.expect("reconnected within 100 attempts");
        let answer = connection
            .call(&MetadataRequest { topics: None }, 5_000)
            .await
            .unwrap();
        assert!(answer
            .topics
            .iter()
            .any(|topic| topic.name == "peer-restart"));
        drop(broker);
    });
}
