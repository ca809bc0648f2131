//! Typed errors of the protocol crate, and the stable numeric codes that go on the wire.
//!
//! `BatchError` says why a batch's bytes are not a valid batch; `BuildError` why a producer could
//! not add a record or seal a batch. `ErrorCode` is the wire-level code space shared by every
//! API; its numbers never change once released. `WireError` says why a frame or message could
//! not be decoded. This file holds no decoding logic itself.

/// Why a sequence of bytes is not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: needed {needed} bytes, {available} available")]
    Truncated { needed: usize, available: usize },
    #[error("unknown batch magic {magic}")]
    UnknownMagic { magic: u8 },
    #[error("batch length {batch_length} is smaller than the header")]
    LengthTooSmall { batch_length: u32 },
    #[error("batch of {batch_length} bytes exceeds the limit of {limit} bytes")]
    TooLarge { batch_length: usize, limit: usize },
    #[error("unknown payload format {payload_format}")]
    UnknownPayloadFormat { payload_format: u8 },
    #[error("unknown attribute bits {attributes:#06x}")]
    UnknownAttributes { attributes: u16 },
    #[error("bad counts: offset_count {offset_count}, record_count {record_count}")]
    BadCounts {
        offset_count: u32,
        record_count: u32,
    },
    #[error("max timestamp {max_timestamp} is before first timestamp {first_timestamp}")]
    BadTimestamps {
        first_timestamp: i64,
        max_timestamp: i64,
    },
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    #[error("CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("record payload is invalid: {reason}")]
    InvalidPayload { reason: String },
    #[error("base offset {base_offset} plus {offset_count} offsets overflows the offset space")]
    OffsetOverflow { base_offset: u64, offset_count: u32 },
    #[error("payload format {payload_format} cannot be read as records by this build")]
    UnsupportedPayloadFormat { payload_format: u8 },
    #[error("compression codec {codec} is not supported by this build")]
    UnsupportedCompression { codec: u16 },
    #[error("payload holds {actual} records, header says {expected}")]
    RecordCountMismatch { expected: u32, actual: usize },
    #[error("record {index} has offset delta {offset_delta}, not above the previous one and below {offset_count}")]
    BadOffsetDelta {
        index: usize,
        offset_delta: u32,
        offset_count: u32,
    },
    /// A Kafka message set of magic 0 or 1 (before RecordBatch v2). Kafka answers these with
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT; Kafka 4 clients never send them.
    #[error("Kafka message format v{magic} is not supported (only RecordBatch v2)")]
    KafkaMessageFormatTooOld { magic: u8 },
    #[error("Kafka batch length field says {declared} bytes in all, {received} received")]
    KafkaLengthMismatch { declared: usize, received: usize },
    #[error("Kafka batch has last offset delta {last_offset_delta} and {record_count} records")]
    KafkaBadCounts {
        last_offset_delta: i32,
        record_count: i32,
    },
    /// A structurally valid Kafka batch that a producer may not write (Kafka's INVALID_RECORD).
    #[error("Kafka batch refused: {reason}")]
    KafkaInvalidRecord { reason: &'static str },
    /// The Spate header of a stored Kafka batch disagrees with the Kafka header it wraps.
    #[error("Kafka batch header field {field} disagrees with its Spate header")]
    KafkaHeaderMismatch { field: &'static str },
    #[error("Kafka record {index} is malformed: {reason}")]
    KafkaBadRecord { index: usize, reason: &'static str },
    #[error("Kafka batch decompresses to more than {limit} bytes")]
    DecompressedTooLarge { limit: usize },
    #[error("Kafka batch does not decompress ({codec}): {reason}")]
    Decompression { codec: &'static str, reason: String },
}

/// Why a producer could not add a record to a batch or seal it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    #[error("an empty batch cannot be sealed")]
    Empty,
    #[error("record of about {record_bytes} bytes would grow the batch from {batch_bytes} to over its limit of {limit} bytes")]
    WouldExceedLimit {
        record_bytes: usize,
        batch_bytes: usize,
        limit: usize,
    },
}

/// Stable error codes carried in responses. Numbers are part of the protocol: never change or
/// reuse one. A code this build does not know decodes as [`ErrorCode::Unknown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, thiserror::Error)]
#[repr(u16)]
pub enum ErrorCode {
    #[default]
    #[error("no error")]
    None = 0,
    #[error("unknown server error")]
    Unknown = 1,
    #[error("record batch failed validation (CRC, header or payload)")]
    CorruptMessage = 2,
    #[error("record batch or request is larger than the server accepts")]
    MessageTooLarge = 3,
    #[error("this server does not host this topic or partition")]
    UnknownTopicOrPartition = 4,
    #[error("requested offset is outside the partition's log range")]
    OffsetOutOfRange = 5,
    #[error("API version not supported")]
    UnsupportedVersion = 6,
    #[error("request is malformed or inconsistent")]
    InvalidRequest = 7,
    #[error("topic already exists")]
    TopicAlreadyExists = 8,
    #[error("topic configuration is invalid")]
    InvalidConfig = 9,
    #[error("partition count is invalid")]
    InvalidPartitions = 10,
    #[error("storage failed to read or write")]
    StorageError = 11,
    #[error("not enough disk space")]
    NotEnoughDiskSpace = 12,
    #[error("request timed out")]
    RequestTimedOut = 13,
    #[error("server is shutting down")]
    ShuttingDown = 14,
    #[error("topic name is invalid")]
    InvalidTopicName = 15,
    #[error("unknown API key")]
    UnknownApi = 16,
    #[error("server is busy; retry later")]
    BrokerBusy = 17,
    #[error("the group coordinator is not available yet")]
    CoordinatorNotAvailable = 18,
    #[error("this shard is not the group's coordinator")]
    NotCoordinator = 19,
    #[error("the group coordinator is still loading the group's state")]
    CoordinatorLoadInProgress = 20,
    #[error("group id is empty or too long")]
    InvalidGroupId = 21,
    #[error("the member id is not a member of the group; rejoin")]
    UnknownMemberId = 22,
    #[error("the generation id is not the group's current generation; rejoin")]
    IllegalGeneration = 23,
    #[error("the group is rebalancing; rejoin")]
    RebalanceInProgress = 24,
    #[error("the member's protocol type or protocols do not match the group's")]
    InconsistentGroupProtocol = 25,
    #[error("session timeout is outside the broker's allowed range")]
    InvalidSessionTimeout = 26,
    #[error("a member id was assigned; join again with it")]
    MemberIdRequired = 27,
    #[error("the group does not exist")]
    GroupIdNotFound = 28,
    #[error("the group still has members")]
    NonEmptyGroup = 29,
    #[error("another member with the same group instance id replaced this one")]
    FencedInstanceId = 30,
    #[error("the group has reached its maximum number of members")]
    GroupMaxSizeReached = 31,
    #[error("the group is subscribed to the topic; its offsets cannot be deleted")]
    GroupSubscribedToTopic = 32,
    #[error("the offset metadata string is too long")]
    OffsetMetadataTooLarge = 33,
    #[error("the broker holds its maximum number of groups")]
    TooManyGroups = 34,
    #[error("the batch's sequence does not follow the producer's last one on this partition")]
    OutOfOrderSequence = 35,
    #[error("the batch repeats an older one of the producer that the broker no longer remembers")]
    DuplicateSequence = 36,
    #[error("a newer epoch of this producer id has written to the partition")]
    ProducerFenced = 37,
    #[error("the batch's producer id or epoch is invalid")]
    InvalidProducerIdMapping = 38,
    /// Like Kafka's KAFKA_STORAGE_ERROR for a log directory that went offline, but for one
    /// partition: the broker found its data damaged or missing (at start-up or while running)
    /// and serves it no more until an operator acts. Not retriable: the same request fails the
    /// same way until then.
    #[error(
        "the partition is offline: the broker found its data damaged or missing and does not \
         serve it until an operator acts (see the broker log or `spate topic describe`)"
    )]
    PartitionOffline = 39,
    /// Kafka's LEADER_NOT_AVAILABLE: the partition exists, but its owner cannot serve it yet,
    /// because the broker is still opening it (recovery after a start). Retriable: the same
    /// request succeeds once the open finishes. A request that carries a timeout waits for the
    /// open that long before it gets this code.
    #[error(
        "the partition is not available yet: the broker is still opening it after a start; retry"
    )]
    LeaderNotAvailable = 40,
    /// Kafka's INVALID_TXN_STATE: the request does not fit the transaction's state (EndTxn
    /// without a transaction, a non-transactional batch from a producer inside one, a
    /// transactional batch for a partition not added to the transaction).
    #[error("the request is not valid in the transaction's current state")]
    InvalidTxnState = 41,
    /// Kafka's INVALID_TRANSACTION_TIMEOUT.
    #[error("the transaction timeout is larger than the broker allows or not positive")]
    InvalidTransactionTimeout = 42,
    /// Kafka's CONCURRENT_TRANSACTIONS: the previous transaction of this transactional id is
    /// still being completed. Retriable.
    #[error("the previous transaction of this transactional id is still completing; retry")]
    ConcurrentTransactions = 43,
    /// Kafka's TRANSACTIONAL_ID_NOT_FOUND.
    #[error("the transactional id is not known to its coordinator")]
    TransactionalIdNotFound = 44,
    /// Kafka's TRANSACTION_COORDINATOR_FENCED: a newer coordinator took the transactional id.
    #[error("a newer coordinator took over this transactional id")]
    TransactionCoordinatorFenced = 45,
    /// Kafka's UNSTABLE_OFFSET_COMMIT: an offset of the partition waits for its transaction to
    /// end. Retriable.
    #[error("the partition's offset is pending in an open transaction; retry")]
    UnstableOffsetCommit = 46,
    /// Kafka's OPERATION_NOT_ATTEMPTED: another item of the same request failed, so this one
    /// was not tried.
    #[error("not attempted: another item of the same request failed")]
    OperationNotAttempted = 47,
    /// Kafka's TRANSACTION_ABORTABLE: the transaction cannot commit any more; the producer must
    /// abort it and may then begin a new one.
    #[error("the transaction cannot commit any more; abort it")]
    TransactionAbortable = 48,
    /// Kafka's NOT_LEADER_OR_FOLLOWER: this broker does not lead the partition (or does not hold
    /// it at all). Retriable: the client refreshes its metadata and goes to the leader.
    #[error("this broker is not the partition's leader; refresh metadata and retry")]
    NotLeaderOrFollower = 49,
    /// Kafka's NOT_ENOUGH_REPLICAS: fewer in-sync replicas than the topic's
    /// `min.insync.replicas`, so an acks=all write was refused before it was appended.
    #[error("fewer in-sync replicas than min.insync.replicas; nothing was appended")]
    NotEnoughReplicas = 50,
    /// Kafka's NOT_ENOUGH_REPLICAS_AFTER_APPEND: appended by the leader, but the in-sync
    /// replicas fell below `min.insync.replicas` before they all had it.
    #[error("appended, but the in-sync replicas fell below min.insync.replicas before the write was committed")]
    NotEnoughReplicasAfterAppend = 51,
    /// Kafka's FENCED_LEADER_EPOCH: the request names a leader epoch older than the partition's.
    #[error("the request's leader epoch is older than the partition's; refresh metadata")]
    FencedLeaderEpoch = 52,
    /// Kafka's UNKNOWN_LEADER_EPOCH: the request names a leader epoch newer than this broker
    /// knows (its metadata is behind).
    #[error("the request's leader epoch is newer than this broker knows; retry")]
    UnknownLeaderEpoch = 53,
    /// Cluster metadata changes go to the controller; this broker is not it.
    #[error("this broker is not the cluster controller")]
    NotController = 54,
    /// Kafka's INVALID_REPLICATION_FACTOR.
    #[error("invalid replication factor")]
    InvalidReplicationFactor = 55,
    /// Kafka's BROKER_NOT_AVAILABLE: a named broker is not registered or is fenced.
    #[error("the broker is not available")]
    BrokerNotAvailable = 56,
    /// Kafka's REASSIGNMENT_IN_PROGRESS.
    #[error("a reassignment of the partition is in progress")]
    ReassignmentInProgress = 57,
    /// Kafka's STALE_BROKER_EPOCH: a request from an older incarnation of a broker.
    #[error("the request comes from an older incarnation of the broker")]
    StaleBrokerEpoch = 58,
    /// Kafka's INCONSISTENT_TOPIC_ID: the topic id does not match the topic's name.
    #[error("the topic id does not match the topic")]
    InconsistentTopicId = 59,
    /// Kafka's SASL_AUTHENTICATION_FAILED: wrong password, unknown user, or a malformed
    /// exchange; the connection closes after the answer.
    #[error("authentication failed")]
    SaslAuthenticationFailed = 60,
    /// Kafka's UNSUPPORTED_SASL_MECHANISM: the listener does not offer the mechanism.
    #[error("the SASL mechanism is not enabled on this listener")]
    UnsupportedSaslMechanism = 61,
    /// Kafka's ILLEGAL_SASL_STATE: a SASL request out of its order.
    #[error("the SASL request is not valid in the connection's authentication state")]
    IllegalSaslState = 62,
    /// Kafka's RESOURCE_NOT_FOUND: the user (or its credential) does not exist.
    #[error("the resource does not exist")]
    ResourceNotFound = 63,
    /// Kafka's UNACCEPTABLE_CREDENTIAL: iterations out of range, empty salt or name.
    #[error("the credential is not acceptable")]
    UnacceptableCredential = 64,
    /// Kafka's TOPIC_AUTHORIZATION_FAILED: the principal may not do this to the topic (the
    /// message names the topic). Not retriable: an operator must grant an ACL first.
    #[error("not authorized to access the topic")]
    TopicAuthorizationFailed = 65,
    /// Kafka's GROUP_AUTHORIZATION_FAILED: the principal may not do this to the group.
    #[error("not authorized to access the group")]
    GroupAuthorizationFailed = 66,
    /// Kafka's CLUSTER_AUTHORIZATION_FAILED: the request needs a permission on the cluster.
    #[error("not authorized to perform this cluster operation")]
    ClusterAuthorizationFailed = 67,
    /// Kafka's TRANSACTIONAL_ID_AUTHORIZATION_FAILED: the principal may not use the
    /// transactional id.
    #[error("not authorized to use the transactional id")]
    TransactionalIdAuthorizationFailed = 68,
    /// Kafka's SECURITY_DISABLED: an ACL request to a broker whose authorization is off.
    #[error("authorization is not enabled on this broker")]
    SecurityDisabled = 69,
}

