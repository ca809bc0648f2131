//! Start-up facts an operator needs: the io_uring memlock situation, the open-files limit, and
//! the listener socket.
//!
//! `memlock_report` reads RLIMIT_MEMLOCK and says whether glommio can register its
//! io_uring buffers or will fall back to slower unregistered ones, and how to fix it.
//! `raise_open_files_limit` lifts RLIMIT_NOFILE's soft limit to the hard one, and
//! `connections_allowed_by` says how many connections the result leaves room for.
//! `bind_listener` binds the one listening socket (socket2) that every shard accepts on through a
//! duplicate of its descriptor. It does not set SO_REUSEPORT: with it, a second broker (another
//! data directory, same user) could bind the same port and the kernel would split connections
//! between the two; without it, the second one fails with "address in use".

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rustix::process::{Resource, Rlimit};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Backlog of the listening socket (the kernel caps it at somaxconn).
pub const LISTEN_BACKLOG: i32 = 1024;

/// How long a start waits for a port that is in use before it gives up. A broker that was just
/// killed keeps its listening socket for a few milliseconds after the process is gone (its
/// io_uring rings, whose pending accepts hold the socket, are torn down asynchronously; ~6 ms
/// measured here, longer on a loaded host), so an immediate restart would otherwise fail. A
/// second broker on a port that stays taken fails after this wait.
pub const LISTEN_ADDRESS_IN_USE_WAIT_MS: u64 = 2_000;

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

/// CAP_IPC_LOCK's bit in the capability masks (`linux/capability.h`).
const CAP_IPC_LOCK_BIT: u32 = 14;

/// Whether the effective capabilities in `/proc/self/status` text hold CAP_IPC_LOCK; `None`
/// when the text has no readable `CapEff` line (then uid 0 is taken to hold it).
fn holds_ipc_lock_capability(status: &str) -> Option<bool> {
    let mask = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())?;
    Some(mask & (1 << CAP_IPC_LOCK_BIT) != 0)
}

