//! The recovery point: what an open after a crash need not re-read, and the durable promise
//! that lets an open tell lost data from a torn tail.
//!
//! Checked on the in-memory disk: a crash at every step of writing a recovery point (and its
//! producer snapshot) leaves a log that opens with every durable batch; an open after a crash
//! replays only what was written after the recovery point; a log cut below its recovery point,
//! or whose active segment is deleted, is refused as lost data instead of reusing offsets.

mod storage_support;

use std::rc::Rc;

use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{
    AppendWait, Clock, FaultPlan, FileSystem, LogConfig, MemoryFileSystem, PartitionLog,
    RecoveryScan, StorageError,
};
use storage_support::{block, directory, read_all, simple_batch, small_config, Setup, Simulator};

const BATCHES: u64 = 40;

fn config() -> LogConfig {
    LogConfig {
        // One segment: the replay after a crash would otherwise be bounded by rolls anyway.
        segment_bytes_max: 1 << 20,
        ..small_config()
    }
}

fn try_open(setup: &Setup) -> Result<PartitionLog<MemoryFileSystem>, StorageError> {
    let disk = setup.disk.clone();
    let clock: Rc<dyn Clock> = setup.clock.clone();
    block(async move { PartitionLog::open(disk, directory(), config(), clock).await })
}

/// Appends `count` durable batches numbered from `first`.
fn append_durably(log: &Rc<PartitionLog<MemoryFileSystem>>, first: u64, count: u64) {
    let appender = log.clone();
    block(async move {
        for id in first..first + count {
            appender
                .append(simple_batch(id, 300, 0), AppendWait::Durable)
                .await
                .expect("append");
        }
    });
}

fn checkpoint(log: &Rc<PartitionLog<MemoryFileSystem>>) -> bool {
    let log = log.clone();
    block(async move {
        log.checkpoint_recovery_point(true)
            .await
            .expect("checkpoint")
    })
}

fn read_offsets(log: PartitionLog<MemoryFileSystem>) -> usize {
    let log = Rc::new(log);
    let reader = log.clone();
    block(async move { read_all(&reader, 0, 4096).await })
        .expect("read")
        .len()
}

#[test]
fn a_crash_at_every_step_of_writing_a_recovery_point_keeps_every_durable_batch() {
    let mut completed = false;
    for steps in 1..400 {
        let setup = Setup::new(steps);
        // Every disk operation yields once: each poll of the simulator is one more step done.
        setup.disk.set_faults(FaultPlan {
            yield_ppm: 1_000_000,
            ..FaultPlan::default()
        });
        let log = Rc::new(setup.open(config()));
        append_durably(&log, 0, BATCHES);
        let mut simulator = Simulator::new(steps);
        let writer = log.clone();
        simulator.spawn(async move {
            writer
                .checkpoint_recovery_point(true)
                .await
                .expect("checkpoint");
        });
        let unfinished = simulator.run(steps as usize);
        simulator.abandon_all();
        drop(log);
        setup.disk.crash();
        let reopened = try_open(&setup)
            .unwrap_or_else(|error| panic!("open after a crash at step {steps}: {error}"));
        let recovery_point = reopened.recovery_report().recovery_point;
        assert!(
            recovery_point.is_none() || recovery_point == Some(BATCHES),
            "step {steps}: recovery point {recovery_point:?}"
        );
        assert_eq!(reopened.next_offset(), BATCHES, "step {steps}");
        assert_eq!(read_offsets(reopened), BATCHES as usize, "step {steps}");
        if unfinished == 0 {
            completed = true;
            break;
        }
    }
    assert!(completed, "the checkpoint never completed");
}

#[test]
fn an_open_after_a_crash_replays_only_what_follows_the_recovery_point() {
    let setup = Setup::new(3);
    let log = Rc::new(setup.open(config()));
    append_durably(&log, 0, BATCHES);
    assert!(checkpoint(&log), "a recovery point was due");
    append_durably(&log, BATCHES, 2);
    drop(log);
    setup.disk.crash();
    let reopened = try_open(&setup).expect("open");
    let report = reopened.recovery_report();
    assert_eq!(report.recovery_point, Some(BATCHES));
    // Two batches of 300 bytes after the recovery point; before it, the whole segment (12 KB)
    // was replayed.
    assert_eq!(report.bytes_replayed, 600, "{report:?}");
    assert_eq!(reopened.next_offset(), BATCHES + 2);
}

#[test]
fn a_log_cut_below_its_recovery_point_is_refused_as_lost_data() {
    let setup = Setup::new(4);
    let log = Rc::new(setup.open(config()));
    append_durably(&log, 0, BATCHES);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let log_path = directory().join(segment_file_name(0, SegmentFileKind::Log));
    setup.disk.set_length_durably(&log_path, 0);
    match try_open(&setup).err() {
        Some(StorageError::LostData {
            log_end,
            promised_offset,
            ..
        }) => assert_eq!((log_end, promised_offset), (0, BATCHES)),
        other => panic!("expected lost data, got {other:?}"),
    }
    // Refused again: nothing was changed that would let a second open reuse the offsets.
    assert!(matches!(
        try_open(&setup).err(),
        Some(StorageError::LostData { .. })
    ));
}

