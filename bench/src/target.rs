//! The system under test as a process: either one the harness starts (`--spawn-broker`: the
//! `spate-broker` binary, or `redis-server` for the Redis driver) pinned to the broker cores
//! with a fresh data directory, or an external one at `--broker ADDR`.
//!
//! A spawned process is stopped (SIGTERM, then SIGKILL after a grace period) and its data
//! directory removed when its [`SpawnedProcess`] is dropped. This file starts, waits for and
//! stops processes; it never speaks a protocol beyond "is the port open".

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::constants::{SPAWN_LOG_LINES_KEPT, SPAWN_READY_TIMEOUT_MS, SPAWN_STOP_TIMEOUT_MS};
use crate::placement::cpu_set;

/// Why the system under test could not be started or found.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error(
        "cannot find the spate-broker binary (looked for {looked_at}); build it with \
         `cargo build --release -p spate-broker` or pass --broker-binary PATH"
    )]
    BrokerBinaryMissing { looked_at: String },
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} exited before it was ready ({status}); its last log lines:\n{log}")]
    ExitedEarly {
        program: String,
        status: String,
        log: String,
    },
    #[error("{program} was not ready within {waited_ms} ms; its last log lines:\n{log}")]
    NotReady {
        program: String,
        waited_ms: u64,
        log: String,
    },
    #[error("cannot create a data directory under {path}: {source}")]
    DataDirectory {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find a free port: {source}")]
    Port { source: std::io::Error },
    #[error("broker address {address:?} does not resolve: {message}")]
    Address { address: String, message: String },
    #[error(
        "Apache Kafka's jars are not installed here (no classpath file {path}): run \
         `bash bench/scripts/apache-kafka-install.sh` (a JDK 17+ and Maven from apt when \
         missing, then Apache Kafka {version} from Maven Central into ~/.m2), or pass \
         --apache-kafka-classpath FILE"
    )]
    ApacheKafkaNotInstalled {
        path: PathBuf,
        version: &'static str,
    },
    #[error(
        "cannot start {java} for Apache Kafka: {source}; install a JDK 17+ with \
         `bash bench/scripts/apache-kafka-install.sh`, or set JAVA_HOME"
    )]
    JavaMissing {
        java: String,
        source: std::io::Error,
    },
    #[error("formatting Apache Kafka's storage in {path} failed ({status}):\n{output}")]
    ApacheKafkaFormat {
        path: PathBuf,
        status: String,
        output: String,
    },
    #[error("cannot write {path}: {source}")]
    WriteFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A process the harness started; stopped and cleaned up on drop.
pub struct SpawnedProcess {
    program: String,
    child: Option<Child>,
    address: SocketAddr,
    log: Arc<Mutex<VecDeque<String>>>,
    /// Removed after the process is gone.
    data_dir: Option<tempfile::TempDir>,
}

