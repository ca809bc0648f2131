//! The `spate` tool's group commands against the real broker: `consume --group` (sharing and
//! committed positions), `group list`, `group describe` (offsets and lag), `group
//! reset-offsets --execute` (earliest, latest, offset, timestamp) and `group delete`. The dry
//! run, partition lists, shifts and `delete-offsets` are in `cli_admin`.

#[path = "cli_support/mod.rs"]
mod cli_support;

use std::collections::BTreeSet;

use cli_support::spate;
use spate_tests::{Broker, BrokerOptions};

fn lines(text: &str) -> BTreeSet<String> {
    text.lines().map(str::to_string).collect()
}

/// The topic, partition and new-offset columns of `group reset-offsets`.
fn moved(reset: &str) -> Vec<(String, u32, u64)> {
    reset
        .lines()
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            assert_eq!(columns.len(), 4, "{line:?}");
            (
                columns[0].to_string(),
                columns[1].parse().unwrap(),
                columns[3].parse().unwrap(),
            )
        })
        .collect()
}

/// The committed offset and lag columns of `group describe`, per partition.
fn offsets(describe: &str) -> Vec<(u32, u64, u64)> {
    describe
        .lines()
        .filter(|line| line.starts_with("orders\t"))
        .map(|line| {
            let columns: Vec<&str> = line.split('\t').collect();
            (
                columns[1].parse().unwrap(),
                columns[2].parse().unwrap(),
                columns[4].parse().unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_group_consumes_each_record_once_and_can_be_described_reset_and_deleted() {
    let broker = Broker::start(BrokerOptions::default());
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    spate(
        address,
        &["produce", "orders"],
        b"one\ntwo\nthree\nfour\nfive\nsix\n",
    )
    .ok();
    let all = lines("one\ntwo\nthree\nfour\nfive\nsix");

    let first = spate(
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
    assert_eq!(lines(&first), all);
    assert_eq!(first.lines().count(), 6);
    // The group continues where it left off: nothing new.
    let again = spate(
        address,
        &["consume", "orders", "--group", "billing", "--exit-at-end"],
        b"",
    )
    .ok();
    assert_eq!(again, "");

    let listed = spate(address, &["group", "list"], b"").ok();
    assert_eq!(listed, "billing\tEmpty\tconsumer\n");
    spate(address, &["produce", "orders"], b"seven\neight\n").ok();
    let described = spate(address, &["group", "describe", "billing"], b"").ok();
    assert!(described.contains("state\tEmpty"), "{described}");
    let total_lag: u64 = offsets(&described).iter().map(|(_, _, lag)| lag).sum();
    assert_eq!(total_lag, 2, "{described}");

    let reset = spate(
        address,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-earliest",
            "--execute",
        ],
        b"",
    )
    .ok();
    assert_eq!(
        moved(&reset),
        vec![("orders".to_string(), 0, 0), ("orders".to_string(), 1, 0)]
    );
    let replayed = spate(
        address,
        &["consume", "orders", "--group", "billing", "--exit-at-end"],
        b"",
    )
    .ok();
    assert_eq!(replayed.lines().count(), 8);

    spate(
        address,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-offset",
            "1",
            "--execute",
        ],
        b"",
    )
    .ok();
    let described = spate(address, &["group", "describe", "billing"], b"").ok();
    // Offset 1, or the end of a partition that has no record 1 (offsets stay within the log).
    assert!(
        offsets(&described)
            .iter()
            .all(|(_, committed, lag)| *committed == 1.min(committed + lag)),
        "{described}"
    );
    let latest = spate(
        address,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-latest",
            "--execute",
        ],
        b"",
    )
    .ok();
    let described = spate(address, &["group", "describe", "billing"], b"").ok();
    assert!(
        offsets(&described).iter().all(|(_, _, lag)| *lag == 0),
        "{described}"
    );
    // Far in the future: no record that new, so the end.
    let future = spate(
        address,
        &[
            "group",
            "reset-offsets",
            "billing",
            "--topic",
            "orders",
            "--to-timestamp",
            "99999999999999",
            "--execute",
        ],
        b"",
    )
    .ok();
    assert_eq!(moved(&future), moved(&latest));
    let no_target = spate(
        address,
        &["group", "reset-offsets", "billing", "--topic", "orders"],
        b"",
    );
    assert_eq!(no_target.code, 2, "a usage error");
    assert!(
        no_target.stderr.contains("--to-earliest"),
        "{}",
        no_target.stderr
    );

    spate(address, &["group", "delete", "billing"], b"").ok();
    spate(address, &["group", "describe", "billing"], b"").fails_with(1);
    assert_eq!(spate(address, &["group", "list"], b"").ok(), "");
}

#[test]
fn a_record_cut_off_by_count_is_read_by_the_groups_next_consumer() {
    let broker = Broker::start(BrokerOptions::default());
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "letters", "--partitions", "1"],
        b"",
    )
    .ok();
    spate(address, &["produce", "letters"], b"a\nb\nc\nd\ne\n").ok();
    let head = spate(
        address,
        &[
            "consume",
            "letters",
            "--group",
            "readers",
            "--from-beginning",
            "--count",
            "2",
        ],
        b"",
    )
    .ok();
    assert_eq!(head, "a\nb\n");
    let rest = spate(
        address,
        &["consume", "letters", "--group", "readers", "--exit-at-end"],
        b"",
    )
    .ok();
    assert_eq!(rest, "c\nd\ne\n");
}

#[test]
fn a_group_read_to_the_end_commits_partitions_that_had_no_records() {
    let broker = Broker::start(BrokerOptions::default());
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "orders", "--partitions", "2"],
        b"",
    )
    .ok();
    spate(
        address,
        &["produce", "orders", "--partition", "1"],
        b"one\n",
    )
    .ok();
    let read = spate(
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
    assert_eq!(read, "one\n");
    // A record in the partition that was empty shows as lag: the group has an offset there.
    spate(
        address,
        &["produce", "orders", "--partition", "0"],
        b"two\n",
    )
    .ok();
    let described = spate(address, &["group", "describe", "billing"], b"").ok();
    assert_eq!(
        offsets(&described),
        vec![(0, 0, 1), (1, 1, 0)],
        "{described}"
    );
}
