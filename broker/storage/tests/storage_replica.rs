//! Replication support of `PartitionLog` on the in-memory disk, one rule per test: the leader
//! epoch stamped and its cache (durable, answering OffsetsForLeaderEpoch), a follower's
//! `append_replica` (bytes kept, offsets checked, producer and transaction state followed),
//! `truncate_to` and `truncate_fully_and_start_at` (durable, state rebuilt, crash-safe at every
//! disk operation), and the committed offset bounding readers of a replicated partition.

mod storage_support;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use spate_protocol::batch::header::{attributes, compute_crc};
use spate_storage::leader_epochs::EpochEntry;
use spate_storage::{
    AppendWait, LogConfig, MemoryFileSystem, PartitionLog, StorageError, TxnMarker, TxnResult,
};
use storage_support::{
    block, directory, header_of, id_of, producer_batch, read_all, simple_batch, small_config, Setup,
};

type Log = Rc<PartitionLog<MemoryFileSystem>>;

const BATCH_BYTES: usize = 700;

fn open(setup: &Setup) -> Log {
    Rc::new(setup.open(small_config()))
}

fn try_open(
    setup: &Setup,
    config: LogConfig,
) -> Result<PartitionLog<MemoryFileSystem>, StorageError> {
    let disk = setup.disk.clone();
    let clock: Rc<dyn spate_storage::Clock> = setup.clock.clone();
    block(async move { PartitionLog::open(disk, directory(), config, clock).await })
}

fn append(log: &Log, batch: BytesMut) -> u64 {
    let log = log.clone();
    block(async move { log.append(batch, AppendWait::Durable).await })
        .expect("append")
        .base_offset
}

fn set_epoch(log: &Log, epoch: i32) -> Result<(), StorageError> {
    let log = log.clone();
    block(async move { log.set_leader_epoch(epoch).await })
}

/// Every durable batch from `from` (a follower's view: past the committed offset too).
fn replica_batches(log: &Log, from: u64) -> Vec<Bytes> {
    let log = log.clone();
    block(async move {
        let mut batches = Vec::new();
        let mut offset = from;
        loop {
            let read = log.read_replica(offset, 64 * 1024).await.expect("read");
            let Some(last) = read.batches.last() else {
                return batches;
            };
            offset = header_of(last).next_offset();
            batches.extend(read.batches);
        }
    })
}

fn copy(log: &Log, batches: &[Bytes]) -> Result<u64, StorageError> {
    let log = log.clone();
    let batches = batches
        .iter()
        .map(|bytes| BytesMut::from(&bytes[..]))
        .collect();
    block(async move { log.append_replica(batches).await })
}

fn truncate_to(log: &Log, offset: u64) -> Result<(), StorageError> {
    let log = log.clone();
    block(async move { log.truncate_to(offset).await })
}

fn close(log: Log) {
    let log = Rc::try_unwrap(log).ok().expect("one owner");
    block(async move { log.close().await }).expect("close");
}

fn reads(log: &Log) -> Vec<Bytes> {
    let log = log.clone();
    let from = log.log_start_offset();
    block(async move { read_all(&log, from, 64 * 1024).await }).expect("read")
}

fn entry(epoch: i32, start_offset: u64) -> EpochEntry {
    EpochEntry {
        epoch,
        start_offset,
    }
}

/// `batch` with the header's attributes ORed with `bits` (CRC recomputed).
fn with_attributes(mut batch: BytesMut, bits: u16) -> BytesMut {
    let mut header = header_of(&batch);
    header.attributes |= bits;
    header.encode(&mut batch);
    header.crc = compute_crc(&batch);
    header.encode(&mut batch);
    batch
}

