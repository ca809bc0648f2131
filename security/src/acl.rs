//! Kafka's ACL model: bindings (a resource pattern and an access entry), the filters of
//! DescribeAcls and DeleteAcls, the authorizer's rules, and the durable file that keeps the
//! bindings, `<data_dir>/security/acls`.
//!
//! Names and numeric codes are Kafka's, so the Kafka handlers convert codes one to one. `Acls`
//! is plain data: the broker shares one immutable snapshot among its shards and swaps it after a
//! change is durable. Which operation each request needs on which resource is the request
//! handlers' business (`spate-server`), as it is Kafka's `KafkaApis`.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::principal::Principal;
use crate::store::{self, StoreError};

/// Kafka's code for ANY in the filters of DescribeAcls and DeleteAcls (resource type, pattern
/// type, operation, permission).
pub const KAFKA_CODE_ANY: i8 = 1;

/// The resource name that, in a literal binding, stands for every resource of its type.
pub const WILDCARD_RESOURCE_NAME: &str = "*";
/// The host that, in a binding, stands for every host.
pub const WILDCARD_HOST: &str = "*";
/// The name of the one Cluster resource, as Kafka names it.
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The principal that, in a binding, stands for every user.
pub const WILDCARD_PRINCIPAL: &str = "User:*";

/// Kafka's resource types that Spate has (Kafka codes 2 to 5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
}

/// How a binding's resource name matches: exactly (with "*" for every name), or as a prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternType {
    Literal,
    Prefixed,
}

/// The pattern part of a filter: Kafka's ANY matches bindings of either pattern type with the
/// filter's exact name; MATCH matches the bindings that would apply to the filter's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PatternTypeFilter {
    Any,
    Match,
    Literal,
    Prefixed,
}

/// Kafka's ACL operations (codes 2 to 12).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Deny,
    Allow,
}

/// One ACL: who (principal, host) may or may not (permission) do what (operation) to which
/// resources (type, name, pattern).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AclBinding {
    pub resource_type: ResourceType,
    pub resource_name: String,
    pub pattern: PatternType,
    /// "User:alice", or "User:*" for every user.
    pub principal: String,
    /// "*", or one IP address.
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// Why a binding cannot be added (Kafka answers these with INVALID_REQUEST).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AclError {
    #[error("ACL resource name is empty")]
    EmptyResourceName,
    #[error("ACL principal is not of the form Type:name")]
    Principal,
    #[error("ACL host is neither \"*\" nor an IP address")]
    Host,
}

/// A filter over bindings, as DescribeAcls and DeleteAcls carry it: `None` is Kafka's ANY (or
/// its null name, principal or host).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AclBindingFilter {
    pub resource_type: Option<ResourceType>,
    pub resource_name: Option<String>,
    pub pattern: PatternTypeFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

macro_rules! kafka_codes {
    ($type:ident { $($variant:ident = $code:literal, $name:literal;)* }) => {
        impl $type {
            /// Every value, in Kafka's code order.
            pub const ALL: &'static [$type] = &[$($type::$variant),*];

            /// Kafka's numeric code.
            pub fn to_kafka(self) -> i8 {
                match self {
                    $($type::$variant => $code,)*
                }
            }

            /// The value of Kafka's code; `None` for UNKNOWN, ANY and codes Spate lacks.
            pub fn from_kafka(code: i8) -> Option<Self> {
                match code {
                    $($code => Some($type::$variant),)*
                    _ => None,
                }
            }

            /// The value of a filter's code: `Some(None)` for ANY, `None` for codes that are
            /// neither ANY nor a value (Kafka answers those with INVALID_REQUEST).
            pub fn filter_from_kafka(code: i8) -> Option<Option<Self>> {
                if code == KAFKA_CODE_ANY {
                    return Some(None);
                }
                Self::from_kafka(code).map(Some)
            }

            /// Kafka's name ("TRANSACTIONAL_ID"), as the store file and `kafka-acls` output write it.
            pub fn name(self) -> &'static str {
                match self {
                    $($type::$variant => $name,)*
                }
            }

            /// The value named `name`, Kafka's way: case does not matter, nor do underscores, so
            /// "TRANSACTIONAL_ID", "TransactionalId" and "transactional_id" are one value.
            pub fn from_name(name: &str) -> Option<Self> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|value| names_equal(value.name(), name))
            }
        }
    };
}