impl ErrorCode {
    /// Every code, in numeric order.
    pub const ALL: [ErrorCode; 70] = [
        Self::None,
        Self::Unknown,
        Self::CorruptMessage,
        Self::MessageTooLarge,
        Self::UnknownTopicOrPartition,
        Self::OffsetOutOfRange,
        Self::UnsupportedVersion,
        Self::InvalidRequest,
        Self::TopicAlreadyExists,
        Self::InvalidConfig,
        Self::InvalidPartitions,
        Self::StorageError,
        Self::NotEnoughDiskSpace,
        Self::RequestTimedOut,
        Self::ShuttingDown,
        Self::InvalidTopicName,
        Self::UnknownApi,
        Self::BrokerBusy,
        Self::CoordinatorNotAvailable,
        Self::NotCoordinator,
        Self::CoordinatorLoadInProgress,
        Self::InvalidGroupId,
        Self::UnknownMemberId,
        Self::IllegalGeneration,
        Self::RebalanceInProgress,
        Self::InconsistentGroupProtocol,
        Self::InvalidSessionTimeout,
        Self::MemberIdRequired,
        Self::GroupIdNotFound,
        Self::NonEmptyGroup,
        Self::FencedInstanceId,
        Self::GroupMaxSizeReached,
        Self::GroupSubscribedToTopic,
        Self::OffsetMetadataTooLarge,
        Self::TooManyGroups,
        Self::OutOfOrderSequence,
        Self::DuplicateSequence,
        Self::ProducerFenced,
        Self::InvalidProducerIdMapping,
        Self::PartitionOffline,
        Self::LeaderNotAvailable,
        Self::InvalidTxnState,
        Self::InvalidTransactionTimeout,
        Self::ConcurrentTransactions,
        Self::TransactionalIdNotFound,
        Self::TransactionCoordinatorFenced,
        Self::UnstableOffsetCommit,
        Self::OperationNotAttempted,
        Self::TransactionAbortable,
        Self::NotLeaderOrFollower,
        Self::NotEnoughReplicas,
        Self::NotEnoughReplicasAfterAppend,
        Self::FencedLeaderEpoch,
        Self::UnknownLeaderEpoch,
        Self::NotController,
        Self::InvalidReplicationFactor,
        Self::BrokerNotAvailable,
        Self::ReassignmentInProgress,
        Self::StaleBrokerEpoch,
        Self::InconsistentTopicId,
        Self::SaslAuthenticationFailed,
        Self::UnsupportedSaslMechanism,
        Self::IllegalSaslState,
        Self::ResourceNotFound,
        Self::UnacceptableCredential,
        Self::TopicAuthorizationFailed,
        Self::GroupAuthorizationFailed,
        Self::ClusterAuthorizationFailed,
        Self::TransactionalIdAuthorizationFailed,
        Self::SecurityDisabled,
    ];

