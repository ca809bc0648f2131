//! Spate broker library: the storage engine (`storage`) and the shard-per-core server built on
//! it (`config`, `catalog`, `shard`, `server`), and the consumer group coordinator (`group`);
//! the `spate-broker` binary is `main.rs`.

pub mod catalog;
pub mod config;
pub mod group;
pub mod log_throttle;
pub mod server;
pub mod shard;
pub mod storage;
