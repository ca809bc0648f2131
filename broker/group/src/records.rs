//! The records the coordinator keeps in the offsets topic: one key layout and one value layout
//! per kind, versioned, encoded with the protocol crate's primitives.
//!
//! A key names what a record is about: a committed offset (group, topic, partition) or a group's
//! membership (group). The value is the latest state of that key; an absent value (a tombstone)
//! deletes it. Replay applies records in log order, last one wins, so the log can always be
//! compacted to one record per live key. Decoding never panics and bounds every length; a record
//! this build cannot read is reported, never guessed at. Storage and replay order are the
//! coordinator's business (`coordinator`, `store`).

use bytes::{Bytes, BytesMut};
use spate_protocol::codec::{put_count, put_optional_string, put_string, Decoder, Sink};
use spate_protocol::constants::{
    CLIENT_HOST_BYTES_MAX, CLIENT_ID_BYTES_MAX, GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX,
    GROUP_MEMBERS_PER_MESSAGE_MAX, GROUP_MEMBER_METADATA_BYTES_MAX, GROUP_PROTOCOL_NAME_BYTES_MAX,
    MEMBER_ID_BYTES_MAX, STRING_BYTES_MAX, TOPIC_NAME_BYTES_MAX,
};
use spate_protocol::WireError;

/// Layout version of keys and values this build writes (and the only one it reads).
const RECORD_VERSION: u16 = 0;

const KIND_OFFSET: u8 = 0;
const KIND_GROUP: u8 = 1;

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("offsets record is malformed: {0}")]
    Malformed(#[from] WireError),
    #[error("offsets record has layout version {version}; this build reads {RECORD_VERSION}")]
    UnknownVersion { version: u16 },
    #[error("offsets record has unknown kind {kind}")]
    UnknownKind { kind: u8 },
    #[error("offsets record has no key")]
    MissingKey,
}

/// A group's committed position on one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// The next offset to consume.
    pub offset: u64,
    pub metadata: Option<String>,
    /// Wall-clock time of the commit, milliseconds since the epoch.
    pub commit_timestamp_ms: i64,
}

/// One member as stored with its group: enough to restore it after a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: u32,
    pub rebalance_timeout_ms: u32,
    /// Its metadata for the group's chosen protocol.
    pub metadata: Bytes,
    pub assignment: Bytes,
}

/// A group's membership as of its last completed rebalance (or emptying).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRecord {
    pub generation_id: i32,
    pub protocol_type: String,
    pub protocol_name: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberRecord>,
}

/// One record of the offsets topic, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogRecord {
    Offset {
        group: String,
        topic: String,
        partition: u32,
        /// `None` deletes the committed offset.
        value: Option<CommittedOffset>,
    },
    Group {
        group: String,
        /// `None` deletes the group's membership record.
        value: Option<GroupRecord>,
    },
}

impl LogRecord {
    pub fn group(&self) -> &str {
        match self {
            LogRecord::Offset { group, .. } | LogRecord::Group { group, .. } => group,
        }
    }

    pub fn is_tombstone(&self) -> bool {
        match self {
            LogRecord::Offset { value, .. } => value.is_none(),
            LogRecord::Group { value, .. } => value.is_none(),
        }
    }

    pub fn encode_key(&self) -> Result<Bytes, WireError> {
        let mut sink = BytesMut::new();
        sink.put_u16(RECORD_VERSION);
        match self {
            LogRecord::Offset {
                group,
                topic,
                partition,
                ..
            } => {
                sink.put_u8(KIND_OFFSET);
                put_string(&mut sink, "group", group, GROUP_ID_BYTES_MAX)?;
                put_string(&mut sink, "topic", topic, TOPIC_NAME_BYTES_MAX)?;
                sink.put_u32(*partition);
            }
            LogRecord::Group { group, .. } => {
                sink.put_u8(KIND_GROUP);
                put_string(&mut sink, "group", group, GROUP_ID_BYTES_MAX)?;
            }
        }
        Ok(sink.freeze())
    }

    /// The value bytes; `None` for a tombstone.
    pub fn encode_value(&self) -> Result<Option<Bytes>, WireError> {
        let mut sink = BytesMut::new();
        sink.put_u16(RECORD_VERSION);
        match self {
            LogRecord::Offset { value: None, .. } | LogRecord::Group { value: None, .. } => {
                return Ok(None)
            }
            LogRecord::Offset {
                value: Some(value), ..
            } => {
                sink.put_u64(value.offset);
                put_optional_string(
                    &mut sink,
                    "metadata",
                    value.metadata.as_deref(),
                    STRING_BYTES_MAX,
                )?;
                sink.put_i64(value.commit_timestamp_ms);
            }
            LogRecord::Group {
                value: Some(value), ..
            } => encode_group(&mut sink, value)?,
        }
        Ok(Some(sink.freeze()))
    }

