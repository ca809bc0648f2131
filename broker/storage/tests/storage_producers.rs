//! Idempotent producers through `PartitionLog` on the in-memory disk: sequence checks on the
//! append path (pipelined, duplicates in flight, failures and rollback), producer snapshots at
//! roll and close, rebuilding the state at open (snapshot, replay, corrupt snapshot), and the
//! bounds (eviction, retention). The pure rules are unit-tested in `storage::producer_state`.

mod storage_support;

use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

use spate_storage::producer_snapshot::snapshot_file_name;
use spate_storage::{
    AppendOutcome, AppendWait, FaultPlan, LogConfig, MemoryFileSystem, PartitionLog, StorageError,
};
use storage_support::{
    block, directory, id_of, producer_batch, read_all, simple_batch, small_config, Setup, START_MS,
};

const PRODUCER: i64 = 1000;
const BATCH_BYTES: usize = 300;

/// What these tests add to the shared set-up: the log shared (tasks append to it at once) and
/// the partition's files by kind.
impl Setup {
    fn open_shared(&self, config: LogConfig) -> Rc<PartitionLog<MemoryFileSystem>> {
        Rc::new(self.open(config))
    }

    fn snapshot_offsets(&self) -> Vec<u64> {
        self.offsets_of("producers")
    }

    fn active_base_offset(&self) -> u64 {
        *self.offsets_of("log").last().expect("a segment exists")
    }

    /// The offsets naming the partition's files with this suffix, in order.
    fn offsets_of(&self, kind: &str) -> Vec<u64> {
        let mut offsets: Vec<u64> = self
            .disk
            .file_paths()
            .iter()
            .filter(|path| path.parent() == Some(directory().as_path()))
            .filter_map(|path| {
                let name = path.file_name()?.to_str()?;
                let (stem, suffix) = name.split_once('.')?;
                (suffix == kind).then(|| stem.parse().ok())?
            })
            .collect();
        offsets.sort_unstable();
        offsets
    }
}

/// Appends batch `sequence` (one record) of `PRODUCER` at `epoch`, test id `id`.
fn append(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    id: u64,
    epoch: i16,
    sequence: i32,
) -> Result<AppendOutcome, StorageError> {
    let log = log.clone();
    block(async move {
        log.append(
            producer_batch(id, PRODUCER, epoch, sequence, 1, BATCH_BYTES),
            AppendWait::Durable,
        )
        .await
    })
}

fn close(log: Rc<PartitionLog<MemoryFileSystem>>) {
    let log = Rc::try_unwrap(log).ok().expect("no other owner");
    block(async move { log.close().await }).expect("close");
}

fn all_ids(log: &Rc<PartitionLog<MemoryFileSystem>>) -> Vec<u64> {
    let log = log.clone();
    block(async move {
        let from = log.log_start_offset();
        read_all(&log, from, 1 << 20)
            .await
            .expect("read")
            .iter()
            .map(|bytes| id_of(bytes))
            .collect()
    })
}

fn every_disk_operation_yields(setup: &Setup) {
    setup.disk.set_faults(FaultPlan {
        yield_ppm: 1_000_000,
        ..FaultPlan::default()
    });
}

/// A log on a disk whose every operation yields, with room for two batches in the write queue
/// and about ten in a segment: later arrivals find the queue full or a roll pending while
/// earlier ones wait, and must not overtake them.
fn crowded_log(seed: u64) -> (Setup, Rc<PartitionLog<MemoryFileSystem>>) {
    let setup = Setup::new(seed);
    every_disk_operation_yields(&setup);
    let log = setup.open_shared(LogConfig {
        write_queue_bytes_max: 2 * 1024,
        batch_bytes_max: 1024,
        segment_bytes_max: 10 * 1024,
        ..small_config()
    });
    (setup, log)
}

#[test]
fn pipelined_appends_of_one_producer_are_admitted_in_arrival_order() {
    let (_setup, log) = crowded_log(1);
    let appender = log.clone();
    let outcomes = block(async move {
        let appends: Vec<_> = (0..40u64)
            .map(|sequence| {
                Box::pin(appender.append(
                    producer_batch(sequence, PRODUCER, 0, sequence as i32, 1, 1000),
                    AppendWait::Durable,
                ))
            })
            .collect();
        in_arrival_order(appends).await
    });
    for (sequence, outcome) in outcomes.iter().enumerate() {
        let outcome = outcome
            .as_ref()
            .unwrap_or_else(|error| panic!("{sequence}: {error}"));
        assert_eq!(outcome.base_offset, sequence as u64);
    }
    assert_eq!(all_ids(&log), (0..40).collect::<Vec<_>>());
    assert!(log.segment_count() > 2, "the run crossed rolls");
}

