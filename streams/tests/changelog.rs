//! Stores restored from their changelogs, against the real broker binary: a word count whose
//! instance is closed and replaced counts on from where it stopped (exactly, since a clean close
//! commits everything), and a word count run by two instances, one killed in the middle of a
//! poll and replaced by a new one, whose final table counts every word at least as often as it
//! occurs and agrees with its changelog.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use spate_client::{Client, ClientConfig, ConsumerConfig, NewTopic, OwnedRecord, ProducerConfig};
use spate_client::{IsolationLevel, ProducerRecord, StartAt};
use spate_streams::{changelog_topic, Consumed, Grouped, Materialized, Produced, StreamsBuilder};
use spate_streams::{ProcessingGuarantee, RestoreProgress};
use spate_streams::{StreamsConfig, StreamsRuntime, Topology};
use spate_tests::{Broker, BrokerOptions};

const DEADLINE: Duration = Duration::from_secs(120);
const APPLICATION_ID: &str = "changelog-test";
const STORE: &str = "word-counts";

fn client(broker: &Broker) -> Client {
    let config = ClientConfig {
        retry_timeout: Duration::from_secs(60),
        ..ClientConfig::new(broker.address().to_string())
    };
    Client::new(config).expect("client config is valid")
}

fn create_topics(client: &Client) {
    for topic in ["lines", "counts"] {
        client
            .admin()
            .create_topic(NewTopic::new(topic, 2))
            .wait()
            .unwrap();
    }
}

fn produce(client: &Client, lines: &[(String, String)]) {
    let producer = client.producer(ProducerConfig::default()).unwrap();
    let deliveries: Vec<_> = lines
        .iter()
        .map(|(key, value)| {
            let record = ProducerRecord::new("lines", value.as_bytes()).with_key(key.as_bytes());
            producer.send_blocking(record).unwrap()
        })
        .collect();
    producer.flush().wait().unwrap();
    for delivery in deliveries {
        delivery.wait().unwrap();
    }
}

/// Lines `from..to`, each of three words out of a small vocabulary, so that every word occurs
/// in every batch and a count that restarted from zero would fall short.
fn lines(from: usize, to: usize) -> Vec<(String, String)> {
    (from..to)
        .map(|line| {
            (
                format!("l{line}"),
                format!("w{} w{} shared", line % 7, line % 3),
            )
        })
        .collect()
}

fn word_totals(lines: &[(String, String)]) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for (_, line) in lines {
        for word in line.split_whitespace() {
            *totals.entry(word.to_string()).or_default() += 1;
        }
    }
    totals
}

/// Once killed, the instance dies at this counted word.
const KILLED_AT_WORD: u64 = 30;

