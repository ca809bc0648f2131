//! Persistent state stores on `redb`: a [`KeyValueStore`] and a [`WindowStore`], each one redb
//! database file (`store.redb`) in its store directory (see [`crate::state_directory`]).
//!
//! Writes go to an in-memory image at once and to redb at [`KeyValueStore::flush`], in one
//! durable write transaction (one fsync), which the task calls at each commit before writing its
//! checkpoint. So between commits a store costs what an in-memory one does, and a crash loses
//! only what the changelog after the checkpoint restores anyway.
//!
//! The stores' traits lend values out by reference (`get(&self) -> Option<&[u8]>`), so each
//! store also keeps its whole image in memory, loaded at open: the engine gives durability and
//! restarts that do not replay the changelog, not state larger than memory. That would need the
//! traits to answer owned values (a cache in front of redb), a change to every operator.
//!
//! Session stores stay in memory for now.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{ReadableTable, TableDefinition};

use crate::state_directory::{StateDirectoryError, TaskStateDirectory};
use crate::store::{InMemoryKeyValueStore, InMemoryWindowStore, KeyValueStore, WindowStore};
use crate::store::{InMemorySessionStore, StateStore};
use crate::topology::{StoreKind, StoreSpec};

/// The engine file's name inside a store's directory.
pub const STORE_FILE_NAME: &str = "store.redb";
const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("entries");

/// A store's engine failed.
#[derive(Debug, thiserror::Error)]
#[error("state store {path}: cannot {action}: {source}")]
pub struct StoreError {
    /// What was being done.
    pub action: &'static str,
    /// The engine file.
    pub path: PathBuf,
    /// What redb said (boxed: redb's error is large, and this one travels up every call).
    pub source: Box<redb::Error>,
}

/// A store's entries as the engine holds them, in key order.
type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// One redb file with one table of byte keys and values, and the changes not yet written.
struct Engine {
    database: redb::Database,
    path: PathBuf,
    /// Key to its new value (`None`: delete), applied in key order at flush.
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl Engine {
    fn open(store_directory: &Path) -> Result<(Self, Entries), StoreError> {
        let path = store_directory.join(STORE_FILE_NAME);
        let failed = |action| {
            let path = path.clone();
            move |source: redb::Error| StoreError {
                action,
                path,
                source: Box::new(source),
            }
        };
        let database =
            redb::Database::create(&path).map_err(|error| failed("open")(error.into()))?;
        let entries = load(&database).map_err(failed("load"))?;
        let engine = Self {
            database,
            path,
            pending: BTreeMap::new(),
        };
        Ok((engine, entries))
    }

    /// Writes the pending changes, after removing every key below `remove_below` (if given),
    /// in one durable transaction.
    fn flush(&mut self, remove_below: Option<&[u8]>) -> Result<(), StoreError> {
        if self.pending.is_empty() && remove_below.is_none() {
            return Ok(());
        }
        self.write(remove_below).map_err(|source| StoreError {
            action: "flush",
            path: self.path.clone(),
            source: Box::new(source),
        })?;
        self.pending.clear();
        Ok(())
    }

    // The large error is boxed once, in `StoreError`, where it leaves this module.
    #[allow(clippy::result_large_err)]
    fn write(&self, remove_below: Option<&[u8]>) -> Result<(), redb::Error> {
        let transaction = self.database.begin_write()?;
        {
            let mut table = transaction.open_table(TABLE)?;
            if let Some(bound) = remove_below {
                table.retain_in::<&[u8], _>(..bound, |_, _| false)?;
            }
            for (key, value) in &self.pending {
                match value {
                    Some(value) => table.insert(key.as_slice(), value.as_slice())?,
                    None => table.remove(key.as_slice())?,
                };
            }
        }
        // redb's default durability: the commit returns once the data is synced to disk.
        transaction.commit()?;
        Ok(())
    }
}

// The large error is boxed once, in `StoreError`, where it leaves this module.
#[allow(clippy::result_large_err)]
fn load(database: &redb::Database) -> Result<Entries, redb::Error> {
    let transaction = database.begin_read()?;
    let table = match transaction.open_table(TABLE) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(error) => return Err(error.into()),
    };
    let mut entries = Vec::new();
    for entry in table.iter()? {
        let (key, value) = entry?;
        entries.push((key.value().to_vec(), value.value().to_vec()));
    }
    Ok(entries)
}

