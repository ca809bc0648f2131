//! Per-topic configuration as users write it (string keys and values, Kafka-style names) and as
//! the catalog stores it: only the keys a user set, each parsed and range-checked here.
//!
//! Unset keys fall back to the storage engine's defaults when a partition is opened (see
//! `shard::partitions`); this file does not know those defaults.

use std::collections::BTreeMap;

// The names are the protocol's (one list for the wire, the catalog and the CLI).
pub use spate_protocol::api::config::name::{
    CLEANUP_POLICY, DELETE_RETENTION_MS, DURABILITY, GROUP_COMMIT_BYTES, GROUP_COMMIT_US,
    MAX_COMPACTION_LAG_MS, MAX_MESSAGE_BYTES, MIN_CLEANABLE_DIRTY_RATIO, MIN_COMPACTION_LAG_MS,
    RETENTION_BYTES, RETENTION_MS, SEGMENT_BYTES, SEGMENT_MS, WRITE_CACHING,
};
pub use spate_storage::{CleanupPolicy, DirtyRatio};

/// Every key, in the order errors list them.
pub const KEYS: [&str; 14] = spate_protocol::api::config::name::ALL;

/// In-sync replicas an acks=all write needs (Kafka's name). A cluster's topics only: a single
/// broker's partitions have one replica. Not in [`KEYS`] (the native protocol's list) until the
/// wire names it; the metadata image checks it against the replication factor.
pub const MIN_INSYNC_REPLICAS: &str = "min.insync.replicas";
/// Largest `min.insync.replicas`: Kafka's type for it is a 32-bit int, replication factors fit
/// 16 bits.
pub const MIN_INSYNC_REPLICAS_MAX: u64 = i16::MAX as u64;

/// Largest `*.ms` compaction setting: Kafka's type for them is a signed 64-bit long.
pub const COMPACTION_MS_MAX: u64 = i64::MAX as u64;

/// Values of [`DURABILITY`].
pub const DURABILITY_EVERY_APPEND: &str = "fsync-every-append";
pub const DURABILITY_GROUP_COMMIT: &str = "group-commit";

/// Retention value meaning "keep everything", as in Kafka.
pub const RETENTION_UNLIMITED: i64 = -1;

/// Smallest segment a topic may ask for: below this, segment files and their indexes dominate.
pub const SEGMENT_BYTES_MIN: u64 = 64 * 1024;
/// Largest segment: offsets inside a segment are 32-bit in the index.
pub const SEGMENT_BYTES_MAX: u64 = 1 << 31;
/// Longest group-commit interval: beyond it acks=all latency stops making sense.
pub const GROUP_COMMIT_US_MAX: u64 = 10_000_000;
/// Largest `max.message.bytes`: Kafka's type for it is a 32-bit int. The broker's own batch
/// limit (from its frame limit) and the segment size cap it further when a partition opens.
pub const MAX_MESSAGE_BYTES_MAX: u64 = i32::MAX as u64;
/// Most config entries one request may carry.
pub const CONFIG_ENTRIES_MAX: usize = 64;

/// How a topic's appends are made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurabilityPolicy {
    /// fdatasync after every append.
    EveryAppend,
    /// One fdatasync covers every append since the last one.
    GroupCommit,
}

/// A topic's settings; `None` means "the storage default".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfig {
    /// Bytes kept per partition: `None` the storage default, `Some(RETENTION_UNLIMITED)` keep
    /// everything, else a byte count.
    pub retention_bytes: Option<i64>,
    /// Age limit in milliseconds, with the same convention.
    pub retention_ms: Option<i64>,
    pub segment_bytes: Option<u64>,
    pub segment_ms: Option<u64>,
    pub durability: Option<DurabilityPolicy>,
    pub group_commit_bytes: Option<u64>,
    pub group_commit_us: Option<u64>,
    /// Largest batch a producer may send, without Spate's batch header (`MAX_MESSAGE_BYTES`).
    pub max_message_bytes: Option<u64>,
    /// Retention, compaction or both (`CLEANUP_POLICY`).
    pub cleanup_policy: Option<CleanupPolicy>,
    pub min_cleanable_dirty_ratio: Option<DirtyRatio>,
    pub min_compaction_lag_ms: Option<u64>,
    pub max_compaction_lag_ms: Option<u64>,
    pub delete_retention_ms: Option<u64>,
    /// `None`: a majority of the replication factor (`MIN_INSYNC_REPLICAS`).
    pub min_insync_replicas: Option<u16>,
    /// Readers see written, not yet durable, batches (`WRITE_CACHING`); `None`: they do not.
    pub write_caching: Option<bool>,
}

