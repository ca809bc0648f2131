//! A real Kafka client across a leader kill (issue 14: "the Kafka clients follow leaders
//! without the application noticing"): kcat (librdkafka) produces numbered lines with
//! idempotence and acks=all to an RF=3 partition of a 3-broker cluster, bootstrapped from all
//! three Kafka listeners, while the test `kill -9`s the partition's leader mid-stream and
//! restarts it. kcat must deliver every line (it exits non-zero when a delivery fails), and a
//! kcat consumer must then read every line exactly once, in order.
//!
//! Needs `kcat` on the PATH (`.ci/run` installs it; `apt-get install kcat`).

mod cluster_support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cluster_support::parse_value;
use spate_tests::cluster::{wait_for, Cluster, ClusterOptions, FORMATION_TIMEOUT};

const TOPIC: &str = "kcat-failover";
const LINES: usize = 3_000;
/// The line after which the leader is killed.
const KILL_AFTER_LINES: usize = 1_000;
const KCAT_TIMEOUT: Duration = Duration::from_secs(240);

fn kcat() -> Command {
    let found = Command::new("kcat")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    assert!(
        found,
        "this test needs kcat (librdkafka's command-line client) on the PATH: apt-get install kcat"
    );
    Command::new("kcat")
}

#[test]
fn kcat_produces_and_consumes_every_record_once_across_a_leader_kill() {
    let mut cluster = Cluster::start(ClusterOptions::default());
    cluster.wait_formed(FORMATION_TIMEOUT);
    cluster.create_topic(1, TOPIC, 1, &[("min.insync.replicas", "2")]);
    cluster.wait_in_sync(TOPIC, 1, Duration::from_secs(120));
    let bootstrap = cluster.kafka_bootstrap();

    let mut producer = kcat()
        .args(["-P", "-b", &bootstrap, "-t", TOPIC, "-p", "0"])
        .args(["-X", "enable.idempotence=true", "-X", "acks=all"])
        .args(["-X", "message.timeout.ms=120000", "-X", "linger.ms=5"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start kcat");
    let stderr = producer.stderr.take().unwrap();
    let stderr_lines = std::thread::spawn(move || {
        BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<_>>()
    });
    let mut input = producer.stdin.take().unwrap();
    let (old_leader, old_epoch) = cluster.wait_for_agreed_leader(TOPIC, 0, FORMATION_TIMEOUT);
    let mut killed_at = None;
    for number in 0..LINES {
        writeln!(input, "{}", cluster_support::record_value(0, number)).expect("feed kcat");
        if number % 10 == 0 {
            input.flush().unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        if number == KILL_AFTER_LINES {
            cluster.kill9(old_leader);
            killed_at = Some(Instant::now());
        }
    }
    drop(input);
    let (new_leader, new_epoch) =
        cluster.wait_for_leader(TOPIC, 0, FORMATION_TIMEOUT, |_, epoch| epoch > old_epoch);
    eprintln!(
        "leader {old_leader} (epoch {old_epoch}) killed; broker {new_leader} leads at epoch \
         {new_epoch} {:.1} s later",
        killed_at.unwrap().elapsed().as_secs_f64()
    );
    cluster.restart(old_leader);

    let exited = wait_for(KCAT_TIMEOUT, || producer.try_wait().ok().flatten());
    let Some(status) = exited else {
        let _ = producer.kill();
        panic!("kcat did not finish producing within {KCAT_TIMEOUT:?}");
    };
    let stderr = stderr_lines.join().unwrap();
    assert!(
        status.success(),
        "kcat failed to deliver ({status}): {}",
        stderr.join("\n")
    );

    cluster.wait_in_sync(TOPIC, 1, Duration::from_secs(120));
    let consumed = kcat()
        .args(["-C", "-b", &bootstrap, "-t", TOPIC, "-p", "0"])
        .args(["-o", "beginning", "-e", "-q", "-f", "%s\\n"])
        .stdin(Stdio::null())
        .output()
        .expect("run the kcat consumer");
    assert!(
        consumed.status.success(),
        "the kcat consumer failed: {}",
        String::from_utf8_lossy(&consumed.stderr)
    );
    let numbers: Vec<usize> = String::from_utf8(consumed.stdout)
        .expect("UTF-8 lines")
        .lines()
        .filter(|line| !line.is_empty())
        .map(|line| parse_value(line.as_bytes()).1)
        .collect();
    let expected: Vec<usize> = (0..LINES).collect();
    if numbers != expected {
        let first_wrong = numbers
            .iter()
            .zip(&expected)
            .position(|(got, wanted)| got != wanted)
            .unwrap_or(numbers.len().min(expected.len()));
        panic!(
            "kcat read {} records, not 0..{LINES} once in order: first difference at #{first_wrong} \
             (read {:?})",
            numbers.len(),
            numbers.get(first_wrong..(first_wrong + 5).min(numbers.len()))
        );
    }
    eprintln!("kcat: {LINES} records produced across the leader kill, all read back once in order");
}
