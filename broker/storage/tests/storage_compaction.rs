//! Log compaction in the partition log: a pass keeps the last record of every key with its
//! offset and timestamp, removes tombstones only after `delete_retention_ms`, never touches the
//! active segment or young segments, honours the dirty ratio and the key map limit, keeps a
//! producer's last batch (emptied), treats Kafka batches (compressed too) like native ones,
//! drops records of aborted transactions, and survives a crash at every step of its swap.

mod storage_support;

use std::collections::BTreeMap;
use std::rc::Rc;

use bytes::BytesMut;
use spate_protocol::batch::header::{attributes, stamp_producer};
use spate_protocol::batch::kafka::{self, compression, field, Compression};
use spate_protocol::batch::retain::for_each_record;
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::constants::BATCH_BYTES_MAX;
use spate_storage::config::CleanupPolicy;
use spate_storage::{
    AppendWait, CompactionBudget, CompactionSkipped, LogConfig, MemoryFileSystem, PartitionLog,
    TxnMarker, TxnResult,
};
use storage_support::{block, directory, read_all, small_config, Setup, START_MS};

/// One record as a reader sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    offset: u64,
    timestamp: i64,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
}

fn compacted_config() -> LogConfig {
    LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        delete_retention_ms: 60_000,
        ..small_config()
    }
}

/// A native batch of `(key, value)` records, all at `timestamp`.
fn native(records: &[(&str, Option<&str>)], timestamp: i64) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions::default());
    for (key, value) in records {
        builder
            .append(
                Some(key.as_bytes()),
                value.map(str::as_bytes),
                NO_HEADERS,
                timestamp,
            )
            .expect("fits");
    }
    builder.seal().expect("not empty")
}

/// The same records as a Kafka batch a Kafka producer would send, compressed with `codec`.
fn kafka_batch(records: &[(&str, Option<&str>)], timestamp: i64, codec: Compression) -> BytesMut {
    let plain = kafka::to_kafka_v2(&native(records, timestamp)).expect("converts");
    let mut batch = plain[..kafka::KAFKA_BATCH_HEADER_BYTES].to_vec();
    let body = compression::compress(codec, &plain[kafka::KAFKA_BATCH_HEADER_BYTES..])
        .expect("compresses");
    batch.extend_from_slice(&body);
    let length = (batch.len() - field::LENGTH_OVERHEAD) as i32;
    batch[field::BATCH_LENGTH..][..4].copy_from_slice(&length.to_be_bytes());
    let attributes = codec as u16;
    batch[field::ATTRIBUTES..][..2].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&batch[field::CRC_START..]);
    batch[field::CRC..][..4].copy_from_slice(&crc.to_be_bytes());
    kafka::wrap(&batch).expect("wraps")
}

fn append(log: &Rc<PartitionLog<MemoryFileSystem>>, batch: BytesMut) -> u64 {
    let log = log.clone();
    block(async move { log.append(batch, AppendWait::Durable).await })
        .expect("append")
        .base_offset
}

fn records(log: &Rc<PartitionLog<MemoryFileSystem>>) -> Vec<Seen> {
    let log = log.clone();
    let from = log.log_start_offset();
    let batches = block(async move { read_all(&log, from, 1 << 20).await }).expect("read");
    let mut seen = Vec::new();
    let mut previous_end: Option<u64> = None;
    for batch in batches {
        let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("valid");
        // Offsets stay contiguous through compaction (removed runs become empty batches).
        if let Some(end) = previous_end {
            assert_eq!(view.base_offset(), end, "batches follow each other");
        }
        previous_end = Some(view.next_offset());
        for_each_record(&view, |record| {
            seen.push(Seen {
                offset: record.offset(),
                timestamp: record.timestamp(),
                key: record.key().map(<[u8]>::to_vec),
                value: record.value().map(<[u8]>::to_vec),
            });
        })
        .expect("records");
    }
    seen
}

