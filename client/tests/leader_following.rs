//! The client follows a partition's leader across brokers, against two in-process stand-in
//! brokers that share one partition log (as replicas would): Metadata v1 names both brokers
//! and the leader; the one that does not lead refuses produce with NotLeaderOrFollower, or
//! (in the crash variant) appends the batch and drops the connection without answering, as a
//! leader killed after replicating but before acknowledging would.
//!
//! The shared log checks each idempotent batch's sequence as a Spate partition does (a copy of
//! the last batch is answered with its original offset, a gap is OutOfOrderSequence), so a
//! client that re-stamped a batch it resent to the new leader would store it twice and fail
//! the exactly-once check.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use spate_client::StartAt;
use spate_client::{Client, ClientConfig, ConsumerConfig, ProducerConfig, ProducerRecord};
use spate_protocol::api::*;
use spate_protocol::batch::header::stamp;
use spate_protocol::batch::BatchHeader;
use spate_protocol::frame::split_request_frame;
use spate_protocol::{ErrorCode, NodeId};

const TOPIC: &str = "orders";

/// One stored batch: its producer sequence range and bytes (stamped with its base offset).
struct Stored {
    base_offset: u64,
    base_sequence: i32,
    record_count: u32,
    bytes: Bytes,
}

#[derive(Default)]
struct Log {
    batches: Vec<Stored>,
    next_offset: u64,
}

impl Log {
    /// Appends a batch as a partition checks an idempotent one: `Ok(base offset)`, the
    /// original's offset for a copy of a stored batch, or the refusal.
    fn append(&mut self, batch: &Bytes) -> Result<u64, ErrorCode> {
        let header = BatchHeader::decode(batch).map_err(|_| ErrorCode::CorruptMessage)?;
        if let Some(copy) = self
            .batches
            .iter()
            .find(|stored| stored.base_sequence == header.base_sequence)
        {
            return Ok(copy.base_offset);
        }
        let expected = self
            .batches
            .last()
            .map_or(0, |last| last.base_sequence + last.record_count as i32);
        if header.base_sequence != expected {
            return Err(ErrorCode::OutOfOrderSequence);
        }
        let base_offset = self.next_offset;
        let mut bytes = BytesMut::from(&batch[..]);
        stamp(&mut bytes, base_offset, 0);
        self.batches.push(Stored {
            base_offset,
            base_sequence: header.base_sequence,
            record_count: header.record_count,
            bytes: bytes.freeze(),
        });
        self.next_offset += u64::from(header.offset_count);
        Ok(base_offset)
    }
}

/// What the two stand-ins share.
struct Cluster {
    addresses: Vec<String>,
    leader: NodeId,
    leader_epoch: i32,
    /// The broker that stops leading after this many appends, and moves leadership to the
    /// other; `None` once done.
    step_down_after: Option<usize>,
    /// How the old leader behaves once it stepped down: refuses (false) or crashes on the
    /// next produce after appending it (true).
    crash: bool,
    appends: usize,
    log: Log,
    produce_requests: [usize; 2],
    fetch_requests: [usize; 2],
    /// The group coordinator; it moves to the other broker after each commit it takes.
    coordinator: NodeId,
    committed: Option<u64>,
    commits: [usize; 2],
}

fn serve(cluster: Arc<Mutex<Cluster>>, node: NodeId, listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { return };
        let cluster = cluster.clone();
        std::thread::spawn(move || connection(cluster, node, stream));
    }
}

