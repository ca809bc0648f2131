//! Process limits the broker inherits: locked memory (io_uring registered buffers) and open
//! files (segments, connections, rings).

use super::CheckOptions;
use crate::finding::{Finding, Severity};
use crate::view::{HostView, Limit, LimitKind};

/// glommio registers its buffer area once in each of its three rings per executor (shard).
const RINGS_PER_SHARD: u64 = 3;
/// glommio refuses to start an executor under this memlock limit.
const GLOMMIO_MEMLOCK_MIN_BYTES: u64 = 512 * 1024;
/// The open-files hard limit recommended (systemd's `LimitNOFILE=` in tuning/spate.service).
const OPEN_FILES_RECOMMENDED: u64 = 1_048_576;
/// Below this hard limit a busy broker runs out of descriptors for connections and segments.
const OPEN_FILES_WARN_BELOW: u64 = 65_536;

pub fn check(view: &dyn HostView, options: &CheckOptions) -> Vec<Finding> {
    vec![memlock(view, options), open_files(view)]
}

fn memlock(view: &dyn HostView, options: &CheckOptions) -> Finding {
    const NAME: &str = "memlock";
    let needed_bytes =
        options.shard_cores.len().max(1) as u64 * RINGS_PER_SHARD * options.io_memory_bytes;
    let recommended = format!("unlimited (at least {})", bytes_text(needed_bytes));
    let limit = match view.limit(LimitKind::LockedMemory) {
        Ok(limit) => limit,
        Err(error) => {
            return Finding::not_available(
                NAME,
                recommended,
                format!("getrlimit(RLIMIT_MEMLOCK) failed: {error}"),
            )
        }
    };
    let current = limit_text(limit.soft, bytes_text);
    let fix = "ulimit -l unlimited; systemd: LimitMEMLOCK=infinity; /etc/security/limits.d/spate.conf: `spate - memlock unlimited`";
    if holds_ipc_lock(view) {
        return Finding::new(
            NAME,
            format!("{current} (CAP_IPC_LOCK: exempt)"),
            recommended,
            Severity::Ok,
            "this process holds CAP_IPC_LOCK (root outside a container), so glommio registers its \
             io_uring buffers whatever the limit; a broker run as another user (the systemd unit's \
             User=spate), or as root in a container without --cap-add IPC_LOCK, needs the limit raised",
        );
    }
    match limit.soft {
        None => Finding::new(NAME, current, recommended, Severity::Ok, "glommio registers its io_uring buffers with the kernel"),
        Some(bytes) if bytes < GLOMMIO_MEMLOCK_MIN_BYTES => Finding::new(
            NAME,
            current,
            recommended,
            Severity::Fail,
            format!("glommio refuses to start an executor under {}", bytes_text(GLOMMIO_MEMLOCK_MIN_BYTES)),
        )
        .with_fix(fix),
        Some(bytes) if bytes < needed_bytes => Finding::new(
            NAME,
            current,
            recommended,
            Severity::Warn,
            format!(
                "{} shards x {RINGS_PER_SHARD} rings x {} (--io-memory-bytes) do not fit: glommio falls back to \
                 unregistered buffers, which pin pages on every I/O",
                options.shard_cores.len(),
                bytes_text(options.io_memory_bytes)
            ),
        )
        .with_fix(fix),
        Some(_) => Finding::new(NAME, current, recommended, Severity::Ok, "large enough to register every shard's io_uring buffers"),
    }
}

/// CAP_IPC_LOCK's bit in the capability sets.
const CAP_IPC_LOCK_BIT: u32 = 14;

/// Whether the limit binds us: CAP_IPC_LOCK exempts from it. Root in a container usually lacks
/// it (Docker's default capabilities leave it out), so the effective set is read, and being
/// root is only the fallback where /proc/self/status has no CapEff.
fn holds_ipc_lock(view: &dyn HostView) -> bool {
    let effective = view
        .read(std::path::Path::new("/proc/self/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("CapEff:"))
                .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        });
    match effective {
        Some(mask) => mask & (1 << CAP_IPC_LOCK_BIT) != 0,
        None => view.is_root(),
    }
}

fn open_files(view: &dyn HostView) -> Finding {
    const NAME: &str = "open_files";
    let recommended = format!("hard limit >= {OPEN_FILES_RECOMMENDED}");
    let limit: Limit = match view.limit(LimitKind::OpenFiles) {
        Ok(limit) => limit,
        Err(error) => {
            return Finding::not_available(
                NAME,
                recommended,
                format!("getrlimit(RLIMIT_NOFILE) failed: {error}"),
            )
        }
    };
    let number = |value: u64| value.to_string();
    let current = format!(
        "soft {}, hard {}",
        limit_text(limit.soft, number),
        limit_text(limit.hard, number)
    );
    let hard = limit.hard.unwrap_or(u64::MAX);
    let why =
        "every connection and every cached segment file holds a descriptor; the broker raises its \
               soft limit to the hard one at start, so the hard limit is what counts";
    let severity = if hard < OPEN_FILES_WARN_BELOW {
        Severity::Warn
    } else {
        Severity::Ok
    };
    Finding::new(NAME, current, recommended, severity, why)
        .with_fix("ulimit -n 1048576 (as root, before starting); systemd: LimitNOFILE=1048576; limits.d: `spate - nofile 1048576`")
}

fn limit_text(value: Option<u64>, format: impl Fn(u64) -> String) -> String {
    value.map_or_else(|| "unlimited".to_string(), format)
}

/// Bytes in the largest binary unit that divides them (`16 MiB`), else in bytes.
pub(crate) fn bytes_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size && bytes % size == 0 {
            return format!("{} {unit}", bytes / size);
        }
    }
    format!("{bytes} bytes")
}
