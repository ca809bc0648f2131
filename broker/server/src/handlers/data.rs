//! Data-plane handlers: produce, fetch (with long polling), list offsets, delete records.
//!
//! Each names partitions by topic name; the handler resolves them against one catalog snapshot,
//! answers unknown ones at once, and sends the rest to their owning shards (`shard::router`).
//! Internal topics (`__consumer_offsets`) are written only by the broker's group coordinator,
//! through shard requests: a client's produce or delete records to one is refused per partition
//! (`InvalidTopicName`), while fetch and list offsets stay allowed, as in Kafka.
//! Record batches are never re-encoded: produce hands each batch's own bytes to its owner
//! (`BytesMut`, moved, not copied, when the frame buffer is not shared), fetch returns stored
//! `Bytes` that the response writer sends with one vectored write.
//!
//! Transactions: a produce with transactional batches (native or Kafka) is checked on each
//! owner before it is appended (`produce_verified`: storage's verification guard, then the
//! transaction coordinator, KIP-890 part 1); fetch and list offsets read under the request's
//! isolation level (read_committed: below the last stable offset, with the aborted list).
//! Which transactions exist is the coordinator's (`spate-txn`); which offsets are stable is
//! storage's.

use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use glommio::channels::local_channel;
use spate_protocol::api::FetchPartition as FetchRequestPartition;
use spate_protocol::api::{
    AbortedTransaction, Acks, DeleteRecordsPartition, DeleteRecordsPartitionResponse,
    DeleteRecordsRequest, DeleteRecordsResponse, FetchPartitionResponse, FetchRequest,
    FetchResponse, IsolationLevel, ListOffsetsPartition, ListOffsetsPartitionResponse,
    ListOffsetsRequest, ListOffsetsResponse, OffsetSpec, ProducePartitionResponse, ProduceRequest,
    ProduceResponse, RecordSet, TopicPartitions, NO_NODE,
};
use spate_protocol::batch::header::{attributes, BatchHeader};
use spate_protocol::error::ErrorCode;

use super::partition_error_code;
use crate::catalog::{is_internal_topic, CatalogSnapshot, ShardId};
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::shard::messages::{
    AbortedTxn, FetchOutcome, FetchPartition, Isolation, PartitionError, PartitionKey, ProduceAcks,
    ProduceOutcome, ProducePartition, LIST_OFFSETS_EARLIEST, LIST_OFFSETS_LATEST,
};
use crate::shard::router::scatter_on;
use crate::shard::Shard;
use crate::txn::{self, TxnError};

/// Finds the owner of `(topic, partition)` in `snapshot`.
fn resolve(
    snapshot: &CatalogSnapshot,
    topic: &str,
    partition: u32,
) -> Result<(ShardId, PartitionKey), PartitionError> {
    let topic = snapshot
        .topic(topic)
        .ok_or(PartitionError::UnknownTopicOrPartition)?;
    let owner = topic
        .owner_of(partition)
        .ok_or(PartitionError::UnknownTopicOrPartition)?;
    Ok((
        owner,
        PartitionKey {
            topic_id: topic.id,
            partition,
        },
    ))
}

/// Like [`resolve`], for requests that change a partition's records: refuses internal topics,
/// which only the broker itself writes.
fn resolve_for_write(
    snapshot: &CatalogSnapshot,
    topic: &str,
    partition: u32,
) -> Result<(ShardId, PartitionKey), PartitionError> {
    if is_internal_topic(topic) {
        return Err(PartitionError::InternalTopic);
    }
    resolve(snapshot, topic, partition)
}

/// Sends the resolvable items to their owners; unresolvable ones keep their error. Output `i`
/// answers input `i`. The native and the Kafka handlers share it.
pub(crate) async fn route<T, R, F, Fut>(
    services: &Rc<Services>,
    items: Vec<Result<(ShardId, T), PartitionError>>,
    run: F,
) -> Vec<Result<R, PartitionError>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Rc<Shard>, Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Result<R, PartitionError>>> + 'static,
{
    route_or_refuse(services, items, run)
        .await
        .into_iter()
        .map(|answer| answer.and_then(|owner_answer| owner_answer))
        .collect()
}

