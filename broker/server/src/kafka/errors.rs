//! Native error codes as Kafka error codes: one mapping, used by every Kafka handler, so that a
//! failure the shards report reads the same to a Kafka client whichever API met it.
//!
//! Where Kafka has no code of the same meaning, the nearest one a Kafka client handles the same
//! way is chosen (retriable stays retriable), and the reason is written beside it.

use spate_kafka_protocol::kafka_protocol::ResponseError;
use spate_protocol::error::ErrorCode;

/// The Kafka error code (`kafka_protocol::ResponseError::code`, 0 for none) for a native code.
pub(crate) fn kafka_code(code: ErrorCode) -> i16 {
    kafka_error(code).map_or(0, |error| error.code())
}

/// The Kafka error for a native code; `None` for `ErrorCode::None`.
pub(crate) fn kafka_error(code: ErrorCode) -> Option<ResponseError> {
    Some(match code {
        ErrorCode::None => return None,
        ErrorCode::Unknown => ResponseError::UnknownServerError,
        ErrorCode::CorruptMessage => ResponseError::CorruptMessage,
        ErrorCode::MessageTooLarge => ResponseError::MessageTooLarge,
        ErrorCode::UnknownTopicOrPartition => ResponseError::UnknownTopicOrPartition,
        ErrorCode::OffsetOutOfRange => ResponseError::OffsetOutOfRange,
        ErrorCode::UnsupportedVersion => ResponseError::UnsupportedVersion,
        ErrorCode::InvalidRequest | ErrorCode::UnknownApi => ResponseError::InvalidRequest,
        ErrorCode::TopicAlreadyExists => ResponseError::TopicAlreadyExists,
        ErrorCode::InvalidConfig => ResponseError::InvalidConfig,
        ErrorCode::InvalidPartitions => ResponseError::InvalidPartitions,
        // Kafka's code for a failed or full log directory (retriable: the client tries again).
        ErrorCode::StorageError | ErrorCode::NotEnoughDiskSpace | ErrorCode::PartitionOffline => {
            ResponseError::KafkaStorageError
        }
        // Retriable, like the native code: the client waits and tries again.
        ErrorCode::RequestTimedOut | ErrorCode::BrokerBusy => ResponseError::RequestTimedOut,
        // A stopping broker is, for a Kafka client, a leader going away: it refreshes metadata
        // and retries, by which time the broker is back (or another one leads).
        ErrorCode::ShuttingDown => ResponseError::NotLeaderOrFollower,
        ErrorCode::InvalidTopicName => ResponseError::InvalidTopicException,
        ErrorCode::CoordinatorNotAvailable => ResponseError::CoordinatorNotAvailable,
        ErrorCode::NotCoordinator => ResponseError::NotCoordinator,
        ErrorCode::CoordinatorLoadInProgress => ResponseError::CoordinatorLoadInProgress,
        ErrorCode::InvalidGroupId => ResponseError::InvalidGroupId,
        ErrorCode::UnknownMemberId => ResponseError::UnknownMemberId,
        ErrorCode::IllegalGeneration => ResponseError::IllegalGeneration,
        ErrorCode::RebalanceInProgress => ResponseError::RebalanceInProgress,
        ErrorCode::InconsistentGroupProtocol => ResponseError::InconsistentGroupProtocol,
        ErrorCode::InvalidSessionTimeout => ResponseError::InvalidSessionTimeout,
        ErrorCode::MemberIdRequired => ResponseError::MemberIdRequired,
        ErrorCode::GroupIdNotFound => ResponseError::GroupIdNotFound,
        ErrorCode::NonEmptyGroup => ResponseError::NonEmptyGroup,
        ErrorCode::FencedInstanceId => ResponseError::FencedInstanceId,
        ErrorCode::GroupMaxSizeReached => ResponseError::GroupMaxSizeReached,
        ErrorCode::GroupSubscribedToTopic => ResponseError::GroupSubscribedToTopic,
        ErrorCode::OffsetMetadataTooLarge => ResponseError::OffsetMetadataTooLarge,
        // Kafka has no limit on groups per broker; the coordinator being unable to take the
        // group is what the client can act on (it retries).
        ErrorCode::TooManyGroups => ResponseError::CoordinatorNotAvailable,
        ErrorCode::OutOfOrderSequence => ResponseError::OutOfOrderSequenceNumber,
        ErrorCode::DuplicateSequence => ResponseError::DuplicateSequenceNumber,
        // An idempotent producer with a stale epoch: Kafka answers INVALID_PRODUCER_EPOCH
        // (PRODUCER_FENCED is the transactional coordinator's).
        ErrorCode::ProducerFenced => ResponseError::InvalidProducerEpoch,
        ErrorCode::InvalidProducerIdMapping => ResponseError::InvalidProducerIdMapping,
        ErrorCode::LeaderNotAvailable => ResponseError::LeaderNotAvailable,
        ErrorCode::InvalidTxnState => ResponseError::InvalidTxnState,
        ErrorCode::InvalidTransactionTimeout => ResponseError::InvalidTransactionTimeout,
        ErrorCode::ConcurrentTransactions => ResponseError::ConcurrentTransactions,
        ErrorCode::TransactionalIdNotFound => ResponseError::TransactionalIdNotFound,
        ErrorCode::TransactionCoordinatorFenced => ResponseError::TransactionCoordinatorFenced,
        ErrorCode::UnstableOffsetCommit => ResponseError::UnstableOffsetCommit,
        ErrorCode::OperationNotAttempted => ResponseError::OperationNotAttempted,
        ErrorCode::TransactionAbortable => ResponseError::TransactionAbortable,
        ErrorCode::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower,
        ErrorCode::NotEnoughReplicas => ResponseError::NotEnoughReplicas,
        ErrorCode::NotEnoughReplicasAfterAppend => ResponseError::NotEnoughReplicasAfterAppend,
        ErrorCode::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch,
        ErrorCode::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch,
        ErrorCode::NotController => ResponseError::NotController,
        ErrorCode::InvalidReplicationFactor => ResponseError::InvalidReplicationFactor,
        ErrorCode::BrokerNotAvailable => ResponseError::BrokerNotAvailable,
        ErrorCode::ReassignmentInProgress => ResponseError::ReassignmentInProgress,
        ErrorCode::StaleBrokerEpoch => ResponseError::StaleBrokerEpoch,
        ErrorCode::InconsistentTopicId => ResponseError::InconsistentTopicId,
        ErrorCode::SaslAuthenticationFailed => ResponseError::SaslAuthenticationFailed,
        ErrorCode::UnsupportedSaslMechanism => ResponseError::UnsupportedSaslMechanism,
        ErrorCode::IllegalSaslState => ResponseError::IllegalSaslState,
        ErrorCode::ResourceNotFound => ResponseError::ResourceNotFound,
        ErrorCode::UnacceptableCredential => ResponseError::UnacceptableCredential,
        ErrorCode::TopicAuthorizationFailed => ResponseError::TopicAuthorizationFailed,
        ErrorCode::GroupAuthorizationFailed => ResponseError::GroupAuthorizationFailed,
        ErrorCode::ClusterAuthorizationFailed => ResponseError::ClusterAuthorizationFailed,
        ErrorCode::TransactionalIdAuthorizationFailed => {
            ResponseError::TransactionalIdAuthorizationFailed
        }
        ErrorCode::SecurityDisabled => ResponseError::SecurityDisabled,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_native_error_but_none_is_a_kafka_error() {
        for code in ErrorCode::ALL {
            assert_eq!(
                kafka_code(code) == 0,
                code == ErrorCode::None,
                "{code:?} maps to Kafka code {}",
                kafka_code(code)
            );
        }
    }

    #[test]
    fn retriable_native_errors_stay_retriable() {
        for code in [
            ErrorCode::LeaderNotAvailable,
            ErrorCode::ShuttingDown,
            ErrorCode::StorageError,
            ErrorCode::RequestTimedOut,
            ErrorCode::CoordinatorLoadInProgress,
        ] {
            let error = kafka_error(code).expect("an error");
            assert!(
                error.is_retriable(),
                "{code:?} -> {error:?} is not retriable"
            );
        }
    }
}
