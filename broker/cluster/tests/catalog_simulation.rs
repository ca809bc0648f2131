//! Seeded randomized runs of the catalog and the partition logs together on one in-memory disk,
//! checked against a model of what was acknowledged: the storage simulation's operator damage
//! one layer up, where the catalog lives (the storage crate cannot see it).
//!
//! Each case draws a shard count and a few dozen operations from its seed: topics created,
//! grown and deleted, acks=all appends, producer ids handed out, clean restarts, power losses,
//! and power losses in the middle of a catalog change (after a random number of disk operations,
//! so inside the writes of `topic.toml`, `catalog.toml` or `producer_ids.toml`). After every
//! reopen:
//! - the catalog opens; every topic whose creation was acknowledged is there with its id and at
//!   least its acknowledged partitions, every topic whose deletion was acknowledged is gone, and
//!   no other topic appears (a change cut short by the crash may have landed or not);
//! - every partition of every topic opens and serves exactly the batches whose appends were
//!   acknowledged, byte for byte at their offsets: nothing lost, nothing invented;
//! - no producer id is handed out twice in the life of the data directory.
//!
//! Half of the cases then end in operator damage to the cleanly stopped data directory
//! (FORMAT.md, "Data directory and catalog"): `catalog.toml` removed, a topic renamed in it, a
//! partition dropped from it, the file truncated, a topic directory removed, a `topic.toml`
//! removed, `producer_ids.toml` removed or truncated. The reopen must then refuse with a typed error and delete nothing, after which
//! `recover-catalog` brings every acknowledged record back; or open, and serve every
//! acknowledged record, except that the partitions of a removed topic directory are refused
//! as missing (offline, never recreated empty) while the rest is served. Batches are written by
//! idempotent producers too (ids from the allocator, sequences from the model), and every reopen
//! reports what the partitions remember to the allocator as the broker's shards do; after the
//! damage, a new producer must get an id never handed out and above every id a partition
//! remembers, and its first batch must be appended, not taken for an old producer's duplicate.
//!
//! A failure names its seed; rerun one case with `SPATE_CATALOG_SIM_SEED=<seed>`
//! (`SPATE_CATALOG_SIM_TRACE=1` prints every operation). `SPATE_CATALOG_SIM_CASES` sets the
//! number of cases, `SPATE_CATALOG_SIM_BASE_SEED` where they start.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::future::block_on;
use spate_cluster::catalog::{
    recover_catalog_on, Catalog, CatalogError, ProducerIdError, TopicConfig, TopicMetadata,
    CATALOG_FILE_NAME, PRODUCER_IDS_FILE_NAME, TOPIC_METADATA_FILE_NAME,
};
use spate_protocol::batch::header::{compute_crc, NO_PRODUCER_EPOCH, NO_PRODUCER_ID, NO_SEQUENCE};
use spate_protocol::batch::{BatchHeader, BATCH_HEADER_BYTES, BATCH_MAGIC};
use spate_storage::{
    AppendWait, Clock, Durability, FileSystem, LogConfig, ManualClock, MemoryFileSystem,
    PartitionLog, SimulationRng, StorageError,
};

const CASES_DEFAULT: u64 = 300;
const BASE_SEED: u64 = 0xca7a_0000;
const STEPS_PER_CASE: u64 = 40;
const TOPIC_NAMES: [&str; 4] = ["orders", "payments", "t.v1", "audit_log"];
const DATA_DIR: &str = "/data";
const TOPICS_MAX: usize = 16;
const PARTITIONS_PER_TOPIC_MAX: u32 = 8;
const PARTITIONS_PER_SHARD_MAX: usize = 64;
/// Bytes of a test batch's payload that carry its id.
const ID_BYTES: usize = 8;

type Disk = MemoryFileSystem;
type Log = PartitionLog<Disk>;

fn data_dir() -> PathBuf {
    PathBuf::from(DATA_DIR)
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes_max: 8 * 1024,
        batch_bytes_max: 4 * 1024,
        write_queue_bytes_max: 64 * 1024,
        write_buffer_bytes: 16 * 1024,
        index_interval_bytes: 512,
        index_persist_interval_bytes: 1024,
        tail_cache_bytes_max: 0,
        read_chunk_bytes: 4096,
        retention_ms: None,
        durability: Durability::EveryAppend,
        ..LogConfig::default()
    }
}

/// An idempotent producer's stamp on a batch: (producer id, first sequence), epoch 0.
type ProducerStamp = Option<(i64, i32)>;

