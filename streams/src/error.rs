//! The operating errors of stream processing: bytes that do not deserialize, a record for a topic
//! the topology does not read, a store asked for by a name that does not exist. A processor that
//! breaks the topology's invariants (a record of the wrong type) is a bug and panics instead.

use crate::serdes::SerdeError;

/// What went wrong while processing.
#[derive(Debug, thiserror::Error)]
pub enum StreamsError {
    /// A record's key or value did not deserialize and the deserialization policy is to fail.
    #[error("record {offset} of {topic}/{partition}: cannot read its {part}: {source}")]
    Deserialization {
        /// The topic read.
        topic: String,
        /// Its partition.
        partition: u32,
        /// The record's offset.
        offset: i64,
        /// "key" or "value".
        part: &'static str,
        /// What the serde said.
        source: SerdeError,
    },
    /// A record arrived for a topic no source of the topology reads.
    #[error("the topology reads no topic named {topic}")]
    UnknownTopic {
        /// The topic named.
        topic: String,
    },
    /// A store was asked for by a name the topology does not have, or as the wrong kind.
    #[error("the topology has no {kind} store named {name}")]
    UnknownStore {
        /// The name asked for.
        name: String,
        /// "key-value", "window" or "session".
        kind: &'static str,
    },
    /// The source topics have different partition counts, so one task per partition cannot
    /// see all records of a key.
    #[error("source topics are not co-partitioned: {partition_counts:?}")]
    NotCopartitioned {
        /// Each source topic's partition count.
        partition_counts: std::collections::BTreeMap<String, u32>,
    },
    /// A bounded `suppress` buffer was full: more windows were open than it may hold.
    #[error(
        "the suppress buffer holds {buffered_windows_max} windows and a record needs one more"
    )]
    SuppressBufferFull {
        /// The buffer's bound.
        buffered_windows_max: usize,
    },
    /// A changelog record could not be restored into its store.
    #[error("restoring store {store} from {topic}/{partition} at offset {offset}: {source}")]
    MalformedChangelog {
        /// The store restored.
        store: String,
        /// Its changelog topic.
        topic: String,
        /// The partition read.
        partition: u32,
        /// The record's offset.
        offset: u64,
        /// What was wrong with it.
        source: crate::changelog::MalformedChangelogKey,
    },
    /// The native client failed (the runtime over a broker).
    #[error(transparent)]
    Client(#[from] spate_client::Error),
}
