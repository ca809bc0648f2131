//! End-to-end: every `spate` command against the real broker, as a user runs it: outputs,
//! formats, start positions, exit codes and one-line errors, and plain output into pipes.

mod cli_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spate_client::partition_for_key;
use spate_tests::{Broker, BrokerOptions};

use cli_support::{dead_address, run, spate, spate_binary};

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn topic_commands_create_list_describe_alter_and_delete() {
    let broker = broker();
    let address = broker.address();
    let created = spate(
        address,
        &[
            "topic",
            "create",
            "orders",
            "--partitions",
            "3",
            "--retention-bytes",
            "1048576",
            "--retention-ms",
            "3600000",
        ],
        b"",
    )
    .ok();
    assert_eq!(created, "created topic orders with 3 partitions\n");
    spate(address, &["topic", "create", "audit"], b"").ok();

    let duplicate = spate(address, &["topic", "create", "orders"], b"").fails_with(1);
    assert!(duplicate.contains("already exists"), "{duplicate}");

    let listed = spate(address, &["topic", "list"], b"").ok();
    assert_eq!(listed, "audit\t1\norders\t3\n");

    let described = spate(address, &["topic", "describe", "orders"], b"").ok();
    assert!(
        described.starts_with("topic\torders\npartitions\t3\n"),
        "{described}"
    );
    for partition in 0..3 {
        assert!(
            described
                .lines()
                .any(|line| line.starts_with(&format!("{partition}\t"))
                    && line.ends_with("\t0\t0\tonline")),
            "partition {partition} in {described}"
        );
    }

    let altered = spate(
        address,
        &["topic", "alter", "orders", "--config", "retention.ms=1000"],
        b"",
    )
    .ok();
    assert_eq!(altered, "altered topic orders\n");
    let bad = spate(
        address,
        &["topic", "alter", "orders", "--config", "retention.ms=soon"],
        b"",
    )
    .fails_with(1);
    assert!(
        bad.contains("retention.ms") || bad.contains("config"),
        "{bad}"
    );

    assert_eq!(
        spate(address, &["topic", "delete", "audit"], b"").ok(),
        "deleted topic audit\n"
    );
    assert_eq!(spate(address, &["topic", "list"], b"").ok(), "orders\t3\n");
    spate(address, &["topic", "describe", "audit"], b"").fails_with(4);
}

#[test]
fn produce_and_consume_carry_keys_partitions_headers_and_every_format_token() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "events", "--partitions", "2"],
        b"",
    )
    .ok();
    let before = now_ms();
    let produced = spate(
        address,
        &[
            "produce",
            "events",
            "--key-separator",
            "::",
            "--header",
            "source=test",
            "--header",
            "run=1",
        ],
        b"k1::first\nk2::second\nk1::third: with a colon\n",
    )
    .ok();
    assert_eq!(produced, "3 records acknowledged\n");
    let after = now_ms();

    let lines = spate(
        address,
        &[
            "consume",
            "events",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%t|%p|%o|%k|%v|%h|%T|%%",
        ],
        b"",
    )
    .ok();
    let mut seen: Vec<(u32, u64, String, String)> = Vec::new();
    for line in lines.lines() {
        let fields: Vec<&str> = line.split('|').collect();
        assert_eq!(fields.len(), 8, "{line}");
        assert_eq!(fields[0], "events");
        let partition: u32 = fields[1].parse().unwrap();
        assert_eq!(
            partition,
            partition_for_key(fields[3].as_bytes(), 2),
            "{line}"
        );
        assert_eq!(fields[5], "source=test,run=1");
        let timestamp: i64 = fields[6].parse().unwrap();
        // The producer stamps records from the kernel's coarse wall clock, which trails the
        // precise clock by up to one scheduler tick (10 ms at HZ=100): allow that much early.
        let coarse_clock_lag_ms_max = 50;
        assert!(
            (before - coarse_clock_lag_ms_max..=after).contains(&timestamp),
            "{line} not within [{before} - {coarse_clock_lag_ms_max}, {after}]"
        );
        assert_eq!(fields[7], "%");
        seen.push((
            partition,
            fields[2].parse().unwrap(),
            fields[3].into(),
            fields[4].into(),
        ));
    }
    seen.sort();
    // Offsets follow the input order within each partition.
    let mut next_offset = [0u64; 2];
    let mut expected: Vec<(u32, u64, String, String)> = [
        ("k1", "first"),
        ("k2", "second"),
        ("k1", "third: with a colon"),
    ]
    .into_iter()
    .map(|(key, value)| {
        let partition = partition_for_key(key.as_bytes(), 2);
        let offset = next_offset[partition as usize];
        next_offset[partition as usize] += 1;
        (partition, offset, key.to_string(), value.to_string())
    })
    .collect();
    expected.sort();
    let k2 = partition_for_key(b"k2", 2);
    assert_eq!(seen, expected);

    let json = spate(
        address,
        &[
            "consume",
            "events",
            "--partition",
            &k2.to_string(),
            "--from-beginning",
            "--exit-at-end",
            "--json",
        ],
        b"",
    )
    .ok();
    let second = json
        .lines()
        .find(|line| line.contains("\"value\":\"second\""))
        .unwrap_or_else(|| panic!("{json}"));
    assert!(
        second.starts_with("{\"topic\":\"events\",\"partition\":"),
        "{second}"
    );
    assert!(second.contains("\"key\":\"k2\""), "{second}");
    assert!(
        second.ends_with("\"headers\":[[\"source\",\"test\"],[\"run\",\"1\"]]}"),
        "{second}"
    );

    // Default output is the value alone; --partition and --acks steer produce.
    let produced = spate(
        address,
        &["produce", "events", "--partition", "1", "--acks", "leader"],
        b"one\ntwo\n",
    )
    .ok();
    assert_eq!(produced, "2 records acknowledged\n");
    let unacknowledged = spate(
        address,
        &["produce", "events", "--partition", "1", "--acks", "none"],
        b"three\n",
    )
    .ok();
    assert!(
        unacknowledged.starts_with("1 record sent"),
        "{unacknowledged}"
    );
    // acks=none gets no answer, so nothing says when "three" is stored and visible: read until
    // it shows up (or the deadline passes), then check the order.
    let deadline = Instant::now() + Duration::from_secs(30);
    let tail = loop {
        let mut values: Vec<String> = spate(
            address,
            &[
                "consume",
                "events",
                "--partition",
                "1",
                "--from-beginning",
                "--exit-at-end",
            ],
            b"",
        )
        .ok()
        .lines()
        .map(str::to_string)
        .collect();
        let tail = values.split_off(values.len().saturating_sub(3));
        if tail.last().map(String::as_str) == Some("three") || Instant::now() >= deadline {
            break tail;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(tail, vec!["one", "two", "three"]);
}

#[test]
fn consume_starts_at_an_offset_or_a_time_and_stops_at_a_count() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "log"], b"").ok();
    spate(address, &["produce", "log"], b"a0\na1\na2\na3\n").ok();
    std::thread::sleep(Duration::from_millis(50));
    let boundary = now_ms();
    std::thread::sleep(Duration::from_millis(50));
    spate(address, &["produce", "log"], b"b0\nb1\n").ok();

    let from_offset = spate(
        address,
        &["consume", "log", "--offset", "2", "--exit-at-end"],
        b"",
    )
    .ok();
    assert_eq!(from_offset, "a2\na3\nb0\nb1\n");
    let from_time = spate(
        address,
        &[
            "consume",
            "log",
            "--from-timestamp",
            &boundary.to_string(),
            "--exit-at-end",
        ],
        b"",
    )
    .ok();
    assert_eq!(from_time, "b0\nb1\n");
    let counted = spate(
        address,
        &["consume", "log", "--from-beginning", "--count", "3"],
        b"",
    )
    .ok();
    assert_eq!(counted, "a0\na1\na2\n");
    let at_end = spate(address, &["consume", "log", "--exit-at-end"], b"").ok();
    assert_eq!(
        at_end, "",
        "the default start is the end: nothing old is printed"
    );
}

