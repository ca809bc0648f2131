//! `spate produce TOPIC`: one record per input line (or per `-D` delimiter, or the whole input
//! with `-l`), then the count acknowledged.
//!
//! Input is read through a large buffer on a reader thread and each record goes straight into
//! the producer's batch (one copy); outcomes arrive in callbacks that only bump counters, so a
//! pipe of short lines is limited by the broker, not by this tool. The main thread waits for the
//! reader to finish or for Ctrl-C/SIGTERM, then flushes what was sent and says how it ended:
//! how many records were acknowledged, and which were not. A second Ctrl-C exits at once.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};
use spate_client::{Acks, Client, Error, Producer, ProducerConfig, ProducerRecord};

use crate::input_format::InputTemplate;
use crate::terminal::Progress;
use crate::Interrupted;

/// Bytes of input buffered per read.
const INPUT_BUFFER_BYTES: usize = 1024 * 1024;
/// How often the main thread looks at the signal flag and redraws progress while the reader
/// works.
const WATCH_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// Topic to write to.
    #[arg(required_unless_present = "topic_flag", conflicts_with = "topic_flag")]
    topic: Option<String>,
    /// The topic, kcat's way (-t TOPIC).
    #[arg(short = 't', long = "topic", value_name = "TOPIC")]
    topic_flag: Option<String>,
    /// Split each record at the first SEP into key and value (a record without SEP is an
    /// error). Escapes: \t \n \r \\ \0.
    #[arg(short = 'K', long, value_name = "SEP", value_parser = parse_delimiter)]
    key_separator: Option<Delimiter>,
    /// Give every record this key (it picks the partition like any key).
    #[arg(
        short = 'k',
        long,
        value_name = "KEY",
        conflicts_with = "key_separator"
    )]
    key: Option<String>,
    /// Records end at DELIM instead of a newline. Escapes: \t \n \r \\ \0.
    #[arg(short = 'D', long, value_name = "DELIM", value_parser = parse_delimiter)]
    delimiter: Option<Delimiter>,
    /// The whole input (stdin or --file) is one record.
    #[arg(short = 'l', long, conflicts_with = "delimiter")]
    whole: bool,
    /// Input template, as rpk's: %k key, %v value, %T timestamp (ms), literals between them;
    /// the text after the last field ends a record (default: a newline), e.g. '%k %v\n'.
    #[arg(short = 'f', long, value_name = "TEMPLATE",
          value_parser = InputTemplate::parse_argument,
          conflicts_with_all = ["key_separator", "delimiter", "whole"])]
    format: Option<InputTemplate>,
    /// Write every record to this partition. Default: by key hash (Kafka's murmur2); keyless
    /// records go to a random partition per batch (Kafka's sticky partitioner), so small
    /// produces spread over the partitions.
    #[arg(short = 'p', long)]
    partition: Option<u32>,
    /// Acknowledgement to wait for.
    #[arg(long, value_enum, default_value_t = AcksArg::All)]
    acks: AcksArg,
    /// Add this header to every record, KEY=VALUE (repeatable).
    #[arg(short = 'H', long = "header", value_parser = crate::parse_key_value)]
    headers: Vec<(String, String)>,
    /// Read records from this file instead of stdin.
    #[arg(short = 'F', long)]
    file: Option<PathBuf>,
}

/// A non-empty byte string given on the command line, escapes resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimiter(Vec<u8>);

