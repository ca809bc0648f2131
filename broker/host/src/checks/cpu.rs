//! The shard cores: frequency governor, idle states, the clock source every timestamp reads,
//! and the NUMA nodes the cores (and the data disk) sit on.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::disk::DataDisk;
use super::{format_cpu_list, parse_cpu_list, read_number, read_value, CheckOptions};
use crate::finding::{sysfs_change, Finding, Severity};
use crate::view::HostView;

/// Idle states whose exit latency is above this are too deep for a shard core: a shard that
/// sleeps between requests pays the wake-up on the next one. C1/C1E are 1 to 10 µs; C6 is
/// around 100 µs.
const IDLE_EXIT_LATENCY_MAX_US: u64 = 20;

pub fn check_frequency_and_idle(view: &dyn HostView, options: &CheckOptions) -> Vec<Finding> {
    vec![governor(view, options), idle(view, options)]
}

fn cpu_directory(core: usize) -> PathBuf {
    PathBuf::from(format!("/sys/devices/system/cpu/cpu{core}"))
}

fn governor(view: &dyn HostView, options: &CheckOptions) -> Finding {
    const NAME: &str = "cpu_governor";
    let mut cores_by_governor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for &core in &options.shard_cores {
        let path = cpu_directory(core).join("cpufreq/scaling_governor");
        if let Ok(governor) = read_value(view, &path) {
            cores_by_governor.entry(governor).or_default().push(core);
        }
    }
    if cores_by_governor.is_empty() {
        return Finding::not_available(
            NAME,
            "performance",
            "no cpufreq/scaling_governor for the shard cores: a VM, or firmware that owns the frequency \
             (set the BIOS power profile to performance)",
        );
    }
    let current = describe_groups(&cores_by_governor);
    let slow: Vec<usize> = cores_by_governor
        .iter()
        .filter(|(governor, _)| governor.as_str() != "performance")
        .flat_map(|(_, cores)| cores.iter().copied())
        .collect();
    let severity = if slow.is_empty() {
        Severity::Ok
    } else {
        Severity::Warn
    };
    let changes = slow
        .iter()
        .map(|core| {
            let path = cpu_directory(*core).join("cpufreq/scaling_governor");
            sysfs_change(&path.display().to_string(), "performance")
        })
        .collect();
    Finding::new(
        NAME,
        current,
        "performance",
        severity,
        "a shard core polls its rings and runs in bursts; powersave/schedutil ramp the clock up after \
         the burst has begun, which adds latency to every request",
    )
    .with_fix(format!("cpupower -c {} frequency-set -g performance", format_cpu_list(&slow)))
    .with_changes(changes)
}

fn idle(view: &dyn HostView, options: &CheckOptions) -> Finding {
    const NAME: &str = "cpu_idle";
    let recommended = format!("no idle state deeper than {IDLE_EXIT_LATENCY_MAX_US} µs exit latency enabled on shard cores");
    let driver = match read_value(
        view,
        Path::new("/sys/devices/system/cpu/cpuidle/current_driver"),
    ) {
        Ok(driver) => driver,
        Err(why) => {
            return Finding::not_available(NAME, recommended, format!("no cpuidle driver ({why})"))
        }
    };
    let max_cstate = (driver == "intel_idle")
        .then(|| {
            read_value(
                view,
                Path::new("/sys/module/intel_idle/parameters/max_cstate"),
            )
            .ok()
        })
        .flatten();
    // The deepest enabled state on each shard core, by its exit latency.
    let mut deep: Vec<(usize, String, u64)> = Vec::new();
    let mut deepest: Option<(String, u64)> = None;
    for &core in &options.shard_cores {
        let directory = cpu_directory(core).join("cpuidle");
        let Ok(states) = view.list(&directory) else {
            continue;
        };
        for state in states.iter().filter(|name| name.starts_with("state")) {
            let state_directory = directory.join(state);
            let disabled =
                read_value(view, &state_directory.join("disable")).is_ok_and(|value| value == "1");
            let Ok(latency_us) = read_number(view, &state_directory.join("latency")) else {
                continue;
            };
            if disabled {
                continue;
            }
            let name =
                read_value(view, &state_directory.join("name")).unwrap_or_else(|_| state.clone());
            if deepest
                .as_ref()
                .is_none_or(|(_, deepest_us)| latency_us > *deepest_us)
            {
                deepest = Some((name.clone(), latency_us));
            }
            if latency_us > IDLE_EXIT_LATENCY_MAX_US {
                deep.push((core, name, latency_us));
            }
        }
    }
    let mut current = format!("driver {driver}");
    if let Some(max_cstate) = &max_cstate {
        current.push_str(&format!(", intel_idle.max_cstate {max_cstate}"));
    }
    match &deepest {
        Some((name, latency_us)) => {
            current.push_str(&format!(", deepest enabled {name} ({latency_us} µs)"))
        }
        None => current.push_str(", no idle states listed for the shard cores"),
    }
    let severity = if deep.is_empty() {
        Severity::Ok
    } else {
        Severity::Warn
    };
    let deep_cores: Vec<usize> = deep.iter().map(|(core, _, _)| *core).collect();
    // Not applied by --apply: keeping cores out of deep sleep raises power draw and heat for
    // good, and with SMT siblings or turbo budgets it can slow other cores; the operator
    // chooses that trade (and makes it permanent on the kernel command line).
    Finding::new(
        NAME,
        current,
        recommended,
        severity,
        "waking from a deep C-state takes up to hundreds of µs, paid by the first request after an idle \
         moment; shallow states keep wake-ups at a few µs for more power",
    )
    .with_fix(format!(
        "cpupower -c {} idle-set -D {IDLE_EXIT_LATENCY_MAX_US}; for good: kernel command line \
         intel_idle.max_cstate=1 processor.max_cstate=1",
        format_cpu_list(&deep_cores)
    ))
}

