//! Cross-protocol conversion cost, beside the machine's memcpy rate measured in the same run:
//!
//! - `native_to_kafka_v2`: a stored native batch (payload format 1) converted into the Kafka
//!   RecordBatch v2 a Kafka consumer is served (`batch::kafka::to_kafka_v2`: validation, CRC,
//!   re-framing, a fresh CRC).
//! - `kafka_v2_to_records/<codec>`: a stored Kafka batch read by a native consumer: validation
//!   (both CRCs), decompression (bounded) for a compressed one, record validation, and a walk
//!   over every record's key, value and headers.
//! - `native_records`: the native read path on the same records, for comparison.
//! - `memcpy`: copying the same number of bytes, the floor of any conversion.
//!
//! Throughput counts the uncompressed Kafka batch's bytes for every case of a shape, so the
//! figures compare directly: cost per MB = 1 / throughput. Records are text-like (words from a
//! small vocabulary and decimal numbers), which compresses about as well as JSON logs do.

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kafka_protocol::records::{
    Compression as ReferenceCompression, Record as KafkaRecord, RecordBatchEncoder,
    RecordEncodeOptions, TimestampType,
};
use spate_protocol::batch::header::stamp;
use spate_protocol::batch::kafka::compression::decompress;
use spate_protocol::batch::kafka::{self, to_kafka_v2, Compression, KAFKA_BATCH_HEADER_BYTES};
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, Records};
use spate_protocol::constants::{BATCH_BYTES_MAX, DECOMPRESSED_BATCH_BYTES_MAX};

struct Shape {
    name: &'static str,
    record_count: usize,
    value_bytes: usize,
    header_count: usize,
}

const SHAPES: [Shape; 3] = [
    Shape {
        name: "1000x100B",
        record_count: 1000,
        value_bytes: 100,
        header_count: 0,
    },
    Shape {
        name: "1000x100B+2headers",
        record_count: 1000,
        value_bytes: 100,
        header_count: 2,
    },
    Shape {
        name: "16x64KiB",
        record_count: 16,
        value_bytes: 64 * 1024,
        header_count: 0,
    },
];

const CODECS: [(ReferenceCompression, &str); 5] = [
    (ReferenceCompression::None, "none"),
    (ReferenceCompression::Gzip, "gzip"),
    (ReferenceCompression::Snappy, "snappy"),
    (ReferenceCompression::Lz4, "lz4"),
    (ReferenceCompression::Zstd, "zstd"),
];

/// Text-like bytes: words and numbers from a fixed-seed generator.
fn text(bytes: usize, seed: &mut u64) -> Vec<u8> {
    const WORDS: [&str; 16] = [
        "order",
        "user",
        "status",
        "shipped",
        "amount",
        "currency",
        "EUR",
        "item",
        "sku",
        "warehouse",
        "created",
        "updated",
        "true",
        "false",
        "region",
        "priority",
    ];
    let mut text = Vec::with_capacity(bytes + 16);
    while text.len() < bytes {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let word = WORDS[(*seed >> 60) as usize];
        text.extend_from_slice(word.as_bytes());
        text.push(b'=');
        text.extend_from_slice(((*seed >> 20) % 100_000).to_string().as_bytes());
        text.push(b' ');
    }
    text.truncate(bytes);
    text
}

struct Input {
    key: Vec<u8>,
    value: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    timestamp: i64,
}

fn inputs(shape: &Shape) -> Vec<Input> {
    let mut seed = 7;
    (0..shape.record_count)
        .map(|index| Input {
            key: format!("user-{}", index % 97).into_bytes(),
            value: text(shape.value_bytes, &mut seed),
            headers: (0..shape.header_count)
                .map(|header| (format!("trace-{header}"), text(16, &mut seed)))
                .collect(),
            timestamp: 1_700_000_000_000 + index as i64,
        })
        .collect()
}