/// A valid batch of one record whose payload starts with `id` (the rest follows from it),
/// stamped by `producer` if given.
fn batch(id: u64, total_bytes: usize, producer: ProducerStamp) -> BytesMut {
    assert!(total_bytes >= BATCH_HEADER_BYTES + ID_BYTES);
    let mut bytes = BytesMut::zeroed(total_bytes);
    let mut rng = SimulationRng::new(id.wrapping_mul(0x2545_f491_4f6c_dd1d));
    bytes[BATCH_HEADER_BYTES..BATCH_HEADER_BYTES + ID_BYTES].copy_from_slice(&id.to_le_bytes());
    for byte in bytes[BATCH_HEADER_BYTES + ID_BYTES..].iter_mut() {
        *byte = rng.next_u64() as u8;
    }
    let mut header = BatchHeader {
        base_offset: 0,
        leader_epoch: 0,
        crc: 0,
        batch_length: total_bytes as u32,
        magic: BATCH_MAGIC,
        payload_format: 1,
        attributes: 0,
        offset_count: 1,
        record_count: 1,
        first_timestamp: 1_000,
        max_timestamp: 1_000,
        producer_id: producer.map_or(NO_PRODUCER_ID, |(id, _)| id),
        producer_epoch: producer.map_or(NO_PRODUCER_EPOCH, |_| 0),
        reserved: 0,
        base_sequence: producer.map_or(NO_SEQUENCE, |(_, sequence)| sequence),
    };
    header.encode(&mut bytes);
    header.crc = compute_crc(&bytes);
    header.encode(&mut bytes);
    bytes
}

/// Whether `stored` is `original` apart from the broker-stamped base offset and leader epoch.
fn same_batch(stored: &[u8], original: &[u8]) -> bool {
    const STAMPED_BYTES: usize = 12;
    stored.len() == original.len() && stored[STAMPED_BYTES..] == original[STAMPED_BYTES..]
}

/// What the model knows of one topic.
#[derive(Debug, Clone)]
struct ModelTopic {
    id: u64,
    /// Partitions whose creation or addition was acknowledged.
    partitions: u32,
    /// Partitions reserved by a change cut short by a crash: they may exist after the reopen.
    partitions_maybe: u32,
    /// The creation was cut short: the topic may be missing after the reopen.
    maybe_created: bool,
    /// The deletion was cut short: the topic may be gone after the reopen.
    maybe_deleted: bool,
    /// Acknowledged batches of each partition: (base offset, bytes as handed in).
    batches: BTreeMap<u32, Vec<(u64, Bytes)>>,
}

/// Operator damage to a cleanly stopped data directory.
#[derive(Debug, Clone)]
enum Damage {
    RemoveCatalog,
    RenameTopicInCatalog { name: String },
    DropPartitionFromCatalog { name: String },
    TruncateCatalog { length: usize },
    RemoveTopicDirectory { name: String },
    RemoveTopicMetadata { name: String },
    RemoveProducerIds,
    TruncateProducerIds { length: usize },
}

struct Case {
    seed: u64,
    rng: SimulationRng,
    disk: Rc<Disk>,
    clock: Rc<ManualClock>,
    shard_count: usize,
    catalog: Option<Catalog<Disk>>,
    logs: BTreeMap<(String, u32), Log>,
    model: BTreeMap<String, ModelTopic>,
    /// Topics whose deletion was acknowledged: (name, id).
    deleted: BTreeSet<(String, u64)>,
    producer_ids: BTreeSet<i64>,
    /// Next sequence of each idempotent producer in each partition: (producer id, topic id,
    /// partition).
    sequences: BTreeMap<(i64, u64, u32), i32>,
    next_batch_id: u64,
    trace: Vec<String>,
    tracing: bool,
}

impl Case {
    fn new(seed: u64) -> Case {
        let mut rng = SimulationRng::new(seed);
        let shard_count = 1 + rng.below(3) as usize;
        let disk = Rc::new(MemoryFileSystem::new(seed ^ 0x5eed));
        let mut case = Case {
            seed,
            rng,
            disk,
            clock: Rc::new(ManualClock::new(1_700_000_000_000)),
            shard_count,
            catalog: None,
            logs: BTreeMap::new(),
            model: BTreeMap::new(),
            deleted: BTreeSet::new(),
            producer_ids: BTreeSet::new(),
            sequences: BTreeMap::new(),
            next_batch_id: 1,
            trace: Vec::new(),
            tracing: std::env::var_os("SPATE_CATALOG_SIM_TRACE").is_some(),
        };
        case.note(format!("seed {seed}: {shard_count} shards"));
        case.open_catalog().expect("an empty data directory opens");
        case
    }

    fn note(&mut self, entry: String) {
        if self.tracing {
            eprintln!("{entry}");
        }
        self.trace.push(entry);
    }

