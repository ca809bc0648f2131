//! Every setting and limit of the metadata quorum in one place: [`MetadataConfig`] (per broker,
//! chosen by the operator) and the image limits (constants: every node of one version must apply
//! the same command the same way, so nothing that decides an apply outcome may differ between
//! brokers).

/// Settings of one broker's metadata node. The defaults are the ones REPL.md names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetadataConfig {
    /// How often the driver calls `MetadataNode::tick`.
    pub tick_ms: u64,
    /// Ticks without a leader before a follower starts an election (raft-rs randomises it
    /// in `[election_ticks, 2 * election_ticks)`).
    pub election_ticks: usize,
    /// Ticks between the leader's heartbeats. Less than `election_ticks`.
    pub heartbeat_ticks: usize,
    /// A broker not heard from for this long is fenced by the controller.
    pub broker_session_timeout_ms: u64,
    /// Applied entries between two snapshots (each snapshot lets the log be cut).
    pub snapshot_every_entries: u64,
    /// Largest encoded command (one Raft entry) a proposal may carry.
    pub entry_bytes_max: usize,
    /// Bytes of proposed but not yet committed entries the leader accepts (raft-rs
    /// `max_uncommitted_size`); beyond it proposals are dropped (retriable).
    pub uncommitted_bytes_max: usize,
    /// Append messages in flight to one follower (raft-rs `max_inflight_msgs`).
    pub max_inflight_messages: usize,
    /// Entry bytes in one append message (raft-rs `max_size_per_msg`).
    pub message_entries_bytes_max: usize,
    /// Largest inbound Raft message `step` decodes (a snapshot carries the whole image).
    pub message_bytes_max: usize,
    /// Largest snapshot (encoded image) a node writes or accepts.
    pub snapshot_bytes_max: usize,
    /// Largest entries file read at start-up; a bigger one is refused rather than read into
    /// memory (snapshots keep it near `snapshot_every_entries` entries).
    pub log_file_bytes_max: u64,
    /// Commands the controller re-proposes only after this long without seeing them applied.
    pub controller_retry_ms: u64,
    /// How often the controller gives leadership back to each partition's preferred replica
    /// (its first) where that replica is live and in sync, as Kafka's
    /// `auto.leader.rebalance.enable` does every `leader.imbalance.check.interval.seconds`:
    /// after a broker restarts, the leaderships it lost come back instead of piling up on the
    /// survivors. 0 turns it off.
    pub leader_balance_interval_ms: u64,
    /// Seeds the node's randomized election timeouts (mixed with its id): any value works in a
    /// broker; a simulation passes its case seed to be reproducible.
    pub election_seed: u64,
}

impl Default for MetadataConfig {
    fn default() -> Self {
        Self {
            tick_ms: 100,
            election_ticks: 10,
            heartbeat_ticks: 2,
            broker_session_timeout_ms: 1500,
            snapshot_every_entries: 10_000,
            entry_bytes_max: 1024 * 1024,
            uncommitted_bytes_max: 16 * 1024 * 1024,
            max_inflight_messages: 256,
            message_entries_bytes_max: 1024 * 1024,
            // The native RaftMessage's limit per Raft message (spate-protocol's
            // RAFT_MESSAGE_BYTES_MAX): a snapshot must fit in one.
            message_bytes_max: 16 * 1024 * 1024,
            snapshot_bytes_max: 15 * 1024 * 1024,
            log_file_bytes_max: 1024 * 1024 * 1024,
            controller_retry_ms: 1000,
            leader_balance_interval_ms: 30_000,
            election_seed: 0,
        }
    }
}

impl MetadataConfig {
    /// The shortest election timeout: a follower waits at least this long without a leader.
    pub fn election_timeout_ms(&self) -> u64 {
        self.tick_ms * self.election_ticks as u64
    }

