//! Measures the two candidate embedded engines for persistent state stores, `redb` (a B-tree with
//! copy-on-write pages) and `fjall` (an LSM tree), on a state store's access pattern: point gets
//! of small keys, a commit's worth of puts and deletes made durable at once (one fsync per task
//! commit), and window range scans by key and time. Run with
//! `cargo bench -p spate-streams --bench engines`; the figures behind the choice are in the crate
//! documentation. Each engine runs in its own temporary directory on the same disk.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use redb::TableDefinition;

/// Keys in the store before measuring: a small aggregation's key space.
const KEYS_COUNT: u64 = 10_000;
/// Updates per commit: a commit interval's worth of aggregation updates.
const UPDATES_PER_COMMIT: u64 = 1_000;
/// Deletes per commit (tombstones, expired windows).
const DELETES_PER_COMMIT: u64 = 100;
/// Windows per key in the window layout, and how many a range scan reads.
const WINDOWS_PER_KEY: i64 = 50;
const WINDOWS_PER_SCAN: i64 = 10;
const WINDOW_SIZE_MS: i64 = 60_000;

const TABLE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("store");

fn key_bytes(index: u64) -> [u8; 16] {
    // Fixed-width keys like a serialized word or id; spread so updates land across the tree.
    let spread = index.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&spread.to_be_bytes());
    key[8..].copy_from_slice(&index.to_be_bytes());
    key
}

/// The window layout: record key, then the window start with its sign bit flipped so that byte
/// order is time order.
fn window_key(index: u64, window_start_ms: i64) -> Vec<u8> {
    let mut key = key_bytes(index).to_vec();
    key.extend_from_slice(&((window_start_ms as u64) ^ (1 << 63)).to_be_bytes());
    key
}

/// A tiny deterministic generator, so both engines see the same keys.
fn next_index(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state % KEYS_COUNT
}

struct Redb {
    database: redb::Database,
    _directory: tempfile::TempDir,
}

impl Redb {
    fn open() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let database = redb::Database::create(directory.path().join("store.redb")).expect("open");
        Self {
            database,
            _directory: directory,
        }
    }
    fn commit(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) {
        let transaction = self.database.begin_write().expect("begin");
        {
            let mut table = transaction.open_table(TABLE).expect("table");
            for (key, value) in puts {
                table
                    .insert(key.as_slice(), value.as_slice())
                    .expect("insert");
            }
            for key in deletes {
                table.remove(key.as_slice()).expect("remove");
            }
        }
        transaction.commit().expect("commit");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let transaction = self.database.begin_read().expect("read");
        let table = transaction.open_table(TABLE).expect("table");
        let value = table.get(key).expect("get");
        value.map(|value| value.value().to_vec())
    }
    fn range(&self, from: &[u8], to: &[u8]) -> usize {
        let transaction = self.database.begin_read().expect("read");
        let table = transaction.open_table(TABLE).expect("table");
        let entries = table.range(from..=to).expect("range");
        entries
            .map(|entry| black_box(entry.expect("entry")).1.value().len())
            .sum()
    }
}

struct Fjall {
    keyspace: fjall::Keyspace,
    partition: fjall::PartitionHandle,
    _directory: tempfile::TempDir,
}

impl Fjall {
    fn open() -> Self {
        let directory = tempfile::tempdir().expect("temporary directory");
        let keyspace = fjall::Config::new(directory.path()).open().expect("open");
        let partition = keyspace
            .open_partition("store", fjall::PartitionCreateOptions::default())
            .expect("partition");
        Self {
            keyspace,
            partition,
            _directory: directory,
        }
    }
    fn commit(&self, puts: &[(Vec<u8>, Vec<u8>)], deletes: &[Vec<u8>]) {
        let mut batch = self.keyspace.batch();
        for (key, value) in puts {
            batch.insert(&self.partition, key.as_slice(), value.as_slice());
        }
        for key in deletes {
            batch.remove(&self.partition, key.as_slice());
        }
        batch.commit().expect("commit");
        self.keyspace
            .persist(fjall::PersistMode::SyncAll)
            .expect("persist");
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.partition
            .get(key)
            .expect("get")
            .map(|value| value.to_vec())
    }
    fn range(&self, from: &[u8], to: &[u8]) -> usize {
        self.partition
            .range(from.to_vec()..=to.to_vec())
            .map(|entry| black_box(entry.expect("entry")).1.len())
            .sum()
    }
}

