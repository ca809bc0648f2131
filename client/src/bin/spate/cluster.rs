//! `spate cluster info` (also `spate metadata`): the broker (version, listeners, shards), the
//! cluster (id, controller, brokers), the configuration a topic gets for every key it does not
//! set, and every topic's partitions with their owner shard, offsets, leader, replicas and
//! in-sync replicas: what kcat's `-L` and `rpk cluster info` show. And the cluster operations:
//! `add-broker` (moves a fair share of replicas onto a new broker), `decommission`,
//! `move-partitions` (one partition, or a JSON plan as `kafka-reassign-partitions` takes),
//! `reassignments` (those in progress) and `balance-leaders` (preferred leader election).
//!
//! The plan `add-broker` computes is pure ([`fair_share_plan`]) and tested without brokers.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;
use spate_client::{Client, ClusterDescription, PartitionChange, PartitionInfo};
use spate_client::{ReassignmentTarget, TopicLayout};
use spate_protocol::NodeId;

use crate::output::{write_json, OutputArgs, UsageError};
use crate::terminal::{bold, stdout_colour};

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Show the broker (version, listeners, shards), the cluster (id, controller, brokers),
    /// topic config defaults, and every topic's partitions with owner shard, offsets and, in a
    /// cluster, leader, replicas and in-sync replicas.
    Info {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move a fair share of the cluster's replicas onto broker ID (started with --seeds and
    /// registered): each partition moved is reassigned, its data copied while it stays
    /// writable.
    AddBroker {
        /// The new broker's node id.
        id: NodeId,
        /// Print the plan without applying it.
        #[arg(long)]
        dry_run: bool,
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Move every replica off broker ID, then remove it from the cluster.
    Decommission {
        /// The broker's node id.
        id: NodeId,
    },
    /// Give partitions new replica lists: one with --topic/--partition/--replicas, or many from
    /// a JSON plan file (kafka-reassign-partitions' format:
    /// {"partitions":[{"topic":"t","partition":0,"replicas":[1,2,3]}]}). --cancel stops the
    /// named reassignments instead.
    MovePartitions(MoveArgs),
    /// List the reassignments in progress: each partition's replicas, and which are joining
    /// and leaving.
    Reassignments {
        #[command(flatten)]
        output: OutputArgs,
    },
    /// Make each partition's preferred replica (its first) the leader where it is in sync:
    /// every topic's, or --topic's.
    BalanceLeaders {
        /// Only this topic's partitions.
        #[arg(long)]
        topic: Option<String>,
        #[command(flatten)]
        output: OutputArgs,
    },
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("what").required(true).args(["topic", "plan"])))]
pub struct MoveArgs {
    /// The topic of the partition to move.
    #[arg(long, requires = "partition")]
    topic: Option<String>,
    /// The partition to move.
    #[arg(long, requires = "topic")]
    partition: Option<u32>,
    /// Its new replicas, preferred leader first: ID,ID,...
    #[arg(long, value_delimiter = ',', requires = "topic")]
    replicas: Vec<NodeId>,
    /// A JSON plan file (kafka-reassign-partitions' format).
    #[arg(long, conflicts_with = "topic")]
    plan: Option<PathBuf>,
    /// Cancel the named partitions' reassignments (their replicas go back to what they were).
    #[arg(long, conflicts_with = "replicas")]
    cancel: bool,
    #[command(flatten)]
    output: OutputArgs,
}

pub fn run(client: &Client, command: ClusterCommand) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Info { output } => info(client, output),
        ClusterCommand::AddBroker {
            id,
            dry_run,
            output,
        } => add_broker(client, id, dry_run, output),
        ClusterCommand::Decommission { id } => {
            client
                .admin()
                .decommission_broker(id)
                .wait()
                .with_context(|| format!("decommissioning broker {id}"))?;
            println!("decommissioning broker {id}: its replicas are moving off it");
            Ok(())
        }
        ClusterCommand::MovePartitions(arguments) => move_partitions(client, arguments),
        ClusterCommand::Reassignments { output } => reassignments(client, output),
        ClusterCommand::BalanceLeaders { topic, output } => balance_leaders(client, topic, output),
    }
}

/// Whether the description is of a cluster (several brokers, or a cluster id): only then are
/// the cluster lines and the leader columns shown, so a single broker's output is as before.
fn is_cluster(cluster: &ClusterDescription) -> bool {
    cluster.cluster_id.is_some() || cluster.brokers.len() > 1
}

