//! The transactional producer's state, as a pure state machine (no I/O, no clock): where the
//! producer is in its transaction's life, which partitions the coordinator has in the
//! transaction, and why the transaction can no longer commit.
//!
//! Life (Kafka's `TransactionManager`): `Uninitialized` until `init_transactions` got the
//! producer's identity; then `Ready`; `begin_transaction` opens a transaction (`InTransaction`);
//! `commit_transaction` and `abort_transaction` pass through `Committing` / `Aborting` back to
//! `Ready`. A partition takes part once the coordinator added it (AddPartitionsToTxn), which
//! happens before its first batch leaves; until then its batches wait. A failure that only
//! spoils the transaction (a batch refused, a partition the coordinator would not add, a
//! refused offset commit) makes it *abortable*: it can no longer commit, sends fail, and
//! `abort_transaction` is the way out. Fencing is fatal and lives in the accumulator's `fatal`,
//! beside this.
//!
//! The accumulator holds one `Transaction` under its lock; the requests are
//! `transaction_requests`'.

use std::collections::HashSet;
use std::sync::Arc;

use crate::error::Error;

/// Where a transactional producer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// `init_transactions` has not succeeded yet.
    Uninitialized,
    /// `init_transactions` is under way.
    Initializing,
    /// No transaction open.
    Ready,
    InTransaction,
    /// Flushing, then EndTxn(commit).
    Committing,
    /// Flushing, then EndTxn(abort).
    Aborting,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Uninitialized => "not initialized (call init_transactions)",
            Self::Initializing => "initializing",
            Self::Ready => "not in a transaction (call begin_transaction)",
            Self::InTransaction => "in a transaction",
            Self::Committing => "committing",
            Self::Aborting => "aborting",
        }
    }
}

/// Whether a partition's batches may leave now, under the transaction.
#[derive(Debug, Clone)]
pub(crate) enum Gate {
    /// The partition is in the transaction.
    Open,
    /// Its AddPartitionsToTxn is under way.
    Wait,
    /// It must be added first: the caller asks the coordinator (and calls
    /// [`Transaction::adding`]).
    Add,
    /// Its batches cannot be part of a transaction that will commit: fail the ones that never
    /// left with this.
    Fail(Error),
}

/// One transactional producer's transaction state. Owned by its accumulator (behind the
/// producer's lock), for the producer's life.
#[derive(Debug)]
pub(crate) struct Transaction {
    phase: Phase,
    /// Partitions the coordinator holds in the current transaction.
    added: HashSet<(Arc<str>, u32)>,
    /// Partitions whose AddPartitionsToTxn is under way.
    adding: HashSet<(Arc<str>, u32)>,
    /// Something was added to the transaction at the coordinator (a partition, or a group's
    /// offsets): ending it takes an EndTxn.
    started: bool,
    /// Why the current transaction can no longer commit (the first such failure).
    abortable: Option<Error>,
}

impl Default for Transaction {
    fn default() -> Self {
        Self {
            phase: Phase::Uninitialized,
            added: HashSet::new(),
            adding: HashSet::new(),
            started: false,
            abortable: None,
        }
    }
}

impl Transaction {
    #[cfg(test)]
    pub(crate) fn phase(&self) -> Phase {
        self.phase
    }

    fn refuse(&self, operation: &'static str) -> Error {
        Error::TransactionState {
            operation,
            state: self.phase.name(),
        }
    }

    /// `init_transactions` starts: only once, before anything else.
    pub(crate) fn begin_init(&mut self) -> Result<(), Error> {
        if self.phase != Phase::Uninitialized {
            return Err(self.refuse("init_transactions"));
        }
        self.phase = Phase::Initializing;
        Ok(())
    }

    /// `init_transactions` ended: with an identity (`Ready`), or not (it may be called again).
    pub(crate) fn end_init(&mut self, succeeded: bool) {
        assert_eq!(self.phase, Phase::Initializing, "init ends once per begin");
        self.phase = if succeeded {
            Phase::Ready
        } else {
            Phase::Uninitialized
        };
    }

    pub(crate) fn begin(&mut self) -> Result<(), Error> {
        if self.phase != Phase::Ready {
            return Err(self.refuse("begin_transaction"));
        }
        assert!(
            self.added.is_empty() && self.adding.is_empty() && !self.started,
            "a transaction ends with nothing added"
        );
        self.abortable = None;
        self.phase = Phase::InTransaction;
        Ok(())
    }

    /// Whether a record may be sent now: only in a transaction that can still commit.
    pub(crate) fn check_send(&self) -> Result<(), Error> {
        if self.phase != Phase::InTransaction {
            return Err(self.refuse("send"));
        }
        match &self.abortable {
            Some(cause) => Err(Error::TransactionAbortable {
                cause: Box::new(cause.clone()),
            }),
            None => Ok(()),
        }
    }

