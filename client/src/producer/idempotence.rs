//! The idempotent producer's per-partition bookkeeping: which sequence numbers a partition's next
//! batch gets, which stamped batches are still unresolved, and in which order finished batches
//! may be told to the application.
//!
//! A batch is stamped (producer id, epoch, base sequence) the first time it leaves, in its
//! partition's send order, and keeps the stamp for every retry, so the broker can refuse a batch
//! that would land out of order and answer a retried copy with the original's offsets. Each
//! stamped batch also gets an *ordinal*: its place in the partition's send order, which never
//! wraps and survives a restamp (sequences wrap at `i32::MAX` and restart at 0 after an epoch
//! bump, so they cannot order batches on their own).
//!
//! Pure bookkeeping, no I/O and no clock: the accumulator holds one [`PartitionSequences`] per
//! partition and the sender decides retries with it. Writing the stamp into the batch bytes is
//! the accumulator's (`spate_protocol::batch::header::stamp_producer`).

use std::collections::VecDeque;

use spate_protocol::batch::header::sequence_after;

/// Who the broker knows this producer as: handed out by InitProducerId.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerIdentity {
    pub(crate) producer_id: i64,
    pub(crate) producer_epoch: i16,
}

/// The producer fields a batch carries, and its place in its partition's send order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchStamp {
    /// Position in the partition's send order: never reused, kept across restamps.
    pub(crate) ordinal: u64,
    pub(crate) identity: ProducerIdentity,
    pub(crate) base_sequence: i32,
}

/// One partition's sequences. `T` is what a finished batch leaves to be told (the sender's
/// batch and outcome; plain values in the tests).
#[derive(Debug)]
pub(crate) struct PartitionSequences<T> {
    /// Base sequence of the next batch stamped under the current epoch.
    next_sequence: i32,
    next_ordinal: u64,
    /// Stamped batches not yet told, in send order. An entry holds the outcome of a batch
    /// answered while an earlier one is still unresolved: it is told after that one, so that the
    /// application hears of a partition's batches in the order they were sent.
    unresolved: VecDeque<(u64, Option<T>)>,
    /// A stamped batch of this partition failed without the broker having surely written it
    /// (timeout, refusal): the sequences of the later unresolved batches no longer follow what
    /// the broker holds, so they wait for the epoch bump that restamps them from 0.
    awaiting_restamp: bool,
}

impl<T> Default for PartitionSequences<T> {
    fn default() -> Self {
        Self {
            next_sequence: 0,
            next_ordinal: 0,
            unresolved: VecDeque::new(),
            awaiting_restamp: false,
        }
    }
}

impl<T> PartitionSequences<T> {
    /// Stamps the partition's next batch of `record_count` records: it becomes the newest
    /// unresolved batch.
    pub(crate) fn stamp_next(
        &mut self,
        identity: ProducerIdentity,
        record_count: u32,
    ) -> BatchStamp {
        assert!(record_count > 0, "a sealed batch holds at least one record");
        let stamp = BatchStamp {
            ordinal: self.next_ordinal,
            identity,
            base_sequence: self.next_sequence,
        };
        self.next_ordinal += 1;
        self.next_sequence = sequence_after(self.next_sequence, record_count);
        self.unresolved.push_back((stamp.ordinal, None));
        stamp
    }

    /// After an epoch bump: sequences start again at 0 and nothing waits for a restamp any more.
    /// The caller then restamps every unresolved batch not yet answered, in send order
    /// ([`PartitionSequences::restamp`]).
    pub(crate) fn restart(&mut self) {
        self.next_sequence = 0;
        self.awaiting_restamp = false;
    }

    /// A new stamp under `identity` for the unresolved batch `stamp`, which keeps its ordinal.
    pub(crate) fn restamp(
        &mut self,
        stamp: BatchStamp,
        identity: ProducerIdentity,
        record_count: u32,
    ) -> BatchStamp {
        assert!(
            self.is_unresolved(stamp.ordinal),
            "only an unresolved batch is restamped"
        );
        let restamped = BatchStamp {
            ordinal: stamp.ordinal,
            identity,
            base_sequence: self.next_sequence,
        };
        self.next_sequence = sequence_after(self.next_sequence, record_count);
        restamped
    }

    /// Whether `ordinal` is the oldest batch of the partition whose outcome is unknown: a retry
    /// leaves only then (later ones wait, so retries reach the broker in sequence order), and an
    /// OutOfOrderSequence answer for it cannot be blamed on an earlier batch.
    pub(crate) fn is_oldest_unresolved(&self, ordinal: u64) -> bool {
        self.unresolved
            .front()
            .is_some_and(|(oldest, _)| *oldest == ordinal)
    }

    fn is_unresolved(&self, ordinal: u64) -> bool {
        self.unresolved
            .iter()
            .any(|(entry, outcome)| *entry == ordinal && outcome.is_none())
    }

    /// Stamped batches not yet told (answered or not). Bounded by the in-flight limit, which is
    /// at most what the broker remembers per producer (`PRODUCER_BATCHES_RETAINED`), so that a
    /// retry of any of them is recognised as a copy.
    pub(crate) fn unresolved_count(&self) -> usize {
        self.unresolved.len()
    }

