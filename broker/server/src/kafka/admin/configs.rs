//! Topic and broker configs as Kafka clients read and write them (DescribeConfigs, AlterConfigs,
//! IncrementalAlterConfigs, the configs of CreateTopics): Kafka's names, types, sources and
//! synonyms over the catalog's topic config (`catalog::topic_config`).
//!
//! A topic config a Kafka client names is one of three kinds:
//! - a catalog key under Kafka's own name (`retention.ms`, `retention.bytes`, `segment.bytes`,
//!   `segment.ms`, `max.message.bytes`, `cleanup.policy` and the compaction settings
//!   `min.cleanable.dirty.ratio`, `min.compaction.lag.ms`, `max.compaction.lag.ms`,
//!   `delete.retention.ms`): stored, enforced, described with its Kafka type and its
//!   broker-level synonym (`log.retention.ms`, `message.max.bytes`, ...); `cleanup.policy`, a
//!   list, also takes IncrementalAlterConfigs' APPEND and SUBTRACT;
//! - a catalog key Kafka does not have (`durability`, `group.commit.bytes`, `group.commit.us`:
//!   Spate's fsync policy, where Kafka has `flush.messages`/`flush.ms`, which mean something
//!   else; `write.caching`, Redpanda's name for what readers see): described like the others under Spate's names, with Spate's documentation, and its
//!   only synonym is its own default;
//! - `min.insync.replicas`, a catalog key whose default depends on the topic: a majority of its
//!   replication factor (1 for a single broker's one replica; Spate's choice over Kafka's 1, see
//!   docs/replication.md). Whether a value fits the topic's replication factor is the caller's
//!   check (`kafka::admin`), which knows the topic; the metadata image checks it again;
//! - a Kafka config that Spate honours in exactly one way (`compression.type=producer`,
//!   `message.timestamp.type=CreateTime`): described read-only at that value; setting it to that
//!   value is accepted and changes nothing (clients and tools send these at creation, and Spate
//!   does what they ask); any other value is refused with the reason. Each row says why.
//!
//! Every other name is refused (INVALID_CONFIG naming the key), never accepted and ignored.
//! Broker configs (resource type BROKER) are the broker-level settings clients read, all
//! read-only: Spate's configuration is set at start-up.
//!
//! Pure functions of the catalog's config and the broker's configuration: no I/O.

use std::collections::BTreeMap;

use spate_kafka_protocol::kafka_protocol::ResponseError;

use spate_metadata::default_min_insync_replicas;

use crate::catalog::topic_config::{self, CleanupPolicy, TopicConfig};
use crate::cluster::topics::INTERNAL_TOPIC_REPLICATION_FACTOR_MAX;
use crate::config::{defaults, Config, KafkaConfig};
use crate::group::GroupLimits;
use crate::handlers::admin::topic_defaults;
use crate::storage::LogConfig;

/// Kafka's config resource types (`ConfigResource.Type`).
pub(crate) mod resource_type {
    pub const TOPIC: i8 = 2;
    pub const BROKER: i8 = 4;
    pub const BROKER_LOGGER: i8 = 8;
}

/// Kafka's `ConfigDef.Type` as DescribeConfigs v3+ sends it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
}

/// Where a config's value comes from (Kafka's `ConfigSource`; only those Spate has).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConfigSource {
    /// Set on the topic (Kafka's DYNAMIC_TOPIC_CONFIG).
    Topic = 1,
    /// From the broker's configuration, set by its operator (file, flag or environment).
    StaticBroker = 4,
    /// Spate's built-in default.
    Default = 5,
}

/// Kafka's `IncrementalAlterConfigs` operations.
pub(crate) mod operation {
    pub const SET: i8 = 0;
    pub const DELETE: i8 = 1;
    pub const APPEND: i8 = 2;
    pub const SUBTRACT: i8 = 3;
}

/// How Spate holds a topic config a Kafka client may name.
#[derive(Debug, Clone, Copy)]
enum Holding {
    /// A key of the catalog's topic config, under the same name.
    Catalog,
    /// `min.insync.replicas`: a catalog key whose default is a majority of the topic's
    /// replication factor.
    InSyncReplicas,
    /// A behaviour Spate has only one of: its value, and why another value is refused.
    Fixed {
        value: &'static str,
        refusal: &'static str,
    },
}

/// One topic config as Kafka clients see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TopicConfigDefinition {
    pub name: &'static str,
    pub config_type: ConfigType,
    /// The broker config whose value a topic without its own gets (Kafka's synonym); for
    /// Spate's own keys, the key itself.
    pub broker_name: &'static str,
    holding: Holding,
    pub documentation: &'static str,
}

