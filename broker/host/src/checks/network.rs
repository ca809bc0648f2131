//! Network sysctls that bound connection bursts and per-connection throughput. somaxconn and
//! the `net.ipv4.tcp_*` ones are per network namespace (in a container, the container's);
//! `net.core.rmem_max`/`wmem_max` are the host's.

use super::read_value;
use crate::finding::{sysctl_change, sysctl_command, sysctl_path, Finding, Severity};
use crate::view::HostView;

/// Accept-queue bounds: the broker listens with a backlog of 1024, capped by somaxconn; 4096 is
/// the kernel default since 5.4 and leaves room for reconnect storms after a restart.
const BACKLOG_RECOMMENDED: u64 = 4096;
/// Socket buffer ceiling: a 25 Gb/s link at 1 ms round trip needs about 3 MB in flight per
/// connection, and replication and fetch connections are few and carry everything.
const SOCKET_BUFFER_MAX_RECOMMENDED: u64 = 16 * 1024 * 1024;

pub fn check(view: &dyn HostView) -> Vec<Finding> {
    vec![
        at_least(view, "net_somaxconn", "net.core.somaxconn", BACKLOG_RECOMMENDED,
            "the kernel caps every listen backlog at somaxconn; a burst of connections beyond it (clients \
             reconnecting after a broker restart) is dropped and retried with a SYN timeout"),
        at_least(view, "net_tcp_max_syn_backlog", "net.ipv4.tcp_max_syn_backlog", BACKLOG_RECOMMENDED,
            "half-open connections waiting for their handshake; a reconnect storm beyond it falls back to \
             SYN cookies or drops"),
        at_least(view, "net_rmem_max", "net.core.rmem_max", SOCKET_BUFFER_MAX_RECOMMENDED,
            "caps the receive buffer a socket may ask for (SO_RCVBUF): clients and tools that size their \
             buffers for a fast link get silently less"),
        at_least(view, "net_wmem_max", "net.core.wmem_max", SOCKET_BUFFER_MAX_RECOMMENDED,
            "caps the send buffer a socket may ask for (SO_SNDBUF)"),
        tcp_buffers(view, "net_tcp_rmem", "net.ipv4.tcp_rmem", "4096 131072 16777216",
            "the third number caps receive autotuning: one connection cannot have more unacknowledged \
             bytes in flight, which bounds a produce or replication stream at buffer / round trip"),
        tcp_buffers(view, "net_tcp_wmem", "net.ipv4.tcp_wmem", "4096 16384 16777216",
            "the third number caps send autotuning: a fetch or replication response to a far consumer \
             stalls at buffer / round trip"),
    ]
}

fn at_least(
    view: &dyn HostView,
    name: &'static str,
    key: &str,
    recommended: u64,
    why: &str,
) -> Finding {
    let recommended_text = format!(">= {recommended}");
    let value = match read_value(view, &sysctl_path(key)) {
        Ok(text) => match text.parse::<u64>() {
            Ok(value) => value,
            Err(_) => {
                return Finding::not_available(
                    name,
                    recommended_text,
                    format!("{key} holds {text:?}"),
                )
            }
        },
        Err(why) => {
            return Finding::not_available(
                name,
                recommended_text,
                format!("{why} (a network namespace without it?)"),
            )
        }
    };
    let severity = if value < recommended {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let target = recommended.to_string();
    Finding::new(name, value.to_string(), recommended_text, severity, why)
        .with_fix(sysctl_command(key, &target))
        .with_change(sysctl_change(key, &target))
}

/// `min default max`: only the maximum is judged; the fix keeps the current minimum and default.
fn tcp_buffers(
    view: &dyn HostView,
    name: &'static str,
    key: &str,
    recommended: &str,
    why: &str,
) -> Finding {
    let text = match read_value(view, &sysctl_path(key)) {
        Ok(text) => text,
        Err(why) => {
            return Finding::not_available(
                name,
                recommended,
                format!("{why} (a network namespace without it?)"),
            )
        }
    };
    let values: Vec<u64> = text
        .split_whitespace()
        .filter_map(|word| word.parse().ok())
        .collect();
    let [minimum, default, maximum] = values[..] else {
        return Finding::not_available(
            name,
            recommended,
            format!("{key} holds {text:?}, not three numbers"),
        );
    };
    let current = format!("{minimum} {default} {maximum}");
    let severity = if maximum < SOCKET_BUFFER_MAX_RECOMMENDED {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let target = format!("{minimum} {default} {SOCKET_BUFFER_MAX_RECOMMENDED}");
    Finding::new(
        name,
        current,
        format!("max >= {SOCKET_BUFFER_MAX_RECOMMENDED} ({recommended})"),
        severity,
        why,
    )
    .with_fix(sysctl_command(key, &target))
    .with_change(sysctl_change(key, &target))
}
