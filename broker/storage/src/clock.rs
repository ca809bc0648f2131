//! Time as the storage engine sees it: wall-clock milliseconds for retention and segment age, a
//! monotonic microsecond counter for group commit, and a way to sleep.
//!
//! [`SystemClock`] reads the OS clocks and sleeps on the glommio timer (so it only sleeps inside a
//! glommio executor). [`ManualClock`] is for tests and simulation: time moves only when the test
//! (or a simulator with nothing left to run) moves it, so simulations never wait in real time.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A sleep that runs on the current thread.
pub type LocalSleep = Pin<Box<dyn Future<Output = ()>>>;

/// The source of time for one partition log.
pub trait Clock {
    /// Wall-clock milliseconds since the Unix epoch (record timestamps use the same scale).
    fn now_ms(&self) -> i64;
    /// Microseconds on a clock that never goes backwards.
    fn monotonic_us(&self) -> u64;
    /// Completes after `duration`.
    fn sleep(&self, duration: Duration) -> LocalSleep;
}

/// The operating system's clocks; sleeps on glommio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

fn process_start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(elapsed) => elapsed.as_millis() as i64,
            // A clock set before 1970 is a broken machine; treat it as the epoch.
            Err(_) => 0,
        }
    }

    fn monotonic_us(&self) -> u64 {
        process_start().elapsed().as_micros() as u64
    }

    fn sleep(&self, duration: Duration) -> LocalSleep {
        Box::pin(glommio::timer::sleep(duration))
    }
}

/// A clock that only moves when told to. Sleeps complete when the clock reaches their deadline:
/// a test moves time with [`ManualClock::advance`], or a simulator that has nothing else to run
/// jumps to the earliest sleeper with [`ManualClock::advance_to_next_deadline`] (discrete-event
/// time). Cloning shares the same clock.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Rc<ManualClockInner>,
}

#[derive(Debug)]
struct ManualClockInner {
    now_ms: Cell<i64>,
    monotonic_us: Cell<u64>,
    sleeper_next: Cell<u64>,
    /// (sleeper id, deadline in monotonic microseconds, waker), one per pending sleep.
    sleepers: RefCell<Vec<(u64, u64, Waker)>>,
}

impl ManualClock {
    pub fn new(now_ms: i64) -> Self {
        Self {
            inner: Rc::new(ManualClockInner {
                now_ms: Cell::new(now_ms),
                monotonic_us: Cell::new(0),
                sleeper_next: Cell::new(0),
                sleepers: RefCell::new(Vec::new()),
            }),
        }
    }

    /// Moves both clocks forward and wakes the sleeps that are due.
    pub fn advance(&self, duration: Duration) {
        let inner = &self.inner;
        inner
            .now_ms
            .set(inner.now_ms.get() + duration.as_millis() as i64);
        inner
            .monotonic_us
            .set(inner.monotonic_us.get() + duration.as_micros() as u64);
        let now_us = inner.monotonic_us.get();
        let due: Vec<Waker> = {
            let mut sleepers = inner.sleepers.borrow_mut();
            let (due, waiting): (Vec<_>, Vec<_>) = sleepers
                .drain(..)
                .partition(|(_, deadline, _)| *deadline <= now_us);
            *sleepers = waiting;
            due.into_iter().map(|(_, _, waker)| waker).collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Jumps to the earliest pending sleep deadline and wakes it. Returns false if nothing sleeps.
    pub fn advance_to_next_deadline(&self) -> bool {
        let earliest = self
            .inner
            .sleepers
            .borrow()
            .iter()
            .map(|(_, deadline, _)| *deadline)
            .min();
        match earliest {
            Some(deadline_us) => {
                let now_us = self.inner.monotonic_us.get();
                self.advance(Duration::from_micros(deadline_us.saturating_sub(now_us)));
                true
            }
            None => false,
        }
    }

    /// Sets the wall clock only (it may go backwards, as a real one can); the monotonic clock
    /// is unaffected.
    pub fn set_now_ms(&self, now_ms: i64) {
        self.inner.now_ms.set(now_ms);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.inner.now_ms.get()
    }

    fn monotonic_us(&self) -> u64 {
        self.inner.monotonic_us.get()
    }

    fn sleep(&self, duration: Duration) -> LocalSleep {
        let id = self.inner.sleeper_next.get();
        self.inner.sleeper_next.set(id + 1);
        Box::pin(ManualSleep {
            clock: self.inner.clone(),
            id,
            deadline_us: self.inner.monotonic_us.get() + duration.as_micros() as u64,
        })
    }
}

struct ManualSleep {
    clock: Rc<ManualClockInner>,
    id: u64,
    deadline_us: u64,
}

impl Future for ManualSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        if self.clock.monotonic_us.get() >= self.deadline_us {
            return Poll::Ready(());
        }
        let mut sleepers = self.clock.sleepers.borrow_mut();
        sleepers.retain(|(id, _, _)| *id != self.id);
        sleepers.push((self.id, self.deadline_us, context.waker().clone()));
        Poll::Pending
    }
}

impl Drop for ManualSleep {
    fn drop(&mut self) {
        self.clock
            .sleepers
            .borrow_mut()
            .retain(|(id, _, _)| *id != self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_sleep_completes_only_when_the_clock_reaches_its_deadline() {
        let clock = ManualClock::new(1_000);
        let mut sleep = clock.sleep(Duration::from_millis(5));
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep)).is_none()
        );
        clock.advance(Duration::from_millis(4));
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep)).is_none()
        );
        assert!(clock.advance_to_next_deadline());
        assert!(
            futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep)).is_some()
        );
        assert_eq!(clock.now_ms(), 1_005);
        assert_eq!(clock.monotonic_us(), 5_000);
    }

    #[test]
    fn a_dropped_sleep_no_longer_holds_the_clock() {
        let clock = ManualClock::new(0);
        let mut sleep = clock.sleep(Duration::from_millis(5));
        let _ = futures_lite::future::block_on(futures_lite::future::poll_once(&mut sleep));
        drop(sleep);
        assert!(!clock.advance_to_next_deadline());
    }

    #[test]
    fn system_clock_monotonic_time_does_not_go_backwards() {
        let first = SystemClock.monotonic_us();
        let second = SystemClock.monotonic_us();
        assert!(second >= first);
        assert!(SystemClock.now_ms() > 1_600_000_000_000);
    }
}
