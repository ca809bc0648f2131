//! The client's view of the cluster: connections (each reopened after a failure), calls with
//! retries for idempotent requests, the topic metadata cache, the brokers and where each
//! request goes (`routing`).
//!
//! Everything here runs on the I/O thread except the cache reads, which application threads do
//! on the producer's fast path. A broker is one process whose shards share one listen address,
//! so one pipelined connection reaches every partition it leads; the broker forwards requests
//! to the owning shard. The broker answers each connection's requests in order, so a
//! consumer's long-polling fetch would hold back every answer queued behind it: each producer
//! and each consumer therefore has connections of its own ([`BrokerSlots`]: one per broker it
//! sends to, reached through the bootstrap addresses while the cluster is one broker), and
//! admin and metadata requests share one set.
//!
//! Metadata is asked for on demand: when a topic's entry is older than `metadata_max_age`, and
//! when a request learns that its partition's leader moved (`Network::leaders_changed`); one
//! metadata request is in flight at a time.

pub(crate) mod coarse_clock;
pub(crate) mod connection;
pub(crate) mod routing;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use spate_protocol::api::{CoordinatorType, FindCoordinatorRequest, NO_NODE};
use spate_protocol::api::{MetadataRequest, MetadataResponse, PartitionMetadata, Request};
use spate_protocol::{ErrorCode, NodeId};

use crate::config::{defaults, ClientConfig};
use crate::error::Error;
use connection::Connection;
use routing::{group_by_route, recovery_for, route_to_broker, route_to_leader};
pub(crate) use routing::{BrokerDirectory, Recovery, Route};

/// What the client knows about one topic.
#[derive(Debug)]
pub(crate) struct TopicInfo {
    pub(crate) name: String,
    pub(crate) partitions: Vec<PartitionMetadata>,
    /// When the entry goes stale, on [`coarse_clock::monotonic`]: a cache hit then costs a
    /// coarse clock read (a tick late at worst) rather than a precise one.
    fresh_until: Duration,
    /// Set when a request learned that a leader moved: routing asks again, counting
    /// partitions does not.
    leaders_stale: AtomicBool,
}

impl TopicInfo {
    pub(crate) fn partition_count(&self) -> u32 {
        // Bounded by PARTITIONS_PER_TOPIC_MAX when decoded.
        self.partitions.len() as u32
    }

    /// The leader of `partition` as metadata said (`None`: none now, or no such partition).
    pub(crate) fn leader(&self, partition: u32) -> Option<NodeId> {
        self.partitions
            .iter()
            .find(|entry| entry.partition == partition)
            .and_then(leader_of)
    }
}

/// A partition's leader in a metadata answer (`None`: none now). A version 0 answer (a broker
/// that predates cluster metadata) reads as node 0, which a single broker routes through the
/// bootstrap connection anyway.
fn leader_of(partition: &PartitionMetadata) -> Option<NodeId> {
    (partition.leader_id != NO_NODE).then_some(partition.leader_id)
}

