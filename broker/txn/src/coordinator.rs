//! The shard-local transaction coordinator and the protocol-neutral transaction functions the
//! Kafka and native handlers call: [`init_producer_id`], [`add_partitions`],
//! [`verify_partitions`], [`add_offsets`], [`end_txn`], [`describe`], [`list`].
//!
//! Each function may be called on any shard: it finds the id's state partition and runs on its
//! coordinator shard (`invoke_on`). There the partition is loaded on first use (replayed from
//! the `__transaction_state` log, see `partition`), and every change follows the state
//! machine's two steps (`state`): decide and mark pending, write the record with acks=all, make
//! it current. A decided transaction (`Prepare*` durable) is completed by one task per id:
//! markers to every partition (on their owners, `Shard::write_txn_markers`) and to every
//! group's offsets (`spate_group::coordinator::complete_transaction`), retried until written,
//! then the `Complete*` record. A coordinator that loads a partition (first use, or at start:
//! [`start`]) resumes the completion of every `Prepare*` id it finds.
//!
//! Registered beside the shard in its services ([`TxnServices`]; one per executor, lives as
//! long as the shard). Time: wall-clock milliseconds read here and passed into the state
//! machine, so that an open transaction's timeout counts from its stored start across restarts.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use glommio::channels::local_channel;
use glommio::sync::Semaphore;

use crate::catalog::topic_config::{CLEANUP_POLICY, RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES};
use crate::catalog::{CatalogError, ProducerIdError, TopicConfig, TopicMetadata};
use crate::limits::defaults::TRANSACTIONAL_ID_BYTES_MAX;
use crate::limits::TxnLimits;
use crate::partition::{coordinator_error, load, write_state, StatePartition};
use crate::peers::TxnPeers;
use crate::shard::mesh::invoke_on;
use crate::shard::topic_creation::{self, TopicCreationError};
use crate::state::{
    EndStep, InitRequest, InitStep, TopicPartition, Txn, TxnError, TxnRecord, TxnState,
    NO_PRODUCER_EPOCH, NO_PRODUCER_ID,
};
use crate::{coordinator_shard_of, state_partition_of, TxnServices, TRANSACTION_STATE_TOPIC_NAME};
use spate_protocol::NodeId;

pub mod markers;

/// Shard-local coordinator state. See the module documentation.
pub struct TxnCoordinator {
    limits: TxnLimits,
    partitions: RefCell<HashMap<u32, Rc<StatePartition>>>,
    /// One partition load at a time on this shard: a second request for the same partition
    /// waits and then finds it loaded.
    loading: Semaphore,
    /// Shard 0 only: one creation of the state topic at a time.
    creating: Semaphore,
    timers_started: Cell<bool>,
}

impl TxnCoordinator {
    pub fn new(limits: TxnLimits) -> TxnCoordinator {
        assert_eq!(limits.check(), Ok(()), "transaction limits are consistent");
        TxnCoordinator {
            limits,
            partitions: RefCell::new(HashMap::new()),
            loading: Semaphore::new(1),
            creating: Semaphore::new(1),
            timers_started: Cell::new(false),
        }
    }

    pub fn limits(&self) -> &TxnLimits {
        &self.limits
    }

    /// Stops coordinating `partition` here: its completion tasks stop (the new leader's
    /// coordinator finishes every decided transaction when it loads the partition).
    fn unload(&self, partition: u32) {
        if let Some(loaded) = self.partitions.borrow_mut().remove(&partition) {
            loaded.deposed.set(true);
        }
    }

    fn id_count(&self) -> usize {
        self.partitions
            .borrow()
            .values()
            .map(|partition| partition.txns.borrow().len())
            .sum()
    }
}

/// Wall-clock milliseconds since the epoch: the state machine's `now`.
pub fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

// ---- the state topic -----------------------------------------------------------------------

/// The state topic; with `create`, made (through shard 0) if it does not exist yet. In a
/// cluster the creation is a proposal to the controller (`ShardServices::cluster_topics`), at
/// the internal topics' replication factor, `min(3, active brokers)`; FindCoordinator calls this
/// too, so the first lookup of a transactional id creates it, as in Kafka.
pub async fn state_topic<S: TxnServices>(
    services: &Rc<S>,
    create: bool,
) -> Result<Option<Arc<TopicMetadata>>, TxnError> {
    if let Some(topic) = services.snapshot().topic(TRANSACTION_STATE_TOPIC_NAME) {
        return Ok(Some(topic.clone()));
    }
    if !create {
        return Ok(None);
    }
    // Shard 0 serializes the creation.
    invoke_on(services, 0, |on_zero: Rc<S>| async move {
        create_state_topic(&on_zero).await
    })
    .await
    .map_err(|_| TxnError::ShuttingDown)?
    .map(Some)
}

