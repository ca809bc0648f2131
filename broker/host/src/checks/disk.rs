//! The data directory's block device: from the mount's major:minor to `/sys/dev/block/M:m`,
//! up from a partition to its whole disk and down from a device-mapper or md device to its
//! first member, then the queue settings of that disk and, for NVMe, its queues and polling.

use std::path::{Path, PathBuf};

use super::filesystem::DataMount;
use super::{read_number, read_value, selected, CheckOptions};
use crate::finding::{queue_change, Finding, Severity};
use crate::view::HostView;

/// Device-mapper and md stacks deeper than this are not followed.
const STACK_DEPTH_MAX: usize = 4;
/// Read-ahead above this (KiB) is flagged: O_DIRECT skips it, so it only makes other buffered
/// readers of the disk read more than they asked for.
const READ_AHEAD_KB_WARN_ABOVE: u64 = 1024;
const READ_AHEAD_KB_RECOMMENDED: &str = "128";
/// A queue shallower than this (requests) holds back the I/O the shards keep in flight.
const QUEUE_DEPTH_MIN: u64 = 64;

/// The whole disk under the data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// Kernel name (`nvme0n1`, `vda`).
    pub name: String,
    /// Its sysfs directory (`/sys/devices/.../block/nvme0n1`).
    pub sys_path: PathBuf,
    /// How it was reached (`nvme0n1p2 -> nvme0n1`).
    pub path_taken: String,
}

pub type DataDisk = Result<Disk, String>;

impl Disk {
    pub fn is_nvme(&self) -> bool {
        self.name.starts_with("nvme")
    }

    /// The NUMA node of the device's PCIe function, if the kernel says.
    pub fn numa_node(&self, view: &dyn HostView) -> Option<u64> {
        ["device/numa_node", "device/device/numa_node"]
            .iter()
            .find_map(|relative| read_value(view, &self.sys_path.join(relative)).ok())
            .and_then(|text| text.parse::<i64>().ok())
            .and_then(|node| u64::try_from(node).ok())
    }

    /// The NVMe controller (`nvme0` for `nvme0n1`, `nvme0c0n1`...).
    pub fn nvme_controller(&self) -> Option<String> {
        let rest = self.name.strip_prefix("nvme")?;
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        (!digits.is_empty()).then(|| format!("nvme{digits}"))
    }

    /// A paravirtual disk (virtio, Xen), whose rotational flag says little.
    fn is_virtual(&self) -> bool {
        self.name.starts_with("vd") || self.name.starts_with("xvd")
    }

    fn queue(&self, attribute: &str) -> PathBuf {
        self.sys_path.join("queue").join(attribute)
    }

    /// What kind of disk the name says it is, for "not NVMe" findings.
    fn kind(&self) -> &'static str {
        let name = self.name.as_str();
        if name.starts_with("vd") {
            "a virtio disk"
        } else if name.starts_with("xvd") {
            "a Xen disk"
        } else if name.starts_with("sd") {
            "a SCSI/SATA/SAS disk"
        } else if name.starts_with("loop") {
            "a loop device"
        } else if name.starts_with("nbd") || name.starts_with("rbd") {
            "a network block device"
        } else if name.starts_with("md") || name.starts_with("dm-") {
            "a software RAID or device-mapper device"
        } else {
            "not NVMe"
        }
    }
}

