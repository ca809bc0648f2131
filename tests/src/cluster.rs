//! A cluster of real `spate-broker` processes on one machine, for the replication tests and the
//! bench: broker `id` (1, 2, ...) listens on its own loopback address `127.0.0.<id>` (Linux routes
//! all of 127/8 to `lo`), every broker is given every broker's native address as `--seeds`, and
//! its data directory survives its restarts; [`Cluster::add_broker`] starts one more, which
//! joins the running cluster. A test can `kill -9` and restart a broker, pause it
//! (SIGSTOP, a broker that stops answering without closing anything) and resume it, ask who
//! leads a partition, and, when the cluster runs with proxies, cut or delay each directed link.
//!
//! Links: with [`ClusterOptions::proxies`], broker `id` is fronted by a [`LinkProxy`] on
//! `127.0.0.<id>` and advertises the proxy's address (`--advertised`, and the seeds are the
//! proxies), so every peer and client reaches it through the proxy. The proxy tells which broker
//! a connection comes from by finding which child process of this test holds the connecting
//! socket (`/proc/net/tcp` gives the socket's inode, `/proc/<pid>/fd` the process holding it,
//! its command line the node id): the brokers need no test hook, and a connection opened before
//! the harness learnt a broker's pid is still told right. The link `a -> b` (connections `a`
//! opens to `b`, both directions of their bytes) is the state of source `a` on `b`'s proxy. The
//! test's own connections come from [`Source::Other`], so a test can still reach an isolated
//! broker through its proxy, or directly with [`Cluster::direct_address`].
//!
//! Who leads: [`Cluster::leader_of`] asks every broker that runs and is not paused with native
//! Metadata (version 1: leader and leader epoch per partition) and believes the answer with the
//! highest leader epoch, so an isolated old leader that still thinks it leads is outvoted once
//! the others elected a new one.
//!
//! Every wait has a deadline and panics with what it waited for; nothing here sleeps a fixed
//! time to let the cluster settle.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use spate_protocol::api::{
    encode_request, ConfigEntry, CreateTopic, CreateTopicsRequest, MetadataRequest,
    MetadataResponse, Request,
};
use spate_protocol::error::ErrorCode;
use spate_protocol::frame::split_response_frame;

use spate_kafka_protocol::kafka_protocol::messages::MetadataRequest as KafkaMetadataRequest;

use crate::broker_process::{Broker, BrokerOptions};
use crate::proxy::{LinkProxy, LinkState, Source, SourceOf};

pub use spate_protocol::NodeId;

/// How long one query of a broker ([`Cluster::metadata_from`]) may take before the broker counts
/// as not answering (a paused or isolated broker must not stall the test).
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a cluster may take to form: every broker started, a controller elected and every
/// broker registered (debug builds on a busy 2-core machine).
pub const FORMATION_TIMEOUT: Duration = Duration::from_secs(90);
/// How often waits poll.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// What a cluster start looks like.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Brokers, node ids 1..=brokers.
    pub brokers: usize,
    /// Shards of each broker.
    pub shards: usize,
    /// Whether each broker is fronted by a [`LinkProxy`] (needed to cut or delay links).
    pub proxies: bool,
    /// Extra command-line arguments for every broker, appended last.
    pub arguments: Vec<String>,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        ClusterOptions {
            brokers: 3,
            shards: 1,
            proxies: false,
            arguments: Vec::new(),
        }
    }
}

/// One broker of the cluster.
struct Node {
    id: NodeId,
    broker: Broker,
    /// The address peers and clients are told (the proxy's, or the listener's).
    advertised: SocketAddr,
    paused: bool,
}

/// A running cluster. Dropping it kills every broker (SIGKILL; a paused one too) and removes
/// their data directories.
pub struct Cluster {
    nodes: Vec<Node>,
    /// Index = node index (id - 1); empty without proxies.
    proxies: Vec<LinkProxy>,
    /// The `--seeds` every broker was given: the brokers of the start (the voters).
    seeds: String,
    options: ClusterOptions,
}

