//! `spate acl add|remove|list`: the broker's ACLs (Kafka's model: who may do what to which
//! topic, group, transactional id or the cluster), over the client's `Admin`. Shaped after
//! `kafka-acls.sh` and `rpk acl`: one resource selector (`--topic`, `--group`, `--cluster`,
//! `--transactional-id`), `--prefixed` for a prefix pattern, `--deny` for a deny rule; `remove`
//! and `list` take the same flags as filters, each one left out matching anything.
//!
//! `remove` matches literal patterns unless told otherwise, so that the flags of an `add`
//! remove exactly what it added; `list` matches both pattern types unless told otherwise.
//! Output follows `spate user`: tab-separated columns, bold headers only on a terminal, one
//! JSON document with `--json`.

use std::io::Write;

use anyhow::Context;
use clap::{ArgGroup, Args, Subcommand};
use serde_json::json;
use spate_client::{AclBinding, AclBindingFilter, Client, Operation, PatternType};
use spate_client::{PatternTypeFilter, Permission, ResourceType};

use crate::output::{write_json, OutputArgs, UsageError};
use crate::terminal::{bold, stdout_colour};

/// The resource name Kafka gives the cluster in bindings.
const CLUSTER_NAME: &str = "kafka-cluster";

#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Add ACLs: each principal may (or, with --deny, may not) do each operation to the
    /// resource.
    Add(AddArgs),
    /// Remove the ACLs the flags match (literal patterns unless --prefixed or --pattern-type).
    Remove(FilterArgs),
    /// List the ACLs the flags match (every ACL without flags).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[command(flatten)]
        output: OutputArgs,
    },
}

/// The one resource a binding protects.
#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("resource").args(["topic", "group", "cluster", "transactional_id"])
))]
pub struct ResourceArgs {
    /// A topic (or, with --prefixed, every topic whose name starts with it; "*" is every topic).
    #[arg(long, value_name = "TOPIC")]
    topic: Option<String>,
    /// A consumer group.
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The cluster itself (cluster operations, topic creation, ACLs and users).
    #[arg(long)]
    cluster: bool,
    /// A transactional id.
    #[arg(long, value_name = "ID")]
    transactional_id: Option<String>,
}

impl ResourceArgs {
    fn resource(&self) -> Option<(ResourceType, String)> {
        if let Some(topic) = &self.topic {
            return Some((ResourceType::Topic, topic.clone()));
        }
        if let Some(group) = &self.group {
            return Some((ResourceType::Group, group.clone()));
        }
        if let Some(id) = &self.transactional_id {
            return Some((ResourceType::TransactionalId, id.clone()));
        }
        self.cluster
            .then(|| (ResourceType::Cluster, CLUSTER_NAME.to_string()))
    }
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Who the ACL is for: User:NAME, or User:* for every user. Repeatable.
    #[arg(long, required = true, value_name = "User:NAME", value_parser = parse_principal)]
    principal: Vec<String>,
    /// The client address the ACL applies to: an IP address, or * for any. Repeatable.
    #[arg(long, default_value = "*", value_name = "HOST")]
    host: Vec<String>,
    /// Read, Write, Create, Delete, Alter, Describe, ClusterAction, DescribeConfigs,
    /// AlterConfigs, IdempotentWrite or All. Repeatable.
    #[arg(long, required = true, value_name = "OPERATION", value_parser = parse_operation)]
    operation: Vec<Operation>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// The name is a prefix: the ACL covers every resource whose name starts with it.
    #[arg(long)]
    prefixed: bool,
    /// A deny rule (deny wins over every allow).
    #[arg(long)]
    deny: bool,
}

#[derive(Debug, Args)]
pub struct FilterArgs {
    /// Only ACLs for this principal, as written in them (User:* finds the wildcard's own).
    #[arg(long, value_name = "User:NAME", value_parser = parse_principal)]
    principal: Option<String>,
    /// Only ACLs for this host, as written in them.
    #[arg(long, value_name = "HOST")]
    host: Option<String>,
    /// Only ACLs of this operation.
    #[arg(long, value_name = "OPERATION", value_parser = parse_operation)]
    operation: Option<Operation>,
    #[command(flatten)]
    resource: ResourceArgs,
    /// Only prefixed patterns (same as --pattern-type prefixed).
    #[arg(long, conflicts_with = "pattern_type")]
    prefixed: bool,
    /// literal, prefixed, any (both, with the name exactly) or match (every ACL that applies
    /// to the named resource: literal, "*" and prefixes of it).
    #[arg(long, value_name = "TYPE", value_parser = parse_pattern_type)]
    pattern_type: Option<PatternTypeFilter>,
    /// Only deny rules.
    #[arg(long, conflicts_with = "allow")]
    deny: bool,
    /// Only allow rules.
    #[arg(long)]
    allow: bool,
}

