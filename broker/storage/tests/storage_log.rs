//! Behaviour of `PartitionLog` on the in-memory disk, one property per test: append and read,
//! rolls, recovery of torn tails and lost indexes, group commit, disk errors, retention,
//! delete-records and timestamp lookup. The seeded randomized runs are in `storage_simulation`.

mod storage_support;

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use spate_protocol::BatchError;
use spate_storage::log::LEADER_EPOCH;
use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{
    AppendWait, CleanupPolicy, Clock, DirtyRatio, Durability, FaultPlan, FileSystem, LogConfig,
    MemoryFileSystem, PartitionLog, StorageError, Visibility,
};
use storage_support::{
    batch, block, directory, header_of, id_of, read_all, run_to_end, same_batch, simple_batch,
    small_config, Setup, Simulator, START_MS, TEST_BATCH_BYTES_MIN,
};

fn log_path(base_offset: u64) -> PathBuf {
    directory().join(segment_file_name(base_offset, SegmentFileKind::Log))
}

/// Appends `count` simple batches of `bytes` each; returns their ids in offset order.
fn append_many(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    first_id: u64,
    count: u64,
    bytes: usize,
) -> Vec<u64> {
    let log = log.clone();
    block(async move {
        let mut ids = Vec::new();
        for id in first_id..first_id + count {
            log.append(
                simple_batch(id, bytes, START_MS + id as i64),
                AppendWait::Durable,
            )
            .await
            .expect("append");
            ids.push(id);
        }
        ids
    })
}

/// One append on its own, waited for.
fn append_one(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    batch: bytes::BytesMut,
    wait: AppendWait,
) -> Result<spate_storage::AppendOutcome, StorageError> {
    let log = log.clone();
    block(async move { log.append(batch, wait).await })
}

fn all_ids(log: &Rc<PartitionLog<MemoryFileSystem>>) -> Vec<u64> {
    let log = log.clone();
    block(async move {
        let from = log.log_start_offset();
        read_all(&log, from, 3000)
            .await
            .expect("read")
            .iter()
            .map(|bytes| id_of(bytes))
            .collect()
    })
}

#[test]
fn appended_batches_read_back_byte_for_byte_with_stamped_offsets() {
    let setup = Setup::new(1);
    let log = Rc::new(setup.open(small_config()));
    let originals: Vec<_> = (0..20)
        .map(|id| batch(id, 3, 100 + id as usize * 37, START_MS, START_MS + 5))
        .collect();
    let reader = log.clone();
    let sent = originals.clone();
    let outcomes = block(async move {
        let mut outcomes = Vec::new();
        for original in sent {
            outcomes.push(
                reader
                    .append(original, AppendWait::Durable)
                    .await
                    .expect("append"),
            );
        }
        outcomes
    });
    for (index, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.base_offset, index as u64 * 3);
        assert_eq!(outcome.next_offset, index as u64 * 3 + 3);
    }
    let reader = log.clone();
    let stored = block(async move { read_all(&reader, 0, 1000).await.expect("read") });
    assert_eq!(stored.len(), originals.len());
    for (index, (stored, original)) in stored.iter().zip(&originals).enumerate() {
        assert!(same_batch(stored, original), "batch {index} differs");
        assert_eq!(header_of(stored).base_offset, index as u64 * 3);
    }
}

#[test]
fn the_log_stamps_its_own_leader_epoch_over_the_producers() {
    // A producer's header may carry any epoch (Kafka producers send -1); the epoch a batch is
    // stored and served with is the partition leader's, as Kafka stamps it.
    let setup = Setup::new(1);
    let log = Rc::new(setup.open(small_config()));
    let mut original = simple_batch(1, 300, START_MS);
    original[spate_protocol::batch::header::field::LEADER_EPOCH..][..4]
        .copy_from_slice(&7u32.to_le_bytes());
    let appender = log.clone();
    block(async move { appender.append(original, AppendWait::Durable).await }).expect("append");
    let reader = log.clone();
    let stored = block(async move { read_all(&reader, 0, 1000).await.expect("read") });
    assert_eq!(header_of(&stored[0]).leader_epoch, LEADER_EPOCH);
}

#[test]
fn read_from_an_offset_inside_a_batch_starts_with_that_whole_batch() {
    let setup = Setup::new(2);
    let log = Rc::new(setup.open(small_config()));
    let appender = log.clone();
    block(async move {
        for id in 0..5 {
            appender
                .append(batch(id, 10, 200, START_MS, START_MS), AppendWait::Durable)
                .await
                .expect("append");
        }
    });
    let reader = log.clone();
    let read = block(async move { reader.read(27, 1).await.expect("read") });
    assert_eq!(
        read.batches.len(),
        1,
        "at least one whole batch even with max_bytes 1"
    );
    assert_eq!(header_of(&read.batches[0]).base_offset, 20);
    assert_eq!(read.high_watermark, 50);
}

#[test]
fn read_outside_the_log_is_out_of_range_and_at_the_end_is_empty() {
    let setup = Setup::new(3);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 3, 100);
    let reader = log.clone();
    let (past_end, at_end) =
        block(async move { (reader.read(4, 100).await, reader.read(3, 100).await) });
    assert!(matches!(
        past_end,
        Err(StorageError::OffsetOutOfRange { offset: 4, .. })
    ));
    assert!(at_end.expect("read at the end").batches.is_empty());
}

