//! Changelogs: every write to a task's store, as a record of the store's compacted changelog
//! topic (`<application id>-<store>-changelog`, partition = the task's partition), and the
//! inverse, applying such a record to a store while restoring it. The logging wrappers only
//! collect the records; the runtime sends them through its producer with the task's output, so
//! a store's change is acknowledged before the input offsets that caused it are committed.
//!
//! Changelog keys: a key-value store's key as is; a window store's key followed by the window
//! start (8 bytes, big endian); a session store's key followed by the session's end and start
//! (8 bytes each, big endian), as Kafka Streams lays them out. A removal is a tombstone (a null
//! value), so compaction keeps one record per live entry. Retention expiry is not logged (Kafka
//! Streams neither): a restored window store may hold expired windows until the next expiry.

use std::sync::{Arc, Mutex, PoisonError};

use crate::store::{KeyValueStore, SessionStore, StateStore, WindowStore};

/// One store write, bound for the store's changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangelogRecord {
    /// The store written.
    pub store: String,
    /// The changelog key (see the module documentation).
    pub key: Vec<u8>,
    /// The new value; `None` for a removal.
    pub value: Option<Vec<u8>>,
}

/// The changelog topic of `store` in application `application_id`.
pub fn changelog_topic(application_id: &str, store: &str) -> String {
    format!("{application_id}-{store}-changelog")
}

/// Where a task's stores put their changes until the runtime takes them. Shared by the task's
/// logging wrappers; only the task's thread touches it, so the lock is never contended.
pub(crate) type ChangeSink = Arc<Mutex<Vec<ChangelogRecord>>>;

pub(crate) fn drain(sink: &ChangeSink) -> Vec<ChangelogRecord> {
    std::mem::take(&mut *sink.lock().unwrap_or_else(PoisonError::into_inner))
}

fn push(sink: &ChangeSink, store: &str, key: Vec<u8>, value: Option<Vec<u8>>) {
    sink.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(ChangelogRecord {
            store: store.to_string(),
            key,
            value,
        });
}

fn window_key(key: &[u8], window_start_ms: i64) -> Vec<u8> {
    let mut logged = Vec::with_capacity(key.len() + 8);
    logged.extend_from_slice(key);
    logged.extend_from_slice(&window_start_ms.to_be_bytes());
    logged
}

fn session_key(key: &[u8], start_ms: i64, end_ms: i64) -> Vec<u8> {
    let mut logged = Vec::with_capacity(key.len() + 16);
    logged.extend_from_slice(key);
    logged.extend_from_slice(&end_ms.to_be_bytes());
    logged.extend_from_slice(&start_ms.to_be_bytes());
    logged
}

/// Splits the last 8 bytes of `logged` off as a big-endian time.
fn split_time(logged: &[u8]) -> Option<(&[u8], i64)> {
    let split = logged.len().checked_sub(8)?;
    let (key, time) = logged.split_at(split);
    Some((key, i64::from_be_bytes(time.try_into().ok()?)))
}

/// A changelog key that does not have the layout of its store's kind (a record written by
/// something else than this library).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a changelog key of {length} bytes is too short for a {kind} store")]
pub struct MalformedChangelogKey {
    /// The key's length.
    pub length: usize,
    /// "window" or "session".
    pub kind: &'static str,
}

/// Applies one changelog record to `store`, directly (not logged again).
pub(crate) fn restore(
    store: &mut StateStore,
    key: &[u8],
    value: Option<&[u8]>,
) -> Result<(), MalformedChangelogKey> {
    match store {
        StateStore::KeyValue(store) => match value {
            Some(value) => store.put(key, value.to_vec()),
            None => {
                store.delete(key);
            }
        },
        StateStore::Window(store) => {
            let (key, start_ms) = split_time(key).ok_or(MalformedChangelogKey {
                length: key.len(),
                kind: "window",
            })?;
            store.put(key, start_ms, value.map(<[u8]>::to_vec));
        }
        StateStore::Session(store) => {
            let malformed = MalformedChangelogKey {
                length: key.len(),
                kind: "session",
            };
            let (rest, start_ms) = split_time(key).ok_or(malformed.clone())?;
            let (key, end_ms) = split_time(rest).ok_or(malformed.clone())?;
            if start_ms > end_ms {
                return Err(malformed);
            }
            store.put(key, start_ms, end_ms, value.map(<[u8]>::to_vec));
        }
    }
    Ok(())
}

/// Wraps `store` so that each of its writes is also collected in `sink` under `name`.
pub(crate) fn logged(name: &str, store: StateStore, sink: &ChangeSink) -> StateStore {
    let (name, sink) = (name.to_string(), Arc::clone(sink));
    match store {
        StateStore::KeyValue(inner) => {
            StateStore::KeyValue(Box::new(LoggedKeyValueStore { inner, name, sink }))
        }
        StateStore::Window(inner) => {
            StateStore::Window(Box::new(LoggedWindowStore { inner, name, sink }))
        }
        StateStore::Session(inner) => {
            StateStore::Session(Box::new(LoggedSessionStore { inner, name, sink }))
        }
    }
}

struct LoggedKeyValueStore {
    inner: Box<dyn KeyValueStore>,
    name: String,
    sink: ChangeSink,
}

