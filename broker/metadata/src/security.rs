//! The image's security part: users with their SCRAM credentials and the ACL bindings, as
//! KRaft keeps them in its metadata log (`UserScramCredentialRecord`, `AccessControlEntryRecord`),
//! and the four commands that change them.
//!
//! The records here are this crate's own serializable mirrors of `spate-security`'s domain types
//! (`ScramCredential`, `AclBinding`, `AclBindingFilter`), named by Kafka's names ("SCRAM-SHA-512",
//! "TOPIC", "PREFIXED"), so that changing a domain type cannot silently change what the Raft
//! log and its snapshots hold (the same reason the credentials and ACL files have their own
//! types). The rules themselves come from `spate-security` (what a valid credential and a valid
//! binding are, what a filter matches): a cluster and a single broker must agree on them, and
//! every node of one build applies them the same way.
//!
//! A credential holds the salt, the iteration count and the two derived keys, never a password;
//! the keys are secrets all the same (with one captured exchange they let an attacker pose as
//! the broker), so `Debug` leaves them out and the log sits under the data directory beside the
//! credentials file, with the same care. What the broker does with this part (its credential
//! and ACL stores) is `spate-server`'s business.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use spate_protocol::constants::{
    ACL_BINDINGS_PER_MESSAGE_MAX, ACL_FILTERS_PER_MESSAGE_MAX, ACL_HOST_BYTES_MAX,
    ACL_PRINCIPAL_BYTES_MAX, ACL_RESOURCE_NAME_BYTES_MAX, USER_NAME_BYTES_MAX,
};
use spate_security::{
    AclBinding, AclBindingFilter, Acls, Credentials, Operation, PatternType, PatternTypeFilter,
    Permission, ResourceType, ScramCredential, ScramMechanism,
};

use crate::commands::ApplyOutcome;
use crate::config::limits;
use crate::error::ApplyError;
use crate::image::MetadataImage;

/// Users and bindings. Both maps are ordered, so two nodes that applied the same entries hold
/// (and encode) the same part.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecurityImage {
    /// User name → SCRAM mechanism name → credential. A user has at least one credential.
    pub users: BTreeMap<String, BTreeMap<String, ScramCredentialRecord>>,
    /// Every binding, once, ordered by its fields.
    pub bindings: BTreeSet<AclBindingRecord>,
}

/// What a server keeps of one user's password for one mechanism (RFC 5802 section 3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScramCredentialRecord {
    #[serde(with = "base64_bytes")]
    pub salt: Vec<u8>,
    pub iterations: u32,
    #[serde(with = "base64_bytes")]
    pub stored_key: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub server_key: Vec<u8>,
}

/// The keys never reach a log through `Debug` (see the module documentation).
impl fmt::Debug for ScramCredentialRecord {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("ScramCredentialRecord")
            .field("salt_bytes", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

impl ScramCredentialRecord {
    /// The record of `credential`, with its mechanism's name.
    pub fn of(credential: &ScramCredential) -> (String, Self) {
        (
            credential.mechanism.name().to_string(),
            Self {
                salt: credential.salt.clone(),
                iterations: credential.iterations,
                stored_key: credential.stored_key.clone(),
                server_key: credential.server_key.clone(),
            },
        )
    }

    /// The credential for `mechanism` (a name); `None` when this build knows no such mechanism.
    pub fn credential(&self, mechanism: &str) -> Option<ScramCredential> {
        Some(ScramCredential {
            mechanism: ScramMechanism::from_name(mechanism)?,
            salt: self.salt.clone(),
            iterations: self.iterations,
            stored_key: self.stored_key.clone(),
            server_key: self.server_key.clone(),
        })
    }
}

/// One binding, by Kafka's names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct AclBindingRecord {
    pub resource_type: String,
    pub resource_name: String,
    pub pattern: String,
    pub principal: String,
    pub host: String,
    pub operation: String,
    pub permission: String,
}

impl AclBindingRecord {
    pub fn of(binding: &AclBinding) -> Self {
        Self {
            resource_type: binding.resource_type.name().to_string(),
            resource_name: binding.resource_name.clone(),
            pattern: binding.pattern.name().to_string(),
            principal: binding.principal.clone(),
            host: binding.host.clone(),
            operation: binding.operation.name().to_string(),
            permission: binding.permission.name().to_string(),
        }
    }

