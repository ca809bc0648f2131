//! The values partition operations take and give back across shards: partition keys, produce
//! and fetch pieces and outcomes, and [`PartitionError`].
//!
//! These values cross threads inside cross-shard calls (`mesh::invoke_on`), so everything in
//! them is `Send`.
//! Record batches travel as `BytesMut` (produce) and `Bytes` (fetch): moving them moves a pointer
//! and a reference count, never the bytes. Errors are [`PartitionError`], a small value type the
//! handlers map to wire error codes; storage errors are rendered to text at the owner.

use bytes::{Bytes, BytesMut};

// The transaction values storage defines, named here for the layers above that do not depend
// on storage (the group and transaction coordinators).
pub use crate::storage::{AbortedTxn, TxnMarker, TxnResult, VerificationGuard};

/// Identifies a partition across shards: the topic's unique id (not its name, which can be
/// reused after deletion) and the partition index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionKey {
    pub topic_id: u64,
    pub partition: u32,
}

/// Which records a read sees (Kafka's `isolation_level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Isolation {
    /// Every durable record, up to the high watermark, transactions decided or not.
    #[default]
    ReadUncommitted,
    /// Only records below the last stable offset (every transaction below it is decided); the
    /// reader drops aborted transactions' records itself with the aborted list.
    ReadCommitted,
}

/// How long a produce waits before answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProduceAcks {
    /// No response at all; appended like `Leader`.
    None,
    /// Appended (written), not yet fsynced.
    Leader,
    /// Durable under the topic's durability policy.
    All,
}

/// Why a partition operation failed; maps one to one onto wire error codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    #[error("offset {offset} is out of range [{log_start_offset}, {high_watermark}]")]
    OffsetOutOfRange {
        offset: i64,
        log_start_offset: u64,
        high_watermark: u64,
    },
    #[error("corrupt record batch: {0}")]
    CorruptBatch(String),
    #[error("record batch too large: {0}")]
    BatchTooLarge(String),
    #[error("no space left on the data device: {0}")]
    NoSpace(String),
    #[error("storage error: {0}")]
    Storage(String),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the broker is shutting down")]
    ShuttingDown,
    #[error("the topic is internal to the broker; clients may not change it")]
    InternalTopic,
    /// An idempotent producer's batch does not continue its sequence.
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    /// An idempotent producer's batch is an old one whose offsets are no longer known.
    #[error("duplicate sequence: {0}")]
    DuplicateSequence(String),
    /// A newer epoch of the producer id has written to the partition.
    #[error("producer fenced: {0}")]
    ProducerFenced(String),
    /// The batch's producer id, epoch and sequence do not form a valid identity.
    #[error("invalid producer id mapping: {0}")]
    InvalidProducerIdMapping(String),
    /// The partition could not be opened, or lost data under the running broker: it is not
    /// served until an operator acts. The text names the file, position and reason.
    #[error("partition offline: {0}")]
    Offline(String),
    /// The partition is still being opened after the broker started (recovery), and the request
    /// could not wait for it any longer. Retriable.
    #[error("partition not available yet: the broker is still opening it")]
    Opening,
    /// The batch does not fit the producer's transaction state in this partition (Kafka's
    /// INVALID_TXN_STATE): a non-transactional batch from a producer inside a transaction, or a
    /// transactional batch whose verification a marker overtook.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The transaction coordinator says the partition is not in the producer's transaction
    /// (KIP-890's verification; Kafka's TRANSACTION_ABORTABLE, INVALID_TXN_STATE for old
    /// clients): the producer must abort. Nothing was appended.
    #[error("transaction abortable: {0}")]
    TransactionAbortable(String),
    /// The transaction coordinator could not be asked whether the partition is in the
    /// producer's transaction (loading, moving, busy completing the previous one). Retriable;
    /// nothing was appended.
    #[error("transaction verification unavailable: {0}")]
    TransactionVerificationUnavailable(String),
    /// A marker from an older transaction coordinator epoch than one the partition has seen for
    /// the producer (Kafka's TRANSACTION_COORDINATOR_FENCED). Nothing was appended.
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
    /// A record the topic cannot take: one without a key in a compacted topic (Kafka's
    /// INVALID_RECORD), or records that cannot be read to check it.
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// This broker does not lead the partition (Kafka's NOT_LEADER_OR_FOLLOWER); `leader` is the
    /// leader the metadata names, if any, at `leader_epoch`, so a client can go there.
    #[error("not the leader of the partition (leader {leader:?}, epoch {leader_epoch})")]
    NotLeaderOrFollower {
        leader: Option<spate_protocol::NodeId>,
        leader_epoch: i32,
    },
    /// Fewer in-sync replicas than `min.insync.replicas`: an acks=all batch was refused before it
    /// was appended.
    #[error("{isr} in-sync replicas, fewer than min.insync.replicas = {min_insync}")]
    NotEnoughReplicas { isr: usize, min_insync: u16 },
    /// Appended on the leader, but the in-sync replicas fell below `min.insync.replicas` before
    /// the write was committed.
    #[error("appended, but the in-sync replicas fell below min.insync.replicas = {min_insync}")]
    NotEnoughReplicasAfterAppend { min_insync: u16 },
    /// The request's leader epoch is older than the partition's.
    #[error("leader epoch {requested} is older than the partition's {current}")]
    FencedLeaderEpoch { requested: i32, current: i32 },
    /// The request's leader epoch is newer than this broker knows.
    #[error("leader epoch {requested} is newer than the partition's {current}")]
    UnknownLeaderEpoch { requested: i32, current: i32 },
    /// An acks=all write was appended by the leader but not committed on the in-sync replicas
    /// within the request's timeout (Kafka's REQUEST_TIMED_OUT).
    #[error("not committed on the in-sync replicas within {timeout_ms} ms")]
    ReplicationTimedOut { timeout_ms: u64 },
}

