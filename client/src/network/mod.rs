//! The client's view of the cluster: connections (each reopened after a failure), calls with
//! retries for idempotent requests, and the topic metadata cache.
//!
//! Everything here runs on the I/O thread except the cache reads, which application threads do
//! on the producer's fast path. A Spate broker is one process whose shards share one listen
//! address, so one pipelined connection reaches every partition; the broker forwards requests to
//! the owning shard. The broker answers each connection's requests in order, so a consumer's
//! long-polling fetch would hold back every answer queued behind it: each producer and each
//! consumer therefore has a [`ConnectionSlot`] of its own, and admin and metadata requests share
//! one. Several brokers (replication) will add a slot per broker here.

pub(crate) mod coarse_clock;
pub(crate) mod connection;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use spate_protocol::api::{MetadataRequest, PartitionMetadata, Request};
use spate_protocol::ErrorCode;

use crate::config::ClientConfig;
use crate::error::Error;
use connection::Connection;

/// What the client knows about one topic.
#[derive(Debug, Clone)]
pub(crate) struct TopicInfo {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionMetadata>,
    /// When the entry goes stale, on [`coarse_clock::monotonic`]: a cache hit then costs a
    /// coarse clock read (a tick late at worst) rather than a precise one.
    fresh_until: Duration,
}

impl TopicInfo {
    pub(crate) fn partition_count(&self) -> u32 {
        // Bounded by PARTITIONS_PER_TOPIC_MAX when decoded.
        self.partitions.len() as u32
    }
}

/// One connection, opened on first use and reopened on the first use after it broke.
pub(crate) struct ConnectionSlot {
    /// Held across a connect, so that concurrent callers wait for one connection attempt.
    current: tokio::sync::Mutex<Option<Arc<Connection>>>,
}

impl ConnectionSlot {
    pub(crate) fn new() -> Self {
        Self {
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The slot's open connection, or a new one to the first bootstrap address that answers.
    /// The only place the client walks the bootstrap list.
    pub(crate) async fn connection(&self, config: &ClientConfig) -> Result<Arc<Connection>, Error> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if !connection.is_closed() {
                return Ok(connection.clone());
            }
        }
        *current = None;
        let mut last_error = None;
        for address in &config.bootstrap {
            match Connection::open(address, config).await {
                Ok(connection) => {
                    let connection = Arc::new(connection);
                    *current = Some(connection.clone());
                    return Ok(connection);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.expect("the config check ensures one bootstrap address"))
    }
}

/// Shared by every producer, consumer and admin handle of one client.
pub(crate) struct Network {
    config: Arc<ClientConfig>,
    /// Admin and metadata requests.
    shared: ConnectionSlot,
    topics: Mutex<TopicCache>,
}

/// Topic metadata by name, plus the entry used last: a producer mostly sends to one topic, and
/// comparing its name is cheaper than hashing it for every record.
#[derive(Default)]
struct TopicCache {
    by_name: HashMap<String, Arc<TopicInfo>>,
    /// Always also in `by_name`.
    last_used: Option<Arc<TopicInfo>>,
}

/// Which failures a call may retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Retry {
    /// Any retriable failure: the request changes nothing if repeated (reads).
    Idempotent,
    /// Only failures to connect, where the request was surely never sent (topic changes).
    BeforeSending,
}

impl Network {
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            shared: ConnectionSlot::new(),
            topics: Mutex::new(TopicCache::default()),
        }
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The slot's open connection, or a new one to the first bootstrap address that answers.
    pub(crate) async fn connection(&self, slot: &ConnectionSlot) -> Result<Arc<Connection>, Error> {
        slot.connection(&self.config).await
    }

    /// One attempt on the slot's connection: connect if needed, send, decode.
    pub(crate) async fn call_in<R: Request>(
        &self,
        slot: &ConnectionSlot,
        request: &R,
        operation: &'static str,
        extra_wait: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let connection = self.connection(slot).await?;
        connection.call(request, operation, extra_wait).await
    }

    /// Calls on the shared connection until it works, a failure is not retriable under
    /// `retry`, or `retry_timeout`
    /// passes; then returns the last failure. Pauses between attempts double from
    /// `reconnect_backoff_min` to `reconnect_backoff_max`.
    pub(crate) async fn call_retrying<R: Request>(
        &self,
        request: &R,
        operation: &'static str,
        retry: Retry,
    ) -> Result<R::Response, Error> {
        let deadline = Instant::now() + self.config.retry_timeout;
        let mut backoff = self.config.reconnect_backoff_min;
        loop {
            let error = match self.call_in(&self.shared, request, operation, None).await {
                Ok(response) => return Ok(response),
                Err(error) => error,
            };
            let may_retry = match retry {
                Retry::Idempotent => error.is_retriable(),
                Retry::BeforeSending => matches!(error, Error::Connect { .. }),
            };
            if !may_retry || Instant::now() + backoff > deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
        }
    }