/// A stored native batch, stamped.
fn native(inputs: &[Input]) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions {
        initial_capacity_bytes: 1 << 20,
        ..BatchOptions::default()
    });
    for input in inputs {
        builder
            .append(
                Some(&input.key),
                Some(&input.value),
                &input.headers,
                input.timestamp,
            )
            .expect("fits");
    }
    let mut batch = builder.seal().expect("not empty");
    stamp(&mut batch, 1_000_000, 0);
    batch
}

/// A stored Kafka batch compressed with `codec` by the reference encoder, wrapped and stamped.
fn stored_kafka(inputs: &[Input], codec: ReferenceCompression) -> BytesMut {
    let records: Vec<KafkaRecord> = inputs
        .iter()
        .enumerate()
        .map(|(index, input)| KafkaRecord {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: index as i64,
            sequence: index as i32 - 1,
            timestamp: input.timestamp,
            key: Some(Bytes::copy_from_slice(&input.key)),
            value: Some(Bytes::copy_from_slice(&input.value)),
            headers: input
                .headers
                .iter()
                .map(|(key, value)| (key.clone().into(), Some(Bytes::copy_from_slice(value))))
                .collect(),
        })
        .collect();
    let mut kafka = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut kafka,
        &records,
        &RecordEncodeOptions {
            version: 2,
            compression: codec,
        },
    )
    .expect("reference encoder");
    let mut stored = kafka::wrap(&kafka).expect("wraps");
    stamp(&mut stored, 1_000_000, 0);
    stored
}

/// Touches every record's key, value and headers, as a consumer reading them would.
fn walk(records: Records<'_>) -> usize {
    records
        .map(|record| {
            record.key().map_or(0, <[u8]>::len)
                + record.value().map_or(0, <[u8]>::len)
                + record
                    .headers()
                    .map(|(key, value)| key.len() + value.len())
                    .sum::<usize>()
        })
        .sum()
}

/// The native consumer's read of one stored batch of either format.
fn read_records(stored: &[u8]) -> usize {
    let view = BatchView::validate(stored, BATCH_BYTES_MAX).expect("valid");
    match view.compression() {
        Compression::None => walk(view.records().expect("records")),
        codec => {
            let compressed = &kafka::kafka_bytes(view.as_bytes())[KAFKA_BATCH_HEADER_BYTES..];
            let decompressed =
                decompress(codec, compressed, DECOMPRESSED_BATCH_BYTES_MAX).expect("decompresses");
            walk(view.kafka_records(&decompressed).expect("records"))
        }
    }
}

fn conversion_benches(criterion: &mut Criterion) {
    for shape in &SHAPES {
        let inputs = inputs(shape);
        let native = native(&inputs);
        let kafka_bytes = to_kafka_v2(&native).expect("converts").len();
        let mut group = criterion.benchmark_group(format!("kafka_convert/{}", shape.name));
        group.throughput(Throughput::Bytes(kafka_bytes as u64));
        group.sample_size(20);
        group.warm_up_time(std::time::Duration::from_millis(500));
        group.measurement_time(std::time::Duration::from_secs(2));

        let source = vec![0x5Au8; kafka_bytes];
        let mut target = vec![0u8; kafka_bytes];
        group.bench_function("memcpy", |bench| {
            bench.iter(|| {
                target.copy_from_slice(black_box(&source));
                black_box(&target);
            })
        });
        group.bench_function("native_to_kafka_v2", |bench| {
            bench.iter(|| to_kafka_v2(black_box(&native)).expect("converts"))
        });
        group.bench_function("native_records", |bench| {
            bench.iter(|| read_records(black_box(&native)))
        });
        for (codec, name) in CODECS {
            let stored = stored_kafka(&inputs, codec);
            eprintln!(
                "{}: {name} stored batch {} bytes for {kafka_bytes} uncompressed",
                shape.name,
                stored.len()
            );
            group.bench_with_input(
                BenchmarkId::new("kafka_v2_to_records", name),
                &stored,
                |bench, stored| bench.iter(|| read_records(black_box(stored))),
            );
        }
        group.finish();
    }
}

criterion_group!(benches, conversion_benches);
criterion_main!(benches);