async fn create_state_topic<S: TxnServices>(
    services: &Rc<S>,
) -> Result<Arc<TopicMetadata>, TxnError> {
    let coordinator = services.transactions();
    let unavailable = |why: String| TxnError::CoordinatorNotAvailable(why);
    let _serialized = coordinator
        .creating
        .acquire_permit(1)
        .await
        .map_err(|_| TxnError::ShuttingDown)?;
    if let Some(topic) = services.snapshot().topic(TRANSACTION_STATE_TOPIC_NAME) {
        return Ok(topic.clone());
    }
    let limits = &coordinator.limits;
    let segment_bytes = limits.state_topic_segment_bytes.to_string();
    // Kafka's settings for the topic: compacted (one record per live id once the compactor
    // runs), never deleted by age or size.
    let entries = [
        (CLEANUP_POLICY, "compact"),
        (RETENTION_MS, "-1"),
        (RETENTION_BYTES, "-1"),
        (SEGMENT_BYTES, segment_bytes.as_str()),
    ];
    let config = TopicConfig::default()
        .with_entries(entries)
        .map_err(|error| unavailable(format!("state topic configuration refused: {error}")))?;
    let partitions = i64::from(limits.state_topic_partitions);
    let created =
        topic_creation::create_topic(services, TRANSACTION_STATE_TOPIC_NAME, partitions, config)
            .await;
    let topic = match created {
        Ok(topic) => topic,
        // Created by someone else in between; whoever created it opens it.
        Err(TopicCreationError::Catalog(CatalogError::TopicAlreadyExists { .. })) => {
            return services
                .snapshot()
                .topic(TRANSACTION_STATE_TOPIC_NAME)
                .cloned()
                .ok_or_else(|| unavailable("the state topic vanished".into()))
        }
        Err(TopicCreationError::Partitions { source, .. }) => {
            tracing::error!(error = %source, "cannot open the transaction state topic's partitions");
            return Err(coordinator_error(&source));
        }
        Err(error) => {
            tracing::error!(%error, "cannot create the transaction state topic");
            return Err(unavailable(error.to_string()));
        }
    };
    tracing::info!(
        topic = TRANSACTION_STATE_TOPIC_NAME,
        partitions = topic.partition_count(),
        "transaction state topic created"
    );
    Ok(topic)
}

/// The loaded state partition `partition` (on its coordinator shard), loading it first if
/// needed. A load resumes the completion of every decided transaction it finds.
async fn loaded<S: TxnServices>(
    services: &Rc<S>,
    topic: Arc<TopicMetadata>,
    partition: u32,
) -> Result<Rc<StatePartition>, TxnError> {
    let coordinator = services.transactions();
    if partition >= topic.partition_count()
        || coordinator_shard_of(partition, services.shard_count) != services.id
    {
        return Err(TxnError::NotCoordinator);
    }
    // Only the state partition's leader coordinates its ids (a single broker leads all).
    let local = services.snapshot().local_node;
    let role = topic.role(partition, local);
    if role.leader != Some(local) {
        coordinator.unload(partition);
        return Err(match role.leader {
            Some(_) => TxnError::NotCoordinator,
            None => TxnError::CoordinatorNotAvailable(
                "the transaction state partition has no leader".into(),
            ),
        });
    }
    let current = || {
        coordinator
            .partitions
            .borrow()
            .get(&partition)
            .filter(|loaded| {
                loaded.topic.id == topic.id && loaded.leader_epoch == role.leader_epoch
            })
            .cloned()
    };
    if let Some(loaded) = current() {
        return Ok(loaded);
    }
    let _one_load = coordinator
        .loading
        .acquire_permit(1)
        .await
        .map_err(|_| TxnError::ShuttingDown)?;
    if let Some(loaded) = current() {
        return Ok(loaded);
    }
    // Loaded under an older epoch or an older topic: that state is stale.
    coordinator.unload(partition);
    let loaded = load(services, partition, topic, role.leader_epoch).await?;
    coordinator
        .partitions
        .borrow_mut()
        .insert(partition, loaded.clone());
    let decided: Vec<String> = loaded
        .txns
        .borrow()
        .iter()
        .filter(|(_, txn)| txn.current.state.is_prepared())
        .map(|(id, _)| id.clone())
        .collect();
    for transactional_id in decided {
        tracing::info!(
            transactional_id = %transactional_id,
            partition,
            "finishing a transaction decided before the coordinator was loaded"
        );
        spawn_completion(services, &loaded, &transactional_id);
    }
    start_timers(services);
    Ok(loaded)
}

