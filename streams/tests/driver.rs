//! Topologies run through the `TopologyTestDriver`: stateless operators, repartitioning,
//! tables, aggregations, windows, `suppress` and punctuation, each checked against the results
//! Kafka Streams gives for the same input.

use std::sync::{Arc, Mutex};

use spate_streams::serdes::{FixedWidthSerde, JsonSerde, NullableSerde, Utf8Serde, WindowedSerde};
use spate_streams::{
    Consumed, DefaultSerde, DriverConfig, Grouped, Materialized, Processor, Produced,
    PunctuationType, Record, ScheduleId, SessionWindows, SharedSerde, SlidingWindows,
    StreamsBuilder, StreamsError, TestRecord, TimeWindows, TopicName, TopologyTestDriver,
    TypedContext, Window, Windowed,
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

fn word_count_topology() -> spate_streams::Topology {
    let builder = StreamsBuilder::new();
    let lines = builder.stream::<Option<String>, String>("lines", Consumed::new());
    lines
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(str::to_lowercase)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word.clone(), Grouped::new())
        .count(Materialized::as_store("counts"))
        .to_stream()
        .to("word-counts", Produced::new());
    builder.build()
}

#[test]
fn word_count_repartitions_by_word_and_counts_each_word() {
    let topology = word_count_topology();
    assert_eq!(
        topology.internal_topics().len(),
        1,
        "{}",
        topology.describe()
    );
    let mut driver = TopologyTestDriver::new(topology, DriverConfig::default());
    let lines = driver.input_topic("lines", optional_utf8(), utf8());
    let counts = driver.output_topic("word-counts", utf8(), Option::<u64>::default_serde());
    driver
        .pipe(&lines, &None, &"the cat the".to_string(), 5)
        .unwrap();
    driver
        .pipe(&lines, &None, &"The dog".to_string(), 7)
        .unwrap();
    let output: Vec<(String, Option<u64>, i64)> = driver
        .read_output(&counts)
        .unwrap()
        .into_iter()
        .map(|record| (record.key, record.value, record.timestamp_ms))
        .collect();
    assert_eq!(
        output,
        vec![
            ("the".into(), Some(1), 5),
            ("cat".into(), Some(1), 5),
            ("the".into(), Some(2), 5),
            ("the".into(), Some(3), 7),
            ("dog".into(), Some(1), 7),
        ]
    );
    let store: Vec<(String, u64)> = driver.key_value_store("counts").unwrap();
    assert_eq!(
        store,
        vec![("cat".into(), 1), ("dog".into(), 1), ("the".into(), 3)]
    );
    assert_eq!(driver.metrics().records_processed, 2 + 5);
    assert_eq!(driver.stream_time_ms(), Some(7));
}

#[test]
fn group_by_key_without_a_key_change_needs_no_repartition_topic() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .filter(|_, value| !value.is_empty())
        .map_values(|value: String| value.len() as u64)
        .group_by_key(Grouped::with(utf8(), fixed()))
        .reduce(
            |left, right| left + right,
            Materialized::as_store("lengths"),
        )
        .to_stream()
        .to("out", Produced::new());
    let topology = builder.build();
    assert!(topology.internal_topics().is_empty());
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .map(|key, value| (value, key))
        .group_by_key(Grouped::new())
        .count(Materialized::new());
    let topology = builder.build();
    assert_eq!(
        topology
            .internal_topics()
            .into_iter()
            .map(|topic| topic.resolve("app"))
            .filter(|name| name.starts_with("app-KSTREAM-REPARTITION-")
                && name.ends_with("-repartition"))
            .count(),
        1
    );
}