/// A [`KeyValueStore`] kept in redb, its image in memory.
pub struct PersistentKeyValueStore {
    engine: Engine,
    image: InMemoryKeyValueStore,
}

impl PersistentKeyValueStore {
    /// Opens (creating if needed) the store kept in `store_directory`, loading what its last
    /// flush wrote.
    pub fn open(store_directory: &Path) -> Result<Self, StoreError> {
        let (engine, entries) = Engine::open(store_directory)?;
        let mut image = InMemoryKeyValueStore::default();
        for (key, value) in entries {
            image.put(&key, value);
        }
        Ok(Self { engine, image })
    }
}

impl KeyValueStore for PersistentKeyValueStore {
    fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.image.get(key)
    }
    fn put(&mut self, key: &[u8], value: Vec<u8>) {
        self.engine
            .pending
            .insert(key.to_vec(), Some(value.clone()));
        self.image.put(key, value);
    }
    fn delete(&mut self, key: &[u8]) -> Option<Vec<u8>> {
        self.engine.pending.insert(key.to_vec(), None);
        self.image.delete(key)
    }
    fn all(&self) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.image.all()
    }
    fn prefix(&self, prefix: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
        self.image.prefix(prefix)
    }
    fn approximate_entries(&self) -> usize {
        self.image.approximate_entries()
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        self.engine.flush(None)
    }
}

/// A [`WindowStore`] kept in redb, its image in memory. On disk a key is the window start (big
/// endian, sign bit flipped, so byte order is time order) then the record key, so retention
/// removes one range at the front.
pub struct PersistentWindowStore {
    engine: Engine,
    image: InMemoryWindowStore,
    /// The largest `expire_before` since the last flush.
    expire_before_ms: Option<i64>,
}

const WINDOW_START_BYTES: usize = 8;

fn window_start_bytes(window_start_ms: i64) -> [u8; WINDOW_START_BYTES] {
    ((window_start_ms as u64) ^ (1 << 63)).to_be_bytes()
}

fn window_key(key: &[u8], window_start_ms: i64) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(WINDOW_START_BYTES + key.len());
    bytes.extend_from_slice(&window_start_bytes(window_start_ms));
    bytes.extend_from_slice(key);
    bytes
}

impl PersistentWindowStore {
    /// Opens (creating if needed) the store kept in `store_directory`, loading what its last
    /// flush wrote.
    pub fn open(store_directory: &Path) -> Result<Self, StoreError> {
        let (engine, entries) = Engine::open(store_directory)?;
        let mut image = InMemoryWindowStore::default();
        for (bytes, value) in entries {
            assert!(
                bytes.len() >= WINDOW_START_BYTES,
                "a window key starts with its start"
            );
            let (start, key) = bytes.split_at(WINDOW_START_BYTES);
            let start = u64::from_be_bytes(start.try_into().expect("eight bytes")) ^ (1 << 63);
            image.put(key, start as i64, Some(value));
        }
        Ok(Self {
            engine,
            image,
            expire_before_ms: None,
        })
    }
}

impl WindowStore for PersistentWindowStore {
    fn fetch(&self, key: &[u8], window_start_ms: i64) -> Option<&[u8]> {
        self.image.fetch(key, window_start_ms)
    }
    fn put(&mut self, key: &[u8], window_start_ms: i64, value: Option<Vec<u8>>) {
        self.engine
            .pending
            .insert(window_key(key, window_start_ms), value.clone());
        self.image.put(key, window_start_ms, value);
    }
    fn fetch_range(&self, key: &[u8], from_start_ms: i64, to_start_ms: i64) -> Vec<(i64, Vec<u8>)> {
        self.image.fetch_range(key, from_start_ms, to_start_ms)
    }
    fn all(&self) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        self.image.all()
    }
    fn expire_before(&mut self, window_start_ms: i64) {
        self.image.expire_before(window_start_ms);
        // Pending writes to expired windows are dropped with them; the flush removes the range
        // on disk first, then applies the writes made since.
        let bound = window_start_bytes(window_start_ms).to_vec();
        self.engine.pending = self.engine.pending.split_off(&bound);
        self.expire_before_ms = Some(
            self.expire_before_ms
                .map_or(window_start_ms, |before| before.max(window_start_ms)),
        );
    }
    fn flush(&mut self) -> Result<(), StoreError> {
        let bound = self.expire_before_ms.map(window_start_bytes);
        self.engine.flush(bound.as_ref().map(|bound| &bound[..]))?;
        self.expire_before_ms = None;
        Ok(())
    }
}

