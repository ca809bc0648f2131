//! The transactional producer's requests to the transaction coordinator and the group
//! coordinator, run on the client's I/O thread: InitProducerId with the transactional id,
//! AddPartitionsToTxn before a partition's first batch, AddOffsetsToTxn and TxnOffsetCommit
//! for `send_offsets_to_transaction`, and EndTxn after the flush that commit and abort start
//! with.
//!
//! Every request goes on the producer's own transaction connection (the broker routes it to
//! the coordinator's shard). Retriable answers (the coordinator loading, the previous
//! transaction still completing, a lost connection) are retried with the producer's backoff
//! until `retry_timeout`. A fencing answer fails the producer for good (another instance with
//! the same transactional id took over); any other refusal spoils the transaction, which the
//! application then aborts. The state these requests move is `transaction`'s.

use std::sync::Arc;
use std::time::Instant;

use spate_protocol::api::{AddOffsetsToTxnRequest, AddPartitionsToTxnRequest, EndTxnRequest};
use spate_protocol::api::{InitProducerIdRequest, OffsetCommitPartition, Request};
use spate_protocol::api::{TopicPartitionList, TopicPartitions, TxnOffsetCommitRequest};
use spate_protocol::ErrorCode;

use crate::consumer::TopicPartition;
use crate::error::Error;
use crate::group::ConsumerGroupMetadata;
use crate::network::routing::{coordinator_moved, recovery_for};
use crate::network::{CoordinatorKind, Recovery};
use crate::producer::accumulator::retry_backoff;
use crate::producer::idempotence::ProducerIdentity;
use crate::producer::ProducerInner;
use spate_security::ResourceType;

/// How a refused transactional request leaves the producer.
enum Refusal {
    /// Ask again after a pause.
    Retry(Error),
    /// The producer can do nothing more (fenced).
    Fatal(Error),
    /// Only the current transaction is lost.
    Abortable(Error),
}

impl Refusal {
    /// Names the coordinator's key in an authorization error about it.
    fn naming(self, kind: CoordinatorKind, key: &str) -> Refusal {
        let resource_type = match kind {
            CoordinatorKind::Group => ResourceType::Group,
            CoordinatorKind::Transaction => ResourceType::TransactionalId,
        };
        match self {
            Refusal::Retry(error) => Refusal::Retry(error.naming(resource_type, key)),
            Refusal::Fatal(error) => Refusal::Fatal(error.naming(resource_type, key)),
            Refusal::Abortable(error) => Refusal::Abortable(error.naming(resource_type, key)),
        }
    }
}

/// A coordinator's answer read as a refusal: its code and message, and the topic when the code
/// was one partition's (an authorization error then names it).
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    code: ErrorCode,
    message: Option<String>,
    topic: Option<String>,
}

impl Failure {
    /// The answer's request-wide code, if it is one.
    fn of(code: ErrorCode, message: Option<String>) -> Option<Failure> {
        (!code.is_none()).then_some(Failure {
            code,
            message,
            topic: None,
        })
    }
}

/// What a broker error code means for a transactional request, as Kafka's producer reads it.
fn refusal(
    operation: &'static str,
    topic: Option<&str>,
    code: ErrorCode,
    message: Option<String>,
) -> Refusal {
    let error = Error::broker(operation, topic, None, code, message);
    match code {
        code if code.is_retriable() => Refusal::Retry(error),
        ErrorCode::ProducerFenced
        | ErrorCode::InvalidProducerIdMapping
        | ErrorCode::TransactionCoordinatorFenced
        | ErrorCode::InvalidTxnState
        // Kafka's producer: a transactional id it may not use ends it.
        | ErrorCode::TransactionalIdAuthorizationFailed => Refusal::Fatal(error),
        _ => Refusal::Abortable(error),
    }
}

/// The error a fatal refusal fails the producer with: fencing reads as
/// [`Error::ProducerFenced`].
fn fatal_error(error: Error, identity: ProducerIdentity) -> Error {
    match error.code() {
        Some(ErrorCode::ProducerFenced) => Error::ProducerFenced {
            producer_id: identity.producer_id,
            producer_epoch: identity.producer_epoch,
        },
        _ => error,
    }
}

