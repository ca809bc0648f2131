//! One transactional id's state as a pure state machine: Kafka's transaction states, producer
//! id and epoch, fencing, the KIP-360 epoch bump with an existing identity, timeouts. Time is
//! passed in (wall-clock milliseconds, so that a timeout survives a restart: the start time is
//! in the stored state); nothing here does I/O.
//!
//! Every change goes through two steps, as in Kafka: a `prepare_*` call checks the request
//! against the current state and returns the next state (a [`TxnRecord`]) while marking it
//! pending, the coordinator writes that record durably to the state topic, and then
//! [`Txn::complete_transition`] makes it current (or [`Txn::abandon_transition`] drops it when
//! the write failed). While a transition is pending, requests that would change the state are
//! answered CONCURRENT_TRANSACTIONS, so at most one record per transactional id is in flight and
//! the log holds them in the order they were decided.
//!
//! States (Kafka's): `Empty` (no transaction open) → `Ongoing` (partitions or groups added) →
//! `PrepareCommit`/`PrepareAbort` (the outcome is decided and durable; markers are being
//! written) → `CompleteCommit`/`CompleteAbort` (every marker written) → `Ongoing` again with
//! the next AddPartitionsToTxn. `PrepareEpochFence` is the pending state of a fence (an
//! InitProducerId or a timeout found a transaction open: its epoch is bumped and it is aborted,
//! written as `PrepareAbort`); `Dead` is the pending state of an id being forgotten after
//! `transactional.id.expiration.ms` (written as a tombstone).

use std::collections::BTreeSet;

/// A topic partition named as clients name it.
pub type TopicPartition = (String, u32);

/// No producer id / epoch, as on the wire.
pub const NO_PRODUCER_ID: i64 = -1;
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// Kafka's transaction states. The numbers are this crate's record layout (see `records`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
    CompleteCommit,
    CompleteAbort,
    PrepareEpochFence,
    Dead,
}

impl TxnState {
    /// Kafka's name (DescribeTransactions, ListTransactions' filter).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
            TxnState::Dead => "Dead",
        }
    }

    /// The state Kafka names `name`, ignoring case (ListTransactions' filter is matched as
    /// Kafka's `TransactionState.fromName`).
    pub fn from_name(name: &str) -> Option<TxnState> {
        ALL_STATES
            .into_iter()
            .find(|state| state.name().eq_ignore_ascii_case(name))
    }

    /// The outcome is decided and its markers are being written.
    pub fn is_prepared(self) -> bool {
        matches!(self, TxnState::PrepareCommit | TxnState::PrepareAbort)
    }

    /// No transaction is open: the id may start one.
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        )
    }
}

pub const ALL_STATES: [TxnState; 8] = [
    TxnState::Empty,
    TxnState::Ongoing,
    TxnState::PrepareCommit,
    TxnState::PrepareAbort,
    TxnState::CompleteCommit,
    TxnState::CompleteAbort,
    TxnState::PrepareEpochFence,
    TxnState::Dead,
];