fn node_list(nodes: &[NodeId]) -> String {
    let names: Vec<String> = nodes.iter().map(NodeId::to_string).collect();
    names.join(",")
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
        let brokers: Vec<_> = cluster
            .brokers
            .iter()
            .map(|broker| json!({"id": broker.id, "address": broker.address, "rack": broker.rack}))
            .collect();
        return write_json(
            &mut stdout,
            &json!({
                "broker": {
                    "version": cluster.broker_version,
                    "listeners": cluster.listeners,
                    "shards": cluster.shard_count,
                    "node_id": cluster.node_id,
                },
                "cluster": {
                    "id": cluster.cluster_id,
                    "controller": cluster.controller,
                    "brokers": brokers,
                },
                "topic_defaults": cluster.topic_defaults,
                "topics": topics,
            }),
        );
    }
    let colour = stdout_colour();
    let clustered = is_cluster(&cluster);
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
    if clustered {
        writeln!(
            stdout,
            "{}\t{}",
            bold("cluster-id", colour),
            cluster.cluster_id.as_deref().unwrap_or("-")
        )?;
        writeln!(
            stdout,
            "{}\t{}",
            bold("controller", colour),
            cluster
                .controller
                .map_or_else(|| "none".to_string(), |id| id.to_string())
        )?;
        writeln!(stdout, "{}", bold("brokers", colour))?;
        for broker in &cluster.brokers {
            writeln!(
                stdout,
                "  {}\t{}\t{}",
                broker.id,
                broker.address,
                broker.rack.as_deref().unwrap_or("-")
            )?;
        }
    }
    writeln!(stdout, "{}", bold("topic defaults", colour))?;
    for (key, value) in &cluster.topic_defaults {
        writeln!(stdout, "  {key}={value}")?;
    }
    let header = if clustered {
        "topic\tpartition\tshard\tlog-start\thigh-watermark\tstatus\tleader\treplicas\tisr"
    } else {
        "topic\tpartition\tshard\tlog-start\thigh-watermark\tstatus"
    };
    writeln!(stdout, "{}", bold(header, colour))?;
    for topic in &cluster.topics {
        for partition in &topic.partitions {
            let columns = match &partition.offline_reason {
                None if partition.opening => format!(
                    "{}\t{}\t{}\t-\t-\t{}",
                    topic.name,
                    partition.partition,
                    partition.shard,
                    if clustered && partition.leader.is_none() {
                        "no leader"
                    } else {
                        "opening"
                    }
                ),
                None => format!(
                    "{}\t{}\t{}\t{}\t{}\tonline",
                    topic.name,
                    partition.partition,
                    partition.shard,
                    partition.log_start_offset,
                    partition.high_watermark
                ),
                Some(reason) => format!(
                    "{}\t{}\t{}\t-\t-\toffline: {reason}",
                    topic.name, partition.partition, partition.shard,
                ),
            };
            if clustered {
                writeln!(
                    stdout,
                    "{columns}\t{}\t{}\t{}",
                    partition
                        .leader
                        .map_or_else(|| "none".to_string(), |id| id.to_string()),
                    node_list(&partition.replicas),
                    node_list(&partition.isr),
                )?;
            } else {
                writeln!(stdout, "{columns}")?;
            }
        }
    }
    Ok(())
}

/// A partition as `--json` shows it (shared with `spate topic describe`).
pub fn partition_json(partition: &PartitionInfo) -> serde_json::Value {
    let mut value = match &partition.offline_reason {
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
    };
    if !partition.replicas.is_empty() {
        value["leader"] = json!(partition.leader);
        value["leader_epoch"] = json!(partition.leader_epoch);
        value["replicas"] = json!(partition.replicas);
        value["isr"] = json!(partition.isr);
    }
    value
}

/// One partition's replicas in a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub topic: String,
    pub partition: u32,
    pub replicas: Vec<NodeId>,
}

