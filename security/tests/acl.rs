//! Kafka's authorizer rules one by one, DescribeAcls/DeleteAcls filter semantics, Kafka's codes
//! and names, the ACL file, and a property test of `authorize` against a naive model.

use std::net::IpAddr;

use proptest::prelude::*;
use spate_security::acl::{KAFKA_CODE_ANY, WILDCARD_PRINCIPAL};
use spate_security::{
    AclBinding, AclBindingFilter, AclError, Acls, AclsFile, Operation, PatternType,
    PatternTypeFilter, Permission, Principal, ResourceType, StoreError,
};

const CLIENT_HOST: &str = "10.0.0.1";

fn binding(
    resource_type: ResourceType,
    resource_name: &str,
    pattern: PatternType,
    principal: &str,
    host: &str,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    AclBinding {
        resource_type,
        resource_name: resource_name.to_string(),
        pattern,
        principal: principal.to_string(),
        host: host.to_string(),
        operation,
        permission,
    }
}

/// A topic binding for alice from any host.
fn topic(
    name: &str,
    pattern: PatternType,
    operation: Operation,
    permission: Permission,
) -> AclBinding {
    binding(
        ResourceType::Topic,
        name,
        pattern,
        "User:alice",
        "*",
        operation,
        permission,
    )
}

fn acls(bindings: impl IntoIterator<Item = AclBinding>) -> Acls {
    let mut acls = Acls::default();
    for binding in bindings {
        assert!(acls.add(binding));
    }
    acls
}

fn host(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// Whether alice, from CLIENT_HOST, may do `operation` on topic `name`.
fn alice_may(acls: &Acls, operation: Operation, name: &str) -> bool {
    acls.authorize(
        &Principal::user("alice"),
        host(CLIENT_HOST),
        operation,
        ResourceType::Topic,
        name,
        &[],
    )
}

use Operation::*;
use PatternType::{Literal, Prefixed};
use Permission::{Allow, Deny};

#[test]
fn no_acl_denies() {
    assert!(!alice_may(&Acls::default(), Read, "orders"));
    let other_topic = acls([topic("payments", Literal, Read, Allow)]);
    assert!(!alice_may(&other_topic, Read, "orders"));
}

#[test]
fn literal_allow_allows_that_name_only() {
    let acls = acls([topic("orders", Literal, Read, Allow)]);
    assert!(alice_may(&acls, Read, "orders"));
    assert!(!alice_may(&acls, Read, "orders2"));
    assert!(!alice_may(&acls, Read, "order"));
    assert!(!alice_may(&acls, Write, "orders"));
}

#[test]
fn allow_is_per_resource_type() {
    let acls = acls([topic("orders", Literal, Read, Allow)]);
    assert!(!acls.authorize(
        &Principal::user("alice"),
        host(CLIENT_HOST),
        Read,
        ResourceType::Group,
        "orders",
        &[]
    ));
}

#[test]
fn wildcard_name_allows_every_name() {
    let acls = acls([topic("*", Literal, Read, Allow)]);
    assert!(alice_may(&acls, Read, "orders"));
    assert!(alice_may(&acls, Read, "*"));
}

#[test]
fn prefixed_allow_allows_names_that_start_with_it() {
    let acls = acls([topic("ord", Prefixed, Write, Allow)]);
    assert!(alice_may(&acls, Write, "ord"));
    assert!(alice_may(&acls, Write, "orders"));
    assert!(!alice_may(&acls, Write, "or"));
    assert!(!alice_may(&acls, Write, "payments-ord"));
}

#[test]
fn prefixed_star_is_a_prefix_not_a_wildcard() {
    let acls = acls([topic("*", Prefixed, Read, Allow)]);
    assert!(!alice_may(&acls, Read, "orders"));
    assert!(alice_may(&acls, Read, "*orders"));
}

#[test]
fn prefixes_work_on_multibyte_names() {
    let acls = acls([topic("é", Prefixed, Read, Allow)]);
    assert!(alice_may(&acls, Read, "été"));
    assert!(!alice_may(&acls, Read, "ete"));
}

#[test]
fn deny_wins_over_allow_from_any_pattern() {
    for deny in [
        topic("orders", Literal, Read, Deny),
        topic("*", Literal, Read, Deny),
        topic("ord", Prefixed, Read, Deny),
        topic("orders", Literal, All, Deny),
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            WILDCARD_PRINCIPAL,
            "*",
            Read,
            Deny,
        ),
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            "User:alice",
            CLIENT_HOST,
            Read,
            Deny,
        ),
    ] {
        let acls = acls([topic("orders", Literal, All, Allow), deny.clone()]);
        assert!(!alice_may(&acls, Read, "orders"), "{deny:?}");
    }
}

