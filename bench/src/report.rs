//! The results of a run as the JSON document (`--json FILE`) and as a table on the terminal.
//!
//! The JSON has exactly the shape the benchmark issue fixes (`workload`, `config`,
//! `throughput_bytes_per_sec`, `records_per_sec`, `latency_us{p50,p90,p99,p999,p9999,max}`,
//! `limits{loopback_bytes_per_sec,loopback_rtt_us,disk_direct_write_bytes_per_sec}`,
//! `ratios{throughput_vs_limit}`), plus extra fields. A figure that was not measured (limits
//! without `--with-limits`, latency of a run that recorded none) is `null`, never a made-up
//! number. This file formats; it measures nothing.

use serde::Serialize;
use serde_json::{json, Value};

use crate::idle::IdleCrowdReport;
use crate::limits::MachineLimits;
use crate::runner::{LatencyKind, RunOutcome};
use crate::stats::LatencySummary;
use crate::workload::{Workload, WorkloadKind};

/// The `latency_us` object: every key present, `null` when nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencyFigures {
    pub p50: Option<f64>,
    pub p90: Option<f64>,
    pub p99: Option<f64>,
    pub p999: Option<f64>,
    pub p9999: Option<f64>,
    pub max: Option<f64>,
    pub mean: Option<f64>,
    pub count: u64,
    pub kind: LatencyKind,
}

impl LatencyFigures {
    pub fn of(summary: Option<&LatencySummary>, kind: LatencyKind) -> LatencyFigures {
        LatencyFigures {
            p50: summary.map(|summary| summary.p50),
            p90: summary.map(|summary| summary.p90),
            p99: summary.map(|summary| summary.p99),
            p999: summary.map(|summary| summary.p999),
            p9999: summary.map(|summary| summary.p9999),
            max: summary.map(|summary| summary.max),
            mean: summary.map(|summary| summary.mean),
            count: summary.map_or(0, |summary| summary.count),
            kind,
        }
    }
}

/// Which ceiling a workload's throughput is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitChoice {
    /// Consumers draining a topic (a catch-up read: the records are on disk, in no cache) read
    /// from disk and send over the network: the lower of loopback and O_DIRECT read bounds them.
    /// Consumers at the tail, served from memory, are bounded by the loopback alone
    /// (`ratios.throughput_vs_loopback`).
    LoopbackOrDiskRead,
    /// Producers send over the network and the broker writes to disk: the lower bounds them.
    LoopbackOrDisk,
}

impl LimitChoice {
    pub fn for_workload(kind: WorkloadKind) -> LimitChoice {
        match kind {
            WorkloadKind::Consume => LimitChoice::LoopbackOrDiskRead,
            WorkloadKind::Produce | WorkloadKind::E2e => LimitChoice::LoopbackOrDisk,
        }
    }

    pub fn bytes_per_sec(self, limits: &MachineLimits) -> f64 {
        match self {
            LimitChoice::LoopbackOrDiskRead => limits.loopback_or_disk_read_bytes_per_sec(),
            LimitChoice::LoopbackOrDisk => limits.loopback_or_disk_bytes_per_sec(),
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            LimitChoice::LoopbackOrDiskRead => "min(loopback, disk read)",
            LimitChoice::LoopbackOrDisk => "min(loopback, disk)",
        }
    }
}

/// The `ratios` object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Ratios {
    pub throughput_vs_limit: Option<f64>,
    /// Why `throughput_vs_limit` is no fraction of a ceiling (the limits were measured too
    /// briefly, or the throughput exceeds them); `None` when it is, or without limits.
    pub throughput_vs_limit_unreliable: Option<String>,
    pub limit: LimitChoice,
    pub throughput_vs_loopback: Option<f64>,
    pub throughput_vs_disk: Option<f64>,
    /// Against the O_DIRECT read limit; only for `consume` (`None` elsewhere).
    pub throughput_vs_disk_read: Option<f64>,
    pub latency_p50_vs_loopback_rtt: Option<f64>,
    pub latency_p99_vs_loopback_rtt: Option<f64>,
}

impl Ratios {
    pub fn of(kind: WorkloadKind, outcome: &RunOutcome, limits: Option<&MachineLimits>) -> Ratios {
        let choice = LimitChoice::for_workload(kind);
        let ratio = |value: f64, limit: f64| (limit > 0.0).then(|| value / limit);
        let throughput = outcome.throughput_bytes_per_sec;
        let latency = outcome.latency.as_ref();
        let throughput_vs_limit =
            limits.and_then(|limits| ratio(throughput, choice.bytes_per_sec(limits)));
        Ratios {
            throughput_vs_limit,
            throughput_vs_limit_unreliable: limits
                .and_then(|limits| limit_caveat(limits, throughput_vs_limit)),
            limit: choice,
            throughput_vs_loopback: limits
                .and_then(|limits| ratio(throughput, limits.loopback_bytes_per_sec)),
            throughput_vs_disk: limits
                .and_then(|limits| ratio(throughput, limits.disk_direct_write_bytes_per_sec)),
            throughput_vs_disk_read: limits
                .filter(|_| kind == WorkloadKind::Consume)
                .and_then(|limits| ratio(throughput, limits.disk_direct_read_bytes_per_sec)),
            latency_p50_vs_loopback_rtt: limits
                .zip(latency)
                .and_then(|(limits, latency)| ratio(latency.p50, limits.loopback_rtt_us)),
            latency_p99_vs_loopback_rtt: limits
                .zip(latency)
                .and_then(|(limits, latency)| ratio(latency.p99, limits.loopback_rtt_us)),
        }
    }
}