/// Polls each future once in index order (the order the requests arrive at the log), then
/// awaits every one still pending; returns the outcomes in index order.
async fn in_arrival_order<F: std::future::Future + Unpin>(mut futures: Vec<F>) -> Vec<F::Output> {
    let mut early = Vec::with_capacity(futures.len());
    for future in &mut futures {
        early.push(futures_lite::future::poll_once(future).await);
    }
    let mut outcomes = Vec::with_capacity(futures.len());
    for (future, early) in futures.into_iter().zip(early) {
        outcomes.push(match early {
            Some(outcome) => outcome,
            None => future.await,
        });
    }
    outcomes
}

#[test]
fn a_call_that_waited_for_its_turn_keeps_it_until_its_last_batch_is_admitted() {
    // As in the test above, but each request carries two batches: once a call's first batch
    // has waited for queue room or a roll, the producer's next request (already waiting) must
    // not be admitted before the call's second batch, or its sequence would leave a gap.
    let (_setup, log) = crowded_log(14);
    let appender = log.clone();
    let outcomes = block(async move {
        let calls: Vec<_> = (0..20u64)
            .map(|call| {
                let batches = (2 * call..2 * call + 2)
                    .map(|sequence| producer_batch(sequence, PRODUCER, 0, sequence as i32, 1, 1000))
                    .collect();
                Box::pin(appender.append_batches(batches, AppendWait::Durable))
            })
            .collect();
        in_arrival_order(calls).await
    });
    for (call, outcome) in outcomes.iter().enumerate() {
        let outcome = outcome
            .as_ref()
            .unwrap_or_else(|error| panic!("call {call}: {error}"));
        let base_offsets: Vec<u64> = outcome.iter().map(|one| one.base_offset).collect();
        assert_eq!(base_offsets, vec![2 * call as u64, 2 * call as u64 + 1]);
    }
    assert_eq!(all_ids(&log), (0..40).collect::<Vec<_>>());
    assert!(log.segment_count() > 2, "the run crossed rolls");
}

#[test]
fn a_retry_of_an_in_flight_batch_waits_for_it_and_returns_its_offsets() {
    let setup = Setup::new(2);
    every_disk_operation_yields(&setup);
    let log = setup.open_shared(small_config());
    append(&log, 1, 0, 0).expect("first batch");
    let appender = log.clone();
    let (original, retry, watermark_at_retry) = block(async move {
        let mut original = Box::pin(appender.append(
            producer_batch(2, PRODUCER, 0, 1, 3, BATCH_BYTES),
            AppendWait::Durable,
        ));
        assert!(
            futures_lite::future::poll_once(&mut original)
                .await
                .is_none(),
            "the original's write is in flight"
        );
        let retry = async {
            let retry = appender
                .append(
                    producer_batch(3, PRODUCER, 0, 1, 3, BATCH_BYTES),
                    AppendWait::Durable,
                )
                .await;
            (retry, appender.high_watermark())
        };
        let (original, (retry, watermark_at_retry)) =
            futures_lite::future::zip(original, retry).await;
        (original, retry, watermark_at_retry)
    });
    let original = original.expect("original");
    assert_eq!(retry.expect("retry"), original);
    assert_eq!((original.base_offset, original.next_offset), (1, 4));
    assert_eq!(
        watermark_at_retry, 4,
        "the retry returned only once the original was durable"
    );
    assert_eq!(all_ids(&log), vec![1, 2], "the retry appended nothing");
}

#[test]
fn a_retry_of_a_durable_batch_returns_its_offsets_at_once() {
    let setup = Setup::new(3);
    let log = setup.open_shared(small_config());
    let first = append(&log, 1, 0, 0).expect("first");
    append(&log, 2, 0, 1).expect("second");
    let before = setup.disk.stats();
    assert_eq!(
        append(&log, 3, 0, 0).expect("retry"),
        AppendOutcome {
            log_start_offset: 0,
            ..first
        }
    );
    assert_eq!(setup.disk.stats().writes, before.writes, "nothing written");
    assert_eq!(log.next_offset(), 2);
}

