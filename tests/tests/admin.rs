//! End-to-end: the admin HTTP listener of a real broker (two shards). A produce and consume run
//! through the native protocol is checked against what `/metrics` counts (bytes in equal to the
//! sum of the batches' sizes, records in and out, requests by API, syncs, connections), the
//! JSON views (`/v1/health`, `/v1/ready`, `/v1/broker`, `/v1/topics`, `/v1/groups` with lag)
//! against the partitions' real offsets, and bad HTTP against its status codes. A broker
//! started with `--metrics false` counts nothing, which is what the paired benchmark compares.
//! The Grafana dashboard (`tuning/grafana-spate.json`) is held to the same exposition: every
//! metric name its PromQL uses must be one the broker exports.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;
use spate_protocol::api as native;
use spate_protocol::api::Acks;
use spate_protocol::error::ErrorCode;
use spate_tests::client::{build_batch, numbered_records};
use spate_tests::{Broker, BrokerOptions, KafkaTestClient, TestClient};

/// One HTTP exchange: the status, the headers (lower-case names) and the body.
fn http(address: SocketAddr, request: &str) -> (u16, BTreeMap<String, String>, String) {
    let mut stream = TcpStream::connect(address).expect("connect to the admin listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).expect("read the answer");
    let answer = String::from_utf8(answer).expect("UTF-8 answer");
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|code| code.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_string()))
        .collect();
    (status, headers, body.to_string())
}

fn get(address: SocketAddr, path: &str) -> (u16, BTreeMap<String, String>, String) {
    http(
        address,
        &format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n"),
    )
}

fn get_json(address: SocketAddr, path: &str) -> (u16, serde_json::Value) {
    let (status, headers, body) = get(address, path);
    assert_eq!(headers["content-type"], "application/json", "{path}");
    (status, serde_json::from_str(&body).expect("a JSON body"))
}

/// One sample of the exposition: its name and labels.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses OpenMetrics text (the label values written here need no unescaping).
fn samples(text: &str) -> Vec<Sample> {
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    text.lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("series and value");
            let (name, labels) = match series.split_once('{') {
                Some((name, labels)) => (name, labels.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').expect("key=value");
                    (key.to_string(), value.trim_matches('"').to_string())
                })
                .collect();
            Sample {
                name: name.to_string(),
                labels,
                value: value.parse().expect("a number"),
            }
        })
        .collect()
}

/// The sum of `name` over the samples whose labels include every pair of `wanted`.
fn sum(samples: &[Sample], name: &str, wanted: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|sample| sample.name == name)
        .filter(|sample| {
            wanted
                .iter()
                .all(|(key, value)| sample.labels.get(*key).map(String::as_str) == Some(*value))
        })
        .map(|sample| sample.value)
        .sum()
}

fn scrape(broker: &Broker) -> Vec<Sample> {
    let (status, headers, body) = get(broker.admin_address(), "/metrics");
    assert_eq!(status, 200);
    assert!(
        headers["content-type"].starts_with("application/openmetrics-text"),
        "{headers:?}"
    );
    samples(&body)
}

