//! What the admin listener collects: one [`ShardReport`] per shard, each built on its own shard
//! by a typed cross-shard call (so every counter is read by the thread that writes it), and the
//! consumer groups with their committed offsets, built on the shards that coordinate them.
//! Everything here is plain data that crosses threads; rendering happens elsewhere.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use spate_metrics::{PartitionTrafficSnapshot, ShardMetricsSnapshot};
use spate_protocol::api::{OffsetFetchRequest, OffsetFetchResponse};

use crate::catalog::ShardId;
use crate::group::coordinator;
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::shard::opening::ReadinessReport;
use crate::storage::config::READ_AHEAD_BYTES_PER_SHARD_MAX;
use crate::storage::read_ahead;

/// One partition as its owner sees it.
#[derive(Debug, Clone)]
pub struct PartitionReport {
    pub topic: String,
    pub partition: u32,
    pub traffic: PartitionTrafficSnapshot,
    pub log_start_offset: u64,
    pub high_watermark: u64,
    pub log_end_offset: u64,
    pub last_stable_offset: u64,
    pub size_bytes: u64,
    pub segments: usize,
}

/// A bounded memory pool of one shard: what it holds now against its limit.
#[derive(Debug, Clone)]
pub struct MemoryUse {
    pub pool: &'static str,
    pub used_bytes: u64,
    pub limit_bytes: u64,
}

/// The io_uring figures glommio keeps for the shard's reactor, summed over its rings since the
/// shard started (glommio hands them out and resets them; the shard keeps the running sums).
#[derive(Debug, Clone, Copy, Default)]
pub struct IoTotals {
    pub file_reads: u64,
    pub file_read_bytes: u64,
    pub file_writes: u64,
    pub file_written_bytes: u64,
    pub files_opened: u64,
    pub files_closed: u64,
    pub tasks_executed: u64,
    pub scheduler_runs: u64,
    pub busy_seconds: f64,
}

/// Quantiles of io_uring request latency (submission to completion) over the time since the
/// previous collection: glommio keeps them as a sketch it resets when read.
pub const IO_LATENCY_QUANTILES: [f64; 4] = [0.5, 0.9, 0.99, 0.999];

#[derive(Debug, Clone)]
pub struct ShardReport {
    pub shard: ShardId,
    pub metrics: ShardMetricsSnapshot,
    pub partitions: Vec<PartitionReport>,
    pub offline_partitions: usize,
    pub opening_partitions: usize,
    pub memory: Vec<MemoryUse>,
    pub open_files: u64,
    pub open_files_max: u64,
    pub io: IoTotals,
    /// `(quantile, seconds)`; empty when no I/O completed since the previous collection.
    pub io_latency_recent: Vec<(f64, f64)>,
}

thread_local! {
    /// This shard's running sums of what glommio resets on every read.
    static IO_TOTALS: RefCell<IoTotals> = RefCell::new(IoTotals::default());
}

/// Builds this shard's report (runs on the shard itself).
pub fn shard_report(services: &Services) -> ShardReport {
    let shard = &services.shard;
    let snapshot = shard.snapshot();
    let names: HashMap<u64, &str> = snapshot
        .topics
        .values()
        .map(|topic| (topic.id, topic.name.as_str()))
        .collect();
    let mut tail_cache_used = 0u64;
    let mut tail_cache_limit = 0u64;
    let mut partitions: Vec<PartitionReport> = shard
        .served_partitions()
        .into_iter()
        .map(|(key, partition)| {
            let state = partition.state();
            let (cached, cached_max) = partition.log.tail_cache_bytes();
            tail_cache_used += cached as u64;
            tail_cache_limit += cached_max as u64;
            PartitionReport {
                topic: names.get(&key.topic_id).map_or_else(
                    || format!("topic-id-{}", key.topic_id),
                    |name| name.to_string(),
                ),
                partition: key.partition,
                traffic: partition.traffic.snapshot(),
                log_start_offset: state.log_start_offset,
                high_watermark: state.high_watermark,
                log_end_offset: state.log_end,
                last_stable_offset: state.last_stable_offset,
                size_bytes: partition.log.size_bytes(),
                segments: partition.log.segment_count(),
            }
        })
        .collect();
    partitions.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
    let (offline_partitions, opening_partitions) = shard.unavailable_partition_counts();
    let budget_use = |budget: &crate::shard::budget::ByteBudget| {
        let capacity = budget.capacity_bytes() as u64;
        let used = capacity.saturating_sub(budget.available_bytes() as u64)
            + budget.overdrawn_bytes() as u64;
        (used, capacity)
    };
    let (requests_used, requests_limit) = budget_use(&shard.budget);
    let (arriving_used, arriving_limit) = budget_use(&shard.arrival_budget);
    let memory = vec![
        MemoryUse {
            pool: "requests",
            used_bytes: requests_used,
            limit_bytes: requests_limit,
        },
        MemoryUse {
            pool: "arriving_frames",
            used_bytes: arriving_used,
            limit_bytes: arriving_limit,
        },
        MemoryUse {
            pool: "tail_cache",
            used_bytes: tail_cache_used,
            limit_bytes: tail_cache_limit,
        },
        MemoryUse {
            pool: "read_ahead",
            used_bytes: read_ahead::parked_bytes() as u64,
            limit_bytes: READ_AHEAD_BYTES_PER_SHARD_MAX as u64,
        },
    ];
    let files = shard.files();
    let (io, io_latency_recent) = collect_io();
    ShardReport {
        shard: shard.id,
        metrics: spate_metrics::shard_snapshot(),
        partitions,
        offline_partitions,
        opening_partitions,
        memory,
        open_files: files.stats().open_files as u64,
        open_files_max: files.open_files_max() as u64,
        io,
        io_latency_recent,
    }
}