#[test]
fn split_routes_each_record_to_its_first_matching_branch_and_merge_joins_them() {
    let builder = StreamsBuilder::new();
    let numbers = builder.stream::<String, u64>("numbers", Consumed::new());
    let branches = numbers.split(vec![
        Box::new(|_, value| value % 15 == 0),
        Box::new(|_, value| value % 3 == 0),
        Box::new(|_, value| value % 5 == 0),
    ]);
    let labels = ["fizzbuzz", "fizz", "buzz"];
    for (branch, label) in branches.iter().zip(labels) {
        branch
            .map_values(move |_| label.to_string())
            .to("words", Produced::new());
    }
    branches[3]
        .merge(&branches[1])
        .map_values(|value: u64| value.to_string())
        .to("unlabelled-or-fizz", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("numbers", utf8(), fixed());
    for number in 1..=15u64 {
        driver
            .pipe(&input, &"n".to_string(), &number, number as i64)
            .unwrap();
    }
    let words = driver.output_topic("words", utf8(), utf8());
    let words: Vec<String> = driver
        .read_output(&words)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(
        words,
        ["fizz", "buzz", "fizz", "fizz", "buzz", "fizz", "fizzbuzz"]
    );
    let rest = driver.output_topic("unlabelled-or-fizz", utf8(), utf8());
    let rest: Vec<String> = driver
        .read_output(&rest)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(
        rest,
        ["1", "2", "3", "4", "6", "7", "8", "9", "11", "12", "13", "14"]
    );
}

#[test]
fn peek_sees_every_record_and_filter_not_inverts_filter() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let builder = StreamsBuilder::new();
    let log = Arc::clone(&seen);
    builder
        .stream::<String, String>("in", Consumed::new())
        .peek(move |key, _| log.lock().unwrap().push(key.clone()))
        .filter_not(|_, value| value.starts_with('#'))
        .to("out", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    driver
        .pipe(&input, &"a".into(), &"# comment".into(), 1)
        .unwrap();
    driver.pipe(&input, &"b".into(), &"text".into(), 2).unwrap();
    assert_eq!(*seen.lock().unwrap(), ["a", "b"]);
    let out = driver.output_topic("out", utf8(), utf8());
    assert_eq!(
        driver.read_output(&out).unwrap(),
        vec![TestRecord {
            key: "b".into(),
            value: "text".into(),
            timestamp_ms: 2,
            partition: 0
        }]
    );
}

#[test]
fn sinks_partition_by_murmur2_of_the_key_or_by_the_given_partitioner() {
    let builder = StreamsBuilder::new();
    let stream = builder.stream::<String, String>("in", Consumed::new());
    stream.to("hashed", Produced::new());
    stream.to(
        "by-length",
        Produced::new()
            .with_partitioner(|key: &String, _: &String, count| key.len() as u32 % count),
    );
    let config = DriverConfig {
        partition_counts: [("hashed".to_string(), 12), ("by-length".to_string(), 4)].into(),
        ..DriverConfig::default()
    };
    let mut driver = TopologyTestDriver::new(builder.build(), config);
    let input = driver.input_topic("in", utf8(), utf8());
    for key in ["a", "bb", "ccc", "dddd", "eeeee"] {
        driver
            .pipe(&input, &key.to_string(), &String::new(), 0)
            .unwrap();
    }
    let hashed = driver.output_topic("hashed", utf8(), utf8());
    for record in driver.read_output(&hashed).unwrap() {
        assert_eq!(
            record.partition,
            spate_client::partition_for_key(record.key.as_bytes(), 12)
        );
    }
    let by_length = driver.output_topic("by-length", utf8(), utf8());
    let partitions: Vec<u32> = driver
        .read_output(&by_length)
        .unwrap()
        .iter()
        .map(|r| r.partition)
        .collect();
    assert_eq!(partitions, [1, 2, 3, 0, 1]);
}

#[test]
fn a_table_upserts_deletes_on_tombstones_and_ignores_deleting_absent_keys() {
    let builder = StreamsBuilder::new();
    let table =
        builder.table::<String, String>("users", Consumed::new(), Materialized::as_store("users"));
    table.to_stream().to("changes", Produced::new());
    table
        .filter(|_, city| city != "Paris")
        .to_stream()
        .to("not-in-paris", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let users = driver.input_topic("users", utf8(), optional_utf8());
    driver
        .pipe(&users, &"ann".into(), &Some("Oslo".into()), 1)
        .unwrap();
    driver
        .pipe(&users, &"bob".into(), &Some("Lima".into()), 2)
        .unwrap();
    driver
        .pipe(&users, &"ann".into(), &Some("Paris".into()), 3)
        .unwrap();
    driver.pipe(&users, &"bob".into(), &None, 4).unwrap();
    driver.pipe(&users, &"cyd".into(), &None, 5).unwrap();
    let store: Vec<(String, String)> = driver.key_value_store("users").unwrap();
    assert_eq!(store, vec![("ann".into(), "Paris".into())]);
    let changes = driver.output_topic("changes", utf8(), optional_utf8());
    let changes: Vec<(String, Option<String>)> = driver
        .read_output(&changes)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        changes,
        vec![
            ("ann".into(), Some("Oslo".into())),
            ("bob".into(), Some("Lima".into())),
            ("ann".into(), Some("Paris".into())),
            ("bob".into(), None),
        ]
    );
    let filtered = driver.output_topic("not-in-paris", utf8(), optional_utf8());
    let filtered: Vec<(String, Option<String>)> = driver
        .read_output(&filtered)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    assert_eq!(
        filtered,
        vec![
            ("ann".into(), Some("Oslo".into())),
            ("bob".into(), Some("Lima".into())),
            ("ann".into(), None),
            ("bob".into(), None),
        ]
    );
}

#[test]
fn a_regrouped_table_adds_new_rows_and_subtracts_replaced_and_deleted_ones() {
    let builder = StreamsBuilder::new();
    let regions = builder
        .table::<String, String>("user-regions", Consumed::new(), Materialized::new())
        .group_by(
            |user, region| (region.clone(), user.clone()),
            Grouped::new(),
        );
    regions
        .count(Materialized::as_store("users-per-region"))
        .to_stream()
        .to("counts", Produced::new());
    regions.aggregate(
        || 0u64,
        |_, user, letters| letters + user.len() as u64,
        |_, user, letters| letters - user.len() as u64,
        Materialized::as_store("letters-per-region"),
    );
    let topology = builder.build();
    assert_eq!(topology.internal_topics().len(), 1);
    let mut driver = TopologyTestDriver::new(topology, DriverConfig::default());
    let input = driver.input_topic("user-regions", utf8(), optional_utf8());
    for (user, region) in [
        ("ann", Some("Oslo")),
        ("bob", Some("Oslo")),
        ("ann", Some("Rome")),
        ("bob", None),
        ("cyd", Some("Rome")),
        ("dave", Some("Rome")),
    ] {
        driver
            .pipe(&input, &user.to_string(), &region.map(String::from), 0)
            .unwrap();
    }
    let counts = driver.output_topic("counts", utf8(), Option::<u64>::default_serde());
    let counts: Vec<(String, Option<u64>)> = driver
        .read_output(&counts)
        .unwrap()
        .into_iter()
        .map(|r| (r.key, r.value))
        .collect();
    let expected: Vec<(String, Option<u64>)> = [
        ("Oslo", 1),
        ("Oslo", 2),
        ("Oslo", 1),
        ("Rome", 1),
        ("Oslo", 0),
        ("Rome", 2),
        ("Rome", 3),
    ]
    .into_iter()
    .map(|(region, count)| (region.to_string(), Some(count)))
    .collect();
    assert_eq!(counts, expected);
    let letters: Vec<(String, u64)> = driver.key_value_store("letters-per-region").unwrap();
    assert_eq!(letters, vec![("Oslo".into(), 0), ("Rome".into(), 10)]);
}

#[test]
fn aggregate_with_a_json_value_keeps_a_running_summary_per_key() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, u64>("amounts", Consumed::new())
        .group_by_key(Grouped::new())
        .aggregate(
            || (0u64, 0u64),
            |_, amount, (count, total)| (count + 1, total + amount),
            Materialized::with(Arc::new(JsonSerde::<(u64, u64)>::new())).named("summary"),
        );
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("amounts", utf8(), fixed());
    for (key, amount) in [("a", 5), ("b", 1), ("a", 7)] {
        driver.pipe(&input, &key.to_string(), &amount, 0).unwrap();
    }
    let summary: Vec<(String, (u64, u64))> = driver.key_value_store("summary").unwrap();
    assert_eq!(summary, vec![("a".into(), (2, 12)), ("b".into(), (1, 1))]);
}

