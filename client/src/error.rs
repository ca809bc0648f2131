//! The client's one error type: what failed, against which topic or partition, and whether
//! trying again can help ([`Error::is_retriable`]).
//!
//! Broker answers keep their wire [`ErrorCode`]; local conditions (buffer full, record too
//! large, closed) have their own variants. Errors are `Clone` because one failed produce
//! request fails every record of its batch with the same error. This file holds no retry
//! policy; the producer, consumer and admin API decide what to retry.

use std::sync::Arc;
use std::time::Duration;

use spate_protocol::api::ApiKey;
use spate_protocol::{BatchError, ErrorCode, WireError};
use spate_security::acl::CLUSTER_RESOURCE_NAME;
use spate_security::ResourceType;

/// Everything that can go wrong in the client.
///
/// ```
/// use spate_client::Error;
/// use spate_protocol::ErrorCode;
///
/// let error = Error::Broker {
///     operation: "produce",
///     topic: Some("orders".into()),
///     partition: Some(3),
///     code: ErrorCode::BrokerBusy,
///     message: None,
/// };
/// assert!(error.is_retriable());
/// assert_eq!(error.code(), Some(ErrorCode::BrokerBusy));
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No connection could be opened to any bootstrap address. Retriable: the broker may be
    /// starting.
    #[error("cannot connect to broker {address}: {source}")]
    Connect {
        /// The address last tried.
        address: String,
        /// What the operating system said.
        source: Arc<std::io::Error>,
    },
    /// The TLS handshake with the broker failed, or the broker refused the client's
    /// certificate: an untrusted or expired broker certificate, a name it does not carry, no
    /// client certificate where the broker requires one, a plaintext port. Not retriable: the
    /// same settings fail the same way.
    #[error("TLS with broker {address} failed: {reason}")]
    Tls {
        /// The address dialled.
        address: String,
        /// What rustls (or the broker's alert) said.
        reason: String,
    },
    /// The connection broke while the request was in flight; the broker may or may not have
    /// processed it. Retriable.
    #[error("connection to broker {address} lost during {operation}: {reason}")]
    ConnectionLost {
        /// The broker's address.
        address: String,
        /// The request that was in flight.
        operation: &'static str,
        /// Why the connection ended (closed by the broker, read failed, ...).
        reason: String,
    },
    /// No answer in time. Retriable.
    #[error("{operation} timed out after {elapsed:?}")]
    Timeout {
        /// What was waited for.
        operation: &'static str,
        /// How long it was waited for.
        elapsed: Duration,
    },
    /// The broker answered with an error code. Retriable exactly when the code is
    /// ([`ErrorCode::is_retriable`]).
    #[error(
        "broker refused {operation}{}: {code}{}",
        target(topic, partition),
        detail(message)
    )]
    Broker {
        /// The request the broker refused.
        operation: &'static str,
        /// The topic it concerned, if one.
        topic: Option<String>,
        /// The partition it concerned, if one.
        partition: Option<u32>,
        /// The broker's code.
        code: ErrorCode,
        /// The broker's explanation, when it sent one.
        message: Option<String>,
    },
    /// The broker's ACLs do not allow this client's principal the operation on the resource
    /// (the broker's `TopicAuthorizationFailed`, `GroupAuthorizationFailed`,
    /// `ClusterAuthorizationFailed` or `TransactionalIdAuthorizationFailed`). Not retriable: an
    /// operator must grant an ACL first (`spate acl add`).
    #[error("not authorized to {operation}: {resource}{}", detail(message))]
    NotAuthorized {
        /// The request the broker refused.
        operation: &'static str,
        /// The resource the principal lacks a permission on.
        resource: Resource,
        /// The broker's explanation, when it sent one.
        message: Option<String>,
    },
    /// The topic does not exist (after a metadata refresh).
    #[error("unknown topic {topic:?}")]
    UnknownTopic {
        /// The topic asked for.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error(
        "topic {topic:?} has {partition_count} partitions; partition {partition} does not exist"
    )]
    UnknownPartition {
        /// The topic asked for.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// How many partitions the topic has.
        partition_count: u32,
    },
    /// A position lies outside a partition's log.
    #[error(
        "offset {offset} is outside the log of {topic}/{partition} \
         (log start {log_start_offset}, high watermark {high_watermark})"
    )]
    OffsetOutOfRange {
        /// The topic read.
        topic: String,
        /// The partition read.
        partition: u32,
        /// The offset asked for.
        offset: u64,
        /// The oldest offset the partition still has.
        log_start_offset: u64,
        /// The offset the next record will get.
        high_watermark: u64,
    },
    /// What listens at the address does not speak Spate's protocol: it sent no answer to the
    /// first request within the connect timeout, or bytes that are no response to it (an HTTP
    /// server, say). Not retriable: asking again gets the same.
    #[error("{address} is not a Spate broker ({reason})")]
    NotSpateBroker {
        /// The address connected to.
        address: String,
        /// "no answer within ..." or "unexpected reply: ...".
        reason: String,
    },
    /// The broker refused to authenticate the connection (wrong password, unknown user, a
    /// mechanism it does not offer), or the broker's proof failed. Not retriable.
    #[error("authentication with broker {address} failed: {reason}")]
    Authentication {
        /// The broker's address.
        address: String,
        /// The broker's code and message, or what failed on this side.
        reason: String,
    },
    /// The broker sent bytes this client cannot decode. Not retriable: a version mismatch or a
    /// bug, not a transient fault.
    #[error("malformed {operation} response from the broker: {source}")]
    Protocol {
        /// The request whose response was malformed.
        operation: &'static str,
        /// What the decoder found.
        source: WireError,
    },
    /// The broker speaks no version of an API this client also speaks.
    #[error("the broker supports no version of {api:?} that this client speaks")]
    UnsupportedVersion {
        /// The API without a common version.
        api: ApiKey,
    },
    /// A fetched batch failed its CRC or structure check. Retriable: corruption in transit
    /// does not repeat (corruption on the broker's disk does, and then retries run out).
    #[error("fetched batch at offset {offset} of {topic}/{partition} is corrupt: {source}")]
    CorruptBatch {
        /// The topic read.
        topic: String,
        /// The partition read.
        partition: u32,
        /// Where the bad batch starts (or the position, if its header was unreadable).
        offset: u64,
        /// What the check found.
        source: BatchError,
    },
    /// The broker's stored copy of a partition is damaged at `offset`: it answered a fetch
    /// there with `CorruptMessage`. Not retriable: the same bytes fail the same way. The broker
    /// log names the file, the byte position and the offset where intact records resume; deleting
    /// the records before that offset (`Admin::delete_records`) skips the damage.
    #[error(
        "the broker's copy of {topic}/{partition} is corrupt at offset {offset}; its log names \
         the file and the first readable offset after the damage (delete the records before it \
         to skip the damage)"
    )]
    CorruptStoredData {
        /// The topic read.
        topic: String,
        /// The partition read.
        partition: u32,
        /// The offset whose batch the broker could not serve.
        offset: u64,
    },
    /// The producer's buffer memory stayed full (see `ProducerConfig::buffer_bytes_max`).
    /// Retriable once deliveries free memory.
    #[error(
        "producer buffer full: {requested_bytes} bytes requested, {limit_bytes} bytes in use \
         by records not yet delivered"
    )]
    BufferFull {
        /// Bytes the refused record needed.
        requested_bytes: usize,
        /// The buffer's size.
        limit_bytes: usize,
    },
    /// One record is larger than any batch or the whole buffer may be.
    #[error("record of {record_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        /// Bytes the record takes in a batch.
        record_bytes: usize,
        /// The most a record may take.
        limit_bytes: usize,
    },
    /// A producer gave up on a batch after retrying.
    #[error("gave up after {attempts} attempts: {last}")]
    RetriesExhausted {
        /// Attempts made.
        attempts: u32,
        /// Why the last one failed.
        last: Box<Error>,
    },
    /// The configuration or an argument cannot work.
    #[error("invalid {what}: {reason}")]
    Invalid {
        /// What was invalid.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// An idempotent producer's batch was refused as out of order while no earlier batch of its
    /// partition was unresolved: the broker no longer holds records it acknowledged, or there is
    /// a bug. The batch and the later unresolved batches of the partition fail with this; the
    /// producer then bumps its epoch and goes on with the partition's next batches. Not
    /// retriable.
    #[error(
        "broker's sequence for {topic}/{partition} does not continue with base sequence \
         {base_sequence} of producer {producer_id} epoch {producer_epoch}: records it \
         acknowledged may be lost"
    )]
    OutOfOrderSequence {
        /// The topic written.
        topic: String,
        /// The partition written.
        partition: u32,
        /// The producer id the batch carried.
        producer_id: i64,
        /// The epoch the batch carried.
        producer_epoch: i16,
        /// The sequence of the batch's first record.
        base_sequence: i32,
    },
    /// An idempotent producer's retried batch repeats one the broker stored but no longer
    /// remembers: its records were written once, at offsets the broker cannot tell any more.
    /// Not retriable (retrying would not tell more).
    #[error(
        "records of {topic}/{partition} were written before (a retried batch the broker no \
         longer remembers); their offsets are unknown"
    )]
    DuplicateSequence {
        /// The topic written.
        topic: String,
        /// The partition written.
        partition: u32,
    },
    /// A newer epoch of this producer's id wrote to the broker (another producer took the id
    /// over; for a transactional producer, another instance with the same `transactional_id`
    /// called `init_transactions`). Fatal: every pending record fails with this, and later
    /// sends and transaction calls fail too.
    #[error(
        "producer id {producer_id} epoch {producer_epoch} is fenced by a newer epoch; the \
         producer cannot send any more"
    )]
    ProducerFenced {
        /// The producer's id.
        producer_id: i64,
        /// The epoch that was fenced.
        producer_epoch: i16,
    },
    /// A transactional producer was asked for something its transaction's state does not
    /// allow (a send before `begin_transaction`, a commit outside a transaction, a second
    /// `init_transactions`): the application's order of calls is wrong. Not retriable.
    #[error("cannot {operation}: the transactional producer is {state}")]
    TransactionState {
        /// What was asked for.
        operation: &'static str,
        /// Where the producer stands.
        state: &'static str,
    },
    /// The current transaction can no longer commit (a record failed, the coordinator refused
    /// a partition or the offsets): abort it (`Producer::abort_transaction`); the producer
    /// may then begin a new one. Not retriable as such.
    #[error("the transaction cannot commit: {cause}; abort it")]
    TransactionAbortable {
        /// What spoiled it.
        cause: Box<Error>,
    },
    /// The record was part of a transaction that was aborted (or could no longer commit)
    /// before it was sent: it was not written.
    #[error("the record's transaction was aborted before it was sent")]
    TransactionAborted,
    /// The component was closed before the operation finished.
    #[error("{what} is closed")]
    Closed {
        /// The component (producer, consumer, ...).
        what: &'static str,
    },
}