#[test]
fn a_retry_of_a_batch_whose_write_failed_fails_too_and_is_appended_afterwards() {
    let setup = Setup::new(4);
    every_disk_operation_yields(&setup);
    let log = setup.open_shared(small_config());
    append(&log, 1, 0, 0).expect("first");
    setup.disk.set_no_space(true);
    let appender = log.clone();
    let (original, retry) = block(async move {
        let mut original = Box::pin(appender.append(
            producer_batch(2, PRODUCER, 0, 1, 1, BATCH_BYTES),
            AppendWait::Durable,
        ));
        assert!(futures_lite::future::poll_once(&mut original)
            .await
            .is_none());
        let retry = appender.append(
            producer_batch(3, PRODUCER, 0, 1, 1, BATCH_BYTES),
            AppendWait::Durable,
        );
        futures_lite::future::zip(original, retry).await
    });
    assert!(
        matches!(original, Err(StorageError::NoSpace { .. })),
        "{original:?}"
    );
    assert!(
        matches!(retry, Err(StorageError::NoSpace { .. })),
        "{retry:?}"
    );
    // The rollback took the batch out of the producer state with its bytes.
    let entry = log.producer_entry(PRODUCER).expect("producer known");
    assert_eq!(entry.batches.len(), 1);
    assert_eq!(entry.batches[0].next_offset, 1);
    setup.disk.set_no_space(false);
    let again = append(&log, 4, 0, 1).expect("appended again after the rollback");
    assert_eq!((again.base_offset, again.next_offset), (1, 2));
    assert_eq!(all_ids(&log), vec![1, 4]);
}

#[test]
fn refusals_carry_the_partition_and_the_sequences() {
    let setup = Setup::new(5);
    let log = setup.open_shared(small_config());
    append(&log, 1, 3, 0).expect("first");
    match append(&log, 2, 3, 5) {
        Err(StorageError::OutOfOrderSequence {
            directory: refused_in,
            producer_id,
            producer_epoch,
            expected_sequence,
            received_sequence,
        }) => {
            assert_eq!(refused_in, directory());
            assert_eq!(
                (
                    producer_id,
                    producer_epoch,
                    expected_sequence,
                    received_sequence
                ),
                (PRODUCER, 3, 1, 5)
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        append(&log, 3, 2, 1),
        Err(StorageError::ProducerFenced {
            current_epoch: 3,
            received_epoch: 2,
            ..
        })
    ));
    assert!(matches!(
        append(&log, 4, -1, 1),
        Err(StorageError::InvalidProducerFields { .. })
    ));
    assert_eq!(all_ids(&log), vec![1], "refused batches appended nothing");
}

#[test]
fn a_call_with_several_batches_checks_each_against_the_one_before() {
    let setup = Setup::new(6);
    let log = setup.open_shared(small_config());
    let appender = log.clone();
    let outcomes = block(async move {
        let batches = (0..4)
            .map(|sequence| producer_batch(sequence, PRODUCER, 0, sequence as i32 * 2, 2, 200))
            .collect();
        appender.append_batches(batches, AppendWait::Durable).await
    })
    .expect("in sequence");
    assert_eq!(
        outcomes
            .iter()
            .map(|outcome| outcome.base_offset)
            .collect::<Vec<_>>(),
        vec![0, 2, 4, 6]
    );
    // The same call again: every batch is a duplicate of its original.
    let appender = log.clone();
    let retried = block(async move {
        let batches = (0..4)
            .map(|sequence| producer_batch(sequence, PRODUCER, 0, sequence as i32 * 2, 2, 200))
            .collect();
        appender.append_batches(batches, AppendWait::Durable).await
    })
    .expect("duplicates");
    assert_eq!(retried, outcomes);
    assert_eq!(log.next_offset(), 8);
}

#[test]
fn a_snapshot_is_written_at_each_roll_and_at_close_and_only_two_are_kept() {
    let setup = Setup::new(7);
    let log = setup.open_shared(small_config());
    // 300-byte batches, 16 KiB segments: a roll about every 54 batches.
    for sequence in 0..130 {
        append(&log, sequence as u64, 0, sequence).expect("append");
    }
    let segments = log.segment_count();
    assert!(segments >= 3, "{segments} segments");
    let offsets = setup.snapshot_offsets();
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert_eq!(
        offsets[1],
        setup.active_base_offset(),
        "the newest is at the active segment's base"
    );
    let log_end = log.next_offset();
    close(log);
    let offsets = setup.snapshot_offsets();
    assert_eq!(offsets.len(), 2, "{offsets:?}");
    assert_eq!(
        offsets[1], log_end,
        "close writes a snapshot at the log end"
    );
}

#[test]
fn after_a_clean_close_the_state_comes_from_the_snapshot_alone() {
    let setup = Setup::new(8);
    let log = setup.open_shared(small_config());
    for sequence in 0..5 {
        append(&log, sequence as u64, 0, sequence).expect("append");
    }
    close(log);
    // Replay stamps entries with the opening time; the snapshot keeps the append time.
    setup.clock.advance(Duration::from_secs(60));
    let log = setup.open_shared(small_config());
    let entry = log.producer_entry(PRODUCER).expect("restored");
    assert_eq!(entry.last_append_ms, START_MS, "not replayed");
    assert_eq!(entry.batches.len(), 5);
    let retry = append(&log, 99, 0, 4).expect("duplicate");
    assert_eq!((retry.base_offset, retry.next_offset), (4, 5));
    assert_eq!(log.next_offset(), 5);
}

#[test]
fn after_a_crash_the_state_is_rebuilt_by_replaying_the_log() {
    for seed in 0..10 {
        let setup = Setup::new(100 + seed);
        let log = setup.open_shared(small_config());
        // Crosses a roll, so replay starts from the roll's snapshot.
        for sequence in 0..70 {
            append(&log, sequence as u64, 0, sequence).expect("append");
        }
        drop(log);
        setup.disk.crash();
        setup.clock.advance(Duration::from_secs(60));
        let log = setup.open_shared(small_config());
        let entry = log.producer_entry(PRODUCER).expect("rebuilt");
        assert_eq!(entry.batches.len(), 5, "seed {seed}");
        assert_eq!(
            entry.last_append_ms,
            START_MS + 60_000,
            "seed {seed}: replayed at open"
        );
        let retry = append(&log, 999, 0, 69).expect("duplicate");
        assert_eq!(
            (retry.base_offset, retry.next_offset),
            (69, 70),
            "seed {seed}"
        );
        assert!(matches!(
            append(&log, 1000, 0, 71),
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 70,
                ..
            })
        ));
        append(&log, 1001, 0, 70).expect("the next sequence");
    }
}

