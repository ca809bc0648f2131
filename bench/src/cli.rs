//! The command line: one subcommand per workload (`produce`, `consume`, `e2e`, `limits`), each
//! with the target, limits and output flags, plus the workload settings of `workload`.
//!
//! Parsing only; `app` decides what runs.

use std::path::PathBuf;

use crate::constants::*;
use crate::driver::DriverKind;
use crate::placement::CoreList;
use crate::workload::{DurabilitySetting, WorkloadLayer};

const AFTER_HELP: &str = "\
Workload settings come from the defaults of the subcommand, then --workload FILE (TOML, keys as
the flags with underscores, e.g. message_bytes = 1024), then flags; a later source wins.
Examples:
  spate-bench produce --spawn-broker --with-limits --json out.json
  spate-bench produce --spawn-broker --driver spate,redis --acks all
  spate-bench produce --cluster 3 --failover-rounds 5
  spate-bench e2e --spawn-broker --workload bench/workloads/e2e-half-max.toml
  spate-bench limits --data-dir /var/lib/spate";

#[derive(Debug, clap::Parser)]
#[command(
    name = "spate-bench",
    version,
    about = "Spate benchmark harness: workloads measured against this machine's own limits",
    after_help = AFTER_HELP
)]
pub struct CommandLine {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// N producers, P partitions, as fast as acknowledgements come back: throughput and
    /// produce-to-ack latency.
    Produce(WorkloadArgs),
    /// Pre-fill a topic, then M consumers drain it: throughput.
    Consume(WorkloadArgs),
    /// Open-loop producers at a fixed rate, consumers tailing: end-to-end latency corrected
    /// for coordinated omission, and whether the rate was held.
    E2e(WorkloadArgs),
    /// This machine's ceilings: loopback TCP throughput and round trip, O_DIRECT write
    /// bandwidth with fdatasync at the broker's durability interval, O_DIRECT read bandwidth at
    /// queue depths 1 and 8.
    Limits(LimitsArgs),
    /// acks=all produce-to-ack latency of one record at a time, on a shard with compaction
    /// idle, then while a compaction pass runs on another partition of the same shard, then
    /// idle again (spawns a one-shard broker).
    CompactionLatency(CompactionLatencyArgs),
}

/// Arguments of `compaction-latency`.
#[derive(Debug, Clone, clap::Args)]
pub struct CompactionLatencyArgs {
    /// The spate-broker binary to spawn [default: next to this executable].
    #[arg(long)]
    pub broker_binary: Option<PathBuf>,
    /// The CPU of the broker's one shard [default: the first available CPU].
    #[arg(long)]
    pub broker_cores: Option<CoreList>,
    /// CPUs for the load generator [default: the available CPUs the broker does not get].
    #[arg(long)]
    pub load_cores: Option<CoreList>,
    /// Where the broker keeps data and the disk limit is measured [default: the temporary
    /// directory unless it is a tmpfs].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    #[command(flatten)]
    pub limits: LimitsOptions,
    #[command(flatten)]
    pub output: OutputArgs,
    /// Bytes of values written to the compacted topic before the probes.
    #[arg(long, default_value_t = COMPACTION_FILL_BYTES_DEFAULT)]
    pub fill_bytes: u64,
    /// Distinct keys the fill overwrites in turn.
    #[arg(long, default_value_t = COMPACTION_KEYS_DEFAULT)]
    pub keys: u64,
    /// Bytes of each fill record's value.
    #[arg(long, default_value_t = MESSAGE_BYTES_DEFAULT)]
    pub value_bytes: usize,
    /// `segment.bytes` of the compacted topic (only closed segments are compacted).
    #[arg(long, default_value_t = COMPACTION_SEGMENT_BYTES_DEFAULT)]
    pub segment_bytes: u64,
    /// Length of each idle probe phase.
    #[arg(long, default_value_t = DURATION_MS_DEFAULT)]
    pub probe_ms: u64,
    /// Time between probe sends (or less often, when an acknowledgement takes longer).
    #[arg(long, default_value_t = COMPACTION_PROBE_INTERVAL_US_DEFAULT)]
    pub probe_interval_us: u64,
    /// Longest wait for the pass to start, and then to end.
    #[arg(long, default_value_t = COMPACTION_PASS_TIMEOUT_MS_DEFAULT)]
    pub pass_timeout_ms: u64,
    /// The broker's `compaction_io_bytes_per_second` [default: the broker's].
    #[arg(long)]
    pub compaction_io_bytes_per_second: Option<u64>,
    /// The broker's `compaction_cpu_slice_us` [default: the broker's].
    #[arg(long)]
    pub compaction_cpu_slice_us: Option<u64>,
}

