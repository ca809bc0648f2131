//! Writing a response that is a list of byte chunks (frame header, encoded fields, and stored
//! record batches as the storage engine holds them) to a socket without joining the chunks.
//!
//! The fast path is one non-blocking `sendmsg` with an iovec per chunk: the kernel copies each
//! chunk straight from where it lives (tail cache or read buffer) into the socket buffer, and no
//! user-space concatenation copy is made. When the socket buffer is full (EAGAIN), the write falls
//! back to glommio's own write of the current chunk, which parks the task on io_uring until the
//! socket is writable, so the executor never blocks. That wait ends with `TimedOut` when the
//! stream's write timeout (set by the connection: `response_write_timeout_ms`) passes before the
//! socket accepts a byte; it restarts with every byte accepted. sendfile/splice does not apply: reads are
//! O_DIRECT into user memory (there is no page-cache page to splice from).

use std::io::{self, IoSlice};
use std::os::fd::{AsRawFd, BorrowedFd};

use bytes::Bytes;
use futures_lite::{AsyncWrite, AsyncWriteExt};

/// Most iovecs handed to one sendmsg call (Linux's IOV_MAX).
const IOVECS_PER_CALL_MAX: usize = 1024;

/// Writes every chunk, in order, completely. `stream` is the connection's socket: `sendmsg` goes
/// to its descriptor, and its own write waits for the socket to become writable.
pub async fn write_chunks<S: AsyncWrite + AsRawFd + Unpin>(
    stream: &mut S,
    chunks: &[Bytes],
) -> io::Result<()> {
    let mut position = Position {
        chunk: 0,
        offset: 0,
    };
    position.skip_empty(chunks);
    while position.chunk < chunks.len() {
        // SAFETY: the descriptor belongs to `stream`, which outlives this borrow (std's I/O
        // safety; glommio's stream gives only a raw descriptor, no `AsFd`).
        let socket = unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) };
        match send_vectored(socket, chunks, &position) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "socket accepted no bytes",
                ))
            }
            Ok(written) => position.advance(chunks, written),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                // Socket buffer full: let glommio wait for writability and send what it can.
                let written = stream
                    .write(&chunks[position.chunk][position.offset..])
                    .await?;
                if written == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "socket accepted no bytes",
                    ));
                }
                position.advance(chunks, written);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

/// Where in the chunk list the next byte to send is.
#[derive(Debug, PartialEq, Eq)]
struct Position {
    chunk: usize,
    offset: usize,
}

impl Position {
    fn advance(&mut self, chunks: &[Bytes], mut written: usize) {
        while written > 0 {
            let left = chunks[self.chunk].len() - self.offset;
            if written < left {
                self.offset += written;
                return;
            }
            written -= left;
            self.chunk += 1;
            self.offset = 0;
        }
        self.skip_empty(chunks);
    }

    fn skip_empty(&mut self, chunks: &[Bytes]) {
        while self.chunk < chunks.len() && self.offset == chunks[self.chunk].len() {
            self.chunk += 1;
            self.offset = 0;
        }
    }
}

fn send_vectored(
    socket: BorrowedFd<'_>,
    chunks: &[Bytes],
    position: &Position,
) -> io::Result<usize> {
    let mut iovecs: Vec<IoSlice<'_>> =
        Vec::with_capacity((chunks.len() - position.chunk).min(IOVECS_PER_CALL_MAX));
    for (index, chunk) in chunks[position.chunk..].iter().enumerate() {
        if iovecs.len() == IOVECS_PER_CALL_MAX {
            break;
        }
        let start = if index == 0 { position.offset } else { 0 };
        let remaining = &chunk[start..];
        if remaining.is_empty() {
            continue;
        }
        iovecs.push(IoSlice::new(remaining));
    }
    let sent = rustix::net::sendmsg(
        socket,
        &iovecs,
        &mut rustix::net::SendAncillaryBuffer::default(),
        rustix::net::SendFlags::DONTWAIT | rustix::net::SendFlags::NOSIGNAL,
    )?;
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunks(lengths: &[usize]) -> Vec<Bytes> {
        lengths
            .iter()
            .map(|length| Bytes::from(vec![7u8; *length]))
            .collect()
    }

    #[test]
    fn advancing_crosses_chunk_boundaries_and_skips_empty_chunks() {
        let chunks = chunks(&[3, 0, 2, 4]);
        let mut position = Position {
            chunk: 0,
            offset: 0,
        };
        position.advance(&chunks, 2);
        assert_eq!(
            position,
            Position {
                chunk: 0,
                offset: 2
            }
        );
        position.advance(&chunks, 2);
        assert_eq!(
            position,
            Position {
                chunk: 2,
                offset: 1
            }
        );
        position.advance(&chunks, 5);
        assert_eq!(
            position,
            Position {
                chunk: 4,
                offset: 0
            }
        );
    }

    #[test]
    fn a_write_to_a_peer_that_reads_nothing_times_out() {
        glommio::LocalExecutor::default().run(async {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let (done, finished) = std::sync::mpsc::channel::<()>();
            let peer = std::thread::spawn(move || {
                // Connected, never read from, kept open until the write has failed.
                let _stream = std::net::TcpStream::connect(address).unwrap();
                let _ = finished.recv();
            });
            let mut stream = listener.accept().await.unwrap();
            stream
                .set_write_timeout(Some(std::time::Duration::from_millis(200)))
                .unwrap();
            // Far more than the two socket buffers hold.
            let parts: Vec<Bytes> = (0..64).map(|_| Bytes::from(vec![1u8; 1 << 20])).collect();
            let error = write_chunks(&mut stream, &parts).await.unwrap_err();
            assert_eq!(error.kind(), io::ErrorKind::TimedOut);
            done.send(()).unwrap();
            peer.join().unwrap();
        });
    }

    #[test]
    fn chunks_arrive_in_order_and_complete_through_a_small_socket_buffer() {
        glommio::LocalExecutor::default().run(async {
            let listener = glommio::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = listener.local_addr().unwrap();
            let parts: Vec<Bytes> = (0..64u8)
                .map(|index| Bytes::from(vec![index; 16 * 1024 + index as usize]))
                .collect();
            let expected: Vec<u8> = parts.iter().flat_map(|part| part.iter().copied()).collect();
            let reader = std::thread::spawn(move || {
                use std::io::Read;
                let mut stream = std::net::TcpStream::connect(address).unwrap();
                // Read slowly at first so the sender's buffer fills and it must wait.
                std::thread::sleep(std::time::Duration::from_millis(50));
                let mut received = Vec::new();
                stream.read_to_end(&mut received).unwrap();
                received
            });
            let mut stream = listener.accept().await.unwrap();
            // SAFETY: the descriptor belongs to `stream`, alive for this borrow.
            let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(stream.as_raw_fd()) };
            socket2::SockRef::from(&fd)
                .set_send_buffer_size(4096)
                .unwrap();
            write_chunks(&mut stream, &parts).await.unwrap();
            stream.close().await.unwrap();
            drop(stream);
            let received = reader.join().unwrap();
            assert_eq!(received.len(), expected.len());
            assert!(
                received == expected,
                "bytes arrived out of order or changed"
            );
        });
    }
}
