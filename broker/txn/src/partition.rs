//! One state partition as its coordinator holds it: the transactional ids it replayed from the
//! log when loaded, and the durable write of one id's next state.
//!
//! A write is one record appended with acks=all through the partition's owner; the caller makes
//! the state current only once it returned Ok. Each id has at most one write in flight (its
//! pending transition, `state::Txn`), so an id's records reach the log in the order they were
//! decided; records of different ids may interleave in any order, which replay does not mind
//! (last record per key wins).
//!
//! Shard-local (`Rc`, `RefCell`): owned by the coordinator of the shard the partition is
//! coordinated on. The log is reached only through shard requests, never the storage engine.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use glommio::channels::local_channel::LocalSender;
use spate_protocol::batch::{BatchBuilder, BatchOptions, BatchView, NO_HEADERS};
use spate_protocol::constants::BATCH_BYTES_MAX;

use crate::catalog::{ShardId, TopicMetadata};
use crate::records::StateRecord;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{
    FetchOutcome, FetchPartition, Isolation, PartitionError, PartitionKey, PartitionState,
    ProduceAcks, ProducePartition,
};
use crate::shard::Shard;
use crate::state::{Txn, TxnError, TxnRecord};
use crate::TxnServices;

/// One state partition this shard coordinates. Shard-local; created when loaded.
pub(crate) struct StatePartition {
    pub(crate) partition: u32,
    pub(crate) topic: Arc<TopicMetadata>,
    pub(crate) txns: RefCell<BTreeMap<String, Txn>>,
    /// Ids whose decided transaction has a completion task running (markers, then the
    /// `Complete*` record): one task per id.
    pub(crate) completing: RefCell<BTreeSet<String>>,
    /// Requests waiting for an id's completion (EndTxn, a fencing InitProducerId).
    pub(crate) completion_waiters: RefCell<HashMap<String, Vec<LocalSender<()>>>>,
    /// The state partition's leader epoch this broker loaded it under: leadership that moved
    /// away and back returns under a higher epoch, and the ids are replayed again.
    pub(crate) leader_epoch: i32,
    /// Set when this broker stops coordinating the partition (its leadership moved): its
    /// completion tasks stop, and the new leader's coordinator finishes what was decided.
    pub(crate) deposed: Cell<bool>,
}

impl StatePartition {
    fn key(&self) -> PartitionKey {
        PartitionKey {
            topic_id: self.topic.id,
            partition: self.partition,
        }
    }

    /// Wakes whoever waits for `transactional_id`'s completion.
    pub(crate) fn completed(&self, transactional_id: &str) {
        if let Some(waiters) = self
            .completion_waiters
            .borrow_mut()
            .remove(transactional_id)
        {
            for waiter in waiters {
                // One slot per waiter; a full or closed one means the waiter is gone.
                let _ = waiter.try_send(());
            }
        }
    }
}

/// The wire-neutral error of a failed partition operation under the coordinator.
pub(crate) fn coordinator_error(error: &PartitionError) -> TxnError {
    match error {
        PartitionError::ShuttingDown => TxnError::ShuttingDown,
        // The state partition is still opening after a start: the ids load soon.
        PartitionError::Opening => TxnError::CoordinatorLoadInProgress,
        // The state partition's leadership moved: its ids are coordinated elsewhere now.
        PartitionError::NotLeaderOrFollower { .. } => TxnError::NotCoordinator,
        error => TxnError::CoordinatorNotAvailable(error.to_string()),
    }
}

/// Replays a state partition from its log start to its high watermark.
pub(crate) async fn load<S: TxnServices>(
    services: &Rc<S>,
    partition: u32,
    topic: Arc<TopicMetadata>,
    leader_epoch: i32,
) -> Result<Rc<StatePartition>, TxnError> {
    let limits = services.transactions().limits();
    let began = Instant::now();
    let key = PartitionKey {
        topic_id: topic.id,
        partition,
    };
    let owner = topic.owner_of(partition).ok_or_else(|| {
        TxnError::CoordinatorNotAvailable("the state partition has no owner".into())
    })?;
    let state = partition_state(services, owner, key).await?;
    let mut txns = BTreeMap::new();
    let mut offset = state.log_start_offset;
    let mut unreadable = 0usize;
    while offset < state.high_watermark {
        let fetched = fetch(services, owner, key, offset, limits.replay_read_bytes).await?;
        if fetched.batches.is_empty() {
            tracing::error!(
                partition,
                offset,
                "transaction state partition returned no batch below its high watermark"
            );
            return Err(TxnError::CoordinatorLoadInProgress);
        }
        for batch in &fetched.batches {
            offset = replay_batch(batch, &mut txns, &mut unreadable)?;
        }
    }
    if unreadable > 0 {
        tracing::warn!(
            partition,
            unreadable,
            "transaction state records this build cannot read were skipped"
        );
    }
    tracing::info!(
        partition,
        transactional_ids = txns.len(),
        elapsed_ms = began.elapsed().as_millis() as u64,
        "transaction state partition loaded"
    );
    Ok(Rc::new(StatePartition {
        partition,
        topic,
        txns: RefCell::new(txns),
        completing: RefCell::new(BTreeSet::new()),
        completion_waiters: RefCell::new(HashMap::new()),
        leader_epoch,
        deposed: Cell::new(false),
    }))
}

