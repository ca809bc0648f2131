//! Memory management that stalls a shard: transparent huge pages (compaction and khugepaged on
//! the shard cores) and swapping.

use std::path::Path;

use super::{read_number, read_value, selected};
use crate::finding::{sysctl_change, sysctl_command, sysfs_change, Finding, Severity};
use crate::view::HostView;

const THP_ENABLED_PATH: &str = "/sys/kernel/mm/transparent_hugepage/enabled";
const THP_DEFRAG_PATH: &str = "/sys/kernel/mm/transparent_hugepage/defrag";
/// What `rpk redpanda tune swappiness` sets: swap only to avoid the OOM killer.
const SWAPPINESS_RECOMMENDED: u64 = 1;
/// Above this, the kernel swaps anonymous memory (the broker's buffers and indexes) readily.
const SWAPPINESS_WARN_ABOVE: u64 = 10;

pub fn check(view: &dyn HostView) -> Vec<Finding> {
    vec![thp_enabled(view), thp_defrag(view), swappiness(view)]
}

fn thp_enabled(view: &dyn HostView) -> Finding {
    const NAME: &str = "transparent_hugepages";
    let text = match read_value(view, Path::new(THP_ENABLED_PATH)) {
        Ok(text) => text,
        Err(why) => {
            return Finding::not_available(NAME, "madvise", format!("{why} (kernel without THP)"))
        }
    };
    let current = selected(&text).unwrap_or(&text).to_string();
    let severity = if current == "always" {
        Severity::Warn
    } else {
        Severity::Ok
    };
    Finding::new(
        NAME,
        current,
        "madvise (or never)",
        severity,
        "with `always` every large anonymous mapping is a huge page candidate: page faults may stall in \
         compaction and khugepaged rewrites memory behind the shards; the broker asks for no huge pages, \
         so `always` buys it nothing",
    )
    .with_fix(format!("echo madvise > {THP_ENABLED_PATH}"))
    .with_change(sysfs_change(THP_ENABLED_PATH, "madvise"))
}

fn thp_defrag(view: &dyn HostView) -> Finding {
    const NAME: &str = "transparent_hugepages_defrag";
    let text = match read_value(view, Path::new(THP_DEFRAG_PATH)) {
        Ok(text) => text,
        Err(why) => {
            return Finding::not_available(NAME, "madvise", format!("{why} (kernel without THP)"))
        }
    };
    let current = selected(&text).unwrap_or(&text).to_string();
    let severity = if current == "always" {
        Severity::Warn
    } else {
        Severity::Ok
    };
    Finding::new(
        NAME,
        current,
        "madvise, defer+madvise, defer or never",
        severity,
        "`always` makes a page fault compact memory synchronously to find a huge page: a stall of \
         milliseconds on the faulting shard",
    )
    .with_fix(format!("echo madvise > {THP_DEFRAG_PATH}"))
    .with_change(sysfs_change(THP_DEFRAG_PATH, "madvise"))
}

fn swappiness(view: &dyn HostView) -> Finding {
    const NAME: &str = "vm_swappiness";
    let recommended = SWAPPINESS_RECOMMENDED.to_string();
    let value = match read_number(view, Path::new("/proc/sys/vm/swappiness")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let severity = if value > SWAPPINESS_WARN_ABOVE {
        Severity::Warn
    } else {
        Severity::Ok
    };
    Finding::new(
        NAME,
        value.to_string(),
        recommended.clone(),
        severity,
        "the broker keeps no data in the page cache (O_DIRECT), so its memory is all anonymous; with a \
         high swappiness the kernel swaps it out to keep page cache, and a shard then waits on a swap-in",
    )
    .with_fix(sysctl_command("vm.swappiness", &recommended))
    .with_change(sysctl_change("vm.swappiness", &recommended))
}
