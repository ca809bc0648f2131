//! Storage engine benches on real O_DIRECT files, with the machine's own raw O_DIRECT numbers
//! measured in the same run, next to the engine numbers they compare with. Per batch size
//! (`write/<size>`, throughput in bytes of batches):
//! - `raw_direct_fdatasync_each`: sequential aligned writes of that size to one file through
//!   glommio `DmaFile`, one `fdatasync` after each: the baseline for durable appends;
//! - `append_every_append_durable`: one task, `Durability::EveryAppend`, waiting for durability;
//! - `append_group_commit_1_task_durable`: one task under group commit (1 MiB / 2 ms), waiting
//!   for durability: an acks=all producer with one request in flight. Adaptive group commit
//!   syncs at once; a policy that waited for the interval would need 2 ms per small append;
//! - `append_group_commit_8_tasks_durable`: eight tasks appending concurrently under group
//!   commit (1 MiB / 2 ms), each waiting for durability (adaptive: one sync per generation of
//!   appends that queued while the previous write and sync were in flight);
//! - `raw_direct_no_sync`: the same raw writes without any sync: the baseline for
//!   `append_written` (acks=leader: written, no sync waited for).
//!
//! Sizes that are not whole 4 KiB blocks have no raw equivalent (O_DIRECT writes whole blocks).
//! Also `read/sequential_1MiB` (sequential 1 MiB reads of a filled log, tail cache off) and
//! `index/lookup_offset` (in-memory sparse index, 262144 entries).
//!
//! A shared disk's latency drifts by several times within seconds, so criterion's back-to-back
//! groups can still mislead. After the criterion report the bench prints an interleaved
//! comparison (blocks of raw writes and engine appends alternating on one executor) with the
//! engine/raw ratio for durable 1 MiB and 64 KiB appends, durable 1020 KiB and 64 KiB appends
//! under group commit from one task (below the 1 MiB byte interval), and written 1 MiB appends.
//!
//! The bench directory is `$SPATE_BENCH_DIR` or `/var/tmp/spate-storage-bench-<pid>`; it must
//! not be tmpfs (O_DIRECT there is not direct). Run: `cargo bench -p spate-storage --bench storage`
//! (10 samples, 3 s each by default; add `-- --measurement-time 1` for a quicker pass).

use std::cell::Cell;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{criterion_group, Criterion, Throughput};
use glommio::io::OpenOptions;
use glommio::{LocalExecutor, LocalExecutorBuilder, Placement};
use spate_protocol::batch::header::{compute_crc, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::index::{OffsetIndexEntry, SegmentIndex, TimeIndexEntry};
use spate_storage::{
    AppendWait, Clock, DmaFileSystem, Durability, LogConfig, PartitionLog, SystemClock,
};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const SIZES: [usize; 5] = [KIB, 16 * KIB, 64 * KIB, 256 * KIB, MIB];
/// Appends prepared per chunk outside the timed region (each append consumes its buffer).
const PREPARED_BATCHES_MAX: usize = 64;
const GROUP_COMMIT_TASKS: usize = 8;

fn bench_directory() -> PathBuf {
    let directory = std::env::var_os("SPATE_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(format!(
                "/var/tmp/spate-storage-bench-{}",
                std::process::id()
            ))
        });
    std::fs::create_dir_all(&directory).expect("create bench directory");
    if let Some(kind) = spate_storage::medium::memory_file_system(&directory) {
        panic!(
            "{} is {kind}: O_DIRECT would not reach a disk",
            directory.display()
        );
    }
    directory
}

fn template_batch(total_bytes: usize) -> BytesMut {
    let mut bytes = BytesMut::zeroed(total_bytes);
    for (index, byte) in bytes[BATCH_HEADER_BYTES..].iter_mut().enumerate() {
        *byte = (index as u32).wrapping_mul(2_654_435_761).to_le_bytes()[3];
    }
    let mut header = BatchHeader {
        batch_length: total_bytes as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        offset_count: 1,
        record_count: 1,
        first_timestamp: 1_700_000_000_000,
        max_timestamp: 1_700_000_000_000,
        // Not idempotent: every append of the template is a new batch, not a retry.
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        base_sequence: NO_SEQUENCE,
        ..BatchHeader::default()
    };
    header.encode(&mut bytes);
    header.crc = compute_crc(&bytes);
    header.encode(&mut bytes);
    bytes
}

fn log_config(durability: Durability) -> LogConfig {
    LogConfig {
        durability,
        retention_ms: None,
        tail_cache_bytes_max: 8 * MIB,
        ..LogConfig::default()
    }
}

struct Bench {
    executor: LocalExecutor,
    directory: PathBuf,
    file_system: Rc<DmaFileSystem>,
    run_next: Cell<u64>,
}

