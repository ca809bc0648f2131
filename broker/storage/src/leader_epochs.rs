//! The leader epoch cache of one partition (Kafka's `leader-epoch-checkpoint`, KIP-101): for each
//! leader epoch that wrote to the log, the offset of its first batch. It answers
//! OffsetsForLeaderEpoch ([`LeaderEpochCache::end_offset_for`]), which a follower uses to find
//! where its log diverges from the leader's, and it is kept in the file `leader-epochs` beside the
//! segments, replaced durably (new file, fsync, rename, directory fsync) before the first batch of
//! a new epoch is appended, so that the file never lacks an epoch the durable log holds.
//!
//! The rules are pure (no I/O) and the file codec is here too; the log (`log::replica`) decides
//! when to write. An empty cache means every batch carries epoch 0 (a single broker, which never
//! writes the file): see [`LeaderEpochCache::end_offset_for`].

use std::path::{Path, PathBuf};

use crate::config::LEADER_EPOCH_ENTRIES_MAX;
use crate::error::StorageError;
use crate::file::{read_whole_file, replace_text_file_durably, FileSystem, ReplaceSteps};

pub const LEADER_EPOCHS_FILE_NAME: &str = "leader-epochs";
pub const LEADER_EPOCHS_TEMPORARY_FILE_NAME: &str = "leader-epochs.tmp";

/// First line of the file: the format and its version.
const HEADER_LINE: &str = "spate-leader-epochs 1";

const STEPS: ReplaceSteps = ReplaceSteps {
    create: "creating leader epochs",
    size: "sizing leader epochs",
    empty: "emptying leader epochs",
    write: "writing leader epochs",
    sync: "syncing leader epochs",
    rename: "renaming leader epochs",
    sync_directory: "syncing directory",
};

/// One leader epoch and the offset of its first batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EpochEntry {
    pub epoch: i32,
    pub start_offset: u64,
}

/// Epoch entries in increasing epoch and increasing start offset (both strictly), at most
/// [`LEADER_EPOCH_ENTRIES_MAX`]. Owned by the partition's log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaderEpochCache {
    entries: Vec<EpochEntry>,
}

impl LeaderEpochCache {
    pub fn entries(&self) -> &[EpochEntry] {
        &self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn latest(&self) -> Option<EpochEntry> {
        self.entries.last().copied()
    }

    /// The epoch of the batch at `offset` as the cache says: the entry with the largest start
    /// offset at or below it (0 when none: the implicit epoch of a single broker's log).
    pub fn epoch_at(&self, offset: u64) -> i32 {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.start_offset <= offset)
            .map_or(0, |entry| entry.epoch)
    }

    /// Records that `epoch` starts at `start_offset`, by Kafka's `assign` rule: nothing changes
    /// for the latest epoch at or after its start; otherwise every entry of an epoch at or above
    /// `epoch` or starting at or after `start_offset` is replaced (an epoch that never appended
    /// there, as a leader that wrote nothing). Callers refuse epochs older than the data already
    /// in the log before they get here. Returns whether the cache changed.
    pub fn assign(&mut self, epoch: i32, start_offset: u64) -> bool {
        if self
            .latest()
            .is_some_and(|latest| latest.epoch == epoch && start_offset >= latest.start_offset)
        {
            return false;
        }
        self.entries
            .retain(|entry| entry.epoch < epoch && entry.start_offset < start_offset);
        self.entries.push(EpochEntry {
            epoch,
            start_offset,
        });
        // The limit drops the oldest epochs: an OffsetsForLeaderEpoch for one of them then finds
        // nothing, and the asking follower truncates further back than needed, never wrongly.
        let excess = self.entries.len().saturating_sub(LEADER_EPOCH_ENTRIES_MAX);
        self.entries.drain(..excess);
        true
    }

    /// The latest epoch of an entry that starts before `offset`: batches at `offset` may not
    /// carry an older one.
    pub fn epoch_before(&self, offset: u64) -> Option<i32> {
        self.entries
            .iter()
            .rev()
            .find(|entry| entry.start_offset < offset)
            .map(|entry| entry.epoch)
    }

