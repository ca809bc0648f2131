//! How `spate consume` prints a record: a kcat-like template (`%t %p %o %k %v %K %S %T %d %h`,
//! keys and values optionally `{hex}` or `{base64}`) compiled once into parts, or one JSON object
//! per line.
//!
//! Both write straight into the output buffer: no per-record `String`. Reading records and
//! deciding which to print is `consume`'s job.

use std::io::{self, Write};

use spate_client::ConsumerRecord;

use crate::encoding::{
    check_strftime, write_base64, write_hex, write_rfc3339, write_strftime, Encoding,
};

/// One piece of a compiled template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(Vec<u8>),
    Topic,
    Partition,
    Offset,
    Key(Encoding),
    Value(Encoding),
    KeySize,
    ValueSize,
    Timestamp,
    Date,
    /// `%d{strftime[PATTERN]}`: the timestamp through a checked strftime pattern, in UTC.
    DateFormatted(String),
    Headers,
}

/// A compiled `--format` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    /// Printed for a missing key or a tombstone's value (`-Z`); nothing by default.
    null_marker: Vec<u8>,
}

/// Why a template cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unknown format token %{0} (use %t %p %o %k %v %K %S %T %d %h or %%)")]
    UnknownToken(char),
    #[error("the format ends with a lone %")]
    TrailingPercent,
    #[error("unknown modifier {{{0}}} (use {{text}}, {{hex}} or {{base64}} after %k or %v)")]
    UnknownModifier(String),
    #[error(
        "bad date modifier {{{0}}} (use %d{{strftime[PATTERN]}} with %Y %m %d %H %M %S %L %F %T \
         %s %j %a %b %Z %%)"
    )]
    DateModifier(String),
}

impl Template {
    /// The default: the value, then a newline.
    pub fn value_only() -> Self {
        Self {
            parts: vec![Part::Value(Encoding::Text), Part::Literal(b"\n".to_vec())],
            null_marker: Vec::new(),
        }
    }

    /// The same template, printing `marker` for a missing key or value.
    pub fn with_null_marker(mut self, marker: &str) -> Self {
        self.null_marker = marker.as_bytes().to_vec();
        self
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
                        Some(kind @ ('k' | 'v')) => {
                            let mut encoding = Encoding::Text;
                            if characters.as_str().starts_with('{') {
                                let rest = &characters.as_str()[1..];
                                let name = rest.split('}').next().unwrap_or_default();
                                if !rest.contains('}') {
                                    return Err(TemplateError::UnknownModifier(rest.to_string()));
                                }
                                encoding = Encoding::from_modifier(name).ok_or_else(|| {
                                    TemplateError::UnknownModifier(name.to_string())
                                })?;
                                characters = rest[name.len() + 1..].chars();
                            }
                            if kind == 'k' {
                                Part::Key(encoding)
                            } else {
                                Part::Value(encoding)
                            }
                        }
                        Some('K') => Part::KeySize,
                        Some('S') => Part::ValueSize,
                        Some('T') => Part::Timestamp,
                        Some('d') if characters.as_str().starts_with('{') => {
                            let rest = &characters.as_str()[1..];
                            let modifier = rest.split('}').next().unwrap_or_default();
                            let pattern = rest
                                .strip_prefix("strftime[")
                                .and_then(|pattern| pattern.split_once("]}"))
                                .map(|(pattern, _)| pattern)
                                .filter(|pattern| check_strftime(pattern))
                                .ok_or_else(|| TemplateError::DateModifier(modifier.to_string()))?;
                            characters =
                                rest["strftime[".len() + pattern.len() + "]}".len()..].chars();
                            Part::DateFormatted(pattern.to_string())
                        }
                        Some('d') => Part::Date,
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
        Ok(Self {
            parts,
            null_marker: Vec::new(),
        })
    }

    /// [`Template::parse`] for clap, so a bad template is a usage error.
    pub fn parse_argument(text: &str) -> Result<Self, String> {
        Self::parse(text).map_err(|error| error.to_string())
    }