/// A leader with batches 0..3 in epoch 1, 3..5 in epoch 4 (ids = offsets).
fn leader_with_two_epochs(setup: &Setup) -> Log {
    let leader = open(setup);
    set_epoch(&leader, 1).expect("epoch 1");
    for id in 0..3 {
        append(&leader, simple_batch(id, BATCH_BYTES, 1_000));
    }
    set_epoch(&leader, 4).expect("epoch 4");
    for id in 3..5 {
        append(&leader, simple_batch(id, BATCH_BYTES, 1_000));
    }
    leader
}

#[test]
fn appends_carry_the_leader_epoch_and_the_cache_records_where_each_epoch_starts() {
    let setup = Setup::new(1);
    let leader = leader_with_two_epochs(&setup);
    let epochs: Vec<u32> = reads(&leader)
        .iter()
        .map(|batch| header_of(batch).leader_epoch)
        .collect();
    assert_eq!(epochs, vec![1, 1, 1, 4, 4]);
    assert_eq!(leader.leader_epochs(), vec![entry(1, 0), entry(4, 3)]);
    assert_eq!(leader.latest_epoch(), Some(4));
    assert_eq!(leader.end_offset_for_epoch(1), Some((1, 3)));
    assert_eq!(leader.end_offset_for_epoch(3), Some((1, 3)));
    assert_eq!(leader.end_offset_for_epoch(4), Some((4, 5)));
    // Below the first epoch: where the first one starts (Kafka's answer).
    assert_eq!(leader.end_offset_for_epoch(0), Some((0, 0)));
    assert_eq!(leader.end_offset_for_epoch(5), None);
    // Durable: a power loss and an open find the same cache and stamp the latest epoch.
    drop(leader);
    setup.disk.crash();
    let leader = open(&setup);
    assert_eq!(leader.leader_epochs(), vec![entry(1, 0), entry(4, 3)]);
    assert_eq!(leader.leader_epoch(), 4);
}

#[test]
fn a_single_brokers_log_keeps_epoch_zero_and_writes_no_epoch_file() {
    let setup = Setup::new(2);
    let log = open(&setup);
    append(&log, simple_batch(0, BATCH_BYTES, 1_000));
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 1)));
    assert!(setup
        .disk
        .file_bytes(&directory().join("leader-epochs"))
        .is_none());
    // A first epoch on such a log keeps epoch 0's history for followers asking about it.
    set_epoch(&log, 2).expect("epoch");
    append(&log, simple_batch(1, BATCH_BYTES, 1_000));
    assert_eq!(log.leader_epochs(), vec![entry(0, 0), entry(2, 1)]);
    assert_eq!(log.end_offset_for_epoch(0), Some((0, 1)));
}

#[test]
fn an_older_leader_epoch_is_refused() {
    let setup = Setup::new(3);
    let log = open(&setup);
    set_epoch(&log, 5).expect("epoch");
    assert!(matches!(
        set_epoch(&log, 4),
        Err(StorageError::StaleLeaderEpoch {
            latest: 5,
            received: 4,
            ..
        })
    ));
    set_epoch(&log, 5).expect("the same epoch again");
    assert_eq!(log.leader_epochs(), vec![entry(5, 0)]);
}

#[test]
fn a_follower_stores_the_leaders_bytes_as_they_are_with_their_epochs() {
    let setup = Setup::new(4);
    let leader = leader_with_two_epochs(&setup);
    let follower_setup = Setup::new(5);
    let follower = open(&follower_setup);
    let batches = replica_batches(&leader, 0);
    assert_eq!(copy(&follower, &batches[..2]).expect("copy"), 2);
    assert_eq!(copy(&follower, &batches[2..]).expect("copy"), 5);
    assert_eq!(replica_batches(&follower, 0), batches);
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
    assert_eq!(follower.durable_end(), 5);
    // Epochs survive a power loss on the follower too.
    drop(follower);
    follower_setup.disk.crash();
    let follower = open(&follower_setup);
    assert_eq!(follower.leader_epochs(), vec![entry(1, 0), entry(4, 3)]);
    assert_eq!(replica_batches(&follower, 0), batches);
}

