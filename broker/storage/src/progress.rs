//! A runtime-agnostic "something changed" signal for the tasks of one shard.
//!
//! Waiters note the generation, check their condition, and if it does not hold await
//! [`Progress::changed`]; whoever changes shared state calls [`Progress::notify_all`]. A waiter
//! that misses nothing: a change between its check and its await bumps the generation, so the
//! await completes at once. Not `Send`: it lives on one shard's thread with the log that owns it.
//! The number of registered wakers is bounded by the number of tasks waiting at once.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

#[derive(Debug, Default)]
pub struct Progress {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Option<Waker>>>,
    free_slots: RefCell<Vec<usize>>,
}

impl Progress {
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        // Take the wakers out before waking: a woken future may be polled re-entrantly by some
        // executors and would then try to register again.
        let wakers: Vec<Waker> = self
            .wakers
            .borrow_mut()
            .iter_mut()
            .filter_map(Option::take)
            .collect();
        for waker in wakers {
            waker.wake();
        }
    }

    /// Completes once the generation differs from `seen`.
    pub fn changed(&self, seen: u64) -> Changed<'_> {
        Changed {
            progress: self,
            seen,
            slot: None,
        }
    }

    fn register(&self, slot: &mut Option<usize>, waker: &Waker) {
        let mut wakers = self.wakers.borrow_mut();
        match *slot {
            Some(index) => match &mut wakers[index] {
                Some(existing) if existing.will_wake(waker) => {}
                entry => *entry = Some(waker.clone()),
            },
            None => {
                let index = match self.free_slots.borrow_mut().pop() {
                    Some(index) => index,
                    None => {
                        wakers.push(None);
                        wakers.len() - 1
                    }
                };
                wakers[index] = Some(waker.clone());
                *slot = Some(index);
            }
        }
    }

    fn release(&self, index: usize) {
        self.wakers.borrow_mut()[index] = None;
        self.free_slots.borrow_mut().push(index);
    }
}

/// The future returned by [`Progress::changed`].
pub struct Changed<'a> {
    progress: &'a Progress,
    seen: u64,
    slot: Option<usize>,
}

impl Future for Changed<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if this.progress.generation() != this.seen {
            return Poll::Ready(());
        }
        this.progress.register(&mut this.slot, context.waker());
        Poll::Pending
    }
}

impl Drop for Changed<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.slot.take() {
            self.progress.release(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn changed_completes_after_notify_and_not_before() {
        let progress = Progress::default();
        let seen = progress.generation();
        let mut waiting = Box::pin(progress.changed(seen));
        assert!(future::block_on(future::poll_once(&mut waiting)).is_none());
        progress.notify_all();
        assert!(future::block_on(future::poll_once(&mut waiting)).is_some());
    }

    #[test]
    fn a_change_before_the_await_is_not_missed() {
        let progress = Progress::default();
        let seen = progress.generation();
        progress.notify_all();
        future::block_on(progress.changed(seen));
    }

    #[test]
    fn dropped_waiters_give_their_slot_back() {
        let progress = Progress::default();
        for _ in 0..100 {
            let mut waiting = Box::pin(progress.changed(progress.generation()));
            let _ = future::block_on(future::poll_once(&mut waiting));
        }
        assert_eq!(progress.wakers.borrow().len(), 1);
    }
}