/// Every topic config a Kafka client may name, in the order DescribeConfigs lists them.
pub(crate) const TOPIC_CONFIGS: [TopicConfigDefinition; 17] = [
    TopicConfigDefinition {
        name: topic_config::RETENTION_MS,
        config_type: ConfigType::Long,
        broker_name: "log.retention.ms",
        holding: Holding::Catalog,
        documentation: "Closed segments whose newest record is older than this many milliseconds are deleted; -1 keeps everything.",
    },
    TopicConfigDefinition {
        name: topic_config::RETENTION_BYTES,
        config_type: ConfigType::Long,
        broker_name: "log.retention.bytes",
        holding: Holding::Catalog,
        documentation: "The oldest closed segments are deleted while a partition holds more than this many bytes; -1 keeps everything.",
    },
    TopicConfigDefinition {
        name: topic_config::SEGMENT_BYTES,
        config_type: ConfigType::Int,
        broker_name: "log.segment.bytes",
        holding: Holding::Catalog,
        documentation: "The active segment rolls before an append would make it larger than this many bytes (64 KiB to 2 GiB).",
    },
    TopicConfigDefinition {
        name: topic_config::SEGMENT_MS,
        config_type: ConfigType::Long,
        broker_name: "log.roll.ms",
        holding: Holding::Catalog,
        documentation: "The active segment rolls once it has been open this many milliseconds and holds a batch.",
    },
    TopicConfigDefinition {
        name: topic_config::MAX_MESSAGE_BYTES,
        config_type: ConfigType::Int,
        broker_name: "message.max.bytes",
        holding: Holding::Catalog,
        documentation: "The largest record batch a producer may send, in bytes as Kafka counts it; never above the broker's frame limit or the segment size.",
    },
    TopicConfigDefinition {
        name: topic_config::CLEANUP_POLICY,
        config_type: ConfigType::List,
        broker_name: "log.cleanup.policy",
        holding: Holding::Catalog,
        documentation: "delete: closed segments are deleted by retention.ms and retention.bytes; compact: the log keeps at least the last record of every key (the compactor rewrites closed segments); compact,delete: both.",
    },
    TopicConfigDefinition {
        name: topic_config::MIN_CLEANABLE_DIRTY_RATIO,
        config_type: ConfigType::Double,
        broker_name: "log.cleaner.min.cleanable.ratio",
        holding: Holding::Catalog,
        documentation: "A compacted log is cleaned once the records written since its last cleaning are at least this share of it (0 to 1).",
    },
    TopicConfigDefinition {
        name: topic_config::MIN_COMPACTION_LAG_MS,
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.min.compaction.lag.ms",
        holding: Holding::Catalog,
        documentation: "A record stays uncompacted for at least this many milliseconds after it was written.",
    },
    TopicConfigDefinition {
        name: topic_config::MAX_COMPACTION_LAG_MS,
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.max.compaction.lag.ms",
        holding: Holding::Catalog,
        documentation: "A record older than this many milliseconds is compacted whatever the dirty ratio.",
    },
    TopicConfigDefinition {
        name: topic_config::DELETE_RETENTION_MS,
        config_type: ConfigType::Long,
        broker_name: "log.cleaner.delete.retention.ms",
        holding: Holding::Catalog,
        documentation: "Tombstones (null values) and transaction markers of a compacted topic are kept this many milliseconds after compaction first reached them, so that consumers reading from the start see the deletion.",
    },
    TopicConfigDefinition {
        name: "compression.type",
        config_type: ConfigType::String,
        broker_name: "compression.type",
        holding: Holding::Fixed {
            value: "producer",
            // Batches are stored as received and never re-encoded (an architecture invariant),
            // which is exactly Kafka's `producer`.
            refusal: "Spate stores every batch as its producer compressed it and never recompresses (compression.type=producer)",
        },
        documentation: "producer: batches are stored as the producer compressed them, never recompressed.",
    },
    TopicConfigDefinition {
        name: topic_config::MIN_INSYNC_REPLICAS,
        config_type: ConfigType::Int,
        broker_name: topic_config::MIN_INSYNC_REPLICAS,
        holding: Holding::InSyncReplicas,
        documentation: "In-sync replicas an acks=all write needs (1 up to the replication factor); fewer in sync and the write is refused with NOT_ENOUGH_REPLICAS. Default: a majority of the topic's replication factor (1 for a single broker).",
    },
    TopicConfigDefinition {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        broker_name: "log.message.timestamp.type",
        holding: Holding::Fixed {
            value: "CreateTime",
            // The broker never rewrites a batch (an architecture invariant), so the producer's
            // timestamps are the ones kept: Kafka's CreateTime.
            refusal: "Spate keeps the producer's timestamps and never rewrites a batch (message.timestamp.type=CreateTime)",
        },
        documentation: "CreateTime: the producer's timestamps are kept as sent.",
    },
    TopicConfigDefinition {
        name: topic_config::DURABILITY,
        config_type: ConfigType::String,
        broker_name: topic_config::DURABILITY,
        holding: Holding::Catalog,
        documentation: "Spate's fsync policy (Kafka has none of the same meaning): fsync-every-append syncs before each acks=all answer; group-commit lets appends arriving together share one fsync, acks=all still answered only after it.",
    },
    TopicConfigDefinition {
        name: topic_config::GROUP_COMMIT_BYTES,
        config_type: ConfigType::Long,
        broker_name: topic_config::GROUP_COMMIT_BYTES,
        holding: Holding::Catalog,
        documentation: "Spate's group commit: acks=1 data unsynced for more than this many bytes is fsynced.",
    },
    TopicConfigDefinition {
        name: topic_config::GROUP_COMMIT_US,
        config_type: ConfigType::Long,
        broker_name: topic_config::GROUP_COMMIT_US,
        holding: Holding::Catalog,
        documentation: "Spate's group commit: acks=1 data stays unsynced at most this many microseconds.",
    },
    TopicConfigDefinition {
        name: topic_config::WRITE_CACHING,
        config_type: ConfigType::Boolean,
        broker_name: topic_config::WRITE_CACHING,
        holding: Holding::Catalog,
        documentation: "Redpanda's write caching: true lets consumers read a record once it is written (acks=1 answered), before its fsync, as Kafka serves the page cache; a power loss or a failed fsync can then take away records a consumer already read. false (the default): consumers see only fsynced records. acks=all answers wait for the fsync either way. Replicated topics show only records every in-sync replica has synced, whatever this says.",
    },
];