/// Parses a separator or delimiter: `\t`, `\n`, `\r`, `\\` and `\0` are escapes (shells pass
/// them literally); empty is refused.
pub fn parse_delimiter(text: &str) -> Result<Delimiter, String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut characters = text.chars();
    while let Some(character) = characters.next() {
        if character != '\\' {
            let mut buffer = [0u8; 4];
            bytes.extend_from_slice(character.encode_utf8(&mut buffer).as_bytes());
            continue;
        }
        match characters.next() {
            Some('t') => bytes.push(b'\t'),
            Some('n') => bytes.push(b'\n'),
            Some('r') => bytes.push(b'\r'),
            Some('0') => bytes.push(0),
            Some('\\') | None => bytes.push(b'\\'),
            Some(other) => {
                bytes.push(b'\\');
                let mut buffer = [0u8; 4];
                bytes.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
    if bytes.is_empty() {
        return Err("must not be empty".to_string());
    }
    Ok(Delimiter(bytes))
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

/// Outcomes, updated by the reader (sent) and by delivery callbacks on the client's I/O thread.
#[derive(Default)]
struct Tally {
    sent: AtomicU64,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    /// The first failure and the number (from 1) of its record.
    first_error: Mutex<Option<(u64, Error)>>,
}

impl Tally {
    fn first_error(&self) -> Option<(u64, Error)> {
        self.first_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// How the reader thread ended.
enum ReadEnd {
    /// Every record of the input was handed to the producer.
    Complete,
    /// It stopped early: bad input, a read error or a refused send.
    Failed(anyhow::Error),
}

pub fn run(client: &Client, mut arguments: ProduceArgs, timeout: Duration) -> anyhow::Result<()> {
    if arguments.topic.is_none() {
        arguments.topic = arguments.topic_flag.take();
    }
    let input: Box<dyn Read + Send> = match &arguments.file {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("opening {}", path.display()))?)
        }
        None => Box::new(std::io::stdin()),
    };
    let signals = Signals::install()?;
    let producer = client.producer(ProducerConfig {
        acks: arguments.acks.into(),
        ..ProducerConfig::default()
    })?;
    let tally = Arc::new(Tally::default());
    let acks_none = arguments.acks == AcksArg::None;
    let topic = arguments.topic.clone().unwrap_or_default();

    let (finished, read_end) = mpsc::channel();
    {
        let producer = producer.clone();
        let tally = tally.clone();
        // Not joined: on a signal it may be blocked reading a terminal or an idle pipe.
        std::thread::Builder::new()
            .name("spate-produce-input".into())
            .spawn(move || {
                let end = match read_and_send(input, &arguments, &producer, &tally) {
                    Ok(()) => ReadEnd::Complete,
                    Err(error) => ReadEnd::Failed(error),
                };
                let _ = finished.send(end);
            })
            .context("starting the input reader")?;
    }

    let mut progress = Progress::new();
    let end = loop {
        if let Some(signal) = signals.received() {
            break Err(signal);
        }
        match read_end.recv_timeout(WATCH_INTERVAL) {
            Ok(end) => break Ok(end),
            Err(mpsc::RecvTimeoutError::Timeout) => progress.tick(|| {
                format!(
                    "{} records read, {} acknowledged",
                    tally.sent.load(Ordering::Relaxed),
                    tally.acknowledged.load(Ordering::Relaxed)
                )
            }),
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Ok(ReadEnd::Failed(anyhow::anyhow!("the input reader stopped")))
            }
        }
    };
    progress.finish();

    let interrupted = |signal: Signal, settled: bool| {
        anyhow::Error::new(Interrupted {
            exit_code: signal.exit_code,
            message: format!(
                "{} received: stopped; {}",
                signal.name,
                stopped_summary(&tally, settled, timeout)
            ),
        })
    };
    match end {
        Ok(ReadEnd::Complete) => {
            // Every record is handed over: wait for all of them, however long the producer's
            // own delivery timeout lets that take, unless a signal says to stop waiting.
            match settle(&producer, None, Some(&signals)) {
                Settled::Done(result) => result.context("delivering the records")?,
                Settled::Interrupted(signal) => {
                    let settled =
                        matches!(settle(&producer, Some(timeout), None), Settled::Done(_));
                    return Err(interrupted(signal, settled));
                }
                Settled::TimedOut => unreachable!("no deadline was set"),
            }
            finish(&tally, &topic, acks_none)
        }
        Ok(ReadEnd::Failed(error)) => {
            let settled = match settle(&producer, Some(timeout), Some(&signals)) {
                Settled::Done(_) => true,
                Settled::TimedOut => false,
                Settled::Interrupted(signal) => return Err(interrupted(signal, false)),
            };
            Err(error.context(stopped_summary(&tally, settled, timeout)))
        }
        Err(signal) => {
            let settled = matches!(settle(&producer, Some(timeout), None), Settled::Done(_));
            Err(interrupted(signal, settled))
        }
    }
}

/// How waiting for the records sent ended.
enum Settled {
    Done(Result<(), Error>),
    TimedOut,
    Interrupted(Signal),
}

/// Closes the producer and waits for every record sent, up to `timeout` if one is given, and
/// until a signal arrives if `signals` are given (a second signal exits the process anyway).
fn settle(producer: &Producer, timeout: Option<Duration>, signals: Option<&Signals>) -> Settled {
    let mut closed = producer.close();
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    loop {
        let wait = match deadline {
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return Settled::TimedOut;
                }
                WATCH_INTERVAL.min(deadline - now)
            }
            None => WATCH_INTERVAL,
        };
        if let Some(result) = closed.wait_timeout(wait) {
            return Settled::Done(result);
        }
        if let Some(signal) = signals.and_then(Signals::received) {
            return Settled::Interrupted(signal);
        }
    }
}

