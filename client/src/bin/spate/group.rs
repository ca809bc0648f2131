//! `spate group list|describe|reset-offsets|delete`, and the loop behind
//! `spate consume TOPIC --group G`: thin wrappers over the client's `group` module.
//!
//! Output follows `spate topic`: tab-separated columns for people and `grep`/`awk` alike, bold
//! headers only on a terminal.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use spate_client::group::{GroupAdmin, GroupConfig, GroupConsumer, ResetTarget};
use spate_client::{Client, ConsumerConfig, ConsumerRecord, OffsetReset, TopicPartition};

use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// List groups: id, state and protocol type, one per line.
    List,
    /// Show a group's members and assignments, and its committed offsets with lag.
    Describe {
        /// Group id.
        group: String,
    },
    /// Move a stopped group's committed offsets on every partition of a topic.
    ResetOffsets(ResetArgs),
    /// Delete a group that has no members, with all its committed offsets.
    Delete {
        /// Group id.
        group: String,
    },
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["to_earliest", "to_latest", "to_offset", "to_timestamp"])
))]
pub struct ResetArgs {
    /// Group id.
    group: String,
    /// The topic whose offsets move.
    #[arg(long)]
    topic: String,
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
}

pub fn run(client: &Client, command: GroupCommand) -> anyhow::Result<()> {
    let admin = GroupAdmin::new(client);
    let mut stdout = std::io::stdout().lock();
    let colour = stdout_colour();
    match command {
        GroupCommand::List => {
            let groups = admin.list_groups().wait().context("listing groups")?;
            if colour {
                writeln!(stdout, "{}", bold("GROUP\tSTATE\tPROTOCOL-TYPE", true))?;
            }
            for group in groups {
                writeln!(
                    stdout,
                    "{}\t{}\t{}",
                    group.group_id, group.state, group.protocol_type
                )?;
            }
        }
        GroupCommand::Describe { group } => {
            let description = admin
                .describe_group(&group)
                .wait()
                .with_context(|| format!("describing group {group:?}"))?;
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
                let or_dash =
                    |value: Option<u64>| value.map_or("-".to_string(), |value| value.to_string());
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
        }
        GroupCommand::ResetOffsets(arguments) => {
            let target = match (arguments.to_offset, arguments.to_timestamp) {
                (Some(offset), _) => ResetTarget::Offset(offset),
                (None, Some(timestamp)) => ResetTarget::Timestamp(timestamp),
                (None, None) if arguments.to_earliest => ResetTarget::Earliest,
                (None, None) => ResetTarget::Latest,
            };
            let moved = admin
                .reset_offsets(&arguments.group, &arguments.topic, target)
                .wait()
                .with_context(|| {
                    format!(
                        "resetting group {:?} on topic {:?} (stop its consumers first)",
                        arguments.group, arguments.topic
                    )
                })?;
            if colour {
                writeln!(stdout, "{}", bold("TOPIC\tPARTITION\tNEW-OFFSET", true))?;
            }
            for (partition, offset) in moved {
                writeln!(stdout, "{}\t{partition}\t{offset}", arguments.topic)?;
            }
        }
        GroupCommand::Delete { group } => {
            admin
                .delete_group(&group)
                .wait()
                .with_context(|| format!("deleting group {group:?}"))?;
            writeln!(stdout, "deleted group {group}")?;
        }
    }
    Ok(())
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
