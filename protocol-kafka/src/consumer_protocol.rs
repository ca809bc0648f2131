//! Kafka's consumer protocol: the subscription (`ConsumerProtocolSubscription`, the metadata a
//! member of protocol type `consumer` sends in JoinGroup) and the assignment
//! (`ConsumerProtocolAssignment`, what the leader gives each member in SyncGroup), read without
//! trusting their counts, and written with the generated encoders.
//!
//! The generated decoders of `kafka-protocol` pre-allocate from the array counts on the wire, and
//! these bytes come from a client inside a JoinGroup or SyncGroup request, past the request's own
//! bounds check. So the readers here check every count and length against the bytes left.
//! `subscription_topics` reads just the topic names (the coordinator needs them to refuse
//! deleting the offsets of a topic a live member subscribes to, as Kafka does); `read_subscription`
//! and `read_assignment` read everything, for the broker to hand a Kafka member's bytes to a
//! native member and the other way round. The layout of versions 0–3 is fixed (`i16 version`,
//! then the fields), and later versions only append fields, as Kafka's consumer protocol
//! promises: bytes of versions 0–3 must end where their last field does, and later versions may
//! carry more.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
use kafka_protocol::messages::{
    ConsumerProtocolAssignment, ConsumerProtocolSubscription, TopicName,
};
use kafka_protocol::protocol::{Encodable, StrBytes};

/// The newest consumer protocol version whose fields are all known here.
pub const CONSUMER_PROTOCOL_VERSION_KNOWN_MAX: i16 = 3;

/// Topics with some of their partitions, as the consumer protocol lists them.
pub type TopicPartitionLists = Vec<(String, Vec<i32>)>;

/// A consumer's subscription, every field of versions 0–3.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    pub version: i16,
    pub topics: Vec<String>,
    pub user_data: Option<Bytes>,
    /// v1+.
    pub owned_partitions: TopicPartitionLists,
    /// v2+; -1 when unknown.
    pub generation_id: i32,
    /// v3+.
    pub rack_id: Option<String>,
}

/// A consumer's assignment, every field of versions 0–3.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Assignment {
    pub version: i16,
    pub partitions: TopicPartitionLists,
    pub user_data: Option<Bytes>,
}

/// The whole subscription, or `None` when the bytes are not one.
pub fn read_subscription(bytes: &[u8]) -> Option<Subscription> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if version < 0 {
        return None;
    }
    let count = reader.count(2)?;
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        topics.push(reader.string()?);
    }
    let user_data = reader.nullable_bytes()?;
    let owned_partitions = if version >= 1 {
        reader.topic_partitions()?
    } else {
        Vec::new()
    };
    let generation_id = if version >= 2 { reader.i32()? } else { -1 };
    let rack_id = if version >= 3 {
        reader.nullable_string()?
    } else {
        None
    };
    reader.finish(version)?;
    Some(Subscription {
        version,
        topics,
        user_data,
        owned_partitions,
        generation_id,
        rack_id,
    })
}

/// The whole assignment, or `None` when the bytes are not one.
pub fn read_assignment(bytes: &[u8]) -> Option<Assignment> {
    let mut reader = Reader { bytes };
    let version = reader.i16()?;
    if version < 0 {
        return None;
    }
    let partitions = reader.topic_partitions()?;
    let user_data = reader.nullable_bytes()?;
    reader.finish(version)?;
    Some(Assignment {
        version,
        partitions,
        user_data,
    })
}

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_string())
}

/// The subscription's bytes at its version (at most the newest known one).
pub fn write_subscription(subscription: &Subscription) -> Bytes {
    let version = subscription
        .version
        .clamp(0, CONSUMER_PROTOCOL_VERSION_KNOWN_MAX);
    let mut message = ConsumerProtocolSubscription::default()
        .with_topics(
            subscription
                .topics
                .iter()
                .map(|topic| text(topic))
                .collect(),
        )
        .with_user_data(subscription.user_data.clone());
    if version >= 1 {
        message = message.with_owned_partitions(
            subscription
                .owned_partitions
                .iter()
                .map(|(topic, partitions)| {
                    OwnedPartitions::default()
                        .with_topic(TopicName(text(topic)))
                        .with_partitions(partitions.clone())
                })
                .collect(),
        );
    }
    if version >= 2 {
        message = message.with_generation_id(subscription.generation_id);
    }
    if version >= 3 {
        message = message.with_rack_id(subscription.rack_id.as_deref().map(text));
    }
    let mut bytes = BytesMut::new();
    bytes.put_i16(version);
    message
        .encode(&mut bytes, version)
        .expect("a subscription with only the fields of its version encodes");
    bytes.freeze()
}

