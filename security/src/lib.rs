//! Spate's security core: the SASL exchanges (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN), principals,
//! Kafka's ACL model with its authorizer, and the two durable files that keep users and ACLs.
//!
//! Sans-IO apart from those two files: the SASL state machines take bytes and give bytes, and
//! random nonces and salts come from the caller. Listeners, request handling, the sharing of
//! snapshots between shards and the blocking pool that runs the file I/O belong to
//! `spate-server` and the broker; this crate depends on nothing else in the workspace.

pub mod acl;
pub mod credentials;
pub mod limits;
pub mod plain;
pub mod principal;
pub mod scram;
pub mod store;

pub use acl::{
    AclBinding, AclBindingFilter, AclError, Acls, AclsFile, Operation, PatternType,
    PatternTypeFilter, Permission, ResourceType,
};
pub use credentials::{Credentials, CredentialsFile};
pub use plain::{encode_plain, parse_plain, PlainError, PlainRequest};
pub use principal::Principal;
pub use scram::{ScramClient, ScramCredential, ScramError, ScramMechanism, ScramServer};
pub use store::StoreError;
