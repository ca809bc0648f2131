//! `spate group list|describe|reset-offsets|delete-offsets|delete`, and the loop behind
//! `spate consume TOPIC --group G`: thin wrappers over the client's `group` module.
//!
//! Output follows `spate topic`: tab-separated columns for people and `grep`/`awk` alike, bold
//! headers only on a terminal, one JSON document with `--json`. `reset-offsets` is a dry run
//! unless `--execute` is given, as with Kafka's `kafka-consumer-groups`.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;
use spate_client::group::{GroupAdmin, GroupConfig, GroupConsumer, ResetTarget};
use spate_client::{Client, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition};

use crate::output::{write_json, OutputArgs};
use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups: id, state and protocol type, one per line.
    List {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show a group's members and assignments, and its committed offsets with lag.
    Describe {
        /// Group id.
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Show where a stopped group's committed offsets would move (a dry run, the default), or
    /// move them with --execute. New offsets are kept within each partition's log.
    ResetOffsets(ResetArgs),
    /// Delete a group's committed offsets on a topic (or some of its partitions); refused while
    /// a member of the group is subscribed to the topic.
    DeleteOffsets(DeleteOffsetsArgs),
    /// Delete a group that has no members, with all its committed offsets.
    Delete {
        /// Group id.
        group: String,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_timestamp", "shift_by"])
))]
pub struct ResetArgs {
    /// Group id.
    group: String,
    /// The topic whose offsets move, with a partition list to move only those (orders:0,1).
    /// Repeatable.
    #[arg(long = "topic", required = true, value_name = "TOPIC[:P,P...]", value_parser = parse_topic_partitions)]
    topics: Vec<TopicPartitions>,
    /// To each partition's oldest record.
    #[arg(long)]
    to_earliest: bool,
    /// To each partition's end (only new records are read).
    #[arg(long)]
    to_latest: bool,
    /// To this offset on every partition.
    #[arg(long, value_name = "O")]
    to_offset: Option<u64>,
    /// To the first record at or after this time, in ms since the Unix epoch.
    #[arg(long, value_name = "MS")]
    to_timestamp: Option<i64>,
    /// By this many records from the committed offset (negative: back, to read again).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    shift_by: Option<i64>,
    /// Move the offsets (without it, only show where they would go).
    #[arg(long)]
    execute: bool,
    /// Only show where the offsets would go (the default; for scripts that say so).
    #[arg(long, conflicts_with = "execute")]
    dry_run: bool,
    #[command(flatten)]
    output: OutputArgs,
}

#[derive(Debug, Args)]
pub struct DeleteOffsetsArgs {
    /// Group id.
    group: String,
    /// The topic whose committed offsets go, with a partition list to delete only those
    /// (orders:0,1). Repeatable.
    #[arg(long = "topic", required = true, value_name = "TOPIC[:P,P...]", value_parser = parse_topic_partitions)]
    topics: Vec<TopicPartitions>,
    #[command(flatten)]
    output: OutputArgs,
}

/// A `--topic` argument: a topic, and its partitions when some are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPartitions {
    topic: String,
    /// `None`: every partition.
    partitions: Option<Vec<u32>>,
}

/// Parses `orders` or `orders:0,1` (a topic name cannot contain `:`).
fn parse_topic_partitions(text: &str) -> Result<TopicPartitions, String> {
    let (topic, partitions) = match text.split_once(':') {
        None => (text, None),
        Some((topic, list)) => {
            let partitions = list
                .split(',')
                .map(|partition| partition.trim().parse::<u32>())
                .collect::<Result<Vec<u32>, _>>()
                .map_err(|_| format!("expected TOPIC or TOPIC:P,P..., got {text:?}"))?;
            (topic, Some(partitions))
        }
    };
    if topic.is_empty() {
        return Err(format!("expected TOPIC or TOPIC:P,P..., got {text:?}"));
    }
    Ok(TopicPartitions {
        topic: topic.to_string(),
        partitions,
    })
}

