//! End-to-end: the admin side of `spate` (topics, groups, the cluster) against the real broker,
//! as a user and as a script (`--json`) run it: what each command prints, what it refuses and
//! with which exit code.

mod cli_support;

use serde_json::Value;
use spate_tests::{Broker, BrokerOptions};

use cli_support::spate;

fn broker() -> Broker {
    Broker::start(BrokerOptions::default())
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text:?}"))
}

#[test]
fn topic_alter_takes_a_reset_alone_and_refuses_contradictions_clearly() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--retention-ms", "1000"],
        b"",
    )
    .ok();

    let reset = spate(
        address,
        &["topic", "alter", "orders", "--reset", "retention.ms"],
        b"",
    )
    .ok();
    assert_eq!(reset, "altered topic orders\n");
    let described = spate(address, &["topic", "describe", "orders"], b"").ok();
    assert!(!described.contains("retention.ms=1000"), "{described}");

    let nothing = spate(address, &["topic", "alter", "orders"], b"").fails_with(2);
    assert!(nothing.contains("--reset"), "{nothing}");

    for command in [
        &["topic", "alter", "orders"][..],
        &["topic", "create", "other"][..],
    ] {
        let mut arguments = command.to_vec();
        arguments.extend(["--config", "retention.ms=5", "--retention-ms", "10"]);
        let conflict = spate(address, &arguments, b"").fails_with(2);
        assert!(
            conflict.contains("--retention-ms 10") && conflict.contains("retention.ms=5"),
            "{conflict}"
        );
    }
    let both = spate(
        address,
        &[
            "topic",
            "alter",
            "orders",
            "--config",
            "segment.ms=60000",
            "--reset",
            "segment.ms",
        ],
        b"",
    )
    .fails_with(2);
    assert!(both.contains("segment.ms"), "{both}");
    spate(address, &["topic", "describe", "other"], b"").fails_with(4);

    let unknown = spate(
        address,
        &["topic", "alter", "orders", "--config", "colour=blue"],
        b"",
    )
    .fails_with(1);
    for key in [
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "durability",
    ] {
        assert!(
            unknown.contains(key),
            "the valid keys are listed: {unknown}"
        );
    }

    let duplicate = spate(address, &["topic", "create", "orders"], b"").fails_with(1);
    assert_eq!(duplicate, "error: topic orders already exists");
}

#[test]
fn topic_list_hides_the_brokers_own_topics_unless_asked() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "orders"], b"").ok();
    spate(address, &["produce", "orders"], b"one\n").ok();
    // A group's first commit creates the broker's offsets topic.
    spate(
        address,
        &[
            "consume",
            "orders",
            "--group",
            "billing",
            "--from-beginning",
            "--exit-at-end",
        ],
        b"",
    )
    .ok();

    assert_eq!(spate(address, &["topic", "list"], b"").ok(), "orders\t1\n");
    let everything = spate(address, &["topic", "list", "--internal"], b"").ok();
    assert!(
        everything.contains("__consumer_offsets\t") && everything.contains("orders\t1\n"),
        "{everything}"
    );
    assert_eq!(
        spate(address, &["topic", "list", "-a"], b"").ok(),
        everything
    );
}

