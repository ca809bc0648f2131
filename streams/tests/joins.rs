//! Joins through the `TopologyTestDriver`: stream-table (inner and left), table-table (inner,
//! left, outer, with deletes), and stream-stream within a time window, with out-of-order and
//! late records, the last also as a property test against a model.

use std::sync::Arc;

use proptest::prelude::*;
use spate_streams::serdes::{FixedWidthSerde, Utf8Serde};
use spate_streams::{
    Consumed, DefaultSerde, DriverConfig, Grouped, JoinWindows, Materialized, Produced,
    SharedSerde, StreamJoined, StreamsBuilder, TopologyTestDriver,
};

fn utf8() -> SharedSerde<String> {
    Arc::new(Utf8Serde)
}

fn optional_utf8() -> SharedSerde<Option<String>> {
    Option::<String>::default_serde()
}

fn fixed() -> SharedSerde<u64> {
    Arc::new(FixedWidthSerde)
}

#[test]
fn stream_table_joins_look_up_the_table_as_it_is_when_the_record_comes() {
    let builder = StreamsBuilder::new();
    let cities = builder.table::<String, String>("cities", Consumed::new(), Materialized::new());
    let orders = builder.stream::<String, u64>("orders", Consumed::new());
    orders
        .join_table(
            &cities,
            |amount, city| format!("{amount}@{city}"),
            Grouped::new(),
        )
        .to("inner", Produced::new());
    orders
        .left_join_table(
            &cities,
            |amount, city| format!("{amount}@{}", city.map_or("?", String::as_str)),
            Grouped::new(),
        )
        .to("left", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let cities = driver.input_topic("cities", utf8(), optional_utf8());
    let orders = driver.input_topic("orders", utf8(), fixed());
    driver.pipe(&orders, &"ann".into(), &1, 1).unwrap();
    driver
        .pipe(&cities, &"ann".into(), &Some("Oslo".into()), 2)
        .unwrap();
    driver.pipe(&orders, &"ann".into(), &2, 3).unwrap();
    driver
        .pipe(&cities, &"ann".into(), &Some("Rome".into()), 4)
        .unwrap();
    driver.pipe(&orders, &"ann".into(), &3, 5).unwrap();
    driver.pipe(&cities, &"ann".into(), &None, 6).unwrap();
    driver.pipe(&orders, &"ann".into(), &4, 7).unwrap();
    let inner = driver.output_topic("inner", utf8(), utf8());
    let inner: Vec<String> = driver
        .read_output(&inner)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(inner, ["2@Oslo", "3@Rome"]);
    let left = driver.output_topic("left", utf8(), utf8());
    let left: Vec<(String, i64)> = driver
        .read_output(&left)
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp_ms))
        .collect();
    assert_eq!(
        left,
        [
            ("1@?".into(), 1),
            ("2@Oslo".into(), 3),
            ("3@Rome".into(), 5),
            ("4@?".into(), 7)
        ]
    );
}