#[test]
fn a_replica_append_that_does_not_continue_the_log_is_refused_and_appends_nothing() {
    let setup = Setup::new(6);
    let leader = leader_with_two_epochs(&setup);
    let follower = open(&Setup::new(7));
    let batches = replica_batches(&leader, 0);
    assert!(matches!(
        copy(&follower, &batches[1..]),
        Err(StorageError::ReplicaOffsetMismatch {
            expected: 0,
            received: 1,
            ..
        })
    ));
    // A gap inside the call.
    let gapped = vec![batches[0].clone(), batches[2].clone()];
    assert!(matches!(
        copy(&follower, &gapped),
        Err(StorageError::ReplicaOffsetMismatch {
            expected: 1,
            received: 2,
            ..
        })
    ));
    assert_eq!(follower.log_end(), 0);
    // A damaged batch.
    let mut damaged = BytesMut::from(&batches[0][..]);
    let last = damaged.len() - 1;
    damaged[last] ^= 1;
    assert!(copy(&follower, &[damaged.freeze()]).is_err());
    assert_eq!(follower.log_end(), 0);
    assert!(follower.leader_epochs().is_empty());
}

#[test]
fn a_replica_batch_of_an_older_epoch_than_the_log_holds_is_refused() {
    let setup = Setup::new(8);
    let leader = leader_with_two_epochs(&setup);
    let follower = open(&Setup::new(9));
    let batches = replica_batches(&leader, 0);
    copy(&follower, &batches[..4]).expect("copy");
    let mut older = BytesMut::from(&batches[4][..]);
    spate_protocol::batch::header::stamp(&mut older, 4, 2);
    assert!(matches!(
        copy(&follower, &[older.freeze()]),
        Err(StorageError::StaleLeaderEpoch {
            latest: 4,
            received: 2,
            ..
        })
    ));
}

#[test]
fn a_follower_that_becomes_leader_answers_a_retried_batch_as_a_duplicate() {
    let setup = Setup::new(10);
    let leader = open(&setup);
    set_epoch(&leader, 1).expect("epoch");
    append(&leader, producer_batch(0, 77, 0, 0, 2, BATCH_BYTES));
    append(&leader, producer_batch(1, 77, 0, 2, 3, BATCH_BYTES));
    let follower = open(&Setup::new(11));
    copy(&follower, &replica_batches(&leader, 0)).expect("copy");
    set_epoch(&follower, 2).expect("the follower leads now");
    // The producer retries its last batch (its answer was lost with the old leader).
    let retry = producer_batch(1, 77, 0, 2, 3, BATCH_BYTES);
    let log = follower.clone();
    let outcome =
        block(async move { log.append(retry, AppendWait::Durable).await }).expect("retry");
    assert_eq!((outcome.base_offset, outcome.next_offset), (2, 5));
    assert_eq!(follower.log_end(), 5);
    // And its next batch continues the sequence.
    let next = producer_batch(2, 77, 0, 5, 1, BATCH_BYTES);
    assert_eq!(append(&follower, next), 5);
}

#[test]
fn a_follower_keeps_transactions_and_aborted_ones_from_the_leaders_markers() {
    let setup = Setup::new(12);
    let leader = open(&setup);
    set_epoch(&leader, 1).expect("epoch");
    let producer = 500;
    let guard = leader.begin_txn_verification(producer, 0);
    let batch = with_attributes(
        producer_batch(0, producer, 0, 0, 1, BATCH_BYTES),
        attributes::TRANSACTIONAL,
    );
    let log = leader.clone();
    block(async move {
        log.append_batches_verified(vec![batch], AppendWait::Durable, guard)
            .await
    })
    .expect("transactional batch");
    append(&leader, simple_batch(1, BATCH_BYTES, 1_000));
    let follower = open(&Setup::new(13));
    copy(&follower, &replica_batches(&leader, 0)).expect("copy");
    assert_eq!(follower.ongoing_transaction(producer), Some(0));
    assert_eq!(follower.last_stable_offset(), 0);
    let log = leader.clone();
    block(async move {
        log.append_txn_marker(
            TxnMarker {
                producer_id: producer,
                producer_epoch: 0,
                coordinator_epoch: 3,
                result: TxnResult::Abort,
            },
            2_000,
        )
        .await
    })
    .expect("marker");
    copy(&follower, &replica_batches(&leader, 2)).expect("copy marker");
    assert_eq!(follower.ongoing_transaction(producer), None);
    assert_eq!(follower.last_stable_offset(), 3);
    let log = follower.clone();
    let aborted = block(async move { log.aborted_transactions(0, 3).await }).expect("aborted");
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id, aborted[0].first_offset),
        (producer, 0)
    );
}