/// A resource an ACL protects, as an authorization error names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// Topic, group, cluster or transactional id.
    pub resource_type: ResourceType,
    /// The resource's name; empty when the refused request did not say which one (a
    /// transactional or group request whose caller did not name it).
    pub name: String,
}

impl std::fmt::Display for Resource {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.resource_type {
            ResourceType::Topic => "topic",
            ResourceType::Group => "group",
            ResourceType::Cluster => return formatter.write_str("the cluster"),
            ResourceType::TransactionalId => "transactional id",
        };
        if self.name.is_empty() {
            write!(formatter, "a {kind}")
        } else {
            write!(formatter, "{kind} {:?}", self.name)
        }
    }
}

/// The resource type an authorization code is about; `None` for every other code.
fn authorization_resource_type(code: ErrorCode) -> Option<ResourceType> {
    match code {
        ErrorCode::TopicAuthorizationFailed => Some(ResourceType::Topic),
        ErrorCode::GroupAuthorizationFailed => Some(ResourceType::Group),
        ErrorCode::ClusterAuthorizationFailed => Some(ResourceType::Cluster),
        ErrorCode::TransactionalIdAuthorizationFailed => Some(ResourceType::TransactionalId),
        _ => None,
    }
}

fn authorization_code(resource_type: ResourceType) -> ErrorCode {
    match resource_type {
        ResourceType::Topic => ErrorCode::TopicAuthorizationFailed,
        ResourceType::Group => ErrorCode::GroupAuthorizationFailed,
        ResourceType::Cluster => ErrorCode::ClusterAuthorizationFailed,
        ResourceType::TransactionalId => ErrorCode::TransactionalIdAuthorizationFailed,
    }
}