#[test]
fn append_refuses_a_batch_with_a_bad_crc_and_leaves_the_log_unchanged() {
    let setup = Setup::new(4);
    let log = Rc::new(setup.open(small_config()));
    let mut bad = simple_batch(1, 300, START_MS);
    bad[200] ^= 0xff;
    let appender = log.clone();
    let result = block(async move { appender.append(bad, AppendWait::Durable).await });
    assert!(matches!(
        result,
        Err(StorageError::InvalidBatch(BatchError::CrcMismatch { .. }))
    ));
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn append_refuses_a_buffer_longer_than_its_declared_batch() {
    let setup = Setup::new(5);
    let log = Rc::new(setup.open(small_config()));
    let mut long = simple_batch(1, 300, START_MS);
    long.extend_from_slice(&[0; 10]);
    let appender = log.clone();
    let result = block(async move { appender.append(long, AppendWait::Durable).await });
    assert!(matches!(
        result,
        Err(StorageError::BatchLengthMismatch {
            declared: 300,
            received: 310
        })
    ));
}

#[test]
fn segments_roll_by_size_and_reads_cross_them() {
    let setup = Setup::new(6);
    let log = Rc::new(setup.open(small_config()));
    let ids = append_many(&log, 0, 60, 1000);
    assert!(
        log.segment_count() >= 3,
        "60 KB in 16 KiB segments: {}",
        log.segment_count()
    );
    assert_eq!(all_ids(&log), ids);
}

#[test]
fn each_segment_reserves_its_blocks_once_without_changing_the_log_bytes() {
    let setup = Setup::new(30);
    let log = Rc::new(setup.open(small_config()));
    let before = setup.disk.stats();
    let ids = append_many(&log, 0, 40, 1000);
    let segments = log.segment_count() as u64;
    assert!(segments >= 2, "40 KB in 16 KiB segments: {segments}");
    // A 16 KiB segment is reserved whole by its first write: one preallocation per segment.
    assert_eq!(
        setup.disk.stats().preallocations - before.preallocations,
        segments
    );
    // The reservation is invisible: the closed first segment holds exactly its batches.
    let first = setup.disk.file_bytes(&log_path(0)).expect("first segment");
    assert!(
        first.len() <= 16 * 1024 && first.len() % 1000 == 0,
        "{}",
        first.len()
    );
    assert_eq!(all_ids(&log), ids);
}

#[test]
fn appends_succeed_when_the_file_system_cannot_preallocate() {
    let setup = Setup::new(31);
    setup.disk.set_preallocation_unsupported(true);
    let log = Rc::new(setup.open(small_config()));
    let ids = append_many(&log, 0, 40, 1000);
    assert_eq!(setup.disk.stats().preallocations, 0);
    assert!(log.segment_count() >= 2);
    assert_eq!(all_ids(&log), ids);
}

#[test]
fn segments_roll_by_age_only_when_not_empty() {
    let setup = Setup::new(7);
    let config = LogConfig {
        segment_age_max_ms: 1000,
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    setup.clock.advance(Duration::from_secs(5));
    append_many(&log, 0, 1, 100);
    assert_eq!(log.segment_count(), 1, "an empty segment does not roll");
    setup.clock.advance(Duration::from_secs(2));
    append_many(&log, 1, 1, 100);
    assert_eq!(log.segment_count(), 2);
}

#[test]
fn reopening_after_close_recovers_every_batch_and_continues_offsets() {
    let setup = Setup::new(8);
    let log = setup.open(small_config());
    let log = Rc::new(log);
    let ids = append_many(&log, 0, 40, 900);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.next_offset(), 40);
    assert_eq!(all_ids(&log), ids);
    let more = append_many(&log, 40, 2, 900);
    assert_eq!(all_ids(&log)[40..], more[..]);
}

#[test]
fn recovery_truncates_torn_tail_batch() {
    let setup = Setup::new(9);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 5, 300);
    drop(log);
    // Tear the last batch: flip a payload byte of the batch at position 4 * 300.
    setup
        .disk
        .overwrite_durably(&log_path(0), 4 * 300 + 150, &[0xee]);
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.next_offset(), 4, "the torn batch is cut off");
    assert_eq!(all_ids(&log), vec![0, 1, 2, 3]);
    assert_eq!(
        setup.disk.file_bytes(&log_path(0)).map(|bytes| bytes.len()),
        Some(4 * 300)
    );
    // The next append lands right after the last good batch.
    append_many(&log, 100, 1, 300);
    assert_eq!(all_ids(&log), vec![0, 1, 2, 3, 100]);
}

#[test]
fn recovery_refuses_a_batch_whose_stamped_offset_breaks_continuity() {
    let setup = Setup::new(10);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 3, 300);
    drop(log);
    // Stamp the third batch with offset 7: its CRC still matches (base offset is outside it).
    setup
        .disk
        .overwrite_durably(&log_path(0), 600, &7u64.to_le_bytes());
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.next_offset(), 2);
    assert_eq!(all_ids(&log), vec![0, 1]);
}

#[test]
fn recovery_rebuilds_a_missing_index_and_lookups_still_work() {
    let setup = Setup::new(11);
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let log = Rc::new(setup.open(config.clone()));
    append_many(&log, 0, 100, 300);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let index_path = directory().join(segment_file_name(0, SegmentFileKind::OffsetIndex));
    let index_bytes = setup.disk.file_bytes(&index_path).expect("index exists");
    assert!(
        index_bytes.iter().any(|byte| *byte != 0),
        "close wrote index entries"
    );
    setup.disk.set_length_durably(&index_path, 0);
    let log = Rc::new(setup.open(config));
    let rebuilt = setup.disk.file_bytes(&index_path).expect("index exists");
    assert_eq!(
        rebuilt[..index_bytes.len().min(rebuilt.len())],
        index_bytes[..index_bytes.len().min(rebuilt.len())]
    );
    assert!(!rebuilt.is_empty(), "entries were rebuilt and written");
    let reader = log.clone();
    let read = block(async move { reader.read(77, 1).await.expect("read") });
    assert_eq!(id_of(&read.batches[0]), 77);
}

