//! The producer's buffer memory: a byte budget that every accepted record holds until its batch
//! is acknowledged or fails. When it is spent, `send` waits (async or blocking) or fails,
//! which is the producer's backpressure.
//!
//! Waiting is runtime-agnostic: async waiters park a `Waker`, blocking waiters a `Condvar`.
//! This file counts bytes; it does not know what they hold.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

/// A bounded byte budget.
pub(crate) struct BufferMemory {
    limit_bytes: usize,
    state: Mutex<MemoryState>,
    freed: Condvar,
}

struct MemoryState {
    used_bytes: usize,
    /// Async waiters; all are woken on every release and re-check.
    waiters: Vec<Waker>,
    /// Threads and tasks waiting; the sender seals batches early while anyone waits.
    waiting: usize,
}

impl BufferMemory {
    pub(crate) fn new(limit_bytes: usize) -> Self {
        Self {
            limit_bytes,
            state: Mutex::new(MemoryState {
                used_bytes: 0,
                waiters: Vec::new(),
                waiting: 0,
            }),
            freed: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, MemoryState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn limit_bytes(&self) -> usize {
        self.limit_bytes
    }

    pub(crate) fn used_bytes(&self) -> usize {
        self.lock().used_bytes
    }

    /// Whether a `send` is waiting for memory right now.
    pub(crate) fn has_waiters(&self) -> bool {
        self.lock().waiting > 0
    }

    /// Takes `bytes` if they are free now.
    pub(crate) fn try_reserve(&self, bytes: usize) -> bool {
        let mut state = self.lock();
        self.take(&mut state, bytes)
    }

    fn take(&self, state: &mut MemoryState, bytes: usize) -> bool {
        debug_assert!(
            bytes <= self.limit_bytes,
            "callers refuse larger records first"
        );
        if state.used_bytes + bytes > self.limit_bytes {
            return false;
        }
        state.used_bytes += bytes;
        true
    }

    /// Blocks until `bytes` are free or `deadline` passes; false on timeout.
    pub(crate) fn reserve_blocking(&self, bytes: usize, deadline: Instant) -> bool {
        let mut state = self.lock();
        state.waiting += 1;
        let reserved = loop {
            if self.take(&mut state, bytes) {
                break true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break false;
            }
            state = self
                .freed
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        };
        state.waiting -= 1;
        reserved
    }

    /// Waits until `bytes` are free. The caller races it against its own timer.
    pub(crate) fn reserve(&self, bytes: usize) -> Reserve<'_> {
        Reserve {
            memory: self,
            bytes,
            counted: false,
            done: false,
        }
    }

    /// Returns `bytes` to the budget and wakes every waiter.
    pub(crate) fn release(&self, bytes: usize) {
        let waiters = {
            let mut state = self.lock();
            assert!(
                state.used_bytes >= bytes,
                "released more buffer memory than was reserved"
            );
            state.used_bytes -= bytes;
            std::mem::take(&mut state.waiters)
        };
        self.freed.notify_all();
        waiters.into_iter().for_each(Waker::wake);
    }
}

/// Future of [`BufferMemory::reserve`]. Dropping it before it is ready reserves nothing.
pub(crate) struct Reserve<'a> {
    memory: &'a BufferMemory,
    bytes: usize,
    counted: bool,
    done: bool,
}

impl Future for Reserve<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let memory = self.memory;
        let mut state = memory.lock();
        if memory.take(&mut state, self.bytes) {
            if self.counted {
                state.waiting -= 1;
                self.counted = false;
            }
            self.done = true;
            return Poll::Ready(());
        }
        if !self.counted {
            state.waiting += 1;
            self.counted = true;
        }
        state.waiters.push(context.waker().clone());
        Poll::Pending
    }
}

impl Drop for Reserve<'_> {
    fn drop(&mut self) {
        if self.counted && !self.done {
            self.memory.lock().waiting -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_blocked_reservation_proceeds_when_memory_is_released() {
        let memory = Arc::new(BufferMemory::new(100));
        assert!(memory.try_reserve(80));
        assert!(!memory.try_reserve(30));
        let waiter = {
            let memory = memory.clone();
            std::thread::spawn(move || {
                memory.reserve_blocking(30, Instant::now() + Duration::from_secs(10))
            })
        };
        while !memory.has_waiters() {
            std::thread::sleep(Duration::from_millis(1));
        }
        memory.release(80);
        assert!(waiter.join().unwrap());
        assert_eq!(memory.used_bytes(), 30);
        assert!(!memory.has_waiters());
    }

    #[test]
    fn a_blocked_reservation_times_out_and_takes_nothing() {
        let memory = BufferMemory::new(10);
        assert!(memory.try_reserve(10));
        assert!(!memory.reserve_blocking(1, Instant::now() + Duration::from_millis(20)));
        assert_eq!(memory.used_bytes(), 10);
    }
}
