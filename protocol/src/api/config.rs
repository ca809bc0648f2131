//! Topic configuration: the string map on the wire and its typed form.
//!
//! On the wire a topic config is a list of (name, value) strings, as in Kafka, so that new keys
//! do not need a new message version. [`TopicConfig`] parses the keys this build knows, with
//! `None` meaning "use the broker default". Validating values against broker limits (a minimum
//! segment size, say) is the broker's job; this file only checks syntax.

use crate::api::wire::{wire, ConfigName, Text};

/// Config names, as they appear on the wire.
pub mod name {
    pub const RETENTION_BYTES: &str = "retention.bytes";
    pub const RETENTION_MS: &str = "retention.ms";
    pub const SEGMENT_BYTES: &str = "segment.bytes";
    pub const SEGMENT_MS: &str = "segment.ms";
    pub const DURABILITY: &str = "durability";
    pub const GROUP_COMMIT_BYTES: &str = "group.commit.bytes";
    pub const GROUP_COMMIT_US: &str = "group.commit.us";
    /// The largest record batch a producer may send, counted without Spate's 64-byte batch
    /// header (so a Kafka batch counts as Kafka counts it).
    pub const MAX_MESSAGE_BYTES: &str = "max.message.bytes";
    /// Kafka's `cleanup.policy`: `delete`, `compact` or `compact,delete`.
    pub const CLEANUP_POLICY: &str = "cleanup.policy";
    /// Compaction waits until the dirty part of a log is at least this share of it (0 to 1).
    pub const MIN_CLEANABLE_DIRTY_RATIO: &str = "min.cleanable.dirty.ratio";
    /// A record younger than this is never compacted away.
    pub const MIN_COMPACTION_LAG_MS: &str = "min.compaction.lag.ms";
    /// A record older than this is compacted whatever the dirty ratio.
    pub const MAX_COMPACTION_LAG_MS: &str = "max.compaction.lag.ms";
    /// How long tombstones stay after compaction first reached them.
    pub const DELETE_RETENTION_MS: &str = "delete.retention.ms";
    /// Redpanda's `write.caching`: `true` lets consumers read a batch once it is written,
    /// before its `fdatasync`; `false` (the default) shows only durable batches.
    pub const WRITE_CACHING: &str = "write.caching";
    /// In-sync replicas an acks=all write needs (Kafka's name), 1 up to the replication
    /// factor. Not in [`ALL`]: its default is not one value but a majority of each topic's
    /// replication factor, and a single broker's topics have one replica.
    pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
    /// Every name this build knows.
    pub const ALL: [&str; 14] = [
        RETENTION_BYTES,
        RETENTION_MS,
        SEGMENT_BYTES,
        SEGMENT_MS,
        DURABILITY,
        GROUP_COMMIT_BYTES,
        GROUP_COMMIT_US,
        MAX_MESSAGE_BYTES,
        CLEANUP_POLICY,
        MIN_CLEANABLE_DIRTY_RATIO,
        MIN_COMPACTION_LAG_MS,
        MAX_COMPACTION_LAG_MS,
        DELETE_RETENTION_MS,
        WRITE_CACHING,
    ];
}

/// Value of `retention.bytes` / `retention.ms` meaning "keep forever" (Kafka's convention).
pub const UNLIMITED: &str = "-1";

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
    pub struct ConfigEntry {
        #[wire = "config_name"]
        pub name: String as ConfigName,
        #[wire = "config_value"]
        pub value: String as Text,
    }
}

impl ConfigEntry {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// When the broker acknowledges a write relative to fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Durability {
    /// Every append is fsynced before it is acknowledged.
    FsyncEveryAppend,
    /// Appends are fsynced in groups: an acks=all append syncs as soon as no other write or
    /// sync of its partition is in flight, and appends that arrive meanwhile share the next
    /// fsync. `group.commit.bytes` / `group.commit.us` bound how long acks=leader data stays
    /// unsynced.
    GroupCommit,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::FsyncEveryAppend => "fsync-every-append",
            Self::GroupCommit => "group-commit",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "fsync-every-append" => Some(Self::FsyncEveryAppend),
            "group-commit" => Some(Self::GroupCommit),
            _ => None,
        }
    }
}

/// Why a config map is not a valid topic config.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown config name {name:?}")]
    UnknownName { name: String },
    #[error("config {name:?} given more than once")]
    DuplicateName { name: String },
    #[error("config {name:?} has invalid value {value:?}: {expected}")]
    InvalidValue {
        name: String,
        value: String,
        expected: &'static str,
    },
}

