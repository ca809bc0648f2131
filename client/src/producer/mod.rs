//! The producer: accepts records from any thread, batches them per partition, and delivers them
//! in the background with retries, reporting each record's (partition, offset).
//!
//! `send` runs on the caller's thread up to the point where the record's bytes sit in its
//! partition's batch: it looks up the topic's partitions (cached), picks the partition (explicit,
//! key hash, or keyless spreading), takes buffer memory (waiting or failing when it is spent:
//! the backpressure), and appends. The sender task on the I/O thread does the rest
//! (`sender`). Batching is in `accumulator`, the key hash in `partitioner`, the memory budget in
//! `memory`, batched delivery reports in `delivery`, the idempotent producer's sequence
//! bookkeeping in `idempotence`, the transactional producer's state in `transaction` and its
//! requests to the coordinators in `transaction_requests`.

pub(crate) mod accumulator;
pub mod delivery;
pub(crate) mod idempotence;
pub(crate) mod memory;
pub mod partitioner;
pub(crate) mod sender;
pub(crate) mod transaction;
pub(crate) mod transaction_requests;

use std::future::{poll_fn, Future};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::task::Poll;
use std::time::Instant;

use spate_protocol::batch::BatchBuilder;
use spate_protocol::constants::BATCH_BYTES_MAX;

use crate::client::Client;
use crate::completion::{completion, Completion};
use crate::config::{BufferFullPolicy, ProducerConfig};
use crate::consumer::TopicPartition;
use crate::error::Error;
use crate::group::ConsumerGroupMetadata;
use crate::network::{coarse_clock, BrokerSlots, TopicInfo};
use accumulator::BATCH_OVERHEAD_BYTES;
use accumulator::{Accumulator, DeliverySink, Incoming, Notify, PartitionChoice};
use memory::BufferMemory;

pub use accumulator::RecordMetadata;
pub use delivery::{DeliveredBatch, DeliveryHandler};

/// The outcome of one sent record: await it or `wait()` for its [`RecordMetadata`].
pub type Delivery = Completion<RecordMetadata>;

/// One record header as a producer takes it: a UTF-8 key and opaque value bytes.
pub type Header<'a> = (&'a str, &'a [u8]);

/// A record to send. It borrows its bytes: `send` copies them straight into the batch, once.
///
/// ```
/// use spate_client::ProducerRecord;
///
/// let headers = [("trace-id", &b"abc123"[..])];
/// let record = ProducerRecord::new("orders", "order 17 paid")
///     .with_key("customer-42")
///     .with_headers(&headers)
///     .with_timestamp(1_700_000_000_000);
/// assert_eq!(record.key, Some(&b"customer-42"[..]));
/// assert_eq!(record.partition, None); // chosen by the key's hash
/// ```
#[derive(Debug, Clone, Copy)]
pub struct ProducerRecord<'a> {
    /// The topic to write to; it must exist.
    pub topic: &'a str,
    /// `None`: the key's hash picks the partition (keyless records are spread).
    pub partition: Option<u32>,
    /// The key: it picks the partition (when none is named) and is what compaction keys on.
    pub key: Option<&'a [u8]>,
    /// `None` is a tombstone.
    pub value: Option<&'a [u8]>,
    /// Headers, kept in this order; keys may repeat.
    pub headers: &'a [Header<'a>],
    /// Milliseconds since the Unix epoch; `None` takes the time of `send`, read from the
    /// kernel's coarse wall clock (on Linux it trails the precise clock by up to one scheduler
    /// tick, 1 to 10 ms).
    pub timestamp: Option<i64>,
}

impl<'a> ProducerRecord<'a> {
    /// A record with a value and nothing else.
    pub fn new<V: AsRef<[u8]> + ?Sized>(topic: &'a str, value: &'a V) -> Self {
        Self {
            topic,
            partition: None,
            key: None,
            value: Some(value.as_ref()),
            headers: &[],
            timestamp: None,
        }
    }

    /// A tombstone: a key with no value (compaction deletes the key).
    pub fn tombstone<K: AsRef<[u8]> + ?Sized>(topic: &'a str, key: &'a K) -> Self {
        Self {
            topic,
            partition: None,
            key: Some(key.as_ref()),
            value: None,
            headers: &[],
            timestamp: None,
        }
    }

