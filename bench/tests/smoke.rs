//! Smoke runs of every workload of the real `spate-bench` binary, a few seconds each, against a
//! spawned `spate-broker` (and `redis-server` for the comparison runs): checks that each run
//! finishes, exits 0 and writes JSON of the shape the benchmark issue fixes. Timing is never
//! checked here (speed is measured by running the harness, not by tests).
//!
//! Needs `redis-server` on PATH (Debian: `apt-get install -y redis-server`). With
//! `--features kafka`, the kafka driver runs too (against the broker's Kafka listener), and the
//! apache-kafka drivers against Apache Kafka (`bash bench/scripts/apache-kafka-install.sh`
//! installs a JDK and its jars first). Set
//! `SPATE_BENCH_BROKER_BINARY` to use an already built broker instead of building one. One run
//! logs in with SASL to a broker the test starts itself (with its user made offline).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Longest one smoke run may take (debug builds on a busy 2-core machine).
const RUN_TIMEOUT: Duration = Duration::from_secs(240);

/// One run at a time: they would otherwise fight over the same two cores and the disk.
static SERIAL: Mutex<()> = Mutex::new(());

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The broker binary: `SPATE_BENCH_BROKER_BINARY` when set, else built once with the same
/// cargo, profile and target directory.
fn broker_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY
        .get_or_init(|| {
            if let Some(path) = std::env::var_os("SPATE_BENCH_BROKER_BINARY") {
                return PathBuf::from(path);
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
            let release = !cfg!(debug_assertions);
            let mut command = Command::new(cargo);
            command
                .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
                .args(["build", "-p", "spate-broker", "--bin", "spate-broker"]);
            if release {
                command.arg("--release");
            }
            let status = command.status().expect("run cargo build for spate-broker");
            assert!(status.success(), "building spate-broker failed");
            target_dir()
                .join(if release { "release" } else { "debug" })
                .join("spate-broker")
        })
        .clone()
}

/// A data directory on a real disk (/tmp may be a tmpfs, which has no O_DIRECT).
fn data_dir() -> tempfile::TempDir {
    let root = target_dir().join("spate-bench-smoke");
    std::fs::create_dir_all(&root).expect("create the smoke data root");
    tempfile::tempdir_in(root).expect("create a smoke data directory")
}

/// Runs `spate-bench` with `arguments` plus `--json FILE`, and returns the parsed JSON.
fn run_bench(arguments: &[&str]) -> Value {
    let (success, document, printed) = run_bench_as_it_ends(arguments);
    assert!(
        success,
        "spate-bench {arguments:?} failed; it printed:\n{printed}"
    );
    document
}