/// Which partitions to move onto broker `new` so that it holds its fair share of the replicas
/// (`floor(replicas / brokers)`, the other brokers counted with it): one replica at a time,
/// taken from the broker holding the most (the lowest id on ties), from the first partition
/// (by topic, then partition) it holds that `new` does not; the new broker takes its place in
/// the replica list, so preferred leadership moves with the replica. Pure and deterministic.
pub fn fair_share_plan(current: &[Placement], brokers: &[NodeId], new: NodeId) -> Vec<Placement> {
    let mut placements: Vec<Placement> = current.to_vec();
    placements
        .sort_by(|left, right| (&left.topic, left.partition).cmp(&(&right.topic, right.partition)));
    let mut counts: BTreeMap<NodeId, usize> = brokers.iter().map(|id| (*id, 0)).collect();
    counts.entry(new).or_insert(0);
    let mut total = 0;
    for placement in &placements {
        for replica in &placement.replicas {
            *counts.entry(*replica).or_insert(0) += 1;
            total += 1;
        }
    }
    let share = total / counts.len();
    let mut moved: Vec<usize> = Vec::new();
    while counts[&new] < share {
        // The most loaded broker that still has a partition `new` could take from it.
        let mut donors: Vec<(NodeId, usize)> = counts
            .iter()
            .filter(|(id, _)| **id != new)
            .map(|(id, count)| (*id, *count))
            .collect();
        donors.sort_by(|left, right| right.1.cmp(&left.1).then(left.0.cmp(&right.0)));
        let step = donors.iter().find_map(|(donor, count)| {
            if *count <= counts[&new] + 1 {
                return None; // moving would only swap the imbalance
            }
            placements
                .iter()
                .position(|placement| {
                    placement.replicas.contains(donor) && !placement.replicas.contains(&new)
                })
                .map(|index| (*donor, index))
        });
        let Some((donor, index)) = step else { break };
        let replicas = &mut placements[index].replicas;
        let slot = replicas
            .iter()
            .position(|replica| *replica == donor)
            .expect("found above");
        replicas[slot] = new;
        *counts.get_mut(&donor).expect("counted") -= 1;
        *counts.get_mut(&new).expect("counted") += 1;
        if !moved.contains(&index) {
            moved.push(index);
        }
    }
    moved.sort_unstable();
    moved
        .into_iter()
        .map(|index| placements[index].clone())
        .collect()
}

fn placements_of(topics: &[TopicLayout]) -> Vec<Placement> {
    topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| Placement {
                topic: topic.name.clone(),
                partition: partition.partition,
                replicas: partition.replicas.clone(),
            })
        })
        .collect()
}

fn add_broker(
    client: &Client,
    id: NodeId,
    dry_run: bool,
    output: OutputArgs,
) -> anyhow::Result<()> {
    let cluster = client
        .admin()
        .describe_cluster()
        .wait()
        .context("describing the cluster")?;
    if !cluster.brokers.iter().any(|broker| broker.id == id) {
        let known: Vec<NodeId> = cluster.brokers.iter().map(|broker| broker.id).collect();
        bail!(
            "broker {id} is not registered in the cluster (brokers: {}); start it with --seeds first",
            node_list(&known)
        );
    }
    let brokers: Vec<NodeId> = cluster.brokers.iter().map(|broker| broker.id).collect();
    let plan = fair_share_plan(&placements_of(&cluster.topics), &brokers, id);
    let results = if dry_run || plan.is_empty() {
        Vec::new()
    } else {
        let targets = plan
            .iter()
            .map(|placement| ReassignmentTarget {
                topic: placement.topic.clone(),
                partition: placement.partition,
                replicas: Some(placement.replicas.clone()),
            })
            .collect();
        client
            .admin()
            .alter_reassignments(targets)
            .wait()
            .context("reassigning partitions")?
    };
    report_plan(&plan, &results, dry_run, output)?;
    fail_if_any_refused(&results)
}

fn report_plan(
    plan: &[Placement],
    results: &[PartitionChange],
    dry_run: bool,
    output: OutputArgs,
) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    let outcome = |placement: &Placement| -> String {
        if dry_run {
            return "planned".to_string();
        }
        match results.iter().find(|change| {
            change.topic == placement.topic && change.partition == placement.partition
        }) {
            Some(PartitionChange { result: Ok(()), .. }) => "moving".to_string(),
            Some(PartitionChange {
                result: Err(error), ..
            }) => format!("refused: {error}"),
            None => "no answer".to_string(),
        }
    };
    if output.json {
        let entries: Vec<_> = plan
            .iter()
            .map(|placement| {
                json!({
                    "topic": placement.topic,
                    "partition": placement.partition,
                    "replicas": placement.replicas,
                    "outcome": outcome(placement),
                })
            })
            .collect();
        return write_json(&mut stdout, &json!({"version": 1, "partitions": entries}));
    }
    if plan.is_empty() {
        writeln!(stdout, "nothing to move: the broker holds its fair share")?;
    }
    for placement in plan {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}",
            placement.topic,
            placement.partition,
            node_list(&placement.replicas),
            outcome(placement)
        )?;
    }
    Ok(())
}

fn fail_if_any_refused(results: &[PartitionChange]) -> anyhow::Result<()> {
    let refused: Vec<&PartitionChange> = results
        .iter()
        .filter(|change| change.result.is_err())
        .collect();
    if let Some(first) = refused.first() {
        let error = first.result.clone().expect_err("filtered on errors");
        return Err(anyhow::Error::new(error).context(format!(
            "{} of {} partitions refused",
            refused.len(),
            results.len()
        )));
    }
    Ok(())
}

