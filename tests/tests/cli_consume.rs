//! End-to-end: `spate consume` the way kcat and rpk users reach for it (offsets relative,
//! symbolic, ranged and by time; several topics; encodings, sizes, dates and a null marker in the
//! output) and `spate produce`'s delimiters, fixed keys, whole-file records and keyless spread.

mod cli_support;

use std::net::SocketAddr;

use spate_tests::{Broker, BrokerOptions};

use cli_support::spate;

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

/// `spate consume ARGS... --format FORMAT`, lines sorted (partitions interleave in any order).
fn consumed(address: SocketAddr, arguments: &[&str], format: &str) -> Vec<String> {
    let mut all = vec!["consume"];
    all.extend_from_slice(arguments);
    all.extend_from_slice(&["--format", format]);
    let mut lines: Vec<String> = spate(address, &all, b"")
        .ok()
        .lines()
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

/// A topic with partitions 0, 1 and 2 holding 2, 5 and 10 records `p<P>-<N>`.
fn uneven_topic(address: SocketAddr, topic: &str) {
    spate(
        address,
        &["topic", "create", topic, "--partitions", "3"],
        b"",
    )
    .ok();
    for (partition, count) in [(0, 2), (1, 5), (2, 10)] {
        let input: String = (0..count)
            .map(|number| format!("p{partition}-{number}\n"))
            .collect();
        spate(
            address,
            &["produce", topic, "-p", &partition.to_string()],
            input.as_bytes(),
        )
        .ok();
    }
}

#[test]
fn an_absolute_offset_reads_where_it_exists_and_names_the_partitions_skipped() {
    let broker = broker();
    let address = broker.address();
    uneven_topic(address, "orders");
    let run = spate(address, &["consume", "orders", "-o", "3", "-e"], b"");
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut values: Vec<&str> = run.stdout.lines().collect();
    values.sort();
    assert_eq!(
        values,
        vec!["p1-3", "p1-4", "p2-3", "p2-4", "p2-5", "p2-6", "p2-7", "p2-8", "p2-9"]
    );
    assert!(
        run.stderr
            .contains("offset 3 is past the end of orders/0 (end 2): skipped"),
        "{}",
        run.stderr
    );
    let nowhere = spate(address, &["consume", "orders", "-o", "99", "-e"], b"");
    assert_eq!(nowhere.code, 0, "{}", nowhere.stderr);
    assert_eq!(nowhere.stdout, "");
    assert!(
        nowhere
            .stderr
            .contains("orders/0 (end 2), orders/1 (end 5), orders/2 (end 10)"),
        "{}",
        nowhere.stderr
    );
}

#[test]
fn relative_symbolic_and_ranged_offsets_apply_to_each_partition() {
    let broker = broker();
    let address = broker.address();
    uneven_topic(address, "orders");
    assert_eq!(
        consumed(address, &["orders", "-o", "-2", "-e"], "%v"),
        vec!["p0-0", "p0-1", "p1-3", "p1-4", "p2-8", "p2-9"]
    );
    assert_eq!(
        consumed(address, &["orders", "-o", "+4", "-e"], "%v"),
        vec!["p1-4", "p2-4", "p2-5", "p2-6", "p2-7", "p2-8", "p2-9"]
    );
    assert_eq!(
        consumed(address, &["orders", "-o", "start:+1"], "%v"),
        vec!["p0-0", "p1-0", "p2-0"]
    );
    assert_eq!(
        consumed(address, &["orders", "-p", "2", "-o", "4:6"], "%o"),
        vec!["4", "5"]
    );
    assert_eq!(
        consumed(address, &["orders", "-o", "end", "-e"], "%v"),
        Vec::<String>::new()
    );
    assert_eq!(
        consumed(address, &["orders", "-o", "start:end"], "%v").len(),
        17
    );
}

#[test]
fn time_offsets_take_epoch_ms_dates_and_durations_before_now() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "log"], b"").ok();
    spate(address, &["produce", "log"], b"a\nb\n").ok();
    // Everything was written within the last hour and after 2020; nothing after 2100.
    assert_eq!(
        consumed(address, &["log", "-o", "@-1h", "-e"], "%v"),
        ["a", "b"]
    );
    assert_eq!(
        consumed(address, &["log", "-o", "@2020-01-01T00:00:00Z", "-e"], "%v"),
        ["a", "b"]
    );
    assert_eq!(
        consumed(address, &["log", "-o", "@2100-01-01", "-e"], "%v"),
        Vec::<String>::new()
    );
    assert_eq!(
        consumed(address, &["log", "-o", "@1577836800000:@2100-01-01"], "%v"),
        ["a", "b"]
    );
    let dated = consumed(address, &["log", "-o", "start", "-e"], "%d");
    assert!(
        dated
            .iter()
            .all(|date| date.len() == 24 && date.ends_with('Z')),
        "{dated:?}"
    );
}