#[test]
fn a_stream_whose_key_changed_is_repartitioned_before_a_table_join() {
    let builder = StreamsBuilder::new();
    let names = builder.table::<String, String>("names", Consumed::new(), Materialized::new());
    builder
        .stream::<String, String>("visits", Consumed::new())
        .select_key(|_, user: &String| user.clone())
        .join_table(
            &names,
            |page, name| format!("{name} saw {page}"),
            Grouped::new(),
        )
        .to("out", Produced::new());
    let topology = builder.build();
    assert_eq!(topology.internal_topics().len(), 1);
    let mut driver = TopologyTestDriver::new(topology, DriverConfig::default());
    let names = driver.input_topic("names", utf8(), optional_utf8());
    let visits = driver.input_topic("visits", utf8(), utf8());
    driver
        .pipe(&names, &"u1".into(), &Some("Ann".into()), 0)
        .unwrap();
    driver
        .pipe(&visits, &"/home".into(), &"u1".into(), 1)
        .unwrap();
    let out = driver.output_topic("out", utf8(), utf8());
    let out: Vec<(String, String)> = driver
        .read_output(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(out, [("u1".to_string(), "Ann saw u1".to_string())]);
}

#[test]
fn table_table_joins_follow_updates_and_deletes_on_both_sides() {
    let builder = StreamsBuilder::new();
    let left = builder.table::<String, String>("left", Consumed::new(), Materialized::new());
    let right = builder.table::<String, u64>("right", Consumed::new(), Materialized::new());
    left.join(
        &right,
        |l, r| format!("{l}{r}"),
        Materialized::as_store("inner"),
    )
    .to_stream()
    .to("inner", Produced::new());
    left.left_join(
        &right,
        |l, r| format!("{l}{}", r.map_or("-".into(), u64::to_string)),
        Materialized::as_store("left-join"),
    )
    .to_stream()
    .to("left-join", Produced::new());
    left.outer_join(
        &right,
        |l, r| {
            format!(
                "{}{}",
                l.map_or("-", String::as_str),
                r.map_or("-".into(), u64::to_string)
            )
        },
        Materialized::as_store("outer"),
    )
    .to_stream()
    .to("outer", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let left_input = driver.input_topic("left", utf8(), optional_utf8());
    let right_input = driver.input_topic("right", utf8(), Option::<u64>::default_serde());
    let k = "k".to_string();
    driver.pipe(&right_input, &k, &Some(1), 1).unwrap();
    driver.pipe(&left_input, &k, &Some("a".into()), 2).unwrap();
    driver.pipe(&right_input, &k, &Some(2), 3).unwrap();
    driver.pipe(&left_input, &k, &None, 4).unwrap();
    driver.pipe(&right_input, &k, &None, 5).unwrap();
    let read = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<Option<String>> {
        let topic = driver.output_topic(topic, utf8(), optional_utf8());
        driver
            .read_output(&topic)
            .unwrap()
            .into_iter()
            .map(|r| r.value)
            .collect()
    };
    let some = |text: &str| Some(text.to_string());
    assert_eq!(read(&mut driver, "inner"), [some("a1"), some("a2"), None]);
    assert_eq!(
        read(&mut driver, "left-join"),
        [some("a1"), some("a2"), None]
    );
    assert_eq!(
        read(&mut driver, "outer"),
        [some("-1"), some("a1"), some("a2"), some("-2"), None]
    );
    let outer: Vec<(String, String)> = driver.key_value_store("outer").unwrap();
    assert!(outer.is_empty());
}

#[test]
fn foreign_key_joins_follow_both_tables_through_subscription_and_response_topics() {
    let builder = StreamsBuilder::new();
    let customers =
        builder.table::<String, String>("customers", Consumed::new(), Materialized::new());
    let orders = builder.table::<String, String>("orders", Consumed::new(), Materialized::new());
    let customer_of = |order: &String| order.split(':').next().unwrap_or_default().to_string();
    let amount_of = |order: &String| order.split(':').nth(1).unwrap_or_default().to_string();
    orders
        .join_on_foreign_key(
            &customers,
            customer_of,
            move |order, name| format!("{} by {name}", amount_of(order)),
            Materialized::as_store("order-details"),
        )
        .to_stream()
        .to("inner", Produced::new());
    orders
        .left_join_on_foreign_key(
            &customers,
            customer_of,
            move |order, name| {
                format!(
                    "{} by {}",
                    amount_of(order),
                    name.map_or("?", String::as_str)
                )
            },
            Materialized::new(),
        )
        .to_stream()
        .to("left", Produced::new());
    let topology = builder.build();
    // Each join: a subscription topic and a response topic.
    assert_eq!(topology.internal_topics().len(), 4);
    let mut driver = TopologyTestDriver::new(topology, DriverConfig::default());
    let customers = driver.input_topic("customers", utf8(), optional_utf8());
    let orders = driver.input_topic("orders", utf8(), optional_utf8());
    let some = |text: &str| Some(text.to_string());
    driver
        .pipe(&customers, &"c1".into(), &some("Ann"), 1)
        .unwrap();
    driver
        .pipe(&orders, &"o1".into(), &some("c1:5"), 2)
        .unwrap();
    driver
        .pipe(&orders, &"o2".into(), &some("c2:7"), 3)
        .unwrap();
    driver
        .pipe(&customers, &"c2".into(), &some("Bob"), 4)
        .unwrap();
    driver
        .pipe(&customers, &"c1".into(), &some("Ann B"), 5)
        .unwrap();
    // o1 moves to c2: it leaves c1's subscribers.
    driver
        .pipe(&orders, &"o1".into(), &some("c2:9"), 6)
        .unwrap();
    driver
        .pipe(&customers, &"c1".into(), &some("X"), 7)
        .unwrap();
    driver.pipe(&customers, &"c2".into(), &None, 8).unwrap();
    driver.pipe(&orders, &"o2".into(), &None, 9).unwrap();
    let read = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<(String, Option<String>)> {
        let topic = driver.output_topic(topic, utf8(), optional_utf8());
        driver
            .read_output(&topic)
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value))
            .collect()
    };
    let row = |key: &str, value: Option<&str>| (key.to_string(), value.map(String::from));
    assert_eq!(
        read(&mut driver, "inner"),
        vec![
            row("o1", Some("5 by Ann")),
            row("o2", Some("7 by Bob")),
            row("o1", Some("5 by Ann B")),
            row("o1", Some("9 by Bob")),
            row("o1", None),
            row("o2", None),
        ]
    );
    assert_eq!(
        read(&mut driver, "left"),
        vec![
            row("o1", Some("5 by Ann")),
            row("o2", Some("7 by ?")),
            row("o2", Some("7 by Bob")),
            row("o1", Some("5 by Ann B")),
            row("o1", Some("9 by Bob")),
            row("o1", Some("9 by ?")),
            row("o2", Some("7 by ?")),
            row("o2", None),
        ]
    );
    let details: Vec<(String, String)> = driver.key_value_store("order-details").unwrap();
    assert!(details.is_empty());
}