/// [`route`] for items refused before any shard is asked with a refusal of the caller's own
/// (a Kafka error code): each refusal stays in its place, beside the owners' answers. Output
/// `i` answers input `i`.
pub(crate) async fn route_or_refuse<T, R, E, F, Fut>(
    services: &Rc<Services>,
    items: Vec<Result<(ShardId, T), E>>,
    run: F,
) -> Vec<Result<Result<R, PartitionError>, E>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Rc<Shard>, Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Result<R, PartitionError>>> + 'static,
{
    route_or_refuse_on(services, items, move |on: Rc<Services>, owned| {
        run(on.shard.clone(), owned)
    })
    .await
}

/// [`route_or_refuse`] for work that needs the owner's services, not only its shard.
async fn route_or_refuse_on<T, R, E, F, Fut>(
    services: &Rc<Services>,
    items: Vec<Result<(ShardId, T), E>>,
    run: F,
) -> Vec<Result<Result<R, PartitionError>, E>>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(Rc<Services>, Vec<T>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Vec<Result<R, PartitionError>>> + 'static,
{
    let mut answers: Vec<Option<Result<Result<R, PartitionError>, E>>> =
        Vec::with_capacity(items.len());
    let mut routed = Vec::new();
    let mut routed_positions = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item {
            Ok(owned) => {
                routed_positions.push(index);
                routed.push(owned);
                answers.push(None);
            }
            Err(refusal) => answers.push(Some(Err(refusal))),
        }
    }
    let results = scatter_on(services, routed, run).await;
    for (index, result) in routed_positions.into_iter().zip(results) {
        answers[index] = Some(Ok(result));
    }
    answers
        .into_iter()
        .map(|answer| answer.expect("every item answered"))
        .collect()
}

/// Rebuilds a request's topic → partition shape from per-partition results in request order
/// (as `route` returns them); a missing result reads as an unknown partition.
fn answer_in_request_order<T, P, R, A>(
    topics: impl IntoIterator<Item = (String, T)>,
    results: Vec<Result<R, PartitionError>>,
    mut answer: impl FnMut(P, Result<R, PartitionError>) -> A,
) -> Vec<TopicPartitions<A>>
where
    T: IntoIterator<Item = P>,
{
    let mut results = results.into_iter();
    topics
        .into_iter()
        .map(|(name, partitions)| TopicPartitions {
            name,
            partitions: partitions
                .into_iter()
                .map(|partition| {
                    let result = results
                        .next()
                        .unwrap_or(Err(PartitionError::UnknownTopicOrPartition));
                    answer(partition, result)
                })
                .collect(),
        })
        .collect()
}

/// A borrowed request's topic → partition shape, for `answer_in_request_order`.
fn request_shape<P>(
    topics: &[TopicPartitions<P>],
) -> impl Iterator<Item = (String, std::slice::Iter<'_, P>)> {
    topics
        .iter()
        .map(|topic| (topic.name.clone(), topic.partitions.iter()))
}

