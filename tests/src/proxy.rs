//! TCP proxies that move bytes only and know nothing of the protocol.
//!
//! [`CutProxy`] sits between a client and the broker and can be cut: every connection open at
//! the moment of [`CutProxy::cut`] is closed on both sides (the client sees its connection lost
//! with requests in flight; the broker may or may not have read them), while new connections are
//! still accepted and forwarded.
//!
//! [`LinkProxy`] sits in front of one broker of a test cluster (the broker advertises the
//! proxy's address, so every peer and client reaches it through the proxy) and applies a state
//! per source: open, cut (a partition: bytes dropped, connections hang) or delayed. A cluster
//! test cuts the directed link `a -> b` on `b`'s proxy, source `a`.
//!
//! Plain threads and blocking sockets, one accept thread per proxy that polls a non-blocking
//! listener so that dropping the proxy stops it.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often the accept thread looks for a new connection or the stop flag.
const ACCEPT_POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Bytes moved per read.
const COPY_CHUNK_BYTES: usize = 64 * 1024;

/// Forwards 127.0.0.1 connections to `target`. Dropping it stops accepting and closes every
/// connection.
pub struct CutProxy {
    address: SocketAddr,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct Shared {
    stop: AtomicBool,
    /// Both sockets of every connection forwarded so far (closed ones too: shutting a closed
    /// socket down again is harmless).
    connections: Mutex<Vec<(TcpStream, TcpStream)>>,
    accepted: AtomicUsize,
}

impl CutProxy {
    /// Starts a proxy to `target` on a free port of 127.0.0.1.
    pub fn start(target: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener
            .set_nonblocking(true)
            .expect("make the proxy listener non-blocking");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
        });
        let accept_shared = shared.clone();
        let accept_thread =
            std::thread::spawn(move || accept_loop(listener, target, &accept_shared));
        CutProxy {
            address,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Where clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Closes every connection open now, both towards the client and towards the broker.
    pub fn cut(&self) {
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for (client, broker) in connections {
            let _ = client.shutdown(Shutdown::Both);
            let _ = broker.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.cut();
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, target: SocketAddr, shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        let client = match listener.accept() {
            Ok((client, _)) => client,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL_INTERVAL);
                continue;
            }
            Err(error) => panic!("the proxy cannot accept: {error}"),
        };
        client
            .set_nonblocking(false)
            .expect("make the client socket blocking");
        let Ok(broker) = TcpStream::connect(target) else {
            // The broker is down: the client sees its connection closed, as it would.
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = broker.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let pair = (
            client.try_clone().expect("clone the client socket"),
            broker.try_clone().expect("clone the broker socket"),
        );
        shared.connections.lock().unwrap().push(pair);
        spawn_copy(
            client.try_clone().expect("clone the client socket"),
            broker.try_clone().expect("clone the broker socket"),
        );
        spawn_copy(broker, client);
    }
}

/// Moves bytes from `source` to `target` until either side closes, then closes both.
fn spawn_copy(mut source: TcpStream, mut target: TcpStream) {
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
        loop {
            match source.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    if target.write_all(&chunk[..count]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = source.shutdown(Shutdown::Both);
        let _ = target.shutdown(Shutdown::Both);
    });
}

/// Where a connection to a [`LinkProxy`] came from: a broker of the test's cluster (its node id)
/// or anyone else (the test's clients).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Broker(i32),
    Other,
}

/// What a [`LinkProxy`] does with the connections of one source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Bytes go through at once.
    Open,
    /// A network partition: bytes in both directions of every connection from this source are
    /// read and dropped, new connections are accepted and never answered. Nothing is closed, so
    /// the peers see requests that never complete, as behind a dead link. [`LinkProxy::set`]
    /// back to open closes those connections (their streams lost bytes); new ones forward again.
    Cut,
    /// Every chunk is forwarded this long after it was read, in order.
    Delayed(Duration),
}

/// Tells a connection's source from its two ends: the connecting side's address and the proxy's.
pub type SourceOf = Arc<dyn Fn(SocketAddr, SocketAddr) -> Source + Send + Sync>;

/// Chunks one direction of one connection may hold in its delay line before reading from the
/// source pauses.
const DELAY_LINE_CHUNKS_MAX: usize = 256;
/// How long a [`LinkProxy`] waits for its target to accept a connection.
const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A proxy in front of one broker that applies a [`LinkState`] per source, so that a test can
/// cut, delay or heal each directed link `source -> this broker` of a cluster on one machine.
/// Peers reach the broker only through its proxy when the broker advertises the proxy's
/// address; a connection's source is found with the [`SourceOf`] the proxy was given (the
/// cluster harness looks up which broker process holds the connecting socket).
///
/// Plain threads and blocking sockets: per connection and direction a reader thread and a
/// writer thread joined by a bounded delay line.
pub struct LinkProxy {
    address: SocketAddr,
    shared: Arc<LinkShared>,
    accept_thread: Option<JoinHandle<()>>,
}

