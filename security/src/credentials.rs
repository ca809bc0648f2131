//! Users and their SCRAM credentials, and the durable file that keeps them,
//! `<data_dir>/security/credentials`.
//!
//! `Credentials` is plain data: the broker shares one immutable snapshot among its shards and
//! swaps it after a change is durable. The file's I/O is plain blocking std I/O; callers run it
//! on a blocking pool or before the executors start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::scram::{ScramCredential, ScramMechanism};
use crate::store::{self, StoreError};

/// Every user's credentials, by user name then mechanism.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    users: BTreeMap<String, BTreeMap<ScramMechanism, ScramCredential>>,
}

impl Credentials {
    pub fn get(&self, user: &str, mechanism: ScramMechanism) -> Option<&ScramCredential> {
        self.users.get(user)?.get(&mechanism)
    }

    /// Each user with the mechanisms it has credentials for and their iterations, by name.
    pub fn users(&self) -> impl Iterator<Item = (&str, Vec<(ScramMechanism, u32)>)> {
        self.users.iter().map(|(user, credentials)| {
            let mechanisms = credentials
                .values()
                .map(|credential| (credential.mechanism, credential.iterations))
                .collect();
            (user.as_str(), mechanisms)
        })
    }

    /// Sets `user`'s credential for the credential's mechanism, replacing any before it.
    pub fn upsert(&mut self, user: &str, credential: ScramCredential) {
        self.users
            .entry(user.to_string())
            .or_default()
            .insert(credential.mechanism, credential);
    }

    /// Removes `user`'s credential for `mechanism`; false when there was none. A user left with
    /// no credential is gone.
    pub fn delete(&mut self, user: &str, mechanism: ScramMechanism) -> bool {
        let Some(credentials) = self.users.get_mut(user) else {
            return false;
        };
        let removed = credentials.remove(&mechanism).is_some();
        if credentials.is_empty() {
            self.users.remove(user);
        }
        removed
    }

    /// How many users have at least one credential.
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// The file `<data_dir>/security/credentials`.
pub struct CredentialsFile;

impl CredentialsFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        store::security_dir(data_dir).join("credentials")
    }

    /// The saved credentials; empty when there is no file yet.
    pub fn load(data_dir: &Path) -> Result<Credentials, StoreError> {
        let path = Self::path(data_dir);
        match store::load_body(&path, FILE_KIND, FORMAT_VERSION)? {
            None => Ok(Credentials::default()),
            Some(body) => decode(&body).map_err(|what| StoreError::Corrupt { path, what }),
        }
    }

    /// Saves `credentials` durably, replacing the file whole.
    pub fn save(data_dir: &Path, credentials: &Credentials) -> Result<(), StoreError> {
        store::save_body(
            &Self::path(data_dir),
            FILE_KIND,
            FORMAT_VERSION,
            &encode(credentials),
        )
    }
}

/// The header's name for this file.
const FILE_KIND: &str = "spate-credentials";
/// Version 1: the JSON body of `FileBody`.
const FORMAT_VERSION: u32 = 1;

// The file's own types, apart from the domain types, so that changing `Credentials` cannot
// silently change the format. JSON: a few kilobytes written rarely, which an operator can read
// with `tail -n +2`; serde_json is already the workspace's JSON crate.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    users: Vec<FileUser>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    name: String,
    credentials: Vec<FileCredential>,
}

/// Byte strings are base64, as SCRAM itself writes them.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCredential {
    mechanism: String,
    salt: String,
    iterations: u32,
    stored_key: String,
    server_key: String,
}

fn encode(credentials: &Credentials) -> Vec<u8> {
    let users = credentials
        .users
        .iter()
        .map(|(name, by_mechanism)| FileUser {
            name: name.clone(),
            credentials: by_mechanism
                .values()
                .map(|credential| FileCredential {
                    mechanism: credential.mechanism.name().to_string(),
                    salt: BASE64.encode(&credential.salt),
                    iterations: credential.iterations,
                    stored_key: BASE64.encode(&credential.stored_key),
                    server_key: BASE64.encode(&credential.server_key),
                })
                .collect(),
        })
        .collect();
    serde_json::to_vec_pretty(&FileBody { users }).expect("plain structs encode as JSON")
}

/// The credentials in a body whose CRC matched: anything wrong here is a bug or a hand edit, and
/// is refused whole rather than dropping a user.
fn decode(body: &[u8]) -> Result<Credentials, String> {
    let file: FileBody =
        serde_json::from_slice(body).map_err(|error| format!("body is not valid JSON: {error}"))?;
    let mut credentials = Credentials::default();
    for user in file.users {
        if user.credentials.is_empty() {
            return Err(format!("user {:?} has no credential", user.name));
        }
        if credentials.users.contains_key(&user.name) {
            return Err(format!("user {:?} appears twice", user.name));
        }
        for stored in user.credentials {
            let credential = decode_credential(&stored)
                .map_err(|what| format!("user {:?}: {what}", user.name))?;
            if credentials.get(&user.name, credential.mechanism).is_some() {
                return Err(format!(
                    "user {:?} has two {} credentials",
                    user.name, stored.mechanism
                ));
            }
            credentials.upsert(&user.name, credential);
        }
    }
    Ok(credentials)
}