    /// Truncation to `end_offset`: removes the entries starting at or after it (Kafka's
    /// `truncateFromEnd`). Returns whether the cache changed.
    pub fn truncate_from_end(&mut self, end_offset: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset < end_offset);
        self.entries.len() != before
    }

    /// Entries past `log_end` (written before appends that were then lost or rolled back).
    /// An entry at exactly the log end is an epoch that has not appended yet and stays.
    pub fn drop_past(&mut self, log_end: u64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|entry| entry.start_offset <= log_end);
        self.entries.len() != before
    }

    /// The log start moved to `log_start_offset`: entries wholly before it go, and the newest of
    /// them moves up to start there (Kafka's `truncateFromStart`). In memory only: the same
    /// happens again at every open.
    pub fn truncate_from_start(&mut self, log_start_offset: u64) {
        let covering = self
            .entries
            .iter()
            .rposition(|entry| entry.start_offset <= log_start_offset);
        if let Some(index) = covering {
            self.entries.drain(..index);
            self.entries[0].start_offset = log_start_offset;
        }
    }

    /// OffsetsForLeaderEpoch (Kafka's `endOffsetFor`): for `requested`, the largest epoch at or
    /// below it that the cache knows and the offset where the next epoch starts, or `log_end`
    /// when it is the latest; for `requested` below the first epoch, `requested` itself and the
    /// first epoch's start (the asker's batches of that epoch are not in this log: it truncates
    /// there). `None` above the latest epoch (the asker knows an epoch this log never saw) or
    /// for a negative one. An empty cache stands for epoch `current_epoch` (0 on a single
    /// broker) from the log start: the asker gets `(current_epoch, log_end)` for exactly that
    /// epoch.
    pub fn end_offset_for(
        &self,
        requested: i32,
        current_epoch: i32,
        log_end: u64,
    ) -> Option<(i32, u64)> {
        if requested < 0 {
            return None;
        }
        let Some(latest) = self.latest() else {
            return (requested == current_epoch).then_some((current_epoch, log_end));
        };
        if requested >= latest.epoch {
            return (requested == latest.epoch).then_some((latest.epoch, log_end));
        }
        let next = self
            .entries
            .iter()
            .position(|entry| entry.epoch > requested)?;
        let epoch = next
            .checked_sub(1)
            .map_or(requested, |floor| self.entries[floor].epoch);
        Some((epoch, self.entries[next].start_offset))
    }

    /// The file's text: the header line, one `epoch start_offset` line per entry, and a line
    /// `crc32c <hex>` over every byte before it.
    pub fn encode(&self) -> String {
        let mut text = format!("{HEADER_LINE}\n");
        for entry in &self.entries {
            text.push_str(&format!("{} {}\n", entry.epoch, entry.start_offset));
        }
        let crc = crc32c::crc32c(text.as_bytes());
        text.push_str(&format!("crc32c {crc:08x}\n"));
        text
    }

    /// Parses [`LeaderEpochCache::encode`]'s text; a reason when anything is off.
    pub fn decode(bytes: &[u8]) -> Result<Self, String> {
        let text = std::str::from_utf8(bytes).map_err(|error| format!("not UTF-8: {error}"))?;
        let body_end = text
            .trim_end_matches('\n')
            .rfind('\n')
            .map(|at| at + 1)
            .ok_or("no CRC line")?;
        let (body, crc_line) = text.split_at(body_end);
        let claimed = crc_line
            .trim_end()
            .strip_prefix("crc32c ")
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .ok_or_else(|| format!("bad CRC line {crc_line:?}"))?;
        let actual = crc32c::crc32c(body.as_bytes());
        if claimed != actual {
            return Err(format!("CRC {claimed:08x}, bytes give {actual:08x}"));
        }
        let mut lines = body.lines();
        if lines.next() != Some(HEADER_LINE) {
            return Err(format!("first line is not {HEADER_LINE:?}"));
        }
        let mut cache = Self::default();
        for line in lines {
            let mut fields = line.split(' ');
            let (Some(epoch), Some(start), None) = (fields.next(), fields.next(), fields.next())
            else {
                return Err(format!("bad entry line {line:?}"));
            };
            let epoch: i32 = epoch
                .parse()
                .map_err(|_| format!("bad epoch in {line:?}"))?;
            let start_offset: u64 = start
                .parse()
                .map_err(|_| format!("bad start offset in {line:?}"))?;
            let increasing = cache
                .latest()
                .is_none_or(|latest| epoch > latest.epoch && start_offset > latest.start_offset);
            if epoch < 0 || !increasing {
                return Err(format!("entry {line:?} does not follow the one before"));
            }
            cache.entries.push(EpochEntry {
                epoch,
                start_offset,
            });
        }
        if cache.entries.len() > LEADER_EPOCH_ENTRIES_MAX {
            return Err(format!("{} entries", cache.entries.len()));
        }
        Ok(cache)
    }
}

pub fn leader_epochs_path(directory: &Path) -> PathBuf {
    directory.join(LEADER_EPOCHS_FILE_NAME)
}

/// Reads the cache of the partition in `directory`: empty when the file does not exist (a single
/// broker's partition), `Corrupt` when it does not decode (the partition is then offline: its
/// answers to followers could be wrong).
pub async fn read_leader_epochs<F: FileSystem>(
    file_system: &F,
    directory: &Path,
) -> Result<LeaderEpochCache, StorageError> {
    let path = leader_epochs_path(directory);
    match read_whole_file(file_system, &path).await {
        Ok(None) => Ok(LeaderEpochCache::default()),
        Ok(Some(bytes)) => LeaderEpochCache::decode(&bytes)
            .map_err(|reason| StorageError::corrupt(&path, 0, reason)),
        Err(error) => Err(StorageError::io(
            "reading leader epochs",
            &path,
            None,
            error,
        )),
    }
}

