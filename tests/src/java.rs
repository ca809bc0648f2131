//! The Java client's test programs (`tests/compat/java-*`): compiled offline with `mvn -o`
//! against the kafka-clients jars `.ci/run` puts in `~/.m2`
//! (`tests/compat/java-transactions/install.sh`), and run by the tests that need a real Java
//! client beside the broker.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A Maven project under `tests/compat/`, by folder name.
pub fn project(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("compat")
        .join(name)
}

/// Whether `program version_flag` runs and succeeds.
pub fn has(program: &str, version_flag: &str) -> bool {
    Command::new(program)
        .arg(version_flag)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
}

/// Compiles the project offline and returns its classpath. A missing JDK or Maven, or jars
/// missing from `~/.m2`, fail the test with the command that installs them: CI installs them,
/// so the test never skips.
pub fn compile(project: &Path) -> String {
    assert!(
        has("java", "-version") && has("mvn", "-v"),
        "this test needs a JDK 17+ and Maven on the PATH, with kafka-clients in ~/.m2: run \
         tests/compat/java-transactions/install.sh (.ci/run does)"
    );
    let compiled = Command::new("mvn")
        .args(["-o", "-q", "-B", "-Dstyle.color=never", "compile"])
        .args([
            "dependency:build-classpath",
            "-Dmdep.outputFile=target/classpath.txt",
        ])
        .current_dir(project)
        .stdin(Stdio::null())
        .output()
        .expect("run mvn");
    assert!(
        compiled.status.success(),
        "mvn -o could not compile {} (is ~/.m2 filled? run \
         tests/compat/java-transactions/install.sh): {}{}",
        project.display(),
        String::from_utf8_lossy(&compiled.stdout),
        String::from_utf8_lossy(&compiled.stderr)
    );
    let dependencies = std::fs::read_to_string(project.join("target/classpath.txt"))
        .expect("mvn wrote target/classpath.txt");
    format!(
        "{}:{}",
        project.join("target/classes").display(),
        dependencies.trim()
    )
}