#[test]
fn a_damaged_middle_index_entry_costs_a_longer_scan_not_a_failed_read() {
    let setup = Setup::new(25);
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    };
    let log = Rc::new(setup.open(config.clone()));
    append_many(&log, 0, 40, 300);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    // Flip the lowest bit of the first entry's position: still increasing, so it loads, but it
    // no longer points at a batch. Only the last entry is verified at open.
    let index_path = directory().join(segment_file_name(0, SegmentFileKind::OffsetIndex));
    let index = setup.disk.file_bytes(&index_path).expect("index");
    assert!(index.len() >= 16, "several entries were written");
    setup
        .disk
        .overwrite_durably(&index_path, 4, &[index[4] ^ 1]);
    let log = Rc::new(setup.open(config));
    for offset in 0..40 {
        let reader = log.clone();
        let read = block(async move { reader.read(offset, 1).await.expect("read") });
        assert_eq!(id_of(&read.batches[0]), offset);
    }
}

#[test]
fn concurrent_durable_appends_share_one_fdatasync() {
    let setup = Setup::new(12);
    setup.disk.set_faults(FaultPlan {
        yield_ppm: 1_000_000,
        ..FaultPlan::default()
    });
    let log = Rc::new(setup.open(small_config()));
    let syncs_before = setup.disk.stats().data_syncs;
    let mut simulator = Simulator::new(12);
    let acknowledged = Rc::new(RefCell::new(Vec::new()));
    for id in 0..8u64 {
        let log = log.clone();
        let acknowledged = acknowledged.clone();
        simulator.spawn(async move {
            let outcome = log
                .append(simple_batch(id, 200, START_MS), AppendWait::Durable)
                .await
                .expect("append");
            acknowledged.borrow_mut().push(outcome.base_offset);
        });
    }
    assert_eq!(simulator.run(100_000), 0);
    assert_eq!(acknowledged.borrow().len(), 8);
    let syncs = setup.disk.stats().data_syncs - syncs_before;
    assert!(syncs < 8, "8 concurrent appends needed {syncs} fdatasyncs");
    assert_eq!(log.high_watermark(), 8);
}

#[test]
fn append_batches_makes_every_batch_durable_with_one_write_and_one_sync() {
    let setup = Setup::new(26);
    let log = Rc::new(setup.open(small_config()));
    let before = setup.disk.stats();
    let appender = log.clone();
    let outcomes = block(async move {
        let batches = (0..5).map(|id| simple_batch(id, 300, START_MS)).collect();
        appender
            .append_batches(batches, AppendWait::Durable)
            .await
            .expect("append batches")
    });
    let offsets: Vec<_> = outcomes.iter().map(|outcome| outcome.base_offset).collect();
    assert_eq!(offsets, vec![0, 1, 2, 3, 4]);
    let after = setup.disk.stats();
    assert_eq!(after.data_syncs - before.data_syncs, 1);
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(log.high_watermark(), 5);
}

