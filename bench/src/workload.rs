//! What a run does: the workload settings, read from a TOML file (in the spirit of the
//! OpenMessaging Benchmark workload files) and from command-line flags, merged over defaults.
//!
//! Layers, each later one winning: the defaults of the workload kind (`constants`), the
//! `--workload FILE`, then flags. A duration and a message count are one setting (how a run
//! stops): the highest layer that names either decides. This file parses and checks; it runs
//! nothing and knows no driver.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::constants::*;
use crate::runner::pacer::PacerKind;

/// The workloads the harness runs against a system under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkloadKind {
    Produce,
    Consume,
    E2e,
}

impl WorkloadKind {
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Produce => "produce",
            WorkloadKind::Consume => "consume",
            WorkloadKind::E2e => "e2e",
        }
    }
}

/// How many acknowledgements a producer waits for (Kafka's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AcksSetting {
    /// No acknowledgement: a record counts as done once handed to the client.
    None,
    /// The partition's leader appended it (written, not necessarily synced).
    Leader,
    /// Durable under the topic's durability policy.
    All,
}

impl AcksSetting {
    pub fn name(self) -> &'static str {
        match self {
            AcksSetting::None => "none",
            AcksSetting::Leader => "leader",
            AcksSetting::All => "all",
        }
    }
}

/// How the topic's appends are made durable (the broker's `durability` topic setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DurabilitySetting {
    /// One fdatasync covers every append since the last one, due by bytes or time.
    GroupCommit,
    /// An fdatasync after every append.
    FsyncEveryAppend,
}

impl DurabilitySetting {
    pub fn name(self) -> &'static str {
        match self {
            DurabilitySetting::GroupCommit => "group-commit",
            DurabilitySetting::FsyncEveryAppend => "fsync-every-append",
        }
    }
}

/// One layer of workload settings (file or flags): `None` means "not set here".
#[derive(Debug, Default, Clone, clap::Args, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadLayer {
    /// Free-text name printed with the results (workload files name themselves).
    #[arg(long)]
    pub name: Option<String>,
    /// Topic to create and use (default: spate-bench-<unix ms>, fresh each run).
    #[arg(long)]
    pub topic: Option<String>,
    /// Partitions of the topic.
    #[arg(long)]
    pub partitions: Option<u32>,
    /// Producer threads (each with its own client producer).
    #[arg(long)]
    pub producers: Option<u32>,
    /// Consumer threads (consume, e2e); partitions are dealt out round-robin.
    #[arg(long)]
    pub consumers: Option<u32>,
    /// Bytes of each record's value.
    #[arg(long)]
    pub message_bytes: Option<usize>,
    /// Producer batch size in bytes.
    #[arg(long)]
    pub batch_bytes: Option<usize>,
    /// How long a producer waits for a batch to fill, in microseconds.
    #[arg(long)]
    pub linger_us: Option<u64>,
    /// none, leader or all.
    #[arg(long, value_enum)]
    pub acks: Option<AcksSetting>,
    /// Topic durability: group-commit or fsync-every-append.
    #[arg(long, value_enum)]
    pub durability: Option<DurabilitySetting>,
    /// Group commit: one fdatasync at least every this many microseconds.
    #[arg(long)]
    pub group_commit_us: Option<u64>,
    /// Group commit: one fdatasync at least every this many bytes.
    #[arg(long)]
    pub group_commit_bytes: Option<u64>,
    /// Topic config write.caching (Spate): consumers may read acks=leader records once written,
    /// before their fsync. `--write-caching true`; false (the default) shows only durable ones.
    #[arg(long)]
    pub write_caching: Option<bool>,
    /// Measured run length in milliseconds (after the warm-up).
    #[arg(long)]
    pub duration_ms: Option<u64>,
    /// Stop after this many records in total instead of after a duration.
    #[arg(long)]
    pub message_count: Option<u64>,
    /// Results of this first stretch are thrown away, in milliseconds.
    #[arg(long)]
    pub warmup_ms: Option<u64>,
    /// e2e: target rate in records per second over all producers.
    #[arg(long)]
    pub rate: Option<f64>,
    /// e2e: target rate as a percentage of the maximum a closed-loop calibration run of the same
    /// e2e workload measures (records per second reaching the consumers).
    #[arg(long)]
    pub rate_percent_of_max: Option<f64>,
    /// e2e: length of that calibration run in milliseconds.
    #[arg(long)]
    pub calibration_ms: Option<u64>,
    /// Producer buffer memory in bytes (accepted, not yet acknowledged).
    #[arg(long)]
    pub producer_buffer_bytes: Option<usize>,
    /// Produce requests a producer may have in flight per partition (Kafka's
    /// max.in.flight.requests.per.connection) [default: the client library's default].
    #[arg(long)]
    pub inflight_requests_per_partition: Option<usize>,
    /// Most record bytes one consumer fetch returns.
    #[arg(long)]
    pub fetch_bytes_max: Option<usize>,
    /// produce: records a producer may have sent and not yet seen acknowledged; 1 makes each
    /// record a round trip of its own (send, wait for its acknowledgement, send the next)
    /// [default: no limit but the producer's buffer].
    #[arg(long)]
    pub inflight_records_max: Option<u64>,
    /// e2e: how open-loop producers wait for due instants: timerfd (a wake at most every
    /// pacer_wake_us, a calibrated spin for the last microseconds) or sleep (nanosleep per
    /// record, the pacer before 2026-12-03) [default: timerfd].
    #[arg(long, value_enum)]
    pub pacer: Option<PacerKind>,
    /// e2e, timerfd pacer: the shortest time between two wakes of a producer, in microseconds;
    /// records due in between are sent together, up to this late [default: 100].
    #[arg(long)]
    pub pacer_wake_us: Option<u64>,
}