/// Runs `spate-bench` with `arguments` plus `--json FILE`: whether it exited 0, the parsed JSON
/// and what it printed.
fn run_bench_as_it_ends(arguments: &[&str]) -> (bool, Value, String) {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = data_dir();
    let json_path = directory.path().join("out.json");
    let mut command = Command::new(env!("CARGO_BIN_EXE_spate-bench"));
    command
        .args(arguments)
        .arg("--json")
        .arg(&json_path)
        .arg("--data-dir")
        .arg(directory.path());
    if arguments.contains(&"--spawn-broker") {
        command.arg("--broker-binary").arg(broker_binary());
    }
    let output_path = directory.path().join("output.txt");
    let output = std::fs::File::create(&output_path).expect("create the output file");
    command
        .stdout(output.try_clone().expect("clone the output file"))
        .stderr(output);
    let mut child = command.spawn().expect("start spate-bench");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for spate-bench") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
            panic!(
                "spate-bench {arguments:?} ran longer than {RUN_TIMEOUT:?}; it printed:\n{printed}"
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let printed = std::fs::read_to_string(&output_path).unwrap_or_default();
    let text = std::fs::read_to_string(&json_path).unwrap_or_else(|_| {
        panic!("the JSON file was not written; spate-bench printed:\n{printed}")
    });
    let document = serde_json::from_str(&text).expect("the JSON file parses");
    (status.success(), document, printed)
}

fn number_at(document: &Value, path: &[&str]) -> Option<f64> {
    path.iter()
        .try_fold(document, |value, key| value.get(key))
        .and_then(Value::as_f64)
}

/// The shape the issue fixes; `with_limits` says whether the limits (and so the ratio) must be
/// numbers rather than null.
fn assert_shape(document: &Value, workload: &str, with_limits: bool) {
    assert_eq!(document["workload"], workload, "{document:#}");
    assert!(document["config"].is_object(), "config: {document:#}");
    for path in [
        &["throughput_bytes_per_sec"][..],
        &["records_per_sec"],
        &["latency_us", "p50"],
        &["latency_us", "p90"],
        &["latency_us", "p99"],
        &["latency_us", "p999"],
        &["latency_us", "p9999"],
        &["latency_us", "max"],
    ] {
        assert!(
            number_at(document, path).is_some(),
            "{path:?} in {document:#}"
        );
    }
    for key in [
        "loopback_bytes_per_sec",
        "loopback_rtt_us",
        "disk_direct_write_bytes_per_sec",
    ] {
        let value = &document["limits"][key];
        if with_limits {
            assert!(
                value.as_f64().is_some_and(|value| value > 0.0),
                "limits.{key}: {document:#}"
            );
        } else {
            assert!(value.is_null(), "limits.{key} should be null: {document:#}");
        }
    }
    let ratio = &document["ratios"]["throughput_vs_limit"];
    assert!(
        ratio.is_f64() == with_limits && (with_limits || ratio.is_null()),
        "ratios.throughput_vs_limit: {document:#}"
    );
    assert!(
        number_at(document, &["throughput_bytes_per_sec"]).is_some_and(|value| value > 0.0),
        "no throughput: {document:#}"
    );
}

/// Flags that keep limit measurements short.
const QUICK_LIMITS: [&str; 10] = [
    "--loopback-duration-ms",
    "300",
    "--rtt-round-trips",
    "500",
    "--disk-duration-ms",
    "300",
    "--disk-read-file-bytes",
    "16777216",
    "--limit-rounds",
    "1",
];

#[test]
fn limits_alone_report_every_ceiling() {
    let mut arguments = vec!["limits"];
    arguments.extend(QUICK_LIMITS);
    let document = run_bench(&arguments);
    assert_eq!(document["workload"], "limits");
    for key in [
        "loopback_bytes_per_sec",
        "loopback_rtt_us",
        "disk_direct_write_bytes_per_sec",
        "disk_direct_read_bytes_per_sec",
    ] {
        assert!(
            document["limits"][key]
                .as_f64()
                .is_some_and(|value| value > 0.0),
            "limits.{key}: {document:#}"
        );
    }
    let depths: Vec<u64> = document["limits"]["disk_reads"]
        .as_array()
        .expect("a read figure per queue depth")
        .iter()
        .filter_map(|read| read["queue_depth"].as_u64())
        .collect();
    assert_eq!(depths, [1, 8], "{document:#}");
}

#[test]
fn produce_with_limits_writes_the_full_shape() {
    let mut arguments = vec![
        "produce",
        "--spawn-broker",
        "--with-limits",
        "--duration-ms",
        "1500",
        "--warmup-ms",
        "300",
    ];
    arguments.extend(QUICK_LIMITS);
    let document = run_bench(&arguments);
    assert_shape(&document, "produce", true);
    // 300 ms limit streams are warm-ups: the ratio is reported, and marked.
    assert!(
        document["ratios"]["throughput_vs_limit_unreliable"]
            .as_str()
            .is_some_and(|why| why.contains("300 ms")),
        "{document:#}"
    );
    assert_eq!(document["latency_us"]["kind"], "produce_to_ack");
    assert_eq!(document["errors"], 0);
    // The machine's cores are recorded as the process found them, before the harness moved
    // itself onto the load cores: they include the broker's.
    let available = document["config"]["machine"]["available_cores"]
        .as_array()
        .expect("available cores are listed");
    for core in document["config"]["placement"]["broker_cores"]
        .as_array()
        .expect("broker cores are listed")
    {
        assert!(available.contains(core), "{document:#}");
    }
}

#[test]
fn produce_against_redis_lists_redis_as_a_peer() {
    let document = run_bench(&[
        "produce",
        "--spawn-broker",
        "--driver",
        "spate,redis",
        "--acks",
        "all",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
        "--batch-bytes",
        "65536",
    ]);
    assert_shape(&document, "produce", false);
    assert_eq!(document["driver"], "spate");
    assert_eq!(document["peers"][0]["driver"], "redis");
    assert!(
        number_at(&document["peers"][0], &["throughput_bytes_per_sec"]).is_some_and(|v| v > 0.0),
        "{document:#}"
    );
    assert!(number_at(&document, &["ratios", "throughput_vs_redis"]).is_some());
}

#[test]
fn a_driver_that_cannot_start_keeps_the_results_of_those_that_ran() {
    let (success, document, printed) = run_bench_as_it_ends(&[
        "produce",
        "--spawn-broker",
        "--driver",
        "spate,redis",
        "--redis-binary",
        "/nonexistent/redis-server",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
    ]);
    assert!(!success, "a driver failed, so the run fails: {printed}");
    assert_shape(&document, "produce", false);
    assert_eq!(document["driver"], "spate");
    assert!(
        document["config"]["notes"]
            .as_array()
            .is_some_and(|notes| notes.iter().any(|note| note
                .as_str()
                .is_some_and(|note| note.starts_with("redis did not run")))),
        "{document:#}"
    );
    assert!(
        printed.contains("throughput"),
        "the table is printed: {printed}"
    );
}

#[test]
fn consume_drains_every_prefilled_record() {
    let mut arguments = vec![
        "consume",
        "--spawn-broker",
        "--with-limits",
        "--message-count",
        "20000",
        "--partitions",
        "2",
        "--consumers",
        "2",
    ];
    arguments.extend(QUICK_LIMITS);
    let document = run_bench(&arguments);
    assert_shape(&document, "consume", true);
    // A drain from disk is bounded by min(loopback, disk read); both ratios are reported.
    assert_eq!(document["ratios"]["limit"], "loopback_or_disk_read");
    assert!(number_at(&document, &["ratios", "throughput_vs_disk_read"]).is_some());
    assert!(number_at(&document, &["ratios", "throughput_vs_loopback"]).is_some());
    assert_eq!(document["measured_records"], 20000, "{document:#}");
    assert_eq!(document["errors"], 0);
}

#[test]
fn e2e_at_a_fixed_rate_receives_every_record_from_both_drivers() {
    let document = run_bench(&[
        "e2e",
        "--spawn-broker",
        "--driver",
        "spate,redis",
        "--rate",
        "2000",
        "--duration-ms",
        "1500",
        "--warmup-ms",
        "300",
        "--linger-us",
        "100",
    ]);
    assert_shape(&document, "e2e", false);
    assert_eq!(document["latency_us"]["kind"], "end_to_end_corrected");
    for figures in [&document, &document["peers"][0]] {
        let details = &figures["end_to_end"];
        assert_eq!(details["missing_records"], 0, "{document:#}");
        assert!(details["sent_records"]
            .as_u64()
            .is_some_and(|sent| sent > 0));
        assert_eq!(details["target_records_per_sec"], 2000.0);
        // The default pacer, and what the producing thread cost.
        assert_eq!(details["load"]["pacer"], "timerfd", "{document:#}");
        assert!(number_at(details, &["load", "pacer_cpu_percent"]).is_some());
    }
}

#[test]
fn e2e_at_a_share_of_the_maximum_calibrates_the_pipeline_in_closed_loop_first() {
    let document = run_bench(&[
        "e2e",
        "--spawn-broker",
        "--rate-percent-of-max",
        "10",
        "--calibration-ms",
        "800",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
        "--message-bytes",
        "256",
        "--pacer",
        "sleep",
    ]);
    assert_shape(&document, "e2e", false);
    let details = &document["end_to_end"];
    let maximum = details["calibration_max_records_per_sec"]
        .as_f64()
        .expect("the calibration's maximum is reported");
    assert!(maximum > 0.0, "{document:#}");
    assert_eq!(details["calibration_percent_of_max"], 10.0);
    assert_eq!(details["load"]["pacer"], "sleep", "{document:#}");
    assert!(details["load"]["pacer_wake_us"].is_null(), "{document:#}");
    let target = details["target_records_per_sec"]
        .as_f64()
        .expect("a target");
    assert!(
        (target - maximum * 0.10).abs() < 1e-6 * maximum,
        "target {target} is not 10% of {maximum}"
    );
    assert_eq!(details["missing_records"], 0, "{document:#}");
    assert_eq!(document["errors"], 0);
}

#[test]
fn a_workload_file_sets_the_run_and_flags_override_it() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/produce-leader-1kib.toml");
    let document = run_bench(&[
        "produce",
        "--spawn-broker",
        "--workload",
        file.to_str().expect("UTF-8 path"),
        "--duration-ms",
        "800",
        "--warmup-ms",
        "200",
    ]);
    assert_shape(&document, "produce", false);
    assert_eq!(document["config"]["message_bytes"], 1024);
    assert_eq!(document["config"]["acks"], "leader");
    assert_eq!(document["config"]["stop"]["duration_ms"], 800);
}

