//! What the Kafka protocol names this broker and its topics by: the cluster id (Metadata,
//! DescribeCluster) and each topic's id (a UUID since Kafka 2.8; Metadata v10+, Fetch v13+ and
//! Produce v13 name topics by it).
//!
//! The cluster id is 16 random bytes made on the first start with the Kafka listener and kept in
//! `<data_dir>/kafka_cluster_id` (written durably through the storage file trait, as the catalog
//! writes its files: new file, fsync, rename, fsync the directory), so clients
//! that cache it see the same broker after a restart. A topic's id is the cluster id's first 8
//! bytes followed by the topic's catalog id (big-endian): stable for the topic's life, new for a
//! topic deleted and created again (the catalog never reuses an id), and different between data
//! directories. No second table is kept, so the catalog stays the one owner of topic identity.

use std::path::Path;

use futures_lite::future::block_on;
use spate_kafka_protocol::kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use crate::storage::file::{read_whole_file, replace_text_file_durably, ReplaceSteps};
use crate::storage::{BlockingFileSystem, StorageError};

/// File in the data directory holding the cluster id (its Kafka text form, one line).
pub const CLUSTER_ID_FILE_NAME: &str = "kafka_cluster_id";

/// Why the cluster id could not be read or made.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path} does not hold a cluster id: {text:?}")]
    Corrupt {
        path: std::path::PathBuf,
        text: String,
    },
    #[error("cannot write the cluster id: {0}")]
    Write(#[from] StorageError),
}

const STEPS: ReplaceSteps = ReplaceSteps {
    create: "create",
    size: "size",
    empty: "empty",
    write: "write",
    sync: "fsync",
    rename: "rename",
    sync_directory: "fsync directory",
};

/// The broker's Kafka identity; shared by every Kafka connection. Changes only when a cluster
/// member adopts the id its cluster's metadata names ([`KafkaIdentity::adopt`]).
#[derive(Debug)]
pub struct KafkaIdentity {
    current: std::sync::RwLock<Current>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Current {
    cluster: Uuid,
    /// The cluster id's text form, as Kafka writes it (22 characters, URL-safe base64).
    cluster_id: StrBytes,
}

impl Clone for KafkaIdentity {
    fn clone(&self) -> Self {
        Self {
            current: std::sync::RwLock::new(self.current()),
        }
    }
}

impl PartialEq for KafkaIdentity {
    fn eq(&self, other: &Self) -> bool {
        self.current() == other.current()
    }
}

impl Eq for KafkaIdentity {}

impl KafkaIdentity {
    /// Reads the cluster id of `data_dir`, making and storing one the first time. Blocking file
    /// I/O: call at start-up, before the shards run.
    pub fn load_or_create(data_dir: &Path) -> Result<KafkaIdentity, IdentityError> {
        let file_system = BlockingFileSystem;
        let path = data_dir.join(CLUSTER_ID_FILE_NAME);
        let read = block_on(read_whole_file(&file_system, &path)).map_err(|source| {
            IdentityError::Read {
                path: path.clone(),
                source,
            }
        })?;
        if let Some(bytes) = read {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let cluster =
                decode_kafka_uuid(text.trim()).ok_or(IdentityError::Corrupt { path, text })?;
            return Ok(Self::from_uuid(cluster));
        }
        let identity = Self::from_uuid(new_cluster_uuid());
        let line = format!("{}\n", identity.cluster_id().as_str());
        let temporary = data_dir.join(format!("{CLUSTER_ID_FILE_NAME}.new"));
        block_on(replace_text_file_durably(
            &file_system,
            data_dir,
            &temporary,
            &path,
            line.as_bytes(),
            &STEPS,
        ))?;
        Ok(identity)
    }

    fn from_uuid(cluster: Uuid) -> KafkaIdentity {
        KafkaIdentity {
            current: std::sync::RwLock::new(Current {
                cluster,
                cluster_id: StrBytes::from_string(encode_kafka_uuid(cluster)),
            }),
        }
    }

    fn current(&self) -> Current {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn cluster_id(&self) -> StrBytes {
        self.current().cluster_id
    }

    /// The Kafka topic id of the topic with catalog id `catalog_id`.
    pub fn topic_id(&self, catalog_id: u64) -> Uuid {
        let cluster = self.current().cluster;
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&cluster.as_bytes()[..8]);
        bytes[8..].copy_from_slice(&catalog_id.to_be_bytes());
        Uuid::from_bytes(bytes)
    }

    /// The catalog id a Kafka topic id names, if it is one of this broker's.
    pub fn catalog_id(&self, topic_id: Uuid) -> Option<u64> {
        let cluster = self.current().cluster;
        let bytes = topic_id.as_bytes();
        (bytes[..8] == cluster.as_bytes()[..8])
            .then(|| u64::from_be_bytes(bytes[8..].try_into().expect("8 bytes")))
    }