impl WorkloadLayer {
    /// `self` over `lower`: every value set in `self` wins. Duration and count travel together.
    pub fn over(self, lower: WorkloadLayer) -> WorkloadLayer {
        let names_stop = self.duration_ms.is_some() || self.message_count.is_some();
        let (duration_ms, message_count) = if names_stop {
            (self.duration_ms, self.message_count)
        } else {
            (lower.duration_ms, lower.message_count)
        };
        let names_rate = self.rate.is_some() || self.rate_percent_of_max.is_some();
        let (rate, rate_percent_of_max) = if names_rate {
            (self.rate, self.rate_percent_of_max)
        } else {
            (lower.rate, lower.rate_percent_of_max)
        };
        WorkloadLayer {
            name: self.name.or(lower.name),
            topic: self.topic.or(lower.topic),
            partitions: self.partitions.or(lower.partitions),
            producers: self.producers.or(lower.producers),
            consumers: self.consumers.or(lower.consumers),
            message_bytes: self.message_bytes.or(lower.message_bytes),
            batch_bytes: self.batch_bytes.or(lower.batch_bytes),
            linger_us: self.linger_us.or(lower.linger_us),
            acks: self.acks.or(lower.acks),
            durability: self.durability.or(lower.durability),
            group_commit_us: self.group_commit_us.or(lower.group_commit_us),
            group_commit_bytes: self.group_commit_bytes.or(lower.group_commit_bytes),
            write_caching: self.write_caching.or(lower.write_caching),
            duration_ms,
            message_count,
            warmup_ms: self.warmup_ms.or(lower.warmup_ms),
            rate,
            rate_percent_of_max,
            calibration_ms: self.calibration_ms.or(lower.calibration_ms),
            producer_buffer_bytes: self.producer_buffer_bytes.or(lower.producer_buffer_bytes),
            inflight_requests_per_partition: self
                .inflight_requests_per_partition
                .or(lower.inflight_requests_per_partition),
            fetch_bytes_max: self.fetch_bytes_max.or(lower.fetch_bytes_max),
            inflight_records_max: self.inflight_records_max.or(lower.inflight_records_max),
            pacer: self.pacer.or(lower.pacer),
            pacer_wake_us: self.pacer_wake_us.or(lower.pacer_wake_us),
        }
    }