/// Sends `request` on the transaction connection until `answer` accepts the response or says
/// it is refused for good, retrying retriable failures until `retry_timeout`.
async fn call<R: Request>(
    inner: &ProducerInner,
    coordinator: (CoordinatorKind, &str),
    request: &R,
    operation: &'static str,
    answer: impl Fn(&R::Response) -> Option<Failure>,
) -> Result<R::Response, Refusal> {
    let network = inner.client.network();
    let (kind, key) = coordinator;
    let deadline = Instant::now() + inner.client.config().retry_timeout;
    let mut attempts = 0;
    loop {
        let attempt = match network.coordinator(kind, key).await {
            Ok(route) => {
                network
                    .call_routed(&inner.transaction_slots, &route, request, operation, None)
                    .await
            }
            Err(error) => Err(error),
        };
        let refused = match attempt {
            Ok(response) => match answer(&response) {
                None => return Ok(response),
                Some(Failure {
                    code,
                    message,
                    topic,
                }) => {
                    if coordinator_moved(code) {
                        network.coordinator_moved(kind, key);
                    }
                    refusal(operation, topic.as_deref(), code, message).naming(kind, key)
                }
            },
            Err(error) if error.is_retriable() => {
                if recovery_for(&error, true) == Recovery::FindCoordinator {
                    network.coordinator_moved(kind, key);
                }
                Refusal::Retry(error)
            }
            Err(error) => Refusal::Abortable(error),
        };
        let Refusal::Retry(error) = refused else {
            return Err(refused);
        };
        let backoff = retry_backoff(&inner.config, attempts);
        if Instant::now() + backoff > deadline {
            return Err(Refusal::Abortable(Error::RetriesExhausted {
                attempts: attempts + 1,
                last: Box::new(error),
            }));
        }
        tokio::time::sleep(backoff).await;
        attempts += 1;
    }
}

fn transactional_id(inner: &ProducerInner) -> String {
    inner
        .config
        .transactional_id
        .clone()
        .expect("only a transactional producer sends transactional requests")
}

fn identity(inner: &ProducerInner) -> Result<ProducerIdentity, Error> {
    let accumulator = inner.accumulator();
    if let Some(fatal) = accumulator.fatal() {
        return Err(fatal.clone());
    }
    Ok(accumulator
        .identity()
        .expect("a transaction runs only after init_transactions installed an identity"))
}

/// Gets the producer's identity for its transactional id (a new epoch, fencing older
/// instances), or the next epoch of `current` after an abort that left a broken sequence.
pub(crate) async fn init_producer_id(
    inner: &ProducerInner,
    current: Option<ProducerIdentity>,
) -> Result<ProducerIdentity, Error> {
    let (producer_id, producer_epoch) = current.map_or(
        (
            InitProducerIdRequest::default().producer_id,
            InitProducerIdRequest::default().producer_epoch,
        ),
        |identity| (identity.producer_id, identity.producer_epoch),
    );
    let request = InitProducerIdRequest {
        producer_id,
        producer_epoch,
        transactional_id: Some(transactional_id(inner)),
        // Checked to fit by `ProducerConfig::check`.
        transaction_timeout_ms: inner.config.transaction_timeout.as_millis() as u32,
    };
    let transactional_id = transactional_id(inner);
    let coordinator = (CoordinatorKind::Transaction, transactional_id.as_str());
    let response = call(
        inner,
        coordinator,
        &request,
        "init producer id",
        |response| Failure::of(response.error_code, None),
    )
    .await
    .map_err(|refusal| match refusal {
        Refusal::Retry(error) | Refusal::Fatal(error) | Refusal::Abortable(error) => error,
    })?;
    if response.producer_id < 0 || response.producer_epoch < 0 {
        return Err(Error::Protocol {
            operation: "init producer id",
            source: spate_protocol::WireError::InvalidValue {
                field: "producer_id or producer_epoch (negative)",
                value: response.producer_id.min(i64::from(response.producer_epoch)),
            },
        });
    }
    Ok(ProducerIdentity {
        producer_id: response.producer_id,
        producer_epoch: response.producer_epoch,
    })
}