#[test]
fn deny_of_one_operation_leaves_the_others() {
    let acls = acls([
        topic("orders", Literal, All, Allow),
        topic("orders", Literal, Write, Deny),
    ]);
    assert!(!alice_may(&acls, Write, "orders"));
    assert!(alice_may(&acls, Read, "orders"));
}

#[test]
fn deny_does_not_imply_like_allow_does() {
    // Kafka: implication widens allows only; a denied Read leaves Describe to the allows.
    let acls = acls([
        topic("orders", Literal, Describe, Allow),
        topic("orders", Literal, Read, Deny),
    ]);
    assert!(alice_may(&acls, Describe, "orders"));
    assert!(!alice_may(&acls, Read, "orders"));
}

#[test]
fn deny_for_another_principal_or_host_does_not_apply() {
    let acls = acls([
        topic("orders", Literal, Read, Allow),
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            "User:bob",
            "*",
            Read,
            Deny,
        ),
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            "User:alice",
            "10.0.0.2",
            Read,
            Deny,
        ),
    ]);
    assert!(alice_may(&acls, Read, "orders"));
}

#[test]
fn describe_is_implied_by_read_write_delete_alter() {
    for granted in [Read, Write, Delete, Alter, Describe, All] {
        let acls = acls([topic("orders", Literal, granted, Allow)]);
        assert!(alice_may(&acls, Describe, "orders"), "{granted:?}");
    }
    for granted in [
        Create,
        ClusterAction,
        DescribeConfigs,
        AlterConfigs,
        IdempotentWrite,
    ] {
        let acls = acls([topic("orders", Literal, granted, Allow)]);
        assert!(!alice_may(&acls, Describe, "orders"), "{granted:?}");
    }
}

#[test]
fn describe_configs_is_implied_by_alter_configs_only() {
    for granted in [AlterConfigs, DescribeConfigs, All] {
        let acls = acls([topic("orders", Literal, granted, Allow)]);
        assert!(alice_may(&acls, DescribeConfigs, "orders"), "{granted:?}");
    }
    for granted in [Alter, Read, Write, Describe] {
        let acls = acls([topic("orders", Literal, granted, Allow)]);
        assert!(!alice_may(&acls, DescribeConfigs, "orders"), "{granted:?}");
    }
    // And not the other way round.
    let acls = acls([topic("orders", Literal, DescribeConfigs, Allow)]);
    assert!(!alice_may(&acls, AlterConfigs, "orders"));
}

#[test]
fn implication_does_not_run_backwards() {
    let acls = acls([topic("orders", Literal, Describe, Allow)]);
    for operation in [Read, Write, Delete, Alter] {
        assert!(!alice_may(&acls, operation, "orders"), "{operation:?}");
    }
}

#[test]
fn all_allows_every_operation() {
    let acls = acls([topic("orders", Literal, All, Allow)]);
    for &operation in Operation::ALL {
        assert!(alice_may(&acls, operation, "orders"), "{operation:?}");
    }
}

#[test]
fn wildcard_principal_matches_every_user() {
    let acls = acls([binding(
        ResourceType::Topic,
        "orders",
        Literal,
        WILDCARD_PRINCIPAL,
        "*",
        Read,
        Allow,
    )]);
    assert!(alice_may(&acls, Read, "orders"));
    assert!(acls.authorize(
        &Principal::anonymous(),
        host(CLIENT_HOST),
        Read,
        ResourceType::Topic,
        "orders",
        &[]
    ));
}

