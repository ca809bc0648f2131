//! Native Rust client for Spate; the producer, consumer and admin APIs arrive with the client issue.