/// Typed topic config; `None` means the broker default. Byte and time limits that may be
/// unlimited use `u64::MAX` for "-1".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TopicConfig {
    pub retention_bytes: Option<u64>,
    pub retention_ms: Option<u64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub durability: Option<Durability>,
    pub group_commit_bytes: Option<u64>,
    pub group_commit_us: Option<u64>,
    pub max_message_bytes: Option<u64>,
    /// `cleanup.policy`, kept as written after checking its syntax.
    pub cleanup_policy: Option<CleanupPolicy>,
    /// `min.cleanable.dirty.ratio` in parts per million (so the config stays `Eq`).
    pub min_cleanable_dirty_ratio_ppm: Option<u32>,
    pub min_compaction_lag_ms: Option<u64>,
    pub max_compaction_lag_ms: Option<u64>,
    pub delete_retention_ms: Option<u64>,
    /// `write.caching`: whether readers see written, not yet durable, batches.
    pub write_caching: Option<bool>,
}

/// Kafka's `cleanup.policy` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CleanupPolicy {
    Delete,
    Compact,
    CompactDelete,
}

impl CleanupPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }

    /// A comma-separated list of `delete` and `compact`, each at most once, at least one.
    pub fn parse(value: &str) -> Option<Self> {
        let (mut delete, mut compact) = (false, false);
        for word in value.split(',').map(str::trim) {
            let slot = match word {
                "delete" => &mut delete,
                "compact" => &mut compact,
                _ => return None,
            };
            if *slot {
                return None;
            }
            *slot = true;
        }
        match (compact, delete) {
            (true, true) => Some(Self::CompactDelete),
            (true, false) => Some(Self::Compact),
            (false, true) => Some(Self::Delete),
            (false, false) => None,
        }
    }
}