struct LinkShared {
    stop: AtomicBool,
    /// The broker; `None` until it started (connections are closed until then).
    target: Mutex<Option<SocketAddr>>,
    links: Mutex<std::collections::HashMap<Source, LinkState>>,
    connections: Mutex<Vec<Arc<Forwarded>>>,
    accepted: AtomicUsize,
    source_of: SourceOf,
}

/// One accepted connection.
struct Forwarded {
    source: Source,
    /// Clones of both sockets (the broker side is absent for a connection held by a cut), kept
    /// to shut them down.
    sockets: Vec<TcpStream>,
    /// Set while its source is cut: its bytes are dropped, and it is closed when the link heals.
    spoiled: AtomicBool,
}

impl Forwarded {
    fn close(&self) {
        for socket in &self.sockets {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }
}

impl LinkProxy {
    /// Listens on a free port of `listen_ip`; forwards to nowhere until [`LinkProxy::set_target`].
    pub fn start(listen_ip: std::net::IpAddr, source_of: SourceOf) -> LinkProxy {
        let listener = TcpListener::bind((listen_ip, 0)).expect("bind the link proxy");
        listener
            .set_nonblocking(true)
            .expect("make the proxy listener non-blocking");
        let address = listener.local_addr().expect("proxy address");
        let shared = Arc::new(LinkShared {
            stop: AtomicBool::new(false),
            target: Mutex::new(None),
            links: Mutex::new(std::collections::HashMap::new()),
            connections: Mutex::new(Vec::new()),
            accepted: AtomicUsize::new(0),
            source_of,
        });
        let accept_shared = shared.clone();
        let accept_thread = std::thread::spawn(move || link_accept_loop(listener, &accept_shared));
        LinkProxy {
            address,
            shared,
            accept_thread: Some(accept_thread),
        }
    }

    /// Where peers and clients connect.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Where connections are forwarded from now on.
    pub fn set_target(&self, target: SocketAddr) {
        *self.shared.target.lock().unwrap() = Some(target);
    }

    /// Connections accepted so far from `source`, forwarded or held.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// The state of the link from `source`.
    pub fn state(&self, source: Source) -> LinkState {
        link_state(&self.shared, source)
    }

    /// Sets the link from `source` to `state`: see [`LinkState`] for what each does to the
    /// connections open now.
    pub fn set(&self, source: Source, state: LinkState) {
        let previous = self
            .shared
            .links
            .lock()
            .unwrap()
            .insert(source, state)
            .unwrap_or(LinkState::Open);
        let mut connections = self.shared.connections.lock().unwrap();
        match state {
            LinkState::Cut => {
                for connection in connections.iter().filter(|c| c.source == source) {
                    connection.spoiled.store(true, Ordering::SeqCst);
                }
            }
            LinkState::Open | LinkState::Delayed(_) if previous == LinkState::Cut => {
                connections.retain(|connection| {
                    let spoiled =
                        connection.source == source && connection.spoiled.load(Ordering::SeqCst);
                    if spoiled {
                        connection.close();
                    }
                    !spoiled
                });
            }
            LinkState::Open | LinkState::Delayed(_) => {}
        }
    }

    /// Closes every connection open now, from every source (a reset, not a partition).
    pub fn close_all(&self) {
        let connections = std::mem::take(&mut *self.shared.connections.lock().unwrap());
        for connection in connections {
            connection.close();
        }
    }
}

impl Drop for LinkProxy {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.close_all();
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
    }
}

fn link_state(shared: &LinkShared, source: Source) -> LinkState {
    shared
        .links
        .lock()
        .unwrap()
        .get(&source)
        .copied()
        .unwrap_or(LinkState::Open)
}

fn link_accept_loop(listener: TcpListener, shared: &Arc<LinkShared>) {
    let proxy_address = listener.local_addr().expect("proxy address");
    while !shared.stop.load(Ordering::SeqCst) {
        let (client, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            Err(error) if error.kind() == ErrorKind::WouldBlock => {
                std::thread::sleep(ACCEPT_POLL_INTERVAL);
                continue;
            }
            Err(error) => panic!("the link proxy cannot accept: {error}"),
        };
        // Looked up at once: the connecting socket exists until the peer closes it.
        let source = (shared.source_of)(peer, proxy_address);
        client
            .set_nonblocking(false)
            .expect("make the client socket blocking");
        let _ = client.set_nodelay(true);
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if link_state(shared, source) == LinkState::Cut {
            // Held open and never read: the peer's connect succeeds and its requests hang.
            shared.connections.lock().unwrap().push(Arc::new(Forwarded {
                source,
                sockets: vec![client],
                spoiled: AtomicBool::new(true),
            }));
            continue;
        }
        let target = *shared.target.lock().unwrap();
        let Some(broker) = target
            .and_then(|target| TcpStream::connect_timeout(&target, TARGET_CONNECT_TIMEOUT).ok())
        else {
            // The broker is down: the peer sees its connection closed, as it would.
            continue;
        };
        let _ = broker.set_nodelay(true);
        let forwarded = Arc::new(Forwarded {
            source,
            sockets: vec![
                client.try_clone().expect("clone the client socket"),
                broker.try_clone().expect("clone the broker socket"),
            ],
            spoiled: AtomicBool::new(false),
        });
        shared.connections.lock().unwrap().push(forwarded.clone());
        spawn_link_copy(
            shared.clone(),
            forwarded.clone(),
            client.try_clone().expect("clone the client socket"),
            broker.try_clone().expect("clone the broker socket"),
        );
        spawn_link_copy(shared.clone(), forwarded, broker, client);
    }
}

