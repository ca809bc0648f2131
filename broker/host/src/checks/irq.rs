//! Where the NIC's and the data disk's NVMe queue interrupts land, against the shard cores:
//! `/proc/interrupts` names the lines, `/proc/irq/N/smp_affinity_list` says where each goes.
//!
//! Nothing here is applied by `--apply`: the NVMe driver manages its queue interrupts itself
//! (the kernel refuses writes to a managed IRQ's affinity), irqbalance undoes manual moves, and
//! where a NIC's interrupts belong (spare cores, or spread over the shards) is a layout
//! decision with no safe default; the findings print the commands instead.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::disk::DataDisk;
use super::{format_cpu_list, parse_cpu_list, read_value, CheckOptions};
use crate::finding::{Finding, Severity};
use crate::view::HostView;

/// One interrupt line of `/proc/interrupts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Interrupt {
    number: u32,
    name: String,
}

/// The numbered lines of `/proc/interrupts` and their names (the last word of each line).
fn interrupts(text: &str) -> Vec<Interrupt> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let (number, rest) = line.trim_start().split_once(':')?;
            let number = number.parse::<u32>().ok()?;
            let name = rest.split_whitespace().last()?.to_string();
            Some(Interrupt { number, name })
        })
        .collect()
}

/// Whether `name` mentions `word` as a whole word (`virtio1` in `virtio1-input.0`, not in
/// `virtio10-input.0`).
fn mentions(name: &str, word: &str) -> bool {
    if word.is_empty() {
        return false;
    }
    name.match_indices(word).any(|(start, _)| {
        let before = name[..start].chars().next_back();
        let after = name[start + word.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

pub fn check(view: &dyn HostView, disk: &DataDisk, options: &CheckOptions) -> Vec<Finding> {
    let table = read_value(view, Path::new("/proc/interrupts")).map(|text| interrupts(&text));
    vec![
        nic(view, &table, options),
        nvme(view, &table, disk, options),
    ]
}

/// The cores every IRQ in `numbers` may run on, by IRQ; unreadable ones are left out.
fn affinities(view: &dyn HostView, numbers: &BTreeSet<u32>) -> Vec<(u32, Vec<usize>)> {
    numbers
        .iter()
        .filter_map(|number| {
            let path = PathBuf::from(format!("/proc/irq/{number}/smp_affinity_list"));
            let cores = parse_cpu_list(&read_value(view, &path).ok()?).ok()?;
            Some((*number, cores))
        })
        .collect()
}

fn online_cores(view: &dyn HostView) -> Option<Vec<usize>> {
    parse_cpu_list(&read_value(view, Path::new("/sys/devices/system/cpu/online")).ok()?).ok()
}

fn nic(
    view: &dyn HostView,
    table: &Result<Vec<Interrupt>, String>,
    options: &CheckOptions,
) -> Finding {
    const NAME: &str = "irq_nic";
    let recommended = "on spare cores if any, else spread over the shard cores";
    let table = match table {
        Ok(table) => table,
        Err(why) => return Finding::not_available(NAME, recommended, why.clone()),
    };
    // Physical NICs have a `device` link; loopback, bridges and veths do not.
    let interfaces: Vec<(String, Vec<String>)> = view
        .list(Path::new("/sys/class/net"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|interface| {
            let device = view
                .resolve(&Path::new("/sys/class/net").join(&interface).join("device"))
                .ok()?;
            let device_name = device.file_name()?.to_string_lossy().into_owned();
            Some((interface.clone(), vec![interface, device_name]))
        })
        .collect();
    if interfaces.is_empty() {
        return Finding::not_available(
            NAME,
            recommended,
            "no network interface with a device under /sys/class/net (only virtual ones)",
        );
    }
    let numbers: BTreeSet<u32> = table
        .iter()
        .filter(|interrupt| {
            interfaces
                .iter()
                .any(|(_, words)| words.iter().any(|word| mentions(&interrupt.name, word)))
        })
        .map(|interrupt| interrupt.number)
        .collect();
    let names: Vec<&str> = interfaces
        .iter()
        .map(|(interface, _)| interface.as_str())
        .collect();
    if numbers.is_empty() {
        return Finding::not_available(
            NAME,
            recommended,
            format!(
                "no line of /proc/interrupts is named for {} (interrupts shared, or polled)",
                names.join(", ")
            ),
        );
    }
    let lines = affinities(view, &numbers);
    let shard_cores: BTreeSet<usize> = options.shard_cores.iter().copied().collect();
    let spare: Vec<usize> = online_cores(view)
        .unwrap_or_default()
        .into_iter()
        .filter(|core| !shard_cores.contains(core))
        .collect();
    let targets: BTreeSet<usize> = lines
        .iter()
        .flat_map(|(_, cores)| cores.iter().copied())
        .collect();
    let on_shards_only: Vec<u32> = lines
        .iter()
        .filter(|(_, cores)| {
            !cores.is_empty() && cores.iter().all(|core| shard_cores.contains(core))
        })
        .map(|(number, _)| *number)
        .collect();
    let current = format!(
        "{} IRQs of {} on cores {}",
        numbers.len(),
        names.join(", "),
        format_cpu_list(&targets.iter().copied().collect::<Vec<_>>())
    );
    let irq_list = on_shards_only
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    if !spare.is_empty() && !on_shards_only.is_empty() {
        let spare_text = format_cpu_list(&spare);
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Warn,
            format!(
                "cores {spare_text} run no shard, yet {} NIC interrupts land only on shard cores, where the \
                 softirq work of receiving packets takes time from requests",
                on_shards_only.len()
            ),
        )
        .with_fix(format!(
            "systemctl stop irqbalance (or IRQBALANCE_BANNED_CPULIST={}); for irq in {irq_list}; do echo {spare_text} > /proc/irq/$irq/smp_affinity_list; done",
            format_cpu_list(&options.shard_cores)
        ));
    }
    if targets.len() == 1 && numbers.len() > 1 && shard_cores.len() > 1 {
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Warn,
            "every NIC interrupt lands on one core: that shard does the whole host's packet processing",
        )
        .with_fix("start irqbalance, or give each NIC queue's IRQ its own shard core: echo CORE > /proc/irq/N/smp_affinity_list");
    }
    let why = if spare.is_empty() {
        "every core runs a shard, and the NIC's interrupts are spread over them: the best this layout allows"
    } else {
        "the NIC's interrupts are off the shard cores or spread"
    };
    Finding::new(NAME, current, recommended, Severity::Ok, why)
}

fn nvme(
    view: &dyn HostView,
    table: &Result<Vec<Interrupt>, String>,
    disk: &DataDisk,
    options: &CheckOptions,
) -> Finding {
    const NAME: &str = "irq_nvme";
    let recommended = "an I/O queue interrupt for every shard core";
    let disk = match disk {
        Ok(disk) => disk,
        Err(why) => {
            return Finding::not_available(
                NAME,
                recommended,
                format!("no block device under the data directory: {why}"),
            )
        }
    };
    let Some(controller) = disk.nvme_controller() else {
        return Finding::not_available(NAME, recommended, format!("{} is not NVMe", disk.name));
    };
    let table = match table {
        Ok(table) => table,
        Err(why) => return Finding::not_available(NAME, recommended, why.clone()),
    };
    // nvme0q0 is the admin queue; nvme0q1.. are the I/O queues.
    let prefix = format!("{controller}q");
    let numbers: BTreeSet<u32> = table
        .iter()
        .filter(|interrupt| {
            interrupt
                .name
                .strip_prefix(&prefix)
                .is_some_and(|queue| queue.parse::<u32>().is_ok_and(|queue| queue > 0))
        })
        .map(|interrupt| interrupt.number)
        .collect();
    if numbers.is_empty() {
        return Finding::not_available(
            NAME,
            recommended,
            format!("no {prefix}N lines in /proc/interrupts"),
        );
    }
    let lines = affinities(view, &numbers);
    let covered: BTreeSet<usize> = lines
        .iter()
        .flat_map(|(_, cores)| cores.iter().copied())
        .collect();
    let uncovered: Vec<usize> = options
        .shard_cores
        .iter()
        .copied()
        .filter(|core| !covered.contains(core))
        .collect();
    let current = format!(
        "{} I/O queue IRQs of {controller}, on cores {}",
        numbers.len(),
        format_cpu_list(&covered.iter().copied().collect::<Vec<_>>())
    );
    if uncovered.is_empty() {
        return Finding::new(NAME, current, recommended, Severity::Ok, "each shard core's I/O completes on an interrupt aimed at that core (the driver's managed affinity)");
    }
    Finding::new(
        NAME,
        current,
        recommended,
        Severity::Warn,
        format!(
            "shard cores {} have no NVMe queue interrupt of their own: their I/O completes on another core, \
             which then wakes them",
            format_cpu_list(&uncovered)
        ),
    )
    .with_fix("the nvme driver sets these (managed IRQs, not movable by hand): see nvme_queues; fewer shards, or a drive with more I/O queues")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupt_names_are_the_last_word_of_numbered_lines() {
        let text = "           CPU0       CPU1\n  24:   10   0  PCI-MSIX-0000:01:00.0   1-edge      nvme0q1\n NMI:  0 0  Non-maskable interrupts\n";
        assert_eq!(
            interrupts(text),
            vec![Interrupt {
                number: 24,
                name: "nvme0q1".into()
            }]
        );
    }

    #[test]
    fn mentions_match_whole_words_only() {
        assert!(mentions("virtio1-input.0", "virtio1"));
        assert!(!mentions("virtio10-input.0", "virtio1"));
        assert!(mentions("mlx5_comp0@pci:0000:3b:00.0", "0000:3b:00.0"));
        assert!(mentions("eth0-TxRx-0", "eth0"));
    }
}
