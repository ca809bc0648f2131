//! The records of the `__transaction_state` topic: key = the transactional id, value = its
//! state ([`TxnRecord`]); a tombstone (no value) forgets an expired id. Versioned layouts,
//! encoded with the protocol crate's primitives, as the group coordinator's records are.
//!
//! Replay applies records in log order, last one wins per key, so the log can be compacted
//! (`cleanup.policy=compact`) to one record per live id. Decoding never panics and bounds
//! every length and count; a record this build cannot read is reported, never guessed at.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use spate_protocol::codec::{put_count, put_string, Decoder, Sink};
use spate_protocol::constants::{GROUP_ID_BYTES_MAX, TOPIC_NAME_BYTES_MAX};
use spate_protocol::WireError;

use crate::limits::defaults::TRANSACTIONAL_ID_BYTES_MAX;
use crate::state::{TxnRecord, TxnState};

/// Layout version of keys and values this build writes (and the only one it reads).
const RECORD_VERSION: u16 = 0;

/// Most partitions and groups one stored state may list: the decoder's bound. Above every
/// configurable per-transaction bound (`TxnLimits::check` keeps them below).
pub const RECORD_PARTITIONS_MAX: usize = 1_000_000;
pub const RECORD_GROUPS_MAX: usize = 100_000;

/// Why a stored record could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("transaction state record is malformed: {0}")]
    Malformed(#[from] WireError),
    #[error(
        "transaction state record has layout version {version}; this build reads {RECORD_VERSION}"
    )]
    UnknownVersion { version: u16 },
    #[error("transaction state record has unknown state {state}")]
    UnknownState { state: u8 },
    #[error("transaction state record has no key")]
    MissingKey,
}

/// One record of the state topic, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateRecord {
    pub transactional_id: String,
    /// `None`: the id was forgotten (expired).
    pub value: Option<TxnRecord>,
}

fn state_code(state: TxnState) -> u8 {
    match state {
        TxnState::Empty => 0,
        TxnState::Ongoing => 1,
        TxnState::PrepareCommit => 2,
        TxnState::PrepareAbort => 3,
        TxnState::CompleteCommit => 4,
        TxnState::CompleteAbort => 5,
        TxnState::PrepareEpochFence => 6,
        TxnState::Dead => 7,
    }
}

fn state_of(code: u8) -> Result<TxnState, RecordError> {
    Ok(match code {
        0 => TxnState::Empty,
        1 => TxnState::Ongoing,
        2 => TxnState::PrepareCommit,
        3 => TxnState::PrepareAbort,
        4 => TxnState::CompleteCommit,
        5 => TxnState::CompleteAbort,
        // Pending-only states are never written (see `state`): a record holding one is not
        // this build's.
        state => return Err(RecordError::UnknownState { state }),
    })
}

impl StateRecord {
    pub fn encode_key(&self) -> Result<Bytes, WireError> {
        let mut sink = BytesMut::new();
        sink.put_u16(RECORD_VERSION);
        put_string(
            &mut sink,
            "transactional_id",
            &self.transactional_id,
            TRANSACTIONAL_ID_BYTES_MAX,
        )?;
        Ok(sink.freeze())
    }

    /// The value bytes; `None` for a tombstone.
    pub fn encode_value(&self) -> Result<Option<Bytes>, WireError> {
        let Some(value) = &self.value else {
            return Ok(None);
        };
        assert!(
            !matches!(value.state, TxnState::PrepareEpochFence | TxnState::Dead),
            "pending-only states are never written"
        );
        let mut sink = BytesMut::new();
        sink.put_u16(RECORD_VERSION);
        sink.put_i64(value.producer_id);
        sink.put_i64(value.previous_producer_id);
        sink.put_i16(value.producer_epoch);
        sink.put_i16(value.last_producer_epoch);
        sink.put_i32(value.timeout_ms);
        sink.put_u8(state_code(value.state));
        put_count(
            &mut sink,
            "partitions",
            value.partitions.len(),
            RECORD_PARTITIONS_MAX,
        )?;
        for (topic, partition) in &value.partitions {
            put_string(&mut sink, "topic", topic, TOPIC_NAME_BYTES_MAX)?;
            sink.put_u32(*partition);
        }
        put_count(&mut sink, "groups", value.groups.len(), RECORD_GROUPS_MAX)?;
        for group in &value.groups {
            put_string(&mut sink, "group", group, GROUP_ID_BYTES_MAX)?;
        }
        sink.put_i64(value.start_timestamp_ms);
        sink.put_i64(value.update_timestamp_ms);
        Ok(Some(sink.freeze()))
    }

