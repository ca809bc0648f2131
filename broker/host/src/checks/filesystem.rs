//! The data directory's mount, from `/proc/self/mountinfo`: its file system type (only a local
//! XFS or ext4 keeps what `fdatasync` promised) and its mount options.

use std::path::{Path, PathBuf};

use super::read_value;
use crate::finding::{Finding, Severity};
use crate::view::HostView;

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The part of the data directory that exists (it may not have been created yet).
    pub looked_at: PathBuf,
    pub mount_point: PathBuf,
    pub major: u32,
    pub minor: u32,
    pub file_system: String,
    pub source: String,
    /// Per-mount options (`rw,noatime`).
    pub mount_options: Vec<String>,
    /// Per-superblock options (`rw,discard,data=ordered`).
    pub super_options: Vec<String>,
}

/// The mount that holds the data directory, or why it cannot be told.
pub type DataMount = Result<Mount, String>;

/// File systems that are memory, not a disk: since Linux 6.6 tmpfs accepts O_DIRECT, so a
/// broker runs there and loses everything at reboot.
const MEMORY_FILE_SYSTEMS: &[&str] = &["tmpfs", "ramfs"];
/// File systems whose O_DIRECT or fdatasync does not reach a local disk the way the broker's
/// recovery assumes (or at all).
const REFUSED_FILE_SYSTEMS: &[&str] = &[
    "overlay", "aufs", "nfs", "nfs4", "cifs", "smb3", "9p", "virtiofs", "squashfs", "fuse",
    "fuseblk",
];
const GOOD_FILE_SYSTEMS: &[&str] = &["xfs", "ext4"];

/// Finds the mount of the data directory's nearest existing ancestor, the way `findmnt
/// --target` does: the longest mount point that is a prefix of the resolved path, the last
/// mounted one if several are stacked.
pub fn data_mount(view: &dyn HostView, data_dir: &Path) -> DataMount {
    let looked_at = data_dir
        .ancestors()
        .find(|ancestor| view.exists(ancestor))
        .ok_or_else(|| format!("no part of {} exists", data_dir.display()))?;
    let resolved = view
        .resolve(looked_at)
        .map_err(|error| format!("cannot resolve {}: {error}", looked_at.display()))?;
    let table = read_value(view, Path::new("/proc/self/mountinfo"))?;
    let mut best: Option<Mount> = None;
    for line in table.lines() {
        let Some(mount) = parse_mountinfo_line(line, looked_at) else {
            continue;
        };
        if !resolved.starts_with(&mount.mount_point) {
            continue;
        }
        let longer = best.as_ref().is_none_or(|best| {
            mount.mount_point.as_os_str().len() >= best.mount_point.as_os_str().len()
        });
        if longer {
            best = Some(mount);
        }
    }
    best.ok_or_else(|| {
        format!(
            "no mount in /proc/self/mountinfo holds {}",
            resolved.display()
        )
    })
}

/// `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
fn parse_mountinfo_line(line: &str, looked_at: &Path) -> Option<Mount> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    let (major, minor) = fields.get(2)?.split_once(':')?;
    let mount_point = unescape(fields.get(4)?);
    let mount_options = fields.get(5)?.split(',').map(str::to_string).collect();
    let mut rest = after.split(' ');
    let file_system = rest.next()?.to_string();
    let source = unescape(rest.next()?);
    let super_options = rest
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::to_string)
        .collect();
    Some(Mount {
        looked_at: looked_at.to_path_buf(),
        mount_point: PathBuf::from(mount_point),
        major: major.parse().ok()?,
        minor: minor.parse().ok()?,
        file_system,
        source,
        mount_options,
        super_options,
    })
}

/// mountinfo writes space, tab, newline and backslash as `\040`, `\011`, `\012`, `\134`.
fn unescape(text: &str) -> String {
    text.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

pub fn check(mount: &DataMount) -> Vec<Finding> {
    vec![file_system(mount), mount_options(mount)]
}

fn file_system(mount: &DataMount) -> Finding {
    const NAME: &str = "filesystem";
    let recommended = "xfs or ext4 on a local NVMe device";
    let mount = match mount {
        Ok(mount) => mount,
        Err(why) => return Finding::not_available(NAME, recommended, why.clone()),
    };
    let kind = mount.file_system.as_str();
    let base = kind.split('.').next().unwrap_or(kind);
    let current = format!(
        "{kind} ({} on {})",
        mount.source,
        mount.mount_point.display()
    );
    let fix = format!(
        "put the data directory (now {}) on an XFS or ext4 file system on a local NVMe device: \
         mkfs.xfs /dev/nvmeXn1; mount -o noatime /dev/nvmeXn1 /var/lib/spate",
        mount.looked_at.display()
    );
    let (severity, why) = if GOOD_FILE_SYSTEMS.contains(&base) {
        (
            Severity::Ok,
            "O_DIRECT, fallocate and fdatasync behave as the broker's recovery assumes".to_string(),
        )
    } else if MEMORY_FILE_SYSTEMS.contains(&base) {
        (
            Severity::Fail,
            format!(
                "{kind} is memory: it accepts O_DIRECT (Linux 6.6+) and fdatasync returns at once, and \
                 every record, acks=all included, is gone at reboot or power loss"
            ),
        )
    } else if REFUSED_FILE_SYSTEMS.contains(&base) {
        (
            Severity::Fail,
            format!(
                "{kind} is not a local disk file system: O_DIRECT and fdatasync do not reach a device the \
                 way the broker's durability needs (a container's writable layer, or a network share); \
                 mount a volume from a local disk there"
            ),
        )
    } else {
        (
            Severity::Warn,
            format!("{kind} is not tested with Spate: copy-on-write file systems (btrfs, zfs) add write amplification and fsync cost"),
        )
    };
    Finding::new(NAME, current, recommended, severity, why).with_fix(fix)
}

fn mount_options(mount: &DataMount) -> Finding {
    const NAME: &str = "mount_options";
    let recommended = "noatime";
    let mount = match mount {
        Ok(mount) => mount,
        Err(why) => return Finding::not_available(NAME, recommended, why.clone()),
    };
    let has = |option: &str| {
        mount
            .mount_options
            .iter()
            .chain(&mount.super_options)
            .any(|present| present == option)
    };
    let current = mount.mount_options.join(",");
    let point = mount.mount_point.display();
    // Never applied by --apply: a remount changes every user of the file system, and the
    // fstab line is the operator's to write.
    if has("ro") {
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Fail,
            "the file system is read-only: the broker cannot write",
        )
        .with_fix(format!("mount -o remount,rw {point}"));
    }
    if has("nobarrier") || has("barrier=0") {
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Fail,
            "nobarrier/barrier=0 makes fdatasync skip the device cache flush: acknowledged records can be lost at power loss",
        )
        .with_fix(format!("mount -o remount,barrier=1 {point}; remove nobarrier from /etc/fstab"));
    }
    if has("noatime") {
        return Finding::new(
            NAME,
            current,
            recommended,
            Severity::Ok,
            "no access-time writes",
        );
    }
    Finding::new(
        NAME,
        current,
        recommended,
        Severity::Warn,
        "without noatime, reads update access times: extra metadata writes and journal traffic on the data disk (relatime limits them to one a day per file)",
    )
    .with_fix(format!("mount -o remount,noatime {point}; add noatime to its line in /etc/fstab"))
}
