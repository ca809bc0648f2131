//! Property tests: windowed counts and sums, final results after `suppress`, late-record counts
//! and session windows, each against a simple model, over random keys and out-of-order
//! timestamps (some late enough to be dropped).

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use spate_streams::serdes::{FixedWidthSerde, NullableSerde, Utf8Serde, WindowedSerde};
use spate_streams::{
    Consumed, DriverConfig, Grouped, Materialized, Produced, SessionWindows, SharedSerde,
    SlidingWindows, StreamsBuilder, TimeWindows, TopologyTestDriver, Windowed,
};

fn utf8() -> SharedSerde<String> {
    Arc::new(Utf8Serde)
}

fn fixed() -> SharedSerde<u64> {
    Arc::new(FixedWidthSerde)
}

fn windowed() -> SharedSerde<Windowed<String>> {
    Arc::new(WindowedSerde(utf8()))
}

/// Records as (key, value, timestamp): few keys, timestamps that wander back and forth.
fn records() -> impl Strategy<Value = Vec<(String, u64, i64)>> {
    prop::collection::vec(
        (
            prop::sample::select(vec!["a", "b", "c"]).prop_map(String::from),
            0u64..100,
            0i64..200,
        ),
        0..80,
    )
}

/// What a windowed sum should give, computed the plain way.
#[derive(Default)]
struct WindowModel {
    /// (key, window start) -> (count, sum).
    windows: BTreeMap<(String, i64), (u64, u64)>,
    /// Every update, in order: (key, window start, count, sum).
    updates: Vec<(String, i64, u64, u64)>,
    dropped: u64,
    observed_ms: i64,
}

impl WindowModel {
    fn run(windows: &TimeWindows, input: &[(String, u64, i64)]) -> Self {
        let mut model = WindowModel {
            observed_ms: i64::MIN,
            ..WindowModel::default()
        };
        for (key, value, timestamp_ms) in input {
            model.observed_ms = model.observed_ms.max(*timestamp_ms);
            // Every start that is a multiple of the advance and holds the timestamp.
            let mut start_ms = 0;
            while start_ms <= *timestamp_ms {
                if *timestamp_ms < start_ms + windows.size_ms {
                    if start_ms + windows.size_ms + windows.grace_ms <= model.observed_ms {
                        model.dropped += 1;
                    } else {
                        let entry = model.windows.entry((key.clone(), start_ms)).or_default();
                        entry.0 += 1;
                        entry.1 += value;
                        model
                            .updates
                            .push((key.clone(), start_ms, entry.0, entry.1));
                    }
                }
                start_ms += windows.advance_ms;
            }
        }
        model
    }

    fn closed(&self, windows: &TimeWindows) -> BTreeMap<(String, i64), u64> {
        self.windows
            .iter()
            .filter(|((_, start_ms), _)| {
                start_ms + windows.size_ms + windows.grace_ms <= self.observed_ms
            })
            .map(|(window, (_, sum))| (window.clone(), *sum))
            .collect()
    }
}

