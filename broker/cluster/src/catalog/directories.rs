//! The topic directories under `<data_dir>/topics` as the catalog sees them: each topic's own
//! metadata file (`topic.toml`: name, id, partition count, config), the check at open that the
//! catalog and the directories agree, and `recover-catalog`, which rebuilds a lost or wrong
//! catalog from those files.
//!
//! The rule: data is never deleted because metadata is missing or disagrees. At open, a topic
//! directory is removed only when the catalog says why: the topic was deleted (a tombstone in
//! `catalog.toml`), or its creation never committed (it holds no records, and it has no
//! `topic.toml` or an id at or above the catalog's `next_topic_id`). A named topic whose
//! directory is gone is reported and served as offline (never recreated empty). Anything else
//! that does not match (a directory the catalog does not name, a partition beyond the catalog's
//! count) stops the broker with a list of every mismatch and how to recover.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spate_storage::{BlockingFileSystem, FileSystem};

use super::files;
use super::{
    reassign, topic_directory, CatalogError, CatalogFile, CatalogSnapshot, DeletedTopicRecord,
    TopicConfig, TopicMetadata, TopicRecord, CATALOG_FILE_NAME, CATALOG_FORMAT_VERSION,
    TOPICS_DIRECTORY_NAME,
};

/// Each topic directory's own description of its topic, enough to rebuild the catalog entry.
pub const TOPIC_METADATA_FILE_NAME: &str = "topic.toml";
/// Version of the `topic.toml` layout this build writes and reads.
const TOPIC_METADATA_FORMAT_VERSION: u32 = 1;

/// The layout of `topic.toml`. Placement is not kept: it is derived from the shard count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct TopicMetadataFile {
    version: u32,
    name: String,
    id: u64,
    partition_count: u32,
    #[serde(default)]
    config: BTreeMap<String, String>,
}

impl TopicMetadataFile {
    fn of(topic: &TopicMetadata) -> Self {
        TopicMetadataFile {
            version: TOPIC_METADATA_FORMAT_VERSION,
            name: topic.name.clone(),
            id: topic.id,
            partition_count: topic.partition_count(),
            config: topic.config.to_map(),
        }
    }
}

/// Creates the topic's directory (durably: the `topics` directory is fsynced) and writes its
/// `topic.toml` (new file, fsync, rename, fsync). Called before the catalog names the topic, and
/// again when its configuration changes. Blocking.
pub(super) fn write_topic_metadata<F: FileSystem>(
    file_system: &F,
    topic: &TopicMetadata,
) -> Result<(), CatalogError> {
    let created = !files::is_directory(file_system, &topic.directory)?;
    files::create_directory(file_system, &topic.directory)?;
    if created {
        if let Some(parent) = topic.directory.parent() {
            files::sync_directory(file_system, parent)?;
        }
    }
    let text =
        toml::to_string(&TopicMetadataFile::of(topic)).map_err(|error| CatalogError::Corrupt {
            path: topic.directory.join(TOPIC_METADATA_FILE_NAME),
            message: format!("cannot serialize: {error}"),
        })?;
    files::write_file_durably(
        file_system,
        &topic.directory,
        TOPIC_METADATA_FILE_NAME,
        text.as_bytes(),
    )?;
    Ok(())
}

/// One entry of `<data_dir>/topics` as found on disk.
#[derive(Debug)]
struct FoundEntry {
    path: PathBuf,
    file_name: String,
    is_directory: bool,
    /// `topic.toml`, parsed; `Err` says why it could not be read.
    metadata: Option<Result<TopicMetadataFile, String>>,
    /// Numeric subdirectories: the partitions whose directories exist.
    partitions: Vec<u32>,
    /// Whether any partition holds a non-empty segment log.
    holds_records: bool,
}

impl FoundEntry {
    /// Name and id: from `topic.toml` when readable, else from the `<name>.<id>` directory name.
    fn name_and_id(&self) -> Option<(String, u64)> {
        if let Some(Ok(metadata)) = &self.metadata {
            return Some((metadata.name.clone(), metadata.id));
        }
        let (name, id) = self.file_name.rsplit_once('.')?;
        Some((name.to_string(), id.parse().ok()?))
    }

