//! Per-partition state of idempotent producers: for each producer id its epoch, its last few
//! batches (sequence range and offsets), and when it last appended; and the rules (Kafka's
//! `ProducerStateManager.checkSequence`) that decide whether a batch is appended, answered as a
//! duplicate of one already appended, or refused.
//!
//! Pure: no I/O, no clock (times are passed in), no knowledge of segments or write slots. The log
//! (`log`) checks each batch here and records it in the same synchronous borrow that assigns its
//! offset, rolls the state back with its write path (`writer`), and persists it as snapshot files
//! (`producer_snapshot`). The state of a partition is owned by the shard that owns the partition
//! and dies with its `PartitionLog`.

use std::collections::{HashMap, VecDeque};

use spate_protocol::batch::header::{last_sequence, sequence_after, NO_PRODUCER_ID};
use spate_protocol::batch::BatchHeader;
use spate_protocol::constants::PRODUCER_BATCHES_RETAINED;

/// At most one eviction warning per this many milliseconds per partition: a producer churn
/// storm must not flood the log.
pub const EVICTION_WARNING_INTERVAL_MS: i64 = 60_000;

/// Sequences live in `[0, SEQUENCE_MODULUS)` and wrap from `i32::MAX` to 0.
const SEQUENCE_MODULUS: i64 = i32::MAX as i64 + 1;

/// The producer fields of one batch from an idempotent producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerBatch {
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub first_sequence: i32,
    pub last_sequence: i32,
}

impl ProducerBatch {
    /// The producer fields of a batch: `None` when the producer is not idempotent
    /// (`producer_id` is `NO_PRODUCER_ID`), a refusal when they cannot be a valid identity.
    pub fn of(header: &BatchHeader) -> Result<Option<Self>, ProducerRefusal> {
        if header.producer_id == NO_PRODUCER_ID {
            return Ok(None);
        }
        if header.producer_id < 0
            || header.producer_epoch < 0
            || header.base_sequence < 0
            || header.record_count == 0
        {
            return Err(ProducerRefusal::InvalidProducerFields {
                producer_id: header.producer_id,
                producer_epoch: header.producer_epoch,
                base_sequence: header.base_sequence,
                record_count: header.record_count,
            });
        }
        Ok(Some(Self {
            producer_id: header.producer_id,
            producer_epoch: header.producer_epoch,
            first_sequence: header.base_sequence,
            last_sequence: last_sequence(header.base_sequence, header.record_count),
        }))
    }

    /// [`ProducerBatch::of`] for a batch read back from the log (the replay at open): its
    /// sequences span its offset range (Kafka's `baseSequence + lastOffsetDelta`), which log
    /// compaction keeps while it removes records, down to none (a producer's emptied last
    /// batch). For a batch as appended the two rules agree: a producer's batch has as many
    /// records as offsets.
    pub fn of_stored(header: &BatchHeader) -> Result<Option<Self>, ProducerRefusal> {
        let spanned = BatchHeader {
            record_count: header.offset_count,
            ..*header
        };
        Self::of(&spanned)
    }
}

/// One appended batch of a producer, kept to recognise a retried copy of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetainedBatch {
    pub first_sequence: i32,
    pub last_sequence: i32,
    pub base_offset: u64,
    pub next_offset: u64,
}

/// What a partition knows about one producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerEntry {
    pub epoch: i16,
    /// The producer's last batches under `epoch`, oldest first: at most
    /// [`PRODUCER_BATCHES_RETAINED`] that were durable when the last one was recorded, plus
    /// every one that was not (see [`ProducerState::record`]). Empty after a rollback removed
    /// all of them, or when the producer's first batch here failed; `held_at` then says which
    /// sequence must come next.
    pub batches: VecDeque<RetainedBatch>,
    /// Set when the producer has no retained batch to continue from but a batch of it was lost:
    /// a rollback removed every retained batch (the first sequence it removed), or an append
    /// failed before it was recorded ([`ProducerState::hold_at`]). Only that sequence may be
    /// appended next (the producer resends from there): without it, a later pipelined batch of
    /// the producer would be accepted ahead of the lost one. Cleared by the next recorded batch.
    /// Not kept in snapshots (their format has no field for it), so it lasts until the
    /// partition is closed: a restart ends every connection, and the producer then resends its
    /// unacknowledged batches from the oldest.
    pub held_at: Option<i32>,
    /// When the producer last appended (the log's clock, milliseconds).
    pub last_append_ms: i64,
}

/// What to do with a batch that passed the check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Append it, then [`ProducerState::record`] it.
    Append,
    /// A retry of a batch already appended: append nothing, answer with the original's offsets.
    Duplicate { base_offset: u64, next_offset: u64 },
}

