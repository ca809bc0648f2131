//! Settings of a group member ([`GroupConfig`]) and their defaults, with the check that they
//! can work together. The prefetching underneath takes a [`ConsumerConfig`](crate::ConsumerConfig)
//! as any consumer does.

use std::time::Duration;

use spate_protocol::constants::{GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX};

use crate::config::OffsetReset;
use crate::error::Error;

/// Defaults of [`GroupConfig`], Kafka's where Kafka has one.
pub mod defaults {
    use std::time::Duration;

    /// The coordinator removes a member it has not heard from for this long.
    pub const SESSION_TIMEOUT: Duration = Duration::from_secs(45);
    /// A third of the session or less, so that two heartbeats may be lost without harm.
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
    /// How long a rebalance waits for every member to rejoin; also how long the application
    /// may take between polls during one.
    pub const REBALANCE_TIMEOUT: Duration = Duration::from_secs(60);
    /// A member that does not poll for this long leaves the group, so its partitions go to a
    /// member that does make progress.
    pub const MAX_POLL_INTERVAL: Duration = Duration::from_secs(300);
    /// Processed positions are committed this often (from `poll`) when auto-commit is on.
    pub const AUTO_COMMIT_INTERVAL: Duration = Duration::from_secs(5);
    /// Pause before retrying a join the coordinator could not take yet.
    pub const RETRY_BACKOFF: Duration = Duration::from_millis(100);
    /// `poll` waits in slices this long, so a rebalance is seen while it waits for records.
    pub const POLL_SLICE: Duration = Duration::from_millis(100);
}

const _: () =
    assert!(defaults::HEARTBEAT_INTERVAL.as_millis() * 3 <= defaults::SESSION_TIMEOUT.as_millis());

/// How a consumer takes part in a group. The group id is the only required setting.
///
/// ```
/// use std::time::Duration;
/// use spate_client::group::GroupConfig;
///
/// let config = GroupConfig::new("billing")
///     .with_assignors(&["sticky", "range"])
///     .with_session_timeout(Duration::from_secs(10));
/// assert_eq!(config.assignors, vec!["sticky".to_string(), "range".to_string()]);
/// ```
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// The group to join.
    pub group_id: String,
    /// A stable id for static membership: a member that restarts with the same instance id
    /// within the session timeout gets its partitions back without a rebalance. Static members
    /// do not leave the group when they close.
    pub group_instance_id: Option<String>,
    /// See [`defaults::SESSION_TIMEOUT`]. The broker accepts 100 ms to 30 minutes.
    pub session_timeout: Duration,
    /// See [`defaults::HEARTBEAT_INTERVAL`].
    pub heartbeat_interval: Duration,
    /// See [`defaults::REBALANCE_TIMEOUT`].
    pub rebalance_timeout: Duration,
    /// See [`defaults::MAX_POLL_INTERVAL`].
    pub max_poll_interval: Duration,
    /// Commit processed positions this often from `poll` (and on revocation and close);
    /// `None` leaves commits to the application (`commit_sync` / `commit_async`).
    pub auto_commit_interval: Option<Duration>,
    /// Assignor names, most preferred first: `range`, `roundrobin`, `sticky`.
    pub assignors: Vec<String>,
    /// Where a partition without a committed offset starts.
    pub offset_reset: OffsetReset,
    /// See [`defaults::RETRY_BACKOFF`].
    pub retry_backoff: Duration,
}

impl GroupConfig {
    /// Defaults for `group_id`: dynamic membership, auto-commit every 5 s, the range assignor,
    /// reading from the earliest offset where nothing is committed.
    pub fn new(group_id: impl Into<String>) -> Self {
        Self {
            group_id: group_id.into(),
            group_instance_id: None,
            session_timeout: defaults::SESSION_TIMEOUT,
            heartbeat_interval: defaults::HEARTBEAT_INTERVAL,
            rebalance_timeout: defaults::REBALANCE_TIMEOUT,
            max_poll_interval: defaults::MAX_POLL_INTERVAL,
            auto_commit_interval: Some(defaults::AUTO_COMMIT_INTERVAL),
            assignors: vec!["range".to_string()],
            offset_reset: OffsetReset::Earliest,
            retry_backoff: defaults::RETRY_BACKOFF,
        }
    }

    /// Static membership under `instance_id`.
    pub fn with_instance_id(mut self, instance_id: impl Into<String>) -> Self {
        self.group_instance_id = Some(instance_id.into());
        self
    }

    /// The session timeout, with the heartbeat interval at a third of it.
    pub fn with_session_timeout(mut self, session_timeout: Duration) -> Self {
        self.session_timeout = session_timeout;
        self.heartbeat_interval = session_timeout / 3;
        self
    }

    /// Assignors by name, most preferred first.
    pub fn with_assignors(mut self, names: &[&str]) -> Self {
        self.assignors = names.iter().map(|name| name.to_string()).collect();
        self
    }

    /// Manual commits only.
    pub fn with_manual_commits(mut self) -> Self {
        self.auto_commit_interval = None;
        self
    }

    pub(crate) fn check(&self) -> Result<(), Error> {
        let invalid = |reason: String| Err(Error::invalid("group config", reason));
        if self.group_id.is_empty() || self.group_id.len() > GROUP_ID_BYTES_MAX {
            return invalid(format!(
                "the group id must be 1 to {GROUP_ID_BYTES_MAX} bytes"
            ));
        }
        if let Some(instance) = &self.group_instance_id {
            if instance.is_empty() || instance.len() > GROUP_INSTANCE_ID_BYTES_MAX {
                return invalid(format!(
                    "the instance id must be 1 to {GROUP_INSTANCE_ID_BYTES_MAX} bytes"
                ));
            }
        }
        if self.heartbeat_interval.is_zero() || self.heartbeat_interval >= self.session_timeout {
            return invalid(
                "the heartbeat interval must be shorter than the session timeout".into(),
            );
        }
        for timeout in [self.session_timeout, self.rebalance_timeout] {
            if u32::try_from(timeout.as_millis()).is_err() {
                return invalid("timeouts must fit in u32 milliseconds".into());
            }
        }
        if self.assignors.is_empty() {
            return invalid("at least one assignor is needed".into());
        }
        if let Some(unknown) = self
            .assignors
            .iter()
            .find(|name| super::assignor::built_in(name).is_none())
        {
            return invalid(format!(
                "unknown assignor {unknown:?} (range, roundrobin, sticky)"
            ));
        }
        if self
            .auto_commit_interval
            .is_some_and(|interval| interval.is_zero())
        {
            return invalid("the auto-commit interval must be positive".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass_their_own_check() {
        GroupConfig::new("g").check().unwrap();
    }

    #[test]
    fn unusable_settings_are_refused() {
        assert!(GroupConfig::new("").check().is_err());
        assert!(GroupConfig::new("g")
            .with_assignors(&["fair"])
            .check()
            .is_err());
        let slow_heartbeat = GroupConfig {
            heartbeat_interval: Duration::from_secs(60),
            ..GroupConfig::new("g")
        };
        assert!(slow_heartbeat.check().is_err());
        assert!(GroupConfig::new("g").with_instance_id("").check().is_err());
    }
}
