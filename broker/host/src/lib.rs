//! The host checker behind `spate-broker check`: what `rpk redpanda check`/`tune` look at, plus
//! what io_uring needs, judged for a Spate broker's data directory and shard cores.
//!
//! - [`view`]: the only access to the host ([`HostView`]): the real machine, or a fake tree of
//!   files for tests.
//! - [`checks`]: one [`Finding`] per setting, never an error: what cannot be read is reported
//!   as not available, with why.
//! - [`apply`]: the runtime changes `--apply` makes, as root, old -> new.
//! - [`report`] and [`cli`]: the table, the JSON, the flags and exit codes.
//!
//! It leaves to the broker binary how the data directory and cores are configured, and to the
//! operator everything that is not safe to change on a running host.

pub mod apply;
pub mod checks;
pub mod cli;
pub mod finding;
pub mod report;
pub mod view;

pub use checks::{check_host, CheckOptions, CHECK_NAMES};
pub use finding::{Finding, Severity};
pub use view::{FakeHost, HostView, RealHost};