#[test]
fn round_trips_send_one_record_at_a_time_and_time_each() {
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("workloads/produce-round-trip.toml");
    let document = run_bench(&[
        "produce",
        "--spawn-broker",
        "--workload",
        file.to_str().expect("UTF-8 path"),
        "--duration-ms",
        "600",
        "--warmup-ms",
        "100",
    ]);
    assert_shape(&document, "produce", false);
    assert_eq!(document["config"]["inflight_records_max"], 1);
    assert_eq!(document["config"]["linger_us"], 0);
    assert_eq!(document["errors"], 0, "{document:#}");
    // Every acknowledged record has its own latency.
    assert_eq!(
        document["latency_us"]["count"], document["measured_records"],
        "{document:#}"
    );
}

/// `bench/scripts/scaling.sh` with one shard: the script finds both binaries in one directory,
/// runs the 100-byte workload and writes its table and JSON.
#[test]
fn the_scaling_script_reports_records_per_second_per_shard_count() {
    let broker = broker_binary();
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let directory = data_dir();
    let binaries = directory.path().join("bin");
    std::fs::create_dir(&binaries).expect("a binaries directory");
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_spate-bench"),
        binaries.join("spate-bench"),
    )
    .expect("link spate-bench");
    std::os::unix::fs::symlink(&broker, binaries.join("spate-broker")).expect("link the broker");
    let out = directory.path().join("out");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/scaling.sh");
    let output = Command::new("bash")
        .arg(&script)
        .arg("1")
        .env("SPATE_BENCH_BIN", &binaries)
        .env("SPATE_BENCH_OUT", &out)
        .env("SPATE_BENCH_DATA_DIR", directory.path())
        .env("SPATE_BENCH_DURATION_MS", "500")
        .env("SPATE_BENCH_WARMUP_MS", "100")
        .env("SPATE_BENCH_PARTITIONS_PER_SHARD", "4")
        .output()
        .expect("run scaling.sh");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{printed}");
    assert!(printed.contains("records/s"), "{printed}");
    let text = std::fs::read_to_string(out.join("scaling.json")).expect("scaling.json");
    let document: Value = serde_json::from_str(&text).expect("scaling.json parses");
    let run = &document["runs"][0];
    assert_eq!(run["shards"], 1, "{document:#}");
    assert_eq!(run["partitions"], 4, "{document:#}");
    assert!(
        run["records_per_sec"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0),
        "{document:#}"
    );
    assert_eq!(run["ratio_to_first"], 1.0, "{document:#}");
}

