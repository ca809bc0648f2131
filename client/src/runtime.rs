//! The client's own I/O thread: a private tokio current-thread runtime that runs every socket,
//! timer and background task (producer sender, consumer prefetch) of one [`Client`](crate::Client).
//!
//! The application never sees this runtime: work is handed in with [`IoThread::spawn`] and
//! results come back as [`Completion`]s, which any executor (or a plain thread) can wait on.
//! That is what keeps the client usable from tokio, glommio or blocking code alike. The thread
//! stops when the last client handle is dropped; tasks still running are cancelled then.

use std::future::Future;
use std::thread::{JoinHandle, ThreadId};

use tokio::sync::oneshot;

use crate::completion::{completion, Completion};
use crate::error::Error;

/// Owns the I/O thread. Dropping it stops the runtime and joins the thread.
pub(crate) struct IoThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    thread_id: ThreadId,
}

impl IoThread {
    /// Starts the thread, optionally pinned to `core`.
    pub(crate) fn start(name: &str, core: Option<usize>) -> Result<Self, Error> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|error| Error::invalid("I/O runtime", error.to_string()))?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                if let Some(core) = core {
                    // Pinning is a placement hint; if the core does not exist the thread runs
                    // unpinned rather than failing the client.
                    let _ = core_affinity::set_for_current(core_affinity::CoreId { id: core });
                }
                // Spawned tasks run while this waits; an error only means every sender is gone.
                let _ = runtime.block_on(stopped);
                // Dropping the runtime here cancels what is left, on this thread.
            })
            .map_err(|error| Error::invalid("I/O thread", error.to_string()))?;
        let thread_id = thread.thread().id();
        Ok(Self {
            handle,
            stop: Some(stop),
            thread: Some(thread),
            thread_id,
        })
    }

    /// Runs `task` on the I/O thread and returns its result as a [`Completion`].
    pub(crate) fn spawn<T, F>(&self, what: &'static str, task: F) -> Completion<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (completer, completion) = completion(what);
        self.handle.spawn(async move {
            completer.complete(task.await);
        });
        completion
    }

    /// Like [`IoThread::spawn`], and also returns a handle that cancels the task.
    pub(crate) fn spawn_abortable<T, F>(
        &self,
        what: &'static str,
        task: F,
    ) -> (Completion<T>, tokio::task::AbortHandle)
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        let (completer, completion) = completion(what);
        let handle = self.handle.spawn(async move {
            completer.complete(task.await);
        });
        (completion, handle.abort_handle())
    }

    /// Runs `task` on the I/O thread; nobody waits for it.
    pub(crate) fn spawn_detached<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(task);
    }
}

impl Drop for IoThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // The last handle may be dropped by a task on the I/O thread itself (a delivery
            // callback holding a producer); joining would wait for ourselves. The thread ends
            // on its own once this task returns.
            if std::thread::current().id() != self.thread_id {
                let _ = thread.join();
            }
        }
    }
}
