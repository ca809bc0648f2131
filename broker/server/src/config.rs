//! The broker's configuration: embedded defaults, a TOML file, command-line flags and `SPATE_*`
//! environment variables, merged in that order (each later layer wins), then checked.
//!
//! Every server limit lives here, in [`Limits`], with its default in [`defaults`]; nothing else in
//! the server invents a bound. The group coordinator's bounds are [`GroupLimits`] (defaults in
//! `group::limits::defaults`), set by the `group_*`/`offsets_*` settings. Per-topic storage
//! settings (segment size, retention, durability) are not here: they belong to each topic (see
//! `catalog`), with defaults from the storage engine. This file parses and checks; it never opens
//! a socket or a data file.

use crate::group::limits::OFFSET_RECORD_OVERHEAD_BYTES;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::Deserialize;
use spate_protocol::core_list::CORE_LIST_LENGTH_MAX;

use crate::auth::SaslMechanism;
use crate::catalog::topic_config::SEGMENT_BYTES;
use crate::catalog::TopicConfig;
use crate::group::limits::defaults as group_defaults;
use crate::group::GroupLimits;
use crate::shard::compaction::CompactionLimits;
use crate::shard::partition::log_config;
use crate::shard::ShardLimits;
use crate::storage::RecoveryScan;
use crate::storage_sizing::StorageSizing;
use crate::txn::TxnLimits;
use spate_security::Principal;

/// Embedded defaults, so that `spate-broker` with no arguments runs a usable broker.
pub mod defaults {
    pub const DATA_DIR: &str = "./data";
    pub const LISTEN: &str = "127.0.0.1:9192";
    /// The Kafka protocol listener (Kafka's own default port); `none` turns it off.
    pub const KAFKA_LISTEN: &str = "127.0.0.1:9092";
    /// The admin HTTP listener (metrics, health, broker and topic state): Redpanda's admin
    /// port; `none` turns it off.
    pub const ADMIN_LISTEN: &str = "127.0.0.1:9644";
    /// Whether shards count metrics (turned off only to measure what they cost).
    pub const METRICS: bool = true;
    /// Whether Metadata creates a topic it does not find (Kafka's `auto.create.topics.enable`,
    /// on by default there too; as in Kafka, Produce does not create topics: producers ask
    /// Metadata first).
    pub const KAFKA_AUTO_CREATE_TOPICS: bool = true;
    /// Partitions of a topic created that way (Kafka's `num.partitions`).
    pub const KAFKA_DEFAULT_PARTITIONS: u32 = 1;
    pub const LOG_LEVEL: &str = "info";
    /// Largest request frame accepted, length prefix excluded. Matches the protocol's limit.
    pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Bytes of request frames one connection may hold before the broker stops reading from it.
    pub const CONNECTION_INFLIGHT_BYTES_MAX: usize = 128 * 1024 * 1024;
    /// Requests one connection may have in flight (pipelining depth).
    pub const CONNECTION_INFLIGHT_REQUESTS_MAX: usize = 256;
    /// Bytes of request frames all connections of one shard may hold together.
    pub const SHARD_INFLIGHT_BYTES_MAX: usize = 1024 * 1024 * 1024;
    /// Bytes all connections of one shard may hold in frames still arriving (the first read
    /// chunk of each frame) and in small frames the large budget had no room for. A frame takes
    /// the rest of its bytes from `SHARD_INFLIGHT_BYTES_MAX` only once its first chunk has
    /// arrived, so declared lengths alone cannot spend either budget.
    pub const SHARD_ARRIVAL_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// One connection's share of the shard's arrival budget.
    pub const CONNECTION_ARRIVAL_BYTES_MAX: usize = 1024 * 1024;
    /// Longest the broker waits on the socket, in all, for the rest of a frame that has begun
    /// (time spent waiting for budget does not count); then the connection is closed.
    pub const FRAME_READ_TIMEOUT_MS: u64 = 30_000;
    /// Bytes of responses that are ready but not yet written that one connection may have before
    /// the broker stops reading its next request (as Kafka mutes a channel while its response is
    /// unsent). One default client fetch (16 MiB) fits; a larger response is still written, and
    /// reading resumes once what is left unsent is back within the bound.
    pub const CONNECTION_UNSENT_RESPONSE_BYTES_MAX: usize = 16 * 1024 * 1024;
    /// Longest a connection's socket may accept no byte of a pending response; then the
    /// connection is closed. A client that sends requests and never reads their answers holds
    /// their memory only this long.
    pub const RESPONSE_WRITE_TIMEOUT_MS: u64 = 30_000;
    /// A connection with nothing in flight and no bytes arriving for this long is closed (Kafka's
    /// `connections.max.idle.ms`).
    pub const CONNECTIONS_MAX_IDLE_MS: u64 = 10 * 60 * 1000;
    /// Open client connections of the whole broker (Kafka's `max.connections`); further ones
    /// are closed at once. The descriptor limit may allow fewer (see `FILE_DESCRIPTORS_RESERVED`).
    pub const CONNECTIONS_MAX: usize = 100_000;
    /// Open client connections from one IP address (Kafka's `max.connections.per.ip`).
    pub const CONNECTIONS_PER_IP_MAX: usize = 100_000;
    /// File descriptors kept for the broker's own use besides its open-file caches (io_uring
    /// rings and event descriptors, the listener, the catalog and the lock): connections may use
    /// what RLIMIT_NOFILE leaves beyond these and the caches' `open_files_per_shard_max`.
    pub const FILE_DESCRIPTORS_RESERVED: usize = 64;
    /// Size of each socket read; a frame larger than this is assembled from several reads.
    pub const READ_CHUNK_BYTES: usize = 64 * 1024;
    /// SO_SNDBUF / SO_RCVBUF asked for on every connection (the kernel may double or cap it).
    pub const SOCKET_SEND_BUFFER_BYTES: usize = 1024 * 1024;
    pub const SOCKET_RECEIVE_BUFFER_BYTES: usize = 1024 * 1024;
    /// Longest a fetch may wait for `min_bytes` (a client asking for more is capped).
    pub const FETCH_WAIT_MS_MAX: u64 = 30_000;
    /// Most record bytes one fetch response carries, whatever the client asks.
    pub const FETCH_RESPONSE_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Depth of each cross-shard channel (messages, not bytes; bytes are bounded by the
    /// per-connection and per-shard budgets of the requests that caused them).
    pub const CROSS_SHARD_QUEUE_DEPTH: usize = 1024;
    /// How long shutdown waits for in-flight requests before closing connections anyway.
    pub const SHUTDOWN_GRACE_MS: u64 = 10_000;
    /// How often each shard applies retention to the partitions it owns.
    pub const RETENTION_CHECK_INTERVAL_MS: u64 = 60_000;
    /// How often each shard writes the recovery point (and a producer snapshot with it) of
    /// partitions whose durable data moved since the last one. It bounds how much of the log an
    /// open after a crash re-reads (besides each partition's byte trigger,
    /// `LogConfig::recovery_point_interval_bytes`) and how recent the durable offset is that
    /// the broker can prove was lost if a log comes back shorter.
    pub const RECOVERY_POINT_INTERVAL_MS: u64 = 10_000;
    /// Most partitions one topic may have, and most topics the broker holds.
    pub const PARTITIONS_PER_TOPIC_MAX: u32 = 4096;
    pub const TOPICS_MAX: usize = 10_000;
    /// Most partitions one shard owns; a topic that would place more on a shard is refused when
    /// it is created. Descriptors do not grow with partitions (the open-file cache bounds them),
    /// so this bounds the memory and start-up work of each shard.
    pub const PARTITIONS_PER_SHARD_MAX: usize = 100_000;
    /// Memory glommio registers per shard for io_uring buffers.
    pub const IO_MEMORY_BYTES: usize = 16 * 1024 * 1024;
    /// Kafka batches converted from native ones that each shard keeps for the next consumer.
    pub const KAFKA_CONVERSION_CACHE_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Kafka fetch sessions each shard keeps (Kafka's `max.incremental.fetch.session.cache.slots`).
    pub const KAFKA_FETCH_SESSIONS_MAX: usize = 1000;
    /// Partitions of all of a shard's fetch sessions together (each costs about 100 bytes).
    pub const KAFKA_FETCH_SESSION_PARTITIONS_MAX: usize = 100_000;
    /// A compressed Kafka batch inflated for a timestamp lookup: one at a time per lookup, and
    /// freed when it ends.
    pub const KAFKA_DECOMPRESSED_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// How often each shard's compaction task looks for a compacted partition that is due
    /// (Kafka's `log.cleaner.backoff.ms`).
    pub const COMPACTION_CHECK_INTERVAL_MS: u64 = 15_000;
    /// I/O one shard's compaction may do per second, reads and writes together (Kafka's
    /// `log.cleaner.io.max.bytes.per.second`, unlimited there): about a tenth of a data-centre
    /// NVMe drive's sequential bandwidth, so producers on the shard keep theirs.
    pub const COMPACTION_IO_BYTES_PER_SECOND: u64 = 64 * 1024 * 1024;
    /// Longest a compaction pass runs before it lets the shard's requests run.
    pub const COMPACTION_CPU_SLICE_US: u64 = 500;
    /// The compaction task queue's glommio shares against the requests' 1000: under load a
    /// pass gets about a tenth of the core.
    pub const COMPACTION_CPU_SHARES: usize = 100;
    /// Keys one compaction pass maps (about 48 bytes each: 48 MiB per shard at most).
    pub const COMPACTION_KEY_MAP_ENTRIES_MAX: usize = 1 << 20;

    // Cluster mode (`--seeds`): the metadata quorum, broker liveness and partition replication.
    /// This broker's id (Kafka's `node.id`/`broker.id`); a single broker is node 0.
    pub const NODE_ID: i32 = 0;
    /// How often the metadata quorum's Raft clock ticks (Kafka's controller quorum timers are
    /// multiples of it: an election after `METADATA_ELECTION_TICKS`, a heartbeat every
    /// `METADATA_HEARTBEAT_TICKS`).
    pub const METADATA_TICK_MS: u64 = 100;
    /// Ticks without a leader's heartbeat before a voter stands for election (1 s).
    pub const METADATA_ELECTION_TICKS: usize = 10;
    /// Ticks between the metadata leader's heartbeats.
    pub const METADATA_HEARTBEAT_TICKS: usize = 2;
    /// A broker not heard from (Raft traffic) for this long is fenced: its leaderships move to
    /// live replicas (Kafka's `broker.session.timeout.ms`, 9 s there; Spate favours failover).
    pub const BROKER_SESSION_TIMEOUT_MS: u64 = 1500;
    pub const LEADER_BALANCE_INTERVAL_MS: u64 = 30_000;
    /// Metadata log entries between snapshots of the image.
    pub const METADATA_SNAPSHOT_EVERY_ENTRIES: u64 = 10_000;
    /// Largest encoded metadata command.
    pub const METADATA_ENTRY_BYTES_MAX: usize = 1024 * 1024;
    /// Bytes of proposed but uncommitted metadata entries the controller holds.
    pub const METADATA_UNCOMMITTED_BYTES_MAX: usize = 64 * 1024 * 1024;
    /// Raft append messages in flight to one peer.
    pub const METADATA_INFLIGHT_MESSAGES_MAX: usize = 256;
    /// Longest a metadata change (topic creation, ...) waits to be applied before the client
    /// gets RequestTimedOut.
    pub const CLUSTER_PROPOSE_TIMEOUT_MS: u64 = 10_000;
    /// Longest a start waits for every seed to answer before it retries (it retries until all
    /// did: every seed must compute the same voter set).
    pub const CLUSTER_BOOTSTRAP_RETRY_MS: u64 = 500;
    /// A follower whose log end has not reached the leader's log end within this long leaves
    /// the ISR (Kafka's `replica.lag.time.max.ms`, 30 s there).
    pub const REPLICA_LAG_TIME_MAX_MS: u64 = 5000;
    // Broker-to-broker calls (`peer`) and partition replication (`replication`).
    /// Longest a connection to another broker may take to open (TCP and ApiVersions).
    pub const PEER_CONNECT_TIMEOUT_MS: u64 = 3_000;
    /// Calls one connection to another broker has in flight; more wait for a slot.
    pub const PEER_INFLIGHT_REQUESTS_MAX: usize = 64;
    /// Largest answer frame taken from another broker; a larger one breaks the connection.
    pub const PEER_RESPONSE_BYTES_MAX: usize = spate_protocol::constants::FRAME_BYTES_MAX;
    /// Longest wait before reconnecting to a broker whose connection failed (the wait doubles
    /// from 50 ms up to this).
    pub const PEER_RECONNECT_BACKOFF_MS_MAX: u64 = 2_000;
    /// How long a follower's replica fetch waits at the leader for data (Kafka's
    /// `replica.fetch.wait.max.ms`).
    pub const REPLICA_FETCH_WAIT_MS: u64 = 500;
    /// Record bytes one replica fetch answer carries (Kafka's
    /// `replica.fetch.response.max.bytes`), and per partition (`replica.fetch.max.bytes`).
    pub const REPLICA_FETCH_BYTES_MAX: usize = 8 * 1024 * 1024;
    pub const REPLICA_FETCH_PARTITION_BYTES_MAX: usize = 1024 * 1024;
    /// How often a leader looks for followers to drop from or add to an ISR.
    pub const REPLICA_ISR_CHECK_MS: u64 = 1_000;

    // TLS on the listeners (`tls`).
    /// Longest a TLS handshake may take from accept to its last message; a client that sends
    /// nothing, or a plaintext client whose bytes look like the start of a record, is closed
    /// then. Kafka has no such bound; a slow handshake holds a connection slot, nothing more.
    pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 10_000;
    /// How often the certificate, key and client CA files of TLS listeners are checked for
    /// changes (SIGHUP checks at once).
    pub const TLS_RELOAD_CHECK_INTERVAL_MS: u64 = 5_000;

    // SASL (`auth`).
    /// How long a failed login's answer is held back before the connection closes, Kafka's
    /// `connection.failed.authentication.delay.ms` (its default too): a password guesser gets
    /// at most one try per connection per this long, and the connection slot it holds meanwhile
    /// counts against `connections_per_ip_max`.
    pub const FAILED_AUTHENTICATION_DELAY_MS: u64 = 100;
    /// How long an authentication lasts before the client must authenticate again on its
    /// connection, Kafka's `connections.max.reauth.ms` (KIP-368); 0, Kafka's default too: for the
    /// life of the connection.
    pub const CONNECTIONS_MAX_REAUTH_MS: u64 = 0;
    /// Failed logins one source address may have per `FAILED_AUTHENTICATION_WINDOW_MS` before
    /// its connections are refused at accept until the window passes: ten wrong passwords a
    /// minute is more than a person types and far less than a guesser wants.
    pub const FAILED_AUTHENTICATIONS_PER_ADDRESS_MAX: u32 = 10;
    pub const FAILED_AUTHENTICATION_WINDOW_MS: u64 = 60_000;
}

/// Why the configuration could not be built. Each variant names the setting and the layer.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not valid: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error("environment variable {name}={value:?} is not valid: {message}")]
    ParseEnv {
        name: &'static str,
        value: String,
        message: String,
    },
    #[error("listen address {address:?} does not resolve: {message}")]
    ListenAddress { address: String, message: String },
    #[error("cores {text:?} is not a CPU list like \"0-3\" or \"0,2,4-7\": {message}")]
    CoreList { text: String, message: String },
    #[error("setting {setting} is invalid: {message}")]
    Invalid {
        setting: &'static str,
        message: String,
    },
}

/// The `authorization` setting: `auto`, `true` or `false` (a TOML boolean or string, or the
/// same words on the command line and in the environment).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationSetting {
    /// On when a listener requires SASL: a broker whose clients authenticate checks what they
    /// may do; one whose clients are all `User:ANONYMOUS` keeps allowing everything.
    Auto,
    Enabled,
    Disabled,
}

impl FromStr for AuthorizationSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(AuthorizationSetting::Auto),
            "true" | "on" => Ok(AuthorizationSetting::Enabled),
            "false" | "off" => Ok(AuthorizationSetting::Disabled),
            other => Err(format!("{other:?} is none of auto, true, false")),
        }
    }
}

