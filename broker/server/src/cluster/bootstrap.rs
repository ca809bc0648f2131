//! How a broker joins its cluster at start: the seeds' node ids (the metadata quorum's voters),
//! the metadata node's settings, and the broker's registration.
//!
//! Voters are the seeds. A broker whose metadata log is new asks every seed it does not know the
//! id of (native DescribeCluster v1 answers `node_id`) and waits until all answered, so that
//! every seed starts the quorum with the same voter set; a seed's own entry is recognised by its
//! advertised address (`--advertised`, else the bound listener), never asked. A broker that
//! already has a log does not wait: its voters are in its log, and a seed that is down (the
//! usual reason for a restart) must not hold it back: it opens its node after one pass, and
//! keeps asking the seeds that did not answer in the background, because until its log applies
//! (which needs a controller) a seed's answer is the only way it learns where that voter listens.
//!
//! Registration (RegisterBroker) carries a new incarnation at every start, larger than the last
//! (the start's wall-clock milliseconds): the controller fences the broker until it catches up,
//! so whatever the previous process led moves to a replica that did not restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::time::{Duration, Instant};

use spate_metadata::{MetadataCommand, MetadataConfig};
use spate_protocol::api::{ApiKey, DescribeClusterRequest};
use spate_protocol::NodeId;

use super::driver::Driver;
use crate::config::{Limits, Seed};
use crate::peer::{resolve, PeerConnection, PeerPool};
use crate::services::Services;

/// Directory under the data directory holding the metadata node's Raft log and snapshots.
pub const METADATA_DIRECTORY_NAME: &str = "metadata";

/// How often a broker still waiting for seeds says so.
const WAITING_REPORT_INTERVAL_MS: u64 = 10_000;

/// Pause between two registration attempts.
const REGISTER_RETRY_MS: u64 = 200;

/// What the seeds are: the voters (seed ids, sorted) and where each seed listens.
pub(super) struct Seeds {
    pub voters: Vec<NodeId>,
    pub addresses: BTreeMap<NodeId, (String, u16)>,
    /// Seeds that did not answer (a restart does not wait for them): [`keep_asking_seeds`]
    /// asks them until they do.
    pub unanswered: Vec<Seed>,
}

/// A new incarnation: this start's wall-clock milliseconds (larger than any earlier start's on
/// a sane clock; the controller refuses a smaller one as stale).
pub(super) fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |elapsed| elapsed.as_millis() as u64)
}

/// A new cluster id, in Kafka's text form (a random UUID, 22 characters of URL-safe base64), so
/// the same id serves the native protocol and Kafka's.
pub(super) fn new_cluster_id() -> String {
    crate::kafka::identity::new_cluster_id_text()
}

/// The metadata node's settings from the broker's limits.
pub(super) fn metadata_config(limits: &Limits) -> MetadataConfig {
    MetadataConfig {
        tick_ms: limits.metadata_tick_ms,
        election_ticks: limits.metadata_election_ticks,
        heartbeat_ticks: limits.metadata_heartbeat_ticks,
        broker_session_timeout_ms: limits.broker_session_timeout_ms,
        leader_balance_interval_ms: limits.leader_balance_interval_ms,
        snapshot_every_entries: limits.metadata_snapshot_every_entries,
        entry_bytes_max: limits.metadata_entry_bytes_max,
        uncommitted_bytes_max: limits.metadata_uncommitted_bytes_max,
        max_inflight_messages: limits.metadata_inflight_messages_max,
        election_seed: rand::random(),
        ..MetadataConfig::default()
    }
}

/// Whether the metadata node has a log already (a restart, not the cluster's first start).
async fn has_log(metadata_dir: &Path) -> bool {
    let directory = metadata_dir.to_path_buf();
    glommio::executor()
        .spawn_blocking(move || {
            std::fs::read_dir(&directory)
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false)
        })
        .await
}

