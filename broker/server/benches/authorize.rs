//! What an authorization check costs a request (issue #17), measured in pairs:
//! - `authorize/off`: authorization off, the check every request makes when no listener needs
//!   it (today's default);
//! - `authorize/cached`: on, answered from the connection's decision cache (a producer's Write on
//!   its topic, every produce after the first);
//! - `authorize/cold_<n>_bindings`: on, the ACLs walked (`Acls::authorize`, what a cache miss
//!   pays) with `n` bindings in the snapshot;
//! - `authorize/miss_and_insert_<n>_bindings`: on, through the authorizer with every check a
//!   cache miss (names cycling past the cache's bound): the walk plus the cache's bookkeeping.
//!
//! The bindings are what a busy cluster holds: per topic, Read for one of a hundred users; some
//! prefixed Write bindings; a wildcard Describe. Run: `cargo bench -p spate-server --bench
//! authorize` (add `-- --measurement-time 1` for a quicker pass).

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use spate_security::{AclBinding, Operation, PatternType, Permission, Principal, ResourceType};
use spate_server::auth::acls::{apply, AclChange, AclStore};
use spate_server::auth::authorizer::DECISIONS_PER_CONNECTION_MAX;
use spate_server::auth::{Authorizer, Session};
use spate_server::config::AuthorizationConfig;

fn binding(principal: &str, name: &str, pattern: PatternType, operation: Operation) -> AclBinding {
    AclBinding {
        resource_type: ResourceType::Topic,
        resource_name: name.to_string(),
        pattern,
        principal: principal.to_string(),
        host: "*".to_string(),
        operation,
        permission: Permission::Allow,
    }
}

/// `topics` literal Read bindings spread over a hundred users, ten prefixed Write bindings, a
/// wildcard Describe, and alice's Write on every topic `topic-<n>` (prefixed "topic-").
fn bindings(topics: usize) -> Vec<AclBinding> {
    let mut bindings: Vec<AclBinding> = (0..topics)
        .map(|index| {
            binding(
                &format!("User:user-{}", index % 100),
                &format!("topic-{index}"),
                PatternType::Literal,
                Operation::Read,
            )
        })
        .collect();
    bindings.extend((0..10).map(|index| {
        binding(
            &format!("User:user-{index}"),
            &format!("team-{index}-"),
            PatternType::Prefixed,
            Operation::Write,
        )
    }));
    bindings.push(binding(
        "User:*",
        "*",
        PatternType::Literal,
        Operation::Describe,
    ));
    bindings.push(binding(
        "User:alice",
        "topic-",
        PatternType::Prefixed,
        Operation::Write,
    ));
    bindings
}

fn authorizer(directory: &std::path::Path, enabled: bool, topics: usize) -> Authorizer {
    let store = AclStore::open(directory).expect("open the ACL store");
    store
        .change_blocking(|acls| apply(acls, AclChange::Create(bindings(topics))))
        .expect("write the ACLs");
    let config = AuthorizationConfig {
        enabled,
        super_users: vec![Principal::user("admin")],
    };
    Authorizer::new(&config, Arc::new(store))
}

fn session() -> Session {
    Session::authenticated_as(
        Principal::user("alice"),
        Some("10.1.2.3:40000".parse().expect("an address")),
    )
}

fn bench_authorize(criterion: &mut Criterion) {
    let mut group = criterion.benchmark_group("authorize");
    let directory = tempfile::tempdir().expect("temporary directory");

    let off = authorizer(&directory.path().join("off"), false, 1000);
    let session_off = session();
    group.bench_function("off", |bencher| {
        bencher.iter(|| {
            black_box(off.authorize(
                &session_off,
                Operation::Write,
                ResourceType::Topic,
                black_box("topic-500"),
            ))
        })
    });

    let on = authorizer(&directory.path().join("on"), true, 1000);
    let session_on = session();
    assert!(on.authorize(
        &session_on,
        Operation::Write,
        ResourceType::Topic,
        "topic-500"
    ));
    group.bench_function("cached", |bencher| {
        bencher.iter(|| {
            black_box(on.authorize(
                &session_on,
                Operation::Write,
                ResourceType::Topic,
                black_box("topic-500"),
            ))
        })
    });

    let alice = Principal::user("alice");
    let host = "10.1.2.3".parse().expect("an address");
    let super_users = [Principal::user("admin")];
    for topics in [10, 1000, 100_000] {
        let directory = directory.path().join(format!("cold-{topics}"));
        let authorizer = authorizer(&directory, true, topics);
        let snapshot = authorizer.acls().snapshot();
        assert!(snapshot.acls.authorize(
            &alice,
            host,
            Operation::Write,
            ResourceType::Topic,
            "topic-5",
            &super_users
        ));
        group.bench_function(format!("cold_{topics}_bindings"), |bencher| {
            bencher.iter(|| {
                black_box(snapshot.acls.authorize(
                    &alice,
                    host,
                    Operation::Write,
                    ResourceType::Topic,
                    black_box("topic-5"),
                    &super_users,
                ))
            })
        });

        // Twice the cache's bound of names: every check misses.
        let names: Vec<String> = (0..2 * DECISIONS_PER_CONNECTION_MAX)
            .map(|index| format!("topic-{index}"))
            .collect();
        let session = session();
        let mut next = 0;
        group.bench_function(format!("miss_and_insert_{topics}_bindings"), |bencher| {
            bencher.iter(|| {
                next = (next + 1) % names.len();
                black_box(authorizer.authorize(
                    &session,
                    Operation::Write,
                    ResourceType::Topic,
                    &names[next],
                ))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_authorize);
criterion_main!(benches);