/// Key-value pairs to write in one commit.
type Puts = Vec<(Vec<u8>, Vec<u8>)>;

fn commit_batch(seed: &mut u64) -> (Puts, Vec<Vec<u8>>) {
    let puts = (0..UPDATES_PER_COMMIT)
        .map(|_| {
            let index = next_index(seed);
            (key_bytes(index).to_vec(), index.to_le_bytes().to_vec())
        })
        .collect();
    let deletes = (0..DELETES_PER_COMMIT)
        .map(|_| key_bytes(next_index(seed)).to_vec())
        .collect();
    (puts, deletes)
}

fn loaded_key_values() -> Puts {
    (0..KEYS_COUNT)
        .map(|index| (key_bytes(index).to_vec(), index.to_le_bytes().to_vec()))
        .collect()
}

fn loaded_windows() -> Puts {
    (0..KEYS_COUNT / 10)
        .flat_map(|index| {
            (0..WINDOWS_PER_KEY).map(move |window| {
                let start = window * WINDOW_SIZE_MS;
                (window_key(index, start), start.to_le_bytes().to_vec())
            })
        })
        .collect()
}

fn engines(criterion: &mut Criterion) {
    let redb = Redb::open();
    let fjall = Fjall::open();
    redb.commit(&loaded_key_values(), &[]);
    fjall.commit(&loaded_key_values(), &[]);

    let mut group = criterion.benchmark_group("commit_1000_puts_100_deletes_fsync");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(4));
    let mut seed = 0x2545_F491_4F6C_DD1D;
    group.bench_function(BenchmarkId::from_parameter("redb"), |bencher| {
        bencher.iter(|| {
            let (puts, deletes) = commit_batch(&mut seed);
            redb.commit(&puts, &deletes);
        })
    });
    let mut seed = 0x2545_F491_4F6C_DD1D;
    group.bench_function(BenchmarkId::from_parameter("fjall"), |bencher| {
        bencher.iter(|| {
            let (puts, deletes) = commit_batch(&mut seed);
            fjall.commit(&puts, &deletes);
        })
    });
    group.finish();

    let mut group = criterion.benchmark_group("point_get");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    let mut seed = 0x1234_5678_9ABC_DEF1;
    group.bench_function(BenchmarkId::from_parameter("redb"), |bencher| {
        bencher.iter(|| black_box(redb.get(&key_bytes(next_index(&mut seed)))))
    });
    let mut seed = 0x1234_5678_9ABC_DEF1;
    group.bench_function(BenchmarkId::from_parameter("fjall"), |bencher| {
        bencher.iter(|| black_box(fjall.get(&key_bytes(next_index(&mut seed)))))
    });
    group.finish();

    let windowed_redb = Redb::open();
    let windowed_fjall = Fjall::open();
    windowed_redb.commit(&loaded_windows(), &[]);
    windowed_fjall.commit(&loaded_windows(), &[]);
    let mut group = criterion.benchmark_group("window_range_10_of_50");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(2));
    let scan = |seed: &mut u64| {
        let index = next_index(seed) / 10;
        let from_ms = (*seed % (WINDOWS_PER_KEY - WINDOWS_PER_SCAN) as u64) as i64 * WINDOW_SIZE_MS;
        let to_ms = from_ms + (WINDOWS_PER_SCAN - 1) * WINDOW_SIZE_MS;
        (window_key(index, from_ms), window_key(index, to_ms))
    };
    let mut seed = 0x0F0F_1234_5678_9ABC;
    group.bench_function(BenchmarkId::from_parameter("redb"), |bencher| {
        bencher.iter(|| {
            let (from, to) = scan(&mut seed);
            black_box(windowed_redb.range(&from, &to))
        })
    });
    let mut seed = 0x0F0F_1234_5678_9ABC;
    group.bench_function(BenchmarkId::from_parameter("fjall"), |bencher| {
        bencher.iter(|| {
            let (from, to) = scan(&mut seed);
            black_box(windowed_fjall.range(&from, &to))
        })
    });
    group.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