/// The seeds' ids; see the module documentation. `None` when shutdown came first.
pub(super) async fn learn_seeds(
    services: &Rc<Services>,
    peers: &PeerPool,
    metadata_dir: &Path,
) -> Option<Seeds> {
    let config = &services.config;
    let own = config.cluster.advertised_native(config.listen);
    let own_address = resolve(config.cluster.node_id, &own.0, own.1).ok();
    let wait_for_all = !has_log(metadata_dir).await;
    let mut known: BTreeMap<usize, NodeId> = BTreeMap::new();
    for (index, seed) in config.cluster.seeds.iter().enumerate() {
        if let Some(id) = seed.id {
            known.insert(index, id);
        } else if is_own(seed, &own, own_address) {
            known.insert(index, config.cluster.node_id);
        }
    }
    let started = Instant::now();
    let mut reported = Instant::now();
    let mut last_errors: BTreeMap<usize, String> = BTreeMap::new();
    loop {
        for (index, seed) in config.cluster.seeds.iter().enumerate() {
            if known.contains_key(&index) {
                continue;
            }
            match ask_node_id(services, peers, seed).await {
                Ok(id) => {
                    tracing::info!(seed = %seed, node = id, "seed answered");
                    known.insert(index, id);
                }
                Err(error) => {
                    tracing::debug!(seed = %seed, %error, "seed did not answer yet");
                    // Kept for the waiting report: a refused TLS handshake or login is a
                    // configuration fault the operator must see, not a seed still starting.
                    last_errors.insert(index, error);
                }
            }
        }
        let all = known.len() == config.cluster.seeds.len();
        if all || !wait_for_all {
            break;
        }
        if services.shutdown.is_requested() {
            return None;
        }
        if reported.elapsed() >= Duration::from_millis(WAITING_REPORT_INTERVAL_MS) {
            reported = Instant::now();
            let missing: Vec<String> = config
                .cluster
                .seeds
                .iter()
                .enumerate()
                .filter(|(index, _)| !known.contains_key(index))
                .map(|(index, seed)| match last_errors.get(&index) {
                    Some(error) => format!("{seed} ({error})"),
                    None => seed.to_string(),
                })
                .collect();
            tracing::warn!(
                ?missing,
                waited_ms = started.elapsed().as_millis() as u64,
                "waiting for every seed to answer before the metadata quorum starts (all seeds must agree on the voters)"
            );
        }
        glommio::timer::sleep(Duration::from_millis(
            config.limits.cluster_bootstrap_retry_ms,
        ))
        .await;
    }
    let mut addresses = BTreeMap::new();
    let mut voters = Vec::new();
    for (index, id) in &known {
        let seed = &config.cluster.seeds[*index];
        if let Some(previous) = addresses.insert(*id, (seed.host.clone(), seed.port)) {
            tracing::error!(
                node = id,
                first = %format!("{}:{}", previous.0, previous.1),
                second = %seed,
                "two seeds answered with one node id: node ids must be unique; the second is ignored"
            );
            addresses.insert(*id, previous);
            continue;
        }
        voters.push(*id);
    }
    voters.sort_unstable();
    let unanswered = config
        .cluster
        .seeds
        .iter()
        .enumerate()
        .filter(|(index, _)| !known.contains_key(index))
        .map(|(_, seed)| seed.clone())
        .collect();
    Some(Seeds {
        voters,
        addresses,
        unanswered,
    })
}

/// Asks the seeds that did not answer at start until each has, adding each answer to the
/// driver's seed addresses, then returns (or at shutdown).
///
/// Why: a restarted broker's image is its last metadata snapshot (the commit index is not
/// durable, so the log past the snapshot applies only once a controller says it is committed),
/// and brokers registered since are unknown to it. After a whole-cluster restart the first
/// broker up found no seed answering; without this it could never send a vote to the brokers
/// started after it, nor answer theirs, and no controller was ever elected.
pub(super) async fn keep_asking_seeds(
    services: Rc<Services>,
    driver: Rc<Driver>,
    mut unanswered: Vec<Seed>,
) {
    while !unanswered.is_empty() && !services.shutdown.is_requested() {
        glommio::timer::sleep(Duration::from_millis(
            services.config.limits.cluster_bootstrap_retry_ms,
        ))
        .await;
        let mut still = Vec::new();
        for seed in unanswered {
            match ask_node_id(&services, driver.peers(), &seed).await {
                Ok(id) => {
                    tracing::info!(seed = %seed, node = id, "seed answered after the metadata node opened");
                    driver.learn_seed_address(id, (seed.host.clone(), seed.port));
                }
                Err(error) => {
                    tracing::debug!(seed = %seed, %error, "seed did not answer yet");
                    still.push(seed);
                }
            }
        }
        unanswered = still;
    }
}