fn stream_join_driver(windows: JoinWindows) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream::<String, String>("clicks", Consumed::new());
    let views = builder.stream::<String, u64>("views", Consumed::new());
    clicks
        .join_stream(
            &views,
            |click, view| format!("{click}/{view}"),
            windows,
            StreamJoined::new(),
        )
        .to("joined", Produced::new());
    TopologyTestDriver::new(builder.build(), DriverConfig::default())
}

#[test]
fn stream_stream_joins_pair_records_within_the_window_in_either_order() {
    let mut driver = stream_join_driver(JoinWindows::of_time_difference_and_grace(10, 5));
    let clicks = driver.input_topic("clicks", utf8(), utf8());
    let views = driver.input_topic("views", utf8(), fixed());
    let k = "k".to_string();
    driver.pipe(&views, &k, &1, 100).unwrap();
    driver.pipe(&clicks, &k, &"a".into(), 105).unwrap();
    driver.pipe(&clicks, &k, &"b".into(), 111).unwrap();
    driver.pipe(&views, &k, &2, 112).unwrap();
    driver
        .pipe(&clicks, &"other".into(), &"c".into(), 112)
        .unwrap();
    // Stream time 112: a click at 95 has window [85, 105] + grace 5 = 110 < 112: late.
    driver.pipe(&clicks, &k, &"late".into(), 95).unwrap();
    // At 97: 97 + 10 + 5 = 112, not before stream time: joins the view at 100.
    driver.pipe(&clicks, &k, &"d".into(), 97).unwrap();
    let joined = driver.output_topic("joined", utf8(), utf8());
    let joined: Vec<(String, i64)> = driver
        .read_output(&joined)
        .unwrap()
        .into_iter()
        .map(|r| (r.value, r.timestamp_ms))
        .collect();
    assert_eq!(
        joined,
        [
            ("a/1".into(), 105),
            ("a/2".into(), 112),
            ("b/2".into(), 112),
            ("d/1".into(), 100)
        ]
    );
    assert_eq!(driver.metrics().late_records_dropped, 1);
}

fn left_and_outer_join_driver(windows: JoinWindows) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    let clicks = builder.stream::<String, String>("clicks", Consumed::new());
    let views = builder.stream::<String, u64>("views", Consumed::new());
    clicks
        .left_join_stream(
            &views,
            |click, view| format!("{click}/{}", view.map_or("-".into(), u64::to_string)),
            windows,
            StreamJoined::new(),
        )
        .to("left", Produced::new());
    clicks
        .outer_join_stream(
            &views,
            |click, view| {
                format!(
                    "{}/{}",
                    click.map_or("-", String::as_str),
                    view.map_or("-".into(), u64::to_string)
                )
            },
            windows,
            StreamJoined::new(),
        )
        .to("outer", Produced::new());
    TopologyTestDriver::new(builder.build(), DriverConfig::default())
}