    /// Reads a workload file.
    pub fn from_file(path: &Path) -> Result<WorkloadLayer, WorkloadError> {
        let text = std::fs::read_to_string(path).map_err(|source| WorkloadError::ReadFile {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|error| WorkloadError::ParseFile {
            path: path.to_path_buf(),
            message: error.to_string(),
        })
    }
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stop {
    /// After this many milliseconds of measurement (following the warm-up).
    DurationMs(u64),
    /// After this many records in total, over all producers.
    MessageCount(u64),
}

/// The e2e target rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RateTarget {
    RecordsPerSec(f64),
    PercentOfMax(f64),
}

/// A resolved workload: every setting has a value and passed [`Workload::check`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    pub topic: String,
    pub partitions: u32,
    pub producers: u32,
    pub consumers: u32,
    pub message_bytes: usize,
    pub batch_bytes: usize,
    pub linger_us: u64,
    pub acks: AcksSetting,
    pub durability: DurabilitySetting,
    pub group_commit_us: u64,
    pub group_commit_bytes: u64,
    /// Spate's `write.caching` topic config.
    pub write_caching: bool,
    pub stop: Stop,
    pub warmup_ms: u64,
    /// Only for e2e.
    pub rate: Option<RateTarget>,
    pub calibration_ms: u64,
    pub producer_buffer_bytes: usize,
    /// `None`: the client library's default.
    pub inflight_requests_per_partition: Option<usize>,
    pub fetch_bytes_max: usize,
    /// Records a producer may have unacknowledged; `None`: only its buffer bounds them.
    pub inflight_records_max: Option<u64>,
    pub pacer: PacerKind,
    pub pacer_wake_us: u64,
    /// Steady state (`--steady-state`): the bytes of records each system writes at least;
    /// `None` for a burst.
    pub steady_state_bytes: Option<u64>,
}

/// Why a workload could not be built. Each variant names the setting.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("cannot read workload file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("workload file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("workload setting {setting} is invalid: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

fn invalid<T>(setting: &'static str, message: impl Into<String>) -> Result<T, WorkloadError> {
    Err(WorkloadError::Invalid {
        setting,
        message: message.into(),
    })
}

