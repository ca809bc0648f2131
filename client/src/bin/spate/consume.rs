//! `spate consume TOPIC`: prints records, one per line (value only, a template, or JSON), from
//! a chosen start, until `--count` records, the end of the log (`--exit-at-end`), Ctrl-C, or a
//! closed pipe. With `--group` it reads as a member of a consumer group (`group::consume`).
//!
//! Output goes through one large buffer, flushed after each poll, so a fast pipe is fed in big
//! writes and a terminal still sees records as they arrive.

use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args};
use spate_client::{Client, ConsumerConfig, OffsetReset, OffsetSpec, StartAt};

use crate::format::{write_json, Template};

/// Bytes of output buffered between flushes.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;
/// How long one poll waits; also how quickly Ctrl-C is noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").args(["from_beginning", "offset", "from_timestamp"])))]
#[command(group(ArgGroup::new("output").args(["format", "json"])))]
pub struct ConsumeArgs {
    /// Topic to read.
    topic: String,
    /// Read as a member of this consumer group: the group shares the partitions among its
    /// members and continues from its committed offsets (--from-beginning: where nothing is
    /// committed yet, start at the oldest record).
    #[arg(long, conflicts_with_all = ["partition", "offset", "from_timestamp"])]
    group: Option<String>,
    /// Read only this partition (default: all).
    #[arg(long)]
    partition: Option<u32>,
    /// Start at the oldest record (default: only new records).
    #[arg(long)]
    from_beginning: bool,
    /// Start at this offset (in every partition read).
    #[arg(long)]
    offset: Option<u64>,
    /// Start at the first record at or after this time, in ms since the Unix epoch.
    #[arg(long, value_name = "MS")]
    from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(long)]
    count: Option<u64>,
    /// Stop once every partition's end, as of the start, is reached.
    #[arg(long)]
    exit_at_end: bool,
    /// Output template: %t topic, %p partition, %o offset, %k key, %v value, %T timestamp (ms),
    /// %h headers (k=v,...), %% a percent sign; \n \t escapes. One line per record.
    #[arg(long, value_name = "TEMPLATE", value_parser = Template::parse_argument)]
    format: Option<Template>,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers.
    #[arg(long)]
    json: bool,
}

enum Output {
    Template(Template),
    Json,
}

pub fn run(client: &Client, arguments: ConsumeArgs) -> anyhow::Result<()> {
    let output = match (&arguments.format, arguments.json) {
        (Some(template), _) => Output::Template(template.clone()),
        (None, true) => Output::Json,
        (None, false) => Output::Template(Template::value_only()),
    };
    let (start, offset_reset) = match (&arguments.offset, &arguments.from_timestamp) {
        (Some(offset), _) => (StartAt::Offset(*offset), OffsetReset::Error),
        (None, Some(timestamp)) => (StartAt::Timestamp(*timestamp), OffsetReset::Earliest),
        (None, None) if arguments.from_beginning => (StartAt::Earliest, OffsetReset::Earliest),
        (None, None) => (StartAt::Latest, OffsetReset::Earliest),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing the signal handler")?;
    }

    if let Some(group) = &arguments.group {
        let read = crate::group::GroupRead {
            topic: &arguments.topic,
            group,
            from_beginning: arguments.from_beginning,
            count: arguments.count,
            exit_at_end: arguments.exit_at_end,
            poll_interval: POLL_INTERVAL,
        };
        let mut stdout = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
        return crate::group::consume(
            client,
            read,
            &interrupted,
            &mut stdout,
            |output_stream, record| match &output {
                Output::Template(template) => template.write(output_stream, record),
                Output::Json => write_json(output_stream, record),
            },
        );
    }

    let topic = arguments.topic.as_str();
    let partitions = arguments.partition.map(|partition| vec![partition]);
    let mut consumer = client.consumer(ConsumerConfig {
        offset_reset,
        ..ConsumerConfig::default()
    })?;
    consumer
        .assign(topic, partitions.as_deref(), start)
        .wait()
        .with_context(|| format!("reading topic {topic:?}"))?;
    // The end of each partition as of now, for --exit-at-end.
    let mut remaining_ends: BTreeMap<u32, u64> = BTreeMap::new();
    if arguments.exit_at_end {
        let ends = client
            .admin()
            .list_offsets(topic, partitions.as_deref(), OffsetSpec::Latest)
            .wait()
            .with_context(|| format!("finding the end of {topic:?}"))?;
        for end in ends {
            remaining_ends.insert(end.partition, end.offset.unwrap_or(0));
        }
        retire_finished(&consumer, topic, &mut remaining_ends);
    }

    let mut stdout = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
    let mut printed: u64 = 0;
    let limit = arguments.count.unwrap_or(u64::MAX);
    let done = |printed: u64, remaining_ends: &BTreeMap<u32, u64>| {
        printed >= limit || (arguments.exit_at_end && remaining_ends.is_empty())
    };
    while !done(printed, &remaining_ends) && !interrupted.load(Ordering::Relaxed) {
        let polled = consumer.poll(POLL_INTERVAL).context("reading records")?;
        for record in &polled {
            if arguments.exit_at_end {
                // Only records that existed at the start; later ones belong to no one here.
                match remaining_ends.get(&record.partition()) {
                    Some(end) if record.offset() < *end => {}
                    _ => continue,
                }
            }
            let written = match &output {
                Output::Template(template) => template.write(&mut stdout, &record),
                Output::Json => write_json(&mut stdout, &record),
            };
            if closed_pipe(written)? {
                return Ok(());
            }
            printed += 1;
            if printed >= limit {
                break;
            }
        }
        if closed_pipe(stdout.flush())? {
            return Ok(());
        }
        if arguments.exit_at_end {
            retire_finished(&consumer, topic, &mut remaining_ends);
        }
    }
    if closed_pipe(stdout.flush())? {
        return Ok(());
    }
    Ok(())
}

/// Drops partitions whose position reached their end.
fn retire_finished(
    consumer: &spate_client::Consumer,
    topic: &str,
    remaining_ends: &mut BTreeMap<u32, u64>,
) {
    remaining_ends.retain(|partition, end| {
        consumer
            .position(topic, *partition)
            .is_some_and(|position| position < *end)
    });
}

/// True when the reader went away (`spate consume ... | head`): a normal end, not a failure.
fn closed_pipe(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(true),
        Err(error) => Err(anyhow::Error::new(error).context("writing output")),
    }
}