#[test]
fn principal_must_match_exactly() {
    let acls = acls([binding(
        ResourceType::Topic,
        "orders",
        Literal,
        "User:bob",
        "*",
        Read,
        Allow,
    )]);
    assert!(!alice_may(&acls, Read, "orders"));
    assert!(acls.authorize(
        &Principal::user("bob"),
        host(CLIENT_HOST),
        Read,
        ResourceType::Topic,
        "orders",
        &[]
    ));
    assert!(!acls.authorize(
        &Principal::user("Bob"),
        host(CLIENT_HOST),
        Read,
        ResourceType::Topic,
        "orders",
        &[]
    ));
}

#[test]
fn host_must_match_unless_wildcard() {
    let acls = acls([binding(
        ResourceType::Topic,
        "orders",
        Literal,
        "User:alice",
        CLIENT_HOST,
        Read,
        Allow,
    )]);
    assert!(alice_may(&acls, Read, "orders"));
    assert!(!acls.authorize(
        &Principal::user("alice"),
        host("10.0.0.2"),
        Read,
        ResourceType::Topic,
        "orders",
        &[]
    ));
}

#[test]
fn hosts_compare_as_addresses() {
    let acls = acls([
        binding(
            ResourceType::Topic,
            "a",
            Literal,
            "User:alice",
            "0:0:0:0:0:0:0:1",
            Read,
            Allow,
        ),
        binding(
            ResourceType::Topic,
            "b",
            Literal,
            "User:alice",
            "10.0.0.1",
            Read,
            Allow,
        ),
        binding(
            ResourceType::Topic,
            "c",
            Literal,
            "User:alice",
            "not-an-address",
            Read,
            Allow,
        ),
    ]);
    let alice = Principal::user("alice");
    assert!(acls.authorize(&alice, host("::1"), Read, ResourceType::Topic, "a", &[]));
    assert!(acls.authorize(
        &alice,
        host("::ffff:10.0.0.1"),
        Read,
        ResourceType::Topic,
        "b",
        &[]
    ));
    assert!(!acls.authorize(
        &alice,
        host("10.0.0.1"),
        Read,
        ResourceType::Topic,
        "c",
        &[]
    ));
}

#[test]
fn super_users_are_allowed_even_against_deny() {
    let acls = acls([binding(
        ResourceType::Cluster,
        "kafka-cluster",
        Literal,
        WILDCARD_PRINCIPAL,
        "*",
        All,
        Deny,
    )]);
    let supers = [Principal::user("admin")];
    assert!(acls.authorize(
        &Principal::user("admin"),
        host(CLIENT_HOST),
        Alter,
        ResourceType::Cluster,
        "kafka-cluster",
        &supers
    ));
    assert!(!acls.authorize(
        &Principal::user("alice"),
        host(CLIENT_HOST),
        Alter,
        ResourceType::Cluster,
        "kafka-cluster",
        &supers
    ));
    assert!(Acls::default().authorize(
        &Principal::user("admin"),
        host(CLIENT_HOST),
        Read,
        ResourceType::Topic,
        "t",
        &supers
    ));
}

#[test]
fn add_reports_duplicates_and_remove_removes() {
    let mut acls = Acls::default();
    let read = topic("orders", Literal, Read, Allow);
    assert!(acls.add(read.clone()));
    assert!(!acls.add(read.clone()));
    assert_eq!(acls.len(), 1);
    assert_eq!(
        acls.remove_matching(&AclBindingFilter::exact(&read)),
        vec![read.clone()]
    );
    assert!(acls.is_empty());
    assert!(acls
        .remove_matching(&AclBindingFilter::exact(&read))
        .is_empty());
    assert!(!alice_may(&acls, Read, "orders"));
}