#[test]
fn a_timestamp_extractor_sets_event_time_and_negative_times_are_skipped() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, i64>(
            "events",
            Consumed::new().with_timestamp_extractor(|_, value: &i64, _| *value),
        )
        .to("out", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic(
        "events",
        utf8(),
        Arc::new(FixedWidthSerde) as SharedSerde<i64>,
    );
    driver.pipe(&input, &"k".into(), &40, 1_000).unwrap();
    driver.pipe(&input, &"k".into(), &-1, 1_000).unwrap();
    let out = driver.output_topic("out", utf8(), Arc::new(FixedWidthSerde) as SharedSerde<i64>);
    let times: Vec<i64> = driver
        .read_output(&out)
        .unwrap()
        .iter()
        .map(|r| r.timestamp_ms)
        .collect();
    assert_eq!(times, [40]);
    assert_eq!(driver.metrics().records_skipped, 1);
    assert_eq!(driver.stream_time_ms(), Some(40));
}

#[test]
fn undeserializable_input_fails_by_default_and_is_counted_under_skip() {
    let topology = || {
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, u64>("in", Consumed::new())
            .to("out", Produced::new());
        builder.build()
    };
    let mut failing = TopologyTestDriver::new(topology(), DriverConfig::default());
    let error = failing
        .pipe_bytes("in", Some(b"k".to_vec()), Some(b"abc".to_vec()), 0)
        .unwrap_err();
    assert!(
        matches!(
            error,
            StreamsError::Deserialization {
                part: "value",
                offset: 0,
                ..
            }
        ),
        "{error}"
    );
    let config = DriverConfig {
        deserialization_policy: spate_streams::DeserializationPolicy::Skip,
        ..DriverConfig::default()
    };
    let mut skipping = TopologyTestDriver::new(topology(), config);
    skipping
        .pipe_bytes("in", Some(b"k".to_vec()), Some(b"abc".to_vec()), 0)
        .unwrap();
    skipping
        .pipe_bytes("in", None, Some(7u64.to_le_bytes().to_vec()), 0)
        .unwrap();
    assert_eq!(skipping.metrics().records_skipped, 2);
    assert!(matches!(
        skipping.pipe_bytes("elsewhere", None, None, 0),
        Err(StreamsError::UnknownTopic { .. })
    ));
}

