//! Kafka's transaction APIs over the transaction coordinator (`spate_txn::coordinator`):
//! InitProducerId (v0–5; without a transactional id, an idempotent producer's id from the
//! catalog's allocator), AddPartitionsToTxn (v0–3 one transaction per request, as librdkafka and
//! the Java client send; v4–5 batched, with `verify_only`), AddOffsetsToTxn (v0–4), EndTxn
//! (v0–5), DescribeTransactions (v0) and ListTransactions (v0–1).
//!
//! The coordinator answers `TxnError`s; this file turns them into Kafka codes with Kafka's
//! version rules: PRODUCER_FENCED only from the version that added it (InitProducerId v4,
//! AddPartitionsToTxn, AddOffsetsToTxn and EndTxn v2), INVALID_PRODUCER_EPOCH before;
//! TRANSACTION_ABORTABLE (KIP-890) only from AddPartitionsToTxn v5, INVALID_TXN_STATE before.
//! The transaction version 2 of KIP-890 part 2 (an epoch bump per transaction, EndTxn v5's
//! answer) is not offered: ApiVersions finalizes no `transaction.version` feature, so clients
//! use the classic protocol at every version served.

use spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use spate_kafka_protocol::kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use spate_kafka_protocol::kafka_protocol::messages::describe_transactions_response::{
    TopicData, TransactionState,
};
use spate_kafka_protocol::kafka_protocol::messages::list_transactions_response::TransactionState as ListedTransaction;
use spate_kafka_protocol::kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, DescribeTransactionsRequest, DescribeTransactionsResponse,
    EndTxnRequest, EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse,
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_security::{Operation, ResourceType};

use super::errors::kafka_code;
use super::KafkaContext;
use crate::handlers::producer_id_error_code;
use crate::txn::coordinator::{self, ListFilter};
use crate::txn::{TopicPartition, TxnError, TxnState};

/// The first version of each API whose clients know PRODUCER_FENCED (KIP-588).
const INIT_FENCED_VERSION_MIN: i16 = 4;
const ADD_PARTITIONS_FENCED_VERSION_MIN: i16 = 2;
const ADD_OFFSETS_FENCED_VERSION_MIN: i16 = 2;
const END_TXN_FENCED_VERSION_MIN: i16 = 2;
/// The first AddPartitionsToTxn version that knows TRANSACTION_ABORTABLE (KIP-890).
const ADD_PARTITIONS_ABORTABLE_VERSION_MIN: i16 = 5;
/// The first AddPartitionsToTxn version with batched transactions and `verify_only`.
const ADD_PARTITIONS_BATCHED_VERSION_MIN: i16 = 4;
/// No producer id or epoch, as on the wire.
const NO_PRODUCER_ID: i64 = -1;
const NO_PRODUCER_EPOCH: i16 = -1;

/// The Kafka error code of a coordinator error, at the request's version.
/// `fenced_version_min`: the first version that knows PRODUCER_FENCED; `abortable_version_min`:
/// the first that knows TRANSACTION_ABORTABLE.
pub(crate) fn txn_code(
    error: &TxnError,
    version: i16,
    fenced_version_min: i16,
    abortable_version_min: i16,
) -> i16 {
    let kafka = match error {
        TxnError::InvalidRequest(_) => ResponseError::InvalidRequest,
        TxnError::InvalidProducerEpoch => ResponseError::InvalidProducerEpoch,
        TxnError::ProducerFenced if version < fenced_version_min => {
            ResponseError::InvalidProducerEpoch
        }
        TxnError::ProducerFenced => ResponseError::ProducerFenced,
        TxnError::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        TxnError::TransactionAbortable if version < abortable_version_min => {
            ResponseError::InvalidTxnState
        }
        TxnError::TransactionAbortable => ResponseError::TransactionAbortable,
        TxnError::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        TxnError::InvalidTransactionTimeout { .. } => ResponseError::InvalidTransactionTimeout,
        TxnError::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        TxnError::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        TxnError::OperationNotAttempted => ResponseError::OperationNotAttempted,
        TxnError::CoordinatorLoadInProgress
        | TxnError::ProducerIdsRecovering
        | TxnError::ProducerIdsAwaitingBlock => ResponseError::CoordinatorLoadInProgress,
        TxnError::NotCoordinator => ResponseError::NotCoordinator,
        // Retriable: the producer looks the coordinator up again and retries, by which time
        // the state topic is writable again (or the broker is back).
        TxnError::CoordinatorNotAvailable(_)
        | TxnError::ProducerIdAllocation(_)
        | TxnError::ShuttingDown => ResponseError::CoordinatorNotAvailable,
        TxnError::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
    };
    kafka.code()
}