#[test]
fn a_corrupt_snapshot_is_skipped_for_the_log() {
    let setup = Setup::new(9);
    let log = setup.open_shared(small_config());
    for sequence in 0..5 {
        append(&log, sequence as u64, 0, sequence).expect("append");
    }
    close(log);
    let offsets = setup.snapshot_offsets();
    assert_eq!(offsets, vec![5]);
    let path = directory().join(snapshot_file_name(5));
    setup.disk.overwrite_durably(&path, 30, &[0xff; 4]);
    setup.clock.advance(Duration::from_secs(60));
    let log = setup.open_shared(small_config());
    let entry = log.producer_entry(PRODUCER).expect("rebuilt from the log");
    assert_eq!(entry.last_append_ms, START_MS + 60_000, "replayed");
    assert_eq!(entry.batches.len(), 5);
    let retry = append(&log, 99, 0, 2).expect("duplicate");
    assert_eq!(retry.base_offset, 2);
}

#[test]
fn a_corrupt_newest_snapshot_falls_back_to_the_one_before() {
    let setup = Setup::new(10);
    let log = setup.open_shared(small_config());
    for sequence in 0..70 {
        append(&log, sequence as u64, 0, sequence).expect("append");
    }
    close(log);
    let offsets = setup.snapshot_offsets();
    assert_eq!(offsets.len(), 2);
    let newest = directory().join(snapshot_file_name(offsets[1]));
    setup.disk.overwrite_durably(&newest, 0, b"junk");
    let log = setup.open_shared(small_config());
    let retry = append(&log, 99, 0, 68).expect("duplicate");
    assert_eq!(retry.base_offset, 68);
    assert_eq!(log.next_offset(), 70);
}

