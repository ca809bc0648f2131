//! Stateful failover with the real Java Kafka client (kafka-clients 4.1.1) on a 3-broker
//! cluster (issue 14): a consumer group's committed offsets survive the `kill -9` of the broker
//! that coordinates the group (it leads the group's `__consumer_offsets` partition), and a
//! transactional producer commits a transaction across the `kill -9` of its transaction
//! coordinator's broker, with exactly-once output for a read_committed consumer.
//!
//! The Java program is `spate.compat.txn.ClusterFailover` in `tests/compat/java-transactions`
//! (compiled here with `mvn -o`, offline: `.ci/run` installs the JDK and Maven and fills `~/.m2`
//! through that folder's `install.sh`). It decides when to kill (once the group is stable, once
//! the transaction's records are acknowledged), asks this test on stdout (`KILL <node>`,
//! `RESTART <node>`), and waits on stdin for the answer; its checks and figures (`FIGURE` lines)
//! are its own, and it exits 0 only when both scenarios passed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use spate_tests::cluster::{Cluster, ClusterOptions, NodeId, FORMATION_TIMEOUT};
use spate_tests::java;

/// The whole Java run: two scenarios, two kills, one restart, on a loaded 2-core machine.
const JAVA_TIMEOUT: Duration = Duration::from_secs(300);
/// A restarted broker catching up with every partition it holds.
const CATCH_UP_TIMEOUT: Duration = Duration::from_secs(120);
/// Few `__consumer_offsets` partitions: the restart waits for each to be in sync.
const OFFSETS_TOPIC_PARTITIONS: &str = "6";

/// Every line a child writes, as it comes, with the time it came.
fn lines_of(stream: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if sender.send(line).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Waits until every replica of every topic the cluster holds (the internal ones too) is in
/// sync again, so that the next kill leaves every partition a majority.
fn wait_all_in_sync(cluster: &Cluster) {
    let metadata = cluster
        .ids()
        .into_iter()
        .find_map(|id| cluster.metadata_from(id, None))
        .expect("some broker answers Metadata");
    for topic in &metadata.topics {
        let partitions = topic.partitions.len() as u32;
        cluster.wait_in_sync(&topic.name, partitions, CATCH_UP_TIMEOUT);
    }
}

fn parse_node(line: &str, command: &str) -> NodeId {
    line[command.len()..]
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("the Java program asked {line:?}: not a node id"))
}

/// Stops the Java program and panics with what it and the brokers said.
fn fail(
    cluster: &mut Cluster,
    java: &mut Child,
    output: &[String],
    errors: &mpsc::Receiver<String>,
    why: &str,
) -> ! {
    let _ = java.kill();
    let _ = java.wait();
    let stderr: Vec<String> = errors.try_iter().collect();
    let tail = &stderr[stderr.len().saturating_sub(60)..];
    let mut brokers = String::new();
    for id in cluster.ids() {
        let log = cluster.broker(id).drain_log();
        let notable: Vec<&String> = log
            .iter()
            .filter(|line| {
                ["WARN", "ERROR", "isr", "ISR", "fence", "leader", "follow"]
                    .iter()
                    .any(|word| line.contains(word))
            })
            .collect();
        let notable = &notable[notable.len().saturating_sub(80)..];
        let metadata = cluster.metadata_from(id, None);
        brokers.push_str(&format!(
            "--- broker {id}: metadata {metadata:?}\n--- its last warnings and replication lines:\n"
        ));
        for line in notable {
            brokers.push_str(line);
            brokers.push('\n');
        }
    }
    panic!(
        "{why}\n--- the Java program's output:\n{}\n--- the last lines of its stderr:\n{}\n{brokers}",
        output.join("\n"),
        tail.join("\n")
    );
}

#[test]
fn java_clients_keep_committed_offsets_and_transactions_across_coordinator_kills() {
    let classpath = java::compile(&java::project("java-transactions"));
    let mut cluster = Cluster::start(ClusterOptions {
        arguments: vec![
            "--offsets-topic-partitions".to_string(),
            OFFSETS_TOPIC_PARTITIONS.to_string(),
        ],
        ..ClusterOptions::default()
    });
    cluster.wait_formed(FORMATION_TIMEOUT);
    let scenarios: Vec<String> = std::env::var("SPATE_FAILOVER_SCENARIOS")
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_string)
        .collect();
    let scenario_count = if scenarios.is_empty() {
        2
    } else {
        scenarios.len()
    };
    let started = Instant::now();
    let mut java = Command::new("java")
        .args(["-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC"])
        .arg("-Dorg.slf4j.simpleLogger.defaultLogLevel=warn")
        .arg("-Dorg.slf4j.simpleLogger.showDateTime=true")
        .args(["-cp", &classpath, "spate.compat.txn.ClusterFailover"])
        // Both scenarios unless this names some (`group`, `transactions`), to run one alone.
        .args(&scenarios)
        .env("KAFKA_BOOTSTRAP", cluster.kafka_bootstrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start java");
    let mut control = java.stdin.take().unwrap();
    let output_lines = lines_of(java.stdout.take().unwrap());
    let error_lines = lines_of(java.stderr.take().unwrap());
    let mut output = Vec::new();
    let deadline = Instant::now() + JAVA_TIMEOUT;
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        let line = match output_lines.recv_timeout(remaining) {
            Ok(line) => line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => fail(
                &mut cluster,
                &mut java,
                &output,
                &error_lines,
                &format!("the Java program did not finish within {JAVA_TIMEOUT:?}"),
            ),
        };
        eprintln!("java: {line}");
        output.push(line.clone());
        let answer = if line.starts_with("KILL ") {
            let node = parse_node(&line, "KILL ");
            cluster.kill9(node);
            eprintln!(
                "test: broker {node} killed (kill -9) at {:.1} s",
                started.elapsed().as_secs_f64()
            );
            "KILLED"
        } else if line.starts_with("RESTART ") {
            let node = parse_node(&line, "RESTART ");
            cluster.restart(node);
            let restarted = Instant::now();
            wait_all_in_sync(&cluster);
            eprintln!(
                "test: broker {node} restarted; every replica in sync {:.1} s later",
                restarted.elapsed().as_secs_f64()
            );
            "RESTARTED"
        } else {
            continue;
        };
        if writeln!(control, "{answer}")
            .and_then(|()| control.flush())
            .is_err()
        {
            fail(
                &mut cluster,
                &mut java,
                &output,
                &error_lines,
                "the Java program stopped reading its answers",
            );
        }
    }
    let status = java.wait().expect("wait for java");
    let passed = format!("{scenario_count} passed, 0 failed");
    if !status.success() || output.last() != Some(&passed) {
        fail(
            &mut cluster,
            &mut java,
            &output,
            &error_lines,
            &format!("the Java program failed ({status})"),
        );
    }
    let figures: Vec<&String> = output
        .iter()
        .filter(|line| line.starts_with("FIGURE "))
        .collect();
    assert_eq!(
        figures.len(),
        2 * scenario_count,
        "two figures per scenario: {output:?}"
    );
    eprintln!(
        "{scenario_count} scenarios passed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