/// What became of the records of a produce that stopped early, as one clause.
fn stopped_summary(tally: &Tally, settled: bool, timeout: Duration) -> String {
    let sent = tally.sent.load(Ordering::Relaxed);
    let acknowledged = tally.acknowledged.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let unresolved = sent.saturating_sub(acknowledged + failed);
    let mut summary = format!(
        "{} of the {} sent acknowledged",
        records(acknowledged),
        sent
    );
    if failed > 0 {
        let first = tally
            .first_error()
            .map(|(number, _)| format!(" (first: record {number})"))
            .unwrap_or_default();
        summary.push_str(&format!(", {failed} failed{first}"));
    }
    if unresolved > 0 {
        let wait = if settled {
            String::new()
        } else {
            format!(" within {} ms", timeout.as_millis())
        };
        summary.push_str(&format!(
            ", {unresolved} not answered{wait} (they may still be stored)"
        ));
    }
    summary.push_str(&format!("; records after record {sent} were not sent"));
    summary
}

/// The report of a produce that read all its input.
fn finish(tally: &Tally, topic: &str, acks_none: bool) -> anyhow::Result<()> {
    let sent = tally.sent.load(Ordering::Relaxed);
    let acknowledged = tally.acknowledged.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    if failed > 0 {
        let (number, first) = tally.first_error().expect("a failure records its error");
        return Err(anyhow::Error::new(first).context(format!(
            "producing to {topic:?}: {failed} of {sent} records failed, the first is record \
             {number} ({acknowledged} acknowledged)"
        )));
    }
    let mut stdout = std::io::stdout().lock();
    if acks_none {
        writeln!(
            stdout,
            "{} sent (acks=none: the broker does not acknowledge)",
            records(sent)
        )?;
    } else {
        writeln!(stdout, "{} acknowledged", records(acknowledged))?;
    }
    Ok(())
}

/// "1 record", "2 records".
fn records(count: u64) -> String {
    if count == 1 {
        "1 record".to_string()
    } else {
        format!("{count} records")
    }
}

/// The reader thread: splits the input into records and sends each.
fn read_and_send(
    input: Box<dyn Read + Send>,
    arguments: &ProduceArgs,
    producer: &Producer,
    tally: &Arc<Tally>,
) -> anyhow::Result<()> {
    let mut input = BufReader::with_capacity(INPUT_BUFFER_BYTES, input);
    let headers: Vec<(&str, &[u8])> = arguments
        .headers
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_bytes()))
        .collect();
    let delimiter: &[u8] = match (&arguments.delimiter, &arguments.format) {
        (Some(Delimiter(bytes)), _) => bytes,
        (None, Some(template)) => template.delimiter(),
        (None, None) => b"\n",
    };
    let fixed_key = arguments.key.as_deref().map(str::as_bytes);
    let mut record_bytes = Vec::with_capacity(4096);
    loop {
        record_bytes.clear();
        let more = if arguments.whole {
            input
                .read_to_end(&mut record_bytes)
                .context("reading input")?;
            false
        } else {
            read_record(&mut input, delimiter, &mut record_bytes).context("reading input")?
        };
        let number = tally.sent.load(Ordering::Relaxed) + 1;
        // The input's end gives no record of its own, unless --whole reads an empty input.
        if !more && record_bytes.is_empty() && !arguments.whole {
            return Ok(());
        }
        let mut timestamp = None;
        let (key, value) = match (&arguments.key_separator, &arguments.format) {
            (Some(Delimiter(separator)), _) => match split_once(&record_bytes, separator) {
                Some((key, value)) => (Some(key), value),
                None => anyhow::bail!(
                    "record {number} has no key separator {:?}",
                    String::from_utf8_lossy(separator)
                ),
            },
            (None, Some(template)) => match template.split(&record_bytes) {
                Some(fields) => {
                    timestamp = fields.timestamp_ms;
                    (fields.key.or(fixed_key), fields.value)
                }
                None => anyhow::bail!("record {number} does not match the --format template"),
            },
            (None, None) => (fixed_key, &record_bytes[..]),
        };
        let record = ProducerRecord {
            topic: arguments.topic.as_deref().unwrap_or_default(),
            partition: arguments.partition,
            key,
            value: Some(value),
            headers: &headers,
            timestamp,
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
                    first.get_or_insert((number, error));
                }
            })
            .with_context(|| format!("producing to {:?}", arguments.topic))?;
        tally.sent.fetch_add(1, Ordering::Relaxed);
        if !more {
            return Ok(());
        }
    }
}