    /// Reads a record back from the key and value a batch holds.
    pub fn decode(key: Option<&[u8]>, value: Option<&[u8]>) -> Result<StateRecord, RecordError> {
        let key = key.ok_or(RecordError::MissingKey)?;
        let mut decoder = Decoder::new(Bytes::copy_from_slice(key));
        check_version(&mut decoder)?;
        let transactional_id = decoder.string("transactional_id", TRANSACTIONAL_ID_BYTES_MAX)?;
        decoder.finish("transaction state key")?;
        let value = match value {
            None => None,
            Some(value) => {
                let mut decoder = Decoder::new(Bytes::copy_from_slice(value));
                let record = decode_value(&mut decoder)?;
                decoder.finish("transaction state value")?;
                Some(record)
            }
        };
        Ok(StateRecord {
            transactional_id,
            value,
        })
    }
}

fn check_version(decoder: &mut Decoder) -> Result<(), RecordError> {
    match decoder.u16("record_version")? {
        RECORD_VERSION => Ok(()),
        version => Err(RecordError::UnknownVersion { version }),
    }
}

fn decode_value(decoder: &mut Decoder) -> Result<TxnRecord, RecordError> {
    check_version(decoder)?;
    let producer_id = decoder.i64("producer_id")?;
    let previous_producer_id = decoder.i64("previous_producer_id")?;
    let producer_epoch = decoder.i16("producer_epoch")?;
    let last_producer_epoch = decoder.i16("last_producer_epoch")?;
    let timeout_ms = decoder.i32("timeout_ms")?;
    let state = state_of(decoder.u8("state")?)?;
    // A partition entry is at least a u16 length and a u32 index; a group at least its length.
    let partition_count = decoder.count("partitions", RECORD_PARTITIONS_MAX, 6)?;
    let mut partitions = BTreeSet::new();
    for _ in 0..partition_count {
        let topic = decoder.string("topic", TOPIC_NAME_BYTES_MAX)?;
        partitions.insert((topic, decoder.u32("partition")?));
    }
    let group_count = decoder.count("groups", RECORD_GROUPS_MAX, 2)?;
    let mut groups = BTreeSet::new();
    for _ in 0..group_count {
        groups.insert(decoder.string("group", GROUP_ID_BYTES_MAX)?);
    }
    Ok(TxnRecord {
        producer_id,
        previous_producer_id,
        producer_epoch,
        last_producer_epoch,
        timeout_ms,
        state,
        partitions,
        groups,
        start_timestamp_ms: decoder.i64("start_timestamp_ms")?,
        update_timestamp_ms: decoder.i64("update_timestamp_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> StateRecord {
        StateRecord {
            transactional_id: "payments-1".into(),
            value: Some(TxnRecord {
                producer_id: 4000,
                previous_producer_id: 12,
                producer_epoch: 7,
                last_producer_epoch: 6,
                timeout_ms: 60_000,
                state: TxnState::PrepareCommit,
                partitions: [("orders".to_string(), 0), ("orders".to_string(), 3)].into(),
                groups: ["billing".to_string()].into(),
                start_timestamp_ms: 1_700_000_000_000,
                update_timestamp_ms: 1_700_000_000_500,
            }),
        }
    }

    fn round_trip(record: &StateRecord) -> StateRecord {
        let key = record.encode_key().unwrap();
        let value = record.encode_value().unwrap();
        StateRecord::decode(Some(&key), value.as_deref()).unwrap()
    }

    #[test]
    fn a_state_and_a_tombstone_read_back_as_written() {
        let record = sample();
        assert_eq!(round_trip(&record), record);
        let tombstone = StateRecord {
            transactional_id: "gone".into(),
            value: None,
        };
        assert_eq!(round_trip(&tombstone), tombstone);
    }

    #[test]
    fn every_truncation_and_an_unknown_state_are_refused_without_panicking() {
        let record = sample();
        let key = record.encode_key().unwrap();
        let value = record.encode_value().unwrap().unwrap();
        for cut in 0..value.len() {
            assert!(
                StateRecord::decode(Some(&key), Some(&value[..cut])).is_err(),
                "{cut}"
            );
        }
        for cut in 0..key.len() {
            assert!(StateRecord::decode(Some(&key[..cut]), Some(&value)).is_err());
        }
        let mut bad_state = value.to_vec();
        // version (2) + ids (16) + epochs (4) + timeout (4) = the state byte's offset.
        bad_state[26] = 6;
        assert_eq!(
            StateRecord::decode(Some(&key), Some(&bad_state)),
            Err(RecordError::UnknownState { state: 6 })
        );
        let mut trailing = value.to_vec();
        trailing.push(0);
        assert!(StateRecord::decode(Some(&key), Some(&trailing)).is_err());
        assert_eq!(
            StateRecord::decode(None, Some(&value)),
            Err(RecordError::MissingKey)
        );
    }

    #[test]
    fn a_huge_count_is_refused_before_anything_is_reserved() {
        let record = sample();
        let key = record.encode_key().unwrap();
        let mut value = record.encode_value().unwrap().unwrap().to_vec();
        value[27..31].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            StateRecord::decode(Some(&key), Some(&value)),
            Err(RecordError::Malformed(WireError::TooMany { .. }))
        ));
    }
}