#[derive(Debug)]
pub struct ProducePartition {
    pub key: PartitionKey,
    pub batches: Vec<BytesMut>,
    /// The partition's verification guard (`Shard::txn_verification`) once the transaction
    /// coordinator confirmed the producer's transaction holds the partition: a transactional
    /// batch that opens its producer's transaction here is appended only with it.
    pub verification: Option<VerificationGuard>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProduceOutcome {
    pub base_offset: u64,
    pub log_start_offset: u64,
    /// The offset after the request's last batch: an acks=all write is committed once the
    /// high watermark reaches it.
    pub end_offset: u64,
}

#[derive(Debug, Clone)]
pub struct FetchPartition {
    pub key: PartitionKey,
    pub offset: i64,
    pub max_bytes: usize,
    pub isolation: Isolation,
}

#[derive(Debug, Clone, Default)]
pub struct FetchOutcome {
    pub high_watermark: u64,
    /// Below it every transaction is decided; read_committed answers hold nothing at or past it.
    /// The high watermark when no transaction is open.
    pub last_stable_offset: u64,
    pub log_start_offset: u64,
    /// Whole batches as stored, oldest first.
    pub batches: Vec<Bytes>,
    /// Under read_committed: the aborted transactions whose records meet `batches`, oldest
    /// first (the reader drops their records). Empty under read_uncommitted.
    pub aborted: Vec<AbortedTxn>,
}

impl FetchOutcome {
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(Bytes::len).sum()
    }
}

/// ListOffsets target: Kafka's special values, or a timestamp in milliseconds.
pub const LIST_OFFSETS_LATEST: i64 = -1;
pub const LIST_OFFSETS_EARLIEST: i64 = -2;
/// The first record with the largest timestamp (Kafka's KIP-734).
pub const LIST_OFFSETS_MAX_TIMESTAMP: i64 = -3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAnswer {
    /// `-1` when no record has a timestamp at or after the one asked for.
    pub offset: i64,
    /// Timestamp of the record found, `-1` for earliest/latest or when none was found.
    pub timestamp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionState {
    pub log_start_offset: u64,
    pub high_watermark: u64,
    /// The next offset the log hands out: records at and past the high watermark are on this
    /// replica but not committed yet.
    pub log_end: u64,
    /// `min(high watermark, first offset of the oldest open transaction)`.
    pub last_stable_offset: u64,
}

/// One partition of a follower's fetch from its leader (`Shard::replica_fetch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaFetchPartition {
    pub key: PartitionKey,
    /// The leader epoch the follower believes current: an older one is refused
    /// (`FencedLeaderEpoch`), a newer one too (`UnknownLeaderEpoch`).
    pub current_leader_epoch: i32,
    /// The follower's log end (durable there): it has everything below.
    pub fetch_offset: u64,
    /// The epoch of the follower's last batch (`replica::NO_EPOCH` when it has none): the leader
    /// checks that the follower's log agrees with its own up to `fetch_offset` (KIP-320).
    pub last_fetched_epoch: i32,
    pub max_bytes: u32,
}

/// The leader's answer for one partition of a follower's fetch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplicaFetchAnswer {
    pub error: Option<PartitionError>,
    pub high_watermark: u64,
    pub log_start_offset: u64,
    /// The leader's log end (written, durable or not), for the follower's lag.
    pub log_end: u64,
    /// `(epoch, end offset)`: the follower's log diverges from the leader's; it truncates
    /// (`replica::follower::truncation_for`) and fetches again. No batches then.
    pub diverging: Option<(i32, u64)>,
    /// Whole batches as the leader stored them, from the fetch offset, up to the leader's
    /// durable end (not its high watermark).
    pub batches: Vec<Bytes>,
}

/// An ISR change a partition's leader wants the metadata to apply (AlterPartition), valid only
/// at the epochs it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IsrChange {
    pub key: PartitionKey,
    pub leader_epoch: i32,
    pub partition_epoch: i32,
    pub new_isr: Vec<crate::replica::NodeId>,
}
