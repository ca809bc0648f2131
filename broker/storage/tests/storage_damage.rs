//! Reads of a partition whose files an operator or the medium damaged after a clean close: a
//! flipped byte in a closed segment's batch payload or header, and tampered index files. Good
//! batches are still served, damaged ones are reported with a typed error that names where
//! reading can go on, and deleting the records before that point makes the rest readable.

mod storage_support;

use std::path::{Path, PathBuf};
use std::rc::Rc;

use spate_storage::segment::{segment_file_name, SegmentFileKind};
use spate_storage::{AppendWait, LogConfig, MemoryFileSystem, PartitionLog, StorageError};
use storage_support::{
    block, directory, id_of, read_all, simple_batch, small_config, Setup, START_MS,
};

/// Every test batch is this long, so batch `n` of segment 0 starts at byte `n * BATCH_BYTES`.
const BATCH_BYTES: usize = 300;
/// Batches in the test log: several 16 KiB segments of 54 batches each.
const BATCH_COUNT: u64 = 150;

fn segment_path(base_offset: u64, kind: SegmentFileKind) -> PathBuf {
    directory().join(segment_file_name(base_offset, kind))
}

/// A closed, reopened log of [`BATCH_COUNT`] batches (batch `n` has id `n` at offset `n` and
/// timestamp `START_MS + n`), after `damage` changed its files on disk.
fn damaged_log(
    seed: u64,
    damage: impl FnOnce(&MemoryFileSystem),
) -> (Setup, Rc<PartitionLog<MemoryFileSystem>>) {
    let setup = Setup::new(seed);
    let log = Rc::new(setup.open(small_config()));
    let appender = log.clone();
    block(async move {
        for id in 0..BATCH_COUNT {
            appender
                .append(
                    simple_batch(id, BATCH_BYTES, START_MS + id as i64),
                    AppendWait::Durable,
                )
                .await
                .expect("append");
        }
    });
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    assert!(
        setup
            .disk
            .file_bytes(&segment_path(54, SegmentFileKind::Log))
            .is_some(),
        "segment 0 is closed"
    );
    damage(&setup.disk);
    let log = Rc::new(setup.open(small_config()));
    (setup, log)
}

fn flip_byte(disk: &MemoryFileSystem, path: &Path, position: usize) {
    let bytes = disk.file_bytes(path).expect("file exists");
    disk.overwrite_durably(path, position as u64, &[!bytes[position]]);
}

fn read(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    offset: u64,
    max_bytes: usize,
) -> Result<Vec<u64>, StorageError> {
    let log = log.clone();
    block(async move {
        let read = log.read(offset, max_bytes).await?;
        Ok(read.batches.iter().map(|batch| id_of(batch)).collect())
    })
}

fn ids_from(log: &Rc<PartitionLog<MemoryFileSystem>>, offset: u64) -> Vec<u64> {
    let log = log.clone();
    block(async move {
        read_all(&log, offset, 4096)
            .await
            .expect("read")
            .iter()
            .map(|batch| id_of(batch))
            .collect()
    })
}

fn delete_records(log: &Rc<PartitionLog<MemoryFileSystem>>, before: u64) {
    let log = log.clone();
    block(async move { log.delete_records(before).await.expect("delete records") });
}

/// The offsets a `CorruptBatch` error reports: (first unreadable, readable again from).
fn reported_range(error: StorageError) -> (u64, u64) {
    match error {
        StorageError::CorruptBatch {
            offset,
            readable_from,
            ref path,
            ..
        } => {
            assert_eq!(*path, segment_path(0, SegmentFileKind::Log));
            (offset, readable_from)
        }
        other => panic!("expected a corrupt batch error, got {other}"),
    }
}

#[test]
fn a_read_spanning_a_damaged_payload_returns_the_batches_before_it() {
    let (_setup, log) = damaged_log(1, |disk| {
        flip_byte(
            disk,
            &segment_path(0, SegmentFileKind::Log),
            21 * BATCH_BYTES + 100,
        );
    });
    assert_eq!(
        read(&log, 0, 64 * 1024).expect("read"),
        (0..21).collect::<Vec<_>>()
    );
    assert_eq!(
        read(&log, 15, 64 * 1024).expect("read"),
        (15..21).collect::<Vec<_>>()
    );
}

