//! Apache Kafka as a spawned system under test: a single node in KRaft mode (broker and
//! controller in one JVM), from the `kafka_2.13` jars that `bench/scripts/apache-kafka-install.sh`
//! resolves from Maven Central, with a fresh data directory under the harness's `--data-dir` and
//! every JVM thread pinned to the broker cores, as Spate's broker is.
//!
//! The JVM gets the settings of Kafka's own start scripts (`kafka-server-start.sh`'s heap,
//! `kafka-run-class.sh`'s performance options) and the broker Kafka's default server settings,
//! except what a single node needs (replication factor 1 for Kafka's internal topics). The
//! durability of each run is a topic config set by the driver (`driver::kafka`), not here. This
//! file starts and waits; stopping and removing the data are `target::SpawnedProcess`'s.

use std::collections::VecDeque;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::constants::APACHE_KAFKA_READY_TIMEOUT_MS;
use crate::target::{self, SpawnedProcess, TargetError};

/// The Kafka release the install script resolves (tests/compat/kafka-cli/pom.xml).
pub const APACHE_KAFKA_VERSION: &str = "4.1.1";

/// Where the install script writes the classpath (one line of jars joined by `:`), in this
/// source tree.
pub const CLASSPATH_FILE_DEFAULT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../tests/compat/kafka-cli/target/classpath.txt"
);

/// The JVM settings Kafka's start scripts use when nothing overrides them: the heap of
/// `kafka-server-start.sh` and the performance options of `kafka-run-class.sh`.
pub const JVM_OPTIONS: [&str; 8] = [
    "-Xmx1G",
    "-Xms1G",
    "-server",
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
];

/// A fixed cluster id (Kafka's base64url form of 16 bytes, "spate-bench-peer"): every data
/// directory is fresh, so no two clusters ever share one.
const CLUSTER_ID: &str = "c3BhdGUtYmVuY2gtcGVlcg";

/// What `kafka.Kafka` logs once the broker and controller serve.
const READY_LINE: &str = "Kafka Server started";

/// The `java` of `JAVA_HOME` when set (as Kafka's scripts choose), else the one on PATH.
pub fn java_binary() -> PathBuf {
    match std::env::var_os("JAVA_HOME") {
        Some(home) if !home.is_empty() => Path::new(&home).join("bin/java"),
        _ => PathBuf::from("java"),
    }
}

/// The jars of the classpath file the install script wrote.
pub fn read_classpath(path: &Path) -> Result<String, TargetError> {
    let missing = || TargetError::ApacheKafkaNotInstalled {
        path: path.to_path_buf(),
        version: APACHE_KAFKA_VERSION,
    };
    let text = std::fs::read_to_string(path).map_err(|_| missing())?;
    let classpath = text.trim();
    if classpath.is_empty() {
        return Err(missing());
    }
    Ok(classpath.to_string())
}

/// `server.properties` of a single KRaft node: Kafka's defaults but for the listeners, the
/// data directory and the internal topics' replication factor (one node).
pub fn server_properties(log_dir: &Path, kafka_port: u16, controller_port: u16) -> String {
    format!(
        "# Written by spate-bench: a single KRaft node; everything else is Kafka's default.\n\
         process.roles=broker,controller\n\
         node.id=1\n\
         controller.quorum.voters=1@127.0.0.1:{controller_port}\n\
         listeners=PLAINTEXT://127.0.0.1:{kafka_port},CONTROLLER://127.0.0.1:{controller_port}\n\
         advertised.listeners=PLAINTEXT://127.0.0.1:{kafka_port}\n\
         controller.listener.names=CONTROLLER\n\
         listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
         log.dirs={}\n\
         offsets.topic.replication.factor=1\n\
         share.coordinator.state.topic.replication.factor=1\n\
         share.coordinator.state.topic.min.isr=1\n\
         transaction.state.log.replication.factor=1\n\
         transaction.state.log.min.isr=1\n",
        log_dir.display()
    )
}

