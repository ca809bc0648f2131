//! The admin HTTP listener (Redpanda's admin port, 9644 by default): Prometheus metrics, health
//! and readiness probes, and read-only JSON views of the broker, its topics and its consumer
//! groups. Off with `--admin-listen none`.
//!
//! Where it runs, and why it never blocks a shard: shard 0 accepts and reads requests as
//! ordinary glommio tasks (non-blocking sockets, bounded heads, deadlines). Data is collected
//! with typed cross-shard calls, each shard reporting its own counters on its own thread (a few
//! microseconds of work per shard, nothing waits on a lock). Turning the collected numbers into
//! text or JSON, the only work that grows with the number of partitions, runs on glommio's
//! blocking-thread pool (`spawn_blocking`), off every shard. At most
//! [`ADMIN_CONNECTIONS_MAX`] requests are served at once; more are closed at once.
//!
//! Routes:
//! - `GET /metrics`: OpenMetrics text (`exposition`);
//! - `GET /v1/health`: 200 when every shard answers a call within [`HEALTH_TIMEOUT_MS`]
//!   (liveness: a wedged shard makes the broker unhealthy), else 503;
//! - `GET /v1/ready`: 200 once every shard serves and every partition was opened or found
//!   offline, else 503, with the counts either way;
//! - `GET /v1/broker`: version, node, shards and their cores, listeners, data directory, limits;
//! - `GET /v1/topics`, `GET /v1/topics/{name}`: partitions with offsets, sizes and traffic;
//! - `GET /v1/groups`: the groups this broker coordinates, with committed offsets and lag.
//!
//! HTTPS with `admin_tls_cert_file`/`admin_tls_key_file` (and client certificates required with
//! `admin_tls_client_ca_file`): the handshake runs in the connection's task, within
//! [`http::REQUEST_HEAD_TIMEOUT_MS`] like the request head.

pub mod exposition;
pub mod http;
pub mod report;

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::net::TcpListener;
use glommio::sync::Semaphore;
use serde_json::{json, Value};

use crate::config::{Config, ShardPlacement};
use crate::services::Services;
use crate::shard::mesh::invoke_on;
use crate::shard::opening::Readiness;
use crate::tls::ListenerCertificates;
use http::{AdminRequest, AdminResponse};
use report::{lag, BrokerReport};

/// Admin requests served at once; a scraper and a few probes need far fewer.
pub const ADMIN_CONNECTIONS_MAX: u64 = 32;
/// How long `/v1/health` waits for every shard to answer.
pub const HEALTH_TIMEOUT_MS: u64 = 5_000;

/// What the admin listener knows beyond the shard's services.
pub struct AdminContext {
    pub readiness: Arc<Readiness>,
    /// Every listener as bound (port 0 resolved).
    pub listeners: Vec<(&'static str, std::net::SocketAddr)>,
    pub started: Instant,
}

/// Accepts admin connections on shard 0 until shutdown; TLS when `certificates` is set.
pub async fn serve(
    services: Rc<Services>,
    listener: TcpListener,
    certificates: Option<Arc<ListenerCertificates>>,
    context: Rc<AdminContext>,
) {
    let slots = Rc::new(Semaphore::new(ADMIN_CONNECTIONS_MAX));
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            services.shutdown.requested().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => stream,
            Some(Err(error)) => {
                tracing::debug!(%error, "admin accept failed");
                future::or(
                    glommio::timer::sleep(Duration::from_millis(100)),
                    services.shutdown.requested(),
                )
                .await;
                continue;
            }
        };
        let Ok(slot) = slots.try_acquire_static_permit(1) else {
            drop(stream);
            continue;
        };
        let services = services.clone();
        let context = context.clone();
        let certificates = certificates.clone();
        glommio::spawn_local(async move {
            let _slot = slot;
            // Set on the socket, so it bounds the TLS path's waits for the socket too.
            let _ = stream
                .set_write_timeout(Some(Duration::from_millis(http::RESPONSE_WRITE_TIMEOUT_MS)));
            let peer = stream.peer_addr().ok();
            let opened = crate::tls::open(
                stream,
                certificates.as_deref(),
                Duration::from_millis(http::REQUEST_HEAD_TIMEOUT_MS),
                services.shutdown.requested(),
            )
            .await;
            let mut stream = match opened {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(?peer, %error, "admin TLS handshake failed; connection closed");
                    return;
                }
            };
            let (response, head_only) = match http::read_request(&mut stream).await {
                http::ReadOutcome::Gone => return,
                http::ReadOutcome::Refuse(response) => (response, false),
                http::ReadOutcome::Request(request) => {
                    let head_only = request.head_only;
                    (route(&services, &context, &request).await, head_only)
                }
            };
            http::write_response(&mut stream, &response, head_only).await;
        })
        .detach();
    }
}

