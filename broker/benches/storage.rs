//! Storage benches (placeholder while the engine is being written).
fn main() {}
