//! What a command does, start to end: resolve the workload and placement, measure the limits
//! if asked, start or reach each system under test, run the workload with each driver, print
//! the table and write the JSON.
//!
//! Exit codes: 0 when every run finished without a failed record, 1 when a run failed or
//! counted failed records (the results are still printed and written), 2 for a usage error.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::apache_kafka;
use crate::cli::{
    Command, CompactionLatencyArgs, IdleArgs, LimitsArgs, LimitsTuning, OutputArgs, TargetArgs,
    WorkloadArgs,
};
use crate::constants::DIRECT_IO_ALIGNMENT_BYTES;
use crate::driver::redis::RedisDriver;
use crate::driver::spate::SpateDriver;
use crate::driver::{Driver, DriverError, DriverKind, Promise};
use crate::idle::{self, IdleCrowd, IdleCrowdReport, IdleError};
use crate::limits::{DiskSyncPolicy, LimitSettings, LimitsError, MachineLimits};
use crate::placement::{available_cores, restrict_current_thread, CoreList, Placement};
use crate::report;
use crate::runner::{self, Progress, RunError, RunOutcome};
use crate::steady_state::{self, SteadyState, SteadyStateError};
use crate::target::{self, BrokerListener, RedisFsync, SpawnedProcess, TargetError};
use crate::workload::WorkloadLayer;
use crate::workload::{AcksSetting, DurabilitySetting, Workload, WorkloadError, WorkloadKind};

/// Default address of an external Spate broker (the broker's own default listener).
const BROKER_ADDRESS_DEFAULT: &str = "127.0.0.1:9192";
/// Where the kafka and apache-kafka drivers look without --spawn-broker or an address (Kafka's
/// own default).
const KAFKA_ADDRESS_DEFAULT: &str = "127.0.0.1:9092";

