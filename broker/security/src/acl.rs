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

use crate::principal::Principal;
use crate::store::{self, StoreError};

/// Kafka's code for ANY in the filters of DescribeAcls and DeleteAcls (resource type, pattern
/// type, operation, permission).
pub const KAFKA_CODE_ANY: i8 = 1;

/// The resource name that, in a literal binding, stands for every resource of its type.
pub const WILDCARD_RESOURCE_NAME: &str = "*";
/// The host that, in a binding, stands for every host.
pub const WILDCARD_HOST: &str = "*";
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
        let _ = self;
        todo!()
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

    /// Kafka's `AclBindingFilter.matches`.
    pub fn matches(&self, binding: &AclBinding) -> bool {
        let _ = binding;
        todo!()
    }
}

/// Every binding, grouped by resource pattern so that `authorize` looks up only the patterns
/// that can apply to one resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Acls {
    patterns: BTreeMap<ResourcePattern, BTreeSet<AccessEntry>>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct ResourcePattern {
    resource_type: ResourceType,
    pattern: PatternType,
    resource_name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AccessEntry {
    principal: String,
    host: String,
    operation: Operation,
    permission: Permission,
}

impl Acls {
    /// Adds `binding`; false when it was already there.
    pub fn add(&mut self, binding: AclBinding) -> bool {
        let _ = binding;
        todo!()
    }

    /// Removes and returns every binding `filter` matches.
    pub fn remove_matching(&mut self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let _ = filter;
        todo!()
    }

    /// Every binding `filter` matches.
    pub fn matching(&self, filter: &AclBindingFilter) -> Vec<AclBinding> {
        let _ = filter;
        todo!()
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
        let _ = (
            principal,
            host,
            operation,
            resource_type,
            resource_name,
            super_users,
        );
        todo!()
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
        let _ = data_dir;
        todo!()
    }

    /// Saves `acls` durably, replacing the file whole.
    pub fn save(data_dir: &Path, acls: &Acls) -> Result<(), StoreError> {
        let _ = (data_dir, acls);
        todo!()
    }
}