/// The last value of every key among `records` (a tombstone removes the key).
fn latest(records: &[Seen]) -> BTreeMap<Vec<u8>, (u64, Vec<u8>)> {
    let mut latest = BTreeMap::new();
    for record in records {
        let key = record.key.clone().expect("keyed");
        match &record.value {
            Some(value) => latest.insert(key, (record.offset, value.clone())),
            None => latest.remove(&key),
        };
    }
    latest
}

fn compact(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    budget: CompactionBudget,
) -> spate_storage::CompactionOutcome {
    let log = log.clone();
    block(async move { log.compact(&budget).await }).expect("compact")
}

fn forced() -> CompactionBudget {
    CompactionBudget {
        force: true,
        ..CompactionBudget::default()
    }
}

/// Appends `rounds` batches over `keys` keys (one record each, value `round`), with a
/// tombstone for key `k3` in the last round, rolling segments as they fill.
fn fill(log: &Rc<PartitionLog<MemoryFileSystem>>, rounds: usize, keys: usize) -> Vec<Seen> {
    for round in 0..rounds {
        for key in 0..keys {
            let key_name = format!("k{key}");
            let value = format!("v{round}-{}", "x".repeat(200));
            let value = (!(round + 1 == rounds && key == 3)).then_some(value.as_str());
            append(log, native(&[(&key_name, value)], START_MS + round as i64));
        }
    }
    records(log)
}

#[test]
fn a_pass_keeps_the_last_record_of_every_key_with_its_offset_and_timestamp() {
    let setup = Setup::new(1);
    let log = Rc::new(setup.open(compacted_config()));
    let before = fill(&log, 12, 10);
    for round in 0..60 {
        append(
            &log,
            native(&[("filler", Some("x"))], START_MS + 100 + round),
        );
    }
    let before = [before, records(&log)].concat();
    let size_before = log.size_bytes();
    let outcome = compact(&log, forced());
    assert_eq!(outcome.skipped, None, "{outcome:?}");
    assert!(
        outcome.segments_replaced > 0 && outcome.records_removed > 0,
        "{outcome:?}"
    );
    let after = records(&log);
    assert_eq!(latest(&after), latest(&before));
    assert!(log.size_bytes() < size_before);
    assert!(outcome.bytes_after < outcome.bytes_before, "{outcome:?}");
    // Every record kept is exactly one that was written: same offset, timestamp, key, value.
    for record in &after {
        assert!(before.contains(record), "{record:?} was never written");
    }
    // Below the clean offset (the cleaned segments) each key has one record left.
    let mut keys_seen = BTreeMap::new();
    for record in after
        .iter()
        .filter(|record| record.offset < outcome.clean_offset)
    {
        assert!(
            keys_seen
                .insert(record.key.clone(), record.offset)
                .is_none(),
            "two records of {:?} in the cleaned segments",
            record.key
        );
    }
    assert!(keys_seen.len() > 5);
    // The tombstone of the last round stays in its first pass (delete.retention.ms not passed).
    assert!(after.iter().any(|record| record.value.is_none()));
    // Offsets go on from the log end, and the log reopens to the same records.
    let end = log.next_offset();
    drop(log);
    let log = Rc::new(setup.open(compacted_config()));
    assert_eq!(log.next_offset(), end);
    assert_eq!(records(&log), after);
}

#[test]
fn tombstones_go_only_after_delete_retention_once_cleaned() {
    let setup = Setup::new(2);
    let log = Rc::new(setup.open(compacted_config()));
    fill(&log, 8, 6);
    // Roll the tombstone's segment out of the active one with more rounds of other keys.
    for round in 0..60 {
        append(
            &log,
            native(&[("filler", Some("x"))], START_MS + 100 + round),
        );
    }
    compact(&log, forced());
    let has_tombstone = |log: &Rc<PartitionLog<MemoryFileSystem>>| {
        records(log)
            .iter()
            .any(|record| record.key.as_deref() == Some(b"k3") && record.value.is_none())
    };
    assert!(has_tombstone(&log), "first pass keeps it");
    compact(&log, forced());
    assert!(has_tombstone(&log), "retention not passed yet");
    setup.clock.set_now_ms(START_MS + 60_000 + 1_000);
    compact(&log, forced());
    assert!(
        !has_tombstone(&log),
        "cleaned and older than delete.retention.ms"
    );
    assert!(!records(&log)
        .iter()
        .any(|record| record.key.as_deref() == Some(b"k3")));
}