pub fn run(client: &Client, command: GroupCommand) -> anyhow::Result<()> {
    let admin = GroupAdmin::new(client);
    let mut stdout = std::io::stdout().lock();
    match command {
        GroupCommand::List { output } => list(&admin, output, &mut stdout),
        GroupCommand::Describe { group, output } => describe(&admin, &group, output, &mut stdout),
        GroupCommand::ResetOffsets(arguments) => reset_offsets(&admin, arguments, &mut stdout),
        GroupCommand::DeleteOffsets(arguments) => delete_offsets(&admin, arguments, &mut stdout),
        GroupCommand::Delete { group, output } => {
            admin
                .delete_group(&group)
                .wait()
                .with_context(|| format!("deleting group {group:?}"))?;
            if output.json {
                return write_json(&mut stdout, &json!({"group": group, "deleted": true}));
            }
            writeln!(stdout, "deleted group {group}")?;
            Ok(())
        }
    }
}

fn list(admin: &GroupAdmin, output: OutputArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let groups = admin.list_groups().wait().context("listing groups")?;
    if output.json {
        let groups: Vec<_> = groups
            .iter()
            .map(|group| {
                json!({
                    "group": group.group_id,
                    "state": group.state.to_string(),
                    "protocol_type": group.protocol_type,
                })
            })
            .collect();
        return write_json(stdout, &json!(groups));
    }
    if stdout_colour() {
        writeln!(stdout, "{}", bold("GROUP\tSTATE\tPROTOCOL-TYPE", true))?;
    }
    for group in groups {
        writeln!(
            stdout,
            "{}\t{}\t{}",
            group.group_id, group.state, group.protocol_type
        )?;
    }
    Ok(())
}

fn describe(
    admin: &GroupAdmin,
    group: &str,
    output: OutputArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let description = admin
        .describe_group(group)
        .wait()
        .with_context(|| format!("describing group {group:?}"))?;
    if output.json {
        let members: Vec<_> = description
            .members
            .iter()
            .map(|member| {
                let assignment: Vec<_> = member
                    .assignment
                    .iter()
                    .map(|partition| json!({"topic": partition.topic, "partition": partition.partition}))
                    .collect();
                json!({
                    "member_id": member.member_id,
                    "group_instance_id": member.group_instance_id,
                    "client_id": member.client_id,
                    "assignment": assignment,
                })
            })
            .collect();
        let offsets: Vec<_> = description
            .offsets
            .iter()
            .map(|offset| {
                json!({
                    "topic": offset.partition.topic,
                    "partition": offset.partition.partition,
                    "committed_offset": offset.committed_offset,
                    "high_watermark": offset.high_watermark,
                    "lag": offset.lag,
                    "metadata": offset.metadata,
                })
            })
            .collect();
        return write_json(
            stdout,
            &json!({
                "group": description.group_id,
                "state": description.state.to_string(),
                "protocol": description.protocol,
                "generation": description.generation,
                "leader": description.leader,
                "members": members,
                "offsets": offsets,
            }),
        );
    }
    let colour = stdout_colour();
    writeln!(
        stdout,
        "{}\t{}",
        bold("group", colour),
        description.group_id
    )?;
    writeln!(stdout, "{}\t{}", bold("state", colour), description.state)?;
    writeln!(
        stdout,
        "{}\t{}",
        bold("protocol", colour),
        description.protocol
    )?;
    writeln!(
        stdout,
        "{}\t{}",
        bold("generation", colour),
        description.generation
    )?;
    writeln!(stdout, "{}\t{}", bold("leader", colour), description.leader)?;
    writeln!(
        stdout,
        "{}",
        bold("member\tinstance\tclient\tassignment", colour)
    )?;
    for member in &description.members {
        let assignment: Vec<String> = member
            .assignment
            .iter()
            .map(TopicPartition::to_string)
            .collect();
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}",
            member.member_id,
            member.group_instance_id.as_deref().unwrap_or("-"),
            member.client_id,
            assignment.join(",")
        )?;
    }
    writeln!(
        stdout,
        "{}",
        bold("topic\tpartition\tcommitted\thigh-watermark\tlag", colour)
    )?;
    for offset in &description.offsets {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}\t{}",
            offset.partition.topic,
            offset.partition.partition,
            offset.committed_offset,
            or_dash(offset.high_watermark),
            or_dash(offset.lag)
        )?;
    }
    Ok(())
}

