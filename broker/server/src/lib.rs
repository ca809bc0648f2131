//! `spate-server`, the top layer of the broker and the only bridge from requests to the shards:
//! the configuration (`config`), each shard's services (`services`), connections and handlers.
//! Depends on every broker crate below it; none depends on it.
//!
//! The running broker: binds the listening socket once, starts one pinned glommio executor per
//! shard, wires the cross-shard mesh, accepts connections on every shard (each through a
//! duplicate of the one listening descriptor, within the broker-wide connection limits of
//! `admission`) as soon as each shard knows which partitions it owns, opens those partitions in
//! the background meanwhile (`shard::opening`: a request for one still opening waits for it),
//! and shuts down cleanly on SIGTERM/SIGINT.
//!
//! Shutdown order, and why: (1) every shard stops accepting; (2) each connection stops reading new
//! requests, finishes the ones in flight and writes their responses (up to the grace period);
//! (3) shards wait for each other, because a shard's in-flight request may still need a partition
//! owned by another; (4) every partition is fsynced and closed; (5) the process exits 0.
//!
//! Request handling lives in `connection` (framing, ordering, backpressure) and `handlers` (one
//! function per API); this file only builds and tears down the runtime.

pub mod admin;
pub mod admission;
pub mod auth;
pub mod cluster;
pub mod config;
pub mod connection;
pub mod handlers;
pub mod kafka;
pub mod peer;
pub mod progress;
pub mod replication;
pub mod services;
pub mod startup;
pub mod storage_sizing;
pub mod tls;
pub mod write;

// The layers below, under the names this crate's modules use (`crate::shard::...`).
use spate_cluster::{catalog, log_throttle, shard};
use spate_group as group;
use spate_storage as storage;
use spate_txn as txn;

use std::net::SocketAddr;
use std::os::fd::{AsFd, FromRawFd, IntoRawFd};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::future;
use glommio::channels::channel_mesh::MeshBuilder;
use glommio::net::TcpListener;
use glommio::sync::Gate;
use glommio::{LocalExecutorBuilder, Placement};

use crate::catalog::{
    Catalog, CatalogError, CatalogNode, DataDirectoryLock, DataDirectoryLockError,
};
use crate::config::{Config, ShardPlacement};
use crate::shard::mesh::{Envelope, Mesh, ShardServices};
use crate::shard::opening::Readiness;
use crate::shard::signal::{ShutdownFlag, SignalListener};
use crate::shard::{Shard, ShardPosition};
use admission::{accept_backoff, Admission, LogThrottle};
use kafka::KafkaBroker;
use progress::{StartupProgress, StartupStep};
use services::{Services, SharedSecurity};

/// At most one log line per this interval about refused connections, one about failing accepts,
/// and one about connections closed for not taking their answers, per shard.
const ACCEPT_LOG_INTERVAL_MS: u64 = 10_000;

/// How often a shard checks whether its peers reached the same start-up or shutdown step.
const BARRIER_POLL_INTERVAL_MS: u64 = 5;

/// A start-up slower than this gets a warning naming each shard's step, repeated at this
/// interval until every shard listens (a healthy start takes milliseconds).
const STARTUP_REPORT_INTERVAL_MS: u64 = 10_000;

