//! End-to-end: how `spate` fails. Usage errors are one `error:` line and exit 2; a port that is
//! not a Spate broker is exit 3 within `--timeout-ms`; a produce stopped by bad input or a
//! signal says how many records were acknowledged and which were not, and leaves nothing in
//! flight behind it.

mod cli_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use spate_tests::{Broker, BrokerOptions};

use cli_support::{dead_address, spate, spate_binary};

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

/// The values `spate consume TOPIC --from-beginning --exit-at-end` prints.
fn values(address: SocketAddr, topic: &str) -> Vec<String> {
    spate(
        address,
        &["consume", topic, "--from-beginning", "--exit-at-end"],
        b"",
    )
    .ok()
    .lines()
    .map(str::to_string)
    .collect()
}

#[test]
fn usage_errors_are_one_line_that_names_the_help_and_exit_2() {
    // None of these reach a broker: the command line is refused first.
    let address = dead_address();
    let cases: [(&[&str], &str); 9] = [
        (&["consume"], "<TOPIC>"),
        (&["consume", "t", "--format", "%x"], "%x"),
        (&["consume", "t", "--format", "50%"], "lone %"),
        (&["consume", "t", "--bogus"], "--bogus"),
        (
            &["produce", "t", "--key-separator", ""],
            "must not be empty",
        ),
        (&["produce", "t", "--delimiter", ""], "must not be empty"),
        (&["topic", "create", "t", "--partitions", "-1"], "'-1'"),
        (&["topic"], "create, list, describe, delete, alter"),
        (&["produce", "t", "--partition", "x"], "--partition"),
    ];
    for (arguments, expected) in cases {
        let line = spate(address, arguments, b"").fails_with(2);
        assert!(line.contains(expected), "{arguments:?}: {line}");
        assert!(line.ends_with("--help')"), "{arguments:?}: {line}");
    }
    let negative = spate(
        address,
        &["topic", "create", "t", "--partitions", "-10"],
        b"",
    )
    .fails_with(2);
    assert!(
        negative.contains("'-10'") && negative.contains("spate topic create --help"),
        "{negative}"
    );
}

#[test]
fn help_names_the_broker_variable_without_an_empty_value_and_exits_0() {
    let help = spate(dead_address(), &["--help"], b"").ok();
    assert!(help.contains("[env: SPATE_BROKER]"), "{help}");
    assert!(help.contains("130") && help.contains("143"), "{help}");
    let produce_help = spate(dead_address(), &["produce", "--help"], b"").ok();
    assert!(produce_help.contains("sticky"), "{produce_help}");
}

/// A listener that accepts and holds connections without a word, or answers each with an HTTP
/// error; it lives as long as the test process.
fn impostor(http: bool) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            if http {
                let mut request = [0u8; 64];
                let _ = stream.read(&mut request);
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            }
            held.push(stream);
        }
    });
    address
}

#[test]
fn a_port_that_never_answers_or_speaks_http_is_not_a_spate_broker() {
    for (http, reason) in [
        (false, "no answer within 500 ms"),
        (true, "unexpected reply"),
    ] {
        let started = Instant::now();
        let line = spate(
            impostor(http),
            &["--timeout-ms", "500", "topic", "list"],
            b"",
        )
        .fails_with(3);
        assert!(
            line.contains("is not a Spate broker") && line.contains(reason),
            "{line}"
        );
        // Not the 30 s request timeout: the handshake honours --timeout-ms. The bound is
        // generous for a loaded machine; the bug it guards against took 30 s.
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn produce_stopped_by_bad_input_flushes_and_reports_what_was_acknowledged() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "halted", "--partitions", "3"],
        b"",
    )
    .ok();
    let mut input: String = (0..2_000)
        .map(|number| format!("k{number}=v{number}\n"))
        .collect();
    input.push_str("no separator\nk=after\n");
    let line = spate(
        address,
        // Generous: the count is exact only once every record sent is answered.
        &[
            "--timeout-ms",
            "60000",
            "produce",
            "halted",
            "--key-separator",
            "=",
        ],
        input.as_bytes(),
    )
    .fails_with(1);
    assert!(line.contains("record 2001 has no key separator"), "{line}");
    assert!(
        line.contains("2000 records of the 2000 sent acknowledged"),
        "{line}"
    );
    assert!(
        line.contains("records after record 2000 were not sent"),
        "{line}"
    );
    // Everything acknowledged is there the moment the command returns, and nothing lands later.
    assert_eq!(values(address, "halted").len(), 2_000);
}

#[test]
fn a_partition_or_topic_that_does_not_exist_is_exit_4_for_consume() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "single"], b"").ok();
    let line = spate(address, &["consume", "single", "-p", "7", "-e"], b"").fails_with(4);
    assert!(line.contains('7'), "{line}");
    spate(
        address,
        &["consume", "single", "absent", "-o", "start", "-e"],
        b"",
    )
    .fails_with(4);
}

#[test]
fn one_record_is_singular_and_a_tab_separator_is_an_escape() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "tabs"], b"").ok();
    let produced = spate(
        address,
        &["produce", "tabs", "-K", "\\t"],
        b"key\tvalue with \\t inside\n",
    )
    .ok();
    assert_eq!(produced, "1 record acknowledged\n");
    let printed = spate(
        address,
        &[
            "consume",
            "tabs",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%k|%v",
        ],
        b"",
    )
    .ok();
    assert_eq!(printed, "key|value with \\t inside\n");
}

#[test]
fn produce_stopped_by_a_signal_reports_what_was_acknowledged_and_exits_128_plus_it() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "stopped"], b"").ok();
    for (signal, code, name) in [("-TERM", 143, "SIGTERM"), ("-INT", 130, "SIGINT")] {
        // Counted before the tool starts: its records may land before any later count.
        let before = values(address, "stopped").len();
        let mut child = Command::new(spate_binary())
            .args(["--broker", &address.to_string(), "--timeout-ms", "60000"])
            .args(["produce", "stopped"])
            .env_remove("SPATE_BROKER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // The input stays open: the tool is waiting for more when the signal comes.
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"one\ntwo\nthree\n").unwrap();
        stdin.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while values(address, "stopped").len() < before + 3 {
            assert!(Instant::now() < deadline, "the three records never arrived");
            std::thread::sleep(Duration::from_millis(50));
        }
        let killed = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        let output = child.wait_with_output().unwrap();
        drop(stdin);
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(code), "{stderr}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(&format!("error: {name} received")),
            "{stderr}"
        );
        assert!(
            lines[0].contains("3 records of the 3 sent acknowledged"),
            "{stderr}"
        );
    }
}