/// Why a throughput-to-limit ratio says nothing about the ceiling, if it does not.
pub fn limit_caveat(limits: &MachineLimits, throughput_vs_limit: Option<f64>) -> Option<String> {
    limits
        .too_short()
        .or_else(|| limits.not_a_disk())
        .or_else(|| {
            throughput_vs_limit
                .filter(|ratio| *ratio > 1.0)
                .map(|ratio| {
                    format!(
                    "the throughput is {ratio:.2}x the measured limit: the limit measurement was \
                     disturbed; measure again with more --limit-rounds"
                )
                })
        })
}

/// The figures of one driver's run.
fn figures(kind: WorkloadKind, outcome: &RunOutcome, limits: Option<&MachineLimits>) -> Value {
    json!({
        "driver": outcome.driver,
        "promise": outcome.promise.map(crate::driver::Promise::label),
        "throughput_bytes_per_sec": outcome.throughput_bytes_per_sec,
        "records_per_sec": outcome.records_per_sec,
        "latency_us": LatencyFigures::of(outcome.latency.as_ref(), outcome.latency_kind),
        "ratios": Ratios::of(kind, outcome, limits),
        "measured_records": outcome.measured_records,
        "measured_bytes": outcome.measured_bytes,
        "measured_seconds": outcome.measured_seconds,
        "errors": outcome.errors,
        "first_error": outcome.first_error,
        "end_to_end": outcome.end_to_end,
        "notes": outcome.notes,
    })
}

/// The `limits` object: the measured ceilings, or the three required keys as `null`.
pub fn limits_value(limits: Option<&MachineLimits>) -> Value {
    match limits {
        Some(limits) => serde_json::to_value(limits).expect("limits serialize"),
        None => json!({
            "loopback_bytes_per_sec": null,
            "loopback_rtt_us": null,
            "disk_direct_write_bytes_per_sec": null,
            "disk_direct_read_bytes_per_sec": null,
            "measured": false,
        }),
    }
}

/// The whole JSON document: the first outcome is the subject, the others its peers (compared
/// in `ratios.throughput_vs_<driver>` and `ratios.latency_p99_vs_<driver>`).
pub fn document(
    workload_name: &str,
    kind: Option<WorkloadKind>,
    config: Value,
    outcomes: &[RunOutcome],
    limits: Option<&MachineLimits>,
) -> Value {
    let mut document = match (kind, outcomes.first()) {
        (Some(kind), Some(subject)) => figures(kind, subject, limits),
        // The `limits` workload: its figures are the loopback stream and round trips.
        _ => json!({
            "driver": null,
            "throughput_bytes_per_sec": limits.map(|limits| limits.loopback_bytes_per_sec),
            "records_per_sec": null,
            "latency_us": LatencyFigures::of(
                limits.map(|limits| &limits.loopback_rtt),
                LatencyKind::LoopbackRoundTrip,
            ),
            "ratios": { "throughput_vs_limit": limits.map(|_| 1.0), "limit": "loopback" },
        }),
    };
    let object = document.as_object_mut().expect("figures are an object");
    object.insert("workload".into(), json!(workload_name));
    object.insert("config".into(), config);
    object.insert("limits".into(), limits_value(limits));
    if let (Some(kind), Some(subject)) = (kind, outcomes.first()) {
        let peers: Vec<Value> = outcomes[1..]
            .iter()
            .map(|peer| figures(kind, peer, limits))
            .collect();
        let ratios = object
            .get_mut("ratios")
            .and_then(Value::as_object_mut)
            .expect("ratios are an object");
        for peer in &outcomes[1..] {
            let ratio = (peer.throughput_bytes_per_sec > 0.0)
                .then(|| subject.throughput_bytes_per_sec / peer.throughput_bytes_per_sec);
            ratios.insert(format!("throughput_vs_{}", peer.driver.key()), json!(ratio));
            // Above 1: the subject's p99 is slower than the peer's.
            let latency_ratio = subject
                .latency
                .as_ref()
                .zip(peer.latency.as_ref())
                .and_then(|(subject, peer)| (peer.p99 > 0.0).then(|| subject.p99 / peer.p99));
            ratios.insert(
                format!("latency_p99_vs_{}", peer.driver.key()),
                json!(latency_ratio),
            );
        }
        object.insert("peers".into(), json!(peers));
    }
    document
}