    pub(crate) fn is_awaiting_restamp(&self) -> bool {
        self.awaiting_restamp
    }

    pub(crate) fn await_restamp(&mut self) {
        self.awaiting_restamp = true;
    }

    /// Records the outcome of batch `ordinal` and moves every outcome that may now be told, in
    /// send order, to `due`: the oldest ones up to the first batch still unresolved.
    pub(crate) fn resolve(&mut self, ordinal: u64, outcome: T, due: &mut Vec<T>) {
        let entry = self
            .unresolved
            .iter_mut()
            .find(|(entry, _)| *entry == ordinal)
            .expect("a finished stamped batch is unresolved until told");
        assert!(entry.1.is_none(), "a batch is resolved once");
        entry.1 = Some(outcome);
        while self
            .unresolved
            .front()
            .is_some_and(|(_, outcome)| outcome.is_some())
        {
            let (_, outcome) = self.unresolved.pop_front().expect("checked non-empty");
            due.push(outcome.expect("checked resolved"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIRST: ProducerIdentity = ProducerIdentity {
        producer_id: 7,
        producer_epoch: 0,
    };
    const BUMPED: ProducerIdentity = ProducerIdentity {
        producer_id: 7,
        producer_epoch: 1,
    };

    #[test]
    fn each_batch_starts_where_the_previous_ones_records_end() {
        let mut sequences = PartitionSequences::<u32>::default();
        let stamps: Vec<(u64, i32)> = [3, 1, 5]
            .into_iter()
            .map(|count| sequences.stamp_next(FIRST, count))
            .map(|stamp| (stamp.ordinal, stamp.base_sequence))
            .collect();
        assert_eq!(stamps, vec![(0, 0), (1, 3), (2, 4)]);
        assert_eq!(sequences.unresolved_count(), 3);
        assert!(sequences.is_oldest_unresolved(0));
        assert!(!sequences.is_oldest_unresolved(1));
    }

    #[test]
    fn sequences_wrap_to_zero_after_the_largest_while_ordinals_keep_counting() {
        let mut sequences = PartitionSequences::<u32> {
            next_sequence: i32::MAX - 1,
            ..PartitionSequences::default()
        };
        let first = sequences.stamp_next(FIRST, 2);
        let second = sequences.stamp_next(FIRST, 4);
        let third = sequences.stamp_next(FIRST, 1);
        assert_eq!(first.base_sequence, i32::MAX - 1);
        assert_eq!(second.base_sequence, 0, "two records take MAX-1 and MAX");
        assert_eq!(third.base_sequence, 4);
        assert!(first.ordinal < second.ordinal && second.ordinal < third.ordinal);
    }

    #[test]
    fn outcomes_answered_out_of_turn_are_told_after_the_earlier_batches() {
        let mut sequences = PartitionSequences::<&str>::default();
        for _ in 0..4 {
            sequences.stamp_next(FIRST, 1);
        }
        let mut due = Vec::new();
        sequences.resolve(2, "third", &mut due);
        sequences.resolve(1, "second", &mut due);
        assert!(due.is_empty(), "the first batch is still unresolved");
        assert!(sequences.is_oldest_unresolved(0));
        sequences.resolve(0, "first", &mut due);
        assert_eq!(due, vec!["first", "second", "third"]);
        assert!(sequences.is_oldest_unresolved(3));
        sequences.resolve(3, "fourth", &mut due);
        assert_eq!(due.last(), Some(&"fourth"));
        assert_eq!(sequences.unresolved_count(), 0);
    }

    #[test]
    fn a_restamp_after_an_epoch_bump_starts_at_zero_and_keeps_the_send_order() {
        let mut sequences = PartitionSequences::<u32>::default();
        let stamps: Vec<BatchStamp> = (0..3).map(|_| sequences.stamp_next(FIRST, 10)).collect();
        let mut due = Vec::new();
        sequences.resolve(stamps[0].ordinal, 0, &mut due);
        sequences.await_restamp();
        assert!(sequences.is_awaiting_restamp());

        sequences.restart();
        assert!(!sequences.is_awaiting_restamp());
        let second = sequences.restamp(stamps[1], BUMPED, 10);
        let third = sequences.restamp(stamps[2], BUMPED, 10);
        assert_eq!((second.base_sequence, third.base_sequence), (0, 10));
        assert_eq!((second.ordinal, third.ordinal), (1, 2));
        assert_eq!(second.identity, BUMPED);
        let next = sequences.stamp_next(BUMPED, 1);
        assert_eq!(
            next.base_sequence, 20,
            "new batches follow the restamped ones"
        );
        assert_eq!(next.ordinal, 3);
    }

    #[test]
    #[should_panic(expected = "only an unresolved batch is restamped")]
    fn restamping_a_batch_already_answered_is_a_bug() {
        let mut sequences = PartitionSequences::<u32>::default();
        let first = sequences.stamp_next(FIRST, 1);
        sequences.stamp_next(FIRST, 1);
        let mut due = Vec::new();
        sequences.resolve(1, 1, &mut due);
        sequences.restart();
        sequences.restamp(first, BUMPED, 1);
        let answered = BatchStamp {
            ordinal: 1,
            ..first
        };
        sequences.restamp(answered, BUMPED, 1);
    }
}