    /// Like [`Network::call_retrying`] (an idempotent request), and also asks again while
    /// `again` says the answer holds a transient per-partition error (a partition the broker is
    /// still opening after a start) and `retry_timeout` allows; then returns the last answer,
    /// whose errors the caller reports.
    pub(crate) async fn call_retrying_answers<R: Request>(
        &self,
        request: &R,
        operation: &'static str,
        again: impl Fn(&R::Response) -> bool,
    ) -> Result<R::Response, Error> {
        let deadline = Instant::now() + self.config.retry_timeout;
        let mut backoff = self.config.reconnect_backoff_min;
        loop {
            let response = self
                .call_retrying(request, operation, Retry::Idempotent)
                .await?;
            if !again(&response) || Instant::now() + backoff > deadline {
                return Ok(response);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
        }
    }

    fn topics(&self) -> MutexGuard<'_, TopicCache> {
        self.topics
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Cached metadata that is younger than `metadata_max_age`, without any I/O.
    pub(crate) fn cached_topic(&self, topic: &str) -> Option<Arc<TopicInfo>> {
        let mut cache = self.topics();
        let info = match &cache.last_used {
            Some(last) if last.name == topic => last.clone(),
            _ => {
                let info = cache.by_name.get(topic).cloned()?;
                cache.last_used = Some(info.clone());
                info
            }
        };
        (coarse_clock::monotonic() < info.fresh_until).then_some(info)
    }

    /// The partition count of `topic` from fresh cached metadata, without any I/O: the
    /// producer's per-record lookup, which needs nothing else and so takes no reference.
    pub(crate) fn cached_partition_count(&self, topic: &str) -> Option<u32> {
        let mut cache = self.topics();
        if let Some(last) = &cache.last_used {
            if last.name == topic {
                let fresh = coarse_clock::monotonic() < last.fresh_until;
                return fresh.then(|| last.partition_count());
            }
        }
        let info = cache.by_name.get(topic)?.clone();
        let fresh = coarse_clock::monotonic() < info.fresh_until;
        let partition_count = info.partition_count();
        cache.last_used = Some(info);
        fresh.then_some(partition_count)
    }

    /// Forgets a topic, so that the next use asks the broker again.
    pub(crate) fn invalidate(&self, topic: &str) {
        let mut cache = self.topics();
        cache.by_name.remove(topic);
        if cache
            .last_used
            .as_ref()
            .is_some_and(|last| last.name == topic)
        {
            cache.last_used = None;
        }
    }

    /// Metadata of `topic`, from the cache when fresh, otherwise from the broker.
    pub(crate) async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh_topic(topic).await
    }

    /// Asks the broker for `topic`'s metadata and caches it.
    pub(crate) async fn refresh_topic(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        let request = MetadataRequest {
            topics: Some(vec![topic.to_string()]),
        };
        let response = self
            .call_retrying(&request, "metadata", Retry::Idempotent)
            .await?;
        let Some(answer) = response
            .topics
            .into_iter()
            .find(|entry| entry.name == topic)
        else {
            return Err(Error::Protocol {
                operation: "metadata",
                source: spate_protocol::WireError::InvalidValue {
                    field: "topics (requested topic missing)",
                    value: 0,
                },
            });
        };
        match answer.error_code {
            ErrorCode::None => {}
            ErrorCode::UnknownTopicOrPartition => {
                self.invalidate(topic);
                return Err(Error::UnknownTopic {
                    topic: topic.to_string(),
                });
            }
            code => return Err(Error::broker("metadata", Some(topic), None, code, None)),
        }
        let info = Arc::new(TopicInfo {
            name: topic.to_string(),
            partitions: answer.partitions,
            fresh_until: coarse_clock::monotonic() + self.config.metadata_max_age,
        });
        let mut cache = self.topics();
        cache.by_name.insert(topic.to_string(), info.clone());
        // The replaced entry may be the last used one; the next lookup picks the new one.
        cache.last_used = Some(info.clone());
        Ok(info)
    }
}