    /// A cluster member takes the id its cluster's metadata names (Kafka's text form), so that
    /// every broker reports the same cluster id and the same topic ids (derived from it), and
    /// keeps it in `<data_dir>/kafka_cluster_id` for the next start. Returns whether it changed.
    /// Blocking file I/O: call from a blocking thread. An id not in Kafka's form is refused.
    pub fn adopt(&self, data_dir: &Path, cluster_id: &str) -> Result<bool, IdentityError> {
        let path = data_dir.join(CLUSTER_ID_FILE_NAME);
        let cluster = decode_kafka_uuid(cluster_id).ok_or_else(|| IdentityError::Corrupt {
            path: path.clone(),
            text: cluster_id.to_string(),
        })?;
        if self.current().cluster == cluster {
            return Ok(false);
        }
        let line = format!("{cluster_id}\n");
        let temporary = data_dir.join(format!("{CLUSTER_ID_FILE_NAME}.new"));
        block_on(replace_text_file_durably(
            &BlockingFileSystem,
            data_dir,
            &temporary,
            &path,
            line.as_bytes(),
            &STEPS,
        ))?;
        *self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Current {
            cluster,
            cluster_id: StrBytes::from_string(encode_kafka_uuid(cluster)),
        };
        Ok(true)
    }
}

/// A new cluster id in Kafka's text form: what a cluster's first controller names the cluster
/// (`spate_server::cluster`), so that the native and the Kafka protocol report one id.
pub fn new_cluster_id_text() -> String {
    encode_kafka_uuid(new_cluster_uuid())
}

/// Random, with a non-zero first half: a topic id is never the all-zero UUID (Kafka's "none").
fn new_cluster_uuid() -> Uuid {
    loop {
        let bytes: [u8; 16] = rand::random();
        if bytes[..8] != [0; 8] {
            return Uuid::from_bytes(bytes);
        }
    }
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Kafka's text form of a UUID: URL-safe base64 without padding (22 characters).
fn encode_kafka_uuid(uuid: Uuid) -> String {
    let bytes = uuid.as_bytes();
    let mut text = String::with_capacity(22);
    let mut bits: u32 = 0;
    let mut held = 0;
    for &byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        held += 8;
        while held >= 6 {
            held -= 6;
            text.push(BASE64_URL[((bits >> held) & 0x3f) as usize] as char);
        }
    }
    if held > 0 {
        text.push(BASE64_URL[((bits << (6 - held)) & 0x3f) as usize] as char);
    }
    text
}

fn decode_kafka_uuid(text: &str) -> Option<Uuid> {
    if text.len() != 22 {
        return None;
    }
    let mut bytes = Vec::with_capacity(17);
    let mut bits: u32 = 0;
    let mut held = 0;
    for character in text.bytes() {
        let value = BASE64_URL.iter().position(|&symbol| symbol == character)? as u32;
        bits = (bits << 6) | value;
        held += 6;
        if held >= 8 {
            held -= 8;
            bytes.push((bits >> held) as u8);
        }
    }
    Some(Uuid::from_bytes(bytes.get(..16)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cluster_id_is_made_once_and_read_back() {
        let directory = tempfile::tempdir().unwrap();
        let first = KafkaIdentity::load_or_create(directory.path()).unwrap();
        let second = KafkaIdentity::load_or_create(directory.path()).unwrap();
        assert_eq!(first, second);
        assert_eq!(first.cluster_id().len(), 22);
    }

    #[test]
    fn a_cluster_member_adopts_its_clusters_id_for_good() {
        let directory = tempfile::tempdir().unwrap();
        let identity = KafkaIdentity::load_or_create(directory.path()).unwrap();
        let cluster_id = new_cluster_id_text();
        let before = identity.topic_id(7);
        assert!(identity.adopt(directory.path(), &cluster_id).unwrap());
        assert!(!identity.adopt(directory.path(), &cluster_id).unwrap());
        assert_eq!(identity.cluster_id().as_str(), cluster_id);
        assert_ne!(identity.topic_id(7), before);
        assert_eq!(identity.catalog_id(identity.topic_id(7)), Some(7));
        let reloaded = KafkaIdentity::load_or_create(directory.path()).unwrap();
        assert_eq!(reloaded, identity);
        assert!(identity.adopt(directory.path(), "not-a-kafka-id").is_err());
    }

    #[test]
    fn kafka_uuid_text_round_trips_and_matches_kafkas_form() {
        // Kafka's Uuid.toString of 00000000-0000-0001-0000-000000000001.
        let uuid = Uuid::from_u64_pair(1, 1);
        assert_eq!(encode_kafka_uuid(uuid), "AAAAAAAAAAEAAAAAAAAAAQ");
        assert_eq!(decode_kafka_uuid("AAAAAAAAAAEAAAAAAAAAAQ"), Some(uuid));
        let random = new_cluster_uuid();
        assert_eq!(decode_kafka_uuid(&encode_kafka_uuid(random)), Some(random));
        assert_eq!(decode_kafka_uuid("short"), None);
    }

    #[test]
    fn topic_ids_name_their_catalog_id_and_only_this_cluster_s() {
        let directory = tempfile::tempdir().unwrap();
        let identity = KafkaIdentity::load_or_create(directory.path()).unwrap();
        let topic_id = identity.topic_id(42);
        assert!(!topic_id.is_nil());
        assert_eq!(identity.catalog_id(topic_id), Some(42));
        assert_eq!(identity.catalog_id(Uuid::from_u64_pair(7, 42)), None);
    }
}