/// The `config` object: the workload and where it ran.
pub fn config_value(workload: Option<&Workload>, setup: Value) -> Value {
    let mut config = match workload {
        Some(workload) => serde_json::to_value(workload).expect("workloads serialize"),
        None => json!({}),
    };
    if let (Some(config), Some(setup)) = (config.as_object_mut(), setup.as_object()) {
        for (key, value) in setup {
            config.insert(key.clone(), value.clone());
        }
    }
    config
}

fn megabytes(bytes_per_sec: f64) -> String {
    format!("{:.1} MB/s", bytes_per_sec / 1e6)
}

fn optional(value: Option<f64>, format: impl Fn(f64) -> String) -> String {
    value.map_or_else(|| "-".to_string(), format)
}

fn micros(value: f64) -> String {
    if value >= 10_000.0 {
        format!("{:.1} ms", value / 1_000.0)
    } else {
        format!("{value:.0} us")
    }
}

/// Reads one percentile out of a summary.
type PickPercentile = fn(&LatencySummary) -> f64;

/// The terminal table: one column per driver, then the limit and the first driver's ratio.
pub fn table(
    title: &str,
    kind: WorkloadKind,
    outcomes: &[RunOutcome],
    limits: Option<&MachineLimits>,
) -> String {
    let choice = LimitChoice::for_workload(kind);
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut header = vec!["".to_string()];
    header.extend(
        outcomes
            .iter()
            .map(|outcome| outcome.driver.name().to_string()),
    );
    header.push("limit".into());
    header.push(format!(
        "{}/limit",
        outcomes.first().map_or("", |o| o.driver.name())
    ));
    rows.push(header);
    if outcomes.iter().any(|outcome| outcome.promise.is_some()) {
        let mut row = vec!["promise".to_string()];
        row.extend(outcomes.iter().map(|outcome| {
            outcome
                .promise
                .map_or("-".to_string(), |promise| promise.label().to_string())
        }));
        row.extend(["".to_string(), "".to_string()]);
        rows.push(row);
    }
    let limit_throughput = limits.map(|limits| choice.bytes_per_sec(limits));
    let ratio = |value: Option<f64>, limit: Option<f64>| match (value, limit) {
        (Some(value), Some(limit)) if limit > 0.0 => format!("{:.2}", value / limit),
        _ => "-".to_string(),
    };
    let mut row = vec!["throughput".to_string()];
    row.extend(
        outcomes
            .iter()
            .map(|outcome| megabytes(outcome.throughput_bytes_per_sec)),
    );
    row.push(optional(limit_throughput, |limit| {
        format!("{} ({})", megabytes(limit), choice.describe())
    }));
    let throughput_ratio = ratio(
        outcomes
            .first()
            .map(|outcome| outcome.throughput_bytes_per_sec),
        limit_throughput,
    );
    let caveat = limits.zip(outcomes.first()).and_then(|(limits, subject)| {
        let value = limit_throughput
            .filter(|limit| *limit > 0.0)
            .map(|limit| subject.throughput_bytes_per_sec / limit);
        limit_caveat(limits, value)
    });
    row.push(match caveat {
        Some(_) => format!("{throughput_ratio} (unreliable*)"),
        None => throughput_ratio,
    });
    rows.push(row);
    let mut row = vec!["records/s".to_string()];
    row.extend(
        outcomes
            .iter()
            .map(|outcome| format!("{:.0}", outcome.records_per_sec)),
    );
    row.extend(["".to_string(), "".to_string()]);
    rows.push(row);
    let latency_name = match outcomes.first().map(|outcome| outcome.latency_kind) {
        Some(LatencyKind::ProduceToAck) => "produce->ack",
        Some(LatencyKind::EndToEndCorrected) => "end-to-end",
        Some(LatencyKind::Poll) => "poll",
        Some(LatencyKind::LoopbackRoundTrip) | None => "latency",
    };
    let rtt = limits.map(|limits| limits.loopback_rtt_us);
    let percentiles: [(&str, PickPercentile); 6] = [
        ("p50", |summary| summary.p50),
        ("p90", |summary| summary.p90),
        ("p99", |summary| summary.p99),
        ("p99.9", |summary| summary.p999),
        ("p99.99", |summary| summary.p9999),
        ("max", |summary| summary.max),
    ];
    for (index, (name, pick)) in percentiles.iter().enumerate() {
        let mut row = vec![format!("{latency_name} {name}")];
        row.extend(
            outcomes
                .iter()
                .map(|outcome| optional(outcome.latency.as_ref().map(pick), micros)),
        );
        if index == 0 {
            row.push(optional(rtt, |rtt| {
                format!("{} (loopback RTT)", micros(rtt))
            }));
            row.push(ratio(
                outcomes
                    .first()
                    .and_then(|outcome| outcome.latency.as_ref().map(pick)),
                rtt,
            ));
        } else {
            row.extend(["".to_string(), "".to_string()]);
        }
        rows.push(row);
    }
    if outcomes.iter().any(|outcome| outcome.end_to_end.is_some()) {
        let mut row = vec!["target rate held".to_string()];
        row.extend(outcomes.iter().map(|outcome| {
            outcome
                .end_to_end
                .as_ref()
                .map_or("-".to_string(), |details| {
                    format!(
                        "{} ({:.0}/{:.0} records/s)",
                        if details.rate_held { "yes" } else { "NO" },
                        details.achieved_send_records_per_sec,
                        details.target_records_per_sec
                    )
                })
        }));
        row.extend(["".to_string(), "".to_string()]);
        rows.push(row);
        let mut row = vec!["producer thread CPU (pacer)".to_string()];
        row.extend(outcomes.iter().map(|outcome| {
            outcome
                .end_to_end
                .as_ref()
                .map_or("-".to_string(), |details| pacing_cell(&details.load))
        }));
        row.extend(["".to_string(), "".to_string()]);
        rows.push(row);
    }
    let mut row = vec!["errors".to_string()];
    row.extend(outcomes.iter().map(|outcome| outcome.errors.to_string()));
    row.extend(["".to_string(), "".to_string()]);
    rows.push(row);
    let mut text = format!("{title}\n");
    text.push_str(&render(&rows));
    if let Some(caveat) = &caveat {
        text.push_str(&format!("* {caveat}\n"));
    }
    if let Some(limits) = limits {
        text.push_str(&format!(
            "limits (best of {} rounds): loopback {} (RTT p50 {}), {} O_DIRECT+fdatasync {}, \
             O_DIRECT read {} ({}) in {}\n",
            limits.rounds.len().max(1),
            megabytes(limits.loopback_bytes_per_sec),
            micros(limits.loopback_rtt_us),
            disk_label(limits),
            megabytes(limits.disk_direct_write_bytes_per_sec),
            megabytes(limits.disk_direct_read_bytes_per_sec),
            reads_by_depth(&limits.disk_reads),
            limits.data_dir
        ));
    }
    if outcomes.len() > 1 {
        let subject = &outcomes[0];
        for peer in &outcomes[1..] {
            if peer.throughput_bytes_per_sec > 0.0 {
                text.push_str(&format!(
                    "{} / {} throughput: {:.2}x\n",
                    subject.driver.name(),
                    peer.driver.name(),
                    subject.throughput_bytes_per_sec / peer.throughput_bytes_per_sec
                ));
            }
        }
    }
    for outcome in outcomes {
        for note in &outcome.notes {
            text.push_str(&format!("note ({}): {note}\n", outcome.driver.name()));
        }
        if let Some(error) = &outcome.first_error {
            text.push_str(&format!(
                "first error ({}): {error}\n",
                outcome.driver.name()
            ));
        }
    }
    text
}