impl Workload {
    /// Merges `layer` over the defaults of `kind` and checks the result.
    pub fn resolve(kind: WorkloadKind, layer: WorkloadLayer) -> Result<Workload, WorkloadError> {
        let stop = match (layer.duration_ms, layer.message_count) {
            (Some(_), Some(_)) => {
                return invalid(
                    "duration_ms",
                    "set either duration_ms or message_count, not both",
                )
            }
            (Some(duration_ms), None) => Stop::DurationMs(duration_ms),
            (None, Some(count)) => Stop::MessageCount(count),
            (None, None) if kind == WorkloadKind::Consume => {
                Stop::MessageCount(CONSUME_MESSAGE_COUNT_DEFAULT)
            }
            (None, None) => Stop::DurationMs(DURATION_MS_DEFAULT),
        };
        let rate = match (kind, layer.rate, layer.rate_percent_of_max) {
            (WorkloadKind::E2e, Some(_), Some(_)) => {
                return invalid("rate", "set either rate or rate_percent_of_max, not both")
            }
            (WorkloadKind::E2e, Some(rate), None) => Some(RateTarget::RecordsPerSec(rate)),
            (WorkloadKind::E2e, None, Some(percent)) => Some(RateTarget::PercentOfMax(percent)),
            (WorkloadKind::E2e, None, None) => {
                Some(RateTarget::PercentOfMax(E2E_RATE_PERCENT_OF_MAX_DEFAULT))
            }
            (_, None, None) => None,
            (_, _, _) => return invalid("rate", "only e2e runs at a target rate"),
        };
        let consumers_default = match kind {
            WorkloadKind::Produce => 0,
            WorkloadKind::Consume | WorkloadKind::E2e => 1,
        };
        let warmup_default = match kind {
            // A drain has no steady state to wait for: the topic is already full.
            WorkloadKind::Consume => 0,
            WorkloadKind::Produce | WorkloadKind::E2e => WARMUP_MS_DEFAULT,
        };
        let workload = Workload {
            kind,
            name: layer.name.unwrap_or_else(|| kind.name().to_string()),
            topic: layer.topic.unwrap_or_else(fresh_topic_name),
            partitions: layer.partitions.unwrap_or(1),
            producers: layer.producers.unwrap_or(1),
            consumers: layer.consumers.unwrap_or(consumers_default),
            message_bytes: layer.message_bytes.unwrap_or(MESSAGE_BYTES_DEFAULT),
            batch_bytes: layer.batch_bytes.unwrap_or(BATCH_BYTES_DEFAULT),
            linger_us: layer.linger_us.unwrap_or(LINGER_US_DEFAULT),
            acks: layer.acks.unwrap_or(AcksSetting::Leader),
            durability: layer.durability.unwrap_or(DurabilitySetting::GroupCommit),
            group_commit_us: layer.group_commit_us.unwrap_or(GROUP_COMMIT_US_DEFAULT),
            group_commit_bytes: layer
                .group_commit_bytes
                .unwrap_or(GROUP_COMMIT_BYTES_DEFAULT),
            write_caching: layer.write_caching.unwrap_or(false),
            stop,
            warmup_ms: layer.warmup_ms.unwrap_or(warmup_default),
            rate,
            calibration_ms: layer
                .calibration_ms
                .unwrap_or(CALIBRATION_DURATION_MS_DEFAULT),
            producer_buffer_bytes: layer
                .producer_buffer_bytes
                .unwrap_or(PRODUCER_BUFFER_BYTES_DEFAULT),
            inflight_requests_per_partition: layer.inflight_requests_per_partition,
            fetch_bytes_max: layer.fetch_bytes_max.unwrap_or(FETCH_BYTES_MAX_DEFAULT),
            inflight_records_max: layer.inflight_records_max,
            pacer: layer.pacer.unwrap_or(PacerKind::Timerfd),
            pacer_wake_us: layer.pacer_wake_us.unwrap_or(PACER_WAKE_US_DEFAULT),
            steady_state_bytes: None,
        };
        workload.check()?;
        Ok(workload)
    }

    /// A steady-state run that writes at least `bytes` of records: produce and consume stop
    /// after that many records (whatever the duration said); e2e keeps its duration here and
    /// stretches it once its rate is known (`steady_state_duration_ms`).
    pub fn in_steady_state(mut self, bytes: u64) -> Workload {
        self.steady_state_bytes = Some(bytes);
        if self.kind != WorkloadKind::E2e {
            self.stop = Stop::MessageCount(bytes.div_ceil(self.message_bytes as u64));
        }
        self
    }

    /// How long an e2e run at `records_per_sec` takes to write its steady-state bytes, if longer
    /// than its duration (capped at the longest run accepted); `None` for a burst.
    pub fn steady_state_duration_ms(&self, records_per_sec: f64) -> Option<u64> {
        let bytes = self.steady_state_bytes?;
        let Stop::DurationMs(duration_ms) = self.stop else {
            return None;
        };
        let records = bytes.div_ceil(self.message_bytes as u64) as f64;
        let needed_ms = (records / records_per_sec.max(f64::MIN_POSITIVE) * 1000.0).ceil();
        Some((needed_ms.min(DURATION_MS_MAX as f64) as u64).max(duration_ms))
    }

