//! [`LogThrottle`]: one log line per interval for an event that can repeat without end (refused
//! connections, EMFILE on accept, reads of a damaged batch), with a count of the lines held
//! back, so that a flood costs a line every few seconds instead of one per event. Each user owns
//! its throttle (per shard, per partition); nothing here is shared between threads.

use std::time::{Duration, Instant};

/// Lets one log line through per interval and counts the ones held back, so a flood (refused
/// connections, EMFILE) costs a line every few seconds instead of one per event.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl LogThrottle {
    pub fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(events held back since the last line)` when a line may be written now.
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < self.interval => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_throttle_lets_one_line_through_per_interval_and_counts_the_rest() {
        let mut throttle = LogThrottle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(throttle.due(start), Some(0));
        assert_eq!(throttle.due(start + Duration::from_secs(1)), None);
        assert_eq!(throttle.due(start + Duration::from_secs(2)), None);
        assert_eq!(throttle.due(start + Duration::from_secs(11)), Some(2));
    }
}
