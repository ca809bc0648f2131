//! Whether io_uring can be used at all: the kernel's switch, a real `io_uring_setup`, seccomp
//! (Docker's default profile blocks the io_uring calls), and the Linux AIO limit that tools
//! beside the broker share.

use std::path::Path;

use super::{read_number, read_value};
use crate::finding::{sysctl_change, sysctl_command, Finding, Severity};
use crate::view::HostView;

/// What `rpk redpanda tune aio_events` sets; the kernel's default is 65536.
const AIO_MAX_NR_RECOMMENDED: u64 = 1_048_576;
const AIO_MAX_NR_KERNEL_DEFAULT: u64 = 65_536;

pub fn check(view: &dyn HostView) -> Vec<Finding> {
    let probe = view.probe_io_uring();
    vec![
        io_uring_disabled(view),
        io_uring_setup(&probe),
        seccomp(view, &probe),
        aio_max_nr(view),
    ]
}

fn io_uring_disabled(view: &dyn HostView) -> Finding {
    const NAME: &str = "io_uring_disabled";
    let path = Path::new("/proc/sys/kernel/io_uring_disabled");
    if !view.exists(path) {
        return Finding::new(
            NAME,
            "absent",
            "0",
            Severity::Ok,
            "kernels before 6.6 have no kernel.io_uring_disabled: io_uring is on",
        );
    }
    let value = match read_number(view, path) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, "0", why),
    };
    let (severity, why) = match value {
        0 => (
            Severity::Ok,
            "io_uring is enabled for every process".to_string(),
        ),
        1 => {
            let group = read_value(view, Path::new("/proc/sys/kernel/io_uring_group"))
                .unwrap_or_else(|_| "-1".to_string());
            (
                Severity::Warn,
                format!(
                    "io_uring is limited to root and group {group} (kernel.io_uring_group); a broker run \
                     as another user cannot start"
                ),
            )
        }
        _ => (
            Severity::Fail,
            "io_uring is disabled for every process: the broker cannot start".to_string(),
        ),
    };
    // Not applied by --apply: someone turned io_uring off on purpose (it is a kernel attack
    // surface some hardening guides close), so turning it back on is their decision.
    Finding::new(NAME, value.to_string(), "0", severity, why)
        .with_fix(sysctl_command("kernel.io_uring_disabled", "0"))
}

fn io_uring_setup(probe: &std::io::Result<()>) -> Finding {
    const NAME: &str = "io_uring_setup";
    match probe {
        Ok(()) => Finding::new(
            NAME,
            "works",
            "works",
            Severity::Ok,
            "a one-entry ring was set up and closed",
        ),
        Err(error) => {
            let why = match error.raw_os_error() {
                Some(38) => {
                    "ENOSYS: the kernel lacks io_uring (before 5.1, or CONFIG_IO_URING=n), or a seccomp filter answers ENOSYS"
                }
                Some(1) => "EPERM: kernel.io_uring_disabled, a seccomp filter (Docker's default profile) or an LSM refused it",
                Some(12) => "ENOMEM: the memlock limit or memory cgroup is too small for a ring",
                _ => "the kernel refused to set up a ring",
            };
            Finding::new(NAME, format!("fails: {error}"), "works", Severity::Fail, format!("{why}; the broker cannot start"))
                .with_fix("see io_uring_disabled and seccomp; containers: run with a seccomp profile allowing io_uring_setup, io_uring_enter, io_uring_register (tuning/README.md, Containers)")
        }
    }
}

/// The files whose presence says "inside a container" (Docker, Podman).
const CONTAINER_MARKERS: &[&str] = &["/.dockerenv", "/run/.containerenv"];
/// Words in PID 1's cgroup paths that say the same (Docker, Kubernetes, containerd, LXC).
const CONTAINER_CGROUP_WORDS: &[&str] = &["docker", "kubepods", "containerd", "lxc", "libpod"];

/// Why we think we run in a container, if we do.
fn container_evidence(view: &dyn HostView) -> Option<String> {
    if let Some(marker) = CONTAINER_MARKERS
        .iter()
        .find(|marker| view.exists(Path::new(marker)))
    {
        return Some(format!("{marker} exists"));
    }
    let cgroup = view.read(Path::new("/proc/1/cgroup")).ok()?;
    CONTAINER_CGROUP_WORDS
        .iter()
        .find(|word| cgroup.contains(*word))
        .map(|word| format!("/proc/1/cgroup names {word}"))
}

fn seccomp(view: &dyn HostView, probe: &std::io::Result<()>) -> Finding {
    const NAME: &str = "seccomp";
    let recommended = "no filter, or one that allows io_uring_setup/enter/register";
    let status = match read_value(view, Path::new("/proc/self/status")) {
        Ok(status) => status,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let mode = status
        .lines()
        .find_map(|line| line.strip_prefix("Seccomp:"))
        .map(|value| value.trim().to_string());
    let Some(mode) = mode else {
        return Finding::not_available(
            NAME,
            recommended,
            "/proc/self/status has no Seccomp field (kernel without CONFIG_SECCOMP)",
        );
    };
    let container = container_evidence(view);
    let place = match &container {
        Some(evidence) => format!("in a container ({evidence})"),
        None => "not in a container".to_string(),
    };
    let mode_text = match mode.as_str() {
        "0" => "off",
        "1" => "strict",
        "2" => "filter",
        _ => "unknown",
    };
    let current = format!("mode {mode} ({mode_text}), {place}");
    let fix = "docker/podman run --security-opt seccomp=/path/to/spate-seccomp.json (the default profile plus \
               io_uring_setup, io_uring_enter, io_uring_register); Kubernetes: a Localhost seccompProfile";
    match (mode.as_str(), probe) {
        ("0", _) => Finding::new(NAME, current, recommended, Severity::Ok, "no seccomp filter"),
        (_, Ok(())) => Finding::new(
            NAME,
            current,
            recommended,
            Severity::Ok,
            "a seccomp filter is on, and it let io_uring_setup through",
        ),
        (_, Err(_)) => Finding::new(
            NAME,
            current,
            recommended,
            Severity::Fail,
            "a seccomp filter is on and io_uring_setup failed: Docker's default profile (since 25.0) and \
             containerd's RuntimeDefault (since 2.0, so Kubernetes) block the io_uring calls",
        )
        .with_fix(fix),
    }
}

fn aio_max_nr(view: &dyn HostView) -> Finding {
    const NAME: &str = "fs_aio_max_nr";
    let recommended = format!(">= {AIO_MAX_NR_RECOMMENDED}");
    let value = match read_number(view, Path::new("/proc/sys/fs/aio-max-nr")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let severity = if value < AIO_MAX_NR_KERNEL_DEFAULT {
        Severity::Warn
    } else {
        Severity::Ok
    };
    let value_text = AIO_MAX_NR_RECOMMENDED.to_string();
    Finding::new(
        NAME,
        value.to_string(),
        recommended,
        severity,
        "the broker's I/O is io_uring and does not count against it; Linux AIO users beside it (fio \
         --ioengine=libaio when comparing with `spate-broker iotune`, Seastar services) share this \
         host-wide limit, so it is flagged only below the kernel default",
    )
    .with_fix(sysctl_command("fs.aio-max-nr", &value_text))
    .with_change(sysctl_change("fs.aio-max-nr", &value_text))
}
