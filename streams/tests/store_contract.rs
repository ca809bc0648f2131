//! One contract for every store implementation: the in-memory stores and the persistent (redb)
//! stores run the same checks and the same property tests against a `BTreeMap` model; the
//! persistent ones also keep what they flushed across a close and reopen. The task directory's
//! lock, checkpoint and wipe are tested here too.

use std::collections::BTreeMap;
use std::path::Path;

use proptest::prelude::*;
use spate_streams::persistent_store::{PersistentKeyValueStore, PersistentWindowStore};
use spate_streams::state_directory::{
    Checkpoint, StateDirectoryError, TaskStateDirectory, CHECKPOINT_FILE_NAME,
};
use spate_streams::store::{
    InMemoryKeyValueStore, InMemoryWindowStore, KeyValueStore, WindowStore,
};

#[derive(Debug, Clone)]
enum KeyValueOperation {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
    Flush,
}

#[derive(Debug, Clone)]
enum WindowOperation {
    Put(Vec<u8>, i64, Option<Vec<u8>>),
    ExpireBefore(i64),
    Flush,
}

// Few distinct short keys, so that puts, deletes and prefixes collide often.
fn small_key() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(0u8..4, 0..3)
}

fn key_value_operation() -> impl Strategy<Value = KeyValueOperation> {
    prop_oneof![
        4 => (small_key(), proptest::collection::vec(any::<u8>(), 0..4))
            .prop_map(|(key, value)| KeyValueOperation::Put(key, value)),
        2 => small_key().prop_map(KeyValueOperation::Delete),
        1 => Just(KeyValueOperation::Flush),
    ]
}

fn window_operation() -> impl Strategy<Value = WindowOperation> {
    let value = proptest::option::weighted(0.8, proptest::collection::vec(any::<u8>(), 0..4));
    prop_oneof![
        6 => (small_key(), -3i64..6, value)
            .prop_map(|(key, start, value)| WindowOperation::Put(key, start * 10, value)),
        1 => (-3i64..7).prop_map(|start| WindowOperation::ExpireBefore(start * 10)),
        1 => Just(WindowOperation::Flush),
    ]
}

/// Applies `operations` to `store` and to a model, checking every answer against the model;
/// answers the model as of the last flush.
fn check_key_value_store(
    store: &mut dyn KeyValueStore,
    operations: &[KeyValueOperation],
) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut model = BTreeMap::new();
    let mut flushed = model.clone();
    for operation in operations {
        match operation {
            KeyValueOperation::Put(key, value) => {
                store.put(key, value.clone());
                model.insert(key.clone(), value.clone());
            }
            KeyValueOperation::Delete(key) => {
                assert_eq!(store.delete(key), model.remove(key), "delete {key:?}");
            }
            KeyValueOperation::Flush => {
                store.flush().expect("flush");
                flushed = model.clone();
            }
        }
        for key in [&b""[..], &[0], &[1, 2], &[3, 3]] {
            assert_eq!(
                store.get(key),
                model.get(key).map(Vec::as_slice),
                "get {key:?}"
            );
        }
    }
    let entries: Vec<_> = model.clone().into_iter().collect();
    assert_eq!(store.all(), entries);
    assert_eq!(store.approximate_entries(), model.len());
    for prefix in [&b""[..], &[1], &[2, 0]] {
        let expected: Vec<_> = entries
            .iter()
            .filter(|(key, _)| key.starts_with(prefix))
            .cloned()
            .collect();
        assert_eq!(store.prefix(prefix), expected, "prefix {prefix:?}");
    }
    flushed
}

type WindowModel = BTreeMap<(i64, Vec<u8>), Vec<u8>>;

