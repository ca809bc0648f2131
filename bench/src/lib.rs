//! `spate-bench`: the benchmark harness. Workloads (`produce`, `consume`, `e2e`) run against a
//! system under test through a small driver interface (Spate, Redis Streams), and every result
//! sits beside this machine's own ceilings (`limits`) measured in the same run.
//!
//! Map: `cli` (flags) and `workload` (settings, TOML files) decide what runs; `placement` pins
//! threads; `target` starts or finds the system (`apache_kafka` starts Apache Kafka); `driver` talks to it; `runner` generates load
//! and measures; `stats` holds the clock and histograms; `limits` measures the machine;
//! `report` prints and writes JSON; `idle` holds an idle crowd of connections beside a workload;
//! `cluster` starts a local multi-broker cluster (`--cluster N`: RF=N against RF=1, failover);
//! `steady_state` sizes a run past the dirty-page limit; `app` ties them together. Speed of
//! individual functions is measured by the criterion benches beside each crate, not here.

pub mod apache_kafka;
pub mod app;
pub mod cli;
pub mod cluster;
pub mod constants;
pub mod driver;
pub mod idle;
pub mod limits;
pub mod placement;
pub mod report;
pub mod runner;
pub mod stats;
pub mod steady_state;
pub mod target;
pub mod workload;