/// Kafka topic configs clients may know that Spate has in another form: the refusal points to it.
const KAFKA_ONLY_HINTS: &[(&str, &str)] = &[
    ("flush.messages", "Spate's fsync policy is the topic config durability (fsync-every-append or group-commit)"),
    ("flush.ms", "Spate's fsync policy is the topic config durability, with group.commit.us for group-commit"),
    ("log.retention.hours", "use retention.ms"),
];

/// Why a config change was refused: the Kafka error and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConfigRefusal {
    pub error: ResponseError,
    pub message: String,
}

impl ConfigRefusal {
    fn invalid_config(message: String) -> Self {
        Self {
            error: ResponseError::InvalidConfig,
            message,
        }
    }

    fn invalid_request(message: String) -> Self {
        Self {
            error: ResponseError::InvalidRequest,
            message,
        }
    }
}

/// One change a client asks for, by Kafka's operations.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ConfigChange<'a> {
    Set {
        name: &'a str,
        value: Option<&'a str>,
    },
    Delete {
        name: &'a str,
    },
    Append {
        name: &'a str,
        value: Option<&'a str>,
    },
    Subtract {
        name: &'a str,
        value: Option<&'a str>,
    },
}

impl<'a> ConfigChange<'a> {
    pub(crate) fn name(&self) -> &'a str {
        match self {
            Self::Set { name, .. }
            | Self::Delete { name }
            | Self::Append { name, .. }
            | Self::Subtract { name, .. } => name,
        }
    }
}

fn definition(name: &str) -> Result<&'static TopicConfigDefinition, ConfigRefusal> {
    if let Some(found) = TOPIC_CONFIGS.iter().find(|config| config.name == name) {
        return Ok(found);
    }
    let shown: String = name.chars().take(256).collect();
    let hint = KAFKA_ONLY_HINTS
        .iter()
        .find(|(kafka_name, _)| *kafka_name == name)
        .map_or(String::new(), |(_, hint)| format!(": {hint}"));
    let known: Vec<&str> = TOPIC_CONFIGS.iter().map(|config| config.name).collect();
    Err(ConfigRefusal::invalid_config(format!(
        "Spate has no topic config {shown:?}{hint} (the topic configs are {})",
        known.join(", ")
    )))
}

/// `config` with `changes` applied in order, or why one is refused (nothing applied then).
/// A name may appear once (Kafka refuses duplicates with INVALID_REQUEST).
pub(crate) fn apply_changes<'a>(
    config: &TopicConfig,
    changes: impl IntoIterator<Item = ConfigChange<'a>>,
) -> Result<TopicConfig, ConfigRefusal> {
    let mut changed = config.clone();
    let mut seen: Vec<&str> = Vec::new();
    for (count, change) in changes.into_iter().enumerate() {
        if count >= topic_config::CONFIG_ENTRIES_MAX {
            return Err(ConfigRefusal::invalid_request(format!(
                "more than {} config entries",
                topic_config::CONFIG_ENTRIES_MAX
            )));
        }
        let name = change.name();
        if seen.contains(&name) {
            return Err(ConfigRefusal::invalid_request(format!(
                "config {:?} is named more than once",
                name.chars().take(256).collect::<String>()
            )));
        }
        seen.push(name);
        changed = apply_change(&changed, change)?;
    }
    Ok(changed)
}

