//! `spate produce TOPIC`: one record per input line, then the count acknowledged.
//!
//! Input is read through a large buffer and each line goes straight into the producer's batch
//! (one copy); outcomes arrive in callbacks that only bump counters, so a pipe of short lines
//! is limited by the broker, not by this tool. The record is the line without its `\n`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use spate_client::{Acks, Client, Error, ProducerConfig, ProducerRecord};

use crate::terminal::Progress;

/// Bytes of input buffered per read.
const INPUT_BUFFER_BYTES: usize = 1024 * 1024;

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    topic: String,
    /// Split each line at the first SEP into key and value (a line without SEP is an error).
    #[arg(long, value_name = "SEP")]
    key_separator: Option<String>,
    /// Write every record to this partition (default: by key hash; keyless lines are spread).
    #[arg(long)]
    partition: Option<u32>,
    /// Acknowledgement to wait for.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Add this header to every record, KEY=VALUE (repeatable).
    #[arg(long = "header", value_parser = crate::parse_key_value)]
    headers: Vec<(String, String)>,
    /// Read lines from this file instead of stdin.
    #[arg(long)]
    file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum AcksArg {
    /// Do not wait: nothing is acknowledged.
    None,
    /// The owning shard appended the record.
    Leader,
    /// Durable under the topic's durability policy.
    All,
}

impl From<AcksArg> for Acks {
    fn from(acks: AcksArg) -> Self {
        match acks {
            AcksArg::None => Acks::None,
            AcksArg::Leader => Acks::Leader,
            AcksArg::All => Acks::All,
        }
    }
}

/// Outcomes, updated by delivery callbacks on the client's I/O thread.
#[derive(Default)]
struct Tally {
    acknowledged: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<Error>>,
}

pub fn run(client: &Client, arguments: ProduceArgs) -> anyhow::Result<()> {
    let input: Box<dyn Read> = match &arguments.file {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let mut input = BufReader::with_capacity(INPUT_BUFFER_BYTES, input);
    let producer = client.producer(ProducerConfig {
        acks: arguments.acks.into(),
        ..ProducerConfig::default()
    })?;
    let headers: Vec<(&str, &[u8])> = arguments
        .headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_bytes()))
        .collect();
    let separator = arguments.key_separator.as_deref().map(str::as_bytes);
    let tally = Arc::new(Tally::default());
    let mut progress = Progress::new();
    let mut line = Vec::with_capacity(4096);
    let mut sent: u64 = 0;
    loop {
        line.clear();
        let read = input
            .read_until(b'\n', &mut line)
            .context("reading input")?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let (key, value) = match separator {
            None => (None, &line[..]),
            Some(separator) => match split_once(&line, separator) {
                Some((key, value)) => (Some(key), value),
                None => bail!(
                    "line {} has no key separator {:?}",
                    sent + 1,
                    arguments.key_separator.as_deref().unwrap_or_default()
                ),
            },
        };
        let record = ProducerRecord {
            topic: &arguments.topic,
            partition: arguments.partition,
            key,
            value: Some(value),
            headers: &headers,
            timestamp: None,
        };
        let callback_tally = tally.clone();
        producer
            .send_with_callback_blocking(record, move |result| match result {
                Ok(_) => {
                    callback_tally.acknowledged.fetch_add(1, Ordering::Relaxed);
                }
                Err(error) => {
                    callback_tally.failed.fetch_add(1, Ordering::Relaxed);
                    let mut first = callback_tally
                        .first_error
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner());
                    first.get_or_insert(error);
                }
            })
            .with_context(|| format!("producing to {:?}", arguments.topic))?;
        sent += 1;
        if sent % 4096 == 0 {
            progress.tick(|| {
                format!(
                    "{sent} lines read, {} acknowledged",
                    tally.acknowledged.load(Ordering::Relaxed)
                )
            });
        }
    }
    producer.close().wait().context("delivering the records")?;
    progress.finish();
    let acknowledged = tally.acknowledged.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let first = tally
            .first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        let error = anyhow::Error::new(first.expect("a failure records its error"));
        return Err(error.context(format!(
            "{failed} of {sent} records failed ({acknowledged} acknowledged)"
        )));
    }
    let mut stdout = std::io::stdout().lock();
    if arguments.acks == AcksArg::None {
        writeln!(
            stdout,
            "{sent} records sent (acks=none: the broker does not acknowledge)"
        )?;
    } else {
        writeln!(stdout, "{acknowledged} records acknowledged")?;
    }
    Ok(())
}

fn split_once<'a>(line: &'a [u8], separator: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    if separator.is_empty() {
        return None;
    }
    let at = line
        .windows(separator.len())
        .position(|window| window == separator)?;
    Some((&line[..at], &line[at + separator.len()..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_splits_at_the_first_separator() {
        assert_eq!(
            split_once(b"k::v::w", b"::"),
            Some((&b"k"[..], &b"v::w"[..]))
        );
        assert_eq!(split_once(b"no separator", b"::"), None);
        assert_eq!(split_once(b"::v", b"::"), Some((&b""[..], &b"v"[..])));
    }
}