fn target(topic: &Option<String>, partition: &Option<u32>) -> String {
    match (topic, partition) {
        (Some(topic), Some(partition)) => format!(" for {topic}/{partition}"),
        (Some(topic), None) => format!(" for topic {topic:?}"),
        _ => String::new(),
    }
}

fn detail(message: &Option<String>) -> String {
    message
        .as_ref()
        .map(|message| format!(" ({message})"))
        .unwrap_or_default()
}

impl Error {
    /// Whether doing the same thing again, unchanged, may succeed.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Connect { .. }
            | Self::ConnectionLost { .. }
            | Self::Timeout { .. }
            | Self::CorruptBatch { .. }
            | Self::BufferFull { .. } => true,
            Self::Broker { code, .. } => code.is_retriable(),
            Self::UnknownTopic { .. }
            | Self::NotAuthorized { .. }
            | Self::UnknownPartition { .. }
            | Self::OffsetOutOfRange { .. }
            | Self::Protocol { .. }
            | Self::NotSpateBroker { .. }
            | Self::Authentication { .. }
            | Self::UnsupportedVersion { .. }
            | Self::RecordTooLarge { .. }
            | Self::CorruptStoredData { .. }
            | Self::RetriesExhausted { .. }
            | Self::Invalid { .. }
            | Self::Tls { .. }
            | Self::OutOfOrderSequence { .. }
            | Self::DuplicateSequence { .. }
            | Self::ProducerFenced { .. }
            | Self::TransactionState { .. }
            | Self::TransactionAbortable { .. }
            | Self::TransactionAborted
            | Self::Closed { .. } => false,
        }
    }

    /// The broker's error code, when the broker refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Broker { code, .. } => Some(*code),
            Self::NotAuthorized { resource, .. } => {
                Some(authorization_code(resource.resource_type))
            }
            Self::RetriesExhausted { last, .. } => last.code(),
            Self::UnknownTopic { .. } | Self::UnknownPartition { .. } => {
                Some(ErrorCode::UnknownTopicOrPartition)
            }
            Self::OffsetOutOfRange { .. } => Some(ErrorCode::OffsetOutOfRange),
            Self::CorruptStoredData { .. } => Some(ErrorCode::CorruptMessage),
            Self::OutOfOrderSequence { .. } => Some(ErrorCode::OutOfOrderSequence),
            Self::DuplicateSequence { .. } => Some(ErrorCode::DuplicateSequence),
            Self::ProducerFenced { .. } => Some(ErrorCode::ProducerFenced),
            Self::TransactionAbortable { cause } => cause.code(),
            _ => None,
        }
    }

    /// Whether the broker could not be reached at all (as opposed to refusing a request),
    /// including when what answered at its address is not a Spate broker.
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Connect { .. } | Self::NotSpateBroker { .. } => true,
            Self::RetriesExhausted { last, .. } => last.is_unreachable(),
            _ => false,
        }
    }

    /// The error with retries stripped: the cause a user should see.
    pub fn root(&self) -> &Error {
        match self {
            Self::RetriesExhausted { last, .. } => last.root(),
            other => other,
        }
    }

    /// The broker's refusal. An authorization code becomes [`Error::NotAuthorized`], naming
    /// the topic given (or the cluster); a group's or transactional id's name is added by the
    /// caller that knows it ([`Error::naming`]).
    pub(crate) fn broker(
        operation: &'static str,
        topic: Option<&str>,
        partition: Option<u32>,
        code: ErrorCode,
        message: Option<String>,
    ) -> Self {
        if let Some(resource_type) = authorization_resource_type(code) {
            let name = match resource_type {
                ResourceType::Topic => topic.unwrap_or_default(),
                ResourceType::Cluster => CLUSTER_RESOURCE_NAME,
                ResourceType::Group | ResourceType::TransactionalId => "",
            };
            return Self::NotAuthorized {
                operation,
                resource: Resource {
                    resource_type,
                    name: name.to_string(),
                },
                message,
            };
        }
        Self::Broker {
            operation,
            topic: topic.map(str::to_owned),
            partition,
            code,
            message,
        }
    }

    /// Names the resource of an authorization error of `resource_type` that did not say which
    /// one (the group of a group request, the transactional id of a transaction's); any other
    /// error is returned as it is.
    pub(crate) fn naming(mut self, resource_type: ResourceType, name: &str) -> Self {
        match &mut self {
            Self::NotAuthorized { resource, .. }
                if resource.resource_type == resource_type && resource.name.is_empty() =>
            {
                resource.name = name.to_string();
            }
            Self::RetriesExhausted { last, .. } => {
                let named = std::mem::replace(&mut **last, Self::TransactionAborted);
                **last = named.naming(resource_type, name);
            }
            Self::TransactionAbortable { cause } => {
                let named = std::mem::replace(&mut **cause, Self::TransactionAborted);
                **cause = named.naming(resource_type, name);
            }
            _ => {}
        }
        self
    }

    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            what,
            reason: reason.into(),
        }
    }
}

