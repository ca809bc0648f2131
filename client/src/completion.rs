//! Runtime-agnostic one-shot results: what every asynchronous operation of the client hands back.
//!
//! A [`Completion`] is completed once, from the client's I/O thread, and read once by the
//! application: awaited as a `Future` (any executor: it only stores and wakes a `Waker`), or
//! waited for with [`Completion::wait`] from a plain thread (a `Condvar`). It knows nothing of
//! what it carries; producers, consumers and the admin API decide what to complete it with.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::error::Error;

/// The eventual result of an operation the client runs on its I/O thread.
///
/// Await it from any async runtime, or call [`Completion::wait`] from a plain thread. Dropping
/// it does not cancel the operation (a record already accepted by a producer is still
/// delivered); it only discards the result.
///
/// ```no_run
/// # fn demo(admin: spate_client::Admin) -> Result<(), spate_client::Error> {
/// // From a plain thread:
/// let topics = admin.list_topics().wait()?;
/// # Ok(()) }
/// # async fn demo_async(admin: spate_client::Admin) -> Result<(), spate_client::Error> {
/// // From any async runtime:
/// let topics = admin.list_topics().await?;
/// # Ok(()) }
/// ```
#[must_use = "a Completion does nothing useful unless its result is read"]
pub struct Completion<T> {
    shared: Arc<Shared<T>>,
}

/// The sending half: completes a [`Completion`] exactly once. Dropping it unused completes the
/// other side with [`Error::Closed`], so a waiter never hangs on a lost operation.
pub(crate) struct Completer<T> {
    shared: Option<Arc<Shared<T>>>,
    /// Reported if this completer is dropped without a result.
    dropped_by: &'static str,
}

struct Shared<T> {
    state: Mutex<State<T>>,
    ready: Condvar,
}

struct State<T> {
    result: Option<Result<T, Error>>,
    /// Set once the result has been taken, so that a second poll cannot hang.
    taken: bool,
    waker: Option<Waker>,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding this lock cannot leave the state half-written (each critical
        // section is one assignment), so a poisoned lock is still consistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Creates a connected pair. `dropped_by` names the component whose loss would drop the
/// completer (for the error message).
pub(crate) fn completion<T>(dropped_by: &'static str) -> (Completer<T>, Completion<T>) {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            result: None,
            taken: false,
            waker: None,
        }),
        ready: Condvar::new(),
    });
    (
        Completer {
            shared: Some(shared.clone()),
            dropped_by,
        },
        Completion { shared },
    )
}

impl<T> Completer<T> {
    /// Stores the result and wakes the waiter, if any.
    pub(crate) fn complete(mut self, result: Result<T, Error>) {
        if let Some(shared) = self.shared.take() {
            fill(&shared, result);
        }
    }
}

fn fill<T>(shared: &Shared<T>, result: Result<T, Error>) {
    let waker = {
        let mut state = shared.lock();
        debug_assert!(state.result.is_none(), "a completion is completed once");
        state.result = Some(result);
        state.waker.take()
    };
    shared.ready.notify_all();
    if let Some(waker) = waker {
        waker.wake();
    }
}

impl<T> Drop for Completer<T> {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.take() {
            fill(
                &shared,
                Err(Error::Closed {
                    what: self.dropped_by,
                }),
            );
        }
    }
}

impl<T> Completion<T> {
    /// A completion that is already complete.
    pub(crate) fn ready(result: Result<T, Error>) -> Self {
        let (completer, completion) = completion("nothing");
        completer.complete(result);
        completion
    }

    /// Blocks the calling thread until the result is there.
    ///
    /// Do not call it on the client's own I/O thread (from a delivery callback): that thread
    /// is the one that would complete it.
    pub fn wait(self) -> Result<T, Error> {
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = take(&mut state) {
                return result;
            }
            state = self
                .shared
                .ready
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
    }

    /// Blocks for at most `timeout`; `None` if the result did not arrive in time (the
    /// completion stays usable).
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<Result<T, Error>> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            if let Some(result) = take(&mut state) {
                return Some(result);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            state = self
                .shared
                .ready
                .wait_timeout(state, left)
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .0;
        }
    }

    /// The result if it is already there, without waiting.
    pub fn try_take(&mut self) -> Option<Result<T, Error>> {
        take(&mut self.shared.lock())
    }

    /// Whether the result has arrived (and not been taken yet).
    pub fn is_complete(&self) -> bool {
        self.shared.lock().result.is_some()
    }
}

fn take<T>(state: &mut State<T>) -> Option<Result<T, Error>> {
    if state.taken {
        return Some(Err(Error::Closed {
            what: "completion (its result was already taken)",
        }));
    }
    let result = state.result.take()?;
    state.taken = true;
    Some(result)
}

impl<T> Future for Completion<T> {
    type Output = Result<T, Error>;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        if let Some(result) = take(&mut state) {
            return Poll::Ready(result);
        }
        match &state.waker {
            Some(waker) if waker.will_wake(context.waker()) => {}
            _ => state.waker = Some(context.waker().clone()),
        }
        Poll::Pending
    }
}

impl<T> std::fmt::Debug for Completion<T> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Completion")
            .field("complete", &self.is_complete())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_waiter_receives_a_result_completed_on_another_thread() {
        let (completer, completion) = completion::<u32>("test");
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            completer.complete(Ok(7));
        });
        assert_eq!(completion.wait().unwrap(), 7);
        thread.join().unwrap();
    }

    #[test]
    fn a_dropped_completer_completes_with_closed() {
        let (completer, completion) = completion::<u32>("the producer");
        drop(completer);
        match completion.wait() {
            Err(Error::Closed { what }) => assert_eq!(what, "the producer"),
            other => panic!("expected Closed, got {other:?}"),
        }
    }

    #[test]
    fn wait_timeout_returns_none_until_the_result_arrives() {
        let (completer, mut completion) = completion::<u32>("test");
        assert!(completion.wait_timeout(Duration::from_millis(10)).is_none());
        completer.complete(Ok(3));
        assert_eq!(
            completion
                .wait_timeout(Duration::from_millis(10))
                .unwrap()
                .unwrap(),
            3
        );
    }

    #[test]
    fn the_future_is_woken_from_another_thread_on_a_foreign_runtime() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap();
        let (completer, completion) = completion::<&'static str>("test");
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            completer.complete(Ok("done"));
        });
        assert_eq!(runtime.block_on(completion).unwrap(), "done");
    }
}