#[test]
fn left_and_outer_stream_joins_emit_unmatched_records_once_nothing_can_join_them() {
    let mut driver = left_and_outer_join_driver(JoinWindows::of_time_difference_with_no_grace(10));
    let clicks = driver.input_topic("clicks", utf8(), utf8());
    let views = driver.input_topic("views", utf8(), fixed());
    let (k, j) = ("k".to_string(), "j".to_string());
    driver.pipe(&clicks, &k, &"a".into(), 100).unwrap();
    driver.pipe(&views, &k, &1, 105).unwrap();
    driver.pipe(&clicks, &k, &"b".into(), 120).unwrap();
    // Stream time 200: nothing on time (at or after 190) can join b at 120 any more.
    driver.pipe(&clicks, &k, &"c".into(), 200).unwrap();
    driver.pipe(&views, &j, &2, 300).unwrap();
    driver.pipe(&clicks, &j, &"d".into(), 400).unwrap();
    let read = |driver: &mut TopologyTestDriver, topic: &str| -> Vec<(String, i64)> {
        let topic = driver.output_topic(topic, utf8(), utf8());
        driver
            .read_output(&topic)
            .unwrap()
            .into_iter()
            .map(|r| (r.value, r.timestamp_ms))
            .collect()
    };
    let pairs = |expected: &[(&str, i64)]| -> Vec<(String, i64)> {
        expected
            .iter()
            .map(|(value, time)| (value.to_string(), *time))
            .collect()
    };
    assert_eq!(
        read(&mut driver, "left"),
        pairs(&[("a/1", 105), ("b/-", 120), ("c/-", 200)])
    );
    assert_eq!(
        read(&mut driver, "outer"),
        pairs(&[("a/1", 105), ("b/-", 120), ("c/-", 200), ("-/2", 300)])
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    /// With a grace longer than any disorder, no record is late and the join is exactly every
    /// pair of same-key records at most the difference apart.
    #[test]
    fn stream_stream_join_without_late_records_is_every_close_pair(
        difference_ms in 0i64..20,
        input in prop::collection::vec((any::<bool>(), 0u8..3, 0i64..100), 0..60),
    ) {
        let windows = JoinWindows::of_time_difference_and_grace(difference_ms, 1_000);
        let mut driver = stream_join_driver(windows);
        let clicks = driver.input_topic("clicks", utf8(), utf8());
        let views = driver.input_topic("views", utf8(), fixed());
        for (index, (is_click, key, timestamp_ms)) in input.iter().enumerate() {
            let key = key.to_string();
            if *is_click {
                driver.pipe(&clicks, &key, &index.to_string(), *timestamp_ms).unwrap();
            } else {
                driver.pipe(&views, &key, &(index as u64), *timestamp_ms).unwrap();
            }
        }
        let joined = driver.output_topic("joined", utf8(), utf8());
        let mut joined: Vec<(String, String, i64)> = driver
            .read_output(&joined)
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp_ms))
            .collect();
        let mut expected = Vec::new();
        for (click_index, (click, click_key, click_ms)) in input.iter().enumerate() {
            for (view_index, (view, view_key, view_ms)) in input.iter().enumerate() {
                let close = (click_ms - view_ms).abs() <= difference_ms;
                if *click && !*view && click_key == view_key && close {
                    let value = format!("{click_index}/{view_index}");
                    expected.push((click_key.to_string(), value, *click_ms.max(view_ms)));
                }
            }
        }
        joined.sort();
        expected.sort();
        prop_assert_eq!(joined, expected);
        prop_assert_eq!(driver.metrics().late_records_dropped, 0);
    }

    /// In time order (nothing late), then a far later record to close every window, the outer
    /// join is every close pair plus every record nothing joined, each once.
    #[test]
    fn outer_stream_join_in_time_order_is_every_close_pair_and_every_lonely_record(
        difference_ms in 0i64..20,
        mut input in prop::collection::vec((any::<bool>(), 0u8..3, 0i64..100), 0..60),
    ) {
        input.sort_by_key(|(_, _, timestamp_ms)| *timestamp_ms);
        let windows = JoinWindows::of_time_difference_with_no_grace(difference_ms);
        let mut driver = left_and_outer_join_driver(windows);
        let clicks = driver.input_topic("clicks", utf8(), utf8());
        let views = driver.input_topic("views", utf8(), fixed());
        for (index, (is_click, key, timestamp_ms)) in input.iter().enumerate() {
            if *is_click {
                let click = format!("c{index}");
                driver.pipe(&clicks, &key.to_string(), &click, *timestamp_ms).unwrap();
            } else {
                driver.pipe(&views, &key.to_string(), &(index as u64), *timestamp_ms).unwrap();
            }
        }
        driver.pipe(&clicks, &"flush".into(), &"flush".into(), 10_000).unwrap();
        let outer = driver.output_topic("outer", utf8(), utf8());
        let mut outer: Vec<(String, String, i64)> = driver
            .read_output(&outer)
            .unwrap()
            .into_iter()
            .map(|r| (r.key, r.value, r.timestamp_ms))
            .collect();
        let mut expected = Vec::new();
        let close = |a: &(bool, u8, i64), b: &(bool, u8, i64)| {
            a.1 == b.1 && (a.2 - b.2).abs() <= difference_ms
        };
        for (index, record) in input.iter().enumerate() {
            let partners: Vec<(usize, &(bool, u8, i64))> = input
                .iter()
                .enumerate()
                .filter(|(_, other)| other.0 != record.0 && close(record, other))
                .collect();
            if record.0 {
                for (view_index, view) in &partners {
                    let value = format!("c{index}/{view_index}");
                    expected.push((record.1.to_string(), value, record.2.max(view.2)));
                }
            }
            if partners.is_empty() {
                let value = if record.0 { format!("c{index}/-") } else { format!("-/{index}") };
                expected.push((record.1.to_string(), value, record.2));
            }
        }
        outer.sort();
        expected.sort();
        prop_assert_eq!(outer, expected);
    }

    /// Whatever the order of updates and deletes on both sides, the foreign-key join's table
    /// ends as the join of the two tables' final states.
    #[test]
    fn foreign_key_join_ends_as_the_join_of_the_final_tables(
        updates in prop::collection::vec((any::<bool>(), 0u8..6, prop::option::of(0u8..4)), 0..80),
    ) {
        let builder = StreamsBuilder::new();
        let right = builder.table::<String, String>("right", Consumed::new(), Materialized::new());
        let left = builder.table::<String, String>("left", Consumed::new(), Materialized::new());
        left.join_on_foreign_key(
            &right,
            |value: &String| value.clone(),
            |fk, name| format!("{fk}={name}"),
            Materialized::as_store("joined"),
        );
        let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
        let left_topic = driver.input_topic("left", utf8(), optional_utf8());
        let right_topic = driver.input_topic("right", utf8(), optional_utf8());
        let mut left_rows = std::collections::BTreeMap::new();
        let mut right_rows = std::collections::BTreeMap::new();
        for (index, (is_left, key, value)) in updates.iter().enumerate() {
            if *is_left {
                // Left rows name right keys f0..f3.
                let key = format!("k{key}");
                let value = value.map(|value| format!("f{value}"));
                driver.pipe(&left_topic, &key, &value, index as i64).unwrap();
                match value {
                    Some(value) => left_rows.insert(key, value),
                    None => left_rows.remove(&key),
                };
            } else {
                let key = format!("f{}", key % 4);
                let value = value.map(|value| format!("name{value}"));
                driver.pipe(&right_topic, &key, &value, index as i64).unwrap();
                match value {
                    Some(value) => right_rows.insert(key, value),
                    None => right_rows.remove(&key),
                };
            }
        }
        let expected: Vec<(String, String)> = left_rows
            .iter()
            .filter_map(|(key, fk)| {
                let name = right_rows.get(fk)?;
                Some((key.clone(), format!("{fk}={name}")))
            })
            .collect();
        let joined: Vec<(String, String)> = driver.key_value_store("joined").unwrap();
        prop_assert_eq!(joined, expected);
    }
}
