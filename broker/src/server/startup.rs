//! Start-up facts an operator needs: the io_uring memlock situation and the listener sockets.
//!
//! `memlock_report` reads RLIMIT_MEMLOCK (via libc) and says whether glommio can register its
//! io_uring buffers or will fall back to slower unregistered ones, and how to fix it.
//! `bind_listener` builds the SO_REUSEPORT listening socket each shard accepts on (socket2), so
//! every shard can bind the same address and the kernel spreads connections over them.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Backlog of each shard's listening socket (the kernel caps it at somaxconn).
pub const LISTEN_BACKLOG: i32 = 1024;

/// glommio refuses to start an executor under this memlock limit.
const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// glommio registers its buffer area in each of its three rings per executor.
const RINGS_PER_SHARD: u64 = 3;

/// What the memlock limit means for io_uring buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemlockSituation {
    /// Root or an unlimited/large enough limit: buffers are registered with the kernel.
    Registered { limit_bytes: Option<u64> },
    /// The limit is too small to register the buffers: glommio warns and uses ordinary buffers.
    Unregistered { limit_bytes: u64, needed_bytes: u64 },
    /// Below glommio's floor: executors would fail to start.
    TooLow { limit_bytes: u64 },
}

/// Reads the limits and judges them for `shards` executors with `io_memory_bytes` each.
pub fn memlock_situation(shards: usize, io_memory_bytes: usize) -> MemlockSituation {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one rlimit into the pointed-to value.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    // SAFETY: geteuid has no preconditions.
    let is_root = unsafe { libc::geteuid() } == 0;
    if result != 0 || limit.rlim_cur == libc::RLIM_INFINITY {
        return MemlockSituation::Registered { limit_bytes: None };
    }
    let limit_bytes = limit.rlim_cur;
    if limit_bytes < GLOMMIO_MEMLOCK_MIN_BYTES && !is_root {
        return MemlockSituation::TooLow { limit_bytes };
    }
    // Root holds CAP_IPC_LOCK, which exempts it from the limit.
    let needed_bytes = shards as u64 * RINGS_PER_SHARD * io_memory_bytes as u64;
    if is_root || limit_bytes >= needed_bytes {
        MemlockSituation::Registered {
            limit_bytes: Some(limit_bytes),
        }
    } else {
        MemlockSituation::Unregistered {
            limit_bytes,
            needed_bytes,
        }
    }
}

/// Logs one line about the memlock situation, at a level that matches its urgency.
pub fn log_memlock(shards: usize, io_memory_bytes: usize) {
    match memlock_situation(shards, io_memory_bytes) {
        MemlockSituation::Registered { limit_bytes } => tracing::info!(
            memlock_limit_bytes = ?limit_bytes,
            "io_uring: buffers registered with the kernel (memlock limit is sufficient or we run as root)"
        ),
        MemlockSituation::Unregistered {
            limit_bytes,
            needed_bytes,
        } => tracing::warn!(
            memlock_limit_bytes = limit_bytes,
            needed_bytes,
            "io_uring: memlock limit too small to register buffers; glommio falls back to slower \
             unregistered buffers. Raise it: `ulimit -l unlimited`, LimitMEMLOCK=infinity in the \
             systemd unit, or `memlock` in /etc/security/limits.conf; or lower --io-memory-bytes"
        ),
        MemlockSituation::TooLow { limit_bytes } => tracing::error!(
            memlock_limit_bytes = limit_bytes,
            minimum_bytes = GLOMMIO_MEMLOCK_MIN_BYTES,
            "io_uring: memlock limit is below what glommio needs to start; raise it with \
             `ulimit -l unlimited` (or LimitMEMLOCK=infinity in the systemd unit)"
        ),
    }
}

/// A listening socket with SO_REUSEPORT (every shard binds the same address) and SO_REUSEADDR
/// (a restarted broker can bind while old connections sit in TIME_WAIT).
pub fn bind_listener(address: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// TCP_NODELAY (responses are whole frames; Nagle would only add latency) and the configured
/// socket buffer sizes, on an accepted connection.
pub fn tune_connection(
    socket: SockRef<'_>,
    send_buffer_bytes: usize,
    receive_buffer_bytes: usize,
) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    socket.set_send_buffer_size(send_buffer_bytes)?;
    socket.set_recv_buffer_size(receive_buffer_bytes)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_listeners_can_share_one_port() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = first.local_addr().unwrap().as_socket().unwrap();
        let second = bind_listener(address).unwrap();
        assert_eq!(second.local_addr().unwrap().as_socket().unwrap(), address);
    }
}
