//! Cluster mode (`--seeds`): this broker's member of the metadata quorum and what follows from
//! the metadata it replicates.
//!
//! - `driver`: the Raft driver on shard 0. It owns the [`MetadataNode`] (raft-rs, durable log
//!   under `<data_dir>/metadata`), ticks it every `metadata_tick_ms`, steps the RaftMessages any
//!   shard receives (each is handed to shard 0), sends what `advance` returns through shard 0's
//!   peer connections, runs the controller's decisions while this broker leads, and matches
//!   applied entries to the proposals waiting for them.
//! - `bootstrap`: before the node opens, the seeds' node ids are learned (native
//!   DescribeCluster v1), so that every seed computes the same voters; then this broker
//!   registers (RegisterBroker, a new incarnation at every start).
//! - `reconcile`: each new image becomes the catalog's cluster view (`Catalog::plan_cluster`),
//!   the partitions this broker hosts are opened or deleted on their shards, the catalog commits,
//!   and every shard applies the changed roles (`Shard::apply_roles`).
//! - `topics`: the cluster's way to create, delete, alter and grow topics ([`ClusterTopics`],
//!   used by the admin handlers and the coordinators' internal topics).
//!
//! Every shard reaches the driver through its [`ClusterHandle`] ([`propose`]): a proposal goes
//! to the controller (in-process when this broker leads the quorum, else native
//! ClusterPropose) and is answered once this broker applied it and reconciled its catalog, so
//! a client that saw "created" here finds the topic here (read-your-writes on the broker).
//!
//! A single broker (no `--seeds`) has no driver: its handle says so and the catalog stays the
//! truth, exactly as before cluster mode existed.

mod bootstrap;
mod driver;
mod reconcile;
pub mod topics;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use spate_metadata::{ApplyError, ApplyOutcome, MetadataCommand, MetadataError, MetadataImage};
use spate_protocol::error::ErrorCode;
use spate_protocol::NodeId;

use crate::services::Services;
use crate::shard::mesh::invoke_on;

pub use driver::{handle_cluster_propose, handle_raft_message, start};
pub use topics::{ServerClusterTopics, INTERNAL_TOPIC_REPLICATION_FACTOR_MAX};

/// The shard that runs the metadata driver.
pub const DRIVER_SHARD: usize = 0;

/// Why a metadata change was not made (or its outcome is unknown).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    #[error("this broker is not in a cluster (no --seeds)")]
    NotCluster,
    #[error("the cluster is forming: this broker's metadata node is not running yet")]
    Starting,
    #[error("no controller answered within {timeout_ms} ms (the change may still be applied)")]
    TimedOut { timeout_ms: u64 },
    #[error("the change was refused: {0}")]
    Refused(ApplyError),
    #[error("metadata: {message}")]
    Metadata { code: ErrorCode, message: String },
    #[error("the broker is stopping")]
    Stopping,
}

impl ProposeError {
    /// The native code a client is answered with.
    pub fn error_code(&self) -> ErrorCode {
        match self {
            ProposeError::NotCluster => ErrorCode::InvalidRequest,
            ProposeError::Starting => ErrorCode::NotController,
            ProposeError::TimedOut { .. } => ErrorCode::RequestTimedOut,
            ProposeError::Refused(error) => error.error_code(),
            ProposeError::Metadata { code, .. } => *code,
            ProposeError::Stopping => ErrorCode::BrokerNotAvailable,
        }
    }
}

impl From<MetadataError> for ProposeError {
    fn from(error: MetadataError) -> Self {
        ProposeError::Metadata {
            code: error.error_code(),
            message: error.to_string(),
        }
    }
}

/// What every shard shares about the metadata (behind `Arc`, written by the driver on shard 0).
#[derive(Debug)]
pub struct ClusterState {
    /// The latest image the driver applied.
    image: RwLock<Arc<MetadataImage>>,
    /// The highest metadata index whose effects the catalog and shards have (reconciled).
    reconciled_index: AtomicU64,
}

impl ClusterState {
    fn new() -> Self {
        Self {
            image: RwLock::new(Arc::new(MetadataImage::default())),
            reconciled_index: AtomicU64::new(0),
        }
    }

    fn publish_image(&self, image: Arc<MetadataImage>) {
        *self
            .image
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = image;
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.image
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    pub fn reconciled_index(&self) -> u64 {
        self.reconciled_index.load(Ordering::SeqCst)
    }
}

/// One shard's view of the cluster: shard-local (built with the shard's `Services`, dropped with
/// them); only shard 0's holds the driver.
pub struct ClusterHandle {
    /// `None` for a single broker.
    state: Option<Arc<ClusterState>>,
    /// Shard 0 only, once the metadata node is open.
    driver: RefCell<Option<Rc<driver::Driver>>>,
}

impl ClusterHandle {
    /// The handle of one shard; `state` is shared by every shard of a cluster member.
    pub fn new(state: Option<Arc<ClusterState>>) -> Self {
        Self {
            state,
            driver: RefCell::new(None),
        }
    }

    /// The shared state every shard's handle is built with, `None` for a single broker.
    pub fn shared_state(cluster_mode: bool) -> Option<Arc<ClusterState>> {
        cluster_mode.then(|| Arc::new(ClusterState::new()))
    }

    pub fn is_cluster_mode(&self) -> bool {
        self.state.is_some()
    }

    /// The latest metadata image this broker applied (an empty one before the first, and for a
    /// single broker).
    pub fn image(&self) -> Arc<MetadataImage> {
        self.state
            .as_ref()
            .map_or_else(|| Arc::new(MetadataImage::default()), |state| state.image())
    }

    fn driver(&self) -> Option<Rc<driver::Driver>> {
        self.driver.borrow().clone()
    }

    fn set_driver(&self, driver: Rc<driver::Driver>) {
        *self.driver.borrow_mut() = Some(driver);
    }

    fn state(&self) -> Option<&Arc<ClusterState>> {
        self.state.as_ref()
    }
}

/// Proposes `command` to the controller and waits until this broker applied it and reconciled
/// its catalog (at most `cluster_propose_timeout_ms`). Any shard may call it.
pub async fn propose(
    services: &Rc<Services>,
    command: MetadataCommand,
) -> Result<ApplyOutcome, ProposeError> {
    if !services.cluster.is_cluster_mode() {
        return Err(ProposeError::NotCluster);
    }
    invoke_on(services, DRIVER_SHARD, move |on: Rc<Services>| async move {
        match on.cluster.driver() {
            Some(driver) => driver.propose(&on, command).await,
            None => Err(ProposeError::Starting),
        }
    })
    .await
    .map_err(|_| ProposeError::Stopping)?
}

/// The controller this broker knows of, `None` in single mode or while none is known.
pub fn controller(services: &Services) -> Option<NodeId> {
    services.snapshot().controller
}

/// Waits (polling the shared state) until this broker reconciled metadata index `index`, or
/// `timeout` passes. True when reached.
async fn wait_reconciled(state: &ClusterState, index: u64, timeout: Duration) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if state.reconciled_index() >= index {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        glommio::timer::sleep(Duration::from_millis(RECONCILE_POLL_MS)).await;
    }
}

/// How often a waiter on another shard looks at the reconciled index.
const RECONCILE_POLL_MS: u64 = 2;