    /// The binding; `None` when a name is not one this build knows.
    pub fn binding(&self) -> Option<AclBinding> {
        Some(AclBinding {
            resource_type: ResourceType::from_name(&self.resource_type)?,
            resource_name: self.resource_name.clone(),
            pattern: PatternType::from_name(&self.pattern)?,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: Operation::from_name(&self.operation)?,
            permission: Permission::from_name(&self.permission)?,
        })
    }
}

/// One DeleteAcls filter, by Kafka's names; `None` is Kafka's ANY (or its null).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclFilterRecord {
    pub resource_type: Option<String>,
    pub resource_name: Option<String>,
    /// "ANY", "MATCH", "LITERAL" or "PREFIXED".
    pub pattern: String,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<String>,
    pub permission: Option<String>,
}

/// Kafka's names of the pattern filters (`PatternTypeFilter` has codes, not names).
const PATTERN_FILTER_NAMES: [(PatternTypeFilter, &str); 4] = [
    (PatternTypeFilter::Any, "ANY"),
    (PatternTypeFilter::Match, "MATCH"),
    (PatternTypeFilter::Literal, "LITERAL"),
    (PatternTypeFilter::Prefixed, "PREFIXED"),
];

impl AclFilterRecord {
    pub fn of(filter: &AclBindingFilter) -> Self {
        let pattern = PATTERN_FILTER_NAMES
            .iter()
            .find(|(pattern, _)| *pattern == filter.pattern)
            .map(|(_, name)| name.to_string())
            .expect("every pattern filter has a name");
        Self {
            resource_type: filter.resource_type.map(|value| value.name().to_string()),
            resource_name: filter.resource_name.clone(),
            pattern,
            principal: filter.principal.clone(),
            host: filter.host.clone(),
            operation: filter.operation.map(|value| value.name().to_string()),
            permission: filter.permission.map(|value| value.name().to_string()),
        }
    }

    /// The filter; `None` when a name is not one this build knows.
    pub fn filter(&self) -> Option<AclBindingFilter> {
        fn named<T>(name: &Option<String>, parse: fn(&str) -> Option<T>) -> Option<Option<T>> {
            match name {
                None => Some(None),
                Some(name) => parse(name).map(Some),
            }
        }
        Some(AclBindingFilter {
            resource_type: named(&self.resource_type, ResourceType::from_name)?,
            resource_name: self.resource_name.clone(),
            pattern: PATTERN_FILTER_NAMES
                .iter()
                .find(|(_, name)| *name == self.pattern)
                .map(|(pattern, _)| *pattern)?,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: named(&self.operation, Operation::from_name)?,
            permission: named(&self.permission, Permission::from_name)?,
        })
    }
}

impl SecurityImage {
    /// The users as the broker's credential store holds them. Records that do not convert
    /// cannot be here (`check_invariants`), and are left out rather than trusted.
    pub fn credentials(&self) -> Credentials {
        let mut credentials = Credentials::default();
        for (user, mechanisms) in &self.users {
            for (mechanism, record) in mechanisms {
                if let Some(credential) = record.credential(mechanism) {
                    credentials.upsert(user, credential);
                }
            }
        }
        credentials
    }

    /// The bindings as the broker's ACL store holds them.
    pub fn acls(&self) -> Acls {
        let mut acls = Acls::default();
        for binding in self.bindings.iter().filter_map(AclBindingRecord::binding) {
            acls.add(binding);
        }
        acls
    }

