//! Consumer groups on the client: a [`GroupConsumer`] that subscribes to topics and gets its
//! partitions from the group, the [`Assignor`]s its leader shares partitions with, and
//! [`GroupAdmin`] to list, describe, delete and reset groups.
//!
//! - `consumer` — the member as the application uses it: subscribe, poll, commit, callbacks.
//! - `member` — the group protocol on the I/O thread: join, sync, heartbeats, leave, commits.
//! - `assignor` — range, round-robin and sticky assignment (pure functions).
//! - `admin` — group administration and offset resets.
//! - `config` — [`GroupConfig`] and its defaults.
//!
//! The broker coordinates; the client decides the assignment (the leader member does) and
//! when offsets are committed, as in Kafka.

pub mod admin;
pub mod assignor;
pub mod config;
pub mod consumer;
pub(crate) mod member;

pub use admin::{CommittedPosition, GroupAdmin, GroupDescription, GroupSummary};
pub use admin::{MemberDescription, PlannedOffset, ResetTarget};
pub use assignor::{Assignment, Assignor, AssignorMember};
pub use assignor::{RangeAssignor, RoundRobinAssignor, StickyAssignor};
pub use config::GroupConfig;
pub use consumer::RebalanceListener;
pub use consumer::{ConsumerGroupMetadata, GroupConsumer, NoRebalanceListener};
pub use spate_protocol::api::GroupState;