/// The producers' CPU, with their pacer and how many records each wake sent.
fn pacing_cell(load: &crate::runner::PacingLoad) -> String {
    let per_wake = load.records_per_wake.map_or(String::new(), |records| {
        format!(", {records:.1} records/wake")
    });
    format!(
        "{:.1}% of a core ({}{per_wake})",
        load.pacer_cpu_percent,
        load.pacer.name()
    )
}

/// Each queue depth's read figure, like "QD1 600.0 MB/s, QD8 900.0 MB/s".
fn reads_by_depth(reads: &[crate::limits::DiskReadFigure]) -> String {
    let figures: Vec<String> = reads
        .iter()
        .map(|read| format!("QD{} {}", read.queue_depth, megabytes(read.bytes_per_sec)))
        .collect();
    figures.join(", ")
}

/// "disk", or what the data directory really is when it is in memory.
fn disk_label(limits: &MachineLimits) -> String {
    match limits.disk_memory_file_system {
        Some(file_system) => format!("memory ({file_system}, NOT A DISK)"),
        None => "disk".to_string(),
    }
}

/// The table for the `limits` workload alone.
pub fn limits_table(limits: &MachineLimits) -> String {
    let rtt = &limits.loopback_rtt;
    let mut rows = vec![
        vec!["limit".to_string(), "value".to_string()],
        vec![
            "loopback throughput".into(),
            megabytes(limits.loopback_bytes_per_sec),
        ],
        vec![
            "loopback RTT p50 / p99 / max".into(),
            format!(
                "{} / {} / {}",
                micros(rtt.p50),
                micros(rtt.p99),
                micros(rtt.max)
            ),
        ],
        vec![
            format!("{} O_DIRECT write + fdatasync", disk_label(limits)),
            megabytes(limits.disk_direct_write_bytes_per_sec),
        ],
        vec![
            format!(
                "{} O_DIRECT read, {} MiB reads (best depth)",
                disk_label(limits),
                limits.disk_read_bytes / (1024 * 1024)
            ),
            megabytes(limits.disk_direct_read_bytes_per_sec),
        ],
    ];
    for read in &limits.disk_reads {
        rows.push(vec![
            format!("  at queue depth {}", read.queue_depth),
            megabytes(read.bytes_per_sec),
        ]);
    }
    rows.extend([vec![
        "fdatasync count / p50 / p99".into(),
        match &limits.disk_sync_latency {
            Some(sync) => format!(
                "{} / {} / {}",
                limits.disk_syncs,
                micros(sync.p50),
                micros(sync.p99)
            ),
            None => "-".into(),
        },
    ]]);
    let mut text = format!("{}data directory: {}\n", render(&rows), limits.data_dir);
    if let Some(not_a_disk) = limits.not_a_disk() {
        text.push_str(&format!("* NOT A DISK: {not_a_disk}\n"));
    }
    for (index, round) in limits.rounds.iter().enumerate() {
        text.push_str(&format!(
            "round {}: loopback {}, RTT p50 {}, disk write {}, disk read {} ({})\n",
            index + 1,
            megabytes(round.loopback_bytes_per_sec),
            micros(round.loopback_rtt_us),
            megabytes(round.disk_direct_write_bytes_per_sec),
            megabytes(round.disk_direct_read_bytes_per_sec),
            reads_by_depth(&round.disk_reads)
        ));
    }
    text
}