    /// Sets the key.
    pub fn with_key<K: AsRef<[u8]> + ?Sized>(mut self, key: &'a K) -> Self {
        self.key = Some(key.as_ref());
        self
    }

    /// Names the partition, overriding the key's hash.
    pub fn with_partition(mut self, partition: u32) -> Self {
        self.partition = Some(partition);
        self
    }

    /// Sets the headers.
    pub fn with_headers(mut self, headers: &'a [Header<'a>]) -> Self {
        self.headers = headers;
        self
    }

    /// Sets the timestamp, in milliseconds since the Unix epoch.
    pub fn with_timestamp(mut self, timestamp_ms: i64) -> Self {
        self.timestamp = Some(timestamp_ms);
        self
    }

    /// Exact bytes this record adds to a batch (and holds of the producer's buffer memory).
    pub fn batch_bytes(&self) -> usize {
        BatchBuilder::record_bytes(self.key, self.value, self.headers)
    }
}

/// Sends records to topics. Made with [`Client::producer`]; clones share one producer.
///
/// Records to one partition are delivered in the order `send` accepted them. Dropping the last
/// handle closes the producer: records already accepted are still delivered in the background
/// (keeping the client's I/O thread alive until they are), but nothing tells you how that went;
/// call [`Producer::close`] (or [`Producer::flush`]) and wait for it to know.
///
/// From async code:
///
/// ```no_run
/// # async fn demo() -> Result<(), spate_client::Error> {
/// use spate_client::{Client, ProducerConfig, ProducerRecord};
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let producer = client.producer(ProducerConfig::default())?;
/// // The first await waits for buffer memory (the backpressure), the second for the broker.
/// let delivery = producer.send(ProducerRecord::new("orders", "hello").with_key("k1")).await?;
/// let written = delivery.await?;
/// println!("partition {} offset {:?}", written.partition, written.offset);
/// producer.close().await?;
/// # Ok(()) }
/// ```
///
/// From a plain thread:
///
/// ```no_run
/// use spate_client::{Client, ProducerConfig, ProducerRecord};
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let producer = client.producer(ProducerConfig::default())?;
/// let mut deliveries = Vec::new();
/// for number in 0..100 {
///     let value = format!("event {number}");
///     deliveries.push(producer.send_blocking(ProducerRecord::new("events", &value))?);
/// }
/// producer.flush().wait()?;
/// for delivery in deliveries {
///     delivery.wait()?;
/// }
/// # Ok::<(), spate_client::Error>(())
/// ```
///
/// # Transactions
///
/// A producer made with a `transactional_id` writes in transactions (Kafka's exactly-once
/// semantics): the records of a transaction, on any partitions, and the consumer offsets sent
/// with it become visible together when it commits, and never if it aborts. A read_committed
/// consumer ([`ConsumerConfig::isolation_level`](crate::ConsumerConfig::isolation_level)) sees
/// only committed ones. Consume-transform-produce, reading each input record exactly once:
///
/// ```no_run
/// use std::time::Duration;
/// use spate_client::group::{GroupConfig, GroupConsumer};
/// use spate_client::{Client, ConsumerConfig, IsolationLevel, ProducerConfig, ProducerRecord};
/// use spate_client::TopicPartition;
///
/// let client = Client::connect_to("127.0.0.1:9192")?;
/// let consumer_config = ConsumerConfig {
///     isolation_level: IsolationLevel::ReadCommitted,
///     ..ConsumerConfig::default()
/// };
/// // Offsets are committed by the transactions, never by the consumer itself.
/// let group = GroupConfig::new("uppercaser").with_manual_commits();
/// let mut input = GroupConsumer::new(&client, consumer_config, group)?;
/// input.subscribe(&["words"])?;
/// let producer = client.producer(ProducerConfig {
///     transactional_id: Some("uppercaser-1".into()),
///     ..ProducerConfig::default()
/// })?;
/// producer.init_transactions().wait()?; // fences any older "uppercaser-1"
/// loop {
///     let records = input.poll_owned(Duration::from_millis(500))?;
///     if records.is_empty() {
///         continue;
///     }
///     producer.begin_transaction()?;
///     let mut next_offsets: Vec<(TopicPartition, u64)> = Vec::new();
///     for record in &records {
///         let upper = String::from_utf8_lossy(record.value.as_deref().unwrap_or_default())
///             .to_uppercase();
///         producer.send_blocking(ProducerRecord::new("upper-words", &upper))?;
///         let key = TopicPartition::new(record.topic.to_string(), record.partition);
///         next_offsets.retain(|(partition, _)| *partition != key);
///         next_offsets.push((key, record.offset + 1));
///     }
///     producer
///         .send_offsets_to_transaction(&next_offsets, &input.group_metadata())
///         .wait()?;
///     if let Err(error) = producer.commit_transaction().wait() {
///         // Fenced: another instance took over; anything else: abort and read again.
///         producer.abort_transaction().wait()?;
///         return Err(error);
///     }
/// }
/// # Ok::<(), spate_client::Error>(())
/// ```
#[derive(Clone)]
pub struct Producer {
    handle: Arc<ProducerHandle>,
}