fn text(value: impl Into<String>) -> StrBytes {
    StrBytes::from_string(value.into())
}

/// A wire identity: `None` for the "no producer" pair, an error for half of one.
fn identity(producer_id: i64, producer_epoch: i16) -> Result<Option<(i64, i16)>, TxnError> {
    match (producer_id, producer_epoch) {
        (NO_PRODUCER_ID, NO_PRODUCER_EPOCH) => Ok(None),
        (producer_id, producer_epoch) if producer_id >= 0 && producer_epoch >= 0 => {
            Ok(Some((producer_id, producer_epoch)))
        }
        _ => Err(TxnError::InvalidRequest(format!(
            "producer id {producer_id} with epoch {producer_epoch} is not an identity"
        ))),
    }
}

// ---------------------------------------------------------------------------------------------
// InitProducerId

pub(crate) async fn init_producer_id(
    context: &KafkaContext<'_>,
    version: i16,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let refused = |code: i16| {
        InitProducerIdResponse::default()
            .with_error_code(code)
            .with_producer_id(ProducerId(NO_PRODUCER_ID))
            .with_producer_epoch(NO_PRODUCER_EPOCH)
    };
    let (producer_id, producer_epoch) = (request.producer_id.0, request.producer_epoch);
    let Some(transactional_id) = &request.transactional_id else {
        // An idempotent producer needs IdempotentWrite on the cluster, or Write on some topic
        // (Kafka's rule since KIP-679 made idempotence the default).
        let allowed = context.cluster_authorized(Operation::IdempotentWrite)
            || context.services.authorizer.authorize_any(
                context.session,
                Operation::Write,
                ResourceType::Topic,
            );
        if !allowed {
            return refused(ResponseError::ClusterAuthorizationFailed.code());
        }
        return idempotent_producer_id(context, producer_id, producer_epoch).await;
    };
    if !context.transactional_id_authorized(Operation::Write, transactional_id.as_str()) {
        return refused(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let answer = match identity(producer_id, producer_epoch) {
        Ok(existing) => {
            coordinator::init_producer_id(
                context.services,
                Some(transactional_id.as_str()),
                request.transaction_timeout_ms,
                existing,
            )
            .await
        }
        Err(error) => Err(error),
    };
    match answer {
        Ok((producer_id, producer_epoch)) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch),
        Err(error) => {
            tracing::debug!(
                transactional_id = transactional_id.as_str(),
                %error,
                "Kafka InitProducerId refused"
            );
            refused(txn_code(&error, version, INIT_FENCED_VERSION_MIN, i16::MAX))
        }
    }
}

/// An idempotent producer's id (or the bump of its epoch) from the catalog's allocator, as
/// the native request does.
async fn idempotent_producer_id(
    context: &KafkaContext<'_>,
    producer_id: i64,
    producer_epoch: i16,
) -> InitProducerIdResponse {
    let catalog = context.services.catalog.clone();
    let outcome = glommio::executor()
        .spawn_blocking(move || catalog.producer_ids().init(producer_id, producer_epoch))
        .await;
    match outcome {
        Ok(identity) => InitProducerIdResponse::default()
            .with_producer_id(ProducerId(identity.producer_id))
            .with_producer_epoch(identity.producer_epoch),
        Err(error) => {
            let code = producer_id_error_code(&error);
            tracing::debug!(%error, "Kafka InitProducerId refused");
            InitProducerIdResponse::default()
                .with_error_code(kafka_code(code))
                .with_producer_id(ProducerId(NO_PRODUCER_ID))
                .with_producer_epoch(NO_PRODUCER_EPOCH)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// AddPartitionsToTxn

/// The request's partitions as the coordinator names them; a negative index is unknown.
fn requested_partitions(topics: &[AddPartitionsToTxnTopic]) -> Vec<(String, i32)> {
    topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(move |partition| (topic.name.as_str().to_string(), *partition))
        })
        .collect()
}

/// Adds (or, with `verify_only`, checks) one transaction's partitions; each partition's code.
async fn add_or_verify(
    context: &KafkaContext<'_>,
    version: i16,
    transactional_id: &str,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    requested: Vec<(String, i32)>,
) -> Vec<((String, i32), i16)> {
    let code = |error: &TxnError| {
        txn_code(
            error,
            version,
            ADD_PARTITIONS_FENCED_VERSION_MIN,
            ADD_PARTITIONS_ABORTABLE_VERSION_MIN,
        )
    };
    if !context.transactional_id_authorized(Operation::Write, transactional_id) {
        let refused = ResponseError::TransactionalIdAuthorizationFailed.code();
        return requested
            .into_iter()
            .map(|partition| (partition, refused))
            .collect();
    }
    // Topics the principal may not write fail alone, and the others are not attempted (Kafka's
    // answer, so that nothing of a half-refused request joins the transaction).
    let writable: Vec<bool> = requested
        .iter()
        .map(|(topic, _)| context.topic_authorized(Operation::Write, topic))
        .collect();
    if writable.contains(&false) {
        return requested
            .into_iter()
            .zip(writable)
            .map(|(partition, writable)| {
                let code = if writable {
                    ResponseError::OperationNotAttempted.code()
                } else {
                    ResponseError::TopicAuthorizationFailed.code()
                };
                (partition, code)
            })
            .collect();
    }
    // A negative partition index names no partition: it fails alone, the others are not
    // attempted (what the coordinator does for an unknown partition).
    if requested.iter().any(|(_, partition)| *partition < 0) {
        return requested
            .into_iter()
            .map(|(topic, partition)| {
                let error = if partition < 0 {
                    TxnError::UnknownTopicOrPartition
                } else {
                    TxnError::OperationNotAttempted
                };
                ((topic, partition), code(&error))
            })
            .collect();
    }
    let partitions: Vec<TopicPartition> = requested
        .iter()
        .map(|(topic, partition)| (topic.clone(), *partition as u32))
        .collect();
    let answers = if verify_only {
        coordinator::verify_partitions(
            context.services,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
        .await
    } else {
        coordinator::add_partitions(
            context.services,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
        .await
    };
    answers
        .into_iter()
        .map(|((topic, partition), answer)| {
            let error_code = match answer {
                Ok(()) => 0,
                Err(error) => code(&error),
            };
            ((topic, partition as i32), error_code)
        })
        .collect()
}

/// Groups `(topic, partition) → code` answers back into Kafka's per-topic results, in the
/// order of the request's topics.
fn topic_results(answers: Vec<((String, i32), i16)>) -> Vec<AddPartitionsToTxnTopicResult> {
    let mut results: Vec<AddPartitionsToTxnTopicResult> = Vec::new();
    for ((topic, partition), error_code) in answers {
        let result = AddPartitionsToTxnPartitionResult::default()
            .with_partition_index(partition)
            .with_partition_error_code(error_code);
        match results
            .iter_mut()
            .find(|entry| entry.name.as_str() == topic)
        {
            Some(entry) => entry.results_by_partition.push(result),
            None => results.push(
                AddPartitionsToTxnTopicResult::default()
                    .with_name(TopicName(text(topic)))
                    .with_results_by_partition(vec![result]),
            ),
        }
    }
    results
}

pub(crate) async fn add_partitions_to_txn(
    context: &KafkaContext<'_>,
    version: i16,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    if version < ADD_PARTITIONS_BATCHED_VERSION_MIN {
        let answers = add_or_verify(
            context,
            version,
            request.v3_and_below_transactional_id.as_str(),
            request.v3_and_below_producer_id.0,
            request.v3_and_below_producer_epoch,
            false,
            requested_partitions(&request.v3_and_below_topics),
        )
        .await;
        return AddPartitionsToTxnResponse::default()
            .with_results_by_topic_v3_and_below(topic_results(answers));
    }
    // v4+ is the brokers' own call (KIP-890): Kafka asks ClusterAction of its caller.
    if !context.cluster_authorized(Operation::ClusterAction) {
        return AddPartitionsToTxnResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let mut results = Vec::with_capacity(request.transactions.len());
    for transaction in &request.transactions {
        let answers = add_or_verify(
            context,
            version,
            transaction.transactional_id.as_str(),
            transaction.producer_id.0,
            transaction.producer_epoch,
            transaction.verify_only,
            requested_partitions(&transaction.topics),
        )
        .await;
        results.push(
            AddPartitionsToTxnResult::default()
                .with_transactional_id(transaction.transactional_id.clone())
                .with_topic_results(topic_results(answers)),
        );
    }
    AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
}

// ---------------------------------------------------------------------------------------------
// AddOffsetsToTxn, EndTxn

pub(crate) async fn add_offsets_to_txn(
    context: &KafkaContext<'_>,
    version: i16,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let refusal = if !context
        .transactional_id_authorized(Operation::Write, request.transactional_id.as_str())
    {
        Some(ResponseError::TransactionalIdAuthorizationFailed)
    } else if !context.group_authorized(Operation::Read, request.group_id.as_str()) {
        Some(ResponseError::GroupAuthorizationFailed)
    } else {
        None
    };
    if let Some(error) = refusal {
        return AddOffsetsToTxnResponse::default().with_error_code(error.code());
    }
    let answer = coordinator::add_offsets(
        context.services,
        request.transactional_id.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.group_id.as_str(),
    )
    .await;
    let error_code = match answer {
        Ok(()) => 0,
        Err(error) => txn_code(&error, version, ADD_OFFSETS_FENCED_VERSION_MIN, i16::MAX),
    };
    AddOffsetsToTxnResponse::default().with_error_code(error_code)
}

pub(crate) async fn end_txn(
    context: &KafkaContext<'_>,
    version: i16,
    request: EndTxnRequest,
) -> EndTxnResponse {
    if !context.transactional_id_authorized(Operation::Write, request.transactional_id.as_str()) {
        return EndTxnResponse::default()
            .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code());
    }
    let answer = coordinator::end_txn(
        context.services,
        request.transactional_id.as_str(),
        request.producer_id.0,
        request.producer_epoch,
        request.committed,
    )
    .await;
    let error_code = match answer {
        Ok(()) => 0,
        Err(error) => {
            tracing::debug!(
                transactional_id = request.transactional_id.as_str(),
                %error,
                "Kafka EndTxn refused"
            );
            txn_code(&error, version, END_TXN_FENCED_VERSION_MIN, i16::MAX)
        }
    };
    // v5's producer id and epoch are transaction version 2's new identity; not offered, so -1.
    EndTxnResponse::default().with_error_code(error_code)
}

// ---------------------------------------------------------------------------------------------
// DescribeTransactions, ListTransactions

pub(crate) async fn describe_transactions(
    context: &KafkaContext<'_>,
    version: i16,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let offsets_partitions = context
        .services
        .snapshot()
        .topic(crate::group::OFFSETS_TOPIC_NAME)
        .map(|topic| topic.partition_count());
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for transactional_id in &request.transactional_ids {
        if !context.transactional_id_authorized(Operation::Describe, transactional_id.as_str()) {
            states.push(
                TransactionState::default()
                    .with_transactional_id(transactional_id.clone())
                    .with_error_code(ResponseError::TransactionalIdAuthorizationFailed.code())
                    .with_transaction_state(text(""))
                    .with_producer_id(ProducerId(NO_PRODUCER_ID))
                    .with_producer_epoch(NO_PRODUCER_EPOCH),
            );
            continue;
        }
        let described = coordinator::describe(context.services, transactional_id.as_str()).await;
        let state = match described {
            Ok(description) => {
                let mut topics: Vec<TopicData> = Vec::new();
                let mut push = |topic: &str, partition: i32| match topics
                    .iter_mut()
                    .find(|entry| entry.topic.as_str() == topic)
                {
                    Some(entry) => entry.partitions.push(partition),
                    None => topics.push(
                        TopicData::default()
                            .with_topic(TopicName(text(topic)))
                            .with_partitions(vec![partition]),
                    ),
                };
                // Only the topics the principal may describe are named (Kafka's rule).
                for (topic, partition) in &description.partitions {
                    if context.topic_authorized(Operation::Describe, topic) {
                        push(topic, *partition as i32);
                    }
                }
                // Kafka lists a group's offsets as the partition of the offsets topic that
                // holds them.
                if let Some(count) = offsets_partitions {
                    for group in &description.groups {
                        let partition = crate::group::offsets_partition_of(group, count);
                        push(crate::group::OFFSETS_TOPIC_NAME, partition as i32);
                    }
                }
                TransactionState::default()
                    .with_transactional_id(transactional_id.clone())
                    .with_transaction_state(text(description.state.name()))
                    .with_transaction_timeout_ms(description.timeout_ms)
                    .with_transaction_start_time_ms(description.start_timestamp_ms)
                    .with_producer_id(ProducerId(description.producer_id))
                    .with_producer_epoch(description.producer_epoch)
                    .with_topics(topics)
            }
            Err(error) => TransactionState::default()
                .with_transactional_id(transactional_id.clone())
                .with_error_code(txn_code(&error, version, 0, 0))
                .with_transaction_state(text(""))
                .with_producer_id(ProducerId(NO_PRODUCER_ID))
                .with_producer_epoch(NO_PRODUCER_EPOCH),
        };
        states.push(state);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

pub(crate) async fn list_transactions(
    context: &KafkaContext<'_>,
    version: i16,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let mut states = Vec::new();
    let mut unknown = Vec::new();
    for name in &request.state_filters {
        match TxnState::from_name(name.as_str()) {
            Some(state) => states.push(state),
            None => unknown.push(name.clone()),
        }
    }
    // Only unknown state names asked for: nothing can match (Kafka answers the same).
    if states.is_empty() && !unknown.is_empty() {
        return ListTransactionsResponse::default().with_unknown_state_filters(unknown);
    }
    let filter = ListFilter {
        states,
        producer_ids: request
            .producer_id_filters
            .iter()
            .map(|producer_id| producer_id.0)
            .collect(),
        duration_ms_min: (version >= 1).then_some(request.duration_filter),
    };
    match coordinator::list(context.services, filter).await {
        Ok(listings) => {
            // Only the transactional ids the principal may describe.
            let listed = listings
                .into_iter()
                .filter(|listing| {
                    context
                        .transactional_id_authorized(Operation::Describe, &listing.transactional_id)
                })
                .map(|listing| {
                    ListedTransaction::default()
                        .with_transactional_id(TransactionalId(text(listing.transactional_id)))
                        .with_producer_id(ProducerId(listing.producer_id))
                        .with_transaction_state(text(listing.state.name()))
                })
                .collect();
            ListTransactionsResponse::default()
                .with_unknown_state_filters(unknown)
                .with_transaction_states(listed)
        }
        Err(error) => ListTransactionsResponse::default()
            .with_error_code(txn_code(&error, version, 0, 0))
            .with_unknown_state_filters(unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fencing_reads_as_each_version_knows_it() {
        let fenced = TxnError::ProducerFenced;
        let epoch = ResponseError::InvalidProducerEpoch.code();
        let producer_fenced = ResponseError::ProducerFenced.code();
        assert_eq!(
            txn_code(&fenced, 1, END_TXN_FENCED_VERSION_MIN, i16::MAX),
            epoch
        );
        assert_eq!(
            txn_code(&fenced, 2, END_TXN_FENCED_VERSION_MIN, i16::MAX),
            producer_fenced
        );
        assert_eq!(
            txn_code(&fenced, 3, INIT_FENCED_VERSION_MIN, i16::MAX),
            epoch
        );
        assert_eq!(
            txn_code(&fenced, 4, INIT_FENCED_VERSION_MIN, i16::MAX),
            producer_fenced
        );
        let abortable = TxnError::TransactionAbortable;
        let code = |version| {
            txn_code(
                &abortable,
                version,
                ADD_PARTITIONS_FENCED_VERSION_MIN,
                ADD_PARTITIONS_ABORTABLE_VERSION_MIN,
            )
        };
        assert_eq!(code(4), ResponseError::InvalidTxnState.code());
        assert_eq!(code(5), ResponseError::TransactionAbortable.code());
    }

    #[test]
    fn half_an_identity_is_an_invalid_request() {
        assert_eq!(identity(-1, -1), Ok(None));
        assert_eq!(identity(7, 0), Ok(Some((7, 0))));
        assert!(matches!(identity(7, -1), Err(TxnError::InvalidRequest(_))));
        assert!(matches!(identity(-1, 3), Err(TxnError::InvalidRequest(_))));
    }
}
