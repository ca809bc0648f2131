//! One TLS connection over a glommio socket: the handshake under a deadline, then a session the
//! connection's reader and writer tasks share the way they share a plaintext socket. The server
//! side (`accept`) serves the listeners; the client side (`connect`) carries this broker's calls
//! to other brokers (`peer`), with the same session and the same rules for its two tasks.
//!
//! Why not a generic async TLS wrapper: glommio keeps one waker for a socket's read readiness
//! and one for its write readiness, each holding a single waiter. A task that polled the write
//! side from its read path (to send a TLS alert or a KeyUpdate answer, as generic wrappers may)
//! would take the writer's place there and the writer would never wake. So here the reader
//! only ever waits on the read side and the writer only on the write side; TLS bytes the reader
//! produces are sent with a non-blocking `sendmsg` that registers no waiter, and whatever the
//! socket does not take then goes out ahead of the next response.
//!
//! Costs, against plaintext: rustls copies each response once while encrypting it into its
//! send buffer (records cut across the response's chunks, not joined first), and each request
//! once from its receive buffer after decrypting it in place. kTLS, which would give the
//! zero-copy `sendmsg` path back, is not available on the kernels Spate runs on today.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{future, AsyncRead, AsyncWrite};
use glommio::net::TcpStream;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::principal::certificate_principal;

/// Ciphertext rustls may queue before a response write waits for the socket: large enough that
/// a large response costs few system calls, small enough to be a modest per-connection cost.
const SEND_BUFFER_BYTES_MAX: usize = 256 * 1024;

/// Slices handed to rustls in one call (it cuts records across them).
const SLICES_PER_WRITE_MAX: usize = 64;

/// Why a TLS handshake did not complete. On a listener each is the client's doing (or a
/// timeout): the connection is closed and logged at debug level. On a call to another broker
/// (`peer`) it fails the connect.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("TLS handshake: {0}")]
    Tls(#[from] rustls::Error),
    #[error("TLS handshake: socket: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: the peer closed the connection")]
    Closed,
    #[error("TLS handshake did not complete within {timeout_ms} ms")]
    TimedOut { timeout_ms: u64 },
    #[error("TLS handshake: the broker is shutting down")]
    Shutdown,
}

/// A socket and its TLS state, shared by a connection's reader and writer.
pub struct TlsSession {
    stream: TcpStream,
    /// The server side on a listener's connections, the client side on calls to other brokers.
    connection: Connection,
}

/// The handle both tasks hold. Each borrows the session only inside one poll, never across an
/// await, so the borrows never overlap.
#[derive(Clone)]
pub struct SharedTlsStream(Rc<RefCell<TlsSession>>);

/// What a completed handshake says about the peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsPeer {
    /// `User:<subject CN>` of the verified client certificate (the whole subject DN when it has
    /// no CN); `None` without a client certificate.
    pub principal: Option<String>,
}

/// Runs the server side of a handshake on `stream`, until it completes, fails, takes longer
/// than `timeout`, or `stopped` resolves (shutdown).
pub async fn accept(
    stream: TcpStream,
    config: Arc<ServerConfig>,
    timeout: Duration,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<(SharedTlsStream, TlsPeer), HandshakeError> {
    let connection = ServerConnection::new(config)?;
    let session = handshake(stream, Connection::Server(connection), timeout, stopped).await?;
    let principal = session
        .connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| certificate_principal(leaf.as_ref()));
    Ok((
        SharedTlsStream(Rc::new(RefCell::new(session))),
        TlsPeer { principal },
    ))
}

/// Runs the client side of a handshake on `stream` (a connection this broker opened to another
/// one), verifying the server's certificate for `server_name` with `config`'s roots, until it
/// completes, fails or takes longer than `timeout`.
pub async fn connect(
    stream: TcpStream,
    config: Arc<ClientConfig>,
    server_name: ServerName<'static>,
    timeout: Duration,
) -> Result<SharedTlsStream, HandshakeError> {
    let connection = ClientConnection::new(config, server_name)?;
    let session = handshake(
        stream,
        Connection::Client(connection),
        timeout,
        future::pending(),
    )
    .await?;
    Ok(SharedTlsStream(Rc::new(RefCell::new(session))))
}