fn wait_until_ready(broker: &Broker) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, ready) = get_json(broker.admin_address(), "/v1/ready");
        if status == 200 {
            assert_eq!(ready["ready"], true);
            return ready;
        }
        assert_eq!(status, 503, "{ready}");
        assert!(
            Instant::now() < deadline,
            "not ready within a minute: {ready}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Produces `rounds` batches of varying sizes to each partition of `topic`; returns each
/// partition's (bytes, records, produce calls).
fn produce_known_batches(
    client: &mut TestClient,
    topic: &str,
    partitions: u32,
    rounds: usize,
) -> Vec<(u64, u64, u64)> {
    let mut sent = vec![(0u64, 0u64, 0u64); partitions as usize];
    let mut first = 0;
    for round in 0..rounds {
        for partition in 0..partitions {
            let count = 1 + (round * 7 + partition as usize * 3) % 20;
            let batch = build_batch(&numbered_records(first, count, 1_700_000_000_000));
            first += count;
            let bytes = batch.len() as u64;
            let (code, _) = client.produce(topic, partition, Acks::All, vec![Bytes::from(batch)]);
            assert_eq!(code, ErrorCode::None);
            let entry = &mut sent[partition as usize];
            entry.0 += bytes;
            entry.1 += count as u64;
            entry.2 += 1;
        }
    }
    sent
}

#[test]
fn metrics_count_what_a_produce_and_consume_run_sent_and_read() {
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let mut client = TestClient::connect(broker.address());
    client.create_topic("orders", 2, &[]);
    let sent = produce_known_batches(&mut client, "orders", 2, 25);
    for partition in 0..2 {
        let read = client.fetch_all("orders", partition, 0);
        assert_eq!(read.len() as u64, sent[partition as usize].1);
    }
    // A Kafka client's requests are counted under their own protocol.
    let mut kafka = KafkaTestClient::connect(broker.kafka_address());
    let _: spate_kafka_protocol::kafka_protocol::messages::MetadataResponse = kafka.call(
        12,
        &spate_kafka_protocol::kafka_protocol::messages::MetadataRequest::default(),
    );

    let samples = scrape(&broker);
    for (partition, (bytes, records, calls)) in sent.iter().enumerate() {
        let labels = [("topic", "orders"), ("partition", &*partition.to_string())];
        assert_eq!(
            sum(&samples, "spate_partition_produced_bytes_total", &labels),
            *bytes as f64,
            "bytes in of partition {partition} are the sum of its batches' sizes"
        );
        assert_eq!(
            sum(&samples, "spate_partition_produced_records_total", &labels),
            *records as f64
        );
        assert_eq!(
            sum(&samples, "spate_partition_produced_batches_total", &labels),
            *calls as f64
        );
        // Read once from the start: every stored batch, as stored, went out once.
        assert_eq!(
            sum(&samples, "spate_partition_fetched_bytes_total", &labels),
            *bytes as f64
        );
        assert_eq!(
            sum(&samples, "spate_partition_fetched_records_total", &labels),
            *records as f64
        );
        assert_eq!(
            sum(&samples, "spate_partition_high_watermark", &labels),
            *records as f64
        );
    }
    let produce_calls: u64 = sent.iter().map(|(_, _, calls)| calls).sum();
    assert_eq!(
        sum(
            &samples,
            "spate_requests_total",
            &[
                ("protocol", "native"),
                ("api", "Produce"),
                ("result", "answered")
            ]
        ),
        produce_calls as f64
    );
    assert_eq!(
        sum(
            &samples,
            "spate_request_latency_seconds_count",
            &[("protocol", "native"), ("api", "Produce")]
        ),
        produce_calls as f64
    );
    assert!(
        sum(
            &samples,
            "spate_requests_total",
            &[
                ("protocol", "kafka"),
                ("api", "Metadata"),
                ("result", "answered")
            ]
        ) >= 1.0
    );
    // acks=all: at least one sync per produce call's partition write, each timed.
    assert!(sum(&samples, "spate_fsync_latency_seconds_count", &[]) >= 1.0);
    let produced_bytes: u64 = sent.iter().map(|(bytes, _, _)| bytes).sum();
    assert!(
        sum(&samples, "spate_disk_written_bytes_total", &[]) >= produced_bytes as f64,
        "the disk got at least what was produced"
    );
    assert!(sum(&samples, "spate_disk_write_latency_seconds_count", &[]) >= 1.0);
    assert!(sum(&samples, "spate_connections", &[("protocol", "native")]) >= 1.0);
    assert!(sum(&samples, "spate_connections", &[("protocol", "kafka")]) >= 1.0);
    for pool in ["requests", "arriving_frames", "tail_cache", "read_ahead"] {
        for shard in ["0", "1"] {
            assert!(
                sum(
                    &samples,
                    "spate_memory_limit_bytes",
                    &[("pool", pool), ("shard", shard)]
                ) > 0.0,
                "pool {pool} of shard {shard} has a limit"
            );
        }
    }
    assert!(sum(&samples, "spate_io_uring_file_writes_total", &[]) >= 1.0);
    assert_eq!(sum(&samples, "spate_build_info", &[]), 1.0);
}

#[test]
fn the_json_views_report_the_broker_its_topics_and_group_lag() {
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    let admin = broker.admin_address();
    let (status, health) = get_json(admin, "/v1/health");
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    wait_until_ready(&broker);

    let (status, about) = get_json(admin, "/v1/broker");
    assert_eq!(status, 200);
    assert_eq!(about["shards"].as_array().unwrap().len(), 2);
    assert_eq!(about["listeners"]["native"], broker.address().to_string());
    assert_eq!(
        about["listeners"]["kafka"],
        broker.kafka_address().to_string()
    );
    assert_eq!(about["listeners"]["admin"], admin.to_string());
    assert_eq!(about["version"], env!("CARGO_PKG_VERSION"));
    assert!(about["limits"]["frame_bytes_max"].as_u64().unwrap() > 0);

    let mut client = TestClient::connect(broker.address());
    client.create_topic("ledger", 3, &[("retention.ms", "86400000")]);
    let sent = produce_known_batches(&mut client, "ledger", 3, 4);

    let (status, topics) = get_json(admin, "/v1/topics");
    assert_eq!(status, 200);
    let ledger = topics["topics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|topic| topic["name"] == "ledger")
        .expect("the topic is listed")
        .clone();
    assert_eq!(ledger["partitions"].as_array().unwrap().len(), 3);
    for (partition, (bytes, records, _)) in sent.iter().enumerate() {
        let entry = &ledger["partitions"][partition];
        assert_eq!(entry["partition"], partition);
        assert_eq!(entry["high_watermark"], *records);
        assert_eq!(entry["log_end_offset"], *records);
        assert_eq!(entry["produced_bytes"], *bytes);
        assert_eq!(entry["state"], "online");
    }
    let (status, one) = get_json(admin, "/v1/topics/ledger");
    assert_eq!(status, 200);
    assert_eq!(one["config"]["retention.ms"], "86400000");
    let (status, _) = get_json(admin, "/v1/topics/absent");
    assert_eq!(status, 404);

    // A group's commit below the high watermark shows as lag, in JSON and in /metrics.
    let committed = 2u64;
    let response: native::OffsetCommitResponse = client.call(&native::OffsetCommitRequest {
        group_id: "billing".into(),
        generation_id: native::GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![native::TopicPartitions {
            name: "ledger".into(),
            partitions: vec![native::OffsetCommitPartition {
                partition: 1,
                committed_offset: committed,
                committed_metadata: None,
            }],
        }],
    });
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    let (status, groups) = get_json(admin, "/v1/groups");
    assert_eq!(status, 200);
    let billing = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|group| group["group"] == "billing")
        .expect("the group is listed")
        .clone();
    let expected_lag = sent[1].1 - committed;
    assert_eq!(billing["lag"], expected_lag, "{billing}");
    assert_eq!(billing["partitions"][0]["topic"], "ledger");
    assert_eq!(billing["partitions"][0]["committed_offset"], committed);
    assert_eq!(billing["partitions"][0]["lag"], expected_lag);
    let samples = scrape(&broker);
    assert_eq!(
        sum(
            &samples,
            "spate_consumer_group_lag",
            &[
                ("group", "billing"),
                ("topic", "ledger"),
                ("partition", "1")
            ]
        ),
        expected_lag as f64
    );
}

#[test]
fn bad_http_gets_its_status_and_the_listener_keeps_serving() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        ..BrokerOptions::default()
    });
    let admin = broker.admin_address();
    let (status, headers, _) = http(
        admin,
        "POST /v1/topics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "GET, HEAD");
    let (status, _, _) = get(admin, "/nowhere");
    assert_eq!(status, 404);
    let (status, _, _) = http(admin, "\x00\x01 not http\r\n\r\n");
    assert_eq!(status, 400);
    let huge = format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
    let (status, _, _) = http(admin, &huge);
    assert_eq!(status, 431);
    // HEAD: the head of the answer, no body.
    let (status, headers, body) = http(admin, "HEAD /v1/health HTTP/1.1\r\n\r\n");
    assert_eq!(status, 200);
    assert!(body.is_empty());
    assert!(headers["content-length"].parse::<usize>().unwrap() > 0);
    // A client that connects and says nothing does not block the others.
    let _silent = TcpStream::connect(admin).unwrap();
    let (status, _, _) = get(admin, "/v1/health");
    assert_eq!(status, 200);
}