#[test]
fn a_damaged_payload_is_reported_as_exactly_its_batch_and_the_rest_stays_readable() {
    let (_setup, log) = damaged_log(2, |disk| {
        flip_byte(
            disk,
            &segment_path(0, SegmentFileKind::Log),
            21 * BATCH_BYTES + 100,
        );
    });
    let error = read(&log, 21, 1).expect_err("the damaged batch is not served");
    let text = error.to_string();
    assert!(text.contains("byte 6300"), "{text}");
    assert!(text.contains("offset 22"), "{text}");
    assert_eq!(reported_range(error), (21, 22));
    // Batches after it are served, also by reads that start before it in the same index interval.
    assert_eq!(read(&log, 22, 1).expect("read"), vec![22]);
    assert_eq!(ids_from(&log, 22), (22..BATCH_COUNT).collect::<Vec<_>>());
    delete_records(&log, 22);
    assert_eq!(
        ids_from(&log, log.log_start_offset()),
        (22..BATCH_COUNT).collect::<Vec<_>>()
    );
}

#[test]
fn a_damaged_header_makes_the_batches_up_to_the_next_index_entry_unreadable_and_no_further() {
    let (_setup, log) = damaged_log(3, |disk| {
        // The magic byte of batch 21's header: its length can no longer be trusted.
        flip_byte(
            disk,
            &segment_path(0, SegmentFileKind::Log),
            21 * BATCH_BYTES + 20,
        );
    });
    assert_eq!(
        read(&log, 0, 64 * 1024).expect("read"),
        (0..21).collect::<Vec<_>>()
    );
    let (first, readable_from) = reported_range(read(&log, 21, 1).expect_err("damaged"));
    assert_eq!(first, 21);
    assert!(readable_from > 21 && readable_from <= 54, "{readable_from}");
    for offset in 21..readable_from {
        let (first, again) = reported_range(read(&log, offset, 1).expect_err("damaged"));
        assert_eq!((first, again), (21, readable_from));
    }
    assert_eq!(
        ids_from(&log, readable_from),
        (readable_from..BATCH_COUNT).collect::<Vec<_>>()
    );
    delete_records(&log, readable_from);
    assert_eq!(
        ids_from(&log, log.log_start_offset()),
        (readable_from..BATCH_COUNT).collect::<Vec<_>>()
    );
}

#[test]
fn a_timestamp_lookup_reports_damage_that_may_hold_its_answer_and_steps_over_deleted_damage() {
    let (_setup, log) = damaged_log(5, |disk| {
        flip_byte(
            disk,
            &segment_path(0, SegmentFileKind::Log),
            21 * BATCH_BYTES + 20,
        );
    });
    let lookup = |timestamp: i64| {
        let log = log.clone();
        block(async move { log.offset_for_timestamp(timestamp).await })
    };
    assert_eq!(lookup(START_MS + 10).expect("lookup"), Some(10));
    // The index starts the scan before batch 21, whose header is damaged.
    let error = lookup(START_MS + 21).expect_err("the damage may hold the answer");
    let (_, readable_from) = reported_range(error);
    delete_records(&log, readable_from);
    assert_eq!(lookup(START_MS + 21).expect("lookup"), Some(readable_from));
}

#[test]
fn a_config_with_a_larger_index_interval_still_reads_a_damaged_log() {
    // The index files were written with another interval than the one now configured.
    let (setup, log) = damaged_log(6, |disk| {
        flip_byte(
            disk,
            &segment_path(0, SegmentFileKind::Log),
            30 * BATCH_BYTES + 100,
        );
    });
    drop(log);
    let config = LogConfig {
        index_interval_bytes: 4096,
        ..small_config()
    };
    let log = Rc::new(setup.open(config));
    assert_eq!(
        read(&log, 0, 64 * 1024).expect("read"),
        (0..30).collect::<Vec<_>>()
    );
    assert_eq!(
        reported_range(read(&log, 30, 1).expect_err("damaged")),
        (30, 31)
    );
}

/// Rewrites every time index entry of segment `base_offset` to `shift_ms` earlier: still
/// growing, so it loads, but each entry now claims batches before it are older than they are.
fn shift_time_index(disk: &MemoryFileSystem, base_offset: u64, shift_ms: i64) {
    let path = segment_path(base_offset, SegmentFileKind::TimeIndex);
    let mut bytes = disk.file_bytes(&path).expect("time index");
    let mut entries = 0;
    for entry in bytes.chunks_exact_mut(12) {
        let timestamp = i64::from_le_bytes(entry[..8].try_into().unwrap());
        if timestamp == 0 {
            break;
        }
        entry[..8].copy_from_slice(&(timestamp - shift_ms).to_le_bytes());
        entries += 1;
    }
    assert!(entries > 10, "the segment has time index entries");
    disk.overwrite_durably(&path, 0, &bytes);
}

