//! `spate consume TOPIC...`: prints records, one per line (value only, a template, or JSON), from
//! a chosen start (`--offset`: kcat's and rpk's offsets, see `offsets`), until `--count` records,
//! the end of a range or of the log (`--exit-at-end`), Ctrl-C, or a closed pipe. With `--group`
//! it reads as a member of a consumer group (`group::consume`).
//!
//! Each partition's start and stop are resolved here, from its bounds, before it is assigned:
//! a partition too short for an absolute start is named on stderr, then skipped when reading
//! stops at the end (`-e`, a range) or, when tailing, assigned once the offset exists. Output goes
//! through one large buffer, flushed after each poll, so a fast pipe is fed in big writes and a
//! terminal still sees records as they arrive.

use std::collections::BTreeMap;
use std::io::{BufWriter, ErrorKind, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgGroup, Args};
use spate_client::{Client, ConsumerConfig, OffsetReset, OffsetSpec, StartAt};

use crate::encoding::Encoding;
use crate::format::{write_json, Template};
use crate::offsets::{parse_offset_spec, Bounds, Plan, Position, Stop};
use crate::output::UsageError;

/// Bytes of output buffered between flushes.
const OUTPUT_BUFFER_BYTES: usize = 256 * 1024;
/// How long one poll waits; also how quickly Ctrl-C is noticed.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How long fetches may fail before a terminal is told the consumer is reconnecting.
const RECONNECTING_NOTICE_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("start").args(["from_beginning", "offset", "from_timestamp"])))]
#[command(group(ArgGroup::new("output").args(["format", "json"])))]
pub struct ConsumeArgs {
    /// Topics to read (one or more); a TOPIC starting with ^ is a regular expression, and
    /// every topic whose name it matches is read (as kcat and librdkafka do).
    #[arg(required_unless_present = "topic_flags", value_name = "TOPIC", value_parser = parse_topic)]
    topics: Vec<TopicName>,
    /// A topic (or ^pattern) to read, kcat's way (-t TOPIC, repeatable).
    #[arg(short = 't', long = "topic", value_name = "TOPIC", value_parser = parse_topic)]
    topic_flags: Vec<TopicName>,
    /// Read as a member of this consumer group: the group shares the partitions among its
    /// members and continues from its committed offsets (-o stored, the default with a group);
    /// a partition with nothing committed starts at its end, or at its oldest record with
    /// --from-beginning. To start a group elsewhere, move its offsets with
    /// `spate group reset-offsets`.
    #[arg(short = 'G', long, conflicts_with_all = ["partition", "from_timestamp"])]
    group: Option<String>,
    /// With --group: a member silent this long (killed, hung) loses its partitions to the
    /// others (default 45000, within the broker's range: by default 100 to 1800000).
    #[arg(long, value_name = "MS", requires = "group")]
    session_timeout_ms: Option<u64>,
    /// Read only this partition (default: all).
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    /// Start at the oldest record (default: only new records); the same as `-o start`.
    #[arg(long)]
    from_beginning: bool,
    /// Where each partition starts, and for FROM:TO where it stops: start, end, stored (the
    /// --group's committed offsets, what a group reads by default; needs --group; a partition
    /// with nothing committed starts at its end), N (a partition shorter than N is named, then
    /// waited for, or skipped with -e or a range), -N (N before the end), +N (N after the start),
    /// @TIME (ms since the epoch, 2026-01-01, 2026-01-01T10:00:00Z, or @-1h before now);
    /// TO is end (as of now), N (offsets below N), +N (N records) or @TIME.
    #[arg(short = 'o', long, value_name = "SPEC", allow_hyphen_values = true,
          value_parser = parse_offset_spec)]
    offset: Option<crate::offsets::OffsetSpec>,
    /// Start at the first record at or after this time, in ms since the Unix epoch; the same
    /// as `-o @MS`.
    #[arg(long, value_name = "MS")]
    from_timestamp: Option<i64>,
    /// Stop after this many records.
    #[arg(short = 'c', long)]
    count: Option<u64>,
    /// Stop once every partition's end, as of the start, is reached.
    #[arg(short = 'e', long)]
    exit_at_end: bool,
    /// Output template: %t topic, %p partition, %o offset, %k key, %v value (%k{hex},
    /// %v{base64}, ...), %K key size, %S value size (-1: none), %T timestamp (ms), %d timestamp
    /// (RFC 3339), %d{strftime[%Y-%m-%d %H:%M:%S.%L]} timestamp in UTC as rpk writes it (%Y %m %d
    /// %H %M %S %L ms %F %T %s %j %a %b %Z %%), %h headers (k=v,...), %% a percent sign; \n \t
    /// escapes. One line per record.
    #[arg(short = 'f', long, value_name = "TEMPLATE", value_parser = Template::parse_argument)]
    format: Option<Template>,
    /// One JSON object per line: topic, partition, offset, timestamp, key, value, headers (a
    /// missing key or value is null).
    #[arg(short = 'J', long)]
    json: bool,
    /// How --json writes keys, values and header values: text (invalid UTF-8 as U+FFFD), hex or
    /// base64 (every byte kept).
    #[arg(long, value_enum, default_value_t = Encoding::Text, requires = "json")]
    encoding: Encoding,
    /// Query, as kcat's -Q: print where each partition's --offset start resolves
    /// (TOPIC<TAB>PARTITION<TAB>OFFSET; `-o @TIME` gives the first offset at or after TIME)
    /// and read nothing.
    #[arg(short = 'Q', long, conflicts_with = "group")]
    query: bool,
    /// Print TEXT for a missing key or value in templates (default: nothing).
    #[arg(short = 'Z', long, value_name = "TEXT")]
    null: Option<String>,
}

