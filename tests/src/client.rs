//! A blocking test client: encodes requests with `spate_protocol::api`, sends them over a
//! `std::net::TcpStream`, and decodes responses. Supports pipelining (send several, then receive
//! in order) and raw bytes (garbage, truncated frames). Panics on any unexpected condition: it
//! is test code, and a panic is the failure report.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use spate_protocol::api::{
    encode_request, Acks, ConfigEntry, CreateTopic, CreateTopicsRequest, FetchPartitionResponse,
    FetchRequest, Message, MetadataRequest, ProducePartition, ProduceRequest, Request,
    TopicPartitions,
};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView};
use spate_protocol::error::ErrorCode;
use spate_protocol::frame::split_response_frame;

/// How long a test waits for any response before it fails instead of hanging.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(60);

/// Bytes asked for per socket read.
const READ_CHUNK_BYTES: usize = 64 * 1024;

/// One connection to the broker.
pub struct TestClient {
    stream: TcpStream,
    buffer: BytesMut,
    next_correlation_id: u32,
}

impl TestClient {
    pub fn connect(address: SocketAddr) -> TestClient {
        let stream = TcpStream::connect(address).expect("connect to the broker");
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .expect("set read timeout");
        stream.set_nodelay(true).expect("set nodelay");
        TestClient {
            stream,
            buffer: BytesMut::new(),
            next_correlation_id: 1,
        }
    }

    /// Sends `request` and waits for its response.
    pub fn call<R: Request>(&mut self, request: &R) -> R::Response {
        let correlation_id = self.send(request);
        self.receive::<R::Response>(correlation_id)
    }

    /// Sends `request` at the newest version both sides speak (this build's newest) and returns
    /// its correlation id.
    pub fn send<R: Request>(&mut self, request: &R) -> u32 {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let mut frame = BytesMut::new();
        encode_request(
            &mut frame,
            correlation_id,
            "spate-tests",
            R::VERSIONS.1,
            request,
        )
        .expect("encode request");
        self.stream.write_all(&frame).expect("send request");
        correlation_id
    }

    /// Receives the next response, which must carry `correlation_id`.
    pub fn receive<M: Message>(&mut self, correlation_id: u32) -> M {
        let (received_id, body) = self
            .receive_frame()
            .expect("connection closed before the response arrived");
        assert_eq!(received_id, correlation_id, "responses out of order");
        M::decode(M::VERSIONS.1, body).expect("decode response")
    }

    /// Writes bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send raw bytes");
    }

    /// The next response frame as (correlation id, body), or `None` if the broker closed the
    /// connection first.
    pub fn receive_frame(&mut self) -> Option<(u32, Bytes)> {
        loop {
            if let Some(frame) =
                split_response_frame(&mut self.buffer).expect("well-formed response frame")
            {
                return Some((frame.correlation_id, frame.body));
            }
            let mut chunk = vec![0u8; READ_CHUNK_BYTES];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(count) => self.buffer.extend_from_slice(&chunk[..count]),
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return None,
                Err(error) => panic!("reading a response failed: {error}"),
            }
        }
    }

    /// True once the broker has closed the connection (reads EOF), after draining any
    /// responses still buffered. Fails the test if it stays open past the timeout.
    pub fn closed_by_broker(&mut self) -> bool {
        let mut chunk = [0u8; 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(error)
                    if error.kind() == std::io::ErrorKind::WouldBlock
                        || error.kind() == std::io::ErrorKind::TimedOut =>
                {
                    return false
                }
                Err(error) => panic!("reading failed: {error}"),
            }
        }
    }
}

/// A record as tests produce and compare it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Vec<u8>,
    pub timestamp: i64,
}

impl TestRecord {
    pub fn new(key: &str, value: &str, timestamp: i64) -> Self {
        TestRecord {
            key: Some(key.as_bytes().to_vec()),
            value: value.as_bytes().to_vec(),
            timestamp,
        }
    }
}

/// Seals `records` into one batch, as a producer would.
pub fn build_batch(records: &[TestRecord]) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for record in records {
        builder
            .append(
                record.key.as_deref(),
                Some(&record.value),
                spate_protocol::batch::NO_HEADERS,
                record.timestamp,
            )
            .expect("record fits the batch");
    }
    builder.seal().expect("seal batch")
}

/// The records (with their offsets) in a buffer of back-to-back batches, as a fetch returns.
pub fn records_of(batches: &[u8]) -> Vec<(u64, TestRecord)> {
    let mut records = Vec::new();
    let mut rest = batches;
    while !rest.is_empty() {
        let length =
            spate_protocol::batch::header::peek_batch_length(rest).expect("batch header") as usize;
        let view =
            BatchView::validate(&rest[..length], usize::MAX).expect("fetched batch is valid");
        for record in view.records().expect("records readable") {
            records.push((
                record.offset(),
                TestRecord {
                    key: record.key().map(<[u8]>::to_vec),
                    value: record.value().map(<[u8]>::to_vec).unwrap_or_default(),
                    timestamp: record.timestamp(),
                },
            ));
        }
        rest = &rest[length..];
    }
    records
}

