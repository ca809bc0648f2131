//! RESP2, the Redis wire protocol: encoding commands and reading replies, over any
//! `BufRead`. Just what the Redis Streams driver needs (XADD, XREAD, DEL, PING).
//!
//! Why not the `redis` crate: the driver must control pipelining exactly (how many commands
//! are written per socket write, how many replies are outstanding) and read replies on its own
//! thread to timestamp each acknowledgement the moment it arrives; a hundred lines over
//! `std::net::TcpStream` do that with no runtime and no hidden buffering. Every length a
//! server sends is checked against a limit in `constants` before anything is allocated.

use std::io::BufRead;

use crate::constants::{
    RESP_ARRAY_ELEMENTS_MAX, RESP_BULK_BYTES_MAX, RESP_DEPTH_MAX, RESP_LINE_BYTES_MAX,
};

/// One reply value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    /// `None` is the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `None` is the null array (XREAD BLOCK timing out).
    Array(Option<Vec<Reply>>),
}

/// Why a reply could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    #[error("reading a reply: {0}")]
    Io(#[from] std::io::Error),
    #[error("the server closed the connection")]
    Closed,
    #[error("malformed reply: {0}")]
    Malformed(String),
}

/// Appends `arguments` as one command (an array of bulk strings) to `target`.
pub fn encode_command(target: &mut Vec<u8>, arguments: &[&[u8]]) {
    target.push(b'*');
    target.extend_from_slice(arguments.len().to_string().as_bytes());
    target.extend_from_slice(b"\r\n");
    for argument in arguments {
        target.push(b'$');
        target.extend_from_slice(argument.len().to_string().as_bytes());
        target.extend_from_slice(b"\r\n");
        target.extend_from_slice(argument);
        target.extend_from_slice(b"\r\n");
    }
}

/// Reads one whole reply.
pub fn read_reply<R: BufRead>(reader: &mut R) -> Result<Reply, RespError> {
    read_at_depth(reader, 0)
}

fn read_at_depth<R: BufRead>(reader: &mut R, depth: usize) -> Result<Reply, RespError> {
    if depth > RESP_DEPTH_MAX {
        return Err(RespError::Malformed(format!(
            "arrays nested deeper than {RESP_DEPTH_MAX}"
        )));
    }
    let line = read_line(reader)?;
    let (&kind, rest) = line
        .split_first()
        .ok_or_else(|| RespError::Malformed("empty line".into()))?;
    let text = || String::from_utf8_lossy(rest).into_owned();
    match kind {
        b'+' => Ok(Reply::Simple(text())),
        b'-' => Ok(Reply::Error(text())),
        b':' => Ok(Reply::Integer(parse_integer(rest)?)),
        b'$' => {
            let Some(length) = parse_length(rest, RESP_BULK_BYTES_MAX)? else {
                return Ok(Reply::Bulk(None));
            };
            let mut value = vec![0u8; length + 2];
            reader.read_exact(&mut value).map_err(eof_as_closed)?;
            if !value.ends_with(b"\r\n") {
                return Err(RespError::Malformed("bulk string without CRLF".into()));
            }
            value.truncate(length);
            Ok(Reply::Bulk(Some(value)))
        }
        b'*' => {
            let Some(count) = parse_length(rest, RESP_ARRAY_ELEMENTS_MAX)? else {
                return Ok(Reply::Array(None));
            };
            // Each element takes at least 3 bytes on the wire; `count` is already bounded, so
            // reserving it cannot be turned into an unbounded allocation.
            let mut elements = Vec::with_capacity(count);
            for _ in 0..count {
                elements.push(read_at_depth(reader, depth + 1)?);
            }
            Ok(Reply::Array(Some(elements)))
        }
        other => Err(RespError::Malformed(format!(
            "unknown reply type byte {other:#04x}"
        ))),
    }
}

fn eof_as_closed(error: std::io::Error) -> RespError {
    if error.kind() == std::io::ErrorKind::UnexpectedEof {
        RespError::Closed
    } else {
        RespError::Io(error)
    }
}

/// One CRLF-terminated line, without the CRLF.
fn read_line<R: BufRead>(reader: &mut R) -> Result<Vec<u8>, RespError> {
    let mut line = Vec::new();
    loop {
        let available = reader.fill_buf()?;
        if available.is_empty() {
            return Err(RespError::Closed);
        }
        match available.iter().position(|&byte| byte == b'\n') {
            Some(end) => {
                line.extend_from_slice(&available[..=end]);
                reader.consume(end + 1);
                break;
            }
            None => {
                let length = available.len();
                line.extend_from_slice(available);
                reader.consume(length);
            }
        }
        if line.len() > RESP_LINE_BYTES_MAX {
            return Err(RespError::Malformed(format!(
                "line longer than {RESP_LINE_BYTES_MAX} bytes"
            )));
        }
    }
    if !line.ends_with(b"\r\n") {
        return Err(RespError::Malformed("line ends without CR".into()));
    }
    line.truncate(line.len() - 2);
    Ok(line)
}

