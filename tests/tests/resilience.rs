//! End-to-end: what users rely on when things go wrong. Bad input, many connections, restarts,
//! `kill -9` during acks=all production, and SIGTERM.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate_protocol::api::{
    Acks, ApiKey, ApiVersionsRequest, FetchResponse, MetadataRequest, ProduceResponse,
};
use spate_protocol::error::ErrorCode;
use spate_tests::client::{fetch_request, numbered_records, produce_request, TestRecord};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

/// A healthy client can still create, produce and fetch.
fn assert_healthy(broker: &Broker, topic: &str) {
    let mut client = TestClient::connect(broker.address());
    client.create_topic(topic, 2, &[]);
    let (code, _) = client.produce(
        topic,
        1,
        Acks::All,
        vec![build_batch(&numbered_records(0, 2, 0)).freeze()],
    );
    assert_eq!(code, ErrorCode::None);
    assert_eq!(client.fetch_all(topic, 1, 0).len(), 2);
}

#[test]
fn garbage_and_truncated_frames_close_only_their_own_connection() {
    let broker = broker();

    // Pure garbage: the length prefix is absurd; the broker closes the connection.
    let mut garbage = TestClient::connect(broker.address());
    garbage.send_raw(&[0xff; 64]);
    assert!(
        garbage.closed_by_broker(),
        "garbage did not close the connection"
    );

    // A frame whose header says a plausible length but whose body never arrives: the connection
    // simply waits; the client gives up and disconnects.
    let mut truncated = TestClient::connect(broker.address());
    truncated.send_raw(&[100, 0, 0, 0, 7, 0, 0, 0]);
    drop(truncated);

    // A frame too small to hold a request header.
    let mut tiny = TestClient::connect(broker.address());
    tiny.send_raw(&[2, 0, 0, 0, 1, 2]);
    assert!(tiny.closed_by_broker());

    // An oversized frame with a readable header: an error response, then the connection closes.
    let mut oversized = TestClient::connect(broker.address());
    let mut frame = Vec::new();
    frame.extend_from_slice(&(u32::MAX - 1).to_le_bytes());
    frame.extend_from_slice(&ApiKey::Fetch.to_u16().to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&77u32.to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    oversized.send_raw(&frame);
    let response: FetchResponse = oversized.receive(77);
    assert_eq!(response.error_code, ErrorCode::MessageTooLarge);
    assert!(oversized.closed_by_broker());

    // A well-framed request whose body is garbage: an error response, and the connection lives.
    let mut bad_body = TestClient::connect(broker.address());
    let body = [0xAB; 9];
    let mut frame = Vec::new();
    frame.extend_from_slice(&((10 + body.len()) as u32).to_le_bytes());
    frame.extend_from_slice(&ApiKey::Fetch.to_u16().to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&5u32.to_le_bytes());
    frame.extend_from_slice(&0u16.to_le_bytes());
    frame.extend_from_slice(&body);
    bad_body.send_raw(&frame);
    let response: FetchResponse = bad_body.receive(5);
    assert_eq!(response.error_code, ErrorCode::InvalidRequest);
    let versions = bad_body.call(&ApiVersionsRequest::default());
    assert_eq!(versions.error_code, ErrorCode::None);
    assert_eq!(versions.broker_versions.len(), ApiKey::ALL.len());

    // Random bytes in many shapes never take the broker down.
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    for round in 0..50 {
        let mut client = TestClient::connect(broker.address());
        let length = 1 + (round * 37) % 300;
        let bytes: Vec<u8> = (0..length)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        client.send_raw(&bytes);
    }

    assert_healthy(&broker, "after-garbage");
}

#[test]
fn hundreds_of_concurrent_connections_are_all_served() {
    let broker = broker();
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("crowd", 4, &[]);
    let connections = 300;
    let threads = 10;
    let failures = Arc::new(Mutex::new(Vec::new()));
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let failures = failures.clone();
            let address = broker.address();
            scope.spawn(move || {
                // Each thread opens its share of connections first, so all are open at once.
                let mut clients: Vec<TestClient> = (0..connections / threads)
                    .map(|_| TestClient::connect(address))
                    .collect();
                for (index, client) in clients.iter_mut().enumerate() {
                    let partition = ((thread + index) % 4) as u32;
                    let batch =
                        build_batch(&numbered_records(thread * 1000 + index, 1, 0)).freeze();
                    let produced =
                        client.send(&produce_request("crowd", partition, Acks::All, vec![batch]));
                    let metadata = client.send(&MetadataRequest { topics: None });
                    let response: ProduceResponse = client.receive(produced);
                    let _: spate_protocol::api::MetadataResponse = client.receive(metadata);
                    if response.topics[0].partitions[0].error_code != ErrorCode::None {
                        failures.lock().unwrap().push((thread, index));
                    }
                }
            });
        }
    });
    assert!(
        failures.lock().unwrap().is_empty(),
        "failed: {:?}",
        failures.lock().unwrap()
    );
    let total: usize = (0..4)
        .map(|partition| admin.fetch_all("crowd", partition, 0).len())
        .sum();
    assert_eq!(total, connections);
}