/// Adds what glommio counted since the last call to this shard's sums.
fn collect_io() -> (IoTotals, Vec<(f64, f64)>) {
    let executor = glommio::executor();
    let rings = executor.io_stats().all_rings();
    let stats = executor.executor_stats();
    let recent = IO_LATENCY_QUANTILES
        .iter()
        .filter_map(|quantile| {
            let micros = rings.io_latency_us().quantile(*quantile).ok().flatten()?;
            Some((*quantile, micros / 1e6))
        })
        .collect();
    let totals = IO_TOTALS.with(|totals| {
        let mut totals = totals.borrow_mut();
        let (reads, read_bytes) = rings.file_reads();
        let (buffered_reads, buffered_read_bytes) = rings.file_buffered_reads();
        let (writes, written_bytes) = rings.file_writes();
        let (buffered_writes, buffered_written_bytes) = rings.file_buffered_writes();
        totals.file_reads += reads + buffered_reads;
        totals.file_read_bytes += read_bytes + buffered_read_bytes;
        totals.file_writes += writes + buffered_writes;
        totals.file_written_bytes += written_bytes + buffered_written_bytes;
        totals.files_opened += rings.files_opened();
        totals.files_closed += rings.files_closed();
        totals.tasks_executed += stats.tasks_executed();
        totals.scheduler_runs += stats.scheduler_runs();
        totals.busy_seconds += stats.total_runtime().as_secs_f64();
        *totals
    });
    (totals, recent)
}

/// Every shard's report, in shard order. A shard that is stopping is left out.
pub async fn shard_reports(services: &Rc<Services>) -> Vec<ShardReport> {
    let calls = (0..services.shard_count).map(|shard| {
        let services = services.clone();
        async move {
            invoke_on(&services, shard, |target: Rc<Services>| async move {
                shard_report(&target)
            })
            .await
        }
    });
    crate::shard::join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .collect()
}

/// One consumer group this broker coordinates.
#[derive(Debug, Clone)]
pub struct GroupReport {
    pub group_id: String,
    pub state: &'static str,
    pub protocol_type: String,
    /// `(topic, partition) -> committed offset`.
    pub committed: BTreeMap<(String, u32), u64>,
}

/// The groups this broker coordinates (every group, on a single broker), each with its
/// committed offsets; built on the shards that coordinate them.
pub async fn group_reports(services: &Rc<Services>) -> Vec<GroupReport> {
    let calls = (0..services.shard_count).map(|shard| {
        let services = services.clone();
        async move {
            invoke_on(&services, shard, |target: Rc<Services>| async move {
                shard_groups(&target).await
            })
            .await
        }
    });
    let mut groups: Vec<GroupReport> = crate::shard::join_all(calls)
        .await
        .into_iter()
        .filter_map(Result::ok)
        .flatten()
        .collect();
    groups.sort_by(|a, b| a.group_id.cmp(&b.group_id));
    groups
}

async fn shard_groups(services: &Rc<Services>) -> Vec<GroupReport> {
    let listed = coordinator::list(services, &[]).await;
    if listed.error_code != spate_protocol::error::ErrorCode::None {
        return Vec::new();
    }
    let Some(offsets_topic) = services
        .snapshot()
        .topic(crate::group::OFFSETS_TOPIC_NAME)
        .cloned()
    else {
        return Vec::new();
    };
    let mut reports = Vec::with_capacity(listed.groups.len());
    for listing in listed.groups {
        let partition =
            crate::group::offsets_partition_of(&listing.group_id, offsets_topic.partition_count());
        let fetched: OffsetFetchResponse = coordinator::fetch_offsets(
            services,
            partition,
            OffsetFetchRequest {
                group_id: listing.group_id.clone(),
                topics: None,
                require_stable: false,
            },
        )
        .await;
        let mut committed = BTreeMap::new();
        for topic in fetched.topics {
            for partition in topic.partitions {
                if let Some(offset) = partition.committed_offset {
                    committed.insert((topic.name.clone(), partition.partition), offset);
                }
            }
        }
        reports.push(GroupReport {
            group_id: listing.group_id,
            state: listing.state.name(),
            protocol_type: listing.protocol_type,
            committed,
        });
    }
    reports
}

/// Everything one scrape or status answer needs.
#[derive(Debug, Clone)]
pub struct BrokerReport {
    pub shards: Vec<ShardReport>,
    pub groups: Vec<GroupReport>,
    pub readiness: ReadinessReport,
}

impl BrokerReport {
    /// Each partition's high watermark, by topic and partition.
    pub fn high_watermarks(&self) -> HashMap<(&str, u32), u64> {
        self.shards
            .iter()
            .flat_map(|shard| &shard.partitions)
            .map(|partition| {
                (
                    (partition.topic.as_str(), partition.partition),
                    partition.high_watermark,
                )
            })
            .collect()
    }
}

/// A group's lag on one partition: the high watermark minus the committed offset (0 when the
/// commit is at or past it); `None` when this broker does not hold the partition.
pub fn lag(
    high_watermarks: &HashMap<(&str, u32), u64>,
    topic: &str,
    partition: u32,
    committed: u64,
) -> Option<u64> {
    high_watermarks
        .get(&(topic, partition))
        .map(|high_watermark| high_watermark.saturating_sub(committed))
}
