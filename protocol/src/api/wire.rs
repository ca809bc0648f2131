//! Field types that carry their own encoding and limits, and the [`wire!`] macro that turns one
//! struct declaration into that struct's codec.
//!
//! A message is declared once, field by field, each field with its Rust type and its wire type:
//!
//! ```text
//! wire! {
//!     #[derive(Debug, Clone, PartialEq, Eq, Default)]
//!     pub struct TopicResult {
//!         #[wire = "topic_name"]
//!         pub name: String as TopicName,
//!         pub error_code: ErrorCode as ErrorCode,
//!         pub error_message: Option<String> as ErrorText,
//!     }
//! }
//! ```
//!
//! From that come the struct, its encoder and decoder (fields in declaration order), its
//! [`Wire::ENCODED_BYTES_MIN`] (the sum of its fields' minimums, computed, never written by
//! hand), and what a request-wide error puts in it ([`Fields::put_error`]). Field names in
//! errors are the Rust names unless `#[wire = "..."]` gives the one the wire has always used.
//! The wire types (`Str<MAX>`, `List<T, MAX>`, …) bound every length and count when encoding and
//! decoding alike, so whatever encodes also decodes.
//!
//! A field added in a later version of its message is marked `#[since = N]`: it is written
//! and read only at version `N` and above, and an older peer's message leaves it at its
//! `Default`. So one declaration serves every version, and a field is never removed or
//! reordered (only appended to the versions that have it). The version travels down to nested
//! structs inside [`Field`], so a field of a list element can be versioned too.
//!
//! What this file leaves to others: which API a message belongs to and its error answer
//! (`api`'s table), and the primitive byte reads and writes (`codec`).

use bytes::Bytes;

use crate::codec::{put_count, put_optional_string, put_string, Decoder, Sink};
use crate::constants::TRANSACTIONAL_ID_BYTES_MAX;
use crate::constants::{CLIENT_HOST_BYTES_MAX, CLIENT_ID_BYTES_MAX, CONFIG_NAME_BYTES_MAX};
use crate::constants::{CLUSTER_ID_BYTES_MAX, COORDINATOR_KEY_BYTES_MAX, HOST_BYTES_MAX};
use crate::constants::{GROUP_ID_BYTES_MAX, GROUP_INSTANCE_ID_BYTES_MAX};
use crate::constants::{GROUP_MEMBER_METADATA_BYTES_MAX, GROUP_PROTOCOL_NAME_BYTES_MAX};
use crate::constants::{MEMBER_ID_BYTES_MAX, STRING_BYTES_MAX, TOPIC_NAME_BYTES_MAX};
use crate::constants::{RACK_BYTES_MAX, REPLICAS_PER_PARTITION_MAX};
use crate::error::{ErrorCode, WireError};

/// How a field is named in errors (its name, and the name of its presence tag when optional),
/// and the version of the message it is part of.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Field {
    pub(crate) name: &'static str,
    pub(crate) presence: &'static str,
    /// The version of the message being encoded or decoded: `#[since]` fields read it.
    pub(crate) version: u16,
}

impl Field {
    /// A whole message at version 0, named by its type: its fields name themselves.
    pub(crate) const fn message(name: &'static str) -> Self {
        Self::message_at(name, 0)
    }

    /// A whole message at `version`.
    pub(crate) const fn message_at(name: &'static str, version: u16) -> Self {
        Self {
            name,
            presence: name,
            version,
        }
    }
}

/// How one value travels. Implemented by the wire types below (for a Rust type such as
/// `String`, with a limit) and by every declared struct (for itself).
pub(crate) trait Wire: Sized {
    /// The Rust type of a field declared with this wire type.
    type Value: core::fmt::Debug + PartialEq;

    /// Fewest bytes one encoded value takes; lets a decoder bound a count by the bytes left.
    const ENCODED_BYTES_MIN: usize;

    /// Whether a field of this type is a response's error code.
    const IS_ERROR_CODE: bool = false;

    /// Appends `value`, refusing what the decoder would refuse (too long, too many).
    fn encode<S: Sink>(value: &Self::Value, field: Field, sink: &mut S) -> Result<(), WireError>;

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Self::Value, WireError>;

    /// What a field of this type says when its response answers a request that failed as a
    /// whole with `code`: the error code takes it, an error text explains it, the rest keep
    /// their defaults.
    fn put_error(_value: &mut Self::Value, _code: ErrorCode) {}

    /// The value that encodes to the fewest bytes.
    #[cfg(test)]
    fn smallest() -> Self::Value;

