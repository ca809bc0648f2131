//! Every bound of the transaction coordinator, in one place, with its default.
//!
//! The coordinator reads only [`TxnLimits`]; nothing else in `txn` invents a bound. The broker
//! configuration (`spate_server::config`) hands each shard's coordinator a copy.

use std::time::Duration;

/// Name of the broker's own topic that stores the transactions' states, as in Kafka. The `__`
/// prefix marks it internal: clients cannot write, delete or alter it.
pub const TRANSACTION_STATE_TOPIC_NAME: &str = "__transaction_state";

/// Defaults of [`TxnLimits`].
pub mod defaults {
    /// Partitions of the state topic (Kafka's `transaction.state.log.num.partitions` is 50; 16
    /// like the offsets topic: a multiple of the usual shard counts). A transactional id's state
    /// lives in partition `crc32c(id) % partitions`, coordinated by shard `partition % shards`.
    pub const STATE_TOPIC_PARTITIONS: u32 = 16;
    /// Segment size of the state topic: small, so that compaction has closed segments to clean.
    pub const STATE_TOPIC_SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
    /// Longest transaction timeout a producer may ask for (Kafka's
    /// `transaction.max.timeout.ms`); a longer one is refused with INVALID_TRANSACTION_TIMEOUT.
    pub const TRANSACTION_TIMEOUT_MS_MAX: i32 = 15 * 60 * 1000;
    /// A transactional id idle (no transaction open) this long is forgotten (Kafka's
    /// `transactional.id.expiration.ms`, 7 days): its state is removed with a tombstone.
    pub const TRANSACTIONAL_ID_EXPIRATION_MS: i64 = 7 * 24 * 60 * 60 * 1000;
    /// Longest transactional id accepted (Kafka has no bound beyond its string type; Kafka
    /// Streams' ids are an application id, a UUID and a task id).
    pub const TRANSACTIONAL_ID_BYTES_MAX: usize = 1024;
    /// Transactional ids one shard coordinates; a new one beyond it is refused
    /// (COORDINATOR_NOT_AVAILABLE, retriable) until ids expire.
    pub const TRANSACTIONAL_IDS_PER_SHARD_MAX: usize = 100_000;
    /// Partitions one transaction may hold (Kafka has no bound); beyond it AddPartitionsToTxn
    /// is refused (INVALID_REQUEST).
    pub const PARTITIONS_PER_TRANSACTION_MAX: usize = 10_000;
    /// Groups one transaction may add offsets for.
    pub const GROUPS_PER_TRANSACTION_MAX: usize = 1_000;
    /// How often each shard's coordinator looks for timed-out transactions (Kafka's
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` is 10 s): the precision of
    /// every transaction timeout.
    pub const TIMER_TICK_MS: u64 = 1_000;
    /// How long EndTxn waits for the markers of the transaction it decided before answering
    /// anyway (the outcome is durable once decided; Kafka answers before the markers, so a
    /// client's next request may get CONCURRENT_TRANSACTIONS until they are written).
    pub const END_WAIT_MS_MAX: u64 = 5_000;
    /// Pause between two rounds of markers for a decided transaction whose partitions did not
    /// all take them (offline, disk full, still opening): markers are retried until written.
    pub const MARKER_RETRY_INTERVAL_MS: u64 = 200;
    /// The pause doubles with each failed round up to this, so that a partition offline until
    /// an operator acts costs one try (and at most one warning per doubling) per interval.
    pub const MARKER_RETRY_INTERVAL_MS_MAX: u64 = 10_000;
    /// Bytes asked for per read while replaying a state partition.
    pub const REPLAY_READ_BYTES: usize = 1024 * 1024;
    /// Tries, and the pause between them, while a newly created state partition is not open
    /// on its owner yet.
    pub const LOAD_TRIES_MAX: u32 = 50;
    pub const LOAD_RETRY_INTERVAL_MS: u64 = 20;
    /// How long one write to the state topic may wait to be committed: on a replicated state
    /// partition an acks=all write waits for the in-sync replicas at most this long.
    pub const WRITE_TIMEOUT_MS: u64 = 5_000;
}

const _: () = assert!(
    spate_cluster::catalog::is_internal_topic(TRANSACTION_STATE_TOPIC_NAME),
    "clients must not be able to create, delete, alter or write the state topic"
);
const _: () = assert!(defaults::STATE_TOPIC_PARTITIONS > 0);
const _: () = assert!(defaults::MARKER_RETRY_INTERVAL_MS <= defaults::MARKER_RETRY_INTERVAL_MS_MAX);
const _: () = assert!(defaults::TRANSACTION_TIMEOUT_MS_MAX > 0);
const _: () = assert!(
    defaults::TIMER_TICK_MS < defaults::TRANSACTION_TIMEOUT_MS_MAX as u64,
    "the timer must be finer than the longest timeout"
);
const _: () = assert!(
    defaults::TRANSACTIONAL_ID_BYTES_MAX <= spate_protocol::constants::STRING_BYTES_MAX,
    "a transactional id fits the record layout's strings"
);

/// The coordinator's bounds; see [`defaults`] for what each means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnLimits {
    pub state_topic_partitions: u32,
    pub state_topic_segment_bytes: u64,
    pub transaction_timeout_ms_max: i32,
    pub transactional_id_expiration_ms: i64,
    pub transactional_ids_per_shard_max: usize,
    pub partitions_per_transaction_max: usize,
    pub groups_per_transaction_max: usize,
    pub timer_tick_ms: u64,
    pub end_wait_ms_max: u64,
    pub marker_retry_interval_ms: u64,
    pub marker_retry_interval_ms_max: u64,
    pub replay_read_bytes: usize,
    pub load_tries_max: u32,
    pub load_retry_interval_ms: u64,
    pub write_timeout_ms: u64,
}

impl Default for TxnLimits {
    fn default() -> TxnLimits {
        TxnLimits {
            state_topic_partitions: defaults::STATE_TOPIC_PARTITIONS,
            state_topic_segment_bytes: defaults::STATE_TOPIC_SEGMENT_BYTES,
            transaction_timeout_ms_max: defaults::TRANSACTION_TIMEOUT_MS_MAX,
            transactional_id_expiration_ms: defaults::TRANSACTIONAL_ID_EXPIRATION_MS,
            transactional_ids_per_shard_max: defaults::TRANSACTIONAL_IDS_PER_SHARD_MAX,
            partitions_per_transaction_max: defaults::PARTITIONS_PER_TRANSACTION_MAX,
            groups_per_transaction_max: defaults::GROUPS_PER_TRANSACTION_MAX,
            timer_tick_ms: defaults::TIMER_TICK_MS,
            end_wait_ms_max: defaults::END_WAIT_MS_MAX,
            marker_retry_interval_ms: defaults::MARKER_RETRY_INTERVAL_MS,
            marker_retry_interval_ms_max: defaults::MARKER_RETRY_INTERVAL_MS_MAX,
            replay_read_bytes: defaults::REPLAY_READ_BYTES,
            load_tries_max: defaults::LOAD_TRIES_MAX,
            load_retry_interval_ms: defaults::LOAD_RETRY_INTERVAL_MS,
            write_timeout_ms: defaults::WRITE_TIMEOUT_MS,
        }
    }
}

impl TxnLimits {
    /// Refuses limits that cannot work, naming the broker setting.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let positive = |setting: &'static str, value: u64| {
            if value == 0 {
                Err((setting, "must be at least 1".to_string()))
            } else {
                Ok(())
            }
        };
        positive(
            "txn_state_topic_partitions",
            u64::from(self.state_topic_partitions),
        )?;
        positive(
            "txn_timeout_ms_max",
            self.transaction_timeout_ms_max.max(0) as u64,
        )?;
        positive("txn_timer_tick_ms", self.timer_tick_ms)?;
        positive(
            "txn_marker_retry_interval_ms",
            self.marker_retry_interval_ms,
        )?;
        positive(
            "txn_ids_per_shard_max",
            self.transactional_ids_per_shard_max as u64,
        )?;
        positive(
            "txn_partitions_per_transaction_max",
            self.partitions_per_transaction_max as u64,
        )?;
        positive(
            "txn_groups_per_transaction_max",
            self.groups_per_transaction_max as u64,
        )?;
        positive("txn_replay_read_bytes", self.replay_read_bytes as u64)?;
        positive("txn_load_tries_max", u64::from(self.load_tries_max))?;
        if self.marker_retry_interval_ms_max < self.marker_retry_interval_ms {
            return Err((
                "txn_marker_retry_interval_ms_max",
                "must be at least txn_marker_retry_interval_ms".to_string(),
            ));
        }
        if self.partitions_per_transaction_max > crate::records::RECORD_PARTITIONS_MAX
            || self.groups_per_transaction_max > crate::records::RECORD_GROUPS_MAX
        {
            return Err((
                "txn_partitions_per_transaction_max",
                "above what one stored transaction state may list".to_string(),
            ));
        }
        Ok(())
    }

    pub fn timer_tick(&self) -> Duration {
        Duration::from_millis(self.timer_tick_ms)
    }

    /// The pause after the `failures`-th failed round of markers (1 for the first): doubling
    /// from `marker_retry_interval_ms`, at most `marker_retry_interval_ms_max`.
    pub fn marker_retry_delay(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(20);
        let delay_ms = self
            .marker_retry_interval_ms
            .saturating_mul(1 << doublings)
            .min(self.marker_retry_interval_ms_max);
        Duration::from_millis(delay_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_retries_back_off_to_their_maximum() {
        let limits = TxnLimits::default();
        assert_eq!(limits.marker_retry_delay(1), Duration::from_millis(200));
        assert_eq!(limits.marker_retry_delay(2), Duration::from_millis(400));
        assert_eq!(limits.marker_retry_delay(6), Duration::from_millis(6_400));
        assert_eq!(limits.marker_retry_delay(7), Duration::from_millis(10_000));
        assert_eq!(
            limits.marker_retry_delay(u32::MAX),
            Duration::from_millis(10_000)
        );
        assert_eq!(limits.check(), Ok(()));
    }
}