fn reset_offsets(
    admin: &GroupAdmin,
    arguments: ResetArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let target = match (
        arguments.to_offset,
        arguments.to_timestamp,
        arguments.shift_by,
    ) {
        (Some(offset), _, _) => ResetTarget::Offset(offset),
        (None, Some(timestamp), _) => ResetTarget::Timestamp(timestamp),
        (None, None, Some(shift)) => ResetTarget::ShiftBy(shift),
        (None, None, None) if arguments.to_earliest => ResetTarget::Earliest,
        (None, None, None) => ResetTarget::Latest,
    };
    let group = &arguments.group;
    // Every topic is planned before any moves, so a bad --topic changes nothing.
    let mut plans = Vec::with_capacity(arguments.topics.len());
    for selection in &arguments.topics {
        let plan = admin
            .plan_reset(
                group,
                &selection.topic,
                selection.partitions.as_deref(),
                target,
            )
            .wait()
            .with_context(|| {
                format!(
                    "planning the reset of group {group:?} on topic {:?}",
                    selection.topic
                )
            })?;
        plans.push((selection.topic.as_str(), plan));
    }
    if arguments.execute {
        for (topic, plan) in &plans {
            admin
                .apply_reset(group, topic, plan)
                .wait()
                .with_context(|| {
                    format!(
                        "resetting group {group:?} on topic {topic:?} (stop its consumers first)"
                    )
                })?;
        }
    }
    if arguments.output.json {
        let partitions: Vec<_> = plans
            .iter()
            .flat_map(|(topic, plan)| {
                plan.iter().map(move |planned| {
                    json!({
                        "topic": topic,
                        "partition": planned.partition,
                        "current_offset": planned.current_offset,
                        "new_offset": planned.new_offset,
                    })
                })
            })
            .collect();
        write_json(
            stdout,
            &json!({"group": group, "executed": arguments.execute, "partitions": partitions}),
        )?;
    } else {
        if stdout_colour() {
            writeln!(
                stdout,
                "{}",
                bold("TOPIC\tPARTITION\tCURRENT-OFFSET\tNEW-OFFSET", true)
            )?;
        }
        for (topic, plan) in &plans {
            for planned in plan {
                writeln!(
                    stdout,
                    "{topic}\t{}\t{}\t{}",
                    planned.partition,
                    or_dash(planned.current_offset),
                    planned.new_offset
                )?;
            }
        }
    }
    if !arguments.execute {
        stdout.flush()?;
        eprintln!("dry run: no offset moved; add --execute to move them");
    }
    Ok(())
}

fn delete_offsets(
    admin: &GroupAdmin,
    arguments: DeleteOffsetsArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let group = &arguments.group;
    let mut deleted = Vec::new();
    let mut first_error = None;
    for selection in &arguments.topics {
        let topic = &selection.topic;
        let outcomes = admin
            .delete_offsets(group, topic, selection.partitions.as_deref())
            .wait()
            .with_context(|| format!("deleting offsets of group {group:?} on topic {topic:?}"))?;
        if outcomes.is_empty() {
            anyhow::bail!("group {group:?} has no committed offset on topic {topic:?}");
        }
        for (partition, outcome) in outcomes {
            match outcome {
                Ok(()) => deleted.push((topic.as_str(), partition)),
                Err(error) => {
                    first_error.get_or_insert(anyhow::Error::new(error).context(format!(
                        "deleting the offset of group {group:?} on {topic}/{partition}"
                    )));
                }
            }
        }
    }
    if arguments.output.json {
        let partitions: Vec<_> = deleted
            .iter()
            .map(|(topic, partition)| json!({"topic": topic, "partition": partition}))
            .collect();
        write_json(stdout, &json!({"group": group, "deleted": partitions}))?;
    } else {
        for (topic, partition) in &deleted {
            writeln!(
                stdout,
                "deleted offset of group {group} on {topic}/{partition}"
            )?;
        }
    }
    stdout.flush()?;
    first_error.map_or(Ok(()), Err)
}

fn or_dash(value: Option<u64>) -> String {
    value.map_or("-".to_string(), |value| value.to_string())
}