#[test]
fn truncation_removes_everything_from_the_batch_holding_the_offset() {
    let setup = Setup::new(14);
    let log = open(&setup);
    set_epoch(&log, 1).expect("epoch");
    // Batches of 2 offsets each, over several segments.
    for id in 0..30u64 {
        append(
            &log,
            storage_support::batch(id, 2, BATCH_BYTES, 1_000, 1_000),
        );
        if id == 20 {
            set_epoch(&log, 3).expect("epoch 3");
        }
    }
    assert!(log.segment_count() > 1);
    assert_eq!(log.leader_epochs(), vec![entry(1, 0), entry(3, 42)]);
    // Offset 41 is in the batch [40, 42): the log ends at 40.
    truncate_to(&log, 41).expect("truncate");
    assert_eq!(log.log_end(), 40);
    assert_eq!(log.durable_end(), 40);
    assert_eq!(log.leader_epochs(), vec![entry(1, 0)]);
    // Epoch 3 lost its entry: appends carry the latest epoch the cache still dates.
    assert_eq!(log.leader_epoch(), 1);
    let ids: Vec<u64> = reads(&log).iter().map(|batch| id_of(batch)).collect();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
    // Appends continue at the new end, and it all survives a power loss.
    assert_eq!(
        append(
            &log,
            storage_support::batch(99, 2, BATCH_BYTES, 1_000, 1_000)
        ),
        40
    );
    drop(log);
    setup.disk.crash();
    let log = open(&setup);
    assert_eq!(log.log_end(), 42);
    let ids: Vec<u64> = reads(&log).iter().map(|batch| id_of(batch)).collect();
    assert_eq!(ids.len(), 21);
    assert_eq!(ids[20], 99);
    assert_eq!(log.leader_epochs(), vec![entry(1, 0)]);
    // Truncating to a segment boundary and to the log end (nothing to do).
    truncate_to(&log, 42).expect("no-op");
    assert_eq!(log.log_end(), 42);
}

#[test]
fn truncation_forgets_producer_batches_past_the_new_end() {
    let setup = Setup::new(15);
    let log = open(&setup);
    append(&log, producer_batch(0, 9, 0, 0, 1, BATCH_BYTES));
    append(&log, producer_batch(1, 9, 0, 1, 1, BATCH_BYTES));
    append(&log, producer_batch(2, 9, 0, 2, 1, BATCH_BYTES));
    // A close writes a snapshot at 3, which the truncation must remove.
    close(log);
    let log = open(&setup);
    truncate_to(&log, 1).expect("truncate");
    let entry = log.producer_entry(9).expect("producer");
    assert_eq!(
        entry.batches.back().map(|batch| batch.last_sequence),
        Some(0)
    );
    // Sequence 1 is the next one again; 2 would be out of order.
    assert!(matches!(
        {
            let log = log.clone();
            block(async move {
                log.append(
                    producer_batch(2, 9, 0, 2, 1, BATCH_BYTES),
                    AppendWait::Durable,
                )
                .await
            })
        },
        Err(StorageError::OutOfOrderSequence { .. })
    ));
    assert_eq!(append(&log, producer_batch(1, 9, 0, 1, 1, BATCH_BYTES)), 1);
    close(log);
    let log = open(&setup);
    assert_eq!(log.log_end(), 2);
}