#[test]
fn the_active_segment_young_segments_and_clean_logs_are_left_alone() {
    let setup = Setup::new(3);
    let log = Rc::new(setup.open(LogConfig {
        min_compaction_lag_ms: 3_600_000,
        ..compacted_config()
    }));
    fill(&log, 6, 4);
    // Every segment is younger than the lag: nothing is cleanable.
    let outcome = compact(&log, forced());
    assert_eq!(outcome.skipped, Some(CompactionSkipped::NothingDirty));
    // Delete-only logs are never compacted.
    let deleting = Rc::new(Setup::new(4).open(small_config()));
    fill(&deleting, 2, 2);
    assert_eq!(
        compact(&deleting, forced()).skipped,
        Some(CompactionSkipped::NotCompacted)
    );
    // After a pass, the log is clean: the ratio keeps an unforced pass from running again.
    let log = Rc::new(Setup::new(5).open(compacted_config()));
    fill(&log, 30, 5);
    assert!(log.compaction_dirt().due);
    assert_eq!(compact(&log, CompactionBudget::default()).skipped, None);
    let dirt = log.compaction_dirt();
    assert!(!dirt.due, "{dirt:?}");
    assert!(matches!(
        compact(&log, CompactionBudget::default()).skipped,
        Some(CompactionSkipped::NothingDirty | CompactionSkipped::NotDue { .. })
    ));
}

#[test]
fn a_small_key_map_cleans_a_prefix_per_pass_and_loses_nothing() {
    let setup = Setup::new(6);
    let log = Rc::new(setup.open(compacted_config()));
    let before = fill(&log, 20, 12);
    let budget = CompactionBudget {
        key_map_entries_max: 5,
        force: true,
        ..CompactionBudget::default()
    };
    let mut clean_offsets = Vec::new();
    for _ in 0..40 {
        let outcome = compact(&log, budget.clone());
        assert_eq!(latest(&records(&log)), latest(&before));
        if outcome.skipped.is_some() {
            break;
        }
        clean_offsets.push(outcome.clean_offset);
    }
    assert!(clean_offsets.len() > 2, "{clean_offsets:?}");
    assert!(clean_offsets.windows(2).all(|pair| pair[0] < pair[1]));
}

#[test]
fn a_producers_last_batch_is_kept_empty_and_its_sequence_still_follows() {
    let setup = Setup::new(7);
    let log = Rc::new(setup.open(compacted_config()));
    let mut producer_batch = native(&[("p", Some("old"))], START_MS);
    stamp_producer(&mut producer_batch, 42, 0, 0);
    let producer_offset = append(&log, producer_batch);
    fill(&log, 8, 4);
    append(&log, native(&[("p", Some("new"))], START_MS + 50));
    for round in 0..60 {
        append(
            &log,
            native(&[("filler", Some("x"))], START_MS + 100 + round),
        );
    }
    compact(&log, forced());
    let log_clone = log.clone();
    let batches = block(async move { log_clone.read(producer_offset, 1).await }).expect("read");
    let view = BatchView::validate(&batches.batches[0], BATCH_BYTES_MAX).expect("valid");
    assert_eq!(view.base_offset(), producer_offset);
    assert_eq!((view.producer_id(), view.record_count()), (42, 0));
    // The producer's next batch (sequence 1) is accepted, after a reopen too.
    drop(log);
    let log = Rc::new(setup.open(compacted_config()));
    let mut next = native(&[("p", Some("newest"))], START_MS + 200);
    stamp_producer(&mut next, 42, 0, 1);
    append(&log, next);
}

