//! Authorization (issue #17): whether a connection's principal may do an operation on a
//! resource, by Kafka's ACL rules (`spate_security::Acls::authorize`) over the shared ACL
//! snapshot (`acls::AclStore`).
//!
//! One [`Authorizer`] is shared by every shard (`Services::authorizer`). With authorization off
//! (`authorization = false`, or `auto` with no listener requiring SASL) every check answers yes,
//! the behaviour from before ACLs existed. Super users are allowed everything.
//!
//! A check that reaches the ACLs walks every binding whose pattern can name the resource; a busy
//! connection asks the same few questions over and over (Write on one topic per produce), so
//! each connection keeps its answers in a [`DecisionCache`] inside its `Session`: keyed by
//! operation, resource type and name, bounded in entries, and emptied when the ACL snapshot's
//! version moves, so that an ACL removed while a connection is open takes effect at its next
//! request. In cluster mode, until this broker has the cluster's bindings (`AclStore::is_ready`)
//! only super users are allowed: authorization fails closed, never open. Which operation each
//! request needs is the handlers' business (Kafka's `KafkaApis`
//! table, see `kafka::authorize`), as the answer's shape on refusal is.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use spate_security::acl::{WILDCARD_HOST, WILDCARD_PRINCIPAL, WILDCARD_RESOURCE_NAME};
use spate_security::{
    AclBinding, AclBindingFilter, Operation, PatternType, Permission, Principal, ResourceType,
};

use super::acls::AclStore;
use super::Session;
use crate::config::AuthorizationConfig;

/// The answers one connection remembers; past this, the cache starts again empty. A client
/// touches a handful of topics and groups; a thousand leaves room for wide consumers while
/// bounding what one connection can make the broker keep.
pub const DECISIONS_PER_CONNECTION_MAX: usize = 1024;

/// The host a connection whose peer address is unknown is checked as: it matches only bindings
/// for every host ("*").
const UNKNOWN_HOST: IpAddr = IpAddr::V4(Ipv4Addr::UNSPECIFIED);

/// See the module documentation. Shared by all shards; lives as long as the broker.
#[derive(Debug)]
pub struct Authorizer {
    enabled: bool,
    super_users: Vec<Principal>,
    acls: Arc<AclStore>,
}

impl Authorizer {
    pub fn new(config: &AuthorizationConfig, acls: Arc<AclStore>) -> Authorizer {
        Authorizer {
            enabled: config.enabled,
            super_users: config.super_users.clone(),
            acls,
        }
    }

    /// Whether requests are checked at all (Kafka's "an authorizer is configured"; the ACL APIs
    /// answer SECURITY_DISABLED without one).
    pub fn is_enabled(&self) -> bool {
        self.enabled
    }

    /// The ACLs every check reads, and their one way to change (`acls::change`).
    pub fn acls(&self) -> &Arc<AclStore> {
        &self.acls
    }

    /// Whether `session`'s principal may do `operation` on the resource `resource_type`
    /// `resource_name`. A session that has not authenticated may do nothing (the dialects never
    /// run its requests; this holds even if one did).
    pub fn authorize(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        if !self.acls.is_ready() {
            return self.is_super_user(session);
        }
        let version = self.acls.version();
        let mut decisions = session.decisions.borrow_mut();
        if let Some(allowed) = decisions.get(version, operation, resource_type, resource_name) {
            return allowed;
        }
        let snapshot = self.acls.snapshot();
        let host = session.peer.map_or(UNKNOWN_HOST, |peer| peer.ip());
        let Some(allowed) = session.with_principal(|principal| {
            snapshot.acls.authorize(
                principal,
                host,
                operation,
                resource_type,
                resource_name,
                &self.super_users,
            )
        }) else {
            return false;
        };
        decisions.insert(
            snapshot.version,
            operation,
            resource_type,
            resource_name,
            allowed,
        );
        allowed
    }

