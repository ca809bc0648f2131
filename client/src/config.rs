//! Every setting and limit of the client in one place: the defaults ([`defaults`]) and the three
//! configuration structs ([`ClientConfig`], [`ProducerConfig`], [`ConsumerConfig`]) with their
//! checks. Nothing else in the crate invents a bound.
//!
//! This file only describes and checks settings; the components that use them live in
//! `network`, `producer` and `consumer`.

use std::time::Duration;

use spate_protocol::api::{Acks, IsolationLevel};
use spate_protocol::batch::BATCH_HEADER_BYTES;
use spate_protocol::constants::TRANSACTIONAL_ID_BYTES_MAX;
use spate_protocol::constants::{BATCH_BYTES_MAX, FRAME_BYTES_MAX, PRODUCER_BATCHES_RETAINED};

use crate::error::Error;
use crate::tls::TlsConfig;

/// Default values, with units last. Relations between them are pinned by the `const`
/// assertions at the end of this module.
pub mod defaults {
    use std::time::Duration;

    /// Where the broker listens unless told otherwise (the broker's own default).
    pub const BROKER_ADDRESS: &str = "127.0.0.1:9192";
    /// Client id sent in every request header.
    pub const CLIENT_ID: &str = "spate-client";
    /// Longest wait for a TCP connection to open.
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
    /// Longest wait for a response, on top of any wait the request itself asks the broker for
    /// (a fetch's `max_wait`).
    pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
    /// First pause between reconnection attempts; it doubles up to the maximum.
    pub const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(50);
    /// Longest pause between reconnection attempts.
    pub const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(1);
    /// How long idempotent requests (metadata, list, describe, list offsets) keep retrying
    /// retriable failures, reconnecting as needed.
    pub const RETRY_TIMEOUT: Duration = Duration::from_secs(30);
    /// Cached topic metadata older than this is refreshed before use.
    pub const METADATA_MAX_AGE: Duration = Duration::from_secs(60);
    /// Groups and transactional ids whose coordinator one client remembers; past it the
    /// cache starts over (each entry is asked for again on its next use).
    pub const COORDINATORS_CACHED_MAX: usize = 1024;
    /// Longest pause before a produce retry while a partition's leader moves (its broker
    /// refused or went away): an election takes about the brokers' session timeout (1.5 s),
    /// and the producer's longer backoff would add up to its cap to the failover time. Each
    /// such retry asks for metadata first (one request in flight per client).
    pub const LEADER_CHANGE_BACKOFF_MAX: Duration = Duration::from_millis(250);
    /// Requests one connection may have in flight (pipelining depth). The broker's own limit
    /// is 256 by default.
    pub const CONNECTION_INFLIGHT_REQUESTS_MAX: usize = 64;
    /// Bytes asked for per socket read when no larger frame is pending.
    pub const READ_CHUNK_BYTES: usize = 64 * 1024;

    /// A producer seals a partition's batch once it reaches this size.
    pub const BATCH_BYTES: usize = 512 * 1024;
    /// How long a producer lets a batch that is not full wait for more records.
    pub const LINGER: Duration = Duration::from_millis(5);
    /// Record bytes a producer holds (accepted, not yet acknowledged) before `send` waits.
    pub const BUFFER_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// How long `send` waits for buffer memory before failing with `BufferFull`.
    pub const BUFFER_WAIT_TIMEOUT: Duration = Duration::from_secs(60);
    /// How long a record may take from `send` to acknowledgement, retries included.
    pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);
    /// First pause before retrying a failed batch; it doubles up to the maximum.
    pub const RETRY_BACKOFF_MIN: Duration = Duration::from_millis(50);
    /// Longest pause before retrying a failed batch.
    pub const RETRY_BACKOFF_MAX: Duration = Duration::from_secs(2);
    /// Most bytes of batches one produce request carries.
    pub const PRODUCE_REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
    /// Produce requests in flight per partition (Kafka's `max.in.flight.requests.per.connection`
    /// default). Idempotence keeps records in order across retries with up to
    /// `PRODUCER_BATCHES_RETAINED` of them; without it, only one does.
    pub const PARTITION_INFLIGHT_REQUESTS_MAX: usize = 5;
    /// Producers are idempotent unless told otherwise (Kafka's default since 3.0).
    pub const IDEMPOTENCE: bool = true;
    /// How long the broker may take to append and acknowledge, sent in each produce request.
    pub const PRODUCE_TIMEOUT: Duration = Duration::from_secs(30);
    /// How long a transaction may stay open before its coordinator aborts it (Kafka's
    /// `transaction.timeout.ms` default).
    pub const TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

    /// Fetched bytes a consumer holds ahead of the application.
    pub const PREFETCH_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Most record bytes asked for in one fetch request.
    pub const FETCH_BYTES_MAX: usize = 16 * 1024 * 1024;
    /// Most record bytes asked for per partition in one fetch request.
    pub const PARTITION_FETCH_BYTES_MAX: usize = 4 * 1024 * 1024;
    /// How long the broker holds a fetch that found no new records.
    pub const FETCH_WAIT: Duration = Duration::from_millis(500);
    /// Pause after a failed fetch before trying again.
    pub const FETCH_BACKOFF: Duration = Duration::from_millis(100);
    /// Most decompressed bytes one poll result holds (and so one batch may inflate to).
    pub const DECOMPRESSED_BYTES_MAX: usize =
        spate_protocol::constants::DECOMPRESSED_BATCH_BYTES_MAX;
}

