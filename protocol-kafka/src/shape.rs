//! The vocabulary of the generated request table (`shapes.rs`): a request's fields, each with its
//! wire type and the versions in which it is present, nullable, tagged or compact. Only what the
//! bounds pre-check needs to walk a request is kept (no defaults, no documentation).

/// The newest version: `N+` in a schema is `V(N, MAX)`.
pub(crate) const MAX: i16 = i16::MAX;

/// No version at all (`"none"` in a schema, or a key that is absent).
pub(crate) const NONE: Versions = Versions(1, 0);

/// An inclusive range of versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Versions(pub(crate) i16, pub(crate) i16);

impl Versions {
    pub(crate) const fn contains(self, version: i16) -> bool {
        self.0 <= version && version <= self.1
    }
}

/// A field's wire type.
#[derive(Debug)]
pub(crate) enum Kind {
    Bool,
    Int8,
    Int16,
    Uint16,
    Int32,
    Int64,
    Float64,
    Uuid,
    /// `int16` length (compact: unsigned varint length + 1) then UTF-8.
    String,
    /// `int32` length (compact: unsigned varint length + 1) then bytes.
    Bytes,
    /// A record set: on the wire exactly like `Bytes`.
    Records,
    /// A nested structure; nullable ones carry a one-byte presence marker.
    Struct(&'static Shape),
    /// `int32` count (compact: unsigned varint count + 1) then that many elements.
    Array(&'static Kind),
}

impl Kind {
    /// The size of a fixed-size type, `None` for the others.
    pub(crate) const fn fixed_bytes(&self) -> Option<usize> {
        match self {
            Kind::Bool | Kind::Int8 => Some(1),
            Kind::Int16 | Kind::Uint16 => Some(2),
            Kind::Int32 => Some(4),
            Kind::Int64 | Kind::Float64 => Some(8),
            Kind::Uuid => Some(16),
            Kind::String | Kind::Bytes | Kind::Records | Kind::Struct(_) | Kind::Array(_) => None,
        }
    }
}

/// A structure: the message body itself, a nested struct or a common struct.
#[derive(Debug)]
pub(crate) struct Shape {
    pub(crate) fields: &'static [Field],
}

/// One field of a structure.
#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) kind: Kind,
    /// The versions in which the field exists.
    pub(crate) versions: Versions,
    /// The versions in which it may be null (length, count or marker -1).
    pub(crate) nullable: Versions,
    /// Its tag, when it travels in the tagged-field section, and the versions in which it does.
    pub(crate) tag: Option<(u32, Versions)>,
    /// The versions in which it is compact, when not the message's flexible versions (the
    /// header's client id is never compact).
    pub(crate) flexible: Option<Versions>,
}

/// A field present in `versions`, nullable in `nullable`, neither tagged nor specially compact.
pub(crate) const fn field(
    name: &'static str,
    kind: Kind,
    versions: Versions,
    nullable: Versions,
) -> Field {
    Field {
        name,
        kind,
        versions,
        nullable,
        tag: None,
        flexible: None,
    }
}

impl Field {
    pub(crate) const fn tagged(mut self, tag: u32, versions: Versions) -> Field {
        self.tag = Some((tag, versions));
        self
    }

    pub(crate) const fn flexible(mut self, versions: Versions) -> Field {
        self.flexible = Some(versions);
        self
    }

    /// Whether the field is in the fixed sequence of a message of `version`.
    pub(crate) fn is_regular_in(&self, version: i16) -> bool {
        self.versions.contains(version) && !self.tagged_in(version)
    }

    /// Whether the field travels as tag `tag` in a message of `version`.
    pub(crate) fn tagged_in(&self, version: i16) -> bool {
        matches!(self.tag, Some((_, tagged)) if tagged.contains(version))
    }
}

/// A request: its API key, the versions the decoder has, which of them are flexible (compact
/// lengths and tagged fields), and the body's shape.
#[derive(Debug)]
pub(crate) struct RequestShape {
    pub(crate) api_key: i16,
    pub(crate) name: &'static str,
    pub(crate) versions: Versions,
    pub(crate) flexible: Versions,
    pub(crate) body: &'static Shape,
}
