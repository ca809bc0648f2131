//! Smoke test of `spate-broker check` on the machine the tests run on: whatever this host is
//! (a VM, a container, bare metal; root or not), the real checker prints one finding for every
//! check, as a table and as JSON, and exits 0 or 1 by whether a finding fails, never crashing.
//! `--apply` is never run here: on a root CI host it would retune the machine.

use std::process::{Command, Output};

use spate_host::CHECK_NAMES;
use spate_tests::broker_process::broker_binary;

fn check(arguments: &[&str]) -> Output {
    let data_dir = tempfile::tempdir().expect("temporary data directory");
    Command::new(broker_binary())
        .arg("check")
        .arg("--data-dir")
        .arg(data_dir.path())
        .args(arguments)
        .env_remove("SPATE_DATA_DIR")
        .env_remove("SPATE_CORES")
        .env_remove("SPATE_SHARDS")
        .env_remove("SPATE_CONFIG")
        .output()
        .expect("run spate-broker check")
}

/// 0 without a failing finding, 1 with one; anything else (a panic's 101, a signal) is a crash.
fn assert_exit_matches(output: &Output, failed: bool) {
    let code = output.status.code();
    assert_eq!(
        code,
        Some(i32::from(failed)),
        "exit code {code:?} for failed={failed}; stderr:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn check_prints_a_finding_for_every_check_on_this_host() {
    let output = check(&[]);
    let table = String::from_utf8(output.stdout.clone()).expect("utf-8 table");
    println!("{table}");
    for name in CHECK_NAMES {
        assert!(
            table
                .lines()
                .any(|line| line.starts_with(&format!("{name} "))),
            "no row for {name} in:\n{table}"
        );
    }
    let failed = table.lines().any(|line| line.trim_end().ends_with(" FAIL"));
    assert_exit_matches(&output, failed);
}

#[test]
fn check_json_lists_every_finding_on_this_host() {
    let output = check(&["--json", "--cores", "0"]);
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON report");
    let findings = report["findings"].as_array().expect("findings array");
    let names: Vec<&str> = findings
        .iter()
        .map(|finding| finding["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, CHECK_NAMES);
    for finding in findings {
        let severity = finding["severity"].as_str().expect("severity");
        assert!(
            ["ok", "warn", "fail", "not_available"].contains(&severity),
            "{finding}"
        );
    }
    assert_exit_matches(&output, report["fail"] == true);
}