/// Why a batch of an idempotent producer is refused. The log adds the partition directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProducerRefusal {
    /// The sequence does not continue the producer's last batch (a gap, or a new epoch not
    /// starting at 0).
    OutOfOrderSequence {
        producer_id: i64,
        producer_epoch: i16,
        expected_sequence: i32,
        received_sequence: i32,
    },
    /// The sequence lies at or before the producer's last one but matches no retained batch.
    DuplicateSequence {
        producer_id: i64,
        producer_epoch: i16,
        last_sequence: i32,
        received_sequence: i32,
    },
    /// A newer epoch of the producer id has appended: this producer is a zombie.
    ProducerFenced {
        producer_id: i64,
        current_epoch: i16,
        received_epoch: i16,
    },
    /// A producer id with a negative epoch or sequence, a negative id other than
    /// `NO_PRODUCER_ID`, or a batch without records.
    InvalidProducerFields {
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        record_count: u32,
    },
}

/// The idempotent producers of one partition, bounded in count.
#[derive(Debug, Clone)]
pub struct ProducerState {
    producers: HashMap<i64, ProducerEntry>,
    producers_max: usize,
    expiry_ms: u64,
    evictions_unreported: u64,
    last_eviction_warning_ms: Option<i64>,
}

/// Whether sequence `sequence` comes before `next` in wrapping sequence space (within half the
/// space behind it).
/// The sequence just before `sequence` (wrapping from 0 to `i32::MAX`).
fn sequence_before(sequence: i32) -> i32 {
    (i64::from(sequence) - 1).rem_euclid(SEQUENCE_MODULUS) as i32
}

fn is_before(sequence: i32, next: i32) -> bool {
    let distance = (i64::from(next) - i64::from(sequence)).rem_euclid(SEQUENCE_MODULUS);
    (1..=SEQUENCE_MODULUS / 2).contains(&distance)
}

impl ProducerState {
    pub fn new(producers_max: usize, expiry_ms: u64) -> Self {
        assert!(producers_max > 0, "a partition holds at least one producer");
        Self {
            producers: HashMap::new(),
            producers_max,
            expiry_ms,
            evictions_unreported: 0,
            last_eviction_warning_ms: None,
        }
    }

    /// New limits from a configuration change; an excess of producers goes at the next insert.
    pub fn set_limits(&mut self, producers_max: usize, expiry_ms: u64) {
        assert!(producers_max > 0, "a partition holds at least one producer");
        self.producers_max = producers_max;
        self.expiry_ms = expiry_ms;
    }

