//! Transactions through a shard's partition operations, on the in-memory disk: what
//! `Shard::produce`, `fetch`, `list_offsets`, `wait_for_data`, `txn_verification` and
//! `write_txn_markers` do with transactional batches and markers. One shard on a real glommio
//! executor; the transaction coordinator is played by the test (it decides which guards to use
//! and which markers to write).
//!
//! The storage rules themselves (which batch may open a transaction, the aborted entries) are
//! tested in `spate-storage`; here: the last stable offset bounds read_committed reads and
//! ListOffsets latest, the aborted list reaches the fetch outcome, a marker wakes a
//! read_committed long poll, and the refusals reach the wire-facing `PartitionError`.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use glommio::{LocalExecutorBuilder, Placement};
use spate_cluster::shard::messages::{
    FetchOutcome, FetchPartition, Isolation, PartitionError, PartitionKey, ProduceAcks,
    ProducePartition, LIST_OFFSETS_LATEST,
};
use spate_cluster::shard::Shard;
use spate_protocol::batch::header::{
    attributes, compute_crc, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE,
};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{AbortedTxn, MemoryFileSystem, TxnMarker, TxnResult, VerificationGuard};

const PRODUCER: i64 = 4_000;
const OTHER_PRODUCER: i64 = 4_001;
const EPOCH: i16 = 3;
const BATCH_BYTES: usize = BATCH_HEADER_BYTES + 8;
/// Far above what any step here needs: only a hang reaches it.
const WAIT_MAX: Duration = Duration::from_secs(20);

/// A one-record native batch; `producer`: (id, epoch, sequence, transactional).
fn batch(producer: Option<(i64, i16, i32, bool)>) -> BytesMut {
    let mut bytes = BytesMut::zeroed(BATCH_BYTES);
    let (producer_id, producer_epoch, base_sequence, transactional) =
        producer.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH, NO_SEQUENCE, false));
    let mut header = BatchHeader {
        base_offset: 0,
        leader_epoch: 0,
        crc: 0,
        batch_length: BATCH_BYTES as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        attributes: if transactional {
            attributes::TRANSACTIONAL
        } else {
            0
        },
        offset_count: 1,
        record_count: 1,
        first_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id,
        producer_epoch,
        reserved: 0,
        base_sequence,
    };
    header.encode(&mut bytes);
    header.crc = compute_crc(&bytes);
    header.encode(&mut bytes);
    bytes
}

/// One shard owning the one partition of topic "orders", and the producers' next sequences.
struct Harness {
    shard: Rc<Shard<MemoryFileSystem>>,
    key: PartitionKey,
    sequences: [Cell<i32>; 2],
    // Held for the life of the shard: the catalog's directory.
    _data_dir: tempfile::TempDir,
}

impl Harness {
    async fn new(seed: u64) -> Harness {
        let (shard, key, data_dir) = support::one_shard_with_orders(seed).await;
        Harness {
            shard,
            key,
            sequences: [Cell::new(0), Cell::new(0)],
            _data_dir: data_dir,
        }
    }

    /// The producer's next sequence: one past its last appended batch.
    fn next_sequence(&self, producer_id: i64) -> i32 {
        self.sequences[usize::from(producer_id == OTHER_PRODUCER)].get()
    }

    async fn produce(
        &self,
        batch: BytesMut,
        verification: Option<VerificationGuard>,
    ) -> Result<u64, PartitionError> {
        let producer_id = BatchHeader::decode(&batch).expect("a header").producer_id;
        let partition = ProducePartition {
            key: self.key,
            batches: vec![batch],
            verification,
        };
        let mut answers = self
            .shard
            .clone()
            .produce(ProduceAcks::All, vec![partition], Instant::now())
            .await;
        let answer = answers.pop().expect("an answer");
        if answer.is_ok() && producer_id >= 0 {
            let sequence = &self.sequences[usize::from(producer_id == OTHER_PRODUCER)];
            sequence.set(sequence.get() + 1);
        }
        answer.map(|outcome| outcome.base_offset)
    }

    async fn produce_plain(&self) -> u64 {
        self.produce(batch(None), None)
            .await
            .expect("a plain batch is appended")
    }

    /// A transactional batch of `producer_id`, with the guard the coordinator would let it use
    /// (`None`: none asked for).
    fn transactional(&self, producer_id: i64) -> BytesMut {
        batch(Some((
            producer_id,
            EPOCH,
            self.next_sequence(producer_id),
            true,
        )))
    }

    async fn verification(&self, producer_id: i64) -> Option<VerificationGuard> {
        self.shard
            .txn_verification(self.key, producer_id, EPOCH, Instant::now())
            .await
            .expect("the partition is served")
    }

    /// A transactional batch appended as the server appends one the coordinator verified.
    async fn produce_in_transaction(&self, producer_id: i64) -> u64 {
        let guard = self.verification(producer_id).await;
        self.produce(self.transactional(producer_id), guard)
            .await
            .expect("a verified transactional batch is appended")
    }