kafka_codes!(ResourceType {
    Topic = 2, "TOPIC";
    Group = 3, "GROUP";
    Cluster = 4, "CLUSTER";
    TransactionalId = 5, "TRANSACTIONAL_ID";
});

kafka_codes!(PatternType {
    Literal = 3, "LITERAL";
    Prefixed = 4, "PREFIXED";
});

kafka_codes!(Operation {
    All = 2, "ALL";
    Read = 3, "READ";
    Write = 4, "WRITE";
    Create = 5, "CREATE";
    Delete = 6, "DELETE";
    Alter = 7, "ALTER";
    Describe = 8, "DESCRIBE";
    ClusterAction = 9, "CLUSTER_ACTION";
    DescribeConfigs = 10, "DESCRIBE_CONFIGS";
    AlterConfigs = 11, "ALTER_CONFIGS";
    IdempotentWrite = 12, "IDEMPOTENT_WRITE";
});

kafka_codes!(Permission {
    Deny = 2, "DENY";
    Allow = 3, "ALLOW";
});

fn names_equal(kafka_name: &str, name: &str) -> bool {
    let mut wanted = kafka_name.bytes().filter(|&byte| byte != b'_');
    let mut given = name.bytes().filter(|&byte| byte != b'_');
    loop {
        match (wanted.next(), given.next()) {
            (None, None) => return true,
            (Some(left), Some(right)) if left.eq_ignore_ascii_case(&right) => {}
            _ => return false,
        }
    }
}

impl PatternTypeFilter {
    /// Kafka's code: ANY 1, MATCH 2, LITERAL 3, PREFIXED 4.
    pub fn to_kafka(self) -> i8 {
        match self {
            Self::Any => 1,
            Self::Match => 2,
            Self::Literal => 3,
            Self::Prefixed => 4,
        }
    }

    pub fn from_kafka(code: i8) -> Option<Self> {
        match code {
            1 => Some(Self::Any),
            2 => Some(Self::Match),
            3 => Some(Self::Literal),
            4 => Some(Self::Prefixed),
            _ => None,
        }
    }
}

impl AclBinding {
    /// Checks what Kafka checks before creating a binding: a non-empty resource name, a
    /// principal "Type:name", a host that is "*" or an IP address.
    pub fn validate(&self) -> Result<(), AclError> {
        if self.resource_name.is_empty() {
            return Err(AclError::EmptyResourceName);
        }
        if Principal::parse(&self.principal).is_none() {
            return Err(AclError::Principal);
        }
        if self.host != WILDCARD_HOST && self.host.parse::<IpAddr>().is_err() {
            return Err(AclError::Host);
        }
        Ok(())
    }
}

impl AclBindingFilter {
    /// The filter that matches every binding.
    pub fn any() -> Self {
        Self {
            resource_type: None,
            resource_name: None,
            pattern: PatternTypeFilter::Any,
            principal: None,
            host: None,
            operation: None,
            permission: None,
        }
    }

    /// The filter that matches `binding` and nothing else.
    pub fn exact(binding: &AclBinding) -> Self {
        Self {
            resource_type: Some(binding.resource_type),
            resource_name: Some(binding.resource_name.clone()),
            pattern: match binding.pattern {
                PatternType::Literal => PatternTypeFilter::Literal,
                PatternType::Prefixed => PatternTypeFilter::Prefixed,
            },
            principal: Some(binding.principal.clone()),
            host: Some(binding.host.clone()),
            operation: Some(binding.operation),
            permission: Some(binding.permission),
        }
    }