impl KeyValueStore for LoggedKeyValueStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.inner.get(key)
    }
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        push(&self.sink, &self.name, key.to_vec(), Some(value.clone()));
        self.inner.put(key, value);
    }
    fn delete(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        let removed = self.inner.delete(key);
        if removed.is_some() {
            push(&self.sink, &self.name, key.to_vec(), None);
        }
        removed
    }
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner.all()
    }
    fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.inner.prefix(prefix)
    }
    fn approximate_entries(&self) -> usize {
        self.inner.approximate_entries()
    }
}

struct LoggedWindowStore {
    inner: Box<dyn WindowStore>,
    name: String,
    sink: ChangeSink,
}

impl WindowStore for LoggedWindowStore {
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Option<&[u8]> {
        self.inner.fetch(key, window_start_ms)
    }
    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<Vec<u8>>) {
        let logged = window_key(key, window_start_ms);
        push(&self.sink, &self.name, logged, value.clone());
        self.inner.put(key, window_start_ms, value);
    }
    fn fetch_range(&self, key: &[u8], from_start_ms: i64, to_start_ms: i64) -> Vec<(i64, Vec<u8>)> {
        self.inner.fetch_range(key, from_start_ms, to_start_ms)
    }
    fn all(&self) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        self.inner.all()
    }
    fn expire_before(&mut self, window_start_ms: i64) {
        self.inner.expire_before(window_start_ms);
    }
}

struct LoggedSessionStore {
    inner: Box<dyn SessionStore>,
    name: String,
    sink: ChangeSink,
}

impl SessionStore for LoggedSessionStore {
    fn find_sessions(
        &self,
        key: &[u8],
        earliest_end_ms: i64,
        latest_start_ms: i64,
    ) -> Vec<(i64, i64, Vec<u8>)> {
        self.inner
            .find_sessions(key, earliest_end_ms, latest_start_ms)
    }
    fn put(&mut self, key: &[u8], start_ms: i64, end_ms: i64, value: Option<Vec<u8>>) {
        let logged = session_key(key, start_ms, end_ms);
        push(&self.sink, &self.name, logged, value.clone());
        self.inner.put(key, start_ms, end_ms, value);
    }
    fn all(&self) -> Vec<(Vec<u8>, i64, i64, Vec<u8>)> {
        self.inner.all()
    }
    fn expire_before(&mut self, end_ms: i64) {
        self.inner.expire_before(end_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{InMemoryKeyValueStore, InMemorySessionStore, InMemoryWindowStore};

    /// Writes through the logging wrappers, then restores fresh stores from what they logged:
    /// the restored stores equal the originals.
    #[test]
    fn restoring_what_the_wrappers_logged_rebuilds_every_kind_of_store() {
        let sink = ChangeSink::default();
        let mut key_value = logged(
            "kv",
            StateStore::KeyValue(Box::<InMemoryKeyValueStore>::default()),
            &sink,
        );
        let mut window = logged(
            "w",
            StateStore::Window(Box::<InMemoryWindowStore>::default()),
            &sink,
        );
        let mut session = logged(
            "s",
            StateStore::Session(Box::<InMemorySessionStore>::default()),
            &sink,
        );
        let (StateStore::KeyValue(kv), StateStore::Window(w), StateStore::Session(s)) =
            (&mut key_value, &mut window, &mut session)
        else {
            unreachable!("logged keeps the kind")
        };
        kv.put(b"a", b"1".to_vec());
        kv.put(b"b", b"2".to_vec());
        kv.delete(b"a");
        kv.delete(b"never there");
        w.put(b"k", -10, Some(b"x".to_vec()));
        w.put(b"k", 20, Some(b"y".to_vec()));
        w.put(b"k", 20, None);
        s.put(b"k", 0, 5, Some(b"p".to_vec()));
        s.put(b"k", 7, 9, Some(b"q".to_vec()));
        s.put(b"k", 0, 5, None);
        let records = drain(&sink);
        assert_eq!(
            records.len(),
            9,
            "the removal of a missing key is not logged"
        );
        assert!(drain(&sink).is_empty());
        let mut restored = [
            StateStore::KeyValue(Box::<InMemoryKeyValueStore>::default()),
            StateStore::Window(Box::<InMemoryWindowStore>::default()),
            StateStore::Session(Box::<InMemorySessionStore>::default()),
        ];
        for record in &records {
            let index = ["kv", "w", "s"]
                .iter()
                .position(|name| *name == record.store)
                .unwrap();
            restore(&mut restored[index], &record.key, record.value.as_deref()).unwrap();
        }
        let [StateStore::KeyValue(rkv), StateStore::Window(rw), StateStore::Session(rs)] =
            &restored
        else {
            unreachable!()
        };
        assert_eq!(rkv.all(), kv.all());
        assert_eq!(rkv.all(), vec![(b"b".to_vec(), b"2".to_vec())]);
        assert_eq!(rw.all(), w.all());
        assert_eq!(rw.all(), vec![(b"k".to_vec(), -10, b"x".to_vec())]);
        assert_eq!(rs.all(), s.all());
        assert_eq!(rs.all(), vec![(b"k".to_vec(), 7, 9, b"q".to_vec())]);
    }

    #[test]
    fn a_changelog_key_too_short_for_its_store_is_an_error() {
        let mut window = StateStore::Window(Box::<InMemoryWindowStore>::default());
        let mut session = StateStore::Session(Box::<InMemorySessionStore>::default());
        assert!(restore(&mut window, b"short", Some(b"v")).is_err());
        assert!(restore(&mut session, &[0; 12], Some(b"v")).is_err());
        // An end before the start is not a session.
        let key = session_key(b"k", 9, 0);
        assert!(restore(&mut session, &key, Some(b"v")).is_err());
    }
}