    /// Whether offsets may be added now (`send_offsets_to_transaction`): as a send.
    pub(crate) fn check_offsets(&self) -> Result<(), Error> {
        self.check_send().map_err(|error| match error {
            Error::TransactionState { state, .. } => Error::TransactionState {
                operation: "send_offsets_to_transaction",
                state,
            },
            other => other,
        })
    }

    /// May a partition's batches leave now? Once the transaction is being aborted or can no
    /// longer commit, no batch of it needs to reach the broker: waiting ones fail at once, so
    /// the abort's flush does not wait for them (nor for a restamp that a transactional
    /// producer only gets after the abort). A partition whose AddPartitionsToTxn is under way waits for its answer whatever the
    /// phase, so that no transaction ends while the coordinator may still add to it.
    pub(crate) fn gate(&self, topic: &Arc<str>, partition: u32) -> Gate {
        let key = (topic.clone(), partition);
        if self.adding.contains(&key) {
            return Gate::Wait;
        }
        if self.phase == Phase::Aborting || self.abortable.is_some() {
            return Gate::Fail(Error::TransactionAborted);
        }
        if self.added.contains(&key) {
            return Gate::Open;
        }
        match self.phase {
            Phase::InTransaction | Phase::Committing => Gate::Add,
            _ => Gate::Fail(self.refuse("send")),
        }
    }

    /// The partitions in a new AddPartitionsToTxn.
    pub(crate) fn adding(&mut self, partitions: &[(Arc<str>, u32)]) {
        for partition in partitions {
            let fresh = self.adding.insert(partition.clone());
            assert!(fresh, "a partition is added once at a time");
        }
    }

    /// The coordinator added them: their batches may leave.
    pub(crate) fn added(&mut self, partitions: &[(Arc<str>, u32)]) {
        for partition in partitions {
            self.adding.remove(partition);
            self.added.insert(partition.clone());
        }
        self.started = true;
    }

    /// The coordinator would not add them: the transaction cannot commit.
    pub(crate) fn not_added(&mut self, partitions: &[(Arc<str>, u32)], error: Error) {
        for partition in partitions {
            self.adding.remove(partition);
        }
        self.spoil(error);
    }

    /// A group's offsets were added (AddOffsetsToTxn).
    pub(crate) fn offsets_added(&mut self) {
        self.started = true;
    }

    /// Something the transaction holds failed (a batch, an offset commit): it cannot commit.
    pub(crate) fn spoil(&mut self, error: Error) {
        if matches!(
            self.phase,
            Phase::InTransaction | Phase::Committing | Phase::Aborting
        ) && self.abortable.is_none()
        {
            self.abortable = Some(error);
        }
    }

    pub(crate) fn begin_commit(&mut self) -> Result<(), Error> {
        self.check_send().map_err(|error| match error {
            Error::TransactionState { state, .. } => Error::TransactionState {
                operation: "commit_transaction",
                state,
            },
            other => other,
        })?;
        self.phase = Phase::Committing;
        Ok(())
    }

    /// After the commit's flush: why it cannot go on, if a batch failed meanwhile. The
    /// transaction then waits for `abort_transaction`.
    pub(crate) fn commit_blocked(&mut self) -> Option<Error> {
        assert_eq!(self.phase, Phase::Committing);
        let cause = self.abortable.clone()?;
        self.phase = Phase::InTransaction;
        Some(Error::TransactionAbortable {
            cause: Box::new(cause),
        })
    }

    /// EndTxn(commit) was refused for good: the transaction waits for `abort_transaction`.
    pub(crate) fn commit_failed(&mut self, error: Error) -> Error {
        assert_eq!(self.phase, Phase::Committing);
        self.phase = Phase::InTransaction;
        self.spoil(error.clone());
        Error::TransactionAbortable {
            cause: Box::new(error),
        }
    }

    pub(crate) fn begin_abort(&mut self) -> Result<(), Error> {
        if self.phase != Phase::InTransaction {
            return Err(self.refuse("abort_transaction"));
        }
        self.phase = Phase::Aborting;
        Ok(())
    }

    /// EndTxn(abort) failed (not for fencing): the transaction is still open and can no longer
    /// commit; `abort_transaction` may be called again.
    pub(crate) fn abort_failed(&mut self, error: Error) {
        assert_eq!(self.phase, Phase::Aborting);
        self.phase = Phase::InTransaction;
        self.spoil(error);
    }

    /// Whether ending the transaction takes an EndTxn (anything was added at the coordinator).
    pub(crate) fn is_started(&self) -> bool {
        self.started
    }

