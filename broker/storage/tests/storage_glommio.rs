//! The storage engine on real files: glommio `DmaFile` (O_DIRECT over io_uring) in a directory
//! under Cargo's target dir (not tmpfs, where O_DIRECT is not direct). Each test runs on its
//! own executor thread, so glommio's per-thread IOPOLL probe starts fresh every time.

mod storage_support;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use glommio::{LocalExecutorBuilder, Placement};
use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{
    AppendWait, Clock, DmaFileSystem, Durability, FileSystem, LogConfig, OpenMode, PartitionLog,
    StorageError, StorageFile, SystemClock, WriteBufferStats,
};
use storage_support::{
    batch, header_of, id_of, read_all, same_batch, simple_batch, TEST_BATCH_BYTES_MIN,
};

/// A fresh directory for one test, removed when dropped.
struct TestDirectory(PathBuf);

impl TestDirectory {
    fn new(name: &str) -> Self {
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("storage-glommio")
            .join(format!("{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create test directory");
        Self(path)
    }
}

impl Drop for TestDirectory {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `test` on a new glommio executor thread and returns its result.
fn on_executor<T: Send + 'static, F: std::future::Future<Output = T> + 'static>(
    test: impl FnOnce() -> F + Send + 'static,
) -> T {
    LocalExecutorBuilder::new(Placement::Unbound)
        .io_memory(32 << 20)
        .spawn(test)
        .expect("start executor")
        .join()
        .expect("executor thread")
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 256 * 1024,
        batch_bytes_max: 256 * 1024,
        write_queue_bytes_max: 8 << 20,
        write_buffer_bytes: 1 << 20,
        durability: Durability::EveryAppend,
        retention_ms: None,
        ..LogConfig::default()
    }
}

fn clock() -> Rc<dyn Clock> {
    Rc::new(SystemClock)
}

async fn open(data: &Path, config: LogConfig) -> Result<PartitionLog<DmaFileSystem>, StorageError> {
    let file_system = Rc::new(DmaFileSystem::for_data_dir(data).await?);
    PartitionLog::open(file_system, data.join("topic-0"), config, clock()).await
}

#[test]
fn direct_io_appends_read_back_identical_across_segments_and_a_reopen() {
    let directory = TestDirectory::new("round-trip");
    let data = directory.0.clone();
    on_executor(move || async move {
        let log = open(&data, config()).await.expect("open");
        let originals: Vec<_> = (0..150u64)
            .map(|id| {
                batch(
                    id,
                    1 + id as u32 % 4,
                    TEST_BATCH_BYTES_MIN + (id as usize * 997) % 9000,
                    1000 + id as i64,
                    1000 + id as i64,
                )
            })
            .collect();
        for original in &originals {
            log.append(original.clone(), AppendWait::Durable)
                .await
                .expect("append");
        }
        assert!(
            log.segment_count() > 1,
            "150 batches of up to 9 KB roll 256 KiB segments"
        );
        let stored = read_all(&log, 0, 64 * 1024).await.expect("read");
        assert_eq!(stored.len(), originals.len());
        for (stored, original) in stored.iter().zip(&originals) {
            assert!(same_batch(stored, original));
        }
        let next_offset = log.next_offset();
        log.close().await.expect("close");

        let log = open(&data, config()).await.expect("reopen");
        assert_eq!(log.next_offset(), next_offset);
        let stored = read_all(&log, 0, 64 * 1024)
            .await
            .expect("read after reopen");
        assert_eq!(
            stored.iter().map(|bytes| id_of(bytes)).collect::<Vec<_>>(),
            (0..150).collect::<Vec<_>>()
        );
        for (stored, original) in stored.iter().zip(&originals) {
            assert!(same_batch(stored, original));
        }
        log.append(simple_batch(1000, 500, 5000), AppendWait::Durable)
            .await
            .expect("append after reopen");
        log.close().await.expect("close");
    });
}

#[test]
fn large_reads_split_into_parts_in_flight_return_exactly_the_file_bytes() {
    // A read of several READ_PART_BYTES_MIN is served by parts in flight together; what comes
    // back must be the file's bytes, whatever the alignment. Reads end at or before the end of
    // the file, as the log's do (it never reads past a segment's readable end; glommio's own
    // read of a range crossing the end returned a few bytes more than the file holds here).
    let directory = TestDirectory::new("split-reads");
    let data = directory.0.clone();
    let file_bytes: Vec<u8> = (0..3 * 1024 * 1024 + 123)
        .map(|index: u32| (index.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let path = data.join("pattern");
    std::fs::write(&path, &file_bytes).expect("write pattern");
    let expected = file_bytes.clone();
    on_executor(move || async move {
        let file_system = DmaFileSystem::for_data_dir(&data)
            .await
            .expect("file system");
        let file = file_system
            .open_file(&path, OpenMode::Existing)
            .await
            .expect("open");
        for (position, length) in [
            (0u64, 1024 * 1024),
            (5_000, 2_500_000),
            (4096, 3 * 1024 * 1024 - 4096),
            (3 * 1024 * 1024 - 600_000, 600_123),
            (77, 600_000),
        ] {
            let read = file.read_at(position, length).await.expect("read");
            let start = position as usize;
            let end = start + length;
            assert!(end <= expected.len());
            assert_eq!(read.len(), length, "read of {length} at {position}");
            assert!(
                read[..] == expected[start..end],
                "read of {length} at {position} differs from the file"
            );
        }
    });
}

#[test]
fn catch_up_reads_with_reads_started_ahead_return_every_batch_on_real_files() {
    // Fetches large enough that each starts the disk read of the next (parked on the ring and
    // taken by the next fetch) over segments on O_DIRECT files, after a reopen so that nothing
    // is in the tail cache.
    let directory = TestDirectory::new("read-ahead");
    let data = directory.0.clone();
    on_executor(move || async move {
        let config = LogConfig {
            segment_bytes_max: 4 << 20,
            tail_cache_bytes_max: 0,
            ..config()
        };
        let log = open(&data, config.clone()).await.expect("open");
        let originals: Vec<_> = (0..900u64)
            .map(|id| simple_batch(id, 3000 + (id as usize * 131) % 5000, 1000 + id as i64))
            .collect();
        for original in &originals {
            log.append(original.clone(), AppendWait::Durable)
                .await
                .expect("append");
        }
        log.close().await.expect("close");
        let log = open(&data, config).await.expect("reopen");
        let first = log.read(0, 400 * 1024).await.expect("first fetch");
        assert!(!first.batches.is_empty());
        assert!(
            log.parked_read_ahead().is_some(),
            "the next read is started"
        );
        for from in [0, 517] {
            let stored = read_all(&log, from, 400 * 1024).await.expect("read");
            assert_eq!(stored.len(), originals.len() - from as usize);
            for (stored, original) in stored.iter().zip(&originals[from as usize..]) {
                assert!(same_batch(stored, original));
            }
        }
        log.close().await.expect("close");
    });
}

#[test]
fn a_fresh_executor_thread_reads_a_new_partition_after_the_iopoll_probe() {
    // The first DmaFile this thread opens is the probe file, not the new (empty) segment: with
    // the probe skipped, glommio would wrongly enable IOPOLL on devices without poll queues and
    // the reads below would fail with EOPNOTSUPP.
    let directory = TestDirectory::new("probe");
    let data = directory.0.clone();
    on_executor(move || async move {
        let log = open(&data, config()).await.expect("open");
        log.append(simple_batch(1, 3000, 10), AppendWait::Durable)
            .await
            .expect("append");
        log.close().await.expect("close");
        let log = open(
            &data,
            LogConfig {
                tail_cache_bytes_max: 0,
                ..config()
            },
        )
        .await
        .expect("reopen");
        let read = log.read(0, 10_000).await.expect("direct read");
        assert_eq!(read.batches.len(), 1);
        assert_eq!(id_of(&read.batches[0]), 1);
    });
    assert!(spate_storage::dma::iopoll_probe_path(&directory.0).exists());
}

#[test]
fn shards_preparing_one_data_directory_at_once_never_expose_a_short_probe_file() {
    // Every shard of a broker prepares the same data directory at start. Each round removes the
    // probe and lets eight threads race to write and open it while an observer watches the file:
    // once it exists it must always be whole (a truncating write would let a peer open it short,
    // and glommio would then probe an empty file), and no staging file may be left behind.
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let directory = TestDirectory::new("probe-race");
    let probe = spate_storage::dma::iopoll_probe_path(&directory.0);
    let mut short_sightings = Vec::new();
    for _round in 0..20 {
        let _ = std::fs::remove_file(&probe);
        let racing = Arc::new(AtomicBool::new(true));
        let observer = {
            let probe = probe.clone();
            let racing = racing.clone();
            std::thread::spawn(move || {
                let mut short = Vec::new();
                while racing.load(Ordering::Relaxed) {
                    if let Ok(metadata) = std::fs::metadata(&probe) {
                        if metadata.len() != 4096 {
                            short.push(metadata.len());
                        }
                    }
                }
                short
            })
        };
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let data = directory.0.clone();
                std::thread::spawn(move || {
                    on_executor(move || async move {
                        DmaFileSystem::for_data_dir(&data)
                            .await
                            .expect("prepare data directory");
                    })
                })
            })
            .collect();
        for racer in racers {
            racer.join().expect("racer");
        }
        racing.store(false, Ordering::Relaxed);
        short_sightings.extend(observer.join().expect("observer"));
    }
    assert!(
        short_sightings.is_empty(),
        "the probe file was seen short: {short_sightings:?}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&directory.0)
        .expect("list")
        .map(|entry| entry.expect("entry").file_name())
        .filter(|name| name.to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "staging files left: {leftovers:?}");
}

#[test]
fn recovery_truncates_torn_tail_batch_on_disk() {
    let directory = TestDirectory::new("torn-tail");
    let data = directory.0.clone();
    let log_path = data
        .join("topic-0")
        .join(segment_file_name(0, SegmentFileKind::Log));
    let prepared = data.clone();
    on_executor(move || async move {
        let log = open(&prepared, config()).await.expect("open");
        for id in 0..9 {
            log.append(simple_batch(id, 1000, 10), AppendWait::Durable)
                .await
                .expect("append");
        }
        // The last batch is written but never acknowledged as durable, and the process dies
        // (no close): a torn tail is only possible past what was promised durable. (A clean
        // close records offset 10 in the recovery point, and a log cut below it is lost data,
        // which `storage_recovery_point` covers.)
        log.append(simple_batch(9, 1000, 10), AppendWait::Written)
            .await
            .expect("append");
        drop(log);
    });
    // A crash mid-write: the last batch's second half is garbage.
    let mut bytes = std::fs::read(&log_path).expect("read segment");
    for byte in &mut bytes[9 * 1000 + 500..10 * 1000] {
        *byte = 0x77;
    }
    std::fs::write(&log_path, &bytes).expect("write segment");
    on_executor(move || async move {
        let log = open(&data, config()).await.expect("reopen");
        assert_eq!(log.next_offset(), 9);
        let ids: Vec<_> = read_all(&log, 0, 100_000)
            .await
            .expect("read")
            .iter()
            .map(|bytes| id_of(bytes))
            .collect();
        assert_eq!(ids, (0..9).collect::<Vec<_>>());
        let outcome = log
            .append(simple_batch(42, 1000, 10), AppendWait::Durable)
            .await
            .expect("append");
        assert_eq!(outcome.base_offset, 9);
        log.close().await.expect("close");
    });
    assert_eq!(
        std::fs::metadata(&log_path).expect("segment").len() % 4096,
        0,
        "padded to a block"
    );
}

#[test]
fn concurrent_tasks_appending_get_contiguous_unique_offsets() {
    let directory = TestDirectory::new("concurrent");
    let data = directory.0.clone();
    on_executor(move || async move {
        let log = Rc::new(open(&data, config()).await.expect("open"));
        let mut tasks = Vec::new();
        for task in 0..16u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                let mut offsets = Vec::new();
                for round in 0..20u64 {
                    let id = task * 1000 + round;
                    let wait = if round % 3 == 0 {
                        AppendWait::Written
                    } else {
                        AppendWait::Durable
                    };
                    let outcome = log
                        .append(simple_batch(id, 200 + round as usize * 50, 10), wait)
                        .await
                        .expect("append");
                    offsets.push((outcome.base_offset, id));
                }
                offsets
            }));
        }
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await);
        }
        log.sync().await.expect("sync");
        all.sort();
        assert_eq!(
            all.iter().map(|(offset, _)| *offset).collect::<Vec<_>>(),
            (0..320).collect::<Vec<_>>()
        );
        let stored = read_all(&log, 0, 100_000).await.expect("read");
        let stored_ids: Vec<_> = stored.iter().map(|bytes| id_of(bytes)).collect();
        assert_eq!(
            stored_ids,
            all.iter().map(|(_, id)| *id).collect::<Vec<_>>()
        );
        Rc::try_unwrap(log)
            .ok()
            .expect("sole owner")
            .close()
            .await
            .expect("close");
    });
}

