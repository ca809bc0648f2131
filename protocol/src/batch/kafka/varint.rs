//! Kafka's variable-length integers (zig-zag, then base-128 little-endian groups, as protobuf),
//! used inside RecordBatch v2 records for lengths, counts and deltas.
//!
//! Encoders append to a `BytesMut`; decoders read from the front of a slice and return the
//! value with the bytes it took, or `None` for a truncated or over-long encoding. No allocation.

use bytes::BufMut;

/// Most bytes a varint (32-bit) takes.
pub const VARINT_BYTES_MAX: usize = 5;

/// Most bytes a varlong (64-bit) takes.
pub const VARLONG_BYTES_MAX: usize = 10;

#[inline]
fn zigzag_32(value: i32) -> u32 {
    ((value << 1) ^ (value >> 31)) as u32
}

#[inline]
fn zigzag_64(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

#[inline]
fn put_unsigned(target: &mut impl BufMut, mut value: u64) {
    while value >= 0x80 {
        target.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    target.put_u8(value as u8);
}

/// Bytes `value` takes as a varint.
#[inline]
pub fn varint_bytes(value: i32) -> usize {
    unsigned_bytes(u64::from(zigzag_32(value)))
}

/// Bytes `value` takes as a varlong.
#[inline]
pub fn varlong_bytes(value: i64) -> usize {
    unsigned_bytes(zigzag_64(value))
}

#[inline]
fn unsigned_bytes(value: u64) -> usize {
    // Each byte carries 7 bits; zero still takes one byte.
    let bits = 64 - (value | 1).leading_zeros() as usize;
    bits.div_ceil(7)
}

#[inline]
pub fn put_varint(target: &mut impl BufMut, value: i32) {
    put_unsigned(target, u64::from(zigzag_32(value)));
}

#[inline]
pub fn put_varlong(target: &mut impl BufMut, value: i64) {
    put_unsigned(target, zigzag_64(value));
}

/// Reads an unsigned base-128 value of at most `bytes_max` bytes whose value fits in `bits`.
#[inline]
fn read_unsigned(bytes: &[u8], bytes_max: usize, bits: u32) -> Option<(u64, usize)> {
    // Most fields of a record (attributes aside: deltas, short lengths, counts) fit one byte.
    let &first = bytes.first()?;
    if first < 0x80 {
        return Some((u64::from(first), 1));
    }
    let mut value = 0u64;
    for (index, &byte) in bytes.iter().take(bytes_max).enumerate() {
        let shift = 7 * index as u32;
        let group = u64::from(byte & 0x7f);
        // The last group may only fill the bits the type has left (Kafka refuses the rest too).
        if shift + 7 > bits && group >> (bits - shift) != 0 {
            return None;
        }
        value |= group << shift;
        if byte & 0x80 == 0 {
            return Some((value, index + 1));
        }
    }
    None
}

/// Reads a varint from the front of `bytes`: `(value, bytes taken)`.
#[inline]
pub fn read_varint(bytes: &[u8]) -> Option<(i32, usize)> {
    let (raw, taken) = read_unsigned(bytes, VARINT_BYTES_MAX, 32)?;
    let raw = raw as u32;
    Some((((raw >> 1) as i32) ^ -((raw & 1) as i32), taken))
}

/// Reads a varlong from the front of `bytes`: `(value, bytes taken)`.
#[inline]
pub fn read_varlong(bytes: &[u8]) -> Option<(i64, usize)> {
    let (raw, taken) = read_unsigned(bytes, VARLONG_BYTES_MAX, 64)?;
    Some((((raw >> 1) as i64) ^ -((raw & 1) as i64), taken))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_round_trip_in_the_bytes_they_claim(value in any::<i32>()) {
            let mut target = Vec::new();
            put_varint(&mut target, value);
            prop_assert_eq!(target.len(), varint_bytes(value));
            prop_assert_eq!(read_varint(&target), Some((value, target.len())));
            prop_assert_eq!(read_varint(&target[..target.len() - 1]), None);
        }

        #[test]
        fn varlongs_round_trip_in_the_bytes_they_claim(value in any::<i64>()) {
            let mut target = Vec::new();
            put_varlong(&mut target, value);
            prop_assert_eq!(target.len(), varlong_bytes(value));
            prop_assert_eq!(read_varlong(&target), Some((value, target.len())));
            prop_assert_eq!(read_varlong(&target[..target.len() - 1]), None);
        }

        #[test]
        fn no_bytes_make_the_readers_panic(bytes in proptest::collection::vec(any::<u8>(), 0..12)) {
            let _ = read_varint(&bytes);
            let _ = read_varlong(&bytes);
        }
    }

    #[test]
    fn known_encodings_match_kafkas() {
        let mut target = Vec::new();
        put_varint(&mut target, -1);
        put_varint(&mut target, 0);
        put_varint(&mut target, 1);
        put_varint(&mut target, 64);
        put_varint(&mut target, i32::MIN);
        assert_eq!(
            target,
            [0x01, 0x00, 0x02, 0x80, 0x01, 0xff, 0xff, 0xff, 0xff, 0x0f]
        );
    }

    #[test]
    fn over_long_encodings_are_refused() {
        // Six groups for a 32-bit value, and a fifth group with bits above bit 31.
        assert_eq!(read_varint(&[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]), None);
        assert_eq!(read_varint(&[0xff, 0xff, 0xff, 0xff, 0x1f]), None);
        assert_eq!(read_varlong(&[0xff; 10]), None);
        assert_eq!(
            read_varlong(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
                .map(|(v, _)| v),
            Some(i64::MIN)
        );
    }
}