#[test]
fn truncation_removes_aborted_transactions_whose_marker_it_cuts() {
    let setup = Setup::new(16);
    let log = open(&setup);
    let producer = 600;
    let guard = log.begin_txn_verification(producer, 0);
    let batch = with_attributes(
        producer_batch(0, producer, 0, 0, 1, BATCH_BYTES),
        attributes::TRANSACTIONAL,
    );
    let clone = log.clone();
    block(async move {
        clone
            .append_batches_verified(vec![batch], AppendWait::Durable, guard)
            .await
    })
    .expect("transactional batch");
    let clone = log.clone();
    block(async move {
        clone
            .append_txn_marker(
                TxnMarker {
                    producer_id: producer,
                    producer_epoch: 0,
                    coordinator_epoch: 0,
                    result: TxnResult::Abort,
                },
                2_000,
            )
            .await
    })
    .expect("marker");
    // The close writes the aborted entry to the txn index.
    close(log);
    let log = open(&setup);
    let clone = log.clone();
    assert_eq!(
        block(async move { clone.aborted_transactions(0, 2).await })
            .unwrap()
            .len(),
        1
    );
    truncate_to(&log, 1).expect("truncate the marker");
    let clone = log.clone();
    assert!(block(async move { clone.aborted_transactions(0, 2).await })
        .unwrap()
        .is_empty());
    assert_eq!(log.ongoing_transaction(producer), Some(0));
    assert_eq!(log.last_stable_offset(), 0);
    close(log);
    let log = open(&setup);
    let clone = log.clone();
    assert!(block(async move { clone.aborted_transactions(0, 2).await })
        .unwrap()
        .is_empty());
    assert_eq!(log.ongoing_transaction(producer), Some(0));
}

#[test]
fn truncation_below_the_log_start_is_refused() {
    let setup = Setup::new(17);
    let log = open(&setup);
    for id in 0..30 {
        append(&log, simple_batch(id, BATCH_BYTES, 1_000));
    }
    let clone = log.clone();
    let start = block(async move { clone.delete_records(25).await }).expect("delete");
    assert_eq!(start, 25);
    assert!(matches!(
        truncate_to(&log, 24),
        Err(StorageError::TruncateBelowLogStart { .. })
    ));
    assert_eq!(log.log_end(), 30);
    truncate_to(&log, 25).expect("truncate to the log start");
    assert_eq!(log.log_end(), 25);
    assert_eq!(log.log_start_offset(), 25);
}

#[test]
fn a_full_truncation_starts_the_log_over_at_the_offset() {
    let setup = Setup::new(18);
    let leader = leader_with_two_epochs(&setup);
    let follower_setup = Setup::new(19);
    let follower = open(&follower_setup);
    for id in 0..20 {
        append(&follower, simple_batch(100 + id, BATCH_BYTES, 1_000));
    }
    let clone = follower.clone();
    block(async move { clone.truncate_fully_and_start_at(3).await }).expect("truncate fully");
    assert_eq!((follower.log_start_offset(), follower.log_end()), (3, 3));
    assert_eq!(follower.segment_count(), 1);
    assert!(follower.leader_epochs().is_empty());
    assert_eq!(follower.committed_offset(), 3);
    copy(&follower, &replica_batches(&leader, 3)).expect("copy from the leader's offset");
    assert_eq!(follower.log_end(), 5);
    assert_eq!(follower.leader_epochs(), vec![entry(4, 3)]);
    drop(follower);
    follower_setup.disk.crash();
    let follower = open(&follower_setup);
    assert_eq!((follower.log_start_offset(), follower.log_end()), (3, 5));
    assert_eq!(replica_batches(&follower, 3), replica_batches(&leader, 3));
}

