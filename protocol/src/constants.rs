//! Every protocol-level limit in one place. Names carry their unit last.
//!
//! Decoders check each untrusted count or length against one of these before allocating, so a
//! hostile peer can make a decoder fail but never make it reserve more than these bounds allow.
//! Relations between limits are pinned by the `const` assertions at the end.

/// The largest record batch a broker accepts or a client builds, header included.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;

/// The most bytes the records of one compressed Kafka batch (payload format 2) may decompress
/// to. A reader refuses a batch that inflates past it, so a small "zip bomb" costs an error, not
/// the reader's memory. Four times the largest batch leaves room for well-compressed real data.
pub const DECOMPRESSED_BATCH_BYTES_MAX: usize = 4 * BATCH_BYTES_MAX;

/// The highest offset a batch may reach (exclusive end of its range). Offsets are `u64` in this
/// protocol but stay within `i64` so that a Kafka-compatible API can carry them unchanged.
pub const OFFSET_MAX: u64 = i64::MAX as u64;

/// The largest frame, counted from the first byte after the 4-byte length prefix.
pub const FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Bytes of the length prefix that opens every frame.
pub const FRAME_LENGTH_BYTES: usize = 4;

/// Longest client id a request header may carry.
pub const CLIENT_ID_BYTES_MAX: usize = 256;

/// Longest topic name. Kafka's limit, so that names map one to one.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;

/// Longest free-text string in a message (error messages, config values).
pub const STRING_BYTES_MAX: usize = 32 * 1024;

/// Longest SASL mechanism name (RFC 4422 allows 20 characters).
pub const SASL_MECHANISM_BYTES_MAX: usize = 20;

/// SASL mechanisms one handshake answer lists.
pub const SASL_MECHANISMS_MAX: usize = 16;

/// Largest SASL message either way (SCRAM's are a few hundred bytes; PLAIN's carry a password).
pub const SASL_MESSAGE_BYTES_MAX: usize = 64 * 1024;

/// Longest user name.
pub const USER_NAME_BYTES_MAX: usize = 255;

/// Largest SCRAM salt, and largest salted password (a SHA-512 output is 64 bytes).
pub const SCRAM_SALT_BYTES_MAX: usize = 1024;
pub const SCRAM_SALTED_PASSWORD_BYTES_MAX: usize = 64;

/// Users one ListUsers answer carries.
pub const USERS_PER_MESSAGE_MAX: usize = 100_000;

/// Most topics named in one request or answered in one response.
pub const TOPICS_PER_MESSAGE_MAX: usize = 10_000;

/// Most partitions one topic may have, and so the most partition entries per topic in a message.
pub const PARTITIONS_PER_TOPIC_MAX: usize = 10_000;

/// Longest config entry name.
pub const CONFIG_NAME_BYTES_MAX: usize = 255;

/// Most config entries in one topic's config map.
pub const CONFIG_ENTRIES_MAX: usize = 256;

/// Most listener addresses one broker reports (DescribeCluster).
pub const LISTENERS_MAX: usize = 64;

/// Most record batches one produce request may carry for one partition.
pub const BATCHES_PER_PARTITION_MAX: usize = 4096;

/// How many of a producer's latest batches a partition remembers (per producer id) to answer a
/// retried copy with its original offset; so also the most produce requests an idempotent
/// producer may have in flight per partition. Kafka's number (`max.in.flight.requests.per.connection`
/// may be at most 5 with idempotence).
pub const PRODUCER_BATCHES_RETAINED: usize = 5;

/// Most (api_key, min, max) entries in an ApiVersions exchange.
pub const API_VERSION_ENTRIES_MAX: usize = 256;

/// Longest consumer group id.
pub const GROUP_ID_BYTES_MAX: usize = 255;

/// Longest member id. The broker makes them from the client id (at most
/// [`CLIENT_ID_BYTES_MAX`]) plus a separator and a random suffix.
pub const MEMBER_ID_BYTES_MAX: usize = 512;

/// Longest static member id (`group.instance.id`).
pub const GROUP_INSTANCE_ID_BYTES_MAX: usize = 255;

/// Longest group protocol type (`consumer`) or protocol (assignor) name.
pub const GROUP_PROTOCOL_NAME_BYTES_MAX: usize = 255;

/// Most protocols (assignors) one member may offer when it joins.
pub const GROUP_PROTOCOLS_MAX: usize = 32;

/// Most members one group message lists (join response, sync assignments, describe, leave).
pub const GROUP_MEMBERS_PER_MESSAGE_MAX: usize = 10_000;

/// Largest opaque member metadata (a subscription) or assignment, in bytes.
pub const GROUP_MEMBER_METADATA_BYTES_MAX: usize = 1024 * 1024;

/// Most groups named in one request or answered in one response.
pub const GROUPS_PER_MESSAGE_MAX: usize = 10_000;

/// Longest client host string a group description carries.
pub const CLIENT_HOST_BYTES_MAX: usize = 255;

/// Longest transactional id (`transactional_id`). Kafka sets none; Kafka Streams builds its
/// ids from the application id, a UUID and a task or thread, well under this.
pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 1024;

