//! Shared by the `group_*` tests: a group member that speaks the group protocol directly with
//! the test client (no client library, so these tests pin the broker's behaviour alone), a range
//! assignor of the consumer protocol, and waiting helpers with deadlines.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use spate_protocol::api::{
    ConsumerAssignment, ConsumerSubscription, DescribeGroupsRequest, DescribedGroup, GroupProtocol,
    HeartbeatRequest, JoinGroupMember, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, MemberIdentity, OffsetCommitPartition, OffsetCommitRequest,
    OffsetCommitResponse, OffsetFetchRequest, SyncGroupAssignment, SyncGroupRequest,
    SyncGroupResponse, TopicPartitionList, TopicPartitions, CONSUMER_PROTOCOL_TYPE,
    GENERATION_NONE,
};
use spate_protocol::ErrorCode;
use spate_tests::TestClient;

/// Short sessions keep the tests quick; the broker allows down to 100 ms.
pub const SESSION_TIMEOUT_MS: u32 = 1_000;
pub const REBALANCE_TIMEOUT_MS: u32 = 10_000;
/// A third of the session, as Kafka's default ratio.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(300);
/// How long any wait in these tests may take before it fails instead of hanging.
pub const WAIT_LIMIT: Duration = Duration::from_secs(60);

/// A group member on its own connection.
pub struct Member {
    pub client: TestClient,
    pub group: String,
    pub member_id: String,
    pub generation: i32,
    pub instance: Option<String>,
    pub topics: Vec<String>,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// What the last sync assigned, as (topic, partition).
    pub assigned: Vec<(String, u32)>,
}

impl Member {
    pub fn new(
        address: SocketAddr,
        group: &str,
        topics: &[&str],
        instance: Option<&str>,
    ) -> Member {
        Member {
            client: TestClient::connect(address),
            group: group.to_string(),
            member_id: String::new(),
            generation: GENERATION_NONE,
            instance: instance.map(str::to_string),
            topics: topics.iter().map(|topic| topic.to_string()).collect(),
            session_timeout_ms: SESSION_TIMEOUT_MS,
            rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
            assigned: Vec::new(),
        }
    }

    fn join_request(&self) -> JoinGroupRequest {
        let owned = group_by_topic(&self.assigned);
        let subscription = ConsumerSubscription {
            topics: self.topics.clone(),
            owned_partitions: owned,
            user_data: Default::default(),
        };
        JoinGroupRequest {
            group_id: self.group.clone(),
            session_timeout_ms: self.session_timeout_ms,
            rebalance_timeout_ms: self.rebalance_timeout_ms,
            member_id: self.member_id.clone(),
            group_instance_id: self.instance.clone(),
            protocol_type: CONSUMER_PROTOCOL_TYPE.to_string(),
            protocols: vec![GroupProtocol {
                name: "range".into(),
                metadata: subscription.encode().expect("subscription encodes"),
            }],
        }
    }

    /// Joins (again, with the member id the broker assigns on a first join) and returns the
    /// final answer; remembers the member id and generation it carries.
    pub fn join(&mut self) -> JoinGroupResponse {
        loop {
            let response = self.client.call(&self.join_request());
            if !response.member_id.is_empty() {
                self.member_id = response.member_id.clone();
            }
            if response.error_code == ErrorCode::MemberIdRequired {
                continue;
            }
            if response.error_code.is_none() {
                self.generation = response.generation_id;
            }
            return response;
        }
    }

    pub fn sync(&mut self, assignments: Vec<SyncGroupAssignment>) -> SyncGroupResponse {
        let response = self.client.call(&SyncGroupRequest {
            group_id: self.group.clone(),
            generation_id: self.generation,
            member_id: self.member_id.clone(),
            group_instance_id: self.instance.clone(),
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: Some("range".into()),
            assignments,
        });
        if response.error_code.is_none() {
            let assignment = ConsumerAssignment::decode(response.assignment.clone())
                .expect("assignment decodes");
            self.assigned = assignment
                .topic_partitions()
                .map(|(topic, partition)| (topic.to_string(), partition))
                .collect();
        }
        response
    }

    /// Joins and syncs, the leader assigning by range over `partition_counts`. Returns the
    /// first error of either step.
    pub fn join_and_sync(
        &mut self,
        partition_counts: &BTreeMap<String, u32>,
    ) -> Result<(), ErrorCode> {
        let joined = self.join();
        if !joined.error_code.is_none() {
            return Err(joined.error_code);
        }
        let assignments = if joined.is_leader() {
            range_assign(&joined.members, partition_counts)
        } else {
            Vec::new()
        };
        let synced = self.sync(assignments);
        if synced.error_code.is_none() {
            Ok(())
        } else {
            Err(synced.error_code)
        }
    }

    pub fn heartbeat(&mut self) -> ErrorCode {
        self.client
            .call(&HeartbeatRequest {
                group_id: self.group.clone(),
                generation_id: self.generation,
                member_id: self.member_id.clone(),
                group_instance_id: self.instance.clone(),
            })
            .error_code
    }

