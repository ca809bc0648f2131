//! Processing cost per record inside one task, with no broker: a stateless map-filter and a
//! windowed count (tumbling one-second windows over 1,000 keys), fed pre-serialized records as
//! the runtime would hand them over. The number is the library's own cost per core, the part of
//! issue #19's "records per second per core" that no network or broker is in.
//!
//! `cargo bench -p spate-streams --bench task`

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spate_streams::{
    Consumed, DeserializationPolicy, Grouped, InputRecord, Materialized, Produced, StreamsBuilder,
    Task, TimeWindows, Topology,
};

/// Records per measured iteration.
const RECORDS: usize = 100_000;
const KEYS: usize = 1_000;

fn input() -> Vec<InputRecord> {
    (0..RECORDS)
        .map(|index| InputRecord {
            key: Some(format!("key-{}", index % KEYS).into_bytes()),
            value: Some(format!("value {index:08}").into_bytes()),
            // Ten records per millisecond, in order: windows close as the stream moves on.
            timestamp_ms: (index / 10) as i64,
            offset: index as i64,
        })
        .collect()
}

fn map_filter() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .map_values(|value: String| value.to_uppercase())
        .filter(|_, value| !value.ends_with('7'))
        .to("out", Produced::new());
    builder.build()
}

fn windowed_count() -> Topology {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(1_000))
        .count(Materialized::new())
        .to_stream()
        .map_values(|count: Option<u64>| count.unwrap_or_default())
        .filter(|_, count| *count % 100 == 0)
        .to(
            "out",
            Produced::with(
                Arc::new(spate_streams::serdes::WindowedSerde(Arc::new(
                    spate_streams::serdes::Utf8Serde,
                ))),
                Arc::new(spate_streams::serdes::FixedWidthSerde),
            ),
        );
    builder.build()
}

fn run(topology: &Arc<Topology>, records: &[InputRecord]) -> usize {
    let mut task = Task::new(
        Arc::clone(topology),
        "bench",
        0,
        0,
        Arc::new(|_: &str| 8),
        DeserializationPolicy::Fail,
    );
    let mut produced = 0;
    for record in records {
        task.process("in", record).expect("processing");
        produced += task.take_output().len();
    }
    produced
}

fn task(criterion: &mut Criterion) {
    let records = input();
    let mut group = criterion.benchmark_group("task");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(10);
    for (name, topology) in [
        ("map_filter", map_filter()),
        ("windowed_count", windowed_count()),
    ] {
        let topology = Arc::new(topology);
        group.bench_function(name, |bench| {
            bench.iter(|| black_box(run(&topology, &records)))
        });
    }
    group.finish();
}

criterion_group!(benches, task);
criterion_main!(benches);