fn parse_integer(text: &[u8]) -> Result<i64, RespError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| {
            RespError::Malformed(format!(
                "{:?} is not an integer",
                String::from_utf8_lossy(text)
            ))
        })
}

/// A length prefix: `None` for -1 (null), else checked against `limit`.
fn parse_length(text: &[u8], limit: usize) -> Result<Option<usize>, RespError> {
    let value = parse_integer(text)?;
    if value == -1 {
        return Ok(None);
    }
    let length = usize::try_from(value)
        .map_err(|_| RespError::Malformed(format!("negative length {value}")))?;
    if length > limit {
        return Err(RespError::Malformed(format!(
            "length {length} is above the limit {limit}"
        )));
    }
    Ok(Some(length))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Result<Reply, RespError> {
        read_reply(&mut std::io::BufReader::new(bytes))
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut encoded = Vec::new();
        encode_command(&mut encoded, &[b"XADD", b"s-0", b"*", b"v", b"\x00\r\n"]);
        assert_eq!(
            encoded,
            b"*5\r\n$4\r\nXADD\r\n$3\r\ns-0\r\n$1\r\n*\r\n$1\r\nv\r\n$3\r\n\x00\r\n\r\n".to_vec()
        );
    }

    #[test]
    fn every_reply_type_is_read() {
        assert_eq!(read(b"+PONG\r\n").unwrap(), Reply::Simple("PONG".into()));
        assert_eq!(read(b"-ERR no\r\n").unwrap(), Reply::Error("ERR no".into()));
        assert_eq!(read(b":-42\r\n").unwrap(), Reply::Integer(-42));
        assert_eq!(
            read(b"$5\r\nab\r\nc\r\n").unwrap(),
            Reply::Bulk(Some(b"ab\r\nc".to_vec()))
        );
        assert_eq!(read(b"$-1\r\n").unwrap(), Reply::Bulk(None));
        assert_eq!(read(b"*-1\r\n").unwrap(), Reply::Array(None));
        assert_eq!(
            read(b"*2\r\n:1\r\n*1\r\n$1\r\nx\r\n").unwrap(),
            Reply::Array(Some(vec![
                Reply::Integer(1),
                Reply::Array(Some(vec![Reply::Bulk(Some(b"x".to_vec()))]))
            ]))
        );
    }

    #[test]
    fn replies_arriving_back_to_back_are_read_one_at_a_time() {
        let mut reader = std::io::BufReader::new(&b"$3\r\n1-0\r\n$3\r\n2-0\r\n"[..]);
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Bulk(Some(b"1-0".to_vec()))
        );
        assert_eq!(
            read_reply(&mut reader).unwrap(),
            Reply::Bulk(Some(b"2-0".to_vec()))
        );
        assert!(matches!(read_reply(&mut reader), Err(RespError::Closed)));
    }

    #[test]
    fn oversized_lengths_are_refused_before_allocating() {
        let huge = format!("${}\r\n", RESP_BULK_BYTES_MAX + 1);
        assert!(matches!(
            read(huge.as_bytes()),
            Err(RespError::Malformed(_))
        ));
        let many = format!("*{}\r\n", RESP_ARRAY_ELEMENTS_MAX + 1);
        assert!(matches!(
            read(many.as_bytes()),
            Err(RespError::Malformed(_))
        ));
        assert!(matches!(read(b"$-5\r\n"), Err(RespError::Malformed(_))));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let nested = "*1\r\n".repeat(RESP_DEPTH_MAX + 2) + ":1\r\n";
        assert!(matches!(
            read(nested.as_bytes()),
            Err(RespError::Malformed(_))
        ));
    }

    #[test]
    fn truncated_and_garbled_replies_are_errors_not_panics() {
        assert!(matches!(read(b"$5\r\nab"), Err(RespError::Closed)));
        assert!(matches!(read(b"+OK"), Err(RespError::Closed)));
        assert!(matches!(read(b"?what\r\n"), Err(RespError::Malformed(_))));
        assert!(matches!(read(b":12x\r\n"), Err(RespError::Malformed(_))));
        assert!(matches!(read(b"$2\r\nabXY"), Err(RespError::Malformed(_))));
        assert!(matches!(read(b"+OK\n"), Err(RespError::Malformed(_))));
    }
}
