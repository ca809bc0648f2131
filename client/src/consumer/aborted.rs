//! The read_committed consumer's filter of aborted transactions, as Kafka's consumer applies
//! it (`CompletedFetch`): pure, no I/O, one per fetched chunk of one partition.
//!
//! A read_committed fetch answer holds only records below the partition's last stable offset,
//! so every transaction in it is decided, and lists the aborted transactions whose records it
//! may hold: (producer id, first offset). Walking the batches in offset order, a producer
//! becomes *aborted* once the walk reaches its transaction's first offset, and stays so until
//! that producer's abort marker (a control batch). Meanwhile its transactional batches are
//! dropped. Another producer's batches, non-transactional batches and committed transactions
//! pass. Control batches never reach the application whatever the isolation level (the caller
//! skips them); this filter only reads them to end a producer's aborted run.
//!
//! Which offsets the answer covers and where positions move is the consumer's business; this
//! file only says, batch by batch, whether to skip.

use std::collections::HashSet;

use spate_protocol::api::AbortedTransaction;

/// What the filter needs of one batch header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchFacts {
    /// -1 (`NO_PRODUCER_ID`) for a batch without a producer.
    pub(crate) producer_id: i64,
    pub(crate) last_offset: u64,
    pub(crate) is_transactional: bool,
    /// A control batch: a transaction marker.
    pub(crate) is_control: bool,
    /// For a control batch: whether its marker is an abort (`None` when it could not be read;
    /// it is then taken to end the producer's aborted run, which is what an abort marker does
    /// and a commit marker cannot need to: see [`AbortedFilter::skips`]).
    pub(crate) is_abort_marker: Option<bool>,
}

/// The aborted transactions of one fetched chunk, consumed as the walk moves forward.
#[derive(Debug, Default)]
pub(crate) struct AbortedFilter {
    /// Not reached yet, the one with the lowest first offset last (popped first).
    upcoming: Vec<AbortedTransaction>,
    /// Producers inside an aborted transaction at the walk's position.
    aborted_producers: HashSet<i64>,
}

impl AbortedFilter {
    /// A filter for a chunk whose answer listed `aborted` (any order).
    pub(crate) fn new(aborted: &[AbortedTransaction]) -> Self {
        let mut upcoming = aborted.to_vec();
        upcoming.sort_unstable_by_key(|aborted| std::cmp::Reverse(aborted.first_offset));
        Self {
            upcoming,
            aborted_producers: HashSet::new(),
        }
    }

    /// Whether the batch's records are dropped. Batches must come in offset order.
    ///
    /// Kafka's rule: every aborted transaction that starts at or before the batch's last offset
    /// has begun; an abort marker of a producer ends its run; a transactional batch of a
    /// producer in a run is dropped. A commit marker of a producer in a run cannot occur: a
    /// producer's transactions in one partition follow one another, and the run's transaction
    /// ends with an abort marker, so an unreadable marker is safely taken as the end.
    pub(crate) fn skips(&mut self, batch: BatchFacts) -> bool {
        if batch.producer_id < 0 {
            return batch.is_control;
        }
        while self
            .upcoming
            .last()
            .is_some_and(|aborted| aborted.first_offset <= batch.last_offset)
        {
            let started = self.upcoming.pop().expect("checked non-empty");
            self.aborted_producers.insert(started.producer_id);
        }
        if batch.is_control {
            if batch.is_abort_marker != Some(false) {
                self.aborted_producers.remove(&batch.producer_id);
            }
            return true;
        }
        batch.is_transactional && self.aborted_producers.contains(&batch.producer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(producer_id: i64, last_offset: u64, is_transactional: bool) -> BatchFacts {
        BatchFacts {
            producer_id,
            last_offset,
            is_transactional,
            is_control: false,
            is_abort_marker: None,
        }
    }

    fn marker(producer_id: i64, offset: u64, abort: bool) -> BatchFacts {
        BatchFacts {
            producer_id,
            last_offset: offset,
            is_transactional: true,
            is_control: true,
            is_abort_marker: Some(abort),
        }
    }

    fn aborted(producer_id: i64, first_offset: u64) -> AbortedTransaction {
        AbortedTransaction {
            producer_id,
            first_offset,
        }
    }

    #[test]
    fn an_aborted_transactions_batches_are_dropped_up_to_its_abort_marker() {
        let mut filter = AbortedFilter::new(&[aborted(7, 10)]);
        assert!(
            !filter.skips(data(7, 4, true)),
            "an earlier committed transaction"
        );
        assert!(
            filter.skips(marker(7, 5, false)),
            "markers never reach the application"
        );
        assert!(filter.skips(data(7, 12, true)));
        assert!(filter.skips(data(7, 15, true)));
        assert!(filter.skips(marker(7, 16, true)));
        assert!(
            !filter.skips(data(7, 20, true)),
            "the producer's next transaction"
        );
    }

    #[test]
    fn other_producers_and_plain_batches_in_between_pass() {
        let mut filter = AbortedFilter::new(&[aborted(7, 0)]);
        assert!(filter.skips(data(7, 2, true)));
        assert!(
            !filter.skips(data(8, 5, true)),
            "another producer's transaction"
        );
        assert!(
            !filter.skips(data(-1, 6, false)),
            "a batch without a producer"
        );
        assert!(
            !filter.skips(data(9, 7, false)),
            "an idempotent, non-transactional batch"
        );
        assert!(filter.skips(data(7, 9, true)));
        assert!(filter.skips(marker(7, 10, true)));
    }

    #[test]
    fn a_transaction_starting_inside_a_batch_counts_from_that_batch() {
        // The first offset falls inside the batch's range: the batch belongs to it.
        let mut filter = AbortedFilter::new(&[aborted(3, 11)]);
        assert!(filter.skips(data(3, 12, true)));
    }

    #[test]
    fn a_producer_aborting_twice_is_dropped_twice_and_read_between() {
        let mut filter = AbortedFilter::new(&[aborted(5, 30), aborted(5, 0)]);
        assert!(filter.skips(data(5, 3, true)));
        assert!(filter.skips(marker(5, 4, true)));
        assert!(!filter.skips(data(5, 10, true)), "committed in between");
        assert!(filter.skips(marker(5, 11, false)));
        assert!(filter.skips(data(5, 31, true)));
        assert!(filter.skips(marker(5, 32, true)));
        assert!(!filter.skips(data(5, 40, true)));
    }

    #[test]
    fn an_unreadable_marker_ends_the_producers_aborted_run() {
        let mut filter = AbortedFilter::new(&[aborted(5, 0)]);
        assert!(filter.skips(data(5, 1, true)));
        let unreadable = BatchFacts {
            is_abort_marker: None,
            ..marker(5, 2, true)
        };
        assert!(filter.skips(unreadable));
        assert!(!filter.skips(data(5, 3, true)));
    }

    #[test]
    fn without_an_aborted_list_only_markers_are_dropped() {
        let mut filter = AbortedFilter::new(&[]);
        assert!(!filter.skips(data(5, 1, true)));
        assert!(filter.skips(marker(5, 2, true)));
        assert!(filter.skips(BatchFacts {
            producer_id: -1,
            is_control: true,
            ..data(-1, 3, false)
        }));
    }
}
