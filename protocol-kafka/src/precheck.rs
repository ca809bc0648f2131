//! The bounds pre-check in front of the `kafka-protocol` decoders.
//!
//! Those decoders size their vectors from the wire (`Vec::with_capacity(count)` for every
//! array), so a 20-byte request announcing 2^31 elements makes the broker allocate gigabytes
//! before it finds the bytes missing. `precheck` walks a request by its schema (`shapes.rs`,
//! generated from Kafka's JSON schemas) without allocating, and refuses it unless every array
//! count, string, bytes and record-set length, compact length and tagged field fits in the bytes
//! left at that point. A request that passes is then decoded along the same path, so every
//! vector the decoder sizes from a count holds at most one element per byte of the request.
//!
//! The walk follows the decoder exactly where it is laxer than Kafka's own (a nullable struct's
//! presence marker must be -1 or 1, a known tagged field must take exactly its declared size),
//! so that the decoder never reads the bytes differently from the walk. Bytes after the body
//! are allowed, as Kafka's broker allows them.

use std::fmt;

use crate::shape::{Field, Kind, RequestShape, Shape, Versions};
use crate::shapes::{HEADER, REQUESTS};

/// Why a request was refused before decoding. `path` names the field (Kafka's schema names,
/// with element indexes) for the log; `offset` is the byte in the checked slice where the
/// problem was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{request} v{version}: {problem} at {path} (byte {offset})")]
pub struct PrecheckError {
    pub request: &'static str,
    pub version: i16,
    pub path: String,
    pub offset: usize,
    pub problem: Problem,
}

/// What was wrong with a request.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unknown API key {0}")]
    UnknownApiKey(i16),
    #[error("version {version} is not between {min} and {max}")]
    UnsupportedVersion { version: i16, min: i16, max: i16 },
    #[error("{needed} bytes needed, {left} left")]
    Truncated { needed: usize, left: usize },
    #[error("length {length} is beyond the {left} bytes left")]
    LengthBeyondEnd { length: u64, left: usize },
    #[error("{count} elements of at least {element_bytes_min} bytes each are beyond the {left} bytes left")]
    CountBeyondEnd {
        count: u64,
        element_bytes_min: usize,
        left: usize,
    },
    #[error("negative length {0}")]
    NegativeLength(i64),
    #[error("null in a field that is not nullable in this version")]
    NullNotAllowed,
    #[error("unsigned varint longer than 5 bytes")]
    VarintTooLong,
    #[error("struct presence marker {0} (must be -1 or 1)")]
    PresenceMarker(i8),
    #[error("tagged field {tag} declares {declared} bytes but its value takes {used}")]
    TaggedFieldSize {
        tag: u32,
        declared: usize,
        used: usize,
    },
    #[error("tag {0} is not valid in this version")]
    TagNotInVersion(u32),
}

/// Checks `body`, the bytes after the request header, for request `api_key` at `api_version`.
pub fn precheck(api_key: i16, api_version: i16, body: &[u8]) -> Result<(), PrecheckError> {
    let request = request_shape(api_key).ok_or_else(|| PrecheckError {
        request: "request",
        version: api_version,
        path: String::new(),
        offset: 0,
        problem: Problem::UnknownApiKey(api_key),
    })?;
    check_version(request, api_version)?;
    walk_message(request, api_version, body).map(|_| ())
}

/// Checks the request header of `version` (1, or 2 for flexible requests) at the start of
/// `frame`, and returns its length: the body starts there.
pub fn precheck_header(header_version: i16, frame: &[u8]) -> Result<usize, PrecheckError> {
    check_version(&HEADER, header_version)?;
    walk_message(&HEADER, header_version, frame)
}

/// The request header version of `api_key` at `api_version` (2 when the request is flexible),
/// or `None` for a request the table does not have.
pub fn header_version(api_key: i16, api_version: i16) -> Option<i16> {
    let request = request_shape(api_key)?;
    request.versions.contains(api_version).then(|| {
        if request.flexible.contains(api_version) {
            2
        } else {
            1
        }
    })
}