const _: () = assert!(defaults::BATCH_BYTES <= BATCH_BYTES_MAX);
const _: () = assert!(defaults::BATCH_BYTES <= defaults::BUFFER_BYTES_MAX);
const _: () = assert!(defaults::PRODUCE_REQUEST_BYTES_MAX >= BATCH_BYTES_MAX);
const _: () = assert!(defaults::PRODUCE_REQUEST_BYTES_MAX < FRAME_BYTES_MAX);
// The broker answers a retried copy only of the batches it remembers, so an idempotent producer
// may have no more unresolved batches per partition than that.
const _: () = assert!(defaults::PARTITION_INFLIGHT_REQUESTS_MAX <= PRODUCER_BATCHES_RETAINED);
const _: () = assert!(defaults::PARTITION_FETCH_BYTES_MAX <= defaults::FETCH_BYTES_MAX);
const _: () = assert!(defaults::FETCH_BYTES_MAX <= defaults::PREFETCH_BYTES_MAX);
const _: () = assert!(defaults::FETCH_BYTES_MAX < FRAME_BYTES_MAX);

/// How to reach the broker and how patient to be with it. Shared by every producer, consumer
/// and admin handle made from one [`Client`](crate::Client).
///
/// ```
/// use spate_client::ClientConfig;
///
/// let config = ClientConfig::new("127.0.0.1:9192").with_client_id("billing");
/// assert_eq!(config.bootstrap, vec!["127.0.0.1:9192".to_string()]);
/// ```
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// `host:port` addresses tried in order until one answers.
    pub bootstrap: Vec<String>,
    /// Sent in every request header; shows up in the broker's logs.
    pub client_id: String,
    /// Longest wait for a TCP connection to open.
    pub connect_timeout: Duration,
    /// Longest wait for a response (plus any wait the request asks the broker for).
    pub request_timeout: Duration,
    /// First pause between reconnection attempts; doubles up to `reconnect_backoff_max`.
    pub reconnect_backoff_min: Duration,
    /// Longest pause between reconnection attempts.
    pub reconnect_backoff_max: Duration,
    /// How long idempotent requests keep retrying retriable failures.
    pub retry_timeout: Duration,
    /// Topic metadata older than this is asked for again.
    pub metadata_max_age: Duration,
    /// Requests in flight on the connection, at most.
    pub connection_inflight_requests_max: usize,
    /// Pin the client's I/O thread to this core (thread-per-core programs keep it off their
    /// own cores). `None` leaves placement to the OS.
    pub io_thread_core: Option<usize>,
    /// TLS to every broker; `None`: plaintext.
    pub tls: Option<TlsConfig>,
    /// The SASL mechanism every connection authenticates with right after version
    /// negotiation; `None`: no authentication (the broker's listener must not ask for it).
    pub sasl_mechanism: Option<SaslMechanism>,
    /// The user to authenticate as.
    pub sasl_username: String,
    /// The user's password (SCRAM never sends it; PLAIN does: use TLS).
    pub sasl_password: Password,
}

/// A SASL mechanism the client authenticates with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// RFC 4616: the password travels to the broker (use TLS).
    Plain,
    /// RFC 7677: the password never travels.
    ScramSha256,
    /// SCRAM with SHA-512, as Kafka offers it.
    ScramSha512,
}

