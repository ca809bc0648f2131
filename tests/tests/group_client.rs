//! Consumer groups through the client library (`spate_client::group`) against the real broker:
//! partitions shared by three members and moved off one that dies, at-least-once delivery with
//! commits after processing, static members rejoining without a rebalance, the sticky assignor
//! keeping partitions in place, auto-commit, and group administration (list, describe with lag,
//! reset offsets, delete).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use spate_client::group::{
    GroupAdmin, GroupConfig, GroupConsumer, GroupState, RebalanceListener, ResetTarget,
};
use spate_client::{Client, ConsumerConfig, ErrorCode, TopicPartition};
use spate_protocol::api::Acks;
use spate_tests::client::numbered_records;
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

const WAIT_LIMIT: Duration = Duration::from_secs(60);

fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn produce(address: SocketAddr, topic: &str, partitions: u32, first: usize, count: usize) {
    let mut client = TestClient::connect(address);
    for partition in 0..partitions {
        let batch = build_batch(&numbered_records(first, count, 1_000 + first as i64)).freeze();
        assert_eq!(
            client.produce(topic, partition, Acks::All, vec![batch]).0,
            ErrorCode::None
        );
    }
}

fn group_config(group: &str) -> GroupConfig {
    let mut config = GroupConfig::new(group).with_session_timeout(Duration::from_secs(1));
    config.rebalance_timeout = Duration::from_secs(10);
    config
}

/// Records what the group hands a member.
#[derive(Clone, Default)]
struct Recorder {
    owned: Arc<Mutex<BTreeSet<TopicPartition>>>,
    revocations: Arc<Mutex<usize>>,
}

impl RebalanceListener for Recorder {
    fn partitions_revoked(&mut self, partitions: &[TopicPartition]) {
        let mut owned = self.owned.lock().unwrap();
        for partition in partitions {
            owned.remove(partition);
        }
        *self.revocations.lock().unwrap() += 1;
    }

    fn partitions_assigned(&mut self, partitions: &[TopicPartition]) {
        self.owned
            .lock()
            .unwrap()
            .extend(partitions.iter().cloned());
    }
}

fn owned_by(recorders: &[Recorder]) -> Vec<BTreeSet<u32>> {
    recorders
        .iter()
        .map(|recorder| {
            recorder
                .owned
                .lock()
                .unwrap()
                .iter()
                .map(|partition| partition.partition)
                .collect()
        })
        .collect()
}

fn disjoint_and_complete(owners: &[BTreeSet<u32>], partitions: u32) -> bool {
    let total: usize = owners.iter().map(BTreeSet::len).sum();
    let union: BTreeSet<u32> = owners.iter().flatten().copied().collect();
    total == partitions as usize && union == (0..partitions).collect()
}

/// Polls every member from its own thread, without pause, until their listeners show the
/// `partitions` shared out disjointly and completely and every member is in the same
/// generation; returns the members, still in the group.
fn poll_until_stable(
    members: Vec<GroupConsumer>,
    recorders: &[Recorder],
    partitions: u32,
) -> Vec<GroupConsumer> {
    let stop = Arc::new(AtomicBool::new(false));
    let generations = Arc::new(Mutex::new(vec![None; members.len()]));
    let threads: Vec<_> = members
        .into_iter()
        .enumerate()
        .map(|(index, mut member)| {
            let stop = stop.clone();
            let generations = generations.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    member.poll(Duration::from_millis(100)).unwrap();
                    generations.lock().unwrap()[index] = Some(member.generation());
                }
                member
            })
        })
        .collect();
    wait_until("the members share the partitions in one generation", || {
        let generations = generations.lock().unwrap();
        generations.iter().all(Option::is_some)
            && generations.iter().collect::<BTreeSet<_>>().len() == 1
            && disjoint_and_complete(&owned_by(recorders), partitions)
    });
    stop.store(true, Ordering::SeqCst);
    threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .collect()
}