/// Asks the coordinator to add `partitions` to the transaction; their batches leave once it
/// did. Spawned by the sender.
pub(crate) async fn add_partitions(inner: Arc<ProducerInner>, partitions: Vec<(Arc<str>, u32)>) {
    let outcome = match identity(&inner) {
        Ok(identity) => {
            let request = AddPartitionsToTxnRequest {
                transactional_id: transactional_id(&inner),
                producer_id: identity.producer_id,
                producer_epoch: identity.producer_epoch,
                topics: partition_lists(&partitions),
            };
            call(
                &inner,
                (CoordinatorKind::Transaction, &request.transactional_id),
                &request,
                "add partitions to transaction",
                |response| {
                    first_failure(
                        response.error_code,
                        response.error_message.clone(),
                        &response.topics,
                    )
                },
            )
            .await
            .map(|_| ())
            .map_err(|refusal| (refusal, identity))
        }
        Err(_) => {
            // Fenced meanwhile: the accumulator fails every batch already.
            inner
                .accumulator()
                .transaction_mut()
                .not_added(&partitions, Error::TransactionAborted);
            inner.wake.notify_one();
            return;
        }
    };
    {
        let mut accumulator = inner.accumulator();
        match outcome {
            Ok(()) => accumulator.transaction_mut().added(&partitions),
            Err((Refusal::Fatal(error), identity)) => {
                let error = fatal_error(error, identity);
                accumulator
                    .transaction_mut()
                    .not_added(&partitions, error.clone());
                inner.fail_fatally(&mut accumulator, error);
            }
            Err((Refusal::Abortable(error) | Refusal::Retry(error), _)) => {
                accumulator.transaction_mut().not_added(&partitions, error);
            }
        }
    }
    inner.wake.notify_one();
}

/// The first failure in an answer with a request-wide code and per-partition codes: the
/// request-wide one, else the first partition's that is not `OperationNotAttempted` (those
/// only echo another's failure).
fn first_failure(
    error_code: ErrorCode,
    message: Option<String>,
    topics: &[TopicPartitions<spate_protocol::api::PartitionResult>],
) -> Option<Failure> {
    if !error_code.is_none() {
        return Failure::of(error_code, message);
    }
    let failures = || {
        topics.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .filter(|partition| !partition.error_code.is_none())
                .map(|partition| (topic.name.as_str(), partition.error_code))
        })
    };
    failures()
        .find(|(_, code)| *code != ErrorCode::OperationNotAttempted)
        .or_else(|| failures().next())
        .map(|(topic, code)| Failure {
            code,
            message: None,
            topic: Some(topic.to_string()),
        })
}

/// `send_offsets_to_transaction`: the group joins the transaction (AddOffsetsToTxn), then its
/// offsets are committed inside it (TxnOffsetCommit).
pub(crate) async fn send_offsets(
    inner: Arc<ProducerInner>,
    offsets: Vec<(TopicPartition, u64)>,
    group: ConsumerGroupMetadata,
) -> Result<(), Error> {
    inner.accumulator().transaction_mut().check_offsets()?;
    let identity = identity(&inner)?;
    let add = AddOffsetsToTxnRequest {
        transactional_id: transactional_id(&inner),
        producer_id: identity.producer_id,
        producer_epoch: identity.producer_epoch,
        group_id: group.group_id.clone(),
    };
    let coordinator = (CoordinatorKind::Transaction, add.transactional_id.as_str());
    let added = call(
        &inner,
        coordinator,
        &add,
        "add offsets to transaction",
        |response| Failure::of(response.error_code, response.error_message.clone()),
    )
    .await
    // Sent to the transaction's coordinator, but a group refusal (no Read on it) is the
    // group's: name it too.
    .map_err(|refusal| refusal.naming(CoordinatorKind::Group, &group.group_id));
    settle(&inner, added.map(|_| ()), identity)?;
    inner.accumulator().transaction_mut().offsets_added();

    let mut topics: Vec<TopicPartitions<OffsetCommitPartition>> = Vec::new();
    for (partition, offset) in offsets {
        let entry = OffsetCommitPartition {
            partition: partition.partition,
            committed_offset: offset,
            committed_metadata: None,
        };
        match topics
            .iter_mut()
            .find(|topic| topic.name == partition.topic)
        {
            Some(topic) => topic.partitions.push(entry),
            None => topics.push(TopicPartitions {
                name: partition.topic,
                partitions: vec![entry],
            }),
        }
    }
    let commit = TxnOffsetCommitRequest {
        transactional_id: transactional_id(&inner),
        group_id: group.group_id,
        producer_id: identity.producer_id,
        producer_epoch: identity.producer_epoch,
        generation_id: group.generation_id,
        member_id: group.member_id,
        group_instance_id: group.group_instance_id,
        topics,
    };
    // Offsets are the group's: its coordinator takes them (Kafka's TxnOffsetCommit rule).
    let committed = call(
        &inner,
        (CoordinatorKind::Group, &commit.group_id),
        &commit,
        "commit offsets in transaction",
        |response| first_failure(response.error_code, None, &response.topics),
    )
    .await;
    settle(&inner, committed.map(|_| ()), identity)
}