#[test]
fn e2e_beside_an_idle_crowd_reports_both_runs_and_the_cost_of_each_idle_connection() {
    let document = run_bench(&[
        "e2e",
        "--spawn-broker",
        "--rate",
        "2000",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
        "--linger-us",
        "100",
        "--idle-connections",
        "50",
        "--idle-measure-ms",
        "300",
    ]);
    assert_shape(&document, "e2e", false);
    let crowd = &document["idle_connections"];
    assert_eq!(crowd["connections"], 50, "{document:#}");
    for path in [
        &["resident_bytes_per_connection"][..],
        &["descriptors_per_connection"],
        &["without", "cpu_percent_of_a_core"],
        &["with", "cpu_percent_of_a_core"],
        &["with", "sample", "resident_bytes"],
        &["with_crowd", "end_to_end", "produce_to_ack_us", "p99"],
        &["with_crowd", "latency", "p99"],
    ] {
        assert!(
            number_at(crowd, path).is_some(),
            "idle_connections.{path:?} in {document:#}"
        );
    }
    // Both runs: the one without the crowd is the document's own figures.
    assert!(number_at(&document, &["end_to_end", "produce_to_ack_us", "p99"]).is_some());
    assert_eq!(crowd["with_crowd"]["end_to_end"]["missing_records"], 0);
}

