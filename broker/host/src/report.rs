//! How findings are shown: a table (check, current, recommended, status) followed by what to do
//! about each finding that is not ok, or one JSON document for tools.

use std::fmt::Write as _;

use serde::Serialize;

use crate::apply::ApplyOutcome;
use crate::finding::{Finding, Severity};

/// Table cells longer than this are cut (the details below and `--json` have them whole).
const CELL_CHARS_MAX: usize = 46;

/// The table, then details and fix commands for every finding that is not ok.
pub fn table(findings: &[Finding]) -> String {
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|finding| {
            [
                finding.name.to_string(),
                cut(&finding.current),
                cut(&finding.recommended),
                finding.severity.label().to_string(),
            ]
        })
        .collect();
    let header = ["CHECK", "CURRENT", "RECOMMENDED", "STATUS"].map(str::to_string);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut text = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let line = format!(
            "{:w0$}  {:w1$}  {:w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    let mut attention: Vec<&Finding> = findings
        .iter()
        .filter(|finding| matches!(finding.severity, Severity::Warn | Severity::Fail))
        .collect();
    attention.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    if !attention.is_empty() {
        text.push_str("\nTo fix:\n");
        for finding in attention {
            let _ = writeln!(
                text,
                "{} {}: {} (recommended: {})",
                finding.severity.label(),
                finding.name,
                finding.current,
                finding.recommended
            );
            let _ = writeln!(text, "    why: {}", finding.why);
            if let Some(fix) = &finding.fix {
                let _ = writeln!(text, "    fix: {fix}");
            }
            if !finding.changes.is_empty() {
                text.push_str("    (--apply sets this)\n");
            }
        }
    }
    let unavailable: Vec<&Finding> = findings
        .iter()
        .filter(|finding| finding.severity == Severity::NotAvailable)
        .collect();
    if !unavailable.is_empty() {
        text.push_str("\nNot available here:\n");
        for finding in unavailable {
            let _ = writeln!(text, "{}: {}", finding.name, finding.why);
        }
    }
    let count = |severity| {
        findings
            .iter()
            .filter(|finding| finding.severity == severity)
            .count()
    };
    let _ = writeln!(
        text,
        "\n{} checks: {} ok, {} warn, {} fail, {} not available",
        findings.len(),
        count(Severity::Ok),
        count(Severity::Warn),
        count(Severity::Fail),
        count(Severity::NotAvailable)
    );
    text
}

/// What `--apply` changed, and the lines that would keep it across reboots.
pub fn applied(outcome: &ApplyOutcome) -> String {
    let mut text = String::new();
    if outcome.applied.is_empty() && outcome.refused.is_empty() {
        text.push_str("--apply: nothing to change at runtime\n");
        return text;
    }
    for change in &outcome.applied {
        let _ = writeln!(
            text,
            "changed {} ({}): {} -> {}",
            change.path.display(),
            change.finding,
            change.old,
            change.new
        );
    }
    for refusal in &outcome.refused {
        let _ = writeln!(
            text,
            "NOT changed {} ({}) to {}: {}",
            refusal.path.display(),
            refusal.finding,
            refusal.value,
            refusal.error
        );
    }
    if !outcome.applied.is_empty() {
        text.push_str("\nThese changes last until reboot. To keep them, add:\n");
        let mut files: Vec<&str> = outcome
            .applied
            .iter()
            .map(|change| change.persist.file.as_str())
            .collect();
        files.dedup();
        files.sort_unstable();
        files.dedup();
        for file in files {
            let _ = writeln!(text, "  {file}:");
            for change in outcome
                .applied
                .iter()
                .filter(|change| change.persist.file == file)
            {
                let _ = writeln!(text, "    {}", change.persist.line);
            }
        }
    }
    text.push('\n');
    text
}

/// The machine-readable report.
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    /// Whether any finding is a failure (the exit code is 1 then).
    pub fail: bool,
    pub findings: &'a [Finding],
    /// Present with `--apply`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub apply: Option<&'a ApplyOutcome>,
}

pub fn json(findings: &[Finding], apply: Option<&ApplyOutcome>) -> String {
    let report = JsonReport {
        fail: findings
            .iter()
            .any(|finding| finding.severity == Severity::Fail),
        findings,
        apply,
    };
    // Plain strings, numbers and paths: serializing them cannot fail.
    serde_json::to_string_pretty(&report).expect("findings serialize") + "\n"
}

fn cut(text: &str) -> String {
    if text.chars().count() <= CELL_CHARS_MAX {
        return text.to_string();
    }
    let kept: String = text.chars().take(CELL_CHARS_MAX - 1).collect();
    format!("{kept}…")
}
