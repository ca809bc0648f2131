//! A sleep with microsecond precision for the I/O thread: the producer's linger.
//!
//! tokio's timer wheel has a resolution of one millisecond and rounds every deadline up to its
//! next tick, so a 200 µs linger became a wait of 1-2 ms, which was most of an acks=all record's
//! produce-to-ack latency at low rates. This timer is a Linux `timerfd` registered with the
//! I/O thread's reactor: the kernel's high-resolution timer wakes the thread, at the cost of one
//! file descriptor per sender. It is only for the short waits where precision matters; request
//! timeouts and backoffs keep using tokio's timer. Linux only, like the rest of the client's
//! I/O thread.
//!
//! The descriptor reaches the reactor through tokio's pipe receiver, the one safe way tokio
//! offers to register an owned descriptor (`AsyncFd` needs `unsafe`, and the client forbids
//! it). The receiver only registers the descriptor for readability and `read`s from it, which is
//! all a timerfd needs: each read returns the 8-byte count of expirations, or `EAGAIN` before
//! the first.

use std::io;
use std::time::{Duration, Instant};

use rustix::time::{
    timerfd_create, timerfd_settime, Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags,
    Timespec,
};
use tokio::net::unix::pipe;

/// One re-armable high-resolution timer. Dropping a `sleep_until` future early is safe: the
/// next call re-arms the timer, which also clears an expiration nobody read.
pub(crate) struct PreciseTimer {
    fd: pipe::Receiver,
}

impl PreciseTimer {
    /// Must be called on the I/O thread (inside its tokio runtime).
    pub(crate) fn new() -> io::Result<Self> {
        let fd = timerfd_create(
            TimerfdClockId::Monotonic,
            TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
        )?;
        // Not a pipe, but read like one (see the module doc); non-blocking, as the receiver needs.
        let fd = pipe::Receiver::from_owned_fd_unchecked(fd)?;
        Ok(Self { fd })
    }

    /// Returns at `deadline` (give or take the thread's timer slack), or at once if it passed.
    pub(crate) async fn sleep_until(&mut self, deadline: Instant) -> io::Result<()> {
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Ok(());
        }
        // A relative one-shot timer; setting it resets the count of unread expirations.
        timerfd_settime(
            &self.fd,
            TimerfdTimerFlags::empty(),
            &Itimerspec {
                it_interval: timespec(Duration::ZERO),
                it_value: timespec(remaining),
            },
        )?;
        loop {
            self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            match self.fd.try_read(&mut expirations) {
                Ok(_) => return Ok(()),
                // Readiness left over from an earlier, abandoned wait (`try_read` cleared it):
                // wait for this one.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }
}

fn timespec(duration: Duration) -> Timespec {
    Timespec {
        tv_sec: duration.as_secs() as _,
        tv_nsec: duration.subsec_nanos() as _,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .unwrap()
    }

    #[test]
    fn it_never_returns_before_the_deadline() {
        runtime().block_on(async {
            let mut timer = PreciseTimer::new().unwrap();
            for wait_us in [1, 50, 200, 900, 3_000] {
                let deadline = Instant::now() + Duration::from_micros(wait_us);
                timer.sleep_until(deadline).await.unwrap();
                assert!(
                    Instant::now() >= deadline,
                    "returned early for {wait_us} µs"
                );
            }
        });
    }

    #[test]
    fn an_abandoned_wait_does_not_end_the_next_one_early() {
        runtime().block_on(async {
            let mut timer = PreciseTimer::new().unwrap();
            // Armed, then dropped unfinished: the expiration fires while nobody waits.
            let abandoned = timer.sleep_until(Instant::now() + Duration::from_micros(100));
            let _ = tokio::time::timeout(Duration::from_micros(10), abandoned).await;
            std::thread::sleep(Duration::from_millis(2));
            let deadline = Instant::now() + Duration::from_millis(3);
            timer.sleep_until(deadline).await.unwrap();
            assert!(Instant::now() >= deadline);
        });
    }

    #[test]
    fn a_deadline_in_the_past_returns_at_once() {
        runtime().block_on(async {
            let mut timer = PreciseTimer::new().unwrap();
            let past = Instant::now() - Duration::from_millis(5);
            timer.sleep_until(past).await.unwrap();
        });
    }
}