#[test]
fn a_broker_started_without_metrics_counts_nothing_and_still_serves_the_views() {
    let broker = Broker::start(BrokerOptions {
        shards: 1,
        arguments: vec!["--metrics".into(), "false".into()],
        ..BrokerOptions::default()
    });
    let mut client = TestClient::connect(broker.address());
    client.create_topic("quiet", 1, &[]);
    let sent = produce_known_batches(&mut client, "quiet", 1, 3);
    let samples = scrape(&broker);
    assert_eq!(
        sum(
            &samples,
            "spate_partition_produced_bytes_total",
            &[("topic", "quiet")]
        ),
        0.0
    );
    assert_eq!(sum(&samples, "spate_requests_total", &[]), 0.0);
    // Offsets are state, not counters: still reported.
    assert_eq!(
        sum(
            &samples,
            "spate_partition_high_watermark",
            &[("topic", "quiet")]
        ),
        sent[0].1 as f64
    );
    let (_, about) = get_json(broker.admin_address(), "/v1/broker");
    assert_eq!(about["metrics"], false);
}

#[test]
fn the_admin_listener_can_be_turned_off() {
    let mut broker = Broker::start(BrokerOptions {
        shards: 1,
        arguments: vec!["--admin-listen".into(), "none".into()],
        ..BrokerOptions::default()
    });
    // The broker serves its clients and says no admin listener runs.
    let mut client = TestClient::connect(broker.address());
    client.create_topic("plain", 1, &[]);
    let log = broker.wait_for_log_line("broker ready");
    let ready = log
        .iter()
        .find(|line| line.contains("broker ready"))
        .unwrap();
    assert!(ready.contains("admin_address=none"), "{ready}");
}