/// Arguments of the workload subcommands.
#[derive(Debug, clap::Args)]
pub struct WorkloadArgs {
    /// Workload file (TOML); flags override it.
    #[arg(long)]
    pub workload: Option<PathBuf>,
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub limits: LimitsOptions,
    #[command(flatten)]
    pub output: OutputArgs,
    #[command(flatten)]
    pub idle: IdleArgs,
    /// Steady state instead of a burst: every system writes at least 2.2 times the kernel's
    /// dirty-page limit (vm.dirty_bytes, or vm.dirty_ratio of RAM), so that a system that
    /// acknowledges from the page cache runs at the speed of its disk. Replaces the duration
    /// or count of produce and consume with that many bytes, and stretches an e2e run to write
    /// them at its target rate. Refused when the data directory has too little free space.
    #[arg(long)]
    pub steady_state: bool,
    #[command(flatten)]
    pub settings: WorkloadLayer,
}

/// An idle crowd beside the workload (connections held open and never used).
#[derive(Debug, Clone, clap::Args)]
pub struct IdleArgs {
    /// Run the workload once more beside this many idle connections to the spawned broker
    /// (opened by the harness, whose open-files limit is raised to its hard limit), and report
    /// both runs, the broker's memory and descriptors per idle connection, and its CPU at rest
    /// without and with them.
    #[arg(long, requires = "spawn_broker")]
    pub idle_connections: Option<usize>,
    /// How long the broker's CPU at rest is measured, without and with the idle connections.
    #[arg(long, default_value_t = IDLE_MEASURE_MS_DEFAULT)]
    pub idle_measure_ms: u64,
}

/// What to run against, and where everything runs.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// Systems to drive, comma-separated (spate, kafka, apache-kafka, apache-kafka-flush,
    /// redis): the first is the subject, the others run the same workload after it and are
    /// compared with it. `kafka` is a Kafka-API broker through librdkafka (Spate's Kafka
    /// listener when spawned); `apache-kafka` is Apache Kafka through the same client at its
    /// defaults (acknowledged from the page cache), `apache-kafka-flush` with
    /// `flush.messages=1` on the topic (an fsync before every answer). The Kafka drivers need a
    /// build with `--features kafka`.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "spate")]
    pub driver: Vec<DriverKind>,
    /// Start each system here, pinned to --broker-cores, with a fresh data directory under
    /// --data-dir (spate-broker for spate and kafka; Apache Kafka in KRaft mode for the
    /// apache-kafka drivers; redis-server for the redis driver).
    #[arg(long, conflicts_with_all = ["broker", "kafka", "apache_kafka", "redis"])]
    pub spawn_broker: bool,
    /// Start a local cluster of this many brokers instead (the same spate-broker binary, broker
    /// i on 127.0.0.<i>, every broker a seed) and run the produce workload with acks=all on an
    /// RF=N topic, then on an RF=1 topic (a fresh cluster whose default replication factor is
    /// 1), with each broker's socket bytes sent and received and disk bytes written per
    /// acknowledged byte; then --failover-rounds kill -9 of a partition leader. Produce only.
    #[arg(long, conflicts_with_all = ["spawn_broker", "broker", "kafka", "redis"])]
    pub cluster: Option<usize>,
    /// With --cluster: how many times the leader of an RF=N partition is killed under a steady
    /// acks=all producer, each timed from the kill to the first acknowledged write after it.
    #[arg(long, default_value_t = 5)]
    pub failover_rounds: u32,
    /// Address of a running Spate broker [default: 127.0.0.1:9192].
    #[arg(long)]
    pub broker: Option<String>,
    /// Bootstrap address of a running Kafka-API broker for the kafka driver [default:
    /// 127.0.0.1:9092].
    #[arg(long)]
    pub kafka: Option<String>,
    /// Bootstrap address of a running Apache Kafka for the apache-kafka drivers [default:
    /// 127.0.0.1:9092]. The flush driver sets flush.messages=1 on its topics; the other keeps
    /// the broker's own settings.
    #[arg(long)]
    pub apache_kafka: Option<String>,
    /// The classpath file (jars joined by `:`) of the Apache Kafka that --spawn-broker starts,
    /// as `bench/scripts/apache-kafka-install.sh` writes it [default: the one that script writes
    /// in this source tree].
    #[arg(long)]
    pub apache_kafka_classpath: Option<PathBuf>,
    /// Address of a running redis-server (its appendfsync setting is its own).
    #[arg(long)]
    pub redis: Option<String>,
    /// The spate-broker binary to spawn [default: next to this executable].
    #[arg(long)]
    pub broker_binary: Option<PathBuf>,
    /// One more argument for a spawned spate-broker, repeatable, e.g.
    /// `--broker-arg=--metrics --broker-arg=false` (the metrics-cost pair).
    #[arg(
        long = "broker-arg",
        requires = "spawn_broker",
        allow_hyphen_values = true
    )]
    pub broker_arguments: Vec<String>,
    /// The native driver talks TLS, verifying the broker against this PEM CA bundle (give a
    /// spawned broker its certificate with `--broker-arg=--tls-cert-file --broker-arg=FILE`
    /// and the same for `--tls-key-file`; `bench/scripts/tls-cost.sh` does both).
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate chain the native driver presents (mutual TLS), with --tls-key.
    #[arg(long, value_name = "FILE", requires_all = ["tls_ca", "tls_key"])]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The native driver authenticates every connection with this SASL mechanism (PLAIN,
    /// SCRAM-SHA-256, SCRAM-SHA-512), as --sasl-username with --sasl-password
    /// (`bench/scripts/authz-cost.sh` gives a broker of its own the user and its ACLs).
    #[arg(long, requires_all = ["sasl_username", "sasl_password"])]
    pub sasl_mechanism: Option<spate_client::SaslMechanism>,
    /// The SASL user.
    #[arg(long, requires = "sasl_mechanism")]
    pub sasl_username: Option<String>,
    /// The SASL user's password (prefer SPATE_BENCH_SASL_PASSWORD: a flag shows in `ps`).
    #[arg(
        long,
        env = "SPATE_BENCH_SASL_PASSWORD",
        hide_env_values = true,
        requires = "sasl_mechanism"
    )]
    pub sasl_password: Option<String>,
    /// The redis-server binary to spawn.
    #[arg(long, default_value = "redis-server")]
    pub redis_binary: PathBuf,
    /// CPUs for the spawned system, like 0-3 or 0,2 [default: the first half of the available
    /// CPUs, at least one].
    #[arg(long)]
    pub broker_cores: Option<CoreList>,
    /// CPUs for the load generator [default: the available CPUs the broker does not get].
    #[arg(long)]
    pub load_cores: Option<CoreList>,
    /// Where spawned systems keep data and the disk limit is measured (must support O_DIRECT)
    /// [default: the temporary directory unless it is a tmpfs].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