/// Why a topic configuration entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicConfigError {
    #[error("unknown topic config key {key:?} (the keys are {})", KEYS.join(", "))]
    UnknownKey { key: String },
    #[error("topic config {key}={value:?} is invalid: {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("more than {limit} topic config entries")]
    TooManyEntries { limit: usize },
}

impl TopicConfig {
    /// Parses user entries. Retention values of `-1` mean unlimited, as in Kafka.
    pub fn from_map(entries: &BTreeMap<String, String>) -> Result<Self, TopicConfigError> {
        Self::default().with_entries(
            entries
                .iter()
                .map(|(key, value)| (key.as_str(), value.as_str())),
        )
    }

    /// This configuration with `entries` applied on top (alter semantics: a key set again
    /// replaces its value; an empty value removes the key, back to the default).
    pub fn with_entries<'a>(
        &self,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, TopicConfigError> {
        let mut config = self.clone();
        for (count, (key, value)) in entries.into_iter().enumerate() {
            if count >= CONFIG_ENTRIES_MAX {
                return Err(TopicConfigError::TooManyEntries {
                    limit: CONFIG_ENTRIES_MAX,
                });
            }
            config.set(key, value)?;
        }
        Ok(config)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), TopicConfigError> {
        let value = value.trim();
        let clear = value.is_empty();
        match key {
            RETENTION_BYTES => {
                self.retention_bytes = if clear {
                    None
                } else {
                    parse_retention(key, value)?
                }
            }
            RETENTION_MS => {
                self.retention_ms = if clear {
                    None
                } else {
                    parse_retention(key, value)?
                }
            }
            SEGMENT_BYTES => {
                self.segment_bytes = if clear {
                    None
                } else {
                    Some(parse_range(
                        key,
                        value,
                        SEGMENT_BYTES_MIN,
                        SEGMENT_BYTES_MAX,
                    )?)
                }
            }
            SEGMENT_MS => {
                self.segment_ms = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, u64::MAX)?)
                }
            }
            DURABILITY => {
                self.durability = match value {
                    "" => None,
                    DURABILITY_EVERY_APPEND => Some(DurabilityPolicy::EveryAppend),
                    DURABILITY_GROUP_COMMIT => Some(DurabilityPolicy::GroupCommit),
                    _ => {
                        return Err(invalid(
                            key,
                            value,
                            format!(
                                "expected {DURABILITY_EVERY_APPEND} or {DURABILITY_GROUP_COMMIT}"
                            ),
                        ))
                    }
                }
            }
            GROUP_COMMIT_BYTES => {
                self.group_commit_bytes = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, u64::MAX)?)
                }
            }
            GROUP_COMMIT_US => {
                self.group_commit_us = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, GROUP_COMMIT_US_MAX)?)
                }
            }
            MAX_MESSAGE_BYTES => {
                self.max_message_bytes = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, MAX_MESSAGE_BYTES_MAX)?)
                }
            }
            CLEANUP_POLICY => {
                self.cleanup_policy = if clear {
                    None
                } else {
                    Some(CleanupPolicy::parse(value).ok_or_else(|| {
                        invalid(
                            key,
                            value,
                            "expected delete, compact or compact,delete".to_string(),
                        )
                    })?)
                }
            }
            MIN_CLEANABLE_DIRTY_RATIO => {
                self.min_cleanable_dirty_ratio = if clear {
                    None
                } else {
                    Some(DirtyRatio::parse(value).ok_or_else(|| {
                        invalid(key, value, "expected a decimal from 0 to 1".to_string())
                    })?)
                }
            }
            MIN_COMPACTION_LAG_MS => {
                self.min_compaction_lag_ms = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 0, COMPACTION_MS_MAX)?)
                }
            }
            MAX_COMPACTION_LAG_MS => {
                self.max_compaction_lag_ms = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, COMPACTION_MS_MAX)?)
                }
            }
            DELETE_RETENTION_MS => {
                self.delete_retention_ms = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 0, COMPACTION_MS_MAX)?)
                }
            }
            MIN_INSYNC_REPLICAS => {
                self.min_insync_replicas = if clear {
                    None
                } else {
                    Some(parse_range(key, value, 1, MIN_INSYNC_REPLICAS_MAX)? as u16)
                }
            }
            WRITE_CACHING => {
                self.write_caching = if clear {
                    None
                } else {
                    match value.to_ascii_lowercase().as_str() {
                        "true" => Some(true),
                        "false" => Some(false),
                        _ => return Err(invalid(key, value, "expected true or false".to_string())),
                    }
                }
            }
            _ => {
                return Err(TopicConfigError::UnknownKey {
                    key: key.chars().take(256).collect(),
                })
            }
        }
        Ok(())
    }

    /// The entries a user set, as stored in the catalog and shown by DescribeTopic.
    pub fn to_map(&self) -> BTreeMap<String, String> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                map.insert(key.to_string(), value);
            }
        };
        put(
            RETENTION_BYTES,
            self.retention_bytes.map(|value| value.to_string()),
        );
        put(
            RETENTION_MS,
            self.retention_ms.map(|value| value.to_string()),
        );
        put(
            SEGMENT_BYTES,
            self.segment_bytes.map(|value| value.to_string()),
        );
        put(SEGMENT_MS, self.segment_ms.map(|value| value.to_string()));
        put(
            DURABILITY,
            self.durability.map(|policy| {
                match policy {
                    DurabilityPolicy::EveryAppend => DURABILITY_EVERY_APPEND,
                    DurabilityPolicy::GroupCommit => DURABILITY_GROUP_COMMIT,
                }
                .to_string()
            }),
        );
        put(
            GROUP_COMMIT_BYTES,
            self.group_commit_bytes.map(|value| value.to_string()),
        );
        put(
            GROUP_COMMIT_US,
            self.group_commit_us.map(|value| value.to_string()),
        );
        put(
            MAX_MESSAGE_BYTES,
            self.max_message_bytes.map(|value| value.to_string()),
        );
        put(
            CLEANUP_POLICY,
            self.cleanup_policy
                .map(|policy| policy.as_str().to_string()),
        );
        put(
            MIN_CLEANABLE_DIRTY_RATIO,
            self.min_cleanable_dirty_ratio
                .map(|ratio| ratio.to_string()),
        );
        put(
            MIN_COMPACTION_LAG_MS,
            self.min_compaction_lag_ms.map(|value| value.to_string()),
        );
        put(
            MAX_COMPACTION_LAG_MS,
            self.max_compaction_lag_ms.map(|value| value.to_string()),
        );
        put(
            DELETE_RETENTION_MS,
            self.delete_retention_ms.map(|value| value.to_string()),
        );
        put(
            MIN_INSYNC_REPLICAS,
            self.min_insync_replicas.map(|value| value.to_string()),
        );
        put(
            WRITE_CACHING,
            self.write_caching.map(|value| value.to_string()),
        );
        map
    }
}