/// A share in `[0, 1]` written as a decimal, in parts per million.
fn parse_ratio_ppm(entry: &ConfigEntry) -> Result<u32, ConfigError> {
    let value: f64 = entry
        .value
        .trim()
        .parse()
        .map_err(|_| invalid(entry, "a decimal between 0 and 1"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(invalid(entry, "a decimal between 0 and 1"));
    }
    Ok((value * 1_000_000.0).round() as u32)
}

impl TopicConfig {
    /// Parses a full config map: every name known, none repeated, values well-formed.
    pub fn from_entries(entries: &[ConfigEntry]) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        for (index, entry) in entries.iter().enumerate() {
            if entries[..index]
                .iter()
                .any(|earlier| earlier.name == entry.name)
            {
                return Err(ConfigError::DuplicateName {
                    name: entry.name.clone(),
                });
            }
            config.set(entry)?;
        }
        Ok(config)
    }

    /// Sets one entry, replacing any earlier value.
    pub fn set(&mut self, entry: &ConfigEntry) -> Result<(), ConfigError> {
        let value = entry.value.as_str();
        match entry.name.as_str() {
            name::RETENTION_BYTES => self.retention_bytes = Some(parse_limit(entry)?),
            name::RETENTION_MS => self.retention_ms = Some(parse_limit(entry)?),
            name::SEGMENT_BYTES => self.segment_bytes = Some(parse_positive(entry)?),
            name::SEGMENT_MS => self.segment_ms = Some(parse_positive(entry)?),
            name::GROUP_COMMIT_BYTES => self.group_commit_bytes = Some(parse_positive(entry)?),
            name::GROUP_COMMIT_US => self.group_commit_us = Some(parse_positive(entry)?),
            name::MAX_MESSAGE_BYTES => self.max_message_bytes = Some(parse_positive(entry)?),
            name::DURABILITY => {
                let durability = Durability::parse(value)
                    .ok_or_else(|| invalid(entry, "\"fsync-every-append\" or \"group-commit\""))?;
                self.durability = Some(durability);
            }
            name::CLEANUP_POLICY => {
                let policy = CleanupPolicy::parse(value).ok_or_else(|| {
                    invalid(entry, "\"delete\", \"compact\" or \"compact,delete\"")
                })?;
                self.cleanup_policy = Some(policy);
            }
            name::MIN_CLEANABLE_DIRTY_RATIO => {
                self.min_cleanable_dirty_ratio_ppm = Some(parse_ratio_ppm(entry)?)
            }
            name::MIN_COMPACTION_LAG_MS => self.min_compaction_lag_ms = Some(parse_count(entry)?),
            name::MAX_COMPACTION_LAG_MS => {
                self.max_compaction_lag_ms = Some(parse_positive(entry)?)
            }
            name::DELETE_RETENTION_MS => self.delete_retention_ms = Some(parse_count(entry)?),
            name::WRITE_CACHING => self.write_caching = Some(parse_bool(entry)?),
            _ => {
                return Err(ConfigError::UnknownName {
                    name: entry.name.clone(),
                })
            }
        }
        Ok(())
    }

    /// Returns `name` to the broker default.
    pub fn reset(&mut self, config_name: &str) -> Result<(), ConfigError> {
        match config_name {
            name::RETENTION_BYTES => self.retention_bytes = None,
            name::RETENTION_MS => self.retention_ms = None,
            name::SEGMENT_BYTES => self.segment_bytes = None,
            name::SEGMENT_MS => self.segment_ms = None,
            name::DURABILITY => self.durability = None,
            name::GROUP_COMMIT_BYTES => self.group_commit_bytes = None,
            name::GROUP_COMMIT_US => self.group_commit_us = None,
            name::MAX_MESSAGE_BYTES => self.max_message_bytes = None,
            name::CLEANUP_POLICY => self.cleanup_policy = None,
            name::MIN_CLEANABLE_DIRTY_RATIO => self.min_cleanable_dirty_ratio_ppm = None,
            name::MIN_COMPACTION_LAG_MS => self.min_compaction_lag_ms = None,
            name::MAX_COMPACTION_LAG_MS => self.max_compaction_lag_ms = None,
            name::DELETE_RETENTION_MS => self.delete_retention_ms = None,
            name::WRITE_CACHING => self.write_caching = None,
            _ => {
                return Err(ConfigError::UnknownName {
                    name: config_name.to_owned(),
                })
            }
        }
        Ok(())
    }

    /// The set values as a config map, in `name::ALL` order.
    pub fn to_entries(&self) -> Vec<ConfigEntry> {
        let limit = |value: u64| {
            if value == u64::MAX {
                UNLIMITED.to_owned()
            } else {
                value.to_string()
            }
        };
        let values = [
            self.retention_bytes.map(limit),
            self.retention_ms.map(limit),
            self.segment_bytes.map(|value| value.to_string()),
            self.segment_ms.map(|value| value.to_string()),
            self.durability.map(|value| value.as_str().to_owned()),
            self.group_commit_bytes.map(|value| value.to_string()),
            self.group_commit_us.map(|value| value.to_string()),
            self.max_message_bytes.map(|value| value.to_string()),
            self.cleanup_policy.map(|policy| policy.as_str().to_owned()),
            self.min_cleanable_dirty_ratio_ppm
                .map(|ppm| (f64::from(ppm) / 1_000_000.0).to_string()),
            self.min_compaction_lag_ms.map(|value| value.to_string()),
            self.max_compaction_lag_ms.map(|value| value.to_string()),
            self.delete_retention_ms.map(|value| value.to_string()),
            self.write_caching.map(|value| value.to_string()),
        ];
        name::ALL
            .iter()
            .zip(values)
            .filter_map(|(name, value)| Some(ConfigEntry::new(*name, value?)))
            .collect()
    }
}

fn invalid(entry: &ConfigEntry, expected: &'static str) -> ConfigError {
    ConfigError::InvalidValue {
        name: entry.name.clone(),
        value: entry.value.clone(),
        expected,
    }
}

/// `true` or `false`, as Kafka writes booleans (any case).
fn parse_bool(entry: &ConfigEntry) -> Result<bool, ConfigError> {
    match entry.value.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(entry, "\"true\" or \"false\"")),
    }
}

fn parse_positive(entry: &ConfigEntry) -> Result<u64, ConfigError> {
    match entry.value.parse::<u64>() {
        Ok(value) if value > 0 => Ok(value),
        _ => Err(invalid(entry, "a positive integer")),
    }
}

fn parse_count(entry: &ConfigEntry) -> Result<u64, ConfigError> {
    entry
        .value
        .parse::<u64>()
        .map_err(|_| invalid(entry, "a non-negative integer"))
}

fn parse_limit(entry: &ConfigEntry) -> Result<u64, ConfigError> {
    if entry.value == UNLIMITED {
        return Ok(u64::MAX);
    }
    match entry.value.parse::<u64>() {
        Ok(value) if value < u64::MAX => Ok(value),
        _ => Err(invalid(entry, "a non-negative integer or -1 for unlimited")),
    }
}