    fn describe(&self) -> String {
        match self.name_and_id() {
            Some((name, id)) => format!("{} (topic {name}, id {id})", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

fn scan<F: FileSystem>(file_system: &F, topics: &Path) -> Result<Vec<FoundEntry>, CatalogError> {
    let mut found = Vec::new();
    let Some(names) = files::list(file_system, topics)? else {
        return Ok(found);
    };
    for file_name in names {
        let path = topics.join(&file_name);
        let is_directory = files::is_directory(file_system, &path)?;
        let mut found_entry = FoundEntry {
            path,
            file_name,
            is_directory,
            metadata: None,
            partitions: Vec::new(),
            holds_records: false,
        };
        if is_directory {
            inspect_topic_directory(file_system, &mut found_entry)?;
        }
        found.push(found_entry);
    }
    found.sort_by(|left, right| left.file_name.cmp(&right.file_name));
    Ok(found)
}

fn inspect_topic_directory<F: FileSystem>(
    file_system: &F,
    entry: &mut FoundEntry,
) -> Result<(), CatalogError> {
    let metadata_path = entry.path.join(TOPIC_METADATA_FILE_NAME);
    entry.metadata = match files::read(file_system, &metadata_path) {
        Ok(Some(bytes)) => Some(
            utf8_text(&bytes)
                .and_then(|text| toml::from_str(text).map_err(|error| error.to_string())),
        ),
        Ok(None) => None,
        Err(error) => Some(Err(error.source.to_string())),
    };
    for child in files::list(file_system, &entry.path)?.unwrap_or_default() {
        let Ok(partition) = child.parse::<u32>() else {
            continue;
        };
        entry.partitions.push(partition);
        if !entry.holds_records {
            entry.holds_records = partition_holds_records(file_system, &entry.path.join(child));
        }
    }
    entry.partitions.sort_unstable();
    Ok(())
}

/// Whether a partition directory has a non-empty segment log (or cannot be read, which counts
/// as holding records: when in doubt, keep).
fn partition_holds_records<F: FileSystem>(file_system: &F, directory: &Path) -> bool {
    let Ok(Some(children)) = files::list(file_system, directory) else {
        return true;
    };
    children.iter().any(|child| {
        child.ends_with(".log")
            && files::length(file_system, &directory.join(child)).map_or(true, |length| length > 0)
    })
}

/// `bytes` as text, or where the first invalid UTF-8 byte is (line, column and file offset).
pub(super) fn utf8_text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|error| {
        let offset = error.valid_up_to();
        let before = &bytes[..offset];
        let line = before.iter().filter(|byte| **byte == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|byte| *byte == b'\n')
            .map_or(0, |position| position + 1);
        format!(
            "not UTF-8 text: invalid byte 0x{:02x} at line {line}, byte {} of that line (byte \
             offset {offset} of the file)",
            bytes[offset],
            offset - line_start + 1
        )
    })
}

/// What opening the catalog does to the topic directories once they are found to agree.
#[derive(Debug, Default)]
pub(super) struct Reconciliation {
    /// Directories to remove, with why (a finished deletion, a creation that never committed).
    pub removals: Vec<(PathBuf, &'static str)>,
    /// Live topics whose `topic.toml` is absent (made by an older build) or holds another config
    /// (a crash between the two writes of a config change; the catalog is the authority): write
    /// it from the catalog.
    pub metadata_to_write: Vec<Arc<TopicMetadata>>,
    /// Live topics whose directory is missing: their partitions come up offline.
    pub missing: Vec<Arc<TopicMetadata>>,
}

/// Compares the catalog with `<data_dir>/topics`. Every mismatch is collected, so one failed
/// start names them all; nothing is changed here.
pub(super) fn reconcile<F: FileSystem>(
    file_system: &F,
    data_dir: &Path,
    snapshot: &CatalogSnapshot,
    deleted: &[DeletedTopicRecord],
    next_topic_id: u64,
) -> Result<Reconciliation, CatalogError> {
    let topics_directory = data_dir.join(TOPICS_DIRECTORY_NAME);
    let found = scan(file_system, &topics_directory)?;
    let mut reconciliation = Reconciliation::default();
    let mut problems = Vec::new();
    let live: BTreeMap<&Path, &Arc<TopicMetadata>> = snapshot
        .topics
        .values()
        .map(|topic| (topic.directory.as_path(), topic))
        .collect();
    // A topic whose directory is gone lost its records, but only its own: it is served as
    // offline (each partition's open finds its directory missing and never recreates it), the
    // rest of the broker starts, and deleting the topic clears it.
    for topic in snapshot.topics.values() {
        if !found.iter().any(|entry| entry.path == topic.directory) {
            reconciliation.missing.push(topic.clone());
        }
    }
    for entry in &found {
        if let Some(topic) = live.get(entry.path.as_path()) {
            check_live_topic(
                file_system,
                entry,
                topic,
                &mut problems,
                &mut reconciliation,
            );
            continue;
        }
        let tombstone = deleted
            .iter()
            .any(|record| topic_directory(data_dir, &record.name, record.id) == entry.path);
        if tombstone && entry.is_directory {
            reconciliation.removals.push((
                entry.path.clone(),
                "removing the directory of a deleted topic",
            ));
            continue;
        }
        // A creation commits by writing topic.toml and then the catalog (with next_topic_id past
        // its id); before that no client could write to it. Without topic.toml, or with an id the
        // catalog never gave out, and with no records, it is such a creation, not lost data.
        let uncommitted = entry.metadata.is_none()
            || entry
                .name_and_id()
                .is_some_and(|(_, id)| id >= next_topic_id);
        if uncommitted && entry.is_directory && !entry.holds_records {
            reconciliation.removals.push((
                entry.path.clone(),
                "removing the directory of a topic whose creation never completed (no records)",
            ));
            continue;
        }
        problems.push(format!(
            "{} is not a topic the catalog names",
            entry.describe()
        ));
    }
    if problems.is_empty() {
        return Ok(reconciliation);
    }
    // The start is refused anyway: name the missing directories too, they are often the other
    // half of one mistake (a topic renamed in the catalog).
    for topic in &reconciliation.missing {
        problems.push(format!(
            "the catalog names topic {} (id {}) but its directory {} is missing",
            topic.name,
            topic.id,
            topic.directory.display()
        ));
    }
    Err(CatalogError::DirectoriesDisagree {
        data_dir: data_dir.to_path_buf(),
        problems: problems.join("; "),
    })
}

fn check_live_topic<F: FileSystem>(
    file_system: &F,
    entry: &FoundEntry,
    topic: &Arc<TopicMetadata>,
    problems: &mut Vec<String>,
    reconciliation: &mut Reconciliation,
) {
    let count = topic.partition_count();
    if !entry.is_directory {
        problems.push(format!(
            "{} should be the directory of topic {} but is not a directory",
            entry.path.display(),
            topic.name
        ));
        return;
    }
    // Partitions are added (CreatePartitions) by opening them before the catalog names them;
    // a crash in between leaves partitions past the count that no client could write to. Empty
    // ones are that; one holding records is lost catalog data and stops the open.
    for &beyond in entry
        .partitions
        .iter()
        .filter(|partition| **partition >= count)
    {
        let path = entry.path.join(beyond.to_string());
        if partition_holds_records(file_system, &path) {
            problems.push(format!(
                "topic {} has {count} partitions in the catalog but its directory holds \
                 partition {beyond} ({})",
                topic.name,
                path.display()
            ));
        } else {
            reconciliation.removals.push((
                path,
                "removing a partition whose addition never completed (no records)",
            ));
        }
    }
    match &entry.metadata {
        None => reconciliation.metadata_to_write.push(topic.clone()),
        Some(Err(error)) => problems.push(format!(
            "{} is unreadable: {error}",
            entry.path.join(TOPIC_METADATA_FILE_NAME).display()
        )),
        Some(Ok(metadata)) => {
            if metadata.name != topic.name || metadata.id != topic.id {
                problems.push(format!(
                    "{} says topic {} id {}, the catalog says topic {} id {}",
                    entry.path.join(TOPIC_METADATA_FILE_NAME).display(),
                    metadata.name,
                    metadata.id,
                    topic.name,
                    topic.id
                ));
            } else if metadata.partition_count > count {
                // A growth that wrote topic.toml but not the catalog: the catalog is the
                // authority and nothing was written to the added partitions.
                reconciliation.metadata_to_write.push(topic.clone());
            } else if metadata.partition_count != count {
                problems.push(format!(
                    "topic {} has {count} partitions in the catalog but {} in {}",
                    topic.name,
                    metadata.partition_count,
                    entry.path.join(TOPIC_METADATA_FILE_NAME).display()
                ));
            } else if metadata.config != topic.config.to_map() {
                reconciliation.metadata_to_write.push(topic.clone());
            }
        }
    }
}

/// What `recover-catalog` did.
#[derive(Debug)]
pub struct RecoveredCatalog {
    /// (topic, id, partitions, where its description came from) for each topic now named.
    pub topics: Vec<(String, u64, u32, &'static str)>,
    /// Where the catalog that was replaced now is, if there was one.
    pub previous_catalog: Option<PathBuf>,
}

/// Rebuilds `<data_dir>/catalog.toml` from the topic directories: each directory's `topic.toml`
/// (or, for a directory without one, its `<name>.<id>` name, its partition directories and the
/// default config). Directories of topics the old catalog records as deleted stay deleted. The
/// old catalog is kept beside the new one as `catalog.toml.replaced-<unix seconds>`. The caller
/// holds the data directory lock. Blocking.
pub fn recover_catalog(data_dir: &Path) -> Result<RecoveredCatalog, CatalogError> {
    recover_catalog_on(&BlockingFileSystem, data_dir)
}

/// [`recover_catalog`] on any file system (the in-memory disk in tests).
pub fn recover_catalog_on<F: FileSystem>(
    file_system: &F,
    data_dir: &Path,
) -> Result<RecoveredCatalog, CatalogError> {
    let path = data_dir.join(CATALOG_FILE_NAME);
    let previous_bytes = files::read(file_system, &path).ok().flatten();
    let previous = previous_bytes
        .as_ref()
        .and_then(|bytes| super::parse_catalog(&path, bytes).ok());
    let deleted = previous
        .as_ref()
        .map(|file| file.deleted_topics.clone())
        .unwrap_or_default();
    let mut next_topic_id = previous.as_ref().map_or(1, |file| file.next_topic_id);
    let shard_count = previous.as_ref().map_or(1, |file| file.shard_count);
    let mut names: BTreeMap<String, (u64, PathBuf)> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut topics = BTreeMap::new();
    let mut recovered = Vec::new();
    for entry in scan(file_system, &data_dir.join(TOPICS_DIRECTORY_NAME))? {
        let Some((name, id)) = entry.name_and_id() else {
            problems.push(format!(
                "{} is neither a topic directory named <topic>.<id> nor holds {TOPIC_METADATA_FILE_NAME}",
                entry.path.display()
            ));
            continue;
        };
        if deleted
            .iter()
            .any(|record| record.name == name && record.id == id)
        {
            continue;
        }
        if !entry.is_directory || topic_directory(data_dir, &name, id) != entry.path {
            problems.push(format!(
                "{} does not match the directory name of topic {name} id {id}",
                entry.path.display()
            ));
            continue;
        }
        if let Some((other_id, other)) = names.insert(name.clone(), (id, entry.path.clone())) {
            problems.push(format!(
                "topic {name} has two directories: {} (id {other_id}) and {} (id {id}); move \
                 the one to drop out of the topics directory",
                other.display(),
                entry.path.display()
            ));
            continue;
        }
        let from_directories = entry.partitions.last().map_or(0, |last| last + 1);
        let (partition_count, config, source) = match &entry.metadata {
            Some(Ok(metadata)) => (
                metadata.partition_count.max(from_directories),
                metadata.config.clone(),
                "topic.toml",
            ),
            _ => (
                from_directories,
                BTreeMap::new(),
                "directory names (no readable topic.toml: default config)",
            ),
        };
        if partition_count == 0 {
            problems.push(format!(
                "{} holds no partitions and no {TOPIC_METADATA_FILE_NAME}",
                entry.path.display()
            ));
            continue;
        }
        let config = TopicConfig::from_map(&config).map_err(|error| CatalogError::Corrupt {
            path: entry.path.join(TOPIC_METADATA_FILE_NAME),
            message: error.to_string(),
        })?;
        next_topic_id = next_topic_id.max(id + 1);
        recovered.push((name.clone(), id, partition_count, source));
        topics.insert(
            name.clone(),
            Arc::new(TopicMetadata {
                name: name.clone(),
                id,
                partition_shards: vec![0; partition_count as usize],
                config,
                directory: entry.path.clone(),
                roles: Arc::default(),
            }),
        );
    }
    if !problems.is_empty() {
        return Err(CatalogError::DirectoriesDisagree {
            data_dir: data_dir.to_path_buf(),
            problems: problems.join("; "),
        });
    }
    let mut snapshot = CatalogSnapshot {
        topics,
        shard_count,
        ..CatalogSnapshot::default()
    };
    reassign(&mut snapshot, shard_count);
    for topic in snapshot.topics.values() {
        write_topic_metadata(file_system, topic)?;
    }
    let previous_catalog = if previous_bytes.is_some() {
        let started_unix_s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_secs());
        let kept = data_dir.join(format!("{CATALOG_FILE_NAME}.replaced-{started_unix_s}"));
        files::rename(file_system, &path, &kept).map_err(|error| CatalogError::Io {
            op: "keep the old catalog as",
            path: kept.clone(),
            source: error.source,
        })?;
        Some(kept)
    } else {
        None
    };
    let file = CatalogFile {
        version: CATALOG_FORMAT_VERSION,
        shard_count,
        next_topic_id,
        topics: snapshot
            .topics
            .values()
            .map(|topic| TopicRecord::of(topic))
            .collect(),
        deleted_topics: deleted,
        // A cluster member's rebuilt catalog is a single broker's: its replicas are the
        // cluster's to say, so such a directory is refused in cluster mode until cleared.
        node_id: None,
        cluster_mode: false,
        metadata_applied_index: 0,
    };
    super::write_catalog_file(file_system, data_dir, &file)?;
    Ok(RecoveredCatalog {
        topics: recovered,
        previous_catalog,
    })
}