impl<'de> Deserialize<'de> for AuthorizationSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Written {
            Boolean(bool),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Boolean(true) => Ok(AuthorizationSetting::Enabled),
            Written::Boolean(false) => Ok(AuthorizationSetting::Disabled),
            Written::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// Authorization resolved: whether ACLs are checked, and the principals exempt from them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationConfig {
    /// Off: every request is allowed, as before ACLs existed.
    pub enabled: bool,
    /// Kafka's `super.users`: allowed everything, whatever the ACLs say.
    pub super_users: Vec<Principal>,
}

/// A list of CPU ids written `0-3` or `0,2,4-7`: the cores the shards are pinned to, one shard
/// per listed core, in the order listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreList(pub Vec<usize>);

impl FromStr for CoreList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        spate_protocol::core_list::parse_core_list(text).map(CoreList)
    }
}

impl<'de> Deserialize<'de> for CoreList {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The `recovery_scan` setting: the storage engine's [`RecoveryScan`], read as `"checkpoints"`
/// or `"full"` in a config file, as on the command line. (A type of this crate, because serde's
/// traits cannot be implemented here for a storage type.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryScanSetting(pub RecoveryScan);

impl FromStr for RecoveryScanSetting {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        text.parse().map(RecoveryScanSetting)
    }
}

impl<'de> Deserialize<'de> for RecoveryScanSetting {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Declares every setting once: its flag (`--name-with-dashes`), its TOML key (`name_with_underscores`),
/// its environment variable and its help text. Generates [`Overrides`], one layer of optional values.
macro_rules! settings {
    ($( $field:ident : $type:ty, $env:literal, $help:literal; )*) => {
        /// One layer of settings (file, flags or environment): `None` means "not set here".
        #[derive(Debug, Default, Clone, clap::Args, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct Overrides {
            $(
                #[arg(long, help = concat!($help, " [env: ", $env, "]"))]
                pub $field: Option<$type>,
            )*
        }

        impl Overrides {
            /// Reads the `SPATE_*` variables through `lookup` (the process environment in
            /// production, a map in tests).
            pub fn from_environment(
                lookup: &dyn Fn(&str) -> Option<String>,
            ) -> Result<Self, ConfigError> {
                let mut layer = Self::default();
                $(
                    if let Some(value) = lookup($env) {
                        layer.$field = Some(parse_environment::<$type>($env, value)?);
                    }
                )*
                Ok(layer)
            }

            /// `self` over `lower`: every value set in `self` wins.
            pub fn over(self, lower: Self) -> Self {
                Self { $( $field: self.$field.or(lower.$field), )* }
            }
        }

        /// Every environment variable the broker reads, for `--help`.
        pub const ENVIRONMENT_VARIABLES: &[&str] =
            &[ "SPATE_CONFIG", INTER_BROKER_PASSWORD_VARIABLE, $( $env, )* ];
    };
}

settings! {
    data_dir: PathBuf, "SPATE_DATA_DIR", "Directory holding topics, partitions and the catalog (default ./data)";
    listen: String, "SPATE_LISTEN", "HOST:PORT of the native protocol listener (default 127.0.0.1:9192)";
    kafka_listen: String, "SPATE_KAFKA_LISTEN", "HOST:PORT of the Kafka protocol listener, or none to turn it off (default 127.0.0.1:9092)";
    kafka_advertised: String, "SPATE_KAFKA_ADVERTISED", "HOST:PORT Kafka clients are told to connect to in Metadata (default: the address the Kafka listener bound)";
    admin_listen: String, "SPATE_ADMIN_LISTEN", "HOST:PORT of the admin HTTP listener (/metrics, /v1/health, /v1/ready, /v1/broker, /v1/topics, /v1/groups), or none to turn it off (default 127.0.0.1:9644)";
    metrics: bool, "SPATE_METRICS", "Whether shards count metrics; false leaves /metrics with start-up values only, to measure what counting costs (default true)";
    kafka_auto_create_topics: bool, "SPATE_KAFKA_AUTO_CREATE_TOPICS", "Whether Kafka Metadata requests create topics they name and do not find, like Kafka's auto.create.topics.enable (default true)";
    kafka_default_partitions: u32, "SPATE_KAFKA_DEFAULT_PARTITIONS", "Partitions of a topic the Kafka listener creates on its own, like Kafka's num.partitions (default 1)";
    sasl_mechanisms: String, "SPATE_SASL_MECHANISMS", "SASL mechanisms the native listener requires, comma-separated from PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; empty (the default): no authentication";
    kafka_sasl_mechanisms: String, "SPATE_KAFKA_SASL_MECHANISMS", "SASL mechanisms the Kafka listener requires, like Kafka's sasl.enabled.mechanisms on a SASL listener: comma-separated from PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; empty (the default): no authentication";
    authorization: AuthorizationSetting, "SPATE_AUTHORIZATION", "Whether every request is checked against the ACLs: auto (the default: on when a listener requires SASL), true or false (every request allowed)";
    super_users: String, "SPATE_SUPER_USERS", "Principals allowed everything whatever the ACLs say, like Kafka's super.users: User:admin, separated by commas (or by semicolons, Kafka's separator, when any is present)";
    cores: CoreList, "SPATE_CORES", "CPUs to pin one shard each to, like 0-3 or 0,2,4-7 (default: every available core)";
    shards: usize, "SPATE_SHARDS", "Number of shards when --cores is not given; more shards than cores run unpinned";
    log_level: String, "SPATE_LOG", "Log filter: error, warn, info, debug, trace, or tracing directives (default info)";
    frame_bytes_max: usize, "SPATE_FRAME_BYTES_MAX", "Largest request frame in bytes";
    connection_inflight_bytes_max: usize, "SPATE_CONNECTION_INFLIGHT_BYTES_MAX", "Request bytes one connection may hold before reading from it pauses";
    connection_inflight_requests_max: usize, "SPATE_CONNECTION_INFLIGHT_REQUESTS_MAX", "Requests one connection may have in flight";
    shard_inflight_bytes_max: usize, "SPATE_SHARD_INFLIGHT_BYTES_MAX", "Request bytes all connections of a shard may hold together";
    shard_arrival_bytes_max: usize, "SPATE_SHARD_ARRIVAL_BYTES_MAX", "Bytes of frames still arriving (each frame's first read chunk) all connections of a shard may hold";
    connection_arrival_bytes_max: usize, "SPATE_CONNECTION_ARRIVAL_BYTES_MAX", "One connection's share of the shard's arrival bytes";
    frame_read_timeout_ms: u64, "SPATE_FRAME_READ_TIMEOUT_MS", "Longest wait on the socket, in all, for the rest of a begun frame; then the connection is closed";
    connection_unsent_response_bytes_max: usize, "SPATE_CONNECTION_UNSENT_RESPONSE_BYTES_MAX", "Bytes of ready but unwritten responses one connection may have before reading its next request pauses";
    response_write_timeout_ms: u64, "SPATE_RESPONSE_WRITE_TIMEOUT_MS", "Longest a connection's socket may accept no byte of a pending response; then the connection is closed";
    connections_max_idle_ms: u64, "SPATE_CONNECTIONS_MAX_IDLE_MS", "Close connections idle (nothing in flight, nothing arriving) this long (default 10 minutes)";
    connections_max: usize, "SPATE_CONNECTIONS_MAX", "Open client connections of the whole broker; more are closed at once";
    connections_per_ip_max: usize, "SPATE_CONNECTIONS_PER_IP_MAX", "Open client connections from one IP address; more are closed at once";
    file_descriptors_reserved: usize, "SPATE_FILE_DESCRIPTORS_RESERVED", "File descriptors kept for the broker's own use besides its open-file caches; connections get the rest of the limit";
    read_chunk_bytes: usize, "SPATE_READ_CHUNK_BYTES", "Bytes asked for in each socket read";
    socket_send_buffer_bytes: usize, "SPATE_SOCKET_SEND_BUFFER_BYTES", "SO_SNDBUF of each connection";
    socket_receive_buffer_bytes: usize, "SPATE_SOCKET_RECEIVE_BUFFER_BYTES", "SO_RCVBUF of each connection";
    fetch_wait_ms_max: u64, "SPATE_FETCH_WAIT_MS_MAX", "Cap on a fetch's max wait in milliseconds";
    fetch_response_bytes_max: usize, "SPATE_FETCH_RESPONSE_BYTES_MAX", "Cap on the record bytes of one fetch response";
    cross_shard_queue_depth: usize, "SPATE_CROSS_SHARD_QUEUE_DEPTH", "Messages each cross-shard channel holds";
    shutdown_grace_ms: u64, "SPATE_SHUTDOWN_GRACE_MS", "How long shutdown waits for in-flight requests";
    retention_check_interval_ms: u64, "SPATE_RETENTION_CHECK_INTERVAL_MS", "How often retention runs on each shard";
    recovery_point_interval_ms: u64, "SPATE_RECOVERY_POINT_INTERVAL_MS", "How often each partition's recovery point (what an open after a crash need not re-read) is written when its durable data moved";
    recovery_scan: RecoveryScanSetting, "SPATE_RECOVERY_SCAN", "What an open checks of each partition's active segment: checkpoints (from the last index entry on disk; default) or full (every batch from the first byte, trusting no index entry or recovery point: for data whose checkpoint files are distrusted)";
    partitions_per_topic_max: u32, "SPATE_PARTITIONS_PER_TOPIC_MAX", "Most partitions one topic may have";
    topics_max: usize, "SPATE_TOPICS_MAX", "Most topics the broker holds";
    open_files_per_shard_max: usize, "SPATE_OPEN_FILES_PER_SHARD_MAX", "Segment and metadata files each shard keeps open; the least recently used are closed and reopened on demand (default: half the descriptor limit, shared by the shards, 16..=16384 each)";
    partitions_per_shard_max: usize, "SPATE_PARTITIONS_PER_SHARD_MAX", "Most partitions one shard owns; creating a topic that would place more is refused";
    io_memory_bytes: usize, "SPATE_IO_MEMORY_BYTES", "io_uring buffer memory registered per shard";
    kafka_conversion_cache_bytes_max: usize, "SPATE_KAFKA_CONVERSION_CACHE_BYTES_MAX", "Bytes of Kafka batches each shard keeps after converting native batches for Kafka consumers (0: convert on every fetch)";
    kafka_fetch_sessions_max: usize, "SPATE_KAFKA_FETCH_SESSIONS_MAX", "Incremental fetch sessions (KIP-227) each shard keeps for Kafka consumers, like Kafka's max.incremental.fetch.session.cache.slots (0: none)";
    kafka_fetch_session_partitions_max: usize, "SPATE_KAFKA_FETCH_SESSION_PARTITIONS_MAX", "Partitions of all of a shard's Kafka fetch sessions together";
    kafka_decompressed_bytes_max: usize, "SPATE_KAFKA_DECOMPRESSED_BYTES_MAX", "Largest decompressed size of one compressed Kafka batch the broker inflates to find a record by timestamp (ListOffsets; a larger batch is answered by its first offset) or to check the keys of a batch produced to a compacted topic (a larger one is refused)";
    compaction_check_interval_ms: u64, "SPATE_COMPACTION_CHECK_INTERVAL_MS", "How often each shard looks for a compacted partition due for compaction (default 15 s)";
    compaction_io_bytes_per_second: u64, "SPATE_COMPACTION_IO_BYTES_PER_SECOND", "Bytes each shard's compaction may read and write per second (0: unlimited; default 64 MiB)";
    compaction_cpu_slice_us: u64, "SPATE_COMPACTION_CPU_SLICE_US", "Longest a compaction pass runs before it yields to the shard's requests (default 500)";
    compaction_cpu_shares: usize, "SPATE_COMPACTION_CPU_SHARES", "CPU shares of the compaction task queue, 1..=1000, against the requests' 1000 (default 100)";
    compaction_key_map_entries_max: usize, "SPATE_COMPACTION_KEY_MAP_ENTRIES_MAX", "Keys one compaction pass maps, about 48 bytes each (default 1048576); a larger dirty part is compacted over several passes";
    offsets_topic_partitions: u32, "SPATE_OFFSETS_TOPIC_PARTITIONS", "Partitions of the consumer-group offsets topic (__consumer_offsets), used when the broker creates it";
    offsets_topic_segment_bytes: u64, "SPATE_OFFSETS_TOPIC_SEGMENT_BYTES", "Segment size of the offsets topic, used when the broker creates it";
    group_session_timeout_ms_min: u32, "SPATE_GROUP_SESSION_TIMEOUT_MS_MIN", "Shortest session timeout a group member may ask for";
    group_session_timeout_ms_max: u32, "SPATE_GROUP_SESSION_TIMEOUT_MS_MAX", "Longest session timeout a group member may ask for";
    group_rebalance_timeout_ms_max: u32, "SPATE_GROUP_REBALANCE_TIMEOUT_MS_MAX", "Longest rebalance timeout honoured; longer requests are capped";
    group_initial_rebalance_delay_ms: u64, "SPATE_GROUP_INITIAL_REBALANCE_DELAY_MS", "How long the first rebalance of an empty group waits for more members to join";
    groups_per_shard_max: usize, "SPATE_GROUPS_PER_SHARD_MAX", "Consumer groups one shard coordinates";
    members_per_group_max: usize, "SPATE_MEMBERS_PER_GROUP_MAX", "Members of one consumer group";
    offset_metadata_bytes_max: usize, "SPATE_OFFSET_METADATA_BYTES_MAX", "Longest metadata string stored with a committed offset";
    group_write_batch_bytes_max: usize, "SPATE_GROUP_WRITE_BATCH_BYTES_MAX", "Largest record batch the group coordinator writes to the offsets topic";
    group_writes_queued_max: usize, "SPATE_GROUP_WRITES_QUEUED_MAX", "Commits and group changes queued for one offsets partition's writer";
    group_timer_tick_ms: u64, "SPATE_GROUP_TIMER_TICK_MS", "How often each shard checks its groups' deadlines (the precision of group timeouts)";
    txn_timeout_ms_max: i32, "SPATE_TXN_TIMEOUT_MS_MAX", "Longest transaction timeout a transactional producer may ask for, like Kafka's transaction.max.timeout.ms";
    txn_timer_tick_ms: u64, "SPATE_TXN_TIMER_TICK_MS", "How often each shard looks for timed-out transactions to abort (the precision of transaction timeouts)";
    node_id: i32, "SPATE_NODE_ID", "This broker's id in a cluster, 0 and up (default 0); unique among the brokers";
    seeds: String, "SPATE_SEEDS", "Native listener addresses of the seed brokers, HOST:PORT or ID@HOST:PORT, comma separated: turns cluster mode on; the seeds are the metadata quorum's voters (default: none, one broker alone)";
    advertised: String, "SPATE_ADVERTISED", "HOST:PORT peers and native clients are told to reach this broker's native listener at (default: the address it bound)";
    default_replication_factor: u16, "SPATE_DEFAULT_REPLICATION_FACTOR", "Replicas of a topic created without a replication factor in cluster mode, like Kafka's default.replication.factor (default: 3, or the number of brokers when fewer)";
    metadata_tick_ms: u64, "SPATE_METADATA_TICK_MS", "How often the metadata quorum's Raft clock ticks (default 100)";
    metadata_election_ticks: usize, "SPATE_METADATA_ELECTION_TICKS", "Metadata ticks without the controller's heartbeat before a voter stands for election (default 10)";
    metadata_heartbeat_ticks: usize, "SPATE_METADATA_HEARTBEAT_TICKS", "Metadata ticks between the controller's heartbeats (default 2)";
    broker_session_timeout_ms: u64, "SPATE_BROKER_SESSION_TIMEOUT_MS", "A broker not heard from this long is fenced and its leaderships move, like Kafka's broker.session.timeout.ms (default 1500)";
    leader_balance_interval_ms: u64, "SPATE_LEADER_BALANCE_INTERVAL_MS", "How often the controller makes each partition's preferred replica its leader again where it is live and in sync, like Kafka's auto.leader.rebalance.enable with leader.imbalance.check.interval.seconds; 0: never (default 30000)";
    metadata_snapshot_every_entries: u64, "SPATE_METADATA_SNAPSHOT_EVERY_ENTRIES", "Metadata log entries between snapshots of the cluster metadata (default 10000)";
    cluster_propose_timeout_ms: u64, "SPATE_CLUSTER_PROPOSE_TIMEOUT_MS", "Longest a metadata change (create a topic, ...) waits to be applied before it is answered RequestTimedOut (default 10000)";
    replica_lag_time_max_ms: u64, "SPATE_REPLICA_LAG_TIME_MAX_MS", "A follower not caught up with its leader within this long leaves the in-sync replicas, like Kafka's replica.lag.time.max.ms (default 5000)";
    peer_connect_timeout_ms: u64, "SPATE_PEER_CONNECT_TIMEOUT_MS", "Longest a connection to another broker may take to open (default 3000)";
    peer_inflight_requests_max: usize, "SPATE_PEER_INFLIGHT_REQUESTS_MAX", "Calls one connection to another broker has in flight (default 64)";
    peer_response_bytes_max: usize, "SPATE_PEER_RESPONSE_BYTES_MAX", "Largest answer frame taken from another broker (default 64 MiB)";
    peer_reconnect_backoff_ms_max: u64, "SPATE_PEER_RECONNECT_BACKOFF_MS_MAX", "Longest wait before reconnecting to a broker after a failure (default 2000)";
    replica_fetch_wait_ms: u64, "SPATE_REPLICA_FETCH_WAIT_MS", "How long a follower's fetch waits at the leader for data, like Kafka's replica.fetch.wait.max.ms (default 500)";
    replica_fetch_bytes_max: usize, "SPATE_REPLICA_FETCH_BYTES_MAX", "Record bytes of one replica fetch answer, like Kafka's replica.fetch.response.max.bytes (default 8 MiB)";
    replica_fetch_partition_bytes_max: usize, "SPATE_REPLICA_FETCH_PARTITION_BYTES_MAX", "Record bytes per partition of one replica fetch answer, like Kafka's replica.fetch.max.bytes (default 1 MiB)";
    replica_isr_check_ms: u64, "SPATE_REPLICA_ISR_CHECK_MS", "How often a leader looks for followers to drop from or add to an ISR (default 1000)";
    storage_write_buffer_bytes: usize, "SPATE_STORAGE_WRITE_BUFFER_BYTES", "Largest single disk write of a partition (default: from <data_dir>/iotune.toml, else 4 MiB)";
    storage_write_queue_bytes_max: usize, "SPATE_STORAGE_WRITE_QUEUE_BYTES_MAX", "Appended bytes a partition may queue for the disk before appends wait (default: from <data_dir>/iotune.toml, else 32 MiB)";
    storage_group_commit_us: u64, "SPATE_STORAGE_GROUP_COMMIT_US", "Longest written data nobody waits on stays unsynced, for topics without group.commit.us (default: from <data_dir>/iotune.toml, else 2000)";
    tls_cert_file: PathBuf, "SPATE_TLS_CERT_FILE", "PEM certificate chain of the native listener (leaf first): turns TLS on there, with tls_key_file";
    tls_key_file: PathBuf, "SPATE_TLS_KEY_FILE", "PEM private key (PKCS#8, PKCS#1 or SEC1) of tls_cert_file";
    tls_client_ca_file: PathBuf, "SPATE_TLS_CLIENT_CA_FILE", "PEM CA bundle the native listener verifies client certificates against: turns mutual TLS on (a client without a certificate it signed is refused)";
    kafka_tls_cert_file: PathBuf, "SPATE_KAFKA_TLS_CERT_FILE", "PEM certificate chain of the Kafka listener: turns TLS on there (Kafka's SSL listener), with kafka_tls_key_file";
    kafka_tls_key_file: PathBuf, "SPATE_KAFKA_TLS_KEY_FILE", "PEM private key of kafka_tls_cert_file";
    kafka_tls_client_ca_file: PathBuf, "SPATE_KAFKA_TLS_CLIENT_CA_FILE", "PEM CA bundle for client certificates on the Kafka listener: mutual TLS, like Kafka's ssl.client.auth=required";
    admin_tls_cert_file: PathBuf, "SPATE_ADMIN_TLS_CERT_FILE", "PEM certificate chain of the admin HTTP listener: HTTPS, with admin_tls_key_file";
    admin_tls_key_file: PathBuf, "SPATE_ADMIN_TLS_KEY_FILE", "PEM private key of admin_tls_cert_file";
    admin_tls_client_ca_file: PathBuf, "SPATE_ADMIN_TLS_CLIENT_CA_FILE", "PEM CA bundle for client certificates on the admin listener (mutual TLS)";
    tls_handshake_timeout_ms: u64, "SPATE_TLS_HANDSHAKE_TIMEOUT_MS", "Longest a TLS handshake may take on any listener; then the connection is closed (default 10000)";
    tls_reload_check_interval_ms: u64, "SPATE_TLS_RELOAD_CHECK_INTERVAL_MS", "How often TLS certificate, key and CA files are checked for changes and reloaded (SIGHUP reloads at once; default 5000)";
    inter_broker_tls_ca_file: PathBuf, "SPATE_INTER_BROKER_TLS_CA_FILE", "PEM CA bundle other brokers' native listener certificates are verified against: turns TLS on for this broker's calls to them (replica fetches, Raft, proposals), presenting tls_cert_file as the client certificate; required in cluster mode when the native listener has TLS";
    inter_broker_sasl_mechanism: String, "SPATE_INTER_BROKER_SASL_MECHANISM", "SASL mechanism this broker authenticates with when it calls another broker: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, one of sasl_mechanisms; required in cluster mode when the native listener requires SASL";
    inter_broker_user: String, "SPATE_INTER_BROKER_USER", "User this broker authenticates as when it calls another broker (its principal is User:<name>, which authorization needs in super_users)";
    inter_broker_password_file: PathBuf, "SPATE_INTER_BROKER_PASSWORD_FILE", "File holding inter_broker_user's password (one line); or the environment variable SPATE_INTER_BROKER_PASSWORD";
    failed_authentication_delay_ms: u64, "SPATE_FAILED_AUTHENTICATION_DELAY_MS", "How long the answer to a failed SASL login is held back before the connection closes, like Kafka's connection.failed.authentication.delay.ms (default 100)";
    connections_max_reauth_ms: u64, "SPATE_CONNECTIONS_MAX_REAUTH_MS", "How long a SASL authentication lasts: clients re-authenticate on the connection before it ends, or the connection is closed at its next request, like Kafka's connections.max.reauth.ms (default 0: for the life of the connection)";
    failed_authentications_per_address_max: u32, "SPATE_FAILED_AUTHENTICATIONS_PER_ADDRESS_MAX", "Failed SASL logins one source address may have per failed_authentication_window_ms; then its connections are closed at accept until the window passes (default 10; 0: no limit)";
    failed_authentication_window_ms: u64, "SPATE_FAILED_AUTHENTICATION_WINDOW_MS", "The window failed_authentications_per_address_max counts in, from an address's first failure (default 60000)";
    storage_iotune: bool, "SPATE_STORAGE_IOTUNE", "Whether the sizes not set explicitly come from <data_dir>/iotune.toml, written by `spate-broker iotune` (default true)";
}