impl FilterArgs {
    /// The filter; `default_pattern` when neither --prefixed nor --pattern-type says.
    fn filter(&self, default_pattern: PatternTypeFilter) -> AclBindingFilter {
        let resource = self.resource.resource();
        let pattern = if self.prefixed {
            PatternTypeFilter::Prefixed
        } else {
            self.pattern_type.unwrap_or(default_pattern)
        };
        AclBindingFilter {
            resource_type: resource.as_ref().map(|(resource_type, _)| *resource_type),
            resource_name: resource.map(|(_, name)| name),
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission: if self.deny {
                Some(Permission::Deny)
            } else if self.allow {
                Some(Permission::Allow)
            } else {
                None
            },
        }
    }

    fn is_empty(&self) -> bool {
        self.principal.is_none()
            && self.host.is_none()
            && self.operation.is_none()
            && self.resource.resource().is_none()
            && !self.deny
            && !self.allow
    }
}

fn parse_principal(text: &str) -> Result<String, String> {
    match text.split_once(':') {
        Some((kind, name)) if !kind.is_empty() && !name.is_empty() => Ok(text.to_string()),
        _ => Err(format!(
            "expected a principal TYPE:NAME such as User:alice, got {text:?}"
        )),
    }
}

fn parse_operation(text: &str) -> Result<Operation, String> {
    Operation::from_name(text).ok_or_else(|| {
        let names: Vec<String> = Operation::ALL
            .iter()
            .map(|operation| kafka_style(operation.name()))
            .collect();
        format!("unknown operation {text:?} (one of {})", names.join(", "))
    })
}

fn parse_pattern_type(text: &str) -> Result<PatternTypeFilter, String> {
    match text.to_ascii_lowercase().as_str() {
        "literal" => Ok(PatternTypeFilter::Literal),
        "prefixed" => Ok(PatternTypeFilter::Prefixed),
        "any" => Ok(PatternTypeFilter::Any),
        "match" => Ok(PatternTypeFilter::Match),
        _ => Err(format!(
            "unknown pattern type {text:?} (literal, prefixed, any or match)"
        )),
    }
}