/// Runs `call` with `transactional_id`'s loaded state partition on its coordinator shard.
/// `create`: make the state topic if it does not exist (InitProducerId); otherwise an id whose
/// topic does not exist is unknown (`Ok(None)` is passed to `call`).
async fn on_coordinator<S, T, F, Fut>(
    services: &Rc<S>,
    transactional_id: &str,
    create: bool,
    call: F,
) -> Result<T, TxnError>
where
    S: TxnServices,
    T: Send + 'static,
    F: FnOnce(Rc<S>, Option<Rc<StatePartition>>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<T, TxnError>> + 'static,
{
    check_transactional_id(transactional_id)?;
    let Some(topic) = state_topic(services, create).await? else {
        return invoke_local(services, call).await;
    };
    let partition = state_partition_of(transactional_id, topic.partition_count());
    let target = coordinator_shard_of(partition, services.shard_count);
    invoke_on(services, target, move |on: Rc<S>| async move {
        let loaded = loaded(&on, topic, partition).await?;
        call(on, Some(loaded)).await
    })
    .await
    .map_err(|_| TxnError::ShuttingDown)?
}

async fn invoke_local<S, T, F, Fut>(services: &Rc<S>, call: F) -> Result<T, TxnError>
where
    S: TxnServices,
    F: FnOnce(Rc<S>, Option<Rc<StatePartition>>) -> Fut,
    Fut: std::future::Future<Output = Result<T, TxnError>>,
{
    call(services.clone(), None).await
}

fn check_transactional_id(transactional_id: &str) -> Result<(), TxnError> {
    if transactional_id.is_empty() {
        return Err(TxnError::InvalidRequest(
            "the transactional id is empty".into(),
        ));
    }
    if transactional_id.len() > TRANSACTIONAL_ID_BYTES_MAX {
        return Err(TxnError::InvalidRequest(format!(
            "the transactional id is longer than {TRANSACTIONAL_ID_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

// ---- transitions ---------------------------------------------------------------------------

/// Writes the transition `decide` made pending (if it made one) and makes it current; on a
/// failed write the state stays as it was. Returns what `decide` returned.
async fn transition<S, T>(
    services: &Rc<S>,
    partition: &StatePartition,
    transactional_id: &str,
    decide: impl FnOnce(&mut Txn) -> Result<(T, Option<TxnRecord>), TxnError>,
) -> Result<T, TxnError>
where
    S: TxnServices,
{
    let (answer, record) = {
        let mut txns = partition.txns.borrow_mut();
        let txn = txns
            .get_mut(transactional_id)
            .ok_or(TxnError::InvalidProducerIdMapping)?;
        decide(txn)?
    };
    let Some(record) = record else {
        return Ok(answer);
    };
    let timestamp_ms = record.update_timestamp_ms;
    let written = write_state(
        services,
        partition,
        transactional_id,
        Some(record),
        timestamp_ms,
    )
    .await;
    let mut txns = partition.txns.borrow_mut();
    let txn = txns
        .get_mut(transactional_id)
        .expect("an id with a pending transition stays until it completes");
    match written {
        Ok(()) => {
            txn.complete_transition();
            Ok(answer)
        }
        Err(error) => {
            txn.abandon_transition();
            Err(error)
        }
    }
}

// ---- requests ------------------------------------------------------------------------------

/// InitProducerId. Without a transactional id: an idempotent producer's id (or the bump of
/// `existing`) from the catalog's allocator. With one: that id's producer id and next epoch,
/// fencing any older producer of it (KIP-360 when `existing` is given).
pub async fn init_producer_id<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: Option<&str>,
    txn_timeout_ms: i32,
    existing: Option<(i64, i16)>,
) -> Result<(i64, i16), TxnError> {
    let Some(transactional_id) = transactional_id else {
        let (producer_id, producer_epoch) = existing.unwrap_or((NO_PRODUCER_ID, NO_PRODUCER_EPOCH));
        return allocate(services, producer_id, producer_epoch).await;
    };
    let limits = services.transactions().limits();
    if txn_timeout_ms <= 0 || txn_timeout_ms > limits.transaction_timeout_ms_max {
        return Err(TxnError::InvalidTransactionTimeout {
            timeout_ms: txn_timeout_ms,
            max_ms: limits.transaction_timeout_ms_max,
        });
    }
    let id = transactional_id.to_string();
    on_coordinator(
        services,
        transactional_id,
        true,
        move |on, partition| async move {
            let partition = partition.expect("the state topic was created");
            init_on_coordinator(&on, &partition, &id, txn_timeout_ms, existing).await
        },
    )
    .await
}

/// A producer id from the catalog's allocator (blocking I/O, off the executor).
async fn allocate<S: TxnServices>(
    services: &Rc<S>,
    producer_id: i64,
    producer_epoch: i16,
) -> Result<(i64, i16), TxnError> {
    let catalog = services.catalog.clone();
    glommio::executor()
        .spawn_blocking(move || catalog.producer_ids().init(producer_id, producer_epoch))
        .await
        .map(|identity| (identity.producer_id, identity.producer_epoch))
        .map_err(|error| match error {
            ProducerIdError::Recovering => TxnError::ProducerIdsRecovering,
            ProducerIdError::AwaitingBlock => TxnError::ProducerIdsAwaitingBlock,
            ProducerIdError::InvalidIdentity { .. } | ProducerIdError::UnknownProducerId { .. } => {
                TxnError::InvalidProducerIdMapping
            }
            error => TxnError::ProducerIdAllocation(error.to_string()),
        })
}

async fn new_producer_id<S: TxnServices>(services: &Rc<S>) -> Result<i64, TxnError> {
    allocate(services, NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        .await
        .map(|(producer_id, _)| producer_id)
}

async fn init_on_coordinator<S: TxnServices>(
    services: &Rc<S>,
    partition: &Rc<StatePartition>,
    transactional_id: &str,
    timeout_ms: i32,
    existing: Option<(i64, i16)>,
) -> Result<(i64, i16), TxnError> {
    let coordinator = services.transactions();
    let known = partition.txns.borrow().contains_key(transactional_id);
    if !known {
        if coordinator.id_count() >= coordinator.limits.transactional_ids_per_shard_max {
            return Err(TxnError::CoordinatorNotAvailable(format!(
                "this shard coordinates its maximum of {} transactional ids",
                coordinator.limits.transactional_ids_per_shard_max
            )));
        }
        let producer_id = new_producer_id(services).await?;
        // Kafka keeps the new id in its cache before its first record is written; a retry
        // after a failed write finds it and writes it again.
        partition
            .txns
            .borrow_mut()
            .entry(transactional_id.to_string())
            .or_insert_with(|| {
                Txn::new(transactional_id, producer_id, timeout_ms, wall_clock_ms())
            });
    }
    // At most twice: a fence aborts the open transaction, and once its markers are written the
    // producer's request goes on as if it had come after the abort (Kafka answers
    // CONCURRENT_TRANSACTIONS and lets the producer retry; waiting here saves the round trip).
    for _ in 0..2 {
        let needs_new_id = partition
            .txns
            .borrow()
            .get(transactional_id)
            .is_some_and(|txn| txn.init_needs_new_producer_id(existing));
        let fresh_id = if needs_new_id {
            Some(new_producer_id(services).await?)
        } else {
            None
        };
        let request = InitRequest {
            timeout_ms,
            expected: existing,
            now_ms: wall_clock_ms(),
        };
        let step = transition(services, partition, transactional_id, |txn| {
            if txn.init_needs_new_producer_id(existing) && fresh_id.is_none() {
                // Changed while the id was allocated: the producer retries.
                return Err(TxnError::ConcurrentTransactions);
            }
            let step = txn.prepare_init(request, fresh_id)?;
            let record = match &step {
                InitStep::Write(record) | InitStep::Fence(record) => record.clone(),
            };
            Ok((step, Some(record)))
        })
        .await?;
        match step {
            InitStep::Write(record) => {
                tracing::debug!(
                    transactional_id,
                    producer_id = record.producer_id,
                    producer_epoch = record.producer_epoch,
                    "transactional producer initialized"
                );
                return Ok((record.producer_id, record.producer_epoch));
            }
            InitStep::Fence(record) => {
                tracing::info!(
                    transactional_id,
                    producer_id = record.producer_id,
                    fenced_epoch = record.producer_epoch - 1,
                    "a new producer fenced an open transaction: aborting it"
                );
                wait_for_completion(services, partition, transactional_id).await;
            }
        }
    }
    Err(TxnError::ConcurrentTransactions)
}

/// AddPartitionsToTxn: each partition's answer. Unknown topics or partitions fail alone and the
/// others are not attempted (Kafka's rule); otherwise all are added with one durable write.
pub async fn add_partitions<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, Result<(), TxnError>)> {
    let snapshot = services.snapshot();
    let unknown: Vec<bool> = partitions
        .iter()
        .map(|(topic, partition)| {
            snapshot
                .topic(topic)
                .is_none_or(|metadata| *partition >= metadata.partition_count())
        })
        .collect();
    if unknown.iter().any(|unknown| *unknown) {
        return partitions
            .into_iter()
            .zip(unknown)
            .map(|(partition, unknown)| {
                let error = if unknown {
                    TxnError::UnknownTopicOrPartition
                } else {
                    TxnError::OperationNotAttempted
                };
                (partition, Err(error))
            })
            .collect();
    }
    let outcome = add(
        services,
        transactional_id,
        producer_id,
        producer_epoch,
        partitions.clone(),
        Vec::new(),
    )
    .await;
    partitions
        .into_iter()
        .map(|partition| (partition, outcome.clone()))
        .collect()
}

/// AddOffsetsToTxn: the group's transactional offset commits become part of the transaction
/// (their markers are written with it).
pub async fn add_offsets<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    group_id: &str,
) -> Result<(), TxnError> {
    if group_id.is_empty() || group_id.len() > spate_protocol::constants::GROUP_ID_BYTES_MAX {
        return Err(TxnError::InvalidRequest(format!(
            "a group id is 1 to {} bytes",
            spate_protocol::constants::GROUP_ID_BYTES_MAX
        )));
    }
    add(
        services,
        transactional_id,
        producer_id,
        producer_epoch,
        Vec::new(),
        vec![group_id.to_string()],
    )
    .await
}

async fn add<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
    groups: Vec<String>,
) -> Result<(), TxnError> {
    let id = transactional_id.to_string();
    on_coordinator(
        services,
        transactional_id,
        false,
        move |on, partition| async move {
            let partition = partition.ok_or(TxnError::InvalidProducerIdMapping)?;
            let limits = on.transactions().limits().clone();
            transition(&on, &partition, &id, |txn| {
                let record = txn.prepare_add(
                    producer_id,
                    producer_epoch,
                    &partitions,
                    &groups,
                    &limits,
                    wall_clock_ms(),
                )?;
                Ok(((), record))
            })
            .await
        },
    )
    .await
}

/// KIP-890's verification (AddPartitionsToTxn v4+ `verify_only`, and the produce path before
/// the first transactional batch of a producer in a partition): is each partition in this
/// transaction at this epoch? Changes nothing.
pub async fn verify_partitions<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, Result<(), TxnError>)> {
    let asked = partitions.clone();
    let answers = match remote_coordinator(services, transactional_id) {
        Ok(Some((node, peers))) => {
            peers
                .verify_partitions(
                    node,
                    transactional_id.to_string(),
                    producer_id,
                    producer_epoch,
                    asked,
                )
                .await
        }
        Ok(None) => {
            read_txn(services, transactional_id, move |txn| {
                txn.verify(producer_id, producer_epoch, &asked)
            })
            .await
        }
        Err(error) => Err(error),
    };
    zip_answers(partitions, answers)
}

/// [`verify_partitions`] for another broker's produce path: answered here or NOT_COORDINATOR,
/// never passed on (brokers whose metadata disagree for a moment must not bounce it).
pub async fn verify_partitions_here<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TopicPartition>,
) -> Vec<(TopicPartition, Result<(), TxnError>)> {
    let asked = partitions.clone();
    let answers = read_txn(services, transactional_id, move |txn| {
        txn.verify(producer_id, producer_epoch, &asked)
    })
    .await;
    zip_answers(partitions, answers)
}

/// [`verify_group`] for another broker's group coordinator: answered here or NOT_COORDINATOR.
pub async fn verify_group_here<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    group_id: &str,
) -> Result<(), TxnError> {
    let group = group_id.to_string();
    read_txn(services, transactional_id, move |txn| {
        txn.verify_group(producer_id, producer_epoch, &group)
    })
    .await
}