impl Cluster {
    /// Starts `options.brokers` brokers at once (a seed waits for the others before the cluster
    /// bootstraps) and returns once each logged readiness; [`Cluster::wait_formed`] waits for
    /// the cluster itself.
    pub fn start(options: ClusterOptions) -> Cluster {
        assert!(
            (1..=200).contains(&options.brokers),
            "one loopback address per broker"
        );
        let ids: Vec<NodeId> = (1..=options.brokers as NodeId).collect();
        let source_of: SourceOf = Arc::new(broker_holding_socket);
        let proxies: Vec<LinkProxy> = if options.proxies {
            ids.iter()
                .map(|&id| LinkProxy::start(loopback(id), source_of.clone()))
                .collect()
        } else {
            Vec::new()
        };
        // Without proxies the seeds are the listeners themselves, so their ports are fixed
        // before any broker starts: a free port of the broker's own loopback address (nothing
        // else binds there, so it stays free).
        let listens: Vec<SocketAddr> = ids
            .iter()
            .map(|&id| {
                if options.proxies {
                    SocketAddr::new(loopback(id), 0)
                } else {
                    free_address(loopback(id))
                }
            })
            .collect();
        let advertised: Vec<SocketAddr> = if options.proxies {
            proxies.iter().map(LinkProxy::address).collect()
        } else {
            listens.clone()
        };
        let seeds = advertised
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let brokers: Vec<Broker> = std::thread::scope(|scope| {
            let starts: Vec<_> = ids
                .iter()
                .enumerate()
                .map(|(index, &id)| {
                    let broker_options =
                        broker_options(&options, id, &seeds, advertised[index], listens[index]);
                    scope.spawn(move || Broker::start(broker_options))
                })
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().expect("a broker start panicked"))
                .collect()
        });
        for (proxy, broker) in proxies.iter().zip(&brokers) {
            proxy.set_target(broker.address());
        }
        let nodes = ids
            .iter()
            .zip(brokers)
            .zip(&advertised)
            .map(|((&id, broker), &advertised)| Node {
                id,
                broker,
                advertised,
                paused: false,
            })
            .collect();
        Cluster {
            nodes,
            proxies,
            seeds,
            options,
        }
    }

    /// Starts one more broker (the next node id) given the same `--seeds`: it is no seed
    /// itself, so it joins the running cluster (registers, becomes a metadata learner) rather
    /// than forming a new one. Returns its id once it logged readiness; it holds no replica
    /// until one is moved onto it.
    ///
    /// # Panics
    /// With proxies (a joining broker has none).
    pub fn add_broker(&mut self) -> NodeId {
        assert!(
            self.proxies.is_empty(),
            "a broker joins only a cluster without proxies"
        );
        let id = self.nodes.iter().map(|node| node.id).max().unwrap_or(0) + 1;
        let listen = free_address(loopback(id));
        let options = broker_options(&self.options, id, &self.seeds, listen, listen);
        let broker = Broker::start(options);
        self.nodes.push(Node {
            id,
            broker,
            advertised: listen,
            paused: false,
        });
        id
    }

    /// Node ids, ascending.
    pub fn ids(&self) -> Vec<NodeId> {
        self.nodes.iter().map(|node| node.id).collect()
    }

    /// The native address clients and peers use for `id` (its proxy's when proxied).
    pub fn address(&self, id: NodeId) -> SocketAddr {
        self.node(id).advertised
    }

    /// The native listener of `id` itself, bypassing any proxy.
    pub fn direct_address(&self, id: NodeId) -> SocketAddr {
        self.node(id).broker.address()
    }

    /// The Kafka listener of `id` (never proxied).
    pub fn kafka_address(&self, id: NodeId) -> SocketAddr {
        self.node(id).broker.kafka_address()
    }

    /// Every broker's native address, comma-separated: a client's bootstrap list.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.advertised.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Every broker's Kafka address, comma-separated: a Kafka client's `bootstrap.servers`.
    pub fn kafka_bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|node| node.broker.kafka_address().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn data_dir(&self, id: NodeId) -> &Path {
        self.node(id).broker.data_dir()
    }

    /// The broker process, e.g. for its pid or its log.
    pub fn broker(&mut self, id: NodeId) -> &mut Broker {
        &mut self.node_mut(id).broker
    }

    /// Whether `id` runs (it may be paused).
    pub fn is_running(&self, id: NodeId) -> bool {
        self.node(id).broker.is_running()
    }

    /// Whether `id` runs and is not paused: it can answer.
    pub fn is_answering(&self, id: NodeId) -> bool {
        let node = self.node(id);
        node.broker.is_running() && !node.paused
    }

    /// `kill -9`: nothing flushed, nothing closed.
    pub fn kill9(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        node.broker.kill();
        node.paused = false;
    }

    /// Starts a killed broker again on its data directory and address; returns once it logged
    /// readiness (not once it caught up).
    pub fn restart(&mut self, id: NodeId) {
        self.node_mut(id).broker.restart();
    }

    /// Starts the killed brokers `ids` again at the same moment (one thread each, as
    /// [`Cluster::start`] does); returns once each logged readiness, which needs no controller.
    pub fn restart_together(&mut self, ids: &[NodeId]) {
        std::thread::scope(|scope| {
            for node in self.nodes.iter_mut().filter(|node| ids.contains(&node.id)) {
                scope.spawn(move || node.broker.restart());
            }
        });
    }

    /// SIGSTOP: the broker keeps its sockets and answers nothing until [`Cluster::resume`].
    pub fn pause(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        assert!(!node.paused, "broker {id} is paused already");
        signal(node.broker.pid(), libc::SIGSTOP);
        node.paused = true;
    }

    /// SIGCONT after [`Cluster::pause`].
    pub fn resume(&mut self, id: NodeId) {
        let node = self.node_mut(id);
        assert!(node.paused, "broker {id} is not paused");
        signal(node.broker.pid(), libc::SIGCONT);
        node.paused = false;
    }

    /// The proxy in front of `id`.
    ///
    /// # Panics
    /// When the cluster runs without proxies.
    pub fn proxy(&self, id: NodeId) -> &LinkProxy {
        assert!(
            !self.proxies.is_empty(),
            "start the cluster with proxies to cut links"
        );
        &self.proxies[self.index(id)]
    }

    /// Sets the directed link `from -> to` (connections `from` opens to `to`).
    pub fn set_link(&self, from: NodeId, to: NodeId, state: LinkState) {
        self.proxy(to).set(Source::Broker(from), state);
    }

    /// Cuts `id` off from every other broker in both directions; clients still reach it.
    pub fn isolate(&self, id: NodeId) {
        for other in self.ids().into_iter().filter(|&other| other != id) {
            self.set_link(id, other, LinkState::Cut);
            self.set_link(other, id, LinkState::Cut);
        }
    }

    /// Opens every link between brokers again.
    pub fn heal(&self) {
        for from in self.ids() {
            for to in self.ids().into_iter().filter(|&to| to != from) {
                self.set_link(from, to, LinkState::Open);
            }
        }
    }

    /// Native Metadata from `id` (directly, not through its proxy), or `None` when it does not
    /// answer within [`QUERY_TIMEOUT`].
    pub fn metadata_from(
        &self,
        id: NodeId,
        topics: Option<Vec<String>>,
    ) -> Option<MetadataResponse> {
        if !self.is_answering(id) {
            return None;
        }
        call_once(
            self.direct_address(id),
            &MetadataRequest { topics },
            QUERY_TIMEOUT,
        )
    }

    /// The leader of `topic`/`partition` and its epoch, by the answering broker that knows the
    /// highest epoch; `None` while no answering broker names a leader.
    pub fn leader_of(&self, topic: &str, partition: u32) -> Option<(NodeId, i32)> {
        self.ids()
            .into_iter()
            .filter_map(|id| self.metadata_from(id, Some(vec![topic.to_string()])))
            .filter_map(|metadata| partition_leader(&metadata, topic, partition))
            .max_by_key(|(_, epoch)| *epoch)
    }

    /// Waits until some broker leads `topic`/`partition` and `accept(leader, epoch)` holds.
    pub fn wait_for_leader(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
        accept: impl Fn(NodeId, i32) -> bool,
    ) -> (NodeId, i32) {
        let mut last = None;
        let found = wait_for(timeout, || {
            last = self.leader_of(topic, partition);
            last.filter(|&(leader, epoch)| accept(leader, epoch))
        });
        found.unwrap_or_else(|| {
            panic!(
                "no acceptable leader of {topic}/{partition} within {timeout:?} (last seen: \
                 {last:?})"
            )
        })
    }

    /// How many brokers `id`'s Kafka listener lists in Metadata: Kafka lists only unfenced
    /// brokers, so this is how many the broker knows to be active.
    pub fn kafka_brokers_listed(&self, id: NodeId) -> usize {
        let mut client = crate::KafkaTestClient::connect(self.kafka_address(id));
        let response = client.call(
            12,
            &KafkaMetadataRequest::default().with_topics(Some(Vec::new())),
        );
        response.brokers.len()
    }

    /// Waits until every answering broker lists every broker, names a controller, and lists
    /// every broker as unfenced on its Kafka listener (a topic created before then would get
    /// fewer replicas: the default replication factor counts active brokers only).
    pub fn wait_formed(&self, timeout: Duration) {
        let expected = self.nodes.len();
        let mut last = String::new();
        let formed = wait_for(timeout, || {
            let answers: Vec<_> = self
                .ids()
                .into_iter()
                .filter(|&id| self.is_answering(id))
                .map(|id| (id, self.metadata_from(id, Some(Vec::new()))))
                .collect();
            last = format!(
                "{:?}",
                answers
                    .iter()
                    .map(|(id, m)| (id, m.as_ref().map(|m| (m.controller_id, m.brokers.len()))))
                    .collect::<Vec<_>>()
            );
            answers
                .iter()
                .all(|(_, metadata)| {
                    metadata.as_ref().is_some_and(|metadata| {
                        metadata.controller_id >= 0 && metadata.brokers.len() == expected
                    })
                })
                .then_some(())?;
            let active: Vec<(NodeId, usize)> = self
                .ids()
                .into_iter()
                .filter(|&id| self.is_answering(id))
                .map(|id| (id, self.kafka_brokers_listed(id)))
                .collect();
            last = format!("{last}; unfenced brokers listed by each: {active:?}");
            active
                .iter()
                .all(|&(_, listed)| listed == expected)
                .then_some(())
        });
        assert!(
            formed.is_some(),
            "the cluster did not form within {timeout:?}: (broker, (controller, brokers known)) \
             {last}"
        );
    }

    /// Creates `topic` through broker `via` (native CreateTopics; the replication factor is
    /// the cluster's default unless `configs` or the broker says otherwise) and waits until
    /// every partition has a leader that every answering broker agrees on.
    pub fn create_topic(
        &self,
        via: NodeId,
        topic: &str,
        partitions: u32,
        configs: &[(&str, &str)],
    ) {
        self.create_topic_with_replication_factor(via, topic, partitions, 0, configs);
    }

    /// [`Cluster::create_topic`] with `replication_factor` replicas per partition (native
    /// CreateTopics v1; 0: the cluster's default).
    pub fn create_topic_with_replication_factor(
        &self,
        via: NodeId,
        topic: &str,
        partitions: u32,
        replication_factor: u16,
        configs: &[(&str, &str)],
    ) {
        let request = CreateTopicsRequest {
            topics: vec![CreateTopic {
                name: topic.to_string(),
                partition_count: partitions,
                configs: configs
                    .iter()
                    .map(|(name, value)| ConfigEntry {
                        name: name.to_string(),
                        value: value.to_string(),
                    })
                    .collect(),
                replication_factor,
            }],
            timeout_ms: 30_000,
        };
        let response = call_once(self.address(via), &request, Duration::from_secs(40))
            .unwrap_or_else(|| panic!("broker {via} did not answer CreateTopics"));
        let result = &response.results[0];
        assert_eq!(
            result.error_code,
            ErrorCode::None,
            "creating {topic}: {:?}",
            result.error_message
        );
        for partition in 0..partitions {
            self.wait_for_agreed_leader(topic, partition, FORMATION_TIMEOUT);
        }
    }

    /// Waits until every answering broker names the same leader at the same epoch for
    /// `topic`/`partition`; returns it.
    pub fn wait_for_agreed_leader(
        &self,
        topic: &str,
        partition: u32,
        timeout: Duration,
    ) -> (NodeId, i32) {
        let mut last = Vec::new();
        let agreed = wait_for(timeout, || {
            last = self
                .ids()
                .into_iter()
                .filter(|&id| self.is_answering(id))
                .map(|id| {
                    self.metadata_from(id, Some(vec![topic.to_string()]))
                        .and_then(|metadata| partition_leader(&metadata, topic, partition))
                })
                .collect();
            let first = (*last.first()?)?;
            last.iter()
                .all(|seen| *seen == Some(first))
                .then_some(first)
        });
        agreed.unwrap_or_else(|| {
            panic!(
                "the brokers did not agree on a leader of {topic}/{partition} within \
                 {timeout:?}: {last:?}"
            )
        })
    }

    /// Waits until the leader of every partition of `topic` (below `partitions`) reports every
    /// replica in sync, and every answering broker agrees on the leader.
    pub fn wait_in_sync(&self, topic: &str, partitions: u32, timeout: Duration) {
        let mut last = String::new();
        let in_sync = wait_for(timeout, || {
            for partition in 0..partitions {
                let (leader, _) = self.leader_of(topic, partition)?;
                let metadata = self.metadata_from(leader, Some(vec![topic.to_string()]))?;
                let seen = metadata
                    .topics
                    .iter()
                    .find(|candidate| candidate.name == topic)?
                    .partitions
                    .iter()
                    .find(|candidate| candidate.partition == partition)?
                    .clone();
                last = format!(
                    "{topic}/{partition}: leader {leader}, replicas {:?}, isr {:?}",
                    seen.replicas, seen.isr
                );
                let mut isr = seen.isr.clone();
                let mut replicas = seen.replicas.clone();
                isr.sort_unstable();
                replicas.sort_unstable();
                if replicas.is_empty() || isr != replicas {
                    return None;
                }
                self.wait_for_agreed_leader(topic, partition, timeout);
            }
            Some(())
        });
        assert!(
            in_sync.is_some(),
            "not every replica of {topic} got in sync within {timeout:?}; last: {last}"
        );
    }

    /// The pid of each running broker, by node id (for `/proc/<pid>/io` and the like).
    pub fn pids(&self) -> BTreeMap<NodeId, u32> {
        self.nodes
            .iter()
            .filter(|node| node.broker.is_running())
            .map(|node| (node.id, node.broker.pid()))
            .collect()
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes
            .iter()
            .position(|node| node.id == id)
            .unwrap_or_else(|| panic!("no broker {id} in this cluster"))
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[self.index(id)]
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        let index = self.index(id);
        &mut self.nodes[index]
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.broker.kill();
        }
    }
}

