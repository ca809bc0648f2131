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

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::{Arc, Mutex, RwLock};

use spate_security::{Credentials, CredentialsFile, ScramCredential, ScramMechanism, StoreError};

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
}

/// The current credentials of every shard and the serialized way they change. Shared by all
/// shards (`Arc`, in `Services`); lives as long as the broker.
#[derive(Debug)]
pub struct CredentialStore {
    data_dir: PathBuf,
    current: RwLock<Arc<Credentials>>,
    /// Held on a blocking thread from the copy to the publish of one change.
    writer: Mutex<()>,
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
        })
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

/// Applies `changes` in order as one durable write on the owner shard, and answers each
/// change's outcome in the same order.
pub async fn change(
    services: &Rc<Services>,
    changes: Vec<CredentialChange>,
) -> Result<Vec<ChangeOutcome>, CredentialError> {
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