fn parse_environment<T: FromStr>(name: &'static str, value: String) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value
        .trim()
        .parse::<T>()
        .map_err(|error| ConfigError::ParseEnv {
            name,
            value: value.clone(),
            message: error.to_string(),
        })
}

const AFTER_HELP: &str = "\
Settings are read from embedded defaults, then the TOML file given by --config (keys are the flag
names with underscores, e.g. data_dir = \"/var/lib/spate\"), then command-line flags, then SPATE_*
environment variables; a later source overrides an earlier one.

TLS: give a listener a certificate and key (--tls-cert-file/--tls-key-file for the native one,
--kafka-tls-* and --admin-tls-* for the others; a --*tls-client-ca-file requires client
certificates). The files are reloaded when they change, and at once on SIGHUP (docs/tls.md).
In cluster mode brokers call each other on the native listener: with TLS there, set
--inter-broker-tls-ca-file; with --sasl-mechanisms, --inter-broker-sasl-mechanism,
--inter-broker-user and --inter-broker-password-file (or SPATE_INTER_BROKER_PASSWORD)
(docs/authentication.md, \"Brokers of a cluster\").

`spate-broker recover-catalog [flags]` rebuilds <data_dir>/catalog.toml from the topic.toml in each
topic directory (when the catalog is lost, or disagrees with the directories) and exits; the old
catalog is kept beside it. It takes the data directory's lock, so stop the broker first.

`spate-broker check [flags] [--apply] [--json]` inspects this host for the data directory and
cores these settings give (io_uring, CPU, memory, disk, network) and exits; see `check --help`.";

/// The command line: an optional config file plus one flag per setting.
#[derive(Debug, clap::Parser)]
#[command(name = "spate-broker", version, about = "The Spate broker", after_help = AFTER_HELP)]
pub struct CommandLine {
    /// TOML file with settings (keys as the flags, underscores for dashes) [env: SPATE_CONFIG]
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Overrides,
}

/// How shards map to CPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShardPlacement {
    /// One shard per listed CPU, each pinned to it.
    Pinned(Vec<usize>),
    /// This many shards, not pinned (more shards than cores asked for, or no affinity possible).
    Unpinned(usize),
}

impl ShardPlacement {
    pub fn shard_count(&self) -> usize {
        match self {
            ShardPlacement::Pinned(cores) => cores.len(),
            ShardPlacement::Unpinned(count) => *count,
        }
    }
}

/// Every server bound, in one place. Relations between them are checked in [`Config::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub frame_bytes_max: usize,
    pub connection_inflight_bytes_max: usize,
    pub connection_inflight_requests_max: usize,
    pub shard_inflight_bytes_max: usize,
    pub shard_arrival_bytes_max: usize,
    pub connection_arrival_bytes_max: usize,
    pub frame_read_timeout_ms: u64,
    pub connection_unsent_response_bytes_max: usize,
    pub response_write_timeout_ms: u64,
    pub connections_max_idle_ms: u64,
    pub connections_max: usize,
    pub connections_per_ip_max: usize,
    pub file_descriptors_reserved: usize,
    pub read_chunk_bytes: usize,
    pub socket_send_buffer_bytes: usize,
    pub socket_receive_buffer_bytes: usize,
    pub fetch_wait_ms_max: u64,
    pub fetch_response_bytes_max: usize,
    pub cross_shard_queue_depth: usize,
    pub shutdown_grace_ms: u64,
    pub retention_check_interval_ms: u64,
    pub recovery_point_interval_ms: u64,
    /// What an open checks of each active segment (a choice, not a bound; here because it
    /// decides how long a start takes).
    pub recovery_scan: RecoveryScan,
    pub partitions_per_topic_max: u32,
    pub topics_max: usize,
    pub partitions_per_shard_max: usize,
    /// `None`: derived from RLIMIT_NOFILE when each shard starts
    /// (`storage::file_cache::open_files_per_shard`).
    pub open_files_per_shard_max: Option<usize>,
    pub io_memory_bytes: usize,
    /// Bytes of Kafka RecordBatches each shard keeps after converting native batches for a
    /// Kafka fetch (`kafka::conversion`); 0 turns the cache off.
    pub kafka_conversion_cache_bytes_max: usize,
    /// Kafka incremental fetch sessions each shard keeps (`kafka::sessions`); 0: none.
    pub kafka_fetch_sessions_max: usize,
    /// Partitions of all of a shard's Kafka fetch sessions together.
    pub kafka_fetch_session_partitions_max: usize,
    /// Largest decompressed size of a compressed Kafka batch inflated for a ListOffsets by
    /// timestamp, or to check the keys of a batch produced to a compacted topic.
    pub kafka_decompressed_bytes_max: usize,
    pub compaction_check_interval_ms: u64,
    pub compaction_io_bytes_per_second: u64,
    pub compaction_cpu_slice_us: u64,
    pub compaction_cpu_shares: usize,
    pub compaction_key_map_entries_max: usize,
    /// Replicas of a topic created without a replication factor in cluster mode; `None`:
    /// `min(3, active brokers)`. Single mode: always 1.
    pub default_replication_factor: Option<u16>,
    pub metadata_tick_ms: u64,
    pub metadata_election_ticks: usize,
    pub metadata_heartbeat_ticks: usize,
    pub broker_session_timeout_ms: u64,
    /// How often the controller elects preferred leaders back; 0: never.
    pub leader_balance_interval_ms: u64,
    pub metadata_snapshot_every_entries: u64,
    pub metadata_entry_bytes_max: usize,
    pub metadata_uncommitted_bytes_max: usize,
    pub metadata_inflight_messages_max: usize,
    pub cluster_propose_timeout_ms: u64,
    pub cluster_bootstrap_retry_ms: u64,
    pub replica_lag_time_max_ms: u64,
    // Broker-to-broker calls (`peer`) and replication (`replication`).
    pub peer_connect_timeout_ms: u64,
    pub peer_inflight_requests_max: usize,
    pub peer_response_bytes_max: usize,
    pub peer_reconnect_backoff_ms_max: u64,
    pub replica_fetch_wait_ms: u64,
    pub replica_fetch_bytes_max: usize,
    pub replica_fetch_partition_bytes_max: usize,
    pub replica_isr_check_ms: u64,
    pub tls_handshake_timeout_ms: u64,
    pub tls_reload_check_interval_ms: u64,
    pub failed_authentication_delay_ms: u64,
    pub connections_max_reauth_ms: u64,
    pub failed_authentications_per_address_max: u32,
    pub failed_authentication_window_ms: u64,
    /// Partition logs' write sizes and group-commit interval (settings, `iotune.toml`).
    pub storage_sizing: StorageSizing,
}

impl Limits {
    /// Largest batch a partition accepts (from a producer or the group coordinator): bounded by
    /// the frame limit and the protocol's limit.
    pub fn batch_bytes_max(&self) -> usize {
        batch_bytes_max(self.frame_bytes_max)
    }

    /// The bounds each shard works within.
    pub fn shard_limits(&self) -> ShardLimits {
        ShardLimits {
            shard_inflight_bytes_max: self.shard_inflight_bytes_max,
            shard_arrival_bytes_max: self.shard_arrival_bytes_max,
            batch_bytes_max: self.batch_bytes_max(),
            fetch_wait_ms_max: self.fetch_wait_ms_max,
            recovery_point_interval_ms: self.recovery_point_interval_ms,
            retention_check_interval_ms: self.retention_check_interval_ms,
            recovery_scan: self.recovery_scan,
            kafka_decompressed_bytes_max: self.kafka_decompressed_bytes_max,
            compaction: CompactionLimits {
                check_interval_ms: self.compaction_check_interval_ms,
                io_bytes_per_second: self.compaction_io_bytes_per_second,
                cpu_slice_us: self.compaction_cpu_slice_us,
                cpu_shares: self.compaction_cpu_shares,
                key_map_entries_max: self.compaction_key_map_entries_max,
            },
            log_sizing: self.storage_sizing.chosen,
        }
    }
}

/// The Kafka protocol listener's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// Where it listens; after start-up, the address it bound (a configured port 0 resolved).
    pub listen: SocketAddr,
    /// What Metadata tells clients to connect to, as `(host, port)`; `None`: the bound address.
    pub advertised: Option<(String, u16)>,
    /// Whether Metadata creates topics it does not find (Produce never does, as in Kafka).
    pub auto_create_topics: bool,
    /// Partitions of a topic created that way.
    pub default_partitions: u32,
    /// TLS on the Kafka listener (`kafka_tls_*`); `None`: plaintext.
    pub tls: Option<ListenerTls>,
    /// SASL mechanisms a connection must authenticate with (`kafka_sasl_mechanisms`); empty:
    /// none, every connection is `User:ANONYMOUS`.
    pub sasl_mechanisms: Vec<SaslMechanism>,
}

/// One listener's TLS files (`tls_*`, `kafka_tls_*`, `admin_tls_*`). The files are read when
/// the broker starts (a missing or invalid one fails the start, naming it) and again whenever
/// they change (`tls::reload`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    /// The certificate chain, leaf first, PEM.
    pub cert_file: PathBuf,
    /// The leaf's private key, PEM.
    pub key_file: PathBuf,
    /// CA bundle for client certificates, PEM; `Some` turns mutual TLS on: a client must
    /// present a certificate one of these CAs signed.
    pub client_ca_file: Option<PathBuf>,
}

impl KafkaConfig {
    /// The host and port Metadata names for this broker.
    pub fn advertised(&self) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (self.listen.ip().to_string(), self.listen.port()))
    }
}