#[test]
fn append_batches_appends_nothing_when_one_batch_is_invalid() {
    let setup = Setup::new(27);
    let log = Rc::new(setup.open(small_config()));
    let mut bad = simple_batch(2, 300, START_MS);
    bad[100] ^= 1;
    let appender = log.clone();
    let result = block(async move {
        let batches = vec![simple_batch(1, 300, START_MS), bad];
        appender.append_batches(batches, AppendWait::Durable).await
    });
    assert!(matches!(result, Err(StorageError::InvalidBatch(_))));
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn a_written_batch_rolled_back_by_another_tasks_error_is_not_covered_by_a_later_durable_append() {
    // The documented caveat of single appends, and why `append_batches` exists.
    let setup = Setup::new(28);
    let log = Rc::new(setup.open(small_config()));
    append_one(&log, simple_batch(1, 300, START_MS), AppendWait::Written).expect("written");
    setup.disk.set_no_space(true);
    let failed = append_one(&log, simple_batch(2, 300, START_MS), AppendWait::Durable);
    assert!(failed.is_err());
    setup.disk.set_no_space(false);
    let durable =
        append_one(&log, simple_batch(3, 300, START_MS), AppendWait::Durable).expect("durable");
    assert_eq!(
        durable.base_offset, 0,
        "batch 1 was rolled back and its offset reused"
    );
    assert_eq!(all_ids(&log), vec![3]);
}

/// Group commit whose time interval never passes in a test: a durable append that waited for it
/// would never finish (the tests below run on executors whose clock does not move).
fn long_interval_group_commit() -> LogConfig {
    LogConfig {
        durability: Durability::GroupCommit {
            interval_bytes: 1 << 20,
            interval_us: 1_000_000_000,
        },
        ..small_config()
    }
}

#[test]
fn a_durable_append_on_an_idle_log_syncs_without_waiting_for_the_group_commit_interval() {
    let setup = Setup::new(13);
    let log = Rc::new(setup.open(long_interval_group_commit()));
    let before = setup.disk.stats();
    let started_us = setup.clock.monotonic_us();
    let mut simulator = Simulator::new(13);
    let appender = log.clone();
    simulator.spawn(async move {
        appender
            .append(simple_batch(1, 300, START_MS), AppendWait::Durable)
            .await
            .expect("append");
    });
    // `run` never moves the clock: an append sleeping until the interval would stay unfinished.
    assert_eq!(simulator.run(100_000), 0, "{}", log.describe());
    assert_eq!(setup.clock.monotonic_us(), started_us);
    let after = setup.disk.stats();
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(after.data_syncs - before.data_syncs, 1);
    assert_eq!(log.high_watermark(), 1);
}

#[test]
fn durable_appends_arriving_during_a_write_share_the_next_sync() {
    let setup = Setup::new(29);
    // Every disk operation yields once, so the first append's write is still in flight when the
    // others arrive.
    setup.disk.set_faults(FaultPlan {
        yield_ppm: 1_000_000,
        ..FaultPlan::default()
    });
    let log = Rc::new(setup.open(long_interval_group_commit()));
    let before = setup.disk.stats();
    let appender = log.clone();
    let offsets = block(async move {
        let mut appends: Vec<_> = (0..8u64)
            .map(|id| {
                Box::pin(appender.append(simple_batch(id, 200, START_MS), AppendWait::Durable))
            })
            .collect();
        // The first poll of the first append starts its write; the other seven queue behind it.
        for append in &mut appends {
            assert!(futures_lite::future::poll_once(append).await.is_none());
        }
        let mut offsets = Vec::new();
        for append in appends {
            offsets.push(append.await.expect("append").base_offset);
        }
        offsets
    });
    assert_eq!(offsets, (0..8).collect::<Vec<_>>());
    let after = setup.disk.stats();
    // Generation one: the first append's write and sync. Generation two: the seven that queued
    // while it was in flight, in one write and one sync.
    assert_eq!(after.writes - before.writes, 2);
    assert_eq!(after.data_syncs - before.data_syncs, 2);
    assert_eq!(log.high_watermark(), 8);
}

#[test]
fn sync_if_due_syncs_written_data_once_the_group_commit_bytes_are_reached() {
    let setup = Setup::new(15);
    let config = LogConfig {
        durability: Durability::GroupCommit {
            interval_bytes: 1000,
            interval_us: 1_000_000_000,
        },
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    let append_written = |id: u64| {
        let appender = log.clone();
        block(async move {
            appender
                .append(simple_batch(id, 400, START_MS), AppendWait::Written)
                .await
                .expect("append");
        })
    };
    let sync_if_due = || {
        let syncer = log.clone();
        block(async move { syncer.sync_if_due().await.expect("sync") })
    };
    append_written(1);
    append_written(2);
    assert!(!sync_if_due(), "800 bytes are below the 1000-byte interval");
    assert_eq!(log.high_watermark(), 0);
    append_written(3);
    assert!(sync_if_due(), "1200 bytes reach the interval");
    assert_eq!(log.high_watermark(), 3);
}

#[test]
fn written_appends_become_durable_at_sync_if_due() {
    let setup = Setup::new(14);
    let config = LogConfig {
        durability: Durability::GroupCommit {
            interval_bytes: 1 << 20,
            interval_us: 1000,
        },
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    append_one(&log, simple_batch(1, 300, START_MS), AppendWait::Written).expect("append");
    assert_eq!(log.next_offset(), 1);
    assert_eq!(
        log.high_watermark(),
        0,
        "written but not durable: not readable yet"
    );
    let syncer = log.clone();
    assert!(
        !block(async move { syncer.sync_if_due().await.expect("sync") }),
        "not due yet"
    );
    setup.clock.advance(Duration::from_millis(2));
    let syncer = log.clone();
    assert!(block(
        async move { syncer.sync_if_due().await.expect("sync") }
    ));
    assert_eq!(log.high_watermark(), 1);
}

/// `write.caching`: a log whose readers see written batches, with a group commit that never
/// comes due by itself in a test.
fn write_caching_config(tail_cache_bytes_max: usize) -> LogConfig {
    LogConfig {
        visibility: Visibility::Written,
        tail_cache_bytes_max,
        ..long_interval_group_commit()
    }
}

#[test]
fn under_write_caching_a_written_batch_is_read_before_its_sync() {
    // Both read paths: the disk (no tail cache) and the tail cache.
    for tail_cache_bytes_max in [0, 1 << 20] {
        let setup = Setup::new(16);
        let log = Rc::new(setup.open(write_caching_config(tail_cache_bytes_max)));
        let durable = append_many(&log, 0, 2, 300);
        let appender = log.clone();
        let syncs_before = setup.disk.stats().data_syncs;
        block(async move {
            for id in 2..4 {
                appender
                    .append(simple_batch(id, 300, START_MS), AppendWait::Written)
                    .await
                    .expect("append");
            }
        });
        assert_eq!(
            setup.disk.stats().data_syncs,
            syncs_before,
            "nothing synced the written batches"
        );
        assert_eq!(log.high_watermark(), 4, "cache {tail_cache_bytes_max}");
        assert_eq!(all_ids(&log), [durable, vec![2, 3]].concat());
    }
}

#[test]
fn by_default_a_written_batch_is_not_read_before_its_sync() {
    // The same appends as above without write caching: readers wait for the sync.
    let setup = Setup::new(16);
    let log = Rc::new(setup.open(long_interval_group_commit()));
    append_many(&log, 0, 2, 300);
    append_one(&log, simple_batch(2, 300, START_MS), AppendWait::Written).expect("append");
    assert_eq!(log.high_watermark(), 2);
    assert_eq!(all_ids(&log), vec![0, 1]);
    let syncer = log.clone();
    block(async move { syncer.sync().await.expect("sync") });
    assert_eq!(all_ids(&log), vec![0, 1, 2]);
}

#[test]
fn under_write_caching_a_failed_write_takes_back_what_readers_saw() {
    // The documented trade of write caching: a written batch was visible, then a disk error
    // rolled the log back to its durable point, and its offset goes to the next batch.
    let setup = Setup::new(17);
    let log = Rc::new(setup.open(write_caching_config(0)));
    append_many(&log, 0, 1, 300);
    append_one(&log, simple_batch(1, 300, START_MS), AppendWait::Written).expect("written");
    assert_eq!(all_ids(&log), vec![0, 1]);
    setup.disk.set_no_space(true);
    let failed = append_one(&log, simple_batch(2, 300, START_MS), AppendWait::Durable);
    assert!(failed.is_err());
    assert_eq!(log.high_watermark(), 1, "back to the durable point");
    assert_eq!(all_ids(&log), vec![0]);
    setup.disk.set_no_space(false);
    let durable =
        append_one(&log, simple_batch(3, 300, START_MS), AppendWait::Durable).expect("durable");
    assert_eq!(durable.base_offset, 1, "offset 1 is given again");
    assert_eq!(all_ids(&log), vec![0, 3]);
}

#[test]
fn a_fetch_from_disk_reads_about_what_it_serves() {
    // A catch-up read goes to the disk once for the scan from the index entry and the batches
    // it serves, sized by the fetch: not a read chunk, and not a second whole `max_bytes`.
    let setup = Setup::new(18);
    let config = LogConfig {
        segment_bytes_max: 1 << 20,
        read_chunk_bytes: 64 * 1024,
        ..small_config()
    };
    let log = Rc::new(setup.open(config.clone()));
    let ids = append_many(&log, 0, 60, 3000);
    let max_bytes = 16 * 1024;
    let block = 4096;
    // The scan from an index entry, the batches served, one batch crossing the end of the
    // first read, and a block of alignment at each end.
    let allowed = max_bytes + config.index_interval_bytes as usize + 3000 + 2 * block;
    for offset in [0u64, 7, 31, 50] {
        let before = setup.disk.stats().bytes_read;
        let reader = log.clone();
        let read = storage_support::block(async move { reader.read(offset, max_bytes).await })
            .expect("read");
        let read_bytes = (setup.disk.stats().bytes_read - before) as usize;
        let served: usize = read.batches.iter().map(|batch| batch.len()).sum();
        let served_ids: Vec<u64> = read.batches.iter().map(|batch| id_of(batch)).collect();
        let first = offset as usize;
        assert_eq!(served_ids, ids[first..first + served_ids.len()].to_vec());
        assert!(served <= max_bytes && !read.batches.is_empty());
        assert!(
            read_bytes <= allowed,
            "a fetch at {offset} served {served} bytes and read {read_bytes} from the disk \
             (at most {allowed} expected)"
        );
    }
}

/// A log of 3,000-byte batches on the in-memory disk with no tail cache, so every read goes to
/// the disk, in segments large enough for several fetches of [`CATCH_UP_FETCH_BYTES`].
fn catch_up_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 1 << 20,
        ..small_config()
    }
}

/// Large enough that the read started ahead of the next fetch is worth it (`READ_AHEAD_BYTES_MIN`).
const CATCH_UP_FETCH_BYTES: usize = 300 * 1024;

#[test]
fn a_catch_up_fetch_is_served_by_the_read_started_after_the_previous_one() {
    let setup = Setup::new(19);
    let log = Rc::new(setup.open(catch_up_config()));
    let ids = append_many(&log, 0, 300, 3000);
    let reader = log.clone();
    let first = storage_support::block(async move { reader.read(0, CATCH_UP_FETCH_BYTES).await })
        .expect("first fetch");
    let next = first.batches.len() as u64;
    let parked = log
        .parked_read_ahead()
        .expect("a read is parked for the next fetch");
    assert!(parked.length >= spate_storage::config::READ_AHEAD_BYTES_MIN);
    // From now on every disk operation fails: the next fetch can only be served by the read
    // started before.
    setup.disk.set_faults(FaultPlan {
        error_ppm: 1_000_000,
        ..FaultPlan::default()
    });
    let reader = log.clone();
    let second =
        storage_support::block(async move { reader.read(next, CATCH_UP_FETCH_BYTES).await })
            .expect("the second fetch is served from the parked read");
    let served: Vec<u64> = second.batches.iter().map(|batch| id_of(batch)).collect();
    assert!(!served.is_empty());
    assert_eq!(
        served,
        ids[next as usize..next as usize + served.len()].to_vec()
    );
}

#[test]
fn catch_up_reads_with_read_ahead_return_the_whole_log_in_order() {
    let setup = Setup::new(20);
    let log = Rc::new(setup.open(catch_up_config()));
    let ids = append_many(&log, 0, 700, 3000);
    assert!(log.segment_count() > 1);
    assert_eq!(all_ids_in_fetches(&log, 0, CATCH_UP_FETCH_BYTES), ids);
    // A reader that jumps elsewhere is not served the parked bytes of another place.
    assert_eq!(all_ids_in_fetches(&log, 0, CATCH_UP_FETCH_BYTES), ids);
    assert_eq!(
        all_ids_in_fetches(&log, 333, CATCH_UP_FETCH_BYTES),
        ids[333..].to_vec()
    );
    drop(log);
    assert_eq!(
        spate_storage::read_ahead::parked_bytes(),
        0,
        "the budget is given back"
    );
}

#[test]
fn reads_are_never_started_ahead_past_the_durable_end_of_the_active_segment() {
    // Under write caching readers see written bytes, which a failed sync may still take back:
    // a read parked ahead stops at the durable end.
    let setup = Setup::new(21);
    let config = LogConfig {
        visibility: Visibility::Written,
        ..long_interval_group_commit()
    };
    let log = Rc::new(setup.open(LogConfig {
        segment_bytes_max: 1 << 20,
        ..config
    }));
    // Durable: 600,000 bytes. A fetch of 300 KiB from 0 stops near 306,000; the read for the
    // next one would reach past 613,000, and is cut at the durable end.
    append_many(&log, 0, 200, 3000);
    let appender = log.clone();
    storage_support::block(async move {
        for id in 200..300 {
            appender
                .append(simple_batch(id, 3000, START_MS), AppendWait::Written)
                .await
                .expect("written");
        }
    });
    assert_eq!(log.high_watermark(), 300, "written batches are visible");
    let durable_end_bytes = 200 * 3000;
    let reader = log.clone();
    storage_support::block(async move { reader.read(0, CATCH_UP_FETCH_BYTES).await })
        .expect("fetch");
    let parked = log.parked_read_ahead().expect("a read is parked");
    assert_eq!(
        parked.position + parked.length as u64,
        durable_end_bytes,
        "{parked:?} stops at the durable end"
    );
    assert_eq!(
        all_ids_in_fetches(&log, 0, CATCH_UP_FETCH_BYTES),
        (0..300).collect::<Vec<_>>()
    );
}

/// Every id from `from` to the high watermark, read one fetch of `max_bytes` after another.
fn all_ids_in_fetches(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    from: u64,
    max_bytes: usize,
) -> Vec<u64> {
    let log = log.clone();
    storage_support::block(async move {
        read_all(&log, from, max_bytes)
            .await
            .expect("read")
            .iter()
            .map(|bytes| id_of(bytes))
            .collect()
    })
}

#[test]
fn a_crash_keeps_durable_appends_and_may_drop_written_ones() {
    for seed in 0..20 {
        let setup = Setup::new(100 + seed);
        let log = Rc::new(setup.open(small_config()));
        let durable = append_many(&log, 0, 5, 300);
        let appender = log.clone();
        block(async move {
            for id in 5..8 {
                appender
                    .append(simple_batch(id, 300, START_MS), AppendWait::Written)
                    .await
                    .expect("append");
            }
        });
        drop(log);
        setup.disk.crash();
        let log = Rc::new(setup.open(small_config()));
        let ids = all_ids(&log);
        assert!(
            ids.len() >= 5 && ids[..5] == durable[..],
            "seed {seed}: {ids:?}"
        );
        assert!(
            ids.iter()
                .enumerate()
                .all(|(index, id)| *id == index as u64),
            "seed {seed}: {ids:?}"
        );
    }
}

#[test]
fn no_space_fails_appends_keeps_reads_and_recovers_when_space_returns() {
    let setup = Setup::new(15);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 3, 300);
    setup.disk.set_no_space(true);
    let failed = append_one(&log, simple_batch(3, 300, START_MS), AppendWait::Durable);
    assert!(
        matches!(failed, Err(StorageError::NoSpace { .. })),
        "{failed:?}"
    );
    assert_eq!(all_ids(&log), vec![0, 1, 2], "reads work on a full disk");
    setup.disk.set_no_space(false);
    let outcome = append_one(&log, simple_batch(4, 300, START_MS), AppendWait::Durable)
        .expect("append after space returns");
    assert_eq!(
        outcome.base_offset, 3,
        "the failed batch's offset is reused"
    );
    assert_eq!(all_ids(&log), vec![0, 1, 2, 4]);
    drop(log);
    setup.disk.crash();
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(all_ids(&log), vec![0, 1, 2, 4]);
}

