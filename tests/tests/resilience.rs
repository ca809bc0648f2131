//! End-to-end: what users rely on when things go wrong. Bad input, many connections, restarts,
//! `kill -9` during acks=all production, an idempotent producer with five requests in flight
//! through a `kill -9` and through cut connections, and SIGTERM.
//!
//! Restarts and the crash are driven through `spate-client`, as users drive them; bad frames,
//! connection counts and shutdown's treatment of requests on the wire use the raw test client.

mod client_support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use client_support::{as_producer_record, client, partition_records, produce_to, read_records};
use spate_client::{Client, ClientConfig, NewTopic, ProducerConfig, ProducerRecord};
use spate_protocol::api::{
    Acks, ApiKey, ApiVersionsRequest, FetchPartition, FetchResponse, MetadataRequest,
    ProduceResponse,
};
use spate_protocol::error::ErrorCode;
use spate_tests::client::{fetch_request, numbered_records, produce_request, TestRecord};
use spate_tests::{build_batch, Broker, BrokerOptions, CutProxy, TestClient};

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
    let client = client(broker.address());
    let admin = client.admin();
    admin
        .create_topic(NewTopic::new("durable", 3).with_config("retention.ms", "-1"))
        .wait()
        .expect("create durable");
    for partition in 0..3 {
        let offsets = produce_to(
            &client,
            "durable",
            partition,
            &numbered_records(partition as usize * 10, 7, 100),
        );
        assert_eq!(offsets, (0..7).collect::<Vec<u64>>());
    }
    let topics_before = admin.list_topics().wait().expect("list topics");
    let before = admin.describe_topic("durable").wait().expect("describe");
    drop((admin, client));

    let status = broker.terminate();
    assert!(status.success(), "SIGTERM exit status {status:?}");
    broker.restart();

    let client = client_support::client(broker.address());
    let admin = client.admin();
    assert_eq!(
        admin.list_topics().wait().expect("list topics"),
        topics_before
    );
    let after = admin.describe_topic("durable").wait().expect("describe");
    assert_eq!(
        before, after,
        "topics, configs, placement or offsets changed across a restart"
    );
    assert_eq!(
        after.configs.get("retention.ms").map(String::as_str),
        Some("-1")
    );
    let read = read_records(&client, "durable", None, 21);
    assert_eq!(read.len(), 21, "records read twice");
    for partition in 0..3 {
        let records: Vec<TestRecord> = partition_records(&read, partition)
            .into_iter()
            .map(|(_, record)| record)
            .collect();
        assert_eq!(records, numbered_records(partition as usize * 10, 7, 100));
    }
    // And it keeps accepting writes after the restart, continuing the offsets.
    assert_eq!(
        produce_to(&client, "durable", 0, &numbered_records(99, 1, 0)),
        vec![7]
    );
}

