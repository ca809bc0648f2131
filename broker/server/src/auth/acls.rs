//! The broker's ACLs: one immutable snapshot (`Arc<AclSnapshot>`, the bindings and a version
//! number) that every shard reads, and the one way it changes.
//!
//! Loaded at start-up from `<data_dir>/security/acls` (`spate_security::AclsFile`; a corrupt
//! file stops the start, naming the path). A change (Kafka's CreateAcls and DeleteAcls, the
//! native ACL APIs) runs on shard 0 (`change`, through the typed cross-shard call), which applies
//! it to a copy of the current snapshot on glommio's blocking pool, writes the file durably, and
//! only then publishes the copy with the next version: no request is ever allowed by a binding a
//! crash could take back, nor kept from one the caller was told is gone. Writers are serialized
//! by a mutex taken on the blocking thread. The version is also kept in an atomic, so that a
//! connection's decision cache (`authorizer::DecisionCache`) learns of a change with one load.
//! The shape is the credentials' (`credentials::CredentialStore`).
//!
//! In cluster mode the bindings are cluster metadata (`spate_metadata::SecurityImage`),
//! replicated through the metadata quorum as KRaft does: the store opens empty and not ready
//! ([`AclStore::open_for_cluster`]; a non-empty local ACL file refuses the start, naming it),
//! `change` proposes `CreateAcls`/`DeleteAcls` to the controller and answers with the apply's
//! outcome once this broker applied it, and the reconciler publishes each new set of bindings
//! ([`AclStore::publish`], the next version, so connection caches empty). Until the first
//! publish from a caught-up image the store is not ready and the authorizer allows super users
//! only: a restarted broker never allows by a binding the cluster deleted while it was down.

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use std::sync::atomic::AtomicBool;

use spate_metadata::{AclBindingRecord, AclFilterRecord, ApplyOutcome, MetadataCommand};
use spate_security::{AclBinding, AclBindingFilter, Acls, AclsFile, StoreError};

use crate::cluster::{self, ProposeError};
use crate::services::Services;
use crate::shard::mesh::invoke_on;

/// The shard that writes the ACL file: one owner, so writes never race.
pub const ACLS_OWNER_SHARD: usize = 0;

/// Why the ACLs could not be read or changed.
#[derive(Debug, thiserror::Error)]
pub enum AclStoreError {
    #[error("ACL file {path}: {source}")]
    Store { path: PathBuf, source: StoreError },
    #[error("the shard that writes the ACLs is stopping")]
    OwnerStopping,
    #[error(
        "ACL file {path} holds {bindings} bindings, but in cluster mode ACLs are cluster \
         metadata: create them through any broker (kafka-acls, spate-client Admin) and remove \
         the file"
    )]
    LocalFileInClusterMode { path: PathBuf, bindings: usize },
    #[error("the ACL change was not applied by the cluster: {0}")]
    Cluster(ProposeError),
}

impl AclStoreError {
    /// The native error code a client is answered with.
    pub fn error_code(&self) -> spate_protocol::error::ErrorCode {
        match self {
            AclStoreError::Cluster(error) => error.error_code(),
            _ => spate_protocol::error::ErrorCode::StorageError,
        }
    }
}

/// One published state of the ACLs: the bindings, and the number of changes published before it
/// (0 for what start-up loaded).
#[derive(Debug, Default)]
pub struct AclSnapshot {
    pub acls: Acls,
    pub version: u64,
}

/// The current ACLs of every shard and the serialized way they change. Shared by all shards
/// (`Arc`, in the `Authorizer`); lives as long as the broker.
#[derive(Debug)]
pub struct AclStore {
    data_dir: PathBuf,
    current: RwLock<Arc<AclSnapshot>>,
    /// The version of `current`, readable without the lock.
    version: AtomicU64,
    /// Held on a blocking thread from the copy to the publish of one change.
    writer: Mutex<()>,
    /// False in cluster mode until the reconciler published the bindings of an image this
    /// broker caught up to; the authorizer then allows super users only (fail closed).
    ready: AtomicBool,
}