fn zip_answers(
    partitions: Vec<TopicPartition>,
    answers: Result<Vec<Result<(), TxnError>>, TxnError>,
) -> Vec<(TopicPartition, Result<(), TxnError>)> {
    match answers {
        Ok(answers) => partitions.into_iter().zip(answers).collect(),
        Err(error) => partitions
            .into_iter()
            .map(|partition| (partition, Err(error.clone())))
            .collect(),
    }
}

/// KIP-890's verification for TxnOffsetCommit (called by the group APIs before the offsets
/// are written): is the group in this transaction at this epoch? Changes nothing. Without it a
/// fenced producer's late commit would open a transaction in the group's offsets partition
/// that no marker ends.
pub async fn verify_group<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    group_id: &str,
) -> Result<(), TxnError> {
    let group = group_id.to_string();
    if let Some((node, peers)) = remote_coordinator(services, transactional_id)? {
        return peers
            .verify_group(
                node,
                transactional_id.to_string(),
                producer_id,
                producer_epoch,
                group,
            )
            .await;
    }
    read_txn(services, transactional_id, move |txn| {
        txn.verify_group(producer_id, producer_epoch, &group)
    })
    .await
}

/// Another broker coordinating an id, and the connections to reach it.
type RemoteCoordinator = (NodeId, Rc<dyn TxnPeers>);