/// Whether and how to measure the machine's limits before a workload.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsOptions {
    /// Measure the limits first and print every figure also as a ratio of its limit.
    #[arg(long)]
    pub with_limits: bool,
    #[command(flatten)]
    pub tuning: LimitsTuning,
}

/// How long and how hard each limit is measured.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitsTuning {
    /// Length of the loopback throughput stream.
    #[arg(long, default_value_t = LOOPBACK_DURATION_MS_DEFAULT)]
    pub loopback_duration_ms: u64,
    /// Round trips timed for the loopback RTT.
    #[arg(long, default_value_t = RTT_ROUND_TRIPS_DEFAULT)]
    pub rtt_round_trips: u64,
    /// Length of the disk write stream.
    #[arg(long, default_value_t = DISK_DURATION_MS_DEFAULT)]
    pub disk_duration_ms: u64,
    /// Size of each O_DIRECT write (a multiple of 4096) under group commit; under
    /// fsync-every-append each write is one batch.
    #[arg(long, default_value_t = DISK_WRITE_BYTES_DEFAULT)]
    pub disk_write_bytes: usize,
    /// Size of the file the O_DIRECT read limit reads (each queue depth reads it once, for at
    /// most --disk-duration-ms), a multiple of 1 MiB [default: 1 MiB per ms of
    /// --disk-duration-ms, between 16 MiB and 1 GiB].
    #[arg(long)]
    pub disk_read_file_bytes: Option<u64>,
    /// Measure every limit this many times and keep the best figure of each (interference
    /// only lowers a ceiling).
    #[arg(long, default_value_t = LIMIT_ROUNDS_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=LIMIT_ROUNDS_MAX as i64))]
    pub limit_rounds: u32,
}

/// Output options.
#[derive(Debug, Clone, clap::Args)]
pub struct OutputArgs {
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Never show the progress line (it only shows on a terminal anyway).
    #[arg(long)]
    pub no_progress: bool,
}