/// Drives either side's handshake to its end, under `timeout`, racing `stopped`.
async fn handshake(
    stream: TcpStream,
    mut connection: Connection,
    timeout: Duration,
    stopped: impl std::future::Future<Output = ()>,
) -> Result<TlsSession, HandshakeError> {
    connection.set_buffer_limit(Some(SEND_BUFFER_BYTES_MAX));
    let mut session = TlsSession { stream, connection };
    let handshake = poll_fn(|context| session.poll_handshake(context));
    let outcome = future::or(
        future::or(handshake, async {
            glommio::timer::sleep(timeout).await;
            Err(HandshakeError::TimedOut {
                timeout_ms: timeout.as_millis() as u64,
            })
        }),
        async {
            stopped.await;
            Err(HandshakeError::Shutdown)
        },
    )
    .await;
    outcome?;
    Ok(session)
}

impl TlsSession {
    fn poll_handshake(&mut self, context: &mut Context<'_>) -> Poll<Result<(), HandshakeError>> {
        loop {
            // Our flight first (a server's hello and session tickets, a client's hello and
            // Finished): the other side waits for it.
            while self.connection.wants_write() {
                let mut socket = WriteHalf {
                    stream: &mut self.stream,
                    context,
                };
                match self.connection.write_tls(&mut socket) {
                    Ok(_) => {}
                    Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                        return Poll::Pending
                    }
                    Err(error) => return Poll::Ready(Err(error.into())),
                }
            }
            if !self.connection.is_handshaking() {
                return Poll::Ready(Ok(()));
            }
            let mut socket = ReadHalf {
                stream: &mut self.stream,
                context,
            };
            match self.connection.read_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Err(HandshakeError::Closed)),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(error) => return Poll::Ready(Err(error.into())),
            }
            if let Err(error) = self.connection.process_new_packets() {
                // The alert rustls queued tells the other side why (a plaintext client will not
                // understand it, and that is fine).
                self.send_queued_without_waiting();
                return Poll::Ready(Err(error.into()));
            }
        }
    }

    /// Decrypted bytes into `target`; `Ok(0)` at the end of the stream. Waits on the socket's
    /// read side only.
    fn poll_read(
        &mut self,
        context: &mut Context<'_>,
        target: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        loop {
            match self.connection.reader().read(target) {
                Ok(count) => return Poll::Ready(Ok(count)),
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: as a plaintext peer closing, the end.
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(0))
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
            let mut socket = ReadHalf {
                stream: &mut self.stream,
                context,
            };
            match self.connection.read_tls(&mut socket) {
                Ok(0) => return Poll::Ready(Ok(0)),
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(error) => return Poll::Ready(Err(error)),
            }
            if let Err(error) = self.connection.process_new_packets() {
                self.send_queued_without_waiting();
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, error)));
            }
            if self.connection.wants_write() {
                // A KeyUpdate answer or an alert: sent now if the socket takes it, else ahead of
                // the next response. Never a wait on the write side from here (see the top).
                self.send_queued_without_waiting();
            }
        }
    }

    /// Sends queued ciphertext until none is left; waits on the socket's write side only.
    fn poll_send_queued(&mut self, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.connection.wants_write() {
            let mut socket = WriteHalf {
                stream: &mut self.stream,
                context,
            };
            match self.connection.write_tls(&mut socket) {
                Ok(0) => {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    )))
                }
                Ok(_) => {}
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Encrypts as much of `slices` as the send buffer takes (at least one byte when it is
    /// empty); the caller sends it with `poll_send_queued`.
    fn encrypt(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.connection.writer().write_vectored(slices)
    }

    /// What the socket takes of the queued ciphertext now, without registering a waiter.
    fn send_queued_without_waiting(&mut self) {
        let mut socket = NonBlockingWrite(self.stream.as_raw_fd());
        while self.connection.wants_write() {
            match self.connection.write_tls(&mut socket) {
                Ok(count) if count > 0 => {}
                _ => return,
            }
        }
    }
}