/// `transactional_id`'s coordinator when it is another broker (the leader of the id's state
/// partition), with the connections to reach it; `None` when it is this broker or the state
/// topic does not exist (the local path answers then).
fn remote_coordinator<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
) -> Result<Option<RemoteCoordinator>, TxnError> {
    let snapshot = services.snapshot();
    let Some(topic) = snapshot.topic(TRANSACTION_STATE_TOPIC_NAME) else {
        return Ok(None);
    };
    let partition = state_partition_of(transactional_id, topic.partition_count());
    match topic.role(partition, snapshot.local_node).leader {
        Some(leader) if leader == snapshot.local_node => Ok(None),
        Some(leader) => {
            let peers = services.txn_peers().ok_or_else(|| {
                TxnError::CoordinatorNotAvailable(
                    "no connections to the transaction coordinator".into(),
                )
            })?;
            Ok(Some((leader, peers)))
        }
        None => Err(TxnError::CoordinatorNotAvailable(
            "the transaction state partition has no leader".into(),
        )),
    }
}

/// Runs `read` over one transaction on its coordinator without changing it (the KIP-890
/// checks); an id the coordinator does not know is INVALID_PRODUCER_ID_MAPPING.
async fn read_txn<S, T, F>(services: &Rc<S>, transactional_id: &str, read: F) -> Result<T, TxnError>
where
    S: TxnServices,
    T: Send + 'static,
    F: FnOnce(&Txn) -> Result<T, TxnError> + Send + 'static,
{
    let id = transactional_id.to_string();
    on_coordinator(
        services,
        transactional_id,
        false,
        move |_on, partition| async move {
            let partition = partition.ok_or(TxnError::InvalidProducerIdMapping)?;
            let txns = partition.txns.borrow();
            let txn = txns.get(&id).ok_or(TxnError::InvalidProducerIdMapping)?;
            read(txn)
        },
    )
    .await
}