fn windowed_u64() -> SharedSerde<Windowed<String>> {
    Arc::new(WindowedSerde(utf8()))
}

#[test]
fn tumbling_counts_update_per_record_and_drop_records_after_the_grace_period() {
    let builder = StreamsBuilder::new();
    let counts = builder
        .stream::<String, String>("clicks", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_and_grace(10, 5))
        .count(Materialized::as_store("clicks-per-10"));
    counts.to_stream().to(
        "updates",
        Produced::with(windowed_u64(), Arc::new(NullableSerde(fixed()))),
    );
    counts
        .suppress_until_window_closes()
        .to("finals", Produced::with(windowed_u64(), fixed()));
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let clicks = driver.input_topic("clicks", utf8(), utf8());
    let k = "k".to_string();
    let v = String::new();
    for timestamp_ms in [1, 4, 12, 9, 16, 14, 3, 21] {
        driver.pipe(&clicks, &k, &v, timestamp_ms).unwrap();
    }
    // 9 at stream time 12: window [0,10) closes at 10 + 5 = 15 > 12, counted. 3 at stream time
    // 16: 10 + 5 <= 16, dropped.
    assert_eq!(driver.metrics().late_records_dropped, 1);
    let updates = driver.output_topic(
        "updates",
        windowed_u64(),
        Arc::new(NullableSerde(fixed())) as SharedSerde<Option<u64>>,
    );
    let updates: Vec<(i64, Option<u64>)> = driver
        .read_output(&updates)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window.start_ms, r.value))
        .collect();
    assert_eq!(
        updates,
        vec![
            (0, Some(1)),
            (0, Some(2)),
            (10, Some(1)),
            (0, Some(3)),
            (10, Some(2)),
            (10, Some(3)),
            (20, Some(1))
        ]
    );
    let finals = driver.output_topic("finals", windowed_u64(), fixed());
    let finals = driver.read_output(&finals).unwrap();
    // Stream time 21 closes [0,10) (at 15) but not [10,20) (at 25).
    assert_eq!(finals.len(), 1);
    assert_eq!(finals[0].key, Windowed::new(k.clone(), Window::new(0, 10)));
    assert_eq!(finals[0].value, 3);
    driver.pipe(&clicks, &k, &v, 25).unwrap();
    let finals = driver.output_topic("finals", windowed_u64(), fixed());
    let finals: Vec<(Window, u64)> = driver
        .read_output(&finals)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window, r.value))
        .collect();
    assert_eq!(finals, vec![(Window::new(10, 20), 3)]);
    // Windows that can no longer change are expired from the store: [0,10) is gone.
    let store: Vec<(String, i64, u64)> = driver.window_store("clicks-per-10").unwrap();
    assert_eq!(store, vec![(k.clone(), 10, 3), (k.clone(), 20, 2)]);
}