    /// Reads a record back from the key and value a batch holds.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<LogRecord, RecordError> {
        let key = key.ok_or(RecordError::MissingKey)?;
        let mut decoder = Decoder::new(Bytes::copy_from_slice(key));
        check_version(&mut decoder)?;
        let kind = decoder.u8("kind")?;
        let group = decoder.string("group", GROUP_ID_BYTES_MAX)?;
        let mut value = value.map(|value| Decoder::new(Bytes::copy_from_slice(value)));
        if let Some(value) = value.as_mut() {
            check_version(value)?;
        }
        let record = match kind {
            KIND_OFFSET => {
                let topic = decoder.string("topic", TOPIC_NAME_BYTES_MAX)?;
                let partition = decoder.u32("partition")?;
                let value = value.as_mut().map(decode_offset).transpose()?;
                LogRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }
            }
            KIND_GROUP => LogRecord::Group {
                group,
                value: value.as_mut().map(decode_group).transpose()?,
            },
            kind => return Err(RecordError::UnknownKind { kind }),
        };
        decoder.finish("offsets record key")?;
        if let Some(value) = value {
            value.finish("offsets record value")?;
        }
        Ok(record)
    }
}

fn check_version(decoder: &mut Decoder) -> Result<(), RecordError> {
    match decoder.u16("record_version")? {
        RECORD_VERSION => Ok(()),
        version => Err(RecordError::UnknownVersion { version }),
    }
}

fn decode_offset(decoder: &mut Decoder) -> Result<CommittedOffset, RecordError> {
    Ok(CommittedOffset {
        offset: decoder.u64("offset")?,
        metadata: decoder.optional_string("metadata", STRING_BYTES_MAX)?,
        commit_timestamp_ms: decoder.i64("commit_timestamp_ms")?,
    })
}

fn put_bytes(sink: &mut BytesMut, field: &'static str, bytes: &Bytes) -> Result<(), WireError> {
    if bytes.len() > GROUP_MEMBER_METADATA_BYTES_MAX {
        return Err(WireError::TooLong {
            field,
            length: bytes.len(),
            limit: GROUP_MEMBER_METADATA_BYTES_MAX,
        });
    }
    sink.put_u32(bytes.len() as u32);
    sink.put_slice(bytes);
    Ok(())
}

fn encode_group(sink: &mut BytesMut, group: &GroupRecord) -> Result<(), WireError> {
    sink.put_i32(group.generation_id);
    put_string(
        sink,
        "protocol_type",
        &group.protocol_type,
        GROUP_PROTOCOL_NAME_BYTES_MAX,
    )?;
    put_optional_string(
        sink,
        "protocol_name",
        group.protocol_name.as_deref(),
        GROUP_PROTOCOL_NAME_BYTES_MAX,
    )?;
    put_optional_string(sink, "leader", group.leader.as_deref(), MEMBER_ID_BYTES_MAX)?;
    put_count(
        sink,
        "members",
        group.members.len(),
        GROUP_MEMBERS_PER_MESSAGE_MAX,
    )?;
    for member in &group.members {
        put_string(sink, "member_id", &member.member_id, MEMBER_ID_BYTES_MAX)?;
        put_optional_string(
            sink,
            "group_instance_id",
            member.group_instance_id.as_deref(),
            GROUP_INSTANCE_ID_BYTES_MAX,
        )?;
        put_string(sink, "client_id", &member.client_id, CLIENT_ID_BYTES_MAX)?;
        put_string(
            sink,
            "client_host",
            &member.client_host,
            CLIENT_HOST_BYTES_MAX,
        )?;
        sink.put_u32(member.session_timeout_ms);
        sink.put_u32(member.rebalance_timeout_ms);
        put_bytes(sink, "metadata", &member.metadata)?;
        put_bytes(sink, "assignment", &member.assignment)?;
    }
    Ok(())
}

/// Fewest bytes one encoded member takes: four empty strings' lengths, the optional's tag, two
/// timeouts, two byte strings' lengths.
const MEMBER_RECORD_BYTES_MIN: usize = 2 + 1 + 2 + 2 + 4 + 4 + 4 + 4;

