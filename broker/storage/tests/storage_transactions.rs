//! Transactions through `PartitionLog` on the in-memory disk: transactional batches opening a
//! transaction (only with a KIP-890 verification guard), the last stable offset, markers
//! (stored as Kafka control batches), aborted transactions, fencing, the refusals (client
//! control batches, non-transactional batches inside a transaction), and a marker rolled back
//! by a disk error. The pure rules are unit-tested in `storage::transactions`.

mod storage_support;

use bytes::BytesMut;
use spate_protocol::batch::header::{attributes, compute_crc};
use spate_protocol::batch::kafka::control::{marker_batch, read_marker, Marker, MarkerType};
use spate_protocol::batch::kafka::kafka_bytes;
use spate_protocol::batch::BatchHeader;
use spate_storage::{
    AbortedTxn, AppendOutcome, AppendWait, MemoryFileSystem, PartitionLog, StorageError, TxnMarker,
    TxnResult, VerificationGuard,
};
use storage_support::{
    block, header_of, producer_batch, read_all, simple_batch, small_config, Setup,
};

const PRODUCER: i64 = 1000;
const BATCH_BYTES: usize = 300;

/// `batch` with the header's attributes ORed with `bits` (CRC recomputed).
fn with_attributes(mut batch: BytesMut, bits: u16) -> BytesMut {
    let mut header = header_of(&batch);
    header.attributes |= bits;
    header.encode(&mut batch);
    header.crc = compute_crc(&batch);
    header.encode(&mut batch);
    batch
}

fn transactional(id: u64, producer_id: i64, epoch: i16, sequence: i32) -> BytesMut {
    with_attributes(
        producer_batch(id, producer_id, epoch, sequence, 1, BATCH_BYTES),
        attributes::TRANSACTIONAL,
    )
}

fn append(
    log: &std::rc::Rc<PartitionLog<MemoryFileSystem>>,
    batch: BytesMut,
    guard: Option<VerificationGuard>,
) -> Result<AppendOutcome, StorageError> {
    let log = log.clone();
    block(async move {
        log.append_batches_verified(vec![batch], AppendWait::Durable, guard)
            .await
            .map(|outcomes| outcomes[0])
    })
}

fn marker(
    log: &std::rc::Rc<PartitionLog<MemoryFileSystem>>,
    producer_id: i64,
    epoch: i16,
    result: TxnResult,
) -> Result<AppendOutcome, StorageError> {
    let log = log.clone();
    block(async move {
        log.append_txn_marker(
            TxnMarker {
                producer_id,
                producer_epoch: epoch,
                coordinator_epoch: 0,
                result,
            },
            5_000,
        )
        .await
    })
}

fn aborted(
    log: &std::rc::Rc<PartitionLog<MemoryFileSystem>>,
    from: u64,
    upper: u64,
) -> Vec<AbortedTxn> {
    let log = log.clone();
    block(async move { log.aborted_transactions(from, upper).await }).expect("aborted")
}

fn open(setup: &Setup) -> std::rc::Rc<PartitionLog<MemoryFileSystem>> {
    std::rc::Rc::new(setup.open(small_config()))
}