#[test]
fn a_bounded_suppress_buffer_fails_processing_instead_of_emitting_early() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(10))
        .count(Materialized::new())
        .suppress_until_window_closes_bounded(2)
        .to("finals", Produced::with(windowed_u64(), fixed()));
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    driver.pipe(&input, &"a".into(), &String::new(), 1).unwrap();
    driver.pipe(&input, &"b".into(), &String::new(), 2).unwrap();
    // An update of a buffered window needs no room.
    driver.pipe(&input, &"a".into(), &String::new(), 3).unwrap();
    let error = driver
        .pipe(&input, &"c".into(), &String::new(), 4)
        .unwrap_err();
    assert!(
        matches!(
            error,
            StreamsError::SuppressBufferFull {
                buffered_windows_max: 2
            }
        ),
        "{error}"
    );
    // A record that closes the buffered windows first makes room.
    driver
        .pipe(&input, &"c".into(), &String::new(), 10)
        .unwrap();
    let finals = driver.output_topic("finals", windowed_u64(), fixed());
    let finals: Vec<(String, u64)> = driver
        .read_output(&finals)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.key, r.value))
        .collect();
    assert_eq!(finals, vec![("a".to_string(), 2), ("b".to_string(), 1)]);
}

#[test]
fn hopping_windows_count_a_record_in_every_window_that_holds_it() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by(TimeWindows::of_size_with_no_grace(10).advance_by(5))
        .count(Materialized::as_store("hops"));
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    for timestamp_ms in [2, 7, 11] {
        driver
            .pipe(&input, &"k".to_string(), &String::new(), timestamp_ms)
            .unwrap();
    }
    let store: Vec<(String, i64, u64)> = driver.window_store("hops").unwrap();
    let windows: Vec<(i64, u64)> = store
        .into_iter()
        .map(|(_, start, count)| (start, count))
        .collect();
    // [0,10) holds 2 and 7 but closed at stream time 11 (no grace) after it was counted;
    // [5,15) holds 7 and 11; [10,20) holds 11.
    assert_eq!(windows, vec![(5, 2), (10, 1)]);
    // A record at 4 now: [0,10) closed (10 <= 11) and so is nothing else: one dropped window.
    driver
        .pipe(&input, &"k".to_string(), &String::new(), 4)
        .unwrap();
    assert_eq!(driver.metrics().late_records_dropped, 1);
}