/// Spate over its Kafka listener through librdkafka, beside the native client: produce,
/// consume and e2e each carry every record through both (built with `--features kafka`).
#[cfg(feature = "kafka")]
#[test]
fn the_kafka_driver_runs_every_workload_beside_the_native_one() {
    let produce = run_bench(&[
        "produce",
        "--spawn-broker",
        "--driver",
        "spate,kafka",
        "--duration-ms",
        "1500",
        "--warmup-ms",
        "300",
        "--partitions",
        "2",
        "--acks",
        "all",
    ]);
    assert_shape(&produce, "produce", false);
    assert_eq!(produce["peers"][0]["driver"], "kafka", "{produce:#}");
    assert_eq!(produce["peers"][0]["errors"], 0, "{produce:#}");
    assert!(
        produce["peers"][0]["records_per_sec"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0),
        "{produce:#}"
    );
    assert!(number_at(&produce, &["ratios", "throughput_vs_kafka"]).is_some());
    assert!(number_at(&produce, &["ratios", "latency_p99_vs_kafka"]).is_some());

    let consume = run_bench(&[
        "consume",
        "--spawn-broker",
        "--driver",
        "spate,kafka",
        "--message-count",
        "20000",
        "--partitions",
        "2",
        "--consumers",
        "2",
    ]);
    assert_eq!(consume["peers"][0]["driver"], "kafka", "{consume:#}");
    assert_eq!(
        consume["peers"][0]["measured_records"], 20000,
        "{consume:#}"
    );
    assert_eq!(consume["peers"][0]["errors"], 0, "{consume:#}");

    let e2e = run_bench(&[
        "e2e",
        "--spawn-broker",
        "--driver",
        "spate,kafka",
        "--rate",
        "2000",
        "--duration-ms",
        "1500",
        "--warmup-ms",
        "300",
    ]);
    let details = &e2e["peers"][0]["end_to_end"];
    assert_eq!(details["missing_records"], 0, "{e2e:#}");
    assert!(details["sent_records"]
        .as_u64()
        .is_some_and(|sent| sent > 0));
}