    pub fn len(&self) -> usize {
        self.producers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    pub fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Every producer, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = (i64, &ProducerEntry)> {
        self.producers.iter().map(|(id, entry)| (*id, entry))
    }

    /// Decides what to do with `batch` given the state so far. Changes nothing.
    pub fn check(&self, batch: &ProducerBatch) -> Result<Verdict, ProducerRefusal> {
        // Unknown here (new, or removed by retention or expiry): any sequence is accepted, as
        // in Kafka, since the partition cannot know where the producer stands.
        let Some(entry) = self.producers.get(&batch.producer_id) else {
            return Ok(Verdict::Append);
        };
        if batch.producer_epoch < entry.epoch {
            return Err(ProducerRefusal::ProducerFenced {
                producer_id: batch.producer_id,
                current_epoch: entry.epoch,
                received_epoch: batch.producer_epoch,
            });
        }
        if batch.producer_epoch > entry.epoch {
            if batch.first_sequence != 0 {
                return Err(ProducerRefusal::OutOfOrderSequence {
                    producer_id: batch.producer_id,
                    producer_epoch: batch.producer_epoch,
                    expected_sequence: 0,
                    received_sequence: batch.first_sequence,
                });
            }
            return Ok(Verdict::Append);
        }
        if let Some(original) = entry.batches.iter().find(|retained| {
            retained.first_sequence == batch.first_sequence
                && retained.last_sequence == batch.last_sequence
        }) {
            return Ok(Verdict::Duplicate {
                base_offset: original.base_offset,
                next_offset: original.next_offset,
            });
        }
        let expected = match (entry.batches.back(), entry.held_at) {
            (Some(last), _) => sequence_after(last.last_sequence, 1),
            (None, Some(lost)) => lost,
            (None, None) => return Ok(Verdict::Append),
        };
        if batch.first_sequence == expected {
            return Ok(Verdict::Append);
        }
        if is_before(batch.first_sequence, expected) {
            return Err(ProducerRefusal::DuplicateSequence {
                producer_id: batch.producer_id,
                producer_epoch: batch.producer_epoch,
                last_sequence: sequence_before(expected),
                received_sequence: batch.first_sequence,
            });
        }
        Err(ProducerRefusal::OutOfOrderSequence {
            producer_id: batch.producer_id,
            producer_epoch: batch.producer_epoch,
            expected_sequence: expected,
            received_sequence: batch.first_sequence,
        })
    }

    /// Records `batch` as appended at `[base_offset, next_offset)`, with the log durable up to
    /// `durable_next_offset`. Follows the batch without checking it (replay trusts the log): a
    /// different epoch, or a sequence that does not continue the last batch, restarts the
    /// producer's entry.
    ///
    /// Batches not yet durable do not count toward the [`PRODUCER_BATCHES_RETAINED`] kept: a
    /// rollback ([`ProducerState::truncate_from`]) removes them from the back, and what stays
    /// must still be the producer's last batches in the log. Sliding the window over batches
    /// that are then rolled back would forget durable ones, and a retry of those (a lost
    /// response) would be appended a second time.
    pub fn record(
        &mut self,
        batch: &ProducerBatch,
        base_offset: u64,
        next_offset: u64,
        durable_next_offset: u64,
        now_ms: i64,
    ) {
        assert!(
            base_offset < next_offset,
            "a batch holds at least one offset"
        );
        if !self.producers.contains_key(&batch.producer_id) {
            self.make_room(now_ms);
        }
        let entry = self
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: batch.producer_epoch,
                batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
                last_append_ms: now_ms,
                held_at: None,
            });
        entry.held_at = None;
        if entry.epoch != batch.producer_epoch {
            entry.epoch = batch.producer_epoch;
            entry.batches.clear();
        } else if entry
            .batches
            .back()
            .is_some_and(|last| sequence_after(last.last_sequence, 1) != batch.first_sequence)
        {
            // Only in a replay: the producer was forgotten here (the log start passed its
            // batches, or it expired) and started over at another sequence, maybe one it had
            // sent before. The older batches belong to that earlier run: a retry must never be
            // answered with their offsets, nor checked against their sequences.
            entry.batches.clear();
        }
        debug_assert!(
            entry
                .batches
                .back()
                .is_none_or(|last| last.next_offset <= base_offset),
            "a producer's batches are recorded in offset order"
        );
        entry.batches.push_back(RetainedBatch {
            first_sequence: batch.first_sequence,
            last_sequence: batch.last_sequence,
            base_offset,
            next_offset,
        });
        let durable = entry
            .batches
            .iter()
            .take_while(|retained| retained.next_offset <= durable_next_offset)
            .count();
        for _ in PRODUCER_BATCHES_RETAINED..durable {
            entry.batches.pop_front();
        }
        entry.last_append_ms = entry.last_append_ms.max(now_ms);
    }

    /// Holds the producer of `batch` at `batch`'s first sequence: an append of `batch` failed
    /// before it was recorded (a roll or a wait for write-queue room failed, or an earlier batch
    /// of its call did), so no later batch of the producer may be appended until `batch` is
    /// resent. Does nothing unless `batch` would be appended now: a known producer whose last
    /// batch it continues already expects it, and a later batch of a new epoch is refused
    /// until the epoch's sequence 0 is appended. An unknown producer, which would accept any
    /// sequence, gets an entry without batches that expects this one.
    pub fn hold_at(&mut self, batch: &ProducerBatch, now_ms: i64) {
        if self.check(batch) != Ok(Verdict::Append) {
            return;
        }
        match self.producers.get_mut(&batch.producer_id) {
            Some(entry) => {
                if entry.epoch == batch.producer_epoch && entry.batches.is_empty() {
                    entry.held_at = Some(batch.first_sequence);
                }
            }
            None => {
                self.make_room(now_ms);
                self.producers.insert(
                    batch.producer_id,
                    ProducerEntry {
                        epoch: batch.producer_epoch,
                        batches: VecDeque::with_capacity(PRODUCER_BATCHES_RETAINED),
                        held_at: Some(batch.first_sequence),
                        last_append_ms: now_ms,
                    },
                );
            }
        }
    }

    /// A transaction marker of `producer_epoch` was appended for `producer_id`. An epoch newer
    /// than the producer's (the coordinator bumped it, e.g. to abort a timed-out transaction)
    /// fences the older one from now on, and the producer must start the new epoch at sequence
    /// 0 (held there, as Kafka's entry without a sequence expects). An unknown producer gets no
    /// entry: the coordinator's epoch checks fence it.
    pub fn observe_marker_epoch(&mut self, producer_id: i64, producer_epoch: i16) {
        if let Some(entry) = self.producers.get_mut(&producer_id) {
            if entry.epoch < producer_epoch {
                entry.epoch = producer_epoch;
                entry.batches.clear();
                entry.held_at = Some(0);
            }
        }
    }

    /// Keeps only the last [`PRODUCER_BATCHES_RETAINED`] batches of each producer. For when
    /// everything is durable (roll, close), before a snapshot, which holds no more.
    pub fn trim_to_retained(&mut self) {
        for entry in self.producers.values_mut() {
            let excess = entry
                .batches
                .len()
                .saturating_sub(PRODUCER_BATCHES_RETAINED);
            entry.batches.drain(..excess);
        }
    }

    /// The state as it was when the log ended at `offset` (for a snapshot taken while later
    /// batches are in flight): only batches ending at or before `offset`, the last
    /// [`PRODUCER_BATCHES_RETAINED`] of each producer, and no producer without one (replaying
    /// the log after `offset` brings such a producer back with its epoch).
    pub fn as_of(&self, offset: u64) -> ProducerState {
        let mut state = self.clone();
        state.producers.retain(|_, entry| {
            entry.batches.retain(|batch| batch.next_offset <= offset);
            entry.held_at = None;
            !entry.batches.is_empty()
        });
        state.trim_to_retained();
        state
    }

    /// Inserts an entry loaded from a snapshot (replacing any entry of that id).
    pub fn insert(&mut self, producer_id: i64, entry: ProducerEntry) {
        assert!(
            entry.batches.len() <= PRODUCER_BATCHES_RETAINED,
            "retained batches are bounded"
        );
        self.producers.insert(producer_id, entry);
    }

    /// Forgets every retained batch at or after `offset`: the write path rolled those bytes
    /// back, so a retry of them must be appended again, not answered as a duplicate.
    pub fn truncate_from(&mut self, offset: u64) {
        for entry in self.producers.values_mut() {
            let mut first_removed = None;
            while entry
                .batches
                .back()
                .is_some_and(|last| last.next_offset > offset)
            {
                first_removed = entry.batches.pop_back().map(|lost| lost.first_sequence);
            }
            if entry.batches.is_empty() && first_removed.is_some() {
                entry.held_at = first_removed;
            }
        }
    }

    /// Drops producers whose last batch ends at or before `log_start_offset` (retention or
    /// delete-records removed it), and those with no batch at all unless a rollback left them
    /// waiting for a resend. Returns how many went.
    pub fn drop_before(&mut self, log_start_offset: u64) -> usize {
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| match entry.batches.back() {
                Some(last) => last.next_offset > log_start_offset,
                // Waiting for the resend of rolled-back batches: still knows what comes next.
                None => entry.held_at.is_some(),
            });
        before - self.producers.len()
    }

    /// Drops producers that have not appended for the expiry time. Returns how many went.
    pub fn expire(&mut self, now_ms: i64) -> usize {
        let expiry_ms = i64::try_from(self.expiry_ms).unwrap_or(i64::MAX);
        let cutoff_ms = now_ms.saturating_sub(expiry_ms);
        let before = self.producers.len();
        self.producers
            .retain(|_, entry| entry.last_append_ms >= cutoff_ms);
        before - self.producers.len()
    }

    /// Makes room for one more producer: expired ones first, then the one that appended
    /// longest ago (the smallest id among equals, so the choice is deterministic).
    fn make_room(&mut self, now_ms: i64) {
        if self.producers.len() < self.producers_max {
            return;
        }
        self.expire(now_ms);
        while self.producers.len() >= self.producers_max {
            let oldest = self
                .producers
                .iter()
                .min_by_key(|(id, entry)| (entry.last_append_ms, **id))
                .map(|(id, _)| *id)
                .expect("a full state is not empty");
            self.producers.remove(&oldest);
            self.evictions_unreported += 1;
        }
        let due = self
            .last_eviction_warning_ms
            .is_none_or(|last_ms| now_ms.saturating_sub(last_ms) >= EVICTION_WARNING_INTERVAL_MS);
        if due && self.evictions_unreported > 0 {
            tracing::warn!(
                evicted = self.evictions_unreported,
                producers_max = self.producers_max,
                "producer state full: evicted the producers that appended longest ago"
            );
            self.evictions_unreported = 0;
            self.last_eviction_warning_ms = Some(now_ms);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: i64 = 1_700_000_000_000;

    fn producer(producer_id: i64, epoch: i16, first: i32, records: u32) -> ProducerBatch {
        ProducerBatch {
            producer_id,
            producer_epoch: epoch,
            first_sequence: first,
            last_sequence: last_sequence(first, records),
        }
    }

    fn state() -> ProducerState {
        ProducerState::new(16, 1_000)
    }

    /// Checks and, when it is to be appended, records `batch` at `offset` with `records` offsets.
    fn append(
        state: &mut ProducerState,
        batch: ProducerBatch,
        offset: u64,
        records: u64,
    ) -> Result<Verdict, ProducerRefusal> {
        let verdict = state.check(&batch)?;
        if verdict == Verdict::Append {
            state.record(&batch, offset, offset + records, offset + records, NOW_MS);
        }
        Ok(verdict)
    }

    fn header(producer_id: i64, epoch: i16, sequence: i32, records: u32) -> BatchHeader {
        BatchHeader {
            producer_id,
            producer_epoch: epoch,
            base_sequence: sequence,
            offset_count: records,
            record_count: records,
            ..BatchHeader::default()
        }
    }

    #[test]
    fn a_batch_without_producer_id_is_not_checked() {
        assert_eq!(
            ProducerBatch::of(&header(NO_PRODUCER_ID, -1, -1, 3)),
            Ok(None)
        );
    }

    #[test]
    fn producer_fields_of_a_header_give_the_sequence_range() {
        assert_eq!(
            ProducerBatch::of(&header(7, 2, 10, 5)),
            Ok(Some(producer(7, 2, 10, 5)))
        );
        assert_eq!(producer(7, 2, 10, 5).last_sequence, 14);
    }

    #[test]
    fn negative_epoch_or_sequence_with_a_producer_id_is_refused() {
        for (id, epoch, sequence, records) in
            [(5, -1, 0, 1), (5, 0, -1, 1), (-2, 0, 0, 1), (5, 0, 0, 0)]
        {
            assert!(
                matches!(
                    ProducerBatch::of(&header(id, epoch, sequence, records)),
                    Err(ProducerRefusal::InvalidProducerFields { .. })
                ),
                "{id} {epoch} {sequence} {records}"
            );
        }
    }

    #[test]
    fn an_unknown_producer_may_start_at_any_sequence() {
        let state = state();
        assert_eq!(state.check(&producer(1, 0, 4711, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn the_next_sequence_is_appended() {
        let mut state = state();
        assert_eq!(
            append(&mut state, producer(1, 0, 0, 3), 0, 3),
            Ok(Verdict::Append)
        );
        assert_eq!(
            append(&mut state, producer(1, 0, 3, 2), 3, 2),
            Ok(Verdict::Append)
        );
        let entry = state.get(1).expect("recorded");
        assert_eq!(entry.batches.len(), 2);
        assert_eq!(entry.batches[1].last_sequence, 4);
    }

    #[test]
    fn a_gap_in_sequences_is_out_of_order() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 3), 0, 3).expect("first");
        assert_eq!(
            state.check(&producer(1, 0, 5, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                producer_id: 1,
                producer_epoch: 0,
                expected_sequence: 3,
                received_sequence: 5,
            })
        );
    }

    #[test]
    fn a_retained_batch_sent_again_is_a_duplicate_with_its_original_offsets() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 3), 10, 3).expect("first");
        append(&mut state, producer(1, 0, 3, 3), 13, 3).expect("second");
        assert_eq!(
            state.check(&producer(1, 0, 0, 3)),
            Ok(Verdict::Duplicate {
                base_offset: 10,
                next_offset: 13
            })
        );
        assert_eq!(
            state.check(&producer(1, 0, 3, 3)),
            Ok(Verdict::Duplicate {
                base_offset: 13,
                next_offset: 16
            })
        );
    }

    #[test]
    fn only_the_last_five_batches_are_retained() {
        let mut state = state();
        for index in 0..6u64 {
            append(&mut state, producer(1, 0, index as i32, 1), index, 1).expect("in order");
        }
        assert_eq!(
            state.get(1).expect("recorded").batches.len(),
            PRODUCER_BATCHES_RETAINED
        );
        assert_eq!(
            state.check(&producer(1, 0, 1, 1)),
            Ok(Verdict::Duplicate {
                base_offset: 1,
                next_offset: 2
            })
        );
        // Sequence 0 fell out of the window: known to be old, but its offsets are forgotten.
        assert_eq!(
            state.check(&producer(1, 0, 0, 1)),
            Err(ProducerRefusal::DuplicateSequence {
                producer_id: 1,
                producer_epoch: 0,
                last_sequence: 5,
                received_sequence: 0,
            })
        );
    }

    #[test]
    fn a_range_overlapping_a_retained_batch_but_not_equal_is_a_duplicate_sequence() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 4), 0, 4).expect("first");
        assert!(matches!(
            state.check(&producer(1, 0, 0, 2)),
            Err(ProducerRefusal::DuplicateSequence { .. })
        ));
    }

    #[test]
    fn sequences_wrap_from_the_largest_to_zero() {
        let mut state = state();
        append(&mut state, producer(1, 0, i32::MAX - 1, 2), 0, 2).expect("first");
        assert_eq!(
            state.get(1).expect("recorded").batches[0].last_sequence,
            i32::MAX
        );
        assert_eq!(state.check(&producer(1, 0, 0, 1)), Ok(Verdict::Append));
        assert!(matches!(
            state.check(&producer(1, 0, 1, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        append(&mut state, producer(1, 0, 0, 1), 2, 1).expect("wrapped");
        // i32::MAX is now behind 0: a resend of it is a retained duplicate, not a gap.
        assert_eq!(
            state.check(&producer(1, 0, i32::MAX - 1, 2)),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                next_offset: 2
            })
        );
    }

    #[test]
    fn a_batch_spanning_the_wrap_is_recognised_as_a_duplicate() {
        let mut state = state();
        let spanning = producer(1, 0, i32::MAX, 3);
        assert_eq!(spanning.last_sequence, 1);
        append(&mut state, spanning, 0, 3).expect("first");
        assert_eq!(
            state.check(&spanning),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                next_offset: 3
            })
        );
        assert_eq!(state.check(&producer(1, 0, 2, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn an_older_epoch_is_fenced() {
        let mut state = state();
        append(&mut state, producer(1, 3, 0, 1), 0, 1).expect("first");
        assert_eq!(
            state.check(&producer(1, 2, 1, 1)),
            Err(ProducerRefusal::ProducerFenced {
                producer_id: 1,
                current_epoch: 3,
                received_epoch: 2,
            })
        );
    }

    #[test]
    fn a_newer_epoch_must_start_at_sequence_zero() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 5), 0, 5).expect("first");
        assert_eq!(
            state.check(&producer(1, 1, 5, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                producer_id: 1,
                producer_epoch: 1,
                expected_sequence: 0,
                received_sequence: 5,
            })
        );
    }

    #[test]
    fn an_epoch_bump_restarts_the_producer_and_fences_the_old_epoch() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 5), 0, 5).expect("first");
        assert_eq!(
            append(&mut state, producer(1, 1, 0, 2), 5, 2),
            Ok(Verdict::Append)
        );
        let entry = state.get(1).expect("recorded");
        assert_eq!(entry.epoch, 1);
        assert_eq!(entry.batches.len(), 1);
        // The old epoch's batch is no longer a duplicate: its producer is fenced.
        assert!(matches!(
            state.check(&producer(1, 0, 0, 5)),
            Err(ProducerRefusal::ProducerFenced { .. })
        ));
        assert_eq!(state.check(&producer(1, 1, 2, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn batches_checked_in_order_each_see_the_state_the_previous_left() {
        let mut state = state();
        let batches = [
            producer(1, 0, 0, 2),
            producer(1, 0, 2, 2),
            producer(1, 0, 4, 1),
        ];
        let mut offset = 0;
        for batch in batches {
            assert_eq!(state.check(&batch), Ok(Verdict::Append));
            let count = u64::from((batch.last_sequence - batch.first_sequence + 1) as u32);
            state.record(&batch, offset, offset + count, offset + count, NOW_MS);
            offset += count;
        }
        // Checked against the state before the second was recorded, the third would be a gap.
        assert!(state.check(&producer(1, 0, 5, 1)).is_ok());
        assert_eq!(state.get(1).expect("recorded").batches.len(), 3);
    }

    #[test]
    fn rollback_forgets_batches_at_or_after_the_offset() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 1), 0, 1).expect("first");
        append(&mut state, producer(1, 0, 1, 1), 1, 1).expect("second");
        append(&mut state, producer(2, 1, 0, 1), 2, 1).expect("other producer");
        state.truncate_from(1);
        assert_eq!(state.get(1).expect("kept").batches.len(), 1);
        // The rolled-back batch is appended again, not answered as a duplicate.
        assert_eq!(state.check(&producer(1, 0, 1, 1)), Ok(Verdict::Append));
        // A producer whose every batch was rolled back keeps its epoch and waits for the first
        // lost batch: a later one may not land ahead of it.
        let other = state.get(2).expect("kept");
        assert!(other.batches.is_empty());
        assert!(matches!(
            state.check(&producer(2, 1, 7, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        assert_eq!(state.check(&producer(2, 1, 0, 1)), Ok(Verdict::Append));
        assert!(matches!(
            state.check(&producer(2, 0, 0, 1)),
            Err(ProducerRefusal::ProducerFenced { .. })
        ));
    }

    #[test]
    fn a_rollback_that_empties_a_producer_expects_its_first_lost_sequence_until_it_is_resent() {
        let mut state = state();
        append(&mut state, producer(3, 0, 10, 2), 0, 2).expect("first");
        append(&mut state, producer(3, 0, 12, 3), 2, 3).expect("second");
        state.truncate_from(0);
        assert!(matches!(
            state.check(&producer(3, 0, 12, 3)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 10,
                received_sequence: 12,
                ..
            })
        ));
        assert!(matches!(
            state.check(&producer(3, 0, 8, 2)),
            Err(ProducerRefusal::DuplicateSequence {
                last_sequence: 9,
                ..
            })
        ));
        assert_eq!(
            state.drop_before(100),
            0,
            "kept while it waits for the resend"
        );
        append(&mut state, producer(3, 0, 10, 2), 0, 2).expect("the resend");
        assert_eq!(state.get(3).expect("kept").held_at, None);
        assert_eq!(state.check(&producer(3, 0, 12, 3)), Ok(Verdict::Append));
    }

    #[test]
    fn an_unknown_producer_whose_batch_failed_is_held_at_that_batch_until_it_is_resent() {
        let mut state = state();
        state.hold_at(&producer(4, 2, 806, 1), NOW_MS);
        assert!(matches!(
            state.check(&producer(4, 2, 807, 4)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 806,
                received_sequence: 807,
                ..
            })
        ));
        assert!(matches!(
            state.check(&producer(4, 1, 806, 1)),
            Err(ProducerRefusal::ProducerFenced { .. })
        ));
        assert_eq!(
            state.drop_before(100),
            0,
            "kept while it waits for the resend"
        );
        append(&mut state, producer(4, 2, 806, 1), 0, 1).expect("the resend");
        assert_eq!(state.get(4).expect("kept").held_at, None);
        assert_eq!(state.check(&producer(4, 2, 807, 4)), Ok(Verdict::Append));
    }

    #[test]
    fn holding_a_known_producer_changes_nothing_it_did_not_already_expect() {
        let mut state = state();
        append(&mut state, producer(5, 0, 0, 2), 0, 2).expect("first");
        let before = state.get(5).cloned();
        // Its next batch failed: the entry already expects it.
        state.hold_at(&producer(5, 0, 2, 1), NOW_MS);
        // A batch that would be refused (a gap) or a duplicate holds nothing.
        state.hold_at(&producer(5, 0, 9, 1), NOW_MS);
        state.hold_at(&producer(5, 0, 0, 2), NOW_MS);
        assert_eq!(state.get(5).cloned(), before);
        // A new epoch's first batch failed: its later batches are refused by the epoch rule.
        state.hold_at(&producer(5, 1, 0, 1), NOW_MS);
        assert_eq!(state.get(5).cloned(), before);
        assert!(matches!(
            state.check(&producer(5, 1, 1, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
    }

    #[test]
    fn a_rollback_of_batches_not_yet_durable_leaves_the_last_five_durable_ones() {
        let mut state = state();
        for index in 0..5u64 {
            state.record(
                &producer(1, 0, index as i32, 1),
                index,
                index + 1,
                5,
                NOW_MS,
            );
        }
        // Five more are appended but not durable: the window must not slide past durable ones.
        for index in 5..10u64 {
            assert_eq!(
                state.check(&producer(1, 0, index as i32, 1)),
                Ok(Verdict::Append)
            );
            state.record(
                &producer(1, 0, index as i32, 1),
                index,
                index + 1,
                5,
                NOW_MS,
            );
        }
        state.truncate_from(5);
        assert_eq!(
            state.get(1).expect("kept").batches.len(),
            PRODUCER_BATCHES_RETAINED
        );
        // A resend of a durable batch (its response lost) is still recognised.
        assert_eq!(
            state.check(&producer(1, 0, 0, 1)),
            Ok(Verdict::Duplicate {
                base_offset: 0,
                next_offset: 1
            })
        );
        assert_eq!(state.check(&producer(1, 0, 5, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn once_durable_only_the_last_five_batches_are_kept() {
        let mut state = state();
        for index in 0..8u64 {
            state.record(
                &producer(1, 0, index as i32, 1),
                index,
                index + 1,
                0,
                NOW_MS,
            );
        }
        assert_eq!(state.get(1).expect("recorded").batches.len(), 8);
        state.record(&producer(1, 0, 8, 1), 8, 9, 9, NOW_MS);
        let batches = &state.get(1).expect("recorded").batches;
        assert_eq!(batches.len(), PRODUCER_BATCHES_RETAINED);
        assert_eq!(batches.front().map(|batch| batch.base_offset), Some(4));
        state.record(&producer(2, 0, 0, 1), 9, 10, 0, NOW_MS);
        state.record(&producer(2, 0, 1, 1), 10, 11, 0, NOW_MS);
        for index in 11..17u64 {
            state.record(
                &producer(2, 0, index as i32 - 9, 1),
                index,
                index + 1,
                0,
                NOW_MS,
            );
        }
        state.trim_to_retained();
        assert_eq!(
            state.get(2).expect("recorded").batches.len(),
            PRODUCER_BATCHES_RETAINED
        );
    }

    #[test]
    fn producers_whose_last_batch_is_before_the_log_start_are_dropped() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 1), 0, 1).expect("first");
        append(&mut state, producer(2, 0, 0, 1), 1, 1).expect("second");
        append(&mut state, producer(1, 0, 1, 1), 2, 1).expect("third");
        assert_eq!(state.drop_before(2), 1);
        assert!(state.get(2).is_none());
        assert!(state.get(1).is_some(), "its last batch is after the start");
    }

    #[test]
    fn a_replayed_batch_that_starts_the_sequence_over_restarts_the_entry() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 1), 0, 1).expect("first");
        append(&mut state, producer(1, 0, 1, 1), 1, 1).expect("second");
        // The producer was forgotten (its batches went with the log start) and resent
        // sequence 0; a replay from before the log start records both runs.
        state.record(&producer(1, 0, 0, 1), 5, 6, 6, NOW_MS);
        assert_eq!(state.get(1).expect("recorded").batches.len(), 1);
        assert_eq!(
            state.check(&producer(1, 0, 0, 1)),
            Ok(Verdict::Duplicate {
                base_offset: 5,
                next_offset: 6
            })
        );
        assert_eq!(state.check(&producer(1, 0, 1, 1)), Ok(Verdict::Append));
    }

    #[test]
    fn producers_idle_for_the_expiry_time_expire() {
        let mut state = ProducerState::new(16, 1_000);
        state.record(&producer(1, 0, 0, 1), 0, 1, 1, NOW_MS);
        state.record(&producer(2, 0, 0, 1), 1, 2, 2, NOW_MS + 600);
        assert_eq!(state.expire(NOW_MS + 1_000), 0);
        assert_eq!(state.expire(NOW_MS + 1_001), 1);
        assert!(state.get(1).is_none());
        assert!(state.get(2).is_some());
    }

    #[test]
    fn a_full_state_evicts_the_producer_that_appended_longest_ago() {
        let mut state = ProducerState::new(3, u64::MAX);
        for id in 0..3 {
            state.record(
                &producer(id, 0, 0, 1),
                id as u64,
                id as u64 + 1,
                id as u64 + 1,
                NOW_MS + id,
            );
        }
        // Producer 0 appends again: now producer 1 is the one idle longest.
        state.record(&producer(0, 0, 1, 1), 3, 4, 4, NOW_MS + 10);
        state.record(&producer(9, 0, 0, 1), 4, 5, 5, NOW_MS + 11);
        assert_eq!(state.len(), 3);
        assert!(state.get(1).is_none());
        for id in [0, 2, 9] {
            assert!(state.get(id).is_some(), "{id}");
        }
    }

    #[test]
    fn a_full_state_expires_before_it_evicts() {
        let mut state = ProducerState::new(2, 100);
        state.record(&producer(1, 0, 0, 1), 0, 1, 1, NOW_MS);
        state.record(&producer(2, 0, 0, 1), 1, 2, 2, NOW_MS + 500);
        state.record(&producer(3, 0, 0, 1), 2, 3, 3, NOW_MS + 550);
        // Producer 1 had expired, so nobody else had to go.
        assert!(state.get(1).is_none());
        assert!(state.get(2).is_some() && state.get(3).is_some());
    }

    #[test]
    fn a_marker_of_a_newer_epoch_fences_the_old_one_and_restarts_the_sequence() {
        let mut state = state();
        append(&mut state, producer(1, 0, 0, 5), 0, 5).expect("first");
        state.observe_marker_epoch(1, 0);
        assert_eq!(state.check(&producer(1, 0, 5, 1)), Ok(Verdict::Append));
        state.observe_marker_epoch(1, 1);
        assert!(matches!(
            state.check(&producer(1, 0, 5, 1)),
            Err(ProducerRefusal::ProducerFenced { .. })
        ));
        assert!(matches!(
            state.check(&producer(1, 1, 3, 1)),
            Err(ProducerRefusal::OutOfOrderSequence {
                expected_sequence: 0,
                ..
            })
        ));
        assert_eq!(state.check(&producer(1, 1, 0, 1)), Ok(Verdict::Append));
        state.observe_marker_epoch(9, 4);
        assert!(state.get(9).is_none());
    }

    #[test]
    fn sequence_order_looks_back_half_the_space() {
        assert!(is_before(4, 5));
        assert!(is_before(i32::MAX, 0));
        assert!(!is_before(5, 5));
        assert!(!is_before(6, 5));
        assert!(!is_before(0, i32::MAX));
    }
}
