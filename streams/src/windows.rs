//! Window definitions: [`TimeWindows`] (tumbling and hopping), [`SlidingWindows`],
//! [`SessionWindows`] and
//! [`JoinWindows`] (stream-stream joins), each with a
//! grace period, and the arithmetic of which windows a timestamp falls in. Keeping windows is
//! the window store's job, closing them the aggregation's (`ops::window`).

/// Fixed-size windows `[start, start + size)`, starting every `advance_ms` from the epoch:
/// tumbling when the advance equals the size, hopping (overlapping) when it is smaller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeWindows {
    /// Each window's length.
    pub size_ms: i64,
    /// The distance between window starts.
    pub advance_ms: i64,
    /// How long after its end a window still accepts records (in stream time).
    pub grace_ms: i64,
}

impl TimeWindows {
    /// Tumbling windows of `size_ms` accepting records until `grace_ms` after their end.
    pub fn of_size_and_grace(size_ms: i64, grace_ms: i64) -> Self {
        assert!(size_ms > 0, "a window has a positive size");
        assert!(grace_ms >= 0, "a grace period is not negative");
        TimeWindows {
            size_ms,
            advance_ms: size_ms,
            grace_ms,
        }
    }

    /// Tumbling windows of `size_ms` that close at their end.
    pub fn of_size_with_no_grace(size_ms: i64) -> Self {
        Self::of_size_and_grace(size_ms, 0)
    }

    /// Hopping windows: the same size, a new window every `advance_ms`.
    pub fn advance_by(self, advance_ms: i64) -> Self {
        assert!(
            advance_ms > 0 && advance_ms <= self.size_ms,
            "a hop is positive and no longer than the window"
        );
        TimeWindows { advance_ms, ..self }
    }

    /// The starts of the windows `timestamp_ms` falls in, earliest first (Kafka Streams'
    /// `TimeWindows::windowsFor`: starts are multiples of the advance, never negative).
    pub fn window_starts_for(&self, timestamp_ms: i64) -> Vec<i64> {
        assert!(timestamp_ms >= 0, "event times are not negative");
        let first = (timestamp_ms - self.size_ms + self.advance_ms).max(0) / self.advance_ms
            * self.advance_ms;
        (0..)
            .map(|hop| first + hop * self.advance_ms)
            .take_while(|start| *start <= timestamp_ms)
            .collect()
    }

    /// How long windows are kept in stream time: until they can no longer change.
    pub fn retention_ms(&self) -> i64 {
        self.size_ms + self.grace_ms
    }
}

/// Sessions: a key's records closer than `inactivity_gap_ms` to each other form one session
/// `[first, last]` (both ends included); a record between two sessions merges them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWindows {
    /// The longest quiet time within one session.
    pub inactivity_gap_ms: i64,
    /// How long after its end a session still accepts records (in stream time).
    pub grace_ms: i64,
}

impl SessionWindows {
    /// Sessions with this gap and grace period.
    pub fn with_inactivity_gap_and_grace(inactivity_gap_ms: i64, grace_ms: i64) -> Self {
        assert!(inactivity_gap_ms > 0, "an inactivity gap is positive");
        assert!(grace_ms >= 0, "a grace period is not negative");
        SessionWindows {
            inactivity_gap_ms,
            grace_ms,
        }
    }

    /// How long after its end a session can still change, in stream time: a record within the
    /// gap can extend it until that record itself is late. Sessions are kept that long.
    pub fn retention_ms(&self) -> i64 {
        self.inactivity_gap_ms + self.grace_ms
    }
}

/// Sliding windows of `time_difference_ms`: windows `[start, start + difference]` (both ends
/// included) defined by the records themselves, as Kafka Streams' `SlidingWindows`: each
/// record at `t` has a window ending at it, `[t - difference, t]`, and one starting just after
/// it, `[t + 1, t + 1 + difference]`, which exists while some record falls in it. Each window's
/// aggregate covers the records whose timestamps it holds, so every distinct set of records
/// within the difference of each other gets one result. A record earlier than the difference
/// (after the epoch) gets a window starting before 0, where Kafka Streams puts such records in
/// `[0, difference]` instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingWindows {
    /// The largest distance between records of one window.
    pub time_difference_ms: i64,
    /// How long after its end a window still accepts records (in stream time).
    pub grace_ms: i64,
}

impl SlidingWindows {
    /// Sliding windows of this difference and grace period.
    pub fn with_time_difference_and_grace(time_difference_ms: i64, grace_ms: i64) -> Self {
        assert!(
            time_difference_ms > 0,
            "a sliding window's difference is positive"
        );
        assert!(grace_ms >= 0, "a grace period is not negative");
        SlidingWindows {
            time_difference_ms,
            grace_ms,
        }
    }
}

/// The window of a stream-stream join: records of the two sides join when their timestamps are
/// at most `time_difference_ms` apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JoinWindows {
    /// The largest distance between joined records' timestamps.
    pub time_difference_ms: i64,
    /// How long after a record's window ends (in stream time) it is still joined.
    pub grace_ms: i64,
}

impl JoinWindows {
    /// Records at most `time_difference_ms` apart join, until `grace_ms` after the window.
    pub fn of_time_difference_and_grace(time_difference_ms: i64, grace_ms: i64) -> Self {
        assert!(time_difference_ms >= 0, "a join window is not negative");
        assert!(grace_ms >= 0, "a grace period is not negative");
        JoinWindows {
            time_difference_ms,
            grace_ms,
        }
    }

    /// Records at most `time_difference_ms` apart join; no grace period.
    pub fn of_time_difference_with_no_grace(time_difference_ms: i64) -> Self {
        Self::of_time_difference_and_grace(time_difference_ms, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_hold_each_timestamp_once() {
        let windows = TimeWindows::of_size_with_no_grace(10);
        assert_eq!(windows.window_starts_for(0), vec![0]);
        assert_eq!(windows.window_starts_for(9), vec![0]);
        assert_eq!(windows.window_starts_for(10), vec![10]);
    }

    #[test]
    fn hopping_windows_hold_each_timestamp_size_over_advance_times() {
        let windows = TimeWindows::of_size_with_no_grace(10).advance_by(5);
        assert_eq!(windows.window_starts_for(12), vec![5, 10]);
        assert_eq!(windows.window_starts_for(3), vec![0]);
        let windows = TimeWindows::of_size_with_no_grace(10).advance_by(3);
        assert_eq!(windows.window_starts_for(10), vec![3, 6, 9]);
    }
}