pub async fn produce(
    services: &Rc<Services>,
    request: ProduceRequest,
    frame_body: Bytes,
) -> Option<ProduceResponse> {
    // A partition still opening after the start is waited for as long as the producer waits.
    let opening_wait_until = Instant::now() + Duration::from_millis(u64::from(request.timeout_ms));
    let acks = match request.acks {
        Acks::None => ProduceAcks::None,
        Acks::Leader => ProduceAcks::Leader,
        Acks::All => ProduceAcks::All,
    };
    let snapshot = services.snapshot();
    // Where each batch sits in the frame body, so the batches can be taken out of the body as
    // owned buffers once the decoded request (which shares the body) is gone.
    let mut shape: Vec<(String, Vec<u32>)> = Vec::with_capacity(request.topics.len());
    let mut placements: Vec<Result<(ShardId, PartitionKey), PartitionError>> = Vec::new();
    let mut ranges: Vec<Vec<Range<usize>>> = Vec::new();
    for topic in request.topics {
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for partition in topic.partitions {
            placements.push(resolve_for_write(
                &snapshot,
                &topic.name,
                partition.partition,
            ));
            ranges.push(
                partition
                    .batches
                    .iter()
                    .map(|batch| range_within(&frame_body, batch))
                    .collect(),
            );
            partitions.push(partition.partition);
        }
        shape.push((topic.name, partitions));
    }
    let mut batches = take_batches(frame_body, &ranges).into_iter();
    let items: Vec<Result<(ShardId, ProducePartition), PartitionError>> = placements
        .into_iter()
        .map(|placement| {
            let batches = batches.next().unwrap_or_default();
            placement.map(|(owner, key)| {
                let partition = ProducePartition {
                    key,
                    batches,
                    verification: None,
                };
                (owner, partition)
            })
        })
        .collect();
    let results = produce_partitions(
        services,
        acks,
        request.transactional_id,
        items,
        opening_wait_until,
    )
    .await;
    if acks == ProduceAcks::None {
        return None;
    }
    let topics = answer_in_request_order(shape, results, produce_answer);
    Some(ProduceResponse { topics })
}

/// Appends each routed partition's batches on its owner; output `i` answers item `i`. The
/// native and the Kafka produce share it.
///
/// A request with transactional batches runs [`produce_verified`] on each owner instead, so the
/// producer's transaction is checked where its batches are appended (KIP-890 part 1: Kafka's
/// leader does the same before it appends).
pub(crate) async fn produce_partitions(
    services: &Rc<Services>,
    acks: ProduceAcks,
    transactional_id: Option<String>,
    items: Vec<Result<(ShardId, ProducePartition), PartitionError>>,
    opening_wait_until: Instant,
) -> Vec<Result<ProduceOutcome, PartitionError>> {
    let transactional = items
        .iter()
        .flatten()
        .any(|(_, partition)| transactional_producer(&partition.batches).is_some());
    if !transactional {
        return route(services, items, move |shard, partitions| {
            shard.produce(acks, partitions, opening_wait_until)
        })
        .await;
    }
    route_or_refuse_on(services, items, move |on, partitions| {
        produce_verified(
            on,
            acks,
            transactional_id.clone(),
            partitions,
            opening_wait_until,
        )
    })
    .await
    .into_iter()
    .map(|answer| answer.and_then(|owner_answer| owner_answer))
    .collect()
}

/// The producer id and epoch of the first transactional batch among `batches` (stored
/// batches: the Spate header repeats the Kafka fields); `None` when no batch is transactional.
/// A transactional batch without a producer id is left to storage, which refuses it.
pub(crate) fn transactional_producer(batches: &[BytesMut]) -> Option<(i64, i16)> {
    batches.iter().find_map(|batch| {
        let header = BatchHeader::decode(batch).ok()?;
        let transactional = header.attributes & attributes::TRANSACTIONAL != 0;
        (transactional && header.producer_id >= 0)
            .then_some((header.producer_id, header.producer_epoch))
    })
}