    /// Commits `(topic, partition, next offset)` as this member, with its generation.
    pub fn commit(&mut self, offsets: &[(&str, u32, u64)]) -> OffsetCommitResponse {
        let request = commit_request(
            &self.group,
            self.generation,
            &self.member_id,
            self.instance.as_deref(),
            offsets,
        );
        self.client.call(&request)
    }

    pub fn leave(&mut self) -> LeaveGroupResponse {
        self.client.call(&LeaveGroupRequest {
            group_id: self.group.clone(),
            members: vec![MemberIdentity {
                member_id: self.member_id.clone(),
                group_instance_id: self.instance.clone(),
            }],
        })
    }
}

pub fn commit_request(
    group: &str,
    generation_id: i32,
    member_id: &str,
    instance: Option<&str>,
    offsets: &[(&str, u32, u64)],
) -> OffsetCommitRequest {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitPartition>> = BTreeMap::new();
    for (topic, partition, offset) in offsets {
        topics
            .entry(topic)
            .or_default()
            .push(OffsetCommitPartition {
                partition: *partition,
                committed_offset: *offset,
                committed_metadata: None,
            });
    }
    OffsetCommitRequest {
        group_id: group.to_string(),
        generation_id,
        member_id: member_id.to_string(),
        group_instance_id: instance.map(str::to_string),
        topics: topics
            .into_iter()
            .map(|(name, partitions)| TopicPartitions {
                name: name.to_string(),
                partitions,
            })
            .collect(),
    }
}

/// Every error code of a commit response, top level and per partition.
pub fn commit_codes(response: &OffsetCommitResponse) -> Vec<ErrorCode> {
    std::iter::once(response.error_code)
        .chain(response.topics.iter().flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| partition.error_code)
        }))
        .collect()
}

/// The committed offset of each of `partitions` of `topic` (`None`: nothing committed).
pub fn committed(
    client: &mut TestClient,
    group: &str,
    topic: &str,
    partitions: &[u32],
) -> BTreeMap<u32, Option<u64>> {
    let response = client.call(&OffsetFetchRequest {
        group_id: group.to_string(),
        topics: Some(vec![TopicPartitionList {
            name: topic.to_string(),
            partitions: partitions.to_vec(),
        }]),
        require_stable: false,
    });
    assert_eq!(
        response.error_code,
        ErrorCode::None,
        "offset fetch for {group}"
    );
    partitions
        .iter()
        .map(|partition| (*partition, response.committed(topic, *partition)))
        .collect()
}

pub fn describe(client: &mut TestClient, group: &str) -> DescribedGroup {
    let response = client.call(&DescribeGroupsRequest {
        groups: vec![group.to_string()],
    });
    assert_eq!(response.error_code, ErrorCode::None);
    response
        .groups
        .into_iter()
        .next()
        .expect("one group described")
}

/// Kafka's range assignor: for each topic, the members subscribed to it (by member id) get
/// consecutive ranges, the first ones one partition more when it does not divide evenly.
pub fn range_assign(
    members: &[JoinGroupMember],
    partition_counts: &BTreeMap<String, u32>,
) -> Vec<SyncGroupAssignment> {
    let subscriptions: BTreeMap<&str, ConsumerSubscription> = members
        .iter()
        .map(|member| {
            let subscription = ConsumerSubscription::decode(member.metadata.clone())
                .expect("subscription decodes");
            (member.member_id.as_str(), subscription)
        })
        .collect();
    let mut assigned: BTreeMap<&str, Vec<(String, u32)>> = subscriptions
        .keys()
        .map(|member_id| (*member_id, Vec::new()))
        .collect();
    for (topic, count) in partition_counts {
        let subscribers: Vec<&str> = subscriptions
            .iter()
            .filter(|(_, subscription)| subscription.topics.contains(topic))
            .map(|(member_id, _)| *member_id)
            .collect();
        if subscribers.is_empty() {
            continue;
        }
        let per_member = *count as usize / subscribers.len();
        let extra = *count as usize % subscribers.len();
        let mut next = 0u32;
        for (index, member_id) in subscribers.iter().enumerate() {
            let share = per_member + usize::from(index < extra);
            for _ in 0..share {
                assigned
                    .get_mut(member_id)
                    .expect("listed")
                    .push((topic.clone(), next));
                next += 1;
            }
        }
    }
    assigned
        .into_iter()
        .map(|(member_id, partitions)| SyncGroupAssignment {
            member_id: member_id.to_string(),
            assignment: ConsumerAssignment {
                partitions: group_by_topic(&partitions),
                user_data: Default::default(),
            }
            .encode()
            .expect("assignment encodes"),
        })
        .collect()
}

pub fn group_by_topic(partitions: &[(String, u32)]) -> Vec<TopicPartitionList> {
    let mut by_topic: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (topic, partition) in partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    by_topic
        .into_iter()
        .map(|(name, partitions)| TopicPartitionList {
            name: name.to_string(),
            partitions,
        })
        .collect()
}

/// Polls `condition` until it holds; fails the test after [`WAIT_LIMIT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT_LIMIT;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