#[test]
fn a_restart_with_another_shard_count_places_partitions_again_and_keeps_their_data() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 3,
        ..BrokerOptions::default()
    });
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("moving", 6))
        .wait()
        .expect("create moving");
    for partition in 0..6 {
        produce_to(
            &client,
            "moving",
            partition,
            &numbered_records(partition as usize, 4, 0),
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
    let client = client_support::client(broker.address());
    let described = client
        .admin()
        .describe_topic("moving")
        .wait()
        .expect("describe");
    assert!(described
        .partitions
        .iter()
        .all(|partition| partition.shard < 2));
    let read = read_records(&client, "moving", None, 24);
    assert_eq!(read.len(), 24, "records read twice");
    for partition in 0..6 {
        let records: Vec<TestRecord> = partition_records(&read, partition)
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

/// One acknowledged record: the partition it was sent to, where the acknowledgement says it
/// went (partition, offset), and the record.
type Acknowledged = (u32, u32, Option<u64>, TestRecord);

#[test]
fn kill_9_during_acks_all_production_loses_no_acknowledged_record() {
    let mut broker = broker();
    let client = client(broker.address());
    client
        .admin()
        .create_topic(NewTopic::new("crash", 2).with_config("durability", "group-commit"))
        .wait()
        .expect("create crash");

    // Producers send acks=all records and remember each one acknowledged. Once the broker is
    // gone, their deliveries fail within a few seconds instead of retrying for minutes.
    let producer_config = ProducerConfig {
        acks: Acks::All,
        delivery_timeout: Duration::from_secs(3),
        buffer_wait_timeout: Duration::from_secs(3),
        ..ProducerConfig::default()
    };
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let mut producers = Vec::new();
    for partition in 0..2u32 {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let producer = client
            .producer(producer_config.clone())
            .expect("producer config is valid");
        producers.push(std::thread::spawn(move || {
            let mut next = 0usize;
            while !stop.load(Ordering::SeqCst) {
                let record = numbered_records(next, 1, next as i64).remove(0);
                next += 1;
                let acknowledged = acknowledged.clone();
                let kept = record.clone();
                let sent = producer.send_with_callback_blocking(
                    as_producer_record("crash", partition, &record),
                    move |result| {
                        // The broker may die at any moment: a failed delivery is simply not
                        // acknowledged. (Checked on the test thread: this runs on the client's.)
                        if let Ok(written) = result {
                            acknowledged.lock().unwrap().push((
                                partition,
                                written.partition,
                                written.offset,
                                kept,
                            ));
                        }
                    },
                );
                if sent.is_err() {
                    break;
                }
            }
            let _ = producer.close().wait();
        }));
    }
    // Let them produce, then crash the broker mid-stream.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acknowledged.lock().unwrap().len() < 1_000 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    broker.kill();
    stop.store(true, Ordering::SeqCst);
    for producer in producers {
        producer.join().expect("producer thread");
    }
    drop(client);
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    assert!(
        acknowledged.len() >= 250,
        "too few acknowledged records ({}) to test anything",
        acknowledged.len()
    );

    broker.restart();
    let client = client_support::client(broker.address());
    let described = client
        .admin()
        .describe_topic("crash")
        .wait()
        .expect("describe");
    let stored_count: u64 = described
        .partitions
        .iter()
        .map(|partition| partition.high_watermark - partition.log_start_offset)
        .sum();
    let read = read_records(&client, "crash", None, stored_count as usize);
    let stored: Vec<Vec<(u64, TestRecord)>> = (0..2)
        .map(|partition| partition_records(&read, partition))
        .collect();
    for (partition, written_partition, offset, record) in acknowledged {
        assert_eq!(
            written_partition, partition,
            "acknowledged in another partition"
        );
        let offset = offset.expect("acks=all reports the offset");
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
        "--kafka-listen",
        "SPATE_KAFKA_LISTEN",
        "--admin-listen",
        "SPATE_ADMIN_LISTEN",
        "--metrics",
        "--kafka-advertised",
        "--group-session-timeout-ms-min",
        "SPATE_GROUP_SESSION_TIMEOUT_MS_MIN",
        "--members-per-group-max",
        "--offsets-topic-partitions",
    ] {
        assert!(help.contains(needle), "--help lacks {needle}:\n{help}");
    }
}

#[test]
fn sigterm_with_idle_and_long_polling_connections_exits_within_seconds() {
    // The grace period is 10 s: a broker that waits for any of these connections to end on its
    // own, or for a cross-shard answer that never comes, takes at least that long.
    const PROMPT_STOP: Duration = Duration::from_secs(5);
    let mut broker = Broker::start(BrokerOptions {
        shards: 4,
        ..BrokerOptions::default()
    });
    let partitions = 8;
    TestClient::connect(broker.address()).create_topic("idle", partitions, &[]);
    // Connected and silent, like a tool left open.
    let _silent = std::net::TcpStream::connect(broker.address()).expect("connect");
    // Consumers waiting at the tail of every partition, so each long poll waits on every shard.
    // Shards look at the shutdown flag every 50 ms, each on its own phase; the polls start at
    // spread times so that some shard stops before its part of some poll has answered (a shard
    // that left then would leave that poll, reading again, waiting for an answer that never
    // comes).
    let mut waiting: Vec<(TestClient, u32)> = (0..6)
        .map(|_| {
            let mut consumer = TestClient::connect(broker.address());
            let mut request = fetch_request("idle", 0, 0, 1 << 20, 30_000, 1);
            request.topics[0].partitions = (0..partitions)
                .map(|partition| FetchPartition {
                    partition,
                    fetch_offset: 0,
                    partition_max_bytes: 1 << 20,
                })
                .collect();
            let correlation_id = consumer.send(&request);
            std::thread::sleep(Duration::from_millis(9));
            (consumer, correlation_id)
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));

    let started = Instant::now();
    let status = broker.terminate();
    let elapsed = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        elapsed < PROMPT_STOP,
        "SIGTERM took {elapsed:?} with idle connections open"
    );
    for (consumer, correlation_id) in &mut waiting {
        let response: FetchResponse = consumer.receive(*correlation_id);
        assert_eq!(response.error_code, ErrorCode::None);
        for answer in &response.topics[0].partitions {
            assert_eq!(
                answer.error_code,
                ErrorCode::None,
                "partition {}",
                answer.partition
            );
        }
    }
}

/// Records per partition an idempotent producer sends through a disruption.
const IDEMPOTENT_RECORDS_PER_PARTITION: usize = 2_000;
/// Partitions of the topic it writes.
const IDEMPOTENT_PARTITIONS: u32 = 3;

/// What an idempotent producer's run through a disruption left: per partition, each
/// acknowledged record's number with its offset, in the order the acknowledgements came; and
/// each failed send, with its error.
struct IdempotentRun {
    acknowledged: PartitionAcknowledgements,
    failures: Vec<String>,
}

/// Per partition, (record number, offset) of each acknowledged record in the order told.
type PartitionAcknowledgements = Vec<Vec<(usize, u64)>>;

/// Sends `IDEMPOTENT_RECORDS_PER_PARTITION` numbered records to each partition of `topic`
/// through `bootstrap` with an idempotent producer (acks=all, five requests in flight per
/// partition, small batches so that many are in flight), calls `disrupt` with the count of
/// acknowledged records while the producer thread keeps sending, and waits for every record's
/// outcome.
fn produce_through(
    bootstrap: SocketAddr,
    topic: &str,
    disrupt: impl FnOnce(&AtomicUsize),
) -> IdempotentRun {
    let client = Client::new(ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(bootstrap.to_string())
    })
    .expect("client config is valid");
    let config = ProducerConfig {
        acks: Acks::All,
        batch_bytes: 2 * 1024,
        linger: Duration::from_millis(1),
        // Long enough to outlast a restart: every record should end up acknowledged.
        delivery_timeout: Duration::from_secs(90),
        ..ProducerConfig::default()
    };
    assert!(config.idempotence, "idempotence is the default");
    assert_eq!(config.partition_inflight_requests_max, 5);
    let producer = client.producer(config).expect("producer config is valid");
    let partitions = IDEMPOTENT_PARTITIONS as usize;
    let acknowledged: Arc<Mutex<PartitionAcknowledgements>> =
        Arc::new(Mutex::new(vec![Vec::new(); partitions]));
    let failures: Arc<Mutex<Vec<String>>> = Arc::default();
    let acknowledged_count = Arc::new(AtomicUsize::new(0));
    let sender = {
        let producer = producer.clone();
        let acknowledged = acknowledged.clone();
        let failures = failures.clone();
        let acknowledged_count = acknowledged_count.clone();
        let topic = topic.to_string();
        std::thread::spawn(move || {
            for number in 0..IDEMPOTENT_RECORDS_PER_PARTITION {
                for partition in 0..IDEMPOTENT_PARTITIONS {
                    let value = idempotent_value(partition, number);
                    let acknowledged = acknowledged.clone();
                    let failures = failures.clone();
                    let acknowledged_count = acknowledged_count.clone();
                    producer
                        .send_with_callback_blocking(
                            ProducerRecord::new(&topic, &value).with_partition(partition),
                            move |result| match result {
                                Ok(written) => {
                                    let offset = written.offset.expect("acks=all has offsets");
                                    acknowledged.lock().unwrap()[partition as usize]
                                        .push((number, offset));
                                    acknowledged_count.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(error) => failures
                                    .lock()
                                    .unwrap()
                                    .push(format!("{partition}/{number}: {error}")),
                            },
                        )
                        .expect("record accepted");
                }
                // Spread the sends over a few seconds so that the disruption finds requests
                // in flight.
                if number % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    disrupt(&acknowledged_count);
    sender.join().expect("producer thread");
    producer.close().wait().expect("the producer closes");
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());
    let failures = std::mem::take(&mut *failures.lock().unwrap());
    IdempotentRun {
        acknowledged,
        failures,
    }
}

/// A record value padded to 100 bytes, so that a 2 KiB batch holds about 15 of them.
fn idempotent_value(partition: u32, number: usize) -> String {
    format!("{partition}:{number:>8}:{}", "x".repeat(88))
}

/// The record numbers stored in `partition`, in offset order, with their offsets.
fn stored_numbers(broker: SocketAddr, topic: &str, partition: u32) -> Vec<(u64, usize)> {
    let mut client = TestClient::connect(broker);
    client
        .fetch_all(topic, partition, 0)
        .into_iter()
        .map(|(offset, record)| {
            let text = String::from_utf8(record.value).expect("UTF-8 value");
            let mut fields = text.split(':');
            let stored_partition: u32 = fields.next().unwrap().parse().unwrap();
            assert_eq!(stored_partition, partition, "record of another partition");
            let number = fields.next().unwrap().trim().parse().unwrap();
            (offset, number)
        })
        .collect()
}

/// Every acknowledged record is stored once, at the offset its acknowledgement gave, the
/// acknowledgements came in send order, and each partition holds every record sent to it once,
/// in send order, with no gap.
fn assert_every_record_stored_once_in_send_order(
    broker: SocketAddr,
    topic: &str,
    run: &IdempotentRun,
) {
    let stored: Vec<Vec<usize>> = (0..IDEMPOTENT_PARTITIONS)
        .map(|partition| {
            let stored = stored_numbers(broker, topic, partition);
            let numbers: Vec<usize> = stored.iter().map(|(_, number)| *number).collect();
            let out_of_order = numbers.windows(2).find(|pair| pair[0] >= pair[1]);
            assert!(
                out_of_order.is_none(),
                "partition {partition} holds {out_of_order:?} out of send order or twice"
            );
            for (number, offset) in &run.acknowledged[partition as usize] {
                let found = stored
                    .iter()
                    .find(|(stored_offset, _)| stored_offset == offset);
                assert_eq!(
                    found.map(|(_, stored)| stored),
                    Some(number),
                    "acknowledged record {partition}/{number} is not at its offset {offset}"
                );
            }
            let acknowledged_order: Vec<usize> = run.acknowledged[partition as usize]
                .iter()
                .map(|(number, _)| *number)
                .collect();
            let told_out_of_order = acknowledged_order
                .windows(2)
                .position(|pair| pair[0] >= pair[1]);
            if let Some(position) = told_out_of_order {
                let around = &acknowledged_order[position.saturating_sub(5)..]
                    [..10.min(acknowledged_order.len() - position.saturating_sub(5))];
                panic!(
                    "partition {partition}'s acknowledgements came out of send order at \
                     {position}: {around:?}"
                );
            }
            numbers
        })
        .collect();
    let expected: Vec<usize> = (0..IDEMPOTENT_RECORDS_PER_PARTITION).collect();
    for (partition, numbers) in stored.iter().enumerate() {
        assert_eq!(
            numbers, &expected,
            "partition {partition}: every record once, no gap, in send order"
        );
    }
}

#[test]
fn kill_9_with_five_idempotent_requests_in_flight_stores_every_acknowledged_record_once_in_order() {
    let mut broker = broker();
    let topic = "idempotent-crash";
    client(broker.address())
        .admin()
        .create_topic(
            NewTopic::new(topic, IDEMPOTENT_PARTITIONS).with_config("durability", "group-commit"),
        )
        .wait()
        .expect("create the topic");
    let address = broker.address();
    let run = produce_through(address, topic, |acknowledged| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while acknowledged.load(Ordering::SeqCst) < 1_000 {
            assert!(
                Instant::now() < deadline,
                "too few acknowledgements to crash into"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        broker.kill();
        std::thread::sleep(Duration::from_millis(300));
        broker.restart();
    });
    assert!(
        run.failures.is_empty(),
        "sends failed though the delivery timeout outlasts the restart: {:?}",
        &run.failures[..run.failures.len().min(10)]
    );
    assert_every_record_stored_once_in_send_order(broker.address(), topic, &run);
}

#[test]
fn cut_connections_under_five_idempotent_requests_in_flight_duplicate_and_reorder_nothing() {
    let broker = broker();
    let topic = "idempotent-cuts";
    client(broker.address())
        .admin()
        .create_topic(NewTopic::new(topic, IDEMPOTENT_PARTITIONS))
        .wait()
        .expect("create the topic");
    let proxy = CutProxy::start(broker.address());
    let total = IDEMPOTENT_RECORDS_PER_PARTITION * IDEMPOTENT_PARTITIONS as usize;
    let mut cuts = 0;
    let run = produce_through(proxy.address(), topic, |acknowledged| {
        let deadline = Instant::now() + Duration::from_secs(120);
        // Cut at a few points of the stream, each once some more records were acknowledged.
        for step in 1..=5 {
            while acknowledged.load(Ordering::SeqCst) < step * total / 7 {
                assert!(
                    Instant::now() < deadline,
                    "the producer stalled after a cut"
                );
                std::thread::sleep(Duration::from_millis(1));
            }
            proxy.cut();
            cuts += 1;
        }
    });
    assert_eq!(cuts, 5);
    assert!(
        proxy.accepted() > 5,
        "the producer reconnected after each cut ({} connections)",
        proxy.accepted()
    );
    assert!(
        run.failures.is_empty(),
        "sends failed: {:?}",
        &run.failures[..run.failures.len().min(10)]
    );
    assert_every_record_stored_once_in_send_order(broker.address(), topic, &run);
}
