//! Consumer group membership against the real broker, with members that speak the group
//! protocol directly: partitions shared by live members and moved off a killed one, static
//! members rejoining without a rebalance, zombies fenced from committing, and a 50-member
//! rebalance within the rebalance timeout; group limits set by broker flags.

mod group_support;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use group_support::*;
use spate_protocol::api::{Acks, GroupState, HeartbeatRequest};
use spate_protocol::ErrorCode;
use spate_tests::client::{numbered_records, records_of};
use spate_tests::{build_batch, Broker, BrokerOptions, TestClient};

fn partition_counts(topic: &str, count: u32) -> BTreeMap<String, u32> {
    BTreeMap::from([(topic.to_string(), count)])
}

fn produce_round(
    client: &mut TestClient,
    topic: &str,
    partitions: u32,
    first: usize,
    count: usize,
) {
    for partition in 0..partitions {
        let batch = build_batch(&numbered_records(first, count, 1_000)).freeze();
        let (code, _) = client.produce(topic, partition, Acks::All, vec![batch]);
        assert_eq!(code, ErrorCode::None);
    }
}

// ---- three consumers, twelve partitions, one killed -----------------------------------------

const TOPIC: &str = "orders";
const GROUP: &str = "order-processors";
const PARTITIONS: u32 = 12;

/// What the consumers report to the test.
#[derive(Default)]
struct Shared {
    /// Every record processed: (partition, offset, member index).
    consumed: Mutex<Vec<(u32, u64, usize)>>,
    /// Each member's latest (generation, partitions).
    assignments: Mutex<BTreeMap<usize, (i32, Vec<u32>)>>,
    /// What the killed member processed and never committed.
    processed_not_committed: Mutex<Vec<(u32, u64)>>,
    stop: AtomicBool,
    kill: [AtomicBool; 3],
}