    fn catalog(&self) -> &Catalog<Disk> {
        self.catalog.as_ref().expect("the catalog is open")
    }

    fn open_catalog(&mut self) -> Result<(), CatalogError> {
        let (catalog, _) = Catalog::open_on(
            (*self.disk).clone(),
            &data_dir(),
            self.shard_count,
            TOPICS_MAX,
            PARTITIONS_PER_TOPIC_MAX,
            PARTITIONS_PER_SHARD_MAX,
        )?;
        self.catalog = Some(catalog);
        Ok(())
    }

    fn open_log(&self, directory: PathBuf, existing: bool) -> Result<Log, StorageError> {
        let clock: Rc<dyn Clock> = self.clock.clone();
        block_on(async {
            if existing {
                PartitionLog::open_existing(self.disk.clone(), directory, log_config(), clock).await
            } else {
                PartitionLog::open(self.disk.clone(), directory, log_config(), clock).await
            }
        })
    }

    /// Arms a crash after a random number of disk operations, for the next catalog change;
    /// returns whether it did.
    fn maybe_arm_crash(&mut self) -> bool {
        if self.rng.below(4) != 0 {
            return false;
        }
        let operations = self.rng.below(40);
        self.note(format!(
            "  power fails after {operations} more disk operations"
        ));
        self.disk.stop_after_operations(operations);
        true
    }

    fn create_topic(&mut self) {
        let free: Vec<&str> = TOPIC_NAMES
            .iter()
            .copied()
            .filter(|name| !self.model.contains_key(*name))
            .collect();
        if free.is_empty() {
            return;
        }
        let name = free[self.rng.below(free.len() as u64) as usize].to_string();
        let partitions = 1 + self.rng.below(3) as i64;
        self.note(format!("create {name} with {partitions} partitions"));
        let armed = self.maybe_arm_crash();
        let topic = match self
            .catalog()
            .reserve_topic(&name, partitions, TopicConfig::default())
        {
            Ok(topic) => topic,
            Err(error) => panic!("reserving {name} failed: {error}"),
        };
        let mut opened = Vec::new();
        let mut failed = None;
        for partition in 0..topic.partition_count() {
            match self.open_log(topic.partition_directory(partition), false) {
                Ok(log) => opened.push((partition, log)),
                Err(error) => {
                    failed = Some(error.to_string());
                    break;
                }
            }
        }
        let committed = match failed {
            Some(error) => Err(error),
            None => self
                .catalog()
                .commit_topic(&topic)
                .map_err(|e| e.to_string()),
        };
        match committed {
            Ok(()) => {
                self.model.insert(
                    name.clone(),
                    ModelTopic {
                        id: topic.id,
                        partitions: topic.partition_count(),
                        partitions_maybe: topic.partition_count(),
                        maybe_created: false,
                        maybe_deleted: false,
                        batches: BTreeMap::new(),
                    },
                );
                for (partition, log) in opened {
                    self.logs.insert((name.clone(), partition), log);
                }
                self.note(format!("  created {name} id {}", topic.id));
                if armed {
                    self.crash_and_reopen();
                }
            }
            Err(error) => {
                assert!(armed, "creating {name} failed without a fault: {error}");
                self.note(format!("  creation failed: {error}"));
                drop(opened);
                self.model.insert(
                    name.clone(),
                    ModelTopic {
                        id: topic.id,
                        partitions: topic.partition_count(),
                        partitions_maybe: topic.partition_count(),
                        maybe_created: true,
                        maybe_deleted: false,
                        batches: BTreeMap::new(),
                    },
                );
                self.crash_and_reopen();
            }
        }
    }

    fn grow_topic(&mut self) {
        let Some(name) = self.pick_topic() else {
            return;
        };
        let current = self.model[&name].partitions;
        if current >= PARTITIONS_PER_TOPIC_MAX {
            return;
        }
        let partitions = current + 1 + self.rng.below(2) as u32;
        let partitions = partitions.min(PARTITIONS_PER_TOPIC_MAX);
        self.note(format!("grow {name} to {partitions} partitions"));
        let armed = self.maybe_arm_crash();
        let grown = self
            .catalog()
            .reserve_partitions(&name, i64::from(partitions))
            .unwrap_or_else(|error| panic!("reserving partitions of {name}: {error}"));
        let mut opened = Vec::new();
        let mut failed = None;
        for partition in current..partitions {
            match self.open_log(grown.partition_directory(partition), false) {
                Ok(log) => opened.push((partition, log)),
                Err(error) => {
                    failed = Some(error.to_string());
                    break;
                }
            }
        }
        let committed = match failed {
            Some(error) => Err(error),
            None => self
                .catalog()
                .commit_topic(&grown)
                .map_err(|e| e.to_string()),
        };
        let topic = self.model.get_mut(&name).expect("picked from the model");
        topic.partitions_maybe = partitions;
        match committed {
            Ok(()) => {
                topic.partitions = partitions;
                for (partition, log) in opened {
                    self.logs.insert((name.clone(), partition), log);
                }
                if armed {
                    self.crash_and_reopen();
                }
            }
            Err(error) => {
                assert!(armed, "growing {name} failed without a fault: {error}");
                self.note(format!("  growth failed: {error}"));
                drop(opened);
                self.crash_and_reopen();
            }
        }
    }