/// EndTxn: decides the outcome (durably), then writes the markers and waits for them a bounded
/// time (`end_wait_ms_max`); the outcome stands whether or not they are all written by then.
pub async fn end_txn<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), TxnError> {
    let id = transactional_id.to_string();
    on_coordinator(
        services,
        transactional_id,
        false,
        move |on, partition| async move {
            let partition = partition.ok_or(TxnError::InvalidProducerIdMapping)?;
            let step = transition(&on, &partition, &id, |txn| {
                let step = txn.prepare_end(producer_id, producer_epoch, commit, wall_clock_ms())?;
                let record = match &step {
                    EndStep::Write(record) => Some(record.clone()),
                    EndStep::AlreadyComplete => None,
                };
                Ok((step, record))
            })
            .await?;
            if let EndStep::Write(record) = step {
                tracing::debug!(
                    transactional_id = %id,
                    producer_id,
                    state = record.state.name(),
                    partitions = record.partitions.len(),
                    groups = record.groups.len(),
                    "transaction decided"
                );
                wait_for_completion(&on, &partition, &id).await;
            }
            Ok(())
        },
    )
    .await
}

// ---- completion ----------------------------------------------------------------------------

/// Starts the completion of `transactional_id`'s decided transaction (if none runs) and waits
/// for it, at most `end_wait_ms_max`.
async fn wait_for_completion<S: TxnServices>(
    services: &Rc<S>,
    partition: &Rc<StatePartition>,
    transactional_id: &str,
) {
    let (waiter, done) = local_channel::new_bounded(1);
    partition
        .completion_waiters
        .borrow_mut()
        .entry(transactional_id.to_string())
        .or_default()
        .push(waiter);
    spawn_completion(services, partition, transactional_id);
    let wait = Duration::from_millis(services.transactions().limits().end_wait_ms_max);
    let _ = glommio::timer::timeout(wait, async {
        done.recv().await;
        Ok(())
    })
    .await;
}

/// One completion task per id: markers until all are written, then the `Complete*` record.
fn spawn_completion<S: TxnServices>(
    services: &Rc<S>,
    partition: &Rc<StatePartition>,
    transactional_id: &str,
) {
    if !partition
        .completing
        .borrow_mut()
        .insert(transactional_id.to_string())
    {
        return;
    }
    let services = services.clone();
    let partition = partition.clone();
    let transactional_id = transactional_id.to_string();
    glommio::spawn_local(async move {
        complete(&services, &partition, &transactional_id).await;
        partition.completing.borrow_mut().remove(&transactional_id);
        partition.completed(&transactional_id);
    })
    .detach();
}

async fn complete<S: TxnServices>(
    services: &Rc<S>,
    partition: &StatePartition,
    transactional_id: &str,
) {
    let limits = services.transactions().limits();
    let mut failures: u32 = 0;
    loop {
        if services.shutdown.is_requested() || partition.deposed.get() {
            // The decision is durable: the next load (here or on the new leader) finishes it.
            return;
        }
        let decided = partition
            .txns
            .borrow()
            .get(transactional_id)
            .filter(|txn| txn.current.state.is_prepared() && !txn.is_pending())
            .map(|txn| txn.current.clone());
        let Some(decided) = decided else {
            return;
        };
        let marker = decided.marker();
        let written =
            markers::write_markers(services, &decided, marker, partition.leader_epoch).await;
        if let Err(error) = written {
            failures += 1;
            // One warning per doubling of the pause: a partition offline for hours does not
            // flood the log.
            if failures.is_power_of_two() {
                tracing::warn!(
                    transactional_id,
                    %error,
                    failures,
                    "transaction markers not all written yet; retrying"
                );
            }
            glommio::timer::sleep(limits.marker_retry_delay(failures)).await;
            continue;
        }
        let completed = transition(services, partition, transactional_id, |txn| {
            let record = txn.prepare_complete(wall_clock_ms());
            Ok(((), Some(record)))
        })
        .await;
        match completed {
            Ok(()) => {
                tracing::debug!(
                    transactional_id,
                    commit = marker.commit,
                    "transaction completed"
                );
                return;
            }
            Err(error) => {
                // Markers are written again with the next try: a partition takes a repeated
                // marker of a transaction it already closed as a no-op.
                failures += 1;
                if failures.is_power_of_two() {
                    tracing::warn!(
                        transactional_id,
                        %error,
                        failures,
                        "completion record not written; retrying"
                    );
                }
                glommio::timer::sleep(limits.marker_retry_delay(failures)).await;
            }
        }
    }
}