#[test]
fn a_snapshot_past_the_log_end_is_lost_data_and_the_partition_is_refused() {
    let setup = Setup::new(11);
    let log = setup.open_shared(small_config());
    append(&log, 1, 0, 0).expect("append");
    close(log);
    // A snapshot claiming batches the log does not hold (as if the log had lost its tail): the
    // broker wrote it only for durable data, so the log lost offsets [1, 50).
    let real = directory().join(snapshot_file_name(1));
    let bytes = setup.disk.file_bytes(&real).expect("snapshot");
    let phantom = directory().join(snapshot_file_name(50));
    write_file(&setup.disk, &phantom, &bytes);
    let refused = try_open(&setup, small_config()).err();
    match refused {
        Some(StorageError::LostData {
            log_end,
            promised_offset,
            promised_by,
            ..
        }) => {
            assert_eq!((log_end, promised_offset), (1, 50));
            assert!(
                promised_by.contains(&snapshot_file_name(50)),
                "{promised_by}"
            );
        }
        other => panic!("expected lost data, got {other:?}"),
    }
    assert_eq!(setup.snapshot_offsets(), vec![1, 50], "nothing is removed");
    // The operator's way out (FORMAT.md, "Lost data"): remove the snapshot past the log end.
    remove_file(&setup.disk, &phantom);
    let log = setup.open_shared(small_config());
    assert_eq!(setup.snapshot_offsets(), vec![1]);
    assert!(log.producer_entry(PRODUCER).is_some());
}

fn try_open(
    setup: &Setup,
    config: LogConfig,
) -> Result<PartitionLog<MemoryFileSystem>, StorageError> {
    let disk = setup.disk.clone();
    let clock: Rc<dyn spate_storage::Clock> = setup.clock.clone();
    block(async move { PartitionLog::open(disk, directory(), config, clock).await })
}

fn remove_file(disk: &Rc<MemoryFileSystem>, path: &Path) {
    use spate_storage::FileSystem;
    let disk = disk.clone();
    let path = path.to_path_buf();
    block(async move { disk.remove_file(&path).await.expect("remove") });
}

/// Creates a file holding `bytes` (padded to a block) through the file system trait, durably.
fn write_file(disk: &Rc<MemoryFileSystem>, path: &Path, bytes: &[u8]) {
    use spate_storage::{FileSystem, IoBuffer, OpenMode, StorageFile};
    let disk = disk.clone();
    let path = path.to_path_buf();
    let bytes = bytes.to_vec();
    block(async move {
        let file = disk
            .open_file(&path, OpenMode::CreateIfMissing)
            .await
            .expect("create");
        let mut buffer = file.allocate_buffer(bytes.len().div_ceil(4096) * 4096);
        buffer.as_bytes_mut().fill(0);
        buffer.as_bytes_mut()[..bytes.len()].copy_from_slice(&bytes);
        file.write_at(0, buffer).await.expect("write");
        file.sync_data().await.expect("sync");
        disk.sync_directory(path.parent().expect("parent"))
            .await
            .expect("sync directory");
    });
}

#[test]
fn a_full_partition_evicts_the_producer_that_appended_longest_ago() {
    let setup = Setup::new(12);
    let log = setup.open_shared(LogConfig {
        producers_per_partition_max: 2,
        ..small_config()
    });
    for (index, producer_id) in [10i64, 20, 30].into_iter().enumerate() {
        let appender = log.clone();
        block(async move {
            appender
                .append(
                    producer_batch(index as u64, producer_id, 0, 0, 1, BATCH_BYTES),
                    AppendWait::Durable,
                )
                .await
        })
        .expect("append");
        setup.clock.advance(Duration::from_millis(1));
    }
    assert_eq!(log.producer_count(), 2);
    assert!(log.producer_entry(10).is_none(), "the oldest was evicted");
    assert!(log.producer_entry(20).is_some() && log.producer_entry(30).is_some());
}

#[test]
fn an_idle_producer_expires_at_the_next_roll() {
    let setup = Setup::new(13);
    let log = setup.open_shared(LogConfig {
        producer_expiry_ms: 1_000,
        ..small_config()
    });
    append(&log, 0, 0, 0).expect("append");
    setup.clock.advance(Duration::from_secs(2));
    let appender = log.clone();
    block(async move {
        // Plain batches until the segment rolls.
        for id in 1..60 {
            appender
                .append(simple_batch(id, BATCH_BYTES, START_MS), AppendWait::Durable)
                .await
                .expect("append");
        }
    });
    assert!(log.segment_count() >= 2);
    assert!(log.producer_entry(PRODUCER).is_none());
}