    /// Refuses settings raft-rs or the controller cannot work with.
    pub fn validate(&self) -> Result<(), String> {
        if self.tick_ms == 0 {
            return Err("tick_ms must be positive".into());
        }
        if self.heartbeat_ticks == 0 || self.heartbeat_ticks >= self.election_ticks {
            return Err(format!(
                "heartbeat_ticks ({}) must be in 1..election_ticks ({})",
                self.heartbeat_ticks, self.election_ticks
            ));
        }
        if self.broker_session_timeout_ms <= self.election_timeout_ms() {
            return Err(format!(
                "broker_session_timeout_ms ({}) must exceed the election timeout ({} ms): \
                 otherwise a new controller fences brokers it has not had time to hear",
                self.broker_session_timeout_ms,
                self.election_timeout_ms()
            ));
        }
        if self.snapshot_every_entries == 0 {
            return Err("snapshot_every_entries must be positive".into());
        }
        if self.max_inflight_messages == 0 {
            return Err("max_inflight_messages must be positive".into());
        }
        if self.entry_bytes_max == 0
            || self.entry_bytes_max > self.uncommitted_bytes_max
            || self.entry_bytes_max > self.message_bytes_max
        {
            return Err(format!(
                "entry_bytes_max ({}) must be positive and at most uncommitted_bytes_max ({}) \
                 and message_bytes_max ({})",
                self.entry_bytes_max, self.uncommitted_bytes_max, self.message_bytes_max
            ));
        }
        if self.snapshot_bytes_max >= self.message_bytes_max {
            return Err(format!(
                "snapshot_bytes_max ({}) must be below message_bytes_max ({}): a snapshot \
                 travels in one message",
                self.snapshot_bytes_max, self.message_bytes_max
            ));
        }
        Ok(())
    }
}

/// Limits of the image itself. Constants, not settings: an apply outcome may not depend on a
/// broker's configuration.
pub mod limits {
    /// Brokers the image registers.
    pub const BROKERS_MAX: usize = 10_000;
    /// Topics the image holds.
    pub const TOPICS_MAX: usize = 100_000;
    /// Partitions of one topic (the wire protocol's limit).
    pub const PARTITIONS_PER_TOPIC_MAX: u32 =
        spate_protocol::constants::PARTITIONS_PER_TOPIC_MAX as u32;
    /// Replicas of one partition.
    pub const REPLICATION_FACTOR_MAX: usize = 64;
    /// Bytes of a cluster id.
    pub const CLUSTER_ID_BYTES_MAX: usize = 64;
    /// Bytes of a host name or rack name.
    pub const HOST_BYTES_MAX: usize = 255;
    /// Config entries of one topic.
    pub const TOPIC_CONFIG_ENTRIES_MAX: usize = spate_protocol::constants::CONFIG_ENTRIES_MAX;
    /// Bytes of a config name.
    pub const CONFIG_NAME_BYTES_MAX: usize = spate_protocol::constants::CONFIG_NAME_BYTES_MAX;
    /// Bytes of a config value.
    pub const CONFIG_VALUE_BYTES_MAX: usize = 4096;
    /// Producer ids one `AllocateProducerIds` hands out.
    pub const PRODUCER_ID_BLOCK_MAX: u32 = 1_000_000;
    /// Partitions one `ElectPreferredLeaders` names.
    pub const ELECTION_PARTITIONS_MAX: usize = 100_000;
    /// Replicas the default replication factor asks for (Kafka's `default.replication.factor`
    /// analog: `min(3, active brokers)`).
    pub const DEFAULT_REPLICATION_FACTOR_MAX: usize = 3;
    /// Users with SCRAM credentials (a user with both mechanisms is about 500 bytes of
    /// snapshot, so these fit well within `snapshot_bytes_max` beside the topics).
    pub const USERS_MAX: usize = 10_000;
    /// ACL bindings (about 150 bytes of snapshot each).
    pub const ACL_BINDINGS_MAX: usize = 20_000;
    /// Bytes of a SCRAM salt (clients send 16 to 64).
    pub const SCRAM_SALT_BYTES_MAX: usize = 1024;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_is_valid() {
        MetadataConfig::default().validate().unwrap();
    }

    #[test]
    fn session_timeout_under_the_election_timeout_is_refused() {
        let config = MetadataConfig {
            broker_session_timeout_ms: 900,
            ..MetadataConfig::default()
        };
        assert!(config.validate().is_err());
    }
}
