//! Authorization: DescribeAcls, CreateAcls and DeleteAcls with Kafka's meaning (KIP-140), for
//! `spate acl` and the client's admin calls.
//!
//! A binding is Kafka's: a resource pattern (type, name, pattern type) and an access entry
//! (principal, host, operation, permission). Every enumerated field travels as Kafka's numeric
//! code in a u8, so that the broker converts one to one with `spate_security::acl` and a Kafka
//! tool's output reads the same: resource type 2 topic, 3 group, 4 cluster, 5 transactional id;
//! pattern type 3 literal, 4 prefixed; operation 2 all ... 12 idempotent write; permission 2
//! deny, 3 allow. A filter adds ANY (1) to each, MATCH (2) to the pattern type (the bindings
//! that apply to the filter's name: literal, wildcard and prefixes), and an absent name,
//! principal or host for "any". Which codes are valid is the broker's business (it answers
//! `InvalidRequest`), not the decoder's: the codes are Kafka's and grow with it.
//!
//! All three APIs need a principal allowed on the Cluster resource: Describe for DescribeAcls,
//! Alter for the other two (`ClusterAuthorizationFailed` otherwise); a broker without
//! authorization answers `SecurityDisabled`.

use crate::api::wire::{wire, ErrorText, List, OptionalStr, Str};
use crate::constants::{
    ACL_BINDINGS_PER_MESSAGE_MAX, ACL_FILTERS_PER_MESSAGE_MAX, ACL_HOST_BYTES_MAX,
    ACL_PRINCIPAL_BYTES_MAX, ACL_RESOURCE_NAME_BYTES_MAX,
};
use crate::error::ErrorCode;

type ResourceName = Str<ACL_RESOURCE_NAME_BYTES_MAX>;
type OptionalResourceName = OptionalStr<ACL_RESOURCE_NAME_BYTES_MAX>;
type PrincipalText = Str<ACL_PRINCIPAL_BYTES_MAX>;
type OptionalPrincipalText = OptionalStr<ACL_PRINCIPAL_BYTES_MAX>;
type HostText = Str<ACL_HOST_BYTES_MAX>;
type OptionalHostText = OptionalStr<ACL_HOST_BYTES_MAX>;

wire! {
    /// One ACL, in Kafka's codes (see the module's doc).
    #[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
    pub struct AclEntry {
        pub resource_type: u8 as u8,
        pub resource_name: String as ResourceName,
        pub pattern_type: u8 as u8,
        /// "User:alice", or "User:*" for every user.
        pub principal: String as PrincipalText,
        /// "*", or one IP address.
        pub host: String as HostText,
        pub operation: u8 as u8,
        pub permission: u8 as u8,
    }
}

wire! {
    /// Which bindings a DescribeAcls or DeleteAcls means: each code may be ANY (1), the pattern
    /// type also MATCH (2); an absent name, principal or host matches any.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
    pub struct AclFilter {
        pub resource_type: u8 as u8,
        pub resource_name: Option<String> as OptionalResourceName,
        pub pattern_type: u8 as u8,
        pub principal: Option<String> as OptionalPrincipalText,
        pub host: Option<String> as OptionalHostText,
        pub operation: u8 as u8,
        pub permission: u8 as u8,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeAclsRequest {
        pub filter: AclFilter as AclFilter,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DescribeAclsResponse {
        /// `ClusterAuthorizationFailed`, `SecurityDisabled`, `InvalidRequest` (a code that is
        /// neither ANY nor a value).
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        /// Every binding the filter matches.
        pub bindings: Vec<AclEntry> as List<AclEntry, ACL_BINDINGS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateAclsRequest {
        pub creations: Vec<AclEntry> as List<AclEntry, ACL_BINDINGS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// The outcome of one creation, in the request's order.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AclCreationResult {
        /// `InvalidRequest` (an unknown code, an empty name, a malformed principal or host).
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct CreateAclsResponse {
        /// A request-wide refusal (`ClusterAuthorizationFailed`, `SecurityDisabled`,
        /// `StorageError`): then nothing was created and `results` is empty.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        pub results: Vec<AclCreationResult> as List<AclCreationResult, ACL_BINDINGS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteAclsRequest {
        pub filters: Vec<AclFilter> as List<AclFilter, ACL_FILTERS_PER_MESSAGE_MAX>,
    }
}

wire! {
    /// What one filter deleted, in the request's order.
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct AclFilterResult {
        /// `InvalidRequest` for a filter with an unknown code.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        pub deleted: Vec<AclEntry> as List<AclEntry, ACL_BINDINGS_PER_MESSAGE_MAX>,
    }
}

wire! {
    #[derive(Debug, Clone, PartialEq, Eq, Default)]
    pub struct DeleteAclsResponse {
        /// A request-wide refusal, as CreateAcls'; then nothing was deleted.
        pub error_code: ErrorCode as ErrorCode,
        pub error_message: Option<String> as ErrorText,
        pub results: Vec<AclFilterResult> as List<AclFilterResult, ACL_FILTERS_PER_MESSAGE_MAX>,
    }
}