/// The last handle's drop starts closing.
struct ProducerHandle {
    inner: Arc<ProducerInner>,
}

impl Drop for ProducerHandle {
    fn drop(&mut self) {
        self.inner.begin_close();
    }
}

pub(crate) struct ProducerInner {
    pub(crate) client: Client,
    pub(crate) config: ProducerConfig,
    accumulator: Mutex<Accumulator>,
    pub(crate) memory: BufferMemory,
    /// Wakes the sender; stores one permit, so a wake-up between its checks is not lost.
    pub(crate) wake: tokio::sync::Notify,
    closing: AtomicBool,
    /// Why the producer can send nothing more (fenced, or no identity from the broker); read
    /// by `send` without taking the accumulator's lock.
    fatal: OnceLock<Error>,
    /// Hears about tagged records; only the I/O thread calls it, so the lock is uncontended.
    pub(crate) delivery_handler: Option<Mutex<Box<dyn DeliveryHandler>>>,
    /// A transactional producer's connection for its coordinator requests (never behind a
    /// produce request's answer).
    pub(crate) transaction_slots: BrokerSlots,
}

impl ProducerInner {
    pub(crate) fn accumulator(&self) -> MutexGuard<'_, Accumulator> {
        // Critical sections never leave the accumulator half-updated on a panic of their own
        // (they assert before mutating), so a poisoned lock is still usable.
        self.accumulator
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    fn begin_close(&self) {
        self.closing.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Fails the producer for good with `error`: sends fail with it from now on, and so does
    /// every batch not yet delivered (`accumulator` is this producer's, locked by the caller).
    pub(crate) fn fail_fatally(&self, accumulator: &mut Accumulator, error: Error) {
        let _ = self.fatal.set(error.clone());
        accumulator.fail_producer(error);
        self.wake.notify_one();
    }

    /// Seals every open batch and completes once each record accepted so far is delivered
    /// or failed.
    pub(crate) fn flush(&self) -> Completion<()> {
        let (completer, completion) = completion("producer");
        {
            let mut accumulator = self.accumulator();
            let generation = accumulator.seal_all(&self.config);
            accumulator.wait_for_generation(generation, completer);
        }
        self.wake.notify_one();
        completion
    }

    fn is_transactional(&self) -> bool {
        self.config.transactional_id.is_some()
    }
}

/// What `send` settles before it may append: the partition and the reserved memory.
struct Placement {
    partition_count: u32,
    choice: PartitionChoice,
    record_bytes: usize,
}

impl Producer {
    pub(crate) fn new(
        client: Client,
        config: ProducerConfig,
        delivery_handler: Option<Box<dyn DeliveryHandler>>,
    ) -> Result<Self, Error> {
        config.check()?;
        let transactional = config.transactional_id.is_some();
        let inner = Arc::new(ProducerInner {
            memory: BufferMemory::new(config.buffer_bytes_max),
            client: client.clone(),
            config,
            accumulator: Mutex::new(Accumulator::new(transactional)),
            wake: tokio::sync::Notify::new(),
            closing: AtomicBool::new(false),
            fatal: OnceLock::new(),
            delivery_handler: delivery_handler.map(Mutex::new),
            transaction_slots: BrokerSlots::new(),
        });
        client.spawn_detached(sender::run(inner.clone()));
        Ok(Self {
            handle: Arc::new(ProducerHandle { inner }),
        })
    }

    fn inner(&self) -> &Arc<ProducerInner> {
        &self.handle.inner
    }

    /// The settings this producer was made with.
    pub fn config(&self) -> &ProducerConfig {
        &self.inner().config
    }