#[test]
fn group_commit_on_the_system_clock_acknowledges_every_durable_append() {
    let directory = TestDirectory::new("group-commit");
    let data = directory.0.clone();
    on_executor(move || async move {
        let group_commit = LogConfig {
            durability: Durability::GroupCommit {
                interval_bytes: 64 * 1024,
                interval_us: 500,
            },
            ..config()
        };
        let log = Rc::new(open(&data, group_commit).await.expect("open"));
        let mut tasks = Vec::new();
        for task in 0..8u64 {
            let log = log.clone();
            tasks.push(glommio::spawn_local(async move {
                for round in 0..10u64 {
                    log.append(
                        simple_batch(task * 100 + round, 700, 10),
                        AppendWait::Durable,
                    )
                    .await
                    .expect("append");
                }
            }));
        }
        for task in tasks {
            task.await;
        }
        assert_eq!(log.high_watermark(), 80);
    });
}

#[test]
fn a_batch_larger_than_the_write_buffer_is_written_in_pieces_and_reads_back_whole() {
    let directory = TestDirectory::new("large");
    let data = directory.0.clone();
    on_executor(move || async move {
        let small_buffer = LogConfig {
            write_buffer_bytes: 64 * 1024,
            segment_bytes_max: 8 << 20,
            batch_bytes_max: 4 << 20,
            ..config()
        };
        let log = open(&data, small_buffer.clone()).await.expect("open");
        let large = batch(7, 3, 3 << 20, 1, 2);
        log.append(simple_batch(6, 100, 1), AppendWait::Durable)
            .await
            .expect("append");
        log.append(large.clone(), AppendWait::Durable)
            .await
            .expect("append large");
        log.close().await.expect("close");
        let log = open(
            &data,
            LogConfig {
                tail_cache_bytes_max: 0,
                ..small_buffer
            },
        )
        .await
        .expect("reopen");
        let read = log.read(2, 1).await.expect("read");
        assert_eq!(read.batches.len(), 1);
        assert!(same_batch(&read.batches[0], &large));
        assert_eq!(header_of(&read.batches[0]).base_offset, 1);
    });
}

