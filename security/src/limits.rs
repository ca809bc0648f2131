//! Every limit of the security core in one place, names with units last.
//!
//! The SASL limits bound what a peer that has not authenticated yet can make the broker parse
//! or compute; the store limit bounds what a load reads into memory.

/// The fewest PBKDF2 iterations a SCRAM credential may have: Kafka's minimum (and RFC 7677's
/// recommendation for SCRAM-SHA-256).
pub const SCRAM_ITERATIONS_MIN: u32 = 4096;

/// The most PBKDF2 iterations a SCRAM credential may have: Kafka's maximum. It also bounds the
/// work a server can ask of a client, and a client of the broker's `verify_password`.
pub const SCRAM_ITERATIONS_MAX: u32 = 16384;

/// The longest SCRAM message either side accepts. Real messages are a few hundred bytes (names,
/// a nonce, a base64 proof); the bound keeps an unauthenticated peer from making the broker
/// scan or keep large buffers.
pub const SCRAM_MESSAGE_BYTES_MAX: usize = 4096;

/// The longest PLAIN field (authorization id, user, password): RFC 4616 requires servers to
/// accept up to 255 octets each, and this implementation accepts no more.
pub const PLAIN_FIELD_BYTES_MAX: usize = 255;

/// The largest credentials or ACL file a load reads. Both files hold small records (a user's
/// credentials are about 200 bytes, a binding about 150), so this allows hundreds of thousands.
pub const STORE_FILE_BYTES_MAX: u64 = 64 * 1024 * 1024;

const _: () = assert!(SCRAM_ITERATIONS_MIN <= SCRAM_ITERATIONS_MAX);
const _: () = assert!(3 * PLAIN_FIELD_BYTES_MAX + 2 <= SCRAM_MESSAGE_BYTES_MAX);