/// How broker `id` of a cluster starts: its node id, the seeds, its advertised address, then
/// the cluster's extra arguments.
fn broker_options(
    options: &ClusterOptions,
    id: NodeId,
    seeds: &str,
    advertised: SocketAddr,
    listen: SocketAddr,
) -> BrokerOptions {
    let mut arguments = vec![
        "--node-id".to_string(),
        id.to_string(),
        "--seeds".to_string(),
        seeds.to_string(),
        "--advertised".to_string(),
        advertised.to_string(),
    ];
    // Tests decide who leads (kills, elections, reassignments); the controller's periodic
    // preferred-leader election would move leaders under them at a moment a loaded machine
    // makes unpredictable. A test that wants it passes --leader-balance-interval-ms itself.
    let balance_flag = "--leader-balance-interval-ms";
    if !options
        .arguments
        .iter()
        .any(|argument| argument == balance_flag)
    {
        arguments.extend([balance_flag.to_string(), "0".to_string()]);
    }
    arguments.extend(options.arguments.iter().cloned());
    BrokerOptions {
        shards: options.shards,
        arguments,
        native_listen: listen,
        kafka_listen: SocketAddr::new(loopback(id), 0),
        ..BrokerOptions::default()
    }
}

/// `127.0.0.<id>`.
pub fn loopback(id: NodeId) -> IpAddr {
    let last = u8::try_from(id).expect("node ids of a test cluster fit a loopback address");
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// A port of `ip` free now.
fn free_address(ip: IpAddr) -> SocketAddr {
    TcpListener::bind((ip, 0))
        .and_then(|listener| listener.local_addr())
        .expect("find a free port")
}

/// The leader and epoch a Metadata answer gives `topic`/`partition`, if it names one.
pub fn partition_leader(
    metadata: &MetadataResponse,
    topic: &str,
    partition: u32,
) -> Option<(NodeId, i32)> {
    let topic = metadata
        .topics
        .iter()
        .find(|candidate| candidate.name == topic)?;
    let partition = topic
        .partitions
        .iter()
        .find(|candidate| candidate.partition == partition)?;
    (partition.leader_id >= 0).then_some((partition.leader_id, partition.leader_epoch))
}

/// Polls `probe` until it gives a value or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Sends one request on a fresh connection and reads its answer, or `None` when the broker
/// cannot be reached or does not answer within `timeout`.
pub fn call_once<R: Request>(
    address: SocketAddr,
    request: &R,
    timeout: Duration,
) -> Option<R::Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    let mut frame = BytesMut::new();
    encode_request(&mut frame, 1, "spate-tests-cluster", R::VERSIONS.1, request)
        .expect("encode the request");
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(&frame).ok()?;
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(frame) = split_response_frame(&mut buffer).ok()? {
            use spate_protocol::api::Message;
            return <R::Response as Message>::decode(
                <R::Response as Message>::VERSIONS.1,
                frame.body,
            )
            .ok();
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(remaining)).ok()?;
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(count) => buffer.extend_from_slice(&chunk[..count]),
        }
    }
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill(2) on a pid this process spawned and has not reaped (the broker runs).
    let result = unsafe { libc::kill(pid as i32, signal) };
    assert_eq!(result, 0, "kill({pid}, {signal}) failed");
}