#[test]
fn the_active_segment_reserves_blocks_ahead_while_its_length_stays_at_the_data() {
    use std::os::unix::fs::MetadataExt;
    let directory = TestDirectory::new("preallocate");
    let data = directory.0.clone();
    let reserved = on_executor(move || async move {
        let roomy = LogConfig {
            segment_bytes_max: 64 << 20,
            ..config()
        };
        let log = open(&data, roomy).await.expect("open");
        log.append(simple_batch(1, 10_000, 1), AppendWait::Durable)
            .await
            .expect("append");
        let path = data
            .join("topic-0")
            .join(segment_file_name(0, SegmentFileKind::Log));
        let metadata = std::fs::metadata(&path).expect("segment metadata");
        assert_eq!(
            metadata.len(),
            12_288,
            "the length covers the data's blocks only"
        );
        log.close().await.expect("close");
        // Reopening recovers the batch: the reservation past the length is invisible.
        let log = open(&data, config()).await.expect("reopen");
        assert_eq!(log.high_watermark(), 1);
        metadata.blocks() * 512
    });
    // File systems without fallocate (EOPNOTSUPP) fall back silently; ext4, xfs and tmpfs have it.
    assert!(
        reserved >= spate_storage::config::PREALLOCATE_STEP_BYTES,
        "{reserved} bytes allocated"
    );
}