#[test]
fn deleting_records_past_a_producers_last_batch_forgets_it() {
    let setup = Setup::new(14);
    let log = setup.open_shared(small_config());
    append(&log, 0, 0, 0).expect("append");
    let appender = log.clone();
    block(async move {
        appender
            .append(
                producer_batch(1, 77, 0, 0, 1, BATCH_BYTES),
                AppendWait::Durable,
            )
            .await
    })
    .expect("other producer");
    let deleter = log.clone();
    block(async move { deleter.delete_records(1).await }).expect("delete records");
    assert!(log.producer_entry(PRODUCER).is_none());
    assert!(log.producer_entry(77).is_some());
    // Forgotten, so any sequence is accepted again, as for a new producer.
    append(&log, 2, 0, 42).expect("accepted");
}

#[test]
fn plain_batches_are_never_checked() {
    let setup = Setup::new(15);
    let log = setup.open_shared(small_config());
    let appender = log.clone();
    block(async move {
        for _ in 0..3 {
            // Identical bytes three times: without a producer id they are three batches.
            appender
                .append(simple_batch(5, BATCH_BYTES, START_MS), AppendWait::Durable)
                .await
                .expect("append");
        }
    });
    assert_eq!(all_ids(&log), vec![5, 5, 5]);
    assert_eq!(log.producer_count(), 0);
}

#[test]
fn a_batch_waiting_for_queue_room_is_not_admitted_after_an_earlier_batch_of_its_call_failed() {
    let setup = Setup::new(12);
    every_disk_operation_yields(&setup);
    let log = setup.open_shared(LogConfig {
        write_queue_bytes_max: 8 * 1024,
        ..small_config()
    });
    setup.disk.set_no_space(true);
    let (plain, call) = {
        let writer = log.clone();
        let caller = log.clone();
        block(async move {
            // The plain append leads a write that fails; meanwhile the call's first batch is
            // queued behind it and its second waits for queue room.
            let plain = writer.append(simple_batch(1, 5000, START_MS), AppendWait::Durable);
            let call = caller.append_batches(
                vec![
                    producer_batch(2, PRODUCER, 0, 0, 1, 2000),
                    producer_batch(3, PRODUCER, 0, 1, 1, 5000),
                ],
                AppendWait::Durable,
            );
            futures_lite::future::zip(plain, call).await
        })
    };
    assert!(
        matches!(plain, Err(StorageError::NoSpace { .. })),
        "{plain:?}"
    );
    // The rollback emptied the producer's entry, so sequence 1 would have been accepted alone.
    assert!(
        matches!(call, Err(StorageError::NoSpace { .. })),
        "{call:?}"
    );
    setup.disk.set_no_space(false);
    let syncer = log.clone();
    block(async move { syncer.sync().await }).expect("sync");
    assert_eq!(all_ids(&log), Vec::<u64>::new(), "nothing landed");
    let retrier = log.clone();
    block(async move {
        retrier
            .append_batches(
                vec![
                    producer_batch(2, PRODUCER, 0, 0, 1, 2000),
                    producer_batch(3, PRODUCER, 0, 1, 1, 5000),
                ],
                AppendWait::Durable,
            )
            .await
    })
    .expect("the retry in order is appended");
    assert_eq!(all_ids(&log), vec![2, 3]);
}

#[test]
fn a_retry_of_a_durable_batch_is_recognised_after_later_batches_were_rolled_back() {
    let setup = Setup::new(13);
    every_disk_operation_yields(&setup);
    let log = setup.open_shared(small_config());
    for sequence in 0..5 {
        append(&log, sequence as u64 + 1, 0, sequence).expect("durable");
    }
    // Five more in one call fill the producer's window, then fail and are rolled back.
    setup.disk.set_no_space(true);
    let appender = log.clone();
    let failed = block(async move {
        let batches = (5..10)
            .map(|sequence| {
                producer_batch(sequence as u64 + 1, PRODUCER, 0, sequence, 1, BATCH_BYTES)
            })
            .collect();
        appender.append_batches(batches, AppendWait::Durable).await
    });
    assert!(
        matches!(failed, Err(StorageError::NoSpace { .. })),
        "{failed:?}"
    );
    setup.disk.set_no_space(false);
    // The response to sequence 0 was lost: its resend gets the original's offsets.
    let resent = append(&log, 1, 0, 0).expect("answered as a duplicate");
    assert_eq!((resent.base_offset, resent.next_offset), (0, 1));
    assert_eq!(all_ids(&log), vec![1, 2, 3, 4, 5]);
    close(log);
    let log = setup.open_shared(small_config());
    let resent = append(&log, 1, 0, 0).expect("still a duplicate after a reopen");
    assert_eq!((resent.base_offset, resent.next_offset), (0, 1));
    assert_eq!(all_ids(&log), vec![1, 2, 3, 4, 5]);
}