/// On the owner of `partitions`: appends them, each transactional one only if its producer's
/// transaction holds the partition. Storage hands out a verification guard for the first
/// batch of a producer's transaction in a partition (`Shard::txn_verification`); for those the
/// transaction coordinator is asked, and the batch is appended with the guard, which storage
/// refuses if a marker for the producer came in between: so a late batch of an aborted or
/// committed transaction can never open a transaction nobody will close (the hanging
/// transaction KIP-890 fixes). Output `i` answers `partitions[i]`.
async fn produce_verified(
    services: Rc<Services>,
    acks: ProduceAcks,
    transactional_id: Option<String>,
    mut partitions: Vec<ProducePartition>,
    opening_wait_until: Instant,
) -> Vec<Result<ProduceOutcome, PartitionError>> {
    let shard = services.shard.clone();
    let mut refusals: Vec<Option<PartitionError>> = partitions.iter().map(|_| None).collect();
    // (index in `partitions`, guard) of the partitions the coordinator must confirm.
    let mut unverified = Vec::new();
    // One coordinator question per request: the Kafka layer refuses requests of several
    // transactional producers as a whole (as Kafka); a native one gets it per partition here.
    let mut producer = None;
    for (index, partition) in partitions.iter().enumerate() {
        let Some((producer_id, producer_epoch)) = transactional_producer(&partition.batches) else {
            continue;
        };
        if *producer.get_or_insert((producer_id, producer_epoch)) != (producer_id, producer_epoch) {
            refusals[index] = Some(PartitionError::InvalidProducerIdMapping(
                "transactional records of more than one producer in one request".into(),
            ));
            continue;
        }
        let guard = shard
            .txn_verification(
                partition.key,
                producer_id,
                producer_epoch,
                opening_wait_until,
            )
            .await;
        match guard {
            Ok(Some(guard)) => unverified.push((index, guard)),
            Ok(None) => {}
            Err(error) => refusals[index] = Some(error),
        }
    }
    if let (Some((producer_id, producer_epoch)), false) = (producer, unverified.is_empty()) {
        let keys = unverified
            .iter()
            .map(|(index, _)| partitions[*index].key)
            .collect();
        let verdicts = match &transactional_id {
            Some(transactional_id) => {
                coordinator_verdicts(
                    &services,
                    transactional_id,
                    producer_id,
                    producer_epoch,
                    keys,
                )
                .await
            }
            None => unverified
                .iter()
                .map(|_| {
                    Err(PartitionError::InvalidTxnState(
                        "a transactional batch needs its producer's transactional id".into(),
                    ))
                })
                .collect(),
        };
        for ((index, guard), verdict) in unverified.into_iter().zip(verdicts) {
            match verdict {
                Ok(()) => partitions[index].verification = Some(guard),
                Err(error) => refusals[index] = Some(error),
            }
        }
    }
    let mut appended = Vec::with_capacity(partitions.len());
    for (partition, refusal) in partitions.into_iter().zip(&refusals) {
        if refusal.is_none() {
            appended.push(partition);
        }
    }
    let mut outcomes = shard
        .produce(acks, appended, opening_wait_until)
        .await
        .into_iter();
    refusals
        .into_iter()
        .map(|refusal| match refusal {
            Some(error) => Err(error),
            None => outcomes.next().expect("an outcome per appended partition"),
        })
        .collect()
}

/// The transaction coordinator's answer, for each of `keys`, to whether the partition is in
/// the producer's transaction at this epoch (`Ok`: it is). A partition of a topic deleted
/// meanwhile is unknown.
async fn coordinator_verdicts(
    services: &Rc<Services>,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    keys: Vec<PartitionKey>,
) -> Vec<Result<(), PartitionError>> {
    let snapshot = services.snapshot();
    let names: Vec<Option<(String, u32)>> = keys
        .iter()
        .map(|key| {
            let topic = snapshot
                .topics
                .values()
                .find(|topic| topic.id == key.topic_id)?;
            Some((topic.name.clone(), key.partition))
        })
        .collect();
    let asked: Vec<(String, u32)> = names.iter().flatten().cloned().collect();
    let mut verdicts = txn::coordinator::verify_partitions(
        services,
        transactional_id,
        producer_id,
        producer_epoch,
        asked,
    )
    .await
    .into_iter();
    names
        .into_iter()
        .map(|name| match name {
            None => Err(PartitionError::UnknownTopicOrPartition),
            Some(_) => {
                let (_, verdict) = verdicts.next().expect("a verdict per partition asked");
                verdict.map_err(verification_refusal)
            }
        })
        .collect()
}