#[test]
fn session_windows_merge_sessions_a_record_bridges_and_forward_tombstones_for_them() {
    let builder = StreamsBuilder::new();
    let sessions = builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(5, 0))
        .count(Materialized::as_store("sessions"));
    sessions.to_stream().to(
        "updates",
        Produced::with(windowed_u64(), Arc::new(NullableSerde(fixed()))),
    );
    sessions
        .suppress_until_window_closes()
        .to("finals", Produced::with(windowed_u64(), fixed()));
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    let key = "k".to_string();
    for timestamp_ms in [0, 3, 10, 6, 30] {
        driver
            .pipe(&input, &key, &String::new(), timestamp_ms)
            .unwrap();
    }
    let updates = driver.output_topic(
        "updates",
        windowed_u64(),
        Arc::new(NullableSerde(fixed())) as SharedSerde<Option<u64>>,
    );
    let updates: Vec<(Window, Option<u64>)> = driver
        .read_output(&updates)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window, r.value))
        .collect();
    assert_eq!(
        updates,
        vec![
            (Window::new(0, 0), Some(1)),
            (Window::new(0, 0), None),
            (Window::new(0, 3), Some(2)),
            (Window::new(10, 10), Some(1)),
            // 6 is within 5 of [0,3] and [10,10], but [0,3] closed at stream time 10 (3 + gap
            // 5 + grace 0 < 10) and was emitted as final: only [10,10] merges.
            (Window::new(10, 10), None),
            (Window::new(6, 10), Some(2)),
            (Window::new(30, 30), Some(1)),
        ]
    );
    let finals = driver.output_topic("finals", windowed_u64(), fixed());
    let finals: Vec<(Window, u64)> = driver
        .read_output(&finals)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window, r.value))
        .collect();
    assert_eq!(
        finals,
        vec![(Window::new(0, 3), 2), (Window::new(6, 10), 2)]
    );
    // Closed sessions (end + gap + grace before stream time) are expired from the store.
    let store: Vec<(Windowed<String>, u64)> = driver.session_store("sessions").unwrap();
    assert_eq!(
        store,
        vec![(Windowed::new(key.clone(), Window::new(30, 30)), 1)]
    );
    // A record at 12 makes a session that closed already (12 + 5 < 30): dropped.
    driver.pipe(&input, &key, &String::new(), 12).unwrap();
    assert_eq!(driver.metrics().late_records_dropped, 1);
}

#[test]
fn sliding_windows_hold_each_distinct_set_of_records_within_the_difference() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(10, 100))
        .count(Materialized::as_store("sliding"))
        .to_stream()
        .to(
            "updates",
            Produced::with(windowed_u64(), Arc::new(NullableSerde(fixed()))),
        );
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    for timestamp_ms in [5, 12, 30, 8] {
        driver
            .pipe(&input, &"k".to_string(), &String::new(), timestamp_ms)
            .unwrap();
    }
    let updates = driver.output_topic(
        "updates",
        windowed_u64(),
        Arc::new(NullableSerde(fixed())) as SharedSerde<Option<u64>>,
    );
    let updates: Vec<(Window, u64)> = driver
        .read_output(&updates)
        .unwrap()
        .into_iter()
        .map(|r| (r.key.window, r.value.unwrap()))
        .collect();
    assert_eq!(
        updates,
        vec![
            (Window::new(-5, 5), 1),
            (Window::new(2, 12), 2),
            // The window just after 5 now holds 12.
            (Window::new(6, 16), 1),
            (Window::new(20, 30), 1),
            // 8, out of order: its own window, the windows it falls in, and the window just
            // after it (holding 12).
            (Window::new(-2, 8), 2),
            (Window::new(2, 12), 3),
            (Window::new(6, 16), 2),
            (Window::new(9, 19), 1),
        ]
    );
    let store: Vec<(String, i64, u64)> = driver.window_store("sliding").unwrap();
    let store: Vec<(i64, u64)> = store
        .into_iter()
        .map(|(_, start, count)| (start, count))
        .collect();
    assert_eq!(
        store,
        vec![(-5, 1), (-2, 2), (2, 3), (6, 2), (9, 1), (20, 1)]
    );
}

