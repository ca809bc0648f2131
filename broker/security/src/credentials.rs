//! Users and their SCRAM credentials, and the durable file that keeps them,
//! `<data_dir>/security/credentials`.
//!
//! `Credentials` is plain data: the broker shares one immutable snapshot among its shards and
//! swaps it after a change is durable. The file's I/O is plain blocking std I/O; callers run it
//! on a blocking pool or before the executors start.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

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
        let _ = data_dir;
        todo!()
    }

    /// Saves `credentials` durably, replacing the file whole.
    pub fn save(data_dir: &Path, credentials: &Credentials) -> Result<(), StoreError> {
        let _ = (data_dir, credentials);
        todo!()
    }
}
