//! The broker's users and their SCRAM credentials: one immutable snapshot (`Arc<Credentials>`)
//! that every shard reads, and the one way it changes.
//!
//! Loaded at start-up from `<data_dir>/security/credentials` (`spate_security::CredentialsFile`;
//! a corrupt file stops the start). A change (Kafka's AlterUserScramCredentials, the native
//! user APIs) runs on shard 0 (`change`, through the typed cross-shard call), which applies it
//! to a copy of the current snapshot on glommio's blocking pool, writes the file durably, and
//! only then publishes the copy: an authentication never sees a credential a crash could take
//! back. Writers are serialized by a mutex taken on the blocking thread, so two changes never
//! lose one another's edits. A connection reads the snapshot once per authentication step; a
//! connection already authenticated is not affected by a later change (as in Kafka).
//!
//! The offline `spate-broker user create` uses the same file under the data directory's lock.
//!
//! In cluster mode users are cluster metadata (`spate_metadata::SecurityImage`), replicated
//! through the metadata quorum as KRaft does. The local file stays, read once at start, for the
//! users an operator bootstraps offline on each broker (the brokers' own user, an admin): Kafka's
//! `kafka-storage format --add-scram`. `change` proposes `UpsertScramCredential` /
//! `DeleteScramCredential` to the controller and answers once this broker applied it; the
//! reconciler publishes each new set of replicated users ([`CredentialStore::publish_replicated`]),
//! merged over the local ones: a replicated user of the same name wins whole.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

use spate_metadata::{ApplyError, MetadataCommand, ScramCredentialRecord};
use spate_security::{Credentials, CredentialsFile, ScramCredential, ScramMechanism, StoreError};

use crate::cluster::{self, ProposeError};
use crate::services::Services;
use crate::shard::mesh::invoke_on;

/// The shard that writes the credentials file: one owner, so writes never race.
pub const CREDENTIALS_OWNER_SHARD: usize = 0;

/// Why the credentials could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials file {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("the shard that writes the credentials is stopping")]
    OwnerStopping,
    #[error("the credential change was not applied by the cluster: {0}")]
    Cluster(ProposeError),
}

impl CredentialError {
    /// The native error code a client is answered with.
    pub fn error_code(&self) -> spate_protocol::error::ErrorCode {
        match self {
            CredentialError::Cluster(error) => error.error_code(),
            _ => spate_protocol::error::ErrorCode::StorageError,
        }
    }
}

/// The current credentials of every shard and the serialized way they change. Shared by all
/// shards (`Arc`, in `Services`); lives as long as the broker.
#[derive(Debug)]
pub struct CredentialStore {
    data_dir: PathBuf,
    current: RwLock<Arc<Credentials>>,
    /// Held on a blocking thread from the copy to the publish of one change.
    writer: Mutex<()>,
    /// Cluster mode: the local file's (bootstrap) users, under which the replicated ones are
    /// merged. `None` for a single broker, whose file is the truth.
    bootstrap: Option<Arc<Credentials>>,
}

impl CredentialStore {
    /// Reads the credentials file of `data_dir` (none: no users yet). Plain blocking I/O: at
    /// start-up, before the executors run.
    pub fn open(data_dir: &Path) -> Result<CredentialStore, CredentialError> {
        let credentials =
            CredentialsFile::load(data_dir).map_err(|source| CredentialError::Store {
                path: CredentialsFile::path(data_dir),
                source,
            })?;
        Ok(CredentialStore {
            data_dir: data_dir.to_path_buf(),
            current: RwLock::new(Arc::new(credentials)),
            writer: Mutex::new(()),
            bootstrap: None,
        })
    }

    /// The store of a cluster member: the local file's users (bootstrap users) until the
    /// reconciler publishes the replicated ones.
    pub fn open_for_cluster(data_dir: &Path) -> Result<CredentialStore, CredentialError> {
        let mut store = Self::open(data_dir)?;
        store.bootstrap = Some(store.snapshot());
        Ok(store)
    }