/// Everything that stops a command.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Workload(#[from] WorkloadError),
    #[error("measuring the limits: {0}")]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    Target(#[from] TargetError),
    #[error(transparent)]
    Driver(#[from] DriverError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("idle connections: {0}")]
    Idle(#[from] IdleError),
    #[error("steady state: {0}")]
    SteadyState(#[from] SteadyStateError),
    #[error("{0}")]
    Usage(String),
    #[error("cannot write {path}: {source}")]
    WriteJson {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl BenchError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            BenchError::Workload(_) | BenchError::Usage(_) => ExitCode::from(2),
            _ => ExitCode::FAILURE,
        }
    }
}

pub fn run(command: Command) -> Result<ExitCode, BenchError> {
    match command {
        Command::Produce(arguments) => run_workload(WorkloadKind::Produce, arguments),
        Command::Consume(arguments) => run_workload(WorkloadKind::Consume, arguments),
        Command::E2e(arguments) => run_workload(WorkloadKind::E2e, arguments),
        Command::Limits(arguments) => run_limits(arguments),
        Command::CompactionLatency(arguments) => run_compaction_latency(arguments),
    }
}

/// The spawned broker's log, as `compaction-latency` reads it.
impl runner::compaction_latency::BrokerLog for SpawnedProcess {
    fn recent(&self) -> String {
        self.recent_log()
    }
}

/// `compaction-latency`: a one-shard broker, the machine's limits first when asked, then the
/// three probe phases (see `runner::compaction_latency`).
fn run_compaction_latency(arguments: CompactionLatencyArgs) -> Result<ExitCode, BenchError> {
    use runner::compaction_latency::{self as workload, CompactionLatencySettings};
    let available = available_cores();
    // One shard: both topics on the same core and disk queue.
    let first = CoreList(vec![available.first().copied().unwrap_or(0)]);
    let broker_cores = arguments.broker_cores.clone().unwrap_or(first);
    if broker_cores.0.len() != 1 {
        return Err(BenchError::Usage(
            "compaction-latency runs a broker of one shard: give --broker-cores one CPU".into(),
        ));
    }
    let placement = Placement::plan(
        &available,
        Some(&broker_cores),
        arguments.load_cores.as_ref(),
        true,
    );
    let mut notes = Vec::new();
    if placement.shared {
        notes.push("the broker and the load generator share cores".to_string());
    }
    if let Err(error) = restrict_current_thread(&placement.load_cores) {
        notes.push(format!(
            "could not restrict the harness to the load cores: {error}"
        ));
    }
    let data_root = arguments
        .data_dir
        .clone()
        .unwrap_or_else(target::default_data_root);
    let limits = if arguments.limits.with_limits {
        eprintln!("measuring limits in {} ...", data_root.display());
        let sync = DiskSyncPolicy::GroupCommit {
            interval_bytes: crate::constants::GROUP_COMMIT_BYTES_DEFAULT,
            interval_us: crate::constants::GROUP_COMMIT_US_DEFAULT,
        };
        Some(measure_limits(
            &data_root,
            &placement,
            &arguments.limits.tuning,
            sync,
            arguments.limits.tuning.disk_write_bytes,
        )?)
    } else {
        None
    };
    let mut broker_arguments = vec![
        "--compaction-check-interval-ms".to_string(),
        crate::constants::COMPACTION_CHECK_INTERVAL_MS.to_string(),
    ];
    if let Some(rate) = arguments.compaction_io_bytes_per_second {
        broker_arguments.extend(["--compaction-io-bytes-per-second".into(), rate.to_string()]);
    }
    if let Some(slice) = arguments.compaction_cpu_slice_us {
        broker_arguments.extend(["--compaction-cpu-slice-us".into(), slice.to_string()]);
    }
    let binary = target::find_broker_binary(arguments.broker_binary.as_deref())?;
    let spawned = target::spawn_broker(
        &binary,
        &placement.broker_cores,
        &data_root,
        BrokerListener::Native,
        &broker_arguments,
    )?;
    let settings = CompactionLatencySettings {
        fill_bytes: arguments.fill_bytes,
        keys: arguments.keys,
        value_bytes: arguments.value_bytes,
        segment_bytes: arguments.segment_bytes,
        probe_ms: arguments.probe_ms,
        probe_interval_us: arguments.probe_interval_us,
        pass_timeout_ms: arguments.pass_timeout_ms,
    };
    let outcome = workload::run(spawned.address(), &settings, &spawned).map_err(|error| {
        eprintln!("last log lines of the broker:\n{}", spawned.recent_log());
        BenchError::Driver(error)
    })?;
    drop(spawned);
    if let Some(limits) = &limits {
        print!("{}", report::limits_table(limits));
    }
    print!("{}", report::compaction_latency_table(&outcome));
    for note in &notes {
        println!("note: {note}");
    }
    let document = json!({
        "workload": "compaction-latency",
        "config": {
            "settings": settings,
            "broker_arguments": broker_arguments,
            "placement": placement,
            "data_root": data_root.display().to_string(),
            "notes": notes,
            "machine": machine_description(&available),
            "harness_version": env!("CARGO_PKG_VERSION"),
        },
        "outcome": outcome,
        "limits": report::limits_value(limits.as_ref()),
    });
    write_json(&arguments.output, &document)?;
    Ok(ExitCode::SUCCESS)
}

fn run_workload(kind: WorkloadKind, arguments: WorkloadArgs) -> Result<ExitCode, BenchError> {
    let file_layer = match &arguments.workload {
        Some(path) => WorkloadLayer::from_file(path)?,
        None => WorkloadLayer::default(),
    };
    if let Some(brokers) = arguments.target.cluster {
        return run_cluster(kind, brokers, &arguments, file_layer);
    }
    let workload = Workload::resolve(kind, arguments.settings.clone().over(file_layer))?;
    let target_arguments = &arguments.target;
    check_drivers(target_arguments)?;
    let data_root = target_arguments
        .data_dir
        .clone()
        .unwrap_or_else(target::default_data_root);
    let steady_state = if arguments.steady_state {
        Some(steady_state::plan(&data_root)?)
    } else {
        None
    };
    let workload = match &steady_state {
        Some(plan) => workload.in_steady_state(plan.bytes_per_system),
        None => workload,
    };
    // Read before the harness restricts its own affinity to the load cores.
    let available = available_cores();
    let placement = Placement::plan(
        &available,
        target_arguments.broker_cores.as_ref(),
        target_arguments.load_cores.as_ref(),
        target_arguments.spawn_broker,
    );
    let mut notes = Vec::new();
    if placement.shared {
        notes.push("the broker and the load generator share cores".to_string());
    }
    // Threads a client library starts inherit this thread's affinity: keep them on the load
    // cores, off the broker's.
    if let Err(error) = restrict_current_thread(&placement.load_cores) {
        notes.push(format!(
            "could not restrict the harness to the load cores: {error}"
        ));
    }
    let limits = if arguments.limits.with_limits {
        eprintln!("measuring limits in {} ...", data_root.display());
        Some(measure_limits(
            &data_root,
            &placement,
            &arguments.limits.tuning,
            disk_sync_of(&workload),
            disk_write_bytes_of(&workload, &arguments.limits.tuning),
        )?)
    } else {
        None
    };
    let mut outcomes: Vec<RunOutcome> = Vec::new();
    let mut targets = Vec::new();
    let mut progress = Progress::new(!arguments.output.no_progress);
    let mut failures: Vec<BenchError> = Vec::new();
    let mut idle_crowd: Option<IdleCrowdReport> = None;
    for &driver_kind in &target_arguments.driver {
        // A driver that cannot run (redis-server missing, say) does not cost the results the
        // others measured: they are still printed and written, and the run exits 1.
        match run_driver(
            kind,
            driver_kind,
            target_arguments,
            &placement,
            &data_root,
            &workload,
            &arguments.idle,
            &mut progress,
        ) {
            Ok((outcome, target, crowd)) => {
                outcomes.push(outcome);
                targets.push(target);
                idle_crowd = idle_crowd.or(crowd);
            }
            Err(error) => {
                eprintln!("{} failed: {error}", driver_kind.name());
                notes.push(format!("{} did not run: {error}", driver_kind.name()));
                failures.push(error);
            }
        }
    }
    if outcomes.is_empty() {
        return Err(failures.remove(0));
    }
    let setup = json!({
        "drivers": target_arguments.driver,
        "targets": targets,
        "placement": placement,
        "data_root": data_root.display().to_string(),
        "with_limits": arguments.limits.with_limits,
        "notes": notes,
        "machine": machine_description(&available),
        "harness_version": env!("CARGO_PKG_VERSION"),
    });
    let config = report::config_value(Some(&workload), setup);
    let mut document =
        report::document(kind.name(), Some(kind), config, &outcomes, limits.as_ref());
    document["idle_connections"] = json!(idle_crowd);
    document["load"] = load_value(steady_state.as_ref());
    let title = format!(
        "{}; {}",
        describe(&workload, &placement),
        describe_load(steady_state.as_ref())
    );
    print!(
        "{}",
        report::table(&title, kind, &outcomes, limits.as_ref())
    );
    let spate_outcome = outcomes
        .iter()
        .find(|outcome| outcome.driver == DriverKind::Spate);
    if let (Some(crowd), Some(without)) = (&idle_crowd, spate_outcome) {
        println!(
            "\nspate beside {} idle connections (the same workload on the same broker, run first):",
            crowd.connections
        );
        print!("{}", report::idle_crowd_table(without, crowd));
    }
    for note in &notes {
        println!("note: {note}");
    }
    write_json(&arguments.output, &document)?;
    let failed = !failures.is_empty() || outcomes.iter().any(|outcome| outcome.errors > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// `--cluster N`: the produce workload with acks=all on RF=N against RF=1 on local clusters,
/// then the failover rounds (see `cluster`).
fn run_cluster(
    kind: WorkloadKind,
    brokers: usize,
    arguments: &WorkloadArgs,
    file_layer: WorkloadLayer,
) -> Result<ExitCode, BenchError> {
    if kind != WorkloadKind::Produce {
        return Err(BenchError::Usage(
            "--cluster runs the produce workload only".into(),
        ));
    }
    if !(1..=100).contains(&brokers) {
        return Err(BenchError::Usage("--cluster takes 1 to 100 brokers".into()));
    }
    let mut layer = arguments.settings.clone().over(file_layer);
    // acks=all is what replication changes; the whole run is measured, so that the brokers'
    // counters (read over the whole run) and the acknowledged bytes cover the same records.
    layer.acks = Some(layer.acks.unwrap_or(AcksSetting::All));
    layer.warmup_ms = Some(layer.warmup_ms.unwrap_or(0));
    let workload = Workload::resolve(kind, layer)?;
    let binary = target::find_broker_binary(arguments.target.broker_binary.as_deref())?;
    let data_root = arguments
        .target
        .data_dir
        .clone()
        .unwrap_or_else(target::default_data_root);
    let available = available_cores();
    let placement = Placement::plan(
        &available,
        None,
        arguments.target.load_cores.as_ref(),
        false,
    );
    let mut progress = Progress::new(!arguments.output.no_progress);
    let runs = crate::cluster::produce_replicated_against_unreplicated(
        &binary,
        &data_root,
        brokers,
        &workload,
        &placement,
        &mut progress,
    )?;
    let failover = if arguments.target.failover_rounds > 0 {
        eprintln!(
            "starting a {brokers}-broker cluster for {} failover rounds ...",
            arguments.target.failover_rounds
        );
        let mut cluster = crate::cluster::LocalCluster::start(&binary, &data_root, brokers, &[])
            .map_err(|error| BenchError::Usage(error.to_string()))?;
        Some(
            crate::cluster::measure_failover(&mut cluster, arguments.target.failover_rounds)
                .map_err(|error| BenchError::Usage(error.to_string()))?,
        )
    } else {
        None
    };
    print!(
        "{}\n{}",
        describe(&workload, &placement),
        crate::cluster::table(&runs, failover.as_ref())
    );
    let document = json!({
        "workload": "cluster-produce",
        "brokers": brokers,
        "config": report::config_value(Some(&workload), json!({
            "machine": machine_description(&available),
            "harness_version": env!("CARGO_PKG_VERSION"),
        })),
        "runs": runs,
        "failover": failover,
    });
    write_json(&arguments.output, &document)?;
    let failed = runs.iter().any(|run| run.outcome.errors > 0);
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Starts or reaches one system, runs the workload against it (and again beside an idle crowd
/// when asked, Spate only), and stops what it started.
#[allow(clippy::too_many_arguments)]
fn run_driver(
    kind: WorkloadKind,
    driver_kind: DriverKind,
    target_arguments: &TargetArgs,
    placement: &Placement,
    data_root: &Path,
    workload: &Workload,
    idle: &IdleArgs,
    progress: &mut Progress,
) -> Result<(RunOutcome, Value, Option<IdleCrowdReport>), BenchError> {
    // Redis keeps every stream entry in memory: a steady-state run holds all its bytes there.
    if let (DriverKind::Redis, Some(bytes)) = (driver_kind, workload.steady_state_bytes) {
        steady_state::check_memory_holds(bytes)?;
    }
    let (spawned, address) = start_target(
        driver_kind,
        target_arguments,
        placement,
        data_root,
        workload,
    )?;
    let target = json!({
        "driver": driver_kind,
        "address": address.to_string(),
        "spawned": spawned.is_some(),
        "data_dir": spawned.as_ref().and_then(|spawned| spawned.data_dir()).map(|path| path.display().to_string()),
        // What the native driver's connections paid for (never the password).
        "tls": target_arguments.tls_ca.is_some(),
        "tls_client_certificate": target_arguments.tls_cert.is_some(),
        "sasl_mechanism": target_arguments.sasl_mechanism.map(|mechanism| mechanism.name()),
    });
    let driver = connect(driver_kind, address, target_arguments, workload)?;
    eprintln!(
        "running {} with {} at {address} ...",
        kind.name(),
        driver_kind.name()
    );
    // The crowd's run comes first, so the broker at rest is measured fresh, as an operator's
    // broker would be before its clients arrive.
    let crowd = match (idle.idle_connections, driver_kind, spawned.as_ref()) {
        (Some(count), DriverKind::Spate, Some(spawned)) if count > 0 => {
            let beside = BesideCrowd {
                kind,
                driver: driver.as_ref(),
                workload,
                placement,
                spawned,
            };
            Some(beside.run(count, Duration::from_millis(idle.idle_measure_ms), progress)?)
        }
        _ => None,
    };
    let result = run_kind(kind, driver.as_ref(), workload, placement, progress);
    let mut outcome = result.map_err(|error| explain_with_log(error, spawned.as_ref()))?;
    outcome.promise = Some(promise_of(driver_kind, workload.acks, spawned.is_some()));
    drop(driver);
    drop(spawned);
    Ok((outcome, target, crowd))
}

/// What `driver`'s acknowledgements promise under `acks`: the system's own when the harness
/// chose its durability (it spawned it, or the setting is a topic config the driver sets).
fn promise_of(driver: DriverKind, acks: AcksSetting, spawned: bool) -> Promise {
    match driver {
        DriverKind::Redis | DriverKind::ApacheKafka if !spawned && acks != AcksSetting::None => {
            Promise::External
        }
        _ => driver.promise(acks),
    }
}

fn run_kind(
    kind: WorkloadKind,
    driver: &dyn Driver,
    workload: &Workload,
    placement: &Placement,
    progress: &mut Progress,
) -> Result<RunOutcome, RunError> {
    match kind {
        WorkloadKind::Produce => runner::produce::run(driver, workload, placement, progress),
        WorkloadKind::Consume => runner::consume::run(driver, workload, placement, progress),
        WorkloadKind::E2e => runner::e2e::run(driver, workload, placement, progress),
    }
}

/// A run of a workload beside an idle crowd, on the broker the plain run uses after it.
struct BesideCrowd<'a> {
    kind: WorkloadKind,
    driver: &'a dyn Driver,
    workload: &'a Workload,
    placement: &'a Placement,
    spawned: &'a SpawnedProcess,
}

impl BesideCrowd<'_> {
    /// Measures the broker at rest, opens `count` idle connections, measures it at rest again,
    /// runs the workload beside them (on a topic of its own), and closes them (waiting until the
    /// broker has let them go).
    fn run(
        &self,
        count: usize,
        measured: Duration,
        progress: &mut Progress,
    ) -> Result<IdleCrowdReport, BenchError> {
        let pid = self.spawned.pid().ok_or_else(|| {
            BenchError::Usage("the spawned broker has exited before the idle crowd".into())
        })?;
        eprintln!(
            "measuring the broker at rest for {} ms ...",
            measured.as_millis()
        );
        let without = idle::measure_idle(pid, measured)?;
        eprintln!("opening {count} idle connections ...");
        let crowd = IdleCrowd::open(self.spawned.address(), count, pid)?;
        eprintln!(
            "measuring the broker at rest beside them for {} ms ...",
            measured.as_millis()
        );
        let with = idle::measure_idle(pid, measured)?;
        let mut beside = self.workload.clone();
        beside.topic = format!("{}-idle", self.workload.topic);
        eprintln!(
            "running {} again beside {} idle connections ...",
            self.kind.name(),
            crowd.len()
        );
        let result = run_kind(self.kind, self.driver, &beside, self.placement, progress);
        let with_crowd = result.map_err(|error| explain_with_log(error, Some(self.spawned)))?;
        crowd.close(pid)?;
        Ok(IdleCrowdReport::new(count, without, with, with_crowd))
    }
}

fn check_drivers(arguments: &TargetArgs) -> Result<(), BenchError> {
    if arguments.driver.is_empty() {
        return Err(BenchError::Usage("--driver names no system".into()));
    }
    for (index, driver) in arguments.driver.iter().enumerate() {
        if arguments.driver[..index].contains(driver) {
            return Err(BenchError::Usage(format!(
                "--driver names {} twice",
                driver.name()
            )));
        }
    }
    if arguments.driver.contains(&DriverKind::Redis)
        && !arguments.spawn_broker
        && arguments.redis.is_none()
    {
        return Err(BenchError::Usage(
            "the redis driver needs --spawn-broker or --redis ADDR".into(),
        ));
    }
    Ok(())
}

/// Starts the system for `driver` (with --spawn-broker) or resolves its external address.
fn start_target(
    driver: DriverKind,
    arguments: &TargetArgs,
    placement: &Placement,
    data_root: &Path,
    workload: &Workload,
) -> Result<(Option<SpawnedProcess>, std::net::SocketAddr), BenchError> {
    if !arguments.spawn_broker {
        let address = match driver {
            DriverKind::Spate => arguments
                .broker
                .as_deref()
                .unwrap_or(BROKER_ADDRESS_DEFAULT),
            DriverKind::Kafka => arguments.kafka.as_deref().unwrap_or(KAFKA_ADDRESS_DEFAULT),
            DriverKind::ApacheKafka | DriverKind::ApacheKafkaFlush => arguments
                .apache_kafka
                .as_deref()
                .unwrap_or(KAFKA_ADDRESS_DEFAULT),
            DriverKind::Redis => arguments.redis.as_deref().unwrap_or_default(),
        };
        return Ok((None, target::resolve_address(address)?));
    }
    let spawned = match driver {
        DriverKind::Spate => {
            let binary = target::find_broker_binary(arguments.broker_binary.as_deref())?;
            target::spawn_broker(
                &binary,
                &placement.broker_cores,
                data_root,
                BrokerListener::Native,
                &arguments.broker_arguments,
            )?
        }
        // Spate over its Kafka listener: the same broker binary, a fresh broker of its own.
        DriverKind::Kafka => {
            let binary = target::find_broker_binary(arguments.broker_binary.as_deref())?;
            target::spawn_broker(
                &binary,
                &placement.broker_cores,
                data_root,
                BrokerListener::Kafka,
                &arguments.broker_arguments,
            )?
        }
        // Apache Kafka at either durability setting: the same broker; the topic decides.
        DriverKind::ApacheKafka | DriverKind::ApacheKafkaFlush => {
            let classpath = arguments
                .apache_kafka_classpath
                .clone()
                .unwrap_or_else(|| PathBuf::from(apache_kafka::CLASSPATH_FILE_DEFAULT));
            eprintln!(
                "starting Apache Kafka {} ...",
                apache_kafka::APACHE_KAFKA_VERSION
            );
            apache_kafka::spawn_apache_kafka(&classpath, &placement.broker_cores, data_root)?
        }
        DriverKind::Redis => {
            let fsync = match workload.acks {
                AcksSetting::All => RedisFsync::Always,
                AcksSetting::Leader | AcksSetting::None => RedisFsync::EverySecond,
            };
            target::spawn_redis(
                &arguments.redis_binary,
                &placement.broker_cores,
                data_root,
                fsync,
            )?
        }
    };
    let address = spawned.address();
    Ok((Some(spawned), address))
}

fn connect(
    driver: DriverKind,
    address: std::net::SocketAddr,
    target_arguments: &TargetArgs,
    _workload: &Workload,
) -> Result<Box<dyn Driver>, BenchError> {
    Ok(match driver {
        DriverKind::Spate => Box::new(SpateDriver::connect(
            address,
            spate_security(target_arguments),
        )?),
        DriverKind::Kafka | DriverKind::ApacheKafka | DriverKind::ApacheKafkaFlush => {
            kafka_driver(address, driver)?
        }
        DriverKind::Redis => Box::new(RedisDriver::connect(address)?),
    })
}

/// The native driver's TLS and SASL from `--tls-*` and `--sasl-*` (clap checked that they come
/// in whole sets).
fn spate_security(target_arguments: &TargetArgs) -> crate::driver::spate::Security {
    let tls = target_arguments.tls_ca.as_ref().map(|ca_file| {
        let tls = spate_client::TlsConfig::new(ca_file);
        match (&target_arguments.tls_cert, &target_arguments.tls_key) {
            (Some(cert_file), Some(key_file)) => tls.with_client_certificate(cert_file, key_file),
            _ => tls,
        }
    });
    let sasl = target_arguments.sasl_mechanism.map(|mechanism| {
        (
            mechanism,
            target_arguments.sasl_username.clone().unwrap_or_default(),
            target_arguments.sasl_password.clone().unwrap_or_default(),
        )
    });
    crate::driver::spate::Security { tls, sasl }
}

#[cfg(feature = "kafka")]
fn kafka_driver(
    address: std::net::SocketAddr,
    kind: DriverKind,
) -> Result<Box<dyn Driver>, BenchError> {
    Ok(Box::new(crate::driver::kafka::KafkaDriver::connect(
        address, kind,
    )?))
}

/// librdkafka is built only with the `kafka` feature (a C build of a few minutes).
#[cfg(not(feature = "kafka"))]
fn kafka_driver(
    _address: std::net::SocketAddr,
    kind: DriverKind,
) -> Result<Box<dyn Driver>, BenchError> {
    Err(crate::driver::DriverError::Unsupported {
        driver: kind.name(),
        what: "this build (rebuild spate-bench with --features kafka)",
    }
    .into())
}

/// A run error, with the spawned process's last log lines when it may explain it.
fn explain_with_log(error: RunError, spawned: Option<&SpawnedProcess>) -> BenchError {
    if let Some(spawned) = spawned {
        eprintln!(
            "last log lines of the system under test:\n{}",
            spawned.recent_log()
        );
    }
    BenchError::Run(error)
}

/// The fdatasync interval the broker applies to the workload's topic.
fn disk_sync_of(workload: &Workload) -> DiskSyncPolicy {
    match workload.durability {
        DurabilitySetting::GroupCommit => DiskSyncPolicy::GroupCommit {
            interval_bytes: workload.group_commit_bytes,
            interval_us: workload.group_commit_us,
        },
        DurabilitySetting::FsyncEveryAppend => DiskSyncPolicy::EveryWrite,
    }
}

/// Under fsync-every-append the broker syncs after each batch, so each write is one batch
/// (rounded up to the O_DIRECT alignment); under group commit, large writes.
fn disk_write_bytes_of(workload: &Workload, tuning: &LimitsTuning) -> usize {
    match workload.durability {
        DurabilitySetting::GroupCommit => tuning.disk_write_bytes,
        DurabilitySetting::FsyncEveryAppend => {
            workload
                .batch_bytes
                .div_ceil(DIRECT_IO_ALIGNMENT_BYTES)
                .max(1)
                * DIRECT_IO_ALIGNMENT_BYTES
        }
    }
}

fn measure_limits(
    data_root: &Path,
    placement: &Placement,
    tuning: &LimitsTuning,
    disk_sync: DiskSyncPolicy,
    disk_write_bytes: usize,
) -> Result<MachineLimits, BenchError> {
    let directory = target::fresh_data_dir(data_root, "spate-bench-limits-")?;
    let settings = LimitSettings {
        loopback_duration_ms: tuning.loopback_duration_ms,
        rtt_round_trips: tuning.rtt_round_trips,
        disk_duration_ms: tuning.disk_duration_ms,
        disk_write_bytes,
        disk_sync,
        disk_read_file_bytes: tuning
            .disk_read_file_bytes
            .unwrap_or_else(|| crate::limits::read_file_bytes_for(tuning.disk_duration_ms)),
        disk_read_queue_depths: crate::constants::DISK_READ_QUEUE_DEPTHS.to_vec(),
        data_dir: directory.path().to_path_buf(),
        client_core: placement.load_core(0),
        broker_core: placement.broker_side_core(),
        rounds: tuning.limit_rounds,
    };
    Ok(crate::limits::measure(&settings)?)
}

fn run_limits(arguments: LimitsArgs) -> Result<ExitCode, BenchError> {
    let available = available_cores();
    let placement = Placement::plan(
        &available,
        arguments.broker_cores.as_ref(),
        arguments.load_cores.as_ref(),
        true,
    );
    let data_root = arguments
        .data_dir
        .clone()
        .unwrap_or_else(target::default_data_root);
    let disk_sync = match arguments.durability {
        DurabilitySetting::GroupCommit => DiskSyncPolicy::GroupCommit {
            interval_bytes: arguments.group_commit_bytes,
            interval_us: arguments.group_commit_us,
        },
        DurabilitySetting::FsyncEveryAppend => DiskSyncPolicy::EveryWrite,
    };
    let disk_write_bytes = match arguments.durability {
        DurabilitySetting::GroupCommit => arguments.tuning.disk_write_bytes,
        DurabilitySetting::FsyncEveryAppend => {
            arguments
                .batch_bytes
                .div_ceil(DIRECT_IO_ALIGNMENT_BYTES)
                .max(1)
                * DIRECT_IO_ALIGNMENT_BYTES
        }
    };
    eprintln!("measuring limits in {} ...", data_root.display());
    let limits = measure_limits(
        &data_root,
        &placement,
        &arguments.tuning,
        disk_sync,
        disk_write_bytes,
    )?;
    let config = report::config_value(
        None,
        json!({
            "placement": placement,
            "data_root": data_root.display().to_string(),
            "durability": arguments.durability,
            "loopback_duration_ms": arguments.tuning.loopback_duration_ms,
            "rtt_round_trips": arguments.tuning.rtt_round_trips,
            "disk_duration_ms": arguments.tuning.disk_duration_ms,
            "limit_rounds": arguments.tuning.limit_rounds,
            "machine": machine_description(&available),
            "harness_version": env!("CARGO_PKG_VERSION"),
        }),
    );
    let document = report::document("limits", None, config, &[], Some(&limits));
    print!("{}", report::limits_table(&limits));
    write_json(&arguments.output, &document)?;
    Ok(ExitCode::SUCCESS)
}

fn write_json(output: &OutputArgs, document: &Value) -> Result<(), BenchError> {
    let Some(path) = &output.json else {
        return Ok(());
    };
    let text = serde_json::to_string_pretty(document).expect("JSON values serialize");
    std::fs::write(path, text + "\n").map_err(|source| BenchError::WriteJson {
        path: path.clone(),
        source,
    })
}

/// The table's title line.
fn describe(workload: &Workload, placement: &Placement) -> String {
    let durability = match workload.durability {
        DurabilitySetting::GroupCommit => format!(
            "group-commit ({} us / {} B)",
            workload.group_commit_us, workload.group_commit_bytes
        ),
        DurabilitySetting::FsyncEveryAppend => "fsync-every-append".to_string(),
    };
    let durability = if workload.write_caching {
        format!("{durability}, write caching (consumers read unsynced records)")
    } else {
        durability
    };
    format!(
        "{} \"{}\": {} producer(s), {} consumer(s), {} partition(s), {} B records, batch {} B, \
         linger {} us, acks {}, durability {durability}; broker cores {:?}, load cores {:?}",
        workload.kind.name(),
        workload.name,
        workload.producers,
        workload.consumers,
        workload.partitions,
        workload.message_bytes,
        workload.batch_bytes,
        workload.linger_us,
        workload.acks.name(),
        placement.broker_cores,
        placement.load_cores,
    )
}

/// The JSON's `load` object: burst, or steady state with the bytes each system wrote at least.
fn load_value(steady_state: Option<&SteadyState>) -> Value {
    match steady_state {
        None => json!({ "mode": "burst" }),
        Some(plan) => json!({
            "mode": "steady-state",
            "dirty_limit_bytes": plan.dirty_limit_bytes,
            "dirty_limit_source": plan.dirty_limit_source,
            "bytes_per_system": plan.bytes_per_system,
            "free_bytes": plan.free_bytes,
        }),
    }
}

/// The load mode on the table's title line.
fn describe_load(steady_state: Option<&SteadyState>) -> String {
    match steady_state {
        None => "burst (the duration or count asked for)".to_string(),
        Some(plan) => format!(
            "steady state: at least {:.1} GB written per system, {:.1}x the dirty-page limit of \
             {:.1} GB ({})",
            plan.bytes_per_system as f64 / 1e9,
            plan.bytes_per_system as f64 / plan.dirty_limit_bytes.max(1) as f64,
            plan.dirty_limit_bytes as f64 / 1e9,
            plan.dirty_limit_source
        ),
    }
}

/// CPUs and kernel, so a result file says what it was measured on.
fn machine_description(available: &[usize]) -> Value {
    // SAFETY: `utsname` is plain data that uname(2) fills.
    let mut name: libc::utsname = unsafe { std::mem::zeroed() };
    let kernel = if unsafe { libc::uname(&mut name) } == 0 {
        let release: Vec<u8> = name
            .release
            .iter()
            .take_while(|&&byte| byte != 0)
            .map(|&byte| byte as u8)
            .collect();
        String::from_utf8_lossy(&release).into_owned()
    } else {
        "unknown".to_string()
    };
    json!({
        "available_cores": available,
        "kernel": kernel,
    })
}