/// The brokers a metadata answer names (none from a version 0 answer).
fn directory_from(response: &MetadataResponse) -> BrokerDirectory {
    BrokerDirectory {
        brokers: response
            .brokers
            .iter()
            .map(|broker| (broker.node_id, endpoint(&broker.host, broker.port)))
            .collect(),
        controller: (response.controller_id != NO_NODE).then_some(response.controller_id),
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub(crate) fn endpoint(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Asks any broker (the shared connection) which broker coordinates `key`, retrying while the
/// coordinator is not available (its partition is electing a leader) until `retry_timeout`.
async fn find_coordinator_call(
    network: &Network,
    kind: CoordinatorKind,
    key: &str,
) -> Result<NodeId, Error> {
    let request = FindCoordinatorRequest {
        key_type: match kind {
            CoordinatorKind::Group => CoordinatorType::Group,
            CoordinatorKind::Transaction => CoordinatorType::Transaction,
        },
        key: key.to_string(),
    };
    let deadline = Instant::now() + network.config.retry_timeout;
    let mut backoff = network.config.reconnect_backoff_min;
    loop {
        let response = network
            .call_retrying(&request, "find coordinator", Retry::Idempotent)
            .await?;
        if response.error_code == ErrorCode::None && response.node_id != NO_NODE {
            return Ok(response.node_id);
        }
        let code = match response.error_code {
            ErrorCode::None => ErrorCode::CoordinatorNotAvailable,
            code => code,
        };
        if !code.is_retriable() || Instant::now() + backoff > deadline {
            let resource_type = match kind {
                CoordinatorKind::Group => spate_security::ResourceType::Group,
                CoordinatorKind::Transaction => spate_security::ResourceType::TransactionalId,
            };
            return Err(Error::broker(
                "find coordinator",
                None,
                None,
                code,
                response.error_message,
            )
            .naming(resource_type, key));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(network.config.reconnect_backoff_max);
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

    /// The slot's open connection if it goes to `address` (any address when `None`), or a new
    /// one: to `address`, or else to the first bootstrap address that answers and then to the
    /// first of `known` (brokers the cluster named: every bootstrap address may be down).
    /// The only place the client walks the bootstrap list.
    pub(crate) async fn connection_at(
        &self,
        address: Option<&str>,
        config: &ClientConfig,
        known: &[String],
    ) -> Result<Arc<Connection>, Error> {
        let mut current = self.current.lock().await;
        if let Some(connection) = current.as_ref() {
            let same_place = address.is_none_or(|address| connection.address() == address);
            if !connection.is_closed() && same_place {
                return Ok(connection.clone());
            }
        }
        *current = None;
        let candidates: Vec<&str> = match address {
            Some(address) => vec![address],
            None => config
                .bootstrap
                .iter()
                .chain(
                    known
                        .iter()
                        .filter(|known| !config.bootstrap.contains(known)),
                )
                .map(String::as_str)
                .collect(),
        };
        let mut last_error = None;
        for candidate in candidates {
            match Connection::open(candidate, config).await {
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

/// One role's connections (a producer's, a consumer's, the shared admin one): one to any
/// broker through the bootstrap addresses, and one per broker it sends to by route. Bounded by
/// the brokers the cluster names: slots of brokers it no longer names are dropped.
pub(crate) struct BrokerSlots {
    bootstrap: Arc<ConnectionSlot>,
    by_broker: Mutex<HashMap<NodeId, Arc<ConnectionSlot>>>,
}

impl BrokerSlots {
    pub(crate) fn new() -> Self {
        Self {
            bootstrap: Arc::new(ConnectionSlot::new()),
            by_broker: Mutex::new(HashMap::new()),
        }
    }

    /// The slot of requests any broker answers.
    pub(crate) fn bootstrap(&self) -> &Arc<ConnectionSlot> {
        &self.bootstrap
    }

    fn slot_for(&self, id: NodeId, directory: &BrokerDirectory) -> Arc<ConnectionSlot> {
        let mut slots = self
            .by_broker
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if slots.len() > directory.brokers.len() {
            slots.retain(|known, _| directory.brokers.contains_key(known));
        }
        slots
            .entry(id)
            .or_insert_with(|| Arc::new(ConnectionSlot::new()))
            .clone()
    }
}

/// Shared by every producer, consumer and admin handle of one client.
pub(crate) struct Network {
    config: Arc<ClientConfig>,
    /// Admin and metadata requests.
    shared: BrokerSlots,
    topics: Mutex<TopicCache>,
    /// The brokers as the last metadata answer named them; empty until one names them (and
    /// from a broker that predates cluster metadata).
    directory: Mutex<Arc<BrokerDirectory>>,
    /// Whether any metadata answer was read (`directory` is what the cluster says, not just
    /// nothing yet).
    directory_learned: AtomicBool,
    /// One metadata request at a time: many batches refused by a leader that moved ask for
    /// the same answer, and the first one's refresh serves the others.
    refreshing: tokio::sync::Mutex<()>,
    /// Which broker coordinates each group and transactional id, as FindCoordinator said.
    /// Bounded by the groups and transactional ids this client uses.
    coordinators: Mutex<HashMap<(CoordinatorKind, String), NodeId>>,
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

/// What a coordinator coordinates (FindCoordinator's key type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum CoordinatorKind {
    Group,
    Transaction,
}

impl Network {
    pub(crate) fn new(config: Arc<ClientConfig>) -> Self {
        Self {
            config,
            shared: BrokerSlots::new(),
            topics: Mutex::new(TopicCache::default()),
            directory: Mutex::new(Arc::new(BrokerDirectory::default())),
            directory_learned: AtomicBool::new(false),
            refreshing: tokio::sync::Mutex::new(()),
            coordinators: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// The brokers as the last metadata answer named them.
    pub(crate) fn directory(&self) -> Arc<BrokerDirectory> {
        self.directory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn known_addresses(&self) -> Vec<String> {
        self.directory().brokers.values().cloned().collect()
    }

    /// The slot's open connection, or a new one to the first bootstrap address (then known
    /// broker) that answers.
    pub(crate) async fn connection(&self, slot: &ConnectionSlot) -> Result<Arc<Connection>, Error> {
        slot.connection_at(None, &self.config, &self.known_addresses())
            .await
    }

    /// The connection of `slots` that goes where `route` says.
    pub(crate) async fn connection_for(
        &self,
        slots: &BrokerSlots,
        route: &Route,
        operation: &'static str,
    ) -> Result<Arc<Connection>, Error> {
        match route {
            Route::Bootstrap => self.connection(slots.bootstrap()).await,
            Route::Broker { id, address } => {
                let slot = slots.slot_for(*id, &self.directory());
                slot.connection_at(Some(address), &self.config, &[]).await
            }
            Route::NoLeader => Err(Error::broker(
                operation,
                None,
                None,
                ErrorCode::LeaderNotAvailable,
                Some("the partition has no leader in the client's metadata".into()),
            )),
            Route::UnknownBroker(id) => Err(Error::broker(
                operation,
                None,
                None,
                ErrorCode::LeaderNotAvailable,
                Some(format!("broker {id} is not in the client's metadata")),
            )),
        }
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

    /// One attempt where `route` says, on the connection of `slots` that goes there.
    pub(crate) async fn call_routed<R: Request>(
        &self,
        slots: &BrokerSlots,
        route: &Route,
        request: &R,
        operation: &'static str,
        extra_wait: Option<Duration>,
    ) -> Result<R::Response, Error> {
        let connection = self.connection_for(slots, route, operation).await?;
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
            let error = match self
                .call_in(self.shared.bootstrap(), request, operation, None)
                .await
            {
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

    /// Calls the coordinator of `key` (a group, or a transactional id) on `slots`, retrying
    /// retriable failures until `retry`'s rule or `retry_timeout` stops it; a coordinator that
    /// moved, is not ready, or cannot be reached is found again first. `code_of` reads the
    /// response's top-level error code (a coordinator refusal there is retried like a failed
    /// call). Returns the first answer that is not such a refusal, or the last failure.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn call_coordinator<R: Request>(
        &self,
        slots: &BrokerSlots,
        kind: CoordinatorKind,
        key: &str,
        request: &R,
        operation: &'static str,
        retry: Retry,
        extra_wait: Option<Duration>,
        code_of: impl Fn(&R::Response) -> ErrorCode,
    ) -> Result<R::Response, Error> {
        let deadline = Instant::now() + self.config.retry_timeout;
        let mut backoff = self.config.reconnect_backoff_min;
        loop {
            let attempt = match self.coordinator(kind, key).await {
                Ok(route) => {
                    self.call_routed(slots, &route, request, operation, extra_wait)
                        .await
                }
                Err(error) => Err(error),
            };
            let error = match attempt {
                Ok(response) => {
                    let code = code_of(&response);
                    if !routing::coordinator_moved(code) {
                        return Ok(response);
                    }
                    Error::broker(operation, None, None, code, None)
                }
                Err(error) => error,
            };
            if recovery_for(&error, true) == Recovery::FindCoordinator {
                self.coordinator_moved(kind, key);
            }
            let may_retry = match retry {
                Retry::Idempotent => error.is_retriable(),
                // A coordinator's refusal means it did nothing.
                Retry::BeforeSending => {
                    matches!(error, Error::Connect { .. })
                        || error.code().is_some_and(routing::coordinator_moved)
                }
            };
            if !may_retry || Instant::now() + backoff > deadline {
                return Err(error);
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
        }
    }

    /// The shared admin connections.
    pub(crate) fn shared_slots(&self) -> &BrokerSlots {
        &self.shared
    }

    /// Sends an idempotent request for partitions to their leaders on the shared admin
    /// connections: `build` makes the request for a set of partitions, `answers` reads each
    /// partition's code out of the response. Partitions whose leader moved (or whose broker was
    /// unreachable) are asked again of the new leader after a metadata refresh, until
    /// `retry_timeout`; then their last failure stays in the result. Returns each partition's
    /// answer (`Ok` with the partition's entry, or the failure), in `partitions` order.
    pub(crate) async fn call_leaders<R, A>(
        &self,
        topic: &str,
        partitions: &[u32],
        operation: &'static str,
        build: impl Fn(&[u32]) -> R,
        answers: impl Fn(R::Response) -> Vec<(u32, ErrorCode, A)>,
    ) -> Result<Vec<Result<A, Error>>, Error>
    where
        R: Request,
    {
        let deadline = Instant::now() + self.config.retry_timeout;
        let mut backoff = self.config.reconnect_backoff_min;
        let mut results: Vec<Option<Result<A, Error>>> = partitions.iter().map(|_| None).collect();
        let mut pending: Vec<usize> = (0..partitions.len()).collect();
        loop {
            // A single broker is asked through the bootstrap connection without metadata, as
            // before clustering; the first leader refusal there asks metadata (below).
            let info = if self.directory().is_cluster() {
                Some(self.topic_for_routing(topic).await?)
            } else {
                None
            };
            let directory = self.directory();
            let (groups, unroutable) = group_by_route(pending, |index| match &info {
                Some(info) => route_to_leader(info.leader(partitions[*index]), &directory),
                None => Route::Bootstrap,
            });
            let mut again = Vec::new();
            for index in unroutable {
                results[index] = Some(Err(Error::broker(
                    operation,
                    Some(topic),
                    Some(partitions[index]),
                    ErrorCode::LeaderNotAvailable,
                    None,
                )));
                again.push(index);
            }
            for (route, indexes) in groups {
                let asked: Vec<u32> = indexes.iter().map(|index| partitions[*index]).collect();
                let request = build(&asked);
                match self
                    .call_routed(&self.shared, &route, &request, operation, None)
                    .await
                {
                    Ok(response) => {
                        let mut entries = answers(response);
                        for index in indexes {
                            let partition = partitions[index];
                            let Some(position) =
                                entries.iter().position(|(entry, _, _)| *entry == partition)
                            else {
                                results[index] = Some(Err(Error::Protocol {
                                    operation,
                                    source: spate_protocol::WireError::InvalidValue {
                                        field: "response (an asked-for partition is missing)",
                                        value: i64::from(partition),
                                    },
                                }));
                                continue;
                            };
                            let (_, code, entry) = entries.swap_remove(position);
                            if code == ErrorCode::None {
                                results[index] = Some(Ok(entry));
                                continue;
                            }
                            let error =
                                Error::broker(operation, Some(topic), Some(partition), code, None);
                            if recovery_for(&error, false) == Recovery::RefreshMetadata
                                && code != ErrorCode::UnknownTopicOrPartition
                            {
                                again.push(index);
                            }
                            results[index] = Some(Err(error));
                        }
                    }
                    Err(error) => {
                        let retry = error.is_retriable();
                        for index in indexes {
                            if retry {
                                again.push(index);
                            }
                            results[index] = Some(Err(error.clone()));
                        }
                    }
                }
            }
            if again.is_empty() || Instant::now() + backoff > deadline {
                break;
            }
            if self.directory().is_cluster() {
                self.leaders_changed(topic);
            } else {
                // Perhaps a cluster this client has not asked metadata of yet: learn its
                // brokers. A failure here shows up as the next attempt's.
                let _ = self.refresh_topic(topic).await;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(self.config.reconnect_backoff_max);
            again.sort_unstable();
            pending = again;
        }
        Ok(results
            .into_iter()
            .map(|result| result.expect("every partition was asked at least once"))
            .collect())
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

    /// Marks a topic's leaders as stale (a leader refused, or its broker went away): the next
    /// request routed for it asks for metadata first. Its partition count stays usable, so
    /// the producer's `send` does not wait for the refresh.
    pub(crate) fn leaders_changed(&self, topic: &str) {
        if let Some(info) = self.topics().by_name.get(topic) {
            info.leaders_stale.store(true, Ordering::Relaxed);
        }
    }

    /// Metadata of `topic`, from the cache when fresh, otherwise from the broker.
    pub(crate) async fn topic(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        if let Some(info) = self.cached_topic(topic) {
            return Ok(info);
        }
        self.refresh_topic(topic).await
    }

    /// Metadata of `topic` whose leaders are not known to be stale: what requests are routed
    /// by.
    pub(crate) async fn topic_for_routing(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        if let Some(info) = self.cached_topic(topic) {
            if !info.leaders_stale.load(Ordering::Relaxed) {
                return Ok(info);
            }
        }
        let _refreshing = self.refreshing.lock().await;
        // Someone else's refresh may have answered while this one waited for its turn.
        if let Some(info) = self.cached_topic(topic) {
            if !info.leaders_stale.load(Ordering::Relaxed) {
                return Ok(info);
            }
        }
        self.refresh_topic_now(topic).await
    }

    /// Asks the broker for `topic`'s metadata and caches it.
    pub(crate) async fn refresh_topic(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        let _refreshing = self.refreshing.lock().await;
        self.refresh_topic_now(topic).await
    }

    async fn refresh_topic_now(&self, topic: &str) -> Result<Arc<TopicInfo>, Error> {
        let request = MetadataRequest {
            topics: Some(vec![topic.to_string()]),
        };
        let response = self
            .call_retrying(&request, "metadata", Retry::Idempotent)
            .await?;
        self.absorb_brokers(&response);
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
            leaders_stale: AtomicBool::new(false),
        });
        let mut cache = self.topics();
        cache.by_name.insert(topic.to_string(), info.clone());
        // The replaced entry may be the last used one; the next lookup picks the new one.
        cache.last_used = Some(info.clone());
        Ok(info)
    }

    /// Metadata of every topic (or those named), with the brokers: what `cluster info` shows.
    /// Updates the broker directory as any metadata answer does.
    pub(crate) async fn cluster_metadata(
        &self,
        topics: Option<Vec<String>>,
    ) -> Result<MetadataResponse, Error> {
        let response = self
            .call_retrying(&MetadataRequest { topics }, "metadata", Retry::Idempotent)
            .await?;
        self.absorb_brokers(&response);
        Ok(response)
    }

    /// Learns the brokers a metadata answer names. An answer naming none (a single broker, or
    /// one that predates cluster metadata) leaves the client on its bootstrap addresses.
    fn absorb_brokers(&self, response: &MetadataResponse) {
        let directory = directory_from(response);
        self.directory_learned.store(true, Ordering::Relaxed);
        let mut current = self
            .directory
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if **current != directory {
            *current = Arc::new(directory);
        }
    }

    /// Where requests for `key`'s group or transaction go now: the coordinator FindCoordinator
    /// named (asked once, then cached until [`Network::coordinator_moved`]), or the bootstrap
    /// connection for a single broker.
    pub(crate) async fn coordinator(
        &self,
        kind: CoordinatorKind,
        key: &str,
    ) -> Result<Route, Error> {
        let mut directory = self.directory();
        if !self.directory_learned.load(Ordering::Relaxed) {
            // No metadata asked yet: learn whether this is a cluster.
            self.cluster_metadata(Some(Vec::new())).await?;
            directory = self.directory();
        }
        if !directory.is_cluster() {
            return Ok(Route::Bootstrap);
        }
        let cached = self
            .coordinators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(&(kind, key.to_string()))
            .copied();
        let id = match cached {
            Some(id) => id,
            None => {
                let id = self.find_coordinator(kind, key).await?;
                let mut coordinators = self
                    .coordinators
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if coordinators.len() >= defaults::COORDINATORS_CACHED_MAX {
                    coordinators.clear();
                }
                coordinators.insert((kind, key.to_string()), id);
                id
            }
        };
        match route_to_broker(id, &directory) {
            Route::UnknownBroker(_) => {
                self.cluster_metadata(Some(Vec::new())).await?;
                Ok(route_to_broker(id, &self.directory()))
            }
            route => Ok(route),
        }
    }

    /// Forgets `key`'s coordinator (it refused, or its broker went away): the next request
    /// asks FindCoordinator again.
    pub(crate) fn coordinator_moved(&self, kind: CoordinatorKind, key: &str) {
        self.coordinators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&(kind, key.to_string()));
    }

    /// Asks any broker which broker coordinates `key`, retrying while none is ready.
    async fn find_coordinator(&self, kind: CoordinatorKind, key: &str) -> Result<NodeId, Error> {
        find_coordinator_call(self, kind, key).await
    }
}