    fn delete_topic(&mut self) {
        let Some(name) = self.pick_topic() else {
            return;
        };
        self.note(format!("delete {name}"));
        let armed = self.maybe_arm_crash();
        let deleted = match self.catalog().delete_topic(&name) {
            Ok(topic) => topic,
            Err(error) => {
                assert!(armed, "deleting {name} failed without a fault: {error}");
                self.note(format!("  deletion failed: {error}"));
                self.model.get_mut(&name).expect("picked").maybe_deleted = true;
                self.crash_and_reopen();
                return;
            }
        };
        // Acknowledged: the tombstone is durable, whatever happens to the files next.
        let topic = self.model.remove(&name).expect("picked from the model");
        self.deleted.insert((name.clone(), topic.id));
        let keys: Vec<(String, u32)> = self
            .logs
            .keys()
            .filter(|(topic, _)| *topic == name)
            .cloned()
            .collect();
        let mut failed = false;
        for key in keys {
            let log = self.logs.remove(&key).expect("listed above");
            if let Err(error) = block_on(log.delete()) {
                self.note(format!("  partition deletion failed: {error}"));
                failed = true;
                break;
            }
        }
        if !failed {
            if let Err(error) = self.catalog().finish_deletion(&deleted) {
                self.note(format!("  finishing the deletion failed: {error}"));
                failed = true;
            }
        }
        assert!(!failed || armed, "deleting {name} failed without a fault");
        if armed {
            self.crash_and_reopen();
        }
    }

    fn init_producer_id(&mut self) {
        let armed = self.maybe_arm_crash();
        match self
            .catalog()
            .producer_ids()
            .init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
        {
            Ok(identity) => {
                self.note(format!("producer id {}", identity.producer_id));
                assert!(
                    self.producer_ids.insert(identity.producer_id),
                    "producer id {} handed out twice",
                    identity.producer_id
                );
            }
            Err(error) => {
                assert!(armed, "a producer id failed without a fault: {error}");
                self.note(format!("  producer id failed: {error}"));
            }
        }
        if armed {
            self.crash_and_reopen();
        }
    }

    fn produce(&mut self) {
        let Some(name) = self.pick_topic() else {
            return;
        };
        let partitions = self.model[&name].partitions;
        let topic_id = self.model[&name].id;
        let partition = self.rng.below(u64::from(partitions)) as u32;
        let count = 1 + self.rng.below(4);
        // Half of the appends come from an idempotent producer the allocator handed out.
        let producer_id = match self.rng.below(2) {
            0 if !self.producer_ids.is_empty() => {
                let index = self.rng.below(self.producer_ids.len() as u64) as usize;
                self.producer_ids.iter().nth(index).copied()
            }
            _ => None,
        };
        let mut batches = Vec::new();
        for _ in 0..count {
            let id = self.next_batch_id;
            self.next_batch_id += 1;
            let bytes = BATCH_HEADER_BYTES + ID_BYTES + self.rng.below(1500) as usize;
            let stamp = producer_id.map(|producer_id| {
                let next = self
                    .sequences
                    .entry((producer_id, topic_id, partition))
                    .or_insert(0);
                let sequence = *next;
                *next += 1;
                (producer_id, sequence)
            });
            batches.push(batch(id, bytes, stamp));
        }
        self.note(format!(
            "produce {count} batches to {name}/{partition} (producer {producer_id:?})"
        ));
        let originals: Vec<Bytes> = batches
            .iter()
            .map(|bytes| Bytes::copy_from_slice(bytes))
            .collect();
        let log = &self.logs[&(name.clone(), partition)];
        let outcomes = block_on(log.append_batches(batches, AppendWait::Durable))
            .unwrap_or_else(|error| panic!("append to {name}/{partition} failed: {error}"));
        let acknowledged = self
            .model
            .get_mut(&name)
            .expect("picked")
            .batches
            .entry(partition)
            .or_default();
        for (outcome, original) in outcomes.into_iter().zip(originals) {
            acknowledged.push((outcome.base_offset, original));
        }
    }