/// Moves bytes from `source` to `target` through a delay line until either side closes, then
/// closes both. Bytes read while the connection is spoiled are dropped.
fn spawn_link_copy(
    shared: Arc<LinkShared>,
    connection: Arc<Forwarded>,
    mut source: TcpStream,
    mut target: TcpStream,
) {
    let (line, arrivals) =
        std::sync::mpsc::sync_channel::<(std::time::Instant, Vec<u8>)>(DELAY_LINE_CHUNKS_MAX);
    let writer_connection = connection.clone();
    std::thread::spawn(move || {
        for (due, chunk) in arrivals {
            let wait = due.saturating_duration_since(std::time::Instant::now());
            if !wait.is_zero() {
                std::thread::sleep(wait);
            }
            if writer_connection.spoiled.load(Ordering::SeqCst) {
                continue;
            }
            if target.write_all(&chunk).is_err() {
                break;
            }
        }
        writer_connection.close();
    });
    std::thread::spawn(move || {
        let mut chunk = vec![0u8; COPY_CHUNK_BYTES];
        loop {
            match source.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(count) => {
                    let delay = match link_state(&shared, connection.source) {
                        LinkState::Delayed(delay) => delay,
                        LinkState::Open => Duration::ZERO,
                        LinkState::Cut => {
                            // Authoritative over a cut that raced with this connection's accept.
                            connection.spoiled.store(true, Ordering::SeqCst);
                            continue;
                        }
                    };
                    if connection.spoiled.load(Ordering::SeqCst) {
                        continue;
                    }
                    let due = std::time::Instant::now() + delay;
                    if line.send((due, chunk[..count].to_vec())).is_err() {
                        break;
                    }
                }
            }
        }
        connection.close();
        shared
            .connections
            .lock()
            .unwrap()
            .retain(|other| !Arc::ptr_eq(other, &connection));
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An echo server on a free port of 127.0.0.1.
    fn echo_server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
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
        address
    }

    fn every_connection_from(node: i32) -> SourceOf {
        Arc::new(move |_, _| Source::Broker(node))
    }

    fn echo(stream: &mut TcpStream, text: &[u8]) -> std::io::Result<Vec<u8>> {
        stream.write_all(text)?;
        let mut answer = vec![0u8; text.len()];
        stream.read_exact(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn a_cut_link_drops_bytes_holds_new_connections_and_healing_closes_them() {
        let proxy = LinkProxy::start("127.0.0.1".parse().unwrap(), every_connection_from(1));
        proxy.set_target(echo_server());
        let mut before = TcpStream::connect(proxy.address()).unwrap();
        before
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert_eq!(echo(&mut before, b"one").unwrap(), b"one");

        proxy.set(Source::Broker(1), LinkState::Cut);
        assert!(echo(&mut before, b"two").is_err(), "a cut link drops bytes");
        // Another source's link is not cut.
        assert_eq!(proxy.state(Source::Broker(2)), LinkState::Open);
        let mut during = TcpStream::connect(proxy.address()).expect("connect succeeds");
        during
            .set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        assert!(
            echo(&mut during, b"three").is_err(),
            "a new connection hangs"
        );

        proxy.set(Source::Broker(1), LinkState::Open);
        for mut spoiled in [before, during] {
            spoiled
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut rest = Vec::new();
            // Closed: EOF (or a reset), never an answer.
            let outcome = spoiled.read_to_end(&mut rest);
            assert!(outcome.is_err() || rest.is_empty(), "read {rest:?}");
        }
        let mut after = TcpStream::connect(proxy.address()).unwrap();
        assert_eq!(echo(&mut after, b"four").unwrap(), b"four");
    }

    #[test]
    fn a_delayed_link_forwards_each_chunk_no_sooner_than_its_delay() {
        let proxy = LinkProxy::start("127.0.0.1".parse().unwrap(), every_connection_from(1));
        proxy.set_target(echo_server());
        let mut stream = TcpStream::connect(proxy.address()).unwrap();
        assert_eq!(echo(&mut stream, b"warm").unwrap(), b"warm");
        proxy.set(
            Source::Broker(1),
            LinkState::Delayed(Duration::from_millis(200)),
        );
        let started = Instant::now();
        // Delayed both ways: the request, then the echo.
        assert_eq!(echo(&mut stream, b"late").unwrap(), b"late");
        assert!(started.elapsed() >= Duration::from_millis(400));
        proxy.set(Source::Broker(1), LinkState::Open);
        assert_eq!(echo(&mut stream, b"open").unwrap(), b"open");
    }
}
