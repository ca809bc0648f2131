//! `spate`: the command-line tool for a Spate broker (what `kcat` and `rpk` are to Kafka).
//!
//! `spate topic create|list|describe|delete|alter|trim`, `spate produce` (one record per input
//! line), `spate consume` (one record per output line, a template or JSON; `--group` to consume
//! as a member of a consumer group), `spate group list|describe|reset-offsets|delete-offsets|
//! delete` and `spate cluster info|add-broker|decommission|move-partitions|reassignments|
//! balance-leaders` (`spate metadata` is `cluster info`), `spate user create|delete|list`
//! (`user`), `spate acl add|remove|list` (`acl`); `--sasl-mechanism`, `--sasl-username` and `--sasl-password` (or
//! `SPATE_SASL_PASSWORD`) authenticate every connection. This file parses the command line and
//! turns failures into one-line messages and exit codes; the commands are in `topic`, `produce`,
//! `consume`, `group` and `cluster`, output formats in `format` (records) and `output` (the
//! admin commands' `--json`), terminal handling in `terminal`. Everything talks to the broker
//! through the `spate-client` library.

#![forbid(unsafe_code)]

mod acl;
mod cluster;
mod consume;
mod encoding;
mod format;
mod group;
mod input_format;
mod offsets;
mod output;
mod produce;
mod terminal;
mod topic;
mod user;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use spate_client::{Client, ClientConfig, ErrorCode, SaslMechanism, TlsConfig};

/// Exit codes, documented in `--help`.
pub(crate) mod exit {
    /// The command failed (the broker refused, bad input, ...).
    pub const FAILURE: u8 = 1;
    /// The command line was wrong (clap's own code for usage errors).
    pub const USAGE: u8 = 2;
    /// No broker answered at the given address (or what answered is not a Spate broker).
    pub const UNREACHABLE: u8 = 3;
    /// The topic (or partition) does not exist.
    pub const UNKNOWN_TOPIC: u8 = 4;
    /// The broker's ACLs do not allow the command's principal what the command asked.
    pub const NOT_AUTHORIZED: u8 = 5;
    /// Stopped by Ctrl-C (SIGINT), the shell's 128 + signal number.
    pub const INTERRUPTED: u8 = 130;
    /// Stopped by SIGTERM, the shell's 128 + signal number.
    pub const TERMINATED: u8 = 143;
}

const AFTER_HELP: &str = "\
Exit codes: 0 success, 1 failure, 2 usage error, 3 broker unreachable (or not a Spate broker), \
4 unknown topic or partition, 5 not authorized (the broker's ACLs), 130 or 143: a produce stopped by Ctrl-C or SIGTERM before the end \
of its input (a consume stopped so ends normally, 0). Errors are printed as one line on stderr.";

#[derive(Debug, Parser)]
#[command(
    name = "spate",
    version,
    about = "Command-line tool for the Spate event streaming broker",
    after_help = AFTER_HELP
)]
struct Cli {
    #[command(flatten)]
    connection: ConnectionArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args)]
struct ConnectionArgs {
    /// Broker address, HOST:PORT (a comma-separated list works as for --brokers, also in
    /// SPATE_BROKER).
    #[arg(
        short = 'b',
        long,
        global = true,
        env = "SPATE_BROKER",
        hide_env_values = true,
        default_value = spate_client::config::defaults::BROKER_ADDRESS
    )]
    broker: String,
    /// Bootstrap addresses of a cluster, HOST:PORT,HOST:PORT,...: tried in order until one
    /// answers; the client then reaches each broker the cluster names. Overrides --broker.
    #[arg(long, global = true)]
    brokers: Option<String>,
    /// How long to keep retrying while the broker cannot be reached, to wait for its first
    /// answer, and (produce) to wait for records in flight when stopped early; milliseconds.
    #[arg(long, global = true, default_value_t = 5_000)]
    timeout_ms: u64,
    /// Talk TLS to the broker, verifying its certificate against this PEM CA bundle (also in
    /// SPATE_TLS_CA).
    #[arg(long, global = true, env = "SPATE_TLS_CA", value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// PEM client certificate chain for mutual TLS, with --tls-key (needs --tls-ca).
    #[arg(long, global = true, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, global = true, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// The name the broker's certificate must carry, when it is not the host dialled.
    #[arg(long, global = true, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// Authenticate with this SASL mechanism: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (the
    /// broker's --sasl-mechanisms must offer it).
    #[arg(long, global = true, env = "SPATE_SASL_MECHANISM")]
    sasl_mechanism: Option<SaslMechanism>,
    /// The user to authenticate as.
    #[arg(long, global = true, env = "SPATE_SASL_USERNAME")]
    sasl_username: Option<String>,
    /// The user's password (prefer SPATE_SASL_PASSWORD: a flag shows in `ps`).
    #[arg(
        long,
        global = true,
        env = "SPATE_SASL_PASSWORD",
        hide_env_values = true
    )]
    sasl_password: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, list, describe, delete and reconfigure topics.
    #[command(subcommand)]
    Topic(topic::TopicCommand),
    /// Produce one record per line of stdin or --file (or per -D delimiter, -f template, -l
    /// whole input).
    Produce(produce::ProduceArgs),
    /// Print records of one or more topics, one per line (value, -f template or -J JSON).
    Consume(consume::ConsumeArgs),
    /// List, describe, reset and delete consumer groups and their offsets.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Describe the cluster and every topic's partitions (`cluster info`); move replicas
    /// between brokers, add and decommission brokers, balance leaders.
    #[command(subcommand)]
    Cluster(cluster::ClusterCommand),
    /// Same as `cluster info`.
    Metadata(output::OutputArgs),
    /// Create, delete and list users (SCRAM credentials for SASL authentication).
    #[command(subcommand)]
    User(user::UserCommand),
    /// Add, remove and list ACLs: who may do what to which topic, group, transactional id or
    /// the cluster.
    #[command(subcommand)]
    Acl(acl::AclCommand),
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) if !error.use_stderr() => {
            // --help and --version: their text on stdout, success.
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            terminal::print_error_line(&usage_error_line(&error));
            return ExitCode::from(exit::USAGE);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let code = exit_code(&error);
            if code == exit::USAGE {
                // A contradiction found after parsing: shown like clap's usage errors.
                let arguments: Vec<String> = std::env::args().skip(1).collect();
                let (command_path, _) = command_named_by(&arguments);
                terminal::print_error_line(&format!("{error:#} (see '{command_path} --help')"));
            } else {
                terminal::print_error(&error);
            }
            ExitCode::from(code)
        }
    }
}

