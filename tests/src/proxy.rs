//! A TCP proxy between a client and the broker that a test can cut: every connection open at the
//! moment of [`CutProxy::cut`] is closed on both sides (the client sees its connection lost with
//! requests in flight; the broker may or may not have read them), while new connections are
//! still accepted and forwarded. It moves bytes only and knows nothing of the protocol.
//!
//! Plain threads and blocking sockets: two copy threads per connection, one accept thread that
//! polls a non-blocking listener so that dropping the proxy stops it.

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