/// A task's store that could not be opened in its state directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenStoreError {
    /// The store's directory could not be made.
    #[error(transparent)]
    Directory(#[from] StateDirectoryError),
    /// The engine could not open or load the store.
    #[error(transparent)]
    Engine(#[from] StoreError),
}

/// Opens `spec`'s store in the task's state directory: key-value and window stores on redb,
/// session stores in memory. The hook for the runtime: a task whose application has a state
/// directory calls this where it would call `StoreSpec::instantiate`, then restores each store
/// from its changelog starting at the directory's checkpoint (or the beginning, when there is
/// none).
// Only the tests call it until the runtime opens tasks in state directories (the changelog
// work); it lives here so that work needs no change to this module.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn open_task_store(
    spec: &StoreSpec,
    directory: &TaskStateDirectory,
) -> Result<StateStore, OpenStoreError> {
    let store = match spec.kind {
        StoreKind::KeyValue => {
            let path = directory.store_path(&spec.name)?;
            StateStore::KeyValue(Box::new(PersistentKeyValueStore::open(&path)?))
        }
        StoreKind::Window => {
            let path = directory.store_path(&spec.name)?;
            StateStore::Window(Box::new(PersistentWindowStore::open(&path)?))
        }
        StoreKind::Session => StateStore::Session(Box::<InMemorySessionStore>::default()),
    };
    Ok(store)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn spec(name: &str, kind: StoreKind) -> StoreSpec {
        StoreSpec {
            name: name.to_string(),
            kind,
            serdes: Arc::new(()),
        }
    }

    #[test]
    fn task_stores_opened_in_a_state_directory_keep_flushed_data_across_reopens() {
        let state_dir = tempfile::tempdir().expect("temporary directory");
        let open = || TaskStateDirectory::open(state_dir.path(), "app", "0_0").expect("open");
        let mut directory = open();
        let counts = spec("counts", StoreKind::KeyValue);
        let windows = spec("windows", StoreKind::Window);
        match open_task_store(&counts, &directory).expect("open store") {
            StateStore::KeyValue(mut store) => {
                store.put(b"word", b"2".to_vec());
                store.flush().expect("flush");
            }
            _ => panic!("a key-value spec opens a key-value store"),
        }
        match open_task_store(&windows, &directory).expect("open store") {
            StateStore::Window(mut store) => {
                store.put(b"word", 60_000, Some(b"1".to_vec()));
                store.flush().expect("flush");
            }
            _ => panic!("a window spec opens a window store"),
        }
        let checkpoint = crate::state_directory::Checkpoint::default();
        directory.write_checkpoint(&checkpoint).expect("checkpoint");
        drop(directory);

        let directory = open();
        match open_task_store(&counts, &directory).expect("reopen store") {
            StateStore::KeyValue(store) => assert_eq!(store.get(b"word"), Some(&b"2"[..])),
            _ => panic!("a key-value spec opens a key-value store"),
        }
        match open_task_store(&windows, &directory).expect("reopen store") {
            StateStore::Window(store) => assert_eq!(store.fetch(b"word", 60_000), Some(&b"1"[..])),
            _ => panic!("a window spec opens a window store"),
        }
        let sessions = spec("sessions", StoreKind::Session);
        assert!(matches!(
            open_task_store(&sessions, &directory).expect("open store"),
            StateStore::Session(_)
        ));
    }
}