enum Output {
    Template(Template),
    Json(Encoding),
}

impl Output {
    fn write(
        &self,
        output: &mut impl Write,
        record: &spate_client::ConsumerRecord<'_>,
    ) -> std::io::Result<()> {
        match self {
            Output::Template(template) => template.write(output, record),
            Output::Json(encoding) => write_json(output, record, *encoding),
        }
    }
}

/// A topic argument: a name, or a pattern for names.
#[derive(Debug, Clone)]
enum TopicName {
    Exact(String),
    Pattern(regex::Regex),
}

fn parse_topic(text: &str) -> Result<TopicName, String> {
    if !text.starts_with('^') {
        return Ok(TopicName::Exact(text.to_string()));
    }
    regex::Regex::new(text)
        .map(TopicName::Pattern)
        .map_err(|error| error.to_string().replace('\n', " "))
}

/// The topics the arguments name, patterns matched against the broker's list, in order and
/// each once.
fn topic_names(client: &Client, topics: &[TopicName]) -> anyhow::Result<Vec<String>> {
    let mut listed: Option<Vec<String>> = None;
    let mut names: Vec<String> = Vec::new();
    for topic in topics {
        match topic {
            TopicName::Exact(name) => {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
            TopicName::Pattern(pattern) => {
                if listed.is_none() {
                    let topics = client
                        .admin()
                        .list_topics()
                        .wait()
                        .context("listing topics")?;
                    listed = Some(topics.into_iter().map(|topic| topic.name).collect());
                }
                let matching: Vec<&String> = listed
                    .iter()
                    .flatten()
                    .filter(|name| pattern.is_match(name))
                    .collect();
                if matching.is_empty() {
                    return Err(anyhow::Error::new(spate_client::Error::UnknownTopic {
                        topic: pattern.as_str().to_string(),
                    })
                    .context(format!("no topic matches {}", pattern.as_str())));
                }
                for name in matching {
                    if !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
        }
    }
    Ok(names)
}

/// One partition to read, and where it stops.
struct Assigned {
    topic: String,
    partition: u32,
    start: u64,
    stop: Option<u64>,
}

pub fn run(client: &Client, mut arguments: ConsumeArgs) -> anyhow::Result<()> {
    let flagged = std::mem::take(&mut arguments.topic_flags);
    arguments.topics.extend(flagged);
    let null_marker = arguments.null.as_deref().unwrap_or_default();
    let output = match (&arguments.format, arguments.json) {
        (Some(template), _) => Output::Template(template.clone().with_null_marker(null_marker)),
        (None, true) => Output::Json(arguments.encoding),
        (None, false) => Output::Template(Template::value_only().with_null_marker(null_marker)),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, interrupted.clone())
            .context("installing the signal handler")?;
    }

    let stored = arguments
        .offset
        .is_some_and(|spec| spec.from == Position::Stored);
    match (&arguments.group, arguments.offset) {
        (None, _) if stored => {
            return Err(UsageError(
                "-o stored reads a consumer group's committed offsets: name the group with \
                 --group (-G)"
                    .to_string(),
            )
            .into());
        }
        (Some(_), Some(_)) if !stored => {
            return Err(UsageError(
                "with --group, -o takes only `stored` (the group's committed offsets, the \
                 default); to start the group elsewhere, move its offsets with \
                 `spate group reset-offsets`"
                    .to_string(),
            )
            .into());
        }
        _ => {}
    }
    if let Some(group) = &arguments.group {
        let [TopicName::Exact(topic)] = arguments.topics.as_slice() else {
            anyhow::bail!("--group reads one topic; name only one, and no pattern");
        };
        let read = crate::group::GroupRead {
            topic,
            group,
            from_beginning: arguments.from_beginning,
            count: arguments.count,
            exit_at_end: arguments.exit_at_end,
            poll_interval: POLL_INTERVAL,
            session_timeout: arguments.session_timeout_ms.map(Duration::from_millis),
        };
        let mut stdout = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
        return crate::group::consume(
            client,
            read,
            &interrupted,
            &mut stdout,
            |output_stream, record| output.write(output_stream, record),
        );
    }

    let spec = start_spec(&arguments);
    let mut consumer = client.consumer(ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    })?;
    let mut assigned = Vec::new();
    let mut past_end = Vec::new();
    for topic in &topic_names(client, &arguments.topics)? {
        let (read, short) = plan_topic(client, topic, arguments.partition, &spec)?;
        assigned.extend(read);
        past_end.extend(short);
    }
    // A tailing consumer waits for an absolute offset to exist, as kcat does; one that stops
    // at the end (`-e`, a range) skips the partitions too short for it.
    let tailing = spec.to.is_none() && !arguments.query;
    if let (false, Position::Absolute(offset)) = (past_end.is_empty(), spec.from) {
        let names: Vec<String> = past_end
            .iter()
            .map(|short| format!("{}/{} (end {})", short.topic, short.partition, short.end))
            .collect();
        let outcome = if tailing { "waiting for it" } else { "skipped" };
        eprintln!(
            "spate: offset {offset} is past the end of {}: {outcome}",
            names.join(", ")
        );
    }
    let mut waiting = if tailing { past_end } else { Vec::new() };
    if arguments.query {
        let mut stdout = std::io::stdout().lock();
        for partition in &assigned {
            let line = format!(
                "{}\t{}\t{}\n",
                partition.topic, partition.partition, partition.start
            );
            if closed_pipe(stdout.write_all(line.as_bytes()))? {
                return Ok(());
            }
        }
        return Ok(());
    }
    let mut assigning = Vec::new();
    for partition in &assigned {
        assigning.push((
            partition,
            consumer.assign(
                &partition.topic,
                Some(&[partition.partition]),
                StartAt::Offset(partition.start),
            ),
        ));
    }
    for (partition, completion) in assigning {
        completion
            .wait()
            .with_context(|| format!("reading {}/{}", partition.topic, partition.partition))?;
    }
    // Partitions that stop somewhere, by topic; a partition leaves once it got there.
    let mut stops: BTreeMap<String, BTreeMap<u32, u64>> = BTreeMap::new();
    for partition in &assigned {
        if let Some(stop) = partition.stop {
            stops
                .entry(partition.topic.clone())
                .or_default()
                .insert(partition.partition, stop);
        }
    }
    // Either every partition has a stop (a range, --exit-at-end) or none has.
    let bounded = spec.to.is_some() || (assigned.is_empty() && waiting.is_empty());
    retire_finished(&consumer, &mut stops);

    let mut stdout = BufWriter::with_capacity(OUTPUT_BUFFER_BYTES, std::io::stdout().lock());
    let mut printed: u64 = 0;
    let limit = arguments.count.unwrap_or(u64::MAX);
    let mut reconnecting = Reconnecting::new();
    while printed < limit && !(bounded && stops.is_empty()) && !interrupted.load(Ordering::Relaxed)
    {
        if !waiting.is_empty() {
            assign_reached(client, &consumer, &mut waiting)?;
        }
        let polled = consumer.poll(POLL_INTERVAL).context("reading records")?;
        for record in &polled {
            if bounded {
                // Records past a partition's stop belong to no one here.
                let stop = stops
                    .get(record.topic())
                    .and_then(|partitions| partitions.get(&record.partition()));
                match stop {
                    Some(stop) if record.offset() < *stop => {}
                    _ => continue,
                }
            }
            if closed_pipe(output.write(&mut stdout, &record))? {
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
        if bounded {
            retire_finished(&consumer, &mut stops);
        }
        reconnecting.update(consumer.connection_trouble());
    }
    reconnecting.update(None);
    if closed_pipe(stdout.flush())? {
        return Ok(());
    }
    Ok(())
}

/// The start (and stop) the arguments ask for, whichever way they were given.
fn start_spec(arguments: &ConsumeArgs) -> crate::offsets::OffsetSpec {
    let mut spec = match (arguments.offset, arguments.from_timestamp) {
        (Some(spec), _) => spec,
        (None, Some(timestamp)) => crate::offsets::OffsetSpec {
            from: Position::Time(timestamp),
            to: None,
        },
        (None, None) if arguments.from_beginning => crate::offsets::OffsetSpec {
            from: Position::Start,
            to: None,
        },
        (None, None) => crate::offsets::OffsetSpec {
            from: Position::End,
            to: None,
        },
    };
    if arguments.exit_at_end && spec.to.is_none() {
        spec.to = Some(Stop::End);
    }
    spec
}

/// A partition whose end is short of an absolute start offset.
struct ShortPartition {
    topic: String,
    partition: u32,
    /// Its end when planned.
    end: u64,
    /// The offset it is to be read from once it exists.
    start: u64,
}

/// Assigns the `waiting` partitions whose end reached their start offset, and keeps the rest
/// waiting. Asked once per poll: one offsets request per topic with partitions still short.
fn assign_reached(
    client: &Client,
    consumer: &spate_client::Consumer,
    waiting: &mut Vec<ShortPartition>,
) -> anyhow::Result<()> {
    let mut topics: Vec<String> = waiting.iter().map(|short| short.topic.clone()).collect();
    topics.dedup();
    for topic in topics {
        let partitions: Vec<u32> = waiting
            .iter()
            .filter(|short| short.topic == topic)
            .map(|short| short.partition)
            .collect();
        let ends: BTreeMap<u32, Option<u64>> = client
            .admin()
            .list_offsets(&topic, Some(&partitions), OffsetSpec::Latest)
            .wait()
            .with_context(|| format!("reading topic {topic:?}"))?
            .into_iter()
            .map(|found| (found.partition, found.offset))
            .collect();
        let mut still_short = Vec::new();
        for short in waiting.drain(..) {
            let end = ends.get(&short.partition).copied().flatten();
            if short.topic != topic || end.is_none_or(|end| end < short.start) {
                still_short.push(short);
                continue;
            }
            consumer
                .assign(
                    &topic,
                    Some(&[short.partition]),
                    StartAt::Offset(short.start),
                )
                .wait()
                .with_context(|| format!("reading {topic}/{}", short.partition))?;
        }
        *waiting = still_short;
    }
    Ok(())
}

/// Each partition's plan for `topic`: the partitions to read, and those too short for an
/// absolute start.
fn plan_topic(
    client: &Client,
    topic: &str,
    partition: Option<u32>,
    spec: &crate::offsets::OffsetSpec,
) -> anyhow::Result<(Vec<Assigned>, Vec<ShortPartition>)> {
    let admin = client.admin();
    let partitions = partition.map(|partition| vec![partition]);
    let lookup = |offset_spec: OffsetSpec| -> anyhow::Result<BTreeMap<u32, Option<u64>>> {
        Ok(admin
            .list_offsets(topic, partitions.as_deref(), offset_spec)
            .wait()
            .with_context(|| format!("reading topic {topic:?}"))?
            .into_iter()
            .map(|found| (found.partition, found.offset))
            .collect())
    };
    let starts = lookup(OffsetSpec::Earliest)?;
    let ends = lookup(OffsetSpec::Latest)?;
    let start_times = match spec.from {
        Position::Time(time) => Some(lookup(OffsetSpec::Timestamp(time.max(0)))?),
        _ => None,
    };
    let stop_times = match spec.to {
        Some(Stop::Time(time)) => Some(lookup(OffsetSpec::Timestamp(time.max(0)))?),
        _ => None,
    };
    let mut read = Vec::new();
    let mut skipped = Vec::new();
    for (&partition, &end) in &ends {
        let end = end.unwrap_or(0);
        let bounds = Bounds {
            log_start: starts.get(&partition).copied().flatten().unwrap_or(0),
            end,
        };
        let at_time = |times: &Option<BTreeMap<u32, Option<u64>>>| {
            times
                .as_ref()
                .and_then(|times| times.get(&partition).copied().flatten())
        };
        let mut plan = Plan::resolve(spec, bounds, at_time(&start_times));
        if let Some(stop) = spec.to {
            plan = plan.with_stop(stop, end, at_time(&stop_times));
        }
        match plan {
            Plan::Read { start, stop } => read.push(Assigned {
                topic: topic.to_string(),
                partition,
                start,
                stop,
            }),
            Plan::PastEnd => skipped.push(ShortPartition {
                topic: topic.to_string(),
                partition,
                end,
                start: match spec.from {
                    Position::Absolute(offset) => offset,
                    _ => unreachable!("only an absolute start can be past the end"),
                },
            }),
        }
    }
    Ok((read, skipped))
}

/// Drops partitions whose position reached their stop.
fn retire_finished(
    consumer: &spate_client::Consumer,
    stops: &mut BTreeMap<String, BTreeMap<u32, u64>>,
) {
    for (topic, partitions) in stops.iter_mut() {
        partitions.retain(|partition, stop| {
            consumer
                .position(topic, *partition)
                .is_some_and(|position| position < *stop)
        });
    }
    stops.retain(|_, partitions| !partitions.is_empty());
}

/// Tells a terminal, on stderr, that fetches have been failing (the broker is down or
/// unreachable) and that the consumer keeps trying, as kcat does; and when it is back. Pipes and
/// files get nothing: the consumer simply goes on.
struct Reconnecting {
    enabled: bool,
    shown: bool,
}

impl Reconnecting {
    fn new() -> Self {
        Self {
            enabled: std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    fn update(&mut self, trouble: Option<(Instant, String)>) {
        if !self.enabled {
            return;
        }
        match trouble {
            Some((since, reason)) if since.elapsed() >= RECONNECTING_NOTICE_AFTER => {
                if !self.shown {
                    eprintln!("spate: {reason}; reconnecting (Ctrl-C to stop)");
                    self.shown = true;
                }
            }
            Some(_) => {}
            None => {
                if self.shown {
                    eprintln!("spate: reconnected");
                    self.shown = false;
                }
            }
        }
    }
}

/// True when the reader went away (`spate consume ... | head`): a normal end, not a failure.
fn closed_pipe(result: std::io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(error) if error.kind() == ErrorKind::BrokenPipe => Ok(true),
        Err(error) => Err(anyhow::Error::new(error).context("writing output")),
    }
}