#[derive(Default)]
struct Ledger {
    /// (partition, offset, member) for every record processed.
    consumed: Mutex<Vec<(u32, u64, usize)>>,
    processed_not_committed: Mutex<Vec<(u32, u64)>>,
    stop: AtomicBool,
    kill: [AtomicBool; 3],
}

/// An application loop: process what `poll` returned, then commit it.
fn run_member(index: usize, address: SocketAddr, recorder: Recorder, ledger: Arc<Ledger>) {
    let client = Client::connect_to(address.to_string()).unwrap();
    let mut consumer = GroupConsumer::new(
        &client,
        ConsumerConfig::default(),
        group_config("processors").with_manual_commits(),
    )
    .unwrap();
    consumer
        .subscribe_with_listener(&["orders"], recorder)
        .unwrap();
    loop {
        if ledger.stop.load(Ordering::SeqCst) {
            consumer.close().unwrap();
            return;
        }
        let polled = consumer.poll(Duration::from_millis(100)).unwrap();
        let processed: Vec<(u32, u64)> = polled
            .records()
            .map(|record| (record.partition(), record.offset()))
            .collect();
        if processed.is_empty() {
            continue;
        }
        ledger.consumed.lock().unwrap().extend(
            processed
                .iter()
                .map(|(partition, offset)| (*partition, *offset, index)),
        );
        if ledger.kill[index].load(Ordering::SeqCst) {
            *ledger.processed_not_committed.lock().unwrap() = processed;
            consumer.close_without_leaving();
            return;
        }
        consumer.commit_sync().unwrap();
    }
}

fn consumed_set(ledger: &Ledger) -> BTreeSet<(u32, u64)> {
    ledger
        .consumed
        .lock()
        .unwrap()
        .iter()
        .map(|(partition, offset, _)| (*partition, *offset))
        .collect()
}

#[test]
fn three_group_consumers_share_twelve_partitions_and_a_dead_ones_partitions_move_without_loss() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("orders", 12, &[]);
    produce(broker.address(), "orders", 12, 0, 20);
    let ledger = Arc::new(Ledger::default());
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let members: Vec<_> = recorders
        .iter()
        .enumerate()
        .map(|(index, recorder)| {
            let (address, recorder, ledger) = (broker.address(), recorder.clone(), ledger.clone());
            std::thread::spawn(move || run_member(index, address, recorder, ledger))
        })
        .collect();

    wait_until("the three members split the partitions", || {
        let owners = owned_by(&recorders);
        owners.iter().all(|owned| owned.len() == 4) && disjoint_and_complete(&owners, 12)
    });
    wait_until("the first records are consumed", || {
        consumed_set(&ledger).len() == 12 * 20
    });
    let dead_partitions = owned_by(&recorders)[2].clone();

    // Member 2 dies after processing its next records, before committing them.
    ledger.kill[2].store(true, Ordering::SeqCst);
    produce(broker.address(), "orders", 12, 20, 20);
    wait_until("the survivors own every partition", || {
        disjoint_and_complete(&owned_by(&recorders[..2]), 12)
    });
    produce(broker.address(), "orders", 12, 40, 10);
    wait_until("every record is consumed", || {
        consumed_set(&ledger).len() == 12 * 50
    });
    ledger.stop.store(true, Ordering::SeqCst);
    for member in members {
        member.join().expect("member thread");
    }

    let expected: BTreeSet<(u32, u64)> = (0..12)
        .flat_map(|partition| (0..50).map(move |offset| (partition, offset)))
        .collect();
    assert_eq!(consumed_set(&ledger), expected, "nothing skipped");
    let not_committed: BTreeSet<(u32, u64)> = ledger
        .processed_not_committed
        .lock()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert!(!not_committed.is_empty());
    assert!(not_committed
        .iter()
        .all(|(partition, _)| dead_partitions.contains(partition)));
    let mut counts: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for (partition, offset, _) in ledger.consumed.lock().unwrap().iter() {
        *counts.entry((*partition, *offset)).or_default() += 1;
    }
    for (record, count) in counts {
        if count > 1 {
            assert!(
                not_committed.contains(&record),
                "{record:?} read {count} times though committed"
            );
        }
    }
}