/// The word count, with a named store; `kill`, once set, makes the [`KILLED_AT_WORD`]th word
/// counted after it panic in the middle of processing (after the store was written, before
/// the output and the offsets).
fn word_count(kill: Arc<AtomicBool>) -> Topology {
    let counted_since_kill = AtomicU64::new(0);
    let builder = StreamsBuilder::new();
    builder
        .stream::<String, String>("lines", Consumed::new())
        .flat_map_values(|line: String| {
            line.split_whitespace()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .group_by(|_, word| word.clone(), Grouped::new())
        .count(Materialized::as_store(STORE))
        .to_stream()
        .peek(move |_, _| {
            if kill.load(Ordering::Relaxed) {
                // Slowly, so that the producer has sent the words counted before in the same
                // poll (uncommitted) when the instance dies.
                thread::sleep(Duration::from_millis(2));
                let counted = counted_since_kill.fetch_add(1, Ordering::Relaxed) + 1;
                assert!(counted < KILLED_AT_WORD, "killed in the middle of a poll");
            }
        })
        .to("counts", Produced::new());
    builder.build()
}

/// The last value of each key of `topic` (its table), read from the start to its current end.
fn table(client: &Client, topic: &str) -> BTreeMap<Vec<u8>, Vec<u8>> {
    read(client, topic, IsolationLevel::ReadUncommitted).0
}

/// The last value of each key of `topic` and how many records it holds, read from the start to
/// its current end at `isolation_level`.
fn read(
    client: &Client,
    topic: &str,
    isolation_level: IsolationLevel,
) -> (BTreeMap<Vec<u8>, Vec<u8>>, usize) {
    let end_offsets: Vec<u64> = client
        .admin()
        .list_offsets(topic, None, spate_client::OffsetSpec::Latest)
        .wait()
        .unwrap()
        .iter()
        .map(|answer| answer.offset.unwrap())
        .collect();
    let config = ConsumerConfig {
        isolation_level,
        ..ConsumerConfig::default()
    };
    let mut consumer = client.consumer(config).unwrap();
    consumer
        .assign(topic, None, StartAt::Earliest)
        .wait()
        .unwrap();
    let started = Instant::now();
    let mut table = BTreeMap::new();
    let mut records = 0;
    let caught_up = |consumer: &spate_client::Consumer| {
        end_offsets.iter().enumerate().all(|(partition, end)| {
            consumer
                .position(topic, partition as u32)
                .is_some_and(|position| position >= *end)
        })
    };
    while !caught_up(&consumer) {
        assert!(started.elapsed() < DEADLINE, "{topic} not read to its end");
        for record in consumer.poll_owned(Duration::from_millis(200)).unwrap() {
            records += 1;
            let OwnedRecord { key, value, .. } = record;
            let key = key.unwrap().to_vec();
            match value {
                Some(value) => table.insert(key, value.to_vec()),
                None => table.remove(&key),
            };
        }
    }
    (table, records)
}

fn counts(table: &BTreeMap<Vec<u8>, Vec<u8>>) -> BTreeMap<String, u64> {
    table
        .iter()
        .map(|(key, value)| {
            let word = String::from_utf8(key.clone()).unwrap();
            (word, u64::from_le_bytes(value[..].try_into().unwrap()))
        })
        .collect()
}

/// Polls `runtime` until every input partition is caught up (after at least one poll that
/// processed nothing, so that the group's assignment has settled).
fn run_until_caught_up(runtime: &mut StreamsRuntime) {
    let started = Instant::now();
    loop {
        assert!(started.elapsed() < DEADLINE, "never caught up");
        let processed = runtime.poll_once().unwrap();
        let lag = runtime.lag();
        if processed == 0 && lag.len() == 4 && lag.values().all(|records| *records == 0) {
            return;
        }
    }
}

#[test]
fn a_replaced_instance_counts_on_from_the_restored_store_exactly() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    create_topics(&client);
    let never = Arc::new(AtomicBool::new(false));
    let first_batch = lines(0, 40);
    produce(&client, &first_batch);
    let mut first = StreamsRuntime::start(
        &client,
        word_count(Arc::clone(&never)),
        StreamsConfig::new(APPLICATION_ID),
    )
    .unwrap();
    run_until_caught_up(&mut first);
    assert!(
        first
            .restore_progress()
            .values()
            .all(|progress| progress.end_offset == 0),
        "the first instance found empty changelogs: {:?}",
        first.restore_progress()
    );
    first.close().unwrap();

    let second_batch = lines(40, 100);
    produce(&client, &second_batch);
    let mut second = StreamsRuntime::start(
        &client,
        word_count(never),
        StreamsConfig::new(APPLICATION_ID),
    )
    .unwrap();
    run_until_caught_up(&mut second);
    let progress = second.restore_progress();
    assert_eq!(progress.len(), 2, "one store, two partitions: {progress:?}");
    for ((store, _), restored) in &progress {
        assert_eq!(store, STORE);
        assert!(restored.done);
        assert!(restored.records_restored > 0, "{progress:?}");
        assert!(restored.records_restored <= restored.end_offset);
    }
    second.close().unwrap();

    let all_lines: Vec<_> = first_batch.into_iter().chain(second_batch).collect();
    let expected = word_totals(&all_lines);
    // A clean close commits everything processed, so nothing was counted twice.
    assert_eq!(counts(&table(&client, "counts")), expected);
    let changelog = table(&client, &changelog_topic(APPLICATION_ID, STORE));
    assert_eq!(counts(&changelog), expected);
}

/// Runs the word count on its own thread until `stop`; `kill` panics it mid-poll instead.
fn run_instance(
    client: Client,
    kill: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    config: StreamsConfig,
) -> thread::JoinHandle<BTreeMap<(String, u32), RestoreProgress>> {
    thread::spawn(move || {
        let mut runtime = StreamsRuntime::start(&client, word_count(kill), config).unwrap();
        let mut progress = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            runtime.poll_once().unwrap();
            progress.extend(runtime.restore_progress());
        }
        runtime.close().unwrap();
        progress
    })
}