    /// Relations between settings that would make a run meaningless or impossible.
    pub fn check(&self) -> Result<(), WorkloadError> {
        if self.partitions == 0 || self.partitions > PARTITIONS_MAX {
            return invalid("partitions", format!("must be in 1..={PARTITIONS_MAX}"));
        }
        if self.producers == 0 || self.producers > ACTORS_MAX {
            return invalid("producers", format!("must be in 1..={ACTORS_MAX}"));
        }
        if self.consumers > ACTORS_MAX {
            return invalid("consumers", format!("must be at most {ACTORS_MAX}"));
        }
        if self.kind != WorkloadKind::Produce && self.consumers == 0 {
            return invalid("consumers", "consume and e2e need at least one consumer");
        }
        if self.message_bytes == 0 || self.message_bytes > MESSAGE_BYTES_MAX {
            return invalid(
                "message_bytes",
                format!("must be in 1..={MESSAGE_BYTES_MAX}"),
            );
        }
        if self.kind == WorkloadKind::E2e && self.message_bytes < E2E_TIMESTAMP_BYTES {
            return invalid(
                "message_bytes",
                format!("e2e records carry {E2E_TIMESTAMP_BYTES} bytes of send timestamps"),
            );
        }
        if self.batch_bytes < self.message_bytes {
            return invalid("batch_bytes", "must hold at least one message");
        }
        if self.producer_buffer_bytes < self.batch_bytes {
            return invalid("producer_buffer_bytes", "must hold at least one batch");
        }
        if let Some(inflight) = self.inflight_requests_per_partition {
            if inflight == 0 || inflight > INFLIGHT_REQUESTS_PER_PARTITION_MAX {
                return invalid(
                    "inflight_requests_per_partition",
                    format!("must be in 1..={INFLIGHT_REQUESTS_PER_PARTITION_MAX}"),
                );
            }
        }
        match self.inflight_records_max {
            Some(0) => return invalid("inflight_records_max", "must be at least 1"),
            Some(_) if self.kind == WorkloadKind::E2e => {
                return invalid(
                    "inflight_records_max",
                    "e2e producers keep their schedule; a window applies to produce and consume",
                )
            }
            _ => {}
        }
        if self.pacer_wake_us > PACER_WAKE_US_MAX {
            return invalid("pacer_wake_us", format!("at most {PACER_WAKE_US_MAX}"));
        }
        if self.fetch_bytes_max < self.message_bytes {
            return invalid("fetch_bytes_max", "must hold at least one message");
        }
        if self.group_commit_us == 0 || self.group_commit_bytes == 0 {
            return invalid("group_commit_us", "group commit intervals must be positive");
        }
        match self.stop {
            Stop::DurationMs(0) | Stop::MessageCount(0) => {
                return invalid("duration_ms", "a run must send something")
            }
            Stop::DurationMs(duration_ms) if duration_ms > DURATION_MS_MAX => {
                return invalid("duration_ms", format!("at most {DURATION_MS_MAX}"))
            }
            _ => {}
        }
        if self.warmup_ms > DURATION_MS_MAX {
            return invalid("warmup_ms", format!("at most {DURATION_MS_MAX}"));
        }
        if self.kind == WorkloadKind::E2e && !matches!(self.stop, Stop::DurationMs(_)) {
            return invalid(
                "duration_ms",
                "an e2e run at a fixed rate runs for a duration",
            );
        }
        match self.rate {
            Some(RateTarget::RecordsPerSec(rate)) if !(rate.is_finite() && rate > 0.0) => {
                return invalid("rate", "must be a positive number of records per second")
            }
            Some(RateTarget::PercentOfMax(percent))
                if !(percent.is_finite() && percent > 0.0 && percent <= 100.0) =>
            {
                return invalid("rate_percent_of_max", "must be in (0, 100]")
            }
            _ => {}
        }
        if self.calibration_ms == 0 || self.calibration_ms > DURATION_MS_MAX {
            return invalid(
                "calibration_ms",
                format!("must be in 1..={DURATION_MS_MAX}"),
            );
        }
        Ok(())
    }
}