/// A coordinator's refusal of a partition's verification, as the produce answers it
/// (`kafka::produce` turns these into Kafka's codes by version, as `ReplicaManager` does).
fn verification_refusal(error: TxnError) -> PartitionError {
    let unavailable = |name: &str| PartitionError::TransactionVerificationUnavailable(name.into());
    match error {
        TxnError::TransactionAbortable => PartitionError::TransactionAbortable(error.to_string()),
        TxnError::ConcurrentTransactions => unavailable("CONCURRENT_TRANSACTIONS"),
        TxnError::CoordinatorLoadInProgress => unavailable("COORDINATOR_LOAD_IN_PROGRESS"),
        TxnError::NotCoordinator => unavailable("NOT_COORDINATOR"),
        TxnError::CoordinatorNotAvailable(_) => unavailable("COORDINATOR_NOT_AVAILABLE"),
        // Kafka's AddPartitionsToTxnManager answers a fenced producer INVALID_PRODUCER_EPOCH.
        TxnError::InvalidProducerEpoch | TxnError::ProducerFenced => {
            PartitionError::ProducerFenced(error.to_string())
        }
        TxnError::InvalidProducerIdMapping => {
            PartitionError::InvalidProducerIdMapping(error.to_string())
        }
        TxnError::InvalidTxnState(_) => PartitionError::InvalidTxnState(error.to_string()),
        TxnError::UnknownTopicOrPartition => PartitionError::UnknownTopicOrPartition,
        TxnError::ShuttingDown => PartitionError::ShuttingDown,
        error => PartitionError::InvalidRequest(error.to_string()),
    }
}

fn produce_answer(
    partition: u32,
    result: Result<ProduceOutcome, PartitionError>,
) -> ProducePartitionResponse {
    match result {
        Ok(outcome) => ProducePartitionResponse {
            partition,
            error_code: ErrorCode::None,
            base_offset: outcome.base_offset,
            // Timestamps are the producer's (create time); there is no log-append time.
            log_append_time_ms: -1,
            log_start_offset: outcome.log_start_offset,
            ..ProducePartitionResponse::default()
        },
        Err(error) => {
            tracing::debug!(partition, %error, "produce refused");
            let (leader_id, leader_epoch) = leader_hint(&error);
            ProducePartitionResponse {
                partition,
                error_code: partition_error_code(&error),
                base_offset: 0,
                log_append_time_ms: -1,
                log_start_offset: 0,
                leader_id,
                leader_epoch,
            }
        }
    }
}

/// The leader a NotLeaderOrFollower answer names (Produce and Fetch v2), so the client can go
/// there without asking for metadata first (`NO_NODE` when it knows none); 0 and 0, the
/// fields' defaults, with any other error.
fn leader_hint(error: &PartitionError) -> (spate_protocol::NodeId, i32) {
    match error {
        PartitionError::NotLeaderOrFollower {
            leader,
            leader_epoch,
        } => (leader.unwrap_or(NO_NODE), *leader_epoch),
        _ => (0, 0),
    }
}

/// Where `part` (a slice of `whole`) sits inside `whole`.
fn range_within(whole: &Bytes, part: &Bytes) -> Range<usize> {
    let start = part.as_ptr() as usize - whole.as_ptr() as usize;
    assert!(
        start + part.len() <= whole.len(),
        "batch lies outside the frame body"
    );
    start..start + part.len()
}

/// Splits the frame body into one owned buffer per batch. When nothing else shares the body
/// (a large frame read into its own buffer) the buffers are carved out of it without copying;
/// otherwise (a small frame that shared the connection's read buffer) each batch is copied once.
fn take_batches(body: Bytes, ranges: &[Vec<Range<usize>>]) -> Vec<Vec<BytesMut>> {
    match body.try_into_mut() {
        Ok(mut rest) => {
            tracing::trace!(
                bytes = rest.len(),
                "produce batches taken from the frame without copying"
            );
            let mut consumed = 0;
            ranges
                .iter()
                .map(|partition| {
                    partition
                        .iter()
                        .map(|range| {
                            // Produce batches follow each other in body order.
                            assert!(range.start >= consumed, "batches out of order in the body");
                            rest.advance(range.start - consumed);
                            consumed = range.end;
                            rest.split_to(range.len())
                        })
                        .collect()
                })
                .collect()
        }
        Err(shared) => {
            tracing::trace!(
                bytes = shared.len(),
                "produce frame shares its buffer; copying its batches"
            );
            ranges
                .iter()
                .map(|partition| {
                    partition
                        .iter()
                        .map(|range| BytesMut::from(&shared[range.clone()]))
                        .collect()
                })
                .collect()
        }
    }
}