/// Conveniences for the common requests; each asserts the call itself succeeded at the
/// message level and returns what tests compare.
impl TestClient {
    /// Creates a topic and asserts it was created.
    pub fn create_topic(&mut self, name: &str, partitions: u32, configs: &[(&str, &str)]) {
        let code = self.try_create_topic(name, partitions, configs);
        assert_eq!(code, ErrorCode::None, "creating topic {name}");
    }

    /// Creates a topic and returns the broker's error code for it.
    pub fn try_create_topic(
        &mut self,
        name: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) -> ErrorCode {
        let response = self.call(&CreateTopicsRequest {
            topics: vec![CreateTopic {
                name: name.to_string(),
                partition_count: partitions,
                configs: configs
                    .iter()
                    .map(|(key, value)| ConfigEntry::new(*key, *value))
                    .collect(),
                replication_factor: 0,
            }],
            timeout_ms: 30_000,
        });
        assert_eq!(response.results.len(), 1);
        response.results[0].error_code
    }

    /// Produces `batches` to one partition and returns (error code, base offset).
    pub fn produce(
        &mut self,
        topic: &str,
        partition: u32,
        acks: Acks,
        batches: Vec<Bytes>,
    ) -> (ErrorCode, u64) {
        let response = self.call(&produce_request(topic, partition, acks, batches));
        let answer = &response.topics[0].partitions[0];
        (answer.error_code, answer.base_offset)
    }

    /// One fetch of one partition without waiting; returns the response partition.
    pub fn fetch_once(
        &mut self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: u32,
    ) -> FetchPartitionResponse {
        let response = self.call(&fetch_request(topic, partition, offset, max_bytes, 0, 0));
        assert_eq!(response.error_code, ErrorCode::None);
        response.topics[0].partitions[0].clone()
    }

    /// Every record of a partition from `offset` to its high watermark, fetching repeatedly.
    pub fn fetch_all(
        &mut self,
        topic: &str,
        partition: u32,
        mut offset: u64,
    ) -> Vec<(u64, TestRecord)> {
        let mut records = Vec::new();
        loop {
            let answer = self.fetch_once(topic, partition, offset, 1024 * 1024);
            assert_eq!(
                answer.error_code,
                ErrorCode::None,
                "fetch {topic}/{partition} at {offset}"
            );
            let fetched = records_of(&answer.records.to_bytes());
            if let Some((last, _)) = fetched.last() {
                offset = last + 1;
            }
            let done = fetched.is_empty() || offset >= answer.high_watermark;
            records.extend(fetched);
            if done {
                return records;
            }
        }
    }

    /// The (log start, high watermark) of a partition, from Metadata.
    pub fn offsets_of(&mut self, topic: &str, partition: u32) -> (u64, u64) {
        let response = self.call(&MetadataRequest {
            topics: Some(vec![topic.to_string()]),
        });
        let topic = &response.topics[0];
        assert_eq!(topic.error_code, ErrorCode::None);
        let partition = &topic.partitions[partition as usize];
        (partition.log_start_offset, partition.high_watermark)
    }
}

pub fn produce_request(
    topic: &str,
    partition: u32,
    acks: Acks,
    batches: Vec<Bytes>,
) -> ProduceRequest {
    ProduceRequest {
        acks,
        timeout_ms: 30_000,
        topics: vec![TopicPartitions {
            name: topic.to_string(),
            partitions: vec![ProducePartition { partition, batches }],
        }],
        transactional_id: None,
    }
}

pub fn fetch_request(
    topic: &str,
    partition: u32,
    offset: u64,
    max_bytes: u32,
    max_wait_ms: u32,
    min_bytes: u32,
) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes,
        topics: vec![TopicPartitions {
            name: topic.to_string(),
            partitions: vec![spate_protocol::api::FetchPartition {
                partition,
                fetch_offset: offset,
                partition_max_bytes: max_bytes,
            }],
        }],
        isolation_level: spate_protocol::api::IsolationLevel::ReadUncommitted,
    }
}

/// `count` records `key-N`/`value-N` with timestamps `first_timestamp + N`, numbered from `first`.
pub fn numbered_records(first: usize, count: usize, first_timestamp: i64) -> Vec<TestRecord> {
    (first..first + count)
        .map(|number| {
            TestRecord::new(
                &format!("key-{number}"),
                &format!("value-{number}"),
                first_timestamp + number as i64,
            )
        })
        .collect()
}
