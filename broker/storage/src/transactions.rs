//! Per-partition state of transactions: which producers have a transaction open here (and its
//! first offset, which bounds the last stable offset), the transactions a marker ended whose
//! marker is not durable yet, the aborted transactions (Kafka's `AbortedTxn` entries), and the
//! KIP-890 verification guards that let a producer start a transaction here.
//!
//! Pure: no I/O, no clock. The log (`log`) checks each batch and marker here in the same
//! borrow that assigns its offset, records it, and rolls this state back with its write path
//! (`truncate_from`) when a disk error takes back bytes that were not durable. Owned by the
//! shard that owns the partition and dies with its `PartitionLog`.
//!
//! Not here: the marker's bytes (`spate_protocol::batch::kafka::control`), the producers'
//! epochs and sequences (`producer_state`), the files (`producer_snapshot`, `txn_index`).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// How a transaction ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TxnResult {
    Commit,
    Abort,
}

/// A transaction marker for one partition, as the transaction coordinator sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnMarker {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub coordinator_epoch: i32,
    pub result: TxnResult,
}

/// An aborted transaction as a read_committed fetch reports it (FetchResponse's
/// `AbortedTransaction`): records of `producer_id` from `first_offset` up to the producer's
/// next abort marker are to be dropped by the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxn {
    pub producer_id: i64,
    pub first_offset: u64,
}

/// One aborted transaction as the aborted-transaction index keeps it (Kafka's
/// `TransactionIndex` entry): its data spans `[first_offset, last_offset)`, `last_offset`
/// being the abort marker's offset; `last_stable_offset` is the partition's last stable offset
/// once the marker was appended (a reader that collected entries up to it needs no older
/// segment's index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTxnEntry {
    pub producer_id: i64,
    pub first_offset: u64,
    pub last_offset: u64,
    pub last_stable_offset: u64,
}

/// Permission to start a transaction of one producer in this partition (KIP-890 part 1),
/// issued by [`TransactionState::begin_verification`] once the coordinator is to be asked
/// whether the producer's transaction includes the partition. Valid until a marker for the
/// producer is appended (a marker that came in between means the transaction the coordinator
/// vouched for may be over: its late batch must not open a transaction that hangs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VerificationGuard(u64);

/// Why a batch or marker is refused by the transaction rules. The log adds the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnRefusal {
    /// Kafka's INVALID_TXN_STATE: a non-transactional batch from a producer with a transaction
    /// open here, or a transactional batch that may not open one (not verified, verified
    /// before a marker, or without a producer id).
    InvalidTxnState {
        producer_id: i64,
        reason: &'static str,
    },
    /// A marker from an older coordinator epoch than one already seen for the producer.
    CoordinatorFenced {
        producer_id: i64,
        current_coordinator_epoch: i32,
        received_coordinator_epoch: i32,
    },
}

/// A transaction ended by a marker not yet durable: a rollback of the marker reopens it, and
/// until the marker is durable it still bounds the last stable offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Ending {
    producer_id: i64,
    /// The transaction's first offset; `None` for a marker that ended nothing here.
    first_offset: Option<u64>,
    marker_offset: u64,
    /// The producer's coordinator epoch before the marker.
    coordinator_epoch_before: Option<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Verification {
    guard: u64,
    producer_epoch: i16,
}

/// The transactions of one partition. Ongoing transactions cannot be forgotten (their first
/// offset bounds what read_committed consumers see), so they are not bounded here; the
/// verification guards and coordinator epochs are, by `producers_max`.
#[derive(Debug, Clone)]
pub struct TransactionState {
    /// Producer id → first offset of its open transaction.
    ongoing: HashMap<i64, u64>,
    /// The same, by first offset: the oldest bounds the last stable offset.
    ongoing_by_offset: BTreeSet<(u64, i64)>,
    /// Ended by markers not yet known durable, in marker offset order.
    ending: VecDeque<Ending>,
    /// Aborted transactions not yet written to their segment's index file (`txn_index`), by
    /// abort marker offset: those of markers after the last producer snapshot (written with
    /// them) or replayed at open. Bounded by the markers of one snapshot interval.
    aborted: BTreeMap<u64, AbortedTxnEntry>,
    coordinator_epochs: HashMap<i64, i32>,
    verifications: HashMap<i64, Verification>,
    guards_issued: u64,
    producers_max: usize,
}