#[test]
fn several_topics_are_read_together() {
    let broker = broker();
    let address = broker.address();
    for topic in ["left", "right"] {
        spate(address, &["topic", "create", topic], b"").ok();
        spate(
            address,
            &["produce", topic],
            format!("{topic}-1\n").as_bytes(),
        )
        .ok();
    }
    assert_eq!(
        consumed(address, &["left", "right", "-o", "start", "-e"], "%t:%v"),
        ["left:left-1", "right:right-1"]
    );
    // A topic starting with ^ is a pattern, as in kcat; a name it also matches is read once.
    spate(address, &["topic", "create", "other"], b"").ok();
    assert_eq!(
        consumed(
            address,
            &["^(left|right)$", "left", "-o", "start", "-e"],
            "%t:%v"
        ),
        ["left:left-1", "right:right-1"]
    );
    // kcat's -t names topics too, for produce and consume.
    spate(address, &["produce", "-t", "other"], b"other-1\n").ok();
    assert_eq!(
        consumed(
            address,
            &["-t", "other", "-t", "left", "-o", "start", "-e"],
            "%t:%v"
        ),
        ["left:left-1", "other:other-1"]
    );
    let none = spate(address, &["consume", "^nothing", "-e"], b"").fails_with(4);
    assert!(none.contains("no topic matches ^nothing"), "{none}");
    spate(address, &["consume", "^[", "-e"], b"").fails_with(2);
}

#[test]
fn keys_and_values_print_as_hex_base64_sizes_and_a_null_marker() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "bytes"], b"").ok();
    // A keyless record, an empty key, and bytes that are not UTF-8.
    spate(address, &["produce", "bytes"], b"plain\n").ok();
    spate(
        address,
        &["produce", "bytes", "-K", "="],
        b"=empty key\n\xff\xfe=\x00\x01\n",
    )
    .ok();
    let template = spate(
        address,
        &[
            "consume",
            "bytes",
            "-o",
            "start",
            "-e",
            "-Z",
            "NULL",
            "-f",
            "%k{hex}|%K|%S|%v{base64}",
        ],
        b"",
    )
    .ok();
    assert_eq!(
        template,
        "NULL|-1|5|cGxhaW4=\n|0|9|ZW1wdHkga2V5\nfffe|2|2|AAE=\n"
    );
}

#[test]
fn json_keeps_every_byte_in_hex_or_base64_and_tells_a_null_key_from_an_empty_one() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "bytes"], b"").ok();
    spate(address, &["produce", "bytes"], b"plain\n").ok();
    spate(
        address,
        &["produce", "bytes", "-K", "="],
        b"=v\n\xff=\x00\n",
    )
    .ok();
    let read = |encoding: &str| -> Vec<String> {
        spate(
            address,
            &[
                "consume",
                "bytes",
                "-o",
                "start",
                "-e",
                "-J",
                "--encoding",
                encoding,
            ],
            b"",
        )
        .ok()
        .lines()
        .map(str::to_string)
        .collect()
    };
    let hex = read("hex");
    assert!(
        hex[0].contains("\"key\":null,\"value\":\"706c61696e\""),
        "{}",
        hex[0]
    );
    assert!(
        hex[1].contains("\"key\":\"\",\"value\":\"76\""),
        "{}",
        hex[1]
    );
    assert!(
        hex[2].contains("\"key\":\"ff\",\"value\":\"00\""),
        "{}",
        hex[2]
    );
    let base64 = read("base64");
    assert!(
        base64[2].contains("\"key\":\"/w==\",\"value\":\"AA==\""),
        "{}",
        base64[2]
    );
}

