//! Frame and message throughput: frame encode and incremental decode, and produce request
//! decoding (which slices batches out of the body without copying them).

use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate_protocol::api::{
    encode_request, encode_response_chunks, Acks, FetchPartitionResponse, FetchResponse, Message,
    ProducePartition, ProduceRequest, RecordSet, TopicPartitions,
};
use spate_protocol::batch::{BatchBuilder, BatchOptions, NO_HEADERS};
use spate_protocol::frame::{decode_request_frame, split_request_frame};
use spate_protocol::ErrorCode;

fn sealed_batch(record_count: usize, value_bytes: usize) -> Bytes {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    let value = vec![0x5Au8; value_bytes];
    for index in 0..record_count {
        builder
            .append(
                Some(&(index as u64).to_le_bytes()),
                Some(&value),
                NO_HEADERS,
                0,
            )
            .expect("fits");
    }
    builder.seal().expect("non-empty").freeze()
}

/// A produce request for `partition_count` partitions of one topic, one batch each.
fn produce_request(partition_count: u32, batch: &Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: Acks::All,
        timeout_ms: 30_000,
        topics: vec![TopicPartitions {
            name: "bench-topic".to_owned(),
            partitions: (0..partition_count)
                .map(|partition| ProducePartition {
                    partition,
                    batches: vec![batch.clone()],
                })
                .collect(),
        }],
        transactional_id: None,
    }
}

fn frame_benches(criterion: &mut Criterion) {
    let batch = sealed_batch(100, 100);
    for partition_count in [1u32, 16] {
        let request = produce_request(partition_count, &batch);
        let mut frame = BytesMut::new();
        encode_request(&mut frame, 1, "bench-client", 0, &request).expect("encodes");
        let frame = frame.freeze();
        let mut group = criterion.benchmark_group("frame");
        group.throughput(Throughput::Bytes(frame.len() as u64));

        group.bench_with_input(
            BenchmarkId::new("produce_request_encode", partition_count),
            &request,
            |bench, request| {
                let mut target = BytesMut::with_capacity(frame.len());
                bench.iter(|| {
                    target.clear();
                    encode_request(&mut target, 1, "bench-client", 0, black_box(request))
                        .expect("encodes");
                })
            },
        );
        group.bench_with_input(
            BenchmarkId::new("request_frame_decode", partition_count),
            &frame,
            |bench, frame| bench.iter(|| decode_request_frame(black_box(frame)).expect("valid")),
        );
        group.bench_with_input(
            BenchmarkId::new("produce_request_split_and_decode", partition_count),
            &frame,
            |bench, frame| {
                bench.iter(|| {
                    let mut buffer = BytesMut::from(&frame[..]);
                    let request_frame = split_request_frame(&mut buffer)
                        .expect("valid")
                        .expect("whole");
                    ProduceRequest::decode(request_frame.api_version, request_frame.body)
                        .expect("decodes")
                })
            },
        );
        let body = frame.slice(
            frame.len() - {
                let (frame_ref, _) = decode_request_frame(&frame).unwrap().unwrap();
                frame_ref.body.len()
            }..,
        );
        group.bench_with_input(
            BenchmarkId::new("produce_request_body_decode", partition_count),
            &body,
            |bench, body| {
                bench.iter(|| ProduceRequest::decode(0, black_box(body.clone())).expect("decodes"))
            },
        );
        group.finish();
    }

    let stored = sealed_batch(1000, 100);
    let response = FetchResponse {
        error_code: ErrorCode::None,
        topics: vec![TopicPartitions {
            name: "bench-topic".to_owned(),
            partitions: (0..16)
                .map(|partition| FetchPartitionResponse {
                    partition,
                    records: RecordSet::from_chunks(vec![stored.clone()]),
                    ..FetchPartitionResponse::default()
                })
                .collect(),
        }],
    };
    let mut group = criterion.benchmark_group("frame");
    group.throughput(Throughput::Bytes(16 * stored.len() as u64));
    group.bench_function("fetch_response_encode_chunks/16x145KB", |bench| {
        bench.iter(|| encode_response_chunks(1, 0, black_box(&response)).expect("encodes"))
    });
    group.finish();
}

criterion_group!(benches, frame_benches);
criterion_main!(benches);