fn lookup(log: &Rc<PartitionLog<MemoryFileSystem>>, timestamp: i64) -> Option<u64> {
    let log = log.clone();
    block(async move { log.offset_for_timestamp(timestamp).await.expect("lookup") })
}

#[test]
fn a_tampered_time_index_of_a_closed_segment_is_caught_and_rebuilt() {
    let original = std::cell::RefCell::new(Vec::new());
    let (setup, log) = damaged_log(7, |disk| {
        let path = segment_path(0, SegmentFileKind::TimeIndex);
        *original.borrow_mut() = disk.file_bytes(&path).expect("time index");
        shift_time_index(disk, 0, 20);
    });
    for batch in [0, 1, 25, 40, 53] {
        assert_eq!(
            lookup(&log, START_MS + batch as i64),
            Some(batch),
            "batch {batch}"
        );
    }
    let path = segment_path(0, SegmentFileKind::TimeIndex);
    let rewritten = setup.disk.file_bytes(&path).expect("time index");
    let original = original.borrow();
    assert_eq!(
        rewritten[..original.len()],
        original[..],
        "the index was rebuilt on disk"
    );
}

#[test]
fn a_tampered_time_index_of_the_active_segment_never_gives_a_later_offset() {
    let (_setup, log) = damaged_log(8, |disk| shift_time_index(disk, 108, 20));
    for batch in [108, 109, 120, 140, 149] {
        assert_eq!(
            lookup(&log, START_MS + batch as i64),
            Some(batch),
            "batch {batch}"
        );
    }
}

#[test]
fn offset_index_entries_shifted_by_a_batch_never_change_what_a_read_returns() {
    let (_setup, log) = damaged_log(9, |disk| {
        let path = segment_path(0, SegmentFileKind::OffsetIndex);
        let mut bytes = disk.file_bytes(&path).expect("offset index");
        for entry in bytes.chunks_exact_mut(8) {
            let position = u32::from_le_bytes(entry[4..8].try_into().unwrap());
            if position == 0 {
                break;
            }
            entry[4..8].copy_from_slice(&(position + BATCH_BYTES as u32).to_le_bytes());
        }
        disk.overwrite_durably(&path, 0, &bytes);
    });
    for offset in 0..BATCH_COUNT {
        assert_eq!(read(&log, offset, 1).expect("read"), vec![offset]);
    }
}

/// Disk reads by a timestamp lookup.
fn lookup_reads(setup: &Setup, log: &Rc<PartitionLog<MemoryFileSystem>>, timestamp: i64) -> u64 {
    let before = setup.disk.stats().reads;
    let found = lookup(log, timestamp);
    assert_eq!(found, Some((timestamp - START_MS) as u64), "at {timestamp}");
    setup.disk.stats().reads - before
}

#[test]
fn a_tampered_time_index_of_the_active_segment_is_rebuilt_once_and_remembered() {
    let (setup, log) = damaged_log(10, |disk| shift_time_index(disk, 108, 20));
    let first = lookup_reads(&setup, &log, START_MS + 140);
    // Before: every lookup checked the entries again, warned, and scanned the segment whole.
    let later = lookup_reads(&setup, &log, START_MS + 140);
    assert!(
        later * 2 < first,
        "the second lookup read {later} times, the first {first}"
    );
    // Batches appended after the rebuild are indexed on top of it.
    let appender = log.clone();
    block(async move {
        for id in BATCH_COUNT..BATCH_COUNT + 20 {
            appender
                .append(
                    simple_batch(id, BATCH_BYTES, START_MS + id as i64),
                    AppendWait::Durable,
                )
                .await
                .expect("append");
        }
    });
    for batch in [108, 120, 149, 150, 160, 169] {
        assert_eq!(lookup(&log, START_MS + batch), Some(batch as u64));
    }
    // The rebuilt entries reach the disk: after a reopen they check out (no rescan needed).
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    let log = Rc::new(setup.open(small_config()));
    let first = lookup_reads(&setup, &log, START_MS + 160);
    let later = lookup_reads(&setup, &log, START_MS + 160);
    assert!(later <= first, "{later} > {first}");
    for batch in [108, 130, 169] {
        assert_eq!(lookup(&log, START_MS + batch), Some(batch as u64));
    }
}