impl Bench {
    fn new() -> Self {
        let directory = bench_directory();
        let executor = LocalExecutorBuilder::new(Placement::Unbound)
            .io_memory(64 * MIB)
            .make()
            .expect("executor");
        let file_system = executor.run({
            let directory = directory.clone();
            async move {
                DmaFileSystem::for_data_dir(&directory)
                    .await
                    .expect("data directory")
            }
        });
        Self {
            executor,
            directory,
            file_system: Rc::new(file_system),
            run_next: Cell::new(0),
        }
    }

    fn fresh_path(&self, name: &str) -> PathBuf {
        let run = self.run_next.get();
        self.run_next.set(run + 1);
        self.directory.join(format!("{name}-{run}"))
    }

    async fn open(&self, name: &str, config: LogConfig) -> PartitionLog<DmaFileSystem> {
        let clock: Rc<dyn Clock> = Rc::new(SystemClock);
        PartitionLog::open(
            self.file_system.clone(),
            self.fresh_path(name),
            config,
            clock,
        )
        .await
        .expect("open log")
    }
}

/// Times `iterations` appends of `template` from one task, excluding batch preparation.
async fn timed_appends(
    log: &PartitionLog<DmaFileSystem>,
    template: &BytesMut,
    iterations: u64,
    wait: AppendWait,
) -> Duration {
    let mut elapsed = Duration::ZERO;
    let mut left = iterations as usize;
    while left > 0 {
        let chunk = left.min(PREPARED_BATCHES_MAX);
        let prepared: Vec<BytesMut> = (0..chunk).map(|_| template.clone()).collect();
        let start = Instant::now();
        for batch in prepared {
            log.append(batch, wait).await.expect("append");
        }
        elapsed += start.elapsed();
        left -= chunk;
    }
    elapsed
}