#[test]
fn a_static_member_restarted_within_its_session_gets_its_partitions_back_without_a_rebalance() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("events", 6, &[]);
    let client = Client::connect_to(broker.address().to_string()).unwrap();
    let config = |instance: &str| {
        let mut config = GroupConfig::new("static")
            .with_instance_id(instance)
            .with_session_timeout(Duration::from_secs(10));
        config.rebalance_timeout = Duration::from_secs(10);
        config
    };
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let mut members: Vec<GroupConsumer> = ["a", "b", "c"]
        .iter()
        .zip(&recorders)
        .map(|(instance, recorder)| {
            let mut member =
                GroupConsumer::new(&client, ConsumerConfig::default(), config(instance)).unwrap();
            member
                .subscribe_with_listener(&["events"], recorder.clone())
                .unwrap();
            member
        })
        .collect();
    // Joins block until the rebalance completes: drive the members from their own threads.
    let poll_all = |members: Vec<GroupConsumer>| -> Vec<GroupConsumer> {
        let threads: Vec<_> = members
            .into_iter()
            .map(|mut member| {
                std::thread::spawn(move || {
                    member.poll(Duration::from_millis(300)).unwrap();
                    member
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|thread| thread.join().unwrap())
            .collect()
    };
    // Forming the group, every member polls continuously, as an application would: polled in
    // lockstep rounds instead, a member whose round ended while the others wait in a join
    // would hold that rebalance for its full timeout, and under load the rounds can keep
    // missing each other.
    members = poll_until_stable(members, &recorders, 6);
    let generation = members[0].generation();
    let revocations_before: Vec<usize> = recorders
        .iter()
        .map(|recorder| *recorder.revocations.lock().unwrap())
        .collect();
    let b_partitions = owned_by(&recorders)[1].clone();

    // b's process restarts: close (a static member stays in the group) and come back.
    members.remove(1).close().unwrap();
    let restarted_recorder = Recorder::default();
    let mut restarted =
        GroupConsumer::new(&client, ConsumerConfig::default(), config("b")).unwrap();
    restarted
        .subscribe_with_listener(&["events"], restarted_recorder.clone())
        .unwrap();
    restarted.poll(Duration::from_millis(100)).unwrap();
    assert_eq!(restarted.generation(), generation, "no new generation");
    let restarted_partitions: BTreeSet<u32> = restarted_recorder
        .owned
        .lock()
        .unwrap()
        .iter()
        .map(|partition| partition.partition)
        .collect();
    assert_eq!(restarted_partitions, b_partitions);

    members = poll_all(members);
    for (member, index) in members.iter().zip([0, 2]) {
        assert_eq!(member.generation(), generation);
        assert_eq!(
            *recorders[index].revocations.lock().unwrap(),
            revocations_before[index],
            "member {index} saw a rebalance"
        );
    }
    let described = GroupAdmin::new(&client)
        .describe_group("static")
        .wait()
        .unwrap();
    assert_eq!(described.state, GroupState::Stable);
    assert_eq!(described.generation, generation);
    assert_eq!(described.members.len(), 3);
}

#[test]
fn the_sticky_assignor_leaves_the_survivors_partitions_where_they_were() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("sensors", 9, &[]);
    let client = Client::connect_to(broker.address().to_string()).unwrap();
    let recorders: Vec<Recorder> = (0..3).map(|_| Recorder::default()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let leave = [
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicBool::new(false)),
    ];
    let threads: Vec<_> = recorders
        .iter()
        .enumerate()
        .map(|(index, recorder)| {
            let (client, recorder, stop, leave) = (
                client.clone(),
                recorder.clone(),
                stop.clone(),
                leave[index].clone(),
            );
            std::thread::spawn(move || {
                let mut consumer = GroupConsumer::new(
                    &client,
                    ConsumerConfig::default(),
                    group_config("sticky").with_assignors(&["sticky"]),
                )
                .unwrap();
                consumer
                    .subscribe_with_listener(&["sensors"], recorder)
                    .unwrap();
                while !stop.load(Ordering::SeqCst) && !leave.load(Ordering::SeqCst) {
                    consumer.poll(Duration::from_millis(50)).unwrap();
                }
                consumer.close().unwrap();
            })
        })
        .collect();
    wait_until("three members share nine partitions", || {
        let owners = owned_by(&recorders);
        owners.iter().all(|owned| owned.len() == 3) && disjoint_and_complete(&owners, 9)
    });
    let before = owned_by(&recorders);
    leave[1].store(true, Ordering::SeqCst);
    wait_until("the two survivors share the partitions", || {
        disjoint_and_complete(
            &owned_by(&recorders[..1])
                .into_iter()
                .chain(owned_by(&recorders[2..]))
                .collect::<Vec<_>>(),
            9,
        )
    });
    let after = owned_by(&recorders);
    for index in [0, 2] {
        assert!(
            after[index].is_superset(&before[index]),
            "member {index} lost partitions: {:?} -> {:?}",
            before[index],
            after[index]
        );
    }
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn auto_commit_and_close_commit_what_was_processed() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("audit", 2, &[]);
    produce(broker.address(), "audit", 2, 0, 25);
    let client = Client::connect_to(broker.address().to_string()).unwrap();
    let mut config = group_config("auditors");
    config.auto_commit_interval = Some(Duration::from_millis(100));
    let mut consumer = GroupConsumer::new(&client, ConsumerConfig::default(), config).unwrap();
    consumer.subscribe(&["audit"]).unwrap();
    let mut seen = 0;
    wait_until("every record is read", || {
        seen += consumer.poll(Duration::from_millis(100)).unwrap().len();
        seen == 50
    });
    // The records were returned; the next polls mark them processed and commit them.
    let partitions = [
        TopicPartition::new("audit", 0),
        TopicPartition::new("audit", 1),
    ];
    wait_until("the auto-commit catches up", || {
        consumer.poll(Duration::from_millis(50)).unwrap();
        consumer.committed(&partitions).wait().unwrap() == vec![Some(25), Some(25)]
    });
    consumer.close().unwrap();
    let admin = GroupAdmin::new(&client);
    let described = admin.describe_group("auditors").wait().unwrap();
    assert_eq!(described.state, GroupState::Empty, "close left the group");
    assert!(described.offsets.iter().all(|offset| offset.lag == Some(0)));
}

#[test]
fn group_admin_lists_describes_resets_and_deletes_groups() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("payments", 2, &[]);
    produce(broker.address(), "payments", 2, 0, 10);
    let client = Client::connect_to(broker.address().to_string()).unwrap();
    let admin = GroupAdmin::new(&client);

    let mut consumer = GroupConsumer::new(
        &client,
        ConsumerConfig::default(),
        group_config("ledger").with_manual_commits(),
    )
    .unwrap();
    consumer.subscribe(&["payments"]).unwrap();
    let mut read = 0;
    wait_until("ten records are read", || {
        read += consumer.poll(Duration::from_millis(100)).unwrap().len();
        read >= 10
    });
    consumer
        .commit_offsets(vec![
            (TopicPartition::new("payments", 0), 4),
            (TopicPartition::new("payments", 1), 10),
        ])
        .wait()
        .unwrap();

    let listed = admin.list_groups().wait().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].group_id, "ledger");
    assert_eq!(listed[0].state, GroupState::Stable);
    let described = admin.describe_group("ledger").wait().unwrap();
    assert_eq!(described.members.len(), 1);
    assert_eq!(described.members[0].assignment.len(), 2);
    let lags: Vec<(u32, u64, Option<u64>)> = described
        .offsets
        .iter()
        .map(|offset| {
            (
                offset.partition.partition,
                offset.committed_offset,
                offset.lag,
            )
        })
        .collect();
    assert_eq!(lags, vec![(0, 4, Some(6)), (1, 10, Some(0))]);

    // A live group's offsets stay where its members put them.
    let refused = admin
        .reset_offsets("ledger", "payments", ResetTarget::Earliest)
        .wait()
        .unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::NonEmptyGroup));
    consumer.close().unwrap();

    assert_eq!(
        admin
            .reset_offsets("ledger", "payments", ResetTarget::Earliest)
            .wait()
            .unwrap(),
        vec![(0, 0), (1, 0)]
    );
    assert_eq!(
        admin
            .reset_offsets("ledger", "payments", ResetTarget::Latest)
            .wait()
            .unwrap(),
        vec![(0, 10), (1, 10)]
    );
    assert_eq!(
        admin
            .reset_offsets("ledger", "payments", ResetTarget::Offset(3))
            .wait()
            .unwrap(),
        vec![(0, 3), (1, 3)]
    );
    // Record n has timestamp 1000 + n: the first at or after 1005 is offset 5.
    assert_eq!(
        admin
            .reset_offsets("ledger", "payments", ResetTarget::Timestamp(1_005))
            .wait()
            .unwrap(),
        vec![(0, 5), (1, 5)]
    );
    assert_eq!(
        admin
            .reset_offsets("ledger", "payments", ResetTarget::Timestamp(99_999))
            .wait()
            .unwrap(),
        vec![(0, 10), (1, 10)],
        "past the last record: the end"
    );

    // A restarted consumer continues from the reset position.
    admin
        .reset_offsets("ledger", "payments", ResetTarget::Offset(8))
        .wait()
        .unwrap();
    let mut consumer = GroupConsumer::new(
        &client,
        ConsumerConfig::default(),
        group_config("ledger").with_manual_commits(),
    )
    .unwrap();
    consumer.subscribe(&["payments"]).unwrap();
    let mut offsets = Vec::new();
    wait_until("the remaining records are read", || {
        offsets.extend(
            consumer
                .poll(Duration::from_millis(100))
                .unwrap()
                .records()
                .map(|record| record.offset()),
        );
        offsets.len() >= 4
    });
    assert!(offsets.iter().all(|offset| *offset >= 8), "{offsets:?}");
    consumer.close().unwrap();

    admin.delete_group("ledger").wait().unwrap();
    assert!(admin.list_groups().wait().unwrap().is_empty());
    let gone = admin.describe_group("ledger").wait().unwrap_err();
    assert_eq!(gone.code(), Some(ErrorCode::GroupIdNotFound));
}