impl SaslMechanism {
    /// The SASL name, as the broker's handshake takes it.
    pub fn name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        [
            SaslMechanism::Plain,
            SaslMechanism::ScramSha256,
            SaslMechanism::ScramSha512,
        ]
        .into_iter()
        .find(|mechanism| mechanism.name().eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| format!("{name:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"))
    }
}

/// A password: printed as `***` by `Debug`, so a logged configuration does not reveal it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `password`.
    pub fn new(password: impl Into<String>) -> Self {
        Password(password.into())
    }

    /// The password itself, for the exchange that needs it.
    pub fn reveal(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("***")
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            bootstrap: vec![defaults::BROKER_ADDRESS.to_string()],
            client_id: defaults::CLIENT_ID.to_string(),
            connect_timeout: defaults::CONNECT_TIMEOUT,
            request_timeout: defaults::REQUEST_TIMEOUT,
            reconnect_backoff_min: defaults::RECONNECT_BACKOFF_MIN,
            reconnect_backoff_max: defaults::RECONNECT_BACKOFF_MAX,
            retry_timeout: defaults::RETRY_TIMEOUT,
            metadata_max_age: defaults::METADATA_MAX_AGE,
            connection_inflight_requests_max: defaults::CONNECTION_INFLIGHT_REQUESTS_MAX,
            io_thread_core: None,
            tls: None,
            sasl_mechanism: None,
            sasl_username: String::new(),
            sasl_password: Password::default(),
        }
    }
}

impl ClientConfig {
    /// Defaults with one bootstrap address (`host:port`).
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self {
            bootstrap: vec![bootstrap.into()],
            ..Self::default()
        }
    }

    /// Authenticates every connection as `username` with `mechanism`.
    pub fn with_sasl(
        mut self,
        mechanism: SaslMechanism,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.sasl_mechanism = Some(mechanism);
        self.sasl_username = username.into();
        self.sasl_password = Password::new(password);
        self
    }

    /// Sets the client id sent with every request.
    pub fn with_client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// Talks TLS to the brokers.
    pub fn with_tls(mut self, tls: TlsConfig) -> Self {
        self.tls = Some(tls);
        self
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        if let Some(tls) = &self.tls {
            // Reads the files now: a bad one fails `Client::new`, naming it.
            tls.client_config()?;
        }
        if self.bootstrap.is_empty() {
            return Err(Error::invalid("client config", "no bootstrap address"));
        }
        if self.client_id.len() > spate_protocol::constants::CLIENT_ID_BYTES_MAX {
            return Err(Error::invalid("client config", "client_id is too long"));
        }
        if self.connection_inflight_requests_max == 0 {
            return Err(Error::invalid(
                "client config",
                "connection_inflight_requests_max must be at least 1",
            ));
        }
        if self.sasl_mechanism.is_some() && self.sasl_username.is_empty() {
            return Err(Error::invalid(
                "client config",
                "sasl_mechanism is set but sasl_username is empty",
            ));
        }
        if self.reconnect_backoff_min > self.reconnect_backoff_max {
            return Err(Error::invalid(
                "client config",
                "reconnect_backoff_min is above reconnect_backoff_max",
            ));
        }
        Ok(())
    }
}

/// What `send` does when the producer's buffer memory is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BufferFullPolicy {
    /// Wait (await, or block in `send_blocking`) up to `ProducerConfig::buffer_wait_timeout`.
    Wait,
    /// Fail at once with [`Error::BufferFull`].
    Error,
}

/// How a producer picks a partition for a record that names none and has no key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeylessPartitioning {
    /// Stay on one partition until its batch is sealed, then move to the next (Kafka's sticky
    /// partitioner): full batches, and still an even spread over time.
    Sticky,
    /// Each record to the next partition in turn.
    RoundRobin,
}