#[test]
fn a_restart_keeps_topics_configs_and_records() {
    let mut broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("durable", 3, &[("retention.ms", "-1")]);
    for partition in 0..3 {
        let (code, _) = client.produce(
            "durable",
            partition,
            Acks::All,
            vec![build_batch(&numbered_records(partition as usize * 10, 7, 100)).freeze()],
        );
        assert_eq!(code, ErrorCode::None);
    }
    let before = client.call(&MetadataRequest { topics: None });
    drop(client);

    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    broker.restart();

    let mut client = TestClient::connect(broker.address());
    let after = client.call(&MetadataRequest { topics: None });
    assert_eq!(
        before, after,
        "topics, placement or offsets changed across a restart"
    );
    for partition in 0..3 {
        let records: Vec<TestRecord> = client
            .fetch_all("durable", partition, 0)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        assert_eq!(records, numbered_records(partition as usize * 10, 7, 100));
    }
    // And it keeps accepting writes after the restart, continuing the offsets.
    let (code, base) = client.produce(
        "durable",
        0,
        Acks::All,
        vec![build_batch(&numbered_records(99, 1, 0)).freeze()],
    );
    assert_eq!((code, base), (ErrorCode::None, 7));
}

/// (partition, base offset, records) of one acknowledged produce request.
type Acknowledged = (u32, u64, Vec<TestRecord>);

#[test]
fn a_restart_with_another_shard_count_places_partitions_again_and_keeps_their_data() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 3,
        ..BrokerOptions::default()
    });
    let mut client = TestClient::connect(broker.address());
    client.create_topic("moving", 6, &[]);
    for partition in 0..6 {
        client.produce(
            "moving",
            partition,
            Acks::All,
            vec![build_batch(&numbered_records(partition as usize, 4, 0)).freeze()],
        );
    }
    drop(client);
    assert!(broker.terminate().success());

    broker.restart_with(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let log = broker.drain_log().join("\n");
    assert!(
        log.contains("shard count changed"),
        "the placement change was not logged:\n{log}"
    );
    let mut client = TestClient::connect(broker.address());
    let metadata = client.call(&MetadataRequest { topics: None });
    assert!(metadata.topics[0]
        .partitions
        .iter()
        .all(|partition| partition.shard_id < 2));
    for partition in 0..6 {
        let records: Vec<TestRecord> = client
            .fetch_all("moving", partition, 0)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        assert_eq!(
            records,
            numbered_records(partition as usize, 4, 0),
            "partition {partition}"
        );
    }
}