#[test]
fn sliding_windows_drop_a_record_whose_every_window_closed() {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .group_by_key(Grouped::new())
        .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(10, 5))
        .count(Materialized::as_store("sliding"));
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    for timestamp_ms in [100, 86, 85] {
        driver
            .pipe(&input, &"k".to_string(), &String::new(), timestamp_ms)
            .unwrap();
    }
    // Close time 95: 86's latest window [86, 96] is open, 85's [85, 95] is not.
    assert_eq!(driver.metrics().late_records_dropped, 1);
    let store: Vec<(String, i64, u64)> = driver.window_store("sliding").unwrap();
    let store: Vec<(i64, u64)> = store
        .into_iter()
        .map(|(_, start, count)| (start, count))
        .collect();
    // [76, 86] closed (86 <= 95) and was not written; [87, 97] holds nothing (100 is after it).
    assert_eq!(store, vec![(90, 1)]);
}

/// Emits, at each punctuation, how many records it saw since the last one.
struct CountingPunctuator {
    kind: PunctuationType,
    seen: u64,
    schedule: Option<ScheduleId>,
}

impl Processor<String, String> for CountingPunctuator {
    type KeyOut = String;
    type ValueOut = u64;

    fn init(&mut self, context: &mut TypedContext<'_, '_, String, u64>) {
        self.schedule = Some(context.schedule(10, self.kind));
    }

    fn process(
        &mut self,
        _record: Record<String, String>,
        _context: &mut TypedContext<'_, '_, String, u64>,
    ) -> Result<(), StreamsError> {
        self.seen += 1;
        Ok(())
    }

    fn punctuate(
        &mut self,
        schedule: ScheduleId,
        timestamp_ms: i64,
        context: &mut TypedContext<'_, '_, String, u64>,
    ) {
        assert_eq!(Some(schedule), self.schedule);
        context.forward(Record::new("seen".to_string(), self.seen, timestamp_ms));
        self.seen = 0;
    }
}

/// Forwards a key's first record only, remembering seen keys in a store.
struct FirstPerKey;

impl Processor<String, String> for FirstPerKey {
    type KeyOut = String;
    type ValueOut = String;

    fn process(
        &mut self,
        record: Record<String, String>,
        context: &mut TypedContext<'_, '_, String, String>,
    ) -> Result<(), StreamsError> {
        let store = context.key_value_store("seen")?;
        if store.get(record.key.as_bytes()).is_none() {
            store.put(
                record.key.as_bytes(),
                record.timestamp_ms.to_le_bytes().to_vec(),
            );
            context.forward(record);
        }
        Ok(())
    }
}

