//! State stores: a key-value store, a window store and a session store, each a trait over bytes
//! with an in-memory implementation. Stores hold bytes, not typed values, so that a store can be
//! written to a changelog topic, restored, or moved onto an embedded engine without its users
//! changing; the typed views are the serdes the topology registered with each store.
//!
//! A store belongs to one task and lives as long as it; only that task's thread touches it.

use std::collections::BTreeMap;
use std::ops::Bound;

/// A sorted map from key bytes to value bytes.
pub trait KeyValueStore: Send {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Option<&[u8]>;
    /// Sets `key` to `value`.
    fn put(&mut self, key: &[u8], value: Vec<u8>);
    /// Removes `key`, answering what it held.
    fn delete(&mut self, key: &[u8]) -> Option<Vec<u8>>;
    /// Every entry in key order.
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// The entries whose keys start with `prefix`, in key order.
    fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)>;
    /// How many keys the store holds.
    fn approximate_entries(&self) -> usize;
    /// Makes every change so far durable; the task calls it at each commit, before writing its
    /// checkpoint. Stores in memory have nothing to do.
    fn flush(&mut self) -> Result<(), crate::persistent_store::StoreError> {
        Ok(())
    }
}

/// [`KeyValueStore`] in a `BTreeMap`.
#[derive(Debug, Default)]
pub struct InMemoryKeyValueStore {
    entries: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KeyValueStore for InMemoryKeyValueStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.entries.get(key).map(Vec::as_slice)
    }
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.entries.insert(key.to_vec(), value);
    }
    fn delete(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.entries.remove(key)
    }
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .iter()
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
    fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.entries
            .range(prefix.to_vec()..)
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect()
    }
    fn approximate_entries(&self) -> usize {
        self.entries.len()
    }
}

/// Values per key and window start, kept for a retention period of stream time.
pub trait WindowStore: Send {
    /// The value of `key` in the window starting at `window_start_ms`.
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Option<&[u8]>;
    /// Sets (`Some`) or removes (`None`) the value of `key` in the window at `window_start_ms`.
    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<Vec<u8>>);
    /// `key`'s windows starting in `[from_start_ms, to_start_ms]`, in start order.
    fn fetch_range(&self, key: &[u8], from_start_ms: i64, to_start_ms: i64) -> Vec<(i64, Vec<u8>)>;
    /// Every `(key, window start, value)`, in start order, then key order.
    fn all(&self) -> Vec<(Vec<u8>, i64, Vec<u8>)>;
    /// Drops every window that starts before `window_start_ms` (retention).
    fn expire_before(&mut self, window_start_ms: i64);
    /// Makes every change so far durable, as [`KeyValueStore::flush`].
    fn flush(&mut self) -> Result<(), crate::persistent_store::StoreError> {
        Ok(())
    }
}

/// [`WindowStore`] as a map of window start to the keys of that window: expiry drops whole
/// starts at once, as a segmented on-disk store drops whole segments.
#[derive(Debug, Default)]
pub struct InMemoryWindowStore {
    windows: BTreeMap<i64, BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl WindowStore for InMemoryWindowStore {
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Option<&[u8]> {
        self.windows
            .get(&window_start_ms)?
            .get(key)
            .map(Vec::as_slice)
    }
    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<Vec<u8>>) {
        match value {
            Some(value) => {
                self.windows
                    .entry(window_start_ms)
                    .or_default()
                    .insert(key.to_vec(), value);
            }
            None => {
                if let Some(keys) = self.windows.get_mut(&window_start_ms) {
                    keys.remove(key);
                    if keys.is_empty() {
                        self.windows.remove(&window_start_ms);
                    }
                }
            }
        }
    }
    fn fetch_range(&self, key: &[u8], from_start_ms: i64, to_start_ms: i64) -> Vec<(i64, Vec<u8>)> {
        if from_start_ms > to_start_ms {
            return Vec::new();
        }
        self.windows
            .range(from_start_ms..=to_start_ms)
            .filter_map(|(start, keys)| keys.get(key).map(|value| (*start, value.clone())))
            .collect()
    }
    fn all(&self) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        self.windows
            .iter()
            .flat_map(|(start, keys)| {
                keys.iter()
                    .map(|(key, value)| (key.clone(), *start, value.clone()))
            })
            .collect()
    }
    fn expire_before(&mut self, window_start_ms: i64) {
        self.windows = self.windows.split_off(&window_start_ms);
    }
}

/// Session aggregates per key and session `[start, end]`, kept for a retention period.
pub trait SessionStore: Send {
    /// `key`'s sessions that end at or after `earliest_end_ms` and start at or before
    /// `latest_start_ms`, as `(start, end, value)` in end order.
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end_ms: i64,
        latest_start_ms: i64,
    ) -> Vec<(i64, i64, Vec<u8>)>;
    /// Sets (`Some`) or removes (`None`) `key`'s session `[start_ms, end_ms]`.
    fn put(&mut self, key: &[u8], start_ms: i64, end_ms: i64, value: Option<Vec<u8>>);
    /// Every `(key, start, end, value)` in key order, then end order.
    fn all(&self) -> Vec<(Vec<u8>, i64, i64, Vec<u8>)>;
    /// Drops every session that ends before `end_ms` (retention).
    fn expire_before(&mut self, end_ms: i64);
}