#[test]
fn steady_appends_reuse_the_shards_write_buffers() {
    let directory = TestDirectory::new("buffer-reuse");
    let data = directory.0.clone();
    let stats = on_executor(move || async move {
        let file_system = Rc::new(DmaFileSystem::for_data_dir(&data).await.expect("prepare"));
        let roomy = LogConfig {
            segment_bytes_max: 64 << 20,
            ..config()
        };
        let log = PartitionLog::open(file_system.clone(), data.join("topic-0"), roomy, clock())
            .await
            .expect("open");
        // The open's own writes (the log start checkpoint) are not appends.
        let after_open = file_system.write_buffer_stats();
        // 3 MB: below the 4 MiB after which index entries are written (with buffers of their own).
        for id in 0..30u64 {
            log.append(simple_batch(id, 100_000, 1), AppendWait::Durable)
                .await
                .expect("append");
        }
        let stats = file_system.write_buffer_stats();
        WriteBufferStats {
            reused: stats.reused - after_open.reused,
            allocated: stats.allocated - after_open.allocated,
            ..stats
        }
    });
    // 100 000-byte batches after a partial tail block need a write of 25 or 26 blocks: after the
    // first of each length, every buffer is a reused one.
    assert!(stats.allocated <= 3, "{stats:?}");
    assert_eq!(stats.reused + stats.allocated, 30, "{stats:?}");
}