/// `compaction-latency`: each probe phase's acks=all produce-to-ack latency, and the pass.
pub fn compaction_latency_table(
    outcome: &crate::runner::compaction_latency::CompactionLatencyOutcome,
) -> String {
    let mut rows = vec![vec![
        "phase".to_string(),
        "probes".to_string(),
        "p50".to_string(),
        "p99".to_string(),
        "p99.9".to_string(),
        "max".to_string(),
    ]];
    for phase in &outcome.phases {
        rows.push(match &phase.latency_us {
            Some(latency) => vec![
                phase.name.to_string(),
                latency.count.to_string(),
                micros(latency.p50),
                micros(latency.p99),
                micros(latency.p999),
                micros(latency.max),
            ],
            None => vec![phase.name.to_string(), "0".into()],
        });
    }
    let mut text = format!(
        "compaction-latency: acks=all produce-to-ack of one record at a time, same shard\n{}",
        render(&rows)
    );
    text.push_str(&format!(
        "fill: {} in {:.1} s\n",
        megabytes(outcome.fill_bytes_per_sec),
        outcome.fill_seconds
    ));
    if let (Some(line), Some(seconds)) = (&outcome.pass_log_line, outcome.pass_seconds) {
        text.push_str(&format!("pass: {seconds:.1} s; broker: {}\n", line.trim()));
    }
    text
}