/// How `spate consume --group` reads.
pub struct GroupRead<'a> {
    pub topic: &'a str,
    pub group: &'a str,
    /// Partitions without a committed offset start at the oldest record (else at the end).
    pub from_beginning: bool,
    pub count: Option<u64>,
    /// Stop once every assigned partition is read to its end.
    pub exit_at_end: bool,
    pub poll_interval: Duration,
    /// How long the coordinator waits for a silent member (one killed with kill -9) before its
    /// partitions go to the others; the client's default when `None`.
    pub session_timeout: Option<Duration>,
}

/// Consumes as a member of `read.group`: joins, writes records to `output` with `write`,
/// commits what was written after each flush, and leaves the group at the end (after `count`
/// records, at the end with `exit_at_end`, when `interrupted`, or when the reader of a pipe
/// goes away). Only written records are committed, so a record cut off by `--count` is read
/// again by the group's next consumer.
pub fn consume<W: Write>(
    client: &Client,
    read: GroupRead<'_>,
    interrupted: &AtomicBool,
    output: &mut W,
    write: impl Fn(&mut W, &ConsumerRecord<'_>) -> io::Result<()>,
) -> anyhow::Result<()> {
    let mut config = GroupConfig::new(read.group).with_manual_commits();
    if let Some(session_timeout) = read.session_timeout {
        config = config.with_session_timeout(session_timeout);
    }
    config.offset_reset = if read.from_beginning {
        OffsetReset::Earliest
    } else {
        OffsetReset::Latest
    };
    let consumer_config = ConsumerConfig {
        offset_reset: OffsetReset::Earliest,
        ..ConsumerConfig::default()
    };
    let mut consumer = GroupConsumer::new(client, consumer_config, config)?;
    consumer.subscribe(&[read.topic])?;
    let limit = read.count.unwrap_or(u64::MAX);
    let mut written = 0u64;
    // The offset after the last written record, per partition: what may be committed.
    let mut next: BTreeMap<TopicPartition, u64> = BTreeMap::new();
    let mut reached_end = false;
    while written < limit && !reached_end && !interrupted.load(Ordering::Relaxed) {
        let polled = consumer
            .poll(read.poll_interval)
            .with_context(|| format!("reading {:?} as group {:?}", read.topic, read.group))?;
        let mut reader_gone = false;
        for record in &polled {
            if closed_pipe(write(output, &record))? {
                reader_gone = true;
                break;
            }
            next.insert(
                TopicPartition::new(record.topic(), record.partition()),
                record.offset() + 1,
            );
            written += 1;
            if written >= limit {
                break;
            }
        }
        if reader_gone || closed_pipe(output.flush())? {
            break;
        }
        if !polled.is_empty() {
            // Written and flushed: safe to commit. Not waited for; the last commit is.
            drop(consumer.commit_offsets(commits(&next)));
        }
        if read.exit_at_end && polled.is_empty() {
            let assignment = consumer.assignment();
            reached_end = !assignment.is_empty()
                && assignment.iter().all(|partition| {
                    consumer.lag(&partition.topic, partition.partition) == Some(0)
                });
            if reached_end {
                // Every assigned partition is read to its end and everything polled was
                // written, so partitions that had no record get their position committed too
                // (as a Kafka consumer's commit does): the group then has an offset, and a lag,
                // on each of them.
                for partition in assignment {
                    if let Some(position) = consumer.position(&partition.topic, partition.partition)
                    {
                        next.entry(partition).or_insert(position);
                    }
                }
            }
        }
    }
    consumer
        .commit_offsets(commits(&next))
        .wait()
        .context("committing the group's position")?;
    consumer.close().context("leaving the group")
}

fn commits(next: &BTreeMap<TopicPartition, u64>) -> Vec<(TopicPartition, u64)> {
    next.iter()
        .map(|(partition, offset)| (partition.clone(), *offset))
        .collect()
}

/// True when the reader went away (`spate consume ... | head`): a normal end, not a failure.
fn closed_pipe(result: io::Result<()>) -> anyhow::Result<bool> {
    match result {
        Ok(()) => Ok(false),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        Err(error) => Err(anyhow::Error::new(error).context("writing output")),
    }
}
