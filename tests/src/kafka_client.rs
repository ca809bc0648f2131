//! A small blocking Kafka client for tests of the Kafka listener: one `std::net::TcpStream`,
//! requests encoded and responses decoded with the `kafka-protocol` crate's generated codecs (the
//! same ones the broker uses, but driven from the client side), and raw bytes for tests of bad
//! input. Obviously correct rather than fast; answers are read in order, one at a time.
//!
//! Record batches are built and read with the same crate's `RecordBatchEncoder` and
//! `RecordBatchDecoder` (every codec), so the broker is checked against an independent
//! implementation of Kafka's batch format.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::{RequestHeader, ResponseHeader};
use spate_kafka_protocol::kafka_protocol::protocol::{
    Decodable, Encodable, HeaderVersion, Request, StrBytes,
};
use spate_kafka_protocol::kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

/// How long a test waits for an answer before it fails.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// One Kafka connection.
pub struct KafkaTestClient {
    stream: TcpStream,
    next_correlation_id: i32,
}

impl KafkaTestClient {
    pub fn connect(address: SocketAddr) -> KafkaTestClient {
        let stream = TcpStream::connect(address).expect("connect to the Kafka listener");
        stream
            .set_read_timeout(Some(ANSWER_TIMEOUT))
            .expect("set a read timeout");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        KafkaTestClient {
            stream,
            next_correlation_id: 1,
        }
    }

    /// The request's frame (size, header, body) with a fresh correlation id, and that id.
    pub fn encode<R: Request>(&mut self, version: i16, request: &R) -> (Bytes, i32) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("spate-tests")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, R::header_version(version))
            .expect("encode the request header");
        request
            .encode(&mut body, version)
            .expect("encode the request");
        let mut frame = BytesMut::with_capacity(4 + body.len());
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        (frame.freeze(), correlation_id)
    }

    /// Sends `request` at `version` and returns its answer.
    pub fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let (frame, correlation_id) = self.encode(version, request);
        self.send_raw(&frame);
        self.receive::<R::Response>(version, correlation_id)
    }

    /// Writes bytes as they are.
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to the broker");
    }

    /// Reads one response frame's bytes after its size; `None` when the broker closed the
    /// connection first.
    pub fn receive_frame(&mut self) -> Option<Bytes> {
        let mut size = [0u8; 4];
        if self.stream.read_exact(&mut size).is_err() {
            return None;
        }
        let size = i32::from_be_bytes(size);
        assert!(size >= 0, "negative response size {size}");
        let mut frame = vec![0u8; size as usize];
        self.stream
            .read_exact(&mut frame)
            .expect("read the response frame");
        Some(Bytes::from(frame))
    }

    /// Reads the answer to `correlation_id` at `version` (the next frame).
    pub fn receive<T: Decodable + HeaderVersion>(
        &mut self,
        version: i16,
        correlation_id: i32,
    ) -> T {
        let mut frame = self
            .receive_frame()
            .expect("the broker closed the connection instead of answering");
        let header = ResponseHeader::decode(&mut frame, T::header_version(version))
            .expect("decode the response header");
        assert_eq!(
            header.correlation_id, correlation_id,
            "answers come in order"
        );
        let response = T::decode(&mut frame, version).expect("decode the response");
        assert!(
            !frame.has_remaining(),
            "{} bytes left after the response",
            frame.remaining()
        );
        response
    }

    /// Whether the broker closed the connection: a read returns end of file (or a reset) within
    /// the answer timeout.
    pub fn is_closed_by_broker(&mut self) -> bool {
        let mut byte = [0u8; 1];
        match self.stream.read(&mut byte) {
            Ok(0) => true,
            Ok(_) => false,
            Err(error) => matches!(
                error.kind(),
                std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
            ),
        }
    }
}

/// One record to put in a Kafka batch: key, value and timestamp (ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTestRecord {
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
    pub timestamp: i64,
}

impl KafkaTestRecord {
    pub fn new(key: &str, value: &str, timestamp: i64) -> KafkaTestRecord {
        KafkaTestRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            timestamp,
        }
    }
}

/// An idempotent producer's fields for a batch: id, epoch, first sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KafkaProducer {
    pub id: i64,
    pub epoch: i16,
    pub sequence: i32,
}

/// One Kafka RecordBatch v2 holding `records` (offsets from 0, as a producer sends them),
/// compressed with `compression`, from `producer` (`None`: not idempotent).
pub fn kafka_batch(
    records: &[KafkaTestRecord],
    compression: Compression,
    producer: Option<KafkaProducer>,
) -> Bytes {
    let records: Vec<Record> = records
        .iter()
        .enumerate()
        .map(|(index, record)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: -1,
            producer_id: producer.map_or(-1, |producer| producer.id),
            producer_epoch: producer.map_or(-1, |producer| producer.epoch),
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            // The encoder starts a new batch where offset minus sequence changes, so a batch
            // without a producer counts its sequences up from -1 (only the first is written).
            sequence: producer.map_or(-1, |producer| producer.sequence) + index as i32,
            timestamp: record.timestamp,
            key: record.key.clone().map(Bytes::from),
            value: record.value.clone().map(Bytes::from),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buffer = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buffer,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression,
        },
    )
    .expect("encode a Kafka batch");
    buffer.freeze()
}

/// Every record of the Kafka batches in a fetch answer's records field, decompressed, with
/// their offsets.
pub fn kafka_records(records: &Bytes) -> Vec<Record> {
    let mut buffer = records.clone();
    RecordBatchDecoder::decode_all(&mut buffer)
        .expect("the fetched records decode as Kafka batches")
        .into_iter()
        .flat_map(|set| set.records)
        .collect()
}