/// Left-aligned first column, right-aligned others, two spaces apart.
fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|column| {
            rows.iter()
                .filter_map(|row| row.get(column))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(column, cell)| {
                if column == 0 {
                    format!("{cell:<width$}", width = widths[column])
                } else {
                    format!("{cell:>width$}", width = widths[column])
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

/// The idle crowd's table: the workload without and beside the crowd (beside it first, on a
/// fresh broker; then without it, on the same broker), the producer's produce-to-ack latency
/// first, then the broker at rest without and with it.
pub fn idle_crowd_table(without: &RunOutcome, crowd: &IdleCrowdReport) -> String {
    let with = &crowd.with_crowd;
    let ratio = |before: Option<f64>, after: Option<f64>| match (before, after) {
        (Some(before), Some(after)) if before > 0.0 => format!("{:.2}", after / before),
        _ => "-".to_string(),
    };
    let mut rows: Vec<Vec<String>> = vec![vec![
        "".to_string(),
        "without".to_string(),
        format!("with {} idle", crowd.connections),
        "with/without".to_string(),
    ]];
    rows.push(vec![
        "throughput".to_string(),
        megabytes(without.throughput_bytes_per_sec),
        megabytes(with.throughput_bytes_per_sec),
        ratio(
            Some(without.throughput_bytes_per_sec),
            Some(with.throughput_bytes_per_sec),
        ),
    ]);
    let percentiles: [(&str, PickPercentile); 3] = [
        ("p50", |summary| summary.p50),
        ("p99", |summary| summary.p99),
        ("p99.99", |summary| summary.p9999),
    ];
    let mut latency_rows =
        |name: &str, pick_summary: fn(&RunOutcome) -> Option<&LatencySummary>| {
            for (percentile, pick) in &percentiles {
                let before = pick_summary(without).map(pick);
                let after = pick_summary(with).map(pick);
                rows.push(vec![
                    format!("{name} {percentile}"),
                    optional(before, micros),
                    optional(after, micros),
                    ratio(before, after),
                ]);
            }
        };
    latency_rows("produce->ack", producer_latency);
    if without.latency_kind == LatencyKind::EndToEndCorrected {
        latency_rows("end-to-end", |outcome| outcome.latency.as_ref());
    }
    rows.push(vec![
        "errors".to_string(),
        without.errors.to_string(),
        with.errors.to_string(),
        "".to_string(),
    ]);
    let mut text = render(&rows);
    text.push_str(&format!(
        "broker at rest ({:.1} s each): CPU {:.2}% / {:.2}% of a core without / with the idle \
         connections; resident {} / {}: {:.0} B and {:.2} descriptors per idle connection\n",
        crowd.with.measured_ms as f64 / 1000.0,
        crowd.without.cpu_percent_of_a_core,
        crowd.with.cpu_percent_of_a_core,
        bytes(crowd.without.sample.resident_bytes),
        bytes(crowd.with.sample.resident_bytes),
        crowd.resident_bytes_per_connection,
        crowd.descriptors_per_connection,
    ));
    text
}

/// The producer's produce-to-ack latency: the main figure of `produce`, a detail of `e2e`.
fn producer_latency(outcome: &RunOutcome) -> Option<&LatencySummary> {
    match outcome.latency_kind {
        LatencyKind::ProduceToAck => outcome.latency.as_ref(),
        _ => outcome
            .end_to_end
            .as_ref()
            .and_then(|details| details.produce_to_ack_us.as_ref()),
    }
}

fn bytes(count: u64) -> String {
    format!("{:.1} MB", count as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{DriverKind, Promise};
    use crate::limits::DiskSyncPolicy;

    fn summary(p50: f64) -> LatencySummary {
        LatencySummary {
            p50,
            p90: p50 * 2.0,
            p99: p50 * 3.0,
            p999: p50 * 4.0,
            p9999: p50 * 5.0,
            max: p50 * 6.0,
            mean: p50,
            count: 10,
        }
    }

    fn outcome(driver: DriverKind, throughput: f64) -> RunOutcome {
        RunOutcome {
            driver,
            throughput_bytes_per_sec: throughput,
            records_per_sec: throughput / 1024.0,
            latency: Some(summary(100.0)),
            latency_kind: LatencyKind::ProduceToAck,
            measured_records: 10,
            measured_bytes: 10_240,
            measured_seconds: 1.0,
            errors: 0,
            first_error: None,
            end_to_end: None,
            notes: Vec::new(),
            promise: None,
        }
    }

    fn limits() -> MachineLimits {
        MachineLimits {
            loopback_bytes_per_sec: 2e9,
            loopback_rtt_us: 20.0,
            disk_direct_write_bytes_per_sec: 1e9,
            disk_direct_read_bytes_per_sec: 8e8,
            disk_reads: vec![
                crate::limits::DiskReadFigure {
                    queue_depth: 1,
                    bytes_per_sec: 6e8,
                    bytes: 1,
                },
                crate::limits::DiskReadFigure {
                    queue_depth: 8,
                    bytes_per_sec: 8e8,
                    bytes: 1,
                },
            ],
            disk_read_bytes: 1024 * 1024,
            disk_read_file_bytes: 1024 * 1024 * 1024,
            disk_read_method: "test",
            loopback_rtt: summary(20.0),
            loopback_bytes: 1,
            disk_bytes: 1,
            disk_write_bytes: 4096,
            disk_syncs: 1,
            disk_sync_latency: None,
            disk_sync_policy: DiskSyncPolicy::EveryWrite,
            disk_method: "test",
            disk_is_memory: false,
            disk_memory_file_system: None,
            data_dir: "/data".into(),
            client_core: 1,
            broker_core: 0,
            rounds: Vec::new(),
            loopback_duration_ms: 2_000,
            disk_duration_ms: 3_000,
        }
    }

    fn number(document: &Value, path: &[&str]) -> Option<f64> {
        let mut value = document;
        for key in path {
            value = value.get(key)?;
        }
        value.as_f64()
    }

    #[test]
    fn the_document_has_every_required_key_as_a_number_when_measured() {
        let document = document(
            "produce",
            Some(WorkloadKind::Produce),
            json!({"partitions": 1}),
            &[outcome(DriverKind::Spate, 5e8)],
            Some(&limits()),
        );
        assert_eq!(document["workload"], "produce");
        assert!(document["config"].is_object());
        for path in [
            &["throughput_bytes_per_sec"][..],
            &["records_per_sec"],
            &["latency_us", "p50"],
            &["latency_us", "p90"],
            &["latency_us", "p99"],
            &["latency_us", "p999"],
            &["latency_us", "p9999"],
            &["latency_us", "max"],
            &["limits", "loopback_bytes_per_sec"],
            &["limits", "loopback_rtt_us"],
            &["limits", "disk_direct_write_bytes_per_sec"],
            &["ratios", "throughput_vs_limit"],
        ] {
            assert!(number(&document, path).is_some(), "{path:?} missing");
        }
        // 5e8 against min(2e9 loopback, 1e9 disk).
        assert_eq!(
            number(&document, &["ratios", "throughput_vs_limit"]),
            Some(0.5)
        );
    }

    #[test]
    fn unmeasured_limits_are_null_not_zero() {
        let document = document(
            "produce",
            Some(WorkloadKind::Produce),
            json!({}),
            &[outcome(DriverKind::Spate, 5e8)],
            None,
        );
        assert!(document["limits"]["loopback_bytes_per_sec"].is_null());
        assert!(document["limits"]["loopback_rtt_us"].is_null());
        assert!(document["limits"]["disk_direct_write_bytes_per_sec"].is_null());
        assert!(document["ratios"]["throughput_vs_limit"].is_null());
    }

    #[test]
    fn consume_is_compared_with_the_lower_of_loopback_and_disk_read_and_with_each() {
        let ratios = Ratios::of(
            WorkloadKind::Consume,
            &outcome(DriverKind::Spate, 4e8),
            Some(&limits()),
        );
        // 4e8 against min(2e9 loopback, 8e8 disk read).
        assert_eq!(ratios.limit, LimitChoice::LoopbackOrDiskRead);
        assert_eq!(ratios.throughput_vs_limit, Some(0.5));
        assert_eq!(ratios.throughput_vs_disk_read, Some(0.5));
        assert_eq!(ratios.throughput_vs_loopback, Some(0.2));
        assert_eq!(ratios.latency_p50_vs_loopback_rtt, Some(5.0));
        let fast_disk = MachineLimits {
            disk_direct_read_bytes_per_sec: 4e9,
            ..limits()
        };
        let ratios = Ratios::of(
            WorkloadKind::Consume,
            &outcome(DriverKind::Spate, 4e8),
            Some(&fast_disk),
        );
        assert_eq!(
            ratios.throughput_vs_limit,
            Some(0.2),
            "the loopback is lower"
        );
        let produce = Ratios::of(
            WorkloadKind::Produce,
            &outcome(DriverKind::Spate, 4e8),
            Some(&limits()),
        );
        assert_eq!(produce.throughput_vs_disk_read, None, "consume only");
    }

    #[test]
    fn the_pacer_cell_names_the_pacer_its_cpu_and_records_per_wake() {
        let load = crate::runner::PacingLoad {
            pacer: crate::runner::pacer::PacerKind::Timerfd,
            pacer_wake_us: Some(100),
            pacer_cpu_percent: 12.34,
            producer_threads: 1,
            pacer_wakes: 10,
            records_per_wake: Some(2.5),
        };
        assert_eq!(
            pacing_cell(&load),
            "12.3% of a core (timerfd, 2.5 records/wake)"
        );
        let load = crate::runner::PacingLoad {
            pacer: crate::runner::pacer::PacerKind::Sleep,
            records_per_wake: None,
            ..load
        };
        assert_eq!(pacing_cell(&load), "12.3% of a core (sleep)");
    }

    #[test]
    fn the_read_limit_and_each_queue_depth_are_in_the_tables_and_the_json() {
        let text = limits_table(&limits());
        assert!(
            text.contains("disk O_DIRECT read, 1 MiB reads (best depth)"),
            "{text}"
        );
        assert!(text.contains("at queue depth 8"), "{text}");
        assert!(text.contains("800.0 MB/s"), "{text}");
        let text = table(
            "consume",
            WorkloadKind::Consume,
            &[outcome(DriverKind::Spate, 4e8)],
            Some(&limits()),
        );
        assert!(
            text.contains("800.0 MB/s (min(loopback, disk read))"),
            "{text}"
        );
        assert!(text.contains("QD1 600.0 MB/s, QD8 800.0 MB/s"), "{text}");
        let document = document(
            "consume",
            Some(WorkloadKind::Consume),
            json!({}),
            &[outcome(DriverKind::Spate, 4e8)],
            Some(&limits()),
        );
        assert_eq!(
            number(&document, &["limits", "disk_direct_read_bytes_per_sec"]),
            Some(8e8)
        );
        assert_eq!(document["limits"]["disk_reads"][1]["queue_depth"], 8);
        assert_eq!(
            number(&document, &["ratios", "throughput_vs_disk_read"]),
            Some(0.5)
        );
        assert_eq!(document["ratios"]["limit"], "loopback_or_disk_read");
    }

    #[test]
    fn limits_measured_on_tmpfs_are_marked_as_not_a_disk_in_the_table_and_the_json() {
        let on_tmpfs = MachineLimits {
            disk_is_memory: true,
            disk_memory_file_system: Some("tmpfs"),
            data_dir: "/dev/shm/x".into(),
            ..limits()
        };
        let text = limits_table(&on_tmpfs);
        assert!(
            text.contains("memory (tmpfs, NOT A DISK) O_DIRECT write + fdatasync"),
            "{text}"
        );
        assert!(text.contains("* NOT A DISK: the data directory /dev/shm/x is on tmpfs"));
        assert!(!limits_table(&limits()).contains("NOT A DISK"));
        let json = serde_json::to_value(&on_tmpfs).unwrap();
        assert_eq!(json["disk_is_memory"], Value::Bool(true));
        assert_eq!(json["disk_memory_file_system"], "tmpfs");
        let subject = outcome(DriverKind::Spate, 5e8);
        let ratios = Ratios::of(WorkloadKind::Produce, &subject, Some(&on_tmpfs));
        assert!(ratios
            .throughput_vs_limit_unreliable
            .is_some_and(|why| why.contains("not a disk")));
    }

    #[test]
    fn ratios_against_briefly_measured_or_exceeded_limits_are_marked_unreliable() {
        let subject = outcome(DriverKind::Spate, 5e8);
        let sound = Ratios::of(WorkloadKind::Produce, &subject, Some(&limits()));
        assert_eq!(sound.throughput_vs_limit_unreliable, None);

        let brief = MachineLimits {
            loopback_duration_ms: 100,
            ..limits()
        };
        let ratios = Ratios::of(WorkloadKind::Produce, &subject, Some(&brief));
        assert_eq!(ratios.throughput_vs_limit, Some(0.5), "still reported");
        assert!(ratios
            .throughput_vs_limit_unreliable
            .is_some_and(|why| why.contains("100 ms")));
        let text = table(
            "t",
            WorkloadKind::Produce,
            std::slice::from_ref(&subject),
            Some(&brief),
        );
        assert!(text.contains("0.50 (unreliable*)"), "{text}");
        assert!(
            text.contains("* the limits were measured for 100 ms"),
            "{text}"
        );

        let exceeded = Ratios::of(
            WorkloadKind::Produce,
            &outcome(DriverKind::Spate, 1.55e9),
            Some(&limits()),
        );
        assert!(exceeded
            .throughput_vs_limit_unreliable
            .is_some_and(|why| why.contains("1.55x")));
        let document = document(
            "produce",
            Some(WorkloadKind::Produce),
            json!({}),
            &[subject],
            Some(&brief),
        );
        assert!(document["ratios"]["throughput_vs_limit_unreliable"].is_string());
    }

    #[test]
    fn peers_are_listed_and_compared_with_the_subject() {
        let mut kafka = outcome(DriverKind::Kafka, 3e8);
        kafka.latency = Some(summary(400.0));
        let document = document(
            "produce",
            Some(WorkloadKind::Produce),
            json!({}),
            &[
                outcome(DriverKind::Spate, 6e8),
                outcome(DriverKind::Redis, 2e8),
                kafka,
            ],
            None,
        );
        assert_eq!(document["peers"][1]["driver"], "kafka");
        assert_eq!(
            number(&document, &["ratios", "throughput_vs_kafka"]),
            Some(2.0)
        );
        assert_eq!(
            number(&document, &["ratios", "latency_p99_vs_kafka"]),
            Some(0.25)
        );
        assert_eq!(document["driver"], "spate");
        assert_eq!(document["peers"][0]["driver"], "redis");
        assert_eq!(
            number(&document, &["ratios", "throughput_vs_redis"]),
            Some(3.0)
        );
    }

    #[test]
    fn the_table_shows_each_driver_the_limit_and_the_ratio() {
        let text = table(
            "produce",
            WorkloadKind::Produce,
            &[
                outcome(DriverKind::Spate, 5e8),
                outcome(DriverKind::Redis, 1e8),
            ],
            Some(&limits()),
        );
        assert!(text.contains("500.0 MB/s"), "{text}");
        assert!(text.contains("100.0 MB/s"), "{text}");
        assert!(text.contains("1000.0 MB/s (min(loopback, disk))"), "{text}");
        assert!(text.contains("0.50"), "{text}");
        assert!(text.contains("spate / redis throughput: 5.00x"), "{text}");
        assert!(!text.contains("promise"), "no promise known: {text}");
    }

    #[test]
    fn each_row_says_its_promise_and_hyphenated_drivers_make_plain_keys() {
        let mut spate = outcome(DriverKind::Spate, 6e8);
        spate.promise = Some(Promise::FsyncBeforeAck);
        let mut kafka = outcome(DriverKind::ApacheKafka, 3e8);
        kafka.promise = Some(Promise::PageCache);
        let outcomes = [spate, kafka];
        let text = table("produce", WorkloadKind::Produce, &outcomes, None);
        let promise_row = text
            .lines()
            .find(|line| line.starts_with("promise"))
            .expect("a promise row");
        assert!(promise_row.contains("fsync before ack"), "{text}");
        assert!(promise_row.contains("page cache"), "{text}");
        let document = document(
            "produce",
            Some(WorkloadKind::Produce),
            json!({}),
            &outcomes,
            None,
        );
        assert_eq!(document["promise"], "fsync before ack");
        assert_eq!(document["peers"][0]["driver"], "apache-kafka");
        assert_eq!(document["peers"][0]["promise"], "page cache");
        assert_eq!(
            number(&document, &["ratios", "throughput_vs_apache_kafka"]),
            Some(2.0)
        );
    }
}