/// The shards' isolation for a native request's level.
fn isolation(level: IsolationLevel) -> Isolation {
    match level {
        IsolationLevel::ReadUncommitted => Isolation::ReadUncommitted,
        IsolationLevel::ReadCommitted => Isolation::ReadCommitted,
    }
}

pub async fn fetch(services: &Rc<Services>, request: &FetchRequest) -> FetchResponse {
    let limits = &services.config.limits;
    let wait = Duration::from_millis(u64::from(request.max_wait_ms).min(limits.fetch_wait_ms_max));
    let deadline = Instant::now() + wait;
    let response_bytes_max = (request.max_bytes as usize).min(limits.fetch_response_bytes_max);
    let min_bytes = request.min_bytes as usize;
    let isolation = isolation(request.isolation_level);
    let snapshot = services.snapshot();

    let mut targets = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let max_bytes = (partition.partition_max_bytes as usize).min(response_bytes_max);
            targets.push(
                resolve(&snapshot, &topic.name, partition.partition).and_then(|(owner, key)| {
                    let offset = i64::try_from(partition.fetch_offset).map_err(|_| {
                        PartitionError::OffsetOutOfRange {
                            offset: i64::MAX,
                            log_start_offset: 0,
                            high_watermark: 0,
                        }
                    })?;
                    Ok((
                        owner,
                        FetchPartition {
                            key,
                            offset,
                            max_bytes,
                            isolation,
                        },
                    ))
                }),
            );
        }
    }

    let results = loop {
        // A partition still opening after the start is waited for until the fetch's own
        // deadline (max_wait_ms).
        let results = route(services, targets.clone(), move |shard, partitions| {
            shard.fetch(partitions, deadline)
        })
        .await;
        let total: usize = results.iter().flatten().map(FetchOutcome::bytes).sum();
        let failed = results.iter().any(Result::is_err);
        let now = Instant::now();
        if total >= min_bytes || failed || now >= deadline || services.shutdown.is_requested() {
            break results;
        }
        wait_for_any_append(services, &targets, deadline - now).await;
    };

    let mut budget = response_bytes_max;
    let mut first = true;
    let topics = answer_in_request_order(
        request_shape(&request.topics),
        results,
        |partition: &FetchRequestPartition, result| {
            fetch_answer(partition.partition, result, &mut budget, &mut first)
        },
    );
    FetchResponse {
        error_code: ErrorCode::None,
        topics,
    }
}

/// Keeps whole batches while they fit the response budget; the first batch of the response is
/// always kept (as Kafka does) so a consumer can progress past a batch larger than its limit.
fn fetch_answer(
    partition: u32,
    result: Result<FetchOutcome, PartitionError>,
    budget: &mut usize,
    first: &mut bool,
) -> FetchPartitionResponse {
    match result {
        Ok(outcome) => {
            let mut kept = Vec::with_capacity(outcome.batches.len());
            for batch in outcome.batches {
                if batch.len() > *budget && !*first {
                    break;
                }
                *budget = budget.saturating_sub(batch.len());
                *first = false;
                kept.push(batch);
            }
            let aborted_transactions = aborted_transactions(&outcome.aborted, &kept);
            FetchPartitionResponse {
                partition,
                error_code: ErrorCode::None,
                high_watermark: outcome.high_watermark,
                log_start_offset: outcome.log_start_offset,
                records: RecordSet::from_chunks(kept),
                last_stable_offset: outcome.last_stable_offset,
                aborted_transactions,
                ..FetchPartitionResponse::default()
            }
        }
        Err(error) => {
            let (high_watermark, log_start_offset) = match &error {
                PartitionError::OffsetOutOfRange {
                    log_start_offset,
                    high_watermark,
                    ..
                } => (*high_watermark, *log_start_offset),
                _ => (0, 0),
            };
            let (leader_id, leader_epoch) = leader_hint(&error);
            FetchPartitionResponse {
                partition,
                error_code: partition_error_code(&error),
                high_watermark,
                log_start_offset,
                records: RecordSet::default(),
                last_stable_offset: high_watermark,
                aborted_transactions: Vec::new(),
                leader_id,
                leader_epoch,
            }
        }
    }
}

