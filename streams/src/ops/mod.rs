//! The stateful operators' processors: aggregations over key-value, window and session stores
//! (`aggregate`, `window`), `suppress`, and joins (`join`, `foreign_key`). The DSL (`dsl`) builds them; each
//! instance belongs to one task.

pub(crate) mod aggregate;
pub(crate) mod foreign_key;
pub(crate) mod join;
pub(crate) mod suppress;
pub(crate) mod window;