    /// Publishes the cluster's users merged over the bootstrap users (a replicated user of the
    /// same name replaces the local one whole, every mechanism). Cluster mode only.
    pub fn publish_replicated(&self, replicated: Credentials) {
        let bootstrap = self
            .bootstrap
            .as_ref()
            .expect("replicated users are published in cluster mode only");
        let merged = Arc::new(merge(bootstrap, replicated));
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match self.current.write() {
            Ok(mut current) => *current = merged,
            Err(poisoned) => *poisoned.into_inner() = merged,
        }
    }

    /// The credentials now: an immutable snapshot, cheap to take (one reference count).
    pub fn snapshot(&self) -> Arc<Credentials> {
        // A writer panicking while it held the lock left a whole `Arc` behind: still valid.
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Applies `edit` to a copy of the current credentials, writes the copy durably and
    /// publishes it. Blocking: runs on glommio's blocking pool (`change`) or offline.
    pub fn change_blocking<T>(
        &self,
        edit: impl FnOnce(&mut Credentials) -> T,
    ) -> Result<T, CredentialError> {
        assert!(
            self.bootstrap.is_none(),
            "a cluster member's users change through the metadata quorum, not its file"
        );
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut next = Credentials::clone(&self.snapshot());
        let outcome = edit(&mut next);
        CredentialsFile::save(&self.data_dir, &next).map_err(|source| CredentialError::Store {
            path: CredentialsFile::path(&self.data_dir),
            source,
        })?;
        let next = Arc::new(next);
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        Ok(outcome)
    }
}

/// One change of a user's credentials.
#[derive(Debug, Clone)]
pub enum CredentialChange {
    /// Set (or replace) the user's credential for its mechanism.
    Upsert {
        user: String,
        credential: ScramCredential,
    },
    /// Remove the user's credential for this mechanism.
    Delete {
        user: String,
        mechanism: ScramMechanism,
    },
}

/// What one change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeOutcome {
    Done,
    /// A deletion of a credential that does not exist.
    NotFound,
}

/// The bootstrap users with the replicated ones over them.
fn merge(bootstrap: &Credentials, replicated: Credentials) -> Credentials {
    let mut merged = replicated;
    let replicated_names: Vec<String> = merged.users().map(|(name, _)| name.to_string()).collect();
    for (name, mechanisms) in bootstrap.users() {
        if replicated_names
            .binary_search_by(|known| known.as_str().cmp(name))
            .is_ok()
        {
            continue;
        }
        for (mechanism, _) in mechanisms {
            let credential = bootstrap
                .get(name, mechanism)
                .expect("a listed mechanism has a credential");
            merged.upsert(name, credential.clone());
        }
    }
    merged
}

/// Applies `changes` in order as one durable write on the owner shard, and answers each
/// change's outcome in the same order. In cluster mode, proposes each change to the controller
/// in order and answers once this broker applied it; a change the cluster refused for another
/// reason than a missing credential ends the call with that error (earlier ones stay applied,
/// as KRaft applies each record on its own).
pub async fn change(
    services: &Rc<Services>,
    changes: Vec<CredentialChange>,
) -> Result<Vec<ChangeOutcome>, CredentialError> {
    if services.cluster.is_cluster_mode() {
        return propose(services, changes).await;
    }
    let answer = invoke_on(services, CREDENTIALS_OWNER_SHARD, move |owner| async move {
        let store = owner.credentials.clone();
        glommio::executor()
            .spawn_blocking(move || {
                store.change_blocking(|credentials| apply(credentials, changes))
            })
            .await
    })
    .await;
    answer.map_err(|_| CredentialError::OwnerStopping)?
}

