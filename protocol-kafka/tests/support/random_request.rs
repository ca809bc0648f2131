//! Random well-formed requests of any API and version, written field by field from the same
//! generated shape table the pre-check walks (`src/shapes.rs`, mounted into the test crate), so
//! that the `kafka-protocol` decoder and encoder can be checked against it for every schema.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::shape::{Field, Kind, RequestShape, Shape, Versions};

/// The first unknown tag number written: above every known tag, as Kafka requires tags in
/// ascending order and `kafka-protocol` writes its known tags before the unknown ones.
const UNKNOWN_TAG_FIRST: u32 = 1000;

/// A request body written at random, and whether it holds a known tagged field (which the
/// encoder leaves out when it equals its default, so such bodies do not round-trip byte for byte).
pub struct RandomBody {
    pub bytes: Vec<u8>,
    pub has_known_tag: bool,
}

pub struct RandomWriter {
    random: StdRng,
    version: i16,
    flexible: Versions,
    depth: u32,
    has_known_tag: bool,
}

impl RandomWriter {
    pub fn new(seed: u64) -> RandomWriter {
        RandomWriter {
            random: StdRng::seed_from_u64(seed),
            version: 0,
            flexible: Versions(1, 0),
            depth: 0,
            has_known_tag: false,
        }
    }

    /// A body of `request` at `version`.
    pub fn body(&mut self, request: &RequestShape, version: i16) -> RandomBody {
        self.version = version;
        self.flexible = request.flexible;
        self.has_known_tag = false;
        let mut bytes = Vec::new();
        self.structure(&mut bytes, request.body);
        RandomBody {
            bytes,
            has_known_tag: self.has_known_tag,
        }
    }

    /// A request header of `header_version` for `api_key` at `api_version`.
    pub fn header(
        &mut self,
        header: &RequestShape,
        header_version: i16,
        api_key: i16,
        api_version: i16,
    ) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&api_key.to_be_bytes());
        bytes.extend_from_slice(&api_version.to_be_bytes());
        bytes.extend_from_slice(&self.random.gen::<i32>().to_be_bytes());
        let mut rest = self.body(header, header_version).bytes;
        // The shape's first three fields are the ones written above; drop the random ones.
        rest.drain(..8);
        bytes.extend_from_slice(&rest);
        bytes
    }

    fn structure(&mut self, out: &mut Vec<u8>, shape: &Shape) {
        self.depth += 1;
        let version = self.version;
        for field in shape
            .fields
            .iter()
            .filter(|field| field.is_regular_in(version))
        {
            self.field(out, field);
        }
        if self.flexible.contains(self.version) {
            self.tagged_fields(out, shape);
        }
        self.depth -= 1;
    }

    fn field(&mut self, out: &mut Vec<u8>, field: &Field) {
        let compact = field
            .flexible
            .unwrap_or(self.flexible)
            .contains(self.version);
        let nullable = field.nullable.contains(self.version);
        self.value(out, &field.kind, compact, nullable);
    }

    fn value(&mut self, out: &mut Vec<u8>, kind: &Kind, compact: bool, nullable: bool) {
        let null = nullable && self.random.gen_ratio(1, 5);
        match kind {
            // The decoder reads any non-zero byte as true but writes 1.
            Kind::Bool => out.push(self.random.gen_range(0..=1)),
            Kind::Int8 => out.push(self.random.gen()),
            Kind::Int16 | Kind::Uint16 => out.extend_from_slice(&self.random.gen::<[u8; 2]>()),
            Kind::Int32 => out.extend_from_slice(&self.random.gen::<[u8; 4]>()),
            Kind::Int64 => out.extend_from_slice(&self.random.gen::<[u8; 8]>()),
            // Finite, so that the decoded value equals itself.
            Kind::Float64 => {
                out.extend_from_slice(&self.random.gen_range(-1e9..1e9f64).to_be_bytes())
            }
            Kind::Uuid => out.extend_from_slice(&self.random.gen::<[u8; 16]>()),
            Kind::String => {
                let text: Vec<u8> = (0..self.length())
                    .map(|_| self.random.gen_range(b' '..=b'~'))
                    .collect();
                self.sized(out, compact, false, (!null).then_some(text.as_slice()));
            }
            Kind::Bytes | Kind::Records => {
                let data: Vec<u8> = (0..self.length() * 2).map(|_| self.random.gen()).collect();
                self.sized(out, compact, true, (!null).then_some(data.as_slice()));
            }
            Kind::Struct(shape) => {
                if nullable {
                    out.push(if null { 0xff } else { 1 });
                    if null {
                        return;
                    }
                }
                self.structure(out, shape);
            }
            Kind::Array(element) => {
                let count = if null { None } else { Some(self.count()) };
                match (compact, count) {
                    (true, None) => out.push(0),
                    (true, Some(count)) => unsigned_varint(out, count + 1),
                    (false, None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
                    (false, Some(count)) => out.extend_from_slice(&(count as i32).to_be_bytes()),
                }
                for _ in 0..count.unwrap_or(0) {
                    self.value(out, element, compact, false);
                }
            }
        }
    }

    fn sized(&mut self, out: &mut Vec<u8>, compact: bool, wide: bool, value: Option<&[u8]>) {
        match (compact, wide, value) {
            (true, _, None) => out.push(0),
            (true, _, Some(value)) => unsigned_varint(out, value.len() as u32 + 1),
            (false, false, None) => out.extend_from_slice(&(-1i16).to_be_bytes()),
            (false, false, Some(value)) => {
                out.extend_from_slice(&(value.len() as i16).to_be_bytes())
            }
            (false, true, None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
            (false, true, Some(value)) => {
                out.extend_from_slice(&(value.len() as i32).to_be_bytes())
            }
        }
        out.extend_from_slice(value.unwrap_or_default());
    }

    fn tagged_fields(&mut self, out: &mut Vec<u8>, shape: &Shape) {
        let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
        let mut known: Vec<&Field> = shape
            .fields
            .iter()
            .filter(|field| field.tagged_in(self.version))
            .collect();
        known.sort_by_key(|field| field.tag.map(|(tag, _)| tag));
        for field in known {
            if self.random.gen_ratio(1, 2) {
                let mut value = Vec::new();
                self.field(&mut value, field);
                fields.push((field.tag.expect("known tagged field").0, value));
                self.has_known_tag = true;
            }
        }
        let mut tag = UNKNOWN_TAG_FIRST;
        for _ in 0..self.random.gen_range(0..=2) {
            tag += self.random.gen_range(1..1000);
            let value: Vec<u8> = (0..self.random.gen_range(0..8))
                .map(|_| self.random.gen())
                .collect();
            fields.push((tag, value));
        }
        unsigned_varint(out, fields.len() as u32);
        for (tag, value) in fields {
            unsigned_varint(out, tag);
            unsigned_varint(out, value.len() as u32);
            out.extend_from_slice(&value);
        }
    }

    /// String and bytes lengths: mostly short, sometimes long enough for a two-byte varint.
    fn length(&mut self) -> usize {
        if self.random.gen_ratio(1, 20) {
            self.random.gen_range(100..200)
        } else {
            self.random.gen_range(0..12)
        }
    }

    /// Element counts: fewer the deeper the array, so that bodies stay small.
    fn count(&mut self) -> u32 {
        let most = if self.depth > 3 { 1 } else { 4 };
        self.random.gen_range(0..=most)
    }
}

pub fn unsigned_varint(out: &mut Vec<u8>, mut value: u32) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}
