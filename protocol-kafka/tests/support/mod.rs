//! Helpers shared by the integration tests: a counting allocator and a random request writer.

pub mod allocations;
pub mod random_request;