/// Every metric name (`spate_...`) in the PromQL of the Grafana dashboard: each panel's
/// targets (rows' nested panels included) and each template variable's query.
fn dashboard_metric_names(dashboard: &serde_json::Value) -> BTreeMap<String, Vec<String>> {
    fn expressions(panel: &serde_json::Value, found: &mut Vec<(String, String)>) {
        let title = panel["title"].as_str().unwrap_or("untitled").to_string();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"]
                .as_str()
                .expect("every target has a PromQL expr");
            found.push((title.clone(), expr.to_string()));
        }
        for nested in panel["panels"].as_array().into_iter().flatten() {
            expressions(nested, found);
        }
    }
    let mut found = Vec::new();
    for panel in dashboard["panels"].as_array().expect("a panels list") {
        expressions(panel, &mut found);
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        if let Some(query) = variable["query"]["query"].as_str() {
            let name = format!("variable {}", variable["name"]);
            found.push((name, query.to_string()));
        }
    }
    let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (title, expr) in found {
        let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
        let mut rest = expr.as_str();
        while let Some(start) = rest.find("spate_") {
            // A name begins where the character before it cannot continue one.
            let preceded = rest[..start].chars().next_back().is_some_and(is_name);
            let tail = &rest[start..];
            let end = tail.find(|c: char| !is_name(c)).unwrap_or(tail.len());
            if !preceded {
                names
                    .entry(tail[..end].to_string())
                    .or_default()
                    .push(title.clone());
            }
            rest = &tail[end..];
        }
    }
    names
}

#[test]
fn every_metric_the_grafana_dashboard_uses_is_exported() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../tuning/grafana-spate.json");
    let text = std::fs::read_to_string(path).expect("read tuning/grafana-spate.json");
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("dashboard JSON");
    assert_eq!(
        dashboard["templating"]["list"][0]["name"], "DS_PROMETHEUS",
        "the data source is a variable, so the dashboard imports into any Grafana"
    );
    let names = dashboard_metric_names(&dashboard);
    assert!(names.len() >= 30, "the dashboard's metrics: {names:?}");

    // Every family gets samples: traffic both ways, a Kafka connection, a group's commit.
    let broker = Broker::start(BrokerOptions {
        shards: 2,
        ..BrokerOptions::default()
    });
    wait_until_ready(&broker);
    let mut client = TestClient::connect(broker.address());
    client.create_topic("dashboard", 2, &[]);
    let sent = produce_known_batches(&mut client, "dashboard", 2, 3);
    assert_eq!(client.fetch_all("dashboard", 0, 0).len() as u64, sent[0].1);
    let response: native::OffsetCommitResponse = client.call(&native::OffsetCommitRequest {
        group_id: "viewers".into(),
        generation_id: native::GENERATION_NONE,
        member_id: String::new(),
        group_instance_id: None,
        topics: vec![native::TopicPartitions {
            name: "dashboard".into(),
            partitions: vec![native::OffsetCommitPartition {
                partition: 0,
                committed_offset: 1,
                committed_metadata: None,
            }],
        }],
    });
    assert_eq!(response.topics[0].partitions[0].error_code, ErrorCode::None);
    let _kafka = KafkaTestClient::connect(broker.kafka_address());

    let exported: std::collections::BTreeSet<String> = scrape(&broker)
        .into_iter()
        .map(|sample| sample.name)
        .collect();
    // A name the dashboard uses is a series, or a family whose series carry a suffix.
    let missing: Vec<String> = names
        .iter()
        .filter(|(name, _)| {
            !["", "_total", "_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| exported.contains(&format!("{name}{suffix}")))
        })
        .map(|(name, panels)| format!("{name} (in {panels:?})"))
        .collect();
    assert!(
        missing.is_empty(),
        "tuning/grafana-spate.json uses metrics the broker does not export: {missing:?}\n\
         exported: {exported:?}"
    );
}
