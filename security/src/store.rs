//! The framing and the durable write of the security files under `<data_dir>/security/`.
//!
//! A file is one header line, "<kind> <format version> <body bytes> <body CRC-32C in hex>\n",
//! then the body (JSON, see `credentials` and `acl`). A save writes "<name>.tmp", fsyncs it,
//! renames it over "<name>" and fsyncs the directory, so a crash leaves either the old file or
//! the new one whole; a temporary file left behind by a crash is never read, and the next save
//! overwrites it. A load refuses, with the path named, any file it cannot read whole: a wrong
//! kind, an unknown version, a length or CRC mismatch. Only a missing file reads as empty.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::limits::STORE_FILE_BYTES_MAX;

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

/// The longest header line accepted: a kind, three numbers and three spaces fit well inside.
const HEADER_BYTES_MAX: usize = 128;

/// The body of the file at `path` whose header names `kind` and `version`; `None` when there is
/// no file.
pub(crate) fn load_body(
    path: &Path,
    kind: &str,
    version: u32,
) -> Result<Option<Vec<u8>>, StoreError> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(io_error("opening", path, source)),
    };
    let file_bytes = file
        .metadata()
        .map_err(|source| io_error("reading the size of", path, source))?
        .len();
    if file_bytes > STORE_FILE_BYTES_MAX {
        return Err(StoreError::TooLarge {
            path: path.to_path_buf(),
            file_bytes,
            limit_bytes: STORE_FILE_BYTES_MAX,
        });
    }
    let mut contents = Vec::with_capacity(file_bytes as usize);
    // `take` keeps a file that grew after the size check within the limit.
    (&mut file)
        .take(STORE_FILE_BYTES_MAX + 1)
        .read_to_end(&mut contents)
        .map_err(|source| io_error("reading", path, source))?;
    parse_file(path, kind, version, contents).map(Some)
}

fn parse_file(
    path: &Path,
    kind: &str,
    known_version: u32,
    mut contents: Vec<u8>,
) -> Result<Vec<u8>, StoreError> {
    let corrupt = |what: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        what,
    };
    let header_end = contents
        .iter()
        .take(HEADER_BYTES_MAX)
        .position(|&byte| byte == b'\n')
        .ok_or_else(|| corrupt("no header line".to_string()))?;
    let header = std::str::from_utf8(&contents[..header_end])
        .map_err(|_| corrupt("the header is not text".to_string()))?;
    let fields: Vec<&str> = header.split(' ').collect();
    let [file_kind, version, body_bytes, body_crc] = fields[..] else {
        return Err(corrupt(format!(
            "header {header:?} does not have four fields"
        )));
    };
    if file_kind != kind {
        return Err(corrupt(format!("header names {file_kind:?}, not {kind:?}")));
    }
    let version: u32 = version
        .parse()
        .map_err(|_| corrupt(format!("version {version:?} is not a number")))?;
    if version != known_version {
        return Err(StoreError::UnknownVersion {
            path: path.to_path_buf(),
            version,
            known_version,
        });
    }
    let body_bytes: usize = body_bytes
        .parse()
        .map_err(|_| corrupt(format!("body length {body_bytes:?} is not a number")))?;
    let body_crc = u32::from_str_radix(body_crc, 16)
        .map_err(|_| corrupt(format!("body CRC {body_crc:?} is not hexadecimal")))?;
    let body = contents.split_off(header_end + 1);
    if body.len() != body_bytes {
        return Err(corrupt(format!(
            "the header says {body_bytes} body bytes, the file has {}",
            body.len()
        )));
    }
    let actual_crc = crc32c::crc32c(&body);
    if actual_crc != body_crc {
        return Err(corrupt(format!(
            "body CRC-32C is {actual_crc:08x}, the header says {body_crc:08x}"
        )));
    }
    Ok(body)
}

/// The whole file: header line, then body.
fn format_file(kind: &str, version: u32, body: &[u8]) -> Vec<u8> {
    assert!(!kind.contains([' ', '\n']), "a file kind is one word");
    let header = format!(
        "{kind} {version} {} {:08x}\n",
        body.len(),
        crc32c::crc32c(body)
    );
    assert!(header.len() <= HEADER_BYTES_MAX);
    let mut contents = Vec::with_capacity(header.len() + body.len());
    contents.extend_from_slice(header.as_bytes());
    contents.extend_from_slice(body);
    contents
}