fn check_window_store(store: &mut dyn WindowStore, operations: &[WindowOperation]) -> WindowModel {
    let mut model = WindowModel::new();
    let mut flushed = model.clone();
    for operation in operations {
        match operation {
            WindowOperation::Put(key, start, value) => {
                store.put(key, *start, value.clone());
                match value {
                    Some(value) => model.insert((*start, key.clone()), value.clone()),
                    None => model.remove(&(*start, key.clone())),
                };
            }
            WindowOperation::ExpireBefore(start) => {
                store.expire_before(*start);
                model = model.split_off(&(*start, Vec::new()));
            }
            WindowOperation::Flush => {
                store.flush().expect("flush");
                flushed = model.clone();
            }
        }
        if let WindowOperation::Put(key, start, _) = operation {
            let expected = model.get(&(*start, key.clone())).map(Vec::as_slice);
            assert_eq!(
                store.fetch(key, *start),
                expected,
                "fetch {key:?} at {start}"
            );
            let (from, to) = (start - 10, start + 20);
            let range: Vec<_> = model
                .range((from, Vec::new())..)
                .take_while(|((window_start, _), _)| *window_start <= to)
                .filter(|((_, window_key), _)| window_key == key)
                .map(|((window_start, _), value)| (*window_start, value.clone()))
                .collect();
            assert_eq!(store.fetch_range(key, from, to), range, "range of {key:?}");
            assert!(store.fetch_range(key, to, from).is_empty());
        }
    }
    assert_eq!(store.all(), window_entries(&model));
    flushed
}

fn window_entries(model: &WindowModel) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
    model
        .iter()
        .map(|((start, key), value)| (key.clone(), *start, value.clone()))
        .collect()
}

proptest! {
    #[test]
    fn in_memory_key_value_store_behaves_as_a_sorted_map(
        operations in proptest::collection::vec(key_value_operation(), 0..60)
    ) {
        check_key_value_store(&mut InMemoryKeyValueStore::default(), &operations);
    }

    #[test]
    fn in_memory_window_store_behaves_as_a_map_by_start_and_key(
        operations in proptest::collection::vec(window_operation(), 0..60)
    ) {
        check_window_store(&mut InMemoryWindowStore::default(), &operations);
    }

}

proptest! {
    // Each flush is an fsync: fewer cases keep the suite within seconds on a shared machine.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn persistent_key_value_store_behaves_as_a_sorted_map_and_keeps_what_it_flushed(
        operations in proptest::collection::vec(key_value_operation(), 0..60)
    ) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut store = PersistentKeyValueStore::open(directory.path()).expect("open");
        let flushed = check_key_value_store(&mut store, &operations);
        drop(store);
        let reopened = PersistentKeyValueStore::open(directory.path()).expect("reopen");
        prop_assert_eq!(reopened.all(), flushed.into_iter().collect::<Vec<_>>());
    }

    #[test]
    fn persistent_window_store_behaves_as_a_map_by_start_and_key_and_keeps_what_it_flushed(
        operations in proptest::collection::vec(window_operation(), 0..60)
    ) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut store = PersistentWindowStore::open(directory.path()).expect("open");
        let flushed = check_window_store(&mut store, &operations);
        drop(store);
        let reopened = PersistentWindowStore::open(directory.path()).expect("reopen");
        prop_assert_eq!(reopened.all(), window_entries(&flushed));
    }
}

#[test]
fn persistent_stores_reopened_after_close_hold_their_data_and_not_unflushed_changes() {
    let directory = tempfile::tempdir().expect("temporary directory");
    let (key_values, windows) = (directory.path().join("kv"), directory.path().join("w"));
    std::fs::create_dir_all(&key_values).expect("create");
    std::fs::create_dir_all(&windows).expect("create");
    {
        let mut store = PersistentKeyValueStore::open(&key_values).expect("open");
        store.put(b"word", b"3".to_vec());
        store.put(b"gone", b"1".to_vec());
        store.flush().expect("flush");
        store.delete(b"gone");
        store.put(b"late", b"1".to_vec());
        let mut window_store = PersistentWindowStore::open(&windows).expect("open");
        window_store.put(b"word", -60_000, Some(b"1".to_vec()));
        window_store.put(b"word", 0, Some(b"2".to_vec()));
        window_store.put(b"word", 60_000, Some(b"3".to_vec()));
        window_store.expire_before(0);
        window_store.flush().expect("flush");
    }
    let store = PersistentKeyValueStore::open(&key_values).expect("reopen");
    assert_eq!(store.get(b"word"), Some(&b"3"[..]));
    assert_eq!(
        store.get(b"gone"),
        Some(&b"1"[..]),
        "the delete was never flushed"
    );
    assert_eq!(store.get(b"late"), None, "the put was never flushed");
    let window_store = PersistentWindowStore::open(&windows).expect("reopen");
    assert_eq!(
        window_store.fetch_range(b"word", i64::MIN, i64::MAX),
        vec![(0, b"2".to_vec()), (60_000, b"3".to_vec())]
    );
}