fn filter_sample() -> Acls {
    acls([
        topic("orders", Literal, Read, Allow),
        topic("*", Literal, Read, Allow),
        topic("ord", Prefixed, Write, Allow),
        topic("orders", Prefixed, Write, Deny),
        topic("pay", Prefixed, Read, Allow),
        binding(
            ResourceType::Group,
            "orders",
            Literal,
            "User:bob",
            "10.0.0.9",
            Read,
            Allow,
        ),
        binding(
            ResourceType::Topic,
            "orders",
            Literal,
            WILDCARD_PRINCIPAL,
            "*",
            Describe,
            Allow,
        ),
    ])
}

fn names(bindings: &[AclBinding]) -> Vec<(ResourceType, &str, PatternType)> {
    bindings
        .iter()
        .map(|binding| {
            (
                binding.resource_type,
                binding.resource_name.as_str(),
                binding.pattern,
            )
        })
        .collect()
}

#[test]
fn any_filter_matches_everything() {
    let acls = filter_sample();
    assert_eq!(acls.matching(&AclBindingFilter::any()).len(), acls.len());
}

#[test]
fn pattern_any_with_a_name_matches_that_exact_name_of_both_pattern_types() {
    let filter = AclBindingFilter {
        resource_type: Some(ResourceType::Topic),
        resource_name: Some("orders".to_string()),
        ..AclBindingFilter::any()
    };
    let matched = filter_sample().matching(&filter);
    assert_eq!(
        names(&matched),
        vec![
            (ResourceType::Topic, "orders", Literal),
            (ResourceType::Topic, "orders", Literal),
            (ResourceType::Topic, "orders", Prefixed),
        ]
    );
}

#[test]
fn pattern_match_finds_the_bindings_that_apply_to_a_name() {
    let filter = AclBindingFilter {
        resource_type: Some(ResourceType::Topic),
        resource_name: Some("orders-eu".to_string()),
        pattern: PatternTypeFilter::Match,
        ..AclBindingFilter::any()
    };
    let matched = filter_sample().matching(&filter);
    assert_eq!(
        names(&matched),
        vec![
            (ResourceType::Topic, "*", Literal),
            (ResourceType::Topic, "ord", Prefixed),
            (ResourceType::Topic, "orders", Prefixed),
        ]
    );
    // Without a name, MATCH matches every pattern.
    let unnamed = AclBindingFilter {
        pattern: PatternTypeFilter::Match,
        ..AclBindingFilter::any()
    };
    assert_eq!(
        filter_sample().matching(&unnamed).len(),
        filter_sample().len()
    );
}

#[test]
fn pattern_literal_and_prefixed_filters_match_their_type_only() {
    let literal = AclBindingFilter {
        pattern: PatternTypeFilter::Literal,
        resource_name: Some("orders".to_string()),
        ..AclBindingFilter::any()
    };
    assert_eq!(
        names(&filter_sample().matching(&literal)),
        vec![
            (ResourceType::Topic, "orders", Literal),
            (ResourceType::Topic, "orders", Literal),
            (ResourceType::Group, "orders", Literal),
        ]
    );
    let prefixed = AclBindingFilter {
        pattern: PatternTypeFilter::Prefixed,
        ..AclBindingFilter::any()
    };
    assert_eq!(filter_sample().matching(&prefixed).len(), 3);
}

#[test]
fn entry_filter_compares_principal_and_host_as_written() {
    let bob = AclBindingFilter {
        principal: Some("User:bob".to_string()),
        ..AclBindingFilter::any()
    };
    assert_eq!(
        names(&filter_sample().matching(&bob)),
        vec![(ResourceType::Group, "orders", Literal)]
    );
    // A wildcard in a filter is not a wildcard: it finds the bindings written for "User:*".
    let star = AclBindingFilter {
        principal: Some(WILDCARD_PRINCIPAL.to_string()),
        ..AclBindingFilter::any()
    };
    assert_eq!(filter_sample().matching(&star).len(), 1);
    let host_filter = AclBindingFilter {
        host: Some("10.0.0.9".to_string()),
        ..AclBindingFilter::any()
    };
    assert_eq!(filter_sample().matching(&host_filter).len(), 1);
    let deny_writes = AclBindingFilter {
        operation: Some(Write),
        permission: Some(Deny),
        ..AclBindingFilter::any()
    };
    assert_eq!(
        names(&filter_sample().matching(&deny_writes)),
        vec![(ResourceType::Topic, "orders", Prefixed)]
    );
}