    /// Whether `session`'s principal may do `operation` on some resource of `resource_type`:
    /// Kafka's `authorizeByResourceType` (an idempotent producer may start with Write on any
    /// topic). True when an allow binding applies whose resources a deny binding does not wholly
    /// cover: a deny on the literal "*" covers every resource; a deny on a literal name covers
    /// that literal allow; a deny on a prefix covers every allow whose name starts with it. Not
    /// cached: asked once per InitProducerId of an idempotent producer.
    pub fn authorize_any(
        &self,
        session: &Session,
        operation: Operation,
        resource_type: ResourceType,
    ) -> bool {
        if !self.enabled {
            return true;
        }
        if !self.acls.is_ready() {
            return self.is_super_user(session);
        }
        let host = session.peer.map_or(UNKNOWN_HOST, |peer| peer.ip());
        let snapshot = self.acls.snapshot();
        session
            .with_principal(|principal| {
                if self.super_users.contains(principal) {
                    return true;
                }
                let filter = AclBindingFilter {
                    resource_type: Some(resource_type),
                    ..AclBindingFilter::any()
                };
                let applying: Vec<AclBinding> = snapshot
                    .acls
                    .matching(&filter)
                    .into_iter()
                    .filter(|binding| binding_applies(binding, principal, host))
                    .collect();
                let denies: Vec<&AclBinding> = applying
                    .iter()
                    .filter(|binding| {
                        binding.permission == Permission::Deny
                            && (binding.operation == operation
                                || binding.operation == Operation::All)
                    })
                    .collect();
                let everything_denied = denies.iter().any(|deny| {
                    deny.pattern == PatternType::Literal
                        && deny.resource_name == WILDCARD_RESOURCE_NAME
                });
                if everything_denied {
                    return false;
                }
                applying
                    .iter()
                    .filter(|allow| {
                        allow.permission == Permission::Allow
                            && allow_covers(allow.operation, operation)
                    })
                    .any(|allow| {
                        !denies.iter().any(|deny| match deny.pattern {
                            PatternType::Literal => {
                                allow.pattern == PatternType::Literal
                                    && allow.resource_name == deny.resource_name
                            }
                            PatternType::Prefixed => {
                                allow.resource_name.starts_with(deny.resource_name.as_str())
                            }
                        })
                    })
            })
            .unwrap_or(false)
    }

    /// Whether `session`'s principal is a super user (from the configuration, so known before
    /// the cluster's bindings are). Not cached: asked only while the ACLs are not ready.
    fn is_super_user(&self, session: &Session) -> bool {
        session
            .with_principal(|principal| self.super_users.contains(principal))
            .unwrap_or(false)
    }

    /// Kafka's "authorized operations" of a resource for `session`: a bit set with bit `code`
    /// set for each operation (by Kafka code) of the resource type's supported ones that the
    /// principal may do. With authorization off, every supported operation (as Kafka without
    /// an authorizer).
    pub fn authorized_operations(
        &self,
        session: &Session,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> i32 {
        supported_operations(resource_type)
            .iter()
            .filter(|&&operation| self.authorize(session, operation, resource_type, resource_name))
            .fold(0, |bits, operation| bits | (1 << operation.to_kafka()))
    }
}

/// Whether a binding names `principal` (or every user) connecting from `host` (or any host).
fn binding_applies(binding: &AclBinding, principal: &Principal, host: IpAddr) -> bool {
    let names_principal = binding.principal.split_once(':')
        == Some((principal.kind.as_str(), principal.name.as_str()))
        || binding.principal == WILDCARD_PRINCIPAL;
    let names_host = binding.host == WILDCARD_HOST
        || binding
            .host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.to_canonical() == host.to_canonical());
    names_principal && names_host
}

/// Whether an allow binding for `granted` allows `requested` (Kafka's implications: All
/// everything; Read, Write, Delete and Alter imply Describe; AlterConfigs DescribeConfigs).
fn allow_covers(granted: Operation, requested: Operation) -> bool {
    use Operation::*;
    granted == All
        || granted == requested
        || (requested == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && granted == AlterConfigs)
}

