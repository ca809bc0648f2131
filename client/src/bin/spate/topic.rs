//! `spate topic create|list|describe|delete|alter|add-partitions|trim`: thin wrappers over the client's `Admin`.
//!
//! Output is plain text meant for people and for `grep`/`awk` alike: tab-separated columns,
//! with a bold header line only when stdout is a terminal; `--json` prints one JSON document
//! instead (`output`). Config flags that contradict each other are refused before anything is
//! sent, so no precedence rule has to be remembered.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;
use spate_client::{Client, ErrorCode, NewTopic, OffsetSpec};
use spate_protocol::api::config::name;

use crate::output::{write_json, OutputArgs, UsageError};
use crate::terminal::{bold, stdout_colour};

/// Names starting with this are the broker's own topics (`__consumer_offsets`).
const INTERNAL_TOPIC_PREFIX: &str = "__";

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics: name and partition count, one per line. The broker's own topics (names
    /// starting with "__") only with --internal.
    List(ListArgs),
    /// Show a topic's partitions (owner shard, offsets) and configuration.
    Describe {
        /// Topic name.
        name: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Delete topics and all their records: by name, or every topic whose name matches --regex.
    Delete(DeleteArgs),
    /// Change a topic's configuration: set keys (--config, --retention-*), or return them to the
    /// broker default (--reset).
    Alter(AlterArgs),
    /// Grow a topic to --count partitions in all (only growth: a count not larger than today's
    /// is refused). Existing records stay where they are; records with keys may hash to another
    /// partition from now on.
    AddPartitions(AddPartitionsArgs),
    /// Delete the records below an offset (they are gone for every reader; the offset becomes
    /// the partition's log start).
    Trim(TrimArgs),
}

/// Config values given with dedicated flags, shared by `create` and `alter`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Keep at most this many bytes per partition (-1: unlimited). Same as --config
    /// retention.bytes=N; giving both is refused.
    #[arg(long, allow_negative_numbers = true)]
    retention_bytes: Option<i64>,
    /// Keep records for this many milliseconds (-1: forever). Same as --config retention.ms=N;
    /// giving both is refused.
    #[arg(long, allow_negative_numbers = true)]
    retention_ms: Option<i64>,
    /// Any topic config, KEY=VALUE (repeatable). Keys: retention.bytes, retention.ms,
    /// segment.bytes, segment.ms, durability (fsync-every-append | group-commit),
    /// group.commit.bytes, group.commit.us, max.message.bytes, cleanup.policy (delete | compact |
    /// compact,delete), min.cleanable.dirty.ratio, min.compaction.lag.ms,
    /// max.compaction.lag.ms, delete.retention.ms, write.caching (true: consumers see records
    /// once written, before their fsync).
    #[arg(long = "config", value_parser = crate::parse_key_value, value_name = "KEY=VALUE")]
    configs: Vec<(String, String)>,
}

impl ConfigArgs {
    /// Every entry to set, each key once; a key given twice (by two flags, or twice with
    /// --config) is a usage error rather than a silent choice of one value.
    fn entries(&self) -> Result<Vec<(String, String)>, UsageError> {
        let mut entries: Vec<(String, String, String)> = Vec::new();
        let dedicated = [
            (
                name::RETENTION_BYTES,
                "--retention-bytes",
                self.retention_bytes,
            ),
            (name::RETENTION_MS, "--retention-ms", self.retention_ms),
        ];
        for (key, flag, value) in dedicated {
            if let Some(value) = value {
                entries.push((
                    key.to_string(),
                    value.to_string(),
                    format!("{flag} {value}"),
                ));
            }
        }
        for (key, value) in &self.configs {
            if let Some((_, _, earlier)) = entries.iter().find(|(known, _, _)| known == key) {
                return Err(UsageError(format!(
                    "{key} is given twice ({earlier} and --config {key}={value}): give it once"
                )));
            }
            entries.push((
                key.clone(),
                value.clone(),
                format!("--config {key}={value}"),
            ));
        }
        Ok(entries
            .into_iter()
            .map(|(key, value, _)| (key, value))
            .collect())
    }

    fn is_empty(&self) -> bool {
        self.retention_bytes.is_none() && self.retention_ms.is_none() && self.configs.is_empty()
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Replicas of each partition in a cluster (default: the cluster's, 3 or every broker when
    /// fewer; a single broker holds one).
    #[arg(long)]
    replication_factor: Option<u16>,
    #[command(flatten)]
    config: ConfigArgs,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Also list the broker's own topics (names starting with "__").
    #[arg(long, short = 'a')]
    internal: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("which").required(true).args(["names", "regex"])))]
