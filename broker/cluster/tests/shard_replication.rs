//! Partition replication through a shard's operations, on the in-memory disk: what
//! `Shard::apply_roles`, `produce` (acks=all waiting for the high watermark), `fetch`,
//! `replica_fetch`, `append_from_leader`, `truncate_diverging`, `follower_positions` and
//! `write_txn_markers` do.
//! Each broker is one shard on a real glommio executor; the test plays the followers' fetchers
//! (and the metadata, which it hands to `apply_roles`). This broker is node 0 (a catalog not in
//! cluster mode); its peers are nodes 1 and 2.
//!
//! The replication rules themselves (high watermark, ISR, diverging epochs) are tested in
//! `spate_cluster::replica` and by `replication_simulation`; here: that the shard applies them
//! to its partitions and wakes who waits.

mod support;

use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::{LocalExecutorBuilder, Placement};
use spate_cluster::catalog::PartitionRole;
use spate_cluster::replica::{NodeId, NO_EPOCH};
use spate_cluster::shard::messages::{
    FetchPartition, Isolation, PartitionError, PartitionKey, ProduceAcks, ProduceOutcome,
    ProducePartition, ReplicaFetchAnswer, ReplicaFetchPartition,
};
use spate_cluster::shard::Shard;
use spate_protocol::batch::header::{compute_crc, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{MemoryFileSystem, TxnMarker, TxnResult};

const LOCAL: NodeId = 0;
const EPOCH: i32 = 3;
const BATCH_BYTES: usize = BATCH_HEADER_BYTES + 8;
/// Far above what any step here needs: only a hang reaches it.
const WAIT_MAX: Duration = Duration::from_secs(20);

fn batch() -> BytesMut {
    let mut bytes = BytesMut::zeroed(BATCH_BYTES);
    let mut header = BatchHeader {
        base_offset: 0,
        leader_epoch: 0,
        crc: 0,
        batch_length: BATCH_BYTES as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        attributes: 0,
        offset_count: 1,
        record_count: 1,
        first_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id: NO_PRODUCER_ID,
        producer_epoch: NO_PRODUCER_EPOCH,
        reserved: 0,
        base_sequence: NO_SEQUENCE,
    };
    header.encode(&mut bytes);
    header.crc = compute_crc(&bytes);
    header.encode(&mut bytes);
    bytes
}

fn role(leader: Option<NodeId>, isr: &[NodeId], leader_epoch: i32) -> PartitionRole {
    PartitionRole {
        replicas: vec![LOCAL, 1, 2],
        isr: isr.to_vec(),
        leader,
        leader_epoch,
        partition_epoch: leader_epoch,
    }
}

/// One broker: one shard owning the one partition of topic "orders".
struct Broker {
    shard: Rc<Shard<MemoryFileSystem>>,
    key: PartitionKey,
    _data_dir: tempfile::TempDir,
}

impl Broker {
    async fn new(seed: u64) -> Broker {
        let (shard, key, data_dir) = support::one_shard_with_orders(seed).await;
        Broker {
            shard,
            key,
            _data_dir: data_dir,
        }
    }

    /// The metadata's role for the partition, with `min.insync.replicas` = 2.
    async fn apply(&self, role: PartitionRole) {
        self.apply_with_min_insync(role, 2).await;
    }

    async fn apply_with_min_insync(&self, role: PartitionRole, min_insync: u16) {
        self.shard
            .apply_roles(vec![(self.key, role, min_insync)])
            .await;
    }

    fn position(&self) -> (u64, i32) {
        let positions = self.shard.follower_positions(&[self.key]);
        assert_eq!(positions.len(), 1);
        (positions[0].1, positions[0].2)
    }

    async fn append_from_leader(
        &self,
        leader_epoch: i32,
        batches: &[Bytes],
        leader_high_watermark: u64,
    ) -> Result<u64, PartitionError> {
        let batches = batches
            .iter()
            .map(|batch| BytesMut::from(&batch[..]))
            .collect();
        self.shard
            .append_from_leader(self.key, leader_epoch, batches, leader_high_watermark, 0)
            .await
    }

    async fn produce(
        &self,
        acks: ProduceAcks,
        timeout: Duration,
    ) -> Result<ProduceOutcome, PartitionError> {
        let partition = ProducePartition {
            key: self.key,
            batches: vec![batch()],
            verification: None,
        };
        self.shard
            .clone()
            .produce(acks, vec![partition], Instant::now() + timeout)
            .await
            .pop()
            .expect("an answer")
    }

    /// A consumer's read from offset 0: the offsets served and the high watermark.
    async fn consume(&self) -> Result<(Vec<u64>, u64), PartitionError> {
        let fetch = FetchPartition {
            key: self.key,
            offset: 0,
            max_bytes: 1 << 20,
            isolation: Isolation::ReadUncommitted,
        };
        let outcome = self
            .shard
            .clone()
            .fetch(vec![fetch], Instant::now())
            .await
            .pop()
            .expect("an answer")?;
        Ok((offsets_of(&outcome.batches), outcome.high_watermark))
    }

    async fn replica_fetch(
        &self,
        follower: NodeId,
        leader_epoch: i32,
        fetch_offset: u64,
        last_fetched_epoch: i32,
    ) -> ReplicaFetchAnswer {
        let fetch = ReplicaFetchPartition {
            key: self.key,
            current_leader_epoch: leader_epoch,
            fetch_offset,
            last_fetched_epoch,
            max_bytes: 1 << 20,
        };
        self.shard
            .replica_fetch(follower, vec![fetch])
            .await
            .pop()
            .expect("an answer")
    }
}

fn offsets_of(batches: &[Bytes]) -> Vec<u64> {
    batches
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
        .name("shard-replication-test")
        .spawn(test)
        .expect("executor started")
        .join()
        .expect("the test passed on the shard");
}

#[test]
fn acks_all_waits_until_every_isr_member_fetched_past_the_batch() {
    on_shard(|| async {
        let broker = Rc::new(Broker::new(1).await);
        broker.apply(role(Some(LOCAL), &[LOCAL, 1, 2], EPOCH)).await;
        let answered = Rc::new(std::cell::Cell::new(false));
        let producing = {
            let broker = broker.clone();
            let answered = answered.clone();
            glommio::spawn_local(async move {
                let answer = broker.produce(ProduceAcks::All, WAIT_MAX).await;
                answered.set(true);
                answer
            })
        };
        // The batch is appended (followers can fetch it) but not committed.
        let answer = loop {
            let answer = broker.replica_fetch(1, EPOCH, 0, NO_EPOCH).await;
            if !answer.batches.is_empty() {
                break answer;
            }
            glommio::timer::sleep(Duration::from_millis(1)).await;
        };
        assert_eq!(answer.error, None);
        assert_eq!(offsets_of(&answer.batches), vec![0]);
        assert_eq!(
            BatchHeader::decode(&answer.batches[0])
                .unwrap()
                .leader_epoch,
            EPOCH as u32,
            "the leader stamps its epoch"
        );
        assert_eq!(answer.high_watermark, 0);
        assert_eq!(
            broker.consume().await,
            Ok((vec![], 0)),
            "nothing committed yet"
        );
        // Node 1 has it; node 2 has not fetched: the high watermark holds.
        let answer = broker.replica_fetch(1, EPOCH, 1, EPOCH).await;
        assert_eq!((answer.error, answer.high_watermark), (None, 0));
        glommio::timer::sleep(Duration::from_millis(5)).await;
        assert!(!answered.get(), "not committed: still waiting");
        // Node 2 reports it too: committed, the produce is answered, consumers see it.
        let answer = broker.replica_fetch(2, EPOCH, 1, EPOCH).await;
        assert_eq!(answer.high_watermark, 1);
        let outcome = producing.await.expect("acknowledged once committed");
        assert_eq!((outcome.base_offset, outcome.end_offset), (0, 1));
        assert_eq!(broker.consume().await, Ok((vec![0], 1)));
    });
}

#[test]
fn acks_all_is_refused_below_min_insync_and_times_out_without_followers() {
    on_shard(|| async {
        let broker = Broker::new(2).await;
        broker.apply(role(Some(LOCAL), &[LOCAL], EPOCH)).await;
        assert_eq!(
            broker.produce(ProduceAcks::All, WAIT_MAX).await,
            Err(PartitionError::NotEnoughReplicas {
                isr: 1,
                min_insync: 2
            })
        );
        // acks=leader never waits on followers.
        assert!(broker.produce(ProduceAcks::Leader, WAIT_MAX).await.is_ok());
        let mut grown = role(Some(LOCAL), &[LOCAL, 1], EPOCH);
        grown.partition_epoch += 1;
        broker.apply(grown).await;
        let started = Instant::now();
        let answer = broker
            .produce(ProduceAcks::All, Duration::from_millis(50))
            .await;
        assert!(
            matches!(answer, Err(PartitionError::ReplicationTimedOut { .. })),
            "{answer:?}"
        );
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(45) && waited < Duration::from_secs(5),
            "answered within the produce timeout: {waited:?}"
        );
    });
}