/// Applies a transactional request's outcome to the producer: a fatal refusal fails it, any
/// other spoils the transaction. Returns the error to report.
fn settle(
    inner: &ProducerInner,
    outcome: Result<(), Refusal>,
    identity: ProducerIdentity,
) -> Result<(), Error> {
    let refusal = match outcome {
        Ok(()) => return Ok(()),
        Err(refusal) => refusal,
    };
    let mut accumulator = inner.accumulator();
    match refusal {
        Refusal::Fatal(error) => {
            let error = fatal_error(error, identity);
            inner.fail_fatally(&mut accumulator, error.clone());
            Err(error)
        }
        Refusal::Abortable(error) | Refusal::Retry(error) => {
            accumulator.transaction_mut().spoil(error.clone());
            Err(Error::TransactionAbortable {
                cause: Box::new(error),
            })
        }
    }
}

/// `commit_transaction`: flush, then EndTxn(commit) if anything joined the transaction.
pub(crate) async fn commit(inner: Arc<ProducerInner>) -> Result<(), Error> {
    // The phase first: outside a transaction there may be no identity yet.
    inner.accumulator().transaction_mut().begin_commit()?;
    identity(&inner)?;
    inner.flush().await?;
    let identity = {
        let mut accumulator = inner.accumulator();
        if let Some(fatal) = accumulator.fatal() {
            return Err(fatal.clone());
        }
        if let Some(blocked) = accumulator.transaction_mut().commit_blocked() {
            return Err(blocked);
        }
        if !accumulator.transaction_mut().is_started() {
            accumulator.transaction_mut().ended();
            return Ok(());
        }
        accumulator.identity().expect("checked above")
    };
    match end(&inner, identity, true).await {
        Ok(()) => {
            inner.accumulator().transaction_mut().ended();
            Ok(())
        }
        Err(Refusal::Fatal(error)) => {
            let error = fatal_error(error, identity);
            inner.fail_fatally(&mut inner.accumulator(), error.clone());
            Err(error)
        }
        Err(Refusal::Abortable(error) | Refusal::Retry(error)) => {
            Err(inner.accumulator().transaction_mut().commit_failed(error))
        }
    }
}

/// `abort_transaction`: batches not yet sent fail, those in flight settle, then EndTxn(abort)
/// if anything joined the transaction; then, if a batch's sequence broke meanwhile, the next
/// epoch (which restarts every partition's sequence).
pub(crate) async fn abort(inner: Arc<ProducerInner>) -> Result<(), Error> {
    inner.accumulator().transaction_mut().begin_abort()?;
    identity(&inner)?;
    inner.wake.notify_one();
    inner.flush().await?;
    let (identity, started) = {
        let mut accumulator = inner.accumulator();
        if let Some(fatal) = accumulator.fatal() {
            return Err(fatal.clone());
        }
        let started = accumulator.transaction_mut().is_started();
        (accumulator.identity().expect("checked above"), started)
    };
    if started {
        match end(&inner, identity, false).await {
            Ok(()) => {}
            Err(Refusal::Fatal(error)) => {
                let error = fatal_error(error, identity);
                inner.fail_fatally(&mut inner.accumulator(), error.clone());
                return Err(error);
            }
            // The transaction stays in Aborting: the application may call abort again.
            Err(Refusal::Abortable(error) | Refusal::Retry(error)) => {
                inner
                    .accumulator()
                    .transaction_mut()
                    .abort_failed(error.clone());
                return Err(error);
            }
        }
    }
    if inner.accumulator().needs_epoch_bump() {
        inner.accumulator().begin_identity_request();
        match init_producer_id(&inner, Some(identity)).await {
            Ok(bumped) => inner.accumulator().install_identity(bumped),
            Err(error) => {
                let error = fatal_error(error, identity);
                inner.fail_fatally(&mut inner.accumulator(), error.clone());
                return Err(error);
            }
        }
    }
    inner.accumulator().transaction_mut().ended();
    inner.wake.notify_one();
    Ok(())
}