    /// A topic whose existence is certain.
    fn pick_topic(&mut self) -> Option<String> {
        let names: Vec<String> = self
            .model
            .iter()
            .filter(|(_, topic)| !topic.maybe_created && !topic.maybe_deleted)
            .map(|(name, _)| name.clone())
            .collect();
        if names.is_empty() {
            return None;
        }
        Some(names[self.rng.below(names.len() as u64) as usize].clone())
    }

    fn close_everything(&mut self) {
        self.catalog = None;
        for (_, log) in std::mem::take(&mut self.logs) {
            block_on(log.close()).expect("a clean close succeeds without faults");
        }
    }

    fn crash_and_reopen(&mut self) {
        self.note("power loss".to_string());
        self.catalog = None;
        self.logs.clear();
        self.disk.crash();
        self.reopen();
    }

    fn restart(&mut self) {
        self.note("clean restart".to_string());
        self.close_everything();
        self.reopen();
    }

    /// Opens the catalog and every partition it names, settles what the crash decided, and
    /// checks everything against the model.
    fn reopen(&mut self) {
        if let Err(error) = self.open_catalog() {
            panic!("the catalog did not open after an undamaged stop: {error}");
        }
        let snapshot = self.catalog().snapshot();
        for (name, topic) in snapshot.topics.iter() {
            assert!(
                !self.deleted.contains(&(name.clone(), topic.id)),
                "topic {name} id {} came back after its deletion was acknowledged",
                topic.id
            );
            let Some(model) = self.model.get_mut(name) else {
                panic!("topic {name} id {} appeared from nowhere", topic.id);
            };
            assert_eq!(topic.id, model.id, "topic {name} changed its id");
            assert!(
                topic.partition_count() >= model.partitions
                    && topic.partition_count() <= model.partitions_maybe.max(model.partitions),
                "topic {name} has {} partitions; {} were acknowledged, {} reserved",
                topic.partition_count(),
                model.partitions,
                model.partitions_maybe
            );
            model.partitions = topic.partition_count();
            model.partitions_maybe = model.partitions;
            model.maybe_created = false;
            model.maybe_deleted = false;
        }
        let gone: Vec<String> = self
            .model
            .keys()
            .filter(|name| snapshot.topic(name).is_none())
            .cloned()
            .collect();
        for name in gone {
            let topic = &self.model[&name];
            assert!(
                topic.maybe_created || topic.maybe_deleted,
                "topic {name} id {} vanished from the catalog",
                topic.id
            );
            if topic.maybe_deleted {
                self.deleted.insert((name.clone(), topic.id));
            }
            self.model.remove(&name);
        }
        for topic in snapshot.topics.values() {
            self.open_and_check_topic(topic);
        }
        self.report_producers();
    }

    /// What the broker's shards do once every partition is open: tell the allocator the
    /// largest producer id each remembers. Returns the largest of all.
    fn report_producers(&self) -> Option<i64> {
        let allocator = self.catalog().producer_ids();
        let largest = self
            .logs
            .values()
            .filter_map(|log| log.largest_producer_id())
            .max();
        for log in self.logs.values() {
            if let Some(id) = log.largest_producer_id() {
                allocator.observe(id);
            }
        }
        allocator.partitions_reported(0);
        largest
    }

    fn open_and_check_topic(&mut self, topic: &TopicMetadata) {
        for partition in 0..topic.partition_count() {
            let log = self
                .open_log(topic.partition_directory(partition), true)
                .unwrap_or_else(|error| panic!("{}/{partition} did not open: {error}", topic.name));
            self.check_log(&topic.name, partition, &log);
            self.logs.insert((topic.name.clone(), partition), log);
        }
    }

    /// The log serves exactly the acknowledged batches, in order, byte for byte.
    fn check_log(&self, name: &str, partition: u32, log: &Log) {
        let expected = self.model[name]
            .batches
            .get(&partition)
            .cloned()
            .unwrap_or_default();
        let mut served = Vec::new();
        let mut offset = log.log_start_offset();
        loop {
            let outcome = block_on(log.read(offset, 64 * 1024))
                .unwrap_or_else(|error| panic!("reading {name}/{partition}: {error}"));
            if outcome.batches.is_empty() {
                break;
            }
            for stored in outcome.batches {
                let header = BatchHeader::decode(&stored).expect("a served batch has a header");
                offset = header.base_offset + u64::from(header.offset_count);
                served.push((header.base_offset, stored));
            }
        }
        assert_eq!(
            served.len(),
            expected.len(),
            "{name}/{partition} serves {} batches, {} were acknowledged",
            served.len(),
            expected.len()
        );
        for ((offset, stored), (expected_offset, original)) in served.iter().zip(&expected) {
            assert_eq!(offset, expected_offset, "{name}/{partition}: batch moved");
            assert!(
                same_batch(stored, original),
                "{name}/{partition}: the batch at offset {offset} is not the one acknowledged"
            );
        }
    }