fn connection(cluster: Arc<Mutex<Cluster>>, node: NodeId, mut stream: TcpStream) {
    let mut buffer = BytesMut::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        while let Ok(Some(frame)) = split_request_frame(&mut buffer) {
            let mut out = BytesMut::new();
            let version = frame.api_version;
            let id = frame.correlation_id;
            match ApiKey::from_u16(frame.api_key) {
                Some(ApiKey::ApiVersions) => {
                    let response = ApiVersionsResponse {
                        error_code: ErrorCode::None,
                        broker_versions: SUPPORTED_API_VERSIONS.to_vec(),
                    };
                    encode_response(&mut out, id, 0, &response).unwrap();
                }
                Some(ApiKey::Metadata) => {
                    let cluster = cluster.lock().unwrap();
                    let response = MetadataResponse {
                        topics: vec![TopicMetadata {
                            error_code: ErrorCode::None,
                            name: TOPIC.into(),
                            partitions: vec![PartitionMetadata {
                                partition: 0,
                                leader_id: cluster.leader,
                                leader_epoch: cluster.leader_epoch,
                                replicas: vec![0, 1],
                                isr: vec![0, 1],
                                high_watermark: cluster.log.next_offset,
                                ..PartitionMetadata::default()
                            }],
                        }],
                        cluster_id: Some("stand-in".into()),
                        controller_id: 0,
                        brokers: cluster
                            .addresses
                            .iter()
                            .enumerate()
                            .map(|(index, address)| {
                                let (host, port) = address.rsplit_once(':').unwrap();
                                BrokerMetadata {
                                    node_id: index as NodeId,
                                    host: host.into(),
                                    port: port.parse().unwrap(),
                                    rack: None,
                                }
                            })
                            .collect(),
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::InitProducerId) => {
                    let response = InitProducerIdResponse {
                        error_code: ErrorCode::None,
                        producer_id: 7,
                        producer_epoch: 0,
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::Produce) => {
                    let request = ProduceRequest::decode(version, frame.body.clone()).unwrap();
                    let mut cluster = cluster.lock().unwrap();
                    cluster.produce_requests[node as usize] += 1;
                    let mut answers = Vec::new();
                    let mut drop_connection = false;
                    for topic in &request.topics {
                        for partition in &topic.partitions {
                            let batch = &partition.batches[0];
                            let code_and_offset = if cluster.leader != node {
                                if cluster.crash {
                                    // Appended (replicated) but never acknowledged.
                                    let _ = cluster.log.append(batch);
                                    drop_connection = true;
                                }
                                Err(ErrorCode::NotLeaderOrFollower)
                            } else {
                                let appended = cluster.log.append(batch);
                                if appended.is_ok() {
                                    cluster.appends += 1;
                                    if cluster
                                        .step_down_after
                                        .is_some_and(|after| cluster.appends >= after)
                                    {
                                        cluster.step_down_after = None;
                                        cluster.leader = 1 - node;
                                        cluster.leader_epoch += 1;
                                    }
                                }
                                appended
                            };
                            let (error_code, base_offset) = match code_and_offset {
                                Ok(offset) => (ErrorCode::None, offset),
                                Err(code) => (code, 0),
                            };
                            answers.push(ProducePartitionResponse {
                                partition: partition.partition,
                                error_code,
                                base_offset,
                                log_append_time_ms: -1,
                                leader_id: cluster.leader,
                                leader_epoch: cluster.leader_epoch,
                                ..ProducePartitionResponse::default()
                            });
                        }
                    }
                    if drop_connection {
                        return;
                    }
                    let response = ProduceResponse {
                        topics: vec![TopicPartitions {
                            name: TOPIC.into(),
                            partitions: answers,
                        }],
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::Fetch) => {
                    let request = FetchRequest::decode(version, frame.body.clone()).unwrap();
                    let mut cluster = cluster.lock().unwrap();
                    cluster.fetch_requests[node as usize] += 1;
                    let wanted = request.topics[0].partitions[0].fetch_offset;
                    let partition = if cluster.leader != node {
                        FetchPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::NotLeaderOrFollower,
                            ..FetchPartitionResponse::default()
                        }
                    } else {
                        let mut bytes = BytesMut::new();
                        for stored in &cluster.log.batches {
                            if stored.base_offset >= wanted {
                                bytes.extend_from_slice(&stored.bytes);
                            }
                        }
                        FetchPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            high_watermark: cluster.log.next_offset,
                            last_stable_offset: cluster.log.next_offset,
                            records: RecordSet::from_bytes(bytes.freeze()),
                            ..FetchPartitionResponse::default()
                        }
                    };
                    drop(cluster);
                    let response = FetchResponse {
                        topics: vec![TopicPartitions {
                            name: TOPIC.into(),
                            partitions: vec![partition],
                        }],
                        ..FetchResponse::default()
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::ListOffsets) => {
                    let request = ListOffsetsRequest::decode(version, frame.body.clone()).unwrap();
                    let cluster = cluster.lock().unwrap();
                    let answer = if cluster.leader != node {
                        ListOffsetsPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::NotLeaderOrFollower,
                            ..ListOffsetsPartitionResponse::default()
                        }
                    } else {
                        let offset = match request.topics[0].partitions[0].spec {
                            OffsetSpec::Earliest => 0,
                            _ => cluster.log.next_offset,
                        };
                        ListOffsetsPartitionResponse {
                            partition: 0,
                            error_code: ErrorCode::None,
                            offset: Some(offset),
                            timestamp: -1,
                        }
                    };
                    let response = ListOffsetsResponse {
                        topics: vec![TopicPartitions {
                            name: TOPIC.into(),
                            partitions: vec![answer],
                        }],
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::FindCoordinator) => {
                    let cluster = cluster.lock().unwrap();
                    let address = &cluster.addresses[cluster.coordinator as usize];
                    let (host, port) = address.rsplit_once(':').unwrap();
                    let response = FindCoordinatorResponse {
                        error_code: ErrorCode::None,
                        error_message: None,
                        node_id: cluster.coordinator,
                        host: host.into(),
                        port: port.parse().unwrap(),
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::OffsetCommit) => {
                    let request = OffsetCommitRequest::decode(version, frame.body.clone()).unwrap();
                    let mut cluster = cluster.lock().unwrap();
                    let error_code = if cluster.coordinator != node {
                        ErrorCode::NotCoordinator
                    } else {
                        cluster.commits[node as usize] += 1;
                        cluster.committed = Some(request.topics[0].partitions[0].committed_offset);
                        cluster.coordinator = 1 - node;
                        ErrorCode::None
                    };
                    let response = OffsetCommitResponse {
                        error_code,
                        topics: Vec::new(),
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                Some(ApiKey::OffsetFetch) => {
                    let cluster = cluster.lock().unwrap();
                    let response = if cluster.coordinator != node {
                        OffsetFetchResponse {
                            error_code: ErrorCode::NotCoordinator,
                            topics: Vec::new(),
                        }
                    } else {
                        OffsetFetchResponse {
                            error_code: ErrorCode::None,
                            topics: vec![TopicPartitions {
                                name: TOPIC.into(),
                                partitions: vec![OffsetFetchPartition {
                                    partition: 0,
                                    committed_offset: cluster.committed,
                                    metadata: None,
                                    error_code: ErrorCode::None,
                                }],
                            }],
                        }
                    };
                    encode_response(&mut out, id, version, &response).unwrap();
                }
                other => panic!("the stand-in does not serve {other:?}"),
            }
            if stream.write_all(&out).is_err() {
                return;
            }
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(count) => buffer.extend_from_slice(&chunk[..count]),
        }
    }
}

/// Two stand-ins; broker 0 leads first and steps down after `step_down_after` appends.
fn stand_in_cluster(step_down_after: usize, crash: bool) -> Arc<Mutex<Cluster>> {
    let listeners: Vec<TcpListener> = (0..2)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let cluster = Arc::new(Mutex::new(Cluster {
        addresses: listeners
            .iter()
            .map(|listener| listener.local_addr().unwrap().to_string())
            .collect(),
        leader: 0,
        leader_epoch: 0,
        step_down_after: Some(step_down_after),
        crash,
        appends: 0,
        log: Log::default(),
        produce_requests: [0; 2],
        fetch_requests: [0; 2],
        coordinator: 1,
        committed: None,
        commits: [0; 2],
    }));
    for (node, listener) in listeners.into_iter().enumerate() {
        let cluster = cluster.clone();
        std::thread::spawn(move || serve(cluster, node as NodeId, listener));
    }
    cluster
}

fn client_of(cluster: &Arc<Mutex<Cluster>>) -> Client {
    let addresses = cluster.lock().unwrap().addresses.clone();
    let config = ClientConfig {
        // Bootstrapped through the broker that will stop leading.
        bootstrap: vec![addresses[0].clone()],
        retry_timeout: Duration::from_secs(10),
        ..ClientConfig::default()
    };
    Client::new(config).unwrap()
}

/// Sends `count` records one batch at a time (each waited for), so the leader change lands
/// between batches; returns each record's acknowledged offset.
fn produce_one_by_one(client: &Client, count: u32) -> Vec<u64> {
    let producer = client
        .producer(ProducerConfig {
            linger: Duration::ZERO,
            delivery_timeout: Duration::from_secs(20),
            ..ProducerConfig::default()
        })
        .unwrap();
    (0..count)
        .map(|number| {
            let value = number.to_string();
            let record = ProducerRecord::new(TOPIC, value.as_bytes()).with_partition(0);
            let delivered = producer.send_blocking(record).unwrap().wait();
            delivered
                .unwrap_or_else(|error| panic!("record {number}: {error}"))
                .offset
                .expect("acks=all gives an offset")
        })
        .collect()
}

fn stored_values(cluster: &Arc<Mutex<Cluster>>) -> Vec<u64> {
    let cluster = cluster.lock().unwrap();
    let mut offsets = Vec::new();
    for stored in &cluster.log.batches {
        for delta in 0..u64::from(stored.record_count) {
            offsets.push(stored.base_offset + delta);
        }
    }
    offsets
}

#[test]
fn the_producer_follows_the_leader_when_the_old_one_refuses() {
    let cluster = stand_in_cluster(5, false);
    let client = client_of(&cluster);
    let offsets = produce_one_by_one(&client, 12);
    assert_eq!(
        offsets,
        (0..12).collect::<Vec<u64>>(),
        "each acked once, in order"
    );
    assert_eq!(stored_values(&cluster), (0..12).collect::<Vec<u64>>());
    let cluster = cluster.lock().unwrap();
    assert_eq!(cluster.leader, 1);
    assert!(
        cluster.produce_requests[1] >= 7,
        "{:?}",
        cluster.produce_requests
    );
}

#[test]
fn a_batch_the_old_leader_stored_but_never_acknowledged_is_not_stored_twice() {
    // After 4 appends broker 0 steps down; the 5th batch reaches it, is stored, and the
    // connection drops without an answer. The retry at broker 1 carries the same sequence.
    let cluster = stand_in_cluster(4, true);
    let client = client_of(&cluster);
    let offsets = produce_one_by_one(&client, 10);
    assert_eq!(
        offsets,
        (0..10).collect::<Vec<u64>>(),
        "each acked once, in order"
    );
    assert_eq!(
        stored_values(&cluster),
        (0..10).collect::<Vec<u64>>(),
        "nothing stored twice"
    );
    assert_eq!(cluster.lock().unwrap().leader, 1);
}

#[test]
fn the_consumer_fetches_from_the_new_leader() {
    let cluster = stand_in_cluster(3, false);
    let client = client_of(&cluster);
    produce_one_by_one(&client, 6);
    let reader = client_of(&cluster);
    let mut consumer = reader.consumer(ConsumerConfig::default()).unwrap();
    consumer
        .assign(TOPIC, Some(&[0]), StartAt::Earliest)
        .wait()
        .unwrap();
    let mut values = Vec::new();
    let mut attempts = 0;
    while values.len() < 6 && attempts < 50 {
        attempts += 1;
        let polled = consumer.poll(Duration::from_millis(200)).unwrap();
        for record in &polled {
            values.push(String::from_utf8(record.value().unwrap().to_vec()).unwrap());
        }
    }
    let expected: Vec<String> = (0..6).map(|number| number.to_string()).collect();
    assert_eq!(values, expected);
    let cluster = cluster.lock().unwrap();
    assert_eq!(
        cluster.fetch_requests[0], 0,
        "nothing fetched from the follower"
    );
    assert!(cluster.fetch_requests[1] > 0);
}

#[test]
fn list_offsets_goes_to_the_leader() {
    let cluster = stand_in_cluster(1, false);
    let client = client_of(&cluster);
    produce_one_by_one(&client, 3);
    let admin = client_of(&cluster).admin();
    let offsets = admin
        .list_offsets(TOPIC, Some(&[0]), OffsetSpec::Latest)
        .wait()
        .unwrap();
    assert_eq!(offsets[0].offset, Some(3));
}

#[test]
fn group_requests_follow_the_coordinator_find_coordinator_names() {
    use spate_client::group::{GroupConfig, GroupConsumer};
    use spate_client::TopicPartition;

    let cluster = stand_in_cluster(usize::MAX, false);
    let client = client_of(&cluster);
    let member = GroupConsumer::new(
        &client,
        ConsumerConfig::default(),
        GroupConfig::new("billing"),
    )
    .unwrap();
    let partition = TopicPartition::new(TOPIC, 0);
    // Broker 1 coordinates first (the client bootstrapped through broker 0); each commit moves
    // the coordinator to the other broker, which the next request learns from NotCoordinator.
    for offset in [5, 9, 12] {
        member
            .commit_offsets(vec![(partition.clone(), offset)])
            .wait()
            .unwrap();
        let committed = member
            .committed(std::slice::from_ref(&partition))
            .wait()
            .unwrap();
        assert_eq!(committed, vec![Some(offset)]);
    }
    let cluster = cluster.lock().unwrap();
    assert_eq!(
        cluster.commits,
        [1, 2],
        "each commit went to the coordinator of the moment"
    );
}