async fn end(
    inner: &ProducerInner,
    identity: ProducerIdentity,
    commit: bool,
) -> Result<(), Refusal> {
    let request = EndTxnRequest {
        transactional_id: transactional_id(inner),
        producer_id: identity.producer_id,
        producer_epoch: identity.producer_epoch,
        commit,
    };
    let operation = if commit {
        "commit transaction"
    } else {
        "abort transaction"
    };
    let coordinator = (
        CoordinatorKind::Transaction,
        request.transactional_id.as_str(),
    );
    call(inner, coordinator, &request, operation, |response| {
        Failure::of(response.error_code, response.error_message.clone())
    })
    .await
    .map(|_| ())
}

/// Partitions grouped by topic, as the wire lists them.
fn partition_lists(partitions: &[(Arc<str>, u32)]) -> Vec<TopicPartitionList> {
    let mut lists: Vec<TopicPartitionList> = Vec::new();
    for (topic, partition) in partitions {
        match lists.iter_mut().find(|list| *list.name == **topic) {
            Some(list) => list.partitions.push(*partition),
            None => lists.push(TopicPartitionList {
                name: topic.to_string(),
                partitions: vec![*partition],
            }),
        }
    }
    lists
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_protocol::api::PartitionResult;

    #[test]
    fn fencing_is_fatal_retriable_codes_retry_and_the_rest_spoil_the_transaction() {
        assert!(matches!(
            refusal("t", None, ErrorCode::ProducerFenced, None),
            Refusal::Fatal(_)
        ));
        assert!(matches!(
            refusal("t", None, ErrorCode::ConcurrentTransactions, None),
            Refusal::Retry(_)
        ));
        assert!(matches!(
            refusal("t", None, ErrorCode::CoordinatorLoadInProgress, None),
            Refusal::Retry(_)
        ));
        assert!(matches!(
            refusal("t", None, ErrorCode::IllegalGeneration, None),
            Refusal::Abortable(_)
        ));
        let fenced = fatal_error(
            Error::broker("t", None, None, ErrorCode::ProducerFenced, None),
            ProducerIdentity {
                producer_id: 4,
                producer_epoch: 2,
            },
        );
        assert!(matches!(
            fenced,
            Error::ProducerFenced {
                producer_id: 4,
                producer_epoch: 2
            }
        ));
    }

    #[test]
    fn a_partitions_own_failure_is_reported_before_the_ones_not_attempted() {
        let topics = vec![TopicPartitions {
            name: "t".into(),
            partitions: vec![
                PartitionResult {
                    partition: 0,
                    error_code: ErrorCode::OperationNotAttempted,
                },
                PartitionResult {
                    partition: 1,
                    error_code: ErrorCode::UnknownTopicOrPartition,
                },
            ],
        }];
        assert_eq!(
            first_failure(ErrorCode::None, None, &topics),
            Some(Failure {
                code: ErrorCode::UnknownTopicOrPartition,
                message: None,
                topic: Some(topics[0].name.clone()),
            })
        );
        assert_eq!(first_failure(ErrorCode::None, None, &[]), None);
        assert_eq!(
            first_failure(ErrorCode::ProducerFenced, Some("x".into()), &topics),
            Failure::of(ErrorCode::ProducerFenced, Some("x".into()))
        );
    }

    #[test]
    fn partitions_are_listed_by_topic() {
        let lists = partition_lists(&[
            (Arc::from("a"), 1),
            (Arc::from("b"), 0),
            (Arc::from("a"), 2),
        ]);
        assert_eq!(lists.len(), 2);
        assert_eq!(lists[0].partitions, vec![1, 2]);
        assert_eq!(lists[1].name, "b");
    }
}