#[test]
fn bytes_a_failed_write_left_behind_are_cut_off_before_the_next_write() {
    // A failing write may land a torn prefix past the durable end (the in-memory disk does so
    // for some seeds). The repair must truncate it, or a later crash could expose stale bytes
    // after new batches.
    for seed in 0..32 {
        let setup = Setup::new(200 + seed);
        let log = Rc::new(setup.open(small_config()));
        append_many(&log, 0, 1, 100);
        setup.disk.set_no_space(true);
        let appender = log.clone();
        let failed = block(async move {
            appender
                .append(simple_batch(1, 8000, START_MS), AppendWait::Durable)
                .await
        });
        assert!(failed.is_err());
        setup.disk.set_no_space(false);
        append_many(&log, 2, 1, 100);
        let length = setup.disk.file_bytes(&log_path(0)).map(|bytes| bytes.len());
        assert_eq!(
            length,
            Some(4096),
            "seed {seed}: only the block holding both batches remains"
        );
    }
}

#[test]
fn delete_records_moves_the_log_start_durably_and_drops_whole_segments() {
    let setup = Setup::new(16);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 60, 1000);
    let segments_before = log.segment_count();
    let deleter = log.clone();
    let start = block(async move { deleter.delete_records(35).await.expect("delete records") });
    assert_eq!(start, 35);
    assert!(log.segment_count() < segments_before);
    let reader = log.clone();
    let below = block(async move { reader.read(34, 100).await });
    assert!(matches!(below, Err(StorageError::OffsetOutOfRange { .. })));
    drop(log);
    setup.disk.crash();
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(log.log_start_offset(), 35);
    assert_eq!(all_ids(&log).first(), Some(&35));
}

