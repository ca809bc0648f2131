//! Shard-local wake-ups: "a partition got new data" for long-polling fetches, and "the broker is
//! shutting down" for accept loops, connections and waits.
//!
//! Both live on one shard's thread (`Rc`, `Cell`, `RefCell`); nothing here crosses threads except
//! the process-wide shutdown flag, which the signal thread (or a failing shard) sets. A thread
//! outside a shard's executor cannot wake a glommio task directly, so each shard subscribes to the
//! flag with one end of a socket pair: setting the flag writes a byte to every subscriber, and the
//! shard's watcher task, parked on an io_uring read of its end, wakes, and fires the shard's
//! shutdown event, which wakes every waiter at once. An idle broker therefore does no periodic
//! work for shutdown, and a waiting connection costs no CPU until then, however many there are.
//! (If the socket pair cannot be made, descriptors being exhausted at start, that shard falls back
//! to looking at the flag every `SHUTDOWN_POLL_INTERVAL_MS`, and says so.)

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::os::unix::net::UnixStream;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_lite::AsyncReadExt;
use glommio::sync::Semaphore;

/// How often a shard's watcher looks at the process-wide shutdown flag when it has no event to
/// wait on (its socket pair could not be made).
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

/// The process-wide "stop" flag, set by the signal-handling thread (SIGTERM/SIGINT) or by a
/// shard that failed; shared by every thread (`Arc`).
#[derive(Debug, Clone, Default)]
pub struct ShutdownFlag(Arc<FlagState>);

#[derive(Debug, Default)]
struct FlagState {
    requested: AtomicBool,
    /// The flag's ends of the subscribers' socket pairs (non-blocking): one byte each on request.
    subscribers: Mutex<Vec<UnixStream>>,
}

impl ShutdownFlag {
    /// Sets the flag and wakes every subscriber. Not for a signal handler (it takes a lock).
    pub fn request(&self) {
        self.0.requested.store(true, Ordering::SeqCst);
        let subscribers = self
            .0
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for subscriber in subscribers.iter() {
            // A full buffer already holds a wake-up; a closed end has nobody left to wake.
            let _ = (&*subscriber).write(&[1]);
        }
    }

    pub fn is_requested(&self) -> bool {
        self.0.requested.load(Ordering::SeqCst)
    }

    /// A socket that becomes readable once the flag is set (at once if it is already set). The
    /// flag keeps the other end for as long as it lives.
    pub fn subscribe(&self) -> io::Result<UnixStream> {
        let (subscriber, flag_end) = UnixStream::pair()?;
        flag_end.set_nonblocking(true)?;
        let mut subscribers = self
            .0
            .subscribers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Under the lock: a request either sees this end in the list or set the flag before
        // this check (it sets the flag before it takes the lock).
        if self.is_requested() {
            let _ = (&flag_end).write(&[1]);
        }
        subscribers.push(flag_end);
        Ok(subscriber)
    }
}

/// Requests shutdown on SIGTERM or SIGINT from a thread of its own, which sleeps until one
/// comes (signal-hook's handler only writes to a pipe; taking the flag's lock to wake the shards
/// is not safe in a handler). Dropping it stops and joins the thread.
pub struct SignalListener {
    handle: signal_hook::iterator::Handle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl SignalListener {
    pub fn start(flag: &ShutdownFlag) -> io::Result<SignalListener> {
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGINT,
        ])?;
        let handle = signals.handle();
        let flag = flag.clone();
        let thread = std::thread::Builder::new()
            .name("signals".to_string())
            .spawn(move || {
                for _ in signals.forever() {
                    flag.request();
                }
            })?;
        Ok(SignalListener {
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for SignalListener {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
        match flag.subscribe() {
            Ok(subscriber) => {
                // SAFETY: a fresh socket, handed over whole to glommio, which closes it.
                let mut subscriber =
                    unsafe { glommio::net::UnixStream::from_raw_fd(subscriber.into_raw_fd()) };
                let mut byte = [0u8; 1];
                // Ends with the byte a request writes (or an error: then the loop below decides).
                let _ = subscriber.read(&mut byte).await;
            }
            Err(error) => tracing::warn!(
                %error,
                interval_ms = SHUTDOWN_POLL_INTERVAL_MS,
                "no shutdown event for this shard; looking at the flag at an interval instead"
            ),
        }
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

    #[test]
    fn a_request_from_another_thread_wakes_the_waiters_of_a_shard() {
        let flag = ShutdownFlag::default();
        let requester = {
            let flag = flag.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(200));
                flag.request();
            })
        };
        LocalExecutor::default().run(async move {
            let shutdown = ShardShutdown::new(flag.clone());
            shutdown.requested().await;
            assert!(flag.is_requested());
        });
        requester.join().unwrap();
    }

    #[test]
    fn a_shard_waiting_for_shutdown_runs_no_task_until_it_comes() {
        LocalExecutor::default().run(async {
            let flag = ShutdownFlag::default();
            let shutdown = ShardShutdown::new(flag.clone());
            let waiter = {
                let shutdown = shutdown.clone();
                glommio::spawn_local(async move { shutdown.requested().await })
            };
            // Let the watcher start and park on its event.
            glommio::timer::sleep(Duration::from_millis(20)).await;
            let _ = glommio::executor().executor_stats(); // Taking the statistics resets them.
            glommio::timer::sleep(Duration::from_millis(10 * SHUTDOWN_POLL_INTERVAL_MS)).await;
            let ran = glommio::executor().executor_stats().tasks_executed();
            // This task, woken by its own timer; a watcher polling the flag would run ten times.
            assert!(ran <= 2, "{ran} task runs while nothing happened");
            flag.request();
            waiter.await;
        });
    }

    #[test]
    fn a_subscription_after_the_request_is_readable_at_once() {
        let flag = ShutdownFlag::default();
        flag.request();
        let mut subscriber = flag.subscribe().unwrap();
        let mut byte = [0u8; 1];
        use std::io::Read;
        subscriber.read_exact(&mut byte).unwrap();
    }
}