#[test]
fn kafka_batches_compressed_or_not_are_compacted_like_native_ones() {
    for codec in [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ] {
        let setup = Setup::new(8);
        let log = Rc::new(setup.open(compacted_config()));
        for round in 0..200i64 {
            let value = format!("v{round}-{}", "y".repeat(300));
            let records = [
                ("a", Some(value.as_str())),
                ("b", Some("same")),
                ("c", None),
            ];
            let batch = if round % 2 == 0 {
                kafka_batch(&records, START_MS + round, codec)
            } else {
                native(&records, START_MS + round)
            };
            append(&log, batch);
        }
        let before = records(&log);
        let outcome = compact(&log, forced());
        assert!(outcome.records_removed > 0, "{codec:?} {outcome:?}");
        let after = records(&log);
        assert_eq!(latest(&after), latest(&before), "{codec:?}");
        for record in &after {
            assert!(before.contains(record), "{codec:?}: {record:?}");
        }
        // Kafka batches that were rewritten keep their codec.
        let log_clone = log.clone();
        let stored = block(async move { read_all(&log_clone, 0, 1 << 20).await }).expect("read");
        for batch in stored {
            let view = BatchView::validate(&batch, BATCH_BYTES_MAX).expect("valid");
            if view.kafka_info().is_some() {
                assert_eq!(view.compression(), codec);
            }
        }
    }
}

/// Appends a transaction marker of `producer_id` (epoch 0) through the log's marker path.
fn marker(log: &Rc<PartitionLog<MemoryFileSystem>>, producer_id: i64, commit: bool) {
    let log = log.clone();
    block(async move {
        log.append_txn_marker(
            TxnMarker {
                producer_id,
                producer_epoch: 0,
                coordinator_epoch: 0,
                result: if commit {
                    TxnResult::Commit
                } else {
                    TxnResult::Abort
                },
            },
            START_MS,
        )
        .await
    })
    .expect("marker");
}

/// Appends a transactional batch that opens `producer_id`'s transaction (verified first).
fn append_transactional(
    log: &Rc<PartitionLog<MemoryFileSystem>>,
    batch: BytesMut,
    producer_id: i64,
) {
    let guard = log.begin_txn_verification(producer_id, 0);
    let log = log.clone();
    block(async move {
        log.append_batches_verified(vec![batch], AppendWait::Durable, guard)
            .await
    })
    .expect("transactional append");
}

fn transactional(records: &[(&str, Option<&str>)], producer_id: i64, sequence: i32) -> BytesMut {
    let mut builder = BatchBuilder::new(BatchOptions {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        attributes: attributes::TRANSACTIONAL,
        ..BatchOptions::default()
    });
    for (key, value) in records {
        builder
            .append(
                Some(key.as_bytes()),
                value.map(str::as_bytes),
                NO_HEADERS,
                START_MS,
            )
            .expect("fits");
    }
    builder.seal().expect("not empty")
}

#[test]
fn records_of_aborted_transactions_are_removed_and_markers_kept() {
    let setup = Setup::new(9);
    let log = Rc::new(setup.open(compacted_config()));
    append(&log, native(&[("t", Some("committed-before"))], START_MS));
    append_transactional(&log, transactional(&[("t", Some("aborted"))], 5, 0), 5);
    marker(&log, 5, false);
    append_transactional(&log, transactional(&[("u", Some("committed"))], 6, 0), 6);
    marker(&log, 6, true);
    for round in 0..300 {
        append(&log, native(&[("filler", Some("x"))], START_MS + round));
    }
    assert_eq!(compact(&log, forced()).skipped, None);
    let after = records(&log);
    let values: Vec<_> = after
        .iter()
        .filter(|record| record.key.as_deref() != Some(b"filler"))
        .map(|record| (record.key.clone(), record.value.clone()))
        .collect();
    let text = |bytes: &[u8]| bytes.to_vec();
    // The aborted value is gone and did not hide the committed one before it; markers stay.
    assert!(values.contains(&(Some(text(b"t")), Some(text(b"committed-before")))));
    assert!(values.contains(&(Some(text(b"u")), Some(text(b"committed")))));
    assert!(!values.contains(&(Some(text(b"t")), Some(text(b"aborted")))));
    let markers = after
        .iter()
        .filter(|record| record.key.as_deref().is_some_and(|key| key.len() == 4))
        .count();
    assert_eq!(markers, 2);
}