    /// Kafka's `AclBindingFilter.matches`: the resource pattern part, then the entry part,
    /// whose principal and host compare as written ("User:*" in a filter finds only bindings
    /// for "User:*").
    pub fn matches(&self, binding: &AclBinding) -> bool {
        self.matches_resource(binding) && self.matches_entry(binding)
    }

    /// Kafka's `ResourcePatternFilter.matches`.
    fn matches_resource(&self, binding: &AclBinding) -> bool {
        if self
            .resource_type
            .is_some_and(|resource_type| resource_type != binding.resource_type)
        {
            return false;
        }
        let same_pattern = match self.pattern {
            PatternTypeFilter::Any | PatternTypeFilter::Match => true,
            PatternTypeFilter::Literal => binding.pattern == PatternType::Literal,
            PatternTypeFilter::Prefixed => binding.pattern == PatternType::Prefixed,
        };
        if !same_pattern {
            return false;
        }
        let Some(name) = &self.resource_name else {
            return true;
        };
        if self.pattern != PatternTypeFilter::Match {
            return *name == binding.resource_name;
        }
        // MATCH: the bindings that would apply to a resource called `name`.
        match binding.pattern {
            PatternType::Literal => {
                *name == binding.resource_name || binding.resource_name == WILDCARD_RESOURCE_NAME
            }
            PatternType::Prefixed => name.starts_with(binding.resource_name.as_str()),
        }
    }

    /// Kafka's `AccessControlEntryFilter.matches`.
    fn matches_entry(&self, binding: &AclBinding) -> bool {
        self.principal
            .as_ref()
            .is_none_or(|principal| *principal == binding.principal)
            && self.host.as_ref().is_none_or(|host| *host == binding.host)
            && self
                .operation
                .is_none_or(|operation| operation == binding.operation)
            && self
                .permission
                .is_none_or(|permission| permission == binding.permission)
    }
}

/// Every binding, grouped by resource type and pattern type, then by name, so that `authorize`
/// looks up only the names that can apply to one resource: the literal name, the literal "*",
/// and each prefix of the name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acls {
    patterns: BTreeMap<(ResourceType, PatternType), BTreeMap<String, BTreeSet<AccessEntry>>>,
}

/// A binding less its resource pattern.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AccessEntry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

impl AccessEntry {
    fn of(binding: &AclBinding) -> Self {
        Self {
            principal: binding.principal.clone(),
            host: binding.host.clone(),
            operation: binding.operation,
            permission: binding.permission,
        }
    }

    fn binding(
        &self,
        resource_type: ResourceType,
        pattern: PatternType,
        resource_name: &str,
    ) -> AclBinding {
        AclBinding {
            resource_type,
            resource_name: resource_name.to_string(),
            pattern,
            principal: self.principal.clone(),
            host: self.host.clone(),
            operation: self.operation,
            permission: self.permission,
        }
    }

    /// Whether this entry speaks of `principal` connecting from `host`.
    fn applies_to(&self, principal: &Principal, host: IpAddr) -> bool {
        // The entry's "Kind:name" compared in parts, so authorizing allocates nothing.
        let names_principal = self.principal.split_once(':')
            == Some((principal.kind.as_str(), principal.name.as_str()));
        (names_principal || self.principal == WILDCARD_PRINCIPAL) && host_matches(&self.host, host)
    }
}

/// Whether a binding's host matches a connection's address. Kafka compares the text of the
/// address; this compares addresses, so that "::1" and "0:0:0:0:0:0:0:1" (Java's spelling) are
/// one host, and an IPv4 client seen through a dual-stack socket (::ffff:a.b.c.d) matches its
/// IPv4 binding. A host that is not an address matches nothing.
fn host_matches(binding_host: &str, host: IpAddr) -> bool {
    binding_host == WILDCARD_HOST
        || binding_host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.to_canonical() == host.to_canonical())
}

