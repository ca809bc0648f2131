//! The topics of a Kafka consumer's group subscription (`ConsumerProtocolSubscription`, the
//! metadata a member of protocol type `consumer` sends in JoinGroup), read without trusting its
//! counts.
//!
//! The generated decoder of `kafka-protocol` pre-allocates from the array count on the wire, and
//! these bytes come from a client inside a JoinGroup request, past the request's own bounds
//! check. The coordinator needs only the topic names (to refuse deleting the offsets of a topic
//! a live member subscribes to, as Kafka does), so this reads just them, checking every count
//! and length against the bytes left. The layout is the same in versions 0–3 up to the topics
//! (`i16 version`, `i32 count`, then `i16 length` + UTF-8 per topic), and later versions only
//! append fields, as Kafka's consumer protocol promises.

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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = subscription_topics(&bytes);
        }
    }
}