impl SharedTlsStream {
    /// Writes every chunk, in order, completely, and sends it.
    pub async fn write_chunks(&self, chunks: &[Bytes]) -> io::Result<()> {
        let mut chunk = 0;
        let mut offset = 0;
        loop {
            poll_fn(|context| self.0.borrow_mut().poll_send_queued(context)).await?;
            while chunk < chunks.len() && offset == chunks[chunk].len() {
                chunk += 1;
                offset = 0;
            }
            if chunk == chunks.len() {
                return Ok(());
            }
            let mut slices = Vec::with_capacity((chunks.len() - chunk).min(SLICES_PER_WRITE_MAX));
            slices.push(IoSlice::new(&chunks[chunk][offset..]));
            slices.extend(
                chunks[chunk + 1..]
                    .iter()
                    .take(SLICES_PER_WRITE_MAX - 1)
                    .map(|part| IoSlice::new(part)),
            );
            let mut encrypted = self.0.borrow_mut().encrypt(&slices)?;
            if encrypted == 0 {
                // The send buffer was just emptied, so this cannot be backpressure.
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS session took no bytes",
                ));
            }
            // Advance over what rustls took.
            while encrypted > 0 {
                let left = chunks[chunk].len() - offset;
                if encrypted < left {
                    offset += encrypted;
                    encrypted = 0;
                } else {
                    encrypted -= left;
                    chunk += 1;
                    offset = 0;
                }
            }
        }
    }

    /// Sends close_notify if the socket takes it now, then shuts the socket down both ways.
    pub fn shut_down(&self) {
        let mut session = self.0.borrow_mut();
        session.connection.send_close_notify();
        session.send_queued_without_waiting();
        shut_down_socket(&session.stream);
    }

    pub fn peer_addr(&self) -> Option<std::net::SocketAddr> {
        self.0.borrow().stream.peer_addr().ok()
    }
}

impl AsyncRead for SharedTlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        target: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        self.0.borrow_mut().poll_read(context, target)
    }
}

impl AsyncWrite for SharedTlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        source: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut session = self.0.borrow_mut();
        if session.poll_send_queued(context)?.is_pending() {
            return Poll::Pending;
        }
        Poll::Ready(session.encrypt(&[IoSlice::new(source)]))
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.borrow_mut().poll_send_queued(context)
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut session = self.0.borrow_mut();
        session.connection.send_close_notify();
        if session.poll_send_queued(context)?.is_pending() {
            return Poll::Pending;
        }
        shut_down_socket(&session.stream);
        Poll::Ready(Ok(()))
    }
}

fn shut_down_socket(stream: &TcpStream) {
    // SAFETY: the descriptor is the open socket owned by `stream`, alive for this borrow.
    let borrowed = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
    let _ = socket2::SockRef::from(&borrowed).shutdown(std::net::Shutdown::Both);
}

/// The socket's read side as `io::Read` for rustls: not ready is `WouldBlock`, with the task's
/// waker registered for read readiness.
struct ReadHalf<'a, 'b> {
    stream: &'a mut TcpStream,
    context: &'a mut Context<'b>,
}