/// Apache Kafka (spawned from the jars `bench/scripts/apache-kafka-install.sh` resolves) at
/// both durability settings, each a fresh single KRaft node: produce, and e2e at a share of each
/// one's own calibrated maximum; every row says its promise.
#[cfg(feature = "kafka")]
#[test]
fn the_apache_kafka_driver_runs_produce_and_e2e_at_both_promises() {
    let produce = run_bench(&[
        "produce",
        "--spawn-broker",
        "--driver",
        "apache-kafka,apache-kafka-flush",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
        "--partitions",
        "2",
        "--acks",
        "all",
    ]);
    assert_shape(&produce, "produce", false);
    assert_eq!(produce["driver"], "apache-kafka", "{produce:#}");
    assert_eq!(produce["promise"], "page cache", "{produce:#}");
    assert_eq!(produce["load"]["mode"], "burst", "{produce:#}");
    assert_eq!(produce["errors"], 0, "{produce:#}");
    let flush = &produce["peers"][0];
    assert_eq!(flush["driver"], "apache-kafka-flush", "{produce:#}");
    assert_eq!(flush["promise"], "fsync before ack", "{produce:#}");
    assert_eq!(flush["errors"], 0, "{produce:#}");
    assert!(
        number_at(flush, &["records_per_sec"]).is_some_and(|rate| rate > 0.0),
        "{produce:#}"
    );
    assert!(number_at(&produce, &["ratios", "throughput_vs_apache_kafka_flush"]).is_some());
    assert!(
        produce["config"]["targets"]
            .as_array()
            .is_some_and(|targets| targets.iter().all(|target| target["spawned"] == true)),
        "{produce:#}"
    );

    let e2e = run_bench(&[
        "e2e",
        "--spawn-broker",
        "--driver",
        "apache-kafka-flush,apache-kafka",
        "--acks",
        "all",
        "--rate-percent-of-max",
        "10",
        "--calibration-ms",
        "800",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
        "--message-bytes",
        "256",
    ]);
    assert_shape(&e2e, "e2e", false);
    assert_eq!(e2e["promise"], "fsync before ack", "{e2e:#}");
    assert_eq!(e2e["peers"][0]["promise"], "page cache", "{e2e:#}");
    // Each system is calibrated on its own: its target is its own maximum's share.
    for figures in [&e2e, &e2e["peers"][0]] {
        let details = &figures["end_to_end"];
        let maximum = details["calibration_max_records_per_sec"]
            .as_f64()
            .expect("each system's own maximum is reported");
        let target = details["target_records_per_sec"]
            .as_f64()
            .expect("a target");
        assert!(
            maximum > 0.0 && (target - maximum * 0.10).abs() < 1e-6 * maximum,
            "target {target} is not 10% of {maximum}: {e2e:#}"
        );
        assert_eq!(details["missing_records"], 0, "{e2e:#}");
    }
}

