//! What one offsets partition holds, in memory: every group's committed offsets and its last
//! written membership record, rebuilt by replaying the partition's log and kept current by
//! applying each record after it is durable.
//!
//! Transactional offset commits (KIP-98, KIP-447) are offsets records in transactional batches
//! of the committing producer: they stay pending, per producer, until a marker of that producer
//! reaches the partition; a commit marker makes them committed and an abort marker drops them.
//! Kafka's rule decides between a pending offset and a plain commit of the same partition: the
//! one whose record is later in the log wins (`OffsetMetadataManager.replayEndTransactionMarker`),
//! so each offset keeps the log position of the record that wrote it. The store also follows
//! each transactional producer's epoch and next sequence here, so the coordinator's own
//! transactional batches continue the sequence the partition expects.
//!
//! The log is compacted by the storage engine (the offsets topic has `cleanup.policy=compact`):
//! replaying one record per live key, the last of each, rebuilds the same store (tested here
//! with [`OffsetStore::snapshot`], what a fully compacted log holds). The store neither reads nor writes the log itself (`coordinator`
//! does) and knows nothing of membership rules (`membership`).

use std::collections::{BTreeMap, BTreeSet};

use spate_protocol::api::TopicPartitionList;
use spate_protocol::batch::header::sequence_after;

use super::records::{CommittedOffset, GroupRecord, LogRecord};

/// An offset with the log position of the record that wrote it (its order among the records
/// applied; replay and the writer apply in log order).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Positioned {
    value: CommittedOffset,
    position: u64,
}

/// (group, topic, partition).
type OffsetKey = (String, String, u32);

/// Where a transactional producer's batches stand in this partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ProducerPosition {
    epoch: i16,
    next_sequence: i32,
}

/// One offsets partition's live state. Shard-local: owned by the coordinator of the partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<String, BTreeMap<(String, u32), Positioned>>,
    groups: BTreeMap<String, GroupRecord>,
    /// Offsets of transactions open here, by producer id. A producer whose transactional batch
    /// was seen has an entry (maybe empty) until its next marker.
    pending: BTreeMap<i64, BTreeMap<OffsetKey, Positioned>>,
    /// Every transactional producer seen here: it grows with distinct producer ids (not with
    /// commits), and replay after a restart keeps only those still in the log.
    producers: BTreeMap<i64, ProducerPosition>,
    /// Position the next applied record gets.
    next_position: u64,
    /// Records applied (written or replayed) since the store was made.
    records_applied: u64,
}