// ---- timers --------------------------------------------------------------------------------

fn start_timers<S: TxnServices>(services: &Rc<S>) {
    if services.transactions().timers_started.replace(true) {
        return;
    }
    glommio::spawn_local(run_timers(services.clone())).detach();
}

/// Aborts timed-out transactions (bumping the epoch: the producer is fenced) and forgets ids
/// idle past their expiration; every tick, until shutdown.
async fn run_timers<S: TxnServices>(services: Rc<S>) {
    let coordinator = services.transactions();
    while !services.shutdown.is_requested() {
        glommio::timer::sleep(coordinator.limits.timer_tick()).await;
        let now_ms = wall_clock_ms();
        let partitions: Vec<Rc<StatePartition>> =
            coordinator.partitions.borrow().values().cloned().collect();
        for partition in partitions {
            let (timed_out, expired): (Vec<String>, Vec<String>) = {
                let txns = partition.txns.borrow();
                let expiration_ms = coordinator.limits.transactional_id_expiration_ms;
                (
                    txns.iter()
                        .filter(|(_, txn)| txn.timed_out(now_ms))
                        .map(|(id, _)| id.clone())
                        .collect(),
                    txns.iter()
                        .filter(|(_, txn)| txn.expired(now_ms, expiration_ms))
                        .map(|(id, _)| id.clone())
                        .collect(),
                )
            };
            for transactional_id in timed_out {
                glommio::spawn_local(abort_timed_out(
                    services.clone(),
                    partition.clone(),
                    transactional_id,
                ))
                .detach();
            }
            for transactional_id in expired {
                glommio::spawn_local(expire(
                    services.clone(),
                    partition.clone(),
                    transactional_id,
                ))
                .detach();
            }
        }
    }
}

async fn abort_timed_out<S: TxnServices>(
    services: Rc<S>,
    partition: Rc<StatePartition>,
    transactional_id: String,
) {
    let now_ms = wall_clock_ms();
    let aborted = transition(&services, &partition, &transactional_id, |txn| {
        if !txn.timed_out(now_ms) {
            // Changed since the timer looked.
            return Ok((None, None));
        }
        let record = txn.prepare_timeout_abort(now_ms);
        Ok((Some(record.clone()), Some(record)))
    })
    .await;
    match aborted {
        Ok(Some(record)) => {
            tracing::info!(
                transactional_id = %transactional_id,
                producer_id = record.producer_id,
                producer_epoch = record.producer_epoch,
                timeout_ms = record.timeout_ms,
                "transaction timed out: aborting it and fencing its producer"
            );
            spawn_completion(&services, &partition, &transactional_id);
        }
        Ok(None) => {}
        Err(error) => {
            tracing::warn!(transactional_id = %transactional_id, %error, "timed-out transaction not aborted yet")
        }
    }
}

async fn expire<S: TxnServices>(
    services: Rc<S>,
    partition: Rc<StatePartition>,
    transactional_id: String,
) {
    let now_ms = wall_clock_ms();
    let expiration_ms = services
        .transactions()
        .limits()
        .transactional_id_expiration_ms;
    {
        let mut txns = partition.txns.borrow_mut();
        match txns.get_mut(&transactional_id) {
            Some(txn) if txn.expired(now_ms, expiration_ms) => txn.prepare_expire(now_ms),
            _ => return,
        }
    }
    let written = write_state(&services, &partition, &transactional_id, None, now_ms).await;
    let mut txns = partition.txns.borrow_mut();
    match written {
        Ok(()) => {
            txns.remove(&transactional_id);
            tracing::info!(transactional_id = %transactional_id, "transactional id expired");
        }
        Err(_) => {
            if let Some(txn) = txns.get_mut(&transactional_id) {
                txn.abandon_transition();
            }
        }
    }
}

/// Loads every state partition this shard coordinates while this broker leads it, so that
/// transactions decided before a restart or a leader change are finished and open ones time out
/// even if no producer of them comes back; unloads those whose leadership moved away. Runs from
/// shard start until shutdown, in the background: the state topic may be created later, and in
/// a cluster the partitions' leadership moves.
pub async fn start<S: TxnServices>(services: Rc<S>) {
    let retry = Duration::from_millis(services.transactions().limits().marker_retry_interval_ms);
    let tick = services.transactions().limits().timer_tick();
    while !services.shutdown.is_requested() {
        let snapshot = services.snapshot();
        if let Some(topic) = snapshot.topic(TRANSACTION_STATE_TOPIC_NAME).cloned() {
            let local = snapshot.local_node;
            let coordinator = services.transactions();
            let owned = (0..topic.partition_count()).filter(|partition| {
                coordinator_shard_of(*partition, services.shard_count) == services.id
            });
            let mut waiting = false;
            for partition in owned {
                let role = topic.role(partition, local);
                let current =
                    coordinator
                        .partitions
                        .borrow()
                        .get(&partition)
                        .is_some_and(|loaded| {
                            loaded.topic.id == topic.id && loaded.leader_epoch == role.leader_epoch
                        });
                if role.leader != Some(local) {
                    coordinator.unload(partition);
                    continue;
                }
                if current {
                    continue;
                }
                match loaded(&services, topic.clone(), partition).await {
                    Ok(_) => {}
                    Err(TxnError::ShuttingDown) => return,
                    Err(error) => {
                        tracing::debug!(partition, %error, "transaction state partition not loaded yet");
                        waiting = true;
                    }
                }
            }
            if waiting {
                glommio::timer::sleep(retry).await;
                continue;
            }
        }
        glommio::timer::sleep(tick).await;
    }
}