    /// The part's invariants: known mechanisms, credentials that check, valid bindings, and
    /// both limits.
    pub fn check_invariants(&self) -> Result<(), String> {
        if self.users.len() > limits::USERS_MAX {
            return Err(format!(
                "{} users exceed {}",
                self.users.len(),
                limits::USERS_MAX
            ));
        }
        if self.bindings.len() > limits::ACL_BINDINGS_MAX {
            return Err(format!(
                "{} bindings exceed {}",
                self.bindings.len(),
                limits::ACL_BINDINGS_MAX
            ));
        }
        for (user, mechanisms) in &self.users {
            check_user_name(user).map_err(|error| error.to_string())?;
            if mechanisms.is_empty() {
                return Err(format!("user '{user}' has no credential"));
            }
            for (mechanism, record) in mechanisms {
                check_credential(mechanism, record)
                    .map_err(|error| format!("user '{user}': {error}"))?;
            }
        }
        for binding in &self.bindings {
            check_binding(binding).map_err(|reason| format!("binding {binding:?}: {reason}"))?;
        }
        Ok(())
    }
}

type ApplyResult = Result<ApplyOutcome, ApplyError>;

impl MetadataImage {
    pub(crate) fn upsert_scram_credential(
        &mut self,
        user: &str,
        mechanism: &str,
        credential: &ScramCredentialRecord,
    ) -> ApplyResult {
        check_user_name(user)?;
        check_credential(mechanism, credential)?;
        let existing = self.security.users.get(user);
        if existing.and_then(|mechanisms| mechanisms.get(mechanism)) == Some(credential) {
            return Ok(ApplyOutcome::Unchanged);
        }
        if existing.is_none() && self.security.users.len() >= limits::USERS_MAX {
            return Err(ApplyError::LimitExceeded {
                what: "users".into(),
                limit: limits::USERS_MAX as u64,
            });
        }
        Arc::make_mut(&mut self.security)
            .users
            .entry(user.to_string())
            .or_default()
            .insert(mechanism.to_string(), credential.clone());
        Ok(ApplyOutcome::Done)
    }

    pub(crate) fn delete_scram_credential(&mut self, user: &str, mechanism: &str) -> ApplyResult {
        if ScramMechanism::from_name(mechanism).is_none() {
            return Err(invalid_credential(format!(
                "unknown mechanism '{mechanism}'"
            )));
        }
        let found = self
            .security
            .users
            .get(user)
            .is_some_and(|mechanisms| mechanisms.contains_key(mechanism));
        if !found {
            return Err(ApplyError::UnknownScramCredential {
                user: user.to_string(),
                mechanism: mechanism.to_string(),
            });
        }
        let security = Arc::make_mut(&mut self.security);
        let mechanisms = security.users.get_mut(user).expect("found above");
        mechanisms.remove(mechanism);
        if mechanisms.is_empty() {
            security.users.remove(user);
        }
        Ok(ApplyOutcome::Done)
    }

    /// Kafka's CreateAcls: each valid binding is added (an existing one stays, as in Kafka),
    /// each invalid one is answered with its reason; the outcome lists them in order.
    pub(crate) fn create_acls(&mut self, bindings: &[AclBindingRecord]) -> ApplyResult {
        if bindings.len() > ACL_BINDINGS_PER_MESSAGE_MAX {
            return Err(ApplyError::LimitExceeded {
                what: "bindings of one CreateAcls".into(),
                limit: ACL_BINDINGS_PER_MESSAGE_MAX as u64,
            });
        }
        let mut added = BTreeSet::new();
        let mut results = Vec::with_capacity(bindings.len());
        for binding in bindings {
            let result = check_binding(binding).and_then(|()| {
                let new = !self.security.bindings.contains(binding) && !added.contains(binding);
                if new && self.security.bindings.len() + added.len() >= limits::ACL_BINDINGS_MAX {
                    return Err(format!(
                        "the cluster holds the most bindings it may ({})",
                        limits::ACL_BINDINGS_MAX
                    ));
                }
                if new {
                    added.insert(binding.clone());
                }
                Ok(())
            });
            results.push(result);
        }
        if !added.is_empty() {
            Arc::make_mut(&mut self.security).bindings.extend(added);
        }
        Ok(ApplyOutcome::AclsCreated { results })
    }