fn decode_credential(stored: &FileCredential) -> Result<ScramCredential, String> {
    let mechanism = ScramMechanism::from_name(&stored.mechanism)
        .ok_or_else(|| format!("unknown mechanism {:?}", stored.mechanism))?;
    let bytes = |field: &str, text: &str| {
        BASE64
            .decode(text)
            .map_err(|_| format!("{field} is not base64"))
    };
    let credential = ScramCredential {
        mechanism,
        salt: bytes("salt", &stored.salt)?,
        iterations: stored.iterations,
        stored_key: bytes("stored_key", &stored.stored_key)?,
        server_key: bytes("server_key", &stored.server_key)?,
    };
    let hash_bytes = mechanism.hash_bytes();
    if credential.stored_key.len() != hash_bytes || credential.server_key.len() != hash_bytes {
        return Err(format!(
            "{} keys are not {hash_bytes} bytes",
            mechanism.name()
        ));
    }
    if credential.salt.is_empty() {
        return Err("empty salt".to_string());
    }
    Ok(credential)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn sample() -> Credentials {
        let mut credentials = Credentials::default();
        // Cheap credentials: the file keeps keys, so how they were derived does not matter.
        for (user, mechanism, fill) in [
            ("alice", ScramMechanism::Sha256, 1),
            ("alice", ScramMechanism::Sha512, 2),
            ("bob,=x", ScramMechanism::Sha512, 3),
        ] {
            let credential = ScramCredential::from_salted_password(
                mechanism,
                &vec![fill; mechanism.hash_bytes()],
                vec![fill; 16],
                4096 + u32::from(fill),
            );
            credentials.upsert(user, credential);
        }
        credentials
    }

    #[test]
    fn upsert_get_users_and_delete() {
        let mut credentials = sample();
        assert_eq!(credentials.user_count(), 2);
        assert_eq!(
            credentials.users().collect::<Vec<_>>(),
            vec![
                (
                    "alice",
                    vec![
                        (ScramMechanism::Sha256, 4097),
                        (ScramMechanism::Sha512, 4098)
                    ]
                ),
                ("bob,=x", vec![(ScramMechanism::Sha512, 4099)]),
            ]
        );
        assert!(credentials.get("bob,=x", ScramMechanism::Sha256).is_none());
        assert_eq!(
            credentials
                .get("alice", ScramMechanism::Sha512)
                .unwrap()
                .iterations,
            4098
        );

        // Upsert replaces the one mechanism's credential.
        let replacement =
            ScramCredential::from_salted_password(ScramMechanism::Sha512, &[9; 64], vec![9], 8192);
        credentials.upsert("alice", replacement.clone());
        assert_eq!(
            credentials.get("alice", ScramMechanism::Sha512),
            Some(&replacement)
        );

        assert!(credentials.delete("alice", ScramMechanism::Sha256));
        assert!(!credentials.delete("alice", ScramMechanism::Sha256));
        assert!(credentials.delete("alice", ScramMechanism::Sha512));
        assert!(!credentials.delete("nobody", ScramMechanism::Sha512));
        assert_eq!(credentials.user_count(), 1);
    }

    #[test]
    fn saved_credentials_load_back() {
        let directory = tempfile::tempdir().unwrap();
        let credentials = sample();
        CredentialsFile::save(directory.path(), &credentials).unwrap();
        assert_eq!(
            CredentialsFile::load(directory.path()).unwrap(),
            credentials
        );
        assert_eq!(
            CredentialsFile::path(directory.path()),
            directory.path().join("security/credentials")
        );
        // Saving again replaces the file whole.
        CredentialsFile::save(directory.path(), &Credentials::default()).unwrap();
        assert!(CredentialsFile::load(directory.path()).unwrap().is_empty());
    }

    #[test]
    fn missing_file_is_empty() {
        let directory = tempfile::tempdir().unwrap();
        assert!(CredentialsFile::load(directory.path()).unwrap().is_empty());
    }

    #[test]
    fn corrupt_byte_is_detected_naming_the_path() {
        let directory = tempfile::tempdir().unwrap();
        CredentialsFile::save(directory.path(), &sample()).unwrap();
        let path = CredentialsFile::path(directory.path());
        let mut contents = fs::read(&path).unwrap();
        let middle = contents.len() / 2;
        contents[middle] ^= 0x20;
        fs::write(&path, &contents).unwrap();
        let error = CredentialsFile::load(directory.path()).unwrap_err();
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        assert!(error.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn partial_temporary_file_is_ignored() {
        let directory = tempfile::tempdir().unwrap();
        let credentials = sample();
        CredentialsFile::save(directory.path(), &credentials).unwrap();
        let path = CredentialsFile::path(directory.path());
        let full = fs::read(&path).unwrap();
        fs::write(store::temporary_path(&path), &full[..full.len() / 3]).unwrap();
        assert_eq!(
            CredentialsFile::load(directory.path()).unwrap(),
            credentials
        );
    }

    #[test]
    fn body_with_a_matching_crc_is_still_checked() {
        // Hand edits recompute nothing, but a tool could: a well-framed body with wrong content
        // is refused too.
        let directory = tempfile::tempdir().unwrap();
        let path = CredentialsFile::path(directory.path());
        for body in [
            &br#"{"users":[{"name":"a","credentials":[]}]}"#[..],
            br#"{"users":[{"name":"a","credentials":[{"mechanism":"SCRAM-SHA-1","salt":"AA==","iterations":4096,"stored_key":"","server_key":""}]}]}"#,
            br#"{"users":[{"name":"a","credentials":[{"mechanism":"SCRAM-SHA-256","salt":"AA==","iterations":4096,"stored_key":"AA==","server_key":"AA=="}]}]}"#,
            br#"{"users":[],"extra":1}"#,
            b"not json",
        ] {
            store::save_body(&path, FILE_KIND, FORMAT_VERSION, body).unwrap();
            let error = CredentialsFile::load(directory.path()).unwrap_err();
            assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
        }
    }
}
