//! Every bound of the group coordinator, in one place, with its default.
//!
//! The coordinator reads only [`GroupLimits`]; nothing else in `group` invents a bound. Relations
//! between the defaults are pinned by `const` assertions; [`GroupLimits::check`] does the same for
//! values that come from elsewhere. The broker configuration (`config::Config::groups`) sets them
//! from its file, flags and `SPATE_*` environment (the `group_*`/`offsets_*` settings, named in
//! [`GroupLimits::check`]'s errors) and hands each shard's coordinator a copy.

use std::time::Duration;

/// Name of the broker's own topic that stores committed offsets and group metadata. The `__`
/// prefix marks it internal, as in Kafka.
pub const OFFSETS_TOPIC_NAME: &str = "__consumer_offsets";

/// Defaults of [`GroupLimits`].
pub mod defaults {
    /// Partitions of the offsets topic. A group's state lives in partition
    /// `hash(group) % partitions`, coordinated by shard `partition % shards`: a multiple of the
    /// usual shard counts spreads groups evenly.
    pub const OFFSETS_TOPIC_PARTITIONS: u32 = 16;
    /// Segment size of the offsets topic: small, because compaction (snapshot, then deleting
    /// the records before it) frees whole segments only.
    pub const OFFSETS_TOPIC_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
    /// Shortest session timeout a member may ask for. Lower than Kafka's 6 s: a heartbeat costs
    /// one small request here, and tests use short sessions.
    pub const SESSION_TIMEOUT_MS_MIN: u32 = 100;
    /// Longest session timeout a member may ask for (Kafka's default maximum).
    pub const SESSION_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;
    /// Longest rebalance timeout honoured; longer requests are capped.
    pub const REBALANCE_TIMEOUT_MS_MAX: u32 = 30 * 60 * 1000;
    /// How long the first rebalance of an empty group waits for more members to arrive before
    /// it completes (each new member extends it, up to the rebalance timeout), so that members
    /// started together land in one generation instead of one rebalance each.
    pub const INITIAL_REBALANCE_DELAY_MS: u64 = 300;
    /// Groups one shard coordinates (with members or only with committed offsets).
    pub const GROUPS_PER_SHARD_MAX: usize = 10_000;
    /// Members (joined or holding an assigned member id) of one group.
    pub const MEMBERS_PER_GROUP_MAX: usize = 1_000;
    /// Longest metadata string stored with a committed offset (Kafka's default).
    pub const OFFSET_METADATA_BYTES_MAX: usize = 4096;
    /// Largest record batch the coordinator writes to the offsets topic; a snapshot that does
    /// not fit is written as several.
    pub const WRITE_BATCH_BYTES_MAX: usize = 1024 * 1024;
    /// Writes (commits, group changes) waiting for one offsets partition's writer; more wait
    /// to be queued.
    pub const WRITES_QUEUED_MAX: usize = 4096;
    /// How long one write to the offsets topic may wait to be committed (Kafka's
    /// `offsets.commit.timeout.ms`): on a replicated offsets partition an acks=all write waits
    /// for the in-sync replicas at most this long, then the commit fails (retriable).
    pub const WRITE_TIMEOUT_MS: u64 = 5_000;
    /// Bytes asked for per read while replaying an offsets partition.
    pub const REPLAY_READ_BYTES: usize = 1024 * 1024;
    /// How often each shard's coordinator checks its groups' deadlines (sessions, rebalances):
    /// the precision of every group timeout.
    pub const TIMER_TICK_MS: u64 = 10;
    /// Tries, and the pause between them, while a newly created offsets partition is not open
    /// on its owner yet.
    pub const LOAD_TRIES_MAX: u32 = 50;
    pub const LOAD_RETRY_INTERVAL_MS: u64 = 20;
}

const _: () = assert!(
    crate::catalog::is_internal_topic(OFFSETS_TOPIC_NAME),
    "clients must not be able to create, delete, alter or write the offsets topic"
);
const _: () = assert!(defaults::SESSION_TIMEOUT_MS_MIN <= defaults::SESSION_TIMEOUT_MS_MAX);
const _: () = assert!(defaults::OFFSETS_TOPIC_PARTITIONS > 0);
const _: () = assert!(defaults::TIMER_TICK_MS < defaults::SESSION_TIMEOUT_MS_MIN as u64);
const _: () = assert!(
    defaults::WRITE_BATCH_BYTES_MAX <= spate_protocol::constants::BATCH_BYTES_MAX,
    "coordinator batches must be acceptable to the log"
);
const _: () = assert!(
    defaults::OFFSET_METADATA_BYTES_MAX + 2 * spate_protocol::constants::GROUP_ID_BYTES_MAX
        < defaults::WRITE_BATCH_BYTES_MAX,
    "one committed offset record always fits in a coordinator batch"
);