/// Finds the whole disk under the data directory's mount.
pub fn data_disk(view: &dyn HostView, mount: &DataMount) -> DataDisk {
    let mount = mount.as_ref().map_err(Clone::clone)?;
    if mount.major == 0 {
        return Err(format!(
            "{} ({}) has no block device (device {}:{})",
            mount.mount_point.display(),
            mount.file_system,
            mount.major,
            mount.minor
        ));
    }
    let link = PathBuf::from(format!("/sys/dev/block/{}:{}", mount.major, mount.minor));
    let mut device = view
        .resolve(&link)
        .map_err(|error| format!("cannot resolve {}: {error}", link.display()))?;
    let mut path_taken = vec![file_name(&device)];
    for _ in 0..STACK_DEPTH_MAX {
        if view.exists(&device.join("partition")) {
            device = device.parent().map(Path::to_path_buf).unwrap_or(device);
            path_taken.push(file_name(&device));
        }
        // A device-mapper or md device has its members under slaves/; the first one stands for
        // them (a stack is usually built of alike devices).
        let members = view.list(&device.join("slaves")).unwrap_or_default();
        let Some(member) = members.first() else { break };
        let member_link = PathBuf::from("/sys/class/block").join(member);
        device = view
            .resolve(&member_link)
            .map_err(|error| format!("cannot resolve {}: {error}", member_link.display()))?;
        path_taken.push(file_name(&device));
    }
    Ok(Disk {
        name: file_name(&device),
        sys_path: device,
        path_taken: path_taken.join(" -> "),
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn check(view: &dyn HostView, disk: &DataDisk, options: &CheckOptions) -> Vec<Finding> {
    let disk = match disk {
        Ok(disk) => disk,
        Err(why) => {
            let why = format!("no block device under the data directory: {why}");
            return vec![
                Finding::not_available("disk_scheduler", "none", why.clone()),
                Finding::not_available("disk_nomerges", "2", why.clone()),
                Finding::not_available("disk_read_ahead", READ_AHEAD_KB_RECOMMENDED, why.clone()),
                Finding::not_available("disk_write_cache", "as the device reports", why.clone()),
                Finding::not_available(
                    "disk_queue_depth",
                    format!(">= {QUEUE_DEPTH_MIN}"),
                    why.clone(),
                ),
                Finding::not_available("disk_rotational", "0", why.clone()),
                Finding::not_available("nvme_queues", "one per shard", why.clone()),
                Finding::not_available("nvme_io_poll", "1 where polling queues exist", why),
            ];
        }
    };
    let rotational = read_number(view, &disk.queue("rotational"));
    // Hypervisors often leave a virtual disk marked rotational whatever backs it; it is
    // scheduled by the host, so it is tuned as flash.
    let spinning = rotational.as_ref().is_ok_and(|value| *value == 1) && !disk.is_virtual();
    vec![
        scheduler(view, disk, spinning),
        nomerges(view, disk, spinning),
        read_ahead(view, disk),
        write_cache(view, disk),
        queue_depth(view, disk),
        rotational_finding(disk, rotational),
        nvme_queues(view, disk, options),
        nvme_io_poll(view, disk),
    ]
}

fn scheduler(view: &dyn HostView, disk: &Disk, spinning: bool) -> Finding {
    const NAME: &str = "disk_scheduler";
    let recommended = if spinning { "mq-deadline" } else { "none" };
    let text = match read_value(view, &disk.queue("scheduler")) {
        Ok(text) => text,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let current = selected(&text).unwrap_or(&text).to_string();
    let severity = if current == recommended {
        Severity::Ok
    } else {
        Severity::Warn
    };
    let why = if spinning {
        "a spinning disk gains from deadline ordering; it is not what Spate is built for (see disk_rotational)"
    } else {
        "a flash device (or a virtual disk the hypervisor schedules) gains nothing from reordering; a \
         scheduler only spends CPU and adds queueing delay to every O_DIRECT write and fdatasync"
    };
    Finding::new(
        NAME,
        format!("{current} ({})", disk.name),
        recommended,
        severity,
        why,
    )
    .with_fix(format!(
        "echo {recommended} > /sys/block/{}/queue/scheduler",
        disk.name
    ))
    .with_change(queue_change(&disk.name, "scheduler", recommended))
}

fn nomerges(view: &dyn HostView, disk: &Disk, spinning: bool) -> Finding {
    const NAME: &str = "disk_nomerges";
    let recommended = if spinning { "0" } else { "2" };
    let value = match read_number(view, &disk.queue("nomerges")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let severity = if spinning || value == 2 {
        Severity::Ok
    } else {
        Severity::Warn
    };
    Finding::new(
        NAME,
        value.to_string(),
        recommended,
        severity,
        "the broker already writes whole batches; on flash, looking for requests to merge is CPU spent \
         on every I/O for nothing (2 turns the search off, as rpk's disk tuner does)",
    )
    .with_fix(format!("echo {recommended} > /sys/block/{}/queue/nomerges", disk.name))
    .with_change(queue_change(&disk.name, "nomerges", recommended))
}

fn read_ahead(view: &dyn HostView, disk: &Disk) -> Finding {
    const NAME: &str = "disk_read_ahead";
    let recommended = format!("<= {READ_AHEAD_KB_WARN_ABOVE} KiB ({READ_AHEAD_KB_RECOMMENDED})");
    let value = match read_number(view, &disk.queue("read_ahead_kb")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let severity = if value > READ_AHEAD_KB_WARN_ABOVE {
        Severity::Warn
    } else {
        Severity::Ok
    };
    Finding::new(
        NAME,
        format!("{value} KiB"),
        recommended,
        severity,
        "segments are read with O_DIRECT, which skips read-ahead; a large value only makes buffered \
         readers of the same disk (the catalog, tools) read and cache more than they use",
    )
    .with_fix(format!("echo {READ_AHEAD_KB_RECOMMENDED} > /sys/block/{}/queue/read_ahead_kb", disk.name))
    .with_change(queue_change(&disk.name, "read_ahead_kb", READ_AHEAD_KB_RECOMMENDED))
}

fn write_cache(view: &dyn HostView, disk: &Disk) -> Finding {
    const NAME: &str = "disk_write_cache";
    let recommended = "as the device reports (never force write through)";
    let value = match read_value(view, &disk.queue("write_cache")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let why = if value == "write back" {
        "the device has a volatile cache: each fdatasync sends a cache flush, which is what makes an \
         acknowledged record durable; do not set `write through` to skip the flush unless the drive has \
         power-loss protection (enterprise NVMe with PLP usually reports write through by itself)"
    } else {
        "no volatile cache reported (power-loss protected, or the cache is off): fdatasync needs no flush"
    };
    // Never changed: the only change there is would make fdatasync lie.
    Finding::new(NAME, value, recommended, Severity::Ok, why)
}

fn queue_depth(view: &dyn HostView, disk: &Disk) -> Finding {
    const NAME: &str = "disk_queue_depth";
    let recommended = format!(">= {QUEUE_DEPTH_MIN}");
    let value = match read_number(view, &disk.queue("nr_requests")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let severity = if value < QUEUE_DEPTH_MIN {
        Severity::Warn
    } else {
        Severity::Ok
    };
    // Not applied by --apply: with no scheduler, nr_requests cannot exceed the hardware's tag
    // depth, and the kernel refuses a larger value; the operator picks what the device allows.
    Finding::new(
        NAME,
        format!("{value} requests"),
        recommended,
        severity,
        "every shard keeps many O_DIRECT writes and reads in flight; a shallow queue makes them wait in \
         the kernel instead of in the device",
    )
    .with_fix(format!("echo 256 > /sys/block/{}/queue/nr_requests (the kernel refuses more than the device's tags)", disk.name))
}

fn rotational_finding(disk: &Disk, rotational: Result<u64, String>) -> Finding {
    const NAME: &str = "disk_rotational";
    let value = match rotational {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, "0", why),
    };
    if value == 0 {
        return Finding::new(
            NAME,
            format!("0 ({}, via {})", disk.name, disk.path_taken),
            "0",
            Severity::Ok,
            "flash (or a virtual disk that says so)",
        );
    }
    let why = if disk.is_virtual() {
        format!(
            "the kernel marks {} ({}) rotational; hypervisors often leave the flag at 1 whatever backs the \
             disk, so this may be flash, but if it is a spinning disk every fdatasync costs a seek \
             (milliseconds), which bounds acks=all throughput; Spate is built for NVMe",
            disk.name,
            disk.kind()
        )
    } else {
        "a spinning disk: every fdatasync costs a seek and a rotation (milliseconds), which bounds acks=all \
         throughput and latency; Spate is built for NVMe"
            .to_string()
    };
    Finding::new(
        NAME,
        format!("{value} ({}, via {})", disk.name, disk.path_taken),
        "0",
        Severity::Warn,
        why,
    )
    .with_fix("move the data directory to an NVMe device")
}

fn nvme_queues(view: &dyn HostView, disk: &Disk, options: &CheckOptions) -> Finding {
    const NAME: &str = "nvme_queues";
    let shards = options.shard_cores.len();
    let recommended = format!(">= {shards} (one per shard core)");
    if !disk.is_nvme() {
        return Finding::not_available(
            NAME,
            recommended,
            format!("{} is {}, not NVMe", disk.name, disk.kind()),
        );
    }
    let queues = match view.list(&disk.sys_path.join("mq")) {
        Ok(queues) => queues.len(),
        Err(error) => {
            return Finding::not_available(
                NAME,
                recommended,
                format!("cannot list {}/mq: {error}", disk.sys_path.display()),
            )
        }
    };
    let severity = if queues >= shards {
        Severity::Ok
    } else {
        Severity::Warn
    };
    Finding::new(
        NAME,
        format!("{queues} hardware queues ({})", disk.name),
        recommended,
        severity,
        "the nvme driver gives each CPU a submission queue while the controller has enough; with fewer, \
         shard cores share queues and their locks",
    )
    .with_fix("nothing to set on the host: the controller offers this many I/O queues (nvme get-feature -f 7); use fewer shards or a drive with more queues")
}

fn nvme_io_poll(view: &dyn HostView, disk: &Disk) -> Finding {
    const NAME: &str = "nvme_io_poll";
    let recommended = "1 where polling queues exist (optional)";
    if !disk.is_nvme() {
        return Finding::not_available(
            NAME,
            recommended,
            format!("{} is {}, not NVMe", disk.name, disk.kind()),
        );
    }
    let value = match read_number(view, &disk.queue("io_poll")) {
        Ok(value) => value,
        Err(why) => return Finding::not_available(NAME, recommended, why),
    };
    let why = if value == 1 {
        "glommio finds the device pollable and completes its O_DIRECT I/O by polling, without an interrupt"
    } else {
        "no polling queues: glommio completes I/O through interrupts, which is fine; polling needs the \
         nvme driver loaded with poll_queues=N (nvme.poll_queues=N on the kernel command line) and costs CPU"
    };
    Finding::new(NAME, value.to_string(), recommended, Severity::Ok, why)
}