#[test]
fn a_group_consumer_polls_and_commits_from_async_code_on_a_tokio_runtime() {
    let broker = Broker::start(BrokerOptions::default());
    TestClient::connect(broker.address()).create_topic("async-events", 3, &[]);
    produce(broker.address(), "async-events", 3, 0, 10);
    let address = broker.address().to_string();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let committed = runtime.block_on(async move {
        // Spawned on the runtime: the member and its poll future move between worker threads.
        tokio::spawn(async move {
            let client = Client::connect_to(address).unwrap();
            let config = group_config("async-readers").with_manual_commits();
            let mut consumer =
                GroupConsumer::new(&client, ConsumerConfig::default(), config).unwrap();
            consumer.subscribe(&["async-events"]).unwrap();
            let mut read = 0;
            while read < 30 {
                read += consumer
                    .poll_async(Duration::from_millis(100))
                    .await
                    .unwrap()
                    .len();
            }
            consumer.commit_async().await.unwrap();
            let partitions: Vec<TopicPartition> = (0..3)
                .map(|partition| TopicPartition::new("async-events", partition))
                .collect();
            let committed = consumer.committed(&partitions).await.unwrap();
            consumer.close().unwrap();
            committed
        })
        .await
        .unwrap()
    });
    assert_eq!(committed, vec![Some(10), Some(10), Some(10)]);
}