fn apply_change(
    config: &TopicConfig,
    change: ConfigChange<'_>,
) -> Result<TopicConfig, ConfigRefusal> {
    let definition = definition(change.name())?;
    let name = definition.name;
    let null = || {
        ConfigRefusal::invalid_config(format!(
            "config {name} has a null value; delete it to return it to its default"
        ))
    };
    match change {
        ConfigChange::Set { value, .. } => {
            let value = value.ok_or_else(null)?;
            set(config, definition, value)
        }
        ConfigChange::Delete { .. } => match definition.holding {
            Holding::Catalog | Holding::InSyncReplicas => catalog_entry(config, name, ""),
            // Its default is its only value.
            Holding::Fixed { .. } => Ok(config.clone()),
        },
        ConfigChange::Append { value, .. } | ConfigChange::Subtract { value, .. } => {
            let appending = matches!(change, ConfigChange::Append { .. });
            let operation = if appending { "APPEND" } else { "SUBTRACT" };
            if definition.config_type != ConfigType::List {
                return Err(ConfigRefusal::invalid_config(format!(
                    "{operation} applies to list configs only; {name} is not a list"
                )));
            }
            let value = value.ok_or_else(null)?;
            let items = list_items(value);
            match definition.holding {
                // The one catalog list: cleanup.policy. Kafka appends to (or subtracts from) the
                // value in force, the topic's or the default.
                Holding::Catalog => {
                    let current = config
                        .cleanup_policy
                        .unwrap_or(LogConfig::default().cleanup_policy);
                    let (mut delete, mut compact) = (current.delete, current.compact);
                    for item in &items {
                        let slot = match item.to_ascii_lowercase().as_str() {
                            "delete" => &mut delete,
                            "compact" => &mut compact,
                            _ => {
                                return Err(ConfigRefusal::invalid_config(format!(
                                    "{name} cannot take {item:?}: its values are delete and compact"
                                )))
                            }
                        };
                        *slot = appending;
                    }
                    if !delete && !compact {
                        return Err(ConfigRefusal::invalid_config(format!(
                            "{name} cannot be empty: it must keep delete, compact or both"
                        )));
                    }
                    let policy = CleanupPolicy { delete, compact };
                    catalog_entry(config, name, policy.as_str())
                }
                // Not a list: refused above.
                Holding::InSyncReplicas => Err(ConfigRefusal::invalid_config(format!(
                    "{operation} applies to list configs only; {name} is not a list"
                ))),
                Holding::Fixed {
                    value: only,
                    refusal,
                } => {
                    if appending && items.iter().any(|item| !item.eq_ignore_ascii_case(only)) {
                        return Err(ConfigRefusal::invalid_config(format!(
                            "{name} cannot take {value:?}: {refusal}"
                        )));
                    }
                    if !appending && items.iter().any(|item| item.eq_ignore_ascii_case(only)) {
                        return Err(ConfigRefusal::invalid_config(format!(
                            "{name} cannot lose {only:?}: {refusal}"
                        )));
                    }
                    Ok(config.clone())
                }
            }
        }
    }
}

fn set(
    config: &TopicConfig,
    definition: &TopicConfigDefinition,
    value: &str,
) -> Result<TopicConfig, ConfigRefusal> {
    let name = definition.name;
    match definition.holding {
        Holding::Catalog | Holding::InSyncReplicas => {
            if value.trim().is_empty() {
                return Err(ConfigRefusal::invalid_config(format!(
                    "config {name} has an empty value; delete it to return it to its default"
                )));
            }
            catalog_entry(config, name, value)
        }
        Holding::Fixed {
            value: only,
            refusal,
        } => {
            let accepted = match definition.config_type {
                ConfigType::List => {
                    let items = list_items(value);
                    !items.is_empty() && items.iter().all(|item| item.eq_ignore_ascii_case(only))
                }
                _ => value.trim().eq_ignore_ascii_case(only),
            };
            if accepted {
                Ok(config.clone())
            } else {
                Err(ConfigRefusal::invalid_config(format!(
                    "{name}={:?} is not possible: {refusal}",
                    value.chars().take(256).collect::<String>()
                )))
            }
        }
    }
}

