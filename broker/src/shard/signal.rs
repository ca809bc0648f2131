//! Shard-local wake-ups: "a partition got new data" for long-polling fetches, and "the broker is
//! shutting down" for accept loops and waits.
//!
//! Both live on one shard's thread (`Rc`, `Cell`, `RefCell`); nothing here crosses threads except
//! the process-wide shutdown flag, an atomic that the signal thread sets and each shard polls.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

/// How often a shard looks at the process-wide shutdown flag.
pub const SHUTDOWN_POLL_INTERVAL_MS: u64 = 50;

/// Wakes the tasks waiting for a partition to grow. Owned by one shard; one per partition.
///
/// Waiters register under an id and unregister when their future is dropped, so a partition that
/// never receives data does not collect stale wakers from fetches that timed out.
#[derive(Debug, Default)]
pub struct AppendSignal {
    generation: Cell<u64>,
    next_waiter: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl AppendSignal {
    /// Called after every append: wakes every waiter.
    pub fn notify(&self) {
        self.generation.set(self.generation.get() + 1);
        let waiters: Vec<Waker> = self
            .waiters
            .borrow_mut()
            .drain()
            .map(|(_, waker)| waker)
            .collect();
        for waker in waiters {
            waker.wake();
        }
    }

    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    fn register(&self, id: Option<u64>, waker: &Waker) -> u64 {
        let id = id.unwrap_or_else(|| {
            let id = self.next_waiter.get();
            self.next_waiter.set(id + 1);
            id
        });
        self.waiters.borrow_mut().insert(id, waker.clone());
        id
    }

    fn unregister(&self, id: u64) {
        self.waiters.borrow_mut().remove(&id);
    }
}

/// Resolves when any of the signals moves past the generation it had when the wait began.
pub struct AnyAppend {
    watched: Vec<(Rc<AppendSignal>, u64, Option<u64>)>,
}

impl AnyAppend {
    pub fn new(signals: Vec<Rc<AppendSignal>>) -> Self {
        AnyAppend {
            watched: signals
                .into_iter()
                .map(|signal| {
                    let generation = signal.generation();
                    (signal, generation, None)
                })
                .collect(),
        }
    }
}

impl Future for AnyAppend {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        for (signal, generation, waiter) in self.watched.iter_mut() {
            if signal.generation() != *generation {
                return Poll::Ready(());
            }
            *waiter = Some(signal.register(*waiter, context.waker()));
        }
        Poll::Pending
    }
}

impl Drop for AnyAppend {
    fn drop(&mut self) {
        for (signal, _, waiter) in &self.watched {
            if let Some(id) = waiter {
                signal.unregister(*id);
            }
        }
    }
}

/// The process-wide "stop" flag, set by the signal-handling thread (SIGTERM/SIGINT).
#[derive(Debug, Clone, Default)]
pub struct ShutdownFlag(Arc<AtomicBool>);

impl ShutdownFlag {
    pub fn request(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// Resolves once shutdown is requested. Polls the flag on the shard's timer: the flag is set
    /// from another thread, which cannot wake a glommio task directly.
    pub async fn requested(&self) {
        while !self.is_requested() {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_INTERVAL_MS)).await;
        }
    }

    /// The raw flag, for `signal_hook::flag::register`.
    pub fn as_atomic(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use glommio::LocalExecutor;

    #[test]
    fn a_waiter_wakes_when_any_watched_partition_grows() {
        LocalExecutor::default().run(async {
            let first = Rc::new(AppendSignal::default());
            let second = Rc::new(AppendSignal::default());
            let waiting = glommio::spawn_local(AnyAppend::new(vec![first.clone(), second.clone()]));
            glommio::timer::sleep(Duration::from_millis(5)).await;
            assert_eq!(second.waiters.borrow().len(), 1);
            second.notify();
            waiting.await;
        });
    }

    #[test]
    fn a_dropped_waiter_leaves_no_waker_behind() {
        LocalExecutor::default().run(async {
            let signal = Rc::new(AppendSignal::default());
            let timed_out = glommio::timer::timeout(Duration::from_millis(5), async {
                AnyAppend::new(vec![signal.clone()]).await;
                Ok(())
            })
            .await;
            assert!(timed_out.is_err());
            assert!(signal.waiters.borrow().is_empty());
        });
    }
}
