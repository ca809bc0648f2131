//! Principals: Kafka's "Type:name" text, both ways.

use spate_security::Principal;

#[test]
fn user_and_anonymous_display_as_kafka_writes_them() {
    assert_eq!(Principal::user("alice").to_string(), "User:alice");
    assert_eq!(Principal::anonymous().to_string(), "User:ANONYMOUS");
}

#[test]
fn parse_splits_at_the_first_colon() {
    assert_eq!(
        Principal::parse("User:alice"),
        Some(Principal::user("alice"))
    );
    let parsed = Principal::parse("User:CN=a:b").unwrap();
    assert_eq!(
        (parsed.kind.as_str(), parsed.name.as_str()),
        ("User", "CN=a:b")
    );
    assert_eq!(Principal::parse("User:*"), Some(Principal::user("*")));
    for text in ["alice", "User:", ":alice", ""] {
        assert_eq!(Principal::parse(text), None, "{text}");
    }
    let principal = Principal::user("a:b");
    assert_eq!(Principal::parse(&principal.to_string()), Some(principal));
}