#[test]
fn a_relative_data_directory_works_like_an_absolute_one() {
    // glommio resolves paths with openat(-1, ..), which refuses relative paths; the file system
    // must absolutize them. Build a relative path to the test directory from the current one.
    let directory = TestDirectory::new("relative");
    let current = std::env::current_dir().expect("current directory");
    let mut relative = PathBuf::new();
    for _ in current.components().skip(1) {
        relative.push("..");
    }
    relative.push(
        directory
            .0
            .strip_prefix("/")
            .expect("absolute test directory"),
    );
    assert!(relative.is_relative());
    on_executor(move || async move {
        let log = open(&relative, config()).await.expect("open");
        log.append(simple_batch(1, 500, 10), AppendWait::Durable)
            .await
            .expect("append");
        log.close().await.expect("close");
        let log = open(&relative, config()).await.expect("reopen");
        assert_eq!(log.next_offset(), 1);
        log.delete().await.expect("delete");
    });
}

#[test]
fn delete_removes_the_partition_directory() {
    let directory = TestDirectory::new("delete");
    let data = directory.0.clone();
    let partition = data.join("topic-0");
    on_executor(move || async move {
        let log = open(&data, config()).await.expect("open");
        for id in 0..50 {
            log.append(simple_batch(id, 9000, 10), AppendWait::Durable)
                .await
                .expect("append");
        }
        log.delete_records(20).await.expect("delete records");
        log.delete().await.expect("delete");
    });
    assert!(!partition.exists());
}

/// Compaction on real files (O_DIRECT): a pass over a few MiB of overwritten keys keeps the
/// last value of each, survives a reopen, and reports its rate (`--nocapture` shows it; the
/// figure is the pass's read plus write bytes over its wall time on this machine).
#[test]
fn compaction_on_direct_io_keeps_last_values_and_reports_its_rate() {
    use spate_protocol::batch::retain::for_each_record;
    use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
    use spate_storage::config::CleanupPolicy;
    use spate_storage::CompactionBudget;

    const KEYS: usize = 1000;
    const ROUNDS: usize = 40;
    let directory = TestDirectory::new("compaction");
    let data = directory.0.clone();
    on_executor(move || async move {
        let config = LogConfig {
            cleanup_policy: CleanupPolicy::COMPACT,
            segment_bytes_max: 1 << 20,
            durability: Durability::GroupCommit {
                interval_bytes: 1 << 20,
                interval_us: 1_000,
            },
            ..config()
        };
        let log = open(&data, config.clone()).await.expect("open");
        let value = vec![b'v'; 100];
        for round in 0..ROUNDS {
            let mut builder = BatchBuilder::new(BatchOptions::default());
            for key in 0..KEYS {
                let key = format!("key-{key}");
                let mut value = value.clone();
                value[..8].copy_from_slice(&(round as u64).to_le_bytes());
                builder
                    .append(Some(key.as_bytes()), Some(&value), NO_HEADERS, 1_000)
                    .expect("fits");
                if builder.estimated_bytes() > 100_000 {
                    let full =
                        std::mem::replace(&mut builder, BatchBuilder::new(BatchOptions::default()));
                    log.append(full.seal().expect("sealed"), AppendWait::Written)
                        .await
                        .expect("append");
                }
            }
            if !builder.is_empty() {
                log.append(builder.seal().expect("sealed"), AppendWait::Written)
                    .await
                    .expect("append");
            }
        }
        log.sync().await.expect("sync");
        let size_before = log.size_bytes();
        let started = std::time::Instant::now();
        let outcome = log
            .compact(&CompactionBudget {
                force: true,
                ..CompactionBudget::default()
            })
            .await
            .expect("compact");
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(outcome.skipped, None);
        let moved = outcome.bytes_read + outcome.bytes_after;
        eprintln!(
            "compaction pass: {} MiB read, {} MiB written, {:.3} s, {:.1} MiB/s of cleaned log \
             ({} segments replaced by {}, {} records removed)",
            outcome.bytes_read >> 20,
            outcome.bytes_after >> 20,
            seconds,
            outcome.bytes_before as f64 / (1 << 20) as f64 / seconds,
            outcome.segments_replaced,
            outcome.segments_written,
            outcome.records_removed
        );
        assert!(moved > 0);
        assert!(
            log.size_bytes() < size_before / 2,
            "most records were overwrites"
        );
        log.close().await.expect("close");
        let log = open(&data, config).await.expect("reopen");
        let mut last = std::collections::HashMap::new();
        for batch in read_all(&log, 0, 1 << 20).await.expect("read") {
            let view = BatchView::validate(&batch, 1 << 24).expect("valid");
            for_each_record(&view, |record| {
                let round = u64::from_le_bytes(
                    record.value().expect("value")[..8]
                        .try_into()
                        .expect("8 bytes"),
                );
                last.insert(record.key().expect("key").to_vec(), round);
            })
            .expect("records");
        }
        assert_eq!(last.len(), KEYS);
        assert!(last.values().all(|round| *round == ROUNDS as u64 - 1));
    });
}

