//! `spate cluster info` (also `spate metadata`): the broker (version, listeners, shards), the
//! configuration a topic gets for every key it does not set, and every topic's partitions with
//! their owner shard and offsets: what kcat's `-L` and `rpk cluster info` show.

use std::io::Write;

use anyhow::Context;
use clap::Subcommand;
use serde_json::json;
use spate_client::{Client, PartitionInfo};

use crate::output::{write_json, OutputArgs};
use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the broker (version, listeners, shards), topic config defaults, and every topic's
    /// partitions with owner shard and offsets.
    Info {
        #[command(flatten)]
        output: OutputArgs,
    },
}

pub fn run(client: &Client, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Info { output } => info(client, output),
    }
}

pub fn info(client: &Client, output: OutputArgs) -> anyhow::Result<()> {
    let cluster = client
        .admin()
        .describe_cluster()
        .wait()
        .context("describing the cluster")?;
    let mut stdout = std::io::stdout().lock();
    if output.json {
        let topics: Vec<_> = cluster
            .topics
            .iter()
            .map(|topic| {
                let partitions: Vec<_> = topic.partitions.iter().map(partition_json).collect();
                json!({"topic": topic.name, "partitions": partitions})
            })
            .collect();
        return write_json(
            &mut stdout,
            &json!({
                "broker": {
                    "version": cluster.broker_version,
                    "listeners": cluster.listeners,
                    "shards": cluster.shard_count,
                },
                "topic_defaults": cluster.topic_defaults,
                "topics": topics,
            }),
        );
    }
    let colour = stdout_colour();
    writeln!(
        stdout,
        "{}\t{}",
        bold("broker", colour),
        cluster.broker_version
    )?;
    writeln!(
        stdout,
        "{}\t{}",
        bold("listeners", colour),
        cluster.listeners.join(",")
    )?;
    writeln!(
        stdout,
        "{}\t{}",
        bold("shards", colour),
        cluster.shard_count
    )?;
    writeln!(stdout, "{}", bold("topic defaults", colour))?;
    for (key, value) in &cluster.topic_defaults {
        writeln!(stdout, "  {key}={value}")?;
    }
    writeln!(
        stdout,
        "{}",
        bold(
            "topic\tpartition\tshard\tlog-start\thigh-watermark\tstatus",
            colour
        )
    )?;
    for topic in &cluster.topics {
        for partition in &topic.partitions {
            match &partition.offline_reason {
                None if partition.opening => writeln!(
                    stdout,
                    "{}\t{}\t{}\t-\t-\topening",
                    topic.name, partition.partition, partition.shard,
                )?,
                None => writeln!(
                    stdout,
                    "{}\t{}\t{}\t{}\t{}\tonline",
                    topic.name,
                    partition.partition,
                    partition.shard,
                    partition.log_start_offset,
                    partition.high_watermark
                )?,
                Some(reason) => writeln!(
                    stdout,
                    "{}\t{}\t{}\t-\t-\toffline: {reason}",
                    topic.name, partition.partition, partition.shard,
                )?,
            }
        }
    }
    Ok(())
}

/// A partition as `--json` shows it (shared with `spate topic describe`).
pub fn partition_json(partition: &PartitionInfo) -> serde_json::Value {
    match &partition.offline_reason {
        None if partition.opening => json!({
            "partition": partition.partition,
            "shard": partition.shard,
            "online": false,
            "opening": true,
        }),
        None => json!({
            "partition": partition.partition,
            "shard": partition.shard,
            "log_start_offset": partition.log_start_offset,
            "high_watermark": partition.high_watermark,
            "online": true,
        }),
        Some(reason) => json!({
            "partition": partition.partition,
            "shard": partition.shard,
            "online": false,
            "offline_reason": reason,
        }),
    }
}