#[test]
fn a_deleted_active_segment_is_refused_as_lost_data() {
    let setup = Setup::new(5);
    let log = Rc::new(setup.open(LogConfig {
        segment_bytes_max: 4 * 1024,
        batch_bytes_max: 4 * 1024,
        ..small_config()
    }));
    append_durably(&log, 0, BATCHES);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    let active_base = log.describe();
    block(async move { log.close().await.expect("close") });
    let disk = setup.disk.clone();
    let removed = block(async move {
        let mut logs: Vec<String> = disk
            .list_directory(&directory())
            .await
            .expect("list")
            .into_iter()
            .filter(|name| name.ends_with(".log"))
            .collect();
        logs.sort();
        let active = logs.pop().expect("an active segment");
        disk.remove_file(&directory().join(&active))
            .await
            .expect("remove");
        active
    });
    match try_open(&setup).err() {
        Some(StorageError::LostData {
            log_end,
            promised_offset,
            ..
        }) => assert!(
            log_end < promised_offset && promised_offset == BATCHES,
            "{log_end} {promised_offset} ({removed}, {active_base})"
        ),
        other => panic!("expected lost data after removing {removed}, got {other:?}"),
    }
}

#[test]
fn a_missing_partition_directory_is_not_recreated() {
    let setup = Setup::new(6);
    let disk = setup.disk.clone();
    let clock: Rc<dyn Clock> = setup.clock.clone();
    let opened =
        block(async move { PartitionLog::open_existing(disk, directory(), config(), clock).await });
    assert!(matches!(
        opened.err(),
        Some(StorageError::MissingDirectory { .. })
    ));
    let disk = setup.disk.clone();
    let listed = block(async move { disk.list_directory(&directory()).await });
    assert!(listed.is_err(), "the directory was created");
}

#[test]
fn a_close_with_nothing_appended_since_its_recovery_point_writes_nothing() {
    let setup = Setup::new(7);
    let log = Rc::new(setup.open(config()));
    append_durably(&log, 0, BATCHES);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    // Opened and closed again without an append: the recovery point and its snapshot on disk
    // are already as of the log end.
    let reopened = setup.open(config());
    assert_eq!(reopened.recovery_report().recovery_point, Some(BATCHES));
    let before = setup.disk.stats();
    block(async move { reopened.close().await.expect("close") });
    let after = setup.disk.stats();
    assert_eq!(
        (after.writes, after.data_syncs, after.directory_syncs),
        (before.writes, before.data_syncs, before.directory_syncs),
        "an idle close wrote or synced"
    );
    // And the close stays durable: after a crash nothing is replayed or lost.
    setup.disk.crash();
    let reopened = try_open(&setup).expect("open");
    let report = reopened.recovery_report();
    assert_eq!(report.recovery_point, Some(BATCHES));
    assert_eq!(report.bytes_replayed, 0, "{report:?}");
    assert_eq!(read_offsets(reopened), BATCHES as usize);
}

#[test]
fn a_close_after_an_append_writes_a_new_recovery_point() {
    let setup = Setup::new(8);
    let log = Rc::new(setup.open(config()));
    append_durably(&log, 0, BATCHES);
    assert!(checkpoint(&log));
    append_durably(&log, BATCHES, 1);
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    setup.disk.crash();
    let reopened = try_open(&setup).expect("open");
    assert_eq!(reopened.recovery_report().recovery_point, Some(BATCHES + 1));
    assert_eq!(reopened.recovery_report().bytes_replayed, 0);
}

#[test]
fn a_full_recovery_scan_checks_the_whole_active_segment_and_keeps_every_batch() {
    let open_with = |setup: &Setup, recovery_scan: RecoveryScan| {
        let disk = setup.disk.clone();
        let clock: Rc<dyn Clock> = setup.clock.clone();
        let config = LogConfig {
            recovery_scan,
            ..config()
        };
        block(async move { PartitionLog::open(disk, directory(), config, clock).await })
            .expect("open")
    };
    let setup = Setup::new(9);
    let log = Rc::new(setup.open(config()));
    append_durably(&log, 0, BATCHES);
    assert!(checkpoint(&log));
    append_durably(&log, BATCHES, 2);
    drop(log);
    setup.disk.crash();
    let trusting = open_with(&setup, RecoveryScan::Checkpoints);
    let scanned_from_index = trusting.recovery_report().bytes_scanned;
    drop(trusting);
    let full = open_with(&setup, RecoveryScan::Full);
    let report = full.recovery_report();
    // 42 batches of 300 bytes: every one of them checked.
    assert_eq!(report.bytes_scanned, (BATCHES + 2) * 300, "{report:?}");
    assert!(
        scanned_from_index < report.bytes_scanned,
        "the default scan starts at the last index entry: {scanned_from_index}"
    );
    assert_eq!(full.next_offset(), BATCHES + 2);
    assert_eq!(read_offsets(full), (BATCHES + 2) as usize);
}
