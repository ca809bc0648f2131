//! End-to-end: one million short lines piped through `spate produce`, then read back with
//! `spate consume --exit-at-end`: every line arrives exactly once, in order within each
//! partition. This is a correctness test at volume; throughput is measured elsewhere.

mod cli_support;

use std::collections::BTreeMap;

use spate_tests::{Broker, BrokerOptions};

use cli_support::spate;

const LINES: usize = 1_000_000;

#[test]
fn a_million_lines_go_through_produce_and_come_back_through_consume() {
    let broker = Broker::start(BrokerOptions::default());
    let address = broker.address();
    spate(
        address,
        &["topic", "create", "million", "--partitions", "4"],
        b"",
    )
    .ok();

    let input: String = (0..LINES).map(|number| format!("{number:07}\n")).collect();
    let produced = spate(address, &["produce", "million"], input.as_bytes()).ok();
    assert_eq!(produced, format!("{LINES} records acknowledged\n"));

    let output = spate(
        address,
        &[
            "consume",
            "million",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "%p %o %v",
        ],
        b"",
    )
    .ok();
    let mut seen = vec![false; LINES];
    let mut last_in_partition: BTreeMap<u32, (u64, usize)> = BTreeMap::new();
    let mut count = 0;
    for line in output.lines() {
        let mut fields = line.split(' ');
        let partition: u32 = fields.next().unwrap().parse().unwrap();
        let offset: u64 = fields.next().unwrap().parse().unwrap();
        let number: usize = fields.next().unwrap().parse().unwrap();
        assert!(!seen[number], "line {number} arrived twice");
        seen[number] = true;
        // One producer thread sent the lines in order: within a partition they stay in order,
        // at consecutive offsets.
        if let Some((last_offset, last_number)) = last_in_partition.get(&partition) {
            assert_eq!(offset, last_offset + 1, "partition {partition}");
            assert!(
                number > *last_number,
                "partition {partition}: {number} after {last_number}"
            );
        } else {
            assert_eq!(offset, 0, "partition {partition} starts at 0");
        }
        last_in_partition.insert(partition, (offset, number));
        count += 1;
    }
    assert_eq!(count, LINES);
    assert!(seen.iter().all(|&line| line));
    assert!(
        last_in_partition.len() > 1,
        "keyless lines are spread over the partitions"
    );
}