impl SpawnedProcess {
    /// A started process, its output already collected into `log`; stopped and its
    /// `data_dir` removed on drop.
    pub(crate) fn new(
        program: String,
        child: Child,
        address: SocketAddr,
        log: Arc<Mutex<VecDeque<String>>>,
        data_dir: tempfile::TempDir,
    ) -> SpawnedProcess {
        SpawnedProcess {
            program,
            child: Some(child),
            address,
            log,
            data_dir: Some(data_dir),
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn data_dir(&self) -> Option<&Path> {
        self.data_dir.as_ref().map(tempfile::TempDir::path)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines the process logged.
    pub fn recent_log(&self) -> String {
        recent_log(&self.log)
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on the pid of a child we own and have not yet waited for.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_millis(SPAWN_STOP_TIMEOUT_MS);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for SpawnedProcess {
    fn drop(&mut self) {
        self.stop();
        // `data_dir` is dropped (removed) after the process has exited.
    }
}

fn recent_log(log: &Mutex<VecDeque<String>>) -> String {
    let lines = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    lines.iter().cloned().collect::<Vec<_>>().join("\n")
}

/// Keeps the last lines of a process's output, and forwards each line to `lines` (if the
/// receiver still listens) so a start-up wait can look for its readiness line.
pub(crate) fn collect_output(
    output: impl std::io::Read + Send + 'static,
    log: Arc<Mutex<VecDeque<String>>>,
    lines: Option<mpsc::Sender<String>>,
) {
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            let Ok(line) = line else { break };
            if let Some(lines) = &lines {
                let _ = lines.send(line.clone());
            }
            let mut kept = log.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if kept.len() == SPAWN_LOG_LINES_KEPT {
                kept.pop_front();
            }
            kept.push_back(line);
        }
    });
}

/// Runs the child only on `cores` (nothing when empty).
pub(crate) fn pin_child(command: &mut Command, cores: &[usize]) {
    if cores.is_empty() {
        return;
    }
    let set = cpu_set(cores);
    // SAFETY: the closure only calls sched_setaffinity, which is async-signal-safe, on a set
    // prepared before fork.
    unsafe {
        command.pre_exec(move || {
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The `spate-broker` binary: the explicit path, else the one next to this executable (the
/// same cargo target directory), else its parent (when this runs from `target/*/deps`).
pub fn find_broker_binary(explicit: Option<&Path>) -> Result<PathBuf, TargetError> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    let mut looked_at = Vec::new();
    if let Ok(executable) = std::env::current_exe() {
        for directory in executable.ancestors().skip(1).take(2) {
            let candidate = directory.join("spate-broker");
            if candidate.is_file() {
                return Ok(candidate);
            }
            looked_at.push(candidate.display().to_string());
        }
    }
    Err(TargetError::BrokerBinaryMissing {
        looked_at: looked_at.join(", "),
    })
}

/// A fresh directory for a spawned process's data under `data_root`.
pub fn fresh_data_dir(data_root: &Path, prefix: &str) -> Result<tempfile::TempDir, TargetError> {
    std::fs::create_dir_all(data_root).map_err(|source| TargetError::DataDirectory {
        path: data_root.to_path_buf(),
        source,
    })?;
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(data_root)
        .map_err(|source| TargetError::DataDirectory {
            path: data_root.to_path_buf(),
            source,
        })
}

/// Which of the broker's listeners a spawned broker's address is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerListener {
    /// The native protocol (`address=` in the ready line).
    Native,
    /// The Kafka protocol (`kafka_address=`).
    Kafka,
}

impl BrokerListener {
    /// The key of this listener's address in the broker's ready line.
    fn ready_key(self) -> &'static str {
        match self {
            BrokerListener::Native => " address=",
            BrokerListener::Kafka => " kafka_address=",
        }
    }
}

/// Starts `spate-broker` with one shard per broker core, a fresh data directory under
/// `data_root`, on ports it picks itself; waits for its `broker ready address=...` line and
/// takes the address of `listener` from it.
pub fn spawn_broker(
    binary: &Path,
    cores: &[usize],
    data_root: &Path,
    listener: BrokerListener,
    extra_arguments: &[String],
) -> Result<SpawnedProcess, TargetError> {
    let data_dir = fresh_data_dir(data_root, "spate-bench-broker-")?;
    let mut command = Command::new(binary);
    command
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(["--listen", "127.0.0.1:0", "--log-level", "info"])
        .args(["--kafka-listen", "127.0.0.1:0"])
        .args(["--admin-listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if cores.is_empty() {
        command.args(["--shards", "1"]);
    } else {
        let list: Vec<String> = cores.iter().map(usize::to_string).collect();
        command.args(["--cores", &list.join(",")]);
        pin_child(&mut command, cores);
    }
    command.args(extra_arguments);
    let program = binary.display().to_string();
    let mut child = command.spawn().map_err(|source| TargetError::Spawn {
        program: program.clone(),
        source,
    })?;
    let log = Arc::new(Mutex::new(VecDeque::new()));
    let (line_sender, line_receiver) = mpsc::channel();
    let stderr = child.stderr.take().expect("stderr was piped");
    collect_output(stderr, Arc::clone(&log), Some(line_sender));
    let mut process = SpawnedProcess {
        program,
        child: Some(child),
        address: ([127, 0, 0, 1], 0).into(),
        log,
        data_dir: Some(data_dir),
    };
    process.address = wait_for_ready_line(&mut process, &line_receiver, listener)?;
    Ok(process)
}

/// The address in the broker's readiness log line.
fn wait_for_ready_line(
    process: &mut SpawnedProcess,
    lines: &mpsc::Receiver<String>,
    listener: BrokerListener,
) -> Result<SocketAddr, TargetError> {
    let deadline = Instant::now() + Duration::from_millis(SPAWN_READY_TIMEOUT_MS);
    loop {
        let remaining = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(remaining.min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(address) = parse_ready_line(&line, listener) {
                    return Ok(address);
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        check_alive(process)?;
        if remaining.is_zero() {
            return Err(TargetError::NotReady {
                program: process.program.clone(),
                waited_ms: SPAWN_READY_TIMEOUT_MS,
                log: process.recent_log(),
            });
        }
    }
}

pub(crate) fn check_alive(process: &mut SpawnedProcess) -> Result<(), TargetError> {
    let Some(child) = process.child.as_mut() else {
        return Ok(());
    };
    if let Ok(Some(status)) = child.try_wait() {
        process.child = None;
        // Give the output thread a moment to store the last lines.
        std::thread::sleep(Duration::from_millis(100));
        return Err(TargetError::ExitedEarly {
            program: process.program.clone(),
            status: status.to_string(),
            log: process.recent_log(),
        });
    }
    Ok(())
}

/// `... broker ready address=127.0.0.1:40123 kafka_address=127.0.0.1:40124 shards=1` -> the
/// address of `listener`.
pub fn parse_ready_line(line: &str, listener: BrokerListener) -> Option<SocketAddr> {
    if !line.contains("broker ready") {
        return None;
    }
    let key = listener.ready_key();
    let start = line.find(key)? + key.len();
    let rest = &line[start..];
    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// What redis-server promises before it answers a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RedisFsync {
    /// `appendfsync always`: the peer of acks=all.
    Always,
    /// `appendfsync everysec`: the peer of acks=leader.
    EverySecond,
}

impl RedisFsync {
    pub fn setting(self) -> &'static str {
        match self {
            RedisFsync::Always => "always",
            RedisFsync::EverySecond => "everysec",
        }
    }
}

/// Starts `redis-server` with an append-only file in a fresh directory under `data_root`,
/// pinned to `cores`, on a free port; waits until it accepts connections.
pub fn spawn_redis(
    binary: &Path,
    cores: &[usize],
    data_root: &Path,
    fsync: RedisFsync,
) -> Result<SpawnedProcess, TargetError> {
    let data_dir = fresh_data_dir(data_root, "spate-bench-redis-")?;
    let port = free_port()?;
    let mut command = Command::new(binary);
    command
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .arg("--dir")
        .arg(data_dir.path())
        .args(["--appendonly", "yes", "--appendfsync", fsync.setting()])
        // No RDB snapshots: they would fork and copy the dataset in the middle of a run.
        .args(["--save", "", "--daemonize", "no", "--protected-mode", "no"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    pin_child(&mut command, cores);
    let program = binary.display().to_string();
    let mut child = command.spawn().map_err(|source| TargetError::Spawn {
        program: program.clone(),
        source,
    })?;
    let log = Arc::new(Mutex::new(VecDeque::new()));
    collect_output(
        child.stdout.take().expect("stdout was piped"),
        Arc::clone(&log),
        None,
    );
    collect_output(
        child.stderr.take().expect("stderr was piped"),
        Arc::clone(&log),
        None,
    );
    let address: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut process = SpawnedProcess {
        program,
        child: Some(child),
        address,
        log,
        data_dir: Some(data_dir),
    };
    let deadline = Instant::now() + Duration::from_millis(SPAWN_READY_TIMEOUT_MS);
    loop {
        if TcpStream::connect_timeout(&address, Duration::from_millis(200)).is_ok() {
            return Ok(process);
        }
        check_alive(&mut process)?;
        if Instant::now() > deadline {
            return Err(TargetError::NotReady {
                program: process.program.clone(),
                waited_ms: SPAWN_READY_TIMEOUT_MS,
                log: process.recent_log(),
            });
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on right now (redis-server cannot pick its own and report it).
pub(crate) fn free_port() -> Result<u16, TargetError> {
    let listener =
        TcpListener::bind(("127.0.0.1", 0)).map_err(|source| TargetError::Port { source })?;
    let port = listener
        .local_addr()
        .map_err(|source| TargetError::Port { source })?
        .port();
    Ok(port)
}

/// Resolves `--broker HOST:PORT`.
pub fn resolve_address(text: &str) -> Result<SocketAddr, TargetError> {
    use std::net::ToSocketAddrs;
    let error = |message: String| TargetError::Address {
        address: text.to_string(),
        message,
    };
    text.to_socket_addrs()
        .map_err(|source| error(source.to_string()))?
        .next()
        .ok_or_else(|| error("no address".into()))
}

/// Where spawned processes keep their data and where the disk limit is measured when no
/// `--data-dir` is given: the temporary directory, unless it is a tmpfs (no O_DIRECT, no
/// disk), then `spate-bench-data` beside this executable (inside the cargo target directory).
pub fn default_data_root() -> PathBuf {
    let temporary = std::env::temp_dir();
    if !is_tmpfs(&temporary) {
        return temporary;
    }
    std::env::current_exe()
        .ok()
        .and_then(|executable| {
            executable
                .parent()
                .map(|directory| directory.join("spate-bench-data"))
        })
        .unwrap_or_else(|| PathBuf::from("spate-bench-data"))
}

fn is_tmpfs(path: &Path) -> bool {
    crate::limits::memory_file_system(path).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ready_line_yields_the_listen_address() {
        let native = BrokerListener::Native;
        let line = "2026-01-01T00:00:00Z  INFO spate_server: broker ready address=127.0.0.1:40123 kafka_address=127.0.0.1:40124 shards=2";
        assert_eq!(
            parse_ready_line(line, native),
            Some("127.0.0.1:40123".parse().unwrap())
        );
        assert_eq!(
            parse_ready_line(line, BrokerListener::Kafka),
            Some("127.0.0.1:40124".parse().unwrap())
        );
        assert_eq!(
            parse_ready_line("broker ready address=127.0.0.1:9", native),
            Some("127.0.0.1:9".parse().unwrap())
        );
        assert_eq!(
            parse_ready_line(
                "broker ready address=127.0.0.1:9 kafka_address=none",
                BrokerListener::Kafka
            ),
            None
        );
        assert_eq!(
            parse_ready_line("shard 0 ready address=127.0.0.1:1", native),
            None
        );
        assert_eq!(
            parse_ready_line("broker ready address=nonsense", native),
            None
        );
    }

    #[test]
    fn an_explicit_broker_binary_is_taken_as_given() {
        let path = Path::new("/opt/spate/bin/spate-broker");
        assert_eq!(find_broker_binary(Some(path)).unwrap(), path);
    }

    #[test]
    fn a_process_that_exits_at_once_is_reported_with_its_log() {
        let directory = tempfile::tempdir().unwrap();
        let error = spawn_broker(
            Path::new("/bin/false"),
            &[],
            directory.path(),
            BrokerListener::Native,
            &[],
        )
        .err()
        .expect("false never becomes ready");
        assert!(matches!(error, TargetError::ExitedEarly { .. }), "{error}");
    }

    #[test]
    fn the_default_data_root_is_not_a_tmpfs() {
        assert!(!is_tmpfs(&default_data_root()));
    }
}