    /// The transaction ended (committed or aborted): nothing is in it any more.
    pub(crate) fn ended(&mut self) {
        assert!(
            matches!(self.phase, Phase::Committing | Phase::Aborting),
            "a transaction ends from committing or aborting"
        );
        assert!(
            self.adding.is_empty(),
            "no add is under way after the flush"
        );
        self.added.clear();
        self.started = false;
        self.abortable = None;
        self.phase = Phase::Ready;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(topic: &str, partition: u32) -> (Arc<str>, u32) {
        (Arc::from(topic), partition)
    }

    fn ready() -> Transaction {
        let mut transaction = Transaction::default();
        transaction.begin_init().unwrap();
        transaction.end_init(true);
        transaction
    }

    #[test]
    fn nothing_is_sent_before_init_transactions_and_begin_transaction() {
        let mut transaction = Transaction::default();
        assert!(matches!(
            transaction.check_send(),
            Err(Error::TransactionState {
                operation: "send",
                ..
            })
        ));
        assert!(transaction.begin().is_err(), "begin before init");
        transaction.begin_init().unwrap();
        assert!(transaction.begin_init().is_err(), "init once at a time");
        transaction.end_init(true);
        assert!(transaction.check_send().is_err(), "send before begin");
        transaction.begin().unwrap();
        assert!(transaction.check_send().is_ok());
        assert!(transaction.begin().is_err(), "one transaction at a time");
    }

    #[test]
    fn a_partition_is_added_once_before_its_batches_leave() {
        let mut transaction = ready();
        transaction.begin().unwrap();
        let orders = key("orders", 1);
        assert!(matches!(transaction.gate(&orders.0, 1), Gate::Add));
        assert!(!transaction.is_started());
        transaction.adding(std::slice::from_ref(&orders));
        assert!(matches!(transaction.gate(&orders.0, 1), Gate::Wait));
        transaction.added(std::slice::from_ref(&orders));
        assert!(matches!(transaction.gate(&orders.0, 1), Gate::Open));
        assert!(
            matches!(transaction.gate(&orders.0, 2), Gate::Add),
            "another partition"
        );
        assert!(transaction.is_started());

        transaction.begin_commit().unwrap();
        assert!(transaction.commit_blocked().is_none());
        transaction.ended();
        assert_eq!(transaction.phase(), Phase::Ready);
        assert!(!transaction.is_started());
        transaction.begin().unwrap();
        assert!(
            matches!(transaction.gate(&orders.0, 1), Gate::Add),
            "each transaction adds its partitions again"
        );
    }

    #[test]
    fn a_failed_batch_blocks_the_commit_until_the_transaction_is_aborted() {
        let mut transaction = ready();
        transaction.begin().unwrap();
        let orders = key("orders", 0);
        transaction.adding(std::slice::from_ref(&orders));
        transaction.added(std::slice::from_ref(&orders));
        transaction.begin_commit().unwrap();
        transaction.spoil(Error::Timeout {
            operation: "produce",
            elapsed: std::time::Duration::from_secs(1),
        });
        let blocked = transaction
            .commit_blocked()
            .expect("the commit cannot go on");
        assert!(matches!(blocked, Error::TransactionAbortable { .. }));
        assert!(matches!(
            transaction.check_send(),
            Err(Error::TransactionAbortable { .. })
        ));
        assert!(transaction.begin_commit().is_err(), "still cannot commit");
        assert!(
            matches!(
                transaction.gate(&Arc::from("other"), 0),
                Gate::Fail(Error::TransactionAborted)
            ),
            "a partition not yet added is not added to a spoiled transaction"
        );
        assert!(
            matches!(
                transaction.gate(&orders.0, 0),
                Gate::Fail(Error::TransactionAborted)
            ),
            "waiting batches of an added partition need not reach the broker either"
        );
        transaction.begin_abort().unwrap();
        assert!(
            transaction.is_started(),
            "the added partition takes an EndTxn"
        );
        transaction.ended();
        transaction.begin().unwrap();
        assert!(
            transaction.check_send().is_ok(),
            "the next transaction is clean"
        );
    }

    #[test]
    fn a_partition_the_coordinator_refused_spoils_the_transaction() {
        let mut transaction = ready();
        transaction.begin().unwrap();
        let orders = key("orders", 3);
        transaction.adding(std::slice::from_ref(&orders));
        transaction.not_added(
            std::slice::from_ref(&orders),
            Error::Invalid {
                what: "test",
                reason: "refused".into(),
            },
        );
        assert!(matches!(
            transaction.gate(&orders.0, 3),
            Gate::Fail(Error::TransactionAborted)
        ));
        assert!(transaction.begin_commit().is_err());
        transaction.begin_abort().unwrap();
        assert!(!transaction.is_started(), "nothing reached the coordinator");
        transaction.ended();
    }

    #[test]
    fn abort_is_refused_outside_a_transaction() {
        let mut transaction = ready();
        assert!(transaction.begin_abort().is_err());
        transaction.begin().unwrap();
        transaction.begin_abort().unwrap();
        assert!(matches!(
            transaction.gate(&Arc::from("t"), 0),
            Gate::Fail(Error::TransactionAborted)
        ));
        assert!(transaction.check_send().is_err(), "no sends while aborting");
    }
}