fn catalog_entry(
    config: &TopicConfig,
    name: &str,
    value: &str,
) -> Result<TopicConfig, ConfigRefusal> {
    config
        .with_entries([(name, value)])
        .map_err(|error| ConfigRefusal::invalid_config(error.to_string()))
}

fn list_items(value: &str) -> Vec<&str> {
    value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .collect()
}

/// One config as DescribeConfigs (and CreateTopics v5+) answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DescribedConfig {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
    pub read_only: bool,
    pub config_type: ConfigType,
    /// Where the value could come from, most specific first (the value's own source first).
    pub synonyms: Vec<Synonym>,
    pub documentation: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Synonym {
    pub name: String,
    pub value: String,
    pub source: ConfigSource,
}

/// What a topic without a key of its own gets, and from where.
#[derive(Debug, Clone)]
pub(crate) struct TopicDefaults {
    values: BTreeMap<String, String>,
    /// Whether the operator's frame limit (not Spate's default) bounds `max.message.bytes`.
    max_message_bytes_source: ConfigSource,
}

impl TopicDefaults {
    /// The defaults of this broker: the storage engine's, bounded by its batch limit.
    pub(crate) fn of(config: &Config) -> TopicDefaults {
        let values = topic_defaults(config.limits.batch_bytes_max())
            .into_iter()
            .map(|entry| (entry.name, entry.value))
            .collect();
        TopicDefaults {
            values,
            max_message_bytes_source: if config.limits.frame_bytes_max == defaults::FRAME_BYTES_MAX
            {
                ConfigSource::Default
            } else {
                ConfigSource::StaticBroker
            },
        }
    }

    /// The value a topic of `replication_factor` replicas gets without its own.
    fn default_of(
        &self,
        definition: &TopicConfigDefinition,
        replication_factor: usize,
    ) -> (String, ConfigSource) {
        match definition.holding {
            Holding::Fixed { value, .. } => (value.to_string(), ConfigSource::Default),
            Holding::InSyncReplicas => (
                default_min_insync_replicas(replication_factor.max(1)).to_string(),
                ConfigSource::Default,
            ),
            Holding::Catalog => {
                let value = self
                    .values
                    .get(definition.name)
                    .cloned()
                    .expect("every catalog key has a default (topic_defaults lists them all)");
                let source = if definition.name == topic_config::MAX_MESSAGE_BYTES {
                    self.max_message_bytes_source
                } else {
                    ConfigSource::Default
                };
                (value, source)
            }
        }
    }
}

/// Every topic config of a topic with `config` and `replication_factor` replicas per
/// partition, as DescribeConfigs lists them.
pub(crate) fn describe_topic(
    config: &TopicConfig,
    replication_factor: usize,
    defaults: &TopicDefaults,
) -> Vec<DescribedConfig> {
    let set = config.to_map();
    TOPIC_CONFIGS
        .iter()
        .map(|definition| {
            let (default_value, default_source) =
                defaults.default_of(definition, replication_factor);
            let mut synonyms = Vec::with_capacity(2);
            let own = set.get(definition.name);
            if let Some(value) = own {
                synonyms.push(Synonym {
                    name: definition.name.to_string(),
                    value: value.clone(),
                    source: ConfigSource::Topic,
                });
            }
            synonyms.push(Synonym {
                name: definition.broker_name.to_string(),
                value: default_value.clone(),
                source: default_source,
            });
            let (value, source) = match own {
                Some(value) => (value.clone(), ConfigSource::Topic),
                None => (default_value, default_source),
            };
            DescribedConfig {
                name: definition.name.to_string(),
                value,
                source,
                read_only: matches!(definition.holding, Holding::Fixed { .. }),
                config_type: definition.config_type,
                synonyms,
                documentation: definition.documentation,
            }
        })
        .collect()
}