#[test]
fn remove_matching_removes_what_matching_finds() {
    let mut acls = filter_sample();
    let filter = AclBindingFilter {
        resource_type: Some(ResourceType::Topic),
        operation: Some(Read),
        ..AclBindingFilter::any()
    };
    let found = acls.matching(&filter);
    assert_eq!(found.len(), 3);
    assert_eq!(acls.remove_matching(&filter), found);
    assert!(acls.matching(&filter).is_empty());
    assert_eq!(acls.len(), filter_sample().len() - 3);
}

#[test]
fn validate_checks_name_principal_and_host() {
    let good = topic("orders", Literal, Read, Allow);
    assert_eq!(good.validate(), Ok(()));
    let mut bad = good.clone();
    bad.resource_name.clear();
    assert_eq!(bad.validate(), Err(AclError::EmptyResourceName));
    let mut bad = good.clone();
    bad.principal = "alice".to_string();
    assert_eq!(bad.validate(), Err(AclError::Principal));
    let mut bad = good.clone();
    bad.host = "example.com".to_string();
    assert_eq!(bad.validate(), Err(AclError::Host));
    let mut ipv6 = good;
    ipv6.host = "::1".to_string();
    assert_eq!(ipv6.validate(), Ok(()));
}

#[test]
fn kafka_codes_and_names_round_trip() {
    assert_eq!(ResourceType::Topic.to_kafka(), 2);
    assert_eq!(ResourceType::TransactionalId.to_kafka(), 5);
    assert_eq!(PatternType::Literal.to_kafka(), 3);
    assert_eq!(PatternType::Prefixed.to_kafka(), 4);
    assert_eq!(Operation::All.to_kafka(), 2);
    assert_eq!(Operation::IdempotentWrite.to_kafka(), 12);
    assert_eq!(Permission::Deny.to_kafka(), 2);
    assert_eq!(Permission::Allow.to_kafka(), 3);
    for &operation in Operation::ALL {
        assert_eq!(Operation::from_kafka(operation.to_kafka()), Some(operation));
        assert_eq!(Operation::from_name(operation.name()), Some(operation));
    }
    for &resource_type in ResourceType::ALL {
        assert_eq!(
            ResourceType::from_kafka(resource_type.to_kafka()),
            Some(resource_type)
        );
    }
    assert_eq!(Operation::from_kafka(0), None);
    assert_eq!(Operation::from_kafka(KAFKA_CODE_ANY), None);
    assert_eq!(Operation::from_kafka(13), None);
    assert_eq!(Operation::filter_from_kafka(KAFKA_CODE_ANY), Some(None));
    assert_eq!(Operation::filter_from_kafka(3), Some(Some(Read)));
    assert_eq!(Operation::filter_from_kafka(0), None);
    assert_eq!(
        PatternTypeFilter::from_kafka(2),
        Some(PatternTypeFilter::Match)
    );
    assert_eq!(PatternTypeFilter::from_kafka(5), None);
    // kafka-acls spells operations in camel case; Kafka's enums in upper snake case.
    assert_eq!(
        Operation::from_name("DescribeConfigs"),
        Some(DescribeConfigs)
    );
    assert_eq!(
        Operation::from_name("describe_configs"),
        Some(DescribeConfigs)
    );
    assert_eq!(
        ResourceType::from_name("TransactionalId"),
        Some(ResourceType::TransactionalId)
    );
    assert_eq!(Operation::from_name("Describe_Config"), None);
    assert_eq!(Operation::from_name(""), None);
}

#[test]
fn acls_file_round_trips_and_missing_is_empty() {
    let directory = tempfile::tempdir().unwrap();
    assert!(AclsFile::load(directory.path()).unwrap().is_empty());
    let acls = filter_sample();
    AclsFile::save(directory.path(), &acls).unwrap();
    assert_eq!(AclsFile::load(directory.path()).unwrap(), acls);
    assert_eq!(
        AclsFile::path(directory.path()),
        directory.path().join("security/acls")
    );
}