/// Reads `counts` until the last count of every word is at least `expected`'s.
fn wait_for_counts(client: &Client, expected: &BTreeMap<String, u64>) {
    let started = Instant::now();
    loop {
        assert!(
            started.elapsed() < DEADLINE,
            "counts never reached {expected:?}"
        );
        let counts = counts(&table(client, "counts"));
        let reached = expected
            .iter()
            .all(|(word, total)| counts.get(word).is_some_and(|count| count >= total));
        if reached {
            return;
        }
        thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn an_instance_killed_mid_poll_is_replaced_and_every_word_is_counted_at_least_once() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    create_topics(&client);
    let never = Arc::new(AtomicBool::new(false));
    let kill_first = Arc::new(AtomicBool::new(false));
    let stop_first = Arc::new(AtomicBool::new(false));
    let stop_second = Arc::new(AtomicBool::new(false));
    let config = StreamsConfig::new(APPLICATION_ID);
    let first = run_instance(
        client.clone(),
        Arc::clone(&kill_first),
        Arc::clone(&stop_first),
        config.clone(),
    );
    let second = run_instance(
        client.clone(),
        Arc::clone(&never),
        Arc::clone(&stop_second),
        config.clone(),
    );
    let first_batch = lines(0, 60);
    produce(&client, &first_batch);
    wait_for_counts(&client, &word_totals(&first_batch));
    // The first instance dies at its next counted word: its runtime is dropped while unwinding,
    // with its last poll's output and changelog writes possibly sent and its offsets not
    // committed.
    kill_first.store(true, Ordering::Relaxed);
    let second_batch = lines(60, 120);
    produce(&client, &second_batch);
    let replacement = run_instance(
        client.clone(),
        Arc::clone(&never),
        Arc::clone(&stop_first),
        config,
    );
    let third_batch = lines(120, 160);
    produce(&client, &third_batch);
    let all_lines: Vec<_> = first_batch
        .into_iter()
        .chain(second_batch)
        .chain(third_batch)
        .collect();
    let expected = word_totals(&all_lines);
    wait_for_counts(&client, &expected);
    stop_first.store(true, Ordering::Relaxed);
    stop_second.store(true, Ordering::Relaxed);
    let replacement_progress = replacement.join().unwrap();
    second.join().unwrap();
    // The first instance either died at a word of the second batch or, if the second instance
    // took both partitions, sat idle until stopped.
    let first_outcome = first.join();
    let replacement_restored: u64 = replacement_progress
        .values()
        .map(|progress| progress.records_restored)
        .sum();
    assert!(
        replacement_restored > 0 && replacement_progress.values().all(|progress| progress.done),
        "the replacement restored the store of the partitions it took: {replacement_progress:?}"
    );

    // Under at least once, a word counted in the killed poll may be counted again after the
    // restore, never less: each final count is at least its number of occurrences (a task that
    // started from an empty store would fall short, every word being in every batch), and the
    // final table is its changelog's.
    let final_counts = counts(&table(&client, "counts"));
    for (word, total) in &expected {
        assert!(
            final_counts[word] >= *total,
            "{word}: {} < {total} (first instance: {first_outcome:?})",
            final_counts[word]
        );
    }
    assert_eq!(final_counts.len(), expected.len());
    let changelog = counts(&table(&client, &changelog_topic(APPLICATION_ID, STORE)));
    assert_eq!(changelog, final_counts);
}

/// The same run under exactly-once, each instance with its own instance id; the replacement
/// takes the killed one's id, so its start fences the killed instance and aborts the
/// transaction it left open.
#[test]
fn under_exactly_once_an_instance_killed_mid_transaction_leaves_exact_committed_output() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    create_topics(&client);
    let never = Arc::new(AtomicBool::new(false));
    let kill_first = Arc::new(AtomicBool::new(false));
    let stop_first = Arc::new(AtomicBool::new(false));
    let stop_second = Arc::new(AtomicBool::new(false));
    let config = |instance_id: &str| StreamsConfig {
        processing_guarantee: ProcessingGuarantee::ExactlyOnce,
        instance_id: instance_id.to_string(),
        // Transactions that span several polls.
        commit_interval: Duration::from_millis(100),
        ..StreamsConfig::new(APPLICATION_ID)
    };
    let first = run_instance(
        client.clone(),
        Arc::clone(&kill_first),
        Arc::clone(&stop_first),
        config("a"),
    );
    let second = run_instance(
        client.clone(),
        Arc::clone(&never),
        Arc::clone(&stop_second),
        config("b"),
    );
    let first_batch = lines(0, 60);
    produce(&client, &first_batch);
    wait_for_counts(&client, &word_totals(&first_batch));
    kill_first.store(true, Ordering::Relaxed);
    let second_batch = lines(60, 120);
    produce(&client, &second_batch);
    // Give the first instance the time to die inside a transaction before it is fenced.
    thread::sleep(Duration::from_millis(500));
    let replacement = run_instance(
        client.clone(),
        Arc::clone(&never),
        Arc::clone(&stop_first),
        config("a"),
    );
    let third_batch = lines(120, 160);
    produce(&client, &third_batch);
    let all_lines: Vec<_> = first_batch
        .into_iter()
        .chain(second_batch)
        .chain(third_batch)
        .collect();
    let expected = word_totals(&all_lines);
    wait_for_counts(&client, &expected);
    stop_first.store(true, Ordering::Relaxed);
    stop_second.store(true, Ordering::Relaxed);
    replacement.join().unwrap();
    second.join().unwrap();
    let first_outcome = first.join();

    // Read committed, each word occurrence is exactly one count update, and the last ones are
    // the true counts; the changelog read committed agrees.
    let (committed, updates) = read(&client, "counts", IsolationLevel::ReadCommitted);
    assert_eq!(
        counts(&committed),
        expected,
        "first instance: {first_outcome:?}"
    );
    let words: u64 = expected.values().sum();
    assert_eq!(updates as u64, words, "no update committed twice");
    let changelog_topic = changelog_topic(APPLICATION_ID, STORE);
    let (changelog, _) = read(&client, &changelog_topic, IsolationLevel::ReadCommitted);
    assert_eq!(counts(&changelog), expected);
}

