//! `/metrics`: a [`BrokerReport`] in the OpenMetrics text format, written by the
//! `prometheus-client` encoder (names, `_total` and unit suffixes, label escaping, histogram
//! buckets) from the collected numbers at scrape time. Nothing is registered ahead: the report
//! is the source, so a deleted partition's series simply stop.
//!
//! Names follow Prometheus' conventions: `spate_` prefix, base units (`_seconds`, `_bytes`),
//! `_total` on counters. Labels: `shard` on everything a shard counts, `topic` and `partition`
//! on partition series, `protocol` (`native`, `kafka`) and `api` on requests.

use std::collections::HashMap;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use spate_metrics::{HistogramSnapshot, LATENCY_BUCKET_BOUNDS_US};

use super::report::{lag, BrokerReport};

/// The media type of the answer (OpenMetrics 1.0, which Prometheus negotiates and parses).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The report as OpenMetrics text.
pub fn render(report: BrokerReport) -> String {
    let mut registry = Registry::with_prefix("spate");
    registry.register_collector(Box::new(Exposition { report }));
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry)
        .expect("writing to a String cannot fail");
    text
}

#[derive(Debug)]
struct Exposition {
    report: BrokerReport,
}

type Labels = Vec<(&'static str, String)>;

/// One metric family: its descriptor once, then a sample per label set.
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<Unit>,
    samples: impl IntoIterator<Item = (Labels, M)>,
) -> Result<(), std::fmt::Error> {
    let samples: Vec<(Labels, M)> = samples.into_iter().collect();
    let Some((_, first)) = samples.first() else {
        return Ok(());
    };
    let metric_type = first.metric_type();
    let mut descriptor = encoder.encode_descriptor(name, help, unit.as_ref(), metric_type)?;
    for (labels, metric) in &samples {
        metric.encode(descriptor.encode_family(labels)?)?;
    }
    Ok(())
}

fn counter(value: u64) -> ConstCounter<u64> {
    ConstCounter::new(value)
}

fn gauge(value: u64) -> ConstGauge<i64> {
    ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX))
}

/// A histogram snapshot as a metric the encoder writes with Prometheus' bucket rules.
#[derive(Debug)]
struct Histogram(HistogramSnapshot);

impl EncodeMetric for Histogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        // Per-bucket counts; the encoder accumulates them. The last bucket is +Inf.
        let mut buckets: Vec<(f64, u64)> = LATENCY_BUCKET_BOUNDS_US
            .iter()
            .zip(&self.0.counts)
            .map(|(bound, count)| (*bound as f64 / 1e6, *count))
            .collect();
        buckets.push((f64::MAX, *self.0.counts.last().expect("an +Inf bucket")));
        encoder.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            self.0.sum_seconds(),
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

fn native_api_name(key: i16) -> String {
    usize::try_from(key)
        .ok()
        .and_then(|index| spate_protocol::api::ApiKey::ALL.get(index))
        .map_or_else(|| format!("api-{key}"), |api| format!("{api:?}"))
}

fn kafka_api_name(key: i16) -> String {
    spate_kafka_protocol::kafka_protocol::messages::ApiKey::try_from(key)
        .map_or_else(|_| format!("api-{key}"), |api| format!("{api:?}"))
}