/// The broker's resolved configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// TLS on the native listener (`tls_*`); `None`: plaintext.
    pub tls: Option<ListenerTls>,
    /// The Kafka protocol listener; `None`: turned off (`--kafka-listen none`).
    pub kafka: Option<KafkaConfig>,
    /// The admin HTTP listener; `None`: turned off (`--admin-listen none`).
    pub admin_listen: Option<SocketAddr>,
    /// TLS on the admin listener (`admin_tls_*`): HTTPS; `None`: plain HTTP.
    pub admin_tls: Option<ListenerTls>,
    /// Whether shards count metrics (`--metrics false` turns counting off).
    pub metrics: bool,
    /// SASL mechanisms a native connection must authenticate with (`sasl_mechanisms`); empty:
    /// none, every connection is `User:ANONYMOUS`.
    pub sasl_mechanisms: Vec<SaslMechanism>,
    /// Whether requests are checked against the ACLs, and who is exempt.
    pub authorization: AuthorizationConfig,
    pub placement: ShardPlacement,
    pub log_level: String,
    pub limits: Limits,
    /// The group coordinator's bounds; each shard's coordinator gets a copy.
    pub groups: GroupLimits,
    /// The transaction coordinator's bounds; each shard's coordinator gets a copy.
    pub transactions: TxnLimits,
    /// This broker's id and, in cluster mode, its seeds.
    pub cluster: ClusterConfig,
    /// How this broker secures its calls to other brokers (`inter_broker_*`).
    pub inter_broker: InterBrokerConfig,
}

/// The environment variable that may hold `inter_broker_user`'s password. Not a setting of the
/// `settings!` table: a password has no command-line flag (other users of the machine read
/// command lines) and is kept out of the config file unless the operator names a file for it.
pub const INTER_BROKER_PASSWORD_VARIABLE: &str = "SPATE_INTER_BROKER_PASSWORD";

/// How this broker secures the calls it makes to other brokers' native listeners: TLS, and SASL
/// as one user. Both off by default (plaintext, `User:ANONYMOUS`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InterBrokerConfig {
    /// CA bundle the other brokers' certificates are verified against; `Some`: calls use TLS.
    pub tls_ca_file: Option<PathBuf>,
    /// The SASL login of every call; `None`: calls do not authenticate.
    pub sasl: Option<InterBrokerSasl>,
}

/// The SASL login this broker uses with other brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterBrokerSasl {
    pub mechanism: SaslMechanism,
    pub user: String,
    pub password: InterBrokerPassword,
}

impl InterBrokerSasl {
    /// The principal the other brokers see: `User:<inter_broker_user>`.
    pub fn principal(&self) -> Principal {
        Principal::user(&self.user)
    }
}

/// Where the inter-broker password is: a file, read when the broker starts (an unreadable one
/// fails the start), or the environment.
#[derive(Clone, PartialEq, Eq)]
pub enum InterBrokerPassword {
    File(PathBuf),
    Environment(String),
}

impl std::fmt::Debug for InterBrokerPassword {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InterBrokerPassword::File(path) => formatter.debug_tuple("File").field(path).finish(),
            // Config is logged and printed in errors: the password never is.
            InterBrokerPassword::Environment(_) => formatter.write_str("Environment(<hidden>)"),
        }
    }
}

impl InterBrokerPassword {
    /// The password itself: the environment's as given, a file's first line.
    pub fn read(&self) -> Result<String, ConfigError> {
        match self {
            InterBrokerPassword::Environment(password) => Ok(password.clone()),
            InterBrokerPassword::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Invalid {
                    setting: "inter_broker_password_file",
                    message: format!("cannot read {}: {error}", path.display()),
                })?;
                let password = text.lines().next().unwrap_or("").to_string();
                if password.is_empty() {
                    return Err(ConfigError::Invalid {
                        setting: "inter_broker_password_file",
                        message: format!("{} holds no password", path.display()),
                    });
                }
                Ok(password)
            }
        }
    }
}

/// One seed broker of `--seeds`: the address of its native listener, and its id when written
/// `ID@HOST:PORT` (otherwise learned by asking it, DescribeCluster v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seed {
    pub id: Option<i32>,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Seed {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.id {
            Some(id) => write!(formatter, "{id}@{}:{}", self.host, self.port),
            None => write!(formatter, "{}:{}", self.host, self.port),
        }
    }
}

/// Who this broker is among its peers. With no seeds the broker runs alone exactly as before
/// cluster mode existed (its catalog is the truth; every partition is led locally).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// `--node-id`: unique among the brokers of one cluster; Kafka's broker id.
    pub node_id: i32,
    /// `--seeds`: the metadata quorum's voters; empty = single mode.
    pub seeds: Vec<Seed>,
    /// `--advertised`: what peers and native clients are told; `None`: the bound address.
    pub advertised: Option<(String, u16)>,
}

impl ClusterConfig {
    /// Whether `--seeds` turned cluster mode on.
    pub fn is_cluster_mode(&self) -> bool {
        !self.seeds.is_empty()
    }

    /// The native endpoint peers and clients reach this broker at: `--advertised`, else the
    /// bound address `listen` (a wildcard address cannot be reached: the caller must advertise).
    pub fn advertised_native(&self, listen: SocketAddr) -> (String, u16) {
        self.advertised
            .clone()
            .unwrap_or_else(|| (listen.ip().to_string(), listen.port()))
    }
}

impl Config {
    /// Builds the configuration from the process's command line and environment.
    pub fn from_process() -> Result<Config, ConfigError> {
        Self::from_arguments(std::env::args_os())
    }

    /// As [`Config::from_process`], with these arguments (the program name first) instead of
    /// the process's: `recover-catalog` reads the same settings after its own name.
    pub fn from_arguments(
        arguments: impl IntoIterator<Item = std::ffi::OsString>,
    ) -> Result<Config, ConfigError> {
        let command_line = <CommandLine as clap::Parser>::parse_from(arguments);
        let lookup = |name: &str| std::env::var(name).ok();
        Self::from_layers(command_line, &lookup, available_cores())
    }

    /// Merges defaults < file < flags < environment. `available` is the list of CPUs this process
    /// may run on (the default placement).
    pub fn from_layers(
        command_line: CommandLine,
        environment: &dyn Fn(&str) -> Option<String>,
        available: Vec<usize>,
    ) -> Result<Config, ConfigError> {
        let file_path = environment("SPATE_CONFIG")
            .map(PathBuf::from)
            .or(command_line.config);
        let file_layer = match file_path {
            Some(path) => read_file(&path)?,
            None => Overrides::default(),
        };
        let environment_layer = Overrides::from_environment(environment)?;
        let merged = environment_layer
            .over(command_line.overrides)
            .over(file_layer);
        let inter_broker_password = environment(INTER_BROKER_PASSWORD_VARIABLE);
        Self::resolve(merged, available, inter_broker_password)
    }

    fn resolve(
        layer: Overrides,
        available: Vec<usize>,
        inter_broker_password: Option<String>,
    ) -> Result<Config, ConfigError> {
        let groups = group_limits(&layer);
        let transactions = txn_limits(&layer);
        let kafka = kafka_config(&layer)?;
        if kafka.is_none() {
            refuse_tls_of_listener_off(
                "kafka_listen",
                [
                    ("kafka_tls_cert_file", layer.kafka_tls_cert_file.is_some()),
                    ("kafka_tls_key_file", layer.kafka_tls_key_file.is_some()),
                    (
                        "kafka_tls_client_ca_file",
                        layer.kafka_tls_client_ca_file.is_some(),
                    ),
                ],
            )?;
        }
        let tls = listener_tls(
            ["tls_cert_file", "tls_key_file", "tls_client_ca_file"],
            [
                layer.tls_cert_file.clone(),
                layer.tls_key_file.clone(),
                layer.tls_client_ca_file.clone(),
            ],
        )?;
        let admin_tls = listener_tls(
            [
                "admin_tls_cert_file",
                "admin_tls_key_file",
                "admin_tls_client_ca_file",
            ],
            [
                layer.admin_tls_cert_file.clone(),
                layer.admin_tls_key_file.clone(),
                layer.admin_tls_client_ca_file.clone(),
            ],
        )?;
        let sasl_mechanisms = sasl_mechanisms(&layer.sasl_mechanisms, "sasl_mechanisms")?;
        let inter_broker = inter_broker_config(&layer, inter_broker_password)?;
        let authorization = authorization_config(&layer, &sasl_mechanisms, kafka.as_ref())?;
        let admin_listen_text = layer
            .admin_listen
            .clone()
            .unwrap_or_else(|| defaults::ADMIN_LISTEN.to_string());
        let admin_listen = if admin_listen_text.trim().eq_ignore_ascii_case("none") {
            refuse_tls_of_listener_off(
                "admin_listen",
                [
                    ("admin_tls_cert_file", admin_tls.is_some()),
                    ("admin_tls_key_file", admin_tls.is_some()),
                    ("admin_tls_client_ca_file", admin_tls.is_some()),
                ],
            )?;
            None
        } else {
            Some(resolve_listen(admin_listen_text.trim())?)
        };
        let metrics = layer.metrics.unwrap_or(defaults::METRICS);
        let cluster = cluster_config(&layer)?;
        let listen_text = layer.listen.unwrap_or_else(|| defaults::LISTEN.to_string());
        let listen = resolve_listen(&listen_text)?;
        let placement = match (layer.cores, layer.shards) {
            (Some(CoreList(cores)), _) => ShardPlacement::Pinned(cores),
            (None, Some(count)) if count <= available.len() => {
                ShardPlacement::Pinned(available.into_iter().take(count).collect())
            }
            (None, Some(count)) => ShardPlacement::Unpinned(count),
            (None, None) if available.is_empty() => ShardPlacement::Unpinned(1),
            (None, None) => ShardPlacement::Pinned(available),
        };
        let limits = Limits {
            frame_bytes_max: layer.frame_bytes_max.unwrap_or(defaults::FRAME_BYTES_MAX),
            connection_inflight_bytes_max: layer
                .connection_inflight_bytes_max
                .unwrap_or(defaults::CONNECTION_INFLIGHT_BYTES_MAX),
            connection_inflight_requests_max: layer
                .connection_inflight_requests_max
                .unwrap_or(defaults::CONNECTION_INFLIGHT_REQUESTS_MAX),
            shard_inflight_bytes_max: layer
                .shard_inflight_bytes_max
                .unwrap_or(defaults::SHARD_INFLIGHT_BYTES_MAX),
            shard_arrival_bytes_max: layer
                .shard_arrival_bytes_max
                .unwrap_or(defaults::SHARD_ARRIVAL_BYTES_MAX),
            connection_arrival_bytes_max: layer
                .connection_arrival_bytes_max
                .unwrap_or(defaults::CONNECTION_ARRIVAL_BYTES_MAX),
            frame_read_timeout_ms: layer
                .frame_read_timeout_ms
                .unwrap_or(defaults::FRAME_READ_TIMEOUT_MS),
            connection_unsent_response_bytes_max: layer
                .connection_unsent_response_bytes_max
                .unwrap_or(defaults::CONNECTION_UNSENT_RESPONSE_BYTES_MAX),
            response_write_timeout_ms: layer
                .response_write_timeout_ms
                .unwrap_or(defaults::RESPONSE_WRITE_TIMEOUT_MS),
            connections_max_idle_ms: layer
                .connections_max_idle_ms
                .unwrap_or(defaults::CONNECTIONS_MAX_IDLE_MS),
            connections_max: layer.connections_max.unwrap_or(defaults::CONNECTIONS_MAX),
            connections_per_ip_max: layer
                .connections_per_ip_max
                .unwrap_or(defaults::CONNECTIONS_PER_IP_MAX),
            file_descriptors_reserved: layer
                .file_descriptors_reserved
                .unwrap_or(defaults::FILE_DESCRIPTORS_RESERVED),
            read_chunk_bytes: layer.read_chunk_bytes.unwrap_or(defaults::READ_CHUNK_BYTES),
            socket_send_buffer_bytes: layer
                .socket_send_buffer_bytes
                .unwrap_or(defaults::SOCKET_SEND_BUFFER_BYTES),
            socket_receive_buffer_bytes: layer
                .socket_receive_buffer_bytes
                .unwrap_or(defaults::SOCKET_RECEIVE_BUFFER_BYTES),
            fetch_wait_ms_max: layer
                .fetch_wait_ms_max
                .unwrap_or(defaults::FETCH_WAIT_MS_MAX),
            fetch_response_bytes_max: layer
                .fetch_response_bytes_max
                .unwrap_or(defaults::FETCH_RESPONSE_BYTES_MAX),
            cross_shard_queue_depth: layer
                .cross_shard_queue_depth
                .unwrap_or(defaults::CROSS_SHARD_QUEUE_DEPTH),
            shutdown_grace_ms: layer
                .shutdown_grace_ms
                .unwrap_or(defaults::SHUTDOWN_GRACE_MS),
            retention_check_interval_ms: layer
                .retention_check_interval_ms
                .unwrap_or(defaults::RETENTION_CHECK_INTERVAL_MS),
            recovery_point_interval_ms: layer
                .recovery_point_interval_ms
                .unwrap_or(defaults::RECOVERY_POINT_INTERVAL_MS),
            recovery_scan: layer
                .recovery_scan
                .map_or_else(RecoveryScan::default, |setting| setting.0),
            partitions_per_topic_max: layer
                .partitions_per_topic_max
                .unwrap_or(defaults::PARTITIONS_PER_TOPIC_MAX),
            topics_max: layer.topics_max.unwrap_or(defaults::TOPICS_MAX),
            partitions_per_shard_max: layer
                .partitions_per_shard_max
                .unwrap_or(defaults::PARTITIONS_PER_SHARD_MAX),
            open_files_per_shard_max: layer.open_files_per_shard_max,
            io_memory_bytes: layer.io_memory_bytes.unwrap_or(defaults::IO_MEMORY_BYTES),
            kafka_conversion_cache_bytes_max: layer
                .kafka_conversion_cache_bytes_max
                .unwrap_or(defaults::KAFKA_CONVERSION_CACHE_BYTES_MAX),
            kafka_fetch_sessions_max: layer
                .kafka_fetch_sessions_max
                .unwrap_or(defaults::KAFKA_FETCH_SESSIONS_MAX),
            kafka_fetch_session_partitions_max: layer
                .kafka_fetch_session_partitions_max
                .unwrap_or(defaults::KAFKA_FETCH_SESSION_PARTITIONS_MAX),
            kafka_decompressed_bytes_max: layer
                .kafka_decompressed_bytes_max
                .unwrap_or(defaults::KAFKA_DECOMPRESSED_BYTES_MAX),
            compaction_check_interval_ms: layer
                .compaction_check_interval_ms
                .unwrap_or(defaults::COMPACTION_CHECK_INTERVAL_MS),
            compaction_io_bytes_per_second: layer
                .compaction_io_bytes_per_second
                .unwrap_or(defaults::COMPACTION_IO_BYTES_PER_SECOND),
            compaction_cpu_slice_us: layer
                .compaction_cpu_slice_us
                .unwrap_or(defaults::COMPACTION_CPU_SLICE_US),
            compaction_cpu_shares: layer
                .compaction_cpu_shares
                .unwrap_or(defaults::COMPACTION_CPU_SHARES),
            compaction_key_map_entries_max: layer
                .compaction_key_map_entries_max
                .unwrap_or(defaults::COMPACTION_KEY_MAP_ENTRIES_MAX),
            default_replication_factor: layer.default_replication_factor,
            metadata_tick_ms: layer.metadata_tick_ms.unwrap_or(defaults::METADATA_TICK_MS),
            metadata_election_ticks: layer
                .metadata_election_ticks
                .unwrap_or(defaults::METADATA_ELECTION_TICKS),
            metadata_heartbeat_ticks: layer
                .metadata_heartbeat_ticks
                .unwrap_or(defaults::METADATA_HEARTBEAT_TICKS),
            broker_session_timeout_ms: layer
                .broker_session_timeout_ms
                .unwrap_or(defaults::BROKER_SESSION_TIMEOUT_MS),
            leader_balance_interval_ms: layer
                .leader_balance_interval_ms
                .unwrap_or(defaults::LEADER_BALANCE_INTERVAL_MS),
            metadata_snapshot_every_entries: layer
                .metadata_snapshot_every_entries
                .unwrap_or(defaults::METADATA_SNAPSHOT_EVERY_ENTRIES),
            metadata_entry_bytes_max: defaults::METADATA_ENTRY_BYTES_MAX,
            metadata_uncommitted_bytes_max: defaults::METADATA_UNCOMMITTED_BYTES_MAX,
            metadata_inflight_messages_max: defaults::METADATA_INFLIGHT_MESSAGES_MAX,
            cluster_propose_timeout_ms: layer
                .cluster_propose_timeout_ms
                .unwrap_or(defaults::CLUSTER_PROPOSE_TIMEOUT_MS),
            cluster_bootstrap_retry_ms: defaults::CLUSTER_BOOTSTRAP_RETRY_MS,
            replica_lag_time_max_ms: layer
                .replica_lag_time_max_ms
                .unwrap_or(defaults::REPLICA_LAG_TIME_MAX_MS),
            peer_connect_timeout_ms: layer
                .peer_connect_timeout_ms
                .unwrap_or(defaults::PEER_CONNECT_TIMEOUT_MS),
            peer_inflight_requests_max: layer
                .peer_inflight_requests_max
                .unwrap_or(defaults::PEER_INFLIGHT_REQUESTS_MAX),
            peer_response_bytes_max: layer
                .peer_response_bytes_max
                .unwrap_or(defaults::PEER_RESPONSE_BYTES_MAX),
            peer_reconnect_backoff_ms_max: layer
                .peer_reconnect_backoff_ms_max
                .unwrap_or(defaults::PEER_RECONNECT_BACKOFF_MS_MAX),
            replica_fetch_wait_ms: layer
                .replica_fetch_wait_ms
                .unwrap_or(defaults::REPLICA_FETCH_WAIT_MS),
            replica_fetch_bytes_max: layer
                .replica_fetch_bytes_max
                .unwrap_or(defaults::REPLICA_FETCH_BYTES_MAX),
            replica_fetch_partition_bytes_max: layer
                .replica_fetch_partition_bytes_max
                .unwrap_or(defaults::REPLICA_FETCH_PARTITION_BYTES_MAX),
            replica_isr_check_ms: layer
                .replica_isr_check_ms
                .unwrap_or(defaults::REPLICA_ISR_CHECK_MS),
            tls_handshake_timeout_ms: layer
                .tls_handshake_timeout_ms
                .unwrap_or(defaults::TLS_HANDSHAKE_TIMEOUT_MS),
            failed_authentication_delay_ms: layer
                .failed_authentication_delay_ms
                .unwrap_or(defaults::FAILED_AUTHENTICATION_DELAY_MS),
            connections_max_reauth_ms: layer
                .connections_max_reauth_ms
                .unwrap_or(defaults::CONNECTIONS_MAX_REAUTH_MS),
            failed_authentications_per_address_max: layer
                .failed_authentications_per_address_max
                .unwrap_or(defaults::FAILED_AUTHENTICATIONS_PER_ADDRESS_MAX),
            failed_authentication_window_ms: layer
                .failed_authentication_window_ms
                .unwrap_or(defaults::FAILED_AUTHENTICATION_WINDOW_MS),
            tls_reload_check_interval_ms: layer
                .tls_reload_check_interval_ms
                .unwrap_or(defaults::TLS_RELOAD_CHECK_INTERVAL_MS),
            storage_sizing: StorageSizing::from_settings(
                layer.storage_write_buffer_bytes,
                layer.storage_write_queue_bytes_max,
                layer.storage_group_commit_us,
                layer.storage_iotune.unwrap_or(true),
            ),
        };
        let config = Config {
            data_dir: layer
                .data_dir
                .unwrap_or_else(|| PathBuf::from(defaults::DATA_DIR)),
            listen,
            tls,
            kafka,
            admin_listen,
            admin_tls,
            metrics,
            authorization,
            sasl_mechanisms,
            placement,
            log_level: layer
                .log_level
                .unwrap_or_else(|| defaults::LOG_LEVEL.to_string()),
            limits,
            groups,
            transactions,
            cluster,
            inter_broker,
        };
        if layer.group_write_batch_bytes_max.is_none() {
            config.check_derived_group_batch()?;
        }
        config.check()?;
        Ok(config)
    }