/// The broker configs clients read, from this broker's configuration; all read-only.
/// `advertised` is the Kafka listener's advertised host and port.
pub(crate) fn describe_broker(config: &Config, kafka: &KafkaConfig) -> Vec<DescribedConfig> {
    let groups = GroupLimits::default();
    let topic = TopicDefaults::of(config);
    let cluster_mode = config.cluster.is_cluster_mode();
    // A topic created without a factor: the configured default, else Kafka's 3 (fewer when the
    // cluster has fewer brokers); a single broker holds the one replica.
    let replication_factor: u16 = if cluster_mode {
        config
            .limits
            .default_replication_factor
            .unwrap_or(INTERNAL_TOPIC_REPLICATION_FACTOR_MAX)
    } else {
        1
    };
    let internal_replication_factor = if cluster_mode {
        INTERNAL_TOPIC_REPLICATION_FACTOR_MAX
    } else {
        1
    };
    let topic_default = |name: &str| {
        let definition = TOPIC_CONFIGS
            .iter()
            .find(|definition| definition.name == name)
            .expect("a topic config");
        topic.default_of(definition, usize::from(replication_factor))
    };
    let (advertised_host, advertised_port) = kafka.advertised();
    let advertised = format!(
        "PLAINTEXT://{}:{advertised_port}",
        bracketed(&advertised_host)
    );
    let listener = format!(
        "PLAINTEXT://{}:{}",
        bracketed(&kafka.listen.ip().to_string()),
        kafka.listen.port()
    );
    let data_dir = config.data_dir.display().to_string();
    let node_id = if cluster_mode {
        config.cluster.node_id.to_string()
    } else {
        "0".to_string()
    };
    // (name, type, value, Spate's default for it: None when the value is Spate's only one)
    let settings: Vec<(&'static str, ConfigType, String, Option<String>, &'static str)> = vec![
        ("node.id", ConfigType::Int, node_id.clone(), None, "This broker's id (Spate's --node-id; 0 for a single broker)."),
        ("broker.id", ConfigType::Int, node_id, None, "This broker's id (Spate's --node-id; 0 for a single broker)."),
        ("process.roles", ConfigType::List, "broker,controller".into(), None, "Every Spate broker is a broker; in a cluster the seed brokers also vote in the metadata quorum, whose leader is the controller."),
        ("listeners", ConfigType::List, listener, None, "The Kafka listener (Spate's kafka_listen); the native protocol listens separately."),
        ("advertised.listeners", ConfigType::List, advertised, None, "What Metadata tells clients to connect to (Spate's kafka_advertised)."),
        ("log.dirs", ConfigType::List, data_dir, Some(defaults::DATA_DIR.to_string()), "Spate's data directory (data_dir): every topic's partitions live under it."),
        ("num.partitions", ConfigType::Int, kafka.default_partitions.to_string(), Some(defaults::KAFKA_DEFAULT_PARTITIONS.to_string()), "Partitions of a topic created without a count or by auto-creation (Spate's kafka_default_partitions)."),
        ("auto.create.topics.enable", ConfigType::Boolean, kafka.auto_create_topics.to_string(), Some(defaults::KAFKA_AUTO_CREATE_TOPICS.to_string()), "Whether Metadata creates a topic it does not find (Spate's kafka_auto_create_topics)."),
        ("default.replication.factor", ConfigType::Int, replication_factor.to_string(), None, "Replicas of a topic created without a factor (Spate's default_replication_factor; at most the active brokers; 1 for a single broker)."),
        ("offsets.topic.replication.factor", ConfigType::Short, internal_replication_factor.to_string(), None, "Replicas of __consumer_offsets: 3, or every broker when fewer (1 for a single broker)."),
        ("transaction.state.log.replication.factor", ConfigType::Short, internal_replication_factor.to_string(), None, "Replicas of __transaction_state: 3, or every broker when fewer (1 for a single broker)."),
        ("unclean.leader.election.enable", ConfigType::Boolean, "false".into(), None, "Never: a new leader always comes from the in-sync replicas."),
        ("delete.topic.enable", ConfigType::Boolean, "true".into(), None, "Topics can be deleted."),
        ("offsets.topic.num.partitions", ConfigType::Int, config.groups.offsets_topic_partitions.to_string(), Some(groups.offsets_topic_partitions.to_string()), "Partitions of __consumer_offsets (Spate's offsets_topic_partitions)."),
        ("group.min.session.timeout.ms", ConfigType::Int, config.groups.session_timeout_ms_min.to_string(), Some(groups.session_timeout_ms_min.to_string()), "Shortest session timeout a group member may ask for."),
        ("group.max.session.timeout.ms", ConfigType::Int, config.groups.session_timeout_ms_max.to_string(), Some(groups.session_timeout_ms_max.to_string()), "Longest session timeout a group member may ask for."),
        ("group.initial.rebalance.delay.ms", ConfigType::Int, config.groups.initial_rebalance_delay_ms.to_string(), Some(groups.initial_rebalance_delay_ms.to_string()), "How long the first rebalance of an empty group waits for more members."),
        ("socket.request.max.bytes", ConfigType::Int, config.limits.frame_bytes_max.to_string(), Some(defaults::FRAME_BYTES_MAX.to_string()), "Largest request in bytes (Spate's frame_bytes_max)."),
    ];
    let mut described: Vec<DescribedConfig> = settings
        .into_iter()
        .map(|(name, config_type, value, default, documentation)| {
            let source = match default {
                Some(default) if default != value => ConfigSource::StaticBroker,
                _ => ConfigSource::Default,
            };
            broker_entry(name, config_type, value, source, documentation)
        })
        .collect();
    // The topic defaults under their broker-level names.
    for definition in &TOPIC_CONFIGS {
        let (value, source) = topic_default(definition.name);
        described.push(broker_entry(
            definition.broker_name,
            definition.config_type,
            value,
            source,
            definition.documentation,
        ));
    }
    described
}