fn open_task(state_dir: &Path) -> Result<TaskStateDirectory, StateDirectoryError> {
    TaskStateDirectory::open(state_dir, "word-count", "0_1")
}

#[test]
fn task_directory_lock_refuses_a_second_opener_until_the_first_closes() {
    let state_dir = tempfile::tempdir().expect("temporary directory");
    let first = open_task(state_dir.path()).expect("first open");
    match open_task(state_dir.path()) {
        Err(StateDirectoryError::Locked { path }) => assert_eq!(path, first.path()),
        other => panic!("a second opener got {other:?}"),
    }
    drop(first);
    open_task(state_dir.path()).expect("open after the first closed");
}

#[test]
fn task_directory_keeps_checkpointed_stores_and_wipes_stores_without_a_checkpoint() {
    let state_dir = tempfile::tempdir().expect("temporary directory");
    let checkpoint = Checkpoint {
        offsets: BTreeMap::from([(("word-count-counts-changelog".to_string(), 1), 42)]),
    };
    {
        let mut task = open_task(state_dir.path()).expect("open");
        assert_eq!(task.checkpoint(), None);
        let mut store = PersistentKeyValueStore::open(&task.store_path("counts").expect("path"))
            .expect("open store");
        store.put(b"word", b"1".to_vec());
        store.flush().expect("flush");
        task.write_checkpoint(&checkpoint).expect("checkpoint");
    }
    {
        let mut task = open_task(state_dir.path()).expect("clean restart");
        assert_eq!(task.checkpoint(), Some(&checkpoint));
        let store = PersistentKeyValueStore::open(&task.store_path("counts").expect("path"))
            .expect("open store");
        assert_eq!(store.get(b"word"), Some(&b"1"[..]));
        drop(store);
        // A crash with no checkpoint behind it: the stores cannot be trusted.
        task.remove_checkpoint().expect("remove");
    }
    let task = open_task(state_dir.path()).expect("restart after the crash");
    assert_eq!(task.checkpoint(), None);
    let store = PersistentKeyValueStore::open(&task.store_path("counts").expect("path"))
        .expect("open store");
    assert_eq!(store.all(), vec![], "the store was wiped, to be restored");
}

#[test]
fn task_directory_treats_a_checkpoint_that_does_not_parse_as_missing() {
    let state_dir = tempfile::tempdir().expect("temporary directory");
    let path = {
        let task = open_task(state_dir.path()).expect("open");
        let mut store = PersistentKeyValueStore::open(&task.store_path("counts").expect("path"))
            .expect("open store");
        store.put(b"word", b"1".to_vec());
        store.flush().expect("flush");
        task.path().to_path_buf()
    };
    std::fs::write(path.join(CHECKPOINT_FILE_NAME), "0\n2\ntopic 0 5\n").expect("write");
    let task = open_task(state_dir.path()).expect("open");
    assert_eq!(task.checkpoint(), None);
    assert!(!path.join("counts").exists(), "the store was wiped");
}

#[test]
fn task_directory_refuses_names_that_are_not_plain_directory_names() {
    let state_dir = tempfile::tempdir().expect("temporary directory");
    for (application, task) in [("..", "0_1"), ("app", "a/b"), ("", "0_1"), ("app", ".lock")] {
        assert!(matches!(
            TaskStateDirectory::open(state_dir.path(), application, task),
            Err(StateDirectoryError::BadName { .. })
        ));
    }
}

proptest! {
    #[test]
    fn checkpoints_decode_what_they_encode(
        offsets in proptest::collection::btree_map(("[a-z.-]{1,12}", 0u32..64), 0i64..i64::MAX, 0..6)
    ) {
        let checkpoint = Checkpoint { offsets };
        prop_assert_eq!(Checkpoint::decode(&checkpoint.encode()), Some(checkpoint));
    }
}