async fn propose(
    services: &Rc<Services>,
    changes: Vec<CredentialChange>,
) -> Result<Vec<ChangeOutcome>, CredentialError> {
    let mut outcomes = Vec::with_capacity(changes.len());
    for change in changes {
        let command = match change {
            CredentialChange::Upsert { user, credential } => {
                let (mechanism, credential) = ScramCredentialRecord::of(&credential);
                MetadataCommand::UpsertScramCredential {
                    user,
                    mechanism,
                    credential,
                }
            }
            CredentialChange::Delete { user, mechanism } => {
                MetadataCommand::DeleteScramCredential {
                    user,
                    mechanism: mechanism.name().to_string(),
                }
            }
        };
        let outcome = match cluster::propose(services, command).await {
            Ok(_) => ChangeOutcome::Done,
            Err(ProposeError::Refused(ApplyError::UnknownScramCredential { .. })) => {
                ChangeOutcome::NotFound
            }
            Err(error) => return Err(CredentialError::Cluster(error)),
        };
        outcomes.push(outcome);
    }
    Ok(outcomes)
}

fn apply(credentials: &mut Credentials, changes: Vec<CredentialChange>) -> Vec<ChangeOutcome> {
    changes
        .into_iter()
        .map(|change| match change {
            CredentialChange::Upsert { user, credential } => {
                credentials.upsert(&user, credential);
                ChangeOutcome::Done
            }
            CredentialChange::Delete { user, mechanism } => {
                if credentials.delete(&user, mechanism) {
                    ChangeOutcome::Done
                } else {
                    ChangeOutcome::NotFound
                }
            }
        })
        .collect()
}

/// Why an upsertion is refused before anything is written (Kafka's rules, with its words).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpsertionRefusal {
    /// Kafka's UNACCEPTABLE_CREDENTIAL.
    Unacceptable(String),
}

/// Kafka's checks of one credential upsertion: a name, iterations within 4096..=16384, a salt
/// and a salted password.
pub fn check_upsertion(
    user: &str,
    iterations: i64,
    salt: &[u8],
    salted_password: &[u8],
) -> Result<u32, UpsertionRefusal> {
    let refuse = |message: &str| Err(UpsertionRefusal::Unacceptable(message.to_string()));
    if user.is_empty() {
        return refuse("Username must not be empty");
    }
    if iterations < i64::from(ScramMechanism::ITERATIONS_MIN) {
        return refuse(&format!(
            "Too few iterations: at least {} are required",
            ScramMechanism::ITERATIONS_MIN
        ));
    }
    if iterations > i64::from(ScramMechanism::ITERATIONS_MAX) {
        return refuse(&format!(
            "Too many iterations: at most {} are allowed",
            ScramMechanism::ITERATIONS_MAX
        ));
    }
    if salt.is_empty() {
        return refuse("Salt must not be empty");
    }
    if salted_password.is_empty() {
        return refuse("Salted password must not be empty");
    }
    Ok(iterations as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(mechanism: ScramMechanism, password: &str) -> ScramCredential {
        ScramCredential::from_password(mechanism, password.as_bytes(), b"salt".to_vec(), 4096)
    }

    #[test]
    fn replicated_users_merge_over_the_bootstrap_users_and_win_whole() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let mut local = Credentials::default();
        local.upsert("broker", credential(ScramMechanism::Sha512, "inter"));
        local.upsert("admin", credential(ScramMechanism::Sha512, "local"));
        local.upsert("admin", credential(ScramMechanism::Sha256, "local"));
        CredentialsFile::save(directory.path(), &local).expect("saved");
        let store = CredentialStore::open_for_cluster(directory.path()).expect("opens");
        assert_eq!(
            *store.snapshot(),
            local,
            "bootstrap users serve before the first image"
        );

        let mut replicated = Credentials::default();
        replicated.upsert("admin", credential(ScramMechanism::Sha512, "cluster"));
        replicated.upsert("alice", credential(ScramMechanism::Sha256, "alice"));
        store.publish_replicated(replicated);
        let now = store.snapshot();
        let names: Vec<&str> = now.users().map(|(name, _)| name).collect();
        assert_eq!(names, ["admin", "alice", "broker"]);
        let admin = now.get("admin", ScramMechanism::Sha512).expect("admin");
        assert!(admin.verify_password(b"cluster"));
        assert!(
            now.get("admin", ScramMechanism::Sha256).is_none(),
            "the replicated admin replaced the local one whole"
        );
        store.publish_replicated(Credentials::default());
        assert_eq!(
            *store.snapshot(),
            local,
            "deleted replicated users leave the local ones"
        );
    }
}
