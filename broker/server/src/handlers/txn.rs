//! Native transaction requests: InitProducerId with a transactional id, AddPartitionsToTxn,
//! AddOffsetsToTxn and EndTxn go to the transaction coordinator (`spate_txn::coordinator`),
//! TxnOffsetCommit to the group coordinator (`handlers::group`). Both coordinators' functions
//! are protocol-neutral and route each request to the shard that coordinates its id; this file
//! only turns the native messages into their arguments and their errors into native codes
//! (`txn_error_code`), as `kafka::transactions` does for Kafka's.

use std::rc::Rc;

use spate_protocol::api::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use spate_protocol::api::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use spate_protocol::api::{EndTxnRequest, EndTxnResponse, InitProducerIdRequest};
use spate_protocol::api::{InitProducerIdResponse, PartitionResult, TopicPartitions};
use spate_protocol::api::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use spate_protocol::batch::header::NO_PRODUCER_ID;
use spate_protocol::error::ErrorCode;

use super::{admin, group};
use crate::services::Services;
use crate::txn::coordinator;
use crate::txn::TxnError;

/// The native code for a coordinator's refusal.
pub(crate) fn txn_error_code(error: &TxnError) -> ErrorCode {
    match error {
        TxnError::InvalidRequest(_) => ErrorCode::InvalidRequest,
        // The native protocol has one fencing code: an old epoch is a fenced one.
        TxnError::InvalidProducerEpoch | TxnError::ProducerFenced => ErrorCode::ProducerFenced,
        TxnError::InvalidTxnState(_) => ErrorCode::InvalidTxnState,
        TxnError::InvalidProducerIdMapping => ErrorCode::InvalidProducerIdMapping,
        TxnError::InvalidTransactionTimeout { .. } => ErrorCode::InvalidTransactionTimeout,
        TxnError::ConcurrentTransactions => ErrorCode::ConcurrentTransactions,
        TxnError::TransactionAbortable => ErrorCode::TransactionAbortable,
        TxnError::UnknownTopicOrPartition => ErrorCode::UnknownTopicOrPartition,
        TxnError::OperationNotAttempted => ErrorCode::OperationNotAttempted,
        TxnError::CoordinatorLoadInProgress
        | TxnError::ProducerIdsRecovering
        | TxnError::ProducerIdsAwaitingBlock => ErrorCode::CoordinatorLoadInProgress,
        TxnError::NotCoordinator => ErrorCode::NotCoordinator,
        TxnError::CoordinatorNotAvailable(_) => ErrorCode::CoordinatorNotAvailable,
        TxnError::TransactionalIdNotFound => ErrorCode::TransactionalIdNotFound,
        TxnError::ProducerIdAllocation(_) => ErrorCode::StorageError,
        TxnError::ShuttingDown => ErrorCode::ShuttingDown,
    }
}

/// InitProducerId: with a transactional id, the coordinator's producer id and next epoch for
/// it (fencing older instances); without one, the idempotent producer's (`admin`).
pub(crate) async fn init_producer_id(
    services: &Rc<Services>,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let Some(transactional_id) = request.transactional_id.as_deref() else {
        return admin::init_producer_id(services, request.producer_id, request.producer_epoch)
            .await;
    };
    let refused = |error_code| InitProducerIdResponse {
        error_code,
        ..InitProducerIdResponse::default()
    };
    // Kafka's field is an i32; a larger one is out of any range the broker allows.
    let Ok(timeout_ms) = i32::try_from(request.transaction_timeout_ms) else {
        return refused(ErrorCode::InvalidTransactionTimeout);
    };
    let existing = (request.producer_id != NO_PRODUCER_ID)
        .then_some((request.producer_id, request.producer_epoch));
    match coordinator::init_producer_id(services, Some(transactional_id), timeout_ms, existing)
        .await
    {
        Ok((producer_id, producer_epoch)) => InitProducerIdResponse {
            error_code: ErrorCode::None,
            producer_id,
            producer_epoch,
        },
        Err(error) => {
            tracing::debug!(%error, transactional_id, "InitProducerId refused");
            refused(txn_error_code(&error))
        }
    }
}

/// AddPartitionsToTxn: each partition's outcome; the request-wide code stays `None` (as
/// Kafka's per-partition answers), so a client reads the partitions.
pub(crate) async fn add_partitions(
    services: &Rc<Services>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let partitions: Vec<(String, u32)> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.clone(), *partition))
        })
        .collect();
    let outcomes = coordinator::add_partitions(
        services,
        &request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        partitions,
    )
    .await;
    let mut topics: Vec<TopicPartitions<PartitionResult>> = Vec::new();
    let mut message = None;
    for ((topic, partition), outcome) in outcomes {
        let error_code = match &outcome {
            Ok(()) => ErrorCode::None,
            Err(error) => {
                if message.is_none() && *error != TxnError::OperationNotAttempted {
                    message = Some(error.to_string());
                }
                txn_error_code(error)
            }
        };
        let result = PartitionResult {
            partition,
            error_code,
        };
        match topics.iter_mut().find(|entry| entry.name == topic) {
            Some(entry) => entry.partitions.push(result),
            None => topics.push(TopicPartitions {
                name: topic,
                partitions: vec![result],
            }),
        }
    }
    AddPartitionsToTxnResponse {
        error_code: ErrorCode::None,
        error_message: message,
        topics,
    }
}

/// AddOffsetsToTxn: the group's offsets partition joins the transaction.
pub(crate) async fn add_offsets(
    services: &Rc<Services>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let outcome = coordinator::add_offsets(
        services,
        &request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        &request.group_id,
    )
    .await;
    match outcome {
        Ok(()) => AddOffsetsToTxnResponse::default(),
        Err(error) => AddOffsetsToTxnResponse {
            error_code: txn_error_code(&error),
            error_message: Some(error.to_string()),
        },
    }
}

/// EndTxn: commit or abort, answered once the outcome is durable at the coordinator.
pub(crate) async fn end_txn(services: &Rc<Services>, request: EndTxnRequest) -> EndTxnResponse {
    let outcome = coordinator::end_txn(
        services,
        &request.transactional_id,
        request.producer_id,
        request.producer_epoch,
        request.commit,
    )
    .await;
    match outcome {
        Ok(()) => EndTxnResponse::default(),
        Err(error) => EndTxnResponse {
            error_code: txn_error_code(&error),
            error_message: Some(error.to_string()),
        },
    }
}

/// TxnOffsetCommit: the offsets wait at the group's coordinator for the transaction's end.
pub(crate) async fn txn_offset_commit(
    services: &Rc<Services>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    group::commit_transactional_offsets(services, request).await
}