pub struct DeleteArgs {
    /// Topic names.
    names: Vec<String>,
    /// Delete every topic whose whole name matches this regular expression (the broker's own
    /// "__" topics are never matched).
    #[arg(long, value_name = "PATTERN")]
    regex: Option<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct AlterArgs {
    /// Topic name.
    name: String,
    #[command(flatten)]
    config: ConfigArgs,
    /// Return a config key to the broker default (repeatable).
    #[arg(long = "reset", value_name = "KEY")]
    resets: Vec<String>,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct AddPartitionsArgs {
    /// Topic name.
    name: String,
    /// The new total number of partitions (not the number to add).
    #[arg(long, value_name = "N")]
    count: u32,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct TrimArgs {
    /// Topic name.
    name: String,
    /// The partitions to trim, e.g. 0 or 0,2 (default: every partition).
    #[arg(long, value_delimiter = ',', value_name = "P")]
    partition: Vec<u32>,
    /// Delete the records below this offset; "end" deletes every record there is now.
    #[arg(long, value_name = "O|end", value_parser = parse_trim_offset)]
    offset: TrimOffset,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Clone, Copy)]
enum TrimOffset {
    Before(u64),
    End,
}

fn parse_trim_offset(text: &str) -> Result<TrimOffset, String> {
    if text == "end" {
        return Ok(TrimOffset::End);
    }
    text.parse()
        .map(TrimOffset::Before)
        .map_err(|_| format!("expected an offset (0, 1, ...) or \"end\", got {text:?}"))
}

pub fn run(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        TopicCommand::Create(arguments) => create(client, arguments, &mut stdout),
        TopicCommand::List(arguments) => list(client, arguments, &mut stdout),
        TopicCommand::Describe { name, output } => describe(client, &name, output, &mut stdout),
        TopicCommand::Delete(arguments) => delete(client, arguments, &mut stdout),
        TopicCommand::Alter(arguments) => alter(client, arguments, &mut stdout),
        TopicCommand::AddPartitions(arguments) => add_partitions(client, arguments, &mut stdout),
        TopicCommand::Trim(arguments) => trim(client, arguments, &mut stdout),
    }
}

fn create(client: &Client, arguments: CreateArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let mut topic = NewTopic::new(arguments.name.clone(), arguments.partitions)
        .with_replication_factor(arguments.replication_factor.unwrap_or(0));
    for (key, value) in arguments.config.entries()? {
        topic = topic.with_config(key, value);
    }
    match client.admin().create_topic(topic).wait() {
        Ok(()) => {}
        // The broker's answer says it twice ("topic already exists (topic orders already
        // exists)"): one plain sentence is enough.
        Err(error) if error.code() == Some(ErrorCode::TopicAlreadyExists) => {
            anyhow::bail!("topic {} already exists", arguments.name)
        }
        Err(error) => {
            return Err(error).with_context(|| format!("creating topic {:?}", arguments.name))
        }
    }
    if arguments.output.json {
        return write_json(
            stdout,
            &json!({"topic": arguments.name, "partitions": arguments.partitions, "created": true}),
        );
    }
    writeln!(
        stdout,
        "created topic {} with {} partition{}",
        arguments.name,
        arguments.partitions,
        plural(arguments.partitions)
    )?;
    Ok(())
}

fn list(client: &Client, arguments: ListArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let topics: Vec<_> = client
        .admin()
        .list_topics()
        .wait()
        .context("listing topics")?
        .into_iter()
        .filter(|topic| arguments.internal || !is_internal(&topic.name))
        .collect();
    if arguments.output.json {
        let topics: Vec<_> = topics
            .iter()
            .map(|topic| json!({"topic": topic.name, "partitions": topic.partition_count}))
            .collect();
        return write_json(stdout, &json!(topics));
    }
    if stdout_colour() {
        writeln!(stdout, "{}", bold("TOPIC\tPARTITIONS", true))?;
    }
    for topic in topics {
        writeln!(stdout, "{}\t{}", topic.name, topic.partition_count)?;
    }
    Ok(())
}

fn describe(
    client: &Client,
    name: &str,
    output: OutputArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let description = client
        .admin()
        .describe_topic(name)
        .wait()
        .with_context(|| format!("describing topic {name:?}"))?;
    // Every key with its value and source: set on the topic, else the broker's default
    // (a broker too old to report defaults leaves just the set keys).
    let defaults = client
        .admin()
        .topic_config_defaults()
        .wait()
        .unwrap_or_default();
    let mut configs: BTreeMap<&str, (&str, &str)> = defaults
        .iter()
        .map(|(key, value)| (key.as_str(), (value.as_str(), "default")))
        .collect();
    for (key, value) in &description.configs {
        configs.insert(key, (value, "topic"));
    }
    if output.json {
        let partitions: Vec<_> = description
            .partitions
            .iter()
            .map(crate::cluster::partition_json)
            .collect();
        let configs: BTreeMap<&str, _> = configs
            .iter()
            .map(|(key, (value, source))| (*key, json!({"value": value, "source": source})))
            .collect();
        return write_json(
            stdout,
            &json!({
                "topic": description.name,
                "configs": configs,
                "partitions": partitions,
            }),
        );
    }
    let colour = stdout_colour();
    writeln!(stdout, "{}\t{}", bold("topic", colour), description.name)?;
    writeln!(
        stdout,
        "{}\t{}",
        bold("partitions", colour),
        description.partitions.len()
    )?;
    writeln!(stdout, "{}", bold("config", colour))?;
    for (key, (value, source)) in &configs {
        writeln!(stdout, "  {key}={value}\t{source}")?;
    }
    writeln!(
        stdout,
        "{}",
        bold(
            "partition\tshard\tlog-start\thigh-watermark\tstatus",
            colour
        )
    )?;
    for partition in &description.partitions {
        // An offline partition has no offsets to show: its status says why.
        match &partition.offline_reason {
            None if partition.opening => writeln!(
                stdout,
                "{}\t{}\t-\t-\topening",
                partition.partition, partition.shard,
            )?,
            None => writeln!(
                stdout,
                "{}\t{}\t{}\t{}\tonline",
                partition.partition,
                partition.shard,
                partition.log_start_offset,
                partition.high_watermark
            )?,
            Some(reason) => writeln!(
                stdout,
                "{}\t{}\t-\t-\toffline: {reason}",
                partition.partition, partition.shard,
            )?,
        }
    }
    Ok(())
}

fn delete(client: &Client, arguments: DeleteArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let admin = client.admin();
    let names = match &arguments.regex {
        None => arguments.names,
        Some(pattern) => {
            // Anchored: `orders` deletes orders, not orders-archive (as `kafka-topics --delete`).
            let regex = regex::Regex::new(&format!("^(?:{pattern})$"))
                .map_err(|error| UsageError(format!("--regex {pattern:?}: {error}")))?;
            let matching: Vec<String> = admin
                .list_topics()
                .wait()
                .context("listing topics")?
                .into_iter()
                .map(|topic| topic.name)
                .filter(|name| !is_internal(name) && regex.is_match(name))
                .collect();
            if matching.is_empty() {
                anyhow::bail!("no topic matches --regex {pattern:?}");
            }
            matching
        }
    };
    let outcomes = admin
        .delete_topics(&names)
        .wait()
        .context("deleting topics")?;
    let failed = outcomes
        .iter()
        .filter(|(_, outcome)| outcome.is_err())
        .count();
    if arguments.output.json {
        let results: Vec<_> = outcomes
            .iter()
            .map(|(name, outcome)| match outcome {
                Ok(()) => json!({"topic": name, "deleted": true}),
                Err(error) => json!({"topic": name, "deleted": false, "error": error.to_string()}),
            })
            .collect();
        write_json(stdout, &json!(results))?;
    } else {
        for (name, outcome) in &outcomes {
            if outcome.is_ok() {
                writeln!(stdout, "deleted topic {name}")?;
            }
        }
    }
    stdout.flush()?;
    // Report the failures as one error (the exit code follows the first one's kind).
    let mut errors = outcomes.into_iter().filter_map(|(name, outcome)| {
        outcome
            .err()
            .map(|error| anyhow::Error::new(error).context(format!("deleting topic {name:?}")))
    });
    match (errors.next(), failed) {
        (None, _) => Ok(()),
        (Some(error), 1) => Err(error),
        (Some(error), _) => Err(error.context(format!("{failed} of the topics were not deleted"))),
    }
}

fn alter(client: &Client, arguments: AlterArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    if arguments.config.is_empty() && arguments.resets.is_empty() {
        return Err(UsageError(
            "nothing to change: give --config KEY=VALUE, --retention-ms, --retention-bytes or --reset KEY"
                .to_string(),
        )
        .into());
    }
    let entries = arguments.config.entries()?;
    if let Some(key) = arguments
        .resets
        .iter()
        .find(|key| entries.iter().any(|(set, _)| set == *key))
    {
        return Err(UsageError(format!("{key} is both set and --reset: give one")).into());
    }
    let set: Vec<(&str, &str)> = entries
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    let resets: Vec<&str> = arguments.resets.iter().map(String::as_str).collect();
    client
        .admin()
        .alter_topic_config(&arguments.name, &set, &resets)
        .wait()
        .with_context(|| format!("altering topic {:?}", arguments.name))?;
    if arguments.output.json {
        let set: BTreeMap<&str, &str> = set.into_iter().collect();
        return write_json(
            stdout,
            &json!({"topic": arguments.name, "set": set, "reset": resets}),
        );
    }
    writeln!(stdout, "altered topic {}", arguments.name)?;
    Ok(())
}

fn add_partitions(
    client: &Client,
    arguments: AddPartitionsArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    client
        .admin()
        .create_partitions(&arguments.name, arguments.count)
        .wait()
        .with_context(|| {
            format!(
                "adding partitions to topic {:?} (to {} in all)",
                arguments.name, arguments.count
            )
        })?;
    if arguments.output.json {
        return write_json(
            stdout,
            &json!({"topic": arguments.name, "partitions": arguments.count}),
        );
    }
    writeln!(
        stdout,
        "topic {} now has {} partitions",
        arguments.name, arguments.count
    )?;
    Ok(())
}

fn trim(client: &Client, arguments: TrimArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let admin = client.admin();
    let topic = &arguments.name;
    let chosen = (!arguments.partition.is_empty()).then_some(arguments.partition.as_slice());
    // The log end of each partition: "end" trims to it; it also names every partition.
    let ends = admin
        .list_offsets(topic, chosen, OffsetSpec::Latest)
        .wait()
        .with_context(|| format!("looking up the ends of topic {topic:?}"))?;
    let mut trimmed = Vec::with_capacity(ends.len());
    for end in ends {
        let before = match arguments.offset {
            TrimOffset::Before(offset) => offset,
            TrimOffset::End => end.offset.unwrap_or(0),
        };
        let log_start = admin
            .delete_records(topic, end.partition, before)
            .wait()
            .with_context(|| {
                format!(
                    "deleting records of {topic}/{} below {before}",
                    end.partition
                )
            })?;
        trimmed.push((end.partition, log_start));
    }
    if arguments.output.json {
        let partitions: Vec<_> = trimmed
            .iter()
            .map(|(partition, log_start)| {
                json!({"partition": partition, "log_start_offset": log_start})
            })
            .collect();
        return write_json(stdout, &json!({"topic": topic, "partitions": partitions}));
    }
    if stdout_colour() {
        writeln!(stdout, "{}", bold("TOPIC\tPARTITION\tLOG-START", true))?;
    }
    for (partition, log_start) in trimmed {
        writeln!(stdout, "{topic}\t{partition}\t{log_start}")?;
    }
    Ok(())
}

fn is_internal(topic: &str) -> bool {
    topic.starts_with(INTERNAL_TOPIC_PREFIX)
}

fn plural(count: u32) -> &'static str {
    if count == 1 {
        ""
    } else {
        "s"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(retention_ms: Option<i64>, configs: &[(&str, &str)]) -> ConfigArgs {
        ConfigArgs {
            retention_bytes: None,
            retention_ms,
            configs: configs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    #[test]
    fn a_config_given_by_a_flag_and_by_config_is_refused() {
        let error = config(Some(10), &[("retention.ms", "5")])
            .entries()
            .unwrap_err();
        assert!(error.0.contains("--retention-ms 10"), "{error}");
        assert!(error.0.contains("--config retention.ms=5"), "{error}");
    }

    #[test]
    fn a_config_given_twice_is_refused_and_distinct_ones_pass() {
        assert!(config(None, &[("segment.ms", "1"), ("segment.ms", "2")])
            .entries()
            .is_err());
        let entries = config(Some(10), &[("segment.ms", "1")]).entries().unwrap();
        assert_eq!(
            entries,
            vec![
                ("retention.ms".to_string(), "10".to_string()),
                ("segment.ms".to_string(), "1".to_string())
            ]
        );
    }

    #[test]
    fn trim_offsets_are_numbers_or_end() {
        assert!(matches!(parse_trim_offset("end"), Ok(TrimOffset::End)));
        assert!(matches!(parse_trim_offset("7"), Ok(TrimOffset::Before(7))));
        assert!(parse_trim_offset("-1").is_err());
    }
}