/// The operations Kafka defines on each resource type (`AclEntry.supportedOperations`): what an
/// "authorized operations" answer can name.
pub fn supported_operations(resource_type: ResourceType) -> &'static [Operation] {
    use Operation::*;
    match resource_type {
        ResourceType::Topic => &[
            Read,
            Write,
            Create,
            Describe,
            Delete,
            Alter,
            DescribeConfigs,
            AlterConfigs,
        ],
        ResourceType::Group => &[Read, Describe, Delete],
        ResourceType::Cluster => &[
            Create,
            ClusterAction,
            DescribeConfigs,
            AlterConfigs,
            IdempotentWrite,
            Alter,
            Describe,
        ],
        ResourceType::TransactionalId => &[Describe, Write],
    }
}

/// One connection's remembered answers (see the module documentation). Shard-local, inside the
/// connection's `Session`; dies with the connection.
#[derive(Debug, Default)]
pub struct DecisionCache {
    /// The ACL snapshot version every answer here was computed against.
    version: u64,
    /// Answers by (resource type, operation), then resource name: looked up by `&str`, so a hit
    /// allocates nothing.
    by_kind: HashMap<(ResourceType, Operation), HashMap<Box<str>, bool>>,
    entries: usize,
}

impl DecisionCache {
    /// The remembered answer, if it was computed against the ACL snapshot `version`; any other
    /// version empties the cache.
    fn get(
        &mut self,
        version: u64,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
    ) -> Option<bool> {
        if version != self.version {
            self.clear(version);
            return None;
        }
        self.by_kind
            .get(&(resource_type, operation))?
            .get(resource_name)
            .copied()
    }

    /// Remembers an answer computed against the snapshot `version`.
    fn insert(
        &mut self,
        version: u64,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
        allowed: bool,
    ) {
        if version != self.version || self.entries >= DECISIONS_PER_CONNECTION_MAX {
            self.clear(version);
        }
        let names = self.by_kind.entry((resource_type, operation)).or_default();
        if names.insert(resource_name.into(), allowed).is_none() {
            self.entries += 1;
        }
        debug_assert!(self.entries <= DECISIONS_PER_CONNECTION_MAX);
    }

    fn clear(&mut self, version: u64) {
        self.by_kind.clear();
        self.entries = 0;
        self.version = version;
    }