fn time_windows() -> impl Strategy<Value = TimeWindows> {
    (1i64..40, 0i64..30, 1i64..=4).prop_map(|(size_ms, grace_ms, hops)| {
        let advance_ms = (size_ms / hops).max(1);
        TimeWindows::of_size_and_grace(size_ms, grace_ms).advance_by(advance_ms)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn windowed_counts_sums_and_final_results_match_the_model(
        windows in time_windows(),
        input in records(),
    ) {
        let builder = StreamsBuilder::new();
        let grouped = builder
            .stream::<String, u64>("in", Consumed::new())
            .group_by_key(Grouped::new())
            .windowed_by(windows);
        grouped
            .count(Materialized::as_store("counts"))
            .to_stream()
            .to("counts", Produced::with(windowed(), Arc::new(NullableSerde(fixed()))));
        let sums =
            grouped.aggregate(|| 0u64, |_, value, sum| sum + value, Materialized::as_store("sums"));
        sums.suppress_until_window_closes().to("final-sums", Produced::with(windowed(), fixed()));
        let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
        let topic = driver.input_topic("in", utf8(), fixed());
        for (key, value, timestamp_ms) in &input {
            driver.pipe(&topic, key, value, *timestamp_ms).unwrap();
        }
        let model = WindowModel::run(&windows, &input);

        // Every update, in order, with the count so far.
        let count_serde: SharedSerde<Option<u64>> = Arc::new(NullableSerde(fixed()));
        let counts = driver.output_topic("counts", windowed(), count_serde);
        let updates: Vec<(String, i64, u64)> = driver
            .read_output(&counts)
            .unwrap()
            .into_iter()
            .map(|record| (record.key.key, record.key.window.start_ms, record.value.unwrap()))
            .collect();
        let expected: Vec<(String, i64, u64)> = model
            .updates
            .iter()
            .map(|(key, start, count, _)| (key.clone(), *start, *count))
            .collect();
        prop_assert_eq!(updates, expected);
        // Both aggregations drop the same late windows.
        prop_assert_eq!(driver.metrics().late_records_dropped, 2 * model.dropped);

        // Each closed window exactly once, with its final sum; no open window.
        let final_sums = driver.output_topic("final-sums", windowed(), fixed());
        let mut finals = BTreeMap::new();
        for record in driver.read_output(&final_sums).unwrap() {
            prop_assert_eq!(record.key.window.end_ms - record.key.window.start_ms, windows.size_ms);
            let window = (record.key.key, record.key.window.start_ms);
            let previous = finals.insert(window, record.value);
            prop_assert!(previous.is_none(), "a window's final result is emitted once");
        }
        prop_assert_eq!(finals, model.closed(&windows));

        // The store keeps exactly the windows that can still change or just closed within
        // retention.
        let stored: Vec<(String, i64, u64)> = driver.window_store("sums").unwrap();
        let retained: BTreeMap<(String, i64), u64> = model
            .windows
            .iter()
            .filter(|((_, start_ms), _)| *start_ms >= model.observed_ms - windows.retention_ms())
            .map(|(window, (_, sum))| (window.clone(), *sum))
            .collect();
        let stored: BTreeMap<(String, i64), u64> =
            stored.into_iter().map(|(key, start, sum)| ((key, start), sum)).collect();
        prop_assert_eq!(stored, retained);
    }

    #[test]
    fn sessions_without_late_records_are_the_clusters_of_each_keys_timestamps(
        gap_ms in 1i64..30,
        input in records(),
    ) {
        // A grace longer than any timestamp: nothing closes, so sessions are exactly the
        // groups of a key's timestamps no more than the gap apart, whatever the order.
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, u64>("in", Consumed::new())
            .group_by_key(Grouped::new())
            .windowed_by_session(SessionWindows::with_inactivity_gap_and_grace(gap_ms, 10_000))
            .aggregate(
                || 0u64,
                |_, value, sum| sum + value,
                |_, left, right| left + right,
                Materialized::as_store("sessions"),
            );
        let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
        let topic = driver.input_topic("in", utf8(), fixed());
        for (key, value, timestamp_ms) in &input {
            driver.pipe(&topic, key, value, *timestamp_ms).unwrap();
        }
        let mut by_key: BTreeMap<String, Vec<(i64, u64)>> = BTreeMap::new();
        for (key, value, timestamp_ms) in &input {
            by_key.entry(key.clone()).or_default().push((*timestamp_ms, *value));
        }
        let mut expected = Vec::new();
        for (key, mut points) in by_key {
            points.sort();
            let mut session: Option<(i64, i64, u64)> = None;
            for (timestamp_ms, value) in points {
                session = match session {
                    Some((start, end, sum)) if timestamp_ms - end <= gap_ms => {
                        Some((start, timestamp_ms, sum + value))
                    }
                    Some(done) => {
                        expected.push((key.clone(), done));
                        Some((timestamp_ms, timestamp_ms, value))
                    }
                    None => Some((timestamp_ms, timestamp_ms, value)),
                };
            }
            expected.extend(session.map(|done| (key.clone(), done)));
        }
        let mut stored: Vec<(String, (i64, i64, u64))> = driver
            .session_store::<String, u64>("sessions")
            .unwrap()
            .into_iter()
            .map(|(windowed, sum)| {
                let window = windowed.window;
                (windowed.key, (window.start_ms, window.end_ms, sum))
            })
            .collect();
        stored.sort();
        expected.sort();
        prop_assert_eq!(stored, expected);
        prop_assert_eq!(driver.metrics().late_records_dropped, 0);
    }

    #[test]
    fn sliding_windows_without_late_records_are_the_windows_the_records_define(
        difference_ms in 1i64..30,
        input in records(),
    ) {
        // With nothing late, the store holds exactly: for each record at t, the window
        // [t - d, t], and [t + 1, t + 1 + d] where a record falls in it; each with the sum of
        // the values of the key's records it holds.
        let builder = StreamsBuilder::new();
        builder
            .stream::<String, u64>("in", Consumed::new())
            .group_by_key(Grouped::new())
            .windowed_by_sliding(SlidingWindows::with_time_difference_and_grace(
                difference_ms,
                10_000,
            ))
            .aggregate(|| 0u64, |_, value, sum| sum + value, Materialized::as_store("sliding"));
        let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
        let topic = driver.input_topic("in", utf8(), fixed());
        for (key, value, timestamp_ms) in &input {
            driver.pipe(&topic, key, value, *timestamp_ms).unwrap();
        }
        let mut expected: BTreeMap<(String, i64), u64> = BTreeMap::new();
        for (key, _, timestamp_ms) in &input {
            let same_key: Vec<(i64, u64)> = input
                .iter()
                .filter(|(other, _, _)| other == key)
                .map(|(_, value, time)| (*time, *value))
                .collect();
            for start_ms in [timestamp_ms - difference_ms, timestamp_ms + 1] {
                let held: Vec<u64> = same_key
                    .iter()
                    .filter(|(time, _)| *time >= start_ms && *time <= start_ms + difference_ms)
                    .map(|(_, value)| *value)
                    .collect();
                if !held.is_empty() {
                    expected.insert((key.clone(), start_ms), held.iter().sum());
                }
            }
        }
        let stored: BTreeMap<(String, i64), u64> = driver
            .window_store::<String, u64>("sliding")
            .unwrap()
            .into_iter()
            .map(|(key, start, sum)| ((key, start), sum))
            .collect();
        prop_assert_eq!(stored, expected);
        prop_assert_eq!(driver.metrics().late_records_dropped, 0);
    }

    #[test]
    fn final_results_never_change_and_equal_the_last_update_for_every_window_kind(
        kind in 0u8..3,
        size_ms in 1i64..30,
        grace_ms in 0i64..20,
        input in records(),
    ) {
        // Updates and final results in one topic, in processing order: after a window's final
        // result, no update of that window may follow, and the final is its last update.
        let builder = StreamsBuilder::new();
        let grouped = builder
            .stream::<String, u64>("in", Consumed::new())
            .group_by_key(Grouped::new());
        let advance_ms = (size_ms / 2).max(1);
        let hopping = TimeWindows::of_size_and_grace(size_ms, grace_ms).advance_by(advance_ms);
        let sliding = SlidingWindows::with_time_difference_and_grace(size_ms, grace_ms);
        let sessions = SessionWindows::with_inactivity_gap_and_grace(size_ms, grace_ms);
        let table = match kind {
            0 => grouped.windowed_by(hopping).count(Materialized::new()),
            1 => grouped.windowed_by_sliding(sliding).count(Materialized::new()),
            _ => grouped.windowed_by_session(sessions).count(Materialized::new()),
        };
        let updates = table
            .to_stream()
            .map_values(|count: Option<u64>| {
                format!("update {}", count.map_or(-1, |count| count as i64))
            });
        let finals = table
            .suppress_until_window_closes()
            .map_values(|count: u64| format!("final {count}"));
        updates.merge(&finals).to("events", Produced::with(windowed(), utf8()));
        let mut driver = TopologyTestDriver::new(builder.build(), DriverConfig::default());
        let topic = driver.input_topic("in", utf8(), fixed());
        for (key, value, timestamp_ms) in &input {
            driver.pipe(&topic, key, value, *timestamp_ms).unwrap();
        }
        let events = driver.output_topic("events", windowed(), utf8());
        let mut last_update: BTreeMap<Windowed<String>, String> = BTreeMap::new();
        let mut finals: BTreeMap<Windowed<String>, String> = BTreeMap::new();
        for event in driver.read_output(&events).unwrap() {
            if let Some(count) = event.value.strip_prefix("update ") {
                let after_final = finals.contains_key(&event.key);
                prop_assert!(!after_final, "{:?} updated after its final result", event.key);
                last_update.insert(event.key, count.to_string());
            } else {
                let count = event.value.strip_prefix("final ").unwrap().to_string();
                prop_assert_eq!(last_update.get(&event.key), Some(&count));
                let first = finals.insert(event.key, count).is_none();
                prop_assert!(first, "one final result per window");
            }
        }
    }
}