/// The name and versions of `api_key` in the table, as Kafka's schemas name them.
pub fn request_versions(api_key: i16) -> Option<(&'static str, i16, i16)> {
    request_shape(api_key).map(|request| (request.name, request.versions.0, request.versions.1))
}

/// Every API key the table has.
pub fn api_keys() -> impl Iterator<Item = i16> {
    REQUESTS.iter().map(|request| request.api_key)
}

fn request_shape(api_key: i16) -> Option<&'static RequestShape> {
    REQUESTS
        .binary_search_by_key(&api_key, |request| request.api_key)
        .ok()
        .map(|index| &REQUESTS[index])
}

fn check_version(request: &RequestShape, version: i16) -> Result<(), PrecheckError> {
    if request.versions.contains(version) {
        return Ok(());
    }
    Err(PrecheckError {
        request: request.name,
        version,
        path: String::new(),
        offset: 0,
        problem: Problem::UnsupportedVersion {
            version,
            min: request.versions.0,
            max: request.versions.1,
        },
    })
}

/// Walks one message and returns the bytes it took.
fn walk_message(
    request: &RequestShape,
    version: i16,
    bytes: &[u8],
) -> Result<usize, PrecheckError> {
    let mut walk = Walk {
        bytes,
        position: 0,
        version,
        flexible: request.flexible,
    };
    match walk.structure(request.body) {
        Ok(()) => Ok(walk.position),
        Err(failure) => Err((*failure).into_error(request.name, version)),
    }
}

/// One step of the path to a failure, collected on the way out (nothing is allocated unless the
/// request is refused).
enum Segment {
    Field(&'static str),
    Element(u64),
    Tag(u32),
}

struct Failure {
    offset: usize,
    problem: Problem,
    /// Innermost first.
    path: Vec<Segment>,
}

impl Failure {
    fn new(offset: usize, problem: Problem) -> Box<Failure> {
        Box::new(Failure {
            offset,
            problem,
            path: Vec::new(),
        })
    }

    fn into_error(self, request: &'static str, version: i16) -> PrecheckError {
        PrecheckError {
            request,
            version,
            path: PathText(&self.path).to_string(),
            offset: self.offset,
            problem: self.problem,
        }
    }
}

struct PathText<'a>(&'a [Segment]);

impl fmt::Display for PathText<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return formatter.write_str("the top level");
        }
        let mut first = true;
        for segment in self.0.iter().rev() {
            match segment {
                Segment::Field(name) if first => write!(formatter, "{name}")?,
                Segment::Field(name) => write!(formatter, ".{name}")?,
                Segment::Element(index) => write!(formatter, "[{index}]")?,
                Segment::Tag(tag) if first => write!(formatter, "tag {tag}")?,
                Segment::Tag(tag) => write!(formatter, ".tag {tag}")?,
            }
            first = false;
        }
        Ok(())
    }
}

trait Within<T> {
    fn within(self, segment: Segment) -> Result<T, Box<Failure>>;
}

impl<T> Within<T> for Result<T, Box<Failure>> {
    fn within(self, segment: Segment) -> Result<T, Box<Failure>> {
        self.map_err(|mut failure| {
            failure.path.push(segment);
            failure
        })
    }
}

type Step<T = ()> = Result<T, Box<Failure>>;

/// A cursor over the bytes of one message (or one tagged field's value) of one version.
#[derive(Clone, Copy)]
struct Walk<'a> {
    bytes: &'a [u8],
    position: usize,
    version: i16,
    /// The message's flexible versions: compact lengths and tagged-field sections.
    flexible: Versions,
}

