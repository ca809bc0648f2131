//! Benchmark harness; workloads arrive with the benchmark issue.
fn main() {}
