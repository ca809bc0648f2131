//! `spate-bench cluster`: a local cluster of `--cluster N` brokers (the same `spate-broker`
//! binary, broker `i` on its own loopback address `127.0.0.<i>`, every broker a seed), used to
//! measure what replication costs and how fast leadership fails over:
//!
//! - the produce workload with acks=all on an RF=N topic, then on an RF=1 topic (a second
//!   cluster of N brokers started with `--default-replication-factor 1`, so both runs have the
//!   same brokers, clients and code paths): throughput, produce-to-ack latency, and for each
//!   broker the bytes it sent and received on its TCP sockets (`ss -tin`: `bytes_sent`,
//!   `bytes_received` of every socket the process holds, before and after) and wrote to disk
//!   (`/proc/<pid>/io` `write_bytes`), each per acknowledged value byte. The goal: each
//!   byte crosses the network once per follower and is written once per replica.
//! - failover: an idempotent acks=all producer writes one small record every millisecond to an
//!   RF=N partition while the harness `kill -9`s its leader, `--failover-rounds` times; each
//!   round's figure is the time from the kill to the first acknowledgement of a record handed
//!   to the producer after the kill (so it cannot have come from the dead broker). The killed
//!   broker is restarted and back in the ISR before the next round.
//!
//! Socket counters count only sockets open at both snapshots (the workload's connections and
//! the replication connections are long-lived); a socket opened and closed in between is
//! missed, and the snapshot after is taken before the workload's client closes.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use serde::Serialize;
use spate_client::{Client, ClientConfig, ProducerConfig, ProducerRecord};
use spate_protocol::api::{
    encode_request, Acks, CreateTopic, CreateTopicsRequest, Message, MetadataRequest,
    MetadataResponse, PartitionMetadata, Request,
};
use spate_protocol::error::ErrorCode;
use spate_protocol::frame::split_response_frame;
use spate_protocol::NodeId;

use crate::target::{fresh_data_dir, parse_ready_line, BrokerListener, TargetError};

/// How long a broker may take to log readiness.
const READY_TIMEOUT: Duration = Duration::from_secs(90);
/// How long the cluster may take to form, a topic to get leaders, a restarted broker to get
/// back in sync, a failover to happen.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long one metadata query may take.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// Gap between the failover producer's records.
const FAILOVER_SEND_INTERVAL: Duration = Duration::from_millis(1);
/// Bytes of each failover record.
const FAILOVER_RECORD_BYTES: usize = 100;

/// Why the cluster could not run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error("broker {id}: {message}")]
    Broker { id: NodeId, message: String },
    #[error("{0}")]
    Timeout(String),
    #[error("the failover producer: {0}")]
    Client(String),
}