/// Arguments of `limits`.
#[derive(Debug, clap::Args)]
pub struct LimitsArgs {
    /// Directory to measure the disk in: the broker's data directory [default: the temporary
    /// directory unless it is a tmpfs].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// CPU of the broker side (loopback receiver, disk writer) [default: as --spawn-broker].
    #[arg(long)]
    pub broker_cores: Option<CoreList>,
    /// CPU of the client side (loopback sender).
    #[arg(long)]
    pub load_cores: Option<CoreList>,
    /// The durability policy whose fdatasync interval the disk measurement follows.
    #[arg(long, value_enum, default_value = "group-commit")]
    pub durability: DurabilitySetting,
    #[arg(long, default_value_t = GROUP_COMMIT_US_DEFAULT)]
    pub group_commit_us: u64,
    #[arg(long, default_value_t = GROUP_COMMIT_BYTES_DEFAULT)]
    pub group_commit_bytes: u64,
    /// Batch size (the write size under fsync-every-append).
    #[arg(long, default_value_t = BATCH_BYTES_DEFAULT)]
    pub batch_bytes: usize,
    #[command(flatten)]
    pub tuning: LimitsTuning,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn produce_flags_parse_into_the_workload_layer() {
        let command_line = CommandLine::try_parse_from([
            "spate-bench",
            "produce",
            "--spawn-broker",
            "--with-limits",
            "--json",
            "out.json",
            "--partitions",
            "4",
            "--acks",
            "all",
            "--driver",
            "spate,redis",
        ])
        .unwrap();
        let Command::Produce(arguments) = command_line.command else {
            panic!("expected produce");
        };
        assert!(arguments.target.spawn_broker);
        assert!(arguments.limits.with_limits);
        assert_eq!(arguments.output.json, Some(PathBuf::from("out.json")));
        assert_eq!(arguments.settings.partitions, Some(4));
        assert_eq!(
            arguments.target.driver,
            vec![DriverKind::Spate, DriverKind::Redis]
        );
    }

    #[test]
    fn spawning_and_an_external_broker_exclude_each_other() {
        let result = CommandLine::try_parse_from([
            "spate-bench",
            "produce",
            "--spawn-broker",
            "--broker",
            "127.0.0.1:9192",
        ]);
        assert!(result.is_err());
    }

    #[test]
    fn sasl_flags_come_as_a_whole_set() {
        let produce = |extra: &[&str]| {
            let mut arguments = vec!["spate-bench", "produce", "--broker", "127.0.0.1:9192"];
            arguments.extend_from_slice(extra);
            CommandLine::try_parse_from(arguments)
        };
        let parsed = produce(&[
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "bench",
            "--sasl-password",
            "secret",
        ])
        .unwrap();
        let Command::Produce(arguments) = parsed.command else {
            panic!("expected produce");
        };
        assert_eq!(
            arguments.target.sasl_mechanism,
            Some(spate_client::SaslMechanism::ScramSha512)
        );
        assert_eq!(arguments.target.sasl_username.as_deref(), Some("bench"));
        // A mechanism without a user, a user without a mechanism, a certificate without its
        // key or without a CA: refused before anything runs.
        assert!(produce(&["--sasl-mechanism", "PLAIN"]).is_err());
        assert!(produce(&["--sasl-username", "bench"]).is_err());
        assert!(produce(&["--tls-ca", "ca.pem", "--tls-cert", "c.pem"]).is_err());
        assert!(produce(&["--tls-cert", "c.pem", "--tls-key", "k.pem"]).is_err());
    }

    #[test]
    fn limits_take_the_durability_policy() {
        let command_line = CommandLine::try_parse_from([
            "spate-bench",
            "limits",
            "--durability",
            "fsync-every-append",
            "--disk-duration-ms",
            "500",
        ])
        .unwrap();
        let Command::Limits(arguments) = command_line.command else {
            panic!("expected limits");
        };
        assert_eq!(arguments.durability, DurabilitySetting::FsyncEveryAppend);
        assert_eq!(arguments.tuning.disk_duration_ms, 500);
    }

    #[test]
    fn the_apache_kafka_drivers_parse_by_name() {
        let command_line = CommandLine::try_parse_from([
            "spate-bench",
            "produce",
            "--driver",
            "spate,kafka,apache-kafka,apache-kafka-flush,redis",
            "--apache-kafka",
            "127.0.0.1:9092",
            "--redis",
            "127.0.0.1:6379",
            "--steady-state",
        ])
        .unwrap();
        let Command::Produce(arguments) = command_line.command else {
            panic!("expected produce");
        };
        assert_eq!(
            arguments.target.driver,
            vec![
                DriverKind::Spate,
                DriverKind::Kafka,
                DriverKind::ApacheKafka,
                DriverKind::ApacheKafkaFlush,
                DriverKind::Redis
            ]
        );
        assert!(arguments.steady_state);
        assert!(CommandLine::try_parse_from([
            "spate-bench",
            "produce",
            "--spawn-broker",
            "--apache-kafka",
            "127.0.0.1:9092",
        ])
        .is_err());
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        <CommandLine as clap::CommandFactory>::command().debug_assert();
    }
}
