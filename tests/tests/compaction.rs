//! End-to-end: compacted topics through the real broker, both protocols. Overwrites and
//! tombstones written by native and Kafka producers into one partition are compacted by the
//! shard's background task (short check interval, 64 KiB segments), across a restart; readers
//! of both protocols then see the last record of every key, each at the offset it was written
//! at. Records without a key are refused in a compacted topic (Kafka: INVALID_RECORD; native:
//! InvalidRequest), compressed Kafka batches included, and stored in any other topic.

use bytes::{Bytes, BytesMut};
use spate_kafka_protocol::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use spate_kafka_protocol::kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use spate_kafka_protocol::kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use spate_kafka_protocol::kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use spate_kafka_protocol::kafka_protocol::messages::produce_request::{
    PartitionProduceData, TopicProduceData,
};
use spate_kafka_protocol::kafka_protocol::messages::produce_response::PartitionProduceResponse;
use spate_kafka_protocol::kafka_protocol::messages::{
    CreateTopicsRequest, FetchRequest, FetchResponse, GroupId, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, ProduceRequest, TopicName,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::records::Compression;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::api::Acks;
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::Compression as NativeCompression;
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::error::ErrorCode;
use spate_tests::kafka_client::{kafka_batch, kafka_records, KafkaTestRecord};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

const PRODUCE_VERSION: i16 = 9;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

fn kafka_create_topic(client: &mut KafkaTestClient, topic: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(text(topic)))
            .with_num_partitions(1)
            .with_replication_factor(-1)
            .with_configs(
                configs
                    .iter()
                    .map(|(key, value)| {
                        CreatableTopicConfig::default()
                            .with_name(text(key))
                            .with_value(Some(text(value)))
                    })
                    .collect(),
            )]);
    let response = client.call(7, &request);
    assert_eq!(response.topics[0].error_code, 0, "{response:?}");
}

fn kafka_produce(
    client: &mut KafkaTestClient,
    topic: &str,
    records: Bytes,
) -> PartitionProduceResponse {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(text(topic)))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let response = client.call(PRODUCE_VERSION, &request);
    response.responses[0].partition_responses[0].clone()
}

/// A Kafka record; `key`/`value` `None` are null.
fn kafka_record(key: Option<&str>, value: Option<&str>) -> KafkaTestRecord {
    KafkaTestRecord {
        key: key.map(|key| key.as_bytes().to_vec()),
        value: value.map(|value| value.as_bytes().to_vec()),
        timestamp: 1_000,
    }
}

/// A native batch; `key`/`value` `None` are null (a `None` value is a tombstone).
fn native_batch(records: &[(Option<&str>, Option<&str>)]) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for (key, value) in records {
        builder
            .append(
                key.map(str::as_bytes),
                value.map(str::as_bytes),
                NO_HEADERS,
                1_000,
            )
            .expect("record fits");
    }
    builder.seal().expect("batch seals")
}