/// Why a transaction request was refused. Each maps onto one Kafka error code (named after it);
/// the native protocol maps them onto its own codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxnError {
    /// INVALID_REQUEST (42): an empty transactional id, a transaction too large.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// INVALID_PRODUCER_EPOCH (47): the epoch is not the current one (old request versions see
    /// this for `ProducerFenced`; the Kafka layer maps by version).
    #[error("invalid producer epoch")]
    InvalidProducerEpoch,
    /// INVALID_TXN_STATE (48): the request does not fit the transaction's state (commit of an
    /// aborting transaction, EndTxn with no transaction open).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// INVALID_PRODUCER_ID_MAPPING (49): the transactional id is unknown or has another
    /// producer id.
    #[error("the producer id is not the transactional id's")]
    InvalidProducerIdMapping,
    /// INVALID_TRANSACTION_TIMEOUT (50).
    #[error("transaction timeout {timeout_ms} ms is outside 1..={max_ms}")]
    InvalidTransactionTimeout { timeout_ms: i32, max_ms: i32 },
    /// CONCURRENT_TRANSACTIONS (51): the transaction is completing, or a change to it is being
    /// written; retriable.
    #[error("a change to the transaction is in progress")]
    ConcurrentTransactions,
    /// PRODUCER_FENCED (90): a newer producer with the same transactional id (or a timeout)
    /// fenced this epoch.
    #[error("the producer was fenced by a newer epoch")]
    ProducerFenced,
    /// TRANSACTION_ABORTABLE (120, KIP-890): the partition was not added to the transaction.
    #[error("the partition is not part of the transaction")]
    TransactionAbortable,
    /// UNKNOWN_TOPIC_OR_PARTITION (3).
    #[error("unknown topic or partition")]
    UnknownTopicOrPartition,
    /// OPERATION_NOT_ATTEMPTED (55): another partition of the same request failed.
    #[error("not attempted: another partition of the request failed")]
    OperationNotAttempted,
    /// COORDINATOR_LOAD_IN_PROGRESS (14): the state partition is being replayed.
    #[error("the transaction coordinator is loading")]
    CoordinatorLoadInProgress,
    /// NOT_COORDINATOR (16): asked on the wrong shard (a stale route).
    #[error("not the coordinator of this transactional id")]
    NotCoordinator,
    /// COORDINATOR_NOT_AVAILABLE (15): the state topic cannot be read or written now, or the
    /// shard holds its maximum of transactional ids.
    #[error("the transaction coordinator is not available: {0}")]
    CoordinatorNotAvailable(String),
    /// TRANSACTIONAL_ID_NOT_FOUND (105): DescribeTransactions of an unknown id.
    #[error("transactional id not found")]
    TransactionalIdNotFound,
    /// A producer id could not be allocated (the allocator's reason).
    #[error("producer id allocation failed: {0}")]
    ProducerIdAllocation(String),
    /// The allocator is recovering its lost reservation; retriable.
    #[error("producer ids are being recovered")]
    ProducerIdsRecovering,
    /// In a cluster, this broker waits for the controller to grant it a block of producer ids;
    /// retriable (the block comes within moments, or from the next controller).
    #[error("waiting for the cluster controller to grant a block of producer ids")]
    ProducerIdsAwaitingBlock,
    /// The broker is stopping.
    #[error("the broker is shutting down")]
    ShuttingDown,
}

/// One transactional id's state as written to the state topic: the record value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub producer_id: i64,
    /// The producer id before the last rotation (Kafka's `lastProducerId`), so that a retry of
    /// the InitProducerId that rotated it is recognised; -1 when none.
    pub previous_producer_id: i64,
    /// -1 until the first InitProducerId completes.
    pub producer_epoch: i16,
    /// The epoch before the last bump asked for with the producer's own identity (KIP-360), so
    /// that a retry of that bump gets the same answer; -1 after a bump that fenced.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TxnState,
    pub partitions: BTreeSet<TopicPartition>,
    /// Groups whose transactional offset commits belong to the transaction (AddOffsetsToTxn).
    pub groups: BTreeSet<String>,
    /// Wall-clock start of the open transaction (its first add); -1 when none.
    pub start_timestamp_ms: i64,
    pub update_timestamp_ms: i64,
}

impl TxnRecord {
    /// Kafka's `isEpochExhausted`: one epoch is kept back so that a fence can always bump.
    pub fn epoch_exhausted(epoch: i16) -> bool {
        epoch >= i16::MAX - 1
    }

    fn with_state(&self, state: TxnState, now_ms: i64) -> TxnRecord {
        TxnRecord {
            state,
            update_timestamp_ms: now_ms,
            ..self.clone()
        }
    }
}

/// What InitProducerId decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitStep {
    /// Write this (state `Empty`, the new identity), then answer its producer id and epoch.
    Write(TxnRecord),
    /// A transaction was open: its epoch is bumped and it is aborted (write this `PrepareAbort`
    /// record, then its markers), and the producer is answered CONCURRENT_TRANSACTIONS so that
    /// it retries once the abort completes.
    Fence(TxnRecord),
}

/// What EndTxn decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndStep {
    /// Write this `Prepare*` record, then the markers, then the `Complete*` record.
    Write(TxnRecord),
    /// A retry of an EndTxn that already completed with the same outcome: answer success.
    AlreadyComplete,
}

/// One transactional id as its coordinator holds it: the current (durable) state, and the next
/// one while it is being written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Txn {
    pub transactional_id: String,
    pub current: TxnRecord,
    pub pending: Option<TxnState>,
    pending_record: Option<TxnRecord>,
}

/// What an InitProducerId needs that is not in the state: a fresh producer id, when one must
/// be allocated (the coordinator's allocator does I/O, so it is asked before the step).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InitRequest {
    pub timeout_ms: i32,
    /// KIP-360: the identity the producer has, when it asks for a bump of its own epoch.
    pub expected: Option<(i64, i16)>,
    pub now_ms: i64,
}