/// Crashes (power loss) a forced pass after each of its disk operations in turn: every reopen
/// finds a whole log (old segments or new ones), no compaction file left, the same live keys
/// with their last values, and the log end where it was.
#[test]
fn a_crash_at_every_step_of_a_pass_leaves_old_or_new_segments() {
    // Each step is crashed on three disks: a power loss keeps a random half of the directory
    // changes not yet synced, so one try may keep exactly the ones that hide a wrong order.
    const TRIES_PER_STEP: u64 = 12;
    let mut operations = 0u64;
    loop {
        let mut finished = None;
        for attempt in 0..TRIES_PER_STEP {
            finished = crash_pass_after(operations, 10 + operations * TRIES_PER_STEP + attempt);
        }
        if let Some(outcome) = finished {
            assert!(operations > 10, "the pass did some I/O");
            assert!(
                outcome.segments_replaced > outcome.segments_written,
                "the pass merged segments: {outcome:?}"
            );
            break;
        }
        operations += 1;
    }
}

/// Runs a pass that stops after `operations` disk operations, then a power loss and a reopen,
/// and checks the log; the pass's outcome if it finished first.
fn crash_pass_after(operations: u64, seed: u64) -> Option<spate_storage::CompactionOutcome> {
    let setup = Setup::new(seed);
    let log = Rc::new(setup.open(compacted_config()));
    // A first pass shrinks the segments, so that the second one (crashed) merges them.
    fill(&log, 20, 6);
    let first = compact(&log, forced());
    assert_eq!(first.segments_replaced, first.segments_written);
    let before = fill(&log, 20, 6);
    let end = log.next_offset();
    setup.disk.stop_after_operations(operations);
    let log_clone = log.clone();
    let result = block(async move { log_clone.compact(&forced()).await });
    drop(log);
    setup.disk.crash();
    let context = format!("after {operations} operations, seed {seed}");
    let disk = setup.disk.clone();
    let clock: Rc<dyn spate_storage::Clock> = setup.clock.clone();
    let log =
        block(
            async move { PartitionLog::open(disk, directory(), compacted_config(), clock).await },
        )
        .unwrap_or_else(|error| panic!("open {context}: {error}"));
    let log = Rc::new(log);
    assert_eq!(log.next_offset(), end, "{context}");
    assert_eq!(latest(&records(&log)), latest(&before), "{context}");
    let names = setup
        .disk
        .file_paths()
        .into_iter()
        .filter(|path| path.starts_with(directory()))
        .map(|path| path.display().to_string())
        .collect::<Vec<_>>();
    assert!(
        !names
            .iter()
            .any(|name| name.ends_with(".swap") || name.ends_with(".cleaned")),
        "{context}: {names:?}"
    );
    result.ok()
}

#[test]
fn markers_stay_while_their_transaction_has_records_and_go_like_tombstones_after() {
    let setup = Setup::new(11);
    let log = Rc::new(setup.open(compacted_config()));
    append_transactional(&log, transactional(&[("t", Some("aborted"))], 5, 0), 5);
    marker(&log, 5, false);
    // Producer 5 goes on, so its aborted batch is not its last (which would stay, emptied,
    // and keep its marker with it).
    append_transactional(&log, transactional(&[("t2", Some("committed"))], 5, 1), 5);
    marker(&log, 5, true);
    append_transactional(&log, transactional(&[("u", Some("committed"))], 6, 0), 6);
    marker(&log, 6, true);
    for round in 0..300 {
        append(&log, native(&[("filler", Some("x"))], START_MS + round));
    }
    let markers = |log: &Rc<PartitionLog<MemoryFileSystem>>| {
        records(log)
            .iter()
            .filter(|record| record.key.as_deref().is_some_and(|key| key.len() == 4))
            .map(|record| record.offset)
            .collect::<Vec<_>>()
    };
    compact(&log, forced());
    compact(&log, forced());
    let all = markers(&log);
    assert_eq!(
        all.len(),
        3,
        "before delete.retention.ms every marker stays"
    );
    setup.clock.set_now_ms(START_MS + 60_000 + 1_000);
    compact(&log, forced());
    assert_eq!(
        markers(&log),
        all[1..].to_vec(),
        "the abort marker's data is gone, so it goes; the commits' records stay, so do they"
    );
    // Producer 6 commits a newer "u": the first transaction's record goes, then its marker.
    append_transactional(&log, transactional(&[("u", Some("newer"))], 6, 1), 6);
    marker(&log, 6, true);
    for round in 0..300 {
        append(
            &log,
            native(&[("filler", Some("y"))], START_MS + 61_000 + round),
        );
    }
    compact(&log, forced());
    setup.clock.set_now_ms(START_MS + 200_000);
    compact(&log, forced());
    let left = markers(&log);
    assert_eq!(left.len(), 2, "{left:?}");
    assert_eq!(left[0], all[1], "producer 5's commit stays with its record");
    assert!(records(&log)
        .iter()
        .any(|record| record.value.as_deref() == Some(b"newer".as_slice())));
}