/// Most aborted transactions one fetch answer lists for one partition. The broker ends a
/// read_committed answer's records early rather than list more (the consumer fetches the rest
/// again); 16 bytes each, so a full list is 1 MiB.
pub const ABORTED_TRANSACTIONS_PER_PARTITION_MAX: usize = 65_536;

/// Longest host name in a broker's endpoint (a DNS name is at most 253 bytes).
pub const HOST_BYTES_MAX: usize = 255;

/// Longest rack id a broker may carry.
pub const RACK_BYTES_MAX: usize = 255;

/// Longest cluster id. Spate's and Kafka's are 22-character base64 UUIDs.
pub const CLUSTER_ID_BYTES_MAX: usize = 255;

/// Most brokers one message lists (Metadata, DescribeCluster).
pub const BROKERS_PER_MESSAGE_MAX: usize = 10_000;

/// Most replicas one partition may have (its replication factor), and so the most node ids in
/// one partition's replica, in-sync, adding or removing list.
pub const REPLICAS_PER_PARTITION_MAX: usize = 256;

/// Longest coordinator key (FindCoordinator): a group id or a transactional id.
pub const COORDINATOR_KEY_BYTES_MAX: usize = if GROUP_ID_BYTES_MAX > TRANSACTIONAL_ID_BYTES_MAX {
    GROUP_ID_BYTES_MAX
} else {
    TRANSACTIONAL_ID_BYTES_MAX
};

/// Largest single Raft message between brokers (raft-rs protobuf bytes): appended metadata
/// entries travel in it, and a whole metadata snapshot, so it is as large as a frame allows
/// with room for the request's other fields. A snapshot message travels alone in its request.
pub const RAFT_MESSAGE_BYTES_MAX: usize = FRAME_BYTES_MAX - 1024 * 1024;

/// Most Raft messages one RaftMessage request carries (the driver coalesces what one
/// `advance` produced for a peer).
pub const RAFT_MESSAGES_PER_REQUEST_MAX: usize = 4096;

/// Largest encoded metadata command in a ClusterPropose, and largest encoded apply outcome in
/// its answer (a topic of the most partitions with manual assignments fits well within).
pub const METADATA_COMMAND_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Longest resource name an ACL binding names: the longest of a topic name, a group id and a
/// transactional id (the cluster's name is "kafka-cluster").
pub const ACL_RESOURCE_NAME_BYTES_MAX: usize = TRANSACTIONAL_ID_BYTES_MAX;

/// Longest principal an ACL binding names ("User:" and a user name).
pub const ACL_PRINCIPAL_BYTES_MAX: usize = 16 + USER_NAME_BYTES_MAX;

/// Longest host an ACL binding names: "*" or an IPv6 address in text (at most 45 bytes).
pub const ACL_HOST_BYTES_MAX: usize = 64;

/// Most bindings one ACL message carries (a DescribeAcls answer, a CreateAcls request, what one
/// DeleteAcls filter removed). Bindings are about 100 bytes, so a full list is a few MiB.
pub const ACL_BINDINGS_PER_MESSAGE_MAX: usize = 100_000;

/// Most filters one DeleteAcls request carries.
pub const ACL_FILTERS_PER_MESSAGE_MAX: usize = 1000;

/// Byte strings shorter than this are copied into a chunked encoding rather than kept as their
/// own chunk: below it, another iovec costs more than the copy.
pub const SHARED_CHUNK_BYTES_MIN: usize = 512;

const _: () = assert!(BATCH_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(FRAME_BYTES_MAX <= u32::MAX as usize);
const _: () = assert!(CLIENT_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(TOPIC_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(STRING_BYTES_MAX <= u16::MAX as usize);
// rkyv archives use 32-bit relative pointers; a batch must stay addressable by them.
const _: () = assert!(BATCH_BYTES_MAX <= i32::MAX as usize);
const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX >= BATCH_BYTES_MAX);
const _: () = assert!(DECOMPRESSED_BATCH_BYTES_MAX <= i32::MAX as usize);
const _: () = assert!(MEMBER_ID_BYTES_MAX > CLIENT_ID_BYTES_MAX);
const _: () = assert!(MEMBER_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(GROUP_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(TRANSACTIONAL_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(ABORTED_TRANSACTIONS_PER_PARTITION_MAX * 16 < FRAME_BYTES_MAX);
const _: () = assert!(GROUP_MEMBER_METADATA_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(HOST_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(RACK_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(CLUSTER_ID_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(COORDINATOR_KEY_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(ACL_RESOURCE_NAME_BYTES_MAX >= TOPIC_NAME_BYTES_MAX);
const _: () = assert!(ACL_RESOURCE_NAME_BYTES_MAX >= GROUP_ID_BYTES_MAX);
const _: () = assert!(ACL_RESOURCE_NAME_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(ACL_PRINCIPAL_BYTES_MAX <= u16::MAX as usize);
const _: () = assert!(ACL_BINDINGS_PER_MESSAGE_MAX * 100 < FRAME_BYTES_MAX);
const _: () = assert!(RAFT_MESSAGE_BYTES_MAX < FRAME_BYTES_MAX);
const _: () = assert!(METADATA_COMMAND_BYTES_MAX < FRAME_BYTES_MAX);