/// Kafka's constant name ("DESCRIBE_CONFIGS") as `kafka-acls.sh` prints it ("DescribeConfigs").
fn kafka_style(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut letters = word.chars();
            match letters.next() {
                Some(first) => first.to_string() + &letters.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

pub fn run(client: &Client, command: AclCommand) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match command {
        AclCommand::Add(arguments) => add(client, arguments, &mut stdout),
        AclCommand::Remove(filter) => remove(client, &filter, &mut stdout),
        AclCommand::List { filter, output } => list(client, &filter, output, &mut stdout),
    }
}

fn add(client: &Client, arguments: AddArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    let Some((resource_type, resource_name)) = arguments.resource.resource() else {
        return Err(UsageError(
            "a resource is needed: --topic, --group, --cluster or --transactional-id".into(),
        )
        .into());
    };
    let mut bindings = Vec::new();
    for principal in &arguments.principal {
        for host in &arguments.host {
            for operation in &arguments.operation {
                bindings.push(AclBinding {
                    resource_type,
                    resource_name: resource_name.clone(),
                    pattern: if arguments.prefixed {
                        PatternType::Prefixed
                    } else {
                        PatternType::Literal
                    },
                    principal: principal.clone(),
                    host: host.clone(),
                    operation: *operation,
                    permission: if arguments.deny {
                        Permission::Deny
                    } else {
                        Permission::Allow
                    },
                });
            }
        }
    }
    let outcomes = client
        .admin()
        .create_acls(&bindings)
        .wait()
        .context("adding ACLs")?;
    let mut first_failure = None;
    for (binding, outcome) in bindings.iter().zip(outcomes) {
        match outcome {
            Ok(()) => writeln!(stdout, "added: {}", describe(binding))?,
            Err(error) => {
                let error =
                    anyhow::Error::new(error).context(format!("adding ACL {}", describe(binding)));
                first_failure.get_or_insert(error);
            }
        }
    }
    match first_failure {
        Some(error) => Err(error),
        None => Ok(()),
    }
}

fn remove(client: &Client, filter: &FilterArgs, stdout: &mut impl Write) -> anyhow::Result<()> {
    if filter.is_empty() {
        // kafka-acls.sh asks before removing every ACL; a tool without a prompt refuses.
        return Err(UsageError(
            "remove needs at least one filter (--principal, --host, --operation, a resource, \
             --allow or --deny); it never removes every ACL at once"
                .into(),
        )
        .into());
    }
    let filter = filter.filter(PatternTypeFilter::Literal);
    let mut outcomes = client
        .admin()
        .delete_acls(std::slice::from_ref(&filter))
        .wait()
        .context("removing ACLs")?;
    let deleted = outcomes
        .pop()
        .context("the broker answered no outcome for the filter")?
        .context("removing ACLs")?;
    if deleted.is_empty() {
        writeln!(stdout, "no ACL matched")?;
    }
    for binding in &deleted {
        writeln!(stdout, "removed: {}", describe(binding))?;
    }
    Ok(())
}

fn list(
    client: &Client,
    filter: &FilterArgs,
    output: OutputArgs,
    stdout: &mut impl Write,
) -> anyhow::Result<()> {
    let filter = filter.filter(PatternTypeFilter::Any);
    let bindings = client
        .admin()
        .describe_acls(&filter)
        .wait()
        .context("listing ACLs")?;
    if output.json {
        let bindings: Vec<_> = bindings
            .iter()
            .map(|binding| {
                json!({
                    "principal": binding.principal,
                    "host": binding.host,
                    "resource_type": binding.resource_type.name(),
                    "resource_name": binding.resource_name,
                    "pattern_type": binding.pattern.name(),
                    "operation": binding.operation.name(),
                    "permission": binding.permission.name(),
                })
            })
            .collect();
        return write_json(stdout, &json!(bindings));
    }
    if stdout_colour() {
        writeln!(
            stdout,
            "{}",
            bold(
                "PRINCIPAL\tHOST\tRESOURCE-TYPE\tRESOURCE-NAME\tPATTERN\tOPERATION\tPERMISSION",
                true
            )
        )?;
    }
    for binding in &bindings {
        writeln!(
            stdout,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
            binding.principal,
            binding.host,
            binding.resource_type.name(),
            binding.resource_name,
            binding.pattern.name(),
            binding.operation.name(),
            binding.permission.name()
        )?;
    }
    Ok(())
}

/// One binding in a line, as `kafka-acls.sh` words it.
fn describe(binding: &AclBinding) -> String {
    format!(
        "{} {} {} from host {} on {} {} ({})",
        binding.principal,
        binding.permission.name(),
        kafka_style(binding.operation.name()),
        binding.host,
        binding.resource_type.name(),
        binding.resource_name,
        binding.pattern.name()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_parse_in_kafka_acls_spelling_and_constant_spelling() {
        assert_eq!(parse_operation("Read"), Ok(Operation::Read));
        assert_eq!(
            parse_operation("DescribeConfigs"),
            Ok(Operation::DescribeConfigs)
        );
        assert_eq!(
            parse_operation("IDEMPOTENT_WRITE"),
            Ok(Operation::IdempotentWrite)
        );
        let error = parse_operation("Fly").unwrap_err();
        assert!(error.contains("ClusterAction"), "{error}");
    }

    #[test]
    fn principals_need_a_type_and_a_name() {
        assert!(parse_principal("User:alice").is_ok());
        assert!(parse_principal("User:*").is_ok());
        assert!(parse_principal("alice").is_err());
        assert!(parse_principal("User:").is_err());
    }

    #[test]
    fn kafka_constant_names_read_as_kafka_acls_prints_them() {
        assert_eq!(kafka_style("CLUSTER_ACTION"), "ClusterAction");
        assert_eq!(kafka_style("READ"), "Read");
    }
}