/// The aborted transactions a read_committed answer lists: those the owner found for what it
/// read, less any that begin after the last batch kept (the budget may have cut the answer).
fn aborted_transactions(aborted: &[AbortedTxn], kept: &[Bytes]) -> Vec<AbortedTransaction> {
    let Some(last_kept) = kept.last() else {
        return Vec::new();
    };
    let next_offset = BatchHeader::decode(last_kept)
        .expect("owners answer whole batches")
        .next_offset();
    aborted
        .iter()
        .filter(|aborted| aborted.first_offset < next_offset)
        .map(|aborted| AbortedTransaction {
            producer_id: aborted.producer_id,
            first_offset: aborted.first_offset,
        })
        .collect()
}

/// Waits until any owner reports new data on one of the fetched partitions, or `wait` passes.
/// One wait is sent to each owning shard; the first to answer ends the wait, and the local
/// tasks waiting on the others are dropped (cancelled). A remote owner's wait ends by itself at
/// the same deadline. The native and the Kafka fetch share it.
pub(crate) async fn wait_for_any_append(
    services: &Rc<Services>,
    targets: &[Result<(ShardId, FetchPartition), PartitionError>],
    wait: Duration,
) {
    let mut by_owner: std::collections::BTreeMap<ShardId, Vec<(PartitionKey, i64, Isolation)>> =
        Default::default();
    for (owner, fetch) in targets.iter().flatten() {
        by_owner
            .entry(*owner)
            .or_default()
            .push((fetch.key, fetch.offset, fetch.isolation));
    }
    if by_owner.is_empty() {
        return;
    }
    let (sender, receiver) = local_channel::new_bounded(by_owner.len());
    let sender = Rc::new(sender);
    let wait_ms = wait.as_millis().try_into().unwrap_or(u64::MAX);
    let _waits: Vec<glommio::Task<()>> = by_owner
        .into_iter()
        .map(|(owner, partitions)| {
            let services = services.clone();
            let sender = sender.clone();
            glommio::spawn_local(async move {
                let _ = invoke_on(&services, owner, move |on: Rc<Services>| async move {
                    on.wait_for_data(&partitions, wait_ms).await
                })
                .await;
                let _ = sender.try_send(());
            })
        })
        .collect();
    let _ = glommio::timer::timeout(wait, async {
        receiver.recv().await;
        Ok(())
    })
    .await;
}

pub async fn list_offsets(
    services: &Rc<Services>,
    request: &ListOffsetsRequest,
) -> ListOffsetsResponse {
    let snapshot = services.snapshot();
    let mut items = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            let target = match partition.spec {
                OffsetSpec::Earliest => LIST_OFFSETS_EARLIEST,
                OffsetSpec::Latest => LIST_OFFSETS_LATEST,
                OffsetSpec::Timestamp(timestamp) => timestamp,
            };
            items.push(
                resolve(&snapshot, &topic.name, partition.partition)
                    .map(|(owner, key)| (owner, (key, target))),
            );
        }
    }
    let isolation = isolation(request.isolation_level);
    let results = route(services, items, move |shard, partitions| {
        shard.list_offsets(partitions, isolation)
    })
    .await;
    let topics = answer_in_request_order(
        request_shape(&request.topics),
        results,
        |partition: &ListOffsetsPartition, result| match result {
            Ok(answer) => ListOffsetsPartitionResponse {
                partition: partition.partition,
                error_code: ErrorCode::None,
                offset: u64::try_from(answer.offset).ok(),
                timestamp: answer.timestamp,
            },
            Err(error) => ListOffsetsPartitionResponse {
                partition: partition.partition,
                error_code: partition_error_code(&error),
                offset: None,
                timestamp: -1,
            },
        },
    );
    ListOffsetsResponse { topics }
}