/// The ids of the readable batches, after a power loss at the `operations`-th disk operation
/// of `truncate_to(offset)` and a reopen; and whether the truncation had completed.
fn crash_truncation_after(operations: u64, offset: u64) -> (Vec<u64>, bool) {
    let setup = Setup::new(20 + operations);
    let log = open(&setup);
    set_epoch(&log, 1).expect("epoch");
    for id in 0..40u64 {
        append(&log, simple_batch(id, BATCH_BYTES, 1_000));
        if id == 25 {
            set_epoch(&log, 2).expect("epoch 2");
        }
    }
    setup.disk.stop_after_operations(operations);
    let result = truncate_to(&log, offset);
    drop(log);
    setup.disk.crash();
    let context = format!("crash after {operations} operations");
    let log = Rc::new(
        try_open(&setup, small_config()).unwrap_or_else(|error| panic!("{context}: {error}")),
    );
    let ids: Vec<u64> = reads(&log).iter().map(|batch| id_of(batch)).collect();
    let epochs = log.leader_epochs();
    if ids.len() == 40 {
        assert_eq!(epochs, vec![entry(1, 0), entry(2, 26)], "{context}");
    } else {
        assert_eq!(epochs, vec![entry(1, 0)], "{context}");
    }
    // The log goes on from whichever end it has.
    let end = log.log_end();
    assert_eq!(
        append(&log, simple_batch(1000, BATCH_BYTES, 1_000)),
        end,
        "{context}"
    );
    (ids, result.is_ok())
}

#[test]
fn a_power_loss_at_any_step_of_a_truncation_leaves_the_old_log_or_the_truncated_one() {
    let old: Vec<u64> = (0..40).collect();
    let truncated: Vec<u64> = (0..13).collect();
    let mut saw = (false, false);
    for operations in 0.. {
        let (ids, completed) = crash_truncation_after(operations, 13);
        assert!(
            ids == old || ids == truncated,
            "crash after {operations} operations: {ids:?}"
        );
        if ids == old {
            saw.0 = true;
        } else {
            saw.1 = true;
        }
        if completed {
            assert_eq!(ids, truncated);
            break;
        }
        assert!(operations < 500, "the truncation never completed");
    }
    assert_eq!(saw, (true, true));
}

#[test]
fn a_replicated_partition_serves_readers_only_below_the_committed_offset() {
    let setup = Setup::new(21);
    let log = open(&setup);
    for id in 0..5 {
        append(&log, simple_batch(id, BATCH_BYTES, 1_000 + id as i64));
    }
    // Unreplicated: the durable end, as always.
    assert_eq!(log.high_watermark(), 5);
    log.set_replicated(true);
    assert_eq!(log.high_watermark(), 0);
    log.set_committed_offset(3);
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(log.last_stable_offset(), 3);
    assert_eq!(reads(&log).len(), 3);
    // Followers read past it.
    assert_eq!(replica_batches(&log, 0).len(), 5);
    // Timestamp lookups do not reveal what readers may not see.
    let clone = log.clone();
    assert_eq!(
        block(async move { clone.offset_for_timestamp(1_004).await }).unwrap(),
        None
    );
    let clone = log.clone();
    assert_eq!(
        block(async move { clone.offset_for_timestamp(1_002).await }).unwrap(),
        Some(2)
    );
    // DeleteRecords stops at it too.
    let clone = log.clone();
    assert!(block(async move { clone.delete_records(4).await }).is_err());
    // Past the durable end it counts for nothing.
    log.set_committed_offset(50);
    assert_eq!(log.high_watermark(), 5);
    log.set_committed_offset(4);
    close(log);
    // Persisted at close; the reopened replica starts from it, never past its log end.
    let log = open(&setup);
    log.set_replicated(true);
    assert_eq!(log.committed_offset(), 4);
    assert_eq!(log.high_watermark(), 4);
}