/// Reads a kafka-reassign-partitions plan: `{"partitions":[{"topic","partition","replicas"}]}`
/// (`version` and any other key ignored).
pub fn parse_plan(text: &str) -> Result<Vec<Placement>, String> {
    let document: serde_json::Value =
        serde_json::from_str(text).map_err(|error| format!("not JSON: {error}"))?;
    let entries = document
        .get("partitions")
        .and_then(serde_json::Value::as_array)
        .ok_or("no \"partitions\" array")?;
    let mut plan = Vec::with_capacity(entries.len());
    for (index, entry) in entries.iter().enumerate() {
        let topic = entry
            .get("topic")
            .and_then(serde_json::Value::as_str)
            .ok_or_else(|| format!("partitions[{index}]: no \"topic\" string"))?;
        let partition = entry
            .get("partition")
            .and_then(serde_json::Value::as_u64)
            .and_then(|partition| u32::try_from(partition).ok())
            .ok_or_else(|| format!("partitions[{index}]: no \"partition\" number"))?;
        let replicas = entry
            .get("replicas")
            .and_then(serde_json::Value::as_array)
            .ok_or_else(|| format!("partitions[{index}]: no \"replicas\" array"))?
            .iter()
            .map(|replica| {
                replica
                    .as_i64()
                    .and_then(|id| NodeId::try_from(id).ok())
                    .filter(|id| *id >= 0)
                    .ok_or_else(|| format!("partitions[{index}]: a replica is not a broker id"))
            })
            .collect::<Result<Vec<NodeId>, String>>()?;
        if replicas.is_empty() {
            return Err(format!("partitions[{index}]: \"replicas\" is empty"));
        }
        let mut distinct = replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() != replicas.len() {
            return Err(format!("partitions[{index}]: a replica is listed twice"));
        }
        plan.push(Placement {
            topic: topic.to_string(),
            partition,
            replicas,
        });
    }
    if plan.is_empty() {
        return Err("\"partitions\" is empty".into());
    }
    Ok(plan)
}

fn move_partitions(client: &Client, arguments: MoveArgs) -> anyhow::Result<()> {
    let plan = match (&arguments.plan, &arguments.topic, arguments.partition) {
        (Some(path), _, _) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading the plan {}", path.display()))?;
            parse_plan(&text).map_err(|reason| {
                UsageError(format!("the plan {} is invalid: {reason}", path.display()))
            })?
        }
        (None, Some(topic), Some(partition)) => {
            if arguments.replicas.is_empty() && !arguments.cancel {
                return Err(UsageError("--replicas (or --cancel) is needed".into()).into());
            }
            vec![Placement {
                topic: topic.clone(),
                partition,
                replicas: arguments.replicas.clone(),
            }]
        }
        _ => return Err(UsageError("--topic and --partition, or --plan".into()).into()),
    };
    let targets = plan
        .iter()
        .map(|placement| ReassignmentTarget {
            topic: placement.topic.clone(),
            partition: placement.partition,
            replicas: (!arguments.cancel).then(|| placement.replicas.clone()),
        })
        .collect();
    let results = client
        .admin()
        .alter_reassignments(targets)
        .wait()
        .context("reassigning partitions")?;
    report_plan(&plan, &results, false, arguments.output)?;
    fail_if_any_refused(&results)
}

fn reassignments(client: &Client, output: OutputArgs) -> anyhow::Result<()> {
    let listed = client
        .admin()
        .list_reassignments()
        .wait()
        .context("listing reassignments")?;
    let mut stdout = std::io::stdout().lock();
    if output.json {
        let entries: Vec<_> = listed
            .iter()
            .map(|entry| {
                json!({
                    "topic": entry.topic,
                    "partition": entry.partition,
                    "replicas": entry.replicas,
                    "adding": entry.adding,
                    "removing": entry.removing,
                })
            })
            .collect();
        return write_json(&mut stdout, &json!({"reassignments": entries}));
    }
    let colour = stdout_colour();
    writeln!(
        stdout,
        "{}",
        bold("topic\tpartition\treplicas\tadding\tremoving", colour)
    )?;
    for entry in &listed {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}\t{}",
            entry.topic,
            entry.partition,
            node_list(&entry.replicas),
            node_list(&entry.adding),
            node_list(&entry.removing)
        )?;
    }
    Ok(())
}