    /// Relations between settings that would otherwise fail at run time, or deadlock: a
    /// connection must be able to hold one largest frame, a shard one full connection.
    pub fn check(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let invalid =
            |setting: &'static str, message: String| Err(ConfigError::Invalid { setting, message });
        if self.placement.shard_count() == 0 {
            return invalid("shards", "at least one shard is needed".to_string());
        }
        if self.placement.shard_count() > CORE_LIST_LENGTH_MAX {
            return invalid("shards", format!("at most {CORE_LIST_LENGTH_MAX} shards"));
        }
        if limits.frame_bytes_max < 1024 {
            return invalid("frame_bytes_max", "must be at least 1024".to_string());
        }
        if let Err((setting, message)) = limits.storage_sizing.check(limits.batch_bytes_max()) {
            return invalid(setting, message);
        }
        if limits.frame_bytes_max > spate_protocol::constants::FRAME_BYTES_MAX {
            return invalid(
                "frame_bytes_max",
                format!(
                    "{} is above the protocol's limit {}",
                    limits.frame_bytes_max,
                    spate_protocol::constants::FRAME_BYTES_MAX
                ),
            );
        }
        if limits.connection_inflight_bytes_max < limits.frame_bytes_max {
            return invalid(
                "connection_inflight_bytes_max",
                format!(
                    "{} is below frame_bytes_max {}: a largest frame could never be read",
                    limits.connection_inflight_bytes_max, limits.frame_bytes_max
                ),
            );
        }
        if limits.shard_inflight_bytes_max < limits.connection_inflight_bytes_max {
            return invalid(
                "shard_inflight_bytes_max",
                format!(
                    "{} is below connection_inflight_bytes_max {}",
                    limits.shard_inflight_bytes_max, limits.connection_inflight_bytes_max
                ),
            );
        }
        // A read chunk must hold a request header (the reader rejects a frame too large only
        // once it has its header, and reads no more than a chunk before that).
        if limits.read_chunk_bytes < 1024 {
            return invalid("read_chunk_bytes", "must be at least 1024".to_string());
        }
        // Every frame's first read chunk is held from the arrival budgets before it is read.
        if limits.connection_arrival_bytes_max < limits.read_chunk_bytes {
            return invalid(
                "connection_arrival_bytes_max",
                format!(
                    "{} is below read_chunk_bytes {}: a connection could not read one chunk",
                    limits.connection_arrival_bytes_max, limits.read_chunk_bytes
                ),
            );
        }
        if limits.shard_arrival_bytes_max < limits.connection_arrival_bytes_max {
            return invalid(
                "shard_arrival_bytes_max",
                format!(
                    "{} is below connection_arrival_bytes_max {}",
                    limits.shard_arrival_bytes_max, limits.connection_arrival_bytes_max
                ),
            );
        }
        let positive = [
            (
                "connection_inflight_requests_max",
                limits.connection_inflight_requests_max,
            ),
            ("connections_max", limits.connections_max),
            ("connections_per_ip_max", limits.connections_per_ip_max),
            (
                "frame_read_timeout_ms",
                limits.frame_read_timeout_ms as usize,
            ),
            (
                "connection_unsent_response_bytes_max",
                limits.connection_unsent_response_bytes_max,
            ),
            (
                "response_write_timeout_ms",
                limits.response_write_timeout_ms as usize,
            ),
            (
                "connections_max_idle_ms",
                limits.connections_max_idle_ms as usize,
            ),
            ("read_chunk_bytes", limits.read_chunk_bytes),
            ("cross_shard_queue_depth", limits.cross_shard_queue_depth),
            ("fetch_response_bytes_max", limits.fetch_response_bytes_max),
            ("topics_max", limits.topics_max),
            ("partitions_per_shard_max", limits.partitions_per_shard_max),
            (
                "tls_handshake_timeout_ms",
                limits.tls_handshake_timeout_ms as usize,
            ),
            (
                "tls_reload_check_interval_ms",
                limits.tls_reload_check_interval_ms as usize,
            ),
            (
                "failed_authentication_window_ms",
                limits.failed_authentication_window_ms as usize,
            ),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return invalid(setting, "must be greater than zero".to_string());
            }
        }
        if limits.io_memory_bytes < IO_MEMORY_BYTES_MIN {
            return invalid(
                "io_memory_bytes",
                format!(
                    "{} is below {IO_MEMORY_BYTES_MIN}, the least io_uring buffer memory a shard \
                     can register (glommio would silently use {IO_MEMORY_BYTES_MIN}); the \
                     default is {}",
                    limits.io_memory_bytes,
                    defaults::IO_MEMORY_BYTES
                ),
            );
        }
        if limits.open_files_per_shard_max == Some(0) {
            return invalid(
                "open_files_per_shard_max",
                "must be greater than zero".to_string(),
            );
        }
        if limits.partitions_per_topic_max == 0 {
            return invalid(
                "partitions_per_topic_max",
                "must be greater than zero".to_string(),
            );
        }
        if limits.retention_check_interval_ms == 0 {
            return invalid(
                "retention_check_interval_ms",
                "must be greater than zero".to_string(),
            );
        }
        if limits.compaction_check_interval_ms == 0 {
            return invalid(
                "compaction_check_interval_ms",
                "must be greater than zero".to_string(),
            );
        }
        if limits.compaction_cpu_slice_us == 0 {
            return invalid(
                "compaction_cpu_slice_us",
                "must be greater than zero".to_string(),
            );
        }
        if !(1..=1000).contains(&limits.compaction_cpu_shares) {
            return invalid(
                "compaction_cpu_shares",
                format!(
                    "{} is outside 1..=1000 (glommio's range; requests have 1000)",
                    limits.compaction_cpu_shares
                ),
            );
        }
        if limits.compaction_key_map_entries_max == 0 {
            return invalid(
                "compaction_key_map_entries_max",
                "must be greater than zero".to_string(),
            );
        }
        if limits.recovery_point_interval_ms == 0 {
            return invalid(
                "recovery_point_interval_ms",
                "must be greater than zero".to_string(),
            );
        }
        self.check_groups()?;
        self.check_cluster()?;
        self.transactions
            .check()
            .map_err(|(setting, message)| ConfigError::Invalid { setting, message })?;
        if tracing_subscriber::EnvFilter::try_new(&self.log_level).is_err() {
            return invalid(
                "log_level",
                format!("{:?} is not a log filter", self.log_level),
            );
        }
        Ok(())
    }
}

impl Config {
    /// The cluster settings' relations: timers that could never fire in order, a replica fetch
    /// that cannot fit a frame, and an address peers could not reach.
    fn check_cluster(&self) -> Result<(), ConfigError> {
        let limits = &self.limits;
        let invalid =
            |setting: &'static str, message: String| Err(ConfigError::Invalid { setting, message });
        let positive = [
            ("metadata_tick_ms", limits.metadata_tick_ms),
            (
                "metadata_heartbeat_ticks",
                limits.metadata_heartbeat_ticks as u64,
            ),
            (
                "metadata_snapshot_every_entries",
                limits.metadata_snapshot_every_entries,
            ),
            (
                "cluster_propose_timeout_ms",
                limits.cluster_propose_timeout_ms,
            ),
            ("replica_lag_time_max_ms", limits.replica_lag_time_max_ms),
        ];
        for (setting, value) in positive {
            if value == 0 {
                return invalid(setting, "must be greater than zero".to_string());
            }
        }
        if limits.metadata_election_ticks <= limits.metadata_heartbeat_ticks {
            return invalid(
                "metadata_election_ticks",
                format!(
                    "{} is not above metadata_heartbeat_ticks {}: followers would stand for \
                     election between two heartbeats of a live controller",
                    limits.metadata_election_ticks, limits.metadata_heartbeat_ticks
                ),
            );
        }
        let election_timeout_ms = limits.metadata_tick_ms * limits.metadata_election_ticks as u64;
        if limits.broker_session_timeout_ms <= election_timeout_ms {
            return invalid(
                "broker_session_timeout_ms",
                format!(
                    "{} is not above the metadata election timeout ({} ms = metadata_tick_ms × \
                     metadata_election_ticks): a new controller would fence brokers before it \
                     could hear them",
                    limits.broker_session_timeout_ms, election_timeout_ms
                ),
            );
        }
        if limits.replica_lag_time_max_ms <= limits.replica_fetch_wait_ms {
            return invalid(
                "replica_lag_time_max_ms",
                format!(
                    "{} is not above replica_fetch_wait_ms {}: an idle follower waiting in its \
                     fetch would leave the in-sync replicas",
                    limits.replica_lag_time_max_ms, limits.replica_fetch_wait_ms
                ),
            );
        }
        self.check_inter_broker()?;
        if limits.default_replication_factor == Some(0) {
            return invalid(
                "default_replication_factor",
                "a topic needs at least one replica".to_string(),
            );
        }
        if self.cluster.is_cluster_mode()
            && self.cluster.advertised.is_none()
            && self.listen.ip().is_unspecified()
        {
            return invalid(
                "advertised",
                format!(
                    "the native listener {} is a wildcard address peers cannot reach: set \
                     --advertised HOST:PORT in cluster mode",
                    self.listen
                ),
            );
        }
        Ok(())
    }