/// A topic name no earlier run used, so that stale records never mix into a measurement.
fn fresh_topic_name() -> String {
    let unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis());
    format!("spate-bench-{unix_ms}-{}", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(toml_text: &str) -> WorkloadLayer {
        toml::from_str(toml_text).expect("test TOML parses")
    }

    #[test]
    fn produce_defaults_are_one_producer_one_partition_large_batches() {
        let workload = Workload::resolve(WorkloadKind::Produce, WorkloadLayer::default()).unwrap();
        assert_eq!(workload.partitions, 1);
        assert_eq!(workload.producers, 1);
        assert_eq!(workload.consumers, 0);
        assert_eq!(workload.message_bytes, MESSAGE_BYTES_DEFAULT);
        assert_eq!(workload.batch_bytes, BATCH_BYTES_DEFAULT);
        assert_eq!(workload.acks, AcksSetting::Leader);
        assert_eq!(workload.stop, Stop::DurationMs(DURATION_MS_DEFAULT));
        assert_eq!(workload.rate, None);
    }

    #[test]
    fn flags_override_the_workload_file() {
        let file = layer("partitions = 4\nproducers = 2\nacks = \"all\"\nduration_ms = 5000\n");
        let flags = WorkloadLayer {
            partitions: Some(8),
            ..WorkloadLayer::default()
        };
        let workload = Workload::resolve(WorkloadKind::Produce, flags.over(file)).unwrap();
        assert_eq!(workload.partitions, 8);
        assert_eq!(workload.producers, 2);
        assert_eq!(workload.acks, AcksSetting::All);
        assert_eq!(workload.stop, Stop::DurationMs(5000));
    }

    #[test]
    fn a_count_on_the_command_line_replaces_a_duration_in_the_file() {
        let file = layer("duration_ms = 5000\n");
        let flags = WorkloadLayer {
            message_count: Some(1000),
            ..WorkloadLayer::default()
        };
        let workload = Workload::resolve(WorkloadKind::Produce, flags.over(file)).unwrap();
        assert_eq!(workload.stop, Stop::MessageCount(1000));
    }

    #[test]
    fn both_a_duration_and_a_count_in_one_layer_are_refused() {
        let file = layer("duration_ms = 5000\nmessage_count = 10\n");
        let error = Workload::resolve(WorkloadKind::Produce, file).unwrap_err();
        assert!(matches!(
            error,
            WorkloadError::Invalid {
                setting: "duration_ms",
                ..
            }
        ));
    }

    #[test]
    fn unknown_workload_file_keys_are_refused() {
        let result: Result<WorkloadLayer, _> = toml::from_str("partitons = 3\n");
        assert!(result.is_err());
    }

    #[test]
    fn e2e_defaults_to_half_the_calibrated_maximum() {
        let workload = Workload::resolve(WorkloadKind::E2e, WorkloadLayer::default()).unwrap();
        assert_eq!(workload.rate, Some(RateTarget::PercentOfMax(50.0)));
        assert_eq!(workload.consumers, 1);
    }

    #[test]
    fn e2e_records_too_small_for_their_timestamps_are_refused() {
        let flags = WorkloadLayer {
            message_bytes: Some(E2E_TIMESTAMP_BYTES - 1),
            ..WorkloadLayer::default()
        };
        assert!(Workload::resolve(WorkloadKind::E2e, flags).is_err());
    }

    #[test]
    fn a_rate_outside_e2e_is_refused() {
        let flags = WorkloadLayer {
            rate: Some(1000.0),
            ..WorkloadLayer::default()
        };
        assert!(Workload::resolve(WorkloadKind::Produce, flags).is_err());
    }

    #[test]
    fn consume_defaults_to_draining_a_fixed_count() {
        let workload = Workload::resolve(WorkloadKind::Consume, WorkloadLayer::default()).unwrap();
        assert_eq!(
            workload.stop,
            Stop::MessageCount(CONSUME_MESSAGE_COUNT_DEFAULT)
        );
        assert_eq!(workload.warmup_ms, 0);
    }

    #[test]
    fn every_workload_file_resolves_for_the_workload_its_name_starts_with() {
        let directory = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads");
        let mut checked = 0;
        for entry in std::fs::read_dir(&directory).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            let kind = if name.starts_with("produce-") {
                WorkloadKind::Produce
            } else if name.starts_with("consume-") {
                WorkloadKind::Consume
            } else if name.starts_with("e2e-") {
                WorkloadKind::E2e
            } else {
                panic!("{name}: a workload file's name starts with its workload");
            };
            let layer = WorkloadLayer::from_file(&path).unwrap();
            Workload::resolve(kind, layer).unwrap_or_else(|error| panic!("{name}: {error}"));
            checked += 1;
        }
        assert!(checked >= 8, "only {checked} workload files");
    }

    #[test]
    fn the_pacer_and_the_record_window_read_from_a_file_and_are_checked() {
        let file = layer("pacer = \"sleep\"\npacer_wake_us = 50\n");
        let workload = Workload::resolve(WorkloadKind::E2e, file).unwrap();
        assert_eq!(workload.pacer, PacerKind::Sleep);
        assert_eq!(workload.pacer_wake_us, 50);
        let defaults = Workload::resolve(WorkloadKind::E2e, WorkloadLayer::default()).unwrap();
        assert_eq!(defaults.pacer, PacerKind::Timerfd);
        assert_eq!(defaults.pacer_wake_us, PACER_WAKE_US_DEFAULT);
        assert_eq!(defaults.inflight_records_max, None);
        let round_trip = layer("inflight_records_max = 1\nlinger_us = 0\n");
        let workload = Workload::resolve(WorkloadKind::Produce, round_trip.clone()).unwrap();
        assert_eq!(workload.inflight_records_max, Some(1));
        assert!(
            Workload::resolve(WorkloadKind::E2e, round_trip).is_err(),
            "e2e keeps its schedule"
        );
        assert!(
            Workload::resolve(WorkloadKind::Produce, layer("inflight_records_max = 0\n")).is_err()
        );
        assert!(Workload::resolve(
            WorkloadKind::E2e,
            layer(&format!("pacer_wake_us = {}\n", PACER_WAKE_US_MAX + 1))
        )
        .is_err());
    }

    #[test]
    fn durability_and_acks_read_their_kebab_case_names() {
        let file = layer("acks = \"none\"\ndurability = \"fsync-every-append\"\n");
        let workload = Workload::resolve(WorkloadKind::Produce, file).unwrap();
        assert_eq!(workload.acks, AcksSetting::None);
        assert_eq!(workload.durability, DurabilitySetting::FsyncEveryAppend);
    }

    #[test]
    fn steady_state_turns_produce_into_a_byte_count_and_stretches_e2e_at_its_rate() {
        let produce = Workload::resolve(WorkloadKind::Produce, WorkloadLayer::default())
            .unwrap()
            .in_steady_state(10_240_001);
        assert_eq!(produce.stop, Stop::MessageCount(10_001), "1 KiB records");
        assert_eq!(produce.steady_state_duration_ms(1.0), None);
        let e2e = Workload::resolve(WorkloadKind::E2e, WorkloadLayer::default())
            .unwrap()
            .in_steady_state(1024 * 1_000_000);
        assert_eq!(e2e.stop, Stop::DurationMs(DURATION_MS_DEFAULT));
        // 1,000,000 records at 10,000/s: 100 s.
        assert_eq!(e2e.steady_state_duration_ms(10_000.0), Some(100_000));
        // Never shorter than the duration asked for.
        assert_eq!(e2e.steady_state_duration_ms(1e9), Some(DURATION_MS_DEFAULT));
        let burst = Workload::resolve(WorkloadKind::E2e, WorkloadLayer::default()).unwrap();
        assert_eq!(burst.steady_state_duration_ms(10_000.0), None);
    }
}