    async fn marker(
        &self,
        producer_id: i64,
        epoch: i16,
        result: TxnResult,
    ) -> Result<u64, PartitionError> {
        let marker = TxnMarker {
            producer_id,
            producer_epoch: epoch,
            coordinator_epoch: 0,
            result,
        };
        let mut answers = self
            .shard
            .clone()
            .write_txn_markers(vec![(self.key, marker)])
            .await;
        answers.pop().expect("an answer")
    }

    async fn fetch(&self, offset: i64, isolation: Isolation) -> FetchOutcome {
        let fetch = FetchPartition {
            key: self.key,
            offset,
            max_bytes: 1 << 20,
            isolation,
        };
        let mut answers = self.shard.clone().fetch(vec![fetch], Instant::now()).await;
        answers
            .pop()
            .expect("an answer")
            .expect("the fetch is served")
    }

    async fn latest(&self, isolation: Isolation) -> i64 {
        let mut answers = self
            .shard
            .clone()
            .list_offsets(vec![(self.key, LIST_OFFSETS_LATEST)], isolation)
            .await;
        answers.pop().expect("an answer").expect("served").offset
    }

    fn last_stable_offset(&self) -> u64 {
        self.shard.states(&[self.key])[0]
            .as_ref()
            .expect("served")
            .last_stable_offset
    }
}

fn offsets_of(outcome: &FetchOutcome) -> Vec<u64> {
    outcome
        .batches
        .iter()
        .map(|batch| BatchHeader::decode(batch).expect("a header").base_offset)
        .collect()
}

/// Runs `test` on a fresh glommio executor (a shard's thread).
fn on_shard<F, Fut>(test: F)
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + 'static,
{
    LocalExecutorBuilder::new(Placement::Unbound)
        .name("shard-transactions-test")
        .spawn(test)
        .expect("executor started")
        .join()
        .expect("the test passed on the shard");
}

#[test]
fn read_committed_stops_at_an_open_transaction_until_its_commit_marker() {
    on_shard(|| async {
        let harness = Harness::new(1).await;
        assert_eq!(harness.produce_plain().await, 0);
        assert_eq!(harness.produce_in_transaction(PRODUCER).await, 1);
        assert_eq!(harness.produce_plain().await, 2);

        assert_eq!(
            harness.last_stable_offset(),
            1,
            "the open transaction began at 1"
        );
        let committed = harness.fetch(0, Isolation::ReadCommitted).await;
        assert_eq!(offsets_of(&committed), vec![0]);
        assert_eq!(committed.last_stable_offset, 1);
        assert_eq!(committed.high_watermark, 3);
        assert!(committed.aborted.is_empty());
        let at_the_boundary = harness.fetch(1, Isolation::ReadCommitted).await;
        assert!(
            at_the_boundary.batches.is_empty(),
            "nothing at or past the LSO"
        );
        let uncommitted = harness.fetch(0, Isolation::ReadUncommitted).await;
        assert_eq!(offsets_of(&uncommitted), vec![0, 1, 2]);
        assert!(uncommitted.aborted.is_empty());
        assert_eq!(uncommitted.last_stable_offset, 1, "both answers carry it");
        assert_eq!(harness.latest(Isolation::ReadCommitted).await, 1);
        assert_eq!(harness.latest(Isolation::ReadUncommitted).await, 3);

        let marker_offset = harness
            .marker(PRODUCER, EPOCH, TxnResult::Commit)
            .await
            .expect("the commit marker is written");
        assert_eq!(marker_offset, 3);
        assert_eq!(harness.last_stable_offset(), 4);
        let committed = harness.fetch(0, Isolation::ReadCommitted).await;
        assert_eq!(
            offsets_of(&committed),
            vec![0, 1, 2, 3],
            "the marker is served too"
        );
        assert!(committed.aborted.is_empty(), "a commit aborts nothing");
        assert_eq!(harness.latest(Isolation::ReadCommitted).await, 4);
    });
}

#[test]
fn an_aborted_transaction_is_listed_to_read_committed_readers_of_its_records() {
    on_shard(|| async {
        let harness = Harness::new(2).await;
        assert_eq!(harness.produce_plain().await, 0);
        assert_eq!(harness.produce_in_transaction(PRODUCER).await, 1);
        assert_eq!(harness.produce_in_transaction(OTHER_PRODUCER).await, 2);
        assert_eq!(harness.produce_in_transaction(PRODUCER).await, 3);
        assert_eq!(harness.last_stable_offset(), 1);
        assert_eq!(
            harness.marker(PRODUCER, EPOCH, TxnResult::Abort).await,
            Ok(4)
        );
        // The other producer's transaction still holds the LSO at its first offset.
        assert_eq!(harness.last_stable_offset(), 2);
        let before_commit = harness.fetch(0, Isolation::ReadCommitted).await;
        assert_eq!(offsets_of(&before_commit), vec![0, 1]);
        assert_eq!(
            before_commit.aborted,
            vec![AbortedTxn {
                producer_id: PRODUCER,
                first_offset: 1
            }]
        );
        assert_eq!(
            harness
                .marker(OTHER_PRODUCER, EPOCH, TxnResult::Commit)
                .await,
            Ok(5)
        );
        assert_eq!(harness.produce_plain().await, 6);
        let everything = harness.fetch(0, Isolation::ReadCommitted).await;
        assert_eq!(offsets_of(&everything), vec![0, 1, 2, 3, 4, 5, 6]);
        assert_eq!(
            everything.aborted,
            vec![AbortedTxn {
                producer_id: PRODUCER,
                first_offset: 1
            }]
        );
        // A read past the abort marker needs no aborted entry.
        let after = harness.fetch(5, Isolation::ReadCommitted).await;
        assert_eq!(offsets_of(&after), vec![5, 6]);
        assert!(after.aborted.is_empty(), "{:?}", after.aborted);
        let uncommitted = harness.fetch(0, Isolation::ReadUncommitted).await;
        assert!(
            uncommitted.aborted.is_empty(),
            "only read_committed gets the list"
        );
    });
}

