//! Shard-local wake-ups: "a partition got new data" for long-polling fetches, and "the broker is
//! shutting down" for accept loops, connections and waits.
//!
//! Both live on one shard's thread (`Rc`, `Cell`, `RefCell`); nothing here crosses threads except
//! the process-wide shutdown flag, an atomic that the signal thread sets. One watcher task per
//! shard looks at it (a thread outside the executor cannot wake a glommio task directly) and,
//! when it is set, fires the shard's shutdown event, which wakes every waiter at once. A waiting
//! connection therefore costs no CPU until then, however many there are.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use glommio::sync::Semaphore;

/// How often a shard's watcher looks at the process-wide shutdown flag.
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

    /// The raw flag, for `signal_hook::flag::register`.
    pub fn as_atomic(&self) -> Arc<AtomicBool> {
        self.0.clone()
    }
}

/// One shard's view of the shutdown flag: the flag itself, and an event that wakes every task
/// of the shard waiting for shutdown. Owned by one shard thread; lives as long as its shard.
#[derive(Debug, Clone)]
pub struct ShardShutdown {
    flag: ShutdownFlag,
    /// Never has permits: waiters wait on it until the watcher closes it.
    event: Rc<Semaphore>,
    watching: Rc<Cell<bool>>,
}

impl ShardShutdown {
    pub fn new(flag: ShutdownFlag) -> Self {
        ShardShutdown {
            flag,
            event: Rc::new(Semaphore::new(0)),
            watching: Rc::new(Cell::new(false)),
        }
    }

    pub fn request(&self) {
        self.flag.request();
    }

    pub fn is_requested(&self) -> bool {
        self.flag.is_requested()
    }

    /// Resolves once shutdown is requested. The first waiter starts the shard's watcher; every
    /// waiter then sleeps on the shard's event, not on a timer of its own.
    pub async fn requested(&self) {
        if self.is_requested() {
            return;
        }
        if !self.watching.replace(true) {
            glommio::spawn_local(Self::watch(self.flag.clone(), self.event.clone())).detach();
        }
        // Closing the event is the only way this wait ends (it has no permits to give).
        let _ = self.event.acquire(1).await;
    }

    async fn watch(flag: ShutdownFlag, event: Rc<Semaphore>) {
        while !flag.is_requested() {
            glommio::timer::sleep(Duration::from_millis(SHUTDOWN_POLL_INTERVAL_MS)).await;
        }
        event.close();
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

    #[test]
    fn every_waiter_wakes_once_the_flag_is_set() {
        LocalExecutor::default().run(async {
            let flag = ShutdownFlag::default();
            let shutdown = ShardShutdown::new(flag.clone());
            let waiters: Vec<_> = (0..100)
                .map(|_| {
                    let shutdown = shutdown.clone();
                    glommio::spawn_local(async move { shutdown.requested().await })
                })
                .collect();
            glommio::executor().yield_task_queue_now().await;
            flag.request();
            for waiter in waiters {
                waiter.await;
            }
            // A wait that begins after shutdown ends at once.
            shutdown.requested().await;
        });
    }
}