/// The temporary file a save writes before renaming it over `path`.
pub fn temporary_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Writes `body` durably as the file at `path` (see the module documentation). One writer at
/// a time: two concurrent saves of one file would share the temporary file.
pub(crate) fn save_body(
    path: &Path,
    kind: &str,
    version: u32,
    body: &[u8],
) -> Result<(), StoreError> {
    let directory = path.parent().expect("a security file lives in a directory");
    create_directory(directory)?;
    let contents = format_file(kind, version, body);
    let temporary = temporary_path(path);
    let mut file =
        File::create(&temporary).map_err(|source| io_error("creating", &temporary, source))?;
    file.write_all(&contents)
        .map_err(|source| io_error("writing", &temporary, source))?;
    file.sync_all()
        .map_err(|source| io_error("fsyncing", &temporary, source))?;
    drop(file);
    fs::rename(&temporary, path).map_err(|source| io_error("renaming over", path, source))?;
    sync_directory(directory)
}

/// Creates `directory` if it is missing, and makes its entry in its parent durable.
fn create_directory(directory: &Path) -> Result<(), StoreError> {
    if directory.is_dir() {
        return Ok(());
    }
    fs::create_dir_all(directory).map_err(|source| io_error("creating", directory, source))?;
    if let Some(parent) = directory.parent() {
        sync_directory(parent)?;
    }
    Ok(())
}

/// fsyncs a directory, which makes a rename or a creation inside it durable.
fn sync_directory(directory: &Path) -> Result<(), StoreError> {
    File::open(directory)
        .and_then(|handle| handle.sync_all())
        .map_err(|source| io_error("fsyncing the directory", directory, source))
}

fn io_error(doing: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::Io {
        doing,
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KIND: &str = "spate-test";

    #[test]
    fn saved_body_loads_back() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("security").join("file");
        save_body(&path, KIND, 1, b"{\"a\":1}").unwrap();
        assert_eq!(load_body(&path, KIND, 1).unwrap().unwrap(), b"{\"a\":1}");
        assert!(!temporary_path(&path).exists());
    }

    #[test]
    fn missing_file_loads_as_none() {
        let directory = tempfile::tempdir().unwrap();
        assert!(load_body(&directory.path().join("file"), KIND, 1)
            .unwrap()
            .is_none());
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        save_body(&path, KIND, 1, b"some body bytes").unwrap();
        let good = fs::read(&path).unwrap();
        for index in 0..good.len() {
            let mut bad = good.clone();
            bad[index] ^= 0x04;
            fs::write(&path, &bad).unwrap();
            let result = load_body(&path, KIND, 1);
            assert!(
                matches!(
                    result,
                    Err(StoreError::Corrupt { .. } | StoreError::UnknownVersion { .. })
                ),
                "byte {index}: {result:?}"
            );
        }
    }

    #[test]
    fn truncated_and_extended_files_are_corrupt() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        save_body(&path, KIND, 1, b"some body bytes").unwrap();
        let good = fs::read(&path).unwrap();
        for length in 0..good.len() {
            fs::write(&path, &good[..length]).unwrap();
            assert!(matches!(
                load_body(&path, KIND, 1),
                Err(StoreError::Corrupt { .. })
            ));
        }
        let mut longer = good.clone();
        longer.push(b'x');
        fs::write(&path, &longer).unwrap();
        assert!(matches!(
            load_body(&path, KIND, 1),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn unknown_version_and_wrong_kind_are_refused_naming_the_path() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        save_body(&path, KIND, 2, b"body").unwrap();
        let error = load_body(&path, KIND, 1).unwrap_err();
        assert!(matches!(
            error,
            StoreError::UnknownVersion {
                version: 2,
                known_version: 1,
                ..
            }
        ));
        assert!(error.to_string().contains(&path.display().to_string()));
        let error = load_body(&path, "spate-other", 2).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }));
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn temporary_file_left_by_a_crash_is_ignored_and_replaced() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        save_body(&path, KIND, 1, b"old").unwrap();
        // A crash after part of the next save's temporary file was written.
        fs::write(temporary_path(&path), b"spate-test 1 3").unwrap();
        assert_eq!(load_body(&path, KIND, 1).unwrap().unwrap(), b"old");
        save_body(&path, KIND, 1, b"new").unwrap();
        assert_eq!(load_body(&path, KIND, 1).unwrap().unwrap(), b"new");
        assert!(!temporary_path(&path).exists());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_contents_never_panic(contents in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let path = Path::new("/nonexistent/file");
            let _ = parse_file(path, KIND, 1, contents);
        }

        #[test]
        fn framed_body_parses_back(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let contents = format_file(KIND, 1, &body);
            proptest::prop_assert_eq!(parse_file(Path::new("file"), KIND, 1, contents).unwrap(), body);
        }
    }

    #[test]
    fn oversized_file_is_refused_before_reading() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("file");
        let file = File::create(&path).unwrap();
        file.set_len(STORE_FILE_BYTES_MAX + 1).unwrap();
        assert!(matches!(
            load_body(&path, KIND, 1),
            Err(StoreError::TooLarge { .. })
        ));
    }
}