    /// How many answers are remembered.
    pub fn len(&self) -> usize {
        self.entries
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::acls::{apply, AclChange};
    use super::*;
    use spate_security::{AclBinding, AclBindingFilter, PatternType, Permission};

    fn binding(
        principal: &str,
        operation: Operation,
        permission: Permission,
        name: &str,
    ) -> AclBinding {
        AclBinding {
            resource_type: ResourceType::Topic,
            resource_name: name.to_string(),
            pattern: PatternType::Literal,
            principal: principal.to_string(),
            host: "*".to_string(),
            operation,
            permission,
        }
    }

    fn authorizer(enabled: bool, super_users: &[&str]) -> (tempfile::TempDir, Authorizer) {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = AclStore::open(directory.path()).expect("opens");
        let config = AuthorizationConfig {
            enabled,
            super_users: super_users
                .iter()
                .map(|text| Principal::parse(text).expect("a principal"))
                .collect(),
        };
        (directory, Authorizer::new(&config, Arc::new(store)))
    }

    fn create(authorizer: &Authorizer, bindings: Vec<AclBinding>) {
        authorizer
            .acls()
            .change_blocking(|acls| apply(acls, AclChange::Create(bindings)))
            .expect("written");
    }

    fn session_of(user: &str) -> Session {
        Session::authenticated_as(
            Principal::user(user),
            Some("10.0.0.7:5000".parse().unwrap()),
        )
    }

    #[test]
    fn a_cluster_member_fails_closed_until_it_has_the_clusters_bindings() {
        let directory = tempfile::tempdir().expect("temporary directory");
        let store = Arc::new(AclStore::open_for_cluster(directory.path()).expect("opens"));
        let config = AuthorizationConfig {
            enabled: true,
            super_users: vec![Principal::user("admin")],
        };
        let authorizer = Authorizer::new(&config, store.clone());
        let alice = session_of("alice");
        let admin = session_of("admin");
        let read = |session: &Session| {
            authorizer.authorize(session, Operation::Read, ResourceType::Topic, "orders")
        };
        let write_any = |session: &Session| {
            authorizer.authorize_any(session, Operation::Write, ResourceType::Topic)
        };
        assert!(!read(&alice), "not ready: only super users");
        assert!(!write_any(&alice));
        assert!(read(&admin) && write_any(&admin));

        let mut acls = spate_security::Acls::default();
        acls.add(binding(
            "User:alice",
            Operation::All,
            Permission::Allow,
            "orders",
        ));
        store.publish(acls);
        assert!(read(&alice) && write_any(&alice));
        // A later publish without the binding takes effect at the next check (new version).
        store.publish(spate_security::Acls::default());
        assert!(!read(&alice));
    }

    #[test]
    fn everything_is_allowed_with_authorization_off() {
        let (_directory, authorizer) = authorizer(false, &[]);
        let session = session_of("alice");
        assert!(authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "orders"));
        assert_eq!(
            authorizer.authorized_operations(&session, ResourceType::Group, "g"),
            (1 << 3) | (1 << 8) | (1 << 6)
        );
        assert!(session.decisions.borrow().is_empty());
    }