/// Reads the limits and judges them for `shards` executors with `io_memory_bytes` each.
pub fn memlock_situation(shards: usize, io_memory_bytes: usize) -> MemlockSituation {
    let limit = rustix::process::getrlimit(Resource::Memlock);
    // CAP_IPC_LOCK, not uid 0, is what exempts a process from the limit: root in a container
    // started without it (Docker's default) is bound like anyone else.
    let is_root = holds_ipc_lock_capability(
        &std::fs::read_to_string("/proc/self/status").unwrap_or_default(),
    )
    .unwrap_or_else(|| rustix::process::geteuid().is_root());
    // `None` is RLIM_INFINITY.
    let Some(limit_bytes) = limit.current else {
        return MemlockSituation::Registered { limit_bytes: None };
    };
    if limit_bytes < GLOMMIO_MEMLOCK_MIN_BYTES && !is_root {
        return MemlockSituation::TooLow { limit_bytes };
    }
    // CAP_IPC_LOCK exempts the process from the limit.
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

/// The broker's listening socket, with SO_REUSEADDR (a restarted broker can bind while old
/// connections sit in TIME_WAIT) and without SO_REUSEPORT (nobody else may bind the port while it
/// is held). Non-blocking: every shard's executor accepts on a duplicate of it.
/// [`bind_listener`], waiting up to `wait` (polling) while the address is in use.
pub fn bind_listener_waiting(address: SocketAddr, wait: Duration) -> std::io::Result<Socket> {
    let deadline = Instant::now() + wait;
    let mut told = false;
    loop {
        match bind_listener(address) {
            Err(error) if error.kind() == ErrorKind::AddrInUse && Instant::now() < deadline => {
                if !told {
                    told = true;
                    tracing::info!(
                        %address,
                        wait_ms = wait.as_millis() as u64,
                        "listen address in use; waiting in case it is a broker that just exited"
                    );
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

pub fn bind_listener(address: SocketAddr) -> std::io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket)
}

/// RLIMIT_NOFILE before and after start-up raised its soft limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpenFilesLimit {
    pub soft_before: u64,
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft open-files limit to the hard limit (connections each take a descriptor, and
/// the default soft limit of 1024 is far below what a broker needs). A failed raise keeps the
/// old soft limit. Reading the limit cannot fail (prlimit64 on this process).
pub fn raise_open_files_limit() -> OpenFilesLimit {
    // `None` is RLIM_INFINITY, which counts as the largest limit.
    let limit = rustix::process::getrlimit(Resource::Nofile);
    let soft_before = limit.current.unwrap_or(u64::MAX);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let mut soft = soft_before;
    if soft < hard {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if rustix::process::setrlimit(Resource::Nofile, raised).is_ok() {
            soft = hard;
        }
    }
    OpenFilesLimit {
        soft_before,
        soft,
        hard,
    }
}

/// How many client connections fit in `open_files` descriptors when `kept` of them stay with the
/// broker (its open-file cache and `file_descriptors_reserved`). At least one, so a broker under
/// a tiny limit still answers someone (and says so at start).
pub fn connections_allowed_by(open_files: u64, kept: usize) -> usize {
    let open_files = usize::try_from(open_files).unwrap_or(usize::MAX);
    open_files.saturating_sub(kept).max(1)
}

/// Raises the open-files limit, then logs what it leaves for connections once the shards' file
/// caches (`files_for(soft limit)` descriptors in all) and `reserved` descriptors are set aside;
/// returns the most connections the broker takes (`connections_max` or fewer).
pub fn log_open_files(
    reserved: usize,
    connections_max: usize,
    files_for: impl Fn(u64) -> usize,
) -> usize {
    let limit = raise_open_files_limit();
    let files = files_for(limit.soft);
    let kept = files.saturating_add(reserved);
    let allowed = connections_allowed_by(limit.soft, kept);
    if limit.soft <= kept as u64 {
        tracing::warn!(
            open_files_limit = limit.soft,
            open_files_cache = files,
            file_descriptors_reserved = reserved,
            "open-files limit leaves no descriptors for connections beyond the file caches and the \
             reserved ones; raise it (`ulimit -n`, LimitNOFILE= in the systemd unit)"
        );
    }
    tracing::info!(
        open_files_limit = limit.soft,
        raised_from = limit.soft_before,
        hard_limit = limit.hard,
        open_files_cache = files,
        file_descriptors_reserved = reserved,
        connections_max = allowed.min(connections_max),
        "open files: the descriptor limit allows {allowed} client connections"
    );
    allowed.min(connections_max)
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
    fn the_memlock_exemption_is_read_from_the_effective_capabilities() {
        // Root on a host: every capability.
        let host_root = "Name:\tspate\nCapEff:\t000001ffffffffff\n";
        assert_eq!(holds_ipc_lock_capability(host_root), Some(true));
        // Root in a Docker container: Docker's default set, without CAP_IPC_LOCK.
        let container_root = "CapEff:\t00000000a80425fb\n";
        assert_eq!(holds_ipc_lock_capability(container_root), Some(false));
        // Anyone else, and text without the line.
        assert_eq!(
            holds_ipc_lock_capability("CapEff:\t0000000000000000\n"),
            Some(false)
        );
        assert_eq!(holds_ipc_lock_capability("Name:\tx\n"), None);
    }

    #[test]
    fn a_second_listener_on_the_same_port_is_refused() {
        let first = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = first.local_addr().unwrap().as_socket().unwrap();
        let error = bind_listener(address).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);
    }

    #[test]
    fn a_port_released_within_the_wait_is_taken_and_one_held_longer_is_refused() {
        let holder = bind_listener("127.0.0.1:0".parse().unwrap()).unwrap();
        let address = holder.local_addr().unwrap().as_socket().unwrap();
        let error = bind_listener_waiting(address, Duration::from_millis(100)).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::AddrInUse);

        let release = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            drop(holder);
        });
        bind_listener_waiting(address, Duration::from_secs(30)).unwrap();
        release.join().unwrap();
    }

    #[test]
    fn connections_get_the_descriptors_beyond_the_reserved_ones() {
        assert_eq!(connections_allowed_by(1024, 512 + 128), 384);
        assert_eq!(connections_allowed_by(100, 256), 1);
    }
}