/// What an instance with standby replicas saw: its restores, and the furthest position of each
/// standby replica (partition, store) it kept.
type StandbyRun = (
    BTreeMap<(String, u32), RestoreProgress>,
    BTreeMap<(u32, String), u64>,
);

fn run_with_standbys(client: Client, stop: Arc<AtomicBool>) -> thread::JoinHandle<StandbyRun> {
    thread::spawn(move || {
        let config = StreamsConfig {
            num_standby_replicas: 1,
            ..StreamsConfig::new(APPLICATION_ID)
        };
        let never = Arc::new(AtomicBool::new(false));
        let mut runtime = StreamsRuntime::start(&client, word_count(never), config).unwrap();
        let mut progress = BTreeMap::new();
        let mut standbys = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            runtime.poll_once().unwrap();
            progress.extend(runtime.restore_progress());
            for (partition, positions) in runtime.standby_positions() {
                for (store, position) in positions {
                    let furthest: &mut u64 = standbys.entry((partition, store)).or_default();
                    *furthest = (*furthest).max(position);
                }
            }
        }
        runtime.close().unwrap();
        (progress, standbys)
    })
}

#[test]
fn a_standby_replica_keeps_up_so_that_a_takeover_restores_only_the_rest_of_the_changelog() {
    let broker = Broker::start(BrokerOptions::default());
    let client = client(&broker);
    create_topics(&client);
    let stop_first = Arc::new(AtomicBool::new(false));
    let stop_second = Arc::new(AtomicBool::new(false));
    let first = run_with_standbys(client.clone(), Arc::clone(&stop_first));
    let second = run_with_standbys(client.clone(), Arc::clone(&stop_second));
    let first_batch = lines(0, 60);
    produce(&client, &first_batch);
    wait_for_counts(&client, &word_totals(&first_batch));
    // Time for the standbys to read what the active tasks logged.
    thread::sleep(Duration::from_secs(1));
    stop_first.store(true, Ordering::Relaxed);
    let (_, first_standbys) = first.join().unwrap();
    let second_batch = lines(60, 100);
    produce(&client, &second_batch);
    let all_lines: Vec<_> = first_batch.into_iter().chain(second_batch).collect();
    let expected = word_totals(&all_lines);
    wait_for_counts(&client, &expected);
    stop_second.store(true, Ordering::Relaxed);
    let (second_restores, second_standbys) = second.join().unwrap();

    assert!(
        !first_standbys.is_empty() || !second_standbys.is_empty(),
        "with two partitions shared by two instances, each keeps a standby of the other's"
    );
    // The second instance took over the first's partition from its standby: that restore
    // began where the standby had got, past the changelog's start.
    let taken_over: Vec<_> = second_restores
        .iter()
        .filter(|(_, progress)| progress.start_offset > 0)
        .collect();
    assert!(
        !taken_over.is_empty(),
        "restores {second_restores:?}, standbys {second_standbys:?}"
    );
    for ((store, partition), progress) in taken_over {
        assert!(progress.done);
        assert!(second_standbys[&(*partition, store.clone())] >= progress.start_offset);
        assert!(progress.records_restored <= progress.end_offset - progress.start_offset);
    }
    // Clean closes commit everything: the counts are exact.
    assert_eq!(counts(&table(&client, "counts")), expected);
}
