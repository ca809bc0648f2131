//! Payload format 1: the records of a batch as one rkyv archive, read in place.
//!
//! This file defines the archived layout and how to reach it from payload bytes (with bytecheck
//! validation). Building the archive incrementally is `batch::builder`'s job; walking records
//! with absolute offsets and timestamps is `batch::view`'s.
//!
//! # Layout
//!
//! The archive's root is an `ArchivedVec<ArchivedRecordEntry>` at the very end of the payload
//! (rkyv's convention). Each entry holds:
//!
//! | field             | archived type                             | meaning                      |
//! |-------------------|-------------------------------------------|------------------------------|
//! | `offset_delta`    | `u32_le`                                  | offset minus `base_offset`   |
//! | `timestamp_delta` | `i64_le`                                  | timestamp minus `first_timestamp`, wrapping |
//! | `key`             | `ArchivedOption<ArchivedBox<[u8]>>`       | absent or bytes              |
//! | `value`           | `ArchivedOption<ArchivedBox<[u8]>>`       | absent (tombstone) or bytes  |
//! | `headers`         | `ArchivedBox<[ArchivedHeaderEntry]>`      | `(key: str, value: [u8])`s   |
//!
//! Bytes are written in rkyv's usual post-order: for each record its key bytes, value bytes,
//! header keys and values, then its header array; after all records the array of record
//! entries, then the root. bytecheck's subtree rule demands exactly that order, so any other
//! producer must follow it too.
//!
//! # Alignment
//!
//! The workspace fixes rkyv's `unaligned` feature: every archived primitive has alignment 1, so
//! the serializer never pads and the archive is valid at any byte address. That is what lets a
//! batch sit at an arbitrary position in a socket buffer, a fetch response or a disk page with
//! no copy to realign it, and it makes the archive's size an exact function of its contents
//! (see [`ARCHIVED_RECORD_ENTRY_BYTES`]). The cost is unaligned loads on the read path, which are
//! as fast as aligned ones on x86-64 and recent ARM.
//!
//! # No extra copy
//!
//! Key, value and header bytes are copied once, from the caller's slices straight into the
//! batch buffer, when the record is appended. The entries that point at them are written at
//! seal time from positions the builder remembered ([`Placed`]): rkyv's `ArchivedBox` can be
//! resolved from a position and a length alone, so the builder never holds the caller's bytes
//! and never copies them a second time.

use core::marker::PhantomData;

use rkyv::boxed::{ArchivedBox, BoxResolver};
use rkyv::primitive::{ArchivedUsize, FixedUsize};
use rkyv::rancor::Fallible;
use rkyv::traits::ArchivePointee;
use rkyv::vec::ArchivedVec;
use rkyv::{Archive, Place, Serialize};

use crate::error::BatchError;

/// A slice already written into the archive: `length` elements starting at byte `position`
/// (positions count from the first payload byte). Archives as an `ArchivedBox<T>` pointing there;
/// serializing it writes nothing, because the bytes are already in place.
pub(crate) struct Placed<T: ?Sized> {
    position: usize,
    length: usize,
    _pointee: PhantomData<fn() -> *const T>,
}

impl<T: ?Sized> Placed<T> {
    pub(crate) fn new(position: usize, length: usize) -> Self {
        assert!(
            FixedUsize::try_from(position).is_ok(),
            "archive position {position} overflows"
        );
        assert!(
            FixedUsize::try_from(length).is_ok(),
            "archive length {length} overflows"
        );
        Self {
            position,
            length,
            _pointee: PhantomData,
        }
    }
}

impl<T> Archive for Placed<T>
where
    T: ArchivePointee<ArchivedMetadata = ArchivedUsize> + ?Sized,
{
    type Archived = ArchivedBox<T>;
    type Resolver = ();

    fn resolve(&self, _resolver: (), out: Place<Self::Archived>) {
        // Lengths and positions were range-checked in `Placed::new`.
        let metadata = ArchivedUsize::from_native(self.length as FixedUsize);
        ArchivedBox::resolve_from_raw_parts(BoxResolver::from_pos(self.position), metadata, out);
    }
}

impl<T, S> Serialize<S> for Placed<T>
where
    T: ArchivePointee<ArchivedMetadata = ArchivedUsize> + ?Sized,
    S: Fallible + ?Sized,
{
    fn serialize(&self, _serializer: &mut S) -> Result<(), S::Error> {
        Ok(())
    }
}

/// One record header as archived: a UTF-8 key and opaque value bytes.
#[derive(Archive, Serialize)]
#[rkyv(derive(Debug))]
pub(crate) struct HeaderEntry {
    pub(crate) key: Placed<str>,
    pub(crate) value: Placed<[u8]>,
}

/// One record as archived. See the module doc for field meanings.
#[derive(Archive, Serialize)]
#[rkyv(derive(Debug))]
pub(crate) struct RecordEntry {
    pub(crate) offset_delta: u32,
    pub(crate) timestamp_delta: i64,
    pub(crate) key: Option<Placed<[u8]>>,
    pub(crate) value: Option<Placed<[u8]>>,
    pub(crate) headers: Placed<[ArchivedHeaderEntry]>,
}

/// Archived size of one record entry, excluding the bytes it points to. Exact: no padding.
pub(crate) const ARCHIVED_RECORD_ENTRY_BYTES: usize = size_of::<ArchivedRecordEntry>();

/// Archived size of one header entry, excluding the bytes it points to.
pub(crate) const ARCHIVED_HEADER_ENTRY_BYTES: usize = size_of::<ArchivedHeaderEntry>();

/// Archived size of the root (the vector of record entries).
pub(crate) const ARCHIVED_ROOT_BYTES: usize = size_of::<ArchivedVec<ArchivedRecordEntry>>();

// The format is defined with alignment 1; if a feature change broke that, positions computed by
// the builder would no longer match what rkyv writes.
const _: () = assert!(align_of::<ArchivedRecordEntry>() == 1);
const _: () = assert!(align_of::<ArchivedHeaderEntry>() == 1);
const _: () = assert!(align_of::<ArchivedVec<ArchivedRecordEntry>>() == 1);
const _: () = assert!(ARCHIVED_RECORD_ENTRY_BYTES == 4 + 8 + 9 + 9 + 8);
const _: () = assert!(ARCHIVED_HEADER_ENTRY_BYTES == 8 + 8);
const _: () = assert!(ARCHIVED_ROOT_BYTES == 8);

/// Validates `payload` as a format-1 archive (bounds, UTF-8 of header keys, option tags, the
/// subtree order) and returns its record entries. Reads nothing before validation succeeds.
pub(crate) fn access_entries(payload: &[u8]) -> Result<&[ArchivedRecordEntry], BatchError> {
    rkyv::api::low::access::<ArchivedVec<ArchivedRecordEntry>, rkyv::rancor::Error>(payload)
        .map(|entries| entries.as_slice())
        .map_err(|error| BatchError::InvalidPayload {
            reason: error.to_string(),
        })
}
