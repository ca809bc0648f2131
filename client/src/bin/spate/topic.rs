//! `spate topic create|list|describe|delete|alter`: thin wrappers over the client's `Admin`.
//!
//! Output is plain text meant for people and for `grep`/`awk` alike: tab-separated columns,
//! with a bold header line only when stdout is a terminal.

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand};
use spate_client::{Client, NewTopic};
use spate_protocol::api::config::name;

use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum TopicCommand {
    /// Create a topic.
    Create(CreateArgs),
    /// List topics: name and partition count, one per line.
    List,
    /// Show a topic's partitions (owner shard, offsets) and configuration.
    Describe {
        /// Topic name.
        name: String,
    },
    /// Delete a topic and all its records.
    Delete {
        /// Topic name.
        name: String,
    },
    /// Change a topic's configuration.
    Alter(AlterArgs),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Topic name.
    name: String,
    /// Number of partitions.
    #[arg(long, default_value_t = 1)]
    partitions: u32,
    /// Keep at most this many bytes per partition (-1: unlimited).
    #[arg(long, allow_negative_numbers = true)]
    retention_bytes: Option<i64>,
    /// Keep records for this many milliseconds (-1: forever).
    #[arg(long, allow_negative_numbers = true)]
    retention_ms: Option<i64>,
    /// Any topic config, KEY=VALUE (repeatable), e.g. durability=group-commit.
    #[arg(long = "config", value_parser = crate::parse_key_value)]
    configs: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct AlterArgs {
    /// Topic name.
    name: String,
    /// Set a config, KEY=VALUE (repeatable).
    #[arg(long = "config", value_parser = crate::parse_key_value, required_unless_present = "resets")]
    configs: Vec<(String, String)>,
    /// Return a config to the broker default (repeatable).
    #[arg(long = "reset")]
    resets: Vec<String>,
}

pub fn run(client: &Client, command: TopicCommand) -> anyhow::Result<()> {
    let admin = client.admin();
    let mut stdout = std::io::stdout().lock();
    match command {
        TopicCommand::Create(arguments) => {
            let mut topic = NewTopic::new(arguments.name.clone(), arguments.partitions);
            if let Some(bytes) = arguments.retention_bytes {
                topic = topic.with_config(name::RETENTION_BYTES, bytes.to_string());
            }
            if let Some(ms) = arguments.retention_ms {
                topic = topic.with_config(name::RETENTION_MS, ms.to_string());
            }
            for (key, value) in arguments.configs {
                topic = topic.with_config(key, value);
            }
            admin
                .create_topic(topic)
                .wait()
                .with_context(|| format!("creating topic {:?}", arguments.name))?;
            writeln!(
                stdout,
                "created topic {} with {} partition{}",
                arguments.name,
                arguments.partitions,
                if arguments.partitions == 1 { "" } else { "s" }
            )?;
        }
        TopicCommand::List => {
            let topics = admin.list_topics().wait().context("listing topics")?;
            if stdout_colour() {
                writeln!(stdout, "{}", bold("TOPIC\tPARTITIONS", true))?;
            }
            for topic in topics {
                writeln!(stdout, "{}\t{}", topic.name, topic.partition_count)?;
            }
        }
        TopicCommand::Describe { name } => {
            let description = admin
                .describe_topic(&name)
                .wait()
                .with_context(|| format!("describing topic {name:?}"))?;
            let colour = stdout_colour();
            writeln!(stdout, "{}\t{}", bold("topic", colour), description.name)?;
            writeln!(
                stdout,
                "{}\t{}",
                bold("partitions", colour),
                description.partitions.len()
            )?;
            writeln!(stdout, "{}", bold("config", colour))?;
            for (key, value) in &description.configs {
                writeln!(stdout, "  {key}={value}")?;
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
        }
        TopicCommand::Delete { name } => {
            admin
                .delete_topic(&name)
                .wait()
                .with_context(|| format!("deleting topic {name:?}"))?;
            writeln!(stdout, "deleted topic {name}")?;
        }
        TopicCommand::Alter(arguments) => {
            let set: Vec<(&str, &str)> = arguments
                .configs
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str()))
                .collect();
            let resets: Vec<&str> = arguments.resets.iter().map(String::as_str).collect();
            admin
                .alter_topic_config(&arguments.name, &set, &resets)
                .wait()
                .with_context(|| format!("altering topic {:?}", arguments.name))?;
            writeln!(stdout, "altered topic {}", arguments.name)?;
        }
    }
    Ok(())
}
