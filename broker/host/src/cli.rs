//! `spate-broker check [--data-dir DIR] [--cores LIST] [--apply] [--json]`: the flags of its
//! own, and the run. The broker binary resolves the data directory and cores exactly as the
//! broker would (defaults < --config file < flags < SPATE_* variables) and hands them over.
//!
//! Exit codes: 0 when no finding fails, 1 when one does (the broker cannot run here, or not
//! durably), 2 when `--apply` was refused (not root) or the settings are wrong.

use std::ffi::OsString;
use std::io::Write;

use crate::apply::{apply, ApplyError};
use crate::checks::{check_host, CheckOptions};
use crate::finding::Severity;
use crate::report;
use crate::view::HostView;

/// `spate-broker check`'s usage, for `--help`.
pub const CHECK_HELP: &str = "\
Usage: spate-broker check [--data-dir DIR] [--cores LIST] [--apply] [--json] [broker flags]

Inspects this host for a Spate broker: io_uring (memlock, kernel.io_uring_disabled, seccomp, a
real io_uring_setup), CPU governor and idle states, transparent huge pages, swappiness, the data
directory's file system, mount and block device (scheduler, merges, read-ahead, write cache,
queue depth, NVMe queues and polling), clock source, NIC and NVMe IRQ affinity, NUMA against the
shard cores, open-files limit and network sysctls. Every finding has the current value, the
recommended one and the command that fixes it.

The data directory and cores are the broker's own (--data-dir, --cores, --shards, --config and
SPATE_* variables, as for the broker).

  --apply   as root, set what is safe to set at runtime (sysctls, block queue settings, THP,
            CPU governor) and print every change (old -> new) and the lines that persist it
  --json    print the findings as JSON

Exit code: 0 no finding fails, 1 a finding fails, 2 --apply refused or a configuration error.
";

/// The flags that belong to `check` rather than to the broker's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CheckFlags {
    pub apply: bool,
    pub json: bool,
    pub help: bool,
}

/// Removes `--apply`, `--json` and `--help`/`-h` from the arguments (the rest are broker
/// settings) and returns them.
pub fn take_check_flags(arguments: &mut Vec<OsString>) -> CheckFlags {
    let mut flags = CheckFlags::default();
    arguments.retain(|argument| {
        let flag = argument.to_str().unwrap_or("");
        match flag {
            "--apply" => flags.apply = true,
            "--json" => flags.json = true,
            "--help" | "-h" => flags.help = true,
            _ => return true,
        }
        false
    });
    flags
}

/// Runs the checks (and `--apply`), writes the report to `out`, and returns the exit code.
pub fn run(
    view: &dyn HostView,
    options: &CheckOptions,
    flags: CheckFlags,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let before = check_host(view, options);
    let outcome = if flags.apply {
        match apply(view, &before) {
            Ok(outcome) => Some(outcome),
            Err(error @ ApplyError::NotRoot) => {
                let _ = writeln!(err, "spate-broker check: {error}");
                return 2;
            }
        }
    } else {
        None
    };
    // After --apply the table shows the host as it is now.
    let findings = if outcome.is_some() {
        check_host(view, options)
    } else {
        before
    };
    let text = if flags.json {
        report::json(&findings, outcome.as_ref())
    } else {
        let mut text = String::new();
        if let Some(outcome) = &outcome {
            text.push_str(&report::applied(outcome));
        }
        text.push_str(&report::table(&findings));
        let can_apply = findings
            .iter()
            .filter(|finding| !finding.changes.is_empty())
            .count();
        if outcome.is_none() && can_apply > 0 {
            text.push_str(&format!(
                "`spate-broker check --apply` (as root) sets {can_apply} of these now; the rest need the commands above.\n"
            ));
        }
        text
    };
    let _ = out.write_all(text.as_bytes());
    let failed = findings
        .iter()
        .any(|finding| finding.severity == Severity::Fail);
    u8::from(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_flags_are_taken_out_and_broker_flags_left() {
        let mut arguments: Vec<OsString> = [
            "spate-broker",
            "--apply",
            "--data-dir",
            "/d",
            "--json",
            "--cores",
            "1-2",
        ]
        .into_iter()
        .map(OsString::from)
        .collect();
        let flags = take_check_flags(&mut arguments);
        assert_eq!(
            flags,
            CheckFlags {
                apply: true,
                json: true,
                help: false
            }
        );
        assert_eq!(
            arguments,
            ["spate-broker", "--data-dir", "/d", "--cores", "1-2"]
        );
    }
}
