//! [`Client`]: the entry point. Owns the I/O thread and the connection to the broker, and makes
//! producers, consumers and admin handles that share them.
//!
//! Creating a client does no I/O; the first request connects. Clones are cheap and share
//! everything. The I/O thread stops when the client and everything made from it are dropped
//! (a producer that is still delivering keeps it alive until its records are delivered or time
//! out).

use std::future::Future;
use std::sync::Arc;

use crate::admin::Admin;
use crate::completion::Completion;
use crate::config::{ClientConfig, ConsumerConfig, ProducerConfig};
use crate::consumer::Consumer;
use crate::error::Error;
use crate::network::Network;
use crate::producer::{DeliveryHandler, Producer};
use crate::runtime::IoThread;

/// A connection to a Spate broker, shared by the producers, consumers and admin handles made
/// from it.
///
/// ```no_run
/// use spate_client::{Client, ClientConfig};
///
/// let client = Client::new(ClientConfig::new("127.0.0.1:9192"))?;
/// let admin = client.admin();
/// for topic in admin.list_topics().wait()? {
///     println!("{} ({} partitions)", topic.name, topic.partition_count);
/// }
/// # Ok::<(), spate_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Client {
    shared: Arc<ClientShared>,
}

pub(crate) struct ClientShared {
    pub(crate) network: Arc<Network>,
    // Declared last: dropped after everything that might still hand it work.
    io: IoThread,
}

impl Client {
    /// Checks `config` and starts the I/O thread. Does not connect: the first request does, so
    /// an unreachable broker shows up as [`Error::Connect`] from that request.
    pub fn new(config: ClientConfig) -> Result<Self, Error> {
        config.check()?;
        let io = IoThread::start("spate-client-io", config.io_thread_core)?;
        let network = Arc::new(Network::new(Arc::new(config)));
        Ok(Self {
            shared: Arc::new(ClientShared { network, io }),
        })
    }

    /// A client for `address` (`host:port`) with default settings.
    pub fn connect_to(address: impl Into<String>) -> Result<Self, Error> {
        Self::new(ClientConfig::new(address))
    }

    /// The settings this client was made with.
    pub fn config(&self) -> &ClientConfig {
        self.shared.network.config()
    }

    /// Topic administration.
    pub fn admin(&self) -> Admin {
        Admin::new(self.clone())
    }

    /// A producer with its own buffer, batches and background sender.
    pub fn producer(&self, config: ProducerConfig) -> Result<Producer, Error> {
        Producer::new(self.clone(), config, None)
    }

    /// A producer whose records sent with [`Producer::send_tagged`] are reported to `handler`,
    /// once per batch: the cheapest way to learn the fate of many records.
    ///
    /// ```no_run
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use spate_client::{Client, DeliveredBatch, ProducerConfig, ProducerRecord};
    ///
    /// let client = Client::connect_to("127.0.0.1:9192")?;
    /// let written = Arc::new(AtomicU64::new(0));
    /// let counter = written.clone();
    /// let producer = client.producer_with_handler(
    ///     ProducerConfig::default(),
    ///     move |batch: &DeliveredBatch<'_>| {
    ///         if batch.result().is_ok() {
    ///             counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
    ///         }
    ///     },
    /// )?;
    /// for number in 0..1000u64 {
    ///     let value = number.to_le_bytes();
    ///     producer.send_tagged_blocking(ProducerRecord::new("events", &value), number)?;
    /// }
    /// producer.flush().wait()?;
    /// assert_eq!(written.load(Ordering::Relaxed), 1000);
    /// # Ok::<(), spate_client::Error>(())
    /// ```
    pub fn producer_with_handler(
        &self,
        config: ProducerConfig,
        handler: impl DeliveryHandler,
    ) -> Result<Producer, Error> {
        Producer::new(self.clone(), config, Some(Box::new(handler)))
    }

    /// A consumer with its own assignment, positions and prefetch buffer.
    pub fn consumer(&self, config: ConsumerConfig) -> Result<Consumer, Error> {
        Consumer::new(self.clone(), config)
    }

    pub(crate) fn network(&self) -> &Arc<Network> {
        &self.shared.network
    }

    /// Runs `task` on the I/O thread.
    pub(crate) fn spawn<T, F>(&self, what: &'static str, task: F) -> Completion<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, Error>> + Send + 'static,
    {
        self.shared.io.spawn(what, task)
    }

    pub(crate) fn spawn_detached<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.shared.io.spawn_detached(task);
    }

    /// A future that finishes after `duration`. Timers live on the I/O thread, so waiting
    /// with a timeout works under any executor; dropping the timer cancels it.
    pub(crate) fn timer(&self, duration: std::time::Duration) -> Timer {
        let (completion, abort) = self.shared.io.spawn_abortable("timer", async move {
            tokio::time::sleep(duration).await;
            Ok(())
        });
        Timer { completion, abort }
    }
}

/// See [`Client::timer`].
pub(crate) struct Timer {
    completion: Completion<()>,
    abort: tokio::task::AbortHandle,
}

impl Future for Timer {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        std::pin::Pin::new(&mut self.completion)
            .poll(context)
            .map(|_| ())
    }
}

impl Drop for Timer {
    fn drop(&mut self) {
        self.abort.abort();
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Client")
            .field("bootstrap", &self.config().bootstrap)
            .finish()
    }
}