impl AclStore {
    /// Reads the ACL file of `data_dir` (none: no bindings yet). Plain blocking I/O: at start-up,
    /// before the executors run.
    pub fn open(data_dir: &Path) -> Result<AclStore, AclStoreError> {
        let acls = AclsFile::load(data_dir).map_err(|source| AclStoreError::Store {
            path: AclsFile::path(data_dir),
            source,
        })?;
        Ok(AclStore {
            data_dir: data_dir.to_path_buf(),
            current: RwLock::new(Arc::new(AclSnapshot { acls, version: 0 })),
            version: AtomicU64::new(0),
            writer: Mutex::new(()),
            ready: AtomicBool::new(true),
        })
    }

    /// The store of a cluster member: no bindings and not ready until the first [`publish`].
    /// A local ACL file with bindings refuses the start: they would be invisible to the other
    /// brokers, and silently dropping a deny binding would grant access.
    ///
    /// [`publish`]: AclStore::publish
    pub fn open_for_cluster(data_dir: &Path) -> Result<AclStore, AclStoreError> {
        let local = Self::open(data_dir)?;
        let bindings = local.snapshot().acls.len();
        if bindings > 0 {
            return Err(AclStoreError::LocalFileInClusterMode {
                path: AclsFile::path(data_dir),
                bindings,
            });
        }
        local.ready.store(false, Ordering::Release);
        Ok(local)
    }

    /// Whether the bindings are the cluster's (always, for a single broker).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Publishes `acls` (the cluster's bindings, from the metadata image) with the next version
    /// and makes the store ready. Nothing is written locally: the metadata log is the durable
    /// copy. The same bindings again publish nothing (connection caches stay).
    pub fn publish(&self, acls: Acls) {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.snapshot();
        if current.acls != acls || !self.is_ready() {
            let version = current.version + 1;
            let next = Arc::new(AclSnapshot { acls, version });
            match self.current.write() {
                Ok(mut current) => *current = next,
                Err(poisoned) => *poisoned.into_inner() = next,
            }
            self.version.store(version, Ordering::Release);
        }
        self.ready.store(true, Ordering::Release);
    }

    /// The ACLs now: an immutable snapshot, cheap to take (one reference count).
    pub fn snapshot(&self) -> Arc<AclSnapshot> {
        // A writer panicking while it held the lock left a whole `Arc` behind: still valid.
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The version of the snapshot now, without taking it. It is published after the snapshot
    /// (release), so a reader that sees version `n` then takes a snapshot of version `n` or later.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Applies `edit` to a copy of the current ACLs, writes the copy durably and publishes it
    /// with the next version. Nothing is written when `edit` changed nothing. Blocking: runs on
    /// glommio's blocking pool (`change`) or before the executors start.
    pub fn change_blocking<T>(
        &self,
        edit: impl FnOnce(&mut Acls) -> T,
    ) -> Result<T, AclStoreError> {
        let _writer = self
            .writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let current = self.snapshot();
        let mut next = current.acls.clone();
        let outcome = edit(&mut next);
        if next == current.acls {
            return Ok(outcome);
        }
        AclsFile::save(&self.data_dir, &next).map_err(|source| AclStoreError::Store {
            path: AclsFile::path(&self.data_dir),
            source,
        })?;
        let version = current.version + 1;
        let next = Arc::new(AclSnapshot {
            acls: next,
            version,
        });
        match self.current.write() {
            Ok(mut current) => *current = next,
            Err(poisoned) => *poisoned.into_inner() = next,
        }
        self.version.store(version, Ordering::Release);
        Ok(outcome)
    }
}

/// One change of the ACLs, as CreateAcls and DeleteAcls carry them.
#[derive(Debug, Clone)]
pub enum AclChange {
    /// Add these bindings (each checked with `AclBinding::validate` here, as Kafka does).
    Create(Vec<AclBinding>),
    /// Remove every binding each filter matches.
    Delete(Vec<AclBindingFilter>),
}

/// What one change did: per binding created, whether it was valid (else why not, in
/// `AclError`'s words); per filter, the bindings it removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeOutcome {
    Created(Vec<Result<(), String>>),
    Deleted(Vec<Vec<AclBinding>>),
}