#[test]
fn a_transactional_batch_opens_a_transaction_only_with_a_guard_no_marker_overtook() {
    on_shard(|| async {
        let harness = Harness::new(3).await;
        // No verification at all: refused, nothing appended.
        let unverified = harness.produce(harness.transactional(PRODUCER), None).await;
        assert!(
            matches!(unverified, Err(PartitionError::InvalidTxnState(_))),
            "{unverified:?}"
        );
        // A late batch of a transaction that ended while it was being verified (the hanging
        // transaction of KIP-890): its guard is void once the marker is written.
        let guard = harness.verification(PRODUCER).await;
        assert!(guard.is_some(), "no transaction is open here yet");
        assert_eq!(
            harness.marker(PRODUCER, EPOCH, TxnResult::Abort).await,
            Ok(0)
        );
        let late = harness
            .produce(harness.transactional(PRODUCER), guard)
            .await;
        assert!(
            matches!(late, Err(PartitionError::InvalidTxnState(_))),
            "{late:?}"
        );
        assert_eq!(
            harness.last_stable_offset(),
            1,
            "no transaction was left open"
        );
        assert_eq!(
            harness
                .fetch(0, Isolation::ReadUncommitted)
                .await
                .high_watermark,
            1
        );

        // Once a transaction is open, its next batches need no verification.
        assert_eq!(harness.produce_in_transaction(PRODUCER).await, 1);
        assert_eq!(harness.verification(PRODUCER).await, None);
        assert_eq!(
            harness.produce(harness.transactional(PRODUCER), None).await,
            Ok(2)
        );
        // A plain batch of a producer inside a transaction is refused (Kafka's
        // INVALID_TXN_STATE).
        let plain = batch(Some((
            PRODUCER,
            EPOCH,
            harness.next_sequence(PRODUCER),
            false,
        )));
        let refused = harness.produce(plain, None).await;
        assert!(
            matches!(refused, Err(PartitionError::InvalidTxnState(_))),
            "{refused:?}"
        );
        // A marker of an older producer epoch is fenced; the transaction stays open.
        let fenced = harness.marker(PRODUCER, EPOCH - 1, TxnResult::Commit).await;
        assert!(
            matches!(fenced, Err(PartitionError::ProducerFenced(_))),
            "{fenced:?}"
        );
        assert_eq!(harness.last_stable_offset(), 1);
    });
}

#[test]
fn a_marker_wakes_a_read_committed_long_poll_waiting_at_the_last_stable_offset() {
    on_shard(|| async {
        let harness = Rc::new(Harness::new(4).await);
        assert_eq!(harness.produce_in_transaction(PRODUCER).await, 0);
        assert_eq!(harness.produce_plain().await, 1);
        let waiting = Rc::new(Cell::new(true));
        let started = Instant::now();
        let poll = {
            let harness = harness.clone();
            let waiting = waiting.clone();
            glommio::spawn_local(async move {
                let partitions = [(harness.key, 0, Isolation::ReadCommitted)];
                harness
                    .shard
                    .wait_for_data(&partitions, WAIT_MAX.as_millis() as u64)
                    .await;
                waiting.set(false);
            })
        };
        // Data past the offset exists, but none a read_committed reader may see: the poll waits.
        glommio::timer::sleep(Duration::from_millis(100)).await;
        assert!(waiting.get(), "the long poll ended without a stable record");
        // A read_uncommitted poll at the same offset does not wait.
        let uncommitted = [(harness.key, 0, Isolation::ReadUncommitted)];
        harness
            .shard
            .wait_for_data(&uncommitted, WAIT_MAX.as_millis() as u64)
            .await;
        assert!(started.elapsed() < WAIT_MAX);

        assert_eq!(
            harness.marker(PRODUCER, EPOCH, TxnResult::Commit).await,
            Ok(2)
        );
        poll.await;
        assert!(
            started.elapsed() < WAIT_MAX,
            "the marker did not wake the poll; its timeout did"
        );
        let committed = harness.fetch(0, Isolation::ReadCommitted).await;
        assert_eq!(offsets_of(&committed), vec![0, 1, 2]);
    });
}