#[test]
fn produce_splits_at_a_custom_delimiter_takes_a_fixed_key_or_the_whole_input() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "input"], b"").ok();
    let produced = spate(
        address,
        &["produce", "input", "-D", "|", "-k", "fixed"],
        b"a|b\nc|",
    )
    .ok();
    assert_eq!(produced, "2 records acknowledged\n");
    let whole = spate(address, &["produce", "input", "-l"], b"line 1\nline 2\n").ok();
    assert_eq!(whole, "1 record acknowledged\n");
    let printed = spate(
        address,
        &["consume", "input", "-o", "start", "-e", "-J"],
        b"",
    )
    .ok();
    let lines: Vec<&str> = printed.lines().collect();
    assert_eq!(lines.len(), 3, "{printed}");
    assert!(
        lines[0].contains("\"key\":\"fixed\",\"value\":\"a\""),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains("\"key\":\"fixed\",\"value\":\"b\\nc\""),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].contains("\"key\":null,\"value\":\"line 1\\nline 2\\n\""),
        "{}",
        lines[2]
    );
}

#[test]
fn one_line_produces_without_keys_spread_over_the_partitions() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "spread", "--partitions", "3"],
        b"",
    )
    .ok();
    // Each producer picks a random first partition: twelve all on one has a chance of 3^-11.
    for number in 0..12 {
        spate(
            address,
            &["produce", "spread"],
            format!("{number}\n").as_bytes(),
        )
        .ok();
    }
    let mut partitions = consumed(address, &["spread", "-o", "start", "-e"], "%p");
    partitions.dedup();
    assert!(
        partitions.len() > 1,
        "every record in partition {partitions:?}"
    );
}

#[test]
fn dates_print_through_a_strftime_pattern_and_a_bad_pattern_is_a_usage_error() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "dated"], b"").ok();
    spate(
        address,
        &["produce", "dated", "-f", "%T %v\\n"],
        b"1772348889045 late\n",
    )
    .ok();
    let printed = consumed(
        address,
        &["dated", "-o", "start", "-e"],
        "%d{strftime[%Y-%m-%d %H:%M:%S.%L %Z]}|%d|%v",
    );
    assert_eq!(
        printed,
        ["2026-03-01 07:08:09.045 UTC|2026-03-01T07:08:09.045Z|late"]
    );
    spate(
        address,
        &["consume", "dated", "-e", "-f", "%d{strftime[%Q]}"],
        b"",
    )
    .fails_with(2);
}

#[test]
fn a_tailing_consumer_waits_for_an_absolute_offset_that_does_not_exist_yet() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "later"], b"").ok();
    spate(address, &["produce", "later"], b"v0\nv1\n").ok();
    let mut consumer = std::process::Command::new(cli_support::spate_binary())
        .args(["-b", &address.to_string()])
        .args(["consume", "later", "-o", "3", "-c", "2", "-f", "%o:%v"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spate starts");
    // The partition is named before the consumer reads; only then do offsets 2 to 4 appear.
    let mut notice = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(consumer.stderr.take().expect("stderr")),
        &mut notice,
    )
    .expect("stderr is readable");
    assert!(notice.contains("later/0 (end 2)"), "{notice}");
    spate(address, &["produce", "later"], b"v2\nv3\nv4\n").ok();
    let finished = consumer.wait_with_output().expect("spate ends");
    assert!(finished.status.success(), "{finished:?}");
    assert_eq!(String::from_utf8_lossy(&finished.stdout), "3:v3\n4:v4\n");
}