/// A log whose active segment is full: the next batch needs a roll (plain batches 0 to 4).
fn log_needing_a_roll(setup: &Setup) -> Rc<PartitionLog<MemoryFileSystem>> {
    let log = setup.open_shared(small_config());
    for id in 0..5 {
        let appender = log.clone();
        block(async move {
            appender
                .append(simple_batch(id, 3000, START_MS), AppendWait::Durable)
                .await
        })
        .expect("room in the segment");
    }
    assert_eq!(log.segment_count(), 1);
    log
}

#[test]
fn a_later_batch_of_an_unknown_producer_is_refused_until_its_batch_that_failed_at_a_roll_is_resent()
{
    // Found by the storage simulation (seed 1592590629 at the commit that named it): the roll
    // before the producer's first batch failed on a full disk, nothing of the producer was
    // recorded, and its next pipelined batch was appended ahead of the lost one.
    let setup = Setup::new(14);
    let log = log_needing_a_roll(&setup);
    let send = |id: u64, sequence: i32| {
        let appender = log.clone();
        block(async move {
            appender
                .append(
                    producer_batch(id, PRODUCER, 2, sequence, 1, 3000),
                    AppendWait::Durable,
                )
                .await
        })
    };
    setup.disk.set_no_space(true);
    let first = send(10, 806);
    assert!(
        matches!(first, Err(StorageError::NoSpace { .. })),
        "{first:?}"
    );
    assert_eq!(log.segment_count(), 1, "the roll failed");
    setup.disk.set_no_space(false);
    match send(11, 807) {
        Err(StorageError::OutOfOrderSequence {
            expected_sequence,
            received_sequence,
            ..
        }) => assert_eq!((expected_sequence, received_sequence), (806, 807)),
        other => panic!("the later batch must wait for the failed one: {other:?}"),
    }
    let resent = send(10, 806).expect("the resend of the failed batch");
    let later = send(11, 807).expect("then the later batch");
    assert_eq!(
        (resent.base_offset, later.base_offset),
        (5, 6),
        "in sequence order"
    );
    assert_eq!(all_ids(&log), vec![0, 1, 2, 3, 4, 10, 11]);
}

#[test]
fn a_call_that_failed_holds_the_producer_of_every_batch_it_did_not_append() {
    let setup = Setup::new(15);
    let log = log_needing_a_roll(&setup);
    const OTHER: i64 = PRODUCER + 1;
    setup.disk.set_no_space(true);
    let caller = log.clone();
    let call = block(async move {
        caller
            .append_batches(
                vec![
                    producer_batch(10, PRODUCER, 0, 0, 1, 3000),
                    producer_batch(11, OTHER, 0, 40, 1, 300),
                ],
                AppendWait::Durable,
            )
            .await
    });
    assert!(
        matches!(call, Err(StorageError::NoSpace { .. })),
        "{call:?}"
    );
    setup.disk.set_no_space(false);
    // The other producer's batch was never checked: its next one must not land before it.
    let appender = log.clone();
    let later = block(async move {
        appender
            .append(
                producer_batch(12, OTHER, 0, 41, 1, 300),
                AppendWait::Durable,
            )
            .await
    });
    assert!(
        matches!(
            later,
            Err(StorageError::OutOfOrderSequence {
                expected_sequence: 40,
                ..
            })
        ),
        "{later:?}"
    );
    let appender = log.clone();
    block(async move {
        appender
            .append_batches(
                vec![
                    producer_batch(10, PRODUCER, 0, 0, 1, 3000),
                    producer_batch(11, OTHER, 0, 40, 1, 300),
                    producer_batch(12, OTHER, 0, 41, 1, 300),
                ],
                AppendWait::Durable,
            )
            .await
    })
    .expect("the call resent in order, with the later batch");
    assert_eq!(all_ids(&log), vec![0, 1, 2, 3, 4, 10, 11, 12]);
}