    pub fn to_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire number; `None` for numbers this build does not know.
    pub fn from_u16(code: u16) -> Option<Self> {
        Self::ALL.get(usize::from(code)).copied()
    }

    /// Like [`ErrorCode::from_u16`], mapping numbers from newer peers to `Unknown`.
    pub fn from_u16_lossy(code: u16) -> Self {
        Self::from_u16(code).unwrap_or(Self::Unknown)
    }

    pub fn is_none(self) -> bool {
        self == Self::None
    }

    /// Whether sending the same request again may succeed without the caller changing
    /// anything. Follows Kafka: `CorruptMessage` is retriable because corruption in transit
    /// does not repeat; `UnknownTopicOrPartition` because metadata may be stale. The group
    /// codes that ask the member to act (rejoin: `UnknownMemberId`, `IllegalGeneration`,
    /// `RebalanceInProgress`, `MemberIdRequired`) are not retriable: the same request would
    /// fail the same way. Only the coordinator's own transient states are, and
    /// `LeaderNotAvailable` (a partition still opening after a broker start), and the
    /// transaction codes Kafka retries: `ConcurrentTransactions`, `UnstableOffsetCommit`.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::CorruptMessage
                | Self::UnknownTopicOrPartition
                | Self::StorageError
                | Self::NotEnoughDiskSpace
                | Self::RequestTimedOut
                | Self::ShuttingDown
                | Self::BrokerBusy
                | Self::CoordinatorNotAvailable
                | Self::NotCoordinator
                | Self::CoordinatorLoadInProgress
                | Self::LeaderNotAvailable
                | Self::ConcurrentTransactions
                | Self::UnstableOffsetCommit
                | Self::NotLeaderOrFollower
                | Self::NotEnoughReplicas
                | Self::NotEnoughReplicasAfterAppend
                | Self::FencedLeaderEpoch
                | Self::UnknownLeaderEpoch
                | Self::NotController
                | Self::BrokerNotAvailable
        )
    }

    /// The code a server answers with for a batch that failed validation.
    pub fn for_batch_error(error: &BatchError) -> Self {
        match error {
            BatchError::TooLarge { .. } => Self::MessageTooLarge,
            BatchError::UnsupportedPayloadFormat { .. }
            | BatchError::UnsupportedCompression { .. }
            | BatchError::KafkaMessageFormatTooOld { .. }
            | BatchError::KafkaInvalidRecord { .. } => Self::InvalidRequest,
            _ => Self::CorruptMessage,
        }
    }

    /// The code a server answers with for a request it could not decode.
    pub fn for_wire_error(error: &WireError) -> Self {
        match error {
            WireError::FrameTooLarge { .. } => Self::MessageTooLarge,
            WireError::UnsupportedVersion { .. } => Self::UnsupportedVersion,
            WireError::UnknownApiKey { .. } => Self::UnknownApi,
            _ => Self::InvalidRequest,
        }
    }
}