/// Why the broker could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    DataDirectory(#[from] DataDirectoryLockError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("cannot start shard {shard}: {message}")]
    ShardStart { shard: usize, message: String },
    #[error("shard {shard} failed: {message}")]
    Shard { shard: usize, message: String },
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("Kafka cluster id: {0}")]
    KafkaIdentity(#[from] kafka::identity::IdentityError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("inter-broker security: {0}")]
    PeerSecurity(#[from] peer::PeerSecurityError),
    #[error("cannot start the TLS certificate reload: {0}")]
    TlsReload(std::io::Error),
    #[error("cannot load the users' credentials: {0}")]
    Credentials(#[from] auth::credentials::CredentialError),
    #[error("cannot load the ACLs: {0}")]
    Acls(#[from] auth::acls::AclStoreError),
}

/// A step every shard must reach before any goes on: counted with an atomic, waited for by
/// polling the shard's timer (shards are on different threads and cannot wake each other's
/// tasks directly).
#[derive(Debug, Clone, Default)]
struct Barrier {
    arrived: Arc<AtomicUsize>,
}

impl Barrier {
    /// A start-up step. Also returns when shutdown is requested: a shard that failed to start
    /// requests it, and its peers must not wait for it forever.
    async fn arrive_and_wait(&self, shard_count: usize, shutdown: &ShutdownFlag) {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        while self.arrived.load(Ordering::SeqCst) < shard_count && !shutdown.is_requested() {
            glommio::timer::sleep(Duration::from_millis(BARRIER_POLL_INTERVAL_MS)).await;
        }
    }

    /// A shutdown step, where the shutdown flag is already set and says nothing: waits until
    /// every shard still running (all but the `failed` ones) has arrived, or `deadline` passes
    /// (a shard that died without counting itself failed must not hold the others forever).
    ///
    /// This is what keeps a shard alive while a peer may still call it: a shard that left early
    /// would take its end of the mesh with it, and a peer's request sent to it then (a long
    /// poll reading again after its wait, say) would never be answered.
    async fn arrive_and_wait_for_peers(
        &self,
        shard_count: usize,
        failed: &AtomicUsize,
        deadline: Instant,
    ) -> bool {
        self.arrived.fetch_add(1, Ordering::SeqCst);
        loop {
            let present = self.arrived.load(Ordering::SeqCst) + failed.load(Ordering::SeqCst);
            if present >= shard_count {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            glommio::timer::sleep(Duration::from_millis(BARRIER_POLL_INTERVAL_MS)).await;
        }
    }
}

/// Shared among the shard threads while they start and stop.
#[derive(Clone)]
struct Rendezvous {
    /// Every shard knows the partitions it owns (open or still opening): none may answer for
    /// a peer's partition before the peer does.
    partitions_registered: Barrier,
    listening: Barrier,
    drained: Barrier,
    /// Shards that stopped before listening.
    failed: Arc<AtomicUsize>,
    /// The address the shards listen on (resolved when the configured port is 0).
    listen: SocketAddr,
    /// The Kafka listener's shared state, when it is on.
    kafka: Option<Arc<KafkaBroker>>,
    /// The broker-wide connection counts and limits.
    admission: Arc<Admission>,
    /// Which start-up step each shard is at, for the watchdog that names a stuck one.
    progress: StartupProgress,
    /// How many partitions are open, and when serving began and opening ended.
    readiness: Arc<Readiness>,
    /// Cluster mode: the metadata state every shard shares.
    cluster: Option<Arc<cluster::ClusterState>>,
    /// Where the admin HTTP listener bound (`None`: turned off).
    admin: Option<SocketAddr>,
    /// When `run` began (the admin API's uptime).
    started: Instant,
    /// The users' credentials every shard authenticates against.
    credentials: Arc<auth::CredentialStore>,
    /// The ACLs and authorization settings every shard checks requests against.
    authorizer: Arc<auth::Authorizer>,
    /// Each TLS listener's certificates, as the reload thread keeps them.
    certificates: ListenersCertificates,
    /// How this broker's calls to other brokers are secured (`inter_broker_*`).
    peer_security: Option<Arc<peer::PeerSecurity>>,
}

/// The certificates of the listeners that have TLS (`None`: plaintext).
#[derive(Clone, Default)]
struct ListenersCertificates {
    native: Option<Arc<tls::ListenerCertificates>>,
    kafka: Option<Arc<tls::ListenerCertificates>>,
    admin: Option<Arc<tls::ListenerCertificates>>,
}

impl ListenersCertificates {
    /// Reads every listener's files: a missing or invalid one fails the start, naming it.
    fn load(config: &Config) -> Result<ListenersCertificates, tls::TlsError> {
        let load = |listener, files: Option<&config::ListenerTls>| {
            files
                .map(|files| tls::ListenerCertificates::load(listener, files))
                .transpose()
        };
        Ok(ListenersCertificates {
            native: load("native", config.tls.as_ref())?,
            kafka: load(
                "kafka",
                config.kafka.as_ref().and_then(|kafka| kafka.tls.as_ref()),
            )?,
            admin: load("admin", config.admin_tls.as_ref())?,
        })
    }

    fn all(&self) -> Vec<Arc<tls::ListenerCertificates>> {
        [&self.native, &self.kafka, &self.admin]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }
}

/// Warns about each listener that serves plaintext on an address other machines can reach.
fn warn_of_plaintext_listeners(listeners: &[(&str, SocketAddr, bool)]) {
    for (listener, address, has_tls) in listeners {
        if !has_tls && !address.ip().is_loopback() {
            tracing::warn!(
                listener,
                %address,
                "a plaintext listener binds a non-loopback address: anyone who can reach it reads \
                 and writes in the clear; configure TLS for it (its *tls_cert_file and \
                 *tls_key_file settings) or bind 127.0.0.1"
            );
        }
    }
}

/// Runs the broker until SIGTERM/SIGINT (or `shutdown` is requested), then stops cleanly.
pub fn run(config: Config, shutdown: ShutdownFlag) -> Result<(), ServerError> {
    let started = Instant::now();
    let shard_count = config.placement.shard_count();
    // Before anything binds: a missing or invalid certificate fails the start, naming the file.
    let certificates = ListenersCertificates::load(&config)?;
    let peer_security = peer::PeerSecurity::load(&config)?;
    startup::log_memlock(shard_count, config.limits.io_memory_bytes);
    // Bind first: a port held by anyone else (another broker included) fails the start before
    // the data directory is touched.
    let listener = startup::bind_listener_waiting(
        config.listen,
        Duration::from_millis(startup::LISTEN_ADDRESS_IN_USE_WAIT_MS),
    )
    .map_err(|source| ServerError::Listen {
        address: config.listen,
        source,
    })?;
    let listen = listener
        .local_addr()
        .ok()
        .and_then(|address| address.as_socket())
        .unwrap_or(config.listen);
    let kafka_listener = match &config.kafka {
        None => None,
        Some(kafka) => {
            let listener = startup::bind_listener_waiting(
                kafka.listen,
                Duration::from_millis(startup::LISTEN_ADDRESS_IN_USE_WAIT_MS),
            )
            .map_err(|source| ServerError::Listen {
                address: kafka.listen,
                source,
            })?;
            let bound = listener
                .local_addr()
                .ok()
                .and_then(|address| address.as_socket())
                .unwrap_or(kafka.listen);
            Some((Arc::new(listener), bound))
        }
    };
    let admin_listener = match config.admin_listen {
        None => None,
        Some(address) => {
            let listener = startup::bind_listener_waiting(
                address,
                Duration::from_millis(startup::LISTEN_ADDRESS_IN_USE_WAIT_MS),
            )
            .map_err(|source| ServerError::Listen { address, source })?;
            let bound = listener
                .local_addr()
                .ok()
                .and_then(|address| address.as_socket())
                .unwrap_or(address);
            // Client certificates (admin_tls_client_ca_file) are the admin API's only
            // authentication.
            let authenticated = config
                .admin_tls
                .as_ref()
                .is_some_and(|tls| tls.client_ca_file.is_some());
            if !bound.ip().is_loopback() && !authenticated {
                tracing::warn!(
                    admin_address = %bound,
                    "the admin listener (metrics, topic and group views) has no authentication \
                     and binds a non-loopback address: reachable by anyone who can reach it; \
                     firewall it, bind 127.0.0.1, or require client certificates \
                     (admin_tls_client_ca_file)"
                );
            }
            Some((Arc::new(listener), bound))
        }
    };
    let connections_max = startup::log_open_files(
        config.limits.file_descriptors_reserved,
        config.limits.connections_max,
        |open_files| shard_count * open_files_per_shard(&config.limits, shard_count, open_files),
    );
    let failed_authentications = Arc::new(auth::FailedAuthentications::new(
        config.limits.failed_authentications_per_address_max,
        Duration::from_millis(config.limits.failed_authentication_window_ms),
    ));
    let admission = Arc::new(Admission::new(
        connections_max,
        config.limits.connections_per_ip_max,
        failed_authentications,
    ));
    // Until `run` returns: a signal requests shutdown, which wakes every shard through its event.
    let _signals = SignalListener::start(&shutdown).map_err(ServerError::Signals)?;
    let mut plaintext_check = vec![("native", listen, certificates.native.is_some())];
    if let Some((_, bound)) = &kafka_listener {
        plaintext_check.push(("kafka", *bound, certificates.kafka.is_some()));
    }
    if let Some((_, bound)) = &admin_listener {
        plaintext_check.push(("admin", *bound, certificates.admin.is_some()));
    }
    warn_of_plaintext_listeners(&plaintext_check);
    // Until `run` returns: the files are looked at every few seconds and on SIGHUP.
    let _reloader = if certificates.all().is_empty() {
        None
    } else {
        Some(
            tls::reload::CertificateReloader::start(
                certificates.all(),
                Duration::from_millis(config.limits.tls_reload_check_interval_ms),
            )
            .map_err(ServerError::TlsReload)?,
        )
    };

    // Before anything else reads or writes the directory: a second broker there would treat the
    // first one's topics as strays and overwrite its catalog. Held until `run` returns.
    let _lock = DataDirectoryLock::acquire(&config.data_dir, &format!("listen={}", config.listen))?;
    if let Some(file_system) = crate::storage::medium::memory_file_system(&config.data_dir) {
        tracing::warn!(
            data_dir = %config.data_dir.display(),
            file_system,
            "NOT DURABLE: the data directory is on {file_system}, in memory, not on a disk; every \
             record, acks=all included, is lost at reboot or power loss: use a disk for \
             anything but tests"
        );
    }
    // Under the lock: `iotune` writes the file under it too.
    let mut config = config;
    config.limits.storage_sizing.resolve(&config.data_dir);
    let node = if config.cluster.is_cluster_mode() {
        CatalogNode::cluster(config.cluster.node_id)
    } else {
        CatalogNode::single(config.cluster.node_id)
    };
    let (catalog, change) = Catalog::open_as(
        &config.data_dir,
        shard_count,
        config.limits.topics_max,
        config.limits.partitions_per_topic_max,
        config.limits.partitions_per_shard_max,
        node,
    )?;
    if let Some(change) = change {
        tracing::warn!(
            previous_shard_count = change.previous_shard_count,
            shard_count = change.shard_count,
            partitions_moved = change.partitions_moved,
            "shard count changed since the last run: partitions placed again (round robin by topic name)"
        );
    }
    let catalog = Arc::new(catalog);
    // A corrupt credentials file stops the start: serving with no users, or some, would lock
    // out (or let in) the wrong people.
    // In cluster mode users and ACLs are cluster metadata (the reconciler publishes them); the
    // local credentials file keeps the bootstrap users, and a local ACL file with bindings
    // refuses the start (`auth::acls`).
    let cluster_mode = config.cluster.is_cluster_mode();
    let credentials = Arc::new(if cluster_mode {
        auth::CredentialStore::open_for_cluster(&config.data_dir)?
    } else {
        auth::CredentialStore::open(&config.data_dir)?
    });
    // A corrupt ACL file stops the start too: serving without some bindings would deny (or, with
    // a deny lost, allow) what the operator decided otherwise.
    let acls = Arc::new(if cluster_mode {
        auth::AclStore::open_for_cluster(&config.data_dir)?
    } else {
        auth::AclStore::open(&config.data_dir)?
    });
    let authorizer = Arc::new(auth::Authorizer::new(&config.authorization, acls));
    if authorizer.is_enabled() {
        tracing::info!(
            bindings = authorizer.acls().snapshot().acls.len(),
            super_users = config.authorization.super_users.len(),
            "authorization on: every request is checked against the ACLs"
        );
    }
    let kafka = match (&config.kafka, &kafka_listener) {
        (Some(kafka_config), Some((_, bound))) => {
            let identity = kafka::KafkaIdentity::load_or_create(&config.data_dir)?;
            let mut kafka_config = kafka_config.clone();
            // Metadata advertises the address clients reach, not a configured port 0.
            kafka_config.listen = *bound;
            Some(Arc::new(KafkaBroker::new(kafka_config, identity)))
        }
        _ => None,
    };
    tracing::info!(
        data_dir = %config.data_dir.display(),
        topics = catalog.snapshot().topics.len(),
        "catalog opened"
    );

    // Each shard accepts on a duplicate of this descriptor; the last holder closes the socket.
    let listener = Arc::new(listener);
    let rendezvous = Rendezvous {
        partitions_registered: Barrier::default(),
        listening: Barrier::default(),
        drained: Barrier::default(),
        failed: Arc::new(AtomicUsize::new(0)),
        listen,
        kafka: kafka.clone(),
        admission,
        progress: StartupProgress::new(shard_count),
        readiness: Arc::new(Readiness::new(shard_count, started)),
        admin: admin_listener.as_ref().map(|(_, bound)| *bound),
        started,
        cluster: cluster::ClusterHandle::shared_state(config.cluster.is_cluster_mode()),
        certificates,
        peer_security,
        credentials,
        authorizer,
    };

    // Handlers report the address clients reach (DescribeCluster), not a configured port 0.
    config.listen = listen;
    if let (Some(kafka_config), Some(kafka)) = (&mut config.kafka, &kafka) {
        kafka_config.listen = kafka.config.listen;
    }
    let config = Arc::new(config);
    let mesh_builder = MeshBuilder::<Envelope<Services>, _>::full(
        shard_count,
        config.limits.cross_shard_queue_depth,
    );
    let mut handles = Vec::with_capacity(shard_count);
    for index in 0..shard_count {
        let (placement, core) = match &config.placement {
            ShardPlacement::Pinned(cores) => (Placement::Fixed(cores[index]), Some(cores[index])),
            ShardPlacement::Unpinned(_) => (Placement::Unbound, None),
        };
        let config = config.clone();
        let catalog = catalog.clone();
        let mesh_builder = mesh_builder.clone();
        let shutdown = shutdown.clone();
        let rendezvous = rendezvous.clone();
        let listener = listener.clone();
        let kafka_listener = kafka_listener
            .as_ref()
            .map(|(listener, _)| listener.clone());
        let admin_listener = admin_listener
            .as_ref()
            .map(|(listener, _)| listener.clone());
        let handle = LocalExecutorBuilder::new(placement)
            .name(&format!("shard-{index}"))
            .io_memory(config.limits.io_memory_bytes)
            .spawn(move || async move {
                let shard = StartingShard {
                    spawn_index: index,
                    core,
                    listener,
                    kafka_listener,
                    admin_listener,
                };
                run_shard(config, catalog, mesh_builder, shutdown, rendezvous, shard).await
            })
            .map_err(|error| ServerError::ShardStart {
                shard: index,
                message: error.to_string(),
            })?;
        handles.push(handle);
    }

    // Every shard holds its duplicate of the listener once this barrier is passed.
    let shards_started = || {
        rendezvous.listening.arrived.load(Ordering::SeqCst)
            + rendezvous.failed.load(Ordering::SeqCst)
    };
    let mut watchdog = progress::Watchdog::new(
        rendezvous.progress.clone(),
        Duration::from_millis(STARTUP_REPORT_INTERVAL_MS),
    );
    while shards_started() < shard_count && !shutdown.is_requested() {
        std::thread::sleep(Duration::from_millis(BARRIER_POLL_INTERVAL_MS));
        watchdog.report_if_slow();
    }
    drop(listener);
    drop(kafka_listener);
    drop(admin_listener);
    if rendezvous.listening.arrived.load(Ordering::SeqCst) == shard_count {
        rendezvous.readiness.serving();
        let readiness = rendezvous.readiness.report();
        // "All partitions open" follows (or came first) once every shard opened its own.
        let kafka_address = kafka
            .as_ref()
            .map_or("none".to_string(), |kafka| kafka.config.listen.to_string());
        let admin_address = rendezvous
            .admin
            .map_or("none".to_string(), |address| address.to_string());
        tracing::info!(
            address = %listen,
            kafka_address = %kafka_address,
            admin_address = %admin_address,
            shards = shard_count,
            partitions = readiness.partitions_total,
            opened = readiness.partitions_opened,
            offline = readiness.partitions_offline,
            opening = readiness.partitions_opening(),
            serving_after_ms = ?readiness.serving_after_ms,
            "broker ready: serving; partitions still opening are waited for by requests"
        );
    }

    let mut failure = None;
    for (index, handle) in handles.into_iter().enumerate() {
        let outcome = match handle.join() {
            Ok(Ok(())) => continue,
            Ok(Err(error)) => error,
            Err(error) => ServerError::Shard {
                shard: index,
                message: error.to_string(),
            },
        };
        tracing::error!(shard = index, error = %outcome, "shard stopped with an error");
        // One failed shard stops the others: a partial broker would answer for partitions it
        // cannot serve.
        shutdown.request();
        failure.get_or_insert(outcome);
    }
    match failure {
        Some(error) => Err(error),
        None => {
            tracing::info!("broker stopped cleanly");
            Ok(())
        }
    }
}

/// Who a shard thread is before it joins the mesh: the index it was spawned with (the mesh
/// assigns its own ids, in executor order), the core it is pinned to, and the broker's listening
/// sockets, native and Kafka (each dropped once the shard holds its own duplicate).
struct StartingShard {
    spawn_index: usize,
    core: Option<usize>,
    listener: Arc<socket2::Socket>,
    kafka_listener: Option<Arc<socket2::Socket>>,
    /// The admin HTTP listener; only shard 0 serves it (see `admin`).
    admin_listener: Option<Arc<socket2::Socket>>,
}

/// Joins the cross-shard mesh while a timer wakes this executor every few milliseconds.
///
/// Why the timer: glommio 0.9 wakes a task waiting on a foreign channel either by an eventfd write
/// from the peer or by its own reactor's next turn. The join's rendezvous relies on the former
/// alone; a shard with nothing else to do that missed it would sleep forever (a start-up hang was
/// seen once in CI, at this point or the next). A reactor turn re-checks every foreign channel,
/// so a periodic timer bounds any such stall to one tick instead.
async fn join_mesh(
    mesh_builder: MeshBuilder<Envelope<Services>, glommio::channels::channel_mesh::Full>,
) -> glommio::Result<
    (
        glommio::channels::channel_mesh::Senders<Envelope<Services>>,
        glommio::channels::channel_mesh::Receivers<Envelope<Services>>,
    ),
    (),
> {
    let ticker = async {
        loop {
            glommio::timer::sleep(Duration::from_millis(BARRIER_POLL_INTERVAL_MS)).await;
        }
    };
    future::or(mesh_builder.join(), ticker).await
}

async fn run_shard(
    config: Arc<Config>,
    catalog: Arc<Catalog>,
    mesh_builder: MeshBuilder<Envelope<Services>, glommio::channels::channel_mesh::Full>,
    shutdown: ShutdownFlag,
    rendezvous: Rendezvous,
    starting: StartingShard,
) -> Result<(), ServerError> {
    let failed = rendezvous.failed.clone();
    let outcome = serve_shard(
        config,
        catalog,
        mesh_builder,
        shutdown.clone(),
        rendezvous,
        starting,
    )
    .await;
    if outcome.is_err() {
        // Wake the main thread and the peers: this broker cannot run without this shard.
        failed.fetch_add(1, Ordering::SeqCst);
        shutdown.request();
    }
    outcome
}

async fn serve_shard(
    config: Arc<Config>,
    catalog: Arc<Catalog>,
    mesh_builder: MeshBuilder<Envelope<Services>, glommio::channels::channel_mesh::Full>,
    shutdown: ShutdownFlag,
    rendezvous: Rendezvous,
    StartingShard {
        spawn_index,
        core,
        listener,
        kafka_listener,
        admin_listener,
    }: StartingShard,
) -> Result<(), ServerError> {
    spate_metrics::set_enabled(config.metrics);
    let shard_count = config.placement.shard_count();
    let progress = rendezvous.progress.clone();
    progress.enter(spawn_index, StartupStep::JoiningMesh);
    let (senders, receivers) =
        join_mesh(mesh_builder)
            .await
            .map_err(|error| ServerError::ShardStart {
                shard: spawn_index,
                message: format!("cross-shard mesh: {error}"),
            })?;
    let mesh = Mesh::new(senders);
    let id = mesh.shard_id();
    let shard_error = |message: String| ServerError::Shard { shard: id, message };

    progress.enter(spawn_index, StartupStep::PreparingStorage);
    let direct = crate::storage::DmaFileSystem::for_data_dir(&config.data_dir)
        .await
        .map_err(|error| shard_error(format!("storage: {error}")))?;
    let open_files_max = open_files_per_shard_max(&config.limits, config.placement.shard_count());
    tracing::debug!(shard = id, open_files_max, "open-file cache");
    let file_system = crate::storage::CachedFileSystem::new(direct, open_files_max);
    let clock: Rc<dyn crate::storage::Clock> = Rc::new(crate::storage::SystemClock);
    let position = ShardPosition { id, shard_count };
    let shard = Shard::new(
        position,
        config.limits.shard_limits(),
        catalog,
        Rc::new(file_system),
        clock,
        shutdown.clone(),
        rendezvous.readiness.clone(),
    );
    let services = Services::new(
        shard.clone(),
        config.clone(),
        mesh,
        rendezvous.cluster.clone(),
        SharedSecurity {
            credentials: rendezvous.credentials.clone(),
            authorizer: rendezvous.authorizer.clone(),
            failed_authentications: rendezvous.admission.failed_authentications().clone(),
            peer_security: rendezvous.peer_security.clone(),
        },
    );
    services.mesh().spawn_receivers(receivers, &services);
    // Shard 0 serves the admin listener from here on, so probes see the start-up (503 until
    // ready); the other shards drop their reference to it.
    let admin = match (admin_listener, rendezvous.admin) {
        (Some(admin_listener), Some(address)) if id == 0 => {
            let admin_listener = duplicate_listener(admin_listener, address)?;
            let mut listeners = vec![("native", rendezvous.listen), ("admin", address)];
            if let Some(kafka) = &rendezvous.kafka {
                listeners.push(("kafka", kafka.config.listen));
            }
            let context = Rc::new(admin::AdminContext {
                readiness: rendezvous.readiness.clone(),
                listeners,
                started: rendezvous.started,
            });
            Some(glommio::spawn_local(admin::serve(
                services.clone(),
                admin_listener,
                rendezvous.certificates.admin.clone(),
                context,
            )))
        }
        _ => None,
    };

    progress.enter(spawn_index, StartupStep::RegisteringPartitions);
    let owned = shard.register_owned_partitions();
    // Opened while the shard serves: a request for a partition not open yet waits for it. One
    // that cannot be opened is offline, not a failure of the shard.
    let opening = glommio::spawn_local(shard.clone().open_registered_partitions());
    progress.enter(spawn_index, StartupStep::WaitingForPeersToRegister);
    rendezvous
        .partitions_registered
        .arrive_and_wait(shard_count, &shutdown)
        .await;
    progress.enter(spawn_index, StartupStep::Binding);
    let listener = duplicate_listener(listener, rendezvous.listen)?;
    let kafka_listener = match (kafka_listener, &rendezvous.kafka) {
        (Some(kafka_listener), Some(kafka)) => {
            Some(duplicate_listener(kafka_listener, kafka.config.listen)?)
        }
        _ => None,
    };
    tracing::info!(
        shard = id,
        core = ?core,
        partitions = owned,
        address = %rendezvous.listen,
        kafka_address = %rendezvous
            .kafka
            .as_ref()
            .map_or("none".to_string(), |kafka| kafka.config.listen.to_string()),
        "shard listening"
    );
    progress.enter(spawn_index, StartupStep::Listening);
    rendezvous
        .listening
        .arrive_and_wait(shard_count, &shutdown)
        .await;

    // Cluster mode: the metadata quorum forms (or is rejoined) while the broker already serves
    // its listeners (a seed learning the others' ids asks them over those listeners).
    if id == cluster::DRIVER_SHARD && services.cluster.is_cluster_mode() {
        cluster::start(services.clone(), rendezvous.kafka.clone());
    }
    // Transactions decided before a restart are finished, and open ones time out, even if no
    // producer of them comes back.
    glommio::spawn_local(txn::coordinator::start(services.clone())).detach();
    let retention = glommio::spawn_local(shard.clone().run_retention());
    let compaction = shard.spawn_compaction();
    let recovery_points = glommio::spawn_local(shard.clone().run_recovery_points());
    let written_syncs = glommio::spawn_local(shard.clone().run_written_syncs());
    let connections = Gate::new();
    let logs = Rc::new(connection::ConnectionLogs {
        write_timeouts: std::cell::RefCell::new(LogThrottle::new(Duration::from_millis(
            ACCEPT_LOG_INTERVAL_MS,
        ))),
    });
    let native = accept_until_shutdown(
        &services,
        &listener,
        rendezvous.certificates.native.clone(),
        &connections,
        &rendezvous.admission,
        &logs,
        {
            let mechanisms: Arc<[auth::SaslMechanism]> = config.sasl_mechanisms.clone().into();
            let session_lifetime = session_lifetime(&config.limits);
            move |peer: &connection::ConnectionPeer| {
                let session = auth::Session::new(mechanisms.clone(), peer.address)
                    .with_session_lifetime(session_lifetime);
                session.use_transport_principal(peer.tls_principal.as_deref());
                handlers::Native::new(session)
            }
        },
    );
    match (&kafka_listener, &rendezvous.kafka) {
        (Some(kafka_listener), Some(kafka)) => {
            let kafka = kafka.clone();
            let kafka_connections = accept_until_shutdown(
                &services,
                kafka_listener,
                rendezvous.certificates.kafka.clone(),
                &connections,
                &rendezvous.admission,
                &logs,
                {
                    let session_lifetime = session_lifetime(&config.limits);
                    move |peer: &connection::ConnectionPeer| {
                        kafka::Kafka::new(kafka.clone(), peer, session_lifetime)
                    }
                },
            );
            future::zip(native, kafka_connections).await;
        }
        _ => native.await,
    }
    drop(listener);
    drop(kafka_listener);
    // Partitions not opened by now stay closed (untouched on disk); those opening finish below.
    shard.stop_opening();
    tracing::info!(
        shard = id,
        "stopped accepting; finishing in-flight requests"
    );

    let grace = Duration::from_millis(config.limits.shutdown_grace_ms);
    // Every shard spends at most `grace` on its connections, so all arrive at the drained step
    // within `grace` of the first; twice that bounds the wait for a shard that died meanwhile.
    let drained_deadline = Instant::now() + 2 * grace;
    if glommio::timer::timeout(grace, async {
        let _ = connections.close().await;
        Ok(())
    })
    .await
    .is_err()
    {
        tracing::warn!(
            shard = id,
            "grace period over; closing remaining connections"
        );
    }
    shard.budget.close();
    let all_drained = rendezvous
        .drained
        .arrive_and_wait_for_peers(shard_count, &rendezvous.failed, drained_deadline)
        .await;
    if !all_drained {
        tracing::warn!(
            shard = id,
            "peers did not finish their connections in time; closing anyway"
        );
    }
    if let Some(admin) = admin {
        admin.await;
    }
    retention.await;
    compaction.await;
    recovery_points.await;
    written_syncs.await;
    opening.await;
    shard.close_partitions().await;
    // Peers still calling this shard get `ShardStopping` rather than waiting forever.
    services.mesh().stop().await;
    Ok(())
}

/// How long a SASL authentication lasts on every listener (`connections_max_reauth_ms`).
fn session_lifetime(limits: &crate::config::Limits) -> Option<Duration> {
    (limits.connections_max_reauth_ms > 0)
        .then(|| Duration::from_millis(limits.connections_max_reauth_ms))
}

/// The shard's own descriptor of a listening socket shared by every shard.
fn duplicate_listener(
    listener: Arc<socket2::Socket>,
    address: SocketAddr,
) -> Result<TcpListener, ServerError> {
    let duplicate = listener
        .as_fd()
        .try_clone_to_owned()
        .map_err(|source| ServerError::Listen { address, source })?;
    drop(listener);
    // SAFETY: the descriptor is a fresh duplicate of the listening socket, handed over whole.
    Ok(unsafe { TcpListener::from_raw_fd(duplicate.into_raw_fd()) })
}

/// Accepts on one listener until shutdown; each connection speaks the dialect `dialect` makes
/// for its peer. Every listener's connections count against the same admission limits.
async fn accept_until_shutdown<D: connection::Dialect>(
    shard: &Rc<Services>,
    listener: &TcpListener,
    certificates: Option<Arc<tls::ListenerCertificates>>,
    connections: &Gate,
    admission: &Arc<Admission>,
    logs: &Rc<connection::ConnectionLogs>,
    make_dialect: impl Fn(&connection::ConnectionPeer) -> D + Clone + 'static,
) {
    let log_interval = Duration::from_millis(ACCEPT_LOG_INTERVAL_MS);
    let mut failures = LogThrottle::new(log_interval);
    let mut refusals = LogThrottle::new(log_interval);
    let mut pause = None;
    loop {
        let accepted = future::or(async { Some(listener.accept().await) }, async {
            shard.shutdown.requested().await;
            None
        })
        .await;
        let stream = match accepted {
            None => return,
            Some(Ok(stream)) => {
                pause = None;
                stream
            }
            Some(Err(error)) => {
                // EMFILE and friends: back off instead of spinning on a failing accept; the
                // descriptors kept back (file_descriptors_reserved) keep files and clients going.
                let next = accept_backoff(pause);
                pause = Some(next);
                if let Some(suppressed) = failures.due(Instant::now()) {
                    tracing::warn!(
                        shard = shard.id,
                        %error,
                        pause_ms = next.as_millis() as u64,
                        suppressed,
                        "accept failed; pausing accepts"
                    );
                }
                future::or(glommio::timer::sleep(next), shard.shutdown.requested()).await;
                continue;
            }
        };
        let address = stream
            .peer_addr()
            .ok()
            .map(|address| address.ip())
            .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
        let admitted = match admission.admit(address) {
            Ok(admitted) => admitted,
            Err(refusal) => {
                match refusal.is_first_of_its_window() {
                    // Once per address per window, whatever the other refusals logged.
                    Some(true) => tracing::warn!(shard = shard.id, %refusal, "connection refused"),
                    Some(false) => {}
                    None => {
                        if let Some(suppressed) = refusals.due(Instant::now()) {
                            tracing::warn!(shard = shard.id, %refusal, suppressed, "connection refused");
                        }
                    }
                }
                // Closed at once: the client sees the refusal instead of waiting in the backlog.
                drop(stream);
                continue;
            }
        };
        let shard = shard.clone();
        let logs = logs.clone();
        let certificates = certificates.clone();
        let make_dialect = make_dialect.clone();
        let spawned = connections.spawn(async move {
            connection::serve(shard, stream, certificates, logs, make_dialect).await;
            drop(admitted);
        });
        if let Ok(task) = spawned {
            task.detach();
        }
    }
}

/// The open-file cache's limit per shard: the configured one, else a share of the descriptor
/// limit (RLIMIT_NOFILE, read when the shard starts, so after the raise at start-up).
fn open_files_per_shard_max(limits: &crate::config::Limits, shard_count: usize) -> usize {
    // `None` is RLIM_INFINITY.
    let descriptors_max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    open_files_per_shard(limits, shard_count, descriptors_max)
}

/// The open-file cache's limit per shard under a descriptor limit of `descriptors_max`.
fn open_files_per_shard(
    limits: &crate::config::Limits,
    shard_count: usize,
    descriptors_max: u64,
) -> usize {
    limits.open_files_per_shard_max.unwrap_or_else(|| {
        crate::storage::file_cache::open_files_per_shard(descriptors_max, shard_count)
    })
}