    /// Writes one record. Key and value bytes are written as they are unless a modifier encodes
    /// them; `%K` and `%S` are their sizes (-1 when missing, as kcat prints); `%h` writes
    /// `key=value` pairs separated by commas.
    pub fn write(&self, output: &mut impl Write, record: &ConsumerRecord<'_>) -> io::Result<()> {
        for part in &self.parts {
            match part {
                Part::Literal(bytes) => output.write_all(bytes)?,
                Part::Topic => output.write_all(record.topic().as_bytes())?,
                Part::Partition => write!(output, "{}", record.partition())?,
                Part::Offset => write!(output, "{}", record.offset())?,
                Part::Key(encoding) => self.write_bytes(output, record.key(), *encoding)?,
                Part::Value(encoding) => self.write_bytes(output, record.value(), *encoding)?,
                Part::KeySize => write!(output, "{}", size(record.key()))?,
                Part::ValueSize => write!(output, "{}", size(record.value()))?,
                Part::Timestamp => write!(output, "{}", record.timestamp())?,
                Part::Date => write_rfc3339(output, record.timestamp())?,
                Part::DateFormatted(pattern) => {
                    write_strftime(output, pattern, record.timestamp())?
                }
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

impl Template {
    fn write_bytes(
        &self,
        output: &mut impl Write,
        bytes: Option<&[u8]>,
        encoding: Encoding,
    ) -> io::Result<()> {
        match bytes {
            None => output.write_all(&self.null_marker),
            Some(bytes) => write_encoded(output, bytes, encoding),
        }
    }
}

/// The size kcat prints: bytes, or -1 for a missing key or value.
fn size(bytes: Option<&[u8]>) -> i64 {
    bytes.map_or(-1, |bytes| bytes.len() as i64)
}

fn write_encoded(output: &mut impl Write, bytes: &[u8], encoding: Encoding) -> io::Result<()> {
    match encoding {
        Encoding::Text => output.write_all(bytes),
        Encoding::Hex => write_hex(output, bytes),
        Encoding::Base64 => write_base64(output, bytes),
    }
}

/// Writes one record as a JSON object on one line:
/// `{"topic":..,"partition":..,"offset":..,"timestamp":..,"key":..,"value":..,"headers":[[k,v],..]}`.
/// With [`Encoding::Text`], key, value and header values that are not UTF-8 are written with
/// U+FFFD for each bad byte sequence; hex and base64 keep every byte (header values too). A
/// missing key or a tombstone value is `null`, an empty one `""`.
pub fn write_json(
    output: &mut impl Write,
    record: &ConsumerRecord<'_>,
    encoding: Encoding,
) -> io::Result<()> {
    output.write_all(b"{\"topic\":")?;
    write_json_string(output, record.topic().as_bytes())?;
    write!(
        output,
        ",\"partition\":{},\"offset\":{},\"timestamp\":{},\"key\":",
        record.partition(),
        record.offset(),
        record.timestamp()
    )?;
    write_json_optional(output, record.key(), encoding)?;
    output.write_all(b",\"value\":")?;
    write_json_optional(output, record.value(), encoding)?;
    output.write_all(b",\"headers\":[")?;
    for (index, (key, value)) in record.headers().enumerate() {
        if index > 0 {
            output.write_all(b",")?;
        }
        output.write_all(b"[")?;
        write_json_string(output, key.as_bytes())?;
        output.write_all(b",")?;
        write_json_encoded(output, value, encoding)?;
        output.write_all(b"]")?;
    }
    output.write_all(b"]}\n")
}

fn write_json_optional(
    output: &mut impl Write,
    bytes: Option<&[u8]>,
    encoding: Encoding,
) -> io::Result<()> {
    match bytes {
        Some(bytes) => write_json_encoded(output, bytes, encoding),
        None => output.write_all(b"null"),
    }
}

fn write_json_encoded(output: &mut impl Write, bytes: &[u8], encoding: Encoding) -> io::Result<()> {
    match encoding {
        Encoding::Text => write_json_string(output, bytes),
        // Hex and base64 digits need no JSON escaping.
        encoded => {
            output.write_all(b"\"")?;
            write_encoded(output, bytes, encoded)?;
            output.write_all(b"\"")
        }
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
                Part::Key(Encoding::Text),
                Part::Literal(b"=".to_vec()),
                Part::Value(Encoding::Text),
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
            vec![Part::Value(Encoding::Text), Part::Literal(b"\n".to_vec())]
        );
    }

    #[test]
    fn keys_and_values_take_an_encoding_modifier_and_sizes_and_dates_are_tokens() {
        let template = Template::parse("%k{hex} %v{base64} %K %S %d %v{text}").unwrap();
        assert_eq!(
            template.parts,
            vec![
                Part::Key(Encoding::Hex),
                Part::Literal(b" ".to_vec()),
                Part::Value(Encoding::Base64),
                Part::Literal(b" ".to_vec()),
                Part::KeySize,
                Part::Literal(b" ".to_vec()),
                Part::ValueSize,
                Part::Literal(b" ".to_vec()),
                Part::Date,
                Part::Literal(b" ".to_vec()),
                Part::Value(Encoding::Text),
                Part::Literal(b"\n".to_vec()),
            ]
        );
        assert_eq!(
            Template::parse("%v{rot13}"),
            Err(TemplateError::UnknownModifier("rot13".into()))
        );
        assert!(Template::parse("%v{hex").is_err());
    }

    #[test]
    fn a_date_takes_a_strftime_pattern_as_rpk_writes_it() {
        let template = Template::parse("%d{strftime[%Y-%m-%d %H:%M:%S]}|%v").unwrap();
        assert_eq!(
            template.parts,
            vec![
                Part::DateFormatted("%Y-%m-%d %H:%M:%S".into()),
                Part::Literal(b"|".to_vec()),
                Part::Value(Encoding::Text),
                Part::Literal(b"\n".to_vec()),
            ]
        );
        assert_eq!(
            Template::parse("%d{go[2006]}"),
            Err(TemplateError::DateModifier("go[2006]".into()))
        );
        assert!(Template::parse("%d{strftime[%Q]}").is_err());
        assert!(Template::parse("%d{strftime[%Y").is_err());
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