/// Reads one record ending at `delimiter` into `record` (without the delimiter). Returns
/// whether a delimiter ended it (false at the end of the input).
fn read_record(
    input: &mut impl BufRead,
    delimiter: &[u8],
    record: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let last = *delimiter.last().expect("delimiters are not empty");
    loop {
        if input.read_until(last, record)? == 0 || record.last() != Some(&last) {
            return Ok(false);
        }
        if record.ends_with(delimiter) {
            record.truncate(record.len() - delimiter.len());
            return Ok(true);
        }
    }
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

/// A signal that stops the produce early.
#[derive(Debug, Clone, Copy)]
struct Signal {
    name: &'static str,
    exit_code: u8,
}

/// Ctrl-C and SIGTERM, noted in a flag; a second one of either exits at once.
struct Signals {
    received: Arc<AtomicUsize>,
}

impl Signals {
    fn install() -> anyhow::Result<Self> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let received = Arc::new(AtomicUsize::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        for (signal, exit_code) in [
            (SIGINT, crate::exit::INTERRUPTED),
            (SIGTERM, crate::exit::TERMINATED),
        ] {
            // Registered first, so it sees the flag as it was before this signal.
            signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(exit_code),
                stopping.clone(),
            )
            .context("installing the signal handler")?;
            signal_hook::flag::register(signal, stopping.clone())
                .context("installing the signal handler")?;
            signal_hook::flag::register_usize(signal, received.clone(), signal as usize)
                .context("installing the signal handler")?;
        }
        Ok(Self { received })
    }

    /// The signal that arrived, if one did.
    fn received(&self) -> Option<Signal> {
        match self.received.load(Ordering::Relaxed) {
            0 => None,
            signal if signal == signal_hook::consts::SIGTERM as usize => Some(Signal {
                name: "SIGTERM",
                exit_code: crate::exit::TERMINATED,
            }),
            _ => Some(Signal {
                name: "SIGINT",
                exit_code: crate::exit::INTERRUPTED,
            }),
        }
    }
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

    #[test]
    fn delimiters_resolve_escapes_and_refuse_the_empty_string() {
        assert_eq!(parse_delimiter("\\t"), Ok(Delimiter(b"\t".to_vec())));
        assert_eq!(parse_delimiter("::"), Ok(Delimiter(b"::".to_vec())));
        assert_eq!(parse_delimiter("\\0|"), Ok(Delimiter(b"\0|".to_vec())));
        assert_eq!(parse_delimiter("a\\b"), Ok(Delimiter(b"a\\b".to_vec())));
        assert!(parse_delimiter("").is_err());
    }

    #[test]
    fn records_end_at_a_multi_byte_delimiter_or_the_input_end() {
        let mut input = &b"a|b||c|d||"[..];
        let mut records = Vec::new();
        loop {
            let mut record = Vec::new();
            let more = read_record(&mut input, b"||", &mut record).unwrap();
            records.push(record);
            if !more {
                break;
            }
        }
        assert_eq!(records, vec![b"a|b".to_vec(), b"c|d".to_vec(), Vec::new()]);
    }
}
