//! The framing and the durable write of the security files under `<data_dir>/security/`.
//!
//! A file is one header line, "<kind> <format version> <body bytes> <body CRC-32C in hex>\n",
//! then the body (JSON, see `credentials` and `acl`). A save writes "<name>.tmp", fsyncs it,
//! renames it over "<name>" and fsyncs the directory, so a crash leaves either the old file or
//! the new one whole; a temporary file left behind by a crash is never read, and the next save
//! overwrites it. A load refuses, with the path named, any file it cannot read whole: a wrong
//! kind, an unknown version, a length or CRC mismatch. Only a missing file reads as empty.

use std::io;
use std::path::{Path, PathBuf};

/// Why a security file could not be loaded or saved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{doing} {path}: {source}")]
    Io {
        doing: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} is corrupt: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("{path} has format version {version}; this build reads version {known_version}")]
    UnknownVersion {
        path: PathBuf,
        version: u32,
        known_version: u32,
    },
    #[error("{path} is {file_bytes} bytes, longer than the limit of {limit_bytes}")]
    TooLarge {
        path: PathBuf,
        file_bytes: u64,
        limit_bytes: u64,
    },
}

/// The folder of the security files.
pub fn security_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("security")
}

/// The body of the file at `path` whose header names `kind` and `version`; `None` when there is
/// no file.
pub(crate) fn load_body(
    path: &Path,
    kind: &str,
    version: u32,
) -> Result<Option<Vec<u8>>, StoreError> {
    let _ = (path, kind, version);
    todo!()
}

/// Writes `body` durably as the file at `path` (see the module documentation).
pub(crate) fn save_body(
    path: &Path,
    kind: &str,
    version: u32,
    body: &[u8],
) -> Result<(), StoreError> {
    let _ = (path, kind, version, body);
    todo!()
}