#[test]
fn a_committed_offset_past_the_log_end_after_a_loss_is_cut_to_the_log_end() {
    let setup = Setup::new(22);
    let log = open(&setup);
    for id in 0..5 {
        append(&log, simple_batch(id, BATCH_BYTES, 1_000));
    }
    log.set_replicated(true);
    log.set_committed_offset(5);
    let clone = log.clone();
    block(async move { clone.checkpoint_recovery_point(true).await }).expect("checkpoint");
    drop(log);
    // Truncate through the API on a reopened log: the checkpoint follows.
    let log = open(&setup);
    assert_eq!(log.committed_offset(), 5);
    truncate_to(&log, 2).expect("truncate");
    assert_eq!(log.committed_offset(), 2);
    drop(log);
    setup.disk.crash();
    let log = open(&setup);
    assert_eq!(log.committed_offset(), 2);
}

#[test]
fn epoch_entries_past_the_log_end_are_dropped_at_open() {
    let setup = Setup::new(23);
    let leader = leader_with_two_epochs(&setup);
    let follower_setup = Setup::new(24);
    let follower = open(&follower_setup);
    let batches = replica_batches(&leader, 0);
    copy(&follower, &batches[..2]).expect("copy");
    // The next copy starts epoch 4: its entry is written, then the disk stops before the
    // batches are durable.
    follower_setup.disk.stop_after_operations(8);
    let _ = copy(&follower, &batches[2..]);
    drop(follower);
    follower_setup.disk.crash();
    let follower = open(&follower_setup);
    let end = follower.log_end();
    let expected: Vec<EpochEntry> = [entry(1, 0), entry(4, 3)]
        .into_iter()
        .filter(|entry| entry.start_offset <= end)
        .collect();
    assert_eq!(follower.leader_epochs(), expected, "log end {end}");
    // Whatever survived, copying the rest brings the follower level with the leader.
    copy(&follower, &batches[end as usize..]).expect("copy the rest");
    assert_eq!(follower.leader_epochs(), leader.leader_epochs());
}

#[test]
fn a_follower_of_an_epoch_zero_leader_records_epoch_zero() {
    let setup = Setup::new(25);
    let leader = open(&setup);
    set_epoch(&leader, 0).expect("epoch 0");
    append(&leader, simple_batch(0, BATCH_BYTES, 1_000));
    assert_eq!(leader.leader_epochs(), vec![entry(0, 0)]);
    let follower = open(&Setup::new(26));
    copy(&follower, &replica_batches(&leader, 0)).expect("copy");
    assert_eq!(follower.leader_epochs(), vec![entry(0, 0)]);
    assert_eq!(follower.end_offset_for_epoch(0), Some((0, 1)));
}

#[test]
fn a_replica_batch_replaces_an_epoch_that_started_at_the_log_end_without_appending() {
    let setup = Setup::new(27);
    let leader = leader_with_two_epochs(&setup);
    // This replica led in epoch 5 once, with nothing appended (found by the replica
    // simulation, seed 6221104).
    let follower = open(&Setup::new(28));
    set_epoch(&follower, 5).expect("epoch 5");
    copy(&follower, &replica_batches(&leader, 0)).expect("copy");
    assert_eq!(follower.leader_epochs(), vec![entry(1, 0), entry(4, 3)]);
}

#[test]
fn an_open_after_delete_records_keeps_the_epoch_cache_from_the_log_start() {
    let setup = Setup::new(29);
    // One segment, no producer snapshot: the open replays it from its first batch.
    let log = leader_with_two_epochs(&setup);
    assert_eq!(log.segment_count(), 1);
    let clone = log.clone();
    assert_eq!(
        block(async move { clone.delete_records(4).await }).unwrap(),
        4
    );
    assert_eq!(log.leader_epochs(), vec![entry(4, 4)]);
    // The replay at open starts in a segment partly before the log start (found by the
    // replica simulation, seed 6221079): its batches must not bring old epochs back.
    drop(log);
    setup.disk.crash();
    let log = open(&setup);
    assert_eq!(log.log_start_offset(), 4);
    assert_eq!(log.leader_epochs(), vec![entry(4, 4)]);
}
