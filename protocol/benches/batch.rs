//! Record batch throughput: building, validating (header + CRC) and iterating records; and the
//! idempotent producer's in-place stamp (producer id, epoch, sequence) with its CRC update,
//! beside zlib-style `crc32c_combine` doing the same update, measured in the same run.
//!
//! Two shapes: many small records (1000 x 100 B values) and few large ones (16 x 64 KiB).
//! Throughput is reported in batch bytes per second.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate_protocol::batch::header::stamp_producer;
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::constants::BATCH_BYTES_MAX;

struct Shape {
    name: &'static str,
    record_count: usize,
    value_bytes: usize,
}

const SHAPES: [Shape; 2] = [
    Shape {
        name: "1000x100B",
        record_count: 1000,
        value_bytes: 100,
    },
    Shape {
        name: "16x64KiB",
        record_count: 16,
        value_bytes: 64 * 1024,
    },
];

fn build(shape: &Shape, value: &[u8]) -> bytes::BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions {
        initial_capacity_bytes: shape.record_count * (shape.value_bytes + 64),
        ..BatchOptions::default()
    });
    for index in 0..shape.record_count {
        let key = (index as u64).to_le_bytes();
        builder
            .append(
                Some(&key),
                Some(value),
                NO_HEADERS,
                1_700_000_000_000 + index as i64,
            )
            .expect("fits");
    }
    builder.seal().expect("non-empty")
}

fn batch_benches(criterion: &mut Criterion) {
    for shape in &SHAPES {
        let value = vec![0x5Au8; shape.value_bytes];
        let batch = build(shape, &value);
        let mut group = criterion.benchmark_group("batch");
        group.throughput(Throughput::Bytes(batch.len() as u64));

        group.bench_with_input(
            BenchmarkId::new("build", shape.name),
            shape,
            |bench, shape| bench.iter(|| build(shape, black_box(&value))),
        );
        group.bench_with_input(
            BenchmarkId::new("validate_crc", shape.name),
            &batch,
            |bench, batch| {
                bench
                    .iter(|| BatchView::validate(black_box(batch), BATCH_BYTES_MAX).expect("valid"))
            },
        );
        group.bench_with_input(
            BenchmarkId::new("validate_and_iterate", shape.name),
            &batch,
            |bench, batch| {
                bench.iter(|| {
                    let view =
                        BatchView::validate(black_box(batch), BATCH_BYTES_MAX).expect("valid");
                    let mut value_bytes = 0usize;
                    for record in view.records().expect("records") {
                        value_bytes += record.value().map_or(0, <[u8]>::len);
                    }
                    value_bytes
                })
            },
        );
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("valid");
        group.bench_with_input(
            BenchmarkId::new("iterate_only", shape.name),
            &view,
            |bench, view| {
                bench.iter(|| {
                    let mut value_bytes = 0usize;
                    for record in black_box(view).records().expect("records") {
                        value_bytes += record.value().map_or(0, <[u8]>::len);
                    }
                    value_bytes
                })
            },
        );
        let mut stamped = batch.clone();
        let mut sequence = 0i32;
        group.bench_function(BenchmarkId::new("stamp_producer", shape.name), |bench| {
            bench.iter(|| {
                sequence = sequence.wrapping_add(1) & i32::MAX;
                stamp_producer(black_box(&mut stamped), 7, 0, sequence);
            })
        });
        // The same CRC update through the crc32c crate's combine (what stamp_producer used first).
        let payload_bytes = batch.len() - spate_protocol::batch::BATCH_HEADER_BYTES;
        group.bench_function(
            BenchmarkId::new("stamp_crc_update_with_crc32c_combine", shape.name),
            |bench| bench.iter(|| crc32c::crc32c_combine(black_box(0x1234_5678), 0, payload_bytes)),
        );
        group.finish();
    }
}

criterion_group!(benches, batch_benches);
criterion_main!(benches);