/// One broker of a [`LocalCluster`].
struct ClusterBroker {
    id: NodeId,
    arguments: Vec<String>,
    binary: PathBuf,
    data_dir: tempfile::TempDir,
    native: SocketAddr,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl ClusterBroker {
    fn start(&mut self) -> Result<(), ClusterError> {
        let mut child = Command::new(&self.binary)
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--listen", &self.native.to_string()])
            .args([
                "--kafka-listen",
                &SocketAddr::new(self.native.ip(), 0).to_string(),
            ])
            .args([
                "--admin-listen",
                &SocketAddr::new(self.native.ip(), 0).to_string(),
            ])
            .args(["--log-level", "info", "--shards", "1"])
            .args(&self.arguments)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| TargetError::Spawn {
                program: self.binary.display().to_string(),
                source,
            })?;
        let (lines, ready) = mpsc::channel();
        let stderr = child.stderr.take().expect("stderr was piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line.clone());
                let mut kept = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if kept.len() == 200 {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match ready.recv_timeout(remaining) {
                Ok(line) if parse_ready_line(&line, BrokerListener::Native).is_some() => {
                    return Ok(())
                }
                Ok(_) => {}
                Err(_) => {
                    self.kill();
                    return Err(ClusterError::Broker {
                        id: self.id,
                        message: format!(
                            "not ready within {READY_TIMEOUT:?} (or exited); last log lines:\n{}",
                            self.log.lock().unwrap().join("\n")
                        ),
                    });
                }
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for ClusterBroker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// N brokers on 127.0.0.1..N, each a seed of the others.
pub struct LocalCluster {
    brokers: Vec<ClusterBroker>,
}

impl LocalCluster {
    /// Starts `count` brokers at once with `arguments` added to each, and waits until the
    /// cluster formed.
    pub fn start(
        binary: &Path,
        data_root: &Path,
        count: usize,
        arguments: &[String],
    ) -> Result<LocalCluster, ClusterError> {
        let ids: Vec<NodeId> = (1..=count as NodeId).collect();
        let natives = ids
            .iter()
            .map(|&id| {
                TcpListener::bind((loopback(id), 0))
                    .and_then(|listener| listener.local_addr())
                    .map_err(|source| TargetError::Port { source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let seeds = natives
            .iter()
            .map(SocketAddr::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut brokers = Vec::new();
        for (&id, &native) in ids.iter().zip(&natives) {
            let mut broker_arguments = vec![
                "--node-id".to_string(),
                id.to_string(),
                "--seeds".to_string(),
                seeds.clone(),
            ];
            broker_arguments.extend(arguments.iter().cloned());
            brokers.push(ClusterBroker {
                id,
                arguments: broker_arguments,
                binary: binary.to_path_buf(),
                data_dir: fresh_data_dir(data_root, "spate-bench-cluster-")?,
                native,
                child: None,
                log: Arc::default(),
            });
        }
        let started: Vec<Result<(), ClusterError>> = std::thread::scope(|scope| {
            let starts: Vec<_> = brokers
                .iter_mut()
                .map(|broker| scope.spawn(move || broker.start()))
                .collect();
            starts
                .into_iter()
                .map(|start| start.join().expect("a broker start panicked"))
                .collect()
        });
        started.into_iter().collect::<Result<Vec<()>, _>>()?;
        let cluster = LocalCluster { brokers };
        cluster.wait_formed()?;
        // Every broker can take replicas once a topic at the default factor can be placed.
        cluster.create_topic("spate-bench-cluster-ready", 1)?;
        Ok(cluster)
    }

    /// Every broker's native address, comma-separated.
    pub fn bootstrap(&self) -> Vec<String> {
        self.brokers
            .iter()
            .map(|broker| broker.native.to_string())
            .collect()
    }

    pub fn address(&self, id: NodeId) -> SocketAddr {
        self.broker(id).native
    }

    pub fn pids(&self) -> BTreeMap<NodeId, u32> {
        self.brokers
            .iter()
            .filter_map(|broker| Some((broker.id, broker.pid()?)))
            .collect()
    }

    pub fn kill9(&mut self, id: NodeId) {
        self.broker_mut(id).kill();
    }

    pub fn restart(&mut self, id: NodeId) -> Result<(), ClusterError> {
        self.broker_mut(id).start()
    }

    fn broker(&self, id: NodeId) -> &ClusterBroker {
        self.brokers
            .iter()
            .find(|broker| broker.id == id)
            .expect("a broker of this cluster")
    }

    fn broker_mut(&mut self, id: NodeId) -> &mut ClusterBroker {
        self.brokers
            .iter_mut()
            .find(|broker| broker.id == id)
            .expect("a broker of this cluster")
    }

    fn metadata(&self, id: NodeId, topics: Option<Vec<String>>) -> Option<MetadataResponse> {
        self.broker(id).child.as_ref()?;
        call_once(self.address(id), &MetadataRequest { topics }, QUERY_TIMEOUT)
    }

    fn wait_formed(&self) -> Result<(), ClusterError> {
        let count = self.brokers.len();
        wait_for(SETTLE_TIMEOUT, || {
            self.brokers
                .iter()
                .all(|broker| {
                    self.metadata(broker.id, Some(Vec::new()))
                        .is_some_and(|metadata| {
                            metadata.controller_id >= 0 && metadata.brokers.len() == count
                        })
                })
                .then_some(())
        })
        .ok_or_else(|| ClusterError::Timeout("the cluster did not form".to_string()))
    }

    /// The partition as the answering broker with the highest leader epoch sees it.
    fn partition(&self, topic: &str, partition: u32) -> Option<PartitionMetadata> {
        self.brokers
            .iter()
            .filter_map(|broker| self.metadata(broker.id, Some(vec![topic.to_string()])))
            .filter_map(|metadata| {
                metadata
                    .topics
                    .into_iter()
                    .find(|candidate| candidate.name == topic)?
                    .partitions
                    .into_iter()
                    .find(|candidate| candidate.partition == partition)
            })
            .filter(|seen| seen.leader_id >= 0)
            .max_by_key(|seen| seen.leader_epoch)
    }

    /// Creates an RF-default topic through broker 1 and waits until its partitions have leaders
    /// with every replica in sync.
    fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), ClusterError> {
        let request = CreateTopicsRequest {
            topics: vec![CreateTopic {
                name: topic.to_string(),
                partition_count: partitions,
                configs: Vec::new(),
                replication_factor: 0,
            }],
            timeout_ms: 30_000,
        };
        // Registered brokers are fenced until the controller has heard them and they caught up
        // with the metadata log: until then the default replication factor finds too few
        // brokers to place replicas on (InvalidReplicationFactor), which passes.
        let created = wait_for(SETTLE_TIMEOUT, || {
            let answer = call_once(self.address(1), &request, Duration::from_secs(40))?;
            let code = answer.results.first()?.error_code;
            match code {
                ErrorCode::None => Some(true),
                ErrorCode::InvalidReplicationFactor => {
                    std::thread::sleep(Duration::from_millis(100));
                    None
                }
                _ => Some(false),
            }
        })
        .unwrap_or(false);
        if !created {
            return Err(ClusterError::Broker {
                id: 1,
                message: format!("could not create {topic}"),
            });
        }
        for partition in 0..partitions {
            self.wait_in_sync(topic, partition)?;
        }
        Ok(())
    }

    fn wait_in_sync(&self, topic: &str, partition: u32) -> Result<NodeId, ClusterError> {
        wait_for(SETTLE_TIMEOUT, || {
            let seen = self.partition(topic, partition)?;
            let mut isr = seen.isr.clone();
            let mut replicas = seen.replicas.clone();
            isr.sort_unstable();
            replicas.sort_unstable();
            (!replicas.is_empty() && isr == replicas).then_some(seen.leader_id)
        })
        .ok_or_else(|| {
            ClusterError::Timeout(format!(
                "{topic}/{partition} did not get every replica in sync"
            ))
        })
    }
}

/// `127.0.0.<id>`.
fn loopback(id: NodeId) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, u8::try_from(id).unwrap_or(1)))
}

fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One request on a fresh connection; `None` when there is no answer in time.
fn call_once<R: Request>(
    address: SocketAddr,
    request: &R,
    timeout: Duration,
) -> Option<R::Response> {
    let deadline = Instant::now() + timeout;
    let mut stream = TcpStream::connect_timeout(&address, timeout).ok()?;
    let mut frame = BytesMut::new();
    encode_request(&mut frame, 1, "spate-bench-cluster", R::VERSIONS.1, request).ok()?;
    stream.set_write_timeout(Some(timeout)).ok()?;
    stream.write_all(&frame).ok()?;
    let mut buffer = BytesMut::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if let Some(frame) = split_response_frame(&mut buffer).ok()? {
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

/// A process's I/O counters at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct IoCounters {
    /// `/proc/<pid>/io` `write_bytes`: bytes the process caused to be written to storage.
    pub disk_write_bytes: u64,
    /// Sum of `bytes_sent` over the TCP sockets it holds.
    pub socket_sent_bytes: u64,
    /// Sum of `bytes_received` over the TCP sockets it holds.
    pub socket_received_bytes: u64,
}

/// (bytes_sent, bytes_received) per socket (local address, peer address).
type SocketCounters = BTreeMap<(String, String), (u64, u64)>;
/// The sockets of each pid, from `ss -tinpH`.
type SocketTable = BTreeMap<u32, SocketCounters>;

fn socket_table() -> SocketTable {
    let Ok(output) = Command::new("ss").args(["-tinpH"]).output() else {
        return SocketTable::new();
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let mut table = SocketTable::new();
    let mut current: Option<(Vec<u32>, String, String)> = None;
    for line in text.lines() {
        if !line.starts_with(char::is_whitespace) {
            // `State Recv-Q Send-Q Local Peer users:(("name",pid=N,fd=M),...)`, or without
            // the state column when a state filter is given.
            let fields: Vec<&str> = line.split_whitespace().collect();
            let addresses: Vec<&str> = fields
                .iter()
                .copied()
                .filter(|field| field.contains(':') && !field.starts_with("users:"))
                .collect();
            let pids = line
                .split("pid=")
                .skip(1)
                .filter_map(|rest| {
                    rest.split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .collect();
            current = match addresses.as_slice() {
                [local, peer, ..] => Some((pids, local.to_string(), peer.to_string())),
                _ => None,
            };
            continue;
        }
        let Some((pids, local, peer)) = current.take() else {
            continue;
        };
        let counter = |name: &str| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(name))
                .and_then(|value| value.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let counters = (counter("bytes_sent:"), counter("bytes_received:"));
        for pid in pids {
            table
                .entry(pid)
                .or_default()
                .insert((local.clone(), peer.clone()), counters);
        }
    }
    table
}

fn disk_write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("write_bytes:"))
                .and_then(|value| value.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Counters of every broker now.
pub struct Snapshot {
    disk: BTreeMap<NodeId, u64>,
    sockets: BTreeMap<NodeId, SocketCounters>,
}

impl Snapshot {
    pub fn take(cluster: &LocalCluster) -> Snapshot {
        Snapshot::of(&cluster.pids())
    }

    fn of(pids: &BTreeMap<NodeId, u32>) -> Snapshot {
        let table = socket_table();
        Snapshot {
            disk: pids
                .iter()
                .map(|(&id, &pid)| (id, disk_write_bytes(pid)))
                .collect(),
            sockets: pids
                .iter()
                .map(|(&id, pid)| (id, table.get(pid).cloned().unwrap_or_default()))
                .collect(),
        }
    }

    /// Keeps the higher of each counter.
    fn merge(&mut self, later: Snapshot) {
        for (id, disk) in later.disk {
            let kept = self.disk.entry(id).or_default();
            *kept = (*kept).max(disk);
        }
        for (id, sockets) in later.sockets {
            let kept = self.sockets.entry(id).or_default();
            for (socket, (sent, received)) in sockets {
                let counters = kept.entry(socket).or_default();
                counters.0 = counters.0.max(sent);
                counters.1 = counters.1.max(received);
            }
        }
    }

    /// What each broker did between `self` and `later`.
    pub fn delta(&self, later: &Snapshot) -> BTreeMap<NodeId, IoCounters> {
        later
            .disk
            .iter()
            .map(|(&id, &disk)| {
                let before = self.sockets.get(&id);
                let (mut sent, mut received) = (0, 0);
                for (socket, &(sent_after, received_after)) in &later.sockets[&id] {
                    let (sent_before, received_before) = before
                        .and_then(|sockets| sockets.get(socket).copied())
                        .unwrap_or((0, 0));
                    sent += sent_after.saturating_sub(sent_before);
                    received += received_after.saturating_sub(received_before);
                }
                let counters = IoCounters {
                    disk_write_bytes: disk.saturating_sub(self.disk.get(&id).copied().unwrap_or(0)),
                    socket_sent_bytes: sent,
                    socket_received_bytes: received,
                };
                (id, counters)
            })
            .collect()
    }
}

/// Takes [`Snapshot`]s of a cluster's brokers every [`SAMPLE_INTERVAL`] while a workload runs
/// and keeps each socket's highest counters, so that a connection closed before the end still
/// counts with what it had sent.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Snapshot>,
}

/// How often a [`Sampler`] reads the counters.
const SAMPLE_INTERVAL: Duration = Duration::from_millis(250);

impl Sampler {
    pub fn start(cluster: &LocalCluster) -> Sampler {
        let pids = cluster.pids();
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut merged = Snapshot::of(&pids);
                while !stop.load(Ordering::SeqCst) {
                    std::thread::sleep(SAMPLE_INTERVAL);
                    merged.merge(Snapshot::of(&pids));
                }
                merged.merge(Snapshot::of(&pids));
                merged
            })
        };
        Sampler { stop, thread }
    }

    pub fn finish(self) -> Snapshot {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the sampler thread")
    }
}

/// The failover figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct FailoverReport {
    pub rounds: Vec<FailoverRound>,
    pub p50_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FailoverRound {
    pub killed_leader: NodeId,
    /// Kill to the first acknowledgement of a record sent after the kill.
    pub failover_ms: f64,
}

/// Kills the leader of a fresh RF=N partition `rounds` times under a steady idempotent acks=all
/// producer and measures each failover.
pub fn measure_failover(
    cluster: &mut LocalCluster,
    rounds: u32,
) -> Result<FailoverReport, ClusterError> {
    let topic = "spate-bench-failover";
    cluster.create_topic(topic, 1)?;
    let client = Client::new(ClientConfig {
        bootstrap: cluster.bootstrap(),
        retry_timeout: SETTLE_TIMEOUT,
        ..ClientConfig::new("unused:0")
    })
    .map_err(|error| ClusterError::Client(error.to_string()))?;
    let producer = client
        .producer(ProducerConfig {
            acks: Acks::All,
            linger: Duration::ZERO,
            delivery_timeout: SETTLE_TIMEOUT,
            ..ProducerConfig::default()
        })
        .map_err(|error| ClusterError::Client(error.to_string()))?;
    // (sent, told) of every acknowledged record, in acknowledgement order.
    let acknowledged: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acknowledged, stop, producer) = (acknowledged.clone(), stop.clone(), producer.clone());
        std::thread::spawn(move || {
            let value = vec![b'f'; FAILOVER_RECORD_BYTES];
            while !stop.load(Ordering::SeqCst) {
                let acknowledged = acknowledged.clone();
                let sent = Instant::now();
                let accepted = producer.send_with_callback_blocking(
                    ProducerRecord::new(topic, &value).with_partition(0),
                    move |result| {
                        if result.is_ok() {
                            acknowledged.lock().unwrap().push((sent, Instant::now()));
                        }
                    },
                );
                if accepted.is_err() {
                    break;
                }
                std::thread::sleep(FAILOVER_SEND_INTERVAL);
            }
        })
    };
    let mut measured = Vec::new();
    let outcome = (|| -> Result<(), ClusterError> {
        wait_for(SETTLE_TIMEOUT, || {
            (acknowledged.lock().unwrap().len() > 100).then_some(())
        })
        .ok_or_else(|| {
            ClusterError::Timeout("the failover producer got no acknowledgement".into())
        })?;
        for round in 0..rounds {
            let leader = cluster.wait_in_sync(topic, 0)?;
            // Let the restarted broker's connections settle before the next kill.
            std::thread::sleep(Duration::from_secs(1));
            let killed_at = Instant::now();
            cluster.kill9(leader);
            let failover = wait_for(SETTLE_TIMEOUT, || {
                acknowledged
                    .lock()
                    .unwrap()
                    .iter()
                    .rev()
                    .take_while(|(_, told)| *told > killed_at)
                    .filter(|(sent, _)| *sent > killed_at)
                    .map(|(_, told)| *told - killed_at)
                    .min()
            })
            .ok_or_else(|| {
                ClusterError::Timeout(format!(
                    "round {round}: no write acknowledged after the kill"
                ))
            })?;
            eprintln!(
                "failover round {round}: killed leader {leader}, first acknowledged write after \
                 {:.0} ms",
                failover.as_secs_f64() * 1e3
            );
            measured.push(FailoverRound {
                killed_leader: leader,
                failover_ms: failover.as_secs_f64() * 1e3,
            });
            cluster.restart(leader)?;
        }
        Ok(())
    })();
    stop.store(true, Ordering::SeqCst);
    let _ = sender.join();
    let _ = producer.close().wait();
    outcome?;
    let mut sorted: Vec<f64> = measured.iter().map(|round| round.failover_ms).collect();
    sorted.sort_by(f64::total_cmp);
    let p50_ms = (!sorted.is_empty()).then(|| sorted[(sorted.len() - 1) / 2]);
    Ok(FailoverReport {
        rounds: measured,
        p50_ms,
        max_ms: sorted.last().copied(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_counters_of_this_process_are_readable() {
        // write_bytes exists for every process the kernel accounts I/O for.
        let text = std::fs::read_to_string(format!("/proc/{}/io", std::process::id())).unwrap();
        assert!(text.contains("write_bytes:"));
    }

    #[test]
    fn socket_counters_follow_bytes_sent_on_a_connection() {
        let listener = TcpListener::bind((loopback(9), 0)).unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let before = socket_table();
        client.write_all(&[7u8; 100_000]).unwrap();
        let mut received = vec![0u8; 100_000];
        server.read_exact(&mut received).unwrap();
        let after = socket_table();
        let mine = std::process::id();
        let sent = |table: &SocketTable| -> u64 {
            table
                .get(&mine)
                .map(|sockets| sockets.values().map(|(sent, _)| sent).sum())
                .unwrap_or(0)
        };
        assert!(
            sent(&after) >= sent(&before) + 100_000,
            "{} then {}",
            sent(&before),
            sent(&after)
        );
    }
}

/// One produce run on a cluster: its outcome and what each broker did during it.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicatedRun {
    pub label: String,
    pub replication_factor: usize,
    pub outcome: crate::runner::RunOutcome,
    pub per_broker: BTreeMap<NodeId, IoCounters>,
}

impl ReplicatedRun {
    /// Per acknowledged value byte: (sent, received, written) summed over the brokers.
    pub fn ratios(&self) -> (f64, f64, f64) {
        let acknowledged = self.outcome.measured_bytes.max(1) as f64;
        let sum = |pick: fn(&IoCounters) -> u64| {
            self.per_broker.values().map(pick).sum::<u64>() as f64 / acknowledged
        };
        (
            sum(|counters| counters.socket_sent_bytes),
            sum(|counters| counters.socket_received_bytes),
            sum(|counters| counters.disk_write_bytes),
        )
    }
}

/// Runs `workload` (acks=all) on a fresh cluster of `brokers` brokers with RF=`brokers`, then on
/// a fresh one whose topics get RF=1, measuring each broker's traffic and writes.
pub fn produce_replicated_against_unreplicated(
    binary: &Path,
    data_root: &Path,
    brokers: usize,
    workload: &crate::workload::Workload,
    placement: &crate::placement::Placement,
    progress: &mut crate::runner::Progress,
) -> Result<Vec<ReplicatedRun>, crate::app::BenchError> {
    let mut runs = Vec::new();
    for replication_factor in [brokers, 1] {
        let arguments = vec![
            "--default-replication-factor".to_string(),
            replication_factor.to_string(),
        ];
        eprintln!("starting a {brokers}-broker cluster for RF={replication_factor} ...");
        let cluster = LocalCluster::start(binary, data_root, brokers, &arguments)
            .map_err(|error| crate::app::BenchError::Usage(error.to_string()))?;
        let driver =
            crate::driver::spate::SpateDriver::connect(cluster.address(1), Default::default())?;
        let sampler = Sampler::start(&cluster);
        let before = Snapshot::take(&cluster);
        eprintln!("running produce with acks=all on RF={replication_factor} ...");
        let outcome = crate::runner::produce::run(&driver, workload, placement, progress)?;
        let after = sampler.finish();
        runs.push(ReplicatedRun {
            label: format!("RF={replication_factor} acks=all"),
            replication_factor,
            outcome,
            per_broker: before.delta(&after),
        });
    }
    Ok(runs)
}

/// The runs and the failover figures as a table.
pub fn table(runs: &[ReplicatedRun], failover: Option<&FailoverReport>) -> String {
    let mut text = String::new();
    let milliseconds = |value: Option<f64>| {
        value.map_or("-".to_string(), |value| format!("{:.2} ms", value / 1e3))
    };
    for run in runs {
        let outcome = &run.outcome;
        let latency = outcome.latency.as_ref();
        text += &format!(
            "{}: {:.1} MB/s, {:.0} records/s, produce-to-ack p50 {} p99 {} p99.99 {} max {}, \
             errors {}\n",
            run.label,
            outcome.throughput_bytes_per_sec / 1e6,
            outcome.records_per_sec,
            milliseconds(latency.map(|latency| latency.p50)),
            milliseconds(latency.map(|latency| latency.p99)),
            milliseconds(latency.map(|latency| latency.p9999)),
            milliseconds(latency.map(|latency| latency.max)),
            outcome.errors
        );
        if let Some(error) = outcome.first_error.as_deref() {
            text += &format!("  first error: {error}\n");
        }
        let acknowledged = outcome.measured_bytes.max(1) as f64;
        for (id, counters) in &run.per_broker {
            text += &format!(
                "  broker {id}: sent {:.2}, received {:.2}, wrote {:.2} bytes per acknowledged \
                 byte\n",
                counters.socket_sent_bytes as f64 / acknowledged,
                counters.socket_received_bytes as f64 / acknowledged,
                counters.disk_write_bytes as f64 / acknowledged
            );
        }
        let (sent, received, written) = run.ratios();
        text += &format!(
            "  all brokers: sent {sent:.2}, received {received:.2}, wrote {written:.2} bytes per \
             acknowledged byte ({} acknowledged value bytes)\n",
            outcome.measured_bytes
        );
    }
    if let Some(failover) = failover {
        text +=
            &format!(
            "failover (kill -9 of the leader -> first acknowledged write after it), {} rounds: \
             p50 {} max {}; each: {:?}\n",
            failover.rounds.len(),
            failover.p50_ms.map_or("-".into(), |value| format!("{value:.0} ms")),
            failover.max_ms.map_or("-".into(), |value| format!("{value:.0} ms")),
            failover
                .rounds
                .iter()
                .map(|round| format!("{:.0} ms", round.failover_ms))
                .collect::<Vec<_>>()
        );
    }
    text
}
