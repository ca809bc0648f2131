//! Spate broker library.
