//! What a check says about one setting: a [`Finding`] with its current and recommended values,
//! why it matters, how bad it is, the command that fixes it, and (for the settings that are
//! safe to change on a running host) the [`Change`] that `--apply` makes.

use std::path::PathBuf;

use serde::Serialize;

/// How a setting stands. Only [`Severity::Fail`] makes `spate-broker check` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// As recommended, or good enough that changing it buys nothing.
    Ok,
    /// The setting could not be read here (a VM without cpufreq, a disk that is not NVMe); the
    /// finding's `why` says why. Never a failure.
    NotAvailable,
    /// Works, but costs latency, throughput or headroom.
    Warn,
    /// The broker cannot run here, or runs without the durability it promises.
    Fail,
}

impl Severity {
    /// The word shown in the table.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Ok => "ok",
            Severity::NotAvailable => "n/a",
            Severity::Warn => "WARN",
            Severity::Fail => "FAIL",
        }
    }
}

/// How `--apply` persists a change it made (changes through /proc/sys and /sys last until
/// reboot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Persist {
    /// The file the line belongs in.
    pub file: String,
    /// The line to add there.
    pub line: String,
}

/// A runtime write that `--apply` may make: `value` into `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    pub path: PathBuf,
    pub value: String,
    pub persist: Persist,
}

/// One setting, judged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// A stable identifier, `snake_case` (`vm_swappiness`, `disk_scheduler`).
    pub name: &'static str,
    /// The value found (`not available` when it could not be read).
    pub current: String,
    pub recommended: String,
    pub severity: Severity,
    /// Why the recommendation, or why the value is not available.
    pub why: String,
    /// The shell command an operator runs to fix it; `None` when nothing needs fixing.
    pub fix: Option<String>,
    /// What `--apply` would write; empty when nothing needs changing or when the fix is not
    /// safe to make automatically.
    pub changes: Vec<Change>,
}

impl Finding {
    pub fn new(
        name: &'static str,
        current: impl Into<String>,
        recommended: impl Into<String>,
        severity: Severity,
        why: impl Into<String>,
    ) -> Finding {
        Finding {
            name,
            current: current.into(),
            recommended: recommended.into(),
            severity,
            why: why.into(),
            fix: None,
            changes: Vec::new(),
        }
    }

    /// A setting that could not be read, and why.
    pub fn not_available(
        name: &'static str,
        recommended: impl Into<String>,
        why: impl Into<String>,
    ) -> Finding {
        Finding::new(
            name,
            "not available",
            recommended,
            Severity::NotAvailable,
            why,
        )
    }

    /// Adds the fix command, when the finding is not ok (an ok finding needs no fix).
    pub fn with_fix(mut self, command: impl Into<String>) -> Finding {
        if matches!(self.severity, Severity::Warn | Severity::Fail) {
            self.fix = Some(command.into());
        }
        self
    }

    /// Adds the runtime change `--apply` makes, when the finding is not ok.
    pub fn with_change(self, change: Change) -> Finding {
        self.with_changes(vec![change])
    }

    /// Adds the runtime changes `--apply` makes, when the finding is not ok.
    pub fn with_changes(mut self, changes: Vec<Change>) -> Finding {
        if matches!(self.severity, Severity::Warn | Severity::Fail) {
            self.changes = changes;
        }
        self
    }
}

/// A sysctl's change: its /proc/sys file and the sysctl.d line that persists it.
pub fn sysctl_change(key: &str, value: &str) -> Change {
    Change {
        path: sysctl_path(key),
        value: value.to_string(),
        persist: Persist {
            file: "/etc/sysctl.d/90-spate.conf".to_string(),
            line: format!("{key} = {value}"),
        },
    }
}

/// `net.core.somaxconn` lives at `/proc/sys/net/core/somaxconn`.
pub fn sysctl_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

/// The command that sets a sysctl now.
pub fn sysctl_command(key: &str, value: &str) -> String {
    if value.contains(' ') {
        format!("sysctl -w {key}=\"{value}\"")
    } else {
        format!("sysctl -w {key}={value}")
    }
}

/// A sysfs value outside the block layer: persisted by a systemd-tmpfiles `w` line, which
/// writes it at every boot.
pub fn sysfs_change(path: &str, value: &str) -> Change {
    Change {
        path: PathBuf::from(path),
        value: value.to_string(),
        persist: Persist {
            file: "/etc/tmpfiles.d/spate.conf".to_string(),
            line: format!("w {path} - - - - {value}"),
        },
    }
}

/// A block device queue attribute: persisted by a udev rule, which also covers the device
/// reappearing (hot plug, controller reset).
pub fn queue_change(disk: &str, attribute: &str, value: &str) -> Change {
    Change {
        path: PathBuf::from(format!("/sys/block/{disk}/queue/{attribute}")),
        value: value.to_string(),
        persist: Persist {
            file: "/etc/udev/rules.d/60-spate.rules".to_string(),
            line: format!(
                "ACTION==\"add|change\", SUBSYSTEM==\"block\", KERNEL==\"{disk}\", ATTR{{queue/{attribute}}}=\"{value}\""
            ),
        },
    }
}
