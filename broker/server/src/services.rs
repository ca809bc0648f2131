//! One shard's services: the shard, its end of the cross-shard mesh, and the per-shard services
//! registered beside it (the group and transaction coordinators, the peer connections, the
//! cluster handle). Cross-shard calls run against this type (`shard::mesh::invoke_on`), and
//! connections and handlers hold it.
//!
//! Shard-local: built on its executor thread at start-up, shared by that thread's tasks through
//! `Rc`, dropped when the executor ends. A service added later (a Kafka coordinator,
//! replication) becomes a field here and implements its layer's extension of
//! [`ShardServices`].

use std::ops::Deref;
use std::rc::Rc;
use std::sync::Arc;

use crate::auth::{Authorizer, CredentialStore, FailedAuthentications};
use crate::cluster::{ClusterHandle, ClusterState, ServerClusterTopics};
use crate::config::Config;
use crate::group::{GroupCoordinator, GroupServices};
use crate::handlers::txn_peers::PeerTxn;
use crate::peer::{PeerLimits, PeerPool, PeerSecurity};
use crate::replication::ShardReplication;
use crate::shard::mesh::{Mesh, ShardServices};
use crate::shard::topic_creation::ClusterTopics;
use crate::shard::Shard;
use crate::txn::peers::TxnPeers;
use crate::txn::{TxnCoordinator, TxnServices};

/// See the module documentation.
pub struct Services {
    pub shard: Rc<Shard>,
    /// The broker configuration (the server's limits, the listen address, ...).
    pub config: Arc<Config>,
    mesh: Mesh<Services>,
    /// The consumer groups this shard coordinates.
    groups: GroupCoordinator,
    /// The transactional ids this shard coordinates.
    transactions: TxnCoordinator,
    /// This shard's connections to the other brokers of the cluster (none in single mode).
    pub peers: PeerPool,
    /// This shard's view of the cluster (cluster mode), and shard 0's metadata driver.
    pub cluster: ClusterHandle,
    /// Cluster mode: topics are created and grown through the controller.
    cluster_topics: Option<Rc<dyn ClusterTopics>>,
    /// This shard's replica fetchers and ISR checks (cluster mode).
    pub replication: ShardReplication,
    /// The transaction coordinator's calls to other brokers, over `peers`.
    txn_peers: Rc<PeerTxn>,
    /// The users and their SCRAM credentials, shared by every shard (`auth::credentials`).
    pub credentials: Arc<CredentialStore>,
    /// Whether a principal may do an operation on a resource: the ACLs shared by every shard
    /// (`auth::authorizer`).
    pub authorizer: Arc<Authorizer>,
    /// Failed logins per source address, shared by every shard and the accept path
    /// (`auth::failures`).
    pub failed_authentications: Arc<FailedAuthentications>,
    /// How this broker's calls to other brokers are secured (`inter_broker_*`), for the pools
    /// opened outside `Services::new` (the metadata driver's).
    pub peer_security: Option<Arc<PeerSecurity>>,
}

/// The security state every shard shares, handed to [`Services::new`] as one value.
pub struct SharedSecurity {
    pub credentials: Arc<CredentialStore>,
    pub authorizer: Arc<Authorizer>,
    pub failed_authentications: Arc<FailedAuthentications>,
    pub peer_security: Option<Arc<PeerSecurity>>,
}

impl Services {
    /// `cluster`: the state every shard of a cluster member shares (`None`: a single broker).
    pub fn new(
        shard: Rc<Shard>,
        config: Arc<Config>,
        mesh: Mesh<Services>,
        cluster: Option<Arc<ClusterState>>,
        security: SharedSecurity,
    ) -> Rc<Services> {
        let SharedSecurity {
            credentials,
            authorizer,
            failed_authentications,
            peer_security,
        } = security;
        assert_eq!(shard.id, mesh.shard_id(), "a shard's services share its id");
        let groups = GroupCoordinator::new(config.groups.clone());
        let transactions = TxnCoordinator::new(config.transactions.clone());
        let peers = PeerPool::new(
            PeerLimits::from_limits(&config.limits),
            peer_security.clone(),
        );
        let replication = ShardReplication::new(
            PeerLimits::from_limits(&config.limits),
            peer_security.clone(),
        );
        Rc::new_cyclic(|services| {
            let cluster_topics = cluster.is_some().then(|| {
                Rc::new(ServerClusterTopics::new(services.clone())) as Rc<dyn ClusterTopics>
            });
            Services {
                shard,
                config,
                mesh,
                groups,
                transactions,
                peers,
                cluster: ClusterHandle::new(cluster),
                cluster_topics,
                replication,
                txn_peers: Rc::new(PeerTxn {
                    services: services.clone(),
                }),
                credentials,
                authorizer,
                failed_authentications,
                peer_security,
            }
        })
    }
}

impl Deref for Services {
    type Target = Shard;

    fn deref(&self) -> &Shard {
        &self.shard
    }
}

impl ShardServices for Services {
    type Files = crate::shard::partition::ShardFileSystem;

    fn shard(&self) -> &Rc<Shard> {
        &self.shard
    }

    fn mesh(&self) -> &Mesh<Services> {
        &self.mesh
    }

    fn cluster_topics(&self) -> Option<Rc<dyn ClusterTopics>> {
        self.cluster_topics.clone()
    }
}

impl GroupServices for Services {
    fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }
}

impl TxnServices for Services {
    fn transactions(&self) -> &TxnCoordinator {
        &self.transactions
    }

    fn txn_peers(&self) -> Option<Rc<dyn TxnPeers>> {
        // A single broker leads and coordinates everything itself.
        self.snapshot()
            .cluster_mode
            .then(|| self.txn_peers.clone() as Rc<dyn TxnPeers>)
    }
}