/// Which broker of this test holds the socket that connected from `peer` to `local`: the socket
/// is the row of `/proc/net/tcp` with those ends, and its inode names it in the fd table of
/// exactly one process; a broker is a child of this test with `--node-id N` on its command line.
fn broker_holding_socket(peer: SocketAddr, local: SocketAddr) -> Source {
    let Some(inode) = socket_inode(peer, local) else {
        return Source::Other;
    };
    let link = format!("socket:[{inode}]");
    for pid in child_pids() {
        let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        let holds = entries.flatten().any(|entry| {
            std::fs::read_link(entry.path()).is_ok_and(|target| target.as_os_str() == link.as_str())
        });
        if holds {
            return node_id_of(pid).map_or(Source::Other, Source::Broker);
        }
    }
    Source::Other
}

/// The inode of the TCP socket whose local end is `local` and remote end `remote`.
fn socket_inode(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let wanted = (proc_net_address(local)?, proc_net_address(remote)?);
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let ends = (*fields.get(1)?, *fields.get(2)?);
        (ends.0.eq_ignore_ascii_case(&wanted.0) && ends.1.eq_ignore_ascii_case(&wanted.1))
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

/// An IPv4 socket address as `/proc/net/tcp` prints it: the address as the kernel's native
/// integer of its network-order bytes, then the port, both hexadecimal.
fn proc_net_address(address: SocketAddr) -> Option<String> {
    let SocketAddr::V4(address) = address else {
        return None;
    };
    let ip = u32::from_ne_bytes(address.ip().octets());
    Some(format!("{ip:08X}:{:04X}", address.port()))
}

/// Pids of this process's children (the brokers it started, among others).
fn child_pids() -> Vec<u32> {
    let mine = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after its `)`.
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    let after = &stat[stat.rfind(')')? + 1..];
                    after.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(mine)
        })
        .collect()
}

