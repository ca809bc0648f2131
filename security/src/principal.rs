//! Who a connection acts as: Kafka's `KafkaPrincipal`, a kind ("User") and a name, written
//! "User:alice". ACL bindings name principals in this text form, and "User:*" in a binding
//! stands for every user.

use std::fmt;

/// An authenticated identity (or `User:ANONYMOUS` on a listener without authentication).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Principal {
    /// The principal type; every principal Spate makes is a "User", as Kafka's are.
    pub kind: String,
    pub name: String,
}

impl Principal {
    /// The principal type Kafka gives every authenticated user.
    pub const USER_KIND: &'static str = "User";
    /// The name Kafka gives connections on listeners without authentication.
    pub const ANONYMOUS_NAME: &'static str = "ANONYMOUS";

    pub fn user(name: &str) -> Self {
        Self {
            kind: Self::USER_KIND.to_string(),
            name: name.to_string(),
        }
    }

    pub fn anonymous() -> Self {
        Self::user(Self::ANONYMOUS_NAME)
    }

    /// Parses "Kind:name", splitting at the first colon (a name may hold colons, a kind may not).
    /// Both parts must be non-empty; Kafka's parser lets an empty name through, but no binding
    /// or super user can mean one.
    pub fn parse(text: &str) -> Option<Self> {
        let (kind, name) = text.split_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Self {
            kind: kind.to_string(),
            name: name.to_string(),
        })
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}:{}", self.kind, self.name)
    }
}