impl Txn {
    /// A new transactional id, not yet written: epoch -1 and state `Empty`, as Kafka creates it;
    /// the first InitProducerId bumps the epoch to 0.
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now_ms: i64) -> Txn {
        Txn::restore(
            transactional_id,
            TxnRecord {
                producer_id,
                previous_producer_id: NO_PRODUCER_ID,
                producer_epoch: NO_PRODUCER_EPOCH,
                last_producer_epoch: NO_PRODUCER_EPOCH,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                start_timestamp_ms: -1,
                update_timestamp_ms: now_ms,
            },
        )
    }

    /// The id as its last durable record says.
    pub fn restore(transactional_id: &str, record: TxnRecord) -> Txn {
        Txn {
            transactional_id: transactional_id.to_string(),
            current: record,
            pending: None,
            pending_record: None,
        }
    }

    fn begin(&mut self, pending: TxnState, next: TxnRecord) -> TxnRecord {
        assert!(self.pending.is_none(), "one transition at a time");
        self.pending = Some(pending);
        self.pending_record = Some(next.clone());
        next
    }

    /// The pending record is durable: it becomes the current state.
    pub fn complete_transition(&mut self) {
        let next = self
            .pending_record
            .take()
            .expect("a transition is pending when its write completes");
        self.pending = None;
        self.current = next;
    }

    /// The pending record's write failed: the state stays as it was.
    pub fn abandon_transition(&mut self) {
        assert!(self.pending.is_some(), "a transition is pending");
        self.pending = None;
        self.pending_record = None;
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    fn check_not_pending(&self) -> Result<(), TxnError> {
        if self.pending.is_some() {
            Err(TxnError::ConcurrentTransactions)
        } else {
            Ok(())
        }
    }

    /// Whether InitProducerId needs a fresh producer id: the epoch is exhausted and the
    /// producer is not a fenced one (Kafka's rotation rule).
    pub fn init_needs_new_producer_id(&self, expected: Option<(i64, i16)>) -> bool {
        self.current.state.is_idle()
            && TxnRecord::epoch_exhausted(self.current.producer_epoch)
            && expected.is_none_or(|(_, epoch)| epoch == self.current.producer_epoch)
    }

    /// InitProducerId (Kafka's `handleInitProducerId` for an existing id). `new_producer_id`:
    /// a freshly allocated id when [`Txn::init_needs_new_producer_id`] said so, else ignored.
    pub fn prepare_init(
        &mut self,
        request: InitRequest,
        new_producer_id: Option<i64>,
    ) -> Result<InitStep, TxnError> {
        self.check_not_pending()?;
        let current = &self.current;
        if let Some((producer_id, epoch)) = request.expected {
            // KIP-360: fenced unless the metadata is new, the id is the current one (the epoch
            // is checked by the bump), or it is the previous id with an exhausted epoch (a retry
            // of the rotation whose answer was lost).
            let valid = current.producer_epoch == NO_PRODUCER_EPOCH
                || producer_id == current.producer_id
                || (producer_id == current.previous_producer_id
                    && TxnRecord::epoch_exhausted(epoch));
            if !valid {
                return Err(TxnError::ProducerFenced);
            }
        }
        match current.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(TxnError::ConcurrentTransactions)
            }
            TxnState::Ongoing => {
                // Fence: bump the epoch (an exhausted one too: the retry then rotates the id),
                // abort what is open, answer
                // CONCURRENT_TRANSACTIONS so that the producer retries after the abort.
                let mut next = current.with_state(TxnState::PrepareAbort, request.now_ms);
                next.producer_epoch = fenced_epoch(current.producer_epoch);
                next.last_producer_epoch = NO_PRODUCER_EPOCH;
                Ok(InitStep::Fence(
                    self.begin(TxnState::PrepareEpochFence, next),
                ))
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let next = if self.init_needs_new_producer_id(request.expected) {
                    let producer_id = new_producer_id
                        .expect("the coordinator allocates an id when the epoch is exhausted");
                    TxnRecord {
                        producer_id,
                        previous_producer_id: current.producer_id,
                        producer_epoch: 0,
                        last_producer_epoch: if request.expected.is_some() {
                            current.producer_epoch
                        } else {
                            NO_PRODUCER_EPOCH
                        },
                        ..self.idle_record(TxnState::Empty, request)
                    }
                } else {
                    let (epoch, last_epoch) = self.bumped_epochs(request.expected)?;
                    TxnRecord {
                        producer_epoch: epoch,
                        last_producer_epoch: last_epoch,
                        ..self.idle_record(TxnState::Empty, request)
                    }
                };
                Ok(InitStep::Write(self.begin(TxnState::Empty, next)))
            }
            TxnState::PrepareEpochFence | TxnState::Dead => {
                unreachable!("{:?} is only ever pending, never current", current.state)
            }
        }
    }

    /// Kafka's `prepareIncrementProducerEpoch`: (next epoch, last epoch).
    fn bumped_epochs(&self, expected: Option<(i64, i16)>) -> Result<(i16, i16), TxnError> {
        let current = &self.current;
        let bumped = current.producer_epoch + 1;
        match expected {
            None => Ok((bumped, NO_PRODUCER_EPOCH)),
            Some((_, epoch))
                if current.producer_epoch == NO_PRODUCER_EPOCH
                    || epoch == current.producer_epoch =>
            {
                Ok((bumped, current.producer_epoch))
            }
            // A retry of a bump whose answer was lost: the same answer again. No newer producer
            // initialized since, or the last epoch would be -1.
            Some((_, epoch)) if epoch == current.last_producer_epoch => {
                Ok((current.producer_epoch, current.last_producer_epoch))
            }
            Some(_) => Err(TxnError::ProducerFenced),
        }
    }

    fn idle_record(&self, state: TxnState, request: InitRequest) -> TxnRecord {
        TxnRecord {
            timeout_ms: request.timeout_ms,
            state,
            partitions: BTreeSet::new(),
            groups: BTreeSet::new(),
            start_timestamp_ms: -1,
            update_timestamp_ms: request.now_ms,
            ..self.current.clone()
        }
    }

    /// The identity checks every client request after InitProducerId starts with.
    fn check_identity(&self, producer_id: i64, producer_epoch: i16) -> Result<(), TxnError> {
        if producer_id != self.current.producer_id {
            return Err(TxnError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.current.producer_epoch {
            return Err(TxnError::ProducerFenced);
        }
        Ok(())
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn. `Ok(None)`: everything is in the transaction
    /// already, nothing to write.
    pub fn prepare_add(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
        groups: &[String],
        limits: &crate::TxnLimits,
        now_ms: i64,
    ) -> Result<Option<TxnRecord>, TxnError> {
        self.check_identity(producer_id, producer_epoch)?;
        self.check_not_pending()?;
        let current = &self.current;
        if current.state.is_prepared() {
            return Err(TxnError::ConcurrentTransactions);
        }
        let known = partitions.iter().all(|p| current.partitions.contains(p))
            && groups.iter().all(|g| current.groups.contains(g));
        if current.state == TxnState::Ongoing && known {
            return Ok(None);
        }
        let mut next = current.with_state(TxnState::Ongoing, now_ms);
        if current.state != TxnState::Ongoing {
            next.partitions.clear();
            next.groups.clear();
            next.start_timestamp_ms = now_ms;
        }
        next.partitions.extend(partitions.iter().cloned());
        next.groups.extend(groups.iter().cloned());
        if next.partitions.len() > limits.partitions_per_transaction_max
            || next.groups.len() > limits.groups_per_transaction_max
        {
            return Err(TxnError::InvalidRequest(format!(
                "a transaction holds at most {} partitions and {} groups",
                limits.partitions_per_transaction_max, limits.groups_per_transaction_max
            )));
        }
        Ok(Some(self.begin(TxnState::Ongoing, next)))
    }

    /// KIP-890's check before a partition appends a transactional batch of a producer with no
    /// transaction open there: is each partition in this transaction at this epoch? Changes
    /// nothing (a pending change is not checked: the partition's own append is the final check).
    pub fn verify(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TopicPartition],
    ) -> Result<Vec<Result<(), TxnError>>, TxnError> {
        self.check_identity(producer_id, producer_epoch)?;
        if self.current.state.is_prepared() {
            return Err(TxnError::ConcurrentTransactions);
        }
        let open = self.current.state == TxnState::Ongoing;
        Ok(partitions
            .iter()
            .map(|partition| {
                if open && self.current.partitions.contains(partition) {
                    Ok(())
                } else {
                    Err(TxnError::TransactionAbortable)
                }
            })
            .collect())
    }

    /// KIP-890's check before a group's transactional offsets are written (TxnOffsetCommit):
    /// is the group in this transaction (AddOffsetsToTxn) at this epoch? Changes nothing.
    pub fn verify_group(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        group_id: &str,
    ) -> Result<(), TxnError> {
        self.check_identity(producer_id, producer_epoch)?;
        if self.current.state.is_prepared() {
            return Err(TxnError::ConcurrentTransactions);
        }
        if self.current.state == TxnState::Ongoing && self.current.groups.contains(group_id) {
            Ok(())
        } else {
            Err(TxnError::TransactionAbortable)
        }
    }

    /// EndTxn from the producer (Kafka's `endTransaction` with `isFromClient`).
    pub fn prepare_end(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now_ms: i64,
    ) -> Result<EndStep, TxnError> {
        self.check_identity(producer_id, producer_epoch)?;
        self.check_not_pending()?;
        let wrong = |what: &str| {
            Err(TxnError::InvalidTxnState(format!(
                "{} asked while the transaction is {what}",
                if commit { "commit" } else { "abort" }
            )))
        };
        match (self.current.state, commit) {
            (TxnState::Ongoing, _) => {
                let state = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                let next = self.current.with_state(state, now_ms);
                Ok(EndStep::Write(self.begin(state, next)))
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => {
                Ok(EndStep::AlreadyComplete)
            }
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(TxnError::ConcurrentTransactions)
            }
            (state, _) => wrong(state.name()),
        }
    }

    /// Every marker of the decided transaction is written: `Complete*`, nothing open.
    pub fn prepare_complete(&mut self, now_ms: i64) -> TxnRecord {
        let state = match self.current.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            state => panic!("only a prepared transaction completes, not {state:?}"),
        };
        let mut next = self.current.with_state(state, now_ms);
        next.partitions.clear();
        next.groups.clear();
        self.begin(state, next)
    }

    /// An open transaction past its timeout, not being changed.
    pub fn timed_out(&self, now_ms: i64) -> bool {
        self.pending.is_none()
            && self.current.state == TxnState::Ongoing
            && self.current.start_timestamp_ms + i64::from(self.current.timeout_ms) <= now_ms
    }

    /// The timeout's abort (Kafka's `abortTimedOutTransactions`): the epoch is bumped so the
    /// producer, if alive, is fenced and cannot add to the aborted transaction.
    pub fn prepare_timeout_abort(&mut self, now_ms: i64) -> TxnRecord {
        assert!(
            self.timed_out(now_ms),
            "only a timed-out transaction is aborted"
        );
        let mut next = self.current.with_state(TxnState::PrepareAbort, now_ms);
        next.producer_epoch = fenced_epoch(self.current.producer_epoch);
        next.last_producer_epoch = NO_PRODUCER_EPOCH;
        self.begin(TxnState::PrepareEpochFence, next)
    }

    /// Idle past `expiration_ms`: the id may be forgotten.
    pub fn expired(&self, now_ms: i64, expiration_ms: i64) -> bool {
        self.pending.is_none()
            && self.current.state.is_idle()
            && self
                .current
                .update_timestamp_ms
                .saturating_add(expiration_ms)
                <= now_ms
    }

    /// Forgetting an expired id: its tombstone is pending.
    pub fn prepare_expire(&mut self, now_ms: i64) {
        let next = self.current.with_state(TxnState::Dead, now_ms);
        self.begin(TxnState::Dead, next);
    }
}

/// The epoch a fence moves to: one up, so that the fenced producer's epoch is below every
/// marker of the abort (Kafka's `prepareFenceProducerEpoch`; epochs stop at `i16::MAX`, which
/// [`TxnRecord::epoch_exhausted`] makes the next InitProducerId replace with a new id).
fn fenced_epoch(epoch: i16) -> i16 {
    epoch.saturating_add(1)
}

/// The marker a decided transaction writes to each of its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarkerSpec {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub commit: bool,
}

impl TxnRecord {
    /// The marker of a prepared transaction.
    pub fn marker(&self) -> MarkerSpec {
        assert!(
            self.state.is_prepared(),
            "markers come from a decided transaction"
        );
        MarkerSpec {
            producer_id: self.producer_id,
            producer_epoch: self.producer_epoch,
            commit: self.state == TxnState::PrepareCommit,
        }
    }
}