#[test]
fn topic_delete_takes_several_names_or_a_regex() {
    let broker = broker();
    let address = broker.address();
    for name in ["a", "b", "c", "logs-1", "logs-2", "logs"] {
        spate(address, &["topic", "create", name], b"").ok();
    }

    assert_eq!(
        spate(address, &["topic", "delete", "a", "b"], b"").ok(),
        "deleted topic a\ndeleted topic b\n"
    );
    // Whole names only: `logs-.*` leaves `logs`.
    assert_eq!(
        spate(address, &["topic", "delete", "--regex", "logs-.*"], b"").ok(),
        "deleted topic logs-1\ndeleted topic logs-2\n"
    );
    assert_eq!(
        spate(address, &["topic", "list"], b"").ok(),
        "c\t1\nlogs\t1\n"
    );

    let none = spate(address, &["topic", "delete", "--regex", "nothing.*"], b"").fails_with(1);
    assert!(none.contains("no topic matches"), "{none}");
    let bad = spate(address, &["topic", "delete", "--regex", "("], b"").fails_with(2);
    assert!(bad.contains("--regex"), "{bad}");
    let both = spate(address, &["topic", "delete", "c", "--regex", "c"], b"");
    assert_eq!(both.code, 2, "names and --regex together: {}", both.stderr);

    // One missing name does not stop the others, and the exit code says what went wrong.
    let run = spate(address, &["topic", "delete", "c", "missing"], b"");
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert_eq!(run.stdout, "deleted topic c\n");
    assert!(run.stderr.contains("missing"), "{}", run.stderr);
    assert_eq!(spate(address, &["topic", "list"], b"").ok(), "logs\t1\n");
}

#[test]
fn topic_trim_deletes_the_records_below_an_offset() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    for partition in ["0", "1"] {
        spate(
            address,
            &["produce", "orders", "--partition", partition],
            b"one\ntwo\nthree\n",
        )
        .ok();
    }

    let trimmed = spate(
        address,
        &[
            "topic",
            "trim",
            "orders",
            "--partition",
            "0",
            "--offset",
            "2",
        ],
        b"",
    )
    .ok();
    assert_eq!(trimmed, "orders\t0\t2\n");
    let read = spate(
        address,
        &[
            "consume",
            "orders",
            "--partition",
            "0",
            "--from-beginning",
            "--exit-at-end",
        ],
        b"",
    )
    .ok();
    assert_eq!(read, "three\n");

    let everything = spate(
        address,
        &["topic", "trim", "orders", "--offset", "end"],
        b"",
    )
    .ok();
    assert_eq!(everything, "orders\t0\t3\norders\t1\t3\n");
    let beyond = spate(
        address,
        &[
            "topic",
            "trim",
            "orders",
            "--partition",
            "1",
            "--offset",
            "9",
        ],
        b"",
    )
    .fails_with(1);
    assert!(beyond.contains("orders/1"), "{beyond}");
    spate(
        address,
        &[
            "topic",
            "trim",
            "orders",
            "--partition",
            "7",
            "--offset",
            "0",
        ],
        b"",
    )
    .fails_with(4);
}