    /// Kafka's DeleteAcls: per filter in order, the bindings it matches are removed and
    /// reported (a binding two filters match is reported by the first).
    pub(crate) fn delete_acls(&mut self, filters: &[AclFilterRecord]) -> ApplyResult {
        if filters.len() > ACL_FILTERS_PER_MESSAGE_MAX {
            return Err(ApplyError::LimitExceeded {
                what: "filters of one DeleteAcls".into(),
                limit: ACL_FILTERS_PER_MESSAGE_MAX as u64,
            });
        }
        let filters = filters
            .iter()
            .map(|record| {
                record.filter().ok_or_else(|| ApplyError::InvalidCommand {
                    reason: format!("ACL filter {record:?} names a value this build lacks"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut removed: BTreeSet<AclBindingRecord> = BTreeSet::new();
        let mut deleted = Vec::with_capacity(filters.len());
        for filter in &filters {
            let matched: Vec<AclBindingRecord> = self
                .security
                .bindings
                .iter()
                .filter(|record| !removed.contains(*record))
                .filter(|record| record.binding().is_some_and(|b| filter.matches(&b)))
                .cloned()
                .collect();
            removed.extend(matched.iter().cloned());
            deleted.push(matched);
        }
        if !removed.is_empty() {
            let security = Arc::make_mut(&mut self.security);
            security.bindings.retain(|record| !removed.contains(record));
        }
        Ok(ApplyOutcome::AclsDeleted { deleted })
    }
}

fn invalid_credential(reason: String) -> ApplyError {
    ApplyError::InvalidCredential { reason }
}

fn check_user_name(user: &str) -> Result<(), ApplyError> {
    if user.is_empty() || user.len() > USER_NAME_BYTES_MAX {
        return Err(invalid_credential(format!(
            "user name must be 1..={USER_NAME_BYTES_MAX} bytes"
        )));
    }
    Ok(())
}

/// A known mechanism, keys of its hash's length, a salt of 1..=SALT_BYTES_MAX bytes and
/// iterations within Kafka's bounds.
fn check_credential(mechanism: &str, record: &ScramCredentialRecord) -> Result<(), ApplyError> {
    let credential = record
        .credential(mechanism)
        .ok_or_else(|| invalid_credential(format!("unknown mechanism '{mechanism}'")))?;
    if record.salt.len() > limits::SCRAM_SALT_BYTES_MAX {
        return Err(invalid_credential(format!(
            "salt of {} bytes exceeds {}",
            record.salt.len(),
            limits::SCRAM_SALT_BYTES_MAX
        )));
    }
    credential
        .check()
        .map_err(|error| invalid_credential(error.to_string()))
}

/// What Kafka checks of a binding (`AclBinding::validate`), with the wire's size limits and
/// Kafka's spelling of every name.
fn check_binding(record: &AclBindingRecord) -> Result<(), String> {
    let binding = record.binding().ok_or_else(|| {
        "a resource type, pattern, operation or permission is unknown".to_string()
    })?;
    // One spelling per binding ("READ", never "read" or "Read"), so that the set holds each
    // binding once.
    if AclBindingRecord::of(&binding) != *record {
        return Err("names must be Kafka's, in capitals (\"READ\", \"TOPIC\")".to_string());
    }
    if binding.resource_name.len() > ACL_RESOURCE_NAME_BYTES_MAX
        || binding.principal.len() > ACL_PRINCIPAL_BYTES_MAX
        || binding.host.len() > ACL_HOST_BYTES_MAX
    {
        return Err("a resource name, principal or host is too long".to_string());
    }
    binding.validate().map_err(|error| error.to_string())
}

/// Byte strings as base64 text, as SCRAM and the credentials file write them (half the size of
/// a JSON array of numbers in every snapshot).
mod base64_bytes {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}