/// Batching, acknowledgement, retry and memory settings of a [`Producer`](crate::Producer).
///
/// ```
/// use std::time::Duration;
/// use spate_client::{Acks, ProducerConfig};
///
/// let config = ProducerConfig {
///     acks: Acks::Leader,
///     linger: Duration::from_millis(20),
///     ..ProducerConfig::default()
/// };
/// assert_eq!(config.batch_bytes, spate_client::config::defaults::BATCH_BYTES);
/// ```
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// What the broker must have done before it answers: nothing (`None`, no answer at all),
    /// appended (`Leader`), or made durable under the topic's policy (`All`, the default).
    pub acks: Acks,
    /// A batch is sealed once it reaches this many bytes (a single larger record gets a batch
    /// of its own, up to the protocol's `BATCH_BYTES_MAX`).
    pub batch_bytes: usize,
    /// How long a batch that is not full waits for more records before it is sent.
    pub linger: Duration,
    /// Record bytes accepted but not yet acknowledged, at most.
    pub buffer_bytes_max: usize,
    /// What `send` does when the buffer is full.
    pub buffer_full: BufferFullPolicy,
    /// How long `send` waits for memory under [`BufferFullPolicy::Wait`].
    pub buffer_wait_timeout: Duration,
    /// How long a record may take to be acknowledged, retries included; then it fails.
    pub delivery_timeout: Duration,
    /// First pause before a batch is retried; doubles up to `retry_backoff_max`.
    pub retry_backoff_min: Duration,
    /// Longest pause before a batch is retried.
    pub retry_backoff_max: Duration,
    /// Bytes of batches in one produce request, at most.
    pub produce_request_bytes_max: usize,
    /// Produce requests in flight per partition. With `idempotence` (the default) at most
    /// `PRODUCER_BATCHES_RETAINED` (5), and records keep their order and are written once
    /// across retries. Without it, more than one lets later batches of a partition overtake a
    /// batch being retried, and a retry after a lost answer may write records twice.
    pub partition_inflight_requests_max: usize,
    /// Sent to the broker: how long it may take to append and acknowledge.
    pub produce_timeout: Duration,
    /// How records with neither key nor partition are spread.
    pub keyless: KeylessPartitioning,
    /// Kafka's idempotent producer: the producer gets an id from the broker (InitProducerId)
    /// and stamps each batch with it, its epoch and per-partition sequence numbers, so the
    /// broker refuses a batch that would land out of order and answers a retried copy with the
    /// original's offsets. Retries then neither duplicate nor reorder records, even with several
    /// requests in flight, while the partition remembers the producer (it forgets one whose
    /// batches retention removed, or that was idle or evicted: see the broker's
    /// `tuning/README.md`). Under `Acks::None` nothing is answered, so nothing is retried and
    /// there is nothing to act on: batches go out unstamped. A broker without InitProducerId
    /// fails the producer with `Error::UnsupportedVersion`; set this to false for such a broker.
    pub idempotence: bool,
    /// Kafka's `transactional.id`: makes the producer transactional (see
    /// [`Producer::init_transactions`](crate::Producer::init_transactions)). The id names the
    /// producer across restarts: a new instance with the same id fences the old one and aborts
    /// the transaction it left open. Needs idempotence and `Acks::All`.
    pub transactional_id: Option<String>,
    /// How long a transaction may stay open before the broker aborts it (sent with
    /// `init_transactions`; whole milliseconds, at most `i32::MAX`).
    pub transaction_timeout: Duration,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            acks: Acks::All,
            batch_bytes: defaults::BATCH_BYTES,
            linger: defaults::LINGER,
            buffer_bytes_max: defaults::BUFFER_BYTES_MAX,
            buffer_full: BufferFullPolicy::Wait,
            buffer_wait_timeout: defaults::BUFFER_WAIT_TIMEOUT,
            delivery_timeout: defaults::DELIVERY_TIMEOUT,
            retry_backoff_min: defaults::RETRY_BACKOFF_MIN,
            retry_backoff_max: defaults::RETRY_BACKOFF_MAX,
            produce_request_bytes_max: defaults::PRODUCE_REQUEST_BYTES_MAX,
            partition_inflight_requests_max: defaults::PARTITION_INFLIGHT_REQUESTS_MAX,
            produce_timeout: defaults::PRODUCE_TIMEOUT,
            keyless: KeylessPartitioning::Sticky,
            idempotence: defaults::IDEMPOTENCE,
            transactional_id: None,
            transaction_timeout: defaults::TRANSACTION_TIMEOUT,
        }
    }
}