#[test]
fn topic_commands_print_one_json_document_with_json() {
    let broker = broker();
    let address = broker.address();
    let created = json(
        &spate(
            address,
            &["topic", "create", "orders", "--partitions", "2", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(created["topic"], "orders");
    assert_eq!(created["partitions"], 2);

    let listed = json(&spate(address, &["topic", "list", "--json"], b"").ok());
    assert_eq!(
        listed,
        json(r#"[{"topic":"orders","partitions":2}]"#),
        "{listed}"
    );

    let altered = json(
        &spate(
            address,
            &[
                "topic",
                "alter",
                "orders",
                "--retention-ms",
                "60000",
                "--json",
            ],
            b"",
        )
        .ok(),
    );
    assert_eq!(altered["set"]["retention.ms"], "60000");

    spate(
        address,
        &["produce", "orders", "--partition", "1"],
        b"x\ny\n",
    )
    .ok();
    let described = json(&spate(address, &["topic", "describe", "orders", "--json"], b"").ok());
    assert_eq!(described["topic"], "orders");
    assert_eq!(described["partitions"][1]["high_watermark"], 2);
    assert_eq!(described["partitions"][1]["log_start_offset"], 0);
    assert!(described["partitions"][0]["shard"].is_u64(), "{described}");
    assert_eq!(described["configs"]["retention.ms"]["value"], "60000");
    assert_eq!(described["configs"]["retention.ms"]["source"], "topic");
    assert_eq!(described["configs"]["segment.ms"]["source"], "default");

    let trimmed = json(
        &spate(
            address,
            &["topic", "trim", "orders", "--offset", "end", "--json"],
            b"",
        )
        .ok(),
    );
    assert_eq!(trimmed["partitions"][1]["log_start_offset"], 2);

    let deleted = json(&spate(address, &["topic", "delete", "orders", "--json"], b"").ok());
    assert_eq!(deleted, json(r#"[{"topic":"orders","deleted":true}]"#));
}

/// Produces `count` records to each of `partitions` partitions of `topic`.
fn produce_to_each(address: std::net::SocketAddr, topic: &str, partitions: u32, count: usize) {
    let input = "record\n".repeat(count);
    for partition in 0..partitions {
        spate(
            address,
            &["produce", topic, "--partition", &partition.to_string()],
            input.as_bytes(),
        )
        .ok();
    }
}

/// Reads all of `topic` as a member of `group`, committing the end of every partition.
fn consume_all(address: std::net::SocketAddr, topic: &str, group: &str) {
    spate(
        address,
        &[
            "consume",
            topic,
            "--group",
            group,
            "--from-beginning",
            "--exit-at-end",
        ],
        b"",
    )
    .ok();
}

/// The committed column of `group describe` for `topic`, per partition.
fn committed(address: std::net::SocketAddr, group: &str, topic: &str) -> Vec<(u32, u64)> {
    let described = spate(address, &["group", "describe", group], b"").ok();
    described
        .lines()
        .filter(|line| line.starts_with(&format!("{topic}\t")))
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            (columns[1].parse().unwrap(), columns[2].parse().unwrap())
        })
        .collect()
}

#[test]
fn group_reset_offsets_is_a_dry_run_unless_executed_and_takes_partitions_and_shifts() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    produce_to_each(address, "orders", 2, 3);
    consume_all(address, "orders", "billing");
    assert_eq!(
        committed(address, "billing", "orders"),
        vec![(0, 3), (1, 3)]
    );

    let reset = |arguments: &[&str]| {
        let mut all = vec!["group", "reset-offsets", "billing"];
        all.extend_from_slice(arguments);
        spate(address, &all, b"")
    };
    let dry = reset(&["--topic", "orders", "--to-earliest"]);
    assert_eq!(dry.code, 0, "{}", dry.stderr);
    assert_eq!(dry.stdout, "orders\t0\t3\t0\norders\t1\t3\t0\n");
    assert!(dry.stderr.contains("--execute"), "{}", dry.stderr);
    assert_eq!(
        committed(address, "billing", "orders"),
        vec![(0, 3), (1, 3)],
        "a dry run moves nothing"
    );
    assert_eq!(
        reset(&["--topic", "orders", "--to-earliest", "--dry-run"]).ok(),
        dry.stdout
    );

    let shifted = reset(&["--topic", "orders:1", "--shift-by", "-2", "--execute"]).ok();
    assert_eq!(shifted, "orders\t1\t3\t1\n");
    assert_eq!(
        committed(address, "billing", "orders"),
        vec![(0, 3), (1, 1)]
    );

    // New offsets stay within the log, as with Kafka's tool.
    assert_eq!(
        reset(&["--topic", "orders:0,1", "--shift-by", "-10"]).ok(),
        "orders\t0\t3\t0\norders\t1\t1\t0\n"
    );
    assert_eq!(
        reset(&["--topic", "orders:1", "--shift-by", "10"]).ok(),
        "orders\t1\t1\t3\n"
    );
    assert_eq!(
        reset(&["--topic", "orders:0", "--to-offset", "99"]).ok(),
        "orders\t0\t3\t3\n"
    );

    let planned = json(&reset(&["--topic", "orders:1", "--to-latest", "--json"]).ok());
    assert_eq!(
        planned,
        json(
            r#"{"group":"billing","executed":false,"partitions":
                [{"topic":"orders","partition":1,"current_offset":1,"new_offset":3}]}"#
        )
    );

    reset(&["--topic", "orders:5", "--to-earliest"]).fails_with(4);
    reset(&["--topic", "orders:x", "--to-earliest"]).fails_with(2);
    reset(&[
        "--topic",
        "orders",
        "--to-earliest",
        "--execute",
        "--dry-run",
    ])
    .fails_with(2);
    let nothing_to_shift = spate(
        address,
        &[
            "group",
            "reset-offsets",
            "fresh",
            "--topic",
            "orders",
            "--shift-by",
            "1",
        ],
        b"",
    )
    .fails_with(1);
    assert!(
        nothing_to_shift.contains("no committed offset"),
        "{nothing_to_shift}"
    );
}

#[test]
fn group_delete_offsets_removes_offsets_but_not_those_of_a_subscribed_topic() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    spate(address, &["topic", "create", "audit"], b"").ok();
    produce_to_each(address, "orders", 2, 2);
    produce_to_each(address, "audit", 1, 2);
    consume_all(address, "orders", "billing");
    consume_all(address, "audit", "billing");

    assert_eq!(
        spate(
            address,
            &["group", "delete-offsets", "billing", "--topic", "orders:0"],
            b""
        )
        .ok(),
        "deleted offset of group billing on orders/0\n"
    );
    assert_eq!(committed(address, "billing", "orders"), vec![(1, 2)]);
    let deleted = json(
        &spate(
            address,
            &[
                "group",
                "delete-offsets",
                "billing",
                "--topic",
                "orders",
                "--json",
            ],
            b"",
        )
        .ok(),
    );
    assert_eq!(
        deleted,
        json(r#"{"group":"billing","deleted":[{"topic":"orders","partition":1}]}"#)
    );
    let none = spate(
        address,
        &["group", "delete-offsets", "billing", "--topic", "orders"],
        b"",
    )
    .fails_with(1);
    assert!(none.contains("no committed offset"), "{none}");
    assert_eq!(committed(address, "billing", "audit"), vec![(0, 2)]);

    // A live member subscribed to audit: its offsets stay. The member runs with a short
    // session, so once killed with -9 the group is empty again long before the 45 s default.
    let mut member = std::process::Command::new(cli_support::spate_binary())
        .args(["--broker", &address.to_string()])
        .args(["consume", "audit", "--group", "billing"])
        .args(["--session-timeout-ms", "1000"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start a group member");
    let stable = wait_for_state(address, "billing", "Stable", 60);
    if !stable {
        let _ = member.kill();
        panic!("the member never joined");
    }
    let refused = spate(
        address,
        &["group", "delete-offsets", "billing", "--topic", "audit"],
        b"",
    );
    member.kill().expect("kill -9 the member");
    member.wait().expect("reap the member");
    let refused = refused.fails_with(1);
    assert!(refused.contains("audit"), "{refused}");
    assert_eq!(committed(address, "billing", "audit"), vec![(0, 2)]);
    assert!(
        wait_for_state(address, "billing", "Empty", 30),
        "the killed member's 1 s session ended"
    );
}

/// Polls `group describe` until the group is in `state`, for at most `seconds`.
fn wait_for_state(address: std::net::SocketAddr, group: &str, state: &str, seconds: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(seconds);
    while std::time::Instant::now() < deadline {
        let described = spate(address, &["group", "describe", group], b"");
        if described.code == 0 && described.stdout.contains(&format!("state\t{state}\n")) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    false
}

#[test]
fn group_commands_print_one_json_document_with_json() {
    let broker = broker();
    let address = broker.address();
    spate(address, &["topic", "create", "orders"], b"").ok();
    produce_to_each(address, "orders", 1, 2);
    consume_all(address, "orders", "billing");

    let listed = json(&spate(address, &["group", "list", "--json"], b"").ok());
    assert_eq!(
        listed,
        json(r#"[{"group":"billing","state":"Empty","protocol_type":"consumer"}]"#)
    );
    let described = json(&spate(address, &["group", "describe", "billing", "--json"], b"").ok());
    assert_eq!(described["group"], "billing");
    assert_eq!(described["state"], "Empty");
    assert_eq!(described["members"], json("[]"));
    assert_eq!(described["offsets"][0]["topic"], "orders");
    assert_eq!(described["offsets"][0]["committed_offset"], 2);
    assert_eq!(described["offsets"][0]["lag"], 0);
    let deleted = json(&spate(address, &["group", "delete", "billing", "--json"], b"").ok());
    assert_eq!(deleted, json(r#"{"group":"billing","deleted":true}"#));
}

#[test]
fn topic_describe_shows_every_config_with_its_value_and_source() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--retention-ms", "60000"],
        b"",
    )
    .ok();
    let described = spate(address, &["topic", "describe", "orders"], b"").ok();
    assert!(
        described.contains("\n  retention.ms=60000\ttopic\n"),
        "{described}"
    );
    for key in [
        "retention.bytes",
        "segment.bytes",
        "segment.ms",
        "durability",
        "group.commit.bytes",
        "group.commit.us",
        "max.message.bytes",
        "cleanup.policy",
        "min.cleanable.dirty.ratio",
        "min.compaction.lag.ms",
        "max.compaction.lag.ms",
        "delete.retention.ms",
        "write.caching",
    ] {
        let line = described
            .lines()
            .find(|line| line.starts_with(&format!("  {key}=")))
            .unwrap_or_else(|| panic!("{key} in {described}"));
        assert!(line.ends_with("\tdefault"), "{line}");
    }
    let described = json(&spate(address, &["topic", "describe", "orders", "--json"], b"").ok());
    let configs = described["configs"].as_object().unwrap();
    assert_eq!(configs.len(), 14, "{described}");
    assert_eq!(configs["cleanup.policy"]["value"], "delete");
    assert_eq!(configs["write.caching"]["value"], "false");
    assert_eq!(configs["retention.bytes"]["value"], "-1");
    assert_eq!(configs["retention.bytes"]["source"], "default");
}

#[test]
fn cluster_info_shows_the_broker_its_shards_and_every_partition() {
    let broker = broker();
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    spate(address, &["topic", "create", "audit"], b"").ok();
    spate(
        address,
        &["produce", "orders", "--partition", "1"],
        b"x\ny\n",
    )
    .ok();

    let info = spate(address, &["cluster", "info"], b"").ok();
    assert!(info.starts_with("broker\t"), "{info}");
    assert!(
        info.contains(&format!("\nlisteners\t{address}\n")),
        "{info}"
    );
    assert!(info.contains("\n  retention.bytes=-1\n"), "{info}");
    let partitions: Vec<Vec<&str>> = info
        .lines()
        .map(|line| line.split('\t').collect::<Vec<_>>())
        .filter(|columns| columns.len() == 6 && columns[0] != "topic")
        .collect();
    let summary: Vec<(&str, &str, &str, &str)> = partitions
        .iter()
        .map(|columns| (columns[0], columns[1], columns[4], columns[5]))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("audit", "0", "0", "online"),
            ("orders", "0", "0", "online"),
            ("orders", "1", "2", "online"),
        ],
        "{info}"
    );
    let shards: u32 = info
        .lines()
        .find_map(|line| line.strip_prefix("shards\t"))
        .expect("a shards line")
        .parse()
        .unwrap();
    assert!(shards >= 1);
    assert!(
        partitions
            .iter()
            .all(|columns| columns[2].parse::<u32>().unwrap() < shards),
        "owner shards are below the shard count: {info}"
    );

    let metadata = json(&spate(address, &["metadata", "--json"], b"").ok());
    assert_eq!(
        json(&spate(address, &["cluster", "info", "--json"], b"").ok()),
        metadata
    );
    assert_eq!(metadata["broker"]["listeners"][0], address.to_string());
    assert_eq!(metadata["broker"]["shards"], shards);
    assert!(metadata["topic_defaults"]["durability"].is_string());
    assert_eq!(metadata["topics"][1]["topic"], "orders");
    assert_eq!(metadata["topics"][1]["partitions"][1]["high_watermark"], 2);
}