fn decode_group(decoder: &mut Decoder) -> Result<GroupRecord, RecordError> {
    let generation_id = decoder.i32("generation_id")?;
    let protocol_type = decoder.string("protocol_type", GROUP_PROTOCOL_NAME_BYTES_MAX)?;
    let protocol_name = decoder.optional_string("protocol_name", GROUP_PROTOCOL_NAME_BYTES_MAX)?;
    let leader = decoder.optional_string("leader", MEMBER_ID_BYTES_MAX)?;
    let count = decoder.count(
        "members",
        GROUP_MEMBERS_PER_MESSAGE_MAX,
        MEMBER_RECORD_BYTES_MIN,
    )?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        members.push(MemberRecord {
            member_id: decoder.string("member_id", MEMBER_ID_BYTES_MAX)?,
            group_instance_id: decoder
                .optional_string("group_instance_id", GROUP_INSTANCE_ID_BYTES_MAX)?,
            client_id: decoder.string("client_id", CLIENT_ID_BYTES_MAX)?,
            client_host: decoder.string("client_host", CLIENT_HOST_BYTES_MAX)?,
            session_timeout_ms: decoder.u32("session_timeout_ms")?,
            rebalance_timeout_ms: decoder.u32("rebalance_timeout_ms")?,
            metadata: decoder.byte_string("metadata", GROUP_MEMBER_METADATA_BYTES_MAX)?,
            assignment: decoder.byte_string("assignment", GROUP_MEMBER_METADATA_BYTES_MAX)?,
        });
    }
    Ok(GroupRecord {
        generation_id,
        protocol_type,
        protocol_name,
        leader,
        members,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(record: &LogRecord) -> LogRecord {
        let key = record.encode_key().unwrap();
        let value = record.encode_value().unwrap();
        LogRecord::decode(Some(&key), value.as_deref()).unwrap()
    }

    fn member(index: usize) -> MemberRecord {
        MemberRecord {
            member_id: format!("consumer-{index}"),
            group_instance_id: (index % 2 == 0).then(|| format!("instance-{index}")),
            client_id: "consumer".into(),
            client_host: String::new(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            metadata: Bytes::from(vec![index as u8; 3]),
            assignment: Bytes::from(vec![7; index]),
        }
    }

    #[test]
    fn offset_and_group_records_round_trip_with_and_without_values() {
        let records = [
            LogRecord::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 11,
                value: Some(CommittedOffset {
                    offset: 42,
                    metadata: Some("checkpoint".into()),
                    commit_timestamp_ms: 1_700_000_000_000,
                }),
            },
            LogRecord::Offset {
                group: "g".into(),
                topic: "orders".into(),
                partition: 11,
                value: None,
            },
            LogRecord::Group {
                group: "g".into(),
                value: Some(GroupRecord {
                    generation_id: 9,
                    protocol_type: "consumer".into(),
                    protocol_name: Some("range".into()),
                    leader: Some("consumer-0".into()),
                    members: (0..3).map(member).collect(),
                }),
            },
            LogRecord::Group {
                group: "g".into(),
                value: None,
            },
        ];
        for record in &records {
            assert_eq!(&round_trip(record), record);
        }
        assert!(records[1].is_tombstone());
        assert!(!records[0].is_tombstone());
    }

    #[test]
    fn records_of_another_layout_version_or_kind_are_reported() {
        let record = LogRecord::Group {
            group: "g".into(),
            value: None,
        };
        let mut key = record.encode_key().unwrap().to_vec();
        key[0] = 9;
        assert_eq!(
            LogRecord::decode(Some(&key), None),
            Err(RecordError::UnknownVersion { version: 9 })
        );
        key[0] = 0;
        key[2] = 77;
        assert_eq!(
            LogRecord::decode(Some(&key), None),
            Err(RecordError::UnknownKind { kind: 77 })
        );
        assert_eq!(LogRecord::decode(None, None), Err(RecordError::MissingKey));
    }

    proptest! {
        #[test]
        fn arbitrary_keys_and_values_never_panic_the_decoder(
            key in proptest::collection::vec(any::<u8>(), 0..64),
            value in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..128)),
        ) {
            let _ = LogRecord::decode(Some(&key), value.as_deref());
        }

        #[test]
        fn mutated_group_records_never_panic_the_decoder(
            members in 0usize..4,
            position in any::<prop::sample::Index>(),
            replacement in any::<u8>(),
        ) {
            let record = LogRecord::Group {
                group: "g".into(),
                value: Some(GroupRecord {
                    generation_id: 1,
                    protocol_type: "consumer".into(),
                    protocol_name: None,
                    leader: None,
                    members: (0..members).map(member).collect(),
                }),
            };
            let key = record.encode_key().unwrap();
            let mut value = record.encode_value().unwrap().unwrap().to_vec();
            let index = position.index(value.len());
            value[index] = replacement;
            let _ = LogRecord::decode(Some(&key), Some(&value));
        }
    }
}