    #[test]
    fn a_principal_without_acls_is_refused_and_one_with_an_allow_is_let_through() {
        let (_directory, authorizer) = authorizer(true, &[]);
        let session = session_of("alice");
        assert!(!authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "orders"));
        create(
            &authorizer,
            vec![binding(
                "User:alice",
                Operation::Write,
                Permission::Allow,
                "orders",
            )],
        );
        assert!(authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "orders"));
        // Write implies Describe, not Read.
        assert!(authorizer.authorize(&session, Operation::Describe, ResourceType::Topic, "orders"));
        assert!(!authorizer.authorize(&session, Operation::Read, ResourceType::Topic, "orders"));
        assert!(!authorizer.authorize(
            &session_of("bob"),
            Operation::Write,
            ResourceType::Topic,
            "orders"
        ));
    }

    #[test]
    fn a_super_user_is_allowed_everything_without_acls() {
        let (_directory, authorizer) = authorizer(true, &["User:admin"]);
        let session = session_of("admin");
        assert!(authorizer.authorize(
            &session,
            Operation::Alter,
            ResourceType::Cluster,
            "kafka-cluster"
        ));
        assert_eq!(
            authorizer.authorized_operations(&session, ResourceType::TransactionalId, "t"),
            (1 << 8) | (1 << 4)
        );
    }

    #[test]
    fn a_removed_acl_takes_effect_at_the_next_check_of_a_cached_session() {
        let (_directory, authorizer) = authorizer(true, &[]);
        let allow = binding("User:alice", Operation::Read, Permission::Allow, "orders");
        create(&authorizer, vec![allow.clone()]);
        let session = session_of("alice");
        assert!(authorizer.authorize(&session, Operation::Read, ResourceType::Topic, "orders"));
        assert_eq!(session.decisions.borrow().len(), 1);
        // Answered from the cache.
        assert!(authorizer.authorize(&session, Operation::Read, ResourceType::Topic, "orders"));
        authorizer
            .acls()
            .change_blocking(|acls| {
                apply(
                    acls,
                    AclChange::Delete(vec![AclBindingFilter::exact(&allow)]),
                )
            })
            .expect("written");
        assert!(!authorizer.authorize(&session, Operation::Read, ResourceType::Topic, "orders"));
    }

    #[test]
    fn an_added_deny_wins_over_a_cached_allow() {
        let (_directory, authorizer) = authorizer(true, &[]);
        create(
            &authorizer,
            vec![binding("User:*", Operation::All, Permission::Allow, "*")],
        );
        let session = session_of("alice");
        assert!(authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "orders"));
        create(
            &authorizer,
            vec![binding(
                "User:alice",
                Operation::Write,
                Permission::Deny,
                "orders",
            )],
        );
        assert!(!authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "orders"));
        assert!(authorizer.authorize(&session, Operation::Write, ResourceType::Topic, "payments"));
    }

    #[test]
    fn the_decision_cache_stays_bounded() {
        let (_directory, authorizer) = authorizer(true, &[]);
        let session = session_of("alice");
        for index in 0..(DECISIONS_PER_CONNECTION_MAX + 10) {
            let name = format!("topic-{index}");
            assert!(!authorizer.authorize(&session, Operation::Read, ResourceType::Topic, &name));
            assert!(session.decisions.borrow().len() <= DECISIONS_PER_CONNECTION_MAX);
        }
        assert_eq!(session.decisions.borrow().len(), 10);
    }

    #[test]
    fn a_session_that_has_not_authenticated_is_refused() {
        let (_directory, authorizer) = authorizer(true, &[]);
        create(
            &authorizer,
            vec![binding("User:*", Operation::All, Permission::Allow, "*")],
        );
        let mechanisms: Arc<[super::super::SaslMechanism]> =
            Arc::from(vec![super::super::SaslMechanism::Plain]);
        let session = Session::new(mechanisms, None);
        assert!(!authorizer.authorize(&session, Operation::Read, ResourceType::Topic, "orders"));
    }

    #[test]
    fn authorize_any_finds_an_allow_that_no_deny_covers() {
        let (_directory, authorizer) = authorizer(true, &[]);
        let session = session_of("alice");
        let any_write = |authorizer: &Authorizer| {
            authorizer.authorize_any(&session, Operation::Write, ResourceType::Topic)
        };
        assert!(!any_write(&authorizer));
        let mut prefixed = binding("User:alice", Operation::Write, Permission::Allow, "orders-");
        prefixed.pattern = PatternType::Prefixed;
        create(&authorizer, vec![prefixed]);
        assert!(any_write(&authorizer));
        // A deny on a shorter prefix covers the allowed prefix.
        let mut deny = binding("User:alice", Operation::Write, Permission::Deny, "ord");
        deny.pattern = PatternType::Prefixed;
        create(&authorizer, vec![deny]);
        assert!(!any_write(&authorizer));
        // A literal allow elsewhere is enough again, unless everything is denied.
        create(
            &authorizer,
            vec![binding(
                "User:*",
                Operation::All,
                Permission::Allow,
                "payments",
            )],
        );
        assert!(any_write(&authorizer));
        create(
            &authorizer,
            vec![binding(
                "User:alice",
                Operation::Write,
                Permission::Deny,
                "*",
            )],
        );
        assert!(!any_write(&authorizer));
        assert!(!authorizer.authorize_any(
            &session_of("bob"),
            Operation::Write,
            ResourceType::Group
        ));
    }

    #[test]
    fn authorized_operations_name_each_allowed_operation_by_its_kafka_code() {
        let (_directory, authorizer) = authorizer(true, &[]);
        create(
            &authorizer,
            vec![binding(
                "User:alice",
                Operation::AlterConfigs,
                Permission::Allow,
                "orders",
            )],
        );
        let session = session_of("alice");
        // AlterConfigs (11) and the DescribeConfigs (10) it implies.
        assert_eq!(
            authorizer.authorized_operations(&session, ResourceType::Topic, "orders"),
            (1 << 11) | (1 << 10)
        );
        assert_eq!(
            authorizer.authorized_operations(&session, ResourceType::Topic, "payments"),
            0
        );
    }
}