/// Applies `change` as one durable write on the owner shard, and answers what it did. In
/// cluster mode, proposes it to the controller and answers the apply's outcome once this broker
/// applied it (the bindings are then in this broker's store).
pub async fn change(
    services: &Rc<Services>,
    change: AclChange,
) -> Result<ChangeOutcome, AclStoreError> {
    if services.cluster.is_cluster_mode() {
        return propose(services, change).await;
    }
    let answer = invoke_on(services, ACLS_OWNER_SHARD, move |owner| async move {
        let store = owner.authorizer.acls().clone();
        glommio::executor()
            .spawn_blocking(move || store.change_blocking(|acls| apply(acls, change)))
            .await
    })
    .await;
    answer.map_err(|_| AclStoreError::OwnerStopping)?
}

/// `change` as a metadata command, and the apply's outcome as the store's.
async fn propose(
    services: &Rc<Services>,
    change: AclChange,
) -> Result<ChangeOutcome, AclStoreError> {
    let command = match &change {
        AclChange::Create(bindings) => MetadataCommand::CreateAcls {
            bindings: bindings.iter().map(AclBindingRecord::of).collect(),
        },
        AclChange::Delete(filters) => MetadataCommand::DeleteAcls {
            filters: filters.iter().map(AclFilterRecord::of).collect(),
        },
    };
    let outcome = cluster::propose(services, command)
        .await
        .map_err(AclStoreError::Cluster)?;
    outcome_of(outcome)
}

/// The store's outcome of an applied `CreateAcls` or `DeleteAcls`. A binding the image refused
/// is answered as invalid (its reason is `spate_security`'s, the rule this store applies too).
fn outcome_of(outcome: ApplyOutcome) -> Result<ChangeOutcome, AclStoreError> {
    match outcome {
        ApplyOutcome::AclsCreated { results } => Ok(ChangeOutcome::Created(results)),
        ApplyOutcome::AclsDeleted { deleted } => Ok(ChangeOutcome::Deleted(
            deleted
                .into_iter()
                .map(|records| {
                    records
                        .iter()
                        .filter_map(AclBindingRecord::binding)
                        .collect()
                })
                .collect(),
        )),
        other => Err(AclStoreError::Cluster(ProposeError::Metadata {
            code: spate_protocol::error::ErrorCode::Unknown,
            message: format!("the controller answered {other:?} to an ACL change"),
        })),
    }
}

