//! Every protocol-level limit in one place. Names carry their unit last.

/// The largest record batch a broker accepts or a client builds, header included.
pub const BATCH_BYTES_MAX: usize = 16 * 1024 * 1024;