impl ProducerConfig {
    /// Whether batches are stamped: idempotence is on and the broker answers (acks above none).
    pub(crate) fn is_idempotent(&self) -> bool {
        self.idempotence && self.acks != Acks::None
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::invalid("producer config", reason));
        // Smallest batch that can hold anything: header, archive root, one empty record.
        let batch_bytes_min = BATCH_HEADER_BYTES + 64;
        if !(batch_bytes_min..=BATCH_BYTES_MAX).contains(&self.batch_bytes) {
            return invalid(format!(
                "batch_bytes {} must lie in [{batch_bytes_min}, {BATCH_BYTES_MAX}]",
                self.batch_bytes
            ));
        }
        if self.buffer_bytes_max < self.batch_bytes {
            return invalid(format!(
                "buffer_bytes_max {} is below batch_bytes {}",
                self.buffer_bytes_max, self.batch_bytes
            ));
        }
        if self.produce_request_bytes_max < BATCH_BYTES_MAX
            || self.produce_request_bytes_max >= FRAME_BYTES_MAX
        {
            return invalid(format!(
                "produce_request_bytes_max {} must lie in [{BATCH_BYTES_MAX}, {FRAME_BYTES_MAX})",
                self.produce_request_bytes_max
            ));
        }
        if self.partition_inflight_requests_max == 0 {
            return invalid("partition_inflight_requests_max must be at least 1".into());
        }
        if self.idempotence && self.partition_inflight_requests_max > PRODUCER_BATCHES_RETAINED {
            return invalid(format!(
                "partition_inflight_requests_max {} is above {PRODUCER_BATCHES_RETAINED}, the \
                 batches per producer the broker remembers; lower it or turn idempotence off",
                self.partition_inflight_requests_max
            ));
        }
        if self.retry_backoff_min > self.retry_backoff_max {
            return invalid("retry_backoff_min is above retry_backoff_max".into());
        }
        if u32::try_from(self.produce_timeout.as_millis()).is_err() {
            return invalid("produce_timeout does not fit in u32 milliseconds".into());
        }
        if let Some(transactional_id) = &self.transactional_id {
            if transactional_id.is_empty() || transactional_id.len() > TRANSACTIONAL_ID_BYTES_MAX {
                return invalid(format!(
                    "transactional_id must be 1 to {TRANSACTIONAL_ID_BYTES_MAX} bytes"
                ));
            }
            if !self.idempotence || self.acks != Acks::All {
                return invalid("a transactional producer needs idempotence and Acks::All".into());
            }
            let timeout_ms = self.transaction_timeout.as_millis();
            if timeout_ms == 0 || timeout_ms > i32::MAX as u128 {
                return invalid(
                    "transaction_timeout must be at least 1 ms and fit in i32 milliseconds".into(),
                );
            }
        }
        Ok(())
    }
}

/// What a consumer does when its position falls outside a partition's log (records deleted by
/// retention, or a seek past the end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// Move to the log start.
    Earliest,
    /// Move to the high watermark.
    Latest,
    /// Report [`Error::OffsetOutOfRange`] from `poll` and stop fetching the partition until
    /// the application seeks.
    Error,
}

/// Prefetch and fetch settings of a [`Consumer`](crate::Consumer).
///
/// ```
/// use spate_client::ConsumerConfig;
///
/// // A consumer that holds at most 8 MiB ahead of the application.
/// let config = ConsumerConfig {
///     prefetch_bytes_max: 8 * 1024 * 1024,
///     fetch_bytes_max: 4 * 1024 * 1024,
///     partition_fetch_bytes_max: 1024 * 1024,
///     ..ConsumerConfig::default()
/// };
/// assert!(config.fetch_bytes_max <= config.prefetch_bytes_max);
/// ```
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Fetched bytes held ahead of the application, at most (plus one batch: the broker
    /// always returns a whole first batch, even one larger than asked for).
    pub prefetch_bytes_max: usize,
    /// Record bytes asked for in one fetch request, at most.
    pub fetch_bytes_max: usize,
    /// Record bytes asked for per partition in one fetch request, at most.
    pub partition_fetch_bytes_max: usize,
    /// How long the broker may hold a fetch that found nothing new.
    pub fetch_wait: Duration,
    /// Pause after a failed fetch (the broker unreachable, say) before the next.
    pub fetch_backoff: Duration,
    /// What happens when a position falls outside the log.
    pub offset_reset: OffsetReset,
    /// Most bytes of decompressed records one poll result holds. Kafka producers may compress
    /// their batches (gzip, snappy, lz4, zstd); `poll` decompresses them. One batch that
    /// inflates past this is refused as corrupt (`Error::CorruptBatch` with
    /// `DecompressedTooLarge`), so a small hostile batch cannot exhaust memory; batches that
    /// would take a poll past it are left for the next poll (fetched again), so many batches
    /// cannot either. Held while the poll result lives, beside the fetched bytes
    /// `prefetch_bytes_max` bounds.
    pub decompressed_bytes_max: usize,
    /// Kafka's `isolation.level`. `ReadUncommitted` (the default) reads every record up to the
    /// high watermark, transactional or not. `ReadCommitted` reads only up to the last stable
    /// offset (no record of an undecided transaction) and drops the records of aborted
    /// transactions; a broker that predates transactions is refused
    /// (`Error::UnsupportedVersion`) rather than read uncommitted.
    pub isolation_level: IsolationLevel,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            prefetch_bytes_max: defaults::PREFETCH_BYTES_MAX,
            fetch_bytes_max: defaults::FETCH_BYTES_MAX,
            partition_fetch_bytes_max: defaults::PARTITION_FETCH_BYTES_MAX,
            fetch_wait: defaults::FETCH_WAIT,
            fetch_backoff: defaults::FETCH_BACKOFF,
            offset_reset: OffsetReset::Error,
            decompressed_bytes_max: defaults::DECOMPRESSED_BYTES_MAX,
            isolation_level: IsolationLevel::ReadUncommitted,
        }
    }
}