#[test]
fn delete_records_past_the_high_watermark_is_refused() {
    let setup = Setup::new(17);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 3, 100);
    let deleter = log.clone();
    let result = block(async move { deleter.delete_records(4).await });
    assert!(matches!(result, Err(StorageError::OffsetOutOfRange { .. })));
}

#[test]
fn retention_by_bytes_deletes_oldest_closed_segments_but_never_the_active_one() {
    let setup = Setup::new(18);
    let config = LogConfig {
        retention_bytes: Some(20 * 1024),
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    append_many(&log, 0, 100, 1000);
    let retainer = log.clone();
    let outcome = block(async move { retainer.enforce_retention().await.expect("retention") });
    assert!(outcome.segments_deleted > 0);
    assert!(
        log.size_bytes() >= 20 * 1024,
        "stays at or above the limit: {}",
        log.size_bytes()
    );
    assert!(
        log.size_bytes() < 20 * 1024 + 16 * 1024,
        "within one segment of it"
    );
    let ids = all_ids(&log);
    assert_eq!(ids.first().copied(), Some(outcome.log_start_offset));
    assert_eq!(ids.last(), Some(&99));
}

#[test]
fn retention_deletes_nothing_when_the_cleanup_policy_is_compact_only() {
    // A compacted topic keeps every key's last record however old or large the log is: only
    // the compactor removes records from it. With `compact,delete` retention applies again.
    for (policy, deletes) in [
        (CleanupPolicy::COMPACT, false),
        (CleanupPolicy::COMPACT_DELETE, true),
    ] {
        let setup = Setup::new(21);
        let config = LogConfig {
            retention_bytes: Some(20 * 1024),
            retention_ms: Some(1),
            cleanup_policy: policy,
            ..small_config()
        };
        let log = Rc::new(setup.open(config));
        append_many(&log, 0, 100, 1000);
        let retainer = log.clone();
        let outcome = block(async move { retainer.enforce_retention().await.expect("retention") });
        assert_eq!(outcome.segments_deleted > 0, deletes, "{policy:?}");
        assert_eq!(all_ids(&log).first() == Some(&0), !deletes, "{policy:?}");
    }
}

#[test]
fn cleanup_policy_and_dirty_ratio_read_as_kafka_writes_them() {
    assert_eq!(CleanupPolicy::parse("delete"), Some(CleanupPolicy::DELETE));
    assert_eq!(
        CleanupPolicy::parse("compact"),
        Some(CleanupPolicy::COMPACT)
    );
    assert_eq!(
        CleanupPolicy::parse("compact,delete"),
        Some(CleanupPolicy::COMPACT_DELETE)
    );
    assert_eq!(
        CleanupPolicy::parse("delete, compact"),
        Some(CleanupPolicy::COMPACT_DELETE)
    );
    for refused in ["", "compact,compact", "delete,", "Compact", "none"] {
        assert_eq!(CleanupPolicy::parse(refused), None, "{refused:?}");
    }
    assert_eq!(CleanupPolicy::COMPACT_DELETE.as_str(), "compact,delete");
    let half = DirtyRatio::parse("0.5").expect("0.5");
    assert_eq!(half.parts_per_million(), 500_000);
    assert_eq!(half.to_string(), "0.5");
    assert!(half.reached_by(50, 100) && !half.reached_by(49, 100) && !half.reached_by(0, 0));
    for refused in ["1.5", "-0.1", "NaN", "half"] {
        assert_eq!(DirtyRatio::parse(refused), None, "{refused:?}");
    }
}

#[test]
fn retention_by_age_uses_the_newest_timestamp_of_each_segment() {
    let setup = Setup::new(19);
    let config = LogConfig {
        retention_ms: Some(60_000),
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    // Old batches (an hour ago) fill two segments, then fresh ones.
    let appender = log.clone();
    block(async move {
        for id in 0..40u64 {
            let timestamp = if id < 30 {
                START_MS - 3_600_000
            } else {
                START_MS
            };
            appender
                .append(simple_batch(id, 1000, timestamp), AppendWait::Durable)
                .await
                .expect("append");
        }
    });
    let retainer = log.clone();
    let outcome = block(async move { retainer.enforce_retention().await.expect("retention") });
    assert!(outcome.segments_deleted >= 1);
    assert!(
        outcome.log_start_offset <= 30,
        "no fresh batch deleted: {}",
        outcome.log_start_offset
    );
    assert!(all_ids(&log).contains(&30));
}

#[test]
fn offset_for_timestamp_finds_the_first_batch_reaching_the_timestamp() {
    let setup = Setup::new(20);
    let log = Rc::new(setup.open(small_config()));
    // Timestamps go up and down: max timestamps 10, 30, 20, 40, 50, ... (batch granularity).
    let timestamps = [10i64, 30, 20, 40, 50, 45, 60, 70];
    let appender = log.clone();
    block(async move {
        for _round in 0..20 {
            for (index, timestamp) in timestamps.iter().enumerate() {
                let _ = index;
                let max = START_MS + timestamp;
                let id = appender.next_offset();
                appender
                    .append(batch(id, 1, 600, max - 5, max), AppendWait::Durable)
                    .await
                    .expect("append");
            }
        }
    });
    let lookup = log.clone();
    let answers = block(async move {
        let mut answers = Vec::new();
        for target in [
            START_MS,
            START_MS + 11,
            START_MS + 25,
            START_MS + 41,
            START_MS + 70,
            START_MS + 71,
        ] {
            answers.push(lookup.offset_for_timestamp(target).await.expect("lookup"));
        }
        answers
    });
    assert_eq!(
        answers,
        vec![Some(0), Some(1), Some(1), Some(4), Some(7), None]
    );
}

#[test]
fn offset_for_timestamp_skips_batches_before_the_log_start() {
    let setup = Setup::new(21);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 30, 1000);
    let deleter = log.clone();
    block(async move { deleter.delete_records(20).await.expect("delete") });
    let lookup = log.clone();
    let found = block(async move { lookup.offset_for_timestamp(START_MS).await.expect("lookup") });
    assert_eq!(found, Some(20));
}

#[test]
fn tail_cache_serves_recent_batches_identical_to_disk() {
    let setup = Setup::new(22);
    let cached = LogConfig {
        tail_cache_bytes_max: 64 * 1024,
        ..small_config()
    };
    let log = Rc::new(setup.open(cached));
    append_many(&log, 0, 10, 500);
    let reads_before = setup.disk.stats();
    let from_cache = all_ids(&log);
    assert_eq!(from_cache, (0..10).collect::<Vec<_>>());
    assert_eq!(setup.disk.stats(), reads_before);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let log = Rc::new(setup.open(small_config()));
    assert_eq!(all_ids(&log), from_cache);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Whatever bytes a crash or the medium leaves in the active segment and its offset index,
    /// opening never panics, every batch wholly before the first damaged byte stays readable,
    /// and a read returns either exactly the appended batch or an error — never altered bytes.
    #[test]
    fn damaged_segment_keeps_its_intact_prefix_and_never_serves_altered_bytes(
        damage_at in 0usize..12_000,
        damage in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..300),
        index_damage_at in 0usize..64,
        index_damage in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        seed in 0u64..1000,
    ) {
        let setup = Setup::new(seed);
        let config = LogConfig { segment_bytes_max: 1 << 20, ..small_config() };
        let log = Rc::new(setup.open(config.clone()));
        let sizes: Vec<usize> = (0..30).map(|index| TEST_BATCH_BYTES_MIN + (index * 131 + seed as usize) % 700).collect();
        let originals: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(id, size)| simple_batch(id as u64, *size, START_MS))
            .collect();
        let appender = log.clone();
        let appended = originals.clone();
        block(async move {
            for original in appended {
                appender.append(original, AppendWait::Durable).await.expect("append");
            }
        });
        let log = Rc::try_unwrap(log).ok().expect("sole owner");
        block(async move { log.close().await.expect("close") });
        setup.disk.overwrite_durably(&log_path(0), damage_at as u64, &damage);
        let index_path = directory().join(segment_file_name(0, SegmentFileKind::OffsetIndex));
        setup.disk.overwrite_durably(&index_path, index_damage_at as u64, &index_damage);

        // Damage inside what the close made durable is lost data: the open refuses the log
        // until an operator accepts the loss (FORMAT.md, "Lost data": remove the recovery point
        // and the producer snapshots past the log end).
        let disk = setup.disk.clone();
        let clock: Rc<dyn Clock> = setup.clock.clone();
        let first_open = config.clone();
        let refused = run_to_end(1, async move {
            PartitionLog::open(disk, directory(), first_open, clock).await.err()
        });
        match refused {
            None => {}
            Some(StorageError::LostData { log_end, promised_offset, .. }) => {
                proptest::prop_assert!(log_end < promised_offset);
                let disk = setup.disk.clone();
                block(async move {
                    for name in disk.list_directory(&directory()).await.expect("list") {
                        if name == "recovery-point" || name.ends_with(".producers") {
                            disk.remove_file(&directory().join(name)).await.expect("remove");
                        }
                    }
                });
            }
            Some(other) => proptest::prop_assert!(false, "unexpected open error {other}"),
        }
        let log = Rc::new(setup.open(config));
        let mut end = 0;
        let intact = sizes.iter().take_while(|size| { end += **size; end <= damage_at }).count() as u64;
        for offset in 0..30u64 {
            let reader = log.clone();
            let read = block(async move { reader.read(offset, 1).await });
            match read {
                Ok(read) if offset < log.high_watermark() => {
                    proptest::prop_assert_eq!(read.batches.len(), 1);
                    proptest::prop_assert!(same_batch(&read.batches[0], &originals[offset as usize]));
                }
                Ok(read) => proptest::prop_assert!(read.batches.is_empty()),
                Err(StorageError::Corrupt { .. } | StorageError::CorruptBatch { .. } | StorageError::OffsetOutOfRange { .. }) => {
                    proptest::prop_assert!(offset >= intact, "intact batch {offset} unreadable");
                }
                Err(other) => proptest::prop_assert!(false, "unexpected error {other}"),
            }
        }
        proptest::prop_assert!(log.next_offset() >= intact);
    }
}

#[test]
fn an_invalid_config_is_refused_at_open() {
    let setup = Setup::new(23);
    let disk = setup.disk.clone();
    let clock: Rc<dyn Clock> = setup.clock.clone();
    let config = LogConfig {
        index_interval_bytes: 0,
        ..small_config()
    };
    let result = run_to_end(1, async move {
        PartitionLog::open(disk, directory(), config, clock)
            .await
            .map(|_| ())
    });
    assert!(matches!(result, Err(StorageError::Config(_))));
}

#[test]
fn delete_removes_every_file_of_the_partition() {
    let setup = Setup::new(24);
    let log = Rc::new(setup.open(small_config()));
    append_many(&log, 0, 40, 1000);
    let deleter = log.clone();
    block(async move { deleter.delete_records(10).await.expect("delete records") });
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.delete().await.expect("delete") });
    let remaining: Vec<_> = setup
        .disk
        .file_paths()
        .into_iter()
        .filter(|path| path.starts_with(Path::new("/data/topic-0")))
        .collect();
    assert!(remaining.is_empty(), "{remaining:?}");
}
