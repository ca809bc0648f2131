//! Helpers shared by the `cli_*` end-to-end tests: build the `spate` binary once (same cargo,
//! same profile as the tests, like the broker helper does) and run it against a broker.

#![allow(dead_code)] // each test file uses its own subset

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Mutex, OnceLock};

/// What one run of `spate` produced.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(output: Output) -> Run {
        Run {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8(output.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is UTF-8"),
        }
    }

    /// Asserts success and returns stdout.
    pub fn ok(self) -> String {
        assert_eq!(
            self.code, 0,
            "spate failed\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        self.stdout
    }

    /// Asserts the exit code and a one-line `error: ...` on stderr; returns that line.
    pub fn fails_with(self, code: i32) -> String {
        assert_eq!(
            self.code, code,
            "exit code\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one error line, got: {:?}", self.stderr);
        assert!(lines[0].starts_with("error: "), "{:?}", lines[0]);
        lines[0].to_string()
    }
}

/// Runs `spate --broker BROKER ARGS...` with `stdin`, with nothing inherited that could change
/// its behaviour.
pub fn spate(broker: SocketAddr, arguments: &[&str], stdin: &[u8]) -> Run {
    let mut command = Command::new(spate_binary());
    command
        .arg("--broker")
        .arg(broker.to_string())
        .args(arguments);
    run(command, stdin)
}

/// Runs the binary with exactly `command`'s arguments (no `--broker` added).
pub fn run(mut command: Command, stdin: &[u8]) -> Run {
    let mut child = command
        .env_remove("SPATE_BROKER")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start spate");
    let mut input = child.stdin.take().expect("piped stdin");
    let stdin = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&stdin);
    });
    let output = child.wait_with_output().expect("wait for spate");
    writer.join().expect("stdin writer");
    Run::from(output)
}

/// The `spate` binary, built once per test process with the same cargo and profile.
pub fn spate_binary() -> PathBuf {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    static BUILD: Mutex<()> = Mutex::new(());
    BINARY
        .get_or_init(|| {
            let _serialized = BUILD
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let release = !cfg!(debug_assertions);
            let mut build = spate_tests::broker_process::nested_cargo();
            build
                .current_dir(workspace())
                .args(["build", "-p", "spate-client", "--bin", "spate"]);
            if release {
                build.arg("--release");
            }
            let status = build.status().expect("run cargo build for spate");
            assert!(status.success(), "building spate failed");
            let binary = target_dir()
                .join(if release { "release" } else { "debug" })
                .join("spate");
            assert!(binary.exists(), "no spate binary at {}", binary.display());
            binary
        })
        .clone()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests crate sits in the workspace")
        .to_path_buf()
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(directory) => PathBuf::from(directory),
        None => workspace().join("target"),
    }
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn dead_address() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("address")
}