/// A usage error in one line, without the `error: ` label: clap's first paragraph (its tips and
/// usage block dropped), with the command's `--help` named so the rest is one step away.
fn usage_error_line(error: &clap::Error) -> String {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (command_path, command) = command_named_by(&arguments);
    let hint = format!("(see '{command_path} --help')");
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        let names: Vec<&str> = command
            .get_subcommands()
            .map(clap::Command::get_name)
            .filter(|name| *name != "help")
            .collect();
        return format!(
            "'{command_path}' needs a command: {} {hint}",
            names.join(", ")
        );
    }
    if error.kind() == ErrorKind::UnknownArgument {
        if let Some(ContextValue::String(invalid)) = error.get(ContextKind::InvalidArg) {
            // clap names only the first characters of `-10`; the command line has all of it.
            let negative = arguments.iter().find(|argument| {
                argument.starts_with(invalid.as_str())
                    && argument.parse::<i64>().is_ok_and(|number| number < 0)
            });
            if let Some(negative) = negative {
                return format!(
                    "invalid value '{negative}': a negative number is not accepted here {hint}"
                );
            }
        }
    }
    let rendered = error.render().to_string();
    let first_paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let message = first_paragraph.join(" ");
    let message = message.strip_prefix("error: ").unwrap_or(&message);
    format!("{message} {hint}")
}

/// The (sub)command the command line names, as `spate topic create`, and its definition.
fn command_named_by(arguments: &[String]) -> (String, clap::Command) {
    use clap::CommandFactory;

    let mut command = Cli::command();
    let mut path = vec![command.get_name().to_string()];
    for argument in arguments
        .iter()
        .filter(|argument| !argument.starts_with('-'))
    {
        let Some(sub) = command.find_subcommand(argument).cloned() else {
            continue;
        };
        path.push(sub.get_name().to_string());
        command = sub;
    }
    (path.join(" "), command)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let client = connect(&cli.connection)?;
    match cli.command {
        Command::Topic(command) => topic::run(&client, command),
        Command::Produce(arguments) => produce::run(
            &client,
            arguments,
            Duration::from_millis(cli.connection.timeout_ms),
        ),
        Command::Consume(arguments) => consume::run(&client, arguments),
        Command::Group(command) => group::run(&client, command),
        Command::Cluster(command) => cluster::run(&client, command),
        Command::Metadata(output) => cluster::info(&client, output),
        Command::User(command) => user::run(&client, command),
        Command::Acl(command) => acl::run(&client, command),
    }
}

fn connect(arguments: &ConnectionArgs) -> anyhow::Result<Client> {
    let mut config = ClientConfig {
        bootstrap: bootstrap_addresses(arguments)?,
        retry_timeout: Duration::from_millis(arguments.timeout_ms),
        connect_timeout: Duration::from_millis(arguments.timeout_ms.clamp(1, 5_000)),
        tls: tls_config(arguments)?,
        ..ClientConfig::default().with_client_id("spate-cli")
    };
    if let Some(mechanism) = arguments.sasl_mechanism {
        let (Some(username), Some(password)) = (&arguments.sasl_username, &arguments.sasl_password)
        else {
            return Err(output::UsageError(
                "--sasl-mechanism needs --sasl-username and --sasl-password (or \
                 SPATE_SASL_PASSWORD)"
                    .to_string(),
            )
            .into());
        };
        config = config.with_sasl(mechanism, username.clone(), password.clone());
    }
    Ok(Client::new(config)?)
}