    /// Checks this type's minimum, then those of the types inside it.
    #[cfg(test)]
    fn check_minimums(check: &mut minimums::Check) {
        check.codec::<Self>();
    }
}

/// What the [`wire!`] macro adds to a declared struct beyond its codec: what its own fields do
/// with a request-wide error.
pub(crate) trait Fields {
    /// Whether one of the struct's own fields is an error code.
    const HAS_ERROR_CODE: bool;

    /// Puts `code` in the struct's own fields (see [`Wire::put_error`]).
    fn put_error(&mut self, code: ErrorCode);

    /// The oldest version that carries every one of the struct's own fields whose value is
    /// not its default: encoded older, such a field would be silently dropped.
    fn version_needed(&self) -> u16;
}

/// A type that is its own wire type, as every declared struct is: what a generic declared
/// struct (`TopicPartitions<P>`) may hold.
pub(crate) trait Declared: Wire<Value = Self> + core::fmt::Debug + PartialEq {}

impl<T: Wire<Value = T> + core::fmt::Debug + PartialEq> Declared for T {}

/// Declares a struct and derives its [`Wire`] and [`Fields`] implementations from its fields.
/// See the module documentation for the form.
macro_rules! wire {
    (
        $(#[$struct_attribute:meta])*
        $vis:vis struct $name:ident $(<$generic:ident>)? {
            $(
                $(#[doc = $doc:literal])*
                $(#[wire = $wire_name:literal])?
                $(#[since = $since:literal])?
                $field_vis:vis $field:ident : $type:ty as $codec:ty
            ),* $(,)?
        }
    ) => {
        $(#[$struct_attribute])*
        $vis struct $name $(<$generic>)? {
            $(
                $(#[doc = $doc])*
                $field_vis $field: $type,
            )*
        }

        impl $(<$generic: $crate::api::wire::Declared>)? $crate::api::wire::Wire
            for $name $(<$generic>)?
        {
            type Value = Self;

            // The minimum is version 0's: later fields only add bytes.
            const ENCODED_BYTES_MIN: usize = 0 $(+ if $crate::api::wire::since!($($since)?) == 0 {
                <$codec as $crate::api::wire::Wire>::ENCODED_BYTES_MIN
            } else {
                0
            })*;

            #[allow(unused_variables)]
            fn encode<S: $crate::codec::Sink>(
                value: &Self,
                field: $crate::api::wire::Field,
                sink: &mut S,
            ) -> Result<(), $crate::error::WireError> {
                $(
                    $crate::api::wire::write_since!(
                        field.version,
                        <$codec as $crate::api::wire::Wire>::encode(
                            &value.$field,
                            $crate::api::wire::field_name!(field.version, $field $(, $wire_name)?),
                            sink,
                        )?
                        $(, $since)?
                    );
                )*
                Ok(())
            }

            #[allow(unused_variables)]
            fn decode(
                field: $crate::api::wire::Field,
                decoder: &mut $crate::codec::Decoder,
            ) -> Result<Self, $crate::error::WireError> {
                // Struct expressions evaluate their fields in the order written.
                Ok(Self {
                    $(
                        $field: $crate::api::wire::read_since!(
                            field.version,
                            <$codec as $crate::api::wire::Wire>::decode(
                                $crate::api::wire::field_name!(
                                    field.version, $field $(, $wire_name)?
                                ),
                                decoder,
                            )?
                            $(, $since)?
                        ),
                    )*
                })
            }

            #[cfg(test)]
            fn smallest() -> Self {
                Self {
                    $($field: <$codec as $crate::api::wire::Wire>::smallest(),)*
                }
            }

            #[cfg(test)]
            fn check_minimums(check: &mut $crate::api::wire::minimums::Check) {
                if check.codec::<Self>() {
                    $(<$codec as $crate::api::wire::Wire>::check_minimums(check);)*
                }
            }
        }

        impl $(<$generic: $crate::api::wire::Declared>)? $crate::api::wire::Fields
            for $name $(<$generic>)?
        {
            const HAS_ERROR_CODE: bool =
                false $(|| <$codec as $crate::api::wire::Wire>::IS_ERROR_CODE)*;

            #[allow(unused_variables)]
            fn put_error(&mut self, code: $crate::error::ErrorCode) {
                $(<$codec as $crate::api::wire::Wire>::put_error(&mut self.$field, code);)*
            }

            #[allow(unused_mut)]
            fn version_needed(&self) -> u16 {
                let mut needed = 0;
                $($crate::api::wire::need_since!(needed, self.$field, $type $(, $since)?);)*
                needed
            }
        }
    };
}
pub(crate) use wire;

/// The [`Field`] of a declared field: its Rust name, or the wire name given for it, at the
/// version of the message it is in.
macro_rules! field_name {
    ($version:expr, $field:ident) => {
        $crate::api::wire::Field {
            name: stringify!($field),
            presence: concat!(stringify!($field), "_present"),
            version: $version,
        }
    };
    ($version:expr, $field:ident, $wire_name:literal) => {
        $crate::api::wire::Field {
            name: $wire_name,
            presence: concat!($wire_name, "_present"),
            version: $version,
        }
    };
}
pub(crate) use field_name;

/// The first version a field is in: 0 unless `#[since = N]` says otherwise.
macro_rules! since {
    () => {
        0u16
    };
    ($since:literal) => {
        $since
    };
}
pub(crate) use since;

/// A decoded field: read from the wire, or, for a `#[since = N]` field of an older message,
/// its `Default` (only such fields need one).
macro_rules! read_since {
    ($version:expr, $read:expr) => {
        $read
    };
    ($version:expr, $read:expr, $since:literal) => {
        if $version >= $since {
            $read
        } else {
            Default::default()
        }
    };
}
pub(crate) use read_since;

/// Writes a field, unless it is a `#[since = N]` field and the message is older than `N`.
macro_rules! write_since {
    ($version:expr, $write:expr) => {
        $write
    };
    ($version:expr, $write:expr, $since:literal) => {
        if $version >= $since {
            $write
        }
    };
}
pub(crate) use write_since;

/// Raises `needed` to a `#[since = N]` field's version when the field holds a value.
macro_rules! need_since {
    ($needed:ident, $value:expr, $type:ty) => {};
    ($needed:ident, $value:expr, $type:ty, $since:literal) => {
        if $value != <$type as Default>::default() {
            $needed = $needed.max($since);
        }
    };
}
pub(crate) use need_since;

// ---- fixed-size values ----------------------------------------------------------------------

macro_rules! fixed {
    ($($type:ty => $put:ident, $read:ident;)*) => {
        $(
            impl Wire for $type {
                type Value = $type;
                const ENCODED_BYTES_MIN: usize = size_of::<$type>();

                fn encode<S: Sink>(value: &$type, _field: Field, sink: &mut S) -> Result<(), WireError> {
                    sink.$put(*value);
                    Ok(())
                }

                fn decode(field: Field, decoder: &mut Decoder) -> Result<$type, WireError> {
                    decoder.$read(field.name)
                }

                #[cfg(test)]
                fn smallest() -> $type {
                    0
                }
            }
        )*
    };
}

fixed! {
    u8 => put_u8, u8;
    u16 => put_u16, u16;
    u32 => put_u32, u32;
    u64 => put_u64, u64;
    i16 => put_i16, i16;
    i32 => put_i32, i32;
    i64 => put_i64, i64;
}

/// A u8: 0 false, 1 true; any other byte is refused.
impl Wire for bool {
    type Value = bool;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(value: &bool, _field: Field, sink: &mut S) -> Result<(), WireError> {
        sink.put_u8(u8::from(*value));
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<bool, WireError> {
        decoder.bool(field.name)
    }

    #[cfg(test)]
    fn smallest() -> bool {
        false
    }
}

/// A u16 code; codes this build does not know decode as [`ErrorCode::Unknown`].
impl Wire for ErrorCode {
    type Value = ErrorCode;
    const ENCODED_BYTES_MIN: usize = 2;
    const IS_ERROR_CODE: bool = true;

    fn encode<S: Sink>(value: &ErrorCode, _field: Field, sink: &mut S) -> Result<(), WireError> {
        sink.put_u16(value.to_u16());
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<ErrorCode, WireError> {
        decoder.u16(field.name).map(ErrorCode::from_u16_lossy)
    }

    fn put_error(value: &mut ErrorCode, code: ErrorCode) {
        *value = code;
    }

    #[cfg(test)]
    fn smallest() -> ErrorCode {
        ErrorCode::None
    }
}

// ---- strings and byte strings ---------------------------------------------------------------

/// A UTF-8 string of at most `MAX` bytes, after a u16 length.
pub(crate) struct Str<const MAX: usize>;

impl<const MAX: usize> Wire for Str<MAX> {
    type Value = String;
    const ENCODED_BYTES_MIN: usize = 2;

    fn encode<S: Sink>(value: &String, field: Field, sink: &mut S) -> Result<(), WireError> {
        const { assert!(MAX <= u16::MAX as usize) };
        put_string(sink, field.name, value, MAX)
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<String, WireError> {
        decoder.string(field.name, MAX)
    }

    #[cfg(test)]
    fn smallest() -> String {
        String::new()
    }
}

/// An optional string of at most `MAX` bytes: a u8 tag (0 absent, 1 present) named like the
/// field, then the string.
pub(crate) struct OptionalStr<const MAX: usize>;

impl<const MAX: usize> Wire for OptionalStr<MAX> {
    type Value = Option<String>;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(
        value: &Option<String>,
        field: Field,
        sink: &mut S,
    ) -> Result<(), WireError> {
        const { assert!(MAX <= u16::MAX as usize) };
        put_optional_string(sink, field.name, value.as_deref(), MAX)
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Option<String>, WireError> {
        decoder.optional_string(field.name, MAX)
    }

    #[cfg(test)]
    fn smallest() -> Option<String> {
        None
    }
}

/// A human-readable error message: optional free text. A request-wide error fills it with the
/// code's own description.
pub(crate) struct ErrorText;

impl Wire for ErrorText {
    type Value = Option<String>;
    const ENCODED_BYTES_MIN: usize = OptionalText::ENCODED_BYTES_MIN;

    fn encode<S: Sink>(
        value: &Option<String>,
        field: Field,
        sink: &mut S,
    ) -> Result<(), WireError> {
        OptionalText::encode(value, field, sink)
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Option<String>, WireError> {
        OptionalText::decode(field, decoder)
    }

    fn put_error(value: &mut Option<String>, code: ErrorCode) {
        *value = Some(code.to_string());
    }

    #[cfg(test)]
    fn smallest() -> Option<String> {
        None
    }
}

/// Opaque bytes of at most `MAX`, after a u32 length. Decoded as a zero-copy slice of the body;
/// encoded by reference where the sink can keep it.
pub(crate) struct ByteString<const MAX: usize>;

impl<const MAX: usize> Wire for ByteString<MAX> {
    type Value = Bytes;
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(value: &Bytes, field: Field, sink: &mut S) -> Result<(), WireError> {
        const { assert!(MAX <= u32::MAX as usize) };
        if value.len() > MAX {
            return Err(WireError::TooLong {
                field: field.name,
                length: value.len(),
                limit: MAX,
            });
        }
        sink.put_u32(value.len() as u32);
        sink.put_shared(value);
        Ok(())
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Bytes, WireError> {
        decoder.byte_string(field.name, MAX)
    }

    #[cfg(test)]
    fn smallest() -> Bytes {
        Bytes::new()
    }
}

// ---- lists and options ----------------------------------------------------------------------

/// At most `MAX` values of `T`, after a u32 count. Decoding bounds the count by `MAX` and by
/// the bytes left (each value takes at least `T::ENCODED_BYTES_MIN`) before reserving.
pub(crate) struct List<T, const MAX: usize>(core::marker::PhantomData<T>);

impl<T: Wire, const MAX: usize> Wire for List<T, MAX> {
    type Value = Vec<T::Value>;
    const ENCODED_BYTES_MIN: usize = 4;

    fn encode<S: Sink>(value: &Vec<T::Value>, field: Field, sink: &mut S) -> Result<(), WireError> {
        put_count(sink, field.name, value.len(), MAX)?;
        value
            .iter()
            .try_for_each(|item| T::encode(item, field, sink))
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Vec<T::Value>, WireError> {
        // A value that takes no bytes would let a tiny body announce any count.
        const { assert!(T::ENCODED_BYTES_MIN > 0) };
        let count = decoder.count(field.name, MAX, T::ENCODED_BYTES_MIN)?;
        let mut items = Vec::with_capacity(count);
        for _ in 0..count {
            items.push(T::decode(field, decoder)?);
        }
        Ok(items)
    }

    #[cfg(test)]
    fn smallest() -> Vec<T::Value> {
        Vec::new()
    }

    #[cfg(test)]
    fn check_minimums(check: &mut minimums::Check) {
        if check.codec::<Self>() {
            T::check_minimums(check);
        }
    }
}

/// An optional value of any other wire type: a u8 tag named `<field>_present` (0 absent, 1
/// present), then the value.
pub(crate) struct Optional<T>(core::marker::PhantomData<T>);

impl<T: Wire> Wire for Optional<T> {
    type Value = Option<T::Value>;
    const ENCODED_BYTES_MIN: usize = 1;

    fn encode<S: Sink>(
        value: &Option<T::Value>,
        field: Field,
        sink: &mut S,
    ) -> Result<(), WireError> {
        match value {
            None => {
                sink.put_u8(0);
                Ok(())
            }
            Some(value) => {
                sink.put_u8(1);
                T::encode(value, field, sink)
            }
        }
    }

    fn decode(field: Field, decoder: &mut Decoder) -> Result<Option<T::Value>, WireError> {
        if decoder.bool(field.presence)? {
            T::decode(field, decoder).map(Some)
        } else {
            Ok(None)
        }
    }

    #[cfg(test)]
    fn smallest() -> Option<T::Value> {
        None
    }

    #[cfg(test)]
    fn check_minimums(check: &mut minimums::Check) {
        if check.codec::<Self>() {
            T::check_minimums(check);
        }
    }
}

// ---- the field types messages use -----------------------------------------------------------

pub(crate) type TopicName = Str<TOPIC_NAME_BYTES_MAX>;
pub(crate) type ConfigName = Str<CONFIG_NAME_BYTES_MAX>;
/// Free text: config values, versions, addresses.
pub(crate) type Text = Str<STRING_BYTES_MAX>;
pub(crate) type OptionalText = OptionalStr<STRING_BYTES_MAX>;
pub(crate) type GroupId = Str<GROUP_ID_BYTES_MAX>;
pub(crate) type MemberId = Str<MEMBER_ID_BYTES_MAX>;
pub(crate) type GroupInstanceId = OptionalStr<GROUP_INSTANCE_ID_BYTES_MAX>;
pub(crate) type ProtocolName = Str<GROUP_PROTOCOL_NAME_BYTES_MAX>;
pub(crate) type OptionalProtocolName = OptionalStr<GROUP_PROTOCOL_NAME_BYTES_MAX>;
pub(crate) type ClientId = Str<CLIENT_ID_BYTES_MAX>;
pub(crate) type TransactionalId = Str<TRANSACTIONAL_ID_BYTES_MAX>;
pub(crate) type OptionalTransactionalId = OptionalStr<TRANSACTIONAL_ID_BYTES_MAX>;
pub(crate) type ClientHost = Str<CLIENT_HOST_BYTES_MAX>;
/// A member's opaque subscription or assignment.
pub(crate) type MemberMetadata = ByteString<GROUP_MEMBER_METADATA_BYTES_MAX>;
/// A broker endpoint's host (name or address).
pub(crate) type HostName = Str<HOST_BYTES_MAX>;
pub(crate) type OptionalRack = OptionalStr<RACK_BYTES_MAX>;
pub(crate) type OptionalClusterId = OptionalStr<CLUSTER_ID_BYTES_MAX>;
/// A group id or a transactional id.
pub(crate) type CoordinatorKey = Str<COORDINATOR_KEY_BYTES_MAX>;
/// Broker ids of one partition (its replicas, its in-sync replicas), as i32s.
pub(crate) type NodeIds = List<i32, REPLICAS_PER_PARTITION_MAX>;

// ---- the check that minimums are exact ------------------------------------------------------

#[cfg(test)]
pub(crate) mod minimums {
    //! Checks, for every wire type reachable from a message, that its smallest value encodes
    //! to exactly its `ENCODED_BYTES_MIN`, decodes back, and that no shorter prefix decodes.

    use std::collections::BTreeSet;

    use bytes::BytesMut;

    use super::{Field, Wire};
    use crate::codec::Decoder;

    #[derive(Debug, Default)]
    pub(crate) struct Check {
        pub(crate) checked: BTreeSet<&'static str>,
    }

    impl Check {
        /// Checks `T` unless it was checked before; returns whether it was new.
        pub(crate) fn codec<T: Wire>(&mut self) -> bool {
            let name = std::any::type_name::<T>();
            if !self.checked.insert(name) {
                return false;
            }
            let field = Field::message("smallest");
            let smallest = T::smallest();
            let mut bytes = BytesMut::new();
            if let Err(error) = T::encode(&smallest, field, &mut bytes) {
                panic!("{name}: its smallest value does not encode: {error}");
            }
            assert_eq!(
                bytes.len(),
                T::ENCODED_BYTES_MIN,
                "{name}: the smallest value's encoding is not ENCODED_BYTES_MIN long"
            );
            let bytes = bytes.freeze();
            let mut decoder = Decoder::new(bytes.clone());
            let decoded = T::decode(field, &mut decoder)
                .unwrap_or_else(|error| panic!("{name}: its smallest encoding fails: {error}"));
            assert_eq!(decoded, smallest, "{name}: the smallest value round-trips");
            assert_eq!(
                decoder.remaining_bytes(),
                0,
                "{name}: decoding uses every byte"
            );
            for length in 0..bytes.len() {
                let mut decoder = Decoder::new(bytes.slice(..length));
                assert!(
                    T::decode(field, &mut decoder).is_err(),
                    "{name}: {length} bytes, fewer than its minimum, decode"
                );
            }
            true
        }
    }
}