#[test]
fn a_transaction_holds_the_last_stable_offset_until_its_commit_marker_is_durable() {
    let setup = Setup::new(1);
    let log = open(&setup);
    append(&log, simple_batch(1, BATCH_BYTES, 1_000), None).expect("plain");
    let guard = log.begin_txn_verification(PRODUCER, 0);
    assert!(guard.is_some());
    let first = append(&log, transactional(2, PRODUCER, 0, 0), guard).expect("opens");
    assert_eq!(first.base_offset, 1);
    assert_eq!(log.ongoing_transaction(PRODUCER), Some(1));
    // Another producer's plain batch lands after it, durable, yet not stable.
    append(&log, simple_batch(3, BATCH_BYTES, 1_000), None).expect("plain");
    assert_eq!(log.high_watermark(), 3);
    assert_eq!(log.last_stable_offset(), 1);
    assert_eq!(
        log.begin_txn_verification(PRODUCER, 0),
        None,
        "already open"
    );
    append(&log, transactional(4, PRODUCER, 0, 1), None).expect("continues");
    let commit = marker(&log, PRODUCER, 0, TxnResult::Commit).expect("commit");
    assert_eq!(commit.base_offset, 4);
    assert_eq!(log.last_stable_offset(), 5);
    assert_eq!(log.high_watermark(), 5);
    assert!(aborted(&log, 0, 5).is_empty());
    assert_eq!(log.ongoing_transaction(PRODUCER), None);

    // The marker is stored as a Kafka control batch that reads back as a commit.
    let batches = block({
        let log = log.clone();
        async move { read_all(&log, 4, 1 << 20).await }
    })
    .expect("read");
    let stored = &batches[0];
    let header: BatchHeader = header_of(stored);
    assert_eq!(
        header.attributes,
        attributes::CONTROL | attributes::TRANSACTIONAL
    );
    assert_eq!((header.base_offset, header.producer_id), (4, PRODUCER));
    assert_eq!(
        read_marker(kafka_bytes(stored)),
        Ok(Marker {
            marker_type: MarkerType::Commit,
            coordinator_epoch: 0
        })
    );
}

#[test]
fn an_abort_marker_lists_the_transaction_among_the_aborted_ones() {
    let setup = Setup::new(2);
    let log = open(&setup);
    let guard = log.begin_txn_verification(PRODUCER, 0);
    append(&log, transactional(1, PRODUCER, 0, 0), guard).expect("opens");
    append(&log, transactional(2, PRODUCER, 0, 1), None).expect("continues");
    let abort = marker(&log, PRODUCER, 0, TxnResult::Abort).expect("abort");
    assert_eq!(abort.base_offset, 2);
    assert_eq!(log.last_stable_offset(), 3);
    let expected = vec![AbortedTxn {
        producer_id: PRODUCER,
        first_offset: 0,
    }];
    assert_eq!(aborted(&log, 0, 3), expected);
    assert_eq!(aborted(&log, 2, 3), expected, "the marker is in its range");
    assert!(aborted(&log, 3, 10).is_empty(), "wholly before the fetch");
    // A new transaction of the producer needs a new verification.
    assert!(matches!(
        append(&log, transactional(3, PRODUCER, 0, 2), guard),
        Err(StorageError::InvalidTxnState { .. })
    ));
    let guard = log.begin_txn_verification(PRODUCER, 0);
    append(&log, transactional(3, PRODUCER, 0, 2), guard).expect("second transaction");
    assert_eq!(log.last_stable_offset(), 3);
}

#[test]
fn a_transactional_batch_that_would_open_a_transaction_unverified_is_refused() {
    let setup = Setup::new(3);
    let log = open(&setup);
    assert!(matches!(
        append(&log, transactional(1, PRODUCER, 0, 0), None),
        Err(StorageError::InvalidTxnState { .. })
    ));
    // Verified, but the coordinator's marker came first: the late batch would hang.
    let guard = log.begin_txn_verification(PRODUCER, 0);
    marker(&log, PRODUCER, 0, TxnResult::Abort).expect("abort of nothing here");
    assert!(matches!(
        append(&log, transactional(1, PRODUCER, 0, 0), guard),
        Err(StorageError::InvalidTxnState { .. })
    ));
    assert_eq!(log.next_offset(), 1, "only the marker is in the log");
    assert_eq!(log.last_stable_offset(), 1);
    assert!(aborted(&log, 0, 10).is_empty(), "it aborted no data here");
}

#[test]
fn a_plain_batch_of_a_producer_inside_a_transaction_is_refused() {
    let setup = Setup::new(4);
    let log = open(&setup);
    let guard = log.begin_txn_verification(PRODUCER, 0);
    append(&log, transactional(1, PRODUCER, 0, 0), guard).expect("opens");
    assert!(matches!(
        append(
            &log,
            producer_batch(2, PRODUCER, 0, 1, 1, BATCH_BYTES),
            None
        ),
        Err(StorageError::InvalidTxnState { .. })
    ));
    assert_eq!(log.next_offset(), 1);
}