/// The client's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_codes_become_typed_errors_that_name_their_resource() {
        let topic = Error::broker(
            "produce",
            Some("orders"),
            Some(1),
            ErrorCode::TopicAuthorizationFailed,
            None,
        );
        assert_eq!(
            topic.to_string(),
            "not authorized to produce: topic \"orders\""
        );
        assert_eq!(topic.code(), Some(ErrorCode::TopicAuthorizationFailed));
        assert!(!topic.is_retriable());
        let group = Error::broker(
            "join group",
            None,
            None,
            ErrorCode::GroupAuthorizationFailed,
            None,
        )
        .naming(ResourceType::Group, "billing");
        assert_eq!(
            group.to_string(),
            "not authorized to join group: group \"billing\""
        );
        let cluster = Error::broker(
            "create acls",
            None,
            None,
            ErrorCode::ClusterAuthorizationFailed,
            Some("Alter on the cluster".into()),
        );
        assert_eq!(
            cluster.to_string(),
            "not authorized to create acls: the cluster (Alter on the cluster)"
        );
        // Naming a group leaves another resource's error, and a named one, as they are.
        let transactional = Error::broker(
            "init producer id",
            None,
            None,
            ErrorCode::TransactionalIdAuthorizationFailed,
            None,
        )
        .naming(ResourceType::Group, "billing")
        .naming(ResourceType::TransactionalId, "tx-1")
        .naming(ResourceType::TransactionalId, "tx-2");
        assert_eq!(
            transactional.to_string(),
            "not authorized to init producer id: transactional id \"tx-1\""
        );
        assert_eq!(
            Error::broker("produce", Some("orders"), None, ErrorCode::BrokerBusy, None).code(),
            Some(ErrorCode::BrokerBusy)
        );
    }

    #[test]
    fn broker_errors_name_the_partition_and_follow_the_code_on_retries() {
        let error = Error::broker(
            "produce",
            Some("orders"),
            Some(2),
            ErrorCode::InvalidRequest,
            Some("bad batch".into()),
        );
        assert_eq!(
            error.to_string(),
            "broker refused produce for orders/2: request is malformed or inconsistent (bad batch)"
        );
        assert!(!error.is_retriable());
        let busy = Error::broker("fetch", None, None, ErrorCode::BrokerBusy, None);
        assert!(busy.is_retriable());
    }

    #[test]
    fn exhausted_retries_report_the_last_cause() {
        let last = Error::Connect {
            address: "127.0.0.1:1".into(),
            source: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        let error = Error::RetriesExhausted {
            attempts: 3,
            last: Box::new(last),
        };
        assert!(!error.is_retriable());
        assert!(error.is_unreachable());
        assert!(matches!(error.root(), Error::Connect { .. }));
    }
}
