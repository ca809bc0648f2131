//! Primitive wire encoding shared by frames and messages: little-endian integers, strings with
//! a u16 length, byte strings with a u32 length, counts with a u32.
//!
//! Encoding goes to a [`Sink`]: a `BytesMut` (everything copied) or a [`ChunkWriter`] (record
//! batches shared as their own `Bytes` chunks, for vectored writes). Decoding reads from a
//! `Bytes` through [`Decoder`], which slices byte strings out without copying. Every length and
//! count is checked against a limit, and against the bytes actually left, before anything is
//! allocated. Encoders enforce the same limits, so whatever encodes also decodes. Message
//! layouts live in `api`; frame layout in `frame`.

use bytes::{Bytes, BytesMut};

use crate::constants::SHARED_CHUNK_BYTES_MIN;
use crate::error::WireError;

/// Where encoders write. Byte order is little-endian throughout.
pub trait Sink {
    fn put_slice(&mut self, bytes: &[u8]);

    /// Appends bytes that the sink may keep by reference instead of copying.
    fn put_shared(&mut self, bytes: &Bytes) {
        self.put_slice(bytes);
    }

    /// Bytes written so far.
    fn written_bytes(&self) -> usize;

    fn put_u8(&mut self, value: u8) {
        self.put_slice(&[value]);
    }
    fn put_u16(&mut self, value: u16) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_u32(&mut self, value: u32) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_u64(&mut self, value: u64) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_i16(&mut self, value: i16) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_i32(&mut self, value: i32) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_i64(&mut self, value: i64) {
        self.put_slice(&value.to_le_bytes());
    }
    fn put_bool(&mut self, value: bool) {
        self.put_u8(u8::from(value));
    }
}

impl Sink for BytesMut {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
    fn written_bytes(&self) -> usize {
        self.len()
    }
}

/// A sink that keeps large shared byte strings (record batches) as separate chunks and copies
/// only the small fields between them. The chunks, in order, are the encoding.
#[derive(Debug, Default)]
pub struct ChunkWriter {
    chunks: Vec<Bytes>,
    current: BytesMut,
    written_bytes: usize,
}

impl ChunkWriter {
    pub fn new() -> Self {
        Self::default()
    }

    /// The encoding as chunks for a vectored write; none of them is empty.
    pub fn finish(mut self) -> Vec<Bytes> {
        self.flush();
        self.chunks
    }

    fn flush(&mut self) {
        if !self.current.is_empty() {
            self.chunks.push(self.current.split().freeze());
        }
    }
}

impl Sink for ChunkWriter {
    fn put_slice(&mut self, bytes: &[u8]) {
        self.current.extend_from_slice(bytes);
        self.written_bytes += bytes.len();
    }

    fn put_shared(&mut self, bytes: &Bytes) {
        // Below this size an extra iovec costs more than the copy.
        if bytes.len() < SHARED_CHUNK_BYTES_MIN {
            self.put_slice(bytes);
            return;
        }
        self.flush();
        self.chunks.push(bytes.clone());
        self.written_bytes += bytes.len();
    }

    fn written_bytes(&self) -> usize {
        self.written_bytes
    }
}

/// Writes a string with a u16 length, refusing one longer than `limit` bytes.
pub fn put_string<S: Sink>(
    sink: &mut S,
    field: &'static str,
    value: &str,
    limit: usize,
) -> Result<(), WireError> {
    debug_assert!(limit <= usize::from(u16::MAX));
    check_length(field, value.len(), limit)?;
    sink.put_u16(value.len() as u16);
    sink.put_slice(value.as_bytes());
    Ok(())
}

/// Writes an optional string: u8 tag (0 absent, 1 present), then the string.
pub fn put_optional_string<S: Sink>(
    sink: &mut S,
    field: &'static str,
    value: Option<&str>,
    limit: usize,
) -> Result<(), WireError> {
    match value {
        None => {
            sink.put_u8(0);
            Ok(())
        }
        Some(value) => {
            sink.put_u8(1);
            put_string(sink, field, value, limit)
        }
    }
}

/// Writes a u32 element count, refusing more than `limit`.
pub fn put_count<S: Sink>(
    sink: &mut S,
    field: &'static str,
    count: usize,
    limit: usize,
) -> Result<(), WireError> {
    debug_assert!(limit <= u32::MAX as usize);
    if count > limit {
        return Err(WireError::TooMany {
            field,
            count,
            limit,
        });
    }
    sink.put_u32(count as u32);
    Ok(())
}