#[test]
fn a_control_batch_from_a_client_is_refused() {
    let setup = Setup::new(5);
    let log = open(&setup);
    let native = with_attributes(simple_batch(1, BATCH_BYTES, 1_000), attributes::CONTROL);
    assert!(matches!(
        append(&log, native, None),
        Err(StorageError::InvalidBatch(_))
    ));
    let kafka = marker_batch(
        PRODUCER,
        0,
        Marker {
            marker_type: MarkerType::Commit,
            coordinator_epoch: 0,
        },
        1_000,
    );
    assert!(matches!(
        append(&log, kafka.clone(), None),
        Err(StorageError::InvalidBatch(_))
    ));
    let single = log.clone();
    assert!(matches!(
        block(async move { single.append(kafka, AppendWait::Durable).await }),
        Err(StorageError::InvalidBatch(_))
    ));
    assert_eq!(log.next_offset(), 0);
}

#[test]
fn a_marker_of_an_older_epoch_is_fenced_and_a_newer_one_fences_the_producer() {
    let setup = Setup::new(6);
    let log = open(&setup);
    let guard = log.begin_txn_verification(PRODUCER, 2);
    append(&log, transactional(1, PRODUCER, 2, 0), guard).expect("opens");
    assert!(matches!(
        marker(&log, PRODUCER, 1, TxnResult::Commit),
        Err(StorageError::ProducerFenced { .. })
    ));
    assert_eq!(log.ongoing_transaction(PRODUCER), Some(0));
    // The coordinator aborts a timed-out transaction with a bumped epoch.
    marker(&log, PRODUCER, 3, TxnResult::Abort).expect("abort");
    let guard = log.begin_txn_verification(PRODUCER, 2);
    assert!(matches!(
        append(&log, transactional(2, PRODUCER, 2, 1), guard),
        Err(StorageError::ProducerFenced { .. })
    ));
    let log_for_fence = log.clone();
    let stale = block(async move {
        log_for_fence
            .append_txn_marker(
                TxnMarker {
                    producer_id: PRODUCER,
                    producer_epoch: 3,
                    coordinator_epoch: -1,
                    result: TxnResult::Commit,
                },
                5_000,
            )
            .await
    });
    assert!(matches!(
        stale,
        Err(StorageError::TransactionCoordinatorFenced { .. })
    ));
}

#[test]
fn a_marker_rolled_back_by_a_disk_error_leaves_its_transaction_open() {
    let setup = Setup::new(7);
    let log = open(&setup);
    let guard = log.begin_txn_verification(PRODUCER, 0);
    append(&log, transactional(1, PRODUCER, 0, 0), guard).expect("opens");
    append(&log, simple_batch(2, BATCH_BYTES, 1_000), None).expect("plain");
    setup.disk.set_no_space(true);
    assert!(matches!(
        marker(&log, PRODUCER, 0, TxnResult::Abort),
        Err(StorageError::NoSpace { .. })
    ));
    assert_eq!(log.ongoing_transaction(PRODUCER), Some(0));
    assert_eq!(log.last_stable_offset(), 0);
    assert!(aborted(&log, 0, 10).is_empty());
    setup.disk.set_no_space(false);
    let abort = marker(&log, PRODUCER, 0, TxnResult::Abort).expect("retried");
    assert_eq!(abort.base_offset, 2, "the rolled-back offset is reused");
    assert_eq!(log.last_stable_offset(), 3);
    assert_eq!(aborted(&log, 0, 10).len(), 1);
}

/// Appends `count` plain batches (ids from `first_id`).
fn plain(log: &std::rc::Rc<PartitionLog<MemoryFileSystem>>, first_id: u64, count: u64) {
    for id in first_id..first_id + count {
        append(log, simple_batch(id, BATCH_BYTES, 1_000), None).expect("plain");
    }
}

/// What a reader sees of the partition's transactions.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    last_stable_offset: u64,
    high_watermark: u64,
    aborted: Vec<AbortedTxn>,
    open: Vec<Option<u64>>,
}

fn seen(log: &std::rc::Rc<PartitionLog<MemoryFileSystem>>, producers: &[i64]) -> Seen {
    Seen {
        last_stable_offset: log.last_stable_offset(),
        high_watermark: log.high_watermark(),
        aborted: aborted(log, 0, log.high_watermark()),
        open: producers
            .iter()
            .map(|producer| log.ongoing_transaction(*producer))
            .collect(),
    }
}