/// `performance on 0-3; powersave on 4-7`.
fn describe_groups(groups: &BTreeMap<String, Vec<usize>>) -> String {
    groups
        .iter()
        .map(|(value, cores)| format!("{value} on {}", format_cpu_list(cores)))
        .collect::<Vec<_>>()
        .join("; ")
}

pub fn check_clocksource(view: &dyn HostView) -> Finding {
    const NAME: &str = "clocksource";
    let directory = Path::new("/sys/devices/system/clocksource/clocksource0");
    let current = match read_value(view, &directory.join("current_clocksource")) {
        Ok(current) => current,
        Err(why) => return Finding::not_available(NAME, "tsc", why),
    };
    let available = read_value(view, &directory.join("available_clocksource")).unwrap_or_default();
    let tsc_available = available.split_whitespace().any(|source| source == "tsc");
    // kvm-clock and arm's arch_sys_counter are read in the vDSO like tsc: fast enough.
    let (severity, why) = match current.as_str() {
        "tsc" => (Severity::Ok, "read in user space (vDSO) in a few ns".to_string()),
        "kvm-clock" | "arch_sys_counter" => (
            Severity::Ok,
            format!("{current} is read in user space (vDSO) too; tsc is a little cheaper where the host offers it"),
        ),
        _ => (
            Severity::Warn,
            format!(
                "{current} is not readable from user space: every clock read (timestamps, timers, latency \
                 histograms) is a system call{}",
                if tsc_available { "" } else { "; tsc is not offered (unstable TSC?), see dmesg" }
            ),
        ),
    };
    // Not applied by --apply: the kernel moved off tsc for a reason it logged (an unstable
    // TSC); forcing it back is for an operator who has read that reason.
    let finding = Finding::new(NAME, current, "tsc", severity, why);
    if tsc_available {
        finding.with_fix("echo tsc > /sys/devices/system/clocksource/clocksource0/current_clocksource (for good: clocksource=tsc on the kernel command line)")
    } else {
        finding.with_fix(
            "check dmesg for 'clocksource' and 'tsc unstable'; BIOS: enable invariant TSC",
        )
    }
}

pub fn check_numa(view: &dyn HostView, disk: &DataDisk, options: &CheckOptions) -> Finding {
    const NAME: &str = "numa";
    let recommended = "shard cores on one node, the node of the data disk";
    let nodes_directory = Path::new("/sys/devices/system/node");
    let node_names = match view.list(nodes_directory) {
        Ok(names) => names,
        Err(error) => {
            return Finding::not_available(
                NAME,
                recommended,
                format!(
                    "cannot list {}: {error} (kernel without NUMA)",
                    nodes_directory.display()
                ),
            )
        }
    };
    let mut node_of_core: BTreeMap<usize, u64> = BTreeMap::new();
    let mut node_count = 0;
    for name in node_names {
        let Some(node) = name
            .strip_prefix("node")
            .and_then(|number| number.parse::<u64>().ok())
        else {
            continue;
        };
        let Ok(text) = read_value(view, &nodes_directory.join(&name).join("cpulist")) else {
            continue;
        };
        let Ok(cores) = parse_cpu_list(&text) else {
            continue;
        };
        node_count += 1;
        for core in cores {
            node_of_core.insert(core, node);
        }
    }
    if node_count == 0 {
        return Finding::not_available(
            NAME,
            recommended,
            "no node*/cpulist under /sys/devices/system/node",
        );
    }
    let missing: Vec<usize> = options
        .shard_cores
        .iter()
        .copied()
        .filter(|core| !node_of_core.contains_key(core))
        .collect();
    let mut shard_nodes: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    for core in &options.shard_cores {
        if let Some(node) = node_of_core.get(core) {
            shard_nodes.entry(*node).or_default().push(*core);
        }
    }
    let disk_node = disk.as_ref().ok().and_then(|disk| disk.numa_node(view));
    let mut current = format!(
        "{node_count} node(s); shard cores {}",
        shard_nodes
            .iter()
            .map(|(node, cores)| format!("{} on node {node}", format_cpu_list(cores)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(node) = disk_node {
        current.push_str(&format!("; data disk on node {node}"));
    }
    if !missing.is_empty() {
        return Finding::new(
            NAME,
            format!(
                "{current}; cores {} are on no node",
                format_cpu_list(&missing)
            ),
            recommended,
            Severity::Fail,
            "--cores names CPUs this host does not have online: pinning those shards fails",
        )
        .with_fix("pick --cores from /sys/devices/system/cpu/online (lscpu)");
    }
    if shard_nodes.len() > 1 {
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Warn,
            "shards on several nodes reach each other's memory and the disk across the interconnect; \
             cross-shard forwards and the data disk's DMA pay remote-memory latency",
        )
        .with_fix("run one broker per node: --cores from one node's cpulist (lscpu -e), its data dir on that node's NVMe");
    }
    let shard_node = shard_nodes.keys().next().copied();
    if let (Some(disk_node), Some(shard_node)) = (disk_node, shard_node) {
        if disk_node != shard_node {
            return Finding::new(
                NAME,
                current,
                recommended,
                Severity::Warn,
                "the data disk hangs off another node's PCIe root: every I/O crosses the interconnect",
            )
            .with_fix(format!("--cores from node {disk_node} (cat /sys/devices/system/node/node{disk_node}/cpulist)"));
        }
    }
    let why = if options.shards_pinned {
        "every shard core is on one node"
    } else {
        "shards are not pinned (more shards than cores); every core is on one node"
    };
    Finding::new(NAME, current, recommended, Severity::Ok, why)
}