#[test]
fn stored_offsets_continue_a_group_and_need_one() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "ledger"], b"").ok();
    spate(address, &["produce", "ledger"], b"first\nsecond\n").ok();
    let read = |arguments: &[&str]| {
        let mut all = vec!["consume", "ledger", "-G", "audit", "-e"];
        all.extend_from_slice(arguments);
        spate(address, &all, b"").ok()
    };
    assert_eq!(read(&["--from-beginning"]), "first\nsecond\n");
    spate(address, &["produce", "ledger"], b"third\n").ok();
    assert_eq!(read(&["-o", "stored"]), "third\n");
    let without_group =
        spate(address, &["consume", "ledger", "-o", "stored", "-e"], b"").fails_with(2);
    assert!(without_group.contains("--group"), "{without_group}");
    spate(
        address,
        &["consume", "ledger", "-G", "audit", "-o", "start", "-e"],
        b"",
    )
    .fails_with(2);
}

#[test]
fn produce_reads_keys_values_and_timestamps_through_an_input_template() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "shaped"], b"").ok();
    let produced = spate(
        address,
        &["produce", "shaped", "-f", "%k %v\\n"],
        b"alice paid in full\nbob refunded\n",
    )
    .ok();
    assert_eq!(produced, "2 records acknowledged\n");
    spate(
        address,
        &["produce", "shaped", "-f", "[%T] %v;"],
        b"[1767225600000] dated;",
    )
    .ok();
    let printed = consumed(
        address,
        &["shaped", "-o", "start", "-e", "-Z", "-"],
        "%k|%v|%T",
    );
    assert_eq!(printed.len(), 3, "{printed:?}");
    assert_eq!(printed[0], "-|dated|1767225600000");
    assert!(printed[1].starts_with("alice|paid in full|"), "{printed:?}");
    assert!(printed[2].starts_with("bob|refunded|"), "{printed:?}");
    let mismatch = spate(
        address,
        &["produce", "shaped", "-f", "%k %v\\n"],
        b"carol ok\nnospace\n",
    )
    .fails_with(1);
    assert!(
        mismatch.contains("record 2 does not match the --format template"),
        "{mismatch}"
    );
}

#[test]
fn a_query_prints_where_each_partition_starts_and_reads_nothing() {
    let broker = broker();
    let address = broker.address();
    uneven_topic(address, "orders");
    let queried = spate(address, &["consume", "orders", "-Q", "-o", "-2"], b"").ok();
    assert_eq!(queried, "orders\t0\t0\norders\t1\t3\norders\t2\t8\n");
    let future = spate(
        address,
        &["consume", "orders", "-Q", "-o", "@2100-01-01"],
        b"",
    )
    .ok();
    assert_eq!(future, "orders\t0\t2\norders\t1\t5\norders\t2\t10\n");
}

#[test]
fn a_tailing_consumer_on_a_terminal_says_it_is_reconnecting_and_goes_on() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: `script` is not installed");
        return;
    }
    let mut broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "tail"], b"").ok();
    // Under a pseudo-terminal (util-linux `script`), as a person runs it.
    let line = format!(
        "{} --broker {address} consume tail",
        cli_support::spate_binary().display()
    );
    /// Ends the terminal session however the test ends, so no consumer outlives it.
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new("script")
            .args(["-qfec", &line, "/dev/null"])
            .env_remove("SPATE_BROKER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = child.0.stdout.take().unwrap();
    let reader_seen = seen.clone();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(read) = stdout.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buffer[..read]).into_owned();
            reader_seen.lock().unwrap().push_str(&text);
        }
    });
    let wait_for = |text: &str, produce: Option<&str>| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !seen.lock().unwrap().contains(text) {
            assert!(
                Instant::now() < deadline,
                "never saw {text:?}: {:?}",
                seen.lock().unwrap()
            );
            if let Some(value) = produce {
                spate(
                    address,
                    &["produce", "tail"],
                    format!("{value}\n").as_bytes(),
                )
                .ok();
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    // The consumer starts at the end: once a record written now shows, it is tailing.
    wait_for("ping", Some("ping"));
    broker.kill();
    wait_for("reconnecting", None);
    broker.restart();
    wait_for("after", Some("after"));
    wait_for("reconnected", None);
}