    fn step(&mut self) {
        match self.rng.below(20) {
            0..=3 => self.create_topic(),
            4..=5 => self.grow_topic(),
            6..=7 => self.delete_topic(),
            8..=9 => self.init_producer_id(),
            10..=15 => self.produce(),
            16..=17 => self.restart(),
            _ => {
                self.note("power loss (idle)".to_string());
                self.crash_and_reopen();
            }
        }
    }

    fn draw_damage(&mut self) -> Option<Damage> {
        let names: Vec<String> = self.model.keys().cloned().collect();
        if names.is_empty() {
            return None;
        }
        let name = names[self.rng.below(names.len() as u64) as usize].clone();
        let catalog_bytes = self
            .disk
            .file_bytes(&data_dir().join(CATALOG_FILE_NAME))
            .expect("a stopped broker has a catalog")
            .len();
        let producer_ids_bytes = self
            .disk
            .file_bytes(&data_dir().join(PRODUCER_IDS_FILE_NAME))
            .expect("a used data directory has its producer id reservation")
            .len();
        Some(match self.rng.below(8) {
            6 => Damage::RemoveProducerIds,
            7 => Damage::TruncateProducerIds {
                length: self.rng.below(producer_ids_bytes as u64) as usize,
            },
            0 => Damage::RemoveCatalog,
            1 => Damage::RenameTopicInCatalog { name },
            2 => Damage::DropPartitionFromCatalog { name },
            3 => Damage::TruncateCatalog {
                length: self.rng.below(catalog_bytes as u64) as usize,
            },
            4 => Damage::RemoveTopicDirectory { name },
            _ => Damage::RemoveTopicMetadata { name },
        })
    }

    fn topic_directory(&self, name: &str) -> PathBuf {
        data_dir()
            .join("topics")
            .join(format!("{name}.{}", self.model[name].id))
    }

    fn replace_catalog_text(&self, edit: impl FnOnce(String) -> String) {
        let path = data_dir().join(CATALOG_FILE_NAME);
        let text = String::from_utf8(self.disk.file_bytes(&path).expect("catalog")).unwrap();
        let edited = edit(text);
        self.disk.set_length_durably(&path, 0);
        self.disk.overwrite_durably(&path, 0, edited.as_bytes());
    }

    /// Applies the damage; returns the partitions whose data it removed, if any.
    fn apply_damage(&mut self, damage: &Damage) -> Option<String> {
        let catalog = data_dir().join(CATALOG_FILE_NAME);
        let producer_ids = data_dir().join(PRODUCER_IDS_FILE_NAME);
        match damage {
            Damage::RemoveProducerIds => self.remove_durably(&producer_ids),
            Damage::TruncateProducerIds { length } => {
                self.disk.set_length_durably(&producer_ids, *length as u64);
            }
            Damage::RemoveCatalog => {
                block_on(async {
                    self.disk.remove_file(&catalog).await.unwrap();
                    self.disk.sync_directory(&data_dir()).await.unwrap();
                });
            }
            Damage::RenameTopicInCatalog { name } => {
                self.replace_catalog_text(|text| {
                    let renamed = text.replace(
                        &format!("name = \"{name}\""),
                        &format!("name = \"renamed-{name}\""),
                    );
                    assert_ne!(renamed, text, "the catalog names {name}");
                    renamed
                });
            }
            Damage::DropPartitionFromCatalog { name } => {
                let id = self.model[name].id;
                self.replace_catalog_text(|text| drop_last_partition(&text, name, id));
            }
            Damage::TruncateCatalog { length } => {
                self.disk.set_length_durably(&catalog, *length as u64);
            }
            Damage::RemoveTopicDirectory { name } => {
                self.disk.remove_tree_durably(&self.topic_directory(name));
                return Some(name.clone());
            }
            Damage::RemoveTopicMetadata { name } => {
                let path = self.topic_directory(name).join(TOPIC_METADATA_FILE_NAME);
                block_on(async {
                    self.disk.remove_file(&path).await.unwrap();
                    self.disk
                        .sync_directory(&self.topic_directory(name))
                        .await
                        .unwrap();
                });
            }
        }
        None
    }

    fn remove_durably(&self, path: &Path) {
        block_on(async {
            self.disk.remove_file(path).await.unwrap();
            self.disk.sync_directory(&data_dir()).await.unwrap();
        });
    }

