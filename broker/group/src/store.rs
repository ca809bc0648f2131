//! What one offsets partition holds, in memory: every group's committed offsets and its last
//! written membership record, rebuilt by replaying the partition's log and kept current by
//! applying each record after it is durable.
//!
//! The store is the model the log is compacted against: a snapshot is the store written out as
//! one record per live key, after which everything before it can be deleted. The store neither
//! reads nor writes the log itself (`coordinator` does) and knows nothing of membership rules
//! (`membership`).

use std::collections::{BTreeMap, BTreeSet};

use spate_protocol::api::TopicPartitionList;

use super::records::{CommittedOffset, GroupRecord, LogRecord};

/// The committed offsets of one group, by (topic, partition).
pub type GroupOffsets = BTreeMap<(String, u32), CommittedOffset>;

/// One offsets partition's live state. Shard-local: owned by the coordinator of the partition.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct OffsetStore {
    offsets: BTreeMap<String, GroupOffsets>,
    groups: BTreeMap<String, GroupRecord>,
    /// Records written (or replayed) since the last snapshot: how much compaction would save.
    records_since_snapshot: u64,
}

impl OffsetStore {
    /// Applies one record, as replay and the writer do, in log order: the last record of a key
    /// wins and a tombstone removes the key.
    pub fn apply(&mut self, record: LogRecord) {
        self.records_since_snapshot += 1;
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
                    .insert((topic, partition), value);
            }
            LogRecord::Offset {
                group,
                topic,
                partition,
                value: None,
            } => {
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

    pub fn committed(&self, group: &str, topic: &str, partition: u32) -> Option<&CommittedOffset> {
        self.offsets
            .get(group)?
            .get(&(topic.to_string(), partition))
    }

    pub fn group_offsets(&self, group: &str) -> Option<&GroupOffsets> {
        self.offsets.get(group)
    }

    /// Every group with committed offsets of `topic`, with those partitions.
    pub fn offsets_of_topic(&self, topic: &str) -> Vec<(String, Vec<u32>)> {
        self.offsets
            .iter()
            .filter_map(|(group, offsets)| {
                let partitions: Vec<u32> = offsets
                    .keys()
                    .filter(|(name, _)| name == topic)
                    .map(|(_, partition)| *partition)
                    .collect();
                (!partitions.is_empty()).then(|| (group.clone(), partitions))
            })
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
            .collect()
    }

    pub fn has_group(&self, group: &str) -> bool {
        self.offsets.contains_key(group) || self.groups.contains_key(group)
    }

    /// Keys with a value: the size of a snapshot, in records.
    pub fn live_records(&self) -> u64 {
        let offsets: usize = self.offsets.values().map(BTreeMap::len).sum();
        (offsets + self.groups.len()) as u64
    }

    pub fn records_since_snapshot(&self) -> u64 {
        self.records_since_snapshot
    }

    /// Whether compacting now would at least halve the log: it holds `records_minimum` records
    /// beyond the last snapshot, and more than it has live keys.
    pub fn snapshot_due(&self, records_minimum: u64) -> bool {
        self.records_since_snapshot >= records_minimum
            && self.records_since_snapshot > self.live_records()
    }

    /// One record per live key, membership records first.
    pub fn snapshot(&self) -> Vec<LogRecord> {
        let groups = self.groups.iter().map(|(group, record)| LogRecord::Group {
            group: group.clone(),
            value: Some(record.clone()),
        });
        let offsets = self.offsets.iter().flat_map(|(group, offsets)| {
            offsets
                .iter()
                .map(move |((topic, partition), value)| LogRecord::Offset {
                    group: group.clone(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: Some(value.clone()),
                })
        });
        groups.chain(offsets).collect()
    }

    /// The log now starts with a snapshot of this store.
    pub fn mark_snapshot(&mut self) {
        self.records_since_snapshot = 0;
    }

    /// Tombstones for everything of `group`: its membership record and every offset.
    pub fn tombstones_for_group(&self, group: &str) -> Vec<LogRecord> {
        let mut records = Vec::new();
        if self.groups.contains_key(group) {
            records.push(LogRecord::Group {
                group: group.to_string(),
                value: None,
            });
        }
        if let Some(offsets) = self.offsets.get(group) {
            records.extend(offsets.keys().map(|(topic, partition)| LogRecord::Offset {
                group: group.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: None,
            }));
        }
        records
    }

    /// Tombstones for the named offsets of `group` that exist.
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
            .filter(|(topic, partition)| self.committed(group, topic, *partition).is_some())
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
        assert_eq!(rebuilt.offsets, store.offsets);
        assert_eq!(rebuilt.groups, store.groups);
        assert_eq!(store.snapshot().len() as u64, store.live_records());
    }

    #[test]
    fn a_snapshot_is_due_only_when_it_would_shrink_the_log() {
        let mut store = OffsetStore::default();
        for partition in 0..10 {
            store.apply(commit("g", "t", partition, 1));
        }
        assert!(
            !store.snapshot_due(5),
            "ten records for ten live keys: nothing to compact"
        );
        for partition in 0..10 {
            store.apply(commit("g", "t", partition, 2));
        }
        assert!(store.snapshot_due(5));
        assert!(!store.snapshot_due(50), "below the minimum");
        store.mark_snapshot();
        assert!(!store.snapshot_due(0));
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
}