    /// Whether the native listener authenticates its clients (SASL, or client certificates):
    /// then the brokers' own calls arrive there as a principal of their own, not as
    /// `User:ANONYMOUS`.
    pub fn native_listener_authenticates(&self) -> bool {
        !self.sasl_mechanisms.is_empty()
            || self
                .tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca_file.is_some())
    }

    /// In cluster mode the brokers call each other on the native listener, so whatever that
    /// listener requires of clients, each broker's calls must bring: TLS (a CA to verify the
    /// peers with), the SASL login, and, with authorization on, a principal allowed
    /// ClusterAction, which only super users are given without ACLs.
    fn check_inter_broker(&self) -> Result<(), ConfigError> {
        let invalid = |setting, message: String| Err(ConfigError::Invalid { setting, message });
        if !self.cluster.is_cluster_mode() {
            return Ok(());
        }
        if self.tls.is_some() && self.inter_broker.tls_ca_file.is_none() {
            return invalid(
                "inter_broker_tls_ca_file",
                "the native listener has TLS (tls_cert_file) in cluster mode, where brokers call \
                 each other on it: set inter_broker_tls_ca_file to the CA bundle that signed the \
                 brokers' certificates"
                    .to_string(),
            );
        }
        if !self.sasl_mechanisms.is_empty() {
            let offered: Vec<&str> = self.sasl_mechanisms.iter().map(|m| m.name()).collect();
            let Some(sasl) = &self.inter_broker.sasl else {
                return invalid(
                    "inter_broker_sasl_mechanism",
                    format!(
                        "the native listener requires SASL ({}) in cluster mode, where brokers \
                         call each other on it: set inter_broker_sasl_mechanism (one of those), \
                         inter_broker_user and inter_broker_password_file (or {})",
                        offered.join(", "),
                        INTER_BROKER_PASSWORD_VARIABLE
                    ),
                );
            };
            if !self.sasl_mechanisms.contains(&sasl.mechanism) {
                return invalid(
                    "inter_broker_sasl_mechanism",
                    format!(
                        "{} is not among the native listener's sasl_mechanisms ({}): the other \
                         brokers would refuse it",
                        sasl.mechanism,
                        offered.join(", ")
                    ),
                );
            }
        }
        if self.sasl_mechanisms.is_empty() && self.inter_broker.sasl.is_some() {
            // The brokers share one listener configuration: a login no listener takes would
            // fail every call, so it is refused here rather than found in the logs.
            return invalid(
                "inter_broker_sasl_mechanism",
                "the brokers would log in to native listeners that offer no SASL (set \
                 sasl_mechanisms, or leave the inter_broker_sasl_* settings out)"
                    .to_string(),
            );
        }
        if !self.authorization.enabled {
            return Ok(());
        }
        let super_users = &self.authorization.super_users;
        match (
            &self.inter_broker.sasl,
            self.native_listener_authenticates(),
        ) {
            (Some(sasl), true) if !self.sasl_mechanisms.is_empty() => {
                let principal = sasl.principal();
                if !super_users.contains(&principal) {
                    return invalid(
                        "super_users",
                        format!(
                            "authorization is on in cluster mode and the brokers call each other \
                             as {principal} (inter_broker_user): add {principal} to super_users, \
                             or their replica fetches, Raft messages and proposals are refused"
                        ),
                    );
                }
                Ok(())
            }
            // Client certificates alone: the principal is the CN of this broker's certificate,
            // checked when the certificate is read at start (`peer::PeerSecurity::load`).
            (_, true) => Ok(()),
            (_, false) => {
                if super_users.contains(&Principal::anonymous()) {
                    return Ok(());
                }
                // The brokers' own calls arrive on the native listener as User:ANONYMOUS and
                // need ClusterAction: granting it makes every native client a broker, so the
                // operator says so.
                invalid(
                    "authorization",
                    "authorization is on in cluster mode (kafka_sasl_mechanisms turns it on \
                     unless authorization = false), but the native listener does not \
                     authenticate, so brokers call each other as User:ANONYMOUS: require SASL \
                     there (sasl_mechanisms with inter_broker_sasl_mechanism, inter_broker_user \
                     and its password, the user in super_users), or client certificates \
                     (tls_client_ca_file), or add User:ANONYMOUS to super_users (every native \
                     client is then trusted as a broker: keep the native listener on a private \
                     network), or set authorization = false"
                        .to_string(),
                )
            }
        }
    }

    /// `group_write_batch_bytes_max` was not set, so it was derived (from `frame_bytes_max`, or
    /// its default): a derived value too small for one committed offset record is the fault of
    /// the setting that shrank it, and the message names that one, not a setting never set.
    fn check_derived_group_batch(&self) -> Result<(), ConfigError> {
        let groups = &self.groups;
        let needed_bytes = groups.offset_metadata_bytes_max + OFFSET_RECORD_OVERHEAD_BYTES;
        if groups.write_batch_bytes_max >= needed_bytes {
            return Ok(());
        }
        if groups.write_batch_bytes_max == batch_bytes_max(self.limits.frame_bytes_max) {
            return Err(ConfigError::Invalid {
                setting: "frame_bytes_max",
                message: format!(
                    "{} is too small for the group coordinator, whose record batches follow \
                     frame_bytes_max: one committed offset with offset_metadata_bytes_max {} \
                     needs {needed_bytes} bytes; set frame_bytes_max to at least {needed_bytes}",
                    self.limits.frame_bytes_max, groups.offset_metadata_bytes_max
                ),
            });
        }
        Err(ConfigError::Invalid {
            setting: "offset_metadata_bytes_max",
            message: format!(
                "{} plus {OFFSET_RECORD_OVERHEAD_BYTES} bytes of record overhead is above the \
                 group coordinator's batch size {} (group_write_batch_bytes_max's default)",
                groups.offset_metadata_bytes_max, groups.write_batch_bytes_max
            ),
        })
    }

    /// The group limits' own relations, and theirs with the server limits: the offsets topic
    /// must be a topic the catalog and the storage engine accept, or the first group request
    /// would fail instead of the start.
    fn check_groups(&self) -> Result<(), ConfigError> {
        let groups = &self.groups;
        groups
            .check()
            .map_err(|(setting, message)| ConfigError::Invalid { setting, message })?;
        if groups.offsets_topic_partitions > self.limits.partitions_per_topic_max {
            return Err(ConfigError::Invalid {
                setting: "offsets_topic_partitions",
                message: format!(
                    "{} is above partitions_per_topic_max {}",
                    groups.offsets_topic_partitions, self.limits.partitions_per_topic_max
                ),
            });
        }
        let batch_bytes_max = self.limits.batch_bytes_max();
        if groups.write_batch_bytes_max > batch_bytes_max {
            return Err(ConfigError::Invalid {
                setting: "group_write_batch_bytes_max",
                message: format!(
                    "{} is above the largest batch a partition accepts with this frame_bytes_max, {batch_bytes_max}",
                    groups.write_batch_bytes_max
                ),
            });
        }
        let segment_bytes = groups.offsets_topic_segment_bytes.to_string();
        let refused = |message: String| ConfigError::Invalid {
            setting: "offsets_topic_segment_bytes",
            message,
        };
        let topic = TopicConfig::default()
            .with_entries([(SEGMENT_BYTES, segment_bytes.as_str())])
            .map_err(|error| refused(error.to_string()))?;
        log_config(&topic, batch_bytes_max)
            .check()
            .map_err(|error| refused(error.to_string()))
    }
}

/// glommio raises a smaller `io_memory` to this (and rounds it up to 4096-byte pages), so a
/// smaller setting would not mean what it says.
pub const IO_MEMORY_BYTES_MIN: usize = 64 * 1024;

/// See [`Limits::batch_bytes_max`]; also needed before the limits are built.
fn batch_bytes_max(frame_bytes_max: usize) -> usize {
    frame_bytes_max.min(spate_protocol::constants::BATCH_BYTES_MAX)
}

/// The transaction coordinator's limits from one merged layer, defaults where unset.
fn txn_limits(layer: &Overrides) -> TxnLimits {
    let defaults = TxnLimits::default();
    TxnLimits {
        transaction_timeout_ms_max: layer
            .txn_timeout_ms_max
            .unwrap_or(defaults.transaction_timeout_ms_max),
        timer_tick_ms: layer.txn_timer_tick_ms.unwrap_or(defaults.timer_tick_ms),
        // The rest are mechanics or bounds no deployment has needed to move yet.
        ..defaults
    }
}

/// The group coordinator's limits from one merged layer, defaults where unset.
fn group_limits(layer: &Overrides) -> GroupLimits {
    let defaults = GroupLimits::default();
    GroupLimits {
        offsets_topic_partitions: layer
            .offsets_topic_partitions
            .unwrap_or(group_defaults::OFFSETS_TOPIC_PARTITIONS),
        offsets_topic_segment_bytes: layer
            .offsets_topic_segment_bytes
            .unwrap_or(group_defaults::OFFSETS_TOPIC_SEGMENT_BYTES),
        session_timeout_ms_min: layer
            .group_session_timeout_ms_min
            .unwrap_or(group_defaults::SESSION_TIMEOUT_MS_MIN),
        session_timeout_ms_max: layer
            .group_session_timeout_ms_max
            .unwrap_or(group_defaults::SESSION_TIMEOUT_MS_MAX),
        rebalance_timeout_ms_max: layer
            .group_rebalance_timeout_ms_max
            .unwrap_or(group_defaults::REBALANCE_TIMEOUT_MS_MAX),
        initial_rebalance_delay_ms: layer
            .group_initial_rebalance_delay_ms
            .unwrap_or(group_defaults::INITIAL_REBALANCE_DELAY_MS),
        groups_per_shard_max: layer
            .groups_per_shard_max
            .unwrap_or(group_defaults::GROUPS_PER_SHARD_MAX),
        members_per_group_max: layer
            .members_per_group_max
            .unwrap_or(group_defaults::MEMBERS_PER_GROUP_MAX),
        offset_metadata_bytes_max: layer
            .offset_metadata_bytes_max
            .unwrap_or(group_defaults::OFFSET_METADATA_BYTES_MAX),
        // Unset, it follows a lowered frame limit: the coordinator's batches go through the
        // same partition checks as a producer's.
        write_batch_bytes_max: layer.group_write_batch_bytes_max.unwrap_or_else(|| {
            group_defaults::WRITE_BATCH_BYTES_MAX.min(batch_bytes_max(
                layer.frame_bytes_max.unwrap_or(defaults::FRAME_BYTES_MAX),
            ))
        }),
        writes_queued_max: layer
            .group_writes_queued_max
            .unwrap_or(group_defaults::WRITES_QUEUED_MAX),
        timer_tick_ms: layer
            .group_timer_tick_ms
            .unwrap_or(group_defaults::TIMER_TICK_MS),
        // Not settings: how replay reads and how a new partition's load is retried are
        // mechanics, not policy.
        ..defaults
    }
}

fn read_file(path: &Path) -> Result<Overrides, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ConfigError::ParseFile {
        path: path.to_path_buf(),
        message: error.to_string(),
    })
}