/// Replication on real files through the shard's file cache (few descriptors, so files are
/// closed and reopened under the truncation): a follower copies a leader's batches, truncates
/// into an older segment, appends again, and a reopen finds exactly that.
#[test]
fn direct_io_replica_appends_and_truncation_survive_a_reopen() {
    use bytes::BytesMut;
    use spate_storage::CachedFileSystem;

    let directory = TestDirectory::new("replica");
    let data = directory.0.clone();
    on_executor(move || async move {
        let config = LogConfig {
            segment_bytes_max: 64 * 1024,
            batch_bytes_max: 16 * 1024,
            ..config()
        };
        let dma = DmaFileSystem::for_data_dir(&data)
            .await
            .expect("file system");
        let files = Rc::new(CachedFileSystem::new(dma, 4));
        let open = |name: &str| {
            PartitionLog::open(files.clone(), data.join(name), config.clone(), clock())
        };
        let leader = open("leader").await.expect("open leader");
        let follower = open("follower").await.expect("open follower");
        leader.set_leader_epoch(3).await.expect("epoch");
        for id in 0..60u64 {
            leader
                .append(simple_batch(id, 4000, 1_000), AppendWait::Durable)
                .await
                .expect("append");
        }
        let mut offset = 0;
        loop {
            let read = leader.read_replica(offset, 128 * 1024).await.expect("read");
            let Some(last) = read.batches.last() else {
                break;
            };
            offset = header_of(last).next_offset();
            let batches = read
                .batches
                .iter()
                .map(|b| BytesMut::from(&b[..]))
                .collect();
            follower.append_replica(batches).await.expect("copy");
        }
        assert_eq!(follower.log_end(), 60);
        assert!(follower.segment_count() > 2);
        follower.truncate_to(17).await.expect("truncate");
        assert_eq!(follower.log_end(), 17);
        follower.set_leader_epoch(4).await.expect("lead");
        follower
            .append(simple_batch(1000, 4000, 1_000), AppendWait::Durable)
            .await
            .expect("append after truncation");
        follower.close().await.expect("close");
        let follower = open("follower").await.expect("reopen");
        let ids: Vec<u64> = read_all(&follower, 0, 1 << 20)
            .await
            .expect("read")
            .iter()
            .map(|batch| id_of(batch))
            .collect();
        let mut expected: Vec<u64> = (0..17).collect();
        expected.push(1000);
        assert_eq!(ids, expected);
        assert_eq!(follower.end_offset_for_epoch(3), Some((3, 17)));
        assert_eq!(follower.end_offset_for_epoch(4), Some((4, 18)));
        follower
            .truncate_fully_and_start_at(40)
            .await
            .expect("truncate fully");
        follower.close().await.expect("close");
        let follower = open("follower").await.expect("reopen");
        assert_eq!((follower.log_start_offset(), follower.log_end()), (40, 40));
        leader.close().await.expect("close leader");
    });
}