fn invalid(key: &str, value: &str, reason: String) -> TopicConfigError {
    TopicConfigError::InvalidValue {
        key: key.to_string(),
        value: value.chars().take(256).collect(),
        reason,
    }
}

/// `-1` is unlimited; other negatives are errors.
fn parse_retention(key: &str, value: &str) -> Result<Option<i64>, TopicConfigError> {
    let number: i64 = value
        .parse()
        .map_err(|_| invalid(key, value, "not an integer".to_string()))?;
    if number < RETENTION_UNLIMITED {
        return Err(invalid(
            key,
            value,
            "negative (use -1 for unlimited)".to_string(),
        ));
    }
    Ok(Some(number))
}

fn parse_range(
    key: &str,
    value: &str,
    minimum: u64,
    maximum: u64,
) -> Result<u64, TopicConfigError> {
    let number: u64 = value
        .parse()
        .map_err(|_| invalid(key, value, "not a non-negative integer".to_string()))?;
    if number < minimum || number > maximum {
        return Err(invalid(
            key,
            value,
            format!("must be in {minimum}..={maximum}"),
        ));
    }
    Ok(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
        entries
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn entries_round_trip_through_the_stored_map() {
        let entries = map(&[
            (RETENTION_BYTES, "1048576"),
            (RETENTION_MS, "60000"),
            (SEGMENT_BYTES, "1048576"),
            (DURABILITY, DURABILITY_GROUP_COMMIT),
            (GROUP_COMMIT_US, "2000"),
            (MAX_MESSAGE_BYTES, "65536"),
            (CLEANUP_POLICY, "compact,delete"),
            (MIN_CLEANABLE_DIRTY_RATIO, "0.25"),
            (MIN_COMPACTION_LAG_MS, "0"),
            (MAX_COMPACTION_LAG_MS, "9223372036854775807"),
            (DELETE_RETENTION_MS, "1000"),
            (MIN_INSYNC_REPLICAS, "2"),
            (WRITE_CACHING, "true"),
        ]);
        let config = TopicConfig::from_map(&entries).unwrap();
        assert_eq!(config.min_insync_replicas, Some(2));
        assert_eq!(config.retention_bytes, Some(1_048_576));
        assert_eq!(config.cleanup_policy, Some(CleanupPolicy::COMPACT_DELETE));
        assert_eq!(
            config
                .min_cleanable_dirty_ratio
                .map(DirtyRatio::parts_per_million),
            Some(250_000)
        );
        assert_eq!(config.durability, Some(DurabilityPolicy::GroupCommit));
        assert_eq!(config.to_map(), entries);
    }

    #[test]
    fn minus_one_retention_means_unlimited() {
        let config = TopicConfig::from_map(&map(&[(RETENTION_MS, "-1")])).unwrap();
        assert_eq!(config.retention_ms, Some(RETENTION_UNLIMITED));
        assert!(TopicConfig::from_map(&map(&[(RETENTION_MS, "-2")])).is_err());
    }

    #[test]
    fn unknown_keys_and_out_of_range_values_are_refused() {
        let unknown = TopicConfig::from_map(&map(&[("unclean.leader.election", "x")])).unwrap_err();
        assert!(matches!(unknown, TopicConfigError::UnknownKey { .. }));
        // The refusal lists what would have been accepted.
        for key in KEYS {
            assert!(unknown.to_string().contains(key), "{unknown}");
        }
        assert!(matches!(
            TopicConfig::from_map(&map(&[(SEGMENT_BYTES, "10")])),
            Err(TopicConfigError::InvalidValue { .. })
        ));
        for (key, value) in [
            (DURABILITY, "maybe"),
            (CLEANUP_POLICY, "compact,compact"),
            (CLEANUP_POLICY, "none"),
            (MIN_CLEANABLE_DIRTY_RATIO, "1.01"),
            (MIN_COMPACTION_LAG_MS, "-1"),
            (MAX_COMPACTION_LAG_MS, "0"),
            (DELETE_RETENTION_MS, "9223372036854775808"),
            (MIN_INSYNC_REPLICAS, "0"),
            (WRITE_CACHING, "yes"),
            (MIN_INSYNC_REPLICAS, "32768"),
        ] {
            assert!(
                matches!(
                    TopicConfig::from_map(&map(&[(key, value)])),
                    Err(TopicConfigError::InvalidValue { .. })
                ),
                "{key}={value}"
            );
        }
    }

    #[test]
    fn altering_replaces_set_keys_and_an_empty_value_restores_the_default() {
        let config =
            TopicConfig::from_map(&map(&[(RETENTION_BYTES, "100"), (SEGMENT_MS, "5")])).unwrap();
        let altered = config
            .with_entries([(RETENTION_BYTES, "200"), (SEGMENT_MS, "")])
            .unwrap();
        assert_eq!(altered.retention_bytes, Some(200));
        assert_eq!(altered.segment_ms, None);
    }
}