/// Applies `change` to `acls`. Kafka creates the valid bindings of a request and answers the
/// invalid ones each with its error (the cluster's apply, `spate_metadata::SecurityImage`,
/// follows the same rule); a deletion removes, per filter in order, what it matches.
pub fn apply(acls: &mut Acls, change: AclChange) -> ChangeOutcome {
    match change {
        AclChange::Create(bindings) => ChangeOutcome::Created(
            bindings
                .into_iter()
                .map(|binding| {
                    binding.validate().map_err(|error| error.to_string())?;
                    acls.add(binding);
                    Ok(())
                })
                .collect(),
        ),
        AclChange::Delete(filters) => ChangeOutcome::Deleted(
            filters
                .iter()
                .map(|filter| acls.remove_matching(filter))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use spate_security::{AclError, Operation, PatternType, Permission, ResourceType};

    fn read_binding(topic: &str) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: topic.to_string(),
            pattern: PatternType::Literal,
            principal: "User:alice".to_string(),
            host: "*".to_string(),
            operation: Operation::Read,
            permission: Permission::Allow,
        }
    }

    #[test]
    fn a_change_is_durable_and_published_with_the_next_version() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = AclStore::open(directory.path()).expect("no file opens empty");
        assert_eq!((store.version(), store.snapshot().acls.len()), (0, 0));

        let outcome = store
            .change_blocking(|acls| apply(acls, AclChange::Create(vec![read_binding("orders")])))
            .expect("written");
        assert_eq!(outcome, ChangeOutcome::Created(vec![Ok(())]));
        assert_eq!(store.version(), 1);
        assert_eq!(store.snapshot().version, 1);
        assert_eq!(store.snapshot().acls.len(), 1);

        let reopened = AclStore::open(directory.path()).expect("the file reads back");
        assert_eq!(reopened.snapshot().acls, store.snapshot().acls);
    }

    #[test]
    fn a_change_that_changes_nothing_keeps_the_version() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = AclStore::open(directory.path()).expect("opens");
        let outcome = store
            .change_blocking(|acls| apply(acls, AclChange::Delete(vec![AclBindingFilter::any()])))
            .expect("nothing to write");
        assert_eq!(outcome, ChangeOutcome::Deleted(vec![vec![]]));
        assert_eq!(store.version(), 0);
        assert!(!AclsFile::path(directory.path()).exists());
    }

    #[test]
    fn invalid_bindings_are_answered_each_and_valid_ones_created() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = AclStore::open(directory.path()).expect("opens");
        let mut bad_host = read_binding("orders");
        bad_host.host = "not-an-address".to_string();
        let outcome = store
            .change_blocking(|acls| {
                apply(
                    acls,
                    AclChange::Create(vec![bad_host, read_binding("payments")]),
                )
            })
            .expect("written");
        assert_eq!(
            outcome,
            ChangeOutcome::Created(vec![Err(AclError::Host.to_string()), Ok(())])
        );
        let names: Vec<String> = store
            .snapshot()
            .acls
            .iter()
            .map(|binding| binding.resource_name)
            .collect();
        assert_eq!(names, ["payments"]);
    }

    #[test]
    fn a_cluster_store_is_not_ready_until_published_and_each_publish_bumps_the_version() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = AclStore::open_for_cluster(directory.path()).expect("no file opens");
        assert!(!store.is_ready());
        store.publish(Acls::default());
        assert!(store.is_ready());
        assert_eq!(
            store.version(),
            1,
            "becoming ready empties connection caches"
        );
        store.publish(Acls::default());
        assert_eq!(store.version(), 1, "the same bindings publish nothing");
        let mut acls = Acls::default();
        acls.add(read_binding("orders"));
        store.publish(acls.clone());
        assert_eq!(store.version(), 2);
        assert_eq!(store.snapshot().acls, acls);
        assert!(
            !AclsFile::path(directory.path()).exists(),
            "the metadata log is the durable copy"
        );
    }

    #[test]
    fn a_local_acl_file_with_bindings_refuses_a_cluster_start_naming_it() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let local = AclStore::open(directory.path()).expect("opens");
        local
            .change_blocking(|acls| apply(acls, AclChange::Create(vec![read_binding("orders")])))
            .expect("written");
        let error = AclStore::open_for_cluster(directory.path()).expect_err("refused");
        let path = AclsFile::path(directory.path()).display().to_string();
        assert!(error.to_string().contains(&path), "{error}");
        assert!(error.to_string().contains("cluster mode"), "{error}");
    }

    #[test]
    fn a_corrupt_file_refuses_the_open_naming_the_path() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let path = AclsFile::path(directory.path());
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("folder");
        std::fs::write(&path, b"garbage").expect("written");
        let error = AclStore::open(directory.path()).expect_err("corrupt");
        assert!(
            error.to_string().contains(&path.display().to_string()),
            "{error}"
        );
    }
}