/// The Kafka listener's settings; `None` when `kafka_listen` is `none`.
/// One listener's TLS settings from its three optional files, named by `settings` (certificate,
/// key, client CA): none set is plaintext; a certificate without its key (or the reverse), or a
/// client CA without both, is half a configuration and refused rather than served in plaintext.
fn listener_tls(
    settings: [&'static str; 3],
    files: [Option<PathBuf>; 3],
) -> Result<Option<ListenerTls>, ConfigError> {
    let [cert_setting, key_setting, client_ca_setting] = settings;
    let [cert_file, key_file, client_ca_file] = files;
    match (cert_file, key_file) {
        (None, None) if client_ca_file.is_none() => Ok(None),
        (None, None) => Err(ConfigError::Invalid {
            setting: client_ca_setting,
            message: format!(
                "verifying client certificates needs TLS: set {cert_setting} and {key_setting} too"
            ),
        }),
        (Some(_), None) => Err(ConfigError::Invalid {
            setting: key_setting,
            message: format!("{cert_setting} is set without its private key {key_setting}"),
        }),
        (None, Some(_)) => Err(ConfigError::Invalid {
            setting: cert_setting,
            message: format!("{key_setting} is set without its certificate {cert_setting}"),
        }),
        (Some(cert_file), Some(key_file)) => Ok(Some(ListenerTls {
            cert_file,
            key_file,
            client_ca_file,
        })),
    }
}

/// TLS settings for a listener that is turned off would silently do nothing: refused.
fn refuse_tls_of_listener_off(
    listen_setting: &'static str,
    settings: [(&'static str, bool); 3],
) -> Result<(), ConfigError> {
    match settings.iter().find(|(_, set)| *set) {
        None => Ok(()),
        Some((setting, _)) => Err(ConfigError::Invalid {
            setting,
            message: format!("{listen_setting} is none: there is no listener to secure"),
        }),
    }
}

fn kafka_config(layer: &Overrides) -> Result<Option<KafkaConfig>, ConfigError> {
    let listen_text = layer
        .kafka_listen
        .clone()
        .unwrap_or_else(|| defaults::KAFKA_LISTEN.to_string());
    if listen_text.trim().eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let listen = resolve_listen(listen_text.trim())?;
    let advertised = match &layer.kafka_advertised {
        None => None,
        Some(text) => Some(parse_host_port(text).ok_or_else(|| ConfigError::Invalid {
            setting: "kafka_advertised",
            message: format!("{text:?} is not HOST:PORT"),
        })?),
    };
    let default_partitions = layer
        .kafka_default_partitions
        .unwrap_or(defaults::KAFKA_DEFAULT_PARTITIONS);
    if default_partitions == 0 {
        return Err(ConfigError::Invalid {
            setting: "kafka_default_partitions",
            message: "a topic needs at least one partition".to_string(),
        });
    }
    Ok(Some(KafkaConfig {
        listen,
        advertised,
        auto_create_topics: layer
            .kafka_auto_create_topics
            .unwrap_or(defaults::KAFKA_AUTO_CREATE_TOPICS),
        default_partitions,
        tls: listener_tls(
            [
                "kafka_tls_cert_file",
                "kafka_tls_key_file",
                "kafka_tls_client_ca_file",
            ],
            [
                layer.kafka_tls_cert_file.clone(),
                layer.kafka_tls_key_file.clone(),
                layer.kafka_tls_client_ca_file.clone(),
            ],
        )?,
        sasl_mechanisms: sasl_mechanisms(&layer.kafka_sasl_mechanisms, "kafka_sasl_mechanisms")?,
    }))
}

/// `authorization` resolved (`auto`: on when a listener requires SASL) and `super_users` parsed.
fn authorization_config(
    layer: &Overrides,
    native_mechanisms: &[SaslMechanism],
    kafka: Option<&KafkaConfig>,
) -> Result<AuthorizationConfig, ConfigError> {
    let enabled = match layer.authorization.unwrap_or(AuthorizationSetting::Auto) {
        AuthorizationSetting::Enabled => true,
        AuthorizationSetting::Disabled => false,
        AuthorizationSetting::Auto => {
            !native_mechanisms.is_empty()
                || kafka.is_some_and(|kafka| !kafka.sasl_mechanisms.is_empty())
        }
    };
    let super_users = match &layer.super_users {
        None => Vec::new(),
        Some(text) => parse_super_users(text).map_err(|message| ConfigError::Invalid {
            setting: "super_users",
            message,
        })?,
    };
    Ok(AuthorizationConfig {
        enabled,
        super_users,
    })
}

/// `super_users`: principals "Type:name" separated by semicolons (Kafka's `super.users`
/// separator, which lets a name hold commas) when the text has any, otherwise by commas.
fn parse_super_users(text: &str) -> Result<Vec<Principal>, String> {
    let separator = if text.contains(';') { ';' } else { ',' };
    text.split(separator)
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(|entry| {
            Principal::parse(entry).ok_or_else(|| {
                format!("{entry:?} is not a principal of the form Type:name (User:admin)")
            })
        })
        .collect()
}

/// A listener's SASL mechanisms (`auth::parse_mechanisms`); unset: none.
fn sasl_mechanisms(
    text: &Option<String>,
    setting: &'static str,
) -> Result<Vec<SaslMechanism>, ConfigError> {
    let Some(text) = text else {
        return Ok(Vec::new());
    };
    crate::auth::parse_mechanisms(text).map_err(|message| ConfigError::Invalid { setting, message })
}

/// The `inter_broker_*` settings: the SASL ones all together or none.
fn inter_broker_config(
    layer: &Overrides,
    password_from_environment: Option<String>,
) -> Result<InterBrokerConfig, ConfigError> {
    let invalid = |setting, message: String| ConfigError::Invalid { setting, message };
    let password = match (&layer.inter_broker_password_file, password_from_environment) {
        (Some(path), _) => Some(InterBrokerPassword::File(path.clone())),
        (None, Some(password)) if !password.is_empty() => {
            Some(InterBrokerPassword::Environment(password))
        }
        (None, _) => None,
    };
    let mechanism = layer
        .inter_broker_sasl_mechanism
        .as_deref()
        .map(str::trim)
        .filter(|name| !name.is_empty());
    let user = layer
        .inter_broker_user
        .as_deref()
        .map(str::trim)
        .filter(|user| !user.is_empty());
    let sasl = match (mechanism, user, password) {
        (None, None, None) => None,
        (Some(name), Some(user), Some(password)) => {
            let mechanism = SaslMechanism::from_name(name).ok_or_else(|| {
                invalid(
                    "inter_broker_sasl_mechanism",
                    format!("{name:?} is none of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
                )
            })?;
            Some(InterBrokerSasl {
                mechanism,
                user: user.to_string(),
                password,
            })
        }
        (None, _, _) => {
            return Err(invalid(
                "inter_broker_sasl_mechanism",
                "inter_broker_user or its password is set without the mechanism to log in with"
                    .to_string(),
            ))
        }
        (Some(_), None, _) => {
            return Err(invalid(
                "inter_broker_user",
                "inter_broker_sasl_mechanism is set without the user to log in as".to_string(),
            ))
        }
        (Some(_), Some(_), None) => {
            return Err(invalid(
                "inter_broker_password_file",
                format!(
                    "inter_broker_user is set without a password: name a file holding it \
                     (inter_broker_password_file) or set {INTER_BROKER_PASSWORD_VARIABLE}"
                ),
            ))
        }
    };
    Ok(InterBrokerConfig {
        tls_ca_file: layer.inter_broker_tls_ca_file.clone(),
        sasl,
    })
}

/// The node id, seeds and advertised address from one merged layer.
fn cluster_config(layer: &Overrides) -> Result<ClusterConfig, ConfigError> {
    let node_id = layer.node_id.unwrap_or(defaults::NODE_ID);
    if node_id < 0 {
        return Err(ConfigError::Invalid {
            setting: "node_id",
            message: format!("{node_id} is negative; node ids are 0 and up (-1 means none)"),
        });
    }
    let seeds = match &layer.seeds {
        None => Vec::new(),
        Some(text) => parse_seeds(text).map_err(|message| ConfigError::Invalid {
            setting: "seeds",
            message,
        })?,
    };
    let advertised = match &layer.advertised {
        None => None,
        Some(text) => Some(parse_host_port(text).ok_or_else(|| ConfigError::Invalid {
            setting: "advertised",
            message: format!("{text:?} is not HOST:PORT"),
        })?),
    };
    Ok(ClusterConfig {
        node_id,
        seeds,
        advertised,
    })
}

/// `HOST:PORT` or `ID@HOST:PORT`, comma separated; blanks around entries ignored, an empty
/// list is single mode. Two seeds at one address, or two with one id, are refused.
pub fn parse_seeds(text: &str) -> Result<Vec<Seed>, String> {
    let mut seeds: Vec<Seed> = Vec::new();
    for entry in text
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
    {
        let (id, address) = match entry.split_once('@') {
            Some((id, address)) => {
                let id: i32 = id
                    .trim()
                    .parse()
                    .map_err(|_| format!("{entry:?}: {id:?} is not a node id"))?;
                if id < 0 {
                    return Err(format!("{entry:?}: node ids are 0 and up"));
                }
                (Some(id), address)
            }
            None => (None, entry),
        };
        let (host, port) = parse_host_port(address)
            .ok_or_else(|| format!("{entry:?} is not HOST:PORT or ID@HOST:PORT"))?;
        if seeds
            .iter()
            .any(|seed| seed.host == host && seed.port == port)
        {
            return Err(format!("{host}:{port} is named twice"));
        }
        if id.is_some() && seeds.iter().any(|seed| seed.id == id) {
            return Err(format!("node id {} is named twice", id.unwrap_or(-1)));
        }
        seeds.push(Seed { id, host, port });
    }
    Ok(seeds)
}

/// `host:port` (a name, an IPv4 address, or an IPv6 address in brackets) and a non-zero port.
fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.trim().rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port: u16 = port.parse().ok()?;
    (!host.is_empty() && port != 0).then(|| (host.to_string(), port))
}

fn resolve_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    let error = |message: String| ConfigError::ListenAddress {
        address: text.to_string(),
        message,
    };
    let mut addresses = text
        .to_socket_addrs()
        .map_err(|source| error(source.to_string()))?;
    addresses
        .next()
        .ok_or_else(|| error("no address".to_string()))
}

/// The CPUs this process may run on (its affinity mask), in ascending order.
pub fn available_cores() -> Vec<usize> {
    let Ok(set) = rustix::thread::sched_getaffinity(None) else {
        let count = std::thread::available_parallelism().map_or(1, |count| count.get());
        return (0..count).collect();
    };
    (0..rustix::thread::CpuSet::MAX_CPU)
        .filter(|&core| set.is_set(core))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::collections::HashMap;

    fn build(
        arguments: &[&str],
        environment: &[(&str, &str)],
        available: Vec<usize>,
    ) -> Result<Config, ConfigError> {
        let command_line = CommandLine::try_parse_from(
            std::iter::once("spate-broker").chain(arguments.iter().copied()),
        )
        .expect("arguments parse");
        let environment: HashMap<String, String> = environment
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect();
        let lookup = move |name: &str| environment.get(name).cloned();
        Config::from_layers(command_line, &lookup, available)
    }

    fn refusal(arguments: &[&str]) -> (&'static str, String) {
        match build(arguments, &[], vec![0]) {
            Err(ConfigError::Invalid { setting, message }) => (setting, message),
            other => panic!("{arguments:?} was not refused as invalid: {other:?}"),
        }
    }

    #[test]
    fn a_small_frame_limit_is_refused_naming_frame_bytes_max_and_the_relation() {
        let (setting, message) = refusal(&["--frame-bytes-max", "1024"]);
        assert_eq!(setting, "frame_bytes_max", "{message}");
        assert!(message.contains("offset_metadata_bytes_max"), "{message}");
        assert!(message.contains("at least"), "{message}");
        // Set explicitly, the group batch size is the setting named.
        let (setting, _) = refusal(&[
            "--frame-bytes-max",
            "1024",
            "--group-write-batch-bytes-max",
            "1024",
        ]);
        assert_eq!(setting, "group_write_batch_bytes_max");
    }

    #[test]
    fn tls_files_layer_like_every_setting_and_half_a_configuration_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "kafka_tls_cert_file = \"/toml/kafka.pem\"\nkafka_tls_key_file = \"/toml/kafka.key\"\n",
        )
        .unwrap();
        let config_path = file.path().to_str().unwrap();
        let config = build(
            &[
                "--config",
                config_path,
                "--tls-cert-file",
                "/flag/native.pem",
                "--tls-key-file",
                "/flag/native.key",
                "--kafka-tls-key-file",
                "/flag/kafka.key",
            ],
            &[("SPATE_TLS_CLIENT_CA_FILE", "/env/ca.pem")],
            vec![0],
        )
        .unwrap();
        assert_eq!(
            config.tls,
            Some(ListenerTls {
                cert_file: "/flag/native.pem".into(),
                key_file: "/flag/native.key".into(),
                client_ca_file: Some("/env/ca.pem".into()),
            })
        );
        let kafka_tls = config.kafka.unwrap().tls.unwrap();
        assert_eq!(kafka_tls.cert_file, PathBuf::from("/toml/kafka.pem"));
        assert_eq!(kafka_tls.key_file, PathBuf::from("/flag/kafka.key"));
        assert_eq!(config.admin_tls, None);
        assert_eq!(
            config.limits.tls_handshake_timeout_ms,
            defaults::TLS_HANDSHAKE_TIMEOUT_MS
        );

        let (setting, message) = refusal(&["--tls-cert-file", "a.pem"]);
        assert_eq!(setting, "tls_key_file", "{message}");
        let (setting, _) = refusal(&["--admin-tls-key-file", "a.key"]);
        assert_eq!(setting, "admin_tls_cert_file");
        let (setting, message) = refusal(&["--kafka-tls-client-ca-file", "ca.pem"]);
        assert_eq!(setting, "kafka_tls_client_ca_file", "{message}");
        let (setting, message) = refusal(&[
            "--kafka-listen",
            "none",
            "--kafka-tls-cert-file",
            "a.pem",
            "--kafka-tls-key-file",
            "a.key",
        ]);
        assert_eq!(setting, "kafka_tls_cert_file", "{message}");
        assert!(message.contains("kafka_listen is none"), "{message}");
        let (setting, message) = refusal(&[
            "--seeds",
            "127.0.0.1:9192",
            "--tls-cert-file",
            "a.pem",
            "--tls-key-file",
            "a.key",
        ]);
        assert_eq!(setting, "inter_broker_tls_ca_file", "{message}");
        assert!(message.contains("cluster mode"), "{message}");
        let (setting, _) = refusal(&["--tls-handshake-timeout-ms", "0"]);
        assert_eq!(setting, "tls_handshake_timeout_ms");
    }

    #[test]
    fn authorization_is_on_by_default_only_when_a_listener_requires_sasl() {
        let enabled = |arguments: &[&str]| {
            build(arguments, &[], vec![0])
                .expect("valid")
                .authorization
                .enabled
        };
        assert!(!enabled(&[]));
        assert!(enabled(&["--kafka-sasl-mechanisms", "PLAIN"]));
        assert!(enabled(&["--sasl-mechanisms", "SCRAM-SHA-256"]));
        assert!(!enabled(&[
            "--kafka-sasl-mechanisms",
            "PLAIN",
            "--authorization",
            "false"
        ]));
        assert!(enabled(&["--authorization", "true"]));
        let from_environment = build(&[], &[("SPATE_AUTHORIZATION", "true")], vec![0])
            .expect("valid")
            .authorization;
        assert!(from_environment.enabled);
        assert!(matches!(
            build(&[], &[("SPATE_AUTHORIZATION", "maybe")], vec![0]),
            Err(ConfigError::ParseEnv {
                name: "SPATE_AUTHORIZATION",
                ..
            })
        ));
    }

    #[test]
    fn authorization_in_cluster_mode_needs_the_brokers_principal_trusted() {
        let cluster_with_sasl = [
            "--seeds",
            "127.0.0.1:9192",
            "--kafka-sasl-mechanisms",
            "PLAIN",
        ];
        let (setting, message) = refusal(&cluster_with_sasl);
        assert_eq!(setting, "authorization", "{message}");
        assert!(message.contains("User:ANONYMOUS"), "{message}");
        let trusted = [
            &cluster_with_sasl[..],
            &["--super-users", "User:ANONYMOUS,User:admin"],
        ];
        assert!(build(&trusted.concat(), &[], vec![0]).is_ok());
        let off = [&cluster_with_sasl[..], &["--authorization", "false"]];
        assert!(build(&off.concat(), &[], vec![0]).is_ok());
    }

    #[test]
    fn super_users_split_at_commas_or_at_kafkas_semicolons() {
        let super_users = |text: &str| {
            build(&["--super-users", text], &[], vec![0])
                .expect("valid")
                .authorization
                .super_users
        };
        assert_eq!(
            super_users("User:admin, User:ops"),
            [Principal::user("admin"), Principal::user("ops")]
        );
        assert_eq!(
            super_users("User:CN=a,O=b;User:ops"),
            [Principal::user("CN=a,O=b"), Principal::user("ops")]
        );
        let (setting, message) = refusal(&["--super-users", "admin"]);
        assert_eq!(setting, "super_users", "{message}");
    }

    #[test]
    fn a_config_file_takes_authorization_as_a_boolean_or_a_word() {
        let directory = tempfile::tempdir().expect("temporary directory");
        for (text, enabled) in [
            ("authorization = true", true),
            ("authorization = \"auto\"", false),
        ] {
            let path = directory.path().join("spate.toml");
            std::fs::write(&path, text).expect("written");
            let path_text = path.display().to_string();
            let config =
                build(&[], &[("SPATE_CONFIG", path_text.as_str())], vec![0]).expect("valid");
            assert_eq!(config.authorization.enabled, enabled, "{text}");
        }
    }

    #[test]
    fn io_memory_too_small_to_register_is_refused() {
        for too_small in ["1", "4096", "65535"] {
            let (setting, message) = refusal(&["--io-memory-bytes", too_small]);
            assert_eq!(setting, "io_memory_bytes", "{message}");
            assert!(message.contains("65536"), "{message}");
        }
        build(&["--io-memory-bytes", "65536"], &[], vec![0]).expect("the minimum is accepted");
    }

    #[test]
    fn no_arguments_give_the_embedded_defaults() {
        let config = build(&[], &[], vec![0, 1, 2]).unwrap();
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert_eq!(
            config.listen,
            "127.0.0.1:9192".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(config.placement, ShardPlacement::Pinned(vec![0, 1, 2]));
        assert_eq!(config.log_level, "info");
        assert_eq!(config.limits.frame_bytes_max, defaults::FRAME_BYTES_MAX);
        let kafka = config.kafka.expect("the Kafka listener is on by default");
        assert_eq!(
            kafka.listen,
            "127.0.0.1:9092".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(kafka.advertised(), ("127.0.0.1".to_string(), 9092));
        assert!(kafka.auto_create_topics);
        assert_eq!(kafka.default_partitions, 1);
    }

    #[test]
    fn the_kafka_listener_is_set_by_flag_file_and_environment_and_none_turns_it_off() {
        let off = build(&["--kafka-listen", "none"], &[], vec![0]).unwrap();
        assert_eq!(off.kafka, None);
        let from_flags = build(
            &[
                "--kafka-listen",
                "127.0.0.1:0",
                "--kafka-advertised",
                "kafka.example:19092",
                "--kafka-auto-create-topics",
                "false",
                "--kafka-default-partitions",
                "3",
            ],
            &[],
            vec![0],
        )
        .unwrap()
        .kafka
        .unwrap();
        assert_eq!(from_flags.listen.port(), 0);
        assert_eq!(
            from_flags.advertised(),
            ("kafka.example".to_string(), 19092)
        );
        assert!(!from_flags.auto_create_topics);
        assert_eq!(from_flags.default_partitions, 3);
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(&file, "kafka_listen = \"127.0.0.1:1900\"\n").unwrap();
        let from_file = build(&["--config", file.to_str().unwrap()], &[], vec![0]).unwrap();
        assert_eq!(from_file.kafka.unwrap().listen.port(), 1900);
        let from_environment = build(
            &["--config", file.to_str().unwrap()],
            &[("SPATE_KAFKA_LISTEN", "none")],
            vec![0],
        )
        .unwrap();
        assert_eq!(from_environment.kafka, None);
        let (setting, _) = refusal(&["--kafka-advertised", "no-port"]);
        assert_eq!(setting, "kafka_advertised");
    }

    #[test]
    fn sasl_mechanisms_are_set_per_listener_by_flag_file_and_environment() {
        use crate::auth::SaslMechanism;
        let default = build(&[], &[], vec![0]).unwrap();
        assert!(
            default.sasl_mechanisms.is_empty(),
            "no authentication by default"
        );
        assert!(default.kafka.unwrap().sasl_mechanisms.is_empty());
        let from_flags = build(
            &[
                "--sasl-mechanisms",
                "SCRAM-SHA-256",
                "--kafka-sasl-mechanisms",
                "PLAIN,SCRAM-SHA-512",
            ],
            &[],
            vec![0],
        )
        .unwrap();
        assert_eq!(from_flags.sasl_mechanisms, [SaslMechanism::ScramSha256]);
        assert_eq!(
            from_flags.kafka.unwrap().sasl_mechanisms,
            [SaslMechanism::Plain, SaslMechanism::ScramSha512]
        );
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(&file, "kafka_sasl_mechanisms = \"SCRAM-SHA-512\"\n").unwrap();
        let from_file = build(&["--config", file.to_str().unwrap()], &[], vec![0]).unwrap();
        assert_eq!(
            from_file.kafka.unwrap().sasl_mechanisms,
            [SaslMechanism::ScramSha512]
        );
        let from_environment = build(
            &["--config", file.to_str().unwrap()],
            &[("SPATE_KAFKA_SASL_MECHANISMS", "")],
            vec![0],
        )
        .unwrap();
        assert!(from_environment.kafka.unwrap().sasl_mechanisms.is_empty());
        let (setting, _) = refusal(&["--kafka-sasl-mechanisms", "GSSAPI"]);
        assert_eq!(setting, "kafka_sasl_mechanisms");
        let (setting, _) = refusal(&["--sasl-mechanisms", "PLAIN", "--seeds", "127.0.0.1:9192"]);
        assert_eq!(
            setting, "inter_broker_sasl_mechanism",
            "the brokers need a login of their own"
        );
    }

    /// A cluster whose native listener requires TLS and SCRAM, with the settings each broker
    /// needs to call the others; each flag of `changed` given that value instead (or added).
    fn secured_cluster(changed: &[&str]) -> Vec<String> {
        let mut owned: Vec<String> = [
            "--seeds",
            "127.0.0.1:9192",
            "--tls-cert-file",
            "broker.pem",
            "--tls-key-file",
            "broker.key",
            "--inter-broker-tls-ca-file",
            "ca.pem",
            "--sasl-mechanisms",
            "SCRAM-SHA-512",
            "--inter-broker-sasl-mechanism",
            "SCRAM-SHA-512",
            "--inter-broker-user",
            "broker",
            "--inter-broker-password-file",
            "broker.password",
            "--super-users",
            "User:broker",
        ]
        .iter()
        .map(|argument| argument.to_string())
        .collect();
        for pair in changed.chunks(2) {
            match owned.iter().position(|argument| argument == pair[0]) {
                Some(flag) => owned[flag + 1] = pair[1].to_string(),
                None => owned.extend(pair.iter().map(|argument| argument.to_string())),
            }
        }
        owned
    }

    fn arguments(owned: &[String]) -> Vec<&str> {
        owned.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_cluster_with_tls_and_sasl_on_the_native_listener_is_accepted() {
        let config = build(&arguments(&secured_cluster(&[])), &[], vec![0]).expect("valid");
        assert!(config.authorization.enabled, "SASL turns authorization on");
        assert_eq!(
            config.inter_broker.tls_ca_file.as_deref(),
            Some(Path::new("ca.pem"))
        );
        let sasl = config.inter_broker.sasl.expect("a login");
        assert_eq!(sasl.mechanism, SaslMechanism::ScramSha512);
        assert_eq!(sasl.principal(), Principal::user("broker"));
        assert_eq!(
            sasl.password,
            InterBrokerPassword::File(PathBuf::from("broker.password"))
        );
    }

    #[test]
    fn the_inter_broker_password_comes_from_the_environment_and_is_never_printed() {
        let mut owned = secured_cluster(&[]);
        let file_flag = owned
            .iter()
            .position(|argument| argument == "--inter-broker-password-file")
            .unwrap();
        owned.drain(file_flag..file_flag + 2);
        let (setting, message) = match build(&arguments(&owned), &[], vec![0]) {
            Err(ConfigError::Invalid { setting, message }) => (setting, message),
            other => panic!("a login without a password was not refused: {other:?}"),
        };
        assert_eq!(setting, "inter_broker_password_file", "{message}");
        assert!(
            message.contains(INTER_BROKER_PASSWORD_VARIABLE),
            "{message}"
        );
        let config = build(
            &arguments(&owned),
            &[(INTER_BROKER_PASSWORD_VARIABLE, "s3cret-pa55")],
            vec![0],
        )
        .expect("valid");
        let password = &config.inter_broker.sasl.as_ref().unwrap().password;
        assert_eq!(password.read().unwrap(), "s3cret-pa55");
        assert!(!format!("{config:?}").contains("s3cret-pa55"));
    }

    #[test]
    fn the_inter_broker_password_file_gives_its_first_line() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("password");
        std::fs::write(&file, "first line\nsecond\n").unwrap();
        assert_eq!(
            InterBrokerPassword::File(file.clone()).read().unwrap(),
            "first line"
        );
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            InterBrokerPassword::File(file).read(),
            Err(ConfigError::Invalid {
                setting: "inter_broker_password_file",
                ..
            })
        ));
    }

    #[test]
    fn native_tls_in_cluster_mode_needs_the_inter_broker_ca() {
        let mut owned = secured_cluster(&[]);
        let ca_flag = owned
            .iter()
            .position(|argument| argument == "--inter-broker-tls-ca-file")
            .unwrap();
        owned.drain(ca_flag..ca_flag + 2);
        let (setting, message) = match build(&arguments(&owned), &[], vec![0]) {
            Err(ConfigError::Invalid { setting, message }) => (setting, message),
            other => panic!("native TLS without the CA was not refused: {other:?}"),
        };
        assert_eq!(setting, "inter_broker_tls_ca_file", "{message}");
        // One broker alone calls nobody.
        let alone: Vec<&str> = arguments(&owned).into_iter().skip(2).collect();
        assert!(build(&alone, &[], vec![0]).is_ok());
    }

    #[test]
    fn native_sasl_in_cluster_mode_needs_an_inter_broker_login_the_listener_offers() {
        let owned = secured_cluster(&["--inter-broker-sasl-mechanism", "PLAIN"]);
        let (setting, message) = match build(&arguments(&owned), &[], vec![0]) {
            Err(ConfigError::Invalid { setting, message }) => (setting, message),
            other => panic!("a mechanism the listener refuses was accepted: {other:?}"),
        };
        assert_eq!(setting, "inter_broker_sasl_mechanism", "{message}");
        assert!(message.contains("SCRAM-SHA-512"), "{message}");
        let owned = secured_cluster(&["--inter-broker-sasl-mechanism", "GSSAPI"]);
        let (setting, _) = refusal(&arguments(&owned));
        assert_eq!(setting, "inter_broker_sasl_mechanism");
        // A mechanism without a user, and a user without a mechanism.
        let (setting, _) = refusal(&["--inter-broker-sasl-mechanism", "PLAIN"]);
        assert_eq!(setting, "inter_broker_user");
        let (setting, _) = refusal(&["--inter-broker-user", "broker"]);
        assert_eq!(setting, "inter_broker_sasl_mechanism");
        // A login no native listener of the cluster takes.
        let mut owned = secured_cluster(&[]);
        let offered = owned
            .iter()
            .position(|argument| argument == "--sasl-mechanisms")
            .unwrap();
        owned.drain(offered..offered + 2);
        let (setting, message) = refusal(&arguments(&owned));
        assert_eq!(setting, "inter_broker_sasl_mechanism", "{message}");
        assert!(message.contains("offer no SASL"), "{message}");
    }

    #[test]
    fn authorization_with_native_sasl_in_cluster_mode_needs_the_broker_user_as_super_user() {
        let owned = secured_cluster(&["--super-users", "User:admin"]);
        let (setting, message) = refusal(&arguments(&owned));
        assert_eq!(setting, "super_users", "{message}");
        assert!(message.contains("User:broker"), "{message}");
        // User:ANONYMOUS no longer stands in for the brokers once they log in.
        let owned = secured_cluster(&["--super-users", "User:ANONYMOUS"]);
        let (setting, _) = refusal(&arguments(&owned));
        assert_eq!(setting, "super_users");
        let owned = secured_cluster(&["--super-users", "User:admin,User:broker"]);
        assert!(build(&arguments(&owned), &[], vec![0]).is_ok());
        let owned = secured_cluster(&["--super-users", "User:admin", "--authorization", "false"]);
        assert!(build(&arguments(&owned), &[], vec![0]).is_ok());
    }

    #[test]
    fn authorization_with_client_certificates_in_cluster_mode_leaves_the_principal_to_start() {
        // The brokers' principal is their certificate's CN, read when the broker starts
        // (`peer::PeerSecurity::load`), so the configuration alone is accepted.
        let config = build(
            &[
                "--seeds",
                "127.0.0.1:9192",
                "--tls-cert-file",
                "broker.pem",
                "--tls-key-file",
                "broker.key",
                "--tls-client-ca-file",
                "ca.pem",
                "--inter-broker-tls-ca-file",
                "ca.pem",
                "--authorization",
                "true",
            ],
            &[],
            vec![0],
        )
        .expect("valid");
        assert!(config.native_listener_authenticates());
        assert!(config.inter_broker.sasl.is_none());
    }

    #[test]
    fn flags_override_the_file_and_environment_overrides_flags() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(
            &file,
            "data_dir = \"/from/file\"\nlisten = \"127.0.0.1:1000\"\nlog_level = \"warn\"\nshards = 3\n",
        )
        .unwrap();
        let file_text = file.to_str().unwrap();

        let from_file = build(&["--config", file_text], &[], vec![0, 1]).unwrap();
        assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
        assert_eq!(from_file.listen.port(), 1000);
        assert_eq!(from_file.log_level, "warn");
        assert_eq!(from_file.placement, ShardPlacement::Unpinned(3));

        let with_flags = build(
            &[
                "--config",
                file_text,
                "--data-dir",
                "/from/flag",
                "--listen",
                "127.0.0.1:2000",
            ],
            &[],
            vec![0, 1],
        )
        .unwrap();
        assert_eq!(with_flags.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(with_flags.listen.port(), 2000);
        assert_eq!(with_flags.log_level, "warn");

        let with_environment = build(
            &["--config", file_text, "--data-dir", "/from/flag"],
            &[("SPATE_DATA_DIR", "/from/env"), ("SPATE_LOG", "debug")],
            vec![0, 1],
        )
        .unwrap();
        assert_eq!(with_environment.data_dir, PathBuf::from("/from/env"));
        assert_eq!(with_environment.log_level, "debug");
        assert_eq!(with_environment.listen.port(), 1000);
    }

    #[test]
    fn core_lists_accept_ranges_and_single_cores() {
        assert_eq!("0-3".parse::<CoreList>().unwrap().0, vec![0, 1, 2, 3]);
        assert_eq!("0,2,4-5".parse::<CoreList>().unwrap().0, vec![0, 2, 4, 5]);
        assert!("3-1".parse::<CoreList>().is_err());
        assert!("1,1".parse::<CoreList>().is_err());
        assert!("a".parse::<CoreList>().is_err());
        assert!("".parse::<CoreList>().is_err());
        assert!("0-99999999".parse::<CoreList>().is_err());
        let config = build(&["--cores", "1-2"], &[], vec![0, 1, 2, 3]).unwrap();
        assert_eq!(config.placement, ShardPlacement::Pinned(vec![1, 2]));
    }

    #[test]
    fn shards_within_the_available_cores_are_pinned_and_beyond_are_not() {
        let pinned = build(&["--shards", "2"], &[], vec![4, 5, 6]).unwrap();
        assert_eq!(pinned.placement, ShardPlacement::Pinned(vec![4, 5]));
        let unpinned = build(&["--shards", "8"], &[], vec![0, 1]).unwrap();
        assert_eq!(unpinned.placement, ShardPlacement::Unpinned(8));
    }

    #[test]
    fn limits_that_cannot_hold_one_frame_are_rejected() {
        let error = build(
            &[
                "--frame-bytes-max",
                "1048576",
                "--connection-inflight-bytes-max",
                "1024",
            ],
            &[],
            vec![0],
        )
        .unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                setting: "connection_inflight_bytes_max",
                ..
            }
        ));
    }

    #[test]
    fn a_frame_limit_above_the_protocol_limit_is_rejected() {
        let too_large = (spate_protocol::constants::FRAME_BYTES_MAX + 1).to_string();
        let error = build(&["--frame-bytes-max", &too_large], &[], vec![0]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::Invalid {
                setting: "frame_bytes_max",
                ..
            }
        ));
    }

    #[test]
    fn bad_environment_values_name_the_variable() {
        let error = build(&[], &[("SPATE_SHARDS", "many")], vec![0]).unwrap_err();
        assert!(matches!(
            error,
            ConfigError::ParseEnv {
                name: "SPATE_SHARDS",
                ..
            }
        ));
    }

    #[test]
    fn unknown_file_keys_are_rejected() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(&file, "data_dri = \"/typo\"\n").unwrap();
        let error = build(&["--config", file.to_str().unwrap()], &[], vec![0]).unwrap_err();
        assert!(matches!(error, ConfigError::ParseFile { .. }));
    }

    #[test]
    fn group_limits_default_to_the_coordinators_defaults() {
        let config = build(&[], &[], vec![0]).unwrap();
        assert_eq!(config.groups, GroupLimits::default());
    }

    #[test]
    fn group_limits_come_from_the_file_flags_and_environment() {
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(
            &file,
            "group_session_timeout_ms_min = 500\nmembers_per_group_max = 7\noffsets_topic_partitions = 4\n",
        )
        .unwrap();
        let config = build(
            &[
                "--config",
                file.to_str().unwrap(),
                "--members-per-group-max",
                "9",
                "--groups-per-shard-max",
                "11",
            ],
            &[
                ("SPATE_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
                ("SPATE_GROUPS_PER_SHARD_MAX", "12"),
            ],
            vec![0],
        )
        .unwrap();
        assert_eq!(config.groups.session_timeout_ms_min, 500);
        assert_eq!(config.groups.offsets_topic_partitions, 4);
        assert_eq!(config.groups.members_per_group_max, 9);
        assert_eq!(config.groups.groups_per_shard_max, 12);
        assert_eq!(config.groups.initial_rebalance_delay_ms, 0);
        assert_eq!(
            config.groups.session_timeout_ms_max,
            group_defaults::SESSION_TIMEOUT_MS_MAX
        );
    }

    #[test]
    fn an_unset_group_write_batch_follows_a_lowered_frame_limit() {
        let config = build(&["--frame-bytes-max", "65536"], &[], vec![0]).unwrap();
        assert_eq!(config.groups.write_batch_bytes_max, 65536);
    }

    #[test]
    fn contradicting_group_limits_are_rejected_naming_the_setting() {
        let cases: [(&[&str], &str); 6] = [
            (
                &[
                    "--group-session-timeout-ms-min",
                    "10000",
                    "--group-session-timeout-ms-max",
                    "1000",
                ],
                "group_session_timeout_ms_min",
            ),
            (&["--members-per-group-max", "0"], "members_per_group_max"),
            (
                &[
                    "--group-timer-tick-ms",
                    "100",
                    "--group-session-timeout-ms-min",
                    "100",
                ],
                "group_timer_tick_ms",
            ),
            (
                &[
                    "--offsets-topic-partitions",
                    "65",
                    "--partitions-per-topic-max",
                    "64",
                ],
                "offsets_topic_partitions",
            ),
            (
                &["--offsets-topic-segment-bytes", "1"],
                "offsets_topic_segment_bytes",
            ),
            (
                &[
                    "--frame-bytes-max",
                    "65536",
                    "--group-write-batch-bytes-max",
                    "1048576",
                ],
                "group_write_batch_bytes_max",
            ),
        ];
        for (arguments, expected) in cases {
            match build(arguments, &[], vec![0]) {
                Err(ConfigError::Invalid { setting, .. }) => {
                    assert_eq!(setting, expected, "{arguments:?}")
                }
                other => panic!("{arguments:?} gave {other:?}"),
            }
        }
    }

    #[test]
    fn without_seeds_the_broker_is_node_zero_alone() {
        let config = build(&[], &[], vec![0]).unwrap();
        assert_eq!(config.cluster.node_id, 0);
        assert!(!config.cluster.is_cluster_mode());
        assert_eq!(config.cluster.advertised, None);
        assert_eq!(
            config.cluster.advertised_native(config.listen),
            ("127.0.0.1".to_string(), 9192)
        );
        let alone = build(&["--node-id", "7"], &[], vec![0]).unwrap();
        assert_eq!(alone.cluster.node_id, 7);
        assert!(!alone.cluster.is_cluster_mode());
    }

    #[test]
    fn seeds_come_from_flags_file_and_environment_with_or_without_ids() {
        let config = build(
            &[
                "--node-id",
                "2",
                "--seeds",
                "127.0.0.1:9192, 1@127.0.0.2:9192,[::1]:9300",
                "--advertised",
                "broker-2.example:9192",
            ],
            &[],
            vec![0],
        )
        .unwrap();
        assert!(config.cluster.is_cluster_mode());
        assert_eq!(
            config.cluster.seeds,
            vec![
                Seed {
                    id: None,
                    host: "127.0.0.1".to_string(),
                    port: 9192
                },
                Seed {
                    id: Some(1),
                    host: "127.0.0.2".to_string(),
                    port: 9192
                },
                Seed {
                    id: None,
                    host: "::1".to_string(),
                    port: 9300
                },
            ]
        );
        assert_eq!(
            config.cluster.advertised_native(config.listen),
            ("broker-2.example".to_string(), 9192)
        );
        let directory = tempfile::tempdir().unwrap();
        let file = directory.path().join("spate.toml");
        std::fs::write(&file, "node_id = 3\nseeds = \"a:1,b:2\"\n").unwrap();
        let from_file = build(&["--config", file.to_str().unwrap()], &[], vec![0]).unwrap();
        assert_eq!(from_file.cluster.node_id, 3);
        assert_eq!(from_file.cluster.seeds.len(), 2);
        let from_environment = build(
            &["--config", file.to_str().unwrap()],
            &[("SPATE_NODE_ID", "4"), ("SPATE_SEEDS", "c:3")],
            vec![0],
        )
        .unwrap();
        assert_eq!(from_environment.cluster.node_id, 4);
        assert_eq!(from_environment.cluster.seeds[0].host, "c");
    }

    #[test]
    fn bad_seeds_and_node_ids_are_refused_naming_the_setting() {
        for (arguments, expected) in [
            (&["--seeds", "nohost"][..], "seeds"),
            (&["--seeds", "a:0"][..], "seeds"),
            (&["--seeds", "x@a:1"][..], "seeds"),
            (&["--seeds=-1@a:1"][..], "seeds"),
            (&["--seeds", "a:1,a:1"][..], "seeds"),
            (&["--seeds", "1@a:1,1@b:1"][..], "seeds"),
            (&["--node-id=-1"][..], "node_id"),
            (&["--advertised", "nowhere"][..], "advertised"),
            (
                &["--seeds", "a:1", "--listen", "0.0.0.0:9192"][..],
                "advertised",
            ),
            (
                &["--default-replication-factor", "0"][..],
                "default_replication_factor",
            ),
            (
                &[
                    "--metadata-election-ticks",
                    "2",
                    "--metadata-heartbeat-ticks",
                    "2",
                ][..],
                "metadata_election_ticks",
            ),
            (
                &["--broker-session-timeout-ms", "100"][..],
                "broker_session_timeout_ms",
            ),
            (
                &["--replica-lag-time-max-ms", "0"][..],
                "replica_lag_time_max_ms",
            ),
            (
                &["--replica-lag-time-max-ms", "500"][..],
                "replica_lag_time_max_ms",
            ),
        ] {
            let (setting, message) = refusal(arguments);
            assert_eq!(setting, expected, "{arguments:?}: {message}");
        }
        // A wildcard listener is fine once an address is advertised.
        build(
            &[
                "--seeds",
                "a:1",
                "--listen",
                "0.0.0.0:9192",
                "--advertised",
                "a:9192",
            ],
            &[],
            vec![0],
        )
        .unwrap();
    }

    #[test]
    fn help_names_every_environment_variable() {
        let help = <CommandLine as clap::CommandFactory>::command()
            .render_long_help()
            .to_string();
        for variable in ENVIRONMENT_VARIABLES {
            assert!(
                help.contains(variable),
                "--help does not mention {variable}"
            );
        }
    }
}