/// [`SessionStore`] in two maps: by key (then end, start) for lookups, by end for expiry.
#[derive(Debug, Default)]
pub struct InMemorySessionStore {
    sessions: BTreeMap<(Vec<u8>, i64, i64), Vec<u8>>,
    by_end: BTreeMap<(i64, Vec<u8>, i64), ()>,
}

impl SessionStore for InMemorySessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end_ms: i64,
        latest_start_ms: i64,
    ) -> Vec<(i64, i64, Vec<u8>)> {
        let from = (key.to_vec(), earliest_end_ms, i64::MIN);
        let to = (key.to_vec(), i64::MAX, i64::MAX);
        self.sessions
            .range((Bound::Included(from), Bound::Included(to)))
            .filter(|((_, end, start), _)| *start <= latest_start_ms && *end >= earliest_end_ms)
            .map(|((_, end, start), value)| (*start, *end, value.clone()))
            .collect()
    }
    fn put(&mut self, key: &[u8], start_ms: i64, end_ms: i64, value: Option<Vec<u8>>) {
        assert!(start_ms <= end_ms, "a session ends at or after its start");
        let entry = (key.to_vec(), end_ms, start_ms);
        let index = (end_ms, key.to_vec(), start_ms);
        match value {
            Some(value) => {
                self.sessions.insert(entry, value);
                self.by_end.insert(index, ());
            }
            None => {
                self.sessions.remove(&entry);
                self.by_end.remove(&index);
            }
        }
    }
    fn all(&self) -> Vec<(Vec<u8>, i64, i64, Vec<u8>)> {
        self.sessions
            .iter()
            .map(|((key, end, start), value)| (key.clone(), *start, *end, value.clone()))
            .collect()
    }
    fn expire_before(&mut self, end_ms: i64) {
        let kept = self.by_end.split_off(&(end_ms, Vec::new(), i64::MIN));
        for (end, key, start) in std::mem::replace(&mut self.by_end, kept).into_keys() {
            self.sessions.remove(&(key, end, start));
        }
        debug_assert_eq!(self.sessions.len(), self.by_end.len());
    }
}

/// One store of a task, of any kind.
pub(crate) enum StateStore {
    KeyValue(Box<dyn KeyValueStore>),
    Window(Box<dyn WindowStore>),
    Session(Box<dyn SessionStore>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_prefix_scans_stop_at_the_first_key_without_the_prefix() {
        let mut store = InMemoryKeyValueStore::default();
        for key in [&b"a"[..], b"ab", b"abc", b"b", b"aa"] {
            store.put(key, key.to_vec());
        }
        let keys: Vec<Vec<u8>> = store
            .prefix(b"ab")
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        assert_eq!(keys, vec![b"ab".to_vec(), b"abc".to_vec()]);
        assert_eq!(store.prefix(b"").len(), 5);
        assert!(store.prefix(b"c").is_empty());
    }

    #[test]
    fn window_store_expires_whole_starts_and_ranges_by_start() {
        let mut store = InMemoryWindowStore::default();
        store.put(b"a", 0, Some(b"0".to_vec()));
        store.put(b"a", 10, Some(b"10".to_vec()));
        store.put(b"b", 10, Some(b"b10".to_vec()));
        store.put(b"a", 20, Some(b"20".to_vec()));
        assert_eq!(
            store.fetch_range(b"a", 5, 20),
            vec![(10, b"10".to_vec()), (20, b"20".to_vec())]
        );
        store.expire_before(10);
        assert_eq!(store.fetch(b"a", 0), None);
        assert_eq!(store.fetch(b"b", 10), Some(&b"b10"[..]));
        store.put(b"b", 10, None);
        assert_eq!(store.all().len(), 2);
    }

    #[test]
    fn session_store_finds_overlapping_sessions_and_expires_by_end() {
        let mut store = InMemorySessionStore::default();
        store.put(b"k", 0, 5, Some(b"x".to_vec()));
        store.put(b"k", 20, 30, Some(b"y".to_vec()));
        store.put(b"j", 0, 100, Some(b"z".to_vec()));
        assert_eq!(store.find_sessions(b"k", 4, 21).len(), 2);
        assert_eq!(
            store.find_sessions(b"k", 6, 21),
            vec![(20, 30, b"y".to_vec())]
        );
        assert_eq!(
            store.find_sessions(b"k", 0, 19),
            vec![(0, 5, b"x".to_vec())]
        );
        store.expire_before(30);
        assert_eq!(store.all().len(), 2);
        assert!(store.find_sessions(b"k", 0, 19).is_empty());
    }
}