fn is_own(seed: &Seed, own: &(String, u16), own_address: Option<SocketAddr>) -> bool {
    if seed.host == own.0 && seed.port == own.1 {
        return true;
    }
    match (own_address, resolve(-1, &seed.host, seed.port)) {
        (Some(own), Ok(seed)) => own == seed,
        _ => false,
    }
}

/// Asks one seed its node id (DescribeCluster v1).
async fn ask_node_id(
    services: &Rc<Services>,
    peers: &PeerPool,
    seed: &Seed,
) -> Result<NodeId, String> {
    let address = resolve(-1, &seed.host, seed.port).map_err(|error| error.to_string())?;
    let timeout_ms = services.config.limits.peer_connect_timeout_ms;
    let connection = PeerConnection::connect(
        address,
        &seed.host,
        peers.limits(),
        peers.security(),
        timeout_ms,
    )
    .await
    .map_err(|error| error.to_string())?;
    if connection.version_of(ApiKey::DescribeCluster) < Some(1) {
        return Err(format!(
            "{address} does not speak DescribeCluster v1 (an older build): it cannot be a seed"
        ));
    }
    let answer = connection
        .call(&DescribeClusterRequest {}, timeout_ms)
        .await
        .map_err(|error| error.to_string())?;
    if answer.node_id < 0 {
        return Err(format!("{address} answered node id {}", answer.node_id));
    }
    Ok(answer.node_id)
}

/// Registers this broker (its incarnation, advertised endpoints), retrying until the
/// controller applied it or the broker stops.
pub(super) async fn register(services: Rc<Services>, driver: Rc<Driver>, incarnation: u64) {
    let config = &services.config;
    let native = config.cluster.advertised_native(config.listen);
    let kafka = config.kafka.as_ref().map(|kafka| kafka.advertised());
    let started = Instant::now();
    loop {
        let command = MetadataCommand::RegisterBroker {
            id: config.cluster.node_id,
            incarnation,
            native: native.clone(),
            kafka: kafka.clone(),
            rack: None,
        };
        match driver.propose(&services, command).await {
            Ok(_) => {
                tracing::info!(
                    node = config.cluster.node_id,
                    incarnation,
                    after_ms = started.elapsed().as_millis() as u64,
                    "broker registered with the controller"
                );
                return;
            }
            Err(error) => {
                tracing::debug!(%error, "registration not applied yet; trying again");
            }
        }
        if services.shutdown.is_requested() {
            return;
        }
        glommio::timer::sleep(Duration::from_millis(REGISTER_RETRY_MS)).await;
    }
}

/// Producer ids one `AllocateProducerIds` asks for (Kafka's block size is 1000 too).
const PRODUCER_ID_BLOCK_COUNT: u32 = 1000;
/// Ask for the next block while fewer than this many ids are left, so InitProducerId rarely
/// waits on the controller.
const PRODUCER_ID_LOW_WATER: i64 = 500;
/// How often the broker checks whether it needs producer ids.
const PRODUCER_ID_CHECK_MS: u64 = 100;

/// Keeps this broker supplied with producer ids granted by the controller (unique across the
/// cluster, durable in the metadata log), until the broker stops.
pub(super) async fn supply_producer_ids(services: Rc<Services>, driver: Rc<Driver>) {
    let node = services.config.cluster.node_id;
    loop {
        if services.shutdown.is_requested() {
            return;
        }
        if services
            .catalog
            .producer_ids()
            .wants_block(PRODUCER_ID_LOW_WATER)
        {
            let command = MetadataCommand::AllocateProducerIds {
                broker: node,
                count: PRODUCER_ID_BLOCK_COUNT,
            };
            match driver.propose(&services, command).await {
                Ok(spate_metadata::ApplyOutcome::ProducerIds { first, count }) => {
                    tracing::debug!(first, count, "producer ids granted");
                    services.catalog.producer_ids().grant_block(first, count);
                    continue;
                }
                Ok(other) => tracing::error!(?other, "unexpected answer to a producer id request"),
                Err(error) => tracing::debug!(%error, "producer ids not granted yet"),
            }
        }
        glommio::timer::sleep(Duration::from_millis(PRODUCER_ID_CHECK_MS)).await;
    }
}