#[test]
fn an_application_processor_keeps_state_in_a_store_it_was_given() {
    let builder = StreamsBuilder::new();
    builder.add_key_value_store(
        "seen",
        utf8(),
        Arc::new(FixedWidthSerde) as SharedSerde<i64>,
    );
    builder
        .stream::<String, String>("in", Consumed::new())
        .process(|| FirstPerKey)
        .to("out", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    let input = driver.input_topic("in", utf8(), utf8());
    for (key, value, timestamp_ms) in [("a", "1", 10), ("b", "2", 11), ("a", "3", 12)] {
        driver
            .pipe(&input, &key.to_string(), &value.to_string(), timestamp_ms)
            .unwrap();
    }
    let out = driver.output_topic("out", utf8(), utf8());
    let values: Vec<String> = driver
        .read_output(&out)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(values, ["1", "2"]);
    let seen: Vec<(String, i64)> = driver.key_value_store("seen").unwrap();
    assert_eq!(seen, vec![("a".into(), 10), ("b".into(), 11)]);
    assert!(matches!(
        driver.window_store::<String, i64>("seen"),
        Err(StreamsError::UnknownStore { kind: "window", .. })
    ));
}

fn punctuation_driver(kind: PunctuationType) -> TopologyTestDriver {
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("in", Consumed::new())
        .process(move || CountingPunctuator {
            kind,
            seen: 0,
            schedule: None,
        })
        .to("out", Produced::new());
    let config = DriverConfig {
        initial_wall_clock_ms: 1_000,
        ..DriverConfig::default()
    };
    TopologyTestDriver::new(builder.build(), config)
}

#[test]
fn stream_time_punctuation_fires_as_records_advance_stream_time_once_per_step() {
    let mut driver = punctuation_driver(PunctuationType::StreamTime);
    let input = driver.input_topic("in", utf8(), utf8());
    for timestamp_ms in [100, 105, 110, 109, 150, 155] {
        driver
            .pipe(&input, &"k".into(), &String::new(), timestamp_ms)
            .unwrap();
    }
    driver.advance_wall_clock(1_000_000).unwrap();
    let out = driver.output_topic("out", utf8(), fixed());
    let fired: Vec<(i64, u64)> = driver
        .read_output(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.timestamp_ms, r.value))
        .collect();
    // Due at 110 (first record + 10); at 150 it had passed several intervals: fires once and
    // is next due at 160.
    assert_eq!(fired, vec![(110, 3), (150, 2)]);
    assert_eq!(driver.metrics().punctuations, 2);
}

#[test]
fn wall_clock_punctuation_fires_only_when_the_clock_is_advanced() {
    let mut driver = punctuation_driver(PunctuationType::WallClockTime);
    let input = driver.input_topic("in", utf8(), utf8());
    driver
        .pipe(&input, &"k".into(), &String::new(), 1_000_000)
        .unwrap();
    driver.advance_wall_clock(9).unwrap();
    driver.pipe(&input, &"k".into(), &String::new(), 0).unwrap();
    driver.advance_wall_clock(1).unwrap();
    driver.advance_wall_clock(25).unwrap();
    let out = driver.output_topic("out", utf8(), fixed());
    let fired: Vec<(i64, u64)> = driver
        .read_output(&out)
        .unwrap()
        .into_iter()
        .map(|r| (r.timestamp_ms, r.value))
        .collect();
    assert_eq!(fired, vec![(1_010, 2), (1_035, 0)]);
}

#[test]
fn a_pattern_source_reads_every_topic_whose_whole_name_matches() {
    let builder = StreamsBuilder::new();
    builder
        .stream_matching::<String, String>("orders-[a-z]+", Consumed::new())
        .to("all-orders", Produced::new());
    builder
        .stream::<String, String>("orders-eu", Consumed::new())
        .to("eu", Produced::new());
    let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
    for topic in ["orders-us", "orders-eu", "orders-asia"] {
        let input = driver.input_topic(topic, utf8(), utf8());
        driver
            .pipe(&input, &"k".into(), &topic.to_string(), 0)
            .unwrap();
    }
    // The named source wins for its topic; a partial match is no match.
    assert!(matches!(
        driver.pipe_bytes("orders-us-archive", None, None, 0),
        Err(StreamsError::UnknownTopic { .. })
    ));
    let all = driver.output_topic("all-orders", utf8(), utf8());
    let all: Vec<String> = driver
        .read_output(&all)
        .unwrap()
        .into_iter()
        .map(|r| r.value)
        .collect();
    assert_eq!(all, ["orders-us", "orders-asia"]);
    let eu = driver.output_topic("eu", utf8(), utf8());
    assert_eq!(driver.read_output(&eu).unwrap().len(), 1);
}

#[test]
fn describe_names_sources_sinks_and_stores() {
    let topology = word_count_topology();
    let description = topology.describe();
    assert!(
        description.contains("Source topic External(\"lines\")"),
        "{description}"
    );
    assert!(description.contains("stores [counts]"), "{description}");
    assert!(topology
        .sink_topics()
        .contains(&TopicName::External("word-counts".into())));
    assert_eq!(topology.store_names(), vec!["counts".to_string()]);
}
