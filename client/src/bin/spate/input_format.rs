//! `spate produce --format`: an input template, as `rpk produce -f '%k %v\n'`. Literals and
//! fields (`%k` key, `%v` value, `%T` timestamp in ms); the literal after the last field ends a
//! record (a newline when the template ends with a field), and each field runs up to the first
//! occurrence of the literal that follows it.
//!
//! This file only splits a record's bytes; reading records and sending them is `produce`'s job.

/// One piece of a compiled input template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Key,
    Value,
    Timestamp,
}

/// A compiled `produce --format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputTemplate {
    /// The parts of a record, its ending delimiter excluded.
    parts: Vec<Part>,
    /// What ends a record.
    delimiter: Vec<u8>,
}

/// The fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fields<'a> {
    pub key: Option<&'a [u8]>,
    pub value: &'a [u8],
    pub timestamp_ms: Option<i64>,
}

impl InputTemplate {
    /// Compiles `text` for clap: `\n`, `\t`, `\r`, `\\` are escapes, `%%` a percent sign.
    pub fn parse_argument(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut characters = text.chars();
        while let Some(character) = characters.next() {
            let field = match character {
                '%' => match characters.next() {
                    Some('%') => {
                        literal.push(b'%');
                        continue;
                    }
                    Some('k') => Part::Key,
                    Some('v') => Part::Value,
                    Some('T') => Part::Timestamp,
                    Some(other) => {
                        return Err(format!("unknown input token %{other} (use %k %v %T or %%)"))
                    }
                    None => return Err("the format ends with a lone %".to_string()),
                },
                '\\' => {
                    match characters.next() {
                        Some('n') => literal.push(b'\n'),
                        Some('t') => literal.push(b'\t'),
                        Some('r') => literal.push(b'\r'),
                        Some('\\') | None => literal.push(b'\\'),
                        Some(other) => {
                            literal.push(b'\\');
                            let mut buffer = [0u8; 4];
                            literal.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                        }
                    }
                    continue;
                }
                other => {
                    let mut buffer = [0u8; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                    continue;
                }
            };
            if !literal.is_empty() {
                parts.push(Part::Literal(std::mem::take(&mut literal)));
            } else if parts
                .last()
                .is_some_and(|last| !matches!(last, Part::Literal(_)))
            {
                return Err("two fields need text between them to tell where one ends".into());
            }
            if parts.contains(&field) {
                return Err("each of %k %v %T may appear once".into());
            }
            parts.push(field);
        }
        if !parts.contains(&Part::Value) {
            return Err("the format needs %v".into());
        }
        let delimiter = if literal.is_empty() {
            b"\n".to_vec()
        } else {
            literal
        };
        Ok(Self { parts, delimiter })
    }

    /// What ends a record.
    pub fn delimiter(&self) -> &[u8] {
        &self.delimiter
    }

    /// Splits one record (its delimiter removed) into fields; `None` if it does not match.
    pub fn split<'a>(&self, record: &'a [u8]) -> Option<Fields<'a>> {
        let mut fields = Fields {
            key: None,
            value: &[],
            timestamp_ms: None,
        };
        let mut rest = record;
        for (index, part) in self.parts.iter().enumerate() {
            let field = match part {
                Part::Literal(literal) => {
                    rest = rest.strip_prefix(literal.as_slice())?;
                    continue;
                }
                field => field,
            };
            let end = match self.parts.get(index + 1) {
                Some(Part::Literal(next)) => find(rest, next)?,
                _ => rest.len(),
            };
            let (bytes, after) = rest.split_at(end);
            rest = after;
            match field {
                Part::Key => fields.key = Some(bytes),
                Part::Value => fields.value = bytes,
                Part::Timestamp => {
                    fields.timestamp_ms = Some(std::str::from_utf8(bytes).ok()?.parse().ok()?)
                }
                Part::Literal(_) => unreachable!("literals were handled above"),
            }
        }
        rest.is_empty().then_some(fields)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_value_template_splits_at_its_literals_and_ends_at_its_last() {
        let template = InputTemplate::parse_argument("%k %v\\n").unwrap();
        assert_eq!(template.delimiter(), b"\n");
        let fields = template.split(b"alice paid in full").unwrap();
        assert_eq!(fields.key, Some(&b"alice"[..]));
        assert_eq!(fields.value, b"paid in full");
        assert_eq!(template.split(b"no-space"), None);

        let template = InputTemplate::parse_argument("[%T] %k=%v;").unwrap();
        assert_eq!(template.delimiter(), b";");
        let fields = template.split(b"[1767225600000] k=v").unwrap();
        assert_eq!(fields.timestamp_ms, Some(1_767_225_600_000));
        assert_eq!(fields.key, Some(&b"k"[..]));
        assert_eq!(fields.value, b"v");
        assert_eq!(template.split(b"[soon] k=v"), None);
        assert_eq!(template.split(b"k=v"), None);
    }

    #[test]
    fn templates_that_cannot_be_split_are_refused() {
        for bad in ["%k%v", "%k", "%v %v", "%x", "%v %"] {
            assert!(InputTemplate::parse_argument(bad).is_err(), "{bad}");
        }
    }
}