    /// Damages the stopped data directory, reopens, and checks that nothing acknowledged is lost,
    /// hidden or invented in silence.
    fn damage_and_check(&mut self) {
        self.close_everything();
        let Some(damage) = self.draw_damage() else {
            return;
        };
        self.note(format!("operator damage: {damage:?}"));
        let removed_topic = self.apply_damage(&damage);
        let files_before: BTreeSet<PathBuf> = self
            .disk
            .file_paths()
            .into_iter()
            .filter(|path| !is_catalog_file(path))
            .collect();
        match self.open_catalog() {
            Err(CatalogError::ProducerIds(error)) => {
                self.note(format!("  refused: {error}"));
                assert!(
                    matches!(damage, Damage::TruncateProducerIds { .. })
                        && matches!(error, ProducerIdError::Corrupt { .. }),
                    "unexpected producer id refusal after {damage:?}: {error:?}"
                );
                assert!(
                    error.to_string().contains("move it aside"),
                    "the refusal does not say how to recover: {error}"
                );
                self.assert_nothing_deleted(&files_before);
                // The documented operator step.
                self.remove_durably(&data_dir().join(PRODUCER_IDS_FILE_NAME));
                if let Err(error) = self.open_catalog() {
                    panic!("the catalog did not open without its producer ids: {error}");
                }
            }
            Err(error) => {
                self.note(format!("  refused: {error}"));
                assert!(
                    matches!(
                        error,
                        CatalogError::Missing { .. }
                            | CatalogError::DirectoriesDisagree { .. }
                            | CatalogError::Corrupt { .. }
                    ),
                    "the refusal is not typed as damage: {error:?}"
                );
                assert!(
                    error.to_string().contains("recover-catalog")
                        || matches!(error, CatalogError::Corrupt { .. }),
                    "the refusal does not say how to recover: {error}"
                );
                self.assert_nothing_deleted(&files_before);
                assert!(
                    removed_topic.is_none(),
                    "a removed topic directory stopped the whole start: {error}"
                );
                let recovered = recover_catalog_on(&*self.disk, &data_dir())
                    .unwrap_or_else(|error| panic!("recover-catalog failed: {error}"));
                self.note(format!("  recovered {} topics", recovered.topics.len()));
                if let Err(error) = self.open_catalog() {
                    panic!("the recovered catalog did not open: {error}");
                }
            }
            Ok(()) => {
                self.note("  opened".to_string());
                if matches!(damage, Damage::RemoveCatalog) {
                    assert!(
                        self.model.is_empty(),
                        "a lost catalog opened as an empty one while topics exist"
                    );
                }
            }
        }
        self.check_after_damage(removed_topic.as_deref());
        self.check_new_producer_after_damage(removed_topic.as_deref());
    }

    /// Opens every served partition, reports the producers they remember as the shards do, and
    /// checks that a new producer gets an id never handed out, above every remembered one, and
    /// that its first batch is appended to the partition remembering the largest id rather than
    /// answered as an old producer's duplicate (which would drop it in silence).
    fn check_new_producer_after_damage(&mut self, removed_topic: Option<&str>) {
        let snapshot = self.catalog().snapshot();
        for topic in snapshot.topics.values() {
            if Some(topic.name.as_str()) == removed_topic {
                continue;
            }
            for partition in 0..topic.partition_count() {
                let log = self
                    .open_log(topic.partition_directory(partition), true)
                    .unwrap_or_else(|error| panic!("{}/{partition}: {error}", topic.name));
                self.logs.insert((topic.name.clone(), partition), log);
            }
        }
        let largest = self.report_producers();
        let identity = self
            .catalog()
            .producer_ids()
            .init(NO_PRODUCER_ID, NO_PRODUCER_EPOCH)
            .unwrap_or_else(|error| panic!("no producer id after the damage: {error}"));
        let producer_id = identity.producer_id;
        self.note(format!(
            "  new producer id {producer_id} (largest remembered {largest:?})"
        ));
        assert!(
            !self.producer_ids.contains(&producer_id),
            "producer id {producer_id} handed out again after the damage"
        );
        assert!(
            largest.is_none_or(|largest| producer_id > largest),
            "producer id {producer_id} is one a partition remembers (largest {largest:?})"
        );
        let Some(largest) = largest else {
            return;
        };
        let log = self
            .logs
            .values()
            .find(|log| log.largest_producer_id() == Some(largest))
            .expect("a partition remembers it");
        let next_offset = log.next_offset();
        let outcomes = block_on(log.append_batches(
            vec![batch(
                u64::MAX,
                BATCH_HEADER_BYTES + ID_BYTES,
                Some((producer_id, 0)),
            )],
            AppendWait::Durable,
        ))
        .unwrap_or_else(|error| panic!("the new producer's first batch failed: {error}"));
        assert_eq!(
            outcomes[0].base_offset, next_offset,
            "the new producer's first batch was taken for a duplicate and not stored"
        );
    }