#[test]
fn a_lost_leadership_fails_waiting_writes_and_refuses_clients() {
    on_shard(|| async {
        let broker = Rc::new(Broker::new(3).await);
        broker.apply(role(Some(LOCAL), &[LOCAL, 1], EPOCH)).await;
        let producing = {
            let broker = broker.clone();
            glommio::spawn_local(async move { broker.produce(ProduceAcks::All, WAIT_MAX).await })
        };
        while broker
            .replica_fetch(1, EPOCH, 0, NO_EPOCH)
            .await
            .batches
            .is_empty()
        {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        broker.apply(role(Some(1), &[1], EPOCH + 1)).await;
        let moved = PartitionError::NotLeaderOrFollower {
            leader: Some(1),
            leader_epoch: EPOCH + 1,
        };
        assert_eq!(producing.await, Err(moved.clone()));
        assert_eq!(
            broker.produce(ProduceAcks::Leader, WAIT_MAX).await,
            Err(moved.clone())
        );
        assert_eq!(broker.consume().await, Err(moved));
        // A follower fetching from the old leader is told.
        let answer = broker.replica_fetch(2, EPOCH, 0, NO_EPOCH).await;
        assert!(matches!(
            answer.error,
            Some(PartitionError::NotLeaderOrFollower { .. })
        ));
    });
}

#[test]
fn a_follower_with_a_stale_or_future_epoch_is_refused() {
    on_shard(|| async {
        let broker = Broker::new(4).await;
        broker.apply(role(Some(LOCAL), &[LOCAL, 1, 2], EPOCH)).await;
        let answer = broker.replica_fetch(1, EPOCH - 1, 0, NO_EPOCH).await;
        assert_eq!(
            answer.error,
            Some(PartitionError::FencedLeaderEpoch {
                requested: EPOCH - 1,
                current: EPOCH
            })
        );
        let answer = broker.replica_fetch(1, EPOCH + 1, 0, NO_EPOCH).await;
        assert_eq!(
            answer.error,
            Some(PartitionError::UnknownLeaderEpoch {
                requested: EPOCH + 1,
                current: EPOCH
            })
        );
        let answer = broker.replica_fetch(7, EPOCH, 0, NO_EPOCH).await;
        assert!(
            matches!(
                answer.error,
                Some(PartitionError::NotLeaderOrFollower { .. })
            ),
            "not a replica: {answer:?}"
        );
    });
}

#[test]
fn a_follower_copies_its_leader_and_truncates_where_it_diverged() {
    on_shard(|| async {
        let leader = Broker::new(5).await;
        let follower = Broker::new(6).await;
        // The leader writes three batches at epoch 1 (alone in the ISR, min.insync 1).
        leader
            .apply_with_min_insync(role(Some(LOCAL), &[LOCAL], 1), 1)
            .await;
        for _ in 0..3 {
            leader
                .produce(ProduceAcks::All, WAIT_MAX)
                .await
                .expect("committed by the leader alone");
        }
        // The follower copies the first two.
        follower.apply(role(Some(5), &[5], 1)).await;
        assert_eq!(follower.position(), (0, NO_EPOCH));
        let answer = leader.replica_fetch(1, 1, 0, NO_EPOCH).await;
        assert_eq!(offsets_of(&answer.batches), vec![0, 1, 2]);
        assert_eq!(answer.high_watermark, 3);
        assert_eq!(
            follower
                .append_from_leader(1, &answer.batches[..2], 3)
                .await,
            Ok(2)
        );
        assert_eq!(follower.position(), (2, 1));
        assert_eq!(
            follower.consume().await,
            Err(PartitionError::NotLeaderOrFollower {
                leader: Some(5),
                leader_epoch: 1
            }),
            "consumers read from the leader only"
        );
        // A repeated answer is refused (it does not start at the log end).
        assert!(matches!(
            follower
                .append_from_leader(1, &answer.batches[..2], 3)
                .await,
            Err(PartitionError::InvalidRequest(_))
        ));
        // The follower leads epoch 2 for a moment and writes a batch nobody copies...
        follower
            .apply_with_min_insync(role(Some(LOCAL), &[LOCAL], 2), 1)
            .await;
        follower
            .produce(ProduceAcks::All, WAIT_MAX)
            .await
            .expect("written at epoch 2");
        assert_eq!(follower.position(), (3, 2));
        // ...and the first leader comes back at epoch 3 with one more batch.
        leader
            .apply_with_min_insync(role(Some(LOCAL), &[LOCAL], 3), 1)
            .await;
        leader.produce(ProduceAcks::All, WAIT_MAX).await.unwrap();
        follower.apply(role(Some(5), &[5], 3)).await;
        // An answer meant for the follower's old epoch is refused.
        assert_eq!(
            follower.append_from_leader(2, &[], 0).await,
            Err(PartitionError::FencedLeaderEpoch {
                requested: 2,
                current: 3
            })
        );
        // Its epoch 2 batch at offset 2 is not on the leader's log.
        let answer = leader.replica_fetch(1, 3, 3, 2).await;
        assert_eq!(answer.error, None);
        assert_eq!(answer.diverging, Some((1, 3)));
        assert!(answer.batches.is_empty());
        let key = follower.key;
        let end = follower
            .shard
            .truncate_diverging(key, 3, 3, (1, 3))
            .await
            .expect("truncated");
        assert_eq!(end, 2, "its epoch 1 ends at 2: everything after goes");
        assert_eq!(follower.position(), (2, 1));
        // The same answer again, now stale, changes nothing.
        let again = follower.shard.truncate_diverging(key, 3, 3, (1, 3)).await;
        assert_eq!(again, Ok(2));
        // It fetches on from 2 and holds the leader's log.
        let answer = leader.replica_fetch(1, 3, 2, 1).await;
        assert_eq!(answer.diverging, None);
        assert_eq!(offsets_of(&answer.batches), vec![2, 3]);
        assert_eq!(
            follower
                .append_from_leader(3, &answer.batches, answer.high_watermark)
                .await,
            Ok(4)
        );
        assert_eq!(follower.position(), (4, 3));
    });
}

#[test]
fn a_transaction_marker_is_answered_once_the_isr_holds_it_and_only_by_the_leader() {
    on_shard(|| async {
        let broker = Rc::new(Broker::new(7).await);
        broker.apply(role(Some(LOCAL), &[LOCAL, 1], EPOCH)).await;
        let marker = TxnMarker {
            producer_id: 4_000,
            producer_epoch: 0,
            coordinator_epoch: 0,
            result: TxnResult::Abort,
        };
        // No follower fetches: written, not committed within the deadline.
        let answer = broker
            .shard
            .clone()
            .write_txn_markers_until(
                vec![(broker.key, marker)],
                Instant::now() + Duration::from_millis(30),
            )
            .await
            .pop()
            .expect("an answer");
        assert!(
            matches!(answer, Err(PartitionError::ReplicationTimedOut { .. })),
            "{answer:?}"
        );
        // The follower holds it: the next marker is answered once the follower fetched it.
        let writing = {
            let broker = broker.clone();
            glommio::spawn_local(async move {
                broker
                    .shard
                    .clone()
                    .write_txn_markers_until(vec![(broker.key, marker)], Instant::now() + WAIT_MAX)
                    .await
                    .pop()
                    .expect("an answer")
            })
        };
        let mut fetch_offset = 0;
        while fetch_offset < 2 {
            let answer = broker.replica_fetch(1, EPOCH, fetch_offset, EPOCH).await;
            assert_eq!(answer.error, None);
            if let Some(last) = answer.batches.last() {
                fetch_offset = BatchHeader::decode(last).unwrap().next_offset();
            } else {
                glommio::timer::sleep(Duration::from_millis(1)).await;
            }
        }
        broker.replica_fetch(1, EPOCH, fetch_offset, EPOCH).await;
        assert_eq!(writing.await, Ok(1));
        // A follower writes no marker.
        broker.apply(role(Some(1), &[1], EPOCH + 1)).await;
        let answer = broker
            .shard
            .clone()
            .write_txn_markers(vec![(broker.key, marker)])
            .await
            .pop()
            .expect("an answer");
        assert_eq!(
            answer,
            Err(PartitionError::NotLeaderOrFollower {
                leader: Some(1),
                leader_epoch: EPOCH + 1
            })
        );
    });
}