/// TLS from `--tls-*`: on with `--tls-ca`; the other flags refine it and are refused without it.
fn tls_config(arguments: &ConnectionArgs) -> anyhow::Result<Option<TlsConfig>> {
    let Some(ca_file) = &arguments.tls_ca else {
        if arguments.tls_cert.is_some() || arguments.tls_server_name.is_some() {
            return Err(output::UsageError(
                "--tls-cert, --tls-key and --tls-server-name need --tls-ca".to_string(),
            )
            .into());
        }
        return Ok(None);
    };
    let mut tls = TlsConfig::new(ca_file);
    if let (Some(cert_file), Some(key_file)) = (&arguments.tls_cert, &arguments.tls_key) {
        tls = tls.with_client_certificate(cert_file, key_file);
    }
    if let Some(server_name) = &arguments.tls_server_name {
        tls = tls.with_server_name(server_name);
    }
    Ok(Some(tls))
}

/// The bootstrap list: `--brokers` when given, else `--broker`; either may list several
/// addresses separated by commas.
fn bootstrap_addresses(arguments: &ConnectionArgs) -> anyhow::Result<Vec<String>> {
    let list = arguments.brokers.as_deref().unwrap_or(&arguments.broker);
    let addresses: Vec<String> = list
        .split(',')
        .map(str::trim)
        .filter(|address| !address.is_empty())
        .map(str::to_string)
        .collect();
    if addresses.is_empty() {
        return Err(output::UsageError(format!("no broker address in {list:?}")).into());
    }
    Ok(addresses)
}

/// A command stopped by a signal before it was done; `message` says what was done.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub(crate) struct Interrupted {
    /// [`exit::INTERRUPTED`] or [`exit::TERMINATED`].
    pub exit_code: u8,
    pub message: String,
}

/// Maps the failure to the documented exit codes.
fn exit_code(error: &anyhow::Error) -> u8 {
    if let Some(interrupted) = error.downcast_ref::<Interrupted>() {
        return interrupted.exit_code;
    }
    if error.downcast_ref::<output::UsageError>().is_some() {
        return exit::USAGE;
    }
    let Some(error) = error.downcast_ref::<spate_client::Error>() else {
        return exit::FAILURE;
    };
    if error.is_unreachable() {
        return exit::UNREACHABLE;
    }
    if error.code() == Some(ErrorCode::UnknownTopicOrPartition) {
        return exit::UNKNOWN_TOPIC;
    }
    if matches!(error.root(), spate_client::Error::NotAuthorized { .. }) {
        return exit::NOT_AUTHORIZED;
    }
    exit::FAILURE
}

/// Parses `key=value` arguments (`--config`, `--header`).
fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got {text:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn key_values_split_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("a=b=c"),
            Ok(("a".to_string(), "b=c".to_string()))
        );
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=x").is_err());
    }

    #[test]
    fn brokers_overrides_broker_and_both_take_comma_separated_lists() {
        let parse = |line: &[&str]| {
            let cli = Cli::try_parse_from(line).unwrap();
            bootstrap_addresses(&cli.connection)
        };
        assert_eq!(
            parse(&["spate", "--broker", "h:1", "cluster", "info"]).unwrap(),
            vec!["h:1"]
        );
        assert_eq!(
            parse(&["spate", "--brokers", "a:1, b:2,c:3", "cluster", "info"]).unwrap(),
            vec!["a:1", "b:2", "c:3"]
        );
        assert_eq!(
            parse(&["spate", "-b", "x:1", "--brokers", "a:1", "cluster", "info"]).unwrap(),
            vec!["a:1"]
        );
        assert_eq!(
            parse(&["spate", "-b", "x:1,y:2", "cluster", "info"]).unwrap(),
            vec!["x:1", "y:2"]
        );
        assert!(parse(&["spate", "--brokers", " , ", "cluster", "info"]).is_err());
    }

    #[test]
    fn unreachable_brokers_and_unknown_topics_get_their_own_exit_codes() {
        let unreachable = anyhow::Error::new(spate_client::Error::Connect {
            address: "127.0.0.1:1".into(),
            source: std::sync::Arc::new(std::io::ErrorKind::ConnectionRefused.into()),
        });
        assert_eq!(exit_code(&unreachable), exit::UNREACHABLE);
        let unknown = anyhow::Error::new(spate_client::Error::UnknownTopic { topic: "x".into() });
        assert_eq!(exit_code(&unknown), exit::UNKNOWN_TOPIC);
        assert_eq!(exit_code(&anyhow::anyhow!("other")), exit::FAILURE);
    }
}