async fn route(
    services: &Rc<Services>,
    context: &Rc<AdminContext>,
    request: &AdminRequest,
) -> AdminResponse {
    let path = request.path.trim_end_matches('/');
    match path {
        "/metrics" => {
            let report = collect(services, context, true).await;
            let text = off_shard(move || exposition::render(report)).await;
            AdminResponse {
                status: 200,
                content_type: exposition::CONTENT_TYPE,
                body: text.into_bytes(),
            }
        }
        "/v1/health" => health(services).await,
        "/v1/ready" => ready(context),
        "/v1/broker" => broker(services, context),
        "/v1/topics" => {
            let report = collect(services, context, false).await;
            let config = services.config.clone();
            let snapshot = services.snapshot();
            off_shard(move || {
                let topics: Vec<Value> = snapshot
                    .topics
                    .values()
                    .map(|topic| topic_json(&report, &config, topic, false))
                    .collect();
                AdminResponse::json(200, &json!({ "topics": topics }))
            })
            .await
        }
        "/v1/groups" => {
            let report = collect(services, context, true).await;
            off_shard(move || AdminResponse::json(200, &groups_json(&report))).await
        }
        _ => {
            if let Some(name) = path.strip_prefix("/v1/topics/") {
                let snapshot = services.snapshot();
                let Some(topic) = snapshot.topic(name).cloned() else {
                    return AdminResponse::error(404, &format!("no topic named {name:?}"));
                };
                let report = collect(services, context, false).await;
                let config = services.config.clone();
                return off_shard(move || {
                    AdminResponse::json(200, &topic_json(&report, &config, &topic, true))
                })
                .await;
            }
            AdminResponse::error(
                404,
                "not found; served: /metrics, /v1/health, /v1/ready, /v1/broker, /v1/topics, \
                 /v1/topics/{name}, /v1/groups",
            )
        }
    }
}

/// Runs `work` on glommio's blocking-thread pool, off every shard's executor.
async fn off_shard<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    glommio::executor().spawn_blocking(work).await
}

async fn collect(services: &Rc<Services>, context: &AdminContext, groups: bool) -> BrokerReport {
    let shards = report::shard_reports(services).await;
    let groups = if groups {
        report::group_reports(services).await
    } else {
        Vec::new()
    };
    BrokerReport {
        shards,
        groups,
        readiness: context.readiness.report(),
    }
}

async fn health(services: &Rc<Services>) -> AdminResponse {
    let calls = (0..services.shard_count).map(|shard| {
        let services = services.clone();
        async move {
            let answered = future::or(
                async {
                    invoke_on(&services, shard, |_target: Rc<Services>| async {})
                        .await
                        .is_ok()
                },
                async {
                    glommio::timer::sleep(Duration::from_millis(HEALTH_TIMEOUT_MS)).await;
                    false
                },
            )
            .await;
            (shard, answered)
        }
    });
    let answers = crate::shard::join_all(calls).await;
    let silent: Vec<usize> = answers
        .iter()
        .filter(|(_, answered)| !answered)
        .map(|(shard, _)| *shard)
        .collect();
    if services.shutdown.is_requested() {
        return AdminResponse::json(503, &json!({ "status": "stopping" }));
    }
    if silent.is_empty() {
        AdminResponse::json(
            200,
            &json!({ "status": "ok", "shards": services.shard_count }),
        )
    } else {
        AdminResponse::json(
            503,
            &json!({
                "status": "unhealthy",
                "reason": format!("shards {silent:?} did not answer within {HEALTH_TIMEOUT_MS} ms"),
            }),
        )
    }
}

fn ready(context: &AdminContext) -> AdminResponse {
    let readiness = context.readiness.report();
    let serving = readiness.serving_after_ms.is_some();
    let opened = readiness.opened_after_ms.is_some();
    let body = json!({
        "ready": serving && opened,
        "serving": serving,
        "partitions": {
            "total": readiness.partitions_total,
            "opened": readiness.partitions_opened,
            "offline": readiness.partitions_offline,
            "opening": readiness.partitions_opening(),
        },
        "serving_after_ms": readiness.serving_after_ms,
        "opened_after_ms": readiness.opened_after_ms,
    });
    AdminResponse::json(if serving && opened { 200 } else { 503 }, &body)
}