fn txn_index_names(setup: &Setup) -> Vec<String> {
    let mut names: Vec<String> = setup
        .disk
        .file_paths()
        .iter()
        .filter_map(|path| path.file_name()?.to_str().map(str::to_owned))
        .filter(|name| name.ends_with(".txnindex"))
        .collect();
    names.sort();
    names
}

#[test]
fn open_and_aborted_transactions_survive_a_close_and_a_crash() {
    for crash in [false, true] {
        let setup = Setup::new(10 + u64::from(crash));
        let log = open(&setup);
        let producers = [PRODUCER, PRODUCER + 1, PRODUCER + 2];
        // An aborted transaction in the first segment.
        let guard = log.begin_txn_verification(PRODUCER, 0);
        append(&log, transactional(1, PRODUCER, 0, 0), guard).expect("opens");
        plain(&log, 100, 3);
        marker(&log, PRODUCER, 0, TxnResult::Abort).expect("abort");
        // A transaction left open across rolls.
        let guard = log.begin_txn_verification(PRODUCER + 1, 0);
        append(&log, transactional(2, PRODUCER + 1, 0, 0), guard).expect("opens");
        plain(&log, 200, 120);
        // Another aborted one, in a later segment, and a committed one.
        let guard = log.begin_txn_verification(PRODUCER + 2, 0);
        append(&log, transactional(3, PRODUCER + 2, 0, 0), guard).expect("opens");
        marker(&log, PRODUCER + 2, 0, TxnResult::Abort).expect("abort");
        let guard = log.begin_txn_verification(PRODUCER, 0);
        append(&log, transactional(4, PRODUCER, 0, 1), guard).expect("opens");
        plain(&log, 400, 2);
        marker(&log, PRODUCER, 0, TxnResult::Commit).expect("commit");
        let before = seen(&log, &producers);
        assert_eq!(before.aborted.len(), 2);
        assert_eq!(
            before.last_stable_offset, 5,
            "the open transaction's first offset"
        );
        assert!(log.segment_count() >= 3);
        if crash {
            drop(log);
            setup.disk.crash();
        } else {
            let log = std::rc::Rc::try_unwrap(log).ok().expect("one owner");
            block(async move { log.close().await }).expect("close");
        }
        let log = open(&setup);
        assert_eq!(seen(&log, &producers), before, "crash {crash}");
        assert!(
            txn_index_names(&setup).contains(&"00000000000000000000.txnindex".to_owned()),
            "crash {crash}: the first segment's aborted transaction is in its index file"
        );
        // The open transaction goes on without a new verification and ends normally.
        assert_eq!(log.begin_txn_verification(PRODUCER + 1, 0), None);
        append(&log, transactional(5, PRODUCER + 1, 0, 1), None).expect("continues");
        marker(&log, PRODUCER + 1, 0, TxnResult::Abort).expect("abort");
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        let all = aborted(&log, 0, log.high_watermark());
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].producer_id, PRODUCER + 1);
        assert_eq!(all[2].first_offset, 5);
        // A fetch past the first abort does not see it.
        assert_eq!(aborted(&log, 5, log.high_watermark()).len(), 2);
    }
}

#[test]
fn a_segment_removed_by_delete_records_takes_its_txn_index_with_it() {
    let setup = Setup::new(20);
    let log = open(&setup);
    let guard = log.begin_txn_verification(PRODUCER, 0);
    append(&log, transactional(1, PRODUCER, 0, 0), guard).expect("opens");
    marker(&log, PRODUCER, 0, TxnResult::Abort).expect("abort");
    plain(&log, 100, 120);
    assert_eq!(
        txn_index_names(&setup),
        vec!["00000000000000000000.txnindex"]
    );
    let deleter = log.clone();
    let end = log.high_watermark();
    block(async move { deleter.delete_records(end - 1).await }).expect("delete records");
    assert!(txn_index_names(&setup).is_empty());
    assert!(aborted(&log, end - 1, end).is_empty());
}