/// Whether an allow binding for `granted` allows `requested`: All allows everything; Read,
/// Write, Delete and Alter each imply Describe; AlterConfigs implies DescribeConfigs.
fn allow_covers(granted: Operation, requested: Operation) -> bool {
    use Operation::*;
    granted == All
        || granted == requested
        || (requested == Describe && matches!(granted, Read | Write | Delete | Alter))
        || (requested == DescribeConfigs && granted == AlterConfigs)
}

/// Whether a deny binding for `denied` denies `requested`: only the operation itself or All
/// (a denied Read still leaves Describe to the allow bindings, as in Kafka).
fn deny_covers(denied: Operation, requested: Operation) -> bool {
    denied == Operation::All || denied == requested
}

impl Acls {
    /// Adds `binding`; false when it was already there. Callers check
    /// [`AclBinding::validate`] first; an invalid binding is kept but can never match a
    /// connection whose host it cannot parse.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        let entry = AccessEntry::of(&binding);
        self.patterns
            .entry((binding.resource_type, binding.pattern))
            .or_default()
            .entry(binding.resource_name)
            .or_default()
            .insert(entry)
    }

    /// Removes and returns every binding `filter` matches, in the order of [`Acls::iter`].
    pub fn remove_matching(&mut self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let removed = self.matching(filter);
        for binding in &removed {
            let key = (binding.resource_type, binding.pattern);
            let names = self
                .patterns
                .get_mut(&key)
                .expect("a matched binding is stored");
            let entries = names
                .get_mut(&binding.resource_name)
                .expect("a matched binding is stored");
            let was_stored = entries.remove(&AccessEntry::of(binding));
            assert!(was_stored);
            if entries.is_empty() {
                names.remove(&binding.resource_name);
                if names.is_empty() {
                    self.patterns.remove(&key);
                }
            }
        }
        removed
    }

    /// Every binding `filter` matches, in the order of [`Acls::iter`].
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        self.iter()
            .filter(|binding| filter.matches(binding))
            .collect()
    }

    /// Every binding, ordered by resource type, pattern type, name, then entry.
    pub fn iter(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.patterns
            .iter()
            .flat_map(|(&(resource_type, pattern), names)| {
                names.iter().flat_map(move |(resource_name, entries)| {
                    entries
                        .iter()
                        .map(move |entry| entry.binding(resource_type, pattern, resource_name))
                })
            })
    }

    pub fn len(&self) -> usize {
        self.patterns
            .values()
            .flat_map(|names| names.values())
            .map(BTreeSet::len)
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Kafka's AclAuthorizer rules: super users allowed; deny wins over allow; literal, prefixed
    /// and the wildcard name "*" match; principal "User:*" and host "*" match any; Describe is
    /// implied by Read, Write, Delete, Alter; DescribeConfigs by AlterConfigs; All covers every
    /// operation; no matching ACL: denied.
    pub fn authorize(
        &self,
        principal: &Principal,
        host: IpAddr,
        operation: Operation,
        resource_type: ResourceType,
        resource_name: &str,
        super_users: &[Principal],
    ) -> bool {
        if super_users.contains(principal) {
            return true;
        }
        let mut allowed = false;
        for entry in self.entries_for(resource_type, resource_name) {
            if !entry.applies_to(principal, host) {
                continue;
            }
            match entry.permission {
                Permission::Deny if deny_covers(entry.operation, operation) => return false,
                Permission::Allow if allow_covers(entry.operation, operation) => allowed = true,
                _ => {}
            }
        }
        allowed
    }

    /// The entries of every binding whose resource pattern applies to the resource
    /// `resource_type` `resource_name`.
    fn entries_for<'a>(
        &'a self,
        resource_type: ResourceType,
        resource_name: &'a str,
    ) -> impl Iterator<Item = &'a AccessEntry> + 'a {
        let literal = self.patterns.get(&(resource_type, PatternType::Literal));
        let prefixed = self.patterns.get(&(resource_type, PatternType::Prefixed));
        let literal_names = [
            Some(resource_name),
            (resource_name != WILDCARD_RESOURCE_NAME).then_some(WILDCARD_RESOURCE_NAME),
        ];
        let literal_entries = literal_names
            .into_iter()
            .flatten()
            .filter_map(move |name| literal?.get(name));
        // Every prefix, from the empty one to the whole name, at character boundaries.
        let prefixes = resource_name
            .char_indices()
            .map(|(index, _)| index)
            .chain([resource_name.len()])
            .map(move |end| &resource_name[..end]);
        let prefixed_entries = prefixes.filter_map(move |prefix| prefixed?.get(prefix));
        literal_entries.chain(prefixed_entries).flatten()
    }
}