#[test]
fn compaction_latency_probes_idle_compacting_and_idle_again() {
    let broker = broker_binary();
    let broker = broker.to_str().expect("a UTF-8 path");
    let document = run_bench(&[
        "compaction-latency",
        "--broker-binary",
        broker,
        "--fill-bytes",
        "8388608",
        "--segment-bytes",
        "1048576",
        "--probe-ms",
        "300",
        // Slow enough that the pass outlasts a few probes.
        "--compaction-io-bytes-per-second",
        "8388608",
    ]);
    assert_eq!(document["workload"], "compaction-latency");
    let phases = document["outcome"]["phases"].as_array().expect("phases");
    let names: Vec<&str> = phases
        .iter()
        .map(|phase| phase["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["idle", "compacting", "idle after"]);
    for phase in phases {
        assert!(
            phase["latency_us"]["p99"].as_f64().is_some(),
            "{} has latencies: {phase}",
            phase["name"]
        );
    }
    let line = document["outcome"]["pass_log_line"]
        .as_str()
        .expect("the pass's line");
    assert!(line.contains("partition compacted"), "{line}");
}

/// `--cluster 3`: three local brokers, an RF=3 run and an RF=1 run, each acknowledging records
/// (a follower's bytes show as the leader's sends), then one kill -9 of a leader timed to the
/// next acknowledged write.
#[test]
fn produce_on_a_local_cluster_reports_both_replication_factors_and_a_failover() {
    let broker = broker_binary();
    let broker = broker.to_str().expect("a UTF-8 path");
    let (_, document, printed) = run_bench_as_it_ends(&[
        "produce",
        "--cluster",
        "3",
        "--failover-rounds",
        "1",
        "--duration-ms",
        "1500",
        "--broker-binary",
        broker,
    ]);
    assert_eq!(document["workload"], "cluster-produce", "{printed}");
    let runs = document["runs"].as_array().expect("runs");
    assert_eq!(runs.len(), 2, "{printed}");
    for (run, factor) in runs.iter().zip([3, 1]) {
        assert_eq!(run["replication_factor"], factor, "{printed}");
        assert!(
            number_at(&run["outcome"], &["records_per_sec"]).is_some_and(|value| value > 0.0),
            "RF={factor} acknowledged nothing: {printed}"
        );
    }
    let leader_sent: f64 = runs[0]["per_broker"]
        .as_object()
        .expect("per-broker counters")
        .values()
        .filter_map(|counters| counters["socket_sent_bytes"].as_f64())
        .sum();
    assert!(
        leader_sent > 0.0,
        "RF=3: no broker sent replica bytes: {printed}"
    );
    let rounds = document["failover"]["rounds"].as_array().expect("rounds");
    assert_eq!(rounds.len(), 1, "{printed}");
    assert!(
        rounds[0]["failover_ms"].as_f64().is_some_and(|ms| ms > 0.0),
        "{printed}"
    );
}

/// A broker this test starts itself, on `data_dir`, with SCRAM-SHA-512 required on its native
/// listener (spate-bench's own spawning makes a fresh data directory, without users). Killed on
/// drop.
struct SecuredBroker {
    child: std::process::Child,
    address: String,
}

impl SecuredBroker {
    fn start(data_dir: &Path, user: &str, password: &str) -> SecuredBroker {
        use std::io::BufRead;
        let created = Command::new(broker_binary())
            .args(["user", "create", "--data-dir"])
            .arg(data_dir)
            .args(["--name", user, "--password", password])
            .args(["--mechanism", "SCRAM-SHA-512"])
            .output()
            .expect("run spate-broker user create");
        assert!(created.status.success(), "{created:?}");
        let mut child = Command::new(broker_binary())
            .arg("--data-dir")
            .arg(data_dir)
            .args(["--listen", "127.0.0.1:0", "--kafka-listen", "127.0.0.1:0"])
            .args(["--admin-listen", "127.0.0.1:0", "--shards", "1"])
            .args(["--sasl-mechanisms", "SCRAM-SHA-512"])
            .args(["--super-users", &format!("User:{user}")])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("start spate-broker");
        let stderr = child.stderr.take().expect("stderr was piped");
        let (sender, receiver) = std::sync::mpsc::channel();
        // Reads on to the end, so that the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(start) = line.find(" address=") {
                    let rest = &line[start + " address=".len()..];
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    let _ = sender.send(rest[..end].to_string());
                }
            }
        });
        let address = receiver
            .recv_timeout(Duration::from_secs(60))
            .expect("the broker's ready line");
        SecuredBroker { child, address }
    }
}

impl Drop for SecuredBroker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn produce_logs_in_with_sasl_and_a_wrong_password_fails_the_run() {
    let directory = data_dir();
    let broker = SecuredBroker::start(directory.path(), "bench", "bench-password");
    let document = run_bench(&[
        "produce",
        "--broker",
        &broker.address,
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        "bench",
        "--sasl-password",
        "bench-password",
        "--duration-ms",
        "1000",
        "--warmup-ms",
        "200",
    ]);
    assert_eq!(document["errors"], 0, "{document:#}");
    assert!(number_at(&document, &["records_per_sec"]).is_some_and(|rate| rate > 0.0));
    let target = &document["config"]["targets"][0];
    assert_eq!(target["sasl_mechanism"], "SCRAM-SHA-512", "{document:#}");
    assert_eq!(target["tls"], false, "{document:#}");
    assert!(
        !document.to_string().contains("bench-password"),
        "the report never holds the password"
    );

    // A wrong password: the login is refused, and the run fails saying so.
    let refused = Command::new(env!("CARGO_BIN_EXE_spate-bench"))
        .args(["produce", "--broker", &broker.address])
        .args([
            "--sasl-mechanism",
            "SCRAM-SHA-512",
            "--sasl-username",
            "bench",
        ])
        .args(["--duration-ms", "500", "--no-progress"])
        .env("SPATE_BENCH_SASL_PASSWORD", "not-the-password")
        .output()
        .expect("run spate-bench");
    assert!(!refused.status.success(), "{refused:?}");
    let printed = String::from_utf8_lossy(&refused.stderr).to_lowercase();
    assert!(printed.contains("authentic"), "{printed}");
}