    fn assert_nothing_deleted(&self, before: &BTreeSet<PathBuf>) {
        let after: BTreeSet<PathBuf> = self.disk.file_paths().into_iter().collect();
        let lost: Vec<&PathBuf> = before.difference(&after).collect();
        assert!(lost.is_empty(), "a refused open deleted {lost:?}");
    }

    fn check_after_damage(&mut self, removed_topic: Option<&str>) {
        let snapshot = self.catalog().snapshot();
        for (name, model) in self.model.clone() {
            let Some(topic) = snapshot.topic(&name).cloned() else {
                panic!(
                    "topic {name} id {} is not served after the damage",
                    model.id
                );
            };
            assert_eq!(topic.id, model.id, "topic {name} changed its id");
            let expected_partitions = model.partitions;
            if Some(name.as_str()) == removed_topic {
                for partition in 0..topic.partition_count() {
                    match self.open_log(topic.partition_directory(partition), true) {
                        Err(StorageError::MissingDirectory { .. }) => {}
                        Err(other) => panic!("{name}/{partition}: {other}"),
                        Ok(_) => panic!(
                            "{name}/{partition} opened after its directory was removed \
                             (recreated empty)"
                        ),
                    }
                }
                assert!(
                    !block_on(self.disk.is_directory(&topic.directory)).unwrap(),
                    "the removed directory of {name} was recreated"
                );
                continue;
            }
            let has_records = |partition: u32| {
                model
                    .batches
                    .get(&partition)
                    .is_some_and(|batches| !batches.is_empty())
            };
            // A partition dropped from the catalog may go only if it held nothing.
            for partition in topic.partition_count()..expected_partitions {
                assert!(
                    !has_records(partition),
                    "{name}/{partition} holds acknowledged records and is no longer served"
                );
            }
            for partition in 0..topic.partition_count() {
                let log = self
                    .open_log(topic.partition_directory(partition), true)
                    .unwrap_or_else(|error| {
                        panic!("{name}/{partition} did not open after the damage: {error}")
                    });
                self.check_log(&name, partition, &log);
            }
        }
        for name in snapshot.topics.keys() {
            assert!(
                self.model.contains_key(name),
                "topic {name} was invented by the damage"
            );
        }
    }
}

fn is_catalog_file(path: &Path) -> bool {
    path.parent() == Some(data_dir().as_path())
        && path
            .file_name()
            .and_then(|name| name.to_str())
            .is_some_and(|name| name.starts_with(CATALOG_FILE_NAME))
}

/// The catalog text with the last entry of topic `name`'s placement removed.
fn drop_last_partition(text: &str, name: &str, id: u64) -> String {
    let start = text
        .find(&format!("name = \"{name}\"\nid = {id}\n"))
        .expect("the catalog names the topic");
    let shards_at = start
        + text[start..]
            .find("partition_shards = [")
            .expect("a topic lists its placement");
    let list_start = shards_at + "partition_shards = [".len();
    let list_end = list_start + text[list_start..].find(']').expect("a closed list");
    let entries: Vec<&str> = text[list_start..list_end].split(", ").collect();
    let kept = entries[..entries.len().saturating_sub(1)].join(", ");
    format!("{}{kept}{}", &text[..list_start], &text[list_end..])
}

fn run_case(seed: u64, damaged: bool) {
    let mut case = Case::new(seed);
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        for _ in 0..STEPS_PER_CASE {
            case.step();
        }
        if damaged {
            case.damage_and_check();
        }
    }));
    if let Err(panic) = outcome {
        if !case.tracing {
            for entry in case.trace.iter().rev().take(30).rev() {
                eprintln!("  {entry}");
            }
        }
        eprintln!(
            "catalog simulation failed: rerun with SPATE_CATALOG_SIM_SEED={} (seed {:#x})",
            case.seed, case.seed
        );
        std::panic::resume_unwind(panic);
    }
}

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[test]
fn seeded_runs_keep_every_acknowledged_topic_and_record_through_crashes_and_operator_damage() {
    if let Some(seed) = env_u64("SPATE_CATALOG_SIM_SEED") {
        run_case(seed, seed % 2 == 1);
        return;
    }
    let cases = env_u64("SPATE_CATALOG_SIM_CASES").unwrap_or(CASES_DEFAULT);
    let base = env_u64("SPATE_CATALOG_SIM_BASE_SEED").unwrap_or(BASE_SEED);
    for seed in base..base + cases {
        run_case(seed, seed % 2 == 1);
    }
}