pub async fn delete_records(
    services: &Rc<Services>,
    request: &DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let mut items = Vec::new();
    for topic in &request.topics {
        for partition in &topic.partitions {
            // u64::MAX stands for Kafka's -1: "up to the high watermark".
            let before = i64::try_from(partition.before_offset).unwrap_or(-1);
            items.push((topic.name.as_str(), partition.partition, before));
        }
    }
    let results = delete_records_before(services, &items, u64::from(request.timeout_ms)).await;
    let topics = answer_in_request_order(
        request_shape(&request.topics),
        results,
        |partition: &DeleteRecordsPartition, result| match result {
            Ok(log_start_offset) => DeleteRecordsPartitionResponse {
                partition: partition.partition,
                error_code: ErrorCode::None,
                log_start_offset,
            },
            Err(error) => DeleteRecordsPartitionResponse {
                partition: partition.partition,
                error_code: partition_error_code(&error),
                log_start_offset: 0,
            },
        },
    );
    DeleteRecordsResponse { topics }
}

/// Deletes the records before `before` of each `(topic, partition, before)` on its owner (`-1`:
/// up to the high watermark), waiting up to `timeout_ms` for a partition still opening after
/// the start. Answer `i` is item `i`'s new log start offset. The native and the Kafka
/// DeleteRecords share it.
pub(crate) async fn delete_records_before(
    services: &Rc<Services>,
    items: &[(&str, u32, i64)],
    timeout_ms: u64,
) -> Vec<Result<u64, PartitionError>> {
    let opening_wait_until = Instant::now() + Duration::from_millis(timeout_ms);
    let snapshot = services.snapshot();
    let items = items
        .iter()
        .map(|&(topic, partition, before)| {
            resolve_for_write(&snapshot, topic, partition)
                .map(|(owner, key)| (owner, (key, before)))
        })
        .collect();
    route(services, items, move |shard, partitions| {
        shard.delete_records(partitions, opening_wait_until)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_carved_without_copy_when_the_body_is_not_shared() {
        let body = Bytes::from((0u8..100).collect::<Vec<u8>>());
        let address = body.as_ptr() as usize;
        let ranges = vec![vec![10..20, 30..40], vec![], vec![50..100]];
        let batches = take_batches(body, &ranges);
        assert_eq!(batches[0][0].as_ref(), &(10u8..20).collect::<Vec<u8>>()[..]);
        assert_eq!(batches[0][1].as_ref(), &(30u8..40).collect::<Vec<u8>>()[..]);
        assert!(batches[1].is_empty());
        assert_eq!(batches[2][0].len(), 50);
        assert_eq!(
            batches[0][0].as_ptr() as usize,
            address + 10,
            "the batch was copied"
        );
    }

    #[test]
    fn produce_answer_carries_the_wire_code_of_each_producer_refusal() {
        let cases = [
            (
                PartitionError::OutOfOrderSequence("gap".into()),
                ErrorCode::OutOfOrderSequence,
            ),
            (
                PartitionError::DuplicateSequence("old".into()),
                ErrorCode::DuplicateSequence,
            ),
            (
                PartitionError::ProducerFenced("zombie".into()),
                ErrorCode::ProducerFenced,
            ),
            (
                PartitionError::InvalidProducerIdMapping("negative epoch".into()),
                ErrorCode::InvalidProducerIdMapping,
            ),
        ];
        for (error, code) in cases {
            let answer = produce_answer(3, Err(error));
            assert_eq!(answer.error_code, code);
            assert_eq!(answer.partition, 3);
        }
    }

    #[test]
    fn batches_are_copied_when_the_body_is_shared() {
        let body = Bytes::from((0u8..100).collect::<Vec<u8>>());
        let other_reference = body.clone();
        let ranges = vec![vec![5..10, 10..15]];
        let batches = take_batches(body, &ranges);
        assert_eq!(batches[0][0].as_ref(), &other_reference[5..10]);
        assert_eq!(batches[0][1].as_ref(), &other_reference[10..15]);
        assert_ne!(batches[0][0].as_ptr(), other_reference[5..].as_ptr());
    }
}