const _: () = {
    let mut index = 0;
    while index < ErrorCode::ALL.len() {
        assert!(
            ErrorCode::ALL[index] as usize == index,
            "ALL must list codes in numeric order"
        );
        index += 1;
    }
};

/// Why bytes could not be decoded as a frame or message (or a message could not be encoded
/// within the limits its decoder enforces). `field` names what was being read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("{field}: needed {needed} bytes, {available} available")]
    Truncated {
        field: &'static str,
        needed: usize,
        available: usize,
    },
    #[error(
        "frame of {frame_bytes} bytes exceeds the limit of {limit} bytes \
         (api key {api_key:?}, correlation id {correlation_id:?})"
    )]
    FrameTooLarge {
        frame_bytes: usize,
        limit: usize,
        /// Present when the frame's first bytes were already buffered (request frames).
        api_key: Option<u16>,
        /// Present when the frame's first bytes were already buffered.
        correlation_id: Option<u32>,
    },
    #[error("frame of {frame_bytes} bytes is shorter than its fixed header of {needed} bytes")]
    FrameTooSmall { frame_bytes: usize, needed: usize },
    #[error("{field}: length {length} exceeds the limit of {limit}")]
    TooLong {
        field: &'static str,
        length: usize,
        limit: usize,
    },
    #[error("{field}: count {count} exceeds the limit of {limit}")]
    TooMany {
        field: &'static str,
        count: usize,
        limit: usize,
    },
    #[error("{field}: not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("{field}: invalid value {value}")]
    InvalidValue { field: &'static str, value: i64 },
    #[error("unknown api key {api_key}")]
    UnknownApiKey { api_key: u16 },
    #[error("api key {api_key} version {api_version} is not supported")]
    UnsupportedVersion { api_key: u16, api_version: u16 },
    #[error("{message}: {count} bytes left over after decoding")]
    TrailingBytes { message: &'static str, count: usize },
}