#[test]
fn keyless_records_are_refused_in_a_compacted_topic_by_both_protocols() {
    let broker = Broker::start(BrokerOptions::default());
    let mut native = TestClient::connect(broker.address());
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    native.create_topic("compacted", 1, &[("cleanup.policy", "compact")]);
    kafka_create_topic(&mut kafka, "both", &[("cleanup.policy", "compact,delete")]);
    native.create_topic("plain", 1, &[]);

    for topic in ["compacted", "both"] {
        // Native: one keyless record among keyed ones refuses the batch, and nothing is stored.
        let batch = native_batch(&[(Some("a"), Some("1")), (None, Some("2"))]);
        let (code, _) = native.produce(topic, 0, Acks::All, vec![batch.freeze()]);
        assert_eq!(
            code,
            ErrorCode::InvalidRequest,
            "native keyless into {topic}"
        );

        // Kafka, uncompressed and with every codec: INVALID_RECORD with Kafka's reason.
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let records = [
                kafka_record(Some("k"), Some("v")),
                kafka_record(None, Some("w")),
            ];
            let answer = kafka_produce(&mut kafka, topic, kafka_batch(&records, compression, None));
            assert_eq!(
                answer.error_code,
                ResponseError::InvalidRecord.code(),
                "{compression:?} keyless into {topic}: {answer:?}"
            );
            let message = answer.error_message.map(|message| message.to_string());
            assert!(
                message
                    .as_deref()
                    .is_some_and(|message| message.contains("without a key")),
                "{message:?}"
            );
        }
        assert_eq!(
            native.offsets_of(topic, 0),
            (0, 0),
            "{topic} stored nothing"
        );

        // Keyed records, tombstones among them, are stored by both.
        let batch = native_batch(&[(Some("a"), Some("1")), (Some("a"), None)]);
        let (code, offset) = native.produce(topic, 0, Acks::All, vec![batch.freeze()]);
        assert_eq!((code, offset), (ErrorCode::None, 0));
        let records = [
            kafka_record(Some("k"), Some("v")),
            kafka_record(Some("k"), None),
        ];
        let answer = kafka_produce(
            &mut kafka,
            topic,
            kafka_batch(&records, Compression::Lz4, None),
        );
        assert_eq!(
            (answer.error_code, answer.base_offset),
            (0, 2),
            "{answer:?}"
        );
    }

    // A topic that is not compacted takes keyless records from both.
    let batch = native_batch(&[(None, Some("1"))]);
    assert_eq!(
        native
            .produce("plain", 0, Acks::All, vec![batch.freeze()])
            .0,
        ErrorCode::None
    );
    let records = [kafka_record(None, Some("v"))];
    let answer = kafka_produce(
        &mut kafka,
        "plain",
        kafka_batch(&records, Compression::Gzip, None),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
}

#[test]
fn a_compressed_batch_too_large_to_check_is_refused_in_a_compacted_topic() {
    let broker = Broker::start(BrokerOptions {
        arguments: vec!["--kafka-decompressed-bytes-max".into(), "4096".into()],
        ..BrokerOptions::default()
    });
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    kafka_create_topic(&mut kafka, "compacted", &[("cleanup.policy", "compact")]);
    let value = "x".repeat(1000);
    let records: Vec<KafkaTestRecord> = (0..16)
        .map(|index| kafka_record(Some(&format!("key-{index}")), Some(&value)))
        .collect();
    // About 16 KiB inflated, far less compressed: over the 4 KiB the broker may inflate.
    let answer = kafka_produce(
        &mut kafka,
        "compacted",
        kafka_batch(&records, Compression::Gzip, None),
    );
    assert_eq!(
        answer.error_code,
        ResponseError::InvalidRecord.code(),
        "{answer:?}"
    );
    let message = answer.error_message.map(|message| message.to_string());
    assert!(
        message
            .as_deref()
            .is_some_and(|message| message.contains("4096")),
        "{message:?}"
    );
    // The same records uncompressed are checked in place, whatever their size.
    let answer = kafka_produce(
        &mut kafka,
        "compacted",
        kafka_batch(&records, Compression::None, None),
    );
    assert_eq!(answer.error_code, 0, "{answer:?}");
}

/// One record as the log holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    offset: u64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

/// Every record of partition 0 of `topic` through the native protocol, from the log start to
/// the high watermark, with both.
fn native_read_all(client: &mut TestClient, topic: &str) -> (Vec<Stored>, u64, u64) {
    let (log_start, high_watermark) = client.offsets_of(topic, 0);
    let mut records = Vec::new();
    let mut next_offset = log_start;
    while next_offset < high_watermark {
        let answer = client.fetch_once(topic, 0, next_offset, 64 << 20);
        assert_eq!(answer.error_code, ErrorCode::None);
        let bytes = answer.records.to_bytes();
        assert!(
            !bytes.is_empty(),
            "a fetch at {next_offset} below {high_watermark} is empty"
        );
        let mut rest: &[u8] = &bytes;
        while !rest.is_empty() {
            let length =
                spate_protocol::batch::header::peek_batch_length(rest).expect("header") as usize;
            let view = BatchView::validate(&rest[..length], usize::MAX).expect("a valid batch");
            // Batches follow each other without gaps, emptied ones included.
            assert_eq!(
                view.base_offset(),
                next_offset,
                "offsets are contiguous across batches"
            );
            next_offset = view.next_offset();
            // A compressed Kafka batch is read as a native consumer reads it: inflated first.
            let inflated = match view.compression() {
                NativeCompression::None => None,
                codec => {
                    let kafka = spate_protocol::batch::kafka::kafka_bytes(view.as_bytes());
                    let compressed =
                        &kafka[spate_protocol::batch::kafka::KAFKA_BATCH_HEADER_BYTES..];
                    Some(decompress(codec, compressed, 64 << 20).expect("inflates"))
                }
            };
            let batch_records = match &inflated {
                Some(inflated) => view.kafka_records(inflated),
                None => view.records(),
            };
            for record in batch_records.expect("readable records") {
                records.push(Stored {
                    offset: record.offset(),
                    key: record.key().map(<[u8]>::to_vec),
                    value: record.value().map(<[u8]>::to_vec),
                });
            }
            rest = &rest[length..];
        }
    }
    assert_eq!(next_offset, high_watermark);
    (records, log_start, high_watermark)
}

