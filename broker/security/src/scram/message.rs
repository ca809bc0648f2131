//! The SCRAM messages' grammar (RFC 5802 section 7): parsing with bounds and typed errors,
//! formatting, and the saslname escapes ("=2C" for ',', "=3D" for '=').