fn broker_entry(
    name: &'static str,
    config_type: ConfigType,
    value: String,
    source: ConfigSource,
    documentation: &'static str,
) -> DescribedConfig {
    DescribedConfig {
        name: name.to_string(),
        synonyms: vec![Synonym {
            name: name.to_string(),
            value: value.clone(),
            source,
        }],
        value,
        source,
        read_only: true,
        config_type,
        documentation,
    }
}

/// An IPv6 address in brackets, as a listener URL writes it.
fn bracketed(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicDefaults {
        TopicDefaults {
            values: topic_defaults(1 << 20)
                .into_iter()
                .map(|entry| (entry.name, entry.value))
                .collect(),
            max_message_bytes_source: ConfigSource::Default,
        }
    }

    fn set<'a>(name: &'a str, value: &'a str) -> ConfigChange<'a> {
        ConfigChange::Set {
            name,
            value: Some(value),
        }
    }

    #[test]
    fn every_catalog_key_is_described_once_with_its_default() {
        let described = describe_topic(&TopicConfig::default(), 1, &defaults());
        for key in topic_config::KEYS {
            let found: Vec<_> = described
                .iter()
                .filter(|config| config.name == key)
                .collect();
            assert_eq!(found.len(), 1, "{key}");
            assert_eq!(found[0].source, ConfigSource::Default);
            assert!(!found[0].read_only);
        }
        let retention = described
            .iter()
            .find(|config| config.name == "retention.ms")
            .unwrap();
        assert_eq!(retention.value, "604800000");
        assert_eq!(retention.synonyms.len(), 1);
        assert_eq!(retention.synonyms[0].name, "log.retention.ms");
        let cleanup = described
            .iter()
            .find(|config| config.name == "cleanup.policy")
            .unwrap();
        assert_eq!(
            (cleanup.value.as_str(), cleanup.read_only),
            ("delete", false)
        );
        let ratio = described
            .iter()
            .find(|config| config.name == "min.cleanable.dirty.ratio")
            .unwrap();
        assert_eq!(
            (ratio.value.as_str(), ratio.config_type),
            ("0.5", ConfigType::Double)
        );
    }

    #[test]
    fn a_topic_value_comes_first_with_the_broker_default_as_its_synonym() {
        let config = apply_changes(&TopicConfig::default(), [set("retention.ms", "1000")]).unwrap();
        let described = describe_topic(&config, 1, &defaults());
        let retention = described
            .iter()
            .find(|config| config.name == "retention.ms")
            .unwrap();
        assert_eq!(retention.value, "1000");
        assert_eq!(retention.source, ConfigSource::Topic);
        let synonyms: Vec<_> = retention
            .synonyms
            .iter()
            .map(|synonym| {
                (
                    synonym.name.as_str(),
                    synonym.value.as_str(),
                    synonym.source,
                )
            })
            .collect();
        assert_eq!(
            synonyms,
            [
                ("retention.ms", "1000", ConfigSource::Topic),
                ("log.retention.ms", "604800000", ConfigSource::Default)
            ]
        );
    }

    #[test]
    fn unknown_configs_are_refused_naming_the_key() {
        let refusal =
            apply_changes(&TopicConfig::default(), [set("local.retention.ms", "5")]).unwrap_err();
        assert_eq!(refusal.error, ResponseError::InvalidConfig);
        assert!(
            refusal.message.contains("local.retention.ms"),
            "{}",
            refusal.message
        );
        let flush =
            apply_changes(&TopicConfig::default(), [set("flush.messages", "1")]).unwrap_err();
        assert!(flush.message.contains("durability"), "{}", flush.message);
    }

    #[test]
    fn fixed_configs_take_their_one_value_and_refuse_others_with_the_reason() {
        let unchanged = TopicConfig::default();
        for (name, value) in [
            ("compression.type", "producer"),
            ("message.timestamp.type", "CreateTime"),
        ] {
            assert_eq!(
                apply_changes(&unchanged, [set(name, value)]),
                Ok(unchanged.clone())
            );
        }
        for (name, value, reason) in [
            ("compression.type", "zstd", "recompress"),
            ("message.timestamp.type", "LogAppendTime", "timestamps"),
        ] {
            let refusal = apply_changes(&unchanged, [set(name, value)]).unwrap_err();
            assert_eq!(refusal.error, ResponseError::InvalidConfig, "{name}");
            assert!(refusal.message.contains(reason), "{}", refusal.message);
        }
    }

    #[test]
    fn min_insync_replicas_is_a_topic_config_defaulting_to_a_majority_of_the_replicas() {
        let described = |config: &TopicConfig, replication_factor| {
            describe_topic(config, replication_factor, &defaults())
                .into_iter()
                .find(|config| config.name == "min.insync.replicas")
                .unwrap()
        };
        let default = TopicConfig::default();
        for (replication_factor, majority) in [(1, "1"), (2, "2"), (3, "2"), (5, "3")] {
            let config = described(&default, replication_factor);
            assert_eq!(config.value, majority, "RF {replication_factor}");
            assert_eq!(config.source, ConfigSource::Default);
            assert!(!config.read_only);
        }
        let three = apply_changes(&default, [set("min.insync.replicas", "3")]).unwrap();
        assert_eq!(three.min_insync_replicas, Some(3));
        let config = described(&three, 3);
        assert_eq!(
            (config.value.as_str(), config.source),
            ("3", ConfigSource::Topic)
        );
        let deleted = apply_changes(
            &three,
            [ConfigChange::Delete {
                name: "min.insync.replicas",
            }],
        )
        .unwrap();
        assert_eq!(deleted.min_insync_replicas, None);
        for bad in ["0", "two", "-1"] {
            let refusal = apply_changes(&default, [set("min.insync.replicas", bad)]).unwrap_err();
            assert_eq!(refusal.error, ResponseError::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn append_and_subtract_apply_to_lists_only() {
        let config = TopicConfig::default();
        let append = |name, value| ConfigChange::Append {
            name,
            value: Some(value),
        };
        let refusal = apply_changes(&config, [append("retention.ms", "5")]).unwrap_err();
        assert_eq!(refusal.error, ResponseError::InvalidConfig);
        assert!(refusal.message.contains("list"), "{}", refusal.message);
        // cleanup.policy appends to the value in force (the default, delete, here).
        assert_eq!(
            apply_changes(&config, [append("cleanup.policy", "delete")])
                .unwrap()
                .cleanup_policy,
            Some(CleanupPolicy::DELETE)
        );
        let both = apply_changes(&config, [append("cleanup.policy", "compact")]).unwrap();
        assert_eq!(both.cleanup_policy, Some(CleanupPolicy::COMPACT_DELETE));
        let subtract = |value| ConfigChange::Subtract {
            name: "cleanup.policy",
            value: Some(value),
        };
        assert_eq!(
            apply_changes(&both, [subtract("delete")])
                .unwrap()
                .cleanup_policy,
            Some(CleanupPolicy::COMPACT)
        );
        // It may not become empty, nor take a word Kafka does not have.
        assert!(apply_changes(&config, [subtract("delete")]).is_err());
        assert!(apply_changes(&config, [append("cleanup.policy", "archive")]).is_err());
        assert!(apply_changes(&config, [append("compression.type", "zstd")]).is_err());
    }

    #[test]
    fn set_and_delete_change_catalog_keys_and_bad_values_are_refused() {
        let config = apply_changes(
            &TopicConfig::default(),
            [
                set("retention.bytes", "1000"),
                set("max.message.bytes", "2048"),
            ],
        )
        .unwrap();
        assert_eq!(config.retention_bytes, Some(1000));
        assert_eq!(config.max_message_bytes, Some(2048));
        let deleted = apply_changes(
            &config,
            [ConfigChange::Delete {
                name: "retention.bytes",
            }],
        )
        .unwrap();
        assert_eq!(deleted.retention_bytes, None);
        assert_eq!(deleted.max_message_bytes, Some(2048));
        for (name, value) in [
            ("segment.bytes", "10"),
            ("retention.ms", "soon"),
            ("retention.ms", ""),
        ] {
            let refusal = apply_changes(&config, [set(name, value)]).unwrap_err();
            assert_eq!(
                refusal.error,
                ResponseError::InvalidConfig,
                "{name}={value}"
            );
        }
        let null = apply_changes(
            &config,
            [ConfigChange::Set {
                name: "retention.ms",
                value: None,
            }],
        );
        assert_eq!(null.unwrap_err().error, ResponseError::InvalidConfig);
    }

    #[test]
    fn a_config_named_twice_is_an_invalid_request() {
        let refusal = apply_changes(
            &TopicConfig::default(),
            [set("retention.ms", "1"), set("retention.ms", "2")],
        )
        .unwrap_err();
        assert_eq!(refusal.error, ResponseError::InvalidRequest);
    }
}