/// Every record of partition 0 of `topic` through the Kafka protocol (Fetch v12), from
/// `offset` to `high_watermark`. Each fetch goes on after the last Kafka batch it got (read
/// from the batch headers: an emptied batch holds no record to go on from).
fn kafka_read_all(
    client: &mut KafkaTestClient,
    topic: &str,
    mut offset: u64,
    high_watermark: u64,
) -> Vec<Stored> {
    let mut stored = Vec::new();
    while offset < high_watermark {
        let request = FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(0)
            .with_max_bytes(64 << 20)
            .with_topics(vec![FetchTopic::default()
                .with_topic(TopicName(text(topic)))
                .with_partitions(vec![FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(offset as i64)
                    .with_partition_max_bytes(64 << 20)])]);
        let response: FetchResponse = client.call(12, &request);
        let partition = &response.responses[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{partition:?}");
        let bytes = partition.records.clone().unwrap_or_default();
        assert!(
            !bytes.is_empty(),
            "a Kafka fetch at {offset} below {high_watermark} is empty"
        );
        // Kafka batch header: baseOffset i64 at 0, batchLength i32 at 8, lastOffsetDelta i32
        // at 23, all big-endian.
        let mut rest: &[u8] = &bytes;
        while rest.len() >= 27 {
            let base = i64::from_be_bytes(rest[0..8].try_into().unwrap()) as u64;
            let length = i32::from_be_bytes(rest[8..12].try_into().unwrap()) as usize + 12;
            let last_delta = i32::from_be_bytes(rest[23..27].try_into().unwrap()) as u64;
            assert_eq!(base, offset, "Kafka batches are contiguous too");
            offset = base + last_delta + 1;
            rest = &rest[length.min(rest.len())..];
        }
        stored.extend(kafka_records(&bytes).into_iter().map(|record| Stored {
            offset: record.offset as u64,
            key: record.key.map(|key| key.to_vec()),
            value: record.value.map(|value| value.to_vec()),
        }));
    }
    stored
}

/// What was written: every record by offset, in order.
#[derive(Default)]
struct Model {
    written: Vec<Stored>,
}

impl Model {
    fn add(&mut self, base_offset: u64, records: &[(Option<&str>, Option<&str>)]) {
        assert_eq!(
            base_offset,
            self.written.len() as u64,
            "offsets follow each other"
        );
        for (index, (key, value)) in records.iter().enumerate() {
            self.written.push(Stored {
                offset: base_offset + index as u64,
                key: key.map(|key| key.as_bytes().to_vec()),
                value: value.map(|value| value.as_bytes().to_vec()),
            });
        }
    }

    /// The offset of the last record of each key.
    fn last_offsets(&self) -> std::collections::BTreeMap<Vec<u8>, u64> {
        self.written
            .iter()
            .map(|record| (record.key.clone().expect("keyed"), record.offset))
            .collect()
    }
}

const KEYS: usize = 20;

/// One round of both protocols: every key once from each, `tombstoned` keys deleted by the
/// Kafka batch. Values are about 1 KiB so that 64 KiB segments roll every few rounds.
fn write_round(
    round: usize,
    native: &mut TestClient,
    kafka: &mut KafkaTestClient,
    topic: &str,
    tombstoned: std::ops::Range<usize>,
    model: &mut Model,
) {
    let padding = "x".repeat(1000);
    let keys: Vec<String> = (0..KEYS).map(|key| format!("key-{key:02}")).collect();
    let native_values: Vec<String> = (0..KEYS)
        .map(|key| format!("native-{round}-{key}-{padding}"))
        .collect();
    let records: Vec<(Option<&str>, Option<&str>)> = keys
        .iter()
        .zip(&native_values)
        .map(|(key, value)| (Some(key.as_str()), Some(value.as_str())))
        .collect();
    let (code, base_offset) =
        native.produce(topic, 0, Acks::All, vec![native_batch(&records).freeze()]);
    assert_eq!(code, ErrorCode::None, "native round {round}");
    model.add(base_offset, &records);

    let kafka_values: Vec<String> = (0..KEYS)
        .map(|key| format!("kafka-{round}-{key}-{padding}"))
        .collect();
    let records: Vec<(Option<&str>, Option<&str>)> = keys
        .iter()
        .zip(&kafka_values)
        .enumerate()
        .map(|(index, (key, value))| {
            let value = (!tombstoned.contains(&index)).then_some(value.as_str());
            (Some(key.as_str()), value)
        })
        .collect();
    let kafka_records: Vec<KafkaTestRecord> = records
        .iter()
        .map(|(key, value)| kafka_record(*key, *value))
        .collect();
    // Every other round compressed: a compacted Kafka batch is recompressed with its codec.
    let codec = if round % 2 == 0 {
        Compression::None
    } else {
        Compression::Zstd
    };
    let answer = kafka_produce(kafka, topic, kafka_batch(&kafka_records, codec, None));
    assert_eq!(answer.error_code, 0, "kafka round {round}: {answer:?}");
    model.add(answer.base_offset as u64, &records);
}

/// Checks what a reader sees of a compacted log against what was written: every record read is
/// the one written at its offset (offsets, keys and values kept), in order; the last record of
/// every key is there; and records were removed.
fn check_compacted(read: &[Stored], model: &Model, reader: &str) {
    for pair in read.windows(2) {
        assert!(pair[0].offset < pair[1].offset, "{reader}: offsets rise");
    }
    for record in read {
        let written = &model.written[record.offset as usize];
        assert_eq!(
            record, written,
            "{reader}: the record at {} is the one written there",
            record.offset
        );
    }
    let read_offsets: std::collections::BTreeSet<u64> =
        read.iter().map(|record| record.offset).collect();
    for (key, offset) in model.last_offsets() {
        assert!(
            read_offsets.contains(&offset),
            "{reader}: the last record of {} (offset {offset}) is there",
            String::from_utf8_lossy(&key)
        );
    }
    assert!(
        read.len() < model.written.len() / 2,
        "{reader}: compaction removed records ({} of {} left)",
        read.len(),
        model.written.len()
    );
}

/// Reads the partition until passes (each 100 ms) have removed more than half of what was
/// written, checking every read on the way; panics after a minute.
fn read_once_compacted(client: &mut TestClient, topic: &str, model: &Model) -> Vec<Stored> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (read, _, _) = native_read_all(client, topic);
        if read.len() < model.written.len() / 2 {
            return read;
        }
        for record in &read {
            assert_eq!(
                record, &model.written[record.offset as usize],
                "mid-compaction"
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not compacted within a minute: {} of {} records left",
            read.len(),
            model.written.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Reads the whole partition with both protocols and checks that they read the same records.
/// The compactor keeps running (a pass every 100 ms) while the readers read, so a pass between
/// the two reads may remove more overwritten records: equality is only asked of a Kafka read
/// framed by two native reads that agree (no pass ended in between). Every read, stable or not,
/// must hold only records written at their offsets and the last record of every key.
fn read_alike_by_both_protocols(
    native: &mut TestClient,
    kafka: &mut KafkaTestClient,
    topic: &str,
    model: &Model,
) -> Vec<Stored> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (before, log_start, high_watermark) = native_read_all(native, topic);
        assert_eq!(high_watermark, model.written.len() as u64);
        check_compacted(&before, model, "native reader");
        let kafka_read = kafka_read_all(kafka, topic, log_start, high_watermark);
        check_compacted(&kafka_read, model, "Kafka reader");
        let (after, _, _) = native_read_all(native, topic);
        if before == after {
            assert_eq!(before, kafka_read, "both protocols read the same records");
            return before;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "compaction did not settle within a minute"
        );
    }
}

fn compacting_broker() -> Broker {
    Broker::start(BrokerOptions {
        shards: 1,
        arguments: vec!["--compaction-check-interval-ms".into(), "100".into()],
        ..BrokerOptions::default()
    })
}

#[test]
fn a_compacted_topic_keeps_the_last_value_of_every_key_written_by_both_protocols_across_a_restart()
{
    let mut broker = compacting_broker();
    let topic = "compacted";
    let configs = [
        ("cleanup.policy", "compact"),
        ("segment.bytes", "65536"),
        ("min.cleanable.dirty.ratio", "0.01"),
    ];
    let mut model = Model::default();
    {
        let mut native = TestClient::connect(broker.address());
        let mut kafka = KafkaTestClient::connect(broker.kafka_address());
        native.create_topic(topic, 1, &configs);
        for round in 0..10 {
            write_round(round, &mut native, &mut kafka, topic, 0..0, &mut model);
        }
        let read = read_once_compacted(&mut native, topic, &model);
        check_compacted(&read, &model, "native reader before the restart");
    }
    // Mid-way: a clean stop with compaction running or due, then more overwrites and deletes.
    assert!(broker.terminate().success());
    broker.restart();
    let mut native = TestClient::connect(broker.address());
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    for round in 10..20 {
        write_round(round, &mut native, &mut kafka, topic, 15..KEYS, &mut model);
    }
    read_once_compacted(&mut native, topic, &model);
    let read = read_alike_by_both_protocols(&mut native, &mut kafka, topic, &model);
    // Deleted keys end in their tombstone.
    for record in read.iter().rev().take(KEYS * 2) {
        let key = String::from_utf8(record.key.clone().expect("keyed")).expect("utf-8");
        let index: usize = key["key-".len()..].parse().expect("a key number");
        if index >= 15 && model.last_offsets()[record.key.as_ref().unwrap()] == record.offset {
            assert_eq!(record.value, None, "{key} ends in its tombstone");
        }
    }
}

#[test]
fn the_offsets_topic_is_compacted_by_the_storage_compactor_and_commits_survive_a_restart() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 1,
        arguments: [
            "--compaction-check-interval-ms",
            "100",
            "--offsets-topic-partitions",
            "1",
            "--offsets-topic-segment-bytes",
            "65536",
        ]
        .map(String::from)
        .to_vec(),
        ..BrokerOptions::default()
    });
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    kafka_create_topic(&mut kafka, "orders", &[]);
    let metadata = "m".repeat(500);
    let commits = 600;
    for commit in 0..commits {
        // Generation -1, no member: a commit of a consumer outside any group, as Kafka takes it.
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(text("group")))
            .with_generation_id_or_member_epoch(-1)
            .with_member_id(text(""))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(TopicName(text("orders")))
                .with_partitions(vec![OffsetCommitRequestPartition::default()
                    .with_partition_index(0)
                    .with_committed_offset(commit)
                    .with_committed_metadata(Some(text(&metadata)))])]);
        let response: OffsetCommitResponse = kafka.call(8, &request);
        assert_eq!(
            response.topics[0].partitions[0].error_code, 0,
            "{response:?}"
        );
    }
    // Passes run every 100 ms: wait until they have removed most of the commits' records.
    let mut native = TestClient::connect(broker.address());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let (records, _, high_watermark) = native_read_all(&mut native, "__consumer_offsets");
        if records.len() < commits as usize / 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not compacted within a minute: {} of {high_watermark} records left",
            records.len()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(broker.terminate().success());
    broker.restart();
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(text("group")))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(text("orders")))
            .with_partition_indexes(vec![0])]));
    let response: OffsetFetchResponse = kafka.call(5, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(
        (partition.error_code, partition.committed_offset),
        (0, commits - 1),
        "the last commit is replayed from the compacted log"
    );
}
