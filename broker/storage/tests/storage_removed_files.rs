//! A partition's files removed under an open log (an operator's `rm -rf` of the partition or
//! topic directory, or of the active segment): writes to the unlinked file still succeed, and
//! so does its `fdatasync`, but nothing of it survives a restart. The log checks the active
//! segment's link count after every sync, before it acknowledges what the sync covered, and on
//! the owner's timer: once the file is unlinked, nothing more is acknowledged and the log
//! reports itself lost, so that the owner takes the partition offline.

mod storage_support;

use std::rc::Rc;

use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{
    AppendWait, CachedFileSystem, Clock, MemoryFileSystem, PartitionLog, StorageError,
};
use storage_support::{block, directory, simple_batch, small_config, Setup, START_MS};

const BATCH_BYTES: usize = 300;

fn append(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    id: u64,
    wait: AppendWait,
) -> Result<u64, StorageError> {
    let log = log.clone();
    block(async move {
        log.append(simple_batch(id, BATCH_BYTES, START_MS + id as i64), wait)
            .await
            .map(|outcome| outcome.base_offset)
    })
}

fn assert_unlinked(result: Result<u64, StorageError>) {
    match result {
        Err(StorageError::Unlinked { path }) => assert_eq!(
            path,
            directory().join(segment_file_name(0, SegmentFileKind::Log))
        ),
        other => panic!("expected the unlinked segment to be reported, got {other:?}"),
    }
}

/// A log with three durable batches at offsets 0..3.
fn log_with_batches(setup: &Setup) -> Rc<PartitionLog<MemoryFileSystem>> {
    let log = Rc::new(setup.open(small_config()));
    for id in 0..3 {
        assert_eq!(append(&log, id, AppendWait::Durable).unwrap(), id);
    }
    log
}

#[test]
fn a_durable_append_after_the_directory_is_removed_is_never_acknowledged() {
    let setup = Setup::new(1);
    let log = log_with_batches(&setup);
    setup.disk.remove_tree_durably(&directory());

    assert_unlinked(append(&log, 3, AppendWait::Durable));
    assert!(log.lost().is_some(), "the log does not report itself lost");
    // Every later append is refused, even one that waits only for the write.
    assert_unlinked(append(&log, 4, AppendWait::Written));
    assert_unlinked(append(&log, 5, AppendWait::Durable));
    assert_eq!(
        log.high_watermark(),
        3,
        "the refused appends became visible"
    );

    // A restart finds the directory gone: refused, not recreated empty.
    drop(log);
    let disk = setup.disk.clone();
    let clock: Rc<dyn Clock> = setup.clock.clone();
    let reopened = block(async move {
        PartitionLog::open_existing(disk, directory(), small_config(), clock).await
    });
    assert!(
        matches!(reopened, Err(StorageError::MissingDirectory { .. })),
        "the reopen was not refused: {:?}",
        reopened.err()
    );
}

#[test]
fn an_append_acknowledged_as_written_is_caught_by_the_next_sync() {
    let setup = Setup::new(2);
    let log = log_with_batches(&setup);
    setup.disk.remove_tree_durably(&directory());

    // acks=leader promises the write, not durability: it is acknowledged...
    assert_eq!(append(&log, 3, AppendWait::Written).unwrap(), 3);
    assert!(log.lost().is_none());
    // ...and the sync that would make it durable (the owner's timer runs it) reports the loss.
    let syncing = log.clone();
    let synced = block(async move { syncing.sync().await });
    assert!(
        matches!(synced, Err(StorageError::Unlinked { .. })),
        "{synced:?}"
    );
    assert!(log.lost().is_some());
    assert_eq!(
        log.high_watermark(),
        3,
        "the unsynced batch became readable"
    );
    assert_unlinked(append(&log, 4, AppendWait::Durable));
}

#[test]
fn an_idle_log_finds_its_removed_active_segment_on_the_timer_check() {
    let setup = Setup::new(3);
    let log = log_with_batches(&setup);
    let checking = log.clone();
    block(async move { checking.check_linked().await }).expect("linked before the removal");

    let disk = setup.disk.clone();
    block(async move {
        use spate_storage::FileSystem;
        disk.remove_file(&directory().join(segment_file_name(0, SegmentFileKind::Log)))
            .await
    })
    .expect("remove the active segment");
    let checking = log.clone();
    let checked = block(async move { checking.check_linked().await });
    assert!(
        matches!(checked, Err(StorageError::Unlinked { .. })),
        "{checked:?}"
    );
    assert!(log.lost().is_some());
    assert_unlinked(append(&log, 3, AppendWait::Durable));
}

#[test]
fn a_file_closed_by_the_open_file_cache_and_removed_counts_as_unlinked() {
    let setup = Setup::new(4);
    // One open file at most: the segment's three files evict each other.
    let files = Rc::new(CachedFileSystem::new((*setup.disk).clone(), 1));
    let clock: Rc<dyn Clock> = setup.clock.clone();
    let opening = files.clone();
    let log = Rc::new(
        block(async move { PartitionLog::open(opening, directory(), small_config(), clock).await })
            .expect("open"),
    );
    let appender = log.clone();
    block(async move {
        appender
            .append(simple_batch(0, BATCH_BYTES, START_MS), AppendWait::Durable)
            .await
    })
    .expect("append");
    setup.disk.remove_tree_durably(&directory());
    let appender = log.clone();
    let appended = block(async move {
        appender
            .append(
                simple_batch(1, BATCH_BYTES, START_MS + 1),
                AppendWait::Durable,
            )
            .await
    });
    assert!(appended.is_err(), "acknowledged: {appended:?}");
    let checking = log.clone();
    let checked = block(async move { checking.check_linked().await });
    assert!(
        matches!(checked, Err(StorageError::Unlinked { .. })),
        "{checked:?}"
    );
}