/// The coordinator's bounds; see [`defaults`] for what each means.
/// Room one committed offset record needs in a batch beyond its metadata (key, record and batch
/// headers, fields): `write_batch_bytes_max` must hold `offset_metadata_bytes_max` plus this.
pub const OFFSET_RECORD_OVERHEAD_BYTES: usize = 4 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupLimits {
    pub offsets_topic_partitions: u32,
    pub offsets_topic_segment_bytes: u64,
    pub session_timeout_ms_min: u32,
    pub session_timeout_ms_max: u32,
    pub rebalance_timeout_ms_max: u32,
    pub initial_rebalance_delay_ms: u64,
    pub groups_per_shard_max: usize,
    pub members_per_group_max: usize,
    pub offset_metadata_bytes_max: usize,
    pub write_batch_bytes_max: usize,
    pub writes_queued_max: usize,
    pub replay_read_bytes: usize,
    pub timer_tick_ms: u64,
    pub load_tries_max: u32,
    pub load_retry_interval_ms: u64,
    pub write_timeout_ms: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        Self {
            offsets_topic_partitions: defaults::OFFSETS_TOPIC_PARTITIONS,
            offsets_topic_segment_bytes: defaults::OFFSETS_TOPIC_SEGMENT_BYTES,
            session_timeout_ms_min: defaults::SESSION_TIMEOUT_MS_MIN,
            session_timeout_ms_max: defaults::SESSION_TIMEOUT_MS_MAX,
            rebalance_timeout_ms_max: defaults::REBALANCE_TIMEOUT_MS_MAX,
            initial_rebalance_delay_ms: defaults::INITIAL_REBALANCE_DELAY_MS,
            groups_per_shard_max: defaults::GROUPS_PER_SHARD_MAX,
            members_per_group_max: defaults::MEMBERS_PER_GROUP_MAX,
            offset_metadata_bytes_max: defaults::OFFSET_METADATA_BYTES_MAX,
            write_batch_bytes_max: defaults::WRITE_BATCH_BYTES_MAX,
            writes_queued_max: defaults::WRITES_QUEUED_MAX,
            replay_read_bytes: defaults::REPLAY_READ_BYTES,
            timer_tick_ms: defaults::TIMER_TICK_MS,
            load_tries_max: defaults::LOAD_TRIES_MAX,
            load_retry_interval_ms: defaults::LOAD_RETRY_INTERVAL_MS,
            write_timeout_ms: defaults::WRITE_TIMEOUT_MS,
        }
    }
}

/// A refused [`GroupLimits`]: the broker setting at fault and why.
pub type GroupLimitsError = (&'static str, String);

impl GroupLimits {
    /// Refuses limits that contradict each other or would stop the coordinator from working.
    /// The error names the broker setting (`config`) that carries the faulty limit.
    pub fn check(&self) -> Result<(), GroupLimitsError> {
        let positive = [
            (
                "offsets_topic_partitions",
                self.offsets_topic_partitions as u64,
            ),
            ("groups_per_shard_max", self.groups_per_shard_max as u64),
            ("members_per_group_max", self.members_per_group_max as u64),
            (
                "group_write_batch_bytes_max",
                self.write_batch_bytes_max as u64,
            ),
            ("group_writes_queued_max", self.writes_queued_max as u64),
            ("replay_read_bytes", self.replay_read_bytes as u64),
            ("group_timer_tick_ms", self.timer_tick_ms),
        ];
        if let Some((setting, _)) = positive.iter().find(|(_, value)| *value == 0) {
            return Err((setting, "must be greater than zero".into()));
        }
        if self.session_timeout_ms_min > self.session_timeout_ms_max {
            return Err((
                "group_session_timeout_ms_min",
                format!(
                    "{} is above group_session_timeout_ms_max {}",
                    self.session_timeout_ms_min, self.session_timeout_ms_max
                ),
            ));
        }
        // The timer must tick within the shortest session, or a session could outlive its
        // timeout by a whole tick.
        if self.timer_tick_ms >= u64::from(self.session_timeout_ms_min) {
            return Err((
                "group_timer_tick_ms",
                format!(
                    "{} is not below group_session_timeout_ms_min {}",
                    self.timer_tick_ms, self.session_timeout_ms_min
                ),
            ));
        }
        if self.write_batch_bytes_max > spate_protocol::constants::BATCH_BYTES_MAX {
            return Err((
                "group_write_batch_bytes_max",
                format!(
                    "{} is above the largest batch the log accepts, {}",
                    self.write_batch_bytes_max,
                    spate_protocol::constants::BATCH_BYTES_MAX
                ),
            ));
        }
        if self.offset_metadata_bytes_max + OFFSET_RECORD_OVERHEAD_BYTES
            > self.write_batch_bytes_max
        {
            return Err((
                "group_write_batch_bytes_max",
                format!(
                    "{} cannot hold one committed offset record with offset_metadata_bytes_max {}",
                    self.write_batch_bytes_max, self.offset_metadata_bytes_max
                ),
            ));
        }
        Ok(())
    }

    pub fn timer_tick(&self) -> Duration {
        Duration::from_millis(self.timer_tick_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        assert_eq!(GroupLimits::default().check(), Ok(()));
    }

    #[test]
    fn contradicting_limits_are_refused() {
        let inverted = GroupLimits {
            session_timeout_ms_min: 10_000,
            session_timeout_ms_max: 1_000,
            ..GroupLimits::default()
        };
        assert!(inverted.check().is_err());
        let no_partitions = GroupLimits {
            offsets_topic_partitions: 0,
            ..GroupLimits::default()
        };
        assert!(no_partitions.check().is_err());
    }
}