#[test]
fn kill_9_during_acks_all_production_loses_no_acknowledged_record() {
    let mut broker = broker();
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("crash", 2, &[("durability", "group-commit")]);
    drop(admin);

    // Producers pipeline acks=all requests and remember what was acknowledged.
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for partition in 0..2u32 {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let address = broker.address();
        producers.push(std::thread::spawn(move || {
            let mut client = TestClient::connect(address);
            let mut next = 0usize;
            let mut in_flight = std::collections::VecDeque::new();
            while !stop.load(Ordering::SeqCst) {
                while in_flight.len() < 8 {
                    let records = numbered_records(next, 5, next as i64);
                    next += 5;
                    let correlation_id = client.send(&produce_request(
                        "crash",
                        partition,
                        Acks::All,
                        vec![build_batch(&records).freeze()],
                    ));
                    in_flight.push_back((correlation_id, records));
                }
                let (correlation_id, records) = in_flight.pop_front().expect("in flight");
                // The broker may die at any moment: a missing answer just ends this producer.
                let Some((received_id, body)) = client.receive_frame() else {
                    return;
                };
                assert_eq!(received_id, correlation_id);
                let response = <ProduceResponse as spate_protocol::api::Message>::decode(0, body)
                    .expect("produce response");
                let answer = response.topics[0].partitions[0];
                assert_eq!(answer.error_code, ErrorCode::None);
                acknowledged
                    .lock()
                    .unwrap()
                    .push((partition, answer.base_offset, records));
            }
        }));
    }
    // Let them produce, then crash the broker mid-stream.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 200 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill();
    stop.store(true, Ordering::SeqCst);
    for producer in producers {
        let _ = producer.join();
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.len() >= 50,
        "too few acknowledged writes ({}) to test anything",
        acknowledged.len()
    );

    broker.restart();
    let mut client = TestClient::connect(broker.address());
    let stored: Vec<Vec<(u64, TestRecord)>> = (0..2)
        .map(|partition| client.fetch_all("crash", partition, 0))
        .collect();
    for (partition, base_offset, records) in acknowledged {
        for (index, record) in records.into_iter().enumerate() {
            let offset = base_offset + index as u64;
            let found = stored[partition as usize]
                .iter()
                .find(|(stored_offset, _)| *stored_offset == offset);
            assert_eq!(
                found.map(|(_, record)| record),
                Some(&record),
                "acknowledged record {partition}/{offset} lost"
            );
        }
    }
}

#[test]
fn sigterm_answers_in_flight_requests_and_exits_zero() {
    let mut broker = broker();
    let mut client = TestClient::connect(broker.address());
    client.create_topic("term", 1, &[]);
    // A long poll that will still be waiting when the signal arrives.
    let correlation_id = client.send(&fetch_request("term", 0, 0, 1 << 20, 20_000, 1));
    std::thread::sleep(Duration::from_millis(200));
    let status = broker.terminate();
    assert!(status.success(), "exit status {status:?}");
    let response: FetchResponse = client.receive(correlation_id);
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    let log = broker.drain_log().join("\n");
    assert!(
        log.contains("stopped accepting"),
        "no shutdown line in the log:\n{log}"
    );
    assert!(
        log.contains("broker stopped cleanly"),
        "no clean stop line in the log:\n{log}"
    );
}

#[test]
fn start_up_logs_each_listener_shard_and_the_memlock_situation() {
    let broker = broker();
    // Readiness was already read from the log; ask for the rest.
    let _ = TestClient::connect(broker.address()).call(&ApiVersionsRequest::default());
    let mut broker = broker;
    broker.terminate();
    let log = broker.drain_log();
    let shard_lines = log
        .iter()
        .filter(|line| line.contains("shard listening"))
        .count();
    assert_eq!(
        shard_lines,
        2,
        "one line per shard expected:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|line| line.contains("io_uring")),
        "no memlock line:\n{}",
        log.join("\n")
    );
}

#[test]
fn help_documents_every_setting_and_its_environment_variable() {
    let output = std::process::Command::new(spate_tests::broker_process::broker_binary())
        .arg("--help")
        .output()
        .expect("run spate-broker --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for needle in [
        "--data-dir",
        "--listen",
        "--cores",
        "--config",
        "--log-level",
        "SPATE_LOG",
        "SPATE_DATA_DIR",
        "SPATE_LISTEN",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}