impl Read for ReadHalf<'_, '_> {
    fn read(&mut self, target: &mut [u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.stream).poll_read(self.context, target) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

/// The socket's write side as `io::Write` for rustls: one non-blocking `sendmsg` of rustls'
/// queued records; when the socket is full, glommio's write, which registers the task's waker
/// for write readiness and runs the stream's write timeout (`response_write_timeout_ms`).
struct WriteHalf<'a, 'b> {
    stream: &'a mut TcpStream,
    context: &'a mut Context<'b>,
}

impl Write for WriteHalf<'_, '_> {
    fn write(&mut self, source: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(source)])
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match send_without_waiting(self.stream.as_raw_fd(), slices) {
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
            outcome => return outcome,
        }
        let Some(first) = slices.iter().find(|slice| !slice.is_empty()) else {
            return Ok(0);
        };
        match Pin::new(&mut *self.stream).poll_write(self.context, first) {
            Poll::Ready(outcome) => outcome,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A write that never waits and never registers a waiter: `WouldBlock` when the socket is full.
struct NonBlockingWrite(std::os::fd::RawFd);

impl Write for NonBlockingWrite {
    fn write(&mut self, source: &[u8]) -> io::Result<usize> {
        send_without_waiting(self.0, &[IoSlice::new(source)])
    }

    fn write_vectored(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        send_without_waiting(self.0, slices)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn send_without_waiting(
    descriptor: std::os::fd::RawFd,
    slices: &[IoSlice<'_>],
) -> io::Result<usize> {
    // SAFETY: the descriptor belongs to the session's open stream, alive for this call.
    let socket = unsafe { BorrowedFd::borrow_raw(descriptor) };
    loop {
        match rustix::net::sendmsg(
            socket,
            slices,
            &mut rustix::net::SendAncillaryBuffer::default(),
            rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => continue,
            outcome => return outcome.map_err(io::Error::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::AsyncReadExt;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};

    /// A self-signed certificate for `localhost`: the server's config, and a client config
    /// trusting it.
    fn configs() -> (Arc<ServerConfig>, Arc<rustls::ClientConfig>) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let der = CertificateDer::from(certificate.der().to_vec());
        let provider = super::super::crypto_provider();
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![der.clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der).unwrap();
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        (Arc::new(server), Arc::new(client))
    }

    /// The reader waits for a request while the writer waits for a full socket: glommio keeps
    /// one waiter per side, so each must be woken by its own side. The peer first sends a few
    /// bytes without reading (only the reader can make progress), then reads everything (only
    /// the writer can).
    #[test]
    fn a_waiting_read_and_a_waiting_write_are_both_woken() {
        const RESPONSE_BYTES: usize = 8 * 1024 * 1024;
        let (server_config, client_config) = configs();
        glommio::LocalExecutor::default().run(async move {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let peer = std::thread::spawn(move || {
                use std::io::{Read, Write};
                let mut socket = std::net::TcpStream::connect(address).unwrap();
                let name = ServerName::try_from("localhost").unwrap();
                let mut client = rustls::ClientConnection::new(client_config, name).unwrap();
                while client.is_handshaking() {
                    client.complete_io(&mut socket).unwrap();
                }
                // Let the server's writer fill the socket and wait first.
                std::thread::sleep(Duration::from_millis(300));
                client.writer().write_all(b"ping").unwrap();
                while client.wants_write() {
                    client.write_tls(&mut socket).unwrap();
                }
                let mut received = 0;
                let mut chunk = vec![0u8; 64 * 1024];
                while received < RESPONSE_BYTES {
                    if client.read_tls(&mut socket).unwrap() == 0 {
                        break;
                    }
                    client.process_new_packets().unwrap();
                    loop {
                        match client.reader().read(&mut chunk) {
                            Ok(count) if count > 0 => received += count,
                            _ => break,
                        }
                    }
                }
                received
            });
            let stream = listener.accept().await.unwrap();
            // SAFETY: the descriptor belongs to `stream`, alive for this borrow.
            let socket = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            // A small buffer, so the writer surely waits for the peer.
            socket2::SockRef::from(&socket)
                .set_send_buffer_size(4096)
                .unwrap();
            let (session, peer_identity) = accept(
                stream,
                server_config,
                Duration::from_secs(10),
                future::pending(),
            )
            .await
            .unwrap();
            assert_eq!(peer_identity.principal, None);
            let writer_session = session.clone();
            let writer = glommio::spawn_local(async move {
                let chunks: Vec<Bytes> = (0..8)
                    .map(|index| Bytes::from(vec![index as u8; RESPONSE_BYTES / 8]))
                    .collect();
                writer_session.write_chunks(&chunks).await.unwrap();
            });
            let mut reader_session = session.clone();
            let reader = glommio::spawn_local(async move {
                let mut request = [0u8; 4];
                reader_session.read_exact(&mut request).await.unwrap();
                request
            });
            let both = future::zip(reader, writer);
            let outcome = future::or(async { Some(both.await) }, async {
                glommio::timer::sleep(Duration::from_secs(60)).await;
                None
            })
            .await;
            let (request, ()) = outcome.expect("a read or a write was never woken");
            assert_eq!(&request, b"ping");
            session.shut_down();
            assert_eq!(peer.join().unwrap(), RESPONSE_BYTES);
        });
    }
}
