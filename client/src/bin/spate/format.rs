//! How `spate consume` prints a record: a kcat-like template (`%t %p %o %k %v %T %h`) compiled
//! once into parts, or one JSON object per line.
//!
//! Both write straight into the output buffer: no per-record `String`. Reading records and
//! deciding which to print is `consume`'s job.

use std::io::{self, Write};

use spate_client::ConsumerRecord;

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key,
    Value,
    Timestamp,
    Headers,
}

/// A compiled `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown format token %{0} (use %t %p %o %k %v %T %h or %%)")]
    UnknownToken(char),
    #[error("the format ends with a lone %")]
    TrailingPercent,
}

impl Template {
    /// The default: the value, then a newline.
    pub fn value_only() -> Self {
        Self {
            parts: vec![Part::Value, Part::Literal(b"\n".to_vec())],
        }
    }

    /// Compiles `text`. `\n`, `\t`, `\r` and `\\` are escapes (shells pass them literally);
    /// a newline is appended unless the template already ends with one, so each record is one
    /// line.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = Vec::new();
        let mut characters = text.chars();
        while let Some(character) = characters.next() {
            match character {
                '%' => {
                    let token = match characters.next() {
                        None => return Err(TemplateError::TrailingPercent),
                        Some('%') => {
                            literal.push(b'%');
                            continue;
                        }
                        Some('t') => Part::Topic,
                        Some('p') => Part::Partition,
                        Some('o') => Part::Offset,
                        Some('k') => Part::Key,
                        Some('v') => Part::Value,
                        Some('T') => Part::Timestamp,
                        Some('h') => Part::Headers,
                        Some(other) => return Err(TemplateError::UnknownToken(other)),
                    };
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(token);
                }
                '\\' => match characters.next() {
                    Some('n') => literal.push(b'\n'),
                    Some('t') => literal.push(b'\t'),
                    Some('r') => literal.push(b'\r'),
                    Some('\\') => literal.push(b'\\'),
                    Some(other) => {
                        literal.push(b'\\');
                        let mut buffer = [0u8; 4];
                        literal.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                    }
                    None => literal.push(b'\\'),
                },
                other => {
                    let mut buffer = [0u8; 4];
                    literal.extend_from_slice(other.encode_utf8(&mut buffer).as_bytes());
                }
            }
        }
        // Literals are only flushed before a token, so the template's last bytes are here.
        if literal.last() != Some(&b'\n') {
            literal.push(b'\n');
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// [`Template::parse`] for clap, so a bad template is a usage error.
    pub fn parse_argument(text: &str) -> Result<Self, String> {
        Self::parse(text).map_err(|error| error.to_string())
    }

    /// Writes one record. Key and value bytes are written as they are; `%h` writes
    /// `key=value` pairs separated by commas.
    pub fn write(&self, output: &mut impl Write, record: &ConsumerRecord<'_>) -> io::Result<()> {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => output.write_all(bytes)?,
                Part::Topic => output.write_all(record.topic().as_bytes())?,
                Part::Partition => write!(output, "{}", record.partition())?,
                Part::Offset => write!(output, "{}", record.offset())?,
                Part::Key => output.write_all(record.key().unwrap_or_default())?,
                Part::Value => output.write_all(record.value().unwrap_or_default())?,
                Part::Timestamp => write!(output, "{}", record.timestamp())?,
                Part::Headers => {
                    for (index, (key, value)) in record.headers().enumerate() {
                        if index > 0 {
                            output.write_all(b",")?;
                        }
                        output.write_all(key.as_bytes())?;
                        output.write_all(b"=")?;
                        output.write_all(value)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Writes one record as a JSON object on one line:
/// `{"topic":..,"partition":..,"offset":..,"timestamp":..,"key":..,"value":..,"headers":[[k,v],..]}`.
/// Key, value and header values that are not UTF-8 are written with U+FFFD for each bad byte
/// sequence; a missing key or a tombstone value is `null`.
pub fn write_json(output: &mut impl Write, record: &ConsumerRecord<'_>) -> io::Result<()> {
    output.write_all(b"{\"topic\":")?;
    write_json_string(output, record.topic().as_bytes())?;
    write!(
        output,
        ",\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":",
        record.partition(),
        record.offset(),
        record.timestamp()
    )?;
    write_json_optional(output, record.key())?;
    output.write_all(b",\"value\":")?;
    write_json_optional(output, record.value())?;
    output.write_all(b",\"headers\":[")?;
    for (index, (key, value)) in record.headers().enumerate() {
        if index > 0 {
            output.write_all(b",")?;
        }
        output.write_all(b"[")?;
        write_json_string(output, key.as_bytes())?;
        output.write_all(b",")?;
        write_json_string(output, value)?;
        output.write_all(b"]")?;
    }
    output.write_all(b"]}\n")
}

fn write_json_optional(output: &mut impl Write, bytes: Option<&[u8]>) -> io::Result<()> {
    match bytes {
        Some(bytes) => write_json_string(output, bytes),
        None => output.write_all(b"null"),
    }
}

fn write_json_string(output: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    output.write_all(b"\"")?;
    for chunk in bytes.utf8_chunks() {
        write_escaped(output, chunk.valid())?;
        if !chunk.invalid().is_empty() {
            output.write_all("\u{fffd}".as_bytes())?;
        }
    }
    output.write_all(b"\"")
}

fn write_escaped(output: &mut impl Write, text: &str) -> io::Result<()> {
    let bytes = text.as_bytes();
    let mut start = 0;
    for (index, &byte) in bytes.iter().enumerate() {
        let escape: Option<&[u8]> = match byte {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f => None,
            _ => continue,
        };
        output.write_all(&bytes[start..index])?;
        match escape {
            Some(escape) => output.write_all(escape)?,
            None => write!(output, "\\u{byte:04x}")?,
        }
        start = index + 1;
    }
    output.write_all(&bytes[start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_template_compiles_tokens_escapes_and_a_final_newline() {
        let template = Template::parse("%t/%p@%o %k=%v %% %T [%h]\\t").unwrap();
        assert_eq!(
            template.parts,
            vec![
                Part::Topic,
                Part::Literal(b"/".to_vec()),
                Part::Partition,
                Part::Literal(b"@".to_vec()),
                Part::Offset,
                Part::Literal(b" ".to_vec()),
                Part::Key,
                Part::Literal(b"=".to_vec()),
                Part::Value,
                Part::Literal(b" % ".to_vec()),
                Part::Timestamp,
                Part::Literal(b" [".to_vec()),
                Part::Headers,
                Part::Literal(b"]\t\n".to_vec()),
            ]
        );
    }

    #[test]
    fn a_template_that_ends_with_a_newline_gets_no_second_one() {
        let template = Template::parse("%v\\n").unwrap();
        assert_eq!(
            template.parts,
            vec![Part::Value, Part::Literal(b"\n".to_vec())]
        );
    }

    #[test]
    fn unknown_tokens_are_refused() {
        assert_eq!(Template::parse("%x"), Err(TemplateError::UnknownToken('x')));
        assert_eq!(Template::parse("50%"), Err(TemplateError::TrailingPercent));
    }

    #[test]
    fn json_strings_escape_controls_and_replace_invalid_utf8() {
        let mut output = Vec::new();
        write_json_string(&mut output, b"a\"b\\c\nd\x01e\xfff").unwrap();
        assert_eq!(
            String::from_utf8(output).unwrap(),
            "\"a\\\"b\\\\c\\nd\\u0001e\u{fffd}f\""
        );
    }
}