/// Applies one stored batch's records (last one per id wins); returns the offset after it.
fn replay_batch(
    batch: &Bytes,
    txns: &mut BTreeMap<String, Txn>,
    unreadable: &mut usize,
) -> Result<u64, TxnError> {
    let unusable = |what: &str, error: &dyn std::fmt::Display| {
        tracing::error!(%error, "stored transaction state batch is {what}");
        TxnError::CoordinatorNotAvailable(format!("a stored state batch is {what}: {error}"))
    };
    let view =
        BatchView::validate(batch, usize::MAX).map_err(|error| unusable("invalid", &error))?;
    let records = view
        .records()
        .map_err(|error| unusable("unreadable", &error))?;
    for record in records {
        match StateRecord::decode(record.key(), record.value()) {
            Ok(StateRecord {
                transactional_id,
                value: Some(value),
            }) => {
                let txn = Txn::restore(&transactional_id, value);
                txns.insert(transactional_id, txn);
            }
            Ok(StateRecord {
                transactional_id,
                value: None,
            }) => {
                txns.remove(&transactional_id);
            }
            Err(error) => {
                tracing::debug!(%error, offset = record.offset(), "skipping transaction state record");
                *unreadable += 1;
            }
        }
    }
    Ok(view.next_offset())
}

/// Appends `transactional_id`'s next state (`None`: its tombstone) with acks=all.
pub(crate) async fn write_state<S: TxnServices>(
    services: &Rc<S>,
    partition: &StatePartition,
    transactional_id: &str,
    value: Option<TxnRecord>,
    timestamp_ms: i64,
) -> Result<(), TxnError> {
    let record = StateRecord {
        transactional_id: transactional_id.to_string(),
        value,
    };
    let invalid = |error: &dyn std::fmt::Display| {
        TxnError::InvalidRequest(format!("the transaction state cannot be written: {error}"))
    };
    let key = record.encode_key().map_err(|error| invalid(&error))?;
    let value = record.encode_value().map_err(|error| invalid(&error))?;
    let mut builder = BatchBuilder::new(BatchOptions {
        batch_bytes_max: BATCH_BYTES_MAX,
        ..BatchOptions::default()
    });
    builder
        .append(Some(&key), value.as_deref(), NO_HEADERS, timestamp_ms)
        .map_err(|error| invalid(&error))?;
    let batch: BytesMut = builder.seal().map_err(|error| invalid(&error))?;
    let owner = partition
        .topic
        .owner_of(partition.partition)
        .ok_or_else(|| {
            TxnError::CoordinatorNotAvailable("the state partition has no owner".into())
        })?;
    let produce = ProducePartition {
        key: partition.key(),
        batches: vec![batch],
        // The coordinator's records are not transactional.
        verification: None,
    };
    // The partition is open (it was loaded); on a replicated one the write waits this long
    // for the in-sync replicas.
    let opening_wait_until =
        Instant::now() + Duration::from_millis(services.transactions().limits().write_timeout_ms);
    on_owner(services, owner, move |shard| async move {
        only(
            shard
                .produce(ProduceAcks::All, vec![produce], opening_wait_until)
                .await,
        )
    })
    .await
    .map(|_| ())
    .map_err(|error| {
        tracing::warn!(%error, partition = partition.partition, "transaction state write failed");
        coordinator_error(&error)
    })
}

/// The partition's offsets, retrying while a freshly created partition is not open yet.
async fn partition_state<S: TxnServices>(
    services: &Rc<S>,
    owner: ShardId,
    key: PartitionKey,
) -> Result<PartitionState, TxnError> {
    let limits = services.transactions().limits();
    for _ in 0..limits.load_tries_max {
        let answer = on_owner(services, owner, move |shard| async move {
            only(shard.states(&[key]))
        })
        .await;
        match answer {
            // Replay reads only committed records, and all of this replica's must be: a new
            // leader holds records its predecessor wrote that its followers have not all
            // confirmed yet, and they may hold acknowledged writes (Kafka's coordinator loads
            // to the log end for the same reason). Nothing else writes to the partition
            // meanwhile: its coordinator is the one being loaded.
            Ok(state) if state.high_watermark >= state.log_end => return Ok(state),
            Ok(_) => {}
            Err(PartitionError::UnknownTopicOrPartition) => {}
            Err(error) => return Err(coordinator_error(&error)),
        }
        glommio::timer::sleep(Duration::from_millis(limits.load_retry_interval_ms)).await;
    }
    Err(TxnError::CoordinatorLoadInProgress)
}

async fn fetch<S: TxnServices>(
    services: &Rc<S>,
    owner: ShardId,
    key: PartitionKey,
    offset: u64,
    max_bytes: usize,
) -> Result<FetchOutcome, TxnError> {
    let fetch = FetchPartition {
        key,
        offset: offset as i64,
        max_bytes,
        // The coordinator's own records are never transactional.
        isolation: Isolation::ReadUncommitted,
    };
    // Loaded partitions are open (`partition_state` saw them): nothing to wait for.
    let opening_wait_until = Instant::now();
    on_owner(services, owner, move |shard| async move {
        only(shard.fetch(vec![fetch], opening_wait_until).await)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, partition = key.partition, offset, "replaying transaction state failed");
        coordinator_error(&error)
    })
}

/// Runs `run` on the shard that owns a partition; a shard that is stopping answers like the
/// partition would then.
pub(crate) async fn on_owner<S, T, F, Fut>(
    services: &Rc<S>,
    owner: ShardId,
    run: F,
) -> Result<T, PartitionError>
where
    S: TxnServices,
    T: Send + 'static,
    F: FnOnce(Rc<Shard<S::Files>>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, PartitionError>> + 'static,
{
    invoke_on(services, owner, move |on: Rc<S>| run(on.shard().clone()))
        .await
        .map_err(PartitionError::from)
        .and_then(|answer| answer)
}

/// The one answer of a partition operation asked about one partition.
fn only<T>(answers: Vec<T>) -> T {
    let [answer]: [T; 1] = answers
        .try_into()
        .unwrap_or_else(|_| panic!("a shard answers each partition it is asked about"));
    answer
}