/// The file `<data_dir>/security/acls`.
pub struct AclsFile;

impl AclsFile {
    pub fn path(data_dir: &Path) -> PathBuf {
        store::security_dir(data_dir).join("acls")
    }

    /// The saved bindings; empty when there is no file yet.
    pub fn load(data_dir: &Path) -> Result<Acls, StoreError> {
        let path = Self::path(data_dir);
        match store::load_body(&path, FILE_KIND, FORMAT_VERSION)? {
            None => Ok(Acls::default()),
            Some(body) => decode(&body).map_err(|what| StoreError::Corrupt { path, what }),
        }
    }

    /// Saves `acls` durably, replacing the file whole.
    pub fn save(data_dir: &Path, acls: &Acls) -> Result<(), StoreError> {
        store::save_body(
            &Self::path(data_dir),
            FILE_KIND,
            FORMAT_VERSION,
            &encode(acls),
        )
    }
}

/// The header's name for this file.
const FILE_KIND: &str = "spate-acls";
/// Version 1: the JSON body of `FileBody`, values by Kafka's names.
const FORMAT_VERSION: u32 = 1;

// The file's own types, apart from the domain types, so that changing `AclBinding` cannot
// silently change the format. JSON, for the same reasons as the credentials file.

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBody {
    acls: Vec<FileBinding>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileBinding {
    resource_type: String,
    resource_name: String,
    pattern: String,
    principal: String,
    host: String,
    operation: String,
    permission: String,
}

fn encode(acls: &Acls) -> Vec<u8> {
    let acls = acls
        .iter()
        .map(|binding| FileBinding {
            resource_type: binding.resource_type.name().to_string(),
            resource_name: binding.resource_name,
            pattern: binding.pattern.name().to_string(),
            principal: binding.principal,
            host: binding.host,
            operation: binding.operation.name().to_string(),
            permission: binding.permission.name().to_string(),
        })
        .collect();
    serde_json::to_vec_pretty(&FileBody { acls }).expect("plain structs encode as JSON")
}

/// The bindings in a body whose CRC matched; anything wrong is refused whole, because a
/// dropped deny binding would grant access.
fn decode(body: &[u8]) -> Result<Acls, String> {
    let file: FileBody =
        serde_json::from_slice(body).map_err(|error| format!("body is not valid JSON: {error}"))?;
    let mut acls = Acls::default();
    for stored in file.acls {
        fn value<T>(parsed: Option<T>, field: &str, text: &str) -> Result<T, String> {
            parsed.ok_or_else(|| format!("unknown {field} {text:?}"))
        }
        let binding = AclBinding {
            resource_type: value(
                ResourceType::from_name(&stored.resource_type),
                "resource type",
                &stored.resource_type,
            )?,
            pattern: value(
                PatternType::from_name(&stored.pattern),
                "pattern type",
                &stored.pattern,
            )?,
            operation: value(
                Operation::from_name(&stored.operation),
                "operation",
                &stored.operation,
            )?,
            permission: value(
                Permission::from_name(&stored.permission),
                "permission",
                &stored.permission,
            )?,
            resource_name: stored.resource_name,
            principal: stored.principal,
            host: stored.host,
        };
        let description = format!("{binding:?}");
        if !acls.add(binding) {
            return Err(format!("binding {description} appears twice"));
        }
    }
    Ok(acls)
}
