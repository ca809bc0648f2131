//! A consumer group's member bytes in the layout each member reads, so native and Kafka
//! consumers can share one group.
//!
//! Members of protocol type `consumer` put their subscription in JoinGroup's metadata and the
//! leader puts each member's assignment in SyncGroup, and the coordinator hands both on without
//! reading them. A native member writes them in the native layout (`spate_protocol::api::
//! ConsumerSubscription`, `ConsumerAssignment`: little-endian) and a Kafka member in Kafka's
//! (`spate_kafka_protocol::consumer_protocol`: big-endian), and neither can read the other's.
//! So the coordinator stores what it was given, and each protocol's handlers turn the bytes of
//! every answer into their own layout on the way out: a Kafka leader sees a native member's
//! subscription as a Kafka one, and a native member gets the Kafka leader's assignment as a
//! native one. The information is the same in both (topics, owned partitions, user data;
//! assigned partitions, user data); what only Kafka has (the generation and rack of a
//! subscription) is lost on the way to a native member, which has no use for it.
//!
//! Bytes are recognised by reading them whole in one layout: a native subscription or
//! assignment starts with a little-endian version 0 and a 32-bit count, a Kafka one with a
//! big-endian version and count, and for non-empty lists the two readings cannot both succeed
//! (a count of n in one is at least n·2²⁴ in the other, beyond the bytes). The only bytes both
//! read are an empty assignment with empty user data, which means the same in both. Bytes
//! readable in neither layout, and empty bytes (a member the leader gave nothing), pass through
//! unchanged.

use bytes::Bytes;
use spate_kafka_protocol::consumer_protocol::{
    read_assignment, read_subscription, write_assignment, write_subscription, Assignment,
    Subscription, TopicPartitionLists,
};
use spate_protocol::api::{
    ConsumerAssignment, ConsumerSubscription, DescribedGroup, JoinGroupResponse, SyncGroupResponse,
    TopicPartitionList, CONSUMER_PROTOCOL_TYPE,
};

/// The protocol a member speaks, and so the layout it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Native,
    Kafka,
}

/// The consumer protocol version written for a native subscription: v1 has owned partitions,
/// v0 is what every Kafka client reads.
fn kafka_subscription_version(subscription: &ConsumerSubscription) -> i16 {
    if subscription.owned_partitions.is_empty() {
        0
    } else {
        1
    }
}

fn to_kafka_partitions(lists: &[TopicPartitionList]) -> TopicPartitionLists {
    lists
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .filter_map(|partition| i32::try_from(*partition).ok())
                .collect();
            (topic.name.clone(), partitions)
        })
        .collect()
}

fn to_native_partitions(lists: &TopicPartitionLists) -> Vec<TopicPartitionList> {
    lists
        .iter()
        .map(|(name, partitions)| TopicPartitionList {
            name: name.clone(),
            partitions: partitions
                .iter()
                .filter_map(|partition| u32::try_from(*partition).ok())
                .collect(),
        })
        .collect()
}

/// A member's subscription in `dialect`'s layout.
pub fn subscription_for(dialect: Dialect, metadata: &Bytes) -> Bytes {
    if metadata.is_empty() {
        return metadata.clone();
    }
    match dialect {
        Dialect::Kafka => match ConsumerSubscription::decode(metadata.clone()) {
            Ok(native) => write_subscription(&Subscription {
                version: kafka_subscription_version(&native),
                owned_partitions: to_kafka_partitions(&native.owned_partitions),
                topics: native.topics,
                user_data: (!native.user_data.is_empty()).then_some(native.user_data),
                generation_id: -1,
                rack_id: None,
            }),
            Err(_) => metadata.clone(),
        },
        Dialect::Native => {
            if ConsumerSubscription::decode(metadata.clone()).is_ok() {
                return metadata.clone();
            }
            let Some(kafka) = read_subscription(metadata) else {
                return metadata.clone();
            };
            let native = ConsumerSubscription {
                topics: kafka.topics,
                owned_partitions: to_native_partitions(&kafka.owned_partitions),
                user_data: kafka.user_data.unwrap_or_default(),
            };
            // Beyond the native limits (topic names, counts): the native member cannot take
            // it in either layout.
            native.encode().unwrap_or_else(|_| metadata.clone())
        }
    }
}

/// A member's assignment in `dialect`'s layout.
pub fn assignment_for(dialect: Dialect, assignment: &Bytes) -> Bytes {
    if assignment.is_empty() {
        return assignment.clone();
    }
    match dialect {
        Dialect::Kafka => match ConsumerAssignment::decode(assignment.clone()) {
            Ok(native) => write_assignment(&Assignment {
                version: 0,
                partitions: to_kafka_partitions(&native.partitions),
                user_data: (!native.user_data.is_empty()).then_some(native.user_data),
            }),
            Err(_) => assignment.clone(),
        },
        Dialect::Native => {
            if ConsumerAssignment::decode(assignment.clone()).is_ok() {
                return assignment.clone();
            }
            let Some(kafka) = read_assignment(assignment) else {
                return assignment.clone();
            };
            let native = ConsumerAssignment {
                partitions: to_native_partitions(&kafka.partitions),
                user_data: kafka.user_data.unwrap_or_default(),
            };
            native.encode().unwrap_or_else(|_| assignment.clone())
        }
    }
}

fn is_consumer_group(protocol_type: Option<&str>) -> bool {
    protocol_type == Some(CONSUMER_PROTOCOL_TYPE)
}