fn balance_leaders(
    client: &Client,
    topic: Option<String>,
    output: OutputArgs,
) -> anyhow::Result<()> {
    let admin = client.admin();
    let partitions = match topic {
        None => None,
        Some(topic) => {
            let description = admin
                .describe_topic(&topic)
                .wait()
                .with_context(|| format!("describing topic {topic}"))?;
            let numbers = description
                .partitions
                .iter()
                .map(|partition| partition.partition)
                .collect();
            Some(vec![(topic, numbers)])
        }
    };
    let results = admin
        .elect_preferred_leaders(partitions)
        .wait()
        .context("electing preferred leaders")?;
    let mut stdout = std::io::stdout().lock();
    if output.json {
        let entries: Vec<_> = results
            .iter()
            .map(|change| {
                json!({
                    "topic": change.topic,
                    "partition": change.partition,
                    "error": change.result.as_ref().err().map(ToString::to_string),
                })
            })
            .collect();
        write_json(&mut stdout, &json!({"partitions": entries}))?;
    } else {
        if results.is_empty() {
            // Over every partition the broker lists only those whose leader changed.
            writeln!(stdout, "every preferred leader already leads")?;
        }
        for change in &results {
            let outcome = match &change.result {
                Ok(()) => "preferred leader leads".to_string(),
                Err(error) => format!("not moved: {error}"),
            };
            writeln!(stdout, "{}\t{}\t{outcome}", change.topic, change.partition)?;
        }
    }
    // A partition whose preferred replica is not in sync keeps its leader: reported, not a
    // failure of the command (Kafka's tool says the same).
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn placement(topic: &str, partition: u32, replicas: &[NodeId]) -> Placement {
        Placement {
            topic: topic.into(),
            partition,
            replicas: replicas.to_vec(),
        }
    }

    fn counts(placements: &[Placement], plan: &[Placement]) -> BTreeMap<NodeId, usize> {
        let mut counts = BTreeMap::new();
        for current in placements {
            let replicas = plan
                .iter()
                .find(|moved| moved.topic == current.topic && moved.partition == current.partition)
                .map_or(&current.replicas, |moved| &moved.replicas);
            for replica in replicas {
                *counts.entry(*replica).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn a_new_broker_gets_its_fair_share_taken_from_the_most_loaded() {
        // 6 partitions at RF 2 over brokers 0,1,2: 12 replicas; with broker 3 the share is 3.
        let current: Vec<Placement> = (0..6)
            .map(|partition| {
                placement(
                    "t",
                    partition,
                    &[(partition % 3) as NodeId, ((partition + 1) % 3) as NodeId],
                )
            })
            .collect();
        let plan = fair_share_plan(&current, &[0, 1, 2, 3], 3);
        let after = counts(&current, &plan);
        assert_eq!(after[&3], 3, "{plan:?}");
        assert!(after.values().all(|count| *count == 3), "{after:?}");
        for moved in &plan {
            let mut distinct = moved.replicas.clone();
            distinct.sort_unstable();
            distinct.dedup();
            assert_eq!(distinct.len(), 2, "no replica twice: {moved:?}");
        }
        assert_eq!(
            plan,
            fair_share_plan(&current, &[0, 1, 2, 3], 3),
            "deterministic"
        );
    }

    #[test]
    fn nothing_moves_when_the_broker_has_its_share_or_every_partition_already_has_it() {
        let balanced = vec![placement("t", 0, &[0, 1]), placement("t", 1, &[2, 3])];
        assert!(fair_share_plan(&balanced, &[0, 1, 2, 3], 3).is_empty());
        // RF = brokers: every partition already has broker 2, no move is possible.
        let full = vec![placement("t", 0, &[0, 1, 2]), placement("t", 1, &[1, 2, 0])];
        assert!(fair_share_plan(&full, &[0, 1, 2], 2).is_empty());
    }

    #[test]
    fn plans_in_kafkas_format_are_read_and_bad_ones_refused() {
        let plan = parse_plan(
            r#"{"version":1,"partitions":[{"topic":"a","partition":2,"replicas":[3,1,2],"log_dirs":["any"]}]}"#,
        )
        .unwrap();
        assert_eq!(plan, vec![placement("a", 2, &[3, 1, 2])]);
        for bad in [
            "[]",
            r#"{"partitions":[]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[1,1]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":-1,"replicas":[1]}]}"#,
            r#"{"partitions":[{"partition":0,"replicas":[1]}]}"#,
            r#"{"partitions":[{"topic":"a","partition":0,"replicas":[-2]}]}"#,
        ] {
            assert!(parse_plan(bad).is_err(), "{bad}");
        }
    }
}