impl ConsumerConfig {
    pub(crate) fn check(&self) -> Result<(), Error> {
        let invalid = |reason: &str| Err(Error::invalid("consumer config", reason));
        if self.partition_fetch_bytes_max == 0 || self.fetch_bytes_max == 0 {
            return invalid("fetch sizes must be positive");
        }
        if self.partition_fetch_bytes_max > self.fetch_bytes_max {
            return invalid("partition_fetch_bytes_max is above fetch_bytes_max");
        }
        if self.fetch_bytes_max > self.prefetch_bytes_max {
            return invalid("fetch_bytes_max is above prefetch_bytes_max");
        }
        if self.fetch_bytes_max >= FRAME_BYTES_MAX || self.fetch_bytes_max > u32::MAX as usize {
            return invalid("fetch_bytes_max must stay below the frame limit");
        }
        if self.decompressed_bytes_max == 0 {
            return invalid("decompressed_bytes_max must be positive");
        }
        if u32::try_from(self.fetch_wait.as_millis()).is_err() {
            return invalid("fetch_wait does not fit in u32 milliseconds");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_checks() {
        ClientConfig::default().check().unwrap();
        ProducerConfig::default().check().unwrap();
        ConsumerConfig::default().check().unwrap();
    }

    #[test]
    fn a_transactional_producer_needs_idempotence_acks_all_and_a_usable_id_and_timeout() {
        let transactional = ProducerConfig {
            transactional_id: Some("payments".into()),
            ..ProducerConfig::default()
        };
        transactional.check().unwrap();
        for refused in [
            ProducerConfig {
                idempotence: false,
                ..transactional.clone()
            },
            ProducerConfig {
                acks: Acks::Leader,
                ..transactional.clone()
            },
            ProducerConfig {
                transactional_id: Some(String::new()),
                ..transactional.clone()
            },
            ProducerConfig {
                transactional_id: Some("t".repeat(TRANSACTIONAL_ID_BYTES_MAX + 1)),
                ..transactional.clone()
            },
            ProducerConfig {
                transaction_timeout: Duration::ZERO,
                ..transactional.clone()
            },
            ProducerConfig {
                transaction_timeout: Duration::from_millis(i32::MAX as u64 + 1),
                ..transactional.clone()
            },
        ] {
            assert!(
                matches!(refused.check(), Err(Error::Invalid { .. })),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn a_buffer_smaller_than_a_batch_is_refused() {
        let config = ProducerConfig {
            buffer_bytes_max: 1024,
            batch_bytes: 4096,
            ..ProducerConfig::default()
        };
        assert!(matches!(config.check(), Err(Error::Invalid { .. })));
    }

    #[test]
    fn an_idempotent_producer_may_not_have_more_in_flight_than_the_broker_remembers() {
        let config = ProducerConfig {
            partition_inflight_requests_max: PRODUCER_BATCHES_RETAINED + 1,
            ..ProducerConfig::default()
        };
        assert!(matches!(config.check(), Err(Error::Invalid { .. })));
        let without_idempotence = ProducerConfig {
            idempotence: false,
            ..config
        };
        without_idempotence.check().unwrap();
    }

    #[test]
    fn acks_none_leaves_batches_unstamped_even_with_idempotence_on() {
        let config = ProducerConfig {
            acks: Acks::None,
            ..ProducerConfig::default()
        };
        assert!(config.idempotence);
        assert!(!config.is_idempotent());
        assert!(ProducerConfig::default().is_idempotent());
    }
}