impl Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let report = &self.report;
        let shard = |id: usize| ("shard", id.to_string());
        let partitions = || {
            report.shards.iter().flat_map(move |shard_report| {
                shard_report.partitions.iter().map(move |partition| {
                    let labels: Labels = vec![
                        shard(shard_report.shard),
                        ("topic", partition.topic.clone()),
                        ("partition", partition.partition.to_string()),
                    ];
                    (labels, partition)
                })
            })
        };
        let shards = || {
            report
                .shards
                .iter()
                .map(|report| (vec![shard(report.shard)], report))
        };

        // The broker.
        family(
            &mut encoder,
            "build_info",
            "The running broker's version (always 1)",
            None,
            [(
                vec![("version", env!("CARGO_PKG_VERSION").to_string())],
                gauge(1),
            )],
        )?;
        let ready = report.readiness.serving_after_ms.is_some()
            && report.readiness.opened_after_ms.is_some();
        family(
            &mut encoder,
            "ready",
            "1 once every shard serves and every partition was opened (or found offline)",
            None,
            [(Labels::new(), gauge(u64::from(ready)))],
        )?;

        // Partitions: traffic and offsets.
        family(
            &mut encoder,
            "partition_produced",
            "Bytes of record batches appended by producers, headers included, as stored",
            Some(Unit::Bytes),
            partitions().map(|(labels, partition)| (labels, counter(partition.traffic.bytes_in))),
        )?;
        family(
            &mut encoder,
            "partition_produced_records",
            "Records appended by producers",
            None,
            partitions().map(|(labels, partition)| (labels, counter(partition.traffic.records_in))),
        )?;
        family(
            &mut encoder,
            "partition_produced_batches",
            "Record batches appended by producers",
            None,
            partitions().map(|(labels, partition)| (labels, counter(partition.traffic.batches_in))),
        )?;
        family(
            &mut encoder,
            "partition_fetched",
            "Bytes of record batches answered to fetches, as stored",
            Some(Unit::Bytes),
            partitions().map(|(labels, partition)| (labels, counter(partition.traffic.bytes_out))),
        )?;
        family(
            &mut encoder,
            "partition_fetched_records",
            "Records in batches answered to fetches",
            None,
            partitions()
                .map(|(labels, partition)| (labels, counter(partition.traffic.records_out))),
        )?;
        family(
            &mut encoder,
            "partition_high_watermark",
            "The partition's high watermark: the end of what consumers may read",
            None,
            partitions().map(|(labels, partition)| (labels, gauge(partition.high_watermark))),
        )?;
        family(
            &mut encoder,
            "partition_log_start_offset",
            "The first offset the partition still holds",
            None,
            partitions().map(|(labels, partition)| (labels, gauge(partition.log_start_offset))),
        )?;
        family(
            &mut encoder,
            "partition_log_end_offset",
            "The offset the next appended record gets",
            None,
            partitions().map(|(labels, partition)| (labels, gauge(partition.log_end_offset))),
        )?;
        family(
            &mut encoder,
            "partition_size",
            "Bytes of the partition's segments on disk",
            Some(Unit::Bytes),
            partitions().map(|(labels, partition)| (labels, gauge(partition.size_bytes))),
        )?;
        family(
            &mut encoder,
            "partition_segments",
            "Segments of the partition, the active one included",
            None,
            partitions().map(|(labels, partition)| (labels, gauge(partition.segments as u64))),
        )?;
        family(
            &mut encoder,
            "partitions_unavailable",
            "Partitions a shard owns but does not serve: offline (damaged) or still opening",
            None,
            report.shards.iter().flat_map(|report| {
                [
                    (
                        vec![shard(report.shard), ("state", "offline".to_string())],
                        gauge(report.offline_partitions as u64),
                    ),
                    (
                        vec![shard(report.shard), ("state", "opening".to_string())],
                        gauge(report.opening_partitions as u64),
                    ),
                ]
            }),
        )?;

        // Requests.
        let requests = || {
            report.shards.iter().flat_map(move |report| {
                report.metrics.requests.iter().map(move |api| {
                    let name = match api.protocol {
                        spate_metrics::Protocol::Native => native_api_name(api.key),
                        spate_metrics::Protocol::Kafka => kafka_api_name(api.key),
                    };
                    let labels: Labels = vec![
                        shard(report.shard),
                        ("protocol", api.protocol.label().to_string()),
                        ("api", name),
                    ];
                    (labels, api)
                })
            })
        };
        family(
            &mut encoder,
            "requests",
            "Requests by protocol, API and result: answered (run; the answer may carry the API's \
             own error codes) or refused (not run: undecodable, unsupported version, over a \
             bound)",
            None,
            requests().flat_map(|(labels, api)| {
                let mut answered = labels.clone();
                answered.push(("result", "answered".to_string()));
                let mut refused = labels;
                refused.push(("result", "refused".to_string()));
                [
                    (answered, counter(api.answered)),
                    (refused, counter(api.refused)),
                ]
            }),
        )?;
        family(
            &mut encoder,
            "request_latency",
            "Time from a whole request's arrival to its answer being ready to write",
            Some(Unit::Seconds),
            requests().map(|(labels, api)| (labels, Histogram(api.latency))),
        )?;

        // Storage.
        family(
            &mut encoder,
            "disk_write_latency",
            "Each O_DIRECT segment write, from submission to completion",
            Some(Unit::Seconds),
            shards().map(|(labels, report)| (labels, Histogram(report.metrics.disk_write_latency))),
        )?;
        family(
            &mut encoder,
            "disk_writes",
            "O_DIRECT segment writes",
            None,
            shards().map(|(labels, report)| (labels, counter(report.metrics.disk_writes))),
        )?;
        family(
            &mut encoder,
            "disk_written",
            "Bytes of O_DIRECT segment writes (whole aligned blocks, rewrites of a partial tail \
             block included)",
            Some(Unit::Bytes),
            shards().map(|(labels, report)| (labels, counter(report.metrics.disk_written_bytes))),
        )?;
        family(
            &mut encoder,
            "fsync_latency",
            "Each fdatasync of a segment, from submission to completion",
            Some(Unit::Seconds),
            shards().map(|(labels, report)| (labels, Histogram(report.metrics.fsync_latency))),
        )?;
        family(
            &mut encoder,
            "slow_fsyncs",
            "fdatasyncs that took 100 ms or more (the ones the log warns about)",
            None,
            shards().map(|(labels, report)| (labels, counter(report.metrics.slow_fsyncs))),
        )?;
        family(
            &mut encoder,
            "segment_rolls",
            "Active segments closed and new ones begun",
            None,
            shards().map(|(labels, report)| (labels, counter(report.metrics.segment_rolls))),
        )?;

        // Memory and files.
        family(
            &mut encoder,
            "memory_used",
            "Bytes a bounded memory pool of the shard holds now",
            Some(Unit::Bytes),
            report.shards.iter().flat_map(|report| {
                report.memory.iter().map(|pool| {
                    (
                        vec![shard(report.shard), ("pool", pool.pool.to_string())],
                        gauge(pool.used_bytes),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "memory_limit",
            "The bound of each memory pool of the shard",
            Some(Unit::Bytes),
            report.shards.iter().flat_map(|report| {
                report.memory.iter().map(|pool| {
                    (
                        vec![shard(report.shard), ("pool", pool.pool.to_string())],
                        gauge(pool.limit_bytes),
                    )
                })
            }),
        )?;
        family(
            &mut encoder,
            "open_files",
            "Segment and index files the shard's open-file cache holds open",
            None,
            shards().map(|(labels, report)| (labels, gauge(report.open_files))),
        )?;
        family(
            &mut encoder,
            "open_files_limit",
            "The bound of the shard's open-file cache",
            None,
            shards().map(|(labels, report)| (labels, gauge(report.open_files_max))),
        )?;

        // Connections and the mesh.
        let connections = || {
            report.shards.iter().flat_map(move |report| {
                report.metrics.connections.iter().map(move |connections| {
                    (
                        vec![
                            shard(report.shard),
                            ("protocol", connections.protocol.label().to_string()),
                        ],
                        connections,
                    )
                })
            })
        };
        family(
            &mut encoder,
            "connections_opened",
            "Client connections accepted",
            None,
            connections().map(|(labels, connections)| (labels, counter(connections.opened))),
        )?;
        family(
            &mut encoder,
            "connections_closed",
            "Client connections ended",
            None,
            connections().map(|(labels, connections)| (labels, counter(connections.closed))),
        )?;
        family(
            &mut encoder,
            "connections",
            "Client connections open now",
            None,
            connections().map(|(labels, connections)| {
                (
                    labels,
                    gauge(connections.opened.saturating_sub(connections.closed)),
                )
            }),
        )?;
        family(
            &mut encoder,
            "cross_shard_calls_sent",
            "Calls this shard forwarded to other shards",
            None,
            shards()
                .map(|(labels, report)| (labels, counter(report.metrics.cross_shard_calls_sent))),
        )?;
        family(
            &mut encoder,
            "cross_shard_calls_run",
            "Calls this shard ran for other shards",
            None,
            shards()
                .map(|(labels, report)| (labels, counter(report.metrics.cross_shard_calls_run))),
        )?;

        // io_uring and the executor, as glommio counts them.
        let io =
            |help: &'static str,
             name: &'static str,
             unit: Option<Unit>,
             value: fn(&super::report::IoTotals) -> u64| { (name, help, unit, value) };
        for (name, help, unit, value) in [
            io(
                "Reads the shard's io_uring rings completed",
                "io_uring_file_reads",
                None,
                |io| io.file_reads,
            ),
            io(
                "Bytes those reads returned",
                "io_uring_file_read",
                Some(Unit::Bytes),
                |io| io.file_read_bytes,
            ),
            io(
                "Writes the shard's io_uring rings completed",
                "io_uring_file_writes",
                None,
                |io| io.file_writes,
            ),
            io(
                "Bytes those writes wrote",
                "io_uring_file_written",
                Some(Unit::Bytes),
                |io| io.file_written_bytes,
            ),
            io(
                "Files the shard's reactor opened",
                "io_uring_files_opened",
                None,
                |io| io.files_opened,
            ),
            io(
                "Files the shard's reactor closed",
                "io_uring_files_closed",
                None,
                |io| io.files_closed,
            ),
            io(
                "Tasks the shard's executor ran",
                "executor_tasks_executed",
                None,
                |io| io.tasks_executed,
            ),
            io(
                "Times the shard's scheduler ran a task queue",
                "executor_scheduler_runs",
                None,
                |io| io.scheduler_runs,
            ),
        ] {
            family(
                &mut encoder,
                name,
                help,
                unit,
                shards().map(|(labels, report)| (labels, counter(value(&report.io)))),
            )?;
        }
        family(
            &mut encoder,
            "executor_busy",
            "Seconds the shard's executor spent running tasks",
            Some(Unit::Seconds),
            shards().map(|(labels, report)| (labels, ConstCounter::new(report.io.busy_seconds))),
        )?;
        family(
            &mut encoder,
            "io_uring_latency_recent",
            "Quantiles of io_uring request latency since the previous scrape (glommio's sketch, \
             reset when read)",
            Some(Unit::Seconds),
            report.shards.iter().flat_map(|report| {
                report.io_latency_recent.iter().map(|(quantile, seconds)| {
                    (
                        vec![shard(report.shard), ("quantile", quantile.to_string())],
                        ConstGauge::new(*seconds),
                    )
                })
            }),
        )?;

        // Consumer groups.
        let high_watermarks: HashMap<(&str, u32), u64> = report.high_watermarks();
        let committed = || {
            report.groups.iter().flat_map(|group| {
                group
                    .committed
                    .iter()
                    .map(move |((topic, partition), offset)| {
                        (
                            vec![
                                ("group", group.group_id.clone()),
                                ("topic", topic.clone()),
                                ("partition", partition.to_string()),
                            ],
                            (topic.as_str(), *partition, *offset),
                        )
                    })
            })
        };
        family(
            &mut encoder,
            "consumer_group_committed_offset",
            "The group's committed offset on the partition",
            None,
            committed().map(|(labels, (_, _, offset))| (labels, gauge(offset))),
        )?;
        family(
            &mut encoder,
            "consumer_group_lag",
            "Records between the group's committed offset and the partition's high watermark",
            None,
            committed().filter_map(|(labels, (topic, partition, offset))| {
                lag(&high_watermarks, topic, partition, offset).map(|lag| (labels, gauge(lag)))
            }),
        )?;
        Ok(())
    }
}