/// Times `iterations` durable appends spread over concurrent tasks. Batches are prepared before
/// the clock starts, up to a memory cap; beyond it a task copies the template in the timed loop.
async fn timed_concurrent_appends(
    log: Rc<PartitionLog<DmaFileSystem>>,
    template: &BytesMut,
    iterations: u64,
) -> Duration {
    let iterations = iterations as usize;
    let prepared_max = (256 * MIB / template.len()).max(1);
    let mut tasks = Vec::new();
    let mut prepared = Vec::new();
    for task in 0..GROUP_COMMIT_TASKS {
        let count =
            iterations / GROUP_COMMIT_TASKS + usize::from(task < iterations % GROUP_COMMIT_TASKS);
        let ready = count.min(prepared_max / GROUP_COMMIT_TASKS + 1);
        prepared.push((
            count,
            (0..ready).map(|_| template.clone()).collect::<Vec<_>>(),
        ));
    }
    let start = Instant::now();
    for (count, batches) in prepared {
        let log = log.clone();
        let template = template.clone();
        tasks.push(glommio::spawn_local(async move {
            let mut batches = batches.into_iter();
            for _ in 0..count {
                let batch = batches.next().unwrap_or_else(|| template.clone());
                log.append(batch, AppendWait::Durable)
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await;
    }
    start.elapsed()
}

/// One group per batch size, raw baselines next to the engine runs they compare with, so the
/// drift of a shared disk over the run affects both sides of each ratio alike.
fn writes(criterion: &mut Criterion, bench: &Bench) {
    let group_commit = Durability::GroupCommit {
        interval_bytes: MIB as u64,
        interval_us: 2_000,
    };
    for size in SIZES {
        let mut group = criterion.benchmark_group(format!("write/{}", size_label(size)));
        group.throughput(Throughput::Bytes(size as u64));
        let template = template_batch(size);
        let raw_possible = size % (4 * KIB) == 0;
        if raw_possible {
            group.bench_function("raw_direct_fdatasync_each", |bencher| {
                bencher.iter_custom(|iterations| {
                    bench.executor.run(raw_run(bench, size, iterations, true))
                })
            });
        }
        group.bench_function("append_every_append_durable", |bencher| {
            bencher.iter_custom(|iterations| {
                bench.executor.run(append_run(
                    bench,
                    &template,
                    iterations,
                    Durability::EveryAppend,
                    AppendWait::Durable,
                ))
            })
        });
        group.bench_function("append_group_commit_1_task_durable", |bencher| {
            bencher.iter_custom(|iterations| {
                bench.executor.run(append_run(
                    bench,
                    &template,
                    iterations,
                    group_commit,
                    AppendWait::Durable,
                ))
            })
        });
        group.bench_function("append_group_commit_8_tasks_durable", |bencher| {
            bencher.iter_custom(|iterations| {
                bench.executor.run(async {
                    let log = Rc::new(bench.open("group-commit", log_config(group_commit)).await);
                    let elapsed =
                        timed_concurrent_appends(log.clone(), &template, iterations).await;
                    let log = Rc::try_unwrap(log).ok().expect("tasks finished");
                    log.delete().await.expect("delete");
                    elapsed
                })
            })
        });
        if raw_possible {
            group.bench_function("raw_direct_no_sync", |bencher| {
                bencher.iter_custom(|iterations| {
                    bench.executor.run(raw_run(bench, size, iterations, false))
                })
            });
        }
        group.bench_function("append_written", |bencher| {
            bencher.iter_custom(|iterations| {
                bench.executor.run(append_run(
                    bench,
                    &template,
                    iterations,
                    Durability::EveryAppend,
                    AppendWait::Written,
                ))
            })
        });
        group.finish();
    }
}

async fn append_run(
    bench: &Bench,
    template: &BytesMut,
    iterations: u64,
    durability: Durability,
    wait: AppendWait,
) -> Duration {
    let log = bench.open("append", log_config(durability)).await;
    let elapsed = timed_appends(&log, template, iterations, wait).await;
    log.delete().await.expect("delete");
    elapsed
}

async fn raw_run(bench: &Bench, size: usize, iterations: u64, sync_each: bool) -> Duration {
    let path = bench.fresh_path("raw");
    let elapsed = raw_writes(&path, size, iterations, sync_each).await;
    let _ = std::fs::remove_file(&path);
    elapsed
}

/// Sequential O_DIRECT writes of `size` bytes through glommio, reusing one registered buffer
/// (no copy, no allocation): the best this stack can do.
async fn raw_writes(path: &Path, size: usize, iterations: u64, sync_each: bool) -> Duration {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .dma_open(path)
        .await
        .expect("open raw file");
    let mut buffer = file.alloc_dma_buffer(size);
    buffer.as_bytes_mut().fill(0x5a);
    let buffer = Rc::new(buffer);
    let start = Instant::now();
    for iteration in 0..iterations {
        let written = file
            .write_rc_at(buffer.clone(), iteration * size as u64)
            .await
            .expect("raw write");
        assert_eq!(written, size);
        if sync_each {
            file.fdatasync().await.expect("raw fdatasync");
        }
    }
    let elapsed = start.elapsed();
    file.close().await.expect("close raw file");
    elapsed
}

fn sequential_reads(criterion: &mut Criterion, bench: &Bench) {
    const FILL_BYTES: usize = 128 * MIB;
    const BATCH_BYTES: usize = 64 * KIB;
    const READ_BYTES: usize = MIB;
    let config = LogConfig {
        tail_cache_bytes_max: 0,
        ..log_config(Durability::EveryAppend)
    };
    let log = bench.executor.run(async {
        let log = bench.open("read", config).await;
        let template = template_batch(BATCH_BYTES);
        for _ in 0..FILL_BYTES / BATCH_BYTES {
            log.append(template.clone(), AppendWait::Written)
                .await
                .expect("fill");
        }
        log.sync().await.expect("sync");
        log
    });
    let end = log.high_watermark();
    let mut group = criterion.benchmark_group("read");
    group.throughput(Throughput::Bytes(READ_BYTES as u64));
    group.bench_function("sequential_1MiB", |bencher| {
        bencher.iter_custom(|iterations| {
            bench.executor.run(async {
                let mut offset = 0;
                let start = Instant::now();
                for _ in 0..iterations {
                    let read = log.read(offset, READ_BYTES).await.expect("read");
                    offset += read.batches.len() as u64;
                    if offset >= end {
                        offset = 0;
                    }
                    black_box(read);
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    bench
        .executor
        .run(async { log.delete().await.expect("delete") });
}

fn index_lookups(criterion: &mut Criterion) {
    // A 1 GiB segment indexed every 4 KiB: 262144 entries.
    let mut index = SegmentIndex::new();
    for entry in 1..=262_144u32 {
        index.push(
            OffsetIndexEntry {
                relative_offset: entry * 10,
                position: entry * 4096,
            },
            TimeIndexEntry {
                timestamp_before: i64::from(entry),
                relative_offset: entry * 10,
            },
        );
    }
    let mut key = 0u32;
    criterion.bench_function("index/lookup_offset", |bencher| {
        bencher.iter(|| {
            key = key.wrapping_mul(1_664_525).wrapping_add(1_013_904_223) % 2_621_440;
            black_box(index.lookup_offset(black_box(key)))
        })
    });
}

fn size_label(size: usize) -> String {
    if size >= MIB {
        format!("{}MiB", size / MIB)
    } else {
        format!("{}KiB", size / KIB)
    }
}

fn storage(criterion: &mut Criterion) {
    let bench = Bench::new();
    writes(criterion, &bench);
    sequential_reads(criterion, &bench);
    index_lookups(criterion);
    let _ = std::fs::remove_dir_all(&bench.directory);
}

/// Alternates blocks of raw writes and engine appends of one size on one executor, so slow and
/// fast periods of a shared disk hit both alike; prints per-operation times and the ratio.
fn interleaved_comparison() {
    const ROUNDS: u32 = 30;
    const OPERATIONS_PER_ROUND: u64 = 20;
    let root = bench_directory();
    let directory = root.join("interleaved");
    let report = LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(64 * MIB)
        .spawn(move || async move {
            let file_system = Rc::new(DmaFileSystem::for_data_dir(&directory).await.expect("data directory"));
            let mut report = String::new();
            let group_commit = Durability::GroupCommit {
                interval_bytes: MIB as u64,
                interval_us: 2_000,
            };
            let cases = [
                (MIB, Durability::EveryAppend, AppendWait::Durable, true),
                (64 * KIB, Durability::EveryAppend, AppendWait::Durable, true),
                (MIB - 4 * KIB, group_commit, AppendWait::Durable, true),
                (64 * KIB, group_commit, AppendWait::Durable, true),
                (MIB, Durability::EveryAppend, AppendWait::Written, false),
            ];
            for (case, (size, durability, wait, sync_each)) in cases.into_iter().enumerate() {
                let template = template_batch(size);
                let clock: Rc<dyn Clock> = Rc::new(SystemClock);
                let log = PartitionLog::open(
                    file_system.clone(),
                    directory.join(format!("log-{case}")),
                    log_config(durability),
                    clock,
                )
                .await
                .expect("open log");
                let raw_path = directory.join(format!("raw-{case}"));
                let raw = OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .dma_open(&raw_path)
                    .await
                    .expect("open raw file");
                let mut buffer = raw.alloc_dma_buffer(size);
                buffer.as_bytes_mut().fill(0x5a);
                let buffer = Rc::new(buffer);
                let (mut raw_elapsed, mut engine_elapsed, mut position) = (Duration::ZERO, Duration::ZERO, 0u64);
                for _ in 0..ROUNDS {
                    let start = Instant::now();
                    for _ in 0..OPERATIONS_PER_ROUND {
                        raw.write_rc_at(buffer.clone(), position).await.expect("raw write");
                        position += size as u64;
                        if sync_each {
                            raw.fdatasync().await.expect("raw fdatasync");
                        }
                    }
                    raw_elapsed += start.elapsed();
                    engine_elapsed += timed_appends(&log, &template, OPERATIONS_PER_ROUND, wait).await;
                }
                raw.close().await.expect("close raw file");
                let _ = std::fs::remove_file(&raw_path);
                log.delete().await.expect("delete");
                let operations = ROUNDS * OPERATIONS_PER_ROUND as u32;
                let per_second = |elapsed: Duration| operations as f64 * size as f64 / MIB as f64 / elapsed.as_secs_f64();
                report.push_str(&format!(
                    "  {:>6} {:<28} raw {:>9.3?}/op {:>8.1} MiB/s | engine {:>9.3?}/op {:>8.1} MiB/s | engine/raw {:>4.0}%\n",
                    size_label(size),
                    match (sync_each, durability) {
                        (false, _) => "written (no sync)",
                        (true, Durability::EveryAppend) => "durable (fdatasync each)",
                        (true, Durability::GroupCommit { .. }) => "durable, group commit 1 task",
                    },
                    raw_elapsed / operations,
                    per_second(raw_elapsed),
                    engine_elapsed / operations,
                    per_second(engine_elapsed),
                    100.0 * raw_elapsed.as_secs_f64() / engine_elapsed.as_secs_f64(),
                ));
            }
            let _ = std::fs::remove_dir_all(&directory);
            report
        })
        .expect("executor")
        .join()
        .expect("interleaved comparison");
    let _ = std::fs::remove_dir_all(&root);
    println!(
        "\ninterleaved engine vs raw O_DIRECT ({ROUNDS} rounds x {OPERATIONS_PER_ROUND} operations each, alternating):\n{report}"
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = storage
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    // Only under `cargo bench` (not when `cargo test --all-targets` runs benches once as tests);
    // SPATE_BENCH_INTERLEAVED=0 skips it.
    let benching = std::env::args().any(|argument| argument == "--bench");
    let wanted = std::env::var_os("SPATE_BENCH_INTERLEAVED").is_none_or(|value| value != "0");
    if benching && wanted {
        interleaved_comparison();
    }
}