impl OffsetStore {
    /// Applies one record, as replay and the writer do, in log order: the last record of a key
    /// wins and a tombstone removes the key.
    pub fn apply(&mut self, record: LogRecord) {
        self.records_applied += 1;
        let position = self.take_position();
        match record {
            LogRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            } => {
                self.offsets
                    .entry(group)
                    .or_default()
                    .insert((topic, partition), Positioned { value, position });
            }
            LogRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            } => {
                // As Kafka: a deleted offset takes the pending offsets of its key with it.
                let key = (group, topic, partition);
                for pending in self.pending.values_mut() {
                    pending.remove(&key);
                }
                let (group, topic, partition) = key;
                if let Some(offsets) = self.offsets.get_mut(&group) {
                    offsets.remove(&(topic, partition));
                    if offsets.is_empty() {
                        self.offsets.remove(&group);
                    }
                }
            }
            LogRecord::Group {
                group,
                value: Some(value),
            } => {
                self.groups.insert(group, value);
            }
            LogRecord::Group { group, value: None } => {
                self.groups.remove(&group);
            }
        }
    }

    fn take_position(&mut self) -> u64 {
        let position = self.next_position;
        self.next_position += 1;
        position
    }

    /// Notes a transactional batch of `producer_id` (from its header): its transaction is open
    /// here from now on, and its next sequence follows the batch. `offset_count` records, from
    /// `base_sequence`.
    pub fn open_transaction(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        offset_count: u32,
    ) {
        self.pending.entry(producer_id).or_default();
        self.note_sequence(producer_id, producer_epoch, base_sequence, offset_count);
    }

    /// Notes where a transactional batch of `producer_id` leaves its sequence, without opening
    /// a transaction (a batch without records).
    pub fn note_sequence(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
        offset_count: u32,
    ) {
        if base_sequence >= 0 {
            self.producers.insert(
                producer_id,
                ProducerPosition {
                    epoch: producer_epoch,
                    next_sequence: sequence_after(base_sequence, offset_count),
                },
            );
        }
    }

    /// Applies one record of a transactional batch of `producer_id` (after
    /// [`OffsetStore::open_transaction`] for the batch): an offset stays pending until the
    /// producer's marker. Membership records are never transactional; one found in such a batch
    /// is applied as it is.
    pub fn apply_transactional(&mut self, producer_id: i64, record: LogRecord) {
        match record {
            LogRecord::Offset {
                group,
                topic,
                partition,
                value: Some(value),
            } => {
                self.records_applied += 1;
                let position = self.take_position();
                self.pending
                    .entry(producer_id)
                    .or_default()
                    .insert((group, topic, partition), Positioned { value, position });
            }
            // A transactional tombstone is never written (Kafka writes none either).
            LogRecord::Offset { value: None, .. } => self.records_applied += 1,
            record @ LogRecord::Group { .. } => self.apply(record),
        }
    }

    /// Applies a marker of `producer_id` at `producer_epoch`: on commit its pending offsets
    /// become committed where their record is later in the log than the committed offset's
    /// (Kafka's rule); on abort they are dropped. Ends the producer's transaction here either
    /// way. A marker of a newer epoch (the coordinator bumped it) starts the producer's
    /// sequence here over at 0 under that epoch, as the partition's storage does.
    pub fn apply_marker(&mut self, producer_id: i64, producer_epoch: i16, commit: bool) {
        self.records_applied += 1;
        self.take_position();
        if let Some(known) = self.producers.get_mut(&producer_id) {
            if known.epoch < producer_epoch {
                *known = ProducerPosition {
                    epoch: producer_epoch,
                    next_sequence: 0,
                };
            }
        }
        let Some(pending) = self.pending.remove(&producer_id) else {
            return;
        };
        if !commit {
            return;
        }
        for ((group, topic, partition), offset) in pending {
            let offsets = self.offsets.entry(group).or_default();
            let key = (topic, partition);
            let newer = offsets
                .get(&key)
                .is_none_or(|current| current.position < offset.position);
            if newer {
                offsets.insert(key, offset);
            }
        }
    }

    /// The sequence the producer's next transactional batch here must carry at
    /// `producer_epoch`: where its last one ended, or 0 for an epoch (or producer) not seen.
    pub fn next_sequence(&self, producer_id: i64, producer_epoch: i16) -> i32 {
        match self.producers.get(&producer_id) {
            Some(known) if known.epoch == producer_epoch => known.next_sequence,
            _ => 0,
        }
    }

    /// Whether an open transaction holds an offset of the partition for `group`: what
    /// OffsetFetch's `require_stable` waits for.
    pub fn has_pending(&self, group: &str, topic: &str, partition: u32) -> bool {
        let key = (group.to_string(), topic.to_string(), partition);
        self.pending
            .values()
            .any(|pending| pending.contains_key(&key))
    }

    /// Whether any transaction is open in this partition.
    pub fn has_open_transactions(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Whether `producer_id` has a transaction open in this partition.
    pub fn is_open(&self, producer_id: i64) -> bool {
        self.pending.contains_key(&producer_id)
    }

    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<&CommittedOffset> {
        self.offsets
            .get(group)?
            .get(&(topic.to_string(), partition))
            .map(|stored| &stored.value)
    }

    /// The committed offsets of `group`, by (topic, partition).
    pub fn group_offsets(
        &self,
        group: &str,
    ) -> impl Iterator<Item = (&(String, u32), &CommittedOffset)> {
        self.offsets
            .get(group)
            .into_iter()
            .flatten()
            .map(|(key, stored)| (key, &stored.value))
    }

    /// Groups with offsets pending in an open transaction.
    fn pending_groups(&self) -> impl Iterator<Item = &str> {
        self.pending
            .values()
            .flat_map(|pending| pending.keys().map(|(group, _, _)| group.as_str()))
    }

    /// Every group with committed offsets of `topic`, with those partitions.
    /// Every group with offsets of `topic` (committed or pending in a transaction), with those
    /// partitions: what a deleted topic leaves behind.
    pub fn offsets_of_topic(&self, topic: &str) -> Vec<(String, Vec<u32>)> {
        let mut found: BTreeMap<&str, BTreeSet<u32>> = BTreeMap::new();
        for (group, offsets) in &self.offsets {
            for (name, partition) in offsets.keys() {
                if name == topic {
                    found.entry(group.as_str()).or_default().insert(*partition);
                }
            }
        }
        for pending in self.pending.values() {
            for (group, name, partition) in pending.keys() {
                if name == topic {
                    found.entry(group.as_str()).or_default().insert(*partition);
                }
            }
        }
        found
            .into_iter()
            .map(|(group, partitions)| (group.to_string(), partitions.into_iter().collect()))
            .collect()
    }

    pub fn group_record(&self, group: &str) -> Option<&GroupRecord> {
        self.groups.get(group)
    }

    pub fn group_records(&self) -> impl Iterator<Item = (&str, &GroupRecord)> {
        self.groups
            .iter()
            .map(|(group, record)| (group.as_str(), record))
    }

    /// Every group the partition knows: with a membership record, offsets, or both.
    pub fn group_ids(&self) -> BTreeSet<&str> {
        self.offsets
            .keys()
            .chain(self.groups.keys())
            .map(String::as_str)
            .chain(self.pending_groups())
            .collect()
    }

    /// A group with a membership record, committed offsets or pending ones.
    pub fn has_group(&self, group: &str) -> bool {
        self.offsets.contains_key(group)
            || self.groups.contains_key(group)
            || self.pending_groups().any(|pending| pending == group)
    }

    /// Keys with a value: the size of a snapshot, in records.
    pub fn live_records(&self) -> u64 {
        let offsets: usize = self.offsets.values().map(BTreeMap::len).sum();
        (offsets + self.groups.len()) as u64
    }

    pub fn records_applied(&self) -> u64 {
        self.records_applied
    }

    /// One record per live key, membership records first: what a fully compacted log holds.
    #[cfg(test)]
    pub fn snapshot(&self) -> Vec<LogRecord> {
        let groups = self.groups.iter().map(|(group, record)| LogRecord::Group {
            group: group.clone(),
            value: Some(record.clone()),
        });
        let offsets = self.offsets.iter().flat_map(|(group, offsets)| {
            offsets
                .iter()
                .map(move |((topic, partition), stored)| LogRecord::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(stored.value.clone()),
                })
        });
        groups.chain(offsets).collect()
    }

    /// Tombstones for everything of `group`: its membership record and every offset, committed
    /// or pending (as Kafka's group deletion: a tombstone also drops the pending offsets of its
    /// key).
    pub fn tombstones_for_group(&self, group: &str) -> Vec<LogRecord> {
        let mut records = Vec::new();
        if self.groups.contains_key(group) {
            records.push(LogRecord::Group {
                group: group.to_string(),
                value: None,
            });
        }
        let mut keys: BTreeSet<(&str, u32)> = self
            .offsets
            .get(group)
            .into_iter()
            .flat_map(|offsets| offsets.keys())
            .map(|(topic, partition)| (topic.as_str(), *partition))
            .collect();
        for pending in self.pending.values() {
            keys.extend(
                pending
                    .keys()
                    .filter(|(pending_group, _, _)| pending_group == group)
                    .map(|(_, topic, partition)| (topic.as_str(), *partition)),
            );
        }
        records.extend(
            keys.into_iter()
                .map(|(topic, partition)| LogRecord::Offset {
                    group: group.to_string(),
                    topic: topic.to_string(),
                    partition,
                    value: None,
                }),
        );
        records
    }

    /// Tombstones for the named offsets of `group` that exist, committed or pending (the
    /// tombstone drops the pending ones too).
    pub fn tombstones_for_offsets(
        &self,
        group: &str,
        topics: &[TopicPartitionList],
    ) -> Vec<LogRecord> {
        topics
            .iter()
            .flat_map(|topic| {
                topic
                    .partitions
                    .iter()
                    .map(move |partition| (topic.name.as_str(), *partition))
            })
            .filter(|(topic, partition)| {
                self.committed(group, topic, *partition).is_some()
                    || self.has_pending(group, topic, *partition)
            })
            .map(|(topic, partition)| LogRecord::Offset {
                group: group.to_string(),
                topic: topic.to_string(),
                partition,
                value: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(group: &str, topic: &str, partition: u32, offset: u64) -> LogRecord {
        LogRecord::Offset {
            group: group.into(),
            topic: topic.into(),
            partition,
            value: Some(CommittedOffset {
                offset,
                metadata: None,
                commit_timestamp_ms: 0,
            }),
        }
    }

    fn group_record(generation_id: i32) -> LogRecord {
        LogRecord::Group {
            group: "g".into(),
            value: Some(GroupRecord {
                generation_id,
                protocol_type: "consumer".into(),
                protocol_name: None,
                leader: None,
                members: Vec::new(),
            }),
        }
    }

    #[test]
    fn offsets_of_a_topic_are_found_in_every_group_and_only_that_topic() {
        let mut store = OffsetStore::default();
        store.apply(commit("a", "orders", 0, 1));
        store.apply(commit("a", "orders", 2, 1));
        store.apply(commit("a", "orders-eu", 0, 1));
        store.apply(commit("b", "orders", 1, 1));
        store.apply(commit("c", "kept", 0, 1));
        assert_eq!(
            store.offsets_of_topic("orders"),
            vec![("a".to_string(), vec![0, 2]), ("b".to_string(), vec![1])]
        );
        assert!(store.offsets_of_topic("gone").is_empty());
    }

    #[test]
    fn the_last_record_of_a_key_wins_and_tombstones_remove_it() {
        let mut store = OffsetStore::default();
        store.apply(commit("g", "t", 0, 5));
        store.apply(commit("g", "t", 0, 9));
        store.apply(commit("g", "t", 1, 3));
        assert_eq!(
            store.committed("g", "t", 0).map(|value| value.offset),
            Some(9)
        );
        store.apply(LogRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        });
        assert_eq!(store.committed("g", "t", 0), None);
        assert_eq!(
            store.committed("g", "t", 1).map(|value| value.offset),
            Some(3)
        );
        assert_eq!(store.live_records(), 1);
    }

    #[test]
    fn replaying_a_snapshot_rebuilds_the_same_store() {
        let mut store = OffsetStore::default();
        for offset in 0..50 {
            store.apply(commit("g", "t", (offset % 3) as u32, offset));
            store.apply(commit("h", "u", 0, offset * 2));
        }
        store.apply(group_record(4));
        store.apply(group_record(5));
        let mut rebuilt = OffsetStore::default();
        for record in store.snapshot() {
            rebuilt.apply(record);
        }
        assert_eq!(rebuilt.live_records(), store.live_records());
        for group in ["g", "h"] {
            assert!(rebuilt.group_offsets(group).eq(store.group_offsets(group)));
        }
        assert_eq!(rebuilt.groups, store.groups);
        assert_eq!(store.snapshot().len() as u64, store.live_records());
    }

    #[test]
    fn deleting_a_group_covers_its_record_and_every_offset_and_nothing_else() {
        let mut store = OffsetStore::default();
        store.apply(group_record(1));
        store.apply(commit("g", "t", 0, 1));
        store.apply(commit("g", "u", 2, 1));
        store.apply(commit("other", "t", 0, 1));
        let tombstones = store.tombstones_for_group("g");
        assert_eq!(tombstones.len(), 3);
        for record in tombstones {
            assert!(record.is_tombstone());
            store.apply(record);
        }
        assert!(!store.has_group("g"));
        assert!(store.has_group("other"));
        let named = store.tombstones_for_offsets(
            "other",
            &[TopicPartitionList {
                name: "t".into(),
                partitions: vec![0, 7],
            }],
        );
        assert_eq!(named.len(), 1, "only offsets that exist get a tombstone");
    }

    fn pending_commit(store: &mut OffsetStore, producer_id: i64, partition: u32, offset: u64) {
        let sequence = store.next_sequence(producer_id, 0);
        store.open_transaction(producer_id, 0, sequence, 1);
        store.apply_transactional(producer_id, commit("g", "t", partition, offset));
    }

    fn offset_of(store: &OffsetStore, partition: u32) -> Option<u64> {
        store
            .committed("g", "t", partition)
            .map(|value| value.offset)
    }

    #[test]
    fn transactional_offsets_wait_for_their_marker_and_aborted_ones_vanish() {
        let mut store = OffsetStore::default();
        store.apply(commit("g", "t", 0, 5));
        pending_commit(&mut store, 7, 0, 9);
        pending_commit(&mut store, 8, 1, 4);
        assert_eq!(offset_of(&store, 0), Some(5), "pending is not committed");
        assert!(store.has_pending("g", "t", 0));
        assert!(store.has_pending("g", "t", 1));
        assert!(!store.has_pending("g", "t", 2));
        store.apply_marker(8, 0, false);
        assert_eq!(offset_of(&store, 1), None, "aborted");
        assert!(!store.has_pending("g", "t", 1));
        store.apply_marker(7, 0, true);
        assert_eq!(offset_of(&store, 0), Some(9), "committed");
        assert!(!store.has_open_transactions());
        // A marker of a producer with nothing open changes nothing.
        store.apply_marker(7, 0, true);
        assert_eq!(offset_of(&store, 0), Some(9));
    }

    #[test]
    fn a_plain_commit_after_the_transactional_record_wins_over_it_as_in_kafka() {
        let mut store = OffsetStore::default();
        pending_commit(&mut store, 7, 0, 9);
        store.apply(commit("g", "t", 0, 12));
        store.apply_marker(7, 0, true);
        assert_eq!(
            offset_of(&store, 0),
            Some(12),
            "the later record in the log wins"
        );
        // And the other way: the transactional record is the later one.
        store.apply(commit("g", "t", 1, 3));
        pending_commit(&mut store, 7, 1, 2);
        store.apply_marker(7, 0, true);
        assert_eq!(offset_of(&store, 1), Some(2));
    }

    #[test]
    fn sequences_continue_per_producer_and_restart_with_a_new_epoch() {
        let mut store = OffsetStore::default();
        assert_eq!(store.next_sequence(7, 0), 0);
        store.open_transaction(7, 0, 0, 3);
        assert_eq!(store.next_sequence(7, 0), 3);
        store.apply_marker(7, 0, true);
        assert_eq!(store.next_sequence(7, 0), 3, "kept across transactions");
        assert_eq!(store.next_sequence(7, 1), 0, "a new epoch starts at 0");
        store.apply_marker(7, 1, false);
        assert_eq!(
            store.next_sequence(7, 0),
            0,
            "a marker of a newer epoch restarts it"
        );
        assert_eq!(store.next_sequence(7, 1), 0);
        store.open_transaction(7, 1, 0, 2);
        assert_eq!(store.next_sequence(7, 1), 2);
        store.open_transaction(7, 1, i32::MAX, 1);
        assert_eq!(store.next_sequence(7, 1), 0, "sequences wrap");
    }

    #[test]
    fn a_tombstone_or_group_deletion_takes_pending_offsets_with_it() {
        let mut store = OffsetStore::default();
        pending_commit(&mut store, 7, 0, 9);
        pending_commit(&mut store, 7, 1, 9);
        assert!(
            store.has_group("g"),
            "a group with pending offsets only exists"
        );
        store.apply(LogRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            value: None,
        });
        assert!(!store.has_pending("g", "t", 0));
        let tombstones = store.tombstones_for_group("g");
        assert_eq!(
            tombstones.len(),
            1,
            "the pending partition 1 gets its tombstone"
        );
        for record in tombstones {
            store.apply(record);
        }
        store.apply_marker(7, 0, true);
        assert_eq!(offset_of(&store, 1), None);
        assert!(!store.has_group("g"));
    }
}
