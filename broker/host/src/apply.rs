//! `--apply`: writes the runtime changes the findings carry (sysctls through /proc/sys, block
//! queue settings, THP, the governor), as root only, and says for each what it was and what
//! the kernel shows now. Nothing here persists across a reboot; each change carries the
//! sysctl.d, udev or tmpfiles.d line that would.
//!
//! What is never applied, and why, is said where each finding is made: mount options, IRQ
//! affinity, idle states, the clock source, `kernel.io_uring_disabled`, process limits.

use std::path::PathBuf;

use serde::Serialize;

use crate::checks::selected_or_whole;
use crate::finding::{Finding, Persist};
use crate::view::HostView;

/// One write that was made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The finding it fixes.
    pub finding: &'static str,
    pub path: PathBuf,
    pub old: String,
    /// What the file reads after the write (the kernel may normalize or refuse quietly).
    pub new: String,
    pub persist: Persist,
}

/// One write the kernel refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refused {
    pub finding: &'static str,
    pub path: PathBuf,
    pub value: String,
    pub error: String,
}

/// What `--apply` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ApplyOutcome {
    pub applied: Vec<Applied>,
    pub refused: Vec<Refused>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error(
        "--apply writes kernel settings and needs root (run it with sudo); nothing was changed"
    )]
    NotRoot,
}

/// Makes every change the findings carry. A refused write is reported and the others go on.
pub fn apply(view: &dyn HostView, findings: &[Finding]) -> Result<ApplyOutcome, ApplyError> {
    if !view.is_root() {
        return Err(ApplyError::NotRoot);
    }
    let mut outcome = ApplyOutcome::default();
    for finding in findings {
        for change in &finding.changes {
            let read = |view: &dyn HostView| {
                view.read(&change.path)
                    .map(|text| selected_or_whole(text.trim()).to_string())
                    .unwrap_or_else(|error| format!("unreadable: {error}"))
            };
            let old = read(view);
            match view.write(&change.path, &change.value) {
                Ok(()) => outcome.applied.push(Applied {
                    finding: finding.name,
                    path: change.path.clone(),
                    old,
                    new: read(view),
                    persist: change.persist.clone(),
                }),
                Err(error) => outcome.refused.push(Refused {
                    finding: finding.name,
                    path: change.path.clone(),
                    value: change.value.clone(),
                    error: error.to_string(),
                }),
            }
        }
    }
    Ok(outcome)
}
