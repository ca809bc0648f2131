//! Every check, and the order they are shown in. Each check returns exactly one [`Finding`]
//! under its name in [`CHECK_NAMES`] whatever the host looks like: a value that cannot be read
//! is a finding of its own (`not available`, with why), never an error of the run.

mod cpu;
mod disk;
mod filesystem;
mod io_uring;
mod irq;
mod memory;
mod network;
mod process;

use std::path::{Path, PathBuf};

use crate::finding::Finding;
use crate::view::HostView;

pub use filesystem::{data_mount, Mount};

/// What the checks judge the host against: the broker's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The data directory (absolute; it need not exist yet: its nearest existing ancestor is
    /// what the checks look at).
    pub data_dir: PathBuf,
    /// The cores the shards run on, one shard each.
    pub shard_cores: Vec<usize>,
    /// Whether the shards are pinned to `shard_cores` (`--cores`, or `--shards` within the
    /// available cores), or float (more shards than cores).
    pub shards_pinned: bool,
    /// io_uring buffer memory glommio registers per ring (`--io-memory-bytes`).
    pub io_memory_bytes: u64,
}

/// The name of every finding, in the order [`check_host`] returns them.
pub const CHECK_NAMES: &[&str] = &[
    "memlock",
    "open_files",
    "io_uring_disabled",
    "io_uring_setup",
    "seccomp",
    "fs_aio_max_nr",
    "cpu_governor",
    "cpu_idle",
    "transparent_hugepages",
    "transparent_hugepages_defrag",
    "vm_swappiness",
    "filesystem",
    "mount_options",
    "disk_scheduler",
    "disk_nomerges",
    "disk_read_ahead",
    "disk_write_cache",
    "disk_queue_depth",
    "disk_rotational",
    "nvme_queues",
    "nvme_io_poll",
    "clocksource",
    "irq_nic",
    "irq_nvme",
    "numa",
    "net_somaxconn",
    "net_tcp_max_syn_backlog",
    "net_rmem_max",
    "net_wmem_max",
    "net_tcp_rmem",
    "net_tcp_wmem",
];

/// Runs every check against the host.
pub fn check_host(view: &dyn HostView, options: &CheckOptions) -> Vec<Finding> {
    let mut findings = Vec::with_capacity(CHECK_NAMES.len());
    findings.extend(process::check(view, options));
    findings.extend(io_uring::check(view));
    findings.extend(cpu::check_frequency_and_idle(view, options));
    findings.extend(memory::check(view));
    let mount = filesystem::data_mount(view, &options.data_dir);
    findings.extend(filesystem::check(&mount));
    let disk = disk::data_disk(view, &mount);
    findings.extend(disk::check(view, &disk, options));
    findings.push(cpu::check_clocksource(view));
    findings.extend(irq::check(view, &disk, options));
    findings.push(cpu::check_numa(view, &disk, options));
    findings.extend(network::check(view));
    let names: Vec<&str> = findings.iter().map(|finding| finding.name).collect();
    assert_eq!(names, CHECK_NAMES, "every check reports once, in order");
    findings
}

/// A file's text, trimmed; the error says which file and why, for an operator.
fn read_value(view: &dyn HostView, path: &Path) -> Result<String, String> {
    view.read(path)
        .map(|text| text.trim().to_string())
        .map_err(|error| format!("cannot read {}: {error}", path.display()))
}

/// A file holding one unsigned number.
fn read_number(view: &dyn HostView, path: &Path) -> Result<u64, String> {
    let text = read_value(view, path)?;
    text.parse::<u64>()
        .map_err(|_| format!("{} holds {text:?}, not a number", path.display()))
}

/// The bracketed choice of a sysfs selector such as `always [madvise] never`.
fn selected(text: &str) -> Option<&str> {
    let start = text.find('[')?;
    let end = start + text[start..].find(']')?;
    Some(&text[start + 1..end])
}

/// The bracketed choice of a selector, or the whole text when it is a plain value.
pub(crate) fn selected_or_whole(text: &str) -> &str {
    selected(text).unwrap_or(text)
}

/// A CPU list as the kernel writes it (`0-3,8`), or empty text for none.
fn parse_cpu_list(text: &str) -> Result<Vec<usize>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    spate_protocol::core_list::parse_core_list(text)
}

/// A CPU list written the kernel's way, with ranges (`0-3,8`).
fn format_cpu_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut parts: Vec<String> = Vec::new();
    let mut index = 0;
    while index < sorted.len() {
        let first = sorted[index];
        let mut last = first;
        while index + 1 < sorted.len() && sorted[index + 1] == last + 1 {
            index += 1;
            last = sorted[index];
        }
        parts.push(if first == last {
            first.to_string()
        } else {
            format!("{first}-{last}")
        });
        index += 1;
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_round_trip_through_the_kernel_notation() {
        assert_eq!(parse_cpu_list("0-3,8").unwrap(), vec![0, 1, 2, 3, 8]);
        assert_eq!(parse_cpu_list("\n").unwrap(), Vec::<usize>::new());
        assert_eq!(format_cpu_list(&[8, 0, 1, 2, 3]), "0-3,8");
        assert_eq!(format_cpu_list(&[1, 3]), "1,3");
    }

    #[test]
    fn selectors_yield_the_bracketed_choice() {
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(selected("none"), None);
    }
}