/// Replaces the file with `cache`, durably (a crash leaves the old file or this one).
pub async fn write_leader_epochs<F: FileSystem>(
    file_system: &F,
    directory: &Path,
    cache: &LeaderEpochCache,
) -> Result<(), StorageError> {
    replace_text_file_durably(
        file_system,
        directory,
        &directory.join(LEADER_EPOCHS_TEMPORARY_FILE_NAME),
        &leader_epochs_path(directory),
        cache.encode().as_bytes(),
        &STEPS,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, u64)]) -> LeaderEpochCache {
        let mut cache = LeaderEpochCache::default();
        for (epoch, start) in entries {
            assert!(cache.assign(*epoch, *start));
        }
        cache
    }

    #[test]
    fn end_offset_is_the_next_epochs_start_or_the_log_end_for_the_latest() {
        let cache = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert_eq!(cache.end_offset_for(1, 6, 40), Some((1, 10)));
        assert_eq!(cache.end_offset_for(3, 6, 40), Some((3, 25)));
        assert_eq!(cache.end_offset_for(6, 6, 40), Some((6, 40)));
    }

    #[test]
    fn an_unknown_epoch_between_two_answers_with_the_largest_epoch_below_it() {
        let cache = cache(&[(1, 0), (3, 10), (6, 25)]);
        assert_eq!(cache.end_offset_for(2, 6, 40), Some((1, 10)));
        assert_eq!(cache.end_offset_for(5, 6, 40), Some((3, 25)));
    }

    #[test]
    fn below_the_first_epoch_the_answer_is_the_first_start_and_above_the_latest_none() {
        let cache = cache(&[(2, 5), (4, 10)]);
        assert_eq!(cache.end_offset_for(1, 4, 40), Some((1, 5)));
        assert_eq!(cache.end_offset_for(5, 4, 40), None);
        assert_eq!(cache.end_offset_for(-1, 4, 40), None);
    }

    #[test]
    fn an_empty_cache_answers_only_for_the_current_epoch() {
        let cache = LeaderEpochCache::default();
        assert_eq!(cache.end_offset_for(0, 0, 7), Some((0, 7)));
        assert_eq!(cache.end_offset_for(1, 0, 7), None);
    }

    #[test]
    fn assign_ignores_the_latest_epoch_again_and_replaces_entries_at_or_after_the_new_start() {
        let mut cache = cache(&[(1, 0), (2, 10)]);
        assert!(!cache.assign(2, 20));
        assert_eq!(cache.epoch_before(10), Some(1));
        assert_eq!(cache.epoch_before(11), Some(2));
        // Epoch 2 never appended past 10: epoch 3 starting at 10 replaces it.
        assert!(cache.assign(3, 10));
        assert_eq!(
            cache.entries(),
            &[
                EpochEntry {
                    epoch: 1,
                    start_offset: 0
                },
                EpochEntry {
                    epoch: 3,
                    start_offset: 10
                }
            ]
        );
    }

    #[test]
    fn truncation_from_the_end_drops_entries_at_or_after_the_offset() {
        let mut cache = cache(&[(1, 0), (2, 10), (3, 20)]);
        assert!(cache.truncate_from_end(20));
        assert_eq!(cache.latest().map(|entry| entry.epoch), Some(2));
        assert!(!cache.truncate_from_end(20));
        assert!(cache.truncate_from_end(5));
        assert_eq!(cache.latest().map(|entry| entry.epoch), Some(1));
    }

    #[test]
    fn truncation_from_the_start_keeps_the_epoch_covering_the_log_start() {
        let mut cache = cache(&[(1, 0), (2, 10), (3, 20)]);
        cache.truncate_from_start(15);
        assert_eq!(
            cache.entries()[0],
            EpochEntry {
                epoch: 2,
                start_offset: 15
            }
        );
        assert_eq!(cache.entries().len(), 2);
        assert_eq!(cache.epoch_at(16), 2);
        assert_eq!(cache.epoch_at(20), 3);
    }

    #[test]
    fn encoded_cache_decodes_to_the_same_entries_and_damage_is_refused() {
        let cache = cache(&[(0, 0), (7, 123), (9, 4000)]);
        let text = cache.encode();
        assert_eq!(LeaderEpochCache::decode(text.as_bytes()), Ok(cache.clone()));
        let damaged = text.replace("123", "124");
        assert!(LeaderEpochCache::decode(damaged.as_bytes()).is_err());
        let cut = &text[..text.len() - 3];
        assert!(LeaderEpochCache::decode(cut.as_bytes()).is_err());
        let empty = LeaderEpochCache::default();
        assert_eq!(
            LeaderEpochCache::decode(empty.encode().as_bytes()),
            Ok(empty)
        );
    }

    #[test]
    fn the_oldest_entries_go_past_the_limit() {
        let mut cache = LeaderEpochCache::default();
        for epoch in 0..(LEADER_EPOCH_ENTRIES_MAX as i32 + 3) {
            cache.assign(epoch, epoch as u64 * 2);
        }
        assert_eq!(cache.entries().len(), LEADER_EPOCH_ENTRIES_MAX);
        assert_eq!(cache.entries()[0].epoch, 3);
    }
}