impl TransactionState {
    pub fn new(producers_max: usize) -> Self {
        assert!(producers_max > 0, "a partition holds at least one producer");
        Self {
            ongoing: HashMap::new(),
            ongoing_by_offset: BTreeSet::new(),
            ending: VecDeque::new(),
            aborted: BTreeMap::new(),
            coordinator_epochs: HashMap::new(),
            verifications: HashMap::new(),
            guards_issued: 0,
            producers_max,
        }
    }

    pub fn set_limits(&mut self, producers_max: usize) {
        assert!(producers_max > 0, "a partition holds at least one producer");
        self.producers_max = producers_max;
    }

    /// The first offset of `producer_id`'s open transaction here, if any.
    pub fn ongoing_first_offset(&self, producer_id: i64) -> Option<u64> {
        self.ongoing.get(&producer_id).copied()
    }

    /// Every open transaction: (producer id, first offset), oldest first.
    pub fn ongoing(&self) -> impl Iterator<Item = (i64, u64)> + '_ {
        self.ongoing_by_offset
            .iter()
            .map(|(first_offset, producer_id)| (*producer_id, *first_offset))
    }

    /// The last stable offset for a log whose durable end is `high_watermark`: no offset at or
    /// past the first offset of a transaction that is open, or whose marker is not durable.
    pub fn last_stable_offset(&self, high_watermark: u64) -> u64 {
        let oldest_ongoing = self.ongoing_by_offset.first().map(|(offset, _)| *offset);
        let oldest_ending = self
            .ending
            .iter()
            .filter(|ending| ending.marker_offset >= high_watermark)
            .filter_map(|ending| ending.first_offset)
            .min();
        [Some(high_watermark), oldest_ongoing, oldest_ending]
            .into_iter()
            .flatten()
            .min()
            .expect("the high watermark is always there")
    }

    /// Issues (or returns the one already issued) the guard that lets `producer_id` open a
    /// transaction here; `None` when it has one open already.
    pub fn begin_verification(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
    ) -> Option<VerificationGuard> {
        if self.ongoing.contains_key(&producer_id) {
            return None;
        }
        if let Some(existing) = self.verifications.get_mut(&producer_id) {
            existing.producer_epoch = existing.producer_epoch.max(producer_epoch);
            return Some(VerificationGuard(existing.guard));
        }
        if self.verifications.len() >= self.producers_max {
            // The oldest guard goes: its producer's append is refused and retried.
            let oldest = self
                .verifications
                .iter()
                .min_by_key(|(_, verification)| verification.guard)
                .map(|(id, _)| *id)
                .expect("a full map is not empty");
            self.verifications.remove(&oldest);
        }
        let guard = self.guards_issued;
        self.guards_issued += 1;
        self.verifications.insert(
            producer_id,
            Verification {
                guard,
                producer_epoch,
            },
        );
        Some(VerificationGuard(guard))
    }

    /// Checks a data batch (not a retried duplicate) of `producer_id` (`NO_PRODUCER_ID` for a
    /// producer that is not idempotent) at `producer_epoch`. Changes nothing.
    pub fn check_batch(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        transactional: bool,
        guard: Option<VerificationGuard>,
    ) -> Result<(), TxnRefusal> {
        let refuse = |reason| {
            Err(TxnRefusal::InvalidTxnState {
                producer_id,
                reason,
            })
        };
        if producer_id < 0 {
            return match transactional {
                true => refuse("a transactional batch without a producer id"),
                false => Ok(()),
            };
        }
        match (self.ongoing.contains_key(&producer_id), transactional) {
            (true, true) | (false, false) => Ok(()),
            (true, false) => refuse(
                "a non-transactional batch from a producer with a transaction open in the partition",
            ),
            (false, true) => {
                let verified = self.verifications.get(&producer_id);
                match (verified, guard) {
                    (Some(verified), Some(VerificationGuard(guard)))
                        if verified.guard == guard && producer_epoch >= verified.producer_epoch =>
                    {
                        Ok(())
                    }
                    (None, Some(_)) | (Some(_), Some(_)) => refuse(
                        "the transaction was not verified since the producer's last marker here",
                    ),
                    (_, None) => {
                        refuse("a transactional batch that opens a transaction needs verification")
                    }
                }
            }
        }
    }

    /// Records a data batch appended at `base_offset`: a transactional one opens its producer's
    /// transaction here if none is open (using up its verification).
    pub fn record_batch(&mut self, producer_id: i64, transactional: bool, base_offset: u64) {
        if !transactional || producer_id < 0 || self.ongoing.contains_key(&producer_id) {
            return;
        }
        self.verifications.remove(&producer_id);
        self.open(producer_id, base_offset);
    }

    fn open(&mut self, producer_id: i64, first_offset: u64) {
        let previous = self.ongoing.insert(producer_id, first_offset);
        assert!(previous.is_none(), "one open transaction per producer");
        self.ongoing_by_offset.insert((first_offset, producer_id));
    }

    fn close(&mut self, producer_id: i64) -> Option<u64> {
        let first_offset = self.ongoing.remove(&producer_id)?;
        let removed = self.ongoing_by_offset.remove(&(first_offset, producer_id));
        assert!(removed, "both maps name every open transaction");
        Some(first_offset)
    }

    /// Checks a marker's coordinator epoch against the last one seen for its producer.
    pub fn check_marker(&self, marker: &TxnMarker) -> Result<(), TxnRefusal> {
        match self.coordinator_epochs.get(&marker.producer_id) {
            Some(&current) if marker.coordinator_epoch < current => {
                Err(TxnRefusal::CoordinatorFenced {
                    producer_id: marker.producer_id,
                    current_coordinator_epoch: current,
                    received_coordinator_epoch: marker.coordinator_epoch,
                })
            }
            _ => Ok(()),
        }
    }

    /// Records a marker appended at `marker_offset` with the log durable up to
    /// `durable_next_offset`: ends the producer's open transaction, and an abort of one that
    /// had data here becomes an aborted entry, which is returned.
    pub fn record_marker(
        &mut self,
        marker: &TxnMarker,
        marker_offset: u64,
        durable_next_offset: u64,
    ) -> Option<AbortedTxnEntry> {
        self.settle(durable_next_offset);
        let producer_id = marker.producer_id;
        self.verifications.remove(&producer_id);
        let first_offset = self.close(producer_id);
        let coordinator_epoch_before = self.set_coordinator_epoch(marker);
        self.ending.push_back(Ending {
            producer_id,
            first_offset,
            marker_offset,
            coordinator_epoch_before,
        });
        let first_offset = first_offset?;
        if marker.result == TxnResult::Commit {
            return None;
        }
        let entry = AbortedTxnEntry {
            producer_id,
            first_offset,
            last_offset: marker_offset,
            // What the last stable offset will be once the marker is durable.
            last_stable_offset: self.last_stable_offset(marker_offset + 1),
        };
        self.aborted.insert(marker_offset, entry);
        Some(entry)
    }

    /// Replay (recovery): a marker found in the log, trusted as it is.
    pub fn replay_marker(&mut self, marker: &TxnMarker, marker_offset: u64) {
        self.record_marker(marker, marker_offset, marker_offset);
        self.settle(marker_offset + 1);
    }

    fn set_coordinator_epoch(&mut self, marker: &TxnMarker) -> Option<i32> {
        let producer_id = marker.producer_id;
        if !self.coordinator_epochs.contains_key(&producer_id)
            && self.coordinator_epochs.len() >= self.producers_max
        {
            // A producer without a transaction open here goes (the smallest id, deterministic).
            let victim = self
                .coordinator_epochs
                .keys()
                .filter(|id| !self.ongoing.contains_key(id))
                .min()
                .copied();
            if let Some(victim) = victim {
                self.coordinator_epochs.remove(&victim);
            }
        }
        self.coordinator_epochs
            .insert(producer_id, marker.coordinator_epoch)
    }

    /// Forgets markers that are durable (`durable_next_offset` passed them): no rollback can
    /// reopen their transactions any more.
    pub fn settle(&mut self, durable_next_offset: u64) {
        while self
            .ending
            .front()
            .is_some_and(|ending| ending.marker_offset < durable_next_offset)
        {
            self.ending.pop_front();
        }
    }

    /// Rolls back everything at or after `offset` (the write path took those bytes back):
    /// transactions opened there are forgotten, those ended there are open again.
    pub fn truncate_from(&mut self, offset: u64) {
        while self
            .ending
            .back()
            .is_some_and(|ending| ending.marker_offset >= offset)
        {
            let ending = self.ending.pop_back().expect("checked");
            self.aborted.remove(&ending.marker_offset);
            match ending.coordinator_epoch_before {
                Some(epoch) => self.coordinator_epochs.insert(ending.producer_id, epoch),
                None => self.coordinator_epochs.remove(&ending.producer_id),
            };
            if let Some(first_offset) = ending.first_offset.filter(|first| *first < offset) {
                self.open(ending.producer_id, first_offset);
            }
        }
        let opened_after: Vec<(u64, i64)> = self
            .ongoing_by_offset
            .range((offset, i64::MIN)..)
            .copied()
            .collect();
        for (_, producer_id) in opened_after {
            self.close(producer_id);
        }
    }

    /// Aborted transactions whose data range meets `[from_offset, upper_offset)`, oldest
    /// (by marker) first, at most `limit`.
    pub fn aborted_between(
        &self,
        from_offset: u64,
        upper_offset: u64,
        limit: usize,
    ) -> Vec<AbortedTxnEntry> {
        self.aborted
            .range(from_offset..)
            .map(|(_, entry)| *entry)
            .filter(|entry| entry.first_offset < upper_offset)
            .take(limit)
            .collect()
    }

    /// Forgets aborted transactions whose marker is before `log_start_offset`.
    pub fn drop_before(&mut self, log_start_offset: u64) {
        self.aborted = self.aborted.split_off(&log_start_offset);
    }

    /// The aborted entries not yet in index files whose marker is before `offset`, in marker
    /// order: what must be written before a producer snapshot at `offset`.
    pub fn unpersisted_before(&self, offset: u64) -> Vec<AbortedTxnEntry> {
        self.aborted
            .range(..offset)
            .map(|(_, entry)| *entry)
            .collect()
    }

    /// The entries before `offset` are in their index files now.
    pub fn persisted_before(&mut self, offset: u64) {
        self.aborted = self.aborted.split_off(&offset);
    }

    /// The open transactions as of `offset` (for a snapshot there): those opened before it,
    /// including those whose marker is at or after it (the replay after the snapshot ends
    /// them again), in producer id order.
    pub fn ongoing_as_of(&self, offset: u64) -> Vec<(i64, u64)> {
        let mut ongoing: Vec<(i64, u64)> = self
            .ongoing
            .iter()
            .map(|(producer_id, first_offset)| (*producer_id, *first_offset))
            .chain(self.ending.iter().filter_map(|ending| {
                let first_offset = ending.first_offset?;
                (ending.marker_offset >= offset).then_some((ending.producer_id, first_offset))
            }))
            .filter(|(_, first_offset)| *first_offset < offset)
            .collect();
        ongoing.sort_unstable();
        ongoing
    }

    /// Inserts an open transaction loaded from a snapshot.
    pub fn insert_ongoing(&mut self, producer_id: i64, first_offset: u64) {
        if !self.ongoing.contains_key(&producer_id) {
            self.open(producer_id, first_offset);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(producer_id: i64, result: TxnResult) -> TxnMarker {
        TxnMarker {
            producer_id,
            producer_epoch: 0,
            coordinator_epoch: 0,
            result,
        }
    }

    fn verified(state: &mut TransactionState, producer_id: i64) -> Option<VerificationGuard> {
        state.begin_verification(producer_id, 0)
    }

    #[test]
    fn a_transactional_batch_opens_a_transaction_only_with_its_guard() {
        let mut state = TransactionState::new(16);
        assert!(matches!(
            state.check_batch(1, 0, true, None),
            Err(TxnRefusal::InvalidTxnState { .. })
        ));
        let guard = verified(&mut state, 1);
        assert!(guard.is_some());
        assert_eq!(verified(&mut state, 1), guard, "a second request shares it");
        let other = verified(&mut state, 2);
        assert!(state.check_batch(1, 0, true, other).is_err());
        assert_eq!(state.check_batch(1, 0, true, guard), Ok(()));
        state.record_batch(1, true, 10);
        assert_eq!(state.ongoing_first_offset(1), Some(10));
        assert_eq!(verified(&mut state, 1), None, "already in a transaction");
        // Later batches of the transaction need no guard.
        assert_eq!(state.check_batch(1, 0, true, None), Ok(()));
        state.record_batch(1, true, 20);
        assert_eq!(state.ongoing_first_offset(1), Some(10));
    }

    #[test]
    fn a_marker_between_verification_and_append_voids_the_guard() {
        let mut state = TransactionState::new(16);
        let guard = verified(&mut state, 1);
        state.record_marker(&marker(1, TxnResult::Abort), 5, 0);
        assert!(matches!(
            state.check_batch(1, 0, true, guard),
            Err(TxnRefusal::InvalidTxnState { .. })
        ));
    }

    #[test]
    fn a_non_transactional_batch_of_a_producer_in_a_transaction_is_refused() {
        let mut state = TransactionState::new(16);
        let guard = verified(&mut state, 1);
        state.record_batch(1, true, 0);
        let _ = guard;
        assert!(state.check_batch(1, 0, false, None).is_err());
        assert_eq!(state.check_batch(2, 0, false, None), Ok(()));
        assert!(state.check_batch(-1, -1, true, None).is_err());
        assert_eq!(state.check_batch(-1, -1, false, None), Ok(()));
    }

    #[test]
    fn the_last_stable_offset_waits_for_the_oldest_open_transaction_and_durable_markers() {
        let mut state = TransactionState::new(16);
        assert_eq!(state.last_stable_offset(7), 7);
        state.record_batch(1, true, 3);
        state.record_batch(2, true, 5);
        assert_eq!(state.last_stable_offset(7), 3);
        assert_eq!(state.last_stable_offset(2), 2);
        let entry = state.record_marker(&marker(1, TxnResult::Abort), 8, 7);
        assert_eq!(
            entry,
            Some(AbortedTxnEntry {
                producer_id: 1,
                first_offset: 3,
                last_offset: 8,
                last_stable_offset: 5
            })
        );
        // The marker is not durable: its transaction still holds the LSO.
        assert_eq!(state.last_stable_offset(8), 3);
        assert_eq!(state.last_stable_offset(9), 5);
        state.record_marker(&marker(2, TxnResult::Commit), 9, 9);
        assert_eq!(state.last_stable_offset(10), 10);
        assert_eq!(
            state.aborted_between(0, 100, 10),
            vec![entry.expect("aborted")]
        );
        assert!(state.aborted_between(9, 100, 10).is_empty());
        assert!(state.aborted_between(0, 3, 10).is_empty());
        assert_eq!(state.aborted_between(8, 4, 10).len(), 1);
    }

    #[test]
    fn a_rollback_reopens_ended_transactions_and_forgets_ones_opened_after_it() {
        let mut state = TransactionState::new(16);
        state.record_batch(1, true, 3);
        state.record_marker(&marker(1, TxnResult::Abort), 8, 4);
        state.record_batch(2, true, 9);
        state.truncate_from(8);
        assert_eq!(state.ongoing_first_offset(1), Some(3));
        assert_eq!(state.ongoing_first_offset(2), None);
        assert!(state.aborted_between(0, 100, 10).is_empty());
        // A durable marker is never rolled back.
        state.record_marker(&marker(1, TxnResult::Commit), 8, 4);
        state.settle(9);
        state.truncate_from(9);
        assert_eq!(state.ongoing_first_offset(1), None);
    }

    #[test]
    fn an_older_coordinator_epoch_is_fenced() {
        let mut state = TransactionState::new(16);
        let mut newer = marker(1, TxnResult::Commit);
        newer.coordinator_epoch = 4;
        state.record_marker(&newer, 0, 0);
        let mut older = newer;
        older.coordinator_epoch = 3;
        assert!(matches!(
            state.check_marker(&older),
            Err(TxnRefusal::CoordinatorFenced { .. })
        ));
        assert_eq!(state.check_marker(&newer), Ok(()));
        // Rolling back the marker forgets the epoch it brought.
        state.truncate_from(0);
        assert_eq!(state.check_marker(&older), Ok(()));
    }

    #[test]
    fn guards_are_bounded_and_the_oldest_goes() {
        let mut state = TransactionState::new(2);
        let first = verified(&mut state, 1);
        verified(&mut state, 2);
        verified(&mut state, 3);
        assert!(state.check_batch(1, 0, true, first).is_err());
    }

    #[test]
    fn aborted_entries_before_the_log_start_are_dropped() {
        let mut state = TransactionState::new(16);
        state.record_batch(1, true, 0);
        state.record_marker(&marker(1, TxnResult::Abort), 2, 3);
        assert_eq!(state.unpersisted_before(3).len(), 1);
        state.record_batch(1, true, 3);
        state.record_marker(&marker(1, TxnResult::Abort), 5, 6);
        state.drop_before(3);
        let left = state.aborted_between(0, 100, 10);
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].first_offset, 3);
    }

    #[test]
    fn a_snapshot_holds_transactions_open_before_it_even_when_their_marker_is_not_durable() {
        let mut state = TransactionState::new(16);
        state.record_batch(1, true, 0);
        state.record_batch(2, true, 4);
        state.record_batch(3, true, 9);
        state.record_marker(&marker(2, TxnResult::Commit), 8, 6);
        assert_eq!(state.ongoing_as_of(6), vec![(1, 0), (2, 4)]);
        assert_eq!(state.ongoing_as_of(9), vec![(1, 0)]);
        assert_eq!(state.ongoing_as_of(10), vec![(1, 0), (3, 9)]);
    }

    #[test]
    fn persisted_entries_leave_memory() {
        let mut state = TransactionState::new(16);
        state.record_batch(1, true, 0);
        state.record_marker(&marker(1, TxnResult::Abort), 2, 3);
        state.record_batch(1, true, 3);
        state.record_marker(&marker(1, TxnResult::Abort), 5, 6);
        assert_eq!(state.unpersisted_before(4).len(), 1);
        state.persisted_before(4);
        assert_eq!(state.unpersisted_before(100).len(), 1);
        assert_eq!(state.aborted_between(0, 100, 10).len(), 1);
    }
}