fn check_length(field: &'static str, length: usize, limit: usize) -> Result<(), WireError> {
    if length > limit {
        return Err(WireError::TooLong {
            field,
            length,
            limit,
        });
    }
    Ok(())
}

/// Reads a message body. Owns a cheap clone of the body's `Bytes` so that byte strings can be
/// handed out as zero-copy slices.
#[derive(Debug, Clone)]
pub struct Decoder {
    bytes: Bytes,
    position: usize,
}

impl Decoder {
    pub fn new(bytes: Bytes) -> Self {
        Self { bytes, position: 0 }
    }

    pub fn remaining_bytes(&self) -> usize {
        self.bytes.len() - self.position
    }

    /// The bytes not read yet, without consuming them.
    pub fn peek(&self) -> &[u8] {
        &self.bytes[self.position..]
    }

    /// Fails if any bytes are left: a message must use its whole body.
    pub fn finish(&self, message: &'static str) -> Result<(), WireError> {
        match self.remaining_bytes() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { message, count }),
        }
    }

    fn take(&mut self, field: &'static str, length: usize) -> Result<&[u8], WireError> {
        let available = self.remaining_bytes();
        if length > available {
            return Err(WireError::Truncated {
                field,
                needed: length,
                available,
            });
        }
        let start = self.position;
        self.position += length;
        Ok(&self.bytes[start..self.position])
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(field, N)?);
        Ok(array)
    }

    pub fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, WireError> {
        self.array(field).map(u16::from_le_bytes)
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        self.array(field).map(u32::from_le_bytes)
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        self.array(field).map(u64::from_le_bytes)
    }
    pub fn i16(&mut self, field: &'static str) -> Result<i16, WireError> {
        self.array(field).map(i16::from_le_bytes)
    }
    pub fn i32(&mut self, field: &'static str) -> Result<i32, WireError> {
        self.array(field).map(i32::from_le_bytes)
    }
    pub fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        self.array(field).map(i64::from_le_bytes)
    }

    pub fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(WireError::InvalidValue {
                field,
                value: i64::from(other),
            }),
        }
    }

    /// A u16-length UTF-8 string of at most `limit` bytes.
    pub fn string(&mut self, field: &'static str, limit: usize) -> Result<String, WireError> {
        let length = usize::from(self.u16(field)?);
        check_length(field, length, limit)?;
        let bytes = self.take(field, length)?;
        match core::str::from_utf8(bytes) {
            Ok(text) => Ok(text.to_owned()),
            Err(_) => Err(WireError::InvalidUtf8 { field }),
        }
    }

    /// An optional string as written by [`put_optional_string`].
    pub fn optional_string(
        &mut self,
        field: &'static str,
        limit: usize,
    ) -> Result<Option<String>, WireError> {
        if self.bool(field)? {
            self.string(field, limit).map(Some)
        } else {
            Ok(None)
        }
    }

    /// `length` bytes as a zero-copy slice of the body.
    pub fn slice(&mut self, field: &'static str, length: usize) -> Result<Bytes, WireError> {
        let start = self.position;
        self.take(field, length)?;
        Ok(self.bytes.slice(start..self.position))
    }

    /// A u32-length byte string of at most `limit` bytes, as a zero-copy slice.
    pub fn byte_string(&mut self, field: &'static str, limit: usize) -> Result<Bytes, WireError> {
        let length = self.u32(field)? as usize;
        check_length(field, length, limit)?;
        self.slice(field, length)
    }

    /// A u32 element count, at most `limit`, and small enough that `count` elements of at least
    /// `element_bytes_min` bytes each fit in what is left. After this check, reserving `count`
    /// elements is bounded by the body size.
    pub fn count(
        &mut self,
        field: &'static str,
        limit: usize,
        element_bytes_min: usize,
    ) -> Result<usize, WireError> {
        debug_assert!(element_bytes_min > 0);
        let count = self.u32(field)? as usize;
        if count > limit {
            return Err(WireError::TooMany {
                field,
                count,
                limit,
            });
        }
        let needed = count.saturating_mul(element_bytes_min);
        let available = self.remaining_bytes();
        if needed > available {
            return Err(WireError::Truncated {
                field,
                needed,
                available,
            });
        }
        Ok(count)
    }
}