/// The `--node-id` a process was started with.
fn node_id_of(pid: u32) -> Option<NodeId> {
    let command_line = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut arguments = command_line.split(|&byte| byte == 0);
    while let Some(argument) = arguments.next() {
        if argument == b"--node-id" {
            return std::str::from_utf8(arguments.next()?).ok()?.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::LinkState;
    use std::process::{Command, Stdio};

    #[test]
    fn loopback_addresses_other_than_127_0_0_1_can_be_bound_and_reached() {
        for id in [2, 3, 7] {
            let listener = TcpListener::bind((loopback(id), 0)).expect("bind 127.0.0.x");
            let address = listener.local_addr().unwrap();
            let client = TcpStream::connect(address).expect("connect to 127.0.0.x");
            let (accepted, _) = listener.accept().unwrap();
            assert_eq!(accepted.local_addr().unwrap(), address);
            drop(client);
        }
    }

    #[test]
    fn proc_net_addresses_are_printed_as_the_kernel_does() {
        let address: SocketAddr = "127.0.0.1:9192".parse().unwrap();
        if cfg!(target_endian = "little") {
            assert_eq!(proc_net_address(address).unwrap(), "0100007F:23E8");
        }
    }

    /// A child process (python, holding a connection through the proxy) is told apart from this
    /// test's own connections by the socket it holds and the `--node-id` on its command line.
    #[test]
    fn a_link_proxy_tells_a_child_broker_from_the_test_and_cuts_only_its_link() {
        let echo = TcpListener::bind((loopback(5), 0)).unwrap();
        let echo_address = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in echo.incoming() {
                let Ok(mut stream) = stream else { break };
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 1024];
                    while let Ok(count) = stream.read(&mut buffer) {
                        if count == 0 || stream.write_all(&buffer[..count]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = LinkProxy::start(loopback(5), Arc::new(broker_holding_socket));
        proxy.set_target(echo_address);
        // The child: connects, then echoes each line it is given through the proxy.
        let script = format!(
            "import socket,sys\n\
             s=socket.create_connection(('{}',{}))\n\
             s.settimeout(3)\n\
             for line in sys.stdin:\n\
             \x20   try:\n\
             \x20       s.sendall(line.encode())\n\
             \x20       print(s.recv(100).decode().strip() or 'closed', flush=True)\n\
             \x20   except socket.timeout:\n\
             \x20       print('timeout', flush=True)\n\
             \x20   except OSError:\n\
             \x20       print('closed', flush=True)\n",
            proxy.address().ip(),
            proxy.address().port()
        );
        let mut child = Command::new("python3")
            .args(["-c", &script, "--node-id", "42"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut stdin = child.stdin.take().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut ask = |text: &str| {
            use std::io::BufRead;
            writeln!(stdin, "{text}").unwrap();
            let mut answer = String::new();
            stdout.read_line(&mut answer).unwrap();
            answer.trim().to_string()
        };
        assert_eq!(ask("one"), "one");
        let mut mine = TcpStream::connect(proxy.address()).unwrap();
        mine.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        proxy.set(Source::Broker(42), LinkState::Cut);
        assert_eq!(ask("two"), "timeout", "the cut link must drop bytes");
        // The test's own connection is another source: still forwarded.
        mine.write_all(b"mine").unwrap();
        let mut buffer = [0u8; 4];
        mine.read_exact(&mut buffer).unwrap();
        assert_eq!(&buffer, b"mine");
        proxy.set(Source::Broker(42), LinkState::Open);
        assert_eq!(
            ask("three"),
            "closed",
            "a healed link closes what the cut spoiled"
        );
        let _ = child.kill();
        let _ = child.wait();
    }
}