impl Walk<'_> {
    fn left(&self) -> usize {
        self.bytes.len() - self.position
    }

    fn fail<T>(&self, problem: Problem) -> Step<T> {
        Err(Failure::new(self.position, problem))
    }

    fn skip(&mut self, count: usize) -> Step {
        if count > self.left() {
            return self.fail(Problem::Truncated {
                needed: count,
                left: self.left(),
            });
        }
        self.position += count;
        Ok(())
    }

    fn read<const N: usize>(&mut self) -> Step<[u8; N]> {
        let start = self.position;
        self.skip(N)?;
        let mut value = [0; N];
        value.copy_from_slice(&self.bytes[start..start + N]);
        Ok(value)
    }

    /// Kafka's unsigned varint, decoded as the `kafka-protocol` crate decodes it (bits past 32
    /// dropped), but refused past 5 bytes, where that crate would stop mid-number.
    fn unsigned_varint(&mut self) -> Step<u32> {
        let mut value: u32 = 0;
        for index in 0..5 {
            let [byte] = self.read::<1>()?;
            value |= u32::from(byte & 0x7f) << (index * 7);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(Failure::new(self.position - 5, Problem::VarintTooLong))
    }

    /// A string, bytes or record-set length: `None` for null.
    fn length(&mut self, compact: bool, nullable: bool, wide: bool) -> Step<Option<usize>> {
        let start = self.position;
        let length = if compact {
            i64::from(self.unsigned_varint()?) - 1
        } else if wide {
            i64::from(i32::from_be_bytes(self.read()?))
        } else {
            i64::from(i16::from_be_bytes(self.read()?))
        };
        match length {
            -1 if nullable => Ok(None),
            -1 => Err(Failure::new(start, Problem::NullNotAllowed)),
            length if length < -1 => Err(Failure::new(start, Problem::NegativeLength(length))),
            length => {
                let left = self.left();
                match usize::try_from(length) {
                    Ok(length) if length <= left => Ok(Some(length)),
                    _ => Err(Failure::new(
                        start,
                        Problem::LengthBeyondEnd {
                            length: length as u64,
                            left,
                        },
                    )),
                }
            }
        }
    }

    fn structure(&mut self, shape: &Shape) -> Step {
        let version = self.version;
        for field in shape
            .fields
            .iter()
            .filter(|field| field.is_regular_in(version))
        {
            self.field(field).within(Segment::Field(field.name))?;
        }
        if self.flexible.contains(self.version) {
            self.tagged_fields(shape)?;
        }
        Ok(())
    }

    fn field(&mut self, field: &Field) -> Step {
        let compact = field
            .flexible
            .unwrap_or(self.flexible)
            .contains(self.version);
        self.value(&field.kind, compact, field.nullable.contains(self.version))
    }

    fn value(&mut self, kind: &Kind, compact: bool, nullable: bool) -> Step {
        if let Some(bytes) = kind.fixed_bytes() {
            return self.skip(bytes);
        }
        match kind {
            Kind::String => self.sized(compact, nullable, false),
            Kind::Bytes | Kind::Records => self.sized(compact, nullable, true),
            Kind::Struct(shape) => {
                if nullable {
                    let start = self.position;
                    match i8::from_be_bytes(self.read()?) {
                        -1 => return Ok(()),
                        1 => {}
                        marker => return Err(Failure::new(start, Problem::PresenceMarker(marker))),
                    }
                }
                self.structure(shape)
            }
            Kind::Array(element) => self.array(element, compact, nullable),
            _ => unreachable!("fixed-size kinds are skipped above"),
        }
    }

    fn sized(&mut self, compact: bool, nullable: bool, wide: bool) -> Step {
        if let Some(length) = self.length(compact, nullable, wide)? {
            self.skip(length)?;
        }
        Ok(())
    }

    fn array(&mut self, element: &Kind, compact: bool, nullable: bool) -> Step {
        let start = self.position;
        let count = if compact {
            i64::from(self.unsigned_varint()?) - 1
        } else {
            i64::from(i32::from_be_bytes(self.read()?))
        };
        let count = match count {
            -1 if nullable => return Ok(()),
            -1 => return Err(Failure::new(start, Problem::NullNotAllowed)),
            count if count < -1 => return Err(Failure::new(start, Problem::NegativeLength(count))),
            count => count as u64,
        };
        // Checked before the first element, as the decoder allocates for all of them at once.
        // An element takes at least one byte in every schema, but the count is held to the bytes
        // left even if one did not, so that the decoder's vector stays within the request.
        let element_bytes_min = self.bytes_min(element, compact, false);
        let left = self.left();
        if count.saturating_mul(element_bytes_min.max(1) as u64) > left as u64 {
            return Err(Failure::new(
                start,
                Problem::CountBeyondEnd {
                    count,
                    element_bytes_min,
                    left,
                },
            ));
        }
        if let Some(bytes) = element.fixed_bytes() {
            return self.skip(count as usize * bytes);
        }
        for index in 0..count {
            self.value(element, compact, false)
                .within(Segment::Element(index))?;
        }
        Ok(())
    }

    /// The fewest bytes a value of `kind` takes in this version.
    fn bytes_min(&self, kind: &Kind, compact: bool, nullable: bool) -> usize {
        if let Some(bytes) = kind.fixed_bytes() {
            return bytes;
        }
        match kind {
            _ if compact && !matches!(kind, Kind::Struct(_)) => 1,
            Kind::String => 2,
            Kind::Bytes | Kind::Records | Kind::Array(_) => 4,
            Kind::Struct(_) if nullable => 1,
            Kind::Struct(shape) => {
                let fields: usize = shape
                    .fields
                    .iter()
                    .filter(|field| field.is_regular_in(self.version))
                    .map(|field| {
                        let compact = field
                            .flexible
                            .unwrap_or(self.flexible)
                            .contains(self.version);
                        self.bytes_min(&field.kind, compact, field.nullable.contains(self.version))
                    })
                    .sum();
                fields + usize::from(self.flexible.contains(self.version))
            }
            _ => unreachable!("fixed-size kinds are answered above"),
        }
    }

    fn tagged_fields(&mut self, shape: &Shape) -> Step {
        let start = self.position;
        let count = self.unsigned_varint()?;
        // Each tagged field takes at least two bytes (its tag and its size).
        let left = self.left();
        if u64::from(count) * 2 > left as u64 {
            return Err(Failure::new(
                start,
                Problem::CountBeyondEnd {
                    count: count.into(),
                    element_bytes_min: 2,
                    left,
                },
            ));
        }
        for _ in 0..count {
            let tag_start = self.position;
            let tag = self.unsigned_varint()?;
            self.tagged_field(shape, tag, tag_start)
                .within(Segment::Tag(tag))?;
        }
        Ok(())
    }

    fn tagged_field(&mut self, shape: &Shape, tag: u32, tag_start: usize) -> Step {
        let size_start = self.position;
        let size = self.unsigned_varint()? as usize;
        if size > self.left() {
            return Err(Failure::new(
                size_start,
                Problem::LengthBeyondEnd {
                    length: size as u64,
                    left: self.left(),
                },
            ));
        }
        let Some(field) = shape
            .fields
            .iter()
            .find(|field| matches!(field.tag, Some((known, _)) if known == tag))
        else {
            return self.skip(size);
        };
        if !field.tagged_in(self.version) {
            return Err(Failure::new(tag_start, Problem::TagNotInVersion(tag)));
        }
        // The decoder reads a known tag's value from the message itself, not from a slice of
        // its declared size, so the value must take exactly that size for the two to agree.
        let value_start = self.position;
        let mut value = Walk {
            bytes: &self.bytes[..value_start + size],
            ..*self
        };
        let walked = value.field(field).within(Segment::Field(field.name));
        let used = value.position - value_start;
        walked?;
        if used != size {
            return Err(Failure::new(
                value_start,
                Problem::TaggedFieldSize {
                    tag,
                    declared: size,
                    used,
                },
            ));
        }
        self.position = value.position;
        Ok(())
    }
}