// ---- administration ------------------------------------------------------------------------

/// DescribeTransactions' answer for one id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnDescription {
    pub transactional_id: String,
    pub state: TxnState,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub timeout_ms: i32,
    /// -1 when no transaction is open.
    pub start_timestamp_ms: i64,
    pub partitions: Vec<TopicPartition>,
    pub groups: Vec<String>,
}

pub async fn describe<S: TxnServices>(
    services: &Rc<S>,
    transactional_id: &str,
) -> Result<TxnDescription, TxnError> {
    let id = transactional_id.to_string();
    on_coordinator(
        services,
        transactional_id,
        false,
        move |_on, partition| async move {
            let partition = partition.ok_or(TxnError::TransactionalIdNotFound)?;
            let txns = partition.txns.borrow();
            let txn = txns.get(&id).ok_or(TxnError::TransactionalIdNotFound)?;
            let current = &txn.current;
            Ok(TxnDescription {
                transactional_id: id.clone(),
                state: current.state,
                producer_id: current.producer_id,
                producer_epoch: current.producer_epoch,
                timeout_ms: current.timeout_ms,
                start_timestamp_ms: current.start_timestamp_ms,
                partitions: current.partitions.iter().cloned().collect(),
                groups: current.groups.iter().cloned().collect(),
            })
        },
    )
    .await
}

/// One id in ListTransactions' answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnListing {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: TxnState,
}

/// ListTransactions' filters (empty lists match everything, as Kafka's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    pub states: Vec<TxnState>,
    pub producer_ids: Vec<i64>,
    /// Only transactions started more than this long ago (v1, KIP-994); `None` or negative:
    /// any.
    pub duration_ms_min: Option<i64>,
}

/// Every transactional id of every shard that matches `filter`, ordered by id. An id whose
/// partition cannot be loaded is left out (and logged).
pub async fn list<S: TxnServices>(
    services: &Rc<S>,
    filter: ListFilter,
) -> Result<Vec<TxnListing>, TxnError> {
    if services
        .snapshot()
        .topic(TRANSACTION_STATE_TOPIC_NAME)
        .is_none()
    {
        return Ok(Vec::new());
    }
    let now_ms = wall_clock_ms();
    let mut listings = Vec::new();
    for shard in 0..services.shard_count {
        let filter = filter.clone();
        let on_shard = invoke_on(services, shard, move |on: Rc<S>| async move {
            list_on_shard(&on, &filter, now_ms).await
        })
        .await
        .map_err(|_| TxnError::ShuttingDown)??;
        listings.extend(on_shard);
    }
    listings.sort_by(|a: &TxnListing, b: &TxnListing| a.transactional_id.cmp(&b.transactional_id));
    Ok(listings)
}

async fn list_on_shard<S: TxnServices>(
    services: &Rc<S>,
    filter: &ListFilter,
    now_ms: i64,
) -> Result<Vec<TxnListing>, TxnError> {
    let Some(topic) = state_topic(services, false).await? else {
        return Ok(Vec::new());
    };
    let owned = (0..topic.partition_count())
        .filter(|partition| coordinator_shard_of(*partition, services.shard_count) == services.id);
    let mut listings = Vec::new();
    for partition in owned {
        let loaded = match loaded(services, topic.clone(), partition).await {
            Ok(loaded) => loaded,
            Err(error) => {
                tracing::warn!(partition, %error, "transactions of a state partition not listed");
                continue;
            }
        };
        let txns = loaded.txns.borrow();
        let matching: BTreeMap<&String, &Txn> = txns
            .iter()
            .filter(|(_, txn)| {
                let current = &txn.current;
                (filter.states.is_empty() || filter.states.contains(&current.state))
                    && (filter.producer_ids.is_empty()
                        || filter.producer_ids.contains(&current.producer_id))
                    // Kafka's rule, whatever the state (an idle id's start is -1).
                    && filter.duration_ms_min.is_none_or(|duration_ms_min| {
                        duration_ms_min < 0 || now_ms - current.start_timestamp_ms > duration_ms_min
                    })
            })
            .collect();
        listings.extend(matching.into_iter().map(|(id, txn)| TxnListing {
            transactional_id: id.clone(),
            producer_id: txn.current.producer_id,
            state: txn.current.state,
        }));
    }
    Ok(listings)
}