/// A consumer loop as an application would run it: process what it fetched, then commit the
/// positions; heartbeat; rejoin when told. A killed member stops between processing and
/// committing, without leaving the group.
fn consume(index: usize, address: SocketAddr, shared: Arc<Shared>) {
    let mut member = Member::new(address, GROUP, &[TOPIC], None);
    let mut data = TestClient::connect(address);
    let counts = partition_counts(TOPIC, PARTITIONS);
    let mut positions: BTreeMap<u32, u64> = BTreeMap::new();
    let mut joined = false;
    let mut last_heartbeat = Instant::now();
    loop {
        if shared.stop.load(Ordering::SeqCst) {
            member.leave();
            return;
        }
        if !joined {
            if member.join_and_sync(&counts).is_err() {
                continue;
            }
            let partitions: Vec<u32> = member
                .assigned
                .iter()
                .map(|(_, partition)| *partition)
                .collect();
            positions = committed(&mut member.client, GROUP, TOPIC, &partitions)
                .into_iter()
                .map(|(partition, offset)| (partition, offset.unwrap_or(0)))
                .collect();
            shared
                .assignments
                .lock()
                .unwrap()
                .insert(index, (member.generation, partitions));
            joined = true;
            last_heartbeat = Instant::now();
        }
        let mut processed = Vec::new();
        for (partition, position) in positions.iter_mut() {
            let answer = data.fetch_once(TOPIC, *partition, *position, 2048);
            for (offset, _) in records_of(&answer.records.to_bytes()) {
                processed.push((*partition, offset));
                *position = offset + 1;
            }
        }
        if !processed.is_empty() {
            let mut consumed = shared.consumed.lock().unwrap();
            consumed.extend(
                processed
                    .iter()
                    .map(|(partition, offset)| (*partition, *offset, index)),
            );
            drop(consumed);
            if shared.kill[index].load(Ordering::SeqCst) {
                *shared.processed_not_committed.lock().unwrap() = processed;
                return;
            }
            let offsets: Vec<(&str, u32, u64)> = positions
                .iter()
                .map(|(partition, position)| (TOPIC, *partition, *position))
                .collect();
            let response = member.commit(&offsets);
            if commit_codes(&response).iter().any(|code| !code.is_none()) {
                joined = false;
            }
        }
        if last_heartbeat.elapsed() >= HEARTBEAT_INTERVAL {
            last_heartbeat = Instant::now();
            if !member.heartbeat().is_none() {
                joined = false;
            }
        }
        if processed.is_empty() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The generation and the partitions of each listed member, once they all agree on one
/// generation.
fn settled(shared: &Shared, members: &[usize]) -> Option<(i32, Vec<Vec<u32>>)> {
    let assignments = shared.assignments.lock().unwrap();
    let generations: BTreeSet<i32> = members
        .iter()
        .map(|index| assignments.get(index).map(|(generation, _)| *generation))
        .collect::<Option<_>>()?;
    if generations.len() != 1 {
        return None;
    }
    let partitions = members
        .iter()
        .map(|index| assignments[index].1.clone())
        .collect();
    Some((*generations.iter().next().unwrap(), partitions))
}

fn assert_each_partition_owned_once(owners: &[Vec<u32>]) {
    let mut seen = BTreeSet::new();
    for partitions in owners {
        for partition in partitions {
            assert!(
                seen.insert(*partition),
                "partition {partition} is owned twice: {owners:?}"
            );
        }
    }
    assert_eq!(
        seen,
        (0..PARTITIONS).collect::<BTreeSet<u32>>(),
        "every partition is owned: {owners:?}"
    );
}

fn consumed_offsets(shared: &Shared) -> BTreeSet<(u32, u64)> {
    shared
        .consumed
        .lock()
        .unwrap()
        .iter()
        .map(|(partition, offset, _)| (*partition, *offset))
        .collect()
}

#[test]
fn three_consumers_share_twelve_partitions_and_a_killed_ones_move_to_the_others() {
    let broker = Broker::start(BrokerOptions::default());
    let mut producer = TestClient::connect(broker.address());
    producer.create_topic(TOPIC, PARTITIONS, &[]);
    produce_round(&mut producer, TOPIC, PARTITIONS, 0, 20);

    let shared = Arc::new(Shared::default());
    let consumers: Vec<_> = (0..3)
        .map(|index| {
            let shared = shared.clone();
            let address = broker.address();
            std::thread::spawn(move || consume(index, address, shared))
        })
        .collect();

    let mut first = None;
    wait_until("three members share the partitions", || {
        first = settled(&shared, &[0, 1, 2]);
        first.as_ref().is_some_and(|(_, owners)| {
            owners.iter().map(Vec::len).sum::<usize>() == PARTITIONS as usize
        })
    });
    let (first_generation, owners) = first.unwrap();
    assert_each_partition_owned_once(&owners);
    for partitions in &owners {
        assert_eq!(
            partitions.len(),
            4,
            "range over 12 partitions and 3 members: {owners:?}"
        );
    }
    wait_until("the first records are consumed", || {
        consumed_offsets(&shared).len() == 12 * 20
    });

    // Member 2 dies after processing its next records, before committing them.
    let killed_partitions = owners[2].clone();
    shared.kill[2].store(true, Ordering::SeqCst);
    let killed_at = Instant::now();
    produce_round(&mut producer, TOPIC, PARTITIONS, 20, 20);

    let mut second = None;
    wait_until(
        "the survivors take over the killed member's partitions",
        || {
            second =
                settled(&shared, &[0, 1]).filter(|(generation, _)| *generation > first_generation);
            second.is_some()
        },
    );
    let (_, survivors) = second.unwrap();
    assert_each_partition_owned_once(&survivors);
    assert!(
        killed_at.elapsed() >= Duration::from_millis(u64::from(SESSION_TIMEOUT_MS) / 2),
        "partitions moved before the session could have expired"
    );
    produce_round(&mut producer, TOPIC, PARTITIONS, 40, 10);
    wait_until("every record is consumed", || {
        consumed_offsets(&shared).len() == 12 * 50
    });

    shared.stop.store(true, Ordering::SeqCst);
    for consumer in consumers {
        consumer.join().expect("consumer thread");
    }

    // Nothing skipped: every offset of every partition was processed.
    let expected: BTreeSet<(u32, u64)> = (0..PARTITIONS)
        .flat_map(|partition| (0..50).map(move |offset| (partition, offset)))
        .collect();
    assert_eq!(consumed_offsets(&shared), expected);
    // Duplicates only where the killed member processed without committing.
    let not_committed: BTreeSet<(u32, u64)> = shared
        .processed_not_committed
        .lock()
        .unwrap()
        .iter()
        .copied()
        .collect();
    assert!(
        !not_committed.is_empty(),
        "the killed member processed records before dying"
    );
    assert!(not_committed
        .iter()
        .all(|(partition, _)| killed_partitions.contains(partition)));
    let mut counts: BTreeMap<(u32, u64), usize> = BTreeMap::new();
    for (partition, offset, _) in shared.consumed.lock().unwrap().iter() {
        *counts.entry((*partition, *offset)).or_default() += 1;
    }
    for (record, count) in counts {
        if count > 1 {
            assert!(
                not_committed.contains(&record),
                "{record:?} consumed {count} times but was committed"
            );
            assert_eq!(count, 2, "{record:?}");
        }
    }
    // The group's committed positions are the end of every partition.
    let mut admin = TestClient::connect(broker.address());
    let positions = committed(
        &mut admin,
        GROUP,
        TOPIC,
        &(0..PARTITIONS).collect::<Vec<_>>(),
    );
    assert!(
        positions.values().all(|offset| *offset == Some(50)),
        "{positions:?}"
    );
}

// ---- static membership ----------------------------------------------------------------------

fn join_together(mut members: Vec<Member>, counts: &BTreeMap<String, u32>) -> Vec<Member> {
    let threads: Vec<_> = members
        .drain(..)
        .map(|mut member| {
            let counts = counts.clone();
            std::thread::spawn(move || {
                let deadline = Instant::now() + WAIT_LIMIT;
                while let Err(code) = member.join_and_sync(&counts) {
                    assert!(Instant::now() < deadline, "member never joined: {code:?}");
                }
                member
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|thread| thread.join().expect("member thread"))
        .collect()
}

/// Joins the members together and rejoins until they share one stable generation (members
/// that join a few milliseconds apart may first land in different generations).
fn settle(members: Vec<Member>, counts: &BTreeMap<String, u32>) -> Vec<Member> {
    let mut members = join_together(members, counts);
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let codes: Vec<ErrorCode> = members.iter_mut().map(Member::heartbeat).collect();
        let generations: BTreeSet<i32> = members.iter().map(|member| member.generation).collect();
        if codes.iter().all(|code| code.is_none()) && generations.len() == 1 {
            return members;
        }
        assert!(
            Instant::now() < deadline,
            "members never settled: {codes:?}"
        );
        members = join_together(members, counts);
    }
}

#[test]
fn a_static_member_that_rejoins_gets_its_partitions_back_without_a_rebalance() {
    let broker = Broker::start(BrokerOptions::default());
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("events", 6, &[]);
    let counts = partition_counts("events", 6);
    let members: Vec<Member> = ["a", "b", "c"]
        .iter()
        .map(|name| {
            let mut member = Member::new(
                broker.address(),
                "static-group",
                &["events"],
                Some(&format!("instance-{name}")),
            );
            member.session_timeout_ms = 10_000;
            member
        })
        .collect();
    let mut members = settle(members, &counts);
    let generation = members[0].generation;
    assert!(members.iter().all(|member| member.generation == generation));
    let before = describe(&mut admin, "static-group");
    assert_eq!(before.members.len(), 3);

    // Member b's process dies and restarts: no LeaveGroup, a new member with its instance id.
    let old = members.remove(1);
    let old_member_id = old.member_id.clone();
    let old_assignment = old.assigned.clone();
    assert!(!old_assignment.is_empty());
    drop(old);
    let mut restarted = Member::new(
        broker.address(),
        "static-group",
        &["events"],
        Some("instance-b"),
    );
    restarted.session_timeout_ms = 10_000;
    let joined = restarted.join();
    assert_eq!(joined.error_code, ErrorCode::None);
    assert_eq!(joined.generation_id, generation, "no new generation");
    assert_ne!(restarted.member_id, old_member_id);
    let synced = restarted.sync(Vec::new());
    assert_eq!(synced.error_code, ErrorCode::None);
    assert_eq!(
        restarted.assigned, old_assignment,
        "the same partitions come back"
    );

    // The others never hear of a rebalance.
    for member in members.iter_mut() {
        assert_eq!(member.heartbeat(), ErrorCode::None);
    }
    let after = describe(&mut admin, "static-group");
    assert_eq!(after.state, GroupState::Stable);
    assert_eq!(after.generation_id, generation);
    assert_eq!(after.members.len(), 3);
    // The old incarnation is fenced.
    let fenced = admin.call(&HeartbeatRequest {
        group_id: "static-group".into(),
        generation_id: generation,
        member_id: old_member_id,
        group_instance_id: Some("instance-b".into()),
    });
    assert_eq!(fenced.error_code, ErrorCode::FencedInstanceId);
}

// ---- zombies --------------------------------------------------------------------------------

#[test]
fn a_zombie_from_an_old_generation_cannot_commit() {
    let broker = Broker::start(BrokerOptions::default());
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("payments", 2, &[]);
    let counts = partition_counts("payments", 2);
    let members = vec![
        Member::new(broker.address(), "ledger", &["payments"], None),
        Member::new(broker.address(), "ledger", &["payments"], None),
    ];
    let mut members = settle(members, &counts);
    let mut survivor = members.pop().unwrap();
    let mut zombie = members.pop().unwrap();
    let old_generation = survivor.generation;
    assert_eq!(
        zombie.commit(&[("payments", 0, 3)]).error_code,
        ErrorCode::None
    );

    // The zombie goes silent (a long pause); the survivor keeps heartbeating, sees the
    // rebalance and takes over.
    wait_until("the survivor is told to rejoin", || {
        std::thread::sleep(HEARTBEAT_INTERVAL);
        survivor.heartbeat() == ErrorCode::RebalanceInProgress
    });
    survivor.join_and_sync(&counts).expect("survivor rejoins");
    assert!(survivor.generation > old_generation);
    assert_eq!(survivor.assigned.len(), 2, "the survivor owns everything");
    assert_eq!(
        survivor.commit(&[("payments", 0, 7)]).error_code,
        ErrorCode::None
    );

    // The zombie wakes up and commits as if nothing happened.
    let refused = zombie.commit(&[("payments", 0, 5)]);
    assert_eq!(refused.error_code, ErrorCode::UnknownMemberId);
    assert_eq!(
        refused.topics[0].partitions[0].error_code,
        ErrorCode::UnknownMemberId
    );
    assert_eq!(zombie.heartbeat(), ErrorCode::UnknownMemberId);
    // A member's own stale generation is fenced too.
    let stale = commit_request(
        "ledger",
        old_generation,
        &survivor.member_id,
        None,
        &[("payments", 0, 1)],
    );
    assert_eq!(
        survivor.client.call(&stale).error_code,
        ErrorCode::IllegalGeneration
    );
    assert_eq!(
        committed(&mut admin, "ledger", "payments", &[0])[&0],
        Some(7)
    );
}

// ---- fifty members --------------------------------------------------------------------------

/// Each member's latest (generation, when it got its assignment, its partitions).
type Reports = Arc<Mutex<BTreeMap<usize, (i32, Instant, Vec<u32>)>>>;
/// The one generation every member reports, with when and what each got.
type Settled = (i32, Vec<(Instant, Vec<u32>)>);

#[test]
fn a_rebalance_of_fifty_members_completes_within_the_rebalance_timeout() {
    const MEMBERS: usize = 50;
    let broker = Broker::start(BrokerOptions::default());
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("clicks", 64, &[]);
    let counts = partition_counts("clicks", 64);
    let reports: Reports = Default::default();
    let stop = Arc::new(AtomicBool::new(false));
    let start_member = |index: usize| {
        let reports = reports.clone();
        let stop = stop.clone();
        let counts = counts.clone();
        let address = broker.address();
        std::thread::spawn(move || {
            let mut member = Member::new(address, "crowd", &["clicks"], None);
            member.session_timeout_ms = 10_000;
            member.rebalance_timeout_ms = REBALANCE_TIMEOUT_MS;
            let mut joined = false;
            while !stop.load(Ordering::SeqCst) {
                if !joined {
                    joined = member.join_and_sync(&counts).is_ok();
                    if joined {
                        let partitions = member
                            .assigned
                            .iter()
                            .map(|(_, partition)| *partition)
                            .collect();
                        reports
                            .lock()
                            .unwrap()
                            .insert(index, (member.generation, Instant::now(), partitions));
                    }
                    continue;
                }
                std::thread::sleep(Duration::from_millis(200));
                joined = member.heartbeat().is_none();
            }
        })
    };
    let all_at = |count: usize, newer_than: i32| -> Option<Settled> {
        let reports = reports.lock().unwrap();
        if reports.len() < count {
            return None;
        }
        let generations: BTreeSet<i32> = reports
            .values()
            .map(|(generation, _, _)| *generation)
            .collect();
        let generation = *generations.iter().next()?;
        (generations.len() == 1 && generation > newer_than).then(|| {
            (
                generation,
                reports
                    .values()
                    .map(|(_, at, partitions)| (*at, partitions.clone()))
                    .collect(),
            )
        })
    };

    let mut threads: Vec<_> = (0..MEMBERS).map(start_member).collect();
    let mut settled = None;
    wait_until("fifty members settle into one generation", || {
        settled = all_at(MEMBERS, 0);
        settled.is_some() && describe(&mut admin, "crowd").state == GroupState::Stable
    });
    let (generation, _) = settled.unwrap();
    assert_eq!(describe(&mut admin, "crowd").members.len(), MEMBERS);

    // One more member: every member must rejoin and get its new assignment.
    let triggered_at = Instant::now();
    threads.push(start_member(MEMBERS));
    let mut rebalanced = None;
    wait_until("fifty-one members settle into the next generation", || {
        rebalanced = all_at(MEMBERS + 1, generation);
        rebalanced.is_some()
    });
    let (next_generation, reports_after) = rebalanced.unwrap();
    assert_eq!(next_generation, generation + 1, "one rebalance");
    let slowest = reports_after
        .iter()
        .map(|(at, _)| at.duration_since(triggered_at))
        .max()
        .unwrap();
    assert!(
        slowest < Duration::from_millis(u64::from(REBALANCE_TIMEOUT_MS)),
        "the rebalance took {slowest:?}"
    );
    let mut owned = BTreeSet::new();
    for (_, partitions) in &reports_after {
        for partition in partitions {
            assert!(
                owned.insert(*partition),
                "partition {partition} assigned twice"
            );
        }
    }
    assert_eq!(owned.len(), 64);
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().expect("member thread");
    }
}

// ---- shutdown -------------------------------------------------------------------------------

#[test]
fn a_join_parked_in_a_rebalance_is_answered_when_the_broker_shuts_down() {
    let mut broker = Broker::start(BrokerOptions::default());
    let mut admin = TestClient::connect(broker.address());
    admin.create_topic("quiet", 1, &[]);
    let counts = partition_counts("quiet", 1);
    let mut first = Member::new(broker.address(), "patient", &["quiet"], None);
    first.rebalance_timeout_ms = 60_000;
    first.join_and_sync(&counts).expect("joins alone");
    // The second member's join waits for the first to rejoin, which it never does.
    let address = broker.address();
    let second = std::thread::spawn(move || {
        let mut second = Member::new(address, "patient", &["quiet"], None);
        second.rebalance_timeout_ms = 60_000;
        second.join()
    });
    wait_until("the rebalance waits for the first member", || {
        first.heartbeat() == ErrorCode::RebalanceInProgress
    });
    assert!(broker.terminate().success());
    let answer = second.join().expect("joining thread");
    assert_eq!(answer.error_code, ErrorCode::ShuttingDown);
}

#[test]
fn group_limits_set_on_the_command_line_reach_the_coordinator() {
    let broker = Broker::start(BrokerOptions {
        arguments: [
            "--group-session-timeout-ms-min",
            "2000",
            "--members-per-group-max",
            "1",
        ]
        .map(String::from)
        .to_vec(),
        ..BrokerOptions::default()
    });
    TestClient::connect(broker.address()).create_topic("bounded", 1, &[]);
    let counts = partition_counts("bounded", 1);

    // The default 1 s session of these tests is below this broker's minimum.
    let mut short = Member::new(broker.address(), "small", &["bounded"], None);
    assert_eq!(short.join().error_code, ErrorCode::InvalidSessionTimeout);

    let mut first = Member::new(broker.address(), "small", &["bounded"], None);
    first.session_timeout_ms = 2_000;
    first.join_and_sync(&counts).expect("the first member fits");
    let mut second = Member::new(broker.address(), "small", &["bounded"], None);
    second.session_timeout_ms = 2_000;
    assert_eq!(second.join().error_code, ErrorCode::GroupMaxSizeReached);
}