#[test]
fn acls_file_corrupt_byte_is_detected_naming_the_path() {
    let directory = tempfile::tempdir().unwrap();
    AclsFile::save(directory.path(), &filter_sample()).unwrap();
    let path = AclsFile::path(directory.path());
    let mut contents = std::fs::read(&path).unwrap();
    let last = contents.len() - 2;
    contents[last] ^= 0x01;
    std::fs::write(&path, &contents).unwrap();
    let error = AclsFile::load(directory.path()).unwrap_err();
    assert!(matches!(error, StoreError::Corrupt { .. }), "{error}");
    assert!(error.to_string().contains(&path.display().to_string()));
}

#[test]
fn acls_file_partial_temporary_file_is_ignored() {
    let directory = tempfile::tempdir().unwrap();
    let acls = filter_sample();
    AclsFile::save(directory.path(), &acls).unwrap();
    let path = AclsFile::path(directory.path());
    std::fs::write(path.with_file_name("acls.tmp"), b"spate-acls 1 9999 0000").unwrap();
    assert_eq!(AclsFile::load(directory.path()).unwrap(), acls);
}

#[test]
fn credentials_file_is_not_an_acls_file() {
    let directory = tempfile::tempdir().unwrap();
    spate_security::CredentialsFile::save(directory.path(), &Default::default()).unwrap();
    std::fs::rename(
        spate_security::CredentialsFile::path(directory.path()),
        AclsFile::path(directory.path()),
    )
    .unwrap();
    assert!(matches!(
        AclsFile::load(directory.path()),
        Err(StoreError::Corrupt { .. })
    ));
}

// The naive model: every binding checked in turn, with Kafka's rules spelled as its
// AclAuthorizer spells them (the set of operations whose allow grants the request).

fn naive_authorize(
    bindings: &[AclBinding],
    principal: &Principal,
    host: IpAddr,
    operation: Operation,
    resource_type: ResourceType,
    resource_name: &str,
    super_users: &[Principal],
) -> bool {
    if super_users.iter().any(|user| user == principal) {
        return true;
    }
    let applicable: Vec<&AclBinding> = bindings
        .iter()
        .filter(|binding| binding.resource_type == resource_type)
        .filter(|binding| match binding.pattern {
            Literal => binding.resource_name == resource_name || binding.resource_name == "*",
            Prefixed => resource_name.starts_with(&binding.resource_name),
        })
        .filter(|binding| {
            binding.principal == principal.to_string() || binding.principal == "User:*"
        })
        .filter(|binding| binding.host == "*" || binding.host == host.to_string())
        .collect();
    let exists = |permission: Permission, wanted: Operation| {
        applicable.iter().any(|binding| {
            binding.permission == permission
                && (binding.operation == wanted || binding.operation == All)
        })
    };
    if exists(Deny, operation) {
        return false;
    }
    let allow_operations: &[Operation] = match operation {
        Describe => &[Describe, Read, Write, Delete, Alter],
        DescribeConfigs => &[DescribeConfigs, AlterConfigs],
        _ => &[operation],
    };
    allow_operations.iter().any(|&wanted| exists(Allow, wanted))
}

const NAMES: [&str; 6] = ["a", "ab", "abc", "b", "*", "abd"];
const USERS: [&str; 3] = ["alice", "bob", "carol"];
const HOSTS: [&str; 2] = ["10.0.0.1", "10.0.0.2"];

fn any_binding() -> impl Strategy<Value = AclBinding> {
    (
        prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        prop::sample::select(NAMES.to_vec()),
        prop::sample::select(vec![Literal, Prefixed]),
        prop::sample::select(vec!["User:alice", "User:bob", "User:*"]),
        prop::sample::select(vec!["*", "10.0.0.1", "10.0.0.2"]),
        prop::sample::select(Operation::ALL.to_vec()),
        prop::sample::select(vec![Allow, Deny]),
    )
        .prop_map(
            |(resource_type, name, pattern, principal, host, operation, permission)| {
                binding(
                    resource_type,
                    name,
                    pattern,
                    principal,
                    host,
                    operation,
                    permission,
                )
            },
        )
}

