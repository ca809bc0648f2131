//! `--json` for the admin commands (`topic`, `group`, `cluster`): one JSON document per run on
//! stdout, for scripts, instead of the tab-separated text meant for people and `awk`.
//!
//! Each command builds its document with `serde_json::json!`; field names are snake_case and
//! stable. Errors stay one line on stderr with the exit code, as without `--json`; a command
//! that acts on several things (deleting several topics) prints the outcome of each first.

use std::io::Write;

use clap::Args;

/// The output switch every admin command flattens in.
#[derive(Debug, Clone, Copy, Args)]
pub struct OutputArgs {
    /// Print one JSON document instead of text columns (for scripts).
    #[arg(long)]
    pub json: bool,
}

/// Writes `value` as one line of JSON.
pub fn write_json(output: &mut impl Write, value: &serde_json::Value) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *output, value)?;
    writeln!(output)?;
    Ok(())
}

/// A command line that parses but contradicts itself (two flags setting one config, ...):
/// reported like clap's own usage errors, with exit code 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);