fn broker(services: &Rc<Services>, context: &AdminContext) -> AdminResponse {
    let config = &services.config;
    let snapshot = services.snapshot();
    let shards: Vec<Value> = match &config.placement {
        ShardPlacement::Pinned(cores) => cores
            .iter()
            .enumerate()
            .map(|(shard, core)| json!({ "shard": shard, "core": core }))
            .collect(),
        ShardPlacement::Unpinned(count) => (0..*count)
            .map(|shard| json!({ "shard": shard, "core": null }))
            .collect(),
    };
    let listeners: serde_json::Map<String, Value> = context
        .listeners
        .iter()
        .map(|(name, address)| (name.to_string(), json!(address.to_string())))
        .collect();
    let limits = &config.limits;
    AdminResponse::json(
        200,
        &json!({
            "version": env!("CARGO_PKG_VERSION"),
            "node_id": config.cluster.node_id,
            "cluster_mode": snapshot.cluster_mode,
            "controller": snapshot.controller,
            "uptime_seconds": context.started.elapsed().as_secs(),
            "data_dir": config.data_dir.display().to_string(),
            "shards": shards,
            "listeners": listeners,
            "metrics": config.metrics,
            "topics": snapshot.topics.len(),
            "limits": {
                "frame_bytes_max": limits.frame_bytes_max,
                "shard_inflight_bytes_max": limits.shard_inflight_bytes_max,
                "shard_arrival_bytes_max": limits.shard_arrival_bytes_max,
                "connection_inflight_bytes_max": limits.connection_inflight_bytes_max,
                "connection_inflight_requests_max": limits.connection_inflight_requests_max,
                "connections_max": limits.connections_max,
                "connections_per_ip_max": limits.connections_per_ip_max,
                "fetch_response_bytes_max": limits.fetch_response_bytes_max,
                "io_memory_bytes": limits.io_memory_bytes,
                "topics_max": limits.topics_max,
                "partitions_per_topic_max": limits.partitions_per_topic_max,
                "partitions_per_shard_max": limits.partitions_per_shard_max,
            },
        }),
    )
}

fn topic_json(
    report: &BrokerReport,
    config: &Config,
    topic: &crate::catalog::TopicMetadata,
    with_config: bool,
) -> Value {
    let local = config.cluster.node_id;
    let partitions: Vec<Value> = (0..topic.partition_count())
        .map(|partition| {
            let role = topic.role(partition, local);
            let found = report.shards.iter().find_map(|shard| {
                shard
                    .partitions
                    .iter()
                    .find(|entry| entry.topic == topic.name && entry.partition == partition)
            });
            let mut value = json!({
                "partition": partition,
                "shard": topic.owner_of(partition),
                "leader": role.leader,
                "replicas": role.replicas,
                "isr": role.isr,
            });
            match found {
                Some(found) => {
                    value["log_start_offset"] = json!(found.log_start_offset);
                    value["high_watermark"] = json!(found.high_watermark);
                    value["log_end_offset"] = json!(found.log_end_offset);
                    value["last_stable_offset"] = json!(found.last_stable_offset);
                    value["size_bytes"] = json!(found.size_bytes);
                    value["segments"] = json!(found.segments);
                    value["produced_bytes"] = json!(found.traffic.bytes_in);
                    value["produced_records"] = json!(found.traffic.records_in);
                    value["fetched_bytes"] = json!(found.traffic.bytes_out);
                    value["fetched_records"] = json!(found.traffic.records_out);
                    value["state"] = json!("online");
                }
                None => value["state"] = json!("not open here (offline, opening, or a replica)"),
            }
            value
        })
        .collect();
    let mut value = json!({
        "name": topic.name,
        "id": topic.id,
        "partitions": partitions,
    });
    if with_config {
        value["config"] = json!(topic.config.to_map());
    }
    value
}

fn groups_json(report: &BrokerReport) -> Value {
    let high_watermarks = report.high_watermarks();
    let groups: Vec<Value> = report
        .groups
        .iter()
        .map(|group| {
            let mut total_lag = 0u64;
            let partitions: Vec<Value> = group
                .committed
                .iter()
                .map(|((topic, partition), committed)| {
                    let partition_lag = lag(&high_watermarks, topic, *partition, *committed);
                    total_lag += partition_lag.unwrap_or(0);
                    json!({
                        "topic": topic,
                        "partition": partition,
                        "committed_offset": committed,
                        "high_watermark": high_watermarks.get(&(topic.as_str(), *partition)),
                        "lag": partition_lag,
                    })
                })
                .collect();
            json!({
                "group": group.group_id,
                "state": group.state,
                "protocol_type": group.protocol_type,
                "lag": total_lag,
                "partitions": partitions,
            })
        })
        .collect();
    json!({ "groups": groups })
}