fn any_filter() -> impl Strategy<Value = AclBindingFilter> {
    (
        prop::option::of(prop::sample::select(vec![
            ResourceType::Topic,
            ResourceType::Group,
        ])),
        prop::option::of(prop::sample::select(NAMES.to_vec())),
        prop::sample::select(vec![
            PatternTypeFilter::Any,
            PatternTypeFilter::Match,
            PatternTypeFilter::Literal,
            PatternTypeFilter::Prefixed,
        ]),
        prop::option::of(prop::sample::select(vec!["User:alice", "User:*"])),
        prop::option::of(prop::sample::select(Operation::ALL.to_vec())),
        prop::option::of(prop::sample::select(vec![Allow, Deny])),
    )
        .prop_map(
            |(resource_type, name, pattern, principal, operation, permission)| AclBindingFilter {
                resource_type,
                resource_name: name.map(str::to_string),
                pattern,
                principal: principal.map(str::to_string),
                host: None,
                operation,
                permission,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn authorize_agrees_with_the_naive_model(
        bindings in prop::collection::vec(any_binding(), 0..12),
        user in prop::sample::select(USERS.to_vec()),
        client_host in prop::sample::select(HOSTS.to_vec()),
        operation in prop::sample::select(Operation::ALL.to_vec()),
        resource_type in prop::sample::select(vec![ResourceType::Topic, ResourceType::Group]),
        resource_name in prop::sample::select(NAMES.to_vec()),
        alice_is_super in any::<bool>(),
    ) {
        let mut acls = Acls::default();
        for binding in &bindings {
            acls.add(binding.clone());
        }
        let super_users = if alice_is_super { vec![Principal::user("alice")] } else { vec![] };
        let principal = Principal::user(user);
        let client_host = host(client_host);
        prop_assert_eq!(
            acls.authorize(&principal, client_host, operation, resource_type, resource_name, &super_users),
            naive_authorize(&bindings, &principal, client_host, operation, resource_type, resource_name, &super_users)
        );
    }

    #[test]
    fn matching_and_remove_agree_with_filtering_a_list(
        bindings in prop::collection::vec(any_binding(), 0..12),
        filter in any_filter(),
    ) {
        let mut acls = Acls::default();
        let mut model: Vec<AclBinding> = Vec::new();
        for binding in bindings {
            prop_assert_eq!(acls.add(binding.clone()), !model.contains(&binding));
            if !model.contains(&binding) {
                model.push(binding);
            }
        }
        model.sort();
        let mut expected: Vec<AclBinding> = model.iter().filter(|binding| filter.matches(binding)).cloned().collect();
        expected.sort();
        let mut found = acls.matching(&filter);
        found.sort();
        prop_assert_eq!(&found, &expected);
        let mut removed = acls.remove_matching(&filter);
        removed.sort();
        prop_assert_eq!(&removed, &expected);
        let mut left: Vec<AclBinding> = acls.iter().collect();
        left.sort();
        let kept: Vec<AclBinding> = model.into_iter().filter(|binding| !filter.matches(binding)).collect();
        prop_assert_eq!(left, kept);
        prop_assert_eq!(acls.len(), acls.iter().count());
    }

}

proptest! {
    // Each case fsyncs twice; a few dozen cover the encoding without slowing the suite.
    #![proptest_config(ProptestConfig::with_cases(32))]

    #[test]
    fn saved_acls_load_back(bindings in prop::collection::vec(any_binding(), 0..8)) {
        let directory = tempfile::tempdir().unwrap();
        let mut acls = Acls::default();
        for binding in bindings {
            acls.add(binding);
        }
        AclsFile::save(directory.path(), &acls).unwrap();
        prop_assert_eq!(AclsFile::load(directory.path()).unwrap(), acls);
    }
}