#[test]
fn retention_checks_a_segments_largest_timestamp_before_deleting_it_by_age() {
    const RECENT_MS: i64 = START_MS + 1_000_000;
    let setup = Setup::new(11);
    let config = LogConfig {
        retention_ms: Some(500_000),
        ..small_config()
    };
    let log = Rc::new(setup.open(config.clone()));
    let appender = log.clone();
    block(async move {
        for id in 0..BATCH_COUNT {
            // Batch 1 is recent: segment 0 must be kept until it expires.
            let timestamp = if id == 1 {
                RECENT_MS
            } else {
                START_MS + id as i64
            };
            appender
                .append(
                    simple_batch(id, BATCH_BYTES, timestamp),
                    AppendWait::Durable,
                )
                .await
                .expect("append");
        }
    });
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    // The time index of segment 0 now claims every batch before each entry is old: at open,
    // its largest timestamp comes out as that of its last batches (START_MS + 53).
    let path = segment_path(0, SegmentFileKind::TimeIndex);
    let mut bytes = setup.disk.file_bytes(&path).expect("time index");
    for entry in bytes.chunks_exact_mut(12) {
        if entry[..8].iter().all(|byte| *byte == 0) {
            break;
        }
        entry[..8].copy_from_slice(&START_MS.to_le_bytes());
    }
    setup.disk.overwrite_durably(&path, 0, &bytes);
    let log = Rc::new(setup.open(config));

    setup
        .clock
        .advance(std::time::Duration::from_millis(1_200_000));
    let retainer = log.clone();
    let outcome = block(async move { retainer.enforce_retention().await }).expect("retention");
    // Before: segment 0 (and batch 1 with it) was deleted 300 s before it expired.
    assert_eq!(outcome.segments_deleted, 0, "{outcome:?}");
    assert_eq!(ids_from(&log, 0)[..3], [0, 1, 2]);
    // Once it has expired by its true timestamp, it goes.
    setup
        .clock
        .advance(std::time::Duration::from_millis(400_000));
    let retainer = log.clone();
    let outcome = block(async move { retainer.enforce_retention().await }).expect("retention");
    assert!(outcome.segments_deleted >= 1, "{outcome:?}");
}

#[test]
fn a_lookup_never_skips_a_closed_segment_on_a_largest_timestamp_it_has_not_checked() {
    const RECENT_MS: i64 = START_MS + 1_000_000;
    let setup = Setup::new(12);
    let log = Rc::new(setup.open(small_config()));
    let appender = log.clone();
    block(async move {
        for id in 0..BATCH_COUNT {
            // Batch 1 is the newest of segment 0, and newer than every later batch.
            let timestamp = if id == 1 {
                RECENT_MS
            } else {
                START_MS + id as i64
            };
            appender
                .append(
                    simple_batch(id, BATCH_BYTES, timestamp),
                    AppendWait::Durable,
                )
                .await
                .expect("append");
        }
    });
    let log = Rc::try_unwrap(log).ok().expect("sole owner");
    block(async move { log.close().await.expect("close") });
    // Segment 0's time index claims every batch before each entry is old: at open, its largest
    // timestamp comes out as that of its last batches (START_MS + 53), below batch 1's.
    let path = segment_path(0, SegmentFileKind::TimeIndex);
    let mut bytes = setup.disk.file_bytes(&path).expect("time index");
    for entry in bytes.chunks_exact_mut(12) {
        if entry[..8].iter().all(|byte| *byte == 0) {
            break;
        }
        entry[..8].copy_from_slice(&START_MS.to_le_bytes());
    }
    setup.disk.overwrite_durably(&path, 0, &bytes);
    let log = Rc::new(setup.open(small_config()));
    // Before: segment 0 was skipped on the claimed START_MS + 53, and the lookup answered 100,
    // skipping batch 1 and the 98 batches after it without a word.
    assert_eq!(lookup(&log, START_MS + 100), Some(1));
    assert_eq!(lookup(&log, RECENT_MS), Some(1));
    assert_eq!(lookup(&log, RECENT_MS + 1), None);
    // Checked once: the corrected largest timestamp is remembered, and the answers stay.
    assert_eq!(lookup(&log, START_MS + 100), Some(1));
}