    /// Accepts `record` and returns its [`Delivery`]. The returned future waits only for what
    /// acceptance needs: the topic's metadata the first time a topic is used, and buffer
    /// memory when it is spent (per [`BufferFullPolicy`]). Fails at once for a closed
    /// producer, an unknown topic or partition, or a record too large for any batch.
    pub async fn send(&self, record: ProducerRecord<'_>) -> Result<Delivery, Error> {
        let placement = self.place(&record).await?;
        let (completer, delivery) = completion("producer");
        let sink = DeliverySink::Notify(Notify::Completion(completer));
        self.append(&record, &placement, sink);
        Ok(delivery)
    }

    /// Like [`Producer::send`], for plain threads: blocks while it waits.
    pub fn send_blocking(&self, record: ProducerRecord<'_>) -> Result<Delivery, Error> {
        let placement = self.place_blocking(&record)?;
        let (completer, delivery) = completion("producer");
        let sink = DeliverySink::Notify(Notify::Completion(completer));
        self.append(&record, &placement, sink);
        Ok(delivery)
    }

    /// Like [`Producer::send`], but reports the outcome to `callback` instead of a
    /// [`Delivery`]: cheaper when sending many records. The callback runs on the client's I/O
    /// thread and must not block.
    ///
    /// ```no_run
    /// # async fn demo(producer: spate_client::Producer) -> Result<(), spate_client::Error> {
    /// use std::sync::atomic::{AtomicU64, Ordering};
    /// use std::sync::Arc;
    /// use spate_client::ProducerRecord;
    ///
    /// let acknowledged = Arc::new(AtomicU64::new(0));
    /// let counter = acknowledged.clone();
    /// producer
    ///     .send_with_callback(ProducerRecord::new("events", "x"), move |result| {
    ///         if result.is_ok() {
    ///             counter.fetch_add(1, Ordering::Relaxed);
    ///         }
    ///     })
    ///     .await?;
    /// producer.flush().await?;
    /// # Ok(()) }
    /// ```
    pub async fn send_with_callback<F>(
        &self,
        record: ProducerRecord<'_>,
        callback: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(Result<RecordMetadata, Error>) + Send + 'static,
    {
        let placement = self.place(&record).await?;
        self.append(
            &record,
            &placement,
            DeliverySink::Notify(Notify::Callback(Box::new(callback))),
        );
        Ok(())
    }

    /// Like [`Producer::send_with_callback`], for plain threads.
    pub fn send_with_callback_blocking<F>(
        &self,
        record: ProducerRecord<'_>,
        callback: F,
    ) -> Result<(), Error>
    where
        F: FnOnce(Result<RecordMetadata, Error>) + Send + 'static,
    {
        let placement = self.place_blocking(&record)?;
        self.append(
            &record,
            &placement,
            DeliverySink::Notify(Notify::Callback(Box::new(callback))),
        );
        Ok(())
    }

    /// Like [`Producer::send`], but reports the outcome to the producer's [`DeliveryHandler`]
    /// (see [`Client::producer_with_handler`]), together with the other tagged records of its
    /// batch: the cheapest way to send many records and still learn each one's fate. `tag` is
    /// handed back as is; use it to tell records apart. Fails with [`Error::Invalid`] on a
    /// producer made without a handler.
    pub async fn send_tagged(&self, record: ProducerRecord<'_>, tag: u64) -> Result<(), Error> {
        self.check_handler()?;
        let placement = self.place(&record).await?;
        self.append(&record, &placement, DeliverySink::Tagged(tag));
        Ok(())
    }

    /// Like [`Producer::send_tagged`], for plain threads.
    pub fn send_tagged_blocking(&self, record: ProducerRecord<'_>, tag: u64) -> Result<(), Error> {
        self.check_handler()?;
        let placement = self.place_blocking(&record)?;
        self.append(&record, &placement, DeliverySink::Tagged(tag));
        Ok(())
    }

    fn check_handler(&self) -> Result<(), Error> {
        if self.inner().delivery_handler.is_none() {
            return Err(Error::invalid(
                "producer",
                "send_tagged needs a producer made with Client::producer_with_handler",
            ));
        }
        Ok(())
    }

    /// Sends every record accepted so far without waiting for lingers, and completes once
    /// each of them is delivered or failed. Records sent after the call do not delay it.
    pub fn flush(&self) -> Completion<()> {
        self.inner().flush()
    }

    /// Whether this producer was made with a `transactional_id`.
    pub fn is_transactional(&self) -> bool {
        self.inner().is_transactional()
    }

    /// A transactional producer's first call (Kafka's `initTransactions`): gets the producer
    /// id and a new epoch for its `transactional_id` from the transaction coordinator. That
    /// fences every older producer with the same id (their sends and transaction calls fail
    /// with [`Error::ProducerFenced`]) and aborts any transaction one of them left open. Call
    /// it once, before [`Producer::begin_transaction`]; retriable failures are retried until
    /// the client's `retry_timeout`, and a failed call may be repeated.
    pub fn init_transactions(&self) -> Completion<()> {
        let inner = self.inner().clone();
        if let Err(error) = self.transaction_call(|transaction| transaction.begin_init()) {
            return Completion::ready(Err(error));
        }
        let client = inner.client.clone();
        client.spawn("init transactions", async move {
            let result = transaction_requests::init_producer_id(&inner, None).await;
            let mut accumulator = inner.accumulator();
            accumulator.transaction_mut().end_init(result.is_ok());
            let identity = result?;
            accumulator.begin_identity_request();
            accumulator.install_identity(identity);
            Ok(())
        })
    }

    /// Opens a transaction: records sent from now until the commit or abort belong to it.
    /// Needs [`Producer::init_transactions`] first, and no transaction open.
    pub fn begin_transaction(&self) -> Result<(), Error> {
        self.transaction_call(|transaction| transaction.begin())
    }

    /// Commits `offsets` (for each partition, the next offset to consume) of the consumer
    /// group `group` inside the open transaction (Kafka's `sendOffsetsToTransaction`): the
    /// group sees them when the transaction commits, never if it aborts. This is how
    /// consume-transform-produce reads each input record exactly once: the output records and
    /// the input offsets commit or abort together. `group` is the consumer's
    /// ([`GroupConsumer::group_metadata`](crate::group::GroupConsumer::group_metadata)), so a
    /// member fenced by a rebalance cannot commit; that consumer must not commit offsets
    /// itself (turn auto-commit off). A refusal by the group (a rebalance moved on) fails the
    /// call with [`Error::TransactionAbortable`].
    pub fn send_offsets_to_transaction(
        &self,
        offsets: &[(TopicPartition, u64)],
        group: &ConsumerGroupMetadata,
    ) -> Completion<()> {
        if let Err(error) = self.transaction_call(|transaction| transaction.check_offsets()) {
            return Completion::ready(Err(error));
        }
        let inner = self.inner().clone();
        let (offsets, group) = (offsets.to_vec(), group.clone());
        inner.client.clone().spawn(
            "send offsets to transaction",
            transaction_requests::send_offsets(inner, offsets, group),
        )
    }

    /// Commits the open transaction (Kafka's `commitTransaction`): flushes every record sent
    /// in it, then has the coordinator write the commit to every partition and group in it.
    /// Once this succeeds, read_committed consumers see the records and the group sees the
    /// offsets. If a record failed, it fails with [`Error::TransactionAbortable`]: call
    /// [`Producer::abort_transaction`].
    pub fn commit_transaction(&self) -> Completion<()> {
        if let Err(error) = self.transaction_call(|_| Ok(())) {
            return Completion::ready(Err(error));
        }
        let inner = self.inner().clone();
        inner
            .client
            .clone()
            .spawn("commit transaction", transaction_requests::commit(inner))
    }

    /// Aborts the open transaction (Kafka's `abortTransaction`): records not yet sent fail
    /// with [`Error::TransactionAborted`], those on their way settle, then the coordinator
    /// writes the abort to every partition and group in it; read_committed consumers never
    /// see its records, and the group never sees its offsets. The producer may then begin a
    /// new transaction.
    pub fn abort_transaction(&self) -> Completion<()> {
        if let Err(error) = self.transaction_call(|_| Ok(())) {
            return Completion::ready(Err(error));
        }
        let inner = self.inner().clone();
        inner
            .client
            .clone()
            .spawn("abort transaction", transaction_requests::abort(inner))
    }

    /// Runs `call` on the transaction of a transactional producer that has not failed for
    /// good.
    fn transaction_call<T>(
        &self,
        call: impl FnOnce(&mut transaction::Transaction) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let inner = self.inner();
        if !inner.is_transactional() {
            return Err(Error::invalid(
                "producer",
                "transactions need a producer made with a transactional_id",
            ));
        }
        let mut accumulator = inner.accumulator();
        if let Some(fatal) = accumulator.fatal() {
            return Err(fatal.clone());
        }
        call(accumulator.transaction_mut())
    }

    /// Stops accepting records (later sends fail with [`Error::Closed`]) and completes once
    /// every record accepted before is delivered or failed.
    pub fn close(&self) -> Completion<()> {
        self.inner().begin_close();
        self.flush()
    }

    /// Bytes of records accepted and not yet delivered.
    pub fn buffered_bytes(&self) -> usize {
        self.inner().memory.used_bytes()
    }

    fn check_record(&self, record: &ProducerRecord<'_>) -> Result<usize, Error> {
        if self.inner().is_closing() {
            return Err(Error::Closed { what: "producer" });
        }
        if let Some(error) = self.inner().fatal.get() {
            return Err(error.clone());
        }
        if self.inner().is_transactional() {
            self.inner().accumulator().transaction_mut().check_send()?;
        }
        let record_bytes = record.batch_bytes();
        let limit_bytes =
            (BATCH_BYTES_MAX - BATCH_OVERHEAD_BYTES).min(self.inner().memory.limit_bytes());
        if record_bytes > limit_bytes {
            return Err(Error::RecordTooLarge {
                record_bytes,
                limit_bytes,
            });
        }
        if record.timestamp.is_some_and(|timestamp| timestamp < 0) {
            return Err(Error::invalid(
                "record",
                "timestamps are milliseconds since the Unix epoch and not negative",
            ));
        }
        Ok(record_bytes)
    }

    async fn place(&self, record: &ProducerRecord<'_>) -> Result<Placement, Error> {
        let record_bytes = self.check_record(record)?;
        let network = self.inner().client.network();
        // A partition past the cached count may have been added since (CreatePartitions):
        // ask the broker before refusing the record, as Kafka's producer does.
        let cached = network
            .cached_partition_count(record.topic)
            .filter(|count| record.partition.is_none_or(|partition| partition < *count));
        let partition_count = match cached {
            Some(partition_count) => partition_count,
            None => {
                network.invalidate(record.topic);
                self.fetch_metadata(record.topic).await?.partition_count()
            }
        };
        let placement = placement(record, partition_count, record_bytes)?;
        if !self.inner().memory.try_reserve(record_bytes) {
            self.wait_for_memory(record_bytes).await?;
        }
        Ok(placement)
    }

    fn place_blocking(&self, record: &ProducerRecord<'_>) -> Result<Placement, Error> {
        let record_bytes = self.check_record(record)?;
        let network = self.inner().client.network();
        // A partition past the cached count may have been added since (CreatePartitions):
        // ask the broker before refusing the record, as Kafka's producer does.
        let cached = network
            .cached_partition_count(record.topic)
            .filter(|count| record.partition.is_none_or(|partition| partition < *count));
        let partition_count = match cached {
            Some(partition_count) => partition_count,
            None => {
                network.invalidate(record.topic);
                self.fetch_metadata(record.topic).wait()?.partition_count()
            }
        };
        let placement = placement(record, partition_count, record_bytes)?;
        let memory = &self.inner().memory;
        if !memory.try_reserve(record_bytes) {
            let config = &self.inner().config;
            if config.buffer_full == BufferFullPolicy::Error {
                return Err(self.buffer_full(record_bytes));
            }
            self.inner().wake.notify_one();
            let deadline = Instant::now() + config.buffer_wait_timeout;
            if !memory.reserve_blocking(record_bytes, deadline) {
                return Err(self.buffer_full(record_bytes));
            }
        }
        Ok(placement)
    }

    fn fetch_metadata(&self, topic: &str) -> Completion<Arc<TopicInfo>> {
        let network = self.inner().client.network().clone();
        let topic = topic.to_string();
        self.inner()
            .client
            .spawn("metadata", async move { network.topic(&topic).await })
    }

    async fn wait_for_memory(&self, record_bytes: usize) -> Result<(), Error> {
        let config = &self.inner().config;
        if config.buffer_full == BufferFullPolicy::Error {
            return Err(self.buffer_full(record_bytes));
        }
        // Waiters make the sender seal lingering batches, so memory frees up sooner.
        self.inner().wake.notify_one();
        let mut reserve = pin!(self.inner().memory.reserve(record_bytes));
        let mut timer = pin!(self.inner().client.timer(config.buffer_wait_timeout));
        let reserved = poll_fn(|context| {
            if reserve.as_mut().poll(context).is_ready() {
                return Poll::Ready(true);
            }
            if timer.as_mut().poll(context).is_ready() {
                return Poll::Ready(false);
            }
            Poll::Pending
        })
        .await;
        if reserved {
            Ok(())
        } else {
            Err(self.buffer_full(record_bytes))
        }
    }

    fn buffer_full(&self, requested_bytes: usize) -> Error {
        Error::BufferFull {
            requested_bytes,
            limit_bytes: self.inner().memory.limit_bytes(),
        }
    }

    /// Copies the record into its batch. Memory is reserved and the partition is valid.
    fn append(&self, record: &ProducerRecord<'_>, placement: &Placement, delivery: DeliverySink) {
        let inner = self.inner();
        let incoming = Incoming {
            key: record.key,
            value: record.value,
            headers: record.headers,
            // To within one kernel tick (see `coarse_clock`): a precise clock read per record
            // was a noticeable share of the send path.
            timestamp_ms: record.timestamp.unwrap_or_else(coarse_clock::unix_ms),
            record_bytes: placement.record_bytes,
        };
        let appended = inner.accumulator().append(
            record.topic,
            placement.partition_count,
            placement.choice,
            &incoming,
            delivery,
            &inner.config,
            Instant::now,
        );
        if appended.wake_sender {
            inner.wake.notify_one();
        }
    }
}

/// Chooses how the record's partition is decided, checking an explicit one.
fn placement(
    record: &ProducerRecord<'_>,
    partition_count: u32,
    record_bytes: usize,
) -> Result<Placement, Error> {
    if partition_count == 0 {
        return Err(Error::UnknownTopic {
            topic: record.topic.to_string(),
        });
    }
    let choice = match (record.partition, record.key) {
        (Some(partition), _) if partition >= partition_count => {
            return Err(Error::UnknownPartition {
                topic: record.topic.to_string(),
                partition,
                partition_count,
            })
        }
        (Some(partition), _) => PartitionChoice::Fixed(partition),
        (None, Some(key)) => {
            PartitionChoice::Fixed(partitioner::partition_for_key(key, partition_count))
        }
        (None, None) => PartitionChoice::Keyless,
    };
    Ok(Placement {
        partition_count,
        choice,
        record_bytes,
    })
}

impl std::fmt::Debug for Producer {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Producer")
            .field("config", self.config())
            .field("buffered_bytes", &self.buffered_bytes())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    #[test]
    fn transaction_calls_out_of_order_fail_before_any_io() {
        // Nothing listens there: every refusal must come from the producer's own state.
        let client = Client::new(ClientConfig::new("127.0.0.1:9")).unwrap();
        let transactional = client
            .producer(ProducerConfig {
                transactional_id: Some("t".into()),
                ..ProducerConfig::default()
            })
            .unwrap();
        for ended in [
            transactional.commit_transaction(),
            transactional.abort_transaction(),
        ] {
            assert!(matches!(ended.wait(), Err(Error::TransactionState { .. })));
        }
        assert!(matches!(
            transactional.begin_transaction(),
            Err(Error::TransactionState { .. })
        ));
        assert!(matches!(
            transactional.send_blocking(ProducerRecord::new("t", "v")),
            Err(Error::TransactionState { .. })
        ));
        let plain = client.producer(ProducerConfig::default()).unwrap();
        assert!(matches!(
            plain.init_transactions().wait(),
            Err(Error::Invalid { .. })
        ));
    }

    #[test]
    fn send_tagged_on_a_producer_without_a_handler_fails_before_any_io() {
        // Nothing listens there: the check must come before any lookup or connection.
        let client = Client::new(ClientConfig::new("127.0.0.1:9")).unwrap();
        let producer = client.producer(ProducerConfig::default()).unwrap();
        let sent = producer.send_tagged_blocking(ProducerRecord::new("t", "v"), 7);
        match sent {
            Err(Error::Invalid { what, .. }) => assert_eq!(what, "producer"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