/// A join answer for a member speaking `dialect`: the members' subscriptions (the leader's
/// answer) in its layout.
pub fn join_response_for(dialect: Dialect, response: &mut JoinGroupResponse) {
    if !is_consumer_group(response.protocol_type.as_deref()) {
        return;
    }
    for member in &mut response.members {
        member.metadata = subscription_for(dialect, &member.metadata);
    }
}

/// A sync answer for a member speaking `dialect`: its assignment in its layout.
pub fn sync_response_for(dialect: Dialect, response: &mut SyncGroupResponse) {
    if is_consumer_group(response.protocol_type.as_deref()) {
        response.assignment = assignment_for(dialect, &response.assignment);
    }
}

/// A described group for a client speaking `dialect`: every member's subscription and
/// assignment in its layout (tools decode both to show who reads what).
pub fn described_group_for(dialect: Dialect, group: &mut DescribedGroup) {
    if !is_consumer_group(Some(group.protocol_type.as_str())) {
        return;
    }
    for member in &mut group.members {
        member.metadata = subscription_for(dialect, &member.metadata);
        member.assignment = assignment_for(dialect, &member.assignment);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn native_subscription() -> ConsumerSubscription {
        ConsumerSubscription {
            topics: vec!["orders".into(), "payments".into()],
            owned_partitions: vec![TopicPartitionList {
                name: "orders".into(),
                partitions: vec![1, 3],
            }],
            user_data: Bytes::from_static(b"sticky"),
        }
    }

    fn native_assignment() -> ConsumerAssignment {
        ConsumerAssignment {
            partitions: vec![
                TopicPartitionList {
                    name: "orders".into(),
                    partitions: vec![0, 2],
                },
                TopicPartitionList {
                    name: "payments".into(),
                    partitions: vec![5],
                },
            ],
            user_data: Bytes::new(),
        }
    }

    #[test]
    fn a_native_subscription_reaches_a_kafka_member_and_comes_back_the_same() {
        let native = native_subscription().encode().unwrap();
        let kafka = subscription_for(Dialect::Kafka, &native);
        let read = read_subscription(&kafka).expect("a Kafka subscription");
        assert_eq!(read.version, 1);
        assert_eq!(read.topics, vec!["orders", "payments"]);
        assert_eq!(
            read.owned_partitions,
            vec![("orders".to_string(), vec![1, 3])]
        );
        assert_eq!(read.user_data, Some(Bytes::from_static(b"sticky")));
        assert_eq!(
            subscription_for(Dialect::Kafka, &kafka),
            kafka,
            "already Kafka's"
        );
        assert_eq!(subscription_for(Dialect::Native, &kafka), native);
        assert_eq!(
            subscription_for(Dialect::Native, &native),
            native,
            "already native"
        );
    }

    #[test]
    fn an_assignment_crosses_both_ways_with_every_partition() {
        let native = native_assignment().encode().unwrap();
        let kafka = assignment_for(Dialect::Kafka, &native);
        let read = read_assignment(&kafka).expect("a Kafka assignment");
        assert_eq!(
            read.partitions,
            vec![
                ("orders".to_string(), vec![0, 2]),
                ("payments".to_string(), vec![5])
            ]
        );
        assert_eq!(read.user_data, None);
        assert_eq!(assignment_for(Dialect::Native, &kafka), native);
        assert_eq!(assignment_for(Dialect::Kafka, &kafka), kafka);
    }

    #[test]
    fn empty_and_unreadable_bytes_pass_through() {
        for bytes in [
            Bytes::new(),
            Bytes::from_static(b"\x00\x09not a consumer protocol"),
        ] {
            for dialect in [Dialect::Native, Dialect::Kafka] {
                assert_eq!(subscription_for(dialect, &bytes), bytes);
                assert_eq!(assignment_for(dialect, &bytes), bytes);
            }
        }
    }

    #[test]
    fn subscriptions_without_topics_are_not_mistaken_for_the_other_layout() {
        let native = ConsumerSubscription::default().encode().unwrap();
        assert!(read_subscription(&native).is_none());
        let kafka = write_subscription(&Subscription::default());
        assert!(ConsumerSubscription::decode(kafka.clone()).is_err());
        let kafka_assignment = write_assignment(&Assignment::default());
        assert!(ConsumerAssignment::decode(kafka_assignment).is_err());
        // The one set of bytes both layouts read: an empty assignment with empty user data.
        // It means the same in both, and stays readable to either.
        let native_assignment = ConsumerAssignment::default().encode().unwrap();
        let kafka = read_assignment(&native_assignment).expect("Kafka reads it too");
        assert!(kafka.partitions.is_empty());
        assert_eq!(kafka.user_data, Some(Bytes::new()));
        assert_eq!(
            assignment_for(Dialect::Native, &native_assignment),
            native_assignment
        );
        let for_kafka = assignment_for(Dialect::Kafka, &native_assignment);
        assert!(read_assignment(&for_kafka).is_some_and(|read| read.partitions.is_empty()));
    }

    #[test]
    fn only_consumer_groups_are_translated() {
        let native = native_assignment().encode().unwrap();
        let mut response = SyncGroupResponse {
            protocol_type: Some("connect".into()),
            assignment: native.clone(),
            ..SyncGroupResponse::default()
        };
        sync_response_for(Dialect::Kafka, &mut response);
        assert_eq!(response.assignment, native);
        response.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.into());
        sync_response_for(Dialect::Kafka, &mut response);
        assert!(read_assignment(&response.assignment).is_some());
    }
}