#[test]
fn failures_exit_non_zero_with_one_line_errors() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "present"], b"").ok();

    let unreachable = spate(
        dead_address(),
        &["--timeout-ms", "200", "topic", "list"],
        b"",
    )
    .fails_with(3);
    assert!(unreachable.contains("cannot connect"), "{unreachable}");
    let produce_unknown = spate(address, &["produce", "absent"], b"x\n").fails_with(4);
    assert!(produce_unknown.contains("absent"), "{produce_unknown}");
    spate(address, &["consume", "absent", "--exit-at-end"], b"").fails_with(4);
    spate(address, &["produce", "present", "--partition", "7"], b"x\n").fails_with(4);
    let no_separator = spate(
        address,
        &["produce", "present", "--key-separator", "="],
        b"k=v\nno separator here\n",
    )
    .fails_with(1);
    assert!(no_separator.contains("record 2"), "{no_separator}");
    let bad_format = spate(address, &["consume", "present", "--format", "%x"], b"").fails_with(2);
    assert!(bad_format.contains("%x"), "{bad_format}");

    let usage = spate(address, &["consume"], b"");
    assert_eq!(usage.code, 2, "a usage error: {}", usage.stderr);
    let conflicting = spate(
        address,
        &["consume", "present", "--from-beginning", "--offset", "3"],
        b"",
    );
    assert_eq!(conflicting.code, 2, "{}", conflicting.stderr);

    // SPATE_BROKER is the default broker address.
    let output = Command::new(spate_binary())
        .args(["topic", "list"])
        .env("SPATE_BROKER", address.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run spate");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "present\t1\n");
}

#[test]
fn pipes_get_plain_output_and_a_terminal_gets_colour() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "plain"], b"").ok();
    let produced = spate(address, &["produce", "plain"], b"x\ny\n");
    assert!(!produced.stdout.contains('\x1b') && !produced.stderr.contains('\x1b'));
    let listed = spate(address, &["topic", "list"], b"").ok();
    assert!(!listed.contains('\x1b'), "{listed:?}");
    let failed = spate(address, &["topic", "describe", "missing"], b"");
    assert!(!failed.stderr.contains('\x1b'), "{:?}", failed.stderr);

    // Under a pseudo-terminal (util-linux `script`), headings are bold.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping the terminal half: `script` is not installed");
        return;
    }
    let line = format!("{} --broker {address} topic list", spate_binary().display());
    let mut command = Command::new("script");
    command.args(["-qec", &line, "/dev/null"]);
    let on_terminal = run(command, b"");
    assert_eq!(on_terminal.code, 0, "{}", on_terminal.stderr);
    assert!(
        on_terminal.stdout.contains("\x1b[1mTOPIC"),
        "{:?}",
        on_terminal.stdout
    );
}

#[test]
fn consume_ends_quietly_when_its_reader_goes_away() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "endless"], b"").ok();
    let lines: String = (0..20_000)
        .map(|number| format!("line-{number}\n"))
        .collect();
    spate(address, &["produce", "endless"], lines.as_bytes()).ok();

    // Like `spate consume endless --from-beginning | head -1`: no --count, no --exit-at-end.
    let mut child = Command::new(spate_binary())
        .args(["--broker", &address.to_string()])
        .args(["consume", "endless", "--from-beginning"])
        .env_remove("SPATE_BROKER")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert_eq!(first, "line-0\n");
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "consume kept running without a reader"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