/// The assignment's bytes at its version (at most the newest known one).
pub fn write_assignment(assignment: &Assignment) -> Bytes {
    let version = assignment
        .version
        .clamp(0, CONSUMER_PROTOCOL_VERSION_KNOWN_MAX);
    let message = ConsumerProtocolAssignment::default()
        .with_assigned_partitions(
            assignment
                .partitions
                .iter()
                .map(|(topic, partitions)| {
                    AssignedPartitions::default()
                        .with_topic(TopicName(text(topic)))
                        .with_partitions(partitions.clone())
                })
                .collect(),
        )
        .with_user_data(assignment.user_data.clone());
    let mut bytes = BytesMut::new();
    bytes.put_i16(version);
    message
        .encode(&mut bytes, version)
        .expect("an assignment encodes at every version");
    bytes.freeze()
}

/// The subscribed topics, or `None` when the bytes are not a consumer subscription.
pub fn subscription_topics(metadata: &[u8]) -> Option<Vec<String>> {
    let mut reader = Reader { bytes: metadata };
    let version = reader.i16()?;
    if version < 0 {
        return None;
    }
    let count = usize::try_from(reader.i32()?).ok()?;
    // Every topic takes at least its two length bytes: a count beyond that is a lie.
    if count > reader.bytes.len() / 2 {
        return None;
    }
    let mut topics = Vec::with_capacity(count);
    for _ in 0..count {
        let length = usize::try_from(reader.i16()?).ok()?;
        let name = reader.take(length)?;
        topics.push(std::str::from_utf8(name).ok()?.to_string());
    }
    Some(topics)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        if length > self.bytes.len() {
            return None;
        }
        let (taken, rest) = self.bytes.split_at(length);
        self.bytes = rest;
        Some(taken)
    }

    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }

    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }

    /// An array count, refused when the items (each at least `item_bytes_min`) cannot fit in
    /// the bytes left.
    fn count(&mut self, item_bytes_min: usize) -> Option<usize> {
        let count = usize::try_from(self.i32()?).ok()?;
        (count <= self.bytes.len() / item_bytes_min).then_some(count)
    }

    fn string(&mut self) -> Option<String> {
        let length = usize::try_from(self.i16()?).ok()?;
        Some(std::str::from_utf8(self.take(length)?).ok()?.to_string())
    }

    fn nullable_string(&mut self) -> Option<Option<String>> {
        let length = self.i16()?;
        if length == -1 {
            return Some(None);
        }
        let length = usize::try_from(length).ok()?;
        Some(Some(
            std::str::from_utf8(self.take(length)?).ok()?.to_string(),
        ))
    }

    fn nullable_bytes(&mut self) -> Option<Option<Bytes>> {
        let length = self.i32()?;
        if length == -1 {
            return Some(None);
        }
        let length = usize::try_from(length).ok()?;
        Some(Some(Bytes::copy_from_slice(self.take(length)?)))
    }

    /// `[topic string, [partition i32]]`: each topic takes at least 6 bytes, each partition 4.
    fn topic_partitions(&mut self) -> Option<TopicPartitionLists> {
        let count = self.count(6)?;
        let mut topics = Vec::with_capacity(count);
        for _ in 0..count {
            let topic = self.string()?;
            let partitions_count = self.count(4)?;
            let mut partitions = Vec::with_capacity(partitions_count);
            for _ in 0..partitions_count {
                partitions.push(self.i32()?);
            }
            topics.push((topic, partitions));
        }
        Some(topics)
    }

    /// Bytes of a known version end with its last field; later versions may append fields.
    fn finish(&self, version: i16) -> Option<()> {
        (version > CONSUMER_PROTOCOL_VERSION_KNOWN_MAX || self.bytes.is_empty()).then_some(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::messages::consumer_protocol_subscription::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::{Encodable, StrBytes};
    use proptest::prelude::*;

    fn encoded(version: i16, topics: &[&str]) -> Vec<u8> {
        let subscription = ConsumerProtocolSubscription::default()
            .with_topics(
                topics
                    .iter()
                    .map(|topic| StrBytes::from_string(topic.to_string()))
                    .collect(),
            )
            .with_user_data(Some(bytes::Bytes::from_static(b"user")))
            .with_generation_id(7);
        let mut bytes = BytesMut::new();
        bytes.put_i16(version);
        subscription.encode(&mut bytes, version).unwrap();
        bytes.to_vec()
    }

    #[test]
    fn the_topics_of_every_subscription_version_are_read() {
        for version in 0..=3 {
            let bytes = encoded(version, &["orders", "payments"]);
            assert_eq!(
                subscription_topics(&bytes),
                Some(vec!["orders".to_string(), "payments".to_string()]),
                "version {version}"
            );
        }
        assert_eq!(subscription_topics(&encoded(1, &[])), Some(Vec::new()));
    }

    #[test]
    fn counts_and_lengths_beyond_the_bytes_are_refused() {
        let mut bytes = encoded(1, &["orders"]);
        // Count: i32::MAX topics in a few bytes.
        bytes[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(subscription_topics(&bytes), None);
        let mut bytes = encoded(1, &["orders"]);
        bytes[6..8].copy_from_slice(&1000i16.to_be_bytes());
        assert_eq!(subscription_topics(&bytes), None);
        assert_eq!(subscription_topics(&[]), None);
        assert_eq!(subscription_topics(&[0xff, 0xff, 0, 0, 0, 0]), None);
    }

    #[test]
    fn every_field_of_every_version_round_trips() {
        for version in 0..=3 {
            let subscription = Subscription {
                version,
                topics: vec!["orders".into(), "payments".into()],
                user_data: Some(Bytes::from_static(b"user")),
                owned_partitions: if version >= 1 {
                    vec![("orders".into(), vec![0, 2])]
                } else {
                    Vec::new()
                },
                generation_id: if version >= 2 { 7 } else { -1 },
                rack_id: (version >= 3).then(|| "rack-a".to_string()),
            };
            let bytes = write_subscription(&subscription);
            assert_eq!(
                bytes.as_ref(),
                encoded_full(version).as_slice(),
                "v{version}"
            );
            assert_eq!(read_subscription(&bytes), Some(subscription), "v{version}");
            let assignment = Assignment {
                version,
                partitions: vec![("orders".into(), vec![1]), ("payments".into(), vec![])],
                user_data: None,
            };
            assert_eq!(
                read_assignment(&write_assignment(&assignment)),
                Some(assignment)
            );
        }
    }

    /// What the generated encoder writes for the subscription of the round-trip test.
    fn encoded_full(version: i16) -> Vec<u8> {
        let mut subscription = ConsumerProtocolSubscription::default()
            .with_topics(vec![text("orders"), text("payments")])
            .with_user_data(Some(Bytes::from_static(b"user")));
        if version >= 1 {
            subscription = subscription.with_owned_partitions(vec![OwnedPartitions::default()
                .with_topic(TopicName(text("orders")))
                .with_partitions(vec![0, 2])]);
        }
        if version >= 2 {
            subscription = subscription.with_generation_id(7);
        }
        if version >= 3 {
            subscription = subscription.with_rack_id(Some(text("rack-a")));
        }
        let mut bytes = BytesMut::new();
        bytes.put_i16(version);
        subscription.encode(&mut bytes, version).unwrap();
        bytes.to_vec()
    }

    #[test]
    fn known_versions_must_end_with_their_last_field_and_later_ones_may_not() {
        let mut bytes = encoded(1, &["orders"]);
        assert!(read_subscription(&bytes).is_some());
        bytes.push(0);
        assert_eq!(read_subscription(&bytes), None);
        // A v4 reader would find a field there; this one reads v3's and keeps going.
        assert!(read_subscription(&{
            let mut bytes = encoded(3, &["orders"]);
            bytes[0..2].copy_from_slice(&4i16.to_be_bytes());
            bytes.extend_from_slice(&[1, 2, 3]);
            bytes
        })
        .is_some());
        let mut assignment = write_assignment(&Assignment::default()).to_vec();
        assert!(read_assignment(&assignment).is_some());
        assignment.push(0);
        assert_eq!(read_assignment(&assignment), None);
    }

    #[test]
    fn counts_beyond_the_bytes_are_refused_in_every_list() {
        let assignment = write_assignment(&Assignment {
            version: 0,
            partitions: vec![("orders".into(), vec![1, 2])],
            user_data: None,
        });
        let mut bytes = assignment.to_vec();
        bytes[2..6].copy_from_slice(&i32::MAX.to_be_bytes());
        assert_eq!(read_assignment(&bytes), None);
        let mut bytes = assignment.to_vec();
        // The partition count after "orders" (2 + 4 + 2 + 6 bytes in).
        bytes[14..18].copy_from_slice(&1000i32.to_be_bytes());
        assert_eq!(read_assignment(&bytes), None);
        assert_eq!(read_assignment(&[0, 0]), None);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = subscription_topics(&bytes);
            let _ = read_subscription(&bytes);
            let _ = read_assignment(&bytes);
        }
    }
}