/// Starts Apache Kafka with a fresh data directory under `data_root`, pinned to `cores`, on
/// ports it picks; waits until it logs that it serves and its port accepts connections.
pub fn spawn_apache_kafka(
    classpath_file: &Path,
    cores: &[usize],
    data_root: &Path,
) -> Result<SpawnedProcess, TargetError> {
    let classpath = read_classpath(classpath_file)?;
    let java = java_binary();
    let data_dir = target::fresh_data_dir(data_root, "spate-bench-apache-kafka-")?;
    let log_dir = data_dir.path().join("log");
    let properties_path = data_dir.path().join("server.properties");
    let kafka_port = target::free_port()?;
    let controller_port = target::free_port()?;
    std::fs::write(
        &properties_path,
        server_properties(&log_dir, kafka_port, controller_port),
    )
    .map_err(|source| TargetError::WriteFile {
        path: properties_path.clone(),
        source,
    })?;
    format_storage(&java, &classpath, cores, &properties_path, &log_dir)?;
    let mut command = Command::new(&java);
    command
        .args(JVM_OPTIONS)
        .arg("-cp")
        .arg(&classpath)
        .arg("kafka.Kafka")
        .arg(&properties_path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // Every JVM thread inherits the affinity of the first one.
    target::pin_child(&mut command, cores);
    let child = command.spawn().map_err(|source| TargetError::JavaMissing {
        java: java.display().to_string(),
        source,
    })?;
    let program = format!("Apache Kafka {APACHE_KAFKA_VERSION} ({})", java.display());
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let (line_sender, line_receiver) = mpsc::channel();
    let mut child = child;
    let stdout = child.stdout.take().expect("stdout was piped");
    let stderr = child.stderr.take().expect("stderr was piped");
    target::collect_output(stdout, Arc::clone(&log), Some(line_sender.clone()));
    target::collect_output(stderr, Arc::clone(&log), Some(line_sender));
    let address: SocketAddr = ([127, 0, 0, 1], kafka_port).into();
    let mut process = SpawnedProcess::new(program.clone(), child, address, log, data_dir);
    wait_until_serving(&mut process, &line_receiver, &program)?;
    Ok(process)
}

/// `kafka-storage.sh format`: writes the cluster id and the bootstrap metadata KRaft needs
/// before its first start.
fn format_storage(
    java: &Path,
    classpath: &str,
    cores: &[usize],
    properties_path: &Path,
    log_dir: &Path,
) -> Result<(), TargetError> {
    let mut command = Command::new(java);
    command
        .arg("-cp")
        .arg(classpath)
        .args(["kafka.tools.StorageTool", "format", "-t", CLUSTER_ID, "-c"])
        .arg(properties_path)
        .stdin(Stdio::null());
    target::pin_child(&mut command, cores);
    let output = command
        .output()
        .map_err(|source| TargetError::JavaMissing {
            java: java.display().to_string(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = text.lines().collect();
    Err(TargetError::ApacheKafkaFormat {
        path: log_dir.to_path_buf(),
        status: output.status.to_string(),
        output: lines[lines.len().saturating_sub(20)..].join("\n"),
    })
}

/// Waits for Kafka's "started" line, then for its port to accept a connection.
fn wait_until_serving(
    process: &mut SpawnedProcess,
    lines: &mpsc::Receiver<String>,
    program: &str,
) -> Result<(), TargetError> {
    let deadline = Instant::now() + Duration::from_millis(APACHE_KAFKA_READY_TIMEOUT_MS);
    let not_ready = |process: &SpawnedProcess| TargetError::NotReady {
        program: program.to_string(),
        waited_ms: APACHE_KAFKA_READY_TIMEOUT_MS,
        log: process.recent_log(),
    };
    let mut started = false;
    while !started {
        match lines.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => started = line.contains(READY_LINE),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        target::check_alive(process)?;
        if Instant::now() > deadline {
            return Err(not_ready(process));
        }
    }
    let address = process.address();
    while TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_err() {
        target::check_alive(process)?;
        if Instant::now() > deadline {
            return Err(not_ready(process));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_properties_name_one_node_and_keep_kafkas_durability_defaults() {
        let properties = server_properties(Path::new("/data/log"), 9092, 9093);
        assert!(
            properties.contains("listeners=PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093")
        );
        assert!(properties.contains("controller.quorum.voters=1@127.0.0.1:9093"));
        assert!(properties.contains("log.dirs=/data/log\n"));
        // Durability is the topic's (flush.messages), never the broker's.
        assert!(!properties.contains("flush"));
    }

    #[test]
    fn a_missing_classpath_names_the_install_script() {
        let error =
            read_classpath(Path::new("/nonexistent/classpath.txt")).expect_err("no such file");
        let message = error.to_string();
        assert!(
            message.contains("bench/scripts/apache-kafka-install.sh"),
            "{message}"
        );
    }

    #[test]
    fn the_cluster_id_is_sixteen_bytes_in_base64url() {
        assert_eq!(CLUSTER_ID.len(), 22);
        assert!(CLUSTER_ID
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_'));
    }
}
