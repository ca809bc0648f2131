//! acks=all produce requests waiting on one partition's high watermark, keyed by the end
//! offset of what they appended: each is handed back once the high watermark reaches its end,
//! or all at once when they must fail (leadership lost, ISR below `min.insync.replicas`).
//!
//! Generic over what a waiter is (the shard keeps a completion slot, tests a number), so the
//! ordering rules are tested without an executor. Bounded: `acks_all_waiters_max`.

use std::collections::BTreeMap;

/// Waiters of one partition, oldest end offset first.
#[derive(Debug)]
pub struct AckWaiters<T> {
    by_end_offset: BTreeMap<u64, Vec<T>>,
    count: usize,
    count_max: usize,
}

impl<T> AckWaiters<T> {
    pub fn new(count_max: usize) -> Self {
        Self {
            by_end_offset: BTreeMap::new(),
            count: 0,
            count_max,
        }
    }

    /// Adds a waiter for the high watermark to reach `end_offset`; gives it back when
    /// `count_max` wait already.
    pub fn add(&mut self, end_offset: u64, waiter: T) -> Result<(), T> {
        if self.count >= self.count_max {
            return Err(waiter);
        }
        self.by_end_offset
            .entry(end_offset)
            .or_default()
            .push(waiter);
        self.count += 1;
        Ok(())
    }

    /// Takes every waiter whose end offset is at or below `high_watermark`, oldest first.
    pub fn take_reached(&mut self, high_watermark: u64) -> Vec<T> {
        let later = self
            .by_end_offset
            .split_off(&(high_watermark.saturating_add(1)));
        let reached = std::mem::replace(&mut self.by_end_offset, later);
        let taken: Vec<T> = reached.into_values().flatten().collect();
        self.count -= taken.len();
        taken
    }

    /// Takes every waiter (they are to fail).
    pub fn take_all(&mut self) -> Vec<T> {
        self.count = 0;
        std::mem::take(&mut self.by_end_offset)
            .into_values()
            .flatten()
            .collect()
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiters_are_handed_back_when_the_high_watermark_reaches_their_end() {
        let mut waiters = AckWaiters::new(10);
        waiters.add(30, "c").unwrap();
        waiters.add(10, "a").unwrap();
        waiters.add(20, "b").unwrap();
        waiters.add(20, "b2").unwrap();
        assert!(waiters.take_reached(9).is_empty());
        assert_eq!(waiters.take_reached(10), vec!["a"]);
        assert_eq!(waiters.take_reached(25), vec!["b", "b2"]);
        assert_eq!(waiters.len(), 1);
        assert_eq!(waiters.take_all(), vec!["c"]);
        assert!(waiters.is_empty());
    }

    #[test]
    fn waiters_past_the_limit_are_refused() {
        let mut waiters = AckWaiters::new(2);
        waiters.add(1, 1).unwrap();
        waiters.add(2, 2).unwrap();
        assert_eq!(waiters.add(3, 3), Err(3));
        assert_eq!(waiters.take_reached(u64::MAX), vec![1, 2]);
        waiters.add(3, 3).unwrap();
    }
}