/// A disk that fails right after a swap's commit point: the running log cannot serve both the
/// old segments (in memory) and the new one (on disk), so it reports itself lost (the owner
/// takes it offline, appends are refused); a reopen completes the swap and loses nothing.
#[test]
fn a_swap_failing_after_its_commit_point_takes_the_log_offline_until_reopened() {
    let mut operations = 0u64;
    loop {
        let setup = Setup::new(40 + operations);
        let log = Rc::new(setup.open(compacted_config()));
        let before = fill(&log, 20, 6);
        setup.disk.stop_after_operations(operations);
        let log_clone = log.clone();
        let result = block(async move { log_clone.compact(&forced()).await });
        if result.is_ok() {
            panic!("no step of the pass left the log lost before it finished");
        }
        let lost = log.lost();
        drop(log);
        setup.disk.crash();
        if lost.is_none() {
            operations += 1;
            continue;
        }
        let log = Rc::new(setup.open(compacted_config()));
        assert_eq!(latest(&records(&log)), latest(&before));
        append(&log, native(&[("after", Some("reopen"))], START_MS));
        break;
    }
}

/// A producer batch that compaction left with fewer records keeps its sequence range: a replay
/// of the whole log (no producer snapshot left) still expects the sequence after its last one.
#[test]
fn a_replay_from_the_log_start_reads_a_compacted_producers_sequences_from_its_offsets() {
    let setup = Setup::new(12);
    let log = Rc::new(setup.open(compacted_config()));
    let mut producer_batch = native(
        &[("a", Some("1")), ("b", Some("2")), ("c", Some("3"))],
        START_MS,
    );
    stamp_producer(&mut producer_batch, 42, 0, 0);
    let producer_offset = append(&log, producer_batch);
    append(
        &log,
        native(&[("a", Some("newer")), ("b", Some("newer"))], START_MS),
    );
    for round in 0..120 {
        append(
            &log,
            native(&[("filler", Some(&"x".repeat(100)))], START_MS + round),
        );
    }
    compact(&log, forced());
    let log_clone = log.clone();
    let read = block(async move { log_clone.read(producer_offset, 1).await }).expect("read");
    let view = BatchView::validate(&read.batches[0], BATCH_BYTES_MAX).expect("valid");
    assert_eq!(
        (view.record_count(), view.next_offset()),
        (1, producer_offset + 3)
    );
    let log = Rc::try_unwrap(log).ok().expect("one owner");
    block(async move { log.close().await }).expect("close");
    // No snapshot and no recovery point: the open replays every batch header from the start.
    let disk = setup.disk.clone();
    block(async move {
        use spate_storage::FileSystem;
        for path in disk.file_paths() {
            let name = path.display().to_string();
            if name.ends_with(".producers") || name.ends_with("recovery-point") {
                disk.remove_file(&path).await.expect("remove");
            }
        }
        disk.sync_directory(&directory()).await.expect("sync");
    });
    let log = Rc::new(setup.open(compacted_config()));
    let mut next = native(&[("d", Some("4"))], START_MS + 500);
    stamp_producer(&mut next, 42, 0, 3);
    append(&log, next);
}
